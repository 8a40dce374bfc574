//! Mutual TLS between sidecars in real pod network namespaces, with
//! certificates from shmesh's own CA: proxies prove their identity to the
//! xDS TLS listener with credentials from `shmesh bootstrap`, receive
//! short-lived workload certificates over ADS and renew them under load.
//! Needs root (skipped otherwise).
//!
//! Shop has services `b` and `d`; pods `a`, `b` and `d` are meshed
//! (`security.istio.io/tlsMode: istio`), `c` is outside the mesh, `e` is
//! meshed but its proxy proves nothing.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http::{describe, http_get_in, is_ok as ok, HttpClient};
use common::pod_network::{ca_init, meshed_service, Identity, PodNetwork, Workload};
use common::{eventually, mesh, Envoy, Upstream};

const TRUST_DOMAIN: &str = "cluster.local";

const STRICT: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec:\n  mtls: {mode: STRICT}\n";

/// The serial numbers and URI SANs of the workload certificates `envoy`
/// holds, from its admin `/certs`.
fn workload_certificates(envoy: &Envoy) -> Vec<(String, String)> {
    let (status, body) = envoy.admin_get("/certs");
    assert_eq!(status, 200, "{body}");
    let certs: serde_json::Value = serde_json::from_str(&body).expect("/certs is JSON");
    let mut out = Vec::new();
    for entry in certs["certificates"].as_array().into_iter().flatten() {
        for cert in entry["cert_chain"].as_array().into_iter().flatten() {
            let serial = cert["serial_number"].as_str().unwrap_or("").to_string();
            let uri = cert["subject_alt_names"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|san| san["uri"].as_str())
                .unwrap_or("")
                .to_string();
            out.push((serial, uri));
        }
    }
    out
}

fn mutual_tls(delta: bool) {
    let Some(net) = PodNetwork::create("sidecar mtls") else {
        return;
    };
    let [a, b, c, d, e] = ["a", "b", "c", "d", "e"].map(|name| net.pod(name));
    let ca = tempfile::tempdir().expect("CA dir");
    ca_init(ca.path());
    let dir = tempfile::tempdir().expect("config dir");
    let shop = meshed_service("shop", "b", "10.96.0.20", &b.ip.to_string(), "b")
        + &meshed_service("shop", "d", "10.96.0.21", &d.ip.to_string(), "d");
    mesh::write_atomic(dir.path(), "shop.yaml", &shop);
    // Renewed every 2 s: several renewals within the test.
    let shmesh = net.shmesh_with_ca(dir.path(), ca.path(), &["--workload-cert-ttl", "4s"]);
    let app_b = b
        .netns
        .run(|| Upstream::start_at(&b.ip.to_string(), 8080, "b"));
    let _app_d = d
        .netns
        .run(|| Upstream::start_at(&d.ip.to_string(), 8080, "d"));
    let workload = |app, account: Option<&'static str>| Workload {
        namespace: "shop",
        labels: app,
        delta,
        identity: account.map(|service_account| Identity {
            service_account,
            ca_dir: ca.path(),
        }),
    };
    let sidecar_a = net.sidecar(&a, &shmesh, &workload(&[("app", "a")], Some("a")));
    let sidecar_b = net.sidecar(&b, &shmesh, &workload(&[("app", "b")], Some("b")));
    // d's manifest says service account d; its proxy proves x.
    let _sidecar_d = net.sidecar(&d, &shmesh, &workload(&[("app", "d")], Some("x")));
    let sidecar_e = net.sidecar(&e, &shmesh, &workload(&[("app", "e")], None));

    // a → b is mutual TLS: b's app sees a's identity in XFCC.
    let vip_b: SocketAddr = "10.96.0.20:80".parse().expect("vip");
    let mut last = String::new();
    eventually("a reaches b over mTLS", || {
        let r = http_get_in(&a.netns, vip_b, "b.shop.svc.cluster.local", "/hello");
        last = describe(&r);
        ok(&r)
    });
    let seen = app_b.last_request().expect("b's app saw the request");
    let xfcc = seen
        .header("x-forwarded-client-cert")
        .unwrap_or_else(|| panic!("no XFCC at b: {:?}", seen.headers));
    assert!(
        xfcc.contains(&format!("By=spiffe://{TRUST_DOMAIN}/ns/shop/sa/b"))
            && xfcc.contains(&format!("URI=spiffe://{TRUST_DOMAIN}/ns/shop/sa/a")),
        "{xfcc}"
    );
    assert!(
        sidecar_a
            .stat("cluster.outbound|80||b.shop.svc.cluster.local;.ssl.handshake")
            .unwrap_or(0)
            >= 1,
        "a's connection to b was not TLS"
    );
    let certs_b = workload_certificates(&sidecar_b);
    assert!(
        certs_b
            .iter()
            .any(|(_, uri)| *uri == format!("spiffe://{TRUST_DOMAIN}/ns/shop/sa/b")),
        "{certs_b:?}"
    );

    // d proves identity x while its pod claims d: a refuses it.
    let vip_d: SocketAddr = "10.96.0.21:80".parse().expect("vip");
    eventually("d's sidecar has its certificate", || {
        !workload_certificates(&_sidecar_d).is_empty()
    });
    let r = http_get_in(&a.netns, vip_d, "d.shop.svc.cluster.local", "/");
    assert!(
        !ok(&r),
        "a reached d, whose identity is not its own: {}",
        describe(&r)
    );
    assert!(
        sidecar_a
            .stat("cluster.outbound|80||d.shop.svc.cluster.local;.ssl.fail_verify_san")
            .unwrap_or(0)
            >= 1,
        "a did not refuse d's SAN"
    );

    // e proved nothing: routing config, but no certificate.
    let pod_b: SocketAddr = format!("{}:8080", b.ip).parse().expect("addr");
    eventually("e reaches b", || {
        ok(&http_get_in(&e.netns, vip_b, "b", "/from-e"))
    });
    assert!(workload_certificates(&sidecar_e).is_empty());
    let secrets = sidecar_e.secret_names();
    assert!(secrets.is_empty(), "e received secrets: {secrets:?}");
    assert!(shmesh.metric("shmesh_identity_unproven_total") >= 1);
    assert!(!shmesh.log().contains("PRIVATE KEY"), "a key was logged");

    // Renewal under steady load: new connections and a kept-alive one.
    let mut serials = BTreeSet::new();
    let mut kept = HttpClient::connect_in(Some(a.netns.clone()), vip_b).expect("connect to b");
    let (mut sent, mut failed) = (0, Vec::new());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(9) {
        for (serial, _) in workload_certificates(&sidecar_b) {
            serials.insert(serial);
        }
        let fresh = http_get_in(&a.netns, vip_b, "b", "/fresh");
        let reused = kept.get("b", "/kept", &[]);
        for r in [fresh, reused] {
            sent += 1;
            if !ok(&r) {
                failed.push(describe(&r));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{sent} requests across {} certificates of b, {} failed",
        serials.len(),
        failed.len()
    );
    assert!(
        serials.len() >= 3,
        "b's certificate was not renewed twice: {serials:?}"
    );
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}",
        failed.len()
    );
    assert!(shmesh.metric("shmesh_workload_certificates_issued_total") >= 6);

    // Under PERMISSIVE, c (outside the mesh) reaches b in plain text ...
    let r = http_get_in(&c.netns, pod_b, "b", "/from-c");
    assert!(ok(&r), "c → b under PERMISSIVE: {}", describe(&r));
    // ... under STRICT it is refused, while a still gets through.
    mesh::write_atomic(dir.path(), "strict.yaml", STRICT);
    eventually("STRICT refuses c", || {
        !ok(&http_get_in(&c.netns, pod_b, "b", "/from-c"))
    });
    let r = http_get_in(&a.netns, vip_b, "b", "/strict");
    assert!(ok(&r), "a → b under STRICT: {} ({last})", describe(&r));
    drop(shmesh);
}

#[test]
fn mutual_tls_with_shmesh_ca_delta() {
    mutual_tls(true);
}

#[test]
fn mutual_tls_with_shmesh_ca_sotw() {
    mutual_tls(false);
}
