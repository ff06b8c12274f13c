//! The plain HTTP client the tests talk to the control plane, the edges and the origin with
//! ([`send`]); request-targets that must reach a server byte for byte go through
//! `raw_request` instead.

use std::time::Duration;

use anyhow::{Context as _, Result};

/// A plain-HTTP answer: status, headers and body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    pub(crate) headers: Vec<(String, String)>,
    /// The body as text (lossy for binary bodies).
    pub body: String,
    /// The body's bytes.
    pub bytes: Vec<u8>,
}

impl Reply {
    /// Every header, as received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("body is not JSON: {}", self.body))
    }
}

/// How long a request may go unanswered, unless the caller says otherwise.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `GET url` with `headers`; 4xx/5xx are answers, not errors.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Reply> {
    send("GET", url, headers, None)
}

/// `GET url` giving up after `timeout`.
pub fn get_with_timeout(url: &str, timeout: Duration) -> Result<Reply> {
    request_bytes("GET", url, &[], None, timeout)
}

/// `method url` with `headers` and an optional JSON body; 4xx/5xx are answers, not errors.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    json: Option<&serde_json::Value>,
) -> Result<Reply> {
    send_with_timeout(method, url, headers, json, TIMEOUT)
}

/// `method url` with `headers` and an optional JSON body, giving up after `timeout`.
pub fn send_with_timeout(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    json: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<Reply> {
    request_bytes(
        method,
        url,
        headers,
        json.map(|value| value.to_string().into_bytes()),
        timeout,
    )
}

/// `method url` with `headers` and optional body bytes.
pub fn send_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Reply> {
    request_bytes(method, url, headers, body, TIMEOUT)
}

fn request_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Reply> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if body.is_some()
        && !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        request = request.header("content-type", "application/json");
    }
    let sent = match body {
        Some(body) => request.body(body).map(|request| agent.run(request)),
        None => request.body(()).map(|request| agent.run(request)),
    };
    let mut response = sent
        .with_context(|| format!("building {method} {url}"))?
        .with_context(|| format!("{method} {url}"))?;
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .context("reading the body")?;
    let body = String::from_utf8_lossy(&bytes).into_owned();
    Ok(Reply {
        status: response.status().as_u16(),
        headers,
        body,
        bytes,
    })
}
