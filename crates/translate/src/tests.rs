//! Translation tests: objects in, Envoy protos out, compared with values built
//! here.

use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::{self as c, cluster};
use envoy_types::pb::envoy::config::endpoint::v3 as e;
use envoy_types::pb::envoy::config::route::v3::{self as r, route_action};
use prost::Message;

use super::*;
use shmesh_api::parse::{parse_text, Outcome};
use shmesh_cache::ResourceType;
use shmesh_model::{Change, Model};

pub(crate) fn model(yaml: &str) -> Model {
    let mut m = Model::new();
    let changes: Vec<Change> = parse_text("test.yaml", yaml)
        .into_iter()
        .map(|o| match o {
            Outcome::Object(p) => Change::Upsert(p.key, p.object, p.origin),
            other => panic!("fixture must be valid: {other:?}"),
        })
        .collect();
    m.apply(changes);
    m
}

pub(crate) fn view(ns: &str) -> ProxyView {
    ProxyView {
        namespace: ns.into(),
        mode: ListenerMode::Capture,
        vhds: false,
        labels: Default::default(),
        certificates: Default::default(),
    }
}

pub(crate) fn decode<M: Message + Default>(snap: &Snapshot, ty: ResourceType, name: &str) -> M {
    let r = snap.get(ty).get(name).unwrap_or_else(|| {
        panic!(
            "{name} missing; have {:?}",
            snap.get(ty).names().collect::<Vec<_>>()
        )
    });
    M::decode(r.body.as_ref()).expect("decode")
}

const REVIEWS: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  selector: {app: reviews}\n  ports: [{name: http, port: 9080, targetPort: 9080}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: r1, namespace: default, labels: {app: reviews, version: v1}}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: r2, namespace: default, labels: {app: reviews, version: v2}}\nstatus: {podIP: 10.0.0.2}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec:\n  host: reviews\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n";

fn route_of(snap: &Snapshot, port: &str, vhost: &str) -> Vec<r::Route> {
    let rc: r::RouteConfiguration = decode(snap, ResourceType::Route, port);
    rc.virtual_hosts
        .into_iter()
        .find(|v| v.name == vhost)
        .unwrap_or_else(|| panic!("no virtual host {vhost}"))
        .routes
}

fn action(route: &r::Route) -> &r::RouteAction {
    match route.action.as_ref() {
        Some(r::route::Action::Route(a)) => a,
        other => panic!("not a route action: {other:?}"),
    }
}

#[test]
fn default_route_has_istio_defaults() {
    let snap = build(&model(REVIEWS), &view("default"));
    let routes = route_of(&snap, "9080", "reviews.default.svc.cluster.local:9080");
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].name, "default");
    let a = action(&routes[0]);
    assert_eq!(
        a.cluster_specifier,
        Some(route_action::ClusterSpecifier::Cluster(
            "outbound|9080||reviews.default.svc.cluster.local".into()
        ))
    );
    assert_eq!(a.timeout, Some(duration(std::time::Duration::ZERO)));
    let retry = a.retry_policy.as_ref().expect("Istio retries by default");
    assert_eq!(retry.num_retries, Some(u32_value(2)));
    assert_eq!(
        retry.retry_on,
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    );
    assert_eq!(retry.retriable_status_codes, vec![503]);
}

#[test]
fn weighted_destinations_become_weighted_clusters() {
    let vs = "---\napiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n  - name: split\n    route:\n    - {destination: {host: reviews, subset: v1}, weight: 50}\n    - {destination: {host: reviews, subset: v2}, weight: 40}\n    - {destination: {host: reviews, subset: v2}, weight: 0}\n    timeout: 2s\n    retries: {attempts: 0}\n";
    let snap = build(&model(&format!("{REVIEWS}{vs}")), &view("default"));
    let routes = route_of(&snap, "9080", "reviews.default.svc.cluster.local:9080");
    assert_eq!(routes[0].name, "split");
    let a = action(&routes[0]);
    let expected = r::WeightedCluster {
        clusters: vec![
            r::weighted_cluster::ClusterWeight {
                name: "outbound|9080|v1|reviews.default.svc.cluster.local".into(),
                weight: Some(u32_value(50)),
                ..Default::default()
            },
            r::weighted_cluster::ClusterWeight {
                name: "outbound|9080|v2|reviews.default.svc.cluster.local".into(),
                weight: Some(u32_value(40)),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    assert_eq!(
        a.cluster_specifier,
        Some(route_action::ClusterSpecifier::WeightedClusters(expected))
    );
    assert_eq!(a.timeout, Some(duration(std::time::Duration::from_secs(2))));
    assert_eq!(a.retry_policy, None, "attempts: 0 disables retries");
}

#[test]
fn matches_translate_to_envoy_matchers() {
    let vs = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  http:\n  - name: jason\n    match:\n    - name: m1\n      uri: {prefix: /api}\n      headers: {End-User: {exact: jason}}\n      withoutHeaders: {x-debug: {}}\n      queryParams: {v: {regex: \"[0-9]+\"}}\n      method: {exact: GET}\n    - port: 9999\n    route: [{destination: {host: reviews, subset: v2}}]\n";
    let snap = build(&model(&format!("{REVIEWS}{vs}")), &view("default"));
    let routes = route_of(&snap, "9080", "reviews.default.svc.cluster.local:9080");
    assert_eq!(
        routes.len(),
        1,
        "the port-9999 match does not apply on 9080"
    );
    assert_eq!(routes[0].name, "jason.m1");
    let m = routes[0].r#match.as_ref().expect("match");
    assert_eq!(
        m.path_specifier,
        Some(r::route_match::PathSpecifier::Prefix("/api".into()))
    );
    let names: Vec<(&str, bool)> = m
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.invert_match))
        .collect();
    assert_eq!(
        names,
        vec![("end-user", false), ("x-debug", true), (":method", false)]
    );
    assert_eq!(m.query_parameters[0].name, "v");
}

#[test]
fn source_labels_matches_apply_to_the_proxies_of_the_workloads_they_name() {
    let vs = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n  - name: from-productpage-v2\n    match: [{sourceLabels: {app: productpage, version: v2}}]\n    route: [{destination: {host: reviews, subset: v2}}]\n  - name: rest\n    route: [{destination: {host: reviews, subset: v1}}]\n";
    let m = model(&format!("{REVIEWS}{vs}"));
    let names = |labels: &[(&str, &str)]| -> Vec<String> {
        let v = ProxyView {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..view("default")
        };
        route_of(
            &build(&m, &v),
            "9080",
            "reviews.default.svc.cluster.local:9080",
        )
        .iter()
        .map(|r| r.name.clone())
        .collect()
    };
    assert_eq!(
        names(&[
            ("app", "productpage"),
            ("version", "v2"),
            ("pod-template-hash", "x")
        ]),
        vec!["from-productpage-v2", "rest"]
    );
    assert_eq!(
        names(&[("app", "productpage"), ("version", "v1")]),
        vec!["rest"]
    );
    assert_eq!(names(&[]), vec!["rest"]);
}

#[test]
fn subsets_get_their_own_clusters_and_endpoints() {
    let snap = build(&model(REVIEWS), &view("default"));
    for (name, expected_ips) in [
        (
            "outbound|9080||reviews.default.svc.cluster.local",
            vec!["10.0.0.1", "10.0.0.2"],
        ),
        (
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            vec!["10.0.0.1"],
        ),
        (
            "outbound|9080|v2|reviews.default.svc.cluster.local",
            vec!["10.0.0.2"],
        ),
    ] {
        let cl: c::Cluster = decode(&snap, ResourceType::Cluster, name);
        assert_eq!(cl.lb_policy, cluster::LbPolicy::LeastRequest as i32);
        assert_eq!(
            cl.eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.as_str()),
            Some(name)
        );
        let cla: e::ClusterLoadAssignment = decode(&snap, ResourceType::Endpoint, name);
        let ips: Vec<String> = cla
            .endpoints
            .iter()
            .flat_map(|l| &l.lb_endpoints)
            .filter_map(|lb| match &lb.host_identifier {
                Some(e::lb_endpoint::HostIdentifier::Endpoint(ep)) => ep.address.clone(),
                _ => None,
            })
            .filter_map(|a| match a.address {
                Some(
                    envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s),
                ) => Some(s.address),
                _ => None,
            })
            .collect();
        assert_eq!(ips, expected_ips, "{name}");
    }
}

#[test]
fn traffic_policy_maps_to_cluster_settings() {
    let dr = REVIEWS.replace(
        "  host: reviews\n  subsets:",
        "  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    connectionPool:\n      tcp: {maxConnections: 7, connectTimeout: 250ms}\n      http: {http1MaxPendingRequests: 3, maxRetries: 4}\n    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 1m, maxEjectionPercent: 50}\n  subsets:",
    )
    .replace("  - {name: v2, labels: {version: v2}}", "  - name: v2\n    labels: {version: v2}\n    trafficPolicy:\n      loadBalancer: {consistentHash: {httpHeaderName: x-user}}");
    let snap = build(&model(&dr), &view("default"));
    let cl: c::Cluster = decode(
        &snap,
        ResourceType::Cluster,
        "outbound|9080|v1|reviews.default.svc.cluster.local",
    );
    assert_eq!(cl.lb_policy, cluster::LbPolicy::RoundRobin as i32);
    assert_eq!(
        cl.connect_timeout,
        Some(duration(std::time::Duration::from_millis(250)))
    );
    let th = &cl.circuit_breakers.as_ref().expect("breakers").thresholds[0];
    assert_eq!(th.max_connections, Some(u32_value(7)));
    assert_eq!(th.max_pending_requests, Some(u32_value(3)));
    assert_eq!(th.max_retries, Some(u32_value(4)));
    assert_eq!(th.max_requests, Some(u32_value(u32::MAX)));
    let od = cl.outlier_detection.as_ref().expect("outlier detection");
    assert_eq!(od.consecutive_5xx, Some(u32_value(5)));
    assert_eq!(od.enforcing_consecutive_5xx, Some(u32_value(100)));
    assert_eq!(
        od.base_ejection_time,
        Some(duration(std::time::Duration::from_secs(60)))
    );
    assert_eq!(od.max_ejection_percent, Some(u32_value(50)));
    let panic_threshold = cl
        .common_lb_config
        .as_ref()
        .and_then(|c| c.healthy_panic_threshold.as_ref());
    assert_eq!(panic_threshold.map(|p| p.value), Some(0.0));
    // The subset's own load balancer replaces the rule's; the rest is inherited.
    let v2: c::Cluster = decode(
        &snap,
        ResourceType::Cluster,
        "outbound|9080|v2|reviews.default.svc.cluster.local",
    );
    assert_eq!(v2.lb_policy, cluster::LbPolicy::RingHash as i32);
    assert_eq!(
        v2.connect_timeout,
        Some(duration(std::time::Duration::from_millis(250)))
    );
}

#[test]
fn domains_follow_the_proxy_namespace() {
    let m = model(REVIEWS);
    let same = build(&m, &view("default"));
    let rc: r::RouteConfiguration = decode(&same, ResourceType::Route, "9080");
    let domains = &rc.virtual_hosts[0].domains;
    for d in [
        "reviews",
        "reviews:9080",
        "reviews.default",
        "reviews.default.svc.cluster.local:9080",
    ] {
        assert!(
            domains.contains(&d.to_string()),
            "{d} missing from {domains:?}"
        );
    }
    let other = build(&m, &view("shop"));
    let rc: r::RouteConfiguration = decode(&other, ResourceType::Route, "9080");
    assert!(!rc.virtual_hosts[0].domains.contains(&"reviews".to_string()));
    assert!(rc.virtual_hosts[0]
        .domains
        .contains(&"reviews.default:9080".to_string()));
}

#[test]
fn endpoint_change_touches_only_its_assignments() {
    let mut m = model(REVIEWS);
    let v = view("default");
    let before = build(&m, &v);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: r2, namespace: default, labels: {app: reviews, version: v2}}\nstatus: {podIP: 10.0.0.9}\n";
    let changes: Vec<Change> = parse_text("p.yaml", pod)
        .into_iter()
        .map(|o| match o {
            Outcome::Object(p) => Change::Upsert(p.key, p.object, p.origin),
            other => panic!("{other:?}"),
        })
        .collect();
    let dirty = m.apply(changes);
    assert!(dirty.config.is_empty() && !dirty.routes);
    let after = update(&m, &v, &before, &dirty);
    for ty in [
        ResourceType::Cluster,
        ResourceType::Listener,
        ResourceType::Route,
    ] {
        assert_eq!(
            before.get(ty).version(),
            after.get(ty).version(),
            "{ty} changed"
        );
    }
    let unchanged = "outbound|9080|v1|reviews.default.svc.cluster.local";
    assert!(Arc::ptr_eq(
        before
            .get(ResourceType::Endpoint)
            .get(unchanged)
            .expect("v1"),
        after
            .get(ResourceType::Endpoint)
            .get(unchanged)
            .expect("v1")
    ));
    let changed = "outbound|9080|v2|reviews.default.svc.cluster.local";
    assert_ne!(
        before
            .get(ResourceType::Endpoint)
            .get(changed)
            .expect("v2")
            .version,
        after
            .get(ResourceType::Endpoint)
            .get(changed)
            .expect("v2")
            .version
    );
    // The incremental result equals a full rebuild.
    let full = build(&m, &v);
    for ty in ResourceType::ALL {
        assert_eq!(full.get(ty).version(), after.get(ty).version(), "{ty}");
    }
}

#[test]
fn capture_mode_listeners() {
    let snap = build(&model(REVIEWS), &view("default"));
    let names: Vec<&str> = snap.get(ResourceType::Listener).names().collect();
    assert_eq!(
        names,
        vec!["0.0.0.0_9080", "virtualInbound", "virtualOutbound"]
    );
}

#[test]
fn sidecar_egress_hosts_scope_what_a_proxy_sees() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: shop}\nspec: {ports: [{name: http, port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: bank}\nspec: {ports: [{name: http, port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: dns, namespace: istio-system}\nspec: {ports: [{name: http, port: 80}]}\n---\napiVersion: networking.istio.io/v1beta1\nkind: Sidecar\nmetadata: {name: default, namespace: shop}\nspec:\n  egress:\n  - hosts: [\"./*\"]\n";
    let clusters = |m: &Model, ns: &str| -> Vec<String> {
        build(m, &view(ns))
            .get(ResourceType::Cluster)
            .names()
            .filter(|n| n.starts_with("outbound"))
            .map(String::from)
            .collect()
    };
    let mut m = model(yaml);
    assert_eq!(
        clusters(&m, "shop"),
        vec!["outbound|80||a.shop.svc.cluster.local"]
    );
    assert_eq!(clusters(&m, "bank").len(), 3, "no Sidecar: everything");
    // A mesh-wide default in the root namespace applies where a namespace has none.
    let root = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: istio-system}\nspec:\n  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n";
    let changes: Vec<Change> = parse_text("root.yaml", root)
        .into_iter()
        .map(|o| match o {
            Outcome::Object(p) => Change::Upsert(p.key, p.object, p.origin),
            other => panic!("{other:?}"),
        })
        .collect();
    let v = view("bank");
    let before = build(&m, &v);
    let dirty = m.apply(changes);
    assert!(dirty.scope);
    let after = update(&m, &v, &before, &dirty);
    let names: Vec<&str> = after
        .get(ResourceType::Cluster)
        .names()
        .filter(|n| n.starts_with("outbound"))
        .collect();
    assert_eq!(
        names,
        vec![
            "outbound|80||b.bank.svc.cluster.local",
            "outbound|80||dns.istio-system.svc.cluster.local"
        ]
    );
    assert_eq!(
        clusters(&m, "shop"),
        vec!["outbound|80||a.shop.svc.cluster.local"],
        "the namespace's own Sidecar wins"
    );
}

#[test]
fn vhds_views_carry_virtual_hosts_as_resources() {
    let m = model(REVIEWS);
    let whole = build(&m, &view("default"));
    let split = build(
        &m,
        &ProxyView {
            vhds: true,
            ..view("default")
        },
    );
    let shell: r::RouteConfiguration = decode(&split, ResourceType::Route, "9080");
    assert!(shell.vhds.is_some(), "the route configuration names VHDS");
    let inline: Vec<&str> = shell
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(inline, vec!["allow_any"], "only the catch-all stays inline");

    let name = "9080/reviews.default.svc.cluster.local:9080";
    let vh: r::VirtualHost = decode(&split, ResourceType::VirtualHost, name);
    assert_eq!(
        vh.name, name,
        "Envoy keys VHDS virtual hosts by their own name"
    );
    let original = route_of(&whole, "9080", "reviews.default.svc.cluster.local:9080");
    assert_eq!(
        vh.routes, original,
        "same routes as the inline virtual host"
    );
    assert!(whole.get(ResourceType::VirtualHost).is_empty());
}

pub(crate) fn changes(file: &str, yaml: &str) -> Vec<Change> {
    parse_text(file, yaml)
        .into_iter()
        .map(|o| match o {
            Outcome::Object(p) => Change::Upsert(p.key, p.object, p.origin),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn reviews_vs(v1: u32, v2: u32) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: reviews, subset: v1}}\n      weight: {v1}\n    - destination: {{host: reviews, subset: v2}}\n      weight: {v2}\n")
}

const RATINGS: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: ratings, namespace: default}\nspec:\n  selector: {app: ratings}\n  ports: [{name: http, port: 9080}]\n";

#[test]
fn a_virtual_service_change_rebuilds_only_its_hosts_and_equals_a_full_translation() {
    let modes = [
        ListenerMode::Capture,
        ListenerMode::Explicit("127.0.0.1:15001".parse().unwrap()),
        ListenerMode::Proxyless,
    ];
    for mode in modes {
        for vhds in [false, true] {
            let v = ProxyView {
                mode: mode.clone(),
                vhds,
                ..view("default")
            };
            let mut m = model(&format!("{REVIEWS}---\n{RATINGS}"));
            m.apply(changes("vs.yaml", &reviews_vs(90, 10)));
            let before = build(&m, &v);
            let dirty = m.apply(changes("vs.yaml", &reviews_vs(10, 90)));
            assert!(dirty.config.is_empty() && !dirty.routes, "{dirty:?}");
            assert!(!dirty.vs_hosts.is_empty());
            let (configs, vhosts) =
                super::route_patch::changed_routes(&m, &v, &before, &dirty.vs_hosts)
                    .expect("the previous routes take apart");
            let touched: Vec<&str> = configs
                .iter()
                .chain(&vhosts)
                .map(|r| r.name.as_str())
                .collect();
            assert!(!touched.is_empty(), "{v}");
            assert!(
                touched.iter().all(|n| !n.contains("ratings")),
                "{v}: only reviews' routes: {touched:?}"
            );
            let after = update(&m, &v, &before, &dirty);
            let full = build(&m, &v);
            for ty in [ResourceType::Route, ResourceType::VirtualHost] {
                let bodies = |s: &Snapshot| -> Vec<(String, Vec<u8>)> {
                    s.get(ty)
                        .iter()
                        .map(|r| (r.name.clone(), r.body.to_vec()))
                        .collect()
                };
                assert_eq!(bodies(&after), bodies(&full), "{v} {ty}");
            }
            assert_eq!(after.policies(), full.policies(), "{v}");
            let changed = if vhds && mode != ListenerMode::Proxyless {
                ResourceType::VirtualHost
            } else {
                ResourceType::Route
            };
            assert_ne!(
                before.get(changed).version(),
                after.get(changed).version(),
                "{v}: the weights changed"
            );
            if changed == ResourceType::VirtualHost {
                let ratings = before
                    .get(changed)
                    .iter()
                    .find(|r| r.name.contains("ratings"))
                    .expect("ratings virtual host");
                assert!(
                    Arc::ptr_eq(ratings, after.get(changed).get(&ratings.name).unwrap()),
                    "{v}: an unrelated virtual host is kept as it was"
                );
            }
        }
    }
}

#[test]
fn the_policy_record_after_virtual_services_move_equals_a_full_translation() {
    let rule = |host: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {host}, namespace: default}}\nspec:\n  host: {host}\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n")
    };
    let vs = |name: &str, hosts: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hosts: [{hosts}]\n  http:\n  - route:\n    - destination: {{host: reviews}}\n")
    };
    let v = view("default");
    let mut m = model(&format!("{REVIEWS}---\n{RATINGS}"));
    m.apply(changes(
        "dr.yaml",
        &format!("{}---\n{}", rule("reviews"), rule("ratings")),
    ));
    m.apply(changes("a.yaml", &vs("a", "reviews")));
    let mut snap = build(&m, &v);
    // A second VirtualService takes ratings, then claims reviews too,
    // which the first one holds; one for every host of the namespace comes
    // and loses to both; then they go, and it takes over, and goes too.
    let steps = [
        ("b", vs("b", "ratings")),
        ("b", vs("b", "ratings, reviews")),
        ("c", vs("c", "\"*.default.svc.cluster.local\"")),
        ("a", String::new()),
        ("b", String::new()),
        ("c", String::new()),
    ];
    for (name, yaml) in steps {
        let dirty = if yaml.is_empty() {
            m.apply(vec![Change::Delete(shmesh_api::ObjectKey {
                kind: Kind::VirtualService,
                namespace: "default".into(),
                name: name.into(),
            })])
        } else {
            m.apply(changes(&format!("{name}.yaml"), &yaml))
        };
        assert!(dirty.config.is_empty() && !dirty.routes, "{dirty:?}");
        snap = update(&m, &v, &snap, &dirty);
        let full = build(&m, &v);
        assert_eq!(snap.policies(), full.policies(), "after {name}: {yaml}");
        assert_eq!(snap.vs_of_host(), full.vs_of_host(), "after {name}: {yaml}");
        assert!(
            snap.policies()
                .keys()
                .any(|k| k.starts_with("DestinationRule/")),
            "the rules stay recorded"
        );
    }
    assert!(snap.vs_of_host().is_empty());
}

/// `count` services in two namespaces, each with three subsets, and a
/// weighted VirtualService on every third.
fn mesh(count: usize) -> String {
    let mut out = String::new();
    for i in 0..count {
        let ns = ["default", "other"][i % 2];
        out.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: {ns}}}\nspec:\n  selector: {{app: s{i}}}\n  ports: [{{name: http, port: 8080}}, {{name: grpc, port: 9090}}]\n---\n"
        ));
        for p in 0..3 {
            out.push_str(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: s{i}-{p}, namespace: {ns}, labels: {{app: s{i}, version: v{p}}}}}\nstatus: {{podIP: 10.0.{}.{p}}}\n---\n",
                i % 250
            ));
        }
        out.push_str(&format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: s{i}, namespace: {ns}}}\nspec:\n  host: s{i}\n  subsets:\n  - {{name: v0, labels: {{version: v0}}}}\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n---\n"
        ));
        if i % 3 == 0 {
            out.push_str(&format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: s{i}, namespace: {ns}}}\nspec:\n  hosts: [s{i}]\n  http:\n  - route:\n    - {{destination: {{host: s{i}, subset: v0}}, weight: 70}}\n    - {{destination: {{host: s{i}, subset: v2}}, weight: 30}}\n---\n"
            ));
        }
    }
    out
}

#[test]
fn a_translation_shared_out_among_threads_equals_one_made_on_one() {
    let m = model(&mesh(300));
    let v = view("default");
    let alone = super::build_on(&m, &v, 1);
    for threads in [2, 3] {
        let shared = super::build_on(&m, &v, threads);
        assert_eq!(alone.version(), shared.version(), "{threads} threads");
        for ty in ResourceType::ALL {
            let entries = |s: &Snapshot| -> Vec<(String, String, Vec<u8>)> {
                s.get(ty)
                    .iter()
                    .map(|r| (r.name.clone(), r.version.clone(), r.body.to_vec()))
                    .collect()
            };
            assert_eq!(entries(&alone), entries(&shared), "{threads} threads, {ty}");
            // Laid out in long stretches, so new clients get a few slices:
            // at most one per chunk of services and cluster of a service
            // (2 ports, 3 subsets), and one for the fixed clusters.
            for snapshot in [&alone, &shared] {
                let spans: Vec<_> = snapshot.get(ty).iter().map(|r| r.delta_entry()).collect();
                let breaks = spans
                    .windows(2)
                    .filter(|p| {
                        p[0].arena.as_ptr() != p[1].arena.as_ptr()
                            || p[0].range.end != p[1].range.start
                    })
                    .count();
                assert!(
                    breaks < 300_usize.div_ceil(super::CHUNK) * 8 + 1,
                    "{ty}: {breaks}"
                );
            }
        }
        assert_eq!(alone.policies(), shared.policies());
    }
    // Each service's clusters, BlackHole, Passthrough and InboundPassthrough.
    assert_eq!(alone.get(ResourceType::Cluster).len(), 300 * 2 * 4 + 3);
}
