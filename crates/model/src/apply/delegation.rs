//! VirtualService delegation, as Istio merges it: an `http[]` entry of a
//! root VirtualService that names a `delegate` is replaced by the delegate's
//! routes, in the delegate's order. Each delegate route matches only where
//! both it and the root entry match: a delegate URI must lie within the
//! root's (an exact path equal to it, or a prefix under its prefix), and
//! where both set the same method, authority, port or header they must
//! agree; a route whose every match conflicts with the root is dropped. A
//! delegate's short host names are its own namespace's. A delegate that
//! does not exist, or is not exported to the root's namespace, delegates
//! nothing.

use std::collections::BTreeMap;

use shmesh_api::virtual_service::{
    Destination, HttpMatchRequest, HttpRoute, StringMatch, VirtualService,
};

use crate::hosts;
use crate::store::Name;

/// Whether `root` (of `namespace`) delegates to `delegate`.
pub(crate) fn names(root: &VirtualService, namespace: &str, delegate: &Name) -> bool {
    root.spec
        .http
        .iter()
        .filter_map(|h| h.delegate.as_ref())
        .any(|d| d.name == delegate.1 && d.namespace.as_deref().unwrap_or(namespace) == delegate.0)
}

/// `root` with every delegating entry replaced by the routes of its delegate.
pub(crate) fn expand(
    root: &VirtualService,
    namespace: &str,
    delegates: &BTreeMap<Name, VirtualService>,
) -> VirtualService {
    let mut out = root.clone();
    out.spec.http = Vec::new();
    for entry in &root.spec.http {
        let Some(d) = &entry.delegate else {
            out.spec.http.push(entry.clone());
            continue;
        };
        let delegate_ns = d.namespace.clone().unwrap_or_else(|| namespace.to_string());
        let Some(delegate) = delegates
            .get(&(delegate_ns.clone(), d.name.clone()))
            .filter(|v| exported_to(v, &delegate_ns, namespace))
        else {
            continue;
        };
        for route in &delegate.spec.http {
            let matches = merge_all(&entry.match_, &route.match_);
            if matches.is_none() {
                continue;
            }
            let mut merged = route.clone();
            merged.match_ = matches.unwrap_or_default();
            qualify_hosts(&mut merged, &delegate_ns);
            out.spec.http.push(merged);
        }
    }
    out
}

/// Whether a delegate of `own` namespace may be used by a root of
/// `namespace` (its `exportTo`, everywhere when empty).
fn exported_to(delegate: &VirtualService, own: &str, namespace: &str) -> bool {
    let export = &delegate.spec.export_to;
    export.is_empty()
        || export
            .iter()
            .any(|e| e == "*" || e == namespace || (e == "." && own == namespace))
}

/// The matches of a delegate route within a root entry's: every pair that
/// does not conflict, merged; `None` when all of them conflict.
fn merge_all(
    root: &[HttpMatchRequest],
    delegate: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    match (root.is_empty(), delegate.is_empty()) {
        (true, _) => Some(delegate.to_vec()),
        (false, true) => Some(root.to_vec()),
        (false, false) => {
            let merged: Vec<HttpMatchRequest> = root
                .iter()
                .flat_map(|r| delegate.iter().filter_map(move |d| merge(r, d)))
                .collect();
            (!merged.is_empty()).then_some(merged)
        }
    }
}

/// A delegate match narrowed by the root's, or `None` when they conflict.
fn merge(root: &HttpMatchRequest, delegate: &HttpMatchRequest) -> Option<HttpMatchRequest> {
    let mut out = delegate.clone();
    out.uri = match (&root.uri, &delegate.uri) {
        (Some(r), Some(d)) => Some(within(r, d)?.clone()),
        (r, d) => d.clone().or_else(|| r.clone()),
    };
    for (mine, theirs) in [
        (&mut out.method, &root.method),
        (&mut out.authority, &root.authority),
    ] {
        match (mine.as_ref(), theirs) {
            (Some(m), Some(t)) if m != t => return None,
            (None, Some(t)) => *mine = Some(t.clone()),
            _ => {}
        }
    }
    match (out.port, root.port) {
        (Some(m), Some(t)) if m != t => return None,
        (None, Some(t)) => out.port = Some(t),
        _ => {}
    }
    for (mine, theirs) in [
        (&mut out.headers, &root.headers),
        (&mut out.without_headers, &root.without_headers),
        (&mut out.query_params, &root.query_params),
    ] {
        for (k, v) in theirs {
            match mine.get(k) {
                Some(m) if m != v => return None,
                _ => {
                    mine.insert(k.clone(), v.clone());
                }
            }
        }
    }
    if out.source_labels.is_empty() {
        out.source_labels = root.source_labels.clone();
    }
    if out.gateways.is_empty() {
        out.gateways = root.gateways.clone();
    }
    if out.source_namespace.is_none() {
        out.source_namespace = root.source_namespace.clone();
    }
    out.ignore_uri_case |= root.ignore_uri_case;
    Some(out)
}

/// The delegate's URI match when it lies within the root's.
fn within<'a>(root: &StringMatch, delegate: &'a StringMatch) -> Option<&'a StringMatch> {
    let inside = match (root, delegate) {
        (r, d) if r == d => true,
        (
            StringMatch {
                prefix: Some(p), ..
            },
            StringMatch { exact: Some(e), .. },
        ) => e.starts_with(p.as_str()),
        (
            StringMatch {
                prefix: Some(p), ..
            },
            StringMatch {
                prefix: Some(q), ..
            },
        ) => q.starts_with(p.as_str()),
        _ => false,
    };
    inside.then_some(delegate)
}

/// Short destination hosts of a delegate route, made full names in the
/// delegate's namespace (the root's namespace would read them otherwise).
fn qualify_hosts(route: &mut HttpRoute, namespace: &str) {
    let qualify = |d: &mut Destination| d.host = hosts::resolve(&d.host, namespace);
    for r in &mut route.route {
        if let Some(d) = &mut r.destination {
            qualify(d);
        }
    }
    if let Some(m) = &mut route.mirror {
        qualify(m);
    }
    for m in &mut route.mirrors {
        if let Some(d) = &mut m.destination {
            qualify(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::apply::test_objects::changes;
    use crate::Model;

    const ROOT: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: edge}
spec:
  hosts: [shop.example.com]
  http:
  - match: [{uri: {prefix: /reviews}}]
    delegate: {name: reviews, namespace: shop}
  - match: [{uri: {prefix: /}}]
    route: [{destination: {host: web}}]
";

    const DELEGATE: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  http:
  - match: [{uri: {prefix: /reviews/v2}}, {uri: {prefix: /ratings}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /ratings}}]
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: reviews, subset: v1}}]
";

    fn routes(model: &Model) -> Vec<(Vec<String>, String)> {
        let vs = model
            .virtual_services()
            .find(|v| v.name == "root")
            .expect("root installed");
        vs.spec
            .http
            .iter()
            .map(|h| {
                let uris = h
                    .match_
                    .iter()
                    .map(|m| format!("{:?}", m.uri.as_ref().and_then(|u| u.prefix.clone())))
                    .collect();
                let to = h
                    .route
                    .iter()
                    .filter_map(|r| r.destination.as_ref())
                    .map(|d| format!("{}/{}", d.host, d.subset.clone().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",");
                (uris, to)
            })
            .collect()
    }

    #[test]
    fn delegates_routes_take_the_root_entry_place_within_its_match() {
        let mut model = Model::new();
        model.apply(changes(ROOT));
        // No delegate yet: the delegating entry routes nothing.
        assert_eq!(routes(&model).len(), 1);
        let dirty = model.apply(changes(DELEGATE));
        assert!(dirty.vs_hosts.contains("shop.example.com"), "{dirty:?}");
        assert!(!model.virtual_services().any(|v| v.name == "reviews"));
        assert_eq!(
            routes(&model),
            [
                // `/ratings` lies outside `/reviews`: that match is dropped.
                (
                    vec!["Some(\"/reviews/v2\")".to_string()],
                    "reviews.shop.svc.cluster.local/v2".to_string()
                ),
                // The match-less route takes the root's match.
                (
                    vec!["Some(\"/reviews\")".to_string()],
                    "reviews.shop.svc.cluster.local/v1".to_string()
                ),
                (vec!["Some(\"/\")".to_string()], "web/".to_string()),
            ]
        );
        // The delegate changes: the root follows.
        model.apply(changes(&DELEGATE.replace("subset: v1", "subset: v3")));
        assert!(routes(&model)[1].1.ends_with("/v3"));
        // Kept to its own namespace: the root of edge may not use it.
        model.apply(changes(
            &DELEGATE.replace("spec:\n", "spec:\n  exportTo: [.]\n"),
        ));
        assert_eq!(routes(&model).len(), 1);
    }
}
