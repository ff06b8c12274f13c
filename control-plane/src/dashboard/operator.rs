//! The deployment-wide pages, for its operators only (owners of the first organization):
//! `/edges` — every registered edge, the change-feed sequence it acknowledged, how far behind
//! the head it is, when it last pulled and was pushed to, its last error — and
//! `/organizations` — every organization with its member count.

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::page::{self, PageError, Section, dash};
use super::viewer::Viewer;
use crate::state::AppState;

/// `GET /organizations`.
pub async fn organizations(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    let axum::Json(list) =
        crate::people::operator::organizations(State(state.clone()), viewer.principal.clone())
            .await?;
    let content = html! {
        table {
            caption.visually-hidden { "Organizations" }
            thead { tr { th scope="col" { "Organization" } th scope="col" { "Id" } th scope="col" { "Members" } th scope="col" { "Created" } } }
            tbody {
                @for org in &list.data {
                    tr {
                        td { (org.name) }
                        td { code { (org.id) } }
                        td { (org.members) }
                        td { (super::format::absolute(&org.created_at)) }
                    }
                }
            }
        }
    };
    Ok(page::signed_in(
        &viewer,
        Section::Edges,
        "Organizations",
        content,
    ))
}

/// `GET /edges`.
pub async fn page(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    let axum::Json(edges) =
        crate::people::operator::edges(State(state.clone()), viewer.principal.clone()).await?;
    let head = state.store.feed_head().await?;
    let now = state.now();
    let when = |at: &Option<String>| at.as_deref().map(|at| super::format::relative(at, now));
    let content = html! {
        p { "Change feed head: " strong { (head) } ". " a href="/organizations" { "Every organization" } }
        @if edges.data.is_empty() {
            p.muted { "No edge has registered yet." }
        } @else {
            table {
                caption.visually-hidden { "Edges" }
                thead { tr {
                    th scope="col" { "Edge" } th scope="col" { "URL" } th scope="col" { "Acknowledged" }
                    th scope="col" { "Lag" } th scope="col" { "Last pull" } th scope="col" { "Last push" } th scope="col" { "Last error" }
                } }
                tbody {
                    @for edge in &edges.data {
                        tr {
                            td { (edge.name) }
                            td.mono { (edge.url) }
                            td { (edge.acked_seq) }
                            // Behind what it holds, whether a push brought it or its own pull.
                            td { (head.saturating_sub(edge.acked_seq.max(edge.reported_seq))) " changes" }
                            td { @match when(&edge.last_seen_at) { Some(text) => (text), None => (dash()) } }
                            td { @match when(&edge.last_push_at) { Some(text) => (text), None => (dash()) } }
                            td { @match &edge.last_error { Some(error) => span.badge.bad { (error) }, None => (dash()) } }
                        }
                    }
                }
            }
        }
    };
    Ok(page::signed_in(&viewer, Section::Edges, "Edges", content))
}
