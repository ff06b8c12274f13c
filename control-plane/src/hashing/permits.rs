//! How many Argon2id computations run at once (one per core, at most [`MAX_PERMITS`]), each
//! in a work area of its own that outlives it: the areas are kept and handed to the next
//! computation, so hashing holds at most `permits × 19 MiB` (152 MiB on the largest machine)
//! however long the process runs and whichever threads run it. A stored hash whose parameters
//! need more memory than an area (none that Keyplane makes) is computed in memory of its own.
//! Callers wait their turn in arrival order: a burst of key creates delays a sign-in that comes
//! after it by its length (1,000 creates: about 10 s on 2 cores), never forever.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::Block;
use tokio::sync::Semaphore;

use super::HashingError;
use super::phc::work_area;

/// The most computations at once, whatever the core count: each holds 19 MiB for good.
pub const MAX_PERMITS: usize = 8;

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

    /// The process's permits: one per core, at most `MAX_PERMITS`.
    pub fn global() -> &'static Self {
        static GLOBAL: OnceLock<HashingPermits> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            Self::new(limit_for(cores))
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
            let running = Running::start(self);
            let output = work(&mut area);
            drop(running);
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

/// How many computations at once on a machine of `cores` cores: one per core, at least one,
/// at most [`MAX_PERMITS`].
fn limit_for(cores: usize) -> usize {
    cores.clamp(1, MAX_PERMITS)
}

/// One computation counted as running until dropped (so a panicking one is uncounted too).
struct Running<'a>(&'a HashingPermits);

impl<'a> Running<'a> {
    fn start(permits: &'a HashingPermits) -> Self {
        let now = permits.running.fetch_add(1, Ordering::Relaxed) + 1;
        permits.most_running.fetch_max(now, Ordering::Relaxed);
        Running(permits)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_permit_per_core_at_most_eight() {
        assert_eq!(limit_for(0), 1);
        assert_eq!(limit_for(2), 2);
        assert_eq!(limit_for(8), 8);
        assert_eq!(limit_for(64), 8, "a large host keeps 8 × 19 MiB, not 64 ×");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_runs_at_most_the_limit_at_once_in_as_many_areas() {
        // Leaked so the permits are 'static, like the process's own.
        let permits: &'static HashingPermits = Box::leak(Box::new(HashingPermits::new(2)));
        // Each computation waits for a second one to be running beside it, so two always run
        // together (however the machine schedules threads); unbounded, all 16 would.
        let pair = Arc::new(std::sync::Barrier::new(2));
        let burst: Vec<_> = (0..16)
            .map(|n| {
                let pair = Arc::clone(&pair);
                tokio::spawn(permits.run(move |area| {
                    pair.wait();
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
        let (finish, finish_rx) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn(permits.run(move |_| {
            let _ = started.send(());
            // Runs until the test lets it end.
            let _ = finish_rx.recv();
        }));
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .expect("joined")
            .expect("the first work started");
        // The caller gives up while its work still runs: the permit must stay taken.
        first.abort();
        let second = tokio::spawn(permits.run(|_| ()));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !second.is_finished(),
            "the second waits while the first's work runs"
        );
        finish.send(()).expect("the first work is waiting");
        tokio::time::timeout(std::time::Duration::from_secs(10), second)
            .await
            .expect("the second runs once the first's work ends")
            .expect("joined")
            .expect("ran");
        assert_eq!(permits.most_running(), 1);
    }

    #[tokio::test]
    async fn a_computation_that_panics_is_no_longer_counted_as_running() {
        let permits: &'static HashingPermits = Box::leak(Box::new(HashingPermits::new(1)));
        let panicked = permits.run(|_| panic!("a computation failed")).await;
        assert!(matches!(panicked, Err(HashingError::Task(_))));
        assert_eq!(permits.running.load(Ordering::Relaxed), 0);
        // The permit came back and a new area is made for the one the panic took.
        assert_eq!(
            permits.run(|area| area.len()).await.expect("ran"),
            work_area().len()
        );
        assert_eq!(permits.areas_made(), 2);
    }
}
