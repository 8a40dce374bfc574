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
