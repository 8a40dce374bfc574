//! The xDS protocol: one state machine per stream (`sotw`, `delta`) that turns
//! requests and new snapshots into responses without doing any I/O, and the
//! service (`server`) that only moves messages between the network, the state
//! machines and the cache. `listen` accepts proxies' HTTP/2 connections and
//! `grpc` frames the messages on each stream; `request` reads requests
//! without copying their names; `names` holds subscriptions as sets shared
//! between streams; `pacing` bounds how many streams push at once;
//! `holding` is what a stream knows its client holds, for the debug views.
//!
//! The rules each machine follows are Envoy's `xds_protocol.rst`; the comments
//! cite them as "rule N" of docs/xds-rules.md.

mod client_versions;
pub mod delta;
pub mod grpc;
pub mod holding;
pub mod listen;
pub mod metrics;
mod name_set;
pub mod pacing;
pub mod request;
pub mod server;
pub mod sotw;
#[cfg(test)]
mod tests;

pub use name_set::NameSets;
use shmesh_cache::ResourceType;

/// Something a stream's client did that the server should record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The client applied `version` of `ty`.
    Ack { ty: ResourceType, version: String },
    /// The client said, as its stream opened, that it already holds
    /// `version` of `ty`, the current one, so nothing was sent (rule 14):
    /// it counts as sent and applied.
    Held { ty: ResourceType, version: String },
    /// The client rejected a response; `version` is the last it accepted.
    Nack {
        ty: ResourceType,
        version: String,
        nonce: String,
        message: String,
    },
}

/// A request the server cannot serve; the stream ends with this error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The type URL names a resource type shmesh does not serve.
    #[error("unknown resource type {0:?}")]
    UnknownType(String),
    /// A resource name is not a protobuf string.
    #[error("resource name {name:?} in a request for {type_url} is not UTF-8")]
    NameNotUtf8 { type_url: String, name: String },
}

/// Nonces are per stream and fresh for every response (rule 1).
#[derive(Debug, Default)]
pub(crate) struct Nonces(u64);

impl Nonces {
    pub(crate) fn next(&mut self) -> String {
        self.0 += 1;
        self.0.to_string()
    }
}
