//! Tests of the settings: defaults, each invalid value named, and `wrangler.toml` kept true.

use super::*;

fn base(name: &str) -> Option<String> {
    let value = match name {
        "KEYPLANE_PEPPERS" => format!("1:{}", BASE64.encode([7u8; 32])),
        "KEYPLANE_EDGE_SECRET" => BASE64.encode([9u8; 32]),
        "ORIGIN_URL" => "http://127.0.0.1:9/".into(),
        "CONTROL_PLANE_URL" => "https://keyplane.example.com".into(),
        _ => return None,
    };
    Some(value)
}

/// The settings of [`base`] with `name` set to `value`.
fn with_var(name: &str, value: &str) -> Result<Settings, SettingsError> {
    Settings::from_lookup(|asked| {
        if asked == name {
            Some(value.to_owned())
        } else {
            base(asked)
        }
    })
}

#[test]
fn a_minimal_configuration_gets_the_documented_defaults() {
    let settings = Settings::from_lookup(base).expect("valid");
    assert_eq!(settings.origin_url, "http://127.0.0.1:9");
    assert_eq!(settings.decision.prefix.as_str(), "sk");
    assert_eq!(settings.decision.environments, AcceptedEnvironments::Both);
    assert_eq!(settings.decision.default_rate_limit, RateLimit::DEFAULT);
    assert_eq!(settings.edge_name, "edge");
    assert_eq!(settings.pull_interval_ms, 10_000);
    assert_eq!(settings.replica_freshness_ms, 100.0);
    assert_eq!(settings.replica_keep_while_rebuilding_bytes, 32 << 20);
    assert!(!settings.local_dev);
    assert_eq!(settings.rate_limit_mode, RateLimitMode::Isolate);
    assert_eq!(settings.rate_limit_headers, RateLimitHeaders::Always);
    assert_eq!(
        settings.usage,
        UsageSettings {
            enabled: true,
            buffer_max: 10_000,
            flush_ms: 1_000.0
        }
    );
}

#[test]
fn each_invalid_setting_is_named_without_its_value() {
    let cases: [(&str, &str); 20] = [
        ("CONTROL_PLANE_URL", "http://127.0.0.1:7070"),
        ("REPLICA_KEEP_WHILE_REBUILDING_MB", "2048"),
        ("KEYPLANE_LOCAL_DEV", "yes"),
        ("REPLICA_FRESHNESS_MS", "0"),
        ("REPLICA_REFRESH_MS", "1000"),
        ("KEYPLANE_PEPPERS", "1:c2hvcnQ="),
        ("KEYPLANE_EDGE_SECRET", "c2hvcnQ="),
        ("ACCEPTED_ENVIRONMENTS", "prod"),
        (
            "ROUTE_POLICY",
            "{\"rules\":[{\"path\":\"/x\",\"scopes\":[\"BAD\"]}]}",
        ),
        ("ORIGIN_URL", "ftp://x"),
        ("ORIGIN_URL", "https://api.example.com/v1?tenant=7"),
        ("ORIGIN_URL", "https://api.example.com/#top"),
        ("ORIGIN_URL", "https://"),
        ("EDGE_URL", "edge.example.com"),
        ("RATE_LIMIT_BURST", "0"),
        ("EDGE_NAME", "a b"),
        ("RATE_LIMIT_MODE", "cluster"),
        ("RATE_LIMIT_HEADERS", "never"),
        ("USAGE_REPORTING", "yes"),
        ("USAGE_BUFFER_MAX", "-1"),
    ];
    for (name, value) in cases {
        let error = with_var(name, value)
            .err()
            .unwrap_or_else(|| panic!("{name}={value} accepted"));
        assert!(error.name.contains(name), "{error}");
        if name.starts_with("KEYPLANE_") {
            // Secrets: the message never repeats the value.
            assert!(!error.to_string().contains(value), "{error}");
        }
    }
    let missing = Settings::from_lookup(|asked| {
        (asked != "KEYPLANE_EDGE_SECRET")
            .then(|| base(asked))
            .flatten()
    });
    assert_eq!(missing.err().map(|e| e.name), Some("KEYPLANE_EDGE_SECRET"));
}

#[test]
fn base_urls_are_taken_in_the_url_parsers_form_without_a_trailing_slash() {
    let origin = |value: &str| with_var("ORIGIN_URL", value).map(|settings| settings.origin_url);
    for (given, taken) in [
        ("http://127.0.0.1:9/", "http://127.0.0.1:9"),
        ("https://API.example.com", "https://api.example.com"),
        (
            "https://api.example.com/base/",
            "https://api.example.com/base",
        ),
        (
            "https://api.example.com/a b",
            "https://api.example.com/a%20b",
        ),
        // A value pasted with its line end, or broken over two lines: the parser drops
        // newlines and tabs, so the edge's forward plan (newline-separated) stays whole.
        ("https://api.example.com\n", "https://api.example.com"),
        (
            "https://api.exam\nple.com/v\t1",
            "https://api.example.com/v1",
        ),
    ] {
        assert_eq!(origin(given).as_deref().ok(), Some(taken), "{given:?}");
    }
}

#[test]
fn plain_http_to_the_control_plane_needs_the_local_development_switch() {
    let with = |local_dev: Option<&str>| {
        Settings::from_lookup(|asked| match asked {
            "CONTROL_PLANE_URL" => Some("http://127.0.0.1:7070".into()),
            "KEYPLANE_LOCAL_DEV" => local_dev.map(str::to_owned),
            _ => base(asked),
        })
    };
    assert_eq!(
        with(None).err().map(|error| error.name),
        Some("CONTROL_PLANE_URL")
    );
    assert_eq!(
        with(Some("false")).err().map(|error| error.name),
        Some("CONTROL_PLANE_URL")
    );
    let settings = with(Some("true")).expect("allowed in local development");
    assert!(settings.local_dev);
    assert_eq!(settings.control_plane_url, "http://127.0.0.1:7070");
}

#[test]
fn environments_and_policy_are_parsed() {
    let settings = Settings::from_lookup(|asked| match asked {
        "ACCEPTED_ENVIRONMENTS" => Some("live".into()),
        "ROUTE_POLICY" => Some(
            r#"{"rules":[{"path":"/health","public":true}],"default_scopes":["contacts:read"]}"#
                .into(),
        ),
        _ => base(asked),
    })
    .expect("valid");
    assert_eq!(
        settings.decision.environments,
        AcceptedEnvironments::LiveOnly
    );
    assert!(matches!(
        &*settings.decision.policy.requirement("GET", "/health"),
        keyplane_shared::policy::Requirement::Public
    ));
}

#[test]
fn path_normalization_is_strict_unless_set_to_resolve() {
    let with = |value| with_var("PATH_NORMALIZATION", value);
    let default = Settings::from_lookup(base).expect("valid");
    assert_eq!(default.path_normalization, PathNormalization::Strict);
    assert_eq!(
        with("strict").expect("valid").path_normalization,
        PathNormalization::Strict
    );
    assert_eq!(
        with(" resolve ").expect("valid").path_normalization,
        PathNormalization::Resolve
    );
    let error = with("lenient").err().expect("an unknown mode is refused");
    assert_eq!(error.name, "PATH_NORMALIZATION");
}

#[test]
fn rate_limit_fields_go_on_every_answer_unless_set_to_429s_only() {
    let with = |value| with_var("RATE_LIMIT_HEADERS", value);
    assert_eq!(
        with("always").expect("valid").rate_limit_headers,
        RateLimitHeaders::Always
    );
    assert_eq!(
        with(" on_429 ").expect("valid").rate_limit_headers,
        RateLimitHeaders::On429
    );
    for wrong in ["on429", "429", "ALWAYS", "never"] {
        let error = with(wrong).err().expect("an unknown value is refused");
        assert_eq!(error.name, "RATE_LIMIT_HEADERS");
        assert_eq!(
            error.to_string(),
            "edge setting RATE_LIMIT_HEADERS: must be `always` or `on_429`"
        );
    }
}

#[test]
fn pepper_lists_keep_their_order() {
    let text = format!(
        "2:{},1:{}",
        BASE64.encode([1u8; 32]),
        BASE64.encode([2u8; 32])
    );
    let peppers = parse_peppers(&text).expect("valid");
    let ids: Vec<u8> = peppers.iter().map(|p| p.id().0).collect();
    assert_eq!(ids, [2, 1]);
    assert!(parse_peppers("").is_err());
    assert!(parse_peppers("x:AAAA").is_err());
}

/// The `NAME = "value"` lines of `wrangler.toml`'s `[vars]` table.
fn wrangler_vars() -> Vec<(String, String)> {
    let toml = include_str!("../../../wrangler.toml");
    let vars = toml.split("\n[vars]\n").nth(1).expect("a [vars] table");
    vars.lines()
        .take_while(|line| !line.starts_with('['))
        .filter_map(|line| {
            let (name, value) = line.split_once(" = ")?;
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            (!name.starts_with('#')).then(|| (name.to_owned(), value.to_owned()))
        })
        .collect()
}

#[test]
fn wrangler_toml_documents_every_setting_and_its_vars_are_valid() {
    let toml = include_str!("../../../wrangler.toml");
    let asked = std::cell::RefCell::new(Vec::new());
    Settings::from_lookup(|name| {
        asked.borrow_mut().push(name.to_owned());
        base(name)
    })
    .expect("valid");
    for name in asked.into_inner() {
        // Replaced settings are read only to refuse them.
        if name != "REPLICA_REFRESH_MS" {
            assert!(
                toml.contains(&name),
                "{name} is not documented in wrangler.toml"
            );
        }
    }
    let vars = wrangler_vars();
    assert!(
        vars.len() >= 15,
        "the [vars] lines were not found: {vars:?}"
    );
    let settings = Settings::from_lookup(|name| {
        vars.iter()
            .find(|(var, _)| var == name)
            .map(|(_, value)| value.clone())
            .or_else(|| (name == "KEYPLANE_LOCAL_DEV").then(|| "true".to_owned()))
            .or_else(|| base(name))
    })
    .expect("wrangler.toml's vars are valid");
    assert_eq!(settings.replica_keep_while_rebuilding_bytes, 32 << 20);
    assert_eq!(settings.replica_freshness_ms, 100.0);
}
