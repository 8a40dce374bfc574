//! The inbound half of a sidecar under Istio's capture.
//!
//! Istio's init container redirects every TCP connection that reaches a pod
//! to 15006. `virtualInbound` listens there, recovers each connection's
//! original destination and picks a filter chain by its destination port:
//! one chain per port a service in the workload's namespace selects the
//! workload on (its target port), or per port its Sidecar's `ingress`
//! names, routing to the cluster `inbound|PORT||`;
//! a chain for 15006 itself that goes nowhere (a connection addressed to the
//! listener would loop); and a catch-all that passes anything else on to
//! where it was going, through `InboundPassthroughCluster`. Each port takes
//! mutual TLS, plaintext or both, as the PeerAuthentications covering the
//! workload say (`Secured`).
//!
//! Inbound clusters are original-destination clusters: the connection goes
//! to the very address and port the caller dialed, from 127.0.0.6, the
//! address capture lets through untouched (a Sidecar's `defaultEndpoint`
//! may change the port, or send it to loopback or a Unix socket instead).
//! Nothing in them depends on the pod's IP, so replicas of one workload
//! share them.
//!
//! Which services select the workload depends on its labels (node metadata
//! `LABELS`), which is why labels are part of a capture view.

use std::collections::BTreeMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{self as c, cluster};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::listener::v3 as l;
use envoy_types::pb::envoy::config::route::v3 as r;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as uhttp;
use envoy_types::pb::google::protobuf::{Any, BoolValue};

use super::authorization::Authorization;
use super::cluster::BuiltCluster;
use super::tls::{self, Certificates};
use super::{
    any, duration, istio_names, listener, socket_address, telemetry, ListenerMode, ProxyView,
};
use shmesh_api::objects::{IngressEndpoint, IngressListener, MtlsMode};
use shmesh_model::{selects, Backing, MeshService, Model, Protocol, TargetPort};

/// The address inbound clusters connect from: capture returns traffic from
/// it on `lo` before any other rule, so the connection reaches the app.
pub const INBOUND_SOURCE_ADDRESS: &str = "127.0.0.6";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// A port the workload serves, as the first service (by host name) that
/// selects it on that port declares it, or as its Sidecar's `ingress` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundPort {
    /// What the caller dialed; with services, also where the app listens.
    pub port: u16,
    pub protocol: Protocol,
    /// Where the traffic goes.
    pub endpoint: IngressEndpoint,
    /// The host and port of the service that declares it (none for a
    /// Sidecar's `ingress`): traced spans are named for them.
    pub service: Option<(String, u16)>,
}

/// The ports of the view's workload. When its Sidecar (`Model::sidecar_for`)
/// has `ingress` listeners, those; else the target ports of every service in
/// its namespace whose selector matches its labels. A named target port
/// takes the number the service's endpoints resolved it to (those of pods
/// with the workload's labels first); with no endpoint yet, it is left out
/// until one appears.
pub fn inbound_ports(model: &Model, view: &ProxyView) -> Vec<InboundPort> {
    if view.mode != ListenerMode::Capture {
        return Vec::new();
    }
    if let Some(sidecar) = model.sidecar_for(&view.namespace, &view.labels) {
        if !sidecar.spec.ingress.is_empty() {
            return ingress_ports(&sidecar.spec.ingress);
        }
    }
    if view.labels.is_empty() {
        return Vec::new();
    }
    let mut ports: BTreeMap<u16, InboundPort> = BTreeMap::new();
    for svc in model.services().values().filter(|s| selects_view(s, view)) {
        for port in &svc.ports {
            let target = match &port.target {
                TargetPort::Number(n) => Some(*n),
                TargetPort::Name(_) => {
                    // Pods may number a named port differently: take the
                    // workload's own pods' number.
                    let endpoints = model.endpoints(&svc.hostname, port.number);
                    endpoints
                        .iter()
                        .find(|e| view.labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
                        .or_else(|| endpoints.first())
                        .map(|e| e.port)
                }
            };
            let Some(target) = target else { continue };
            ports.entry(target).or_insert_with(|| InboundPort {
                port: target,
                protocol: port.protocol,
                endpoint: IngressEndpoint::SamePort,
                service: Some((svc.hostname.clone(), port.number)),
            });
        }
    }
    ports.into_values().collect()
}

/// A Sidecar's ingress listeners, by port; those validation refuses (a bad
/// port or endpoint) never reach the model.
fn ingress_ports(ingress: &[IngressListener]) -> Vec<InboundPort> {
    let mut ports: BTreeMap<u16, InboundPort> = BTreeMap::new();
    for listener in ingress {
        let (Ok(port), Ok(endpoint)) = (u16::try_from(listener.port.number), listener.endpoint())
        else {
            continue;
        };
        let protocol = match &listener.port.protocol {
            Some(p) => Protocol::parse(p),
            None => Protocol::from_port_name(listener.port.name.as_deref().unwrap_or("")),
        };
        ports.entry(port).or_insert(InboundPort {
            port,
            protocol,
            endpoint,
            service: None,
        });
    }
    ports.into_values().collect()
}

/// Whether `svc` is in the view's namespace and selects its workload.
pub(crate) fn selects_view(svc: &MeshService, view: &ProxyView) -> bool {
    let selector = match &svc.backing {
        Backing::Kubernetes { selector } => selector.as_ref(),
        Backing::ServiceEntry { selector, .. } => selector.as_ref(),
    };
    svc.namespace == view.namespace && selector.is_some_and(|s| selects(s, &view.labels))
}

/// `inbound|PORT||` for each port of the workload, and
/// `InboundPassthroughCluster` (capture views only).
pub fn clusters(model: &Model, view: &ProxyView) -> Vec<BuiltCluster> {
    if view.mode != ListenerMode::Capture {
        return Vec::new();
    }
    let mut out: Vec<BuiltCluster> = inbound_ports(model, view)
        .iter()
        .map(|p| {
            let name = istio_names::inbound_cluster(p.port);
            let mut cluster = to_workload(&name, p.protocol.is_http2(), &p.endpoint);
            cluster.alt_stat_name = format!("{name};");
            built(cluster, p.port)
        })
        .collect();
    out.push(built(
        original_destination(istio_names::INBOUND_PASSTHROUGH, false),
        0,
    ));
    out.extend(Authorization::of(model, view).jwks_clusters());
    out
}

fn built(cluster: c::Cluster, port: u16) -> BuiltCluster {
    BuiltCluster {
        name: cluster.name.clone(),
        cluster: Box::new(cluster),
        host: String::new(),
        port,
        subset: None,
        eds: false,
    }
}

/// The cluster of an inbound port: to where the caller was going (on
/// another port when the Sidecar's ingress says so), or to a fixed
/// loopback address or Unix socket.
fn to_workload(name: &str, http2: bool, endpoint: &IngressEndpoint) -> c::Cluster {
    let mut cluster = original_destination(name, http2);
    let fixed = |address: core::Address| Some(super::endpoint::single(name, address));
    let static_cluster = |cluster: &mut c::Cluster| {
        cluster.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        ));
        cluster.lb_policy = cluster::LbPolicy::RoundRobin as i32;
    };
    match endpoint {
        IngressEndpoint::SamePort => {}
        IngressEndpoint::WorkloadPort(port) => {
            cluster.lb_config = Some(c::cluster::LbConfig::OriginalDstLbConfig(
                c::cluster::OriginalDstLbConfig {
                    upstream_port_override: Some(super::u32_value(*port as u32)),
                    ..Default::default()
                },
            ));
        }
        IngressEndpoint::Loopback(port) => {
            static_cluster(&mut cluster);
            cluster.load_assignment = fixed(socket_address("127.0.0.1", *port));
        }
        IngressEndpoint::Unix(path) => {
            static_cluster(&mut cluster);
            // A socket has no source address to bind.
            cluster.upstream_bind_config = None;
            cluster.load_assignment = fixed(core::Address {
                address: Some(core::address::Address::Pipe(core::Pipe {
                    path: path.clone(),
                    ..Default::default()
                })),
            });
        }
    }
    cluster
}

/// An original-destination cluster connecting from 127.0.0.6; HTTP/2
/// upstream for HTTP/2 and gRPC ports, the caller's protocol otherwise.
fn original_destination(name: &str, http2: bool) -> c::Cluster {
    use uhttp::http_protocol_options::UpstreamProtocolOptions;
    let protocol = if http2 {
        UpstreamProtocolOptions::ExplicitHttpConfig(uhttp::http_protocol_options::ExplicitHttpConfig {
            protocol_config: Some(
                uhttp::http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                    core::Http2ProtocolOptions::default(),
                ),
            ),
        })
    } else {
        UpstreamProtocolOptions::UseDownstreamProtocolConfig(
            uhttp::http_protocol_options::UseDownstreamHttpConfig {
                http_protocol_options: Some(core::Http1ProtocolOptions::default()),
                http2_protocol_options: Some(core::Http2ProtocolOptions::default()),
                ..Default::default()
            },
        )
    };
    c::Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration(CONNECT_TIMEOUT)),
        circuit_breakers: Some(super::cluster::default_circuit_breakers()),
        upstream_bind_config: Some(core::BindConfig {
            source_address: Some(super::socket(INBOUND_SOURCE_ADDRESS, 0)),
            ..Default::default()
        }),
        typed_extension_protocol_options: [(
            HTTP_PROTOCOL_OPTIONS.to_string(),
            any(&uhttp::HttpProtocolOptions {
                upstream_protocol_options: Some(protocol),
                ..Default::default()
            }),
        )]
        .into(),
        ..Default::default()
    }
}

/// `virtualInbound` on 15006: for each port, the chains its mTLS mode
/// calls for; then the catch-all, under the workload's own mode.
pub fn virtual_inbound(model: &Model, view: &ProxyView) -> l::Listener {
    let policy = model.mtls_policy(&view.namespace, &view.labels);
    let authorization = Authorization::of(model, view);
    let tcp_proxy = |cluster: &str| -> Vec<l::Filter> {
        let mut filters = authorization.network_filters();
        filters.push(listener::tcp_proxy(cluster));
        filters
    };
    let mut chains: Vec<l::FilterChain> = Vec::new();
    for p in inbound_ports(model, view) {
        let cluster = istio_names::inbound_cluster(p.port);
        let name = istio_names::listener("0.0.0.0", p.port);
        let http = p.protocol.is_http();
        let plain = if http {
            vec![l::Filter {
                name: "envoy.filters.network.http_connection_manager".to_string(),
                config_type: Some(l::filter::ConfigType::TypedConfig(any(&http_manager(
                    model,
                    view,
                    &p,
                    &cluster,
                    authorization.http_filters(),
                )))),
            }]
        } else {
            tcp_proxy(&cluster)
        };
        let secured = Secured {
            name: &name,
            port: Some(p.port),
            mode: policy.port(p.port),
            http,
        };
        chains.extend(secured.chains(&view.certificates, plain, tcp_proxy(&cluster)));
    }
    // A connection dialed to 15006 itself would come back here forever.
    chains.push(l::FilterChain {
        name: "virtualInbound-blackhole".to_string(),
        filter_chain_match: Some(on_port(istio_names::VIRTUAL_INBOUND_PORT)),
        filters: vec![listener::tcp_proxy(istio_names::BLACKHOLE)],
        ..Default::default()
    });
    let catchall = Secured {
        name: "virtualInbound-catchall-tcp",
        port: None,
        mode: policy.default,
        http: false,
    };
    chains.extend(catchall.chains(
        &view.certificates,
        tcp_proxy(istio_names::INBOUND_PASSTHROUGH),
        tcp_proxy(istio_names::INBOUND_PASSTHROUGH),
    ));
    let filter = |name: &str, config: Any| l::ListenerFilter {
        name: name.to_string(),
        config_type: Some(l::listener_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    };
    l::Listener {
        name: istio_names::VIRTUAL_INBOUND.to_string(),
        address: Some(socket_address("0.0.0.0", istio_names::VIRTUAL_INBOUND_PORT)),
        traffic_direction: core::TrafficDirection::Inbound as i32,
        listener_filters: vec![
            filter(
                "envoy.filters.listener.original_dst",
                any(&OriginalDst::default()),
            ),
            filter(
                "envoy.filters.listener.tls_inspector",
                any(&TlsInspector::default()),
            ),
        ],
        // A client that sends nothing first (a server-first protocol) is
        // taken as plaintext once the inspector gives up, not dropped.
        continue_on_listener_filters_timeout: true,
        filter_chains: chains,
        ..Default::default()
    }
}

/// The chains of one inbound port (or of the catch-all) under its mTLS mode.
struct Secured<'a> {
    name: &'a str,
    port: Option<u16>,
    mode: MtlsMode,
    http: bool,
}

impl Secured<'_> {
    /// - DISABLE: plaintext only.
    /// - PERMISSIVE: a sidecar's mutual TLS (told by Istio's ALPN) is
    ///   terminated; an app's own TLS passes through as bytes; plaintext is
    ///   taken as it comes.
    /// - STRICT: mutual TLS only; anything else finds no chain and is closed.
    ///
    /// A sidecar without certificates cannot terminate mutual TLS: its
    /// PERMISSIVE ports take plaintext only and its STRICT ports nothing.
    /// `plain` serves the port's protocol; `passthrough` carries an app's
    /// own TLS as bytes.
    fn chains(
        &self,
        certificates: &Certificates,
        plain: Vec<l::Filter>,
        passthrough: Vec<l::Filter>,
    ) -> Vec<l::FilterChain> {
        let alpn: &[&str] = if self.http { &["h2", "http/1.1"] } else { &[] };
        let mutual = tls::downstream_istio_mutual(certificates, alpn);
        let chain = |suffix: &str, transport: &str, alpn: &[&str], filters: Vec<l::Filter>| {
            l::FilterChain {
                name: format!("{}{suffix}", self.name),
                filter_chain_match: Some(l::FilterChainMatch {
                    destination_port: self.port.map(|p| super::u32_value(p as u32)),
                    transport_protocol: transport.to_string(),
                    application_protocols: alpn.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                }),
                filters,
                ..Default::default()
            }
        };
        let terminated = |socket: core::TransportSocket, filters: Vec<l::Filter>| l::FilterChain {
            transport_socket: Some(socket),
            ..chain("-mtls", "tls", &[], filters)
        };
        match (self.mode, mutual) {
            (MtlsMode::Disable, _) | (MtlsMode::Permissive | MtlsMode::Unset, None) => {
                vec![chain("", "", &[], plain)]
            }
            (MtlsMode::Permissive | MtlsMode::Unset, Some(socket)) => vec![
                l::FilterChain {
                    filter_chain_match: Some(l::FilterChainMatch {
                        destination_port: self.port.map(|p| super::u32_value(p as u32)),
                        transport_protocol: "tls".to_string(),
                        application_protocols: tls::ISTIO_INBOUND_ALPN
                            .iter()
                            .map(|s| s.to_string())
                            .collect(),
                        ..Default::default()
                    }),
                    ..terminated(socket, plain.clone())
                },
                chain("-tls", "tls", &[], passthrough),
                chain("", "raw_buffer", &[], plain),
            ],
            (MtlsMode::Strict, Some(socket)) => vec![terminated(socket, plain)],
            (MtlsMode::Strict, None) => Vec::new(),
        }
    }
}

fn on_port(port: u16) -> l::FilterChainMatch {
    l::FilterChainMatch {
        destination_port: Some(super::u32_value(port as u32)),
        ..Default::default()
    }
}

/// Routes every request to the port's inbound cluster with no timeout, and
/// tells the app who called (`x-forwarded-client-cert`) as Istio does;
/// `filters` (authentication and authorization) go before the router.
fn http_manager(
    model: &Model,
    view: &ProxyView,
    inbound: &InboundPort,
    cluster: &str,
    mut filters: Vec<hcm::HttpFilter>,
) -> hcm::HttpConnectionManager {
    let port = inbound.port;
    filters.push(listener::router_filter());
    let mut route = r::Route {
        name: "default".to_string(),
        r#match: Some(r::RouteMatch {
            path_specifier: Some(r::route_match::PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        }),
        action: Some(r::route::Action::Route(r::RouteAction {
            cluster_specifier: Some(r::route_action::ClusterSpecifier::Cluster(
                cluster.to_string(),
            )),
            timeout: Some(duration(Duration::ZERO)),
            ..Default::default()
        })),
        ..Default::default()
    };
    if let Some((host, service_port)) = &inbound.service {
        route.decorator = telemetry::route_decorator(model, &route, host, *service_port);
    }
    let port_text = port.to_string();
    hcm::HttpConnectionManager {
        tracing: telemetry::hcm_tracing(model, view, telemetry::Side::Inbound),
        stat_prefix: format!("inbound_0.0.0.0_{port_text}"),
        codec_type: hcm::http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(
            r::RouteConfiguration {
                name: cluster.to_string(),
                virtual_hosts: vec![r::VirtualHost {
                    name: format!("inbound|http|{port_text}"),
                    domains: vec!["*".to_string()],
                    routes: vec![route],
                    ..Default::default()
                }],
                validate_clusters: Some(BoolValue { value: false }),
                ..Default::default()
            },
        )),
        http_filters: filters,
        use_remote_address: Some(BoolValue { value: false }),
        normalize_path: Some(BoolValue { value: true }),
        forward_client_cert_details:
            hcm::http_connection_manager::ForwardClientCertDetails::AppendForward as i32,
        set_current_client_cert_details: Some(
            hcm::http_connection_manager::SetCurrentClientCertDetails {
                subject: Some(BoolValue { value: true }),
                dns: true,
                uri: true,
                ..Default::default()
            },
        ),
        upgrade_configs: vec![hcm::http_connection_manager::UpgradeConfig {
            upgrade_type: "websocket".to_string(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::{self as c, cluster};
    use envoy_types::pb::envoy::config::endpoint::v3 as e;
    use envoy_types::pb::envoy::config::listener::v3 as l;

    use super::*;
    use crate::tests::{changes, decode, model, view};
    use crate::{build, update, Snapshot};
    use shmesh_api::{Kind, ObjectKey};
    use shmesh_cache::ResourceType;
    use shmesh_model::Change;

    const SHOP: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec:\n  selector: {app: cart}\n  ports:\n  - {name: http, port: 80, targetPort: 8080}\n  - {name: tcp-db, port: 5432}\n  - {name: grpc-api, port: 9000, targetPort: api}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: cart-1, namespace: shop, labels: {app: cart, pod-template-hash: abc}}\nspec:\n  containers: [{ports: [{name: api, containerPort: 9090}]}]\nstatus: {podIP: 10.1.0.5}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: other}\nspec:\n  selector: {app: cart}\n  ports: [{name: http, port: 81, targetPort: 7070}]\n";

    fn workload(ns: &str, labels: &[(&str, &str)]) -> ProxyView {
        ProxyView {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..view(ns)
        }
    }

    fn chains(snap: &Snapshot) -> Vec<(String, Option<u32>)> {
        let vi: l::Listener = decode(snap, ResourceType::Listener, "virtualInbound");
        vi.filter_chains
            .iter()
            .map(|fc| {
                let port = fc
                    .filter_chain_match
                    .as_ref()
                    .and_then(|m| m.destination_port.as_ref())
                    .map(|p| p.value);
                (fc.name.clone(), port)
            })
            .collect()
    }

    fn inbound_names(snap: &Snapshot) -> Vec<&str> {
        snap.get(ResourceType::Cluster)
            .names()
            .filter(|n| n.starts_with("inbound|") || n.starts_with("Inbound"))
            .collect()
    }

    #[test]
    fn a_workload_gets_a_chain_and_a_cluster_per_target_port_of_the_services_selecting_it() {
        let snap = build(
            &model(SHOP),
            &workload("shop", &[("app", "cart"), ("pod-template-hash", "abc")]),
        );
        assert_eq!(
            chains(&snap),
            vec![
                ("0.0.0.0_5432".to_string(), Some(5432)),
                ("0.0.0.0_8080".to_string(), Some(8080)),
                // The named target port, as the pod's container port names it.
                ("0.0.0.0_9090".to_string(), Some(9090)),
                ("virtualInbound-blackhole".to_string(), Some(15006)),
                ("virtualInbound-catchall-tcp".to_string(), None),
            ]
        );
        // The service of the same name in another namespace adds nothing.
        assert_eq!(
            inbound_names(&snap),
            vec![
                "InboundPassthroughCluster",
                "inbound|5432||",
                "inbound|8080||",
                "inbound|9090||"
            ]
        );
        let cl: c::Cluster = decode(&snap, ResourceType::Cluster, "inbound|8080||");
        assert_eq!(
            cl.cluster_discovery_type,
            Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::OriginalDst as i32
            ))
        );
        let bind = cl
            .upstream_bind_config
            .and_then(|b| b.source_address)
            .expect("bind");
        assert_eq!(bind.address, INBOUND_SOURCE_ADDRESS);
        // HTTP ports get a connection manager, TCP ports a TCP proxy.
        let vi: l::Listener = decode(&snap, ResourceType::Listener, "virtualInbound");
        let filter = |port: &str| {
            vi.filter_chains
                .iter()
                .find(|fc| fc.name == port)
                .unwrap()
                .filters[0]
                .name
                .clone()
        };
        assert_eq!(
            filter("0.0.0.0_8080"),
            "envoy.filters.network.http_connection_manager"
        );
        assert_eq!(filter("0.0.0.0_5432"), "envoy.filters.network.tcp_proxy");
    }

    #[test]
    fn a_sidecars_ingress_listeners_replace_the_service_ports() {
        let sidecar = "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: cart, namespace: shop}\nspec:\n  workloadSelector: {labels: {app: cart}}\n  ingress:\n  - port: {number: 9080, protocol: HTTP, name: http}\n    defaultEndpoint: 127.0.0.1:8080\n  - port: {number: 9091, protocol: TCP, name: tcp}\n    defaultEndpoint: 0.0.0.0:7070\n  - port: {number: 9092, name: grpc-api}\n    defaultEndpoint: unix:///var/run/cart.sock\n  - port: {number: 9093, name: http-same}\n";
        let m = model(&format!("{SHOP}{sidecar}"));
        let snap = build(&m, &workload("shop", &[("app", "cart")]));
        assert_eq!(
            inbound_names(&snap),
            vec![
                "InboundPassthroughCluster",
                "inbound|9080||",
                "inbound|9091||",
                "inbound|9092||",
                "inbound|9093||"
            ]
        );
        let loopback: c::Cluster = decode(&snap, ResourceType::Cluster, "inbound|9080||");
        let address = |cl: &c::Cluster| {
            cl.load_assignment
                .as_ref()
                .expect("static endpoint")
                .endpoints[0]
                .lb_endpoints[0]
                .host_identifier
                .clone()
        };
        assert_eq!(
            address(&loopback),
            Some(e::lb_endpoint::HostIdentifier::Endpoint(e::Endpoint {
                address: Some(socket_address("127.0.0.1", 8080)),
                ..Default::default()
            }))
        );
        let other_port: c::Cluster = decode(&snap, ResourceType::Cluster, "inbound|9091||");
        assert_eq!(
            other_port.lb_config,
            Some(c::cluster::LbConfig::OriginalDstLbConfig(
                c::cluster::OriginalDstLbConfig {
                    upstream_port_override: Some(crate::u32_value(7070)),
                    ..Default::default()
                }
            ))
        );
        let unix: c::Cluster = decode(&snap, ResourceType::Cluster, "inbound|9092||");
        assert!(unix.upstream_bind_config.is_none());
        // HTTP/2 upstream for the gRPC port named by its port name.
        assert!(
            unix.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS]
                .value
                .len()
                > 2
        );
        let same: c::Cluster = decode(&snap, ResourceType::Cluster, "inbound|9093||");
        assert!(same.load_assignment.is_none() && same.lb_config.is_none());
        // Every workload the selector matches gets them; one it does not
        // match keeps the services' ports (here: none select it).
        let other = build(
            &m,
            &workload("shop", &[("app", "cart"), ("pod-template-hash", "abc")]),
        );
        assert!(inbound_names(&other).contains(&"inbound|9080||"));
        let web = build(&m, &workload("shop", &[("app", "web")]));
        assert_eq!(inbound_names(&web), vec!["InboundPassthroughCluster"]);
    }

    #[test]
    fn a_sidecar_no_service_selects_passes_inbound_traffic_through() {
        for v in [view("shop"), workload("shop", &[("app", "other")])] {
            let snap = build(&model(SHOP), &v);
            assert_eq!(
                chains(&snap),
                vec![
                    ("virtualInbound-blackhole".to_string(), Some(15006)),
                    ("virtualInbound-catchall-tcp".to_string(), None),
                ]
            );
            assert_eq!(inbound_names(&snap), vec!["InboundPassthroughCluster"]);
        }
    }

    #[test]
    fn service_changes_update_the_inbound_half_as_a_full_translation_would() {
        let v = workload("shop", &[("app", "cart")]);
        let mut m = model(SHOP);
        let before = build(&m, &v);
        let dirty = m.apply([Change::Delete(ObjectKey {
            kind: Kind::Service,
            namespace: "shop".into(),
            name: "cart".into(),
        })]);
        let after = update(&m, &v, &before, &dirty);
        assert_eq!(inbound_names(&after), vec!["InboundPassthroughCluster"]);
        let full = build(&m, &v);
        for ty in ResourceType::ALL {
            assert_eq!(full.get(ty).version(), after.get(ty).version(), "{ty}");
        }
        // And back.
        let dirty = m.apply(changes("shop.yaml", SHOP));
        let again = update(&m, &v, &after, &dirty);
        assert_eq!(inbound_names(&again), inbound_names(&before));
        for ty in ResourceType::ALL {
            assert_eq!(before.get(ty).version(), again.get(ty).version(), "{ty}");
        }
    }

    fn with_agent(v: ProxyView) -> ProxyView {
        ProxyView {
            certificates: Certificates::Agent,
            ..v
        }
    }

    /// Each chain: name, destination port, transport protocol, whether it
    /// terminates TLS.
    fn secured(snap: &Snapshot) -> Vec<(String, Option<u32>, String, bool)> {
        let vi: l::Listener = decode(snap, ResourceType::Listener, "virtualInbound");
        vi.filter_chains
            .iter()
            .map(|fc| {
                let m = fc.filter_chain_match.clone().unwrap_or_default();
                (
                    fc.name.clone(),
                    m.destination_port.map(|p| p.value),
                    m.transport_protocol,
                    fc.transport_socket.is_some(),
                )
            })
            .collect()
    }

    const ONE_PORT: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec:\n  selector: {app: cart}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n";

    fn row(
        name: &str,
        port: Option<u32>,
        transport: &str,
        tls: bool,
    ) -> (String, Option<u32>, String, bool) {
        (name.to_string(), port, transport.to_string(), tls)
    }

    #[test]
    fn permissive_ports_take_mutual_tls_an_apps_own_tls_and_plaintext() {
        let snap = build(
            &model(ONE_PORT),
            &with_agent(workload("shop", &[("app", "cart")])),
        );
        assert_eq!(
            secured(&snap),
            vec![
                row("0.0.0.0_8080-mtls", Some(8080), "tls", true),
                row("0.0.0.0_8080-tls", Some(8080), "tls", false),
                row("0.0.0.0_8080", Some(8080), "raw_buffer", false),
                row("virtualInbound-blackhole", Some(15006), "", false),
                row("virtualInbound-catchall-tcp-mtls", None, "tls", true),
                row("virtualInbound-catchall-tcp-tls", None, "tls", false),
                row("virtualInbound-catchall-tcp", None, "raw_buffer", false),
            ]
        );
        let vi: l::Listener = decode(&snap, ResourceType::Listener, "virtualInbound");
        let mtls = &vi.filter_chains[0];
        assert_eq!(
            mtls.filter_chain_match
                .as_ref()
                .unwrap()
                .application_protocols,
            tls::ISTIO_INBOUND_ALPN.to_vec()
        );
    }

    #[test]
    fn strict_takes_mutual_tls_only_and_disable_plaintext_only() {
        let policies = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: cart, namespace: shop}\nspec:\n  selector: {matchLabels: {app: cart}}\n  portLevelMtls: {8080: {mode: DISABLE}}\n";
        let m = model(&format!("{ONE_PORT}{policies}"));
        let snap = build(&m, &with_agent(workload("shop", &[("app", "cart")])));
        assert_eq!(
            secured(&snap),
            vec![
                row("0.0.0.0_8080", Some(8080), "", false),
                row("virtualInbound-blackhole", Some(15006), "", false),
                row("virtualInbound-catchall-tcp-mtls", None, "tls", true),
            ]
        );
        // Without certificates a STRICT workload can take nothing but its
        // DISABLE'd port.
        let snap = build(&m, &workload("shop", &[("app", "cart")]));
        assert_eq!(
            secured(&snap),
            vec![
                row("0.0.0.0_8080", Some(8080), "", false),
                row("virtualInbound-blackhole", Some(15006), "", false),
            ]
        );
    }
}
