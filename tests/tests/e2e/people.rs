//! People end to end: the first owner set up from the printed link, a developer's keys made
//! in a session, and the developer's departure revoking those keys at the edge. A session
//! cookie is worthless at the edge.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use keyplane_tests::{Deployment, Reply, Setup};
use serde_json::{Value, json};

const PROPAGATION: Duration = Duration::from_secs(15);
const PASSWORD: &str = "correct horse battery staple";

/// A signed-in browser: cookie, CSRF token, user id.
struct Browser {
    cookie: String,
    csrf: String,
    user_id: String,
}

fn call(d: &Deployment, browser: &Browser, method: &str, path: &str, body: Value) -> Result<Reply> {
    let origin = d.control_plane.url.clone();
    keyplane_tests::send(
        method,
        &format!("{}{path}", d.control_plane.url),
        &[
            ("cookie", &browser.cookie),
            ("origin", &origin),
            ("x-csrf-token", &browser.csrf),
        ],
        Some(&body),
    )
}

fn accept(d: &Deployment, link: &str, email: &str, name: &str) -> Result<Browser> {
    let token = link.split_once("#token=").context("a token in the link")?.1;
    let reply = keyplane_tests::send(
        "POST",
        &format!("{}/v1/invitations/accept", d.control_plane.url),
        &[],
        Some(&json!({"token": token, "email": email, "display_name": name, "password": PASSWORD})),
    )?;
    ensure!(reply.status == 201, "accepting {link}: {reply:?}");
    let cookie = reply
        .header("set-cookie")
        .and_then(|value| value.split(';').next())
        .context("a session cookie")?
        .to_owned();
    let body = reply.json()?;
    Ok(Browser {
        cookie,
        csrf: body["csrf_token"].as_str().context("csrf")?.to_owned(),
        user_id: body["user"]["id"].as_str().context("user")?.to_owned(),
    })
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_departing_members_keys_are_refused_at_the_edge() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let d = Deployment::start(&setup, 1, |_| {})?;
    let owner = accept(&d, &d.setup_link, "owner@example.com", "Olivia Owner")?;
    let invited = call(
        &d,
        &owner,
        "POST",
        "/v1/invitations",
        json!({"email": "dev@example.com", "role": "developer"}),
    )?;
    ensure!(invited.status == 201, "inviting: {invited:?}");
    let link = invited.json()?["link"].as_str().context("link")?.to_owned();
    let developer = accept(&d, &link, "dev@example.com", "Dan Dev")?;
    let mut keys = Vec::new();
    for name in ["dev laptop", "dev ci"] {
        let made = call(
            &d,
            &developer,
            "POST",
            "/v1/keys",
            json!({"name": name, "environment": "live"}),
        )?;
        ensure!(made.status == 201, "creating {name}: {made:?}");
        keys.push(made.json()?["key"].as_str().context("key")?.to_owned());
    }
    for key in &keys {
        d.wait_for(PROPAGATION, "the developer's key reaches the edge", || {
            Ok(d.through_edge(0, "/x", Some(key))?.status == 200)
        })?;
    }
    // The session cookie itself opens nothing at the edge.
    let url = format!("{}/x", d.edge_url(0));
    let with_cookie = keyplane_tests::get(&url, &[("cookie", &developer.cookie)])?;
    ensure!(
        with_cookie.status == 401,
        "a session at the edge: {with_cookie:?}"
    );
    // The developer leaves; their keys are revoked at once, everywhere.
    let removed = call(
        &d,
        &owner,
        "POST",
        &format!("/v1/members/{}/remove", developer.user_id),
        json!({"keys": "revoke"}),
    )?;
    ensure!(removed.status == 200, "removing: {removed:?}");
    for key in &keys {
        d.wait_for(
            PROPAGATION,
            "the departed developer's key is refused",
            || {
                let reply = d.through_edge(0, "/x", Some(key))?;
                Ok(reply.status == 401
                    && reply
                        .json()
                        .ok()
                        .and_then(|b| b["error"]["code"].as_str().map(str::to_owned))
                        == Some("revoked_api_key".to_owned()))
            },
        )?;
    }
    Ok(())
}
