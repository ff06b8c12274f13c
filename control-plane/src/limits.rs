//! Bounds on what one request may send: the body, applied before anything reads it, and the
//! lengths of values several resources take (their validators and the OpenAPI document alike).

/// Largest request body accepted, in bytes (413 `payload_too_large` past it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest URL accepted (a portal link's return URL, a logo, a webhook endpoint).
pub const MAX_URL_LEN: usize = 2048;

/// The longest name a person gives, in characters: a key's, an organization's display name.
pub const MAX_NAME_CHARS: usize = 100;

/// The longest email accepted, in bytes (once trimmed and lowercased).
pub const MAX_EMAIL_LEN: usize = 254;
