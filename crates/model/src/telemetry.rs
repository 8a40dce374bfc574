//! Mesh-wide telemetry settings, given to `shmesh serve` (as Istio's
//! `meshConfig.defaultConfig.tracing` and its tracing extension providers
//! are given to istiod): where proxies send spans, how many requests they
//! trace, and which tags they add. Translation turns them into the `tracing`
//! of every HTTP connection manager and a cluster for the collector.

use shmesh_api::meta::Labels;

/// A workload's canonical service name, as Istio's injector sets it: the
/// first of its labels `service.istio.io/canonical-name`,
/// `app.kubernetes.io/name` and `app`.
pub fn canonical_name(labels: &Labels) -> Option<&String> {
    [
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ]
    .iter()
    .find_map(|label| labels.get(*label))
}

/// A workload's canonical revision, as Istio's injector sets it: the first
/// of its labels `service.istio.io/canonical-revision`,
/// `app.kubernetes.io/version` and `version`, else `latest`.
pub fn canonical_revision(labels: &Labels) -> &str {
    [
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ]
    .iter()
    .find_map(|label| labels.get(*label))
    .map_or("latest", String::as_str)
}

/// The service a workload's proxy reports its telemetry as, named as Istio's
/// agent names the proxy's cluster: its canonical name, a dot and its
/// namespace. None without a label naming it.
pub fn workload_service(labels: &Labels, namespace: &str) -> Option<String> {
    let name = canonical_name(labels)?;
    Some(crate::text::concat(&[name, ".", namespace]))
}

/// How proxies trace requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    pub collector: Collector,
    /// Percent of requests traced (Istio's default is 1).
    pub sampling: f64,
    /// Tags added to every span, in the order given.
    pub custom_tags: Vec<CustomTag>,
}

/// Where spans go: a host (DNS name or IP) and port the proxies reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collector {
    /// Zipkin's JSON v2 API over HTTP (`/api/v2/spans`).
    Zipkin { host: String, port: u16 },
    /// OpenTelemetry's OTLP over gRPC.
    OpenTelemetry { host: String, port: u16 },
}

impl Collector {
    pub fn host(&self) -> &str {
        match self {
            Collector::Zipkin { host, .. } | Collector::OpenTelemetry { host, .. } => host,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Collector::Zipkin { port, .. } | Collector::OpenTelemetry { port, .. } => *port,
        }
    }
}

/// A tag on every span, named `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomTag {
    pub name: String,
    pub value: TagValue,
}

/// Where a custom tag's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagValue {
    /// This text.
    Literal(String),
    /// The request header of this name (no tag when absent).
    Header(String),
    /// The proxy's environment variable of this name (no tag when unset).
    Environment(String),
}
