//! The service for `StreamAggregatedResources` and
//! `DeltaAggregatedResources`. It only moves messages: requests to the
//! stream's state machine, new snapshots from the cache's watch to the same
//! machine, responses to the client. A slow client holds back only its own
//! stream: the watch keeps the latest snapshot, never a queue of them.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use dashmap::DashMap;
use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::{mpsc, watch};
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::Status;
use tracing::{debug, info, warn, Instrument};

use super::delta::DeltaStream;
use super::grpc::{self, MessageStream, ResponseBody};
use super::holding::TypeHolding;
use super::listen::{Closing, ConnectionClosing, Peer};
use super::name_set::NameSets;
use super::pacing::{PushSlots, StreamSlot};
use super::request::{DeltaRequest, SotwRequest};
use super::sotw::SotwStream;
use super::{Event, ProtocolError};
use crate::metrics::{ProxyLabels, XdsMetrics};
use shmesh_cache::responses::{Chunked, WireDeltaDiscoveryResponse, WireDiscoveryResponse};
use shmesh_cache::{PolicyStamp, Resource, ResourceType, Snapshot};

pub const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
/// Responses waiting for a slow client, per stream; beyond this the stream
/// stops taking new snapshots (only the latest is kept) until the client reads.
const STREAM_BUFFER: usize = 8;

/// Where streams get the snapshot of their view. The server knows views only
/// through this trait: what a view holds, and how a node maps to one, is the
/// translation's business.
pub trait ViewSource: Send + Sync + 'static {
    /// What proxies that receive the same configuration have in common.
    type View: std::fmt::Display + Send + Sync + 'static;
    /// Why a node has no view; the stream ends with it as an invalid argument.
    type Error: std::error::Error + Send + 'static;
    /// The view `node` receives, on a stream whose protocol can carry VHDS
    /// (`vhds_capable`: Envoy takes VHDS over delta ADS only).
    /// `peer` says what the connection proved of the client (its TLS
    /// certificate) or what it claims (a bearer token, to be checked): a view
    /// may only carry an identity the peer proved.
    fn view_of(
        &self,
        node: &Node,
        vhds_capable: bool,
        peer: &Peer,
    ) -> impl Future<Output = Result<Self::View, Self::Error>> + Send;
    /// A watch over the view's latest snapshot; `None` until the mesh is fully
    /// known, so no proxy is ever told the mesh is empty because a cache was cold.
    fn watch(&self, view: &Self::View) -> watch::Receiver<Option<Arc<Snapshot>>>;
    /// What kind of proxy receives the view (`sidecar`, `router`,
    /// `proxyless`), for metrics.
    fn proxy_type(&self, view: &Self::View) -> &'static str;
}

/// What the admin server shows about one connected proxy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProxyStatus {
    pub stream: u64,
    pub node_id: String,
    /// The proxy's build: Envoy's version (`1.40.0`), or a gRPC client's
    /// user agent and version (`grpc-python/1.62.1`).
    pub proxy_version: String,
    /// The Istio agent's version, when one announced itself (node metadata
    /// `ISTIO_VERSION`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub istio_version: Option<String>,
    /// The cluster the proxy runs in, as Istio's agent names it (node
    /// metadata `CLUSTER_ID`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
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

/// A connected stream as the registry keeps it.
#[derive(Debug)]
struct StreamEntry {
    status: ProxyStatus,
    /// The snapshot the stream is on.
    current: Arc<Snapshot>,
    /// The latest snapshot the proxy had fully applied (every response ACKed).
    synced: Option<Arc<Snapshot>>,
    /// What the machine knows the proxy holds, per type, as of its last step.
    holdings: [TypeHolding; ResourceType::COUNT],
    /// When the latest response of each type was sent.
    sent_at: [Option<SystemTime>; ResourceType::COUNT],
    /// Why the proxy rejected the latest response of each type, until it
    /// ACKs one again.
    errors: [Option<String>; ResourceType::COUNT],
}

/// Whether a proxy has applied what it was sent of one type, in the words
/// of istioctl's proxy-status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// It has applied the latest response, or said on connecting that it
    /// holds the current version.
    Synced,
    /// The latest response awaits its ACK, or the proxy rejected it.
    Stale,
    /// The proxy asked for the type but nothing was sent (nothing it names
    /// exists).
    NotSent,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Synced => "SYNCED",
            SyncState::Stale => "STALE",
            SyncState::NotSent => "NOT SENT",
        }
    }
}

/// One type a proxy asked for, and how far it has applied it.
#[derive(Debug, Clone)]
pub struct TypeSync {
    pub ty: ResourceType,
    pub state: SyncState,
    /// Version of the latest response sent (or the version the proxy
    /// reported holding on connecting).
    pub sent: Option<String>,
    /// Version the proxy last applied.
    pub acked: Option<String>,
    pub sent_at: Option<SystemTime>,
    /// Why the proxy rejected the latest response.
    pub error: Option<String>,
}

/// A connected proxy and, for every type it asked for, its sync state.
#[derive(Debug, Clone)]
pub struct ProxySync {
    pub status: ProxyStatus,
    pub types: Vec<TypeSync>,
}

/// What a connected proxy has been sent and holds once it applies it, per
/// type (`ResourceType::ALL` order), each in name order.
#[derive(Debug, Clone)]
pub struct SentConfig {
    pub status: ProxyStatus,
    pub resources: [Vec<Arc<Resource>>; ResourceType::COUNT],
}

/// Which connected proxies have applied a given version of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rollout {
    /// Node ids of proxies that receive the policy and have ACKed the version.
    pub acked: Vec<String>,
    /// Node ids of proxies that receive the policy but have not ACKed it yet.
    pub pending: Vec<String>,
}

/// Connected proxies, for debug views and rollout (ACK) tracking.
#[derive(Debug)]
pub struct Registry {
    streams: DashMap<u64, StreamEntry>,
    next: AtomicU64,
    /// Bumped whenever a proxy connects, leaves, takes a new snapshot,
    /// finishes applying one, or rejects a response.
    changes: watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            streams: DashMap::new(),
            next: AtomicU64::new(0),
            changes: watch::channel(0).0,
        }
    }
}

impl Registry {
    /// How many streams are connected.
    pub fn connected(&self) -> usize {
        self.streams.len()
    }

    pub fn list(&self) -> Vec<ProxyStatus> {
        let mut v: Vec<ProxyStatus> = self
            .streams
            .iter()
            .map(|e| e.value().status.clone())
            .collect();
        v.sort_by_key(|s| s.stream);
        v
    }

    /// Every connected proxy with the sync state of each type it asked for.
    pub fn sync(&self) -> Vec<ProxySync> {
        let mut v: Vec<ProxySync> = self
            .streams
            .iter()
            .map(|e| {
                let e = e.value();
                let types = ResourceType::ALL
                    .into_iter()
                    .filter(|ty| e.holdings[ty.index()].requested)
                    .map(|ty| {
                        let held = &e.holdings[ty.index()];
                        let sent = e.status.sent.get(ty.short()).cloned();
                        let state = if held.awaiting_ack || held.rejected {
                            SyncState::Stale
                        } else if sent.is_none() {
                            SyncState::NotSent
                        } else {
                            SyncState::Synced
                        };
                        TypeSync {
                            ty,
                            state,
                            sent,
                            acked: e.status.acked.get(ty.short()).cloned(),
                            sent_at: e.sent_at[ty.index()],
                            error: e.errors[ty.index()].clone(),
                        }
                    })
                    .collect();
                ProxySync {
                    status: e.status.clone(),
                    types,
                }
            })
            .collect();
        v.sort_by_key(|s| s.status.stream);
        v
    }

    /// What stream `stream` has sent its proxy, as the proxy holds it once
    /// it applies it; `None` if the stream is gone.
    pub fn sent_config(&self, stream: u64) -> Option<SentConfig> {
        // Copied out (pointers) so the lookups below hold no lock.
        let (status, holdings, current) = {
            let e = self.streams.get(&stream)?;
            (e.status.clone(), e.holdings.clone(), e.current.clone())
        };
        Some(SentConfig {
            status,
            resources: std::array::from_fn(|i| {
                holdings[i].resources(current.set(ResourceType::ALL[i]))
            }),
        })
    }

    /// Wakes whenever rollout progress may have changed, or a proxy
    /// rejected a response.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Progress of policy `key` (`Kind/namespace/name`) towards `live`: every
    /// proxy whose current snapshot applies the policy, split by whether the
    /// snapshot it last fully applied has the policy at a version `live` accepts.
    pub fn rollout(&self, key: &str, live: impl Fn(&PolicyStamp) -> bool) -> Rollout {
        let mut out = Rollout::default();
        for e in self.streams.iter() {
            if !e.current.policies().contains_key(key) {
                continue;
            }
            let applied = e
                .synced
                .as_ref()
                .and_then(|s| s.policies().get(key))
                .is_some_and(&live);
            let node = e.status.node_id.clone();
            if applied {
                out.acked.push(node);
            } else {
                out.pending.push(node);
            }
        }
        out.acked.sort();
        out.pending.sort();
        out
    }
}

/// Shared by every stream.
pub struct Shared<S> {
    pub views: Arc<S>,
    pub metrics: Arc<XdsMetrics>,
    pub registry: Arc<Registry>,
    pub control_plane: String,
    /// Streams that may push at once (`pacing`).
    pub push_slots: PushSlots,
    /// The subscriptions every stream names, interned: streams naming the
    /// same resources share one set.
    pub name_sets: Arc<NameSets>,
}

pub struct AdsServer<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for AdsServer<S> {
    fn clone(&self) -> Self {
        AdsServer {
            shared: self.shared.clone(),
        }
    }
}

impl<S: ViewSource> AdsServer<S> {
    pub fn new(shared: Arc<Shared<S>>) -> AdsServer<S> {
        AdsServer { shared }
    }
}

impl<S> tonic::server::NamedService for AdsServer<S> {
    const NAME: &'static str = SERVICE_NAME;
}

impl<S: ViewSource, B> tonic::codegen::Service<http::Request<B>> for AdsServer<S>
where
    B: Body<Data = bytes::Bytes> + Send + 'static,
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
            SOTW_PATH => Box::pin(async move { Ok(start_stream::<SotwStream, S, B>(shared, req)) }),
            DELTA_PATH => {
                Box::pin(async move { Ok(start_stream::<DeltaStream, S, B>(shared, req)) })
            }
            _ => Box::pin(async move { Ok(Status::unimplemented("unknown method").into_http()) }),
        }
    }
}

/// Starts the stream's task and answers with the body it feeds.
fn start_stream<M: Machine, S: ViewSource, B>(
    shared: Arc<Shared<S>>,
    req: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    B: Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let peer = req.extensions().get::<Peer>().cloned().unwrap_or_default();
    let closing = req
        .extensions()
        .get::<ConnectionClosing>()
        .cloned()
        .unwrap_or_default();
    let incoming = MessageStream::new(req.into_body());
    tokio::spawn(run_stream::<M, S>(shared, incoming, tx, peer, closing));
    grpc::response(ResponseBody::new(rx))
}

/// What the stream loop needs of a protocol state machine.
pub trait Machine: Send + 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: Chunked + Send + Unpin + 'static;
    const PROTOCOL: &'static str;
    /// The protocol can carry VHDS (Envoy accepts it over delta ADS only).
    const VHDS: bool;
    fn create(snapshot: Arc<Snapshot>, control_plane: String, name_sets: Arc<NameSets>) -> Self;
    fn node(req: &Self::Request) -> Option<&Node>;
    fn request(
        &mut self,
        req: &Self::Request,
    ) -> Result<(Vec<Self::Response>, Vec<Event>), ProtocolError>;
    fn snapshot(&mut self, snapshot: Arc<Snapshot>) -> (Vec<Self::Response>, Vec<Event>);
    fn describe(resp: &Self::Response) -> (ResourceType, String);
    /// Every response ACKed, none rejected.
    fn in_sync(&self) -> bool;
    /// The snapshot the machine is on.
    fn current(&self) -> &Arc<Snapshot>;
    /// What the client holds of each type (debug views).
    fn holdings(&self) -> [TypeHolding; ResourceType::COUNT];
}

impl Machine for SotwStream {
    type Request = SotwRequest;
    type Response = WireDiscoveryResponse;
    const PROTOCOL: &'static str = "sotw";
    const VHDS: bool = false;
    fn create(snapshot: Arc<Snapshot>, control_plane: String, name_sets: Arc<NameSets>) -> Self {
        SotwStream::new(snapshot, control_plane, name_sets)
    }
    fn node(req: &SotwRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn request(
        &mut self,
        req: &SotwRequest,
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
    fn in_sync(&self) -> bool {
        SotwStream::in_sync(self)
    }
    fn current(&self) -> &Arc<Snapshot> {
        SotwStream::snapshot(self)
    }
    fn holdings(&self) -> [TypeHolding; ResourceType::COUNT] {
        SotwStream::holdings(self)
    }
}

impl Machine for DeltaStream {
    type Request = DeltaRequest;
    type Response = WireDeltaDiscoveryResponse;
    const PROTOCOL: &'static str = "delta";
    const VHDS: bool = true;
    fn create(snapshot: Arc<Snapshot>, control_plane: String, name_sets: Arc<NameSets>) -> Self {
        DeltaStream::new(snapshot, control_plane, name_sets)
    }
    fn node(req: &DeltaRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn request(
        &mut self,
        req: &DeltaRequest,
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
    fn in_sync(&self) -> bool {
        DeltaStream::in_sync(self)
    }
    fn current(&self) -> &Arc<Snapshot> {
        DeltaStream::snapshot(self)
    }
    fn holdings(&self) -> [TypeHolding; ResourceType::COUNT] {
        DeltaStream::holdings(self)
    }
}

async fn run_stream<M: Machine, S: ViewSource>(
    shared: Arc<Shared<S>>,
    mut incoming: MessageStream<M::Request>,
    tx: mpsc::Sender<Result<M::Response, Status>>,
    peer: Peer,
    closing: ConnectionClosing,
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
    let view = match shared.views.view_of(&node, M::VHDS, &peer).await {
        Ok(v) => v,
        Err(e) => {
            let _ = tx.send(Err(Status::invalid_argument(e.to_string()))).await;
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
        let connected = Instant::now();
        let proxy = ProxyLabels {
            r#type: shared.views.proxy_type(&view),
            version: metadata_string(&node, "ISTIO_VERSION")
                .or_else(|| Some(proxy_version(&node)).filter(|v| !v.is_empty()))
                .unwrap_or_else(|| "unknown".to_string()),
        };
        shared.metrics.stream(M::PROTOCOL, &proxy, true);
        let mut machine = M::create(
            snapshot.clone(),
            shared.control_plane.clone(),
            shared.name_sets.clone(),
        );
        shared.registry.streams.insert(
            id,
            StreamEntry {
                status: ProxyStatus {
                    stream: id,
                    node_id: node.id.clone(),
                    proxy_version: proxy_version(&node),
                    istio_version: metadata_string(&node, "ISTIO_VERSION"),
                    cluster_id: metadata_string(&node, "CLUSTER_ID"),
                    view: view.to_string(),
                    protocol: M::PROTOCOL,
                    snapshot_version: snapshot.version(),
                    acked: Default::default(),
                    sent: Default::default(),
                    last_nack: None,
                },
                current: snapshot,
                synced: None,
                holdings: machine.holdings(),
                sent_at: Default::default(),
                errors: Default::default(),
            },
        );
        shared.registry.bump();
        let mut slot = StreamSlot::default();
        slot.before_push(&shared.push_slots).await;
        let mut result = machine.request(&first);
        // When the change or request being answered reached the stream.
        let mut started = connected;
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
            if !send::<M, S>(&shared, id, &tx, responses, started).await {
                break;
            }
            if track(&shared.registry, id, &machine) {
                // The first sync converges on everything since connecting.
                let since = match machine.current().changed_at() {
                    Some(at) if at > connected => at,
                    _ => connected,
                };
                shared.metrics.converged(since.elapsed());
            }
            if machine.in_sync() {
                slot.caught_up();
            }
            result = tokio::select! {
                msg = incoming.message() => match msg {
                    Ok(Some(req)) => {
                        started = Instant::now();
                        machine.request(&req)
                    }
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
                    // Newer snapshots arriving while it waits replace this one.
                    started = Instant::now();
                    slot.before_push(&shared.push_slots).await;
                    let latest = rx.borrow_and_update().clone();
                    match latest {
                        Some(s) => {
                            if let Some(mut st) = shared.registry.streams.get_mut(&id) {
                                st.status.snapshot_version = s.version();
                                st.current = s.clone();
                            }
                            // The proxy now receives the snapshot's policies:
                            // their rollouts wait on it.
                            shared.registry.bump();
                            Ok(machine.snapshot(s))
                        }
                        None => Ok((Vec::new(), Vec::new())),
                    }
                }
                why = closing.closed() => {
                    // The proxy keeps what it has and reconnects, maybe to
                    // another replica, saying what it holds (rule 14).
                    let message = match why {
                        Closing::MaxAge => "the connection reached its maximum age; reconnect",
                        Closing::Shutdown => "the server is shutting down; reconnect",
                    };
                    debug!(reason = message, "ending the stream");
                    let _ = tx.send(Err(Status::unavailable(message))).await;
                    break;
                }
            };
        }
        shared.registry.streams.remove(&id);
        shared.registry.bump();
        shared.metrics.stream(M::PROTOCOL, &proxy, false);
        info!("disconnected");
    }
    .instrument(span)
    .await
}

/// Records what the machine knows the proxy holds after a step, and the
/// snapshot the proxy has now fully applied, if it has; true when that is a
/// snapshot it had not applied before.
fn track<M: Machine>(registry: &Registry, id: u64, machine: &M) -> bool {
    let in_sync = machine.in_sync();
    let current = machine.current();
    let changed = match registry.streams.get_mut(&id) {
        Some(mut e) => {
            e.holdings = machine.holdings();
            let same = e.synced.as_ref().is_some_and(|s| Arc::ptr_eq(s, current));
            if in_sync && !same {
                e.synced = Some(current.clone());
            }
            in_sync && !same
        }
        None => false,
    };
    if changed {
        registry.bump();
    }
    changed
}

/// The proxy's build as it reports it: Envoy's `user_agent_build_version`
/// (`1.40.0`, `-LABEL` when it has one), else the user agent's name and
/// version string (gRPC clients).
fn proxy_version(node: &Node) -> String {
    use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
    match &node.user_agent_version_type {
        Some(UserAgentVersionType::UserAgentBuildVersion(build)) => {
            let mut out = match &build.version {
                Some(v) => format!("{}.{}.{}", v.major_number, v.minor_number, v.patch),
                None => String::new(),
            };
            let label = build
                .metadata
                .as_ref()
                .and_then(|m| m.fields.get("build.label"))
                .and_then(|v| match &v.kind {
                    Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(s)) => {
                        Some(s.as_str())
                    }
                    _ => None,
                });
            if let Some(label) = label {
                out.push('-');
                out.push_str(label);
            }
            out
        }
        Some(UserAgentVersionType::UserAgentVersion(version))
            if !node.user_agent_name.is_empty() =>
        {
            format!("{}/{version}", node.user_agent_name)
        }
        Some(UserAgentVersionType::UserAgentVersion(version)) => version.clone(),
        None => String::new(),
    }
}

/// A string value of the node's metadata.
fn metadata_string(node: &Node, key: &str) -> Option<String> {
    match node.metadata.as_ref()?.fields.get(key)?.kind.as_ref()? {
        envoy_types::pb::google::protobuf::value::Kind::StringValue(s) if !s.is_empty() => {
            Some(s.clone())
        }
        _ => None,
    }
}

async fn send<M: Machine, S>(
    shared: &Shared<S>,
    id: u64,
    tx: &mpsc::Sender<Result<M::Response, Status>>,
    responses: Vec<M::Response>,
    started: Instant,
) -> bool {
    for resp in responses {
        let (ty, version) = M::describe(&resp);
        let bytes = resp.encoded_len();
        if let Some(mut st) = shared.registry.streams.get_mut(&id) {
            st.status.sent.insert(ty.short(), version.clone());
            st.sent_at[ty.index()] = Some(SystemTime::now());
        }
        debug!(type = %ty, %version, "push");
        if tx.send(Ok(resp)).await.is_err() {
            return false;
        }
        shared.metrics.pushed(ty, bytes, started.elapsed());
    }
    true
}

fn record<S>(shared: &Shared<S>, id: u64, events: &[Event]) {
    for event in events {
        match event {
            Event::Ack { ty, version } => {
                shared.metrics.acked(*ty);
                if let Some(mut st) = shared.registry.streams.get_mut(&id) {
                    st.status.acked.insert(ty.short(), version.clone());
                    st.errors[ty.index()] = None;
                }
            }
            Event::Held { ty, version } => {
                debug!(type = %ty, %version, "proxy holds the current version");
                if let Some(mut st) = shared.registry.streams.get_mut(&id) {
                    st.status.sent.insert(ty.short(), version.clone());
                    st.status.acked.insert(ty.short(), version.clone());
                }
            }
            Event::Nack {
                ty,
                version,
                nonce,
                message,
            } => {
                shared.metrics.rejected(*ty);
                warn!(type = %ty, last_good_version = %version, %nonce, %message, "proxy rejected configuration (NACK)");
                if let Some(mut st) = shared.registry.streams.get_mut(&id) {
                    st.status.last_nack = Some(format!("{ty}: {message}"));
                    st.errors[ty.index()] = Some(message.clone());
                }
                shared.registry.bump();
            }
        }
    }
}
