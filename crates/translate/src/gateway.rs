//! A gateway proxy's listeners and routes, from the Istio Gateways whose
//! selector picks it (`Model::gateways_for`) and the VirtualServices bound to
//! them (`Model::virtual_services_for_gateway`), named as istiod names them.
//!
//! - One listener per bind address and port (`0.0.0.0_8080`), bound; the
//!   port is the target port of the gateway's own Service for the server's
//!   port when there is one (`target_ports`), as istiod maps it.
//! - Plain HTTP servers of a port share one filter chain and the route
//!   configuration `http.PORT`; a server with `httpsRedirect` makes its
//!   virtual hosts answer every plain request with a redirect to HTTPS.
//! - A server terminating TLS (SIMPLE, MUTUAL, OPTIONAL_MUTUAL,
//!   ISTIO_MUTUAL) gets a filter chain of its own, matched by SNI on its
//!   hosts, with its certificate from files, from the Secret its
//!   `credentialName` names (SDS `kubernetes://NAME` over ADS, see
//!   `tls::downstream_credential`), or the workload's own for ISTIO_MUTUAL,
//!   and the route configuration `https.PORT.PORT_NAME.GATEWAY.NAMESPACE`.
//! - A passthrough server (TLS or HTTPS, mode PASSTHROUGH) gets a filter
//!   chain per `tls[]` match of a bound VirtualService, on the SNI names the
//!   match and the server share, proxying the connection untouched; a TCP
//!   server takes the first `tcp[]` rule that lets it in. Weights split
//!   connections. A TLS server terminating TLS proxies the plaintext by
//!   `tcp[]` the same way; an AUTO_PASSTHROUGH server passes each
//!   connection to the cluster its SNI name spells
//!   (`outbound_.PORT_.SUBSET_.HOST`), for every service it exposes.
//! - Virtual hosts are `HOST:PORT` for each host of a bound VirtualService
//!   the server exposes (the narrower of the two names when both are
//!   wildcards of each other), with the VirtualService's routes whose
//!   `match.gateways` allow this Gateway. A route configuration with none
//!   answers 404 (`blackhole:PORT`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::listener::v3 as l;
use envoy_types::pb::envoy::config::route::v3 as r;
use envoy_types::pb::google::protobuf::BoolValue;

use shmesh_api::objects::{
    Gateway, RouteDestination, Server, ServerProtocol, ServerTlsMode, VirtualServiceSpec,
};
use shmesh_model::{hosts, Model, Policy};

use super::{any, istio_names, listener, route, socket_address, tls, ProxyView};

/// One server of one Gateway, as the proxy takes it.
struct Bound<'a> {
    gateway: &'a Arc<Gateway>,
    server: &'a Server,
    /// `namespace/name` of the Gateway, as `match.gateways` names it.
    full_name: String,
}

impl Bound<'_> {
    fn namespace(&self) -> &str {
        self.gateway
            .metadata
            .namespace
            .as_deref()
            .unwrap_or("default")
    }

    fn port(&self) -> u16 {
        u16::try_from(self.server.port.number).unwrap_or(0)
    }

    fn address(&self) -> &str {
        self.server.bind.as_deref().unwrap_or("0.0.0.0")
    }

    /// The server terminates TLS and routes HTTP.
    fn terminates(&self) -> bool {
        self.server.is_http()
            && matches!(
                self.tls_mode(),
                Some(
                    ServerTlsMode::Simple
                        | ServerTlsMode::Mutual
                        | ServerTlsMode::OptionalMutual
                        | ServerTlsMode::IstioMutual
                )
            )
    }

    /// The server passes TLS through to the destination its SNI names.
    fn passes_through(&self) -> bool {
        matches!(
            self.server.protocol(),
            Some(ServerProtocol::Https | ServerProtocol::Tls)
        ) && self
            .server
            .tls
            .as_ref()
            .is_some_and(|t| t.mode() == ServerTlsMode::Passthrough)
    }

    /// A TLS server that terminates TLS and proxies what is inside as TCP
    /// (by the bound VirtualServices' `tcp[]` rules).
    fn terminates_tcp(&self) -> bool {
        self.server.protocol() == Some(ServerProtocol::Tls)
            && matches!(
                self.tls_mode(),
                Some(
                    ServerTlsMode::Simple
                        | ServerTlsMode::Mutual
                        | ServerTlsMode::OptionalMutual
                        | ServerTlsMode::IstioMutual
                )
            )
    }

    /// A TLS server in AUTO_PASSTHROUGH mode: the SNI name a client sends
    /// (`outbound_.PORT_.SUBSET_.HOST`, as a sidecar of another network
    /// names its destination) picks the cluster, with no VirtualService.
    fn auto_passthrough(&self) -> bool {
        self.server.protocol() == Some(ServerProtocol::Tls)
            && self.tls_mode() == Some(ServerTlsMode::AutoPassthrough)
    }

    fn tls_mode(&self) -> Option<ServerTlsMode> {
        let tls = self.server.tls.as_ref()?;
        // `httpsRedirect` alone on a plain server sets no TLS mode.
        tls.mode.as_ref()?;
        Some(tls.mode())
    }

    /// The VirtualServices bound to this server's Gateway that the proxy
    /// may see.
    fn virtual_services<'m>(
        &self,
        model: &'m Model,
        view: &ProxyView,
    ) -> Vec<&'m Arc<Policy<VirtualServiceSpec>>> {
        let gw_ns = self.namespace();
        model
            .virtual_services_for_gateway(gw_ns, &self.gateway.metadata.name)
            .into_iter()
            .filter(|vs| vs.visible_to(&view.namespace) || vs.visible_to(gw_ns))
            .collect()
    }

    /// The names this server exposes of `host`, a host of a VirtualService
    /// of `vs_namespace`: per server host whose namespace part admits it,
    /// the narrower of the two.
    fn exposed<'s>(
        &'s self,
        vs_namespace: &'s str,
        host: &'s str,
    ) -> impl Iterator<Item = String> + 's {
        self.server.hosts.iter().filter_map(move |entry| {
            let (ns, server_host) = Server::host_parts(entry, self.namespace());
            (ns == "*" || ns == vs_namespace)
                .then(|| intersection(host, server_host))
                .flatten()
        })
    }

    /// A rule's `match.gateways` names this Gateway (or nothing), and its
    /// `match.port` this port (or none).
    fn admits(&self, gateways: &[String], port: Option<i64>, vs_namespace: &str) -> bool {
        let names = |g: &String| {
            *g == self.full_name
                || (vs_namespace == self.namespace() && *g == self.gateway.metadata.name)
        };
        (gateways.is_empty() || gateways.iter().any(names))
            && port.is_none_or(|p| p == i64::from(self.port()))
    }

    /// A filter chain proxying connections to `clusters` by weight, matched
    /// by `filter_chain_match`.
    fn tcp_chain(
        &self,
        filter_chain_match: Option<l::FilterChainMatch>,
        clusters: Vec<(String, u32)>,
    ) -> l::FilterChain {
        let stat_prefix = format!(
            "outbound_{}",
            istio_names::listener(self.address(), self.port())
        );
        l::FilterChain {
            filter_chain_match,
            filters: vec![listener::tcp_proxy_weighted(&stat_prefix, clusters)],
            ..Default::default()
        }
    }

    /// `https.443.https-web.web.edge`, as istiod names a TLS server's routes.
    fn https_route_name(&self) -> String {
        let port_name = self.server.port.name.as_deref().unwrap_or("");
        format!(
            "https.{}.{}.{}.{}",
            self.port(),
            port_name,
            self.gateway.metadata.name,
            self.namespace()
        )
    }
}

/// The port the proxy listens on for each Gateway server port: the target
/// port of the Service of its namespace that selects it and has that port,
/// as istiod maps them (a Gateway says 80, the pod listens on 8080 behind
/// its Service); a port no Service maps is listened on as it is.
fn target_ports(model: &Model, view: &ProxyView) -> BTreeMap<u16, u16> {
    let mut out = BTreeMap::new();
    for svc in model.services().values() {
        if !super::inbound::selects_view(svc, view) {
            continue;
        }
        for port in &svc.ports {
            if let shmesh_model::TargetPort::Number(target) = port.target {
                out.entry(port.number).or_insert(target);
            }
        }
    }
    out
}

/// The servers of every Gateway picking the proxy, in Gateway and server order.
fn servers<'a>(model: &'a Model, view: &ProxyView) -> Vec<Bound<'a>> {
    let mut out = Vec::new();
    for gateway in model.gateways_for(&view.namespace, &view.labels) {
        let namespace = gateway.metadata.namespace.as_deref().unwrap_or("default");
        let full_name = format!("{namespace}/{}", gateway.metadata.name);
        for server in &gateway.spec.servers {
            out.push(Bound {
                gateway,
                server,
                full_name: full_name.clone(),
            });
        }
    }
    out.retain(|b| b.port() != 0);
    out
}

/// The gateway's listeners, by name.
pub fn listeners(model: &Model, view: &ProxyView) -> Vec<(String, l::Listener)> {
    let targets = target_ports(model, view);
    let mut by_address: BTreeMap<(String, u16), Vec<Bound>> = BTreeMap::new();
    for bound in servers(model, view) {
        let listen = targets.get(&bound.port()).copied().unwrap_or(bound.port());
        by_address
            .entry((bound.address().to_string(), listen))
            .or_default()
            .push(bound);
    }
    let mut out = Vec::new();
    for ((address, listen), servers) in by_address {
        // Routes keep the server's port in their names, as istiod's do.
        let port = servers.first().map_or(listen, Bound::port);
        let name = istio_names::listener(&address, listen);
        let mut chains = Vec::new();
        let mut plain = false;
        let mut sni_seen: BTreeSet<String> = BTreeSet::new();
        let mut opaque: Option<l::FilterChain> = None;
        for bound in &servers {
            if bound.terminates() {
                if let Some(chain) = tls_chain(model, view, bound, &name, &mut sni_seen) {
                    chains.push(chain);
                }
            } else if bound.server.is_http() {
                plain = true;
            } else if bound.passes_through() {
                chains.extend(passthrough_chains(model, view, bound, &mut sni_seen));
            } else if bound.auto_passthrough() {
                chains.extend(auto_passthrough_chains(model, view, bound, &mut sni_seen));
            } else if bound.terminates_tcp() {
                chains.extend(terminated_tcp_chain(model, view, bound, &mut sni_seen));
            } else if bound.server.protocol() == Some(ServerProtocol::Tcp) && opaque.is_none() {
                opaque = tcp_clusters(model, view, bound).map(|c| bound.tcp_chain(None, c));
            }
        }
        let tls = !chains.is_empty();
        if plain {
            chains.push(l::FilterChain {
                filters: vec![gateway_http(
                    model,
                    view,
                    &format!("outbound_{name}"),
                    &format!("http.{port}"),
                )],
                ..Default::default()
            });
        }
        // One chain may go without a match: plain HTTP wins over TCP, as
        // the port's first protocol does in Istio.
        if !plain {
            chains.extend(opaque);
        }
        if chains.is_empty() {
            continue;
        }
        let listener_filters = if tls {
            vec![listener::tls_inspector()]
        } else {
            Vec::new()
        };
        out.push((
            name.clone(),
            l::Listener {
                name,
                address: Some(socket_address(&address, listen)),
                traffic_direction: core::TrafficDirection::Outbound as i32,
                filter_chains: chains,
                listener_filters,
                ..Default::default()
            },
        ));
    }
    out
}

/// The SNI names a server's hosts match (none for `*`: any name).
fn server_names(bound: &Bound) -> Vec<String> {
    let mut names: Vec<String> = bound
        .server
        .hosts
        .iter()
        .map(|entry| Server::host_parts(entry, bound.namespace()).1.to_string())
        .collect();
    if names.iter().any(|h| h == "*") {
        names.clear();
    }
    names.sort();
    names.dedup();
    names
}

/// A terminating server's filter chain; `None` when its names are already
/// taken by an earlier server of the port (Envoy refuses two chains with the
/// same match) or it has no certificate to serve.
fn tls_chain(
    model: &Model,
    view: &ProxyView,
    bound: &Bound,
    listener_name: &str,
    seen: &mut BTreeSet<String>,
) -> Option<l::FilterChain> {
    let names = server_names(bound);
    let key = names.join(",");
    if !seen.insert(key) {
        return None;
    }
    let socket = terminating_socket(view, bound)?;
    Some(l::FilterChain {
        filter_chain_match: Some(l::FilterChainMatch {
            server_names: names,
            ..Default::default()
        }),
        transport_socket: Some(socket),
        filters: vec![gateway_http(
            model,
            view,
            &format!("outbound_{listener_name}"),
            &bound.https_route_name(),
        )],
        ..Default::default()
    })
}

/// The TLS a terminating server presents: its own certificate (from files
/// or its `credentialName`), or the workload's for ISTIO_MUTUAL.
fn terminating_socket(view: &ProxyView, bound: &Bound) -> Option<core::TransportSocket> {
    let settings = bound.server.tls.as_ref()?;
    Some(match bound.tls_mode()? {
        ServerTlsMode::IstioMutual => {
            tls::downstream_istio_mutual(&view.certificates, &tls::GATEWAY_ALPN)?
        }
        _ => tls::downstream_server(settings),
    })
}

/// A TLS server terminating TLS: the chain of its SNI names, proxying the
/// connection's plaintext by the first bound `tcp[]` rule that lets it in.
fn terminated_tcp_chain(
    model: &Model,
    view: &ProxyView,
    bound: &Bound,
    seen: &mut BTreeSet<String>,
) -> Option<l::FilterChain> {
    let names = server_names(bound);
    let clusters = tcp_clusters(model, view, bound)?;
    let socket = terminating_socket(view, bound)?;
    if !seen.insert(names.join(",")) {
        return None;
    }
    let mut chain = bound.tcp_chain(
        Some(l::FilterChainMatch {
            server_names: names,
            ..Default::default()
        }),
        clusters,
    );
    chain.transport_socket = Some(socket);
    Some(chain)
}

/// An AUTO_PASSTHROUGH server's chains: for each port of each service the
/// server exposes (and each subset of its DestinationRule), the SNI name
/// `outbound_.PORT_.SUBSET_.HOST` passed through to that cluster.
fn auto_passthrough_chains(
    model: &Model,
    view: &ProxyView,
    bound: &Bound,
    seen: &mut BTreeSet<String>,
) -> Vec<l::FilterChain> {
    let mut out = Vec::new();
    for svc in super::visible_services(model, view) {
        if bound
            .exposed(&svc.namespace, &svc.hostname)
            .next()
            .is_none()
        {
            continue;
        }
        let mut subsets = vec![String::new()];
        if let Some(dr) = model.destination_rule(&svc.hostname, &view.namespace, &view.labels) {
            subsets.extend(dr.spec.subsets.iter().map(|s| s.name.clone()));
        }
        for port in &svc.ports {
            for subset in &subsets {
                let sni = format!("outbound_.{}_.{subset}_.{}", port.number, svc.hostname);
                if !seen.insert(sni.clone()) {
                    continue;
                }
                let cluster = istio_names::outbound_cluster(port.number, subset, &svc.hostname);
                out.push(bound.tcp_chain(
                    Some(l::FilterChainMatch {
                        server_names: vec![sni],
                        ..Default::default()
                    }),
                    vec![(cluster, 100)],
                ));
            }
        }
    }
    out
}

/// The filter chains of a passthrough server: one per `tls[]` match of a
/// bound VirtualService, on the SNI names the match and the server share,
/// proxying the connection as it is to the rule's destinations.
fn passthrough_chains(
    model: &Model,
    view: &ProxyView,
    bound: &Bound,
    seen: &mut BTreeSet<String>,
) -> Vec<l::FilterChain> {
    let mut out = Vec::new();
    for vs in bound.virtual_services(model, view) {
        for rule in &vs.spec.tls {
            for m in &rule.match_ {
                if !bound.admits(&m.gateways, m.port, &vs.namespace) {
                    continue;
                }
                let mut names: Vec<String> = m
                    .sni_hosts
                    .iter()
                    .flat_map(|sni| bound.exposed(&vs.namespace, sni))
                    .collect();
                names.sort();
                names.dedup();
                if names.is_empty() || !seen.insert(names.join(",")) {
                    continue;
                }
                let clusters = l4_clusters(model, &vs.namespace, &rule.route, bound.port());
                let sni = l::FilterChainMatch {
                    server_names: names,
                    ..Default::default()
                };
                out.push(bound.tcp_chain(Some(sni), clusters));
            }
        }
    }
    out
}

/// Where a TCP server (or a TLS server terminating TLS) sends connections:
/// the first `tcp[]` rule of a bound VirtualService (one of whose hosts the
/// server exposes) whose match lets this Gateway and port in.
fn tcp_clusters(model: &Model, view: &ProxyView, bound: &Bound) -> Option<Vec<(String, u32)>> {
    bound
        .virtual_services(model, view)
        .into_iter()
        .find_map(|vs| {
            let exposed = vs
                .hosts
                .iter()
                .any(|h| bound.exposed(&vs.namespace, h).next().is_some());
            if !exposed {
                return None;
            }
            let rule = vs.spec.tcp.iter().find(|rule| {
                rule.match_.is_empty()
                    || rule
                        .match_
                        .iter()
                        .any(|m| bound.admits(&m.gateways, m.port, &vs.namespace))
            })?;
            Some(l4_clusters(model, &vs.namespace, &rule.route, bound.port()))
        })
}

/// The clusters of a `tcp[]` or `tls[]` rule's destinations and their
/// weights (relative; one destination takes everything).
pub(crate) fn l4_clusters(
    model: &Model,
    vs_namespace: &str,
    destinations: &[RouteDestination],
    listener_port: u16,
) -> Vec<(String, u32)> {
    let several = destinations.len() > 1;
    destinations
        .iter()
        .filter_map(|dst| {
            let weight = dst.weight.unwrap_or(if several { 0 } else { 100 }).max(0) as u32;
            if several && weight == 0 {
                return None;
            }
            let d = &dst.destination;
            let host = hosts::resolve(&d.host, vs_namespace);
            let port = route::destination_port(model, &host, d, listener_port);
            let subset = d.subset.as_deref().unwrap_or("");
            Some((istio_names::outbound_cluster(port, subset, &host), weight))
        })
        .collect()
}

/// The connection manager of a gateway: like a sidecar's, but the gateway is
/// the edge, so the client's address is the remote address.
fn gateway_http(
    model: &Model,
    view: &ProxyView,
    stat_prefix: &str,
    route_config: &str,
) -> l::Filter {
    let mut hcm = listener::http_connection_manager(stat_prefix, route_config, true);
    hcm.use_remote_address = Some(BoolValue { value: true });
    hcm.tracing = crate::telemetry::hcm_tracing(model, view, crate::telemetry::Side::Gateway);
    l::Filter {
        name: "envoy.filters.network.http_connection_manager".to_string(),
        config_type: Some(l::filter::ConfigType::TypedConfig(any(&hcm))),
    }
}

/// The gateway's route configurations, by name.
pub fn route_configs(model: &Model, view: &ProxyView) -> Vec<(String, r::RouteConfiguration)> {
    // Route configuration name → the servers whose virtual hosts it holds.
    let mut by_config: BTreeMap<String, Vec<Bound>> = BTreeMap::new();
    for bound in servers(model, view) {
        let name = if bound.terminates() {
            bound.https_route_name()
        } else if bound.server.is_http() {
            format!("http.{}", bound.port())
        } else {
            continue;
        };
        by_config.entry(name).or_default().push(bound);
    }
    by_config
        .into_iter()
        .map(|(name, servers)| {
            let port = servers[0].port();
            let mut vhosts: Vec<r::VirtualHost> = Vec::new();
            let mut taken: BTreeSet<String> = BTreeSet::new();
            for bound in &servers {
                virtual_hosts(model, view, bound, port, &mut taken, &mut vhosts);
            }
            if vhosts.is_empty() {
                vhosts.push(blackhole(port));
            }
            (name.clone(), route::route_configuration(name, vhosts))
        })
        .collect()
}

/// The virtual hosts one server contributes: each host of each bound
/// VirtualService it exposes, once per route configuration.
fn virtual_hosts(
    model: &Model,
    view: &ProxyView,
    bound: &Bound,
    port: u16,
    taken: &mut BTreeSet<String>,
    out: &mut Vec<r::VirtualHost>,
) {
    let redirect = bound
        .server
        .tls
        .as_ref()
        .is_some_and(|t| t.https_redirect && !bound.terminates());
    for vs in bound.virtual_services(model, view) {
        // The VirtualService's routes for this Gateway, built once for all
        // of its hosts.
        let mut routes: Option<Vec<r::Route>> = None;
        for host in vs
            .hosts
            .iter()
            .flat_map(|h| bound.exposed(&vs.namespace, h))
        {
            if !taken.insert(host.clone()) {
                continue;
            }
            let routes = routes
                .get_or_insert_with(|| {
                    route::vs_routes(model, view, vs, port, Some(&bound.full_name))
                })
                .clone();
            if routes.is_empty() {
                continue;
            }
            let mut domains = vec![host.clone()];
            if host != "*" {
                domains.push(format!("{host}:*"));
            }
            out.push(r::VirtualHost {
                name: istio_names::virtual_host(&host, port),
                domains,
                routes,
                require_tls: if redirect {
                    r::virtual_host::TlsRequirementType::All as i32
                } else {
                    r::virtual_host::TlsRequirementType::None as i32
                },
                include_request_attempt_count: true,
                ..Default::default()
            });
        }
    }
}

/// The host a VirtualService host and a server host both cover: the
/// narrower of the two, when one covers the other.
fn intersection(vs_host: &str, server_host: &str) -> Option<String> {
    if hosts::matches(server_host, vs_host) {
        Some(vs_host.to_string())
    } else if hosts::matches(vs_host, server_host) {
        Some(server_host.to_string())
    } else {
        None
    }
}

/// What a port with no bound VirtualService answers: 404, as istiod does.
fn blackhole(port: u16) -> r::VirtualHost {
    r::VirtualHost {
        name: istio_names::virtual_host("blackhole", port),
        domains: vec!["*".to_string()],
        routes: vec![r::Route {
            name: "default".to_string(),
            r#match: Some(r::RouteMatch {
                path_specifier: Some(r::route_match::PathSpecifier::Prefix("/".to_string())),
                ..Default::default()
            }),
            action: Some(r::route::Action::DirectResponse(r::DirectResponseAction {
                status: 404,
                ..Default::default()
            })),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The credential names the Gateways picking the proxy of `view` use: the
/// Secrets (of the proxy's namespace) it takes over SDS.
pub fn credential_names(model: &Model, view: &ProxyView) -> BTreeSet<String> {
    model
        .gateways_for(&view.namespace, &view.labels)
        .into_iter()
        .flat_map(|gw| gw.spec.servers.iter())
        .filter_map(|s| s.tls.as_ref()?.credential_name.clone())
        .collect()
}
