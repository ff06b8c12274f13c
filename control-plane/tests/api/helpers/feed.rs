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

    /// `GET path`, sent with the signature of a GET of `signed_path` at `now` (seconds).
    pub async fn signed_get_at(&self, path: &str, signed_path: &str, now: i64) -> Reply {
        let (request, _) = self.signed_get_request(path, signed_path, now);
        self.send(request).await
    }

    /// A `GET path` carrying the signature of a GET of `signed_path` at `now` (seconds), and the
    /// signature's nonce (the answer is signed for it).
    pub fn signed_get_request(
        &self,
        path: &str,
        signed_path: &str,
        now: i64,
    ) -> (Request<Body>, [u8; sync::NONCE_LEN]) {
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
        let nonce = sync::nonce_of(&header).expect("a nonce");
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(sync::SIGNATURE_HEADER, header)
            .body(Body::empty())
            .expect("request");
        (request, nonce)
    }

    /// The raw bytes of a signed feed answer.
    pub async fn feed_bytes(&self, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        let answer = self.signed_feed(path).await;
        (answer.status, answer.headers, answer.body)
    }
}
