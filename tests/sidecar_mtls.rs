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
use std::path::Path;
use std::time::{Duration, Instant};

use common::http::{http_get_in, HttpClient};
use common::pod_network::{Identity, PodNetwork, Workload};
use common::{eventually, mesh, Envoy, Response, Shmesh, Upstream};

const TRUST_DOMAIN: &str = "cluster.local";

/// A meshed service of `shop` on clusterIP `vip`, port 80 to 8080, and its
/// one pod, whose manifest names service account `account`.
fn service(name: &str, vip: &str, pod_ip: &str, account: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  clusterIP: {vip}\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-1\n  namespace: shop\n  labels: {{app: {name}, security.istio.io/tlsMode: istio}}\nspec: {{serviceAccountName: {account}}}\nstatus: {{podIP: {pod_ip}, phase: Running, conditions: [{{type: Ready, status: \"True\"}}]}}\n---\n"
    )
}

const STRICT: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec:\n  mtls: {mode: STRICT}\n";

fn ok(r: &Result<Response, String>) -> bool {
    matches!(r, Ok(r) if r.status == 200)
}

fn describe(r: &Result<Response, String>) -> String {
    match r {
        Ok(r) => format!("{} {}", r.status, r.body),
        Err(e) => e.clone(),
    }
}

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

fn shmesh_counter(shmesh: &Shmesh, name: &str) -> u64 {
    let (_, text) = shmesh.admin_get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

fn ca_init(dir: &Path) {
    let out = std::process::Command::new(common::shmesh_binary())
        .args(["ca", "init"])
        .arg(dir)
        .output()
        .expect("run shmesh ca init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mutual_tls(delta: bool) {
    let Some(net) = PodNetwork::create("sidecar mtls") else {
        return;
    };
    let [a, b, c, d, e] = ["a", "b", "c", "d", "e"].map(|name| net.pod(name));
    let ca = tempfile::tempdir().expect("CA dir");
    ca_init(ca.path());
    let dir = tempfile::tempdir().expect("config dir");
    let shop = service("b", "10.96.0.20", &b.ip.to_string(), "b")
        + &service("d", "10.96.0.21", &d.ip.to_string(), "d");
    mesh::write_atomic(dir.path(), "shop.yaml", &shop);
    let root = ca.path().join("root-cert.pem");
    let key = ca.path().join("root-key.pem");
    let node_ip = net.node_ip().to_string();
    let tls_addr = format!("{node_ip}:0");
    let shmesh = Shmesh::start_in(
        net.node(),
        &node_ip,
        dir.path(),
        &[
            "--ca-cert",
            root.to_str().expect("utf-8 path"),
            "--ca-key",
            key.to_str().expect("utf-8 path"),
            "--xds-tls-addr",
            &tls_addr,
            "--xds-tls-name",
            &node_ip,
            // Renewed every 2 s: several renewals within the test.
            "--workload-cert-ttl",
            "4s",
        ],
    );
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
    let dump = sidecar_e.config_dump();
    let secrets = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with("SecretsConfigDump"))
        })
        .flat_map(|c| {
            c["dynamic_active_secrets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .count();
    assert_eq!(secrets, 0, "e received secrets");
    assert!(shmesh_counter(&shmesh, "shmesh_identity_unproven_total") >= 1);
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
    assert!(shmesh_counter(&shmesh, "shmesh_workload_certificates_issued_total") >= 6);

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
