//! The password rules (NIST SP 800-63B): at least 12 characters, at most 256, no composition
//! rules, and none of the 1,000 most common passwords (`common_passwords.txt`: the first 1,000
//! entries of the password frequency list shipped by zxcvbn 4.4.2, MIT licence, Dropbox),
//! compared without regard to case; nor the account's own email.

use std::collections::HashSet;
use std::sync::OnceLock;

/// Fewest characters a password may have.
pub const MIN_CHARS: usize = 12;
/// Most characters a password may have (long passphrases welcome; the bound keeps hashing
/// input bounded).
pub const MAX_CHARS: usize = 256;

const COMMON: &str = include_str!("common_passwords.txt");

/// Why a password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    /// Too short.
    #[error("a password needs at least {MIN_CHARS} characters")]
    TooShort,
    /// Too long.
    #[error("a password has at most {MAX_CHARS} characters")]
    TooLong,
    /// One of the most common passwords.
    #[error("this password is one of the most common ones; choose another")]
    Common,
    /// The account's email.
    #[error("a password must not be the account's email")]
    IsEmail,
}

fn common() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    })
}

/// Checks a new password for the account with `email`.
pub fn check(password: &str, email: Option<&str>) -> Result<(), WeakPassword> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(WeakPassword::TooShort);
    }
    if chars > MAX_CHARS {
        return Err(WeakPassword::TooLong);
    }
    let lowered = password.to_lowercase();
    if common().contains(lowered.as_str()) {
        return Err(WeakPassword::Common);
    }
    if email.is_some_and(|email| email.eq_ignore_ascii_case(password)) {
        return Err(WeakPassword::IsEmail);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_the_thousand_most_common_passwords() {
        assert_eq!(common().len(), 1000);
        assert!(common().contains("123456"));
        assert!(common().contains("password"));
    }

    #[test]
    fn length_is_the_rule_not_composition() {
        assert_eq!(check("short", None), Err(WeakPassword::TooShort));
        assert_eq!(check("elevenchars", None), Err(WeakPassword::TooShort));
        // Twelve characters count as characters, not bytes.
        assert_eq!(check("ééééééééééé", None), Err(WeakPassword::TooShort));
        assert_eq!(check("éééééééééééé", None), Ok(()));
        assert_eq!(check("correct horse battery staple", None), Ok(()));
        assert_eq!(check("alllowercaseletters", None), Ok(()));
        assert_eq!(check(&"x".repeat(257), None), Err(WeakPassword::TooLong));
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case() {
        assert_eq!(check("1qaz2wsx3edc", None), Err(WeakPassword::Common));
        assert_eq!(check("123QWEASDZXC", None), Err(WeakPassword::Common));
    }

    #[test]
    fn the_email_is_not_a_password() {
        assert_eq!(
            check("Ada@Example.com", Some("ada@example.com")),
            Err(WeakPassword::IsEmail)
        );
    }
}
