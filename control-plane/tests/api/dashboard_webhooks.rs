//! The webhooks pages without a browser: an owner adds an endpoint (its secret shown once, a
//! resubmitted form adds nothing), sees its failed attempt and sends the event again, turns it
//! off and on, gives it a new secret, changes its events, sets the expiry reminders and deletes
//! it; a developer is offered none of it and a forged post from them is refused; another
//! organization's endpoint is not found.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::backends;
use crate::helpers::TestApp;
use crate::helpers::pages::{form, origin};

backends!(
    an_owner_manages_webhooks_from_the_dashboard,
    a_developer_is_offered_no_webhooks
);

/// Where nothing answers: deliveries fail with a refused connection.
const NOWHERE: &str = "http://127.0.0.1:9/hooks/keyplane";

async fn an_owner_manages_webhooks_from_the_dashboard(app: TestApp) {
    let owner = app.first_owner().await;
    let empty = app.open(&owner, "/webhooks").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.html.contains("No endpoint yet."));
    assert!(
        empty
            .html
            .contains(r#"<a href="/webhooks" aria-current="page">Webhooks</a>"#)
    );
    assert!(
        empty.html.contains(r#"value="7, 1""#),
        "the default reminders are shown"
    );

    // A URL that is not one: the form again, with the reason and what was typed.
    let refused = app
        .submit(
            &owner,
            "/webhooks",
            "/webhooks",
            &[("url", "ftp://example.com/in"), ("events", "key.created")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.html.contains("role=\"alert\""), "{}", refused.html);
    assert!(refused.html.contains("value=\"ftp://example.com/in\""));

    let list_page = app.open(&owner, "/webhooks").await;
    let (csrf, once) = (list_page.csrf(), list_page.field("once").expect("once"));
    let fields = [
        ("csrf", csrf.as_str()),
        ("once", once.as_str()),
        ("url", NOWHERE),
        ("description", "Billing system"),
        ("events", "key.created"),
        ("events", "key.revoked"),
    ];
    let post = async || {
        app.page_request(
            Method::POST,
            "/webhooks",
            Some(&owner.cookie),
            Some(&origin()),
            Some(form(&fields)),
        )
        .await
    };
    let added = post().await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.html);
    let secret = added.text_of("new-secret").expect("the secret, once");
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(added.html.contains("You will not see it again."));
    assert_eq!(added.headers["cache-control"], "no-store");
    let listed = app.get("/v1/webhooks").await.body;
    let id = listed["items"][0]["id"]
        .as_str()
        .expect("an endpoint")
        .to_owned();
    assert!(
        added
            .html
            .contains(&format!(r#"data-replace-url="/webhooks/{id}""#))
    );
    assert_eq!(
        listed["items"][0]["events"],
        json!(["key.created", "key.revoked"])
    );
    // The same form again adds nothing.
    let again = post().await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location(), "/webhooks?done=resubmitted");
    assert_eq!(
        app.get("/v1/webhooks").await.body["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let base = format!("/webhooks/{id}");
    let page = app.open(&owner, &base).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.html.contains(&secret),
        "the endpoint's page shows its secret"
    );
    assert!(page.html.contains("Enabled"));
    assert!(page.html.contains("Nothing was sent yet."));
    let list = app.open(&owner, "/webhooks").await;
    assert!(list.html.contains(NOWHERE) && list.html.contains("Billing system"));

    // A key is created; the delivery fails; the attempt is listed, and can be sent again.
    app.create_key(json!({"name": "hooked", "environment": "live"}))
        .await;
    app.deliver_due().await;
    let page = app.open(&owner, &base).await;
    assert!(
        page.html.contains("<code>key.created</code>"),
        "{}",
        page.html
    );
    assert!(page.html.contains("connect error"), "{}", page.html);
    let attempts = app.get(&format!("/v1/webhooks/{id}/attempts")).await.body;
    let event = attempts["items"][0]["event_id"]
        .as_str()
        .expect("an attempt")
        .to_owned();
    let sent = app
        .submit(
            &owner,
            &base,
            &format!("{base}/events/{event}/redeliver"),
            &[],
        )
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER);
    assert_eq!(sent.location(), format!("{base}?done=redelivered"));
    app.deliver_due().await;
    let attempts = app.get(&format!("/v1/webhooks/{id}/attempts")).await.body;
    assert_eq!(
        attempts["items"].as_array().map(Vec::len),
        Some(2),
        "{attempts}"
    );

    // Off, and on again.
    let off = app
        .submit(
            &owner,
            &base,
            &format!("{base}/enabled"),
            &[("enabled", "false")],
        )
        .await;
    assert_eq!(off.location(), format!("{base}?done=disabled"));
    assert_eq!(
        app.get(&format!("/v1/{}", &base[1..])).await.body["enabled"],
        false
    );
    let page = app.open(&owner, &format!("{base}?done=disabled")).await;
    assert!(page.html.contains("Endpoint disabled"));
    assert!(page.html.contains(">Enable</button>"));
    let on = app
        .submit(
            &owner,
            &base,
            &format!("{base}/enabled"),
            &[("enabled", "true")],
        )
        .await;
    assert_eq!(on.location(), format!("{base}?done=enabled"));
    assert_eq!(
        app.get(&format!("/v1/{}", &base[1..])).await.body["enabled"],
        true
    );

    // A new secret, shown once; the old one still signs for a day.
    let rotated = app
        .submit(&owner, &base, &format!("{base}/rotate-secret"), &[])
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new_secret = rotated.text_of("new-secret").expect("the new secret");
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    assert!(
        rotated
            .html
            .contains("The previous secret also signs each delivery until")
    );

    // Other events: saved; none at all is refused with the reason.
    let saved = app
        .submit(
            &owner,
            &base,
            &base,
            &[
                ("url", NOWHERE),
                ("description", ""),
                ("events", "key.leaked"),
            ],
        )
        .await;
    assert_eq!(saved.location(), format!("{base}?done=saved"));
    let shown = app.get(&format!("/v1/{}", &base[1..])).await.body;
    assert_eq!(shown["events"], json!(["key.leaked"]));
    assert_eq!(shown["description"], "");
    let none = app.submit(&owner, &base, &base, &[("url", NOWHERE)]).await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    assert!(none.html.contains("role=\"alert\""));

    // Expiry reminders.
    let reminders = app
        .submit(
            &owner,
            "/webhooks",
            "/webhooks/expiry-notices",
            &[("days_before", "30, 7")],
        )
        .await;
    assert_eq!(reminders.location(), "/webhooks?done=expiry");
    assert_eq!(
        app.get("/v1/organization/expiry-notices").await.body["days_before"],
        json!([30, 7])
    );
    let page = app.open(&owner, "/webhooks?done=expiry").await;
    assert!(page.html.contains(r#"value="30, 7""#));
    let bad = app
        .submit(
            &owner,
            "/webhooks",
            "/webhooks/expiry-notices",
            &[("days_before", "30, soon")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.html.contains("`soon` is not a whole number of days"),
        "{}",
        bad.html
    );
    // The field shows what was typed, not the days saved.
    assert!(bad.html.contains(r#"value="30, soon""#), "{}", bad.html);
    let bad = app
        .submit(
            &owner,
            "/webhooks",
            "/webhooks/expiry-notices",
            &[("days_before", "400")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.html
            .contains("400 is not one of 1, 3, 7, 14, 30, 60, 90 days"),
        "{}",
        bad.html
    );
    assert!(bad.html.contains(r#"value="400""#), "{}", bad.html);

    // Deleted after the confirmation.
    let confirm = app.open(&owner, &format!("{base}/delete")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.html.contains(">Delete endpoint</button>"));
    let deleted = app
        .submit(
            &owner,
            &format!("{base}/delete"),
            &format!("{base}/delete"),
            &[],
        )
        .await;
    assert_eq!(deleted.location(), "/webhooks?done=deleted");
    assert_eq!(app.get("/v1/webhooks").await.body["items"], json!([]));
    assert_eq!(app.open(&owner, &base).await.status, StatusCode::NOT_FOUND);

    // Another organization's endpoint is not found from here.
    let (_, globex) = keyplane_control_plane::bootstrap::create_organization(&app.state, "Globex")
        .await
        .expect("second organization");
    let theirs = app
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(globex.expose_secret()),
            Some(json!({"url": NOWHERE, "events": ["key.created"]})),
        )
        .await;
    let their_id = theirs.body["webhook"]["id"]
        .as_str()
        .expect("their endpoint");
    assert_eq!(
        app.open(&owner, &format!("/webhooks/{their_id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let forged = app
        .submit(
            &owner,
            "/webhooks",
            &format!("/webhooks/{their_id}/delete"),
            &[],
        )
        .await;
    assert_eq!(forged.status, StatusCode::NOT_FOUND);
    let still = app
        .call(
            Method::GET,
            &format!("/v1/webhooks/{their_id}"),
            Some(globex.expose_secret()),
            None,
        )
        .await;
    assert_eq!(still.status, StatusCode::OK);
}

async fn a_developer_is_offered_no_webhooks(app: TestApp) {
    let owner = app.first_owner().await;
    let developer = app
        .member(&owner, "dev@example.com", "Dan Dev", "developer")
        .await;
    let keys = app.open(&developer, "/keys").await;
    assert_eq!(keys.status, StatusCode::OK);
    assert!(
        !keys.html.contains("href=\"/webhooks\""),
        "the developer is offered Webhooks"
    );
    let page = app.open(&developer, "/webhooks").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let forged = app
        .submit(
            &developer,
            "/keys",
            "/webhooks",
            &[("url", NOWHERE), ("events", "key.created")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let reminders = app
        .submit(
            &developer,
            "/keys",
            "/webhooks/expiry-notices",
            &[("days_before", "1")],
        )
        .await;
    assert_eq!(reminders.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/v1/webhooks").await.body["items"], json!([]));
    assert_eq!(
        app.get("/v1/organization/expiry-notices").await.body["default"],
        true
    );
}
