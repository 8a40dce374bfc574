//! The Gateway API's `TCPRoute` and `TLSRoute` (gateway.networking.k8s.io
//! v1alpha2, experimental channel): connections on a Gateway's TCP listener,
//! or TLS connections passed through by SNI on its TLS listener, sent to
//! weighted Services. The model turns them into VirtualService `tcp[]` and
//! `tls[]` routes bound to the Gateway.

use serde::Deserialize;

use crate::gateway_api::{HTTPBackendRef, ObjectRef};
use crate::meta::ObjectMeta;
use crate::validate::Validator;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TCPRoute {
    pub metadata: ObjectMeta,
    pub spec: L4RouteSpec,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TLSRoute {
    pub metadata: ObjectMeta,
    pub spec: L4RouteSpec,
}

/// The spec TCPRoute and TLSRoute share; only a TLSRoute has hostnames.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct L4RouteSpec {
    pub parent_refs: Vec<ObjectRef>,
    pub hostnames: Vec<String>,
    pub rules: Vec<L4RouteRule>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct L4RouteRule {
    pub backend_refs: Vec<HTTPBackendRef>,
}

impl Validator {
    pub(crate) fn l4_route(&mut self, route: &L4RouteSpec, tls: bool) {
        if !tls && !route.hostnames.is_empty() {
            self.err("spec.hostnames", "a TCPRoute has no hostnames");
        }
        for (i, h) in route.hostnames.iter().enumerate() {
            self.host(format!("spec.hostnames[{i}]"), h, true);
        }
        if route.rules.is_empty() {
            self.err("spec.rules", "a route needs at least one rule");
        }
        for (i, rule) in route.rules.iter().enumerate() {
            let at = format!("spec.rules[{i}]");
            if rule.backend_refs.iter().any(|b| !b.filters.is_empty()) {
                self.err(
                    format!("{at}.backendRefs"),
                    "backends of TCP and TLS routes take no filters",
                );
            }
            self.backend_refs(&at, &rule.backend_refs);
            if rule.backend_refs.iter().any(|b| b.port.is_none()) {
                self.err(
                    format!("{at}.backendRefs"),
                    "a Service backend needs a port",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::problems;

    #[test]
    fn bad_l4_routes_name_their_fields() {
        let route = "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: t, namespace: shop}\nspec:\n  hostnames: [a.example.com]\n  rules: [{backendRefs: [{name: db, weight: -2}]}]\n";
        let got = problems(route);
        for field in [
            "spec.hostnames",
            "spec.rules[0].backendRefs[0].weight",
            "spec.rules[0].backendRefs",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(field)),
                "{field} missing in {got:?}"
            );
        }
    }
}
