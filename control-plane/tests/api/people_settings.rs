//! People with the operator's settings: invitation emails (with SMTP configured the link goes
//! to the invitee and is not shown; when sending fails the invitation still stands and the link
//! is shown instead), and a public URL behind a proxy that rewrites `Host`.

use axum::http::{Method, StatusCode};
use keyplane_control_plane::Config;
use serde_json::json;

use crate::backends;
use crate::helpers::TestApp;
use crate::helpers::mail::one_message_smtp_server;

backends!(
    config = with_a_one_message_smtp_server;
    an_invitation_is_emailed_and_a_failed_email_falls_back_to_the_link,
    behind_a_proxy_the_public_url_is_the_pages_origin,
);

const PUBLIC_URL: &str = "https://keys.example.com";

/// The one-message SMTP server ([`one_message_smtp_server`]) and the public URL.
fn with_a_one_message_smtp_server(config: &mut Config) {
    one_message_smtp_server(config);
    config.people.public_url = Some(PUBLIC_URL.into());
}

async fn behind_a_proxy_the_public_url_is_the_pages_origin(app: TestApp) {
    // The setup link starts with the public URL.
    assert!(
        app.setup_link
            .starts_with("https://keys.example.com/invitation#token=")
    );
    let owner = app.first_owner().await;
    let body = || Some(json!({"name": "k", "environment": "test"}));
    // The proxy forwards `Host: keyplane.test`; the page's origin is the public URL.
    for (origin, status) in [
        (PUBLIC_URL, StatusCode::CREATED),
        (
            "https://keys.example.com.evil.example",
            StatusCode::FORBIDDEN,
        ),
        ("https://evil.example", StatusCode::FORBIDDEN),
    ] {
        let reply = app
            .browse(
                Method::POST,
                "/v1/keys",
                Some(&owner.cookie),
                Some(origin),
                Some(&owner.csrf),
                body(),
            )
            .await;
        assert_eq!(reply.status, status, "{origin}: {:?}", reply.body);
    }
}

async fn an_invitation_is_emailed_and_a_failed_email_falls_back_to_the_link(app: TestApp) {
    // The setup link is printed, never emailed.
    assert!(app.setup_link.contains("#token="));
    let owner = app.first_owner().await;
    let invite = |email: &'static str| {
        app.as_browser(
            &owner,
            Method::POST,
            "/v1/invitations",
            Some(json!({"email": email, "role": "developer"})),
        )
    };
    let emailed = invite("dev@example.com").await;
    assert_eq!(emailed.status, StatusCode::CREATED, "{:?}", emailed.body);
    assert_eq!(emailed.body["email_sent"], true, "{:?}", emailed.body);
    assert_eq!(
        emailed.body["link"],
        json!(null),
        "the inviter does not see the link"
    );
    let mail_file = app.data_dir.path().join("mail.txt");
    crate::helpers::until("the mail server wrote the message", || async {
        mail_file.exists()
    })
    .await;
    let mail = std::fs::read_to_string(&mail_file).expect("mail");
    assert!(mail.contains("RCPT TO:<dev@example.com>"), "{mail}");
    let body = quoted_printable(&mail);
    let link = body
        .split_whitespace()
        .find(|word| word.contains("/invitation#token="))
        .expect("the link in the message")
        .to_owned();
    let developer = app.accept(&link, "dev@example.com", "Dan Dev").await;
    assert!(!developer.user_id.is_empty());
    // The server is gone now: the invitation is still made, and its link shown.
    let fallback = invite("vic@example.com").await;
    assert_eq!(fallback.status, StatusCode::CREATED);
    assert_eq!(fallback.body["email_sent"], false);
    assert!(fallback.body["email_error"].as_str().is_some());
    let link = fallback.body["link"]
        .as_str()
        .expect("the link, shown")
        .to_owned();
    app.accept(&link, "vic@example.com", "Vic").await;
}

/// The text of a quoted-printable body (soft line breaks joined, `=XX` decoded).
fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
