//! Istio `Sidecar` (networking.istio.io): limits which hosts the proxies of a
//! namespace (or of the workloads its selector matches) can reach
//! (`egress.hosts`), and names the ports their workload takes traffic on
//! (`ingress`).

use serde::Deserialize;

use crate::meta::*;
use crate::validate::{check_label, Validator};

pub type Sidecar = IstioObject<SidecarSpec>;

/// Istio's Sidecar: limits what the proxies of a namespace can reach.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SidecarSpec {
    pub workload_selector: Option<WorkloadSelector>,
    pub ingress: Vec<IngressListener>,
    pub egress: Vec<EgressListener>,
}

/// A port the workload takes inbound traffic on, instead of the ports of the
/// services that select it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct IngressListener {
    pub port: IngressPort,
    /// Where the traffic goes: `127.0.0.1:PORT`, `0.0.0.0:PORT` (the
    /// workload's own address) or `unix://PATH`; the same port on the
    /// workload's address when empty.
    pub default_endpoint: Option<String>,
    /// `DEFAULT` or `IPTABLES` (captured); `NONE` is not supported.
    pub capture_mode: Option<String>,
    pub bind: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct IngressPort {
    pub number: i64,
    pub protocol: Option<String>,
    pub name: Option<String>,
}

/// Where an ingress listener sends its traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IngressEndpoint {
    /// The port the caller dialed, on the workload's address.
    SamePort,
    /// Another port of the workload's address (`0.0.0.0:PORT`).
    WorkloadPort(u16),
    /// The loopback address (`127.0.0.1:PORT`).
    Loopback(u16),
    /// A Unix socket (`unix://PATH`).
    Unix(String),
}

impl IngressListener {
    pub fn endpoint(&self) -> Result<IngressEndpoint, String> {
        let Some(text) = self.default_endpoint.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(IngressEndpoint::SamePort);
        };
        if let Some(path) = text.strip_prefix("unix://") {
            return match path {
                "" => Err(format!("{text:?} names no socket")),
                path => Ok(IngressEndpoint::Unix(path.to_string())),
            };
        }
        let port = |p: &str| -> Result<u16, String> {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{text:?} has an invalid port"))
        };
        match text.rsplit_once(':') {
            Some(("127.0.0.1" | "[::1]", p)) => Ok(IngressEndpoint::Loopback(port(p)?)),
            Some(("0.0.0.0" | "[::]", p)) => Ok(IngressEndpoint::WorkloadPort(port(p)?)),
            _ => Err(format!(
                "{text:?} is not 127.0.0.1:PORT, 0.0.0.0:PORT or unix://PATH"
            )),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct EgressListener {
    /// `namespace/dnsName` entries: `*`, `.` (the proxy's) or `~` (none) for the
    /// namespace; `*`, `*.suffix` or an FQDN for the name.
    pub hosts: Vec<String>,
}

impl Validator {
    pub(crate) fn sidecar(&mut self, sc: &SidecarSpec) {
        let mut ports = std::collections::BTreeSet::new();
        for (i, ingress) in sc.ingress.iter().enumerate() {
            let at = format!("spec.ingress[{i}]");
            self.port(format!("{at}.port.number"), ingress.port.number);
            if !ports.insert(ingress.port.number) {
                self.err(
                    format!("{at}.port.number"),
                    format!("port {} is declared twice", ingress.port.number),
                );
            }
            self.protocol(
                format!("{at}.port.protocol"),
                ingress.port.protocol.as_ref(),
            );
            if let Err(reason) = ingress.endpoint() {
                self.err(format!("{at}.defaultEndpoint"), reason);
            }
            match ingress.capture_mode.as_deref() {
                None | Some("DEFAULT" | "IPTABLES") => {}
                Some("NONE") => self.err(
                    format!("{at}.captureMode"),
                    "NONE (a listener bound without capture) is not supported",
                ),
                Some(other) => self.err(
                    format!("{at}.captureMode"),
                    format!("{other:?} is not one of DEFAULT, IPTABLES, NONE"),
                ),
            }
        }
        if let Some(sel) = &sc.workload_selector {
            for key in sel.labels.keys() {
                if key.is_empty() {
                    self.err("spec.workloadSelector.labels", "a label name is empty");
                }
            }
        }
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
}

#[cfg(test)]
mod tests {
    use crate::validate::problems;

    fn sidecar(hosts: &str) -> String {
        format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: shop}}\nspec:\n  egress:\n  - hosts: [{hosts}]\n")
    }

    #[test]
    fn namespace_and_host_pairs_are_valid() {
        let sc =
            sidecar("\"./*\", \"istio-system/*\", \"*/reviews.shop.svc.cluster.local\", \"~/*\"");
        assert!(problems(&sc).is_empty(), "{:?}", problems(&sc));
    }

    #[test]
    fn ingress_ports_and_endpoints() {
        let yaml = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: cart, namespace: shop}\nspec:\n  workloadSelector: {labels: {app: cart}}\n  ingress:\n  - port: {number: 9080, protocol: HTTP, name: http}\n    defaultEndpoint: 127.0.0.1:8080\n  - port: {number: 9090, protocol: TCP, name: tcp}\n    defaultEndpoint: 0.0.0.0:7070\n  - port: {number: 9091, protocol: GRPC, name: grpc}\n    defaultEndpoint: unix:///var/run/app.sock\n  - port: {number: 9092, protocol: HTTP, name: plain}\n";
        assert!(problems(yaml).is_empty(), "{:?}", problems(yaml));
        let bad = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: cart, namespace: shop}\nspec:\n  ingress:\n  - port: {number: 0, protocol: HTTPX}\n    defaultEndpoint: 10.0.0.1:8080\n  - port: {number: 0}\n    captureMode: NONE\n";
        assert_eq!(
            problems(bad),
            vec![
                "spec.ingress[0].port.number: port 0 is out of range 1-65535",
                "spec.ingress[0].port.protocol: unknown protocol \"HTTPX\"",
                "spec.ingress[0].defaultEndpoint: \"10.0.0.1:8080\" is not 127.0.0.1:PORT, 0.0.0.0:PORT or unix://PATH",
                "spec.ingress[1].port.number: port 0 is out of range 1-65535",
                "spec.ingress[1].port.number: port 0 is declared twice",
                "spec.ingress[1].captureMode: NONE (a listener bound without capture) is not supported",
            ]
        );
    }

    #[test]
    fn hosts_must_name_a_namespace_and_a_host() {
        assert_eq!(
            problems(&sidecar("reviews, \"/reviews\", \"Bad_NS/*\", \"./a..b\"")),
            vec![
                "spec.egress[0].hosts[0]: \"reviews\" is not of the form namespace/dnsName",
                "spec.egress[0].hosts[1]: \"/reviews\" has an empty namespace",
                "spec.egress[0].hosts[2]: \"Bad_NS\" is not a DNS label (letters, digits and '-', not at either end)",
                "spec.egress[0].hosts[3]: invalid host \"a..b\": \"\" is not a DNS label of 1-63 characters",
            ]
        );
        assert_eq!(
            problems(&sidecar("")),
            vec!["spec.egress[0].hosts: at least one host is required"]
        );
    }
}
