//! `keyplane keys …` against a real control plane on SQLite: every subcommand, `--json` round
//! trips, `--field`, `--all` and cursors, tables on a pipe, and the full key printed only by
//! `create` and `rotate`, only to stdout.

use serde_json::json;

use crate::helpers::client::serve;
use crate::helpers::usage::{Key, event};

/// The full form of a key: `sk_live_` or `sk_test_` and 38 more characters.
fn is_full_key(text: &str) -> bool {
    (text.starts_with("sk_live_") || text.starts_with("sk_test_")) && text.len() == 46
}

#[tokio::test]
async fn create_prints_the_key_once_to_stdout_and_the_record_round_trips_through_json() {
    let served = serve().await;
    let made = served
        .run(&[
            "keys",
            "create",
            "--name",
            "CI deploy",
            "-e",
            "test",
            "--scope",
            "contacts:read,contacts:write",
            "--expires",
            "30d",
            "--rate-limit",
            "600/20",
            "--metadata",
            "team=payments",
            "--metadata",
            "ticket=42",
            "--json",
        ])
        .await
        .ok();
    let answer = made.json();
    let key = answer["key"].as_str().expect("key");
    assert!(is_full_key(key), "{key}");
    assert!(key.starts_with("sk_test_"));
    let record = &answer["record"];
    assert_eq!(record["scopes"], json!(["contacts:read", "contacts:write"]));
    assert_eq!(
        record["rate_limit"],
        json!({"requests_per_minute": 600, "burst": 20})
    );
    assert_eq!(
        record["metadata"],
        json!({"team": "payments", "ticket": "42"})
    );
    assert!(
        made.stderr.is_empty(),
        "no warning when stdout is not a terminal: {made:?}"
    );

    // `get --json` is the API's own document, field for field.
    let id = record["id"].as_str().expect("id");
    let got = served.run(&["keys", "get", id, "--json"]).await.ok();
    let api = served.app.get(&format!("/v1/keys/{id}")).await;
    assert_eq!(got.json(), api.body);
    assert_eq!(got.json(), *record);
    assert!(!got.stdout.contains(key), "get never shows the full key");

    // `--field` prints one value raw: a script's `NEW=$(…)`.
    let field = served
        .run(&[
            "keys", "create", "--name", "raw", "-e", "live", "--field", "key",
        ])
        .await
        .ok();
    let lines = field.lines();
    assert_eq!(lines.len(), 1, "{field:?}");
    assert!(
        is_full_key(lines[0]) && lines[0].starts_with("sk_live_"),
        "{field:?}"
    );
    let nested = served
        .run(&["keys", "get", id, "--field", "rate_limit.burst"])
        .await
        .ok();
    assert_eq!(nested.stdout, "20\n");
    let missing = served.run(&["keys", "get", id, "--field", "secret"]).await;
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.stderr.contains("no `secret`") && missing.stderr.contains("truncated_key"));

    // The table (a pipe: tab-separated rows) shows the key's fields but never its secret.
    let table = served.run(&["keys", "get", id]).await.ok();
    assert!(table.stdout.contains("name\tCI deploy\n"), "{table:?}");
    assert!(
        table
            .stdout
            .contains("scopes\tcontacts:read,contacts:write\n")
    );
    assert!(table.stdout.contains("rate limit\t600/min, bursts of 20\n"));
    let shown = served
        .run(&["keys", "create", "--name", "table", "-e", "test"])
        .await
        .ok();
    let first = shown.lines()[0];
    let (label, value) = first.split_once('\t').expect("label\tvalue");
    assert_eq!(label, "key");
    assert!(is_full_key(value), "{shown:?}");
}

#[tokio::test]
async fn bad_values_are_refused_before_anything_is_sent() {
    let served = serve().await;
    let absent = keyplane_shared::ids::KeyId::from_bytes([7; 16]).to_string();
    for (args, expected) in [
        (
            &["keys", "create", "--name", "x", "-e", "prod"][..],
            "unknown variant `prod`",
        ),
        (
            &[
                "keys",
                "create",
                "--name",
                "x",
                "-e",
                "live",
                "--rate-limit",
                "fast",
            ][..],
            "600/20",
        ),
        (
            &[
                "keys",
                "create",
                "--name",
                "x",
                "-e",
                "live",
                "--metadata",
                "team",
            ][..],
            "NAME=VALUE",
        ),
        (&["keys", "get", "key_../../v1/audit"][..], "not a key id"),
        (
            &["keys", "rotate", &absent, "--grace", "soon"][..],
            "not a span of time",
        ),
        (&["keys", "revoke", &absent][..], "--reason"),
        (
            &["keys", "revoke", &absent, "--reason", "stolen"][..],
            "employee_departure",
        ),
        (
            &["keys", "list", "--cursor", "a", "--all"][..],
            "cannot be used with",
        ),
        (
            &[
                "keys", "create", "--name", "x", "-e", "live", "--json", "--field", "key",
            ][..],
            "cannot be used with",
        ),
        (
            &[
                "keys",
                "create",
                "--name",
                "x",
                "-e",
                "live",
                "--api-key",
                "sk_live_x",
            ][..],
            "unexpected argument '--api-key'",
        ),
    ] {
        let run = served.run(args).await;
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains(expected), "{args:?}: {run:?}");
    }
    // The API's own refusals of a value are usage errors too, with its code and request id.
    let scope = served
        .run(&[
            "keys",
            "create",
            "--name",
            "x",
            "-e",
            "live",
            "--scope",
            "not a scope",
        ])
        .await;
    assert_eq!(scope.code, 1, "{scope:?}");
    assert!(
        scope.stderr.contains("invalid_request") && scope.stderr.contains("request req_"),
        "{scope:?}"
    );
    let nothing = served.run(&["keys", "update", &absent]).await;
    assert_eq!(nothing.code, 1, "{nothing:?}");
    let listed = served.app.get("/v1/keys").await;
    assert_eq!(
        listed.body["data"].as_array().expect("data").len(),
        1,
        "only the admin key"
    );
}

#[tokio::test]
async fn list_filters_pages_and_walks_every_page_with_all() {
    let served = serve().await;
    for i in 0..5 {
        served.app.clock.advance_secs(1);
        let environment = if i % 2 == 0 { "live" } else { "test" };
        served
            .app
            .create_key(json!({"name": format!("svc-{i}"), "environment": environment}))
            .await;
    }
    // One page, and where the next one starts.
    let page = served
        .run(&["keys", "list", "--limit", "2", "--field", "id"])
        .await
        .ok();
    assert_eq!(page.lines().len(), 2, "{page:?}");
    assert!(page.stderr.contains("more: add --cursor"), "{page:?}");
    let cursor = page.stderr.split_whitespace().nth(3).expect("cursor");
    let next = served
        .run(&[
            "keys", "list", "--limit", "2", "--cursor", cursor, "--field", "id",
        ])
        .await
        .ok();
    assert_eq!(next.lines().len(), 2);
    assert!(
        next.lines().iter().all(|id| !page.lines().contains(id)),
        "{next:?}"
    );

    // --all: every page, whatever the page size; --json gathers them into one document.
    let all = served
        .run(&["keys", "list", "--all", "--limit", "2", "--json"])
        .await
        .ok();
    let document = all.json();
    assert_eq!(
        document["data"].as_array().expect("data").len(),
        6,
        "5 + the admin key"
    );
    assert_eq!(document["next_cursor"], json!(null));
    assert!(all.stderr.is_empty(), "{all:?}");
    let lines = served
        .run(&["keys", "list", "--all", "--limit", "2", "--jsonl"])
        .await
        .ok();
    let names: Vec<String> = lines
        .json_lines()
        .iter()
        .map(|key| key["name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(names.len(), 6);
    assert_eq!(names[0], "svc-4", "newest first");

    // Filters are the API's.
    let test_keys = served
        .run(&["keys", "list", "-e", "test", "--field", "name"])
        .await
        .ok();
    assert_eq!(test_keys.lines(), ["svc-3", "svc-1"]);
    let named = served
        .run(&["keys", "list", "--name", "SVC-2", "--field", "name"])
        .await
        .ok();
    assert_eq!(named.lines(), ["svc-2"]);
    let svc0: keyplane_shared::ids::KeyId = served
        .run(&["keys", "list", "--name", "svc-0", "--field", "id"])
        .await
        .ok()
        .stdout
        .trim()
        .parse()
        .expect("key id");
    let key = Key {
        id: svc0,
        org: served.app.org_of(svc0).await,
    };
    let at = served.app.state.now().as_millis();
    served.app.ingest(&[event(1, key, at, 200, None)]).await;
    let used = served
        .run(&["keys", "list", "--used", "--field", "name"])
        .await
        .ok();
    assert_eq!(used.lines(), ["svc-0"]);
    let unused = served
        .run(&["keys", "list", "--never-used", "--all", "--field", "id"])
        .await
        .ok();
    assert_eq!(unused.lines().len(), 5, "{unused:?}");

    // On a pipe the table is tab-separated rows without a header (`cut -f1` gives ids).
    let table = served.run(&["keys", "list", "--all"]).await.ok();
    assert_eq!(table.lines().len(), 6, "{table:?}");
    let row: Vec<&str> = table.lines()[0].split('\t').collect();
    assert_eq!(row.len(), 8, "{row:?}");
    assert_eq!((row[1], row[2], row[3]), ("svc-4", "live", "active"));

    // A reader that stops early is not an error.
    let piped = served
        .pipeline("\"$KEYPLANE\" keys list --all --limit 1 --field id | head -1")
        .await;
    assert!(piped.status.success(), "{piped:?}");
    let first = String::from_utf8_lossy(&piped.stdout);
    assert!(
        first.starts_with("key_") && first.lines().count() == 1,
        "{piped:?}"
    );
    assert!(piped.stderr.is_empty(), "{piped:?}");
}

#[tokio::test]
async fn update_rotate_revoke_transfer_and_delete_change_what_the_api_says() {
    let served = serve().await;
    let (_, record) = served
        .app
        .create_key(json!({"name": "old name", "environment": "live", "scopes": ["a:read"]}))
        .await;
    let id = record["id"].as_str().expect("id").to_owned();

    let updated = served
        .run(&[
            "keys",
            "update",
            &id,
            "--name",
            "new name",
            "--scope",
            "a:read,b:read",
            "--rate-limit",
            "100/10",
            "--metadata-json",
            r#"{"tier":"gold"}"#,
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(updated["name"], "new name");
    assert_eq!(updated["scopes"], json!(["a:read", "b:read"]));
    assert_eq!(updated["metadata"], json!({"tier": "gold"}));
    let reset = served
        .run(&[
            "keys",
            "update",
            &id,
            "--default-rate-limit",
            "--no-scopes",
            "--no-metadata",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(
        (&reset["rate_limit"], &reset["scopes"], &reset["metadata"]),
        (&json!(null), &json!([]), &json!({}))
    );

    // Rotate with a grace period: the new key, once; the old one expires when the grace ends,
    // and the new one when `--expires` says.
    let rotated = served
        .run(&[
            "keys",
            "rotate",
            &id,
            "--grace",
            "1h",
            "--expires",
            "7d",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert!(is_full_key(rotated["key"].as_str().expect("key")));
    assert_eq!(rotated["previous"]["id"], id.as_str());
    assert_eq!(rotated["previous"]["rotated_to"], rotated["record"]["id"]);
    let now = served.app.state.now().as_millis();
    let expires = keyplane_control_plane::input::time::timestamp(
        rotated["previous"]["expires_at"]
            .as_str()
            .expect("grace end"),
    )
    .expect("time");
    assert_eq!(expires.as_millis() - now, 3_600_000);
    let new_expires = keyplane_control_plane::input::time::timestamp(
        rotated["record"]["expires_at"].as_str().expect("expiry"),
    )
    .expect("time");
    assert_eq!(new_expires.as_millis() - now, 7 * 86_400_000);
    let again = served.run(&["keys", "rotate", &id]).await;
    assert_eq!(
        again.code, 4,
        "a key already rotated is a conflict: {again:?}"
    );
    assert!(
        again.stderr.contains("key_rotated") && again.stderr.contains("HTTP 409"),
        "{again:?}"
    );

    // Revoke, idempotently; delete only what is no longer active.
    let new_id = rotated["record"]["id"].as_str().expect("new id").to_owned();
    let active = served.run(&["keys", "delete", &new_id]).await;
    assert_eq!(active.code, 4, "{active:?}");
    let revoked = served
        .run(&[
            "keys",
            "revoke",
            &new_id,
            "--reason",
            "employee_departure",
            "--note",
            "left",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(revoked["record"]["status"], "revoked");
    assert_eq!(revoked["record"]["revocation_reason"], "employee_departure");
    assert_eq!(revoked["record"]["revocation_note"], "left");
    let twice = served
        .run(&["keys", "revoke", &new_id, "--reason", "other"])
        .await
        .ok();
    assert!(twice.stderr.contains("already revoked"), "{twice:?}");
    let deleted = served
        .run(&["keys", "delete", &new_id, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(deleted, json!({"id": new_id, "deleted": true}));
    let gone = served.run(&["keys", "get", &new_id]).await;
    assert_eq!(gone.code, 2, "{gone:?}");
    assert!(
        gone.stderr.contains("not_found") && gone.stderr.contains("HTTP 404"),
        "{gone:?}"
    );

    // Transfer to someone who is not a member: the API's refusal, its code kept.
    let transfer = served
        .run(&["keys", "transfer", &id, "--to", "usr_nobody"])
        .await;
    assert_ne!(transfer.code, 0, "{transfer:?}");
    assert!(transfer.stderr.contains("request req_"), "{transfer:?}");
}
