//! A replica's lineage: which history of the feed its table belongs to, and where in it.
//!
//! Sequence numbers alone cannot tell two histories apart. A control plane started on a
//! re-created database, or on one restored from an older backup, numbers its changes from
//! where *its* log ends, so an edge that has seen changes 1–5 of the old history would take
//! changes 1–5 of the new one as already applied. Two things prevent that:
//!
//! - a [`HistoryId`], random, made with the database: a re-created database has another one;
//! - a [`FeedChain`]: a hash chain over the change log, `chain(0) = H(domain, history)` and
//!   `chain(n) = H(domain, chain(n-1), encoding of change n)`, where the encoding is the
//!   canonical one-change batch of [`encode_changes`] (the form
//!   the control plane stores). A database restored from a backup keeps its history id, but
//!   the changes it makes after the restore differ from the ones the edge saw, and so does
//!   the chain from there on.
//!
//! Every feed answer names the chain at the sequence the edge asked from, and every push the
//! chain at the sequence it sends from: a replica whose own chain at that sequence differs
//! belongs to another history and reloads a snapshot. The chain is not a secret (the answers
//! that carry it are signed), so it is compared with `==`.

use core::fmt;

use sha2::{Digest as _, Sha256};

use super::change::is_next;
use super::codec::encode_changes;
use super::{Applied, Change, KeyTable, SequenceGap};
use crate::ids::HistoryId;

const DOMAIN: &[u8] = b"keyplane-feed-chain-v1\n";

/// The hash chain over the change log up to some sequence number.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeedChain([u8; 32]);

impl FeedChain {
    /// The chain before the first change of `history` (sequence 0).
    pub fn genesis(history: HistoryId) -> Self {
        let mut hash = Sha256::new();
        hash.update(DOMAIN);
        hash.update(b"genesis\n");
        hash.update(history.to_bytes());
        FeedChain(hash.finalize().into())
    }

    /// The chain after one more change, given that change's canonical one-change batch
    /// encoding (the control plane's stored form).
    pub fn next_encoded(&self, encoded_change: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update(DOMAIN);
        hash.update(self.0);
        hash.update(encoded_change);
        FeedChain(hash.finalize().into())
    }

    /// The chain after `change`.
    pub fn next(&self, change: &Change) -> Self {
        self.next_encoded(&encode_changes(std::slice::from_ref(change)))
    }

    /// The chain after every change of `changes`, in order.
    pub fn extend<'a>(&self, changes: impl IntoIterator<Item = &'a Change>) -> Self {
        changes
            .into_iter()
            .fold(*self, |chain, change| chain.next(change))
    }

    /// The 32 raw bytes (as stored).
    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// The chain for 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        FeedChain(bytes)
    }

    /// Lower-case hex, as carried in headers and query strings.
    pub fn to_hex(self) -> String {
        crate::sync::hex(&self.0)
    }

    /// Parses 64 lower-case hex digits.
    pub fn parse_hex(text: &str) -> Option<Self> {
        crate::sync::unhex::<32>(text).ok().map(FeedChain)
    }
}

impl fmt::Debug for FeedChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FeedChain({})", self.to_hex())
    }
}

/// Where a replica stands: its history and the chain at its applied sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lineage {
    /// The feed history its table comes from.
    pub history: HistoryId,
    /// The chain at its applied sequence.
    pub chain: FeedChain,
}

impl Lineage {
    /// The start of `history`, before any change.
    pub fn genesis(history: HistoryId) -> Self {
        Lineage {
            history,
            chain: FeedChain::genesis(history),
        }
    }

    /// Whether a feed of `history`, whose chain at this replica's sequence is `chain`, is the
    /// history this replica follows.
    pub fn continues(&self, history: HistoryId, chain: FeedChain) -> bool {
        self.history == history && self.chain == chain
    }
}

/// Applies `change` to `table` and, when it was the next one, moves `lineage`'s chain past it
/// (a replica whose lineage is unknown only applies).
pub fn apply_following(
    table: &mut KeyTable,
    lineage: Option<&mut Lineage>,
    change: &Change,
) -> Result<Applied, SequenceGap> {
    let applied = table.apply(change)?;
    if let (Applied::Applied, Some(lineage)) = (applied, lineage) {
        lineage.chain = lineage.chain.next(change);
    }
    Ok(applied)
}

/// Moves a replica's position, its sequence `seq` and `lineage`, past `change` without a table
/// to apply it to (a store reading where its storage stands), by the rule [`KeyTable::apply`]
/// follows: the next change moves both, one already reflected moves nothing, a later one is a
/// gap and moves nothing.
pub fn follow(
    seq: &mut u64,
    lineage: &mut Lineage,
    change: &Change,
) -> Result<Applied, SequenceGap> {
    if !is_next(*seq, change.seq)? {
        return Ok(Applied::AlreadyApplied);
    }
    lineage.chain = lineage.chain.next(change);
    *seq = change.seq;
    Ok(Applied::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::LookupDigest;
    use crate::table::ChangeOp;
    use crate::table::codec::decode_changes;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn remove(seq: u64, byte: u8) -> Change {
        Change {
            seq,
            op: ChangeOp::Remove(LookupDigest::from_bytes([byte; 32])),
        }
    }

    #[test]
    fn histories_differ_from_their_first_link() {
        let a = HistoryId::from_bytes([1; 16]);
        let b = HistoryId::from_bytes([2; 16]);
        assert_ne!(FeedChain::genesis(a), FeedChain::genesis(b));
        assert_eq!(FeedChain::genesis(a), FeedChain::genesis(a));
    }

    #[test]
    fn the_same_sequence_numbers_with_other_changes_give_another_chain() {
        let start = FeedChain::genesis(HistoryId::from_bytes([1; 16]));
        let seen = start.extend(&[remove(1, 1), remove(2, 2)]);
        let restored = start.extend(&[remove(1, 1), remove(2, 3)]);
        assert_ne!(seen, restored);
        assert_eq!(seen, start.extend(&[remove(1, 1), remove(2, 2)]));
    }

    #[test]
    fn the_stored_encoding_and_a_decoded_change_chain_alike() {
        let change = remove(7, 9);
        let stored = encode_changes(std::slice::from_ref(&change));
        let decoded = decode_changes(&stored).expect("decodes");
        let start = FeedChain::genesis(HistoryId::from_bytes([4; 16]));
        assert_eq!(start.next_encoded(&stored), start.next(&decoded[0]));
    }

    #[test]
    fn upserts_chain_alike_from_their_stored_encoding_and_after_decoding() {
        use crate::ids::{KeyId, OrgId};
        use crate::key::Environment;
        use crate::ratelimit::RateLimit;
        use crate::scope::ScopeSet;
        use crate::table::{KeyStatus, TableEntry};
        use crate::time::Timestamp;
        let entry = |scopes: &[&str], expires_at, rate_limit| TableEntry {
            digest: LookupDigest::from_bytes([3; 32]),
            key_id: KeyId::from_bytes([4; 16]),
            org_id: OrgId::from_bytes([5; 16]),
            env: Environment::Live,
            status: KeyStatus::Active,
            expires_at,
            scopes: ScopeSet::parse(scopes).expect("valid scopes"),
            rate_limit,
        };
        let limit = RateLimit::new(30, 7).expect("valid limit");
        let start = FeedChain::genesis(HistoryId::from_bytes([4; 16]));
        for (seq, op) in [
            ChangeOp::Upsert(entry(&[], None, None)),
            ChangeOp::Upsert(entry(
                &["contacts:write", "admin:full", "contacts:read"],
                Some(Timestamp(1_800_000_000_000)),
                Some(limit),
            )),
            ChangeOp::Remove(LookupDigest::from_bytes([3; 32])),
        ]
        .into_iter()
        .enumerate()
        {
            let change = Change {
                seq: seq as u64 + 1,
                op,
            };
            let stored = encode_changes(std::slice::from_ref(&change));
            let decoded = decode_changes(&stored).expect("decodes");
            assert_eq!(start.next_encoded(&stored), start.next(&decoded[0]));
            assert_eq!(encode_changes(&decoded), stored, "re-encodes byte for byte");
        }
    }

    #[test]
    fn applying_a_change_moves_the_lineage_only_when_it_applied() {
        let history = HistoryId::from_bytes([8; 16]);
        let mut table = KeyTable::new();
        let mut lineage = Lineage::genesis(history);
        let first = remove(1, 1);
        assert_eq!(
            apply_following(&mut table, Some(&mut lineage), &first),
            Ok(Applied::Applied)
        );
        assert_eq!(lineage.chain, FeedChain::genesis(history).next(&first));
        assert_eq!(
            apply_following(&mut table, Some(&mut lineage), &first),
            Ok(Applied::AlreadyApplied)
        );
        assert_eq!(lineage.chain, FeedChain::genesis(history).next(&first));
        assert!(apply_following(&mut table, Some(&mut lineage), &remove(3, 3)).is_err());
        assert_eq!(table.applied_seq(), 1);
    }

    #[test]
    fn following_without_a_table_lands_where_applying_to_one_does() {
        let history = HistoryId::from_bytes([9; 16]);
        // Replayed, next, duplicate, next, then past a gap (5 after 3), then what follows it.
        let changes = [1, 1, 2, 2, 3, 5, 4].map(|seq| remove(seq, seq as u8));
        let mut table = KeyTable::new();
        let mut applied_lineage = Lineage::genesis(history);
        let mut seq = 0;
        let mut followed_lineage = Lineage::genesis(history);
        for change in &changes {
            let applied = apply_following(&mut table, Some(&mut applied_lineage), change);
            let followed = follow(&mut seq, &mut followed_lineage, change);
            assert_eq!(followed, applied, "change {}", change.seq);
            assert_eq!(seq, table.applied_seq());
            assert_eq!(followed_lineage, applied_lineage);
        }
        assert_eq!(seq, 4, "the gap moved nothing; the change after 3 did");
        assert_eq!(
            follow(&mut seq, &mut followed_lineage, &remove(6, 6)),
            Err(SequenceGap {
                expected: 5,
                received: 6
            }),
            "5 was refused as a gap, so 6 is one too"
        );
    }

    #[test]
    fn hex_round_trips_and_refuses_other_shapes() {
        let chain = FeedChain::genesis(HistoryId::from_bytes([5; 16]));
        assert_eq!(FeedChain::parse_hex(&chain.to_hex()), Some(chain));
        assert_eq!(FeedChain::parse_hex("00"), None);
        assert_eq!(FeedChain::parse_hex(&chain.to_hex().to_uppercase()), None);
    }

    #[test]
    fn a_lineage_continues_only_its_own_history_at_its_own_chain() {
        let history = HistoryId::from_bytes([6; 16]);
        let lineage = Lineage::genesis(history);
        assert!(lineage.continues(history, FeedChain::genesis(history)));
        let other = HistoryId::from_bytes([7; 16]);
        assert!(!lineage.continues(other, FeedChain::genesis(history)));
        assert!(!lineage.continues(history, FeedChain::genesis(other)));
    }
}
