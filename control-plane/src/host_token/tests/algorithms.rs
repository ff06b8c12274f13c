//! Signatures, keys and algorithms: each issuer's pinned algorithm and keys only, `alg`
//! confusion and `none` refused, `kid` selection, and tokens that are not three base64url parts
//! of JSON.

use super::*;

// --- Valid tokens ---------------------------------------------------------------------------

#[tokio::test]
async fn valid_hs256() {
    let tokens = tokens(json!([hs256_issuer()]));
    let verified = tokens
        .verify(&hs256(&claims()), NOW)
        .await
        .expect("verifies");
    assert_eq!(
        verified,
        HostClaims {
            issuer: ISS.to_owned(),
            subject: "user_1".to_owned(),
            display_name: "Ada Lovelace".to_owned(),
            email: Some("ada@example.com".to_owned()),
            organization: "org_1".to_owned(),
            pinned_organization: false,
            provision_organizations: false,
            role: Some("admin".to_owned()),
            permissions: Some(vec!["keys:read".to_owned(), "keys:write".to_owned()]),
            expires_at: NOW + 3600,
        }
    );
}

#[tokio::test]
async fn valid_es256_from_pem_file() {
    let tokens = tokens(json!([es256_issuer()]));
    let verified = tokens
        .verify(&es256(&claims()), NOW)
        .await
        .expect("verifies");
    assert_eq!(verified.subject, "user_1");
    assert_eq!(verified.organization, "org_1");
}

#[tokio::test]
async fn valid_rs256_from_pem_file() {
    let tokens = tokens(json!([rs256_pem_issuer()]));
    let verified = tokens.verify(&rs256(1, "rs1", &claims()), NOW).await;
    assert_eq!(verified.expect("verifies").subject, "user_1");
}

// --- Keys and algorithms --------------------------------------------------------------------

#[tokio::test]
async fn wrong_key_refused() {
    let tokens = tokens(json!([es256_issuer()]));
    // Signed by the other P-256 key, claiming the configured kid.
    let token = sign(Algorithm::ES256, Some("es1"), &es_key(2), &claims());
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::BadSignature)
    );
}

#[tokio::test]
async fn wrong_secret_refused() {
    let tokens = tokens(json!([hs256_issuer()]));
    let key =
        EncodingKey::from_secret(b"another-secret-that-is-long-enough-too!!").expect("a secret");
    let token = sign(Algorithm::HS256, None, &key, &claims());
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::BadSignature)
    );
}

#[tokio::test]
async fn tampered_payload_refused() {
    let tokens = tokens(json!([es256_issuer()]));
    let token = es256(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = with(claims(), "org", json!("org_victim"));
    let tampered = format!("{}.{}.{}", parts[0], b64(&forged), parts[2]);
    assert_eq!(
        tokens.verify(&tampered, NOW).await,
        Err(HostTokenError::BadSignature)
    );
}

#[tokio::test]
async fn alg_none_refused() {
    let tokens = tokens(json!([hs256_issuer(), {
        "issuer": "https://rs.example.com", "audience": AUD, "algorithm": "RS256",
        "public_keys": [{"pem_file": "rs256-1.pub.pem"}],
    }]));
    for issuer in [ISS, "https://rs.example.com"] {
        for header in [json!({"alg": "none"}), json!({"alg": "none", "typ": "JWT"})] {
            let token = format!(
                "{}.{}.",
                b64(&header),
                b64(&with(claims(), "iss", json!(issuer)))
            );
            assert_eq!(
                tokens.verify(&token, NOW).await,
                Err(HostTokenError::AlgorithmNotAllowed),
                "{issuer} {header}"
            );
        }
    }
}

#[tokio::test]
async fn hs_rs_confusion_refused() {
    // The classic attack: HMAC the token with the issuer's public RSA key (PEM) as the secret.
    let tokens = tokens(json!([rs256_pem_issuer()]));
    let public_pem = fixture("rs256-1.pub.pem");
    let token = sign(
        Algorithm::HS256,
        Some("rs1"),
        &EncodingKey::from_secret(&public_pem).expect("a secret"),
        &claims(),
    );
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::AlgorithmNotAllowed)
    );
}

#[tokio::test]
async fn es256_issuer_given_rs256_token_refused() {
    let tokens = tokens(json!([es256_issuer()]));
    let token = rs256(1, "es1", &claims());
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::AlgorithmNotAllowed)
    );
}

#[tokio::test]
async fn algorithm_name_matched_exactly() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let header = b64(&json!({"alg": "hs256", "typ": "JWT"}));
    let renamed = format!("{header}.{}.{}", parts[1], parts[2]);
    assert_eq!(
        tokens.verify(&renamed, NOW).await,
        Err(HostTokenError::AlgorithmNotAllowed)
    );
}

#[tokio::test]
async fn unknown_kid_refused() {
    let tokens = tokens(json!([es256_issuer()]));
    let token = sign(Algorithm::ES256, Some("es9"), &es_key(1), &claims());
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::UnknownKey)
    );
}

#[tokio::test]
async fn kid_chooses_among_several_keys_and_is_required_then() {
    let mut issuer = es256_issuer();
    issuer["public_keys"] = json!([
        {"kid": "es1", "pem_file": "es256-1.pub.pem"},
        {"kid": "es2", "pem_file": "es256-2.pub.pem"},
    ]);
    let tokens = tokens(json!([issuer]));
    let second = sign(Algorithm::ES256, Some("es2"), &es_key(2), &claims());
    assert!(tokens.verify(&second, NOW).await.is_ok());
    let no_kid = sign(Algorithm::ES256, None, &es_key(1), &claims());
    assert_eq!(
        tokens.verify(&no_kid, NOW).await,
        Err(HostTokenError::UnknownKey)
    );
}

#[tokio::test]
async fn single_key_without_kid_takes_tokens_without_kid() {
    let mut issuer = es256_issuer();
    issuer["public_keys"] = json!([{"pem_file": "es256-1.pub.pem"}]);
    let tokens = tokens(json!([issuer]));
    let token = sign(Algorithm::ES256, None, &es_key(1), &claims());
    assert!(tokens.verify(&token, NOW).await.is_ok());
}

// --- Malformed tokens -----------------------------------------------------------------------

#[tokio::test]
async fn malformed_tokens_refused() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&claims());
    let bad_tokens: [&str; 6] = [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        &format!("{token}.x"),
        &format!("!!.{}", token.split_once('.').expect("fixture").1),
    ];
    for bad in bad_tokens {
        assert_eq!(
            tokens.verify(bad, NOW).await,
            Err(HostTokenError::Malformed),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn oversized_token_refused() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&with(
        claims(),
        "padding",
        json!("x".repeat(MAX_TOKEN_BYTES)),
    ));
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::TooLarge)
    );
}

#[tokio::test]
async fn crit_header_refused() {
    let tokens = tokens(json!([hs256_issuer()]));
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp".to_owned()]);
    let token = jsonwebtoken::encode(&header, &claims(), &hs_key()).expect("fixture");
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::Malformed)
    );
}

/// A token minted by PyJWT 2 with the README's example (`jwt.encode(claims, key, algorithm=
/// "ES256", headers={"kid": …})`, this fixture's key and kid, issued at `NOW`): what a host
/// product's usual library makes verifies here.
const PYJWT_ES256: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImVzMSIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2FwcC5leGFtcGxlLmNvbSIsImF1ZCI6ImtleXBsYW5lIiwic3ViIjoidXNlci00MiIsIm5hbWUiOiJIYW5hIiwiZW1haWwiOiJoYW5hQGV4YW1wbGUuY29tIiwib3JnIjoiYWNtZS1jb3JwIiwicm9sZSI6ImFkbWluIiwiaWF0IjoxODAwMDAwMDAwLCJleHAiOjE4MDAwMDAzMDB9.UyrW69wLJYz08XUAQYM2S_BjnvLKuzRGCe1f88PRHjR3f1G0haukT4P1-LHcsISFW9uVgG54TmA6orMqvyBcIQ";

#[tokio::test]
async fn a_token_minted_by_pyjwt_as_in_the_readme_verifies() {
    let tokens = tokens(json!([es256_issuer()]));
    let verified = tokens
        .verify(PYJWT_ES256, NOW + 60)
        .await
        .expect("verifies");
    assert_eq!(verified.subject, "user-42");
    assert_eq!(verified.display_name, "Hana");
    assert_eq!(verified.organization, "acme-corp");
    assert_eq!(verified.role.as_deref(), Some("admin"));
    assert!(
        tokens.verify(PYJWT_ES256, NOW + 400).await.is_err(),
        "expired after 300 s + skew"
    );
}
