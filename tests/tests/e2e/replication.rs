//! The issue's end-to-end scenarios: the real control plane (temporary SQLite), real edges
//! under workerd, a local origin. Keys are created through the API and checked through the edge.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use keyplane_shared::{ApiKey, Environment, KeyPrefix};
use keyplane_tests::{Deployment, FeedProxy, Reply, Setup, signed};
use serde_json::{Value, json};

/// How long a change may take to reach an edge before a test fails. The target is < 1 s and
/// the propagation benchmark measures it; this bound only has to survive a loaded CI machine,
/// where one push may stall for the pusher's 5 s timeout before its retry lands.
const PROPAGATION: Duration = Duration::from_secs(15);
/// The grace period of the rotation scenario: longer than PROPAGATION, so the new key reaches
/// the edge within it even on a loaded machine.
const GRACE: Duration = Duration::from_secs(PROPAGATION.as_secs() + 10);

fn write_policy() -> Value {
    json!({
        "rules": [
            {"path": "/public/**", "public": true},
            {"method": "POST", "path": "/v1/contacts/**", "scopes": ["contacts:write"]},
            {"path": "/v1/contacts/**", "scopes": ["contacts:read"]}
        ]
    })
}

fn deployment(edges: usize) -> Result<Option<Deployment>> {
    let Some(setup) = Setup::from_env() else {
        return Ok(None);
    };
    Deployment::start(&setup, edges, |options| {
        options.route_policy = Some(write_policy());
    })
    .map(Some)
}

fn status_of(reply: &Reply) -> u16 {
    reply.status
}

fn code_of(reply: &Reply) -> String {
    reply
        .json()
        .ok()
        .and_then(|body| body["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Waits until `key` gets `status` on edge `edge` for `GET path`.
fn until_status(d: &Deployment, edge: usize, path: &str, key: &str, status: u16) -> Result<()> {
    d.wait_for(
        PROPAGATION,
        &format!("edge {edge} answering {status}"),
        || Ok(d.through_edge(edge, path, Some(key))?.status == status),
    )?;
    Ok(())
}

/// Revokes key `id` through the API, for `reason`.
fn revoke(d: &Deployment, id: &str, reason: &str) -> Result<()> {
    let revoked = d.api(
        "POST",
        &format!("/v1/keys/{id}/revoke"),
        Some(json!({"reason": reason})),
    )?;
    ensure!(revoked.status == 200, "revoking {id}: {revoked:?}");
    Ok(())
}

fn live_key(d: &Deployment, scopes: &[&str]) -> Result<(String, String)> {
    d.create_key(json!({"name": "e2e", "environment": "live", "scopes": scopes}))
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_valid_key_reaches_the_origin_with_identity_and_without_spoofed_headers() -> Result<()> {
    let Some(d) = deployment(1)? else {
        return Ok(());
    };
    let (id, key) = live_key(&d, &["contacts:read"])?;
    until_status(&d, 0, "/v1/contacts/1", &key, 200)?;

    let url = format!("{}/v1/contacts/1?page=2", d.edge_url(0));
    let spoofed = [
        ("x-api-key", key.as_str()),
        ("x-keyplane-key-id", "key_spoofed"),
        ("x-keyplane-org-id", "org_spoofed"),
        ("x-keyplane-scopes", "admin:full"),
        ("x-keyplane-env", "test"),
        ("x-keyplane-request-id", "req_spoofed"),
        ("x-keyplane-anything", "spoofed"),
        ("x-custom", "kept"),
    ];
    let reply = keyplane_tests::get(&url, &spoofed)?;
    ensure!(reply.status == 200, "{reply:?}");
    ensure!(
        reply.header("x-origin") == Some("keyplane-test-origin"),
        "not from the origin: {reply:?}"
    );
    let seen = reply.json()?;
    let headers = &seen["headers"];
    assert_eq!(seen["path"], "/v1/contacts/1?page=2");
    assert_eq!(headers["x-keyplane-key-id"], id.as_str());
    assert!(
        headers["x-keyplane-org-id"]
            .as_str()
            .is_some_and(|org| org.starts_with("org_") && org != "org_spoofed"),
        "{seen}"
    );
    assert_eq!(headers["x-keyplane-scopes"], "contacts:read");
    assert_eq!(headers["x-keyplane-env"], "live");
    let request_id = headers["x-keyplane-request-id"]
        .as_str()
        .unwrap_or_default();
    assert!(
        request_id.starts_with("req_") && request_id != "req_spoofed",
        "{seen}"
    );
    assert_eq!(reply.header("x-keyplane-request-id"), Some(request_id));
    assert!(headers.get("x-keyplane-anything").is_none(), "{seen}");
    assert!(
        headers.get("x-api-key").is_none(),
        "the origin saw the key: {seen}"
    );
    assert_eq!(headers["x-custom"], "kept");

    // The same through Authorization: Bearer, which is dropped too.
    let bearer = format!("Bearer {key}");
    let reply = keyplane_tests::get(&url, &[("authorization", &bearer)])?;
    ensure!(reply.status == 200, "{reply:?}");
    assert!(
        reply.json()?["headers"].get("authorization").is_none(),
        "{reply:?}"
    );

    // Other credentials are the origin's: Basic next to x-api-key passes through.
    let reply = keyplane_tests::get(
        &url,
        &[("x-api-key", &key), ("authorization", "Basic dXNlcjpwYXNz")],
    )?;
    ensure!(reply.status == 200, "{reply:?}");
    assert_eq!(
        reply.json()?["headers"]["authorization"],
        "Basic dXNlcjpwYXNz"
    );

    // A public route goes through without a key and without identity; the origin's own
    // credentials reach it, a Keyplane key never does.
    let public = format!("{}/public/status", d.edge_url(0));
    let reply = keyplane_tests::get(&public, &[])?;
    ensure!(reply.status == 200, "{reply:?}");
    assert!(reply.json()?["headers"].get("x-keyplane-key-id").is_none());
    let reply = keyplane_tests::get(&public, &[("authorization", "Bearer origin-token")])?;
    assert_eq!(
        reply.json()?["headers"]["authorization"],
        "Bearer origin-token"
    );
    let reply = keyplane_tests::get(&public, &[("authorization", &bearer), ("x-api-key", &key)])?;
    let headers = &reply.json()?["headers"];
    assert!(
        headers.get("authorization").is_none() && headers.get("x-api-key").is_none(),
        "a key reached the origin on a public route: {headers}"
    );
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn refusals_are_401_and_unknown_and_wrong_keys_look_identical() -> Result<()> {
    let Some(d) = deployment(1)? else {
        return Ok(());
    };
    let (_, key) = live_key(&d, &["contacts:read"])?;
    until_status(&d, 0, "/v1/contacts", &key, 200)?;

    let missing = d.through_edge(0, "/v1/contacts", None)?;
    assert_eq!(
        (missing.status, code_of(&missing).as_str()),
        (401, "missing_api_key")
    );
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="keyplane""#)
    );

    let prefix = KeyPrefix::new("sk").context("prefix")?;
    let unknown = ApiKey::generate(&prefix, Environment::Live).context("generate")?;
    let mut bad_checksum = key.clone();
    let last = bad_checksum.pop().context("empty key")?;
    bad_checksum.push(if last == 'A' { 'B' } else { 'A' });
    let wrong_secret = {
        // Same prefix and environment, another body: a well-formed key that is not this one.
        ApiKey::generate(&prefix, Environment::Live).context("generate")?
    };
    let bodies: Vec<(String, Reply)> = [
        ("malformed", "hello".to_owned()),
        ("bad checksum", bad_checksum),
        ("unknown", unknown.expose_secret().to_owned()),
        ("wrong secret", wrong_secret.expose_secret().to_owned()),
        ("oversized", "sk_live_".to_owned() + &"a".repeat(8000)),
    ]
    .into_iter()
    .map(|(what, presented)| {
        Ok((
            what.to_owned(),
            d.through_edge(0, "/v1/contacts", Some(&presented))?,
        ))
    })
    .collect::<Result<_>>()?;
    let normalized = |reply: &Reply| -> Result<(u16, Option<String>, Value)> {
        let mut body = reply.json()?;
        body["error"]["request_id"] = Value::Null;
        Ok((
            reply.status,
            reply.header("www-authenticate").map(str::to_owned),
            body,
        ))
    };
    let first = normalized(&bodies[0].1)?;
    assert_eq!(first.0, 401);
    assert_eq!(first.2["error"]["code"], "invalid_api_key");
    for (what, reply) in &bodies {
        assert_eq!(normalized(reply)?, first, "{what} differs: {reply:?}");
    }
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn scopes_expiry_and_environment_are_enforced() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let d = Deployment::start(&setup, 1, |options| {
        options.route_policy = Some(write_policy());
        options.accepted_environments = Some("live".into());
    })?;
    let (id, key) = live_key(&d, &["contacts:read"])?;
    until_status(&d, 0, "/v1/contacts/1", &key, 200)?;

    // Wrong scope: 403 naming the scope.
    let url = format!("{}/v1/contacts/1", d.edge_url(0));
    let post =
        keyplane_tests::send_bytes("POST", &url, &[("x-api-key", &key)], Some(b"{}".to_vec()))?;
    assert_eq!(
        (post.status, code_of(&post).as_str()),
        (403, "insufficient_scope"),
        "{post:?}"
    );
    assert!(
        post.json()?["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("contacts:write"))
    );
    assert_eq!(
        post.header("www-authenticate"),
        Some(r#"Bearer realm="keyplane", error="insufficient_scope", scope="contacts:write""#)
    );

    // Update scopes: takes effect.
    let patched = d.api(
        "PATCH",
        &format!("/v1/keys/{id}"),
        Some(json!({"scopes": ["contacts:read", "contacts:write"]})),
    )?;
    assert_eq!(patched.status, 200, "{patched:?}");
    d.wait_for(PROPAGATION, "scope update reaching the edge", || {
        let reply =
            keyplane_tests::send_bytes("POST", &url, &[("x-api-key", &key)], Some(b"{}".to_vec()))?;
        Ok(reply.status == 200)
    })?;

    // A test key on this live-only edge: 401 invalid_api_key, like any unusable key.
    let (_, test_key) =
        d.create_key(json!({"name": "t", "environment": "test", "scopes": ["contacts:read"]}))?;
    let (_, marker) = live_key(&d, &[])?; // created after the test key: once it works, both arrived
    until_status(&d, 0, "/other", &marker, 200)?;
    let reply = d.through_edge(0, "/v1/contacts/1", Some(&test_key))?;
    assert_eq!(
        (reply.status, code_of(&reply).as_str()),
        (401, "invalid_api_key"),
        "{reply:?}"
    );

    // Expiry: a key that expires in a few seconds works until then, then answers 401
    // expired_api_key. The window is generous: the expiry is whole seconds, and a loaded
    // machine may take a while to create the key and propagate it.
    let lifetime = PROPAGATION + Duration::from_secs(5);
    let expires = time_in(lifetime)?;
    let (_, short) =
        d.create_key(json!({"name": "short", "environment": "live", "expires": expires}))?;
    d.wait_for(
        lifetime - Duration::from_secs(1),
        "the short-lived key working at the edge before it expires",
        || Ok(d.through_edge(0, "/other", Some(&short))?.status == 200),
    )?;
    d.wait_for(
        lifetime + Duration::from_secs(10),
        "the key expiring at the edge",
        || {
            let reply = d.through_edge(0, "/other", Some(&short))?;
            Ok(reply.status == 401 && code_of(&reply) == "expired_api_key")
        },
    )?;
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn revocation_reaches_every_edge_and_rotation_honours_the_grace_period() -> Result<()> {
    let Some(d) = deployment(2)? else {
        return Ok(());
    };
    let (id, key) = live_key(&d, &[])?;
    for edge in 0..2 {
        until_status(&d, edge, "/x", &key, 200)?;
    }
    revoke(&d, &id, "compromised")?;
    for edge in 0..2 {
        d.wait_for(PROPAGATION, "revocation reaching the edge", || {
            let reply = d.through_edge(edge, "/x", Some(&key))?;
            Ok(reply.status == 401 && code_of(&reply) == "revoked_api_key")
        })?;
    }

    let (old_id, old_key) = live_key(&d, &[])?;
    until_status(&d, 1, "/x", &old_key, 200)?;
    let rotated = d.api(
        "POST",
        &format!("/v1/keys/{old_id}/rotate"),
        Some(json!({"grace_seconds": GRACE.as_secs()})),
    )?;
    assert_eq!(rotated.status, 201, "{rotated:?}");
    let new_key = rotated.json()?["key"].as_str().context("key")?.to_owned();
    // Within PROPAGATION, well inside the grace period.
    until_status(&d, 1, "/x", &new_key, 200)?;
    assert_eq!(
        status_of(&d.through_edge(1, "/x", Some(&old_key))?),
        200,
        "the old key stops before its grace ends"
    );
    d.wait_for(
        GRACE + Duration::from_secs(10),
        "the old key's grace ending",
        || {
            let reply = d.through_edge(1, "/x", Some(&old_key))?;
            Ok(reply.status == 401)
        },
    )?;
    assert_eq!(d.through_edge(1, "/x", Some(&new_key))?.status, 200);
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_restarted_edge_enforces_everything_even_with_the_control_plane_down() -> Result<()> {
    let Some(mut d) = deployment(1)? else {
        return Ok(());
    };
    let (_, kept) = live_key(&d, &["contacts:read"])?;
    let (revoked_id, revoked) = live_key(&d, &[])?;
    revoke(&d, &revoked_id, "other")?;
    until_status(&d, 0, "/x", &revoked, 401)?;
    until_status(&d, 0, "/v1/contacts/1", &kept, 200)?;

    // Control plane down: the edge keeps serving its last table.
    d.stop_control_plane();
    assert_eq!(
        d.through_edge(0, "/v1/contacts/1", Some(&kept))?.status,
        200
    );
    assert_eq!(
        code_of(&d.through_edge(0, "/x", Some(&revoked))?),
        "revoked_api_key"
    );

    // Edge restarted while the control plane is still down: the table comes from storage.
    d.stop_edge(0);
    d.start_edge(0)?;
    assert_eq!(
        d.through_edge(0, "/v1/contacts/1", Some(&kept))?.status,
        200
    );
    assert_eq!(
        code_of(&d.through_edge(0, "/x", Some(&revoked))?),
        "revoked_api_key"
    );
    let post = format!("{}/v1/contacts/1", d.edge_url(0));
    let reply =
        keyplane_tests::send_bytes("POST", &post, &[("x-api-key", &kept)], Some(Vec::new()))?;
    assert_eq!(reply.status, 403, "scopes survive the restart: {reply:?}");

    // The control plane returns: changes flow again.
    d.restart_control_plane()?;
    let (_, fresh) = live_key(&d, &[])?;
    until_status(&d, 0, "/x", &fresh, 200)?;
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn an_edge_that_was_down_during_a_revocation_rejects_the_key_right_after_it_returns() -> Result<()>
{
    let Some(mut d) = deployment(1)? else {
        return Ok(());
    };
    let (id, key) = live_key(&d, &[])?;
    until_status(&d, 0, "/x", &key, 200)?;
    d.stop_edge(0);
    revoke(&d, &id, "compromised")?;
    d.start_edge(0)?;
    // No waiting: the very first request after the restart is refused.
    let reply = d.through_edge(0, "/x", Some(&key))?;
    assert_eq!(
        (reply.status, code_of(&reply).as_str()),
        (401, "revoked_api_key"),
        "{reply:?}"
    );
    Ok(())
}

/// The restarted edge's store catches up with the control plane before anything reads its
/// table: here the catch-up is slowed to 3 s (a forwarder in front of the control plane) and
/// pushes cannot reach the edge, so only that pull can bring the revocation; an isolate that
/// copied the stored table meanwhile would admit the revoked key.
#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn requests_during_a_restarted_edges_catch_up_wait_for_it() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let proxy = std::cell::OnceCell::new();
    let mut d = Deployment::start(&setup, 1, |options| {
        match FeedProxy::start(&options.control_plane_url) {
            Ok(started) => {
                options.control_plane_url = started.url.clone();
                let _ = proxy.set(started);
            }
            Err(error) => eprintln!("feed proxy: {error:#}"),
        }
        // Nothing listens there: the control plane's pushes never arrive.
        options.var("EDGE_URL", "http://127.0.0.1:9/");
        options.pull_interval_secs = 3600;
    })?;
    let proxy = proxy.get().context("the feed proxy started")?;
    let (id, key) = live_key(&d, &[])?;
    // Without pushes, a restart's catch-up is what brings the new key.
    d.stop_edge(0);
    d.start_edge(0)?;
    until_status(&d, 0, "/x", &key, 200)?;
    d.stop_edge(0);
    revoke(&d, &id, "compromised")?;
    proxy.set_delay(Duration::from_secs(3));
    d.launch_edge(0)?;
    // The status call wakes the store, which starts its (slowed) catch-up; the request comes
    // while that is under way.
    let started = std::time::Instant::now();
    let reply = std::thread::scope(|scope| {
        let status = scope.spawn(|| d.edge_status(0));
        std::thread::sleep(Duration::from_millis(750));
        let reply = d.through_edge(0, "/x", Some(&key));
        let status = status
            .join()
            .map_err(|_| anyhow::anyhow!("status panicked"));
        status??;
        reply
    })?;
    assert_eq!(
        (reply.status, code_of(&reply).as_str()),
        (401, "revoked_api_key"),
        "{reply:?} after {:?}",
        started.elapsed()
    );
    ensure!(
        started.elapsed() >= Duration::from_secs(2),
        "the request was answered before the slowed catch-up ended: {:?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn unsigned_forged_replayed_or_malformed_pushes_change_nothing() -> Result<()> {
    let Some(d) = deployment(1)? else {
        return Ok(());
    };
    let (id, key) = live_key(&d, &[])?;
    until_status(&d, 0, "/x", &key, 200)?;
    let before = d.edge_status(0)?;

    // A real, signed change from the feed that would revoke the key: captured, then replayed.
    revoke(&d, &id, "other")?;
    until_status(&d, 0, "/x", &key, 401)?;
    let seq = d.edge_status(0)?["applied_seq"]
        .as_u64()
        .context("applied_seq")?;
    let feed = signed(
        &d.secrets,
        "GET",
        &d.control_plane.url,
        &format!("/v1/edge/changes?after={}", seq - 1),
        Vec::new(),
    )?;
    assert_eq!(feed.status, 200, "{feed:?}");
    let body = feed.bytes.clone();
    assert!(!body.is_empty());
    // Pushes name the edge and where the changes start in the feed's lineage (signed).
    let sync_path = format!(
        "/__keyplane/sync?edge=edge-0&history={}&after={}&chain={}",
        feed.header("x-keyplane-history").context("history")?,
        seq - 1,
        feed.header("x-keyplane-chain").context("chain")?,
    );

    let edge = d.edge_url(0);
    let push_url = format!("{edge}{sync_path}");
    let unsigned = keyplane_tests::send_bytes("POST", &push_url, &[], Some(body.clone()))?;
    assert_eq!(
        (unsigned.status, code_of(&unsigned).as_str()),
        (401, "invalid_signature")
    );
    let forged_secrets = keyplane_tests::DeploymentSecrets::generate()?;
    let forged = signed(&forged_secrets, "POST", &edge, &sync_path, body.clone())?;
    assert_eq!(
        (forged.status, code_of(&forged).as_str()),
        (401, "invalid_signature")
    );
    let garbage = signed(
        &d.secrets,
        "POST",
        &edge,
        &sync_path,
        b"not a change batch".to_vec(),
    )?;
    assert_eq!(
        (garbage.status, code_of(&garbage).as_str()),
        (400, "malformed_changes"),
        "{garbage:?}"
    );

    // A correctly signed push is accepted once (the change is already applied: a no-op) …
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let header = keyplane_shared::sync::sign_now(
        &d.secrets.sync_secret()?,
        i64::try_from(now)?,
        &keyplane_shared::sync::SignedRequest {
            method: "POST",
            path_and_query: &sync_path,
            body: &body,
        },
    )
    .map_err(|error| anyhow::anyhow!("{error}"))?;
    let headers = [(keyplane_shared::sync::SIGNATURE_HEADER, header.as_str())];
    let first = keyplane_tests::send_bytes("POST", &push_url, &headers, Some(body.clone()))?;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.json()?["applied_seq"].as_u64(), Some(seq));
    // … and refused when replayed.
    let replayed = keyplane_tests::send_bytes("POST", &push_url, &headers, Some(body.clone()))?;
    assert_eq!(
        (replayed.status, code_of(&replayed).as_str()),
        (401, "replayed_request"),
        "{replayed:?}"
    );
    // A stale signature (older than the window) is refused.
    let stale = keyplane_shared::sync::sign_now(
        &d.secrets.sync_secret()?,
        i64::try_from(now)? - 301,
        &keyplane_shared::sync::SignedRequest {
            method: "POST",
            path_and_query: &sync_path,
            body: &body,
        },
    )
    .map_err(|error| anyhow::anyhow!("{error}"))?;
    let reply = keyplane_tests::send_bytes(
        "POST",
        &push_url,
        &[(keyplane_shared::sync::SIGNATURE_HEADER, stale.as_str())],
        Some(body.clone()),
    )?;
    assert_eq!(
        (reply.status, code_of(&reply).as_str()),
        (401, "invalid_signature")
    );

    let status = d.edge_status(0)?;
    assert_eq!(status["applied_seq"].as_u64(), Some(seq));
    assert!(before["applied_seq"].as_u64() < Some(seq));
    Ok(())
}

/// An RFC 3339 time `after` from now, to whole seconds (`2026-12-02T12:00:00Z`).
fn time_in(after: Duration) -> Result<String> {
    let at = time::OffsetDateTime::now_utc() + after;
    let at = at.replace_nanosecond(0)?;
    Ok(at.format(&time::format_description::well_known::Rfc3339)?)
}
