//! `keyplane keys rotate-due`: the scheduled-rotation job in one command. It rotates every
//! active key created (a rotated key's successor is created by the rotation) more than
//! `--older-than` ago, and with `--expiring-within` every key expiring within that window; it
//! skips keys already in a grace period (they have a successor) and the caller's own key
//! (unless `--include-self`), and prints one JSON line per key: its id and the new key.
//!
//! Ages are measured on the control plane's clock (the `Date` of its answer), so a client with a
//! skewed clock picks the same keys. A key that cannot be rotated (changed meanwhile, refused) is
//! reported on stderr and the others still are; the exit code is then that of the first failure.

use std::time::SystemTime;

use keyplane_shared::Timestamp;
use keyplane_shared::ids::KeyId;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::connection::Connection;
use super::failure::{CliError, usage};
use super::output::{FieldPath, ListPrinter, Mode};
use super::values::{self, Span};
use crate::input::time::timestamp;
use crate::keys::model::EnvironmentName;

/// `keys rotate-due`.
#[derive(Debug, clap::Args)]
pub struct RotateDueArgs {
    /// Rotate keys created (or last rotated) more than this long ago (`90d`).
    #[arg(long, value_parser = values::span)]
    older_than: Span,
    /// Also rotate keys expiring within this window (`14d`).
    #[arg(long, value_parser = values::span)]
    expiring_within: Option<Span>,
    /// How long each old key keeps working after its rotation (`7d`; at most 30 days).
    #[arg(long, value_parser = values::span)]
    grace: Option<Span>,
    /// Only live or test keys.
    #[arg(long, short = 'e', value_parser = values::api_enum::<EnvironmentName>)]
    environment: Option<EnvironmentName>,
    /// Print what would be rotated, rotate nothing.
    #[arg(long)]
    dry_run: bool,
    /// Rotate the key this command runs with too (its successor is printed like the others;
    /// the old one keeps working for the grace period).
    #[arg(long)]
    include_self: bool,
}

/// What the selection reads of a key.
#[derive(Debug, Clone, Deserialize)]
pub struct Candidate {
    /// `key_…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `active`, `expired`, `revoked`.
    pub status: String,
    /// Creation (for a successor: its rotation).
    pub created_at: String,
    /// Expiry.
    pub expires_at: Option<String>,
    /// Its successor, while in a grace period.
    pub rotated_to: Option<String>,
}

/// Why a key is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Older than `--older-than`.
    Age,
    /// Expiring within `--expiring-within`.
    Expiring,
}

impl Reason {
    fn name(self) -> &'static str {
        match self {
            Reason::Age => "age",
            Reason::Expiring => "expiring",
        }
    }
}

/// The rule: how old, how near expiry, and which key is the caller's.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The control plane's time.
    pub now: Timestamp,
    /// `--older-than`.
    pub older_than: Span,
    /// `--expiring-within`.
    pub expiring_within: Option<Span>,
    /// The caller's own key, unless `--include-self`.
    pub own_key: Option<String>,
}

/// What the rule picked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Keys to rotate, with why.
    pub due: Vec<(String, String, Reason)>,
    /// Due keys left alone: already in a grace period.
    pub in_grace: usize,
    /// The caller's own key, left alone.
    pub own: usize,
}

/// Applies the rule to active keys (others are ignored).
pub fn select(keys: &[Candidate], policy: &Policy) -> Result<Selection, CliError> {
    let parse = |text: &str| {
        timestamp(text).map_err(|_| CliError::Unexpected(format!("`{text}` is not a time")))
    };
    let mut selection = Selection::default();
    for key in keys.iter().filter(|key| key.status == "active") {
        let age = policy.now.as_millis() - parse(&key.created_at)?.as_millis();
        let expiring = match (&key.expires_at, policy.expiring_within) {
            (Some(at), Some(window)) => {
                parse(at)?.as_millis() - policy.now.as_millis() <= window.millis()
            }
            _ => false,
        };
        let reason = if age > policy.older_than.millis() {
            Reason::Age
        } else if expiring {
            Reason::Expiring
        } else {
            continue;
        };
        if key.rotated_to.is_some() {
            selection.in_grace += 1;
        } else if policy.own_key.as_deref() == Some(key.id.as_str()) {
            selection.own += 1;
        } else {
            selection
                .due
                .push((key.id.clone(), key.name.clone(), reason));
        }
    }
    Ok(selection)
}

/// The line printed for a key rotated (`answer`: the rotation's answer).
fn rotated_line(id: &str, name: &str, reason: Reason, answer: &Value) -> Value {
    json!({
        "id": id,
        "name": name,
        "reason": reason.name(),
        "new_id": answer["record"]["id"],
        "key": answer["key"],
        "old_expires_at": answer["previous"]["expires_at"],
    })
}

/// The line printed for a key `--dry-run` would rotate.
fn dry_run_line(id: &str, name: &str, reason: Reason) -> Value {
    json!({"id": id, "name": name, "reason": reason.name(), "dry_run": true})
}

/// A line of the kind this run prints (rotated, or `--dry-run`'s), to check a `--field`
/// against before anything is rotated.
fn sample_line(dry_run: bool) -> Value {
    if dry_run {
        return dry_run_line("key_", "", Reason::Age);
    }
    let answer = json!({"record": {"id": "key_"}, "key": "", "previous": {"expires_at": null}});
    rotated_line("key_", "", Reason::Age, &answer)
}

/// Refuses a `--field` the lines of this run lack (a name, or a path into a field that has
/// no fields), before anything is rotated: once a key is rotated, its line is the only place
/// its new key is shown.
fn check_field(path: &FieldPath, dry_run: bool) -> Result<(), CliError> {
    let sample = sample_line(dry_run);
    path.pick(&sample).map(|_| ()).map_err(|_| {
        let fields: Vec<&str> = sample
            .as_object()
            .map(|line| line.keys().map(String::as_str).collect())
            .unwrap_or_default();
        usage(format!(
            "--field: the lines have no `{}` (fields: {})",
            path.text(),
            fields.join(", ")
        ))
    })
}

/// Runs the job.
pub async fn run(
    connection: &Connection,
    mode: &Mode,
    args: &RotateDueArgs,
) -> Result<(), CliError> {
    if let Mode::Field(path) = mode {
        check_field(path, args.dry_run)?;
    }
    let me = connection.get("/v1/users/me", &[]).await?;
    let caller = me.body["key_id"].as_str().map(str::to_owned);
    let own_key = match args.include_self {
        true => None,
        false => caller.clone(),
    };
    let (keys, now) = active_keys(connection, args.environment).await?;
    let policy = Policy {
        now,
        older_than: args.older_than,
        expiring_within: args.expiring_within,
        own_key,
    };
    let mut selection = select(&keys, &policy)?;
    // The job's own key (`--include-self`) goes last: rotated without a grace period it stops
    // at once, and every rotation after it would be refused.
    selection
        .due
        .sort_by_key(|(id, _, _)| caller.as_deref() == Some(id.as_str()));
    // Lines by default; `--json` gathers them into one document, `--field` picks one field.
    let mode = match mode {
        Mode::Table { .. } => Mode::JsonLines,
        other => other.clone(),
    };
    let gathered = mode == Mode::Json;
    let mut printer = ListPrinter::new(mode, Vec::new(), |_| Vec::new());
    let mut first_failure = None;
    // The new keys' ids, to name if their lines are lost.
    let mut made = Vec::new();
    for (id, name, reason) in &selection.due {
        if args.dry_run {
            printer.page(&[dry_run_line(id, name, *reason)])?;
            continue;
        }
        // An id the list gave that is not a key id is this key's failure, not the job's: the
        // job goes on, so that `--json` still prints the keys already rotated.
        let rotated = match values::key_id(id) {
            Ok(key_id) => rotate(connection, key_id, args.grace, None).await,
            Err(message) => Err(CliError::Unexpected(message)),
        };
        match rotated {
            Ok(answer) => {
                made.push(answer["record"]["id"].as_str().unwrap_or("?").to_owned());
                if let Err(cause) = printer.page(&[rotated_line(id, name, *reason, &answer)]) {
                    // Its new key is lost: say which, and rotate no more into output that
                    // cannot be written.
                    return Err(CliError::KeyNotShown {
                        made: made.split_off(made.len() - 1),
                        cause: Box::new(cause),
                    });
                }
            }
            Err(error) => {
                eprintln!("keyplane: {id} ({name}) was not rotated: {error}");
                first_failure.get_or_insert(error);
            }
        }
    }
    if let Err(cause) = printer.finish(None) {
        // `--json` writes its document, every new key in it, only now.
        if gathered && !made.is_empty() {
            return Err(CliError::KeyNotShown {
                made,
                cause: Box::new(cause),
            });
        }
        return Err(cause);
    }
    eprintln!(
        "keyplane: {} due; {} rotated{}; skipped {} already in a grace period and {} own key",
        selection.due.len(),
        made.len(),
        if args.dry_run { " (dry run)" } else { "" },
        selection.in_grace,
        selection.own,
    );
    match first_failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Every active key (all pages), and the control plane's time of the first answer.
async fn active_keys(
    connection: &Connection,
    environment: Option<EnvironmentName>,
) -> Result<(Vec<Candidate>, Timestamp), CliError> {
    let mut query = vec![("status", "active".to_owned()), ("limit", "200".to_owned())];
    if let Some(environment) = environment {
        query.push(("environment", values::api_name(&environment)));
    }
    let mut keys = Vec::new();
    let mut now = None;
    let mut cursor: Option<String> = None;
    loop {
        let mut page = query.clone();
        if let Some(cursor) = &cursor {
            page.push(("cursor", cursor.clone()));
        }
        let answer = connection.get("/v1/keys", &page).await?;
        now = now.or(answer.date);
        let data: Vec<Candidate> = serde_json::from_value(answer.body["data"].clone())
            .map_err(|error| CliError::Unexpected(format!("/v1/keys: {error}")))?;
        keys.extend(data);
        match answer.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let now = now.ok_or_else(|| {
        usage("the control plane's answer had no Date header: cannot tell the keys' ages")
    })?;
    let millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
    Ok((keys, Timestamp(millis)))
}

/// `POST /v1/keys/{id}/rotate` with the grace period and, when given, the new key's expiry (the
/// API's default otherwise: the old key's lifetime); the API's answer (`keys rotate` sends it too).
pub async fn rotate(
    connection: &Connection,
    id: KeyId,
    grace: Option<Span>,
    expires: Option<String>,
) -> Result<Value, CliError> {
    let mut body = json!({"grace_seconds": grace.map_or(0, Span::seconds)});
    if let Some(expires) = expires {
        body["expires"] = Value::String(expires);
    }
    let answer = connection
        .send(Method::POST, &format!("/v1/keys/{id}/rotate"), Some(body))
        .await?;
    Ok(answer.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn at(offset_days: i64) -> String {
        crate::input::time::rfc3339(Timestamp(NOW.as_millis() + offset_days * DAY))
    }

    fn key(id: &str, created_days_ago: i64, expires_in_days: Option<i64>) -> Candidate {
        Candidate {
            id: id.into(),
            name: id.into(),
            status: "active".into(),
            created_at: at(-created_days_ago),
            expires_at: expires_in_days.map(at),
            rotated_to: None,
        }
    }

    fn policy(expiring: Option<i64>, own: Option<&str>) -> Policy {
        Policy {
            now: NOW,
            older_than: values::span("90d").expect("span"),
            expiring_within: expiring
                .map(|days| Span(std::time::Duration::from_secs(days as u64 * 86_400))),
            own_key: own.map(str::to_owned),
        }
    }

    fn ids(selection: &Selection) -> Vec<(&str, Reason)> {
        selection
            .due
            .iter()
            .map(|(id, _, reason)| (id.as_str(), *reason))
            .collect()
    }

    #[test]
    fn old_keys_are_due_young_ones_are_not() {
        let keys = [
            key("old", 91, None),
            key("young", 89, None),
            key("edge", 90, None),
        ];
        let selection = select(&keys, &policy(None, None)).expect("select");
        assert_eq!(ids(&selection), [("old", Reason::Age)]);
    }

    #[test]
    fn keys_expiring_within_the_window_are_due_only_with_the_flag() {
        let keys = [key("soon", 10, Some(13)), key("later", 10, Some(15))];
        assert!(
            select(&keys, &policy(None, None))
                .expect("select")
                .due
                .is_empty()
        );
        let selection = select(&keys, &policy(Some(14), None)).expect("select");
        assert_eq!(ids(&selection), [("soon", Reason::Expiring)]);
    }

    #[test]
    fn keys_in_grace_the_callers_own_and_inactive_ones_are_skipped() {
        let mut in_grace = key("in-grace", 200, Some(3));
        in_grace.rotated_to = Some("key_next".into());
        let mut revoked = key("revoked", 200, None);
        revoked.status = "revoked".into();
        let keys = [
            in_grace,
            revoked,
            key("mine", 200, None),
            key("other", 200, None),
        ];
        let selection = select(&keys, &policy(Some(14), Some("mine"))).expect("select");
        assert_eq!(ids(&selection), [("other", Reason::Age)]);
        assert_eq!((selection.in_grace, selection.own), (1, 1));
        let with_self = select(&keys, &policy(Some(14), None)).expect("select");
        assert_eq!(with_self.due.len(), 2);
    }

    #[test]
    fn a_field_is_checked_against_the_lines_this_run_prints() {
        let field = |text: &str| FieldPath::parse(text).expect("a path");
        for name in ["id", "name", "reason", "new_id", "key", "old_expires_at"] {
            assert!(check_field(&field(name), false).is_ok(), "{name}");
        }
        for refused in [
            "dry_run",
            "new_key",
            "key.x",
            "new_id.0",
            "old_expires_at.at",
        ] {
            assert!(check_field(&field(refused), false).is_err(), "{refused}");
        }
        for name in ["id", "name", "reason", "dry_run"] {
            assert!(check_field(&field(name), true).is_ok(), "{name}");
        }
        for refused in ["key", "new_id", "dry_run.x"] {
            assert!(check_field(&field(refused), true).is_err(), "{refused}");
        }
    }
}
