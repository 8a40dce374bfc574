//! `shmesh proxy-status` and `shmesh proxy-config` against real Envoys over
//! SotW and delta ADS: the real binary asks shmesh's admin server, and what
//! it prints is checked against what each Envoy reports of itself (its
//! version, its own `/config_dump`, its `/certs`).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{eventually, free_port, http_get, mesh, Envoy, Shmesh};
use serde_json::Value;

/// Runs `shmesh ARGS --admin-addr ADMIN`; its stdout, or a panic with its stderr.
fn shmesh_cli(shmesh: &Shmesh, args: &[&str]) -> String {
    let out = Command::new(common::shmesh_binary())
        .args(args)
        .args(["--admin-addr", &shmesh.admin.to_string()])
        .output()
        .expect("run shmesh");
    assert!(
        out.status.success(),
        "shmesh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The table's rows as cells (cells are separated by at least two spaces).
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

/// The proxy-status row of `name`.
fn status_row(text: &str, name: &str) -> Option<Vec<String>> {
    table(text)
        .into_iter()
        .find(|r| r.first().is_some_and(|c| c == name))
}

/// Envoy's version (`1.40.0`) from its `/server_info`.
fn envoy_version(envoy: &Envoy) -> String {
    let (status, body) = envoy.admin_get("/server_info");
    assert_eq!(status, 200, "{body}");
    let info = json_of(&body);
    let full = info["version"].as_str().expect("version");
    full.split('/')
        .nth(1)
        .expect("hash/VERSION/...")
        .to_string()
}

/// Names in `section` of Envoy's own config dump (dynamic resources only).
fn envoy_names(envoy: &Envoy, kind: &str, list: &str, path: &[&str]) -> BTreeSet<String> {
    let dump = envoy.config_dump();
    let section = dump["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .find(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with(&format!(".{kind}")))
        })
        .cloned()
        .unwrap_or(Value::Null);
    section[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            path.iter()
                .fold(e, |v, k| &v[*k])
                .as_str()
                .map(String::from)
        })
        .collect()
}

/// The clusters of Envoy's own config dump.
fn envoy_clusters(envoy: &Envoy) -> Vec<Value> {
    let dump = envoy.config_dump();
    dump["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .filter(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with(".ClustersConfigDump"))
        })
        .flat_map(|c| {
            c["dynamic_active_clusters"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|c| c["cluster"].clone())
        .collect()
}

/// Names of the resources `shmesh proxy-config KIND PROXY -o json` lists.
fn shmesh_names(shmesh: &Shmesh, kind: &str, proxy: &str, field: &str) -> BTreeSet<String> {
    let list = json_of(&shmesh_cli(
        shmesh,
        &["proxy-config", kind, proxy, "-o", "json"],
    ));
    list.as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r[field].as_str().map(String::from))
        .collect()
}

const SOTW_NODE: &str = "sidecar~127.0.0.1~productpage-1.default~default.svc.cluster.local";

/// Two Envoys on the reviews mesh: `envoy-delta` over delta ADS and, with an
/// Istio-style node id, `productpage-1.default` over SotW; both route.
struct Fleet {
    reviews: mesh::ReviewsOnV1,
    shmesh: Shmesh,
    delta: Envoy,
    sotw: Envoy,
    delta_listener: SocketAddr,
}

fn fleet() -> Fleet {
    let reviews = mesh::ReviewsOnV1::write();
    let shmesh = Shmesh::start(reviews.dir.path());
    let listener = || -> SocketAddr {
        format!("127.0.0.1:{}", free_port("127.0.0.1"))
            .parse()
            .expect("addr")
    };
    let (delta_listener, sotw_listener) = (listener(), listener());
    let delta = Envoy::start(&shmesh.bootstrap("envoy-delta", "default", delta_listener, true));
    let sotw = Envoy::start(&shmesh.bootstrap(SOTW_NODE, "default", sotw_listener, false));
    for (what, addr) in [("delta", delta_listener), ("sotw", sotw_listener)] {
        eventually(&format!("the {what} Envoy routes to reviews"), || {
            http_get(addr, "reviews:9080", "/", &[]).is_ok_and(|r| r.status == 200)
        });
    }
    Fleet {
        reviews,
        shmesh,
        delta,
        sotw,
        delta_listener,
    }
}

/// Waits until proxy-status shows `name` with every type SYNCED; returns its row.
fn wait_synced(shmesh: &Shmesh, name: &str) -> Vec<String> {
    let mut last = String::new();
    eventually(&format!("{name} shows SYNCED"), || {
        last = shmesh_cli(shmesh, &["proxy-status"]);
        status_row(&last, name).is_some_and(|r| r[1..5].iter().all(|c| c == "SYNCED"))
    });
    status_row(&last, name).expect("row")
}

#[test]
fn proxy_status_and_proxy_config_show_what_each_envoy_holds() {
    let f = fleet();
    let shmesh = &f.shmesh;
    for (name, envoy) in [
        ("envoy-delta", &f.delta),
        ("productpage-1.default", &f.sotw),
    ] {
        let row = wait_synced(shmesh, name);
        assert_eq!(row.len(), 7, "{row:?}");
        assert!(!row[5].is_empty(), "the ISTIOD column names shmesh");
        assert_eq!(row[6], envoy_version(envoy), "{row:?}");
    }
    let text = shmesh_cli(shmesh, &["proxy-status"]);
    assert_eq!(
        table(&text)[0],
        vec!["NAME", "CDS", "LDS", "EDS", "RDS", "ISTIOD", "VERSION"],
        "{text}"
    );
    // One proxy, as JSON.
    let one = json_of(&shmesh_cli(
        shmesh,
        &["proxy-status", "productpage-1.default", "-o", "json"],
    ));
    let rows = one.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{one}");
    assert_eq!(rows[0]["node_id"], SOTW_NODE);
    for ty in ["cds", "lds", "eds", "rds"] {
        assert_eq!(rows[0][ty], "SYNCED", "{one}");
    }
    assert_eq!(rows[0]["version"], envoy_version(&f.sotw).as_str());
    // /debug/syncz in istiod's words.
    let (status, body) = shmesh.admin_get("/debug/syncz");
    assert_eq!(status, 200, "{body}");
    let syncz = json_of(&body);
    let sotw = syncz
        .as_array()
        .expect("list")
        .iter()
        .find(|s| s["proxy"] == SOTW_NODE)
        .expect("the SotW proxy in syncz");
    assert_eq!(sotw["proxy_type"], "sidecar");
    assert!(!sotw["cluster_sent"].as_str().unwrap_or_default().is_empty());
    assert_eq!(sotw["cluster_sent"], sotw["cluster_acked"], "{sotw}");
    assert_eq!(sotw["route_sent"], sotw["route_acked"], "{sotw}");

    // proxy-config: the resources each Envoy holds, by Istio's names.
    for (proxy, envoy) in [
        ("envoy-delta", &f.delta),
        ("productpage-1.default", &f.sotw),
    ] {
        let clusters = shmesh_names(shmesh, "clusters", proxy, "name");
        assert!(clusters.contains("outbound|9080|v1|reviews.default.svc.cluster.local"));
        assert_eq!(
            clusters,
            envoy_names(
                envoy,
                "ClustersConfigDump",
                "dynamic_active_clusters",
                &["cluster", "name"]
            ),
            "{proxy}: clusters"
        );
        assert_eq!(
            shmesh_names(shmesh, "listeners", proxy, "name"),
            envoy_names(envoy, "ListenersConfigDump", "dynamic_listeners", &["name"]),
            "{proxy}: listeners"
        );
        assert_eq!(
            shmesh_names(shmesh, "routes", proxy, "name"),
            envoy_names(
                envoy,
                "RoutesConfigDump",
                "dynamic_route_configs",
                &["route_config", "name"]
            ),
            "{proxy}: routes"
        );
        // Envoy also lists the inline assignments of clusters that are not
        // EDS (BlackHoleCluster, PassthroughCluster): not sent over EDS.
        let eds_clusters: BTreeSet<String> = envoy_clusters(envoy)
            .into_iter()
            .filter(|c| c["type"] == "EDS")
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect();
        let envoy_assignments = envoy_names(
            envoy,
            "EndpointsConfigDump",
            "dynamic_endpoint_configs",
            &["endpoint_config", "cluster_name"],
        );
        assert_eq!(
            shmesh_names(shmesh, "endpoints", proxy, "cluster_name"),
            envoy_assignments
                .intersection(&eds_clusters)
                .cloned()
                .collect(),
            "{proxy}: endpoints"
        );
    }

    // The tables, as istioctl prints them.
    let clusters = table(&shmesh_cli(
        shmesh,
        &["proxy-config", "clusters", "envoy-delta"],
    ));
    assert_eq!(
        clusters[0],
        vec![
            "SERVICE FQDN",
            "PORT",
            "SUBSET",
            "DIRECTION",
            "TYPE",
            "DESTINATION RULE"
        ]
    );
    let row = |cells: &[&str]| cells.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    // The DestinationRule that made them, from the metadata shmesh writes
    // as istiod does.
    assert!(
        clusters.contains(&row(&[
            "reviews.default.svc.cluster.local",
            "9080",
            "v1",
            "outbound",
            "EDS",
            "reviews.default"
        ])),
        "{clusters:?}"
    );
    assert!(clusters.contains(&row(&[
        "reviews.default.svc.cluster.local",
        "9080",
        "-",
        "outbound",
        "EDS",
        "reviews.default"
    ])));
    let listeners = shmesh_cli(shmesh, &["proxy-config", "listeners", "envoy-delta"]);
    let header = listeners.lines().next().unwrap_or_default();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["ADDRESSES", "PORT", "MATCH", "DESTINATION"]
    );
    let port = f.delta_listener.port().to_string();
    assert!(
        listeners.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.len() >= 4
                && cells[0] == "127.0.0.1"
                && cells[1] == port
                && cells[2] == "ALL"
                && cells[3] == "Route:"
        }),
        "{listeners}"
    );
    let routes = table(&shmesh_cli(
        shmesh,
        &["proxy-config", "routes", "envoy-delta"],
    ));
    assert_eq!(
        routes[0],
        vec!["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"]
    );
    assert!(
        routes.iter().any(|r| r.get(1).map(String::as_str)
            == Some("reviews.default.svc.cluster.local:9080")
            && r.get(3).map(String::as_str) == Some("/*")
            && r.get(4).map(String::as_str) == Some("reviews.default")),
        "{routes:?}"
    );
    let endpoints = table(&shmesh_cli(
        shmesh,
        &["proxy-config", "endpoints", "envoy-delta"],
    ));
    assert_eq!(
        endpoints[0],
        vec!["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]
    );
    assert!(
        endpoints.contains(&row(&[
            &f.reviews.v1.addr().to_string(),
            "HEALTHY",
            "-",
            "outbound|9080|v1|reviews.default.svc.cluster.local"
        ])),
        "{endpoints:?}"
    );

    // A proxy that is not connected.
    let out = Command::new(common::shmesh_binary())
        .args(["proxy-config", "clusters", "nobody", "--admin-addr"])
        .arg(shmesh.admin.to_string())
        .output()
        .expect("run shmesh");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no proxy \"nobody\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `proxy-status` of the one proxy `name`, its row.
fn row_of(shmesh: &Shmesh, name: &str) -> Vec<String> {
    let text = shmesh_cli(shmesh, &["proxy-status", name]);
    status_row(&text, name).unwrap_or_else(|| panic!("no row for {name}: {text}"))
}

const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

#[test]
fn a_proxy_that_rejects_its_listeners_shows_lds_stale() {
    let reviews = mesh::ReviewsOnV1::write();
    let shmesh = Shmesh::start(reviews.dir.path());
    // Each Envoy is given a listener on an address something already holds:
    // it cannot bind it and rejects the listener update.
    let taken: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let addr = |i: usize| taken[i].local_addr().expect("addr");
    let _delta = Envoy::start(&shmesh.bootstrap("rejects-delta", "default", addr(0), true));
    let _sotw = Envoy::start(&shmesh.bootstrap("rejects-sotw", "default", addr(1), false));
    for name in ["rejects-delta", "rejects-sotw"] {
        let mut last = Vec::new();
        eventually(&format!("{name}: LDS shows STALE"), || {
            last = row_of(&shmesh, name);
            last[2] == "STALE"
        });
        // Clusters and endpoints were applied; no route was asked for,
        // since no listener names one.
        assert_eq!(last[1], "SYNCED", "{last:?}");
        assert_eq!(last[3], "SYNCED", "{last:?}");
        // STALE shows as soon as the listeners are sent; the NACK and its
        // reason follow when Envoy has tried to apply them.
        let mut entry = serde_json::Value::Null;
        eventually(&format!("{name}: syncz gives the NACK's reason"), || {
            let (_, body) = shmesh.admin_get("/debug/syncz");
            entry = json_of(&body)
                .as_array()
                .expect("list")
                .iter()
                .find(|s| s["proxy"] == name)
                .expect("in syncz")
                .clone();
            entry["resources"][LISTENER]["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("bind"))
        });
        assert_eq!(entry["resources"][LISTENER]["status"], "STALE", "{entry}");
        assert_ne!(entry["listener_sent"], entry["listener_acked"], "{entry}");
    }
}

#[test]
fn proxies_that_reconnect_holding_the_current_config_are_synced() {
    let mut f = fleet();
    wait_synced(&f.shmesh, "envoy-delta");
    wait_synced(&f.shmesh, "productpage-1.default");
    f.shmesh.restart();
    // Both reconnect to the new process, which holds the same configuration.
    for name in ["envoy-delta", "productpage-1.default"] {
        wait_synced(&f.shmesh, name);
    }
    // The SotW Envoy said it holds the current versions and was sent nothing.
    eventually(
        "the SotW stream took the versions its Envoy reported",
        || f.shmesh.log().contains("proxy holds the current version"),
    );
    let (_, body) = f.shmesh.admin_get("/debug/proxies");
    let proxies = json_of(&body);
    let sotw = proxies
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["node_id"] == SOTW_NODE)
        .expect("the SotW proxy")
        .clone();
    for ty in ["cds", "eds", "lds", "rds"] {
        assert!(sotw["sent"][ty].is_string(), "{sotw}");
        assert_eq!(sotw["sent"][ty], sotw["acked"][ty], "{sotw}");
    }
    // And both count as having applied the VirtualService.
    let mut report = Value::Null;
    let live = f.shmesh.wait_until(Duration::from_secs(10), |s| {
        let (_, body) =
            s.admin_get("/debug/rollout?kind=VirtualService&namespace=default&name=reviews");
        report = json_of(&body);
        report["live"] == true
    });
    assert!(live, "{report}");
    let acked: BTreeSet<&str> = report["acked"]
        .as_array()
        .expect("acked")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        acked,
        BTreeSet::from(["envoy-delta", SOTW_NODE]),
        "{report}"
    );
    // proxy-config still shows what the SotW Envoy holds.
    assert_eq!(
        shmesh_names(&f.shmesh, "clusters", "productpage-1.default", "name"),
        envoy_names(
            &f.sotw,
            "ClustersConfigDump",
            "dynamic_active_clusters",
            &["cluster", "name"]
        )
    );
}

const GATEWAY: &str = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: edge}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: PORT, name: https, protocol: HTTPS}
    bind: 127.0.0.1
    hosts: [\"*/secure.example.com\"]
    tls: {mode: SIMPLE, credentialName: secure-cert}
";

#[test]
fn proxy_config_secrets_shows_certificates_never_keys() {
    use shmesh::ca::Ca;
    let ca_dir = tempfile::tempdir().expect("CA dir");
    Ca::create_root(ca_dir.path(), "test").expect("CA");
    let ca = Ca::load(
        &ca_dir.path().join("root-cert.pem"),
        &ca_dir.path().join("root-key.pem"),
        &[],
    )
    .expect("load CA");
    let cert = ca
        .issue_server(
            &["secure.example.com".to_string()],
            Duration::from_secs(3600),
        )
        .expect("server certificate");
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let dir = tempfile::tempdir().expect("config dir");
    let port = free_port("127.0.0.1");
    mesh::write_atomic(
        dir.path(),
        "gateway.yaml",
        &GATEWAY.replace("PORT", &port.to_string()),
    );
    mesh::write_atomic(
        dir.path(),
        "secret.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: secure-cert, namespace: edge}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&cert.chain_pem),
            indent(&cert.key_pem)
        ),
    );
    let ca_cert = ca_dir.path().join("root-cert.pem");
    let ca_key = ca_dir.path().join("root-key.pem");
    let shmesh = Shmesh::start_with(
        dir.path(),
        &[
            "--ca-cert",
            ca_cert.to_str().expect("utf-8"),
            "--ca-key",
            ca_key.to_str().expect("utf-8"),
            "--xds-tls-addr",
            "127.0.0.1:0",
            "--xds-tls-name",
            "127.0.0.1",
        ],
    );
    let credentials = tempfile::tempdir().expect("credentials dir");
    let gateway = shmesh.gateway_proxy(
        "edge",
        "istio=ingressgateway",
        Some((ca_dir.path(), credentials.path())),
        true,
    );
    eventually("the gateway holds the Secret's certificate", || {
        gateway
            .secret_names()
            .iter()
            .any(|n| n.contains("secure-cert"))
    });
    let name = "gateway-1.edge";
    let mut rows = Vec::new();
    eventually("proxy-config secrets lists the certificate", || {
        rows = table(&shmesh_cli(&shmesh, &["proxy-config", "secrets", name]));
        rows.iter()
            .any(|r| r.first().is_some_and(|c| c.contains("secure-cert")))
    });
    assert_eq!(
        rows[0],
        vec![
            "RESOURCE NAME",
            "TYPE",
            "STATUS",
            "VALID CERT",
            "SERIAL NUMBER",
            "NOT AFTER",
            "NOT BEFORE",
            "SAN"
        ]
    );
    let secret = rows
        .iter()
        .find(|r| r.first().is_some_and(|c| c.contains("secure-cert")))
        .expect("row")
        .clone();
    assert_eq!(secret[1..4], ["Cert Chain", "ACTIVE", "true"], "{secret:?}");
    assert_eq!(secret[7], "secure.example.com", "{secret:?}");
    // The serial Envoy reports for the certificate it serves.
    let (_, certs) = gateway.admin_get("/certs");
    let serials: Vec<String> = json_of(&certs)["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["cert_chain"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["serial_number"].as_str().map(str::to_lowercase))
        .collect();
    assert!(
        serials
            .iter()
            .any(|s| secret[4].trim_start_matches('0') == s.trim_start_matches('0')),
        "{secret:?} vs Envoy's {serials:?}"
    );
    // No key material anywhere: not in the table, the JSON or the dump.
    let json = shmesh_cli(&shmesh, &["proxy-config", "secrets", name, "-o", "json"]);
    assert!(json.contains("[redacted]"), "{json}");
    let (_, dump) = shmesh.admin_get(&format!("/debug/config_dump?proxyID={name}"));
    for text in [&json, &dump] {
        assert!(!text.contains("PRIVATE KEY"));
        assert!(!text.contains(&cert.key_pem.lines().nth(1).unwrap_or("-").to_string()));
    }
    use base64::Engine;
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(&cert.key_pem);
    assert!(!dump.contains(&key_b64[..40]));
}
