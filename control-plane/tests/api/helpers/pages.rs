//! Dashboard pages in API tests: what a browser sends (cookie, Origin, form fields with the
//! page's CSRF token) and the HTML it gets back.

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use super::TestApp;
use super::people::{Browser, HOST, browser_request};

/// A page's answer.
#[derive(Debug)]
pub struct Page {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The HTML.
    pub html: String,
}

impl Page {
    /// The `Location` of a redirect.
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first `name="csrf"` field on the page.
    pub fn csrf(&self) -> String {
        self.field("csrf").expect("a form with a CSRF field")
    }

    /// The value of the first hidden field `name` on the page.
    pub fn field(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.html.find(&marker)? + marker.len();
        let end = self.html[start..].find('"')? + start;
        Some(self.html[start..end].to_owned())
    }

    /// The text of the element with `id` (up to the next `<`).
    pub fn text_of(&self, id: &str) -> Option<String> {
        let marker = format!("id=\"{id}\"");
        let at = self.html.find(&marker)?;
        let start = self.html[at..].find('>')? + at + 1;
        let end = self.html[start..].find('<')? + start;
        Some(self.html[start..end].to_owned())
    }
}

/// The page origin a browser sends.
pub fn origin() -> String {
    format!("https://{HOST}")
}

/// `application/x-www-form-urlencoded` from pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    serde_html_form::to_string(pairs).expect("encodable")
}

impl TestApp {
    /// Sends a page request: `cookie`, `origin` and a form body are each optional.
    pub async fn page_request(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
        body: Option<String>,
    ) -> Page {
        let request = browser_request(method, path, cookie, origin);
        let request = match body {
            Some(body) => request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body)),
            None => request.body(Body::empty()),
        }
        .expect("valid request");
        let response = keyplane_control_plane::app(self.state.clone())
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Page {
            status,
            headers,
            html: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// `GET path` as `browser`.
    pub async fn open(&self, browser: &Browser, path: &str) -> Page {
        self.page_request(Method::GET, path, Some(&browser.cookie), None, None)
            .await
    }

    /// Posts `pairs` to `path` as `browser`'s page would: same origin, with the CSRF token (and
    /// the one-submission token, when it has one) of the page at `from` added.
    pub async fn submit(
        &self,
        browser: &Browser,
        from: &str,
        path: &str,
        pairs: &[(&str, &str)],
    ) -> Page {
        let page = self.open(browser, from).await;
        let csrf = page.csrf();
        let once = page.field("once").unwrap_or_default();
        let mut all: Vec<(&str, &str)> = vec![("csrf", csrf.as_str()), ("once", once.as_str())];
        all.extend_from_slice(pairs);
        self.page_request(
            Method::POST,
            path,
            Some(&browser.cookie),
            Some(&origin()),
            Some(form(&all)),
        )
        .await
    }
}
