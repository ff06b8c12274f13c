//! The control plane's half of key-table replication.
//!
//! - [`feed`]: the signed feed edges pull: `GET /v1/edge/changes?after=N` and
//!   `GET /v1/edge/snapshot`; pulling with `edge=<name>&url=<url>` registers the edge.
//! - [`registry`]: what an edge's name and URL may be; `NAME=URL` specs for `serve --edge`.
//! - [`pusher`]: sends every committed change to every registered edge's
//!   `POST <url>/__keyplane/sync`, signed, retried with backoff, never blocking an API call.
//!
//! Both directions are signed with the edge secret (`keyplane_shared::sync`).

pub mod feed;
pub mod pusher;
pub mod registry;
