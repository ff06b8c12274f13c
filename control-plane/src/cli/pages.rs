//! Walking the API's cursor-paged lists (`{"data": [...], "next_cursor": "…"}`): one page, or
//! with `--all` every page, each handed to the printer as it arrives.

use serde_json::Value;

use super::connection::Connection;
use super::failure::CliError;
use super::output::ListPrinter;

/// Page flags shared by every list.
#[derive(Debug, Clone, clap::Args)]
pub struct PageArgs {
    /// Items per page (the API's bounds apply; with `--all`, the largest page is used unless
    /// this is given).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Start at this `next_cursor` of an earlier page.
    #[arg(long, conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Walk every page.
    #[arg(long)]
    pub all: bool,
}

/// Fetches `path` with `query` and the page flags (`largest`: the API's largest page size,
/// used with `--all`), printing each page.
pub async fn walk<F: Fn(&Value) -> Vec<String>>(
    connection: &Connection,
    path: &str,
    mut query: Vec<(&'static str, String)>,
    pages: &PageArgs,
    largest: u32,
    mut printer: ListPrinter<F>,
) -> Result<(), CliError> {
    let limit = pages.limit.or(pages.all.then_some(largest));
    if let Some(limit) = limit {
        query.push(("limit", limit.to_string()));
    }
    let mut cursor = pages.cursor.clone();
    loop {
        let mut this_page = query.clone();
        if let Some(cursor) = &cursor {
            this_page.push(("cursor", cursor.clone()));
        }
        let answer = connection.get(path, &this_page).await?;
        let items = answer.body["data"].as_array().ok_or_else(|| {
            CliError::Unexpected(format!("{path} answered without a `data` list"))
        })?;
        printer.page(items)?;
        let next = answer.body["next_cursor"].as_str().map(str::to_owned);
        match next {
            Some(next) if pages.all => cursor = Some(next),
            next => return printer.finish(next.as_deref()),
        }
    }
}
