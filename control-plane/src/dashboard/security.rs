//! The headers every dashboard response carries.
//!
//! - `Content-Security-Policy`: scripts, styles and connections from this origin only, no
//!   inline script or style, images from here or `https:` (organization logos), forms posting
//!   here only, no `<base>`, no plugins; `frame-ancestors 'none'` unless the response is a
//!   portal page of an organization that allows origins to frame it: the viewer's extractor
//!   fills the request's [`FramingSlot`] for a portal session (so its error pages may be framed
//!   too), and the portal's entry page fills it for any origin.
//! - `X-Frame-Options: DENY` alongside `frame-ancestors 'none'` (older browsers).
//! - `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`,
//!   `Cross-Origin-Resource-Policy: same-origin`.

use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::middleware::Next;
use axum::response::Response;

/// Where the viewer's extractor leaves the origins allowed to frame the answer (a request
/// extension the middleware reads once the handler has answered).
#[derive(Debug, Clone, Default)]
pub struct FramingSlot(Arc<Mutex<Vec<String>>>);

impl FramingSlot {
    /// Allows `origins` to frame the answer to this request.
    pub fn allow(&self, origins: &[String]) {
        if let Ok(mut slot) = self.0.lock() {
            slot.clear();
            slot.extend_from_slice(origins);
        }
    }

    fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut slot| std::mem::take(&mut *slot))
            .unwrap_or_default()
    }
}

/// The policy for a response framed by `ancestors` (none: never framed).
pub fn content_security_policy(ancestors: &[String]) -> String {
    let frame_ancestors = if ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        ancestors.join(" ")
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; \
         frame-ancestors {frame_ancestors}"
    )
}

/// Adds the headers (middleware on the dashboard's routes).
pub async fn headers(mut request: Request, next: Next) -> Response {
    let slot = FramingSlot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    let ancestors = slot.take();
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy(&ancestors)) {
        headers.insert(CONTENT_SECURITY_POLICY, policy);
    }
    if ancestors.is_empty() {
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_no_inline_script_and_no_framing_by_default() {
        let policy = content_security_policy(&[]);
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(policy.ends_with("frame-ancestors 'none'"), "{policy}");
    }

    #[test]
    fn allowed_origins_become_the_frame_ancestors() {
        let policy = content_security_policy(&[
            "https://app.example.com".into(),
            "https://admin.example.com:8443".into(),
        ]);
        assert!(
            policy.ends_with(
                "frame-ancestors https://app.example.com https://admin.example.com:8443"
            ),
            "{policy}"
        );
    }
}
