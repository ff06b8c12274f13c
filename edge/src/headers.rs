//! Header edits on the request path, decided here and applied by `edge/js/headers.js` in one
//! call per message, which also builds the outgoing request and the `Forward` that relays the
//! answer (through wasm-bindgen's bindings every name and value would cross the wasm boundary
//! on its own, a cost the edge overhead benchmark shows).
//!
//! The rules stay in Rust: which of the caller's headers never reach the origin
//! ([`is_dropped`]), and which are added ([`Edits`]). The JS side only applies the lists, and
//! holds the entry module's `Forward` (see `crate::forward`).

use keyplane_shared::KeyPrefix;
use keyplane_shared::decision::credential;
use worker::wasm_bindgen::{self, JsValue, prelude::wasm_bindgen};
use worker::web_sys;

#[wasm_bindgen(module = "/js/headers.js")]
extern "C" {
    /// The names of `headers`, each followed by a newline.
    #[wasm_bindgen(js_name = headerNames)]
    pub fn header_names(headers: &web_sys::Headers) -> String;
    #[wasm_bindgen(js_name = editHeaders, catch)]
    fn edit_headers(headers: &web_sys::Headers, deletes: &str, sets: &str) -> Result<(), JsValue>;
    /// The entry module's `Forward` (see `crate::forward::prepare`): `plan` lists the origin's
    /// URL, `deletes` names, `sets` pairs for the request, then the answer's pairs.
    #[wasm_bindgen(js_name = forwardStep, catch)]
    pub fn forward_step(
        incoming: &web_sys::Request,
        plan: &str,
        deletes: usize,
        sets: usize,
        usage: u32,
    ) -> Result<JsValue, JsValue>;
}

/// Headers that ask an origin to take another method than the request line's. The edge
/// decides on the request line's method, so they never reach the origin (an origin honouring
/// one would run, say, a `DELETE` the edge judged as a `POST`).
pub const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether a header the caller sent stays away from the origin: every `x-keyplane-*` (only
/// the edge sets those), the consumed credential, `host` (the origin's URL decides it) and the
/// [`METHOD_OVERRIDES`]. Header names come lower-cased from the runtime. Each name is matched
/// with `_` read as `-`: servers that hand headers to applications as CGI-style variables
/// (WSGI, Rack, PHP) turn both into `_`, so `x_keyplane_org_id` would reach such an
/// application as the edge's `x-keyplane-org-id`, and `x_http_method_override` as the
/// override Rack honours.
pub fn is_dropped(name: &str, drop_authorization: bool) -> bool {
    reads_as(name, "x-api-key")
        || (name == "authorization" && drop_authorization)
        || name == "host"
        || starts_as(name, "x-keyplane-")
        || METHOD_OVERRIDES
            .iter()
            .any(|dropped| reads_as(name, dropped))
}

/// Whether `name` is `wanted` (lower case) with any of its `-` written `_`.
fn reads_as(name: &str, wanted: &str) -> bool {
    name.len() == wanted.len() && starts_as(name, wanted)
}

/// Whether `name` starts with `prefix` (lower case), any of its `-` written `_`.
fn starts_as(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(byte, wanted)| byte == wanted || (byte == b'_' && wanted == b'-'))
}

/// Whether the caller's `Authorization` header stays away from the origin: when it carries a
/// Keyplane key (well formed, checksum right, this deployment's prefix) in any form, whether
/// the key was the credential checked or not, since the origin never sees a key (the decision
/// refuses every form but a lone Bearer key anyway); and only then, so Basic credentials and
/// the origin's own tokens (on a public route, say) pass through.
pub fn authorization_carries_a_key(authorization: Option<&str>, prefix: &KeyPrefix) -> bool {
    authorization.is_some_and(|value| credential::carries_a_key(value, prefix))
}

/// Headers to delete and to set on one `Headers` object, applied with [`Edits::apply`].
#[derive(Debug, Default)]
pub struct Edits {
    deletes: String,
    sets: String,
    /// Names in `deletes`.
    delete_count: usize,
    /// Pairs in `sets`.
    set_count: usize,
}

impl Edits {
    /// Deletes every name in `names` (newline-terminated, as [`header_names`] lists them) that
    /// `drop` selects.
    pub fn delete_where(&mut self, names: &str, drop: impl Fn(&str) -> bool) -> &mut Self {
        for name in names
            .split('\n')
            .filter(|name| !name.is_empty() && drop(name))
        {
            self.deletes.push_str(name);
            self.deletes.push('\n');
            self.delete_count += 1;
        }
        self
    }

    /// Sets `name` to `value`. Neither may contain a newline: names are the edge's own
    /// constants, values its own ids, scopes and numbers.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        debug_assert!(!name.contains('\n') && !value.contains('\n'));
        for part in [name, value] {
            self.sets.push_str(part);
            self.sets.push('\n');
        }
        self.set_count += 1;
        self
    }

    /// The edits of a `sets` list as [`Edits::sets`] gave it (no deletions).
    pub fn from_sets(sets: String) -> Self {
        Edits {
            set_count: sets.matches('\n').count() / 2,
            deletes: String::new(),
            sets,
            delete_count: 0,
        }
    }

    /// The names to delete, listed `name\n…`.
    pub fn deletes(&self) -> &str {
        &self.deletes
    }

    /// How many names [`Edits::deletes`] lists.
    pub fn delete_count(&self) -> usize {
        self.delete_count
    }

    /// The pairs to set, listed `name\nvalue\n…`.
    pub fn sets(&self) -> &str {
        &self.sets
    }

    /// How many pairs [`Edits::sets`] lists.
    pub fn set_count(&self) -> usize {
        self.set_count
    }

    /// The value `name` is set to, if it is.
    pub fn value_of(&self, name: &str) -> Option<&str> {
        let mut parts = self.sets.split('\n');
        while let (Some(set), Some(value)) = (parts.next(), parts.next()) {
            if set == name {
                return Some(value);
            }
        }
        None
    }

    /// Applies the edits to `headers`.
    pub fn apply(&self, headers: &web_sys::Headers) -> Result<(), JsValue> {
        edit_headers(headers, &self.deletes, &self.sets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyplane_shared::ApiKey;

    #[test]
    fn identity_headers_and_the_consumed_credential_are_dropped() {
        assert!(is_dropped("x-keyplane-key-id", false));
        assert!(is_dropped("x-keyplane-anything", false));
        assert!(is_dropped("x-api-key", false));
        assert!(is_dropped("host", false));
        assert!(is_dropped("authorization", true));
        assert!(!is_dropped("authorization", false));
        assert!(!is_dropped("accept", true));
        assert!(!is_dropped("x-keyplane", true));
        // What CGI-style servers read as the same names.
        for spelled in [
            "x_keyplane_org_id",
            "x_keyplane-key-id",
            "x-keyplane_scopes",
            "x_api_key",
            "x-api_key",
        ] {
            assert!(is_dropped(spelled, false), "{spelled}");
        }
        assert!(!is_dropped("x_keyplane", false));
        assert!(!is_dropped("x_api_keys", false));
        assert!(!is_dropped("my_header", false));
    }

    #[test]
    fn only_an_authorization_header_carrying_a_keyplane_key_is_withheld() {
        let prefix = KeyPrefix::default();
        let key = ApiKey::generate(&prefix, keyplane_shared::Environment::Live).expect("CSPRNG");
        let bearer = format!("Bearer {}", key.expose_secret());
        assert!(authorization_carries_a_key(Some(&bearer), &prefix));
        assert!(authorization_carries_a_key(
            Some(&format!("bearer   {} ", key.expose_secret())),
            &prefix
        ));
        let other = ApiKey::generate(&prefix, keyplane_shared::Environment::Test).expect("CSPRNG");
        for unusual in [
            format!("Bearer\t{}", key.expose_secret()),
            format!("BEARER  {}", key.expose_secret()),
            format!(
                "Bearer {}, Bearer {}",
                key.expose_secret(),
                other.expose_secret()
            ),
            format!("Token {}", key.expose_secret()),
            format!("Bearer {}.sig", key.expose_secret()),
            // `Basic base64("<key>:")`.
            format!("Basic {}", base64_of(&format!("{}:", key.expose_secret()))),
        ] {
            assert!(
                authorization_carries_a_key(Some(&unusual), &prefix),
                "{unusual:?}"
            );
        }
        let truncated = format!("Bearer {}", &key.expose_secret()[..20]);
        for kept in [
            None,
            Some("Basic dXNlcjpwYXNz"),
            Some("Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"),
            Some("Bearer "),
            Some(truncated.as_str()),
        ] {
            assert!(!authorization_carries_a_key(kept, &prefix), "{kept:?}");
        }
        let other_prefix = KeyPrefix::new("pk").expect("valid prefix");
        assert!(!authorization_carries_a_key(Some(&bearer), &other_prefix));
    }

    fn base64_of(text: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn method_override_headers_never_reach_the_origin() {
        for name in [
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
        ] {
            assert!(is_dropped(name, false), "{name}");
            assert!(
                is_dropped(&name.replace('-', "_"), false),
                "{name} with `_`"
            );
        }
        assert!(!is_dropped("x-http-methods", false));
        assert!(!is_dropped("x_http_methods", false));
    }

    #[test]
    fn edits_list_the_selected_deletions_and_the_pairs_in_order() {
        let mut edits = Edits::default();
        edits
            .delete_where("accept\nhost\nx-api-key\nx-keyplane-env\n", |name| {
                is_dropped(name, false)
            })
            .set("x-keyplane-key-id", "key_1")
            .set("x-keyplane-scopes", "a:read b:write");
        assert_eq!(edits.deletes, "host\nx-api-key\nx-keyplane-env\n");
        assert_eq!((edits.delete_count(), edits.set_count()), (3, 2));
        assert_eq!(
            edits.sets,
            "x-keyplane-key-id\nkey_1\nx-keyplane-scopes\na:read b:write\n"
        );
    }

    #[test]
    fn a_sets_list_read_back_gives_each_value_and_only_names_in_name_position() {
        let mut edits = Edits::default();
        edits
            .set("ratelimit", "\"key\";r=9;t=6")
            .set("x-keyplane-request-id", "req_1");
        let back = Edits::from_sets(edits.sets().to_owned());
        assert_eq!(back.value_of("x-keyplane-request-id"), Some("req_1"));
        assert_eq!(back.set_count(), 2);
        assert_eq!(back.value_of("ratelimit"), Some("\"key\";r=9;t=6"));
        // A value equal to a name is not taken for one.
        assert_eq!(back.value_of("req_1"), None);
        assert_eq!(Edits::from_sets(String::new()).value_of("ratelimit"), None);
    }
}
