//! Unit tests of the route policy and its path readings.

use super::*;
use crate::scope::Scope;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn policy() -> RoutePolicy {
    let spec: PolicySpec = serde_json::from_str(
        r#"{
            "rules": [
                {"path": "/health", "public": true},
                {"method": "GET", "path": "/v1/contacts/**", "scopes": ["contacts:read"]},
                {"method": "POST", "path": "/v1/contacts", "scopes": ["contacts:write"]},
                {"method": "DELETE", "path": "/v1/contacts/{id}", "scopes": ["contacts:write", "contacts:delete"]},
                {"path": "/admin/**", "scopes": ["admin:full"]}
            ],
            "default_scopes": ["api:call"]
        }"#,
    )
    .expect("valid JSON");
    RoutePolicy::from_spec(&spec).expect("valid policy")
}

fn scopes(texts: &[&str]) -> Requirement {
    Requirement::Scopes(ScopeSet::parse(texts).expect("valid"))
}

#[test]
fn first_matching_rule_wins_and_default_applies_otherwise() {
    let p = policy();
    assert_eq!(*p.requirement("GET", "/health"), Requirement::Public);
    assert_eq!(
        *p.requirement("GET", "/v1/contacts"),
        scopes(&["contacts:read"])
    );
    assert_eq!(
        *p.requirement("GET", "/v1/contacts/42/notes"),
        scopes(&["contacts:read"])
    );
    assert_eq!(
        *p.requirement("HEAD", "/v1/contacts/42"),
        scopes(&["contacts:read"])
    );
    assert_eq!(
        *p.requirement("POST", "/v1/contacts"),
        scopes(&["contacts:write"])
    );
    assert_eq!(
        *p.requirement("DELETE", "/v1/contacts/42"),
        scopes(&["contacts:write", "contacts:delete"])
    );
    assert_eq!(
        *p.requirement("DELETE", "/v1/contacts/42/x"),
        scopes(&["api:call"])
    );
    assert_eq!(*p.requirement("PUT", "/v1/contacts"), scopes(&["api:call"]));
    assert_eq!(*p.requirement("GET", "/elsewhere"), scopes(&["api:call"]));
}

#[test]
fn path_tricks_cannot_dodge_a_rule() {
    let p = policy();
    let admin_full: Scope = "admin:full".parse().expect("valid");
    for path in [
        "/admin/x",
        "//admin/x",
        "/x%2F..%2Fadmin/x",
        "\\admin\\x",
        "/x/%2e%2e/admin/x",
        "/./admin/x",
        "/v1/../admin/x",
        "/%61dmin/x",
        "/admin/x?y=1",
        "/admin",
    ] {
        let requirement = p.requirement("GET", path);
        let Requirement::Scopes(required) = &*requirement else {
            panic!("{path} was public");
        };
        assert!(required.covers(&admin_full), "{path} needs {required}");
    }
}

#[test]
fn query_strings_do_not_affect_matching() {
    assert_eq!(
        *policy().requirement("GET", "/health?probe=1"),
        Requirement::Public
    );
}

#[test]
fn malformed_policies_are_refused() {
    let bad_rules = [
        r#"{"path": "v1"}"#,
        r#"{"path": "/a/**/b"}"#,
        r#"{"path": "/a*"}"#,
        r#"{"path": "/a/../b"}"#,
        r#"{"method": "GE T", "path": "/a"}"#,
        r#"{"path": "/a", "scopes": ["nope"]}"#,
    ];
    for rule in bad_rules {
        let spec: PolicySpec =
            serde_json::from_str(&format!(r#"{{"rules": [{rule}]}}"#)).expect("valid JSON");
        assert!(RoutePolicy::from_spec(&spec).is_err(), "{rule}");
    }
    assert!(serde_json::from_str::<PolicySpec>(r#"{"rulez": []}"#).is_err());
}

#[test]
fn default_policy_admits_any_valid_key() {
    assert_eq!(
        *RoutePolicy::default().requirement("PATCH", "/x"),
        Requirement::Scopes(ScopeSet::empty())
    );
}

#[test]
fn decoding_never_makes_a_protected_path_public() {
    let p = policy();
    for path in [
        "/admin/..%2Fhealth",
        "/admin/..%2fhealth",
        "/admin/..%5Chealth",
        "/admin/%2e%2e%2Fhealth",
        "/admin/..%252Fhealth",
    ] {
        assert_ne!(*p.requirement("GET", path), Requirement::Public, "{path}");
        assert!(
            matches!(&*p.requirement("GET", path), Requirement::Scopes(s) if s.covers(&"admin:full".parse().expect("valid"))),
            "{path} must need admin:full"
        );
    }
    // A raw `\\` is a separator to the forwarding: the origin receives `/health`.
    assert_eq!(
        *p.requirement("GET", "/admin/..\\health"),
        Requirement::Public
    );
}

#[test]
fn origin_quirks_cannot_reach_a_protected_prefix() {
    let p = policy();
    let admin: Scope = "admin:full".parse().expect("valid");
    for path in [
        "/health/..;/admin/x",
        "/health/%2e%2e;/admin/x",
        "/admin;jsessionid=1/x",
        "/ADMIN/x",
        "/Admin/X",
        "/%2561dmin/x",
        "/health/..%2Fadmin/x",
    ] {
        let requirement = p.requirement("GET", path);
        let Requirement::Scopes(required) = &*requirement else {
            panic!("{path} was public");
        };
        assert!(required.covers(&admin), "{path} needs {required}");
    }
}

#[test]
fn readings_that_disagree_need_the_scopes_of_both() {
    // Literally one `{id}` segment (contacts:write + delete); leniently two segments,
    // which no DELETE rule matches (the default, api:call).
    assert_eq!(
        *policy().requirement("DELETE", "/v1/contacts/a%2Fb"),
        scopes(&["api:call", "contacts:delete", "contacts:write"])
    );
}

#[test]
fn paths_that_read_the_same_both_ways_borrow_the_rule() {
    let p = policy();
    assert!(matches!(
        p.requirement("GET", "/v1/contacts/7"),
        Cow::Borrowed(_)
    ));
    assert!(matches!(p.requirement("GET", "/health"), Cow::Borrowed(_)));
}

fn issue_policy() -> RoutePolicy {
    let spec: PolicySpec = serde_json::from_str(
        r#"{
            "rules": [
                {"method": "POST", "path": "/v1/contacts/**", "scopes": ["contacts:write"]},
                {"method": "GET", "path": "/v1/docs/private/{id}", "scopes": ["docs:read"]},
                {"path": "/v1/docs/**", "public": true}
            ],
            "default_scopes": []
        }"#,
    )
    .expect("valid JSON");
    RoutePolicy::from_spec(&spec).expect("valid policy")
}

#[test]
fn a_dot_dot_that_cancels_an_empty_segment_is_read_as_the_forwarding_reads_it() {
    let p = issue_policy();
    for (method, path, needs) in [
        ("POST", "/v1//%2e%2e/contacts", "contacts:write"),
        ("POST", "/v1//.%2E/contacts/7", "contacts:write"),
        ("GET", "/v1/docs/private//%2e%2e/42", "docs:read"),
        ("GET", "/v1/docs/private//%2E./42", "docs:read"),
        ("GET", "/v1/docs/x/..\\private/42", "docs:read"),
    ] {
        let needed: Scope = needs.parse().expect("valid");
        let requirement = p.requirement(method, path);
        assert!(
            matches!(&*requirement, Requirement::Scopes(s) if s.covers(&needed)),
            "{method} {path} needs {requirement:?}, not {needs}"
        );
    }
}

#[test]
fn tabs_and_newlines_are_removed_as_the_forwarding_removes_them() {
    let p = policy();
    let admin: Scope = "admin:full".parse().expect("valid");
    for path in [
        "/ad\tmin/x",
        "/adm\nin/x",
        "/.\t./admin/x",
        "/health/.\r./admin/x",
    ] {
        assert!(
            matches!(&*p.requirement("GET", path), Requirement::Scopes(s) if s.covers(&admin)),
            "{path:?}"
        );
    }
}

#[test]
fn windows_and_unicode_spellings_need_what_the_plain_path_needs() {
    let p = policy();
    let admin: Scope = "admin:full".parse().expect("valid");
    for path in [
        "/admin./x",
        "/admin../x",
        "/admin%20/x",
        "/admin%2e/x",
        "/\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}/x",
        "/health/\u{ff0e}\u{ff0e}/admin/x",
        "/health\u{ff0f}..\u{ff0f}admin/x",
    ] {
        let requirement = p.requirement("GET", path);
        assert!(
            matches!(&*requirement, Requirement::Scopes(s) if s.covers(&admin)),
            "{path:?} needs {requirement:?}"
        );
    }
}

fn read(path: &str, reading: PathReading) -> Vec<String> {
    let target = CanonicalTarget::parse(path);
    normalize_path(&target, reading)
        .into_iter()
        .map(Cow::into_owned)
        .collect()
}

#[test]
fn the_canonical_reading_decodes_nothing() {
    assert_eq!(
        read("/a%2Fb\\c/./d/../e", PathReading::Canonical),
        vec!["a%2Fb", "c", "e"]
    );
    assert_eq!(read("/a//b/", PathReading::Canonical), vec!["a", "b"]);
}

#[test]
fn lenient_reading_decodes_and_keeps_malformed_escapes() {
    let lenient = |path| read(path, PathReading::Lenient);
    assert_eq!(lenient("/a%2/b%zz/c%"), vec!["a%2", "b%zz", "c%"]);
    assert_eq!(lenient("/a%2Fb"), vec!["a", "b"]);
    assert_eq!(lenient("/a%20b"), vec!["a b"]);
    assert_eq!(lenient("/a%+1b"), vec!["a%+1b"], "sign is not a hex digit");
    assert_eq!(lenient("/%ff%2Fx"), vec!["\u{fffd}", "x"]);
    assert_eq!(lenient("/a;v=1/b;c"), vec!["a", "b"]);
    assert_eq!(lenient("/%25252Fa"), vec!["a"]);
    assert_eq!(lenient("/a./b.../..."), vec!["a", "b", "..."]);
    assert_eq!(lenient("/\u{ff21}\u{ff0f}b"), vec!["A", "b"]);
}

#[test]
fn canonical_paths_read_the_same_both_ways_borrow_their_segments() {
    let target = CanonicalTarget::parse("/v1/contacts/7");
    for reading in [PathReading::Canonical, PathReading::Lenient] {
        assert!(
            normalize_path(&target, reading)
                .iter()
                .all(|segment| matches!(segment, Cow::Borrowed(_)))
        );
    }
}
