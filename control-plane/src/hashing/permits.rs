//! How many Argon2id computations run at once (one per core), each in a work area of its own
//! that outlives it: the areas are kept and handed to the next computation, so hashing holds
//! at most `permits × 19 MiB` however long the process runs and whichever threads run it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::Block;
use tokio::sync::Semaphore;

use super::HashingError;
use super::phc::work_area;

/// The permits, the work areas waiting for the next computation, and how many ran at once at
/// most.
#[derive(Debug)]
pub struct HashingPermits {
    permits: Arc<Semaphore>,
    areas: Mutex<Vec<Vec<Block>>>,
    running: AtomicUsize,
    most_running: AtomicUsize,
    areas_made: AtomicUsize,
}

impl HashingPermits {
    /// `limit` computations at once (at least one).
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            areas: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
            areas_made: AtomicUsize::new(0),
        }
    }

    /// The process's permits: one per core.
    pub fn global() -> &'static Self {
        static GLOBAL: OnceLock<HashingPermits> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            Self::new(std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
        })
    }

    /// The most computations that ran at once so far.
    pub fn most_running(&self) -> usize {
        self.most_running.load(Ordering::Relaxed)
    }

    /// How many work areas were ever allocated (one per permit, unless a computation
    /// panicked and lost its area).
    pub fn areas_made(&self) -> usize {
        self.areas_made.load(Ordering::Relaxed)
    }

    /// Runs `work` in a work area on the blocking pool once a permit is free. The permit moves
    /// into the blocking task, so a caller that gives up waiting (a cancelled request) does
    /// not free it before the computation ends; the area goes back to the pool afterwards.
    pub async fn run<T: Send + 'static>(
        &'static self,
        work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, HashingError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| HashingError::Closed)?;
        Ok(tokio::task::spawn_blocking(move || {
            let mut area = self.take_area();
            let now = self.running.fetch_add(1, Ordering::Relaxed) + 1;
            self.most_running.fetch_max(now, Ordering::Relaxed);
            let output = work(&mut area);
            self.running.fetch_sub(1, Ordering::Relaxed);
            self.put_area(area);
            drop(permit);
            output
        })
        .await?)
    }

    /// A waiting area, or a new one when none waits (the first computations, or after a
    /// panic lost one).
    fn take_area(&self) -> Vec<Block> {
        let waiting = self.areas.lock().ok().and_then(|mut areas| areas.pop());
        waiting.unwrap_or_else(|| {
            self.areas_made.fetch_add(1, Ordering::Relaxed);
            work_area()
        })
    }

    fn put_area(&self, area: Vec<Block>) {
        if let Ok(mut areas) = self.areas.lock() {
            areas.push(area);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_runs_at_most_the_limit_at_once_in_as_many_areas() {
        // Leaked so the permits are 'static, like the process's own.
        let permits: &'static HashingPermits = Box::leak(Box::new(HashingPermits::new(2)));
        let burst: Vec<_> = (0..16)
            .map(|n| {
                tokio::spawn(permits.run(move |area| {
                    // Long enough that, unbounded, the blocking pool would run all 16 at once.
                    std::thread::sleep(std::time::Duration::from_millis(30));
                    area.len() + n
                }))
            })
            .collect();
        let mut done = Vec::new();
        for task in burst {
            done.push(task.await.expect("joined").expect("ran"));
        }
        let blocks = work_area().len();
        done.sort_unstable();
        assert_eq!(done, (0..16).map(|n| blocks + n).collect::<Vec<_>>());
        assert_eq!(
            permits.most_running(),
            2,
            "never more than the limit at once"
        );
        assert_eq!(permits.areas_made(), 2, "one work area per permit, reused");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_caller_keeps_its_permit_until_the_work_ends() {
        let permits: &'static HashingPermits = Box::leak(Box::new(HashingPermits::new(1)));
        let (started, started_rx) = std::sync::mpsc::channel();
        let first = tokio::spawn(permits.run(move |_| {
            let _ = started.send(());
            std::thread::sleep(std::time::Duration::from_millis(200));
        }));
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .expect("joined")
            .expect("the first work started");
        // The caller gives up while its work still runs: the permit must stay taken.
        first.abort();
        let second = permits.run(|_| ());
        tokio::time::timeout(std::time::Duration::from_millis(50), second)
            .await
            .expect_err("the second waits while the first's work runs");
        assert_eq!(permits.most_running(), 1);
    }
}
