//! Push pacing with a proxy that never ACKs: it may keep its push slot for
//! `--push-ack-timeout` once, and never again while it stays behind, so a
//! real Envoy keeps following every change even with a single slot.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::xds_client::{SotwClient, CDS};
use common::{free_port, http_get, mesh, Envoy, Shmesh};

fn ack_timeouts(shmesh: &Shmesh) -> u64 {
    let (status, body) = shmesh.admin_get("/metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix("shmesh_xds_push_ack_timeouts_total "))
        .expect("push ACK timeout counter")
        .trim()
        .parse()
        .expect("a count")
}

fn extra_service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ports:\n  - {{name: http, port: 80}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_never_acks_holds_up_the_others_once_at_most() {
    let reviews = mesh::ReviewsOnV1::write();
    let dir = &reviews.dir;
    // One slot: a stream holding it holds up every other.
    let shmesh = Shmesh::start_with(
        dir.path(),
        &["--push-slots", "1", "--push-ack-timeout", "1s"],
    );

    // A proxy takes its clusters and never ACKs them: it keeps the slot
    // until its time runs out.
    let mut stuck = SotwClient::connect(shmesh.xds, "stuck-1", "default").await;
    stuck.send(CDS, &[], "", "").await;
    stuck
        .recv(Duration::from_secs(10))
        .await
        .expect("CDS response");
    assert!(shmesh.wait_until(Duration::from_secs(10), |s| ack_timeouts(s) == 1));

    let listener: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("addr");
    let envoy = Envoy::start(&shmesh.bootstrap("envoy-1", "default", listener, true));
    let routes_to = |subset: &str| {
        envoy.wait_until(Duration::from_secs(20), |_| {
            http_get(listener, "reviews:9080", "/", &[])
                .is_ok_and(|r| r.header("x-upstream") == Some(subset))
        })
    };
    assert!(routes_to("v1"));

    // Each change reaches Envoy, and the stuck proxy is sent the clusters it
    // watches, still without ACKing anything.
    for (i, subset) in ["v2", "v1", "v2"].into_iter().enumerate() {
        let name = format!("extra-{i}");
        mesh::write_atomic(dir.path(), &format!("{name}.yaml"), &extra_service(&name));
        mesh::write_atomic(
            dir.path(),
            "vs.yaml",
            &mesh::weighted_vs("v1", &[(subset, 100)]),
        );
        assert!(routes_to(subset), "change {i}: Envoy still not on {subset}");
        let cluster = format!("outbound|80||{name}.default.svc.cluster.local");
        let mut got = false;
        while let Some(resp) = stuck.recv(Duration::from_secs(10)).await {
            assert_eq!(resp.type_url, CDS);
            got = resp.resources.iter().any(|r| {
                r.value
                    .windows(cluster.len())
                    .any(|w| w == cluster.as_bytes())
            });
            if got {
                break;
            }
        }
        assert!(got, "the stuck proxy was not sent {cluster}");
    }
    // Had the stuck proxy's stream taken the slot again for any of these
    // changes, that slot's time would have run out too by now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(ack_timeouts(&shmesh), 1, "{}", shmesh.log());
}
