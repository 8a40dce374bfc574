//! Response messages as they go on the wire, holding resource bodies as shared
//! `Bytes`.
//!
//! envoy-types' `DiscoveryResponse` owns each resource as `Any { value: Vec<u8> }`,
//! which would copy every resource into every stream's response. These messages
//! have the same field numbers as `envoy.service.discovery.v3.DiscoveryResponse`,
//! `DeltaDiscoveryResponse` and `Resource`, so clients decode them as usual, but
//! they borrow the bodies encoded once in the cache.

use bytes::Bytes;

/// `google.protobuf.Any` with a shared body. The type URL is a string on the
/// wire; holding it as `Bytes` lets every resource point at one static copy.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireAny {
    #[prost(bytes = "bytes", tag = "1")]
    pub type_url: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `envoy.config.core.v3.ControlPlane`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireControlPlane {
    #[prost(string, tag = "1")]
    pub identifier: String,
}

/// `envoy.service.discovery.v3.DiscoveryResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireDiscoveryResponse {
    #[prost(string, tag = "1")]
    pub version_info: String,
    #[prost(message, repeated, tag = "2")]
    pub resources: Vec<WireAny>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub nonce: String,
    #[prost(message, optional, tag = "6")]
    pub control_plane: Option<WireControlPlane>,
}

/// `envoy.service.discovery.v3.Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireResource {
    /// A string on the wire, shared bytes here.
    #[prost(bytes = "bytes", tag = "1")]
    pub version: Bytes,
    #[prost(message, optional, tag = "2")]
    pub resource: Option<WireAny>,
    /// A string on the wire, shared bytes here.
    #[prost(bytes = "bytes", tag = "3")]
    pub name: Bytes,
}

/// `envoy.service.discovery.v3.DeltaDiscoveryResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireDeltaDiscoveryResponse {
    #[prost(string, tag = "1")]
    pub system_version_info: String,
    #[prost(message, repeated, tag = "2")]
    pub resources: Vec<WireResource>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub nonce: String,
    #[prost(string, repeated, tag = "6")]
    pub removed_resources: Vec<String>,
    #[prost(message, optional, tag = "7")]
    pub control_plane: Option<WireControlPlane>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3 as ds;
    use prost::Message;

    #[test]
    fn wire_response_decodes_as_envoy_types() {
        let wire = WireDiscoveryResponse {
            version_info: "v1".into(),
            resources: vec![WireAny {
                type_url: Bytes::from_static(b"t"),
                value: Bytes::from_static(b"\x0a\x01x"),
            }],
            type_url: "t".into(),
            nonce: "n".into(),
            control_plane: Some(WireControlPlane {
                identifier: "shmesh".into(),
            }),
        };
        let decoded = ds::DiscoveryResponse::decode(wire.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.version_info, "v1");
        assert_eq!(decoded.nonce, "n");
        assert_eq!(decoded.resources[0].value, b"\x0a\x01x");
        assert_eq!(decoded.resources[0].type_url, "t");
        assert_eq!(decoded.control_plane.unwrap().identifier, "shmesh");
    }

    #[test]
    fn wire_delta_decodes_as_envoy_types() {
        let wire = WireDeltaDiscoveryResponse {
            system_version_info: "s".into(),
            resources: vec![WireResource {
                version: Bytes::from_static(b"v"),
                name: Bytes::from_static(b"a"),
                resource: Some(WireAny {
                    type_url: Bytes::from_static(b"t"),
                    value: Bytes::from_static(b"xyz"),
                }),
            }],
            type_url: "t".into(),
            nonce: "1".into(),
            removed_resources: vec!["gone".into()],
            control_plane: None,
        };
        let decoded = ds::DeltaDiscoveryResponse::decode(wire.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.resources[0].name, "a");
        assert_eq!(
            decoded.resources[0].resource.as_ref().unwrap().value,
            b"xyz"
        );
        assert_eq!(decoded.removed_resources, vec!["gone".to_string()]);
    }
}
