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
