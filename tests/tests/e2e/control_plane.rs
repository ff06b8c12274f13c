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
