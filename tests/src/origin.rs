//! A tiny origin for the end-to-end tests and benchmarks: answers every request with
//! `200 {"method", "path", "headers": {name: value}, "header_list": [[name, value], ..], "body"}`,
//! so a test sees exactly what the edge forwarded, and records each request (method, the raw
//! request-target bytes, every header line in order) for [`Origin::received`], so a test can
//! also tell what never arrived. HTTP/1.1 with keep-alive, one thread per connection.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};

/// One request as the origin read it off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The method of the request line.
    pub method: String,
    /// The request-target of the request line, byte for byte (path and query).
    pub target: Vec<u8>,
    /// Every header line in order, names lower-cased, values trimmed (duplicates kept).
    pub headers: Vec<(String, String)>,
    /// The body's bytes (by `content-length`).
    pub body: Vec<u8>,
}

impl Received {
    /// The request-target as text (lossy for bytes that are not UTF-8).
    pub fn target_text(&self) -> String {
        String::from_utf8_lossy(&self.target).into_owned()
    }

    /// The values of header `name` (lower-case), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A running origin; it stops when the test process ends.
pub struct Origin {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Origin {
    /// Starts listening on a free port of 127.0.0.1.
    pub fn start() -> Result<Self> {
        Self::start_on("127.0.0.1:0")
    }

    /// Starts listening on `address`.
    pub fn start_on(address: &str) -> Result<Self> {
        let listener = TcpListener::bind(address)
            .with_context(|| format!("binding the origin to {address}"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let log = Arc::new(Mutex::new(Vec::new()));
        let recorder = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let recorder = recorder.clone();
                std::thread::spawn(move || serve(stream, &recorder));
            }
        });
        Ok(Self { url, log })
    }

    /// Every request received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Reads one line (up to and without its CRLF or LF); `None` at the end of the stream.
fn read_line(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            Some(line)
        }
    }
}

fn serve(stream: TcpStream, log: &Mutex<Vec<Received>>) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let mut writer = writer;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request_line) = read_line(&mut reader) else {
            return;
        };
        let mut parts = request_line.split(|b| *b == b' ').filter(|p| !p.is_empty());
        let method = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let target = parts.next().unwrap_or_default().to_vec();
        let mut header_list = Vec::new();
        let mut content_length = 0usize;
        loop {
            let Some(line) = read_line(&mut reader) else {
                return;
            };
            if line.is_empty() {
                break;
            }
            let line = String::from_utf8_lossy(&line);
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                let value = value.trim().to_owned();
                if name == "content-length" {
                    content_length = value.parse().unwrap_or(0);
                }
                header_list.push((name, value));
            }
        }
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let received = Received {
            method,
            target,
            headers: header_list,
            body,
        };
        let headers: BTreeMap<&str, &str> = received
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let answer = serde_json::json!({
            "method": received.method,
            "path": received.target_text(),
            "headers": headers,
            "header_list": received.headers,
            "body": String::from_utf8_lossy(&received.body),
        })
        .to_string();
        log.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(received);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-origin: keyplane-test-origin\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
