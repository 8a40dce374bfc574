//! Validation of objects, following Istio's own rules (istio/istio
//! `pkg/config/validation`) and the Kubernetes API's for core kinds.
//!
//! Only errors that make an object unusable are reported here; references to
//! things that may not exist (an unknown subset or host) are warnings found when
//! the whole mesh is known (`super::analyze`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::duration;
use crate::objects::*;
use crate::problem::Problem;
use crate::Object;

pub fn object(object: &Object) -> Vec<Problem> {
    let mut v = Validator::default();
    match object {
        Object::Service(s) => v.service(s),
        Object::EndpointSlice(s) => v.endpoint_slice(s),
        Object::Pod(p) => v.pod(p),
        Object::VirtualService(vs) => v.virtual_service(&vs.spec),
        Object::DestinationRule(dr) => v.destination_rule(&dr.spec),
        Object::ServiceEntry(se) => v.service_entry(&se.spec),
        Object::WorkloadEntry(we) => v.workload_entry("spec", &we.spec, false),
        Object::Sidecar(sc) => v.sidecar(&sc.spec),
    }
    v.problems
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
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

const LB_SIMPLE: &[&str] = &[
    "UNSPECIFIED",
    "LEAST_CONN",
    "RANDOM",
    "PASSTHROUGH",
    "ROUND_ROBIN",
    "LEAST_REQUEST",
];

const SE_RESOLUTIONS: &[&str] = &["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"];

/// Protocols Istio accepts for a port (case-insensitive).
pub const PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "MYSQL", "REDIS", "TCP", "TLS", "UDP",
    "THRIFT",
];

impl Validator {
    fn err(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem::error(field, reason));
    }

    fn port(&mut self, field: String, port: i64) {
        if !(1..=65535).contains(&port) {
            self.err(field, format!("port {port} is out of range 1-65535"));
        }
    }

    fn non_negative(&mut self, field: String, value: Option<i64>) {
        if let Some(v) = value {
            if v < 0 {
                self.err(field, format!("{v} must not be negative"));
            }
        }
    }

    fn percent(&mut self, field: String, value: Option<i64>) {
        if let Some(v) = value {
            if !(0..=100).contains(&v) {
                self.err(field, format!("{v} is not a percentage in 0-100"));
            }
        }
    }

    /// A duration that must be at least 1ms when set, as Istio requires.
    fn duration(&mut self, field: String, value: Option<&String>) {
        if let Some(s) = value {
            match duration::parse(s) {
                Ok(d) if d.as_nanos() > 0 && d.as_nanos() < 1_000_000 => {
                    self.err(field, format!("duration {s:?} is shorter than 1ms"))
                }
                Ok(_) => {}
                Err(e) => self.err(field, e),
            }
        }
    }

    fn host(&mut self, field: String, host: &str, allow_wildcard: bool) {
        if let Err(reason) = check_host(host, allow_wildcard) {
            self.err(field, reason);
        }
    }

    fn protocol(&mut self, field: String, protocol: Option<&String>) {
        if let Some(p) = protocol {
            if !PROTOCOLS.iter().any(|k| k.eq_ignore_ascii_case(p)) {
                self.err(field, format!("unknown protocol {p:?}"));
            }
        }
    }

    fn address(&mut self, field: String, address: &str, ip_only: bool) {
        if address.is_empty() {
            self.err(field, "address is empty");
        } else if address.parse::<IpAddr>().is_err() {
            if ip_only {
                self.err(field, format!("{address:?} is not an IP address"));
            } else if let Err(reason) = check_host(address, false) {
                self.err(
                    field,
                    format!("{address:?} is neither an IP address nor a host name: {reason}"),
                );
            }
        }
    }

    /// A regex Envoy's RE2 engine will take; the reason is the regex crate's
    /// last line, which names what is wrong.
    fn regex(&mut self, field: String, re: &str) {
        if let Err(e) = regex::Regex::new(re) {
            let reason = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            self.err(field, format!("invalid regex {re:?}: {reason}"));
        }
    }

    fn string_match(&mut self, field: String, m: &StringMatch) {
        let set = [m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if set > 1 {
            self.err(
                field.clone(),
                "only one of exact, prefix or regex may be set",
            );
        }
        if let Some(re) = &m.regex {
            self.regex(format!("{field}.regex"), re);
        }
    }

    // ------------------------------------------------------------ core kinds

    fn service(&mut self, s: &Service) {
        let mut names = BTreeSet::new();
        let ports = &s.spec.ports;
        for (i, p) in ports.iter().enumerate() {
            let f = format!("spec.ports[{i}]");
            self.port(format!("{f}.port"), p.port);
            match &p.target_port {
                Some(IntOrString::Int(n)) => self.port(format!("{f}.targetPort"), *n),
                Some(IntOrString::String(s)) if s.is_empty() => {
                    self.err(format!("{f}.targetPort"), "empty port name")
                }
                _ => {}
            }
            let name = p.name.clone().unwrap_or_default();
            if ports.len() > 1 && name.is_empty() {
                self.err(
                    format!("{f}.name"),
                    "must be set when a Service has several ports",
                );
            }
            if !name.is_empty() && !names.insert(name.clone()) {
                self.err(format!("{f}.name"), format!("duplicate port name {name:?}"));
            }
        }
    }

    fn endpoint_slice(&mut self, s: &EndpointSlice) {
        let address_type = s.address_type.as_deref().unwrap_or("IPv4");
        if !["IPv4", "IPv6", "FQDN"].contains(&address_type) {
            self.err(
                "addressType",
                format!("unknown address type {address_type:?}"),
            );
        }
        for (i, e) in s.endpoints.iter().enumerate() {
            if e.addresses.is_empty() {
                self.err(
                    format!("endpoints[{i}].addresses"),
                    "at least one address is required",
                );
            }
            for (j, a) in e.addresses.iter().enumerate() {
                self.address(
                    format!("endpoints[{i}].addresses[{j}]"),
                    a,
                    address_type != "FQDN",
                );
            }
        }
        for (i, p) in s.ports.iter().enumerate() {
            if let Some(n) = p.port {
                self.port(format!("ports[{i}].port"), n);
            }
        }
    }

    fn pod(&mut self, p: &Pod) {
        if let Some(ip) = &p.status.pod_ip {
            if !ip.is_empty() {
                self.address("status.podIP".into(), ip, true);
            }
        }
        for (i, c) in p.spec.containers.iter().enumerate() {
            for (j, port) in c.ports.iter().enumerate() {
                self.port(
                    format!("spec.containers[{i}].ports[{j}].containerPort"),
                    port.container_port,
                );
            }
        }
    }

    // ------------------------------------------------------------ Istio kinds

    fn virtual_service(&mut self, vs: &VirtualServiceSpec) {
        if vs.hosts.is_empty() {
            self.err("spec.hosts", "at least one host is required");
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
    }

    fn http_route(&mut self, f: &str, http: &HttpRoute) {
        let has_route = !http.route.is_empty();
        if !has_route && http.redirect.is_none() && http.direct_response.is_none() {
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

    fn headers(&mut self, f: &str, headers: Option<&Headers>) {
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

    fn percentage(&mut self, field: String, p: Option<&Percent>) {
        if let Some(p) = p {
            if !(0.0..=100.0).contains(&p.value) {
                self.err(field, format!("{} is not a percentage in 0-100", p.value));
            }
        }
    }

    fn destination(&mut self, f: &str, d: &Destination) {
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

    fn destination_rule(&mut self, dr: &DestinationRuleSpec) {
        if dr.host.is_empty() {
            self.err("spec.host", "host is required");
        } else {
            self.host("spec.host".into(), &dr.host, true);
        }
        if let Some(tp) = &dr.traffic_policy {
            self.traffic_policy("spec.trafficPolicy", tp);
        }
        let mut names = BTreeSet::new();
        for (i, s) in dr.subsets.iter().enumerate() {
            let f = format!("spec.subsets[{i}]");
            if s.name.is_empty() {
                self.err(format!("{f}.name"), "subset name is required");
            } else if let Err(reason) = check_label(&s.name) {
                self.err(format!("{f}.name"), reason);
            } else if !names.insert(s.name.as_str()) {
                self.err(
                    format!("{f}.name"),
                    format!("duplicate subset name {:?}", s.name),
                );
            }
            if let Some(tp) = &s.traffic_policy {
                self.traffic_policy(&format!("{f}.trafficPolicy"), tp);
            }
        }
    }

    fn traffic_policy(&mut self, f: &str, tp: &TrafficPolicy) {
        self.policy_parts(
            f,
            &tp.load_balancer,
            &tp.connection_pool,
            &tp.outlier_detection,
        );
        let mut ports = BTreeSet::new();
        for (i, pl) in tp.port_level_settings.iter().enumerate() {
            let pf = format!("{f}.portLevelSettings[{i}]");
            match pl.port.as_ref().and_then(|p| p.number) {
                None => self.err(format!("{pf}.port"), "port number is required"),
                Some(n) => {
                    self.port(format!("{pf}.port.number"), n);
                    if !ports.insert(n) {
                        self.err(
                            format!("{pf}.port"),
                            format!("duplicate settings for port {n}"),
                        );
                    }
                }
            }
            self.policy_parts(
                &pf,
                &pl.load_balancer,
                &pl.connection_pool,
                &pl.outlier_detection,
            );
        }
    }

    fn policy_parts(
        &mut self,
        f: &str,
        lb: &Option<LoadBalancerSettings>,
        pool: &Option<ConnectionPoolSettings>,
        outlier: &Option<OutlierDetection>,
    ) {
        if let Some(lb) = lb {
            let lf = format!("{f}.loadBalancer");
            if let Some(s) = &lb.simple {
                if !LB_SIMPLE.contains(&s.as_str()) {
                    self.err(
                        format!("{lf}.simple"),
                        format!("unknown load balancer {s:?}"),
                    );
                }
                if lb.consistent_hash.is_some() {
                    self.err(lf.clone(), "simple and consistentHash cannot both be set");
                }
            }
            if let Some(ch) = &lb.consistent_hash {
                let keys = [
                    ch.http_header_name.is_some(),
                    ch.http_cookie.is_some(),
                    ch.use_source_ip.unwrap_or(false),
                    ch.http_query_parameter_name.is_some(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if keys != 1 {
                    self.err(
                        format!("{lf}.consistentHash"),
                        "exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName is required",
                    );
                }
                if let Some(c) = &ch.http_cookie {
                    if c.name.is_empty() {
                        self.err(
                            format!("{lf}.consistentHash.httpCookie.name"),
                            "cookie name is required",
                        );
                    }
                    if let Some(ttl) = &c.ttl {
                        if let Err(e) = duration::parse(ttl) {
                            self.err(format!("{lf}.consistentHash.httpCookie.ttl"), e);
                        }
                    }
                }
                if ch.ring_hash.is_some() && ch.maglev.is_some() {
                    self.err(
                        format!("{lf}.consistentHash"),
                        "ringHash and maglev cannot both be set",
                    );
                }
            }
        }
        if let Some(pool) = pool {
            let pf = format!("{f}.connectionPool");
            if let Some(tcp) = &pool.tcp {
                self.non_negative(format!("{pf}.tcp.maxConnections"), tcp.max_connections);
                self.duration(
                    format!("{pf}.tcp.connectTimeout"),
                    tcp.connect_timeout.as_ref(),
                );
                self.duration(
                    format!("{pf}.tcp.maxConnectionDuration"),
                    tcp.max_connection_duration.as_ref(),
                );
                self.duration(format!("{pf}.tcp.idleTimeout"), tcp.idle_timeout.as_ref());
            }
            if let Some(http) = &pool.http {
                self.non_negative(
                    format!("{pf}.http.http1MaxPendingRequests"),
                    http.http1_max_pending_requests,
                );
                self.non_negative(
                    format!("{pf}.http.http2MaxRequests"),
                    http.http2_max_requests,
                );
                self.non_negative(
                    format!("{pf}.http.maxRequestsPerConnection"),
                    http.max_requests_per_connection,
                );
                self.non_negative(format!("{pf}.http.maxRetries"), http.max_retries);
                self.non_negative(
                    format!("{pf}.http.maxConcurrentStreams"),
                    http.max_concurrent_streams,
                );
                self.duration(format!("{pf}.http.idleTimeout"), http.idle_timeout.as_ref());
                if let Some(p) = &http.h2_upgrade_policy {
                    if !["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"].contains(&p.as_str()) {
                        self.err(
                            format!("{pf}.http.h2UpgradePolicy"),
                            format!("unknown policy {p:?}"),
                        );
                    }
                }
            }
        }
        if let Some(o) = outlier {
            let of = format!("{f}.outlierDetection");
            self.non_negative(format!("{of}.consecutiveErrors"), o.consecutive_errors);
            self.non_negative(
                format!("{of}.consecutiveGatewayErrors"),
                o.consecutive_gateway_errors,
            );
            self.non_negative(
                format!("{of}.consecutive5xxErrors"),
                o.consecutive_5xx_errors,
            );
            self.non_negative(
                format!("{of}.consecutiveLocalOriginFailures"),
                o.consecutive_local_origin_failures,
            );
            self.duration(format!("{of}.interval"), o.interval.as_ref());
            self.duration(
                format!("{of}.baseEjectionTime"),
                o.base_ejection_time.as_ref(),
            );
            self.percent(format!("{of}.maxEjectionPercent"), o.max_ejection_percent);
            self.percent(format!("{of}.minHealthPercent"), o.min_health_percent);
        }
    }

    fn sidecar(&mut self, sc: &SidecarSpec) {
        for (i, egress) in sc.egress.iter().enumerate() {
            if egress.hosts.is_empty() {
                self.err(
                    format!("spec.egress[{i}].hosts"),
                    "at least one host is required",
                );
            }
            for (j, h) in egress.hosts.iter().enumerate() {
                let f = format!("spec.egress[{i}].hosts[{j}]");
                match h.split_once('/') {
                    None => self.err(f, format!("{h:?} is not of the form namespace/dnsName")),
                    Some((ns, dns)) => {
                        if ns.is_empty() {
                            self.err(f.clone(), format!("{h:?} has an empty namespace"));
                        } else if !matches!(ns, "*" | "." | "~") {
                            if let Err(reason) = check_label(ns) {
                                self.err(f.clone(), reason);
                            }
                        }
                        self.host(f, dns, true);
                    }
                }
            }
        }
    }

    fn service_entry(&mut self, se: &ServiceEntrySpec) {
        if se.hosts.is_empty() {
            self.err("spec.hosts", "at least one host is required");
        }
        let resolution = se.resolution.as_deref().unwrap_or("NONE");
        if !SE_RESOLUTIONS.contains(&resolution) {
            self.err(
                "spec.resolution",
                format!("unknown resolution {resolution:?}"),
            );
        }
        for (i, h) in se.hosts.iter().enumerate() {
            if h == "*" {
                self.err(format!("spec.hosts[{i}]"), "wildcard host * is not allowed");
                continue;
            }
            self.host(format!("spec.hosts[{i}]"), h, true);
            if h.starts_with('*') && resolution.starts_with("DNS") && se.endpoints.is_empty() {
                self.err(
                    format!("spec.hosts[{i}]"),
                    "a wildcard host needs endpoints when resolution is DNS",
                );
            }
        }
        if se.ports.is_empty() {
            self.err("spec.ports", "at least one port is required");
        }
        let mut numbers = BTreeSet::new();
        let mut names = BTreeSet::new();
        for (i, p) in se.ports.iter().enumerate() {
            let f = format!("spec.ports[{i}]");
            self.port(format!("{f}.number"), p.number);
            if !numbers.insert(p.number) {
                self.err(
                    format!("{f}.number"),
                    format!("duplicate port {}", p.number),
                );
            }
            if !p.name.is_empty() && !names.insert(p.name.as_str()) {
                self.err(
                    format!("{f}.name"),
                    format!("duplicate port name {:?}", p.name),
                );
            }
            self.protocol(format!("{f}.protocol"), p.protocol.as_ref());
            if let Some(t) = p.target_port {
                self.port(format!("{f}.targetPort"), t);
            }
        }
        if !se.endpoints.is_empty() && se.workload_selector.is_some() {
            self.err(
                "spec.workloadSelector",
                "only one of endpoints or workloadSelector may be set",
            );
        }
        for (i, e) in se.endpoints.iter().enumerate() {
            self.workload_entry(&format!("spec.endpoints[{i}]"), e, resolution == "STATIC");
        }
    }

    fn workload_entry(&mut self, f: &str, we: &WorkloadEntrySpec, ip_only: bool) {
        match &we.address {
            None => self.err(format!("{f}.address"), "address is required"),
            Some(a) => self.address(format!("{f}.address"), a, ip_only),
        }
        for (name, port) in &we.ports {
            self.port(format!("{f}.ports.{name}"), *port);
        }
        self.non_negative(format!("{f}.weight"), we.weight);
        if we.weight.is_some_and(|w| w > u32::MAX as i64) {
            self.err(
                format!("{f}.weight"),
                format!("weight exceeds {}", u32::MAX),
            );
        }
    }
}

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

/// A DNS name, optionally with a leading `*` label; or a wildcard.
pub fn check_host(host: &str, allow_wildcard: bool) -> Result<(), String> {
    if host.is_empty() {
        return Err("host is empty".into());
    }
    if host.len() > 255 {
        return Err(format!("host {host:?} is longer than 255 characters"));
    }
    let rest = if host == "*" {
        return if allow_wildcard {
            Ok(())
        } else {
            Err("wildcard host is not allowed here".into())
        };
    } else if let Some(rest) = host.strip_prefix("*.") {
        if !allow_wildcard {
            return Err(format!("wildcard host {host:?} is not allowed here"));
        }
        rest
    } else {
        host
    };
    for label in rest.split('.') {
        check_label(label).map_err(|e| format!("invalid host {host:?}: {e}"))?;
    }
    Ok(())
}

/// A DNS-1123 label (Istio lets uppercase through for hosts and subset names).
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > 63 {
        return Err(format!("{label:?} is not a DNS label of 1-63 characters"));
    }
    let ok = label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{label:?} is not a DNS label (letters, digits and '-', not at either end)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_text, Outcome};

    fn problems(yaml: &str) -> Vec<String> {
        parse_text("t.yaml", yaml)
            .into_iter()
            .flat_map(|o| match o {
                Outcome::Rejected { problems, .. } => problems,
                _ => vec![],
            })
            .map(|p| format!("{}: {}", p.field, p.reason))
            .collect()
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

    #[test]
    fn destination_rule_rules() {
        let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: FASTEST}\n    outlierDetection: {maxEjectionPercent: 150}\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v1, labels: {version: v2}}\n  - {name: Bad_Name}\n";
        assert_eq!(
            problems(dr),
            vec![
                "spec.trafficPolicy.loadBalancer.simple: unknown load balancer \"FASTEST\"",
                "spec.trafficPolicy.outlierDetection.maxEjectionPercent: 150 is not a percentage in 0-100",
                "spec.subsets[1].name: duplicate subset name \"v1\"",
                "spec.subsets[2].name: \"Bad_Name\" is not a DNS label (letters, digits and '-', not at either end)",
            ]
        );
    }

    #[test]
    fn service_entry_rules() {
        let se = "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {name: e}\nspec:\n  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: HTTPS}]\n  resolution: STATIC\n  endpoints: [{address: not-an-ip}]\n";
        assert_eq!(
            problems(se),
            vec!["spec.endpoints[0].address: \"not-an-ip\" is not an IP address"]
        );
    }

    #[test]
    fn hosts() {
        assert!(check_host("reviews", false).is_ok());
        assert!(check_host("reviews.default.svc.cluster.local", false).is_ok());
        assert!(check_host("*.example.com", true).is_ok());
        assert!(check_host("*.example.com", false).is_err());
        assert!(check_host("a..b", false).is_err());
        assert!(check_host("bad_host", false).is_err());
    }
}
