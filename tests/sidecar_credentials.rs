//! DestinationRule `credentialName` on a sidecar, in real pod network
//! namespaces: a meshed pod's app calls an external bank service in plain
//! HTTP, and its sidecar originates mutual TLS with the client certificate of
//! a Kubernetes Secret (from the config files), verifying the bank's
//! certificate against the Secret's CA. Needs root (skipped otherwise).
//!
//! Pod `a` proves service account `a` and is picked by the rule's workload
//! selector; pod `e` carries the same labels but proves nothing, so it must
//! never receive the Secret. Pod `x` is the bank: an Envoy terminating TLS
//! that requires a client certificate its own CA signed, in front of an app.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::tls_front;
use common::http::{describe, http_get_in, is_ok as ok};
use common::pod_network::{ca_init, Identity, PodNetwork, Workload};
use common::{eventually, mesh, Envoy, EnvoyOptions, Upstream};
use shmesh::ca::{Ca, Issued};

const BANK: &str = "bank.example.com";
const BANK_VIP: &str = "10.96.0.30";
const CLIENT_ID: &str = "spiffe://bank.example/ns/clients/sa/shop";
const RENEWED_ID: &str = "spiffe://bank.example/ns/clients/sa/shop-renewed";

/// The bank as a ServiceEntry on a VIP the capture intercepts, the rule
/// that gives pods labelled `app: a` its client certificate, and the Secret.
fn config(bank_ip: &str, client: &Issued, bank_ca_pem: &str) -> String {
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: bank, namespace: shop}}
spec:
  hosts: [{BANK}]
  addresses: [{BANK_VIP}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints: [{{address: {bank_ip}, ports: {{http: 8443}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: bank, namespace: shop}}
spec:
  host: {BANK}
  workloadSelector: {{matchLabels: {{app: a}}}}
  trafficPolicy:
    tls: {{mode: MUTUAL, credentialName: bank-client, sni: {BANK}, subjectAltNames: [{BANK}]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: bank-client, namespace: shop}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}  ca.crt: |
{}",
        indent(&client.chain_pem),
        indent(&client.key_pem),
        indent(bank_ca_pem),
    )
}

fn credential_name(delta: bool) {
    let Some(net) = PodNetwork::create("sidecar credentials") else {
        return;
    };
    let [a, e, x] = ["a", "e", "x"].map(|name| net.pod(name));
    // The mesh's CA, and the bank's own, which signs both ends of its TLS.
    let mesh_ca = tempfile::tempdir().expect("CA dir");
    ca_init(mesh_ca.path());
    let bank_dir = tempfile::tempdir().expect("bank CA dir");
    Ca::create_root(bank_dir.path(), "bank").expect("bank CA");
    let bank_ca = Ca::load(
        &bank_dir.path().join("root-cert.pem"),
        &bank_dir.path().join("root-key.pem"),
        &[],
    )
    .expect("load bank CA");
    let hour = Duration::from_secs(3600);
    let server = bank_ca
        .issue_server(&[BANK.to_string()], hour)
        .expect("bank server certificate");
    let client = bank_ca
        .issue_workload(CLIENT_ID, hour)
        .expect("client certificate");

    let x_ip = x.ip.to_string();
    let app = x.netns.run(|| Upstream::start_at(&x_ip, 8080, "bank"));
    // The bank's TLS front requires a client certificate its CA signed.
    let listen: SocketAddr = format!("{x_ip}:8443").parse().expect("addr");
    let _front = Envoy::start_with(
        &tls_front(
            listen,
            &server.chain_pem,
            &server.key_pem,
            Some(bank_ca.trusted_pem()),
            app.addr(),
        ),
        EnvoyOptions {
            netns: Some(x.netns.clone()),
            ..EnvoyOptions::default()
        },
    );
    let dir = tempfile::tempdir().expect("config dir");
    mesh::write_atomic(
        dir.path(),
        "bank.yaml",
        &config(&x_ip, &client, bank_ca.trusted_pem()),
    );
    let shmesh = net.shmesh_with_ca(dir.path(), mesh_ca.path(), &[]);
    let workload = |account: Option<&'static str>| Workload {
        namespace: "shop",
        labels: &[("app", "a")],
        delta,
        identity: account.map(|service_account| Identity {
            service_account,
            ca_dir: mesh_ca.path(),
        }),
    };
    let sidecar_a = net.sidecar(&a, &shmesh, &workload(Some("a")));
    let sidecar_e = net.sidecar(&e, &shmesh, &workload(None));

    // a's app speaks plain HTTP; its sidecar presents the Secret's certificate.
    let vip: SocketAddr = format!("{BANK_VIP}:80").parse().expect("vip");
    let mut last = String::new();
    eventually("a reaches the bank with the Secret's certificate", || {
        let r = http_get_in(&a.netns, vip, BANK, "/balance");
        last = describe(&r);
        ok(&r)
    });
    let seen = app.last_request().expect("the bank's app saw the request");
    let xfcc = seen
        .header("x-forwarded-client-cert")
        .unwrap_or_else(|| panic!("no XFCC at the bank: {:?}", seen.headers));
    assert!(xfcc.contains(&format!("URI={CLIENT_ID}")), "{xfcc}");
    let names = sidecar_a.secret_names();
    assert!(
        names.contains(&"kubernetes://bank-client".to_string())
            && names.contains(&"kubernetes://bank-client-cacert".to_string()),
        "a's secrets: {names:?}"
    );

    // e has a's labels but proved nothing: no Secret, no way in.
    eventually("e has its routing config", || {
        sidecar_e
            .stat("cluster_manager.active_clusters")
            .is_some_and(|n| n > 2)
    });
    let r = http_get_in(&e.netns, vip, BANK, "/balance");
    assert!(!ok(&r), "e reached the bank: {}", describe(&r));
    assert!(
        !sidecar_e
            .secret_names()
            .iter()
            .any(|n| n.starts_with("kubernetes://")),
        "e received the Secret"
    );
    assert_eq!(app.hits(), 1, "the bank's app saw e's request ({last})");
    // The Secret changes: a's sidecar presents the new certificate.
    let renewed = bank_ca
        .issue_workload(RENEWED_ID, hour)
        .expect("renewed client certificate");
    mesh::write_atomic(
        dir.path(),
        "bank.yaml",
        &config(&x_ip, &renewed, bank_ca.trusted_pem()),
    );
    eventually("the bank sees the renewed certificate", || {
        let r = http_get_in(&a.netns, vip, BANK, "/renewed");
        ok(&r)
            && app.last_request().is_some_and(|seen| {
                seen.header("x-forwarded-client-cert")
                    .is_some_and(|x| x.contains(&format!("URI={RENEWED_ID}")))
            })
    });
    let log = shmesh.log();
    assert!(
        !log.contains("PRIVATE KEY") && !log.contains(client.key_pem.lines().nth(1).unwrap_or("-")),
        "a key was logged"
    );
    drop(shmesh);
}

#[test]
fn credential_name_delta() {
    credential_name(true);
}

#[test]
fn credential_name_sotw() {
    credential_name(false);
}
