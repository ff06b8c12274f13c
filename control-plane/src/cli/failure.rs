//! What a client command can fail with, and the exit code each failure means to a script.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | usage error: a bad flag or value (clap's own usage errors included), a missing `KEYPLANE_URL` or credential, or an answer of 400/405/413/415/422 |
//! | 2 | not found (404) |
//! | 3 | refused (401, 403) |
//! | 4 | conflict (409) |
//! | 5 | rate limited (429) |
//! | 6 | server or network error (5xx, no answer, an answer that is not the API's) |
//! | 7 | a check failed: `audit verify` found the chain broken |
//! | 8 | a key was made or rotated but its new key could not be printed (stdout closed, or a write failed): stderr names it |

use std::fmt;

/// The exit codes, as documented in the module header and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// A bad flag or value.
    Usage = 1,
    /// 404.
    NotFound = 2,
    /// 401 or 403.
    Refused = 3,
    /// 409.
    Conflict = 4,
    /// 429.
    RateLimited = 5,
    /// 5xx or no answer.
    Unavailable = 6,
    /// `audit verify` found the chain broken.
    CheckFailed = 7,
    /// A new key was made but could not be printed.
    KeyNotShown = 8,
}

impl Exit {
    /// The code for an answer's HTTP status.
    pub fn for_status(status: u16) -> Self {
        match status {
            404 | 410 => Exit::NotFound,
            401 | 403 => Exit::Refused,
            409 => Exit::Conflict,
            429 => Exit::RateLimited,
            400..=499 => Exit::Usage,
            _ => Exit::Unavailable,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit as u8)
    }
}

/// An API error answer: its status, and the `{"error":{code, message, request_id}}` body.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    /// The HTTP status.
    pub status: u16,
    /// The API's error code (`not_found`, `conflict`, …), or `http_<status>` when the answer
    /// was not the API's JSON (a proxy's error page).
    pub code: String,
    /// The API's message.
    pub message: String,
    /// The request id (`x-request-id`), to quote when reporting a problem.
    pub request_id: Option<String>,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, HTTP {}", self.message, self.code, self.status)?;
        if let Some(id) = &self.request_id {
            write!(f, ", request {id}")?;
        }
        write!(f, ")")
    }
}

/// Everything a client command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad flag, value or missing setting.
    #[error("{0}")]
    Usage(String),
    /// The API answered with an error.
    #[error("{0}")]
    Api(ApiFailure),
    /// No answer from the control plane.
    #[error("cannot reach the control plane at {url}: {detail}")]
    Network {
        /// The URL called.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from the control plane: {0}")]
    Unexpected(String),
    /// A check the command runs failed (the audit chain is broken).
    #[error("{0}")]
    CheckFailed(String),
    /// Writing the output failed (other than a closed pipe).
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    /// Keys were made or rotated, but printing their new keys failed: they are not shown again.
    #[error(
        "{} ({cause}), and will not be shown again: revoke, or rotate again to get another",
        not_printed(made)
    )]
    KeyNotShown {
        /// The new keys' ids (`key_…`).
        made: Vec<String>,
        /// Why printing failed.
        cause: Box<CliError>,
    },
}

/// What [`CliError::KeyNotShown`] says of the keys `ids` names.
fn not_printed(ids: &[String]) -> String {
    match ids {
        [one] => format!("{one} was made, but its key could not be printed"),
        [rest @ .., last] => format!(
            "{} and {last} were made, but their keys could not be printed",
            rest.join(", ")
        ),
        [] => "a key could not be printed".to_owned(),
    }
}

impl CliError {
    /// The exit code a script sees.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Usage(_) => Exit::Usage,
            CliError::Api(failure) => Exit::for_status(failure.status),
            CliError::Network { .. } | CliError::Unexpected(_) | CliError::Output(_) => {
                Exit::Unavailable
            }
            CliError::CheckFailed(_) => Exit::CheckFailed,
            CliError::KeyNotShown { .. } => Exit::KeyNotShown,
        }
    }
}

/// A usage error.
pub fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_codes() {
        let cases = [
            (400, 1),
            (405, 1),
            (413, 1),
            (415, 1),
            (422, 1),
            (404, 2),
            (401, 3),
            (403, 3),
            (409, 4),
            (429, 5),
            (500, 6),
            (502, 6),
            (503, 6),
        ];
        for (status, code) in cases {
            assert_eq!(Exit::for_status(status) as u8, code, "{status}");
        }
    }
}
