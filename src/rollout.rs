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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde::Serialize;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::views::{PolicyInfo, Views};
use shmesh_api::{policy_key, Kind};
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
    /// Every proxy that receives the policy has applied this version.
    pub live: bool,
    pub acked: Vec<String>,
    pub pending: Vec<String>,
}

fn report_of(key: &str, info: &PolicyInfo, registry: &Registry) -> Report {
    let rollout = registry.rollout(key, |stamp| stamp.version == info.stamp.version);
    Report {
        kind: info.kind.to_string(),
        namespace: info.namespace.clone(),
        name: info.name.clone(),
        generation: info.stamp.generation,
        version: info.stamp.version.to_string(),
        live: rollout.pending.is_empty(),
        acked: rollout.acked,
        pending: rollout.pending,
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
        .map(|info| report_of(&key, info, registry))
}

/// The rollout of every policy.
pub fn reports(views: &Views, registry: &Registry) -> Vec<Report> {
    views
        .policies()
        .iter()
        .map(|(key, info)| report_of(key, info, registry))
        .collect()
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
            continue;
        }
        let policies = views.policies();
        written.retain(|key, _| policies.contains_key(key));
        for (key, info) in policies.iter() {
            let Some(generation) = info.stamp.generation else {
                continue;
            };
            if info.source != crate::kubernetes::SOURCE || written.get(key) == Some(&generation) {
                continue;
            }
            let report = report_of(key, info, &registry);
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
