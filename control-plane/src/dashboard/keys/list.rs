//! `GET /keys`: the organization's keys (those the viewer can reach), newest first, with
//! filters that survive paging, hygiene warnings at a glance, and a "Create API key" link for
//! those who may.
//!
//! The filters are a plain GET form, so a filtered list is a URL one can bookmark or share.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{environment, hygiene_badges, status_badge};
use crate::access::Permission;
use crate::dashboard::failure::PageQuery;
use crate::dashboard::format;
use crate::dashboard::page::{self, PageError, Section, dash, notice, problem};
use crate::dashboard::viewer::Viewer;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::keys::model::{EnvironmentName, KeyView, ListKeysQuery};
use crate::state::AppState;
use crate::store::KeyState;

/// Keys per page.
pub const PAGE_SIZE: u32 = 50;

/// The filters, as the form sends them (an empty field is no filter).
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    environment: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    never_used: Option<String>,
    #[serde(default)]
    not_used_since: String,
    #[serde(default)]
    expected_ips: String,
    #[serde(default)]
    cursor: String,
    /// A confirmation to show (after a delete).
    #[serde(default)]
    done: String,
}

impl Filters {
    fn to_query(&self) -> Result<ListKeysQuery, String> {
        let status = match self.status.as_str() {
            "" => None,
            "active" => Some(KeyState::Active),
            "expired" => Some(KeyState::Expired),
            "revoked" => Some(KeyState::Revoked),
            other => return Err(format!("unknown status `{other}`")),
        };
        let environment = match self.environment.as_str() {
            "" => None,
            "live" => Some(EnvironmentName::Live),
            "test" => Some(EnvironmentName::Test),
            other => return Err(format!("unknown environment `{other}`")),
        };
        let last_used_before = match self.not_used_since.trim() {
            "" => None,
            day => Some(
                format::start_of_day(day)
                    .ok_or_else(|| format!("“not used since” must be a date, got `{day}`"))?,
            ),
        };
        let expected: Vec<&str> = self
            .expected_ips
            .split([',', ' '])
            .map(str::trim)
            .filter(|ip| !ip.is_empty())
            .collect();
        Ok(ListKeysQuery {
            status,
            environment,
            name: Some(self.name.trim().to_owned()).filter(|name| !name.is_empty()),
            never_used: self.never_used.as_ref().map(|_| true),
            last_used_before,
            last_used_ip: None,
            last_used_ip_not: (!expected.is_empty()).then(|| expected.join(",")),
            owner: Some(self.owner.clone()).filter(|owner| !owner.is_empty()),
            limit: Some(PAGE_SIZE),
            cursor: Some(self.cursor.clone()).filter(|cursor| !cursor.is_empty()),
        })
    }

    /// The query string of these filters at `cursor`.
    fn link(&self, cursor: Option<&str>) -> String {
        format::link(
            "/keys",
            &[
                ("status", self.status.as_str()),
                ("environment", self.environment.as_str()),
                ("owner", self.owner.as_str()),
                ("name", self.name.as_str()),
                ("never_used", self.never_used.as_deref().unwrap_or("")),
                ("not_used_since", self.not_used_since.as_str()),
                ("expected_ips", self.expected_ips.as_str()),
                ("cursor", cursor.unwrap_or("")),
            ],
        )
    }
}

/// `GET /keys`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(filters): PageQuery<Filters>,
) -> Result<Response, PageError> {
    let now = state.now();
    let members = if viewer.principal.access.may(Permission::ManageAllKeys) {
        state.store.members(viewer.principal.org).await?
    } else {
        Vec::new()
    };
    let (keys, next, message) = match filters.to_query() {
        Err(message) => (Vec::new(), None, Some(message)),
        Ok(query) => {
            let answer = crate::keys::list_keys(
                State(state.clone()),
                viewer.principal.clone(),
                ApiQuery(query),
            )
            .await;
            match answer {
                Ok(axum::Json(page)) => (page.data, page.next_cursor, None),
                Err(ApiError::InvalidRequest(message)) => (Vec::new(), None, Some(message)),
                Err(error) => return Err(error.into()),
            }
        }
    };
    let done = match filters.done.as_str() {
        "deleted" => Some("The key was deleted. Its audit trail stays."),
        "resubmitted" => Some(
            "That form was already submitted, so it made nothing more. A key it made is in the list; its secret is not shown again.",
        ),
        _ => None,
    };
    let content = html! {
        (notice(done))
        @if viewer.principal.access.may(Permission::CreateKeys) {
            div.actions { a.button href="/keys/new" { "Create API key" } }
        }
        (filter_form(&filters, &members))
        (problem(message.as_deref()))
        (table(&keys, now))
        nav.pager aria-label="Pages" {
            @if !filters.cursor.is_empty() {
                a href=(filters.link(None)) { "First page" }
            }
            @if let Some(next) = &next {
                a href=(filters.link(Some(next))) { "Next page" }
            }
        }
    };
    Ok(page::signed_in(&viewer, Section::Keys, "API keys", content).into_response())
}

fn filter_form(filters: &Filters, members: &[crate::store::MemberRecord]) -> Markup {
    let option = |value: &str, label: &str, current: &str| {
        html! { option value=(value) selected[value == current] { (label) } }
    };
    html! {
        form.filters method="get" action="/keys" role="search" aria-label="Filter keys" {
            div {
                label for="f-name" { "Name contains" }
                input id="f-name" name="name" type="text" value=(filters.name);
            }
            div {
                label for="f-status" { "Status" }
                select id="f-status" name="status" {
                    (option("", "Any", &filters.status))
                    (option("active", "Active", &filters.status))
                    (option("expired", "Expired", &filters.status))
                    (option("revoked", "Revoked", &filters.status))
                }
            }
            div {
                label for="f-environment" { "Environment" }
                select id="f-environment" name="environment" {
                    (option("", "Any", &filters.environment))
                    (option("live", "live", &filters.environment))
                    (option("test", "test", &filters.environment))
                }
            }
            div {
                label for="f-owner" { "Owner" }
                select id="f-owner" name="owner" {
                    (option("", "Anyone", &filters.owner))
                    (option("me", "Me", &filters.owner))
                    @for member in members {
                        (option(&member.user.id.to_string(), &member.user.display_name, &filters.owner))
                    }
                }
            }
            div {
                label for="f-since" { "Not used since" }
                input id="f-since" name="not_used_since" type="date" value=(filters.not_used_since);
            }
            div {
                label for="f-ips" { "Last used from an address other than" }
                input id="f-ips" name="expected_ips" type="text" placeholder="203.0.113.7, 198.51.100.0" value=(filters.expected_ips);
            }
            div {
                label.check for="f-never" {
                    input id="f-never" name="never_used" type="checkbox" value="true" checked[filters.never_used.is_some()];
                    "Never used"
                }
            }
            div { button.secondary type="submit" { "Filter" } }
        }
    }
}

fn table(keys: &[KeyView], now: keyplane_shared::time::Timestamp) -> Markup {
    html! {
        @if keys.is_empty() {
            p.muted { "No keys match." }
        } @else {
            table {
                caption.visually-hidden { "API keys" }
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Key" }
                        th scope="col" { "Environment" }
                        th scope="col" { "Scopes" }
                        th scope="col" { "Created" }
                        th scope="col" { "Expires" }
                        th scope="col" { "Last used" }
                        th scope="col" { "Status" }
                        th scope="col" { "Owner" }
                    }
                }
                tbody {
                    @for key in keys {
                        tr {
                            td { a href={"/keys/" (key.id)} { (key.name) } br; (hygiene_badges(key, now)) }
                            td { code { (key.truncated_key) } }
                            td { (environment(key.environment)) }
                            td {
                                @if key.scopes.is_empty() { (dash()) }
                                @for scope in &key.scopes { code.badge { (scope) } }
                            }
                            td { time datetime=(key.created_at) title=(format::absolute(&key.created_at)) { (format::relative(&key.created_at, now)) } }
                            td {
                                @match &key.expires_at {
                                    Some(at) => time datetime=(at) title=(format::absolute(at)) { (format::relative(at, now)) },
                                    None => span.muted { "Never" },
                                }
                            }
                            td {
                                @match &key.last_used_at {
                                    Some(at) => {
                                        time datetime=(at) title=(format::absolute(at)) { (format::relative(at, now)) }
                                        @if let Some(ip) = &key.last_used_ip { br; span.muted.mono { (ip) } }
                                    },
                                    None => span.muted { "Never" },
                                }
                            }
                            td { (status_badge(key)) }
                            td {
                                @match &key.owner {
                                    Some(owner) => (owner.display_name),
                                    None => (dash()),
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
