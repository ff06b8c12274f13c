//! Origin answers the edge cannot relay as they came: the entry module's relay (a new
//! `Response` over the origin's body, with the rate-limit fields and request id set) throws,
//! and the edge answers 500 `edge_error` itself, with the same fields, its usage event
//! recorded with that status (`relay_failed` in `edge/src/forward.rs`). Nothing else answers
//! such a request: without that path the caller would get the runtime's bare exception page.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use keyplane_tests::{Deployment, Setup};
use serde_json::json;

const PROPAGATION: Duration = Duration::from_secs(15);

/// An origin answering every request with status 999, which HTTP/1.1 can carry (three digits)
/// but a `Response` cannot be made with (200–599); its URL.
fn origin_answering_999() -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the odd origin")?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Until the end of the request's header block (the tests send no body).
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 999 Odd\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
                );
            });
        }
    });
    Ok(url)
}

#[test]
#[ignore = "end-to-end: needs the built worker and keyplane binary (cargo xtask test)"]
fn an_origin_answer_that_cannot_be_relayed_gets_500_with_the_rate_limit_fields() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let origin = origin_answering_999()?;
    let d = Deployment::start(&setup, 1, |options| {
        options.rate_limit = (100, 10);
        options.origin_url = origin.clone();
    })?;
    let (id, key) = d.create_key(json!({"name": "odd origin", "environment": "live"}))?;
    d.wait_for(PROPAGATION, "the key reaching the edge", || {
        Ok(d.through_edge(0, "/x", Some(&key))?.status != 401)
    })?;
    let reply = d.through_edge(0, "/x", Some(&key))?;
    ensure!(reply.status == 500, "{reply:?}");
    let body = reply.json()?;
    ensure!(body["error"]["code"] == "edge_error", "{body}");
    let request_id = body["error"]["request_id"].as_str().unwrap_or_default();
    ensure!(request_id.starts_with("req_"), "{body}");
    ensure!(
        reply.header("x-keyplane-request-id") == Some(request_id),
        "{reply:?}"
    );
    ensure!(
        reply.header("x-ratelimit-limit") == Some("100"),
        "{reply:?}"
    );
    ensure!(
        reply.header("ratelimit-policy") == Some("\"key\";q=100;w=60"),
        "{reply:?}"
    );
    d.wait_for_usage_event(&id, request_id, 500)?;
    Ok(())
}
