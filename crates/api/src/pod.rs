//! Kubernetes `Pod` (core/v1): its labels, IP, named container ports and
//! readiness and service account, for the endpoints of the services that
//! select it.

use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use crate::meta::*;
use crate::validate::Validator;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    pub containers: Vec<Container>,
    pub node_name: Option<String>,
    /// The pod's identity (Kubernetes gives pods `default` when unset).
    /// Shared: every endpoint of the pod holds it.
    pub service_account_name: Option<Arc<str>>,
}

impl PodSpec {
    /// The pod's service account; `default` when unset, one shared copy.
    pub fn service_account(&self) -> Arc<str> {
        static DEFAULT: OnceLock<Arc<str>> = OnceLock::new();
        match &self.service_account_name {
            Some(name) if !name.is_empty() => name.clone(),
            _ => DEFAULT.get_or_init(|| Arc::from("default")).clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Container {
    pub ports: Vec<ContainerPort>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default)]
    pub name: Option<String>,
    pub container_port: i64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub conditions: Vec<PodCondition>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
}

impl Validator {
    pub(crate) fn pod(&mut self, p: &Pod) {
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
}

#[cfg(test)]
mod tests {
    use crate::validate::problems;

    fn pod(ip: &str, port: i64) -> String {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: reviews-1, namespace: shop, labels: {{app: reviews}}}}\nspec:\n  containers:\n  - name: app\n    ports: [{{name: http, containerPort: {port}}}]\nstatus: {{podIP: \"{ip}\"}}\n")
    }

    #[test]
    fn an_ip_and_ports_in_range_are_valid() {
        assert!(problems(&pod("10.0.0.1", 9080)).is_empty());
        // A pod not yet scheduled has no IP.
        assert!(problems(&pod("", 9080)).is_empty());
    }

    #[test]
    fn the_ip_must_be_an_address_and_ports_in_range() {
        assert_eq!(
            problems(&pod("reviews-1", 70000)),
            vec![
                "status.podIP: \"reviews-1\" is not an IP address",
                "spec.containers[0].ports[0].containerPort: port 70000 is out of range 1-65535",
            ]
        );
    }
}
