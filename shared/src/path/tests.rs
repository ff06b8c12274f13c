//! Unit tests of the canonical form. The expected forms are what the pinned workerd's
//! `new Request(origin + path)` sent to an origin (checked end to end in `tests/e2e/paths.rs`).

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn canonical(target: &str) -> String {
    CanonicalTarget::parse(target).as_str().to_owned()
}

fn assert_forms(cases: &[(&str, &str)]) {
    for (raw, expected) in cases {
        assert_eq!(canonical(raw), *expected, "{raw:?}");
    }
}

#[test]
fn canonical_targets_are_borrowed_unchanged() {
    for target in [
        "/",
        "/v1/contacts/42?page=2",
        "/v1/contacts/",
        "/a%2Fb/%2e%2e%2e/b%2E%2E",
        "/a|b~!$&()*+,;=:@'",
        "/a/.../..b/.b/b.",
        "/a%zz/%/%2",
        "/q?a^b{c}`d|e\\f/../?",
        "//x",
    ] {
        let parsed = CanonicalTarget::parse(target);
        assert_eq!(parsed.as_str(), target);
        assert!(parsed.is_borrowed(), "{target:?} was copied");
    }
}

#[test]
fn dot_segments_in_every_encoding_are_resolved() {
    assert_forms(&[
        ("/a/%2E%2e/b", "/b"),
        ("/a/.%2e/b", "/b"),
        ("/a/%2e./b", "/b"),
        ("/a/.%2E/b", "/b"),
        ("/a/%2E./b", "/b"),
        ("/a/%2e/b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/%2e", "/a/b/"),
        ("/a/%2E", "/a/"),
        ("/%2e/", "/"),
        ("/%2e%2e", "/"),
        ("/..", "/"),
        ("/.", "/"),
        ("/a/b/../../..", "/"),
        ("/a/b/../../../c", "/c"),
        ("/a/./../b", "/b"),
        ("/a/%2e/../b", "/b"),
    ]);
}

#[test]
fn a_double_dot_cancels_an_empty_segment() {
    assert_forms(&[
        ("/v1//%2e%2e/contacts", "/v1/contacts"),
        ("/v1/docs/private//%2e%2e/42", "/v1/docs/private/42"),
        ("/a//../b", "/a/b"),
        ("/a/.//b", "/a//b"),
    ]);
}

#[test]
fn backslashes_are_separators() {
    assert_forms(&[("/a\\b", "/a/b"), ("/a\\..\\b", "/b"), ("\\a", "/a")]);
}

#[test]
fn characters_are_percent_encoded_as_the_runtime_does() {
    assert_forms(&[
        ("/a\"b", "/a%22b"),
        ("/a<b>", "/a%3Cb%3E"),
        ("/a`b", "/a%60b"),
        ("/a{b}", "/a%7Bb%7D"),
        ("/a^b", "/a%5Eb"),
        ("/a b", "/a%20b"),
        ("/caf\u{e9}", "/caf%C3%A9"),
        ("/a\u{1}b", "/a%01b"),
        ("/a\u{7f}b", "/a%7Fb"),
        ("/a\u{fffd}b", "/a%EF%BF%BDb"),
        (
            "/\u{ff0f}\u{ff0e}\u{ff0e}/x",
            "/%EF%BC%8F%EF%BC%8E%EF%BC%8E/x",
        ),
    ]);
}

#[test]
fn queries_are_encoded_with_the_special_query_set() {
    assert_forms(&[
        ("/q?a'b", "/q?a%27b"),
        ("/q?a\"b", "/q?a%22b"),
        ("/q?a<b>", "/q?a%3Cb%3E"),
        ("/q?caf\u{e9}", "/q?caf%C3%A9"),
        ("/q?a\u{1}b", "/q?a%01b"),
        ("/q?a\u{7f}b", "/q?a%7Fb"),
        ("/q\\x?a\\b", "/q/x?a\\b"),
        ("/a/./b?x=/../y", "/a/b?x=/../y"),
    ]);
}

#[test]
fn trailing_controls_and_spaces_go_and_tabs_and_newlines_are_removed() {
    assert_forms(&[
        ("/a\u{1}", "/a"),
        ("/a?b\u{1}", "/a?b"),
        ("/a\u{b}", "/a"),
        ("/a ", "/a"),
        ("/a\tb", "/ab"),
        ("/a\nb\r", "/ab"),
        ("/.\t./b", "/b"),
        ("/a?b\tc", "/a?bc"),
    ]);
}

#[test]
fn the_fragment_is_dropped_and_a_missing_slash_supplied() {
    assert_forms(&[
        ("/a#x", "/a"),
        ("/a?x#f", "/a?x"),
        ("/a#/../b", "/a"),
        ("", "/"),
        ("a/b", "/a/b"),
        ("?x", "/?x"),
    ]);
    let fragment = CanonicalTarget::parse("/a?x#f");
    assert!(fragment.is_borrowed());
    assert_eq!((fragment.path(), fragment.as_str()), ("/a", "/a?x"));
}

#[test]
fn path_and_query_are_told_apart() {
    let parsed = CanonicalTarget::parse("/a/../b c?d e");
    assert_eq!(parsed.path(), "/b%20c");
    assert_eq!(parsed.as_str(), "/b%20c?d%20e");
    assert_eq!(parsed.clone().into_text(), "/b%20c?d%20e");
    assert_eq!(CanonicalTarget::parse("/x").path(), "/x");
}

#[test]
fn ambiguous_paths_are_named() {
    use Ambiguity::*;
    let cases = [
        ("/v1//%2e%2e/contacts", EmptySegment),
        ("/v1/%2e%2e/contacts", EncodedDotSegment),
        ("/v1/.%2E/contacts", EncodedDotSegment),
        ("/v1/%2e/contacts", EncodedDotSegment),
        ("/v1/%252e%252e/contacts", EncodedDotSegment),
        ("/v1/..;/contacts", EncodedDotSegment),
        ("/v1/.;x/contacts", EncodedDotSegment),
        ("/v1/%2e%2e;x=1/contacts", EncodedDotSegment),
        ("/v1/a%2fb", EncodedSeparator),
        ("/v1/a%2Fb", EncodedSeparator),
        ("/v1/a%5cb", EncodedSeparator),
        ("/v1/..%252fb", EncodedSeparator),
        ("/v1/..%25252fb", EncodedSeparator),
        ("/v1\\contacts", Backslash),
        ("//v1", EmptySegment),
        ("/v1//contacts", EmptySegment),
        ("/v1/contacts//", EmptySegment),
        ("/v1/a\u{1}b", ControlCharacter),
        ("/v1/a\u{7f}b", ControlCharacter),
        ("/v1/a\tb", ControlCharacter),
        ("/v1/a%00b", ControlCharacter),
        ("/v1/a%0Ab", ControlCharacter),
        ("/v1/a%7fb", ControlCharacter),
        ("/v1/a%2500b", ControlCharacter),
    ];
    for (raw, expected) in cases {
        assert_eq!(
            CanonicalTarget::parse(raw).ambiguity(),
            Some(expected),
            "{raw:?}"
        );
    }
}

#[test]
fn plain_paths_are_not_ambiguous() {
    for raw in [
        "/",
        "/v1/contacts/",
        "/v1/./contacts/../contacts",
        "/a%20b/100%25/a%2541/a;b=1/a.;b",
        "/a/..b/b../.../a.",
        "/\u{ff0f}\u{ff0e}\u{ff0e}/caf\u{e9}",
        "/a%zz/%/%2",
        "/v1/contacts?x=//%2e%2e/%00\\",
    ] {
        assert_eq!(CanonicalTarget::parse(raw).ambiguity(), None, "{raw:?}");
    }
}

#[test]
fn percent_decoding_keeps_malformed_escapes() {
    assert_eq!(percent_decode("/a%2/b%zz/c%"), None);
    assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
    assert_eq!(percent_decode("%ff").as_deref(), Some("\u{fffd}"));
    assert_eq!(percent_decode("%+1%41").as_deref(), Some("%+1A"));
}

mod properties {
    use super::super::*;
    use proptest::prelude::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn target() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("/"),
                Just("\\"),
                Just("."),
                Just("%2e"),
                Just("%2E"),
                Just("a"),
                Just("?"),
                Just(" "),
                Just("\t"),
                Just("^"),
                Just("'"),
                Just("\u{e9}"),
                Just("\u{1}"),
                Just("\n"),
                Just("\u{7f}"),
                Just("%2f"),
                Just(";"),
                Just("%25"),
                Just("%00"),
                Just("#"),
            ],
            0..16,
        )
        .prop_map(|pieces| pieces.concat())
    }

    /// The ambiguity of a raw path read the plain way: controls, then backslashes, then each
    /// `/`-separated segment in order.
    fn plain_ambiguity(path: &str) -> Option<Ambiguity> {
        if path.bytes().any(is_control) {
            return Some(Ambiguity::ControlCharacter);
        }
        if path.contains('\\') {
            return Some(Ambiguity::Backslash);
        }
        let body = path.strip_prefix('/').unwrap_or(path);
        let segments: Vec<&str> = body.split('/').collect();
        for (i, segment) in segments.iter().enumerate() {
            if segment.is_empty() && i + 1 < segments.len() {
                return Some(Ambiguity::EmptySegment);
            }
            if segment.contains(['%', ';'])
                && let Some(found) = segment_ambiguity(segment)
            {
                return Some(found);
            }
        }
        None
    }

    proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: if cfg!(target_arch = "wasm32") { 128 } else { 1024 },
            failure_persistence: None,
            ..Default::default()
        })]

        /// The fast path (borrow when nothing changes) agrees with the full parse.
        #[test]
        fn what_the_fast_path_keeps_the_full_parse_keeps(raw in target()) {
            let raw = raw.split('#').next().unwrap_or_default().to_owned();
            if !Scan::of(&raw).rewrite {
                prop_assert_eq!(canonicalize(&raw), (raw.clone(), raw.find('?').unwrap_or(raw.len())));
            }
        }

        /// The canonical form is printable ASCII with no space: the edge lists it in its
        /// newline-separated forward plan and forwards it as it is (`edge/src/forward.rs`).
        #[test]
        fn the_canonical_form_holds_no_control_character_or_space(raw in target()) {
            let target = CanonicalTarget::parse(&raw);
            prop_assert!(target.as_str().bytes().all(|byte| byte.is_ascii_graphic()), "{:?}", target.as_str());
        }

        /// The one-pass scan names what a plain segment-by-segment reading names.
        #[test]
        fn the_scan_finds_what_a_plain_reading_finds(raw in target()) {
            let path = raw.split(['?', '#']).next().unwrap_or_default();
            prop_assert_eq!(Scan::of(&raw).ambiguity, plain_ambiguity(path), "{:?}", raw);
        }
    }
}
