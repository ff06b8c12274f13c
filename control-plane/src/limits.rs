//! Bounds on what one request may send, applied before anything reads it.

/// Largest request body accepted, in bytes (413 `payload_too_large` past it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
