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
