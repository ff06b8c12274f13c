//! The tests of the document's patterns: every string a pattern generates is taken by the
//! validator it states (property tests), and the patterns refuse what they must (the fixed
//! roles, private webhook hosts, ids beyond 128 bits, another deployment's key prefix).

use keyplane_shared::Scope;
use keyplane_shared::ids::EventId;
use proptest::prelude::*;
use regex::Regex;

use super::*;

fn matches(pattern: &str, text: &str) -> bool {
    Regex::new(pattern).expect("a valid pattern").is_match(text)
}

proptest! {
    #![proptest_config(property_config())]

    #[test]
    fn every_scope_of_the_pattern_parses(text in strings(&scope_pattern())) {
        prop_assert!(Scope::parse(&text).is_ok(), "{text}");
    }

    #[test]
    fn every_role_name_of_the_pattern_parses(text in strings(&role_name_pattern())) {
        prop_assert!(crate::access::RoleName::parse(&text).is_ok(), "{text}");
    }

    #[test]
    fn every_changeable_role_of_the_pattern_is_a_custom_role_or_developer(
        text in strings(&changeable_role_pattern())
    ) {
        use crate::access::{BuiltinRole, RoleName};
        let role = RoleName::parse(&text);
        prop_assert!(
            matches!(role, Ok(RoleName::Custom(_) | RoleName::Builtin(BuiltinRole::Developer))),
            "{text}"
        );
    }

    #[test]
    fn every_client_address_of_the_pattern_is_taken(text in strings(&client_address_pattern())) {
        prop_assume!(text.len() <= crate::input::ip::MAX_IP_BYTES);
        prop_assert!(crate::input::ip::ip(&text).is_ok(), "{text:?}");
    }

    #[test]
    fn every_client_address_list_of_the_pattern_is_taken(
        text in strings(&client_address_list_pattern())
    ) {
        prop_assert!(crate::input::ip::ip_list(&text).is_ok(), "{text:?}");
    }

    #[test]
    fn every_id_of_the_pattern_parses(digits in strings(&id_digits_pattern())) {
        prop_assert!(EventId::parse(&format!("evt_{digits}")).is_ok(), "{digits}");
    }
}

#[test]
fn the_scope_pattern_is_the_grammar() {
    let pattern = scope_pattern();
    for text in [
        "admin:full",
        "contacts:read",
        "contacts:*",
        "api-keys:manage",
        "a:b",
        "admins:read",
        "adm:x",
        "0.x_y-z:1",
    ] {
        assert!(matches(&pattern, text), "{text}");
        assert!(Scope::parse(text).is_ok(), "{text}");
    }
    for text in [
        "admin:read",
        "admin:*",
        "",
        ":",
        "contacts",
        "Contacts:read",
        "-x:read",
        "x:*y",
        "a:b:c",
        &format!("{}:read", "r".repeat(65)),
    ] {
        assert!(!matches(&pattern, text), "{text}");
        assert!(Scope::parse(text).is_err(), "{text}");
    }
}

#[test]
fn the_fixed_roles_are_outside_the_changeable_ones() {
    let pattern = changeable_role_pattern();
    for text in ["developer", "owners", "admi", "view", "ops", "o", "a-b_c"] {
        assert!(matches(&pattern, text), "{text}");
    }
    for text in [
        "owner",
        "admin",
        "viewer",
        "",
        "Ops",
        "1ops",
        &"r".repeat(41),
    ] {
        assert!(!matches(&pattern, text), "{text}");
    }
}

#[test]
fn webhook_urls_name_public_hosts() {
    let pattern = webhook_url_pattern(false);
    for text in [
        "https://hooks.example.com/in?x=1#top",
        "https://a.LocalHosts:8443",
    ] {
        assert!(matches(&pattern, text), "{text}");
    }
    for text in [
        "https://localhost/in",
        "https://api.localhost/in",
        "https://api.LOCALHOST/",
        "https://127.0.0.1/in",
        "https://10.0.0.7:8080/",
        "http://hooks.example.com/",
        "https://hooks.example.com./",
        "https://user@hooks.example.com/",
    ] {
        assert!(!matches(&pattern, text), "{text}");
    }
}

#[test]
fn ids_beyond_128_bits_are_outside_the_pattern() {
    let pattern = format!("^{}$", id_digits_pattern());
    assert!(matches(&pattern, "7n42DGM5Tflk9n8mt7Fhc7"));
    assert!(matches(&pattern, "0000000000000000000000"));
    assert!(!matches(&pattern, "7n42DGM5Tflk9n8mt7Fhc8"));
    assert!(!matches(&pattern, &"z".repeat(22)));
    assert!(EventId::parse(&format!("evt_{}", "z".repeat(22))).is_err());
}

#[test]
fn a_full_key_has_the_deployment_prefix() {
    let pattern = full_key_pattern("acme");
    let body = "A".repeat(keyplane_shared::key::BODY_LEN);
    assert!(matches(&pattern, &format!("acme_live_{body}")));
    assert!(!matches(&pattern, &format!("sk_live_{body}")));
}
