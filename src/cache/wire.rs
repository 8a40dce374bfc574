//! Response messages as they go on the wire, holding resource bodies as shared
//! `Bytes`.
//!
//! envoy-types' `DiscoveryResponse` owns each resource as `Any { value: Vec<u8> }`,
//! which would copy every resource into every stream's response. These messages
//! have the same field numbers as `envoy.service.discovery.v3.DiscoveryResponse`,
//! `DeltaDiscoveryResponse` and `Resource`, so clients decode them as usual, but
//! they borrow the bodies encoded once in the cache.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use prost::encoding::{self, WireType};
use prost::Message;

/// `google.protobuf.Any` with a shared body. The type URL is a string on the
/// wire; holding it as `Bytes` lets every resource point at one static copy.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireAny {
    #[prost(bytes = "bytes", tag = "1")]
    pub type_url: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `envoy.config.core.v3.ControlPlane`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireControlPlane {
    #[prost(string, tag = "1")]
    pub identifier: String,
}

/// `envoy.service.discovery.v3.DiscoveryResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireDiscoveryResponse {
    #[prost(string, tag = "1")]
    pub version_info: String,
    #[prost(message, repeated, tag = "2")]
    pub resources: Vec<WireAny>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub nonce: String,
    #[prost(message, optional, tag = "6")]
    pub control_plane: Option<WireControlPlane>,
}

/// `envoy.service.discovery.v3.Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireResource {
    /// A string on the wire, shared bytes here.
    #[prost(bytes = "bytes", tag = "1")]
    pub version: Bytes,
    #[prost(message, optional, tag = "2")]
    pub resource: Option<WireAny>,
    /// A string on the wire, shared bytes here.
    #[prost(bytes = "bytes", tag = "3")]
    pub name: Bytes,
}

/// `envoy.service.discovery.v3.DeltaDiscoveryResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireDeltaDiscoveryResponse {
    #[prost(string, tag = "1")]
    pub system_version_info: String,
    #[prost(message, repeated, tag = "2")]
    pub resources: Vec<WireResource>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub nonce: String,
    #[prost(string, repeated, tag = "6")]
    pub removed_resources: Vec<String>,
    #[prost(message, optional, tag = "7")]
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

    /// Writes a shared body: copied if small, handed on if large.
    pub fn put_shared(&mut self, body: &Bytes) {
        if body.len() < SHARE_MIN {
            self.buf.extend_from_slice(body);
        } else {
            self.flush();
            self.ready.push_back(body.clone());
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
/// each resource, fields after), producing exactly prost's encoding.
pub trait Chunked: prost::Message {
    fn resource_count(&self) -> usize;
    /// The fields that prost encodes before the resources.
    fn write_head(&self, buf: &mut BytesMut);
    fn write_resource(&self, index: usize, out: &mut ChunkWriter);
    /// The fields that prost encodes after the resources.
    fn write_tail(&self, buf: &mut BytesMut);

    /// How many steps `write_step` takes.
    fn steps(&self) -> usize {
        self.resource_count() + 2
    }

    fn write_step(&self, step: usize, out: &mut ChunkWriter) {
        if step == 0 {
            self.write_head(out.small());
        } else if step <= self.resource_count() {
            self.write_resource(step - 1, out);
        } else {
            self.write_tail(out.small());
        }
    }
}

/// A proto3 string field: absent when empty, as prost writes it.
fn put_string(tag: u32, value: &str, buf: &mut BytesMut) {
    if !value.is_empty() {
        encoding::encode_key(tag, WireType::LengthDelimited, buf);
        encoding::encode_varint(value.len() as u64, buf);
        buf.extend_from_slice(value.as_bytes());
    }
}

/// A proto3 bytes field: absent when empty.
fn put_bytes(tag: u32, value: &Bytes, buf: &mut BytesMut) {
    if !value.is_empty() {
        encoding::bytes::encode(tag, value, buf);
    }
}

fn put_any(tag: u32, any: &WireAny, out: &mut ChunkWriter) {
    let buf = out.small();
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(any.encoded_len() as u64, buf);
    put_bytes(1, &any.type_url, buf);
    if !any.value.is_empty() {
        encoding::encode_key(2, WireType::LengthDelimited, buf);
        encoding::encode_varint(any.value.len() as u64, buf);
        out.put_shared(&any.value);
    }
}

impl Chunked for WireDiscoveryResponse {
    fn resource_count(&self) -> usize {
        self.resources.len()
    }

    fn write_head(&self, buf: &mut BytesMut) {
        put_string(1, &self.version_info, buf);
    }

    fn write_resource(&self, index: usize, out: &mut ChunkWriter) {
        put_any(2, &self.resources[index], out);
    }

    fn write_tail(&self, buf: &mut BytesMut) {
        put_string(4, &self.type_url, buf);
        put_string(5, &self.nonce, buf);
        if let Some(cp) = &self.control_plane {
            encoding::message::encode(6, cp, buf);
        }
    }
}

impl Chunked for WireDeltaDiscoveryResponse {
    fn resource_count(&self) -> usize {
        self.resources.len()
    }

    fn write_head(&self, buf: &mut BytesMut) {
        put_string(1, &self.system_version_info, buf);
    }

    fn write_resource(&self, index: usize, out: &mut ChunkWriter) {
        let r = &self.resources[index];
        let buf = out.small();
        encoding::encode_key(2, WireType::LengthDelimited, buf);
        encoding::encode_varint(r.encoded_len() as u64, buf);
        put_bytes(1, &r.version, buf);
        if let Some(any) = &r.resource {
            put_any(2, any, out);
        }
        put_bytes(3, &r.name, out.small());
    }

    fn write_tail(&self, buf: &mut BytesMut) {
        put_string(4, &self.type_url, buf);
        put_string(5, &self.nonce, buf);
        encoding::string::encode_repeated(6, &self.removed_resources, buf);
        if let Some(cp) = &self.control_plane {
            encoding::message::encode(7, cp, buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3 as ds;

    #[test]
    fn wire_response_decodes_as_envoy_types() {
        let wire = WireDiscoveryResponse {
            version_info: "v1".into(),
            resources: vec![WireAny {
                type_url: Bytes::from_static(b"t"),
                value: Bytes::from_static(b"\x0a\x01x"),
            }],
            type_url: "t".into(),
            nonce: "n".into(),
            control_plane: Some(WireControlPlane {
                identifier: "shmesh".into(),
            }),
        };
        let decoded = ds::DiscoveryResponse::decode(wire.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.version_info, "v1");
        assert_eq!(decoded.nonce, "n");
        assert_eq!(decoded.resources[0].value, b"\x0a\x01x");
        assert_eq!(decoded.resources[0].type_url, "t");
        assert_eq!(decoded.control_plane.unwrap().identifier, "shmesh");
    }

    #[test]
    fn wire_delta_decodes_as_envoy_types() {
        let wire = WireDeltaDiscoveryResponse {
            system_version_info: "s".into(),
            resources: vec![WireResource {
                version: Bytes::from_static(b"v"),
                name: Bytes::from_static(b"a"),
                resource: Some(WireAny {
                    type_url: Bytes::from_static(b"t"),
                    value: Bytes::from_static(b"xyz"),
                }),
            }],
            type_url: "t".into(),
            nonce: "1".into(),
            removed_resources: vec!["gone".into()],
            control_plane: None,
        };
        let decoded = ds::DeltaDiscoveryResponse::decode(wire.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.resources[0].name, "a");
        assert_eq!(
            decoded.resources[0].resource.as_ref().unwrap().value,
            b"xyz"
        );
        assert_eq!(decoded.removed_resources, vec!["gone".to_string()]);
    }

    fn written<M: Chunked>(msg: &M) -> (Vec<u8>, usize) {
        let mut out = ChunkWriter::default();
        for step in 0..msg.steps() {
            msg.write_step(step, &mut out);
        }
        out.flush();
        let (mut all, mut chunks) = (Vec::new(), 0);
        while let Some(c) = out.next_chunk() {
            all.extend_from_slice(&c);
            chunks += 1;
        }
        (all, chunks)
    }

    fn any(len: usize) -> WireAny {
        WireAny {
            type_url: Bytes::from_static(b"type.googleapis.com/x"),
            value: Bytes::from(vec![7u8; len]),
        }
    }

    #[test]
    fn chunked_sotw_matches_prost_and_shares_large_bodies() {
        let large = any(100_000);
        let msg = WireDiscoveryResponse {
            version_info: "v".into(),
            resources: vec![any(10), large.clone(), any(0), any(300)],
            type_url: "type.googleapis.com/x".into(),
            nonce: "3".into(),
            control_plane: Some(WireControlPlane {
                identifier: "cp".into(),
            }),
        };
        let (bytes, chunks) = written(&msg);
        assert_eq!(bytes, msg.encode_to_vec());
        // Before the large body, the large body itself, after it.
        assert_eq!(chunks, 3);
        let mut out = ChunkWriter::default();
        msg.write_step(2, &mut out);
        out.flush();
        let mut shared = false;
        while let Some(c) = out.next_chunk() {
            shared |= c.as_ptr() == large.value.as_ptr();
        }
        assert!(shared, "the large body was copied");
    }

    #[test]
    fn chunked_delta_matches_prost() {
        let resource = |name: &'static str, len| WireResource {
            version: Bytes::from_static(b"ver"),
            name: Bytes::from_static(name.as_bytes()),
            resource: Some(any(len)),
        };
        let msg = WireDeltaDiscoveryResponse {
            system_version_info: String::new(),
            resources: vec![resource("a", 5), resource("b", 50_000), resource("", 0)],
            type_url: "t".into(),
            nonce: "9".into(),
            removed_resources: vec!["gone".into(), "also".into()],
            control_plane: None,
        };
        assert_eq!(written(&msg).0, msg.encode_to_vec());
        let empty = WireDeltaDiscoveryResponse::default();
        assert_eq!(written(&empty).0, empty.encode_to_vec());
    }
}
