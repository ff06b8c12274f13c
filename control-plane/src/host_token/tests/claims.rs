//! The claim checks once the signature verifies: time (`exp`, `nbf`, leeway), issuer,
//! audience, subject and organization, configurable claim names, and the errors' codes.

use super::*;

// --- Claims read ----------------------------------------------------------------------------

#[tokio::test]
async fn name_defaults_to_subject_and_optional_claims_may_be_absent() {
    let tokens = tokens(json!([hs256_issuer()]));
    let minimal = json!({"iss": ISS, "aud": AUD, "sub": "user_2", "exp": NOW + 60, "org": "o"});
    let verified = tokens
        .verify(&hs256(&minimal), NOW)
        .await
        .expect("verifies");
    assert_eq!(verified.display_name, "user_2");
    assert_eq!(verified.email, None);
    assert_eq!(verified.role, None);
    assert_eq!(verified.permissions, None);
}

#[tokio::test]
async fn claim_names_are_configurable() {
    let mut issuer = hs256_issuer();
    issuer["claims"] = json!({"organization": "tenant", "role": "https://app/role"});
    let tokens = tokens(json!([issuer]));
    let claims = with(
        with(without(claims(), "org"), "tenant", json!("org_9")),
        "https://app/role",
        json!("viewer"),
    );
    let verified = tokens.verify(&hs256(&claims), NOW).await.expect("verifies");
    assert_eq!(verified.organization, "org_9");
    assert_eq!(verified.role.as_deref(), Some("viewer"));
}

// --- Time -----------------------------------------------------------------------------------

#[tokio::test]
async fn expired_refused() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&with(claims(), "exp", json!(NOW - 31)));
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::Expired)
    );
}

#[tokio::test]
async fn expired_within_leeway_accepted() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&with(claims(), "exp", json!(NOW - 20)));
    assert!(tokens.verify(&token, NOW).await.is_ok());
}

#[tokio::test]
async fn expiry_follows_the_time_passed_in() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&claims());
    assert!(tokens.verify(&token, NOW + 3600 + 29).await.is_ok());
    assert_eq!(
        tokens.verify(&token, NOW + 3600 + 30).await,
        Err(HostTokenError::Expired)
    );
}

#[tokio::test]
async fn missing_exp_refused() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&without(claims(), "exp"));
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::MissingClaim("exp"))
    );
}

#[tokio::test]
async fn not_yet_valid_refused() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&with(claims(), "nbf", json!(NOW + 60)));
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::NotYetValid)
    );
}

#[tokio::test]
async fn not_before_within_leeway_accepted() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&with(claims(), "nbf", json!(NOW + 20)));
    assert!(tokens.verify(&token, NOW).await.is_ok());
}

#[tokio::test]
async fn configured_leeway_applies() {
    let tokens = tokens(json!([with(hs256_issuer(), "leeway_seconds", json!(0))]));
    let token = hs256(&with(claims(), "exp", json!(NOW)));
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::Expired)
    );
    assert!(tokens.verify(&token, NOW - 1).await.is_ok());
}

// --- Issuer and audience --------------------------------------------------------------------

#[tokio::test]
async fn wrong_issuer_refused() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&with(claims(), "iss", json!("https://evil.example.com")));
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::UnknownIssuer)
    );
}

#[tokio::test]
async fn no_issuers_refuses_everything() {
    let tokens = HostTokens::none();
    assert!(tokens.is_empty());
    assert_eq!(
        tokens.verify(&hs256(&claims()), NOW).await,
        Err(HostTokenError::UnknownIssuer)
    );
}

#[tokio::test]
async fn token_verified_only_with_its_issuers_keys() {
    // Two issuers: a token naming the ES256 one but signed with the HS256 one's secret.
    let mut other = hs256_issuer();
    other["issuer"] = json!("https://other.example.com");
    let tokens = tokens(json!([other, es256_issuer()]));
    let token = sign(Algorithm::ES256, Some("es1"), &es_key(2), &claims());
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::BadSignature)
    );
    let hs_for_es = hs256(&claims());
    assert_eq!(
        tokens.verify(&hs_for_es, NOW).await,
        Err(HostTokenError::AlgorithmNotAllowed)
    );
}

#[tokio::test]
async fn wrong_audience_refused() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&with(claims(), "aud", json!("another-service")));
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::WrongAudience)
    );
}

#[tokio::test]
async fn missing_audience_refused() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&without(claims(), "aud"));
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::MissingClaim("aud"))
    );
}

#[tokio::test]
async fn audience_as_array() {
    let tokens = tokens(json!([hs256_issuer()]));
    let listed = hs256(&with(claims(), "aud", json!(["billing", AUD])));
    assert!(tokens.verify(&listed, NOW).await.is_ok());
    let unlisted = hs256(&with(claims(), "aud", json!(["billing", "search"])));
    assert_eq!(
        tokens.verify(&unlisted, NOW).await,
        Err(HostTokenError::WrongAudience)
    );
}

// --- Subject and organization ---------------------------------------------------------------

#[tokio::test]
async fn missing_sub_refused() {
    let tokens = tokens(json!([hs256_issuer()]));
    for claims in [without(claims(), "sub"), with(claims(), "sub", json!(""))] {
        assert_eq!(
            tokens.verify(&hs256(&claims), NOW).await,
            Err(HostTokenError::MissingClaim("sub"))
        );
    }
}

#[tokio::test]
async fn missing_organization_refused_for_a_deployment_wide_issuer() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&without(claims(), "org"));
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::MissingClaim("organization"))
    );
}

#[tokio::test]
async fn pinned_organization_used_when_the_claim_is_absent() {
    let tokens = tokens(json!([pinned_issuer()]));
    let verified = tokens
        .verify(&hs256(&without(claims(), "org")), NOW)
        .await
        .expect("verifies");
    assert_eq!(verified.organization, "org_pinned");
    assert!(verified.pinned_organization);
    assert!(verified.provision_organizations);
    let same = hs256(&with(claims(), "org", json!("org_pinned")));
    assert_eq!(
        tokens
            .verify(&same, NOW)
            .await
            .expect("verifies")
            .organization,
        "org_pinned"
    );
}

#[tokio::test]
async fn pinned_organization_refuses_another_organization() {
    let tokens = tokens(json!([pinned_issuer()]));
    let token = hs256(&with(claims(), "org", json!("org_other")));
    assert_eq!(
        tokens.verify(&token, NOW).await,
        Err(HostTokenError::WrongOrganization)
    );
}

#[tokio::test]
async fn wrongly_typed_claims_refused() {
    let tokens = tokens(json!([hs256_issuer()]));
    for (name, value, label) in [
        ("exp", json!("soon"), "exp"),
        ("org", json!(7), "organization"),
        ("permissions", json!("keys:read"), "permissions"),
        ("aud", json!([AUD, 1]), "aud"),
    ] {
        assert_eq!(
            tokens
                .verify(&hs256(&with(claims(), name, value)), NOW)
                .await,
            Err(HostTokenError::InvalidClaim(label)),
            "{name}"
        );
    }
}

#[tokio::test]
async fn text_claims_with_control_characters_or_past_255_bytes_are_refused() {
    let tokens = tokens(json!([hs256_issuer()]));
    let long = "a".repeat(MAX_CLAIM_BYTES + 1);
    for (name, value, label) in [
        ("sub", json!("user\u{0}1"), "sub"),
        ("sub", json!(long), "sub"),
        ("org", json!("org\n1"), "organization"),
        ("name", json!("Ann\u{0}"), "name"),
        ("email", json!("a\u{7f}@example.com"), "email"),
        (
            "permissions",
            json!(["keys:read", "keys:\u{0}"]),
            "permissions",
        ),
    ] {
        assert_eq!(
            tokens
                .verify(&hs256(&with(claims(), name, value.clone())), NOW)
                .await,
            Err(HostTokenError::InvalidClaim(label)),
            "{name}: {value}"
        );
    }
    let longest = "a".repeat(MAX_CLAIM_BYTES);
    let taken = tokens
        .verify(&hs256(&with(claims(), "sub", json!(longest))), NOW)
        .await
        .expect("255 bytes are taken");
    assert_eq!(taken.subject.len(), MAX_CLAIM_BYTES);
}

// --- Errors ---------------------------------------------------------------------------------

#[tokio::test]
async fn error_messages_and_codes_name_no_token() {
    let tokens = tokens(json!([hs256_issuer()]));
    let token = hs256(&with(claims(), "aud", json!("x")));
    let error = tokens.verify(&token, NOW).await.expect_err("refused");
    assert_eq!(error.code(), "wrong_audience");
    assert!(!error.to_string().contains(&token));
    assert_eq!(HostTokenError::MissingClaim("sub").code(), "missing_claim");
    assert_eq!(HostTokenError::KeysUnavailable.code(), "keys_unavailable");
}
