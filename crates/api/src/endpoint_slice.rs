//! Kubernetes `EndpointSlice` (discovery.k8s.io/v1): the addresses and ports
//! behind a Service, with their readiness and the pods they point at.

use serde::Deserialize;

use crate::meta::*;
use crate::validate::Validator;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub address_type: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    pub ports: Vec<SlicePort>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SliceEndpoint {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub conditions: SliceConditions,
    #[serde(default)]
    pub target_ref: Option<ObjectReference>,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub node_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SliceConditions {
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlicePort {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub app_protocol: Option<String>,
}

impl Validator {
    pub(crate) fn endpoint_slice(&mut self, s: &EndpointSlice) {
        let address_type = s.address_type.as_deref().unwrap_or("IPv4");
        if !["IPv4", "IPv6", "FQDN"].contains(&address_type) {
            self.err(
                "addressType",
                format!("unknown address type {address_type:?}"),
            );
        }
        for (i, e) in s.endpoints.iter().enumerate() {
            if e.addresses.is_empty() {
                self.err(
                    format!("endpoints[{i}].addresses"),
                    "at least one address is required",
                );
            }
            for (j, a) in e.addresses.iter().enumerate() {
                self.address(
                    format!("endpoints[{i}].addresses[{j}]"),
                    a,
                    address_type != "FQDN",
                );
            }
        }
        for (i, p) in s.ports.iter().enumerate() {
            if let Some(n) = p.port {
                self.port(format!("ports[{i}].port"), n);
            }
        }
    }
}
