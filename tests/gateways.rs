//! An Istio ingress gateway: a real Envoy of Istio's `router` node type,
//! bootstrapped by `shmesh bootstrap` with credentials that prove its
//! identity, serving the Gateway whose selector picks it and the
//! VirtualServices bound to that Gateway, over delta and SotW ADS.
//!
//! Gateway `edge/public` listens on two ports of 127.0.0.1 (picked at run
//! time): plain HTTP for `web.example.com` (path routing, an 80/20 split)
//! and `secure.example.com` (redirected to HTTPS), and HTTPS for
//! `secure.example.com` with the certificate of the Secret `edge/secure-cert`,
//! TLS passed through by SNI to `db.example.com` (which terminates TLS
//! itself), and TCP split 70/30 between two backends. A VirtualService not
//! bound to the Gateway does not apply there.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::envoy::tls_front;
use common::http::{describe, http_get, https_get};
use common::pod_network::ca_init;
use common::{eventually, free_port, grpc, mesh, Envoy, Shmesh, Upstream};
use shmesh::ca::{Ca, Issued};

/// Service `NAME` of shop on `port` (named `port_name`), one pod per
/// (version, address it listens on).
fn service(name: &str, port: u16, port_name: &str, versions: &[(&str, SocketAddr)]) -> String {
    let mut out = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: {port_name}, port: {port}, targetPort: 8080}}]\n");
    for (version, addr) in versions {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-{version}\n  namespace: shop\n  labels: {{app: {name}, version: {version}}}\nstatus: {{podIP: {ip}}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-{version}\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: {port_name}, port: {port}}}]\nendpoints:\n- addresses: [{ip}]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, name: {name}-{version}, namespace: shop}}\n",
            ip = addr.ip(),
            port = addr.port(),
        ));
    }
    out + "---\n"
}

/// The FQDN of Service `shop/db`.
const DB_HOST: &str = "db.shop.svc.cluster.local";

/// The ports of Gateway `edge/public`'s servers.
struct Ports {
    http: u16,
    https: u16,
    tls: u16,
    tcp: u16,
    tls_terminated: u16,
    auto: u16,
    /// Where the gateway listens for its server port 18080: the target port
    /// of its own Service `edge/ingress`.
    mapped: u16,
}

fn gateway(ports: &Ports) -> String {
    let Ports {
        http: http_port,
        https: https_port,
        tls: tls_port,
        tcp: tcp_port,
        tls_terminated,
        auto,
        mapped,
    } = ports;
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: public, namespace: edge}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {http_port}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: [shop/web.example.com, \"*/other.example.com\"]
  - port: {{number: {http_port}, name: http-redirect, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: [shop/secure.example.com]
    tls: {{httpsRedirect: true}}
  - port: {{number: {https_port}, name: https, protocol: HTTPS}}
    bind: 127.0.0.1
    hosts: [shop/secure.example.com]
    tls: {{mode: SIMPLE, credentialName: secure-cert}}
  - port: {{number: {tls_port}, name: tls-passthrough, protocol: TLS}}
    bind: 127.0.0.1
    hosts: [shop/db.example.com]
    tls: {{mode: PASSTHROUGH}}
  - port: {{number: {tcp_port}, name: tcp, protocol: TCP}}
    bind: 127.0.0.1
    hosts: [shop/tcp.example.com]
  - port: {{number: {tls_terminated}, name: tls-terminated, protocol: TLS}}
    bind: 127.0.0.1
    hosts: [shop/secure.example.com]
    tls: {{mode: SIMPLE, credentialName: secure-cert}}
  - port: {{number: {auto}, name: tls-auto, protocol: TLS}}
    bind: 127.0.0.1
    hosts: [\"shop/*\"]
    tls: {{mode: AUTO_PASSTHROUGH}}
  - port: {{number: 18080, name: http-mapped, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: [shop/web.example.com]
---
apiVersion: v1
kind: Service
metadata: {{name: ingress, namespace: edge}}
spec:
  selector: {{istio: ingressgateway}}
  ports: [{{name: http-mapped, port: 18080, targetPort: {mapped}}}]
---
"
    )
}

const ROUTES: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.example.com]
  gateways: [edge/public]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: api}}]
  - route:
    - {destination: {host: web, subset: v1}, weight: 80}
    - {destination: {host: web, subset: v2}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure, namespace: shop}
spec:
  hosts: [secure.example.com]
  gateways: [edge/public]
  http: [{route: [{destination: {host: web, subset: v1}}]}]
  tcp: [{route: [{destination: {host: echo-b}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other, namespace: shop}
spec:
  hosts: [other.example.com]
  http: [{route: [{destination: {host: api}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: shop}
spec:
  hosts: [db.example.com]
  gateways: [edge/public]
  tls:
  - match: [{sniHosts: [db.example.com]}]
    route: [{destination: {host: db, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp, namespace: shop}
spec:
  hosts: [tcp.example.com]
  gateways: [edge/public]
  tcp:
  - route:
    - {destination: {host: echo-a}, weight: 70}
    - {destination: {host: echo-b}, weight: 30}
";

/// The Secret `edge/secure-cert` holding `cert`.
fn secret(cert: &Issued) -> String {
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: secure-cert, namespace: edge}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert.chain_pem),
        indent(&cert.key_pem)
    )
}

fn serial_of(cert: &Issued) -> String {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM");
    let (_, x) = x509_parser::parse_x509_certificate(der.as_ref()).expect("X.509");
    x.raw_serial_as_string()
}

fn ingress(delta: bool) {
    let web_v1 = Upstream::start("127.0.0.21", "web-v1");
    let web_v2 = Upstream::start("127.0.0.22", "web-v2");
    let api = Upstream::start("127.0.0.23", "api");
    let ca_dir = tempfile::tempdir().expect("CA dir");
    ca_init(ca_dir.path());
    let ca = Ca::load(
        &ca_dir.path().join("root-cert.pem"),
        &ca_dir.path().join("root-key.pem"),
        &[],
    )
    .expect("CA");
    let root = ca.trusted_pem().to_string();
    let hour = Duration::from_secs(3600);
    let cert = ca
        .issue_server(&["secure.example.com".to_string()], hour)
        .expect("server certificate");

    // db speaks TLS itself (its own certificate), behind the gateway's passthrough.
    let db_app = Upstream::start("127.0.0.24", "db");
    let db_cert = ca
        .issue_server(
            &[
                "db.example.com".to_string(),
                // The SNI name of db's cluster, as AUTO_PASSTHROUGH takes it.
                format!("outbound_.443_._.{DB_HOST}"),
            ],
            hour,
        )
        .expect("db certificate");
    let db_addr: SocketAddr = format!("127.0.0.24:{}", free_port("127.0.0.24"))
        .parse()
        .expect("addr");
    let _db = Envoy::start(&tls_front(
        db_addr,
        &db_cert.chain_pem,
        &db_cert.key_pem,
        None,
        db_app.addr(),
    ));
    let echo_a = Upstream::start("127.0.0.25", "echo-a");
    let echo_b = Upstream::start("127.0.0.26", "echo-b");

    let [http_port, https_port, tls_port, tcp_port, tls_terminated, auto, mapped] =
        [(); 7].map(|_| free_port("127.0.0.1"));
    let ports = Ports {
        http: http_port,
        https: https_port,
        tls: tls_port,
        tcp: tcp_port,
        tls_terminated,
        auto,
        mapped,
    };
    let dir = tempfile::tempdir().expect("config dir");
    let services = [
        service(
            "web",
            80,
            "http",
            &[("v1", web_v1.addr()), ("v2", web_v2.addr())],
        ),
        service("api", 80, "http", &[("v1", api.addr())]),
        service("db", 443, "tls", &[("v1", db_addr)]),
        service("echo-a", 80, "tcp", &[("v1", echo_a.addr())]),
        service("echo-b", 80, "tcp", &[("v1", echo_b.addr())]),
    ]
    .concat();
    mesh::write_atomic(dir.path(), "services.yaml", &services);
    mesh::write_atomic(dir.path(), "routes.yaml", ROUTES);
    mesh::write_atomic(dir.path(), "gateway.yaml", &gateway(&ports));
    mesh::write_atomic(dir.path(), "secret.yaml", &secret(&cert));
    let shmesh = Shmesh::start_with(
        dir.path(),
        &[
            "--ca-cert",
            ca_dir.path().join("root-cert.pem").to_str().expect("utf-8"),
            "--ca-key",
            ca_dir.path().join("root-key.pem").to_str().expect("utf-8"),
            "--xds-tls-addr",
            "127.0.0.1:0",
            "--xds-tls-name",
            "127.0.0.1",
        ],
    );
    let credentials = tempfile::tempdir().expect("credentials dir");
    let envoy = shmesh.gateway_proxy(
        "edge",
        "istio=ingressgateway",
        Some((ca_dir.path(), credentials.path())),
        delta,
    );
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().expect("addr");
    let https: SocketAddr = format!("127.0.0.1:{https_port}").parse().expect("addr");

    // Host and path routing.
    let mut last = String::new();
    eventually("the gateway routes /api to api", || {
        let r = http_get(http, "web.example.com", "/api/items", &[]);
        last = describe(&r);
        matches!(&r, Ok(r) if r.status == 200 && r.body == "api")
    });
    // An 80/20 split over 1,000 requests.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..1000 {
        let r = http_get(http, "web.example.com", "/", &[]).expect("request through the gateway");
        assert_eq!(r.status, 200, "{}", r.body);
        *counts.entry(r.body).or_default() += 1;
    }
    let v1 = counts.get("web-v1").copied().unwrap_or(0) as f64 / 10.0;
    eprintln!("split over 1,000 requests: {counts:?}");
    assert!((v1 - 80.0).abs() <= 5.0, "v1 took {v1}%: {counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 1000);

    // A VirtualService bound to no gateway applies to the mesh only.
    let r = http_get(http, "other.example.com", "/", &[]).expect("request");
    assert_eq!(
        r.status, 404,
        "other.example.com at the gateway: {}",
        r.body
    );

    // httpsRedirect: plain requests for the secure host are sent to HTTPS.
    let r = http_get(http, "secure.example.com", "/account?x=1", &[]).expect("request");
    assert_eq!(r.status, 301, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some("https://secure.example.com/account?x=1")
    );

    // HTTPS with the Secret's certificate, checked against the CA.
    let mut served = String::new();
    eventually(
        "the gateway serves HTTPS with the Secret's certificate",
        || match https_get(https, "secure.example.com", "/account", &root) {
            Ok((r, serial)) if r.status == 200 && r.body == "web-v1" => {
                served = serial;
                true
            }
            other => {
                last = format!("{other:?}");
                false
            }
        },
    );
    assert_eq!(served, serial_of(&cert), "({last})");
    assert!(
        https_get(https, "web.example.com", "/", &root).is_err(),
        "a host the HTTPS server does not name was served"
    );

    // TLS passed through by SNI: the client sees db's own certificate.
    let passthrough: SocketAddr = format!("127.0.0.1:{tls_port}").parse().expect("addr");
    eventually(
        "the gateway passes db.example.com through",
        || match https_get(passthrough, "db.example.com", "/", &root) {
            Ok((r, serial)) => {
                last = format!("{} {} {serial}", r.status, r.body);
                r.status == 200 && r.body == "db" && serial == serial_of(&db_cert)
            }
            Err(e) => {
                last = e;
                false
            }
        },
    );

    // A weighted TCP route: 70/30 over 300 connections.
    let tcp: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().expect("addr");
    eventually("the gateway proxies TCP", || {
        http_get(tcp, "tcp.example.com", "/", &[]).is_ok_and(|r| r.status == 200)
    });
    let mut tcp_counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..300 {
        let r = http_get(tcp, "tcp.example.com", "/", &[])
            .expect("a TCP connection through the gateway");
        *tcp_counts.entry(r.body).or_default() += 1;
    }
    eprintln!("TCP split over 300 connections: {tcp_counts:?}");
    let a = tcp_counts.get("echo-a").copied().unwrap_or(0) as f64 / 3.0;
    assert!((a - 70.0).abs() <= 10.0, "echo-a took {a}%: {tcp_counts:?}");

    // A TLS server terminating TLS proxies the plaintext by `tcp[]`.
    let terminated: SocketAddr = format!("127.0.0.1:{tls_terminated}").parse().expect("addr");
    eventually("the gateway terminates TLS for TCP", || {
        match https_get(terminated, "secure.example.com", "/", &root) {
            Ok((r, serial)) => {
                last = format!("{} {} {serial}", r.status, r.body);
                r.body == "echo-b" && serial == serial_of(&cert)
            }
            Err(e) => {
                last = e;
                false
            }
        }
    });

    // Server port 18080 is listened on at the target port of the gateway's
    // own Service, as istiod maps it.
    let mapped: SocketAddr = format!("127.0.0.1:{mapped}").parse().expect("addr");
    eventually("the gateway listens on its Service's target port", || {
        http_get(mapped, "web.example.com", "/api", &[]).is_ok_and(|r| r.body == "api")
    });

    // AUTO_PASSTHROUGH: the SNI name of a cluster picks it, untouched.
    let auto: SocketAddr = format!("127.0.0.1:{auto}").parse().expect("addr");
    let sni = format!("outbound_.443_._.{DB_HOST}");
    eventually(
        "the gateway passes the cluster's SNI name through",
        || match https_get(auto, &sni, "/", &root) {
            Ok((r, serial)) => {
                last = format!("{} {} {serial}", r.status, r.body);
                r.body == "db" && serial == serial_of(&db_cert)
            }
            Err(e) => {
                last = e;
                false
            }
        },
    );

    // The Secret's certificate replaced under steady HTTPS load.
    let renewed = ca
        .issue_server(&["secure.example.com".to_string()], hour)
        .expect("renewed certificate");
    let (mut sent, mut failed, mut switched) = (0, Vec::new(), false);
    let start = Instant::now();
    let mut rotated = false;
    while start.elapsed() < Duration::from_secs(20) && !(switched && sent >= 100) {
        if !rotated && sent >= 20 {
            mesh::write_atomic(dir.path(), "secret.yaml", &secret(&renewed));
            rotated = true;
        }
        sent += 1;
        match https_get(https, "secure.example.com", "/load", &root) {
            Ok((r, serial)) if r.status == 200 => switched |= serial == serial_of(&renewed),
            other => failed.push(format!("{other:?}")),
        }
    }
    eprintln!(
        "{sent} HTTPS requests across the renewal, {} failed",
        failed.len()
    );
    assert!(switched, "the renewed certificate was never served");
    assert!(failed.is_empty(), "{failed:?}");
    let log = shmesh.log();
    assert!(!log.contains("PRIVATE KEY"), "a key was logged");
    drop(envoy);
}

#[test]
fn istio_gateway_delta() {
    ingress(true);
}

#[test]
fn istio_gateway_sotw() {
    ingress(false);
}

/// A GatewayClass of Istio's controller, Gateway `edge/web` on 127.0.0.1
/// taking routes from every namespace, and HTTPRoute `shop/web`: a header
/// match to v2, a redirect, a rewrite with header changes and a mirror, and
/// a 90/10 split.
fn gateway_api(port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: istio}}
spec: {{controllerName: istio.io/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web, namespace: edge}}
spec:
  gatewayClassName: istio
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
  - name: http
    port: {port}
    protocol: HTTP
    allowedRoutes: {{namespaces: {{from: All}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: shop}}
spec:
  parentRefs: [{{name: web, namespace: edge}}]
  hostnames: [web.example.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /}}, headers: [{{name: x-canary, value: 'yes'}}]}}]
    backendRefs: [{{name: web-v2, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /old}}}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {{path: {{type: ReplaceFullPath, replaceFullPath: /new}}, statusCode: 301}}
  - matches: [{{path: {{type: PathPrefix, value: /app}}}}]
    filters:
    - type: URLRewrite
      urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-from, value: gateway}}], remove: [x-drop]}}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{add: [{{name: x-served-by, value: shmesh}}]}}
    - type: RequestMirror
      requestMirror: {{backendRef: {{name: mirror, port: 80}}}}
    backendRefs: [{{name: api, port: 80}}]
  - backendRefs:
    - {{name: web-v1, port: 80, weight: 90}}
    - {{name: web-v2, port: 80, weight: 10}}
"
    )
}

fn kubernetes_gateway(delta: bool) {
    let web_v1 = Upstream::start("127.0.0.31", "web-v1");
    let web_v2 = Upstream::start("127.0.0.32", "web-v2");
    let api = Upstream::start_with("127.0.0.33", "api", |req| {
        common::Reply::new(200, format!("api {}", req.path))
    });
    let mirror = Upstream::start("127.0.0.34", "mirror");
    let port = free_port("127.0.0.1");
    let dir = tempfile::tempdir().expect("config dir");
    let services = [
        service("web-v1", 80, "http", &[("v1", web_v1.addr())]),
        service("web-v2", 80, "http", &[("v1", web_v2.addr())]),
        service("api", 80, "http", &[("v1", api.addr())]),
        service("mirror", 80, "http", &[("v1", mirror.addr())]),
    ]
    .concat();
    mesh::write_atomic(dir.path(), "services.yaml", &services);
    mesh::write_atomic(dir.path(), "gateway-api.yaml", &gateway_api(port));
    let shmesh = Shmesh::start(dir.path());
    let _envoy = shmesh.gateway_proxy(
        "edge",
        "gateway.networking.k8s.io/gateway-name=web",
        None,
        delta,
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let get = |path: &str, headers: &[(&str, &str)]| {
        http_get(addr, "web.example.com", path, headers).expect("request through the gateway")
    };
    let mut last = String::new();
    eventually("the Gateway API gateway routes", || {
        let r = http_get(addr, "web.example.com", "/", &[]);
        last = describe(&r);
        r.is_ok_and(|r| r.status == 200)
    });

    // A header match.
    let r = get("/", &[("x-canary", "yes")]);
    assert_eq!((r.status, r.body.as_str()), (200, "web-v2"), "({last})");
    // A redirect: status and Location.
    let r = get("/old", &[]);
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("http://web.example.com/new"));
    // A rewrite: the backend sees the rewritten path and the header changes.
    let r = get("/app/items?id=7", &[("x-drop", "1")]);
    assert_eq!((r.status, r.body.as_str()), (200, "api /items?id=7"));
    assert_eq!(r.header("x-served-by"), Some("shmesh"));
    let seen = api.last_request().expect("api saw the request");
    assert_eq!(seen.header("x-from"), Some("gateway"));
    assert_eq!(seen.header("x-drop"), None);
    // /application is not under the path prefix /app.
    let r = get("/application", &[]);
    assert!(r.body.starts_with("web-v"), "{}", r.body);
    // The mirror sees a copy.
    eventually("the mirror sees the request", || {
        mirror.requests().iter().any(|m| m.path == "/items?id=7")
    });

    // A 90/10 split over 1,000 requests.
    let mut v1 = 0;
    for _ in 0..1000 {
        let r = get("/", &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        v1 += usize::from(r.body == "web-v1");
    }
    eprintln!("web-v1 took {v1} of 1,000 requests");
    assert!((850..=950).contains(&v1), "web-v1 took {v1} of 1,000");
    drop(shmesh);
}

#[test]
fn gateway_api_delta() {
    kubernetes_gateway(true);
}

#[test]
fn gateway_api_sotw() {
    kubernetes_gateway(false);
}

/// HTTPRoute `shop/reviews` attached to Service `reviews` (GAMMA), splitting
/// its mesh traffic between the Services `reviews-primary` and
/// `reviews-canary` as a canary tool's step sets it.
fn mesh_route(canary: u32) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: reviews, namespace: shop}}\nspec:\n  parentRefs: [{{group: '', kind: Service, name: reviews, port: 80}}]\n  rules:\n  - backendRefs:\n    - {{name: reviews-primary, port: 80, weight: {}}}\n    - {{name: reviews-canary, port: 80, weight: {canary}}}\n",
        100 - canary
    )
}

/// A sidecar's calls to a Service follow the HTTPRoute attached to it,
/// through a canary tool's sequence of weight steps.
fn gamma(delta: bool) {
    let primary = Upstream::start("127.0.0.41", "primary");
    let canary = Upstream::start("127.0.0.42", "canary");
    let dir = tempfile::tempdir().expect("config dir");
    let services = [
        service("reviews", 80, "http", &[("v1", primary.addr())]),
        service("reviews-primary", 80, "http", &[("v1", primary.addr())]),
        service("reviews-canary", 80, "http", &[("v1", canary.addr())]),
    ]
    .concat();
    mesh::write_atomic(dir.path(), "services.yaml", &services);
    mesh::write_atomic(dir.path(), "route.yaml", &mesh_route(0));
    let shmesh = Shmesh::start(dir.path());
    let listener: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("addr");
    let _envoy = Envoy::start(&shmesh.bootstrap("productpage-1", "shop", listener, delta));
    let host = "reviews.shop.svc.cluster.local";
    // The route's rollout, as a canary tool polls it.
    let rollout = || {
        let (status, body) =
            shmesh.admin_get("/debug/rollout?kind=HTTPRoute&namespace=shop&name=reviews");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).expect("rollout JSON")
    };
    // Envoy ACKs its first listeners before they finish warming: wait for
    // the listener to answer before the steps begin.
    eventually("the sidecar's listener answers", || {
        http_get(listener, host, "/", &[]).is_ok_and(|r| r.status == 200)
    });
    let mut version = String::new();
    for step in [0u32, 10, 50, 100] {
        mesh::write_atomic(dir.path(), "route.yaml", &mesh_route(step));
        // Each step is reported live once the sidecar has applied it.
        eventually(&format!("step {step} is live"), || {
            let r = rollout();
            let fresh = r["version"].as_str().is_some_and(|v| v != version);
            if fresh && r["live"] == true {
                version = r["version"].as_str().unwrap_or_default().to_string();
                return true;
            }
            false
        });
        // Every request of a full step goes where the step says.
        if step == 0 || step == 100 {
            let want = if step == 0 { "primary" } else { "canary" };
            assert!(
                (0..20).all(|_| http_get(listener, host, "/", &[]).is_ok_and(|r| r.body == want)),
                "step {step}: not all to {want}"
            );
            continue;
        }
        // The step is live: a sample of 400 requests.
        let seen = (0..400)
            .filter(|_| http_get(listener, host, "/", &[]).is_ok_and(|r| r.body == "canary"))
            .count();
        let share = seen as f64 / 4.0;
        // Envoy picks each request's cluster at random: allow 4.5 standard
        // deviations of the binomial share (under one failure in 100,000).
        let p = f64::from(step) / 100.0;
        let tolerance = 4.5 * (p * (1.0 - p) / 400.0).sqrt() * 100.0;
        assert!(
            (share - f64::from(step)).abs() <= tolerance,
            "step {step}: the canary took {share}% (allowed ±{tolerance:.1})"
        );
        eprintln!("step {step}: canary took {seen} of 400");
    }
    drop(shmesh);
}

#[test]
fn gamma_route_delta() {
    gamma(true);
}

#[test]
fn gamma_route_sotw() {
    gamma(false);
}

/// Gateway `edge/routes` of the Gateway API with an HTTP, a TCP and a TLS
/// passthrough listener (and one that conflicts with the HTTP one), and
/// routes of every kind: an HTTPRoute, a GRPCRoute by method, a weighted
/// TCPRoute, a TLSRoute by SNI; and bad routes beside them: one whose
/// parent does not exist and one whose backend is in a namespace that has
/// not granted it.
fn gateway_api_routes(http: u16, tcp: u16, tls: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: shmesh}}
spec: {{controllerName: shmesh.io/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: routes, namespace: edge}}
spec:
  gatewayClassName: shmesh
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
  - {{name: http, port: {http}, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}
  - {{name: clash, port: {http}, protocol: TCP, allowedRoutes: {{namespaces: {{from: All}}}}}}
  - {{name: tcp, port: {tcp}, protocol: TCP, allowedRoutes: {{namespaces: {{from: All}}}}}}
  - name: tls
    port: {tls}
    protocol: TLS
    tls: {{mode: Passthrough}}
    allowedRoutes: {{namespaces: {{from: All}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: shop}}
spec:
  parentRefs: [{{name: routes, namespace: edge, sectionName: http}}]
  hostnames: [web.example.com]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: greeter, namespace: shop}}
spec:
  parentRefs: [{{name: routes, namespace: edge, sectionName: http}}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{{method: {{service: greeter.Greeter, method: Hello}}}}]
    backendRefs: [{{name: greeter, port: 50051}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: echo, namespace: shop}}
spec:
  parentRefs: [{{name: routes, namespace: edge, sectionName: tcp}}]
  rules:
  - backendRefs:
    - {{name: echo-a, port: 80, weight: 70}}
    - {{name: echo-b, port: 80, weight: 30}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {{name: db, namespace: shop}}
spec:
  parentRefs: [{{name: routes, namespace: edge, port: {tls}}}]
  hostnames: [db.example.com]
  rules: [{{backendRefs: [{{name: db, port: 443}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: lost, namespace: shop}}
spec:
  parentRefs: [{{name: nowhere, namespace: edge}}]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: billing, namespace: shop}}
spec:
  parentRefs: [{{name: routes, namespace: edge, sectionName: http}}]
  hostnames: [billing.example.com]
  rules: [{{backendRefs: [{{name: billing, namespace: payments, port: 80}}]}}]
"
    )
}

/// An HTTPRoute with a regular expression that does not compile.
const BROKEN_ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: shop}
spec:
  parentRefs: [{name: routes, namespace: edge, sectionName: http}]
  hostnames: [broken.example.com]
  rules:
  - matches: [{path: {type: RegularExpression, value: '/(['}}]
    backendRefs: [{name: web, port: 80}]
";

/// Lets HTTPRoutes of `shop` use the Services of `payments`.
const GRANT: &str = "apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: shop-routes, namespace: payments}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]
  to: [{group: '', kind: Service}]
";

/// Every Gateway API route kind through a real gateway Envoy: HTTP, gRPC to
/// a real gRPC server, weighted TCP, TLS passthrough by SNI; bad routes are
/// reported with the specification's reasons or a clear error, and never
/// break the others; a ReferenceGrant lets the refused backend in.
fn gateway_api_route_kinds(delta: bool) {
    let work = tempfile::tempdir().expect("work dir");
    grpc::ensure_grpcio(work.path());
    let (_greeter, greeter_port) = grpc::start_server(work.path(), "127.0.0.51", "greeter-v1");
    let greeter: SocketAddr = format!("127.0.0.51:{greeter_port}").parse().expect("addr");
    let web = Upstream::start("127.0.0.52", "web");
    let echo_a = Upstream::start("127.0.0.53", "echo-a");
    let echo_b = Upstream::start("127.0.0.54", "echo-b");
    let billing = Upstream::start("127.0.0.55", "billing");
    let db_app = Upstream::start("127.0.0.56", "db");
    let ca_dir = tempfile::tempdir().expect("CA dir");
    ca_init(ca_dir.path());
    let ca = Ca::load(
        &ca_dir.path().join("root-cert.pem"),
        &ca_dir.path().join("root-key.pem"),
        &[],
    )
    .expect("CA");
    let root = ca.trusted_pem().to_string();
    let db_cert = ca
        .issue_server(&["db.example.com".to_string()], Duration::from_secs(3600))
        .expect("db certificate");
    let db_addr: SocketAddr = format!("127.0.0.57:{}", free_port("127.0.0.57"))
        .parse()
        .expect("addr");
    let _db = Envoy::start(&tls_front(
        db_addr,
        &db_cert.chain_pem,
        &db_cert.key_pem,
        None,
        db_app.addr(),
    ));

    let [http_port, tcp_port, tls_port] = [(); 3].map(|_| free_port("127.0.0.1"));
    let dir = tempfile::tempdir().expect("config dir");
    let services = [
        service("web", 80, "http", &[("v1", web.addr())]),
        service("greeter", 50051, "grpc", &[("v1", greeter)]),
        service("echo-a", 80, "tcp", &[("v1", echo_a.addr())]),
        service("echo-b", 80, "tcp", &[("v1", echo_b.addr())]),
        service("db", 443, "tls", &[("v1", db_addr)]),
        service("billing", 80, "http", &[("v1", billing.addr())]).replace("shop", "payments"),
    ]
    .concat();
    mesh::write_atomic(dir.path(), "services.yaml", &services);
    mesh::write_atomic(
        dir.path(),
        "routes.yaml",
        &gateway_api_routes(http_port, tcp_port, tls_port),
    );
    mesh::write_atomic(dir.path(), "broken.yaml", BROKEN_ROUTE);
    let shmesh = Shmesh::start(dir.path());
    let _envoy = shmesh.gateway_proxy(
        "edge",
        "gateway.networking.k8s.io/gateway-name=routes",
        None,
        delta,
    );
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().expect("addr");

    // HTTP, and gRPC by method to the real gRPC server.
    eventually("the gateway routes web.example.com", || {
        http_get(http, "web.example.com", "/", &[]).is_ok_and(|r| r.body == "web")
    });
    let replies = grpc::call(
        work.path(),
        &http.to_string(),
        5,
        &[],
        &["--authority", "grpc.example.com"],
        "grpc-through-gateway",
    );
    assert_eq!(replies, vec!["greeter-v1"; 5]);
    let (status, rollout) =
        shmesh.admin_get("/debug/rollout?kind=GRPCRoute&namespace=shop&name=greeter");
    assert_eq!(status, 200, "{rollout}");
    let rollout: serde_json::Value = serde_json::from_str(&rollout).expect("JSON");
    assert_eq!(rollout["live"], true, "{rollout}");
    assert_eq!(
        rollout["acked"].as_array().map(Vec::len),
        Some(1),
        "{rollout}"
    );

    // A weighted TCP route: 70/30 over 300 connections (±10 points is 3.8
    // standard deviations of the binomial share).
    let tcp: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().expect("addr");
    eventually("the gateway proxies TCP", || {
        http_get(tcp, "any", "/", &[]).is_ok_and(|r| r.status == 200)
    });
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..300 {
        let r = http_get(tcp, "any", "/", &[]).expect("a TCP connection through the gateway");
        *counts.entry(r.body).or_default() += 1;
    }
    eprintln!("TCPRoute split over 300 connections: {counts:?}");
    let a = counts.get("echo-a").copied().unwrap_or(0) as f64 / 3.0;
    assert!((a - 70.0).abs() <= 10.0, "echo-a took {a}%: {counts:?}");

    // TLS passed through by SNI: the client sees db's own certificate.
    let tls: SocketAddr = format!("127.0.0.1:{tls_port}").parse().expect("addr");
    let mut last = String::new();
    eventually(
        "the gateway passes db.example.com through",
        || match https_get(tls, "db.example.com", "/", &root) {
            Ok((r, serial)) => {
                last = format!("{} {} {serial}", r.status, r.body);
                r.status == 200 && r.body == "db" && serial == serial_of(&db_cert)
            }
            Err(e) => {
                last = e;
                false
            }
        },
    );

    // Bad routes: each reported, none served, the rest unaffected.
    let (_, problems) = shmesh.admin_get("/debug/problems");
    let problems: serde_json::Value = serde_json::from_str(&problems).expect("JSON");
    let listed = |list: &str, needles: &[&str]| {
        problems[list].as_array().is_some_and(|items| {
            items
                .iter()
                .filter_map(|p| p.as_str())
                .any(|p| needles.iter().all(|n| p.contains(n)))
        })
    };
    for (list, needles) in [
        (
            "errors",
            &[
                "broken.yaml",
                "HTTPRoute shop/broken",
                "spec.rules[0].matches[0].path.value",
            ][..],
        ),
        (
            "warnings",
            &[
                "HTTPRoute shop/lost",
                "spec.parentRefs[0]",
                "NoMatchingParent",
            ][..],
        ),
        (
            "warnings",
            &[
                "HTTPRoute shop/billing",
                "spec.rules[0].backendRefs[0]",
                "RefNotPermitted",
            ][..],
        ),
        (
            "warnings",
            &[
                "Gateway edge/routes",
                "spec.listeners[1].port",
                "ProtocolConflict",
            ][..],
        ),
    ] {
        assert!(
            listed(list, needles),
            "no {list} entry with {needles:?} in {problems:#}"
        );
    }
    let refused = http_get(http, "billing.example.com", "/", &[]).expect("response");
    assert_eq!(
        refused.status, 500,
        "a backend no ReferenceGrant allows was used"
    );
    let broken = http_get(http, "broken.example.com", "/", &[]).expect("response");
    assert_eq!(broken.status, 404, "the broken route was applied");
    assert!(http_get(http, "web.example.com", "/", &[]).is_ok_and(|r| r.body == "web"));

    // The grant lets the route reach payments' Service.
    mesh::write_atomic(dir.path(), "grant.yaml", GRANT);
    eventually("the granted backend is used", || {
        http_get(http, "billing.example.com", "/", &[]).is_ok_and(|r| r.body == "billing")
    });
    drop(shmesh);
}

#[test]
fn gateway_api_route_kinds_delta() {
    gateway_api_route_kinds(true);
}

#[test]
fn gateway_api_route_kinds_sotw() {
    gateway_api_route_kinds(false);
}
