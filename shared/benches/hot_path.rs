//! The edge's hot path against a 1M-entry key table, next to its floor: one bare HMAC-SHA256.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p keyplane-shared --bench hot_path`). Every
//! figure is reported as a ratio to `floor/hmac_sha256` measured in the same run.

// The property tests' synthetic tables; the bench takes only their digests.
#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::alloc::System;
use std::hint::black_box;

use cap::Cap;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use keyplane_shared::decision::look_up;
use keyplane_shared::path::CanonicalTarget;
use keyplane_shared::table::codec::{decode_snapshot, encode_snapshot};
use keyplane_shared::{
    AcceptedEnvironments, ApiKey, Change, ChangeOp, EdgeConfig, Environment, KeyId, KeyPrefix,
    KeyStatus, KeyTable, KeyText, LookupDigest, OrgId, Pepper, PepperId, PepperSet, PolicySpec,
    RateLimit, RateLimiter, RequestFacts, RoutePolicy, ScopeSet, TableEntry, Timestamp, decide,
};
use sha2::Sha256;

/// Counts heap bytes, so the table's memory per key is measured, not estimated.
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const TABLE_KEYS: u32 = 1_000_000;
/// Keys with a known secret, spread through the table (the benchmarks that parse or digest a
/// key's text use these; the lookups alone go through all [`TABLE_KEYS`]).
const REAL_KEYS: usize = 65_536;
const PEPPER: [u8; 32] = [0x5a; 32];

/// A buffer of `lines` cache lines whose first words form one random cycle through them all
/// (Sattolo's shuffle): following it from any line visits every line once, in an order no
/// prefetcher can guess.
fn pointer_chase(lines: usize) -> Vec<u64> {
    let mut order: Vec<u64> = (0..lines as u64).collect();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..lines).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % i as u64) as usize);
    }
    let mut buffer = vec![0u64; lines * 8];
    for (i, &next) in order.iter().enumerate() {
        buffer[i * 8] = next;
    }
    buffer
}

struct Fixture {
    pepper: Pepper,
    keys: Vec<ApiKey>,
    /// Every entry's digest, in the order they were added: the keys' first, then the others'.
    digests: Vec<LookupDigest>,
    table: KeyTable,
    /// Heap bytes the allocator saw the table keep.
    table_bytes: usize,
}

fn fixture() -> Fixture {
    let pepper = Pepper::new(PepperId(1), &PEPPER).expect("32 bytes");
    let keys: Vec<ApiKey> = (0..REAL_KEYS)
        .map(|_| ApiKey::generate(&KeyPrefix::default(), Environment::Live).expect("CSPRNG"))
        .collect();
    let scopes = ScopeSet::parse(["contacts:read", "triggers:*"]).expect("valid");
    let digests: Vec<LookupDigest> = keys
        .iter()
        .map(|k| pepper.digest(k))
        .chain((REAL_KEYS as u32..TABLE_KEYS).map(support::pseudo_random_digest))
        .collect();
    let before = ALLOCATOR.allocated();
    let mut table = KeyTable::with_capacity(TABLE_KEYS as usize);
    for (n, &digest) in (0u32..).zip(&digests) {
        let entry = TableEntry {
            digest,
            key_id: KeyId::from_bytes((u128::from(n) + 1).to_be_bytes()),
            org_id: OrgId::from_bytes([(n % 997) as u8; 16]),
            env: Environment::Live,
            status: KeyStatus::Active,
            expires_at: None,
            scopes: scopes.clone(),
            rate_limit: None,
        };
        table
            .apply(&Change {
                seq: u64::from(n) + 1,
                op: ChangeOp::Upsert(entry),
            })
            .expect("in order");
    }
    let table_bytes = ALLOCATOR.allocated() - before;
    assert!(table_bytes > 0, "the counting allocator saw the table");
    Fixture {
        pepper,
        keys,
        digests,
        table,
        table_bytes,
    }
}

/// A realistic policy: the request matches the fourth rule.
fn policy() -> RoutePolicy {
    let spec: PolicySpec = serde_json::from_str(
        r#"{"rules": [
            {"path": "/health", "public": true},
            {"method": "POST", "path": "/v1/contacts", "scopes": ["contacts:write"]},
            {"method": "DELETE", "path": "/v1/contacts/{id}", "scopes": ["contacts:write"]},
            {"method": "GET", "path": "/v1/contacts/**", "scopes": ["contacts:read"]},
            {"path": "/v1/triggers/**", "scopes": ["triggers:read"]}
        ]}"#,
    )
    .expect("valid JSON");
    RoutePolicy::from_spec(&spec).expect("valid policy")
}

fn hot_path(c: &mut Criterion) {
    let f = fixture();
    let prefix = KeyPrefix::default();
    let texts: Vec<String> = f
        .keys
        .iter()
        .map(|k| k.expose_secret().to_owned())
        .collect();
    eprintln!(
        "table: {} keys, {} heap bytes measured ({:.1} per key), heap_bytes() says {}",
        f.table.len(),
        f.table_bytes,
        f.table_bytes as f64 / f.table.len() as f64,
        f.table.heap_bytes(),
    );

    let mut group = c.benchmark_group("hot_path");
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % REAL_KEYS;
        i
    };
    group.bench_function("floor_hmac_sha256", |b| {
        b.iter(|| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&PEPPER).expect("any key length");
            mac.update(texts[next()].as_bytes());
            black_box(mac.finalize().into_bytes())
        })
    });
    // The canonical form of the request's path and query, read once per request: borrowed
    // when the path is already canonical (the common case), rebuilt when it is not.
    group.bench_function("canonical_path", |b| {
        b.iter(|| {
            let target = CanonicalTarget::parse(black_box("/v1/contacts/42?page=2"));
            black_box((target.is_borrowed(), target.ambiguity().is_none()))
        })
    });
    group.bench_function("canonical_path_rewritten", |b| {
        b.iter(|| {
            let target = CanonicalTarget::parse(black_box("/v1//%2e%2e/contacts/42?q=a'b"));
            black_box((target.path().len(), target.ambiguity().is_some()))
        })
    });
    // The key's text checked where it lies (as the edge does: nothing copied).
    group.bench_function("parse_and_checksum", |b| {
        b.iter(|| black_box(KeyText::check(&texts[next()], &prefix).is_ok()))
    });
    group.bench_function("digest", |b| {
        b.iter(|| black_box(f.pepper.digest(&f.keys[next()])))
    });
    // Every entry's digest, in the order they were added (random places in the table): the
    // lookups range over the whole table, as a busy edge's do.
    let digests = &f.digests;
    let mut n = 0usize;
    let mut next_entry = |span: usize| {
        n = (n + 1) % span;
        n
    };
    group.bench_function("lookup_1m", |b| {
        b.iter(|| black_box(f.table.get(&digests[next_entry(digests.len())]).is_some()))
    });
    // The same lookups over 1,024 keys whose slots stay in cache: the gap to `lookup_1m` is
    // memory latency, not hashing.
    group.bench_function("lookup_1m_cache_resident", |b| {
        b.iter(|| black_box(f.table.get(&digests[next_entry(1_024)]).is_some()))
    });
    // The same two, each lookup waiting for the one before: the next digest's index takes a
    // byte of the key id found (masked to nothing by a mask the compiler cannot see), so the
    // processor cannot start a lookup before the previous one has read its entry. On a
    // request path a lookup has no neighbour to overlap with, so this is its latency as a
    // request sees it, which the independent lookups above hide on processors that keep
    // several misses in flight; it is the figure to hold against `memory_miss`.
    let mask = black_box(0usize);
    let mut chained = 0usize;
    let mut chain = |span: usize| {
        let found = f.table.get(&digests[chained % span]);
        let dependence = found.map_or(0, |entry| usize::from(entry.key_id().to_bytes()[15]));
        chained = (chained + 1 + (dependence & mask)) % digests.len();
        found.is_some()
    };
    group.bench_function("lookup_1m_chained", |b| {
        b.iter(|| black_box(chain(digests.len())))
    });
    group.bench_function("lookup_1m_cache_resident_chained", |b| {
        b.iter(|| black_box(chain(1_024)))
    });
    // One memory latency, measured rather than assumed: a chase through a buffer as large as
    // the table, each load at a random cache line named by the one before (so loads cannot
    // overlap: each iteration is one whole miss, TLB miss included). The layout's target:
    // `lookup_1m` ≤ 1.3 × (`lookup_1m_cache_resident` + `memory_miss`).
    let chase = pointer_chase(f.table_bytes / 64);
    let mut at = 0usize;
    group.bench_function("memory_miss", |b| {
        b.iter(|| {
            at = chase[at * 8] as usize;
            black_box(at)
        })
    });
    // The parts of `parse_digest_lookup_1m` two at a time, to show where its time goes.
    group.bench_function("parse_digest", |b| {
        b.iter(|| {
            let key = KeyText::check(&texts[next()], &prefix).expect("valid key");
            black_box(f.pepper.digest_text(&key))
        })
    });
    // Checked beforehand, from the same texts the request path reads.
    let checked: Vec<KeyText<'_>> = texts
        .iter()
        .map(|text| KeyText::check(text, &prefix).expect("valid key"))
        .collect();
    group.bench_function("digest_lookup_1m", |b| {
        b.iter(|| {
            let key = &checked[next()];
            black_box(f.table.get(&f.pepper.digest_text(key)).map(|e| e.key_id()))
        })
    });
    // What the decision does with a presented key (`decision::look_up`): check it where it
    // lies, digest it, look it up.
    let peppers = PepperSet::single(f.pepper.clone());
    group.bench_function("parse_digest_lookup_1m", |b| {
        b.iter(|| {
            let found = look_up(&texts[next()], &prefix, &peppers, &f.table);
            black_box(found.map(|(entry, _)| entry.key_id()))
        })
    });
    let config = EdgeConfig {
        prefix: prefix.clone(),
        peppers,
        environments: AcceptedEnvironments::LiveOnly,
        policy: policy(),
        default_rate_limit: RateLimit::new(6_000_000, 65_535).expect("valid"),
    };
    let mut limiter = RateLimiter::new();
    let now = Timestamp(1_800_000_000_000);
    group.bench_function("decide_1m", |b| {
        b.iter(|| {
            let facts = RequestFacts {
                x_api_key: Some(&texts[next()]),
                authorization: None,
                method: "GET",
                path: "/v1/contacts/42",
            };
            black_box(matches!(
                decide(&facts, now, &config, &f.table, &mut limiter),
                keyplane_shared::Decision::Allow(_)
            ))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    let snapshot = encode_snapshot(&f.table);
    eprintln!(
        "snapshot: {} bytes, {:.1} bytes per key",
        snapshot.len(),
        snapshot.len() as f64 / f64::from(TABLE_KEYS)
    );
    group.bench_function("decode_1m", |b| {
        b.iter_batched(
            || (),
            |()| black_box(decode_snapshot(&snapshot).map(|t| t.len())),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
