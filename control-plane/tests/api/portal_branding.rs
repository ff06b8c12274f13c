//! The organization's branding for the embedded portal through the API: validated, stored and
//! read back as sent, and changed by owners and admins only.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backends;
use crate::helpers::TestApp;
use crate::helpers::people::Team;

backends!(
    branding_is_validated_and_round_trips,
    only_owners_and_admins_change_branding,
);

async fn branding_is_validated_and_round_trips(app: TestApp) {
    let defaults = app.get("/v1/organization/branding").await;
    assert_eq!(defaults.status, StatusCode::OK, "{:?}", defaults.body);
    assert_eq!(
        defaults.body,
        json!({"display_name": "Acme", "logo_url": null, "accent_color": null,
               "frame_ancestors": [], "updated_at": null})
    );
    let put = |body: Value| {
        app.call(
            Method::PUT,
            "/v1/organization/branding",
            Some(&app.admin_key),
            Some(body),
        )
    };
    for (body, field) in [
        (json!({"display_name": ""}), "display_name"),
        (json!({"display_name": "x".repeat(101)}), "display_name"),
        (
            json!({"display_name": "Acme", "logo_url": "http://cdn.example.com/a.png"}),
            "logo_url",
        ),
        (
            json!({"display_name": "Acme", "logo_url": "javascript:alert(1)"}),
            "logo_url",
        ),
        (
            json!({"display_name": "Acme", "accent_color": "red"}),
            "accent_color",
        ),
        (
            json!({"display_name": "Acme", "accent_color": "#12345"}),
            "accent_color",
        ),
        (
            json!({"display_name": "Acme", "frame_ancestors": ["https://app.example.com/path"]}),
            "frame_ancestors",
        ),
        (
            json!({"display_name": "Acme", "frame_ancestors": ["*"]}),
            "frame_ancestors",
        ),
        (
            json!({"display_name": "Acme", "frame_ancestors": (0..11).map(|n| format!("https://a{n}.example.com")).collect::<Vec<_>>()}),
            "frame_ancestors",
        ),
    ] {
        let refused = put(body.clone()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(refused.code(), "invalid_request");
        let message = refused.body["error"]["message"].as_str().expect("message");
        assert!(message.contains(field), "{message} names {field}");
    }
    let unknown = put(json!({"display_name": "Acme", "colour": "#ffffff"})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);

    let stored = put(json!({
        "display_name": "  Acme Portal ",
        "logo_url": "https://cdn.example.com/logo.svg",
        "accent_color": "#FF6600",
        "frame_ancestors": ["https://App.example.com", "http://localhost:3000"],
    }))
    .await;
    assert_eq!(stored.status, StatusCode::OK, "{:?}", stored.body);
    let expected = json!({
        "display_name": "Acme Portal",
        "logo_url": "https://cdn.example.com/logo.svg",
        "accent_color": "#ff6600",
        "frame_ancestors": ["https://app.example.com", "http://localhost:3000"],
        "updated_at": "2027-01-15T08:00:00.000Z",
    });
    assert_eq!(stored.body, expected);
    assert_eq!(app.get("/v1/organization/branding").await.body, expected);
    let org = app.first_org().await.parse().expect("org id");
    let branding = app.store.branding(org).await.expect("branding");
    assert_eq!(branding.display_name, "Acme Portal");
    assert_eq!(branding.frame_ancestors.len(), 2);
    let audit = app.audit().await;
    let last = audit.last().expect("a record");
    assert_eq!(last["action"], "branding_updated");
    assert_eq!(last["details"]["accent_color"], "#ff6600");
    // Unsetting goes back to nothing.
    let cleared = put(json!({"display_name": "Acme"})).await;
    assert_eq!(cleared.body["logo_url"], Value::Null);
    assert_eq!(cleared.body["frame_ancestors"], json!([]));
}

async fn only_owners_and_admins_change_branding(app: TestApp) {
    let Team {
        owner,
        admin,
        developer,
        viewer,
    } = app.team().await;
    let body = json!({"display_name": "Acme Portal"});
    let put_by = |browser| {
        let (app, body) = (&app, body.clone());
        async move {
            app.as_browser(
                browser,
                Method::PUT,
                "/v1/organization/branding",
                Some(body),
            )
            .await
        }
    };
    for browser in [&developer, &viewer] {
        let refused = put_by(browser).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
        let read = app
            .as_browser(browser, Method::GET, "/v1/organization/branding", None)
            .await;
        assert_eq!(read.status, StatusCode::OK);
    }
    let (limited, _) = app
        .create_key(
            json!({"name": "limited", "environment": "live", "scopes": ["api-keys:manage"]}),
        )
        .await;
    let by_key = app
        .call(
            Method::PUT,
            "/v1/organization/branding",
            Some(&limited),
            Some(body.clone()),
        )
        .await;
    assert_eq!(by_key.status, StatusCode::FORBIDDEN);
    for browser in [&owner, &admin] {
        let changed = put_by(browser).await;
        assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    }
}
