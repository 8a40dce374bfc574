//! Tracing: the `tracing` of every HTTP connection manager a sidecar or
//! gateway gets, and the cluster of the collector its spans go to, from the
//! mesh's tracing settings (`Model::tracing`, given to `shmesh serve`).
//!
//! As istiod writes it (pilot's `networking/core/tracing.go`): the
//! provider's config (Zipkin JSON v2 with 128-bit trace ids and no shared
//! span context; OpenTelemetry over gRPC), client and overall sampling at
//! 100% and random sampling at the mesh's percent, custom tags sorted by
//! name, and gateways spawning a span of their own for the upstream request.
//! The collector's cluster is named as Istio's bootstrap names Zipkin's
//! (`zipkin`); it resolves the collector's host by DNS unless it is an IP.

use std::net::IpAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{self as c, cluster};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as e;
use envoy_types::pb::envoy::config::route::v3 as r;
use envoy_types::pb::envoy::config::trace::v3 as trace;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as uhttp;
use envoy_types::pb::envoy::r#type::tracing::v3 as tags;
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::BoolValue;

use shmesh_model::telemetry::{canonical_name, canonical_revision, Collector, TagValue, Tracing};
use shmesh_model::text::{concat, Decimal};
use shmesh_model::Model;

use crate::{any, duration, istio_names, socket_address, ProxyView};

/// The cluster of a Zipkin collector (Istio's bootstrap name).
pub const ZIPKIN_CLUSTER: &str = "zipkin";
/// The cluster of an OpenTelemetry collector.
pub const OPENTELEMETRY_CLUSTER: &str = "opentelemetry";

/// How long a proxy waits for the collector to take a batch of spans.
const COLLECTOR_TIMEOUT: Duration = Duration::from_secs(5);

/// Which connection manager is traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A sidecar's outbound listeners.
    Outbound,
    /// A sidecar's inbound chains.
    Inbound,
    /// A gateway's servers.
    Gateway,
}

/// The `tracing` of a connection manager of `view` on `side`, when the mesh
/// traces.
pub fn hcm_tracing(
    model: &Model,
    view: &ProxyView,
    side: Side,
) -> Option<hcm::http_connection_manager::Tracing> {
    let tracing = model.tracing()?;
    let percent = |value| Some(Percent { value });
    Some(hcm::http_connection_manager::Tracing {
        client_sampling: percent(100.0),
        random_sampling: percent(tracing.sampling),
        overall_sampling: percent(100.0),
        custom_tags: custom_tags(tracing, model, view),
        provider: Some(provider(&tracing.collector, view)),
        // A gateway is the edge: its span stands for the client's request,
        // and one of its own for the request it sends on.
        spawn_upstream_span: (side == Side::Gateway).then_some(BoolValue { value: true }),
        ..Default::default()
    })
}

/// The operation a traced route's spans are named by, as istiod names it
/// (pilot's `getRouteOperation`): `host:port` of the route's one
/// destination cluster, else `name:port` (the VirtualService's name, or the
/// service's host on the inbound side), followed by the path it matches:
/// `/*` for any, `prefix*`, the exact path or the regex. None when the mesh
/// does not trace, since without a tracer Envoy makes no use of it.
pub fn route_decorator(
    model: &Model,
    route: &r::Route,
    name: &str,
    port: u16,
) -> Option<r::Decorator> {
    model.tracing()?;
    use r::route_match::PathSpecifier;
    let path = match route
        .r#match
        .as_ref()
        .and_then(|m| m.path_specifier.as_ref())
    {
        Some(PathSpecifier::Prefix(prefix)) => concat(&[prefix, "*"]),
        Some(PathSpecifier::Path(path)) => path.clone(),
        Some(PathSpecifier::SafeRegex(regex)) => regex.regex.clone(),
        _ => "/*".to_string(),
    };
    let cluster = match &route.action {
        Some(r::route::Action::Route(action)) => match &action.cluster_specifier {
            Some(r::route_action::ClusterSpecifier::Cluster(cluster)) => Some(cluster.as_str()),
            _ => None,
        },
        _ => None,
    };
    let operation = match cluster.and_then(istio_names::cluster_host_port) {
        Some((host, port)) => concat(&[host, ":", port, &path]),
        None => concat(&[name, ":", Decimal::new(port).as_str(), &path]),
    };
    Some(r::Decorator {
        operation,
        ..Default::default()
    })
}

/// The mesh's custom tags, then the workload tags istiod adds to every
/// span (pilot's `buildServiceTags`) unless a custom tag has the name:
/// `istio.canonical_service` and `istio.canonical_revision` from the
/// workload's labels (with the fallbacks Istio's injector uses to set
/// them), `istio.namespace`, and `istio.mesh_id` (the trust domain, Istio's
/// default mesh id). Sorted by name.
fn custom_tags(tracing: &Tracing, model: &Model, view: &ProxyView) -> Vec<tags::CustomTag> {
    use tags::custom_tag::{Environment, Header, Literal, Type};
    let istio = [
        (
            "istio.canonical_revision",
            canonical_revision(&view.labels).to_string(),
        ),
        (
            "istio.canonical_service",
            canonical_name(&view.labels)
                .map_or("unknown", String::as_str)
                .to_string(),
        ),
        ("istio.mesh_id", model.trust_domain().to_string()),
        ("istio.namespace", view.namespace.clone()),
    ];
    let literal = |tag: &str, value: String| tags::CustomTag {
        tag: tag.to_string(),
        r#type: Some(Type::Literal(Literal { value })),
    };
    let mut out: Vec<tags::CustomTag> = istio
        .into_iter()
        .filter(|(tag, _)| !tracing.custom_tags.iter().any(|t| t.name == *tag))
        .map(|(tag, value)| literal(tag, value))
        .collect();
    out.extend(tracing.custom_tags.iter().map(|t| tags::CustomTag {
        tag: t.name.clone(),
        r#type: Some(match &t.value {
            TagValue::Literal(value) => Type::Literal(Literal {
                value: value.clone(),
            }),
            TagValue::Header(name) => Type::RequestHeader(Header {
                name: name.clone(),
                ..Default::default()
            }),
            TagValue::Environment(name) => Type::Environment(Environment {
                name: name.clone(),
                ..Default::default()
            }),
        }),
    }));
    out.sort_by(|a, b| a.tag.cmp(&b.tag));
    out
}

/// The service a proxy's spans are reported for (`APP.NAMESPACE`, as
/// Istio's agent names the proxy's cluster), from the view's labels.
pub fn service_name(view: &ProxyView) -> Option<String> {
    shmesh_model::telemetry::workload_service(&view.labels, &view.namespace)
}

/// The tracer of `view`'s connection managers. Zipkin takes the service from
/// Envoy's `node.cluster`; OpenTelemetry is told it (else Envoy reports
/// `unknown_service:envoy`).
fn provider(collector: &Collector, view: &ProxyView) -> trace::tracing::Http {
    let host = match collector.host().parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => collector.host().to_string(),
    };
    let authority = format!("{host}:{}", collector.port());
    let (name, config) = match collector {
        Collector::Zipkin { .. } => (
            "envoy.tracers.zipkin",
            any(&trace::ZipkinConfig {
                collector_service: Some(core::HttpService {
                    http_uri: Some(core::HttpUri {
                        uri: format!("http://{authority}/api/v2/spans"),
                        timeout: Some(duration(COLLECTOR_TIMEOUT)),
                        http_upstream_type: Some(core::http_uri::HttpUpstreamType::Cluster(
                            ZIPKIN_CLUSTER.to_string(),
                        )),
                    }),
                    ..Default::default()
                }),
                collector_endpoint_version: trace::zipkin_config::CollectorEndpointVersion::HttpJson
                    as i32,
                trace_id_128bit: true,
                shared_span_context: Some(BoolValue { value: false }),
                ..Default::default()
            }),
        ),
        Collector::OpenTelemetry { .. } => (
            "envoy.tracers.opentelemetry",
            any(&trace::OpenTelemetryConfig {
                grpc_service: Some(core::GrpcService {
                    target_specifier: Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(
                        core::grpc_service::EnvoyGrpc {
                            cluster_name: OPENTELEMETRY_CLUSTER.to_string(),
                            authority,
                            ..Default::default()
                        },
                    )),
                    timeout: Some(duration(COLLECTOR_TIMEOUT)),
                    ..Default::default()
                }),
                service_name: service_name(view).unwrap_or_default(),
                ..Default::default()
            }),
        ),
    };
    trace::tracing::Http {
        name: name.to_string(),
        config_type: Some(trace::tracing::http::ConfigType::TypedConfig(config)),
    }
}

/// The collector's cluster, when the mesh traces: by DNS unless its host
/// is an IP; HTTP/2 for OpenTelemetry's gRPC.
pub fn collector_cluster(model: &Model) -> Option<(String, c::Cluster)> {
    let collector = &model.tracing()?.collector;
    let (name, http2) = match collector {
        Collector::Zipkin { .. } => (ZIPKIN_CLUSTER, false),
        Collector::OpenTelemetry { .. } => (OPENTELEMETRY_CLUSTER, true),
    };
    let discovery = if collector.host().parse::<IpAddr>().is_ok() {
        cluster::DiscoveryType::Static
    } else {
        cluster::DiscoveryType::StrictDns
    };
    let mut out = c::Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(discovery as i32)),
        connect_timeout: Some(duration(Duration::from_secs(1))),
        load_assignment: Some(e::ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![e::LocalityLbEndpoints {
                lb_endpoints: vec![e::LbEndpoint {
                    host_identifier: Some(e::lb_endpoint::HostIdentifier::Endpoint(e::Endpoint {
                        address: Some(socket_address(collector.host(), collector.port())),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    if http2 {
        use uhttp::http_protocol_options::{explicit_http_config, ExplicitHttpConfig};
        out.typed_extension_protocol_options.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            any(&uhttp::HttpProtocolOptions {
                upstream_protocol_options: Some(
                    uhttp::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                        ExplicitHttpConfig {
                            protocol_config: Some(
                                explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                                    core::Http2ProtocolOptions::default(),
                                ),
                            ),
                        },
                    ),
                ),
                ..Default::default()
            }),
        );
    }
    Some((name.to_string(), out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{decode, model, view};
    use crate::{build, ListenerMode};
    use envoy_types::pb::envoy::config::listener::v3 as l;
    use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
    use prost::Message;
    use shmesh_cache::{ResourceType, Snapshot};
    use shmesh_model::telemetry::CustomTag;

    /// `reviews` (its pods labelled `app: reviews`) and a Gateway on port
    /// 8080 for `istio: ingressgateway` proxies, with a route to it.
    const MESH: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  selector: {app: reviews}\n  ports: [{name: http, port: 9080, targetPort: 9080}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: r1, namespace: default, labels: {app: reviews}}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: public, namespace: default}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*']}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: ['*']\n  gateways: [public]\n  http: [{route: [{destination: {host: reviews}}]}]\n";

    fn traced(collector: Collector) -> Model {
        let mut m = model(MESH);
        m.set_tracing(Some(Tracing {
            collector,
            sampling: 2.5,
            custom_tags: vec![
                CustomTag {
                    name: "user".into(),
                    value: TagValue::Header("end-user".into()),
                },
                CustomTag {
                    name: "mesh".into(),
                    value: TagValue::Literal("blue".into()),
                },
            ],
        }));
        m
    }

    /// The `tracing` of every connection manager in the snapshot's
    /// listeners, by listener name.
    fn tracings(snap: &Snapshot) -> Vec<(String, Option<hcm::http_connection_manager::Tracing>)> {
        let mut out = Vec::new();
        for name in snap.get(ResourceType::Listener).names() {
            let listener: l::Listener = decode(snap, ResourceType::Listener, name);
            for chain in &listener.filter_chains {
                for filter in &chain.filters {
                    if filter.name != "envoy.filters.network.http_connection_manager" {
                        continue;
                    }
                    let Some(l::filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
                        panic!("no config");
                    };
                    let manager = hcm::HttpConnectionManager::decode(any.value.as_slice())
                        .expect("a connection manager");
                    out.push((name.to_string(), manager.tracing));
                }
            }
        }
        out
    }

    #[test]
    fn every_connection_manager_of_sidecars_and_gateways_is_traced() {
        let m = traced(Collector::Zipkin {
            host: "zipkin.istio-system".into(),
            port: 9411,
        });
        let mut sidecar = view("default");
        sidecar.labels = [("app".to_string(), "reviews".to_string())].into();
        let mut gateway = view("default");
        gateway.mode = ListenerMode::Router;
        gateway.labels = [("istio".to_string(), "ingressgateway".to_string())].into();
        for (v, sides) in [
            (&sidecar, &[Side::Outbound, Side::Inbound][..]),
            (&gateway, &[Side::Gateway][..]),
        ] {
            let snap = build(&m, v);
            let found = tracings(&snap);
            for side in sides {
                let want = hcm_tracing(&m, v, *side);
                assert!(
                    found.iter().any(|(_, t)| *t == want),
                    "{side:?} in {found:?}"
                );
            }
            assert!(found.len() >= sides.len());
            for (name, t) in &found {
                let t = t.as_ref().unwrap_or_else(|| panic!("{name} is not traced"));
                assert_eq!(t.random_sampling, Some(Percent { value: 2.5 }));
                assert_eq!(t.overall_sampling, Some(Percent { value: 100.0 }));
                let tags: Vec<&str> = t.custom_tags.iter().map(|t| t.tag.as_str()).collect();
                assert_eq!(
                    tags,
                    [
                        "istio.canonical_revision",
                        "istio.canonical_service",
                        "istio.mesh_id",
                        "istio.namespace",
                        "mesh",
                        "user"
                    ],
                    "sorted by name"
                );
                let literal = |name: &str| {
                    t.custom_tags
                        .iter()
                        .find(|t| t.tag == name)
                        .and_then(|t| match &t.r#type {
                            Some(tags::custom_tag::Type::Literal(l)) => Some(l.value.as_str()),
                            _ => None,
                        })
                };
                // The gateway's labels name no workload.
                let service = if v.mode == ListenerMode::Router {
                    "unknown"
                } else {
                    "reviews"
                };
                assert_eq!(literal("istio.canonical_service"), Some(service));
                assert_eq!(literal("istio.canonical_revision"), Some("latest"));
                assert_eq!(literal("istio.namespace"), Some("default"));
                assert_eq!(literal("istio.mesh_id"), Some("cluster.local"));
                let Some(trace::tracing::Http {
                    name: provider,
                    config_type: Some(trace::tracing::http::ConfigType::TypedConfig(config)),
                }) = &t.provider
                else {
                    panic!("no provider");
                };
                assert_eq!(provider, "envoy.tracers.zipkin");
                let zipkin = trace::ZipkinConfig::decode(config.value.as_slice()).expect("zipkin");
                let uri = zipkin
                    .collector_service
                    .and_then(|s| s.http_uri)
                    .expect("uri");
                assert_eq!(uri.uri, "http://zipkin.istio-system:9411/api/v2/spans");
                assert_eq!(
                    uri.http_upstream_type,
                    Some(core::http_uri::HttpUpstreamType::Cluster(
                        ZIPKIN_CLUSTER.into()
                    ))
                );
                assert_eq!(
                    t.spawn_upstream_span.is_some(),
                    v.mode == ListenerMode::Router
                );
            }
            let cluster: c::Cluster = decode(&snap, ResourceType::Cluster, ZIPKIN_CLUSTER);
            assert_eq!(
                cluster.cluster_discovery_type,
                Some(cluster::ClusterDiscoveryType::Type(
                    cluster::DiscoveryType::StrictDns as i32
                ))
            );
        }

        // Proxyless clients get neither.
        let mut proxyless = view("default");
        proxyless.mode = ListenerMode::Proxyless;
        let snap = build(&m, &proxyless);
        assert!(snap
            .get(ResourceType::Cluster)
            .get(ZIPKIN_CLUSTER)
            .is_none());
        assert!(tracings(&snap).is_empty());
    }

    /// A route of `cluster` (or a weighted split) matching `path`.
    fn route_of(path: Option<r::route_match::PathSpecifier>, cluster: Option<&str>) -> r::Route {
        use r::route_action::ClusterSpecifier;
        let clusters = ClusterSpecifier::WeightedClusters(Default::default());
        r::Route {
            r#match: Some(r::RouteMatch {
                path_specifier: path,
                ..Default::default()
            }),
            action: Some(r::route::Action::Route(r::RouteAction {
                cluster_specifier: Some(
                    cluster.map_or(clusters, |c| ClusterSpecifier::Cluster(c.to_string())),
                ),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn traced_routes_name_their_operation_as_istiod_does() {
        use r::route_match::PathSpecifier;
        let m = traced(Collector::Zipkin {
            host: "10.0.0.9".into(),
            port: 9411,
        });
        let v1 = "outbound|9080|v1|reviews.default.svc.cluster.local";
        let operation = |route: &r::Route| {
            route_decorator(&m, route, "reviews-split", 80)
                .expect("a decorator")
                .operation
        };
        let prefix = Some(PathSpecifier::Prefix("/api/".into()));
        assert_eq!(
            operation(&route_of(prefix.clone(), Some(v1))),
            "reviews.default.svc.cluster.local:9080/api/*"
        );
        // Several destinations: the VirtualService's name and the port.
        assert_eq!(
            operation(&route_of(prefix.clone(), None)),
            "reviews-split:80/api/*"
        );
        let exact = Some(PathSpecifier::Path("/login".into()));
        assert_eq!(operation(&route_of(exact, None)), "reviews-split:80/login");
        let regex = Some(PathSpecifier::SafeRegex(RegexMatcher {
            regex: "/u/[0-9]+".into(),
            ..Default::default()
        }));
        assert_eq!(
            operation(&route_of(regex, Some(v1))),
            "reviews.default.svc.cluster.local:9080/u/[0-9]+"
        );
        assert_eq!(
            operation(&route_of(None, Some("inbound|9080||"))),
            "reviews-split:80/*"
        );
        assert_eq!(
            route_decorator(&model(MESH), &route_of(prefix, Some(v1)), "reviews", 80),
            None,
            "no decorator when the mesh does not trace"
        );

        // A sidecar's outbound and inbound routes to reviews, and the
        // gateway's route, are all named for the service.
        let mut sidecar = view("default");
        sidecar.labels = [("app".to_string(), "reviews".to_string())].into();
        let snap = build(&m, &sidecar);
        let outbound: r::RouteConfiguration = decode(&snap, ResourceType::Route, "9080");
        let want = "reviews.default.svc.cluster.local:9080/*";
        let reviews = outbound
            .virtual_hosts
            .iter()
            .find(|h| h.name == "reviews.default.svc.cluster.local:9080")
            .expect("reviews' virtual host");
        assert_eq!(
            reviews.routes[0]
                .decorator
                .as_ref()
                .map(|d| d.operation.as_str()),
            Some(want)
        );
        let inbound: l::Listener = decode(&snap, ResourceType::Listener, "virtualInbound");
        let operations: Vec<String> = inbound
            .filter_chains
            .iter()
            .flat_map(|c| &c.filters)
            .filter_map(|f| match &f.config_type {
                Some(l::filter::ConfigType::TypedConfig(any)) => {
                    hcm::HttpConnectionManager::decode(any.value.as_slice()).ok()
                }
                _ => None,
            })
            .filter_map(|manager| match manager.route_specifier {
                Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(rc)) => Some(rc),
                _ => None,
            })
            .flat_map(|rc| rc.virtual_hosts)
            .flat_map(|h| h.routes)
            .filter_map(|route| route.decorator.map(|d| d.operation))
            .collect();
        assert!(
            !operations.is_empty() && operations.iter().all(|o| o == want),
            "{operations:?}"
        );
    }

    #[test]
    fn a_custom_tag_takes_the_place_of_istios_tag_of_its_name() {
        let mut m = traced(Collector::Zipkin {
            host: "10.0.0.9".into(),
            port: 9411,
        });
        let mut tracing = m.tracing().cloned().expect("tracing");
        tracing.custom_tags.push(CustomTag {
            name: "istio.namespace".into(),
            value: TagValue::Environment("POD_NAMESPACE".into()),
        });
        m.set_tracing(Some(tracing));
        let t = hcm_tracing(&m, &view("default"), Side::Outbound).expect("traced");
        let namespace: Vec<_> = t
            .custom_tags
            .iter()
            .filter(|t| t.tag == "istio.namespace")
            .collect();
        assert_eq!(namespace.len(), 1, "{namespace:?}");
        assert!(matches!(
            namespace[0].r#type,
            Some(tags::custom_tag::Type::Environment(_))
        ));
    }

    #[test]
    fn without_a_collector_nothing_is_traced() {
        let snap = build(&model(MESH), &view("default"));
        let found = tracings(&snap);
        assert!(!found.is_empty());
        assert!(found.iter().all(|(_, t)| t.is_none()), "{found:?}");
        assert!(snap
            .get(ResourceType::Cluster)
            .get(ZIPKIN_CLUSTER)
            .is_none());
    }

    #[test]
    fn an_opentelemetry_collector_by_ip_is_reached_over_http2() {
        let m = traced(Collector::OpenTelemetry {
            host: "10.0.0.9".into(),
            port: 4317,
        });
        let (name, cluster) = collector_cluster(&m).expect("a collector cluster");
        assert_eq!(name, OPENTELEMETRY_CLUSTER);
        assert_eq!(
            cluster.cluster_discovery_type,
            Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Static as i32
            ))
        );
        assert!(cluster
            .typed_extension_protocol_options
            .contains_key("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"));
        let mut sidecar = view("default");
        sidecar.labels = [
            ("app".to_string(), "reviews".to_string()),
            (
                "app.kubernetes.io/name".to_string(),
                "reviews-api".to_string(),
            ),
        ]
        .into();
        let t = hcm_tracing(&m, &sidecar, Side::Outbound).expect("traced");
        let Some(trace::tracing::Http {
            name,
            config_type: Some(trace::tracing::http::ConfigType::TypedConfig(config)),
        }) = t.provider
        else {
            panic!("no provider");
        };
        assert_eq!(name, "envoy.tracers.opentelemetry");
        let otel = trace::OpenTelemetryConfig::decode(config.value.as_slice()).expect("otel");
        let Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(grpc)) =
            otel.grpc_service.and_then(|s| s.target_specifier)
        else {
            panic!("not Envoy gRPC");
        };
        assert_eq!(grpc.cluster_name, OPENTELEMETRY_CLUSTER);
        assert_eq!(grpc.authority, "10.0.0.9:4317");
        // Spans are reported for the workload, named as Istio's agent names
        // the proxy's cluster.
        assert_eq!(otel.service_name, "reviews-api.default");
        assert_eq!(service_name(&view("default")), None);
    }
}
