//! Discovery requests as they come off the wire.
//!
//! A SotW client repeats its whole subscription with every ACK: an Envoy in a
//! mesh of 1,000 services names all 4,000 of its assignments each time an
//! endpoint changes. A delta client names each of them once, but all while
//! it connects, a fleet at once. Decoded as `DiscoveryRequest` or
//! `DeltaDiscoveryRequest`, each name would be a string of its own,
//! allocated, copied and checked, and then mostly looked up and dropped.
//! Here the names stay slices of the received message (`MessageStream`
//! decodes from shared bytes), checked as UTF-8 when the stream reads them.
//! A `string` and a `bytes` field are encoded alike, so these are the same
//! messages on the wire.

use std::collections::HashMap;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::rpc::Status;
use prost::Message;

use super::ProtocolError;

/// `envoy.service.discovery.v3.DiscoveryRequest`, its resource names as
/// received. `resource_locators` (xDS-TP) is not read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SotwRequest {
    #[prost(string, tag = "1")]
    pub version_info: String,
    #[prost(message, optional, tag = "2")]
    pub node: Option<Node>,
    #[prost(bytes = "bytes", repeated, tag = "3")]
    resource_names: Vec<Bytes>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub response_nonce: String,
    #[prost(message, optional, tag = "6")]
    pub error_detail: Option<Status>,
}

impl SotwRequest {
    /// The names the request subscribes to, in the order sent.
    pub fn resource_names(&self) -> Result<Vec<&str>, ProtocolError> {
        utf8_names(&self.type_url, &self.resource_names)
    }
}

/// `envoy.service.discovery.v3.DeltaDiscoveryRequest`, its subscription
/// changes as received. `resource_locators_*` (xDS-TP) are not read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeltaRequest {
    #[prost(message, optional, tag = "1")]
    pub node: Option<Node>,
    #[prost(string, tag = "2")]
    pub type_url: String,
    #[prost(bytes = "bytes", repeated, tag = "3")]
    resource_names_subscribe: Vec<Bytes>,
    #[prost(bytes = "bytes", repeated, tag = "4")]
    resource_names_unsubscribe: Vec<Bytes>,
    #[prost(map = "string, string", tag = "5")]
    pub initial_resource_versions: HashMap<String, String>,
    #[prost(string, tag = "6")]
    pub response_nonce: String,
    #[prost(message, optional, tag = "7")]
    pub error_detail: Option<Status>,
}

impl DeltaRequest {
    /// The names the request subscribes to, in the order sent.
    pub fn subscribe(&self) -> Result<Vec<&str>, ProtocolError> {
        utf8_names(&self.type_url, &self.resource_names_subscribe)
    }

    /// The names the request unsubscribes from, in the order sent.
    pub fn unsubscribe(&self) -> Result<Vec<&str>, ProtocolError> {
        utf8_names(&self.type_url, &self.resource_names_unsubscribe)
    }
}

fn utf8_names<'a>(type_url: &str, names: &'a [Bytes]) -> Result<Vec<&'a str>, ProtocolError> {
    names
        .iter()
        .map(|n| {
            std::str::from_utf8(n).map_err(|_| ProtocolError::NameNotUtf8 {
                type_url: type_url.to_string(),
                name: String::from_utf8_lossy(n).into_owned(),
            })
        })
        .collect()
}

/// The request a client would send, read back from its encoding.
impl From<&DiscoveryRequest> for SotwRequest {
    fn from(full: &DiscoveryRequest) -> SotwRequest {
        SotwRequest::decode(Bytes::from(full.encode_to_vec()))
            .expect("a DiscoveryRequest's encoding decodes as one")
    }
}

/// The request a client would send, read back from its encoding.
impl From<&DeltaDiscoveryRequest> for DeltaRequest {
    fn from(full: &DeltaDiscoveryRequest) -> DeltaRequest {
        DeltaRequest::decode(Bytes::from(full.encode_to_vec()))
            .expect("a DeltaDiscoveryRequest's encoding decodes as one")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node {
            id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local".into(),
            ..Default::default()
        }
    }

    fn rejected() -> Status {
        Status {
            code: 3,
            message: "bad".into(),
            ..Default::default()
        }
    }

    #[test]
    fn reads_what_a_discovery_request_wrote_with_names_as_slices() {
        let full = DiscoveryRequest {
            version_info: "v1".into(),
            node: Some(node()),
            resource_names: vec!["outbound|80||a".into(), "outbound|80||b".into()],
            type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
            response_nonce: "7".into(),
            error_detail: Some(rejected()),
            ..Default::default()
        };
        let wire = Bytes::from(full.encode_to_vec());
        let lean = SotwRequest::decode(wire.clone()).unwrap();
        assert_eq!(lean.version_info, full.version_info);
        assert_eq!(lean.node, full.node);
        assert_eq!(lean.type_url, full.type_url);
        assert_eq!(lean.response_nonce, full.response_nonce);
        assert_eq!(lean.error_detail, full.error_detail);
        assert_eq!(
            lean.resource_names().unwrap(),
            ["outbound|80||a", "outbound|80||b"]
        );
        // Slices of the received message, not copies.
        let range = wire.as_ptr_range();
        assert!(lean
            .resource_names
            .iter()
            .all(|n| range.contains(&n.as_ptr())));
        assert_eq!(lean.encode_to_vec(), full.encode_to_vec());
        assert_eq!(SotwRequest::from(&full), lean);
    }

    #[test]
    fn reads_what_a_delta_discovery_request_wrote_with_names_as_slices() {
        let full = DeltaDiscoveryRequest {
            node: Some(node()),
            type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
            resource_names_subscribe: vec!["outbound|80||a".into(), "outbound|80||b".into()],
            resource_names_unsubscribe: vec!["outbound|80||c".into()],
            initial_resource_versions: [("outbound|80||a".to_string(), "v1".to_string())].into(),
            response_nonce: "7".into(),
            error_detail: Some(rejected()),
            ..Default::default()
        };
        let wire = Bytes::from(full.encode_to_vec());
        let lean = DeltaRequest::decode(wire.clone()).unwrap();
        assert_eq!(lean.node, full.node);
        assert_eq!(lean.type_url, full.type_url);
        assert_eq!(
            lean.initial_resource_versions,
            full.initial_resource_versions
        );
        assert_eq!(lean.response_nonce, full.response_nonce);
        assert_eq!(lean.error_detail, full.error_detail);
        assert_eq!(lean.subscribe().unwrap(), full.resource_names_subscribe);
        assert_eq!(lean.unsubscribe().unwrap(), full.resource_names_unsubscribe);
        let range = wire.as_ptr_range();
        assert!(lean
            .resource_names_subscribe
            .iter()
            .chain(&lean.resource_names_unsubscribe)
            .all(|n| range.contains(&n.as_ptr())));
        assert_eq!(lean.encode_to_vec(), full.encode_to_vec());
        assert_eq!(DeltaRequest::from(&full), lean);
    }

    #[test]
    fn a_name_that_is_not_utf8_is_refused() {
        let lean = SotwRequest {
            type_url: "t".into(),
            resource_names: vec![Bytes::from_static(b"ok"), Bytes::from_static(b"\xff\xfe")],
            ..Default::default()
        };
        assert_eq!(
            lean.resource_names().unwrap_err().to_string(),
            "resource name \"\u{fffd}\u{fffd}\" in a request for t is not UTF-8"
        );
        let delta = DeltaRequest {
            type_url: "t".into(),
            resource_names_unsubscribe: vec![Bytes::from_static(b"\xff")],
            ..Default::default()
        };
        assert!(delta.subscribe().unwrap().is_empty());
        assert!(delta.unsubscribe().is_err());
    }
}
