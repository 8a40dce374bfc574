//! Istio `Sidecar` (networking.istio.io): limits which hosts the proxies of a
//! namespace can reach (`egress.hosts`).

use serde::Deserialize;

use crate::meta::*;
use crate::validate::{check_label, Validator};

pub type Sidecar = IstioObject<SidecarSpec>;

/// Istio's Sidecar: limits what the proxies of a namespace can reach.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SidecarSpec {
    pub workload_selector: Option<WorkloadSelector>,
    pub egress: Vec<EgressListener>,
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
