//! A plain-HTTP forwarder to put between an edge and the control plane, to act on the edge's
//! feed reads as a slow network or an attacker in the middle would: it can hold every request
//! for a set delay ([`FeedProxy::set_delay`]), and answer the requests whose path starts with
//! a prefix with something else than the control plane said ([`FeedProxy::set_tampers`]). One request per
//! connection (it answers with `connection: close`), one thread per connection.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};

/// What the proxy does to the answers of the requests whose path starts with `prefix`.
#[derive(Debug, Clone)]
pub enum Tamper {
    /// The control plane's answer (status, headers, signature) with another body.
    ReplaceBody {
        /// Path prefix, e.g. `/v1/edge/changes`.
        prefix: String,
        /// The body sent instead.
        body: Vec<u8>,
    },
    /// A fixed answer instead of the control plane's (a recorded one, replayed).
    Answer {
        /// Path prefix.
        prefix: String,
        /// Status code.
        status: u16,
        /// Headers (no `content-length` or `connection`: the proxy adds them).
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
}

impl Tamper {
    fn prefix(&self) -> &str {
        match self {
            Tamper::ReplaceBody { prefix, .. } | Tamper::Answer { prefix, .. } => prefix,
        }
    }
}

/// A running forwarder; it stops when the test process ends.
pub struct FeedProxy {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    delay_ms: Arc<AtomicU64>,
    tamper: Arc<Mutex<Vec<Tamper>>>,
    tampered: Arc<AtomicU64>,
}

impl FeedProxy {
    /// Forwards to `upstream` (`http://host:port`), at first without delay or tampering.
    pub fn start(upstream: &str) -> Result<Self> {
        let upstream = upstream
            .strip_prefix("http://")
            .with_context(|| format!("{upstream}: only http:// upstreams"))?
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the feed proxy")?;
        let proxy = Self {
            url: format!("http://{}", listener.local_addr()?),
            delay_ms: Arc::new(AtomicU64::new(0)),
            tamper: Arc::new(Mutex::new(Vec::new())),
            tampered: Arc::new(AtomicU64::new(0)),
        };
        let (delay, tamper, tampered) = (
            proxy.delay_ms.clone(),
            proxy.tamper.clone(),
            proxy.tampered.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, delay, tamper, tampered) = (
                    upstream.clone(),
                    delay.clone(),
                    tamper.clone(),
                    tampered.clone(),
                );
                std::thread::spawn(move || {
                    let delay = Duration::from_millis(delay.load(Ordering::SeqCst));
                    let tampers = tamper.lock().map(|t| t.clone()).unwrap_or_default();
                    let _ = forward(client, &upstream, delay, &tampers, &tampered);
                });
            }
        });
        Ok(proxy)
    }

    /// Holds every request that arrives from now on for `delay` before forwarding it.
    pub fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// Tampers with the answers of the requests that arrive from now on, by the first rule
    /// whose prefix their path starts with (none: forward them as they are).
    pub fn set_tampers(&self, tampers: Vec<Tamper>) {
        if let Ok(mut current) = self.tamper.lock() {
            *current = tampers;
        }
    }

    /// How many answers were tampered with so far.
    pub fn tampered(&self) -> u64 {
        self.tampered.load(Ordering::SeqCst)
    }
}

/// Reads one request from `client`, waits `delay`, sends it to `upstream` with
/// `connection: close` and copies the answer back, or what the first matching rule of
/// `tampers` makes of it.
fn forward(
    client: TcpStream,
    upstream: &str,
    delay: Duration,
    tampers: &[Tamper],
    tampered: &AtomicU64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = String::new();
    reader.read_line(&mut head)?;
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
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
    let tamper = tampers
        .iter()
        .find(|tamper| path.starts_with(tamper.prefix()));
    match tamper {
        None => {
            std::io::copy(&mut server, &mut client)?;
        }
        Some(tamper) => {
            let mut answer = Vec::new();
            server.read_to_end(&mut answer)?;
            client.write_all(&tampered_answer(tamper, &answer))?;
            tampered.fetch_add(1, Ordering::SeqCst);
        }
    }
    client.shutdown(Shutdown::Both)
}

/// The raw answer `tamper` sends instead of `answer` (the control plane's, read to its end).
fn tampered_answer(tamper: &Tamper, answer: &[u8]) -> Vec<u8> {
    let (status_line, headers, body) = match tamper {
        Tamper::Answer {
            status,
            headers,
            body,
            ..
        } => (
            format!("HTTP/1.1 {status} X"),
            headers.clone(),
            body.clone(),
        ),
        Tamper::ReplaceBody { body, .. } => {
            let end = answer
                .windows(4)
                .position(|window| window == b"\r\n\r\n")
                .unwrap_or(answer.len());
            let head = String::from_utf8_lossy(&answer[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or("HTTP/1.1 502 X").to_owned();
            let headers = lines
                .filter_map(|line| line.split_once(':'))
                .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                .collect();
            (status_line, headers, body.clone())
        }
    };
    let mut raw = format!("{status_line}\r\n");
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if !matches!(
            lower.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    raw.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(&body);
    raw
}
