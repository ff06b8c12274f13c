//! The audit log as a service: its API (listing, chain verification) and the coalescing of
//! refused management calls before they reach it. The log's tamper-evident hash chain is part of
//! how the store writes records: [`crate::store::audit_chain`].

pub mod api;
pub mod refusals;
