//! Encoded resources, shared by every stream.
//!
//! The translator writes here (one writer); the xDS streams only read. Each
//! resource is encoded to protobuf bytes once and shared as `bytes::Bytes`, so a
//! push to ten thousand streams copies nothing but reference counts. Versions are
//! content hashes of the encoded bytes: an update that changes nothing has the
//! same version and is never sent.

pub mod protobuf;
mod resource;
pub mod responses;
mod snapshot;
mod types;

pub use resource::{content_version, Resource, ResourceWriter, SortedResources, Span};
pub use snapshot::{
    set_version as content_version_of, Policies, PolicyStamp, Snapshot, SnapshotBuilder, TypeSet,
    VsOfHost,
};
pub use types::{namespace_of, ResourceType};
