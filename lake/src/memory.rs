//! Handing memory freed by one phase of a long command back to the
//! operating system before the next phase allocates.
//!
//! The binary's allocator (mimalloc) keeps freed pages for a while before
//! returning them, which is what makes reallocating them cheap. Between
//! phases that is the wrong trade: a 20M-event ingest's decoding and
//! writing threads free a few hundred megabytes when they end, and the tail
//! of the ingest (run parts, the index runs read back) then peaked with
//! about 90 MB of that memory still counted against the process
//! (BENCHMARKS.md, "Where the 20M ingest peaks"). A command calls
//! [`release_freed`] at such a boundary; the binary says how with
//! [`set_release`], so the libraries do not depend on one allocator, and a
//! program that registers nothing only keeps the allocator's default.

use std::sync::OnceLock;

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Registers how this process returns freed memory to the operating
/// system; the first registration wins.
pub fn set_release(release: fn()) {
    // A second registration is ignored: one process has one allocator.
    let _first_wins = RELEASE.set(release);
}

/// Returns the memory the allocator holds freed, where the process
/// registered how ([`set_release`]); a few milliseconds, so only at the end
/// of a phase that freed a lot.
pub fn release_freed() {
    if let Some(release) = RELEASE.get() {
        release();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    #[test]
    fn release_calls_what_was_registered_first() {
        set_release(|| {
            CALLS.fetch_add(1, Ordering::SeqCst);
        });
        set_release(|| panic!("a second registration must not replace the first"));
        release_freed();
        release_freed();
        assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    }
}
