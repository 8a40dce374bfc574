//! The Kubernetes source end to end: the real shmesh binary with
//! `--kubernetes`, its real kube-rs client talking to a fake API server
//! (`common::apiserver`, list and watch over HTTP), and a real Envoy carrying
//! traffic to real upstreams.
//!
//! Covered: objects added, changed and deleted reach Envoy; a watch cut
//! mid-stream resumes without a LIST, and a 410 relist pushes nothing that
//! did not change; a malformed object is skipped while the others apply;
//! readiness (and every proxy response) waits for the first lists; a kind the
//! API server does not serve (CRD not installed) does not block readiness;
//! `--watch-namespace` limits what is read, and `--config-dir` adds to it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use common::{free_port, http_get, mesh, ApiServer, Envoy, HttpClient, Shmesh, Upstream};

/// How long a change may take to reach Envoy (generous: 2 cores, parallel tests).
const PROPAGATION: Duration = Duration::from_secs(20);

struct Rig {
    api: ApiServer,
    _upstreams: Vec<Upstream>,
    _dir: tempfile::TempDir,
    kubeconfig: String,
}

/// A fake API server holding `reviews` (Service, three Pods and
/// EndpointSlices on real upstreams, a DestinationRule with subsets v1..v3).
fn cluster() -> Rig {
    let upstreams: Vec<Upstream> = ["v1", "v2", "v3"]
        .iter()
        .enumerate()
        .map(|(i, v)| Upstream::start(&format!("127.0.0.{}", 31 + i), v))
        .collect();
    let versions: Vec<(&str, SocketAddr)> =
        upstreams.iter().map(|u| (u.name(), u.addr())).collect();
    let api = ApiServer::start();
    api.apply_yaml(&mesh::reviews(&versions));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kubeconfig");
    api.kubeconfig(&path);
    Rig {
        api,
        _upstreams: upstreams,
        kubeconfig: path.to_str().expect("UTF-8 temp path").to_string(),
        _dir: dir,
    }
}

impl Rig {
    /// Starts `shmesh serve --kubernetes` against the fake API server,
    /// without waiting for readiness.
    fn spawn_shmesh(&self) -> Shmesh {
        Shmesh::spawn(
            &["--kubernetes", "--debounce", "50ms"],
            &[
                ("KUBECONFIG", self.kubeconfig.as_str()),
                // Loopback only: never through a proxy from the environment.
                ("NO_PROXY", "127.0.0.1,localhost"),
            ],
        )
    }

    fn shmesh(&self) -> Shmesh {
        let shmesh = self.spawn_shmesh();
        shmesh.wait_ready();
        shmesh
    }

    /// Applies every object of a YAML text.
    fn apply(&self, yaml: &str) {
        self.api.apply_yaml(yaml);
    }

    /// Request counts per kind, every kind the server serves but Secrets
    /// (which shmesh reads only with a CA, and this rig has none).
    fn counts(&self, f: impl Fn(&ApiServer, &str) -> usize) -> BTreeMap<&'static str, usize> {
        ApiServer::kinds()
            .into_iter()
            .filter(|k| *k != "Secret")
            .map(|k| (k, f(&self.api, k)))
            .collect()
    }

    fn lists(&self) -> BTreeMap<&'static str, usize> {
        self.counts(ApiServer::list_count)
    }

    fn watches(&self) -> BTreeMap<&'static str, usize> {
        self.counts(ApiServer::watch_count)
    }
}

/// A Pod no Service selects.
const UNRELATED_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: batch-1\n  namespace: jobs\n  labels: {app: batch}\nstatus:\n  podIP: 127.0.0.99\n";

/// An Envoy (delta ADS) with a bound outbound listener, pointed at shmesh.
fn envoy(shmesh: &Shmesh) -> (Envoy, SocketAddr) {
    let listener: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("addr");
    let envoy = Envoy::start(&shmesh.bootstrap("productpage-1", "default", listener, true));
    (envoy, listener)
}

/// Which upstream answered `reviews:9080` (or the status when none did).
fn who(listener: SocketAddr) -> String {
    match http_get(listener, "reviews:9080", "/", &[]) {
        Ok(r) if r.status == 200 => r.header("x-upstream").unwrap_or("none").to_string(),
        Ok(r) => format!("status {}", r.status),
        Err(e) => format!("error {e}"),
    }
}

/// Waits until `reviews:9080` is answered by `want` (an upstream name or
/// `status N`) ten times in a row; panics with both logs otherwise.
fn wait_for(envoy: &Envoy, shmesh: &Shmesh, listener: SocketAddr, want: &str) {
    wait_answer(envoy, shmesh, listener, want, |who| who == want);
}

/// Waits until any upstream answers `reviews:9080`.
fn wait_served(envoy: &Envoy, shmesh: &Shmesh, listener: SocketAddr) {
    wait_answer(envoy, shmesh, listener, "any upstream", |who| {
        who.starts_with('v')
    });
}

fn wait_answer(
    envoy: &Envoy,
    shmesh: &Shmesh,
    listener: SocketAddr,
    what: &str,
    ok: impl Fn(&str) -> bool,
) {
    let mut last = String::new();
    // Ten answers in a row, so a default route spreading over every version
    // cannot pass for a new route by chance.
    let answered = envoy.wait_until(PROPAGATION, |_| {
        (0..10).all(|_| {
            last = who(listener);
            ok(&last)
        })
    });
    assert!(
        answered,
        "reviews never answered by {what} (last: {last})\n--- shmesh:\n{}\n--- envoy:\n{}",
        shmesh.log(),
        envoy.log()
    );
}

/// Sends `n` requests; counts answers by upstream.
fn shares(listener: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut client = HttpClient::connect(listener).expect("connect to Envoy");
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = client
            .get("reviews:9080", "/", &[])
            .expect("request through Envoy");
        let who = match r.status {
            200 => r.header("x-upstream").unwrap_or("none").to_string(),
            s => format!("status {s}"),
        };
        *counts.entry(who).or_insert(0) += 1;
    }
    counts
}

fn pushes(shmesh: &Shmesh) -> u64 {
    shmesh.metric("pilot_xds_pushes")
}

#[test]
fn objects_added_changed_and_deleted_reach_envoy() {
    let rig = cluster();
    let shmesh = rig.shmesh();
    let (envoy, listener) = envoy(&shmesh);

    // No VirtualService: the default route spreads over every version.
    wait_served(&envoy, &shmesh, listener);
    let spread = shares(listener, 60);
    assert!(spread.len() >= 2, "default route: {spread:?}");
    assert!(spread.keys().all(|k| k.starts_with('v')), "{spread:?}");

    // Added (written as v1beta1; the API server serves it as v1).
    rig.apply(&mesh::weighted_vs("v1beta1", &[("v2", 100)]));
    wait_for(&envoy, &shmesh, listener, "v2");
    assert_eq!(shares(listener, 20).get("v2"), Some(&20));

    // Changed.
    rig.apply(&mesh::weighted_vs("v1beta1", &[("v3", 100)]));
    wait_for(&envoy, &shmesh, listener, "v3");
    assert_eq!(shares(listener, 20).get("v3"), Some(&20));

    // Deleted: back to the default route.
    assert!(rig.api.delete("VirtualService", "default", "reviews"));
    let spread_again = envoy.wait_until(PROPAGATION, |_| shares(listener, 30).len() >= 2);
    assert!(
        spread_again,
        "deleting the VirtualService did not restore the default route"
    );

    // The Service deleted: Envoy no longer knows the host.
    assert!(rig.api.delete("Service", "default", "reviews"));
    wait_for(&envoy, &shmesh, listener, "status 404");
}

#[test]
fn broken_watch_resumes_and_relist_pushes_nothing() {
    let rig = cluster();
    rig.apply(&mesh::weighted_vs("v1", &[("v1", 100)]));
    let shmesh = rig.shmesh();
    let (envoy, listener) = envoy(&shmesh);
    wait_for(&envoy, &shmesh, listener, "v1");
    let lists = rig.lists();
    assert!(
        lists.values().all(|n| *n == 1),
        "one LIST per kind: {lists:?}"
    );
    assert_eq!(
        rig.api.list_count("Secret"),
        0,
        "Secrets were read without a CA"
    );

    // Another kind changes, moving the resource version past every
    // VirtualService event; a bookmark tells the VirtualService watch.
    rig.apply(UNRELATED_POD);
    let moved = rig.api.resource_version();
    let bookmarked = envoy.wait_until(PROPAGATION, |_| {
        rig.api.bookmarked("VirtualService") >= Some(moved)
    });
    assert!(bookmarked, "no bookmark at {moved}");

    // Cut every watch: kube-rs resumes from the last event or bookmark.
    let watches = rig.watches();
    rig.api.break_watches();
    let resumed = envoy.wait_until(PROPAGATION, |_| {
        let now = rig.watches();
        now.iter().all(|(k, n)| *n > watches[k])
    });
    assert!(
        resumed,
        "watches not resumed: {:?} -> {:?}",
        watches,
        rig.watches()
    );
    assert!(
        rig.api.watched_from("VirtualService") >= Some(moved),
        "the VirtualService watch did not resume from its bookmark: {:?} < {moved}",
        rig.api.watched_from("VirtualService")
    );
    rig.apply(&mesh::weighted_vs("v1", &[("v2", 100)]));
    wait_for(&envoy, &shmesh, listener, "v2");
    assert_eq!(rig.lists(), lists, "a cut watch must resume without a LIST");

    // Compact and cut: resuming gets 410 Gone, so every kind relists.
    let pushed = pushes(&shmesh);
    let before = rig.watches();
    rig.api.compact();
    let relisted = envoy.wait_until(PROPAGATION, |_| {
        let (l, w) = (rig.lists(), rig.watches());
        // A 410 watch, the LIST, then a new watch after the list is applied.
        l.iter().all(|(k, n)| *n > lists[k]) && w.iter().all(|(k, n)| *n >= before[k] + 2)
    });
    assert!(
        relisted,
        "no relist after 410: lists {:?}, watches {:?} -> {:?}\n{}",
        rig.lists(),
        before,
        rig.watches(),
        shmesh.log()
    );
    assert!(shmesh.log().contains("relisting"), "{}", shmesh.log());
    // Longer than the debounce and a push round-trip.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        pushes(&shmesh),
        pushed,
        "relisting an unchanged cluster pushed something"
    );

    // And changes still flow.
    rig.apply(&mesh::weighted_vs("v1", &[("v3", 100)]));
    wait_for(&envoy, &shmesh, listener, "v3");
    assert!(pushes(&shmesh) > pushed);
}

#[test]
fn malformed_object_is_skipped_and_the_others_apply() {
    let rig = cluster();
    // Istio's CRD schema accepts a negative weight; shmesh's validation does not.
    let bad = mesh::weighted_vs("v1", &[("v1", -1), ("v2", 2)]).replace(
        "name: reviews\n  namespace: default\nspec:\n  hosts: [reviews]",
        "name: ratings\n  namespace: default\nspec:\n  hosts: [ratings]",
    );
    rig.apply(&bad);
    rig.apply(&mesh::weighted_vs("v1", &[("v1", 100)]));
    let shmesh = rig.shmesh();
    let (envoy, listener) = envoy(&shmesh);
    // The valid objects of the first list apply.
    wait_for(&envoy, &shmesh, listener, "v1");

    // So does a change to a valid object next to the bad one.
    rig.apply(&mesh::weighted_vs("v1", &[("v2", 100)]));
    wait_for(&envoy, &shmesh, listener, "v2");
    let warning = "kubernetes: error: VirtualService default/ratings: spec.http[0].route[0].weight: weight -1 is negative";
    assert!(shmesh.log().contains(warning), "{}", shmesh.log());
    assert!(shmesh.metric("shmesh_config_errors_total") >= 1);
    let (status, problems) = shmesh.admin_get("/debug/problems");
    assert_eq!(status, 200);
    assert!(
        problems.contains("VirtualService default/ratings"),
        "{problems}"
    );

    // An invalid update keeps the last good version.
    rig.apply(&mesh::weighted_vs("v1", &[("v1", -5), ("v3", 5)]));
    let logged = shmesh.wait_until(PROPAGATION, |s| {
        s.log()
            .contains("VirtualService default/reviews: spec.http[0].route[0].weight: weight -5")
    });
    assert!(logged, "{}", shmesh.log());
    assert_eq!(shares(listener, 20).get("v2"), Some(&20));
    // Both bad objects may be counted a moment apart: wait for the count to settle.
    let mut errors = shmesh.metric("shmesh_config_errors_total");
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let now = shmesh.metric("shmesh_config_errors_total");
        if now == errors {
            break;
        }
        errors = now;
    }
    assert!(errors >= 2, "{errors}");

    // A relist sends the same bad versions again: not deleted, not counted again.
    let lists = rig.lists();
    rig.api.compact();
    let relisted = shmesh.wait_until(PROPAGATION, |_| {
        rig.lists().iter().all(|(k, n)| *n > lists[k])
    });
    assert!(relisted, "no relist: {:?}", rig.lists());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(shmesh.metric("shmesh_config_errors_total"), errors);
    assert_eq!(shares(listener, 20).get("v2"), Some(&20));
    assert_eq!(
        shmesh.log().matches(warning).count(),
        1,
        "warned more than once"
    );

    // Deleting the bad object clears its problem.
    assert!(rig.api.delete("VirtualService", "default", "ratings"));
    let cleared = shmesh.wait_until(PROPAGATION, |s| {
        !s.admin_get("/debug/problems").1.contains("default/ratings")
    });
    assert!(cleared, "{}", shmesh.admin_get("/debug/problems").1);
}

#[test]
fn readiness_waits_for_every_first_list() {
    let rig = cluster();
    rig.apply(&mesh::weighted_vs("v1", &[("v3", 100)]));
    rig.api.hold("EndpointSlice");
    let shmesh = rig.spawn_shmesh();
    let listed = shmesh.wait_until(PROPAGATION, |_| {
        rig.api.list_count("EndpointSlice") >= 1 && rig.api.watch_count("Service") >= 1
    });
    assert!(
        listed,
        "shmesh never listed: {:?}\n{}",
        rig.lists(),
        shmesh.log()
    );
    let (envoy, listener) = envoy(&shmesh);
    let connected = envoy.wait_until(PROPAGATION, |e| {
        e.stat("control_plane.connected_state") == Some(1)
    });
    assert!(
        connected,
        "Envoy never connected to shmesh\n{}",
        envoy.log()
    );
    // Time for a response, were shmesh to send one.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(shmesh.admin_get("/readyz").0, 503);
    assert_eq!(envoy.stat("cluster_manager.cds.update_success"), Some(0));
    let dump = envoy.config_dump().to_string();
    assert!(!dump.contains("dynamic_active_clusters"), "{dump}");
    assert!(
        !dump.contains("reviews.default.svc.cluster.local"),
        "{dump}"
    );

    rig.api.release("EndpointSlice");
    shmesh.wait_ready();
    wait_for(&envoy, &shmesh, listener, "v3");
}

#[test]
fn missing_crds_do_not_block_readiness() {
    let rig = cluster();
    for kind in [
        "VirtualService",
        "DestinationRule",
        "ServiceEntry",
        "WorkloadEntry",
        "Sidecar",
    ] {
        rig.api.set_missing(kind, true);
    }
    let shmesh = rig.shmesh();
    let (envoy, listener) = envoy(&shmesh);
    wait_served(&envoy, &shmesh, listener);
    let warning =
        "networking.istio.io/v1 virtualservices not served by the API server; treating as empty";
    assert!(shmesh.log().contains(warning), "{}", shmesh.log());

    // The CRDs appear later: picked up by the background retries.
    for kind in ["VirtualService", "DestinationRule"] {
        rig.api.set_missing(kind, false);
    }
    rig.apply(&mesh::weighted_vs("v1", &[("v2", 100)]));
    let picked_up = envoy.wait_until(Duration::from_secs(60), |_| who(listener) == "v2");
    assert!(
        picked_up,
        "the VirtualService never applied\n{}",
        shmesh.log()
    );
    assert_eq!(
        shmesh.log().matches(warning).count(),
        1,
        "warned more than once"
    );
}

#[test]
fn watch_namespaces_and_config_dir_together() {
    let rig = cluster();
    // In a namespace shmesh does not watch: never read, so never rejected.
    rig.apply(
        &mesh::weighted_vs("v1", &[("v1", -1), ("v2", 2)])
            .replace("namespace: default\nspec", "namespace: jobs\nspec"),
    );
    let dir = tempfile::tempdir().expect("config dir");
    mesh::write_atomic(
        dir.path(),
        "vs.yaml",
        &mesh::weighted_vs("v1", &[("v2", 100)]),
    );
    let mut args = vec![
        "--kubernetes",
        "--watch-namespace",
        "default,other",
        "--config-dir",
    ];
    args.push(dir.path().to_str().expect("UTF-8 temp path"));
    let shmesh = Shmesh::spawn(
        &args,
        &[
            ("KUBECONFIG", rig.kubeconfig.as_str()),
            ("NO_PROXY", "127.0.0.1,localhost"),
        ],
    );
    shmesh.wait_ready();
    // Ready means every watch listed, so a read object would be reported by now.
    assert!(
        !shmesh.log().contains("VirtualService jobs/"),
        "{}",
        shmesh.log()
    );
    let paths = rig.api.paths();
    let prefix = "/apis/networking.istio.io/v1/namespaces/";
    for ns in ["default", "other"] {
        let want = format!("{prefix}{ns}/virtualservices");
        assert!(paths.contains(&want), "{want} not read: {paths:?}");
    }
    assert!(
        !paths
            .iter()
            .any(|p| p == "/api/v1/pods" || p.contains("/jobs/")),
        "read beyond the watched namespaces: {paths:?}"
    );

    // The cluster's Service, Pods, EndpointSlices and DestinationRule, and
    // the file's VirtualService, make one mesh.
    let (envoy, listener) = envoy(&shmesh);
    wait_for(&envoy, &shmesh, listener, "v2");
}

/// Observed generations written onto the VirtualService `default/reviews`.
fn observed_generations(api: &ApiServer) -> Vec<i64> {
    api.status_patches("VirtualService")
        .into_iter()
        .filter(|(ns, name, _)| ns == "default" && name == "reviews")
        .filter_map(|(_, _, body)| body["status"]["observedGeneration"].as_i64())
        .collect()
}

/// The status write lands only once every proxy that receives the
/// VirtualService has ACKed its current generation, written by the replica
/// holding the Lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_written_once_every_proxy_acked() {
    use common::xds_client::{SotwClient, CDS, LDS};
    let rig = cluster();
    rig.apply(&mesh::weighted_vs("v1beta1", &[("v1", 100)]));
    let shmesh = rig.shmesh();
    let (envoy, listener) = envoy(&shmesh);
    wait_for(&envoy, &shmesh, listener, "v1");
    let written = shmesh.wait_until(PROPAGATION, |_| observed_generations(&rig.api).contains(&1));
    assert!(written, "generation 1 never written\n{}", shmesh.log());
    let lease = rig
        .api
        .lease("istio-system", "shmesh-status-writer")
        .expect("the writer holds a Lease");
    assert!(lease["spec"]["holderIdentity"]
        .as_str()
        .is_some_and(|h| !h.is_empty()));
    let patch = rig
        .api
        .status_patches("VirtualService")
        .last()
        .map(|(_, _, body)| body.clone())
        .expect("a patch");
    assert_eq!(patch["status"]["conditions"][0]["type"], "Reconciled");
    assert_eq!(patch["status"]["conditions"][0]["status"], "True");

    // A proxy that takes the configuration but does not ACK it yet.
    let mut stuck = SotwClient::connect(shmesh.xds, "stuck-1", "default").await;
    stuck.send(CDS, &[], "", "").await;
    let cds = stuck.recv(PROPAGATION).await.expect("CDS");
    stuck.send(LDS, &[], "", "").await;
    let lds = stuck.recv(PROPAGATION).await.expect("LDS");

    rig.apply(&mesh::weighted_vs("v1beta1", &[("v2", 100)]));
    wait_for(&envoy, &shmesh, listener, "v2");
    let generation = rig
        .api
        .get("VirtualService", "default", "reviews")
        .expect("vs")["metadata"]["generation"]
        .as_i64()
        .expect("generation");
    assert_eq!(generation, 2);
    // Envoy has applied generation 2, the stuck proxy has not: over several
    // rounds of the writer, nothing is written for generation 2.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !observed_generations(&rig.api).contains(&2),
        "written before every proxy ACKed"
    );
    let (_, rollout) =
        shmesh.admin_get("/debug/rollout?kind=VirtualService&namespace=default&name=reviews");
    assert!(rollout.contains("stuck-1"), "{rollout}");

    stuck.ack(&cds, &[]).await;
    stuck.ack(&lds, &[]).await;
    while let Some(more) = stuck.recv(Duration::from_millis(300)).await {
        stuck.ack(&more, &[]).await;
    }
    let written = shmesh.wait_until(PROPAGATION, |_| observed_generations(&rig.api).contains(&2));
    assert!(
        written,
        "generation 2 never written after every proxy ACKed\n{}",
        shmesh.log()
    );
    let status = rig
        .api
        .get("VirtualService", "default", "reviews")
        .expect("vs")["status"]
        .clone();
    assert_eq!(status["observedGeneration"], 2);
}

/// A sidecar under capture whose node metadata names no labels gets its
/// Pod's (from the node id `sidecar~IP~POD.NAMESPACE~...`): the Service
/// selecting the Pod gives it an inbound chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_without_labels_gets_its_pods() {
    use common::xds_client::{SotwClient, LDS};
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use prost::Message;
    let rig = cluster();
    rig.apply("apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec:\n  selector: {app: cart}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: cart-7d9f-abcde, namespace: shop, labels: {app: cart, pod-template-hash: 7d9f}}\nstatus: {podIP: 10.1.0.5, phase: Running, conditions: [{type: Ready, status: \"True\"}]}\n");
    let shmesh = rig.shmesh();
    let chains = |id: &'static str| {
        let xds = shmesh.xds;
        async move {
            let node = Node {
                id: id.to_string(),
                cluster: "cart.shop".to_string(),
                ..Default::default()
            };
            let mut client = SotwClient::connect_as(xds, node).await;
            client.send(LDS, &[], "", "").await;
            let lds = client.recv(PROPAGATION).await.expect("LDS");
            let inbound = lds
                .resources
                .iter()
                .map(|r| Listener::decode(r.value.as_slice()).expect("listener"))
                .find(|l| l.name == "virtualInbound")
                .expect("virtualInbound");
            inbound
                .filter_chains
                .iter()
                .map(|fc| fc.name.clone())
                .collect::<Vec<_>>()
        }
    };
    let known = chains("sidecar~10.1.0.5~cart-7d9f-abcde.shop~shop.svc.cluster.local").await;
    assert!(known.contains(&"0.0.0.0_8080".to_string()), "{known:?}");
    // A pod the cluster does not know has no labels: no service port.
    let unknown = chains("sidecar~10.1.0.6~ghost.shop~shop.svc.cluster.local").await;
    assert!(
        !unknown.iter().any(|c| c.starts_with("0.0.0.0_8080")),
        "{unknown:?}"
    );
}

/// StatefulSet pods differ in a label no selector reads: their sidecars get
/// the same listeners (one translation, one version). Once a Service
/// selects one pod by that label, only that pod's sidecar takes its port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_alike_in_every_selected_label_share_their_config() {
    use common::xds_client::{SotwClient, LDS};
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
    use prost::Message;
    let pod = |i: u32| {
        format!("---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: db-{i}\n  namespace: shop\n  labels: {{app: db, statefulset.kubernetes.io/pod-name: db-{i}}}\nstatus: {{podIP: 10.1.0.{i}, phase: Running, conditions: [{{type: Ready, status: \"True\"}}]}}\n")
    };
    let rig = cluster();
    rig.apply(&format!("apiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: shop}}\nspec:\n  selector: {{app: db}}\n  ports: [{{name: tcp-pg, port: 5432}}]\n{}{}", pod(0), pod(1)));
    let shmesh = rig.shmesh();
    let inbound_chains = |lds: &DiscoveryResponse| -> Vec<String> {
        lds.resources
            .iter()
            .map(|r| Listener::decode(r.value.as_slice()).expect("listener"))
            .find(|l| l.name == "virtualInbound")
            .expect("virtualInbound")
            .filter_chains
            .iter()
            .map(|fc| fc.name.clone())
            .collect()
    };
    let mut clients = Vec::new();
    let mut first = Vec::new();
    for i in 0..2 {
        let node = Node {
            id: format!("sidecar~10.1.0.{i}~db-{i}.shop~shop.svc.cluster.local"),
            cluster: "db.shop".to_string(),
            ..Default::default()
        };
        let mut client = SotwClient::connect_as(shmesh.xds, node).await;
        client.send(LDS, &[], "", "").await;
        let lds = client.recv(PROPAGATION).await.expect("LDS");
        assert!(inbound_chains(&lds).contains(&"0.0.0.0_5432".to_string()));
        client.ack(&lds, &[]).await;
        first.push(lds);
        clients.push(client);
    }
    assert_eq!(
        first[0].version_info, first[1].version_info,
        "the same listeners"
    );
    assert_eq!(first[0].resources, first[1].resources);

    rig.apply("apiVersion: v1\nkind: Service\nmetadata: {name: db-0, namespace: shop}\nspec:\n  selector: {statefulset.kubernetes.io/pod-name: db-0}\n  ports: [{name: tcp-admin, port: 7000}]\n");
    let db0 = clients[0]
        .recv(PROPAGATION)
        .await
        .expect("db-0's listeners change");
    assert!(inbound_chains(&db0).contains(&"0.0.0.0_7000".to_string()));
    // db-1's listeners do not change: nothing is pushed, or the same chains.
    if let Some(db1) = clients[1].recv(Duration::from_secs(2)).await {
        if db1.type_url == LDS {
            assert!(!inbound_chains(&db1).contains(&"0.0.0.0_7000".to_string()));
        }
    }
}

/// The Gateway API objects of the status test: Gateway `default/web` with a
/// listener on `port` and one that conflicts with it; a route it accepts, a
/// route to a Gateway that does not exist, and a route to a backend in
/// another namespace that no ReferenceGrant allows.
fn gateway_api_objects(port: u16) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: istio}}
spec: {{controllerName: istio.io/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web, namespace: default}}
spec:
  gatewayClassName: istio
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
  - {{name: http, port: {port}, protocol: HTTP}}
  - {{name: clash, port: {port}, protocol: TCP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: reviews, namespace: default}}
spec:
  parentRefs: [{{name: web}}, {{name: elsewhere}}]
  hostnames: [reviews.example.com]
  rules: [{{backendRefs: [{{name: reviews, port: 9080}}]}}]
status:
  parents:
  - parentRef: {{name: elsewhere}}
    controllerName: example.com/other-controller
    conditions: [{{type: Accepted, status: 'True', reason: Accepted}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: lost, namespace: default}}
spec:
  parentRefs: [{{name: nowhere}}]
  rules: [{{backendRefs: [{{name: reviews, port: 9080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: foreign, namespace: default}}
spec:
  parentRefs: [{{name: web}}]
  hostnames: [foreign.example.com]
  rules: [{{backendRefs: [{{name: billing, namespace: payments, port: 80}}]}}]
"
    )
}

/// The last status written onto a Gateway API object.
fn last_status(api: &ApiServer, kind: &str, name: &str) -> Option<serde_json::Value> {
    api.status_patches(kind)
        .into_iter()
        .rev()
        .find(|(ns, n, _)| ns == "default" && n == name)
        .map(|(_, _, body)| body["status"].clone())
}

/// The condition of `type` in a list of conditions.
fn condition<'a>(conditions: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    conditions
        .as_array()
        .and_then(|list| list.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} condition in {conditions}"))
}

/// Gateway API status in Kubernetes mode: the Lease holder writes the
/// GatewayClass, Gateway and route conditions the specification defines;
/// the Gateway is Programmed only once a real gateway Envoy has applied it,
/// and traffic through that Envoy follows the accepted route.
#[test]
fn gateway_api_status_is_written() {
    let rig = cluster();
    let port = free_port("127.0.0.1");
    rig.apply(&gateway_api_objects(port));
    let shmesh = rig.shmesh();
    const GATEWAY: &str = "gateway.networking.k8s.io/Gateway";
    let written = shmesh.wait_until(PROPAGATION, |_| {
        ["foreign", "lost", "reviews"]
            .iter()
            .all(|r| last_status(&rig.api, "HTTPRoute", r).is_some())
            && last_status(&rig.api, GATEWAY, "web").is_some()
    });
    assert!(written, "no Gateway API status written\n{}", shmesh.log());
    let class = rig
        .api
        .status_patches("GatewayClass")
        .last()
        .map(|(_, _, b)| b["status"].clone())
        .expect("GatewayClass status");
    assert_eq!(
        condition(&class["conditions"], "Accepted")["status"],
        "True"
    );

    // No gateway proxy yet: accepted, not programmed.
    let gw = last_status(&rig.api, GATEWAY, "web").expect("Gateway status");
    assert_eq!(condition(&gw["conditions"], "Accepted")["status"], "True");
    assert_eq!(
        condition(&gw["conditions"], "Programmed")["status"],
        "False"
    );
    assert_eq!(gw["addresses"][0]["value"], "127.0.0.1");
    let clash = &gw["listeners"][1];
    assert_eq!(clash["name"], "clash");
    let conflicted = condition(&clash["conditions"], "Conflicted");
    assert_eq!(conflicted["status"], "True");
    assert_eq!(conflicted["reason"], "ProtocolConflict");

    // Routes: accepted, no such parent, a reference not permitted.
    let route = |name: &str| {
        last_status(&rig.api, "HTTPRoute", name).unwrap_or_else(|| panic!("no status for {name}"))
    };
    let reviews = route("reviews");
    // Another controller's entry stays beside shmesh's.
    assert_eq!(
        reviews["parents"][0]["controllerName"], "example.com/other-controller",
        "{reviews}"
    );
    let parent = &reviews["parents"][1];
    assert_eq!(parent["controllerName"], "istio.io/gateway-controller");
    assert_eq!(parent["parentRef"]["name"], "web");
    assert_eq!(
        condition(&parent["conditions"], "Accepted")["status"],
        "True"
    );
    assert_eq!(
        condition(&parent["conditions"], "ResolvedRefs")["status"],
        "True"
    );
    let lost = route("lost");
    let accepted = condition(&lost["parents"][0]["conditions"], "Accepted");
    assert_eq!(
        (accepted["status"].as_str(), accepted["reason"].as_str()),
        (Some("False"), Some("NoMatchingParent"))
    );
    let foreign = route("foreign");
    let refs = condition(&foreign["parents"][0]["conditions"], "ResolvedRefs");
    assert_eq!(
        (refs["status"].as_str(), refs["reason"].as_str()),
        (Some("False"), Some("RefNotPermitted"))
    );
    assert_eq!(
        condition(&foreign["parents"][0]["conditions"], "Accepted")["status"],
        "True"
    );

    // A real gateway Envoy takes the Gateway: Programmed once it has applied
    // it, with the accepted route attached, and traffic follows the route.
    let _gateway = shmesh.gateway_proxy(
        "default",
        "gateway.networking.k8s.io/gateway-name=web",
        None,
        true,
    );
    let programmed = shmesh.wait_until(PROPAGATION, |_| {
        last_status(&rig.api, GATEWAY, "web")
            .is_some_and(|gw| condition(&gw["conditions"], "Programmed")["status"] == "True")
    });
    assert!(
        programmed,
        "the Gateway never became Programmed\n{}",
        shmesh.log()
    );
    let gw = last_status(&rig.api, GATEWAY, "web").expect("Gateway status");
    let http = &gw["listeners"][0];
    assert_eq!(http["attachedRoutes"], 2, "{http}");
    assert_eq!(
        condition(&http["conditions"], "Programmed")["status"],
        "True"
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let served = shmesh.wait_until(PROPAGATION, |_| {
        http_get(addr, "reviews.example.com", "/", &[]).is_ok_and(|r| {
            r.status == 200 && r.header("x-upstream").is_some_and(|u| u.starts_with('v'))
        })
    });
    assert!(
        served,
        "the gateway does not route reviews.example.com\n{}",
        shmesh.log()
    );
    // The route with no permitted backend answers 500, as the spec says.
    let refused = http_get(addr, "foreign.example.com", "/", &[]).expect("response");
    assert_eq!(refused.status, 500);
    let (status, rollout) =
        shmesh.admin_get("/debug/rollout?kind=HTTPRoute&namespace=default&name=reviews");
    assert_eq!(status, 200, "{rollout}");
    let rollout: serde_json::Value = serde_json::from_str(&rollout).expect("JSON");
    assert_eq!(rollout["live"], true, "{rollout}");
    assert_eq!(
        rollout["acked"].as_array().map(Vec::len),
        Some(1),
        "{rollout}"
    );
}
