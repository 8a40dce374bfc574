//! Incremental (delta) ADS, one stream: requests and snapshots in, responses out.
//!
//! Per type the stream keeps the client's subscriptions and what the client
//! holds, as far as the server knows (`ClientVersions`: usually a pointer to a shared
//! type set); each response carries exactly the difference between that and
//! the newest snapshot.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::client_versions::{self, ClientVersions, Difference, Forced};
use super::holding::TypeHolding;
use super::name_set::{NameSet, NameSets};
use super::request::DeltaRequest;
use super::{Event, Nonces, ProtocolError};
use shmesh_cache::responses::{WireControlPlane, WireDeltaDiscoveryResponse};
use shmesh_cache::{namespace_of, Resource, ResourceType, Snapshot, TypeSet};

#[derive(Debug)]
struct TypeState {
    requested: bool,
    wildcard: bool,
    /// `names` are namespaces: the client wants every resource named
    /// `N/...` for a name `N` (VHDS: the route configurations' names).
    by_namespace: bool,
    names: NameSet,
    /// What the client holds once it applies what was sent.
    versions: ClientVersions,
    /// Subscribed names the client was told do not exist (rule 7).
    told_absent: BTreeSet<String>,
    /// `versions` and `told_absent` as of the latest ACK: what a NACK leaves.
    acked: (ClientVersions, BTreeSet<String>),
    /// Names to send again whatever the client holds (rules 8, 9 and 12).
    force: Forced,
    last_nonce: String,
    /// The latest response awaits its ACK or NACK.
    outstanding: bool,
    /// `system_version_info` of the latest response: what an ACK of it applied.
    last_version: String,
    /// `system_version_info` the client last ACKed: what a NACK leaves it on (rule 4).
    acked_version: String,
    /// The set the client rejected; nothing is resent until something it
    /// wants changes from it (rule 4).
    nacked: Option<Arc<TypeSet>>,
}

impl TypeState {
    /// A type the client has not subscribed to yet.
    fn new(ty: ResourceType, nothing: NameSet) -> TypeState {
        TypeState {
            requested: false,
            wildcard: false,
            by_namespace: ty.by_namespace(),
            names: nothing,
            versions: ClientVersions::default(),
            told_absent: BTreeSet::new(),
            acked: (ClientVersions::default(), BTreeSet::new()),
            force: Forced::default(),
            last_nonce: String::new(),
            outstanding: false,
            last_version: String::new(),
            acked_version: String::new(),
            nacked: None,
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.wildcard
            || self.names.contains(name)
            || (self.by_namespace && namespace_of(name).is_some_and(|ns| self.names.contains(ns)))
    }

    /// What the client lacks to be on `current`, including subscribed names
    /// it has not yet been told do not exist (rule 7).
    fn difference(&self, current: &Arc<TypeSet>, sets: &NameSets) -> Difference {
        let mut diff = self.versions.difference(
            current,
            |n| self.wants(n),
            self.wildcard || self.by_namespace,
            &self.names,
            &self.force,
            sets,
        );
        // Names that vanished are in the diff already; a name that never
        // existed is reported when it is (re)subscribed, which forces it. So
        // only forced names need looking at, not every subscription.
        for name in std::mem::take(&mut diff.forced_absent) {
            if self.names.contains(&name) && !diff.removed.contains(&name) {
                diff.removed.push(name);
            }
        }
        diff.removed.sort();
        diff
    }

    /// What a client is sent in the steps every proxy takes while it
    /// connects: it subscribes to names it had not, holding either the whole
    /// current set or, with nothing else subscribed, nothing. Every new name
    /// goes out (rule 9) or is reported absent (rule 7), and nothing else
    /// does, so the response is where the names sit in the set, which the
    /// first stream taking the same step works out for all (`NameSet::added_names_in`).
    /// `None` when the request is not such a step; `names` is already changed.
    fn newly_subscribed(
        &self,
        before: &NameSet,
        subscribe: &[&str],
        unsubscribe: &[&str],
        current: &Arc<TypeSet>,
    ) -> Option<Difference> {
        let holds_only_new = match &self.versions {
            ClientVersions::Set(held) if Arc::ptr_eq(held, current) => true,
            // Holding nothing, it lacks everything it wants: only the new
            // names, unless it wants more than those.
            ClientVersions::Set(held) => held.is_empty() && before.len() == 0 && !self.wildcard,
            ClientVersions::Names(_) => false,
        };
        let subscribed = subscribe.len();
        // Every name in the request new to the set: none repeated or held
        // before, and no `*`, which the set does not count.
        let all_new = subscribed > 0 && self.names.len() == before.len() + subscribed;
        if !holds_only_new || !all_new || !self.force.is_empty() || !unsubscribe.is_empty() {
            return None;
        }
        let added = self.names.added_names_in(before, current);
        Some(Difference {
            upserts: added.resources_in(current),
            removed: added.absent.to_vec(),
            forced_absent: Vec::new(),
        })
    }
}

/// The names in a subscription list, without `*`.
fn names_in<'a>(list: &'a [&'a str]) -> impl Iterator<Item = &'a str> + Clone {
    list.iter().copied().filter(|n| *n != "*")
}

/// Most resource bytes in one delta response (a single larger resource goes
/// alone). gRPC clients cap what they receive (4 MiB by default in gRPC's
/// own libraries, which proxyless clients use), and a mesh's full CDS can
/// be larger than that; a bounded response also lets a proxy start applying
/// while the rest is on its way, and bounds the partial message each client
/// buffers while a fleet syncs (a simulated fleet of 2,000 held 1.6 MB per
/// client at 1 MiB, 1 MB at 256 KiB).
pub(crate) const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// How many of `upserts` (at least one) fit in one response.
fn fitting(upserts: &[Arc<Resource>]) -> usize {
    let mut total = 0;
    upserts
        .iter()
        .take_while(|r| {
            total += r.delta_entry().range.len();
            total <= MAX_RESPONSE_BYTES
        })
        .count()
        .max(1)
}

/// One delta stream.
#[derive(Debug)]
pub struct DeltaStream {
    snapshot: Arc<Snapshot>,
    types: [TypeState; ResourceType::COUNT],
    nonces: Nonces,
    control_plane: String,
    /// The server's interned subscriptions.
    name_sets: Arc<NameSets>,
}

#[derive(Debug, Default)]
pub struct Output {
    pub responses: Vec<WireDeltaDiscoveryResponse>,
    pub events: Vec<Event>,
}

impl DeltaStream {
    pub fn new(
        snapshot: Arc<Snapshot>,
        control_plane: impl Into<String>,
        name_sets: Arc<NameSets>,
    ) -> DeltaStream {
        DeltaStream {
            snapshot,
            types: std::array::from_fn(|i| TypeState::new(ResourceType::ALL[i], name_sets.empty())),
            nonces: Nonces::default(),
            control_plane: control_plane.into(),
            name_sets,
        }
    }

    pub fn on_request(&mut self, req: &DeltaRequest) -> Result<Output, ProtocolError> {
        let ty = ResourceType::from_type_url(&req.type_url)
            .ok_or_else(|| ProtocolError::UnknownType(req.type_url.clone()))?;
        let (subscribe, unsubscribe) = (req.subscribe()?, req.unsubscribe()?);
        tracing::trace!(
            %ty,
            ?subscribe,
            ?unsubscribe,
            initial = req.initial_resource_versions.len(),
            nonce = %req.response_nonce,
            nack = req.error_detail.is_some(),
            "request"
        );
        let mut out = Output::default();
        let current = self.snapshot.set(ty).clone();
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
                    // The whole response was rejected: the client holds what
                    // it last ACKed, and everything else in that response must
                    // go out again with the next change.
                    (st.versions, st.told_absent) = st.acked.clone();
                    st.nacked = Some(current.clone());
                }
                None => {
                    st.acked_version = st.last_version.clone();
                    st.acked = (st.versions.clone(), st.told_absent.clone());
                    out.events.push(Event::Ack {
                        ty,
                        version: st.acked_version.clone(),
                    });
                }
            }
        }

        if first {
            // Rule 14: what the client already has after a reconnect.
            if !req.initial_resource_versions.is_empty() {
                let versions: HashMap<String, String> = req
                    .initial_resource_versions
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                st.versions = ClientVersions::Names(Arc::new(versions));
            }
            // Rule 8: an empty first request for LDS/CDS is a (legacy) wildcard.
            // Only a first request can be one, so naming anything later ends
            // the legacy form by itself; the wildcard it made stays, as if
            // the client had subscribed to `*` (xds_protocol.rst, incremental
            // example: after the empty first request, subscribing to "A"
            // "continues the existing subscription to `*`"; Envoy keeps `*`
            // in its own subscription state and does not send it again).
            if ty.wildcard_capable() && subscribe.is_empty() {
                st.wildcard = true;
            }
        }
        if st.by_namespace {
            // Virtual hosts follow the route configurations (below), not
            // names in VHDS requests: Envoy's first VHDS request names
            // nothing, and on-demand requests are not served.
            if first {
                let diff = st.difference(&current, &self.name_sets);
                out.responses.extend(self.respond(ty, diff, true));
            }
            return Ok(out);
        }
        let before = st.names.clone();
        st.names = st.names.changed(
            &self.name_sets,
            names_in(&subscribe),
            names_in(&unsubscribe),
        );
        if let Some(diff) = st.newly_subscribed(&before, &subscribe, &unsubscribe, &current) {
            out.responses.extend(self.respond(ty, diff, false));
            if ty == ResourceType::Route {
                out.responses
                    .extend(self.follow_routes(&subscribe, &unsubscribe));
            }
            return Ok(out);
        }
        for &name in &subscribe {
            if name == "*" {
                if !st.wildcard && !first {
                    // Newly wildcard: everything is newly subscribed (rule 9),
                    // and what the stream knows it holds covered fewer names.
                    st.versions = ClientVersions::default();
                }
                st.wildcard = true;
                continue;
            }
            // Rule 9: a (re)subscribed name is always sent, unless the client
            // said on this first request that it has the current version.
            let reported = first && req.initial_resource_versions.contains_key(name);
            if !reported && st.versions.must_force(name, &current) {
                st.force.insert(name.to_string());
            }
        }
        for &name in &unsubscribe {
            if name == "*" {
                st.wildcard = false;
            } else {
                st.told_absent.remove(name);
            }
            if st.wants(name) {
                // Rule 8: unsubscribing a name that `*` still covers must be
                // answered with the resource as it stands.
                st.force.insert(name.to_string());
            } else {
                st.force.remove(name);
            }
        }

        let only_ack = subscribe.is_empty() && unsubscribe.is_empty() && !first;
        if only_ack {
            return Ok(out);
        }
        let diff = st.difference(&current, &self.name_sets);
        if first || !diff.upserts.is_empty() || !diff.removed.is_empty() {
            out.responses.extend(self.respond(ty, diff, first));
        }
        if ty == ResourceType::Route {
            out.responses
                .extend(self.follow_routes(&subscribe, &unsubscribe));
        }
        Ok(out)
    }

    /// A client wants the virtual hosts (VHDS) of the route configurations it
    /// subscribes to. Envoy opens a VHDS watch for each route configuration
    /// that names VHDS once it has that configuration, so the virtual hosts
    /// of a (re)subscribed one go out after it, whatever the client held.
    fn follow_routes(
        &mut self,
        subscribe: &[&str],
        unsubscribe: &[&str],
    ) -> Vec<WireDeltaDiscoveryResponse> {
        let current = self.snapshot.set(ResourceType::VirtualHost).clone();
        let routes = self.types[ResourceType::Route.index()].names.clone();
        let st = &mut self.types[ResourceType::VirtualHost.index()];
        st.names = routes;
        for name in names_in(unsubscribe) {
            st.force.retain(|n| namespace_of(n) != Some(name));
        }
        for name in names_in(subscribe) {
            st.force
                .extend(current.in_namespace(name).map(|r| r.name.clone()));
        }
        if !st.requested {
            return Vec::new();
        }
        let diff = st.difference(&current, &self.name_sets);
        if diff.upserts.is_empty() && diff.removed.is_empty() {
            return Vec::new();
        }
        self.respond(ResourceType::VirtualHost, diff, false)
    }

    /// Moves the stream to a new snapshot. Upserts go out in make-before-break
    /// order (CDS, EDS, LDS, RDS, VHDS); removals last, dependents first
    /// (VHDS, RDS, LDS, EDS, CDS) (rule 13).
    pub fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output {
        self.snapshot = snapshot;
        let mut out = Output::default();
        let mut removals = Vec::new();
        let mut rewarm: Vec<String> = Vec::new();
        for ty in ResourceType::ALL {
            let current = self.snapshot.set(ty).clone();
            let st = &mut self.types[ty.index()];
            if !st.requested {
                continue;
            }
            if ty == ResourceType::Endpoint {
                let wildcard = st.wildcard;
                let names = &st.names;
                client_versions::rewarm(
                    &mut rewarm,
                    |n| wildcard || names.contains(n),
                    &mut st.force,
                );
            }
            if client_versions::still_rejected(
                st.nacked.as_ref(),
                &current,
                |n| st.wants(n),
                &st.force,
            ) {
                continue;
            }
            let diff = st.difference(&current, &self.name_sets);
            if ty == ResourceType::Cluster {
                rewarm = diff.upserts.iter().map(|r| r.name.clone()).collect();
            }
            if diff.upserts.is_empty() && diff.removed.is_empty() {
                // Nothing the client wants changed: it holds the new set.
                st.versions = ClientVersions::Set(current);
                continue;
            }
            let removed = diff.removed;
            if !removed.is_empty() {
                removals.push((ty, removed));
            }
            if !diff.upserts.is_empty() {
                let upserts = Difference {
                    upserts: diff.upserts,
                    ..Default::default()
                };
                out.responses.extend(self.respond(ty, upserts, false));
            } else {
                // Only removals: the client holds the rest of the new set.
                self.types[ty.index()].versions = ClientVersions::Set(current);
            }
        }
        for (ty, removed) in removals.into_iter().rev() {
            let d = Difference {
                removed,
                ..Default::default()
            };
            out.responses.extend(self.respond(ty, d, false));
        }
        out
    }

    /// Responses carrying `difference`, each at most `MAX_RESPONSE_BYTES` of
    /// resources. Removals go with the last.
    /// `answer`: send one response even when there is nothing to carry.
    fn respond(
        &mut self,
        ty: ResourceType,
        mut diff: Difference,
        answer: bool,
    ) -> Vec<WireDeltaDiscoveryResponse> {
        let mut out = Vec::new();
        loop {
            let fit = fitting(&diff.upserts);
            if fit >= diff.upserts.len() {
                break;
            }
            let rest = diff.upserts.split_off(fit);
            let chunk = Difference {
                upserts: std::mem::replace(&mut diff.upserts, rest),
                ..Default::default()
            };
            out.extend(self.respond_one(ty, chunk, answer));
        }
        out.extend(self.respond_one(ty, diff, answer && out.is_empty()));
        out
    }

    fn respond_one(
        &mut self,
        ty: ResourceType,
        diff: Difference,
        answer: bool,
    ) -> Option<WireDeltaDiscoveryResponse> {
        if diff.upserts.is_empty() && diff.removed.is_empty() && !answer {
            return None;
        }
        let nonce = self.nonces.next();
        let current = self.snapshot.set(ty).clone();
        let system_version_info = current.version().to_string();
        let st = &mut self.types[ty.index()];
        // Everything the client lacked is in this response or the removals
        // that follow it: once applied, it holds the current set.
        st.versions = ClientVersions::Set(current);
        for r in &diff.upserts {
            if !st.told_absent.is_empty() {
                st.told_absent.remove(&r.name);
            }
            if !st.force.is_empty() {
                st.force.remove(&r.name);
            }
        }
        for name in &diff.removed {
            st.force.remove(name);
            if st.names.contains(name) {
                st.told_absent.insert(name.clone());
            }
        }
        if st.force.is_empty() {
            // A hash set keeps its room when emptied: thousands of
            // subscriptions arrive at once while a proxy connects, and the
            // room would stay with every stream.
            st.force = Forced::default();
        }
        st.last_nonce = nonce.clone();
        st.outstanding = true;
        st.last_version = system_version_info.clone();
        st.nacked = None;
        Some(WireDeltaDiscoveryResponse {
            system_version_info,
            resources: diff.upserts.iter().map(|r| r.delta_entry()).collect(),
            type_url: ty.type_url().to_string(),
            nonce,
            removed_resources: diff.removed,
            control_plane: Some(WireControlPlane {
                identifier: self.control_plane.clone(),
            }),
        })
    }

    /// What the client holds of each type, in `ResourceType::ALL` order
    /// (debug views).
    pub fn holdings(&self) -> [TypeHolding; ResourceType::COUNT] {
        std::array::from_fn(|i| {
            let st = &self.types[i];
            TypeHolding::new(
                st.requested,
                st.outstanding,
                st.nacked.is_some(),
                st.versions.clone(),
                st.wildcard,
                st.by_namespace,
                st.names.clone(),
            )
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
