//! The route policy: which scopes a request needs, by method and path pattern.
//!
//! Rules are tried in order and the first match wins; a request no rule matches gets the
//! policy's default. Patterns are `/`-separated segments: a literal, `*` or `{name}` (exactly one
//! segment), or a final `**` (any number of remaining segments, including none).
//!
//! The edge forwards a request on its canonical path (see `path`: the WHATWG URL standard's
//! form, which is what the runtime's `new Request(url)` makes of it), and a path is matched
//! in that form. Origins still disagree about what a path means: some decode `%2F` into a
//! separator, treat `\\` as `/`, drop `;params` (so `..;` is `..`), decode twice, ignore case,
//! or drop trailing dots (Windows). The edge cannot know which, so the canonical path is read
//! two ways and the request must satisfy both readings:
//!
//! - **canonical**: the path as forwarded, split on `/`, nothing decoded, case kept (dot
//!   segments are already resolved, in every encoding, by the URL standard's rules);
//! - **lenient**: percent-decoded (up to three rounds), split on `/` and `\\`, `;params`
//!   dropped, full-width ASCII (U+FF01–U+FF5E) folded to ASCII, trailing dots and spaces
//!   dropped, `.`/`..` resolved, literals compared without regard to ASCII case.
//!
//! Both skip empty segments. A route is public only if both readings say so; otherwise the
//! scopes of both are required. Decoding can therefore only make a request need more, never
//! less: `/admin/..%2Fhealth`, `/health/..;/admin` and `/ADMIN` all need what `/admin` needs.
//! The price is that a path whose readings differ (say `/files/a%2Fb`) may need the scopes of
//! two rules. A path the URL standard reads one way and other readers another (an encoded dot
//! segment or separator, an empty segment, a control character) is refused by the edge's
//! strict mode before any of this.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::path::{CanonicalTarget, DECODE_ROUNDS, percent_decode};
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

    /// Whether a path (its normalized segments) matches; `ignore_case` compares literals
    /// without regard to ASCII case.
    fn matches(&self, path: &[Cow<'_, str>], ignore_case: bool) -> bool {
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
                    Some(actual) if ignore_case && actual.eq_ignore_ascii_case(literal) => {}
                    _ => return false,
                },
            }
        }
        remaining.next().is_none()
    }
}

/// How a path is read (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathReading {
    /// The canonical path split on `/`; nothing decoded.
    Canonical,
    /// Percent-decoded, `\\` as `/`, `;params` dropped, full-width folded, trailing dots dropped.
    Lenient,
}

/// Splits a canonical path into segments as `reading` sees them, with empty and `.` segments
/// dropped and `..` resolved. Segments the reading leaves unchanged are borrowed from it.
pub fn normalize_path<'a>(
    target: &'a CanonicalTarget<'_>,
    reading: PathReading,
) -> Vec<Cow<'a, str>> {
    let path = target.path();
    let mut segments: Vec<Cow<'a, str>> = Vec::new();
    fn push<'a>(segments: &mut Vec<Cow<'a, str>>, segment: Cow<'a, str>) {
        match &*segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    match reading {
        PathReading::Canonical => {
            for raw in path.split('/') {
                push(&mut segments, Cow::Borrowed(raw));
            }
        }
        PathReading::Lenient => {
            for raw in path.split('/') {
                if !raw.contains(['%', ';']) && !raw.ends_with('.') {
                    push(&mut segments, Cow::Borrowed(raw));
                    continue;
                }
                let mut decoded = Cow::Borrowed(raw);
                for _ in 0..DECODE_ROUNDS {
                    match percent_decode(&decoded) {
                        Some(once) => decoded = Cow::Owned(once),
                        None => break,
                    }
                }
                let folded = fold_full_width(&decoded);
                for piece in folded.split(['/', '\\']) {
                    let without_params = piece.split(';').next().unwrap_or_default();
                    push(
                        &mut segments,
                        Cow::Owned(without_trailing_dots(without_params).to_owned()),
                    );
                }
            }
        }
    }
    segments
}

/// Full-width ASCII (U+FF01–U+FF5E, `／` `．` `ａ` …) as ASCII, as Unicode compatibility
/// normalization (NFKC) maps it.
fn fold_full_width(text: &str) -> Cow<'_, str> {
    const FULL_WIDTH: std::ops::RangeInclusive<char> = '\u{ff01}'..='\u{ff5e}';
    if !text.chars().any(|c| FULL_WIDTH.contains(&c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if FULL_WIDTH.contains(&c) {
                    char::from_u32(u32::from(c) - 0xfee0).unwrap_or(c)
                } else {
                    c
                }
            })
            .collect(),
    )
}

/// A segment without its trailing dots and spaces (which Windows file names drop), unless
/// it is only dots (`.`, `..`, `...`).
fn without_trailing_dots(segment: &str) -> &str {
    let trimmed = segment.trim_end_matches(['.', ' ']);
    if trimmed.is_empty() {
        segment.trim_end_matches(' ')
    } else {
        trimmed
    }
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

    /// The requirement for a request: the first matching rule's, else the default, under
    /// both readings of the canonical path combined (see the module docs); `path` is
    /// canonicalized first (a query string is ignored). Borrowed unless the readings meet
    /// different scoped rules.
    pub fn requirement(&self, method: &str, path: &str) -> Cow<'_, Requirement> {
        if self.rules.is_empty() {
            return Cow::Borrowed(&self.default);
        }
        let target = CanonicalTarget::parse(path);
        let first_match = |reading: PathReading| {
            let segments = normalize_path(&target, reading);
            let ignore_case = reading == PathReading::Lenient;
            self.rules
                .iter()
                .find(|rule| {
                    rule.method.matches(method) && rule.pattern.matches(&segments, ignore_case)
                })
                .map_or(&self.default, |rule| &rule.requirement)
        };
        let canonical = first_match(PathReading::Canonical);
        let lenient = first_match(PathReading::Lenient);
        match (canonical, lenient) {
            (a, b) if a == b => Cow::Borrowed(a),
            (Requirement::Public, stricter) | (stricter, Requirement::Public) => {
                Cow::Borrowed(stricter)
            }
            (Requirement::Scopes(a), Requirement::Scopes(b)) => {
                Cow::Owned(Requirement::Scopes(a.union(b)))
            }
        }
    }
}

#[cfg(test)]
mod tests;
