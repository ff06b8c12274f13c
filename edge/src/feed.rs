//! The control plane's change feed, as the edge reads it: signed `GET`s of the changes after a
//! sequence number, or of a whole snapshot when the edge is empty or the feed says it is ahead.
//!
//! Every request carries the edge's name and push URL, so pulling once registers the edge
//! with the control plane (which then pushes to it).

use keyplane_shared::sync::{self, SignedRequest};
use keyplane_shared::table::codec::{decode_changes, decode_snapshot};
use keyplane_shared::{Change, KeyTable};
use thiserror::Error;
use worker::{AbortSignal, Fetch, Headers, Method, Request, RequestInit, web_sys};

use crate::settings::Settings;

/// Most changes asked for in one request.
pub const PAGE: u64 = 10_000;
/// Longest a page of changes may take, body included, before the pull counts as failed (a
/// hanging control plane must not hold the store's one pull, and the requests waiting on it).
const CHANGES_TIMEOUT_MS: u32 = 10_000;
/// The same for a snapshot (a million keys are some 80 MB).
const SNAPSHOT_TIMEOUT_MS: u32 = 60_000;

/// What the feed answered.
pub enum FeedReply {
    /// The changes after the asked sequence (possibly none).
    Changes(Vec<Change>),
    /// The edge is ahead of the control plane (a restored database): load a snapshot.
    Ahead,
}

/// Why the feed could not be read.
#[derive(Debug, Error)]
pub enum FeedError {
    /// The request failed or the control plane answered an unexpected status.
    #[error("control plane unreachable or failing: {0}")]
    Unavailable(String),
    /// The body did not decode.
    #[error("control plane sent an undecodable body: {0}")]
    Corrupt(#[from] keyplane_shared::table::codec::CodecError),
}

impl From<worker::Error> for FeedError {
    fn from(error: worker::Error) -> Self {
        FeedError::Unavailable(error.to_string())
    }
}

/// The changes after `after`, at most [`PAGE`].
pub async fn changes_after(settings: &Settings, after: u64) -> Result<FeedReply, FeedError> {
    let path = format!(
        "/v1/edge/changes?after={after}&limit={PAGE}{}",
        registration(settings)
    );
    let (status, body) = signed_get(settings, &path, CHANGES_TIMEOUT_MS).await?;
    match status {
        200 => Ok(FeedReply::Changes(decode_changes(&body)?)),
        409 => Ok(FeedReply::Ahead),
        other => Err(FeedError::Unavailable(format!(
            "changes feed answered {other}"
        ))),
    }
}

/// The whole table.
pub async fn snapshot(settings: &Settings) -> Result<KeyTable, FeedError> {
    let path = format!(
        "/v1/edge/snapshot?{}",
        registration(settings).trim_start_matches('&')
    );
    let (status, body) = signed_get(settings, &path, SNAPSHOT_TIMEOUT_MS).await?;
    if status != 200 {
        return Err(FeedError::Unavailable(format!(
            "snapshot answered {status}"
        )));
    }
    Ok(decode_snapshot(&body)?)
}

/// `&edge=<name>&url=<push url>` when the edge has a push URL, else nothing.
fn registration(settings: &Settings) -> String {
    if settings.edge_url.is_empty() {
        return String::new();
    }
    format!(
        "&edge={}&url={}",
        percent_encode(&settings.edge_name),
        percent_encode(&settings.edge_url)
    )
}

async fn signed_get(
    settings: &Settings,
    path: &str,
    timeout_ms: u32,
) -> Result<(u16, Vec<u8>), FeedError> {
    let now_secs = (worker::Date::now().as_millis() / 1000) as i64;
    let signature = sync::sign_now(
        &settings.sync_secret,
        now_secs,
        &SignedRequest {
            method: "GET",
            path_and_query: path,
            body: &[],
        },
    )
    .map_err(|error| FeedError::Unavailable(format!("CSPRNG: {error}")))?;
    let headers = Headers::new();
    headers.set(sync::SIGNATURE_HEADER, &signature)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let request = Request::new_with_init(&format!("{}{path}", settings.control_plane_url), &init)?;
    let timeout = AbortSignal::from(web_sys::AbortSignal::timeout_with_u32(timeout_ms));
    let mut response = Fetch::Request(request).send_with_signal(&timeout).await?;
    let status = response.status_code();
    let body = response.bytes().await?;
    Ok((status, body))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn urls_are_encoded_for_a_query_string() {
        assert_eq!(
            percent_encode("http://127.0.0.1:8787/x?a=b&c"),
            "http%3A%2F%2F127.0.0.1%3A8787%2Fx%3Fa%3Db%26c"
        );
        assert_eq!(percent_encode("edge-1_a"), "edge-1_a");
    }
}
