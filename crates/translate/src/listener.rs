//! Listeners for each listener mode.
//!
//! - capture: `virtualOutbound` (bound on 15001, hands connections to the
//!   listener for their original destination, else passes them through) and
//!   one unbound `0.0.0.0_PORT` listener per HTTP port routing with RDS `"PORT"`;
//!   TCP service ports get `VIP_PORT` (or `0.0.0.0_PORT`) with a TCP proxy
//!   (to the service, or by weight as the service's VirtualService `tcp[]`
//!   says), and before it a chain per `tls[]` SNI match of that
//!   VirtualService passing TLS through by its weights;
//!   and the inbound half, `virtualInbound` on 15006 (see `inbound`).
//! - explicit: one bound listener on the address the node asked for, routing
//!   every visible service by Host header with RDS `http_proxy`.
//! - proxyless: `api_listener`s named `host:port` for gRPC clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::listener::v3 as l;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use envoy_types::pb::google::protobuf::BoolValue;

use super::{ads, any, istio_names, route, socket_address, telemetry, ListenerMode, ProxyView};
use shmesh_api::objects::{L4MatchAttributes, TcpRoute};
use shmesh_model::Model;

pub fn listeners(model: &Model, view: &ProxyView) -> Vec<(String, l::Listener)> {
    match &view.mode {
        ListenerMode::Capture => capture(model, view),
        ListenerMode::Explicit(addr) => vec![explicit(model, view, *addr)],
        ListenerMode::Proxyless => proxyless(model, view),
        ListenerMode::Router => super::gateway::listeners(model, view),
    }
}

fn capture(model: &Model, view: &ProxyView) -> Vec<(String, l::Listener)> {
    let mut out: BTreeMap<String, l::Listener> = BTreeMap::new();
    out.insert(
        istio_names::VIRTUAL_OUTBOUND.to_string(),
        virtual_outbound(),
    );
    out.insert(
        istio_names::VIRTUAL_INBOUND.to_string(),
        super::inbound::virtual_inbound(model, view),
    );
    let mut tcp_ports = Vec::new();
    for svc in super::visible_services(model, view) {
        for port in &svc.ports {
            if port.protocol.is_http() {
                let name = istio_names::listener("0.0.0.0", port.number);
                out.entry(name.clone()).or_insert_with(|| l::Listener {
                    name: name.clone(),
                    address: Some(socket_address("0.0.0.0", port.number)),
                    bind_to_port: Some(BoolValue { value: false }),
                    traffic_direction: core::TrafficDirection::Outbound as i32,
                    filter_chains: vec![l::FilterChain {
                        filters: vec![http_filter(
                            &format!("outbound_0.0.0.0_{}", port.number),
                            &port.number.to_string(),
                            telemetry::hcm_tracing(model, view, telemetry::Side::Outbound),
                        )],
                        ..Default::default()
                    }],
                    ..Default::default()
                });
            } else {
                tcp_ports.push((svc, port));
            }
        }
    }
    // TCP listeners are keyed by the service VIP; without one they take the
    // wildcard address unless an HTTP listener already holds that port.
    for (svc, port) in tcp_ports {
        let address = svc.vip.clone().unwrap_or_else(|| "0.0.0.0".to_string());
        let name = istio_names::listener(&address, port.number);
        if out.contains_key(&name) {
            continue;
        }
        let cluster = istio_names::outbound_cluster(port.number, "", &svc.hostname);
        let proxy = match tcp_rule(model, view, &svc.hostname, port.number) {
            Some((vs_namespace, rule)) => tcp_proxy_weighted(
                &cluster,
                super::gateway::l4_clusters(model, vs_namespace, &rule.route, port.number),
            ),
            None => tcp_proxy(&cluster),
        };
        // TLS connections go by SNI where `tls[]` rules say; the rest as above.
        let mut filter_chains = tls_chains(model, view, &svc.hostname, port.number);
        let listener_filters = if filter_chains.is_empty() {
            Vec::new()
        } else {
            vec![tls_inspector()]
        };
        filter_chains.push(l::FilterChain {
            filters: vec![proxy],
            ..Default::default()
        });
        out.insert(
            name.clone(),
            l::Listener {
                name,
                address: Some(socket_address(&address, port.number)),
                bind_to_port: Some(BoolValue { value: false }),
                traffic_direction: core::TrafficDirection::Outbound as i32,
                filter_chains,
                listener_filters,
                ..Default::default()
            },
        );
    }
    out.into_iter().collect()
}

/// The first `tcp[]` rule of the VirtualService for `host` whose match
/// lets this sidecar's connections to `port` in (mesh-bound, port, source
/// namespace and labels), with the VirtualService's namespace.
fn tcp_rule<'a>(
    model: &'a Model,
    view: &ProxyView,
    host: &str,
    port: u16,
) -> Option<(&'a str, &'a TcpRoute)> {
    let vs = model.virtual_service(host, &view.namespace)?;
    let applies = |m: &L4MatchAttributes| {
        l4_match_applies(
            view,
            port,
            (m.port, &m.gateways),
            (&m.source_namespace, &m.source_labels),
        )
    };
    let rule = vs
        .spec
        .tcp
        .iter()
        .find(|rule| rule.match_.is_empty() || rule.match_.iter().any(applies))?;
    Some((vs.namespace.as_str(), rule))
}

/// Whether an L4 match (port and gateways; source namespace and labels)
/// lets this sidecar's connections to `port` in.
fn l4_match_applies(
    view: &ProxyView,
    port: u16,
    (match_port, gateways): (Option<i64>, &[String]),
    (source_namespace, source_labels): (&Option<String>, &shmesh_api::meta::Labels),
) -> bool {
    match_port.is_none_or(|p| p == i64::from(port))
        && (gateways.is_empty() || gateways.iter().any(|g| g == "mesh"))
        && source_namespace
            .as_ref()
            .is_none_or(|ns| *ns == view.namespace)
        && (source_labels.is_empty() || shmesh_model::selects(source_labels, &view.labels))
}

/// One filter chain per `tls[]` match of the VirtualService for `host` that
/// lets this sidecar's connections to `port` in, matched by its SNI names
/// and passing the connection through by the rule's weights.
fn tls_chains(model: &Model, view: &ProxyView, host: &str, port: u16) -> Vec<l::FilterChain> {
    let Some(vs) = model.virtual_service(host, &view.namespace) else {
        return Vec::new();
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for rule in &vs.spec.tls {
        for m in &rule.match_ {
            let applies = l4_match_applies(
                view,
                port,
                (m.port, &m.gateways),
                (&m.source_namespace, &m.source_labels),
            );
            let mut names = m.sni_hosts.clone();
            names.sort();
            if !applies || names.is_empty() || !seen.insert(names.clone()) {
                continue;
            }
            let clusters = super::gateway::l4_clusters(model, &vs.namespace, &rule.route, port);
            let stat = istio_names::outbound_cluster(port, "", host);
            out.push(l::FilterChain {
                filter_chain_match: Some(l::FilterChainMatch {
                    server_names: names,
                    transport_protocol: "tls".to_string(),
                    ..Default::default()
                }),
                filters: vec![tcp_proxy_weighted(&stat, clusters)],
                ..Default::default()
            });
        }
    }
    out
}

/// Envoy's TLS inspector, which reads the SNI name filter chains match on.
pub(crate) fn tls_inspector() -> l::ListenerFilter {
    l::ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".to_string(),
        config_type: Some(l::listener_filter::ConfigType::TypedConfig(any(
            &TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

fn virtual_outbound() -> l::Listener {
    l::Listener {
        name: istio_names::VIRTUAL_OUTBOUND.to_string(),
        address: Some(socket_address(
            "0.0.0.0",
            istio_names::VIRTUAL_OUTBOUND_PORT,
        )),
        use_original_dst: Some(BoolValue { value: true }),
        traffic_direction: core::TrafficDirection::Outbound as i32,
        filter_chains: vec![l::FilterChain {
            name: "virtualOutbound-catchall-tcp".to_string(),
            filters: vec![tcp_proxy(istio_names::PASSTHROUGH)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn explicit(model: &Model, view: &ProxyView, addr: SocketAddr) -> (String, l::Listener) {
    let ip = addr.ip().to_string();
    let name = istio_names::listener(&ip, addr.port());
    let listener = l::Listener {
        name: name.clone(),
        address: Some(socket_address(&ip, addr.port())),
        traffic_direction: core::TrafficDirection::Outbound as i32,
        filter_chains: vec![l::FilterChain {
            filters: vec![http_filter(
                &format!("outbound_{name}"),
                istio_names::HTTP_PROXY_ROUTE,
                telemetry::hcm_tracing(model, view, telemetry::Side::Outbound),
            )],
            ..Default::default()
        }],
        ..Default::default()
    };
    (name, listener)
}

fn proxyless(model: &Model, view: &ProxyView) -> Vec<(String, l::Listener)> {
    route::proxyless_names(model, view)
        .into_iter()
        .map(|name| {
            let listener = l::Listener {
                name: name.clone(),
                api_listener: Some(l::ApiListener {
                    api_listener: Some(any(&http_connection_manager(&name, &name, false))),
                }),
                ..Default::default()
            };
            (name, listener)
        })
        .collect()
}

/// Istio's outbound HTTP connection manager, routing with RDS over ADS.
pub fn http_connection_manager(
    stat_prefix: &str,
    route_config: &str,
    sidecar: bool,
) -> hcm::HttpConnectionManager {
    let router = router_filter();
    // Sidecars and gateways carry the CORS and fault filters, configured
    // per route by VirtualService `corsPolicy` and `fault` (as Istio's, in
    // that order); proxyless gRPC clients get the router alone.
    let http_filters = if sidecar {
        let cors = hcm::HttpFilter {
            name: route::CORS_FILTER.to_string(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
                &Cors::default(),
            ))),
            ..Default::default()
        };
        let fault = hcm::HttpFilter {
            name: route::FAULT_FILTER.to_string(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
                &HttpFault::default(),
            ))),
            ..Default::default()
        };
        vec![cors, fault, router]
    } else {
        vec![router]
    };
    hcm::HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        codec_type: hcm::http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::Rds(
            hcm::Rds {
                config_source: Some(ads()),
                route_config_name: route_config.to_string(),
            },
        )),
        http_filters,
        use_remote_address: Some(BoolValue { value: false }),
        normalize_path: Some(BoolValue { value: true }),
        upgrade_configs: vec![hcm::http_connection_manager::UpgradeConfig {
            upgrade_type: "websocket".to_string(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Envoy's router, the last HTTP filter of every connection manager.
pub fn router_filter() -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: "envoy.filters.http.router".to_string(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
            &Router::default(),
        ))),
        ..Default::default()
    }
}

/// A sidecar's outbound connection manager, traced as `tracing` says.
pub(crate) fn http_filter(
    stat_prefix: &str,
    route_config: &str,
    tracing: Option<hcm::http_connection_manager::Tracing>,
) -> l::Filter {
    let mut manager = http_connection_manager(stat_prefix, route_config, true);
    manager.tracing = tracing;
    l::Filter {
        name: "envoy.filters.network.http_connection_manager".to_string(),
        config_type: Some(l::filter::ConfigType::TypedConfig(any(&manager))),
    }
}

/// A TCP proxy sharing connections among `clusters` by weight (one
/// cluster: all of them), as `tcp[]` and `tls[]` rules of a VirtualService
/// ask.
pub(crate) fn tcp_proxy_weighted(stat_prefix: &str, clusters: Vec<(String, u32)>) -> l::Filter {
    let specifier = match clusters.as_slice() {
        [(only, _)] => tcp::tcp_proxy::ClusterSpecifier::Cluster(only.clone()),
        _ => tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(tcp::tcp_proxy::WeightedCluster {
            clusters: clusters
                .into_iter()
                .map(
                    |(name, weight)| tcp::tcp_proxy::weighted_cluster::ClusterWeight {
                        name,
                        weight,
                        ..Default::default()
                    },
                )
                .collect(),
        }),
    };
    l::Filter {
        name: "envoy.filters.network.tcp_proxy".to_string(),
        config_type: Some(l::filter::ConfigType::TypedConfig(any(&tcp::TcpProxy {
            stat_prefix: stat_prefix.to_string(),
            cluster_specifier: Some(specifier),
            ..Default::default()
        }))),
    }
}

pub(crate) fn tcp_proxy(cluster: &str) -> l::Filter {
    l::Filter {
        name: "envoy.filters.network.tcp_proxy".to_string(),
        config_type: Some(l::filter::ConfigType::TypedConfig(any(&tcp::TcpProxy {
            stat_prefix: cluster.to_string(),
            cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::Cluster(
                cluster.to_string(),
            )),
            ..Default::default()
        }))),
    }
}
