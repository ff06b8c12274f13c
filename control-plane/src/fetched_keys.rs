//! A document of public keys published at a URL (a host product's JWKS, GitHub's
//! secret-scanning keys), fetched, cached, and refreshed without hammering its publisher.
//!
//! - It is fetched on first use, and again when the copy held is older than the
//!   [`Refresh::max_age_seconds`] or a caller needs a key it does not hold (a publisher that
//!   rotated its keys).
//! - Fetches are at least [`Refresh::min_refetch_seconds`] apart whatever their reason, so
//!   requests naming random keys (or a publisher that is down) cause at most one fetch per
//!   interval.
//! - Only a caller that has nothing to use waits for a fetch (no keys held, or not the one it
//!   needs; it waits for the fetch under way, which may bring it, or makes one). A caller the
//!   stale copy serves takes it at once and the refresh runs behind it, so a slow publisher
//!   (up to the client's timeout) does not hold up every request.
//! - A failed fetch (transport, a status other than 200, a body over
//!   [`Refresh::max_body_bytes`], a document that does not parse) keeps the keys held and logs
//!   a warning; `None` is answered only when no key was ever fetched.
//! - Time is the `now` (Unix seconds) each caller passes, so tests move it.

use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
pub(crate) mod document_server;

use crate::error::error_chain;

/// How often a document is fetched again, and how much of it is read.
#[derive(Debug, Clone, Copy)]
pub struct Refresh {
    /// A copy older than this is fetched again (seconds).
    pub max_age_seconds: i64,
    /// The least time between two fetches (seconds).
    pub min_refetch_seconds: i64,
    /// The largest document read.
    pub max_body_bytes: usize,
}

/// Reads a fetched document into the keys it holds, or says why it cannot.
pub type Parse<T> = Box<dyn Fn(&[u8]) -> Result<Arc<T>, String> + Send + Sync>;

/// One URL's document and what is known of it.
pub struct FetchedKeys<T: ?Sized> {
    shared: Arc<Shared<T>>,
}

struct Shared<T: ?Sized> {
    /// What it is, for the logs ("host-token JWKS of https://…").
    what: String,
    url: reqwest::Url,
    client: reqwest::Client,
    refresh: Refresh,
    parse: Parse<T>,
    /// Held for a look or an update, never across a fetch.
    state: std::sync::Mutex<CacheState<T>>,
    /// Held across a fetch: a caller that lacks keys waits for the fetch under way rather than
    /// start another.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

struct CacheState<T: ?Sized> {
    keys: Option<Arc<T>>,
    /// When `keys` were fetched.
    fetched_at: Option<i64>,
    /// When a fetch was last started, successful or not.
    attempted_at: Option<i64>,
    /// Whether a fetch is under way (it holds the fetch lock).
    in_flight: bool,
}

/// What a caller finds.
struct Look<T: ?Sized> {
    /// The keys held, if they hold what the caller needs.
    serving: Option<Arc<T>>,
    /// Whatever is held.
    held: Option<Arc<T>>,
    /// Whether they are past their age.
    stale: bool,
    /// Whether a fetch may start (the last one is old enough, and none is under way).
    may_fetch: bool,
    /// Whether a fetch is under way.
    in_flight: bool,
}

impl<T: ?Sized> std::fmt::Debug for FetchedKeys<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FetchedKeys")
            .field("what", &self.shared.what)
            .field("url", &self.shared.url.as_str())
            .finish_non_exhaustive()
    }
}

impl<T: ?Sized + Send + Sync + 'static> FetchedKeys<T> {
    /// A cache that fetches nothing until first asked.
    pub fn new(
        what: String,
        url: reqwest::Url,
        client: reqwest::Client,
        refresh: Refresh,
        parse: Parse<T>,
    ) -> Self {
        FetchedKeys {
            shared: Arc::new(Shared {
                what,
                url,
                client,
                refresh,
                parse,
                state: std::sync::Mutex::new(CacheState {
                    keys: None,
                    fetched_at: None,
                    attempted_at: None,
                    in_flight: false,
                }),
                fetching: Arc::new(tokio::sync::Mutex::new(())),
            }),
        }
    }

    /// The URL fetched.
    pub fn url(&self) -> &reqwest::Url {
        &self.shared.url
    }

    /// The keys at `now`; `None` while none was ever fetched.
    ///
    /// When the copy held lacks what the caller needs (`lacks`), or there is none, the caller
    /// waits for a fetch (the one under way, or its own if the last one is old enough). When
    /// the copy serves but is stale, the caller takes it at once and a refresh starts behind
    /// it, so a slow or unreachable publisher holds up only callers that have nothing to use.
    pub async fn keys(&self, lacks: impl Fn(&T) -> bool, now: i64) -> Option<Arc<T>> {
        let look = self.shared.look(&lacks, now);
        if let Some(keys) = look.serving {
            if look.stale && look.may_fetch {
                // Behind the caller; only the one that takes the fetch lock, which the refresh
                // then holds, so callers that lack keys wait for it.
                if let Ok(fetching) = Arc::clone(&self.shared.fetching).try_lock_owned()
                    && let Some(flight) = Shared::claim(&self.shared, now)
                {
                    tokio::spawn(async move {
                        flight.0.fetch_and_keep(now).await;
                        drop(flight);
                        drop(fetching);
                    });
                }
            }
            return Some(keys);
        }
        if !look.may_fetch && !look.in_flight {
            return look.held;
        }
        // Wait for the fetch under way, which may bring what is needed, or make one. It runs
        // in its own task, so a caller that goes away does not cancel it half-way.
        let fetching = Arc::clone(&self.shared.fetching).lock_owned().await;
        let look = self.shared.look(&lacks, now);
        let flight = match look.serving {
            Some(_) => None,
            None => Shared::claim(&self.shared, now),
        };
        let Some(flight) = flight else {
            return look.serving.or(look.held);
        };
        let fetch = tokio::spawn(async move {
            flight.0.fetch_and_keep(now).await;
            drop(flight);
            drop(fetching);
        });
        let _ = fetch.await;
        self.shared.held()
    }
}

#[cfg(test)]
impl<T: ?Sized> FetchedKeys<T> {
    /// Once no fetch is under way (a refresh started behind a caller has ended).
    pub(crate) async fn settled(&self) {
        let _fetching = self.shared.fetching.lock().await;
    }
}

impl<T: ?Sized> Shared<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState<T>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn held(&self) -> Option<Arc<T>> {
        self.lock().keys.clone()
    }

    /// What a caller needing what `lacks` says finds at `now`.
    fn look(&self, lacks: &impl Fn(&T) -> bool, now: i64) -> Look<T> {
        let state = self.lock();
        Look {
            serving: state.keys.clone().filter(|keys| !lacks(keys)),
            held: state.keys.clone(),
            stale: older_than(now, state.fetched_at, self.refresh.max_age_seconds),
            may_fetch: !state.in_flight && self.may_fetch(&state, now),
            in_flight: state.in_flight,
        }
    }

    /// Whether the last fetch started long enough before `now` for another.
    fn may_fetch(&self, state: &CacheState<T>, now: i64) -> bool {
        older_than(now, state.attempted_at, self.refresh.min_refetch_seconds)
    }

    /// Counts a fetch as started at `now` by a caller holding the fetch lock, if one may
    /// start: the fetch's [`InFlight`], which says it is over when dropped, however it ends
    /// (a panic, or a task dropped before it ran, included). `now` is read before the caller
    /// waited for the lock; that wait is shorter than any refetch interval (a fetch's timeout).
    fn claim(shared: &Arc<Shared<T>>, now: i64) -> Option<InFlight<T>> {
        let mut state = shared.lock();
        if state.in_flight || !shared.may_fetch(&state, now) {
            return None;
        }
        state.attempted_at = Some(now);
        state.in_flight = true;
        Some(InFlight(Arc::clone(shared)))
    }

    /// Fetches, and keeps the keys fetched (or, on a failure, those held).
    async fn fetch_and_keep(&self, now: i64) {
        let fetched = self.fetch().await;
        let mut state = self.lock();
        match fetched {
            Ok(keys) => {
                tracing::debug!(what = %self.what, "keys fetched");
                state.keys = Some(keys);
                state.fetched_at = Some(now);
            }
            Err(reason) => tracing::warn!(
                what = %self.what,
                url = %self.url,
                %reason,
                keys_held = state.keys.is_some(),
                "fetching keys failed; keeping the keys held"
            ),
        }
    }

    /// One fetch: the keys, or why there are none.
    async fn fetch(&self) -> Result<Arc<T>, String> {
        let limit = self.refresh.max_body_bytes;
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| transport(&error))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(format!("the document is over {limit} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| transport(&error))? {
            if body.len() + chunk.len() > limit {
                return Err(format!("the document is over {limit} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        (self.parse)(&body)
    }
}

/// A claimed fetch: while it lives, no other starts.
struct InFlight<T: ?Sized>(Arc<Shared<T>>);

impl<T: ?Sized> Drop for InFlight<T> {
    fn drop(&mut self) {
        self.0.lock().in_flight = false;
    }
}

/// Whether `at` is at least `seconds` before `now`, or never was. A clock that moved back
/// counts as time passed: `abs_diff`, not a subtraction.
fn older_than(now: i64, at: Option<i64>, seconds: i64) -> bool {
    at.is_none_or(|at| now.abs_diff(at) >= seconds.unsigned_abs())
}

/// An HTTP client for fetching keys: rustls with the ring provider, no redirects, `timeout`
/// for the connection and for the whole request.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    // rustls needs a process-wide crypto provider; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| error.to_string())
}

fn transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "no answer in time".to_owned();
    }
    // reqwest's own message is generic ("error sending request"); the causes say why.
    error_chain(error)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fetched_keys::document_server::DocumentServer;

    const T0: i64 = 1_800_000_000;
    const REFRESH: Refresh = Refresh {
        max_age_seconds: 600,
        min_refetch_seconds: 30,
        max_body_bytes: 1024,
    };

    /// A list of names published by `server`.
    fn names(server: &DocumentServer) -> FetchedKeys<Vec<String>> {
        let parse: Parse<Vec<String>> = Box::new(|body: &[u8]| {
            serde_json::from_slice(body)
                .map(Arc::new)
                .map_err(|error| error.to_string())
        });
        let url = server.url("/names").parse().expect("URL");
        let client = http_client(std::time::Duration::from_secs(5)).expect("client");
        FetchedKeys::new("names".into(), url, client, REFRESH, parse)
    }

    fn lacking(name: &'static str) -> impl Fn(&Vec<String>) -> bool {
        move |names| !names.iter().any(|held| held == name)
    }

    #[tokio::test]
    async fn a_stale_caller_that_cannot_take_the_fetch_lock_does_not_use_up_the_next_fetch() {
        let server = DocumentServer::start(json!(["a"])).await;
        let cache = names(&server);
        assert!(cache.keys(lacking("a"), T0).await.is_some());
        server.serve(json!(["a", "b"]));
        // Someone holds the fetch lock (a caller that lacks a name, before it has decided).
        let holder = Arc::clone(&cache.shared.fetching).lock_owned().await;
        let stale = T0 + REFRESH.max_age_seconds;
        let served = cache
            .keys(lacking("a"), stale)
            .await
            .expect("the copy held");
        assert_eq!(*served, vec!["a".to_owned()]);
        drop(holder);
        // The next caller that lacks a name may fetch at once, and gets it.
        let fetched = cache.keys(lacking("b"), stale + 1).await.expect("fetched");
        assert!(fetched.contains(&"b".to_owned()), "{fetched:?}");
        assert_eq!(server.requests(), 2);
    }

    #[tokio::test]
    async fn a_claimed_fetch_that_never_ran_does_not_block_the_next() {
        let server = DocumentServer::start(json!(["a"])).await;
        let cache = names(&server);
        // A fetch claimed, then dropped before it ran (its task dropped at shutdown, say).
        let claimed = Shared::claim(&cache.shared, T0).expect("may fetch");
        drop(claimed);
        let later = T0 + REFRESH.min_refetch_seconds;
        let fetched = cache.keys(lacking("a"), later).await;
        assert!(fetched.is_some(), "a later caller fetches");
        assert_eq!(server.requests(), 1);
    }
}
