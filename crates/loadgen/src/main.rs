//! `shmesh-loadgen`: a fleet simulator for xDS control planes.
//!
//! * `gen-mesh` writes a synthetic mesh (services, pods, EndpointSlices,
//!   DestinationRules, VirtualServices, Sidecars) as manifests into a
//!   directory, through `shmesh_loadgen::meshgen`;
//! * `run` connects N Envoy-like ADS clients (SotW or delta) to a control
//!   plane serving that directory, drives timed changes by rewriting its
//!   files, and reports connect, sync and convergence times, bytes, and the
//!   control plane's memory and CPU.
//!
//! It uses only shmesh's public library API, so it measures shmesh (or any
//! other control plane fed the same directory) from the outside.

mod ads;
mod client;
mod fleet;
mod report;
mod run;
mod subs;
mod sys;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use shmesh_loadgen::meshgen::{self, MeshSpec};

#[derive(Debug, Parser)]
#[command(
    name = "shmesh-loadgen",
    version,
    about = "Fleet simulator: many Envoy-like ADS clients against one control plane, with timed changes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a synthetic mesh as Kubernetes/Istio manifests into a directory.
    GenMesh(GenMeshArgs),
    /// Connect a fleet of simulated proxies, drive changes, report.
    Run(Box<run::RunArgs>),
}

#[derive(Debug, clap::Args)]
struct GenMeshArgs {
    /// Directory to write (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Namespaces (ns-0..).
    #[arg(long, default_value_t = 1)]
    namespaces: usize,
    /// Services per namespace (svc-0..).
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// Endpoints (pods) per service.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// DestinationRule subsets per service (v0..).
    #[arg(long, default_value_t = 3)]
    versions: usize,
    /// Services that get a VirtualService splitting weight between v0 and v1.
    #[arg(long, default_value_t = 0)]
    virtual_services: usize,
    /// Write a Sidecar per namespace so its proxies only see that namespace.
    #[arg(long)]
    scoped: bool,
    /// Service port (named http).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Delete the directory first if it exists.
    #[arg(long)]
    clean: bool,
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::GenMesh(a) => gen_mesh(a),
        Command::Run(a) => run_fleet(*a),
    };
    std::process::exit(code);
}

fn gen_mesh(a: GenMeshArgs) -> i32 {
    let spec = MeshSpec {
        namespaces: a.namespaces,
        services_per_namespace: a.services,
        endpoints_per_service: a.endpoints,
        versions: a.versions,
        virtual_services: a.virtual_services,
        namespace_scoped: a.scoped,
        port: a.port,
    };
    if a.clean && a.out.exists() {
        if let Err(e) = std::fs::remove_dir_all(&a.out) {
            eprintln!("shmesh-loadgen: cannot remove {}: {e}", a.out.display());
            return 2;
        }
    }
    match meshgen::write(&spec, &a.out) {
        Ok(s) => {
            println!(
                "wrote {} files ({:.1} MB) to {}: {} services, {} pods, {} EndpointSlices, {} DestinationRules, {} VirtualServices, {} Sidecars",
                s.files,
                s.bytes as f64 / 1e6,
                a.out.display(),
                s.services,
                s.pods,
                s.endpoint_slices,
                s.destination_rules,
                s.virtual_services,
                s.sidecars
            );
            0
        }
        Err(e) => {
            eprintln!("shmesh-loadgen gen-mesh: {e}");
            2
        }
    }
}

fn run_fleet(a: run::RunArgs) -> i32 {
    sys::keep_freed_memory();
    // One socket per client, plus slack for the runtime and files.
    let fd_limit = match sys::raise_fd_limit(a.clients as u64 + 1024) {
        Ok(l) => {
            eprintln!(
                "loadgen: file descriptor limit {} (hard {})",
                l.soft, l.hard
            );
            if l.soft < a.clients as u64 + 64 {
                eprintln!(
                    "loadgen: warning: not enough file descriptors for {} clients",
                    a.clients
                );
            }
            Some(l)
        }
        Err(e) => {
            eprintln!("loadgen: cannot read or raise the file descriptor limit: {e}");
            None
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shmesh-loadgen: cannot start the runtime: {e}");
            return 2;
        }
    };
    let result = runtime.block_on(run::run(&a, fd_limit));
    // Tasks that ignored the stop signal must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shmesh-loadgen run: {e}");
            return 2;
        }
    };
    print!("{}", report.render());
    let json = match serde_json::to_string(&report) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("shmesh-loadgen: report to JSON: {e}");
            return 2;
        }
    };
    if a.json {
        println!("{json}");
    }
    if let Some(path) = &a.json_out {
        if let Err(e) = std::fs::write(path, format!("{json}\n")) {
            eprintln!("shmesh-loadgen: cannot write {}: {e}", path.display());
            return 2;
        }
    }
    if report.complete {
        0
    } else {
        1
    }
}
