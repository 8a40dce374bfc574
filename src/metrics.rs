//! The process's Prometheus registry, rendered at the admin server's
//! `/metrics` in the Prometheus text format (0.0.4, as istiod serves it).
//!
//! Each module registers and writes its own metrics: the xDS streams
//! (`shmesh_xds::metrics`), the views task (`views::metrics`), the sources
//! (`sources::SourceMetrics`), the CA (`identity::IdentityMetrics`), the
//! rollout tracker (`rollout::RolloutMetrics`) and the admission webhook
//! (`webhook::WebhookMetrics`). This module adds what
//! describes the process itself: its build (`istio_build`, which Istio's
//! dashboard reads for the control plane's version) and, read from `/proc`
//! and the allocator at each scrape, its CPU, memory, file descriptors and
//! tasks (`process_*`, and the `go_*` series istiod's dashboard plots,
//! filled with what shmesh's runtime and allocator measure of the same).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::identity::IdentityMetrics;
use crate::rollout::RolloutMetrics;
use crate::sources::SourceMetrics;
use crate::views::metrics::ViewMetrics;
use crate::webhook::WebhookMetrics;
use shmesh_xds::metrics::XdsMetrics;

/// Every metric of the process, by the module that writes it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub xds: Arc<XdsMetrics>,
    pub views: ViewMetrics,
    pub sources: SourceMetrics,
    pub identity: Arc<IdentityMetrics>,
    pub rollout: RolloutMetrics,
    pub webhook: Arc<WebhookMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct BuildLabels {
    component: &'static str,
    tag: &'static str,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "istio_build",
            "The control plane's build: component pilot, tag the shmesh version (always 1)",
            build.clone(),
        );
        build
            .get_or_create(&BuildLabels {
                component: "pilot",
                tag: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            xds: Arc::new(XdsMetrics::new(&mut registry)),
            views: ViewMetrics::new(&mut registry),
            sources: SourceMetrics::new(&mut registry),
            identity: Arc::new(IdentityMetrics::new(&mut registry)),
            rollout: RolloutMetrics::new(&mut registry),
            webhook: Arc::new(WebhookMetrics::new(&mut registry)),
            registry,
        }
    }

    /// The Prometheus text format's content type.
    pub const CONTENT_TYPE: &'static str =
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

    /// Every metric, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String fails only if a metric's own encoding does.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "cannot render metrics");
        }
        out
    }
}

/// The process's own figures, read when scraped.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let process = crate::process_stats::read();
        let mut gauge = |name: &str, help: &str, value: f64| -> Result<(), std::fmt::Error> {
            let metric = ConstGauge::new(value);
            let e = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(e)
        };
        if let Some(p) = &process {
            gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                p.resident_bytes as f64,
            )?;
            gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                p.virtual_bytes as f64,
            )?;
            gauge(
                "process_open_fds",
                "Open file descriptors",
                p.open_fds as f64,
            )?;
            gauge(
                "process_max_fds",
                "The limit of open file descriptors",
                p.max_fds as f64,
            )?;
            gauge(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                p.start_time_seconds,
            )?;
            gauge(
                "process_threads",
                "Operating system threads of the process",
                p.threads as f64,
            )?;
        }
        let heap = crate::allocator::heap_stats();
        gauge(
            "go_goroutines",
            "Tasks alive in shmesh's async runtime (istiod's dashboard plots its goroutines under this name)",
            crate::process_stats::runtime_tasks() as f64,
        )?;
        gauge(
            "go_memstats_heap_inuse_bytes",
            "Heap memory the allocator holds committed, in bytes (istiod's dashboard name)",
            heap.committed_bytes as f64,
        )?;
        gauge(
            "go_memstats_heap_alloc_bytes",
            "Bytes of live heap allocations (istiod's dashboard name)",
            heap.live_bytes as f64,
        )?;
        gauge(
            "go_memstats_stack_inuse_bytes",
            "Bytes of the threads' stacks in use (istiod's dashboard name)",
            process.as_ref().map_or(0, |p| p.stack_bytes) as f64,
        )?;
        let mut counter = |name: &str, help: &str, value: f64| -> Result<(), std::fmt::Error> {
            let metric = ConstCounter::new(value);
            // As istiod's: the name as the dashboard queries it (the Go
            // client's names for these already end in `_total`).
            let name = name.strip_suffix("_total").unwrap_or(name);
            let e = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(e)
        };
        if let Some(p) = &process {
            counter(
                "process_cpu_seconds_total",
                "User and system CPU time spent, in seconds",
                p.cpu_seconds,
            )?;
        }
        counter(
            "go_memstats_alloc_bytes_total",
            "Bytes allocated on the heap since start, freed or not (istiod's dashboard name)",
            heap.allocated_bytes_total as f64,
        )?;
        counter(
            "go_memstats_mallocs_total",
            "Heap allocations since start (istiod's dashboard name)",
            heap.allocations_total as f64,
        )?;
        Ok(())
    }
}
