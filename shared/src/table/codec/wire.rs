//! The byte level of the table codecs: a writer, a bounds-checked reader, and the checksum
//! each format ends with.
//!
//! A snapshot ends with XXH3-64 of everything before it (8 bytes): a snapshot is the whole
//! table, 48 MB at 1M keys, checked on every cold start, and XXH3 runs several times faster
//! than CRC32 in wasm32, where there is no CRC instruction. A change batch, a few KB, ends with
//! CRC32 (4 bytes).

use super::{CodecError, KeyStatus, NEVER, SNAPSHOT_MAGIC};
use crate::key::Environment;
use crate::ratelimit::RateLimit;
use crate::scope::{MAX_SCOPES, Scope, ScopeSet};
use crate::time::Timestamp;

/// The checksum a format ends with, by its magic.
fn checksum_len(magic: &[u8]) -> usize {
    if magic == SNAPSHOT_MAGIC { 8 } else { 4 }
}

fn checksum(magic: &[u8], body: &[u8]) -> Vec<u8> {
    if magic == SNAPSHOT_MAGIC {
        xxhash_rust::xxh3::xxh3_64(body).to_le_bytes().to_vec()
    } else {
        crc32fast::hash(body).to_le_bytes().to_vec()
    }
}

/// Appends the checksum that the format `bytes` starts with (its magic) ends in: for tools and
/// tests that build or alter an encoding by hand. Bytes of neither format get a CRC32.
pub fn seal(bytes: &mut Vec<u8>) {
    let magic = bytes.get(..4).unwrap_or_default().to_vec();
    let sum = checksum(&magic, bytes);
    bytes.extend_from_slice(&sum);
}

pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    pub(super) fn bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    pub(super) fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    pub(super) fn u16(&mut self, value: u16) {
        self.bytes(&value.to_le_bytes());
    }
    pub(super) fn u32(&mut self, value: u32) {
        self.bytes(&value.to_le_bytes());
    }
    pub(super) fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }
    pub(super) fn i64(&mut self, value: i64) {
        self.bytes(&value.to_le_bytes());
    }
    pub(super) fn rate_limit(&mut self, limit: Option<RateLimit>) {
        let (rpm, burst) = limit.map_or((0, 0), |l| (l.requests_per_minute(), l.burst()));
        self.u32(rpm);
        self.u16(burst);
    }
    pub(super) fn scope_set(&mut self, set: &ScopeSet) {
        // A set holds at most MAX_SCOPES (64) scopes of at most 129 bytes each.
        self.u8(set.len() as u8);
        for scope in set.as_slice() {
            let text = scope.to_string();
            self.u8(text.len() as u8);
            self.bytes(text.as_bytes());
        }
    }
    /// The bytes, sealed with their format's checksum.
    pub(super) fn finish(mut self) -> Vec<u8> {
        seal(&mut self.0);
        self.0
    }
}

/// Checks that `bytes` start with `magic` and the `expected` version byte;
/// [`CodecError::Truncated`] when they are a beginning of those.
pub(super) fn check_header(bytes: &[u8], magic: &[u8; 4], expected: u8) -> Result<(), CodecError> {
    if bytes.len() < 4 || &bytes[..4] != magic {
        return Err(if bytes.len() < 4 && magic.starts_with(bytes) {
            CodecError::Truncated
        } else {
            CodecError::BadMagic
        });
    }
    let version = *bytes.get(4).ok_or(CodecError::Truncated)?;
    if version != expected {
        return Err(CodecError::UnsupportedVersion(version));
    }
    Ok(())
}

/// A bounds-checked cursor over the body between the header and the checksum.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks magic, version and checksum, and positions after the version byte.
    pub(super) fn open(bytes: &'a [u8], magic: &[u8; 4], expected: u8) -> Result<Self, CodecError> {
        check_header(bytes, magic, expected)?;
        let sum_len = checksum_len(magic);
        if bytes.len() < 5 + sum_len {
            return Err(CodecError::Truncated);
        }
        let (body, stored) = bytes.split_at(bytes.len() - sum_len);
        if checksum(magic, body) != stored {
            return Err(CodecError::ChecksumMismatch);
        }
        Ok(Reader { rest: &body[5..] })
    }

    /// A reader over bytes whose header and checksum are not its business (a snapshot's
    /// prelude, read as it arrives).
    pub(super) fn unchecked(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// Bytes not read yet.
    pub(super) fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.rest.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(super) fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(super) fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A u32 count of items at least `min_item_len` bytes each, checked against what remains so a
    /// corrupt count cannot make the decoder allocate more than the input size.
    pub(super) fn count(&mut self, min_item_len: usize) -> Result<usize, CodecError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(min_item_len) > self.rest.len() {
            return Err(CodecError::Truncated);
        }
        Ok(count)
    }

    pub(super) fn env(&mut self) -> Result<Environment, CodecError> {
        Environment::from_byte(self.u8()?).ok_or(CodecError::Corrupt("unknown environment"))
    }

    pub(super) fn status(&mut self) -> Result<KeyStatus, CodecError> {
        KeyStatus::from_byte(self.u8()?).ok_or(CodecError::Corrupt("unknown key status"))
    }

    pub(super) fn expiry(&mut self) -> Result<Option<Timestamp>, CodecError> {
        let millis = self.i64()?;
        Ok((millis != NEVER).then_some(Timestamp(millis)))
    }

    pub(super) fn rate_limit(&mut self) -> Result<Option<RateLimit>, CodecError> {
        match (self.u32()?, self.u16()?) {
            (0, 0) => Ok(None),
            (rpm, burst) => RateLimit::new(rpm, u32::from(burst))
                .map(Some)
                .map_err(|_| CodecError::Corrupt("invalid rate limit")),
        }
    }

    /// A scope set, which must be in canonical form (sorted, no duplicates).
    pub(super) fn scope_set(&mut self) -> Result<ScopeSet, CodecError> {
        let count = usize::from(self.u8()?);
        if count > MAX_SCOPES {
            return Err(CodecError::Corrupt("too many scopes"));
        }
        let mut scopes = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(self.u8()?);
            let text = std::str::from_utf8(self.take(len)?)
                .map_err(|_| CodecError::Corrupt("scope is not UTF-8"))?;
            scopes.push(Scope::parse(text).map_err(|_| CodecError::Corrupt("invalid scope"))?);
        }
        let set = ScopeSet::new(scopes.iter().cloned())
            .map_err(|_| CodecError::Corrupt("too many scopes"))?;
        if set.as_slice() != scopes.as_slice() {
            return Err(CodecError::Corrupt("scope set is not in canonical order"));
        }
        Ok(set)
    }

    pub(super) fn end(self) -> Result<(), CodecError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes)
        }
    }
}
