//! `keyplane keys rotate-due` against a real control plane on SQLite, the test's clock moved
//! forward: which keys it picks (by age, by expiry), what it leaves alone (keys in a grace
//! period, its own key), `--dry-run`, what it prints (one JSON line per key, the new key on
//! stdout only), that a key rotated for its expiry is not due again the next night, and that
//! the job's own key, rotated without a grace period, goes last.

use serde_json::{Value, json};

use crate::helpers::client::serve;

const DAY_SECS: i64 = 86_400;

fn names(lines: &[Value]) -> Vec<&str> {
    let mut names: Vec<&str> = lines
        .iter()
        .map(|line| line["name"].as_str().expect("name"))
        .collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn rotate_due_rotates_old_and_expiring_keys_and_skips_grace_periods_and_itself() {
    let served = serve().await;
    let app = &served.app;
    let create = |name: &'static str, expires: Option<&'static str>| async move {
        let mut body = json!({"name": name, "environment": "live"});
        if let Some(expires) = expires {
            body["expires"] = json!(expires);
        }
        let (_, record) = app.create_key(body).await;
        record["id"].as_str().expect("id").to_owned()
    };
    let old_a = create("old-a", None).await;
    create("old-b", None).await;
    let in_grace = create("in-grace", None).await;
    app.clock.advance_secs(100 * DAY_SECS);
    let rotated = app
        .post(
            &format!("/v1/keys/{in_grace}/rotate"),
            json!({"grace_seconds": 3600}),
        )
        .await;
    assert_eq!(rotated.status, 201, "{:?}", rotated.body);
    create("young", None).await;
    create("expiring", Some("7d")).await;

    // A dry run names what is due and changes nothing.
    let dry = served
        .run(&[
            "keys",
            "rotate-due",
            "--older-than",
            "90d",
            "--expiring-within",
            "14d",
            "--dry-run",
        ])
        .await
        .ok();
    let planned = dry.json_lines();
    assert_eq!(names(&planned), ["expiring", "old-a", "old-b"], "{dry:?}");
    assert!(
        planned
            .iter()
            .all(|line| line["dry_run"] == true && line.get("key").is_none())
    );
    let reasons: Vec<&str> = planned
        .iter()
        .map(|line| line["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|reason| **reason == "expiring")
            .count(),
        1
    );
    assert!(
        dry.stderr
            .contains("skipped 1 already in a grace period and 1 own key"),
        "{dry:?}"
    );
    assert_eq!(
        app.get(&format!("/v1/keys/{old_a}")).await.body["rotated_to"],
        Value::Null
    );

    // The job itself: each old key gets a successor, printed once, and a 7-day grace.
    let run = served
        .run(&["keys", "rotate-due", "--older-than", "90d", "--grace", "7d"])
        .await
        .ok();
    let done = run.json_lines();
    assert_eq!(names(&done), ["old-a", "old-b"], "{run:?}");
    let now = app.state.now().as_millis();
    for line in &done {
        let key = line["key"].as_str().expect("new key");
        assert!(key.starts_with("sk_live_") && key.len() == 46, "{line}");
        let old = app
            .get(&format!("/v1/keys/{}", line["id"].as_str().expect("id")))
            .await
            .body;
        assert_eq!(old["rotated_to"], line["new_id"]);
        assert_eq!(
            old["status"], "active",
            "still working during the grace period"
        );
        let ends = keyplane_control_plane::input::time::timestamp(
            old["expires_at"].as_str().expect("end"),
        )
        .expect("time");
        assert_eq!(ends.as_millis() - now, 7 * DAY_SECS * 1000);
        assert_eq!(line["old_expires_at"], old["expires_at"]);
        let new = app
            .get(&format!(
                "/v1/keys/{}",
                line["new_id"].as_str().expect("new id")
            ))
            .await
            .body;
        assert_eq!(
            (new["name"].as_str(), new["status"].as_str()),
            (line["name"].as_str(), Some("active"))
        );
    }
    assert!(!run.stderr.contains("sk_live_"), "{run:?}");
    assert!(run.stderr.contains("2 due; 2 rotated"), "{run:?}");

    // Run again: the old keys are in their grace period and the successors are young.
    let again = served
        .run(&["keys", "rotate-due", "--older-than", "90d"])
        .await
        .ok();
    assert!(again.stdout.is_empty(), "{again:?}");

    // --field for a script, and --include-self for the job's own (old) management key.
    let own = served
        .run(&[
            "keys",
            "rotate-due",
            "--older-than",
            "90d",
            "--include-self",
            "--grace",
            "1h",
            "--field",
            "key",
        ])
        .await
        .ok();
    let keys = own.lines();
    assert_eq!(keys.len(), 1, "the admin key alone: {own:?}");
    assert!(keys[0].starts_with("sk_live_"), "{own:?}");
    let successor = served
        .run_as(keys[0], &["whoami", "--field", "method"])
        .await
        .ok();
    assert_eq!(
        successor.stdout, "management_key\n",
        "the new management key works"
    );
    let during_grace = served.run(&["whoami"]).await;
    assert_eq!(
        during_grace.code, 0,
        "the old one too, for the grace period: {during_grace:?}"
    );
}

/// A nightly `--expiring-within` job: the key it rotates for its expiry gets a successor with
/// the key's whole lifetime again, so the next night finds nothing due (a successor that kept
/// the old expiry would be rotated again every night until it expired).
#[tokio::test]
async fn a_key_rotated_for_its_expiry_is_not_due_again_the_next_night() {
    let served = serve().await;
    let app = &served.app;
    let (_, record) = app
        .create_key(json!({"name": "monthly", "environment": "live", "expires": "30d"}))
        .await;
    let nightly = [
        "keys",
        "rotate-due",
        "--older-than",
        "365d",
        "--expiring-within",
        "14d",
        "--grace",
        "1d",
    ];
    app.clock.advance_secs(20 * DAY_SECS);
    let first = served.run(&nightly).await.ok();
    let done = first.json_lines();
    assert_eq!(names(&done), ["monthly"], "{first:?}");
    assert_eq!(done[0]["id"], record["id"]);
    let successor = app
        .get(&format!(
            "/v1/keys/{}",
            done[0]["new_id"].as_str().expect("new id")
        ))
        .await
        .body;
    let expires = keyplane_control_plane::input::time::timestamp(
        successor["expires_at"].as_str().expect("an expiry"),
    )
    .expect("time");
    assert_eq!(
        expires.as_millis() - app.state.now().as_millis(),
        30 * DAY_SECS * 1000
    );
    app.clock.advance_secs(DAY_SECS);
    let next_night = served.run(&nightly).await.ok();
    assert!(next_night.stdout.is_empty(), "{next_night:?}");
}

/// `--include-self` without `--grace`: the job's own key stops the moment it is rotated, so it
/// is rotated last and every other due key still is.
#[tokio::test]
async fn the_jobs_own_key_is_rotated_last() {
    let served = serve().await;
    let app = &served.app;
    for name in ["older-a", "older-b"] {
        app.create_key(json!({"name": name, "environment": "live"}))
            .await;
    }
    // The job's key is the newest, so the listing (newest first) names it first.
    let (job_key, job) = app
        .create_key(json!({"name": "job", "environment": "live", "scopes": ["admin:full"]}))
        .await;
    app.clock.advance_secs(100 * DAY_SECS);
    let run = served
        .run_as(
            &job_key,
            &[
                "keys",
                "rotate-due",
                "--older-than",
                "90d",
                "--include-self",
            ],
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let done = run.json_lines();
    assert_eq!(
        done.len(),
        4,
        "the admin key, older-a, older-b and job: {run:?}"
    );
    assert_eq!(done.last().expect("a line")["id"], job["id"]);
}
