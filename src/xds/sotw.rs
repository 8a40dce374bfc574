//! State-of-the-world ADS, one stream: requests and snapshots in, responses out.
//!
//! Per type the stream keeps what the client asked for and what was last sent to
//! it, never a queue: a new snapshot replaces the old one, and only the
//! difference between what the client has and the newest snapshot is sent.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

use super::{Event, Nonces, ProtocolError};
use crate::cache::wire::{WireAny, WireControlPlane, WireDiscoveryResponse};
use crate::cache::{Resource, ResourceType, Snapshot};

#[derive(Debug, Default)]
struct TypeState {
    /// The client has sent a request for this type.
    requested: bool,
    /// All resources of the type, by `*` or by the legacy empty first request.
    wildcard: bool,
    /// The client has named something, `*` included: from now on an empty
    /// list unsubscribes from everything instead of meaning the legacy
    /// wildcard (rule 8; xds_protocol.rst, "How the client specifies what
    /// resources to return").
    named: bool,
    /// Resources named explicitly.
    names: BTreeSet<String>,
    /// Nonce of the latest response for this type (rule 2).
    last_nonce: String,
    /// The latest response awaits its ACK or NACK.
    outstanding: bool,
    /// Version of each resource as last sent.
    sent: HashMap<String, String>,
    /// `sent` as of the latest ACK: what the client holds after a NACK.
    acked: HashMap<String, String>,
    /// `version_info` of the latest response.
    sent_version: String,
    /// Version of the client's interest (`interest_version`) when it
    /// rejected a response; nothing is resent until it changes (rule 4).
    nacked: Option<String>,
}

impl TypeState {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// One SotW stream.
#[derive(Debug)]
pub struct SotwStream {
    snapshot: Arc<Snapshot>,
    types: [TypeState; 4],
    nonces: Nonces,
    control_plane: String,
}

/// What one input produced.
#[derive(Debug, Default)]
pub struct Output {
    pub responses: Vec<WireDiscoveryResponse>,
    pub events: Vec<Event>,
}

impl SotwStream {
    pub fn new(snapshot: Arc<Snapshot>, control_plane: impl Into<String>) -> SotwStream {
        SotwStream {
            snapshot,
            types: Default::default(),
            nonces: Nonces::default(),
            control_plane: control_plane.into(),
        }
    }

    /// Handles one request from the client.
    pub fn on_request(&mut self, req: &DiscoveryRequest) -> Result<Output, ProtocolError> {
        let ty = ResourceType::from_type_url(&req.type_url)
            .ok_or_else(|| ProtocolError::UnknownType(req.type_url.clone()))?;
        let mut out = Output::default();
        let first = !self.types[ty.index()].requested;
        let mut rejected = false;
        {
            let st = &mut self.types[ty.index()];
            // Rule 2: a request that answers an older response is superseded.
            // (A nonce from before anything was sent on this stream belongs to
            // an earlier stream and is not stale here.)
            let answers_latest = !st.last_nonce.is_empty() && req.response_nonce == st.last_nonce;
            if !req.response_nonce.is_empty() && !st.last_nonce.is_empty() && !answers_latest {
                return Ok(out);
            }
            st.requested = true;
            // Rule 4: NACK is told by error_detail, not by versions.
            if answers_latest {
                st.outstanding = false;
                match &req.error_detail {
                    Some(status) => {
                        out.events.push(Event::Nack {
                            ty,
                            version: req.version_info.clone(),
                            nonce: req.response_nonce.clone(),
                            message: status.message.clone(),
                        });
                        rejected = true;
                        // The client kept its previous config: it holds what
                        // it last ACKed, not what was last sent.
                        st.sent = st.acked.clone();
                    }
                    None => {
                        st.acked = st.sent.clone();
                        out.events.push(Event::Ack {
                            ty,
                            version: req.version_info.clone(),
                        })
                    }
                }
            }
        }

        // Subscriptions: the newest request carries the whole list.
        let st = &mut self.types[ty.index()];
        let explicit: BTreeSet<String> = req
            .resource_names
            .iter()
            .filter(|n| n.as_str() != "*")
            .cloned()
            .collect();
        let star = req.resource_names.iter().any(|n| n == "*");
        // Rule 8: `*`, or an empty first request, means all; the legacy form
        // ends once the client names anything, `*` included (an empty list
        // after `*` unsubscribes, it does not keep the wildcard).
        let wildcard =
            ty.wildcard_capable() && (star || (req.resource_names.is_empty() && !st.named));
        st.named |= !req.resource_names.is_empty();
        let added: Vec<String> = explicit.difference(&st.names).cloned().collect();
        let became_wildcard = wildcard && !st.wildcard;
        st.names = explicit;
        st.wildcard = wildcard;
        if !wildcard {
            // Forget what the client no longer wants, including what only `*`
            // covered: a name left in `sent` would be resent as "kept" when it
            // is later removed (rule 5).
            let names = &st.names;
            st.sent.retain(|name, _| names.contains(name));
        }
        if rejected {
            // Rule 4: remember the version of the client's interest, not of
            // the whole type set, so that a change to resources it does not
            // watch (other clusters' endpoints) does not resend what it rejected.
            let version = self.interest_version(ty);
            self.types[ty.index()].nacked = Some(version);
        }

        if first {
            // Rule 14: a reconnecting client that already has this version needs nothing.
            let version = self.interest_version(ty);
            let st = &mut self.types[ty.index()];
            if !req.version_info.is_empty() && req.version_info == version {
                st.sent_version = version;
                let names: Vec<(String, String)> = self
                    .interest(ty)
                    .map(|r| (r.name.clone(), r.version.clone()))
                    .collect();
                self.types[ty.index()].sent.extend(names);
                return Ok(out);
            }
            if let Some(r) = self.respond(ty, Vec::new(), true) {
                out.responses.push(r);
            }
            return Ok(out);
        }
        // Rule 9: newly subscribed names are always sent.
        if !added.is_empty() || became_wildcard {
            let st = &mut self.types[ty.index()];
            for name in &added {
                st.sent.remove(name);
            }
            if became_wildcard {
                st.sent.clear();
            }
            if let Some(r) = self.respond(ty, Vec::new(), true) {
                out.responses.push(r);
            }
        }
        Ok(out)
    }

    /// Moves the stream to a new snapshot and returns what must be pushed, in
    /// make-before-break order (rule 13): CDS, EDS, LDS, RDS, then the full
    /// sets that drop removed listeners and, last, clusters.
    pub fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output {
        let old = std::mem::replace(&mut self.snapshot, snapshot);
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
            if !must_rewarm && st.nacked.is_some() && st.nacked == Some(self.interest_version(ty)) {
                continue;
            }
            if ty == ResourceType::Endpoint {
                // Rule 12: an updated cluster warms until it gets its
                // ClusterLoadAssignment, changed or not.
                let st = &mut self.types[ty.index()];
                for name in rewarm.drain(..) {
                    if st.wants(&name) {
                        st.sent.remove(&name);
                    }
                }
            }
            let kept: Vec<Arc<Resource>> = if ty.sotw_full_set() {
                // Removed resources stay in the first full set so nothing that
                // routes still use disappears before the routes move.
                old.get(ty)
                    .iter()
                    .filter(|r| {
                        self.types[ty.index()].sent.contains_key(&r.name)
                            && !self.snapshot.get(ty).contains(&r.name)
                    })
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            if !kept.is_empty() {
                removals.push(ty);
            }
            let changed = self.changed(ty);
            if ty == ResourceType::Cluster {
                rewarm = changed.clone();
            }
            if changed.is_empty() && kept.is_empty() {
                continue;
            }
            if let Some(r) = self.respond(ty, kept, false) {
                out.responses.push(r);
            }
        }
        // Dependents first: a listener goes before the clusters its routes
        // may still name, as delta does (rule 13).
        for ty in removals.into_iter().rev() {
            if let Some(r) = self.respond(ty, Vec::new(), false) {
                out.responses.push(r);
            }
        }
        out
    }

    /// The resources of `ty` the client is interested in that exist now.
    fn interest(&self, ty: ResourceType) -> Box<dyn Iterator<Item = &Arc<Resource>> + '_> {
        let st = &self.types[ty.index()];
        let set = self.snapshot.get(ty);
        if st.wildcard {
            Box::new(set.iter())
        } else {
            Box::new(st.names.iter().filter_map(move |n| set.get(n)))
        }
    }

    fn interest_version(&self, ty: ResourceType) -> String {
        crate::cache::content_version_of(self.interest(ty))
    }

    /// Names in the client's interest whose version differs from what it was sent.
    fn changed(&self, ty: ResourceType) -> Vec<String> {
        let st = &self.types[ty.index()];
        self.interest(ty)
            .filter(|r| st.sent.get(&r.name) != Some(&r.version))
            .map(|r| r.name.clone())
            .collect()
    }

    /// Builds one response for `ty`. Full-set types carry everything of
    /// interest (plus `kept`); EDS and RDS carry only what changed, or, on a
    /// subscription request, everything not yet sent.
    fn respond(
        &mut self,
        ty: ResourceType,
        kept: Vec<Arc<Resource>>,
        on_request: bool,
    ) -> Option<WireDiscoveryResponse> {
        let mut resources: Vec<Arc<Resource>> = if ty.sotw_full_set() {
            self.interest(ty).cloned().collect()
        } else {
            let st = &self.types[ty.index()];
            self.interest(ty)
                .filter(|r| st.sent.get(&r.name) != Some(&r.version))
                .cloned()
                .collect()
        };
        if !ty.sotw_full_set() && resources.is_empty() && !on_request {
            return None;
        }
        // Rule 10: never the same name twice.
        for r in kept {
            if !resources.iter().any(|x| x.name == r.name) {
                resources.push(r);
            }
        }
        if !ty.sotw_full_set() && resources.is_empty() {
            // A subscription to names that do not exist yet: nothing to send
            // until they appear (rule 11).
            return None;
        }
        // The version says what the client holds once it applies this: the
        // whole set sent, or for EDS/RDS every resource it is subscribed to.
        let version = if ty.sotw_full_set() {
            crate::cache::content_version_of(resources.iter())
        } else {
            self.interest_version(ty)
        };
        let nonce = self.nonces.next();
        let st = &mut self.types[ty.index()];
        if ty.sotw_full_set() {
            st.sent.clear();
        }
        for r in &resources {
            st.sent.insert(r.name.clone(), r.version.clone());
        }
        st.last_nonce = nonce.clone();
        st.outstanding = true;
        st.sent_version = version.clone();
        st.nacked = None;
        Some(WireDiscoveryResponse {
            version_info: version,
            resources: resources
                .iter()
                .map(|r| WireAny {
                    type_url: ty.type_url().to_string(),
                    value: r.body.clone(),
                })
                .collect(),
            type_url: ty.type_url().to_string(),
            nonce,
            control_plane: Some(WireControlPlane {
                identifier: self.control_plane.clone(),
            }),
        })
    }

    /// Names the client subscribed to explicitly, per type (debug views).
    pub fn subscriptions(&self, ty: ResourceType) -> (bool, Vec<String>) {
        let st = &self.types[ty.index()];
        (st.wildcard, st.names.iter().cloned().collect())
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
