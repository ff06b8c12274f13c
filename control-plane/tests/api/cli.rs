//! The `keyplane` binary's edge commands, run as a user would: `edge-env` (the two secrets an
//! edge needs), `edges add / list / remove`, and `serve --edge` / `KEYPLANE_EDGES`.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::ExposeSecret as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use crate::backends;
use crate::helpers::TestApp;

backends!(
    edges_are_added_listed_and_removed_from_the_command_line,
    users_add_prints_a_one_time_owner_link,
);

/// Every variable the binary reads, so the caller's environment cannot leak in.
const VARIABLES: [&str; 19] = [
    "KEYPLANE_LOCAL_DEV",
    "KEYPLANE_METRICS_LISTEN",
    "KEYPLANE_MAX_RATE_LIMIT",
    "KEYPLANE_PEPPERS",
    "KEYPLANE_SIGNING_SECRET",
    "KEYPLANE_EDGE_SECRET",
    "KEYPLANE_EDGES",
    "KEYPLANE_LISTEN",
    "KEYPLANE_DATA_DIR",
    "KEYPLANE_KEY_PREFIX",
    "KEYPLANE_ORG_NAME",
    "DATABASE_URL",
    "RUST_LOG",
    "KEYPLANE_HOST_TOKENS",
    "KEYPLANE_PUBLIC_URL",
    "KEYPLANE_LOGIN_LIMIT_PER_EMAIL",
    "KEYPLANE_LOGIN_LIMIT_PER_ADDRESS",
    "KEYPLANE_SMTP_URL",
    "KEYPLANE_SMTP_FROM",
];

fn keyplane(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyplane"));
    command.args(args).kill_on_drop(true);
    for name in VARIABLES {
        command.env_remove(name);
    }
    command.env("RUST_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    keyplane(args, env).output().await.expect("keyplane runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("UTF-8 path")
}

#[tokio::test]
async fn edge_env_prints_the_secrets_the_server_uses_in_dotenv_form() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("not-yet-created");
    let first = run(&["edge-env", "--data-dir", path(&dir)], &[]).await;
    assert!(first.status.success(), "{first:?}");
    let text = stdout(&first);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let peppers = lines[0].strip_prefix("KEYPLANE_PEPPERS=").expect("peppers");
    let edge = lines[1]
        .strip_prefix("KEYPLANE_EDGE_SECRET=")
        .expect("edge secret");
    let (id, pepper) = peppers.split_once(':').expect("id:base64");
    assert_eq!(id, "1");
    assert_eq!(BASE64.decode(pepper).expect("base64").len(), 32);
    assert!(BASE64.decode(edge).expect("base64").len() >= 32);

    // Stable across runs, and exactly what `serve` would load from that directory.
    let second = run(&["edge-env", "--data-dir", path(&dir)], &[]).await;
    assert_eq!(stdout(&second), text);
    let (secrets, _) =
        keyplane_control_plane::secrets::load(&dir, |_| None).expect("the same secrets");
    assert_eq!(secrets.peppers_text.expose_secret(), peppers);
    assert_eq!(secrets.edge_secret_text.expose_secret(), edge);
    assert_ne!(
        BASE64.encode(secrets.signing_secret.expose_secret()),
        edge,
        "the edge secret is not the audit signing secret"
    );

    // The environment wins, as it does for `serve`.
    let env_edge = BASE64.encode([7u8; 48]);
    let env_peppers = format!(
        "4:{},3:{}",
        BASE64.encode([1u8; 32]),
        BASE64.encode([2u8; 32])
    );
    let from_env = run(
        &["edge-env", "--data-dir", path(&dir)],
        &[
            ("KEYPLANE_EDGE_SECRET", &env_edge),
            ("KEYPLANE_PEPPERS", &env_peppers),
        ],
    )
    .await;
    assert!(from_env.status.success(), "{from_env:?}");
    assert_eq!(
        stdout(&from_env),
        format!("KEYPLANE_PEPPERS={env_peppers}\nKEYPLANE_EDGE_SECRET={env_edge}\n")
    );
    let short = run(
        &["edge-env", "--data-dir", path(&dir)],
        &[("KEYPLANE_EDGE_SECRET", &BASE64.encode([7u8; 16]))],
    )
    .await;
    assert!(!short.status.success(), "a 16-byte edge secret is refused");
    assert!(short.stdout.is_empty());
}

async fn edges_are_added_listed_and_removed_from_the_command_line(app: TestApp) {
    let dir = app.data_dir.path().join("cli");
    let common = [
        "--data-dir",
        path(&dir),
        "--database-url",
        &app.database_url,
    ];
    let edges = |args: &[&str]| {
        let mut all = vec!["edges"];
        all.extend_from_slice(args);
        all.extend_from_slice(&common);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let call = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &[]).await
    };

    let added = call(edges(&["add", "paris", "https://paris.example.com"])).await;
    assert!(added.status.success(), "{added:?}");
    assert!(stdout(&added).contains("registered edge paris"));
    for (name, url) in [("a b", "https://x.example.com"), ("ok", "ftp://x")] {
        let refused = call(edges(&["add", name, url])).await;
        assert!(!refused.status.success(), "{name} {url}");
    }
    let registered = app.store.edges().await.expect("edges");
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].url, "https://paris.example.com");

    app.store
        .record_push(
            "paris",
            Some(1),
            Some("the edge answered 500"),
            app.state.now(),
        )
        .await
        .expect("record");
    let list = call(edges(&["list"])).await;
    assert!(list.status.success(), "{list:?}");
    let text = stdout(&list);
    assert!(text.contains("feed head: 1"), "{text}");
    let row = text
        .lines()
        .find(|line| line.starts_with("paris\t"))
        .expect("paris is listed");
    assert_eq!(
        row,
        "paris\thttps://paris.example.com\t1\t0\t0\tnever\tthe edge answered 500"
    );

    let removed = call(edges(&["remove", "paris"])).await;
    assert!(removed.status.success(), "{removed:?}");
    assert!(app.store.edges().await.expect("edges").is_empty());
    let again = call(edges(&["remove", "paris"])).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no edge named paris"));
}

/// Starts `keyplane serve` on a free port and waits until it listens.
async fn serve(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", path(dir)];
    args.extend_from_slice(extra);
    let mut child = keyplane(&args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("keyplane serve starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if line.starts_with("keyplane listening on") {
                return;
            }
        }
        panic!("keyplane serve exited before listening");
    })
    .await
    .expect("keyplane serve listens within 60 s");
    child
}

/// SIGTERM, then the exit status: a graceful shutdown (the pusher included) exits 0.
#[cfg(unix)]
async fn terminate(mut child: tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits within 20 s")
        .expect("status");
    assert!(status.success(), "{status:?}");
}

async fn listed(dir: &Path) -> String {
    let list = run(&["edges", "list", "--data-dir", path(dir)], &[]).await;
    assert!(list.status.success(), "{list:?}");
    stdout(&list)
}

#[cfg(unix)]
#[tokio::test]
async fn serve_registers_the_edges_it_is_given() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path();
    // Plain http:// edges only in local development.
    let insecure = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path(dir),
            "--edge",
            "a=http://127.0.0.1:9",
        ],
        &[],
    )
    .await;
    assert!(!insecure.status.success(), "{insecure:?}");
    assert!(
        String::from_utf8_lossy(&insecure.stderr).contains("must be https://"),
        "{insecure:?}"
    );
    let child = serve(
        dir,
        &[
            "--local-dev",
            "--edge",
            "a=http://127.0.0.1:9",
            "--edge",
            "b=https://b.example.com/",
        ],
        &[],
    )
    .await;
    let text = listed(dir).await;
    assert!(text.contains("\na\thttp://127.0.0.1:9\t"), "{text}");
    assert!(text.contains("\nb\thttps://b.example.com/\t"), "{text}");
    terminate(child).await;

    // From the environment, comma-separated; a restart with a new URL moves the edge.
    let child = serve(
        dir,
        &[],
        &[
            (
                "KEYPLANE_EDGES",
                "c=http://127.0.0.1:10,a=http://127.0.0.1:11",
            ),
            ("KEYPLANE_LOCAL_DEV", "true"),
        ],
    )
    .await;
    let text = listed(dir).await;
    assert!(text.contains("\na\thttp://127.0.0.1:11\t"), "{text}");
    assert!(text.contains("\nc\thttp://127.0.0.1:10\t"), "{text}");
    terminate(child).await;

    let refused = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path(dir),
            "--edge",
            "no-url",
        ],
        &[],
    )
    .await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("NAME=URL"),
        "{refused:?}"
    );
}

async fn users_add_prints_a_one_time_owner_link(app: TestApp) {
    use crate::helpers::people::token_of;
    let dir = app.data_dir.path().join("cli");
    // The server's own secrets: the audit record the command writes is sealed with them.
    let secret = |name: &str| {
        crate::fixed_secrets::secrets_env(name)
            .expect("a fixed secret")
            .expose_secret()
            .to_owned()
    };
    let env = [
        ("KEYPLANE_PEPPERS", secret("KEYPLANE_PEPPERS")),
        ("KEYPLANE_SIGNING_SECRET", secret("KEYPLANE_SIGNING_SECRET")),
        ("KEYPLANE_EDGE_SECRET", secret("KEYPLANE_EDGE_SECRET")),
        (
            "KEYPLANE_PUBLIC_URL",
            "https://keys.example.com/".to_owned(),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = run(
        &[
            "users",
            "add",
            "--email",
            "not an email",
            "--data-dir",
            path(&dir),
            "--database-url",
            &app.database_url,
        ],
        &env,
    )
    .await;
    assert!(!refused.status.success());
    let added = run(
        &[
            "users",
            "add",
            "--email",
            "Second.Owner@Example.com",
            "--data-dir",
            path(&dir),
            "--database-url",
            &app.database_url,
        ],
        &env,
    )
    .await;
    assert!(added.status.success(), "{added:?}");
    let printed = stdout(&added);
    let link = printed
        .split_whitespace()
        .find(|word| word.starts_with("https://keys.example.com/invitation#token="))
        .expect("a link under the public URL")
        .to_owned();
    // The command ran on the real clock and the test's clock is months ahead, so the link is
    // checked in the store rather than accepted: an owner invitation, valid 7 days, for the
    // normalized email, unused, found by the link's token alone.
    let digest = keyplane_control_plane::accounts::tokens::digest(token_of(&link));
    let invitation = app
        .store
        .invitation_by_token(&digest)
        .await
        .expect("readable")
        .expect("the link's invitation");
    assert!(invitation.role.is_owner());
    assert_eq!(
        invitation.email.as_deref(),
        Some("second.owner@example.com")
    );
    assert_eq!(
        invitation.expires_at.as_millis() - invitation.created_at.as_millis(),
        7 * 86_400_000
    );
    assert_eq!(invitation.accepted_at, None);
    assert_eq!(app.get("/v1/audit/verify").await.body["valid"], true);
}
