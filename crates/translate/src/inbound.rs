//! The inbound half of a sidecar under Istio's capture.
//!
//! Istio's init container redirects every TCP connection that reaches a pod
//! to 15006. `virtualInbound` listens there, recovers each connection's
//! original destination and picks a filter chain by its destination port:
//! one chain per port a service in the workload's namespace selects the
//! workload on (its target port), routing to the cluster `inbound|PORT||`;
//! a chain for 15006 itself that goes nowhere (a connection addressed to the
//! listener would loop); and a catch-all that passes anything else on to
//! where it was going, through `InboundPassthroughCluster`.
//!
//! Inbound clusters are original-destination clusters: the connection goes
//! to the very address and port the caller dialed, from 127.0.0.6, the
//! address capture lets through untouched. Nothing in them depends on the
//! pod's IP, so replicas of one workload share them.
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
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as uhttp;
use envoy_types::pb::google::protobuf::BoolValue;

use super::cluster::BuiltCluster;
use super::{any, duration, istio_names, listener, socket_address, ListenerMode, ProxyView};
use shmesh_model::{selects, Backing, MeshService, Model, Protocol, TargetPort};

/// The address inbound clusters connect from: capture returns traffic from
/// it on `lo` before any other rule, so the connection reaches the app.
pub const INBOUND_SOURCE_ADDRESS: &str = "127.0.0.6";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// A port the workload serves, as the first service (by host name) that
/// selects it on that port declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundPort {
    /// The target port: where the app listens and what the caller dialed.
    pub port: u16,
    pub protocol: Protocol,
    /// The service that declares it.
    pub service: String,
}

/// The ports of the view's workload: the target ports of every service in
/// its namespace whose selector matches its labels. A named target port
/// takes the number the service's endpoints resolved it to; with no
/// endpoint yet, it is left out until one appears.
pub fn inbound_ports(model: &Model, view: &ProxyView) -> Vec<InboundPort> {
    if view.mode != ListenerMode::Capture || view.labels.is_empty() {
        return Vec::new();
    }
    let mut ports: BTreeMap<u16, InboundPort> = BTreeMap::new();
    for svc in model.services().values().filter(|s| selects_view(s, view)) {
        for port in &svc.ports {
            let target = match &port.target {
                TargetPort::Number(n) => Some(*n),
                TargetPort::Name(_) => model
                    .endpoints(&svc.hostname, port.number)
                    .first()
                    .map(|e| e.port),
            };
            let Some(target) = target else { continue };
            ports.entry(target).or_insert_with(|| InboundPort {
                port: target,
                protocol: port.protocol,
                service: svc.hostname.clone(),
            });
        }
    }
    ports.into_values().collect()
}

/// Whether `svc` is in the view's namespace and selects its workload.
fn selects_view(svc: &MeshService, view: &ProxyView) -> bool {
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
            let mut cluster = original_destination(&name, p.protocol.is_http2());
            cluster.alt_stat_name = format!("{name};");
            built(cluster, p.port)
        })
        .collect();
    out.push(built(
        original_destination(istio_names::INBOUND_PASSTHROUGH, false),
        0,
    ));
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

/// `virtualInbound` on 15006.
pub fn virtual_inbound(model: &Model, view: &ProxyView) -> l::Listener {
    let mut chains: Vec<l::FilterChain> =
        inbound_ports(model, view).iter().map(port_chain).collect();
    // A connection dialed to 15006 itself would come back here forever.
    chains.push(l::FilterChain {
        name: "virtualInbound-blackhole".to_string(),
        filter_chain_match: Some(on_port(istio_names::VIRTUAL_INBOUND_PORT)),
        filters: vec![listener::tcp_proxy(istio_names::BLACKHOLE)],
        ..Default::default()
    });
    chains.push(l::FilterChain {
        name: "virtualInbound-catchall-tcp".to_string(),
        filters: vec![listener::tcp_proxy(istio_names::INBOUND_PASSTHROUGH)],
        ..Default::default()
    });
    l::Listener {
        name: istio_names::VIRTUAL_INBOUND.to_string(),
        address: Some(socket_address("0.0.0.0", istio_names::VIRTUAL_INBOUND_PORT)),
        traffic_direction: core::TrafficDirection::Inbound as i32,
        listener_filters: vec![l::ListenerFilter {
            name: "envoy.filters.listener.original_dst".to_string(),
            config_type: Some(l::listener_filter::ConfigType::TypedConfig(any(
                &OriginalDst::default(),
            ))),
            ..Default::default()
        }],
        filter_chains: chains,
        ..Default::default()
    }
}

fn on_port(port: u16) -> l::FilterChainMatch {
    l::FilterChainMatch {
        destination_port: Some(super::u32_value(port as u32)),
        ..Default::default()
    }
}

/// The chain for one port: Istio's inbound HTTP connection manager for
/// HTTP ports, a TCP proxy for the rest.
fn port_chain(p: &InboundPort) -> l::FilterChain {
    let cluster = istio_names::inbound_cluster(p.port);
    let filter = if p.protocol.is_http() {
        l::Filter {
            name: "envoy.filters.network.http_connection_manager".to_string(),
            config_type: Some(l::filter::ConfigType::TypedConfig(any(&http_manager(
                p.port, &cluster,
            )))),
        }
    } else {
        listener::tcp_proxy(&cluster)
    };
    l::FilterChain {
        name: istio_names::listener("0.0.0.0", p.port),
        filter_chain_match: Some(on_port(p.port)),
        filters: vec![filter],
        ..Default::default()
    }
}

/// Routes every request to the port's inbound cluster with no timeout, and
/// tells the app who called (`x-forwarded-client-cert`) as Istio does.
fn http_manager(port: u16, cluster: &str) -> hcm::HttpConnectionManager {
    let route = r::Route {
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
    let port_text = port.to_string();
    hcm::HttpConnectionManager {
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
        http_filters: vec![listener::router_filter()],
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
}
