//! Property tests of the shared core; they run natively and on wasm32 (wasm-bindgen-test-runner).

mod runner_config;

use std::collections::BTreeMap;

use keyplane_shared::key::{BODY_LEN, CHECKSUM_LEN, KeyParseError, MAX_KEY_LEN};
use keyplane_shared::ratelimit::GcraState;
use keyplane_shared::table::codec::{
    decode_changes, decode_snapshot, encode_changes, encode_snapshot, seal,
};
use keyplane_shared::{
    ApiKey, Change, ChangeOp, Environment, KeyId, KeyPrefix, KeyStatus, KeyTable, KeyText,
    LookupDigest, OrgId, RateLimit, Scope, ScopeSet, TableEntry, TableRow, Timestamp,
};
use proptest::prelude::*;
use runner_config::config;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn prefix() -> impl Strategy<Value = KeyPrefix> {
    "[a-z0-9]{1,16}".prop_map(|p| KeyPrefix::new(&p).expect("strategy yields valid prefixes"))
}

fn env() -> impl Strategy<Value = Environment> {
    prop_oneof![Just(Environment::Live), Just(Environment::Test)]
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        1 => Just(Scope::AdminFull),
        3 => "(contacts|triggers|api-keys)".prop_map(|r| Scope::parse(&format!("{r}:*")).expect("valid")),
        6 => ("(contacts|triggers|api-keys)", "(read|write|manage)")
            .prop_map(|(r, a)| Scope::parse(&format!("{r}:{a}")).expect("valid")),
    ]
}

fn scope_set() -> impl Strategy<Value = ScopeSet> {
    prop::collection::vec(scope(), 0..5).prop_map(|s| ScopeSet::new(s).expect("few scopes"))
}

/// Entries over a small digest space, so upserts replace and removes hit.
fn entry() -> impl Strategy<Value = TableEntry> {
    (
        0u8..24,
        any::<[u8; 16]>(),
        0u8..4,
        env(),
        any::<bool>(),
        prop::option::of(0i64..4_000_000_000_000),
        scope_set(),
        prop::option::of((1u32..10_000, 1u32..100)),
    )
        .prop_map(
            |(d, key_id, org, env, revoked, expires, scopes, limit)| TableEntry {
                digest: digest(d),
                key_id: KeyId::from_bytes(key_id),
                org_id: OrgId::from_bytes([org; 16]),
                env,
                status: if revoked {
                    KeyStatus::Revoked
                } else {
                    KeyStatus::Active
                },
                expires_at: expires.map(Timestamp),
                scopes,
                rate_limit: limit.map(|(rpm, burst)| RateLimit::new(rpm, burst).expect("in range")),
            },
        )
}

fn digest(n: u8) -> LookupDigest {
    let mut bytes = [n; 32];
    bytes[0] = n.wrapping_mul(37);
    LookupDigest::from_bytes(bytes)
}

/// A change log numbered from 1.
fn change_log() -> impl Strategy<Value = Vec<Change>> {
    let op = prop_oneof![3 => entry().prop_map(ChangeOp::Upsert), 1 => (0u8..24).prop_map(|d| ChangeOp::Remove(digest(d)))];
    prop::collection::vec(op, 0..60)
        .prop_map(|ops| (1..).zip(ops).map(|(seq, op)| Change { seq, op }).collect())
}

fn table_from(log: &[Change]) -> KeyTable {
    let mut table = KeyTable::new();
    table.apply_all(log).expect("a numbered log has no gaps");
    table
}

/// What the log means, computed independently of the table: the last upsert per digest wins.
/// What the log means: the last upsert of each digest prefix (the table's key) not removed
/// after it.
fn model(log: &[Change]) -> Vec<TableRow> {
    let mut state: BTreeMap<[u8; 16], TableRow> = BTreeMap::new();
    for change in log {
        match &change.op {
            ChangeOp::Upsert(e) => {
                state.insert(*e.digest.prefix().as_bytes(), e.to_row());
            }
            ChangeOp::Remove(d) => {
                state.remove(d.prefix().as_bytes());
            }
        }
    }
    state.into_values().collect()
}

proptest! {
    #![proptest_config(config(if cfg!(target_arch = "wasm32") { 64 } else { 256 }))]

    #[test]
    fn generated_keys_parse_back(prefix in prefix(), env in env()) {
        let key = ApiKey::generate(&prefix, env).expect("CSPRNG");
        let parsed = ApiKey::parse(key.expose_secret(), &prefix).expect("a generated key parses");
        prop_assert_eq!(parsed.expose_secret(), key.expose_secret());
        prop_assert_eq!(parsed.environment(), env);
        prop_assert_eq!(parsed.truncated(), key.truncated());
    }

    #[test]
    fn any_single_character_change_is_rejected(env in env(), position in 0usize..(8 + BODY_LEN), replacement in 0x20u8..0x7f) {
        let prefix = KeyPrefix::default();
        let key = ApiKey::generate(&prefix, env).expect("CSPRNG");
        let mut bytes = key.expose_secret().as_bytes().to_vec();
        prop_assume!(bytes[position] != replacement);
        bytes[position] = replacement;
        let altered = String::from_utf8(bytes).expect("ASCII");
        prop_assert!(ApiKey::parse(&altered, &prefix).is_err(), "{} was accepted", altered);
    }

    #[test]
    fn dropping_or_doubling_a_character_is_rejected(position in 0usize..(8 + BODY_LEN), double in any::<bool>()) {
        let prefix = KeyPrefix::default();
        let key = ApiKey::generate(&prefix, Environment::Live).expect("CSPRNG");
        let mut altered = key.expose_secret().to_string();
        let c = altered.remove(position);
        if double {
            altered.insert(position, c);
            altered.insert(position, c);
        }
        prop_assert!(ApiKey::parse(&altered, &prefix).is_err());
    }

    #[test]
    fn the_key_check_says_what_a_plain_reading_says(
        env in env(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, prop::sample::select(b"_aZ9-lt.\xc3".to_vec())), 0..3),
    ) {
        let prefix = KeyPrefix::default();
        let key = ApiKey::generate(&prefix, env).expect("CSPRNG");
        let mut bytes = key.expose_secret().as_bytes().to_vec();
        for (at, kind, byte) in edits {
            let at = at.index(bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 if at < bytes.len() => { bytes.remove(at); }
                2 => bytes.insert(at, byte),
                _ => bytes.truncate(at),
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        let checked = KeyText::check(&text, &prefix).map(|key| key.environment());
        prop_assert_eq!(checked, plain_check(&text, &prefix), "{}", text);
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(input in "\\PC{0,80}") {
        let _ = ApiKey::parse(&input, &KeyPrefix::default());
    }

    #[test]
    fn applying_a_log_equals_its_meaning(log in change_log()) {
        let table = table_from(&log);
        prop_assert_eq!(table.applied_seq(), log.len() as u64);
        prop_assert_eq!(table.to_sorted_rows(), model(&log));
    }

    #[test]
    fn snapshot_plus_later_changes_equals_the_whole_log(log in change_log(), cut in any::<prop::sample::Index>()) {
        let cut = cut.index(log.len() + 1);
        let snapshot = encode_snapshot(&table_from(&log[..cut]));
        let mut rebuilt = decode_snapshot(&snapshot).expect("own snapshot decodes");
        rebuilt.apply_all(&log[cut..]).expect("continues the sequence");
        prop_assert_eq!(rebuilt, table_from(&log));
    }

    #[test]
    fn snapshots_round_trip(log in change_log()) {
        let table = table_from(&log);
        let bytes = encode_snapshot(&table);
        let decoded = decode_snapshot(&bytes).expect("own snapshot decodes");
        prop_assert_eq!(encode_snapshot(&decoded), bytes);
        prop_assert_eq!(decoded, table);
    }

    #[test]
    fn change_batches_round_trip(log in change_log()) {
        prop_assert_eq!(decode_changes(&encode_changes(&log)).expect("own batch decodes"), log);
    }

    #[test]
    fn duplicated_and_reordered_delivery_converges(
        log in change_log(),
        noise in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..40),
    ) {
        // Deliveries: the log with some changes repeated and some pairs swapped.
        let mut deliveries: Vec<Change> = log.clone();
        for (a, b) in &noise {
            if deliveries.is_empty() { break; }
            let (i, j) = (a.index(deliveries.len()), b.index(deliveries.len()));
            if i % 2 == 0 { deliveries.swap(i, j); } else { deliveries.insert(j, deliveries[i].clone()); }
        }
        // A replica applies what arrives; on a gap it fetches the missing range from the log.
        let mut replica = KeyTable::new();
        for change in &deliveries {
            if let Err(gap) = replica.apply(change) {
                let missing = &log[(gap.expected - 1) as usize..(gap.received - 1) as usize];
                replica.apply_all(missing).expect("the fetched range is contiguous");
                replica.apply(change).expect("now in sequence");
            }
        }
        prop_assert_eq!(replica, table_from(&log));
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        // Give random bodies a valid header and CRC too, so the structural checks are exercised.
        for input in [bytes.clone(), sealed(b"KPSN", &bytes), sealed(b"KPCB", &bytes)] {
            if let Ok(table) = decode_snapshot(&input) {
                prop_assert_eq!(encode_snapshot(&table), input.clone());
            }
            if let Ok(changes) = decode_changes(&input) {
                prop_assert_eq!(decode_changes(&encode_changes(&changes)), Ok(changes));
            }
        }
    }

    #[test]
    fn damaged_encodings_are_refused_or_canonical(
        log in change_log(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        // Start from valid encodings and change a few bytes behind a recomputed CRC, which
        // reaches far deeper into the structure than random bytes do.
        let snapshot = encode_snapshot(&table_from(&log));
        let changes = encode_changes(&log);
        for (valid, magic) in [(snapshot, b"KPSN"), (changes, b"KPCB")] {
            let mut body = valid[5..valid.len() - 4].to_vec();
            if body.is_empty() {
                continue;
            }
            for (at, value) in &edits {
                let at = at.index(body.len());
                body[at] = *value;
            }
            let input = sealed(magic, &body);
            if let Ok(table) = decode_snapshot(&input) {
                prop_assert_eq!(encode_snapshot(&table), input.clone());
            }
            if let Ok(changes) = decode_changes(&input) {
                prop_assert_eq!(encode_changes(&changes), input.clone());
            }
        }
    }

    #[test]
    fn scope_coverage_is_reflexive_and_transitive(a in scope_set(), b in scope_set(), c in scope_set()) {
        prop_assert!(a.is_covered_by(&a));
        if a.is_covered_by(&b) && b.is_covered_by(&c) {
            prop_assert!(a.is_covered_by(&c));
        }
        prop_assert!(ScopeSet::empty().is_covered_by(&a));
        let admin = ScopeSet::new([Scope::AdminFull]).expect("one scope");
        prop_assert!(a.is_covered_by(&admin));
    }

    #[test]
    fn a_set_is_covered_by_any_superset(a in scope_set(), b in scope_set()) {
        let union = ScopeSet::new(a.as_slice().iter().chain(b.as_slice()).cloned());
        prop_assume!(union.is_ok());
        let union = union.expect("checked");
        prop_assert!(a.is_covered_by(&union));
        prop_assert!(b.is_covered_by(&union));
        // Coverage of a set is coverage of each member.
        prop_assert_eq!(a.is_covered_by(&b), a.as_slice().iter().all(|s| b.covers(s)));
    }

    #[test]
    fn scopes_round_trip_through_text(s in scope()) {
        prop_assert_eq!(Scope::parse(&s.to_string()), Ok(s));
    }

    #[test]
    fn admissions_never_exceed_burst_plus_rate(
        rpm in 1u32..100_000,
        burst in 1u32..50,
        gaps in prop::collection::vec(0i64..2_000, 1..200),
    ) {
        let limit = RateLimit::new(rpm, burst).expect("in range");
        let mut state = GcraState::default();
        let start = Timestamp(1_700_000_000_000);
        let mut now = start;
        let mut admitted: u64 = 0;
        for gap in gaps {
            now = now.plus_millis(gap);
            if limit.check(&mut state, now).allowed {
                admitted += 1;
            }
        }
        // The limiter's interval is a whole number of nanoseconds (60 s / rpm, rounded down).
        let elapsed_ns = (now.as_millis() - start.as_millis()) as u64 * 1_000_000;
        let interval_ns = 60_000_000_000 / u64::from(rpm);
        let bound = u64::from(burst) + elapsed_ns / interval_ns;
        prop_assert!(admitted <= bound, "{} admitted, bound {}", admitted, bound);
    }
}

/// `magic`, its format's version, `body` and a valid checksum: what a damaged-but-resealed
/// encoding looks like.
/// The key check written as plainly as it reads: search for each separator, test each
/// character against the alphabet's ranges, decode the checksum in wide arithmetic. The edge's
/// check (`KeyText::check`) takes shortcuts; it must answer every input as this does.
fn plain_check(input: &str, prefix: &KeyPrefix) -> Result<Environment, KeyParseError> {
    const ALPHABET: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    if input.len() > MAX_KEY_LEN {
        return Err(KeyParseError::TooLong { found: input.len() });
    }
    let rest = input
        .strip_prefix(prefix.as_str())
        .and_then(|rest| rest.strip_prefix('_'))
        .ok_or(KeyParseError::WrongPrefix {
            expected: prefix.as_str().to_owned(),
        })?;
    let (label, body) = rest
        .split_once('_')
        .ok_or(KeyParseError::UnknownEnvironment)?;
    let env = Environment::from_label(label).ok_or(KeyParseError::UnknownEnvironment)?;
    if body.len() != BODY_LEN {
        return Err(KeyParseError::WrongLength { found: body.len() });
    }
    let digit = |c: u8| ALPHABET.bytes().position(|a| a == c).map(|d| d as u128);
    if let Some(position) = body.bytes().position(|c| digit(c).is_none()) {
        return Err(KeyParseError::InvalidCharacter { position });
    }
    let (signed, checksum) = input.as_bytes().split_at(input.len() - CHECKSUM_LEN);
    let decoded = checksum
        .iter()
        .try_fold(0u128, |acc, &c| Some(acc * 62 + digit(c)?));
    if decoded != Some(u128::from(crc32fast::hash(signed))) {
        return Err(KeyParseError::ChecksumMismatch);
    }
    Ok(env)
}

fn sealed(magic: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let version = if magic == b"KPSN" { 2 } else { 1 };
    let mut out = [magic.as_slice(), &[version], body].concat();
    seal(&mut out);
    out
}
