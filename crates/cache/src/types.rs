//! The xDS resource types shmesh serves, in one place, so type URLs are never
//! loose strings scattered around.

use std::fmt;

/// A resource type served over ADS, in make-before-break push order
/// (CDS, EDS, LDS, RDS, VHDS, SDS; rule 13 of docs/xds-rules.md). Secrets
/// come last: Envoy asks for them only once a resource refers to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Listener,
    Route,
    /// Virtual hosts of a route configuration that delegates them to VHDS
    /// (delta only), named `<route configuration>/<host>`.
    VirtualHost,
    /// SDS secrets: a workload's certificate and key (`default`) and the
    /// roots it trusts (`ROOTCA`), for proxies that take certificates from
    /// shmesh over ADS. Envoy asks for them by name once a cluster or
    /// listener refers to them.
    Secret,
}

impl ResourceType {
    /// How many types there are: the length of per-type arrays.
    pub const COUNT: usize = 6;

    /// All types, in push order.
    pub const ALL: [ResourceType; Self::COUNT] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
        ResourceType::VirtualHost,
        ResourceType::Secret,
    ];

    pub const fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            ResourceType::VirtualHost => "type.googleapis.com/envoy.config.route.v3.VirtualHost",
            ResourceType::Secret => {
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
            }
        }
    }

    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// Index into per-type arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Short name used in logs and metrics labels.
    pub const fn short(self) -> &'static str {
        match self {
            ResourceType::Cluster => "cds",
            ResourceType::Endpoint => "eds",
            ResourceType::Listener => "lds",
            ResourceType::Route => "rds",
            ResourceType::VirtualHost => "vhds",
            ResourceType::Secret => "sds",
        }
    }

    /// SotW responses for these types carry the whole set: a resource left out
    /// is deleted (XDS rule 6). EDS and RDS responses may carry only some names.
    pub const fn sotw_full_set(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }

    /// Types Envoy subscribes to by wildcard.
    pub const fn wildcard_capable(self) -> bool {
        self.sotw_full_set()
    }

    /// Types whose resources are named `N/...` after the resource `N` they
    /// belong to, and wanted when `N` is: a VHDS virtual host is wanted when
    /// the client subscribes to its route configuration.
    pub const fn by_namespace(self) -> bool {
        matches!(self, ResourceType::VirtualHost)
    }
}

/// The namespace of a resource name: everything before its last `/`.
pub fn namespace_of(name: &str) -> Option<&str> {
    name.rsplit_once('/').map(|(ns, _)| ns)
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}
