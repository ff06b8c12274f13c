//! A small SMTP server for the tests of what Keyplane emails.

use std::io::{BufRead as _, BufReader, Write as _};

use keyplane_control_plane::Config;

/// An SMTP server on a free port that takes one connection, writes what it received to
/// `mail.txt` in the data directory (whole, at once), and then stops listening; the
/// configuration sends mail through it.
pub fn one_message_smtp_server(config: &mut Config) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mail = config.data_dir.join("mail.txt");
    std::thread::spawn(move || {
        let Ok((socket, _)) = listener.accept() else {
            return;
        };
        drop(listener);
        let mut write = socket.try_clone().expect("clone");
        let mut received = String::new();
        let _ = write.write_all(b"220 test ESMTP\r\n");
        let mut in_data = false;
        for line in BufReader::new(socket).lines() {
            let Ok(line) = line else { break };
            received.push_str(&line);
            received.push('\n');
            let reply: &[u8] = if in_data {
                if line != "." {
                    continue;
                }
                in_data = false;
                b"250 queued\r\n"
            } else if line == "DATA" {
                in_data = true;
                b"354 go ahead\r\n"
            } else if line == "QUIT" {
                let _ = write.write_all(b"221 bye\r\n");
                break;
            } else {
                b"250 ok\r\n"
            };
            let _ = write.write_all(reply);
        }
        // Written aside, then renamed: a test polling for `mail.txt` never reads it half-written.
        let partial = mail.with_extension("partial");
        std::fs::write(&partial, received).expect("mail written");
        std::fs::rename(&partial, &mail).expect("mail in place");
    });
    config.people.smtp_url = Some(format!("smtp://127.0.0.1:{port}").parse().expect("url"));
    config.people.smtp_from = Some("Keyplane <keys@example.com>".into());
}
