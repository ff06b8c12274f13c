//! Reference-counted interning of values many table entries share (organizations, scope sets).
//!
//! Entries store a `u32` handle instead of the value; with thousands of keys per organization and
//! a handful of distinct scope sets, this is most of what keeps an entry small.

use std::collections::HashMap;
use std::hash::Hash;

/// Interned values with reference counts; freed handles are reused.
#[derive(Debug, Clone)]
pub(crate) struct Interner<T> {
    values: Vec<T>,
    counts: Vec<u32>,
    handles: HashMap<T, u32>,
    free: Vec<u32>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            values: Vec::new(),
            counts: Vec::new(),
            handles: HashMap::new(),
            free: Vec::new(),
        }
    }
}

impl<T: Clone + Eq + Hash> Interner<T> {
    /// Takes a reference to `value`, adding it if new.
    pub(crate) fn acquire(&mut self, value: &T) -> u32 {
        if let Some(&handle) = self.handles.get(value) {
            self.counts[handle as usize] += 1;
            return handle;
        }
        let handle = match self.free.pop() {
            Some(handle) => {
                self.values[handle as usize] = value.clone();
                self.counts[handle as usize] = 1;
                handle
            }
            None => {
                // More than u32::MAX distinct values would need more memory than any edge has.
                let handle = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
                self.values.push(value.clone());
                self.counts.push(1);
                handle
            }
        };
        self.handles.insert(value.clone(), handle);
        handle
    }

    /// An interner holding `values` under handles `0..values.len()` in order, each with its
    /// reference count (every count at least one, values distinct: the caller checked).
    pub(crate) fn from_counted(values: Vec<T>, counts: Vec<u32>) -> Self {
        let handles = values.iter().cloned().zip(0u32..).collect();
        Interner {
            values,
            counts,
            handles,
            free: Vec::new(),
        }
    }

    /// One more than the largest handle ever handed out: handles index a vector this long.
    pub(crate) fn handle_bound(&self) -> usize {
        self.values.len()
    }

    /// Drops one reference; the value is forgotten when none remain.
    pub(crate) fn release(&mut self, handle: u32) {
        let count = &mut self.counts[handle as usize];
        *count -= 1;
        if *count == 0 {
            self.handles.remove(&self.values[handle as usize]);
            self.free.push(handle);
        }
    }

    /// The value behind a live handle.
    pub(crate) fn get(&self, handle: u32) -> &T {
        &self.values[handle as usize]
    }

    /// Number of distinct live values.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.handles.len()
    }

    /// Heap bytes owned by the live values themselves, as `value_bytes` counts them for one value.
    /// Each live value is held twice (in the value list and as a map key).
    pub(crate) fn owned_heap_bytes(&self, value_bytes: impl Fn(&T) -> usize) -> usize {
        self.handles
            .keys()
            .map(|value| 2 * value_bytes(value))
            .sum()
    }

    /// Approximate heap bytes, excluding memory owned by the values themselves.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.values.capacity() * size_of::<T>()
            + self.counts.capacity() * 4
            + self.free.capacity() * 4
            + self.handles.capacity() * (size_of::<T>() + 4 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn equal_values_share_a_handle_until_released() {
        let mut interner = Interner::default();
        let a = interner.acquire(&"x".to_string());
        let b = interner.acquire(&"x".to_string());
        assert_eq!(a, b);
        assert_eq!(interner.live(), 1);
        interner.release(a);
        assert_eq!(interner.get(b), "x");
        interner.release(b);
        assert_eq!(interner.live(), 0);
        let c = interner.acquire(&"y".to_string());
        assert_eq!(c, a, "freed handle is reused");
        assert_eq!(interner.get(c), "y");
    }
}
