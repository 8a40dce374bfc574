//! The Gateway API's `GRPCRoute` (gateway.networking.k8s.io v1): gRPC
//! requests matched by service and method, and by headers, sent to weighted
//! Services. The model turns it into VirtualService routes on the paths gRPC
//! uses (`/SERVICE/METHOD`), as it does an HTTPRoute.

use serde::Deserialize;

use crate::gateway_api::{HTTPBackendRef, HTTPRouteFilter, NameMatch, ObjectRef};
use crate::meta::ObjectMeta;
use crate::validate::Validator;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GRPCRoute {
    pub metadata: ObjectMeta,
    pub spec: GRPCRouteSpec,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GRPCRouteSpec {
    pub parent_refs: Vec<ObjectRef>,
    pub hostnames: Vec<String>,
    pub rules: Vec<GRPCRouteRule>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct GRPCRouteRule {
    pub matches: Vec<GRPCRouteMatch>,
    pub filters: Vec<HTTPRouteFilter>,
    pub backend_refs: Vec<HTTPBackendRef>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GRPCRouteMatch {
    pub method: Option<GRPCMethodMatch>,
    pub headers: Vec<NameMatch>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct GRPCMethodMatch {
    /// Exact (the default) or RegularExpression.
    #[serde(rename = "type")]
    pub match_type: Option<String>,
    pub service: Option<String>,
    pub method: Option<String>,
}

impl GRPCMethodMatch {
    fn regex(&self) -> bool {
        self.match_type.as_deref() == Some("RegularExpression")
    }

    /// The request path pattern this match means: `(exact, value)` or
    /// `(false, regex)`; `None` when it matches every method.
    pub fn path(&self) -> Option<(bool, String)> {
        let service = self.service.as_deref().filter(|s| !s.is_empty());
        let method = self.method.as_deref().filter(|m| !m.is_empty());
        if self.regex() {
            let service = service.unwrap_or("[^/]+");
            let method = method.unwrap_or("[^/]+");
            return Some((false, format!("/{service}/{method}")));
        }
        match (service, method) {
            (None, None) => None,
            (Some(s), Some(m)) => Some((true, format!("/{s}/{m}"))),
            (Some(s), None) => Some((false, format!("/{}/[^/]+", regex_quote(s)))),
            (None, Some(m)) => Some((false, format!("/[^/]+/{}", regex_quote(m)))),
        }
    }
}

/// `text` as a regular expression matching exactly it.
fn regex_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Validator {
    pub(crate) fn grpc_route(&mut self, route: &GRPCRouteSpec) {
        for (i, h) in route.hostnames.iter().enumerate() {
            self.host(format!("spec.hostnames[{i}]"), h, true);
        }
        for (i, rule) in route.rules.iter().enumerate() {
            let at = format!("spec.rules[{i}]");
            for (j, m) in rule.matches.iter().enumerate() {
                let mf = format!("{at}.matches[{j}]");
                if let Some(method) = &m.method {
                    match method.match_type.as_deref().unwrap_or("Exact") {
                        "Exact" => {
                            for (field, value) in
                                [("service", &method.service), ("method", &method.method)]
                            {
                                if value.as_deref().is_some_and(|v| v.contains('/')) {
                                    self.err(format!("{mf}.method.{field}"), "must not contain /");
                                }
                            }
                        }
                        "RegularExpression" => {
                            for (field, value) in
                                [("service", &method.service), ("method", &method.method)]
                            {
                                if let Some(v) = value {
                                    self.regex(format!("{mf}.method.{field}"), v);
                                }
                            }
                        }
                        other => self.err(
                            format!("{mf}.method.type"),
                            format!("{other:?} is not one of Exact, RegularExpression"),
                        ),
                    }
                    if method.service.is_none() && method.method.is_none() {
                        self.err(
                            format!("{mf}.method"),
                            "one of service or method must be set",
                        );
                    }
                }
                self.name_matches(&format!("{mf}.headers"), &m.headers);
            }
            self.route_filters(
                &at,
                &rule.filters,
                &[
                    "RequestHeaderModifier",
                    "ResponseHeaderModifier",
                    "RequestMirror",
                ],
            );
            self.backend_refs(&at, &rule.backend_refs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GRPCMethodMatch;
    use crate::validate::problems;

    #[test]
    fn methods_become_grpc_paths() {
        let m = |service: Option<&str>, method: Option<&str>, regex: bool| GRPCMethodMatch {
            match_type: regex.then(|| "RegularExpression".to_string()),
            service: service.map(String::from),
            method: method.map(String::from),
        };
        assert_eq!(
            m(Some("greeter.Greeter"), Some("Hello"), false).path(),
            Some((true, "/greeter.Greeter/Hello".to_string()))
        );
        assert_eq!(
            m(Some("greeter.Greeter"), None, false).path(),
            Some((false, "/greeter\\.Greeter/[^/]+".to_string()))
        );
        assert_eq!(
            m(None, Some("Hello"), true).path(),
            Some((false, "/[^/]+/Hello".to_string()))
        );
        assert_eq!(m(None, None, false).path(), None);
    }

    #[test]
    fn bad_grpc_routes_name_their_fields() {
        let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g, namespace: shop}\nspec:\n  rules:\n  - matches: [{method: {type: RegularExpression, service: '(['}}, {method: {}}]\n    filters: [{type: URLRewrite}]\n";
        let got = problems(route);
        for field in [
            "spec.rules[0].matches[0].method.service",
            "spec.rules[0].matches[1].method",
            "spec.rules[0].filters[0].type",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(field)),
                "{field} missing in {got:?}"
            );
        }
    }
}
