//! ClusterLoadAssignments: the endpoints of each EDS cluster, grouped by
//! locality, with subset clusters keeping only endpoints carrying the subset's
//! labels.

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as e;

use super::cluster::BuiltCluster;
use super::{socket_address, u32_value, ProxyView};
use crate::model::{Endpoint, Health, Model};

/// One assignment per EDS cluster in `clusters`.
pub fn assignments(
    model: &Model,
    _view: &ProxyView,
    clusters: &[BuiltCluster],
) -> Vec<(String, e::ClusterLoadAssignment)> {
    clusters
        .iter()
        .filter(|c| c.eds)
        .map(|c| (c.name.clone(), cluster_assignment(model, c)))
        .collect()
}

/// The assignment of one EDS cluster: the endpoints of its service port,
/// those carrying its subset's labels for a subset cluster.
pub fn cluster_assignment(model: &Model, cluster: &BuiltCluster) -> e::ClusterLoadAssignment {
    let all = model.endpoints(&cluster.host, cluster.port);
    assignment(&cluster.name, &select(all, cluster.subset.as_ref()))
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
    // Most services live in one locality: group without sorting (or a map) then.
    let mut sorted = endpoints.to_vec();
    if !sorted.windows(2).all(|w| w[0].locality == w[1].locality) {
        sorted.sort_by(|a, b| a.locality.cmp(&b.locality));
    }
    let groups = sorted
        .chunk_by(|a, b| a.locality == b.locality)
        .map(|eps| e::LocalityLbEndpoints {
            locality: Some(core::Locality {
                region: eps[0].locality.region.clone(),
                zone: eps[0].locality.zone.clone(),
                sub_zone: eps[0].locality.subzone.clone(),
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
