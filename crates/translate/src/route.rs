//! Route configurations: virtual hosts per service port, with routes from the
//! VirtualService that covers the host or Istio's default route.
//!
//! Follows istio/istio `pilot/pkg/networking/core/route/route.go`: route names
//! from `http[].name`, weighted clusters for several destinations, no timeout
//! unless set, 2 retries on connect-failure/refused-stream/unavailable/
//! cancelled/503 unless set, hash policies from the destination's
//! DestinationRule.

use std::collections::{BTreeMap, HashSet};

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::route::v3::{self as r, route_action};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::r#type::matcher::v3 as m;
use envoy_types::pb::google::protobuf::BoolValue;

use super::{any, duration, istio_names, telemetry, u32_value, ListenerMode, ProxyView};
use shmesh_api::duration as dur;
use shmesh_api::objects::{
    Destination, HeaderOperations, Headers, HttpFaultInjection, HttpMatchRequest, HttpRetry,
    HttpRoute, LoadBalancerSettings, StringMatch,
};
use shmesh_api::virtual_service::grpc_code;
use shmesh_model::{hosts, MeshService, Model, Policy};

/// Istio's default retry conditions.
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
const DEFAULT_RETRIES: u32 = 2;

pub fn route_configs(model: &Model, view: &ProxyView) -> Vec<(String, r::RouteConfiguration)> {
    match &view.mode {
        ListenerMode::Capture => capture(model, view),
        ListenerMode::Explicit(_) => vec![explicit(model, view)],
        ListenerMode::Proxyless => proxyless(model, view),
        ListenerMode::Router => super::gateway::route_configs(model, view),
    }
}

fn visible_http<'a>(model: &'a Model, view: &ProxyView) -> impl Iterator<Item = &'a MeshService> {
    super::visible_services(model, view)
        .map(|s| s.as_ref())
        .filter(|s| s.ports.iter().any(|p| p.protocol.is_http()))
}

/// One route configuration per HTTP port, named by the port.
fn capture(model: &Model, view: &ProxyView) -> Vec<(String, r::RouteConfiguration)> {
    let mut by_port: BTreeMap<u16, Vec<r::VirtualHost>> = BTreeMap::new();
    let mut seen: BTreeMap<u16, Domains> = BTreeMap::new();
    for svc in visible_http(model, view) {
        for port in svc.ports.iter().filter(|p| p.protocol.is_http()) {
            let seen = seen.entry(port.number).or_default();
            let domains = domains(svc, port.number, &view.namespace, true, seen);
            let vh = virtual_host(model, view, svc, port.number, domains);
            by_port.entry(port.number).or_default().push(vh);
        }
    }
    by_port
        .into_iter()
        .map(|(port, mut vhosts)| {
            vhosts.push(allow_any());
            let name = port.to_string();
            (name.clone(), route_configuration(name, vhosts))
        })
        .collect()
}

/// One route configuration for the bound outbound listener: every service on
/// every HTTP port, by `host:port`; a host without port means the service's
/// port 80, or its first HTTP port when it has no port 80.
fn explicit(model: &Model, view: &ProxyView) -> (String, r::RouteConfiguration) {
    let mut seen = Domains::default();
    let mut vhosts = Vec::new();
    for svc in visible_http(model, view) {
        let http_ports: Vec<u16> = svc
            .ports
            .iter()
            .filter(|p| p.protocol.is_http())
            .map(|p| p.number)
            .collect();
        let default_port = if http_ports.contains(&80) {
            80
        } else {
            http_ports[0]
        };
        for port in http_ports {
            let domains = domains(svc, port, &view.namespace, port == default_port, &mut seen);
            vhosts.push(virtual_host(model, view, svc, port, domains));
        }
    }
    let name = istio_names::HTTP_PROXY_ROUTE.to_string();
    (name.clone(), route_configuration(name, vhosts))
}

/// Names a proxyless client may ask for: `host:port` for every name of every
/// visible HTTP service port.
pub fn proxyless_names(model: &Model, view: &ProxyView) -> Vec<String> {
    let mut out = Vec::new();
    for svc in visible_http(model, view) {
        for port in svc.ports.iter().filter(|p| p.protocol.is_http()) {
            for alias in hosts::alternate_names(&svc.hostname, &view.namespace) {
                out.push(istio_names::with_port(&alias, port.number));
            }
        }
    }
    out
}

/// For a proxyless client, one route configuration per listener name, each with
/// the one virtual host of that service port.
fn proxyless(model: &Model, view: &ProxyView) -> Vec<(String, r::RouteConfiguration)> {
    let mut out = Vec::new();
    for svc in visible_http(model, view) {
        for port in svc.ports.iter().filter(|p| p.protocol.is_http()) {
            let vh = virtual_host(model, view, svc, port.number, vec!["*".to_string()]);
            for alias in hosts::alternate_names(&svc.hostname, &view.namespace) {
                let name = istio_names::with_port(&alias, port.number);
                out.push((name.clone(), route_configuration(name, vec![vh.clone()])));
            }
        }
    }
    out
}

/// Splits `rc` for VHDS: the configuration keeps its catch-all virtual
/// host (so unknown hosts still pass through before, or without, VHDS) and
/// names VHDS over ADS for the rest, which become resources of their own.
/// A configuration with nothing to delegate stays as it is.
/// Envoy keys a VHDS virtual host by its own name and removes it by resource
/// name, so both are `<route configuration>/<virtual host>`.
pub fn delegate_to_vhds(
    mut rc: r::RouteConfiguration,
) -> (r::RouteConfiguration, Vec<(String, r::VirtualHost)>) {
    let (inline, delegated): (Vec<_>, Vec<_>) = std::mem::take(&mut rc.virtual_hosts)
        .into_iter()
        .partition(|vh| vh.domains.iter().any(|d| d == "*"));
    rc.virtual_hosts = inline;
    if delegated.is_empty() {
        // Envoy's VHDS watch only completes on a virtual host of its own;
        // with none, it would hold the listener for its initial fetch timeout.
        return (rc, Vec::new());
    }
    rc.vhds = Some(r::Vhds {
        config_source: Some(super::ads()),
    });
    let hosts = delegated
        .into_iter()
        .map(|mut vh| {
            vh.name = shmesh_model::text::concat(&[&rc.name, "/", &vh.name]);
            (vh.name.clone(), vh)
        })
        .collect();
    (rc, hosts)
}

pub(crate) fn route_configuration(
    name: String,
    virtual_hosts: Vec<r::VirtualHost>,
) -> r::RouteConfiguration {
    r::RouteConfiguration {
        name,
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// Domains already taken in one route configuration.
type Domains = HashSet<String, foldhash::fast::RandomState>;

/// Domains a caller may use for `svc` on `port`: every name (FQDN and short
/// forms for this namespace) and the VIP, each with `:port` and, when
/// `bare`, also without. Names already taken in this route configuration are
/// skipped: Envoy rejects a domain that appears twice.
fn domains(
    svc: &MeshService,
    port: u16,
    proxy_ns: &str,
    bare: bool,
    seen: &mut Domains,
) -> Vec<String> {
    let mut names = hosts::alternate_names(&svc.hostname, proxy_ns);
    names.extend(svc.vip.clone());
    let mut out = Vec::with_capacity(names.len() * 2);
    let mut take = |domain: String| {
        if seen.insert(domain.clone()) {
            out.push(domain);
        }
    };
    for n in names {
        let with_port = istio_names::with_port(&n, port);
        if bare {
            take(n);
        }
        take(with_port);
    }
    out
}

fn allow_any() -> r::VirtualHost {
    r::VirtualHost {
        name: "allow_any".to_string(),
        domains: vec!["*".to_string()],
        routes: vec![r::Route {
            name: "allow_any".to_string(),
            r#match: Some(prefix_match("/")),
            action: Some(r::route::Action::Route(r::RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                    istio_names::PASSTHROUGH.to_string(),
                )),
                timeout: Some(duration(std::time::Duration::ZERO)),
                ..Default::default()
            })),
            ..Default::default()
        }],
        include_request_attempt_count: true,
        ..Default::default()
    }
}

pub(super) fn virtual_host(
    model: &Model,
    view: &ProxyView,
    svc: &MeshService,
    port: u16,
    domains: Vec<String>,
) -> r::VirtualHost {
    // A VirtualService with only `tcp[]` or `tls[]` rules leaves HTTP alone.
    let routes = match model.virtual_service(&svc.hostname, &view.namespace) {
        Some(vs) if !vs.spec.http.is_empty() => vs_routes(model, view, vs, port, None),
        _ => vec![default_route(model, view, svc, port)],
    };
    r::VirtualHost {
        name: istio_names::virtual_host(&svc.hostname, port),
        domains,
        routes,
        include_request_attempt_count: true,
        ..Default::default()
    }
}

fn default_route(model: &Model, view: &ProxyView, svc: &MeshService, port: u16) -> r::Route {
    let cluster = istio_names::outbound_cluster(port, "", &svc.hostname);
    let mut action = r::RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
        retry_policy: retry_policy(None),
        ..Default::default()
    };
    set_timeout(&mut action, None);
    if let Some(h) = hash_policy(model, view, &svc.hostname, None) {
        action.hash_policy = vec![h];
    }
    let mut route = r::Route {
        name: "default".to_string(),
        r#match: Some(prefix_match("/")),
        action: Some(r::route::Action::Route(action)),
        ..Default::default()
    };
    route.decorator = telemetry::route_decorator(model, &route, &svc.hostname, port);
    route
}

/// The routes of `vs` for requests on `port`, of the mesh's sidecars
/// (`gateway` None) or of Gateway `gateway` (`namespace/name`).
pub(crate) fn vs_routes(
    model: &Model,
    view: &ProxyView,
    vs: &Policy<shmesh_api::objects::VirtualServiceSpec>,
    port: u16,
    gateway: Option<&str>,
) -> Vec<r::Route> {
    let mut out = Vec::new();
    for http in &vs.spec.http {
        if http.match_.is_empty() {
            out.push(route(model, view, vs, http, None, port));
            continue;
        }
        for m in &http.match_ {
            if !match_applies(m, view, port, &vs.namespace, gateway) {
                continue;
            }
            out.push(route(model, view, vs, http, Some(m), port));
        }
    }
    out
}

/// Conditions decided per proxy rather than by Envoy. `match.gateways`
/// names `mesh` or Gateways (`name` in the VirtualService's namespace
/// `vs_namespace`, or `namespace/name`).
fn match_applies(
    m: &HttpMatchRequest,
    view: &ProxyView,
    port: u16,
    vs_namespace: &str,
    gateway: Option<&str>,
) -> bool {
    if m.port.is_some_and(|p| p != port as i64) {
        return false;
    }
    let names = |g: &String| match gateway {
        None => g == "mesh",
        Some(full) => g == full || full.split_once('/') == Some((vs_namespace, g.as_str())),
    };
    if !m.gateways.is_empty() && !m.gateways.iter().any(names) {
        return false;
    }
    if m.source_namespace
        .as_ref()
        .is_some_and(|ns| *ns != view.namespace)
    {
        return false;
    }
    // The labels of the proxy's own workload (capture views carry them;
    // other proxies have none, so such matches never apply to them).
    m.source_labels.is_empty() || shmesh_model::selects(&m.source_labels, &view.labels)
}

fn route(
    model: &Model,
    view: &ProxyView,
    vs: &Policy<shmesh_api::objects::VirtualServiceSpec>,
    http: &HttpRoute,
    m: Option<&HttpMatchRequest>,
    port: u16,
) -> r::Route {
    let name = match (&http.name, m.and_then(|m| m.name.as_ref())) {
        (Some(h), Some(mn)) => shmesh_model::text::concat(&[h, ".", mn]),
        (Some(h), None) => h.clone(),
        (None, Some(mn)) => mn.clone(),
        (None, None) => String::new(),
    };
    let action = if let Some(redirect) = &http.redirect {
        r::route::Action::Redirect(redirect_action(redirect))
    } else if let Some(direct) = &http.direct_response {
        r::route::Action::DirectResponse(direct_response(direct))
    } else {
        r::route::Action::Route(route_action(model, view, vs, http, port))
    };
    let mut route = r::Route {
        name,
        r#match: Some(route_match(m)),
        action: Some(action),
        ..Default::default()
    };
    route.decorator = telemetry::route_decorator(model, &route, &vs.name, port);
    route.metadata = Some(istio_names::config_metadata(
        "virtual-service",
        &vs.namespace,
        &vs.name,
    ));
    // Destination headers apply to the whole route when there is one destination.
    let single_dst_headers = match http.route.as_slice() {
        [only] => only.headers.as_ref(),
        _ => None,
    };
    for h in [http.headers.as_ref(), single_dst_headers]
        .into_iter()
        .flatten()
    {
        let ops = header_ops(h);
        route.request_headers_to_add.extend(ops.request_add);
        route.request_headers_to_remove.extend(ops.request_remove);
        route.response_headers_to_add.extend(ops.response_add);
        route.response_headers_to_remove.extend(ops.response_remove);
    }
    if view.mode != ListenerMode::Proxyless {
        if let Some(fault) = &http.fault {
            route
                .typed_per_filter_config
                .insert(FAULT_FILTER.to_string(), any(&fault_config(fault)));
        }
        if let Some(cors) = &http.cors_policy {
            route
                .typed_per_filter_config
                .insert(CORS_FILTER.to_string(), any(&cors_config(cors)));
        }
    }
    route
}

/// Name of Envoy's HTTP fault filter, which sidecar listeners carry.
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";

/// Name of Envoy's CORS filter, which sidecar and gateway listeners carry.
pub const CORS_FILTER: &str = "envoy.filters.http.cors";

/// A route's CORS policy, as Istio writes it: allowed origins as string
/// matchers (the deprecated `allowOrigin` as exact ones), the rest as the
/// header values Envoy answers preflights with.
fn cors_config(cors: &shmesh_api::objects::CorsPolicy) -> CorsPolicy {
    let exact = cors.allow_origin.iter().map(|o| StringMatch {
        exact: Some(o.clone()),
        ..Default::default()
    });
    let origins: Vec<StringMatch> = cors.allow_origins.iter().cloned().chain(exact).collect();
    CorsPolicy {
        allow_origin_string_match: origins.iter().filter_map(string_matcher).collect(),
        allow_methods: cors.allow_methods.join(","),
        allow_headers: cors.allow_headers.join(","),
        expose_headers: cors.expose_headers.join(","),
        max_age: cors
            .max_age
            .as_deref()
            .and_then(|d| dur::parse(d).ok())
            .map(|d| d.as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: cors.allow_credentials.map(|value| BoolValue { value }),
        forward_not_matching_preflights: Some(BoolValue {
            value: cors.unmatched_preflights.as_deref() != Some("IGNORE"),
        }),
        ..Default::default()
    }
}

/// Header mutations in Envoy's terms.
#[derive(Default)]
struct HeaderOps {
    request_add: Vec<core::HeaderValueOption>,
    request_remove: Vec<String>,
    response_add: Vec<core::HeaderValueOption>,
    response_remove: Vec<String>,
}

fn header_ops(h: &Headers) -> HeaderOps {
    fn adds(ops: &HeaderOperations) -> Vec<core::HeaderValueOption> {
        let set = ops.set.iter().map(|(k, v)| {
            (
                k,
                v,
                core::header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd,
            )
        });
        let add = ops.add.iter().map(|(k, v)| {
            (
                k,
                v,
                core::header_value_option::HeaderAppendAction::AppendIfExistsOrAdd,
            )
        });
        set.chain(add)
            .map(|(k, v, action)| core::HeaderValueOption {
                header: Some(core::HeaderValue {
                    key: k.clone(),
                    value: v.clone(),
                    ..Default::default()
                }),
                append_action: action as i32,
                ..Default::default()
            })
            .collect()
    }
    let mut out = HeaderOps::default();
    if let Some(req) = &h.request {
        out.request_add = adds(req);
        out.request_remove = req.remove.clone();
    }
    if let Some(resp) = &h.response {
        out.response_add = adds(resp);
        out.response_remove = resp.remove.clone();
    }
    out
}

fn fraction(percent: f64) -> envoy_types::pb::envoy::r#type::v3::FractionalPercent {
    envoy_types::pb::envoy::r#type::v3::FractionalPercent {
        numerator: (percent.clamp(0.0, 100.0) * 10_000.0).round() as u32,
        denominator:
            envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType::Million as i32,
    }
}

/// Istio's `fault` as the fault filter's per-route configuration.
fn fault_config(f: &HttpFaultInjection) -> HttpFault {
    use envoy_types::pb::envoy::extensions::filters::common::fault::v3 as common;
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3 as fault;
    let delay = f.delay.as_ref().map(|d| common::FaultDelay {
        percentage: Some(fraction(
            d.percentage
                .as_ref()
                .map(|p| p.value)
                .or(d.percent.map(|p| p as f64))
                .unwrap_or(100.0),
        )),
        fault_delay_secifier: d
            .fixed_delay
            .as_deref()
            .and_then(|t| dur::parse(t).ok())
            .map(|t| common::fault_delay::FaultDelaySecifier::FixedDelay(duration(t))),
    });
    let abort = f.abort.as_ref().map(|a| fault::FaultAbort {
        percentage: Some(fraction(
            a.percentage.as_ref().map(|p| p.value).unwrap_or(100.0),
        )),
        error_type: match (a.http_status, a.grpc_status.as_deref().and_then(grpc_code)) {
            (Some(code), _) => Some(fault::fault_abort::ErrorType::HttpStatus(code as u32)),
            (None, Some(code)) => Some(fault::fault_abort::ErrorType::GrpcStatus(code)),
            _ => None,
        },
        ..Default::default()
    });
    HttpFault {
        delay,
        abort,
        ..Default::default()
    }
}

fn route_action(
    model: &Model,
    view: &ProxyView,
    vs: &Policy<shmesh_api::objects::VirtualServiceSpec>,
    http: &HttpRoute,
    port: u16,
) -> r::RouteAction {
    let multiple = http.route.len() > 1;
    let mut weighted: Vec<(String, u32, Option<&Headers>)> = Vec::new();
    let mut first: Option<(&Destination, String)> = None;
    for dst in &http.route {
        let Some(d) = &dst.destination else { continue };
        let weight = dst.weight.unwrap_or(if multiple { 0 } else { 100 }).max(0) as u32;
        // Istio drops zero-weight destinations when there are several.
        if multiple && weight == 0 {
            continue;
        }
        let host = hosts::resolve(&d.host, &vs.namespace);
        let dst_port = destination_port(model, &host, d, port);
        let cluster =
            istio_names::outbound_cluster(dst_port, d.subset.as_deref().unwrap_or(""), &host);
        if first.is_none() {
            first = Some((d, host));
        }
        weighted.push((cluster, weight, dst.headers.as_ref()));
    }
    let specifier = if weighted.len() == 1 {
        route_action::ClusterSpecifier::Cluster(weighted.remove(0).0)
    } else {
        route_action::ClusterSpecifier::WeightedClusters(r::WeightedCluster {
            clusters: weighted
                .into_iter()
                .map(|(name, w, headers)| {
                    let ops = headers.map(header_ops).unwrap_or_default();
                    r::weighted_cluster::ClusterWeight {
                        name,
                        weight: Some(u32_value(w)),
                        request_headers_to_add: ops.request_add,
                        request_headers_to_remove: ops.request_remove,
                        response_headers_to_add: ops.response_add,
                        response_headers_to_remove: ops.response_remove,
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        })
    };
    let mut action = r::RouteAction {
        cluster_specifier: Some(specifier),
        retry_policy: retry_policy(http.retries.as_ref()),
        ..Default::default()
    };
    set_timeout(
        &mut action,
        http.timeout.as_deref().and_then(|t| dur::parse(t).ok()),
    );
    if let Some((d, host)) = first {
        if let Some(h) = hash_policy(model, view, &host, d.subset.as_deref()) {
            action.hash_policy = vec![h];
        }
    }
    if let Some(rw) = &http.rewrite {
        if let Some(uri) = &rw.uri {
            action.prefix_rewrite = uri.clone();
        }
        if let Some(re) = &rw.uri_regex_rewrite {
            action.regex_rewrite = Some(m::RegexMatchAndSubstitute {
                pattern: Some(regex(&re.match_)),
                substitution: re.rewrite.clone(),
            });
        }
        if let Some(authority) = &rw.authority {
            action.host_rewrite_specifier = Some(
                route_action::HostRewriteSpecifier::HostRewriteLiteral(authority.clone()),
            );
        }
    }
    let mirrors = http
        .mirror
        .iter()
        .map(|d| (d, http.mirror_percentage.as_ref()))
        .chain(
            http.mirrors
                .iter()
                .filter_map(|mp| Some((mp.destination.as_ref()?, mp.percentage.as_ref()))),
        );
    for (d, percent) in mirrors {
        let host = hosts::resolve(&d.host, &vs.namespace);
        let dst_port = destination_port(model, &host, d, port);
        action
            .request_mirror_policies
            .push(route_action::RequestMirrorPolicy {
                cluster: istio_names::outbound_cluster(
                    dst_port,
                    d.subset.as_deref().unwrap_or(""),
                    &host,
                ),
                runtime_fraction: Some(core::RuntimeFractionalPercent {
                    default_value: Some(fraction(percent.map(|p| p.value).unwrap_or(100.0))),
                    ..Default::default()
                }),
                trace_sampled: Some(BoolValue { value: false }),
                ..Default::default()
            });
    }
    action
}

/// The port of a destination: as written, else the service's only port, else
/// the port the request came in on.
pub(crate) fn destination_port(
    model: &Model,
    host: &str,
    d: &Destination,
    listener_port: u16,
) -> u16 {
    if let Some(n) = d.port.as_ref().and_then(|p| p.number) {
        return n as u16;
    }
    match model.service(host) {
        Some(svc) if svc.ports.len() == 1 => svc.ports[0].number,
        _ => listener_port,
    }
}

/// Istio sets the route timeout to the VirtualService's, or disables it (0s);
/// gRPC deadlines are honoured up to the same bound.
fn set_timeout(action: &mut r::RouteAction, timeout: Option<std::time::Duration>) {
    let t = duration(timeout.unwrap_or_default());
    action.timeout = Some(t);
    action.max_stream_duration = Some(route_action::MaxStreamDuration {
        max_stream_duration: Some(t),
        grpc_timeout_header_max: Some(t),
        ..Default::default()
    });
}

/// Istio's retry policy: 2 attempts on connect-failure, refused-stream,
/// unavailable, cancelled and 503 unless the VirtualService says otherwise;
/// `attempts: 0` disables retries.
pub fn retry_policy(retries: Option<&HttpRetry>) -> Option<r::RetryPolicy> {
    let attempts = retries
        .and_then(|r| r.attempts)
        .map(|a| a.clamp(0, u32::MAX as i64) as u32);
    if attempts == Some(0) {
        return None;
    }
    let mut policy = r::RetryPolicy {
        retry_on: DEFAULT_RETRY_ON.to_string(),
        num_retries: Some(u32_value(attempts.unwrap_or(DEFAULT_RETRIES))),
        retriable_status_codes: vec![503],
        host_selection_retry_max_attempts: 5,
        retry_host_predicate: vec![r::retry_policy::RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".to_string(),
            config_type: Some(
                r::retry_policy::retry_host_predicate::ConfigType::TypedConfig(any(
                    &PreviousHostsPredicate::default(),
                )),
            ),
        }],
        ..Default::default()
    };
    if let Some(r) = retries {
        if let Some(t) = r
            .per_try_timeout
            .as_deref()
            .and_then(|t| dur::parse(t).ok())
        {
            policy.per_try_timeout = Some(duration(t));
        }
        if let Some(on) = &r.retry_on {
            let mut conditions = Vec::new();
            let mut codes = Vec::new();
            for c in on.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                match c.parse::<u32>() {
                    Ok(code) => codes.push(code),
                    Err(_) => conditions.push(c.to_string()),
                }
            }
            if !codes.is_empty() && !conditions.iter().any(|c| c == "retriable-status-codes") {
                conditions.push("retriable-status-codes".to_string());
            }
            policy.retry_on = conditions.join(",");
            policy.retriable_status_codes = codes;
        }
    }
    Some(policy)
}

fn hash_policy(
    model: &Model,
    view: &ProxyView,
    host: &str,
    subset: Option<&str>,
) -> Option<r::route_action::HashPolicy> {
    use route_action::hash_policy::{self as hp, PolicySpecifier};
    let dr = model.destination_rule(host, &view.namespace, &view.labels)?;
    let mut lb: Option<&LoadBalancerSettings> = dr
        .spec
        .traffic_policy
        .as_ref()
        .and_then(|t| t.load_balancer.as_ref());
    if let Some(s) = subset.and_then(|s| dr.spec.subsets.iter().find(|x| x.name == s)) {
        if let Some(sub_lb) = s
            .traffic_policy
            .as_ref()
            .and_then(|t| t.load_balancer.as_ref())
        {
            lb = Some(sub_lb);
        }
    }
    let ch = lb?.consistent_hash.as_ref()?;
    let spec = if let Some(h) = &ch.http_header_name {
        PolicySpecifier::Header(hp::Header {
            header_name: h.clone(),
            ..Default::default()
        })
    } else if let Some(c) = &ch.http_cookie {
        PolicySpecifier::Cookie(hp::Cookie {
            name: c.name.clone(),
            path: c.path.clone().unwrap_or_default(),
            ttl: c
                .ttl
                .as_deref()
                .and_then(|t| dur::parse(t).ok())
                .map(duration),
            ..Default::default()
        })
    } else if ch.use_source_ip == Some(true) {
        PolicySpecifier::ConnectionProperties(hp::ConnectionProperties { source_ip: true })
    } else if let Some(q) = &ch.http_query_parameter_name {
        PolicySpecifier::QueryParameter(hp::QueryParameter { name: q.clone() })
    } else {
        return None;
    };
    Some(route_action::HashPolicy {
        policy_specifier: Some(spec),
        ..Default::default()
    })
}

fn prefix_match(prefix: &str) -> r::RouteMatch {
    r::RouteMatch {
        path_specifier: Some(r::route_match::PathSpecifier::Prefix(prefix.to_string())),
        ..Default::default()
    }
}

fn route_match(m: Option<&HttpMatchRequest>) -> r::RouteMatch {
    let Some(m) = m else {
        return prefix_match("/");
    };
    use r::route_match::PathSpecifier;
    let path = match &m.uri {
        Some(StringMatch { exact: Some(e), .. }) => PathSpecifier::Path(e.clone()),
        Some(StringMatch {
            prefix: Some(p), ..
        }) => PathSpecifier::Prefix(p.clone()),
        Some(StringMatch {
            regex: Some(re), ..
        }) => PathSpecifier::SafeRegex(regex(re)),
        _ => PathSpecifier::Prefix("/".to_string()),
    };
    let mut headers = Vec::new();
    for (name, sm) in &m.headers {
        headers.push(header_matcher(name, sm, false));
    }
    for (name, sm) in &m.without_headers {
        headers.push(header_matcher(name, sm, true));
    }
    if let Some(sm) = &m.method {
        headers.push(header_matcher(":method", sm, false));
    }
    if let Some(sm) = &m.authority {
        headers.push(header_matcher(":authority", sm, false));
    }
    let query_parameters = m
        .query_params
        .iter()
        .map(|(name, sm)| r::QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(match string_matcher(sm) {
                Some(s) => r::query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(s),
                None => {
                    r::query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true)
                }
            }),
        })
        .collect();
    r::RouteMatch {
        path_specifier: Some(path),
        case_sensitive: m.ignore_uri_case.then_some(BoolValue { value: false }),
        headers,
        query_parameters,
        ..Default::default()
    }
}

fn header_matcher(name: &str, sm: &StringMatch, invert: bool) -> r::HeaderMatcher {
    use r::header_matcher::HeaderMatchSpecifier;
    r::HeaderMatcher {
        name: name.to_ascii_lowercase(),
        invert_match: invert,
        header_match_specifier: Some(match string_matcher(sm) {
            Some(s) => HeaderMatchSpecifier::StringMatch(s),
            None => HeaderMatchSpecifier::PresentMatch(true),
        }),
        ..Default::default()
    }
}

/// `None` for an empty match, which means "present".
fn string_matcher(sm: &StringMatch) -> Option<m::StringMatcher> {
    use m::string_matcher::MatchPattern;
    let pattern = if let Some(e) = &sm.exact {
        MatchPattern::Exact(e.clone())
    } else if let Some(p) = &sm.prefix {
        MatchPattern::Prefix(p.clone())
    } else if let Some(re) = &sm.regex {
        MatchPattern::SafeRegex(regex(re))
    } else {
        return None;
    };
    Some(m::StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    })
}

fn regex(re: &str) -> m::RegexMatcher {
    m::RegexMatcher {
        regex: re.to_string(),
        ..Default::default()
    }
}

fn redirect_action(v: &serde_json::Value) -> r::RedirectAction {
    use r::redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier};
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let code = match v.get("redirectCode").and_then(|c| c.as_u64()) {
        Some(302) => RedirectResponseCode::Found,
        Some(303) => RedirectResponseCode::SeeOther,
        Some(307) => RedirectResponseCode::TemporaryRedirect,
        Some(308) => RedirectResponseCode::PermanentRedirect,
        _ => RedirectResponseCode::MovedPermanently,
    };
    r::RedirectAction {
        host_redirect: s("authority").unwrap_or_default(),
        port_redirect: v.get("port").and_then(|p| p.as_u64()).unwrap_or(0) as u32,
        path_rewrite_specifier: s("uri").map(PathRewriteSpecifier::PathRedirect),
        scheme_rewrite_specifier: s("scheme").map(SchemeRewriteSpecifier::SchemeRedirect),
        response_code: code as i32,
        ..Default::default()
    }
}

fn direct_response(v: &serde_json::Value) -> r::DirectResponseAction {
    let body = v
        .get("body")
        .and_then(|b| b.get("string"))
        .and_then(|s| s.as_str())
        .map(|s| core::DataSource {
            specifier: Some(core::data_source::Specifier::InlineString(s.to_string())),
            ..Default::default()
        });
    r::DirectResponseAction {
        status: v.get("status").and_then(|s| s.as_u64()).unwrap_or(200) as u32,
        body,
        ..Default::default()
    }
}
