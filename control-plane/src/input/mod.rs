//! Request input shared by every resource: times (RFC 3339 in and out), client addresses and
//! page sizes.
//! Each parser answers with a 400 that names what is wrong; resource-specific input (key names,
//! scopes, usage windows) stays with its resource.

pub mod ip;
pub mod page;
pub mod time;

use crate::error::ApiError;

/// A 400 `invalid_request` with `message`.
fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidRequest(message.into())
}
