//! `/metrics` as Istio's "Istio Control Plane" Grafana dashboard reads it:
//! every series its queries use exists, with samples, once a small fleet of
//! real Envoys has synced, as parsed by Prometheus' own Python client.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::grpc::ensure_python_package;
use common::prometheus::{parse, Samples};
use common::{free_port, http_get, mesh, Envoy, Shmesh};

/// Where a series the dashboard reads comes from.
#[derive(Debug, PartialEq)]
enum Source {
    /// shmesh's `/metrics`.
    Shmesh,
    /// The proxies' own Prometheus endpoint.
    Proxy,
    /// The kubelet's cAdvisor, about the control plane's container.
    Kubelet,
    /// Istio's sidecar injector; shmesh injects nothing.
    Injector,
}

/// Every series named in the queries of istio/istio's
/// `manifests/addons/dashboards/pilot-dashboard.gen.json`, panel by panel.
const DASHBOARD: &[(&str, Source)] = &[
    // Pilot Versions
    ("istio_build", Source::Shmesh),
    // Memory Usage
    ("container_memory_working_set_bytes", Source::Kubelet),
    ("go_memstats_stack_inuse_bytes", Source::Shmesh),
    ("go_memstats_heap_inuse_bytes", Source::Shmesh),
    ("go_memstats_heap_alloc_bytes", Source::Shmesh),
    // Memory Allocations
    ("go_memstats_alloc_bytes_total", Source::Shmesh),
    ("go_memstats_mallocs_total", Source::Shmesh),
    // CPU Usage
    ("container_cpu_usage_seconds_total", Source::Kubelet),
    // Goroutines
    ("go_goroutines", Source::Shmesh),
    // XDS Pushes
    ("pilot_xds_pushes", Source::Shmesh),
    // Events
    ("pilot_k8s_reg_events", Source::Shmesh),
    ("pilot_k8s_cfg_events", Source::Shmesh),
    ("pilot_push_triggers", Source::Shmesh),
    // Connections
    ("envoy_cluster_upstream_cx_active", Source::Proxy),
    ("pilot_xds", Source::Shmesh),
    // Push Errors
    ("pilot_total_xds_rejects", Source::Shmesh),
    ("pilot_total_xds_internal_errors", Source::Shmesh),
    // Push Time
    ("pilot_xds_push_time_bucket", Source::Shmesh),
    // Push Size
    ("pilot_xds_config_size_bytes_bucket", Source::Shmesh),
    // Validation
    ("galley_validation_passed", Source::Shmesh),
    ("galley_validation_failed", Source::Shmesh),
    // Injection
    ("sidecar_injection_success_total", Source::Injector),
    ("sidecar_injection_failure_total", Source::Injector),
];

fn total(samples: &Samples, name: &str) -> f64 {
    samples
        .get(name)
        .map_or(0.0, |v| v.iter().map(|(_, value)| value).sum())
}

#[test]
fn the_control_plane_dashboard_finds_every_series() {
    let work = tempfile::tempdir().expect("dir");
    ensure_python_package(work.path(), "prometheus_client", "prometheus-client");
    let reviews = mesh::ReviewsOnV1::write();
    let shmesh = Shmesh::start(reviews.dir.path());

    // A small fleet: sidecars over delta and SotW, and a gateway.
    let mut sidecars = Vec::new();
    for (node, delta) in [("sidecar-delta", true), ("sidecar-sotw", false)] {
        let listener: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .expect("addr");
        let envoy = Envoy::start(&shmesh.bootstrap(node, "default", listener, delta));
        assert!(envoy.wait_until(Duration::from_secs(20), |_| {
            http_get(listener, "reviews:9080", "/", &[]).is_ok_and(|r| r.status == 200)
        }));
        sidecars.push((envoy, listener));
    }
    let gateway = shmesh.gateway_proxy("default", "istio=ingressgateway", None, true);
    assert!(gateway.wait_live(Duration::from_secs(20)));

    // A change rolls out to the sidecars.
    mesh::write_atomic(
        reviews.dir.path(),
        "vs.yaml",
        &mesh::weighted_vs("v1", &[("v2", 100)]),
    );
    for (envoy, listener) in &sidecars {
        assert!(envoy.wait_until(Duration::from_secs(20), |_| {
            http_get(*listener, "reviews:9080", "/", &[])
                .is_ok_and(|r| r.header("x-upstream") == Some("v2"))
        }));
    }
    let live = shmesh.wait_until(Duration::from_secs(10), |s| {
        s.metric("shmesh_rollout_live_seconds_count") >= 1
    });
    assert!(
        live,
        "the change's rollout was measured: {}\n{}",
        shmesh.admin_get("/debug/rollout").1,
        shmesh.admin_get("/metrics").1
    );

    let (status, text) = shmesh.admin_get("/metrics");
    assert_eq!(status, 200);
    let samples = parse(work.path(), &text);
    let proxy = parse(work.path(), &gateway.admin_get("/stats/prometheus").1);
    for (name, source) in DASHBOARD {
        match source {
            Source::Shmesh => assert!(
                samples.get(*name).is_some_and(|s| !s.is_empty()),
                "{name}: no samples at /metrics"
            ),
            Source::Proxy => assert!(
                proxy.get(*name).is_some_and(|s| !s.is_empty()),
                "{name}: no samples at the gateway's /stats/prometheus"
            ),
            // Not served by the control plane, whichever it is.
            Source::Kubelet | Source::Injector => {
                assert!(!samples.contains_key(*name), "{name} is not shmesh's")
            }
        }
    }

    // The Connections panel sums
    // `envoy_cluster_upstream_cx_active{cluster_name="xds-grpc"}`: the label
    // comes from Istio's stats tags in the proxy's bootstrap, and the
    // gateway holds its ADS connection.
    let xds_connections: f64 = proxy["envoy_cluster_upstream_cx_active"]
        .iter()
        .filter(|(labels, _)| labels.get("cluster_name").map(String::as_str) == Some("xds-grpc"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        xds_connections, 1.0,
        "{:?}",
        proxy["envoy_cluster_upstream_cx_active"]
    );

    // The samples describe the fleet.
    let connected: BTreeMap<String, f64> = samples["pilot_xds"]
        .iter()
        .map(|(labels, v)| (labels["type"].clone(), *v))
        .collect();
    assert_eq!(connected.get("sidecar"), Some(&2.0), "{connected:?}");
    assert_eq!(connected.get("router"), Some(&1.0), "{connected:?}");
    assert!(samples["pilot_xds"]
        .iter()
        .all(|(labels, _)| labels["version"].starts_with("1.")));
    assert_eq!(samples["istio_build"][0].0["component"], "pilot");
    for ty in ["cds", "eds", "lds", "rds"] {
        let pushed = samples["pilot_xds_pushes"]
            .iter()
            .find(|(labels, _)| labels["type"] == ty)
            .map_or(0.0, |(_, v)| *v);
        assert!(pushed >= 3.0, "{ty}: {pushed} pushes to 3 proxies");
    }
    assert!(total(&samples, "pilot_xds_push_time_count") >= 12.0);
    assert!(total(&samples, "pilot_xds_config_size_bytes_sum") > 0.0);
    assert!(total(&samples, "pilot_proxy_convergence_time_count") >= 3.0);
    assert_eq!(total(&samples, "pilot_total_xds_rejects"), 0.0);
    assert!(
        total(&samples, "pilot_k8s_cfg_events") >= 2.0,
        "the VirtualService, added then updated"
    );
    assert!(
        total(&samples, "pilot_k8s_reg_events") >= 3.0,
        "Service, Pods, EndpointSlices"
    );
    assert!(total(&samples, "pilot_push_triggers") >= 1.0);
    assert_eq!(total(&samples, "pilot_virt_services"), 1.0);
    assert!(
        total(&samples, "go_goroutines") >= 3.0,
        "a task per stream at least"
    );
    assert!(total(&samples, "go_memstats_mallocs_total") > 0.0);
    assert!(
        total(&samples, "go_memstats_heap_inuse_bytes")
            >= total(&samples, "go_memstats_heap_alloc_bytes"),
        "live allocations fit in the committed heap"
    );
    assert!(total(&samples, "process_resident_memory_bytes") > 0.0);
}
