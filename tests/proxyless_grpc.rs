//! A proxyless gRPC client resolves a mesh service through shmesh and
//! completes calls.
//!
//! How: a Python gRPC server (`tests/grpc/greeter.py server`) listens on
//! 127.0.0.21 on a port the OS picks. A mesh directory holds a Service
//! `greeter` (port 50051, named `grpc`) whose EndpointSlice points at that
//! server, and `shmesh serve` runs on it. The Python client
//! (`tests/grpc/greeter.py client`) then calls `xds:///<name>:50051` with
//! `GRPC_XDS_BOOTSTRAP` naming a bootstrap that points at shmesh's xDS port:
//! grpcio's own xDS resolver fetches the Listener, RouteConfiguration, Cluster
//! and ClusterLoadAssignment over ADS, and every call must be answered by the
//! server. This is done for the FQDN and for the short names a client in
//! namespace `default` may use.
//!
//! Needs `python3`; installs `grpcio` with pip when it is missing, and fails
//! (rather than skips) if that is impossible. Each child process is killed
//! when the test ends, and every wait is bounded. On failure the client's
//! output and shmesh's log are printed; to see the xDS exchange from gRPC's
//! side, run with `GRPC_VERBOSITY=debug GRPC_TRACE=xds_client` (the client
//! inherits the environment).

mod common;

use std::path::Path;

use common::{grpc, mesh, Shmesh};
use serde_json::json;

/// Where the greeter server listens (port 0: the OS picks).
const SERVER_IP: &str = "127.0.0.21";
/// What the server answers every call with.
const SERVER_NAME: &str = "greeter-1";
/// The Service port clients dial (the server's real port differs).
const SERVICE_PORT: u16 = 50051;
/// Calls per client run.
const CALLS: usize = 5;

/// Service `greeter` in `default` with gRPC port 50051, served by one ready
/// endpoint at `SERVER_IP:server_port`.
fn greeter_mesh(server_port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: greeter
  namespace: default
spec:
  ports:
  - {{name: grpc, port: {SERVICE_PORT}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter-1
  namespace: default
  labels: {{kubernetes.io/service-name: greeter}}
addressType: IPv4
ports:
- {{name: grpc, port: {server_port}}}
endpoints:
- addresses: [{SERVER_IP}]
  conditions: {{ready: true}}
"
    )
}

/// A gRPC xDS bootstrap for a client in namespace `default` talking to shmesh.
fn grpc_bootstrap(shmesh: &Shmesh) -> serde_json::Value {
    json!({
        "xds_servers": [{
            "server_uri": shmesh.xds.to_string(),
            "channel_creds": [{"type": "insecure"}],
            "server_features": ["xds_v3"]
        }],
        "node": {
            "id": "grpc-client-1",
            "cluster": "grpc",
            "metadata": {"NAMESPACE": "default"},
            "locality": {}
        }
    })
}

/// Runs the greeter client on `target` and asserts every call succeeded and
/// was answered by the server.
fn assert_calls_succeed(dir: &Path, bootstrap: &Path, target: &str, label: &str) {
    let started = std::time::Instant::now();
    let replies = grpc::call(
        dir,
        target,
        CALLS,
        &[("GRPC_XDS_BOOTSTRAP", bootstrap)],
        &[],
        label,
    );
    assert_eq!(
        replies,
        vec![SERVER_NAME; CALLS],
        "gRPC client on {target}: expected {CALLS} replies from {SERVER_NAME}"
    );
    eprintln!(
        "{target}: {CALLS} calls answered by {SERVER_NAME} in {:?}",
        started.elapsed()
    );
}

#[test]
fn proxyless_grpc_client_calls_service_through_shmesh() {
    let work = tempfile::tempdir().expect("work dir");
    let version = grpc::ensure_grpcio(work.path());
    eprintln!("using grpcio {version}");

    let (_server, server_port) = grpc::start_server(work.path(), SERVER_IP, SERVER_NAME);
    let config = tempfile::tempdir().expect("config dir");
    mesh::write_atomic(config.path(), "greeter.yaml", &greeter_mesh(server_port));
    // On a panic from here on, dropping `shmesh` prints its log.
    let shmesh = Shmesh::start(config.path());

    let bootstrap = work.path().join("grpc-bootstrap.json");
    let text = serde_json::to_string_pretty(&grpc_bootstrap(&shmesh)).expect("bootstrap json");
    std::fs::write(&bootstrap, text).expect("write gRPC bootstrap");

    // The FQDN, then the short names DNS search paths give a client in `default`.
    let targets = [
        (
            "fqdn",
            format!("greeter.default.svc.cluster.local:{SERVICE_PORT}"),
        ),
        ("short", format!("greeter:{SERVICE_PORT}")),
        ("namespaced", format!("greeter.default:{SERVICE_PORT}")),
    ];
    for (label, name) in &targets {
        let target = format!("xds:///{name}");
        assert_calls_succeed(work.path(), &bootstrap, &target, &format!("client-{label}"));
    }
}
