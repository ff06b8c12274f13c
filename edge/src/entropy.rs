//! Randomness for request ids, drawn from a per-isolate pool that one call to the OS CSPRNG
//! (`crypto.getRandomValues` under workerd) fills for many requests.
//!
//! Every request gets a fresh id, and asking the runtime for 10 bytes on each one was a
//! crossing out of wasm per request (about 1.5 % of an isolate's CPU under load, README, edge
//! overhead). The pool holds [`POOL_BYTES`] of the CSPRNG's output and hands each byte out once;
//! request ids are not secrets (they are in every answer), so keeping unread bytes in the
//! isolate's memory for a moment gives nothing away that the ids themselves do not.

use std::cell::RefCell;

/// Bytes drawn from the CSPRNG at a time: 409 request ids' worth.
pub const POOL_BYTES: usize = 4096;

struct Pool {
    bytes: [u8; POOL_BYTES],
    /// The first byte not yet handed out; `POOL_BYTES` when the pool is spent.
    next: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            bytes: [0; POOL_BYTES],
            next: POOL_BYTES,
        })
    };
}

/// `N` bytes from the CSPRNG, each handed out once; an error when the CSPRNG fails.
pub fn random<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    const { assert!(N <= POOL_BYTES) };
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if POOL_BYTES - pool.next < N {
            getrandom::fill(&mut pool.bytes)?;
            pool.next = 0;
        }
        let start = pool.next;
        pool.next += N;
        let mut out = [0u8; N];
        out.copy_from_slice(&pool.bytes[start..start + N]);
        // Spent bytes are cleared: none is handed out twice, even by a bug elsewhere.
        pool.bytes[start..start + N].fill(0);
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_draw_repeats_and_the_pool_refills_when_spent() {
        let draws: Vec<[u8; 10]> = (0..3 * POOL_BYTES / 10)
            .map(|_| random::<10>().expect("CSPRNG"))
            .collect();
        let distinct: std::collections::HashSet<_> = draws.iter().collect();
        assert_eq!(distinct.len(), draws.len(), "a draw repeated");
        assert!(
            draws.iter().all(|draw| draw != &[0; 10]),
            "a cleared draw was handed out"
        );
    }
}
