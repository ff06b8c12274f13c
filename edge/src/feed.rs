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
    /// The feed's head when the page was read.
    pub head: u64,
}

impl ChangesPage {
    /// Whether the feed holds more after this page: it ends before the head. (A page can be
    /// short of the [`PAGE`] asked for and still not the last: the control plane also bounds
    /// a page by its bytes.) An empty page ends a pull whatever the head says, so a feed that
    /// sends nothing is not asked again and again.
    pub fn more_follow(&self) -> bool {
        self.changes
            .last()
            .is_some_and(|change| change.seq < self.head)
    }
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
            head: answer.field(sync::HEAD_SEQ_HEADER).parse().map_err(|_| {
                FeedError::Corrupt("the feed's head is not a sequence number".into())
            })?,
        })),
        409 => Ok(FeedReply::Ahead),
        other => Err(FeedError::Unavailable(format!(
            "changes feed answered {other}"
        ))),
    }
}

/// The whole table. Its body, 48 MB at 1M keys, is never held whole: each piece goes to the
/// signature check and to the snapshot decoder as it arrives, and the table is used only once
/// the check passed over the whole body. `before_body` runs once the answer is a 200 with a
/// well-formed, current signature header, before the body is read (the store frees its old
/// table there): an answer refused before that costs the caller nothing.
pub async fn snapshot(
    settings: &Settings,
    before_body: impl FnOnce(),
) -> Result<Snapshot, FeedError> {
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
    let check = sync::ResponseCheck::start(
        &settings.sync_secret,
        signature.as_deref(),
        crate::unix_secs(),
        &nonce,
        &answer.signed(),
    )
    .map_err(FeedError::Unauthentic)?;
    before_body();
    let mut body = SignedSnapshotBody::new(check);
    let mut pieces = Pieces::of(&response)?;
    while let Some(piece) = pieces.next().await? {
        body.push(piece);
    }
    let table = body.finish()?;
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

/// A snapshot's body read piece by piece under its signature: each piece goes to the
/// signature check and to the decoder, and the table is given out only once the signature
/// holds over the whole body.
struct SignedSnapshotBody {
    check: sync::ResponseCheck,
    decoder: SnapshotDecoder,
    /// The decoder's first error. The body is still read to its end after it, so an answer
    /// that is not the control plane's is reported as that ([`FeedError::Unauthentic`]),
    /// whatever its bytes, and only a signed one as [`FeedError::Corrupt`].
    undecodable: Option<CodecError>,
}

impl SignedSnapshotBody {
    fn new(check: sync::ResponseCheck) -> Self {
        SignedSnapshotBody {
            check,
            decoder: SnapshotDecoder::new(),
            undecodable: None,
        }
    }

    /// The next piece of the body.
    fn push(&mut self, piece: &[u8]) {
        self.check.body(piece);
        if self.undecodable.is_none() {
            self.undecodable = self.decoder.push(piece).err();
        }
    }

    /// The table, when the whole body is the one signed and a whole snapshot.
    fn finish(self) -> Result<KeyTable, FeedError> {
        self.check.finish().map_err(FeedError::Unauthentic)?;
        if let Some(error) = self.undecodable {
            return Err(error.into());
        }
        let (table, rest) = self.decoder.finish()?;
        if !rest.is_empty() {
            return Err(CodecError::TrailingBytes.into());
        }
        Ok(table)
    }
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
    use super::*;
    use keyplane_shared::table::codec::encode_snapshot;
    use keyplane_shared::{
        ChangeOp, Environment, KeyId, KeyStatus, LookupDigest, OrgId, ScopeSet, TableEntry,
    };

    const NOW: i64 = 1_800_000_000;
    const NONCE: [u8; sync::NONCE_LEN] = [7; sync::NONCE_LEN];

    fn secret(byte: u8) -> sync::SyncSecret {
        sync::SyncSecret::new(vec![byte; 32]).expect("32 bytes")
    }

    fn response(body: &[u8]) -> SignedResponse<'_> {
        SignedResponse {
            status: 200,
            fields: [""; sync::RESPONSE_FIELDS.len()],
            body,
        }
    }

    /// `body` read in pieces of `piece` bytes under the signature `signer` made of `signed`.
    fn read(
        signer: &sync::SyncSecret,
        signed: &[u8],
        body: &[u8],
        piece: usize,
    ) -> Result<KeyTable, FeedError> {
        let header = sync::sign_response(signer, NOW, &NONCE, &response(signed));
        let check =
            sync::ResponseCheck::start(&secret(1), Some(&header), NOW, &NONCE, &response(&[]))
                .expect("a well-formed, fresh header");
        let mut reader = SignedSnapshotBody::new(check);
        for chunk in body.chunks(piece) {
            reader.push(chunk);
        }
        reader.finish()
    }

    fn snapshot_of_one_key() -> Vec<u8> {
        let mut table = KeyTable::new();
        table
            .apply(&Change {
                seq: 1,
                op: ChangeOp::Upsert(TableEntry {
                    digest: LookupDigest::from_bytes([3; 32]),
                    key_id: KeyId::from_bytes([1; 16]),
                    org_id: OrgId::from_bytes([2; 16]),
                    env: Environment::Live,
                    status: KeyStatus::Active,
                    expires_at: None,
                    scopes: ScopeSet::empty(),
                    rate_limit: None,
                }),
            })
            .expect("in order");
        encode_snapshot(&table)
    }

    #[test]
    fn a_signed_snapshot_read_in_any_pieces_gives_its_table() {
        let body = snapshot_of_one_key();
        for piece in [1, 7, body.len()] {
            let table = read(&secret(1), &body, &body, piece).expect("signed and whole");
            assert_eq!((table.len(), table.applied_seq()), (1, 1));
        }
    }

    #[test]
    fn an_unsigned_body_is_unauthentic_whether_or_not_it_decodes() {
        let real = snapshot_of_one_key();
        let mut garbage = real.clone();
        garbage[0] ^= 0xff;
        // Signed by someone else, and signed by the control plane for another body.
        for (signer, signed) in [
            (secret(2), real.as_slice()),
            (secret(1), b"other".as_slice()),
        ] {
            for body in [&real, &garbage] {
                let outcome = read(&signer, signed, body, 5);
                assert!(
                    matches!(outcome, Err(FeedError::Unauthentic(_))),
                    "{:?}",
                    outcome.err()
                );
            }
        }
    }

    #[test]
    fn only_a_signed_body_that_does_not_decode_is_corrupt() {
        let real = snapshot_of_one_key();
        let mut damaged = real.clone();
        damaged[0] ^= 0xff;
        let mut trailing = real.clone();
        trailing.push(0);
        for body in [&damaged, &trailing, &real[..real.len() - 1].to_vec()] {
            let outcome = read(&secret(1), body, body, 5);
            assert!(
                matches!(outcome, Err(FeedError::Corrupt(_))),
                "{:?}",
                outcome.err()
            );
        }
    }

    #[test]
    fn urls_are_encoded_for_a_query_string() {
        assert_eq!(
            percent_encode("http://127.0.0.1:8787/x?a=b&c"),
            "http%3A%2F%2F127.0.0.1%3A8787%2Fx%3Fa%3Db%26c"
        );
        assert_eq!(percent_encode("edge-1_a"), "edge-1_a");
    }

    #[test]
    fn more_follow_a_page_that_ends_before_the_head_however_short_it_is_unless_empty() {
        let page = |seqs: &[u64], head: u64| ChangesPage {
            history: HistoryId::from_bytes([1; 16]),
            chain_after: FeedChain::from_bytes([2; 32]),
            changes: seqs
                .iter()
                .map(|&seq| Change {
                    seq,
                    op: ChangeOp::Remove(LookupDigest::from_bytes([seq as u8; 32])),
                })
                .collect(),
            head,
        };
        assert!(
            page(&[11, 12], 20).more_follow(),
            "two changes, short of the page asked for, but not the head"
        );
        assert!(
            !page(&[11, 12], 12).more_follow(),
            "the page reaches the head"
        );
        assert!(!page(&[], 10).more_follow(), "nothing after the head");
        assert!(
            !page(&[], 20).more_follow(),
            "an empty page ends the pull, whatever the head"
        );
    }
}
