//! Tests of host-token verification: each check refuses what it is for, and JWKS caching and
//! rotation against a local server whose document the tests swap.
//!
//! This file holds the shared fixtures (issuer configurations, claims, signing keys, token
//! builders); the tests are grouped by theme in the submodules.

mod algorithms;
mod claims;
mod config;
mod jwks;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://app.example.com";
const AUD: &str = "keyplane";
const SECRET_VAR: &str = "HOST_JWT_SECRET";
const SECRET: &str = "a-host-product-secret-of-40-bytes-length!";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/host_token/fixtures")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).expect("fixture")
}

fn env(name: &str) -> Option<String> {
    (name == SECRET_VAR).then(|| SECRET.to_owned())
}

fn load(config: &Value) -> Result<HostTokens, HostTokenConfigError> {
    HostTokens::from_json(&config.to_string(), &fixtures(), env)
}

fn tokens(issuers: Value) -> HostTokens {
    load(&json!({ "issuers": issuers })).expect("the configuration loads")
}

fn hs256_issuer() -> Value {
    json!({"issuer": ISS, "audience": AUD, "algorithm": "HS256", "secret_env": SECRET_VAR})
}

fn es256_issuer() -> Value {
    json!({
        "issuer": ISS, "audience": AUD, "algorithm": "ES256",
        "public_keys": [{"kid": "es1", "pem_file": "es256-1.pub.pem"}],
    })
}

fn rs256_pem_issuer() -> Value {
    json!({
        "issuer": ISS, "audience": AUD, "algorithm": "RS256",
        "public_keys": [{"kid": "rs1", "pem_file": "rs256-1.pub.pem"}],
    })
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "user_1", "exp": NOW + 3600, "iat": NOW,
        "org": "org_1", "name": "Ada Lovelace", "email": "ada@example.com",
        "role": "admin", "permissions": ["keys:read", "keys:write"],
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    if let Some(object) = claims.as_object_mut() {
        object.remove(name);
    }
    claims
}

fn sign(algorithm: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("signs")
}

fn hs_key() -> EncodingKey {
    EncodingKey::from_secret(SECRET.as_bytes()).expect("a secret")
}

fn es_key(n: u8) -> EncodingKey {
    EncodingKey::from_ec_pem(&fixture(&format!("es256-{n}.key.pem"))).expect("fixture")
}

fn rs_key(n: u8) -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture(&format!("rs256-{n}.key.pem"))).expect("fixture")
}

fn hs256(claims: &Value) -> String {
    sign(Algorithm::HS256, None, &hs_key(), claims)
}

fn es256(claims: &Value) -> String {
    sign(Algorithm::ES256, Some("es1"), &es_key(1), claims)
}

fn rs256(n: u8, kid: &str, claims: &Value) -> String {
    sign(Algorithm::RS256, Some(kid), &rs_key(n), claims)
}

fn b64(value: &Value) -> String {
    BASE64URL.encode(value.to_string())
}

fn pinned_issuer() -> Value {
    let mut issuer = hs256_issuer();
    issuer["organization"] = json!("org_pinned");
    issuer["provision_organizations"] = json!(true);
    issuer
}
