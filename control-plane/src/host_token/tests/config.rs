//! The configuration file's checks (key sources, secrets, PEM files, URLs, leeway, unknown
//! fields), loading from a path, and what `Debug` and the issuer summaries show.

use super::*;

// --- Configuration --------------------------------------------------------------------------

fn config_error(issuer: Value) -> HostTokenConfigError {
    match load(&json!({ "issuers": [issuer] })) {
        Ok(_) => panic!("accepted"),
        Err(error) => error,
    }
}

#[test]
fn config_hs256_without_secret_env() {
    let mut issuer = hs256_issuer();
    issuer
        .as_object_mut()
        .expect("fixture")
        .remove("secret_env");
    let error = config_error(issuer.clone());
    assert!(
        matches!(&error, HostTokenConfigError::KeySources { issuer, given } if issuer == ISS && given == "none"),
        "{error}"
    );
    issuer["public_keys"] = json!([{"pem_file": "rs256-1.pub.pem"}]);
    let error = config_error(issuer);
    assert!(
        matches!(
            error,
            HostTokenConfigError::KeySourceMismatch {
                field: "public_keys",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn config_secret_env_unset() {
    let mut issuer = hs256_issuer();
    issuer["secret_env"] = json!("NOT_SET_ANYWHERE");
    let error = config_error(issuer);
    assert!(
        matches!(&error, HostTokenConfigError::SecretUnset { variable, .. } if variable == "NOT_SET_ANYWHERE"),
        "{error}"
    );
}

#[test]
fn config_secret_shorter_than_32_bytes() {
    let config = json!({ "issuers": [hs256_issuer()] }).to_string();
    let short = "31-bytes-is-one-too-few-for-it!";
    assert_eq!(short.len(), 31);
    let error = HostTokens::from_json(&config, &fixtures(), |_| Some(short.to_owned()))
        .expect_err("refused");
    assert!(
        matches!(
            error,
            HostTokenConfigError::SecretTooShort { length: 31, .. }
        ),
        "{error}"
    );
    assert!(!error.to_string().contains(short));
    let exact = "x".repeat(32);
    assert!(HostTokens::from_json(&config, &fixtures(), |_| Some(exact.clone())).is_ok());
}

#[test]
fn config_both_public_keys_and_jwks_url() {
    let mut issuer = es256_issuer();
    issuer["jwks_url"] = json!("https://app.example.com/.well-known/jwks.json");
    let error = config_error(issuer);
    assert!(
        matches!(&error, HostTokenConfigError::KeySources { given, .. } if given == "public_keys, jwks_url"),
        "{error}"
    );
}

#[test]
fn config_secret_env_for_es256_refused() {
    let mut issuer = hs256_issuer();
    issuer["algorithm"] = json!("ES256");
    let error = config_error(issuer);
    assert!(
        matches!(
            error,
            HostTokenConfigError::KeySourceMismatch {
                field: "secret_env",
                algorithm: HostAlgorithm::Es256,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn config_unknown_field() {
    for issuer in [
        with(
            hs256_issuer(),
            "secret",
            json!("inline-secrets-are-not-a-thing"),
        ),
        with(hs256_issuer(), "claims", json!({"organisation": "org"})),
    ] {
        let error = config_error(issuer);
        assert!(matches!(error, HostTokenConfigError::Parse(_)), "{error}");
        assert!(error.to_string().contains("unknown field"), "{error}");
    }
    let error = load(&json!({"issuers": [], "extra": 1})).expect_err("refused");
    assert!(matches!(error, HostTokenConfigError::Parse(_)), "{error}");
}

#[test]
fn config_duplicate_issuer() {
    let error = load(&json!({ "issuers": [hs256_issuer(), es256_issuer()] })).expect_err("refused");
    assert!(
        matches!(&error, HostTokenConfigError::DuplicateIssuer { issuer } if issuer == ISS),
        "{error}"
    );
}

#[test]
fn config_unsupported_algorithm() {
    for algorithm in ["none", "HS512", "hs256", "PS256", "EdDSA"] {
        let error = config_error(with(hs256_issuer(), "algorithm", json!(algorithm)));
        assert!(
            matches!(error, HostTokenConfigError::UnsupportedAlgorithm { .. }),
            "{algorithm}: {error}"
        );
    }
}

#[test]
fn config_jwks_url_must_be_https_or_loopback() {
    let base = json!({"issuer": ISS, "audience": AUD, "algorithm": "RS256"});
    for url in [
        "http://app.example.com/jwks.json",
        "ftp://x/jwks",
        "not a url",
    ] {
        let error = config_error(with(base.clone(), "jwks_url", json!(url)));
        assert!(
            matches!(error, HostTokenConfigError::JwksUrl { .. }),
            "{url}: {error}"
        );
    }
    for url in [
        "https://app.example.com/jwks.json",
        "http://127.0.0.1:8080/jwks.json",
        "http://localhost/jwks.json",
    ] {
        assert!(
            load(&json!({ "issuers": [with(base.clone(), "jwks_url", json!(url))] })).is_ok(),
            "{url}"
        );
    }
}

#[test]
fn config_pem_checks() {
    // An RSA key for an ES256 issuer.
    let mut issuer = es256_issuer();
    issuer["public_keys"] = json!([{"kid": "k", "pem_file": "rs256-1.pub.pem"}]);
    let error = config_error(issuer);
    assert!(
        matches!(error, HostTokenConfigError::PemInvalid { .. }),
        "{error}"
    );
    // A missing file.
    let mut issuer = es256_issuer();
    issuer["public_keys"] = json!([{"pem_file": "absent.pem"}]);
    let error = config_error(issuer);
    assert!(
        matches!(error, HostTokenConfigError::PemRead { .. }),
        "{error}"
    );
    // Several keys: each needs a kid, and kids are unique.
    let mut issuer = es256_issuer();
    issuer["public_keys"] = json!([
        {"kid": "a", "pem_file": "es256-1.pub.pem"},
        {"pem_file": "es256-2.pub.pem"},
    ]);
    let error = config_error(issuer.clone());
    assert!(
        matches!(error, HostTokenConfigError::KidRequired { index: 1, .. }),
        "{error}"
    );
    issuer["public_keys"][1]["kid"] = json!("a");
    let error = config_error(issuer);
    assert!(
        matches!(error, HostTokenConfigError::DuplicateKid { .. }),
        "{error}"
    );
}

#[test]
fn config_private_key_pem_refused() {
    // The host product's signing key given by mistake: refused, and the message shows none of it.
    for (mut issuer, pem_file) in [
        (es256_issuer(), "es256-1.key.pem"),
        (rs256_pem_issuer(), "rs256-1.key.pem"),
    ] {
        issuer["public_keys"] = json!([{"kid": "k", "pem_file": pem_file}]);
        let error = config_error(issuer);
        assert!(
            matches!(&error, HostTokenConfigError::PemPrivateKey { issuer, path }
                if issuer == ISS && path.ends_with(pem_file)),
            "{pem_file}: {error}"
        );
        let message = error.to_string();
        assert!(message.contains("private key"), "{message}");
        assert!(!message.contains("-----BEGIN"), "{message}");
    }
    // Any private-key label, whatever follows it.
    let dir = tempfile::tempdir().expect("fixture");
    let pem = String::from_utf8(fixture("es256-1.key.pem")).expect("fixture");
    let ec = pem.replace("PRIVATE KEY", "EC PRIVATE KEY");
    std::fs::write(dir.path().join("ec.pem"), ec).expect("fixture");
    let mut issuer = es256_issuer();
    issuer["public_keys"] = json!([{"pem_file": "ec.pem"}]);
    let config = json!({ "issuers": [issuer] }).to_string();
    let error = HostTokens::from_json(&config, dir.path(), env).expect_err("refused");
    assert!(
        matches!(error, HostTokenConfigError::PemPrivateKey { .. }),
        "{error}"
    );
}

#[test]
fn config_leeway_bounded() {
    let error = config_error(with(hs256_issuer(), "leeway_seconds", json!(301)));
    assert!(
        matches!(
            error,
            HostTokenConfigError::LeewayTooLarge { leeway: 301, .. }
        ),
        "{error}"
    );
    assert!(
        load(&json!({ "issuers": [with(hs256_issuer(), "leeway_seconds", json!(300))] })).is_ok()
    );
}

#[test]
fn load_reads_pem_paths_relative_to_the_file() {
    let dir = tempfile::tempdir().expect("fixture");
    std::fs::create_dir(dir.path().join("keys")).expect("fixture");
    std::fs::write(dir.path().join("keys/k1.pem"), fixture("es256-1.pub.pem")).expect("fixture");
    let mut issuer = es256_issuer();
    issuer["public_keys"] = json!([{"kid": "k1", "pem_file": "keys/k1.pem"}]);
    let path = dir.path().join("host-tokens.json");
    std::fs::write(&path, json!({ "issuers": [issuer] }).to_string()).expect("fixture");
    let tokens = HostTokens::load(&path).expect("loads");
    assert_eq!(tokens.issuers().len(), 1);
    let error = HostTokens::load(&dir.path().join("absent.json")).expect_err("refused");
    assert!(
        matches!(error, HostTokenConfigError::Read { .. }),
        "{error}"
    );
}

// --- What is shown ----------------------------------------------------------------------------

#[test]
fn debug_does_not_contain_the_secret() {
    let tokens = tokens(json!([
        hs256_issuer(),
        with(es256_issuer(), "issuer", json!("https://es"))
    ]));
    let debug = format!("{tokens:?}");
    assert!(debug.contains(ISS), "{debug}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(!debug.contains("a-host-product"), "{debug}");
    let bytes: Vec<String> = SECRET.bytes().take(4).map(|b| b.to_string()).collect();
    assert!(!debug.contains(&bytes.join(", ")), "{debug}");
}

#[test]
fn issuers_summarized_without_key_material() {
    let tokens = tokens(json!([
        pinned_issuer(),
        with(es256_issuer(), "issuer", json!("https://es"))
    ]));
    assert_eq!(
        tokens.issuers(),
        [
            IssuerSummary {
                issuer: ISS.to_owned(),
                audience: AUD.to_owned(),
                algorithm: HostAlgorithm::Hs256,
                organization: Some("org_pinned".to_owned()),
                provision_organizations: true,
            },
            IssuerSummary {
                issuer: "https://es".to_owned(),
                audience: AUD.to_owned(),
                algorithm: HostAlgorithm::Es256,
                organization: None,
                provision_organizations: false,
            },
        ]
    );
    let shown = serde_json::to_value(tokens.issuers()).expect("fixture");
    assert_eq!(shown[0]["algorithm"], "HS256");
    assert!(!shown.to_string().contains(SECRET));
}

#[test]
fn issuer_summary_schema_names_the_algorithms() {
    use utoipa::PartialSchema as _;
    let algorithm = serde_json::to_value(HostAlgorithm::schema()).expect("fixture");
    assert_eq!(
        algorithm["enum"],
        json!(["HS256", "ES256", "RS256"]),
        "{algorithm}"
    );
    let summary = serde_json::to_value(IssuerSummary::schema()).expect("fixture");
    // serde_json here sorts keys: the names are compared sorted.
    let properties = summary["properties"].as_object().expect("an object schema");
    let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "algorithm",
            "audience",
            "issuer",
            "organization",
            "provision_organizations"
        ],
        "{summary}"
    );
    assert_eq!(
        properties["algorithm"]["$ref"],
        "#/components/schemas/HostAlgorithm"
    );
}
