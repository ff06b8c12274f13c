//! The edge worker, built by worker-build, running under workerd through miniflare.

use keyplane_tests::Setup;

const NEEDS_BUILD: &str = "needs the built worker and node 22: run `cargo xtask test`";

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn edge_answers_health_check_under_workerd() -> anyhow::Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let edge = setup.start_edge()?;
    let reply = keyplane_tests::get(&format!("{}/__keyplane/health", edge.url), &[])?;
    assert_eq!(reply.status, 200, "{NEEDS_BUILD}: {reply:?}");
    assert_eq!(reply.json()?, serde_json::json!({ "status": "ok" }));
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn edge_rejects_request_without_key_with_bare_challenge() -> anyhow::Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let edge = setup.start_edge()?;
    let reply = keyplane_tests::get(&format!("{}/v1/contacts", edge.url), &[])?;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="keyplane""#)
    );
    let body = reply.json()?;
    assert_eq!(body["error"]["code"], "missing_api_key");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let request_id = body["error"]["request_id"].as_str().unwrap_or_default();
    assert!(request_id.starts_with("req_"), "{body}");
    assert_eq!(reply.header("x-keyplane-request-id"), Some(request_id));
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn edge_rejects_unknown_key_with_invalid_token_challenge() -> anyhow::Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let edge = setup.start_edge()?;
    let url = format!("{}/v1/contacts", edge.url);
    let key = "sk_test_0000000000000000000000000000000000000000";
    for header in [
        ("x-api-key", key.to_owned()),
        ("authorization", format!("Bearer {key}")),
    ] {
        let reply = keyplane_tests::get(&url, &[(header.0, &header.1)])?;
        assert_eq!(reply.status, 401, "{reply:?}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some(
                r#"Bearer realm="keyplane", error="invalid_token", error_description="The API key is not valid""#
            )
        );
        assert_eq!(reply.json()?["error"]["code"], "invalid_api_key");
    }
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn edge_gives_each_rejection_its_own_request_id() -> anyhow::Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let edge = setup.start_edge()?;
    let url = format!("{}/", edge.url);
    let first = keyplane_tests::get(&url, &[])?.json()?;
    let second = keyplane_tests::get(&url, &[])?.json()?;
    assert_ne!(first["error"]["request_id"], second["error"]["request_id"]);
    Ok(())
}

/// Streams a chunked `POST /__keyplane/sync` of up to `total` bytes with `signature`, and
/// reads the answer while it is still being sent; the status and how much had been sent when
/// the answer came.
fn chunked_push(edge: &str, signature: Option<&str>, total: usize) -> anyhow::Result<(u16, usize)> {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let address = edge.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut head = format!(
        "POST /__keyplane/sync?edge=edge HTTP/1.1\r\nhost: {address}\r\n\
         transfer-encoding: chunked\r\ncontent-type: application/octet-stream\r\n"
    );
    if let Some(signature) = signature {
        head.push_str(&format!("x-keyplane-signature: {signature}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let mut writer = stream.try_clone()?;
    let counter = sent.clone();
    std::thread::spawn(move || {
        let chunk = vec![0x55u8; 256 << 10];
        while counter.load(Ordering::SeqCst) < total {
            let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if writer.write_all(&framed).is_err() {
                return;
            }
            counter.fetch_add(chunk.len(), Ordering::SeqCst);
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line)?;
    let at_answer = sent.load(Ordering::SeqCst);
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status line: {status_line:?}"))?;
    Ok((status, at_answer))
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_push_body_is_read_only_up_to_its_limit_before_the_signature_is_checked() -> anyhow::Result<()>
{
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let edge = setup.start_edge()?;
    const TOTAL: usize = 64 << 20;
    // Unsigned: refused before any of the body is read.
    let (status, sent) = chunked_push(&edge.url, None, TOTAL)?;
    assert_eq!(status, 401);
    assert!(sent < TOTAL, "the edge read the whole unsigned body first");
    // A signature of the right shape and age, but forged: the body is read up to the push
    // limit (8 MiB) to check it, and no further.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let forged = format!("t={now},n={},v1={}", "ab".repeat(16), "cd".repeat(32));
    let (status, sent) = chunked_push(&edge.url, Some(&forged), TOTAL)?;
    assert_eq!(status, 413);
    assert!(
        sent < TOTAL,
        "the edge read all {TOTAL} bytes before refusing ({sent} sent)"
    );
    Ok(())
}
