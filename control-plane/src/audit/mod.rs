//! The audit log: its tamper-evident hash chain and its API.

pub mod api;
pub mod chain;
