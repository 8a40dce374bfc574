//! What a connecting node tells about itself: its namespace and how it wants
//! its outbound listeners (capture, explicit, proxyless, or a gateway's
//! listeners) and, for a sidecar under capture or a gateway, its workload's
//! labels.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;

use shmesh_api::objects::Labels;

use crate::tls::Certificates;
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
    // Istio's gateways announce themselves by their node type.
    let router = node.id.starts_with("router~");
    let mode = if grpc {
        ListenerMode::Proxyless
    } else if router {
        ListenerMode::Router
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
    // Labels shape a sidecar's inbound half and pick a gateway's Gateways.
    let labels = if matches!(mode, ListenerMode::Capture | ListenerMode::Router) {
        labels(node)
    } else {
        Labels::new()
    };
    // Istio's agent announces itself (ISTIO_VERSION) and serves the
    // sidecar's certificates over SDS.
    let with_agent = matches!(mode, ListenerMode::Capture | ListenerMode::Router)
        && metadata_str(node, "ISTIO_VERSION").is_some();
    let certificates = if with_agent {
        Certificates::Agent
    } else {
        Certificates::None
    };
    Ok(ProxyView {
        namespace,
        mode,
        labels,
        certificates,
        vhds: false,
    })
}

/// The pod an Istio-style node id names, as (namespace, name):
/// `sidecar~10.0.0.1~POD.NAMESPACE~NAMESPACE.svc.cluster.local`.
pub fn pod_of(node: &Node) -> Option<(String, String)> {
    pod_of_id(&node.id)
}

/// [`pod_of`] for a node id alone.
pub fn pod_of_id(id: &str) -> Option<(String, String)> {
    let mut parts = id.split('~');
    let (_, _, pod, _) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (name, namespace) = pod.split_once('.')?;
    (!name.is_empty() && !namespace.is_empty()).then(|| (namespace.to_string(), name.to_string()))
}

/// Istio's `LABELS` metadata: a struct of the workload's labels. Values
/// that are not strings are not labels and are left out.
fn labels(node: &Node) -> Labels {
    let Some(Kind::StructValue(fields)) = node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get("LABELS"))
        .and_then(|v| v.kind.as_ref())
    else {
        return Labels::new();
    };
    fields
        .fields
        .iter()
        .filter_map(|(k, v)| match &v.kind {
            Some(Kind::StringValue(s)) => Some((k.clone(), s.clone())),
            _ => None,
        })
        .collect()
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
        let gateway = "router~10.0.0.9~ingress-1.edge~edge.svc.cluster.local";
        let view = view_of(&node(gateway, &[], "envoy")).unwrap();
        assert_eq!(
            (view.mode, view.namespace.as_str()),
            (ListenerMode::Router, "edge")
        );
    }

    #[test]
    fn labels_from_istio_metadata_for_sidecars_under_capture() {
        let mut n = node("a", &[("NAMESPACE", "shop")], "envoy");
        let labels = Struct {
            fields: [("app", "cart"), ("version", "v2")]
                .iter()
                .map(|(k, v)| {
                    let value = Value {
                        kind: Some(Kind::StringValue(v.to_string())),
                    };
                    (k.to_string(), value)
                })
                .collect(),
        };
        let meta = n.metadata.as_mut().unwrap();
        meta.fields.insert(
            "LABELS".into(),
            Value {
                kind: Some(Kind::StructValue(labels)),
            },
        );
        let view = view_of(&n).unwrap();
        assert_eq!(view.labels.get("app").map(String::as_str), Some("cart"));
        assert_eq!(view.labels.len(), 2);
        // A gRPC client has no inbound half: its labels would only split views.
        n.user_agent_name = "gRPC Go".into();
        assert!(view_of(&n).unwrap().labels.is_empty());
    }
}
