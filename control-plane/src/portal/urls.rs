//! The strict checks on what the portal accepts as a URL: a link's return URL, a logo's URL,
//! and the origins allowed to frame the portal. `http://` is accepted only where the
//! deployment runs under the local-development policy (as for edge URLs), and never for a
//! logo. Every check answers with a message that says what is expected.

use axum::http::Uri;

pub use crate::limits::MAX_URL_LEN;

/// Why a URL or origin was refused (the message is the API's 400 text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUrl {
    /// Not an absolute URL with a host, or too long, or with spaces or credentials.
    #[error(
        "{0} must be an absolute URL with a host, at most {MAX_URL_LEN} characters, without spaces or credentials"
    )]
    Malformed(&'static str),
    /// An `http://` URL where only `https://` is accepted.
    #[error("{0} must use https:// (http:// only in local development)")]
    Insecure(&'static str),
    /// Not `https://host[:port]`.
    #[error(
        "{0} must be an origin: https://host or https://host:port, without path, query or wildcard"
    )]
    NotAnOrigin(&'static str),
}

/// Checks an absolute `https://` (or, when `allow_http`, `http://`) URL; `what` names the field
/// in the message.
pub fn web_url(text: &str, allow_http: bool, what: &'static str) -> Result<String, InvalidUrl> {
    let malformed = InvalidUrl::Malformed(what);
    if text.is_empty()
        || text.len() > MAX_URL_LEN
        || text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '\\'))
    {
        return Err(malformed);
    }
    // A fragment is kept as it is; `Uri` does not take one.
    let before_fragment = text.split_once('#').map_or(text, |(before, _)| before);
    let uri: Uri = before_fragment.parse().map_err(|_| malformed.clone())?;
    let authority = uri.authority().ok_or_else(|| malformed.clone())?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(malformed);
    }
    match uri.scheme_str() {
        Some("https") => Ok(text.to_owned()),
        Some("http") if allow_http => Ok(text.to_owned()),
        Some("http") => Err(InvalidUrl::Insecure(what)),
        _ => Err(malformed),
    }
}

/// Checks an origin, `https://host[:port]` (or `http://` when `allow_http`), and returns it in
/// lowercase. The host is a DNS name (letters, digits, `-`, dots between labels).
pub fn origin(text: &str, allow_http: bool, what: &'static str) -> Result<String, InvalidUrl> {
    let refused = InvalidUrl::NotAnOrigin(what);
    let lower = text.to_ascii_lowercase();
    let (scheme, authority) = lower.split_once("://").ok_or_else(|| refused.clone())?;
    match scheme {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(InvalidUrl::Insecure(what)),
        _ => return Err(refused),
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let port_ok = port.is_none_or(|port| {
        !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|n| (1..=65_535).contains(&n))
    });
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) || !port_ok {
        return Err(refused);
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::openapi::patterns::{
        ORIGIN_MAX_LEN, origin_pattern, property_config, strings, web_url_pattern,
    };

    proptest! {
        #![proptest_config(property_config())]

        #[test]
        fn every_url_of_the_documents_pattern_is_taken(text in strings(&web_url_pattern(false))) {
            prop_assume!(text.len() <= MAX_URL_LEN);
            prop_assert!(web_url(&text, false, "url").is_ok(), "{text}");
        }

        #[test]
        fn every_url_of_the_local_pattern_is_taken_in_local_development(
            text in strings(&web_url_pattern(true))
        ) {
            prop_assume!(text.len() <= MAX_URL_LEN);
            prop_assert!(web_url(&text, true, "url").is_ok(), "{text}");
        }

        #[test]
        fn every_origin_of_the_documents_pattern_is_taken(text in strings(&origin_pattern(true))) {
            prop_assume!(text.len() <= ORIGIN_MAX_LEN);
            prop_assert!(origin(&text, true, "origin").is_ok(), "{text}");
            prop_assert!(
                origin(&text, false, "origin").is_ok() == text.starts_with("https:"),
                "{text}"
            );
        }
    }

    #[test]
    fn web_urls_are_absolute_https_without_credentials() {
        assert!(web_url("https://app.example.com/settings?tab=keys#top", false, "u").is_ok());
        assert!(web_url("http://localhost:3000/", true, "u").is_ok());
        assert_eq!(
            web_url("http://app.example.com/", false, "u"),
            Err(InvalidUrl::Insecure("u"))
        );
        for bad in [
            "",
            "/relative",
            "app.example.com",
            "javascript:alert(1)",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://exa mple.com/",
            "https:///path",
        ] {
            assert!(web_url(bad, true, "u").is_err(), "{bad}");
        }
        assert!(
            web_url(
                &format!("https://a.com/{}", "x".repeat(MAX_URL_LEN)),
                true,
                "u"
            )
            .is_err()
        );
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(
            origin("https://App.Example.com", false, "o").as_deref(),
            Ok("https://app.example.com")
        );
        assert!(origin("https://app.example.com:8443", false, "o").is_ok());
        assert!(origin("http://localhost:3000", true, "o").is_ok());
        assert_eq!(
            origin("http://localhost:3000", false, "o"),
            Err(InvalidUrl::Insecure("o"))
        );
        for bad in [
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://*.example.com",
            "https://app.example.com:0",
            "https://app.example.com:99999",
            "https://app.example.com?x",
            "https://-bad.example.com",
            "https://",
            "app.example.com",
            "'self'",
            "https://a.com https://b.com",
        ] {
            assert!(origin(bad, true, "o").is_err(), "{bad}");
        }
    }
}
