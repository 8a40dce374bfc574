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
    validate(static_bootstrap(&snap), &format!("{mode:?}"));
}

fn validate(bootstrap: b::Bootstrap, what: &str) {
    let bootstrap = shmesh::jsonpb::message_to_json(&bootstrap).expect("json");
    let text = serde_json::to_string_pretty(&bootstrap).expect("json");
    if let Err(e) = common::envoy_validate(&text) {
        panic!("Envoy rejected the {what} configuration:\n{e}");
    }
}

/// Every SDS secret a resource refers to, with the cluster it is fetched
/// from (`ads` over the ADS stream), found in the JSON form of `snap`.
fn secret_refs(snap: &Snapshot) -> std::collections::BTreeSet<(String, String)> {
    fn walk(v: &serde_json::Value, out: &mut std::collections::BTreeSet<(String, String)>) {
        match v {
            serde_json::Value::Object(map) => {
                if let (Some(name), Some(config)) = (map.get("name"), map.get("sds_config")) {
                    let source = config["api_config_source"]["grpc_services"][0]["envoy_grpc"]
                        ["cluster_name"]
                        .as_str()
                        .unwrap_or(if config.get("ads").is_some() {
                            "ads"
                        } else {
                            "?"
                        });
                    out.insert((name.as_str().unwrap_or("?").into(), source.into()));
                }
                map.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    for (ty, name) in [
        (ResourceType::Cluster, c::Cluster::full_name()),
        (ResourceType::Listener, l::Listener::full_name()),
    ] {
        for r in snap.get(ty).iter() {
            walk(
                &shmesh::jsonpb::to_json(&name, &r.body).expect("json"),
                &mut out,
            );
        }
    }
    out
}

/// A reviews-v1 sidecar's node, as an Istio agent announces it.
fn agent_node() -> envoy_types::pb::envoy::config::core::v3::Node {
    use envoy_types::pb::envoy::config::core::v3 as core;
    use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
    let string = |s: &str| Value {
        kind: Some(Kind::StringValue(s.into())),
    };
    let labels = Struct {
        fields: [
            ("app".to_string(), string("reviews")),
            ("version".to_string(), string("v1")),
        ]
        .into(),
    };
    core::Node {
        id: "sidecar~10.0.0.7~reviews-v1-abc.default~default.svc.cluster.local".into(),
        cluster: "reviews.default".into(),
        metadata: Some(Struct {
            fields: [
                ("ISTIO_VERSION".to_string(), string("1.24.0")),
                ("NAMESPACE".to_string(), string("default")),
                (
                    "LABELS".to_string(),
                    Value {
                        kind: Some(Kind::StructValue(labels)),
                    },
                ),
            ]
            .into(),
        }),
        ..Default::default()
    }
}

/// A sidecar whose Istio agent announces itself gets its certificates
/// from the agent: the secrets `default` and `ROOTCA` over the agent's
/// `sds-grpc` cluster, as istiod configures them; Envoy accepts that
/// config with an agent-style bootstrap (one that defines `sds-grpc`).
#[test]
fn envoy_accepts_a_sidecar_with_an_istio_agent() {
    let node = agent_node();
    let view = shmesh_translate::node::view_of(&node).expect("view");
    assert_eq!(
        view.certificates,
        shmesh_translate::tls::Certificates::Agent
    );
    let snap = build(&bookinfo(), &view);
    let refs = secret_refs(&snap);
    assert_eq!(
        refs,
        [
            ("ROOTCA".to_string(), "sds-grpc".to_string()),
            ("default".to_string(), "sds-grpc".to_string())
        ]
        .into()
    );
    // The inbound side terminates mutual TLS on reviews-v1's port (the
    // Service's named target port, as this workload's pods number it).
    let inbound: Vec<l::Listener> = decoded(&snap, ResourceType::Listener);
    let vi = inbound
        .iter()
        .find(|l| l.name == "virtualInbound")
        .expect("virtualInbound");
    assert!(vi
        .filter_chains
        .iter()
        .any(|fc| fc.name == "0.0.0.0_9081-mtls"));
    validate_with_agent(&snap, node, "Istio agent sidecar");
}

/// Every field of AuthorizationPolicy and RequestAuthentication shmesh
/// translates, on HTTP and TCP chains, with keys fetched from a mesh service
/// and from outside the mesh, on the ingress listeners of the workload's
/// Sidecar (to loopback, another port, a Unix socket): Envoy accepts it.
#[test]
fn envoy_accepts_authorization_jwt_and_sidecar_ingress() {
    let mut model = bookinfo();
    let policies = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: [/admin*, '*/debug'], notMethods: [GET], ports: ['9081']}}]
    when:
    - {key: 'request.headers[x-block]', values: ['*']}
    - {key: destination.port, values: ['9081']}
    - {key: connection.sni, notValues: ['*.internal']}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from:
    - source: {principals: [cluster.local/ns/default/sa/bookinfo-productpage, '*/sa/admin'], notNamespaces: [evil]}
    - source: {ipBlocks: [10.0.0.0/8], notRemoteIpBlocks: [192.168.0.1], requestPrincipals: ['https://issuer.example.com/*']}
    to: [{operation: {hosts: ['reviews*'], methods: [GET, POST]}}]
    when:
    - {key: 'request.auth.claims[groups]', values: [readers]}
    - {key: request.auth.audiences, values: [reviews]}
    - {key: source.namespace, values: [default]}
    - {key: destination.ip, values: [10.0.0.0/8]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: istio-system}
spec:
  action: AUDIT
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
  - issuer: https://issuer.example.com
    jwksUri: https://issuer.example.com/.well-known/jwks.json
    audiences: [reviews]
    forwardOriginalToken: true
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{header: x-group, claim: group}]
  - issuer: details
    jwksUri: http://details.default.svc.cluster.local:9080/jwks
    fromHeaders: [{name: x-jwt, prefix: 'Bearer '}]
    fromParams: [token]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:9081
  - port: {number: 9090, protocol: TCP, name: tcp}
    defaultEndpoint: 0.0.0.0:7070
  - port: {number: 9091, name: grpc}
    defaultEndpoint: unix:///var/run/reviews.sock
  egress:
  - hosts: ['./*', 'istio-system/*']
"#;
    let changes: Vec<Change> = parse_text("authz.yaml", policies)
        .into_iter()
        .map(|o| match o {
            Outcome::Object(p) => Change::Upsert(p.key, p.object, p.origin),
            other => panic!("not valid: {other:?}"),
        })
        .collect();
    assert_eq!(changes.len(), 5);
    model.apply(changes);
    let node = agent_node();
    let view = shmesh_translate::node::view_of(&node).expect("view");
    let snap = build(&model, &view);
    let listeners: Vec<l::Listener> = decoded(&snap, ResourceType::Listener);
    let vi = listeners
        .iter()
        .find(|l| l.name == "virtualInbound")
        .expect("virtualInbound");
    let filters =
        serde_json::to_string(&shmesh::jsonpb::message_to_json(vi).expect("json")).expect("text");
    for name in [
        "envoy.filters.http.rbac",
        "envoy.filters.network.rbac",
        "envoy.filters.http.jwt_authn",
    ] {
        assert!(filters.contains(name), "no {name} in virtualInbound");
    }
    for port in ["9080", "9090", "9091"] {
        assert!(
            vi.filter_chains
                .iter()
                .any(|fc| fc.name == format!("0.0.0.0_{port}-mtls")),
            "no chain for ingress port {port}"
        );
    }
    validate_with_agent(&snap, node, "authorization filters");
}

/// Validates `snap` in a static bootstrap with what an Istio agent's
/// bootstrap defines: its SDS server on a socket.
fn validate_with_agent(
    snap: &Snapshot,
    node: envoy_types::pb::envoy::config::core::v3::Node,
    what: &str,
) {
    use envoy_types::pb::envoy::config::core::v3 as core;
    let mut bootstrap = static_bootstrap(snap);
    // What an Istio agent's bootstrap defines: its SDS server on a socket.
    let sds = c::Cluster {
        name: "sds-grpc".into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(e::ClusterLoadAssignment {
            cluster_name: "sds-grpc".into(),
            endpoints: vec![e::LocalityLbEndpoints {
                lb_endpoints: vec![e::LbEndpoint {
                    host_identifier: Some(e::lb_endpoint::HostIdentifier::Endpoint(e::Endpoint {
                        address: Some(core::Address {
                            address: Some(core::address::Address::Pipe(core::Pipe {
                                path: "./var/run/secrets/workload-spiffe-uds/socket".into(),
                                ..Default::default()
                            })),
                        }),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        typed_extension_protocol_options: [(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            any(&envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions {
                upstream_protocol_options: Some(
                    envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                        envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::ExplicitHttpConfig {
                            protocol_config: Some(
                                envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                                    core::Http2ProtocolOptions::default(),
                                ),
                            ),
                        },
                    ),
                ),
                ..Default::default()
            }),
        )]
        .into(),
        ..Default::default()
    };
    bootstrap
        .static_resources
        .as_mut()
        .expect("static resources")
        .clusters
        .push(sds);
    bootstrap.node = Some(node);
    validate(bootstrap, what);
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
