//! A plain-HTTP forwarder that holds every request for a set delay before passing it on:
//! put between an edge and the control plane, it makes the edge's feed reads slow on demand,
//! so a test can act while one is in flight. One request per connection (it answers with
//! `connection: close`), one thread per connection.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};

/// A running forwarder; it stops when the test process ends.
pub struct SlowProxy {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    delay_ms: Arc<AtomicU64>,
}

impl SlowProxy {
    /// Forwards to `upstream` (`http://host:port`), at first without delay.
    pub fn start(upstream: &str) -> Result<Self> {
        let upstream = upstream
            .strip_prefix("http://")
            .with_context(|| format!("{upstream}: only http:// upstreams"))?
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the slow proxy")?;
        let url = format!("http://{}", listener.local_addr()?);
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, delay) = (upstream.clone(), delay.clone());
                std::thread::spawn(move || {
                    let _ = forward(
                        client,
                        &upstream,
                        Duration::from_millis(delay.load(Ordering::SeqCst)),
                    );
                });
            }
        });
        Ok(Self { url, delay_ms })
    }

    /// Holds every request that arrives from now on for `delay` before forwarding it.
    pub fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(millis, Ordering::SeqCst);
    }
}

/// Reads one request from `client`, waits `delay`, sends it to `upstream` with
/// `connection: close` and copies the answer back.
fn forward(client: TcpStream, upstream: &str, delay: Duration) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = String::new();
    reader.read_line(&mut head)?;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line.trim_end().is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
        let name = name.trim().to_ascii_lowercase();
        if name == "content-length" {
            content_length = value.trim().parse().unwrap_or(0);
        }
        if name != "connection" && name != "keep-alive" {
            head.push_str(&line);
        }
    }
    head.push_str("connection: close\r\n\r\n");
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    std::thread::sleep(delay);
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(head.as_bytes())?;
    server.write_all(&body)?;
    let mut client = client;
    std::io::copy(&mut server, &mut client)?;
    client.shutdown(Shutdown::Both)
}
