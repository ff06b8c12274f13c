//! `TestApp` helpers of the replication tests: feed requests signed with the edge secret.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use keyplane_shared::sync::{self, SignedRequest};

use super::{Reply, TestApp};

impl TestApp {
    /// `GET path` signed with the edge secret at the test clock's time.
    pub async fn signed_get(&self, path: &str) -> Reply {
        let now = self.state.now().as_millis() / 1000;
        self.signed_get_at(path, path, now).await
    }

    pub async fn signed_get_at(&self, path: &str, signed_path: &str, now: i64) -> Reply {
        let header = sync::sign_now(
            &self.state.edge_secret,
            now,
            &SignedRequest {
                method: "GET",
                path_and_query: signed_path,
                body: &[],
            },
        )
        .expect("CSPRNG");
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(sync::SIGNATURE_HEADER, header)
            .body(Body::empty())
            .expect("request");
        self.send(request).await
    }

    /// The raw bytes of a signed feed answer.
    pub async fn feed_bytes(&self, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        let answer = self.signed_feed(path).await;
        (answer.status, answer.headers, answer.body)
    }
}
