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

#[cfg(test)]
mod tests {
    use crate::validate::problems;

    fn slice(address_type: &str, addresses: &str, port: i64) -> String {
        format!("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: reviews-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: reviews}}\naddressType: {address_type}\nendpoints:\n- addresses: [{addresses}]\nports: [{{name: http, port: {port}}}]\n")
    }

    #[test]
    fn addresses_of_the_slice_type_are_valid() {
        assert!(problems(&slice("IPv4", "10.0.0.1, 10.0.0.2", 9080)).is_empty());
        assert!(problems(&slice("FQDN", "reviews.example.com", 9080)).is_empty());
    }

    #[test]
    fn addresses_must_match_the_type_and_ports_be_in_range() {
        assert_eq!(
            problems(&slice("IPv4", "reviews.example.com", 0)),
            vec![
                "endpoints[0].addresses[0]: \"reviews.example.com\" is not an IP address",
                "ports[0].port: port 0 is out of range 1-65535",
            ]
        );
        assert_eq!(
            problems(&slice("Unix", "", 9080)),
            vec![
                "addressType: unknown address type \"Unix\"",
                "endpoints[0].addresses: at least one address is required",
            ]
        );
    }
}
