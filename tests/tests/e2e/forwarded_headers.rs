//! What the origin never receives: a Keyplane key, in whatever form of `Authorization` it was
//! sent (it is either read as the credential or the request is refused), and the headers that
//! ask for another method than the one the edge decided on; and what it receives as sent: the
//! request's body. Requests go through the real worker (under bare workerd and under
//! miniflare) byte for byte, to a recording origin.

use std::time::Duration;

use anyhow::{Result, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyplane_tests::{Deployment, EdgeRuntime, Received, Reply, Setup, raw_request_with_body};
use serde_json::json;

/// How long a new key may take to reach an edge (see `replication.rs`).
const PROPAGATION: Duration = Duration::from_secs(15);

/// Edge 0 under bare workerd, edge 1 under miniflare: a scoped route, a public one, and the
/// method rules the overrides would dodge.
fn deployment(setup: &Setup) -> Result<Deployment> {
    Deployment::start(setup, 2, |options| {
        options.route_policy = Some(json!({
            "rules": [
                {"path": "/public/**", "public": true},
                {"method": "DELETE", "path": "/v1/contacts/{id}", "scopes": ["contacts:delete"]},
                {"method": "GET", "path": "/v1/docs/**", "scopes": ["docs:read"]}
            ],
            "default_scopes": []
        }));
        if options.name == "edge-0" {
            options.runtime = EdgeRuntime::BareWorkerd;
        }
    })
}

/// Sends `method target` to edge `edge` with `headers` and an `x-probe` id; the status and
/// what the origin received, if anything.
fn probe(
    d: &Deployment,
    edge: usize,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    id: &str,
) -> Result<(u16, Option<Received>)> {
    let (reply, received) = probe_with_body(d, edge, method, target, headers, id, &[])?;
    Ok((reply.status, received))
}

/// [`probe`] with `body`; the whole answer.
fn probe_with_body(
    d: &Deployment,
    edge: usize,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    id: &str,
    body: &[u8],
) -> Result<(Reply, Option<Received>)> {
    let mut all = vec![("x-probe", id)];
    all.extend_from_slice(headers);
    let reply = raw_request_with_body(&d.edge_url(edge), method, target.as_bytes(), &all, body)?;
    let received = d
        .origin
        .received()
        .into_iter()
        .find(|received| received.header_values("x-probe").any(|value| value == id));
    Ok((reply, received))
}

/// Header lines as (name, value), duplicates kept.
type Headers = Vec<(String, String)>;

fn wait_for_key(d: &Deployment, key: &str) -> Result<()> {
    for edge in 0..d.edges.len() {
        d.wait_for(
            PROPAGATION,
            &format!("edge {edge} admitting a new key"),
            || Ok(d.through_edge(edge, "/v1/other", Some(key))?.status == 200),
        )?;
    }
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn a_keyplane_key_in_any_authorization_form_is_the_credential_or_refused_never_forwarded()
-> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let d = deployment(&setup)?;
    let (_, key) =
        d.create_key(json!({"name": "docs", "environment": "live", "scopes": ["docs:read"]}))?;
    let (_, other) = d.create_key(json!({"name": "other", "environment": "live", "scopes": []}))?;
    wait_for_key(&d, &key)?;
    wait_for_key(&d, &other)?;

    let basic = format!("Basic {}", BASE64.encode(format!("{key}:")));
    let as_bearer = |value: String| vec![("authorization".to_owned(), value)];
    // (headers, status on the scoped route, status on the public route)
    let cases: Vec<(Headers, u16, u16)> = vec![
        (as_bearer(format!("Bearer {key}")), 200, 200),
        (as_bearer(format!("Bearer\t{key}")), 200, 200),
        (as_bearer(format!("bearer {key}")), 200, 200),
        (as_bearer(format!("BEARER  {key}")), 200, 200),
        (as_bearer(format!("Bearer {key}, Bearer {other}")), 401, 401),
        (as_bearer(format!("Bearer {key}.sig")), 401, 401),
        (as_bearer(format!("Token {key}")), 401, 401),
        (as_bearer(basic.clone()), 401, 401),
        // Two Basic headers, the key in the first: joined, the value is no one base64 text.
        (
            vec![
                ("authorization".into(), basic),
                ("authorization".into(), "Basic dXNlcjpwYXNz".into()),
            ],
            401,
            401,
        ),
        // The key base64-encoded as a Bearer token.
        (
            as_bearer(format!("Bearer {}", BASE64.encode(&key))),
            401,
            401,
        ),
        // Two Authorization headers: the runtime joins them with ", ".
        (
            vec![
                ("authorization".into(), format!("Bearer {key}")),
                ("authorization".into(), format!("Bearer {other}")),
            ],
            401,
            401,
        ),
        (
            vec![
                ("x-api-key".into(), key.clone()),
                (
                    "authorization".into(),
                    format!("Bearer {other}, Bearer {key}"),
                ),
            ],
            401,
            401,
        ),
        // The origin's own credentials are not Keyplane keys: they pass (a scoped route then
        // lacks a key).
        (as_bearer("Basic dXNlcjpwYXNz".into()), 401, 200),
    ];
    let mut problems = Vec::new();
    let mut n = 0;
    for edge in 0..d.edges.len() {
        for (headers, scoped, public) in &cases {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            for (target, expected) in [("/v1/docs/guide", scoped), ("/public/status", public)] {
                n += 1;
                let (status, received) =
                    probe(&d, edge, "GET", target, &headers, &format!("auth-{n}"))?;
                let case = format!("edge {edge}: {headers:?} on {target}");
                if status != *expected {
                    problems.push(format!("{case}: {status}, expected {expected}"));
                }
                if (status == 200) != received.is_some() {
                    problems.push(format!("{case}: {status}, origin received {received:?}"));
                }
                let Some(received) = received else { continue };
                let leaked = received
                    .headers
                    .iter()
                    .any(|(_, value)| value.contains(&key) || value.contains(&other));
                if leaked {
                    problems.push(format!(
                        "{case}: a key reached the origin: {:?}",
                        received.headers
                    ));
                }
            }
        }
    }
    // The origin's own Basic credentials reached it unchanged.
    let basic_kept = d.origin.received().iter().any(|received| {
        received.target_text() == "/public/status"
            && received
                .header_values("authorization")
                .any(|v| v == "Basic dXNlcjpwYXNz")
    });
    ensure!(
        basic_kept,
        "the origin's own Authorization did not pass through"
    );
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn method_override_headers_never_reach_the_origin() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let d = deployment(&setup)?;
    // May read docs and call the default routes, may not delete contacts.
    let (_, key) =
        d.create_key(json!({"name": "reader", "environment": "live", "scopes": ["docs:read"]}))?;
    wait_for_key(&d, &key)?;
    let mut n = 0;
    for edge in 0..d.edges.len() {
        for name in [
            "X-HTTP-Method-Override",
            "X-HTTP-Method",
            "X-Method-Override",
            // Rack reads this one as X-HTTP-Method-Override.
            "X_HTTP_Method_Override",
        ] {
            n += 1;
            let headers = [("x-api-key", key.as_str()), (name, "DELETE")];
            let id = format!("override-{n}");
            let (status, received) = probe(&d, edge, "POST", "/v1/contacts/7", &headers, &id)?;
            ensure!(status == 200, "edge {edge} {name}: {status}");
            let received =
                received.ok_or_else(|| anyhow::anyhow!("edge {edge} {name}: not forwarded"))?;
            ensure!(
                received.method == "POST",
                "edge {edge} {name}: {received:?}"
            );
            let lower = name.to_ascii_lowercase();
            ensure!(
                received.header_values(&lower).next().is_none(),
                "edge {edge}: {name} reached the origin: {:?}",
                received.headers
            );
        }
        // The method decided on is the request line's: a real DELETE needs the scope.
        let (status, _) = probe(
            &d,
            edge,
            "DELETE",
            "/v1/contacts/7",
            &[("x-api-key", &key)],
            &format!("delete-{edge}"),
        )?;
        ensure!(status == 403, "edge {edge}: DELETE answered {status}");
    }
    Ok(())
}

/// The caller's body reaches the origin byte for byte, with its length, whatever the method.
/// The edge hands the incoming body stream to the origin's request untouched; a GET with a
/// body (legal HTTP, which the runtime refuses in a request's init dictionary) goes through a
/// copy of the incoming request instead, and must keep its body too.
#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn request_bodies_reach_the_origin_byte_for_byte() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let d = deployment(&setup)?;
    let (_, key) = d.create_key(json!({"name": "writer", "environment": "live", "scopes": []}))?;
    wait_for_key(&d, &key)?;
    // Every byte value (not UTF-8), in many of the runtime's stream pieces.
    let large: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(151) % 256) as u8)
        .collect();
    let bodies: [(&str, &[u8]); 4] = [
        ("POST", &large),
        ("PUT", br#"{"name":"Ada"}"#),
        ("GET", b"a body on a GET"),
        ("DELETE", b"a body on a DELETE"),
    ];
    for edge in 0..d.edges.len() {
        for (method, body) in bodies {
            let id = format!("body-{edge}-{method}");
            let headers = [("x-api-key", key.as_str())];
            let (reply, received) =
                probe_with_body(&d, edge, method, "/v1/things/1", &headers, &id, body)?;
            ensure!(
                reply.status == 200,
                "edge {edge} {method}: {} {}",
                reply.status,
                reply.body
            );
            let received =
                received.ok_or_else(|| anyhow::anyhow!("edge {edge} {method}: not forwarded"))?;
            ensure!(received.method == method, "edge {edge}: {received:?}");
            ensure!(
                received.body == body,
                "edge {edge} {method}: the origin received {} bytes of the {} sent{}",
                received.body.len(),
                body.len(),
                if received.body.len() == body.len() {
                    " (different bytes)"
                } else {
                    ""
                }
            );
            let length = body.len().to_string();
            ensure!(
                received
                    .header_values("content-length")
                    .eq([length.as_str()]),
                "edge {edge} {method}: content-length {:?}",
                received.header_values("content-length").collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}
