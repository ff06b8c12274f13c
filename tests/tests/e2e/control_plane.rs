//! The `keyplane` binary, started as a user would start it.

use std::time::Duration;

use keyplane_tests::Setup;

#[test]
#[ignore = "needs the keyplane binary: run `cargo xtask test`"]
fn control_plane_binary_serves_healthz() -> anyhow::Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let control_plane = setup.start_control_plane()?;
    let reply = keyplane_tests::get(&format!("{}/healthz", control_plane.url), &[])?;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()?, serde_json::json!({ "status": "ok" }));
    Ok(())
}

#[test]
#[ignore = "needs the keyplane binary: run `cargo xtask test`"]
fn control_plane_binary_exits_cleanly_on_sigterm() -> anyhow::Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let mut control_plane = setup.start_control_plane()?;
    control_plane.signal("TERM");
    let status = control_plane.wait_timeout(Duration::from_secs(10))?;
    assert!(
        status.success(),
        "keyplane serve exited with {status} on SIGTERM"
    );
    Ok(())
}

#[test]
#[ignore = "needs the keyplane binary: run `cargo xtask test`"]
fn edge_env_prints_the_edge_secrets_the_server_then_uses() -> anyhow::Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let data_dir = keyplane_tests::fresh_dir("edge-env")?.join("not-yet-created");
    let first = setup.keyplane(&["edge-env", "--data-dir"], &data_dir)?;
    let second = setup.keyplane(&["edge-env", "--data-dir"], &data_dir)?;
    assert_eq!(first, second, "the secrets are generated once, then reused");
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 2, "{first}");
    assert!(lines[0].starts_with("KEYPLANE_PEPPERS=1:"), "{first}");
    assert!(lines[1].starts_with("KEYPLANE_EDGE_SECRET="), "{first}");
    let file = std::fs::read_to_string(data_dir.join("secrets.json"))?;
    let secret = lines[1].trim_start_matches("KEYPLANE_EDGE_SECRET=");
    assert!(
        file.contains(secret),
        "edge-env printed a secret the server would not use"
    );
    Ok(())
}
