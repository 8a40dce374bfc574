//! A service as the mesh sees it, whether it came from a Kubernetes Service or
//! from a ServiceEntry.

use std::collections::BTreeMap;

use super::hosts;
use shmesh_api::objects::*;

/// Application protocol of a port, from its name prefix (`http-web`),
/// `appProtocol`, or a ServiceEntry's `protocol`, as Istio detects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    Https,
    Tls,
    Tcp,
    Udp,
    /// Not declared: Istio sniffs; shmesh routes it as HTTP.
    Unknown,
}

impl Protocol {
    pub fn parse(s: &str) -> Protocol {
        match s.to_ascii_lowercase().as_str() {
            "http" | "http1" => Protocol::Http,
            "http2" | "h2c" | "kubernetes.io/h2c" => Protocol::Http2,
            "grpc" | "grpc-web" => Protocol::Grpc,
            "https" => Protocol::Https,
            "tls" => Protocol::Tls,
            "tcp" | "mongo" | "mysql" | "redis" | "thrift" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => Protocol::Unknown,
        }
    }

    /// From a Kubernetes port name such as `http-web` or `grpc`.
    pub fn from_port_name(name: &str) -> Protocol {
        let prefix = name.split('-').next().unwrap_or("");
        Protocol::parse(prefix)
    }

    /// Routed by HTTP route configurations.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::Unknown
        )
    }

    /// Upstream connections must use HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub number: u16,
    pub protocol: Protocol,
    pub target: TargetPort,
}

/// How endpoints of a service are found (ServiceEntry `resolution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Endpoints by EDS (Kubernetes services, STATIC ServiceEntries).
    Static,
    /// Envoy resolves the endpoints' host names (STRICT_DNS).
    Dns,
    /// Envoy resolves them, one address at a time (LOGICAL_DNS).
    DnsRoundRobin,
    /// Traffic goes to the address the caller asked for (ORIGINAL_DST).
    Passthrough,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Backing {
    Kubernetes {
        selector: Option<Labels>,
    },
    ServiceEntry {
        endpoints: Vec<WorkloadEntrySpec>,
        selector: Option<Labels>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct MeshService {
    pub hostname: String,
    pub namespace: String,
    /// Name of the Service or ServiceEntry.
    pub name: String,
    pub ports: Vec<ServicePort>,
    pub resolution: Resolution,
    pub vip: Option<String>,
    pub backing: Backing,
    /// Namespaces that may see this service; `None` is all.
    pub export_to: Option<std::collections::BTreeSet<String>>,
}

impl MeshService {
    pub fn from_k8s(s: &Service) -> MeshService {
        let ns = s
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let ports = s
            .spec
            .ports
            .iter()
            .filter(|p| {
                !p.protocol
                    .as_deref()
                    .is_some_and(|p| p.eq_ignore_ascii_case("udp"))
            })
            .map(|p| {
                let name = p.name.clone().unwrap_or_default();
                let protocol = p
                    .app_protocol
                    .as_deref()
                    .map(Protocol::parse)
                    .filter(|p| *p != Protocol::Unknown)
                    .unwrap_or_else(|| Protocol::from_port_name(&name));
                let number = p.port as u16;
                let target = match &p.target_port {
                    Some(IntOrString::Int(n)) => TargetPort::Number(*n as u16),
                    Some(IntOrString::String(s)) => match s.parse::<u16>() {
                        Ok(n) => TargetPort::Number(n),
                        Err(_) => TargetPort::Name(s.clone()),
                    },
                    None => TargetPort::Number(number),
                };
                ServicePort {
                    name,
                    number,
                    protocol,
                    target,
                }
            })
            .collect();
        let vip = s
            .spec
            .cluster_ip
            .clone()
            .filter(|ip| !ip.is_empty() && ip != "None");
        let selector = s.spec.selector.clone().filter(|s| !s.is_empty());
        let external = s.spec.type_.as_deref() == Some("ExternalName");
        MeshService {
            hostname: hosts::service_fqdn(&s.metadata.name, &ns),
            namespace: ns,
            name: s.metadata.name.clone(),
            ports,
            resolution: if external {
                Resolution::Dns
            } else {
                Resolution::Static
            },
            vip,
            backing: if external {
                Backing::ServiceEntry {
                    endpoints: vec![WorkloadEntrySpec {
                        address: s.spec.external_name.clone(),
                        ..Default::default()
                    }],
                    selector: None,
                }
            } else {
                Backing::Kubernetes { selector }
            },
            export_to: None,
        }
    }

    pub fn from_service_entry(se: &ServiceEntry, host: &str) -> MeshService {
        let ns = se
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let ports = se
            .spec
            .ports
            .iter()
            .map(|p| ServicePort {
                name: p.name.clone(),
                number: p.number as u16,
                protocol: p
                    .protocol
                    .as_deref()
                    .map(Protocol::parse)
                    .unwrap_or(Protocol::Unknown),
                target: TargetPort::Number(p.target_port.unwrap_or(p.number) as u16),
            })
            .filter(|p| p.protocol != Protocol::Udp)
            .collect();
        let resolution = match se.spec.resolution.as_deref() {
            Some("STATIC") => Resolution::Static,
            Some("DNS") => Resolution::Dns,
            Some("DNS_ROUND_ROBIN") => Resolution::DnsRoundRobin,
            _ => Resolution::Passthrough,
        };
        let export_to =
            if se.spec.export_to.is_empty() || se.spec.export_to.iter().any(|e| e == "*") {
                None
            } else {
                Some(
                    se.spec
                        .export_to
                        .iter()
                        .map(|e| if e == "." { ns.clone() } else { e.clone() })
                        .collect(),
                )
            };
        MeshService {
            hostname: host.to_string(),
            namespace: ns,
            name: se.metadata.name.clone(),
            ports,
            resolution,
            vip: se.spec.addresses.first().cloned(),
            backing: Backing::ServiceEntry {
                endpoints: se.spec.endpoints.clone(),
                selector: se
                    .spec
                    .workload_selector
                    .as_ref()
                    .map(|w| w.labels.clone())
                    .filter(|l| !l.is_empty()),
            },
            export_to,
        }
    }

    /// Labels selecting the workloads behind this service, if any.
    pub fn selector(&self) -> Option<&Labels> {
        match &self.backing {
            Backing::Kubernetes { selector } => selector.as_ref(),
            Backing::ServiceEntry { selector, .. } => selector.as_ref(),
        }
    }

    pub fn port(&self, number: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.number == number)
    }

    pub fn visible_to(&self, namespace: &str) -> bool {
        self.export_to
            .as_ref()
            .is_none_or(|s| s.contains(namespace))
    }
}

/// Port name → number map used by ServiceEntry endpoints and WorkloadEntries.
pub type NamedPorts = BTreeMap<String, i64>;
