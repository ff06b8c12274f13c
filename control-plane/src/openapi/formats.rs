//! Named formats of the document (`#/components/schemas/…`) that fields of several resources
//! share: what a validator takes, written as a JSON Schema pattern (see [`super::patterns`]), so
//! that a value the document calls valid is one the server accepts. Each is a type that exists
//! for the document only: a field holding one names it with `#[schema(value_type = …)]` or
//! `#[param(value_type = …)]`. A resource's own formats are declared with `format_type!` in its
//! module.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::AnyOfBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};

use super::patterns::*;
use crate::limits::{MAX_EMAIL_LEN, MAX_NAME_CHARS, MAX_URL_LEN};

/// A string schema with a description, a pattern and a longest length.
pub(crate) fn pattern_string(
    description: &str,
    pattern: String,
    max_length: Option<usize>,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .max_length(max_length)
        .into()
}

/// Declares a document-only format type: its component name, and its schema.
macro_rules! format_type {
    ($(#[$doc:meta])* $type:ident, $name:literal, $schema:expr) => {
        $(#[$doc])*
        pub struct $type;

        impl utoipa::PartialSchema for $type {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $schema
            }
        }

        impl utoipa::ToSchema for $type {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($name)
            }
        }
    };
}
pub(crate) use format_type;

format_type!(
    /// A name a person gives: a key's, an organization's display name.
    NameFormat,
    "Name",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "1 to 100 characters, not only white space, no control characters",
        ))
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_CHARS))
        .pattern(Some(name_pattern()))
        .into()
);

format_type!(
    /// A scope (`resource:action`, `resource:*`, `admin:full`).
    ScopeFormat,
    "Scope",
    pattern_string(
        "`resource:action` or `resource:*`, each name 1 to 64 characters of a-z, 0-9, `-`, `_`, \
         `.`, starting with a letter or digit; or `admin:full` (the `admin` resource has no \
         other scope)",
        scope_pattern(),
        None,
    )
);

format_type!(
    /// A role's name, built in or custom.
    RoleNameFormat,
    "RoleName",
    pattern_string(
        "`owner`, `admin`, `developer`, `viewer`, or a custom role: 1 to 40 characters of a-z, \
         0-9, `-`, `_`, starting with a letter",
        role_name_pattern(),
        None,
    )
);

format_type!(
    /// An email address, as invitations take it.
    EmailFormat,
    "Email",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
        .description(Some("An email address (at most 254 characters)"))
        .pattern(Some(email_pattern()))
        .max_length(Some(MAX_EMAIL_LEN))
        .into()
);

format_type!(
    /// An absolute `https://` URL with a host (`http://` too under the local-development
    /// policy: see [`super::for_deployment`]).
    WebUrlFormat,
    "WebUrl",
    pattern_string(
        "An absolute `https://` URL with a host (at most 2048 characters, no spaces or \
         credentials); `http://` is also taken where the deployment runs under the \
         local-development policy",
        web_url_pattern(false),
        Some(MAX_URL_LEN),
    )
);

format_type!(
    /// An absolute `https://` URL with a host, whatever the policy.
    HttpsUrlFormat,
    "HttpsUrl",
    pattern_string(
        "An absolute `https://` URL with a host (at most 2048 characters, no spaces or \
         credentials)",
        web_url_pattern(false),
        Some(MAX_URL_LEN),
    )
);

format_type!(
    /// A webhook endpoint's URL: a public host name (any web URL under the local-development
    /// policy: see [`super::for_deployment`]).
    WebhookUrlFormat,
    "WebhookUrl",
    pattern_string(
        "An absolute `https://` URL whose host is a public DNS name (not an address, not \
         `localhost`), at most 2048 characters; under the local-development policy, any \
         `http://` or `https://` URL with a host",
        webhook_url_pattern(false),
        Some(MAX_URL_LEN),
    )
);

format_type!(
    /// An origin allowed to frame the portal.
    OriginFormat,
    "Origin",
    pattern_string(
        "`https://host` or `https://host:port` (a DNS name of at most 252 characters; no path, \
         query or wildcard); `http://` too under the local-development policy",
        origin_pattern(false),
        Some(ORIGIN_MAX_LEN),
    )
);

format_type!(
    /// A client address, as filters take one.
    ClientAddressFormat,
    "ClientAddress",
    pattern_string(
        "A client address as the edge reports it: 1 to 64 characters of printable ASCII, not \
         only spaces",
        client_address_pattern(),
        Some(crate::input::ip::MAX_IP_BYTES),
    )
);

format_type!(
    /// A list of client addresses.
    ClientAddressListFormat,
    "ClientAddressList",
    pattern_string(
        "1 to 50 client addresses, comma-separated (spaces around each ignored), each 1 to 64 \
         characters of printable ASCII",
        client_address_list_pattern(),
        None,
    )
);

format_type!(
    /// A day: a date, or a time meaning its UTC day.
    DayFormat,
    "Day",
    AnyOfBuilder::new()
        .description(Some("A date (`2026-11-22`), or an RFC 3339 time meaning its UTC day"))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .into()
);

format_type!(
    /// The name of a webhook event type.
    EventTypeFormat,
    "EventType",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("A webhook event type"))
        .enum_values(Some(
            crate::store::outbox::EventType::ALL.map(crate::store::outbox::EventType::as_str),
        ))
        .into()
);

format_type!(
    /// A role whose scopes can change.
    ChangeableRoleFormat,
    "ChangeableRole",
    pattern_string(
        "`developer`, or a custom role's name (`owner`, `admin` and `viewer` are fixed)",
        changeable_role_pattern(),
        None,
    )
);

format_type!(
    /// Where a page of a webhook's attempts continues.
    AttemptCursorFormat,
    "AttemptCursor",
    pattern_string(
        "The `next_cursor` of the previous page",
        attempt_cursor_pattern(),
        None,
    )
);

format_type!(
    /// A full key of this deployment's format (the prefix is the deployment's: see
    /// [`super::for_deployment`]).
    FullKeyFormat,
    "FullKey",
    pattern_string(
        "A key in full: the deployment's prefix, `_live_` or `_test_`, then 38 base62 \
         characters ending with their checksum",
        full_key_pattern(keyplane_shared::key::KeyPrefix::default().as_str()),
        None,
    )
);
