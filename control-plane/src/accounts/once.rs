//! One submission per form: the dashboard's forms that show a key once (create, regenerate)
//! carry a random token, spent when the form is accepted. Posting the same form again — a
//! reload of the copy-once view in a browser without its script, a double click — makes nothing
//! and shows no key: the person is sent to the list, where the key made the first time is.
//!
//! Tokens are kept in this process's memory for [`KEPT_FOR`] (a form older than that is spent
//! anyway by then) and at most [`MOST`] at once (the oldest go first).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret as _;

/// How long a spent token is remembered.
pub const KEPT_FOR: Duration = Duration::from_secs(12 * 3600);
/// The most spent tokens remembered.
pub const MOST: usize = 100_000;

/// The spent tokens of this process.
#[derive(Debug, Default)]
pub struct SpentForms {
    spent: Mutex<HashMap<String, Instant>>,
}

impl SpentForms {
    /// A new form's token.
    pub fn issue() -> String {
        crate::accounts::tokens::generate()
            .map(|token| token.expose_secret().to_owned())
            .unwrap_or_default()
    }

    /// Spends `token`: `true` the first time, `false` for a token already spent or empty.
    pub fn spend(&self, token: &str, now: Instant) -> bool {
        if token.is_empty() {
            return false;
        }
        let Ok(mut spent) = self.spent.lock() else {
            return false;
        };
        if spent.len() >= MOST {
            spent.retain(|_, at| now.duration_since(*at) < KEPT_FOR);
            if spent.len() >= MOST
                && let Some(oldest) = spent
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(t, _)| t.clone())
            {
                spent.remove(&oldest);
            }
        }
        spent.insert(token.to_owned(), now).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_spent_once_and_an_empty_one_never_passes() {
        let forms = SpentForms::default();
        let token = SpentForms::issue();
        assert_eq!(token.len(), 43);
        let now = Instant::now();
        assert!(forms.spend(&token, now));
        assert!(!forms.spend(&token, now), "spent twice");
        assert!(!forms.spend("", now));
        assert!(
            forms.spend(&SpentForms::issue(), now),
            "another form is its own"
        );
    }
}
