//! `TestApp` helpers of the usage tests: keys to attribute events to, signed usage batches,
//! and reading back what was stored.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use keyplane_control_plane::store::{AuditContext, NewKey};
use keyplane_shared::ids::{KeyId, OrgId, RequestId};
use keyplane_shared::sync::{self, SignedRequest, SyncSecret};
use keyplane_shared::usage::{USAGE_PATH, UsageBatch, UsageEvent};
use keyplane_shared::{ApiKey, Environment, ScopeSet, Timestamp};
use serde_json::{Value, json};

use super::{Reply, TestApp};

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// A key created through the API, with its organization.
#[derive(Clone, Copy)]
pub struct Key {
    /// The key.
    pub id: KeyId,
    /// Its organization.
    pub org: OrgId,
}

impl TestApp {
    /// Creates a key in Acme (the test's organization).
    pub async fn usage_key(&self, name: &str) -> Key {
        let (_, record) = self
            .create_key(json!({"name": name, "environment": "live"}))
            .await;
        let id: KeyId = record["id"].as_str().expect("id").parse().expect("key id");
        Key {
            id,
            org: self.org_of(id).await,
        }
    }

    /// A key of `org` written through the store, skipping the API's Argon2 hash of its secret
    /// (a second per key in a debug build): for tests that need hundreds of keys.
    pub async fn stored_key(&self, org: OrgId, name: &str) -> Key {
        let secret = ApiKey::generate(&self.state.prefix, Environment::Live).expect("CSPRNG");
        let pepper = self.state.peppers.current();
        let new = NewKey {
            id: KeyId::generate().expect("CSPRNG"),
            org_id: org,
            name: name.to_owned(),
            environment: Environment::Live,
            truncated: secret.truncated(),
            digest: pepper.digest(&secret),
            pepper_id: pepper.id(),
            secret_hash: "$argon2id$not-checked-by-this-test".to_owned(),
            scopes: ScopeSet::default(),
            rate_limit: None,
            metadata: serde_json::Map::new(),
            expires_at: None,
            created_by: None,
            created_by_user: None,
            owner_id: None,
        };
        let context = AuditContext {
            request_id: "req_test".to_owned(),
            ..AuditContext::default()
        };
        let record = self
            .state
            .store
            .create_key(new, &context, self.state.now())
            .await
            .expect("stored");
        Key { id: record.id, org }
    }

    pub async fn org_of(&self, key: KeyId) -> OrgId {
        use sqlx::Row as _;
        let row = sqlx::query("SELECT org_id FROM api_keys WHERE id = $1")
            .bind(key.to_bytes().to_vec())
            .fetch_one(self.pool())
            .await
            .expect("key row");
        OrgId::from_bytes(row.get::<Vec<u8>, _>(0).try_into().expect("16 bytes"))
    }

    pub async fn stored_events(&self) -> i64 {
        use sqlx::Row as _;
        sqlx::query("SELECT COUNT(*) FROM usage_events")
            .fetch_one(self.pool())
            .await
            .expect("count")
            .get::<i64, _>(0)
    }

    /// `POST /v1/edge/usage` with `body`, signed with `secret` over `signed_body` at `now`.
    pub async fn post_usage_with(
        &self,
        body: Vec<u8>,
        secret: &SyncSecret,
        signed_body: &[u8],
        now_secs: i64,
    ) -> Reply {
        let header = sync::sign_now(
            secret,
            now_secs,
            &SignedRequest {
                method: "POST",
                path_and_query: USAGE_PATH,
                body: signed_body,
            },
        )
        .expect("CSPRNG");
        let request = Request::builder()
            .method(Method::POST)
            .uri(USAGE_PATH)
            .header(sync::SIGNATURE_HEADER, header)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("request");
        self.send(request).await
    }

    /// A correctly signed `POST /v1/edge/usage` of raw bytes.
    pub async fn post_usage_bytes(&self, body: Vec<u8>) -> Reply {
        let now = self.state.now().as_millis() / 1000;
        let signed = body.clone();
        self.post_usage_with(body, &self.state.edge_secret, &signed, now)
            .await
    }

    /// A correctly signed batch from edge `fra`; asserts a 200 and returns the receipt.
    pub async fn ingest(&self, events: &[UsageEvent]) -> Value {
        let batch = UsageBatch {
            edge: "fra".into(),
            events: events.to_vec(),
        };
        let reply = self
            .post_usage_bytes(serde_json::to_vec(&batch).expect("json"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.body
    }

    pub async fn usage(&self, key: Key, query: &str) -> Reply {
        self.get(&format!("/v1/keys/{}/usage{query}", key.id)).await
    }

    /// The request ids of a usage page, in order.
    pub async fn usage_ids(&self, key: Key, query: &str) -> Vec<String> {
        let reply = self.usage(key, query).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {:?}", reply.body);
        ids(&reply.body["data"], "request_id")
    }

    pub async fn metric(&self, line_start: &str) -> Option<f64> {
        let text = self.call(Method::GET, "/metrics", None, None).await.body;
        let text = text.as_str().expect("text").to_owned();
        text.lines()
            .find_map(|line| line.strip_prefix(line_start))
            .map(|value| value.trim().parse().expect("a number"))
    }
}

/// The `field` of every item of a JSON array.
pub fn ids(items: &Value, field: &str) -> Vec<String> {
    items
        .as_array()
        .expect("array")
        .iter()
        .map(|item| item[field].as_str().expect("id").to_owned())
        .collect()
}

/// Request id number `n`.
pub fn request_id(n: u32) -> RequestId {
    let mut bytes = [0u8; 16];
    bytes[12..].copy_from_slice(&n.to_be_bytes());
    RequestId::from_bytes(bytes)
}

/// A use of `key` at `at`, with request id `n`.
pub fn event(n: u32, key: Key, at: i64, status: u16, ip: Option<&str>) -> UsageEvent {
    UsageEvent::new(
        request_id(n),
        Some((key.id, key.org)),
        Timestamp(at),
        "GET",
        &format!("/v1/contacts/{n}"),
        status,
        ip,
    )
}
