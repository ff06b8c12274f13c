//! Storage catching up with the table after a failed write. A change whose write fails (the
//! storage refuses writes for a while) is still applied to the store's table and sent to
//! isolates, so it is enforced; but storage lacks it, and a restart with the control plane
//! unreachable would serve storage as it is (a revocation undone), while a push resent after
//! the failure finds the change already applied and writes nothing. So while storage is behind
//! (`matches_storage` false) the store writes its whole table:
//!
//! - on every push or feed page it applies, even with nothing new, before acknowledging it
//!   (`KeyTableStore::apply`);
//! - before answering a push that does not reach its sequence with that sequence;
//! - on every alarm, for when no push or page comes (the control plane unreachable).
//!
//! Only a table with a lineage (from the feed) is written this way: an empty one, started from
//! storage that did not read, must not overwrite what storage holds. Tested by
//! `tests/tests/e2e/faults/storage.rs`, which makes every write fail by holding the SQLite
//! file's lock from another process.

use worker::{Result, console_error, console_log};

use super::KeyTableStore;

impl KeyTableStore {
    /// Whether storage is behind a table it may be written from (see the module header).
    fn storage_behind(&self) -> bool {
        !self.matches_storage.get()
            && self.set_aside.get().is_none()
            && self.lineage.get().is_some()
            && self.table.borrow().is_some()
    }

    /// Writes the whole table if storage is behind it.
    pub(super) fn catch_up_storage(&self) -> Result<()> {
        if self.storage_behind() {
            self.write_snapshot()?;
            console_log!("key table store: storage caught up with the table");
        }
        Ok(())
    }

    /// [`catch_up_storage`](Self::catch_up_storage) for the alarm: a failure is logged, and
    /// the next alarm tries again.
    pub(super) fn repair_storage(&self) {
        if let Err(error) = self.catch_up_storage() {
            console_error!("key table store: writing the table to storage failed: {error}");
        }
    }
}
