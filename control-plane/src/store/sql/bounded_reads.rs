//! Reading the change log within a byte bound: a page of the feed or a push carries at most
//! `sync::MAX_CHANGES_BYTES`, and a change can take from about a hundred bytes (a key with no
//! scopes) to some 8 KB (64 long scopes). Reading a page's full count of rows and cutting it
//! to the bound afterwards would read up to 84 MB to send 1 MiB. Here a first read of
//! [`FIRST_STEP`] rows measures how large the changes are, and each next read asks for about
//! as many rows as the bytes left hold at the size seen so far, never fewer than
//! [`FIRST_STEP`] and never more than [`GROWTH`] times the last read (small changes followed
//! by large ones would otherwise make the estimate far too high). Reading stops at the bound:
//! a page takes a few reads, and reads at most one read's worth of rows more than it sends
//! (some 2 MB of the largest changes).

use std::future::Future;

use keyplane_shared::Change;

use super::replication::decode_stored;
use crate::store::StoreError;

/// Rows asked for by the first read of a page.
pub(super) const FIRST_STEP: u64 = 64;
/// How many times the last read's rows the next read may ask for.
pub(super) const GROWTH: u64 = 4;

/// The changes after `after`, in order, without holes: at most `limit` of them, and only as
/// many as fit in `max_bytes` of their stored encodings (at least one, however large). A
/// batch of them encoded together takes no more than those stored encodings added up (one
/// header and checksum instead of one each).
///
/// `read(from, count)` gives the stored encodings of up to `count` changes after `from`, in
/// order; `count` is [`FIRST_STEP`] at first, then what the bytes left hold at the size read
/// so far (within [`FIRST_STEP`] and [`GROWTH`] times the last read), within `limit`. A
/// stored change that decodes to nothing is refused as corrupt (reading on from it would
/// read it again and again).
pub(super) async fn changes_within<R, F>(
    after: u64,
    limit: u64,
    max_bytes: usize,
    mut read: R,
) -> Result<Vec<Change>, StoreError>
where
    R: FnMut(u64, u64) -> F,
    F: Future<Output = Result<Vec<Vec<u8>>, StoreError>>,
{
    let mut changes: Vec<Change> = Vec::new();
    let mut bytes = 0usize;
    let mut from = after;
    let mut step = FIRST_STEP;
    loop {
        let wanted = step.min(limit.saturating_sub(changes.len() as u64));
        if wanted == 0 {
            return Ok(changes);
        }
        let rows = read(from, wanted).await?;
        let log_ended = (rows.len() as u64) < wanted;
        for body in rows {
            if !changes.is_empty() && bytes.saturating_add(body.len()) > max_bytes {
                return Ok(changes);
            }
            bytes = bytes.saturating_add(body.len());
            let decoded = decode_stored(&body)?;
            if decoded.is_empty() {
                return Err(StoreError::Corrupt(format!(
                    "a stored change after {from} holds no change"
                )));
            }
            changes.extend(decoded);
        }
        if log_ended {
            return Ok(changes);
        }
        from = changes.last().map_or(from, |change| change.seq);
        let average = (bytes / changes.len().max(1)).max(1);
        let rows_left = max_bytes.saturating_sub(bytes) / average + 1;
        let estimate = u64::try_from(rows_left).unwrap_or(u64::MAX);
        step = estimate.clamp(FIRST_STEP, wanted.saturating_mul(GROWTH).max(FIRST_STEP));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use keyplane_shared::table::codec::encode_changes;
    use keyplane_shared::{
        ChangeOp, Environment, KeyId, KeyStatus, LookupDigest, OrgId, ScopeSet, TableEntry,
    };

    use super::*;

    /// A small change: a key removed.
    fn removal(seq: u64) -> Change {
        Change {
            seq,
            op: ChangeOp::Remove(LookupDigest::from_bytes([seq as u8; 32])),
        }
    }

    /// A large change: a key added with many scopes.
    fn addition(seq: u64) -> Change {
        let scopes: Vec<String> = (0..16).map(|n| format!("resource{n}:action{n}")).collect();
        Change {
            seq,
            op: ChangeOp::Upsert(TableEntry {
                digest: LookupDigest::from_bytes([seq as u8; 32]),
                key_id: KeyId::from_bytes([1; 16]),
                org_id: OrgId::from_bytes([2; 16]),
                env: Environment::Live,
                status: KeyStatus::Active,
                expires_at: None,
                scopes: ScopeSet::parse(&scopes).expect("scopes"),
                rate_limit: None,
            }),
        }
    }

    /// Reads `log` (each change stored on its own, as the journal stores it) through
    /// [`changes_within`]: the changes, and how many rows were read.
    async fn read(log: &[Change], after: u64, limit: u64, max_bytes: usize) -> (Vec<Change>, u64) {
        let rows_read = Cell::new(0u64);
        let reader = |from: u64, count: u64| {
            let rows: Vec<Vec<u8>> = log
                .iter()
                .skip(from as usize)
                .take(count as usize)
                .map(|change| encode_changes(std::slice::from_ref(change)))
                .collect();
            rows_read.set(rows_read.get() + rows.len() as u64);
            async move { Ok(rows) }
        };
        let changes = changes_within(after, limit, max_bytes, reader)
            .await
            .expect("read");
        (changes, rows_read.get())
    }

    /// A log of 10,000 changes: the first 64 made by `first`, the others by `rest`.
    fn log_of(first: fn(u64) -> Change, rest: fn(u64) -> Change) -> Vec<Change> {
        (1..=10_000)
            .map(|seq| if seq <= 64 { first(seq) } else { rest(seq) })
            .collect()
    }

    fn seqs(changes: &[Change]) -> Vec<u64> {
        changes.iter().map(|change| change.seq).collect()
    }

    fn stored_bytes(changes: &[Change]) -> usize {
        changes
            .iter()
            .map(|change| encode_changes(std::slice::from_ref(change)).len())
            .sum()
    }

    #[tokio::test]
    async fn a_page_stops_at_its_byte_bound_having_read_about_what_it_sends() {
        let log: Vec<Change> = (1..=10_000).map(addition).collect();
        let bound = stored_bytes(&log[..100]);
        // 64 read first, then 64 more: the bytes left hold 36, but no read asks for fewer.
        let (changes, rows_read) = read(&log, 0, 10_000, bound).await;
        assert_eq!(seqs(&changes), (1..=100).collect::<Vec<_>>());
        assert_eq!(rows_read, 128);
        // Encoded together, they fit in the bound their stored encodings fit in.
        assert!(encode_changes(&changes).len() <= bound);
        // From further on, the same.
        let (changes, _) = read(&log, 500, 10_000, bound).await;
        assert_eq!(seqs(&changes), (501..=600).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn changes_smaller_than_the_first_ones_take_a_few_more_reads_and_fill_the_bound() {
        // Large changes first, then small ones: the first read's size is too high an estimate
        // for what follows, and later reads make up for it.
        let log = log_of(addition, removal);
        let bound = stored_bytes(&log[..1_000]);
        let (changes, rows_read) = read(&log, 0, 10_000, bound).await;
        assert_eq!(seqs(&changes), (1..=1_000).collect::<Vec<_>>());
        assert!(rows_read <= 1_000 + 256, "{rows_read} rows read");
        // The other way round: the estimate is far too high, and the next read is held to
        // four times the first: 64 small changes, then 256 rows of which 136 fit.
        let log = log_of(removal, addition);
        let bound = stored_bytes(&log[..200]);
        let (changes, rows_read) = read(&log, 0, 10_000, bound).await;
        assert_eq!(seqs(&changes), (1..=200).collect::<Vec<_>>());
        assert_eq!(rows_read, 64 + 256);
    }

    #[tokio::test]
    async fn a_page_stops_at_its_count_or_at_the_end_of_the_log() {
        let log: Vec<Change> = (1..=1_000).map(removal).collect();
        let (changes, rows_read) = read(&log, 0, 300, usize::MAX).await;
        assert_eq!(seqs(&changes), (1..=300).collect::<Vec<_>>());
        assert_eq!(rows_read, 300, "64, then the 236 left of the count");
        let (changes, _) = read(&log, 900, 10_000, usize::MAX).await;
        assert_eq!(seqs(&changes), (901..=1_000).collect::<Vec<_>>());
        let (changes, rows_read) = read(&log, 1_000, 10_000, usize::MAX).await;
        assert!(changes.is_empty());
        assert_eq!(rows_read, 0);
    }

    #[tokio::test]
    async fn one_change_larger_than_the_bound_still_goes_alone() {
        let log: Vec<Change> = (1..=10).map(addition).collect();
        for limit in [1, 10] {
            let (changes, _) = read(&log, 3, limit, 1).await;
            assert_eq!(seqs(&changes), vec![4], "limit {limit}");
        }
    }

    #[tokio::test]
    async fn a_stored_change_that_holds_nothing_is_refused_rather_than_read_again() {
        let reader = |from: u64, count: u64| {
            let rows: Vec<Vec<u8>> = (from..from + count).map(|_| encode_changes(&[])).collect();
            async move { Ok(rows) }
        };
        let read = changes_within(0, 1_000, usize::MAX, reader).await;
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
    }
}
