//! What a connecting node tells about itself: its namespace and how it wants
//! its outbound listeners (capture, explicit, proxyless).

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;

use crate::{ListenerMode, ProxyView};

/// Node metadata key asking for a bound outbound HTTP listener (`ADDR:PORT`).
pub const OUTBOUND_LISTENER_KEY: &str = "SHMESH_OUTBOUND_LISTENER";

fn metadata_str<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    let field = node.metadata.as_ref()?.fields.get(key)?;
    match field.kind.as_ref()? {
        Kind::StringValue(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Why a node's metadata names no view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// `SHMESH_OUTBOUND_LISTENER` is not an `ADDR:PORT`.
    #[error("node metadata {OUTBOUND_LISTENER_KEY}={value:?}: {reason}")]
    OutboundListener { value: String, reason: String },
}

/// The view of the mesh `node` receives.
///
/// The namespace comes from Istio's `NAMESPACE` metadata, else from an
/// Istio-style id (`sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local`), else
/// `default`. gRPC clients (their user agent, or `GENERATOR: grpc` as Istio's
/// agent sets it) get proxyless resources.
pub fn view_of(node: &Node) -> Result<ProxyView, NodeError> {
    let namespace = metadata_str(node, "NAMESPACE")
        .map(str::to_string)
        .or_else(|| {
            let parts: Vec<&str> = node.id.split('~').collect();
            (parts.len() == 4)
                .then(|| parts[2].split_once('.').map(|(_, ns)| ns.to_string()))
                .flatten()
        })
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let grpc = node
        .user_agent_name
        .to_ascii_lowercase()
        .starts_with("grpc")
        || metadata_str(node, "GENERATOR") == Some("grpc");
    let mode = if grpc {
        ListenerMode::Proxyless
    } else if let Some(addr) = metadata_str(node, OUTBOUND_LISTENER_KEY) {
        let addr = addr
            .parse::<SocketAddr>()
            .map_err(|e| NodeError::OutboundListener {
                value: addr.to_string(),
                reason: e.to_string(),
            })?;
        ListenerMode::Explicit(addr)
    } else {
        ListenerMode::Capture
    };
    Ok(ProxyView {
        namespace,
        mode,
        vhds: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::{Struct, Value};

    fn node(id: &str, meta: &[(&str, &str)], agent: &str) -> Node {
        Node {
            id: id.into(),
            user_agent_name: agent.into(),
            metadata: Some(Struct {
                fields: meta
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            Value {
                                kind: Some(Kind::StringValue(v.to_string())),
                            },
                        )
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn namespace_from_metadata_or_istio_id() {
        assert_eq!(
            view_of(&node("x", &[("NAMESPACE", "shop")], "envoy"))
                .unwrap()
                .namespace,
            "shop"
        );
        let id = "sidecar~10.0.0.1~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local";
        assert_eq!(
            view_of(&node(id, &[], "envoy")).unwrap().namespace,
            "bookinfo"
        );
        assert_eq!(
            view_of(&node("plain", &[], "envoy")).unwrap().namespace,
            "default"
        );
    }

    #[test]
    fn modes() {
        assert_eq!(
            view_of(&node("a", &[], "envoy")).unwrap().mode,
            ListenerMode::Capture
        );
        assert_eq!(
            view_of(&node("a", &[], "gRPC Python")).unwrap().mode,
            ListenerMode::Proxyless
        );
        let explicit = view_of(&node(
            "a",
            &[(OUTBOUND_LISTENER_KEY, "127.0.0.1:15080")],
            "envoy",
        ))
        .unwrap();
        assert_eq!(
            explicit.mode,
            ListenerMode::Explicit("127.0.0.1:15080".parse().unwrap())
        );
        assert!(view_of(&node("a", &[(OUTBOUND_LISTENER_KEY, "nope")], "envoy")).is_err());
    }
}
