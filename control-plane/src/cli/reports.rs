//! `keyplane usage KEY_ID`, `keyplane audit list|verify` and `keyplane whoami`: the read-only
//! views of a key's traffic, the organization's audit log and the caller itself.

use clap::Subcommand;
use keyplane_shared::ids::KeyId;
use serde_json::Value;

use super::connection::Connection;
use super::failure::CliError;
use super::output::{ListPrinter, Mode, print_one, raw};
use super::pages::{PageArgs, walk};
use super::values;
use crate::store::AuditAction;

/// `keyplane usage`.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// The key (`key_…`).
    #[arg(value_parser = values::key_id)]
    id: KeyId,
    /// Requests per UTC day instead of one by one.
    #[arg(long, conflicts_with_all = ["status", "ip", "limit", "cursor", "all"])]
    daily: bool,
    /// From this time (RFC 3339; with `--daily`, a day such as 2026-11-22).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Up to this time (with `--daily`, this day included).
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Only this status (`429`) or class (`4xx`).
    #[arg(long)]
    status: Option<String>,
    /// Only requests from this client address.
    #[arg(long)]
    ip: Option<String>,
    #[command(flatten)]
    pages: PageArgs,
}

/// `keyplane audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The organization's audit records, newest first.
    List(AuditListArgs),
    /// Recompute the organization's audit hash chain (on the control plane, with its sealing
    /// secret); exits 7 if it is broken.
    Verify,
}

/// `keyplane audit list`.
#[derive(Debug, clap::Args)]
pub struct AuditListArgs {
    /// Only this action (`key_created`, `key_revoked`, …).
    #[arg(long, value_parser = values::api_enum::<AuditAction>)]
    action: Option<AuditAction>,
    /// Only records about this key.
    #[arg(long = "key", value_parser = values::key_id)]
    key_id: Option<KeyId>,
    /// At or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    #[command(flatten)]
    pages: PageArgs,
}

fn push(query: &mut Vec<(&'static str, String)>, name: &'static str, value: Option<String>) {
    if let Some(value) = value {
        query.push((name, value));
    }
}

/// Runs `usage`.
pub async fn usage(connection: &Connection, mode: &Mode, args: UsageArgs) -> Result<(), CliError> {
    let mut query = Vec::new();
    push(&mut query, "from", args.from.clone());
    push(&mut query, "to", args.to.clone());
    if args.daily {
        let answer = connection
            .get(&format!("/v1/keys/{}/usage/daily", args.id), &query)
            .await?;
        return match mode {
            Mode::Table { terminal } => {
                let mut printer = ListPrinter::new(
                    Mode::Table {
                        terminal: *terminal,
                    },
                    vec!["DAY", "REQUESTS", "BY STATUS"],
                    |day: &Value| {
                        vec![
                            raw(&day["day"]),
                            raw(&day["requests"]),
                            by_status(&day["by_status"]),
                        ]
                    },
                );
                printer.page(
                    answer.body["data"]
                        .as_array()
                        .map_or(&[][..], Vec::as_slice),
                )?;
                printer.finish(None)
            }
            other => print_one(other, &answer.body, |_| Vec::new()),
        };
    }
    push(&mut query, "status", args.status.clone());
    push(&mut query, "ip", args.ip.clone());
    let printer = ListPrinter::new(
        mode.clone(),
        vec!["AT", "METHOD", "PATH", "STATUS", "IP", "EDGE", "REQUEST"],
        |event: &Value| {
            ["at", "method", "path", "status", "ip", "edge", "request_id"]
                .iter()
                .map(|field| raw(&event[*field]))
                .collect()
        },
    );
    let path = format!("/v1/keys/{}/usage", args.id);
    walk(connection, &path, query, &args.pages, 1000, printer).await
}

fn by_status(value: &Value) -> String {
    value.as_object().map_or_else(String::new, |map| {
        map.iter()
            .map(|(status, count)| format!("{status}:{count}"))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// Runs `audit …`.
pub async fn audit(
    connection: &Connection,
    mode: &Mode,
    command: AuditCommand,
) -> Result<(), CliError> {
    match command {
        AuditCommand::List(args) => {
            let mut query = Vec::new();
            push(
                &mut query,
                "action",
                args.action.map(|action| values::api_name(&action)),
            );
            push(&mut query, "key_id", args.key_id.map(|id| id.to_string()));
            push(&mut query, "since", args.since.clone());
            push(&mut query, "until", args.until.clone());
            let printer = ListPrinter::new(
                mode.clone(),
                vec!["SEQ", "AT", "ACTION", "KEY", "BY", "IP", "REQUEST"],
                |record: &Value| {
                    let by = if record["actor_user_id"].is_null() {
                        raw(&record["actor_key_id"])
                    } else {
                        raw(&record["actor_user_id"])
                    };
                    vec![
                        raw(&record["seq"]),
                        raw(&record["at"]),
                        raw(&record["action"]),
                        raw(&record["target_key_id"]),
                        by,
                        raw(&record["ip"]),
                        raw(&record["request_id"]),
                    ]
                },
            );
            walk(connection, "/v1/audit", query, &args.pages, 200, printer).await
        }
        AuditCommand::Verify => {
            let answer = connection.get("/v1/audit/verify", &[]).await?;
            let report = &answer.body;
            print_one(mode, report, |report| {
                vec![
                    ("valid", raw(&report["valid"])),
                    ("records", raw(&report["records"])),
                    ("error", raw(&report["error"])),
                ]
            })?;
            if report["valid"] == Value::Bool(true) {
                Ok(())
            } else {
                Err(CliError::CheckFailed(format!(
                    "the audit chain is broken: {}",
                    raw(&report["error"])
                )))
            }
        }
    }
}

/// Runs `whoami`.
pub async fn whoami(connection: &Connection, mode: &Mode) -> Result<(), CliError> {
    let answer = connection.get("/v1/users/me", &[]).await?;
    print_one(mode, &answer.body, |me| {
        let user = if me["user"].is_null() {
            "-".to_owned()
        } else {
            let email = match &me["user"]["email"] {
                Value::String(email) => format!(" <{email}>"),
                _ => String::new(),
            };
            format!(
                "{}{email} ({})",
                raw(&me["user"]["display_name"]),
                raw(&me["user"]["id"])
            )
        };
        let permissions: Vec<String> = me["permissions"]
            .as_array()
            .map(|items| items.iter().map(raw).collect())
            .unwrap_or_default();
        vec![
            ("method", raw(&me["method"])),
            ("key", raw(&me["key_id"])),
            ("user", user),
            ("organization", raw(&me["organization_id"])),
            // A key nobody owns acts for no member: no role.
            (
                "role",
                if me["role"].is_null() {
                    "-".to_owned()
                } else {
                    raw(&me["role"])
                },
            ),
            ("permissions", permissions.join(", ")),
            ("operator", raw(&me["operator"])),
        ]
    })
}
