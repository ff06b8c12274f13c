//! Usage reporting end to end: requests through the edge show up in the control plane's usage
//! API with the right fields, and a control-plane outage loses none of them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use keyplane_tests::{Deployment, Setup};
use serde_json::{Value, json};

/// Longest a usage event may take to reach the control plane in these tests.
const DELIVERY: Duration = Duration::from_secs(15);

fn deployment() -> Result<Option<Deployment>> {
    let Some(setup) = Setup::from_env() else {
        return Ok(None);
    };
    Deployment::start(&setup, 1, |options| {
        options.var("USAGE_FLUSH_MS", "200");
        options.route_policy = Some(json!({"rules": [
            {"method": "POST", "path": "/v1/contacts/**", "scopes": ["contacts:write"]}
        ]}));
    })
    .map(Some)
}

/// Every usage record of key `id` (all pages).
fn usage_of(d: &Deployment, id: &str) -> Result<Vec<Value>> {
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/keys/{id}/usage?limit=100");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let reply = d.api("GET", &path, None)?;
        ensure!(reply.status == 200, "usage API: {reply:?}");
        let page = reply.json()?;
        records.extend(page["data"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(records),
        }
    }
}

fn request_id(reply: &keyplane_tests::Reply) -> Result<String> {
    reply
        .header("x-keyplane-request-id")
        .map(str::to_owned)
        .context("no request id")
}

#[test]
#[ignore = "end-to-end: needs the built worker and keyplane binary (cargo xtask test)"]
fn requests_through_the_edge_appear_in_the_usage_api_with_their_fields() -> Result<()> {
    let Some(d) = deployment()? else {
        return Ok(());
    };
    let (id, key) = d.create_key(json!({"name": "reader", "environment": "live"}))?;
    d.wait_for(DELIVERY, "the key reaching the edge", || {
        Ok(d.through_edge(0, "/warmup", Some(&key))?.status == 200)
    })?;
    let url = format!("{}/v1/contacts/7?token=not-logged", d.edge_url(0));
    let allowed = keyplane_tests::get(
        &url,
        &[("x-api-key", &key), ("cf-connecting-ip", "203.0.113.7")],
    )?;
    ensure!(allowed.status == 200, "{allowed:?}");
    let refused = keyplane_tests::send(
        "POST",
        &url,
        &[("x-api-key", &key), ("cf-connecting-ip", "203.0.113.8")],
        None,
    )?;
    ensure!(refused.status == 403, "{refused:?}");
    let (allowed_id, refused_id) = (request_id(&allowed)?, request_id(&refused)?);
    // The admitted request's event waited for the origin's status, and waits no more.
    let status = d.edge_status(0)?;
    ensure!(status["usage_awaiting_answers"] == 0, "{status}");

    let mut records = Vec::new();
    d.wait_for(DELIVERY, "both events in the usage API", || {
        records = usage_of(&d, &id)?;
        let ids: BTreeSet<&str> = records
            .iter()
            .filter_map(|r| r["request_id"].as_str())
            .collect();
        Ok(ids.contains(allowed_id.as_str()) && ids.contains(refused_id.as_str()))
    })?;
    let find = |wanted: &str| {
        records
            .iter()
            .find(|r| r["request_id"] == wanted)
            .cloned()
            .unwrap_or_default()
    };
    let got = find(&allowed_id);
    ensure!(got["method"] == "GET", "{got}");
    ensure!(
        got["path"] == "/v1/contacts/7",
        "no query string stored: {got}"
    );
    ensure!(got["status"] == 200, "{got}");
    ensure!(got["ip"] == "203.0.113.7", "{got}");
    ensure!(got["edge"] == "edge-0", "{got}");
    ensure!(
        got["at"].as_str().is_some_and(|at| at.contains('T')),
        "{got}"
    );
    let denied = find(&refused_id);
    ensure!(
        denied["method"] == "POST" && denied["status"] == 403,
        "{denied}"
    );
    ensure!(denied["ip"] == "203.0.113.8", "{denied}");

    let filtered = d
        .api("GET", &format!("/v1/keys/{id}/usage?status=4xx"), None)?
        .json()?;
    let statuses: Vec<&Value> = filtered["data"]
        .as_array()
        .map(|data| data.iter().map(|r| &r["status"]).collect())
        .unwrap_or_default();
    ensure!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == 403),
        "{filtered}"
    );

    let key_view = d.api("GET", &format!("/v1/keys/{id}"), None)?.json()?;
    let record = if key_view["record"].is_object() {
        &key_view["record"]
    } else {
        &key_view
    };
    ensure!(record["last_used_at"].is_string(), "{key_view}");
    ensure!(record["last_used_ip"].is_string(), "{key_view}");

    let daily = d.api("GET", &format!("/v1/keys/{id}/usage/daily"), None)?;
    ensure!(daily.status == 200, "{daily:?}");
    let daily = daily.json()?;
    // Summed over the days listed: the requests may straddle midnight UTC.
    let days = daily["data"].as_array().context("daily data")?;
    let total = |field: &dyn Fn(&Value) -> Option<u64>| days.iter().filter_map(field).sum::<u64>();
    ensure!(total(&|day| day["requests"].as_u64()) >= 3, "{daily}");
    ensure!(
        total(&|day| day["by_status"]["403"].as_u64()) == 1,
        "{daily}"
    );
    Ok(())
}

#[test]
#[ignore = "end-to-end: needs the built worker and keyplane binary (cargo xtask test)"]
fn a_control_plane_outage_loses_no_usage_event() -> Result<()> {
    let Some(mut d) = deployment()? else {
        return Ok(());
    };
    let (id, key) = d.create_key(json!({"name": "outage", "environment": "live"}))?;
    d.wait_for(DELIVERY, "the key reaching the edge", || {
        Ok(d.through_edge(0, "/warmup", Some(&key))?.status == 200)
    })?;
    d.stop_control_plane();
    let mut sent = BTreeSet::new();
    for n in 0..20 {
        let reply = d.through_edge(0, &format!("/during-outage/{n}"), Some(&key))?;
        ensure!(reply.status == 200, "the edge keeps serving: {reply:?}");
        sent.insert(request_id(&reply)?);
    }
    d.wait_for(DELIVERY, "the edge noticing the outage", || {
        let usage = &d.edge_status(0)?["usage"];
        Ok(usage["failures"].as_u64().unwrap_or(0) >= 1 && usage["buffered"].as_u64() >= Some(20))
    })?;
    d.restart_control_plane()?;
    // The edge's flusher retries on its own (backoff 1 s, 2 s, 4 s, ...): no request needed.
    d.wait_for(
        Duration::from_secs(30),
        "the backlog reaching the control plane",
        || {
            std::thread::sleep(Duration::from_millis(200));
            let stored: BTreeSet<String> = usage_of(&d, &id)?
                .iter()
                .filter_map(|r| r["request_id"].as_str().map(str::to_owned))
                .collect();
            Ok(sent.is_subset(&stored))
        },
    )?;
    let usage = &d.edge_status(0)?["usage"];
    ensure!(usage["dropped"] == 0, "{usage}");
    Ok(())
}

#[test]
#[ignore = "end-to-end: needs the built worker and keyplane binary (cargo xtask test)"]
fn past_the_buffer_bound_the_oldest_events_are_dropped_and_counted_never_refused() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let mut d = Deployment::start(&setup, 1, |options| {
        options.var("USAGE_BUFFER_MAX", "5");
    })?;
    let (id, key) = d.create_key(json!({"name": "bounded", "environment": "live"}))?;
    d.wait_for(DELIVERY, "the key reaching the edge", || {
        Ok(d.through_edge(0, "/warmup", Some(&key))?.status == 200)
    })?;
    d.wait_for(DELIVERY, "the warm-up event delivered", || {
        Ok(d.edge_status(0)?["usage"]["buffered"] == 0)
    })?;
    d.stop_control_plane();
    let mut sent = Vec::new();
    for n in 0..12 {
        let reply = d.through_edge(0, &format!("/during-outage/{n}"), Some(&key))?;
        ensure!(
            reply.status == 200,
            "never an error to the caller: {reply:?}"
        );
        sent.push(request_id(&reply)?);
    }
    let usage = d.edge_status(0)?["usage"].clone();
    ensure!(
        usage["buffered"] == 5 && usage["dropped"] == 7,
        "5 kept, 7 dropped: {usage}"
    );
    d.restart_control_plane()?;
    let newest: BTreeSet<String> = sent[7..].iter().cloned().collect();
    d.wait_for(Duration::from_secs(30), "the kept events delivered", || {
        std::thread::sleep(Duration::from_millis(200));
        let stored: BTreeSet<String> = usage_of(&d, &id)?
            .iter()
            .filter_map(|r| r["request_id"].as_str().map(str::to_owned))
            .collect();
        Ok(newest.is_subset(&stored))
    })?;
    let stored = usage_of(&d, &id)?;
    ensure!(
        stored.len() == 1 + 5,
        "the warm-up and the 5 newest: {stored:?}"
    );
    Ok(())
}

#[test]
#[ignore = "end-to-end: needs the built worker and keyplane binary (cargo xtask test)"]
fn a_revoked_key_hammering_the_edge_leaves_a_bounded_trail_in_the_usage_log() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    // The edge's default limit (60 a minute, bursts of 5) bounds refusal events per key. The
    // key's own limit is high, so the probes waiting for its revocation are never refused as
    // rate limited (a 429 is a refusal event too, and would be counted with the 401s).
    let d = Deployment::start(&setup, 1, |options| {
        options.rate_limit = (60, 5);
        options.var("USAGE_FLUSH_MS", "200");
    })?;
    let (id, key) = d.create_key(json!({
        "name": "leaked",
        "environment": "live",
        "rate_limit": {"requests_per_minute": 1000, "burst": 100}
    }))?;
    d.wait_for(DELIVERY, "the key reaching the edge", || {
        Ok(d.through_edge(0, "/warmup", Some(&key))?.status == 200)
    })?;
    let revoked = d.api(
        "POST",
        &format!("/v1/keys/{id}/revoke"),
        Some(json!({"reason": "compromised"})),
    )?;
    ensure!(revoked.status == 200, "{revoked:?}");
    let refusing_since = Instant::now();
    d.wait_for(DELIVERY, "the revocation reaching the edge", || {
        // Some five probes a second: within the key's own limit however long it takes.
        std::thread::sleep(Duration::from_millis(200));
        Ok(d.through_edge(0, "/probe", Some(&key))?.status == 401)
    })?;
    const HAMMER: usize = 40;
    for n in 0..HAMMER {
        let reply = d.through_edge(0, &format!("/hammer/{n}"), Some(&key))?;
        ensure!(reply.status == 401, "{reply:?}");
    }
    let refusing_for = refusing_since.elapsed();
    d.wait_for(DELIVERY, "the bounded events delivered", || {
        Ok(d.edge_status(0)?["usage"]["buffered"] == 0)
    })?;
    let usage = d.edge_status(0)?["usage"].clone();
    let suppressed = usage["suppressed"].as_u64().context("suppressed")?;
    let stored = usage_of(&d, &id)?;
    let refusals = stored.iter().filter(|event| event["status"] == 401).count();
    // The burst of 5, plus what refilled (one a second) while the requests ran.
    let refilled = refusing_for.as_secs() as usize + 1;
    ensure!(
        (5..=5 + refilled).contains(&refusals),
        "{refusals} refusal events stored for {} refused requests in {refusing_for:?}",
        HAMMER + 1
    );
    ensure!(
        refusals as u64 + suppressed == HAMMER as u64 + 1,
        "every refusal stored or counted: {refusals} + {suppressed} ({usage})"
    );
    Ok(())
}
