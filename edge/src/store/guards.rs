//! Guards of the store's flags: each resets its flag when dropped, also when the runtime
//! drops the future holding it half-way.

use std::cell::Cell;

use super::KeyTableStore;

/// Marks the start-up catch-up as running; when it ends (or its future is dropped), wakes
/// every request that waited for it.
pub(super) struct CatchUp<'a>(&'a KeyTableStore);

impl<'a> CatchUp<'a> {
    pub(super) fn start(store: &'a KeyTableStore) -> Self {
        store.catching_up.set(true);
        Self(store)
    }
}

impl Drop for CatchUp<'_> {
    fn drop(&mut self) {
        self.0.catching_up.set(false);
        for waiter in self.0.catch_up_waiters.take() {
            let _ = waiter.send(());
        }
    }
}

/// Clears a flag when dropped: a pull whose future is dropped half-way must not leave the
/// store believing one is still running (every later pull would then do nothing).
pub(super) struct ClearOnDrop<'a>(pub(super) &'a Cell<bool>);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}
