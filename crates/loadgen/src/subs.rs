//! What a client must subscribe to next, derived as Envoy derives it: the
//! EDS names of the clusters it holds (CDS) and the route configurations
//! its listeners' HTTP connection managers name (LDS).
//!
//! Responses come from the clients' ADS streams; the derived [`Subs`] go
//! back to the clients, which turn them into EDS and RDS requests. Thousands
//! of clients of one view receive identical responses, so results are
//! memoised by (previous state, response content) and shared as `Arc`s:
//! a fleet decodes each distinct response once and holds each distinct
//! name list once, which keeps 30,000 clients small.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use envoy_types::pb::envoy::config::cluster::v3::cluster::DiscoveryType;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use prost::Message;
use shmesh_cache::ResourceType;
use xxhash_rust::xxh3::Xxh3;

const HCM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// Only the fields of `envoy.config.cluster.v3.Cluster` that decide its EDS
/// subscription; prost skips the rest without building it.
#[derive(Clone, PartialEq, Message)]
struct ClusterHead {
    #[prost(string, tag = "1")]
    name: String,
    /// `type` in the `cluster_discovery_type` oneof (absent means STATIC).
    #[prost(int32, tag = "2")]
    discovery_type: i32,
    #[prost(message, optional, tag = "3")]
    eds_cluster_config: Option<EdsConfigHead>,
}

#[derive(Clone, PartialEq, Message)]
struct EdsConfigHead {
    #[prost(string, tag = "2")]
    service_name: String,
}

/// The subscriptions one type's resources imply.
#[derive(Debug, Default)]
pub struct Subs {
    /// Identifies the content (equal ids, equal content).
    pub id: u64,
    /// Resource (cluster or listener) name → the names it needs.
    by_resource: BTreeMap<String, Vec<String>>,
    /// The union, sorted, without duplicates: what to subscribe to.
    pub names: Vec<String>,
    /// `names` encoded for SotW requests, which repeat them with every ACK.
    pub encoded_names: Bytes,
}

impl Subs {
    fn from_map(id: u64, by_resource: BTreeMap<String, Vec<String>>) -> Subs {
        let mut names: Vec<String> = by_resource.values().flatten().cloned().collect();
        names.sort();
        names.dedup();
        Subs {
            id,
            by_resource,
            encoded_names: crate::ads::encode_names(&names),
            names,
        }
    }

    /// Names in `self` but not in `old`, and in `old` but not in `self`.
    pub fn diff(&self, old: &Subs) -> (Vec<String>, Vec<String>) {
        let added = sorted_minus(&self.names, &old.names);
        let removed = sorted_minus(&old.names, &self.names);
        (added, removed)
    }
}

fn sorted_minus(a: &[String], b: &[String]) -> Vec<String> {
    a.iter()
        .filter(|n| b.binary_search(n).is_err())
        .cloned()
        .collect()
}

/// One resource of a response: its name when the protocol gives it (delta),
/// and its encoded body.
pub struct Item<'a> {
    pub name: Option<&'a str>,
    pub body: &'a [u8],
}

/// Memoised subscription derivation, shared by the whole fleet.
pub struct SubsMemo {
    empty: Arc<Subs>,
    memo: Mutex<HashMap<(u64, u64), Arc<Subs>>>,
    /// `Subs::diff` by (new id, old id): every client of a view takes the
    /// same steps.
    diffs: Mutex<HashMap<(u64, u64), Arc<NameDiff>>>,
}

/// Names to subscribe to and names to drop.
pub type NameDiff = (Vec<String>, Vec<String>);

impl Default for SubsMemo {
    fn default() -> Self {
        SubsMemo {
            empty: Arc::new(Subs::default()),
            memo: Mutex::default(),
            diffs: Mutex::default(),
        }
    }
}

impl SubsMemo {
    pub fn empty(&self) -> Arc<Subs> {
        self.empty.clone()
    }

    /// The subscriptions after a CDS or LDS response. `full` (SotW) means the
    /// response is the whole set; otherwise (delta) it updates `old`, with
    /// `removed` resources dropped. Errors name a resource that does not decode.
    pub fn apply(
        &self,
        ty: ResourceType,
        old: &Arc<Subs>,
        full: bool,
        items: &[Item<'_>],
        removed: &[String],
    ) -> Result<Arc<Subs>, String> {
        let mut h = Xxh3::new();
        h.update(&[ty.index() as u8, u8::from(full)]);
        for item in items {
            h.update(item.name.unwrap_or("").as_bytes());
            h.update(&(item.body.len() as u64).to_le_bytes());
            h.update(item.body);
        }
        for name in removed {
            h.update(name.as_bytes());
            h.update(&[0]);
        }
        let key = (if full { 0 } else { old.id }, h.digest());
        if let Some(hit) = self.lock().get(&key) {
            return Ok(hit.clone());
        }
        let mut map = if full {
            BTreeMap::new()
        } else {
            old.by_resource.clone()
        };
        for name in removed {
            map.remove(name);
        }
        for item in items {
            let (name, needs) = match ty {
                ResourceType::Cluster => cluster_needs(item.body)?,
                ResourceType::Listener => listener_needs(item.body)?,
                _ => return Err(format!("no subscriptions derive from {ty}")),
            };
            map.insert(item.name.map(str::to_string).unwrap_or(name), needs);
        }
        let id = xxhash_rust::xxh3::xxh3_64(&[key.0.to_le_bytes(), key.1.to_le_bytes()].concat());
        let subs = Arc::new(Subs::from_map(id, map));
        Ok(self.lock().entry(key).or_insert(subs).clone())
    }

    /// Names to subscribe to and to drop, going from `old` to `new`.
    pub fn diff(&self, new: &Subs, old: &Subs) -> Arc<NameDiff> {
        let key = (new.id, old.id);
        let hit = self
            .diffs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(d) = hit {
            return d;
        }
        let d = Arc::new(new.diff(old));
        let mut diffs = self.diffs.lock().unwrap_or_else(|e| e.into_inner());
        diffs.entry(key).or_insert(d).clone()
    }

    /// How many distinct derivations were computed (for the report).
    pub fn distinct(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, u64), Arc<Subs>>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (inserts are single calls), so a poisoned lock is still usable.
        self.memo.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A cluster's name and, for an EDS cluster, the assignment it waits for
/// (`eds_cluster_config.service_name`, else the cluster's name).
fn cluster_needs(body: &[u8]) -> Result<(String, Vec<String>), String> {
    let c = ClusterHead::decode(body).map_err(|e| format!("Cluster does not decode: {e}"))?;
    let needs = if c.discovery_type == DiscoveryType::Eds as i32 {
        let service = c
            .eds_cluster_config
            .map(|e| e.service_name)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| c.name.clone());
        vec![service]
    } else {
        Vec::new()
    };
    Ok((c.name, needs))
}

/// A listener's name and the route configurations its HTTP connection
/// managers fetch over RDS.
fn listener_needs(body: &[u8]) -> Result<(String, Vec<String>), String> {
    let l = Listener::decode(body).map_err(|e| format!("Listener does not decode: {e}"))?;
    let mut needs = Vec::new();
    let chains = l.filter_chains.iter().chain(l.default_filter_chain.iter());
    for filter in chains.flat_map(|c| c.filters.iter()) {
        let Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(
            any,
        )) = &filter.config_type
        else {
            continue;
        };
        if any.type_url != HCM_TYPE_URL {
            continue;
        }
        let hcm = HttpConnectionManager::decode(any.value.as_slice()).map_err(|e| {
            format!(
                "listener {}: HttpConnectionManager does not decode: {e}",
                l.name
            )
        })?;
        if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
            needs.push(rds.route_config_name);
        }
    }
    Ok((l.name, needs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
    use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain};
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::Rds;
    use envoy_types::pb::google::protobuf::Any;

    fn cluster(name: &str, eds: bool) -> Vec<u8> {
        Cluster {
            name: name.into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(if eds {
                DiscoveryType::Eds as i32
            } else {
                DiscoveryType::StrictDns as i32
            })),
            eds_cluster_config: eds.then(|| cluster::EdsClusterConfig {
                service_name: format!("{name}-eds"),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn listener(name: &str, route: &str) -> Vec<u8> {
        let hcm = HttpConnectionManager {
            route_specifier: Some(RouteSpecifier::Rds(Rds {
                route_config_name: route.into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        Listener {
            name: name.into(),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "hcm".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(Any {
                        type_url: HCM_TYPE_URL.into(),
                        value: hcm.encode_to_vec(),
                    })),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn eds_names_from_clusters_full_and_incremental() {
        let memo = SubsMemo::default();
        let (a, b, c) = (cluster("a", true), cluster("b", false), cluster("c", true));
        let items =
            |bodies: &[&Vec<u8>]| -> Vec<Vec<u8>> { bodies.iter().map(|b| b.to_vec()).collect() };
        let bodies = items(&[&a, &b, &c]);
        let it: Vec<Item> = bodies
            .iter()
            .map(|b| Item {
                name: None,
                body: b,
            })
            .collect();
        let s1 = memo
            .apply(ResourceType::Cluster, &memo.empty(), true, &it, &[])
            .unwrap();
        assert_eq!(s1.names, vec!["a-eds", "c-eds"]);
        // The same response again is a memo hit: the very same Arc.
        let s1b = memo
            .apply(ResourceType::Cluster, &memo.empty(), true, &it, &[])
            .unwrap();
        assert!(Arc::ptr_eq(&s1, &s1b));
        // Delta: `c` goes away, `d` arrives.
        let d = cluster("d", true);
        let s2 = memo
            .apply(
                ResourceType::Cluster,
                &s1,
                false,
                &[Item {
                    name: Some("d"),
                    body: &d,
                }],
                &["c".to_string()],
            )
            .unwrap();
        assert_eq!(s2.names, vec!["a-eds", "d-eds"]);
        assert_eq!(
            s2.diff(&s1),
            (vec!["d-eds".to_string()], vec!["c-eds".to_string()])
        );
        assert!(memo
            .apply(
                ResourceType::Cluster,
                &s1,
                true,
                &[Item {
                    name: None,
                    body: b"\xff\xff"
                }],
                &[]
            )
            .is_err());
    }

    #[test]
    fn rds_names_from_listeners() {
        let memo = SubsMemo::default();
        let l = listener("127.0.0.1_15001", "http_proxy");
        let s = memo
            .apply(
                ResourceType::Listener,
                &memo.empty(),
                true,
                &[Item {
                    name: None,
                    body: &l,
                }],
                &[],
            )
            .unwrap();
        assert_eq!(s.names, vec!["http_proxy"]);
    }
}
