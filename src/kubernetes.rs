//! Where the kinds shmesh reads live in the Kubernetes API, shared by the
//! Kubernetes source (which watches them) and the status writer (which
//! patches their status).

use kube::api::ApiResource;
use shmesh_api::Kind;

/// The origin of objects read from the cluster, in problems, rollout records
/// and `/debug` views.
pub const SOURCE: &str = "kubernetes";

/// Where the API server serves a kind shmesh reads.
pub fn api_resource(kind: Kind) -> ApiResource {
    let (group, version, plural) = match kind {
        Kind::Service => ("", "v1", "services"),
        Kind::Pod => ("", "v1", "pods"),
        Kind::Secret => ("", "v1", "secrets"),
        Kind::EndpointSlice => ("discovery.k8s.io", "v1", "endpointslices"),
        Kind::VirtualService => ("networking.istio.io", "v1", "virtualservices"),
        Kind::DestinationRule => ("networking.istio.io", "v1", "destinationrules"),
        Kind::ServiceEntry => ("networking.istio.io", "v1", "serviceentries"),
        Kind::WorkloadEntry => ("networking.istio.io", "v1", "workloadentries"),
        Kind::Sidecar => ("networking.istio.io", "v1", "sidecars"),
        Kind::Gateway => ("networking.istio.io", "v1", "gateways"),
        Kind::GatewayClass => ("gateway.networking.k8s.io", "v1", "gatewayclasses"),
        Kind::KubernetesGateway => ("gateway.networking.k8s.io", "v1", "gateways"),
        Kind::HTTPRoute => ("gateway.networking.k8s.io", "v1", "httproutes"),
        Kind::GRPCRoute => ("gateway.networking.k8s.io", "v1", "grpcroutes"),
        Kind::TCPRoute => ("gateway.networking.k8s.io", "v1alpha2", "tcproutes"),
        Kind::TLSRoute => ("gateway.networking.k8s.io", "v1alpha2", "tlsroutes"),
        Kind::ReferenceGrant => ("gateway.networking.k8s.io", "v1beta1", "referencegrants"),
        Kind::Namespace => ("", "v1", "namespaces"),
        Kind::PeerAuthentication => ("security.istio.io", "v1", "peerauthentications"),
        Kind::AuthorizationPolicy => ("security.istio.io", "v1", "authorizationpolicies"),
        Kind::RequestAuthentication => ("security.istio.io", "v1", "requestauthentications"),
    };
    ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.as_str().to_string(),
        plural: plural.to_string(),
    }
}
