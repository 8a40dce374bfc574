//! Istio `VirtualService` (networking.istio.io): HTTP routing for a set of
//! hosts: matches, weighted destinations, rewrites, redirects, header changes,
//! retries, timeouts, fault injection and mirroring; and weighted routing of
//! opaque TCP (`tcp[]`) and of TLS by SNI (`tls[]`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::duration;
use crate::meta::*;
use crate::validate::{check_label, Validator};

pub type VirtualService = IstioObject<VirtualServiceSpec>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    pub hosts: Vec<String>,
    pub gateways: Vec<String>,
    pub http: Vec<HttpRoute>,
    /// Opaque TCP traffic, by port, destination subnet and source.
    pub tcp: Vec<TcpRoute>,
    /// TLS traffic that is not terminated, by SNI.
    pub tls: Vec<TlsRoute>,
    pub export_to: Vec<String>,
}

/// A `tcp[]` rule: where connections matching it go, by weight.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TcpRoute {
    #[serde(rename = "match")]
    pub match_: Vec<L4MatchAttributes>,
    pub route: Vec<RouteDestination>,
}

/// A `tls[]` rule: connections whose SNI it matches, passed through.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TlsRoute {
    #[serde(rename = "match")]
    pub match_: Vec<TlsMatchAttributes>,
    pub route: Vec<RouteDestination>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct L4MatchAttributes {
    pub destination_subnets: Vec<String>,
    pub port: Option<i64>,
    pub source_labels: Labels,
    pub gateways: Vec<String>,
    pub source_namespace: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TlsMatchAttributes {
    pub sni_hosts: Vec<String>,
    pub destination_subnets: Vec<String>,
    pub port: Option<i64>,
    pub source_labels: Labels,
    pub gateways: Vec<String>,
    pub source_namespace: Option<String>,
}

/// A weighted destination of a `tcp[]` or `tls[]` rule.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteDestination {
    pub destination: Destination,
    pub weight: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "match")]
    pub match_: Vec<HttpMatchRequest>,
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retries: Option<HttpRetry>,
    #[serde(default)]
    pub redirect: Option<serde_json::Value>,
    #[serde(default)]
    pub direct_response: Option<serde_json::Value>,
    #[serde(default)]
    pub rewrite: Option<HttpRewrite>,
    #[serde(default)]
    pub headers: Option<Headers>,
    #[serde(default)]
    pub mirror: Option<Destination>,
    #[serde(default)]
    pub mirror_percentage: Option<Percent>,
    #[serde(default)]
    pub mirrors: Vec<HttpMirrorPolicy>,
    #[serde(default)]
    pub fault: Option<HttpFaultInjection>,
    #[serde(default)]
    pub cors_policy: Option<CorsPolicy>,
    /// The routes of another VirtualService (one without hosts) take this
    /// entry's place, within its match.
    #[serde(default)]
    pub delegate: Option<Delegate>,
}

/// A VirtualService whose routes an entry of a root VirtualService takes.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Delegate {
    pub name: String,
    /// The root's namespace when unset.
    pub namespace: Option<String>,
}

/// Cross-origin resource sharing for a route's browsers (Envoy's CORS
/// filter, configured per route).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct CorsPolicy {
    pub allow_origins: Vec<StringMatch>,
    /// Deprecated in Istio: exact origins.
    pub allow_origin: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<String>,
    pub allow_credentials: Option<bool>,
    /// FORWARD (the default) or IGNORE: what becomes of a preflight
    /// request whose origin is not allowed.
    pub unmatched_preflights: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRewrite {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct RegexRewrite {
    #[serde(default, rename = "match")]
    pub match_: String,
    #[serde(default)]
    pub rewrite: String,
}

/// Header manipulation for requests and responses.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Headers {
    pub request: Option<HeaderOperations>,
    pub response: Option<HeaderOperations>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct HeaderOperations {
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Percent {
    pub value: f64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct HttpMirrorPolicy {
    pub destination: Option<Destination>,
    pub percentage: Option<Percent>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct HttpFaultInjection {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultDelay {
    pub fixed_delay: Option<String>,
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage.
    pub percent: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultAbort {
    pub http_status: Option<i64>,
    pub grpc_status: Option<String>,
    pub percentage: Option<Percent>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpMatchRequest {
    pub name: Option<String>,
    pub uri: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    pub headers: BTreeMap<String, StringMatch>,
    pub without_headers: BTreeMap<String, StringMatch>,
    pub query_params: BTreeMap<String, StringMatch>,
    pub port: Option<i64>,
    pub ignore_uri_case: bool,
    pub source_labels: Labels,
    pub gateways: Vec<String>,
    pub source_namespace: Option<String>,
}

/// Istio's `StringMatch`: exactly one of `exact`, `prefix`, `regex`.
/// An empty object matches presence only (for headers).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[serde(default)]
pub struct StringMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub regex: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRouteDestination {
    pub destination: Option<Destination>,
    pub weight: Option<i64>,
    pub headers: Option<Headers>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Destination {
    pub host: String,
    pub subset: Option<String>,
    pub port: Option<PortSelector>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PortSelector {
    pub number: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpRetry {
    pub attempts: Option<i64>,
    pub per_try_timeout: Option<String>,
    pub retry_on: Option<String>,
    pub retry_remote_localities: Option<bool>,
}

/// Envoy retry policies Istio accepts in `retryOn`, besides HTTP status codes.
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// The numeric code of a gRPC status name (`UNAVAILABLE`) or number.
pub fn grpc_code(status: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    if let Ok(n) = status.parse::<u32>() {
        return (n < 17).then_some(n);
    }
    NAMES.iter().position(|n| *n == status).map(|i| i as u32)
}

impl Validator {
    pub(crate) fn virtual_service(&mut self, vs: &VirtualServiceSpec) {
        // A VirtualService without hosts is a delegate: its routes are taken
        // by root VirtualServices, within their matches (one level only).
        let delegate = vs.hosts.is_empty();
        if delegate {
            if !vs.gateways.is_empty() {
                self.err(
                    "spec.gateways",
                    "a delegate VirtualService (one without hosts) cannot name gateways",
                );
            }
            if !vs.tcp.is_empty() || !vs.tls.is_empty() {
                self.err(
                    "spec",
                    "a delegate VirtualService (one without hosts) holds http routes only",
                );
            }
            if vs.http.is_empty() {
                self.err("spec.hosts", "at least one host is required");
            }
        }
        for (i, http) in vs.http.iter().enumerate() {
            let Some(d) = &http.delegate else { continue };
            let f = format!("spec.http[{i}]");
            if delegate {
                self.err(
                    format!("{f}.delegate"),
                    "a delegate VirtualService cannot delegate again",
                );
            }
            if d.name.is_empty() {
                self.err(
                    format!("{f}.delegate.name"),
                    "the delegate's name is required",
                );
            }
            if !http.route.is_empty() || http.redirect.is_some() || http.direct_response.is_some() {
                self.err(
                    format!("{f}.delegate"),
                    "a delegating route cannot also route, redirect or respond",
                );
            }
        }
        let mesh_bound = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
        for (i, h) in vs.hosts.iter().enumerate() {
            if h == "*" && mesh_bound {
                self.err(
                    format!("spec.hosts[{i}]"),
                    "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                );
            } else {
                self.host(format!("spec.hosts[{i}]"), h, true);
            }
        }
        for (i, http) in vs.http.iter().enumerate() {
            self.http_route(&format!("spec.http[{i}]"), http);
        }
        for (i, tcp) in vs.tcp.iter().enumerate() {
            let f = format!("spec.tcp[{i}]");
            for (j, m) in tcp.match_.iter().enumerate() {
                if let Some(port) = m.port {
                    self.port(format!("{f}.match[{j}].port"), port);
                }
                for (k, subnet) in m.destination_subnets.iter().enumerate() {
                    self.subnet(format!("{f}.match[{j}].destinationSubnets[{k}]"), subnet);
                }
            }
            self.l4_destinations(&f, &tcp.route);
        }
        for (i, tls) in vs.tls.iter().enumerate() {
            let f = format!("spec.tls[{i}]");
            if tls.match_.is_empty() {
                self.err(format!("{f}.match"), "a TLS route needs at least one match");
            }
            for (j, m) in tls.match_.iter().enumerate() {
                if m.sni_hosts.is_empty() {
                    self.err(
                        format!("{f}.match[{j}].sniHosts"),
                        "a TLS match needs at least one SNI host",
                    );
                }
                for (k, sni) in m.sni_hosts.iter().enumerate() {
                    self.host(format!("{f}.match[{j}].sniHosts[{k}]"), sni, true);
                }
                if let Some(port) = m.port {
                    self.port(format!("{f}.match[{j}].port"), port);
                }
            }
            self.l4_destinations(&f, &tls.route);
        }
    }

    /// The destinations of a `tcp[]` or `tls[]` rule: at least one, each
    /// with a host; weights are relative, as for `http[]`.
    fn l4_destinations(&mut self, f: &str, route: &[RouteDestination]) {
        if route.is_empty() {
            self.err(format!("{f}.route"), "at least one destination is required");
        }
        for (i, d) in route.iter().enumerate() {
            if d.destination.host.is_empty() {
                self.err(
                    format!("{f}.route[{i}].destination.host"),
                    "a host is required",
                );
            } else {
                self.host(
                    format!("{f}.route[{i}].destination.host"),
                    &d.destination.host,
                    false,
                );
            }
            if let Some(w) = d.weight {
                if !(0..=100).contains(&w) {
                    self.err(
                        format!("{f}.route[{i}].weight"),
                        format!("weight {w} is out of range 0-100"),
                    );
                }
            }
        }
    }

    /// An IP address or CIDR block.
    fn subnet(&mut self, field: String, subnet: &str) {
        let (ip, bits) = subnet.split_once('/').unwrap_or((subnet, ""));
        let ip_ok = ip.parse::<std::net::IpAddr>().ok();
        let bits_ok = bits.is_empty()
            || bits.parse::<u8>().is_ok_and(|b| match ip_ok {
                Some(std::net::IpAddr::V4(_)) => b <= 32,
                Some(std::net::IpAddr::V6(_)) => b <= 128,
                None => false,
            });
        if ip_ok.is_none() || !bits_ok {
            self.err(
                field,
                format!("{subnet:?} is not an IP address or CIDR block"),
            );
        }
    }

    pub(crate) fn http_route(&mut self, f: &str, http: &HttpRoute) {
        let has_route = !http.route.is_empty();
        if !has_route
            && http.redirect.is_none()
            && http.direct_response.is_none()
            && http.delegate.is_none()
        {
            self.err(
                f.to_string(),
                "HTTP route, redirect or direct response is required",
            );
        }
        if has_route && http.redirect.is_some() {
            self.err(
                format!("{f}.redirect"),
                "HTTP route cannot contain both route and redirect",
            );
        }
        for (j, m) in http.match_.iter().enumerate() {
            let mf = format!("{f}.match[{j}]");
            for (name, sm) in [
                ("uri", &m.uri),
                ("method", &m.method),
                ("authority", &m.authority),
            ] {
                if let Some(sm) = sm {
                    self.string_match(format!("{mf}.{name}"), sm);
                }
            }
            for (field, map) in [
                ("headers", &m.headers),
                ("withoutHeaders", &m.without_headers),
                ("queryParams", &m.query_params),
            ] {
                for (k, sm) in map {
                    if k.is_empty() {
                        self.err(format!("{mf}.{field}"), "empty name");
                    }
                    self.string_match(format!("{mf}.{field}.{k}"), sm);
                }
            }
            if let Some(p) = m.port {
                self.port(format!("{mf}.port"), p);
            }
        }
        let mut total: i64 = 0;
        for (k, r) in http.route.iter().enumerate() {
            let rf = format!("{f}.route[{k}]");
            match &r.destination {
                None => self.err(format!("{rf}.destination"), "destination is required"),
                Some(d) => self.destination(&format!("{rf}.destination"), d),
            }
            if let Some(w) = r.weight {
                if w < 0 {
                    self.err(format!("{rf}.weight"), format!("weight {w} is negative"));
                } else if w > i32::MAX as i64 {
                    self.err(
                        format!("{rf}.weight"),
                        format!("weight {w} exceeds {}", i32::MAX),
                    );
                }
                total = total.saturating_add(w.max(0));
            }
        }
        if http.route.len() > 1 && total == 0 {
            self.err(format!("{f}.route"), "total destination weight is 0");
        } else if total > u32::MAX as i64 {
            self.err(
                format!("{f}.route"),
                format!("total destination weight {total} exceeds {}", u32::MAX),
            );
        }
        if let Some(rw) = &http.rewrite {
            if http.redirect.is_some() {
                self.err(
                    format!("{f}.rewrite"),
                    "rewrite cannot be used with redirect",
                );
            }
            if rw.uri.is_some() && rw.uri_regex_rewrite.is_some() {
                self.err(
                    format!("{f}.rewrite"),
                    "uri and uriRegexRewrite cannot both be set",
                );
            }
            if let Some(re) = &rw.uri_regex_rewrite {
                self.regex(format!("{f}.rewrite.uriRegexRewrite.match"), &re.match_);
            }
        }
        self.headers(&format!("{f}.headers"), http.headers.as_ref());
        if let Some(cors) = &http.cors_policy {
            let cf = format!("{f}.corsPolicy");
            for (k, o) in cors.allow_origins.iter().enumerate() {
                self.string_match(format!("{cf}.allowOrigins[{k}]"), o);
            }
            self.duration(format!("{cf}.maxAge"), cors.max_age.as_ref());
            if let Some(u) = cors.unmatched_preflights.as_deref() {
                if !matches!(u, "FORWARD" | "IGNORE" | "UNSPECIFIED") {
                    self.err(
                        format!("{cf}.unmatchedPreflights"),
                        format!("{u:?} is not one of FORWARD, IGNORE"),
                    );
                }
            }
        }
        for (k, r) in http.route.iter().enumerate() {
            self.headers(&format!("{f}.route[{k}].headers"), r.headers.as_ref());
        }
        if let Some(m) = &http.mirror {
            self.destination(&format!("{f}.mirror"), m);
        }
        self.percentage(
            format!("{f}.mirrorPercentage"),
            http.mirror_percentage.as_ref(),
        );
        for (k, m) in http.mirrors.iter().enumerate() {
            match &m.destination {
                None => self.err(
                    format!("{f}.mirrors[{k}].destination"),
                    "destination is required",
                ),
                Some(d) => self.destination(&format!("{f}.mirrors[{k}].destination"), d),
            }
            self.percentage(
                format!("{f}.mirrors[{k}].percentage"),
                m.percentage.as_ref(),
            );
        }
        if http.mirror.is_some() && !http.mirrors.is_empty() {
            self.err(
                format!("{f}.mirrors"),
                "mirror and mirrors cannot both be set",
            );
        }
        if let Some(fault) = &http.fault {
            if fault.delay.is_none() && fault.abort.is_none() {
                self.err(format!("{f}.fault"), "one of delay or abort is required");
            }
            if let Some(d) = &fault.delay {
                match &d.fixed_delay {
                    None => self.err(
                        format!("{f}.fault.delay.fixedDelay"),
                        "fixedDelay is required",
                    ),
                    Some(_) => self.duration(
                        format!("{f}.fault.delay.fixedDelay"),
                        d.fixed_delay.as_ref(),
                    ),
                }
                self.percentage(format!("{f}.fault.delay.percentage"), d.percentage.as_ref());
                self.percent(format!("{f}.fault.delay.percent"), d.percent);
            }
            if let Some(a) = &fault.abort {
                match (a.http_status, &a.grpc_status) {
                    (Some(code), None) if !(200..=599).contains(&code) => self.err(
                        format!("{f}.fault.abort.httpStatus"),
                        format!("{code} is not an HTTP status 200-599"),
                    ),
                    (None, Some(code)) if grpc_code(code).is_none() => self.err(
                        format!("{f}.fault.abort.grpcStatus"),
                        format!("unknown gRPC status {code:?}"),
                    ),
                    (None, None) => self.err(
                        format!("{f}.fault.abort"),
                        "httpStatus or grpcStatus is required",
                    ),
                    (Some(_), Some(_)) => self.err(
                        format!("{f}.fault.abort"),
                        "only one of httpStatus or grpcStatus may be set",
                    ),
                    _ => {}
                }
                self.percentage(format!("{f}.fault.abort.percentage"), a.percentage.as_ref());
            }
        }
        if let Some(t) = &http.timeout {
            if let Err(e) = duration::parse(t) {
                self.err(format!("{f}.timeout"), e);
            }
        }
        if let Some(r) = &http.retries {
            self.non_negative(format!("{f}.retries.attempts"), r.attempts);
            self.duration(
                format!("{f}.retries.perTryTimeout"),
                r.per_try_timeout.as_ref(),
            );
            if let Some(on) = &r.retry_on {
                for cond in on.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    let is_code = cond.parse::<u32>().is_ok_and(|c| (100..=599).contains(&c));
                    if !is_code && !RETRY_ON.contains(&cond) {
                        self.err(
                            format!("{f}.retries.retryOn"),
                            format!("unknown retry condition {cond:?}"),
                        );
                    }
                }
            }
        }
    }

    pub(crate) fn headers(&mut self, f: &str, headers: Option<&Headers>) {
        let Some(h) = headers else { return };
        for (side, ops) in [("request", &h.request), ("response", &h.response)] {
            let Some(ops) = ops else { continue };
            for (op, names) in [
                ("set", ops.set.keys().collect::<Vec<_>>()),
                ("add", ops.add.keys().collect()),
                ("remove", ops.remove.iter().collect()),
            ] {
                for name in names {
                    let valid = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.:!#$%&'*+^`|~".contains(&b));
                    if !valid {
                        self.err(
                            format!("{f}.{side}.{op}"),
                            format!("invalid header name {name:?}"),
                        );
                    }
                }
            }
        }
    }

    pub(crate) fn percentage(&mut self, field: String, p: Option<&Percent>) {
        if let Some(p) = p {
            if !(0.0..=100.0).contains(&p.value) {
                self.err(field, format!("{} is not a percentage in 0-100", p.value));
            }
        }
    }

    pub(crate) fn destination(&mut self, f: &str, d: &Destination) {
        if d.host.is_empty() {
            self.err(format!("{f}.host"), "destination host is required");
        } else {
            self.host(format!("{f}.host"), &d.host, false);
        }
        if let Some(s) = &d.subset {
            if let Err(reason) = check_label(s) {
                self.err(format!("{f}.subset"), reason);
            }
        }
        if let Some(p) = &d.port {
            if let Some(n) = p.number {
                self.port(format!("{f}.port.number"), n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::problems;

    #[test]
    fn tcp_and_tls_rules_name_their_bad_fields() {
        let ok = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db, namespace: shop}\nspec:\n  hosts: [db]\n  tcp:\n  - match: [{port: 5432, destinationSubnets: [10.0.0.0/8]}]\n    route: [{destination: {host: db, subset: v1}, weight: 70}, {destination: {host: db, subset: v2}, weight: 30}]\n  tls:\n  - match: [{sniHosts: [db.example.com]}]\n    route: [{destination: {host: db}}]\n";
        assert!(problems(ok).is_empty(), "{:?}", problems(ok));
        let bad = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db, namespace: shop}\nspec:\n  hosts: [db]\n  tcp:\n  - match: [{port: 0, destinationSubnets: [10.0.0.0/33]}]\n    route: []\n  tls:\n  - match: [{sniHosts: []}]\n    route: [{destination: {host: \"\"}, weight: 101}]\n";
        let got = problems(bad);
        for field in [
            "spec.tcp[0].match[0].port",
            "spec.tcp[0].match[0].destinationSubnets[0]",
            "spec.tcp[0].route",
            "spec.tls[0].match[0].sniHosts",
            "spec.tls[0].route[0].destination.host",
            "spec.tls[0].route[0].weight",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(field)),
                "{field} missing in {got:?}"
            );
        }
    }

    const VS_HEAD: &str = "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [reviews]\n  http:\n";

    #[test]
    fn relative_weights_are_valid() {
        let vs = format!("{VS_HEAD}  - route:\n    - {{destination: {{host: reviews, subset: v1}}, weight: 50}}\n    - {{destination: {{host: reviews, subset: v2}}, weight: 40}}\n");
        assert!(problems(&vs).is_empty(), "{:?}", problems(&vs));
    }

    #[test]
    fn negative_weight_is_rejected() {
        let vs = format!("{VS_HEAD}  - route:\n    - {{destination: {{host: reviews}}, weight: -10}}\n    - {{destination: {{host: reviews}}, weight: 110}}\n");
        assert_eq!(
            problems(&vs),
            vec!["spec.http[0].route[0].weight: weight -10 is negative"]
        );
    }

    #[test]
    fn zero_total_weight_is_rejected() {
        let vs = format!("{VS_HEAD}  - route:\n    - {{destination: {{host: reviews}}, weight: 0}}\n    - {{destination: {{host: reviews}}, weight: 0}}\n");
        assert_eq!(
            problems(&vs),
            vec!["spec.http[0].route: total destination weight is 0"]
        );
    }

    #[test]
    fn destination_without_host_is_rejected() {
        let vs = format!("{VS_HEAD}  - route:\n    - {{destination: {{subset: v1}}}}\n");
        assert_eq!(
            problems(&vs),
            vec!["spec.http[0].route[0].destination.host: destination host is required"]
        );
    }

    #[test]
    fn invalid_regex_is_rejected() {
        let vs = format!("{VS_HEAD}  - match:\n    - uri: {{regex: \"/a(b\"}}\n    route:\n    - {{destination: {{host: reviews}}}}\n");
        let p = problems(&vs);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("spec.http[0].match[0].uri.regex: invalid regex"),
            "{p:?}"
        );
    }

    #[test]
    fn route_required() {
        let vs = format!("{VS_HEAD}  - name: nothing\n");
        assert_eq!(
            problems(&vs),
            vec!["spec.http[0]: HTTP route, redirect or direct response is required"]
        );
    }

    #[test]
    fn bad_retry_condition() {
        let vs = format!("{VS_HEAD}  - route:\n    - {{destination: {{host: reviews}}}}\n    retries: {{attempts: 3, retryOn: \"5xx,sometimes\"}}\n");
        assert_eq!(
            problems(&vs),
            vec!["spec.http[0].retries.retryOn: unknown retry condition \"sometimes\""]
        );
    }

    #[test]
    fn fault_and_mirror_rules() {
        let vs = format!("{VS_HEAD}  - route:\n    - {{destination: {{host: reviews}}}}\n    fault:\n      abort: {{httpStatus: 700}}\n      delay: {{percentage: {{value: 150}}}}\n    mirror: {{subset: v2}}\n    headers:\n      request: {{set: {{\"bad header\": x}}}}\n");
        assert_eq!(
            problems(&vs),
            vec![
                "spec.http[0].headers.request.set: invalid header name \"bad header\"",
                "spec.http[0].mirror.host: destination host is required",
                "spec.http[0].fault.delay.fixedDelay: fixedDelay is required",
                "spec.http[0].fault.delay.percentage: 150 is not a percentage in 0-100",
                "spec.http[0].fault.abort.httpStatus: 700 is not an HTTP status 200-599",
            ]
        );
    }
}
