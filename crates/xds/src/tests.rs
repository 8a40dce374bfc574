//! Unit tests of the two stream state machines against the xDS protocol
//! rules of docs/xds-rules.md. Each test is named after the rule it checks.
//!
//! Rules 15 (keep `node` per stream) and 16 (TTL/heartbeat, optional) are not
//! covered here: the node is handled by the server before a request reaches a
//! machine, and shmesh does not implement TTLs.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource, Locality};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, GenericSecret, Secret,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status;
use prost::Message;

use super::delta::{self, DeltaStream};
use super::request::{DeltaRequest, SotwRequest};
use super::sotw::{self, SotwStream};
use super::{Event, NameSets, ProtocolError};
use shmesh_cache::responses::{Chunked, WireDeltaDiscoveryResponse, WireDiscoveryResponse};
use shmesh_cache::{Resource, ResourceType, Snapshot, SnapshotBuilder, SortedResources};

/// The interned subscriptions of one test's server: each test runs on its
/// own thread, so streams of a test share sets as a server's do, and no
/// test sees another's.
fn name_sets() -> Arc<NameSets> {
    thread_local! {
        static NAME_SETS: Arc<NameSets> = Arc::default();
    }
    NAME_SETS.with(Arc::clone)
}

const CDS: ResourceType = ResourceType::Cluster;
const EDS: ResourceType = ResourceType::Endpoint;
const LDS: ResourceType = ResourceType::Listener;
const RDS: ResourceType = ResourceType::Route;
const VHDS: ResourceType = ResourceType::VirtualHost;
const SDS: ResourceType = ResourceType::Secret;

// ---------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------

/// One resource of `ty` named `name` whose content (and so version) depends on `tag`.
fn resource(ty: ResourceType, name: &str, tag: &str) -> Arc<Resource> {
    match ty {
        CDS => Resource::encode(
            name.to_string(),
            &Cluster {
                name: name.to_string(),
                alt_stat_name: tag.to_string(),
                ..Default::default()
            },
        ),
        EDS => Resource::encode(
            name.to_string(),
            &ClusterLoadAssignment {
                cluster_name: name.to_string(),
                endpoints: vec![LocalityLbEndpoints {
                    locality: Some(Locality {
                        zone: tag.to_string(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ),
        LDS => Resource::encode(
            name.to_string(),
            &Listener {
                name: name.to_string(),
                stat_prefix: tag.to_string(),
                ..Default::default()
            },
        ),
        RDS => Resource::encode(
            name.to_string(),
            &RouteConfiguration {
                name: name.to_string(),
                internal_only_headers: vec![tag.to_string()],
                ..Default::default()
            },
        ),
        VHDS => Resource::encode(
            name.to_string(),
            &VirtualHost {
                name: name.to_string(),
                domains: vec![tag.to_string()],
                ..Default::default()
            },
        ),
        SDS => Resource::encode(
            name.to_string(),
            &Secret {
                name: name.to_string(),
                r#type: Some(secret::Type::GenericSecret(GenericSecret {
                    secret: Some(DataSource {
                        specifier: Some(data_source::Specifier::InlineString(tag.to_string())),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
            },
        ),
    }
}

type Spec<'a> = &'a [(ResourceType, &'a [(&'a str, &'a str)])];

/// A snapshot holding, per listed type, resources `(name, content tag)`.
fn snapshot(spec: Spec<'_>) -> Arc<Snapshot> {
    let mut b = SnapshotBuilder::default();
    for (ty, items) in spec {
        let set: SortedResources = items
            .iter()
            .map(|(name, tag)| resource(*ty, name, tag))
            .collect();
        b.set(*ty, set);
    }
    Arc::new(b.build())
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn sotw_req(ty: ResourceType, names: &[&str], version: &str, nonce: &str) -> SotwRequest {
    SotwRequest::from(&full_sotw_req(ty, names, version, nonce))
}

fn full_sotw_req(ty: ResourceType, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.to_string(),
        resource_names: strings(names),
        type_url: ty.type_url().to_string(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    }
}

/// A SotW NACK: `version` is the last version the client accepted.
fn nack(
    ty: ResourceType,
    names: &[&str],
    version: &str,
    nonce: &str,
    message: &str,
) -> SotwRequest {
    SotwRequest::from(&DiscoveryRequest {
        error_detail: Some(Status {
            code: 3,
            message: message.to_string(),
            ..Default::default()
        }),
        ..full_sotw_req(ty, names, version, nonce)
    })
}

/// The ACK a SotW client sends for `resp`, keeping the subscription `names`.
fn sotw_ack(resp: &WireDiscoveryResponse, names: &[&str]) -> SotwRequest {
    let ty = ResourceType::from_type_url(&resp.type_url).unwrap();
    sotw_req(ty, names, &resp.version_info, &resp.nonce)
}

fn delta_req(
    ty: ResourceType,
    subscribe: &[&str],
    unsubscribe: &[&str],
    nonce: &str,
) -> DeltaRequest {
    DeltaRequest::from(&full_delta_req(ty, subscribe, unsubscribe, nonce))
}

fn full_delta_req(
    ty: ResourceType,
    subscribe: &[&str],
    unsubscribe: &[&str],
    nonce: &str,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: ty.type_url().to_string(),
        resource_names_subscribe: strings(subscribe),
        resource_names_unsubscribe: strings(unsubscribe),
        response_nonce: nonce.to_string(),
        ..Default::default()
    }
}

fn delta_nack(ty: ResourceType, nonce: &str, message: &str) -> DeltaRequest {
    DeltaRequest::from(&DeltaDiscoveryRequest {
        error_detail: Some(Status {
            code: 3,
            message: message.to_string(),
            ..Default::default()
        }),
        ..full_delta_req(ty, &[], &[], nonce)
    })
}

fn delta_ack(resp: &WireDeltaDiscoveryResponse) -> DeltaRequest {
    let ty = ResourceType::from_type_url(&resp.type_url).unwrap();
    delta_req(ty, &[], &[], &resp.nonce)
}

fn version_of(snap: &Snapshot, ty: ResourceType, name: &str) -> String {
    snap.get(ty).get(name).unwrap().version.clone()
}

// ---------------------------------------------------------------------------
// Reading responses
// ---------------------------------------------------------------------------

/// Name and content tag of an encoded resource.
fn decode(ty: ResourceType, body: &[u8]) -> (String, String) {
    match ty {
        CDS => {
            let c = Cluster::decode(body).unwrap();
            (c.name, c.alt_stat_name)
        }
        EDS => {
            let c = ClusterLoadAssignment::decode(body).unwrap();
            let zone = c.endpoints[0].locality.as_ref().unwrap().zone.clone();
            (c.cluster_name, zone)
        }
        LDS => {
            let l = Listener::decode(body).unwrap();
            (l.name, l.stat_prefix)
        }
        RDS => {
            let r = RouteConfiguration::decode(body).unwrap();
            (r.name, r.internal_only_headers[0].clone())
        }
        VHDS => {
            let v = VirtualHost::decode(body).unwrap();
            (v.name, v.domains[0].clone())
        }
        SDS => {
            let s = Secret::decode(body).unwrap();
            let tag = match s.r#type {
                Some(secret::Type::GenericSecret(g)) => match g.secret.and_then(|d| d.specifier) {
                    Some(data_source::Specifier::InlineString(t)) => t,
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            };
            (s.name, tag)
        }
    }
}

/// A SotW response as a client decodes it.
fn sotw_decoded(resp: &WireDiscoveryResponse) -> DiscoveryResponse {
    DiscoveryResponse::decode(resp.encode_to_vec().as_slice()).expect("a SotW response decodes")
}

/// A delta response as a client decodes it.
fn delta_decoded(resp: &WireDeltaDiscoveryResponse) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse::decode(resp.encode_to_vec().as_slice())
        .expect("a delta response decodes")
}

/// `(name, tag)` of every resource in a SotW response, in order. Checks the
/// type URLs and that no name appears twice (rule 10) on the way.
fn sotw_entries(resp: &WireDiscoveryResponse) -> Vec<(String, String)> {
    let ty = ResourceType::from_type_url(&resp.type_url).expect("known type url");
    let decoded = sotw_decoded(resp);
    assert_eq!(decoded.version_info, resp.version_info);
    let entries: Vec<(String, String)> = decoded
        .resources
        .iter()
        .map(|any| {
            assert_eq!(any.type_url, resp.type_url);
            decode(ty, &any.value)
        })
        .collect();
    let unique: BTreeSet<&String> = entries.iter().map(|(n, _)| n).collect();
    assert_eq!(
        unique.len(),
        entries.len(),
        "rule 10: duplicate name in {entries:?}"
    );
    assert!(!resp.nonce.is_empty());
    entries
}

fn sotw_names(resp: &WireDiscoveryResponse) -> Vec<String> {
    sotw_entries(resp).into_iter().map(|(n, _)| n).collect()
}

/// Every response of `out` as (type, names), in order.
fn sotw_summary(out: &sotw::Output) -> Vec<(ResourceType, Vec<String>)> {
    out.responses
        .iter()
        .map(|r| {
            (
                ResourceType::from_type_url(&r.type_url).unwrap(),
                sotw_names(r),
            )
        })
        .collect()
}

/// A delta response: type, upserted names (in order), removed names.
#[derive(Debug, PartialEq, Eq)]
struct D {
    ty: ResourceType,
    up: Vec<String>,
    rm: Vec<String>,
}

fn d(ty: ResourceType, up: &[&str], rm: &[&str]) -> D {
    D {
        ty,
        up: strings(up),
        rm: strings(rm),
    }
}

/// Reads a delta response, checking each resource's name, version and body
/// agree and that no name appears twice across resources and removals (rule 10).
fn delta_read(resp: &WireDeltaDiscoveryResponse) -> D {
    let ty = ResourceType::from_type_url(&resp.type_url).expect("known type url");
    let mut up = Vec::new();
    let decoded = delta_decoded(resp);
    assert_eq!(decoded.removed_resources, resp.removed_resources);
    assert_eq!(decoded.resources.len(), resp.resources.len());
    for r in &decoded.resources {
        let any = r.resource.as_ref().expect("resource body");
        assert_eq!(any.type_url, resp.type_url);
        let (name, _) = decode(ty, &any.value);
        assert_eq!(name, r.name);
        assert_eq!(r.version, shmesh_cache::content_version(&any.value));
        up.push(name);
    }
    let mut all: Vec<&String> = up.iter().chain(resp.removed_resources.iter()).collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        n,
        "rule 10: duplicate name in {up:?} / {:?}",
        resp.removed_resources
    );
    assert!(!resp.nonce.is_empty());
    D {
        ty,
        up,
        rm: resp.removed_resources.clone(),
    }
}

fn delta_summary(out: &delta::Output) -> Vec<D> {
    out.responses.iter().map(delta_read).collect()
}

fn delta_tags(resp: &WireDeltaDiscoveryResponse) -> Vec<(String, String)> {
    let ty = ResourceType::from_type_url(&resp.type_url).unwrap();
    delta_decoded(resp)
        .resources
        .iter()
        .map(|r| decode(ty, &r.resource.as_ref().unwrap().value))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------
// Driving a stream to a steady state
// ---------------------------------------------------------------------------

/// Sends `req` and ACKs the single response it must produce; returns that response.
fn sotw_subscribe(s: &mut SotwStream, ty: ResourceType, names: &[&str]) -> WireDiscoveryResponse {
    let out = s.on_request(&sotw_req(ty, names, "", "")).unwrap();
    assert_eq!(
        out.responses.len(),
        1,
        "one response to the first {ty} request"
    );
    let resp = out.responses.into_iter().next().unwrap();
    let acked = s.on_request(&sotw_ack(&resp, names)).unwrap();
    assert!(
        acked.responses.is_empty(),
        "an ACK is answered with nothing"
    );
    assert_eq!(
        acked.events,
        vec![Event::Ack {
            ty,
            version: resp.version_info.clone()
        }]
    );
    resp
}

/// ACKs every response of `out`, asserting the ACKs produce nothing.
fn sotw_ack_all(s: &mut SotwStream, out: &sotw::Output, names: &HashMap<ResourceType, Vec<&str>>) {
    for resp in &out.responses {
        let ty = ResourceType::from_type_url(&resp.type_url).unwrap();
        let acked = s.on_request(&sotw_ack(resp, &names[&ty])).unwrap();
        assert!(acked.responses.is_empty());
    }
}

fn delta_subscribe(
    s: &mut DeltaStream,
    ty: ResourceType,
    names: &[&str],
) -> WireDeltaDiscoveryResponse {
    let out = s.on_request(&delta_req(ty, names, &[], "")).unwrap();
    assert_eq!(
        out.responses.len(),
        1,
        "one response to the first {ty} request"
    );
    let resp = out.responses.into_iter().next().unwrap();
    let acked = s.on_request(&delta_ack(&resp)).unwrap();
    assert!(
        acked.responses.is_empty(),
        "an ACK is answered with nothing"
    );
    assert_eq!(acked.events.len(), 1);
    assert!(matches!(acked.events[0], Event::Ack { ty: t, .. } if t == ty));
    resp
}

fn delta_ack_all(s: &mut DeltaStream, out: &delta::Output) {
    for resp in &out.responses {
        let acked = s.on_request(&delta_ack(resp)).unwrap();
        assert!(acked.responses.is_empty());
    }
}

/// The mesh most tests start from.
fn base() -> Arc<Snapshot> {
    base_with(&[])
}

/// The base snapshot with the tags (and so the versions) of the named
/// resources changed: `(type, name, tag)`.
fn base_with(changes: &[(ResourceType, &str, &str)]) -> Arc<Snapshot> {
    let tag = |ty: ResourceType, name: &'static str| {
        let changed = changes.iter().find(|(t, n, _)| *t == ty && *n == name);
        (name, changed.map_or("1", |(_, _, tag)| *tag))
    };
    snapshot(&[
        (CDS, &[tag(CDS, "a"), tag(CDS, "b"), tag(CDS, "c")]),
        (EDS, &[tag(EDS, "a"), tag(EDS, "b"), tag(EDS, "c")]),
        (LDS, &[tag(LDS, "l1"), tag(LDS, "l2")]),
        (RDS, &[tag(RDS, "r1"), tag(RDS, "r2")]),
    ])
}

/// A SotW stream like Envoy's: CDS and LDS by wildcard, EDS and RDS by name, all ACKed.
fn sotw_steady(snap: Arc<Snapshot>) -> (SotwStream, HashMap<ResourceType, Vec<&'static str>>) {
    let names: HashMap<ResourceType, Vec<&str>> = [
        (CDS, vec![]),
        (EDS, vec!["a", "b", "c"]),
        (LDS, vec![]),
        (RDS, vec!["r1", "r2"]),
    ]
    .into();
    let mut s = SotwStream::new(snap, "test", name_sets());
    for ty in [CDS, EDS, LDS, RDS] {
        sotw_subscribe(&mut s, ty, &names[&ty]);
    }
    (s, names)
}

/// A delta stream like Envoy's: CDS and LDS by (legacy) wildcard, EDS and RDS by name, all ACKed.
fn delta_steady(snap: Arc<Snapshot>) -> DeltaStream {
    let mut s = DeltaStream::new(snap, "test", name_sets());
    delta_subscribe(&mut s, CDS, &[]);
    delta_subscribe(&mut s, EDS, &["a", "b", "c"]);
    delta_subscribe(&mut s, LDS, &[]);
    delta_subscribe(&mut s, RDS, &["r1", "r2"]);
    s
}

// ---------------------------------------------------------------------------
// Both protocols, driven alike: the cases that hold for SotW and delta alike
// are written once and run over both.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Sotw,
    Delta,
}

const PROTOCOLS: [Protocol; 2] = [Protocol::Sotw, Protocol::Delta];

/// A response of either protocol as the cases read it: its type, the
/// `(name, tag)` of every resource in it, the names it removes (delta), its
/// version (SotW `version_info`, delta `system_version_info`) and nonce.
/// Reading it checks rule 10.
#[derive(Debug, Clone)]
struct Got {
    ty: ResourceType,
    entries: Vec<(String, String)>,
    removed: Vec<String>,
    version: String,
    nonce: String,
}

impl Got {
    fn from_sotw(resp: &WireDiscoveryResponse) -> Got {
        Got {
            ty: ResourceType::from_type_url(&resp.type_url).expect("known type url"),
            entries: sotw_entries(resp),
            removed: Vec::new(),
            version: resp.version_info.clone(),
            nonce: resp.nonce.clone(),
        }
    }

    fn from_delta(resp: &WireDeltaDiscoveryResponse) -> Got {
        let read = delta_read(resp);
        Got {
            ty: read.ty,
            entries: delta_tags(resp),
            removed: read.rm,
            version: resp.system_version_info.clone(),
            nonce: resp.nonce.clone(),
        }
    }
}

/// A stream of either protocol with its client's subscriptions. (A few per
/// test: the variants' sizes do not matter.)
#[allow(clippy::large_enum_variant)]
enum Stream {
    Sotw(SotwStream, HashMap<ResourceType, Vec<String>>),
    Delta(DeltaStream),
}

impl Stream {
    fn new(protocol: Protocol, snap: Arc<Snapshot>) -> Stream {
        match protocol {
            Protocol::Sotw => {
                Stream::Sotw(SotwStream::new(snap, "test", name_sets()), HashMap::new())
            }
            Protocol::Delta => Stream::Delta(DeltaStream::new(snap, "test", name_sets())),
        }
    }

    /// Subscribed like Envoy, with everything ACKed: CDS and LDS by
    /// wildcard, EDS and RDS by the names `snap` has.
    fn steady(protocol: Protocol, snap: Arc<Snapshot>) -> Stream {
        let mut s = Stream::new(protocol, snap.clone());
        for ty in [CDS, EDS, LDS, RDS] {
            let names: Vec<String> = match ty {
                CDS | LDS => Vec::new(),
                _ => snap.get(ty).names().map(String::from).collect(),
            };
            s.subscribe(ty, &names.iter().map(String::as_str).collect::<Vec<_>>());
        }
        s
    }

    /// Subscribes to `names` of `ty` (a client's first request for the
    /// type) and ACKs the one response that must come; returns it.
    fn subscribe(&mut self, ty: ResourceType, names: &[&str]) -> Got {
        match self {
            Stream::Sotw(s, subscribed) => {
                subscribed.insert(ty, strings(names));
                Got::from_sotw(&sotw_subscribe(s, ty, names))
            }
            Stream::Delta(s) => Got::from_delta(&delta_subscribe(s, ty, names)),
        }
    }

    fn snapshot(&mut self, snap: Arc<Snapshot>) -> Vec<Got> {
        match self {
            Stream::Sotw(s, _) => s
                .on_snapshot(snap)
                .responses
                .iter()
                .map(Got::from_sotw)
                .collect(),
            Stream::Delta(s) => s
                .on_snapshot(snap)
                .responses
                .iter()
                .map(Got::from_delta)
                .collect(),
        }
    }

    /// ACKs every response of `got`, asserting the ACKs are answered with nothing.
    fn ack_all(&mut self, got: &[Got]) {
        for g in got {
            let answered = match self {
                Stream::Sotw(s, subscribed) => {
                    let names: Vec<&str> = subscribed[&g.ty].iter().map(String::as_str).collect();
                    s.on_request(&sotw_req(g.ty, &names, &g.version, &g.nonce))
                        .unwrap()
                        .responses
                        .len()
                }
                Stream::Delta(s) => s
                    .on_request(&delta_req(g.ty, &[], &[], &g.nonce))
                    .unwrap()
                    .responses
                    .len(),
            };
            assert_eq!(answered, 0, "an ACK is answered with nothing");
        }
    }

    /// Rejects `got`, saying the client stays on `last_good`.
    fn nack(&mut self, got: &Got, last_good: &str) -> Vec<Event> {
        match self {
            Stream::Sotw(s, subscribed) => {
                let names: Vec<&str> = subscribed[&got.ty].iter().map(String::as_str).collect();
                s.on_request(&nack(got.ty, &names, last_good, &got.nonce, "no"))
                    .unwrap()
                    .events
            }
            Stream::Delta(s) => {
                s.on_request(&delta_nack(got.ty, &got.nonce, "no"))
                    .unwrap()
                    .events
            }
        }
    }

    /// The client asks for `ty` again without changing its subscription.
    fn repeat_subscription(&mut self, ty: ResourceType) -> usize {
        match self {
            Stream::Sotw(s, subscribed) => {
                // In another order: the same set all the same.
                let mut names: Vec<&str> = subscribed[&ty].iter().map(String::as_str).collect();
                names.reverse();
                s.on_request(&sotw_req(ty, &names, "", ""))
                    .unwrap()
                    .responses
                    .len()
            }
            Stream::Delta(s) => s
                .on_request(&delta_req(ty, &[], &[], ""))
                .unwrap()
                .responses
                .len(),
        }
    }

    fn in_sync(&self) -> bool {
        match self {
            Stream::Sotw(s, _) => s.in_sync(),
            Stream::Delta(s) => s.in_sync(),
        }
    }
}

// ---------------------------------------------------------------------------
// Rule 1: versions belong to resources per type; nonces are per stream and fresh.
// ---------------------------------------------------------------------------

#[test]
fn rule_01_sotw_versions_belong_to_resources_not_streams() {
    let snap = base();
    let mut one = SotwStream::new(snap.clone(), "test", name_sets());
    let mut two = SotwStream::new(snap.clone(), "test", name_sets());
    let cds1 = sotw_subscribe(&mut one, CDS, &[]);
    // The second stream subscribes to other things first: its nonces move on,
    // the versions do not.
    sotw_subscribe(&mut two, LDS, &[]);
    sotw_subscribe(&mut two, EDS, &["a"]);
    let cds2 = sotw_subscribe(&mut two, CDS, &[]);
    assert_eq!(cds1.version_info, cds2.version_info);
    assert_eq!(cds1.version_info, snap.get(CDS).version());

    // A change to another type leaves the CDS version alone.
    let eds_changed = base_with(&[(EDS, "a", "2")]);
    let mut three = SotwStream::new(eds_changed, "test", name_sets());
    let cds3 = sotw_subscribe(&mut three, CDS, &[]);
    assert_eq!(cds3.version_info, cds1.version_info);
}

#[test]
fn rule_01_delta_versions_belong_to_resources_not_streams() {
    let snap = base();
    let mut one = DeltaStream::new(snap.clone(), "test", name_sets());
    let mut two = DeltaStream::new(snap.clone(), "test", name_sets());
    let r1 = delta_subscribe(&mut one, CDS, &[]);
    delta_subscribe(&mut two, LDS, &[]);
    delta_subscribe(&mut two, EDS, &["a"]);
    let r2 = delta_subscribe(&mut two, CDS, &[]);
    assert_ne!(r1.nonce, r2.nonce, "nonces belong to streams");
    let (d1, d2) = (delta_decoded(&r1), delta_decoded(&r2));
    for (x, y) in d1.resources.iter().zip(&d2.resources) {
        assert_eq!(x.name, y.name);
        assert_eq!(x.version, y.version);
        assert_eq!(x.version, version_of(&snap, CDS, &x.name));
    }
    assert_eq!(r1.resources.len(), 3);
    assert_eq!(r1.system_version_info, snap.get(CDS).version());
    assert_eq!(r2.system_version_info, snap.get(CDS).version());
}

#[test]
fn rule_01_every_response_has_a_fresh_nonce() {
    let tagged = |tag: &str| {
        snapshot(&[
            (CDS, &[("a", tag), ("b", "1"), ("c", "1")]),
            (EDS, &[("a", tag), ("b", "1"), ("c", "1")]),
            (LDS, &[("l1", tag), ("l2", "1")]),
            (RDS, &[("r1", tag), ("r2", "1")]),
        ])
    };
    for protocol in PROTOCOLS {
        let mut s = Stream::steady(protocol, base());
        let mut nonces = BTreeSet::new();
        let mut count = 0;
        for tag in ["2", "3", "4"] {
            let got = s.snapshot(tagged(tag));
            assert_eq!(got.len(), 4, "{protocol:?}");
            for g in &got {
                nonces.insert(g.nonce.clone());
                count += 1;
            }
            s.ack_all(&got);
        }
        assert_eq!(
            nonces.len(),
            count,
            "{protocol:?}: a nonce was reused: {nonces:?}"
        );
        // A new stream starts its own nonces; versions are the same as on the old one.
        let last = tagged("4");
        let cds = Stream::new(protocol, last.clone()).subscribe(CDS, &[]);
        assert_eq!(cds.version, last.get(CDS).version(), "{protocol:?}");
    }
}

// ---------------------------------------------------------------------------
// Rule 2: SotW ignores requests that answer an older response.
// ---------------------------------------------------------------------------

#[test]
fn rule_02_sotw_ignores_stale_nonce() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    let first = sotw_subscribe(&mut s, EDS, &["a"]);
    let out = s.on_snapshot(snapshot(&[(EDS, &[("a", "2"), ("b", "1")])]));
    assert_eq!(sotw_summary(&out), vec![(EDS, strings(&["a"]))]);
    let latest = &out.responses[0];
    assert_ne!(first.nonce, latest.nonce);

    // The client had not seen `latest` when it sent this: it is superseded.
    let stale = s
        .on_request(&sotw_req(
            EDS,
            &["a", "b"],
            &first.version_info,
            &first.nonce,
        ))
        .unwrap();
    assert!(stale.responses.is_empty());
    assert!(stale.events.is_empty(), "no ACK for a stale nonce");
    assert_eq!(
        s.subscriptions(EDS),
        (false, strings(&["a"])),
        "stale names not applied"
    );

    // A stale NACK is not recorded either.
    let stale_nack = s
        .on_request(&nack(EDS, &["a"], "", &first.nonce, "bad"))
        .unwrap();
    assert!(stale_nack.responses.is_empty());
    assert!(stale_nack.events.is_empty());

    // The newest request is applied: ACK, and `b` is sent.
    let fresh = s
        .on_request(&sotw_req(
            EDS,
            &["a", "b"],
            &latest.version_info,
            &latest.nonce,
        ))
        .unwrap();
    assert_eq!(
        fresh.events,
        vec![Event::Ack {
            ty: EDS,
            version: latest.version_info.clone()
        }]
    );
    assert_eq!(sotw_summary(&fresh), vec![(EDS, strings(&["b"]))]);
    assert_eq!(s.subscriptions(EDS), (false, strings(&["a", "b"])));
}

#[test]
fn rule_02_sotw_nonce_from_an_earlier_stream_is_not_stale_before_anything_was_sent() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    // A reconnecting client may carry the nonce of its previous stream.
    let out = s.on_request(&sotw_req(EDS, &["a"], "", "77")).unwrap();
    assert_eq!(sotw_summary(&out), vec![(EDS, strings(&["a"]))]);
    assert!(
        out.events.is_empty(),
        "not an ACK of anything sent on this stream"
    );
}

// ---------------------------------------------------------------------------
// Rule 3: delta applies subscriptions whatever the nonce.
// ---------------------------------------------------------------------------

#[test]
fn rule_03_delta_applies_subscriptions_with_stale_nonce() {
    let mut s = DeltaStream::new(base(), "test", name_sets());
    let first = delta_subscribe(&mut s, EDS, &["a"]);
    let out = s.on_snapshot(snapshot(&[(EDS, &[("a", "2"), ("b", "1"), ("c", "1")])]));
    assert_eq!(delta_summary(&out), vec![d(EDS, &["a"], &[])]);

    // Answers `first`, not the latest response: no ACK, but `b` is subscribed.
    let stale = s
        .on_request(&delta_req(EDS, &["b"], &[], &first.nonce))
        .unwrap();
    assert!(stale.events.is_empty(), "no ACK for a stale nonce");
    assert_eq!(delta_summary(&stale), vec![d(EDS, &["b"], &[])]);
    delta_ack_all(&mut s, &stale);

    // A stale unsubscribe applies too: later changes to `a` are not sent.
    let unsub = s
        .on_request(&delta_req(EDS, &[], &["a"], &first.nonce))
        .unwrap();
    assert!(unsub.responses.is_empty());
    assert!(unsub.events.is_empty());
    let out = s.on_snapshot(snapshot(&[(EDS, &[("a", "3"), ("b", "2"), ("c", "1")])]));
    assert_eq!(delta_summary(&out), vec![d(EDS, &["b"], &[])]);

    // A stale NACK is not recorded.
    let stale_nack = s.on_request(&delta_nack(EDS, &first.nonce, "bad")).unwrap();
    assert!(stale_nack.events.is_empty());
    assert!(stale_nack.responses.is_empty());
}

// ---------------------------------------------------------------------------
// Rule 4: ACK/NACK by error_detail; NACK recorded, not resent until the config changes.
// ---------------------------------------------------------------------------

#[test]
fn rule_04_sotw_nack_is_recorded_and_not_resent_until_config_changes() {
    let (mut s, names) = sotw_steady(base());
    let good = s.snapshot().get(CDS).version().to_string();
    let bad = base_with(&[(CDS, "a", "bad")]);
    let out = s.on_snapshot(bad.clone());
    // Rule 12 sends a's assignment along; ACK it.
    assert_eq!(
        sotw_summary(&out),
        vec![(CDS, strings(&["a", "b", "c"])), (EDS, strings(&["a"]))]
    );
    let cds = out.responses[0].clone();
    let eds_ack = s
        .on_request(&sotw_ack(&out.responses[1], &names[&EDS]))
        .unwrap();
    assert!(eds_ack.responses.is_empty());

    let rejected = s
        .on_request(&nack(CDS, &[], &good, &cds.nonce, "cluster a: bad"))
        .unwrap();
    assert!(
        rejected.responses.is_empty(),
        "a NACK is not answered with the same config"
    );
    assert_eq!(
        rejected.events,
        vec![Event::Nack {
            ty: CDS,
            version: good.clone(),
            nonce: cds.nonce.clone(),
            message: "cluster a: bad".into(),
        }]
    );

    // The same config again (a new snapshot with equal content): nothing.
    assert!(s.on_snapshot(bad.clone()).responses.is_empty());
    // Another type changes: only that type is sent.
    let other = base_with(&[(CDS, "a", "bad"), (LDS, "l1", "2")]);
    let out = s.on_snapshot(other);
    assert_eq!(sotw_summary(&out), vec![(LDS, strings(&["l1", "l2"]))]);
    sotw_ack_all(&mut s, &out, &names);

    // The clusters change: sent again, as a whole set.
    let fixed = base_with(&[(CDS, "a", "fixed"), (LDS, "l1", "2")]);
    let out = s.on_snapshot(fixed.clone());
    assert_eq!(out.responses[0].type_url, CDS.type_url());
    assert_eq!(
        sotw_entries(&out.responses[0]),
        pairs(&[("a", "fixed"), ("b", "1"), ("c", "1")])
    );
    assert_eq!(out.responses[0].version_info, fixed.get(CDS).version());
    let ack = s.on_request(&sotw_ack(&out.responses[0], &[])).unwrap();
    assert_eq!(
        ack.events,
        vec![Event::Ack {
            ty: CDS,
            version: fixed.get(CDS).version().to_string()
        }]
    );
}

#[test]
fn rule_04_sotw_nack_of_eds_is_not_resent_when_only_unwatched_resources_change() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    let first = sotw_subscribe(&mut s, EDS, &["a"]);
    let out = s.on_snapshot(snapshot(&[(EDS, &[("a", "bad"), ("b", "1")])]));
    assert_eq!(sotw_summary(&out), vec![(EDS, strings(&["a"]))]);
    let rejected = s
        .on_request(&nack(
            EDS,
            &["a"],
            &first.version_info,
            &out.responses[0].nonce,
            "bad endpoints",
        ))
        .unwrap();
    assert!(rejected.responses.is_empty());
    assert!(
        matches!(&rejected.events[..], [Event::Nack { ty: EDS, version, .. }] if *version == first.version_info)
    );

    // `b` changes; the client does not watch it and its own config is unchanged.
    let out = s.on_snapshot(snapshot(&[(EDS, &[("a", "bad"), ("b", "2")])]));
    assert!(
        out.responses.is_empty(),
        "rejected assignment resent: {:?}",
        sotw_summary(&out)
    );

    // `a` changes: sent.
    let out = s.on_snapshot(snapshot(&[(EDS, &[("a", "good"), ("b", "2")])]));
    assert_eq!(sotw_summary(&out), vec![(EDS, strings(&["a"]))]);
    assert_eq!(sotw_entries(&out.responses[0]), pairs(&[("a", "good")]));
}

#[test]
fn rule_04_sotw_ack_and_nack_are_told_by_error_detail_not_version() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    let first = sotw_subscribe(&mut s, EDS, &["a"]);
    // The client adds `b`; it ACKs the response with a version other than the
    // one it last applied (as allowed), which is still an ACK.
    let out = s
        .on_request(&sotw_req(
            EDS,
            &["a", "b"],
            &first.version_info,
            &first.nonce,
        ))
        .unwrap();
    let resp = out.responses[0].clone();
    let ack = s
        .on_request(&sotw_req(EDS, &["a", "b"], "whatever", &resp.nonce))
        .unwrap();
    assert_eq!(
        ack.events,
        vec![Event::Ack {
            ty: EDS,
            version: "whatever".into()
        }]
    );
    // A NACK may carry the very version of the response (a new resource from an
    // existing version was invalid): still a NACK.
    let out = s
        .on_request(&sotw_req(
            EDS,
            &["a", "b", "c"],
            &resp.version_info,
            &resp.nonce,
        ))
        .unwrap();
    let resp = out.responses[0].clone();
    let rejected = s
        .on_request(&nack(
            EDS,
            &["a", "b", "c"],
            &resp.version_info,
            &resp.nonce,
            "c is bad",
        ))
        .unwrap();
    assert_eq!(
        rejected.events,
        vec![Event::Nack {
            ty: EDS,
            version: resp.version_info.clone(),
            nonce: resp.nonce.clone(),
            message: "c is bad".into(),
        }]
    );
    assert!(rejected.responses.is_empty());
}

#[test]
fn rule_04_delta_nack_is_recorded_and_not_resent_until_config_changes() {
    // A NACK leaves the client on what it last ACKed.
    let mut s = delta_steady(base());
    let good = s.snapshot().get(CDS).version().to_string();
    let bad = base_with(&[(CDS, "b", "bad")]);
    let out = s.on_snapshot(bad.clone());
    assert_eq!(
        delta_summary(&out),
        vec![d(CDS, &["b"], &[]), d(EDS, &["b"], &[])]
    );
    let cds = out.responses[0].clone();
    assert_eq!(cds.system_version_info, bad.get(CDS).version());
    let eds_ack = s.on_request(&delta_ack(&out.responses[1])).unwrap();
    assert!(eds_ack.responses.is_empty());

    let rejected = s
        .on_request(&delta_nack(CDS, &cds.nonce, "cluster b: bad"))
        .unwrap();
    assert!(rejected.responses.is_empty());
    assert_eq!(
        rejected.events,
        vec![Event::Nack {
            ty: CDS,
            // The last version the client accepted, not the rejected one.
            version: good.clone(),
            nonce: cds.nonce.clone(),
            message: "cluster b: bad".into(),
        }]
    );

    // Same config again: nothing.
    assert!(s.on_snapshot(bad.clone()).responses.is_empty());
    // Another cluster changes: the config changed, so everything the client
    // does not hold goes out, the rejected `b` included (the client rejected
    // the whole response and still holds the `b` it last ACKed).
    let other = base_with(&[(CDS, "b", "bad"), (CDS, "c", "2")]);
    let out = s.on_snapshot(other);
    assert_eq!(
        delta_summary(&out),
        vec![d(CDS, &["b", "c"], &[]), d(EDS, &["b", "c"], &[])]
    );
    delta_ack_all(&mut s, &out);
    // `b` changes: sent.
    let fixed = base_with(&[(CDS, "b", "fixed"), (CDS, "c", "2")]);
    let out = s.on_snapshot(fixed);
    assert_eq!(
        delta_summary(&out),
        vec![d(CDS, &["b"], &[]), d(EDS, &["b"], &[])]
    );
    assert_eq!(delta_tags(&out.responses[0]), pairs(&[("b", "fixed")]));
}

#[test]
fn rule_04_delta_ack_reports_the_version_of_the_acked_response() {
    let mut s = DeltaStream::new(base(), "test", name_sets());
    let out = s.on_request(&delta_req(EDS, &["a"], &[], "")).unwrap();
    let resp = out.responses[0].clone();
    let sent_version = resp.system_version_info.clone();
    // The EDS set changes only where the client does not look: nothing is sent...
    let out = s.on_snapshot(snapshot(&[(EDS, &[("a", "1"), ("b", "2"), ("c", "1")])]));
    assert!(out.responses.is_empty());
    // ...so the ACK that follows is for what was sent, not the newest set.
    let ack = s.on_request(&delta_ack(&resp)).unwrap();
    assert_eq!(
        ack.events,
        vec![Event::Ack {
            ty: EDS,
            version: sent_version
        }]
    );
}

// ---------------------------------------------------------------------------
// Rule 5: send only what changed.
// ---------------------------------------------------------------------------

#[test]
fn rule_05_sotw_dropping_star_forgets_resources_no_longer_wanted() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    let resp = sotw_subscribe(&mut s, CDS, &["*", "a"]);
    assert_eq!(sotw_names(&resp), strings(&["a", "b", "c"]));
    // The client keeps only `a`.
    let out = s
        .on_request(&sotw_req(CDS, &["a"], &resp.version_info, &resp.nonce))
        .unwrap();
    assert_eq!(out.events.len(), 1);
    assert_eq!(s.subscriptions(CDS), (false, strings(&["a"])));
    // `b` goes away: nothing the client wants changed.
    let out = s.on_snapshot(snapshot(&[(CDS, &[("a", "1"), ("c", "1")])]));
    assert!(out.responses.is_empty(), "sent {:?}", sotw_summary(&out));
}

// ---------------------------------------------------------------------------
// Rule 6: SotW CDS/LDS carry the whole set; EDS/RDS only what changed.
// ---------------------------------------------------------------------------

#[test]
fn rule_06_sotw_cds_and_lds_carry_the_whole_set() {
    let (mut s, names) = sotw_steady(base());
    let next = base_with(&[(CDS, "b", "2"), (LDS, "l2", "2")]);
    let out = s.on_snapshot(next.clone());
    // CDS, EDS (rule 12: b's assignment), LDS.
    assert_eq!(
        sotw_summary(&out),
        vec![
            (CDS, strings(&["a", "b", "c"])),
            (EDS, strings(&["b"])),
            (LDS, strings(&["l1", "l2"])),
        ]
    );
    assert_eq!(
        sotw_entries(&out.responses[0]),
        pairs(&[("a", "1"), ("b", "2"), ("c", "1")])
    );
    assert_eq!(out.responses[0].version_info, next.get(CDS).version());
    assert_eq!(out.responses[2].version_info, next.get(LDS).version());
    sotw_ack_all(&mut s, &out, &names);

    // Absent means deleted: after removing `c` and `l1` the sets lack them.
    let fewer = snapshot(&[
        (CDS, &[("a", "1"), ("b", "2")]),
        (EDS, &[("a", "1"), ("b", "1"), ("c", "1")]),
        (LDS, &[("l2", "2")]),
        (RDS, &[("r1", "1"), ("r2", "1")]),
    ]);
    let out = s.on_snapshot(fewer);
    let last_cds = out
        .responses
        .iter()
        .rev()
        .find(|r| r.type_url == CDS.type_url())
        .unwrap();
    let last_lds = out
        .responses
        .iter()
        .rev()
        .find(|r| r.type_url == LDS.type_url())
        .unwrap();
    assert_eq!(sotw_names(last_cds), strings(&["a", "b"]));
    assert_eq!(sotw_names(last_lds), strings(&["l2"]));
}

#[test]
fn rule_06_sotw_eds_and_rds_carry_only_what_changed() {
    let (mut s, _) = sotw_steady(base());
    let next = base_with(&[(EDS, "b", "2"), (EDS, "c", "2"), (RDS, "r2", "2")]);
    let out = s.on_snapshot(next.clone());
    assert_eq!(
        sotw_summary(&out),
        vec![(EDS, strings(&["b", "c"])), (RDS, strings(&["r2"]))]
    );
    assert_eq!(
        sotw_entries(&out.responses[0]),
        pairs(&[("b", "2"), ("c", "2")])
    );
    // The version says what the client holds of its subscription afterwards:
    // a client reconnecting with it, for the same names, needs nothing more.
    let mut again = SotwStream::new(next.clone(), "test", name_sets());
    let out2 = again
        .on_request(&sotw_req(
            EDS,
            &["a", "b", "c"],
            &out.responses[0].version_info,
            "",
        ))
        .unwrap();
    assert!(out2.responses.is_empty());
}

#[test]
fn rule_06_sotw_named_lds_carries_the_named_set_only() {
    // gRPC clients ask for their listener by name.
    let mut s = SotwStream::new(base(), "test", name_sets());
    let resp = sotw_subscribe(&mut s, LDS, &["l1"]);
    assert_eq!(sotw_names(&resp), strings(&["l1"]));
    // `l2` changes: not this client's business.
    let out = s.on_snapshot(snapshot(&[(LDS, &[("l1", "1"), ("l2", "2")])]));
    assert!(out.responses.is_empty());
    let out = s.on_snapshot(snapshot(&[(LDS, &[("l1", "2"), ("l2", "2")])]));
    assert_eq!(sotw_summary(&out), vec![(LDS, strings(&["l1"]))]);
}

// ---------------------------------------------------------------------------
// Rule 7: delta sends changes individually, deletions and missing names in removed_resources.
// ---------------------------------------------------------------------------

#[test]
fn rule_07_delta_sends_changed_resources_individually_and_deletions_as_removed() {
    let mut s = delta_steady(base());
    let next = base_with(&[(LDS, "l2", "2")]);
    let out = s.on_snapshot(next);
    assert_eq!(delta_summary(&out), vec![d(LDS, &["l2"], &[])]);
    assert_eq!(delta_tags(&out.responses[0]), pairs(&[("l2", "2")]));
    delta_ack_all(&mut s, &out);

    let removed = snapshot(&[
        (CDS, &[("a", "1"), ("b", "1"), ("c", "1")]),
        (EDS, &[("a", "1"), ("b", "1"), ("c", "1")]),
        (LDS, &[("l2", "2")]),
        (RDS, &[("r1", "1"), ("r2", "1")]),
    ]);
    let out = s.on_snapshot(removed.clone());
    assert_eq!(delta_summary(&out), vec![d(LDS, &[], &["l1"])]);
    delta_ack_all(&mut s, &out);
    assert!(
        s.on_snapshot(removed).responses.is_empty(),
        "a deletion is reported once"
    );
}

#[test]
fn rule_07_delta_reports_missing_subscribed_name() {
    let mut s = DeltaStream::new(base(), "test", name_sets());
    let out = s
        .on_request(&delta_req(EDS, &["a", "missing"], &[], ""))
        .unwrap();
    assert_eq!(delta_summary(&out), vec![d(EDS, &["a"], &["missing"])]);
    delta_ack_all(&mut s, &out);
    // Reported once: an unrelated change does not repeat it.
    let out = s.on_snapshot(snapshot(&[(EDS, &[("a", "2"), ("b", "1")])]));
    assert_eq!(delta_summary(&out), vec![d(EDS, &["a"], &[])]);
    // Also for a name subscribed later on the stream.
    let resp = out.responses[0].clone();
    let out = s
        .on_request(&delta_req(EDS, &["other"], &[], &resp.nonce))
        .unwrap();
    assert_eq!(delta_summary(&out), vec![d(EDS, &[], &["other"])]);
}

// ---------------------------------------------------------------------------
// Rule 8: wildcards.
// ---------------------------------------------------------------------------

#[test]
fn rule_08_sotw_star_means_all() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    let resp = sotw_subscribe(&mut s, CDS, &["*"]);
    assert_eq!(sotw_names(&resp), strings(&["a", "b", "c"]));
    assert_eq!(s.subscriptions(CDS), (true, vec![]));
    // New clusters follow.
    let out = s.on_snapshot(snapshot(&[(
        CDS,
        &[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")],
    )]));
    assert_eq!(
        sotw_summary(&out),
        vec![(CDS, strings(&["a", "b", "c", "d"]))]
    );
}

#[test]
fn rule_08_sotw_legacy_empty_first_request_means_all() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    let resp = sotw_subscribe(&mut s, LDS, &[]);
    assert_eq!(sotw_names(&resp), strings(&["l1", "l2"]));
    assert_eq!(s.subscriptions(LDS), (true, vec![]));
    // The empty ACKs that follow keep the wildcard.
    let out = s.on_snapshot(snapshot(&[(LDS, &[("l1", "1"), ("l2", "1"), ("l3", "1")])]));
    assert_eq!(
        sotw_summary(&out),
        vec![(LDS, strings(&["l1", "l2", "l3"]))]
    );
    let ack = s.on_request(&sotw_ack(&out.responses[0], &[])).unwrap();
    assert!(ack.responses.is_empty());
    assert_eq!(s.subscriptions(LDS), (true, vec![]));
}

#[test]
fn rule_08_sotw_wildcard_is_only_for_cds_and_lds() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    let out = s.on_request(&sotw_req(EDS, &[], "", "")).unwrap();
    assert!(
        out.responses.is_empty(),
        "an empty EDS request asks for nothing"
    );
    assert_eq!(s.subscriptions(EDS), (false, vec![]));
    let out = s.on_request(&sotw_req(RDS, &["*"], "", "")).unwrap();
    assert!(out.responses.is_empty());
    assert_eq!(s.subscriptions(RDS), (false, vec![]));
}

#[test]
fn rule_08_sotw_legacy_wildcard_ends_when_a_name_is_subscribed() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    let resp = sotw_subscribe(&mut s, CDS, &[]);
    assert_eq!(sotw_names(&resp), strings(&["a", "b", "c"]));
    // Naming `a` ends the legacy wildcard: the full set is now just `a`.
    let out = s
        .on_request(&sotw_req(CDS, &["a"], &resp.version_info, &resp.nonce))
        .unwrap();
    assert_eq!(sotw_summary(&out), vec![(CDS, strings(&["a"]))]);
    assert_eq!(s.subscriptions(CDS), (false, strings(&["a"])));
    let resp = out.responses[0].clone();
    s.on_request(&sotw_ack(&resp, &["a"])).unwrap();
    // New clusters are no longer sent.
    let out = s.on_snapshot(snapshot(&[(
        CDS,
        &[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")],
    )]));
    assert!(out.responses.is_empty());
    // An empty list now unsubscribes from everything; it is not a wildcard.
    let out = s
        .on_request(&sotw_req(CDS, &[], &resp.version_info, &resp.nonce))
        .unwrap();
    assert!(out.responses.is_empty());
    assert_eq!(s.subscriptions(CDS), (false, vec![]));
    let out = s.on_snapshot(snapshot(&[(CDS, &[("a", "2"), ("e", "1")])]));
    assert!(out.responses.is_empty());
}

#[test]
fn rule_08_sotw_empty_list_after_explicit_star_unsubscribes() {
    // xds_protocol.rst: once the client subscribed to any name, `*` included,
    // clearing the list is an unsubscription, not the legacy wildcard.
    let mut s = SotwStream::new(base(), "test", name_sets());
    let resp = sotw_subscribe(&mut s, CDS, &["*"]);
    let out = s
        .on_request(&sotw_req(CDS, &[], &resp.version_info, &resp.nonce))
        .unwrap();
    assert!(out.responses.is_empty());
    assert_eq!(s.subscriptions(CDS), (false, vec![]));
    let out = s.on_snapshot(snapshot(&[(CDS, &[("a", "2"), ("d", "1")])]));
    assert!(out.responses.is_empty(), "sent {:?}", sotw_summary(&out));
}

#[test]
fn rule_08_sotw_star_and_names_together() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    let resp = sotw_subscribe(&mut s, CDS, &["*", "a"]);
    assert_eq!(sotw_names(&resp), strings(&["a", "b", "c"]));
    // Dropping `a` while `*` still covers it: the client keeps it, nothing to send,
    // and later changes to it still arrive.
    let out = s
        .on_request(&sotw_req(CDS, &["*"], &resp.version_info, &resp.nonce))
        .unwrap();
    assert!(out.responses.is_empty());
    assert_eq!(s.subscriptions(CDS), (true, vec![]));
    let out = s.on_snapshot(snapshot(&[(CDS, &[("a", "2"), ("b", "1"), ("c", "1")])]));
    assert_eq!(
        sotw_entries(&out.responses[0]),
        pairs(&[("a", "2"), ("b", "1"), ("c", "1")])
    );
}

#[test]
fn rule_08_delta_star_means_all() {
    let mut s = DeltaStream::new(base(), "test", name_sets());
    let resp = delta_subscribe(&mut s, CDS, &["*"]);
    assert_eq!(delta_read(&resp), d(CDS, &["a", "b", "c"], &[]));
    let out = s.on_snapshot(snapshot(&[(
        CDS,
        &[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")],
    )]));
    assert_eq!(delta_summary(&out), vec![d(CDS, &["d"], &[])]);
}

#[test]
fn rule_08_delta_legacy_empty_first_request_means_all() {
    let mut s = DeltaStream::new(base(), "test", name_sets());
    let resp = delta_subscribe(&mut s, LDS, &[]);
    assert_eq!(delta_read(&resp), d(LDS, &["l1", "l2"], &[]));
    let out = s.on_snapshot(snapshot(&[(LDS, &[("l2", "1"), ("l3", "1")])]));
    assert_eq!(
        delta_summary(&out),
        vec![d(LDS, &["l3"], &[]), d(LDS, &[], &["l1"])]
    );
    // Not for EDS/RDS: an empty first EDS request asks for nothing.
    let out = s.on_request(&delta_req(EDS, &[], &[], "")).unwrap();
    assert!(out
        .responses
        .iter()
        .all(|r| r.resources.is_empty() && r.removed_resources.is_empty()));
    let out = s.on_snapshot(snapshot(&[
        (LDS, &[("l2", "1"), ("l3", "1")]),
        (EDS, &[("a", "9")]),
    ]));
    assert!(out.responses.is_empty());
}

#[test]
fn rule_08_delta_legacy_wildcard_semantics_end_when_a_name_is_subscribed() {
    // The incremental example of xds_protocol.rst, step by step.
    let mut s = DeltaStream::new(base(), "test", name_sets());
    // 1. Empty subscribe: `*`.
    let resp = delta_subscribe(&mut s, CDS, &[]);
    assert_eq!(delta_read(&resp), d(CDS, &["a", "b", "c"], &[]));
    // 2. Subscribe `x`: continues `*` and adds `x` (which does not exist yet).
    let out = s
        .on_request(&delta_req(CDS, &["x"], &[], &resp.nonce))
        .unwrap();
    assert_eq!(delta_summary(&out), vec![d(CDS, &[], &["x"])]);
    delta_ack_all(&mut s, &out);
    let out = s.on_snapshot(snapshot(&[(
        CDS,
        &[("a", "1"), ("b", "2"), ("c", "1"), ("x", "1")],
    )]));
    assert_eq!(
        delta_summary(&out),
        vec![d(CDS, &["b", "x"], &[])],
        "`*` still applies"
    );
    let resp = out.responses[0].clone();
    delta_ack_all(&mut s, &out);
    // 3. Unsubscribe `*`: only `x` remains.
    let out = s
        .on_request(&delta_req(CDS, &[], &["*"], &resp.nonce))
        .unwrap();
    assert!(out.responses.is_empty());
    let out = s.on_snapshot(snapshot(&[(
        CDS,
        &[("a", "2"), ("b", "2"), ("c", "1"), ("x", "2")],
    )]));
    assert_eq!(delta_summary(&out), vec![d(CDS, &["x"], &[])]);
    let resp = out.responses[0].clone();
    delta_ack_all(&mut s, &out);
    // 4. Unsubscribe `x`: nothing at all, and not a wildcard again.
    let out = s
        .on_request(&delta_req(CDS, &[], &["x"], &resp.nonce))
        .unwrap();
    assert!(out.responses.is_empty());
    let out = s.on_snapshot(snapshot(&[(CDS, &[("a", "3"), ("x", "3"), ("y", "1")])]));
    assert!(out.responses.is_empty(), "sent {:?}", delta_summary(&out));
}

#[test]
fn rule_08_delta_unsubscribing_name_covered_by_star_is_answered() {
    let mut s = DeltaStream::new(base(), "test", name_sets());
    let resp = delta_subscribe(&mut s, CDS, &["*", "a"]);
    assert_eq!(delta_read(&resp), d(CDS, &["a", "b", "c"], &[]));
    // Unsubscribing `a`, still covered by `*`: the server answers with `a`.
    let out = s
        .on_request(&delta_req(CDS, &[], &["a"], &resp.nonce))
        .unwrap();
    assert_eq!(delta_summary(&out), vec![d(CDS, &["a"], &[])]);
    assert_eq!(delta_tags(&out.responses[0]), pairs(&[("a", "1")]));
}

#[test]
fn rule_08_delta_unsubscribing_name_not_covered_is_not_answered() {
    let mut s = DeltaStream::new(base(), "test", name_sets());
    let resp = delta_subscribe(&mut s, EDS, &["a", "b"]);
    let out = s
        .on_request(&delta_req(EDS, &[], &["a"], &resp.nonce))
        .unwrap();
    assert!(out.responses.is_empty());
    // Nor are later changes to `a`, including its deletion.
    let out = s.on_snapshot(snapshot(&[(EDS, &[("a", "2"), ("b", "1")])]));
    assert!(out.responses.is_empty());
    let out = s.on_snapshot(snapshot(&[(EDS, &[("b", "1")])]));
    assert!(out.responses.is_empty());
}

// ---------------------------------------------------------------------------
// Rule 9: a newly (re)subscribed name is always sent.
// ---------------------------------------------------------------------------

#[test]
fn rule_09_sotw_resubscribed_name_is_always_sent() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    let resp = sotw_subscribe(&mut s, EDS, &["a", "b"]);
    // Drop `a`, then ask again: `a` is sent although it did not change.
    let out = s
        .on_request(&sotw_req(EDS, &["b"], &resp.version_info, &resp.nonce))
        .unwrap();
    assert!(out.responses.is_empty());
    let out = s
        .on_request(&sotw_req(EDS, &["a", "b"], &resp.version_info, &resp.nonce))
        .unwrap();
    assert_eq!(sotw_summary(&out), vec![(EDS, strings(&["a"]))]);
    assert_eq!(sotw_entries(&out.responses[0]), pairs(&[("a", "1")]));
}

#[test]
fn rule_09_sotw_added_name_on_full_set_type_resends_the_set() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    let resp = sotw_subscribe(&mut s, LDS, &["l1"]);
    let out = s
        .on_request(&sotw_req(
            LDS,
            &["l1", "l2"],
            &resp.version_info,
            &resp.nonce,
        ))
        .unwrap();
    assert_eq!(sotw_summary(&out), vec![(LDS, strings(&["l1", "l2"]))]);
    // Named to wildcard: everything again.
    let resp = sotw_subscribe(&mut s, CDS, &["a"]);
    assert_eq!(sotw_names(&resp), strings(&["a"]));
    let out = s
        .on_request(&sotw_req(CDS, &["*", "a"], &resp.version_info, &resp.nonce))
        .unwrap();
    assert_eq!(sotw_summary(&out), vec![(CDS, strings(&["a", "b", "c"]))]);
}

#[test]
fn rule_09_delta_resubscribed_name_is_always_sent() {
    let mut s = DeltaStream::new(base(), "test", name_sets());
    let resp = delta_subscribe(&mut s, EDS, &["a", "b"]);
    // Subscribing again to a name the server believes the client holds.
    let out = s
        .on_request(&delta_req(EDS, &["a"], &[], &resp.nonce))
        .unwrap();
    assert_eq!(delta_summary(&out), vec![d(EDS, &["a"], &[])]);
    let resp = out.responses[0].clone();
    delta_ack_all(&mut s, &out);
    // Unsubscribe then subscribe again.
    let out = s
        .on_request(&delta_req(EDS, &[], &["b"], &resp.nonce))
        .unwrap();
    assert!(out.responses.is_empty());
    let out = s
        .on_request(&delta_req(EDS, &["b"], &[], &resp.nonce))
        .unwrap();
    assert_eq!(delta_summary(&out), vec![d(EDS, &["b"], &[])]);
    // Re-subscribing to a name that does not exist repeats that it does not.
    let out = s.on_request(&delta_req(EDS, &["nope"], &[], "")).unwrap();
    assert_eq!(delta_summary(&out), vec![d(EDS, &[], &["nope"])]);
    let out = s.on_request(&delta_req(EDS, &["nope"], &[], "")).unwrap();
    assert_eq!(delta_summary(&out), vec![d(EDS, &[], &["nope"])]);
}

#[test]
fn streams_taking_the_same_subscription_steps_each_get_the_current_resources() {
    // Proxies of one view subscribe in the same steps; where the names of a
    // step sit is shared between them, and must follow the snapshot.
    let steps = |snap: &Arc<Snapshot>| {
        let mut s = DeltaStream::new(snap.clone(), "test", name_sets());
        let resp = delta_subscribe(&mut s, EDS, &["a"]);
        let out = s
            .on_request(&delta_req(EDS, &["nope", "b"], &[], &resp.nonce))
            .unwrap();
        (delta_summary(&out), delta_tags(&out.responses[0]))
    };
    let first = base();
    let (summary, tags) = steps(&first);
    assert_eq!(summary, vec![d(EDS, &["b"], &["nope"])]);
    assert_eq!(tags, pairs(&[("b", "1")]));
    assert_eq!(steps(&first), (summary, tags));
    // The same steps on a snapshot where "b" changed and "nope" exists.
    let later = snapshot(&[(EDS, &[("a", "1"), ("b", "changed"), ("nope", "1")])]);
    let (summary, later_tags) = steps(&later);
    assert_eq!(summary, vec![d(EDS, &["b", "nope"], &[])]);
    assert_eq!(later_tags, pairs(&[("b", "changed"), ("nope", "1")]));
}

#[test]
fn a_wildcard_client_holding_nothing_that_names_a_resource_gets_the_whole_set() {
    // Having rejected its first response, the client holds nothing, and
    // wants everything as well as the name: only naming "a" would leave
    // out "b" and "c".
    let mut s = DeltaStream::new(base(), "test", name_sets());
    let out = s.on_request(&delta_req(CDS, &[], &[], "")).unwrap();
    assert_eq!(delta_summary(&out), vec![d(CDS, &["a", "b", "c"], &[])]);
    let nonce = out.responses[0].nonce.clone();
    s.on_request(&delta_nack(CDS, &nonce, "rejected")).unwrap();
    let out = s.on_request(&delta_req(CDS, &["a"], &[], &nonce)).unwrap();
    assert_eq!(delta_summary(&out), vec![d(CDS, &["a", "b", "c"], &[])]);
}

// ---------------------------------------------------------------------------
// Rule 10: never the same name twice in one response. (Every helper that reads
// a response also asserts this.)
// ---------------------------------------------------------------------------

#[test]
fn rule_10_sotw_no_duplicate_names() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    let out = s
        .on_request(&sotw_req(CDS, &["a", "*", "a"], "", ""))
        .unwrap();
    assert_eq!(sotw_summary(&out), vec![(CDS, strings(&["a", "b", "c"]))]);
    let out = s
        .on_request(&sotw_req(EDS, &["a", "a", "b"], "", ""))
        .unwrap();
    assert_eq!(sotw_summary(&out), vec![(EDS, strings(&["a", "b"]))]);
    // A removed cluster kept for make-before-break is not listed twice either.
    let out = s.on_snapshot(snapshot(&[
        (CDS, &[("b", "2"), ("c", "1")]),
        (EDS, &[("b", "1")]),
    ]));
    assert_eq!(
        sotw_summary(&out),
        vec![
            (CDS, strings(&["b", "c", "a"])),
            (EDS, strings(&["b"])),
            (CDS, strings(&["b", "c"]))
        ]
    );
}

#[test]
fn rule_10_delta_no_duplicate_names() {
    let mut s = DeltaStream::new(base(), "test", name_sets());
    let out = s
        .on_request(&delta_req(CDS, &["a", "*", "a"], &[], ""))
        .unwrap();
    assert_eq!(delta_summary(&out), vec![d(CDS, &["a", "b", "c"], &[])]);
    let out = s
        .on_request(&delta_req(EDS, &["a", "a", "gone", "gone"], &[], ""))
        .unwrap();
    assert_eq!(delta_summary(&out), vec![d(EDS, &["a"], &["gone"])]);
    // Subscribing and unsubscribing the same covered name at once.
    let out = s.on_request(&delta_req(CDS, &["b"], &["b"], "")).unwrap();
    assert_eq!(delta_summary(&out), vec![d(CDS, &["b"], &[])]);
}

// ---------------------------------------------------------------------------
// Rule 11: names requested before they exist are sent when they appear.
// ---------------------------------------------------------------------------

#[test]
fn rule_11_sotw_sends_a_name_requested_before_it_exists() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    let out = s
        .on_request(&sotw_req(EDS, &["a", "later"], "", ""))
        .unwrap();
    assert_eq!(sotw_summary(&out), vec![(EDS, strings(&["a"]))]);
    s.on_request(&sotw_ack(&out.responses[0], &["a", "later"]))
        .unwrap();
    // Only names that do not exist: nothing to send yet.
    let out = s.on_request(&sotw_req(RDS, &["r-later"], "", "")).unwrap();
    assert!(out.responses.is_empty());
    // A full-set type is answered at once, even when empty.
    let out = s.on_request(&sotw_req(LDS, &["l-later"], "", "")).unwrap();
    assert_eq!(sotw_summary(&out), vec![(LDS, vec![])]);
    s.on_request(&sotw_ack(&out.responses[0], &["l-later"]))
        .unwrap();

    let out = s.on_snapshot(snapshot(&[
        (CDS, &[("a", "1"), ("b", "1"), ("c", "1")]),
        (EDS, &[("a", "1"), ("b", "1"), ("c", "1"), ("later", "1")]),
        (LDS, &[("l1", "1"), ("l2", "1"), ("l-later", "1")]),
        (RDS, &[("r1", "1"), ("r2", "1"), ("r-later", "1")]),
    ]));
    assert_eq!(
        sotw_summary(&out),
        vec![
            (EDS, strings(&["later"])),
            (LDS, strings(&["l-later"])),
            (RDS, strings(&["r-later"])),
        ]
    );
}

#[test]
fn rule_11_delta_sends_a_name_requested_before_it_exists() {
    let mut s = DeltaStream::new(base(), "test", name_sets());
    let out = s.on_request(&delta_req(EDS, &["later"], &[], "")).unwrap();
    assert_eq!(delta_summary(&out), vec![d(EDS, &[], &["later"])]);
    delta_ack_all(&mut s, &out);
    let out = s.on_snapshot(snapshot(&[(EDS, &[("a", "1"), ("later", "1")])]));
    assert_eq!(delta_summary(&out), vec![d(EDS, &["later"], &[])]);
    delta_ack_all(&mut s, &out);
    // Gone again: reported removed, and sent once more when it comes back.
    let out = s.on_snapshot(snapshot(&[(EDS, &[("a", "1")])]));
    assert_eq!(delta_summary(&out), vec![d(EDS, &[], &["later"])]);
    let out = s.on_snapshot(snapshot(&[(EDS, &[("a", "1"), ("later", "1")])]));
    assert_eq!(delta_summary(&out), vec![d(EDS, &["later"], &[])]);
}

// ---------------------------------------------------------------------------
// Rule 12: a changed cluster warms until it gets its ClusterLoadAssignment.
// ---------------------------------------------------------------------------

#[test]
fn rule_12_sotw_new_listener_gets_its_routes_after_it() {
    let (mut s, names) = sotw_steady(base());
    let out = s.on_snapshot(snapshot(&[
        (CDS, &[("a", "1"), ("b", "1"), ("c", "1")]),
        (EDS, &[("a", "1"), ("b", "1"), ("c", "1")]),
        (LDS, &[("l1", "1"), ("l2", "1"), ("l3", "1")]),
        (RDS, &[("r1", "1"), ("r2", "1"), ("r3", "1")]),
    ]));
    assert_eq!(
        sotw_summary(&out),
        vec![(LDS, strings(&["l1", "l2", "l3"]))]
    );
    sotw_ack_all(&mut s, &out, &names);
    // The warming listener asks for its route configuration; it is sent at once.
    let rds = s
        .on_request(&sotw_req(RDS, &["r1", "r2", "r3"], "", ""))
        .unwrap();
    assert_eq!(sotw_summary(&rds), vec![(RDS, strings(&["r3"]))]);
}

// ---------------------------------------------------------------------------
// Rule 13: make-before-break: CDS, EDS, LDS, RDS; removals last.
// ---------------------------------------------------------------------------

/// Before: clusters a, old; listeners l, lold; routes r, rold.
/// After: a and l and r changed, `new` cluster and `lnew` listener added,
/// `old`/`lold`/`rold` removed.
fn mbb_before() -> Arc<Snapshot> {
    snapshot(&[
        (CDS, &[("a", "1"), ("old", "1")]),
        (EDS, &[("a", "1"), ("old", "1")]),
        (LDS, &[("l", "1"), ("lold", "1")]),
        (RDS, &[("r", "1"), ("rold", "1")]),
    ])
}

fn mbb_after() -> Arc<Snapshot> {
    snapshot(&[
        (CDS, &[("a", "2"), ("new", "1")]),
        (EDS, &[("a", "2"), ("new", "1")]),
        (LDS, &[("l", "2"), ("lnew", "1")]),
        (RDS, &[("r", "2")]),
    ])
}

/// The base snapshot with `zz` and `rz` added: nobody subscribed to them.
fn unwatched() -> Arc<Snapshot> {
    snapshot(&[
        (CDS, &[("a", "1"), ("b", "1"), ("c", "1")]),
        (EDS, &[("a", "1"), ("b", "1"), ("c", "1"), ("zz", "9")]),
        (LDS, &[("l1", "1"), ("l2", "1")]),
        (RDS, &[("r1", "1"), ("r2", "1"), ("rz", "9")]),
    ])
}

/// The base snapshot with assignment `b` changed.
fn assignment_b_changed() -> Arc<Snapshot> {
    base_with(&[(EDS, "b", "2")])
}

/// The base snapshot with cluster `a` changed, and its assignment not.
fn cluster_a_changed() -> Arc<Snapshot> {
    base_with(&[(CDS, "a", "2")])
}

/// Responses as the tables below write them: type, `(name, tag)` of each
/// resource sent, names removed.
type Sent = (ResourceType, Vec<(String, String)>, Vec<String>);

fn tagged(ty: ResourceType, entries: &[(&str, &str)], removed: &[&str]) -> Sent {
    (ty, pairs(entries), strings(removed))
}

/// A stream of each protocol, steady on `from` (`Stream::steady`), is sent
/// `to`; each protocol must send exactly its list, in that order.
struct SteadyChange {
    rule: &'static str,
    from: fn() -> Arc<Snapshot>,
    to: fn() -> Arc<Snapshot>,
    sotw: Vec<Sent>,
    delta: Vec<Sent>,
}

fn steady_changes() -> Vec<SteadyChange> {
    vec![
        SteadyChange {
            rule: "5: a snapshot equal in content sends nothing",
            from: base,
            to: base,
            sotw: vec![],
            delta: vec![],
        },
        SteadyChange {
            rule: "5: a change only to resources nobody subscribed to sends nothing",
            from: base,
            to: unwatched,
            sotw: vec![],
            delta: vec![],
        },
        SteadyChange {
            rule: "5: one assignment changes: one EDS response, with that assignment only",
            from: base,
            to: assignment_b_changed,
            sotw: vec![tagged(EDS, &[("b", "2")], &[])],
            delta: vec![tagged(EDS, &[("b", "2")], &[])],
        },
        SteadyChange {
            rule: "12: a changed cluster gets its assignment again, unchanged",
            from: base,
            to: cluster_a_changed,
            // SotW CDS carries the whole set (rule 6).
            sotw: vec![
                tagged(CDS, &[("a", "2"), ("b", "1"), ("c", "1")], &[]),
                tagged(EDS, &[("a", "1")], &[]),
            ],
            delta: vec![
                tagged(CDS, &[("a", "2")], &[]),
                tagged(EDS, &[("a", "1")], &[]),
            ],
        },
        SteadyChange {
            rule: "13: make-before-break: CDS, EDS, LDS, RDS, then removals, dependents first",
            from: mbb_before,
            to: mbb_after,
            sotw: vec![
                // Additions and changes first, removed resources still
                // present at their old versions.
                tagged(CDS, &[("a", "2"), ("new", "1"), ("old", "1")], &[]),
                tagged(EDS, &[("a", "2")], &[]),
                tagged(LDS, &[("l", "2"), ("lnew", "1"), ("lold", "1")], &[]),
                tagged(RDS, &[("r", "2")], &[]),
                // Then the final sets: listeners, then clusters.
                tagged(LDS, &[("l", "2"), ("lnew", "1")], &[]),
                tagged(CDS, &[("a", "2"), ("new", "1")], &[]),
            ],
            delta: vec![
                tagged(CDS, &[("a", "2"), ("new", "1")], &[]),
                tagged(EDS, &[("a", "2")], &[]),
                tagged(LDS, &[("l", "2"), ("lnew", "1")], &[]),
                tagged(RDS, &[("r", "2")], &[]),
                tagged(RDS, &[], &["rold"]),
                tagged(LDS, &[], &["lold"]),
                tagged(EDS, &[], &["old"]),
                tagged(CDS, &[], &["old"]),
            ],
        },
    ]
}

#[test]
fn rules_05_12_13_steady_streams_are_sent_what_changed_in_order() {
    for case in steady_changes() {
        for protocol in PROTOCOLS {
            let why = format!("{protocol:?}, rule {}", case.rule);
            let mut s = Stream::steady(protocol, (case.from)());
            // A request repeating a subscription is only an ACK.
            assert_eq!(s.repeat_subscription(EDS), 0, "{why}");
            let got = s.snapshot((case.to)());
            let sent: Vec<Sent> = got
                .iter()
                .map(|g| (g.ty, g.entries.clone(), g.removed.clone()))
                .collect();
            let expected = match protocol {
                Protocol::Sotw => &case.sotw,
                Protocol::Delta => &case.delta,
            };
            assert_eq!(&sent, expected, "{why}");
            let nonces: BTreeSet<&String> = got.iter().map(|g| &g.nonce).collect();
            assert_eq!(nonces.len(), got.len(), "{why}: a nonce was reused");
            if protocol == Protocol::Sotw {
                // The last response of each type carries the new set's version.
                let to = (case.to)();
                for ty in [CDS, EDS, LDS, RDS] {
                    if let Some(last) = got.iter().rev().find(|g| g.ty == ty && ty.sotw_full_set())
                    {
                        assert_eq!(last.version, to.get(ty).version(), "{why}: {ty}");
                    }
                }
            }
            s.ack_all(&got);
            assert!(s.snapshot((case.to)()).is_empty(), "{why}: sent again");
        }
    }
}

// ---------------------------------------------------------------------------
// Rule 14: reconnects.
// ---------------------------------------------------------------------------

#[test]
fn rule_14_sotw_reconnect_with_current_version_skips_initial_send() {
    let snap = base();
    let mut old = SotwStream::new(snap.clone(), "test", name_sets());
    let cds = sotw_subscribe(&mut old, CDS, &[]);
    let eds = sotw_subscribe(&mut old, EDS, &["a", "b"]);

    // A new stream: the client sends the versions it has.
    let mut s = SotwStream::new(snap.clone(), "test", name_sets());
    let out = s
        .on_request(&sotw_req(CDS, &[], &cds.version_info, ""))
        .unwrap();
    assert!(out.responses.is_empty(), "the client has this version");
    // It counts as sent and applied, so the server can tell it is in sync.
    assert_eq!(
        out.events,
        vec![Event::Held {
            ty: CDS,
            version: cds.version_info.clone()
        }]
    );
    assert!(s.in_sync());
    let out = s
        .on_request(&sotw_req(EDS, &["a", "b"], &eds.version_info, ""))
        .unwrap();
    assert!(out.responses.is_empty());
    // An old version gets the current config.
    let out = s.on_request(&sotw_req(LDS, &[], "stale", "")).unwrap();
    assert_eq!(sotw_summary(&out), vec![(LDS, strings(&["l1", "l2"]))]);

    // The stream knows what the client holds: a change sends only what changed.
    let out = s.on_snapshot(snapshot(&[
        (CDS, &[("a", "1"), ("b", "1"), ("c", "1")]),
        (EDS, &[("a", "1"), ("b", "2"), ("c", "1")]),
        (LDS, &[("l1", "1"), ("l2", "1")]),
    ]));
    assert_eq!(sotw_summary(&out), vec![(EDS, strings(&["b"]))]);

    // A client asking for different names than its version covers gets them.
    let mut s = SotwStream::new(snap, "test", name_sets());
    let out = s
        .on_request(&sotw_req(EDS, &["a", "b", "c"], &eds.version_info, ""))
        .unwrap();
    assert_eq!(sotw_summary(&out), vec![(EDS, strings(&["a", "b", "c"]))]);
}

#[test]
fn rule_14_delta_reconnect_skips_resources_the_client_has() {
    let snap = base();
    let mut s = DeltaStream::new(snap.clone(), "test", name_sets());
    // Legacy wildcard CDS: has `a` at the current version, `b` at an old one,
    // and `gone`, which no longer exists; lacks `c`.
    let req = DeltaDiscoveryRequest {
        initial_resource_versions: [
            ("a".to_string(), version_of(&snap, CDS, "a")),
            ("b".to_string(), "old".to_string()),
            ("gone".to_string(), "x".to_string()),
        ]
        .into(),
        ..full_delta_req(CDS, &[], &[], "")
    };
    let out = s.on_request(&DeltaRequest::from(&req)).unwrap();
    assert_eq!(delta_summary(&out), vec![d(CDS, &["b", "c"], &["gone"])]);
    delta_ack_all(&mut s, &out);

    // Named EDS: has `a` and `b` current, subscribes `a`, `b`, `c`.
    let req = DeltaDiscoveryRequest {
        initial_resource_versions: [
            ("a".to_string(), version_of(&snap, EDS, "a")),
            ("b".to_string(), version_of(&snap, EDS, "b")),
        ]
        .into(),
        ..full_delta_req(EDS, &["a", "b", "c"], &[], "")
    };
    let out = s.on_request(&DeltaRequest::from(&req)).unwrap();
    assert_eq!(delta_summary(&out), vec![d(EDS, &["c"], &[])]);

    // Everything current: one empty response, then only real changes.
    let mut s = DeltaStream::new(snap.clone(), "test", name_sets());
    let req = DeltaDiscoveryRequest {
        initial_resource_versions: snap
            .get(LDS)
            .iter()
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect(),
        ..full_delta_req(LDS, &[], &[], "")
    };
    let out = s.on_request(&DeltaRequest::from(&req)).unwrap();
    assert_eq!(delta_summary(&out), vec![d(LDS, &[], &[])]);
    delta_ack_all(&mut s, &out);
    let out = s.on_snapshot(snapshot(&[(LDS, &[("l1", "1"), ("l2", "2")])]));
    assert_eq!(delta_summary(&out), vec![d(LDS, &["l2"], &[])]);
}

// ---------------------------------------------------------------------------
// Not one of docs/xds-rules.md: types shmesh does not serve end the stream.
// ---------------------------------------------------------------------------

#[test]
fn unknown_type_url_is_a_protocol_error() {
    let url = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
    let mut s = SotwStream::new(base(), "test", name_sets());
    let req = SotwRequest::from(&DiscoveryRequest {
        type_url: url.into(),
        ..Default::default()
    });
    assert_eq!(
        s.on_request(&req).unwrap_err(),
        ProtocolError::UnknownType(url.into())
    );
    let mut s = DeltaStream::new(base(), "test", name_sets());
    let req = DeltaDiscoveryRequest {
        type_url: url.into(),
        ..Default::default()
    };
    assert_eq!(
        s.on_request(&DeltaRequest::from(&req)).unwrap_err(),
        ProtocolError::UnknownType(url.into())
    );
}

// ---------------------------------------------------------------------------
// Rules together: what a NACK leaves behind.
// ---------------------------------------------------------------------------

#[test]
fn rule_13_sotw_make_before_break_holds_after_a_nack() {
    let mut s = SotwStream::new(mbb_before(), "test", name_sets());
    sotw_subscribe(&mut s, CDS, &[]);
    sotw_subscribe(&mut s, EDS, &["a", "old"]);
    sotw_subscribe(&mut s, LDS, &[]);
    sotw_subscribe(&mut s, RDS, &["r", "rold"]);
    let bad = snapshot(&[
        (CDS, &[("a", "bad"), ("old", "1")]),
        (EDS, &[("a", "1"), ("old", "1")]),
        (LDS, &[("l", "1"), ("lold", "1")]),
        (RDS, &[("r", "1"), ("rold", "1")]),
    ]);
    let out = s.on_snapshot(bad);
    assert_eq!(sotw_summary(&out)[0], (CDS, strings(&["a", "old"])));
    let cds = &out.responses[0];
    let rejected = s
        .on_request(&nack(CDS, &[], "v0", &cds.nonce, "a: bad"))
        .unwrap();
    assert!(rejected.responses.is_empty());
    // The client still holds `old`: removing it must wait until routes moved.
    let out = s.on_snapshot(mbb_after());
    let summary = sotw_summary(&out);
    assert_eq!(summary.first(), Some(&(CDS, strings(&["a", "new", "old"]))));
    assert_eq!(summary.last(), Some(&(CDS, strings(&["a", "new"]))));
}

#[test]
fn rule_12_sotw_changed_cluster_gets_assignment_while_eds_is_rejected() {
    let (mut s, _) = sotw_steady(base());
    let eds_bad = base_with(&[(EDS, "a", "bad")]);
    let out = s.on_snapshot(eds_bad);
    assert_eq!(sotw_summary(&out), vec![(EDS, strings(&["a"]))]);
    let eds = &out.responses[0];
    s.on_request(&nack(EDS, &["a", "b", "c"], "v0", &eds.nonce, "a: bad"))
        .unwrap();
    // Cluster `a` changes; its (still rejected) assignment must follow it.
    let cluster_changed = base_with(&[(CDS, "a", "2"), (EDS, "a", "bad")]);
    let out = s.on_snapshot(cluster_changed);
    assert_eq!(
        sotw_summary(&out),
        vec![(CDS, strings(&["a", "b", "c"])), (EDS, strings(&["a"]))]
    );
}

// ---------------------------------------------------------------------------
// In sync: every response ACKed, none rejected (rollout tracking).
// ---------------------------------------------------------------------------

#[test]
fn in_sync_after_every_ack_and_not_after_a_nack() {
    for protocol in PROTOCOLS {
        let mut s = Stream::new(protocol, base());
        assert!(!s.in_sync(), "{protocol:?}: nothing requested yet");
        let got = match &mut s {
            Stream::Sotw(stream, subscribed) => {
                subscribed.insert(CDS, Vec::new());
                let out = stream.on_request(&sotw_req(CDS, &[], "", "")).unwrap();
                Got::from_sotw(&out.responses[0])
            }
            Stream::Delta(stream) => {
                let out = stream.on_request(&delta_req(CDS, &[], &[], "")).unwrap();
                Got::from_delta(&out.responses[0])
            }
        };
        assert!(!s.in_sync(), "{protocol:?}: response not ACKed yet");
        s.ack_all(&[got]);
        assert!(s.in_sync(), "{protocol:?}");
        let got = s.snapshot(cluster_a_changed());
        assert!(!s.in_sync(), "{protocol:?}");
        s.nack(&got[0], "v");
        assert!(
            !s.in_sync(),
            "{protocol:?}: a rejected response is not applied"
        );
    }
}

#[test]
fn rule_09_delta_late_wildcard_sends_everything() {
    let mut s = DeltaStream::new(base(), "test", name_sets());
    let out = s.on_request(&delta_req(CDS, &["a"], &[], "")).unwrap();
    assert_eq!(delta_summary(&out), vec![d(CDS, &["a"], &[])]);
    s.on_request(&delta_ack(&out.responses[0])).unwrap();
    let out = s.on_request(&delta_req(CDS, &["*"], &[], "")).unwrap();
    assert_eq!(delta_summary(&out), vec![d(CDS, &["a", "b", "c"], &[])]);
}

#[test]
fn delta_large_sets_go_out_in_bounded_responses() {
    // 30 clusters of ~100 KB each: about 3 MB in all.
    let names: Vec<String> = (0..30).map(|i| format!("c{i:02}")).collect();
    let big = "x".repeat(100 * 1024);
    let items: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), big.as_str())).collect();
    let mut s = DeltaStream::new(snapshot(&[(CDS, &items)]), "test", name_sets());
    let out = s.on_request(&delta_req(CDS, &[], &[], "")).unwrap();
    assert!(
        out.responses.len() >= 3,
        "{} responses",
        out.responses.len()
    );
    let mut sent = Vec::new();
    for resp in &out.responses {
        let bytes = resp.resources.bytes();
        assert!(
            bytes <= delta::MAX_RESPONSE_BYTES,
            "a response of {bytes} resource bytes"
        );
        sent.extend(delta_tags(resp).into_iter().map(|(name, _)| name));
    }
    assert_eq!(sent, names, "every cluster exactly once, in order");
    s.on_request(&delta_ack(out.responses.last().unwrap()))
        .unwrap();
    assert!(s.in_sync());
}

// ---------------------------------------------------------------------------
// VHDS: the virtual hosts of the route configurations a client subscribes to.
// ---------------------------------------------------------------------------

fn with_vhosts(vhosts: &[(&str, &str)]) -> Arc<Snapshot> {
    snapshot(&[(RDS, &[("9080", "1"), ("8080", "1")]), (VHDS, vhosts)])
}

/// Envoy's VHDS watch: its first request names nothing.
fn vhds_start(s: &mut DeltaStream) -> WireDeltaDiscoveryResponse {
    delta_subscribe(s, VHDS, &[])
}

#[test]
fn vhds_sends_the_virtual_hosts_of_subscribed_route_configurations() {
    let snap = with_vhosts(&[("9080/a", "1"), ("9080/b", "1"), ("8080/c", "1")]);
    let mut s = DeltaStream::new(snap, "test", name_sets());
    delta_subscribe(&mut s, RDS, &["9080"]);
    let resp = vhds_start(&mut s);
    assert_eq!(delta_read(&resp), d(VHDS, &["9080/a", "9080/b"], &[]));

    // A change to one virtual host sends that one only; changes to route
    // configurations the client does not hold send nothing.
    let out = s.on_snapshot(with_vhosts(&[
        ("9080/a", "2"),
        ("9080/b", "1"),
        ("8080/c", "2"),
    ]));
    assert_eq!(delta_summary(&out), vec![d(VHDS, &["9080/a"], &[])]);
    delta_ack_all(&mut s, &out);

    // A removed virtual host is removed by its resource name.
    let out = s.on_snapshot(with_vhosts(&[("9080/a", "2"), ("8080/c", "2")]));
    assert_eq!(delta_summary(&out), vec![d(VHDS, &[], &["9080/b"])]);
    delta_ack_all(&mut s, &out);
    assert!(s.in_sync());
}

#[test]
fn vhds_a_newly_subscribed_route_configurations_hosts_follow_it() {
    let snap = with_vhosts(&[("9080/a", "1"), ("8080/c", "1")]);
    let mut s = DeltaStream::new(snap, "test", name_sets());
    delta_subscribe(&mut s, RDS, &["9080"]);
    vhds_start(&mut s);
    let out = s.on_request(&delta_req(RDS, &["8080"], &[], "")).unwrap();
    assert_eq!(
        delta_summary(&out),
        vec![d(RDS, &["8080"], &[]), d(VHDS, &["8080/c"], &[])],
        "the route configuration first, then its virtual hosts"
    );
    delta_ack_all(&mut s, &out);

    // Unsubscribed (Envoy dropped the route configuration and its VHDS
    // watch): its hosts are no longer sent; subscribed again, they are,
    // though the server had sent them before.
    let out = s.on_request(&delta_req(RDS, &[], &["8080"], "")).unwrap();
    assert!(out.responses.is_empty(), "{:?}", delta_summary(&out));
    let out = s.on_snapshot(with_vhosts(&[("9080/a", "1"), ("8080/c", "2")]));
    assert!(out.responses.is_empty(), "{:?}", delta_summary(&out));
    let out = s.on_request(&delta_req(RDS, &["8080"], &[], "")).unwrap();
    assert_eq!(
        delta_summary(&out),
        vec![d(RDS, &["8080"], &[]), d(VHDS, &["8080/c"], &[])]
    );
}

#[test]
fn vhds_a_route_configuration_without_virtual_hosts_is_still_answered() {
    let mut s = DeltaStream::new(with_vhosts(&[]), "test", name_sets());
    delta_subscribe(&mut s, RDS, &["9080"]);
    let resp = vhds_start(&mut s);
    assert_eq!(delta_read(&resp), d(VHDS, &[], &[]));
}

// ---------------------------------------------------------------------------
// Not one of docs/xds-rules.md: what a stream tells the debug views.
// ---------------------------------------------------------------------------

fn held_names(s: &SotwStream, ty: ResourceType) -> Vec<String> {
    let holding = &s.holdings()[ty.index()];
    holding
        .resources(s.snapshot().get(ty))
        .iter()
        .map(|r| r.name.clone())
        .collect()
}

#[test]
fn holdings_say_what_the_client_was_sent_and_whether_it_applied_it() {
    let mut s = SotwStream::new(base(), "test", name_sets());
    assert!(!s.holdings()[EDS.index()].requested);
    sotw_subscribe(&mut s, EDS, &["a", "c", "nope"]);
    let eds = &s.holdings()[EDS.index()];
    assert!(eds.requested && !eds.awaiting_ack && !eds.rejected);
    assert_eq!(held_names(&s, EDS), strings(&["a", "c"]));

    // A new version goes out: awaiting its ACK until the client rejects it,
    // after which it holds what it had.
    let changed = base_with(&[(EDS, "a", "2")]);
    let out = s.on_snapshot(changed.clone());
    assert_eq!(sotw_summary(&out), vec![(EDS, strings(&["a"]))]);
    assert!(s.holdings()[EDS.index()].awaiting_ack);
    let resp = &out.responses[0];
    let mut nack = DiscoveryRequest {
        type_url: EDS.type_url().to_string(),
        resource_names: strings(&["a", "c", "nope"]),
        version_info: "old".to_string(),
        response_nonce: resp.nonce.clone(),
        ..Default::default()
    };
    nack.error_detail = Some(Status {
        message: "bad".to_string(),
        ..Default::default()
    });
    s.on_request(&SotwRequest::from(&nack)).unwrap();
    let eds = &s.holdings()[EDS.index()];
    assert!(eds.rejected && !eds.awaiting_ack);
    let held = eds.resources(changed.get(EDS));
    assert_eq!(held[0].version, version_of(&base(), EDS, "a"));
}
