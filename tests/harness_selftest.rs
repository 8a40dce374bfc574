//! Self-test of the integration-test harness in `tests/common`: a static
//! (no xDS) Envoy routes by Host header to two test upstreams.

mod common;

use std::time::Duration;

use common::{free_port, http_get, Envoy, HttpClient, Upstream};
use serde_json::json;

const LISTENER: &str = "selftest_listener";

/// A STATIC cluster with a single endpoint at `upstream`.
fn static_cluster(name: &str, upstream: &Upstream) -> serde_json::Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{
                "lb_endpoints": [{
                    "endpoint": {
                        "address": {
                            "socket_address": {
                                "address": upstream.addr().ip().to_string(),
                                "port_value": upstream.addr().port()
                            }
                        }
                    }
                }]
            }]
        }
    })
}

fn bootstrap(listen_port: u16, a: &Upstream, b: &Upstream) -> serde_json::Value {
    json!({
        "node": {"id": "selftest", "cluster": "selftest"},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}
        },
        "static_resources": {
            "listeners": [{
                "name": LISTENER,
                "address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": listen_port}
                },
                "filter_chains": [{
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "selftest",
                            "route_config": {
                                "name": "selftest_routes",
                                "virtual_hosts": [
                                    {
                                        "name": "a",
                                        "domains": ["a.test"],
                                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "cluster_a"}}]
                                    },
                                    {
                                        "name": "b",
                                        "domains": ["b.test"],
                                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "cluster_b"}}]
                                    }
                                ]
                            },
                            "http_filters": [{
                                "name": "envoy.filters.http.router",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                }
                            }]
                        }
                    }]
                }]
            }],
            "clusters": [static_cluster("cluster_a", a), static_cluster("cluster_b", b)]
        }
    })
}

#[test]
fn static_envoy_routes_by_host_to_test_upstreams() {
    let a = Upstream::start("127.0.0.11", "upstream-a");
    let b = Upstream::start("127.0.0.12", "upstream-b");
    let port = free_port("127.0.0.1");
    let envoy = Envoy::start(&bootstrap(port, &a, &b));
    let proxy = std::net::SocketAddr::from(([127, 0, 0, 1], port));

    // A static bootstrap has nothing to wait for: the server goes LIVE.
    assert!(
        envoy.wait_live(Duration::from_secs(10)),
        "Envoy not LIVE: {:?}",
        envoy.admin_get("/ready")
    );
    assert_eq!(envoy.listener_addr(LISTENER), Some(proxy));

    for (host, upstream) in [("a.test", &a), ("b.test", &b)] {
        for i in 0..20 {
            let path = format!("/req/{i}");
            let response = http_get(proxy, host, &path, &[("x-test", "selftest")])
                .unwrap_or_else(|e| panic!("request {i} to {host} failed: {e}"));
            assert_eq!(response.status, 200, "{host} {path}: {response:?}");
            assert_eq!(
                response.header("x-upstream"),
                Some(upstream.name()),
                "{host} {path}: {response:?}"
            );
            assert_eq!(response.body, upstream.name());
        }
    }
    assert_eq!(a.hits(), 20, "hits on upstream a");
    assert_eq!(b.hits(), 20, "hits on upstream b");
    let last = a.last_request().expect("upstream a recorded a request");
    assert_eq!(last.path, "/req/19");
    assert_eq!(last.header("host"), Some("a.test"));
    assert_eq!(last.header("x-test"), Some("selftest"));

    // Keep-alive client: many requests over one downstream connection.
    let mut client = HttpClient::connect(proxy).expect("connect keep-alive client to Envoy");
    for i in 0..10 {
        let response = client
            .get("b.test", "/keepalive", &[])
            .unwrap_or_else(|e| panic!("keep-alive request {i} failed: {e}"));
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-upstream"), Some("upstream-b"));
    }
    assert_eq!(client.connects(), 1, "keep-alive client reconnected");
    assert_eq!(b.hits(), 30);

    // Unknown host: Envoy answers 404 itself.
    let response = http_get(proxy, "nope.test", "/", &[]).expect("request to unknown host");
    assert_eq!(response.status, 404);

    // Admin helpers.
    let dump = envoy.config_dump();
    let listener_names: Vec<&str> = dump["configs"]
        .as_array()
        .expect("config_dump has a configs array")
        .iter()
        .filter(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with("ListenersConfigDump"))
        })
        .flat_map(|c| c["static_listeners"].as_array().into_iter().flatten())
        .filter_map(|l| l["listener"]["name"].as_str())
        .collect();
    assert_eq!(listener_names, vec![LISTENER], "listeners in config_dump");
    assert_eq!(
        envoy.stat("cluster.cluster_a.upstream_rq_total"),
        Some(20),
        "cluster_a stats"
    );
    assert!(envoy.stats().contains("http.selftest.downstream_rq_total"));
    assert!(envoy.wait_until(Duration::from_secs(2), |e| e.admin_get("/ready").0 == 200));
}
