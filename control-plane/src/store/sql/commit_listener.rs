//! Commits made by other instances, heard: on PostgreSQL every mutation that appends a change
//! sends `NOTIFY keyplane_feed, '<seq>'` inside its transaction (delivered at commit, never for
//! a rollback; see [`super::journal`]), and each instance `LISTEN`s on a connection of its own
//! and publishes what it hears into its [`FeedHeads`], exactly as its own commits are: so a
//! change made through any instance wakes every instance's pusher and delivery worker at
//! once. A notification lost while the connection was down is made up for by the pusher's
//! tick (1 s); the listener reconnects by itself, a second apart.

use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::feed_heads::FeedHeads;

/// The channel the commits are announced on.
pub(super) const CHANNEL: &str = "keyplane_feed";

/// How long to wait before connecting again after the listener's connection failed.
const RECONNECT: Duration = Duration::from_secs(1);

/// Listens until `shutdown`, publishing every announced head into `heads`.
pub(super) fn spawn(
    url: SecretString,
    heads: FeedHeads,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let listened = async {
                let mut listener = PgListener::connect(url.expose_secret()).await?;
                listener.listen(CHANNEL).await?;
                loop {
                    let notification = listener.recv().await?;
                    match notification.payload().parse::<u64>() {
                        Ok(seq) => heads.publish(seq),
                        Err(_) => tracing::warn!(
                            payload = notification.payload(),
                            "a commit announcement that is not a sequence number"
                        ),
                    }
                }
            };
            tokio::select! {
                result = listened => {
                    let error: sqlx::Error = match result {
                        Ok::<(), sqlx::Error>(()) => continue,
                        Err(error) => error,
                    };
                    tracing::warn!(%error, "listening for other instances' commits failed; retrying");
                }
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(RECONNECT) => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}
