//! Process-wide counters, written by the xDS streams, the translator and the
//! sources, rendered in Prometheus text format by the admin server.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::cache::ResourceType;

#[derive(Debug, Default)]
pub struct Metrics {
    pub streams_sotw: AtomicU64,
    pub streams_delta: AtomicU64,
    pub pushes: [AtomicU64; ResourceType::COUNT],
    pub acks: [AtomicU64; ResourceType::COUNT],
    pub nacks: [AtomicU64; ResourceType::COUNT],
    /// Pushes whose proxy did not catch up within the push slot's time.
    pub push_ack_timeouts: AtomicU64,
    pub translations: AtomicU64,
    pub config_errors: AtomicU64,
    pub config_warnings: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# TYPE shmesh_xds_streams gauge\n");
        out.push_str(&format!(
            "shmesh_xds_streams{{protocol=\"sotw\"}} {}\n",
            g(&self.streams_sotw)
        ));
        out.push_str(&format!(
            "shmesh_xds_streams{{protocol=\"delta\"}} {}\n",
            g(&self.streams_delta)
        ));
        for (name, arr) in [
            ("pushes", &self.pushes),
            ("acks", &self.acks),
            ("nacks", &self.nacks),
        ] {
            out.push_str(&format!("# TYPE shmesh_xds_{name}_total counter\n"));
            for ty in ResourceType::ALL {
                out.push_str(&format!(
                    "shmesh_xds_{name}_total{{type=\"{}\"}} {}\n",
                    ty.short(),
                    g(&arr[ty.index()])
                ));
            }
        }
        out.push_str("# TYPE shmesh_xds_push_ack_timeouts_total counter\n");
        out.push_str(&format!(
            "shmesh_xds_push_ack_timeouts_total {}\n",
            g(&self.push_ack_timeouts)
        ));
        out.push_str("# TYPE shmesh_translations_total counter\n");
        out.push_str(&format!(
            "shmesh_translations_total {}\n",
            g(&self.translations)
        ));
        out.push_str("# TYPE shmesh_config_errors_total counter\n");
        out.push_str(&format!(
            "shmesh_config_errors_total {}\n",
            g(&self.config_errors)
        ));
        out.push_str("# TYPE shmesh_config_warnings_total counter\n");
        out.push_str(&format!(
            "shmesh_config_warnings_total {}\n",
            g(&self.config_warnings)
        ));
        out
    }
}
