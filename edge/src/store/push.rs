//! Pushes, as the store takes them: a change batch the worker has already checked (signature,
//! edge name), its nonce, and where in the feed's lineage it starts. A push is applied only if
//! its chain at the store's own sequence is the store's; a push that does not reach that
//! sequence is answered with it, so the pusher resends from there.

use std::time::Duration;

use keyplane_shared::ids::HistoryId;
use keyplane_shared::table::codec::decode_changes;
use keyplane_shared::{Change, FeedChain, KeyTable, Lineage};
use worker::{Response, Result, console_log};

use super::{KeyTableStore, ack, error_response, storage};

/// Where a push says its changes start: the feed's history, the sequence it sends from, and
/// the feed chain there.
pub struct PushOrigin {
    /// The feed history.
    pub history: HistoryId,
    /// The sequence the changes follow.
    pub after: u64,
    /// The feed chain at `after`.
    pub chain: FeedChain,
}

impl KeyTableStore {
    pub(super) async fn sync(
        &self,
        nonce: &str,
        expires_at: i64,
        origin: &PushOrigin,
        body: &[u8],
    ) -> Result<Response> {
        if nonce.is_empty() {
            return error_response(400, "missing_nonce");
        }
        if self.set_aside.get().is_some() {
            // The table is being replaced (another history): the pusher tries again later.
            return error_response(503, "table_reloading");
        }
        let changes = match decode_changes(body) {
            Ok(changes) => changes,
            Err(_) => return error_response(400, "malformed_changes"),
        };
        let now = worker::Date::now().as_millis() as i64;
        if !storage::remember_nonce(&self.sql(), nonce, expires_at, now)? {
            return error_response(409, "replayed_request");
        }
        let seq = self.applied_seq();
        let Some(theirs) = chain_at(origin, &changes, seq) else {
            // The push does not reach this store's sequence (a gap, or it starts past it):
            // answering the sequence makes the pusher resend from there. One that ends before
            // it may come from a control plane behind this store (a database restored from a
            // backup): a pull finds out at once.
            let last = changes.last().map_or(origin.after, |change| change.seq);
            if last < seq {
                self.schedule_pull(Duration::ZERO).await;
            }
            // The sequence is acknowledged as held: storage must hold it too.
            self.catch_up_storage()?;
            return ack(seq);
        };
        let ours = self.lineage.get().or_else(|| {
            // A store that never loaded anything takes the history of the first push that
            // starts at the beginning.
            (seq == 0 && self.table.borrow().as_ref().is_none_or(KeyTable::is_empty))
                .then(|| Lineage::genesis(origin.history))
        });
        match ours {
            Some(lineage) if lineage.continues(origin.history, theirs) => {
                if self.lineage.get().is_none() {
                    self.lineage.set(Some(lineage));
                    storage::write_lineage(&self.sql(), Some(lineage), self.generation.get())?;
                }
                self.apply(changes)?;
                ack(self.applied_seq())
            }
            _ => {
                console_log!(
                    "key table store: a push of another feed history ({}); reloading",
                    origin.history
                );
                self.schedule_pull(Duration::ZERO).await;
                error_response(409, "history_diverged")
            }
        }
    }
}

/// The feed's chain at `seq`, from a push that starts at `origin.after` with `changes`: its
/// chain there carried through the changes up to `seq`; `None` when the push does not start
/// at or before `seq` or its changes do not reach it without a gap.
fn chain_at(origin: &PushOrigin, changes: &[Change], seq: u64) -> Option<FeedChain> {
    if origin.after > seq {
        return None;
    }
    let mut chain = origin.chain;
    let mut reached = origin.after;
    for change in changes.iter().take_while(|change| change.seq <= seq) {
        if change.seq != reached + 1 {
            return None;
        }
        chain = chain.next(change);
        reached = change.seq;
    }
    (reached == seq).then_some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyplane_shared::ChangeOp;
    use keyplane_shared::LookupDigest;

    fn remove(seq: u64) -> Change {
        Change {
            seq,
            op: ChangeOp::Remove(LookupDigest::from_bytes([seq as u8; 32])),
        }
    }

    fn origin(after: u64, chain: FeedChain) -> PushOrigin {
        PushOrigin {
            history: HistoryId::from_bytes([1; 16]),
            after,
            chain,
        }
    }

    #[test]
    fn a_push_is_checked_at_the_stores_own_sequence() {
        let genesis = FeedChain::genesis(HistoryId::from_bytes([1; 16]));
        let changes = [remove(1), remove(2), remove(3)];
        // From the store's sequence: the chain it names.
        assert_eq!(chain_at(&origin(0, genesis), &changes, 0), Some(genesis));
        // From before it: carried through the changes the store already has.
        assert_eq!(
            chain_at(&origin(0, genesis), &changes, 2),
            Some(genesis.extend(&changes[..2]))
        );
        // Not reaching it, or starting past it: nothing to compare.
        assert_eq!(chain_at(&origin(0, genesis), &changes, 5), None);
        assert_eq!(chain_at(&origin(3, genesis), &changes, 2), None);
        assert_eq!(
            chain_at(&origin(0, genesis), &[remove(1), remove(3)], 3),
            None
        );
    }
}
