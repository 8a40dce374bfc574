//! Incremental (delta) ADS, one stream: requests and snapshots in, responses out.
//!
//! Per type the stream keeps the client's subscriptions and the version of
//! every resource the client holds, as far as the server knows; each response
//! carries exactly the difference between that and the newest snapshot.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use super::{Event, Nonces, ProtocolError};
use crate::cache::wire::{WireAny, WireControlPlane, WireDeltaDiscoveryResponse, WireResource};
use crate::cache::{Resource, ResourceType, Snapshot};

/// What the client holds of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    Version(String),
    /// Told that it does not exist (rule 7).
    Absent,
}

#[derive(Debug, Default)]
struct TypeState {
    requested: bool,
    wildcard: bool,
    names: BTreeSet<String>,
    held: HashMap<String, Held>,
    /// `held` as of the latest ACK: what the client holds after a NACK.
    acked_held: HashMap<String, Held>,
    last_nonce: String,
    /// The latest response awaits its ACK or NACK.
    outstanding: bool,
    /// `system_version_info` of the latest response: what an ACK of it applied.
    last_version: String,
    /// `system_version_info` the client last ACKed: what a NACK leaves it on (rule 4).
    acked_version: String,
    /// Type-set version the client rejected; nothing is resent until it changes (rule 4).
    nacked: Option<String>,
}

impl TypeState {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// One delta stream.
#[derive(Debug)]
pub struct DeltaStream {
    snapshot: Arc<Snapshot>,
    types: [TypeState; 4],
    nonces: Nonces,
    control_plane: String,
}

#[derive(Debug, Default)]
pub struct Output {
    pub responses: Vec<WireDeltaDiscoveryResponse>,
    pub events: Vec<Event>,
}

/// Changes for one type: upserts and removals.
struct Diff {
    upserts: Vec<Arc<Resource>>,
    removed: Vec<String>,
}

impl DeltaStream {
    pub fn new(snapshot: Arc<Snapshot>, control_plane: impl Into<String>) -> DeltaStream {
        DeltaStream {
            snapshot,
            types: Default::default(),
            nonces: Nonces::default(),
            control_plane: control_plane.into(),
        }
    }

    pub fn on_request(&mut self, req: &DeltaDiscoveryRequest) -> Result<Output, ProtocolError> {
        let ty = ResourceType::from_type_url(&req.type_url)
            .ok_or_else(|| ProtocolError::UnknownType(req.type_url.clone()))?;
        let mut out = Output::default();
        let set_version = self.snapshot.get(ty).version().to_string();
        let st = &mut self.types[ty.index()];
        let first = !st.requested;
        st.requested = true;

        // ACK/NACK only for the latest response; subscriptions apply whatever
        // the nonce (rule 3).
        let answers_latest = !st.last_nonce.is_empty() && req.response_nonce == st.last_nonce;
        if answers_latest {
            st.outstanding = false;
            match &req.error_detail {
                // The versions are those of the responses, not of the newest
                // snapshot, which may have moved on without anything sent: a
                // NACK reports the last version the client accepted (rule 4).
                Some(status) => {
                    out.events.push(Event::Nack {
                        ty,
                        version: st.acked_version.clone(),
                        nonce: req.response_nonce.clone(),
                        message: status.message.clone(),
                    });
                    st.nacked = Some(set_version.clone());
                    // The whole response was rejected: the client holds what
                    // it last ACKed, and everything else in that response must
                    // go out again with the next change.
                    st.held = st.acked_held.clone();
                }
                None => {
                    st.acked_version = st.last_version.clone();
                    st.acked_held = st.held.clone();
                    out.events.push(Event::Ack {
                        ty,
                        version: st.acked_version.clone(),
                    });
                }
            }
        }

        if first {
            // Rule 14: what the client already has after a reconnect.
            for (name, version) in &req.initial_resource_versions {
                st.held.insert(name.clone(), Held::Version(version.clone()));
            }
            // Rule 8: an empty first request for LDS/CDS is a (legacy) wildcard.
            // Only a first request can be one, so naming anything later ends
            // the legacy form by itself; the wildcard it made stays, as if
            // the client had subscribed to `*` (xds_protocol.rst, incremental
            // example: after the empty first request, subscribing to "A"
            // "continues the existing subscription to `*`"; Envoy keeps `*`
            // in its own subscription state and does not send it again).
            if ty.wildcard_capable() && req.resource_names_subscribe.is_empty() {
                st.wildcard = true;
            }
        }
        let mut force = Vec::new();
        for name in &req.resource_names_subscribe {
            if name == "*" {
                st.wildcard = true;
                continue;
            }
            st.names.insert(name.clone());
            // Rule 9: a (re)subscribed name is always sent, unless the client
            // said on this first request that it has the current version.
            if !(first && req.initial_resource_versions.contains_key(name)) {
                force.push(name.clone());
            }
        }
        for name in &req.resource_names_unsubscribe {
            if name == "*" {
                st.wildcard = false;
            } else {
                st.names.remove(name);
            }
            if st.wants(name) {
                // Rule 8: unsubscribing a name that `*` still covers must be
                // answered with the resource as it stands.
                force.push(name.clone());
            } else {
                st.held.remove(name);
            }
        }
        if req.resource_names_unsubscribe.iter().any(|n| n == "*") {
            let st = &mut self.types[ty.index()];
            st.held.retain(|name, _| st.names.contains(name));
        }
        let st = &mut self.types[ty.index()];
        for name in &force {
            st.held.remove(name);
        }

        let only_ack = req.resource_names_subscribe.is_empty()
            && req.resource_names_unsubscribe.is_empty()
            && !first;
        if only_ack {
            return Ok(out);
        }
        let diff = self.diff(ty);
        if first || !diff.upserts.is_empty() || !diff.removed.is_empty() {
            if let Some(r) = self.respond(ty, diff, first) {
                out.responses.push(r);
            }
        }
        Ok(out)
    }

    /// Moves the stream to a new snapshot. Upserts go out in make-before-break
    /// order (CDS, EDS, LDS, RDS); removals last, dependents first (RDS, LDS,
    /// EDS, CDS) (rule 13).
    pub fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output {
        self.snapshot = snapshot;
        let mut out = Output::default();
        let mut removals = Vec::new();
        let mut rewarm: Vec<String> = Vec::new();
        for ty in ResourceType::ALL {
            let st = &self.types[ty.index()];
            if !st.requested {
                continue;
            }
            // Rule 12 outranks rule 4: a changed cluster needs its assignment
            // even while an earlier assignment response stands rejected.
            let must_rewarm = ty == ResourceType::Endpoint && rewarm.iter().any(|n| st.wants(n));
            if !must_rewarm && st.nacked.as_deref() == Some(self.snapshot.get(ty).version()) {
                continue;
            }
            if ty == ResourceType::Endpoint {
                // Rule 12: an updated cluster warms until it gets its assignment.
                let st = &mut self.types[ty.index()];
                for name in rewarm.drain(..) {
                    if st.wants(&name) {
                        st.held.remove(&name);
                    }
                }
            }
            let diff = self.diff(ty);
            if ty == ResourceType::Cluster {
                rewarm = diff.upserts.iter().map(|r| r.name.clone()).collect();
            }
            if !diff.removed.is_empty() {
                removals.push((ty, diff.removed));
            }
            if !diff.upserts.is_empty() {
                let upserts = Diff {
                    upserts: diff.upserts,
                    removed: Vec::new(),
                };
                if let Some(r) = self.respond(ty, upserts, false) {
                    out.responses.push(r);
                }
            }
        }
        for (ty, removed) in removals.into_iter().rev() {
            let d = Diff {
                upserts: Vec::new(),
                removed,
            };
            if let Some(r) = self.respond(ty, d, false) {
                out.responses.push(r);
            }
        }
        out
    }

    /// What the client lacks: resources it wants at a version it does not
    /// hold, and names it holds (or asked for) that do not exist.
    fn diff(&self, ty: ResourceType) -> Diff {
        let st = &self.types[ty.index()];
        let set = self.snapshot.get(ty);
        let mut upserts = Vec::new();
        let mut removed = Vec::new();
        let mut consider = |r: &Arc<Resource>| {
            if st.held.get(&r.name) != Some(&Held::Version(r.version.clone())) {
                upserts.push(r.clone());
            }
        };
        if st.wildcard {
            set.iter().for_each(&mut consider);
        } else {
            st.names
                .iter()
                .filter_map(|n| set.get(n))
                .for_each(&mut consider);
        }
        for (name, held) in &st.held {
            if matches!(held, Held::Version(_)) && !set.contains(name) {
                removed.push(name.clone());
            }
        }
        // Rule 7: a subscribed name that does not exist is reported removed, once.
        for name in &st.names {
            if !set.contains(name) && !st.held.contains_key(name) {
                removed.push(name.clone());
            }
        }
        removed.sort();
        removed.dedup();
        Diff { upserts, removed }
    }

    fn respond(
        &mut self,
        ty: ResourceType,
        diff: Diff,
        first: bool,
    ) -> Option<WireDeltaDiscoveryResponse> {
        if diff.upserts.is_empty() && diff.removed.is_empty() && !first {
            return None;
        }
        let nonce = self.nonces.next();
        let system_version_info = self.snapshot.get(ty).version().to_string();
        let st = &mut self.types[ty.index()];
        for r in &diff.upserts {
            st.held
                .insert(r.name.clone(), Held::Version(r.version.clone()));
        }
        for name in &diff.removed {
            if st.names.contains(name) {
                st.held.insert(name.clone(), Held::Absent);
            } else {
                st.held.remove(name);
            }
        }
        st.last_nonce = nonce.clone();
        st.outstanding = true;
        st.last_version = system_version_info.clone();
        st.nacked = None;
        Some(WireDeltaDiscoveryResponse {
            system_version_info,
            resources: diff
                .upserts
                .iter()
                .map(|r| WireResource {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    resource: Some(WireAny {
                        type_url: ty.type_url().to_string(),
                        value: r.body.clone(),
                    }),
                })
                .collect(),
            type_url: ty.type_url().to_string(),
            nonce,
            removed_resources: diff.removed,
            control_plane: Some(WireControlPlane {
                identifier: self.control_plane.clone(),
            }),
        })
    }

    /// Whether the client has applied everything it asked for from the current
    /// snapshot: it has made requests, and every response is ACKed, none NACKed.
    pub fn in_sync(&self) -> bool {
        let requested = self.types.iter().filter(|t| t.requested);
        self.types.iter().any(|t| t.requested)
            && requested
                .into_iter()
                .all(|t| !t.outstanding && t.nacked.is_none())
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }
}
