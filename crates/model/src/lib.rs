//! The service graph: services, their ports and endpoints, and the Istio
//! routing policies that apply to them.
//!
//! Sources (files, Kubernetes) feed accepted objects in through `Model::apply`;
//! the translator reads services, endpoints and policies out. The model knows
//! neither Kubernetes clients nor Envoy protos. `apply` reports what it touched
//! (`Dirty`) so the translator only rebuilds what changed.

pub mod analyze;
mod apply;
mod endpoints;
pub mod gateway_api;
pub mod hosts;
mod label_index;
pub mod security;
mod service;
pub mod store;
pub mod telemetry;
pub mod text;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

pub use endpoints::{Endpoint, Health, Locality};
pub use service::{Backing, MeshService, Protocol, Resolution, ServicePort, TargetPort};

use label_index::LabelIndex;
use shmesh_api::objects::*;
use shmesh_api::{Kind, KindObject, Object, ObjectKey, Origin};
use store::{Name, Store};

/// One change to the model.
#[derive(Debug, Clone)]
pub enum Change {
    Upsert(ObjectKey, Arc<Object>, Origin),
    Delete(ObjectKey),
}

/// What a batch of changes touched.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dirty {
    /// Hosts whose service definition or DestinationRule changed (clusters,
    /// listeners, routes and endpoints of these hosts).
    pub config: BTreeSet<String>,
    /// Hosts whose endpoints changed.
    pub endpoints: BTreeSet<String>,
    /// Route configurations must be rebuilt whole (a DestinationRule's hash
    /// policy may be in any route).
    pub routes: bool,
    /// Host patterns of VirtualServices that changed (before and after):
    /// only the virtual hosts of matching services need building again.
    pub vs_hosts: BTreeSet<String>,
    /// What some proxies may see changed (a Sidecar): rebuild every view.
    pub scope: bool,
    /// Who takes mutual TLS changed (a PeerAuthentication): inbound
    /// listeners and callers' TLS settings of every view.
    pub security: bool,
    /// What sidecars let in changed (an AuthorizationPolicy or a
    /// RequestAuthentication): inbound listeners of capture views.
    pub authorization: bool,
    /// Namespaces whose Secrets changed: the SDS secrets of their proxies.
    pub secrets: BTreeSet<String>,
    /// A Gateway changed: the listeners and routes of gateway proxies.
    pub gateways: bool,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.config.is_empty()
            && self.endpoints.is_empty()
            && !self.routes
            && self.vs_hosts.is_empty()
            && !self.scope
            && !self.security
            && !self.authorization
            && self.secrets.is_empty()
            && !self.gateways
    }

    pub fn merge(&mut self, other: Dirty) {
        self.config.extend(other.config);
        self.endpoints.extend(other.endpoints);
        self.routes |= other.routes;
        self.vs_hosts.extend(other.vs_hosts);
        self.scope |= other.scope;
        self.security |= other.security;
        self.authorization |= other.authorization;
        self.secrets.extend(other.secrets);
        self.gateways |= other.gateways;
    }

    /// Everything: used at start-up.
    pub fn everything(model: &Model) -> Dirty {
        Dirty {
            config: model.services.keys().cloned().collect(),
            endpoints: BTreeSet::new(),
            routes: true,
            vs_hosts: BTreeSet::new(),
            scope: true,
            security: true,
            authorization: true,
            secrets: BTreeSet::new(),
            gateways: true,
        }
    }
}

/// A stored VirtualService or DestinationRule with the hosts it names resolved.
#[derive(Debug, Clone)]
pub struct Policy<T> {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// Content hash of the spec: tells versions apart where there is no generation.
    pub version: String,
    pub spec: T,
    /// Hosts resolved to FQDNs relative to the object's namespace.
    pub hosts: Vec<String>,
    /// Namespaces this object is visible to; `None` is everywhere.
    pub export_to: Option<BTreeSet<String>>,
}

impl<T> Policy<T> {
    pub fn visible_to(&self, namespace: &str) -> bool {
        visible(&self.export_to, namespace)
    }
}

impl<T: Clone + fmt::Debug + PartialEq> Policy<T> {
    /// The stored form of `object`, named `name`, whose hosts resolve to
    /// `hosts` and which is exported to `export_to`.
    fn new(name: &Name, object: &IstioObject<T>, hosts: Vec<String>, export_to: &[String]) -> Self {
        Policy {
            hosts,
            export_to: export_set(export_to, &name.0),
            namespace: name.0.clone(),
            name: name.1.clone(),
            generation: object.metadata.generation,
            version: spec_version(&object.spec),
            spec: object.spec.clone(),
        }
    }

    /// Whether `object` is what this policy was made from.
    fn made_from(&self, object: &IstioObject<T>) -> bool {
        self.spec == object.spec && self.generation == object.metadata.generation
    }
}

/// A content hash of a spec: tells versions of an object apart where there
/// is no generation. Specs are plain data with ordered maps, so their debug
/// form is deterministic.
pub fn spec_version(spec: &impl fmt::Debug) -> String {
    format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(format!("{spec:?}").as_bytes())
    )
}

fn visible(export_to: &Option<BTreeSet<String>>, namespace: &str) -> bool {
    export_to.as_ref().is_none_or(|set| set.contains(namespace))
}

/// `exportTo` as a set of namespaces (`.` is the object's own); `*` or empty is everywhere.
fn export_set(export_to: &[String], own: &str) -> Option<BTreeSet<String>> {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return None;
    }
    Some(
        export_to
            .iter()
            .map(|e| if e == "." { own.to_string() } else { e.clone() })
            .collect(),
    )
}

/// Maps keyed by names from the mesh's own config: foldhash, seeded per
/// process, at a fraction of SipHash's cost on the translator's hot path.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Policies by the hosts they name, so a lookup by host neither scans them
/// all nor goes back to the policy maps: exact hosts in a map, wildcard
/// patterns in a short list. Holds the same `Arc`s as the policy maps.
#[derive(Debug, Clone)]
struct HostIndex<T> {
    exact: FastMap<String, Vec<Arc<Policy<T>>>>,
    wildcard: Vec<Arc<Policy<T>>>,
}

impl<T> Default for HostIndex<T> {
    fn default() -> Self {
        HostIndex {
            exact: FastMap::default(),
            wildcard: Vec::new(),
        }
    }
}

impl<T> HostIndex<T> {
    fn insert(&mut self, policy: &Arc<Policy<T>>) {
        for h in &policy.hosts {
            let list = if h.starts_with('*') {
                &mut self.wildcard
            } else {
                self.exact.entry(h.clone()).or_default()
            };
            if !list.iter().any(|p| Arc::ptr_eq(p, policy)) {
                list.push(policy.clone());
            }
        }
    }

    /// Forgets `policy` (found by namespace and name) under each of its hosts.
    fn remove(&mut self, policy: &Policy<T>) {
        let other = |p: &Arc<Policy<T>>| p.namespace != policy.namespace || p.name != policy.name;
        for h in &policy.hosts {
            if h.starts_with('*') {
                self.wildcard.retain(other);
            } else if let Some(list) = self.exact.get_mut(h) {
                list.retain(other);
                if list.is_empty() {
                    self.exact.remove(h);
                }
            }
        }
    }

    /// Policies that may cover `host`: those naming it exactly, and every wildcard.
    fn candidates<'a>(&'a self, host: &str) -> impl Iterator<Item = &'a Arc<Policy<T>>> {
        self.exact
            .get(host)
            .into_iter()
            .flatten()
            .chain(self.wildcard.iter())
    }
}

/// The service graph. One writer (`apply`), read by the translator.
#[derive(Debug, Default, Clone)]
pub struct Model {
    k8s_services: Store<Service>,
    service_entries: Store<ServiceEntry>,
    slices: Store<EndpointSlice>,
    pods: Store<Pod>,
    workload_entries: Store<WorkloadEntry>,
    virtual_services: Store<Policy<VirtualServiceSpec>>,
    destination_rules: Store<Policy<DestinationRuleSpec>>,
    vs_by_host: HostIndex<VirtualServiceSpec>,
    dr_by_host: HostIndex<DestinationRuleSpec>,
    /// Namespace-wide Sidecars (without a workload selector), by namespace.
    sidecars: Store<Sidecar>,
    peer_authentications: Store<PeerAuthentication>,
    authorization_policies: Store<AuthorizationPolicy>,
    request_authentications: Store<RequestAuthentication>,
    /// Only ever read for the SDS secrets of proxies in their namespace.
    secrets: Store<Secret>,
    gateways: Store<Gateway>,
    gateway_classes: Store<GatewayClass>,
    kubernetes_gateways: Store<KubernetesGateway>,
    http_routes: Store<HTTPRoute>,
    grpc_routes: Store<GRPCRoute>,
    tcp_routes: Store<TCPRoute>,
    tls_routes: Store<TLSRoute>,
    reference_grants: Store<ReferenceGrant>,
    /// Read for their labels (Gateway API `allowedRoutes` selectors).
    namespaces: Store<Namespace>,
    /// Root and delegate VirtualServices as written (`apply::Delegation`).
    delegation: apply::Delegation,
    /// The Istio Gateways and VirtualServices the Gateway API objects mean,
    /// as last applied (`gateway_api`).
    converted: gateway_api::Converted,
    /// Where a Sidecar applies to every namespace without its own.
    root_namespace: String,
    /// The trust domain of the mesh's SPIFFE identities (`cluster.local`
    /// when empty).
    trust_domain: String,
    /// How proxies trace requests, when they do.
    tracing: Option<Arc<telemetry::Tracing>>,

    /// Services by FQDN (Kubernetes Services win over ServiceEntries).
    services: BTreeMap<String, Arc<MeshService>>,
    /// Endpoints of each service, by service port number.
    endpoints: FastMap<String, Arc<BTreeMap<u16, Vec<Endpoint>>>>,
    /// Slices by (namespace, service name).
    slices_by_service: FastMap<Name, BTreeSet<String>>,
    /// Where each object came from, for messages.
    origins: FastMap<ObjectKey, Origin>,
    /// Pods and WorkloadEntries by label; services by selector label.
    pod_labels: LabelIndex,
    we_labels: LabelIndex,
    service_selectors: LabelIndex,
    /// Services whose EndpointSlices point at a pod: (namespace, pod) →
    /// slice name → service host.
    pod_refs: FastMap<Name, BTreeMap<String, String>>,
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    /// Applies a batch of changes and reports what they touched.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = Change>) -> Dirty {
        let mut dirty = Dirty::default();
        for change in changes {
            self.apply_one(change, &mut dirty);
        }
        for host in dirty.config.iter().chain(dirty.endpoints.iter()) {
            self.recompute_endpoints(host);
        }
        // Endpoint changes already covered by a config change need no separate work.
        let config = dirty.config.clone();
        dirty.endpoints.retain(|h| !config.contains(h));
        dirty
    }

    /// Records where the object came from and hands the change to its
    /// kind's apply function (`apply/`).
    fn apply_one(&mut self, change: Change, dirty: &mut Dirty) {
        let (key, object) = match change {
            Change::Upsert(key, object, origin) => {
                self.origins.insert(key.clone(), origin);
                (key, Some(object))
            }
            Change::Delete(key) => {
                self.origins.remove(&key);
                (key, None)
            }
        };
        // The object, when it is of the key's kind; `None` deletes.
        fn typed<T: KindObject>(object: &Option<Arc<Object>>) -> Option<&T> {
            object.as_deref().and_then(T::from_object)
        }
        let name = (key.namespace, key.name);
        let touched = match key.kind {
            Kind::Service => self.apply_service(name, typed(&object)),
            Kind::ServiceEntry => self.apply_service_entry(name, typed(&object)),
            Kind::EndpointSlice => self.apply_endpoint_slice(name, typed(&object)),
            Kind::Pod => self.apply_pod(name, typed(&object)),
            Kind::WorkloadEntry => self.apply_workload_entry(name, typed(&object)),
            Kind::VirtualService => self.apply_virtual_service(name, typed(&object)),
            Kind::DestinationRule => self.apply_destination_rule(name, typed(&object)),
            Kind::Sidecar => self.apply_sidecar(name, typed(&object)),
            Kind::PeerAuthentication => self.apply_peer_authentication(name, typed(&object)),
            Kind::AuthorizationPolicy => self.apply_authorization_policy(name, typed(&object)),
            Kind::RequestAuthentication => self.apply_request_authentication(name, typed(&object)),
            Kind::Secret => self.apply_secret(name, typed(&object)),
            Kind::Gateway => self.apply_gateway(name, typed(&object)),
            Kind::GatewayClass => self.apply_gateway_class(name, typed(&object)),
            Kind::KubernetesGateway => self.apply_kubernetes_gateway(name, typed(&object)),
            Kind::HTTPRoute => self.apply_http_route(name, typed(&object)),
            Kind::GRPCRoute => self.apply_grpc_route(name, typed(&object)),
            Kind::TCPRoute => self.apply_tcp_route(name, typed(&object)),
            Kind::TLSRoute => self.apply_tls_route(name, typed(&object)),
            Kind::ReferenceGrant => self.apply_reference_grant(name, typed(&object)),
            Kind::Namespace => self.apply_namespace(name, typed(&object)),
        };
        dirty.merge(touched);
    }

    /// Recomputes the service for `host` from the Service and ServiceEntries that define it.
    fn rebuild_host(&mut self, host: &str) {
        let from_k8s = host
            .strip_suffix(&format!(".svc.{}", hosts::DOMAIN_SUFFIX))
            .and_then(|base| base.split_once('.'))
            .and_then(|(name, ns)| self.k8s_services.get(&(ns.to_string(), name.to_string())))
            .map(|s| MeshService::from_k8s(s));
        let service = from_k8s.or_else(|| {
            self.service_entries
                .values()
                .find(|se| se.spec.hosts.iter().any(|h| h == host))
                .map(|se| MeshService::from_service_entry(se, host))
        });
        if let Some(old) = self.services.get(host) {
            if let Some(sel) = old.selector() {
                self.service_selectors.remove(&old.namespace, sel, host);
            }
        }
        match service {
            Some(s) => {
                if let Some(sel) = s.selector() {
                    self.service_selectors.insert(&s.namespace, sel, host);
                }
                self.services.insert(host.to_string(), Arc::new(s));
            }
            None => {
                self.services.remove(host);
                self.endpoints.remove(host);
            }
        }
    }

    /// Hosts of services in `namespace` whose selector matches any of `labels`,
    /// plus (for pods) services whose slices point at pod `pod_name`.
    fn hosts_selecting(
        &self,
        namespace: &str,
        labels: &[&Labels],
        pod_name: Option<&str>,
    ) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for l in labels {
            for host in self.service_selectors.any_of(namespace, l) {
                let selected = self
                    .services
                    .get(&host)
                    .and_then(|svc| svc.selector())
                    .is_some_and(|sel| selects(sel, l));
                if selected {
                    out.insert(host);
                }
            }
        }
        if let Some(refs) =
            pod_name.and_then(|p| self.pod_refs.get(&(namespace.to_string(), p.to_string())))
        {
            out.extend(refs.values().cloned());
        }
        out
    }

    fn recompute_endpoints(&mut self, host: &str) {
        match self.services.get(host) {
            Some(svc) => {
                let eps = endpoints::compute(self, svc);
                self.endpoints.insert(host.to_string(), Arc::new(eps));
            }
            None => {
                self.endpoints.remove(host);
            }
        }
    }

    // ---------------------------------------------------------------- reads

    /// Whether the model holds the object.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.origins.contains_key(key)
    }

    /// Where an object came from (file and line, or the cluster).
    pub fn origin(&self, kind: Kind, namespace: &str, name: &str) -> Origin {
        let key = ObjectKey {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.origins.get(&key).cloned().unwrap_or_default()
    }

    /// Sets the namespace whose Sidecar applies to namespaces without one
    /// (Istio's `rootNamespace`, `istio-system` by default).
    pub fn set_root_namespace(&mut self, namespace: &str) {
        self.root_namespace = namespace.to_string();
    }

    /// The Sidecar of a workload of `namespace` with `labels`: the first
    /// (by name) of its namespace whose selector matches it, else its
    /// namespace's without a selector, else the root namespace's.
    pub fn sidecar_for(&self, namespace: &str, labels: &Labels) -> Option<&Arc<Sidecar>> {
        let selected = self.sidecars.in_namespace(namespace).find(|sc| {
            sc.spec
                .workload_selector
                .as_ref()
                .is_some_and(|sel| selects(&sel.labels, labels))
        });
        let namespace_wide = |ns: &str| {
            self.sidecars
                .in_namespace(ns)
                .find(|sc| sc.spec.workload_selector.is_none())
        };
        selected
            .or_else(|| namespace_wide(namespace))
            .or_else(|| namespace_wide(self.root()))
    }

    /// What a workload of `namespace` with `labels` may reach, as its
    /// Sidecar says (`sidecar_for`); everything without one.
    pub fn egress_scope(&self, namespace: &str, labels: &Labels) -> Scope {
        let Some(sidecar) = self.sidecar_for(namespace, labels) else {
            return Scope::everything();
        };
        if sidecar.spec.egress.is_empty() {
            return Scope::everything();
        }
        let mut hosts = Vec::new();
        for egress in &sidecar.spec.egress {
            for h in &egress.hosts {
                if let Some((ns, dns)) = h.split_once('/') {
                    let ns = match ns {
                        "." => namespace.to_string(),
                        "~" => continue,
                        other => other.to_string(),
                    };
                    hosts.push((ns, dns.to_string()));
                }
            }
        }
        Scope { hosts: Some(hosts) }
    }

    pub fn set_trust_domain(&mut self, trust_domain: &str) {
        self.trust_domain = trust_domain.to_string();
    }

    /// Sets how every proxy traces requests (`None`: not at all). Set before
    /// the first translation: snapshots already built keep what they had.
    pub fn set_tracing(&mut self, tracing: Option<telemetry::Tracing>) {
        self.tracing = tracing.map(Arc::new);
    }

    pub fn tracing(&self) -> Option<&telemetry::Tracing> {
        self.tracing.as_deref()
    }

    /// The trust domain of workload identities, `cluster.local` by default.
    pub fn trust_domain(&self) -> &str {
        if self.trust_domain.is_empty() {
            "cluster.local"
        } else {
            &self.trust_domain
        }
    }

    /// The root namespace: where mesh-wide Sidecars and PeerAuthentications live.
    fn root(&self) -> &str {
        if self.root_namespace.is_empty() {
            "istio-system"
        } else {
            &self.root_namespace
        }
    }

    /// Every service, by FQDN.
    pub fn services(&self) -> &BTreeMap<String, Arc<MeshService>> {
        &self.services
    }

    pub fn service(&self, host: &str) -> Option<&Arc<MeshService>> {
        self.services.get(host)
    }

    /// Endpoints of `host` on service port `port`.
    pub fn endpoints(&self, host: &str, port: u16) -> &[Endpoint] {
        self.endpoints
            .get(host)
            .and_then(|m| m.get(&port))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn virtual_services(&self) -> impl Iterator<Item = &Arc<Policy<VirtualServiceSpec>>> {
        self.virtual_services.values()
    }

    pub fn destination_rules(&self) -> impl Iterator<Item = &Arc<Policy<DestinationRuleSpec>>> {
        self.destination_rules.values()
    }

    /// The namespace of the service called `host` (empty when unknown).
    fn service_namespace(&self, host: &str) -> &str {
        self.services
            .get(host)
            .map(|s| s.namespace.as_str())
            .unwrap_or("")
    }

    /// The DestinationRule that applies to `host` for a proxy in `proxy_ns`
    /// with `labels`: one whose workload selector picks the proxy (in its own
    /// namespace) first; otherwise the most specific host match among rules
    /// without a selector, preferring the proxy's namespace, then the
    /// service's, then any other (by namespace and name), as Istio does.
    pub fn destination_rule(
        &self,
        host: &str,
        proxy_ns: &str,
        labels: &Labels,
    ) -> Option<&Arc<Policy<DestinationRuleSpec>>> {
        let candidates = || {
            self.dr_by_host
                .candidates(host)
                .filter(|dr| dr.visible_to(proxy_ns) && hosts::matches(&dr.hosts[0], host))
                .map(|dr| (dr, hosts::specificity(&dr.hosts[0])))
        };
        let selecting = candidates().filter(|(dr, _)| {
            dr.spec
                .workload_selector
                .as_ref()
                .is_some_and(|sel| dr.namespace == proxy_ns && selects(&sel.match_labels, labels))
        });
        preferred(selecting, proxy_ns, || self.service_namespace(host)).or_else(|| {
            let general = candidates().filter(|(dr, _)| dr.spec.workload_selector.is_none());
            preferred(general, proxy_ns, || self.service_namespace(host))
        })
    }

    /// The VirtualService whose hosts cover `host` for a proxy in `proxy_ns`
    /// (bound to the mesh), preferring the most specific host, then the proxy's
    /// namespace, then the service's namespace, then namespace/name order.
    pub fn virtual_service(
        &self,
        host: &str,
        proxy_ns: &str,
    ) -> Option<&Arc<Policy<VirtualServiceSpec>>> {
        let candidates = self
            .vs_by_host
            .candidates(host)
            .filter(|vs| vs.visible_to(proxy_ns) && applies_to_mesh(&vs.spec))
            .filter_map(|vs| {
                let spec = vs
                    .hosts
                    .iter()
                    .filter(|h| hosts::matches(h, host))
                    .map(|h| hosts::specificity(h))
                    .max()?;
                Some((vs, spec))
            });
        preferred(candidates, proxy_ns, || self.service_namespace(host))
    }

    pub(crate) fn slices_of(&self, namespace: &str, service: &str) -> Vec<&Arc<EndpointSlice>> {
        self.slices_by_service
            .get(&(namespace.to_string(), service.to_string()))
            .into_iter()
            .flatten()
            .filter_map(|s| self.slices.get(&(namespace.to_string(), s.clone())))
            .collect()
    }

    /// Pods in `namespace` whose labels match `selector`.
    pub(crate) fn pods_selected(&self, namespace: &str, selector: &Labels) -> Vec<&Arc<Pod>> {
        self.pod_labels
            .candidates(namespace, selector)
            .into_iter()
            .filter_map(|n| self.pods.get(&(namespace.to_string(), n)))
            .filter(|p| selects(selector, &p.metadata.labels))
            .collect()
    }

    /// The Gateways whose selector picks a gateway proxy of `namespace`
    /// with `labels`: in any namespace, as Istio does by default (an empty
    /// selector picks every gateway proxy), except that a Gateway made from
    /// the Gateway API picks only proxies of its own namespace.
    /// Every Istio Gateway, those the Gateway API objects became included.
    pub fn gateways(&self) -> impl Iterator<Item = &Arc<Gateway>> {
        self.gateways.values()
    }

    pub fn gateways_for(&self, namespace: &str, labels: &Labels) -> Vec<&Arc<Gateway>> {
        self.gateways
            .values()
            .filter(|gw| {
                let own_namespace_only = gw
                    .spec
                    .selector
                    .contains_key(shmesh_api::gateway_api::GATEWAY_NAME_LABEL);
                (!own_namespace_only || gw.metadata.namespace.as_deref() == Some(namespace))
                    && gw
                        .spec
                        .selector
                        .iter()
                        .all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect()
    }

    /// The VirtualServices bound to Gateway `namespace/name` by their
    /// `gateways` (`namespace/name`, or `name` in the Gateway's namespace),
    /// by namespace and name.
    pub fn virtual_services_for_gateway(
        &self,
        namespace: &str,
        name: &str,
    ) -> Vec<&Arc<Policy<VirtualServiceSpec>>> {
        self.virtual_services
            .values()
            .filter(|vs| {
                vs.spec.gateways.iter().any(|g| match g.split_once('/') {
                    Some((ns, n)) => ns == namespace && n == name,
                    None => g == name && vs.namespace == namespace,
                })
            })
            .collect()
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Arc<Secret>> {
        self.secrets.get(&(namespace.to_string(), name.to_string()))
    }

    /// The `credentialName`s of the DestinationRules whose workload selector
    /// picks a proxy of `namespace` with `labels`: the Secrets its clusters
    /// may ask for (Istio reads a sidecar's `credentialName` only there).
    pub fn credential_names(&self, namespace: &str, labels: &Labels) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut add = |tp: Option<&TrafficPolicy>| {
            let Some(tp) = tp else { return };
            let levels = tp
                .tls
                .iter()
                .chain(tp.port_level_settings.iter().filter_map(|p| p.tls.as_ref()));
            names.extend(levels.filter_map(|tls| tls.credential_name.clone()));
        };
        for dr in self.destination_rules.in_namespace(namespace) {
            let picks = dr
                .spec
                .workload_selector
                .as_ref()
                .is_some_and(|sel| selects(&sel.match_labels, labels));
            if picks {
                add(dr.spec.traffic_policy.as_deref());
                for subset in &dr.spec.subsets {
                    add(subset.traffic_policy.as_deref());
                }
            }
        }
        names
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Arc<Pod>> {
        self.pods.get(&(namespace.to_string(), name.to_string()))
    }

    /// WorkloadEntries in `namespace` whose labels match `selector`.
    pub(crate) fn workload_entries_selected(
        &self,
        namespace: &str,
        selector: &Labels,
    ) -> Vec<&Arc<WorkloadEntry>> {
        self.we_labels
            .candidates(namespace, selector)
            .into_iter()
            .filter_map(|n| self.workload_entries.get(&(namespace.to_string(), n)))
            .filter(|w| selects(selector, &w.spec.labels))
            .collect()
    }
}

/// What a proxy may reach, from Sidecar `egress.hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// (namespace or `*`, host pattern) pairs; `None` is everything.
    hosts: Option<Vec<(String, String)>>,
}

impl Scope {
    pub fn everything() -> Scope {
        Scope { hosts: None }
    }

    /// Whether a service of `namespace` called `host` is in scope.
    pub fn allows(&self, namespace: &str, host: &str) -> bool {
        match &self.hosts {
            None => true,
            Some(hosts) => hosts.iter().any(|(ns, pattern)| {
                (ns == "*" || ns == namespace) && hosts::matches(pattern, host)
            }),
        }
    }
}

/// Of several policies covering a host, the one Istio applies: the most
/// specific host, then one in the proxy's namespace, then in the service's,
/// then the first by namespace and name.
fn preferred<'a, T>(
    mut candidates: impl Iterator<Item = (&'a Arc<Policy<T>>, usize)>,
    proxy_ns: &str,
    service_ns: impl FnOnce() -> &'a str,
) -> Option<&'a Arc<Policy<T>>> {
    let first = candidates.next()?;
    let Some(second) = candidates.next() else {
        // Nearly every host has one policy: no namespace to look up.
        return Some(first.0);
    };
    let service_ns = service_ns();
    let rank = |p: &Policy<T>| {
        if p.namespace == proxy_ns {
            2
        } else if p.namespace == service_ns {
            1
        } else {
            0
        }
    };
    [first, second]
        .into_iter()
        .chain(candidates)
        .max_by(|(a, sa), (b, sb)| {
            sa.cmp(sb)
                .then_with(|| rank(a).cmp(&rank(b)))
                .then_with(|| (&b.namespace, &b.name).cmp(&(&a.namespace, &a.name)))
        })
        .map(|(p, _)| p)
}

/// A VirtualService applies to sidecars when it names no gateways or names `mesh`.
pub fn applies_to_mesh(vs: &VirtualServiceSpec) -> bool {
    vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh")
}

/// Kubernetes selector semantics: every selector label present with the same value.
/// An empty selector selects nothing here (as for Service selectors).
pub fn selects(selector: &Labels, labels: &Labels) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pods (namespace, name) a slice's endpoints point at.
fn slice_pods(slice: &EndpointSlice, namespace: &str) -> Vec<Name> {
    slice
        .endpoints
        .iter()
        .filter_map(|e| e.target_ref.as_ref())
        .filter(|r| r.kind.as_deref().unwrap_or("Pod") == "Pod")
        .filter_map(|r| {
            let ns = r.namespace.clone().unwrap_or_else(|| namespace.to_string());
            Some((ns, r.name.clone()?))
        })
        .collect()
}

fn slice_service(slice: &EndpointSlice) -> Option<String> {
    slice
        .metadata
        .labels
        .get("kubernetes.io/service-name")
        .cloned()
}
