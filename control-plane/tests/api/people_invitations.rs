//! Pending invitations: listed (API and members page) for those who manage members, never
//! with their link; revoked so that their link stops working; refused to roles that may not
//! and to another organization; and decided once when a revocation and an acceptance of one
//! link race. The dashboard's revoke button is driven in Chromium (`tests/browser`).

use axum::http::{Method, StatusCode};
use keyplane_control_plane::bootstrap::create_organization;
use serde_json::Value;

use crate::backends;
use crate::helpers::TestApp;
use crate::helpers::pages::{form, origin};
use crate::helpers::people::{Browser, PASSWORD, token_of};

backends!(
    pending_invitations_are_listed_and_a_revoked_link_stops_working,
    only_those_who_manage_members_revoke_and_never_another_organizations,
    a_revocation_racing_an_acceptance_is_decided_once,
);

/// An invitation sent by `by`: its id and its link. The clock then moves a second, so each
/// invitation is older than the next (the list is oldest first).
async fn invite(app: &TestApp, by: &Browser, email: &str, role: &str) -> (String, String) {
    let invited = app.invite(by, email, role).await;
    app.clock.advance_secs(1);
    invited
}

async fn pending(app: &TestApp, by: &Browser) -> Vec<Value> {
    let reply = app
        .as_browser(by, Method::GET, "/v1/invitations", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body["data"].as_array().expect("data").clone()
}

fn emails(list: &[Value]) -> Vec<&str> {
    list.iter()
        .map(|invitation| invitation["email"].as_str().expect("email"))
        .collect()
}

async fn revoke(app: &TestApp, by: &Browser, id: &str) -> crate::helpers::Reply {
    app.as_browser(by, Method::DELETE, &format!("/v1/invitations/{id}"), None)
        .await
}

async fn pending_invitations_are_listed_and_a_revoked_link_stops_working(app: TestApp) {
    let owner = app.first_owner().await;
    let (stale, _) = invite(&app, &owner, "stale@example.com", "developer").await;
    // A week and a day later (the session has ended meanwhile), that one has expired.
    app.clock.advance_secs(8 * 86_400);
    let owner = app.sign_in_as("owner@example.com").await;
    let (wrong, wrong_link) = invite(&app, &owner, "wrong@example.com", "developer").await;
    invite(&app, &owner, "right@example.com", "viewer").await;
    let (_, joined_link) = invite(&app, &owner, "joined@example.com", "admin").await;
    app.accept(&joined_link, "joined@example.com", "Jo Joined")
        .await;

    // Pending: neither used nor expired (the setup link was used by the owner), oldest first,
    // and never a link or token.
    let list = pending(&app, &owner).await;
    assert_eq!(emails(&list), ["wrong@example.com", "right@example.com"]);
    assert_eq!(list[0]["id"], wrong.as_str());
    assert_eq!(list[0]["role"], "developer");
    assert_eq!(list[0]["invited_by"], owner.user_id.as_str());
    assert!(list[0]["expires_at"].as_str().is_some());
    let text = serde_json::to_string(&list).expect("json");
    assert!(!text.contains(token_of(&wrong_link)) && !text.contains("link"));

    let members_before = app.get("/v1/members").await.body["data"].clone();
    let revoked = revoke(&app, &owner, &wrong).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{:?}", revoked.body);
    assert_eq!(emails(&pending(&app, &owner).await), ["right@example.com"]);
    // The link no longer works, through the API or the page, and nobody joined.
    let accepted = app
        .try_accept(&wrong_link, "wrong@example.com", "Wes Wrong", PASSWORD)
        .await;
    assert_eq!(accepted.status, StatusCode::CONFLICT, "{:?}", accepted.body);
    assert_eq!(accepted.code(), "invitation_revoked");
    let opened = app
        .page_request(
            Method::POST,
            "/invitation/open",
            None,
            Some(&origin()),
            Some(form(&[("token", token_of(&wrong_link))])),
        )
        .await;
    assert_eq!(opened.status, StatusCode::NOT_FOUND);
    assert!(opened.html.contains("was revoked"), "{}", opened.html);
    assert_eq!(app.get("/v1/members").await.body["data"], members_before);

    // Revoked once: again is a conflict; a used one cannot be revoked; an expired one can.
    let again = revoke(&app, &owner, &wrong).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "invitation_revoked");
    let joined_id = app
        .audit()
        .await
        .iter()
        .find(|record| {
            record["action"] == "member_invited"
                && record["details"]["email"] == "joined@example.com"
        })
        .expect("joined's invitation audited")["details"]["invitation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let used = revoke(&app, &owner, &joined_id).await;
    assert_eq!(used.status, StatusCode::CONFLICT);
    assert_eq!(used.code(), "invitation_used");
    let expired = revoke(&app, &owner, &stale).await;
    assert_eq!(expired.status, StatusCode::NO_CONTENT, "{:?}", expired.body);
    for unknown in ["inv_0000000000000000000000", "not-an-id", "%FF"] {
        let reply = revoke(&app, &owner, unknown).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{unknown}");
        assert_eq!(reply.code(), "not_found");
    }

    // Each revocation is audited, by whom and of which invitation.
    let revocations: Vec<Value> = app
        .audit()
        .await
        .into_iter()
        .filter(|record| record["action"] == "invitation_revoked")
        .collect();
    assert_eq!(revocations.len(), 2, "{revocations:?}");
    assert_eq!(revocations[0]["details"]["invitation_id"], wrong.as_str());
    assert_eq!(revocations[0]["details"]["email"], "wrong@example.com");
    assert_eq!(revocations[0]["actor_user_id"], owner.user_id.as_str());
    assert_eq!(revocations[1]["details"]["invitation_id"], stale.as_str());
}

async fn only_those_who_manage_members_revoke_and_never_another_organizations(app: TestApp) {
    let team = app.team().await;
    let (to_owner, _) = invite(&app, &team.owner, "next-owner@example.com", "owner").await;
    let (to_dev, _) = invite(&app, &team.owner, "next-dev@example.com", "developer").await;

    for who in [&team.developer, &team.viewer] {
        let list = app
            .as_browser(who, Method::GET, "/v1/invitations", None)
            .await;
        assert_eq!(list.status, StatusCode::FORBIDDEN);
        let revoked = revoke(&app, who, &to_dev).await;
        assert_eq!(revoked.status, StatusCode::FORBIDDEN);
    }
    // Nor does their members page show the pending invitations, which an admin's does.
    let developers_page = app.open(&team.developer, "/members").await;
    assert_eq!(developers_page.status, StatusCode::OK);
    assert!(!developers_page.html.contains("Pending invitations"));
    assert!(!developers_page.html.contains("next-dev@example.com"));
    let admins_page = app.open(&team.admin, "/members").await;
    assert!(admins_page.html.contains("Pending invitations"));
    assert!(admins_page.html.contains("next-dev@example.com"));
    // Offered a Revoke button only where it would work.
    let form_of = |id: &str| format!("action=\"/members/invitations/{id}/revoke\"");
    assert!(admins_page.html.contains(&form_of(&to_dev)));
    assert!(!admins_page.html.contains(&form_of(&to_owner)));
    assert!(admins_page.html.contains("Only an owner revokes it"));
    let owners_page = app.open(&team.owner, "/members").await;
    assert!(owners_page.html.contains(&form_of(&to_owner)));
    // An admin sees both but, as they may not invite an owner, may not revoke that one.
    assert_eq!(
        emails(&pending(&app, &team.admin).await),
        ["next-owner@example.com", "next-dev@example.com"]
    );
    let refused = revoke(&app, &team.admin, &to_owner).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);

    // Another organization lists only its own and cannot revoke ours: not found, as for an
    // id that exists nowhere.
    let (_, globex_admin) = create_organization(&app.state, "Globex")
        .await
        .expect("second org");
    let globex = globex_admin.expose_secret();
    let theirs = app
        .call(Method::GET, "/v1/invitations", Some(globex), None)
        .await;
    assert_eq!(theirs.status, StatusCode::OK);
    let listed = serde_json::to_string(&theirs.body).expect("json");
    assert!(!listed.contains("next-"), "{listed}");
    let probe = app
        .call(
            Method::DELETE,
            &format!("/v1/invitations/{to_dev}"),
            Some(globex),
            None,
        )
        .await;
    assert_eq!(probe.status, StatusCode::NOT_FOUND);
    assert_eq!(probe.code(), "not_found");

    assert_eq!(
        emails(&pending(&app, &team.owner).await),
        ["next-owner@example.com", "next-dev@example.com"]
    );
    let by_admin = revoke(&app, &team.admin, &to_dev).await;
    assert_eq!(by_admin.status, StatusCode::NO_CONTENT);
    let by_owner = revoke(&app, &team.owner, &to_owner).await;
    assert_eq!(by_owner.status, StatusCode::NO_CONTENT);
    assert!(pending(&app, &team.owner).await.is_empty());
}

async fn a_revocation_racing_an_acceptance_is_decided_once(app: TestApp) {
    use std::time::{Duration, Instant};
    let owner = app.first_owner().await;
    // Round 0 revokes before the acceptance and round 1 accepts before the revocation, one
    // after the other, so each outcome is checked whatever the machine's load; round 1 also
    // times an acceptance. The racing rounds then send the revocation at delays spread over
    // that time, and whichever comes first, neither may half-happen. (Which order a racing
    // round sees depends on the load: on an idle machine most acceptances win.)
    let mut acceptance_takes = Duration::ZERO;
    for round in 0..10u32 {
        let email = format!("racer{round}@example.com");
        let (id, link) = invite(&app, &owner, &email, "developer").await;
        let (accepted, revoked) = match round {
            0 => {
                let revoked = revoke(&app, &owner, &id).await;
                (
                    app.try_accept(&link, &email, "Rae Racer", PASSWORD).await,
                    revoked,
                )
            }
            1 => {
                let started = Instant::now();
                let accepted = app.try_accept(&link, &email, "Rae Racer", PASSWORD).await;
                acceptance_takes = started.elapsed();
                (accepted, revoke(&app, &owner, &id).await)
            }
            _ => {
                tokio::join!(
                    app.try_accept(&link, &email, "Rae Racer", PASSWORD),
                    async {
                        tokio::time::sleep(acceptance_takes * (round - 2) / 7).await;
                        revoke(&app, &owner, &id).await
                    }
                )
            }
        };
        let joined = app.get("/v1/members").await.body["data"]
            .as_array()
            .expect("members")
            .iter()
            .any(|member| member["user"]["email"] == email.as_str());
        match (accepted.status, revoked.status) {
            (StatusCode::CREATED, StatusCode::CONFLICT) => {
                assert_ne!(round, 0, "accepted after its revocation");
                assert_eq!(revoked.code(), "invitation_used");
                assert!(joined, "round {round}: accepted but not a member");
            }
            (StatusCode::CONFLICT, StatusCode::NO_CONTENT) => {
                assert_ne!(round, 1, "revoked after its acceptance");
                assert_eq!(accepted.code(), "invitation_revoked");
                assert!(!joined, "round {round}: revoked, yet a member");
            }
            other => panic!(
                "round {round}: accept {:?} and revoke {:?} ({other:?})",
                accepted.body, revoked.body
            ),
        }
    }
    assert!(pending(&app, &owner).await.is_empty());
}
