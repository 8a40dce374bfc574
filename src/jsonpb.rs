//! Envoy resources as JSON, in protobuf's JSON mapping with Envoy's snake_case
//! field names, the way Envoy's own `/config_dump` prints them.
//!
//! The descriptors come from envoy-types' `.proto` sources, compiled by
//! `build.rs` with protox.

use std::sync::{Arc, OnceLock};

use envoy_types::pb::envoy::admin::v3 as admin;
use envoy_types::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

use shmesh_cache::{Resource, ResourceType, Snapshot};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // The descriptors are compiled into the binary from the protos it was
        // built with; failing to decode them is a build defect, not input.
        DescriptorPool::decode(DESCRIPTORS).expect("embedded Envoy descriptors decode")
    })
}

/// Why a message could not be printed as JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The message type is not among the descriptors `build.rs` compiled.
    #[error("no descriptor for {0}")]
    UnknownType(String),
    /// The bytes are not a valid encoding of the message.
    #[error("decoding {message}: {source}")]
    Decode {
        message: String,
        source: prost::DecodeError,
    },
    /// The message holds something protobuf's JSON mapping cannot print (an
    /// `Any` of an unknown type).
    #[error("printing {message}: {source}")]
    Print {
        message: String,
        source: serde_json::Error,
    },
}

/// Decodes `bytes` as the message `full_name` and prints it as JSON.
pub fn to_json(full_name: &str, bytes: &[u8]) -> Result<serde_json::Value, JsonError> {
    let desc = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownType(full_name.to_string()))?;
    let msg = DynamicMessage::decode(desc, bytes).map_err(|source| JsonError::Decode {
        message: full_name.to_string(),
        source,
    })?;
    let opts = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(true);
    msg.serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|source| JsonError::Print {
            message: full_name.to_string(),
            source,
        })
}

/// Prints any prost message that has a descriptor.
pub fn message_to_json<M: Message + prost::Name>(msg: &M) -> Result<serde_json::Value, JsonError> {
    to_json(&M::full_name(), &msg.encode_to_vec())
}

fn any(ty: ResourceType, body: &[u8]) -> Any {
    Any {
        type_url: ty.type_url().to_string(),
        value: body.to_vec(),
    }
}

/// The snapshot as an `envoy.admin.v3.ConfigDump`, the shape of Envoy's
/// `/config_dump`: what a proxy with this view receives.
pub fn config_dump(snapshot: &Snapshot) -> Result<serde_json::Value, JsonError> {
    let of = |ty: ResourceType| snapshot.get(ty).iter().cloned().collect::<Vec<_>>();
    config_dump_of(&std::array::from_fn(|i| of(ResourceType::ALL[i])))
}

/// Resources of every type (`ResourceType::ALL` order) as an
/// `envoy.admin.v3.ConfigDump`: clusters, endpoints, listeners, routes and
/// secrets. Secrets are printed as Envoy prints them, private keys
/// redacted: no key material ever leaves through a dump.
pub fn config_dump_of(
    resources: &[Vec<Arc<Resource>>; ResourceType::COUNT],
) -> Result<serde_json::Value, JsonError> {
    let of = |ty: ResourceType| resources[ty.index()].iter();
    let clusters = admin::ClustersConfigDump {
        dynamic_active_clusters: of(ResourceType::Cluster)
            .map(|r| admin::clusters_config_dump::DynamicCluster {
                version_info: r.version.clone(),
                cluster: Some(any(ResourceType::Cluster, &r.body)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let endpoints = admin::EndpointsConfigDump {
        dynamic_endpoint_configs: of(ResourceType::Endpoint)
            .map(|r| admin::endpoints_config_dump::DynamicEndpointConfig {
                version_info: r.version.clone(),
                endpoint_config: Some(any(ResourceType::Endpoint, &r.body)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let listeners = admin::ListenersConfigDump {
        dynamic_listeners: of(ResourceType::Listener)
            .map(|r| admin::listeners_config_dump::DynamicListener {
                name: r.name.clone(),
                active_state: Some(admin::listeners_config_dump::DynamicListenerState {
                    version_info: r.version.clone(),
                    listener: Some(any(ResourceType::Listener, &r.body)),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let routes = admin::RoutesConfigDump {
        dynamic_route_configs: of(ResourceType::Route)
            .map(|r| admin::routes_config_dump::DynamicRouteConfig {
                version_info: r.version.clone(),
                route_config: Some(any(ResourceType::Route, &r.body)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut configs = vec![
        shmesh_translate::any(&clusters),
        shmesh_translate::any(&endpoints),
        shmesh_translate::any(&listeners),
        shmesh_translate::any(&routes),
    ];
    let secrets = &resources[ResourceType::Secret.index()];
    if !secrets.is_empty() {
        let dump = admin::SecretsConfigDump {
            dynamic_active_secrets: secrets
                .iter()
                .map(|r| {
                    let secret = redacted(&r.body).map_err(|source| JsonError::Decode {
                        message: "envoy.extensions.transport_sockets.tls.v3.Secret".into(),
                        source,
                    })?;
                    Ok(admin::secrets_config_dump::DynamicSecret {
                        name: r.name.clone(),
                        version_info: r.version.clone(),
                        secret: Some(shmesh_translate::any(&secret)),
                        ..Default::default()
                    })
                })
                .collect::<Result<_, JsonError>>()?,
            ..Default::default()
        };
        configs.push(shmesh_translate::any(&dump));
    }
    message_to_json(&admin::ConfigDump { configs })
}

/// What Envoy's own dump puts where a secret's key material was.
const REDACTED: &str = "[redacted]";

/// The secret encoded in `body` with every private part replaced by
/// `[redacted]`, as Envoy's `/config_dump` shows secrets: certificates and
/// trusted roots are public, keys, passwords and generic secrets are not.
fn redacted(body: &[u8]) -> Result<Secret, prost::DecodeError> {
    let mut secret = Secret::decode(body)?;
    let hidden = || {
        Some(DataSource {
            specifier: Some(data_source::Specifier::InlineString(REDACTED.to_string())),
            ..Default::default()
        })
    };
    match &mut secret.r#type {
        Some(secret::Type::TlsCertificate(cert)) => {
            if cert.private_key.is_some() {
                cert.private_key = hidden();
            }
            if cert.password.is_some() {
                cert.password = hidden();
            }
            if cert.pkcs12.is_some() {
                cert.pkcs12 = hidden();
            }
        }
        Some(secret::Type::SessionTicketKeys(keys)) => {
            for key in &mut keys.keys {
                *key = DataSource {
                    specifier: Some(data_source::Specifier::InlineString(REDACTED.to_string())),
                    ..Default::default()
                };
            }
        }
        Some(secret::Type::GenericSecret(generic)) => {
            if generic.secret.is_some() {
                generic.secret = hidden();
            }
            for value in generic.secrets.values_mut() {
                *value = DataSource {
                    specifier: Some(data_source::Specifier::InlineString(REDACTED.to_string())),
                    ..Default::default()
                };
            }
        }
        Some(secret::Type::ValidationContext(_)) | None => {}
    }
    Ok(secret)
}
