//! The committed feed head, announced: the store publishes the sequence of the last change it
//! committed, right after the commit, and whoever acts on new changes (the pusher) subscribes.
//!
//! This is how a change reaches the edges at once whichever way it was made: an API call, the
//! CLI's own process writing through the same store, or a background task. Changes committed by
//! *another* process reach it on PostgreSQL through the commit listener (`LISTEN`/`NOTIFY`,
//! `store/sql/commit_listener.rs`), which publishes them into the same [`FeedHeads`]; on SQLite,
//! and for a notification lost while that listener reconnects, the pusher's tick finds them.

use std::sync::Arc;

use tokio::sync::watch;

/// The publishing side, held by the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct FeedHeads {
    sender: Arc<watch::Sender<u64>>,
}

impl FeedHeads {
    /// Starts at `head`, the feed head read when the store opened.
    pub fn new(head: u64) -> Self {
        FeedHeads {
            sender: Arc::new(watch::Sender::new(head)),
        }
    }

    /// Announces that changes up to `seq` are committed. A lower or equal sequence (a commit
    /// that finished after a later one) changes nothing and wakes nobody.
    pub fn publish(&self, seq: u64) {
        self.sender.send_if_modified(|head| {
            let newer = seq > *head;
            if newer {
                *head = seq;
            }
            newer
        });
    }

    /// A receiver that wakes on every newer head (`changed()`), starting from the current one.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newer_head_wakes_subscribers_and_an_older_one_does_not() {
        let heads = FeedHeads::new(3);
        let mut receiver = heads.subscribe();
        assert_eq!(*receiver.borrow_and_update(), 3);
        heads.publish(2);
        heads.publish(3);
        assert!(!receiver.has_changed().expect("sender alive"));
        heads.publish(5);
        receiver.changed().await.expect("sender alive");
        assert_eq!(*receiver.borrow_and_update(), 5);
        assert_eq!(
            *heads.subscribe().borrow(),
            5,
            "a new subscriber starts at the head"
        );
    }

    #[tokio::test]
    async fn clones_publish_to_the_same_subscribers() {
        let heads = FeedHeads::new(0);
        let mut receiver = heads.subscribe();
        heads.clone().publish(1);
        receiver.changed().await.expect("sender alive");
        assert_eq!(*receiver.borrow(), 1);
    }
}
