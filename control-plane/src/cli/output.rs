//! How a client command prints an answer: a table on a terminal (tab-separated rows without a
//! header when stdout is a pipe, like `gh`), `--json` (the API's JSON, one document),
//! `--jsonl` (lists: one JSON object per line, streamed page by page) or `--field NAME` (one
//! field, raw: a string without quotes, anything else as JSON; for lists, one line per item).

use std::io::{IsTerminal as _, Write};

use serde_json::Value;

use super::failure::{CliError, usage};

/// The output flags every client command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Print the API's JSON answer (one document; `list --all` gathers every page into one).
    #[arg(long, global = true, help_heading = "Output", conflicts_with_all = ["jsonl", "field"])]
    pub json: bool,
    /// Lists: one JSON object per line, printed as each page arrives.
    #[arg(long, global = true, help_heading = "Output", conflicts_with = "field")]
    pub jsonl: bool,
    /// Print one field of the answer, raw (`key`, `record.id`); for lists, of each item.
    #[arg(long, global = true, help_heading = "Output", value_name = "NAME")]
    pub field: Option<String>,
}

/// One field of an answer, by its dotted path (`record.id`, `data.0.id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    /// Parses `a.b.c`.
    pub fn parse(text: &str) -> Result<Self, CliError> {
        let parts: Vec<String> = text.split('.').map(str::to_owned).collect();
        if parts.iter().any(String::is_empty) {
            return Err(usage(format!(
                "--field `{text}`: expected a name such as `id` or `record.id`"
            )));
        }
        Ok(FieldPath(parts))
    }

    /// The path as it was given (`record.id`).
    pub fn text(&self) -> String {
        self.0.join(".")
    }

    /// The field in `value`, or a usage error naming the fields there are.
    pub fn pick<'a>(&self, value: &'a Value) -> Result<&'a Value, CliError> {
        let mut here = value;
        for part in &self.0 {
            let next = match here {
                Value::Object(map) => map.get(part),
                Value::Array(items) => part.parse::<usize>().ok().and_then(|at| items.get(at)),
                _ => None,
            };
            here = next.ok_or_else(|| {
                let known = match here {
                    Value::Object(map) => map.keys().cloned().collect::<Vec<_>>().join(", "),
                    _ => String::new(),
                };
                usage(format!(
                    "--field: the answer has no `{}` (fields here: {known})",
                    self.0.join(".")
                ))
            })?;
        }
        Ok(here)
    }
}

/// The raw form of a value: a string as it is, `null` as an empty line, the rest as JSON.
pub fn raw(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The chosen output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A table (aligned with a header on a terminal, tab-separated rows on a pipe).
    Table {
        /// stdout is a terminal.
        terminal: bool,
    },
    /// The API's JSON.
    Json,
    /// One JSON object per line.
    JsonLines,
    /// One field, raw.
    Field(FieldPath),
}

impl Mode {
    /// From the flags and whether stdout is a terminal.
    pub fn choose(args: &OutputArgs) -> Result<Self, CliError> {
        Ok(if args.json {
            Mode::Json
        } else if args.jsonl {
            Mode::JsonLines
        } else if let Some(field) = &args.field {
            Mode::Field(FieldPath::parse(field)?)
        } else {
            Mode::Table {
                terminal: std::io::stdout().is_terminal(),
            }
        })
    }
}

/// A table: a header and rows of cells.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(header: Vec<&'static str>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes it: aligned (under its header, if it has one) on a terminal, else tab-separated
    /// without a header.
    pub fn write(&self, out: &mut impl Write, terminal: bool) -> std::io::Result<()> {
        let clean = |cell: &str| cell.replace(['\t', '\n', '\r'], " ");
        if terminal {
            let mut aligned = tabwriter::TabWriter::new(Vec::new()).padding(2);
            if !self.header.is_empty() {
                writeln!(aligned, "{}", self.header.join("\t"))?;
            }
            for row in &self.rows {
                let cells: Vec<String> = row.iter().map(|cell| clean(cell)).collect();
                writeln!(aligned, "{}", cells.join("\t"))?;
            }
            aligned.flush()?;
            out.write_all(
                &aligned
                    .into_inner()
                    .map_err(|error| std::io::Error::other(error.to_string()))?,
            )
        } else {
            for row in &self.rows {
                let cells: Vec<String> = row.iter().map(|cell| clean(cell)).collect();
                writeln!(out, "{}", cells.join("\t"))?;
            }
            Ok(())
        }
    }
}

/// `name  value` lines for one object (a key, `whoami`): aligned on a terminal, tab-separated
/// on a pipe.
pub fn write_details(
    out: &mut impl Write,
    lines: &[(&str, String)],
    terminal: bool,
) -> std::io::Result<()> {
    let mut table = Table::new(Vec::new());
    for (name, value) in lines {
        table.row(vec![(*name).to_owned(), value.clone()]);
    }
    table.write(out, terminal)
}

/// Prints one answer (`get`, `create`, `whoami`, …) in `mode`, the table through `details`.
pub fn print_one(
    mode: &Mode,
    answer: &Value,
    details: impl FnOnce(&Value) -> Vec<(&'static str, String)>,
) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match mode {
        Mode::Json | Mode::JsonLines => writeln!(out, "{}", pretty(answer, mode))?,
        Mode::Field(path) => writeln!(out, "{}", raw(path.pick(answer)?))?,
        Mode::Table { terminal } => write_details(&mut out, &details(answer), *terminal)?,
    }
    out.flush()?;
    Ok(())
}

fn pretty(value: &Value, mode: &Mode) -> String {
    match mode {
        Mode::Json => serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()),
        _ => value.to_string(),
    }
}

/// Prints a list page by page: `--jsonl` and `--field` lines and pipe rows as each page comes,
/// `--json` and the terminal table once every page is in.
pub struct ListPrinter<F: Fn(&Value) -> Vec<String>> {
    mode: Mode,
    header: Vec<&'static str>,
    row: F,
    gathered: Vec<Value>,
    table: Table,
}

impl<F: Fn(&Value) -> Vec<String>> ListPrinter<F> {
    /// A printer whose table has `header` and makes a row of an item with `row`.
    pub fn new(mode: Mode, header: Vec<&'static str>, row: F) -> Self {
        ListPrinter {
            mode,
            table: Table::new(header.clone()),
            header,
            row,
            gathered: Vec::new(),
        }
    }

    /// One page's items.
    pub fn page(&mut self, items: &[Value]) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        match &self.mode {
            Mode::Json => self.gathered.extend(items.iter().cloned()),
            Mode::JsonLines => {
                for item in items {
                    writeln!(out, "{item}")?;
                }
            }
            Mode::Field(path) => {
                for item in items {
                    writeln!(out, "{}", raw(path.pick(item)?))?;
                }
            }
            Mode::Table { terminal: true } => {
                for item in items {
                    self.table.row((self.row)(item));
                }
            }
            Mode::Table { terminal: false } => {
                let mut page = Table::new(self.header.clone());
                for item in items {
                    page.row((self.row)(item));
                }
                page.write(&mut out, false)?;
            }
        }
        out.flush()?;
        Ok(())
    }

    /// After the last page: `--json` prints `{"data": [...], "next_cursor": …}`, the terminal
    /// table prints, and a page left unread is named on stderr.
    pub fn finish(self, next_cursor: Option<&str>) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        match &self.mode {
            Mode::Json => {
                let document = serde_json::json!({
                    "data": self.gathered,
                    "next_cursor": next_cursor,
                });
                writeln!(out, "{}", pretty(&document, &self.mode))?;
            }
            Mode::Table { terminal: true } => {
                if self.table.rows.is_empty() {
                    writeln!(out, "(none)")?;
                } else {
                    self.table.write(&mut out, true)?;
                }
            }
            _ => {}
        }
        out.flush()?;
        if let Some(cursor) = next_cursor {
            eprintln!("more: add --cursor {cursor} for the next page, or --all for every page");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_picked_by_dotted_path_and_printed_raw() {
        let answer = json!({"key": "sk_live_x", "record": {"id": "key_1", "scopes": ["a"], "expires_at": null}});
        let pick = |path: &str| {
            raw(FieldPath::parse(path)
                .expect("path")
                .pick(&answer)
                .expect(path))
        };
        assert_eq!(pick("key"), "sk_live_x");
        assert_eq!(pick("record.id"), "key_1");
        assert_eq!(pick("record.scopes"), r#"["a"]"#);
        assert_eq!(pick("record.scopes.0"), "a");
        assert_eq!(pick("record.expires_at"), "");
        match FieldPath::parse("record.nope").expect("path").pick(&answer) {
            Err(CliError::Usage(message)) => {
                assert!(
                    message.contains("record.nope") && message.contains("scopes"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(FieldPath::parse("a..b").is_err());
        assert!(FieldPath::parse("").is_err());
    }

    #[test]
    fn tables_align_on_a_terminal_and_are_tab_separated_on_a_pipe() {
        let mut table = Table::new(vec!["ID", "NAME"]);
        table.row(vec!["key_1".into(), "a\tname".into()]);
        table.row(vec!["key_22".into(), "b".into()]);
        let mut aligned = Vec::new();
        table.write(&mut aligned, true).expect("write");
        assert_eq!(
            String::from_utf8(aligned).expect("utf-8"),
            "ID      NAME\nkey_1   a name\nkey_22  b\n"
        );
        let mut piped = Vec::new();
        table.write(&mut piped, false).expect("write");
        assert_eq!(
            String::from_utf8(piped).expect("utf-8"),
            "key_1\ta name\nkey_22\tb\n"
        );
    }
}
