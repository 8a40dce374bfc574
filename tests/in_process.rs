//! shmesh run in-process through `app::build`, as an embedding program or a
//! test would: it serves the bundled example on the ports it bound, and its
//! shutdown drains: connected proxies' streams end and the port closes.

mod common;

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use common::xds_client::{SotwClient, CDS};
use shmesh::config::{Cli, Command};

const WAIT: Duration = Duration::from_secs(10);

fn serve_args(args: &[&str]) -> shmesh::config::ServeArgs {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bookinfo");
    let mut argv = vec![
        "shmesh",
        "serve",
        "--config-dir",
        example.to_str().expect("utf-8 path"),
        "--xds-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv).expect("valid arguments").command {
        Command::Serve(args) => args,
        other => panic!("not serve: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_example_and_drains_on_shutdown() {
    let bound = shmesh::app::build(serve_args(&[]))
        .await
        .expect("shmesh starts");
    assert_ne!(bound.xds_addr.port(), 0, "a real port was bound");

    let mut client = SotwClient::connect(bound.xds_addr, "in-process", "default").await;
    client.send(CDS, &[], "", "").await;
    let clusters = client.recv(WAIT).await.expect("a CDS response");
    let names: Vec<String> = clusters
        .resources
        .iter()
        .map(|any| {
            use prost::Message;
            envoy_types::pb::envoy::config::cluster::v3::Cluster::decode(any.value.as_slice())
                .expect("a cluster")
                .name
        })
        .collect();
    assert!(
        names.contains(&"outbound|9080|v1|reviews.default.svc.cluster.local".to_string()),
        "{names:?}"
    );
    client.ack(&clusters, &[]).await;
    assert_eq!(bound.registry.list().len(), 1, "the stream is registered");

    let xds_addr = bound.xds_addr;
    tokio::time::timeout(WAIT, bound.shutdown())
        .await
        .expect("shutdown drains within its grace period");
    assert!(client.ended(WAIT).await, "the proxy's stream was ended");
    assert!(
        tokio::net::TcpStream::connect(xds_addr).await.is_err(),
        "the xDS port is closed"
    );
}

/// A connection past its maximum age is told to go, and once its grace is
/// over its ADS stream ends with UNAVAILABLE, so the proxy reconnects; a new
/// connection is served as before, and the proxy, saying which version it
/// holds, is sent nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_its_maximum_age_is_closed_after_its_grace() {
    let bound = shmesh::app::build(serve_args(&[
        "--max-connection-age",
        "300ms",
        "--max-connection-age-grace",
        "200ms",
    ]))
    .await
    .expect("shmesh starts");
    let mut client = SotwClient::connect(bound.xds_addr, "aging", "default").await;
    client.send(CDS, &[], "", "").await;
    let clusters = client.recv(WAIT).await.expect("a CDS response");
    client.ack(&clusters, &[]).await;
    let status = client.end_status(WAIT).await.expect("the stream ends");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("maximum age"), "{status:?}");

    // Back with the version it holds: served, and sent nothing new.
    let mut again = SotwClient::connect(bound.xds_addr, "aging", "default").await;
    again.send(CDS, &[], &clusters.version_info, "").await;
    let holds = || {
        bound
            .registry
            .list()
            .iter()
            .any(|p| p.node_id == "aging" && p.acked.get("cds") == Some(&clusters.version_info))
    };
    for _ in 0..100 {
        if holds() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(holds(), "{:?}", bound.registry.list());
    assert!(
        again.recv(Duration::from_millis(100)).await.is_none(),
        "the clusters it holds were sent again"
    );
    bound.shutdown().await;
}

#[test]
fn the_maximum_connection_age_is_istiods_and_can_be_turned_off() {
    let age = |extra: &[&str]| serve_args(extra).max_connection_age;
    assert_eq!(age(&[]), Some(Duration::from_secs(30 * 60)));
    assert_eq!(
        serve_args(&[]).max_connection_age_grace,
        Duration::from_secs(10)
    );
    assert_eq!(
        age(&["--max-connection-age", "2s"]),
        Some(Duration::from_secs(2))
    );
    assert_eq!(age(&["--max-connection-age", "0"]), None);
    assert_eq!(age(&["--max-connection-age", "off"]), None);
    let bad = Cli::try_parse_from(["shmesh", "serve", "--max-connection-age", "soon"])
        .expect_err("an error");
    assert!(bad.to_string().contains("--max-connection-age"), "{bad}");
}

#[tokio::test]
async fn refuses_to_start_with_nothing_to_serve() {
    let args = match Cli::try_parse_from(["shmesh", "serve"])
        .expect("valid arguments")
        .command
    {
        Command::Serve(args) => args,
        other => panic!("not serve: {other:?}"),
    };
    let err = shmesh::app::build(args).await.err().expect("an error");
    assert!(err.to_string().contains("nothing to serve"), "{err}");
}
