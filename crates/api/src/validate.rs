//! Validation of objects, following Istio's own rules (istio/istio
//! `pkg/config/validation`) and the Kubernetes API's for core kinds. Each
//! kind's own rules live in its module; this is the entry point and the
//! checks kinds share (ports, hosts, durations, regexes, string matches).
//!
//! Only errors that make an object unusable are reported here; references to
//! things that may not exist (an unknown subset or host) are warnings found when
//! the whole mesh is known (`shmesh_model::analyze`).

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
        Object::PeerAuthentication(pa) => v.peer_authentication(&pa.spec),
        Object::AuthorizationPolicy(ap) => v.authorization_policy(&ap.spec),
        Object::RequestAuthentication(ra) => v.request_authentication(&ra.spec),
        Object::Secret(s) => v.secret(s),
        Object::Gateway(gw) => v.gateway(&gw.spec),
        Object::GatewayClass(gc) => v.gateway_class(gc),
        Object::KubernetesGateway(gw) => v.kubernetes_gateway(&gw.spec),
        Object::HTTPRoute(r) => v.kubernetes_http_route(&r.spec),
        Object::GRPCRoute(r) => v.grpc_route(&r.spec),
        Object::TCPRoute(r) => v.l4_route(&r.spec, false),
        Object::TLSRoute(r) => v.l4_route(&r.spec, true),
        Object::ReferenceGrant(g) => v.reference_grant(&g.spec),
        // Only its labels are read.
        Object::Namespace(_) => {}
    }
    v.problems
}

/// Collects the problems of one object; each kind adds its own checks.
#[derive(Default)]
pub(crate) struct Validator {
    problems: Vec<Problem>,
}

/// Protocols Istio accepts for a port (case-insensitive).
pub const PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "MYSQL", "REDIS", "TCP", "TLS", "UDP",
    "THRIFT",
];

impl Validator {
    /// `reason` is a message or an error whose message says what is wrong.
    pub(crate) fn err(&mut self, field: impl Into<String>, reason: impl ToString) {
        self.problems
            .push(Problem::error(field, reason.to_string()));
    }

    pub(crate) fn port(&mut self, field: String, port: i64) {
        if !(1..=65535).contains(&port) {
            self.err(field, format!("port {port} is out of range 1-65535"));
        }
    }

    pub(crate) fn non_negative(&mut self, field: String, value: Option<i64>) {
        if let Some(v) = value {
            if v < 0 {
                self.err(field, format!("{v} must not be negative"));
            }
        }
    }

    pub(crate) fn percent(&mut self, field: String, value: Option<i64>) {
        if let Some(v) = value {
            if !(0..=100).contains(&v) {
                self.err(field, format!("{v} is not a percentage in 0-100"));
            }
        }
    }

    /// A duration that must be at least 1ms when set, as Istio requires.
    pub(crate) fn duration(&mut self, field: String, value: Option<&String>) {
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

    pub(crate) fn host(&mut self, field: String, host: &str, allow_wildcard: bool) {
        if let Err(reason) = check_host(host, allow_wildcard) {
            self.err(field, reason);
        }
    }

    pub(crate) fn protocol(&mut self, field: String, protocol: Option<&String>) {
        if let Some(p) = protocol {
            if !PROTOCOLS.iter().any(|k| k.eq_ignore_ascii_case(p)) {
                self.err(field, format!("unknown protocol {p:?}"));
            }
        }
    }

    pub(crate) fn address(&mut self, field: String, address: &str, ip_only: bool) {
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
    pub(crate) fn regex(&mut self, field: String, re: &str) {
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

    pub(crate) fn string_match(&mut self, field: String, m: &StringMatch) {
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
}

/// Why a text is not a host name or DNS label Istio accepts. The message
/// names the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// No host at all.
    #[error("host is empty")]
    EmptyHost,
    /// Beyond DNS's 255 characters.
    #[error("host {0:?} is longer than 255 characters")]
    HostTooLong(String),
    /// `*` where only a specific host may stand.
    #[error("wildcard host is not allowed here")]
    Wildcard,
    /// `*.suffix` where only a specific host may stand.
    #[error("wildcard host {0:?} is not allowed here")]
    WildcardSuffix(String),
    /// One of the host's labels is not a DNS label.
    #[error("invalid host {host:?}: {label}")]
    Host { host: String, label: Box<NameError> },
    /// Empty, or longer than 63 characters.
    #[error("{0:?} is not a DNS label of 1-63 characters")]
    LabelLength(String),
    /// Characters other than letters, digits and `-`, or `-` at either end.
    #[error("{0:?} is not a DNS label (letters, digits and '-', not at either end)")]
    LabelCharacters(String),
}

/// A DNS name, optionally with a leading `*` label; or a wildcard.
pub fn check_host(host: &str, allow_wildcard: bool) -> Result<(), NameError> {
    if host.is_empty() {
        return Err(NameError::EmptyHost);
    }
    if host.len() > 255 {
        return Err(NameError::HostTooLong(host.to_string()));
    }
    let rest = if host == "*" {
        return if allow_wildcard {
            Ok(())
        } else {
            Err(NameError::Wildcard)
        };
    } else if let Some(rest) = host.strip_prefix("*.") {
        if !allow_wildcard {
            return Err(NameError::WildcardSuffix(host.to_string()));
        }
        rest
    } else {
        host
    };
    for label in rest.split('.') {
        check_label(label).map_err(|e| NameError::Host {
            host: host.to_string(),
            label: Box::new(e),
        })?;
    }
    Ok(())
}

/// A DNS-1123 label (Istio lets uppercase through for hosts and subset names).
pub fn check_label(label: &str) -> Result<(), NameError> {
    if label.is_empty() || label.len() > 63 {
        return Err(NameError::LabelLength(label.to_string()));
    }
    let ok = label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(NameError::LabelCharacters(label.to_string()))
    }
}

#[cfg(test)]
pub(crate) fn problems(yaml: &str) -> Vec<String> {
    use crate::parse::{parse_text, Outcome};
    parse_text("t.yaml", yaml)
        .into_iter()
        .flat_map(|o| match o {
            Outcome::Rejected { problems, .. } => problems,
            _ => vec![],
        })
        .map(|p| format!("{}: {}", p.field, p.reason))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
