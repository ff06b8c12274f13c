//! One path, decided and forwarded: a corpus of tricky request-targets, each sent byte for byte
//! (a raw HTTP/1.1 client) through the real worker to a recording origin, under the bare workerd
//! binary (the edge sees the request-target as sent) and under miniflare (its entry worker
//! re-parses the URL first). For every request the origin received, the scopes the policy
//! requires for the path it received must be held by the credential the request carried, the
//! path it received must be canonical (the edge forwards what it decided on), and no Keyplane
//! key may reach it; in strict mode no ambiguous path reaches it, and those the edge can see
//! as ambiguous are refused with 400.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use keyplane_shared::path::CanonicalTarget;
use keyplane_shared::policy::Requirement;
use keyplane_shared::{PolicySpec, RoutePolicy, ScopeSet};
use keyplane_tests::{Deployment, EdgeRuntime, Received, Setup, raw_request};
use serde_json::{Value, json};

/// How long a new key may take to reach an edge (see `replication.rs`).
const PROPAGATION: Duration = Duration::from_secs(15);

/// Public and scoped rules, with the issue's two examples: a scoped write route and a scoped
/// route in front of a public catch-all, and no default scopes (any valid key).
fn policy() -> Value {
    json!({
        "rules": [
            {"path": "/public/**", "public": true},
            {"method": "POST", "path": "/v1/contacts/**", "scopes": ["contacts:write"]},
            {"method": "GET", "path": "/v1/docs/private/{id}", "scopes": ["docs:read"]},
            {"path": "/v1/docs/**", "public": true},
            {"path": "/v1/admin/**", "scopes": ["admin:full"]}
        ],
        "default_scopes": []
    })
}

/// The corpus: (method, request-target as sent). Dot segments in every encoding, `//`, `;`,
/// `\`, `%2f`, `%5c`, double encoding, case, trailing dots, full-width characters, control
/// bytes, and the plain forms they imitate.
const CORPUS: &[(&str, &[u8])] = &[
    // The plain routes.
    ("GET", b"/public/status"),
    ("GET", b"/v1/docs/intro"),
    ("GET", b"/v1/docs/private/42"),
    ("POST", b"/v1/contacts"),
    ("POST", b"/v1/contacts/7/notes"),
    ("GET", b"/v1/admin/users"),
    ("GET", b"/v1/other"),
    ("GET", b"/v1/docs/private/42/"),
    ("GET", b"/v1/docs/private/42?q=1"),
    // The issue's two examples: `%2e%2e` cancels an empty segment.
    ("POST", b"/v1//%2e%2e/contacts"),
    ("GET", b"/v1/docs/private//%2e%2e/42"),
    ("GET", b"/v1/docs/private//%2E%2E/42"),
    ("GET", b"/v1/docs/private//.%2e/42"),
    ("GET", b"/v1/docs/private//%2e./42"),
    ("POST", b"/v1//.%2E/contacts"),
    // Dot segments in every encoding.
    ("GET", b"/public/%2e%2e/v1/admin/users"),
    ("GET", b"/public/%2E%2E/v1/admin/users"),
    ("GET", b"/public/.%2e/v1/admin/users"),
    ("GET", b"/public/%2e./v1/admin/users"),
    ("GET", b"/public/../v1/admin/users"),
    ("GET", b"/public/./../v1/admin/users"),
    ("GET", b"/v1/docs/x/%2e%2e/private/42"),
    ("GET", b"/v1/docs/private/%2e/42"),
    ("GET", b"/v1/docs/private/42/%2e"),
    ("GET", b"/v1/docs/private/42/%2e%2e/43"),
    ("GET", b"/v1/docs/%2e/private/42"),
    ("GET", b"/public/%252e%252e/v1/admin/users"),
    ("GET", b"/public/%25%32%65%25%32%65/v1/admin/users"),
    ("GET", b"/public/%c0%ae%c0%ae/v1/admin/users"),
    ("GET", b"/public/%u002e%u002e/v1/admin/users"),
    ("GET", b"/public/..%00/v1/admin/users"),
    ("GET", b"/public/%2e%2e%2e/v1/admin/users"),
    ("GET", b"/v1/docs/private/42/%2e%2e"),
    // Empty segments.
    ("GET", b"//v1/admin/users"),
    ("GET", b"/v1//admin/users"),
    ("GET", b"/v1/docs//private/42"),
    ("GET", b"/v1/docs/private//42"),
    ("GET", b"///v1/admin/users"),
    ("POST", b"/v1//contacts"),
    ("GET", b"/public//../v1/admin/users"),
    ("GET", b"/v1/docs/private//42/.."),
    // `;` parameters.
    ("GET", b"/public/..;/v1/admin/users"),
    ("GET", b"/public/%2e%2e;x=1/v1/admin/users"),
    ("GET", b"/v1/admin;x=1/users"),
    ("GET", b"/v1/docs/private;x/42"),
    ("GET", b"/v1/docs;/private/42"),
    ("POST", b"/v1/contacts;v=1"),
    // Backslashes, raw and encoded; encoded slashes.
    ("GET", b"/v1\\admin\\users"),
    ("GET", b"/public\\..\\v1\\admin\\users"),
    ("GET", b"/v1/docs/private\\42"),
    ("GET", b"/v1/docs/private%2f42"),
    ("GET", b"/v1/docs/private%2F42"),
    ("GET", b"/v1/docs/private%5c42"),
    ("GET", b"/v1/docs/private%5C42"),
    ("GET", b"/public/..%2fv1/admin/users"),
    ("GET", b"/public/..%5cv1/admin/users"),
    ("GET", b"/public/%2e%2e%2fv1%2fadmin%2fusers"),
    ("GET", b"/public%2f..%2fv1%2fadmin%2fusers"),
    ("GET", b"/public/..%252fv1/admin/users"),
    ("GET", b"/public/..%25252fv1/admin/users"),
    ("POST", b"/v1%2fcontacts"),
    // Case and encoded letters.
    ("GET", b"/V1/ADMIN/users"),
    ("GET", b"/v1/Admin/users"),
    ("GET", b"/v1/docs/PRIVATE/42"),
    ("GET", b"/%76%31/admin/users"),
    ("GET", b"/v1/%61dmin/users"),
    ("GET", b"/v1/docs/%70rivate/42"),
    ("POST", b"/V1/Contacts"),
    // Trailing dots and spaces.
    ("GET", b"/v1/admin./users"),
    ("GET", b"/v1/admin../users"),
    ("GET", b"/v1/docs/private./42"),
    ("GET", b"/v1/admin%2e/users"),
    ("GET", b"/v1/admin%20/users"),
    ("GET", b"/v1/docs/private%20/42"),
    ("POST", b"/v1/contacts."),
    // Full-width characters (U+FF0E full stop, U+FF0F solidus, full-width letters).
    ("GET", "/public/．．/v1/admin/users".as_bytes()),
    ("GET", "/public／..／v1／admin／users".as_bytes()),
    ("GET", "/v1/ａｄｍｉｎ/users".as_bytes()),
    ("GET", "/v1/docs/ｐｒｉｖａｔｅ/42".as_bytes()),
    ("GET", b"/public/%ef%bc%8e%ef%bc%8e/v1/admin/users"),
    // Control characters, raw and encoded.
    ("GET", b"/v1/ad%00min/users"),
    ("GET", b"/v1/admin%00/users"),
    ("GET", b"/v1/docs/private/42%00"),
    ("GET", b"/v1/ad\x01min/users"),
    ("GET", b"/v1/adm\x7fin/users"),
    ("GET", b"/v1/docs/private/4\x012"),
    ("GET", b"/v1/docs/private/42%0a"),
    ("GET", b"/v1/docs/private/42%0d%0a"),
    ("GET", b"/v1/ad%09min/users"),
    // Characters the URL parser percent-encodes, malformed escapes, other bytes.
    ("GET", b"/v1/docs/private/4\"2"),
    ("GET", b"/v1/docs/private/<42>"),
    ("GET", b"/v1/docs/private/4^2"),
    ("GET", b"/v1/docs/private/{42}"),
    ("GET", b"/v1/docs/private/4`2"),
    ("GET", b"/v1/docs/private/4|2"),
    ("GET", "/v1/docs/private/caf\u{e9}".as_bytes()),
    ("GET", b"/v1/docs/private/4\x802"),
    ("GET", b"/v1/docs/private/%zz"),
    ("GET", b"/v1/docs/private/4%"),
    ("GET", b"/v1/docs/private/%2"),
    // Queries and fragments.
    ("GET", b"/public?/../v1/admin/users"),
    ("GET", b"/public/x?a=/../../v1/admin"),
    ("GET", b"/public#/../v1/admin/users"),
    ("GET", b"/v1/docs/private/42?x=%2e%2e&y='\"<>"),
    // Not origin-form.
    ("GET", b"*"),
    ("GET", b"http://127.0.0.1/v1/admin/users"),
];

/// A credential the corpus is sent with, and the scopes it holds (`None`: no key).
struct Caller {
    label: &'static str,
    key: Option<String>,
    scopes: Option<ScopeSet>,
}

/// One request of the corpus and what became of it.
struct Outcome {
    method: &'static str,
    target: &'static [u8],
    caller: usize,
    status: u16,
    code: String,
    received: Option<Received>,
}

impl Outcome {
    fn describe(&self, callers: &[Caller]) -> String {
        format!(
            "{} {:?} ({}) -> {} {}",
            self.method,
            String::from_utf8_lossy(self.target),
            callers[self.caller].label,
            self.status,
            self.code
        )
    }
}

fn route_policy() -> Result<RoutePolicy> {
    let spec: PolicySpec = serde_json::from_value(policy())?;
    Ok(RoutePolicy::from_spec(&spec)?)
}

/// Sends the whole corpus through edge `edge` once per caller; each request carries an
/// `x-probe` id that finds it in the origin's log.
fn run_corpus(d: &Deployment, edge: usize, callers: &[Caller]) -> Result<Vec<Outcome>> {
    let base = d.edge_url(edge);
    let mut sent = Vec::new();
    for (caller_index, caller) in callers.iter().enumerate() {
        for (probe, (method, target)) in CORPUS.iter().enumerate() {
            let id = format!("{edge}-{caller_index}-{probe}");
            let mut headers = vec![("x-probe", id.as_str())];
            if let Some(key) = &caller.key {
                headers.push(("x-api-key", key.as_str()));
            }
            let reply = raw_request(&base, method, target, &headers)
                .with_context(|| format!("{method} {:?}", String::from_utf8_lossy(target)))?;
            let code = reply
                .json()
                .ok()
                .and_then(|body| body["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            sent.push((id, method, *target, caller_index, reply.status, code));
        }
    }
    let mut log: HashMap<String, Received> = HashMap::new();
    for received in d.origin.received() {
        if let Some(id) = received.header_values("x-probe").next() {
            log.insert(id.to_owned(), received.clone());
        }
    }
    Ok(sent
        .into_iter()
        .map(|(id, method, target, caller, status, code)| Outcome {
            method,
            target,
            caller,
            status,
            code,
            received: log.remove(&id),
        })
        .collect())
}

/// How an edge treats ambiguous paths, and what runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EdgeKind {
    strict: bool,
    runtime: EdgeRuntime,
}

/// Whether the edge sees `target` as ambiguous, when that can be told from here: bare workerd
/// hands the worker the request-target as sent, miniflare its canonical form, and both resolve
/// plain `.`/`..` segments their own way first (so targets with those are not predicted).
fn seen_as_ambiguous(kind: EdgeKind, target: &[u8]) -> Option<bool> {
    let text = String::from_utf8_lossy(target);
    let path = text.split('?').next().unwrap_or_default();
    let plain_dots = path
        .split('/')
        .any(|segment| segment == "." || segment == "..");
    if !text.starts_with('/') || text.contains('#') || plain_dots {
        return None;
    }
    let seen = match kind.runtime {
        EdgeRuntime::BareWorkerd => CanonicalTarget::parse(&text).ambiguity(),
        EdgeRuntime::Miniflare => {
            CanonicalTarget::parse(CanonicalTarget::parse(&text).as_str()).ambiguity()
        }
    };
    Some(seen.is_some())
}

/// Every way an outcome breaks the rules: a request reached the origin on a path whose
/// requirement its caller does not meet, on a path that is not canonical (or, in strict mode,
/// ambiguous), with a key or with another method; an ambiguous path was not refused in strict
/// mode, or refused otherwise.
fn violations(
    outcomes: &[Outcome],
    callers: &[Caller],
    policy: &RoutePolicy,
    kind: EdgeKind,
) -> Vec<String> {
    let mut found = Vec::new();
    for outcome in outcomes {
        let refused_as_ambiguous = outcome.status == 400 && outcome.code == "ambiguous_path";
        match (kind.strict, seen_as_ambiguous(kind, outcome.target)) {
            (true, Some(true)) if !refused_as_ambiguous || outcome.received.is_some() => found
                .push(format!(
                    "{}: ambiguous, not refused",
                    outcome.describe(callers)
                )),
            (true, Some(false)) | (false, _) if refused_as_ambiguous => found.push(format!(
                "{}: refused as ambiguous",
                outcome.describe(callers)
            )),
            _ => {}
        }
        let Some(received) = &outcome.received else {
            continue;
        };
        let target = received.target_text();
        let canonical = CanonicalTarget::parse(&target);
        if canonical.as_str() != target {
            found.push(format!(
                "{}: the origin received {target:?}, whose canonical form is {:?}",
                outcome.describe(callers),
                canonical.as_str()
            ));
        }
        if kind.strict && canonical.ambiguity().is_some() {
            found.push(format!(
                "{}: the origin received the ambiguous {target:?}",
                outcome.describe(callers)
            ));
        }
        let path = target.split('?').next().unwrap_or_default();
        let caller = &callers[outcome.caller];
        let requirement = policy.requirement(&received.method, path);
        let allowed = match (&*requirement, &caller.scopes) {
            (Requirement::Public, _) => true,
            (Requirement::Scopes(_), None) => false,
            (Requirement::Scopes(required), Some(held)) => held.first_missing(required).is_none(),
        };
        if !allowed {
            found.push(format!(
                "{}: the origin received {} {target:?}, which needs {requirement:?}",
                outcome.describe(callers),
                received.method
            ));
        }
        if received.method != outcome.method {
            found.push(format!(
                "{}: the origin received method {}",
                outcome.describe(callers),
                received.method
            ));
        }
        for key in callers.iter().filter_map(|caller| caller.key.as_deref()) {
            if received
                .headers
                .iter()
                .any(|(_, value)| value.contains(key))
            {
                found.push(format!(
                    "{}: a Keyplane key reached the origin",
                    outcome.describe(callers)
                ));
            }
        }
    }
    found
}

/// The edges of [`deployment`], by index.
const EDGES: [EdgeKind; 3] = [
    EdgeKind {
        strict: true,
        runtime: EdgeRuntime::BareWorkerd,
    },
    EdgeKind {
        strict: false,
        runtime: EdgeRuntime::BareWorkerd,
    },
    EdgeKind {
        strict: true,
        runtime: EdgeRuntime::Miniflare,
    },
];

/// The deployment: edge 0 under bare workerd, edge 1 under bare workerd with
/// `PATH_NORMALIZATION = "resolve"`, edge 2 under miniflare; every edge runs the same policy.
fn deployment(setup: &Setup) -> Result<Deployment> {
    Deployment::start(setup, 3, |options| {
        options.route_policy = Some(policy());
        match options.name.as_str() {
            "edge-0" => options.runtime = EdgeRuntime::BareWorkerd,
            "edge-1" => {
                options.runtime = EdgeRuntime::BareWorkerd;
                options.var("PATH_NORMALIZATION", "resolve");
            }
            _ => {}
        }
    })
}

fn callers(d: &Deployment) -> Result<Vec<Caller>> {
    let mut callers = vec![Caller {
        label: "no key",
        key: None,
        scopes: None,
    }];
    for (label, scopes) in [
        ("key without scopes", &[][..]),
        ("admin key", &["admin:full"][..]),
    ] {
        let (_, key) =
            d.create_key(json!({"name": label, "environment": "live", "scopes": scopes}))?;
        callers.push(Caller {
            label,
            key: Some(key),
            scopes: Some(ScopeSet::parse(scopes)?),
        });
    }
    Ok(callers)
}

#[test]
#[ignore = "needs the built worker and node 22: run `cargo xtask test`"]
fn every_corpus_path_is_decided_on_the_path_the_origin_receives() -> Result<()> {
    let Some(setup) = Setup::from_env() else {
        return Ok(());
    };
    let d = deployment(&setup)?;
    let callers = callers(&d)?;
    for edge in 0..d.edges.len() {
        for caller in callers.iter().skip(1) {
            let key = caller.key.as_deref();
            d.wait_for(
                PROPAGATION,
                &format!("edge {edge} admitting a new key"),
                || Ok(d.through_edge(edge, "/v1/other", key)?.status == 200),
            )?;
        }
    }
    let policy = route_policy()?;
    let mut report = Vec::new();
    for (edge, kind) in EDGES.into_iter().enumerate() {
        let outcomes = run_corpus(&d, edge, &callers)?;
        let forwarded = outcomes.iter().filter(|o| o.received.is_some()).count();
        // The plain routes behave as the policy says, so the corpus run is not vacuous.
        let plain = |target: &[u8], caller: usize| {
            outcomes
                .iter()
                .find(|o| o.target == target && o.caller == caller)
                .map(|o| (o.status, o.received.is_some()))
        };
        ensure!(
            plain(b"/v1/docs/private/42", 0) == Some((401, false)),
            "edge {edge}"
        );
        ensure!(
            plain(b"/v1/docs/private/42", 2) == Some((200, true)),
            "edge {edge}"
        );
        ensure!(
            plain(b"/public/status", 0) == Some((200, true)),
            "edge {edge}"
        );
        // The issue's two examples: refused in strict mode when the edge sees them as sent;
        // decided on the path the origin receives otherwise.
        let issue = |target: &[u8], caller: usize| plain(target, caller).map(|(status, _)| status);
        let (write, private) = (
            &b"/v1//%2e%2e/contacts"[..],
            &b"/v1/docs/private//%2e%2e/42"[..],
        );
        let expected = match (kind.strict, kind.runtime) {
            (true, EdgeRuntime::BareWorkerd) => [400, 400, 400],
            _ => [403, 401, 200],
        };
        ensure!(
            [issue(write, 1), issue(private, 0), issue(private, 2)] == expected.map(Some),
            "edge {edge}: the issue's examples"
        );
        for violation in violations(&outcomes, &callers, &policy, kind) {
            report.push(format!("edge {edge}: {violation}"));
        }
        let refused = outcomes
            .iter()
            .filter(|o| o.code == "ambiguous_path")
            .count();
        println!(
            "edge {edge} ({kind:?}): {} requests, {forwarded} reached the origin, {refused} refused as ambiguous",
            outcomes.len()
        );
        // What the origin received for each target, with the admin key (it may call anything).
        for outcome in outcomes.iter().filter(|o| o.caller == 2) {
            let received = outcome.received.as_ref().map(Received::target_text);
            println!("  {} -> {received:?}", outcome.describe(&callers));
        }
    }
    ensure!(
        report.is_empty(),
        "{} violations:\n{}",
        report.len(),
        report.join("\n")
    );
    Ok(())
}
