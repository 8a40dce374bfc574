//! Running CPU- or disk-bound work from a task without holding up the
//! runtime's other tasks (the proxies' streams).

/// Runs `f` on this thread after handing the worker's queued tasks to another
/// thread, when on a multi-threaded runtime; elsewhere (tests, a
/// current-thread runtime) it simply runs `f`.
pub fn in_place<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
