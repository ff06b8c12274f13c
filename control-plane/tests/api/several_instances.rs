//! Several instances on one PostgreSQL database.
//!
//! - Starting at once on an empty database (as a new user tries it: two `keyplane serve`
//!   started together): the migrations run once and exactly one of them creates the first
//!   organization and prints its admin key; the others find it. The first-start lock is
//!   released when dropped, whatever became of the start.
//! - A change committed through one instance is announced in every other instance's feed
//!   heads at once (`LISTEN`/`NOTIFY`), so their pushers and delivery workers wake without
//!   waiting for a tick.
//! - A management key revoked through one instance is refused by the other at once (its state
//!   is read on every call; only the Argon2id verification is remembered).
//! - Twenty creates at once, spread over both, leave the feed gap-free and strictly ordered.
//! - Usage ingestion and the retention sweep run on every instance: the same batches ingested
//!   through both at once are stored once, and both sweeping at once delete each old event
//!   once, without an error on either.
//! - Refused calls are counted by the instance that refused them: the counts of both add up
//!   to every refusal, in one audit chain that verifies.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use keyplane_control_plane::audit::refusals::flush_all;
use keyplane_control_plane::state::SystemClock;
use keyplane_control_plane::{Application, Config};
use keyplane_shared::ids::{KeyId, RequestId};
use keyplane_shared::usage::{UsageBatch, UsageEvent};

use crate::fixed_secrets::secrets_env;
use crate::helpers::{
    drop_test_database, fresh_postgres_database, postgres_available, test_config,
};

const DAY_MS: i64 = 86_400_000;

fn config(dir: &std::path::Path, database_url: &str) -> Config {
    test_config(dir, database_url, "Default organization")
}

#[tokio::test]
async fn instances_starting_together_on_an_empty_database_create_one_organization() {
    if !postgres_available().await {
        return;
    }
    let url = fresh_postgres_database().await;
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let configs: Vec<Config> = dirs.iter().map(|dir| config(dir.path(), &url)).collect();
    // Each on its own task, as separate processes would be.
    let starts: Vec<_> = configs
        .into_iter()
        .map(|config| {
            tokio::spawn(async move {
                Application::build_with(&config, Arc::new(SystemClock), secrets_env)
                    .await
                    .map(|(application, bootstrapped)| (application, bootstrapped.is_some()))
            })
        })
        .collect();
    let mut first_starts = 0;
    let mut applications = Vec::new();
    for start in starts {
        let (application, bootstrapped) = start.await.expect("joined").expect("starts");
        first_starts += usize::from(bootstrapped);
        applications.push(application);
    }
    assert_eq!(
        first_starts, 1,
        "instances that created the first organization"
    );
    let organizations = applications[0]
        .state()
        .store
        .org_count()
        .await
        .expect("count");
    assert_eq!(organizations, 1);

    // The lock is one: while one instance holds it another waits; dropped, it is free at once
    // (its connection is closed, not returned to the pool still holding it).
    let (one, two) = (
        &applications[0].state().store,
        &applications[1].state().store,
    );
    let held = one.first_start_lock().await.expect("lock");
    let waited = tokio::time::timeout(Duration::from_millis(300), two.first_start_lock()).await;
    assert!(
        waited.is_err(),
        "a second instance took the lock while it was held"
    );
    drop(held);
    let again = tokio::time::timeout(Duration::from_secs(5), two.first_start_lock())
        .await
        .expect("the lock is free once dropped")
        .expect("lock");
    drop(again);
    // The same instance can take it again too: its pool kept no connection holding it.
    for _ in 0..20 {
        let lock = tokio::time::timeout(Duration::from_secs(5), one.first_start_lock())
            .await
            .expect("free")
            .expect("lock");
        drop(lock);
        tokio::time::timeout(Duration::from_secs(5), two.first_start_lock())
            .await
            .expect("free for the other instance")
            .expect("lock");
    }
    drop(applications);
    drop_test_database(&url).await;
}

/// Two instances, A (which made the first organization) and B, on one fresh database.
struct Pair {
    a: Application,
    b: Application,
    admin: String,
    url: String,
    _dirs: [tempfile::TempDir; 2],
}

impl Pair {
    async fn start() -> Option<Pair> {
        if !postgres_available().await {
            return None;
        }
        let url = fresh_postgres_database().await;
        let dirs = [
            tempfile::tempdir().expect("temp dir"),
            tempfile::tempdir().expect("temp dir"),
        ];
        let start = async |dir: &tempfile::TempDir| {
            Application::build_with(
                &config(dir.path(), &url),
                Arc::new(SystemClock),
                secrets_env,
            )
            .await
            .expect("starts")
        };
        let (a, first) = start(&dirs[0]).await;
        let (b, _) = start(&dirs[1]).await;
        let admin = first
            .expect("A made the first organization")
            .admin_key
            .expose_secret()
            .to_owned();
        Some(Pair {
            a,
            b,
            admin,
            url,
            _dirs: dirs,
        })
    }

    async fn finish(self) {
        let url = self.url.clone();
        drop(self);
        drop_test_database(&url).await;
    }
}

/// One call through `instance`'s router with `key`: the status and the JSON answer.
async fn call(
    instance: &Application,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(body.map_or(Body::empty(), |body| Body::from(body.to_string())))
        .expect("request");
    let answer = keyplane_control_plane::app(instance.state().clone())
        .oneshot(request)
        .await
        .expect("infallible");
    let status = answer.status();
    let bytes = answer.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_change_committed_through_one_instance_wakes_the_other_at_once() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let listener = pair
        .b
        .state()
        .store
        .spawn_commit_listener(stopped)
        .expect("PostgreSQL has a commit listener");
    let mut heads = pair.b.state().store.feed_heads();
    let before = *heads.borrow_and_update();
    // B's listener is connected once a first announcement gets through: keep committing
    // through A until B hears one (each create is a change; the first may beat the LISTEN).
    // B's own store commits nothing and polls nothing: only the listener can move its head, so
    // hearing at all is the proof; each wait is long enough for a loaded machine.
    let mut heard = None;
    for n in 0..20 {
        let body = json!({"name": format!("through A {n}"), "environment": "live"});
        let (status, _) = call(&pair.a, Method::POST, "/v1/keys", &pair.admin, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED);
        let committed = pair.a.state().store.feed_head().await.expect("head");
        let started = std::time::Instant::now();
        let waited = heads.wait_for(|head| *head >= committed);
        if tokio::time::timeout(Duration::from_secs(5), waited)
            .await
            .is_ok()
        {
            heard = Some((committed, started.elapsed()));
            break;
        }
    }
    let (committed, after) = heard.expect("B never heard a commit made through A");
    assert!(committed > before);
    eprintln!("B heard a commit made through A after {after:?}");
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), listener)
        .await
        .expect("the listener stops on shutdown")
        .expect("joined");
    pair.finish().await;
}

#[tokio::test]
async fn a_management_key_revoked_through_one_instance_is_refused_by_the_other_at_once() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let body = json!({"name": "ops", "environment": "live", "scopes": ["api-keys:manage"]});
    let (status, made) = call(&pair.a, Method::POST, "/v1/keys", &pair.admin, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (ops, id) = (
        made["key"].as_str().expect("key").to_owned(),
        made["record"]["id"].as_str().expect("id").to_owned(),
    );
    // B verifies it (and keeps its Argon2id verification in memory).
    for _ in 0..2 {
        let (status, _) = call(&pair.b, Method::GET, "/v1/keys", &ops, None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = call(
        &pair.a,
        Method::POST,
        &format!("/v1/keys/{id}/revoke"),
        &pair.admin,
        Some(json!({"reason": "compromised"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = call(&pair.b, Method::GET, "/v1/keys", &ops, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "revoked_api_key");
    pair.finish().await;
}

#[tokio::test]
async fn concurrent_creates_through_two_instances_leave_the_feed_without_gaps() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let head_before = pair.a.state().store.feed_head().await.expect("head");
    let creates = (0..20).map(|n| {
        let instance = if n % 2 == 0 { &pair.a } else { &pair.b };
        let body = json!({"name": format!("concurrent {n}"), "environment": "live"});
        let admin = pair.admin.clone();
        async move { call(instance, Method::POST, "/v1/keys", &admin, Some(body)).await }
    });
    for (status, answer) in futures_util::future::join_all(creates).await {
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let changes = pair
        .b
        .state()
        .store
        .changes_after(0, 1000)
        .await
        .expect("the feed");
    let seqs: Vec<u64> = changes.iter().map(|change| change.seq).collect();
    let expected: Vec<u64> = (1..=head_before + 20).collect();
    assert_eq!(seqs, expected, "the feed has gaps or repeats");
    assert_eq!(
        pair.a.state().store.feed_head().await.expect("head"),
        pair.b.state().store.feed_head().await.expect("head")
    );
    pair.finish().await;
}

#[tokio::test]
async fn both_instances_ingesting_and_sweeping_usage_at_once_keep_each_event_once() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    let body = json!({"name": "reported", "environment": "live"});
    let (status, made) = call(&pair.a, Method::POST, "/v1/keys", &pair.admin, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let key: KeyId = made["record"]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("a key id");
    let org = pair
        .a
        .state()
        .operator_org()
        .await
        .expect("read")
        .expect("the first organization");
    let now = pair.a.state().now();
    let cutoff = now.plus_millis(-30 * DAY_MS);
    // 400 events in 4 batches, half of them older than the cutoff; every batch is sent
    // through both instances at once, as an edge retrying against a second instance would.
    let batches: Vec<UsageBatch> = (0..4u32)
        .map(|batch| UsageBatch {
            edge: "fra".into(),
            events: (0..100u32)
                .map(|n| {
                    let number = batch * 100 + n;
                    let at = if number % 2 == 0 {
                        cutoff.plus_millis(-DAY_MS)
                    } else {
                        now.plus_millis(-DAY_MS)
                    };
                    let mut id = [0u8; 16];
                    id[12..].copy_from_slice(&number.to_be_bytes());
                    UsageEvent::new(
                        RequestId::from_bytes(id),
                        Some((key, org)),
                        at,
                        "GET",
                        "/v1/contacts",
                        200,
                        None,
                    )
                })
                .collect(),
        })
        .collect();
    let ingests = batches.iter().flat_map(|batch| {
        [&pair.a, &pair.b]
            .map(|instance| async move { instance.state().store.ingest_usage(batch, now).await })
    });
    for report in futures_util::future::join_all(ingests).await {
        report.expect("each instance ingests without an error");
    }
    let pool = sqlx::PgPool::connect(&pair.url).await.expect("connect");
    let stored = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM usage_events")
            .fetch_one(&pool)
            .await
            .expect("count")
    };
    assert_eq!(stored().await, 400, "each event stored once");
    let (a, b) = tokio::join!(
        pair.a.state().store.delete_usage_before(cutoff),
        pair.b.state().store.delete_usage_before(cutoff)
    );
    let (a, b) = (a.expect("A sweeps"), b.expect("B sweeps"));
    assert_eq!(a + b, 200, "each old event deleted once (A {a}, B {b})");
    assert_eq!(stored().await, 200);
    pool.close().await;
    pair.finish().await;
}

#[tokio::test]
async fn refusals_counted_by_both_instances_add_up_in_one_verified_chain() {
    let Some(pair) = Pair::start().await else {
        return;
    };
    // A key without the management scope: every management call with it is refused (403),
    // and each refusal is noted by the instance that refused it.
    let body = json!({"name": "reader", "environment": "live", "scopes": ["contacts:read"]});
    let (status, made) = call(&pair.a, Method::POST, "/v1/keys", &pair.admin, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let reader = made["key"].as_str().expect("key").to_owned();
    let refused = (0..30).map(|n| {
        let instance = if n % 2 == 0 { &pair.a } else { &pair.b };
        let reader = reader.clone();
        async move { call(instance, Method::GET, "/v1/keys", &reader, None).await }
    });
    for (status, answer) in futures_util::future::join_all(refused).await {
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    }
    // Each instance writes the windows it holds, as it does on shutdown.
    flush_all(pair.a.state()).await;
    flush_all(pair.b.state()).await;
    let (status, audit) = call(
        &pair.a,
        Method::GET,
        "/v1/audit?action=auth_failed&limit=200",
        &pair.admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let records = audit["data"].as_array().expect("records");
    let counted: u64 = records
        .iter()
        .filter_map(|record| record["details"]["count"].as_u64())
        .sum();
    assert_eq!(
        counted, 30,
        "the counts add up to the refusals: {records:?}"
    );
    // Each instance opened its own window, at most two records each.
    assert!((2..=4).contains(&records.len()), "{records:?}");
    let (status, verified) =
        call(&pair.b, Method::GET, "/v1/audit/verify", &pair.admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verified["valid"], true, "{verified}");
    pair.finish().await;
}
