//! Mutual TLS between sidecars, as Istio sets it up.
//!
//! A sidecar's certificates are two SDS secrets: `default` (its own
//! certificate and key, for its SPIFFE identity) and `ROOTCA` (the roots it
//! trusts). Where they come from is the view's `Certificates`: the Istio
//! agent beside the proxy (over its `sds-grpc` cluster), shmesh's own CA
//! (over the ADS stream, for a client that proved its identity), or nowhere
//! (a proxy that proved nothing gets no identity and speaks plaintext).
//!
//! The client side (`upstream_istio_mutual`) sends Istio's ALPN and SNI
//! `outbound_.PORT_.SUBSET_.HOST` and accepts only the destination's SPIFFE
//! identities; the server side (`downstream_istio_mutual`) requires a client
//! certificate signed by the trusted roots.

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
use envoy_types::pb::google::protobuf::BoolValue;

use shmesh_api::objects::{ClientTlsMode, ClientTlsSettings, ServerTlsMode, ServerTlsSettings};
use shmesh_model::text::{concat, Decimal};

use super::{ads, any, duration};

/// The SDS secret holding a workload's own certificate and key.
pub const WORKLOAD_SECRET: &str = "default";
/// The SDS secret holding the roots a workload trusts.
pub const ROOT_SECRET: &str = "ROOTCA";
/// The cluster an Istio agent's bootstrap defines for its SDS server.
pub const AGENT_SDS_CLUSTER: &str = "sds-grpc";

/// ALPN of Istio's mutual TLS: tells a PERMISSIVE port a sidecar's TLS
/// from an app's own.
pub const ISTIO_ALPN: [&str; 2] = ["istio-peer-exchange", "istio"];
/// What an inbound PERMISSIVE port recognises as a sidecar's TLS.
pub const ISTIO_INBOUND_ALPN: [&str; 5] = [
    "istio-peer-exchange",
    "istio",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];

/// Where a sidecar's certificates come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Certificates {
    /// Nowhere: the proxy proved no identity. It speaks plaintext, and a
    /// STRICT port of its own refuses every connection.
    #[default]
    None,
    /// Its Istio agent's SDS server.
    Agent,
    /// shmesh's CA, over the ADS stream, for the service account the client
    /// proved.
    Ads { service_account: String },
}

impl Certificates {
    pub fn any(&self) -> bool {
        *self != Certificates::None
    }

    /// Where Envoy fetches the secrets; `None` without certificates.
    fn source(&self) -> Option<core::ConfigSource> {
        match self {
            Certificates::None => None,
            Certificates::Ads { .. } => Some(ads()),
            Certificates::Agent => Some(core::ConfigSource {
                config_source_specifier: Some(
                    core::config_source::ConfigSourceSpecifier::ApiConfigSource(
                        core::ApiConfigSource {
                            api_type: core::api_config_source::ApiType::Grpc as i32,
                            transport_api_version: core::ApiVersion::V3 as i32,
                            set_node_on_first_message_only: true,
                            grpc_services: vec![core::GrpcService {
                                target_specifier: Some(
                                    core::grpc_service::TargetSpecifier::EnvoyGrpc(
                                        core::grpc_service::EnvoyGrpc {
                                            cluster_name: AGENT_SDS_CLUSTER.to_string(),
                                            ..Default::default()
                                        },
                                    ),
                                ),
                                ..Default::default()
                            }],
                            ..Default::default()
                        },
                    ),
                ),
                // As istiod: wait for the agent however long it takes.
                initial_fetch_timeout: Some(duration(std::time::Duration::ZERO)),
                resource_api_version: core::ApiVersion::V3 as i32,
                ..Default::default()
            }),
        }
    }
}

/// `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    concat(&[
        "spiffe://",
        trust_domain,
        "/ns/",
        namespace,
        "/sa/",
        service_account,
    ])
}

/// Istio's SNI for mutual TLS to a cluster: `outbound_.80_.v1_.reviews...`,
/// `outbound_.80_._.reviews...` without a subset.
pub fn istio_sni(port: u16, subset: &str, host: &str) -> String {
    concat(&[
        "outbound_.",
        Decimal::new(port).as_str(),
        "_.",
        subset,
        "_.",
        host,
    ])
}

fn sds(name: &str, source: &core::ConfigSource) -> tls::SdsSecretConfig {
    tls::SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(source.clone()),
    }
}

/// The workload's certificate, and trust in `ROOTCA` with `sans` (any
/// identity the roots signed when empty).
fn istio_common(
    source: &core::ConfigSource,
    alpn: &[&str],
    sans: &[String],
) -> tls::CommonTlsContext {
    let san_matchers = sans
        .iter()
        .map(|san| tls::SubjectAltNameMatcher {
            san_type: tls::subject_alt_name_matcher::SanType::Uri as i32,
            matcher: Some(exact(san)),
            ..Default::default()
        })
        .collect();
    tls::CommonTlsContext {
        tls_params: Some(tls::TlsParameters {
            tls_minimum_protocol_version: tls::tls_parameters::TlsProtocol::TlSv12 as i32,
            ..Default::default()
        }),
        tls_certificate_sds_secret_configs: vec![sds(WORKLOAD_SECRET, source)],
        alpn_protocols: alpn.iter().map(|s| s.to_string()).collect(),
        validation_context_type: Some(
            tls::common_tls_context::ValidationContextType::CombinedValidationContext(
                tls::common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(tls::CertificateValidationContext {
                        match_typed_subject_alt_names: san_matchers,
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds(ROOT_SECRET, source)),
                    ..Default::default()
                },
            ),
        ),
        ..Default::default()
    }
}

pub(crate) fn exact(s: &str) -> matcher::StringMatcher {
    matcher::StringMatcher {
        match_pattern: Some(matcher::string_matcher::MatchPattern::Exact(s.to_string())),
        ..Default::default()
    }
}

/// A TLS transport socket of `context` (an upstream or downstream one).
pub(crate) fn socket<M: prost::Message + prost::Name>(context: &M) -> core::TransportSocket {
    core::TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(any(
            context,
        ))),
    }
}

/// Istio's mutual TLS to a destination whose identities are `sans`;
/// `None` when the proxy has no certificates to present.
pub fn upstream_istio_mutual(
    certificates: &Certificates,
    sni: String,
    sans: &[String],
    alpn: &[&str],
) -> Option<core::TransportSocket> {
    let source = certificates.source()?;
    Some(socket(&tls::UpstreamTlsContext {
        common_tls_context: Some(istio_common(&source, alpn, sans)),
        sni,
        ..Default::default()
    }))
}

/// The server side of Istio's mutual TLS: the workload's certificate, and a
/// client certificate the roots signed required; `None` without certificates.
pub fn downstream_istio_mutual(
    certificates: &Certificates,
    alpn: &[&str],
) -> Option<core::TransportSocket> {
    let source = certificates.source()?;
    Some(socket(&tls::DownstreamTlsContext {
        common_tls_context: Some(istio_common(&source, alpn, &[])),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    }))
}

/// The SDS secret prefix of a Kubernetes Secret named by `credentialName`.
pub const CREDENTIAL_PREFIX: &str = "kubernetes://";
/// What follows a credential's name in the SDS secret of its CA.
pub const CREDENTIAL_CA_SUFFIX: &str = "-cacert";

/// The SDS secret names of credential `name`: its certificate and key, and
/// the CA that verifies the peer.
pub fn credential_secret_names(name: &str) -> (String, String) {
    (
        concat(&[CREDENTIAL_PREFIX, name]),
        concat(&[CREDENTIAL_PREFIX, name, CREDENTIAL_CA_SUFFIX]),
    )
}

/// DestinationRule `tls` SIMPLE or MUTUAL, with the files it names:
/// originating TLS to a destination outside the mesh's identities.
pub fn upstream_files(settings: &ClientTlsSettings, default_sni: &str) -> core::TransportSocket {
    let file = |path: &str| core::DataSource {
        specifier: Some(core::data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    };
    let mut common = tls::CommonTlsContext::default();
    if settings.mode() == ClientTlsMode::Mutual {
        if let (Some(cert), Some(key)) = (&settings.client_certificate, &settings.private_key) {
            common.tls_certificates.push(tls::TlsCertificate {
                certificate_chain: Some(file(cert)),
                private_key: Some(file(key)),
                ..Default::default()
            });
        }
    }
    if !settings.insecure_skip_verify.unwrap_or(false) {
        common.validation_context_type = Some(
            tls::common_tls_context::ValidationContextType::ValidationContext(
                tls::CertificateValidationContext {
                    trusted_ca: settings.ca_certificates.as_deref().map(file),
                    match_typed_subject_alt_names: san_matchers(&settings.subject_alt_names),
                    ..Default::default()
                },
            ),
        );
    }
    upstream_socket(settings, common, default_sni)
}

/// DestinationRule `tls` SIMPLE or MUTUAL with `credentialName`, as Istio
/// writes it: the certificate and key (MUTUAL) and the CA come over the ADS
/// stream as the SDS secrets `kubernetes://NAME` and `kubernetes://NAME-cacert`.
pub fn upstream_credential(
    settings: &ClientTlsSettings,
    credential: &str,
    default_sni: &str,
) -> core::TransportSocket {
    let (cert, ca) = credential_secret_names(credential);
    let mut common = tls::CommonTlsContext::default();
    if settings.mode() == ClientTlsMode::Mutual {
        common.tls_certificate_sds_secret_configs = vec![sds(&cert, &ads())];
    }
    if !settings.insecure_skip_verify.unwrap_or(false) {
        common.validation_context_type = Some(
            tls::common_tls_context::ValidationContextType::CombinedValidationContext(
                tls::common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(tls::CertificateValidationContext {
                        match_typed_subject_alt_names: san_matchers(&settings.subject_alt_names),
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds(&ca, &ads())),
                    ..Default::default()
                },
            ),
        );
    }
    upstream_socket(settings, common, default_sni)
}

/// ALPN a gateway's HTTPS servers offer.
pub const GATEWAY_ALPN: [&str; 2] = ["h2", "http/1.1"];

/// A gateway server's TLS (SIMPLE, MUTUAL or OPTIONAL_MUTUAL): its
/// certificate and key from files or, by `credentialName`, from the SDS
/// secret `kubernetes://NAME` over ADS; for mutual TLS the clients'
/// CA from `caCertificates` or `kubernetes://NAME-cacert`, with
/// `subjectAltNames` checked.
pub fn downstream_server(settings: &ServerTlsSettings) -> core::TransportSocket {
    let file = |path: &str| core::DataSource {
        specifier: Some(core::data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    };
    let mode = settings.mode();
    let mutual = matches!(mode, ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual);
    let mut common = tls::CommonTlsContext {
        alpn_protocols: GATEWAY_ALPN.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    match &settings.credential_name {
        Some(credential) => {
            let (cert, ca) = credential_secret_names(credential);
            common.tls_certificate_sds_secret_configs = vec![sds(&cert, &ads())];
            if mutual {
                common.validation_context_type = Some(
                    tls::common_tls_context::ValidationContextType::CombinedValidationContext(
                        tls::common_tls_context::CombinedCertificateValidationContext {
                            default_validation_context: Some(tls::CertificateValidationContext {
                                match_typed_subject_alt_names: san_matchers(
                                    &settings.subject_alt_names,
                                ),
                                ..Default::default()
                            }),
                            validation_context_sds_secret_config: Some(sds(&ca, &ads())),
                            ..Default::default()
                        },
                    ),
                );
            }
        }
        None => {
            if let (Some(cert), Some(key)) = (&settings.server_certificate, &settings.private_key) {
                common.tls_certificates.push(tls::TlsCertificate {
                    certificate_chain: Some(file(cert)),
                    private_key: Some(file(key)),
                    ..Default::default()
                });
            }
            if mutual {
                common.validation_context_type = Some(
                    tls::common_tls_context::ValidationContextType::ValidationContext(
                        tls::CertificateValidationContext {
                            trusted_ca: settings.ca_certificates.as_deref().map(file),
                            match_typed_subject_alt_names: san_matchers(
                                &settings.subject_alt_names,
                            ),
                            ..Default::default()
                        },
                    ),
                );
            }
        }
    }
    socket(&tls::DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: Some(BoolValue {
            value: mode == ServerTlsMode::Mutual,
        }),
        ..Default::default()
    })
}

/// `subjectAltNames`, which Istio matches against DNS and URI names alike.
fn san_matchers(names: &[String]) -> Vec<tls::SubjectAltNameMatcher> {
    names
        .iter()
        .map(|san| tls::SubjectAltNameMatcher {
            san_type: if san.starts_with("spiffe://") {
                tls::subject_alt_name_matcher::SanType::Uri as i32
            } else {
                tls::subject_alt_name_matcher::SanType::Dns as i32
            },
            matcher: Some(exact(san)),
            ..Default::default()
        })
        .collect()
}

fn upstream_socket(
    settings: &ClientTlsSettings,
    common: tls::CommonTlsContext,
    default_sni: &str,
) -> core::TransportSocket {
    socket(&tls::UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: settings
            .sni
            .clone()
            .unwrap_or_else(|| default_sni.to_string()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_istio_writes_them() {
        assert_eq!(
            spiffe_id("cluster.local", "shop", "cart"),
            "spiffe://cluster.local/ns/shop/sa/cart"
        );
        assert_eq!(
            istio_sni(80, "", "b.shop.svc.cluster.local"),
            "outbound_.80_._.b.shop.svc.cluster.local"
        );
        assert_eq!(
            istio_sni(9080, "v1", "reviews.default.svc.cluster.local"),
            "outbound_.9080_.v1_.reviews.default.svc.cluster.local"
        );
    }

    #[test]
    fn no_certificates_no_tls() {
        assert!(upstream_istio_mutual(&Certificates::None, "x".into(), &[], &ISTIO_ALPN).is_none());
        assert!(downstream_istio_mutual(&Certificates::None, &[]).is_none());
        assert!(downstream_istio_mutual(&Certificates::Agent, &[]).is_some());
    }

    mod clusters {
        use envoy_types::pb::envoy::config::cluster::v3 as c;
        use envoy_types::pb::envoy::config::endpoint::v3 as e;
        use prost::Message;

        use super::super::*;
        use crate::tests::{decode, model, view};
        use crate::{build, ProxyView};
        use shmesh_cache::ResourceType;

        const CART: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec:\n  selector: {app: cart}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: cart-1, namespace: shop, labels: {app: cart, security.istio.io/tlsMode: istio}}\nspec: {serviceAccountName: cart}\nstatus: {podIP: 10.1.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: cart-2, namespace: shop, labels: {app: cart}}\nstatus: {podIP: 10.1.0.2}\n";
        const NAME: &str = "outbound|80||cart.shop.svc.cluster.local";

        fn agent() -> ProxyView {
            ProxyView {
                certificates: Certificates::Agent,
                ..view("shop")
            }
        }

        fn upstream(socket: &core::TransportSocket) -> tls::UpstreamTlsContext {
            match &socket.config_type {
                Some(core::transport_socket::ConfigType::TypedConfig(any)) => {
                    tls::UpstreamTlsContext::decode(any.value.as_slice()).unwrap()
                }
                None => panic!("no config"),
            }
        }

        fn sans(ctx: &tls::UpstreamTlsContext) -> Vec<String> {
            match &ctx
                .common_tls_context
                .as_ref()
                .unwrap()
                .validation_context_type
            {
                Some(
                    tls::common_tls_context::ValidationContextType::CombinedValidationContext(c),
                ) => c
                    .default_validation_context
                    .as_ref()
                    .unwrap()
                    .match_typed_subject_alt_names
                    .iter()
                    .map(|m| match &m.matcher.as_ref().unwrap().match_pattern {
                        Some(matcher::string_matcher::MatchPattern::Exact(s)) => s.clone(),
                        other => panic!("{other:?}"),
                    })
                    .collect(),
                other => panic!("{other:?}"),
            }
        }

        #[test]
        fn auto_mtls_to_endpoints_with_a_sidecar_verifying_their_identities() {
            let snap = build(&model(CART), &agent());
            let cl: c::Cluster = decode(&snap, ResourceType::Cluster, NAME);
            assert!(cl.transport_socket.is_none());
            let names: Vec<&str> = cl
                .transport_socket_matches
                .iter()
                .map(|m| m.name.as_str())
                .collect();
            assert_eq!(names, vec!["tlsMode-istio", "tlsMode-disabled"]);
            let ctx = upstream(
                cl.transport_socket_matches[0]
                    .transport_socket
                    .as_ref()
                    .unwrap(),
            );
            assert_eq!(ctx.sni, "outbound_.80_._.cart.shop.svc.cluster.local");
            // cart-1's own account and cart-2's `default`.
            assert_eq!(
                sans(&ctx),
                vec![
                    "spiffe://cluster.local/ns/shop/sa/cart",
                    "spiffe://cluster.local/ns/shop/sa/default"
                ]
            );
            assert_eq!(
                ctx.common_tls_context.as_ref().unwrap().alpn_protocols,
                vec!["istio-peer-exchange", "istio", "istio-http/1.1"]
            );
            // Only the endpoint with a sidecar says it takes mutual TLS.
            let cla: e::ClusterLoadAssignment = decode(&snap, ResourceType::Endpoint, NAME);
            let tls_of: Vec<bool> = cla.endpoints[0]
                .lb_endpoints
                .iter()
                .map(|ep| {
                    ep.metadata.as_ref().is_some_and(|m| {
                        m.filter_metadata
                            .contains_key(crate::endpoint::TRANSPORT_SOCKET_MATCH)
                    })
                })
                .collect();
            assert_eq!(tls_of, vec![true, false]);
            // A proxy without certificates sends plaintext.
            let plain: c::Cluster = decode(
                &build(&model(CART), &view("shop")),
                ResourceType::Cluster,
                NAME,
            );
            assert!(plain.transport_socket_matches.is_empty() && plain.transport_socket.is_none());
        }

        #[test]
        fn destination_rules_and_peer_authentication_override_auto_mtls() {
            let dr = |mode: &str| {
                format!("{CART}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: cart, namespace: shop}}\nspec:\n  host: cart\n  trafficPolicy: {{tls: {{mode: {mode}}}}}\n")
            };
            let cl: c::Cluster = decode(
                &build(&model(&dr("DISABLE")), &agent()),
                ResourceType::Cluster,
                NAME,
            );
            assert!(cl.transport_socket_matches.is_empty() && cl.transport_socket.is_none());
            let cl: c::Cluster = decode(
                &build(&model(&dr("ISTIO_MUTUAL")), &agent()),
                ResourceType::Cluster,
                NAME,
            );
            assert!(cl.transport_socket_matches.is_empty());
            assert_eq!(
                upstream(cl.transport_socket.as_ref().unwrap()).sni,
                "outbound_.80_._.cart.shop.svc.cluster.local"
            );
            let simple = dr("SIMPLE, caCertificates: /etc/ca.pem, sni: cart.example");
            let cl: c::Cluster = decode(
                &build(&model(&simple), &agent()),
                ResourceType::Cluster,
                NAME,
            );
            assert_eq!(
                upstream(cl.transport_socket.as_ref().unwrap()).sni,
                "cart.example"
            );
            // The destination's workload DISABLEs mTLS on its port: no
            // endpoint says it takes mutual TLS any more.
            let pa = format!("{CART}---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: cart, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: cart}}}}\n  portLevelMtls: {{8080: {{mode: DISABLE}}}}\n");
            let cla: e::ClusterLoadAssignment =
                decode(&build(&model(&pa), &agent()), ResourceType::Endpoint, NAME);
            assert!(cla.endpoints[0]
                .lb_endpoints
                .iter()
                .all(|ep| ep.metadata.is_none()));
        }
    }
}
