//! A scriptable SotW ADS client: it subscribes like Envoy but ACKs only when a
//! test tells it to, to observe what the server does with a slow or stuck proxy.

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use tokio::sync::mpsc;
use tonic::Streaming;

pub const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

pub struct SotwClient {
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: Streaming<DiscoveryResponse>,
    node: Node,
    first: bool,
}

impl SotwClient {
    /// Connects as node `id` in `namespace`, asking for a bound outbound listener.
    pub async fn connect(xds: SocketAddr, id: &str, namespace: &str) -> SotwClient {
        let meta = |v: &str| Value {
            kind: Some(Kind::StringValue(v.to_string())),
        };
        let node = Node {
            id: id.to_string(),
            cluster: id.to_string(),
            user_agent_name: "test-client".to_string(),
            metadata: Some(Struct {
                fields: [
                    ("NAMESPACE".to_string(), meta(namespace)),
                    ("SHMESH_OUTBOUND_LISTENER".to_string(), meta("127.0.0.1:1")),
                ]
                .into(),
            }),
            ..Default::default()
        };
        Self::connect_as(xds, node).await
    }

    /// Connects as `node`, exactly as given.
    pub async fn connect_as(xds: SocketAddr, node: Node) -> SotwClient {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
            .await
            .expect("connect to shmesh xDS");
        let (tx, rx) = mpsc::channel(16);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let responses = client
            .stream_aggregated_resources(stream)
            .await
            .expect("open ADS stream")
            .into_inner();
        SotwClient {
            requests: tx,
            responses,
            node,
            first: true,
        }
    }

    /// Sends a request; the first one carries the node.
    pub async fn send(&mut self, type_url: &str, names: &[&str], version: &str, nonce: &str) {
        let req = DiscoveryRequest {
            node: self.first.then(|| self.node.clone()),
            type_url: type_url.to_string(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            version_info: version.to_string(),
            response_nonce: nonce.to_string(),
            ..Default::default()
        };
        self.first = false;
        self.requests.send(req).await.expect("send request");
    }

    /// The next response, within `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Option<DiscoveryResponse> {
        match tokio::time::timeout(timeout, self.responses.message()).await {
            Ok(Ok(Some(r))) => Some(r),
            _ => None,
        }
    }

    /// Whether the server ended the stream within `timeout` (a clean end or
    /// an error status), as opposed to staying open.
    pub async fn ended(&mut self, timeout: Duration) -> bool {
        loop {
            match tokio::time::timeout(timeout, self.responses.message()).await {
                Err(_) => return false,
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) | Ok(Err(_)) => return true,
            }
        }
    }

    /// The status the server ended the stream with (OK for a clean end),
    /// skipping responses; `None` if it stays open past `timeout`.
    pub async fn end_status(&mut self, timeout: Duration) -> Option<tonic::Status> {
        loop {
            match tokio::time::timeout(timeout, self.responses.message()).await {
                Err(_) => return None,
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => return Some(tonic::Status::ok("")),
                Ok(Err(status)) => return Some(status),
            }
        }
    }

    /// ACKs `resp`, keeping `names` subscribed.
    pub async fn ack(&mut self, resp: &DiscoveryResponse, names: &[&str]) {
        let (ty, version, nonce) = (
            resp.type_url.clone(),
            resp.version_info.clone(),
            resp.nonce.clone(),
        );
        self.send(&ty, names, &version, &nonce).await;
    }
}
