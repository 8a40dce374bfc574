//! Counters of the xDS streams: connected streams by protocol, pushes, ACKs
//! and NACKs by resource type, and push slots that timed out. The streams
//! write them; the admin server renders them in Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use shmesh_cache::ResourceType;

#[derive(Debug, Default)]
pub struct XdsMetrics {
    pub streams_sotw: AtomicU64,
    pub streams_delta: AtomicU64,
    pub pushes: [AtomicU64; ResourceType::COUNT],
    pub acks: [AtomicU64; ResourceType::COUNT],
    pub nacks: [AtomicU64; ResourceType::COUNT],
    /// Pushes whose proxy did not catch up within the push slot's time.
    pub push_ack_timeouts: AtomicU64,
}

/// Adds one to `counter`.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl XdsMetrics {
    /// Appends the counters to `out` in Prometheus exposition format.
    pub fn render(&self, out: &mut String) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# TYPE shmesh_xds_streams gauge\n");
        let _ = writeln!(
            out,
            "shmesh_xds_streams{{protocol=\"sotw\"}} {}",
            g(&self.streams_sotw)
        );
        let _ = writeln!(
            out,
            "shmesh_xds_streams{{protocol=\"delta\"}} {}",
            g(&self.streams_delta)
        );
        for (name, arr) in [
            ("pushes", &self.pushes),
            ("acks", &self.acks),
            ("nacks", &self.nacks),
        ] {
            let _ = writeln!(out, "# TYPE shmesh_xds_{name}_total counter");
            for ty in ResourceType::ALL {
                let _ = writeln!(
                    out,
                    "shmesh_xds_{name}_total{{type=\"{}\"}} {}",
                    ty.short(),
                    g(&arr[ty.index()])
                );
            }
        }
        out.push_str("# TYPE shmesh_xds_push_ack_timeouts_total counter\n");
        let _ = writeln!(
            out,
            "shmesh_xds_push_ack_timeouts_total {}",
            g(&self.push_ack_timeouts)
        );
    }
}
