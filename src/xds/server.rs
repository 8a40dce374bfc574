//! The tonic service for `StreamAggregatedResources` and
//! `DeltaAggregatedResources`. It only moves messages: requests to the
//! stream's state machine, new snapshots from the cache's watch to the same
//! machine, responses to the client. A slow client holds back only its own
//! stream: the watch keeps the latest snapshot, never a queue of them.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use dashmap::DashMap;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::{Status, Streaming};
use tracing::{debug, info, warn, Instrument};

use super::delta::DeltaStream;
use super::node::view_of;
use super::sotw::SotwStream;
use super::{Event, ProtocolError};
use crate::cache::wire::{WireDeltaDiscoveryResponse, WireDiscoveryResponse};
use crate::cache::{ResourceType, Snapshot};
use crate::metrics::Metrics;
use crate::translate::ProxyView;

pub const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
/// Responses waiting for a slow client, per stream; beyond this the stream
/// stops taking new snapshots (only the latest is kept) until the client reads.
const STREAM_BUFFER: usize = 8;

/// Where streams get the snapshot of their view.
pub trait ViewSource: Send + Sync + 'static {
    /// A watch over the view's latest snapshot; `None` until the mesh is fully
    /// known, so no proxy is ever told the mesh is empty because a cache was cold.
    fn watch(&self, view: &ProxyView) -> watch::Receiver<Option<Arc<Snapshot>>>;
}

/// What the admin server shows about one connected proxy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProxyStatus {
    pub stream: u64,
    pub node_id: String,
    pub view: String,
    pub protocol: &'static str,
    /// Version of the snapshot the stream is on.
    pub snapshot_version: String,
    /// Last version the proxy ACKed, per type (cds, eds, lds, rds).
    pub acked: std::collections::BTreeMap<&'static str, String>,
    /// Last version sent, per type.
    pub sent: std::collections::BTreeMap<&'static str, String>,
    pub last_nack: Option<String>,
}

/// Connected proxies, for debug views and ACK tracking.
#[derive(Debug, Default)]
pub struct Registry {
    streams: DashMap<u64, ProxyStatus>,
    next: AtomicU64,
}

impl Registry {
    pub fn list(&self) -> Vec<ProxyStatus> {
        let mut v: Vec<ProxyStatus> = self.streams.iter().map(|e| e.value().clone()).collect();
        v.sort_by_key(|s| s.stream);
        v
    }
}

/// Shared by every stream.
pub struct Shared {
    pub views: Arc<dyn ViewSource>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub control_plane: String,
}

#[derive(Clone)]
pub struct AdsServer {
    shared: Arc<Shared>,
}

impl AdsServer {
    pub fn new(shared: Arc<Shared>) -> AdsServer {
        AdsServer { shared }
    }
}

impl tonic::server::NamedService for AdsServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> tonic::codegen::Service<http::Request<B>> for AdsServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        match req.uri().path() {
            SOTW_PATH => Box::pin(async move {
                let codec =
                    tonic_prost::ProstCodec::<WireDiscoveryResponse, DiscoveryRequest>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc
                    .streaming(StreamSvc::<SotwStream>::new(shared), req)
                    .await)
            }),
            DELTA_PATH => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<
                    WireDeltaDiscoveryResponse,
                    DeltaDiscoveryRequest,
                >::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc
                    .streaming(StreamSvc::<DeltaStream>::new(shared), req)
                    .await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("unknown method").into_http()) }),
        }
    }
}

/// What the stream loop needs of a protocol state machine.
pub trait Machine: Send + 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: prost::Message + Send + 'static;
    const PROTOCOL: &'static str;
    fn create(snapshot: Arc<Snapshot>, control_plane: String) -> Self;
    fn node(req: &Self::Request) -> Option<&Node>;
    fn request(
        &mut self,
        req: &Self::Request,
    ) -> Result<(Vec<Self::Response>, Vec<Event>), ProtocolError>;
    fn snapshot(&mut self, snapshot: Arc<Snapshot>) -> (Vec<Self::Response>, Vec<Event>);
    fn describe(resp: &Self::Response) -> (ResourceType, String);
    fn gauge(metrics: &Metrics) -> &AtomicU64;
}

impl Machine for SotwStream {
    type Request = DiscoveryRequest;
    type Response = WireDiscoveryResponse;
    const PROTOCOL: &'static str = "sotw";
    fn create(snapshot: Arc<Snapshot>, control_plane: String) -> Self {
        SotwStream::new(snapshot, control_plane)
    }
    fn node(req: &DiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn request(
        &mut self,
        req: &DiscoveryRequest,
    ) -> Result<(Vec<Self::Response>, Vec<Event>), ProtocolError> {
        self.on_request(req).map(|o| (o.responses, o.events))
    }
    fn snapshot(&mut self, snapshot: Arc<Snapshot>) -> (Vec<Self::Response>, Vec<Event>) {
        let o = self.on_snapshot(snapshot);
        (o.responses, o.events)
    }
    fn describe(resp: &WireDiscoveryResponse) -> (ResourceType, String) {
        let ty = ResourceType::from_type_url(&resp.type_url).unwrap_or(ResourceType::Cluster);
        (ty, resp.version_info.clone())
    }
    fn gauge(metrics: &Metrics) -> &AtomicU64 {
        &metrics.streams_sotw
    }
}

impl Machine for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    type Response = WireDeltaDiscoveryResponse;
    const PROTOCOL: &'static str = "delta";
    fn create(snapshot: Arc<Snapshot>, control_plane: String) -> Self {
        DeltaStream::new(snapshot, control_plane)
    }
    fn node(req: &DeltaDiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn request(
        &mut self,
        req: &DeltaDiscoveryRequest,
    ) -> Result<(Vec<Self::Response>, Vec<Event>), ProtocolError> {
        self.on_request(req).map(|o| (o.responses, o.events))
    }
    fn snapshot(&mut self, snapshot: Arc<Snapshot>) -> (Vec<Self::Response>, Vec<Event>) {
        let o = self.on_snapshot(snapshot);
        (o.responses, o.events)
    }
    fn describe(resp: &WireDeltaDiscoveryResponse) -> (ResourceType, String) {
        let ty = ResourceType::from_type_url(&resp.type_url).unwrap_or(ResourceType::Cluster);
        (ty, resp.system_version_info.clone())
    }
    fn gauge(metrics: &Metrics) -> &AtomicU64 {
        &metrics.streams_delta
    }
}

struct StreamSvc<M> {
    shared: Arc<Shared>,
    _m: std::marker::PhantomData<fn() -> M>,
}

impl<M> StreamSvc<M> {
    fn new(shared: Arc<Shared>) -> Self {
        StreamSvc {
            shared,
            _m: std::marker::PhantomData,
        }
    }
}

impl<M: Machine> tonic::server::StreamingService<M::Request> for StreamSvc<M> {
    type Response = M::Response;
    type ResponseStream = ReceiverStream<Result<M::Response, Status>>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: tonic::Request<Streaming<M::Request>>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(STREAM_BUFFER);
            let incoming = request.into_inner();
            tokio::spawn(run_stream::<M>(shared, incoming, tx));
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        })
    }
}

async fn run_stream<M: Machine>(
    shared: Arc<Shared>,
    mut incoming: Streaming<M::Request>,
    tx: mpsc::Sender<Result<M::Response, Status>>,
) {
    let first = match incoming.message().await {
        Ok(Some(req)) => req,
        _ => return,
    };
    // Rule 15: only the first request is sure to carry the node.
    let Some(node) = M::node(&first).cloned() else {
        let _ = tx
            .send(Err(Status::invalid_argument(
                "the first request must carry node",
            )))
            .await;
        return;
    };
    let view = match view_of(&node) {
        Ok(v) => v,
        Err(e) => {
            let _ = tx.send(Err(Status::invalid_argument(e))).await;
            return;
        }
    };
    let id = shared.registry.next.fetch_add(1, Ordering::Relaxed) + 1;
    let span = tracing::info_span!("xds", stream = id, node = %node.id, view = %view, protocol = M::PROTOCOL);
    async move {
        let mut rx = shared.views.watch(&view);
        // Hold every response until the mesh is known.
        let snapshot = loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                break s;
            }
            if rx.changed().await.is_err() {
                return;
            }
        };
        info!("connected");
        Metrics::inc(M::gauge(&shared.metrics));
        shared.registry.streams.insert(
            id,
            ProxyStatus {
                stream: id,
                node_id: node.id.clone(),
                view: view.to_string(),
                protocol: M::PROTOCOL,
                snapshot_version: snapshot.version(),
                acked: Default::default(),
                sent: Default::default(),
                last_nack: None,
            },
        );
        let mut machine = M::create(snapshot, shared.control_plane.clone());
        let mut result = machine.request(&first);
        loop {
            let (responses, events) = match result {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "closing stream");
                    let _ = tx.send(Err(Status::invalid_argument(e.to_string()))).await;
                    break;
                }
            };
            record(&shared, id, &events);
            if !send::<M>(&shared, id, &tx, responses).await {
                break;
            }
            result = tokio::select! {
                msg = incoming.message() => match msg {
                    Ok(Some(req)) => machine.request(&req),
                    Ok(None) => break,
                    Err(status) => {
                        debug!(%status, "stream ended");
                        break;
                    }
                },
                changed = rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let latest = rx.borrow_and_update().clone();
                    match latest {
                        Some(s) => {
                            if let Some(mut st) = shared.registry.streams.get_mut(&id) {
                                st.snapshot_version = s.version();
                            }
                            Ok(machine.snapshot(s))
                        }
                        None => Ok((Vec::new(), Vec::new())),
                    }
                }
            };
        }
        shared.registry.streams.remove(&id);
        M::gauge(&shared.metrics).fetch_sub(1, Ordering::Relaxed);
        info!("disconnected");
    }
    .instrument(span)
    .await
}

async fn send<M: Machine>(
    shared: &Shared,
    id: u64,
    tx: &mpsc::Sender<Result<M::Response, Status>>,
    responses: Vec<M::Response>,
) -> bool {
    for resp in responses {
        let (ty, version) = M::describe(&resp);
        Metrics::inc(&shared.metrics.pushes[ty.index()]);
        if let Some(mut st) = shared.registry.streams.get_mut(&id) {
            st.sent.insert(ty.short(), version.clone());
        }
        debug!(type = %ty, %version, "push");
        if tx.send(Ok(resp)).await.is_err() {
            return false;
        }
    }
    true
}

fn record(shared: &Shared, id: u64, events: &[Event]) {
    for event in events {
        match event {
            Event::Ack { ty, version } => {
                Metrics::inc(&shared.metrics.acks[ty.index()]);
                if let Some(mut st) = shared.registry.streams.get_mut(&id) {
                    st.acked.insert(ty.short(), version.clone());
                }
            }
            Event::Nack {
                ty,
                version,
                nonce,
                message,
            } => {
                Metrics::inc(&shared.metrics.nacks[ty.index()]);
                warn!(type = %ty, last_good_version = %version, %nonce, %message, "proxy rejected configuration (NACK)");
                if let Some(mut st) = shared.registry.streams.get_mut(&id) {
                    st.last_nack = Some(format!("{ty}: {message}"));
                }
            }
        }
    }
}
