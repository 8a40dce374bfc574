//! Rollout tracking: which proxies have applied the current version of a
//! VirtualService, as the admin server reports it for pipelines that poll.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::xds_client::{SotwClient, CDS, LDS};
use common::{free_port, http_get, mesh, Envoy, Shmesh};

fn rollout(shmesh: &Shmesh) -> serde_json::Value {
    let (status, body) =
        shmesh.admin_get("/debug/rollout?kind=VirtualService&namespace=default&name=reviews");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("rollout JSON")
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_waits_for_every_proxy() {
    let reviews = mesh::ReviewsOnV1::write();
    let dir = &reviews.dir;
    let shmesh = Shmesh::start(dir.path());
    let listener: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("addr");
    let envoy = Envoy::start(&shmesh.bootstrap("envoy-1", "default", listener, true));
    assert!(envoy.wait_until(Duration::from_secs(20), |_| {
        http_get(listener, "reviews:9080", "/", &[]).is_ok_and(|r| r.status == 200)
    }));
    let live = shmesh.wait_until(Duration::from_secs(10), |s| rollout(s)["live"] == true);
    assert!(live, "{}", rollout(&shmesh));
    assert_eq!(names(&rollout(&shmesh)["acked"]), vec!["envoy-1"]);

    // A second proxy that takes the configuration but never ACKs it.
    let mut stuck = SotwClient::connect(shmesh.xds, "stuck-1", "default").await;
    stuck.send(CDS, &[], "", "").await;
    let cds = stuck
        .recv(Duration::from_secs(10))
        .await
        .expect("CDS response");
    assert!(!cds.resources.is_empty());
    stuck.send(LDS, &[], "", "").await;
    let lds = stuck
        .recv(Duration::from_secs(10))
        .await
        .expect("LDS response");
    let report = rollout(&shmesh);
    assert_eq!(report["live"], false, "{report}");
    assert_eq!(names(&report["pending"]), vec!["stuck-1"]);
    assert_eq!(names(&report["acked"]), vec!["envoy-1"]);

    // The VirtualService changes: Envoy applies it, the stuck proxy does not.
    mesh::write_atomic(
        dir.path(),
        "vs.yaml",
        &mesh::weighted_vs("v1", &[("v2", 100)]),
    );
    let moved = envoy.wait_until(Duration::from_secs(10), |_| {
        http_get(listener, "reviews:9080", "/", &[])
            .is_ok_and(|r| r.header("x-upstream") == Some("v2"))
    });
    assert!(moved);
    let report = rollout(&shmesh);
    assert_eq!(report["live"], false, "{report}");
    assert_eq!(names(&report["pending"]), vec!["stuck-1"]);

    // Once it ACKs what it was sent (CDS and LDS; it asks for no routes), the change is live everywhere.
    stuck.ack(&cds, &[]).await;
    stuck.ack(&lds, &[]).await;
    // It may be sent newer listeners or clusters meanwhile; ACK whatever comes.
    while let Some(more) = stuck.recv(Duration::from_millis(300)).await {
        stuck.ack(&more, &[]).await;
    }
    let live = shmesh.wait_until(Duration::from_secs(10), |s| rollout(s)["live"] == true);
    let report = rollout(&shmesh);
    assert!(live, "{report}");
    assert_eq!(names(&report["acked"]), vec!["envoy-1", "stuck-1"]);

    let (status, _) =
        shmesh.admin_get("/debug/rollout?kind=VirtualService&namespace=default&name=nope");
    assert_eq!(status, 404);
}
