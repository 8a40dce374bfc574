//! A replica restarting with `--state-dir`: an object that is invalid when
//! it comes back keeps serving the version served before, traffic through a
//! real Envoy never fails, and `/debug/rollout` does not call anything live
//! until the proxies have come back and applied it.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::xds_client::{SotwClient, CDS, LDS};
use common::{free_port, http_get, mesh, Envoy, HttpClient, Shmesh};

/// A proxy that asks for clusters and listeners and applies what it gets:
/// connected, it has applied everything shmesh sent it.
async fn applying_proxy(xds: SocketAddr, id: &str) -> SotwClient {
    let mut client = SotwClient::connect(xds, id, "default").await;
    for type_url in [CDS, LDS] {
        client.send(type_url, &[], "", "").await;
        let resp = client
            .recv(Duration::from_secs(10))
            .await
            .expect("a response");
        client.ack(&resp, &[]).await;
    }
    // Newer versions may follow; apply them too.
    while let Some(more) = client.recv(Duration::from_millis(300)).await {
        client.ack(&more, &[]).await;
    }
    client
}

const ROLLOUT: &str = "/debug/rollout?kind=VirtualService&namespace=default&name=reviews";

fn problems(shmesh: &Shmesh) -> String {
    shmesh.admin_get("/debug/problems").1
}

/// What a pipeline polling `/debug/rollout` saw: `live`, `acked`, `waiting`.
type Seen = Vec<(bool, Vec<String>, Option<String>)>;

/// Polls the rollout of `reviews` at `admin` until `stop`; answers the
/// server could not give (it was restarting) are left out.
fn poll_rollout(admin: SocketAddr, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(r) = http_get(admin, "shmesh", ROLLOUT, &[]) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body) {
                let acked = v["acked"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|n| n.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let waiting = v["waiting"].as_str().map(str::to_string);
                seen.lock()
                    .unwrap()
                    .push((v["live"] == true, acked, waiting));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_restart_serves_the_last_good_weights_and_waits_for_the_fleet() {
    let reviews = mesh::ReviewsOnV1::write();
    let dir = reviews.dir.path();
    let state = tempfile::tempdir().expect("state dir");
    let state_arg = state.path().to_str().expect("utf-8 path");
    mesh::write_atomic(
        dir,
        "vs.yaml",
        &mesh::weighted_vs("v1", &[("v1", 70), ("v2", 30)]),
    );
    let mut shmesh = Shmesh::start_with(dir, &["--state-dir", state_arg]);
    let listener: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("addr");
    let envoy = Envoy::start(&shmesh.bootstrap("envoy-1", "default", listener, true));
    let split_ready = envoy.wait_until(Duration::from_secs(20), |_| {
        http_get(listener, "reviews:9080", "/", &[])
            .is_ok_and(|r| r.header("x-upstream") == Some("v2"))
    });
    assert!(split_ready, "the 70/30 split reaches Envoy");
    // A second proxy, which will take its time to come back.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let slow = rt.block_on(applying_proxy(shmesh.xds, "slow-1"));
    let fleet_recorded = shmesh.wait_until(Duration::from_secs(10), |_| {
        std::fs::read_to_string(state.path().join("fleet.json"))
            .is_ok_and(|t| t.contains("\"proxies\":2"))
    });
    assert!(fleet_recorded, "the state directory records two proxies");
    assert!(state
        .path()
        .join("last-good/files/VirtualService/default/reviews.json")
        .exists());

    // Steady traffic through Envoy, and a pipeline polling the rollout.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::new()));
    let poller = {
        let (stop, seen, admin) = (stop.clone(), seen.clone(), shmesh.admin);
        std::thread::spawn(move || poll_rollout(admin, stop, seen))
    };
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut client = HttpClient::connect(listener).expect("connect to Envoy");
            let (mut answers, mut failed) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match client.get("reviews:9080", "/", &[]) {
                    Ok(r) if r.status == 200 => {
                        answers.push(r.header("x-upstream").unwrap_or("none").to_string())
                    }
                    Ok(r) => failed.push(format!("status {}", r.status)),
                    Err(e) => failed.push(e),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (answers, failed)
        })
    };

    // The VirtualService turns invalid, and shmesh restarts meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    mesh::write_atomic(
        dir,
        "vs.yaml",
        &mesh::weighted_vs("v1", &[("v1", 70), ("v2", -30)]),
    );
    std::thread::sleep(Duration::from_millis(300));
    shmesh.restart();
    let kept = shmesh.wait_until(Duration::from_secs(10), |s| {
        problems(s).contains("serving its last good version")
    });
    assert!(kept, "/debug/problems says so: {}", problems(&shmesh));
    assert!(
        problems(&shmesh).contains("weight"),
        "the invalid field is still reported: {}",
        problems(&shmesh)
    );
    drop(slow);
    // Envoy is back and has applied the VirtualService, the other proxy is
    // not: a pipeline must not move on.
    let envoy_back = shmesh.wait_until(Duration::from_secs(20), |s| {
        serde_json::from_str::<serde_json::Value>(&s.admin_get(ROLLOUT).1).is_ok_and(|r| {
            r["acked"]
                .as_array()
                .is_some_and(|a| a.contains(&"envoy-1".into()))
        })
    });
    assert!(envoy_back, "{}", shmesh.admin_get(ROLLOUT).1);
    let report: serde_json::Value =
        serde_json::from_str(&shmesh.admin_get(ROLLOUT).1).expect("rollout JSON");
    assert_eq!(report["live"], false, "{report}");
    assert!(
        report["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("1 of the 2 proxies")),
        "{report}"
    );
    let _slow = rt.block_on(applying_proxy(shmesh.xds, "slow-1"));
    let back = shmesh.wait_until(Duration::from_secs(30), |s| {
        let (_, body) = s.admin_get(ROLLOUT);
        body.contains("\"live\": true")
    });
    assert!(
        back,
        "live again once Envoy is back: {}",
        shmesh.admin_get(ROLLOUT).1
    );
    // Traffic after the restart, on the weights served before it.
    let before = seen.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    poller.join().expect("poller");
    let (answers, failed) = traffic.join().expect("traffic");
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(answers.len() >= 400, "{} requests", answers.len());
    let tail = &answers[answers.len() - 400..];
    let v2 = tail.iter().filter(|u| *u == "v2").count();
    assert!(
        (88..=152).contains(&v2),
        "the last good 70/30 split: {v2} of 400 went to v2"
    );
    assert!(tail.iter().all(|u| u == "v1" || u == "v2"));

    // The pipeline never saw `live` without a proxy that has the version.
    let seen = seen.lock().unwrap();
    assert!(seen.len() > before, "polled after the restart");
    for (live, acked, waiting) in seen.iter() {
        if *live {
            assert_eq!(
                acked.len(),
                2,
                "live only once both proxies applied it: {seen:?}"
            );
        } else {
            assert!(waiting.is_some() || acked.is_empty(), "{seen:?}");
        }
    }
}

#[test]
fn an_object_invalid_at_start_without_a_kept_version_is_not_served() {
    let reviews = mesh::ReviewsOnV1::write();
    let dir = reviews.dir.path();
    mesh::write_atomic(
        dir,
        "vs.yaml",
        &mesh::weighted_vs("v1", &[("v1", 70), ("v2", -30)]),
    );
    // No state directory at all.
    let shmesh = Shmesh::start(dir);
    let p = problems(&shmesh);
    assert!(p.contains("not served") && p.contains("--state-dir"), "{p}");
    let (status, _) = shmesh.admin_get(ROLLOUT);
    assert_eq!(status, 404, "the VirtualService is absent");
    drop(shmesh);
    // A state directory that kept nothing of it.
    let state = tempfile::tempdir().expect("state dir");
    let shmesh = Shmesh::start_with(dir, &["--state-dir", state.path().to_str().unwrap()]);
    let p = problems(&shmesh);
    assert!(p.contains("kept no last good version"), "{p}");
    assert_eq!(shmesh.admin_get(ROLLOUT).0, 404);
}

/// A proxy that never comes back after a restart holds rollout up for
/// `--reconnect-grace` only: after it, the proxies that are back decide.
#[test]
fn a_proxy_gone_for_good_holds_rollout_up_for_the_grace_only() {
    let reviews = mesh::ReviewsOnV1::write();
    let state = tempfile::tempdir().expect("state dir");
    let state_arg = state.path().to_str().expect("utf-8 path");
    let mut shmesh = Shmesh::start_with(
        reviews.dir.path(),
        &["--state-dir", state_arg, "--reconnect-grace", "8s"],
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let stays = rt.block_on(applying_proxy(shmesh.xds, "stays-1"));
    let gone = rt.block_on(applying_proxy(shmesh.xds, "gone-1"));
    let fleet_recorded = shmesh.wait_until(Duration::from_secs(10), |_| {
        std::fs::read_to_string(state.path().join("fleet.json"))
            .is_ok_and(|t| t.contains("\"proxies\":2"))
    });
    assert!(fleet_recorded, "the state directory records two proxies");
    drop((stays, gone));
    shmesh.restart();
    let _stays = rt.block_on(applying_proxy(shmesh.xds, "stays-1"));
    let report = || -> serde_json::Value {
        serde_json::from_str(&shmesh.admin_get(ROLLOUT).1).expect("rollout JSON")
    };
    let waiting = report();
    assert_eq!(waiting["live"], false, "{waiting}");
    assert!(
        waiting["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("1 of the 2 proxies")),
        "{waiting}"
    );
    let live = shmesh.wait_until(Duration::from_secs(30), |_| report()["live"] == true);
    let after = report();
    assert!(live, "live once the grace is over: {after}");
    assert_eq!(after["acked"].as_array().map(Vec::len), Some(1), "{after}");
}
