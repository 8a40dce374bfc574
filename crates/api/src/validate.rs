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
    pub(crate) fn err(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem::error(field, reason));
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
