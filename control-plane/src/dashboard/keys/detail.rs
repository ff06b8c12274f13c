//! `GET /keys/{id}`: every field of a key, its rotation links, its requests per day (last 30
//! days), its recent requests (filtered by status and address), its audit trail, and the
//! actions the viewer may take on it.

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::{chart, environment, hygiene_badges, status_badge};
use crate::access::Permission;
use crate::audit::api::AuditQuery;
use crate::dashboard::failure::{PagePath, PageQuery};
use crate::dashboard::format;
use crate::dashboard::page::{self, PageError, Section, dash, notice, problem};
use crate::dashboard::viewer::Viewer;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::keys::model::KeyView;
use crate::state::AppState;
use crate::store::KeyState;
use crate::usage::api::{DailyQuery, UsageQuery};

/// The page's own filters and confirmation.
#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    ip: String,
    #[serde(default)]
    done: String,
}

/// Whether the viewer may change `key`: everyone's keys, or their own.
pub fn may_change_key(viewer: &Viewer, key: &KeyView) -> bool {
    let access = &viewer.principal.access;
    if access.may(Permission::ManageAllKeys) {
        return true;
    }
    let me = viewer.principal.user_id().map(|id| id.to_string());
    access.may(Permission::ManageOwnKeys)
        && key.owner.as_ref().map(|owner| &owner.id) == me.as_ref()
}

/// Loads one key through the API (404 for another organization's).
pub async fn load(state: &AppState, viewer: &Viewer, id: &str) -> Result<KeyView, PageError> {
    let axum::Json(key) = crate::keys::get_key(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id.to_owned()),
    )
    .await?;
    Ok(key)
}

/// `GET /keys/{id}`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    PagePath(id): PagePath<String>,
    PageQuery(query): PageQuery<DetailQuery>,
) -> Result<Response, PageError> {
    let key = load(&state, &viewer, &id).await?;
    let now = state.now();
    let axum::Json(daily) = crate::usage::api::daily_usage(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id.clone()),
        ApiQuery(DailyQuery::default()),
    )
    .await?;
    let usage_query = UsageQuery {
        status: Some(query.status.trim().to_owned()).filter(|s| !s.is_empty()),
        ip: Some(query.ip.trim().to_owned()).filter(|s| !s.is_empty()),
        limit: Some(25),
        ..UsageQuery::default()
    };
    let (requests, usage_problem) = match crate::usage::api::key_usage(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id.clone()),
        ApiQuery(usage_query),
    )
    .await
    {
        Ok(axum::Json(page)) => (page.data, None),
        Err(ApiError::InvalidRequest(message)) => (Vec::new(), Some(message)),
        Err(error) => return Err(error.into()),
    };
    let audit_query = AuditQuery {
        key_id: Some(key.id.clone()),
        limit: Some(20),
        ..AuditQuery::default()
    };
    let audit = match crate::audit::api::list_audit(
        State(state.clone()),
        viewer.principal.clone(),
        ApiQuery(audit_query),
    )
    .await
    {
        Ok(axum::Json(page)) => page.data,
        Err(_) => Vec::new(),
    };
    let done = match query.done.as_str() {
        "revoked" => Some("The key was revoked. Edges refuse it within seconds."),
        "updated" => Some("Saved."),
        _ => None,
    };
    let days = chart::fill(&daily.from, &daily.to, &daily.data);
    let changeable = may_change_key(&viewer, &key);
    let content = html! {
        (notice(done))
        p { (status_badge(&key)) " " (hygiene_badges(&key, now)) }
        (fields(&key, now))
        @if changeable {
            (actions(&key))
        }
        h2 { "Requests per day" }
        (chart::chart(&days))
        h2 id="recent" { "Recent requests" }
        form.filters method="get" action={"/keys/" (key.id) "#recent"} aria-label="Filter requests" {
            div {
                label for="r-status" { "Status" }
                input id="r-status" name="status" type="text" placeholder="401 or 4xx" value=(query.status);
            }
            div {
                label for="r-ip" { "Address" }
                input id="r-ip" name="ip" type="text" value=(query.ip);
            }
            div { button.secondary type="submit" { "Filter" } }
        }
        (problem(usage_problem.as_deref()))
        @if requests.is_empty() {
            p.muted { "No requests recorded." }
        } @else {
            table {
                caption.visually-hidden { "Recent requests" }
                thead { tr {
                    th scope="col" { "Time" } th scope="col" { "Method" } th scope="col" { "Path" }
                    th scope="col" { "Status" } th scope="col" { "Address" } th scope="col" { "Request id" }
                } }
                tbody {
                    @for request in &requests {
                        tr {
                            td { time datetime=(request.at) title=(format::absolute(&request.at)) { (format::relative(&request.at, now)) } }
                            td { (request.method) }
                            td { code { (request.path) } }
                            td { (request.status) }
                            td.mono { (request.ip.as_deref().unwrap_or("")) }
                            td { code { (request.request_id) } }
                        }
                    }
                }
            }
        }
        h2 { "Audit trail" }
        @if audit.is_empty() {
            p.muted { "Nothing recorded." }
        } @else {
            table {
                caption.visually-hidden { "Audit trail of this key" }
                thead { tr { th scope="col" { "Time" } th scope="col" { "Action" } th scope="col" { "By" } th scope="col" { "Address" } } }
                tbody {
                    @for record in &audit {
                        tr {
                            td { time datetime=(record.at) title=(format::absolute(&record.at)) { (format::relative(&record.at, now)) } }
                            td { code { (record.action.as_str()) } }
                            td.mono { (record.actor_user_id.as_deref().or(record.actor_key_id.as_deref()).unwrap_or("")) }
                            td.mono { (record.ip.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    Ok(page::signed_in(&viewer, Section::Keys, &key.name, content))
}

fn time_or(at: Option<&str>, absent: &str, now: keyplane_shared::time::Timestamp) -> Markup {
    html! {
        @match at {
            Some(at) => { time datetime=(at) { (format::absolute(at)) } " (" (format::relative(at, now)) ")" },
            None => span.muted { (absent) },
        }
    }
}

fn fields(key: &KeyView, now: keyplane_shared::time::Timestamp) -> Markup {
    html! {
        dl.fields {
            dt { "Key" } dd { code { (key.truncated_key) } }
            dt { "Id" } dd { code { (key.id) } }
            dt { "Environment" } dd { (environment(key.environment)) }
            dt { "Scopes" } dd {
                @if key.scopes.is_empty() { span.muted { "None (any route without a scope rule)" } }
                @for scope in &key.scopes { code.badge { (scope) } }
            }
            dt { "Owner" } dd { @match &key.owner { Some(owner) => (owner.display_name), None => (dash()) } }
            dt { "Created" } dd {
                (time_or(Some(&key.created_at), "", now))
                @if let Some(by) = &key.created_by { " by " (by.display_name) }
                @if let Some(by) = &key.created_by_key { " by key " code { (by) } }
            }
            dt { "Expires" } dd { (time_or(key.expires_at.as_deref(), "Never", now)) }
            dt { "Last used" } dd {
                (time_or(key.last_used_at.as_deref(), "Never", now))
                @if let Some(ip) = &key.last_used_ip { " from " span.mono { (ip) } }
            }
            dt { "Rate limit" } dd {
                @match &key.rate_limit {
                    Some(limit) => { (limit.requests_per_minute) " requests per minute, bursts of " (limit.burst) },
                    None => span.muted { "The deployment's default" },
                }
            }
            @if key.status == KeyState::Revoked {
                dt { "Revoked" } dd {
                    (time_or(key.revoked_at.as_deref(), "", now))
                    @if let Some(reason) = &key.revocation_reason { " — " (reason.as_str()) }
                    @if let Some(note) = &key.revocation_note { ": " (note) }
                }
            }
            @if let Some(from) = &key.rotated_from {
                dt { "Replaces" } dd { a href={"/keys/" (from)} { code { (from) } } }
            }
            @if let Some(to) = &key.rotated_to {
                dt { "Replaced by" } dd { a href={"/keys/" (to)} { code { (to) } } }
            }
        }
    }
}

fn actions(key: &KeyView) -> Markup {
    let changeable = key.status == KeyState::Active && key.rotated_to.is_none();
    html! {
        div.actions {
            @if changeable {
                a.button.secondary href={"/keys/" (key.id) "/edit"} { "Edit" }
                a.button.secondary href={"/keys/" (key.id) "/regenerate"} { "Regenerate" }
            }
            @if key.status == KeyState::Active {
                a.button.secondary href={"/keys/" (key.id) "/revoke"} { "Revoke" }
            } @else {
                a.button.secondary href={"/keys/" (key.id) "/delete"} { "Delete" }
            }
        }
    }
}
