//! The fleet simulator checked on a small fleet against the real `shmesh
//! serve`: 50 clients (delta, then SotW) all sync; an endpoint move and a
//! weight shift reach exactly the clients that should see them; shmesh's
//! own view (`/debug/proxies`) agrees that every stream ACKed what it was
//! sent; and an independent xDS client confirms the changed content.
//! No timing is asserted: performance is measured, not tested.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::xds_client::SotwClient;
use common::{free_port, Shmesh};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use envoy_types::pb::envoy::config::route::v3::{route, route_action, RouteConfiguration};
use prost::Message;
use serde_json::Value;

const CLIENTS: usize = 50;
const NAMESPACES: usize = 3;
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

fn loadgen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shmesh-loadgen"))
        .args(args)
        .output()
        .expect("run shmesh-loadgen");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// 3 namespaces × 4 services × 3 endpoints, 2 VirtualServices.
fn gen_mesh(dir: &Path, scoped: bool) {
    let out = dir.to_str().expect("utf8 path");
    let mut args = vec![
        "gen-mesh",
        "--out",
        out,
        "--namespaces",
        "3",
        "--services",
        "4",
        "--endpoints",
        "3",
        "--virtual-services",
        "2",
    ];
    if scoped {
        args.push("--scoped");
    }
    let (code, stdout, stderr) = loadgen(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("12 services"), "{stdout}");
    // What gen-mesh writes is clean for `shmesh validate`: no errors, no warnings.
    let v = Command::new(common::shmesh_binary())
        .args(["validate", out])
        .output()
        .expect("run shmesh validate");
    let text = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.status.code(), Some(0), "{text}");
    assert!(text.trim().is_empty(), "{text}");
}

/// Runs the fleet with an endpoint move and a weight shift; returns the JSON report.
fn run_fleet(shmesh: &Shmesh, mesh: &Path, api: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let (xds, admin) = (shmesh.xds.to_string(), shmesh.admin.to_string());
    let clients = CLIENTS.to_string();
    let namespaces = NAMESPACES.to_string();
    let (code, stdout, stderr) = loadgen(&[
        "run",
        "--xds",
        &xds,
        "--admin",
        &admin,
        "--clients",
        &clients,
        "--api",
        api,
        "--namespaces",
        &namespaces,
        "--source-ips",
        "127.0.0.2-127.0.0.6",
        "--mesh-dir",
        mesh.to_str().expect("utf8 path"),
        "--change",
        "endpoint,weights",
        "--changes",
        "2",
        "--interval-ms",
        "100",
        "--change-timeout-s",
        "30",
        "--timeout-s",
        "120",
        "--json-out",
        json.to_str().expect("utf8 path"),
    ]);
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no report ({e}); exit {code}\n{stdout}\n{stderr}"));
    let report: Value = serde_json::from_str(&text).expect("report is JSON");
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    report
}

/// Clients are spread round-robin: client i is in ns-(i % NAMESPACES).
fn clients_in(ns: &str) -> usize {
    (0..CLIENTS)
        .filter(|i| format!("ns-{}", i % NAMESPACES) == ns)
        .count()
}

/// Checks the report and returns the changes.
fn check_report(report: &Value, api: &str, scoped: bool) -> Vec<Value> {
    let n = CLIENTS as u64;
    assert_eq!(report["api"], api);
    assert_eq!(report["clients"], n);
    assert_eq!(report["sync"]["done"], n, "{report:#}");
    assert_eq!(report["connect"]["done"], n, "{report:#}");
    assert_eq!(report["errors"]["nacks"], 0, "{report:#}");
    assert_eq!(report["errors"]["reconnects"], 0, "{report:#}");
    let verify = &report["verify"];
    assert_eq!(verify["fleet_streams"], n, "{report:#}");
    assert_eq!(verify["in_sync"], n, "{report:#}");
    assert_eq!(verify["nacked"], 0, "{report:#}");
    let changes = report["changes"].as_array().expect("changes").clone();
    assert_eq!(changes.len(), 2, "{report:#}");
    assert_eq!(changes[0]["kind"], "endpoint");
    assert_eq!(changes[0]["resource_type"], "eds");
    assert_eq!(changes[1]["kind"], "weights");
    assert_eq!(changes[1]["resource_type"], "rds");
    for c in &changes {
        let target = c["target"].as_str().expect("target");
        let ns = target.split('/').next().expect("namespace");
        let expected = if scoped { clients_in(ns) } else { CLIENTS } as u64;
        assert_eq!(c["expected"], expected, "{c:#}");
        assert_eq!(c["converged"], expected, "{c:#}");
        assert_eq!(c["missed"], 0, "{c:#}");
        assert!(c["p99_ms"].as_f64().is_some(), "{c:#}");
    }
    assert_eq!(report["complete"], true);
    changes
}

/// A node of the changed namespace, asking shmesh directly, sees the new
/// endpoint address and the new weights.
fn check_content(shmesh: &Shmesh, changes: &[Value]) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        for c in changes {
            let target = c["target"].as_str().expect("target");
            let (ns, svc) = target.split_once('/').expect("ns/svc");
            let mut client = SotwClient::connect(shmesh.xds, "checker", ns).await;
            let host = format!("{svc}.{ns}.svc.cluster.local");
            if let Some(address) = c["address"].as_str() {
                let cluster = format!("outbound|8080||{host}");
                client.send(EDS, &[&cluster], "", "").await;
                let resp = client.recv(Duration::from_secs(10)).await.expect("EDS response");
                let cla = ClusterLoadAssignment::decode(resp.resources[0].value.as_slice())
                    .expect("ClusterLoadAssignment");
                let addresses: Vec<String> = cla
                    .endpoints
                    .iter()
                    .flat_map(|l| &l.lb_endpoints)
                    .filter_map(|e| match &e.host_identifier {
                        Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => ep.address.clone(),
                        _ => None,
                    })
                    .filter_map(|a| match a.address {
                        Some(envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s)) => {
                            Some(s.address)
                        }
                        _ => None,
                    })
                    .collect();
                assert!(addresses.iter().any(|a| a == address), "{addresses:?} lacks {address}");
                assert_eq!(addresses.len(), 3, "{addresses:?}");
            }
            if let Some(weights) = c["weights"].as_array() {
                let want: Vec<u64> = weights.iter().filter_map(Value::as_u64).collect();
                client.send(RDS, &["http_proxy"], "", "").await;
                let resp = client.recv(Duration::from_secs(10)).await.expect("RDS response");
                let rc = RouteConfiguration::decode(resp.resources[0].value.as_slice())
                    .expect("RouteConfiguration");
                let vhost = rc
                    .virtual_hosts
                    .iter()
                    .find(|v| v.name == format!("{host}:8080"))
                    .unwrap_or_else(|| panic!("no virtual host for {host}"));
                let Some(route::Action::Route(action)) = &vhost.routes[0].action else {
                    panic!("not a route action");
                };
                let Some(route_action::ClusterSpecifier::WeightedClusters(wc)) =
                    &action.cluster_specifier
                else {
                    panic!("not weighted");
                };
                let got: Vec<u64> = wc
                    .clusters
                    .iter()
                    .map(|c| c.weight.as_ref().map_or(0, |w| u64::from(w.value)))
                    .collect();
                assert_eq!(got, want);
            }
        }
    });
}

#[test]
fn fleet_of_50_converges_on_a_namespace_scoped_mesh() {
    let mesh = tempfile::tempdir().expect("tempdir");
    gen_mesh(mesh.path(), true);
    let shmesh = Shmesh::start_with(mesh.path(), &["--debounce", "100ms"]);
    for api in ["delta", "sotw"] {
        let report = run_fleet(&shmesh, mesh.path(), api);
        let changes = check_report(&report, api, true);
        check_content(&shmesh, &changes);
    }
}

#[test]
fn fleet_of_50_converges_when_every_client_sees_the_whole_mesh() {
    let mesh = tempfile::tempdir().expect("tempdir");
    gen_mesh(mesh.path(), false);
    let shmesh = Shmesh::start_with(mesh.path(), &["--debounce", "100ms"]);
    let report = run_fleet(&shmesh, mesh.path(), "delta");
    let changes = check_report(&report, "delta", false);
    check_content(&shmesh, &changes);
}

#[test]
fn fleet_of_50_converges_over_vhds() {
    let mesh = tempfile::tempdir().expect("tempdir");
    gen_mesh(mesh.path(), false);
    let shmesh = Shmesh::start_with(mesh.path(), &["--debounce", "100ms", "--vhds"]);
    // Delta clients fetch their virtual hosts over VHDS; SotW clients of the
    // same server still get whole route configurations.
    for (api, vhds) in [("delta", true), ("sotw", false)] {
        let report = run_fleet(&shmesh, mesh.path(), api);
        let changes = check_report(&report, api, false);
        let hosts = report["traffic"]["vhds"]["resources"].as_u64();
        assert_eq!(hosts.is_some_and(|n| n > 0), vhds, "{report:#}");
        check_content(&shmesh, &changes);
    }
}

/// The fleet's streams each replica lists in `/debug/proxies`.
fn fleet_streams(shmesh: &Shmesh) -> usize {
    let (status, body) = shmesh.admin_get("/debug/proxies");
    assert_eq!(status, 200, "{body}");
    let list: Vec<Value> = serde_json::from_str(&body).expect("JSON");
    list.iter()
        .filter(|p| {
            p["node_id"]
                .as_str()
                .is_some_and(|n| n.starts_with("loadgen-"))
        })
        .count()
}

/// A Deployment scaled from one replica to two: the fleet is all on the
/// first when the second starts, on the same mesh; connections that reach
/// their maximum age (2 s here) reconnect through "the Service" (a replica
/// picked at random), so a few ages later both replicas serve a share,
/// every client in sync on exactly one of them, and the changes made
/// meanwhile reached every client.
#[test]
fn a_fleet_spreads_over_a_replica_added_later_as_connections_age() {
    const N: usize = 30;
    let mesh = tempfile::tempdir().expect("tempdir");
    gen_mesh(mesh.path(), false);
    let flags = [
        "--debounce",
        "100ms",
        "--max-connection-age",
        "2s",
        "--max-connection-age-grace",
        "300ms",
    ];
    let a = Shmesh::start_with(mesh.path(), &flags);
    // The second replica's addresses, known to the fleet before it starts.
    let port = |_| {
        format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .expect("addr")
    };
    let b_addrs: (std::net::SocketAddr, std::net::SocketAddr) = (port(0), port(1));
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let (xds, admin) = (
        format!("{},{}", a.xds, b_addrs.0),
        format!("{},{}", a.admin, b_addrs.1),
    );
    let clients = N.to_string();
    let fleet = Command::new(env!("CARGO_BIN_EXE_shmesh-loadgen"))
        .args([
            "run",
            "--xds",
            &xds,
            "--admin",
            &admin,
            "--clients",
            &clients,
        ])
        .args(["--api", "delta", "--namespaces", "3"])
        .arg("--mesh-dir")
        .arg(mesh.path())
        .args(["--change", "endpoint,weights", "--changes", "3"])
        .args(["--interval-ms", "1500", "--change-timeout-s", "30"])
        .args(["--timeout-s", "120", "--json-out"])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run shmesh-loadgen");
    let all_on_a = a.wait_until(Duration::from_secs(30), |a| fleet_streams(a) == N);
    assert!(all_on_a, "the fleet never connected to the first replica");
    let b = Shmesh::start_on(mesh.path(), &flags, b_addrs);

    let out = fleet.wait_with_output().expect("shmesh-loadgen ends");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no report ({e})\n{stdout}\n{stderr}"));
    let report: Value = serde_json::from_str(&text).expect("report is JSON");
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    eprintln!("{stdout}");
    assert_eq!(report["complete"], true, "{report:#}");
    assert_eq!(report["sync"]["done"], N as u64, "{report:#}");
    assert_eq!(report["errors"]["nacks"], 0, "{report:#}");
    assert_eq!(report["errors"]["stream"], 0, "{report:#}");
    // Every client's stream was ended by its server at least once, and
    // each time the client came back.
    let ended = report["errors"]["server_closed"]
        .as_u64()
        .expect("server_closed");
    assert!(ended >= N as u64, "{report:#}");
    for c in report["changes"].as_array().expect("changes") {
        assert_eq!(c["converged"], N as u64, "{c:#}");
    }
    // At the end, every client is in sync on exactly one replica, and
    // each replica has a share (a client picks either with even odds).
    let verify = &report["verify"];
    assert_eq!(verify["fleet_streams"], N as u64, "{report:#}");
    assert_eq!(verify["in_sync"], N as u64, "{report:#}");
    assert_eq!(verify["duplicates"], 0, "{report:#}");
    let shares: Vec<u64> = verify["per_admin"]
        .as_array()
        .expect("per_admin")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(shares.len(), 2, "{report:#}");
    assert!(shares.iter().all(|&s| s >= N as u64 / 10), "{shares:?}");
    drop(b);
}
