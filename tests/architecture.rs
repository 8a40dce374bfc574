//! The crate map of docs/architecture.md, checked: each workspace crate may
//! depend only on the crates upstream of it in the data flow, and the pure
//! layers on none of the I/O stacks. A dependency against the arrows (say,
//! `shmesh-xds` on `shmesh-translate`, or `shmesh-model` on `kube`) fails
//! here with the crate and the dependency named.
//!
//! Reads the manifests through `cargo metadata --no-deps`, so it needs no
//! network and sees normal, dev and build dependencies alike.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// The library crates, upstream of the binary.
const LIBRARIES: &[&str] = &[
    "shmesh-api",
    "shmesh-model",
    "shmesh-cache",
    "shmesh-translate",
    "shmesh-xds",
];

/// Workspace crates each crate may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("shmesh-api", &[]),
    ("shmesh-model", &["shmesh-api"]),
    ("shmesh-cache", &[]),
    (
        "shmesh-translate",
        &["shmesh-api", "shmesh-model", "shmesh-cache"],
    ),
    ("shmesh-xds", &["shmesh-cache"]),
    ("shmesh", LIBRARIES),
];

/// What the schema and the model must not know: protobuf and Envoy's types,
/// I/O, Kubernetes clients.
const NEITHER_PROTOBUF_NOR_IO: &[&str] = &[
    "envoy-types",
    "prost",
    "tonic",
    "tokio",
    "hyper",
    "kube",
    "k8s-openapi",
];

/// What the encoded cache and translation must not know: I/O and Kubernetes.
const NEITHER_IO_NOR_KUBERNETES: &[&str] = &["tonic", "tokio", "hyper", "kube", "k8s-openapi"];

/// Outside crates a layer must not use: what it would mean is I/O, a
/// Kubernetes client or protobuf in a layer that is meant to know none of them.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("shmesh-api", NEITHER_PROTOBUF_NOR_IO),
    ("shmesh-model", NEITHER_PROTOBUF_NOR_IO),
    ("shmesh-cache", NEITHER_IO_NOR_KUBERNETES),
    ("shmesh-translate", NEITHER_IO_NOR_KUBERNETES),
    ("shmesh-xds", &["kube", "k8s-openapi"]),
];

/// Each workspace package with the names of everything its manifest depends on.
fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    packages
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("package name").to_string();
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .map(|d| d["name"].as_str().expect("dependency name").to_string())
                .collect();
            (name, deps)
        })
        .collect()
}

/// Every dependency in `deps` against the crate map, one line each.
fn violations(deps: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let workspace: BTreeSet<&str> = deps.keys().map(String::as_str).collect();
    let mut allowed: BTreeMap<&str, Vec<&str>> =
        ALLOWED.iter().map(|(k, v)| (*k, v.to_vec())).collect();
    // The fleet simulator may use any crate's public API.
    allowed.insert("shmesh-loadgen", [LIBRARIES, &["shmesh"]].concat());
    let forbidden: BTreeMap<&str, &[&str]> = FORBIDDEN.iter().copied().collect();
    let mut out = Vec::new();
    for (krate, krate_deps) in deps {
        let Some(allowed) = allowed.get(krate.as_str()) else {
            out.push(format!(
                "{krate}: a workspace crate missing from the crate map (tests/architecture.rs, docs/architecture.md)"
            ));
            continue;
        };
        for dep in krate_deps {
            if workspace.contains(dep.as_str()) && !allowed.contains(&dep.as_str()) {
                out.push(format!(
                    "{krate} depends on {dep}: against the data flow (allowed: {allowed:?})"
                ));
            }
            if forbidden
                .get(krate.as_str())
                .is_some_and(|f| f.contains(&dep.as_str()))
            {
                out.push(format!("{krate} depends on {dep}, which it must not know"));
            }
        }
    }
    out
}

#[test]
fn crate_dependencies_follow_the_data_flow() {
    let deps = workspace_dependencies();
    for krate in ALLOWED.iter().map(|(k, _)| *k).chain(["shmesh-loadgen"]) {
        assert!(
            deps.contains_key(krate),
            "{krate} is in the crate map but not in the workspace"
        );
    }
    let broken = violations(&deps);
    assert!(
        broken.is_empty(),
        "forbidden dependencies:\n  {}",
        broken.join("\n  ")
    );
}

#[test]
fn the_check_names_a_dependency_against_the_arrows() {
    // The checker itself, on a workspace where the stream machines reach into
    // translation and the model into Kubernetes.
    let mut deps = workspace_dependencies();
    deps.get_mut("shmesh-xds")
        .expect("shmesh-xds")
        .insert("shmesh-translate".to_string());
    deps.get_mut("shmesh-model")
        .expect("shmesh-model")
        .insert("kube".to_string());
    let broken = violations(&deps);
    assert_eq!(
        broken,
        [
            "shmesh-model depends on kube, which it must not know".to_string(),
            "shmesh-xds depends on shmesh-translate: against the data flow \
             (allowed: [\"shmesh-cache\"])"
                .to_string(),
        ]
    );
}
