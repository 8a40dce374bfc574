//! Kubernetes `Pod` (core/v1): its labels, IP, named container ports and
//! readiness, for the endpoints of the services that select it.

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
