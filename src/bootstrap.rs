//! Envoy bootstraps that point a proxy at shmesh over ADS.
//!
//! Besides ADS, a bootstrap carries what istio-proxy's own bootstrap gives
//! Envoy for monitoring: Istio's stats tags (so Prometheus series carry
//! `cluster_name`, `response_code`, ... as Istio's dashboards query them)
//! and the Prometheus endpoint on 15090 (`/stats/prometheus`, served by the
//! admin through the `prometheus_stats` cluster).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use envoy_types::pb::envoy::config::bootstrap::v3 as b;
use envoy_types::pb::envoy::config::cluster::v3::{self as c, cluster};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as e;
use envoy_types::pb::envoy::config::listener::v3 as l;
use envoy_types::pb::envoy::config::metrics::v3 as metrics;
use envoy_types::pb::envoy::extensions::upstreams::http::v3 as uhttp;
use envoy_types::pb::google::protobuf::{value::Kind, BoolValue, Struct, Value};

use shmesh_translate::node::OUTBOUND_LISTENER_KEY;
use shmesh_translate::{ads, any, duration, socket_address};

/// The static cluster that reaches shmesh.
pub const XDS_CLUSTER: &str = "xds-grpc";

#[derive(Debug, Clone)]
pub struct Options {
    pub node_id: String,
    /// Envoy's `node.cluster` (the service Zipkin spans are reported as);
    /// defaults to `APP.NAMESPACE` from the labels as Istio's agent sets it,
    /// else the node id.
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    /// Where shmesh serves xDS: one address, or each replica's; at least
    /// one, and only one with `token`.
    pub xds_addrs: Vec<SocketAddr>,
    pub delta: bool,
    pub outbound_listener: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    /// The workload's labels (Istio's `LABELS`).
    pub labels: BTreeMap<String, String>,
    /// The workload's address (Istio's `INSTANCE_IPS`).
    pub instance_ip: Option<IpAddr>,
    /// Connect to xDS over TLS, proving an identity with these files.
    pub credentials: Option<Credentials>,
    /// Connect to xDS over TLS, proving an identity with a token.
    pub token: Option<TokenProof>,
    /// Where Prometheus scrapes `/stats/prometheus` (istio-proxy's
    /// `0.0.0.0:15090`); `None` leaves the endpoint out.
    pub prometheus_addr: Option<SocketAddr>,
}

/// Where istio-proxy serves `/stats/prometheus`.
pub const PROMETHEUS_ADDR: &str = "0.0.0.0:15090";

/// `APP.NAMESPACE` when the labels name the workload and the namespace is
/// known (given, or from an Istio-style node id), else the node id.
fn default_cluster(o: &Options) -> String {
    let namespace = o
        .namespace
        .clone()
        .or_else(|| shmesh_translate::node::pod_of_id(&o.node_id).map(|(namespace, _)| namespace));
    namespace
        .and_then(|ns| shmesh_model::telemetry::workload_service(&o.labels, &ns))
        .unwrap_or_else(|| o.node_id.clone())
}

/// The static cluster that reaches Envoy's own admin for the Prometheus
/// endpoint (Istio's name for it).
pub const PROMETHEUS_CLUSTER: &str = "prometheus_stats";

/// The static listener of the Prometheus endpoint.
pub const PROMETHEUS_LISTENER: &str = "prometheus";

/// A service-account token a proxy proves its identity with on its ADS
/// stream (`authorization: Bearer`, read from the file by Envoy's
/// `file_based_metadata` gRPC credentials), and the root that signed the
/// xDS TLS listener's certificate, which must carry `server_name`.
#[derive(Debug, Clone)]
pub struct TokenProof {
    pub token: PathBuf,
    pub root: PathBuf,
    pub server_name: String,
}

impl TokenProof {
    /// ADS over Envoy's Google gRPC client: TLS trusting only `root`, the
    /// token file's content as the bearer token of every stream.
    fn grpc_service(&self, target: Option<&SocketAddr>) -> core::GrpcService {
        use core::grpc_service::google_grpc as gg;
        use envoy_types::pb::envoy::config::grpc_credential::v3::FileBasedMetadataConfig;
        let file = |p: &PathBuf| core::DataSource {
            specifier: Some(core::data_source::Specifier::Filename(
                p.display().to_string(),
            )),
            ..Default::default()
        };
        let metadata = FileBasedMetadataConfig {
            secret_data: Some(file(&self.token)),
            header_key: "authorization".to_string(),
            header_prefix: "Bearer ".to_string(),
        };
        let name_override = gg::channel_args::Value {
            value_specifier: Some(gg::channel_args::value::ValueSpecifier::StringValue(
                self.server_name.clone(),
            )),
        };
        core::GrpcService {
            target_specifier: Some(core::grpc_service::TargetSpecifier::GoogleGrpc(
                core::grpc_service::GoogleGrpc {
                    target_uri: target.map(ToString::to_string).unwrap_or_default(),
                    stat_prefix: XDS_CLUSTER.to_string(),
                    credentials_factory_name: FILE_BASED_METADATA.to_string(),
                    channel_credentials: Some(gg::ChannelCredentials {
                        credential_specifier: Some(
                            gg::channel_credentials::CredentialSpecifier::SslCredentials(
                                gg::SslCredentials {
                                    root_certs: Some(file(&self.root)),
                                    ..Default::default()
                                },
                            ),
                        ),
                    }),
                    call_credentials: vec![gg::CallCredentials {
                        credential_specifier: Some(
                            gg::call_credentials::CredentialSpecifier::FromPlugin(
                                gg::call_credentials::MetadataCredentialsFromPlugin {
                                    name: FILE_BASED_METADATA.to_string(),
                                    config_type: Some(
                                        gg::call_credentials::metadata_credentials_from_plugin::ConfigType::TypedConfig(
                                            any(&metadata),
                                        ),
                                    ),
                                },
                            ),
                        ),
                    }],
                    // The listener's certificate names the Service, not the
                    // address connected to.
                    channel_args: Some(gg::ChannelArgs {
                        args: [("grpc.ssl_target_name_override".to_string(), name_override)]
                            .into(),
                    }),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }
}

/// Envoy's gRPC credentials that send a file's content as a header.
const FILE_BASED_METADATA: &str = "envoy.grpc_credentials.file_based_metadata";

/// Files a proxy presents to prove its identity to the xDS TLS listener, and
/// the name that listener's certificate must carry.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub cert_chain: PathBuf,
    pub key: PathBuf,
    pub root: PathBuf,
    pub server_name: String,
}

/// The file names of credentials in their directory.
pub const CREDENTIAL_FILES: [&str; 3] = ["cert-chain.pem", "key.pem", "root-cert.pem"];

impl Credentials {
    /// Credentials in `dir` (as `write_credentials` lays them out).
    pub fn in_dir(dir: &std::path::Path, server_name: &str) -> Credentials {
        Credentials {
            cert_chain: dir.join(CREDENTIAL_FILES[0]),
            key: dir.join(CREDENTIAL_FILES[1]),
            root: dir.join(CREDENTIAL_FILES[2]),
            server_name: server_name.to_string(),
        }
    }

    /// The xDS cluster's TLS: these credentials, and the server's name
    /// checked against its certificate, which the root must have signed.
    fn transport_socket(&self) -> core::TransportSocket {
        use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
        use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
        let file = |p: &PathBuf| core::DataSource {
            specifier: Some(core::data_source::Specifier::Filename(
                p.display().to_string(),
            )),
            ..Default::default()
        };
        let san = tls::SubjectAltNameMatcher {
            san_type: if self.server_name.parse::<IpAddr>().is_ok() {
                tls::subject_alt_name_matcher::SanType::IpAddress as i32
            } else {
                tls::subject_alt_name_matcher::SanType::Dns as i32
            },
            matcher: Some(matcher::StringMatcher {
                match_pattern: Some(matcher::string_matcher::MatchPattern::Exact(
                    self.server_name.clone(),
                )),
                ..Default::default()
            }),
            ..Default::default()
        };
        let context = tls::UpstreamTlsContext {
            sni: self.server_name.clone(),
            common_tls_context: Some(tls::CommonTlsContext {
                tls_certificates: vec![tls::TlsCertificate {
                    certificate_chain: Some(file(&self.cert_chain)),
                    private_key: Some(file(&self.key)),
                    ..Default::default()
                }],
                alpn_protocols: vec!["h2".to_string()],
                validation_context_type: Some(
                    tls::common_tls_context::ValidationContextType::ValidationContext(
                        tls::CertificateValidationContext {
                            trusted_ca: Some(file(&self.root)),
                            match_typed_subject_alt_names: vec![san],
                            ..Default::default()
                        },
                    ),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        core::TransportSocket {
            name: "envoy.transport_sockets.tls".to_string(),
            config_type: Some(core::transport_socket::ConfigType::TypedConfig(any(
                &context,
            ))),
        }
    }
}

/// Signs credentials for `spiffe_id` with `ca` and writes them into `dir`
/// (the key readable by its owner only).
pub fn write_credentials(
    ca: &crate::ca::Ca,
    spiffe_id: &str,
    lifetime: std::time::Duration,
    dir: &std::path::Path,
) -> Result<(), crate::ca::CaError> {
    let issued = ca.issue_workload(spiffe_id, lifetime)?;
    let file_error = |path: PathBuf| move |source| crate::ca::CaError::File { path, source };
    std::fs::create_dir_all(dir).map_err(file_error(dir.to_path_buf()))?;
    let chain = dir.join(CREDENTIAL_FILES[0]);
    std::fs::write(&chain, &issued.chain_pem).map_err(file_error(chain.clone()))?;
    crate::ca::write_private(&dir.join(CREDENTIAL_FILES[1]), &issued.key_pem)?;
    let root = dir.join(CREDENTIAL_FILES[2]);
    std::fs::write(&root, ca.trusted_pem()).map_err(file_error(root.clone()))
}

pub fn bootstrap(o: &Options) -> b::Bootstrap {
    let mut metadata = Struct::default();
    let mut put = |k: &str, v: String| {
        metadata.fields.insert(k.to_string(), string_value(&v));
    };
    if let Some(ns) = &o.namespace {
        put("NAMESPACE", ns.clone());
    }
    if let Some(addr) = o.outbound_listener {
        put(OUTBOUND_LISTENER_KEY, addr.to_string());
    }
    if let Some(ip) = o.instance_ip {
        put("INSTANCE_IPS", ip.to_string());
    }
    if !o.labels.is_empty() {
        let labels = Struct {
            fields: o
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), string_value(v)))
                .collect(),
        };
        metadata.fields.insert(
            "LABELS".to_string(),
            Value {
                kind: Some(Kind::StructValue(labels)),
            },
        );
    }
    let api_type = if o.delta {
        core::api_config_source::ApiType::DeltaGrpc
    } else {
        core::api_config_source::ApiType::Grpc
    };
    let mut clusters = vec![xds_cluster(o)];
    let mut listeners = Vec::new();
    if let Some(addr) = o.prometheus_addr {
        clusters.push(prometheus_cluster(o.admin_addr));
        listeners.push(prometheus_listener(addr));
    }
    b::Bootstrap {
        node: Some(core::Node {
            id: o.node_id.clone(),
            cluster: o.cluster.clone().unwrap_or_else(|| default_cluster(o)),
            metadata: Some(metadata),
            ..Default::default()
        }),
        admin: Some(b::Admin {
            address: Some(socket_address(
                &o.admin_addr.ip().to_string(),
                o.admin_addr.port(),
            )),
            ..Default::default()
        }),
        dynamic_resources: Some(b::bootstrap::DynamicResources {
            ads_config: Some(core::ApiConfigSource {
                api_type: api_type as i32,
                transport_api_version: core::ApiVersion::V3 as i32,
                grpc_services: vec![match &o.token {
                    // Envoy's Google gRPC client dials one target.
                    Some(token) => token.grpc_service(o.xds_addrs.first()),
                    None => core::GrpcService {
                        target_specifier: Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(
                            core::grpc_service::EnvoyGrpc {
                                cluster_name: XDS_CLUSTER.to_string(),
                                ..Default::default()
                            },
                        )),
                        ..Default::default()
                    },
                }],
                set_node_on_first_message_only: true,
                ..Default::default()
            }),
            cds_config: Some(ads()),
            lds_config: Some(ads()),
            ..Default::default()
        }),
        static_resources: Some(b::bootstrap::StaticResources {
            clusters,
            listeners,
            ..Default::default()
        }),
        stats_config: Some(stats_config()),
        ..Default::default()
    }
}

/// Istio's stats tags (`stats_config` of istio-proxy's bootstrap), so that
/// Envoy's Prometheus series carry the labels Istio's dashboards query:
/// `envoy_cluster_upstream_cx_active{cluster_name="xds-grpc"}`,
/// `envoy_cluster_upstream_rq{cluster_name="outbound|9080|v1|reviews.default.svc.cluster.local",response_code_class="5xx"}`.
///
/// The cluster name is extracted twice. An extractor's regex removes its
/// first capture group from the stat name and takes its second as the tag's
/// value, and every extractor reads the whole name; so a second extractor
/// whose first group is empty also labels the series `envoy_cluster_name`
/// (Envoy's own label for it, which Envoy-based canary queries use) with the
/// same full Istio cluster name, removing nothing more.
fn stats_config() -> metrics::StatsConfig {
    // A cluster's stats are named by its `alt_stat_name`, which shmesh
    // (as istiod) ends with the delimiter `;`:
    // `cluster.outbound|9080|v1|reviews.default.svc.cluster.local;.upstream_rq_200`.
    // The name is everything before `;.` when there is one; otherwise
    // (bootstrap clusters such as `xds-grpc`) Istio's own rule applies, which
    // keeps a name whole up to `.svc.cluster.local` although it holds dots.
    const TAGS: &[(&str, &str)] = &[
        (
            "cluster_name",
            r"^cluster\.(((?:[^;]*(?=;\.)|.+?(?:\..+?\.svc\.cluster\.local)?));?\.)",
        ),
        (
            "envoy.cluster_name",
            r"^cluster\.()((?:[^;]*(?=;\.)|.+?(?:\..+?\.svc\.cluster\.local)?));?\.",
        ),
        ("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
        ("response_code", r"_rq(_(\d{3}))$"),
        ("response_code_class", r"_rq(_(\dxx))$"),
        (
            "http_conn_manager_listener_prefix",
            r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        ),
        (
            "http_conn_manager_prefix",
            r"^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        ),
        (
            "listener_address",
            r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        ),
        (
            "mongo_prefix",
            r"^mongo\.(.+?)\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$",
        ),
        ("cache", r"(cache\.(.+?)\.)"),
        ("component", r"(component\.(.+?)\.)"),
        ("tag", r"(tag\.(.+?);\.)"),
        ("wasm_filter", r"(wasm_filter\.(.+?)\.)"),
        ("authz_enforce_result", r"rbac(\.(allowed|denied))"),
        ("authz_dry_run_action", r"(\.istio_dry_run_(allow|deny)_)"),
        ("authz_dry_run_result", r"(\.shadow_(allowed|denied))"),
    ];
    metrics::StatsConfig {
        use_all_default_tags: Some(BoolValue { value: false }),
        stats_tags: TAGS
            .iter()
            .map(|(name, regex)| metrics::TagSpecifier {
                tag_name: name.to_string(),
                tag_value: Some(metrics::tag_specifier::TagValue::Regex(regex.to_string())),
            })
            .collect(),
        ..Default::default()
    }
}

/// The cluster that reaches Envoy's own admin for the Prometheus endpoint
/// (on loopback when the admin listens on every address).
fn prometheus_cluster(admin: SocketAddr) -> c::Cluster {
    let ip = match admin.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    c::Cluster {
        name: PROMETHEUS_CLUSTER.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(duration(std::time::Duration::from_millis(250))),
        load_assignment: Some(e::ClusterLoadAssignment {
            cluster_name: PROMETHEUS_CLUSTER.to_string(),
            endpoints: vec![e::LocalityLbEndpoints {
                lb_endpoints: vec![e::LbEndpoint {
                    host_identifier: Some(e::lb_endpoint::HostIdentifier::Endpoint(e::Endpoint {
                        address: Some(socket_address(&ip.to_string(), admin.port())),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Prometheus endpoint: `/stats/prometheus` (and only paths under it)
/// passed to the admin, which stays on its own address.
fn prometheus_listener(addr: SocketAddr) -> l::Listener {
    use envoy_types::pb::envoy::config::route::v3 as r;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
    let route = r::Route {
        r#match: Some(r::RouteMatch {
            path_specifier: Some(r::route_match::PathSpecifier::Prefix(
                "/stats/prometheus".to_string(),
            )),
            ..Default::default()
        }),
        action: Some(r::route::Action::Route(r::RouteAction {
            cluster_specifier: Some(r::route_action::ClusterSpecifier::Cluster(
                PROMETHEUS_CLUSTER.to_string(),
            )),
            ..Default::default()
        })),
        ..Default::default()
    };
    let manager = hcm::HttpConnectionManager {
        stat_prefix: "stats".to_string(),
        codec_type: hcm::http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(
            r::RouteConfiguration {
                virtual_hosts: vec![r::VirtualHost {
                    name: "backend".to_string(),
                    domains: vec!["*".to_string()],
                    routes: vec![route],
                    ..Default::default()
                }],
                ..Default::default()
            },
        )),
        http_filters: vec![shmesh_translate::listener::router_filter()],
        ..Default::default()
    };
    l::Listener {
        name: PROMETHEUS_LISTENER.to_string(),
        address: Some(socket_address(&addr.ip().to_string(), addr.port())),
        filter_chains: vec![l::FilterChain {
            filters: vec![l::Filter {
                name: "envoy.filters.network.http_connection_manager".to_string(),
                config_type: Some(l::filter::ConfigType::TypedConfig(any(&manager))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The static cluster of shmesh's xDS address (over TLS when the proxy
/// has credentials).
fn xds_cluster(o: &Options) -> c::Cluster {
    c::Cluster {
    name: XDS_CLUSTER.to_string(),
    cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
        cluster::DiscoveryType::Static as i32,
    )),
    connect_timeout: Some(duration(std::time::Duration::from_secs(1))),
    load_assignment: Some(e::ClusterLoadAssignment {
        cluster_name: XDS_CLUSTER.to_string(),
        endpoints: vec![e::LocalityLbEndpoints {
            // Every replica given: Envoy spreads its connections over them.
            lb_endpoints: o
                .xds_addrs
                .iter()
                .map(|addr| e::LbEndpoint {
                    host_identifier: Some(e::lb_endpoint::HostIdentifier::Endpoint(e::Endpoint {
                        address: Some(socket_address(&addr.ip().to_string(), addr.port())),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }),
    transport_socket: o.credentials.as_ref().map(Credentials::transport_socket),
    // ADS is gRPC: the connection must be HTTP/2.
    typed_extension_protocol_options: [(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
        any(&uhttp::HttpProtocolOptions {
            upstream_protocol_options: Some(
                uhttp::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                    uhttp::http_protocol_options::ExplicitHttpConfig {
                        protocol_config: Some(
                            uhttp::http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                                core::Http2ProtocolOptions::default(),
                            ),
                        ),
                    },
                ),
            ),
            ..Default::default()
        }),
    )]
    .into(),
    ..Default::default()
}
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

/// The bootstrap as JSON (which Envoy also reads as YAML).
pub fn bootstrap_json(o: &Options) -> Result<serde_json::Value, crate::jsonpb::JsonError> {
    crate::jsonpb::message_to_json(&bootstrap(o))
}
