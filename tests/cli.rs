//! The one-shot commands as a user runs them: `validate`, `translate`,
//! `bootstrap`.

mod common;

use std::process::Command;

fn shmesh(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shmesh"))
        .args(args)
        .output()
        .expect("run shmesh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_bundled_example_is_clean() {
    let (code, out, _) = shmesh(&["validate", "examples/bookinfo"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.is_empty(), "{out}");
}

#[test]
fn validate_reports_each_problem_on_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: reviews, namespace: shop}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: -1\n    - destination: {host: reviews}\n      weight: 1\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr, namespace: shop}\nspec:\n  host: \"\"\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ok, namespace: shop}\nspec:\n  hosts: [ok]\n  http:\n  - match: [{uri: {regex: \"[\"}}]\n    route: [{destination: {host: ok}}]\n",
    )
    .expect("write");
    let (code, out, _) = shmesh(&["validate", path.to_str().expect("utf8 path")]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(": error: ")).collect();
    let shown = path.display().to_string();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines.iter().any(|l| l.starts_with(&format!("{shown}:1: error: VirtualService shop/reviews: spec.http[0].route[0].weight: weight -1 is negative"))), "{out}");
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{shown}:13: error: DestinationRule shop/dr: spec.host: host is required"
        ))),
        "{out}"
    );
    assert!(lines.iter().any(|l| l.starts_with(&format!("{shown}:19: error: VirtualService shop/ok: spec.http[0].match[0].uri.regex: invalid regex"))), "{out}");
}

#[test]
fn validate_warns_on_unknown_subset_but_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("mesh.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec: {ports: [{name: http, port: 9080}]}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v9}}]\n",
    )
    .expect("write");
    let (code, out, _) = shmesh(&["validate", dir.path().to_str().expect("utf8")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "warning: VirtualService default/reviews: spec.http[0].route[0].destination.subset"
        ),
        "{out}"
    );
}

#[test]
fn translate_prints_config_dump_for_the_node() {
    let (code, out, err) = shmesh(&[
        "translate",
        "--config-dir",
        "examples/bookinfo",
        "--node",
        "sidecar~127.0.0.11~productpage-v1.default~default.svc.cluster.local",
    ]);
    assert_eq!(code, 0, "{err}");
    let dump: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let configs = dump["configs"].as_array().expect("configs");
    let types: Vec<&str> = configs.iter().filter_map(|c| c["@type"].as_str()).collect();
    assert_eq!(
        types,
        vec![
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
            "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
        ]
    );
    let clusters: Vec<&str> = configs[0]["dynamic_active_clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .filter_map(|c| c["cluster"]["name"].as_str())
        .collect();
    assert!(
        clusters.contains(&"outbound|9080|v3|reviews.default.svc.cluster.local"),
        "{clusters:?}"
    );
    let listeners: Vec<&str> = configs[2]["dynamic_listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert_eq!(
        listeners,
        vec![
            "0.0.0.0_80",
            "0.0.0.0_9080",
            "virtualInbound",
            "virtualOutbound"
        ]
    );
    // Short names resolve in the node's namespace.
    let routes = configs[3].to_string();
    assert!(routes.contains("\"reviews:9080\""));
}

#[test]
fn translate_short_names_depend_on_node_namespace() {
    let (code, out, err) = shmesh(&[
        "translate",
        "--config-dir",
        "examples/bookinfo",
        "--node",
        "n",
        "--namespace",
        "other",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("\"reviews:9080\""),
        "a proxy in another namespace must not get bare short names"
    );
    assert!(out.contains("\"reviews.default:9080\""));
}

#[test]
fn bootstrap_is_valid_json_for_envoy() {
    let (code, out, err) = shmesh(&[
        "bootstrap",
        "--node",
        "n1",
        "--namespace",
        "default",
        "--xds-addr",
        "127.0.0.1:15010",
        "--api",
        "sotw",
    ]);
    assert_eq!(code, 0, "{err}");
    let b: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(b["node"]["id"], "n1");
    assert_eq!(b["node"]["cluster"], "n1");
    assert_eq!(b["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
    assert_eq!(b["static_resources"]["clusters"][0]["name"], "xds-grpc");
}

/// Each `--xds-addr` (one per replica) is an endpoint of the xds-grpc
/// cluster; a token, sent by Envoy's Google gRPC client, takes only one.
#[test]
fn bootstrap_points_at_every_replica_given() {
    let (code, out, err) = shmesh(&[
        "bootstrap",
        "--node",
        "n1",
        "--xds-addr",
        "127.0.0.1:15010",
        "--xds-addr",
        "127.0.0.2:15010,127.0.0.3:15011",
    ]);
    assert_eq!(code, 0, "{err}");
    let b: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let cluster = &b["static_resources"]["clusters"][0];
    let endpoints: Vec<String> = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        .as_array()
        .expect("lb_endpoints")
        .iter()
        .map(|e| {
            let a = &e["endpoint"]["address"]["socket_address"];
            format!(
                "{}:{}",
                a["address"].as_str().unwrap_or("?"),
                a["port_value"]
            )
        })
        .collect();
    assert_eq!(
        endpoints,
        ["127.0.0.1:15010", "127.0.0.2:15010", "127.0.0.3:15011"]
    );
    if let Err(e) = common::envoy_validate(&out) {
        panic!("Envoy rejected the bootstrap: {e}");
    }
    let (code, _, err) = shmesh(&[
        "bootstrap",
        "--node",
        "n1",
        "--xds-addr",
        "127.0.0.1:15012,127.0.0.2:15012",
        "--token-file",
        "/var/run/secrets/tokens/istio-token",
        "--xds-root-cert",
        "/etc/root-cert.pem",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--token-file takes a single --xds-addr"),
        "{err}"
    );
}

/// Envoy itself accepts the printed bootstrap (`--mode validate`), for both ADS flavours.
#[test]
fn bootstrap_passes_envoy_validation() {
    for api in ["sotw", "delta"] {
        let (code, out, err) = shmesh(&[
            "bootstrap",
            "--node",
            "n1",
            "--xds-addr",
            "127.0.0.1:15010",
            "--outbound-listener",
            "127.0.0.1:15080",
            "--api",
            api,
        ]);
        assert_eq!(code, 0, "{err}");
        if let Err(e) = common::envoy_validate(&out) {
            panic!("Envoy rejected the {api} bootstrap: {e}");
        }
    }
}

/// The Prometheus endpoint is istio-proxy's, 0.0.0.0:15090 passed to the
/// admin, unless moved or left out; it needs an admin port to pass to.
#[test]
fn bootstrap_prometheus_endpoint_moves_or_goes() {
    let base = ["bootstrap", "--node", "n1", "--xds-addr", "127.0.0.1:15010"];
    let listeners = |extra: &[&str]| {
        let (code, out, err) = shmesh(&[&base[..], extra].concat());
        assert_eq!(code, 0, "{err}");
        let b: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        b["static_resources"]["listeners"].clone()
    };
    let default = listeners(&[]);
    assert_eq!(default[0]["name"], "prometheus");
    assert_eq!(
        default[0]["address"],
        serde_json::json!({"socket_address": {"address": "0.0.0.0", "port_value": 15090}})
    );
    let moved = listeners(&["--prometheus-addr", "127.0.0.9:9090"]);
    assert_eq!(
        moved[0]["address"],
        serde_json::json!({"socket_address": {"address": "127.0.0.9", "port_value": 9090}})
    );
    assert!(listeners(&["--prometheus-addr", "none"]).is_null());

    let (code, _, err) = shmesh(&[&base[..], &["--admin-addr", "127.0.0.1:0"]].concat());
    assert_ne!(code, 0);
    assert!(err.contains("--admin-addr"), "{err}");
    let (code, _, err) = shmesh(&[&base[..], &["--prometheus-addr", "15090"]].concat());
    assert_ne!(code, 0);
    assert!(err.contains("neither an address"), "{err}");
}

/// Tracing flags that make no sense are refused before anything is served,
/// naming the flag and what is wrong.
#[test]
fn serve_refuses_bad_tracing_flags() {
    for (args, says) in [
        (&["--tracing-zipkin", "zipkin"][..], "is not HOST:PORT"),
        (
            &["--tracing-zipkin", "zip kin:9411"][..],
            "neither an IP nor a DNS name",
        ),
        (&["--tracing-otel", "otel:0"][..], "must not be 0"),
        (&["--tracing-sampling", "101"][..], "not a percent"),
        (&["--tracing-tag", "=x"][..], "is not NAME=VALUE"),
        (&["--tracing-tag", "user=header:"][..], "names no header"),
        (
            &["--tracing-zipkin", "a:1", "--tracing-otel", "b:2"][..],
            "cannot be used with",
        ),
    ] {
        let (code, _, err) = shmesh(&[&["serve"][..], args].concat());
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(err.contains(args[0]), "{args:?} names the flag: {err}");
    }
}
