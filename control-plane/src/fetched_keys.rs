//! A document of public keys published at a URL (a host product's JWKS, GitHub's
//! secret-scanning keys), fetched, cached, and refreshed without hammering its publisher.
//!
//! - It is fetched on first use, and again when the copy held is older than the
//!   [`Refresh::max_age_seconds`] or a caller needs a key it does not hold (a publisher that
//!   rotated its keys).
//! - Fetches are at least [`Refresh::min_refetch_seconds`] apart whatever their reason, so
//!   requests naming random keys (or a publisher that is down) cause at most one fetch per
//!   interval.
//! - A failed fetch (transport, a status other than 200, a body over
//!   [`Refresh::max_body_bytes`], a document that does not parse) keeps the keys held and logs
//!   a warning; `None` is answered only when no key was ever fetched.
//! - Time is the `now` (Unix seconds) each caller passes, so tests move it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

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
    /// What it is, for the logs ("host-token JWKS of https://…").
    what: String,
    url: reqwest::Url,
    client: reqwest::Client,
    refresh: Refresh,
    parse: Parse<T>,
    /// Held across a fetch: concurrent callers wait for it rather than fetch too.
    state: Mutex<CacheState<T>>,
}

struct CacheState<T: ?Sized> {
    keys: Option<Arc<T>>,
    /// When `keys` were fetched.
    fetched_at: Option<i64>,
    /// When a fetch was last tried, successful or not.
    attempted_at: Option<i64>,
}

impl<T: ?Sized> std::fmt::Debug for FetchedKeys<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FetchedKeys")
            .field("what", &self.what)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl<T: ?Sized> FetchedKeys<T> {
    /// A cache that fetches nothing until first asked.
    pub fn new(
        what: String,
        url: reqwest::Url,
        client: reqwest::Client,
        refresh: Refresh,
        parse: Parse<T>,
    ) -> Self {
        FetchedKeys {
            what,
            url,
            client,
            refresh,
            parse,
            state: Mutex::new(CacheState {
                keys: None,
                fetched_at: None,
                attempted_at: None,
            }),
        }
    }

    /// The URL fetched.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// The keys at `now`, fetched first when the copy held is stale or `lacks` says it lacks
    /// what the caller needs, and the last fetch is old enough; `None` while none was ever
    /// fetched.
    pub async fn keys(&self, lacks: impl FnOnce(&T) -> bool, now: i64) -> Option<Arc<T>> {
        let mut state = self.state.lock().await;
        // A clock that moved back counts as time passed: abs_diff, not a subtraction.
        let older_than = |at: Option<i64>, seconds: i64| {
            at.is_none_or(|at| now.abs_diff(at) >= seconds.unsigned_abs())
        };
        let stale = older_than(state.fetched_at, self.refresh.max_age_seconds);
        let lacking = state.keys.as_deref().is_none_or(lacks);
        let may_fetch = older_than(state.attempted_at, self.refresh.min_refetch_seconds);
        if (stale || lacking) && may_fetch {
            state.attempted_at = Some(now);
            match self.fetch().await {
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
        state.keys.clone()
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
