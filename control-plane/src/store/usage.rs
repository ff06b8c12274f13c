//! The records of usage: what ingesting a batch did, a stored event, and the filters of the
//! usage API. Events arrive as `keyplane_shared::usage::UsageBatch`es from the edges.

use keyplane_shared::Timestamp;
use keyplane_shared::ids::{KeyId, OrgId, RequestId};

/// What ingesting one batch did with its events. Every event lands in exactly one of
/// `stored`, `duplicate`, `unattributed`, `unknown_key` and `org_mismatch`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Events in the batch.
    pub received: usize,
    /// Events stored now.
    pub stored: usize,
    /// Events already stored (same request id), earlier or earlier in this batch.
    pub duplicate: usize,
    /// Events that name no key.
    pub unattributed: usize,
    /// Events naming a key that does not exist.
    pub unknown_key: usize,
    /// Events whose organization is not their key's.
    pub org_mismatch: usize,
}

/// One stored usage event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// The request's id, as the edge assigned it.
    pub request_id: RequestId,
    /// The key it presented.
    pub key_id: KeyId,
    /// That key's organization.
    pub org_id: OrgId,
    /// When the edge decided.
    pub at: Timestamp,
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Status the caller got.
    pub status: u16,
    /// Client address as the edge saw it.
    pub ip: Option<String>,
    /// The edge that reported it.
    pub edge: String,
}

/// A status filter: one code, or a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Exactly this code (100 to 599).
    Exact(u16),
    /// Every code of this class: `4` is 400 to 499 (1 to 5).
    Class(u8),
}

impl StatusFilter {
    /// The codes matched, as `[low, high)`.
    pub fn range(self) -> (u16, u16) {
        match self {
            StatusFilter::Exact(code) => (code, code + 1),
            StatusFilter::Class(class) => (u16::from(class) * 100, u16::from(class) * 100 + 100),
        }
    }
}

/// Which events of a key to read, and the page.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    /// Only events at or after this time.
    pub from: Option<Timestamp>,
    /// Only events before this time.
    pub to: Option<Timestamp>,
    /// Only events with these statuses.
    pub status: Option<StatusFilter>,
    /// Only events from this client address.
    pub ip: Option<String>,
    /// Continue after this event (at, request id) of a previous page.
    pub after: Option<(Timestamp, RequestId)>,
    /// Page size.
    pub limit: u32,
}

/// Requests of one key on one UTC day with one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyStatusCount {
    /// The day, counted in whole days from the `from` of the query (0: its first day).
    pub day: u32,
    /// The status.
    pub status: u16,
    /// How many requests.
    pub requests: u64,
}
