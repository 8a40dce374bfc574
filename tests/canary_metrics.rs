//! Canary analysis on upstream Envoy's own series: the shipped Flagger
//! MetricTemplates and Argo Rollouts AnalysisTemplate
//! (`manifests/canary/`), evaluated over what a real Envoy bootstrapped by
//! `shmesh bootstrap` serves on its Prometheus endpoint, tell the success
//! rate and duration of a canary and of its primary.
//!
//! The mesh is laid out as Flagger's Istio provider lays it out: Services
//! `podinfo-primary` and `podinfo-canary`, and a VirtualService `podinfo`
//! splitting traffic between them by weight. The canary answers 500 to one
//! request in four and takes 12 ms per request; the primary answers 500 to
//! one in twenty. A sidecar sends traffic through Envoy; its Prometheus
//! endpoint is scraped before and after, the scrapes parsed by Prometheus'
//! own client, and each template's query (read from its file, with the
//! variables Flagger and Argo fill in) is parsed with a PromQL parser and
//! evaluated over the two scrapes (`promql`), as Prometheus
//! evaluates it over the window between them.

mod common;
#[path = "canary_metrics/promql.rs"]
mod promql;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use common::grpc::ensure_python_package;
use common::prometheus::{parse_as_written, Samples};
use common::{
    free_port, http_get, mesh, printed_bootstrap, Envoy, HttpClient, Reply, Shmesh, Upstream,
};
use promql::Window;

const NAMESPACE: &str = "test";
const PRIMARY: &str = "outbound|9898||podinfo-primary.test.svc.cluster.local";
const CANARY: &str = "outbound|9898||podinfo-canary.test.svc.cluster.local";
/// Requests sent while measuring.
const REQUESTS: usize = 200;
/// How long the canary takes to answer.
const CANARY_DELAY: Duration = Duration::from_millis(12);

/// Services, pods and endpoints of `podinfo` as Flagger's Istio provider
/// leaves them, and its VirtualService at 50/50.
fn podinfo(primary: SocketAddr, canary: SocketAddr) -> String {
    let mut out = String::new();
    for (service, app) in [
        ("podinfo", "podinfo-primary"),
        ("podinfo-primary", "podinfo-primary"),
        ("podinfo-canary", "podinfo"),
    ] {
        out.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {service}, namespace: {NAMESPACE}}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{name: http, port: 9898, targetPort: 9898}}]\n---\n"
        ));
    }
    for (pod, app, service, addr) in [
        (
            "podinfo-primary-1",
            "podinfo-primary",
            "podinfo-primary",
            primary,
        ),
        ("podinfo-1", "podinfo", "podinfo-canary", canary),
    ] {
        out.push_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: {NAMESPACE}, labels: {{app: {app}}}}}\nstatus: {{podIP: {ip}}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {pod}, namespace: {NAMESPACE}, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints:\n- addresses: [{ip}]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, name: {pod}, namespace: {NAMESPACE}}}\n---\n",
            ip = addr.ip(),
            port = addr.port(),
        ));
    }
    out.push_str(&format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {{name: podinfo, namespace: {NAMESPACE}}}\nspec:\n  hosts: [podinfo]\n  gateways: [mesh]\n  http:\n  - route:\n    - destination: {{host: podinfo-primary}}\n      weight: 50\n    - destination: {{host: podinfo-canary}}\n      weight: 50\n"
    ));
    out
}

/// An upstream that answers 500 to every `nth` request, after `delay`.
fn failing_every(ip: &str, name: &str, nth: usize, delay: Duration) -> Upstream {
    let seen = AtomicUsize::new(0);
    Upstream::start_with(ip, name, move |_| {
        std::thread::sleep(delay);
        if (seen.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(nth) {
            Reply::new(500, "failed")
        } else {
            Reply::new(200, "ok")
        }
    })
}

/// The documents of a shipped manifest file.
fn manifests(file: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).expect("read the template file");
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// A query with its template variables filled in as `vars` says; every
/// `{{ ... }}` must be among them.
fn render(query: &str, vars: &[(&str, &str)]) -> String {
    let mut out = query.to_string();
    for (placeholder, value) in vars {
        out = out.replace(placeholder, value);
    }
    assert!(
        !out.contains("{{"),
        "a template variable the test does not fill:\n{out}"
    );
    out
}

/// The query of the Flagger MetricTemplate `name`, for Canary `podinfo`
/// of `test` analysed every minute.
fn flagger_query(name: &str) -> String {
    let templates = manifests("manifests/canary/flagger-metric-templates.yaml");
    let template = templates
        .iter()
        .find(|t| t["kind"] == "MetricTemplate" && t["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no MetricTemplate {name}"));
    assert_eq!(template["apiVersion"], "flagger.app/v1beta1");
    assert_eq!(template["spec"]["provider"]["type"], "prometheus");
    render(
        template["spec"]["query"].as_str().expect("query"),
        &[
            ("{{ target }}", "podinfo"),
            ("{{ namespace }}", NAMESPACE),
            ("{{ interval }}", "1m"),
        ],
    )
}

/// The query of metric `name` of the Argo Rollouts AnalysisTemplate, for
/// the canary's cluster `cluster`.
fn argo_query(name: &str, cluster: &str) -> String {
    let templates = manifests("manifests/canary/argo-analysis-template.yaml");
    let [template] = templates.as_slice() else {
        panic!("one AnalysisTemplate");
    };
    assert_eq!(template["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(template["kind"], "AnalysisTemplate");
    let args: Vec<&str> = template["spec"]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(args.contains(&"cluster-name"), "{args:?}");
    let metric = template["spec"]["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name}"));
    render(
        metric["provider"]["prometheus"]["query"]
            .as_str()
            .expect("query"),
        &[("{{args.cluster-name}}", cluster)],
    )
}

/// Sums a series over the samples whose `envoy_cluster_name` is `cluster`.
fn cluster_total(samples: &Samples, name: &str, cluster: &str) -> f64 {
    samples
        .get(name)
        .into_iter()
        .flatten()
        .filter(|(labels, _)| labels.get("envoy_cluster_name").map(String::as_str) == Some(cluster))
        .map(|(_, v)| v)
        .sum()
}

/// Scrapes the Prometheus endpoint until the duration histograms have
/// caught up with the counters (Envoy merges histograms on its stats flush,
/// on its stats flush, while counters are live), and returns that scrape.
fn settled_scrape(envoy: &Envoy, endpoint: SocketAddr, dir: &std::path::Path) -> Samples {
    let mut last = None;
    let settled = envoy.wait_until(Duration::from_secs(20), |_| {
        let Ok(r) = http_get(endpoint, "prometheus", "/stats/prometheus", &[]) else {
            return false;
        };
        assert_eq!(r.status, 200, "{}", r.body);
        let samples = parse_as_written(dir, &r.body);
        let caught_up = [PRIMARY, CANARY].iter().all(|cluster| {
            cluster_total(&samples, "envoy_cluster_upstream_rq_time_count", cluster)
                == cluster_total(&samples, "envoy_cluster_upstream_rq_completed", cluster)
        });
        last = Some(samples);
        caught_up
    });
    let samples = last.expect("scraped");
    assert!(settled, "the histograms never caught up: {samples:?}");
    samples
}

#[test]
fn canary_templates_measure_success_rate_and_duration_from_envoy_stats() {
    let work = tempfile::tempdir().expect("dir");
    ensure_python_package(work.path(), "prometheus_client", "prometheus-client");
    let primary = failing_every("127.0.0.71", "primary", 20, Duration::ZERO);
    let canary = failing_every("127.0.0.72", "canary", 4, CANARY_DELAY);
    let config = tempfile::tempdir().expect("config dir");
    mesh::write_atomic(
        config.path(),
        "podinfo.yaml",
        &podinfo(primary.addr(), canary.addr()),
    );
    let shmesh = Shmesh::start(config.path());

    // A sidecar as `shmesh bootstrap` writes it, its Prometheus endpoint on
    // a port of its own.
    let listener: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let admin = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let mut bootstrap = printed_bootstrap(
        Command::new(common::shmesh_binary())
            .args(["bootstrap", "--node"])
            .arg(format!(
                "sidecar~127.0.0.1~client-1.{NAMESPACE}~{NAMESPACE}.svc.cluster.local"
            ))
            .args([
                "--namespace",
                NAMESPACE,
                "--xds-addr",
                &shmesh.xds.to_string(),
            ])
            .args(["--outbound-listener", &listener.to_string()])
            .args(["--admin-addr", &admin, "--prometheus-addr", "127.0.0.1:0"]),
    );
    // Histograms reach the admin on each stats flush (5 s by default): a
    // shorter interval only makes the test wait less.
    bootstrap["stats_flush_interval"] = "1s".into();
    let envoy = Envoy::start(&bootstrap);
    let endpoint = envoy
        .listener_addr("prometheus")
        .expect("Prometheus listener");

    let reached = envoy.wait_until(Duration::from_secs(20), |_| {
        let _ = http_get(listener, "podinfo:9898", "/", &[]);
        primary.hits() > 0 && canary.hits() > 0
    });
    assert!(reached, "traffic never reached both: {}", envoy.log());
    let before = settled_scrape(&envoy, endpoint, work.path());

    // What the callers saw, by upstream: (requests, 5xx).
    let mut truth: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut client = HttpClient::connect(listener).expect("connect to the sidecar");
    for _ in 0..REQUESTS {
        let r = client.get("podinfo:9898", "/", &[]).expect("request");
        let upstream = r.header("x-upstream").expect("answered by an upstream");
        let seen = truth.entry(upstream.to_string()).or_default();
        seen.0 += 1.0;
        if r.status >= 500 {
            seen.1 += 1.0;
        }
    }
    let after = settled_scrape(&envoy, endpoint, work.path());
    let success = |name: &str| {
        let (requests, failed) = truth[name];
        100.0 * (requests - failed) / requests
    };
    let (canary_truth, primary_truth) = (success("canary"), success("primary"));
    assert!(
        canary_truth < 90.0 && primary_truth > 90.0,
        "the canary fails more than the primary: {truth:?}"
    );

    // Istio's dashboards' label and Envoy's both carry the full name.
    assert!(after["envoy_cluster_upstream_rq"]
        .iter()
        .any(
            |(labels, _)| labels.get("cluster_name").map(String::as_str) == Some(CANARY)
                && labels.get("envoy_cluster_name").map(String::as_str) == Some(CANARY)
        ));

    let window = Window {
        before: &before,
        after: &after,
    };
    let measured = |query: &str| {
        window
            .query(query)
            .single()
            .unwrap_or_else(|| panic!("no answer to\n{query}"))
    };
    // Flagger: percent, of the canary alone.
    let flagger = measured(&flagger_query("envoy-request-success-rate"));
    assert!(
        (flagger - canary_truth).abs() <= 1.0,
        "Flagger's success rate {flagger} against {canary_truth} ({truth:?})"
    );
    // Argo Rollouts: a ratio, of whichever cluster it is given.
    for (cluster, truth) in [(CANARY, canary_truth), (PRIMARY, primary_truth)] {
        let argo = 100.0 * measured(&argo_query("success-rate", cluster));
        assert!(
            (argo - truth).abs() <= 1.0,
            "Argo's success rate of {cluster}: {argo} against {truth}"
        );
    }

    // Every canary request is in its duration histogram, and the p99 of
    // requests that each took 12 ms or more cannot be below the 10 ms
    // bucket's bound.
    let canary_requests = truth["canary"].0;
    let counted = measured(&format!(
        "sum(increase(envoy_cluster_upstream_rq_time_count{{envoy_cluster_name=\"{CANARY}\"}}[1m]))"
    ));
    assert_eq!(counted, canary_requests);
    let p99 = measured(&flagger_query("envoy-request-duration"));
    assert!(
        p99.is_finite() && p99 >= 10.0,
        "Flagger's p99 of the canary: {p99} ms"
    );
    let argo_p99 = measured(&argo_query("request-duration-p99", CANARY));
    assert_eq!(argo_p99, p99, "both templates read the same histogram");
    let primary_p99 = measured(&argo_query("request-duration-p99", PRIMARY));
    assert!(
        primary_p99.is_finite() && primary_p99 > 0.0,
        "{primary_p99}"
    );
    eprintln!(
        "canary: {canary_truth:.2}% ok seen, {flagger:.2}% by Flagger's template, p99 {p99:.2} ms; \
         primary: {primary_truth:.2}% ok seen, p99 {primary_p99:.2} ms ({truth:?})"
    );
    drop(envoy);
}
