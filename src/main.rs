use clap::Parser;

/// mimalloc returns freed memory to the system far more readily than glibc's
/// allocator does across many threads, which keeps a control plane's resident
/// size close to what it actually holds after bursts of large pushes; it is
/// counted for `/metrics`.
#[global_allocator]
static ALLOC: shmesh::allocator::CountingAllocator = shmesh::allocator::CountingAllocator;
use tracing_subscriber::EnvFilter;

fn main() {
    shmesh::allocator::use_serve_settings();
    let cli = shmesh::config::Cli::parse();
    // The demo talks to its user on stdout, problems in the manifests
    // included; its log keeps to what else went wrong.
    let level = match cli.command {
        shmesh::config::Command::Demo(_) => "warn,shmesh::sources::files=off",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SHMESH_LOG").unwrap_or_else(|_| EnvFilter::new(level)),
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
