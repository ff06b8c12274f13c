//! The control plane's change feed, as the edge reads it: signed `GET`s of the changes after a
//! sequence number, or of a whole snapshot when the edge is empty, ahead, or of another history.
//!
//! Every answer that could change the table (200, and the 409 that makes the edge reload) must
//! carry the control plane's signature for exactly this request (bound to its nonce: see
//! `keyplane_shared::sync::verify_response`); anything else is [`FeedError::Unauthentic`] and
//! changes nothing. Answers name the feed's history and its chain where they start, which the
//! store compares with its own lineage.
//!
//! Every request carries the edge's name and push URL, so pulling once registers the edge
//! with the control plane (which then pushes to it).

use keyplane_shared::ids::HistoryId;
use keyplane_shared::sync::{self, SignedRequest, SignedResponse};
use keyplane_shared::table::codec::{CodecError, SnapshotDecoder, decode_changes};
use keyplane_shared::{Change, FeedChain, KeyTable};
use thiserror::Error;
use worker::{AbortSignal, Fetch, Headers, Method, Request, RequestInit, web_sys};

use crate::pieces::Pieces;
use crate::settings::Settings;

/// Most changes asked for in one request.
pub const PAGE: u64 = 10_000;
/// Longest a page of changes may take, body included, before the pull counts as failed (a
/// hanging control plane must not hold the store's one pull, and the requests waiting on it).
const CHANGES_TIMEOUT_MS: u32 = 10_000;
/// The same for a snapshot (a million keys are some 48 MB).
const SNAPSHOT_TIMEOUT_MS: u32 = 60_000;

/// A page of changes, as the feed answered it.
pub struct ChangesPage {
    /// The feed's history.
    pub history: HistoryId,
    /// The feed chain at the sequence asked from.
    pub chain_after: FeedChain,
    /// The changes after it (possibly none).
    pub changes: Vec<Change>,
}

/// What the feed answered to "changes after N".
pub enum FeedReply {
    /// The changes after the asked sequence.
    Changes(ChangesPage),
    /// The edge is ahead of the control plane (a restored database): load a snapshot.
    Ahead,
}

/// The whole table, as the feed answered it.
pub struct Snapshot {
    /// The feed's history.
    pub history: HistoryId,
    /// The feed chain at the table's sequence.
    pub chain: FeedChain,
    /// The table.
    pub table: KeyTable,
}

/// Why the feed could not be read.
#[derive(Debug, Error)]
pub enum FeedError {
    /// The request failed or the control plane answered an unexpected status.
    #[error("control plane unreachable or failing: {0}")]
    Unavailable(String),
    /// The answer is not signed by the control plane for this request (tampered, replayed or
    /// from someone else): ignored.
    #[error("the answer is not the control plane's, signed for this request ({0}); ignored")]
    Unauthentic(sync::SyncAuthError),
    /// The body or a signed header did not decode.
    #[error("control plane sent an undecodable answer: {0}")]
    Corrupt(String),
}

impl From<worker::Error> for FeedError {
    fn from(error: worker::Error) -> Self {
        FeedError::Unavailable(error.to_string())
    }
}

impl From<keyplane_shared::table::codec::CodecError> for FeedError {
    fn from(error: keyplane_shared::table::codec::CodecError) -> Self {
        FeedError::Corrupt(error.to_string())
    }
}

/// The changes after `after`, at most [`PAGE`].
pub async fn changes_after(settings: &Settings, after: u64) -> Result<FeedReply, FeedError> {
    let path = format!(
        "/v1/edge/changes?after={after}&limit={PAGE}{}",
        registration(settings)
    );
    let answer = signed_get(settings, &path, CHANGES_TIMEOUT_MS).await?;
    match answer.status {
        200 => Ok(FeedReply::Changes(ChangesPage {
            history: answer.history()?,
            chain_after: answer.chain()?,
            changes: decode_changes(&answer.body)?,
        })),
        409 => Ok(FeedReply::Ahead),
        other => Err(FeedError::Unavailable(format!(
            "changes feed answered {other}"
        ))),
    }
}

/// The whole table. Its body, 48 MB at 1M keys, is never held whole: each piece goes to the
/// signature check and to the snapshot decoder as it arrives, and the table is used only once
/// the check passed over the whole body.
pub async fn snapshot(settings: &Settings) -> Result<Snapshot, FeedError> {
    let path = format!(
        "/v1/edge/snapshot?{}",
        registration(settings).trim_start_matches('&')
    );
    let (response, nonce) = send_signed_get(settings, &path, SNAPSHOT_TIMEOUT_MS).await?;
    let status = response.status_code();
    if status != 200 {
        return Err(FeedError::Unavailable(format!(
            "snapshot answered {status}"
        )));
    }
    let answer = Answer {
        status,
        fields: signed_fields(&response),
        body: Vec::new(),
    };
    let signature = response.headers().get(sync::RESPONSE_SIGNATURE_HEADER)?;
    let mut check = sync::ResponseCheck::start(
        &settings.sync_secret,
        signature.as_deref(),
        crate::unix_secs(),
        &nonce,
        &answer.signed(),
    )
    .map_err(FeedError::Unauthentic)?;
    let mut decoder = SnapshotDecoder::new();
    // A body that stops decoding is still read to its end: an answer that is not the
    // control plane's is reported as that, whatever its bytes.
    let mut undecodable = None;
    let mut pieces = Pieces::of(&response)?;
    while let Some(piece) = pieces.next().await? {
        check.body(piece);
        if undecodable.is_none() {
            undecodable = decoder.push(piece).err();
        }
    }
    check.finish().map_err(FeedError::Unauthentic)?;
    if let Some(error) = undecodable {
        return Err(error.into());
    }
    let (table, rest) = decoder.finish()?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes.into());
    }
    let seq = answer.field(sync::SNAPSHOT_SEQ_HEADER);
    if seq.parse::<u64>().ok() != Some(table.applied_seq()) {
        return Err(FeedError::Corrupt(format!(
            "the snapshot is at {} but its header says {seq:?}",
            table.applied_seq()
        )));
    }
    Ok(Snapshot {
        history: answer.history()?,
        chain: answer.chain()?,
        table,
    })
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

/// A verified answer: its status, the signed header fields and the body.
struct Answer {
    status: u16,
    fields: [String; sync::RESPONSE_FIELDS.len()],
    body: Vec<u8>,
}

impl Answer {
    /// What the signature covers, but for the body (empty here).
    fn signed(&self) -> SignedResponse<'_> {
        SignedResponse {
            status: self.status,
            fields: self.fields.each_ref().map(String::as_str),
            body: &[],
        }
    }

    fn field(&self, name: &str) -> &str {
        sync::RESPONSE_FIELDS
            .iter()
            .position(|field| *field == name)
            .map_or("", |index| self.fields[index].as_str())
    }

    fn history(&self) -> Result<HistoryId, FeedError> {
        HistoryId::parse(self.field(sync::HISTORY_HEADER))
            .map_err(|error| FeedError::Corrupt(error.to_string()))
    }

    fn chain(&self) -> Result<FeedChain, FeedError> {
        FeedChain::parse_hex(self.field(sync::CHAIN_HEADER))
            .ok_or_else(|| FeedError::Corrupt("the feed chain is not 64 hex digits".into()))
    }
}

/// A signed GET of `path`; the answer, verified when its status is 200 or 409 (a refusal that
/// changes nothing, such as a 401 or a 5xx, is returned as it is).
async fn signed_get(settings: &Settings, path: &str, timeout_ms: u32) -> Result<Answer, FeedError> {
    let (mut response, nonce) = send_signed_get(settings, path, timeout_ms).await?;
    let status = response.status_code();
    let body = response.bytes().await?;
    let answer = Answer {
        status,
        fields: signed_fields(&response),
        body,
    };
    if matches!(status, 200 | 409) {
        let signature = response.headers().get(sync::RESPONSE_SIGNATURE_HEADER)?;
        let mut signed = answer.signed();
        if status == 200 {
            signed.body = &answer.body;
        }
        sync::verify_response(
            &settings.sync_secret,
            signature.as_deref(),
            crate::unix_secs(),
            &nonce,
            &signed,
        )
        .map_err(FeedError::Unauthentic)?;
    }
    Ok(answer)
}

/// Sends a signed GET of `path`: the answer, its body unread, and the request's nonce (which
/// the answer's signature is bound to).
async fn send_signed_get(
    settings: &Settings,
    path: &str,
    timeout_ms: u32,
) -> Result<(worker::Response, [u8; sync::NONCE_LEN]), FeedError> {
    let now_secs = crate::unix_secs();
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
    let nonce = sync::nonce_of(&signature)
        .ok_or_else(|| FeedError::Unavailable("a signature without its nonce".into()))?;
    let headers = Headers::new();
    headers.set(sync::SIGNATURE_HEADER, &signature)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let request = Request::new_with_init(&format!("{}{path}", settings.control_plane_url), &init)?;
    let timeout = AbortSignal::from(web_sys::AbortSignal::timeout_with_u32(timeout_ms));
    let response = Fetch::Request(request).send_with_signal(&timeout).await?;
    Ok((response, nonce))
}

/// The signed header fields of an answer ("" for an absent one).
fn signed_fields(response: &worker::Response) -> [String; sync::RESPONSE_FIELDS.len()] {
    let received = response.headers();
    sync::RESPONSE_FIELDS.map(|name| received.get(name).ok().flatten().unwrap_or_default())
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
