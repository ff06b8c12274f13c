//! The mailer against a small SMTP server in the test: what it sends, and its settings.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

use super::*;

/// A one-connection SMTP server that accepts one message; what it received.
async fn smtp_server() -> (u16, Arc<Mutex<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received = Arc::new(Mutex::new(String::new()));
    let log = received.clone();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 test ESMTP\r\n").await.expect("greet");
        let mut in_data = false;
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().expect("lock").push_str(&format!("{line}\n"));
            let reply: &[u8] = if in_data {
                if line == "." {
                    in_data = false;
                    b"250 queued\r\n"
                } else {
                    continue;
                }
            } else if line.starts_with("EHLO") || line.starts_with("HELO") {
                b"250 test\r\n"
            } else if line == "DATA" {
                in_data = true;
                b"354 go ahead\r\n"
            } else if line == "QUIT" {
                write.write_all(b"221 bye\r\n").await.ok();
                break;
            } else {
                b"250 ok\r\n"
            };
            write.write_all(reply).await.expect("reply");
        }
    });
    (port, received)
}

#[tokio::test]
async fn an_invitation_email_carries_the_link_to_the_invitee() {
    let (port, received) = smtp_server().await;
    let url: SmtpUrl = format!("smtp://127.0.0.1:{port}").parse().expect("url");
    let mailer = Mailer::new(Some(&url), Some("Keyplane <keys@example.com>")).expect("mailer");
    assert!(mailer.is_on());
    mailer
        .send_invitation(
            "dev@example.com",
            "Acme",
            "developer",
            "https://keys.example.com/invitation#token=abc",
        )
        .await
        .expect("sent");
    let text = received.lock().expect("lock").clone();
    assert!(text.contains("RCPT TO:<dev@example.com>"), "{text}");
    assert!(text.contains("MAIL FROM:<keys@example.com>"), "{text}");
    assert!(text.contains("invitation#token=abc"), "{text}");
    assert!(text.contains("Subject: Your invitation to Acme"), "{text}");
}

#[tokio::test]
async fn a_server_that_is_down_is_an_error_not_a_hang() {
    let url: SmtpUrl = "smtp://127.0.0.1:1".parse().expect("url");
    let mailer = Mailer::new(Some(&url), Some("keys@example.com")).expect("mailer");
    let sent = mailer
        .send_invitation(
            "dev@example.com",
            "Acme",
            "viewer",
            "https://x/invitation#token=t",
        )
        .await;
    assert!(matches!(sent, Err(MailError::Send(_))));
}

#[test]
fn settings_come_in_pairs_and_the_url_stays_secret() {
    assert!(matches!(Mailer::new(None, None), Ok(Mailer::Off)));
    let url: SmtpUrl = "smtps://user:hunter2-password@smtp.example.com:465"
        .parse()
        .expect("url");
    assert!(Mailer::new(Some(&url), None).is_err());
    assert!(Mailer::new(None, Some("keys@example.com")).is_err());
    assert!(Mailer::new(Some(&url), Some("not an address")).is_err());
    assert!(!format!("{url:?}").contains("hunter2"));
    let mailer = Mailer::new(Some(&url), Some("keys@example.com")).expect("mailer");
    assert!(!format!("{mailer:?}").contains("hunter2"));
    assert!("http://x".parse::<SmtpUrl>().is_err());
}
