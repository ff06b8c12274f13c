//! Scopes: `resource:action`, `resource:*` and `admin:full`, with matching and the subset rule.
//!
//! A granted scope *covers* a required one when it is the same, when it is `resource:*` for the
//! same resource, or when it is `admin:full`. A key's scopes must be covered by its creator's
//! ([`ScopeSet::is_covered_by`]), so nobody can mint a key more powerful than themselves. The
//! `admin` resource is reserved for `admin:full`, so `admin:*` cannot be used to reach it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Longest resource or action name.
pub const MAX_NAME_LEN: usize = 64;
/// Most scopes one key or rule may hold.
pub const MAX_SCOPES: usize = 64;

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// No `:` between resource and action.
    #[error("scope `{0}` is not of the form resource:action")]
    MissingColon(String),
    /// The resource or action is empty, too long, or has characters outside `a-z 0-9 - _ .`.
    #[error(
        "scope `{0}`: resource and action are 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit"
    )]
    InvalidName(String),
    /// `admin` is reserved: the only admin scope is `admin:full`.
    #[error("scope `{0}`: the only scope on the reserved resource `admin` is `admin:full`")]
    ReservedResource(String),
    /// More than [`MAX_SCOPES`] scopes.
    #[error("at most {MAX_SCOPES} scopes are allowed, got {0}")]
    TooMany(usize),
}

/// One permission.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `admin:full`: everything.
    AdminFull,
    /// `resource:*`: every action on one resource.
    AllActions {
        /// The resource name.
        resource: Box<str>,
    },
    /// `resource:action`.
    Action {
        /// The resource name.
        resource: Box<str>,
        /// The action name.
        action: Box<str>,
    },
}

fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

impl Scope {
    /// Parses one scope.
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        let (resource, action) = text
            .split_once(':')
            .ok_or_else(|| ScopeError::MissingColon(text.into()))?;
        if !valid_name(resource) || !(action == "*" || valid_name(action)) {
            return Err(ScopeError::InvalidName(text.into()));
        }
        match (resource, action) {
            ("admin", "full") => Ok(Scope::AdminFull),
            ("admin", _) => Err(ScopeError::ReservedResource(text.into())),
            (resource, "*") => Ok(Scope::AllActions {
                resource: resource.into(),
            }),
            (resource, action) => Ok(Scope::Action {
                resource: resource.into(),
                action: action.into(),
            }),
        }
    }

    /// Whether holding `self` grants `required`.
    pub fn covers(&self, required: &Scope) -> bool {
        match (self, required) {
            (Scope::AdminFull, _) => true,
            (Scope::AllActions { resource: granted }, Scope::AllActions { resource })
            | (Scope::AllActions { resource: granted }, Scope::Action { resource, .. }) => {
                granted == resource
            }
            (Scope::Action { .. }, Scope::Action { .. }) => self == required,
            _ => false,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::AdminFull => f.write_str("admin:full"),
            Scope::AllActions { resource } => write!(f, "{resource}:*"),
            Scope::Action { resource, action } => write!(f, "{resource}:{action}"),
        }
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse(s)
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Scope::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A normalized set of scopes: sorted, without duplicates, at most [`MAX_SCOPES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// The empty set (a key with no scopes can still call routes that need none).
    pub const fn empty() -> Self {
        ScopeSet(Vec::new())
    }

    /// Normalizes scopes into a set.
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Result<Self, ScopeError> {
        let mut scopes: Vec<Scope> = scopes.into_iter().collect();
        scopes.sort();
        scopes.dedup();
        if scopes.len() > MAX_SCOPES {
            return Err(ScopeError::TooMany(scopes.len()));
        }
        Ok(ScopeSet(scopes))
    }

    /// Parses scope strings; the first invalid one is the error.
    pub fn parse<S: AsRef<str>>(texts: impl IntoIterator<Item = S>) -> Result<Self, ScopeError> {
        let scopes = texts
            .into_iter()
            .map(|t| Scope::parse(t.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        ScopeSet::new(scopes)
    }

    /// The scopes, in canonical order.
    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set has no scopes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether some scope in this set covers `required`.
    pub fn covers(&self, required: &Scope) -> bool {
        self.0.iter().any(|granted| granted.covers(required))
    }

    /// The first scope of `required` that this set does not cover, if any.
    pub fn first_missing<'a>(&self, required: &'a ScopeSet) -> Option<&'a Scope> {
        required.0.iter().find(|scope| !self.covers(scope))
    }

    /// Every scope of both sets, for a request that must satisfy two requirements. Not bound by
    /// [`MAX_SCOPES`], which limits what a key holds, not what a route asks.
    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        let mut scopes: Vec<Scope> = self.0.iter().chain(&other.0).cloned().collect();
        scopes.sort();
        scopes.dedup();
        ScopeSet(scopes)
    }

    /// Whether every scope here is covered by `holder`'s scopes: the rule for creating a key.
    pub fn is_covered_by(&self, holder: &ScopeSet) -> bool {
        holder.first_missing(self).is_none()
    }
}

impl fmt::Display for ScopeSet {
    /// Space-separated, as in OAuth's `scope` parameter and the `x-keyplane-scopes` header.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{scope}")?;
        }
        Ok(())
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let scopes = Vec::<Scope>::deserialize(deserializer)?;
        ScopeSet::new(scopes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn s(text: &str) -> Scope {
        Scope::parse(text).expect("valid scope")
    }

    fn set(texts: &[&str]) -> ScopeSet {
        ScopeSet::parse(texts).expect("valid scopes")
    }

    #[test]
    fn grammar_accepts_the_documented_forms() {
        assert_eq!(
            s("contacts:read"),
            Scope::Action {
                resource: "contacts".into(),
                action: "read".into()
            }
        );
        assert_eq!(s("api-keys:manage").to_string(), "api-keys:manage");
        assert_eq!(
            s("triggers:*"),
            Scope::AllActions {
                resource: "triggers".into()
            }
        );
        assert_eq!(s("admin:full"), Scope::AdminFull);
    }

    #[test]
    fn grammar_rejects_malformed_scopes_with_a_reason() {
        assert!(matches!(
            Scope::parse("contacts"),
            Err(ScopeError::MissingColon(_))
        ));
        for bad in [
            ":read",
            "contacts:",
            "Contacts:read",
            "con tacts:read",
            "*:read",
            "a:b:c",
            "-x:read",
            "x:r\u{0}",
        ] {
            assert!(
                matches!(Scope::parse(bad), Err(ScopeError::InvalidName(_))),
                "{bad:?}"
            );
        }
        assert!(Scope::parse(&format!("{}:read", "a".repeat(65))).is_err());
        assert!(matches!(
            Scope::parse("admin:*"),
            Err(ScopeError::ReservedResource(_))
        ));
        assert!(matches!(
            Scope::parse("admin:read"),
            Err(ScopeError::ReservedResource(_))
        ));
    }

    #[test]
    fn matching_follows_wildcards_and_admin() {
        assert!(s("contacts:read").covers(&s("contacts:read")));
        assert!(!s("contacts:read").covers(&s("contacts:write")));
        assert!(s("contacts:*").covers(&s("contacts:write")));
        assert!(s("contacts:*").covers(&s("contacts:*")));
        assert!(!s("contacts:*").covers(&s("triggers:read")));
        assert!(!s("contacts:read").covers(&s("contacts:*")));
        assert!(s("admin:full").covers(&s("anything:at-all")));
        assert!(!s("contacts:*").covers(&Scope::AdminFull));
    }

    #[test]
    fn a_key_cannot_exceed_its_creator() {
        let creator = set(&["contacts:*", "triggers:read"]);
        assert!(set(&["contacts:read", "contacts:write"]).is_covered_by(&creator));
        assert!(set(&[]).is_covered_by(&creator));
        assert!(!set(&["triggers:write"]).is_covered_by(&creator));
        assert!(!set(&["admin:full"]).is_covered_by(&creator));
        assert!(set(&["admin:full"]).is_covered_by(&set(&["admin:full"])));
    }

    #[test]
    fn sets_are_normalized_and_bounded() {
        assert_eq!(set(&["b:x", "a:y", "b:x"]), set(&["a:y", "b:x"]));
        assert_eq!(set(&["b:x", "a:y"]).to_string(), "a:y b:x");
        let many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("r{i}:read")).collect();
        assert_eq!(
            ScopeSet::parse(&many),
            Err(ScopeError::TooMany(MAX_SCOPES + 1))
        );
    }

    #[test]
    fn first_missing_names_the_uncovered_scope() {
        let held = set(&["contacts:read"]);
        let required = set(&["contacts:read", "contacts:write"]);
        assert_eq!(held.first_missing(&required), Some(&s("contacts:write")));
    }

    #[test]
    fn scope_sets_round_trip_through_json() {
        let original = set(&["contacts:read", "admin:full", "x:*"]);
        let json = serde_json::to_string(&original).expect("serializes");
        assert_eq!(json, r#"["admin:full","x:*","contacts:read"]"#);
        assert_eq!(
            serde_json::from_str::<ScopeSet>(&json).expect("parses"),
            original
        );
        assert!(serde_json::from_str::<ScopeSet>(r#"["nope"]"#).is_err());
    }
}
