//! Resource names as Istio writes them, so dashboards and tools keep working.

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::google::protobuf::{value, Struct, Value};
use shmesh_model::text::{concat, Decimal};

/// `outbound|9080|v1|reviews.default.svc.cluster.local`
pub fn outbound_cluster(port: u16, subset: &str, host: &str) -> String {
    concat(&[
        "outbound|",
        Decimal::new(port).as_str(),
        "|",
        subset,
        "|",
        host,
    ])
}

/// The host of an `outbound|...` cluster name.
pub fn cluster_host(name: &str) -> Option<&str> {
    cluster_host_port(name).map(|(host, _)| host)
}

/// The host and port of an `outbound|...` cluster name.
pub fn cluster_host_port(name: &str) -> Option<(&str, &str)> {
    let mut parts = name.splitn(4, '|');
    (parts.next()? == "outbound").then_some(())?;
    let port = parts.next()?;
    parts.next()?;
    Some((parts.next()?, port))
}

/// `inbound|8080||`: the cluster to the app on its target port.
pub fn inbound_cluster(port: u16) -> String {
    concat(&["inbound|", Decimal::new(port).as_str(), "||"])
}

pub const BLACKHOLE: &str = "BlackHoleCluster";
pub const PASSTHROUGH: &str = "PassthroughCluster";
pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
pub const VIRTUAL_OUTBOUND_PORT: u16 = 15001;
pub const VIRTUAL_INBOUND: &str = "virtualInbound";
pub const VIRTUAL_INBOUND_PORT: u16 = 15006;
/// Inbound connections to ports no service declares.
pub const INBOUND_PASSTHROUGH: &str = "InboundPassthroughCluster";
/// Route configuration of the explicit (non-capture) outbound listener.
pub const HTTP_PROXY_ROUTE: &str = "http_proxy";

/// `0.0.0.0_9080`
pub fn listener(address: &str, port: u16) -> String {
    concat(&[address, "_", Decimal::new(port).as_str()])
}

/// `reviews.default.svc.cluster.local:9080`
pub fn virtual_host(host: &str, port: u16) -> String {
    with_port(host, port)
}

/// `host:port`
pub fn with_port(host: &str, port: u16) -> String {
    concat(&[host, ":", Decimal::new(port).as_str()])
}

/// The `istio` filter metadata istiod puts on a resource made from an
/// Istio networking object, `{"istio": {"config": PATH}}` with PATH
/// `/apis/networking.istio.io/v1/namespaces/NAMESPACE/KIND/NAME` (KIND as
/// `destination-rule`): `istioctl proxy-config` names the object from it.
pub fn config_metadata(kind: &str, namespace: &str, name: &str) -> core::Metadata {
    let path = concat(&[
        "/apis/networking.istio.io/v1/namespaces/",
        namespace,
        "/",
        kind,
        "/",
        name,
    ]);
    let config = Value {
        kind: Some(value::Kind::StringValue(path)),
    };
    core::Metadata {
        filter_metadata: [(
            "istio".to_string(),
            Struct {
                fields: [("config".to_string(), config)].into(),
            },
        )]
        .into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names() {
        let n = outbound_cluster(9080, "v1", "reviews.default.svc.cluster.local");
        assert_eq!(n, "outbound|9080|v1|reviews.default.svc.cluster.local");
        assert_eq!(cluster_host(&n), Some("reviews.default.svc.cluster.local"));
        assert_eq!(cluster_host("BlackHoleCluster"), None);
        assert_eq!(inbound_cluster(8080), "inbound|8080||");
        assert_eq!(cluster_host(&inbound_cluster(8080)), None);
    }
}
