//! Tunables of mimalloc, the allocator both binaries run on.

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e`.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps freed pages before handing them back to the
/// system: 0 at once, a negative delay never. Call before other threads run.
pub fn set_purge_delay(ms: i64) {
    // SAFETY: sets a plain integer option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms as _) };
}
