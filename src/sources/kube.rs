//! Objects from the Kubernetes API server: Services, EndpointSlices and Pods,
//! and Istio's VirtualService, DestinationRule, ServiceEntry, WorkloadEntry
//! and Sidecar, read as `networking.istio.io/v1` (the API server serves
//! objects written in `v1beta1` and `v1alpha3` as `v1` too).
//!
//! One kube-rs watcher per kind, in all namespaces or once per namespace of
//! `--watch-namespace`, lists and then watches from the list's
//! resourceVersion. kube-rs resumes a broken watch from the last event or
//! bookmark and relists after 410 Gone; meanwhile the model keeps serving the
//! last state. Every object goes through `model::parse::decode`, the same path
//! as files, and reaches the views task as `Update::Changes`. A relist sends
//! every object again: the model ignores upserts equal to what it holds, so
//! relisting an unchanged cluster pushes nothing. Objects missing from a
//! relist are deleted.
//!
//! A watch keeps only the keys of its objects (the model keeps the objects
//! themselves), so a cluster of 100k Pods costs 100k keys here. An invalid
//! object is logged once per resourceVersion, counted, reported on
//! `/debug/problems`, and its last good version stays in force. The source
//! reports `Synced` once every watch has its first full list, so no proxy is
//! answered from a cold cache. A kind the API server does not serve (Istio's
//! CRDs not installed) counts as empty and is retried in the background.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ::kube::api::{Api, ApiResource, DynamicObject};
use ::kube::runtime::watcher::{self, watcher, Event};
use ::kube::runtime::WatchStreamExt;
use ::kube::Client;
use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::{mpsc, Mutex};
use tracing::{debug, error, info, info_span, warn, Instrument};

use super::Update;
use crate::kubernetes::{api_resource, SOURCE};
use crate::metrics::Metrics;
use crate::state::LastGood;
use shmesh_api::parse::{decode, decode_keeping, Outcome};
use shmesh_api::{Kind, ObjectKey, Origin, Problem};
use shmesh_model::Change;

/// Changes go to the views task in batches of at most this many, so a relist
/// of a large cluster is many bounded messages and the views task's channel
/// applies back-pressure.
const MAX_BATCH: usize = 500;

/// Watches every kind shmesh reads (in `namespaces`, or all namespaces when
/// empty) and feeds the views task until it goes away. Secrets are read only
/// with `secrets` (when shmesh has a CA: only a proxy that proved its
/// identity is given what a Secret holds).
pub async fn run(
    client: Client,
    namespaces: Vec<String>,
    secrets: bool,
    state_dir: Option<PathBuf>,
    tx: mpsc::Sender<Update>,
    metrics: Arc<Metrics>,
) {
    let targets = targets(namespaces, secrets);
    info!(watches = targets.len(), "watching the Kubernetes API");
    let shared = Arc::new(Shared {
        tx,
        metrics,
        state_dir,
        unsynced: AtomicUsize::new(targets.len()),
        problems: Mutex::new(BTreeMap::new()),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for target in targets {
        let api = match &target.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &target.resource),
            None => Api::all_with(client.clone(), &target.resource),
        };
        let span = info_span!(
            "watch",
            kind = %target.kind,
            namespace = target.namespace.as_deref().unwrap_or("*")
        );
        tasks.spawn(watch(target, api, shared.clone()).instrument(span));
    }
    // Watch tasks end only when the views task is gone.
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            error!(error = %e, "a Kubernetes watch task failed");
        }
    }
}

/// One watch per kind, in all namespaces or once per given namespace.
fn targets(namespaces: Vec<String>, secrets: bool) -> Vec<Target> {
    let unique: BTreeSet<String> = namespaces.into_iter().filter(|n| !n.is_empty()).collect();
    let scopes: Vec<Option<String>> = if unique.is_empty() {
        vec![None]
    } else {
        unique.into_iter().map(Some).collect()
    };
    let mut targets = Vec::new();
    for kind in Kind::ALL {
        if kind == Kind::Secret && !secrets {
            continue;
        }
        // Objects of no namespace are watched once, whatever is watched.
        let all = [None];
        let scopes = if kind.cluster_scoped() {
            &all[..]
        } else {
            &scopes[..]
        };
        for namespace in scopes {
            targets.push(Target {
                id: targets.len(),
                kind,
                resource: api_resource(kind),
                namespace: namespace.clone(),
            });
        }
    }
    targets
}

/// One watch: a kind, in all namespaces or in one.
struct Target {
    /// Index among the source's watches, for its share of the problems.
    id: usize,
    kind: Kind,
    resource: ApiResource,
    namespace: Option<String>,
}

/// What the watches of this source share.
struct Shared {
    tx: mpsc::Sender<Update>,
    metrics: Arc<Metrics>,
    /// `--state-dir`, where last good versions are kept.
    state_dir: Option<PathBuf>,
    /// Watches that have not finished their first list yet.
    unsynced: AtomicUsize,
    /// Each watch's current problems; the views task gets them all at once.
    problems: Mutex<BTreeMap<usize, Vec<Problem>>>,
}

impl Shared {
    /// Sends and clears `batch`; false once the views task is gone.
    async fn flush(&self, batch: &mut Vec<Change>) -> bool {
        if batch.is_empty() {
            return true;
        }
        self.tx
            .send(Update::Changes(std::mem::take(batch)))
            .await
            .is_ok()
    }

    /// Records that one watch has its first list; the last one tells the
    /// translator the source is synced. Each watch flushed its changes
    /// before, so they are all applied before readiness.
    async fn synced(&self) -> bool {
        if self.unsynced.fetch_sub(1, Ordering::AcqRel) != 1 {
            return true;
        }
        info!("every Kubernetes watch has its first full list");
        self.tx.send(Update::Synced(SOURCE)).await.is_ok()
    }

    /// Replaces one watch's problems and reports the source's full list.
    async fn report(&self, watch: usize, problems: Vec<Problem>) -> bool {
        let mut all = self.problems.lock().await;
        all.insert(watch, problems);
        let list: Vec<Problem> = all.values().flatten().cloned().collect();
        // Sent under the lock, so two watches' reports cannot overtake each other.
        self.tx.send(Update::Problems(SOURCE, list)).await.is_ok()
    }
}

/// One running watch: what it holds and the changes not sent yet.
struct Watch {
    target: Target,
    shared: Arc<Shared>,
    state: WatchState,
    batch: Vec<Change>,
    /// The first list is done (or the kind is not served).
    synced: bool,
    /// The last list failed with 404; warned once.
    missing: bool,
}

/// Runs one watcher until the views task goes away.
async fn watch(target: Target, api: Api<DynamicObject>, shared: Arc<Shared>) {
    let watch = Watch {
        state: WatchState::new(target.kind, shared.state_dir.as_deref()),
        target,
        shared,
        batch: Vec::new(),
        synced: false,
        missing: false,
    };
    watch.run(api).await;
}

impl Watch {
    async fn run(mut self, api: Api<DynamicObject>) {
        let mut config = watcher::Config::default();
        if self.target.kind == Kind::Secret {
            // Istio's filter: never hold service-account tokens or Helm's
            // release records, which no credentialName can name usefully.
            config =
                config.fields("type!=kubernetes.io/service-account-token,type!=helm.sh/release.v1");
        }
        let mut events = pin!(watcher(api, config).default_backoff());
        loop {
            // Send what has accumulated whenever nothing more is ready: a
            // burst of events becomes one batch, a lone event is not held back.
            let next = match events.next().now_or_never() {
                Some(next) => next,
                None => {
                    if !self.flush().await {
                        return;
                    }
                    events.next().await
                }
            };
            // The watcher retries for ever; its stream does not end.
            let Some(next) = next else { return };
            let listed = match next {
                Ok(event) => self.on_event(event),
                Err(e) if is_not_found(&e) => self.on_not_served(),
                Err(e) => {
                    log_error(&e);
                    false
                }
            };
            if !self.publish(listed).await {
                return;
            }
        }
    }

    /// Applies one event; true when it completes a list.
    fn on_event(&mut self, event: Event<DynamicObject>) -> bool {
        let done = matches!(event, Event::InitDone);
        if done && self.missing {
            info!("{} now served; listed", describe(&self.target.resource));
            self.missing = false;
        }
        self.handle(event);
        done
    }

    /// A LIST answered 404: the kind is empty, as far as shmesh can tell.
    fn on_not_served(&mut self) -> bool {
        if !self.missing {
            warn!(
                "{} not served by the API server; treating as empty and retrying in the background",
                describe(&self.target.resource)
            );
            self.missing = true;
        }
        // Whatever an earlier list held is gone.
        self.handle(Event::Init);
        self.handle(Event::InitDone);
        true
    }

    fn handle(&mut self, event: Event<DynamicObject>) {
        let metrics = &self.shared.metrics;
        self.state
            .handle(event, &self.target.resource, metrics, &mut self.batch);
    }

    /// Sends changed problems, and the batch when a list is complete or the
    /// batch is full; the first complete list counts towards readiness.
    /// False once the views task is gone.
    async fn publish(&mut self, listed: bool) -> bool {
        if let Some(problems) = self.state.take_problems() {
            if !self.shared.report(self.target.id, problems).await {
                return false;
            }
        }
        if (listed || self.batch.len() >= MAX_BATCH) && !self.flush().await {
            return false;
        }
        if listed && !self.synced {
            self.synced = true;
            return self.shared.synced().await;
        }
        true
    }

    async fn flush(&mut self) -> bool {
        self.shared.flush(&mut self.batch).await
    }
}

/// `networking.istio.io/v1 virtualservices`, for logs.
fn describe(resource: &ApiResource) -> String {
    format!("{} {}", resource.api_version, resource.plural)
}

/// A list answered 404: the resource (typically a CRD) does not exist.
fn is_not_found(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::InitialListFailed(::kube::Error::Api(s)) if s.code == 404)
}

/// Watch errors change nothing in the model: the last state keeps being
/// served while the watcher retries (with backoff).
fn log_error(e: &watcher::Error) {
    match e {
        watcher::Error::WatchError(s) if s.code == 410 => {
            info!("watch expired (410 Gone); relisting");
        }
        _ => warn!(error = %e, "watch failed; serving the last state and retrying with backoff"),
    }
}

/// What one watch holds: the keys of its objects and the ones it rejected.
#[derive(Debug)]
struct WatchState {
    kind: Kind,
    /// Objects that exist in the API server as far as this watch knows,
    /// rejected ones included (their last good version stays in force).
    known: HashSet<ObjectKey>,
    /// Keys seen since the relist in progress began.
    listing: Option<HashSet<ObjectKey>>,
    rejected: BTreeMap<ObjectKey, Rejection>,
    problems_changed: bool,
    /// Objects a valid version of which this process has sent.
    served: HashSet<ObjectKey>,
    /// Objects served as kept before the restart, with the problem saying so.
    recalled: BTreeMap<ObjectKey, Problem>,
    /// Last good versions kept across restarts (`--state-dir`).
    last_good: Option<LastGood>,
}

/// Why an object was rejected, and which version of it.
#[derive(Debug)]
struct Rejection {
    resource_version: Option<String>,
    problems: Vec<Problem>,
}

impl WatchState {
    fn new(kind: Kind, state_dir: Option<&Path>) -> WatchState {
        WatchState {
            kind,
            known: HashSet::new(),
            listing: None,
            rejected: BTreeMap::new(),
            problems_changed: false,
            served: HashSet::new(),
            recalled: BTreeMap::new(),
            last_good: state_dir
                .filter(|_| LastGood::keeps(kind))
                .map(|d| LastGood::open(d, SOURCE)),
        }
    }

    /// Turns one watcher event into model changes, appended to `out`.
    fn handle(
        &mut self,
        event: Event<DynamicObject>,
        resource: &ApiResource,
        metrics: &Metrics,
        out: &mut Vec<Change>,
    ) {
        let name = match &event {
            Event::Init => "list",
            Event::InitApply(_) => "listed",
            Event::InitDone => "listed_all",
            Event::Apply(_) => "apply",
            Event::Delete(_) => "delete",
        };
        metrics.sources.watch_event(self.kind, name);
        match event {
            Event::Init => self.listing = Some(HashSet::new()),
            Event::InitApply(object) => {
                let key = self.apply(object, resource, metrics, out);
                if let (Some(key), Some(listing)) = (key, self.listing.as_mut()) {
                    listing.insert(key);
                }
            }
            Event::InitDone => self.finish_list(out),
            Event::Apply(object) => {
                self.apply(object, resource, metrics, out);
            }
            Event::Delete(object) => self.delete(&object.metadata, out),
        }
    }

    /// Decodes an added or changed object; returns its key.
    fn apply(
        &mut self,
        object: DynamicObject,
        resource: &ApiResource,
        metrics: &Metrics,
        out: &mut Vec<Change>,
    ) -> Option<ObjectKey> {
        let Some(key) = key_of(self.kind, &object.metadata) else {
            warn!(kind = %self.kind, "object without a name; ignored");
            return None;
        };
        let resource_version = object.metadata.resource_version.clone();
        let origin = Origin {
            source: SOURCE.into(),
            line: None,
        };
        let document = to_json(object, resource);
        let outcome = match self.last_good {
            Some(_) => decode_keeping(&origin, document),
            None => decode(&origin, document),
        };
        match outcome {
            Outcome::Object(mut parsed) => {
                self.clear_rejection(&key);
                if let (Some(store), Some(doc)) = (self.last_good.as_mut(), parsed.document.take())
                {
                    crate::blocking::in_place(|| store.remember(&key, &doc));
                }
                self.served.insert(key.clone());
                self.recalled.remove(&key);
                out.push(Change::Upsert(key.clone(), parsed.object, parsed.origin));
            }
            Outcome::Rejected { mut problems, .. } => {
                if let Some(note) = self.recalled.get(&key) {
                    problems.push(note.clone());
                } else if !self.served.contains(&key) {
                    // Invalid since this process first saw it: the version
                    // served before the restart, if kept.
                    let (kept, problem) =
                        LastGood::serve_for_invalid(self.last_good.as_ref(), &key, &origin);
                    if let Some(kept) = kept {
                        self.served.insert(key.clone());
                        self.recalled.insert(key.clone(), problem.clone());
                        out.push(Change::Upsert(key.clone(), kept.object, kept.origin));
                    }
                    problems.push(problem);
                }
                self.reject(&key, resource_version, problems, metrics)
            }
            // Not expected: apiVersion and kind come from the ApiResource.
            Outcome::Skipped {
                kind, api_version, ..
            } => debug!(%kind, %api_version, "skipping kind shmesh does not read"),
        }
        self.known.insert(key.clone());
        Some(key)
    }

    /// Records a rejected object; its last good version (if any) stays.
    fn reject(
        &mut self,
        key: &ObjectKey,
        resource_version: Option<String>,
        problems: Vec<Problem>,
        metrics: &Metrics,
    ) {
        let previous = self.rejected.get(key);
        // A relist sends the same bad version again: say it once.
        let seen = resource_version.is_some()
            && previous.is_some_and(|r| r.resource_version == resource_version);
        if !seen {
            for problem in &problems {
                warn!("{problem}");
            }
            metrics.sources.config_errors.inc();
        }
        if previous.is_none_or(|r| r.problems != problems) {
            self.problems_changed = true;
        }
        self.rejected.insert(
            key.clone(),
            Rejection {
                resource_version,
                problems,
            },
        );
    }

    /// `key` is gone from the cluster.
    fn forget(&mut self, key: &ObjectKey) {
        self.served.remove(key);
        self.recalled.remove(key);
        if let Some(store) = self.last_good.as_mut() {
            crate::blocking::in_place(|| store.forget(key));
        }
    }

    fn clear_rejection(&mut self, key: &ObjectKey) {
        if self.rejected.remove(key).is_some() {
            self.problems_changed = true;
        }
    }

    /// A relist is complete: what it did not list is gone.
    fn finish_list(&mut self, out: &mut Vec<Change>) {
        let Some(listed) = self.listing.take() else {
            return;
        };
        let gone: Vec<ObjectKey> = self.known.difference(&listed).cloned().collect();
        for key in gone {
            self.forget(&key);
            self.clear_rejection(&key);
            out.push(Change::Delete(key));
        }
        self.known = listed;
    }

    fn delete(&mut self, metadata: &ObjectMeta, out: &mut Vec<Change>) {
        let Some(key) = key_of(self.kind, metadata) else {
            return;
        };
        self.forget(&key);
        self.clear_rejection(&key);
        if self.known.remove(&key) {
            out.push(Change::Delete(key));
        }
    }

    /// This watch's problems, if they changed since the last call.
    fn take_problems(&mut self) -> Option<Vec<Problem>> {
        if !std::mem::take(&mut self.problems_changed) {
            return None;
        }
        Some(
            self.rejected
                .values()
                .flat_map(|r| r.problems.iter().cloned())
                .collect(),
        )
    }
}

/// The model's key for an object; the namespace defaults as `decode` does.
fn key_of(kind: Kind, metadata: &ObjectMeta) -> Option<ObjectKey> {
    let name = metadata.name.clone().filter(|n| !n.is_empty())?;
    let namespace = metadata
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string());
    Some(ObjectKey {
        kind,
        namespace,
        name,
    })
}

/// The object as the JSON `decode` reads. Items of a list carry no
/// apiVersion and kind, so both come from the resource being watched.
fn to_json(object: DynamicObject, resource: &ApiResource) -> serde_json::Value {
    let DynamicObject {
        mut metadata, data, ..
    } = object;
    let mut map = match data {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    // The model reads neither, and they are most of a typical object's
    // metadata (kubectl's last-applied annotation repeats the whole object).
    metadata.managed_fields = None;
    metadata.annotations = None;
    map.insert("apiVersion".into(), resource.api_version.clone().into());
    map.insert("kind".into(), resource.kind.clone().into());
    map.insert(
        "metadata".into(),
        serde_json::to_value(metadata).unwrap_or_default(),
    );
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: serde_json::Value) -> DynamicObject {
        serde_json::from_value(value).expect("a DynamicObject")
    }

    /// A VirtualService as a list item (no apiVersion or kind).
    fn vs(name: &str, rv: &str, weight: i64) -> DynamicObject {
        object(json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
            "spec": {"hosts": ["a"], "http": [{"route": [
                {"destination": {"host": "a"}, "weight": weight},
                {"destination": {"host": "b"}, "weight": 1}
            ]}]}
        }))
    }

    struct Fixture {
        state: WatchState,
        resource: ApiResource,
        metrics: Metrics,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                state: WatchState::new(Kind::VirtualService, None),
                resource: api_resource(Kind::VirtualService),
                metrics: Metrics::default(),
            }
        }

        fn handle(&mut self, event: Event<DynamicObject>) -> Vec<Change> {
            let mut out = Vec::new();
            self.state
                .handle(event, &self.resource, &self.metrics, &mut out);
            out
        }

        fn list(&mut self, objects: Vec<DynamicObject>) -> Vec<Change> {
            let mut out = self.handle(Event::Init);
            for o in objects {
                out.extend(self.handle(Event::InitApply(o)));
            }
            out.extend(self.handle(Event::InitDone));
            out
        }

        fn errors(&self) -> u64 {
            self.metrics.sources.config_errors.get()
        }
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Upsert(k, _, _) => format!("upsert {}", k.name),
                Change::Delete(k) => format!("delete {}", k.name),
            })
            .collect()
    }

    #[test]
    fn relist_deletes_only_what_is_gone() {
        let mut f = Fixture::new();
        let first = f.list(vec![vs("a", "1", 1), vs("b", "2", 1)]);
        assert_eq!(names(&first), ["upsert a", "upsert b"]);
        let second = f.list(vec![vs("b", "2", 1)]);
        assert_eq!(names(&second), ["upsert b", "delete a"]);
        assert_eq!(
            names(&f.handle(Event::Apply(vs("c", "3", 1)))),
            ["upsert c"]
        );
        assert_eq!(
            names(&f.handle(Event::Delete(vs("c", "4", 1)))),
            ["delete c"]
        );
        // Deleting what this watch never held changes nothing.
        assert!(f.handle(Event::Delete(vs("zz", "5", 1))).is_empty());
    }

    #[test]
    fn rejected_object_keeps_its_last_good_version() {
        let mut f = Fixture::new();
        f.list(vec![vs("a", "1", 1)]);
        assert!(f.handle(Event::Apply(vs("a", "2", -5))).is_empty());
        assert_eq!(f.errors(), 1);
        let problems = f.state.take_problems().expect("problems changed");
        assert_eq!(problems.len(), 1);
        let line = problems[0].to_string();
        assert!(
            line.starts_with(
                "kubernetes: error: VirtualService default/a: spec.http[0].route[0].weight:"
            ),
            "{line}"
        );
        // A relist sends the same bad version: not deleted, not counted again.
        assert!(names(&f.list(vec![vs("a", "2", -5)])).is_empty());
        assert_eq!(f.errors(), 1);
        assert!(f.state.take_problems().is_none());
        // A new bad version is reported again.
        f.handle(Event::Apply(vs("a", "3", -6)));
        assert_eq!(f.errors(), 2);
        assert!(f.state.take_problems().is_some());
        // Fixed: applied, and the problem is gone.
        assert_eq!(
            names(&f.handle(Event::Apply(vs("a", "4", 1)))),
            ["upsert a"]
        );
        assert_eq!(f.state.take_problems(), Some(vec![]));
    }

    #[test]
    fn deleting_a_rejected_object_clears_its_problem() {
        let mut f = Fixture::new();
        f.list(vec![vs("bad", "1", -1)]);
        let problems = f.state.take_problems().expect("problems");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[1].reason.starts_with("not served: invalid"),
            "an object invalid from the start is not served: {problems:?}"
        );
        assert_eq!(
            names(&f.handle(Event::Delete(vs("bad", "2", -1)))),
            ["delete bad"]
        );
        assert_eq!(f.state.take_problems(), Some(vec![]));
    }

    #[test]
    fn list_items_get_api_version_and_kind() {
        let svc = object(json!({
            "metadata": {
                "name": "s", "namespace": "ns", "resourceVersion": "7",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "managedFields": [{"manager": "kubectl"}]
            },
            "spec": {"ports": [{"port": 80}]}
        }));
        let value = to_json(svc, &api_resource(Kind::Service));
        assert_eq!(value["apiVersion"], "v1");
        assert_eq!(value["kind"], "Service");
        assert_eq!(value["metadata"]["name"], "s");
        assert!(value["metadata"].get("annotations").is_none());
        assert!(value["metadata"].get("managedFields").is_none());
        let origin = Origin {
            source: SOURCE.into(),
            line: None,
        };
        assert!(matches!(decode(&origin, value), Outcome::Object(_)));
    }

    #[test]
    fn one_watch_per_kind_and_namespace() {
        assert_eq!(targets(vec![], true).len(), Kind::ALL.len());
        assert_eq!(targets(vec![], false).len(), Kind::ALL.len() - 1);
        let per_ns = targets(vec!["b".into(), "a".into(), "b".into(), "".into()], true);
        let cluster_scoped = Kind::ALL.iter().filter(|k| k.cluster_scoped()).count();
        assert_eq!(per_ns.len(), 2 * Kind::ALL.len() - cluster_scoped);
        assert!(per_ns
            .iter()
            .filter(|t| t.kind.cluster_scoped())
            .all(|t| t.namespace.is_none()));
        assert_eq!(per_ns[0].namespace.as_deref(), Some("a"));
        assert!(per_ns.iter().enumerate().all(|(i, t)| t.id == i));
    }

    #[test]
    fn resources_are_where_the_api_server_serves_them() {
        let r = api_resource(Kind::EndpointSlice);
        assert_eq!(r.api_version, "discovery.k8s.io/v1");
        assert_eq!(r.plural, "endpointslices");
        let r = api_resource(Kind::WorkloadEntry);
        assert_eq!(r.api_version, "networking.istio.io/v1");
        assert_eq!(r.plural, "workloadentries");
        assert_eq!(api_resource(Kind::Pod).api_version, "v1");
    }
}
