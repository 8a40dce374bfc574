//! When a routing change is live everywhere, and saying so where canary tools
//! look.
//!
//! Snapshots record which version of each VirtualService and DestinationRule
//! they were built from; the xDS registry records, per stream, the last
//! snapshot the proxy fully applied (every response ACKed). From the two, a
//! policy's rollout is: the proxies that receive it, split into those that
//! have applied its current version and those that have not.
//!
//! The admin server answers this per object (`/debug/rollout`), for pipelines
//! that poll over HTTP. With `--kubernetes`, one replica (elected through a
//! coordination.k8s.io Lease) writes it onto the object's status once every
//! proxy has applied the current generation, as Istio's status feature does,
//! so Flagger, Argo Rollouts and Spinnaker can wait for a traffic shift.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as MetricRegistry;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::views::{PolicyInfo, Views};
use serde_json::json;
use shmesh_api::{policy_key, Kind};
use shmesh_model::gateway_api::{Condition, GatewayStatus, RouteStatus};
use shmesh_xds::server::Registry;

/// A policy's progress towards every proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// Content hash of the version in force.
    pub version: String,
    /// At least one proxy receives the policy, every one that does has
    /// applied this version, and the fleet is not still reconnecting.
    pub live: bool,
    pub acked: Vec<String>,
    pub pending: Vec<String>,
    /// Why it is not live though no proxy is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

impl Report {
    /// Sets `live` and `waiting` from `acked` and `pending`, and from the
    /// fleet: nothing is live that no proxy has, or while the proxies of
    /// the previous process may still be coming back.
    fn judge(mut self, views: &Views, registry: &Registry) -> Report {
        self.waiting = if !self.pending.is_empty() {
            None
        } else if self.acked.is_empty() {
            Some("no connected proxy receives it".to_string())
        } else {
            views
                .fleet_gate()
                .and_then(|gate| gate.waiting(registry.connected()))
        };
        self.live = self.pending.is_empty() && self.waiting.is_none();
        self
    }
}

/// Right after a restart, the proxies the previous process served are still
/// reconnecting (Envoy's backoff takes seconds), and those that have not come
/// back cannot say whether they hold a change. Until as many proxies are
/// connected as before the restart (`state::Fleet`), or the grace
/// (`--reconnect-grace`) has passed (some may be gone for good), nothing is
/// reported live.
#[derive(Debug)]
pub struct FleetGate {
    started: Instant,
    expected: usize,
    grace: Duration,
}

impl FleetGate {
    /// A process that started now and served `expected` proxies before.
    pub fn new(expected: usize, grace: Duration) -> FleetGate {
        FleetGate {
            started: Instant::now(),
            expected,
            grace,
        }
    }

    /// Why rollout cannot be live yet with `connected` proxies, if it cannot.
    pub fn waiting(&self, connected: usize) -> Option<String> {
        let left = self.grace.checked_sub(self.started.elapsed())?;
        (connected < self.expected).then(|| {
            format!(
                "shmesh restarted: {connected} of the {} proxies it served before are back (waiting up to {}s more)",
                self.expected,
                left.as_secs().max(1)
            )
        })
    }
}

/// Keeps the number of connected proxies in the state directory
/// (`state::Fleet`) for the next process, written when it changes (looked
/// at every `FLEET_SAVE_EVERY`). Abort it before the streams are shut down,
/// or it records them leaving.
pub async fn save_fleet(registry: Arc<Registry>, state_dir: std::path::PathBuf) {
    let mut last = None;
    loop {
        let connected = registry.connected();
        if last != Some(connected) {
            let fleet = crate::state::Fleet { proxies: connected };
            let dir = state_dir.clone();
            match tokio::task::spawn_blocking(move || fleet.save(&dir)).await {
                Ok(Ok(())) => last = Some(connected),
                Ok(Err(e)) => warn!(error = %e, "cannot record the fleet in the state directory"),
                Err(_) => {}
            }
        }
        tokio::time::sleep(FLEET_SAVE_EVERY).await;
    }
}

const FLEET_SAVE_EVERY: Duration = Duration::from_secs(1);

fn report_of(key: &str, info: &PolicyInfo, views: &Views, registry: &Registry) -> Report {
    let rollout = registry.rollout(key, |stamp| stamp.version == info.stamp.version);
    Report {
        kind: info.kind.to_string(),
        namespace: info.namespace.clone(),
        name: info.name.clone(),
        generation: info.stamp.generation,
        version: info.stamp.version.to_string(),
        live: false,
        acked: rollout.acked,
        pending: rollout.pending,
        waiting: None,
    }
    .judge(views, registry)
}

/// How long changes take to be live on every proxy that receives them.
#[derive(Debug)]
pub struct RolloutMetrics {
    live_seconds: Histogram,
    pending: Gauge,
}

impl RolloutMetrics {
    pub fn new(registry: &mut MetricRegistry) -> RolloutMetrics {
        let m = RolloutMetrics {
            live_seconds: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            pending: Gauge::default(),
        };
        registry.register(
            "shmesh_rollout_live_seconds",
            "Seconds from a new version of a policy (VirtualService, DestinationRule, Gateway) taking effect in shmesh to every proxy receiving it having applied it",
            m.live_seconds.clone(),
        );
        registry.register(
            "shmesh_rollout_pending",
            "Policy versions not yet applied by every proxy that receives them",
            m.pending.clone(),
        );
        m
    }
}

/// How often at most `measure` looks at the rollouts under way: when a proxy
/// connects, leaves or finishes applying a snapshot.
const MEASURE_EVERY: Duration = Duration::from_millis(50);

/// A version not live after this long (no proxy receives it, or one never
/// applies it) is no longer followed.
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// Watches the rollout of every new version of a policy and records how long
/// it took to be live: applied by every proxy that receives it, and by at
/// least one, counted from when it took effect in shmesh. Runs until the
/// process ends.
pub async fn measure(
    views: Arc<Views>,
    registry: Arc<Registry>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    // What is there once every source has synced is not a change rolling out.
    let mut ready = views.ready();
    while !*ready.borrow_and_update() {
        if ready.changed().await.is_err() {
            return;
        }
    }
    let started = Instant::now();
    // Versions seen live (or there from the start), by policy.
    let mut done: HashMap<String, Arc<str>> = views
        .policies()
        .iter()
        .map(|(key, info)| (key.clone(), info.stamp.version.clone()))
        .collect();
    let mut changes = registry.changes();
    loop {
        tokio::time::sleep(MEASURE_EVERY).await;
        if changes.changed().await.is_err() {
            return;
        }
        let policies = views.policies();
        done.retain(|key, _| policies.contains_key(key));
        let mut pending = 0;
        for (key, info) in policies.iter() {
            let version = &info.stamp.version;
            if done.get(key) == Some(version)
                || info.since < started
                || info.since.elapsed() > GIVE_UP_AFTER
            {
                continue;
            }
            let rollout = registry.rollout(key, |stamp| stamp.version == *version);
            if rollout.pending.is_empty() && !rollout.acked.is_empty() {
                metrics
                    .rollout
                    .live_seconds
                    .observe(info.since.elapsed().as_secs_f64());
                done.insert(key.clone(), version.clone());
            } else {
                pending += 1;
            }
        }
        metrics.rollout.pending.set(pending);
    }
}

/// The rollout of one policy, if it exists.
pub fn report(
    views: &Views,
    registry: &Registry,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Option<Report> {
    let key = policy_key(kind, namespace, name);
    let policies = views.policies();
    policies
        .get(&key)
        .map(|info| report_of(&key, info, views, registry))
}

/// The rollout of every policy, and of every Gateway API route.
pub fn reports(views: &Views, registry: &Registry) -> Vec<Report> {
    let mut out: Vec<Report> = views
        .policies()
        .iter()
        .map(|(key, info)| report_of(key, info, views, registry))
        .collect();
    let status = views.gateway_api_status();
    out.extend(
        status
            .routes
            .iter()
            .map(|r| route_rollout(views, registry, r)),
    );
    out
}

/// The rollout of a Gateway API route (HTTPRoute, GRPCRoute, TCPRoute,
/// TLSRoute): that of the VirtualServices its rules became. It is live once
/// every proxy receiving any of them has applied their current versions.
pub fn route_report(
    views: &Views,
    registry: &Registry,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Option<Report> {
    let status = views.gateway_api_status();
    let route = status
        .routes
        .iter()
        .find(|r| r.kind == kind && r.namespace == namespace && r.name == name)?;
    Some(route_rollout(views, registry, route))
}

fn route_rollout(views: &Views, registry: &Registry, route: &RouteStatus) -> Report {
    let policies = views.policies();
    let parts: Vec<Report> = route
        .virtual_services
        .iter()
        .filter_map(|(ns, vs)| {
            let key = policy_key(Kind::VirtualService, ns, vs);
            policies
                .get(&key)
                .map(|info| report_of(&key, info, views, registry))
        })
        .collect();
    let pending: std::collections::BTreeSet<String> = parts
        .iter()
        .flat_map(|p| p.pending.iter().cloned())
        .collect();
    let acked: std::collections::BTreeSet<String> = parts
        .iter()
        .flat_map(|p| p.acked.iter().cloned())
        .filter(|a| !pending.contains(a))
        .collect();
    let versions: Vec<&str> = parts.iter().map(|p| p.version.as_str()).collect();
    Report {
        kind: route.kind.to_string(),
        namespace: route.namespace.clone(),
        name: route.name.clone(),
        generation: route.generation,
        version: shmesh_model::spec_version(&versions),
        live: false,
        acked: acked.into_iter().collect(),
        pending: pending.into_iter().collect(),
        waiting: None,
    }
    .judge(views, registry)
}

// ---------------------------------------------------------------- status writer

const LEASE_NAME: &str = "shmesh-status-writer";
const LEASE_SECONDS: i32 = 15;
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Pause after a wake-up before looking, so a burst of ACKs is one look.
const SETTLE: Duration = Duration::from_millis(200);
/// Even without a change notification, look again this often.
const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// Holds the status writer's Lease while it can; `true` on the watch while
/// this replica is the one that writes.
pub fn elect(client: kube::Client, namespace: String, identity: String) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let leases: Api<Lease> = Api::namespaced(client, &namespace);
        loop {
            let leading = match try_lead(&leases, &identity).await {
                Ok(l) => l,
                Err(e) => {
                    warn!(error = %e, lease = LEASE_NAME, %namespace, "leader election failed; not writing status");
                    false
                }
            };
            if *tx.borrow() != leading {
                info!(leading, %identity, "status writer leadership changed");
            }
            tx.send_replace(leading);
            // Ends with the status writer that reads the watch.
            tokio::select! {
                _ = tokio::time::sleep(RENEW_EVERY) => {}
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

/// One round of leader election: take the Lease if free or expired, renew it
/// if ours. Writes carry the Lease's resourceVersion, so two replicas never
/// both win.
async fn try_lead(leases: &Api<Lease>, identity: &str) -> Result<bool, kube::Error> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let Some(mut lease) = leases.get_opt(LEASE_NAME).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.to_string()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.to_string()),
                lease_duration_seconds: Some(LEASE_SECONDS),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let ours = spec.holder_identity.as_deref() == Some(identity);
    let expired = spec.renew_time.as_ref().is_none_or(|t| {
        let duration = spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS) as i64;
        t.0.as_second() + duration < now.0.as_second()
    });
    if !ours && !expired {
        return Ok(false);
    }
    if !ours {
        spec.holder_identity = Some(identity.to_string());
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(LEASE_SECONDS);
    spec.renew_time = Some(now);
    match leases
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// While this replica leads, writes `observedGeneration` and a `Reconciled`
/// condition onto every VirtualService and DestinationRule from the cluster
/// whose current generation every receiving proxy has applied.
pub async fn write_status(
    client: kube::Client,
    views: Arc<Views>,
    registry: Arc<Registry>,
    mut leader: watch::Receiver<bool>,
) {
    let mut changes = registry.changes();
    // Generation last written per policy, so each is written once.
    let mut written: BTreeMap<String, i64> = BTreeMap::new();
    let mut gateway_api = GatewayApiWriter::default();
    loop {
        tokio::select! {
            _ = changes.changed() => {}
            _ = leader.changed() => {}
            _ = tokio::time::sleep(RESCAN_EVERY) => {}
        }
        // Proxies ACK in bursts: let a burst settle before looking at every stream.
        tokio::time::sleep(SETTLE).await;
        if !*leader.borrow() {
            // A new leader may have written meanwhile; start afresh when leading again.
            written.clear();
            gateway_api = GatewayApiWriter::default();
            continue;
        }
        gateway_api.write(&client, &views, &registry).await;
        let policies = views.policies();
        written.retain(|key, _| policies.contains_key(key));
        for (key, info) in policies.iter() {
            let Some(generation) = info.stamp.generation else {
                continue;
            };
            if info.source != crate::kubernetes::SOURCE || written.get(key) == Some(&generation) {
                continue;
            }
            let report = report_of(key, info, &views, &registry);
            if !report.live {
                continue;
            }
            match patch_status(&client, info, generation, report.acked.len()).await {
                Ok(()) => {
                    debug!(%key, generation, proxies = report.acked.len(), "rollout status written");
                    written.insert(key.clone(), generation);
                }
                Err(e) => warn!(%key, error = %e, "writing rollout status failed; will retry"),
            }
        }
    }
}

async fn patch_status(
    client: &kube::Client,
    info: &PolicyInfo,
    generation: i64,
    proxies: usize,
) -> Result<(), kube::Error> {
    if !matches!(info.kind, Kind::VirtualService | Kind::DestinationRule) {
        return Ok(());
    }
    let ar = crate::kubernetes::api_resource(info.kind);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &info.namespace, &ar);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = serde_json::json!({
        "status": {
            "observedGeneration": generation,
            "conditions": [{
                "type": "Reconciled",
                "status": "True",
                "lastProbeTime": now,
                "lastTransitionTime": now,
                "reason": "ProxiesSynced",
                "message": format!("generation {generation} applied by all {proxies} connected proxies that receive it"),
            }],
        }
    });
    match api
        .patch_status(&info.name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

// ------------------------------------------------------- Gateway API status

/// Writes the Gateway API status conditions (`Model::gateway_api_status`)
/// onto GatewayClasses, Gateways and routes, each when it changes. A
/// Gateway is `Programmed` once every gateway proxy that receives it has
/// applied its current version, as the specification means by it.
#[derive(Default)]
struct GatewayApiWriter {
    /// The status last written per object (`Kind/ns/name`), without times.
    written: BTreeMap<String, serde_json::Value>,
}

impl GatewayApiWriter {
    async fn write(&mut self, client: &kube::Client, views: &Views, registry: &Registry) {
        let status = views.gateway_api_status();
        let mut wanted: Vec<(Kind, String, String, serde_json::Value)> = Vec::new();
        for class in &status.classes {
            let accepted = Condition {
                kind: "Accepted",
                status: true,
                reason: "Accepted",
                message: format!("served by {}", class.controller),
                field: String::new(),
            };
            wanted.push((
                Kind::GatewayClass,
                String::new(),
                class.name.clone(),
                json!({"conditions": [condition_json(&accepted, class.generation)]}),
            ));
        }
        for gw in &status.gateways {
            let body = gateway_json(gw, views, registry);
            wanted.push((
                Kind::KubernetesGateway,
                gw.namespace.clone(),
                gw.name.clone(),
                body,
            ));
        }
        for route in &status.routes {
            let parents: Vec<serde_json::Value> = route
                .parents
                .iter()
                .map(|p| {
                    let controller = status
                        .gateways
                        .iter()
                        .find(|g| {
                            g.name == p.parent.name
                                && Some(g.namespace.as_str())
                                    == Some(p.parent.namespace.as_deref().unwrap_or(&route.namespace))
                        })
                        .map_or(shmesh_api::gateway_api::CONTROLLERS[1], |g| g.controller.as_str());
                    json!({
                        "parentRef": parent_ref_json(&p.parent),
                        "controllerName": controller,
                        "conditions": p.conditions.iter().map(|c| condition_json(c, route.generation)).collect::<Vec<_>>(),
                    })
                })
                .collect();
            wanted.push((
                route.kind,
                route.namespace.clone(),
                route.name.clone(),
                json!({"parents": parents}),
            ));
        }
        for (kind, namespace, name, body) in wanted {
            let key = policy_key(kind, &namespace, &name);
            let key = format!("{}/{key}", crate::kubernetes::api_resource(kind).group);
            if self.written.get(&key) == Some(&body) {
                continue;
            }
            match patch_gateway_api_status(client, kind, &namespace, &name, &body).await {
                Ok(()) => {
                    debug!(%key, "Gateway API status written");
                    self.written.insert(key, body);
                }
                Err(e) => warn!(%key, error = %e, "writing Gateway API status failed; will retry"),
            }
        }
    }
}

/// A Gateway's status: Accepted as the model says, Programmed once the
/// fleet has applied it, its addresses and its listeners.
fn gateway_json(gw: &GatewayStatus, views: &Views, registry: &Registry) -> serde_json::Value {
    let key = policy_key(Kind::Gateway, &gw.namespace, &gw.istio_gateway);
    let rollout = views
        .policies()
        .get(&key)
        .map(|info| report_of(&key, info, views, registry));
    let accepted = gw
        .conditions
        .iter()
        .any(|c| c.kind == "Accepted" && c.status);
    let programmed = match &rollout {
        Some(r) if accepted && r.live && !r.acked.is_empty() => Condition {
            kind: "Programmed",
            status: true,
            reason: "Programmed",
            message: format!(
                "applied by all {} gateway proxies that receive it",
                r.acked.len()
            ),
            field: String::new(),
        },
        Some(r) if accepted && !r.pending.is_empty() => Condition {
            kind: "Programmed",
            status: false,
            reason: "Pending",
            message: format!(
                "{} of {} gateway proxies have applied it",
                r.acked.len(),
                r.acked.len() + r.pending.len()
            ),
            field: String::new(),
        },
        _ if accepted => Condition {
            kind: "Programmed",
            status: false,
            reason: "Pending",
            message: format!(
                "no gateway proxy labelled {}={} has connected",
                shmesh_api::gateway_api::GATEWAY_NAME_LABEL,
                gw.name
            ),
            field: String::new(),
        },
        _ => Condition {
            kind: "Programmed",
            status: false,
            reason: "Invalid",
            message: "the Gateway is not accepted".into(),
            field: String::new(),
        },
    };
    let gateway_programmed = programmed.status;
    let mut conditions: Vec<serde_json::Value> = gw
        .conditions
        .iter()
        .map(|c| condition_json(c, gw.generation))
        .collect();
    conditions.push(condition_json(&programmed, gw.generation));
    let listeners: Vec<serde_json::Value> = gw
        .listeners
        .iter()
        .map(|l| {
            let mut conditions: Vec<serde_json::Value> = l
                .conditions
                .iter()
                .map(|c| condition_json(c, gw.generation))
                .collect();
            let (status, reason, message) = if !l.programmed {
                (false, "Invalid", "the listener is not served")
            } else if gateway_programmed {
                (true, "Programmed", "applied by the gateway proxies")
            } else {
                (false, "Pending", "not yet applied by the gateway proxies")
            };
            let programmed = Condition {
                kind: "Programmed",
                status,
                reason,
                message: message.into(),
                field: String::new(),
            };
            conditions.push(condition_json(&programmed, gw.generation));
            json!({
                "name": l.name,
                "attachedRoutes": l.attached_routes,
                "supportedKinds": l.supported_kinds.iter().map(|k| json!({"group": "gateway.networking.k8s.io", "kind": k})).collect::<Vec<_>>(),
                "conditions": conditions,
            })
        })
        .collect();
    let addresses: Vec<serde_json::Value> = gw
        .addresses
        .iter()
        .map(|a| json!({"type": "IPAddress", "value": a}))
        .collect();
    json!({"conditions": conditions, "listeners": listeners, "addresses": addresses})
}

fn condition_json(c: &Condition, generation: Option<i64>) -> serde_json::Value {
    json!({
        "type": c.kind,
        "status": if c.status { "True" } else { "False" },
        "reason": c.reason,
        "message": c.message,
        "observedGeneration": generation.unwrap_or(0),
    })
}

fn parent_ref_json(p: &shmesh_api::gateway_api::ObjectRef) -> serde_json::Value {
    let mut out = json!({"name": p.name});
    for (field, value) in [
        ("group", &p.group),
        ("kind", &p.kind),
        ("namespace", &p.namespace),
        ("sectionName", &p.section_name),
    ] {
        if let Some(v) = value {
            out[field] = json!(v);
        }
    }
    if let Some(port) = p.port {
        out["port"] = json!(port);
    }
    out
}

async fn patch_gateway_api_status(
    client: &kube::Client,
    kind: Kind,
    namespace: &str,
    name: &str,
    status: &serde_json::Value,
) -> Result<(), kube::Error> {
    let ar = crate::kubernetes::api_resource(kind);
    let api: Api<DynamicObject> = if namespace.is_empty() {
        Api::all_with(client.clone(), &ar)
    } else {
        Api::namespaced_with(client.clone(), namespace, &ar)
    };
    // Conditions carry the time of this write.
    let mut status = status.clone();
    if let Some(ours) = status.get_mut("parents").and_then(|p| p.as_array_mut()) {
        // A route may have parents of other controllers: their entries stay.
        let current = match api.get_status(name).await {
            Ok(object) => object.data["status"]["parents"].clone(),
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        };
        let theirs = current.as_array().into_iter().flatten().filter(|p| {
            let controller = p["controllerName"].as_str().unwrap_or_default();
            !shmesh_api::gateway_api::CONTROLLERS.contains(&controller)
        });
        let mut merged: Vec<serde_json::Value> = theirs.cloned().collect();
        merged.append(ours);
        *ours = merged;
    }
    stamp_times(
        &mut status,
        &k8s_openapi::jiff::Timestamp::now().to_string(),
    );
    let body = json!({ "status": status });
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile: nothing to report on.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets `lastTransitionTime` on every condition in `value`.
fn stamp_times(value: &mut serde_json::Value, now: &str) {
    match value {
        serde_json::Value::Object(map) => {
            if map.contains_key("type") && map.contains_key("reason") {
                map.insert("lastTransitionTime".into(), json!(now));
            }
            for v in map.values_mut() {
                stamp_times(v, now);
            }
        }
        serde_json::Value::Array(list) => list.iter_mut().for_each(|v| stamp_times(v, now)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_replica_waits_for_its_fleet_within_the_grace() {
        let gate = FleetGate::new(10, Duration::from_secs(60));
        let waiting = gate.waiting(3).expect("3 of 10 back");
        assert!(waiting.contains("3 of the 10 proxies"), "{waiting}");
        assert_eq!(gate.waiting(10), None, "all back");
        assert_eq!(gate.waiting(12), None, "more than before");
        // Past the grace, proxies that did not return are taken as gone.
        let late = FleetGate::new(10, Duration::ZERO);
        assert_eq!(late.waiting(3), None);
        // A first start (nothing served before) waits for nobody.
        assert_eq!(FleetGate::new(0, Duration::from_secs(60)).waiting(0), None);
    }
}
