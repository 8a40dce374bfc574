//! The Kubernetes Gateway API (gateway.networking.k8s.io v1, standard
//! channel): `GatewayClass`, `Gateway` and `HTTPRoute`. The model turns them
//! into the Istio Gateways and VirtualServices they mean, as istiod does
//! (`shmesh_model::gateway_api`); an HTTPRoute whose parent is a Service
//! (GAMMA) routes that Service's mesh traffic.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::meta::ObjectMeta;
use crate::validate::Validator;

/// The controller names whose GatewayClasses shmesh serves: Istio's (so
/// existing objects work unchanged) and its own.
pub const CONTROLLERS: [&str; 2] = [
    "istio.io/gateway-controller",
    "shmesh.io/gateway-controller",
];

/// The label a gateway proxy carries to take a Gateway API Gateway of its
/// namespace (as Istio's gateway deployments do).
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GatewayClass {
    pub metadata: ObjectMeta,
    pub spec: GatewayClassSpec,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayClassSpec {
    pub controller_name: String,
}

/// A Gateway API `Gateway` (the Istio kind of the same name is `Gateway`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct KubernetesGateway {
    pub metadata: ObjectMeta,
    pub spec: KubernetesGatewaySpec,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct KubernetesGatewaySpec {
    pub gateway_class_name: String,
    pub listeners: Vec<Listener>,
    /// Where the gateway is reached; an `IPAddress` is also the address its
    /// proxy's listeners bind (all addresses without one).
    pub addresses: Vec<GatewayAddress>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GatewayAddress {
    /// IPAddress (the default) or Hostname.
    #[serde(rename = "type")]
    pub address_type: Option<String>,
    pub value: String,
}

impl KubernetesGatewaySpec {
    /// The address the Gateway's listeners bind: its first IP address when
    /// that is a loopback address (a gateway run beside its clients, as in
    /// local runs and tests). Any other address belongs to the Service in
    /// front of the gateway's pods, and the listeners take every address
    /// of the pod, as istiod has them.
    pub fn bind_address(&self) -> Option<&str> {
        self.addresses
            .iter()
            .find(|a| a.address_type.as_deref().unwrap_or("IPAddress") == "IPAddress")
            .map(|a| a.value.as_str())
            .filter(|a| {
                a.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
            })
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Listener {
    pub name: String,
    pub hostname: Option<String>,
    pub port: i64,
    /// HTTP, HTTPS, TLS or TCP.
    pub protocol: String,
    pub tls: Option<GatewayTlsConfig>,
    pub allowed_routes: Option<AllowedRoutes>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GatewayTlsConfig {
    /// Terminate (the default) or Passthrough.
    pub mode: Option<String>,
    pub certificate_refs: Vec<ObjectRef>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct AllowedRoutes {
    pub namespaces: Option<RouteNamespaces>,
    /// The route kinds that may attach; those of the listener's protocol
    /// when empty.
    pub kinds: Vec<RouteGroupKind>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct RouteGroupKind {
    pub group: Option<String>,
    pub kind: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// All, Same (the default) or Selector.
    pub from: Option<String>,
    /// With `from: Selector`: the namespaces whose labels it matches.
    pub selector: Option<crate::namespace::NamespaceSelector>,
}

/// A reference to an object by group, kind, namespace and name (Secrets,
/// Services, parents).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub section_name: Option<String>,
    pub port: Option<i64>,
}

impl ObjectRef {
    /// The kind referred to, `default_kind` when unset.
    pub fn kind_or<'a>(&'a self, default_kind: &'a str) -> &'a str {
        self.kind.as_deref().unwrap_or(default_kind)
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct HTTPRoute {
    pub metadata: ObjectMeta,
    pub spec: HTTPRouteSpec,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPRouteSpec {
    pub parent_refs: Vec<ObjectRef>,
    pub hostnames: Vec<String>,
    pub rules: Vec<HTTPRouteRule>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPRouteRule {
    pub matches: Vec<HTTPRouteMatch>,
    pub filters: Vec<HTTPRouteFilter>,
    pub backend_refs: Vec<HTTPBackendRef>,
    pub timeouts: Option<HTTPRouteTimeouts>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPRouteMatch {
    pub path: Option<PathMatch>,
    pub headers: Vec<NameMatch>,
    pub query_params: Vec<NameMatch>,
    pub method: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PathMatch {
    /// Exact, PathPrefix (the default) or RegularExpression.
    #[serde(rename = "type")]
    pub match_type: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct NameMatch {
    /// Exact (the default) or RegularExpression.
    #[serde(rename = "type")]
    pub match_type: Option<String>,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPRouteFilter {
    #[serde(rename = "type")]
    pub filter_type: String,
    pub request_header_modifier: Option<HeaderModifier>,
    pub response_header_modifier: Option<HeaderModifier>,
    pub request_redirect: Option<RequestRedirect>,
    pub url_rewrite: Option<UrlRewrite>,
    pub request_mirror: Option<RequestMirror>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HeaderModifier {
    pub set: Vec<HeaderValue>,
    pub add: Vec<HeaderValue>,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct HeaderValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RequestRedirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
    pub port: Option<i64>,
    pub status_code: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct UrlRewrite {
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
}

/// ReplaceFullPath or ReplacePrefixMatch.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PathModifier {
    #[serde(rename = "type")]
    pub modifier_type: String,
    pub replace_full_path: Option<String>,
    pub replace_prefix_match: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RequestMirror {
    pub backend_ref: ObjectRef,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct HTTPBackendRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<i64>,
    /// Relative; 1 when unset.
    pub weight: Option<i64>,
    pub filters: Vec<HTTPRouteFilter>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct HTTPRouteTimeouts {
    pub request: Option<String>,
}

impl Validator {
    pub(crate) fn gateway_class(&mut self, gc: &GatewayClass) {
        if gc.spec.controller_name.is_empty() {
            self.err(
                "spec.controllerName",
                "a GatewayClass needs a controllerName",
            );
        }
    }

    pub(crate) fn kubernetes_gateway(&mut self, gw: &KubernetesGatewaySpec) {
        if gw.gateway_class_name.is_empty() {
            self.err(
                "spec.gatewayClassName",
                "a Gateway needs a gatewayClassName",
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, a) in gw.addresses.iter().enumerate() {
            if a.address_type.as_deref().unwrap_or("IPAddress") == "IPAddress" {
                self.address(format!("spec.addresses[{i}].value"), &a.value, true);
            }
        }
        for (i, l) in gw.listeners.iter().enumerate() {
            let at = format!("spec.listeners[{i}]");
            if !names.insert(&l.name) {
                self.err(
                    format!("{at}.name"),
                    format!("listener name {:?} is used twice", l.name),
                );
            }
            self.port(format!("{at}.port"), l.port);
            if !matches!(
                l.protocol.as_str(),
                "HTTP" | "HTTPS" | "TLS" | "TCP" | "UDP"
            ) {
                self.err(
                    format!("{at}.protocol"),
                    format!("{:?} is not one of HTTP, HTTPS, TLS, TCP, UDP", l.protocol),
                );
            }
            if let Some(h) = &l.hostname {
                self.host(format!("{at}.hostname"), h, true);
            }
            let passthrough = l
                .tls
                .as_ref()
                .is_some_and(|t| t.mode.as_deref() == Some("Passthrough"));
            if l.protocol == "HTTPS" && !passthrough {
                let refs = l.tls.as_ref().map_or(0, |t| t.certificate_refs.len());
                if refs == 0 {
                    self.err(
                        format!("{at}.tls.certificateRefs"),
                        "an HTTPS listener needs a certificate",
                    );
                }
            }
        }
    }

    pub(crate) fn kubernetes_http_route(&mut self, route: &HTTPRouteSpec) {
        for (i, h) in route.hostnames.iter().enumerate() {
            self.host(format!("spec.hostnames[{i}]"), h, true);
        }
        for (i, rule) in route.rules.iter().enumerate() {
            let at = format!("spec.rules[{i}]");
            for (j, m) in rule.matches.iter().enumerate() {
                let mf = format!("{at}.matches[{j}]");
                if let Some(path) = &m.path {
                    let value = path.value.as_deref().unwrap_or("/");
                    match path.match_type.as_deref().unwrap_or("PathPrefix") {
                        "Exact" | "PathPrefix" if !value.starts_with('/') => {
                            self.err(format!("{mf}.path.value"), "a path must start with /")
                        }
                        "Exact" | "PathPrefix" => {}
                        "RegularExpression" => self.regex(format!("{mf}.path.value"), value),
                        other => self.err(
                            format!("{mf}.path.type"),
                            format!("{other:?} is not one of Exact, PathPrefix, RegularExpression"),
                        ),
                    }
                }
                self.name_matches(&format!("{mf}.headers"), &m.headers);
                self.name_matches(&format!("{mf}.queryParams"), &m.query_params);
            }
            self.route_filters(
                &at,
                &rule.filters,
                &[
                    "RequestHeaderModifier",
                    "ResponseHeaderModifier",
                    "RequestRedirect",
                    "URLRewrite",
                    "RequestMirror",
                ],
            );
            self.backend_refs(&at, &rule.backend_refs);
            if let Some(t) = rule.timeouts.as_ref().and_then(|t| t.request.as_ref()) {
                self.duration(format!("{at}.timeouts.request"), Some(t));
            }
        }
    }

    /// Header or query parameter matches at `at` (`...headers`).
    pub(crate) fn name_matches(&mut self, at: &str, list: &[NameMatch]) {
        for (k, nm) in list.iter().enumerate() {
            match nm.match_type.as_deref().unwrap_or("Exact") {
                "Exact" => {}
                "RegularExpression" => self.regex(format!("{at}[{k}].value"), &nm.value),
                other => self.err(
                    format!("{at}[{k}].type"),
                    format!("{other:?} is not one of Exact, RegularExpression"),
                ),
            }
        }
    }

    /// A rule's filters, each of one of the `supported` types.
    pub(crate) fn route_filters(
        &mut self,
        at: &str,
        filters: &[HTTPRouteFilter],
        supported: &[&str],
    ) {
        for (j, f) in filters.iter().enumerate() {
            if !supported.contains(&f.filter_type.as_str()) {
                self.err(
                    format!("{at}.filters[{j}].type"),
                    format!(
                        "{:?} is not a supported filter (one of {})",
                        f.filter_type,
                        supported.join(", ")
                    ),
                );
            }
        }
    }

    /// A rule's backends: Services, with weights in range.
    pub(crate) fn backend_refs(&mut self, at: &str, backends: &[HTTPBackendRef]) {
        for (j, b) in backends.iter().enumerate() {
            if b.kind.as_deref().is_some_and(|k| k != "Service") {
                self.err(
                    format!("{at}.backendRefs[{j}].kind"),
                    "only Service backends are supported",
                );
            }
            if b.weight.is_some_and(|w| !(0..=1_000_000).contains(&w)) {
                self.err(
                    format!("{at}.backendRefs[{j}].weight"),
                    "weight is out of range 0-1000000",
                );
            }
        }
    }
}

/// Header modifications in the shape a VirtualService writes them.
pub fn header_operations(m: &HeaderModifier) -> serde_json::Value {
    let to_map = |list: &[HeaderValue]| -> BTreeMap<String, String> {
        list.iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.clone()))
            .collect()
    };
    serde_json::json!({
        "set": to_map(&m.set),
        "add": to_map(&m.add),
        "remove": m.remove,
    })
}

#[cfg(test)]
mod tests {
    use crate::validate::problems;

    #[test]
    fn routes_and_gateways_name_their_bad_fields() {
        let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: shop}\nspec:\n  parentRefs: [{name: public}]\n  rules:\n  - matches: [{path: {type: RegularExpression, value: '(['}}, {path: {type: Exact, value: nope}}]\n    filters: [{type: ExtensionRef}]\n    backendRefs: [{name: web, port: 80, weight: -1}]\n";
        let got = problems(route);
        for field in [
            "spec.rules[0].matches[0].path.value",
            "spec.rules[0].matches[1].path.value",
            "spec.rules[0].filters[0].type",
            "spec.rules[0].backendRefs[0].weight",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(field)),
                "{field} missing in {got:?}"
            );
        }
        let gateway = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: public, namespace: edge}\nspec:\n  gatewayClassName: istio\n  listeners:\n  - {name: web, port: 443, protocol: HTTPS}\n  - {name: web, port: 80, protocol: QUIC}\n";
        let got = problems(gateway);
        for field in [
            "spec.listeners[0].tls.certificateRefs",
            "spec.listeners[1].name",
            "spec.listeners[1].protocol",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(field)),
                "{field} missing in {got:?}"
            );
        }
    }
}
