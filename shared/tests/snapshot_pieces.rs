//! Snapshots in pieces: the piecewise encoder and the streaming decoder agree with the whole
//! forms for any table and any way of cutting the bytes, keep what follows a snapshot, and
//! refuse every damaged snapshot the whole decoder refuses. Native and wasm32.

mod runner_config;

use keyplane_shared::table::codec::{
    CodecError, SnapshotDecoder, decode_snapshot, encode_changes, encode_snapshot,
    encode_snapshot_in_pieces,
};
use keyplane_shared::{
    Change, ChangeOp, Environment, KeyId, KeyStatus, KeyTable, LookupDigest, OrgId, ScopeSet,
    TableEntry,
};
use proptest::prelude::*;
use runner_config::config;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A table of `keys` entries over a few organizations and grants, some removed again.
fn table(keys: u32, removed_every: u32) -> KeyTable {
    let mut table = KeyTable::new();
    let mut seq = 0;
    let digest = |n: u32| {
        let mut bytes = [0u8; 32];
        bytes[..8]
            .copy_from_slice(&(u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes());
        LookupDigest::from_bytes(bytes)
    };
    for n in 0..keys {
        seq += 1;
        let scopes = match n % 3 {
            0 => ScopeSet::parse(["contacts:read"]),
            1 => ScopeSet::parse(["contacts:read", "triggers:*"]),
            _ => Ok(ScopeSet::empty()),
        }
        .expect("valid scopes");
        let change = Change {
            seq,
            op: ChangeOp::Upsert(TableEntry {
                digest: digest(n),
                key_id: KeyId::from_bytes((u128::from(n) + 1).to_be_bytes()),
                org_id: OrgId::from_bytes([(n % 7) as u8; 16]),
                env: if n % 2 == 0 {
                    Environment::Live
                } else {
                    Environment::Test
                },
                status: KeyStatus::Active,
                expires_at: None,
                scopes,
                rate_limit: None,
            }),
        };
        table.apply(&change).expect("in order");
    }
    for n in (0..keys).filter(|n| removed_every > 0 && n % removed_every == 0) {
        seq += 1;
        let change = Change {
            seq,
            op: ChangeOp::Remove(digest(n)),
        };
        table.apply(&change).expect("in order");
    }
    table
}

/// Feeds `bytes` to a streaming decoder cut at `cuts` (offsets, any order).
fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<(KeyTable, Vec<u8>), CodecError> {
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut decoder = SnapshotDecoder::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        decoder.push(&bytes[from..cut])?;
        from = cut;
    }
    decoder.finish()
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn pieces_decode_to_the_same_table_and_keep_what_follows(
        keys in 0u32..600,
        removed_every in 0u32..5,
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        follows in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let table = table(keys, removed_every);
        let bytes = encode_snapshot(&table);
        let (decoded, rest) = decode_in_pieces(&bytes, &cuts).expect("own snapshot");
        prop_assert_eq!(&decoded, &table);
        prop_assert!(rest.is_empty());

        let mut with_more = bytes.clone();
        with_more.extend_from_slice(&follows);
        let (decoded, rest) = decode_in_pieces(&with_more, &cuts).expect("own snapshot");
        prop_assert_eq!(decoded, table);
        prop_assert_eq!(rest, follows);
    }

    #[test]
    fn pieces_encode_to_the_same_bytes(keys in 0u32..600, piece_len in 1usize..4_000) {
        let table = table(keys, 3);
        let mut pieces = Vec::new();
        encode_snapshot_in_pieces(&table, piece_len, |piece| {
            pieces.push(piece.to_vec());
            Ok::<(), ()>(())
        })
        .expect("the sink never fails");
        let whole = encode_snapshot(&table);
        prop_assert!(pieces[..pieces.len() - 1].iter().all(|piece| piece.len() >= piece_len));
        prop_assert_eq!(pieces.concat(), whole);
    }

    #[test]
    fn damage_is_refused_in_pieces_as_it_is_whole(
        keys in 1u32..200,
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut bytes = encode_snapshot(&table(keys, 0));
        let at = at.index(bytes.len());
        bytes[at] ^= flip;
        prop_assert!(decode_snapshot(&bytes).is_err());
        prop_assert!(decode_in_pieces(&bytes, &cuts).is_err(), "byte {} damaged", at);
    }

    #[test]
    fn truncated_snapshots_are_truncated_in_pieces(keys in 0u32..200, cut in any::<prop::sample::Index>()) {
        let bytes = encode_snapshot(&table(keys, 0));
        let cut = cut.index(bytes.len());
        prop_assert_eq!(decode_in_pieces(&bytes[..cut], &[cut / 2]).err(), Some(CodecError::Truncated));
    }
}

#[test]
fn the_decoder_reports_the_first_error_again_and_finds_bad_headers_at_once() {
    let mut decoder = SnapshotDecoder::new();
    assert_eq!(
        decoder.push(b"KP"),
        Ok(()),
        "a beginning of the magic waits for more"
    );
    assert_eq!(decoder.push(b"CB\x01"), Err(CodecError::BadMagic));
    assert_eq!(decoder.push(b"anything"), Err(CodecError::BadMagic));
    assert_eq!(decoder.finish().err(), Some(CodecError::BadMagic));

    let mut older = encode_snapshot(&table(3, 0));
    older[4] = 1;
    let mut decoder = SnapshotDecoder::new();
    assert_eq!(
        decoder.push(&older[..5]),
        Err(CodecError::UnsupportedVersion(1))
    );

    // A change batch is not a snapshot, and a snapshot's checksum is checked at its end.
    assert_eq!(
        decode_in_pieces(&encode_changes(&[]), &[]).err(),
        Some(CodecError::BadMagic)
    );
    let mut bad_sum = encode_snapshot(&table(3, 0));
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 1;
    let mut decoder = SnapshotDecoder::new();
    assert_eq!(decoder.push(&bad_sum), Err(CodecError::ChecksumMismatch));
    assert!(!decoder.is_complete());
}

#[test]
fn a_complete_snapshot_says_so_before_finish() {
    let bytes = encode_snapshot(&table(50, 0));
    let mut decoder = SnapshotDecoder::new();
    decoder
        .push(&bytes[..bytes.len() - 1])
        .expect("fine so far");
    assert!(!decoder.is_complete());
    decoder
        .push(&bytes[bytes.len() - 1..])
        .expect("the last byte");
    assert!(decoder.is_complete());
}
