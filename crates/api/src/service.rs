//! Kubernetes `Service` (core/v1): the name, ports and pod selector that make
//! a service `NAME.NAMESPACE.svc.cluster.local` in the mesh.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::meta::*;
use crate::validate::Validator;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ServiceSpec,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default)]
    pub ports: Vec<ServicePortSpec>,
    /// `None` and empty mean "no selector": endpoints come only from slices.
    #[serde(default)]
    pub selector: Option<Labels>,
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub external_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePortSpec {
    #[serde(default)]
    pub name: Option<String>,
    pub port: i64,
    #[serde(default)]
    pub target_port: Option<IntOrString>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub app_protocol: Option<String>,
}

impl Validator {
    pub(crate) fn service(&mut self, s: &Service) {
        let mut names = BTreeSet::new();
        let ports = &s.spec.ports;
        for (i, p) in ports.iter().enumerate() {
            let f = format!("spec.ports[{i}]");
            self.port(format!("{f}.port"), p.port);
            match &p.target_port {
                Some(IntOrString::Int(n)) => self.port(format!("{f}.targetPort"), *n),
                Some(IntOrString::String(s)) if s.is_empty() => {
                    self.err(format!("{f}.targetPort"), "empty port name")
                }
                _ => {}
            }
            let name = p.name.clone().unwrap_or_default();
            if ports.len() > 1 && name.is_empty() {
                self.err(
                    format!("{f}.name"),
                    "must be set when a Service has several ports",
                );
            }
            if !name.is_empty() && !names.insert(name.clone()) {
                self.err(format!("{f}.name"), format!("duplicate port name {name:?}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::problems;

    const HEAD: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec:\n  selector: {app: reviews}\n";

    #[test]
    fn named_ports_in_range_are_valid() {
        let svc = format!("{HEAD}  ports:\n  - {{name: http, port: 9080, targetPort: http-alt}}\n  - {{name: grpc, port: 9090, targetPort: 9091}}\n");
        assert!(problems(&svc).is_empty(), "{:?}", problems(&svc));
    }

    #[test]
    fn ports_must_be_in_range_named_and_unique() {
        let svc = format!("{HEAD}  ports:\n  - {{name: http, port: 0}}\n  - {{port: 80, targetPort: 70000}}\n  - {{name: http, port: 81, targetPort: \"\"}}\n");
        assert_eq!(
            problems(&svc),
            vec![
                "spec.ports[0].port: port 0 is out of range 1-65535",
                "spec.ports[1].targetPort: port 70000 is out of range 1-65535",
                "spec.ports[1].name: must be set when a Service has several ports",
                "spec.ports[2].targetPort: empty port name",
                "spec.ports[2].name: duplicate port name \"http\"",
            ]
        );
    }
}
