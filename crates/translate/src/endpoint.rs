//! ClusterLoadAssignments: the endpoints of each EDS cluster, grouped by
//! locality, with subset clusters keeping only endpoints carrying the subset's
//! labels.
//!
//! `assignment` builds one as a message, for clusters that carry their
//! endpoints inline. EDS assignments, one per cluster of the mesh, are
//! written straight to bytes by `Assignments`: each endpoint of a service
//! port is encoded once and shared by the assignments of the service's
//! cluster and its subsets, and no message tree is built and measured
//! level by level. Both give the same bytes (unit-tested).

use std::ops::Range;

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::config::endpoint::v3 as e;
use std::sync::LazyLock;

use envoy_types::pb::google::protobuf::{value, Struct, Value};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;

use super::cluster::BuiltCluster;
use super::{socket_address, u32_value};
use shmesh_api::objects::{Labels, MtlsMode};
use shmesh_cache::protobuf::{field_len, put_field_head, put_str_field, str_field_len};
use shmesh_cache::{Resource, ResourceType, ResourceWriter};
use shmesh_model::{Endpoint, Health, Model};

/// The assignment of every EDS cluster in `clusters`, encoded.
pub fn assignments(model: &Model, clusters: &[BuiltCluster]) -> Vec<std::sync::Arc<Resource>> {
    let mut out = ResourceWriter::for_type(ResourceType::Endpoint);
    let mut encoder = Assignments::default();
    for c in clusters.iter().filter(|c| c.eds) {
        out.put_body(c.name.clone(), encoder.encode(model, c));
    }
    out.finish()
}

/// Writes EDS clusters' assignments, reusing the encoded endpoints of the
/// service port it wrote last.
#[derive(Debug, Default)]
pub struct Assignments {
    /// The service port whose endpoints `encoded` holds.
    port_of: Option<(String, u16)>,
    /// Each endpoint as an `lb_endpoints` entry of `LocalityLbEndpoints`.
    encoded: Vec<u8>,
    at: Vec<Range<usize>>,
    /// The assignment last written.
    body: Vec<u8>,
}

impl Assignments {
    /// The encoded assignment of `cluster`, as `assignment` would build it
    /// from the endpoints `select` picks.
    pub fn encode(&mut self, model: &Model, cluster: &BuiltCluster) -> &[u8] {
        let all = model.endpoints(&cluster.host, cluster.port);
        let namespace = model.service(&cluster.host).map_or("", |s| &s.namespace);
        self.encode_from(
            &cluster.name,
            (&cluster.host, cluster.port),
            all,
            cluster.subset.as_ref(),
            |ep| istio_tls(model, namespace, ep),
        )
    }

    /// The assignment `name` of those of `all`, the endpoints of the service
    /// port `port_of`, that `subset` selects.
    fn encode_from(
        &mut self,
        name: &str,
        port_of: (&str, u16),
        all: &[Endpoint],
        subset: Option<&Labels>,
        tls: impl Fn(&Endpoint) -> bool,
    ) -> &[u8] {
        let same_port = self
            .port_of
            .as_ref()
            .is_some_and(|(h, p)| h == port_of.0 && *p == port_of.1);
        if !same_port {
            self.encoded.clear();
            self.at.clear();
            for ep in all {
                let start = self.encoded.len();
                put_lb_endpoint(ep, tls(ep), &mut self.encoded);
                self.at.push(start..self.encoded.len());
            }
            self.port_of = Some((port_of.0.to_string(), port_of.1));
        }
        let mut picked: Vec<usize> = (0..all.len())
            .filter(|&i| selects(subset, &all[i]))
            .collect();
        if !picked
            .windows(2)
            .all(|w| all[w[0]].locality == all[w[1]].locality)
        {
            picked.sort_by(|a, b| all[*a].locality.cmp(&all[*b].locality));
        }
        self.body.clear();
        put_str_field(1, name, &mut self.body);
        for group in picked.chunk_by(|a, b| all[*a].locality == all[*b].locality) {
            let locality = &all[group[0]].locality;
            let locality_len = str_field_len(&locality.region)
                + str_field_len(&locality.zone)
                + str_field_len(&locality.subzone);
            let weight = group
                .iter()
                .fold(0u32, |acc, i| acc.saturating_add(all[*i].weight.max(1)));
            let endpoints_len: usize = group.iter().map(|i| self.at[*i].len()).sum();
            let group_len =
                field_len(locality_len) + endpoints_len + field_len(u32_value_len(weight));
            put_field_head(2, group_len, &mut self.body);
            put_field_head(1, locality_len, &mut self.body);
            put_str_field(1, &locality.region, &mut self.body);
            put_str_field(2, &locality.zone, &mut self.body);
            put_str_field(3, &locality.subzone, &mut self.body);
            for i in group {
                self.body
                    .extend_from_slice(&self.encoded[self.at[*i].clone()]);
            }
            put_u32_value(3, weight, &mut self.body);
        }
        &self.body
    }
}

/// Whether `ep` carries every label of `subset` (any endpoint, without one).
fn selects(subset: Option<&Labels>, ep: &Endpoint) -> bool {
    subset.is_none_or(|s| s.iter().all(|(k, v)| ep.labels.get(k) == Some(v)))
}

/// `ep` as `lb_endpoint` builds it, framed as an `lb_endpoints` entry, its
/// fields in tag order as prost writes them.
fn put_lb_endpoint(ep: &Endpoint, tls: bool, buf: &mut Vec<u8>) {
    let health = health_status(ep.health) as u64;
    let socket_len = str_field_len(&ep.address) + 1 + encoded_len_varint(ep.port as u64);
    let address_len = field_len(socket_len);
    let endpoint_len = field_len(address_len);
    let weight_len = (ep.weight > 0).then(|| field_len(u32_value_len(ep.weight)));
    let metadata = if tls { tls_mode_metadata() } else { &[] };
    let len = if health != 0 {
        1 + encoded_len_varint(health)
    } else {
        0
    } + weight_len.unwrap_or(0)
        + if tls { field_len(metadata.len()) } else { 0 }
        + field_len(endpoint_len);
    put_field_head(2, len, buf);
    put_field_head(1, endpoint_len, buf);
    put_field_head(1, address_len, buf);
    put_field_head(1, socket_len, buf);
    put_str_field(2, &ep.address, buf);
    // The port is a oneof member: written even when 0.
    encode_key(3, WireType::Varint, buf);
    encode_varint(ep.port as u64, buf);
    if health != 0 {
        encode_key(2, WireType::Varint, buf);
        encode_varint(health, buf);
    }
    if tls {
        put_field_head(3, metadata.len(), buf);
        buf.extend_from_slice(metadata);
    }
    if ep.weight > 0 {
        put_u32_value(4, ep.weight, buf);
    }
}

fn u32_value_len(value: u32) -> usize {
    if value == 0 {
        0
    } else {
        1 + encoded_len_varint(value as u64)
    }
}

/// A `google.protobuf.UInt32Value` field.
fn put_u32_value(tag: u32, value: u32, buf: &mut Vec<u8>) {
    put_field_head(tag, u32_value_len(value), buf);
    if value != 0 {
        encode_key(1, WireType::Varint, buf);
        encode_varint(value as u64, buf);
    }
}

fn health_status(health: Health) -> core::HealthStatus {
    match health {
        Health::Healthy => core::HealthStatus::Healthy,
        Health::Draining => core::HealthStatus::Draining,
    }
}

/// Endpoints carrying every label of `subset` (all of them without a subset).
/// The assignment of a cluster with one fixed endpoint at `address`, carried
/// in the cluster itself (a static or DNS cluster).
pub fn single(cluster_name: &str, address: core::Address) -> e::ClusterLoadAssignment {
    e::ClusterLoadAssignment {
        cluster_name: cluster_name.to_string(),
        endpoints: vec![e::LocalityLbEndpoints {
            lb_endpoints: vec![e::LbEndpoint {
                host_identifier: Some(e::lb_endpoint::HostIdentifier::Endpoint(e::Endpoint {
                    address: Some(address),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn select<'a>(endpoints: &'a [Endpoint], subset: Option<&Labels>) -> Vec<&'a Endpoint> {
    endpoints.iter().filter(|ep| selects(subset, ep)).collect()
}

/// The label Istio's injector gives a pod with a sidecar.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// Whether `ep`, an endpoint of a service of `namespace`, takes Istio's
/// mutual TLS: its workload has a sidecar (`security.istio.io/tlsMode:
/// istio`) and no PeerAuthentication disables mTLS on its port. Callers
/// with certificates then send it mutual TLS (Istio's auto mTLS), through
/// the endpoint metadata their clusters' transport socket matches read.
pub fn istio_tls(model: &Model, namespace: &str, ep: &Endpoint) -> bool {
    ep.labels.get(TLS_MODE_LABEL).map(String::as_str) == Some("istio")
        && model.mtls_policy(namespace, &ep.labels).port(ep.port) != MtlsMode::Disable
}

/// `{"envoy.transport_socket_match": {"tlsMode": "istio"}}`, encoded once.
fn tls_mode_metadata() -> &'static [u8] {
    static ENCODED: LazyLock<Vec<u8>> = LazyLock::new(|| tls_mode_message().encode_to_vec());
    &ENCODED
}

fn tls_mode_message() -> core::Metadata {
    let mode = Value {
        kind: Some(value::Kind::StringValue("istio".to_string())),
    };
    core::Metadata {
        filter_metadata: [(
            TRANSPORT_SOCKET_MATCH.to_string(),
            Struct {
                fields: [("tlsMode".to_string(), mode)].into(),
            },
        )]
        .into(),
        ..Default::default()
    }
}

/// The metadata key transport socket matches read.
pub const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

/// A ClusterLoadAssignment with endpoints grouped by locality. Every group has
/// a locality and a weight, as proxyless gRPC clients require. `tls` tells
/// the endpoints that take Istio's mutual TLS.
pub fn assignment(
    cluster: &str,
    endpoints: &[&Endpoint],
    tls: impl Fn(&Endpoint) -> bool,
) -> e::ClusterLoadAssignment {
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
            lb_endpoints: eps.iter().map(|ep| lb_endpoint(ep, tls(ep))).collect(),
            ..Default::default()
        })
        .collect();
    e::ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: groups,
        ..Default::default()
    }
}

fn lb_endpoint(ep: &Endpoint, tls: bool) -> e::LbEndpoint {
    e::LbEndpoint {
        host_identifier: Some(e::lb_endpoint::HostIdentifier::Endpoint(e::Endpoint {
            address: Some(socket_address(&ep.address, ep.port)),
            ..Default::default()
        })),
        health_status: health_status(ep.health) as i32,
        metadata: tls.then(tls_mode_message),
        load_balancing_weight: (ep.weight > 0).then(|| u32_value(ep.weight)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmesh_model::Locality;
    use std::sync::Arc;

    fn endpoint(address: &str, port: u16, version: &str, zone: &str, weight: u32) -> Endpoint {
        Endpoint {
            address: address.into(),
            port,
            labels: Arc::new([("version".to_string(), version.to_string())].into()),
            locality: Locality::parse(zone),
            health: if weight == 7 {
                Health::Draining
            } else {
                Health::Healthy
            },
            weight,
            service_account: None,
        }
    }

    #[test]
    fn written_assignments_are_the_messages_prost_would_encode() {
        let one_locality = vec![
            endpoint("10.0.0.1", 8080, "v1", "", 0),
            endpoint("10.0.0.2", 8080, "v2", "", 0),
            endpoint("10.0.0.3", 8080, "v1", "", 3),
        ];
        let spread = vec![
            endpoint("10.1.0.1", 0, "v1", "eu/eu-1/a", 0),
            endpoint("fd00::2", 65535, "v1", "us/us-1", 7),
            endpoint("10.1.0.3", 9, "v2", "eu/eu-1/a", 1_000_000),
            endpoint("", 80, "v1", "", 0),
            endpoint("10.1.0.5", 443, "v1", "us/us-1", 0),
        ];
        let v1: Labels = [("version".to_string(), "v1".to_string())].into();
        let none: Labels = [("version".to_string(), "v9".to_string())].into();
        let mut written = Assignments::default();
        for (host, all) in [("a", &one_locality), ("b", &spread), ("c", &Vec::new())] {
            for subset in [None, Some(&v1), Some(&none)] {
                let name = format!("outbound|80|{}|{host}", subset.map_or(0, |s| s.len()));
                // Some endpoints take Istio's mutual TLS and carry metadata.
                let tls = |ep: &Endpoint| ep.port % 2 == 1 || ep.address.ends_with(".2");
                let expected = assignment(&name, &select(all, subset), tls).encode_to_vec();
                let got = written.encode_from(&name, (host, 80), all, subset, tls);
                assert_eq!(got, expected, "{name} of {host}");
            }
        }
    }
}
