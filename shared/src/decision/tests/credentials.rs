//! Decision tests of the credential a request presents: which forms of `Authorization` are read
//! as the key, and which are refused whatever the route.

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn bearer_tokens_work_and_x_api_key_takes_precedence() {
    let mut world = World::new();
    let (key, _) = world.issue(Environment::Live, &[], |_| {});
    let bearer = format!("Bearer {}", key.expose_secret());
    assert!(matches!(
        world.decide("GET", "/x", None, Some(&bearer)),
        Decision::Allow(_)
    ));
    let lower = format!("bearer   {}", key.expose_secret());
    assert!(matches!(
        world.decide("GET", "/x", None, Some(&lower)),
        Decision::Allow(_)
    ));
    let denied = world.decide("GET", "/x", Some("sk_live_garbage"), Some(&bearer));
    assert_eq!(denial(denied), Denial::InvalidKey);
}

#[test]
fn no_credentials_get_a_bare_challenge() {
    let mut world = World::new();
    for (x_api_key, authorization) in [
        (None, None),
        (Some(""), None),
        (None, Some("Basic dXNlcjpwYXNz")),
        (None, Some("Bearer ")),
    ] {
        let denied = denial(world.decide("GET", "/x", x_api_key, authorization));
        assert_eq!(denied, Denial::MissingKey);
        assert_eq!(denied.status(), 401);
        assert_eq!(
            denied.www_authenticate("keyplane").as_deref(),
            Some(r#"Bearer realm="keyplane""#)
        );
    }
}

#[test]
fn unusual_bearer_spellings_present_the_key() {
    let mut world = World::new();
    let (key, _) = world.issue(Environment::Live, &[], |_| {});
    for value in [
        format!("Bearer\t{}", key.expose_secret()),
        format!("BEARER  {}", key.expose_secret()),
        format!("bearer {}", key.expose_secret()),
    ] {
        assert!(
            matches!(
                world.decide("GET", "/x", None, Some(&value)),
                Decision::Allow(_)
            ),
            "{value:?}"
        );
    }
}

#[test]
fn a_key_in_an_unreadable_authorization_is_refused_on_every_route() {
    let mut world = World::new();
    let (key, _) = world.issue(Environment::Live, &[], |_| {});
    let (other, _) = world.issue(Environment::Live, &[], |_| {});
    let (key, other) = (
        key.expose_secret().to_owned(),
        other.expose_secret().to_owned(),
    );
    // `Basic base64("<key>:")`, the form some HTTP clients send an API key in.
    let basic = format!(
        "Basic {}",
        credential::encode_base64(format!("{key}:").as_bytes())
    );
    for value in [
        format!("Bearer {key}, Bearer {other}"),
        format!("Bearer {key}, Bearer {key}"),
        format!("Token {key}"),
        format!("Bearer {key}.sig"),
        basic,
    ] {
        for (path, x_api_key) in [
            ("/x", None),
            ("/public/status", None),
            ("/x", Some(key.as_str())),
        ] {
            let decided = world.decide("GET", path, x_api_key, Some(&value));
            assert!(
                matches!(
                    decided,
                    Decision::Deny {
                        denial: Denial::InvalidKey,
                        key: None
                    }
                ),
                "{value:?} on {path} with x-api-key {}",
                x_api_key.is_some()
            );
        }
    }
}
