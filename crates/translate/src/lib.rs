//! Pure translation from the model to Envoy resources for one proxy view.
//!
//! Input: the `Model` and a `ProxyView` (the proxy's namespace and listener
//! mode). Output: a `Snapshot` of encoded clusters, endpoints, listeners and
//! route configurations, named as Istio names them. Proxies that share a view
//! share one snapshot. `update` rebuilds only what a `Dirty` set touched and
//! keeps every other resource (and its version) as it was.

pub mod authorization;
pub mod cluster;
pub mod endpoint;
pub mod gateway;
pub mod inbound;
pub mod istio_names;
pub mod listener;
pub mod node;
pub mod route;
mod route_patch;
pub mod telemetry;
#[cfg(test)]
mod tests;
pub mod tls;

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::google::protobuf::Any;

use shmesh_api::objects::Labels;
use shmesh_api::{policy_key, Kind};
use shmesh_cache::{
    Policies, PolicyStamp, Resource, ResourceType, ResourceWriter, Snapshot, SnapshotBuilder,
    SortedResources, VsOfHost,
};
use shmesh_model::{hosts, Dirty, MeshService, Model, Policy, Scope};

/// How a proxy receives outbound traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListenerMode {
    /// Traffic captured by iptables: `virtualOutbound` on 15001 hands
    /// connections to unbound per-port listeners (`0.0.0.0_9080`).
    Capture,
    /// No capture: one bound HTTP listener on this address routes by Host
    /// header to every service the proxy can see.
    Explicit(SocketAddr),
    /// A proxyless gRPC client: `api_listener`s named `host:port`, fetched by name.
    Proxyless,
    /// A gateway proxy (Istio's `router` node type): bound listeners for the
    /// servers of the Gateways whose selector picks it.
    Router,
}

/// Everything about a proxy that changes what it receives. Proxies with equal
/// views share one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyView {
    pub namespace: String,
    pub mode: ListenerMode,
    /// The workload's labels (node metadata `LABELS`): which services select
    /// it decides its inbound listener and clusters. Replicas of one
    /// workload carry the same labels and share a view.
    pub labels: Labels,
    /// Where the proxy's certificates come from: whether it takes part in
    /// mutual TLS (and, from shmesh's CA, as which identity).
    pub certificates: tls::Certificates,
    /// Route configurations leave their virtual hosts to VHDS (a delta ADS
    /// client, with the server's `--vhds`): a weight change then sends the
    /// one virtual host that changed instead of the port's whole table.
    pub vhds: bool,
}

impl fmt::Display for ProxyView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mode {
            ListenerMode::Capture => write!(f, "{}/capture", self.namespace)?,
            ListenerMode::Explicit(addr) => write!(f, "{}/explicit:{addr}", self.namespace)?,
            ListenerMode::Proxyless => write!(f, "{}/proxyless", self.namespace)?,
            ListenerMode::Router => write!(f, "{}/router", self.namespace)?,
        }
        for (i, (k, v)) in self.labels.iter().enumerate() {
            f.write_str(if i == 0 { "{" } else { "," })?;
            write!(f, "{k}={v}")?;
        }
        if !self.labels.is_empty() {
            f.write_str("}")?;
        }
        match &self.certificates {
            tls::Certificates::None => {}
            tls::Certificates::Agent => f.write_str("+agent")?,
            tls::Certificates::Ads { service_account } => write!(f, "+sa={service_account}")?,
        }
        if self.vhds {
            f.write_str("+vhds")?;
        }
        Ok(())
    }
}

/// Meshes with fewer services are translated on the calling thread alone.
const PARALLEL_FROM: usize = 256;

/// At most this many threads translate one view.
const MAX_THREADS: usize = 8;

/// Services a cluster worker takes at a time.
const CHUNK: usize = 64;

/// Builds every resource of a view. For a large mesh, this thread builds
/// listeners, routes and the policy record while the others build clusters
/// and their endpoints a chunk of services at a time, and joins them when it
/// is done; then the chunks' clusters and endpoints are merged into one set
/// each.
pub fn build(model: &Model, view: &ProxyView) -> Snapshot {
    let threads = if model.services().len() >= PARALLEL_FROM {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
    } else {
        1
    };
    build_on(model, view, threads)
}

fn build_on(model: &Model, view: &ProxyView, threads: usize) -> Snapshot {
    let services: Vec<&Arc<MeshService>> = visible_services(model, view).collect();
    let work = ClusterWork {
        model,
        view,
        services: &services,
        next: AtomicUsize::new(0),
    };
    let ((listeners, (routes, vhosts), policies), mut chunks) = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(|| work.run())).collect();
        let rest = (
            encode_all(listener::listeners(model, view)),
            routes(model, view),
            policies(model, view),
        );
        let mut chunks = work.run();
        chunks.extend(helpers.into_iter().flat_map(joined));
        (rest, chunks)
    });
    chunks.sort_unstable_by_key(|c| c.first);
    let (mut clusters, endpoints): (Vec<_>, Vec<_>) = chunks
        .into_iter()
        .map(|c| (c.clusters, c.endpoints))
        .unzip();
    let mut fixed = ResourceWriter::for_type(ResourceType::Cluster);
    for built in cluster::fixed_clusters(view)
        .into_iter()
        .chain(inbound::clusters(model, view))
    {
        fixed.encode(built.name, &*built.cluster);
    }
    // Proxyless clients trace by their own means, if at all.
    if view.mode != ListenerMode::Proxyless {
        if let Some((name, collector)) = telemetry::collector_cluster(model) {
            fixed.encode(name, &collector);
        }
    }
    clusters.push(fixed.finish_by_name());
    let (clusters, endpoints) = in_parallel(
        threads > 1,
        || SortedResources::merge(clusters),
        || SortedResources::merge(endpoints),
    );
    let mut b = SnapshotBuilder::default();
    b.set(ResourceType::Cluster, clusters);
    b.set(ResourceType::Endpoint, endpoints);
    b.set(ResourceType::Listener, listeners);
    b.set(ResourceType::Route, routes);
    b.set(ResourceType::VirtualHost, vhosts);
    let (policies, vs_of_host) = policies;
    b.policies(policies, vs_of_host);
    b.build()
}

/// The services' clusters and endpoints, shared out among threads.
struct ClusterWork<'a> {
    model: &'a Model,
    view: &'a ProxyView,
    services: &'a [&'a Arc<MeshService>],
    /// The first service no thread has taken yet.
    next: AtomicUsize,
}

/// The clusters and endpoints of one chunk of services, each laid out in
/// name order in a buffer of its own.
struct Chunk {
    /// Index of the chunk's first service: chunks merge in this order.
    first: usize,
    clusters: SortedResources,
    endpoints: SortedResources,
}

impl ClusterWork<'_> {
    /// Builds clusters and endpoints a chunk of services at a time until no
    /// service is left. Each is encoded as soon as it is built (the message
    /// trees of a large mesh would otherwise take hundreds of megabytes),
    /// and each chunk is laid out in name order while its bytes are fresh
    /// in the cache: merging the chunks afterwards moves no bytes.
    fn run(&self) -> Vec<Chunk> {
        let mut out = Vec::new();
        let mut assignments = endpoint::Assignments::default();
        let mut clusters = ResourceWriter::for_type(ResourceType::Cluster);
        let mut endpoints = ResourceWriter::for_type(ResourceType::Endpoint);
        loop {
            let start = self.next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= self.services.len() {
                break;
            }
            let end = (start + CHUNK).min(self.services.len());
            for svc in &self.services[start..end] {
                for built in cluster::service_clusters(self.model, self.view, svc) {
                    if built.eds {
                        let cla = assignments.encode(self.model, &built);
                        endpoints.put_body(built.name.clone(), cla);
                    }
                    clusters.encode(built.name, &*built.cluster);
                }
            }
            out.push(Chunk {
                first: start,
                clusters: clusters.take_by_name(),
                endpoints: endpoints.take_by_name(),
            });
        }
        out
    }
}

/// Runs `here` on this thread and `there` on another when `parallel`.
fn in_parallel<A, B: Send>(
    parallel: bool,
    here: impl FnOnce() -> A,
    there: impl FnOnce() -> B + Send,
) -> (A, B) {
    if !parallel {
        return (here(), there());
    }
    std::thread::scope(|scope| {
        let other = scope.spawn(there);
        (here(), joined(other))
    })
}

/// What a scoped thread returned; its panic goes on in this thread.
fn joined<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The view's route configurations and, when it uses VHDS, their virtual
/// hosts as resources of their own.
fn routes(model: &Model, view: &ProxyView) -> (SortedResources, SortedResources) {
    let configs = route::route_configs(model, view);
    if !view.vhds {
        return (encode_all(configs), SortedResources::default());
    }
    let mut shells = ResourceWriter::for_type(ResourceType::Route);
    let mut vhosts = ResourceWriter::for_type(ResourceType::VirtualHost);
    for (name, rc) in configs {
        let (shell, hosts) = route::delegate_to_vhds(rc);
        for (host, vh) in hosts {
            vhosts.encode(host, &vh);
        }
        shells.encode(name, &shell);
    }
    (shells.finish_by_name(), vhosts.finish_by_name())
}

/// Whether a VirtualService host pattern of `patterns` covers a service
/// with a port that is not HTTP.
fn touches_tcp(model: &Model, patterns: &std::collections::BTreeSet<String>) -> bool {
    let tcp = |svc: &MeshService| svc.ports.iter().any(|p| !p.protocol.is_http());
    patterns.iter().any(|pattern| {
        if pattern.starts_with('*') {
            model
                .services()
                .iter()
                .any(|(host, svc)| shmesh_model::hosts::matches(pattern, host) && tcp(svc))
        } else {
            model.service(pattern).is_some_and(|svc| tcp(svc))
        }
    })
}

/// Rebuilds the parts of `prev` that `dirty` touched.
pub fn update(model: &Model, view: &ProxyView, prev: &Snapshot, dirty: &Dirty) -> Snapshot {
    // DNS clusters carry their endpoints inline: an endpoint change rebuilds
    // the cluster. So do the clusters of a proxy with certificates: they
    // verify the identities of the endpoints.
    let (inline, eds): (Vec<String>, Vec<String>) =
        dirty.endpoints.iter().cloned().partition(|h| {
            view.certificates.any()
                || model
                    .service(h)
                    .is_some_and(|s| s.resolution != shmesh_model::Resolution::Static)
        });
    let mut config = dirty.config.clone();
    config.extend(inline);
    // Scope and security reach every resource kind of a view. A gateway's
    // listeners and routes follow Gateways and VirtualServices as a whole.
    let gateway_touched = view.mode == ListenerMode::Router
        && (dirty.gateways
            || dirty.routes
            || !dirty.vs_hosts.is_empty()
            || !dirty.config.is_empty());
    if dirty.scope || dirty.security || gateway_touched {
        return build(model, view);
    }
    let dirty = &Dirty {
        config,
        endpoints: eds.into_iter().collect(),
        routes: dirty.routes,
        vs_hosts: dirty.vs_hosts.clone(),
        scope: false,
        security: false,
        authorization: dirty.authorization,
        secrets: Default::default(),
        gateways: false,
    };
    let mut b = prev.builder();
    if !dirty.config.is_empty() {
        let hosts: Vec<&str> = dirty.config.iter().map(String::as_str).collect();
        let fresh = cluster::clusters(model, view, &hosts);
        let stale =
            |name: &str| istio_names::cluster_host(name).is_some_and(|h| dirty.config.contains(h));
        let removed_clusters: Vec<String> = prev
            .get(ResourceType::Cluster)
            .names()
            .filter(|n| stale(n))
            .filter(|n| !fresh.iter().any(|c| c.name == *n))
            .map(String::from)
            .collect();
        let removed_cla: Vec<String> = prev
            .get(ResourceType::Endpoint)
            .names()
            .filter(|n| stale(n))
            .filter(|n| !fresh.iter().any(|c| c.name == *n))
            .map(String::from)
            .collect();
        b.patch(
            ResourceType::Endpoint,
            endpoint::assignments(model, &fresh),
            removed_cla,
        );
        b.patch(
            ResourceType::Cluster,
            encode_each(fresh.into_iter().map(|c| (c.name.clone(), *c.cluster))),
            removed_clusters,
        );
    }
    // Services in the workload's namespace decide its inbound half; a
    // named target port follows its endpoints. Authorization policies
    // shape its chains (and the clusters that fetch JWT keys).
    let inbound_dirty = view.mode == ListenerMode::Capture
        && (dirty.authorization
            || !view.labels.is_empty()
                && dirty
                    .config
                    .iter()
                    .chain(dirty.endpoints.iter())
                    .any(|h| in_namespace(model, h, &view.namespace)));
    if inbound_dirty {
        let fresh = inbound::clusters(model, view);
        let removed: Vec<String> = prev
            .get(ResourceType::Cluster)
            .names()
            .filter(|n| n.starts_with("inbound|") || n.starts_with("jwks|"))
            .filter(|n| !fresh.iter().any(|c| c.name == *n))
            .map(String::from)
            .collect();
        b.patch(
            ResourceType::Cluster,
            encode_each(fresh.into_iter().map(|c| (c.name, *c.cluster))),
            removed,
        );
    }
    // A VirtualService's `tcp[]` rules live in the listeners of its hosts'
    // TCP ports: only those hosts' changes rebuild listeners.
    let tcp_rules_dirty = view.mode == ListenerMode::Capture && touches_tcp(model, &dirty.vs_hosts);
    if !dirty.config.is_empty() || inbound_dirty || tcp_rules_dirty {
        b.set(
            ResourceType::Listener,
            encode_all(listener::listeners(model, view)),
        );
    }
    let endpoint_only: Vec<&str> = dirty.endpoints.iter().map(String::as_str).collect();
    if !endpoint_only.is_empty() {
        let clusters = cluster::clusters(model, view, &endpoint_only);
        b.patch(
            ResourceType::Endpoint,
            endpoint::assignments(model, &clusters),
            Vec::new(),
        );
    }
    if dirty.routes || !dirty.config.is_empty() || !dirty.vs_hosts.is_empty() {
        // Only VirtualServices changed: their hosts' virtual hosts are enough.
        let patched = (!dirty.routes && dirty.config.is_empty())
            .then(|| route_patch::changed_routes(model, view, prev, &dirty.vs_hosts))
            .flatten();
        match patched {
            Some((configs, vhosts)) => {
                b.patch(ResourceType::Route, configs, Vec::new());
                b.patch(ResourceType::VirtualHost, vhosts, Vec::new());
                let (policies, vs_of_host) = repatched_policies(model, view, prev, &dirty.vs_hosts);
                b.policies(policies, vs_of_host);
            }
            None => {
                let (routes, vhosts) = routes(model, view);
                b.set(ResourceType::Route, routes);
                b.set(ResourceType::VirtualHost, vhosts);
                let (policies, vs_of_host) = policies(model, view);
                b.policies(policies, vs_of_host);
            }
        }
    }
    b.build()
}

/// Whether `host` is (or was, before the change removed it) a service of
/// `namespace`. A removed service is not in the model: its host name tells.
fn in_namespace(model: &Model, host: &str, namespace: &str) -> bool {
    match model.service(host) {
        Some(svc) => svc.namespace == namespace,
        None => true,
    }
}

/// Services a view sees: exported to its namespace and within the egress scope
/// of its namespace's Sidecar.
pub fn visible_services<'a>(
    model: &'a Model,
    view: &ProxyView,
) -> impl Iterator<Item = &'a Arc<MeshService>> {
    let scope = model.egress_scope(&view.namespace, &view.labels);
    let namespace = view.namespace.clone();
    model
        .services()
        .values()
        .filter(move |s| sees(s, &namespace, &scope))
}

/// Whether a proxy in `namespace`, whose Sidecar allows `scope`, sees `svc`.
fn sees(svc: &MeshService, namespace: &str, scope: &Scope) -> bool {
    svc.visible_to(namespace) && scope.allows(&svc.namespace, &svc.hostname)
}

/// The VirtualServices and DestinationRules that shape what the view receives:
/// those that apply to a service it sees; and the VirtualService each of
/// those services resolved to.
pub fn policies(model: &Model, view: &ProxyView) -> (Policies, VsOfHost) {
    // Collected, then sorted once: a map built key by key would compare
    // thousands of keys that share their first twenty bytes.
    let mut out = Vec::new();
    let mut vs_of_host = VsOfHost::new();
    // A gateway routes by the VirtualServices bound to its Gateways (below),
    // not by those of the mesh.
    let mesh_routes = view.mode != ListenerMode::Router;
    for svc in visible_services(model, view) {
        let vs = mesh_routes
            .then(|| model.virtual_service(&svc.hostname, &view.namespace))
            .flatten();
        if let Some(vs) = vs {
            let (key, stamp) = policy_entry(Kind::VirtualService, vs);
            vs_of_host.insert(svc.hostname.clone(), key.clone());
            out.push((key, stamp));
        }
        if let Some(dr) = model.destination_rule(&svc.hostname, &view.namespace, &view.labels) {
            out.push(policy_entry(Kind::DestinationRule, dr));
        }
    }
    if view.mode == ListenerMode::Router {
        // A gateway applies its Gateways and the VirtualServices bound to them.
        for gw in model.gateways_for(&view.namespace, &view.labels) {
            let namespace = gw.metadata.namespace.as_deref().unwrap_or("default");
            let key = policy_key(Kind::Gateway, namespace, &gw.metadata.name).into();
            let stamp = PolicyStamp {
                generation: gw.metadata.generation,
                version: shmesh_model::spec_version(&gw.spec).into(),
            };
            out.push((key, stamp));
            for vs in model.virtual_services_for_gateway(namespace, &gw.metadata.name) {
                out.push(policy_entry(Kind::VirtualService, vs));
            }
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    (out.into_iter().collect(), vs_of_host)
}

/// `policies` after only VirtualServices changed, those covering
/// `patterns`: the services they match are resolved again, and everything
/// else is as `prev` recorded it. A service whose VirtualService may have
/// changed is matched by a pattern of the VirtualService before or after
/// the change, so no other service's choice can have moved, and a
/// VirtualService still chosen by an untouched service did not change.
fn repatched_policies(
    model: &Model,
    view: &ProxyView,
    prev: &Snapshot,
    patterns: &BTreeSet<String>,
) -> (Policies, VsOfHost) {
    let mut vs_of_host = (**prev.vs_of_host()).clone();
    let mut fresh = Policies::new();
    let mesh_routes = view.mode != ListenerMode::Router;
    for svc in visible_matching(model, view, patterns)
        .into_iter()
        .filter(|_| mesh_routes)
    {
        match model.virtual_service(&svc.hostname, &view.namespace) {
            Some(vs) => {
                let (key, stamp) = policy_entry(Kind::VirtualService, vs);
                vs_of_host.insert(svc.hostname.clone(), key.clone());
                fresh.insert(key, stamp);
            }
            None => {
                vs_of_host.remove(&svc.hostname);
            }
        }
    }
    let chosen: HashSet<&str> = vs_of_host.values().map(|k| &**k).collect();
    let vs_prefix = shmesh_model::text::concat(&[Kind::VirtualService.as_str(), "/"]);
    let kept = prev.policies().iter().filter(|&(key, _)| {
        let key: &str = key;
        !key.starts_with(&vs_prefix) || (chosen.contains(key) && !fresh.contains_key(key))
    });
    let mut out: Policies = kept.map(|(k, v)| (k.clone(), v.clone())).collect();
    out.extend(fresh);
    (out, vs_of_host)
}

/// The services the view sees whose host one of `patterns` matches.
fn visible_matching<'a>(
    model: &'a Model,
    view: &ProxyView,
    patterns: &BTreeSet<String>,
) -> Vec<&'a Arc<MeshService>> {
    if patterns.iter().any(|p| p.starts_with('*')) {
        let matched =
            |svc: &&Arc<MeshService>| patterns.iter().any(|p| hosts::matches(p, &svc.hostname));
        visible_services(model, view).filter(matched).collect()
    } else {
        // Exact hosts: looked up, not searched for.
        let scope = model.egress_scope(&view.namespace, &view.labels);
        patterns
            .iter()
            .filter_map(|p| model.service(p))
            .filter(|svc| sees(svc, &view.namespace, &scope))
            .collect()
    }
}

/// A policy under its key, with the version of it the view applies.
fn policy_entry<T>(kind: Kind, policy: &Policy<T>) -> (Arc<str>, PolicyStamp) {
    let key = policy_key(kind, &policy.namespace, &policy.name).into();
    let stamp = PolicyStamp {
        generation: policy.generation,
        version: policy.version.as_str().into(),
    };
    (key, stamp)
}

/// Encodes a whole type set into one buffer, laid out in name order.
fn encode_all<M: prost::Message + prost::Name>(
    items: impl IntoIterator<Item = (String, M)>,
) -> SortedResources {
    written(items).finish_by_name()
}

/// Encodes the resources a change touched (together, in one buffer).
fn encode_each<M: prost::Message + prost::Name>(
    items: impl IntoIterator<Item = (String, M)>,
) -> Vec<Arc<Resource>> {
    written(items).finish()
}

fn written<M: prost::Message + prost::Name>(
    items: impl IntoIterator<Item = (String, M)>,
) -> ResourceWriter {
    let mut w = ResourceWriter::new(M::type_url());
    for (name, msg) in items {
        w.encode(name, &msg);
    }
    w
}

/// Packs a message into `Any` (for typed configs inside resources).
pub fn any<M: prost::Message + prost::Name>(msg: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: msg.encode_to_vec(),
    }
}

/// A config source that says "over the same ADS stream".
pub fn ads() -> core::ConfigSource {
    core::ConfigSource {
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            core::AggregatedConfigSource {},
        )),
        resource_api_version: core::ApiVersion::V3 as i32,
        ..Default::default()
    }
}

pub fn socket_address(address: &str, port: u16) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(socket(address, port))),
    }
}

pub fn socket(address: &str, port: u16) -> core::SocketAddress {
    core::SocketAddress {
        address: address.to_string(),
        port_specifier: Some(core::socket_address::PortSpecifier::PortValue(port as u32)),
        ..Default::default()
    }
}

/// The protobuf Duration Envoy takes.
pub fn duration(d: std::time::Duration) -> envoy_types::pb::google::protobuf::Duration {
    envoy_types::pb::google::protobuf::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

pub fn u32_value(v: u32) -> envoy_types::pb::google::protobuf::UInt32Value {
    envoy_types::pb::google::protobuf::UInt32Value { value: v }
}
