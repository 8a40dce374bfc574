//! State-of-the-world ADS, one stream: requests and snapshots in, responses out.
//!
//! Per type the stream keeps what the client asked for and what it holds,
//! never a queue: a new snapshot replaces the old one, and only the difference
//! between what the client holds and the newest snapshot is sent. What it holds
//! is a pointer to a shared type set (`ClientVersions`), so a stream's memory does not
//! grow with the size of the mesh.

use std::sync::Arc;

use super::client_versions::{self, ClientVersions, Difference, Forced};
use super::holding::TypeHolding;
use super::name_set::{NameSet, NameSets};
use super::request::SotwRequest;
use super::{Event, Nonces, ProtocolError};
use shmesh_cache::responses::{WireControlPlane, WireDiscoveryResponse};
use shmesh_cache::{Resource, ResourceType, Snapshot, TypeSet};

#[derive(Debug)]
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
    names: NameSet,
    /// Nonce of the latest response for this type (rule 2).
    last_nonce: String,
    /// The latest response awaits its ACK or NACK.
    outstanding: bool,
    /// What the client holds once it applies what was sent.
    versions: ClientVersions,
    /// `versions` as of the latest ACK: what the client holds after a NACK.
    acked: ClientVersions,
    /// Names to send again whatever the client holds (rules 9 and 12).
    force: Forced,
    /// The set the client rejected; nothing is resent until something it
    /// wants changes from it (rule 4).
    nacked: Option<Arc<TypeSet>>,
}

impl TypeState {
    /// A type the client has not asked for yet: it names nothing.
    fn new(nothing: NameSet) -> TypeState {
        TypeState {
            requested: false,
            wildcard: false,
            named: false,
            names: nothing,
            last_nonce: String::new(),
            outstanding: false,
            versions: ClientVersions::default(),
            acked: ClientVersions::default(),
            force: Forced::default(),
            nacked: None,
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// What the client lacks to be on `current`.
    fn difference(&self, current: &Arc<TypeSet>, sets: &NameSets) -> Difference {
        self.versions.difference(
            current,
            |n| self.wants(n),
            self.wildcard,
            &self.names,
            &self.force,
            sets,
        )
    }
}

/// One SotW stream.
#[derive(Debug)]
pub struct SotwStream {
    snapshot: Arc<Snapshot>,
    types: [TypeState; ResourceType::COUNT],
    nonces: Nonces,
    control_plane: String,
    /// The server's interned subscriptions.
    name_sets: Arc<NameSets>,
}

/// What one input produced.
#[derive(Debug, Default)]
pub struct Output {
    pub responses: Vec<WireDiscoveryResponse>,
    pub events: Vec<Event>,
}

impl SotwStream {
    pub fn new(
        snapshot: Arc<Snapshot>,
        control_plane: impl Into<String>,
        name_sets: Arc<NameSets>,
    ) -> SotwStream {
        SotwStream {
            snapshot,
            types: std::array::from_fn(|_| TypeState::new(name_sets.empty())),
            nonces: Nonces::default(),
            control_plane: control_plane.into(),
            name_sets,
        }
    }

    /// Handles one request from the client.
    pub fn on_request(&mut self, req: &SotwRequest) -> Result<Output, ProtocolError> {
        let ty = ResourceType::from_type_url(&req.type_url)
            .ok_or_else(|| ProtocolError::UnknownType(req.type_url.clone()))?;
        let names = req.resource_names()?;
        let mut out = Output::default();
        let current = self.snapshot.set(ty).clone();
        let st = &mut self.types[ty.index()];
        let first = !st.requested;
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
                    // The client kept its previous config: it holds what it
                    // last ACKed, and nothing is resent until something it
                    // wants changes from what it rejected.
                    st.versions = st.acked.clone();
                    st.nacked = Some(current.clone());
                }
                None => {
                    st.acked = st.versions.clone();
                    out.events.push(Event::Ack {
                        ty,
                        version: req.version_info.clone(),
                    })
                }
            }
        }

        // Subscriptions: the newest request carries the whole list.
        // A client repeats its whole list with every ACK: usually the same set.
        let explicit = st
            .names
            .replaced(&self.name_sets, names.iter().copied().filter(|n| *n != "*"));
        let star = names.contains(&"*");
        // Rule 8: `*`, or an empty first request, means all; the legacy form
        // ends once the client names anything, `*` included (an empty list
        // after `*` unsubscribes, it does not keep the wildcard).
        let wildcard = ty.wildcard_capable() && (star || (names.is_empty() && !st.named));
        st.named |= !names.is_empty();
        // Only a later request can add names: the first is answered whole.
        let added: Vec<String> = if first || explicit == st.names {
            Vec::new()
        } else {
            explicit
                .iter()
                .filter(|n| !st.names.contains(n))
                .map(String::from)
                .collect()
        };
        let became_wildcard = wildcard && !st.wildcard;
        st.names = explicit;
        st.wildcard = wildcard;

        if first {
            // Rule 14: a reconnecting client that already has this version needs nothing.
            if !req.version_info.is_empty() && req.version_info == self.interest_version(ty) {
                let st = &mut self.types[ty.index()];
                st.versions = ClientVersions::Set(current.clone());
                st.acked = st.versions.clone();
                out.events.push(Event::Held {
                    ty,
                    version: req.version_info.clone(),
                });
                return Ok(out);
            }
            out.responses.extend(self.respond(ty, Vec::new(), true));
            return Ok(out);
        }
        // Rule 9: newly subscribed names are always sent.
        if !added.is_empty() || became_wildcard {
            let st = &mut self.types[ty.index()];
            if became_wildcard {
                st.versions = ClientVersions::default();
            }
            st.force.extend(added);
            out.responses.extend(self.respond(ty, Vec::new(), true));
        }
        Ok(out)
    }

    /// Moves the stream to a new snapshot and returns what must be pushed, in
    /// make-before-break order (rule 13): CDS, EDS, LDS, RDS, then the full
    /// sets that drop removed listeners and, last, clusters.
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
            // Removed resources stay in the first full set so nothing that
            // routes still use disappears before the routes move.
            let kept: Vec<Arc<Resource>> = if ty.sotw_full_set() {
                let held = &st.versions;
                diff.removed
                    .iter()
                    .filter_map(|n| match held {
                        ClientVersions::Set(s) => s.get(n).cloned(),
                        ClientVersions::Names(_) => None,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            if ty == ResourceType::Cluster {
                rewarm = diff.upserts.iter().map(|r| r.name.clone()).collect();
            }
            if diff.upserts.is_empty() && kept.is_empty() {
                // Nothing the client wants changed: it holds the new set.
                st.versions = ClientVersions::Set(current);
                continue;
            }
            if !kept.is_empty() {
                removals.push(ty);
            }
            out.responses.extend(self.respond(ty, kept, false));
        }
        // Dependents first: a listener goes before the clusters its routes
        // may still name, as delta does (rule 13).
        for ty in removals.into_iter().rev() {
            out.responses.extend(self.respond(ty, Vec::new(), false));
        }
        out
    }

    /// The resources of `ty` the client wants that exist now.
    fn interest(&self, ty: ResourceType) -> Box<dyn Iterator<Item = &Arc<Resource>> + '_> {
        let st = &self.types[ty.index()];
        let set = self.snapshot.get(ty);
        if st.wildcard {
            Box::new(set.iter())
        } else {
            Box::new(st.names.iter().filter_map(move |n| set.get(n)))
        }
    }

    /// The `version_info` a client holding the current snapshot was sent: for
    /// CDS and LDS the version of the set it wants; for EDS and RDS the
    /// version of the whole type set and of the names it wants, so that a
    /// reconnecting client asking for other names is not taken to hold them.
    fn interest_version(&self, ty: ResourceType) -> String {
        let st = &self.types[ty.index()];
        let set = self.snapshot.get(ty);
        if st.wildcard {
            set.version().to_string()
        } else if ty.sotw_full_set() {
            shmesh_cache::content_version_of(self.interest(ty))
        } else {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(set.version().as_bytes());
            h.update(&st.names.digest().to_le_bytes());
            format!("{:016x}", h.digest())
        }
    }

    /// Builds one response for `ty`. Full-set types carry everything the
    /// client wants (plus `kept`); EDS and RDS carry only what it lacks.
    fn respond(
        &mut self,
        ty: ResourceType,
        kept: Vec<Arc<Resource>>,
        on_request: bool,
    ) -> Option<WireDiscoveryResponse> {
        let current = self.snapshot.set(ty).clone();
        let full = ty.sotw_full_set();
        let mut resources: Vec<Arc<Resource>> = if full {
            self.interest(ty).cloned().collect()
        } else {
            self.types[ty.index()]
                .difference(&current, &self.name_sets)
                .upserts
        };
        if !full && resources.is_empty() {
            // A subscription to names that do not exist yet: nothing to send
            // until they appear (rule 11). Without a request there is nothing
            // to say either.
            let _ = on_request;
            return None;
        }
        // Rule 10: never the same name twice.
        for r in kept.iter() {
            if !resources.iter().any(|x| x.name == r.name) {
                resources.push(r.clone());
            }
        }
        let version = if full && !kept.is_empty() {
            shmesh_cache::content_version_of(resources.iter())
        } else {
            self.interest_version(ty)
        };
        let nonce = self.nonces.next();
        let st = &mut self.types[ty.index()];
        st.versions = ClientVersions::Set(current);
        // Not `clear`: a hash set keeps its room when emptied.
        st.force = Forced::default();
        st.last_nonce = nonce.clone();
        st.outstanding = true;
        st.nacked = None;
        Some(WireDiscoveryResponse {
            version_info: version,
            resources: resources.iter().map(|r| r.sotw_entry()).collect(),
            type_url: ty.type_url().to_string(),
            nonce,
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
                false,
                st.names.clone(),
            )
        })
    }

    /// Names the client subscribed to explicitly, per type (debug views).
    pub fn subscriptions(&self, ty: ResourceType) -> (bool, Vec<String>) {
        let st = &self.types[ty.index()];
        (st.wildcard, st.names.iter().map(String::from).collect())
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
