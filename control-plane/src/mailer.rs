//! Invitation emails, and reminders to a key's owner that it expires soon. Sending email is
//! optional: with `KEYPLANE_SMTP_URL` (e.g.
//! `smtps://user:password@smtp.example.com:465`, or `smtp://host:25?tls=required` for
//! STARTTLS; plain `smtp://` only to a local relay) and `--smtp-from`, an invitation's link goes
//! to the invitee by email and is not shown to the inviter; without them (or when sending
//! fails) the link is shown to the inviter to hand over. The URL may hold a password: it is kept
//! as a secret and never printed.

use std::str::FromStr;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use secrecy::{ExposeSecret as _, SecretString};

/// An SMTP URL (a secret: it may hold credentials).
#[derive(Clone)]
pub struct SmtpUrl(SecretString);

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpUrl(<secret>)")
    }
}

impl FromStr for SmtpUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.starts_with("smtp://") || text.starts_with("smtps://") {
            Ok(SmtpUrl(SecretString::from(text.to_owned())))
        } else {
            Err("an SMTP URL starts with smtp:// or smtps://".into())
        }
    }
}

/// Why the mailer could not be set up or a message not sent (never naming credentials).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The URL or the sender address is unusable.
    #[error("the SMTP settings are invalid: {0}")]
    Settings(String),
    /// The server refused or could not be reached.
    #[error("sending failed: {0}")]
    Send(String),
}

/// Sends invitation emails, or knows it cannot.
#[derive(Debug, Clone)]
pub enum Mailer {
    /// No SMTP configured: links are shown to the inviter.
    Off,
    /// SMTP.
    Smtp {
        /// The transport (boxed: it is large, and most deployments have none).
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        /// The sender.
        from: Mailbox,
    },
}

impl Mailer {
    /// The mailer the settings describe (both or neither must be given).
    pub fn new(url: Option<&SmtpUrl>, from: Option<&str>) -> Result<Self, MailError> {
        match (url, from) {
            (None, None) => Ok(Mailer::Off),
            (Some(url), Some(from)) => {
                let from: Mailbox = from
                    .parse()
                    .map_err(|_| MailError::Settings("--smtp-from is not an address".into()))?;
                let transport =
                    AsyncSmtpTransport::<Tokio1Executor>::from_url(url.0.expose_secret())
                        .map_err(|_| {
                            MailError::Settings("KEYPLANE_SMTP_URL cannot be used".into())
                        })?
                        .timeout(Some(Duration::from_secs(10)))
                        .build();
                Ok(Mailer::Smtp {
                    transport: Box::new(transport),
                    from,
                })
            }
            _ => Err(MailError::Settings(
                "give both KEYPLANE_SMTP_URL and --smtp-from, or neither".into(),
            )),
        }
    }

    /// Whether emails are sent.
    pub fn is_on(&self) -> bool {
        matches!(self, Mailer::Smtp { .. })
    }

    /// Emails `to` the invitation into `org_name` with `role`, and its `link`.
    pub async fn send_invitation(
        &self,
        to: &str,
        org_name: &str,
        role: &str,
        link: &str,
    ) -> Result<(), MailError> {
        let Mailer::Smtp { from, .. } = self else {
            return Err(MailError::Settings("no SMTP server is configured".into()));
        };
        let to: Mailbox = to
            .parse()
            .map_err(|_| MailError::Send("the invitee's address is not usable".into()))?;
        let body = [
            format!("You are invited to join {org_name} on Keyplane as {role}."),
            String::new(),
            "Open this link within 7 days to accept (it works once):".to_owned(),
            link.to_owned(),
            String::new(),
            "If you did not expect this, ignore this email.".to_owned(),
            String::new(),
        ]
        .join("\r\n");
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(format!("Your invitation to {org_name}"))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|error| MailError::Send(error.to_string()))?;
        self.deliver(message).await
    }

    /// Emails `to` (a key's owner) that the key `name` (`truncated`) expires at `expires_at`.
    pub async fn send_expiry_reminder(
        &self,
        to: &str,
        name: &str,
        truncated: &str,
        expires_at: &str,
        within: &str,
    ) -> Result<(), MailError> {
        let Mailer::Smtp { from, .. } = self else {
            return Err(MailError::Settings("no SMTP server is configured".into()));
        };
        let to: Mailbox = to
            .parse()
            .map_err(|_| MailError::Send("the owner's address is not usable".into()))?;
        let body = [
            format!("Your API key \"{name}\" ({truncated}) expires in {within}, at {expires_at}."),
            String::new(),
            "Rotate it before then so nothing that uses it stops working:".to_owned(),
            "keyplane keys rotate <key id> --grace 7d, or Rotate on the key's page.".to_owned(),
            String::new(),
        ]
        .join("\r\n");
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(format!("Your API key \"{name}\" expires in {within}"))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|error| MailError::Send(error.to_string()))?;
        self.deliver(message).await
    }

    async fn deliver(&self, message: Message) -> Result<(), MailError> {
        let Mailer::Smtp { transport, .. } = self else {
            return Err(MailError::Settings("no SMTP server is configured".into()));
        };
        transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|error| MailError::Send(error.to_string()))
    }
}

#[cfg(test)]
mod tests;
