//! Finding the API key a caller presented: `x-api-key: <key>`, else `Authorization: Bearer <key>`.
//!
//! Only locating the credential happens here; parsing and checking it is `keyplane-shared`'s job.

use worker::Headers;

/// The header integrations put their key in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The raw key a request carries, if any: `x-api-key` wins over `Authorization: Bearer`.
///
/// Empty values count as absent, so they get the bare "missing key" challenge.
pub fn presented_key(headers: &Headers) -> Option<String> {
    let header = |name: &str| headers.get(name).ok().flatten();
    header(API_KEY_HEADER)
        .and_then(|value| non_empty(&value).map(str::to_owned))
        .or_else(|| {
            header("authorization").and_then(|value| bearer_token(&value).map(str::to_owned))
        })
}

/// The token of an `Authorization` value with the `Bearer` scheme (case-insensitive, RFC 7235).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        non_empty(token)
    } else {
        None
    }
}

fn non_empty(value: &str) -> Option<&str> {
    let trimmed = value.trim();
    (!trimmed.is_empty()).then_some(trimmed)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("bearer sk_test_x"), Some("sk_test_x"));
        assert_eq!(bearer_token("Bearer   sk_test_x "), Some("sk_test_x"));
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_not_keys() {
        assert_eq!(bearer_token("Basic dXNlcjpwdw=="), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
