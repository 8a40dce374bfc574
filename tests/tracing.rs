//! Mesh-wide tracing given to `shmesh serve`: a real Envoy sidecar traces
//! every request (sampling 100%) and sends its spans, through the `zipkin`
//! cluster shmesh sends it, to a Zipkin collector (a test HTTP server that
//! takes Zipkin's JSON v2 at `/api/v2/spans`), named for the proxy's
//! service and carrying the custom tags: a literal, a request header and
//! the proxy's environment variable. Also over OTLP from a gateway, and
//! from both sidecars of a request under Istio's capture.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use common::http::http_get_in;
use common::pod_network::{shop_b, PodNetwork, Workload, SHOP_B_VIP};
use common::{
    eventually, free_port, grpc, http_get, mesh, Envoy, EnvoyOptions, HttpClient, Reply, Shmesh,
    Upstream,
};
use shmesh::bootstrap::{bootstrap_json, Options};

/// The spans the collector was sent, in the order they came.
fn spans(collector: &Upstream) -> Vec<Value> {
    collector
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v2/spans")
        .flat_map(|r| {
            let batch: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
                panic!(
                    "not Zipkin JSON ({e}): {}",
                    String::from_utf8_lossy(&r.body)
                )
            });
            batch.as_array().cloned().unwrap_or_default()
        })
        .collect()
}

#[test]
fn sidecars_send_spans_with_custom_tags_to_the_zipkin_collector() {
    let collector = Upstream::start_with("127.0.0.81", "zipkin", |_| Reply::new(202, ""));
    let reviews = mesh::ReviewsOnV1::write();
    let zipkin = collector.addr().to_string();
    let shmesh = Shmesh::start_with(
        reviews.dir.path(),
        &[
            "--tracing-zipkin",
            &zipkin,
            "--tracing-sampling",
            "100",
            "--tracing-tag",
            "mesh=shmesh-test",
            "--tracing-tag",
            "user=header:end-user",
            "--tracing-tag",
            "region=env:SHMESH_TEST_REGION",
        ],
    );

    // A sidecar of productpage, whose Envoy knows its region only from its
    // environment.
    let listener: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let bootstrap = bootstrap_json(&Options {
        node_id: "sidecar~127.0.0.1~productpage-1.default~default.svc.cluster.local".to_string(),
        cluster: Some("productpage.default".to_string()),
        namespace: Some("default".to_string()),
        xds_addrs: vec![shmesh.xds],
        delta: true,
        outbound_listener: Some(listener),
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        labels: Default::default(),
        instance_ip: None,
        credentials: None,
        token: None,
        prometheus_addr: None,
    })
    .expect("bootstrap");
    let envoy = Envoy::start_with(
        &bootstrap,
        EnvoyOptions {
            env: vec![("SHMESH_TEST_REGION".into(), "eu-west-9".into())],
            ..EnvoyOptions::default()
        },
    );
    assert!(envoy.wait_until(Duration::from_secs(20), |_| {
        http_get(listener, "reviews:9080", "/", &[]).is_ok_and(|r| r.status == 200)
    }));

    // Enough requests for Envoy to send a batch (it sends every 5 spans).
    let mut client = HttpClient::connect(listener).expect("connect to the sidecar");
    for _ in 0..10 {
        let r = client
            .get("reviews:9080", "/", &[("end-user", "jason")])
            .expect("request");
        assert_eq!(r.status, 200);
    }
    let arrived = envoy.wait_until(Duration::from_secs(20), |_| {
        spans(&collector)
            .iter()
            .filter(|s| s["tags"]["user"] == "jason")
            .count()
            >= 10
    });
    let spans = spans(&collector);
    assert!(
        arrived,
        "10 spans of jason's requests: {spans:#?}\n{}",
        envoy.log()
    );

    let span = spans
        .iter()
        .find(|s| s["tags"]["user"] == "jason")
        .expect("a span of jason's");
    assert_eq!(span["kind"], "CLIENT", "{span:#}");
    assert_eq!(span["localEndpoint"]["serviceName"], "productpage.default");
    // The span is named as istiod names the route's operation: its one
    // destination's host and port, and the path it matches.
    assert_eq!(span["name"], "reviews.default.svc.cluster.local:9080/*");
    let tags = &span["tags"];
    assert_eq!(tags["mesh"], "shmesh-test");
    assert_eq!(tags["region"], "eu-west-9");
    assert_eq!(tags["http.method"], "GET");
    assert_eq!(tags["http.status_code"], "200");
    assert_eq!(
        tags["upstream_cluster"],
        "outbound|9080|v1|reviews.default.svc.cluster.local"
    );
    assert_eq!(
        span["traceId"].as_str().map(str::len),
        Some(32),
        "128-bit trace ids"
    );

    // What shmesh sent prints as Envoy's JSON, tracer and collector included.
    let (status, dump) = shmesh.admin_get("/debug/config_dump?proxyID=productpage-1.default");
    assert_eq!(status, 200, "{dump}");
    assert!(
        dump.contains("type.googleapis.com/envoy.config.trace.v3.ZipkinConfig")
            && dump.contains(r#""name": "zipkin""#),
        "{dump}"
    );

    // The upstream saw the trace's context (B3), so its own spans join it.
    let traced = reviews.v1.last_request().expect("a request of reviews v1");
    assert!(
        traced.header("x-b3-traceid").is_some(),
        "{:?}",
        traced.headers
    );
}

/// Spans over OTLP to a real OpenTelemetry collector (Python's
/// `opentelemetry-proto` over grpcio), from an ingress gateway: reported
/// for the workload its labels name, as Istio's agent names it, and named
/// for the route's operation.
#[test]
fn gateways_report_their_workload_to_an_opentelemetry_collector() {
    let work = tempfile::tempdir().expect("work dir");
    let (_collector, exports, port) = grpc::start_otlp_collector(work.path(), "127.0.0.82");
    let reviews = mesh::ReviewsOnV1::write();
    let gateway_port = free_port("127.0.0.1");
    mesh::write_atomic(
        reviews.dir.path(),
        "gateway.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: edge, namespace: default}}
spec:
  selector: {{app: istio-ingressgateway}}
  servers:
  - port: {{number: {gateway_port}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: edge-reviews, namespace: default}}
spec:
  hosts: ['*']
  gateways: [edge]
  http:
  - route: [{{destination: {{host: reviews, subset: v1, port: {{number: 9080}}}}}}]
"
        ),
    );
    let otel = format!("127.0.0.82:{port}");
    let shmesh = Shmesh::start_with(
        reviews.dir.path(),
        &["--tracing-otel", &otel, "--tracing-sampling", "100"],
    );
    let gateway = shmesh.gateway_proxy("default", "app=istio-ingressgateway", None, true);
    let listener: SocketAddr = ([127, 0, 0, 1], gateway_port).into();
    assert!(gateway.wait_until(Duration::from_secs(20), |_| {
        http_get(listener, "shop.example.com", "/", &[]).is_ok_and(|r| r.status == 200)
    }));
    let mut client = HttpClient::connect(listener).expect("connect to the gateway");
    for _ in 0..10 {
        let r = client.get("shop.example.com", "/", &[]).expect("request");
        assert_eq!(r.status, 200);
    }

    // Envoy exports its spans every few seconds.
    let exported = |out: &str| -> Vec<Value> {
        out.lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    };
    let spans = |resources: &[Value]| -> Vec<Value> {
        resources
            .iter()
            .flat_map(|r| r["spans"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let arrived = gateway.wait_until(Duration::from_secs(30), |_| {
        spans(&exported(&exports.stdout()))
            .iter()
            .any(|s| s["kind"] == "SPAN_KIND_SERVER")
    });
    let resources = exported(&exports.stdout());
    assert!(
        arrived,
        "spans at the collector: {resources:#?}\n{}\n{}",
        exports.stderr(),
        gateway.log()
    );
    for resource in &resources {
        assert_eq!(
            resource["service"], "istio-ingressgateway.default",
            "{resource:#}"
        );
    }
    let server = spans(&resources)
        .into_iter()
        .find(|s| s["kind"] == "SPAN_KIND_SERVER")
        .expect("the gateway's span of the client's request");
    assert_eq!(
        server["name"], "reviews.default.svc.cluster.local:9080/*",
        "{resources:#?}"
    );
}

/// Under Istio's capture, in real pod network namespaces: a request from
/// pod a to service b is traced by both sidecars, a's outbound span
/// (CLIENT) and b's inbound span (SERVER) in one trace, each reported as
/// its workload (`APP.NAMESPACE`, and istiod's `istio.*` tags) and named
/// for b's route. Needs root
/// (skipped otherwise).
#[test]
fn both_sidecars_of_a_request_trace_it_under_capture() {
    let Some(net) = PodNetwork::create("tracing under capture") else {
        return;
    };
    let a = net.pod("a");
    let b = net.pod("b");
    let dir = tempfile::tempdir().expect("config dir");
    mesh::write_atomic(dir.path(), "shop.yaml", &shop_b(&b.ip.to_string()));
    let node_ip = net.node_ip().to_string();
    let collector = net
        .node()
        .run(|| Upstream::start_with(&node_ip, "zipkin", |_| Reply::new(202, "")));
    let zipkin = collector.addr().to_string();
    let shmesh = Shmesh::start_in(
        net.node(),
        &node_ip,
        dir.path(),
        &["--tracing-zipkin", &zipkin, "--tracing-sampling", "100"],
    );
    let _app_b = b
        .netns
        .run(|| Upstream::start_at(&b.ip.to_string(), 8080, "b"));
    let workload = |app| Workload {
        namespace: "shop",
        labels: app,
        delta: true,
        identity: None,
    };
    let _sidecar_a = net.sidecar(&a, &shmesh, &workload(&[("app", "a")]));
    let sidecar_b = net.sidecar(&b, &shmesh, &workload(&[("app", "b")]));
    let vip: SocketAddr = SHOP_B_VIP.parse().expect("vip");
    eventually("a reaches b through both sidecars", || {
        http_get_in(&a.netns, vip, "b", "/").is_ok_and(|r| r.status == 200)
    });
    for _ in 0..10 {
        let r = http_get_in(&a.netns, vip, "b", "/traced").expect("a → b");
        assert_eq!(r.status, 200);
    }

    let of = |service: &str, kind: &str| -> Vec<Value> {
        spans(&collector)
            .into_iter()
            .filter(|s| s["localEndpoint"]["serviceName"] == service && s["kind"] == kind)
            .collect()
    };
    let arrived = sidecar_b.wait_until(Duration::from_secs(30), |_| {
        !of("a.shop", "CLIENT").is_empty() && !of("b.shop", "SERVER").is_empty()
    });
    let all = spans(&collector);
    assert!(arrived, "spans of both sidecars: {all:#?}");
    let operation = "b.shop.svc.cluster.local:80/*";
    let outbound = of("a.shop", "CLIENT");
    let inbound = of("b.shop", "SERVER");
    assert!(
        outbound
            .iter()
            .chain(&inbound)
            .all(|s| s["name"] == operation),
        "{all:#?}"
    );
    // Each carries istiod's workload tags.
    for (spans, service) in [(&outbound, "a"), (&inbound, "b")] {
        for s in spans {
            assert_eq!(s["tags"]["istio.canonical_service"], service, "{s:#}");
            assert_eq!(s["tags"]["istio.canonical_revision"], "latest", "{s:#}");
            assert_eq!(s["tags"]["istio.namespace"], "shop", "{s:#}");
            assert_eq!(s["tags"]["istio.mesh_id"], "cluster.local", "{s:#}");
        }
    }
    // b's span joins the trace a's sidecar started.
    assert!(
        inbound
            .iter()
            .any(|s| outbound.iter().any(|o| o["traceId"] == s["traceId"])),
        "{all:#?}"
    );
}
