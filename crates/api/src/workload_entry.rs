//! Istio `WorkloadEntry` (networking.istio.io): a workload that is not a pod
//! (a VM, an external address), selected by ServiceEntries and Services like
//! a pod is.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::meta::*;
use crate::validate::Validator;

pub type WorkloadEntry = IstioObject<WorkloadEntrySpec>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkloadEntrySpec {
    pub address: Option<String>,
    pub ports: BTreeMap<String, i64>,
    pub labels: Labels,
    pub locality: Option<String>,
    pub weight: Option<i64>,
    pub network: Option<String>,
    /// The workload's identity: `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`.
    pub service_account: Option<String>,
}

impl Validator {
    pub(crate) fn workload_entry(&mut self, f: &str, we: &WorkloadEntrySpec, ip_only: bool) {
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

#[cfg(test)]
mod tests {
    use crate::validate::problems;

    fn entry(spec: &str) -> String {
        format!("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: vm-1, namespace: shop}}\nspec: {spec}\n")
    }

    #[test]
    fn an_address_with_ports_and_a_weight_is_valid() {
        let we = entry("{address: 10.1.0.1, ports: {http: 8080}, labels: {app: vm}, weight: 3}");
        assert!(problems(&we).is_empty(), "{:?}", problems(&we));
        // A host name is an address too, outside a ServiceEntry's STATIC endpoints.
        assert!(problems(&entry("{address: vm-1.example.com}")).is_empty());
    }

    #[test]
    fn address_ports_and_weight_are_checked() {
        assert_eq!(
            problems(&entry("{ports: {http: 0}, weight: -1}")),
            vec![
                "spec.address: address is required",
                "spec.ports.http: port 0 is out of range 1-65535",
                "spec.weight: -1 must not be negative",
            ]
        );
        assert_eq!(
            problems(&entry("{address: 10.1.0.1, weight: 5000000000}")),
            vec!["spec.weight: weight exceeds 4294967295"]
        );
    }
}
