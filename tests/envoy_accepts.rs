//! Envoy's own validation of what shmesh generates for every listener mode,
//! including transparent capture, whose `virtualOutbound` listener would bind
//! port 15001 (which tests may not assume free). `envoy --mode validate` checks
//! a configuration fully without binding anything, so the translated resources
//! are placed into a static bootstrap: RDS references become inline route
//! configurations and EDS clusters become static clusters with their
//! assignments.

mod common;

use envoy_types::pb::envoy::config::bootstrap::v3 as b;
use envoy_types::pb::envoy::config::cluster::v3::{self as c, cluster};
use envoy_types::pb::envoy::config::endpoint::v3 as e;
use envoy_types::pb::envoy::config::listener::v3 as l;
use envoy_types::pb::envoy::config::route::v3 as r;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use prost::{Message, Name};
use shmesh_api::parse::{parse_text, Outcome};
use shmesh_cache::{ResourceType, Snapshot};
use shmesh_model::{Change, Model};
use shmesh_translate::{any, build, ListenerMode, ProxyView};

fn bookinfo() -> Model {
    let mut model = Model::new();
    let mut changes = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir("examples/bookinfo")
        .expect("examples")
        .flatten()
        .map(|e| e.path())
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("read");
        for o in parse_text(&path.display().to_string(), &text) {
            if let Outcome::Object(p) = o {
                changes.push(Change::Upsert(p.key, p.object, p.origin));
            }
        }
    }
    model.apply(changes);
    model
}

fn decoded<M: Message + Default>(snap: &Snapshot, ty: ResourceType) -> Vec<M> {
    snap.get(ty)
        .iter()
        .map(|r| M::decode(r.body.as_ref()).expect("decode"))
        .collect()
}

fn inline_routes(
    mut hcm_cfg: hcm::HttpConnectionManager,
    routes: &[r::RouteConfiguration],
) -> hcm::HttpConnectionManager {
    if let Some(hcm::http_connection_manager::RouteSpecifier::Rds(rds)) = &hcm_cfg.route_specifier {
        let rc = routes
            .iter()
            .find(|rc| rc.name == rds.route_config_name)
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "listener refers to missing route configuration {}",
                    rds.route_config_name
                )
            });
        hcm_cfg.route_specifier = Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(
            rc,
        ));
    }
    hcm_cfg
}

/// The snapshot as a static bootstrap Envoy can validate.
fn static_bootstrap(snap: &Snapshot) -> b::Bootstrap {
    let routes: Vec<r::RouteConfiguration> = decoded(snap, ResourceType::Route);
    let assignments: Vec<e::ClusterLoadAssignment> = decoded(snap, ResourceType::Endpoint);
    let mut listeners: Vec<l::Listener> = decoded(snap, ResourceType::Listener);
    for listener in &mut listeners {
        for chain in &mut listener.filter_chains {
            for filter in &mut chain.filters {
                if let Some(l::filter::ConfigType::TypedConfig(cfg)) = &mut filter.config_type {
                    if cfg.type_url == hcm::HttpConnectionManager::type_url() {
                        let h =
                            hcm::HttpConnectionManager::decode(cfg.value.as_slice()).expect("hcm");
                        *cfg = any(&inline_routes(h, &routes));
                    }
                }
            }
        }
        if let Some(api) = &mut listener.api_listener {
            if let Some(cfg) = &mut api.api_listener {
                let h = hcm::HttpConnectionManager::decode(cfg.value.as_slice()).expect("hcm");
                *cfg = any(&inline_routes(h, &routes));
            }
        }
    }
    let mut clusters: Vec<c::Cluster> = decoded(snap, ResourceType::Cluster);
    for cl in &mut clusters {
        if let Some(eds) = cl.eds_cluster_config.take() {
            cl.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Static as i32,
            ));
            cl.load_assignment = assignments
                .iter()
                .find(|a| a.cluster_name == eds.service_name)
                .cloned();
            assert!(
                cl.load_assignment.is_some(),
                "no assignment for EDS cluster {}",
                cl.name
            );
        }
    }
    b::Bootstrap {
        node: Some(envoy_types::pb::envoy::config::core::v3::Node {
            id: "validate".into(),
            cluster: "validate".into(),
            ..Default::default()
        }),
        static_resources: Some(b::bootstrap::StaticResources {
            listeners,
            clusters,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn envoy_validates(mode: ListenerMode) {
    let snap = build(
        &bookinfo(),
        &ProxyView {
            namespace: "default".into(),
            mode: mode.clone(),
            vhds: false,
            labels: Default::default(),
            certificates: Default::default(),
        },
    );
    assert!(!snap.get(ResourceType::Listener).is_empty());
    let bootstrap = shmesh::jsonpb::message_to_json(&static_bootstrap(&snap)).expect("json");
    let text = serde_json::to_string_pretty(&bootstrap).expect("json");
    if let Err(e) = common::envoy_validate(&text) {
        panic!("Envoy rejected the {mode:?} configuration:\n{e}");
    }
}

#[test]
fn envoy_accepts_capture_mode() {
    envoy_validates(ListenerMode::Capture);
}

#[test]
fn envoy_accepts_explicit_mode() {
    envoy_validates(ListenerMode::Explicit(
        "127.0.0.1:15080".parse().expect("addr"),
    ));
}
