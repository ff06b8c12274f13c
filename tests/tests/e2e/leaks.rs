//! Leaked keys revoke themselves, end to end: a key reported through `POST /v1/leaks/report`,
//! and one in a signed GitHub secret-scanning report, are refused with 401 at every edge
//! within seconds of the report; the figures are printed.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyplane_tests::{Deployment, GITHUB_SCANNING_KEYS_FILE, Setup, send_bytes};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use serde_json::json;

const EDGES: usize = 2;

/// Creates a key and waits until every edge admits it.
fn admitted_key(d: &Deployment, name: &str) -> Result<String> {
    let (_, key) = d.create_key(json!({"name": name, "environment": "live"}))?;
    for edge in 0..EDGES {
        d.wait_for(Duration::from_secs(15), "the new key admitted", || {
            Ok(d.through_edge(edge, "/hello", Some(&key))?.status == 200)
        })?;
    }
    Ok(key)
}

/// Waits until every edge refuses `key`; the time from `since` until the last one did.
fn refused_everywhere(d: &Deployment, key: &str, since: Instant) -> Result<Duration> {
    for edge in 0..EDGES {
        d.wait_for(Duration::from_secs(15), "the leaked key refused", || {
            Ok(d.through_edge(edge, "/hello", Some(key))?.status == 401)
        })?;
    }
    Ok(since.elapsed())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_reported_key_and_a_key_in_a_github_report_are_refused_at_every_edge() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let mut d = Deployment::start(&setup, EDGES, |_| {})?;

    let key = admitted_key(&d, "pasted in a ticket")?;
    let reported = Instant::now();
    let answer = send_bytes(
        "POST",
        &format!("{}/v1/leaks/report", d.control_plane.url),
        &[("content-type", "application/json")],
        Some(
            json!({"key": key, "url": "https://tickets.example.com/42"})
                .to_string()
                .into_bytes(),
        ),
    )?;
    ensure!(answer.status == 202, "report: {answer:?}");
    let took = refused_everywhere(&d, &key, reported)?;
    println!(
        "leak report -> 401 at {EDGES} edges: {} ms",
        took.as_millis()
    );

    // GitHub: trust a test key pair, then a signed report.
    let github = SigningKey::from_slice(&[7; 32])?;
    let pem = github
        .verifying_key()
        .to_public_key_pem(Default::default())
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    std::fs::write(
        d.control_plane.data_dir().join(GITHUB_SCANNING_KEYS_FILE),
        json!({"public_keys": [{"key_identifier": "test-key", "key": pem, "is_current": true}]})
            .to_string(),
    )?;
    d.stop_control_plane();
    d.restart_control_plane()?;
    let key = admitted_key(&d, "committed to a public repo")?;
    let report = json!([{"token": key, "type": "keyplane_api_key", "url": "https://github.com/acme/app/blob/main/.env", "source": "content"}]).to_string();
    let signature: DerSignature = github.sign(report.as_bytes());
    let reported = Instant::now();
    let answer = send_bytes(
        "POST",
        &format!("{}/v1/leaks/github", d.control_plane.url),
        &[
            ("content-type", "application/json"),
            ("github-public-key-identifier", "test-key"),
            (
                "github-public-key-signature",
                &STANDARD.encode(signature.as_bytes()),
            ),
        ],
        Some(report.into_bytes()),
    )?;
    ensure!(answer.status == 200, "GitHub report: {answer:?}");
    ensure!(
        answer.json()?[0]["label"] == "true_positive",
        "feedback: {}",
        answer.body
    );
    let took = refused_everywhere(&d, &key, reported)?;
    println!(
        "GitHub report -> 401 at {EDGES} edges: {} ms",
        took.as_millis()
    );
    Ok(())
}
