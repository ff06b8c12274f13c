//! Refused management calls being coalesced: the windows of refusals per key (or per
//! organization past [`MAX_TRACKED_KEYS`]), held in memory by the shared state, the audit
//! records they turn into, and [`write()`], which stores those records. The rules, and the task
//! that flushes closed windows, are described in [`crate::audit::refusals`].

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use keyplane_shared::Timestamp;
use keyplane_shared::ids::{KeyId, OrgId};
use serde_json::json;

use crate::store::{AuditContext, FailedAuth, Store};

#[cfg(test)]
mod tests;

/// Length of a window: refusals of one key for one reason within it make one record.
pub const WINDOW_MS: i64 = 60_000;
/// Most keys with an open window; refusals of further keys count per organization.
pub const MAX_TRACKED_KEYS: usize = 10_000;
/// Most records kept for another try after their write failed (the database refusing); past
/// it the oldest are dropped, and an error says how many refusals they stood for.
pub const MAX_UNWRITTEN: usize = 10_000;

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
    /// Records whose write failed, oldest first: written with the next flush.
    unwritten: Vec<PendingRecord>,
    /// Records dropped past [`MAX_UNWRITTEN`] since the last flush, and the refusals they
    /// stood for (logged once per flush).
    dropped: (usize, u64),
}

/// An `auth_failed` record to write into an organization's log.
#[derive(Debug, Clone)]
pub struct PendingRecord {
    /// The organization.
    pub org: OrgId,
    /// When the (last) refusal it stands for happened.
    pub at: Timestamp,
    /// The record.
    pub record: FailedAuth,
}

impl PendingRecord {
    /// How many refusals the record stands for (its `count`).
    pub fn refusals(&self) -> u64 {
        self.record.details["count"].as_u64().unwrap_or(1)
    }
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
        let Windows { keys, overflow, .. } = &mut *windows;
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
                at: now,
                record: FailedAuth {
                    details,
                    context: context.clone(),
                },
            });
        }
        records
    }

    /// Keeps `records`, whose write failed, for the next flush: at most [`MAX_UNWRITTEN`], the
    /// newest by the time of their refusals. Written later than they happened, each says when
    /// (`last_at`, in milliseconds, as a summary does).
    pub fn keep_unwritten(&self, records: Vec<PendingRecord>) {
        let mut windows = self.lock();
        for mut pending in records {
            let details = &mut pending.record.details;
            if details.get("last_at").is_none() {
                details["last_at"] = json!(pending.at.as_millis());
            }
            windows.unwritten.push(pending);
        }
        windows.unwritten.sort_by_key(|pending| pending.at);
        let excess = windows.unwritten.len().saturating_sub(MAX_UNWRITTEN);
        if excess > 0 {
            let refusals: u64 = windows
                .unwritten
                .drain(..excess)
                .map(|pending| pending.refusals())
                .sum();
            windows.dropped.0 += excess;
            windows.dropped.1 += refusals;
        }
    }

    /// The records kept after a failed write, taken; logs the ones dropped since last time.
    fn take_unwritten(windows: &mut Windows) -> Vec<PendingRecord> {
        let (records, refusals) = std::mem::take(&mut windows.dropped);
        if records > 0 {
            tracing::error!(
                records,
                refusals,
                "audit records of refused management calls dropped: the database refused them \
                 for too long"
            );
        }
        std::mem::take(&mut windows.unwritten)
    }

    /// Removes the windows that have closed at `now`; the records whose write failed, then the
    /// summaries of those windows that counted any refusal.
    pub fn take_closed(&self, now: Timestamp) -> Vec<PendingRecord> {
        let mut windows = self.lock();
        let mut records = RefusalLog::take_unwritten(&mut windows);
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

    /// Removes every window, closed or not; the records whose write failed, then the
    /// summaries of the windows that counted any refusal.
    pub fn take_all(&self) -> Vec<PendingRecord> {
        let mut windows = self.lock();
        let mut records = RefusalLog::take_unwritten(&mut windows);
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
        context.reach = Default::default();
        if let Subject::Overflow(_) = subject {
            details["overflow"] = json!(true);
            // Many keys: the record names none of them.
            context.actor = None;
        }
        Some(PendingRecord {
            org: self.org,
            at: self.last_at,
            record: FailedAuth { details, context },
        })
    }
}

/// Writes `records`, one transaction per organization, in order. A failure is logged, not
/// returned (the refusal the caller gets does not depend on it), and the organization's
/// records are kept in `log` for the next flush.
pub async fn write(
    store: &dyn Store,
    log: &RefusalLog,
    now: Timestamp,
    records: Vec<PendingRecord>,
) -> usize {
    let mut by_org: Vec<(OrgId, Vec<PendingRecord>)> = Vec::new();
    for pending in records {
        match by_org.iter_mut().find(|(org, _)| *org == pending.org) {
            Some((_, list)) => list.push(pending),
            None => by_org.push((pending.org, vec![pending])),
        }
    }
    let mut written = 0;
    for (org, list) in by_org {
        let records: Vec<FailedAuth> = list.iter().map(|pending| pending.record.clone()).collect();
        match store.record_failed_auths(org, &records, now).await {
            Ok(()) => written += list.len(),
            Err(error) => {
                tracing::error!(
                    %error,
                    org = %org,
                    records = list.len(),
                    "could not audit refused management calls; kept for the next try"
                );
                log.keep_unwritten(list);
            }
        }
    }
    written
}
