//! The JSON bodies of the keys API: what callers send and what they get back.
//!
//! Request bodies refuse unknown fields, so a misspelt field is an error rather than a setting
//! silently ignored. Times are RFC 3339 strings in UTC.

use keyplane_shared::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::owners::{People, PersonView};
use crate::input::time::rfc3339;
use crate::openapi::formats::{
    ClientAddressFormat, ClientAddressListFormat, NameFormat, ScopeFormat, format_type,
};
use crate::store::{KeyRecord, KeyState, RevocationReason};

/// live or test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentName {
    /// Production traffic.
    Live,
    /// Test traffic.
    Test,
}

impl From<EnvironmentName> for keyplane_shared::Environment {
    fn from(name: EnvironmentName) -> Self {
        match name {
            EnvironmentName::Live => keyplane_shared::Environment::Live,
            EnvironmentName::Test => keyplane_shared::Environment::Test,
        }
    }
}

/// The words an expiry ([`super::input::expiry`]) takes besides a time: `never` and the presets
/// counted from now.
pub const EXPIRY_PRESETS: [&str; 6] = ["1h", "7d", "30d", "90d", "1y", "never"];

/// Most metadata entries.
pub const MAX_METADATA_ENTRIES: usize = 32;

format_type!(
    /// A key's expiry in the document: a preset counted from now, `never`, or a time.
    ExpiryFormat,
    "Expiry",
    utoipa::openapi::schema::AnyOfBuilder::new()
        .description(Some(
            "`1h`, `7d`, `30d`, `90d`, `1y` (counted from now), `never`, or an RFC 3339 time in \
             the future",
        ))
        .item(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .enum_values(Some(EXPIRY_PRESETS)),
        )
        .item(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::DateTime,
                ))),
        )
        .into()
);

format_type!(
    /// A key's metadata in the document: the caller's own labels.
    MetadataFormat,
    "Metadata",
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Object)
        .description(Some(
            "Your own labels: a JSON object of at most 32 entries and 4 KiB serialized",
        ))
        .max_properties(Some(MAX_METADATA_ENTRIES))
        .into()
);

/// A per-key rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    /// Sustained requests per minute.
    #[serde(deserialize_with = "crate::input::whole::number")]
    #[schema(minimum = 1, maximum = 6_000_000)]
    pub requests_per_minute: u32,
    /// Requests allowed at once after idling.
    #[serde(deserialize_with = "crate::input::whole::number")]
    #[schema(minimum = 1, maximum = 65_535)]
    pub burst: u32,
}

/// `POST /v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// 1 to 100 characters, no control characters.
    #[schema(value_type = NameFormat)]
    pub name: String,
    /// live or test.
    pub environment: EnvironmentName,
    /// Scopes such as `contacts:read` (at most 64); each must be covered by the caller's own
    /// scopes.
    #[serde(default)]
    #[schema(value_type = Vec<ScopeFormat>, max_items = 64)]
    pub scopes: Vec<String>,
    /// `1h`, `7d`, `30d`, `90d`, `1y`, `never` (the default), or an RFC 3339 time in the future.
    #[serde(default)]
    #[schema(value_type = Option<ExpiryFormat>)]
    pub expires: Option<String>,
    /// Overrides the deployment's default rate limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitBody>,
    /// Your own labels: a JSON object of at most 32 entries and 4 KiB.
    #[serde(default)]
    #[schema(value_type = Option<MetadataFormat>)]
    pub metadata: Option<Map<String, Value>>,
}

/// `PATCH /v1/keys/{id}`: every field is optional; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    /// New name: 1 to 100 characters, no control characters.
    #[serde(default)]
    #[schema(value_type = Option<NameFormat>)]
    pub name: Option<String>,
    /// New scopes (replace the old ones; at most 64).
    #[serde(default)]
    #[schema(value_type = Option<Vec<ScopeFormat>>, max_items = 64)]
    pub scopes: Option<Vec<String>>,
    /// New expiry: a preset counted from now, `never`, or an RFC 3339 time in the future.
    #[serde(default)]
    #[schema(value_type = Option<ExpiryFormat>)]
    pub expires: Option<String>,
    /// New rate limit; `null` returns the key to the deployment's default.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable)]
    pub rate_limit: Option<Option<RateLimitBody>>,
    /// New metadata (replaces the old): at most 32 entries and 4 KiB.
    #[serde(default)]
    #[schema(value_type = Option<MetadataFormat>)]
    pub metadata: Option<Map<String, Value>>,
}

impl UpdateKeyRequest {
    /// The fields a change names at least one of, each with the type it must have to count
    /// (`rate_limit` counts whatever it is: `null` returns the key to the default). The
    /// document states this rule ([`crate::openapi::require_one_of`]).
    pub const CHANGES: [(&'static str, Option<utoipa::openapi::schema::Type>); 5] = {
        use utoipa::openapi::schema::Type;
        [
            ("name", Some(Type::String)),
            ("scopes", Some(Type::Array)),
            ("expires", Some(Type::String)),
            ("rate_limit", None),
            ("metadata", Some(Type::Object)),
        ]
    };
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST /v1/keys/{id}/rotate` (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// How long the old key keeps working, in seconds (0, the default: it stops at once; at
    /// most 30 days). Never past the old key's own expiry.
    #[serde(default, deserialize_with = "crate::input::whole::number")]
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub grace_seconds: u64,
    /// When the new key expires: a preset counted from now, `never`, or an RFC 3339 time in
    /// the future. By default it has the old key's lifetime (its expiry less its creation)
    /// from now, or never expires if the old key never did.
    #[serde(default)]
    #[schema(value_type = Option<ExpiryFormat>)]
    pub expires: Option<String>,
}

/// `POST /v1/keys/{id}/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeKeyRequest {
    /// Why.
    pub reason: RevocationReason,
    /// Up to 500 characters, no control characters but newlines.
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\u0000-\u0009\u000b-\u001f\u007f-\u009f]*$"
    )]
    pub note: Option<String>,
}

/// Query of `GET /v1/keys`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListKeysQuery {
    /// Only keys in this state.
    pub status: Option<KeyState>,
    /// Only keys of this environment.
    pub environment: Option<EnvironmentName>,
    /// Only keys whose name contains this text (case-insensitive; no control characters; at
    /// most as long as a name).
    #[param(pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$", max_length = 100)]
    pub name: Option<String>,
    /// `true`: only keys no edge has ever reported a request for; `false`: only keys used at
    /// least once.
    pub never_used: Option<bool>,
    /// Only keys not used since this time (RFC 3339), keys never used included (add
    /// `never_used=false` to leave those out).
    #[param(format = DateTime)]
    pub last_used_before: Option<String>,
    /// Only keys whose last request came from this client address (exact).
    #[param(value_type = Option<ClientAddressFormat>)]
    pub last_used_ip: Option<String>,
    /// The addresses a key is expected to be used from, comma-separated (at most 50): only keys
    /// whose last request came from another one (keys never used left out).
    #[param(value_type = Option<ClientAddressListFormat>)]
    pub last_used_ip_not: Option<String>,
    /// Only keys this user owns (`usr_…`), or `me`: the caller, or its management key's owner
    /// (a key without one, before the first owner, owns none: the page is empty).
    #[param(pattern = r"^(me|usr_[0-9A-Za-z]{22})$")]
    pub owner: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[A-Za-z0-9_-]{32}$")]
    pub cursor: Option<String>,
}

/// A key as the API shows it: never the secret, only its truncated form.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// Public id (`key_…`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// `sk_live_abc123...GHIJ`.
    pub truncated_key: String,
    /// live or test.
    pub environment: EnvironmentName,
    /// Scopes.
    pub scopes: Vec<String>,
    /// active, expired or revoked.
    pub status: KeyState,
    /// Creation time.
    pub created_at: String,
    /// The user who created it (none for a key made with a management key).
    pub created_by: Option<PersonView>,
    /// The management key that created it (none for a key made by a signed-in user).
    pub created_by_key: Option<String>,
    /// The user who owns it (none only for keys made before the first owner was set up).
    pub owner: Option<PersonView>,
    /// True when the key, still active, holds scopes its owner's role no longer allows
    /// (`POST /v1/keys/reconcile` narrows or revokes such keys).
    pub exceeds_owner_scopes: bool,
    /// Last change.
    pub updated_at: String,
    /// Expiry (none: never).
    pub expires_at: Option<String>,
    /// Last request seen at an edge.
    pub last_used_at: Option<String>,
    /// Client address of that request.
    pub last_used_ip: Option<String>,
    /// Revocation time.
    pub revoked_at: Option<String>,
    /// Why it was revoked.
    pub revocation_reason: Option<RevocationReason>,
    /// The revoker's note.
    pub revocation_note: Option<String>,
    /// The key it replaced.
    pub rotated_from: Option<String>,
    /// The key that replaced it.
    pub rotated_to: Option<String>,
    /// Per-key rate limit (none: the deployment's default).
    pub rate_limit: Option<RateLimitBody>,
    /// Your labels.
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

impl KeyView {
    /// The view of `key` at `now` (its status depends on the time), naming the `people` it
    /// names.
    pub fn of(key: &KeyRecord, now: Timestamp, people: &People) -> Self {
        KeyView {
            id: key.id.to_string(),
            name: key.name.clone(),
            truncated_key: key.truncated.clone(),
            environment: match key.environment {
                keyplane_shared::Environment::Live => EnvironmentName::Live,
                keyplane_shared::Environment::Test => EnvironmentName::Test,
            },
            scopes: key
                .scopes
                .as_slice()
                .iter()
                .map(ToString::to_string)
                .collect(),
            status: key.state(now),
            created_at: rfc3339(key.created_at),
            created_by: people.person(key.created_by_user),
            created_by_key: key.created_by.map(|id| id.to_string()),
            owner: people.person(key.owner_id),
            exceeds_owner_scopes: people.exceeds_owner_scopes(key, now),
            updated_at: rfc3339(key.updated_at),
            expires_at: key.expires_at.map(rfc3339),
            last_used_at: key.last_used_at.map(rfc3339),
            last_used_ip: key.last_used_ip.clone(),
            revoked_at: key.revoked_at.map(rfc3339),
            revocation_reason: key.revocation.as_ref().map(|r| r.reason),
            revocation_note: key.revocation.as_ref().and_then(|r| r.note.clone()),
            rotated_from: key.rotated_from.map(|id| id.to_string()),
            rotated_to: key.rotated_to.map(|id| id.to_string()),
            rate_limit: key.rate_limit.map(|limit| RateLimitBody {
                requests_per_minute: limit.requests_per_minute(),
                burst: u32::from(limit.burst()),
            }),
            metadata: key.metadata.clone(),
        }
    }
}

/// The answer to create: the full key, shown this once, and its record.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The full key. Store it now: Keyplane keeps only a hash and cannot show it again.
    pub key: String,
    /// The stored record.
    pub record: KeyView,
}

/// The answer to rotate: the successor's full key and record, and the old key's record.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    /// The new key, shown this once.
    pub key: String,
    /// The new key's record.
    pub record: KeyView,
    /// The old key's record (revoked, or expiring at the end of the grace period).
    pub previous: KeyView,
}

/// The answer to revoke.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedKey {
    /// True if the key was already revoked and nothing changed.
    pub already_revoked: bool,
    /// The key's record.
    pub record: KeyView,
}

/// A page of keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyPage {
    /// The keys, newest first.
    pub data: Vec<KeyView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}
