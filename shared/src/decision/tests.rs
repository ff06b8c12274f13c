//! Unit tests of the edge decision.

use super::*;
use crate::digest::{Pepper, PepperId};
use crate::key::{ApiKey, KeyParseError};
use crate::policy::PolicySpec;
use crate::scope::ScopeSet;
use crate::table::{Change, ChangeOp, TableEntry};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod credentials;

const NOW: Timestamp = Timestamp(1_800_000_000_000);

struct World {
    config: EdgeConfig,
    table: KeyTable,
    limiter: RateLimiter,
    next_seq: u64,
}

impl World {
    fn new() -> Self {
        let spec: PolicySpec = serde_json::from_str(
            r#"{"rules": [
                {"path": "/public/**", "public": true},
                {"method": "GET", "path": "/contacts/**", "scopes": ["contacts:read"]},
                {"method": "POST", "path": "/contacts", "scopes": ["contacts:write"]}
            ]}"#,
        )
        .expect("valid JSON");
        let config = EdgeConfig {
            prefix: KeyPrefix::default(),
            peppers: PepperSet::single(pepper(2)),
            environments: AcceptedEnvironments::Both,
            policy: RoutePolicy::from_spec(&spec).expect("valid"),
            default_rate_limit: RateLimit::default(),
        };
        World {
            config,
            table: KeyTable::new(),
            limiter: RateLimiter::new(),
            next_seq: 1,
        }
    }

    /// Issues a key with the current pepper and puts it in the table.
    fn issue(
        &mut self,
        env: Environment,
        scopes: &[&str],
        edit: impl FnOnce(&mut TableEntry),
    ) -> (ApiKey, TableEntry) {
        let key = ApiKey::generate(&self.config.prefix, env).expect("CSPRNG");
        let entry = self.add(&key, &self.config.peppers.current().clone(), scopes, edit);
        (key, entry)
    }

    fn add(
        &mut self,
        key: &ApiKey,
        pepper: &Pepper,
        scopes: &[&str],
        edit: impl FnOnce(&mut TableEntry),
    ) -> TableEntry {
        let mut entry = TableEntry {
            digest: pepper.digest(key),
            key_id: KeyId::generate().expect("CSPRNG"),
            org_id: OrgId::from_bytes([7; 16]),
            env: key.environment(),
            status: KeyStatus::Active,
            expires_at: None,
            scopes: ScopeSet::parse(scopes).expect("valid"),
            rate_limit: None,
        };
        edit(&mut entry);
        self.upsert(entry.clone());
        entry
    }

    fn upsert(&mut self, entry: TableEntry) {
        let change = Change {
            seq: self.next_seq,
            op: ChangeOp::Upsert(entry),
        };
        self.table.apply(&change).expect("in order");
        self.next_seq += 1;
    }

    fn decide(
        &mut self,
        method: &str,
        path: &str,
        x_api_key: Option<&str>,
        authorization: Option<&str>,
    ) -> Decision {
        let facts = RequestFacts {
            x_api_key,
            authorization,
            method,
            path,
        };
        decide(&facts, NOW, &self.config, &self.table, &mut self.limiter)
    }

    fn with_key(&mut self, method: &str, path: &str, key: &ApiKey) -> Decision {
        self.decide(method, path, Some(key.expose_secret()), None)
    }
}

fn pepper(id: u8) -> Pepper {
    Pepper::new(PepperId(id), &[id; 32]).expect("long enough")
}

fn denial(decision: Decision) -> Denial {
    match decision {
        Decision::Deny { denial, .. } => denial,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn a_valid_key_is_allowed_with_its_identity() {
    let mut world = World::new();
    let (key, entry) = world.issue(Environment::Live, &["contacts:read"], |_| {});
    match world.with_key("GET", "/contacts/1", &key) {
        Decision::Allow(identity) => {
            assert_eq!(identity.key_id, entry.key_id);
            assert_eq!(identity.org_id, entry.org_id);
            assert_eq!(identity.env, Environment::Live);
            assert_eq!(identity.scopes, entry.scopes.to_string());
            assert_eq!(identity.rate_limit.remaining, 9);
        }
        other => panic!("expected allow, got {other:?}"),
    }
}

#[test]
fn unknown_malformed_and_wrong_secret_keys_are_indistinguishable() {
    let mut world = World::new();
    let (key, _) = world.issue(Environment::Live, &[], |_| {});
    let unknown = ApiKey::generate(&KeyPrefix::default(), Environment::Live).expect("CSPRNG");
    let text = key.expose_secret();
    let typo = format!(
        "{}{}",
        &text[..text.len() - 1],
        if text.ends_with('A') { 'B' } else { 'A' }
    );
    let inputs = [
        unknown.expose_secret().to_string(),
        typo,
        "sk_live_short".into(),
        "x".repeat(5_000),
        "пароль".into(),
    ];
    let denials: Vec<Denial> = inputs
        .iter()
        .map(|i| denial(world.decide("GET", "/x", Some(i), None)))
        .collect();
    for d in &denials {
        assert_eq!(d, &Denial::InvalidKey);
        assert_eq!(
            (d.status(), d.code(), d.message()),
            (401, "invalid_api_key", denials[0].message())
        );
        assert_eq!(d.www_authenticate("r"), denials[0].www_authenticate("r"));
    }
}

#[test]
fn revoked_and_expired_keys_are_refused() {
    let mut world = World::new();
    let (revoked, _) = world.issue(Environment::Live, &[], |e| e.status = KeyStatus::Revoked);
    let (expired, _) = world.issue(Environment::Live, &[], |e| e.expires_at = Some(NOW));
    let (valid, _) = world.issue(Environment::Live, &[], |e| {
        e.expires_at = Some(NOW.plus_millis(1))
    });
    assert_eq!(
        denial(world.with_key("GET", "/x", &revoked)),
        Denial::RevokedKey
    );
    assert_eq!(
        denial(world.with_key("GET", "/x", &expired)),
        Denial::ExpiredKey
    );
    assert!(matches!(
        world.with_key("GET", "/x", &valid),
        Decision::Allow(_)
    ));
    let challenge = Denial::RevokedKey
        .www_authenticate("keyplane")
        .expect("401 has a challenge");
    assert!(challenge.contains(r#"error="invalid_token""#));
}

#[test]
fn a_revocation_change_takes_effect_on_the_next_request() {
    let mut world = World::new();
    let (key, mut entry) = world.issue(Environment::Live, &[], |_| {});
    assert!(matches!(
        world.with_key("GET", "/x", &key),
        Decision::Allow(_)
    ));
    entry.status = KeyStatus::Revoked;
    world.upsert(entry);
    assert_eq!(
        denial(world.with_key("GET", "/x", &key)),
        Denial::RevokedKey
    );
}

#[test]
fn environments_the_edge_refuses_look_like_invalid_keys() {
    let mut world = World::new();
    world.config.environments = AcceptedEnvironments::LiveOnly;
    let (test_key, _) = world.issue(Environment::Test, &[], |_| {});
    let (live_key, _) = world.issue(Environment::Live, &[], |_| {});
    assert_eq!(
        denial(world.with_key("GET", "/x", &test_key)),
        Denial::InvalidKey
    );
    assert!(matches!(
        world.with_key("GET", "/x", &live_key),
        Decision::Allow(_)
    ));
    world.config.environments = AcceptedEnvironments::TestOnly;
    assert_eq!(
        denial(world.with_key("GET", "/x", &live_key)),
        Denial::InvalidKey
    );
}

#[test]
fn a_table_entry_whose_environment_disagrees_with_the_key_is_refused() {
    let mut world = World::new();
    let (key, _) = world.issue(Environment::Test, &[], |e| e.env = Environment::Live);
    assert_eq!(
        denial(world.with_key("GET", "/x", &key)),
        Denial::InvalidKey
    );
}

#[test]
fn missing_scopes_are_named_in_a_403() {
    let mut world = World::new();
    let (reader, _) = world.issue(Environment::Live, &["contacts:read"], |_| {});
    let denied = denial(world.with_key("POST", "/contacts", &reader));
    assert_eq!(
        denied,
        Denial::InsufficientScope {
            required: Scope::parse("contacts:write").expect("valid")
        }
    );
    assert_eq!(
        (denied.status(), denied.code()),
        (403, "insufficient_scope")
    );
    assert!(denied.message().contains("contacts:write"));
    let challenge = denied
        .www_authenticate("keyplane")
        .expect("403 has a challenge");
    assert!(
        challenge.contains(r#"error="insufficient_scope""#)
            && challenge.contains(r#"scope="contacts:write""#)
    );
    let (admin, _) = world.issue(Environment::Live, &["admin:full"], |_| {});
    assert!(matches!(
        world.with_key("POST", "/contacts", &admin),
        Decision::Allow(_)
    ));
}

#[test]
fn public_routes_need_no_key() {
    let mut world = World::new();
    assert_eq!(
        world.decide("GET", "/public/logo.png", None, None),
        Decision::AllowPublic
    );
}

#[test]
fn the_eleventh_request_of_a_burst_is_rate_limited() {
    let mut world = World::new();
    let (key, _) = world.issue(Environment::Live, &[], |_| {});
    for _ in 0..10 {
        assert!(matches!(
            world.with_key("GET", "/x", &key),
            Decision::Allow(_)
        ));
    }
    match denial(world.with_key("GET", "/x", &key)) {
        Denial::RateLimited(outcome) => {
            assert_eq!(outcome.retry_after_ms, 600);
            assert_eq!(
                (
                    Denial::RateLimited(outcome).status(),
                    Denial::RateLimited(outcome).code()
                ),
                (429, "rate_limited")
            );
        }
        other => panic!("expected 429, got {other:?}"),
    }
}

#[test]
fn per_key_rate_limits_override_the_default() {
    let mut world = World::new();
    let (key, _) = world.issue(Environment::Live, &[], |e| {
        e.rate_limit = Some(RateLimit::new(60, 2).expect("valid"))
    });
    assert!(matches!(
        world.with_key("GET", "/x", &key),
        Decision::Allow(_)
    ));
    assert!(matches!(
        world.with_key("GET", "/x", &key),
        Decision::Allow(_)
    ));
    assert!(matches!(
        world.with_key("GET", "/x", &key),
        Decision::Deny {
            denial: Denial::RateLimited(_),
            ..
        }
    ));
}

#[test]
fn keys_digested_with_an_older_pepper_keep_working_after_rotation() {
    let mut world = World::new();
    let old = pepper(1);
    let key = ApiKey::generate(&KeyPrefix::default(), Environment::Live).expect("CSPRNG");
    world.add(&key, &old, &[], |_| {});
    assert_eq!(
        denial(world.with_key("GET", "/x", &key)),
        Denial::InvalidKey,
        "unknown to the current pepper alone"
    );
    world.config.peppers = PepperSet::new(pepper(2), [old]).expect("distinct");
    assert!(matches!(
        world.with_key("GET", "/x", &key),
        Decision::Allow(_)
    ));
}

#[test]
fn request_facts_debug_never_shows_credentials() {
    let key = "sk_live_secretsecretsecretsecretsecret0000";
    let bearer = format!("Bearer {key}");
    let facts = RequestFacts {
        x_api_key: Some(key),
        authorization: Some(&bearer),
        method: "GET",
        path: "/v1/x",
    };
    let shown = format!("{facts:?} {facts:#?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(
        shown.contains("<present>") && shown.contains("/v1/x"),
        "{shown}"
    );
    let none = format!("{:?}", RequestFacts::default());
    assert!(none.contains("<absent>"), "{none}");
}

#[test]
fn a_path_trick_cannot_turn_a_protected_route_public() {
    let mut world = World::new();
    assert_eq!(
        denial(world.decide("GET", "/contacts/..%2Fpublic/x", None, None)),
        Denial::MissingKey
    );
    let (reader, _) = world.issue(Environment::Live, &["contacts:read"], |_| {});
    assert!(matches!(
        world.with_key("GET", "/contacts/..%2Fpublic/x", &reader),
        Decision::Allow(_)
    ));
}

impl World {
    fn authorize_key(&self, method: &str, path: &str, key: Option<&ApiKey>) -> Authorization {
        let facts = RequestFacts {
            x_api_key: key.map(ApiKey::expose_secret),
            authorization: None,
            method,
            path,
        };
        authorize(&facts, NOW, &self.config, &self.table)
    }
}

#[test]
fn refusals_name_the_key_only_when_it_was_found_in_the_table() {
    let mut world = World::new();
    let (revoked, revoked_entry) =
        world.issue(Environment::Live, &[], |e| e.status = KeyStatus::Revoked);
    let (reader, reader_entry) = world.issue(Environment::Live, &["contacts:read"], |_| {});
    let unknown = ApiKey::generate(&KeyPrefix::default(), Environment::Live).expect("CSPRNG");
    let found = |entry: &TableEntry| Some((entry.key_id, entry.org_id));
    let cases = [
        (
            world.authorize_key("GET", "/x", None),
            Denial::MissingKey,
            None,
        ),
        (
            world.authorize_key("GET", "/x", Some(&unknown)),
            Denial::InvalidKey,
            None,
        ),
        (
            world.authorize_key("GET", "/x", Some(&revoked)),
            Denial::RevokedKey,
            found(&revoked_entry),
        ),
        (
            world.authorize_key("POST", "/contacts", Some(&reader)),
            Denial::InsufficientScope {
                required: Scope::parse("contacts:write").expect("valid"),
            },
            found(&reader_entry),
        ),
    ];
    for (authorization, expected_denial, expected_key) in cases {
        assert_eq!(
            authorization,
            Authorization::Denied {
                denial: expected_denial,
                key: expected_key
            }
        );
    }
    assert_eq!(
        world.authorize_key("GET", "/public/a", None),
        Authorization::Public
    );
}

#[test]
fn authorization_carries_the_limit_and_admit_applies_the_outcome() {
    let mut world = World::new();
    let own = RateLimit::new(60, 2).expect("valid");
    let (with_own, _) = world.issue(Environment::Live, &[], |e| e.rate_limit = Some(own));
    let (with_default, _) = world.issue(Environment::Live, &[], |_| {});
    let authorized = |authorization: Authorization| match authorization {
        Authorization::Authorized(authorized) => authorized.limit,
        other => panic!("expected authorized, got {other:?}"),
    };
    assert_eq!(
        authorized(world.authorize_key("GET", "/x", Some(&with_own))),
        own
    );
    assert_eq!(
        authorized(world.authorize_key("GET", "/x", Some(&with_default))),
        RateLimit::default()
    );
    let Authorization::Authorized(authorized) = world.authorize_key("GET", "/x", Some(&with_own))
    else {
        panic!("expected authorized");
    };
    let mut state = crate::ratelimit::GcraState::default();
    let admitted = own.check(&mut state, NOW);
    let _second = own.check(&mut state, NOW);
    let refused = own.check(&mut state, NOW);
    assert!(matches!(
        authorized.clone().admit(admitted),
        Decision::Allow(Identity { rate_limit, .. }) if rate_limit == admitted
    ));
    let key = Some((authorized.key_id, authorized.org_id));
    assert_eq!(
        authorized.admit(refused),
        Decision::Deny {
            denial: Denial::RateLimited(refused),
            key
        }
    );
}

#[test]
fn a_text_whose_checksum_fails_is_refused_even_when_its_digest_is_in_the_table() {
    // Were the checksum check skipped, a table entry for a mistyped text would admit it.
    let mut world = World::new();
    let (key, mut entry) = world.issue(Environment::Live, &[], |_| {});
    let text = key.expose_secret();
    let typo = format!(
        "{}{}",
        &text[..text.len() - 1],
        if text.ends_with('A') { 'B' } else { 'A' }
    );
    assert_eq!(
        KeyText::check(&typo, &world.config.prefix).err(),
        Some(KeyParseError::ChecksumMismatch),
        "the typo has a key's shape and a wrong checksum"
    );
    entry.digest = world.config.peppers.current().digest_str(&typo);
    entry.key_id = KeyId::generate().expect("CSPRNG");
    world.upsert(entry);
    assert_eq!(
        denial(world.decide("GET", "/x", Some(&typo), None)),
        Denial::InvalidKey
    );
    assert!(matches!(
        world.with_key("GET", "/x", &key),
        Decision::Allow(_)
    ));
}
