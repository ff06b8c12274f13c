//! Public identifiers: `key_…` for keys, `org_…` for organizations, `req_…` for requests,
//! `hst_…` for the history of a replication feed, `whk_…` for webhook endpoints and `evt_…` for
//! the events sent to them.
//!
//! An id is 128 random bits shown as a tag and 22 fixed-width base62 characters (a request id
//! the edge makes is time-ordered instead: 48 bits of its time, then 80 random bits, see
//! [`RequestId::generate_ordered`]; any 128 bits still parse as one). Ids are not
//! secrets: they appear in URLs, logs, audit records and the edge's identity headers. In memory
//! they are 16 bytes, which keeps the edge's key table small.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::base62;
use crate::time::Timestamp;

const ID_DIGITS: usize = 22;

/// Why a string is not a valid id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a valid {kind} id (expected `{tag}_` followed by {ID_DIGITS} base62 characters)")]
pub struct InvalidId {
    kind: &'static str,
    tag: &'static str,
}

macro_rules! public_id {
    ($(#[$doc:meta])* $name:ident, $tag:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            /// The tag before the underscore.
            pub const TAG: &'static str = $tag;

            /// A fresh random id from the OS CSPRNG.
            pub fn generate() -> Result<Self, getrandom::Error> {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes)?;
                Ok($name(bytes))
            }

            /// The id for 16 raw bytes (as stored by the table codec and databases).
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(bytes)
            }

            /// The 16 raw bytes.
            pub const fn to_bytes(self) -> [u8; 16] {
                self.0
            }

            /// Parses the text form strictly.
            pub fn parse(text: &str) -> Result<Self, InvalidId> {
                let invalid = InvalidId { kind: $kind, tag: $tag };
                let digits = text
                    .strip_prefix($tag)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .filter(|digits| digits.len() == ID_DIGITS)
                    .ok_or(invalid.clone())?;
                let value = base62::decode(digits.as_bytes()).ok_or(invalid)?;
                Ok($name(value.to_be_bytes()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut digits = [0u8; ID_DIGITS];
                base62::encode_fixed(u128::from_be_bytes(self.0), &mut digits);
                f.write_str($tag)?;
                f.write_str("_")?;
                // Base62 digits are ASCII.
                f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

public_id!(
    /// A key's public id (`key_…`), used in URLs, logs, audit records and identity headers.
    KeyId,
    "key",
    "key"
);
public_id!(
    /// An organization's id (`org_…`); every key belongs to exactly one.
    OrgId,
    "org",
    "organization"
);

public_id!(
    /// A person's id (`usr_…`): a local account or a host product's user.
    UserId,
    "usr",
    "user"
);
public_id!(
    /// A sign-in session's public id (`ses_…`), as its owner sees it in the list of sessions
    /// (the cookie carries a separate secret token).
    SessionId,
    "ses",
    "session"
);
public_id!(
    /// An invitation's id (`inv_…`) to join an organization (the link carries a separate
    /// secret token).
    InvitationId,
    "inv",
    "invitation"
);

public_id!(
    /// A request's id (`req_…`), in error bodies, response headers, audit records and the
    /// identity the edge forwards, so one request can be followed through every log.
    RequestId,
    "req",
    "request"
);

impl RequestId {
    /// A fresh request id that sorts by time: the first 6 bytes are `at` in milliseconds since
    /// the epoch (big-endian, clamped to 0..2^48, which lasts until the year 10889), the other 10
    /// random from the OS CSPRNG. Ids made this way land next to each other in the usage
    /// table's request-id index instead of on a random page of it, so a batch writes fewer
    /// pages; 80 random bits keep two ids of the same millisecond apart. Nothing
    /// reads the time back: an id is still only compared for equality, and the
    /// control plane accepts ids of any form (older edges send 128 random bits).
    pub fn generate_ordered(at: Timestamp) -> Result<Self, getrandom::Error> {
        let mut random = [0u8; 10];
        getrandom::fill(&mut random)?;
        Ok(Self::ordered(at, random))
    }

    /// The time-ordered id of [`generate_ordered`](Self::generate_ordered) for `random`
    /// drawn by the caller (80 bits from a CSPRNG: the edge draws them from a pool it fills
    /// from the OS CSPRNG, one call for many requests).
    pub fn ordered(at: Timestamp, random: [u8; 10]) -> Self {
        let mut bytes = [0u8; 16];
        let millis = at.as_millis().clamp(0, (1 << 48) - 1).cast_unsigned();
        bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        bytes[6..].copy_from_slice(&random);
        RequestId(bytes)
    }
}

/// The request id written where a fresh [`RequestId`] could not be made (no randomness
/// available): error bodies and headers still carry an id field, and this one says why it is
/// not a real one.
pub const UNAVAILABLE_REQUEST_ID: &str = "req_unavailable";

public_id!(
    /// The identity of one history of the replication feed (`hst_…`), made with the control
    /// plane's database: an edge that meets another history (a re-created database) drops its
    /// table instead of applying changes whose sequence numbers it has already seen.
    HistoryId,
    "hst",
    "feed history"
);

public_id!(
    /// A webhook endpoint's id (`whk_…`): one URL of an organization that receives events.
    WebhookId,
    "whk",
    "webhook endpoint"
);

public_id!(
    /// An event's id (`evt_…`), sent as `webhook-id`: the same for every attempt and every
    /// endpoint, so a receiver can drop a delivery it has already handled.
    EventId,
    "evt",
    "event"
);

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id = KeyId::generate().expect("CSPRNG");
        let text = id.to_string();
        assert!(text.starts_with("key_"));
        assert_eq!(text.len(), 4 + ID_DIGITS);
        assert_eq!(KeyId::parse(&text), Ok(id));
        let json = serde_json::to_string(&id).expect("serializes");
        assert_eq!(
            serde_json::from_str::<KeyId>(&json).expect("deserializes"),
            id
        );
    }

    #[test]
    fn extreme_values_round_trip() {
        for bytes in [[0u8; 16], [0xff; 16]] {
            let id = OrgId::from_bytes(bytes);
            assert_eq!(OrgId::parse(&id.to_string()), Ok(id));
        }
    }

    #[test]
    fn ordered_request_ids_sort_by_time_and_round_trip() {
        let early = RequestId::generate_ordered(Timestamp(1_765_000_000_000)).expect("CSPRNG");
        let same = RequestId::generate_ordered(Timestamp(1_765_000_000_000)).expect("CSPRNG");
        let later = RequestId::generate_ordered(Timestamp(1_765_000_000_001)).expect("CSPRNG");
        assert!(early < later && same < later);
        assert_ne!(
            early, same,
            "80 random bits tell one millisecond's ids apart"
        );
        assert_eq!(
            early.to_bytes()[..6],
            1_765_000_000_000u64.to_be_bytes()[2..]
        );
        assert_eq!(RequestId::parse(&later.to_string()), Ok(later));
        // Times outside 48 bits are clamped, never wrapped.
        let before = RequestId::generate_ordered(Timestamp(-5)).expect("CSPRNG");
        assert_eq!(before.to_bytes()[..6], [0; 6]);
        let after = RequestId::generate_ordered(Timestamp(i64::MAX)).expect("CSPRNG");
        assert_eq!(after.to_bytes()[..6], [0xff; 6]);
    }

    #[test]
    fn ids_of_the_wrong_kind_or_shape_are_rejected() {
        let org = OrgId::generate().expect("CSPRNG").to_string();
        assert!(KeyId::parse(&org).is_err());
        assert!(KeyId::parse("key_").is_err());
        assert!(KeyId::parse("key_0000000000000000000000x").is_err());
        assert!(KeyId::parse("key_000000000000000000000-").is_err());
        // 22 base62 digits can exceed 128 bits: such a string is not an id.
        assert!(KeyId::parse(&format!("key_{}", "z".repeat(22))).is_err());
        assert!(serde_json::from_str::<KeyId>("\"org_0000000000000000000000\"").is_err());
    }
}
