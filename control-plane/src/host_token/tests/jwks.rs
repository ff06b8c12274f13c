//! JWKS issuers against a local server whose document the tests swap: caching, rotation,
//! refetch limits, a host that is down or serves garbage, and which JWKs are taken.

use jsonwebtoken::jwk::Jwk;

use super::*;
use crate::fetched_keys::document_server::DocumentServer;
use crate::host_token::jwks;

fn jwks_issuer(server: &JwksServer) -> Value {
    json!({
        "issuer": ISS, "audience": AUD, "algorithm": "RS256",
        "jwks_url": format!("http://127.0.0.1:{}/jwks.json", server.port),
    })
}

/// The public JWK of fixture key pair `n`, named `kid`.
fn rs_jwk(n: u8, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(&rs_key(n), Algorithm::RS256).expect("fixture");
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).expect("fixture")
}

/// A JWKS server on 127.0.0.1: the test swaps its document, turns it down, counts requests.
struct JwksServer {
    port: u16,
    server: DocumentServer,
}

impl JwksServer {
    async fn start(keys: Vec<Value>) -> Self {
        let server = DocumentServer::start(json!({ "keys": keys })).await;
        JwksServer {
            port: server.port,
            server,
        }
    }

    fn serve(&self, keys: Vec<Value>) {
        self.server.serve(json!({ "keys": keys }));
    }

    fn requests(&self) -> usize {
        self.server.requests()
    }

    fn set_down(&self, down: bool) {
        self.server.set_down(down);
    }

    fn set_delay(&self, delay: std::time::Duration) {
        self.server.set_delay(delay);
    }
}

// --- JWKS -----------------------------------------------------------------------------------

#[tokio::test]
async fn valid_rs256_from_jwks() {
    let server = JwksServer::start(vec![rs_jwk(1, "rs1")]).await;
    let tokens = tokens(json!([jwks_issuer(&server)]));
    let verified = tokens.verify(&rs256(1, "rs1", &claims()), NOW).await;
    assert_eq!(verified.expect("verifies").subject, "user_1");
    assert_eq!(server.requests(), 1);
    // Cached: a second token fetches nothing.
    tokens
        .verify(&rs256(1, "rs1", &claims()), NOW + 5)
        .await
        .expect("verifies");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn jwks_rotation() {
    let server = JwksServer::start(vec![rs_jwk(1, "old")]).await;
    let tokens = tokens(json!([jwks_issuer(&server)]));
    let old = rs256(1, "old", &claims());
    let new = rs256(2, "new", &claims());

    tokens.verify(&old, NOW).await.expect("verifies");
    assert_eq!(server.requests(), 1);

    // The host adds its new key; a token with the new kid makes Keyplane refetch at once.
    server.serve(vec![rs_jwk(1, "old"), rs_jwk(2, "new")]);
    tokens.verify(&new, NOW + 60).await.expect("verifies");
    assert_eq!(server.requests(), 2);

    // Another unknown kid within 30 s of that fetch does not fetch again.
    let random = rs256(2, "random", &claims());
    assert_eq!(
        tokens.verify(&random, NOW + 70).await,
        Err(HostTokenError::UnknownKey)
    );
    assert_eq!(server.requests(), 2);

    // The host removes the old key: cached, it still verifies until the next refresh...
    server.serve(vec![rs_jwk(2, "new")]);
    tokens.verify(&old, NOW + 80).await.expect("verifies");
    assert_eq!(server.requests(), 2);

    // ...which comes once the keys are 10 minutes old: the token that finds them stale is
    // checked against the copy held while the refresh runs behind it; the next one is not.
    tokens
        .verify(&old, NOW + 60 + 600)
        .await
        .expect("verifies against the copy held");
    tokens.settled().await;
    assert_eq!(server.requests(), 3);
    assert_eq!(
        tokens.verify(&old, NOW + 60 + 601).await,
        Err(HostTokenError::UnknownKey)
    );
    tokens.verify(&new, NOW + 60 + 601).await.expect("verifies");
    assert_eq!(server.requests(), 3);

    // Unknown kids after the interval do fetch again, once.
    assert_eq!(
        tokens.verify(&random, NOW + 60 + 640).await,
        Err(HostTokenError::UnknownKey)
    );
    assert_eq!(
        tokens.verify(&random, NOW + 60 + 641).await,
        Err(HostTokenError::UnknownKey)
    );
    assert_eq!(server.requests(), 4);
}

#[tokio::test]
async fn a_slow_host_holds_up_only_tokens_the_copy_held_cannot_verify() {
    let server = JwksServer::start(vec![rs_jwk(1, "rs1")]).await;
    let tokens = tokens(json!([jwks_issuer(&server)]));
    let token = rs256(1, "rs1", &claims());
    tokens.verify(&token, NOW).await.expect("verifies");
    // The host now takes 3 s to answer, with a second key in its document.
    server.set_delay(std::time::Duration::from_secs(3));
    server.serve(vec![rs_jwk(1, "rs1"), rs_jwk(2, "rs2")]);
    // The copy is stale: tokens it verifies are answered at once while it is refreshed.
    let started = std::time::Instant::now();
    for n in 0..5 {
        tokens
            .verify(&token, NOW + 700 + n)
            .await
            .expect("verifies");
    }
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    // A token naming a key the copy lacks waits for that refresh, which brings it.
    let second = rs256(2, "rs2", &claims());
    tokens.verify(&second, NOW + 706).await.expect("verifies");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn jwks_server_down_keeps_cached_keys() {
    let server = JwksServer::start(vec![rs_jwk(1, "rs1")]).await;
    let tokens = tokens(json!([jwks_issuer(&server)]));
    let token = rs256(1, "rs1", &claims());
    tokens.verify(&token, NOW).await.expect("verifies");
    server.set_down(true);
    // Stale: a refresh is tried, fails, and the cached key still verifies.
    tokens.verify(&token, NOW + 700).await.expect("verifies");
    tokens.settled().await;
    assert_eq!(server.requests(), 2);
    // The failed refresh is not retried on every request.
    tokens.verify(&token, NOW + 710).await.expect("verifies");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn jwks_garbage_keeps_cached_keys() {
    let server = JwksServer::start(vec![rs_jwk(1, "rs1")]).await;
    let tokens = tokens(json!([jwks_issuer(&server)]));
    let token = rs256(1, "rs1", &claims());
    tokens.verify(&token, NOW).await.expect("verifies");
    // A document with no usable key (an EC key and a symmetric one for an RS256 issuer).
    let mut ec = serde_json::to_value(
        Jwk::from_encoding_key(&es_key(1), Algorithm::ES256).expect("fixture"),
    )
    .expect("fixture");
    ec["kid"] = json!("rs1");
    server.serve(vec![
        ec,
        json!({"kty": "oct", "kid": "rs1", "k": "c2VjcmV0"}),
    ]);
    tokens.verify(&token, NOW + 700).await.expect("verifies");
    tokens.settled().await;
    assert_eq!(server.requests(), 2);
    tokens.verify(&token, NOW + 701).await.expect("verifies");
}

#[tokio::test]
async fn jwks_unreachable_without_keys_is_keys_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("fixture");
        listener.local_addr().expect("fixture").port()
    };
    let tokens = tokens(json!([{
        "issuer": ISS, "audience": AUD, "algorithm": "RS256",
        "jwks_url": format!("http://127.0.0.1:{port}/jwks.json"),
    }]));
    assert_eq!(
        tokens.verify(&rs256(1, "rs1", &claims()), NOW).await,
        Err(HostTokenError::KeysUnavailable)
    );
}

#[test]
fn jwks_keys_of_other_types_and_uses_ignored() {
    let mut enc = rs_jwk(1, "enc");
    enc["use"] = json!("enc");
    let mut other_alg = rs_jwk(1, "ps");
    other_alg["alg"] = json!("PS256");
    let document = json!({"keys": [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        enc,
        other_alg,
        rs_jwk(2, "sig"),
        rs_jwk(1, "sig"),
    ]});
    let keys = jwks::parse(document.to_string().as_bytes(), HostAlgorithm::Rs256).expect("fixture");
    let kids: Vec<_> = keys.iter().map(|key| key.kid.as_deref()).collect();
    assert_eq!(kids, [Some("sig")]);
    let ec = serde_json::to_value(
        Jwk::from_encoding_key(&es_key(1), Algorithm::ES256).expect("fixture"),
    )
    .expect("fixture");
    let keys = jwks::parse(
        json!({"keys": [ec]}).to_string().as_bytes(),
        HostAlgorithm::Es256,
    )
    .expect("fixture");
    assert_eq!(keys.len(), 1);
}

#[tokio::test]
async fn es256_from_jwks() {
    let mut jwk = serde_json::to_value(
        Jwk::from_encoding_key(&es_key(1), Algorithm::ES256).expect("fixture"),
    )
    .expect("fixture");
    jwk["kid"] = json!("es1");
    let server = JwksServer::start(vec![jwk]).await;
    let mut issuer = jwks_issuer(&server);
    issuer["algorithm"] = json!("ES256");
    let tokens = tokens(json!([issuer]));
    assert!(tokens.verify(&es256(&claims()), NOW).await.is_ok());
}
