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
}

/// What a caller does with the keys held.
enum Next<T: ?Sized> {
    /// Takes them: they serve, and are fresh or may not be fetched again yet.
    Take(Option<Arc<T>>),
    /// Takes them, and a refresh starts behind it (they serve, but are stale).
    TakeAndRefresh(Arc<T>),
    /// Waits until no fetch is under way, then asks again: none are held, or not the one it
    /// needs (the fetch under way may bring it).
    Wait,
    /// Fetches (it waited, and still lacks what it needs).
    Fetch,
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
        let next = match self.shared.next(&lacks, now, false) {
            Next::Wait => {
                // After the fetch under way, if any: it may have brought what is needed.
                let _fetching = self.shared.fetching.lock().await;
                match self.shared.next(&lacks, now, true) {
                    Next::Fetch => {
                        self.shared.fetch_and_keep(now).await;
                        return self.shared.held();
                    }
                    other => other,
                }
            }
            other => other,
        };
        match next {
            Next::TakeAndRefresh(keys) => {
                // The refresh holds the fetch lock from here (a fetch already under way is the
                // refresh): callers that lack keys wait for it, as they would for their own.
                if let Ok(fetching) = Arc::clone(&self.shared.fetching).try_lock_owned() {
                    let shared = Arc::clone(&self.shared);
                    tokio::spawn(async move {
                        shared.fetch_and_keep(now).await;
                        drop(fetching);
                    });
                }
                Some(keys)
            }
            Next::Take(keys) => keys,
            Next::Wait | Next::Fetch => self.shared.held(),
        }
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

    /// What a caller needing what `lacks` says does at `now` (`waited`: it holds the fetch
    /// lock); a fetch it is to make, now or behind it, is counted as started.
    fn next(&self, lacks: &impl Fn(&T) -> bool, now: i64, waited: bool) -> Next<T> {
        let mut state = self.lock();
        // A clock that moved back counts as time passed: abs_diff, not a subtraction.
        let older_than = |at: Option<i64>, seconds: i64| {
            at.is_none_or(|at| now.abs_diff(at) >= seconds.unsigned_abs())
        };
        let stale = older_than(state.fetched_at, self.refresh.max_age_seconds);
        let may_fetch = older_than(state.attempted_at, self.refresh.min_refetch_seconds);
        let serving = state.keys.clone().filter(|keys| !lacks(keys));
        match serving {
            Some(keys) if stale && may_fetch => {
                state.attempted_at = Some(now);
                Next::TakeAndRefresh(keys)
            }
            Some(keys) => Next::Take(Some(keys)),
            None if !waited => Next::Wait,
            None if may_fetch => {
                state.attempted_at = Some(now);
                Next::Fetch
            }
            None => Next::Take(state.keys.clone()),
        }
    }

    /// Fetches, and keeps the keys fetched (or, on a failure, those held).
    async fn fetch_and_keep(&self, now: i64) {
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(what = %self.what, "keys fetched");
                let mut state = self.lock();
                state.keys = Some(keys);
                state.fetched_at = Some(now);
            }
            Err(reason) => tracing::warn!(
                what = %self.what,
                url = %self.url,
                %reason,
                keys_held = self.lock().keys.is_some(),
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
