//! A short account of each VirtualService's routes: what each route matches
//! and where it sends traffic, by weight, for the web view (`/ui`).
//!
//! The views task builds one when it records the policies in force (after a
//! batch that touched routes), and keeps the one it built before while the
//! VirtualService's version is unchanged, so nothing is recomputed per proxy
//! or per request. Weights are given as translation applies them
//! (`shmesh_translate::route`): a lone destination without a weight takes all
//! the traffic; among several, one without a weight (or weighted 0) takes none.

use serde::Serialize;
use shmesh_api::objects::VirtualServiceSpec;
use shmesh_api::virtual_service::{Destination, HttpMatchRequest, RouteDestination, StringMatch};
use shmesh_model::{hosts, Policy};

/// One VirtualService's routes, in the order Envoy tries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VirtualServiceRoutes {
    /// The hosts it routes, as FQDNs.
    pub hosts: Vec<String>,
    /// The gateways it is bound to (`mesh` is the sidecars).
    pub gateways: Vec<String>,
    pub routes: Vec<RouteSummary>,
}

/// One `http[]`, `tcp[]` or `tls[]` route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteSummary {
    /// `http`, `tcp` or `tls`.
    pub protocol: &'static str,
    /// The route's `name`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What requests it takes, one line per alternative (any may match);
    /// empty when it takes everything.
    pub matches: Vec<String>,
    /// Where the traffic goes.
    pub destinations: Vec<WeightedDestination>,
    /// What it does instead of (or besides) forwarding: redirect, direct
    /// response, delegation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// A destination and its share of the route's traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightedDestination {
    /// FQDN of the destination service.
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// The weight traffic is split by (0 takes none).
    pub weight: i64,
}

/// The routes of `vs`.
pub fn of(vs: &Policy<VirtualServiceSpec>) -> VirtualServiceRoutes {
    let destination = |d: &Destination, weight: i64| WeightedDestination {
        host: hosts::resolve(&d.host, &vs.namespace),
        subset: d.subset.clone(),
        port: d.port.as_ref().and_then(|p| p.number),
        weight,
    };
    let weighted = |weights: Vec<Option<i64>>| -> Vec<i64> {
        let several = weights.len() > 1;
        weights
            .into_iter()
            .map(|w| w.unwrap_or(if several { 0 } else { 100 }).max(0))
            .collect()
    };
    let mut routes = Vec::new();
    for http in &vs.spec.http {
        let present: Vec<_> = http
            .route
            .iter()
            .filter_map(|r| r.destination.as_ref().map(|d| (d, r.weight)))
            .collect();
        let weights = weighted(present.iter().map(|(_, w)| *w).collect());
        let action = if http.redirect.is_some() {
            Some("redirect".to_string())
        } else if let Some(response) = &http.direct_response {
            let status = response.get("status").and_then(|s| s.as_i64());
            Some(match status {
                Some(status) => format!("direct response {status}"),
                None => "direct response".to_string(),
            })
        } else {
            http.delegate.as_ref().map(|d| {
                let namespace = d.namespace.as_deref().unwrap_or(&vs.namespace);
                format!("delegated to VirtualService {namespace}/{}", d.name)
            })
        };
        routes.push(RouteSummary {
            protocol: "http",
            name: http.name.clone(),
            matches: http.match_.iter().map(http_match).collect(),
            destinations: present
                .iter()
                .zip(weights)
                .map(|((d, _), w)| destination(d, w))
                .collect(),
            action,
        });
    }
    let l4 = |protocol: &'static str, matches: Vec<String>, route: &[RouteDestination]| {
        let weights = weighted(route.iter().map(|r| r.weight).collect());
        RouteSummary {
            protocol,
            name: None,
            matches,
            destinations: route
                .iter()
                .zip(weights)
                .map(|(r, w)| destination(&r.destination, w))
                .collect(),
            action: None,
        }
    };
    for tcp in &vs.spec.tcp {
        let matches = tcp
            .match_
            .iter()
            .map(|m| {
                let mut parts = Vec::new();
                if let Some(port) = m.port {
                    parts.push(format!("port {port}"));
                }
                if !m.destination_subnets.is_empty() {
                    parts.push(format!("to {}", m.destination_subnets.join(", ")));
                }
                joined(parts)
            })
            .collect();
        routes.push(l4("tcp", matches, &tcp.route));
    }
    for tls in &vs.spec.tls {
        let matches = tls
            .match_
            .iter()
            .map(|m| {
                let mut parts = Vec::new();
                if !m.sni_hosts.is_empty() {
                    parts.push(format!("SNI {}", m.sni_hosts.join(", ")));
                }
                if let Some(port) = m.port {
                    parts.push(format!("port {port}"));
                }
                joined(parts)
            })
            .collect();
        routes.push(l4("tls", matches, &tls.route));
    }
    VirtualServiceRoutes {
        hosts: vs.hosts.clone(),
        gateways: vs.spec.gateways.clone(),
        routes,
    }
}

/// One `match` entry in words: `uri prefix /api, header end-user = jason`.
fn http_match(m: &HttpMatchRequest) -> String {
    let mut parts = Vec::new();
    if let Some(uri) = &m.uri {
        parts.push(format!("uri {}", string_match(uri)));
    }
    if let Some(method) = &m.method {
        parts.push(format!("method {}", string_match(method)));
    }
    if let Some(authority) = &m.authority {
        parts.push(format!("authority {}", string_match(authority)));
    }
    for (name, value) in &m.headers {
        parts.push(format!("header {name} {}", string_match(value)));
    }
    for (name, value) in &m.query_params {
        parts.push(format!("query {name} {}", string_match(value)));
    }
    for name in m.without_headers.keys() {
        parts.push(format!("without header {name}"));
    }
    if let Some(port) = m.port {
        parts.push(format!("port {port}"));
    }
    if !m.source_labels.is_empty() {
        let labels: Vec<String> = m
            .source_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.push(format!("from {}", labels.join(",")));
    }
    if let Some(ns) = &m.source_namespace {
        parts.push(format!("from namespace {ns}"));
    }
    joined(parts)
}

fn string_match(m: &StringMatch) -> String {
    match (&m.exact, &m.prefix, &m.regex) {
        (Some(v), _, _) => format!("= {v}"),
        (_, Some(v), _) => format!("prefix {v}"),
        (_, _, Some(v)) => format!("~ {v}"),
        _ => "present".to_string(),
    }
}

fn joined(parts: Vec<String>) -> String {
    if parts.is_empty() {
        "anything".to_string()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(yaml: &str) -> Policy<VirtualServiceSpec> {
        let spec: VirtualServiceSpec = serde_norway::from_str(yaml).expect("spec");
        Policy {
            namespace: "default".to_string(),
            name: "reviews".to_string(),
            generation: Some(1),
            version: "v".to_string(),
            hosts: vec!["reviews.default.svc.cluster.local".to_string()],
            spec,
            export_to: None,
        }
    }

    #[test]
    fn weights_as_translation_applies_them() {
        let routes = of(&vs("
hosts: [reviews]
http:
- name: split
  match:
  - uri: {prefix: /api}
    headers: {end-user: {exact: jason}}
  route:
  - destination: {host: reviews, subset: v1}
    weight: 80
  - destination: {host: reviews.other.svc.cluster.local, subset: v2, port: {number: 9080}}
    weight: 20
  - destination: {host: reviews, subset: v3}
- route:
  - destination: {host: ratings}
"));
        assert_eq!(routes.hosts, vec!["reviews.default.svc.cluster.local"]);
        let split = &routes.routes[0];
        assert_eq!(split.name.as_deref(), Some("split"));
        assert_eq!(
            split.matches,
            vec!["uri prefix /api, header end-user = jason"]
        );
        let got: Vec<(&str, Option<&str>, Option<i64>, i64)> = split
            .destinations
            .iter()
            .map(|d| (d.host.as_str(), d.subset.as_deref(), d.port, d.weight))
            .collect();
        assert_eq!(
            got,
            vec![
                ("reviews.default.svc.cluster.local", Some("v1"), None, 80),
                (
                    "reviews.other.svc.cluster.local",
                    Some("v2"),
                    Some(9080),
                    20
                ),
                // Among several, no weight is none of the traffic.
                ("reviews.default.svc.cluster.local", Some("v3"), None, 0),
            ]
        );
        let rest = &routes.routes[1];
        assert!(rest.matches.is_empty());
        // Alone, no weight is all of it.
        assert_eq!(rest.destinations[0].weight, 100);
        assert_eq!(
            rest.destinations[0].host,
            "ratings.default.svc.cluster.local"
        );
    }

    #[test]
    fn redirects_and_tcp_routes() {
        let routes = of(&vs("
hosts: [reviews]
http:
- match: [{uri: {exact: /old}}]
  redirect: {uri: /new}
tcp:
- match: [{port: 3306}]
  route:
  - destination: {host: db}
    weight: 50
  - destination: {host: db-next}
    weight: 50
"));
        assert_eq!(routes.routes[0].action.as_deref(), Some("redirect"));
        assert_eq!(routes.routes[0].matches, vec!["uri = /old"]);
        assert!(routes.routes[0].destinations.is_empty());
        let tcp = &routes.routes[1];
        assert_eq!(tcp.protocol, "tcp");
        assert_eq!(tcp.matches, vec!["port 3306"]);
        assert_eq!(
            tcp.destinations
                .iter()
                .map(|d| d.weight)
                .collect::<Vec<_>>(),
            vec![50, 50]
        );
    }
}
