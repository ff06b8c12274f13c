//! Pushing changes to an edge as the control plane's pusher would, with the deployment's
//! secrets: for tests and benchmarks that grow an edge's table past what a control plane
//! makes quickly (the control plane is stopped first, so its own pushes do not interleave).

use anyhow::{Context as _, Result, bail};
use keyplane_shared::ids::HistoryId;
use keyplane_shared::table::codec::{decode_changes, encode_changes};
use keyplane_shared::{Change, FeedChain};

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
        let status = d.edge_status(0)?;
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
        let path = format!(
            "/__keyplane/sync?edge={}&history={}&after={}&chain={}",
            d.edges[0].options.name,
            self.history,
            self.after,
            self.chain.to_hex()
        );
        let reply = signed(
            &d.secrets,
            "POST",
            &d.edge_url(0),
            &path,
            encode_changes(batch),
        )?;
        if reply.status != 200 {
            bail!("push after {}: {reply:?}", self.after);
        }
        self.chain = self.chain.extend(batch);
        self.after += batch.len() as u64;
        Ok(())
    }
}
