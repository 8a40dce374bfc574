//! Shared helpers for shmesh integration tests (include with `mod common;`).
//!
//! * [`envoy`]: find the Envoy binary and run a real Envoy from a bootstrap,
//!   with admin-API helpers (`config_dump`, `stats`, `wait_until`, ...);
//! * [`upstream`]: a tiny keep-alive HTTP/1.1 backend on hyper that identifies
//!   itself (`x-upstream: <name>`) and counts requests;
//! * [`grpc`]: the Python gRPC greeter as server and client;
//! * [`http`]: a blocking HTTP/1.1 client on hyper (`http_get`, keep-alive
//!   `HttpClient`) to send traffic through Envoy;
//! * [`browser`]: a real headless Chromium driven over WebDriver;
//! * [`prometheus`]: scrapes parsed by Prometheus' Python client;
//! * [`apiserver`]: a fake Kubernetes API server (list and watch) for the
//!   real kube-rs client;
//! * [`pod_network`]: pods as network namespaces on a bridge, with Istio's
//!   capture rules, for sidecars under capture ([`netns`] reaches into them);
//! * [`free_port`]: pick an unused port on a loopback IP.
//!
//! Everything binds port 0 (or asks the OS) rather than assuming fixed ports,
//! and every wait is bounded, since other processes share the machine.
//! Not every test file uses every helper, hence the module-wide allows.
#![allow(dead_code, unused_imports)]

pub mod apiserver;
pub mod browser;
pub mod envoy;
pub mod grpc;
pub mod http;
pub mod mesh;
pub mod netns;
pub mod pod_network;
pub mod prometheus;
pub mod shmesh;
pub mod upstream;
pub mod xds_client;

pub use apiserver::ApiServer;
pub use envoy::{envoy_binary, envoy_validate, unique_base_id, Envoy, EnvoyOptions};
pub use http::{http_get, http_request, HttpClient, Response, DEFAULT_TIMEOUT};
pub use shmesh::Shmesh;
pub use upstream::{RecordedRequest, Reply, Upstream};

/// The `shmesh` binary under test. Cargo names it to the root package's own
/// tests; the other packages' tests (the fleet simulator's) find it beside
/// their own executables in the target directory, where
/// `cargo test --workspace` has built it.
pub fn shmesh_binary() -> std::path::PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_shmesh") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/PROFILE/deps/TEST → target/PROFILE/shmesh
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("shmesh"))
        .expect("the test runs from a target directory");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

/// Runs `cmd`, a `shmesh bootstrap` command line, and returns the bootstrap
/// it prints; panics with its stderr when it fails.
pub fn printed_bootstrap(cmd: &mut std::process::Command) -> serde_json::Value {
    let out = cmd.output().expect("run shmesh bootstrap");
    assert!(
        out.status.success(),
        "shmesh bootstrap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("shmesh bootstrap prints JSON")
}

/// Repeats `f` every 100 ms until it returns true; panics after 30 s.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{what}: not within 30 s");
}

/// A port that was free on `ip` a moment ago, below the kernel's ephemeral
/// range: the OS never hands it to a process binding port 0 (shmesh's own
/// listeners, Envoy's admin) or to an outgoing connection, which it could if
/// the port were released back into that range. Another test may still
/// pick the same port, one chance in twenty thousand, so prefer binding
/// port 0 directly where the consumer supports it.
pub fn free_port(ip: &str) -> u16 {
    const LOWEST: u16 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    for _ in 0..1000 {
        let port = fastrand::u16(LOWEST..ephemeral.max(LOWEST + 1_000));
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("free_port: no free port on {ip} below {ephemeral} in 1000 tries");
}
