//! `keyplane keys …`: create, list, get, update, rotate, revoke, delete and transfer keys
//! through the REST API (`/v1/keys`), and `rotate-due` ([`super::rotate_due`]).
//!
//! The full key is printed by `create` and `rotate` alone, to stdout alone; when stdout is a
//! terminal, a warning on stderr says it will not be shown again.

use std::io::IsTerminal as _;

use clap::Subcommand;
use keyplane_shared::ids::KeyId;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::connection::Connection;
use super::failure::{CliError, usage};
use super::output::{ListPrinter, Mode, print_one};
use super::pages::{PageArgs, walk};
use super::rotate_due::{self, RotateDueArgs};
use super::values::{self, Span};
use crate::keys::model::EnvironmentName;
use crate::store::{KeyState, RevocationReason};

/// The keys API's largest page.
const LARGEST_PAGE: u32 = 200;

/// `keyplane keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it: the only time the full key is shown.
    Create(CreateArgs),
    /// List keys, newest first (one page; `--all` for every page).
    List(ListArgs),
    /// Show one key.
    Get {
        /// The key (`key_…`).
        #[arg(value_parser = values::key_id)]
        id: KeyId,
    },
    /// Change a key's name, scopes, expiry, rate limit or metadata.
    Update(UpdateArgs),
    /// Replace a key with a new one (printed, once); the old one keeps working for `--grace`.
    Rotate {
        /// The key (`key_…`).
        #[arg(value_parser = values::key_id)]
        id: KeyId,
        /// How long the old key keeps working (`7d`, `12h`; at most 30 days). Default: it
        /// stops at once.
        #[arg(long, value_parser = values::span)]
        grace: Option<Span>,
        /// When the new key expires: 1h, 7d, 30d, 90d, 1y, never or an RFC 3339 time.
        /// Default: as long from now as the old key lived (never, if it never expired).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Revoke a key: every edge refuses it within seconds.
    Revoke {
        /// The key (`key_…`).
        #[arg(value_parser = values::key_id)]
        id: KeyId,
        /// Why: compromised, replaced, unused, employee_departure, project_ended or other.
        #[arg(long, value_parser = values::api_enum::<RevocationReason>)]
        reason: RevocationReason,
        /// A note for the audit log (up to 500 characters).
        #[arg(long)]
        note: Option<String>,
    },
    /// Delete a key that is no longer active (revoked or expired).
    Delete {
        /// The key (`key_…`).
        #[arg(value_parser = values::key_id)]
        id: KeyId,
    },
    /// Give a key to another member of the organization.
    Transfer {
        /// The key (`key_…`).
        #[arg(value_parser = values::key_id)]
        id: KeyId,
        /// The member who will own it (`usr_…`).
        #[arg(long)]
        to: String,
    },
    /// Rotate every key past an age (or near its expiry): the scheduled-rotation job.
    RotateDue(RotateDueArgs),
}

/// `keys create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Display name (1 to 100 characters).
    #[arg(long)]
    name: String,
    /// live or test.
    #[arg(long, short = 'e', value_parser = values::api_enum::<EnvironmentName>)]
    environment: EnvironmentName,
    /// A scope such as `contacts:read` (repeatable, or comma-separated).
    #[arg(long = "scope", value_delimiter = ',')]
    scopes: Vec<String>,
    /// 1h, 7d, 30d, 90d, 1y, never (the default) or an RFC 3339 time.
    #[arg(long)]
    expires: Option<String>,
    /// REQUESTS_PER_MINUTE/BURST, e.g. 600/20 (default: the deployment's).
    #[arg(long, value_parser = values::rate_limit)]
    rate_limit: Option<Value>,
    #[command(flatten)]
    metadata: MetadataArgs,
}

/// Metadata flags.
#[derive(Debug, clap::Args)]
pub struct MetadataArgs {
    /// A label, NAME=VALUE (repeatable).
    #[arg(long = "metadata", value_parser = values::metadata_entry, conflicts_with = "metadata_json")]
    entries: Vec<(String, String)>,
    /// Labels as one JSON object.
    #[arg(long, value_parser = values::metadata_json)]
    metadata_json: Option<Map<String, Value>>,
}

impl MetadataArgs {
    fn object(&self) -> Option<Map<String, Value>> {
        if let Some(map) = &self.metadata_json {
            return Some(map.clone());
        }
        (!self.entries.is_empty()).then(|| {
            self.entries
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(value.clone())))
                .collect()
        })
    }
}

/// `keys update`.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The key (`key_…`).
    #[arg(value_parser = values::key_id)]
    id: KeyId,
    /// New name.
    #[arg(long)]
    name: Option<String>,
    /// New scopes, replacing the old (repeatable, or comma-separated).
    #[arg(long = "scope", value_delimiter = ',', conflicts_with = "no_scopes")]
    scopes: Vec<String>,
    /// Remove every scope.
    #[arg(long)]
    no_scopes: bool,
    /// New expiry: 1h, 7d, 30d, 90d, 1y, never or an RFC 3339 time.
    #[arg(long)]
    expires: Option<String>,
    /// New rate limit, REQUESTS_PER_MINUTE/BURST.
    #[arg(long, value_parser = values::rate_limit, conflicts_with = "default_rate_limit")]
    rate_limit: Option<Value>,
    /// Return to the deployment's default rate limit.
    #[arg(long)]
    default_rate_limit: bool,
    #[command(flatten)]
    metadata: MetadataArgs,
    /// Remove every label.
    #[arg(long, conflicts_with_all = ["entries", "metadata_json"])]
    no_metadata: bool,
}

/// `keys list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only keys in this state: active, expired or revoked.
    #[arg(long, value_parser = values::api_enum::<KeyState>)]
    status: Option<KeyState>,
    /// Only live or test keys.
    #[arg(long, short = 'e', value_parser = values::api_enum::<EnvironmentName>)]
    environment: Option<EnvironmentName>,
    /// Only keys whose name contains this (case-insensitive).
    #[arg(long)]
    name: Option<String>,
    /// Only keys never used at an edge.
    #[arg(long, conflicts_with = "used")]
    never_used: bool,
    /// Only keys used at least once.
    #[arg(long)]
    used: bool,
    /// Only keys not used since this RFC 3339 time (never-used keys included unless `--used`).
    #[arg(long, value_name = "TIME")]
    last_used_before: Option<String>,
    /// Only keys whose last request came from this address.
    #[arg(long, value_name = "IP")]
    last_used_ip: Option<String>,
    /// Only keys whose last request came from none of these addresses (comma-separated).
    #[arg(long, value_name = "IPS")]
    last_used_ip_not: Option<String>,
    /// Only keys this member owns (`usr_…`, or `me`).
    #[arg(long)]
    owner: Option<String>,
    #[command(flatten)]
    pages: PageArgs,
}

impl ListArgs {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        let mut add = |name: &'static str, value: Option<String>| {
            if let Some(value) = value {
                query.push((name, value));
            }
        };
        add("status", self.status.map(|state| values::api_name(&state)));
        add(
            "environment",
            self.environment.map(|env| values::api_name(&env)),
        );
        add("name", self.name.clone());
        add(
            "never_used",
            (self.never_used || self.used).then(|| self.never_used.to_string()),
        );
        add("last_used_before", self.last_used_before.clone());
        add("last_used_ip", self.last_used_ip.clone());
        add("last_used_ip_not", self.last_used_ip_not.clone());
        add("owner", self.owner.clone());
        query
    }
}

/// Runs a `keys` command.
pub async fn run(
    connection: &Connection,
    mode: &Mode,
    command: KeysCommand,
) -> Result<(), CliError> {
    match command {
        KeysCommand::Create(args) => {
            let mut body = json!({
                "name": args.name,
                "environment": values::api_name(&args.environment),
                "scopes": args.scopes,
            });
            set(&mut body, "expires", args.expires.map(Value::String));
            set(&mut body, "rate_limit", args.rate_limit);
            set(
                &mut body,
                "metadata",
                args.metadata.object().map(Value::Object),
            );
            let answer = connection
                .send(Method::POST, "/v1/keys", Some(body))
                .await?;
            print_new_key(mode, &answer.body)
        }
        KeysCommand::List(args) => {
            let printer = ListPrinter::new(mode.clone(), KEY_COLUMNS.to_vec(), key_row);
            walk(
                connection,
                "/v1/keys",
                args.query(),
                &args.pages,
                LARGEST_PAGE,
                printer,
            )
            .await
        }
        KeysCommand::Get { id } => {
            let answer = connection.get(&format!("/v1/keys/{id}"), &[]).await?;
            print_one(mode, &answer.body, key_details)
        }
        KeysCommand::Update(args) => {
            let body = update_body(&args)?;
            let answer = connection
                .send(Method::PATCH, &format!("/v1/keys/{}", args.id), Some(body))
                .await?;
            print_one(mode, &answer.body, key_details)
        }
        KeysCommand::Rotate { id, grace, expires } => {
            let answer = rotate_due::rotate(connection, id, grace, expires).await?;
            print_new_key(mode, &answer)
        }
        KeysCommand::Revoke { id, reason, note } => {
            let mut body = json!({"reason": values::api_name(&reason)});
            set(&mut body, "note", note.map(Value::String));
            let answer = connection
                .send(Method::POST, &format!("/v1/keys/{id}/revoke"), Some(body))
                .await?;
            if answer.body["already_revoked"] == Value::Bool(true) {
                eprintln!("keyplane: {id} was already revoked; nothing changed");
            }
            print_one(mode, &answer.body, |body| key_details(&body["record"]))
        }
        KeysCommand::Delete { id } => {
            connection
                .send(Method::DELETE, &format!("/v1/keys/{id}"), None)
                .await?;
            let gone = json!({"id": id.to_string(), "deleted": true});
            print_one(mode, &gone, |_| vec![("deleted", id.to_string())])
        }
        KeysCommand::Transfer { id, to } => {
            let answer = connection
                .send(
                    Method::POST,
                    &format!("/v1/keys/{id}/transfer"),
                    Some(json!({"owner": to})),
                )
                .await?;
            print_one(mode, &answer.body, key_details)
        }
        KeysCommand::RotateDue(args) => rotate_due::run(connection, mode, &args).await,
    }
}

fn set(body: &mut Value, name: &str, value: Option<Value>) {
    if let (Some(value), Some(object)) = (value, body.as_object_mut()) {
        object.insert(name.to_owned(), value);
    }
}

fn update_body(args: &UpdateArgs) -> Result<Value, CliError> {
    let mut body = json!({});
    set(&mut body, "name", args.name.clone().map(Value::String));
    if args.no_scopes {
        set(&mut body, "scopes", Some(json!([])));
    } else if !args.scopes.is_empty() {
        set(&mut body, "scopes", Some(json!(args.scopes)));
    }
    set(
        &mut body,
        "expires",
        args.expires.clone().map(Value::String),
    );
    if args.default_rate_limit {
        set(&mut body, "rate_limit", Some(Value::Null));
    } else {
        set(&mut body, "rate_limit", args.rate_limit.clone());
    }
    if args.no_metadata {
        set(&mut body, "metadata", Some(json!({})));
    } else {
        set(
            &mut body,
            "metadata",
            args.metadata.object().map(Value::Object),
        );
    }
    if body.as_object().is_some_and(Map::is_empty) {
        return Err(usage(
            "nothing to change: give --name, --scope, --no-scopes, --expires, --rate-limit, \
             --default-rate-limit, --metadata, --metadata-json or --no-metadata",
        ));
    }
    Ok(body)
}

/// Prints a create's or rotate's answer (`{key, record, …}`), warning on a terminal that the
/// key is shown this once. A `--field` the answer lacks prints the whole answer instead (then
/// fails as a usage error), so a typo never loses the key; output that cannot be written fails
/// as [`CliError::KeyNotShown`], naming the key.
fn print_new_key(mode: &Mode, answer: &Value) -> Result<(), CliError> {
    if std::io::stdout().is_terminal() {
        eprintln!(
            "keyplane: this is the only time this key is shown: store it now (Keyplane keeps \
             only a hash of it)"
        );
    }
    let not_shown = |cause: CliError| CliError::KeyNotShown {
        made: vec![text(&answer["record"]["id"])],
        cause: Box::new(cause),
    };
    match print_new_key_as(mode, answer) {
        Ok(()) => Ok(()),
        Err(CliError::Usage(missing)) if matches!(mode, Mode::Field(_)) => {
            print_new_key_as(&Mode::Json, answer).map_err(not_shown)?;
            Err(usage(format!(
                "{missing}; the whole answer, with the new key, was printed instead"
            )))
        }
        Err(error) => Err(not_shown(error)),
    }
}

/// The answer in `mode` (its table: the key, the record's details, the old key's end).
fn print_new_key_as(mode: &Mode, answer: &Value) -> Result<(), CliError> {
    print_one(mode, answer, |answer| {
        let mut lines = vec![("key", text(&answer["key"]))];
        lines.extend(key_details(&answer["record"]));
        if answer["previous"].is_object() {
            lines.push(("previous", text(&answer["previous"]["id"])));
            lines.push((
                "previous expires",
                or_never(&answer["previous"]["expires_at"]),
            ));
        }
        lines
    })
}

/// The key table's columns.
pub const KEY_COLUMNS: [&str; 8] = [
    "ID",
    "NAME",
    "ENV",
    "STATUS",
    "SCOPES",
    "OWNER",
    "LAST USED",
    "EXPIRES",
];

/// One key's row.
pub fn key_row(key: &Value) -> Vec<String> {
    vec![
        text(&key["id"]),
        text(&key["name"]),
        text(&key["environment"]),
        text(&key["status"]),
        scopes(key),
        text(&key["owner"]["display_name"]),
        or(&key["last_used_at"], "never"),
        or_never(&key["expires_at"]),
    ]
}

/// One key, field by field.
pub fn key_details(key: &Value) -> Vec<(&'static str, String)> {
    let rate = match &key["rate_limit"] {
        Value::Object(limit) => format!(
            "{}/min, bursts of {}",
            limit
                .get("requests_per_minute")
                .map_or_else(String::new, Value::to_string),
            limit
                .get("burst")
                .map_or_else(String::new, Value::to_string)
        ),
        _ => "the deployment's default".to_owned(),
    };
    let mut lines = vec![
        ("id", text(&key["id"])),
        ("name", text(&key["name"])),
        ("truncated", text(&key["truncated_key"])),
        ("environment", text(&key["environment"])),
        ("status", text(&key["status"])),
        ("scopes", scopes(key)),
        ("owner", person(&key["owner"])),
        ("created", text(&key["created_at"])),
        ("expires", or_never(&key["expires_at"])),
        ("last used", or(&key["last_used_at"], "never")),
        ("rate limit", rate),
    ];
    for (name, field) in [
        ("last used from", "last_used_ip"),
        ("revoked", "revoked_at"),
        ("reason", "revocation_reason"),
        ("note", "revocation_note"),
        ("rotated from", "rotated_from"),
        ("rotated to", "rotated_to"),
    ] {
        if !key[field].is_null() {
            lines.push((name, text(&key[field])));
        }
    }
    if key["metadata"]
        .as_object()
        .is_some_and(|map| !map.is_empty())
    {
        lines.push(("metadata", key["metadata"].to_string()));
    }
    lines
}

fn text(value: &Value) -> String {
    super::output::raw(value)
}

fn or(value: &Value, absent: &str) -> String {
    if value.is_null() {
        absent.to_owned()
    } else {
        text(value)
    }
}

fn or_never(value: &Value) -> String {
    or(value, "never")
}

fn scopes(key: &Value) -> String {
    let list: Vec<String> = key["scopes"]
        .as_array()
        .map(|items| items.iter().map(text).collect())
        .unwrap_or_default();
    if list.is_empty() {
        "-".to_owned()
    } else {
        list.join(",")
    }
}

fn person(value: &Value) -> String {
    if value.is_null() {
        return "-".to_owned();
    }
    format!("{} ({})", text(&value["display_name"]), text(&value["id"]))
}
