//! Pushing changes to an edge as the control plane's pusher would, with the deployment's
//! secrets: for tests and benchmarks that grow an edge's table past what a control plane
//! makes quickly (the control plane is stopped first, so its own pushes do not interleave),
//! and the synthetic keys to push ([`synthetic_keys`]).

use anyhow::{Context as _, Result, bail};
use keyplane_shared::ids::HistoryId;
use keyplane_shared::table::codec::{decode_changes, encode_changes};
use keyplane_shared::{
    Change, ChangeOp, Environment, FeedChain, KeyId, KeyStatus, LookupDigest, OrgId, ScopeSet,
    TableEntry,
};

use crate::{Deployment, signed};

/// Edge 0's feed position: its history, sequence and the feed chain at that sequence.
pub struct EdgeFeed {
    /// The feed history the edge's table comes from.
    pub history: HistoryId,
    /// The last sequence the edge holds.
    pub after: u64,
    /// The feed chain at `after`.
    pub chain: FeedChain,
}

impl EdgeFeed {
    /// Reads edge 0's position, and the control plane's changes up to it (the control plane
    /// must still be running); the changes come back too.
    pub fn of_first_edge(d: &Deployment) -> Result<(EdgeFeed, Vec<Change>)> {
        Self::of_isolate(d, &d.edge_url(0))
    }

    /// [`of_first_edge`](Self::of_first_edge), read through the isolate of edge 0 at
    /// `isolate_url`.
    pub fn of_isolate(d: &Deployment, isolate_url: &str) -> Result<(EdgeFeed, Vec<Change>)> {
        let status = d.status_at(isolate_url)?;
        let history = HistoryId::parse(status["history"].as_str().context("history")?)
            .map_err(|error| anyhow::anyhow!("history: {error}"))?;
        let after = status["applied_seq"].as_u64().context("applied_seq")?;
        let feed = signed(
            &d.secrets,
            "GET",
            &d.control_plane.url,
            &format!("/v1/edge/changes?after=0&limit={after}"),
            Vec::new(),
        )?;
        let changes = decode_changes(&feed.bytes)?;
        if changes.len() as u64 != after {
            bail!(
                "the feed gave {} changes, the edge is at {after}",
                changes.len()
            );
        }
        let chain = FeedChain::genesis(history).extend(&changes);
        Ok((
            EdgeFeed {
                history,
                after,
                chain,
            },
            changes,
        ))
    }

    /// The next sequence number.
    pub fn next_seq(&self) -> u64 {
        self.after + 1
    }

    /// Pushes `batch` (its sequence numbers following `after`) to edge 0 as one signed batch,
    /// and moves on past it.
    pub fn push(&mut self, d: &Deployment, batch: &[Change]) -> Result<()> {
        self.push_via(d, &d.edge_url(0), batch)
    }

    /// [`push`](Self::push) through the isolate of edge 0 at `isolate_url` (every isolate
    /// hands a push to the edge's one store).
    pub fn push_via(&mut self, d: &Deployment, isolate_url: &str, batch: &[Change]) -> Result<()> {
        let reply = self.send_via(d, isolate_url, batch)?;
        if reply.status != 200 {
            bail!("push after {}: {reply:?}", self.after);
        }
        self.moved_past(batch);
        Ok(())
    }

    /// Moves on past `batch`, pushed and applied (see [`send_via`](Self::send_via)).
    pub fn moved_past(&mut self, batch: &[Change]) {
        self.chain = self.chain.extend(batch);
        self.after += batch.len() as u64;
    }

    /// Sends `batch` as a signed push through `isolate_url` and returns the answer, whatever
    /// it is, without moving on.
    pub fn send_via(
        &self,
        d: &Deployment,
        isolate_url: &str,
        batch: &[Change],
    ) -> Result<crate::Reply> {
        let path = format!(
            "/__keyplane/sync?edge={}&history={}&after={}&chain={}",
            d.edges[0].options.name,
            self.history,
            self.after,
            self.chain.to_hex()
        );
        signed(
            &d.secrets,
            "POST",
            isolate_url,
            &path,
            encode_changes(batch),
        )
    }
}

/// `count` synthetic keys (see [`synthetic_key`]) from sequence `first` on; `round` keeps
/// their digests apart from another call's.
pub fn synthetic_keys(first: u64, count: u64, round: u64) -> Vec<Change> {
    (0..count)
        .map(|i| {
            let n = round * 1_000_000 + i;
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
            digest[8..16].copy_from_slice(&n.to_be_bytes());
            synthetic_key(first + i, LookupDigest::from_bytes(digest), n)
        })
        .collect()
}

/// The change at `seq` adding an active live key with no scopes, of one organization of the
/// test's, whose lookup digest is `digest`; `n` names its key id.
pub fn synthetic_key(seq: u64, digest: LookupDigest, n: u64) -> Change {
    Change {
        seq,
        op: ChangeOp::Upsert(TableEntry {
            digest,
            key_id: KeyId::from_bytes((u128::from(n) + 1).to_be_bytes()),
            org_id: OrgId::from_bytes([7; 16]),
            env: Environment::Live,
            status: KeyStatus::Active,
            expires_at: None,
            scopes: ScopeSet::empty(),
            rate_limit: None,
        }),
    }
}
