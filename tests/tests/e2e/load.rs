//! A load through the management API and the checks after it, for the fault suite and the
//! several-instances test.
//!
//! A [`Load`] drives creates and revokes from several threads (over every control-plane
//! instance) and keeps a [`Ledger`] of what each call answered; [`nothing_acknowledged_is_lost`]
//! then reads the API, the audit log and the feed back and checks them against it and against
//! each other; [`edges_converge`] checks every edge.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use keyplane_shared::table::codec::decode_changes;
use keyplane_shared::{ChangeOp, KeyStatus};
use keyplane_tests::{Deployment, Reply, signed};
use serde_json::{Value, json};

/// How long the edges may take to converge once the control plane answers again.
const CONVERGENCE: Duration = Duration::from_secs(20);
/// How long a test waits for its load to reach a count of acknowledged operations.
const PROGRESS: Duration = Duration::from_secs(60);
/// How long one call may go unanswered before it counts as unanswered: above what the control
/// plane may take by design while its database is cut off (a create waiting its turn behind
/// another's 5 s connection wait, then its own 5 s, then its hashing), so only a hang counts.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Every key a load makes is named with this prefix.
const LOAD_NAME: &str = "load-";

/// What the management API answered to a load's calls.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Creates answered 201: key id and the full key.
    pub created: Vec<(String, String)>,
    /// Revokes answered 200.
    pub revoked: BTreeSet<String>,
    /// Calls that got no answer (connection refused or cut, timed out): their outcome is
    /// unknown, but it must be whole (all of it or nothing).
    pub unanswered: u64,
    /// Answers other than success, by status and error code (a 503 `unavailable` while the
    /// database is down is expected; the caller decides what else is).
    pub refused: BTreeMap<(u16, String), u64>,
}

impl Ledger {
    /// Acknowledged operations.
    pub fn acknowledged(&self) -> usize {
        self.created.len() + self.revoked.len()
    }

    fn answer(&mut self, reply: &Reply) {
        let code = reply
            .json()
            .ok()
            .and_then(|body| body["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default();
        *self.refused.entry((reply.status, code)).or_default() += 1;
    }
}

/// Creates and revokes through the management API of `instance_urls` (thread `t` uses
/// instance `t % len`), until told to stop.
pub struct Load {
    instance_urls: Vec<String>,
    authorization: String,
    ledger: Mutex<Ledger>,
    stop: AtomicBool,
}

impl Load {
    /// A load on every instance of `d`.
    pub fn on(d: &Deployment) -> Self {
        Self {
            instance_urls: (0..d.instances()).map(|i| d.instance_url(i)).collect(),
            authorization: format!("Bearer {}", d.admin_key),
            ledger: Mutex::new(Ledger::default()),
            stop: AtomicBool::new(false),
        }
    }

    /// Runs `threads` threads of calls while `during` runs, then stops them and returns
    /// `during`'s result with the ledger. Each thread creates keys and revokes every other key
    /// it made, with a pause of `pause` between calls.
    pub fn run<T>(
        self,
        threads: usize,
        pause: Duration,
        during: impl FnOnce(&Self) -> Result<T>,
    ) -> Result<(T, Ledger)> {
        let outcome = std::thread::scope(|scope| {
            for thread in 0..threads {
                let this = &self;
                scope.spawn(move || this.thread(thread, pause));
            }
            let outcome = during(&self);
            self.stop.store(true, Ordering::SeqCst);
            outcome
        });
        let ledger = self
            .ledger
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok((outcome?, ledger))
    }

    /// Acknowledged operations so far.
    pub fn acknowledged(&self) -> usize {
        self.lock().acknowledged()
    }

    /// Waits until the load has `count` acknowledged operations; how long that took.
    pub fn until_acknowledged(&self, d: &Deployment, count: usize) -> Result<Duration> {
        d.wait_for(
            PROGRESS,
            &format!("{count} acknowledged operations"),
            || Ok(self.acknowledged() >= count),
        )
    }

    /// The first key the load made (never one it revokes).
    pub fn first_key(&self) -> Option<String> {
        self.lock().created.first().map(|(_, key)| key.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn thread(&self, thread: usize, pause: Duration) {
        let base = &self.instance_urls[thread % self.instance_urls.len()];
        let mut made = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            let name = format!("{LOAD_NAME}{thread}-{made}");
            let body = json!({"name": name, "environment": "live", "scopes": []});
            let created = self.call(base, "POST", "/v1/keys", body, 201);
            made += 1;
            if let Some(created) = created.filter(|_| made.is_multiple_of(2)) {
                let id = created["record"]["id"].as_str().unwrap_or_default();
                let path = format!("/v1/keys/{id}/revoke");
                let body = json!({"reason": "compromised"});
                if self.call(base, "POST", &path, body, 200).is_some() {
                    self.lock().revoked.insert(id.to_owned());
                }
            }
            std::thread::sleep(pause);
        }
    }

    /// One call; its body when it answered `expected`, after recording the outcome.
    fn call(
        &self,
        base: &str,
        method: &str,
        path: &str,
        body: Value,
        expected: u16,
    ) -> Option<Value> {
        let headers = [("authorization", self.authorization.as_str())];
        let url = format!("{base}{path}");
        match keyplane_tests::send_with_timeout(method, &url, &headers, Some(&body), CALL_TIMEOUT) {
            Ok(reply) if reply.status == expected => {
                let answer = reply.json().ok()?;
                if expected == 201 {
                    let id = answer["record"]["id"].as_str()?.to_owned();
                    let key = answer["key"].as_str()?.to_owned();
                    self.lock().created.push((id, key));
                }
                Some(answer)
            }
            Ok(reply) => {
                self.lock().answer(&reply);
                None
            }
            Err(_) => {
                self.lock().unanswered += 1;
                // A stopped server refuses at once: do not spin.
                std::thread::sleep(Duration::from_millis(20));
                None
            }
        }
    }
}

/// Every page of `path` (a listing with `data` and `next_cursor`) through instance 0.
fn every_page(d: &Deployment, path: &str) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let separator = if path.contains('?') { '&' } else { '?' };
        let page_path = match &cursor {
            Some(cursor) => format!("{path}{separator}limit=200&cursor={cursor}"),
            None => format!("{path}{separator}limit=200"),
        };
        let reply = d.api("GET", &page_path, None)?;
        ensure!(reply.status == 200, "GET {page_path}: {reply:?}");
        let page = reply.json()?;
        items.extend(page["data"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(items),
        }
    }
}

fn ids_of(items: &[Value], field: &str) -> BTreeSet<String> {
    items
        .iter()
        .filter_map(|item| item[field].as_str().map(str::to_owned))
        .collect()
}

/// The feed as the control plane serves it to edges: its head and every key's last state.
struct Feed {
    head: u64,
    last_status: BTreeMap<String, KeyStatus>,
}

/// Reads the whole feed and checks that it is gap-free (changes 1..=head, each once, in
/// order).
fn read_feed(d: &Deployment) -> Result<Feed> {
    let path = "/v1/edge/changes?after=0&limit=10000";
    let reply = signed(&d.secrets, "GET", &d.control_plane.url, path, Vec::new())?;
    ensure!(reply.status == 200, "reading the feed: {reply:?}");
    let head: u64 = reply
        .header("x-keyplane-head-seq")
        .context("x-keyplane-head-seq")?
        .parse()?;
    ensure!(head < 10_000, "the feed outgrew one read ({head} changes)");
    let changes = decode_changes(&reply.bytes).context("decoding the feed")?;
    let seqs: Vec<u64> = changes.iter().map(|change| change.seq).collect();
    let expected: Vec<u64> = (1..=head).collect();
    ensure!(
        seqs == expected,
        "the feed has gaps or repeats: {seqs:?} (head {head})"
    );
    let mut last_status = BTreeMap::new();
    for change in changes {
        if let ChangeOp::Upsert(entry) = change.op {
            last_status.insert(entry.key_id.to_string(), entry.status);
        }
    }
    Ok(Feed { head, last_status })
}

/// Checks, through instance 0, that every acknowledged create and revoke of `ledger` is
/// there, and that the keys, the audit log and the feed agree about every key the load made
/// (so an unanswered call left all of its effects or none); that the audit chain verifies.
pub fn nothing_acknowledged_is_lost(d: &Deployment, ledger: &Ledger) -> Result<Checked> {
    let (keys, others): (Vec<Value>, Vec<Value>) =
        every_page(d, "/v1/keys")?.into_iter().partition(|key| {
            key["name"]
                .as_str()
                .is_some_and(|name| name.starts_with(LOAD_NAME))
        });
    // Keys the test made itself, outside the load.
    let others = ids_of(&others, "id");
    let status: BTreeMap<String, String> = keys
        .iter()
        .filter_map(|key| {
            Some((
                key["id"].as_str()?.to_owned(),
                key["status"].as_str()?.to_owned(),
            ))
        })
        .collect();
    for (id, _) in &ledger.created {
        ensure!(
            status.contains_key(id),
            "key {id} was created (201) and is gone"
        );
    }
    for id in &ledger.revoked {
        ensure!(
            status.get(id).map(String::as_str) == Some("revoked"),
            "key {id} was revoked (200) and is {:?}",
            status.get(id)
        );
    }
    let revoked_keys: BTreeSet<String> = status
        .iter()
        .filter(|(_, state)| state.as_str() == "revoked")
        .map(|(id, _)| id.clone())
        .collect();
    let made: BTreeSet<String> = status.keys().cloned().collect();

    let audited = |action: &str| -> Result<BTreeSet<String>> {
        let records = every_page(d, &format!("/v1/audit?action={action}"))?;
        Ok(ids_of(&records, "target_key_id")
            .difference(&others)
            .cloned()
            .collect())
    };
    let created_audit = audited("key_created")?;
    ensure!(
        created_audit == made,
        "keys and their key_created audit records differ: only keys {:?}, only audit {:?}",
        made.difference(&created_audit).collect::<Vec<_>>(),
        created_audit.difference(&made).collect::<Vec<_>>()
    );
    let revoked_audit = audited("key_revoked")?;
    ensure!(
        revoked_audit == revoked_keys,
        "revoked keys and their key_revoked audit records differ: only keys {:?}, only audit {:?}",
        revoked_keys.difference(&revoked_audit).collect::<Vec<_>>(),
        revoked_audit.difference(&revoked_keys).collect::<Vec<_>>()
    );

    let feed = read_feed(d)?;
    for id in &made {
        let in_feed = feed.last_status.get(id);
        let revoked = revoked_keys.contains(id);
        ensure!(
            in_feed
                == Some(if revoked {
                    &KeyStatus::Revoked
                } else {
                    &KeyStatus::Active
                }),
            "key {id} (revoked: {revoked}) is {in_feed:?} in the feed"
        );
    }
    let unlisted: Vec<&String> = feed
        .last_status
        .keys()
        .filter(|id| !made.contains(*id) && !others.contains(*id))
        .collect();
    // The feed also holds the bootstrap admin key; no other key that is not listed.
    ensure!(
        unlisted.len() <= 1,
        "keys in the feed but not listed: {unlisted:?}"
    );

    let verify = d.api("GET", "/v1/audit/verify", None)?;
    ensure!(
        verify.status == 200 && verify.json()?["valid"] == true,
        "the audit chain does not verify: {verify:?}"
    );
    Ok(Checked {
        head: feed.head,
        revoked: revoked_keys,
    })
}

/// What [`nothing_acknowledged_is_lost`] found.
pub struct Checked {
    /// The feed head.
    pub head: u64,
    /// Every key of the load that is revoked (acknowledged or not).
    pub revoked: BTreeSet<String>,
}

/// Waits until every edge has applied the feed up to the head `checked` read, then checks
/// that each refuses every revoked key whose full key `ledger` holds (401) and admits a
/// sample of its live ones (200). Returns how long the slowest edge took.
pub fn edges_converge(d: &Deployment, ledger: &Ledger, checked: &Checked) -> Result<Duration> {
    let head = checked.head;
    let started = Instant::now();
    for edge in 0..d.edges.len() {
        d.wait_for(CONVERGENCE, &format!("edge {edge} at {head}"), || {
            Ok(d.edge_status(edge)?["applied_seq"].as_u64() >= Some(head))
        })?;
    }
    let took = started.elapsed();
    let live = ledger
        .created
        .iter()
        .filter(|(id, _)| !checked.revoked.contains(id))
        .take(20);
    let revoked = ledger
        .created
        .iter()
        .filter(|(id, _)| checked.revoked.contains(id));
    for edge in 0..d.edges.len() {
        for (id, key) in revoked.clone() {
            let reply = d.through_edge(edge, "/x", Some(key))?;
            ensure!(
                reply.status == 401,
                "edge {edge} admits revoked key {id}: {reply:?}"
            );
        }
        for (id, key) in live.clone() {
            let reply = d.through_edge(edge, "/x", Some(key))?;
            ensure!(
                reply.status == 200,
                "edge {edge} refuses live key {id}: {reply:?}"
            );
        }
    }
    Ok(took)
}
