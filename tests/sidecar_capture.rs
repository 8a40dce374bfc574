//! Sidecars under Istio's capture, in real pod network namespaces: a pod
//! calls a service by its name and clusterIP through its own outbound
//! capture and the destination's inbound capture; a pod outside the mesh
//! reaches a meshed pod through its inbound capture; traffic to an address
//! no service owns passes through; a Sidecar's `ingress` remaps inbound
//! ports (to a loopback-only app, to another port); TCP goes by `tcp[]`
//! weights and TLS by `tls[]` SNI rules. Real Envoys running as the proxy's uid,
//! on delta and state-of-the-world ADS. Needs root (skipped otherwise).
//!
//! Envoy's cluster stats carry Istio's `alt_stat_name`, the cluster name
//! and `;`.

mod common;

use std::net::SocketAddr;

use common::http::http_get_in;
use common::pod_network::{shop_b, PodNetwork, Workload, SHOP_B_VIP};
use common::{eventually, mesh, Envoy, Shmesh, Upstream};

fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(name).unwrap_or(0)
}

fn both_directions(delta: bool) {
    let Some(net) = PodNetwork::create("sidecar capture") else {
        return;
    };
    let a = net.pod("a");
    let b = net.pod("b");
    let c = net.pod("c");
    let dir = tempfile::tempdir().expect("config dir");
    mesh::write_atomic(dir.path(), "shop.yaml", &shop_b(&b.ip.to_string()));
    let shmesh = Shmesh::start_in(net.node(), &net.node_ip().to_string(), dir.path(), &[]);
    // The apps: b serves its service port; c, outside the mesh, serves 9000.
    let app_b = b
        .netns
        .run(|| Upstream::start_at(&b.ip.to_string(), 8080, "b"));
    let app_c = c
        .netns
        .run(|| Upstream::start_at(&c.ip.to_string(), 9000, "c"));
    let workload = |app| Workload {
        namespace: "shop",
        labels: app,
        delta,
        identity: None,
    };
    let sidecar_a = net.sidecar(&a, &shmesh, &workload(&[("app", "a")]));
    let sidecar_b = net.sidecar(&b, &shmesh, &workload(&[("app", "b")]));

    // a → b by name and clusterIP: a's outbound capture, b's inbound capture.
    let vip: SocketAddr = SHOP_B_VIP.parse().expect("vip");
    let mut last = String::new();
    eventually("a reaches b through both sidecars", || {
        match http_get_in(&a.netns, vip, "b.shop.svc.cluster.local", "/hello") {
            Ok(r) if r.status == 200 => true,
            Ok(r) => {
                last = format!("{} {}", r.status, r.body);
                false
            }
            Err(e) => {
                last = e;
                false
            }
        }
    });
    let r = http_get_in(&a.netns, vip, "b", "/short-name").expect("a → b by its short name");
    assert_eq!((r.status, r.body.as_str()), (200, "b"), "{last}");
    let seen = app_b.last_request().expect("b's app saw the request");
    assert_eq!(seen.path, "/short-name");
    // The inbound cluster connects from 127.0.0.6, which only b's sidecar does.
    assert_eq!(seen.peer.ip().to_string(), "127.0.0.6");
    assert!(
        counter(
            &sidecar_a,
            "cluster.outbound|80||b.shop.svc.cluster.local;.upstream_rq_200"
        ) >= 2
    );
    assert!(counter(&sidecar_b, "cluster.inbound|8080||;.upstream_rq_200") >= 2);

    // c, outside the mesh, dials b's pod directly: b's inbound capture takes it.
    let before = counter(&sidecar_b, "cluster.inbound|8080||;.upstream_rq_200");
    let pod_b: SocketAddr = format!("{}:8080", b.ip).parse().expect("addr");
    let r = http_get_in(&c.netns, pod_b, "b", "/from-outside").expect("c → b");
    assert_eq!((r.status, r.body.as_str()), (200, "b"));
    assert_eq!(
        app_b.last_request().expect("seen").peer.ip().to_string(),
        "127.0.0.6"
    );
    assert_eq!(
        counter(&sidecar_b, "cluster.inbound|8080||;.upstream_rq_200"),
        before + 1
    );

    // a → c: no service owns c's address, so a's sidecar passes it through.
    let pod_c: SocketAddr = format!("{}:9000", c.ip).parse().expect("addr");
    let r = http_get_in(&a.netns, pod_c, "c", "/").expect("a → c");
    assert_eq!((r.status, r.body.as_str()), (200, "c"));
    assert!(counter(&sidecar_a, "cluster.PassthroughCluster.upstream_cx_total") >= 1);
    // c saw a's pod address: the passthrough keeps the caller's source.
    assert_eq!(app_c.last_request().expect("seen").peer.ip(), a.ip);

    // b's own port nobody declared: inbound passthrough to b's app on 8081.
    let extra = b
        .netns
        .run(|| Upstream::start_at(&b.ip.to_string(), 8081, "b-extra"));
    let r = http_get_in(
        &c.netns,
        format!("{}:8081", b.ip).parse().expect("addr"),
        "b",
        "/",
    )
    .expect("c → b:8081");
    assert_eq!((r.status, r.body.as_str()), (200, "b-extra"));
    assert_eq!(
        extra.last_request().expect("seen").peer.ip().to_string(),
        "127.0.0.6"
    );
    assert!(
        counter(
            &sidecar_b,
            "cluster.InboundPassthroughCluster.upstream_cx_total"
        ) >= 1
    );

    // b's Sidecar names its inbound ports: 8080 goes to an app that listens
    // on loopback only, and 8082 to b's 8081.
    let loopback = b
        .netns
        .run(|| Upstream::start_at("127.0.0.1", 8090, "b-loopback"));
    mesh::write_atomic(dir.path(), "sidecar.yaml", SIDECAR_INGRESS);
    eventually("b's ingress sends 8080 to its loopback app", || {
        http_get_in(&a.netns, vip, "b", "/ingress").is_ok_and(|r| r.body == "b-loopback")
    });
    assert_eq!(loopback.last_request().expect("seen").path, "/ingress");
    let r = http_get_in(
        &c.netns,
        format!("{}:8082", b.ip).parse().expect("addr"),
        "b",
        "/remapped",
    )
    .expect("c → b:8082");
    assert_eq!((r.status, r.body.as_str()), (200, "b-extra"));
    assert_eq!(extra.last_request().expect("seen").path, "/remapped");
    assert!(counter(&sidecar_b, "cluster.inbound|8082||;.upstream_rq_200") >= 1);
    drop(shmesh);
}

const SIDECAR_INGRESS: &str = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: b, namespace: shop}\nspec:\n  workloadSelector: {labels: {app: b}}\n  ingress:\n  - port: {number: 8080, protocol: HTTP, name: http}\n    defaultEndpoint: 127.0.0.1:8090\n  - port: {number: 8082, protocol: HTTP, name: http-remapped}\n    defaultEndpoint: 0.0.0.0:8081\n";

#[test]
fn both_directions_under_capture_delta() {
    both_directions(true);
}

#[test]
fn both_directions_under_capture_sotw() {
    both_directions(false);
}

/// Service `db` (clusterIP 10.96.0.40, TCP port 5432 to the pods' 9000) on
/// two pods outside the mesh, v1 and v2, and a VirtualService splitting its
/// connections `v1_weight`/`100 - v1_weight` by `tcp[]`.
fn db(d1_ip: &str, d2_ip: &str, v1_weight: u32) -> String {
    let pod = |name: &str, version: &str, ip: &str| {
        format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, labels: {{app: db, version: {version}}}}}\nstatus: {{podIP: {ip}, phase: Running, conditions: [{{type: Ready, status: \"True\"}}]}}\n")
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: shop}}\nspec:\n  clusterIP: 10.96.0.40\n  selector: {{app: db}}\n  ports: [{{name: tcp, port: 5432, targetPort: 9000}}]\n{}{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: db, namespace: shop}}\nspec:\n  host: db\n  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: db, namespace: shop}}\nspec:\n  hosts: [db]\n  tcp:\n  - route:\n    - {{destination: {{host: db, subset: v1}}, weight: {v1_weight}}}\n    - {{destination: {{host: db, subset: v2}}, weight: {}}}\n",
        pod("db-1", "v1", d1_ip),
        pod("db-2", "v2", d2_ip),
        100 - v1_weight
    )
}

/// A sidecar's TCP connections to a service follow its VirtualService's
/// weighted `tcp[]` rule, and a weight change reaches the listener.
fn weighted_tcp(delta: bool) {
    let Some(net) = PodNetwork::create("sidecar tcp") else {
        return;
    };
    let [a, d1, d2] = ["a", "d1", "d2"].map(|name| net.pod(name));
    let (d1_ip, d2_ip) = (d1.ip.to_string(), d2.ip.to_string());
    let dir = tempfile::tempdir().expect("config dir");
    mesh::write_atomic(dir.path(), "db.yaml", &db(&d1_ip, &d2_ip, 70));
    let shmesh = Shmesh::start_in(net.node(), &net.node_ip().to_string(), dir.path(), &[]);
    let _v1 = d1.netns.run(|| Upstream::start_at(&d1_ip, 9000, "v1"));
    let _v2 = d2.netns.run(|| Upstream::start_at(&d2_ip, 9000, "v2"));
    let workload = Workload {
        namespace: "shop",
        labels: &[("app", "a")],
        delta,
        identity: None,
    };
    let _sidecar = net.sidecar(&a, &shmesh, &workload);
    let vip: SocketAddr = "10.96.0.40:5432".parse().expect("vip");
    eventually("a reaches db over TCP", || {
        http_get_in(&a.netns, vip, "db", "/").is_ok_and(|r| r.status == 200)
    });
    let mut v1 = 0;
    for _ in 0..300 {
        let r = http_get_in(&a.netns, vip, "db", "/").expect("a TCP connection to db");
        v1 += usize::from(r.body == "v1");
    }
    eprintln!("v1 took {v1} of 300 connections");
    assert!((180..=240).contains(&v1), "v1 took {v1} of 300, not ~70%");
    // All to v2 now: the listener follows the VirtualService.
    mesh::write_atomic(dir.path(), "db.yaml", &db(&d1_ip, &d2_ip, 0));
    eventually("every connection goes to v2", || {
        (0..20).all(|_| http_get_in(&a.netns, vip, "db", "/").is_ok_and(|r| r.body == "v2"))
    });
    drop(shmesh);
}

#[test]
fn weighted_tcp_route_delta() {
    weighted_tcp(true);
}

#[test]
fn weighted_tcp_route_sotw() {
    weighted_tcp(false);
}

/// Service `vault` (clusterIP 10.96.0.41, TLS port 443 to the pods' 8443) on
/// two pods outside the mesh, v1 and v2, each terminating TLS itself for
/// `a.vault.example` and `b.vault.example`; its VirtualService passes TLS
/// through to v1 or v2 by SNI.
fn vault(d1_ip: &str, d2_ip: &str) -> String {
    let pod = |name: &str, version: &str, ip: &str| {
        format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, labels: {{app: vault, version: {version}}}}}\nstatus: {{podIP: {ip}, phase: Running, conditions: [{{type: Ready, status: \"True\"}}]}}\n")
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: vault, namespace: shop}}\nspec:\n  clusterIP: 10.96.0.41\n  selector: {{app: vault}}\n  ports: [{{name: tls, port: 443, targetPort: 8443}}]\n{}{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: vault, namespace: shop}}\nspec:\n  host: vault\n  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vault, namespace: shop}}\nspec:\n  hosts: [vault]\n  tls:\n  - match: [{{sniHosts: [a.vault.example], port: 443}}]\n    route: [{{destination: {{host: vault, subset: v1}}}}]\n  - match: [{{sniHosts: [b.vault.example]}}]\n    route: [{{destination: {{host: vault, subset: v2}}}}]\n",
        pod("vault-1", "v1", d1_ip),
        pod("vault-2", "v2", d2_ip),
    )
}

/// A sidecar's TLS connections to a service go where the VirtualService's
/// `tls[]` rules send their SNI names, passed through untouched (the client
/// checks the destination's own certificate).
fn tls_by_sni(delta: bool) {
    use common::envoy::tls_front;
    use common::http::https_get_in;
    use common::pod_network::ca_init;
    use common::EnvoyOptions;
    let Some(net) = PodNetwork::create("sidecar tls") else {
        return;
    };
    let [a, d1, d2] = ["a", "d1", "d2"].map(|name| net.pod(name));
    let ca_dir = tempfile::tempdir().expect("CA dir");
    ca_init(ca_dir.path());
    let ca = shmesh::ca::Ca::load(
        &ca_dir.path().join("root-cert.pem"),
        &ca_dir.path().join("root-key.pem"),
        &[],
    )
    .expect("CA");
    let names = ["a.vault.example".to_string(), "b.vault.example".to_string()];
    let cert = ca
        .issue_server(&names, std::time::Duration::from_secs(3600))
        .expect("certificate");
    let mut running = Vec::new();
    for (pod, version) in [(&d1, "v1"), (&d2, "v2")] {
        let ip = pod.ip.to_string();
        let app = pod.netns.run(|| Upstream::start_at(&ip, 8080, version));
        let front = Envoy::start_with(
            &tls_front(
                format!("{ip}:8443").parse().expect("addr"),
                &cert.chain_pem,
                &cert.key_pem,
                None,
                app.addr(),
            ),
            EnvoyOptions {
                netns: Some(pod.netns.clone()),
                ..EnvoyOptions::default()
            },
        );
        running.push((app, front));
    }
    let dir = tempfile::tempdir().expect("config dir");
    mesh::write_atomic(
        dir.path(),
        "vault.yaml",
        &vault(&d1.ip.to_string(), &d2.ip.to_string()),
    );
    let shmesh = Shmesh::start_in(net.node(), &net.node_ip().to_string(), dir.path(), &[]);
    let workload = Workload {
        namespace: "shop",
        labels: &[("app", "a")],
        delta,
        identity: None,
    };
    let _sidecar = net.sidecar(&a, &shmesh, &workload);
    let vip: SocketAddr = "10.96.0.41:443".parse().expect("vip");
    let root = ca.trusted_pem().to_string();
    let get = |sni: &str| https_get_in(Some(&a.netns), vip, sni, "/", &root);
    eventually("a reaches vault over TLS", || {
        get("a.vault.example").is_ok_and(|(r, _)| r.status == 200)
    });
    for (sni, want) in [("a.vault.example", "v1"), ("b.vault.example", "v2")] {
        for _ in 0..20 {
            let (r, _) = get(sni).unwrap_or_else(|e| panic!("{sni}: {e}"));
            assert_eq!(r.body, want, "{sni} went to {}", r.body);
        }
    }
    drop(shmesh);
}

#[test]
fn tls_routes_by_sni_delta() {
    tls_by_sni(true);
}

#[test]
fn tls_routes_by_sni_sotw() {
    tls_by_sni(false);
}
