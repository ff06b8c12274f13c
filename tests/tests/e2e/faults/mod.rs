//! Fault injection: parts of a running deployment killed or cut off under load (a [`Load`]
//! from `load.rs`), and then the proof that nothing acknowledged was lost.
//!
//! [`Load`]: crate::load::Load

mod control_plane;
mod edges;
mod storage;
