//! What a sidecar lets in: the AuthorizationPolicies and
//! RequestAuthentications covering its workload (`Model::
//! authorization_policies`), as Envoy filters on the chains of
//! `virtualInbound`.
//!
//! HTTP chains get, before the router: `jwt_authn` (a token no rule verifies
//! is refused with 401; a request without one passes, unauthenticated), then
//! one RBAC filter per action in Istio's order: DENY, then ALLOW, then AUDIT
//! (logs only). TCP chains get the network RBAC filters. A request is let in
//! when no DENY policy matches it and, where ALLOW policies exist, one of
//! them does: ALLOW policies without rules deny everything.
//!
//! A TCP connection has no method, path, host, header or token. A TCP chain
//! drops an ALLOW rule that asks for one (it can never match), and drops
//! those fields from DENY and AUDIT rules (so they match more), as Istio
//! does. CUSTOM policies need an external authorizer from the mesh's
//! extension providers, which shmesh does not configure: they are left out.

use std::collections::BTreeMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{self as c, cluster};
use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::listener::v3 as l;
use envoy_types::pb::envoy::config::rbac::v3 as rbac;
use envoy_types::pb::envoy::config::route::v3 as r;
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3 as jwt;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use envoy_types::pb::envoy::r#type::matcher::v3 as matcher;
use envoy_types::pb::google::protobuf::{Empty, UInt32Value};

use super::cluster::BuiltCluster;
use super::tls::exact;
use super::{duration, ProxyView};
use shmesh_api::objects::{
    parse_ip_block, parse_jwks_uri, Action, AuthorizationPolicy, Condition, ConditionKey,
    Operation, RequestAuthentication, Rule, Source,
};
use shmesh_model::Model;

/// Where `jwt_authn` puts a verified token's payload, for RBAC to read.
const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";
const PAYLOAD_KEY: &str = "payload";
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
const JWKS_CACHE: Duration = Duration::from_secs(20 * 60);
/// Trust for `https` JWKS servers outside the mesh: the system's roots, as
/// Istio's proxy image has them.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The policies covering the view's workload.
pub struct Authorization<'a> {
    model: &'a Model,
    policies: Vec<&'a AuthorizationPolicy>,
    authentications: Vec<&'a RequestAuthentication>,
}

impl<'a> Authorization<'a> {
    pub fn of(model: &'a Model, view: &ProxyView) -> Authorization<'a> {
        Authorization {
            model,
            policies: model
                .authorization_policies(&view.namespace, &view.labels)
                .into_iter()
                .map(|p| &**p)
                .collect(),
            authentications: model
                .request_authentications(&view.namespace, &view.labels)
                .into_iter()
                .map(|p| &**p)
                .collect(),
        }
    }

    /// The HTTP filters that go before the router on an inbound port.
    pub fn http_filters(&self) -> Vec<hcm::HttpFilter> {
        let mut out = Vec::new();
        if let Some(config) = self.jwt_authn() {
            out.push(http_filter(JWT_FILTER, sorted::jwt_authn(config)));
        }
        for (_, rules) in self.rbac(false) {
            out.push(http_filter(
                "envoy.filters.http.rbac",
                sorted::http_rbac(rules),
            ));
        }
        out
    }

    /// The network filters that go before the TCP proxy on an inbound chain.
    pub fn network_filters(&self) -> Vec<l::Filter> {
        self.rbac(true)
            .into_iter()
            .map(|(action, rules)| l::Filter {
                name: "envoy.filters.network.rbac".to_string(),
                config_type: Some(l::filter::ConfigType::TypedConfig(sorted::network_rbac(
                    rules,
                    format!("tcp.{}.", action_name(action)),
                ))),
            })
            .collect()
    }

    /// One RBAC configuration per action some policy takes, in Istio's
    /// order. Policies are named `ns[NAMESPACE]-policy[NAME]-rule[INDEX]`.
    fn rbac(&self, tcp: bool) -> Vec<(Action, rbac::Rbac)> {
        let mut out = Vec::new();
        for action in [Action::Deny, Action::Allow, Action::Audit] {
            let of_action: Vec<&AuthorizationPolicy> = self
                .policies
                .iter()
                .filter(|p| p.spec.action() == action)
                .copied()
                .collect();
            if of_action.is_empty() {
                continue;
            }
            let mut policies = BTreeMap::new();
            for p in of_action {
                let namespace = p.metadata.namespace.as_deref().unwrap_or("default");
                for (i, rule) in p.spec.rules.iter().enumerate() {
                    let Some(policy) = policy(rule, action, tcp) else {
                        continue;
                    };
                    let name = format!("ns[{namespace}]-policy[{}]-rule[{i}]", p.metadata.name);
                    policies.insert(name, policy);
                }
            }
            let envoy_action = match action {
                Action::Deny => rbac::rbac::Action::Deny,
                Action::Audit => rbac::rbac::Action::Log,
                _ => rbac::rbac::Action::Allow,
            };
            out.push((
                action,
                rbac::Rbac {
                    action: envoy_action as i32,
                    policies: policies.into_iter().collect(),
                    ..Default::default()
                },
            ));
        }
        out
    }
}

/// A rule as an RBAC policy: one of its operations and its conditions on
/// the request (permissions); one of its sources and its conditions on
/// the caller (principals). `None` for an ALLOW rule a TCP connection
/// cannot match.
fn policy(rule: &Rule, action: Action, tcp: bool) -> Option<rbac::Policy> {
    let http_only = rule.from.iter().any(|f| f.source.has_http_only())
        || rule.to.iter().any(|t| t.operation.has_http_only())
        || rule
            .when
            .iter()
            .any(|c| ConditionKey::parse(&c.key).is_ok_and(|k| k.is_http_only()));
    if tcp && http_only && action == Action::Allow {
        return None;
    }
    let mut permissions = Vec::new();
    let operations: Vec<rbac::Permission> = rule
        .to
        .iter()
        .filter_map(|t| operation(&t.operation, tcp))
        .collect();
    if !operations.is_empty() {
        permissions.push(or_rules(operations));
    }
    let mut principals = Vec::new();
    let sources: Vec<rbac::Principal> = rule
        .from
        .iter()
        .filter_map(|f| source(&f.source, tcp))
        .collect();
    if !sources.is_empty() {
        principals.push(or_ids(sources));
    }
    for condition in &rule.when {
        let Ok(key) = ConditionKey::parse(&condition.key) else {
            continue;
        };
        if tcp && key.is_http_only() {
            continue;
        }
        match when(&key, condition) {
            Side::Permission(p) => permissions.push(p),
            Side::Principal(p) => principals.push(p),
        }
    }
    Some(rbac::Policy {
        permissions: vec![and_rules(permissions)],
        principals: vec![and_ids(principals)],
        ..Default::default()
    })
}

/// A source: every field it sets; one value of each and none of its
/// `not` values. `None` when nothing is left to match (a TCP chain
/// dropped every field).
fn source(s: &Source, tcp: bool) -> Option<rbac::Principal> {
    let mut ids = Vec::new();
    let mut field = |values: &[String], not: bool, id: &dyn Fn(&str) -> rbac::Principal| {
        if values.is_empty() {
            return;
        }
        let any_of = or_ids(values.iter().map(|v| id(v)).collect());
        ids.push(if not { not_id(any_of) } else { any_of });
    };
    let principal = |v: &str| peer_principal(v);
    let namespace = |v: &str| peer_namespace(v);
    let direct = |v: &str| ip_principal(v, false);
    field(&s.principals, false, &principal);
    field(&s.not_principals, true, &principal);
    field(&s.namespaces, false, &namespace);
    field(&s.not_namespaces, true, &namespace);
    field(&s.ip_blocks, false, &direct);
    field(&s.not_ip_blocks, true, &direct);
    if !tcp {
        let remote = |v: &str| ip_principal(v, true);
        field(&s.request_principals, false, &request_principal);
        field(&s.not_request_principals, true, &request_principal);
        field(&s.remote_ip_blocks, false, &remote);
        field(&s.not_remote_ip_blocks, true, &remote);
    }
    (!ids.is_empty()).then(|| and_ids(ids))
}

/// The mutual TLS peer's identity, `spiffe://` + the principal.
fn peer_principal(value: &str) -> rbac::Principal {
    let name = if value == "*" {
        None
    } else if let Some(suffix) = value.strip_prefix('*') {
        Some(pattern(matcher::string_matcher::MatchPattern::Suffix(
            suffix.to_string(),
        )))
    } else if let Some(prefix) = value.strip_suffix('*') {
        Some(pattern(matcher::string_matcher::MatchPattern::Prefix(
            format!("spiffe://{prefix}"),
        )))
    } else {
        Some(exact(&format!("spiffe://{value}")))
    };
    principal_id(rbac::principal::Identifier::Authenticated(
        rbac::principal::Authenticated {
            principal_name: name,
        },
    ))
}

/// The mutual TLS peer's namespace, as its SPIFFE identity names it.
fn peer_namespace(value: &str) -> rbac::Principal {
    let namespace = if value == "*" {
        "[^/]+".to_string()
    } else if let Some(suffix) = value.strip_prefix('*') {
        format!("[^/]*{}", regex::escape(suffix))
    } else if let Some(prefix) = value.strip_suffix('*') {
        format!("{}[^/]*", regex::escape(prefix))
    } else {
        regex::escape(value)
    };
    principal_id(rbac::principal::Identifier::Authenticated(
        rbac::principal::Authenticated {
            principal_name: Some(safe_regex(&format!("spiffe://[^/]+/ns/{namespace}/.*"))),
        },
    ))
}

/// A `when` condition on the side of the policy its key belongs to.
fn when(key: &ConditionKey, c: &Condition) -> Side {
    let values = |f: &dyn Fn(&str) -> rbac::Principal| -> rbac::Principal {
        let mut ids = Vec::new();
        if !c.values.is_empty() {
            ids.push(or_ids(c.values.iter().map(|v| f(v)).collect()));
        }
        if !c.not_values.is_empty() {
            ids.push(not_id(or_ids(c.not_values.iter().map(|v| f(v)).collect())));
        }
        and_ids(ids)
    };
    let permission_values = |f: &dyn Fn(&str) -> rbac::Permission| -> rbac::Permission {
        let mut rules = Vec::new();
        if !c.values.is_empty() {
            rules.push(or_rules(c.values.iter().map(|v| f(v)).collect()));
        }
        if !c.not_values.is_empty() {
            rules.push(not_rule(or_rules(
                c.not_values.iter().map(|v| f(v)).collect(),
            )));
        }
        and_rules(rules)
    };
    match key {
        ConditionKey::Header(name) => Side::Principal(values(&|v| {
            principal_id(rbac::principal::Identifier::Header(header(name, v, false)))
        })),
        ConditionKey::SourceIp => Side::Principal(values(&|v| ip_principal(v, false))),
        ConditionKey::RemoteIp => Side::Principal(values(&|v| ip_principal(v, true))),
        ConditionKey::SourceNamespace => Side::Principal(values(&|v| peer_namespace(v))),
        ConditionKey::SourcePrincipal => Side::Principal(values(&|v| peer_principal(v))),
        ConditionKey::RequestPrincipal => Side::Principal(values(&request_principal)),
        ConditionKey::Audiences => Side::Principal(values(&|v| claim(&["aud".to_string()], v))),
        ConditionKey::Presenter => Side::Principal(values(&|v| claim(&["azp".to_string()], v))),
        ConditionKey::Claim(path) => Side::Principal(values(&|v| claim(path, v))),
        ConditionKey::DestinationIp => Side::Permission(permission_values(&|v| {
            permission(rbac::permission::Rule::DestinationIp(cidr(v)))
        })),
        ConditionKey::DestinationPort => Side::Permission(permission_values(&|v| {
            permission(rbac::permission::Rule::DestinationPort(
                v.parse().unwrap_or(0),
            ))
        })),
        ConditionKey::ConnectionSni => Side::Permission(permission_values(&|v| {
            permission(rbac::permission::Rule::RequestedServerName(wildcard(
                v, false,
            )))
        })),
    }
}

impl<'a> Authorization<'a> {
    /// `jwt_authn` with a provider per rule of the RequestAuthentications
    /// covering the workload; `None` without any.
    fn jwt_authn(&self) -> Option<jwt::JwtAuthentication> {
        let mut providers = BTreeMap::new();
        for ra in &self.authentications {
            let namespace = ra.metadata.namespace.as_deref().unwrap_or("default");
            for (i, rule) in ra.spec.jwt_rules.iter().enumerate() {
                let name = format!("{namespace}/{}/{i}", ra.metadata.name);
                providers.insert(name, self.provider(rule));
            }
        }
        if providers.is_empty() {
            return None;
        }
        // Any provider that verifies the token; or no token at all.
        let mut requires: Vec<jwt::JwtRequirement> = providers
            .keys()
            .map(|name| jwt::JwtRequirement {
                requires_type: Some(jwt::jwt_requirement::RequiresType::ProviderName(
                    name.clone(),
                )),
            })
            .collect();
        requires.push(jwt::JwtRequirement {
            requires_type: Some(jwt::jwt_requirement::RequiresType::AllowMissing(Empty {})),
        });
        Some(jwt::JwtAuthentication {
            providers: providers.into_iter().collect(),
            rules: vec![jwt::RequirementRule {
                r#match: Some(r::RouteMatch {
                    path_specifier: Some(r::route_match::PathSpecifier::Prefix("/".to_string())),
                    ..Default::default()
                }),
                requirement_type: Some(jwt::requirement_rule::RequirementType::Requires(
                    jwt::JwtRequirement {
                        requires_type: Some(jwt::jwt_requirement::RequiresType::RequiresAny(
                            jwt::JwtRequirementOrList {
                                requirements: requires,
                            },
                        )),
                    },
                )),
            }],
            ..Default::default()
        })
    }

    fn provider(&self, rule: &shmesh_api::objects::JwtRule) -> jwt::JwtProvider {
        let jwks = match (&rule.jwks, &rule.jwks_uri) {
            (Some(inline), _) => {
                jwt::jwt_provider::JwksSourceSpecifier::LocalJwks(core::DataSource {
                    specifier: Some(core::data_source::Specifier::InlineString(inline.clone())),
                    ..Default::default()
                })
            }
            (None, uri) => {
                let uri = uri.clone().unwrap_or_default();
                let timeout = rule
                    .timeout
                    .as_deref()
                    .and_then(|t| shmesh_api::duration::parse(t).ok())
                    .unwrap_or(JWKS_TIMEOUT);
                jwt::jwt_provider::JwksSourceSpecifier::RemoteJwks(jwt::RemoteJwks {
                    http_uri: Some(core::HttpUri {
                        http_upstream_type: Some(core::http_uri::HttpUpstreamType::Cluster(
                            jwks_cluster_name(self.model, &uri),
                        )),
                        uri,
                        timeout: Some(duration(timeout)),
                    }),
                    cache_duration: Some(duration(JWKS_CACHE)),
                    ..Default::default()
                })
            }
        };
        jwt::JwtProvider {
            issuer: rule.issuer.clone(),
            audiences: rule.audiences.clone(),
            forward: rule.forward_original_token,
            from_headers: rule
                .from_headers
                .iter()
                .map(|h| jwt::JwtHeader {
                    name: h.name.clone(),
                    value_prefix: h.prefix.clone().unwrap_or_default(),
                })
                .collect(),
            from_params: rule.from_params.clone(),
            from_cookies: rule.from_cookies.clone(),
            forward_payload_header: rule.output_payload_to_header.clone().unwrap_or_default(),
            claim_to_headers: rule
                .output_claim_to_headers
                .iter()
                .map(|c| jwt::JwtClaimToHeader {
                    header_name: c.header.clone(),
                    claim_name: c.claim.clone(),
                    ..Default::default()
                })
                .collect(),
            payload_in_metadata: PAYLOAD_KEY.to_string(),
            jwks_source_specifier: Some(jwks),
            ..Default::default()
        }
    }

    /// Clusters for the `jwksUri`s of the view's RequestAuthentications that
    /// no mesh service serves: DNS clusters, with TLS for `https` checked
    /// against the system's roots.
    pub fn jwks_clusters(&self) -> Vec<BuiltCluster> {
        let mut out: BTreeMap<String, BuiltCluster> = BTreeMap::new();
        let rules = self
            .authentications
            .iter()
            .flat_map(|ra| ra.spec.jwt_rules.iter());
        for rule in rules.filter(|r| r.jwks.is_none()) {
            let Some(uri) = rule.jwks_uri.as_deref() else {
                continue;
            };
            let Ok(parsed) = parse_jwks_uri(uri) else {
                continue;
            };
            if self.model.service(&parsed.host).is_some() {
                continue;
            }
            let name = jwks_cluster_name(self.model, uri);
            out.entry(name.clone())
                .or_insert_with(|| dns_cluster(&name, &parsed));
        }
        out.into_values().collect()
    }
}

/// The cluster that fetches `uri`: a mesh service's outbound cluster, or
/// one of its own.
fn jwks_cluster_name(model: &Model, uri: &str) -> String {
    match parse_jwks_uri(uri) {
        Ok(u) if model.service(&u.host).is_some() => {
            super::istio_names::outbound_cluster(u.port, "", &u.host)
        }
        Ok(u) => format!("jwks|{}|{}", u.host, u.port),
        Err(_) => String::new(),
    }
}

fn dns_cluster(name: &str, uri: &shmesh_api::objects::JwksUri) -> BuiltCluster {
    let transport_socket = uri.https.then(|| {
        super::tls::socket(&tls::UpstreamTlsContext {
            sni: uri.host.clone(),
            common_tls_context: Some(tls::CommonTlsContext {
                validation_context_type: Some(
                    tls::common_tls_context::ValidationContextType::ValidationContext(
                        tls::CertificateValidationContext {
                            trusted_ca: Some(core::DataSource {
                                specifier: Some(core::data_source::Specifier::Filename(
                                    SYSTEM_ROOTS.to_string(),
                                )),
                                ..Default::default()
                            }),
                            match_typed_subject_alt_names: vec![tls::SubjectAltNameMatcher {
                                san_type: tls::subject_alt_name_matcher::SanType::Dns as i32,
                                matcher: Some(exact(&uri.host)),
                                ..Default::default()
                            }],
                            ..Default::default()
                        },
                    ),
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    let cluster = c::Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32,
        )),
        connect_timeout: Some(duration(JWKS_TIMEOUT)),
        load_assignment: Some(super::endpoint::single(
            name,
            super::socket_address(&uri.host, uri.port),
        )),
        transport_socket,
        ..Default::default()
    };
    BuiltCluster {
        name: name.to_string(),
        cluster: Box::new(cluster),
        host: String::new(),
        port: uri.port,
        subset: None,
        eds: false,
    }
}

/// Which side of an RBAC policy a condition goes on.
enum Side {
    Permission(rbac::Permission),
    Principal(rbac::Principal),
}

/// An operation: every field it sets. `None` when nothing is left to
/// match (a TCP chain dropped every field).
fn operation(o: &Operation, tcp: bool) -> Option<rbac::Permission> {
    let mut rules = Vec::new();
    let mut field = |values: &[String], not: bool, rule: &dyn Fn(&str) -> rbac::Permission| {
        if values.is_empty() {
            return;
        }
        let any_of = or_rules(values.iter().map(|v| rule(v)).collect());
        rules.push(if not { not_rule(any_of) } else { any_of });
    };
    let port = |v: &str| {
        permission(rbac::permission::Rule::DestinationPort(
            v.parse().unwrap_or(0),
        ))
    };
    field(&o.ports, false, &port);
    field(&o.not_ports, true, &port);
    if !tcp {
        // Host names match whatever the case, and with a port as well
        // (`Host: cart:8080` is host `cart`).
        let host = |v: &str| {
            let authority = |v: &str| {
                permission(rbac::permission::Rule::Header(header(
                    ":authority",
                    v,
                    true,
                )))
            };
            if v.contains('*') || v.contains(':') {
                return authority(v);
            }
            or_rules(vec![authority(v), authority(&format!("{v}:*"))])
        };
        let method =
            |v: &str| permission(rbac::permission::Rule::Header(header(":method", v, false)));
        let path = |v: &str| {
            if v == "*" {
                return permission(rbac::permission::Rule::Any(true));
            }
            permission(rbac::permission::Rule::UrlPath(matcher::PathMatcher {
                rule: Some(matcher::path_matcher::Rule::Path(wildcard(v, false))),
            }))
        };
        field(&o.hosts, false, &host);
        field(&o.not_hosts, true, &host);
        field(&o.methods, false, &method);
        field(&o.not_methods, true, &method);
        field(&o.paths, false, &path);
        field(&o.not_paths, true, &path);
    }
    (!rules.is_empty()).then(|| and_rules(rules))
}

/// `ISSUER/SUBJECT` of the verified token, from `jwt_authn`'s metadata;
/// `*` for any verified token. The subject is what follows the last `/`.
fn request_principal(value: &str) -> rbac::Principal {
    let iss = || vec![PAYLOAD_KEY.to_string(), "iss".to_string()];
    let sub = || vec![PAYLOAD_KEY.to_string(), "sub".to_string()];
    let present = || matcher::ValueMatcher {
        match_pattern: Some(matcher::value_matcher::MatchPattern::PresentMatch(true)),
    };
    let string = |m: matcher::StringMatcher| matcher::ValueMatcher {
        match_pattern: Some(matcher::value_matcher::MatchPattern::StringMatch(m)),
    };
    if value == "*" {
        return metadata(iss(), present());
    }
    let (issuer, subject) = match value.rsplit_once('/') {
        Some((i, s)) => (i, s),
        None => ("*", value),
    };
    let part = |text: &str, path: Vec<String>| -> Option<rbac::Principal> {
        (text != "*").then(|| metadata(path, string(wildcard(text, false))))
    };
    let ids: Vec<rbac::Principal> = [part(issuer, iss()), part(subject, sub())]
        .into_iter()
        .flatten()
        .collect();
    if ids.is_empty() {
        metadata(iss(), present())
    } else {
        and_ids(ids)
    }
}

/// A claim of the verified token (`path` under the payload) holding the
/// value, or a list holding it.
fn claim(path: &[String], value: &str) -> rbac::Principal {
    let mut full = vec![PAYLOAD_KEY.to_string()];
    full.extend(path.iter().cloned());
    let string = matcher::ValueMatcher {
        match_pattern: Some(matcher::value_matcher::MatchPattern::StringMatch(wildcard(
            value, false,
        ))),
    };
    let list = matcher::ValueMatcher {
        match_pattern: Some(matcher::value_matcher::MatchPattern::ListMatch(Box::new(
            matcher::ListMatcher {
                match_pattern: Some(matcher::list_matcher::MatchPattern::OneOf(Box::new(
                    string.clone(),
                ))),
            },
        ))),
    };
    or_ids(vec![metadata(full.clone(), string), metadata(full, list)])
}

/// The dynamic metadata `jwt_authn` wrote. `metadata` rather than its newer
/// form `sourced_metadata`: Istio's proxies of older releases know only it.
#[allow(deprecated)]
fn metadata(path: Vec<String>, value: matcher::ValueMatcher) -> rbac::Principal {
    principal_id(rbac::principal::Identifier::Metadata(
        matcher::MetadataMatcher {
            filter: JWT_FILTER.to_string(),
            path: path
                .into_iter()
                .map(|key| matcher::metadata_matcher::PathSegment {
                    segment: Some(matcher::metadata_matcher::path_segment::Segment::Key(key)),
                })
                .collect(),
            value: Some(value),
            ..Default::default()
        },
    ))
}

fn ip_principal(block: &str, remote: bool) -> rbac::Principal {
    let range = cidr(block);
    principal_id(if remote {
        rbac::principal::Identifier::RemoteIp(range)
    } else {
        rbac::principal::Identifier::DirectRemoteIp(range)
    })
}

fn cidr(block: &str) -> core::CidrRange {
    let (ip, len) = parse_ip_block(block).unwrap_or((std::net::Ipv4Addr::UNSPECIFIED.into(), 32));
    core::CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(UInt32Value { value: len }),
    }
}

fn header(name: &str, value: &str, ignore_case: bool) -> r::HeaderMatcher {
    let m = if value == "*" {
        r::header_matcher::HeaderMatchSpecifier::PresentMatch(true)
    } else {
        r::header_matcher::HeaderMatchSpecifier::StringMatch(wildcard(value, ignore_case))
    };
    r::HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(m),
        ..Default::default()
    }
}

/// Istio's values: `*` anything, `prefix*`, `*suffix`, or exact.
fn wildcard(value: &str, ignore_case: bool) -> matcher::StringMatcher {
    use matcher::string_matcher::MatchPattern;
    let pattern = if value == "*" {
        MatchPattern::SafeRegex(matcher::RegexMatcher {
            regex: ".+".to_string(),
            ..Default::default()
        })
    } else if let Some(suffix) = value.strip_prefix('*') {
        MatchPattern::Suffix(suffix.to_string())
    } else if let Some(prefix) = value.strip_suffix('*') {
        MatchPattern::Prefix(prefix.to_string())
    } else {
        MatchPattern::Exact(value.to_string())
    };
    matcher::StringMatcher {
        match_pattern: Some(pattern),
        ignore_case,
    }
}

fn pattern(p: matcher::string_matcher::MatchPattern) -> matcher::StringMatcher {
    matcher::StringMatcher {
        match_pattern: Some(p),
        ignore_case: false,
    }
}

fn safe_regex(re: &str) -> matcher::StringMatcher {
    pattern(matcher::string_matcher::MatchPattern::SafeRegex(
        matcher::RegexMatcher {
            regex: re.to_string(),
            ..Default::default()
        },
    ))
}

fn permission(rule: rbac::permission::Rule) -> rbac::Permission {
    rbac::Permission { rule: Some(rule) }
}

fn principal_id(id: rbac::principal::Identifier) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(id),
    }
}

/// All of `rules`; anything when there are none.
fn and_rules(mut rules: Vec<rbac::Permission>) -> rbac::Permission {
    match rules.len() {
        0 => permission(rbac::permission::Rule::Any(true)),
        1 => rules.remove(0),
        _ => permission(rbac::permission::Rule::AndRules(rbac::permission::Set {
            rules,
        })),
    }
}

fn or_rules(mut rules: Vec<rbac::Permission>) -> rbac::Permission {
    if rules.len() == 1 {
        return rules.remove(0);
    }
    permission(rbac::permission::Rule::OrRules(rbac::permission::Set {
        rules,
    }))
}

fn not_rule(rule: rbac::Permission) -> rbac::Permission {
    permission(rbac::permission::Rule::NotRule(Box::new(rule)))
}

/// All of `ids`; anyone when there are none.
fn and_ids(mut ids: Vec<rbac::Principal>) -> rbac::Principal {
    match ids.len() {
        0 => principal_id(rbac::principal::Identifier::Any(true)),
        1 => ids.remove(0),
        _ => principal_id(rbac::principal::Identifier::AndIds(rbac::principal::Set {
            ids,
        })),
    }
}

fn or_ids(mut ids: Vec<rbac::Principal>) -> rbac::Principal {
    if ids.len() == 1 {
        return ids.remove(0);
    }
    principal_id(rbac::principal::Identifier::OrIds(rbac::principal::Set {
        ids,
    }))
}

fn not_id(id: rbac::Principal) -> rbac::Principal {
    principal_id(rbac::principal::Identifier::NotId(Box::new(id)))
}

fn http_filter(name: &str, config: envoy_types::pb::google::protobuf::Any) -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: name.to_string(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

/// Envoy's RBAC and JWT configurations hold maps, which the generated types
/// keep in `HashMap`s and encode in no fixed order: the same policies would
/// encode to different bytes each time, and a resource's version is its
/// bytes' hash. These messages are the same on the wire with their maps in
/// key order.
mod sorted {
    use std::collections::BTreeMap;

    use envoy_types::pb::envoy::config::rbac::v3 as rbac;
    use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3 as jwt;
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    /// `envoy.config.rbac.v3.RBAC`
    #[derive(Clone, PartialEq, Message)]
    struct Rbac {
        #[prost(int32, tag = "1")]
        action: i32,
        #[prost(btree_map = "string, message", tag = "2")]
        policies: BTreeMap<String, rbac::Policy>,
    }

    /// `envoy.extensions.filters.http.rbac.v3.RBAC`
    #[derive(Clone, PartialEq, Message)]
    struct HttpRbac {
        #[prost(message, optional, tag = "1")]
        rules: Option<Rbac>,
    }

    /// `envoy.extensions.filters.network.rbac.v3.RBAC`
    #[derive(Clone, PartialEq, Message)]
    struct NetworkRbac {
        #[prost(message, optional, tag = "1")]
        rules: Option<Rbac>,
        #[prost(string, tag = "3")]
        stat_prefix: String,
    }

    /// `envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication`
    #[derive(Clone, PartialEq, Message)]
    struct JwtAuthentication {
        #[prost(btree_map = "string, message", tag = "1")]
        providers: BTreeMap<String, jwt::JwtProvider>,
        #[prost(message, repeated, tag = "2")]
        rules: Vec<jwt::RequirementRule>,
    }

    fn rules(r: rbac::Rbac) -> Rbac {
        Rbac {
            action: r.action,
            policies: r.policies.into_iter().collect(),
        }
    }

    fn any(type_name: &str, message: &impl Message) -> Any {
        Any {
            type_url: format!("type.googleapis.com/{type_name}"),
            value: message.encode_to_vec(),
        }
    }

    pub fn http_rbac(r: rbac::Rbac) -> Any {
        any(
            "envoy.extensions.filters.http.rbac.v3.RBAC",
            &HttpRbac {
                rules: Some(rules(r)),
            },
        )
    }

    pub fn network_rbac(r: rbac::Rbac, stat_prefix: String) -> Any {
        any(
            "envoy.extensions.filters.network.rbac.v3.RBAC",
            &NetworkRbac {
                rules: Some(rules(r)),
                stat_prefix,
            },
        )
    }

    pub fn jwt_authn(config: jwt::JwtAuthentication) -> Any {
        any(
            "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            &JwtAuthentication {
                providers: config.providers.into_iter().collect(),
                rules: config.rules,
            },
        )
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Allow => "allow",
        Action::Deny => "deny",
        Action::Audit => "audit",
        Action::Custom => "custom",
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::listener::v3 as l;
    use envoy_types::pb::envoy::extensions::filters::http::rbac::v3 as http_rbac;
    use envoy_types::pb::envoy::extensions::filters::network::rbac::v3 as network_rbac;
    use prost::Message;

    use super::*;
    use crate::tests::{changes, decode, model, view};
    use crate::{build, update, ListenerMode, Snapshot};
    use shmesh_cache::ResourceType;

    const CART: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec:\n  selector: {app: cart}\n  ports: [{name: http, port: 80, targetPort: 8080}, {name: tcp-db, port: 5432}]\n";

    fn cart_view() -> ProxyView {
        ProxyView {
            labels: [("app".to_string(), "cart".to_string())].into(),
            ..view("shop")
        }
    }

    fn policy(name: &str, spec: &str) -> String {
        format!("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}")
    }

    fn chain<'a>(vi: &'a l::Listener, name: &str) -> &'a l::FilterChain {
        vi.filter_chains
            .iter()
            .find(|fc| fc.name == name)
            .unwrap_or_else(|| panic!("no chain {name}"))
    }

    fn hcm_of(fc: &l::FilterChain) -> hcm::HttpConnectionManager {
        let Some(l::filter::ConfigType::TypedConfig(any)) = &fc.filters[0].config_type else {
            panic!("no config");
        };
        hcm::HttpConnectionManager::decode(any.value.as_slice()).expect("hcm")
    }

    /// The RBAC configurations of an HTTP chain, in filter order.
    fn http_rbacs(fc: &l::FilterChain) -> Vec<rbac::Rbac> {
        hcm_of(fc)
            .http_filters
            .iter()
            .filter(|f| f.name == "envoy.filters.http.rbac")
            .map(|f| {
                let Some(hcm::http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                    panic!("no config");
                };
                http_rbac::Rbac::decode(any.value.as_slice())
                    .expect("rbac")
                    .rules
                    .expect("rules")
            })
            .collect()
    }

    fn network_rbacs(fc: &l::FilterChain) -> Vec<rbac::Rbac> {
        fc.filters
            .iter()
            .filter(|f| f.name == "envoy.filters.network.rbac")
            .map(|f| {
                let Some(l::filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                    panic!("no config");
                };
                network_rbac::Rbac::decode(any.value.as_slice())
                    .expect("rbac")
                    .rules
                    .expect("rules")
            })
            .collect()
    }

    fn summary(rules: &[rbac::Rbac]) -> Vec<(i32, Vec<String>)> {
        rules
            .iter()
            .map(|r| {
                let mut names: Vec<String> = r.policies.keys().cloned().collect();
                names.sort();
                (r.action, names)
            })
            .collect()
    }

    fn inbound(snap: &Snapshot) -> l::Listener {
        decode(snap, ResourceType::Listener, "virtualInbound")
    }

    const DENY: i32 = rbac::rbac::Action::Deny as i32;
    const ALLOW: i32 = rbac::rbac::Action::Allow as i32;

    #[test]
    fn deny_then_allow_filters_on_http_and_tcp_chains() {
        let yaml = format!(
            "{CART}{}{}",
            policy("deny-admin", "  action: DENY\n  rules: [{to: [{operation: {paths: [/admin*]}}]}]\n"),
            policy("from-web", "  selector: {matchLabels: {app: cart}}\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]\n  - to: [{operation: {methods: [GET]}}]\n"),
        );
        let snap = build(&model(&yaml), &cart_view());
        let vi = inbound(&snap);
        let http = chain(&vi, "0.0.0.0_8080");
        assert_eq!(
            summary(&http_rbacs(http)),
            vec![
                (
                    DENY,
                    vec!["ns[shop]-policy[deny-admin]-rule[0]".to_string()]
                ),
                (
                    ALLOW,
                    vec![
                        "ns[shop]-policy[from-web]-rule[0]".to_string(),
                        "ns[shop]-policy[from-web]-rule[1]".to_string()
                    ]
                ),
            ]
        );
        // The router comes last.
        let names: Vec<String> = hcm_of(http)
            .http_filters
            .iter()
            .map(|f| f.name.clone())
            .collect();
        assert_eq!(
            names.last().map(String::as_str),
            Some("envoy.filters.http.router")
        );
        // The principal is the peer's SPIFFE identity.
        let allow = &http_rbacs(http)[1].policies["ns[shop]-policy[from-web]-rule[0]"];
        assert_eq!(
            allow.principals[0].identifier,
            Some(rbac::principal::Identifier::Authenticated(
                rbac::principal::Authenticated {
                    principal_name: Some(exact("spiffe://cluster.local/ns/shop/sa/web"))
                }
            ))
        );
        // A TCP connection has no path: the DENY rule loses it and denies
        // every connection; the ALLOW rule on a method is dropped.
        let tcp = chain(&vi, "0.0.0.0_5432");
        let rules = network_rbacs(tcp);
        assert_eq!(
            summary(&rules),
            vec![
                (
                    DENY,
                    vec!["ns[shop]-policy[deny-admin]-rule[0]".to_string()]
                ),
                (ALLOW, vec!["ns[shop]-policy[from-web]-rule[0]".to_string()]),
            ]
        );
        let deny = &rules[0].policies["ns[shop]-policy[deny-admin]-rule[0]"];
        assert_eq!(
            deny.permissions[0].rule,
            Some(rbac::permission::Rule::Any(true))
        );
        assert_eq!(
            tcp.filters.last().unwrap().name,
            "envoy.filters.network.tcp_proxy"
        );
        // Another workload of the namespace gets the namespace-wide policy only.
        let web = ProxyView {
            labels: [
                ("app".to_string(), "cart".to_string()),
                ("x".to_string(), "y".to_string()),
            ]
            .into(),
            ..view("shop")
        };
        assert_eq!(
            http_rbacs(chain(&inbound(&build(&model(&yaml), &web)), "0.0.0.0_8080")).len(),
            2
        );
    }

    #[test]
    fn an_allow_policy_without_rules_denies_everything_and_none_allows_everything() {
        let snap = build(&model(CART), &cart_view());
        assert!(http_rbacs(chain(&inbound(&snap), "0.0.0.0_8080")).is_empty());
        let yaml = format!("{CART}{}", policy("nothing", "  {}\n"));
        let snap = build(&model(&yaml), &cart_view());
        let rules = http_rbacs(chain(&inbound(&snap), "0.0.0.0_8080"));
        assert_eq!(summary(&rules), vec![(ALLOW, vec![])]);
        let tcp = network_rbacs(chain(&inbound(&snap), "virtualInbound-catchall-tcp"));
        assert_eq!(summary(&tcp), vec![(ALLOW, vec![])]);
    }

    #[test]
    fn request_principals_and_claims_read_the_verified_token() {
        let p = source(
            &Source {
                request_principals: vec!["https://issuer.example.com/alice".to_string()],
                ..Default::default()
            },
            false,
        )
        .expect("principal");
        let path = |p: &rbac::Principal| -> Vec<String> {
            #[allow(deprecated)]
            let Some(rbac::principal::Identifier::Metadata(m)) = &p.identifier
            else {
                panic!("not metadata: {p:?}");
            };
            m.path
                .iter()
                .map(|s| match &s.segment {
                    Some(matcher::metadata_matcher::path_segment::Segment::Key(k)) => k.clone(),
                    None => String::new(),
                })
                .collect()
        };
        let Some(rbac::principal::Identifier::AndIds(set)) = &p.identifier else {
            panic!("{p:?}");
        };
        assert_eq!(path(&set.ids[0]), vec!["payload", "iss"]);
        assert_eq!(path(&set.ids[1]), vec!["payload", "sub"]);
        // A tcp chain has no token: nothing is left of this source.
        assert!(source(
            &Source {
                request_principals: vec!["*".to_string()],
                ..Default::default()
            },
            true
        )
        .is_none());
        let Some(rbac::principal::Identifier::OrIds(set)) =
            claim(&["groups".to_string()], "admin").identifier
        else {
            panic!("claims match a string or a list");
        };
        assert_eq!(path(&set.ids[0]), vec!["payload", "groups"]);
    }

    #[test]
    fn request_authentication_becomes_jwt_authn_that_lets_tokenless_requests_pass() {
        let yaml = format!("{CART}---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: shop}}\nspec:\n  jwtRules:\n  - issuer: https://issuer.example.com\n    jwksUri: https://issuer.example.com/keys\n    audiences: [cart]\n    fromHeaders: [{{name: x-token, prefix: 'Bearer '}}]\n    forwardOriginalToken: true\n  - issuer: local\n    jwks: '{{\"keys\": []}}'\n");
        let m = model(&yaml);
        let snap = build(&m, &cart_view());
        let http = hcm_of(chain(&inbound(&snap), "0.0.0.0_8080"));
        assert_eq!(http.http_filters[0].name, JWT_FILTER);
        let Some(hcm::http_filter::ConfigType::TypedConfig(any)) =
            &http.http_filters[0].config_type
        else {
            panic!("no config");
        };
        let config = jwt::JwtAuthentication::decode(any.value.as_slice()).expect("jwt");
        let remote = &config.providers["shop/jwt/0"];
        assert_eq!(remote.audiences, vec!["cart"]);
        assert!(remote.forward);
        assert_eq!(remote.from_headers[0].name, "x-token");
        assert_eq!(remote.payload_in_metadata, PAYLOAD_KEY);
        let Some(jwt::jwt_provider::JwksSourceSpecifier::RemoteJwks(fetch)) =
            &remote.jwks_source_specifier
        else {
            panic!("remote jwks");
        };
        let uri = fetch.http_uri.as_ref().expect("uri");
        assert_eq!(
            uri.http_upstream_type,
            Some(core::http_uri::HttpUpstreamType::Cluster(
                "jwks|issuer.example.com|443".to_string()
            ))
        );
        assert!(snap
            .get(ResourceType::Cluster)
            .names()
            .any(|n| n == "jwks|issuer.example.com|443"));
        assert!(matches!(
            config.providers["shop/jwt/1"].jwks_source_specifier,
            Some(jwt::jwt_provider::JwksSourceSpecifier::LocalJwks(_))
        ));
        // Any provider, or no token at all.
        let Some(jwt::requirement_rule::RequirementType::Requires(req)) =
            &config.rules[0].requirement_type
        else {
            panic!("requires");
        };
        let Some(jwt::jwt_requirement::RequiresType::RequiresAny(any_of)) = &req.requires_type
        else {
            panic!("requires any");
        };
        assert_eq!(any_of.requirements.len(), 3);
        assert_eq!(
            any_of.requirements[2].requires_type,
            Some(jwt::jwt_requirement::RequiresType::AllowMissing(Empty {}))
        );
    }

    #[test]
    fn policy_changes_rebuild_the_inbound_half_as_a_full_translation_would() {
        let v = cart_view();
        let mut m = model(CART);
        let before = build(&m, &v);
        // Several policies, rules and providers: maps that must encode the
        // same way every time.
        let yaml = format!(
            "{}{}---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: shop}}\nspec:\n  jwtRules: [{{issuer: a, jwksUri: 'http://keys.example.com/jwks'}}, {{issuer: b, jwksUri: 'http://keys.example.com/b'}}, {{issuer: c, jwks: '{{\"keys\": []}}'}}]\n",
            policy("deny", "  action: DENY\n  rules: [{from: [{source: {namespaces: [other]}}]}, {to: [{operation: {paths: [/a]}}]}, {to: [{operation: {paths: [/b]}}]}]\n"),
            policy("allow", "  rules: [{from: [{source: {namespaces: [shop]}}]}, {to: [{operation: {paths: [/a]}}]}, {to: [{operation: {paths: [/b]}}]}]\n"),
        );
        let dirty = m.apply(changes("authz.yaml", &yaml));
        assert!(dirty.authorization && !dirty.security);
        let after = update(&m, &v, &before, &dirty);
        let full = build(&m, &v);
        for ty in ResourceType::ALL {
            assert_eq!(full.get(ty).version(), after.get(ty).version(), "{ty}");
        }
        assert_ne!(
            before.get(ResourceType::Listener).version(),
            after.get(ResourceType::Listener).version()
        );
        // A view without capture has no inbound half: nothing changes.
        let explicit = ProxyView {
            mode: ListenerMode::Explicit("127.0.0.1:15080".parse().unwrap()),
            ..v
        };
        let m0 = model(CART);
        let plain = build(&m0, &explicit);
        let unchanged = update(&m, &explicit, &plain, &dirty);
        for ty in ResourceType::ALL {
            assert_eq!(plain.get(ty).version(), unchanged.get(ty).version(), "{ty}");
        }
    }
}
