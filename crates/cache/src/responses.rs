//! Response messages as they go on the wire, holding resources as stretches
//! of the buffers the cache encoded them into.
//!
//! envoy-types' `DiscoveryResponse` owns each resource as `Any { value: Vec<u8> }`,
//! which would copy every resource into every stream's response. These
//! messages write the same fields as `envoy.service.discovery.v3.DiscoveryResponse`
//! and `DeltaDiscoveryResponse`, so clients decode them as usual, but their
//! resources are entries framed once in the cache (`super::Resource`): a run
//! of resources laid out next to each other goes out as one shared slice.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use prost::encoding;

use super::Span;
use crate::protobuf::{put_str_field, str_field_len};

/// `envoy.config.core.v3.ControlPlane`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireControlPlane {
    #[prost(string, tag = "1")]
    pub identifier: String,
}

/// The resources of a response: entries already framed for the response's
/// `resources` field, merged into runs where they lie next to each other.
#[derive(Debug, Default, Clone)]
pub struct Entries {
    runs: Vec<Run>,
    count: usize,
    bytes: usize,
}

#[derive(Debug, Clone)]
struct Run {
    arena: Bytes,
    range: Range<usize>,
}

impl Entries {
    /// Appends one resource's entry.
    pub fn push(&mut self, span: Span<'_>) {
        self.count += 1;
        self.bytes += span.range.len();
        if let Some(last) = self.runs.last_mut() {
            if last.range.end == span.range.start && last.arena.as_ptr() == span.arena.as_ptr() {
                last.range.end = span.range.end;
                return;
            }
        }
        self.runs.push(Run {
            arena: span.arena.clone(),
            range: span.range,
        });
    }

    /// How many resources.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of all entries.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many runs the entries make.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }
}

impl<'a> FromIterator<Span<'a>> for Entries {
    fn from_iter<I: IntoIterator<Item = Span<'a>>>(iter: I) -> Self {
        let mut out = Entries::default();
        for span in iter {
            out.push(span);
        }
        out
    }
}

/// `envoy.service.discovery.v3.DiscoveryResponse`: `resources` are `Any` entries.
#[derive(Debug, Default, Clone)]
pub struct WireDiscoveryResponse {
    pub version_info: String,
    pub resources: Entries,
    pub type_url: String,
    pub nonce: String,
    pub control_plane: Option<WireControlPlane>,
}

/// `envoy.service.discovery.v3.DeltaDiscoveryResponse`: `resources` are
/// `Resource` entries.
#[derive(Debug, Default, Clone)]
pub struct WireDeltaDiscoveryResponse {
    pub system_version_info: String,
    pub resources: Entries,
    pub type_url: String,
    pub nonce: String,
    pub removed_resources: Vec<String>,
    pub control_plane: Option<WireControlPlane>,
}

/// Where a response is written piece by piece: small fields are copied into
/// the chunk being built, large shared bodies are handed on as they are, so a
/// route configuration sent to thousands of streams is never copied per stream.
#[derive(Debug, Default)]
pub struct ChunkWriter {
    buf: BytesMut,
    ready: VecDeque<Bytes>,
}

/// Shared bodies at least this large go out as their own chunk instead of
/// being copied.
const SHARE_MIN: usize = 4 * 1024;

impl ChunkWriter {
    /// Bytes copied into the chunk being built.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Writes `arena[range]`: copied if small, handed on if large.
    fn put_span(&mut self, arena: &Bytes, range: Range<usize>) {
        if range.len() < SHARE_MIN {
            self.buf.extend_from_slice(&arena[range]);
        } else {
            self.flush();
            self.ready.push_back(arena.slice(range));
        }
    }

    /// The buffer for small fields.
    pub fn small(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Ends the chunk being built.
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.ready.push_back(self.buf.split().freeze());
        }
    }

    /// Lets go of the buffer's room, when nothing is pending: an idle stream
    /// then holds no buffer at all.
    pub fn release(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// The next finished chunk.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        self.ready.pop_front()
    }

    pub fn has_chunks(&self) -> bool {
        !self.ready.is_empty()
    }
}

/// A response that can be written out in steps (fields before the resources,
/// each run of resources, fields after), producing what prost would encode
/// for the same message.
pub trait Chunked {
    fn resources(&self) -> &Entries;
    /// The fields before the resources.
    fn write_head(&self, buf: &mut BytesMut);
    /// The fields after the resources.
    fn write_tail(&self, buf: &mut BytesMut);
    /// Length of the head and tail fields.
    fn fields_len(&self) -> usize;

    fn encoded_len(&self) -> usize {
        self.fields_len() + self.resources().bytes()
    }

    /// How many steps `write_step` takes.
    fn steps(&self) -> usize {
        self.resources().runs.len() + 2
    }

    fn write_step(&self, step: usize, out: &mut ChunkWriter) {
        let runs = &self.resources().runs;
        if step == 0 {
            self.write_head(out.small());
        } else if let Some(run) = runs.get(step - 1) {
            out.put_span(&run.arena, run.range.clone());
        } else {
            self.write_tail(out.small());
        }
    }

    /// The whole message, in one buffer.
    fn encode_to_vec(&self) -> Vec<u8> {
        let mut out = ChunkWriter::default();
        for step in 0..self.steps() {
            self.write_step(step, &mut out);
        }
        out.flush();
        let mut all = Vec::with_capacity(self.encoded_len());
        while let Some(chunk) = out.next_chunk() {
            all.extend_from_slice(&chunk);
        }
        all
    }
}

fn control_plane_len(tag: u32, cp: &Option<WireControlPlane>) -> usize {
    cp.as_ref()
        .map_or(0, |cp| encoding::message::encoded_len(tag, cp))
}

impl Chunked for WireDiscoveryResponse {
    fn resources(&self) -> &Entries {
        &self.resources
    }

    fn write_head(&self, buf: &mut BytesMut) {
        put_str_field(1, &self.version_info, buf);
    }

    fn write_tail(&self, buf: &mut BytesMut) {
        put_str_field(4, &self.type_url, buf);
        put_str_field(5, &self.nonce, buf);
        if let Some(cp) = &self.control_plane {
            encoding::message::encode(6, cp, buf);
        }
    }

    fn fields_len(&self) -> usize {
        str_field_len(&self.version_info)
            + str_field_len(&self.type_url)
            + str_field_len(&self.nonce)
            + control_plane_len(6, &self.control_plane)
    }
}

impl Chunked for WireDeltaDiscoveryResponse {
    fn resources(&self) -> &Entries {
        &self.resources
    }

    fn write_head(&self, buf: &mut BytesMut) {
        put_str_field(1, &self.system_version_info, buf);
    }

    fn write_tail(&self, buf: &mut BytesMut) {
        put_str_field(4, &self.type_url, buf);
        put_str_field(5, &self.nonce, buf);
        encoding::string::encode_repeated(6, &self.removed_resources, buf);
        if let Some(cp) = &self.control_plane {
            encoding::message::encode(7, cp, buf);
        }
    }

    fn fields_len(&self) -> usize {
        str_field_len(&self.system_version_info)
            + str_field_len(&self.type_url)
            + str_field_len(&self.nonce)
            + encoding::string::encoded_len_repeated(6, &self.removed_resources)
            + control_plane_len(7, &self.control_plane)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Resource, ResourceType, ResourceWriter};
    use envoy_types::pb::envoy::config::core::v3::ControlPlane;
    use envoy_types::pb::envoy::service::discovery::v3 as ds;
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;
    use std::sync::Arc;

    const TYPE: ResourceType = ResourceType::Endpoint;

    /// Resources named `name` with bodies of `len` bytes, laid out as one set.
    fn set(items: &[(&str, usize)]) -> Vec<Arc<Resource>> {
        let mut w = ResourceWriter::for_type(TYPE);
        for (name, len) in items {
            w.put_body(name.to_string(), &vec![7u8; *len]);
        }
        w.finish_by_name().into_iter().collect()
    }

    fn any(r: &Resource) -> Any {
        Any {
            type_url: TYPE.type_url().into(),
            value: r.body.to_vec(),
        }
    }

    fn cp() -> Option<WireControlPlane> {
        Some(WireControlPlane {
            identifier: "cp".into(),
        })
    }

    #[test]
    fn sotw_matches_prost() {
        let rs = set(&[("a", 10), ("b", 100_000), ("c", 0), ("d", 300)]);
        let wire = WireDiscoveryResponse {
            version_info: "v1".into(),
            resources: rs.iter().map(|r| r.sotw_entry()).collect(),
            type_url: TYPE.type_url().into(),
            nonce: "n".into(),
            control_plane: cp(),
        };
        let prost = ds::DiscoveryResponse {
            version_info: "v1".into(),
            resources: rs.iter().map(|r| any(r)).collect(),
            type_url: TYPE.type_url().into(),
            nonce: "n".into(),
            control_plane: Some(ControlPlane {
                identifier: "cp".into(),
            }),
            ..Default::default()
        };
        assert_eq!(wire.encode_to_vec(), prost.encode_to_vec());
        assert_eq!(wire.encoded_len(), prost.encoded_len());
        // Any entries are separated by each resource's name and version.
        assert_eq!(wire.resources.runs(), 4);
    }

    #[test]
    fn delta_matches_prost() {
        let rs = set(&[("a", 5), ("b", 50_000), ("", 0)]);
        let wire = WireDeltaDiscoveryResponse {
            system_version_info: String::new(),
            resources: rs.iter().map(|r| r.delta_entry()).collect(),
            type_url: TYPE.type_url().into(),
            nonce: "9".into(),
            removed_resources: vec!["gone".into(), "also".into()],
            control_plane: cp(),
        };
        let prost = ds::DeltaDiscoveryResponse {
            resources: rs
                .iter()
                .map(|r| ds::Resource {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    resource: Some(any(r)),
                    ..Default::default()
                })
                .collect(),
            type_url: TYPE.type_url().into(),
            nonce: "9".into(),
            removed_resources: vec!["gone".into(), "also".into()],
            control_plane: Some(ControlPlane {
                identifier: "cp".into(),
            }),
            ..Default::default()
        };
        assert_eq!(wire.encode_to_vec(), prost.encode_to_vec());
        assert_eq!(wire.encoded_len(), prost.encoded_len());
        let empty = WireDeltaDiscoveryResponse::default();
        assert_eq!(empty.encode_to_vec(), Vec::<u8>::new());
        assert_eq!(empty.encoded_len(), 0);
    }

    #[test]
    fn neighbours_go_out_as_one_shared_run() {
        let rs = set(&[("a", 3000), ("b", 3000), ("c", 3000)]);
        let lone = Resource::from_body(TYPE, "d".into(), &[1, 2, 3]);
        let wire = WireDeltaDiscoveryResponse {
            resources: rs.iter().chain([&lone]).map(|r| r.delta_entry()).collect(),
            ..Default::default()
        };
        assert_eq!(wire.resources.len(), 4);
        assert_eq!(wire.resources.runs(), 2, "one run per buffer");
        let mut out = ChunkWriter::default();
        wire.write_step(1, &mut out);
        out.flush();
        let first = rs[0].delta_entry();
        let chunk = out.next_chunk().expect("the run");
        assert_eq!(
            chunk.as_ptr(),
            first.arena[first.range.start..].as_ptr(),
            "the run was copied"
        );
        let decoded = ds::DeltaDiscoveryResponse::decode(wire.encode_to_vec().as_slice()).unwrap();
        let names: Vec<&str> = decoded.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
    }
}
