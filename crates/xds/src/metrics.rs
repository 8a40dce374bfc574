//! What the xDS streams measure: connected proxies, pushes, their time and
//! size, ACKs and rejections by resource type, convergence, and the push
//! slots' queue. The streams and the pacing write them; they are registered
//! in the process's Prometheus registry, which the admin server renders.
//!
//! The names Istio's "Istio Control Plane" dashboard reads are istiod's own
//! (`pilot_xds`, `pilot_xds_pushes`, `pilot_xds_push_time`, ...), with its
//! labels and buckets, so that dashboard works unchanged; the rest are
//! shmesh's (`shmesh_xds_*`).

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use shmesh_cache::ResourceType;

/// A counter exposed under exactly the name it is registered with. istiod's
/// counters carry no `_total` suffix (`pilot_xds_pushes`), and dashboards
/// query them so; the Prometheus text format would add one to a `counter`,
/// so these are exposed untyped, which `rate()` reads all the same.
#[derive(Debug, Clone, Default)]
pub struct IstiodCounter(Counter);

impl IstiodCounter {
    pub fn inc(&self) {
        self.0.inc();
    }

    pub fn inc_by(&self, n: u64) {
        self.0.inc_by(n);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl TypedMetric for IstiodCounter {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for IstiodCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.0.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Unknown
    }
}

/// istiod's `type` label: the resource type's short name (`cds`, `eds`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: &'static str,
}

/// A connected proxy's kind (`sidecar`, `router`, `proxyless`) and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProxyLabels {
    pub r#type: &'static str,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

type Histograms = Family<TypeLabel, Histogram, fn() -> Histogram>;

/// Per resource type, the children of a labelled family, resolved once so a
/// push does not look its label up.
fn per_type<M>(family: &Family<TypeLabel, M, impl Fn() -> M>) -> [M; ResourceType::COUNT]
where
    M: Clone + TypedMetric + EncodeMetric,
{
    ResourceType::ALL.map(|ty| {
        family
            .get_or_create(&TypeLabel { r#type: ty.short() })
            .clone()
    })
}

pub struct XdsMetrics {
    streams: [Gauge; 2],
    proxies: Family<ProxyLabels, Gauge>,
    pushes: [IstiodCounter; ResourceType::COUNT],
    push_time: [Histogram; ResourceType::COUNT],
    config_size: [Histogram; ResourceType::COUNT],
    acks: [Counter; ResourceType::COUNT],
    rejects: [IstiodCounter; ResourceType::COUNT],
    convergence: Histogram,
    queue_time: Histogram,
    /// Pushes whose proxy did not catch up within the push slot's time.
    push_ack_timeouts: Counter,
    /// Push slots held.
    slots_held: Gauge,
}

impl std::fmt::Debug for XdsMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsMetrics").finish_non_exhaustive()
    }
}

/// istiod's buckets for push and debounce times, in seconds.
const PUSH_TIME_BUCKETS: [f64; 9] = [0.01, 0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// istiod's buckets for convergence and queue times, in seconds.
const CONVERGENCE_BUCKETS: [f64; 8] = [0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// istiod's buckets for response sizes: 10 kB, 1 MB, 4 MB (gRPC's default
/// limit), 10 MB, 40 MB.
const SIZE_BUCKETS: [f64; 6] = [1.0, 10e3, 1e6, 4e6, 10e6, 40e6];

fn push_time_histogram() -> Histogram {
    Histogram::new(PUSH_TIME_BUCKETS)
}

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

impl XdsMetrics {
    /// The streams' metrics, registered in `registry`.
    pub fn new(registry: &mut Registry) -> XdsMetrics {
        let streams = Family::<ProtocolLabel, Gauge>::default();
        registry.register(
            "shmesh_xds_streams",
            "ADS streams open, by protocol (sotw, delta)",
            streams.clone(),
        );
        let proxies = Family::<ProxyLabels, Gauge>::default();
        registry.register(
            "pilot_xds",
            "Proxies connected over xDS, by type (sidecar, router, proxyless) and version",
            proxies.clone(),
        );
        let pushes = Family::<TypeLabel, IstiodCounter>::default();
        registry.register(
            "pilot_xds_pushes",
            "Responses pushed to proxies, by resource type (a counter)",
            pushes.clone(),
        );
        let push_time: Histograms = Family::new_with_constructor(push_time_histogram);
        registry.register(
            "pilot_xds_push_time",
            "Seconds from a change or request reaching a stream to its response being handed to the connection, by resource type",
            push_time.clone(),
        );
        let config_size: Histograms = Family::new_with_constructor(size_histogram);
        registry.register(
            "pilot_xds_config_size_bytes",
            "Size in bytes of the responses pushed, by resource type",
            config_size.clone(),
        );
        let acks = Family::<TypeLabel, Counter>::default();
        registry.register(
            "shmesh_xds_acks",
            "Responses proxies ACKed, by resource type",
            acks.clone(),
        );
        let rejects = Family::<TypeLabel, IstiodCounter>::default();
        registry.register(
            "pilot_total_xds_rejects",
            "Responses proxies rejected (NACK), by resource type (a counter)",
            rejects.clone(),
        );
        let convergence = Histogram::new(CONVERGENCE_BUCKETS);
        registry.register(
            "pilot_proxy_convergence_time",
            "Seconds from a change reaching shmesh (or a proxy connecting) to the proxy having applied all of it",
            convergence.clone(),
        );
        let queue_time = Histogram::new(CONVERGENCE_BUCKETS);
        registry.register(
            "pilot_proxy_queue_time",
            "Seconds a stream waited for a push slot before pushing (--push-slots)",
            queue_time.clone(),
        );
        let push_ack_timeouts = Counter::default();
        registry.register(
            "shmesh_xds_push_ack_timeouts",
            "Push slots given up because the proxy did not apply its push within --push-ack-timeout",
            push_ack_timeouts.clone(),
        );
        let slots_held = Gauge::default();
        registry.register(
            "shmesh_xds_push_slots_held",
            "Push slots held by streams waiting for their proxy to apply a push",
            slots_held.clone(),
        );
        XdsMetrics {
            streams: ["sotw", "delta"]
                .map(|protocol| streams.get_or_create(&ProtocolLabel { protocol }).clone()),
            proxies,
            pushes: per_type(&pushes),
            push_time: per_type(&push_time),
            config_size: per_type(&config_size),
            acks: per_type(&acks),
            rejects: per_type(&rejects),
            convergence,
            queue_time,
            push_ack_timeouts,
            slots_held,
        }
    }

    /// Metrics registered nowhere, for tests and benches.
    pub fn unregistered() -> XdsMetrics {
        XdsMetrics::new(&mut Registry::default())
    }

    /// A stream of `protocol` opened (`open`) or closed.
    pub(crate) fn stream(&self, protocol: &str, proxy: &ProxyLabels, open: bool) {
        let gauge = &self.streams[usize::from(protocol == "delta")];
        let proxies = self.proxies.get_or_create(proxy);
        if open {
            gauge.inc();
            proxies.inc();
        } else {
            gauge.dec();
            proxies.dec();
        }
    }

    /// A response of `ty`, `bytes` long, handed to the connection `took`
    /// after the change or request that caused it.
    pub(crate) fn pushed(&self, ty: ResourceType, bytes: usize, took: Duration) {
        self.pushes[ty.index()].inc();
        self.config_size[ty.index()].observe(bytes as f64);
        self.push_time[ty.index()].observe(took.as_secs_f64());
    }

    pub(crate) fn acked(&self, ty: ResourceType) {
        self.acks[ty.index()].inc();
    }

    pub(crate) fn rejected(&self, ty: ResourceType) {
        self.rejects[ty.index()].inc();
    }

    /// A proxy has applied everything of a change `took` after it reached shmesh.
    pub(crate) fn converged(&self, took: Duration) {
        self.convergence.observe(took.as_secs_f64());
    }

    pub(crate) fn queued(&self, waited: Duration) {
        self.queue_time.observe(waited.as_secs_f64());
    }

    pub(crate) fn slot_taken(&self) {
        self.slots_held.inc();
    }

    pub(crate) fn slot_given_back(&self, timed_out: bool) {
        self.slots_held.dec();
        if timed_out {
            self.push_ack_timeouts.inc();
        }
    }

    /// Push slots that ran out before their proxy caught up.
    pub fn push_ack_timeouts(&self) -> u64 {
        self.push_ack_timeouts.get()
    }

    /// Responses pushed of `ty`.
    pub fn pushes(&self, ty: ResourceType) -> u64 {
        self.pushes[ty.index()].get()
    }
}
