//! Local accounts: the password rules, the login throttle and the secret tokens of sessions and
//! invitations. The HTTP side is in [`crate::people`].

pub mod password;
pub mod throttle;
pub mod tokens;
