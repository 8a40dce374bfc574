//! The objects shmesh reads: Kubernetes Services, EndpointSlices and Pods,
//! and Istio's networking and security objects. Each is a schema (serde), parsed from
//! YAML or JSON with the file and line it came from, and validated as Istio
//! validates it.
//!
//! Sources (files, the Kubernetes API) hand text or JSON values in through
//! `parse`; what comes out is an `Object` for the model, or a `Problem` that
//! names file, line, kind, object and field. This crate knows serde only:
//! neither the service graph nor Envoy nor Kubernetes clients.

pub mod duration;
pub mod meta;
pub mod namespace;
pub mod objects;
pub mod parse;
pub mod problem;
pub mod validate;

pub mod authorization_policy;
pub mod destination_rule;
pub mod endpoint_slice;
pub mod gateway;
pub mod gateway_api;
pub mod grpc_route;
pub mod l4_route;
pub mod peer_authentication;
pub mod pod;
pub mod reference_grant;
pub mod request_authentication;
pub mod secret;
pub mod service;
pub mod service_entry;
pub mod sidecar;
pub mod virtual_service;
pub mod workload_entry;

use std::fmt;

pub use problem::{Origin, Problem, Severity};

use objects::*;

/// The kinds shmesh reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Service,
    EndpointSlice,
    Pod,
    VirtualService,
    DestinationRule,
    ServiceEntry,
    WorkloadEntry,
    Sidecar,
    PeerAuthentication,
    AuthorizationPolicy,
    RequestAuthentication,
    Secret,
    Gateway,
    GatewayClass,
    /// The Gateway API's `Gateway`.
    KubernetesGateway,
    HTTPRoute,
    GRPCRoute,
    TCPRoute,
    TLSRoute,
    ReferenceGrant,
    Namespace,
}

impl Kind {
    pub const ALL: [Kind; 21] = [
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Pod,
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::ServiceEntry,
        Kind::WorkloadEntry,
        Kind::Sidecar,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::RequestAuthentication,
        Kind::Secret,
        Kind::Gateway,
        Kind::GatewayClass,
        Kind::KubernetesGateway,
        Kind::HTTPRoute,
        Kind::GRPCRoute,
        Kind::TCPRoute,
        Kind::TLSRoute,
        Kind::ReferenceGrant,
        Kind::Namespace,
    ];

    /// Kinds of objects that belong to no namespace.
    pub fn cluster_scoped(self) -> bool {
        matches!(self, Kind::GatewayClass | Kind::Namespace)
    }

    /// The kind named by `apiVersion` and `kind`, if shmesh reads it.
    pub fn from_api(api_version: &str, kind: &str) -> Option<Kind> {
        let istio = matches!(
            api_version,
            "networking.istio.io/v1"
                | "networking.istio.io/v1beta1"
                | "networking.istio.io/v1alpha3"
        );
        let security = matches!(
            api_version,
            "security.istio.io/v1" | "security.istio.io/v1beta1"
        );
        match (api_version, kind) {
            ("v1", "Service") => Some(Kind::Service),
            ("v1", "Pod") => Some(Kind::Pod),
            ("v1", "Secret") => Some(Kind::Secret),
            ("v1", "Namespace") => Some(Kind::Namespace),
            ("discovery.k8s.io/v1", "EndpointSlice") => Some(Kind::EndpointSlice),
            (_, "VirtualService") if istio => Some(Kind::VirtualService),
            (_, "DestinationRule") if istio => Some(Kind::DestinationRule),
            (_, "ServiceEntry") if istio => Some(Kind::ServiceEntry),
            (_, "WorkloadEntry") if istio => Some(Kind::WorkloadEntry),
            (_, "Sidecar") if istio => Some(Kind::Sidecar),
            (_, "Gateway") if istio => Some(Kind::Gateway),
            ("gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1", kind) => {
                match kind {
                    "GatewayClass" => Some(Kind::GatewayClass),
                    "Gateway" => Some(Kind::KubernetesGateway),
                    "HTTPRoute" => Some(Kind::HTTPRoute),
                    "GRPCRoute" => Some(Kind::GRPCRoute),
                    "ReferenceGrant" => Some(Kind::ReferenceGrant),
                    _ => None,
                }
            }
            ("gateway.networking.k8s.io/v1alpha2", kind) => match kind {
                "GRPCRoute" => Some(Kind::GRPCRoute),
                "TCPRoute" => Some(Kind::TCPRoute),
                "TLSRoute" => Some(Kind::TLSRoute),
                "ReferenceGrant" => Some(Kind::ReferenceGrant),
                _ => None,
            },
            (_, "PeerAuthentication") if security => Some(Kind::PeerAuthentication),
            (_, "AuthorizationPolicy") if security => Some(Kind::AuthorizationPolicy),
            (_, "RequestAuthentication") if security => Some(Kind::RequestAuthentication),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Pod => "Pod",
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::Sidecar => "Sidecar",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::Secret => "Secret",
            Kind::Gateway => "Gateway",
            Kind::GatewayClass => "GatewayClass",
            Kind::KubernetesGateway => "Gateway",
            Kind::HTTPRoute => "HTTPRoute",
            Kind::GRPCRoute => "GRPCRoute",
            Kind::TCPRoute => "TCPRoute",
            Kind::TLSRoute => "TLSRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
            Kind::Namespace => "Namespace",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key of a routing policy in snapshots and rollout reports:
/// `Kind/namespace/name`.
pub fn policy_key(kind: Kind, namespace: &str, name: &str) -> String {
    let kind = kind.as_str();
    let mut key = String::with_capacity(kind.len() + namespace.len() + name.len() + 2);
    for part in [kind, "/", namespace, "/", name] {
        key.push_str(part);
    }
    key
}

/// Identity of an object: kind, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A decoded, valid object. Always held in an `Arc`, so variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Service(Service),
    EndpointSlice(EndpointSlice),
    Pod(Pod),
    VirtualService(VirtualService),
    DestinationRule(DestinationRule),
    ServiceEntry(ServiceEntry),
    WorkloadEntry(WorkloadEntry),
    Sidecar(Sidecar),
    PeerAuthentication(PeerAuthentication),
    AuthorizationPolicy(AuthorizationPolicy),
    RequestAuthentication(RequestAuthentication),
    Secret(Secret),
    Gateway(Gateway),
    GatewayClass(GatewayClass),
    KubernetesGateway(KubernetesGateway),
    HTTPRoute(HTTPRoute),
    GRPCRoute(GRPCRoute),
    TCPRoute(TCPRoute),
    TLSRoute(TLSRoute),
    ReferenceGrant(ReferenceGrant),
    Namespace(Namespace),
}

/// The Rust type of a kind's objects, to take one out of an `Object`.
pub trait KindObject: Sized {
    const KIND: Kind;
    /// The object, when `object` is of this kind.
    fn from_object(object: &Object) -> Option<&Self>;
}

/// `KindObject` for each variant of `Object`, whose type has the variant's name.
macro_rules! kind_objects {
    ($($variant:ident),* $(,)?) => {
        $(
            impl KindObject for objects::$variant {
                const KIND: Kind = Kind::$variant;
                fn from_object(object: &Object) -> Option<&Self> {
                    match object {
                        Object::$variant(o) => Some(o),
                        _ => None,
                    }
                }
            }
        )*
    };
}

kind_objects!(
    Service,
    EndpointSlice,
    Pod,
    VirtualService,
    DestinationRule,
    ServiceEntry,
    WorkloadEntry,
    Sidecar,
    PeerAuthentication,
    AuthorizationPolicy,
    RequestAuthentication,
    Secret,
    Gateway,
    GatewayClass,
    KubernetesGateway,
    HTTPRoute,
    GRPCRoute,
    TCPRoute,
    TLSRoute,
    ReferenceGrant,
    Namespace,
);
