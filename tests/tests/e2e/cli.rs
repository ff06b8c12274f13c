//! The `keyplane` CLI in a script against a real control plane and a real edge: scheduled
//! rotation (`tests/scripts/scheduled-rotation.sh`) — `rotate-due` with a grace period, the
//! old key admitted at the edge until the grace ends, then refused.

use std::process::Command;

use anyhow::Result;
use keyplane_tests::{Deployment, Setup, workspace_root};

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn scheduled_rotation_script_keeps_the_old_key_working_until_the_grace_ends() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let deployment = Deployment::start(&setup, 1, |_| {})?;
    let output = Command::new("bash")
        .arg(workspace_root().join("tests/scripts/scheduled-rotation.sh"))
        .env("KEYPLANE", setup.keyplane_bin())
        .env("KEYPLANE_URL", &deployment.control_plane.url)
        .env("KEYPLANE_API_KEY", &deployment.admin_key)
        .env("EDGE_URL", deployment.edge_url(0))
        .env("GRACE_SECONDS", "10")
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.ends_with("scheduled-rotation: ok\n"), "{stdout}");
    assert!(
        !stderr.contains("sk_live_"),
        "a key reached stderr: {stderr}"
    );
    Ok(())
}
