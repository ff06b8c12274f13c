//! Header edits on the request path, decided here and applied by `edge/js/headers.js` in one
//! call per message, which also builds the outgoing request or the relayed answer (through
//! wasm-bindgen's bindings every name and value would cross the wasm boundary on its own, a
//! cost the edge overhead benchmark shows).
//!
//! The rules stay in Rust: which of the caller's headers never reach the origin
//! ([`is_dropped`]), and which are added ([`Edits`]). The JS side only applies the lists.

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
    #[wasm_bindgen(js_name = outgoingRequest, catch)]
    fn outgoing_request(
        target: &str,
        incoming: &web_sys::Request,
        deletes: &str,
        sets: &str,
    ) -> Result<web_sys::Request, JsValue>;
    #[wasm_bindgen(js_name = relayedAnswer, catch)]
    fn relayed_answer(origin: &web_sys::Response, sets: &str)
    -> Result<web_sys::Response, JsValue>;
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
/// [`METHOD_OVERRIDES`]. Header names come lower-cased from the runtime.
pub fn is_dropped(name: &str, drop_authorization: bool) -> bool {
    name == "x-api-key"
        || (name == "authorization" && drop_authorization)
        || name == "host"
        || name.starts_with("x-keyplane-")
        || METHOD_OVERRIDES.contains(&name)
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
        self
    }

    /// Applies the edits to `headers`.
    pub fn apply(&self, headers: &web_sys::Headers) -> Result<(), JsValue> {
        edit_headers(headers, &self.deletes, &self.sets)
    }

    /// The request for the origin: `target` with `incoming`'s method, headers, body stream and
    /// redirect mode, the edits applied to its headers (one JS call: `outgoingRequest` in
    /// `edge/js/headers.js`, which says why an init dictionary rather than a copy).
    pub fn request_for(
        &self,
        target: &str,
        incoming: &web_sys::Request,
    ) -> Result<web_sys::Request, JsValue> {
        outgoing_request(target, incoming, &self.deletes, &self.sets)
    }

    /// The origin's answer with the edits' fields set: a new response over the same body
    /// stream (one JS call; deletions do not apply).
    pub fn relay(&self, origin: &web_sys::Response) -> Result<web_sys::Response, JsValue> {
        debug_assert!(self.deletes.is_empty());
        relayed_answer(origin, &self.sets)
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
        }
        assert!(!is_dropped("x-http-methods", false));
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
        assert_eq!(
            edits.sets,
            "x-keyplane-key-id\nkey_1\nx-keyplane-scopes\na:read b:write\n"
        );
    }
}
