//! Istio `ServiceEntry` (networking.istio.io): hosts outside the cluster's
//! Services, with their ports, resolution and endpoints.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::meta::*;
use crate::validate::Validator;
use crate::workload_entry::WorkloadEntrySpec;

pub type ServiceEntry = IstioObject<ServiceEntrySpec>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    pub hosts: Vec<String>,
    pub addresses: Vec<String>,
    pub ports: Vec<SePort>,
    pub location: Option<String>,
    pub resolution: Option<String>,
    pub endpoints: Vec<WorkloadEntrySpec>,
    pub workload_selector: Option<WorkloadSelector>,
    pub export_to: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SePort {
    pub number: i64,
    pub protocol: Option<String>,
    pub name: String,
    pub target_port: Option<i64>,
}

const SE_RESOLUTIONS: &[&str] = &["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"];

impl Validator {
    pub(crate) fn service_entry(&mut self, se: &ServiceEntrySpec) {
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
}

#[cfg(test)]
mod tests {
    use crate::validate::problems;

    #[test]
    fn service_entry_rules() {
        let se = "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {name: e}\nspec:\n  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: HTTPS}]\n  resolution: STATIC\n  endpoints: [{address: not-an-ip}]\n";
        assert_eq!(
            problems(se),
            vec!["spec.endpoints[0].address: \"not-an-ip\" is not an IP address"]
        );
    }
}
