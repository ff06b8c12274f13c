//! Counters and gauges exposed at `/metrics` in the Prometheus text format (prometheus-client).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of an HTTP request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// The route's pattern (`/v1/keys/{id}`), or `unmatched`.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of a counter by outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What happened, e.g. `invalid_api_key`.
    pub outcome: String,
}

/// Labels of a per-edge gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EdgeLabels {
    /// The edge's registered name.
    pub edge: String,
}

/// The control plane's counters.
pub struct Metrics {
    registry: Registry,
    /// Requests served, by method, route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Refused management authentications, by reason.
    pub auth_failures: Family<OutcomeLabels, Counter>,
    /// Key lifecycle operations that succeeded, by operation.
    pub key_operations: Family<OutcomeLabels, Counter>,
    /// Pushes to edges, by outcome: `acked` (the edge applied everything sent), `gap` (it
    /// acknowledged less; the rest is resent) or `failed` (retried with backoff).
    pub pushes: Family<OutcomeLabels, Counter>,
    /// Per edge: changes in the feed that the edge has not acknowledged.
    pub edge_lag: Family<EdgeLabels, Gauge>,
    /// Usage events received from edges, by outcome: `stored`, `duplicate` (that request id
    /// was already stored), `unattributed` (no key), `unknown_key`, `org_mismatch`,
    /// `malformed` (not an event), `out_of_range` (dated in the future, or a bad status).
    pub usage_events: Family<OutcomeLabels, Counter>,
    /// Usage events deleted by the retention cleanup.
    pub usage_expired: Counter,
    /// Webhook deliveries that succeeded (a 2xx answer).
    pub webhooks_delivered: Counter,
    /// Webhook attempts that failed (to be retried, or given up).
    pub webhook_failures: Counter,
    /// Argon2id hashes computed for new keys (create and rotate): the expensive step, which a
    /// refused call never reaches.
    pub key_hashes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keyplane");
        let requests = Family::<RequestLabels, Counter>::default();
        let auth_failures = Family::<OutcomeLabels, Counter>::default();
        let key_operations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served by the control plane",
            requests.clone(),
        );
        registry.register(
            "management_auth_failures",
            "Management requests refused at authentication",
            auth_failures.clone(),
        );
        registry.register(
            "key_operations",
            "Key lifecycle operations that succeeded",
            key_operations.clone(),
        );
        let pushes = Family::<OutcomeLabels, Counter>::default();
        let edge_lag = Family::<EdgeLabels, Gauge>::default();
        registry.register(
            "edge_pushes",
            "Change pushes to edges, by outcome (acked, gap, failed)",
            pushes.clone(),
        );
        registry.register(
            "edge_lag_changes",
            "Changes in the feed an edge has not acknowledged",
            edge_lag.clone(),
        );
        let usage_events = Family::<OutcomeLabels, Counter>::default();
        let usage_expired = Counter::default();
        registry.register(
            "usage_events",
            "Usage events received from edges, by outcome (stored, duplicate, unattributed, \
             unknown_key, org_mismatch, malformed, out_of_range)",
            usage_events.clone(),
        );
        registry.register(
            "usage_events_expired",
            "Usage events deleted after the retention period",
            usage_expired.clone(),
        );
        let key_hashes = Counter::default();
        registry.register(
            "key_hashes",
            "Argon2id hashes computed for new keys (create and rotate)",
            key_hashes.clone(),
        );
        let webhooks_delivered = Counter::default();
        registry.register(
            "webhooks_delivered",
            "Webhook deliveries answered with a 2xx",
            webhooks_delivered.clone(),
        );
        let webhook_failures = Counter::default();
        registry.register(
            "webhook_failures",
            "Webhook attempts that failed (no answer, or not a 2xx)",
            webhook_failures.clone(),
        );
        Metrics {
            registry,
            webhooks_delivered,
            webhook_failures,
            requests,
            auth_failures,
            key_operations,
            pushes,
            edge_lag,
            usage_events,
            usage_expired,
            key_hashes,
        }
    }
}

impl Metrics {
    /// Counts one refused authentication.
    pub fn auth_failed(&self, outcome: &str) {
        self.auth_failures
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts one successful key operation.
    pub fn key_operation(&self, operation: &str) {
        self.key_operations
            .get_or_create(&OutcomeLabels {
                outcome: operation.to_owned(),
            })
            .inc();
    }

    /// Counts `n` key operations of one kind (a member's keys revoked together).
    pub fn key_operation_n(&self, operation: &str, n: u64) {
        self.key_operations
            .get_or_create(&OutcomeLabels {
                outcome: operation.to_owned(),
            })
            .inc_by(n);
    }

    /// Counts one push to an edge.
    pub fn push(&self, outcome: &str) {
        self.pushes
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts `count` usage events with one outcome (nothing when `count` is 0).
    pub fn count_usage(&self, outcome: &str, count: usize) {
        if count > 0 {
            self.usage_events
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.to_owned(),
                })
                .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
        }
    }

    /// Sets how far behind the feed's head an edge is.
    pub fn set_edge_lag(&self, edge: &str, lag: u64) {
        self.edge_lag
            .get_or_create(&EdgeLabels {
                edge: edge.to_owned(),
            })
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    /// Forgets a removed edge's gauge.
    pub fn forget_edge(&self, edge: &str) {
        self.edge_lag.remove(&EdgeLabels {
            edge: edge.to_owned(),
        });
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
