//! Lean decodings of the ADS responses, and the two ADS calls made with them.
//!
//! A simulated proxy never needs most of a response decoded: resource bodies
//! are only scanned for change markers (and, for CDS and LDS, decoded by
//! [`crate::subs`]). Declaring them `Bytes` lets prost slice them out of
//! tonic's receive buffer instead of allocating and copying every resource,
//! which is most of what a fleet of thousands would otherwise spend its CPU
//! on. The field numbers are those of `envoy.service.discovery.v3`;
//! messages the simulator does not look into (`control_plane`) are kept as
//! raw bytes so that `encoded_len` still counts them.

use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use http_body::Frame;
use http_body_util::StreamBody;
use shmesh::xds::grpc::{self, MessageStream};
use tokio_stream::StreamExt;
use tonic::codegen::{http, Service};
use tonic::transport::Channel;

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// `google.protobuf.Any`, both fields left undecoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawAny {
    #[prost(bytes = "bytes", tag = "1")]
    pub type_url: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `DiscoveryResponse` (SotW).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SotwResponse {
    #[prost(string, tag = "1")]
    pub version_info: String,
    #[prost(message, repeated, tag = "2")]
    pub resources: Vec<RawAny>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub nonce: String,
    /// `ControlPlane`, raw.
    #[prost(bytes = "bytes", tag = "6")]
    pub control_plane: Bytes,
}

/// `Resource` of a delta response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeltaResource {
    #[prost(bytes = "bytes", tag = "1")]
    pub version: Bytes,
    #[prost(message, optional, tag = "2")]
    pub resource: Option<RawAny>,
    #[prost(bytes = "bytes", tag = "3")]
    pub name: Bytes,
}

/// `DeltaDiscoveryResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeltaResponse {
    #[prost(string, tag = "1")]
    pub system_version_info: String,
    #[prost(message, repeated, tag = "2")]
    pub resources: Vec<DeltaResource>,
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

/// Opens `StreamAggregatedResources` on `channel`.
pub async fn sotw_stream<S>(
    channel: Channel,
    requests: S,
) -> Result<MessageStream<SotwResponse>, tonic::Status>
where
    S: tokio_stream::Stream<Item = DiscoveryRequest> + Send + 'static,
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
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
    S: tokio_stream::Stream<Item = Req> + Send + 'static,
{
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
    let frames = requests.map(|req| {
        let len = req.encoded_len();
        let mut buf = Vec::with_capacity(grpc::PREFIX + len);
        grpc::put_prefix(len, &mut buf);
        req.encode_raw(&mut buf);
        Ok::<_, tonic::Status>(Frame::data(Bytes::from(buf)))
    });
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
        assert_eq!(lean.resources[0].value.as_ref(), &[1, 2, 3]);
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
        assert_eq!(lean.resources[0].name.as_ref(), b"a");
        assert_eq!(
            lean.resources[0].resource.as_ref().unwrap().value.as_ref(),
            &[1, 2, 3]
        );
        assert_eq!(lean.removed_resources, vec!["gone"]);
        assert_eq!(lean.encoded_len(), bytes.len());
    }
}
