//! Test support: synthetic key tables of any size, shaped like real ones (pseudo-random
//! digests, a thousand organizations, three scope sets).

use keyplane_shared::{
    Change, ChangeOp, Environment, KeyId, KeyStatus, KeyTable, LookupDigest, OrgId, ScopeSet,
    TableEntry,
};

/// A digest spread over all bytes, like an HMAC.
pub fn pseudo_random_digest(n: u32) -> LookupDigest {
    // SplitMix64 spreads the index over all bytes, like an HMAC would.
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut z = u64::from(n)
            .wrapping_mul(4)
            .wrapping_add(i as u64)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    LookupDigest::from_bytes(bytes)
}

/// A table of `keys` active live keys, applied as changes 1..=keys.
pub fn build(keys: u32) -> KeyTable {
    let scope_sets: Vec<ScopeSet> = [
        &["contacts:read"][..],
        &["contacts:*", "triggers:read"],
        &["admin:full"],
    ]
    .iter()
    .map(|s| ScopeSet::parse(s.iter()).expect("valid"))
    .collect();
    let mut table = KeyTable::with_capacity(keys as usize);
    for n in 0..keys {
        let entry = TableEntry {
            digest: pseudo_random_digest(n),
            key_id: KeyId::from_bytes((u128::from(n) << 64).to_be_bytes()),
            org_id: OrgId::from_bytes([(n % 1_000) as u8; 16]),
            env: Environment::Live,
            status: KeyStatus::Active,
            expires_at: None,
            scopes: scope_sets[(n % 3) as usize].clone(),
            rate_limit: None,
        };
        table
            .apply(&Change {
                seq: u64::from(n) + 1,
                op: ChangeOp::Upsert(entry),
            })
            .expect("in order");
    }
    table
}
