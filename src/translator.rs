//! The one writer: owns the model, applies batches of changes from the
//! sources, and keeps one snapshot per proxy view up to date.
//!
//! Changes arriving within the debounce window are applied together, then
//! every live view is updated incrementally (`translate::update`) and published
//! on its watch channel only if its content changed. Streams read the watches
//! (`ViewSource`); a view nobody watches any more is dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::allocator;
use crate::metrics::Metrics;
use crate::sources::Update;
use shmesh_api::{policy_key, Kind, Problem};
use shmesh_cache::{PolicyStamp, Snapshot};
use shmesh_model::{analyze, Change, Dirty, Model};
use shmesh_translate::node::{view_of, NodeError};
use shmesh_translate::{self as translate, ListenerMode, ProxyView};
use shmesh_xds::server::ViewSource;

type Watches = HashMap<ProxyView, watch::Sender<Option<Arc<Snapshot>>>>;

/// Handle for streams to watch views and for sources to send input.
pub struct Translator {
    watches: Mutex<Watches>,
    new_views: mpsc::UnboundedSender<ProxyView>,
    ready: watch::Sender<bool>,
    /// Problems by source, for the admin's debug view.
    pub problems: Mutex<HashMap<&'static str, Vec<Problem>>>,
    pub warnings: Mutex<Vec<Problem>>,
    /// Every VirtualService and DestinationRule in force, by `Kind/ns/name`.
    policies: Mutex<Arc<BTreeMap<String, PolicyInfo>>>,
    /// Delta clients with listeners get their virtual hosts over VHDS.
    vhds: bool,
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
}

impl ViewSource for Translator {
    type View = ProxyView;
    type Error = NodeError;

    fn view_of(
        &self,
        node: &envoy_types::pb::envoy::config::core::v3::Node,
        vhds_capable: bool,
    ) -> Result<ProxyView, NodeError> {
        let view = view_of(node)?;
        Ok(ProxyView {
            // Proxyless gRPC clients do not implement VHDS.
            vhds: self.vhds && vhds_capable && view.mode != ListenerMode::Proxyless,
            ..view
        })
    }

    fn watch(&self, view: &ProxyView) -> watch::Receiver<Option<Arc<Snapshot>>> {
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = watches.get(view) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(None);
        watches.insert(view.clone(), tx);
        // The translator task builds the first snapshot of the view.
        let _ = self.new_views.send(view.clone());
        rx
    }
}

impl Translator {
    /// Whether every source has synced (`/readyz`).
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Every VirtualService and DestinationRule in force.
    pub fn policies(&self) -> Arc<BTreeMap<String, PolicyInfo>> {
        self.policies.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Number of views being served.
    pub fn views(&self) -> usize {
        self.watches.lock().map(|w| w.len()).unwrap_or(0)
    }
}

/// Starts the translator task. `sources` names every source that must sync
/// before any proxy is answered.
pub fn spawn(
    sources: BTreeSet<&'static str>,
    debounce: Duration,
    vhds: bool,
    metrics: Arc<Metrics>,
) -> (
    Arc<Translator>,
    mpsc::Sender<Update>,
    tokio::task::JoinHandle<()>,
) {
    let (input_tx, input_rx) = mpsc::channel(1024);
    let (view_tx, view_rx) = mpsc::unbounded_channel();
    let (ready_tx, _) = watch::channel(false);
    let handle = Arc::new(Translator {
        watches: Mutex::new(HashMap::new()),
        new_views: view_tx,
        ready: ready_tx,
        problems: Mutex::new(HashMap::new()),
        warnings: Mutex::new(Vec::new()),
        policies: Mutex::new(Arc::default()),
        vhds,
    });
    let task = tokio::spawn(run(
        handle.clone(),
        sources,
        debounce,
        metrics,
        input_rx,
        view_rx,
    ));
    (handle, input_tx, task)
}

async fn run(
    handle: Arc<Translator>,
    mut pending_sources: BTreeSet<&'static str>,
    debounce: Duration,
    metrics: Arc<Metrics>,
    mut inputs: mpsc::Receiver<Update>,
    mut new_views: mpsc::UnboundedReceiver<ProxyView>,
) {
    let mut model = Model::new();
    let mut snapshots: HashMap<ProxyView, Arc<Snapshot>> = HashMap::new();
    let mut batch: Vec<Change> = Vec::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut ready = pending_sources.is_empty();
    let mut warned: BTreeSet<String> = BTreeSet::new();
    loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            input = inputs.recv() => match input {
                None => return,
                Some(Update::Changes(changes)) => {
                    batch.extend(changes);
                    if deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + debounce);
                    }
                }
                Some(Update::Synced(source)) => {
                    pending_sources.remove(source);
                    if !ready && pending_sources.is_empty() {
                        // Apply everything known before declaring readiness.
                        let dirty = heavy(|| model.apply(std::mem::take(&mut batch)));
                        deadline = None;
                        report_warnings(&handle, &model, &metrics, &mut warned);
                        record_policies(&handle, &model);
                        debug!(?dirty, "initial state applied");
                        ready = true;
                        handle.ready.send_replace(true);
                        info!(services = model.services().len(), "all sources synced; serving");
                        heavy(|| rebuild_all(&handle, &model, &mut snapshots, &metrics));
                    }
                }
                Some(Update::Problems(source, problems)) => {
                    if let Ok(mut p) = handle.problems.lock() {
                        p.insert(source, problems);
                    }
                }
            },
            Some(view) = new_views.recv() => {
                if ready {
                    let snap = heavy(|| translate::build(&model, &view));
                    install(&handle, &mut snapshots, &metrics, view, snap);
                }
            }
            _ = sleep => {
                deadline = None;
                let started = Instant::now();
                let changes = std::mem::take(&mut batch);
                let count = changes.len();
                // One heavy stretch for the batch: freed memory is handed
                // back once, after the views are updated.
                let applied = heavy(|| {
                    let dirty = model.apply(changes);
                    if !ready || dirty.is_empty() {
                        return false;
                    }
                    report_warnings(&handle, &model, &metrics, &mut warned);
                    if dirty.routes || !dirty.vs_hosts.is_empty() || !dirty.config.is_empty() {
                        record_policies(&handle, &model);
                    }
                    update_all(&handle, &model, &mut snapshots, &dirty, &metrics);
                    true
                });
                if applied {
                    debug!(changes = count, elapsed_us = started.elapsed().as_micros() as u64, "applied");
                }
            }
        }
    }
}

/// Runs CPU-heavy work (applying changes, translating) without holding up
/// the runtime's other tasks: on a multi-threaded runtime the worker hands
/// its queue to another thread while this runs. Freed memory is reused
/// while it runs and handed back after.
fn heavy<T>(f: impl FnOnce() -> T) -> T {
    crate::blocking::in_place(|| allocator::holding_freed_pages(f))
}

fn publish(handle: &Translator, view: &ProxyView, snap: &Arc<Snapshot>) {
    let watches = handle.watches.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = watches.get(view) {
        tx.send_if_modified(|cur| {
            let same = cur.as_ref().is_some_and(|c| c.version() == snap.version());
            if !same {
                *cur = Some(snap.clone());
            }
            !same
        });
    }
}

/// Views still watched; the others are dropped.
fn live_views(handle: &Translator) -> Vec<ProxyView> {
    let mut watches = handle.watches.lock().unwrap_or_else(|e| e.into_inner());
    watches.retain(|_, tx| tx.receiver_count() > 0);
    watches.keys().cloned().collect()
}

fn rebuild_all(
    handle: &Translator,
    model: &Model,
    snapshots: &mut HashMap<ProxyView, Arc<Snapshot>>,
    metrics: &Metrics,
) {
    let views = live_views(handle);
    snapshots.retain(|v, _| views.contains(v));
    for view in views {
        let snap = translate::build(model, &view);
        install(handle, snapshots, metrics, view, snap);
    }
}

fn update_all(
    handle: &Translator,
    model: &Model,
    snapshots: &mut HashMap<ProxyView, Arc<Snapshot>>,
    dirty: &Dirty,
    metrics: &Metrics,
) {
    let views = live_views(handle);
    snapshots.retain(|v, _| views.contains(v));
    for view in views {
        let next = match snapshots.get(&view) {
            Some(prev) => translate::update(model, &view, prev, dirty),
            None => translate::build(model, &view),
        };
        install(handle, snapshots, metrics, view, next);
    }
}

/// Makes `snap` the view's snapshot: it takes over the type sets other views
/// hold alike, is counted, and goes to the view's streams.
fn install(
    handle: &Translator,
    snapshots: &mut HashMap<ProxyView, Arc<Snapshot>>,
    metrics: &Metrics,
    view: ProxyView,
    snap: Snapshot,
) {
    let snap = Arc::new(snap.sharing_sets_with(snapshots.values().map(|s| &**s)));
    Metrics::inc(&metrics.translations);
    publish(handle, &view, &snap);
    snapshots.insert(view, snap);
}

/// Records the policies in force, for rollout tracking.
fn record_policies(handle: &Translator, model: &Model) {
    let mut out = BTreeMap::new();
    let vs = model.virtual_services().map(|p| {
        (
            Kind::VirtualService,
            &p.namespace,
            &p.name,
            p.generation,
            &p.version,
        )
    });
    let dr = model.destination_rules().map(|p| {
        (
            Kind::DestinationRule,
            &p.namespace,
            &p.name,
            p.generation,
            &p.version,
        )
    });
    for (kind, namespace, name, generation, version) in vs.chain(dr) {
        out.insert(
            policy_key(kind, namespace, name),
            PolicyInfo {
                kind,
                namespace: namespace.clone(),
                name: name.clone(),
                stamp: PolicyStamp {
                    generation,
                    version: version.as_str().into(),
                },
                source: model.origin(kind, namespace, name).source,
            },
        );
    }
    if let Ok(mut p) = handle.policies.lock() {
        *p = Arc::new(out);
    }
}

/// Logs each reference warning once, when it first appears.
fn report_warnings(
    handle: &Translator,
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
            Metrics::inc(&metrics.config_warnings);
        }
        now.insert(line);
    }
    *warned = now;
    if let Ok(mut w) = handle.warnings.lock() {
        *w = warnings;
    }
}
