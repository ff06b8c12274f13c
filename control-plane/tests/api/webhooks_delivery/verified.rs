//! Deliveries checked from outside the delivery worker: signatures verified by an independent
//! receiver (Python's `hmac`), no event for a rolled-back change, and the address guard
//! refusing at delivery time a name that now resolves inside.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

use keyplane_control_plane::Config;
use keyplane_control_plane::store::sql::Backend;
use serde_json::{Value, json};

use super::{Receiver, attempts, endpoint, round};

/// Starts the independent receiver, accepting `secrets`.
fn python_receiver(secrets: &[&str]) -> (Child, BufReader<ChildStdout>, String) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/scripts/webhook_receiver.py");
    let mut child = Command::new("python3")
        .arg(script)
        .env("WEBHOOK_SECRETS", secrets.join(" "))
        .env("WEBHOOK_TOLERANCE", "none")
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the receiver");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    lines.read_line(&mut first).expect("the receiver's port");
    let port = first
        .trim()
        .strip_prefix("listening ")
        .expect("listening PORT");
    let url = format!("http://127.0.0.1:{port}/in");
    (child, lines, url)
}

#[tokio::test]
async fn deliveries_are_verified_by_an_independent_receiver() {
    let app = crate::helpers::spawn_app_with(Backend::Sqlite, crate::helpers::default_config)
        .await
        .expect("SQLite");
    // The receiver only learns the secret once the endpoint exists: point the endpoint at a
    // placeholder first, then at the receiver.
    let (id, secret) = endpoint(
        &app,
        "http://127.0.0.1:9/none",
        &["key.created", "key.revoked"],
    )
    .await;
    let (mut child, mut lines, url) = python_receiver(&[&secret]);
    app.patch(&format!("/v1/webhooks/{id}"), json!({"url": url}))
        .await;
    let (_, key) = app
        .create_key(json!({"name": "to revoke", "environment": "live"}))
        .await;
    let key_id = key["id"].as_str().expect("id");
    app.post(
        &format!("/v1/keys/{key_id}/revoke"),
        json!({"reason": "compromised", "note": "found in a gist"}),
    )
    .await;
    let delivered = round(&app).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        lines.read_line(&mut line).expect("a delivery line");
        seen.push(serde_json::from_str::<Value>(&line).expect("json"));
    }
    let _ = child.kill();
    assert_eq!(delivered.delivered, 2, "{seen:?}");
    for delivery in &seen {
        assert_eq!(delivery["verified"], true, "{delivery}");
        assert_eq!(delivery["content_type"], "application/json");
    }
    let types: Vec<&str> = seen
        .iter()
        .filter_map(|d| d["event"]["type"].as_str())
        .collect();
    assert_eq!(types, ["key.created", "key.revoked"]);
    let revoked = &seen[1]["event"]["data"];
    assert_eq!(revoked["key_id"], key_id);
    assert_eq!(revoked["reason"], "compromised");
    assert_eq!(revoked["note"], "found in a gist");
    assert!(seen[0]["event"]["timestamp"].is_string());
    // A tampered body or a wrong secret is what the receiver refuses: shown by the receiver
    // itself refusing a delivery signed for another endpoint.
    let (mut other, mut other_lines, other_url) =
        python_receiver(&["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]);
    endpoint(&app, &other_url, &["key.created"]).await;
    app.create_key(json!({"name": "unverifiable", "environment": "live"}))
        .await;
    let refused = round(&app).await;
    let mut line = String::new();
    other_lines.read_line(&mut line).expect("a delivery line");
    let _ = other.kill();
    let seen: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(seen["verified"], false, "{seen}");
    assert_eq!(refused.delivered, 0, "a 400 is not a delivery");
}

fn sqlite_public_only(config: &mut Config) {
    config.local_dev = false;
}

#[tokio::test]
async fn a_rolled_back_change_announces_nothing() {
    let app = crate::helpers::spawn_app_with(Backend::Sqlite, crate::helpers::default_config)
        .await
        .expect("SQLite");
    let receiver = Receiver::start(204).await;
    endpoint(&app, &receiver.url, &["key.created"]).await;
    // The audit record is the change's last write: make it fail for one key, after the event
    // and its delivery were written in the same transaction.
    sqlx::query(
        "CREATE TRIGGER doom BEFORE INSERT ON audit_log \
         WHEN NEW.details LIKE '%doomed%' BEGIN SELECT RAISE(ABORT, 'doomed'); END",
    )
    .execute(app.pool())
    .await
    .expect("trigger");
    let failed = app
        .post("/v1/keys", json!({"name": "doomed", "environment": "live"}))
        .await;
    assert!(failed.status.is_server_error(), "{:?}", failed.body);
    for table in ["webhook_events", "webhook_deliveries", "api_keys"] {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE {}",
            if table == "api_keys" {
                "name = 'doomed'"
            } else {
                "1 = 1"
            }
        )))
        .fetch_one(app.pool())
        .await
        .expect("count");
        assert_eq!(count, 0, "{table} kept a row of the rolled-back change");
    }
    assert_eq!(round(&app).await.attempted, 0);
    assert!(receiver.types().is_empty());
    // A committed one is announced.
    app.create_key(json!({"name": "kept", "environment": "live"}))
        .await;
    assert_eq!(round(&app).await.delivered, 1);
}

#[tokio::test]
async fn a_name_that_now_resolves_inside_is_refused_at_delivery() {
    let app = crate::helpers::spawn_app_with(Backend::Sqlite, sqlite_public_only)
        .await
        .expect("SQLite");
    let receiver = Receiver::start(204).await;
    let (id, _) = endpoint(&app, "https://hooks.example.com/in", &["key.created"]).await;
    // The name's address changes after the check at creation (DNS rebinding): the endpoint
    // now leads to this machine. Only the check on the connected address stands in the way.
    let port = receiver.url.rsplit(':').next().expect("port");
    sqlx::query("UPDATE webhook_endpoints SET url = $1")
        .bind(format!("http://localhost:{port}"))
        .execute(app.pool())
        .await
        .expect("rebind");
    app.create_key(json!({"name": "one", "environment": "live"}))
        .await;
    let refused = round(&app).await;
    assert_eq!((refused.attempted, refused.delivered), (1, 0));
    assert!(receiver.types().is_empty(), "the inside was reached");
    let attempt = &attempts(&app, &id).await[0];
    assert_eq!(attempt["outcome"], "connect_error", "{attempt}");
    assert!(
        attempt["response"]
            .as_str()
            .is_some_and(|text| text.contains("no public address")),
        "{attempt}"
    );
    // An address written in the URL is refused without a connection.
    sqlx::query("UPDATE webhook_endpoints SET url = $1")
        .bind(format!("http://127.0.0.1:{port}"))
        .execute(app.pool())
        .await
        .expect("literal");
    app.clock.advance_secs(10);
    round(&app).await;
    assert!(receiver.types().is_empty(), "the inside was reached");
    assert_eq!(attempts(&app, &id).await[0]["outcome"], "refused_address");
}
