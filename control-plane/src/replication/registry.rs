//! The edge registry's rules: what an edge's name and push URL may be, and the `NAME=URL` form
//! of `keyplane serve --edge` / `KEYPLANE_EDGES`.

use std::str::FromStr;

use axum::http::Uri;
use thiserror::Error;

/// Longest edge name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest edge URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Why an edge's name or URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidEdge {
    /// The name is empty, too long, or has a character outside `[A-Za-z0-9_-]`.
    #[error("an edge name is 1-64 characters of [A-Za-z0-9_-]")]
    Name,
    /// The URL is not an absolute http(s) URL of at most 2048 bytes.
    #[error("an edge URL is an absolute http:// or https:// URL of at most 2048 bytes")]
    Url,
    /// An http:// URL outside local development: pushes must travel over TLS.
    #[error("an edge URL must be https:// (http:// only with --local-dev / KEYPLANE_LOCAL_DEV)")]
    Insecure,
    /// A `--edge` value without `=`.
    #[error("an edge is given as NAME=URL")]
    Spec,
}

/// Checks an edge's name (1-64 of `[A-Za-z0-9_-]`) and URL (absolute https, with a host, at
/// most 2048 bytes; http:// too when `local_dev`).
pub fn validate(name: &str, url: &str, local_dev: bool) -> Result<(), InvalidEdge> {
    validate_name(name)?;
    let scheme = url
        .parse::<Uri>()
        .ok()
        .filter(|uri| uri.host().is_some_and(|host| !host.is_empty()))
        .and_then(|uri| uri.scheme_str().map(str::to_owned));
    match scheme.as_deref() {
        _ if url.len() > MAX_URL_LEN => Err(InvalidEdge::Url),
        Some("https") => Ok(()),
        Some("http") if local_dev => Ok(()),
        Some("http") => Err(InvalidEdge::Insecure),
        _ => Err(InvalidEdge::Url),
    }
}

/// Checks an edge's name: 1-64 of `[A-Za-z0-9_-]`.
pub fn validate_name(name: &str) -> Result<(), InvalidEdge> {
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if name_ok {
        Ok(())
    } else {
        Err(InvalidEdge::Name)
    }
}

/// An edge named on the command line: `NAME=URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSpec {
    /// Its name.
    pub name: String,
    /// Its base URL (pushes go to `<url>/__keyplane/sync`).
    pub url: String,
}

impl FromStr for EdgeSpec {
    type Err = InvalidEdge;

    fn from_str(text: &str) -> Result<Self, InvalidEdge> {
        let (name, url) = text.trim().split_once('=').ok_or(InvalidEdge::Spec)?;
        // The scheme is checked at start-up, where the local-development switch is known.
        validate(name, url, true)?;
        Ok(EdgeSpec {
            name: name.to_owned(),
            url: url.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls_are_checked() {
        let validate = |name: &str, url: &str| validate(name, url, true);
        assert_eq!(validate("edge-1_a", "https://edge.example.com"), Ok(()));
        assert_eq!(validate("e", "http://127.0.0.1:8787/base/"), Ok(()));
        assert_eq!(validate("", "http://x"), Err(InvalidEdge::Name));
        assert_eq!(
            validate(&"a".repeat(65), "http://x"),
            Err(InvalidEdge::Name)
        );
        assert_eq!(validate("a b", "http://x"), Err(InvalidEdge::Name));
        assert_eq!(validate("é", "http://x"), Err(InvalidEdge::Name));
        for url in [
            "ftp://x",
            "/relative",
            "http://",
            "x",
            "javascript:alert(1)",
        ] {
            assert_eq!(validate("a", url), Err(InvalidEdge::Url), "{url}");
        }
        let long = format!("http://x/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(validate("a", &long), Err(InvalidEdge::Url));
    }

    #[test]
    fn plain_http_edges_need_the_local_development_switch() {
        assert_eq!(
            validate("e", "http://127.0.0.1:8787", false),
            Err(InvalidEdge::Insecure)
        );
        assert_eq!(validate("e", "http://127.0.0.1:8787", true), Ok(()));
        assert_eq!(validate("e", "https://edge.example.com", false), Ok(()));
        assert_eq!(validate("e", "ftp://x", false), Err(InvalidEdge::Url));
    }

    #[test]
    fn specs_are_name_equals_url() {
        let spec: EdgeSpec = "paris=https://paris.example.com".parse().expect("valid");
        assert_eq!(
            spec,
            EdgeSpec {
                name: "paris".into(),
                url: "https://paris.example.com".into()
            }
        );
        assert_eq!("paris".parse::<EdgeSpec>(), Err(InvalidEdge::Spec));
        assert_eq!("=http://x".parse::<EdgeSpec>(), Err(InvalidEdge::Name));
    }
}
