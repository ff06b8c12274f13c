//! The secret-scanning patterns for Keyplane keys, as the README publishes them (a test keeps
//! the two equal and checks generated keys against them).
//!
//! A key is `<prefix>_<live|test>_` and 38 base62 characters: 32 random, then a 6-character
//! CRC32 of everything before. No regular expression can check the CRC32, so the patterns match
//! the shape; the checksum is what the key parser (and so the leak endpoint) checks, which keeps
//! a scanner's false positives from ever revoking anything.

/// Keys of a deployment with the default prefix `sk`.
pub const DEFAULT_PREFIX_PATTERN: &str = r"\bsk_(?:live|test)_[0-9A-Za-z]{38}\b";

/// Keys of any deployment (prefixes are 1 to 16 lowercase letters or digits).
pub const ANY_PREFIX_PATTERN: &str = r"\b[a-z0-9]{1,16}_(?:live|test)_[0-9A-Za-z]{38}\b";
