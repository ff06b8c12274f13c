//! The route policy: which scopes a request needs, by method and path pattern.
//!
//! Rules are tried in order and the first match wins; a request no rule matches gets the
//! policy's default. Patterns are `/`-separated segments: a literal, `*` or `{name}` (exactly one
//! segment), or a final `**` (any number of remaining segments, including none). Paths are
//! normalized before matching (empty and `.` segments dropped, `..` resolved, percent-escapes
//! decoded, `\\` and escaped separators treated as `/`) so that `//admin`, `/x/../admin`,
//! `/%61dmin` and `/x%2F..%2Fadmin` all meet the rule for `/admin`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::scope::{ScopeError, ScopeSet};

/// What a route demands of the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// No key needed; the request is forwarded without identity.
    Public,
    /// A valid key holding every listed scope (an empty list: any valid key).
    Scopes(ScopeSet),
}

/// Which methods a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MethodMatch {
    Any,
    /// Upper-case method name. A `GET` rule also matches `HEAD`.
    Exactly(Box<str>),
}

impl MethodMatch {
    fn matches(&self, method: &str) -> bool {
        match self {
            MethodMatch::Any => true,
            MethodMatch::Exactly(m) => {
                method.eq_ignore_ascii_case(m)
                    || (&**m == "GET" && method.eq_ignore_ascii_case("HEAD"))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    One,
    Rest,
}

/// A parsed path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
}

impl PathPattern {
    /// Parses a pattern such as `/v1/contacts/{id}` or `/v1/admin/**`.
    pub fn parse(pattern: &str) -> Result<Self, PolicyError> {
        let invalid = |why: &'static str| PolicyError::InvalidPattern {
            pattern: pattern.into(),
            why,
        };
        if !pattern.starts_with('/') {
            return Err(invalid("must start with '/'"));
        }
        let parts: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = match *part {
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return Err(invalid("'**' may only be the last segment")),
                "*" => Segment::One,
                p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 => Segment::One,
                p if p.contains(['*', '{', '}']) => {
                    return Err(invalid("wildcards must be whole segments"));
                }
                "." | ".." => return Err(invalid("'.' and '..' segments are not allowed")),
                p => Segment::Literal(p.into()),
            };
            segments.push(segment);
        }
        Ok(PathPattern { segments })
    }

    /// Whether a normalized path (its segments) matches.
    fn matches(&self, path: &[Cow<'_, str>]) -> bool {
        let mut remaining = path.iter();
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::One => {
                    if remaining.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(literal) => match remaining.next() {
                    Some(actual) if **actual == **literal => {}
                    _ => return false,
                },
            }
        }
        remaining.next().is_none()
    }
}

/// Splits a request path into normalized segments (see the module docs). Segments without
/// escapes are borrowed from `path`.
pub fn normalize_path(path: &str) -> Vec<Cow<'_, str>> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut segments: Vec<Cow<'_, str>> = Vec::new();
    fn push<'a>(segments: &mut Vec<Cow<'a, str>>, segment: Cow<'a, str>) {
        match &*segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    for raw in path.split(['/', '\\']) {
        if !raw.contains('%') {
            push(&mut segments, Cow::Borrowed(raw));
            continue;
        }
        // An escaped separator (`%2F`, `%5C`) is treated as a separator: some origins do.
        for piece in percent_decode(raw).split(['/', '\\']) {
            push(&mut segments, Cow::Owned(piece.to_owned()));
        }
    }
    segments
}

/// Decodes `%XX` escapes; malformed escapes and non-UTF-8 results are kept literally.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| segment.to_owned())
}

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A path pattern is malformed.
    #[error("invalid path pattern `{pattern}`: {why}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A method is not an HTTP token.
    #[error("invalid method `{0}`")]
    InvalidMethod(String),
    /// A scope in a rule is invalid.
    #[error(transparent)]
    Scope(#[from] ScopeError),
}

/// One rule as written in configuration (JSON): `{"method": "GET", "path": "/v1/**", "scopes": [..]}`
/// or `{"path": "/health", "public": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// HTTP method, or absent / `*` for any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path pattern.
    pub path: String,
    /// Required scopes (all of them).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// No key needed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
}

/// A policy as written in configuration; [`RoutePolicy::from_spec`] validates it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Scopes required when no rule matches (empty: any valid key).
    #[serde(default)]
    pub default_scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    method: MethodMatch,
    pattern: PathPattern,
    requirement: Requirement,
}

/// A validated route policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePolicy {
    rules: Vec<Rule>,
    default: Requirement,
}

impl Default for RoutePolicy {
    /// Any valid key may call anything.
    fn default() -> Self {
        RoutePolicy {
            rules: Vec::new(),
            default: Requirement::Scopes(ScopeSet::empty()),
        }
    }
}

impl RoutePolicy {
    /// Validates a written policy.
    pub fn from_spec(spec: &PolicySpec) -> Result<Self, PolicyError> {
        let rules = spec
            .rules
            .iter()
            .map(|rule| {
                let method = match rule.method.as_deref() {
                    None | Some("*") => MethodMatch::Any,
                    Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
                        MethodMatch::Exactly(m.to_ascii_uppercase().into())
                    }
                    Some(m) => return Err(PolicyError::InvalidMethod(m.into())),
                };
                let requirement = if rule.public {
                    Requirement::Public
                } else {
                    Requirement::Scopes(ScopeSet::parse(&rule.scopes)?)
                };
                Ok(Rule {
                    method,
                    pattern: PathPattern::parse(&rule.path)?,
                    requirement,
                })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let default = Requirement::Scopes(ScopeSet::parse(&spec.default_scopes)?);
        Ok(RoutePolicy { rules, default })
    }

    /// The requirement for a request: the first matching rule's, else the default.
    pub fn requirement(&self, method: &str, path: &str) -> &Requirement {
        if self.rules.is_empty() {
            return &self.default;
        }
        let segments = normalize_path(path);
        self.rules
            .iter()
            .find(|rule| rule.method.matches(method) && rule.pattern.matches(&segments))
            .map_or(&self.default, |rule| &rule.requirement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(p.requirement("GET", "/health"), &Requirement::Public);
        assert_eq!(
            p.requirement("GET", "/v1/contacts"),
            &scopes(&["contacts:read"])
        );
        assert_eq!(
            p.requirement("GET", "/v1/contacts/42/notes"),
            &scopes(&["contacts:read"])
        );
        assert_eq!(
            p.requirement("HEAD", "/v1/contacts/42"),
            &scopes(&["contacts:read"])
        );
        assert_eq!(
            p.requirement("POST", "/v1/contacts"),
            &scopes(&["contacts:write"])
        );
        assert_eq!(
            p.requirement("DELETE", "/v1/contacts/42"),
            &scopes(&["contacts:write", "contacts:delete"])
        );
        assert_eq!(
            p.requirement("DELETE", "/v1/contacts/42/x"),
            &scopes(&["api:call"])
        );
        assert_eq!(p.requirement("PUT", "/v1/contacts"), &scopes(&["api:call"]));
        assert_eq!(p.requirement("GET", "/elsewhere"), &scopes(&["api:call"]));
    }

    #[test]
    fn path_tricks_cannot_dodge_a_rule() {
        let p = policy();
        let admin = scopes(&["admin:full"]);
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
            assert_eq!(p.requirement("GET", path), &admin, "{path}");
        }
    }

    #[test]
    fn query_strings_do_not_affect_matching() {
        assert_eq!(
            policy().requirement("GET", "/health?probe=1"),
            &Requirement::Public
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
            RoutePolicy::default().requirement("PATCH", "/x"),
            &Requirement::Scopes(ScopeSet::empty())
        );
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(normalize_path("/a%2/b%zz/%ff"), vec!["a%2", "b%zz", "%ff"]);
        assert_eq!(normalize_path("/a%2Fb"), vec!["a", "b"]);
        assert_eq!(normalize_path("/a%20b"), vec!["a b"]);
    }
}
