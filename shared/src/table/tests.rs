//! Unit tests of the key table, its change log and codecs.

use super::codec::{
    CodecError, decode_changes, decode_snapshot, encode_changes, encode_changes_within,
    encode_snapshot, snapshot_sequence,
};
use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A deterministic entry for tests: digest and ids derived from `n`.
pub(crate) fn entry(n: u32, org: u8, scopes: &[&str]) -> TableEntry {
    let mut digest = [0u8; 32];
    digest[..4].copy_from_slice(&n.to_le_bytes());
    digest[31] = 0xd1;
    let mut key_id = [0u8; 16];
    key_id[..4].copy_from_slice(&n.to_be_bytes());
    TableEntry {
        digest: LookupDigest::from_bytes(digest),
        key_id: KeyId::from_bytes(key_id),
        org_id: OrgId::from_bytes([org; 16]),
        env: if n.is_multiple_of(2) {
            Environment::Live
        } else {
            Environment::Test
        },
        status: KeyStatus::Active,
        expires_at: n
            .is_multiple_of(3)
            .then_some(Timestamp(1_800_000_000_000 + i64::from(n))),
        scopes: ScopeSet::parse(scopes).expect("valid scopes"),
        rate_limit: n
            .is_multiple_of(5)
            .then(|| RateLimit::new(60 + n, 5).expect("valid")),
    }
}

fn upsert(seq: u64, entry: TableEntry) -> Change {
    Change {
        seq,
        op: ChangeOp::Upsert(entry),
    }
}

#[test]
fn changes_apply_in_order_and_entries_read_back() {
    let mut table = KeyTable::new();
    let a = entry(1, 1, &["contacts:read"]);
    let b = entry(2, 1, &["contacts:read"]);
    assert_eq!(table.apply(&upsert(1, a.clone())), Ok(Applied::Applied));
    assert_eq!(table.apply(&upsert(2, b.clone())), Ok(Applied::Applied));
    assert_eq!(table.applied_seq(), 2);
    assert_eq!(table.len(), 2);
    assert_eq!(table.get(&a.digest).map(|e| e.to_row()), Some(a.to_row()));
    assert_eq!(table.get(&b.digest).map(|e| e.to_row()), Some(b.to_row()));
    assert!(table.get(&entry(3, 1, &[]).digest).is_none());
}

#[test]
fn duplicates_are_ignored_and_gaps_are_refused() {
    let mut table = KeyTable::new();
    table.apply(&upsert(1, entry(1, 1, &[]))).expect("first");
    assert_eq!(
        table.apply(&upsert(1, entry(9, 1, &[]))),
        Ok(Applied::AlreadyApplied)
    );
    assert!(
        table.get(&entry(9, 1, &[]).digest).is_none(),
        "a duplicate changes nothing"
    );
    assert_eq!(
        table.apply(&upsert(3, entry(3, 1, &[]))),
        Err(SequenceGap {
            expected: 2,
            received: 3
        })
    );
    assert_eq!(table.applied_seq(), 1);
    assert_eq!(table.len(), 1);
}

#[test]
fn upsert_replaces_and_remove_deletes() {
    let mut table = KeyTable::new();
    let mut e = entry(1, 1, &["a:read"]);
    table.apply(&upsert(1, e.clone())).expect("insert");
    e.status = KeyStatus::Revoked;
    e.scopes = ScopeSet::parse(["b:write"]).expect("valid");
    table.apply(&upsert(2, e.clone())).expect("replace");
    assert_eq!(table.len(), 1);
    assert_eq!(table.get(&e.digest).map(|x| x.to_row()), Some(e.to_row()));
    assert_eq!(table.grants.live(), 1, "the replaced grant was released");
    table
        .apply(&Change {
            seq: 3,
            op: ChangeOp::Remove(e.digest),
        })
        .expect("remove");
    assert!(table.is_empty());
    assert_eq!((table.orgs.live(), table.grants.live()), (0, 0));
    table
        .apply(&Change {
            seq: 4,
            op: ChangeOp::Remove(e.digest),
        })
        .expect("removing nothing is fine");
    assert_eq!(table.applied_seq(), 4);
}

#[test]
fn removing_from_the_middle_keeps_every_other_entry_reachable() {
    let mut table = KeyTable::new();
    let entries: Vec<TableEntry> = (0..100)
        .map(|n| entry(n, (n % 3) as u8, &["x:read"]))
        .collect();
    for (seq, e) in (1..).zip(&entries) {
        table.apply(&upsert(seq, e.clone())).expect("in order");
    }
    for (seq, e) in (101..).zip(entries.iter().step_by(7)) {
        table
            .apply(&Change {
                seq,
                op: ChangeOp::Remove(e.digest),
            })
            .expect("in order");
    }
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(table.get(&e.digest).is_some(), i % 7 != 0, "entry {i}");
    }
}

#[test]
fn interning_shares_organizations_and_grants() {
    let mut table = KeyTable::new();
    let mut grants = std::collections::HashSet::new();
    for n in 0..50 {
        let e = entry(n, (n % 2) as u8, &["a:read", "b:*"]);
        grants.insert(Grant::of(&e));
        table.apply(&upsert(u64::from(n) + 1, e)).expect("in order");
    }
    assert_eq!(table.orgs.live(), 2);
    // Two environments without an override, and ten keys with their own rate limits.
    assert_eq!(grants.len(), 12);
    assert_eq!(table.grants.live(), grants.len());
}

#[test]
fn snapshot_round_trips_and_is_canonical() {
    let mut table = KeyTable::new();
    for n in 0..20 {
        table
            .apply(&upsert(
                u64::from(n) + 1,
                entry(n, (n % 4) as u8, &["a:read"]),
            ))
            .expect("in order");
    }
    let bytes = encode_snapshot(&table);
    let decoded = decode_snapshot(&bytes).expect("valid snapshot");
    assert_eq!(decoded, table);
    assert_eq!(decoded.applied_seq(), 20);
    assert_eq!(
        encode_snapshot(&decoded),
        bytes,
        "equal tables encode to equal bytes"
    );
    assert_eq!(
        encode_snapshot(&KeyTable::new()).len(),
        4 + 1 + 8 + 4 + 4 + 4 + 8
    );
}

#[test]
fn snapshot_decoding_rejects_damage_with_an_error() {
    let mut table = KeyTable::new();
    table
        .apply(&upsert(1, entry(1, 1, &["a:read"])))
        .expect("first");
    let bytes = encode_snapshot(&table);
    assert_eq!(decode_snapshot(&[]), Err(CodecError::Truncated));
    assert_eq!(decode_snapshot(b"KP"), Err(CodecError::Truncated));
    assert_eq!(
        decode_snapshot(b"nope, not a snapshot"),
        Err(CodecError::BadMagic)
    );
    assert_eq!(
        decode_snapshot(&encode_changes(&[])),
        Err(CodecError::BadMagic)
    );
    let mut older = bytes.clone();
    older[4] = 1;
    assert_eq!(
        decode_snapshot(&older),
        Err(CodecError::UnsupportedVersion(1)),
        "version 1 (full digests) is not read: the store reloads from the control plane"
    );
    let mut newer = bytes.clone();
    newer[4] = 3;
    assert_eq!(
        decode_snapshot(&newer),
        Err(CodecError::UnsupportedVersion(3))
    );
    for cut in 5..bytes.len() {
        assert!(
            decode_snapshot(&bytes[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    for i in 5..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x40;
        assert!(decode_snapshot(&flipped).is_err(), "bit flip at {i}");
    }
}

/// Re-seals a damaged encoding with a valid checksum, so structural checks are what catch it.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    let len = if bytes.starts_with(b"KPSN") { 8 } else { 4 };
    bytes.truncate(bytes.len() - len);
    super::codec::seal(&mut bytes);
    bytes
}

#[test]
fn structurally_corrupt_snapshots_are_rejected_even_with_a_valid_crc() {
    let mut table = KeyTable::new();
    table
        .apply(&upsert(1, entry(1, 1, &["a:read"])))
        .expect("first");
    let bytes = encode_snapshot(&table);
    // Layout: 13 header, 4 org count, 16 org, 4 grant count, then the grant (env, status,
    // 6 of rate limit, scope count, length and "a:read"), 4 entry count, then the entry.
    let grant_at = 13 + 4 + 16 + 4;
    let entry_at = grant_at + 1 + 1 + 6 + 1 + 1 + 6 + 4;
    let cases: [(usize, u8, CodecError); 6] = [
        (
            entry_at + 40,
            9,
            CodecError::Corrupt("organization index out of range"),
        ),
        (
            entry_at + 44,
            9,
            CodecError::Corrupt("grant index out of range"),
        ),
        (grant_at, 7, CodecError::Corrupt("unknown environment")),
        (grant_at + 1, 0, CodecError::Corrupt("unknown key status")),
        (grant_at + 2, 1, CodecError::Corrupt("invalid rate limit")),
        (grant_at + 10, b'A', CodecError::Corrupt("invalid scope")),
    ];
    for (offset, value, expected) in cases {
        let mut damaged = bytes.clone();
        damaged[offset] = value;
        assert_eq!(
            decode_snapshot(&reseal(damaged)),
            Err(expected),
            "offset {offset}"
        );
    }
    let mut huge_count = bytes.clone();
    huge_count[entry_at - 4..entry_at].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode_snapshot(&reseal(huge_count)),
        Err(CodecError::Truncated)
    );
    let mut trailing = bytes.clone();
    trailing.insert(bytes.len() - 4, 0);
    assert_eq!(
        decode_snapshot(&reseal(trailing)),
        Err(CodecError::TrailingBytes)
    );
}

#[test]
fn non_canonical_snapshots_are_rejected() {
    // Two entries of two organizations, both without scopes or limits: one grant each (one
    // test, one live), of 9 bytes.
    let mut table = KeyTable::new();
    table.apply(&upsert(1, entry(1, 1, &[]))).expect("first");
    table.apply(&upsert(2, entry(2, 2, &[]))).expect("second");
    let bytes = encode_snapshot(&table);
    let entries_at = 13 + 4 + 2 * 16 + 4 + 2 * 9 + 4;
    let record = |n: usize| bytes[entries_at + n * 48..entries_at + (n + 1) * 48].to_vec();
    let with_records = |records: &[Vec<u8>]| {
        let mut out = bytes[..entries_at - 4].to_vec();
        out.extend_from_slice(&(records.len() as u32).to_le_bytes());
        for r in records {
            out.extend_from_slice(r);
        }
        out.extend_from_slice(&[0; 8]);
        reseal(out)
    };
    let with_indices = |n: usize, org: u32, grant: u32| {
        let mut r = record(n);
        r[40..44].copy_from_slice(&org.to_le_bytes());
        r[44..48].copy_from_slice(&grant.to_le_bytes());
        r
    };
    let with_org_index = |n: usize, org: u32| with_indices(n, org, n as u32);
    assert_eq!(
        with_records(&[record(0), record(1)]),
        bytes,
        "the layout above is right"
    );
    let cases = [
        (
            vec![record(0), record(0)],
            "entries are not in strictly increasing digest order",
        ),
        (
            vec![with_indices(1, 0, 0), with_indices(0, 1, 1)],
            "entries are not in strictly increasing digest order",
        ),
        (
            vec![with_org_index(0, 1), with_org_index(1, 0)],
            "interned values are not numbered in order of first use",
        ),
        (
            vec![record(0), with_org_index(1, 0)],
            "an organization or grant is listed but never used",
        ),
    ];
    for (records, why) in cases {
        assert_eq!(
            decode_snapshot(&with_records(&records)),
            Err(CodecError::Corrupt(why))
        );
    }
}

#[test]
fn change_batches_round_trip_and_reject_damage() {
    let changes = vec![
        upsert(5, entry(1, 1, &["a:read", "admin:full"])),
        Change {
            seq: 6,
            op: ChangeOp::Remove(entry(2, 1, &[]).digest),
        },
        upsert(9, entry(3, 2, &[])),
    ];
    let bytes = encode_changes(&changes);
    assert_eq!(decode_changes(&bytes), Ok(changes.clone()));
    for cut in 0..bytes.len() {
        assert!(decode_changes(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    let reordered = encode_changes(&[changes[1].clone(), changes[0].clone()]);
    assert_eq!(
        decode_changes(&reordered),
        Err(CodecError::Corrupt("sequence numbers do not increase"))
    );
    let mut bad_op = bytes.clone();
    bad_op[9 + 8] = 3;
    assert_eq!(
        decode_changes(&reseal(bad_op)),
        Err(CodecError::Corrupt("unknown change operation"))
    );
}

#[test]
fn a_batch_is_encoded_within_a_bound_from_its_start() {
    let changes: Vec<Change> = (1..=100u32)
        .map(|n| upsert(n.into(), entry(n, 1, &["contacts:read"])))
        .collect();
    let whole = encode_changes(&changes);
    assert_eq!(
        encode_changes_within(&changes, whole.len()),
        (&changes[..], whole.clone()),
        "a batch that fits is taken whole"
    );
    for limit in [whole.len() - 1, whole.len() / 3, 200] {
        let (part, body) = encode_changes_within(&changes, limit);
        let taken = part.len();
        assert_eq!(part, &changes[..taken], "a leading part");
        assert!(body.len() <= limit, "{} bytes over {limit}", body.len());
        assert_eq!(body, encode_changes(part), "its encoding");
        let twice = encode_changes(&changes[..(taken * 2).min(100)]).len();
        assert!(
            twice > limit,
            "{taken} changes taken under {limit} bytes, where twice as many fit: {twice} bytes"
        );
    }
    let lone = &changes[..1];
    assert_eq!(
        encode_changes_within(lone, 1),
        (lone, encode_changes(lone)),
        "one change over the bound is still sent"
    );
    assert!(encode_changes_within(&[], 1).0.is_empty());
}

#[test]
fn a_snapshots_sequence_reads_from_its_first_bytes_and_nothing_else_passes() {
    let mut table = KeyTable::new();
    for n in 0..3 {
        table
            .apply(&upsert(u64::from(n) + 1, entry(n, 1, &["a:read"])))
            .expect("in order");
    }
    let bytes = encode_snapshot(&table);
    assert_eq!(snapshot_sequence(&bytes), Ok(3));
    assert_eq!(snapshot_sequence(&bytes[..13]), Ok(3));
    assert_eq!(snapshot_sequence(&bytes[..12]), Err(CodecError::Truncated));
    assert_eq!(snapshot_sequence(&[0; 64]), Err(CodecError::BadMagic));
    let changes = encode_changes(&[upsert(1, entry(1, 1, &[]))]);
    assert_eq!(snapshot_sequence(&changes), Err(CodecError::BadMagic));
    let mut other_version = bytes.clone();
    other_version[4] = 1;
    assert_eq!(
        snapshot_sequence(&other_version),
        Err(CodecError::UnsupportedVersion(1))
    );
}
