//! Per-thread pool of string buffers for text that must be unescaped before conversion.
//!
//! Quoted array elements and record fields with escapes are unescaped into a buffer from this
//! pool, so a busy decoder thread reuses a few buffers instead of allocating one per value.
//! Conversions nest (an array of composites holding arrays), so the pool hands out one buffer
//! per nesting level.

use std::cell::RefCell;

/// Maximum buffers kept per thread. Deeper nesting allocates a buffer and drops it after use.
const MAX_POOLED: usize = 8;

/// Buffers larger than this are dropped instead of pooled, so one huge value does not pin its
/// memory for the life of the thread.
const MAX_POOLED_CAPACITY: usize = 1 << 20;

thread_local! {
    static POOL: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with an empty buffer taken from this thread's pool, then returns it to the pool.
pub(crate) fn with_buffer<R>(f: impl FnOnce(&mut String) -> R) -> R {
    let mut buffer = POOL
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_default();
    buffer.clear();
    let result = f(&mut buffer);
    if buffer.capacity() <= MAX_POOLED_CAPACITY {
        POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < MAX_POOLED {
                pool.push(buffer);
            }
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_empty_and_nest() {
        with_buffer(|outer| {
            outer.push_str("outer");
            with_buffer(|inner| {
                assert!(inner.is_empty());
                inner.push_str("inner");
            });
            assert_eq!(outer, "outer");
        });
        with_buffer(|reused| assert!(reused.is_empty()));
    }
}
