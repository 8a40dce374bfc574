//! Endpoints of a service, computed as Kubernetes and Istio would: from
//! EndpointSlices when the service has any, otherwise from the Pods its selector
//! picks; plus WorkloadEntries the selector picks; plus a ServiceEntry's own
//! endpoints.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::service::{Backing, MeshService, NamedPorts, Resolution, ServicePort, TargetPort};
use super::Model;
use shmesh_api::objects::*;

/// Where an endpoint runs; every part is empty where nothing says.
#[derive(Debug, Clone, Default)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

// Compared by hand: most localities are empty, and comparing two empty
// strings calls `memcmp` on their dangling pointers, which some
// AVX-512 `memcmp`s handle with a masked load that costs ~150 ns. Grouping
// 200,000 endpoints by locality spent most of its time there.
impl PartialEq for Locality {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Locality {}

impl PartialOrd for Locality {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Locality {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn part(a: &str, b: &str) -> std::cmp::Ordering {
            if a.is_empty() || b.is_empty() {
                a.len().cmp(&b.len())
            } else {
                a.cmp(b)
            }
        }
        part(&self.region, &other.region)
            .then_with(|| part(&self.zone, &other.zone))
            .then_with(|| part(&self.subzone, &other.subzone))
    }
}

impl Locality {
    /// Istio's `region/zone/subzone` form (WorkloadEntry `locality`, `istio-locality` label).
    pub fn parse(s: &str) -> Locality {
        let mut parts = s.split('/');
        Locality {
            region: parts.next().unwrap_or("").to_string(),
            zone: parts.next().unwrap_or("").to_string(),
            subzone: parts.next().unwrap_or("").to_string(),
        }
    }

    fn from_labels(labels: &Labels, zone: Option<&str>) -> Locality {
        if let Some(l) = labels.get("istio-locality") {
            return Locality::parse(&l.replace('.', "/"));
        }
        Locality {
            region: labels
                .get("topology.kubernetes.io/region")
                .cloned()
                .unwrap_or_default(),
            zone: zone
                .map(str::to_string)
                .or_else(|| labels.get("topology.kubernetes.io/zone").cloned())
                .unwrap_or_default(),
            subzone: labels
                .get("topology.istio.io/subzone")
                .cloned()
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    Healthy,
    /// Terminating but still serving: kept, but Envoy sends no new traffic.
    Draining,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// An IP address, or a host name for DNS-resolved services.
    pub address: String,
    pub port: u16,
    pub labels: Arc<Labels>,
    pub locality: Locality,
    pub health: Health,
    /// Load-balancing weight; 0 means unset.
    pub weight: u32,
    /// The workload's service account, where known: its identity.
    pub service_account: Option<Arc<str>>,
}

/// Endpoints of `svc` for each of its ports, sorted so equal inputs give equal output.
pub fn compute(model: &Model, svc: &MeshService) -> BTreeMap<u16, Vec<Endpoint>> {
    let mut out = BTreeMap::new();
    for port in &svc.ports {
        let mut eps = match &svc.backing {
            Backing::Kubernetes { selector } => kubernetes(model, svc, port, selector.as_ref()),
            Backing::ServiceEntry {
                endpoints,
                selector,
            } => service_entry(model, svc, port, endpoints, selector.as_ref()),
        };
        eps.sort();
        eps.dedup_by(|a, b| a.address == b.address && a.port == b.port);
        out.insert(port.number, eps);
    }
    out
}

fn kubernetes(
    model: &Model,
    svc: &MeshService,
    port: &ServicePort,
    selector: Option<&Labels>,
) -> Vec<Endpoint> {
    let mut eps = Vec::new();
    let mut sliced = false;
    for slice in model.slices_of(&svc.namespace, &svc.name) {
        sliced = true;
        let Some(slice_port) = slice
            .ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == port.name)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for e in &slice.endpoints {
            let ready = e.conditions.ready.unwrap_or(true);
            let serving = e.conditions.serving.unwrap_or(ready);
            let terminating = e.conditions.terminating.unwrap_or(false);
            let health = if ready {
                Health::Healthy
            } else if serving && terminating {
                Health::Draining
            } else {
                continue;
            };
            let pod = e
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref().unwrap_or("Pod") == "Pod")
                .and_then(|r| {
                    let ns = r.namespace.as_deref().unwrap_or(&svc.namespace);
                    model.pod(ns, r.name.as_deref()?)
                });
            let labels = pod
                .map(|p| Arc::new(p.metadata.labels.clone()))
                .unwrap_or_default();
            let service_account = pod.map(|p| p.spec.service_account());
            let locality = Locality::from_labels(&labels, e.zone.as_deref());
            for address in &e.addresses {
                eps.push(Endpoint {
                    address: address.clone(),
                    port: slice_port as u16,
                    labels: labels.clone(),
                    locality: locality.clone(),
                    health,
                    weight: 0,
                    service_account: service_account.clone(),
                });
            }
        }
    }
    if let Some(selector) = selector {
        if !sliced {
            eps.extend(pods(model, &svc.namespace, selector, |pod| {
                container_port(pod, &port.target)
            }));
        }
        eps.extend(workload_entries(model, &svc.namespace, selector, port));
    }
    eps
}

fn service_entry(
    model: &Model,
    svc: &MeshService,
    port: &ServicePort,
    inline: &[WorkloadEntrySpec],
    selector: Option<&Labels>,
) -> Vec<Endpoint> {
    if svc.resolution == Resolution::Passthrough {
        return Vec::new();
    }
    let dns = matches!(svc.resolution, Resolution::Dns | Resolution::DnsRoundRobin);
    let mut eps: Vec<Endpoint> = inline
        .iter()
        .filter_map(|we| workload_endpoint(we, port, dns))
        .collect();
    if let Some(selector) = selector {
        eps.extend(workload_entries(model, &svc.namespace, selector, port));
        let target = target_number(port);
        eps.extend(pods(model, &svc.namespace, selector, |_| Some(target)));
    } else if inline.is_empty() && dns {
        // A DNS ServiceEntry without endpoints resolves its own host.
        eps.push(Endpoint {
            address: svc.hostname.clone(),
            port: target_number(port),
            labels: Arc::default(),
            locality: Locality::default(),
            health: Health::Healthy,
            weight: 0,
            service_account: None,
        });
    }
    eps
}

fn target_number(port: &ServicePort) -> u16 {
    match port.target {
        TargetPort::Number(n) => n,
        TargetPort::Name(_) => port.number,
    }
}

fn pods(
    model: &Model,
    namespace: &str,
    selector: &Labels,
    port_of: impl Fn(&Pod) -> Option<u16>,
) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for pod in model.pods_selected(namespace, selector) {
        let Some(ip) = pod.status.pod_ip.as_deref().filter(|ip| !ip.is_empty()) else {
            continue;
        };
        if matches!(
            pod.status.phase.as_deref(),
            Some("Succeeded") | Some("Failed")
        ) {
            continue;
        }
        // Without conditions (a hand-written Pod), the pod is taken as ready.
        let ready = pod
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .is_none_or(|c| c.status == "True");
        if !ready {
            continue;
        }
        let Some(port) = port_of(pod) else { continue };
        let labels = Arc::new(pod.metadata.labels.clone());
        out.push(Endpoint {
            address: ip.to_string(),
            port,
            locality: Locality::from_labels(&labels, None),
            labels,
            health: Health::Healthy,
            weight: 0,
            service_account: Some(pod.spec.service_account()),
        });
    }
    out
}

fn container_port(pod: &Pod, target: &TargetPort) -> Option<u16> {
    match target {
        TargetPort::Number(n) => Some(*n),
        TargetPort::Name(name) => pod
            .spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port as u16),
    }
}

fn workload_entries(
    model: &Model,
    namespace: &str,
    selector: &Labels,
    port: &ServicePort,
) -> Vec<Endpoint> {
    model
        .workload_entries_selected(namespace, selector)
        .into_iter()
        .filter_map(|we| workload_endpoint(&we.spec, port, false))
        .collect()
}

/// An endpoint from a WorkloadEntry (or a ServiceEntry's inline endpoint).
/// EDS needs IP addresses; names are kept only for DNS-resolved services.
fn workload_endpoint(we: &WorkloadEntrySpec, port: &ServicePort, dns: bool) -> Option<Endpoint> {
    let address = we.address.clone().filter(|a| !a.is_empty())?;
    if !dns && address.parse::<IpAddr>().is_err() {
        return None;
    }
    let number = named_port(&we.ports, &port.name).unwrap_or_else(|| target_number(port));
    let labels = Arc::new(we.labels.clone());
    Some(Endpoint {
        address,
        port: number,
        locality: we
            .locality
            .as_deref()
            .map(Locality::parse)
            .unwrap_or_else(|| Locality::from_labels(&labels, None)),
        labels,
        health: Health::Healthy,
        weight: we.weight.unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
        service_account: we.service_account.as_deref().map(Arc::from),
    })
}

fn named_port(ports: &NamedPorts, name: &str) -> Option<u16> {
    ports.get(name).map(|p| *p as u16)
}

#[cfg(test)]
mod tests {
    use super::Locality;

    #[test]
    fn locality_orders_as_its_parts_in_turn() {
        let parts = ["", "a", "ab", "b"];
        let mut all = Vec::new();
        for r in parts {
            for z in parts {
                for s in parts {
                    all.push(Locality {
                        region: r.into(),
                        zone: z.into(),
                        subzone: s.into(),
                    });
                }
            }
        }
        let key = |l: &Locality| (l.region.clone(), l.zone.clone(), l.subzone.clone());
        for a in &all {
            for b in &all {
                assert_eq!(a.cmp(b), key(a).cmp(&key(b)), "{a:?} vs {b:?}");
                assert_eq!(a == b, key(a) == key(b));
            }
        }
    }
}
