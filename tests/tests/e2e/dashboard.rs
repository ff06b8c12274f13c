//! The dashboard in headless Chromium: `tests/browser/dashboard.mjs` drives the real control
//! plane's pages (setup link, sign-out and sign-in, a key created, copied once, regenerated
//! and revoked, the audit log, a webhook endpoint added, delivered to, disabled, re-keyed and
//! deleted, an invitation sent by mistake revoked, a viewer who may change nothing, the portal
//! framed in a host product's page) and asks the edge after each change; every page it visits
//! keeps a strict Content-Security-Policy and passes axe. This side starts the deployment,
//! hands the script its addresses, and reports the page weight.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use keyplane_tests::{BrowserTools, Deployment, Setup, workspace_root};
use serde_json::json;

/// The scope the browser ticks on the key it creates, and the edge route requiring it.
const SCOPE: &str = "docs:read";
const EDGE_PATH: &str = "/v1/docs/readme";
/// Where the webhook endpoint the browser adds posts, on the test origin.
const WEBHOOK_PATH: &str = "/hooks/keyplane";
/// The whole flow takes ~30 s on 2 cores; this is for a loaded machine.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
#[ignore = "needs the built worker, node 22, Chromium and tests/browser/node_modules: run `cargo xtask test`"]
fn a_person_manages_keys_in_the_dashboard_and_the_edge_follows() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let Some(browser) = BrowserTools::from_env() else {
        return Ok(());
    };
    let d = Deployment::start(&setup, 1, |options| {
        options.route_policy = Some(json!({
            "rules": [{"method": "GET", "path": "/v1/docs/**", "scopes": [SCOPE]}],
            "default_scopes": []
        }));
    })?;
    // A key made with the API already holds the scope, so the create form offers it as a box.
    d.create_key(json!({
        "name": "Docs reader (made with the API)",
        "environment": "live",
        "scopes": [SCOPE]
    }))?;
    // Another organization and one of its keys, which the portal must never show.
    let globex_admin = d.another_organization("Globex")?;
    let globex_key = keyplane_tests::send(
        "POST",
        &format!("{}/v1/keys", d.control_plane.url),
        &[("x-api-key", &globex_admin)],
        Some(&json!({"name": "Globex's own", "environment": "live"})),
    )?;
    ensure!(
        globex_key.status == 201,
        "Globex's key: {:?}",
        globex_key.body
    );
    let other_org_key_id = globex_key.json()?["record"]["id"]
        .as_str()
        .context("Globex's key id")?
        .to_owned();
    let screenshots = workspace_root()
        .join("target")
        .join("dashboard-screenshots");
    let run = browser.run_script(
        &setup,
        "dashboard.mjs",
        &[
            ("KEYPLANE_URL", d.control_plane.url.clone()),
            ("EDGE_URL", d.edge_url(0)),
            ("SETUP_LINK", d.setup_link.clone()),
            ("SCREENSHOT_DIR", screenshots.display().to_string()),
            ("EDGE_PATH", EDGE_PATH.to_owned()),
            ("KEY_SCOPE", SCOPE.to_owned()),
            ("ADMIN_KEY", d.admin_key.clone()),
            ("OTHER_ORG_KEY_ID", other_org_key_id),
            ("WEBHOOK_URL", format!("{}{WEBHOOK_PATH}", d.origin.url)),
        ],
        SCRIPT_TIMEOUT,
    )?;
    ensure!(
        run.status.success(),
        "tests/browser/dashboard.mjs failed ({}):\n{}",
        run.status,
        run.output()
    );
    // The endpoint the browser added was really posted to, signed: the key's creation and the
    // event sent again.
    let deliveries: Vec<_> = d
        .origin
        .received()
        .into_iter()
        .filter(|request| request.target_text() == WEBHOOK_PATH)
        .collect();
    ensure!(
        deliveries.len() >= 2,
        "{} deliveries reached {WEBHOOK_PATH}, not the 2 the browser saw listed",
        deliveries.len()
    );
    for delivery in &deliveries {
        ensure!(
            delivery
                .header_values("webhook-signature")
                .any(|value| value.starts_with("v1,")),
            "a delivery without a v1 signature: {:?}",
            delivery.headers
        );
    }
    let weight: u64 = run
        .lines
        .iter()
        .find_map(|line| {
            line.strip_prefix("page weight /keys: ")?
                .strip_suffix(" bytes")?
                .parse()
                .ok()
        })
        .context("the script printed no `page weight /keys: N bytes` line")?;
    println!(
        "page weight /keys: {weight} bytes ({:.1} KiB), screenshots in {}",
        weight as f64 / 1024.0,
        screenshots.display()
    );
    Ok(())
}
