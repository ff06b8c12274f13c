//! A plain-HTTP forwarder to put between an edge and the control plane, to act on the edge's
//! feed reads as a slow network or an attacker in the middle would: it can hold every request
//! for a set delay ([`FeedProxy::set_delay`]), and answer the requests whose path starts with
//! a prefix with something else than the control plane said ([`FeedProxy::set_tampers`]),
//! including an answer of the test's own signed for each request as the control plane signs
//! its answers ([`Tamper::Signed`]: a feed of another history, a large snapshot). One request
//! per connection (it answers with `connection: close`), one thread per connection.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use keyplane_shared::sync::{self, SignedResponse, SyncSecret};

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
    /// A 200 answer of the test's own, signed with `secret` for the request's nonce as the
    /// control plane signs its answers; the control plane is not asked (it may be stopped).
    Signed {
        /// Path prefix.
        prefix: String,
        /// The deployment's sync secret.
        secret: SyncSecret,
        /// The signed header fields (`sync::RESPONSE_FIELDS`) sent, by name.
        fields: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
        /// How long to wait between the answer's head with the first half of its body and
        /// the rest of the body (an answer arriving slowly).
        hold: Duration,
    },
}

impl Tamper {
    fn prefix(&self) -> &str {
        match self {
            Tamper::ReplaceBody { prefix, .. }
            | Tamper::Answer { prefix, .. }
            | Tamper::Signed { prefix, .. } => prefix,
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
    received: Arc<Mutex<Vec<String>>>,
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
            received: Arc::new(Mutex::new(Vec::new())),
        };
        let (delay, tamper, tampered, received) = (
            proxy.delay_ms.clone(),
            proxy.tamper.clone(),
            proxy.tampered.clone(),
            proxy.received.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, delay, tamper, tampered, received) = (
                    upstream.clone(),
                    delay.clone(),
                    tamper.clone(),
                    tampered.clone(),
                    received.clone(),
                );
                std::thread::spawn(move || {
                    let delay = Duration::from_millis(delay.load(Ordering::SeqCst));
                    let tampers = tamper.lock().map(|t| t.clone()).unwrap_or_default();
                    let _ = forward(client, &upstream, delay, &tampers, &tampered, &received);
                });
            }
        });
        Ok(proxy)
    }

    /// Starts a proxy in front of the control plane `options` names and points the edge at it.
    /// The edge's `EDGE_URL` is set to an address nothing listens on, so the control plane
    /// cannot push to it: the edge learns of changes only by pulling through the proxy.
    pub fn in_front_of(options: &mut crate::EdgeOptions) -> Result<Self> {
        let proxy = Self::start(&options.control_plane_url)?;
        options.control_plane_url = proxy.url.clone();
        options.var("EDGE_URL", "http://127.0.0.1:9/");
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

    /// How many requests whose path starts with `prefix` arrived so far (counted as they
    /// arrive, before any delay).
    pub fn received(&self, prefix: &str) -> usize {
        self.received.lock().map_or(0, |paths| {
            paths.iter().filter(|path| path.starts_with(prefix)).count()
        })
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
    received: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = String::new();
    reader.read_line(&mut head)?;
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    if let Ok(mut paths) = received.lock() {
        paths.push(path.clone());
    }
    let mut content_length = 0usize;
    let mut signature = String::new();
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
        if name == sync::SIGNATURE_HEADER {
            value.trim().clone_into(&mut signature);
        }
        if name != "connection" && name != "keep-alive" {
            head.push_str(&line);
        }
    }
    head.push_str("connection: close\r\n\r\n");
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    std::thread::sleep(delay);
    let mut client = client;
    let ask_upstream = || -> std::io::Result<TcpStream> {
        let mut server = TcpStream::connect(upstream)?;
        server.write_all(head.as_bytes())?;
        server.write_all(&body)?;
        Ok(server)
    };
    let answer = match tampers
        .iter()
        .find(|tamper| path.starts_with(tamper.prefix()))
    {
        None => {
            std::io::copy(&mut ask_upstream()?, &mut client)?;
            return client.shutdown(Shutdown::Both);
        }
        Some(Tamper::Signed {
            secret,
            fields,
            body,
            hold,
            ..
        }) => {
            let answer = signed_answer(secret, &signature, fields, body);
            let (first, rest) = answer.split_at(answer.len() - body.len() / 2);
            client.write_all(first)?;
            client.flush()?;
            std::thread::sleep(*hold);
            rest.to_vec()
        }
        Some(Tamper::Answer {
            status,
            headers,
            body,
            ..
        }) => {
            // Still sent on (the control plane sees the request), its answer dropped.
            ask_upstream()?.read_to_end(&mut Vec::new())?;
            raw_answer(&format!("HTTP/1.1 {status} X"), headers, body)
        }
        Some(Tamper::ReplaceBody { body, .. }) => {
            let mut answer = Vec::new();
            ask_upstream()?.read_to_end(&mut answer)?;
            with_body(&answer, body)
        }
    };
    client.write_all(&answer)?;
    tampered.fetch_add(1, Ordering::SeqCst);
    client.shutdown(Shutdown::Both)
}

/// A raw 200 answer with `fields` and `body`, signed with `secret` for the nonce of the
/// request's `signature` header (left unsigned when it has none).
fn signed_answer(
    secret: &SyncSecret,
    signature: &str,
    fields: &[(String, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut headers = fields.to_vec();
    if let Some(nonce) = sync::nonce_of(signature) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let field = |name: &str| {
            fields
                .iter()
                .find(|(field, _)| field.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        let response = SignedResponse {
            status: 200,
            fields: SignedResponse::fields_from(field),
            body,
        };
        let timestamp = i64::try_from(now).unwrap_or(i64::MAX);
        headers.push((
            sync::RESPONSE_SIGNATURE_HEADER.to_owned(),
            sync::sign_response(secret, timestamp, &nonce, &response),
        ));
    }
    raw_answer("HTTP/1.1 200 OK", &headers, body)
}

/// `answer` (the control plane's, read to its end) with another body.
fn with_body(answer: &[u8], body: &[u8]) -> Vec<u8> {
    let end = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("HTTP/1.1 502 X").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    raw_answer(&status_line, &headers, body)
}

/// A raw answer: `status_line`, `headers` (framing headers left out: its own are added) and
/// `body`.
fn raw_answer(status_line: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
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
    raw.extend_from_slice(body);
    raw
}
