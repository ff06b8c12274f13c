//! For tests: a local server publishing one JSON document that the test swaps, turns down
//! (503) and counts the requests of.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

/// The server, on 127.0.0.1; stopped when dropped.
pub(crate) struct DocumentServer {
    pub(crate) port: u16,
    shared: Arc<Served>,
    task: tokio::task::JoinHandle<()>,
}

struct Served {
    document: Mutex<Value>,
    requests: AtomicUsize,
    down: AtomicBool,
    /// Milliseconds each answer waits.
    delay_ms: AtomicU64,
}

impl DocumentServer {
    /// Publishes `document` at every path.
    pub(crate) async fn start(document: Value) -> Self {
        let shared = Arc::new(Served {
            document: Mutex::new(document),
            requests: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
        });
        let app = Router::new()
            .fallback(get(serve))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let port = listener.local_addr().expect("an address").port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serves");
        });
        DocumentServer { port, shared, task }
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Publishes `document` from now on.
    pub(crate) fn serve(&self, document: Value) {
        *self.shared.document.lock().expect("not poisoned") = document;
    }

    /// How many requests it received.
    pub(crate) fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Answers 503 to everything while `down`.
    pub(crate) fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }
}

impl DocumentServer {
    /// Answers everything after `delay` from now on (the document as it is then).
    pub(crate) fn set_delay(&self, delay: std::time::Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(millis, Ordering::SeqCst);
    }
}

impl Drop for DocumentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(shared): State<Arc<Served>>) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    if shared.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let document = shared.document.lock().expect("not poisoned").clone();
    axum::Json(document).into_response()
}
