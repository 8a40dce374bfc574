//! Lean decodings of the ADS responses, and the two ADS calls made with them.
//!
//! A simulated proxy never needs most of a response decoded: resource bodies
//! are only scanned for change markers (and, for CDS and LDS, decoded by
//! [`crate::subs`]). Each response entry stays one `Bytes` slice of the
//! receive buffer, and its name and body are read in place from it
//! ([`delta_item`], [`sotw_body`]) instead of being allocated, copied or
//! even sliced field by field, which is most of what a fleet of thousands
//! would otherwise spend its CPU on. The field numbers are those of
//! `envoy.service.discovery.v3`; messages the simulator does not look into
//! (`control_plane`) are kept as raw bytes so that `encoded_len` still
//! counts them.
//!
//! Requests go the other way cheaply too: a SotW ACK repeats the client's
//! whole subscription, so each subscription's names are encoded once
//! ([`encode_names`]) and appended to every request that carries them.

use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use http_body::Frame;
use http_body_util::StreamBody;
use shmesh_cache::protobuf;
use shmesh_xds::grpc::{self, MessageStream};
use tokio_stream::StreamExt;
use tonic::codegen::{http, Service};
use tonic::transport::Channel;

use crate::subs::Item;

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// `DiscoveryResponse` (SotW).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SotwResponse {
    #[prost(string, tag = "1")]
    pub version_info: String,
    /// Each an encoded `google.protobuf.Any`, read with [`sotw_body`].
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub resources: Vec<Bytes>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub nonce: String,
    /// `ControlPlane`, raw.
    #[prost(bytes = "bytes", tag = "6")]
    pub control_plane: Bytes,
}

/// `DeltaDiscoveryResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeltaResponse {
    #[prost(string, tag = "1")]
    pub system_version_info: String,
    /// Each an encoded `Resource`, read with [`delta_item`].
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub resources: Vec<Bytes>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub nonce: String,
    #[prost(string, repeated, tag = "6")]
    pub removed_resources: Vec<String>,
    /// `ControlPlane`, raw.
    #[prost(bytes = "bytes", tag = "7")]
    pub control_plane: Bytes,
}

/// `google.protobuf.Any.value`.
const ANY_VALUE: u32 = 2;
/// `Resource.resource` and `Resource.name`.
const RESOURCE_BODY: u32 = 2;
const RESOURCE_NAME: u32 = 3;

/// The resource inside a SotW response entry (an `Any`).
pub fn sotw_body(any: &[u8]) -> &[u8] {
    protobuf::bytes_field(any, ANY_VALUE).unwrap_or_default()
}

/// The name and resource of a delta response entry; `None` for an entry
/// without a resource. A name that is not UTF-8 is left out (the one in the
/// body stands).
pub fn delta_item(resource: &[u8]) -> Option<Item<'_>> {
    let any = protobuf::bytes_field(resource, RESOURCE_BODY)?;
    Some(Item {
        name: protobuf::bytes_field(resource, RESOURCE_NAME)
            .and_then(|n| std::str::from_utf8(n).ok()),
        body: sotw_body(any),
    })
}

/// A SotW request whose resource names were encoded ahead of it.
#[derive(Debug, Default)]
pub struct SotwRequest {
    /// Everything but the names (its `resource_names` left empty).
    pub head: DiscoveryRequest,
    /// `resource_names` entries as [`encode_names`] wrote them.
    pub names: Bytes,
}

impl From<DiscoveryRequest> for SotwRequest {
    /// A request carrying its own names, or none (a wildcard or a NACK).
    fn from(head: DiscoveryRequest) -> Self {
        SotwRequest {
            head,
            names: Bytes::new(),
        }
    }
}

/// `names` as the `resource_names` entries (field 3) of a `DiscoveryRequest`:
/// appended to an encoded request, they are its names (protobuf fields may
/// come in any order).
pub fn encode_names(names: &[String]) -> Bytes {
    let mut buf = Vec::new();
    prost::encoding::string::encode_repeated(3, names, &mut buf);
    Bytes::from(buf)
}

/// A request as one gRPC message.
pub trait Outgoing: Send + 'static {
    fn framed(&self) -> Bytes;
}

impl Outgoing for SotwRequest {
    fn framed(&self) -> Bytes {
        framed(&self.head, &self.names)
    }
}

impl Outgoing for DeltaDiscoveryRequest {
    fn framed(&self) -> Bytes {
        framed(self, &[])
    }
}

/// `msg` encoded with `tail` after it, behind the gRPC prefix.
fn framed(msg: &impl prost::Message, tail: &[u8]) -> Bytes {
    let len = msg.encoded_len() + tail.len();
    let mut buf = Vec::with_capacity(grpc::PREFIX + len);
    grpc::put_prefix(len, &mut buf);
    msg.encode_raw(&mut buf);
    buf.extend_from_slice(tail);
    Bytes::from(buf)
}

/// Opens `StreamAggregatedResources` on `channel`.
pub async fn sotw_stream<S>(
    channel: Channel,
    requests: S,
) -> Result<MessageStream<SotwResponse>, tonic::Status>
where
    S: tokio_stream::Stream<Item = SotwRequest> + Send + 'static,
{
    call(channel, requests, SOTW_PATH).await
}

/// Opens `DeltaAggregatedResources` on `channel`.
pub async fn delta_stream<S>(
    channel: Channel,
    requests: S,
) -> Result<MessageStream<DeltaResponse>, tonic::Status>
where
    S: tokio_stream::Stream<Item = DeltaDiscoveryRequest> + Send + 'static,
{
    call(channel, requests, DELTA_PATH).await
}

/// A gRPC call made by hand: tonic's own decoder keeps a buffer as large as
/// the largest response (a route configuration of half a megabyte) for the
/// life of every stream, which across a fleet of simulated proxies costs
/// gigabytes and the time to fault them in. shmesh's `MessageStream` lets
/// go of it between messages.
async fn call<Req, Resp, S>(
    mut channel: Channel,
    requests: S,
    path: &'static str,
) -> Result<MessageStream<Resp>, tonic::Status>
where
    Req: Outgoing,
    Resp: prost::Message + Default + Send + Sync + 'static,
    S: tokio_stream::Stream<Item = Req> + Send + 'static,
{
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
    let frames = requests.map(|req| Ok::<_, tonic::Status>(Frame::data(req.framed())));
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(tonic::body::Body::new(StreamBody::new(frames)))
        .map_err(|e| tonic::Status::internal(format!("request: {e}")))?;
    let resp = channel
        .call(req)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{e}")))?;
    // A trailers-only response carries its status in the headers.
    if let Some(status) = tonic::Status::from_header_map(resp.headers()) {
        if status.code() != tonic::Code::Ok {
            return Err(status);
        }
    }
    if resp.status() != http::StatusCode::OK {
        return Err(tonic::Status::unknown(format!("HTTP {}", resp.status())));
    }
    Ok(MessageStream::new(resp.into_body()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3 as full;
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    #[test]
    fn lean_decodings_read_what_the_full_types_wrote() {
        let any = Any {
            type_url: "type.googleapis.com/x".into(),
            value: vec![1, 2, 3],
        };
        let sotw = full::DiscoveryResponse {
            version_info: "v1".into(),
            resources: vec![any.clone()],
            type_url: "t".into(),
            nonce: "n".into(),
            control_plane: Some(envoy_types::pb::envoy::config::core::v3::ControlPlane {
                identifier: "cp".into(),
            }),
            ..Default::default()
        };
        let bytes = sotw.encode_to_vec();
        let lean = SotwResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(
            (lean.version_info.as_str(), lean.nonce.as_str()),
            ("v1", "n")
        );
        assert_eq!(sotw_body(&lean.resources[0]), &[1, 2, 3]);
        assert_eq!(lean.encoded_len(), bytes.len());

        let delta = full::DeltaDiscoveryResponse {
            system_version_info: "s".into(),
            resources: vec![full::Resource {
                name: "a".into(),
                version: "1".into(),
                resource: Some(any),
                ..Default::default()
            }],
            type_url: "t".into(),
            removed_resources: vec!["gone".into()],
            nonce: "7".into(),
            ..Default::default()
        };
        let bytes = delta.encode_to_vec();
        let lean = DeltaResponse::decode(bytes.as_slice()).unwrap();
        let item = delta_item(&lean.resources[0]).expect("a resource");
        assert_eq!((item.name, item.body), (Some("a"), &[1, 2, 3][..]));
        let removal = full::Resource {
            name: "b".into(),
            ..Default::default()
        };
        assert!(delta_item(&removal.encode_to_vec()).is_none());
        assert_eq!(lean.removed_resources, vec!["gone"]);
        assert_eq!(lean.encoded_len(), bytes.len());
    }

    #[test]
    fn a_request_with_names_encoded_ahead_is_the_full_request() {
        let names = vec!["outbound|80||a".to_string(), "outbound|80||b".to_string()];
        let head = full::DiscoveryRequest {
            version_info: "v1".into(),
            type_url: "t".into(),
            response_nonce: "3".into(),
            ..Default::default()
        };
        let sent = SotwRequest {
            head: head.clone(),
            names: encode_names(&names),
        }
        .framed();
        let expected = full::DiscoveryRequest {
            resource_names: names,
            ..head
        };
        assert_eq!(sent[0], 0, "uncompressed");
        let len = u32::from_be_bytes([sent[1], sent[2], sent[3], sent[4]]) as usize;
        assert_eq!(len, sent.len() - grpc::PREFIX);
        let decoded = full::DiscoveryRequest::decode(&sent[grpc::PREFIX..]).unwrap();
        assert_eq!(decoded, expected);
    }
}
