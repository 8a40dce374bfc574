//! One simulated Envoy: its own HTTP/2 connection (a tonic `Channel`) from
//! its own source address, one ADS stream, SotW or delta.
//!
//! Given several control plane replicas, it connects first to the first one
//! (where a fleet was before the Deployment scaled up), and each time it
//! reconnects to one picked at random, as a Kubernetes Service spreads new
//! connections over its endpoints. A stream the server ends (UNAVAILABLE,
//! as at its maximum connection age) is followed by a new one at once.
//!
//! It subscribes as Envoy does: CDS and LDS by wildcard; EDS to the service
//! names of the EDS clusters CDS brought; RDS to the route configurations
//! the listeners' HTTP connection managers name. Every response is ACKed at
//! once. Responses come from the control plane; what the client learns goes
//! to the shared [`Fleet`]: when it opened its stream and synced, bytes
//! received, and the instant it ACKed the first response carrying each
//! change the driver made (found by byte search, without decoding).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{node::UserAgentVersionType, Node};
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use shmesh_cache::ResourceType;
use shmesh_translate::node::OUTBOUND_LISTENER_KEY;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::ads::{self, DeltaResponse, SotwRequest, SotwResponse};
use crate::fleet::Fleet;
use crate::subs::{Item, Subs};

/// Reconnect attempts before a client gives up (each backs off, ≤ 3.2 s).
const MAX_ATTEMPTS: u32 = 20;
/// gRPC status code INVALID_ARGUMENT, sent in NACKs as Envoy does.
const INVALID_ARGUMENT: i32 = 3;

/// Which ADS flavour the fleet speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// State-of-the-world ADS.
    Sotw,
    /// Incremental (delta) ADS.
    Delta,
}

/// Settings every client shares.
pub struct Config {
    /// `http://ADDR` of the xDS port of each control plane replica.
    pub uris: Vec<String>,
    pub api: Api,
    /// `SHMESH_OUTBOUND_LISTENER` metadata: the same for every client, so
    /// clients of one namespace share one view in shmesh.
    pub listener: String,
    pub connect_timeout: Duration,
}

/// Who one client is.
pub struct Identity {
    pub idx: usize,
    pub namespace: Arc<str>,
    pub local_ip: Option<IpAddr>,
    /// A connection shared with other clients (`--streams-per-connection`);
    /// `None`: the client opens its own, as every Envoy does.
    pub shared: Option<Channel>,
}

/// How a client reaches the control plane at `uri` from `local_ip`.
pub fn endpoint(cfg: &Config, uri: &str, local_ip: Option<IpAddr>) -> anyhow::Result<Endpoint> {
    Endpoint::from_shared(uri.to_string())
        .map(|e| {
            e.local_address(local_ip)
                .connect_timeout(cfg.connect_timeout)
                .tcp_nodelay(true)
        })
        .map_err(|e| anyhow::anyhow!("endpoint {uri}: {}", chain(&e)))
}

/// Why a session ended, with the error's text.
enum Ended {
    ConnectFailed(String),
    StreamFailed(String),
    /// The server ended the stream, cleanly or with UNAVAILABLE, asking the
    /// client to reconnect (its connection reached its maximum age, or the
    /// server is stopping).
    ServerClosed,
}

/// How a stream that ended with `status` ended.
fn ended_with(status: &tonic::Status) -> Ended {
    match status.code() {
        tonic::Code::Unavailable => Ended::ServerClosed,
        _ => Ended::StreamFailed(self::status(status)),
    }
}

/// The longest pause before reconnecting after the server ended a stream:
/// at once, but not all of a replica's proxies in the same instant.
const RECONNECT_SPREAD: Duration = Duration::from_millis(100);

/// An error's message with its sources, e.g. "transport error: connection refused".
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// A gRPC status with the transport error under it, if any.
fn status(s: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", s.code(), s.message());
    if let Some(source) = std::error::Error::source(s) {
        out.push_str(": ");
        out.push_str(&chain(source));
    }
    out
}

/// Runs one client until `stop` turns true, reconnecting (bounded) after
/// failures. Failures are counted in the fleet, never returned.
pub async fn run(
    fleet: Arc<Fleet>,
    cfg: Arc<Config>,
    me: Identity,
    mut stop: watch::Receiver<bool>,
) {
    fleet.stamp(&fleet.times[me.idx].started);
    let node = node(&me, &cfg.listener);
    let mut failures = 0u32;
    // The first connection goes to the first replica, later ones anywhere.
    let mut uri = &cfg.uris[0];
    loop {
        let endpoint = match endpoint(&cfg, uri, me.local_ip) {
            Ok(e) => e,
            Err(e) => {
                fleet
                    .counters
                    .fail(&fleet.counters.connect_errors, e.to_string());
                return;
            }
        };
        let ended = tokio::select! {
            ended = session(&fleet, &cfg, &me, &endpoint, &node) => ended,
            _ = stop.changed() => return,
        };
        let c = &fleet.counters;
        let backoff = match ended {
            Ended::ServerClosed => {
                c.server_closed.fetch_add(1, Ordering::Relaxed);
                failures = 0;
                RECONNECT_SPREAD.mul_f64(fastrand::f64())
            }
            Ended::ConnectFailed(e) => {
                c.fail(&c.connect_errors, format!("connect: {e}"));
                failures += 1;
                backoff(failures, me.idx)
            }
            Ended::StreamFailed(e) => {
                c.fail(&c.stream_errors, format!("stream: {e}"));
                failures += 1;
                backoff(failures, me.idx)
            }
        };
        if *stop.borrow() || failures > MAX_ATTEMPTS {
            return;
        }
        fleet.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        uri = &cfg.uris[fastrand::usize(..cfg.uris.len())];
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The pause after the `failures`-th failure in a row: exponential, with a
/// per-client offset, so a fleet that lost its server does not come back in
/// one SYN burst.
fn backoff(failures: u32, idx: usize) -> Duration {
    Duration::from_millis(100 << failures.min(5))
        + Duration::from_micros((idx as u64 * 7919) % 100_000)
}

fn node(me: &Identity, listener: &str) -> Node {
    let s = |v: &str| Value {
        kind: Some(Kind::StringValue(v.to_string())),
    };
    Node {
        id: format!("loadgen-{}", me.idx),
        cluster: format!("loadgen.{}", me.namespace),
        // "envoy", not gRPC: a gRPC user agent would get proxyless resources.
        user_agent_name: "envoy".to_string(),
        user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion(
            "shmesh-loadgen".to_string(),
        )),
        metadata: Some(Struct {
            fields: [
                ("NAMESPACE".to_string(), s(&me.namespace)),
                (OUTBOUND_LISTENER_KEY.to_string(), s(listener)),
            ]
            .into(),
        }),
        ..Default::default()
    }
}

async fn session(
    fleet: &Fleet,
    cfg: &Config,
    me: &Identity,
    endpoint: &Endpoint,
    node: &Node,
) -> Ended {
    let channel = match &me.shared {
        // A shared channel connects on first use and reconnects by itself.
        Some(shared) => shared.clone(),
        None => match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => return Ended::ConnectFailed(chain(&e)),
        },
    };
    match cfg.api {
        Api::Sotw => sotw(fleet, me, channel, node).await,
        Api::Delta => delta(fleet, me, channel, node).await,
    }
}

/// Counts the stream as open while it lives.
struct OpenGuard<'a>(&'a Fleet);

impl<'a> OpenGuard<'a> {
    fn new(fleet: &'a Fleet, idx: usize) -> Self {
        fleet.stamp(&fleet.times[idx].open);
        fleet.counters.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(fleet)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a client holds, the same for both protocols: the subscriptions CDS
/// and LDS imply, and which types it has ACKed content of.
struct Held {
    /// Indexed by type: CDS → EDS names, LDS → RDS names; unused otherwise.
    derived: [Arc<Subs>; ResourceType::COUNT],
    /// Has ACKed a response of the type (for EDS, RDS and VHDS: one with
    /// resources).
    acked: [bool; ResourceType::COUNT],
    /// A route configuration named VHDS, so the client fetches virtual hosts.
    vhds: bool,
    synced: bool,
}

impl Held {
    fn new(fleet: &Fleet) -> Held {
        Held {
            derived: std::array::from_fn(|_| fleet.memo.empty()),
            acked: [false; ResourceType::COUNT],
            vhds: false,
            synced: false,
        }
    }

    /// The names to subscribe to for `ty` (EDS and RDS), from CDS and LDS.
    fn wanted(&self, ty: ResourceType) -> &Arc<Subs> {
        match ty {
            ResourceType::Endpoint => &self.derived[ResourceType::Cluster.index()],
            _ => &self.derived[ResourceType::Listener.index()],
        }
    }

    fn note_ack(&mut self, fleet: &Fleet, idx: usize, ty: ResourceType, resources: usize) {
        if ty.wildcard_capable() || resources > 0 {
            self.acked[ty.index()] = true;
        }
        if self.synced {
            return;
        }
        let (c, e, l, r, v) = (
            ResourceType::Cluster.index(),
            ResourceType::Endpoint.index(),
            ResourceType::Listener.index(),
            ResourceType::Route.index(),
            ResourceType::VirtualHost.index(),
        );
        self.synced = self.acked[c]
            && self.acked[l]
            && (self.derived[c].names.is_empty() || self.acked[e])
            && (self.derived[l].names.is_empty() || self.acked[r])
            && (!self.vhds || self.acked[v]);
        if self.synced && fleet.stamp(&fleet.times[idx].synced) {
            fleet.counters.synced.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The type whose subscriptions `ty`'s resources decide (CDS → EDS, LDS → RDS).
fn dependent(ty: ResourceType) -> Option<ResourceType> {
    match ty {
        ResourceType::Cluster => Some(ResourceType::Endpoint),
        ResourceType::Listener => Some(ResourceType::Route),
        _ => None,
    }
}

fn count(fleet: &Fleet, ty: ResourceType, bytes: usize, resources: usize) {
    let i = ty.index();
    fleet.counters.bytes[i].fetch_add(bytes as u64, Ordering::Relaxed);
    fleet.counters.responses[i].fetch_add(1, Ordering::Relaxed);
    fleet.counters.resources[i].fetch_add(resources as u64, Ordering::Relaxed);
}

/// Records, for every change still pending for this client, whether these
/// resources carry it; `at` is when the client ACKed them.
fn check_changes(fleet: &Fleet, me: &Identity, ty: ResourceType, items: &[Item<'_>], at: u64) {
    let changes = fleet.changes.load();
    for track in changes.iter() {
        if track.pending_for(me.idx, &me.namespace, ty)
            && items.iter().any(|i| track.marker.matches(i.body))
        {
            track.record(me.idx, at);
        }
    }
}

async fn sotw(fleet: &Fleet, me: &Identity, channel: Channel, node: &Node) -> Ended {
    let (tx, rx) = mpsc::unbounded_channel();
    for (i, ty) in [ResourceType::Cluster, ResourceType::Listener]
        .into_iter()
        .enumerate()
    {
        // An empty name list on the first request is the wildcard (rule 8).
        let _ = tx.send(
            DiscoveryRequest {
                node: (i == 0).then(|| node.clone()),
                type_url: ty.type_url().to_string(),
                ..Default::default()
            }
            .into(),
        );
    }
    let mut stream = match ads::sotw_stream(channel, UnboundedReceiverStream::new(rx)).await {
        Ok(s) => s,
        Err(e) => return Ended::StreamFailed(format!("opening: {}", status(&e))),
    };
    let _open = OpenGuard::new(fleet, me.idx);
    let mut held = Held::new(fleet);
    // Per type: the last version ACKed and the latest nonce, for requests.
    let mut version: [String; ResourceType::COUNT] = Default::default();
    let mut nonce: [String; ResourceType::COUNT] = Default::default();
    loop {
        let resp: SotwResponse = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ended::ServerClosed,
            Err(e) => return ended_with(&e),
        };
        let items: Vec<Item<'_>> = resp
            .resources
            .iter()
            .map(|a| Item {
                name: None,
                body: ads::sotw_body(a),
            })
            .collect();
        let Some(ty) = ResourceType::from_type_url(&resp.type_url) else {
            fleet.counters.nacks.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(
                DiscoveryRequest {
                    type_url: resp.type_url.clone(),
                    response_nonce: resp.nonce.clone(),
                    error_detail: Some(nack(format!("unknown type {}", resp.type_url))),
                    ..Default::default()
                }
                .into(),
            );
            continue;
        };
        let i = ty.index();
        count(fleet, ty, resp.encoded_len(), items.len());
        nonce[i] = resp.nonce.clone();
        // CDS and LDS carry the whole set: derive what to fetch next.
        let mut resubscribe = None;
        if let Some(dep) = dependent(ty) {
            match fleet.memo.apply(ty, &held.derived[i], true, &items, &[]) {
                Ok(subs) => {
                    if subs.names != held.derived[i].names {
                        resubscribe = Some(dep);
                    }
                    held.derived[i] = subs;
                }
                Err(e) => {
                    fleet.counters.nacks.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(
                        DiscoveryRequest {
                            type_url: resp.type_url.clone(),
                            version_info: version[i].clone(),
                            response_nonce: resp.nonce.clone(),
                            error_detail: Some(nack(e)),
                            ..Default::default()
                        }
                        .into(),
                    );
                    continue;
                }
            }
        }
        version[i] = resp.version_info.clone();
        // The ACK repeats the full subscription of the type (empty = wildcard).
        let names = match ty {
            ResourceType::Endpoint | ResourceType::Route => held.wanted(ty).encoded_names.clone(),
            _ => Bytes::new(),
        };
        if tx
            .send(SotwRequest {
                head: DiscoveryRequest {
                    type_url: resp.type_url.clone(),
                    version_info: resp.version_info.clone(),
                    response_nonce: resp.nonce.clone(),
                    ..Default::default()
                },
                names,
            })
            .is_err()
        {
            return Ended::ServerClosed;
        }
        let at = fleet.now_us();
        if let Some(dep) = resubscribe {
            let d = dep.index();
            let _ = tx.send(SotwRequest {
                head: DiscoveryRequest {
                    type_url: dep.type_url().to_string(),
                    version_info: version[d].clone(),
                    response_nonce: nonce[d].clone(),
                    ..Default::default()
                },
                names: held.wanted(dep).encoded_names.clone(),
            });
        }
        held.note_ack(fleet, me.idx, ty, items.len());
        check_changes(fleet, me, ty, &items, at);
    }
}

async fn delta(fleet: &Fleet, me: &Identity, channel: Channel, node: &Node) -> Ended {
    let (tx, rx) = mpsc::unbounded_channel();
    for (i, ty) in [ResourceType::Cluster, ResourceType::Listener]
        .into_iter()
        .enumerate()
    {
        // An empty first request for CDS/LDS is the wildcard (rule 8).
        let _ = tx.send(DeltaDiscoveryRequest {
            node: (i == 0).then(|| node.clone()),
            type_url: ty.type_url().to_string(),
            ..Default::default()
        });
    }
    let mut stream = match ads::delta_stream(channel, UnboundedReceiverStream::new(rx)).await {
        Ok(s) => s,
        Err(e) => return Ended::StreamFailed(format!("opening: {}", status(&e))),
    };
    let _open = OpenGuard::new(fleet, me.idx);
    let mut held = Held::new(fleet);
    loop {
        let resp: DeltaResponse = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ended::ServerClosed,
            Err(e) => return ended_with(&e),
        };
        let items: Vec<Item<'_>> = resp
            .resources
            .iter()
            .filter_map(|r| ads::delta_item(r))
            .collect();
        // The type, and for CDS/LDS the subscriptions the update implies.
        let outcome = match ResourceType::from_type_url(&resp.type_url) {
            None => Err(format!("unknown type {}", resp.type_url)),
            Some(ty) => match dependent(ty) {
                Some(_) => fleet
                    .memo
                    .apply(
                        ty,
                        &held.derived[ty.index()],
                        false,
                        &items,
                        &resp.removed_resources,
                    )
                    .map(|subs| (ty, Some(subs))),
                None => Ok((ty, None)),
            },
        };
        let (ty, derived) = match outcome {
            Ok(x) => x,
            Err(e) => {
                fleet.counters.nacks.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(DeltaDiscoveryRequest {
                    type_url: resp.type_url.clone(),
                    response_nonce: resp.nonce.clone(),
                    error_detail: Some(nack(e)),
                    ..Default::default()
                });
                continue;
            }
        };
        count(fleet, ty, resp.encoded_len(), items.len());
        fleet.counters.removed[ty.index()]
            .fetch_add(resp.removed_resources.len() as u64, Ordering::Relaxed);
        // A delta ACK is the nonce alone.
        if tx
            .send(DeltaDiscoveryRequest {
                type_url: resp.type_url.clone(),
                response_nonce: resp.nonce.clone(),
                ..Default::default()
            })
            .is_err()
        {
            return Ended::ServerClosed;
        }
        let at = fleet.now_us();
        if let (Some(subs), Some(dep)) = (derived, dependent(ty)) {
            let diff = fleet.memo.diff(&subs, &held.derived[ty.index()]);
            let (added, removed) = (diff.0.clone(), diff.1.clone());
            held.derived[ty.index()] = subs;
            if !added.is_empty() || !removed.is_empty() {
                let _ = tx.send(DeltaDiscoveryRequest {
                    type_url: dep.type_url().to_string(),
                    resource_names_subscribe: added,
                    resource_names_unsubscribe: removed,
                    ..Default::default()
                });
            }
        }
        // Envoy opens a VHDS watch for a route configuration that names
        // VHDS; its first request names nothing.
        if ty == ResourceType::Route && !held.vhds && items.iter().any(|i| names_vhds(i.body)) {
            held.vhds = true;
            let _ = tx.send(DeltaDiscoveryRequest {
                type_url: ResourceType::VirtualHost.type_url().to_string(),
                ..Default::default()
            });
        }
        held.note_ack(fleet, me.idx, ty, items.len());
        check_changes(fleet, me, ty, &items, at);
    }
}

/// Only the field of `envoy.config.route.v3.RouteConfiguration` that says
/// whether its virtual hosts come over VHDS; prost skips the rest.
#[derive(Clone, PartialEq, Message)]
struct RouteConfigHead {
    #[prost(message, optional, tag = "9")]
    vhds: Option<VhdsHead>,
}

#[derive(Clone, PartialEq, Message)]
struct VhdsHead {}

fn names_vhds(route_configuration: &[u8]) -> bool {
    RouteConfigHead::decode(route_configuration).is_ok_and(|rc| rc.vhds.is_some())
}

fn nack(message: String) -> RpcStatus {
    RpcStatus {
        code: INVALID_ARGUMENT,
        message,
        details: Vec::new(),
    }
}
