//! A tiny origin for the end-to-end tests and benchmarks: answers every request with
//! `200 {"method", "path", "headers": {name: value}}`, so a test sees exactly what the edge
//! forwarded. HTTP/1.1 with keep-alive, one thread per connection.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};

use anyhow::{Context as _, Result};

/// A running origin; it stops when the test process ends.
pub struct Origin {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
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
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(stream));
            }
        });
        Ok(Self { url })
    }
}

fn serve(stream: TcpStream) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let mut writer = writer;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = BTreeMap::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                let value = value.trim().to_owned();
                if name == "content-length" {
                    content_length = value.parse().unwrap_or(0);
                }
                headers.insert(name, value);
            }
        }
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer = serde_json::json!({
            "method": method,
            "path": path,
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        })
        .to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-origin: keyplane-test-origin\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
