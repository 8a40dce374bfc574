//! What a stream knows its client holds of one resource type, read out of
//! the stream's machine after every step for the debug views: whether the
//! client asked for the type, whether it has applied the latest response,
//! and which resources it has been sent (once it applies them). The admin
//! server turns this into proxy-status and a per-proxy config dump without
//! reaching into a running stream.

use std::sync::Arc;

use super::client_versions::ClientVersions;
use super::name_set::NameSet;
use shmesh_cache::{namespace_of, Resource, TypeSet};

/// One type of one stream, as its machine left it.
#[derive(Debug, Clone)]
pub struct TypeHolding {
    /// The client has asked for the type.
    pub requested: bool,
    /// The latest response for the type awaits the client's ACK or NACK.
    pub awaiting_ack: bool,
    /// The client rejected the latest response, and nothing newer was sent.
    pub rejected: bool,
    /// What the client holds once it applies what was sent (after a NACK:
    /// what it last ACKed).
    versions: ClientVersions,
    wildcard: bool,
    /// `names` are namespaces of the wanted names (VHDS).
    by_namespace: bool,
    names: NameSet,
}

impl TypeHolding {
    pub(crate) fn new(
        requested: bool,
        awaiting_ack: bool,
        rejected: bool,
        versions: ClientVersions,
        wildcard: bool,
        by_namespace: bool,
        names: NameSet,
    ) -> TypeHolding {
        TypeHolding {
            requested,
            awaiting_ack,
            rejected,
            versions,
            wildcard,
            by_namespace,
            names,
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.wildcard
            || self.names.contains(name)
            || (self.by_namespace && namespace_of(name).is_some_and(|ns| self.names.contains(ns)))
    }

    /// The resources the client has been sent and wants, in name order.
    /// `current` is the stream's snapshot's set of the type: a client that
    /// reported its versions on reconnecting, and has been sent nothing
    /// since, holds the resources of `current` at the versions it reported.
    pub fn resources(&self, current: &TypeSet) -> Vec<Arc<Resource>> {
        match &self.versions {
            ClientVersions::Set(held) if self.wildcard || self.by_namespace => held
                .iter()
                .filter(|r| self.wants(&r.name))
                .cloned()
                .collect(),
            ClientVersions::Set(held) => self
                .names
                .iter()
                .filter_map(|n| held.get(n))
                .cloned()
                .collect(),
            ClientVersions::Names(versions) => current
                .iter()
                .filter(|r| self.wants(&r.name) && versions.get(&r.name) == Some(&r.version))
                .cloned()
                .collect(),
        }
    }
}
