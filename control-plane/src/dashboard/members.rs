//! `/members`: who belongs to the organization and with which role, the roles and their
//! scope ceilings, and — for those who manage members — inviting someone, the pending
//! invitations (each can be revoked), changing a role, and removing a member with what happens
//! to their keys (revoked at once, or given to another member).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::entry::Empty;
use super::failure::{PagePath, PageQuery};
use super::format;
use super::page::{self, Done, PageError, Section, csrf_field, notice, problem, see_other};
use super::viewer::{Submitted, Viewer};
use crate::access::{Permission, RoleName};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::people::invitations::{InviteRequest, Invited};
use crate::people::members::{ChangeRole, KeysDecision, RemoveMember};
use crate::people::views::{InvitationView, MemberView, RoleView};
use crate::state::AppState;

/// What the page lists.
struct Lists {
    members: Vec<MemberView>,
    roles: Vec<RoleView>,
    /// The pending invitations, for those who manage members (empty for others).
    pending: Vec<InvitationView>,
}

async fn lists(state: &AppState, viewer: &Viewer) -> Result<Lists, PageError> {
    let principal = &viewer.principal;
    let axum::Json(members) =
        crate::people::members::list_members(State(state.clone()), principal.clone()).await?;
    let axum::Json(roles) =
        crate::people::roles::list_roles(State(state.clone()), principal.clone()).await?;
    let pending = if principal.access.may(Permission::ManageMembers) {
        let axum::Json(pending) =
            crate::people::invitations::list_invitations(State(state.clone()), principal.clone())
                .await?;
        pending.data
    } else {
        Vec::new()
    };
    Ok(Lists {
        members: members.data,
        roles: roles.data,
        pending,
    })
}

/// `GET /members`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(done): PageQuery<Done>,
) -> Result<Response, PageError> {
    let lists = lists(&state, &viewer).await?;
    let extra = done
        .message(&[
            ("role", "Role changed."),
            ("removed", "Member removed."),
            (
                "invitation_revoked",
                "Invitation revoked: its link no longer works.",
            ),
        ])
        .map_or(Extra::None, Extra::Done);
    Ok(render(&viewer, &lists, extra, Draft::EMPTY, StatusCode::OK))
}

/// What the invite form shows: what was typed, when the invitation was refused.
#[derive(Clone, Copy)]
struct Draft<'a> {
    email: &'a str,
    role: &'a str,
}

impl Draft<'_> {
    /// An empty form.
    const EMPTY: Draft<'static> = Draft {
        email: "",
        role: "developer",
    };
}

/// What the page shows besides the lists.
enum Extra<'a> {
    None,
    Invited(&'a Invited),
    Problem(String),
    Done(&'static str),
}

fn render(
    viewer: &Viewer,
    lists: &Lists,
    extra: Extra<'_>,
    draft: Draft<'_>,
    status: StatusCode,
) -> Response {
    let Lists {
        members,
        roles,
        pending,
    } = lists;
    let manages = viewer.principal.access.may(Permission::ManageMembers);
    let me = viewer.principal.user_id().map(|id| id.to_string());
    let content = html! {
        @match &extra {
            Extra::Problem(message) => (problem(Some(message))),
            Extra::Done(message) => (notice(Some(message))),
            Extra::Invited(invited) => (invitation(invited)),
            Extra::None => {},
        }
        @if manages {
            h2 { "Invite someone" }
            form method="post" action="/members/invite" {
                (csrf_field(viewer))
                label for="invite-email" { "Email" }
                input id="invite-email" name="email" type="email" required autocomplete="off" value=(draft.email);
                label for="invite-role" { "Role" }
                (role_select("invite-role", roles, draft.role))
                div.actions { button type="submit" { "Send invitation" } }
            }
            h2 { "Pending invitations" }
            (pending_invitations(viewer, pending))
        }
        h2 { "Members" }
        table {
            caption.visually-hidden { "Members" }
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Joined" }
                @if manages { th scope="col" { "Actions" } }
            } }
            tbody {
                @for member in members {
                    @let id = member.user.id.to_string();
                    tr {
                        td { (member.user.display_name) @if me.as_deref() == Some(id.as_str()) { " (you)" } }
                        td { (member.user.email.as_deref().unwrap_or("")) }
                        td {
                            @if manages {
                                form.filters method="post" action={"/members/" (id) "/role"} {
                                    (csrf_field(viewer))
                                    label.visually-hidden for={"role-" (id)} { "Role of " (member.user.display_name) }
                                    (role_select(&format!("role-{id}"), roles, &member.role))
                                    button.secondary type="submit" { "Change role" span.visually-hidden { " of " (member.user.display_name) } }
                                }
                            } @else {
                                (member.role)
                            }
                        }
                        td { (format::absolute(&member.joined_at)) }
                        @if manages {
                            td { a href={"/members/" (id) "/remove"} { "Remove" span.visually-hidden { " " (member.user.display_name) } } }
                        }
                    }
                }
            }
        }
        h2 { "Roles" }
        table {
            caption.visually-hidden { "Roles" }
            thead { tr { th scope="col" { "Role" } th scope="col" { "Keys it may hold" } } }
            tbody {
                @for role in roles {
                    tr {
                        td { (role.name) @if !role.builtin { " (custom)" } }
                        td {
                            @if role.ceiling.all {
                                "Every scope"
                                @if !role.ceiling.except.is_empty() { " except " @for scope in &role.ceiling.except { code.badge { (scope) } } }
                            } @else if role.ceiling.scopes.is_empty() {
                                "None (reads only)"
                            } @else {
                                @for scope in &role.ceiling.scopes { code.badge { (scope) } }
                            }
                        }
                    }
                }
            }
        }
    };
    let replace_url = matches!(extra, Extra::Invited(_)).then_some("/members");
    let mut response = page::signed_in_with(
        viewer,
        Section::Members,
        "Members and roles",
        content,
        replace_url,
    );
    *response.status_mut() = status;
    response
}

fn role_select(id: &str, roles: &[RoleView], current: &str) -> Markup {
    html! {
        select id=(id) name="role" {
            @for role in roles {
                option value=(role.name) selected[role.name == current] { (role.name) }
            }
        }
    }
}

/// The pending invitations, each with its revoke button.
fn pending_invitations(viewer: &Viewer, pending: &[InvitationView]) -> Markup {
    html! {
        @if pending.is_empty() {
            p { "No invitation is waiting to be accepted." }
        } @else {
            table {
                caption.visually-hidden { "Pending invitations" }
                thead { tr {
                    th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Sent" }
                    th scope="col" { "Link works until" } th scope="col" { "Actions" }
                } }
                tbody {
                    @for invitation in pending {
                        @let whom = invitation.email.as_deref().unwrap_or("the setup link");
                        tr {
                            td { (whom) }
                            td { (invitation.role) }
                            td { (format::absolute(&invitation.created_at)) }
                            td { (format::absolute(&invitation.expires_at)) }
                            td {
                                @if revocable(viewer, invitation) {
                                    form.filters method="post" action={"/members/invitations/" (invitation.id) "/revoke"} {
                                        (csrf_field(viewer))
                                        button.secondary type="submit" { "Revoke" span.visually-hidden { " the invitation of " (whom) } }
                                    }
                                } @else {
                                    "Only an owner revokes it"
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Whether `viewer` may revoke `invitation`: the API's rule (as for sending it, only an owner
/// for an owner's).
fn revocable(viewer: &Viewer, invitation: &InvitationView) -> bool {
    RoleName::parse(&invitation.role)
        .is_ok_and(|role| viewer.principal.access.may_manage_member_with(&role))
}

fn invitation(invited: &Invited) -> Markup {
    html! {
        div.secret role="status" {
            @match (&invited.link, invited.email_sent) {
                (_, true) => p { "Invitation emailed to " strong { (invited.email.as_deref().unwrap_or("")) } "." },
                (Some(link), false) => {
                    p { "Send this one-time link to " strong { (invited.email.as_deref().unwrap_or("")) } " yourself"
                        @if let Some(error) = &invited.email_error { " (emailing it failed: " (error) ")" }
                        ". It works once, until " (format::absolute(&invited.expires_at)) ", and is not shown again." }
                    code id="invitation-link" { (link) }
                    div.actions {
                        button type="button" data-copy="invitation-link" data-status="invite-copy-status" { "Copy link" }
                        span id="invite-copy-status" role="status" aria-live="polite" {}
                    }
                },
                (None, false) => p { "Invitation created." },
            }
        }
    }
}

/// The invite form.
#[derive(Debug, Deserialize)]
pub struct InviteForm {
    email: String,
    role: String,
}

/// `POST /members/invite`: the link, once (when no mailer sent it).
pub async fn invite(
    State(state): State<AppState>,
    Submitted { viewer, form }: Submitted<InviteForm>,
) -> Result<Response, PageError> {
    let body = InviteRequest {
        email: form.email.clone(),
        role: form.role.clone(),
    };
    let answer = crate::people::invitations::invite(
        State(state.clone()),
        viewer.principal.clone(),
        ApiJson(body),
    )
    .await;
    match answer {
        Ok((_, axum::Json(invited))) => {
            // The link is shown in the post's answer only (no-store); the script shows `/members`
            // in the address bar, so a reload neither posts again nor shows the link again.
            let lists = lists(&state, &viewer).await?;
            Ok(render(
                &viewer,
                &lists,
                Extra::Invited(&invited),
                Draft::EMPTY,
                StatusCode::OK,
            ))
        }
        Err(error) => {
            let draft = Draft {
                email: &form.email,
                role: &form.role,
            };
            refused(&state, &viewer, error, draft).await
        }
    }
}

/// `POST /members/invitations/{id}/revoke`.
pub async fn revoke_invitation(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    Submitted { viewer, form: _ }: Submitted<Empty>,
) -> Result<Response, PageError> {
    let answer = crate::people::invitations::revoke_invitation(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id),
    )
    .await;
    match answer {
        Ok(_) => Ok(see_other("/members?done=invitation_revoked")),
        Err(error) => refused(&state, &viewer, error, Draft::EMPTY).await,
    }
}

/// The role form.
#[derive(Debug, Deserialize)]
pub struct RoleForm {
    role: String,
}

/// `POST /members/{id}/role`.
pub async fn change_role(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    Submitted { viewer, form }: Submitted<RoleForm>,
) -> Result<Response, PageError> {
    let answer = crate::people::members::change_role(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id),
        ApiJson(ChangeRole { role: form.role }),
    )
    .await;
    match answer {
        Ok(_) => Ok(see_other("/members?done=role")),
        Err(error) => refused(&state, &viewer, error, Draft::EMPTY).await,
    }
}

/// `GET /members/{id}/remove`.
pub async fn remove_form(
    State(state): State<AppState>,
    viewer: Viewer,
    PagePath(id): PagePath<String>,
) -> Result<Response, PageError> {
    viewer.principal.require(Permission::ManageMembers)?;
    let Lists { members, .. } = lists(&state, &viewer).await?;
    let member = members
        .iter()
        .find(|member| member.user.id.to_string() == id)
        .ok_or(ApiError::NotFound("member"))?;
    let others: Vec<&MemberView> = members
        .iter()
        .filter(|other| other.user.id != member.user.id)
        .collect();
    let content = html! {
        p { (member.user.display_name) " loses access at once; their sessions end." }
        form method="post" action={"/members/" (id) "/remove"} {
            (csrf_field(&viewer))
            fieldset {
                legend { "Their keys" }
                label { input type="radio" name="keys" value="revoke" checked; "Revoke their keys" }
                label { input type="radio" name="keys" value="transfer"; "Transfer them to" }
                label for="transfer-to" { "New owner" }
                select id="transfer-to" name="transfer_to" {
                    @for other in &others {
                        option value=(other.user.id.to_string()) { (other.user.display_name) }
                    }
                }
            }
            div.actions {
                button.danger type="submit" { "Remove " (member.user.display_name) }
                a href="/members" { "Cancel" }
            }
        }
    };
    Ok(page::signed_in(
        &viewer,
        Section::Members,
        &format!("Remove {}", member.user.display_name),
        content,
    ))
}

/// The remove form.
#[derive(Debug, Deserialize)]
pub struct RemoveForm {
    keys: String,
    #[serde(default)]
    transfer_to: String,
}

/// `POST /members/{id}/remove`.
pub async fn remove(
    State(state): State<AppState>,
    PagePath(id): PagePath<String>,
    Submitted { viewer, form }: Submitted<RemoveForm>,
) -> Result<Response, PageError> {
    let body = match form.keys.as_str() {
        "revoke" => RemoveMember {
            keys: KeysDecision::Revoke,
            transfer_to: None,
        },
        "transfer" => RemoveMember {
            keys: KeysDecision::Transfer,
            transfer_to: Some(form.transfer_to),
        },
        other => {
            return Err(PageError::BadForm(format!(
                "unknown choice `{other}` for the keys"
            )));
        }
    };
    let answer = crate::people::members::remove_member(
        State(state.clone()),
        viewer.principal.clone(),
        ApiPath(id),
        ApiJson(body),
    )
    .await;
    match answer {
        Ok(_) => Ok(see_other("/members?done=removed")),
        Err(error) => refused(&state, &viewer, error, Draft::EMPTY).await,
    }
}

/// A change the API refused for a reason the person can act on (bad input, a conflict such as
/// the last owner, a member gone meanwhile): the page again, with the reason. Anything else is
/// an error page.
async fn refused(
    state: &AppState,
    viewer: &Viewer,
    error: ApiError,
    draft: Draft<'_>,
) -> Result<Response, PageError> {
    match error {
        ApiError::InvalidRequest(_) | ApiError::Conflict(_) | ApiError::NotFound(_) => {
            let lists = lists(state, viewer).await?;
            let status = error.status();
            Ok(render(
                viewer,
                &lists,
                Extra::Problem(error.to_string()),
                draft,
                status,
            ))
        }
        other => Err(other.into()),
    }
}
