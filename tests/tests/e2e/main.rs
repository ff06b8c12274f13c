//! End-to-end tests: the real `keyplane` binary and the real worker under workerd.
//!
//! Ignored in a plain `cargo test`; `cargo xtask test` builds everything and runs them
//! with `--ignored` (see `keyplane_tests` for the environment they read).

mod cli;
mod control_plane;
mod dashboard;
mod edge;
mod faults;
mod forwarded_headers;
mod identity;
mod isolates;
mod leaks;
mod load;
mod openapi_conformance;
mod origin_answers;
mod paths;
mod people;
mod rate_limits;
mod replication;
mod safety_net;
mod several_instances;
mod stored_snapshot;
mod table_replacement;
mod usage;
mod webhooks;
