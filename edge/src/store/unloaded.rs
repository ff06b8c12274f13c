//! A restarted store serves the table it stored before building its own copy.
//!
//! On start the store used to decode its stored snapshot (48 MB at 1M keys) before answering
//! anything, and the first isolate then streamed and decoded the same bytes again: a
//! restarted edge's first request waited for two table builds. Now the store reads where
//! storage stands without building the table (`storage::read_head`: the snapshot's sequence
//! from its header, its lineage carried through the changes stored after it), and serves
//! isolates storage's copy (`stored::send`, as when the table is set aside for a replacement);
//! the catch-up pull runs from that head as usual. The table is built from storage when
//! something must change it (the first change to apply: a push or a pull page with changes),
//! when a snapshot is written, and when an isolate reports that the snapshot it was sent did
//! not decode (its next read carries `failed=1`): the store then finds what is wrong with
//! storage itself and, if the snapshot does not decode, starts empty until it loads one (as it
//! does when that is found on start). A reload sets the unbuilt table aside like a built one
//! (`replacement`). Storage whose first chunk is not a snapshot's, with no lineage, or with a
//! gap in its stored changes is read whole at once, as before.

use worker::console_error;

use super::{KeyTableStore, storage};

impl KeyTableStore {
    /// Takes what storage holds as the table: its head when storage checks (the table built
    /// later, [`KeyTableStore::build_unloaded`]), else the whole table read at once.
    pub(super) fn open_stored(&self) {
        match storage::read_head(&self.sql()) {
            Ok(Some(head)) => {
                self.unloaded.set(Some(head.seq));
                self.lineage.set(Some(head.lineage));
                self.generation.set(head.generation);
                self.matches_storage.set(true);
            }
            Ok(None) => self.load_stored(),
            Err(error) => {
                console_error!("key table store: reading storage's head failed ({error})");
                self.load_stored();
            }
        }
    }

    /// Builds the table from storage if it was left there (before it is changed or written).
    pub(super) fn build_unloaded(&self) {
        if self.unloaded.get().is_some() {
            self.load_stored();
        }
    }

    /// Where the table is: built in `memory`, left in `storage` (not built yet), or `set aside`
    /// for a replacement.
    pub(super) fn table_place(&self) -> &'static str {
        if self.unloaded.get().is_some() {
            "storage"
        } else if self.set_aside.get().is_some() {
            "set aside"
        } else {
            "memory"
        }
    }
}
