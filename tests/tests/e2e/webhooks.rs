//! Webhooks with a real control plane: an event committed just before the control plane is
//! killed (SIGKILL) is delivered, signed, once the service is back; and the delay from a change
//! to its delivery, measured over a series of changes, is printed.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use keyplane_tests::{Deployment, Origin, Received, Setup, free_port};
use serde_json::{Value, json};
use sha2::Sha256;

/// Whether `delivery` carries a Standard Webhooks signature of its body by `secret`.
fn signed_by(delivery: &Received, secret: &str) -> Result<bool> {
    let header = |name: &str| {
        delivery
            .header_values(name)
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let key = STANDARD.decode(secret.strip_prefix("whsec_").context("a whsec_ secret")?)?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)?;
    mac.update(format!("{}.{}.", header("webhook-id"), header("webhook-timestamp")).as_bytes());
    mac.update(&delivery.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    Ok(header("webhook-signature")
        .split(' ')
        .any(|each| each == expected))
}

fn webhooks(origin: &Origin) -> Vec<Received> {
    origin
        .received()
        .into_iter()
        .filter(|request| request.header_values("webhook-id").next().is_some())
        .collect()
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn an_event_committed_before_a_crash_is_delivered_after_the_restart() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let mut d = Deployment::start(&setup, 1, |_| {})?;
    // The receiver is down when the change commits.
    let address = format!("127.0.0.1:{}", free_port()?);
    let made = d.api(
        "POST",
        "/v1/webhooks",
        Some(json!({"url": format!("http://{address}/hook"), "events": ["key.created"]})),
    )?;
    ensure!(made.status == 201, "endpoint: {made:?}");
    let secret = made.json()?["secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (id, _) = d.create_key(json!({"name": "before the crash", "environment": "live"}))?;
    d.kill_control_plane();

    let origin = Origin::start_on(&address)?;
    d.restart_control_plane()?;
    // The first attempt failed (the retry is due 10 s later), never ran (due at once), or was
    // cut short by the kill while claimed: then the claim's 60 s lease must end first.
    d.wait_for(Duration::from_secs(90), "the event delivered", || {
        Ok(!webhooks(&origin).is_empty())
    })?;
    let delivered = webhooks(&origin);
    let event: Value = serde_json::from_slice(&delivered[0].body)?;
    ensure!(event["type"] == "key.created", "{event}");
    ensure!(event["data"]["key_id"] == id.as_str(), "{event}");
    ensure!(
        signed_by(&delivered[0], &secret)?,
        "not signed by the endpoint's secret"
    );
    std::thread::sleep(Duration::from_secs(1));
    ensure!(webhooks(&origin).len() == 1, "delivered more than once");

    // With the receiver up: the delay from each answered change to its delivery.
    let mut delays = Vec::new();
    for n in 0..30 {
        let before = webhooks(&origin).len();
        let started = Instant::now();
        d.create_key(json!({"name": format!("k{n}"), "environment": "live"}))?;
        d.wait_for(Duration::from_secs(10), "delivered", || {
            Ok(webhooks(&origin).len() > before)
        })?;
        delays.push(started.elapsed());
    }
    delays.sort();
    println!(
        "webhook delivery after a create (30 creates, one endpoint): p50 {} ms, max {} ms",
        delays[delays.len() / 2].as_millis(),
        delays[delays.len() - 1].as_millis()
    );
    Ok(())
}
