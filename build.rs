//! Compiles a descriptor set for the Envoy resource types shmesh prints as JSON
//! (`shmesh translate`, `shmesh bootstrap`, admin dumps).
//!
//! envoy-types ships the generated Rust types and the `.proto` sources but no
//! descriptors, and protobuf's JSON mapping needs descriptors. protox compiles the
//! sources in pure Rust, so building shmesh never needs `protoc`.

use std::path::{Path, PathBuf};

/// The `.proto` files whose messages (and everything they import) get descriptors.
const ROOTS: &[&str] = &[
    "envoy/admin/v3/config_dump.proto",
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/config/grpc_credential/v3/file_based_metadata.proto",
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/config/trace/v3/opentelemetry.proto",
    "envoy/config/trace/v3/zipkin.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/filters/http/jwt_authn/v3/config.proto",
    "envoy/extensions/filters/http/rbac/v3/rbac.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/rbac/v3/rbac.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/transport_sockets/tls/v3/secret.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/service/discovery/v3/discovery.proto",
];

/// Subdirectories of envoy-types' `proto/` that hold import roots.
const INCLUDES: &[&str] = &[
    "data-plane-api",
    "xds",
    "protoc-gen-validate",
    "googleapis",
    "cel-spec/proto",
    "opentelemetry-proto",
    "client_model",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SHMESH_ENVOY_PROTO_DIR");
    let proto_dir = envoy_proto_dir();
    let includes: Vec<PathBuf> = INCLUDES.iter().map(|i| proto_dir.join(i)).collect();
    let fds = protox::compile(ROOTS, &includes).unwrap_or_else(|e| {
        panic!(
            "compiling Envoy protos under {}: {e:?}",
            proto_dir.display()
        )
    });
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let bytes = prost::Message::encode_to_vec(&fds);
    std::fs::write(out.join("envoy_descriptors.bin"), bytes).expect("write descriptors");
}

/// Finds the `proto/` directory of the envoy-types version locked in Cargo.lock.
fn envoy_proto_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SHMESH_ENVOY_PROTO_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let version = locked_version(&manifest.join("Cargo.lock"), "envoy-types")
        .expect("envoy-types in Cargo.lock");
    let crate_dir = format!("envoy-types-{version}");
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| home().join(".cargo"));
    let registry = cargo_home.join("registry").join("src");
    let entries = std::fs::read_dir(&registry)
        .unwrap_or_else(|e| panic!("reading {}: {e}", registry.display()));
    for entry in entries.flatten() {
        let candidate = entry.path().join(&crate_dir).join("proto");
        if candidate.is_dir() {
            return candidate;
        }
    }
    panic!(
        "no {crate_dir}/proto under {}; set SHMESH_ENVOY_PROTO_DIR",
        registry.display()
    )
}

fn locked_version(lock: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(lock).ok()?;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{name}\"") {
            let next = lines.next()?;
            return next
                .trim()
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_owned);
        }
    }
    None
}

fn home() -> PathBuf {
    std::env::var("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/root"))
}
