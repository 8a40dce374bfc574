//! A directory laid out as a Kubernetes ConfigMap volume: files are symlinks
//! into `..data/`, and an update swaps the `..data` symlink atomically. shmesh
//! must see the swap as a change and push it without a restart.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, http_get, mesh, Envoy, Shmesh, Upstream};

/// Writes a new ConfigMap "version" directory and swaps `..data` to it.
fn publish(root: &Path, version: &str, files: &[(&str, &str)]) {
    let dir = root.join(format!("..{version}"));
    std::fs::create_dir(&dir).expect("version dir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write");
        let link = root.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).expect("file link");
        }
    }
    let tmp = root.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("data link");
    std::fs::rename(&tmp, root.join("..data")).expect("swap ..data");
}

#[test]
fn configmap_symlink_swap_is_served_live() {
    let v1 = Upstream::start("127.0.0.11", "v1");
    let v2 = Upstream::start("127.0.0.12", "v2");
    let mesh_text = mesh::reviews(&[("v1", v1.addr()), ("v2", v2.addr())]);
    let root = tempfile::tempdir().expect("configmap dir");
    publish(
        root.path(),
        "2026_11_21_00_00_00.1",
        &[
            ("mesh.yaml", &mesh_text),
            ("vs.yaml", &mesh::weighted_vs("v1", &[("v1", 100)])),
        ],
    );
    let shmesh = Shmesh::start(root.path());
    let listener: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("addr");
    let envoy = Envoy::start(&shmesh.bootstrap("cm-1", "default", listener, true));
    let first = envoy.wait_until(Duration::from_secs(20), |_| {
        http_get(listener, "reviews:9080", "/", &[])
            .is_ok_and(|r| r.header("x-upstream") == Some("v1"))
    });
    assert!(first, "traffic never reached v1\n{}", shmesh.log());

    publish(
        root.path(),
        "2026_11_21_00_01_00.2",
        &[
            ("mesh.yaml", &mesh_text),
            ("vs.yaml", &mesh::weighted_vs("v1", &[("v2", 100)])),
        ],
    );
    let swapped = Instant::now();
    let moved = envoy.wait_until(Duration::from_secs(10), |_| {
        http_get(listener, "reviews:9080", "/", &[])
            .is_ok_and(|r| r.header("x-upstream") == Some("v2"))
    });
    assert!(moved, "the ..data swap was not picked up\n{}", shmesh.log());
    // File events, not the periodic rescan, should carry the change.
    assert!(
        swapped.elapsed() < Duration::from_secs(3),
        "took {:?}",
        swapped.elapsed()
    );
}
