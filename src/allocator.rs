//! The allocator `shmesh` runs on: mimalloc, its tunables, and the counts of
//! what passes through it (`CountingAllocator`, read by `/metrics`).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use mimalloc::MiMalloc;

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

/// mimalloc, counting the bytes allocated and freed and the allocations
/// made. Each thread adds to its own counts and hands them to the shared
/// ones every `FLUSH_EVERY` calls, so an allocation costs a few thread-local
/// additions and no shared cache line; the shared counts lag each thread's
/// by at most that many calls.
pub struct CountingAllocator;

/// Calls a thread counts on its own before adding to the shared counts.
const FLUSH_EVERY: u32 = 256;

static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);
static FREED_BYTES: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// A thread's counts not yet added to the shared ones.
#[derive(Clone, Copy)]
struct Pending {
    allocated: u64,
    freed: u64,
    allocations: u32,
    calls: u32,
}

thread_local! {
    // Constant-initialised and without a destructor: reading it never
    // allocates, so the allocator itself may use it.
    static PENDING: Cell<Pending> = const {
        Cell::new(Pending { allocated: 0, freed: 0, allocations: 0, calls: 0 })
    };
}

#[inline]
fn count(allocated: usize, freed: usize, allocations: u32) {
    let _ = PENDING.try_with(|cell| {
        let mut p = cell.get();
        p.allocated += allocated as u64;
        p.freed += freed as u64;
        p.allocations += allocations;
        p.calls += 1;
        if p.calls >= FLUSH_EVERY {
            ALLOCATED_BYTES.fetch_add(p.allocated, Ordering::Relaxed);
            FREED_BYTES.fetch_add(p.freed, Ordering::Relaxed);
            ALLOCATIONS.fetch_add(u64::from(p.allocations), Ordering::Relaxed);
            p = Pending {
                allocated: 0,
                freed: 0,
                allocations: 0,
                calls: 0,
            };
        }
        cell.set(p);
    });
}

// SAFETY: every call is mimalloc's; the counting around it touches only
// thread-local cells and atomics.
unsafe impl GlobalAlloc for CountingAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { MiMalloc.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size(), 0, 1);
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { MiMalloc.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size(), 0, 1);
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { MiMalloc.dealloc(ptr, layout) };
        count(0, layout.size(), 0);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(new_size, layout.size(), 1);
        }
        new
    }
}

/// The heap as `/metrics` reports it.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeapStats {
    /// Memory mimalloc holds committed.
    pub committed_bytes: u64,
    /// Allocated and not yet freed, as far as the shared counts know.
    pub live_bytes: u64,
    /// Allocated since start (reallocations count their new size).
    pub allocated_bytes_total: u64,
    /// Allocations since start (reallocations count as one).
    pub allocations_total: u64,
}

/// The heap's figures now. The counts are those of `CountingAllocator`,
/// zero in a process that runs on another allocator.
pub fn heap_stats() -> HeapStats {
    let mut committed = 0usize;
    let mut unused = [0usize; 7];
    let [elapsed, user, system, rss, peak_rss, peak_commit, faults] = &mut unused;
    // SAFETY: mi_process_info writes plain integers through the pointers given.
    unsafe {
        libmimalloc_sys::mi_process_info(
            elapsed,
            user,
            system,
            rss,
            peak_rss,
            &mut committed,
            peak_commit,
            faults,
        )
    };
    let allocated = ALLOCATED_BYTES.load(Ordering::Relaxed);
    let freed = FREED_BYTES.load(Ordering::Relaxed);
    HeapStats {
        committed_bytes: committed as u64,
        live_bytes: allocated.saturating_sub(freed),
        allocated_bytes_total: allocated,
        allocations_total: ALLOCATIONS.load(Ordering::Relaxed),
    }
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
