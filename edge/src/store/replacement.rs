//! Replacing the store's table with a snapshot of the control plane's feed (on another
//! history, or when the control plane is behind the edge) without holding two tables: once the
//! snapshot's signed answer starts, the old table is set aside while the body is decoded
//! ([`SetAside`]), when storage holds exactly the table. Meanwhile isolates are sent storage's
//! copy and pushes are answered 503 `table_reloading`; a body refused half-way makes the store
//! read the table back from storage.

use keyplane_shared::Lineage;
use worker::{Result, console_error, console_log};

use super::{KeyTableStore, new_generation, storage};
use crate::{feed, settings};

/// Sets the table aside while a replacement snapshot is decoded, when storage holds exactly
/// the table (else it stays: it is the only copy, and both are held for the time of the
/// load). When the guard is dropped without a replacement (the answer was refused half-way,
/// or the pull's future was dropped), the table is read back from storage; if even that
/// fails it stays set aside (isolates keep deciding on their copies, pushes wait) until a
/// later reload brings a table.
struct SetAside<'a>(&'a KeyTableStore);

impl<'a> SetAside<'a> {
    fn start(store: &'a KeyTableStore) -> Self {
        if store.matches_storage.get() && store.set_aside.get().is_none() {
            let seq = store.applied_seq();
            // A table still left in storage (`unloaded`) is set aside as it is.
            let held = store.table.borrow_mut().take().is_some();
            if held || store.unloaded.take().is_some() {
                store.set_aside.set(Some(seq));
            }
        }
        Self(store)
    }
}

impl Drop for SetAside<'_> {
    fn drop(&mut self) {
        let store = self.0;
        if store.set_aside.get().is_none() || store.table.borrow().is_some() {
            store.set_aside.set(None);
            return;
        }
        console_log!("key table store: no replacement came; reading the table back from storage");
        match storage::try_read(&store.sql()) {
            Ok(stored) => {
                store.install(stored);
                store.set_aside.set(None);
            }
            Err(error) => console_error!(
                "key table store: reading the table back failed ({error}); it stays set aside \
                 until a snapshot loads"
            ),
        }
    }
}

impl KeyTableStore {
    /// Replaces the table with the control plane's snapshot, the old one set aside while the
    /// snapshot's body is decoded ([`SetAside`]).
    pub(super) async fn reload(&self, settings: &settings::Settings) -> Result<()> {
        let lineage_before = self.lineage.get();
        let mut set_aside = None;
        let snapshot = feed::snapshot(settings, || set_aside = Some(SetAside::start(self))).await;
        let snapshot = snapshot.map_err(|error| worker::Error::RustError(error.to_string()))?;
        // A store that had no lineage may have been given one by a push that starts at the
        // beginning while the snapshot was on its way (before its table was set aside, or when
        // it was not): then it is ahead of the snapshot, and keeps its table.
        if lineage_before.is_none() && self.lineage.get().is_some() {
            return Ok(());
        }
        self.replace(snapshot)
    }

    /// Replaces the table, whatever it held, with a snapshot from the feed: a new lineage and
    /// a new generation, persisted.
    fn replace(&self, snapshot: feed::Snapshot) -> Result<()> {
        *self.table.borrow_mut() = Some(snapshot.table);
        self.unloaded.set(None);
        self.lineage.set(Some(Lineage {
            history: snapshot.history,
            chain: snapshot.chain,
        }));
        self.generation.set(new_generation(self.generation.get()));
        self.recent.borrow_mut().clear();
        self.write_snapshot()
    }
}
