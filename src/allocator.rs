//! Tunables of mimalloc, the allocator both binaries run on.

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e`.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The purge delay `shmesh serve` runs with: freed pages go back to the
/// system within a millisecond. Pushes to thousands of streams free memory
/// in bursts, and with mimalloc's default 10 ms a fleet's resident size
/// stayed ~10% above what it holds (docs/performance-notes.md, Allocator).
pub const SERVE_PURGE_DELAY_MS: i64 = 1;

/// How long mimalloc keeps freed pages before handing them back to the
/// system: 0 at once, a negative delay never. Call before other threads run.
pub fn set_purge_delay(ms: i64) {
    // SAFETY: sets a plain integer option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms as _) };
}

/// The settings `shmesh serve` runs with, for it and for the benches that
/// stand in for it; call first thing in `main`. Environment variables keep
/// their say: `MIMALLOC_PURGE_DELAY` sets the delay, and `MIMALLOC_ALLOW_THP`
/// leaves huge pages to mimalloc.
///
/// - Freed pages go back to the system within `SERVE_PURGE_DELAY_MS`.
/// - Memory is faulted in 4 KiB pages, not 2 MiB transparent huge pages:
///   mimalloc asks for huge pages for its arenas where the system allows them
///   on request, and a partly used huge page is resident all the same (14 MiB
///   of a W1 mesh's 109 MiB before any proxy connects,
///   docs/performance-notes.md, Allocator).
pub fn use_serve_settings() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        set_purge_delay(SERVE_PURGE_DELAY_MS);
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a
        // flag on this process; a failure leaves huge pages allowed.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

fn purge_delay() -> i64 {
    // SAFETY: reads a plain integer option.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) as i64 }
}

/// Runs `work` with freed pages kept for reuse, then hands every free page
/// back at once. A translation frees and takes again hundreds of megabytes
/// of short-lived message trees and buffers; returned to the system as they
/// are freed, each page came back through a fault, and a full translation of
/// 10,000 services took ~40% longer (docs/performance-notes.md, Allocator).
///
/// The delay is one process-wide option: streams that free memory while
/// `work` runs keep their pages until the collection too. Meant for one
/// caller at a time (the views task).
pub fn holding_freed_pages<T>(work: impl FnOnce() -> T) -> T {
    struct Restore(i64);
    impl Drop for Restore {
        fn drop(&mut self) {
            set_purge_delay(self.0);
            // SAFETY: a plain call into the allocator, from any thread.
            unsafe { libmimalloc_sys::mi_collect(true) };
        }
    }
    let _restore = Restore(purge_delay());
    set_purge_delay(-1);
    work()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_pages_are_held_only_while_the_work_runs() {
        let before = purge_delay();
        set_purge_delay(7);
        assert_eq!(holding_freed_pages(purge_delay), -1);
        assert_eq!(purge_delay(), 7);
        let failed = std::panic::catch_unwind(|| holding_freed_pages(|| panic!("work failed")));
        assert!(failed.is_err());
        assert_eq!(purge_delay(), 7, "restored when the work panics too");
        set_purge_delay(before);
    }
}
