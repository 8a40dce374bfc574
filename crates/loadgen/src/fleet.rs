//! State shared by every simulated client and the run's driver: counters
//! for progress, per-client timestamps (connect, sync) and the changes in
//! flight with each client's ACK time.
//!
//! Clients write (atomics only, no locks on the hot path); the driver, the
//! progress printer and the report read. Times are microseconds since the
//! run started; 0 means "not yet".

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use shmesh_cache::ResourceType;
use shmesh_loadgen::meshgen::ChangeMarker;

use crate::subs::SubsMemo;

/// Counters for the progress line and the report.
#[derive(Debug, Default)]
pub struct Counters {
    /// Streams open right now.
    pub open: AtomicUsize,
    /// Clients that have synced at least once.
    pub synced: AtomicUsize,
    pub connect_errors: AtomicU64,
    pub stream_errors: AtomicU64,
    pub reconnects: AtomicU64,
    /// Streams the server ended, asking the client to reconnect (UNAVAILABLE
    /// at a connection's maximum age): not failures.
    pub server_closed: AtomicU64,
    /// Responses the client rejected (NACKed): undecodable or unknown type.
    pub nacks: AtomicU64,
    /// Encoded bytes of the responses received, per type.
    pub bytes: [AtomicU64; ResourceType::COUNT],
    pub responses: [AtomicU64; ResourceType::COUNT],
    /// Resources received, per type.
    pub resources: [AtomicU64; ResourceType::COUNT],
    /// Resource names reported removed (delta `removed_resources`), per type.
    pub removed: [AtomicU64; ResourceType::COUNT],
    /// Why connections and streams failed: message → count (a few distinct
    /// messages only, so a storm of failures cannot grow it).
    reasons: Mutex<BTreeMap<String, u64>>,
}

/// Distinct failure messages kept.
const MAX_REASONS: usize = 16;

impl Counters {
    /// Counts a failure in `counter` and remembers its message.
    pub fn fail(&self, counter: &AtomicU64, reason: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut reasons = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = reasons.get_mut(&reason) {
            *n += 1;
        } else if reasons.len() < MAX_REASONS {
            reasons.insert(reason, 1);
        }
    }

    pub fn reasons(&self) -> BTreeMap<String, u64> {
        self.reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn total_bytes(&self) -> u64 {
        self.bytes.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

/// When one client got where: microseconds since the run started, 0 = not yet.
#[derive(Debug, Default)]
pub struct ClientTimes {
    /// Its first connection attempt began.
    pub started: AtomicU64,
    /// Its first ADS stream opened.
    pub open: AtomicU64,
    /// It first held (and had ACKed) CDS, EDS, LDS and RDS.
    pub synced: AtomicU64,
}

/// One change the driver made, and which clients have ACKed it.
pub struct ChangeTrack {
    pub index: usize,
    pub marker: ChangeMarker,
    /// Only clients of this namespace receive the change (namespace-scoped
    /// meshes); `None`: every client does.
    pub namespace: Option<Arc<str>>,
    pub expected: usize,
    /// When the file was renamed into place (set right after the rename;
    /// clients only record ACK instants, so they never need it).
    pub t0: OnceLock<u64>,
    /// Per client: when it ACKed the first response carrying the change
    /// (µs since the run started, +1 so 0 stays "not yet").
    acks: Vec<AtomicU64>,
    pub converged: AtomicUsize,
}

impl ChangeTrack {
    pub fn new(
        index: usize,
        marker: ChangeMarker,
        namespace: Option<Arc<str>>,
        clients: usize,
        expected: usize,
    ) -> ChangeTrack {
        ChangeTrack {
            index,
            marker,
            namespace,
            expected,
            t0: OnceLock::new(),
            acks: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            converged: AtomicUsize::new(0),
        }
    }

    /// Whether client `idx` of namespace `ns` still waits for this change
    /// in a response of type `ty`.
    pub fn pending_for(&self, idx: usize, ns: &str, ty: ResourceType) -> bool {
        carries(self.marker.resource_type, ty)
            && self.namespace.as_deref().is_none_or(|n| n == ns)
            && self
                .acks
                .get(idx)
                .is_some_and(|a| a.load(Ordering::Relaxed) == 0)
    }

    /// Client `idx` ACKed the change at `at` (µs since the run started).
    pub fn record(&self, idx: usize, at: u64) {
        if let Some(slot) = self.acks.get(idx) {
            if slot
                .compare_exchange(0, at + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                self.converged.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Convergence times (ACK − t0) in µs of the clients that got it.
    pub fn latencies_us(&self) -> Vec<u64> {
        let Some(&t0) = self.t0.get() else {
            return Vec::new();
        };
        self.acks
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .filter(|&a| a != 0)
            .map(|a| (a - 1).saturating_sub(t0))
            .collect()
    }
}

/// Everything the clients share.
pub struct Fleet {
    pub start: Instant,
    pub counters: Counters,
    pub times: Vec<ClientTimes>,
    pub memo: SubsMemo,
    /// Changes made so far (append-only; clients read a snapshot per response).
    pub changes: ArcSwap<Vec<Arc<ChangeTrack>>>,
    /// Serialises appends to `changes`.
    changes_writer: Mutex<()>,
}

impl Fleet {
    pub fn new(clients: usize) -> Fleet {
        Fleet {
            start: Instant::now(),
            counters: Counters::default(),
            times: (0..clients).map(|_| ClientTimes::default()).collect(),
            memo: SubsMemo::default(),
            changes: ArcSwap::from_pointee(Vec::new()),
            changes_writer: Mutex::new(()),
        }
    }

    /// Microseconds since the run started (never 0, which means "not yet").
    pub fn now_us(&self) -> u64 {
        self.us(Instant::now())
    }

    pub fn us(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.start).as_micros() as u64).max(1)
    }

    pub fn add_change(&self, track: Arc<ChangeTrack>) {
        let _guard = self
            .changes_writer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<Arc<ChangeTrack>> = self.changes.load().as_ref().clone();
        next.push(track);
        self.changes.store(Arc::new(next));
    }

    /// Sets `slot` to now unless already set; true when this call set it.
    pub fn stamp(&self, slot: &AtomicU64) -> bool {
        slot.compare_exchange(0, self.now_us(), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// The `q` quantile (0..=1) of sorted `v`, nearest rank.
pub fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Whether resources of type `ty` carry a change made to `changed`: a route
/// change reaches VHDS clients in the virtual host that changed.
fn carries(changed: ResourceType, ty: ResourceType) -> bool {
    changed == ty || (changed == ResourceType::Route && ty == ResourceType::VirtualHost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
