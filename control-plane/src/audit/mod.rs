//! The audit log: its tamper-evident hash chain, its API, and the coalescing of refused
//! management calls before they reach it.

pub mod api;
pub mod chain;
pub mod refusals;
