use clap::Parser;

/// mimalloc returns freed memory to the system far more readily than glibc's
/// allocator does across many threads, which keeps a control plane's resident
/// size close to what it actually holds after bursts of large pushes.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

/// Freed pages go back to the system within a millisecond
/// (`shmesh::allocator::SERVE_PURGE_DELAY_MS` says why).
/// `MIMALLOC_PURGE_DELAY` still decides when it is set.
fn purge_freed_memory_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        shmesh::allocator::set_purge_delay(shmesh::allocator::SERVE_PURGE_DELAY_MS);
    }
}

/// Memory is faulted in 4 KiB pages, not 2 MiB transparent huge pages:
/// mimalloc asks for huge pages for its arenas where the system allows them
/// on request, and a partly used huge page is resident all the same (14 MiB
/// of a W1 mesh's 109 MiB before any proxy connects, BENCHMARKS.md). Set
/// `MIMALLOC_ALLOW_THP` to leave the choice to mimalloc.
fn no_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a
        // flag on this process; a failure leaves huge pages allowed.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

fn main() {
    purge_freed_memory_soon();
    no_transparent_huge_pages();
    let cli = shmesh::config::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SHMESH_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shmesh: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    match runtime.block_on(shmesh::app::run(cli.command)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("shmesh: {e:#}");
            std::process::exit(2);
        }
    }
}
