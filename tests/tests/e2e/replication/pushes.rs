//! Pushes the control plane did not send as they are (unsigned, forged, replayed or
//! malformed) change nothing on the edge.

use anyhow::{Context as _, Result};
use keyplane_tests::signed;

use super::{code_of, deployment, live_key, revoke, until_status};

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
