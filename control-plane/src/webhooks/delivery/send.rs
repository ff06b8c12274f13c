//! One attempt on the wire: the HTTP client deliveries use (names resolved through the address
//! guard, no redirects, no proxy, bounded time) and the signed POST of one event, with what
//! came of it.

use std::time::Instant;

use keyplane_shared::Timestamp;
use reqwest::Client;

use super::{ATTEMPT_TIMEOUT, RESPONSE_HEAD};
use crate::error::error_chain;
use crate::state::AppState;
use crate::store::{Attempt, ClaimedDelivery};
use crate::webhooks::address_guard::{GuardedResolver, literal_allowed};

/// The HTTP client deliveries use: names resolved through the address guard, no redirects,
/// no proxy, bounded time.
pub fn client(local_dev: bool) -> Result<Client, reqwest::Error> {
    // rustls needs a process-wide crypto provider; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .dns_resolver(GuardedResolver { local_dev })
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(ATTEMPT_TIMEOUT)
        .user_agent("Keyplane-Webhooks/1")
        .build()
}

/// Posts the event; how it went.
pub(super) async fn send(
    state: &AppState,
    client: &Client,
    delivery: &ClaimedDelivery,
    at: Timestamp,
) -> Attempt {
    let started = Instant::now();
    let finish = |status: Option<u16>, outcome: &str, response: String| Attempt {
        at,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        status,
        outcome: outcome.to_owned(),
        response,
    };
    let url = match reqwest::Url::parse(&delivery.endpoint.url) {
        Ok(url) => url,
        Err(error) => return finish(None, "invalid_url", error.to_string()),
    };
    let host = url.host_str().unwrap_or_default();
    if !literal_allowed(host, state.policy.local_dev) {
        return finish(
            None,
            "refused_address",
            format!("{host} is not a public address"),
        );
    }
    let id = delivery.event_id.to_string();
    let timestamp = at.as_millis().div_euclid(1000);
    let signature = state.webhook_secrets.signature_header(
        &delivery.endpoint.salt,
        &delivery.endpoint.previous,
        (&id, timestamp, &delivery.body),
        at,
    );
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.body.clone())
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(error) => {
            let outcome = if error.is_timeout() {
                "timeout"
            } else if error.is_connect() {
                "connect_error"
            } else {
                "request_error"
            };
            // With its causes (`no public address` and the like), as much as is kept.
            let text = error_chain(&error).chars().take(RESPONSE_HEAD).collect();
            return finish(None, outcome, text);
        }
    };
    let status = response.status();
    let mut head = Vec::new();
    while head.len() < RESPONSE_HEAD {
        match response.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    head.truncate(RESPONSE_HEAD);
    let text = String::from_utf8_lossy(&head).into_owned();
    let outcome = if status.is_success() {
        "delivered"
    } else {
        "http_error"
    };
    finish(Some(status.as_u16()), outcome, text)
}
