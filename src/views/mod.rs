//! The views task: the one writer of the model. It applies the sources'
//! updates and keeps one snapshot per proxy view up to date.
//!
//! When to apply is decided by `batching` (the debounce window, waiting for
//! every source's first complete state), with no I/O; this task only moves
//! messages and runs the work. After a batch, every live view is updated
//! incrementally (`shmesh_translate::update`) and published on its watch
//! channel only if its content changed. Streams read the watches
//! (`ViewSource`); a view nobody watches any more is dropped.

mod batching;
pub mod metrics;
pub mod routes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::allocator;
use crate::ca_service::TokenReviewer;
use crate::credentials;
use crate::identity::Identities;
use crate::metrics::Metrics;
use crate::sources::Update;
use batching::{Batching, Work};
use shmesh_api::objects::Labels;
use shmesh_api::{policy_key, Kind, Problem};
use shmesh_cache::{PolicyStamp, ResourceType, ResourceWriter, Snapshot};
use shmesh_model::gateway_api::GatewayApiStatus;
use shmesh_model::{analyze, Dirty, Model};
use shmesh_translate::node::{view_of, NodeError};
use shmesh_translate::tls::Certificates;
use shmesh_translate::{self as translate, ListenerMode, ProxyView};
use shmesh_xds::listen::Peer;
use shmesh_xds::server::ViewSource;

type Watches = HashMap<ProxyView, watch::Sender<Option<Arc<Snapshot>>>>;

/// A pod's (namespace, name), and where its labels go (`None`: unknown).
type PodQuery = ((String, String), oneshot::Sender<Option<Labels>>);

/// Handle for streams to watch views, and for the admin server and the
/// status writer to read what the task found.
pub struct Views {
    /// Holds rollout back while a restarted replica's fleet reconnects.
    fleet_gate: std::sync::OnceLock<crate::rollout::FleetGate>,
    watches: Mutex<Watches>,
    new_views: mpsc::UnboundedSender<ProxyView>,
    ready: watch::Sender<bool>,
    /// Problems by source, for the admin's debug view.
    pub problems: Mutex<HashMap<&'static str, Vec<Problem>>>,
    pub warnings: Mutex<Vec<Problem>>,
    /// Every VirtualService, DestinationRule and Istio Gateway in force, by
    /// `Kind/ns/name`.
    policies: Mutex<Arc<BTreeMap<String, PolicyInfo>>>,
    /// The Gateway API objects' status conditions, as the model last stood.
    gateway_api: Mutex<Arc<GatewayApiStatus>>,
    /// Bumped whenever the policies in force, the problems or the warnings
    /// may have changed, for the web view.
    changes: watch::Sender<u64>,
    /// Delta clients with listeners get their virtual hosts over VHDS.
    vhds: bool,
    /// The CA, when shmesh issues certificates to the proxies that prove
    /// their identity.
    identities: Option<Arc<Identities>>,
    /// Asks the task for the labels of a pod (namespace, name): a sidecar
    /// whose node metadata has no `LABELS` gets its Pod's.
    pod_queries: mpsc::UnboundedSender<PodQuery>,
    /// In Kubernetes mode: checks the bearer tokens proxies prove their
    /// identity with instead of a client certificate.
    reviewer: Option<TokenReviewer>,
}

/// A routing policy in force, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub stamp: PolicyStamp,
    /// `kubernetes` or the file it was read from.
    pub source: String,
    /// When this version took effect in shmesh (its batch was applied).
    pub since: Instant,
    /// A VirtualService's routes and their weights, for the web view.
    pub routes: Option<Arc<routes::VirtualServiceRoutes>>,
}

impl ViewSource for Views {
    type View = ProxyView;
    type Error = NodeError;

    async fn view_of(
        &self,
        node: &envoy_types::pb::envoy::config::core::v3::Node,
        vhds_capable: bool,
        peer: &Peer,
    ) -> Result<ProxyView, NodeError> {
        let mut view = view_of(node)?;
        let workload = matches!(view.mode, ListenerMode::Capture | ListenerMode::Router);
        if workload && view.labels.is_empty() {
            if let Some(pod) = shmesh_translate::node::pod_of(node) {
                let (reply, labels) = oneshot::channel();
                if self.pod_queries.send((pod, reply)).is_ok() {
                    view.labels = labels.await.ok().flatten().unwrap_or_default();
                }
            }
        }
        // A sidecar or gateway without an agent gets certificates from
        // shmesh's CA, as the identity its connection proved (its client
        // certificate, or in Kubernetes mode its service-account token) and
        // no other.
        let certificates = match (&self.identities, &view.certificates) {
            (Some(ids), Certificates::None) if workload => {
                match (&peer.certificate, &peer.bearer_token, &self.reviewer) {
                    (None, Some(token), Some(reviewer)) => {
                        let proven = match reviewer.identity(token, ids.trust_domain()).await {
                            Ok(id) => Some(id),
                            Err(reason) => {
                                info!(node = %node.id, %reason, "bearer token refused");
                                None
                            }
                        };
                        ids.certificates_of(
                            &node.id,
                            &view.namespace,
                            proven.as_deref(),
                            "bearer token refused",
                        )
                    }
                    _ => {
                        ids.certificates_for(&node.id, &view.namespace, peer.certificate.as_deref())
                    }
                }
            }
            _ => view.certificates.clone(),
        };
        Ok(ProxyView {
            // Proxyless gRPC clients do not implement VHDS.
            vhds: self.vhds && vhds_capable && view.mode != ListenerMode::Proxyless,
            certificates,
            ..view
        })
    }

    fn proxy_type(&self, view: &ProxyView) -> &'static str {
        match view.mode {
            ListenerMode::Router => "router",
            ListenerMode::Proxyless => "proxyless",
            _ => "sidecar",
        }
    }

    fn watch(&self, view: &ProxyView) -> watch::Receiver<Option<Arc<Snapshot>>> {
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = watches.get(view) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(None);
        watches.insert(view.clone(), tx);
        // The task builds the first snapshot of the view.
        let _ = self.new_views.send(view.clone());
        rx
    }
}

impl Views {
    /// Whether every source has synced (`/readyz`).
    /// What holds rollout back after a restart, if anything may.
    pub fn fleet_gate(&self) -> Option<&crate::rollout::FleetGate> {
        self.fleet_gate.get()
    }

    /// Sets what holds rollout back after a restart (once).
    pub fn set_fleet_gate(&self, gate: crate::rollout::FleetGate) {
        let _ = self.fleet_gate.set(gate);
    }

    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Every VirtualService and DestinationRule in force.
    pub fn policies(&self) -> Arc<BTreeMap<String, PolicyInfo>> {
        self.policies.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The Gateway API objects' status conditions.
    pub fn gateway_api_status(&self) -> Arc<GatewayApiStatus> {
        self.gateway_api
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Wakes whenever the policies in force (`policies`), the problems or
    /// the warnings may have changed.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }
}

/// Settings of the whole mesh that translation reads, given to `serve`.
#[derive(Debug, Clone, Default)]
pub struct MeshSettings {
    /// The trust domain of workload identities.
    pub trust_domain: String,
    /// How proxies trace requests, if they do.
    pub tracing: Option<shmesh_model::telemetry::Tracing>,
}

/// The views task and its handle. `sources` names every source that must
/// sync before any proxy is answered. The task runs until it is dropped or
/// every sender of updates is gone.
pub fn new(
    sources: BTreeSet<&'static str>,
    debounce: Duration,
    vhds: bool,
    mesh: MeshSettings,
    identities: Option<Arc<Identities>>,
    reviewer: Option<TokenReviewer>,
    metrics: Arc<Metrics>,
) -> (
    Arc<Views>,
    mpsc::Sender<Update>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (update_tx, update_rx) = mpsc::channel(1024);
    let (view_tx, view_rx) = mpsc::unbounded_channel();
    let (pod_tx, pod_rx) = mpsc::unbounded_channel();
    let (ready_tx, _) = watch::channel(false);
    let handle = Arc::new(Views {
        fleet_gate: std::sync::OnceLock::new(),
        watches: Mutex::new(HashMap::new()),
        new_views: view_tx,
        ready: ready_tx,
        problems: Mutex::new(HashMap::new()),
        warnings: Mutex::new(Vec::new()),
        policies: Mutex::new(Arc::default()),
        gateway_api: Mutex::new(Arc::default()),
        changes: watch::channel(0).0,
        vhds,
        identities,
        pod_queries: pod_tx,
        reviewer,
    });
    let mut model = Model::new();
    model.set_trust_domain(&mesh.trust_domain);
    model.set_tracing(mesh.tracing);
    let inputs = Inputs {
        updates: update_rx,
        new_views: view_rx,
        pod_queries: pod_rx,
    };
    let task = run(handle.clone(), model, sources, debounce, metrics, inputs);
    (handle, update_tx, task)
}

/// What the task hears: the sources' updates, views streams asked for, and
/// streams asking for their pod's labels.
struct Inputs {
    updates: mpsc::Receiver<Update>,
    new_views: mpsc::UnboundedReceiver<ProxyView>,
    pod_queries: mpsc::UnboundedReceiver<PodQuery>,
}

async fn run(
    handle: Arc<Views>,
    mut model: Model,
    sources: BTreeSet<&'static str>,
    debounce: Duration,
    metrics: Arc<Metrics>,
    inputs: Inputs,
) {
    let Inputs {
        mut updates,
        mut new_views,
        mut pod_queries,
    } = inputs;
    let mut snapshots: HashMap<ProxyView, Arc<Snapshot>> = HashMap::new();
    // The label keys the views' snapshots were translated under.
    let mut label_keys: BTreeSet<String> = BTreeSet::new();
    let mut waiting_pod_queries: Vec<PodQuery> = Vec::new();
    let mut batching = Batching::new(sources, debounce);
    let mut warned: BTreeSet<String> = BTreeSet::new();
    // When the first change of the batch now waiting arrived.
    let mut batch_opened: Option<Instant> = None;
    // The clock the runtime keeps (paused in tests).
    let now = || tokio::time::Instant::now().into_std();
    let renewal_check = handle
        .identities
        .as_ref()
        .map_or(Duration::from_secs(3600), |ids| ids.renewal_check());
    let mut renewals = tokio::time::interval(renewal_check);
    renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = batching.deadline();
        let sleep = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let work = tokio::select! {
            update = updates.recv() => match update {
                None => return,
                Some(Update::Changes(changes)) => {
                    batch_opened.get_or_insert_with(Instant::now);
                    batching.changes(changes, now());
                    None
                }
                Some(Update::Synced(source)) => batching.synced(source),
                Some(Update::Problems(source, problems)) => {
                    if let Ok(mut p) = handle.problems.lock() {
                        p.insert(source, problems);
                    }
                    handle.changed();
                    None
                }
            },
            Some(view) = new_views.recv() => {
                if batching.serving() {
                    let snap = cpu_bound(|| {
                        translate::build(&model, &translated_as(&view, &label_keys))
                    });
                    install(&handle, &model, &mut snapshots, &metrics, view, snap, None);
                }
                None
            }
            Some(query) = pod_queries.recv() => {
                // Before every source has synced the pod may not be known
                // yet: the answer waits for the full state.
                if batching.serving() {
                    answer_pod_query(&model, query);
                } else {
                    waiting_pod_queries.push(query);
                }
                None
            }
            _ = sleep => batching.due(now()),
            _ = renewals.tick() => {
                let due = handle
                    .identities
                    .as_ref()
                    .is_some_and(|ids| ids.any_due(std::time::SystemTime::now()));
                if due {
                    renew_certificates(&handle, &model, &mut snapshots, &metrics);
                }
                None
            }
        };
        match work {
            None => {}
            Some(Work::Start(changes)) => {
                batch_opened = None;
                metrics.views.changes(&model, &changes);
                // Apply everything known before declaring readiness.
                let dirty = cpu_bound(|| model.apply(changes));
                metrics.views.model(&model);
                report_warnings(&handle, &model, &metrics, &mut warned);
                record_policies(&handle, &model);
                debug!(?dirty, "initial state applied");
                handle.ready.send_replace(true);
                for query in waiting_pod_queries.drain(..) {
                    answer_pod_query(&model, query);
                }
                info!(
                    services = model.services().len(),
                    "all sources synced; serving"
                );
                cpu_bound(|| {
                    rebuild_all(&handle, &model, &mut snapshots, &mut label_keys, &metrics)
                });
            }
            Some(Work::Apply(changes)) => {
                let started = Instant::now();
                let opened = batch_opened.take();
                let count = changes.len();
                let serving = batching.serving();
                metrics.views.changes(&model, &changes);
                // One CPU-bound stretch for the batch: freed memory is handed
                // back once, after the views are updated.
                let applied = cpu_bound(|| {
                    let dirty = model.apply(changes);
                    metrics.views.model(&model);
                    if !serving || dirty.is_empty() {
                        return false;
                    }
                    report_warnings(&handle, &model, &metrics, &mut warned);
                    if dirty.routes
                        || dirty.gateways
                        || !dirty.vs_hosts.is_empty()
                        || !dirty.config.is_empty()
                        || !dirty.secrets.is_empty()
                    {
                        record_policies(&handle, &model);
                    }
                    let only_secrets = Dirty {
                        secrets: BTreeSet::new(),
                        ..dirty.clone()
                    }
                    .is_empty();
                    if only_secrets {
                        // Nothing to translate: the proxies of those
                        // namespaces that get Secrets take the new ones.
                        reinstall_with_secrets(
                            &handle,
                            &model,
                            &mut snapshots,
                            &metrics,
                            opened,
                            |v| {
                                // Gateways may use other namespaces' Secrets.
                                dirty.secrets.contains(&v.namespace)
                                    || v.mode == ListenerMode::Router
                            },
                        );
                    } else {
                        update_all(
                            &handle,
                            &model,
                            &mut snapshots,
                            &mut label_keys,
                            Some(&dirty),
                            &metrics,
                            opened,
                        );
                    }
                    true
                });
                if applied {
                    let took = started.elapsed();
                    metrics
                        .views
                        .batch(opened.map_or(took, |at| at.elapsed()), took);
                    debug!(
                        changes = count,
                        elapsed_us = started.elapsed().as_micros() as u64,
                        "applied"
                    );
                }
            }
        }
    }
}

fn answer_pod_query(model: &Model, ((namespace, name), reply): PodQuery) {
    let labels = model
        .pod(&namespace, &name)
        .map(|p| p.metadata.labels.clone());
    let _ = reply.send(labels);
}

/// Runs CPU-bound work (applying changes, translating) without holding up
/// the runtime's other tasks: on a multi-threaded runtime the worker hands
/// its queue to another thread while this runs. Freed memory is reused
/// while it runs and handed back after.
fn cpu_bound<T>(f: impl FnOnce() -> T) -> T {
    crate::blocking::in_place(|| allocator::holding_freed_pages(f))
}

fn publish(handle: &Views, view: &ProxyView, snap: &Arc<Snapshot>) {
    let watches = handle.watches.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = watches.get(view) {
        tx.send_if_modified(|cur| {
            // The same resources built from other policy versions still go to
            // the streams: rollout then sees the new versions applied.
            let same = cur.as_ref().is_some_and(|c| {
                c.version() == snap.version()
                    && (Arc::ptr_eq(c.policies(), snap.policies())
                        || c.policies() == snap.policies())
            });
            if !same {
                *cur = Some(snap.clone());
            }
            !same
        });
    }
}

/// Views still watched; the others are dropped.
fn live_views(handle: &Views) -> Vec<ProxyView> {
    let mut watches = handle.watches.lock().unwrap_or_else(|e| e.into_inner());
    watches.retain(|_, tx| tx.receiver_count() > 0);
    watches.keys().cloned().collect()
}

fn rebuild_all(
    handle: &Views,
    model: &Model,
    snapshots: &mut HashMap<ProxyView, Arc<Snapshot>>,
    label_keys: &mut BTreeSet<String>,
    metrics: &Metrics,
) {
    update_all(handle, model, snapshots, label_keys, None, metrics, None);
}

/// Updates every live view by `dirty`, or builds it afresh when there is
/// none (or no earlier snapshot). Views that differ only in labels no
/// selector reads are translated once (`translated_as`): workloads alike in
/// everything that matters share the work and the resources.
/// `label_keys` are the keys views were last translated under; `changed_at`
/// when the change being translated first arrived.
fn update_all(
    handle: &Views,
    model: &Model,
    snapshots: &mut HashMap<ProxyView, Arc<Snapshot>>,
    label_keys: &mut BTreeSet<String>,
    dirty: Option<&Dirty>,
    metrics: &Metrics,
    changed_at: Option<Instant>,
) {
    let views = live_views(handle);
    snapshots.retain(|v, _| views.contains(v));
    let keys = model.selector_label_keys();
    let same_keys = keys == *label_keys;
    let mut translated: HashMap<ProxyView, Snapshot> = HashMap::new();
    for view in views {
        let key = translated_as(&view, &keys);
        let snap = match translated.get(&key) {
            Some(done) => done.clone(),
            None => {
                // Under other keys, a view's earlier snapshot may have been
                // translated for other labels: it is built afresh.
                let prev = snapshots
                    .get(&view)
                    .filter(|_| same_keys || view.labels.is_empty());
                let fresh = match (dirty, prev) {
                    (Some(dirty), Some(prev)) => translate::update(model, &key, prev, dirty),
                    _ => translate::build(model, &key),
                };
                translated.insert(key, fresh.clone());
                fresh
            }
        };
        install(handle, model, snapshots, metrics, view, snap, changed_at);
    }
    *label_keys = keys;
}

/// The view a view's snapshot is translated for: its labels narrowed to the
/// keys some selector reads (`Model::selector_label_keys`).
fn translated_as(view: &ProxyView, keys: &BTreeSet<String>) -> ProxyView {
    if view.labels.keys().all(|k| keys.contains(k)) {
        return view.clone();
    }
    ProxyView {
        labels: view
            .labels
            .iter()
            .filter(|(k, _)| keys.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..view.clone()
    }
}

/// Gives every view with certificates from shmesh's CA its current ones:
/// those due are renewed, and their streams send the new secrets.
fn renew_certificates(
    handle: &Views,
    model: &Model,
    snapshots: &mut HashMap<ProxyView, Arc<Snapshot>>,
    metrics: &Metrics,
) {
    reinstall_with_secrets(handle, model, snapshots, metrics, None, |_| true);
}

/// Installs the snapshots of the views `which` picks among those with
/// certificates from shmesh's CA again, with their current SDS secrets.
fn reinstall_with_secrets(
    handle: &Views,
    model: &Model,
    snapshots: &mut HashMap<ProxyView, Arc<Snapshot>>,
    metrics: &Metrics,
    changed_at: Option<Instant>,
    which: impl Fn(&ProxyView) -> bool,
) {
    let views: Vec<(ProxyView, Arc<Snapshot>)> = snapshots
        .iter()
        .filter(|(v, _)| matches!(v.certificates, Certificates::Ads { .. }) && which(v))
        .map(|(v, s)| (v.clone(), s.clone()))
        .collect();
    for (view, snap) in views {
        let fresh = snap.builder().build();
        install(handle, model, snapshots, metrics, view, fresh, changed_at);
    }
}

/// The snapshot with the view's SDS secrets, when its certificates come
/// from shmesh's CA: its workload certificate and roots, and the Secrets its
/// DestinationRules name by `credentialName` in its own namespace.
fn with_secrets(
    handle: &Views,
    model: &Model,
    metrics: &Metrics,
    view: &ProxyView,
    snap: Snapshot,
) -> Snapshot {
    let (Some(ids), Certificates::Ads { service_account }) =
        (&handle.identities, &view.certificates)
    else {
        return snap;
    };
    let mut w = ResourceWriter::for_type(ResourceType::Secret);
    if let Err(e) = ids.write_secrets(&view.namespace, service_account, &mut w) {
        warn!(view = %view, error = %e, "cannot issue the view's certificate");
        metrics.views.internal_error();
        return snap;
    }
    let missing = credentials::write_secrets(model, view, &mut w);
    if !missing.is_empty() {
        debug!(view = %view, ?missing, "credentialName without a Secret in the namespace");
    }
    let mut b = snap.builder();
    b.set(ResourceType::Secret, w.finish_by_name());
    b.build()
}

/// Makes `snap` the view's snapshot: it takes over the type sets other views
/// hold alike, is counted, and goes to the view's streams, carrying when the
/// change it brings first arrived (`changed_at`), if it brings one.
fn install(
    handle: &Views,
    model: &Model,
    snapshots: &mut HashMap<ProxyView, Arc<Snapshot>>,
    metrics: &Metrics,
    view: ProxyView,
    snap: Snapshot,
    changed_at: Option<Instant>,
) {
    let mut snap = with_secrets(handle, model, metrics, &view, snap)
        .sharing_sets_with(snapshots.values().map(|s| &**s));
    if let Some(at) = changed_at {
        snap = snap.with_changed_at(at);
    }
    let snap = Arc::new(snap);
    metrics.views.translations.inc();
    publish(handle, &view, &snap);
    snapshots.insert(view, snap);
}

/// Records the policies in force, for rollout tracking.
fn record_policies(handle: &Views, model: &Model) {
    let now = Instant::now();
    let before = handle.policies();
    let mut out = BTreeMap::new();
    let vs = model.virtual_services().map(|p| {
        (
            Kind::VirtualService,
            &p.namespace,
            &p.name,
            p.generation,
            &p.version,
            Some(p),
        )
    });
    let dr = model.destination_rules().map(|p| {
        (
            Kind::DestinationRule,
            &p.namespace,
            &p.name,
            p.generation,
            &p.version,
            None,
        )
    });
    let gateways: Vec<_> = model
        .gateways()
        .map(|gw| {
            let namespace = gw.metadata.namespace.clone().unwrap_or_default();
            let version = shmesh_model::spec_version(&gw.spec);
            (
                namespace,
                gw.metadata.name.clone(),
                gw.metadata.generation,
                version,
            )
        })
        .collect();
    let gw = gateways.iter().map(|(ns, name, generation, version)| {
        (Kind::Gateway, ns, name, *generation, version, None)
    });
    for (kind, namespace, name, generation, version, vs) in vs.chain(dr).chain(gw) {
        let key = policy_key(kind, namespace, name);
        let unchanged = before.get(&key).filter(|p| *p.stamp.version == **version);
        let since = unchanged.map_or(now, |p| p.since);
        // The same version has the same routes: the summary is kept.
        let routes = vs.map(|vs| match unchanged.and_then(|p| p.routes.clone()) {
            Some(kept) => kept,
            None => Arc::new(routes::of(vs)),
        });
        out.insert(
            key,
            PolicyInfo {
                kind,
                namespace: namespace.clone(),
                name: name.clone(),
                stamp: PolicyStamp {
                    generation,
                    version: version.as_str().into(),
                },
                source: model.origin(kind, namespace, name).source,
                since,
                routes,
            },
        );
    }
    if let Ok(mut p) = handle.policies.lock() {
        *p = Arc::new(out);
    }
    if let Ok(mut s) = handle.gateway_api.lock() {
        *s = Arc::new(model.gateway_api_status());
    }
    handle.changed();
}

/// Logs each reference warning once, when it first appears.
fn report_warnings(
    handle: &Views,
    model: &Model,
    metrics: &Metrics,
    warned: &mut BTreeSet<String>,
) {
    let warnings = analyze::analyze(model);
    let mut now = BTreeSet::new();
    for w in &warnings {
        let line = w.to_string();
        if !warned.contains(&line) {
            warn!("{line}");
            metrics.views.config_warnings.inc();
        }
        now.insert(line);
    }
    let changed = now != *warned;
    *warned = now;
    if let Ok(mut w) = handle.warnings.lock() {
        *w = warnings;
    }
    if changed {
        handle.changed();
    }
}
