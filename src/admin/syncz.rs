//! `/debug/syncz`: every connected proxy and whether it has applied what it
//! was sent, type by type, as istiod's `/debug/syncz` lists it (same field
//! names), read by `shmesh proxy-status`. The facts come from the streams'
//! registry (`shmesh_xds::server::Registry::sync`).
//!
//! Where istiod puts nonces in `*_sent` and `*_acked`, shmesh puts the
//! versions sent and applied (content hashes): a proxy that reconnects
//! already holding the current version is sent nothing, and shows the
//! version it reported in both. Whether a type is in sync is decided by the
//! stream, which knows whether its latest response was ACKed, and given in
//! `resources[TYPE_URL].status`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use shmesh_cache::ResourceType;
use shmesh_xds::server::ProxySync;

/// One proxy, as istiod's `SyncStatus`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_id: String,
    /// The node id.
    pub proxy: String,
    /// Istio's node type (`sidecar`, `router`), from an Istio-style node id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proxy_type: String,
    /// Envoy's version, or a gRPC client's user agent and version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proxy_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub istio_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_sent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_acked: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub listener_sent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub listener_acked: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub route_sent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub route_acked: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint_sent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint_acked: String,
    /// Every type the proxy asked for, by type URL.
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceStatus>,
    /// The shmesh instance the proxy is connected to (istiod's name for
    /// itself in istioctl's ISTIOD column).
    #[serde(default)]
    pub istiod: String,
}

/// One type of one proxy, as istiod's `ResourceStatus`, with its state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResourceStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub acked: String,
    /// When the latest response was sent (RFC 3339).
    #[serde(rename = "sentTime", default, skip_serializing_if = "String::is_empty")]
    pub sent_time: String,
    /// Why the proxy rejected the latest response.
    #[serde(
        rename = "lastError",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub last_error: String,
    /// `SYNCED`, `STALE` (sent and not yet applied, or rejected) or
    /// `NOT SENT` (asked for, nothing to send).
    pub status: String,
}

/// The name istioctl shows for a proxy: the `POD.NAMESPACE` of an
/// Istio-style node id (`sidecar~10.0.0.1~POD.NAMESPACE~NAMESPACE.svc.cluster.local`),
/// else the whole id.
pub fn proxy_name(node_id: &str) -> &str {
    let parts: Vec<&str> = node_id.split('~').collect();
    match parts.as_slice() {
        [_, _, id, _] if !id.is_empty() => id,
        _ => node_id,
    }
}

/// Istio's node type (`sidecar`, `router`) of an Istio-style node id.
pub fn proxy_type(node_id: &str) -> &str {
    let parts: Vec<&str> = node_id.split('~').collect();
    match parts.as_slice() {
        [ty, _, _, _] => ty,
        _ => "",
    }
}

/// `/debug/syncz` from the registry's view of every stream; `instance` is
/// this shmesh's name.
pub fn list(proxies: Vec<ProxySync>, instance: &str) -> Vec<SyncStatus> {
    proxies
        .into_iter()
        .map(|p| {
            let mut out = SyncStatus {
                cluster_id: p.status.cluster_id.clone().unwrap_or_default(),
                proxy: p.status.node_id.clone(),
                proxy_type: proxy_type(&p.status.node_id).to_string(),
                proxy_version: p.status.proxy_version.clone(),
                istio_version: p.status.istio_version.clone().unwrap_or_default(),
                istiod: instance.to_string(),
                ..Default::default()
            };
            for t in p.types {
                let sent = t.sent.unwrap_or_default();
                let acked = t.acked.unwrap_or_default();
                let fields = match t.ty {
                    ResourceType::Cluster => Some((&mut out.cluster_sent, &mut out.cluster_acked)),
                    ResourceType::Listener => {
                        Some((&mut out.listener_sent, &mut out.listener_acked))
                    }
                    ResourceType::Route => Some((&mut out.route_sent, &mut out.route_acked)),
                    ResourceType::Endpoint => {
                        Some((&mut out.endpoint_sent, &mut out.endpoint_acked))
                    }
                    ResourceType::VirtualHost | ResourceType::Secret => None,
                };
                if let Some((s, a)) = fields {
                    s.clone_from(&sent);
                    a.clone_from(&acked);
                }
                out.resources.insert(
                    t.ty.type_url().to_string(),
                    ResourceStatus {
                        sent,
                        acked,
                        sent_time: t.sent_at.map(rfc3339).unwrap_or_default(),
                        last_error: t.error.unwrap_or_default(),
                        status: t.state.as_str().to_string(),
                    },
                );
            }
            out
        })
        .collect()
}

/// `t` as RFC 3339 in UTC, to the second.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_istioctls() {
        assert_eq!(
            proxy_name("sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local"),
            "reviews-v1-abc.default"
        );
        assert_eq!(proxy_name("envoy-1"), "envoy-1");
        assert_eq!(
            proxy_type("router~1.2.3.4~gw.edge~edge.svc.cluster.local"),
            "router"
        );
        assert_eq!(proxy_type("envoy-1"), "");
    }

    #[test]
    fn times_are_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }
}
