//! Warnings about references that do not resolve, as `istioctl analyze` gives
//! them: a VirtualService routing to an unknown host or subset. They never stop
//! an object from applying; traffic to everything else is unaffected, and a
//! route to a missing cluster answers 503 as it would under Istio.

use super::hosts;
use super::Model;
use shmesh_api::problem::Problem;

pub fn analyze(model: &Model) -> Vec<Problem> {
    let origins = model;
    let mut out = Vec::new();
    for vs in model.virtual_services() {
        let origin = origins.origin(shmesh_api::Kind::VirtualService, &vs.namespace, &vs.name);
        for (i, http) in vs.spec.http.iter().enumerate() {
            for (k, r) in http.route.iter().enumerate() {
                let Some(d) = &r.destination else { continue };
                let field = format!("spec.http[{i}].route[{k}].destination");
                let host = hosts::resolve(&d.host, &vs.namespace);
                if model.service(&host).is_none() {
                    out.push(
                        Problem::warning(
                            format!("{field}.host"),
                            format!("referenced host not found: {host:?}"),
                        )
                        .for_kind(
                            &origin,
                            shmesh_api::Kind::VirtualService,
                            &vs.namespace,
                            &vs.name,
                        ),
                    );
                    continue;
                }
                if let Some(subset) = &d.subset {
                    let known = model
                        .destination_rule(&host, &vs.namespace, &Default::default())
                        .is_some_and(|dr| dr.spec.subsets.iter().any(|s| &s.name == subset));
                    if !known {
                        out.push(
                            Problem::warning(
                                format!("{field}.subset"),
                                format!("referenced subset {subset:?} not found in any DestinationRule for {host:?}"),
                            )
                            .for_kind(&origin, shmesh_api::Kind::VirtualService, &vs.namespace, &vs.name),
                        );
                    }
                }
            }
        }
        for (i, h) in vs.hosts.iter().enumerate() {
            if !h.contains('*') && model.service(h).is_none() {
                out.push(
                    Problem::warning(
                        format!("spec.hosts[{i}]"),
                        format!("host {h:?} matches no service; its routes apply to no listener"),
                    )
                    .for_kind(
                        &origin,
                        shmesh_api::Kind::VirtualService,
                        &vs.namespace,
                        &vs.name,
                    ),
                );
            }
        }
    }
    for dr in model.destination_rules() {
        let host = &dr.hosts[0];
        if !host.contains('*') && model.service(host).is_none() {
            let origin = origins.origin(shmesh_api::Kind::DestinationRule, &dr.namespace, &dr.name);
            out.push(
                Problem::warning("spec.host", format!("referenced host not found: {host:?}"))
                    .for_kind(
                        &origin,
                        shmesh_api::Kind::DestinationRule,
                        &dr.namespace,
                        &dr.name,
                    ),
            );
        }
    }
    out.extend(gateway_api(model));
    out
}

/// The Gateway API conditions that say something is wrong: a route no
/// parent accepts or whose backends do not resolve, a listener that
/// conflicts or whose certificate does not resolve.
fn gateway_api(model: &Model) -> Vec<Problem> {
    let status = model.gateway_api_status();
    let mut out = Vec::new();
    let mut warn =
        |kind: shmesh_api::Kind, namespace: &str, name: &str, c: &crate::gateway_api::Condition| {
            if c.is_problem() {
                let origin = model.origin(kind, namespace, name);
                out.push(
                    Problem::warning(&c.field, format!("{} {}: {}", c.kind, c.reason, c.message))
                        .for_kind(&origin, kind, namespace, name),
                );
            }
        };
    for gw in &status.gateways {
        let kind = shmesh_api::Kind::KubernetesGateway;
        for c in gw
            .conditions
            .iter()
            .chain(gw.listeners.iter().flat_map(|l| &l.conditions))
        {
            warn(kind, &gw.namespace, &gw.name, c);
        }
    }
    for route in &status.routes {
        let mut seen = std::collections::BTreeSet::new();
        for c in route.parents.iter().flat_map(|p| &p.conditions) {
            // ResolvedRefs is the route's, repeated for every parent.
            if seen.insert((c.kind, c.field.clone())) {
                warn(route.kind, &route.namespace, &route.name, c);
            }
        }
    }
    out
}
