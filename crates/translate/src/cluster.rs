//! Clusters: one `outbound|PORT||HOST` per service port, one
//! `outbound|PORT|SUBSET|HOST` per DestinationRule subset, plus Istio's fixed
//! `BlackHoleCluster` and `PassthroughCluster`. Istio's defaults apply where no
//! DestinationRule says otherwise (istio/istio `cluster_traffic_policy.go`).

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{self as c, cluster};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as uhttp;
use envoy_types::pb::envoy::r#type::v3::Percent;

use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::google::protobuf::{value, Struct, Value};

use super::{ads, any, duration, istio_names, tls, u32_value, ProxyView};
use shmesh_api::duration as dur;
use shmesh_api::objects::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, Labels, LoadBalancerSettings,
    OutlierDetection, TrafficPolicy,
};
use shmesh_model::{Endpoint, MeshService, Model, Protocol, Resolution, ServicePort};

/// Istio's mesh-wide default `connectTimeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Istio's default ring size for consistent hashing.
const DEFAULT_RING_SIZE: u64 = 1024;
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// A cluster with what the endpoint builder needs to know about it.
#[derive(Debug, Clone)]
pub struct BuiltCluster {
    pub name: String,
    pub cluster: Box<c::Cluster>,
    pub host: String,
    pub port: u16,
    /// Labels an endpoint must carry to belong to this (subset) cluster.
    pub subset: Option<Labels>,
    /// Endpoints come by EDS (otherwise they are inline or none).
    pub eds: bool,
}

/// The traffic policy in force for one cluster: DestinationRule level, then
/// subset level, then port level, each replacing whole settings as Istio merges them.
#[derive(Debug, Default, Clone)]
struct Effective {
    lb: Option<LoadBalancerSettings>,
    pool: Option<ConnectionPoolSettings>,
    outlier: Option<OutlierDetection>,
    tls: Option<ClientTlsSettings>,
}

impl Effective {
    fn layer(&mut self, tp: &TrafficPolicy, port: u16) {
        if tp.tls.is_some() {
            self.tls = tp.tls.as_deref().cloned();
        }
        if tp.load_balancer.is_some() {
            self.lb = tp.load_balancer.clone();
        }
        if tp.connection_pool.is_some() {
            self.pool = tp.connection_pool.clone();
        }
        if tp.outlier_detection.is_some() {
            self.outlier = tp.outlier_detection.clone();
        }
        let port_level = tp
            .port_level_settings
            .iter()
            .find(|p| p.port.as_ref().and_then(|p| p.number) == Some(port as i64));
        if let Some(pl) = port_level {
            if pl.load_balancer.is_some() {
                self.lb = pl.load_balancer.clone();
            }
            if pl.connection_pool.is_some() {
                self.pool = pl.connection_pool.clone();
            }
            if pl.outlier_detection.is_some() {
                self.outlier = pl.outlier_detection.clone();
            }
            if pl.tls.is_some() {
                self.tls = pl.tls.as_deref().cloned();
            }
        }
    }
}

/// The clusters of those of `hosts` the view sees (a full translation takes
/// every visible service's `service_clusters` and the `fixed_clusters`).
pub fn clusters(model: &Model, view: &ProxyView, hosts: &[&str]) -> Vec<BuiltCluster> {
    let scope = model.egress_scope(&view.namespace, &view.labels);
    hosts
        .iter()
        .filter_map(|h| model.service(h))
        .filter(|svc| super::sees(svc, &view.namespace, &scope))
        .flat_map(|svc| service_clusters(model, view, svc))
        .collect()
}

/// The clusters of one service the view sees: one per port, one per
/// DestinationRule subset and port.
pub fn service_clusters(model: &Model, view: &ProxyView, svc: &MeshService) -> Vec<BuiltCluster> {
    let mut out = Vec::new();
    let dr = model.destination_rule(&svc.hostname, &view.namespace, &view.labels);
    let subsets = dr.map(|d| d.spec.subsets.as_slice()).unwrap_or(&[]);
    // The rule picked this proxy by its workload selector.
    let selected = dr.is_some_and(|d| d.spec.workload_selector.is_some());
    for port in &svc.ports {
        let mut base = Effective::default();
        if let Some(tp) = dr.and_then(|d| d.spec.traffic_policy.as_ref()) {
            base.layer(tp, port.number);
        }
        let endpoints = model.endpoints(&svc.hostname, port.number);
        let sans = identities(model, svc, endpoints);
        let mut built = service_cluster(svc, port, "", None, &base);
        with_inline_endpoints(&mut built, model, svc, endpoints);
        let dest = Destination {
            svc,
            port,
            sans: &sans,
            selected,
        };
        with_tls(&mut built, view, &dest, "", base.tls.as_ref());
        out.push(built);
        for subset in subsets {
            let mut eff = base.clone();
            if let Some(tp) = &subset.traffic_policy {
                eff.layer(tp, port.number);
            }
            let mut built = service_cluster(svc, port, &subset.name, Some(&subset.labels), &eff);
            with_inline_endpoints(&mut built, model, svc, endpoints);
            with_tls(&mut built, view, &dest, &subset.name, eff.tls.as_ref());
            out.push(built);
        }
    }
    if let Some(dr) = dr {
        let metadata = istio_names::config_metadata("destination-rule", &dr.namespace, &dr.name);
        for built in &mut out {
            built.cluster.metadata = Some(metadata.clone());
        }
    }
    for_view(view, &mut out);
    out
}

/// Istio's `BlackHoleCluster` and `PassthroughCluster`.
pub fn fixed_clusters(view: &ProxyView) -> Vec<BuiltCluster> {
    let mut out = vec![fixed(blackhole()), fixed(passthrough())];
    for_view(view, &mut out);
    out
}

fn for_view(view: &ProxyView, clusters: &mut [BuiltCluster]) {
    if view.mode == super::ListenerMode::Proxyless {
        for built in clusters {
            grpc_lb(&mut built.cluster);
        }
    }
}

/// gRPC clients accept only ROUND_ROBIN and RING_HASH in `lb_policy`: like
/// Istio's gRPC generator, keep consistent hashing (Maglev becomes a ring) and
/// round-robin everything else.
fn grpc_lb(cl: &mut c::Cluster) {
    let hashing = cl.lb_policy == cluster::LbPolicy::RingHash as i32
        || cl.lb_policy == cluster::LbPolicy::Maglev as i32;
    if hashing {
        if cl.lb_policy == cluster::LbPolicy::Maglev as i32 {
            cl.lb_policy = cluster::LbPolicy::RingHash as i32;
            cl.lb_config = None;
        }
    } else if cl.lb_policy != cluster::LbPolicy::ClusterProvided as i32 {
        cl.lb_policy = cluster::LbPolicy::RoundRobin as i32;
        cl.lb_config = None;
    }
}

fn fixed(cluster: c::Cluster) -> BuiltCluster {
    BuiltCluster {
        name: cluster.name.clone(),
        cluster: Box::new(cluster),
        host: String::new(),
        port: 0,
        subset: None,
        eds: false,
    }
}

fn service_cluster(
    svc: &MeshService,
    port: &ServicePort,
    subset: &str,
    subset_labels: Option<&Labels>,
    policy: &Effective,
) -> BuiltCluster {
    let name = istio_names::outbound_cluster(port.number, subset, &svc.hostname);
    let mut cl = c::Cluster {
        name: name.clone(),
        alt_stat_name: shmesh_model::text::concat(&[&name, ";"]),
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        lb_policy: cluster::LbPolicy::LeastRequest as i32,
        circuit_breakers: Some(default_circuit_breakers()),
        common_lb_config: Some(cluster::CommonLbConfig::default()),
        ..Default::default()
    };
    let mut eds = false;
    match svc.resolution {
        Resolution::Static => {
            eds = true;
            cl.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            ));
            cl.eds_cluster_config = Some(cluster::EdsClusterConfig {
                eds_config: Some(ads()),
                service_name: name.clone(),
            });
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            let ty = if svc.resolution == Resolution::Dns {
                cluster::DiscoveryType::StrictDns
            } else {
                cluster::DiscoveryType::LogicalDns
            };
            cl.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(ty as i32));
            cl.dns_lookup_family = cluster::DnsLookupFamily::V4Preferred as i32;
        }
        Resolution::Passthrough => {
            cl.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::OriginalDst as i32,
            ));
            cl.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
        }
    }
    let mut http = HttpOptions {
        http2: port.protocol.is_http2(),
        ..Default::default()
    };
    apply_policy(&mut cl, &mut http, policy);
    if port.protocol.is_http() && port.protocol != Protocol::Unknown || http.http2 {
        cl.typed_extension_protocol_options
            .insert(HTTP_PROTOCOL_OPTIONS.to_string(), any(&http.build()));
    }
    BuiltCluster {
        name,
        cluster: Box::new(cl),
        host: svc.hostname.clone(),
        port: port.number,
        subset: subset_labels.cloned(),
        eds,
    }
}

/// The SPIFFE identities of a service's workloads: what a caller accepts
/// from the other end of mutual TLS. Sorted, so equal inputs encode alike.
fn identities(model: &Model, svc: &MeshService, endpoints: &[Endpoint]) -> Vec<String> {
    let mut out: Vec<String> = endpoints
        .iter()
        .filter_map(|ep| ep.service_account.as_deref())
        .map(|sa| tls::spiffe_id(model.trust_domain(), &svc.namespace, sa))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// How the cluster reaches its endpoints: as the DestinationRule's `tls`
/// says, else with Istio's auto mTLS: mutual TLS to the endpoints whose
/// metadata says they take it (`tlsMode: istio`), plaintext to the rest.
/// A proxy without certificates speaks plaintext (and ISTIO_MUTUAL
/// destinations refuse it).
/// A service port as its clusters' TLS sees it.
struct Destination<'a> {
    svc: &'a MeshService,
    port: &'a ServicePort,
    /// The SPIFFE identities of its workloads.
    sans: &'a [String],
    /// The DestinationRule picked the proxy by its workload selector.
    selected: bool,
}

fn with_tls(
    built: &mut BuiltCluster,
    view: &ProxyView,
    dest: &Destination,
    subset: &str,
    settings: Option<&ClientTlsSettings>,
) {
    let Destination {
        svc,
        port,
        sans,
        selected,
    } = *dest;
    if view.mode == super::ListenerMode::Proxyless {
        return;
    }
    let cl = &mut built.cluster;
    let istio = || {
        let mut alpn = tls::ISTIO_ALPN.to_vec();
        if port.protocol.is_http() {
            alpn.push(if port.protocol.is_http2() {
                "istio-h2"
            } else {
                "istio-http/1.1"
            });
        }
        let sni = tls::istio_sni(port.number, subset, &svc.hostname);
        tls::upstream_istio_mutual(&view.certificates, sni, sans, &alpn)
    };
    match settings.map(ClientTlsSettings::mode) {
        Some(ClientTlsMode::Disable) => {}
        Some(ClientTlsMode::IstioMutual) => cl.transport_socket = istio(),
        Some(ClientTlsMode::Simple | ClientTlsMode::Mutual) => {
            let settings = settings.expect("a mode comes from settings");
            cl.transport_socket = Some(match &settings.credential_name {
                // A sidecar reads `credentialName` only from a rule that
                // selects it; otherwise the files apply, as in Istio.
                Some(credential) if selected => {
                    tls::upstream_credential(settings, credential, &svc.hostname)
                }
                _ => tls::upstream_files(settings, &svc.hostname),
            });
        }
        None => {
            if let Some(mutual) = istio() {
                cl.transport_socket_matches = vec![
                    cluster::TransportSocketMatch {
                        name: "tlsMode-istio".to_string(),
                        r#match: Some(Struct {
                            fields: [(
                                "tlsMode".to_string(),
                                Value {
                                    kind: Some(value::Kind::StringValue("istio".to_string())),
                                },
                            )]
                            .into(),
                        }),
                        transport_socket: Some(mutual),
                    },
                    cluster::TransportSocketMatch {
                        name: "tlsMode-disabled".to_string(),
                        r#match: Some(Struct::default()),
                        transport_socket: Some(core::TransportSocket {
                            name: "envoy.transport_sockets.raw_buffer".to_string(),
                            config_type: Some(core::transport_socket::ConfigType::TypedConfig(
                                any(&RawBuffer::default()),
                            )),
                        }),
                    },
                ];
            }
        }
    }
}

/// Inline endpoints for DNS clusters (EDS clusters get theirs by EDS).
fn with_inline_endpoints(
    built: &mut BuiltCluster,
    model: &Model,
    svc: &MeshService,
    endpoints: &[Endpoint],
) {
    let namespace = svc.namespace.as_str();
    if built.eds || built.cluster.lb_policy == cluster::LbPolicy::ClusterProvided as i32 {
        return;
    }
    let selected = super::endpoint::select(endpoints, built.subset.as_ref());
    built.cluster.load_assignment =
        Some(super::endpoint::assignment(&built.name, &selected, |ep| {
            super::endpoint::istio_tls(model, namespace, ep)
        }));
}

#[derive(Debug, Default)]
struct HttpOptions {
    http2: bool,
    max_requests_per_connection: Option<u32>,
    idle_timeout: Option<Duration>,
    max_connection_duration: Option<Duration>,
    max_concurrent_streams: Option<u32>,
}

impl HttpOptions {
    fn build(&self) -> uhttp::HttpProtocolOptions {
        use uhttp::http_protocol_options::explicit_http_config::ProtocolConfig;
        let protocol = if self.http2 {
            ProtocolConfig::Http2ProtocolOptions(core::Http2ProtocolOptions {
                max_concurrent_streams: self.max_concurrent_streams.map(u32_value),
                ..Default::default()
            })
        } else {
            ProtocolConfig::HttpProtocolOptions(core::Http1ProtocolOptions::default())
        };
        let common = core::HttpProtocolOptions {
            idle_timeout: self.idle_timeout.map(duration),
            max_connection_duration: self.max_connection_duration.map(duration),
            max_requests_per_connection: self.max_requests_per_connection.map(u32_value),
            ..Default::default()
        };
        uhttp::HttpProtocolOptions {
            common_http_protocol_options: (common != core::HttpProtocolOptions::default())
                .then_some(common),
            upstream_protocol_options: Some(
                uhttp::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                    uhttp::http_protocol_options::ExplicitHttpConfig {
                        protocol_config: Some(protocol),
                    },
                ),
            ),
            ..Default::default()
        }
    }
}

/// Istio leaves circuit breakers effectively unlimited unless told otherwise.
pub(crate) fn default_circuit_breakers() -> c::CircuitBreakers {
    c::CircuitBreakers {
        thresholds: vec![c::circuit_breakers::Thresholds {
            max_connections: Some(u32_value(u32::MAX)),
            max_pending_requests: Some(u32_value(u32::MAX)),
            max_requests: Some(u32_value(u32::MAX)),
            max_retries: Some(u32_value(u32::MAX)),
            track_remaining: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn clamp_u32(v: i64) -> u32 {
    v.clamp(0, u32::MAX as i64) as u32
}

fn apply_policy(cl: &mut c::Cluster, http: &mut HttpOptions, policy: &Effective) {
    if let Some(lb) = &policy.lb {
        apply_lb(cl, lb);
    }
    if let Some(pool) = &policy.pool {
        let th = &mut cl
            .circuit_breakers
            .get_or_insert_with(default_circuit_breakers)
            .thresholds[0];
        if let Some(tcp) = &pool.tcp {
            if let Some(n) = tcp.max_connections {
                th.max_connections = Some(u32_value(clamp_u32(n)));
            }
            if let Some(d) = tcp
                .connect_timeout
                .as_deref()
                .and_then(|d| dur::parse(d).ok())
            {
                cl.connect_timeout = Some(duration(d));
            }
            http.max_connection_duration = tcp
                .max_connection_duration
                .as_deref()
                .and_then(|d| dur::parse(d).ok());
        }
        if let Some(h) = &pool.http {
            if let Some(n) = h.http1_max_pending_requests {
                th.max_pending_requests = Some(u32_value(clamp_u32(n)));
            }
            if let Some(n) = h.http2_max_requests {
                th.max_requests = Some(u32_value(clamp_u32(n)));
            }
            if let Some(n) = h.max_retries {
                th.max_retries = Some(u32_value(clamp_u32(n)));
            }
            http.max_requests_per_connection = h
                .max_requests_per_connection
                .filter(|n| *n > 0)
                .map(clamp_u32);
            http.idle_timeout = h.idle_timeout.as_deref().and_then(|d| dur::parse(d).ok());
            http.max_concurrent_streams =
                h.max_concurrent_streams.filter(|n| *n > 0).map(clamp_u32);
            if h.h2_upgrade_policy.as_deref() == Some("UPGRADE") {
                http.http2 = true;
            }
        }
    }
    if let Some(o) = &policy.outlier {
        apply_outlier(cl, o);
    }
}

fn apply_lb(cl: &mut c::Cluster, lb: &LoadBalancerSettings) {
    if cl.lb_policy == cluster::LbPolicy::ClusterProvided as i32 {
        return;
    }
    if let Some(ch) = &lb.consistent_hash {
        if let Some(m) = &ch.maglev {
            cl.lb_policy = cluster::LbPolicy::Maglev as i32;
            cl.lb_config = Some(cluster::LbConfig::MaglevLbConfig(cluster::MaglevLbConfig {
                table_size: m
                    .table_size
                    .map(|t| envoy_types::pb::google::protobuf::UInt64Value { value: t }),
            }));
        } else {
            let size = ch
                .ring_hash
                .as_ref()
                .and_then(|r| r.minimum_ring_size)
                .or(ch.minimum_ring_size)
                .unwrap_or(DEFAULT_RING_SIZE);
            cl.lb_policy = cluster::LbPolicy::RingHash as i32;
            cl.lb_config = Some(cluster::LbConfig::RingHashLbConfig(
                cluster::RingHashLbConfig {
                    minimum_ring_size: Some(envoy_types::pb::google::protobuf::UInt64Value {
                        value: size,
                    }),
                    ..Default::default()
                },
            ));
        }
        return;
    }
    match lb.simple.as_deref() {
        Some("ROUND_ROBIN") => cl.lb_policy = cluster::LbPolicy::RoundRobin as i32,
        Some("RANDOM") => cl.lb_policy = cluster::LbPolicy::Random as i32,
        Some("LEAST_CONN") | Some("LEAST_REQUEST") => {
            cl.lb_policy = cluster::LbPolicy::LeastRequest as i32
        }
        Some("PASSTHROUGH") => {
            cl.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
            cl.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::OriginalDst as i32,
            ));
            cl.eds_cluster_config = None;
        }
        _ => {}
    }
}

fn apply_outlier(cl: &mut c::Cluster, o: &OutlierDetection) {
    let mut out = c::OutlierDetection {
        // Success-rate ejection is off, as in Istio.
        enforcing_success_rate: Some(u32_value(0)),
        ..Default::default()
    };
    if let Some(n) = o.consecutive_5xx_errors.or(o.consecutive_errors) {
        let n = clamp_u32(n);
        out.consecutive_5xx = Some(u32_value(n));
        out.enforcing_consecutive_5xx = Some(u32_value(if n > 0 { 100 } else { 0 }));
    }
    if let Some(n) = o.consecutive_gateway_errors {
        let n = clamp_u32(n);
        out.consecutive_gateway_failure = Some(u32_value(n));
        out.enforcing_consecutive_gateway_failure = Some(u32_value(if n > 0 { 100 } else { 0 }));
    }
    if let Some(d) = o.interval.as_deref().and_then(|d| dur::parse(d).ok()) {
        out.interval = Some(duration(d));
    }
    if let Some(d) = o
        .base_ejection_time
        .as_deref()
        .and_then(|d| dur::parse(d).ok())
    {
        out.base_ejection_time = Some(duration(d));
    }
    if let Some(p) = o.max_ejection_percent.filter(|p| *p > 0) {
        out.max_ejection_percent = Some(u32_value(clamp_u32(p)));
    }
    if o.split_external_local_origin_errors == Some(true) {
        out.split_external_local_origin_errors = true;
        if let Some(n) = o.consecutive_local_origin_failures {
            out.consecutive_local_origin_failure = Some(u32_value(clamp_u32(n)));
        }
    }
    cl.outlier_detection = Some(out);
    // Istio sets the panic threshold even when 0: Envoy's default of 50% rarely
    // suits services with few pods.
    cl.common_lb_config
        .get_or_insert_with(Default::default)
        .healthy_panic_threshold = Some(Percent {
        value: o.min_health_percent.unwrap_or(0) as f64,
    });
}

fn blackhole() -> c::Cluster {
    c::Cluster {
        name: istio_names::BLACKHOLE.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        ..Default::default()
    }
}

fn passthrough() -> c::Cluster {
    c::Cluster {
        name: istio_names::PASSTHROUGH.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        circuit_breakers: Some(default_circuit_breakers()),
        typed_extension_protocol_options: HashMap::from([(
            HTTP_PROTOCOL_OPTIONS.to_string(),
            any(&uhttp::HttpProtocolOptions {
                upstream_protocol_options: Some(
                    uhttp::http_protocol_options::UpstreamProtocolOptions::UseDownstreamProtocolConfig(
                        uhttp::http_protocol_options::UseDownstreamHttpConfig {
                            http_protocol_options: Some(core::Http1ProtocolOptions::default()),
                            http2_protocol_options: Some(core::Http2ProtocolOptions::default()),
                            ..Default::default()
                        },
                    ),
                ),
                ..Default::default()
            }),
        )]),
        ..Default::default()
    }
}
