//! A raw HTTP/1.1 client: the request line goes on the wire exactly as given, so `//`,
//! `%2e%2e`, `\`, control bytes and non-UTF-8 bytes reach the server unchanged (an HTTP
//! library would parse, and may normalise, the URL first).
//!
//! One connection per request (`connection: close`). The answer is read until it is complete
//! (its `content-length`, the last chunk of a `chunked` body, or the end of the stream):
//! workerd keeps a connection open for a few seconds after answering, even when asked to close.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::Reply;

/// How long a raw request may take before it fails.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `method target HTTP/1.1` to `base_url` (`http://host:port`) with `headers` and an
/// empty body; 4xx/5xx are answers, not errors.
pub fn raw_request(
    base_url: &str,
    method: &str,
    target: &[u8],
    headers: &[(&str, &str)],
) -> Result<Reply> {
    raw_request_with_body(base_url, method, target, headers, &[])
}

/// As [`raw_request`], with `body` (its `content-length` sent), whatever the method: a GET or
/// HEAD with a body is legal HTTP.
pub fn raw_request_with_body(
    base_url: &str,
    method: &str,
    target: &[u8],
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply> {
    let authority = base_url
        .strip_prefix("http://")
        .context("raw requests are plain http://")?
        .trim_end_matches('/');
    let mut stream =
        TcpStream::connect(authority).with_context(|| format!("connecting to {authority}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut request = Vec::with_capacity(256 + target.len() + body.len());
    request.extend_from_slice(method.as_bytes());
    request.push(b' ');
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    request.extend_from_slice(authority.as_bytes());
    request.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    request.extend_from_slice(body);
    stream.write_all(&request).context("sending the request")?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = stream.read(&mut buffer).context("reading the answer")?;
        if read == 0 {
            return parse_answer(&answer);
        }
        answer.extend_from_slice(&buffer[..read]);
        if is_complete(&answer) {
            return parse_answer(&answer);
        }
    }
}

/// Whether `answer` holds a whole answer: its head, and all of a body whose end is known.
fn is_complete(answer: &[u8]) -> bool {
    let Some(head_end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
    let body = &answer[head_end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return dechunk(body).is_ok();
    }
    let length = head.split("\r\n").find_map(|line| {
        line.strip_prefix("content-length:")
            .and_then(|value| value.trim().parse::<usize>().ok())
    });
    length.is_some_and(|length| body.len() >= length)
}

/// Parses a whole HTTP/1.1 answer (status line, headers, body).
fn parse_answer(answer: &[u8]) -> Result<Reply> {
    let Some(head_end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!(
            "no complete answer head in {:?}",
            String::from_utf8_lossy(answer)
        );
    };
    let head = String::from_utf8_lossy(&answer[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let raw_body = &answer[head_end + 4..];
    let chunked = headers.iter().any(|(name, value)| {
        name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked")
    });
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok());
    let bytes = match (chunked, length) {
        (true, _) => dechunk(raw_body)?,
        (false, Some(length)) => raw_body.get(..length).context("truncated body")?.to_vec(),
        (false, None) => raw_body.to_vec(),
    };
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    })
}

/// Decodes a `chunked` body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).context("truncated chunk")?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).context("truncated chunk end")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_a_length_or_in_chunks_are_read_whole() {
        let plain = parse_answer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nhi")
            .expect("valid answer");
        assert_eq!((plain.status, plain.body.as_str()), (400, "hi"));
        assert_eq!(plain.header("content-length"), Some("2"));
        let chunked = parse_answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .expect("valid answer");
        assert_eq!(chunked.body, "abcde");
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nab").is_err());
        assert!(
            parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").is_err()
        );
    }

    #[test]
    fn an_answer_is_complete_once_its_body_has_arrived() {
        assert!(!is_complete(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"));
        assert!(!is_complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nh"
        ));
        assert!(is_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
        ));
        assert!(!is_complete(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n"
        ));
        assert!(is_complete(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
        ));
        assert!(!is_complete(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end"
        ));
    }
}
