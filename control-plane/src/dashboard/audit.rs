//! `/audit`: the organization's audit log, newest first, filtered by action, key and time,
//! paged, with the result of verifying the whole hash chain.

use axum::extract::State;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::failure::PageQuery;
use super::format;
use super::page::{self, PageError, Section, problem};
use super::viewer::Viewer;
use crate::audit::api::AuditQuery;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::store::AuditAction;

/// Every action, for the filter.
const ACTIONS: [AuditAction; 24] = [
    AuditAction::OrgCreated,
    AuditAction::KeyCreated,
    AuditAction::KeyUpdated,
    AuditAction::KeyRotated,
    AuditAction::KeyRevoked,
    AuditAction::KeyDeleted,
    AuditAction::AuthFailed,
    AuditAction::KeyOwnerChanged,
    AuditAction::MemberInvited,
    AuditAction::InvitationRevoked,
    AuditAction::MemberAdded,
    AuditAction::MemberRoleChanged,
    AuditAction::MemberRemoved,
    AuditAction::RoleCreated,
    AuditAction::RoleUpdated,
    AuditAction::RoleDeleted,
    AuditAction::PortalLinkCreated,
    AuditAction::BrandingUpdated,
    AuditAction::WebhookCreated,
    AuditAction::WebhookUpdated,
    AuditAction::WebhookSecretRotated,
    AuditAction::WebhookDeleted,
    AuditAction::WebhookDisabled,
    AuditAction::ExpiryNoticesUpdated,
];

/// The filters, as the form sends them.
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    action: String,
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    cursor: String,
}

impl Filters {
    fn link(&self, cursor: &str) -> String {
        format::link(
            "/audit",
            &[
                ("action", self.action.as_str()),
                ("key_id", self.key_id.as_str()),
                ("since", self.since.as_str()),
                ("until", self.until.as_str()),
                ("cursor", cursor),
            ],
        )
    }
}

/// `GET /audit`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(filters): PageQuery<Filters>,
) -> Result<Response, PageError> {
    let now = state.now();
    let action = ACTIONS
        .iter()
        .copied()
        .find(|action| action.as_str() == filters.action);
    let query = AuditQuery {
        action,
        key_id: Some(filters.key_id.trim().to_owned()).filter(|id| !id.is_empty()),
        since: Some(filters.since.trim())
            .filter(|d| !d.is_empty())
            .and_then(format::start_of_day),
        until: Some(filters.until.trim())
            .filter(|d| !d.is_empty())
            .and_then(format::end_of_day),
        limit: Some(50),
        cursor: Some(filters.cursor.clone()).filter(|c| !c.is_empty()),
    };
    let (records, next, message) = match crate::audit::api::list_audit(
        State(state.clone()),
        viewer.principal.clone(),
        ApiQuery(query),
    )
    .await
    {
        Ok(axum::Json(page)) => (page.data, page.next_cursor, None),
        Err(ApiError::InvalidRequest(message)) => (Vec::new(), None, Some(message)),
        Err(error) => return Err(error.into()),
    };
    let axum::Json(chain) =
        crate::audit::api::verify_audit(State(state.clone()), viewer.principal.clone()).await?;
    let content = html! {
        @if chain.valid {
            div.notice role="status" { p { "Chain verified: " (chain.records) " records, each sealed to the one before." } }
        } @else {
            div.problem role="alert" { p { "The chain does not verify: " (chain.error.as_deref().unwrap_or("unknown break")) } }
        }
        form.filters method="get" action="/audit" role="search" aria-label="Filter the audit log" {
            div {
                label for="a-action" { "Action" }
                select id="a-action" name="action" {
                    option value="" { "Any" }
                    @for candidate in ACTIONS {
                        option value=(candidate.as_str()) selected[Some(candidate) == action] { (candidate.as_str()) }
                    }
                }
            }
            div { label for="a-key" { "Key id" } input id="a-key" name="key_id" type="text" value=(filters.key_id); }
            div { label for="a-since" { "From" } input id="a-since" name="since" type="date" value=(filters.since); }
            div { label for="a-until" { "To" } input id="a-until" name="until" type="date" value=(filters.until); }
            div { button.secondary type="submit" { "Filter" } }
        }
        (problem(message.as_deref()))
        @if records.is_empty() {
            p.muted { "No records match." }
        } @else {
            table {
                caption.visually-hidden { "Audit records" }
                thead { tr {
                    th scope="col" { "#" } th scope="col" { "Time" } th scope="col" { "Action" } th scope="col" { "Key" }
                    th scope="col" { "By" } th scope="col" { "Address" } th scope="col" { "Details" }
                } }
                tbody {
                    @for record in &records {
                        tr {
                            td { (record.seq) }
                            td { time datetime=(record.at) title=(format::absolute(&record.at)) { (format::relative(&record.at, now)) } }
                            td { code { (record.action.as_str()) } }
                            td { @if let Some(key) = &record.target_key_id { a href={"/keys/" (key)} { code { (key) } } } }
                            td.mono { (record.actor_user_id.as_deref().or(record.actor_key_id.as_deref()).unwrap_or("")) }
                            td.mono { (record.ip.as_deref().unwrap_or("")) }
                            td { code { (summary(&record.details)) } }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if !filters.cursor.is_empty() { a href=(filters.link("")) { "First page" } }
            @if let Some(next) = &next { a href=(filters.link(next)) { "Next page" } }
        }
    };
    Ok(page::signed_in(
        &viewer,
        Section::Audit,
        "Audit log",
        content,
    ))
}

/// A record's details, shortened for a table cell.
fn summary(details: &serde_json::Value) -> String {
    let text = details.to_string();
    if text.chars().count() > 160 {
        let cut: String = text.chars().take(160).collect();
        format!("{cut}…")
    } else {
        text
    }
}
