//! Two shmesh replicas serving one config directory, with a short maximum
//! connection age: a real Envoy whose xds-grpc cluster has both replicas as
//! endpoints (`shmesh bootstrap --xds-addr A --xds-addr B`) moves its ADS
//! stream from one to the other as its connections age, keeps serving its
//! configuration meanwhile (not one request fails, the routing stays the
//! same) and, reconnecting with the versions it holds, is sent nothing new.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, http_get, mesh, printed_bootstrap, Envoy, HttpClient, Shmesh};
use serde_json::Value;

const NODE: &str = "productpage-1";

/// Replicas' flags: connections live about 2 s, then 300 ms of grace.
const AGING: [&str; 4] = [
    "--max-connection-age",
    "2s",
    "--max-connection-age-grace",
    "300ms",
];

/// Whether `shmesh` lists the node's stream in `/debug/proxies`.
fn serves_node(shmesh: &Shmesh) -> bool {
    let (status, body) = shmesh.admin_get("/debug/proxies");
    if status != 200 {
        return false;
    }
    let list: Vec<Value> = serde_json::from_str(&body).unwrap_or_default();
    list.iter().any(|p| p["node_id"] == NODE)
}

/// The Envoy counters that move when it applies resources: clusters and
/// listeners added, changed or removed, endpoint and route updates. Not
/// `cluster_manager.cds.update_success` and `listener_manager.lds.*`: those
/// also count the empty answer a delta stream's first request gets.
fn updates(envoy: &Envoy) -> Vec<(String, u64)> {
    let applied = |k: &str| {
        let managers = ["cluster_manager.cluster_", "listener_manager.listener_"];
        let changed = ["added", "modified", "removed"];
        let by_manager = managers
            .iter()
            .any(|m| changed.iter().any(|c| k == format!("{m}{c}")));
        let per_resource = (k.starts_with("cluster.outbound") || k.contains(".rds."))
            && (k.ends_with(".update_success") || k.ends_with(".update_rejected"));
        by_manager || per_resource
    };
    envoy
        .stats()
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| applied(k))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
        .collect()
}

/// Envoy's connections to each xds-grpc endpoint, from `/clusters`.
fn connections_per_replica(envoy: &Envoy, replicas: [SocketAddr; 2]) -> [u64; 2] {
    let (status, body) = envoy.admin_get("/clusters");
    assert_eq!(status, 200, "{body}");
    replicas.map(|addr| {
        let key = format!("xds-grpc::{addr}::cx_total::");
        body.lines()
            .find_map(|l| l.strip_prefix(&key)?.trim().parse().ok())
            .unwrap_or(0)
    })
}

fn moves_between_replicas(delta: bool) {
    let reviews = mesh::ReviewsOnV1::write();
    let a = Shmesh::start_with(reviews.dir.path(), &AGING);
    let b = Shmesh::start_with(reviews.dir.path(), &AGING);
    let listener: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("addr");
    let bootstrap = printed_bootstrap(
        Command::new(common::shmesh_binary())
            .args(["bootstrap", "--node", NODE, "--namespace", "default"])
            .args(["--xds-addr", &a.xds.to_string()])
            .args(["--xds-addr", &b.xds.to_string()])
            .args(["--outbound-listener", &listener.to_string()])
            .args(["--admin-addr", "127.0.0.1:0", "--prometheus-addr", "none"])
            .args(["--api", if delta { "delta" } else { "sotw" }]),
    );
    let envoy = Envoy::start(&bootstrap);
    let routed = envoy.wait_until(Duration::from_secs(20), |_| {
        http_get(listener, "reviews:9080", "/", &[])
            .is_ok_and(|r| r.status == 200 && r.header("x-upstream") == Some("v1"))
    });
    assert!(
        routed,
        "traffic never flowed through Envoy\n{}",
        envoy.log()
    );
    let before = updates(&envoy);
    assert!(
        before.iter().any(|(k, _)| k.contains(".rds.")),
        "no route update counters: {before:?}"
    );

    // Steady traffic on one keep-alive connection for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let load = {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        std::thread::spawn(move || {
            let mut client = HttpClient::connect(listener).expect("connect to Envoy");
            while !stop.load(Ordering::Relaxed) {
                match client.get("reviews:9080", "/", &[]) {
                    Ok(r) if r.status == 200 && r.header("x-upstream") == Some("v1") => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.lock().expect("lock").push(format!(
                        "status {} from {:?}",
                        r.status,
                        r.header("x-upstream")
                    )),
                    Err(e) => failures.lock().expect("lock").push(e),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            client.connects()
        })
    };

    // Which replica serves the node, each time it changes; until it has
    // moved twice (bounded: a move takes a connection age).
    let mut holders: Vec<&str> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while holders.len() < 3 && Instant::now() < deadline {
        let now = match (serves_node(&a), serves_node(&b)) {
            (true, false) => Some("A"),
            (false, true) => Some("B"),
            _ => None,
        };
        if let Some(now) = now {
            if holders.last() != Some(&now) {
                holders.push(now);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Envoy is connected again when the run ends.
    let connected = envoy.wait_until(Duration::from_secs(10), |e| {
        e.stat("control_plane.connected_state") == Some(1)
    });
    stop.store(true, Ordering::Relaxed);
    let connects = load.join().expect("load thread");
    assert!(
        holders.len() >= 3,
        "the ADS stream did not move twice between replicas: {holders:?}\n{}",
        envoy.log()
    );
    assert!(connected, "Envoy did not reconnect\n{}", envoy.log());

    let failures = failures.lock().expect("lock");
    let ok = ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(
        ok > 100,
        "too little traffic to prove anything: {ok} requests"
    );
    // The listener was never replaced: the client's connection lived on.
    assert_eq!(connects, 1, "the client had to reconnect to Envoy");

    // Envoy saw each replica's GOAWAY and connected to both.
    let closed_by_goaway = envoy
        .stat("cluster.xds-grpc.upstream_cx_close_notify")
        .unwrap_or(0);
    assert!(closed_by_goaway >= 2, "GOAWAYs seen: {closed_by_goaway}");
    let per_replica = connections_per_replica(&envoy, [a.xds, b.xds]);
    assert!(
        per_replica.iter().all(|&n| n >= 1),
        "connections per replica: {per_replica:?}"
    );
    // Reconnecting with the versions it held, Envoy was sent nothing new.
    assert_eq!(
        updates(&envoy),
        before,
        "configuration updates after moving"
    );
    eprintln!(
        "holders {holders:?}, {ok} requests, GOAWAYs {closed_by_goaway}, connections per replica {per_replica:?}"
    );
}

#[test]
fn a_delta_envoy_moves_between_replicas_without_failing_a_request() {
    moves_between_replicas(true);
}

#[test]
fn a_sotw_envoy_moves_between_replicas_without_failing_a_request() {
    moves_between_replicas(false);
}
