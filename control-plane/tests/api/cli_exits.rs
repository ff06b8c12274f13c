//! What a script can rely on from the `keyplane` client: the documented exit codes (from a
//! real control plane, and from a stub answering the statuses a healthy one rarely gives), the
//! API's error code and request id in each message, reads retried on network errors only, the
//! credential kept out of the process list, stderr and a terminal's warning, and a new key
//! never lost to a `--field` typo or silently to a closed stdout.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::client::{Served, keyplane_command, run_with, serve};

/// A server answering every request with `status` and the API's error body.
async fn stub(status: u16, code: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let body = format!(
        r#"{{"error":{{"code":"{code}","message":"stub says no","request_id":"req_stub"}}}}"#
    );
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            let answer = format!(
                "HTTP/1.1 {status} Stub\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    url
}

#[tokio::test]
async fn exit_codes_follow_the_status_and_messages_carry_the_code_and_request_id() {
    for (status, code, exit) in [
        (400, "invalid_request", 1),
        (404, "not_found", 2),
        (401, "invalid_api_key", 3),
        (403, "insufficient_scope", 3),
        (409, "conflict", 4),
        (429, "rate_limited", 5),
        (500, "internal", 6),
        (503, "unavailable", 6),
    ] {
        let url = stub(status, code).await;
        let run = run_with(
            &["keys", "list"],
            &[
                ("KEYPLANE_URL", &url),
                ("KEYPLANE_API_KEY", "sk_live_whatever"),
            ],
        )
        .await;
        assert_eq!(run.code, exit, "{status}: {run:?}");
        assert!(
            run.stderr.contains(code) && run.stderr.contains("request req_stub"),
            "{status}: {run:?}"
        );
        assert!(
            !run.stderr.contains("retrying"),
            "an answer is never retried: {run:?}"
        );
    }

    // A real control plane: refused credentials, unknown keys, and nothing listening.
    let served = serve().await;
    let refused = served
        .run_as(
            "sk_live_0123456789abcdefghijklmnopqrstuvwxyzAB",
            &["whoami"],
        )
        .await;
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(refused.stderr.contains("invalid_api_key"), "{refused:?}");
    let absent = keyplane_shared::ids::KeyId::from_bytes([7; 16]).to_string();
    assert_eq!(served.run(&["keys", "get", &absent]).await.code, 2);
    assert_eq!(served.run(&["usage", &absent]).await.code, 2);
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let nowhere = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let down = run_with(
        &["whoami"],
        &[
            ("KEYPLANE_URL", &nowhere),
            ("KEYPLANE_API_KEY", "sk_live_x"),
        ],
    )
    .await;
    assert_eq!(down.code, 6, "{down:?}");
    assert!(
        down.stderr.contains("cannot reach the control plane"),
        "{down:?}"
    );

    // Usage errors: clap's own (it would exit 2) and missing settings.
    for (args, variables, expected) in [
        (
            &["keys", "frobnicate"][..],
            &[][..],
            "unrecognized subcommand",
        ),
        (&["keys"][..], &[][..], "Usage:"),
        (
            &["whoami"][..],
            &[("KEYPLANE_API_KEY", "sk_live_x")][..],
            "KEYPLANE_URL",
        ),
        (
            &["whoami"][..],
            &[("KEYPLANE_URL", served.url.as_str())][..],
            "KEYPLANE_API_KEY",
        ),
    ] {
        let run = run_with(args, variables).await;
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert!(run.stderr.contains(expected), "{args:?}: {run:?}");
    }
    assert_eq!(run_with(&["--help"], &[]).await.code, 0);
    assert_eq!(run_with(&["--version"], &[]).await.code, 0);
}

/// A proxy to `target` that closes the first `drop_first` connections without a word.
async fn flaky_proxy(target: String, drop_first: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let target = target.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        let mut seen = 0;
        while let Ok((mut socket, _)) = listener.accept().await {
            seen += 1;
            if seen <= drop_first {
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                drop(socket);
                continue;
            }
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut upstream) = TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn reads_are_retried_on_network_errors_and_changes_are_never_sent_twice() {
    let served = serve().await;
    let key = served.app.admin_key.clone();
    let flaky = flaky_proxy(served.url.clone(), 2).await;
    let read = run_with(
        &["keys", "list", "--field", "name"],
        &[("KEYPLANE_URL", &flaky), ("KEYPLANE_API_KEY", &key)],
    )
    .await;
    assert_eq!(read.code, 0, "the third attempt gets through: {read:?}");
    assert_eq!(read.stderr.matches("retrying").count(), 2, "{read:?}");

    let flaky = flaky_proxy(served.url.clone(), 1).await;
    let change = run_with(
        &["keys", "create", "--name", "once", "-e", "live"],
        &[("KEYPLANE_URL", &flaky), ("KEYPLANE_API_KEY", &key)],
    )
    .await;
    assert_eq!(change.code, 6, "{change:?}");
    assert!(!change.stderr.contains("retrying"), "{change:?}");
    let keys = served.app.get("/v1/keys?name=once").await;
    assert_eq!(
        keys.body["data"].as_array().expect("data").len(),
        0,
        "not created behind the error"
    );
}

#[tokio::test]
async fn the_credential_is_not_in_the_process_list() {
    let served = serve().await;
    // A server that accepts and never answers: the command is caught in the act.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    let key = served.app.admin_key.clone();
    let mut child = keyplane_command(
        &["keys", "create", "--name", "ps", "-e", "live"],
        &[("KEYPLANE_URL", &url), ("KEYPLANE_API_KEY", &key)],
    )
    .spawn()
    .expect("spawn");
    let (_held, _) = tokio::time::timeout(Duration::from_secs(10), silent.accept())
        .await
        .expect("the command connects")
        .expect("accept");
    let pid = child.id().expect("running");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(shown.contains("keys create --name ps"), "{shown}");
    assert!(
        !shown.contains(&key),
        "the key is in the process list: {shown}"
    );
    let _ = child.kill().await;
}

#[tokio::test]
async fn on_a_terminal_the_key_is_on_stdout_and_a_warning_on_stderr() {
    let served = serve().await;
    let dir = tempfile::tempdir().expect("dir");
    let stderr_file = dir.path().join("stderr");
    // `script` gives the command a terminal for stdout; stderr goes to a file.
    let inner = format!(
        "{} keys create --name tty -e live 2>{}",
        env!("CARGO_BIN_EXE_keyplane"),
        stderr_file.display()
    );
    let output = tokio::process::Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env("KEYPLANE_URL", &served.url)
        .env("KEYPLANE_API_KEY", &served.app.admin_key)
        .output()
        .await
        .expect("script (util-linux) runs");
    assert!(output.status.success(), "{output:?}");
    let terminal = String::from_utf8_lossy(&output.stdout);
    let warning = std::fs::read_to_string(&stderr_file).expect("stderr");
    assert!(warning.contains("only time this key is shown"), "{warning}");
    assert!(!warning.contains("sk_live_"), "{warning}");
    let key_line = terminal
        .lines()
        .find(|line| line.starts_with("key "))
        .unwrap_or_else(|| panic!("no key line on the terminal: {terminal}"));
    let key = key_line.split_whitespace().nth(1).expect("the key");
    assert!(key.starts_with("sk_live_") && key.len() == 46, "{terminal}");
    assert!(
        terminal.contains("name         tty"),
        "aligned on a terminal: {terminal}"
    );
}

/// `--field` a rotation's answer lacks: the whole answer (new key included) is printed instead
/// and the exit is 1; `rotate-due` refuses such a field before it rotates anything; and a
/// rotation whose stdout is closed exits 8, naming the new key on stderr.
/// Runs `keyplane <args>` as the served admin into a reader that closes its end at once;
/// requires exit 8 (a key made but not shown) and returns stderr.
async fn into_a_closed_pipe(served: &Served, args: &str) -> String {
    let piped = served
        .pipeline(&format!(
            "\"$KEYPLANE\" {args} | (exec <&-; sleep 2); exit \"${{PIPESTATUS[0]}}\""
        ))
        .await;
    let stderr = String::from_utf8_lossy(&piped.stderr).into_owned();
    assert_eq!(piped.status.code(), Some(8), "{stderr}");
    stderr
}

#[tokio::test]
async fn a_new_key_is_never_lost_to_a_field_typo_nor_silently_to_a_closed_pipe() {
    let served = serve().await;
    let make = |name: &'static str| {
        let app = &served.app;
        async move {
            let (_, record) = app
                .create_key(serde_json::json!({"name": name, "environment": "live"}))
                .await;
            record["id"].as_str().expect("id").to_owned()
        }
    };
    let typo = make("typo").await;
    let run = served
        .run(&["keys", "rotate", &typo, "--field", "new_key"])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("printed instead"), "{run:?}");
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).expect("the whole answer");
    let key = answer["key"].as_str().expect("the new key");
    assert!(key.starts_with("sk_live_") && key.len() == 46, "{answer}");
    assert_eq!(answer["previous"]["id"], typo.as_str());

    // Nothing rotated by a job whose --field its lines lack: a name they do not have, one
    // only a dry run's lines have, or a path into a field that has no fields.
    let before = served.app.get("/v1/keys?limit=200").await.body;
    for field in ["new_key", "dry_run", "key.x", "new_id.0"] {
        let job = served
            .run(&["keys", "rotate-due", "--older-than", "0d", "--field", field])
            .await;
        assert_eq!(job.code, 1, "{field}: {job:?}");
        assert!(
            job.stderr.contains(&format!("the lines have no `{field}`")),
            "{job:?}"
        );
        assert!(job.stdout.is_empty(), "{job:?}");
        assert_eq!(served.app.get("/v1/keys?limit=200").await.body, before);
    }

    // stdout closed before the answer comes: exit 8, and stderr says which key was made.
    let closed = make("closed").await;
    let stderr = into_a_closed_pipe(
        &served,
        &format!("keys rotate {closed} --grace 1h --field key"),
    )
    .await;
    let old = served.app.get(&format!("/v1/keys/{closed}")).await.body;
    let successor = old["rotated_to"].as_str().expect("rotated");
    assert!(
        stderr.contains(successor) && stderr.contains("could not be printed"),
        "{stderr}"
    );
    assert!(!stderr.contains("sk_live_"), "{stderr}");
}

/// Live keys named `names`, two days old (due for `rotate-due --older-than 0d`); their ids.
async fn keys_due(served: &Served, names: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for name in names {
        let (_, record) = served
            .app
            .create_key(serde_json::json!({"name": name, "environment": "live"}))
            .await;
        ids.push(record["id"].as_str().expect("id").to_owned());
    }
    served.app.clock.advance_secs(2 * 86_400);
    ids
}

#[tokio::test]
async fn rotate_due_stops_at_the_first_key_it_could_not_print() {
    let served = serve().await;
    let ids = keys_due(&served, &["first", "second", "third"]).await;
    // stdout closed before the first line: that key's successor was made but not shown, so
    // the job stops there (exit 8) rather than rotate keys nobody can read the successors of.
    let stderr = into_a_closed_pipe(&served, "keys rotate-due --older-than 0d --grace 1h").await;
    let mut rotated = Vec::new();
    for id in &ids {
        let key = served.app.get(&format!("/v1/keys/{id}")).await.body;
        if let Some(successor) = key["rotated_to"].as_str() {
            rotated.push(successor.to_owned());
        }
    }
    assert_eq!(
        rotated.len(),
        1,
        "one key rotated, then the job stopped: {stderr}"
    );
    assert!(stderr.contains(&rotated[0]), "{stderr}");
    assert!(!stderr.contains("sk_live_"), "{stderr}");
}

/// `--json` writes its one document, with every new key in it, after the last rotation: when
/// that fails, the job exits 8 naming every new key, not 0 (a closed pipe is otherwise a
/// reader that stopped).
#[tokio::test]
async fn rotate_due_as_json_names_every_new_key_it_could_not_print() {
    let served = serve().await;
    let ids = keys_due(&served, &["first", "second"]).await;
    let stderr =
        into_a_closed_pipe(&served, "keys rotate-due --older-than 0d --grace 1h --json").await;
    for id in &ids {
        let key = served.app.get(&format!("/v1/keys/{id}")).await.body;
        let successor = key["rotated_to"].as_str().expect("rotated");
        assert!(stderr.contains(successor), "{successor}: {stderr}");
    }
    assert!(stderr.contains("could not be printed"), "{stderr}");
    assert!(!stderr.contains("sk_live_"), "{stderr}");
}
