//! Local accounts: the password rules, the login throttle, the secret tokens of sessions and
//! invitations, and the dashboard's one-submission form tokens. The HTTP side is in
//! [`crate::people`] and [`crate::dashboard`].

pub mod once;
pub mod password;
pub mod throttle;
pub mod tokens;
