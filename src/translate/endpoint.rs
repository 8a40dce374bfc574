//! ClusterLoadAssignments: the endpoints of each EDS cluster, grouped by
//! locality, with subset clusters keeping only endpoints carrying the subset's
//! labels.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as e;

use super::cluster::BuiltCluster;
use super::{socket_address, u32_value, ProxyView};
use crate::model::{Endpoint, Health, Locality, Model};

/// One assignment per EDS cluster in `clusters`.
pub fn assignments(
    model: &Model,
    _view: &ProxyView,
    clusters: &[BuiltCluster],
) -> Vec<(String, e::ClusterLoadAssignment)> {
    clusters
        .iter()
        .filter(|c| c.eds)
        .map(|c| {
            let all = model.endpoints(&c.host, c.port);
            let selected = select(all, c.subset.as_ref());
            (c.name.clone(), assignment(&c.name, &selected))
        })
        .collect()
}

/// Endpoints carrying every label of `subset` (all of them without a subset).
pub fn select<'a>(
    endpoints: &'a [Endpoint],
    subset: Option<&crate::model::objects::Labels>,
) -> Vec<&'a Endpoint> {
    endpoints
        .iter()
        .filter(|ep| subset.is_none_or(|s| s.iter().all(|(k, v)| ep.labels.get(k) == Some(v))))
        .collect()
}

/// A ClusterLoadAssignment with endpoints grouped by locality. Every group has
/// a locality and a weight, as proxyless gRPC clients require.
pub fn assignment(cluster: &str, endpoints: &[&Endpoint]) -> e::ClusterLoadAssignment {
    let mut by_locality: BTreeMap<&Locality, Vec<&Endpoint>> = BTreeMap::new();
    for ep in endpoints {
        by_locality.entry(&ep.locality).or_default().push(ep);
    }
    let groups = by_locality
        .into_iter()
        .map(|(locality, eps)| e::LocalityLbEndpoints {
            locality: Some(core::Locality {
                region: locality.region.clone(),
                zone: locality.zone.clone(),
                sub_zone: locality.subzone.clone(),
            }),
            load_balancing_weight: Some(u32_value(
                eps.iter()
                    .fold(0u32, |acc, e| acc.saturating_add(e.weight.max(1))),
            )),
            lb_endpoints: eps.iter().map(|ep| lb_endpoint(ep)).collect(),
            ..Default::default()
        })
        .collect();
    e::ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: groups,
        ..Default::default()
    }
}

fn lb_endpoint(ep: &Endpoint) -> e::LbEndpoint {
    e::LbEndpoint {
        host_identifier: Some(e::lb_endpoint::HostIdentifier::Endpoint(e::Endpoint {
            address: Some(socket_address(&ep.address, ep.port)),
            ..Default::default()
        })),
        health_status: match ep.health {
            Health::Healthy => core::HealthStatus::Healthy as i32,
            Health::Draining => core::HealthStatus::Draining as i32,
        },
        load_balancing_weight: (ep.weight > 0).then(|| u32_value(ep.weight)),
        ..Default::default()
    }
}
