//! Refused management calls in the audit log, coalesced: a flood of 401s and 403s from one key
//! must neither serialize key management (every audit write takes the organization's lock) nor
//! bury the log.
//!
//! The first refusal of a key for a reason opens a one-minute window ([`WINDOW_MS`], on the
//! application's [`Clock`](crate::state::Clock)) and is recorded at once, with `count` 1. Further
//! refusals of that key for that reason within the window are only counted in memory; when the
//! window closes they become one record whose `count` says how many it stands for (and
//! `window_start` / `last_at`, in milliseconds, when they happened; ip, user agent and request id
//! are the last one's). So the `count`s of a key's `auth_failed` records add up to its refusals.
//!
//! Closed windows are written by [`spawn`]'s task every [`FLUSH_INTERVAL`] (started by
//! [`crate::Application::serve`]), or by the key's next refusal if that comes first; on shutdown
//! the task writes every window it holds, closed or not ([`flush_all`]).
//!
//! Memory is bounded: at most [`MAX_TRACKED_KEYS`] keys have a window. Past that, refusals of
//! other keys are counted per organization and reason instead (an *overflow* window, recorded
//! the same way with `"overflow": true` and no key), so nothing goes uncounted and the table
//! cannot grow with the number of keys an attacker holds.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use keyplane_shared::Timestamp;
use keyplane_shared::ids::{KeyId, OrgId};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::AppState;
use crate::store::{AuditContext, FailedAuth};

/// Length of a window: refusals of one key for one reason within it make one record.
pub const WINDOW_MS: i64 = 60_000;
/// Most keys with an open window; refusals of further keys count per organization.
pub const MAX_TRACKED_KEYS: usize = 10_000;
/// How often the background task writes the windows that have closed.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Who a window counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    /// One key.
    Key(KeyId),
    /// Every key of an organization past [`MAX_TRACKED_KEYS`].
    Overflow(OrgId),
}

/// One key's (or one overflow's) refusals for one reason since its first recorded one.
#[derive(Debug)]
struct Window {
    org: OrgId,
    opened_at: Timestamp,
    /// Refusals counted but not yet recorded.
    suppressed: u64,
    /// When the last of them happened, and from where.
    last_at: Timestamp,
    last: AuditContext,
}

/// The open windows. Behind a std mutex: it is held for a map update, never across `.await`
/// (the audit writes happen after it is released).
#[derive(Debug, Default)]
pub struct RefusalLog {
    windows: Mutex<Windows>,
}

#[derive(Debug, Default)]
struct Windows {
    keys: HashMap<(KeyId, &'static str), Window>,
    overflow: HashMap<(OrgId, &'static str), Window>,
}

/// An `auth_failed` record to write into an organization's log.
#[derive(Debug, Clone)]
pub struct PendingRecord {
    /// The organization.
    pub org: OrgId,
    /// The record.
    pub record: FailedAuth,
}

impl RefusalLog {
    fn lock(&self) -> MutexGuard<'_, Windows> {
        // A panic while holding the lock leaves at worst a miscounted window.
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a refusal of `key` (of `org`) for `reason` at `now`; returns the records to write
    /// now: this refusal when it opens a window, preceded by the summary of the key's window
    /// that had closed, if it held any refusals.
    pub fn note(
        &self,
        org: OrgId,
        key: KeyId,
        reason: &'static str,
        context: &AuditContext,
        now: Timestamp,
    ) -> Vec<PendingRecord> {
        let mut windows = self.lock();
        let Windows { keys, overflow } = &mut *windows;
        let tracked = keys.contains_key(&(key, reason)) || keys.len() < MAX_TRACKED_KEYS;
        let (summary, opened) = if tracked {
            count(
                keys,
                (key, reason),
                Subject::Key(key),
                org,
                reason,
                context,
                now,
            )
        } else {
            count(
                overflow,
                (org, reason),
                Subject::Overflow(org),
                org,
                reason,
                context,
                now,
            )
        };
        let mut records: Vec<PendingRecord> = summary.into_iter().collect();
        if opened {
            let mut details = json!({ "reason": reason, "count": 1 });
            if !tracked {
                details["overflow"] = json!(true);
            }
            records.push(PendingRecord {
                org,
                record: FailedAuth {
                    details,
                    context: context.clone(),
                },
            });
        }
        records
    }

    /// Removes the windows that have closed at `now`; the summaries of those that counted any
    /// refusal.
    pub fn take_closed(&self, now: Timestamp) -> Vec<PendingRecord> {
        let mut windows = self.lock();
        let mut records = Vec::new();
        let closed = |window: &Window| now >= window.opened_at.plus_millis(WINDOW_MS);
        drain(&mut windows.keys, closed, &mut records, |(key, reason)| {
            (Subject::Key(*key), *reason)
        });
        drain(
            &mut windows.overflow,
            closed,
            &mut records,
            |(org, reason)| (Subject::Overflow(*org), *reason),
        );
        records
    }

    /// Removes every window, closed or not; the summaries of those that counted any refusal.
    pub fn take_all(&self) -> Vec<PendingRecord> {
        let mut windows = self.lock();
        let mut records = Vec::new();
        drain(
            &mut windows.keys,
            |_| true,
            &mut records,
            |(key, reason)| (Subject::Key(*key), *reason),
        );
        drain(
            &mut windows.overflow,
            |_| true,
            &mut records,
            |(org, reason)| (Subject::Overflow(*org), *reason),
        );
        records
    }

    /// Keys with an open window (overflow windows not counted).
    pub fn tracked_keys(&self) -> usize {
        self.lock().keys.len()
    }
}

/// Counts a refusal in `map`: (the closed window's summary, whether a new window opened).
fn count<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Window>,
    slot: K,
    subject: Subject,
    org: OrgId,
    reason: &'static str,
    context: &AuditContext,
    now: Timestamp,
) -> (Option<PendingRecord>, bool) {
    let mut summary = None;
    if let Some(window) = map.get_mut(&slot) {
        if now < window.opened_at.plus_millis(WINDOW_MS) {
            window.suppressed += 1;
            window.last_at = now;
            window.last = context.clone();
            return (None, false);
        }
        summary = map
            .remove(&slot)
            .and_then(|window| window.summary(subject, reason));
    }
    map.insert(
        slot,
        Window {
            org,
            opened_at: now,
            suppressed: 0,
            last_at: now,
            last: context.clone(),
        },
    );
    (summary, true)
}

/// Removes the windows `closed` selects, pushing their summaries.
fn drain<K: Copy + std::hash::Hash + Eq>(
    map: &mut HashMap<K, Window>,
    closed: impl Fn(&Window) -> bool,
    records: &mut Vec<PendingRecord>,
    name: impl Fn(&K) -> (Subject, &'static str),
) {
    let slots: Vec<K> = map
        .iter()
        .filter(|(_, window)| closed(window))
        .map(|(slot, _)| *slot)
        .collect();
    for slot in slots {
        let (subject, reason) = name(&slot);
        if let Some(summary) = map
            .remove(&slot)
            .and_then(|window| window.summary(subject, reason))
        {
            records.push(summary);
        }
    }
}

impl Window {
    /// The record for the refusals counted since the window opened, if any.
    fn summary(self, subject: Subject, reason: &'static str) -> Option<PendingRecord> {
        if self.suppressed == 0 {
            return None;
        }
        let mut details = json!({
            "reason": reason,
            "count": self.suppressed,
            "window_start": self.opened_at.as_millis(),
            "last_at": self.last_at.as_millis(),
        });
        let mut context = self.last;
        context.actor_scopes = Default::default();
        if let Subject::Overflow(_) = subject {
            details["overflow"] = json!(true);
            // Many keys: the record names none of them.
            context.actor = None;
        }
        Some(PendingRecord {
            org: self.org,
            record: FailedAuth { details, context },
        })
    }
}

/// Writes `records`, one transaction per organization, in order. A failure is logged, not
/// returned: the refusal the caller gets does not depend on it.
pub async fn write(state: &AppState, records: Vec<PendingRecord>) -> usize {
    let mut by_org: Vec<(OrgId, Vec<FailedAuth>)> = Vec::new();
    for pending in records {
        match by_org.iter_mut().find(|(org, _)| *org == pending.org) {
            Some((_, list)) => list.push(pending.record),
            None => by_org.push((pending.org, vec![pending.record])),
        }
    }
    let mut written = 0;
    for (org, list) in by_org {
        match state
            .store
            .record_failed_auths(org, &list, state.now())
            .await
        {
            Ok(()) => written += list.len(),
            Err(error) => tracing::error!(
                %error,
                org = %org,
                records = list.len(),
                "could not audit refused management calls"
            ),
        }
    }
    written
}

/// Writes the summaries of the windows closed at the state's current time; how many.
pub async fn flush_closed(state: &AppState) -> usize {
    let records = state.refusals.take_closed(state.now());
    write(state, records).await
}

/// Writes the summaries of every window, closed or not (at shutdown); how many.
pub async fn flush_all(state: &AppState) -> usize {
    let records = state.refusals.take_all();
    write(state, records).await
}

/// Starts the task that writes closed windows every [`FLUSH_INTERVAL`]; when `shutdown` turns
/// true (or its sender is dropped) it writes every window it still holds and ends.
pub fn spawn(state: AppState, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() || shutdown.has_changed().is_err() {
                flush_all(&state).await;
                return;
            }
            flush_closed(&state).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_800_000_000_000);

    fn context(key: KeyId, request: u32) -> AuditContext {
        AuditContext {
            actor: Some(key),
            request_id: format!("req_{request}"),
            ..AuditContext::default()
        }
    }

    fn key(n: u32) -> KeyId {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        KeyId::from_bytes(bytes)
    }

    const ORG: OrgId = OrgId::from_bytes([7; 16]);

    #[test]
    fn a_window_records_its_first_refusal_at_once_and_counts_the_rest_until_it_closes() {
        let log = RefusalLog::default();
        let k = key(1);
        let first = log.note(ORG, k, "insufficient_scope", &context(k, 0), T0);
        assert_eq!(first.len(), 1);
        assert_eq!(
            first[0].record.details,
            json!({"reason": "insufficient_scope", "count": 1})
        );
        for i in 1..=3 {
            let at = T0.plus_millis(i64::from(i) * 1000);
            assert!(
                log.note(ORG, k, "insufficient_scope", &context(k, i), at)
                    .is_empty()
            );
        }
        // Another reason is another window.
        assert_eq!(
            log.note(ORG, k, "revoked_api_key", &context(k, 9), T0)
                .len(),
            1
        );
        assert!(log.take_closed(T0.plus_millis(WINDOW_MS - 1)).is_empty());
        // The key's next refusal after the window writes the summary, then itself.
        let next = log.note(
            ORG,
            k,
            "insufficient_scope",
            &context(k, 4),
            T0.plus_millis(WINDOW_MS),
        );
        assert_eq!(next.len(), 2);
        assert_eq!(next[0].record.details["count"], 3);
        assert_eq!(
            next[0].record.details["last_at"],
            T0.plus_millis(3000).as_millis()
        );
        assert_eq!(next[0].record.context.request_id, "req_3", "the last one's");
        assert_eq!(next[1].record.details["count"], 1);
        // The other reason's window had nothing more: closing it writes nothing.
        assert!(log.take_closed(T0.plus_millis(WINDOW_MS)).is_empty());
        assert_eq!(log.tracked_keys(), 1);
    }

    #[test]
    fn past_the_bound_refusals_count_per_organization_and_memory_stays_bounded() {
        let log = RefusalLog::default();
        let n = u32::try_from(MAX_TRACKED_KEYS).expect("fits");
        for i in 0..n {
            assert_eq!(
                log.note(ORG, key(i), "invalid_api_key", &context(key(i), i), T0)
                    .len(),
                1
            );
        }
        assert_eq!(log.tracked_keys(), MAX_TRACKED_KEYS);
        // A tracked key still counts in its own window.
        assert!(
            log.note(ORG, key(0), "invalid_api_key", &context(key(0), 0), T0)
                .is_empty()
        );
        // Further keys: the first is recorded at once as an overflow, the rest counted.
        let first = log.note(ORG, key(n), "invalid_api_key", &context(key(n), n), T0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].record.details["overflow"], true);
        assert_eq!(first[0].record.context.actor, Some(key(n)));
        for i in n + 1..n + 100 {
            assert!(
                log.note(ORG, key(i), "invalid_api_key", &context(key(i), i), T0)
                    .is_empty()
            );
        }
        assert_eq!(log.tracked_keys(), MAX_TRACKED_KEYS, "bounded");
        let summaries = log.take_all();
        assert_eq!(summaries.len(), 2, "key 0's window and the overflow");
        let overflow = summaries
            .iter()
            .find(|s| s.record.details["overflow"] == true)
            .expect("the overflow's summary");
        assert_eq!(overflow.record.details["count"], 99);
        assert_eq!(overflow.record.context.actor, None, "many keys: none named");
        assert_eq!(log.tracked_keys(), 0);
        assert!(log.take_all().is_empty());
    }
}
