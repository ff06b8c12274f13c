//! People in API tests: accepting invitations, signing in, and calls made with a session
//! cookie (with or without the Origin and CSRF token a browser page would send).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use super::{Reply, TestApp};

/// The host the test router is called as (`Origin` must name it for unsafe requests).
pub const HOST: &str = "keyplane.test";

/// A signed-in browser: its cookie and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct Browser {
    /// `name=value` of the session cookie.
    pub cookie: String,
    /// The CSRF token from the sign-in answer.
    pub csrf: String,
    /// The user's id.
    pub user_id: String,
}

/// The token in an invitation link.
pub fn token_of(link: &str) -> &str {
    link.split_once("#token=").expect("a link with a token").1
}

/// A request to this host as a browser sends it: the cookie and the page's `Origin`, each
/// optional.
pub fn browser_request(
    method: Method,
    path: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> axum::http::request::Builder {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request
}

/// The browser a sign-in or an acceptance answered 201 to.
fn signed_in(reply: &Reply) -> Browser {
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    Browser {
        cookie: cookie_of(reply),
        csrf: reply.body["csrf_token"].as_str().expect("csrf").to_owned(),
        user_id: reply.body["user"]["id"].as_str().expect("user").to_owned(),
    }
}

/// The `name=value` part of the reply's `Set-Cookie`.
pub fn cookie_of(reply: &Reply) -> String {
    let header = reply
        .headers
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .expect("a Set-Cookie header");
    header.split(';').next().expect("name=value").to_owned()
}

impl TestApp {
    /// Sends `method path` as a browser page of this host would, with `browser`'s cookie, the
    /// page's Origin and the CSRF token (each can be left out or changed by the caller).
    pub async fn browse(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
        csrf: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = browser_request(method, path, cookie, origin);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("valid request");
        self.send(request).await
    }

    /// A call from `browser`'s page: same origin, with its CSRF token.
    pub async fn as_browser(
        &self,
        browser: &Browser,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let origin = format!("https://{HOST}");
        self.browse(
            method,
            path,
            Some(&browser.cookie),
            Some(&origin),
            Some(&browser.csrf),
            body,
        )
        .await
    }

    /// Tries to accept an invitation link as a new account with `password`.
    pub async fn try_accept(&self, link: &str, email: &str, name: &str, password: &str) -> Reply {
        self.browse(
            Method::POST,
            "/v1/invitations/accept",
            None,
            None,
            None,
            Some(json!({
                "token": token_of(link),
                "email": email,
                "display_name": name,
                "password": password,
            })),
        )
        .await
    }

    /// Accepts an invitation link as a new account; the signed-in browser.
    pub async fn accept(&self, link: &str, email: &str, name: &str) -> Browser {
        signed_in(&self.try_accept(link, email, name, PASSWORD).await)
    }

    /// Tries to sign in as `email` with `password` (`POST /v1/sessions`, no cookie).
    pub async fn try_sign_in(&self, email: &str, password: &str) -> Reply {
        self.browse(
            Method::POST,
            "/v1/sessions",
            None,
            None,
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    /// A new session of the account `email` (password [`PASSWORD`]).
    pub async fn sign_in_as(&self, email: &str) -> Browser {
        signed_in(&self.try_sign_in(email, PASSWORD).await)
    }

    /// The first owner, set up through the setup link.
    pub async fn first_owner(&self) -> Browser {
        self.accept(
            &self.setup_link.clone(),
            "owner@example.com",
            "Olivia Owner",
        )
        .await
    }

    /// The organization the first owner signed up (`org_…`), as `/v1/users/me` names it.
    pub async fn first_org(&self) -> String {
        self.get("/v1/users/me").await.body["organization_id"]
            .as_str()
            .expect("org")
            .to_owned()
    }

    /// The first owner and a member of each other built-in role, each signed in.
    pub async fn team(&self) -> Team {
        let owner = self.first_owner().await;
        let admin = self
            .member(&owner, "ada@example.com", "Ada Admin", "admin")
            .await;
        let developer = self
            .member(&owner, "dev@example.com", "Dan Dev", "developer")
            .await;
        let viewer = self
            .member(&owner, "vic@example.com", "Vic Viewer", "viewer")
            .await;
        Team {
            owner,
            admin,
            developer,
            viewer,
        }
    }

    /// An invitation of `email` with `role`, sent by `by`: its id and its link.
    pub async fn invite(&self, by: &Browser, email: &str, role: &str) -> (String, String) {
        let invited = self
            .as_browser(
                by,
                Method::POST,
                "/v1/invitations",
                Some(json!({"email": email, "role": role})),
            )
            .await;
        assert_eq!(invited.status, StatusCode::CREATED, "{:?}", invited.body);
        let field = |name: &str| invited.body[name].as_str().expect(name).to_owned();
        (field("id"), field("link"))
    }

    /// A member invited by `by` with `role` and signed in.
    pub async fn member(&self, by: &Browser, email: &str, name: &str, role: &str) -> Browser {
        let (_, link) = self.invite(by, email, role).await;
        self.accept(&link, email, name).await
    }
}

/// One signed-in member of each built-in role ([`TestApp::team`]).
pub struct Team {
    pub owner: Browser,
    pub admin: Browser,
    pub developer: Browser,
    pub viewer: Browser,
}

/// The password every test account uses.
pub const PASSWORD: &str = "correct horse battery staple";
