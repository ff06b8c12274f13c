//! Ports for the services a test starts on a port of its choosing (edges, and control planes
//! that must come back on the same address).
//!
//! Binding port 0 and handing the number on is racy: the kernel gives out the same range for
//! every other port-0 listener and for outgoing connections (workerd's internal sockets, HTTP
//! clients, the pusher), so by the time miniflare binds it, the port may be someone else's.
//! These ports are therefore taken from outside the kernel's ephemeral range, where only an
//! explicit bind can land, and handed out once per process.

use std::net::TcpListener;
use std::ops::Range;
use std::sync::Mutex;

use anyhow::{Result, bail};

/// The ephemeral range Linux uses when `/proc` cannot be read.
const DEFAULT_EPHEMERAL: (u16, u16) = (32768, 60999);
/// The lowest port handed out (clear of the well-known and common service ports).
const LOWEST: u16 = 20000;

/// A port outside the ephemeral range that no one was listening on a moment ago and that this
/// process has not handed out before.
pub fn free_port() -> Result<u16> {
    static NEXT: Mutex<Option<u32>> = Mutex::new(None);
    let range = private_range();
    let mut next = NEXT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Processes running side by side (several test binaries, a benchmark) start at different
    // offsets, so they rarely have to skip each other's ports.
    let span = range.end - range.start;
    let offset = next.get_or_insert_with(|| std::process::id().wrapping_mul(7919) % span);
    match first_free(&range, offset) {
        Some(port) => Ok(port),
        None => bail!("no free port in {range:?}"),
    }
}

/// The first port of `range`, starting `offset` ports in and wrapping round, that nothing
/// listens on; `offset` moves past it.
fn first_free(range: &Range<u32>, offset: &mut u32) -> Option<u16> {
    let span = range.end - range.start;
    for _ in 0..span {
        let candidate = range.start + *offset % span;
        *offset = (*offset + 1) % span;
        let Ok(port) = u16::try_from(candidate) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Some(port);
        }
    }
    None
}

/// The ports below the ephemeral range, or above it when too few lie below.
fn private_range() -> Range<u32> {
    let (low, high) = ephemeral_range().unwrap_or(DEFAULT_EPHEMERAL);
    if low > LOWEST + 1000 {
        u32::from(LOWEST)..u32::from(low)
    } else {
        u32::from(high) + 1..65536
    }
}

/// The kernel's ephemeral port range from `/proc/sys/net/ipv4/ip_local_port_range`.
fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    Some((bounds.next()?.ok()?, bounds.next()?.ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_outside_the_ephemeral_range_and_never_repeat() {
        let (low, high) = ephemeral_range().unwrap_or(DEFAULT_EPHEMERAL);
        let ports: Vec<u16> = (0..50).map(|_| free_port().expect("a free port")).collect();
        for port in &ports {
            assert!(*port < low || *port > high, "{port} is in {low}-{high}");
        }
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    }

    #[test]
    fn a_port_someone_listens_on_is_skipped() {
        let range = private_range();
        let taken = free_port().expect("a free port");
        let _listener = TcpListener::bind(("127.0.0.1", taken)).expect("bind");
        let mut offset = u32::from(taken) - range.start;
        let found = first_free(&range, &mut offset).expect("a free port");
        assert_ne!(found, taken);
        assert!(range.contains(&u32::from(found)));
        assert_eq!(
            offset,
            (u32::from(found) + 1 - range.start) % (range.end - range.start)
        );
    }
}
