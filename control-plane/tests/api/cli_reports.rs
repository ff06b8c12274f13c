//! `keyplane usage`, `keyplane audit list|verify` and `keyplane whoami` against a real control
//! plane on SQLite.

use serde_json::json;
use sqlx::Executor as _;

use crate::helpers::client::serve;
use crate::helpers::usage::event;

const DAY: i64 = 86_400_000;

#[tokio::test]
async fn usage_lists_a_keys_requests_filters_them_and_counts_them_per_day() {
    let served = serve().await;
    let key = served.app.usage_key("reporting").await;
    let now = served.app.state.now().as_millis();
    served
        .app
        .ingest(&[
            event(1, key, now - 2 * DAY, 200, Some("192.0.2.1")),
            event(2, key, now - DAY, 429, Some("192.0.2.1")),
            event(3, key, now - 60_000, 200, Some("198.51.100.7")),
        ])
        .await;
    let id = key.id.to_string();
    let from =
        keyplane_control_plane::input::time::rfc3339(keyplane_shared::Timestamp(now - 3 * DAY));

    let all = served
        .run(&["usage", &id, "--from", &from, "--json"])
        .await
        .ok()
        .json();
    let api = served
        .app
        .get(&format!("/v1/keys/{id}/usage?from={from}"))
        .await;
    assert_eq!(all, api.body, "--json is the API's document");
    assert_eq!(all["data"].as_array().expect("data").len(), 3);

    let limited = served
        .run(&[
            "usage",
            &id,
            "--from",
            &from,
            "--status",
            "429",
            "--field",
            "request_id",
        ])
        .await
        .ok();
    assert_eq!(limited.lines().len(), 1, "{limited:?}");
    let by_ip = served
        .run(&[
            "usage",
            &id,
            "--from",
            &from,
            "--ip",
            "192.0.2.1",
            "--limit",
            "1",
            "--all",
            "--field",
            "status",
        ])
        .await
        .ok();
    assert_eq!(by_ip.lines(), ["429", "200"], "both pages, newest first");
    let table = served.run(&["usage", &id, "--from", &from]).await.ok();
    let first: Vec<&str> = table.lines()[0].split('\t').collect();
    assert_eq!(
        &first[1..5],
        ["GET", "/v1/contacts/3", "200", "198.51.100.7"],
        "{table:?}"
    );

    let daily = served
        .run(&["usage", &id, "--daily", "--json"])
        .await
        .ok()
        .json();
    let days = daily["data"].as_array().expect("days");
    let total: u64 = days
        .iter()
        .map(|day| day["requests"].as_u64().expect("n"))
        .sum();
    assert_eq!(total, 3);
    let rows = served.run(&["usage", &id, "--daily"]).await.ok();
    assert!(rows.stdout.contains("\t1\t429:1\n"), "{rows:?}");
    let mixed = served
        .run(&["usage", &id, "--daily", "--status", "429"])
        .await;
    assert_eq!(mixed.code, 1, "--daily counts every status: {mixed:?}");
}

#[tokio::test]
async fn audit_list_filters_records_and_verify_exits_7_on_a_broken_chain() {
    let served = serve().await;
    let (_, record) = served
        .app
        .create_key(json!({"name": "audited", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id").to_owned();
    served
        .run(&["keys", "revoke", &id, "--reason", "unused"])
        .await
        .ok();

    let about = served
        .run(&["audit", "list", "--key", &id, "--field", "action"])
        .await
        .ok();
    assert_eq!(about.lines(), ["key_revoked", "key_created"]);
    let revokes = served
        .run(&["audit", "list", "--action", "key_revoked", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(revokes["data"][0]["target_key_id"], id.as_str());
    assert_eq!(revokes["data"].as_array().expect("data").len(), 1);
    let unknown = served
        .run(&["audit", "list", "--action", "key_stolen"])
        .await;
    assert_eq!(unknown.code, 1, "{unknown:?}");
    let everything = served
        .run(&["audit", "list", "--all", "--limit", "1", "--field", "seq"])
        .await
        .ok();
    let seqs: Vec<&str> = everything.lines();
    assert!(
        seqs.len() >= 3 && seqs.last() == Some(&"1"),
        "{everything:?}"
    );

    let intact = served.run(&["audit", "verify", "--json"]).await.ok().json();
    assert_eq!(intact["valid"], true);

    // Someone with database access rewrites a record: the check fails, and says where.
    let pool = served.app.pool();
    pool.execute("DROP TRIGGER audit_log_no_update")
        .await
        .expect("disable trigger");
    pool.execute("UPDATE audit_log SET details = '{\"name\":\"innocent\"}' WHERE seq = 2")
        .await
        .expect("tamper");
    let broken = served.run(&["audit", "verify"]).await;
    assert_eq!(broken.code, 7, "{broken:?}");
    assert!(broken.stdout.contains("valid\tfalse"), "{broken:?}");
    assert!(broken.stderr.contains("record 2"), "{broken:?}");
}

#[tokio::test]
async fn whoami_says_which_key_organization_and_permissions() {
    let served = serve().await;
    let me = served.run(&["whoami", "--json"]).await.ok().json();
    assert_eq!(me, served.app.get("/v1/users/me").await.body);
    assert_eq!(me["method"], "management_key");
    let key_id = served.run(&["whoami", "--field", "key_id"]).await.ok();
    assert!(key_id.stdout.starts_with("key_"), "{key_id:?}");
    let table = served.run(&["whoami"]).await.ok();
    assert!(
        table.stdout.contains("method\tmanagement_key\n"),
        "{table:?}"
    );
    assert!(table.stdout.contains(&format!(
        "organization\t{}",
        me["organization_id"].as_str().expect("org")
    )));
    // The first start's key belongs to no member: no user, no role, said as such.
    assert!(me["role"].is_null(), "{me}");
    assert!(table.stdout.contains("role\t-\n"), "{table:?}");
    assert!(table.stdout.contains("user\t-\n"), "{table:?}");
}
