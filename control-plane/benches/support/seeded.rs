//! What the latency benchmarks share: their options (`--keys N --samples N --backend
//! sqlite|postgres|both`), keys seeded straight into the database (seeding through the API would
//! spend an hour in Argon2id) and the median / p99 of a set of samples.

use std::time::Duration;

use anyhow::Context as _;
use keyplane_control_plane::store::sql::Backend;

use keyplane_control_plane::hashing;
use keyplane_shared::ids::KeyId;
use keyplane_shared::{ApiKey, Environment, KeyPrefix};

const SEED_BATCH: usize = 500;

/// A latency benchmark's options.
pub struct Options {
    /// Keys seeded.
    pub keys: usize,
    /// Samples per operation.
    pub samples: usize,
    /// The databases to run on.
    pub backends: Vec<Backend>,
}

impl Options {
    /// From the command line, with these defaults (both backends unless `--backend` says).
    pub fn from_args(keys: usize, samples: usize) -> anyhow::Result<Self> {
        let mut options = Options {
            keys,
            samples,
            backends: vec![Backend::Sqlite, Backend::Postgres],
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--keys" => options.keys = value()?.parse()?,
                "--samples" => options.samples = value()?.parse()?,
                "--backend" => options.backends = crate::support::backends(&value()?)?,
                // cargo bench passes --bench; ignore it and anything else cargo adds.
                _ => {}
            }
        }
        Ok(options)
    }
}

/// Median and 99th percentile of a set of durations, in milliseconds.
pub fn summary(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.99))
}

/// Inserts `count` keys of the first organization straight into the database (random lookup
/// digests: no key text leads to them).
pub async fn seed(pool: &sqlx::AnyPool, count: usize) -> anyhow::Result<Vec<KeyId>> {
    let mut digests = Vec::with_capacity(count);
    for _ in 0..count {
        let mut digest = [0u8; 32];
        getrandom::fill(&mut digest)?;
        digests.push(digest);
    }
    seed_digests(pool, &digests).await
}

/// Inserts a key of the first organization for each lookup digest, straight into the database.
pub async fn seed_digests(
    pool: &sqlx::AnyPool,
    digests: &[[u8; 32]],
) -> anyhow::Result<Vec<KeyId>> {
    let count = digests.len();
    let org: Vec<u8> = sqlx::query_scalar("SELECT id FROM orgs")
        .fetch_one(pool)
        .await?;
    let prefix = KeyPrefix::default();
    // One real hash shared by all seeded keys: they are looked up and revoked, never verified.
    let sample = ApiKey::generate(&prefix, Environment::Live)?;
    let hash = hashing::hash_key(&sample).await?;
    let mut ids = Vec::with_capacity(count);
    let base_time = 1_700_000_000_000_i64;
    for batch_start in (0..count).step_by(SEED_BATCH) {
        let batch = SEED_BATCH.min(count - batch_start);
        let mut sql = String::from(
            "INSERT INTO api_keys (id, org_id, name, environment, truncated, digest, pepper_id, \
             secret_hash, scopes, metadata, created_at, updated_at) VALUES ",
        );
        for row in 0..batch {
            let n = row * 8;
            if row > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, 'live', ${}, ${}, 1, ${}, 'contacts:read', '{{}}', ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7,
                n + 8
            ));
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in 0..batch {
            let i = batch_start + row;
            let id = KeyId::generate()?;
            let digest = digests[i];
            let at = base_time + i as i64;
            query = query
                .bind(id.to_bytes().to_vec())
                .bind(org.clone())
                .bind(format!("seeded key {i}"))
                .bind(format!("sk_live_seed{i:02}...abcd"))
                .bind(digest.to_vec())
                .bind(hash.clone())
                .bind(at)
                .bind(at);
            ids.push(id);
        }
        query.execute(pool).await?;
    }
    // Fresh statistics, as autovacuum (PostgreSQL) would have them on a live table.
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(ids)
}
