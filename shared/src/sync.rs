//! Request signing between the control plane and its edges (the replication protocol's trust).
//!
//! Both directions — the control plane pushing changes to an edge, an edge pulling the feed —
//! carry one header, [`SIGNATURE_HEADER`]:
//!
//! ```text
//! x-keyplane-signature: t=<unix seconds>,n=<32 hex nonce>,v1=<64 hex HMAC-SHA256>
//! ```
//!
//! The MAC is HMAC-SHA256 under the deployment's edge secret over
//! `"keyplane-sync-v1\n" + t + "\n" + n + "\n" + METHOD + "\n" + path_and_query + "\n" + body`,
//! so the method, the path with its query string, the body, the time and the nonce are all
//! bound. A verifier refuses a header whose time is more than [`REPLAY_WINDOW_SECS`] away from
//! its clock; within the window, a receiver that must not act twice remembers nonces (the edge
//! does for pushes). Comparison is constant-time (`hmac`'s `verify_slice`, built on `subtle`).
//!
//! Answers to an edge's pulls are signed too, so a man in the middle can neither feed an edge
//! changes nor make it drop its table ([`sign_response`], [`verify_response`]):
//!
//! ```text
//! x-keyplane-response-signature: t=<unix seconds>,v1=<64 hex HMAC-SHA256>
//! ```
//!
//! The MAC covers `"keyplane-sync-response-v1\n" + t + "\n" + <the request's nonce, hex> +
//! "\n" + status + "\n"`, then `name=value\n` for each of [`RESPONSE_FIELDS`] in that order
//! (an absent header as an empty value), then `"\n" + body`. Binding the request's nonce makes an answer
//! good for exactly the request it answers: a recorded answer replayed to a later pull fails.

use core::fmt;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-keyplane-signature";

/// How far a signature's time may be from the verifier's clock, either way.
pub const REPLAY_WINDOW_SECS: i64 = 300;
/// Largest push body an edge accepts (`POST /__keyplane/sync`: 413 past it). The control
/// plane keeps its bodies far under it ([`MAX_CHANGES_BYTES`]).
pub const MAX_PUSH_BYTES: usize = 8 << 20;
/// Largest body of changes the control plane sends an edge at once, a push or a page of the
/// feed: a thousand ordinary changes are some 60 KB, but keys with the most and longest
/// scopes take some 8.4 KB each, so fewer changes are sent then (ten thousand of them, a full
/// page, would be 84 MB, more than an edge's store could hold in its 128 MB).
pub const MAX_CHANGES_BYTES: usize = 1 << 20;
const _: () = assert!(MAX_CHANGES_BYTES <= MAX_PUSH_BYTES);

/// Length of the nonce in bytes.
pub const NONCE_LEN: usize = 16;

/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

const DOMAIN: &[u8] = b"keyplane-sync-v1\n";
const RESPONSE_DOMAIN: &[u8] = b"keyplane-sync-response-v1\n";

/// The header carrying an answer's signature.
pub const RESPONSE_SIGNATURE_HEADER: &str = "x-keyplane-response-signature";

/// Header: the feed history an answer (or a push) belongs to (`hst_…`).
pub const HISTORY_HEADER: &str = "x-keyplane-history";
/// Header: the feed's head when a page of changes was read (or when `sequence_ahead` was).
pub const HEAD_SEQ_HEADER: &str = "x-keyplane-head-seq";
/// Header: the sequence a snapshot's table is at.
pub const SNAPSHOT_SEQ_HEADER: &str = "x-keyplane-seq";
/// Header: the feed chain (hex) at the sequence the answer starts from: the `after` of a page
/// of changes, the sequence of a snapshot.
pub const CHAIN_HEADER: &str = "x-keyplane-chain";

/// The headers a signed answer's MAC covers, in this order.
pub const RESPONSE_FIELDS: [&str; 4] = [
    HISTORY_HEADER,
    HEAD_SEQ_HEADER,
    SNAPSHOT_SEQ_HEADER,
    CHAIN_HEADER,
];

/// The shared secret both sides sign with. `Debug` never shows it.
#[derive(Clone)]
pub struct SyncSecret(Zeroizing<Vec<u8>>);

impl SyncSecret {
    /// Wraps `bytes`, which must be at least [`MIN_SECRET_LEN`] long.
    pub fn new(bytes: Vec<u8>) -> Result<Self, SyncAuthError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(SyncAuthError::WeakSecret);
        }
        Ok(Self(Zeroizing::new(bytes)))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; this cannot fail.
        <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    }
}

impl fmt::Debug for SyncSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SyncSecret(<redacted>)")
    }
}

/// Why a signature was refused (or a secret rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SyncAuthError {
    /// No signature header.
    #[error("the request is not signed")]
    Missing,
    /// The header does not have the `t=…,n=…,v1=…` shape.
    #[error("the signature header is malformed")]
    Malformed,
    /// The signature's time is outside the replay window.
    #[error("the signature is too old or from the future")]
    Stale,
    /// The MAC does not match.
    #[error("the signature does not match")]
    BadSignature,
    /// The secret is shorter than [`MIN_SECRET_LEN`].
    #[error("the sync secret must be at least {MIN_SECRET_LEN} bytes")]
    WeakSecret,
}

/// What a request to be signed or verified consists of.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path with its query string, exactly as sent (`/v1/edge/changes?after=3`).
    pub path_and_query: &'a str,
    /// The body bytes (empty for a GET).
    pub body: &'a [u8],
}

/// A signature that verified: when it was made and its nonce (for replay tracking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The signer's time, unix seconds.
    pub timestamp: i64,
    /// The signer's nonce.
    pub nonce: [u8; NONCE_LEN],
}

/// The header value signing `request` at `timestamp` (unix seconds) with `nonce`.
pub fn sign(
    secret: &SyncSecret,
    timestamp: i64,
    nonce: [u8; NONCE_LEN],
    request: &SignedRequest<'_>,
) -> String {
    let nonce_hex = hex(&nonce);
    let mac = compute(secret, timestamp, &nonce_hex, request).finalize();
    format!("t={timestamp},n={nonce_hex},v1={}", hex(&mac.into_bytes()))
}

/// [`sign`] with a fresh nonce from the OS CSPRNG.
pub fn sign_now(
    secret: &SyncSecret,
    timestamp: i64,
    request: &SignedRequest<'_>,
) -> Result<String, getrandom::Error> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)?;
    Ok(sign(secret, timestamp, nonce, request))
}

/// What can be checked of `header` before the body is read: it is present, well formed and
/// inside the replay window at `now` (unix seconds). [`verify`] checks this too; a receiver
/// calls it first to refuse an unsigned or stale request without reading a large body.
pub fn precheck(header: Option<&str>, now: i64) -> Result<(), SyncAuthError> {
    fresh(header, now).map(|_| ())
}

fn fresh(header: Option<&str>, now: i64) -> Result<ParsedHeader<'_>, SyncAuthError> {
    let parsed = parse_header(header.ok_or(SyncAuthError::Missing)?)?;
    within_window(parsed.timestamp, now)?;
    Ok(parsed)
}

/// A signature's time: 1 to 19 decimal digits.
fn parse_timestamp(t: &str) -> Result<i64, SyncAuthError> {
    if t.is_empty() || t.len() > 19 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SyncAuthError::Malformed);
    }
    t.parse::<i64>().map_err(|_| SyncAuthError::Malformed)
}

/// Refuses a signature time more than [`REPLAY_WINDOW_SECS`] away from `now`.
fn within_window(timestamp: i64, now: i64) -> Result<(), SyncAuthError> {
    if now.abs_diff(timestamp) > REPLAY_WINDOW_SECS.unsigned_abs() {
        return Err(SyncAuthError::Stale);
    }
    Ok(())
}

/// Checks `header` (the [`SIGNATURE_HEADER`] value, `None` when absent) against `request` at
/// `now` (unix seconds).
pub fn verify(
    secret: &SyncSecret,
    header: Option<&str>,
    now: i64,
    request: &SignedRequest<'_>,
) -> Result<Verified, SyncAuthError> {
    let parsed = fresh(header, now)?;
    compute(secret, parsed.timestamp, parsed.nonce_hex, request)
        .verify_slice(&parsed.mac)
        .map_err(|_| SyncAuthError::BadSignature)?;
    Ok(Verified {
        timestamp: parsed.timestamp,
        nonce: parsed.nonce,
    })
}

/// What an answer to be signed or verified consists of.
#[derive(Debug, Clone, Copy)]
pub struct SignedResponse<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The value of each of [`RESPONSE_FIELDS`], in order (`""` when the header is absent).
    pub fields: [&'a str; RESPONSE_FIELDS.len()],
    /// The body bytes.
    pub body: &'a [u8],
}

impl<'a> SignedResponse<'a> {
    /// The fields read through `header` (a header's value by name, `None` when absent).
    pub fn fields_from(
        header: impl Fn(&str) -> Option<&'a str>,
    ) -> [&'a str; RESPONSE_FIELDS.len()] {
        RESPONSE_FIELDS.map(|name| header(name).unwrap_or(""))
    }
}

/// The [`RESPONSE_SIGNATURE_HEADER`] value signing `response`, the answer to the request that
/// carried `request_nonce`, at `timestamp` (unix seconds).
pub fn sign_response(
    secret: &SyncSecret,
    timestamp: i64,
    request_nonce: &[u8; NONCE_LEN],
    response: &SignedResponse<'_>,
) -> String {
    let mac = compute_response(secret, timestamp, request_nonce, response).finalize();
    format!("t={timestamp},v1={}", hex(&mac.into_bytes()))
}

/// Checks an answer's signature `header` against `response`, the answer to the request that
/// carried `request_nonce`, at `now` (unix seconds).
pub fn verify_response(
    secret: &SyncSecret,
    header: Option<&str>,
    now: i64,
    request_nonce: &[u8; NONCE_LEN],
    response: &SignedResponse<'_>,
) -> Result<(), SyncAuthError> {
    let mut check = ResponseCheck::start(
        secret,
        header,
        now,
        request_nonce,
        &SignedResponse {
            body: &[],
            ..*response
        },
    )?;
    check.body(response.body);
    check.finish()
}

/// [`verify_response`] for an answer whose body arrives in pieces (a snapshot of a large
/// table): the header and fields are checked at [`start`](Self::start), each piece of the body
/// goes through [`body`](Self::body), and [`finish`](Self::finish) says whether the whole
/// answer is the one signed. Nothing read from the body may be used before it says so.
pub struct ResponseCheck {
    mac: Hmac<Sha256>,
    expected: [u8; 32],
}

impl ResponseCheck {
    /// Checks the signature header's shape and age; `response.body` must be empty (the body
    /// comes through [`body`](Self::body)).
    pub fn start(
        secret: &SyncSecret,
        header: Option<&str>,
        now: i64,
        request_nonce: &[u8; NONCE_LEN],
        response: &SignedResponse<'_>,
    ) -> Result<Self, SyncAuthError> {
        let header = header.ok_or(SyncAuthError::Missing)?;
        let (t, v1) = header
            .trim()
            .strip_prefix("t=")
            .and_then(|rest| rest.split_once(",v1="))
            .ok_or(SyncAuthError::Malformed)?;
        let timestamp = parse_timestamp(t)?;
        let expected: [u8; 32] = unhex(v1)?;
        within_window(timestamp, now)?;
        Ok(ResponseCheck {
            mac: compute_response(secret, timestamp, request_nonce, response),
            expected,
        })
    }

    /// The next piece of the body.
    pub fn body(&mut self, piece: &[u8]) {
        self.mac.update(piece);
    }

    /// Whether the answer, all of its body included, is the one signed (constant-time).
    pub fn finish(self) -> Result<(), SyncAuthError> {
        self.mac
            .verify_slice(&self.expected)
            .map_err(|_| SyncAuthError::BadSignature)
    }
}

/// The nonce of a request's signature header, for signing the answer (`None` when the header
/// is not well formed; verify the request first).
pub fn nonce_of(header: &str) -> Option<[u8; NONCE_LEN]> {
    parse_header(header).ok().map(|parsed| parsed.nonce)
}

fn compute_response(
    secret: &SyncSecret,
    timestamp: i64,
    request_nonce: &[u8; NONCE_LEN],
    response: &SignedResponse<'_>,
) -> Hmac<Sha256> {
    let mut mac = secret.mac();
    mac.update(RESPONSE_DOMAIN);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(hex(request_nonce).as_bytes());
    mac.update(b"\n");
    mac.update(response.status.to_string().as_bytes());
    mac.update(b"\n");
    for (name, value) in RESPONSE_FIELDS.iter().zip(response.fields) {
        mac.update(name.as_bytes());
        mac.update(b"=");
        mac.update(value.as_bytes());
        mac.update(b"\n");
    }
    mac.update(b"\n");
    mac.update(response.body);
    mac
}

struct ParsedHeader<'a> {
    timestamp: i64,
    nonce_hex: &'a str,
    nonce: [u8; NONCE_LEN],
    mac: [u8; 32],
}

fn parse_header(header: &str) -> Result<ParsedHeader<'_>, SyncAuthError> {
    let mut parts = header.trim().split(',');
    let mut field = |name: &str| {
        parts
            .next()
            .and_then(|part| part.trim().strip_prefix(name))
            .and_then(|rest| rest.strip_prefix('='))
            .ok_or(SyncAuthError::Malformed)
    };
    let (t, n, v1) = (field("t")?, field("n")?, field("v1")?);
    if parts.next().is_some() {
        return Err(SyncAuthError::Malformed);
    }
    let timestamp = parse_timestamp(t)?;
    Ok(ParsedHeader {
        timestamp,
        nonce_hex: n,
        nonce: unhex(n)?,
        mac: unhex(v1)?,
    })
}

fn compute(
    secret: &SyncSecret,
    timestamp: i64,
    nonce_hex: &str,
    request: &SignedRequest<'_>,
) -> Hmac<Sha256> {
    let mut mac = secret.mac();
    mac.update(DOMAIN);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(nonce_hex.as_bytes());
    mac.update(b"\n");
    mac.update(request.method.as_bytes());
    mac.update(b"\n");
    mac.update(request.path_and_query.as_bytes());
    mac.update(b"\n");
    mac.update(request.body);
    mac
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

pub(crate) fn unhex<const N: usize>(text: &str) -> Result<[u8; N], SyncAuthError> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return Err(SyncAuthError::Malformed);
    }
    let value = |digit: u8| match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        _ => Err(SyncAuthError::Malformed),
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (value(pair[0])? << 4) | value(pair[1])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
