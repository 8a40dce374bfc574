//! The run's results: built from the fleet's counters and timestamps at the
//! end of a run, printed as a table for people and as JSON for scripts and
//! tests (`--json`, `--json-out`).

use std::fmt::Write as _;

use serde::Serialize;

use crate::client::Api;
use crate::fleet::quantile;
use crate::sys::{FdLimit, ProcSample};
use crate::verify::Verify;

/// Per-client durations of one phase, and when the whole fleet got through it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phase {
    /// Clients that got through.
    pub done: usize,
    /// Seconds from the start of the run until the last client got through
    /// (`None` when some never did).
    pub all_s: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Phase {
    /// `durations_us`: per client that got through; `last_us`: when the
    /// last one did; `total`: how many should have.
    pub fn new(mut durations_us: Vec<u64>, last_us: Option<u64>, total: usize) -> Phase {
        durations_us.sort_unstable();
        let ms = |q: f64| quantile(&durations_us, q).map(us_to_ms);
        Phase {
            done: durations_us.len(),
            all_s: (durations_us.len() == total)
                .then_some(last_us)
                .flatten()
                .map(|u| u as f64 / 1e6),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: ms(1.0),
        }
    }
}

fn us_to_ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 100.0).round() / 100.0
}

/// One change the driver made.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeReport {
    pub index: usize,
    /// `endpoint` or `weights`.
    pub kind: &'static str,
    /// `ns-0/svc-3`.
    pub target: String,
    pub description: String,
    /// For an endpoint move: the endpoint's new address.
    pub address: Option<String>,
    /// For a weight shift: the new weights of subsets v0 and v1.
    pub weights: Option<[u32; 2]>,
    /// The xDS type that carries it (`eds`, `rds`).
    pub resource_type: &'static str,
    /// Seconds from the start of the run to the rename.
    pub at_s: f64,
    /// Clients that should receive it, that did (ACKed within the change
    /// timeout), and that did not.
    pub expected: usize,
    pub converged: usize,
    pub missed: usize,
    /// Rename → ACK of the first response carrying the change, debounce included.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Bytes the whole fleet received from the rename until the change had
    /// converged (or timed out), and that divided by the expected clients.
    pub bytes: u64,
    pub bytes_per_client: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Traffic {
    pub responses: u64,
    pub resources: u64,
    /// Names reported removed (delta only).
    pub removed: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ControlPlane {
    pub pid: u32,
    /// Before the fleet connected.
    pub baseline: Option<ProcSample>,
    /// Once every client had synced (or the sync phase timed out).
    pub after_sync: Option<ProcSample>,
    /// After the changes, before the fleet disconnected.
    pub end: Option<ProcSample>,
    /// (RSS after sync − baseline) / clients, KiB.
    pub rss_per_client_kb: Option<f64>,
    /// CPU seconds spent connecting and syncing the fleet, and on the changes.
    pub cpu_sync_s: Option<f64>,
    pub cpu_changes_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Loadgen {
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub rss_per_client_kb: f64,
    /// CPU seconds of the whole run, and of the part until the fleet synced.
    pub cpu_s: f64,
    pub cpu_sync_s: f64,
    /// Distinct CDS/LDS derivations computed (the rest were shared).
    pub distinct_subscriptions: usize,
}

/// The whole machine's CPU, for judging whether other work competed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cores: usize,
    /// Busy CPU-seconds of all processes until the fleet synced, and during the changes.
    pub busy_sync_s: Option<f64>,
    pub busy_changes_s: Option<f64>,
    /// Of those, what neither the control plane (when `--pid` is given)
    /// nor the simulator used: other processes and the kernel's own work.
    pub other_sync_s: Option<f64>,
    pub other_changes_s: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Errors {
    pub connect: u64,
    pub stream: u64,
    pub reconnects: u64,
    /// Streams the server ended asking the client to reconnect (a
    /// connection's maximum age); counted in `reconnects`, not as errors.
    pub server_closed: u64,
    /// Responses the clients rejected.
    pub nacks: u64,
    /// Failure messages and how often each was seen.
    pub reasons: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub api: Api,
    pub clients: usize,
    /// Namespaces the clients are spread over.
    pub namespaces: usize,
    pub xds: String,
    pub source_ips: usize,
    /// ADS streams per HTTP/2 connection (1: one connection per client, as Envoy).
    pub streams_per_connection: usize,
    pub fd_limit: Option<FdLimit>,
    /// Stream open (per client: from its first connection attempt).
    pub connect: Phase,
    /// CDS, EDS, LDS and RDS received and ACKed (per client: from its first attempt).
    pub sync: Phase,
    /// The control plane's debounce as given (`--debounce-ms`); change
    /// latencies include it.
    pub debounce_ms: u64,
    pub changes: Vec<ChangeReport>,
    pub bytes_received: u64,
    pub traffic: std::collections::BTreeMap<&'static str, Traffic>,
    pub control_plane: Option<ControlPlane>,
    pub loadgen: Loadgen,
    pub machine: Machine,
    pub errors: Errors,
    pub verify: Option<Verify>,
    /// Changes the driver could not make (the run stopped making changes).
    pub driver_errors: Vec<String>,
    pub duration_s: f64,
    /// Every client synced, every change reached every expected client, and
    /// (with `--admin`) the server saw every stream in sync.
    pub complete: bool,
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} kB", b / 1e3)
    }
}

impl Report {
    /// The human-readable table.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let api = match self.api {
            Api::Sotw => "SotW",
            Api::Delta => "delta",
        };
        let _ = writeln!(
            o,
            "shmesh-loadgen: {} {api} clients over {} namespace(s) -> {} ({} source IP(s), {} stream(s) per connection), {:.1} s",
            self.clients,
            self.namespaces,
            self.xds,
            self.source_ips,
            self.streams_per_connection,
            self.duration_s
        );
        let _ = writeln!(
            o,
            "{:<9} {:>11} {:>12} {:>10} {:>10} {:>10}",
            "phase", "done", "all (s)", "p50 ms", "p99 ms", "max ms"
        );
        for (name, p) in [("connect", &self.connect), ("sync", &self.sync)] {
            let _ = writeln!(
                o,
                "{:<9} {:>11} {:>12} {:>10} {:>10} {:>10}",
                name,
                format!("{}/{}", p.done, self.clients),
                p.all_s
                    .map(|s| format!("{s:.2}"))
                    .unwrap_or_else(|| "-".into()),
                opt_ms(p.p50_ms),
                opt_ms(p.p99_ms),
                opt_ms(p.max_ms)
            );
        }
        if !self.changes.is_empty() {
            let _ = writeln!(
                o,
                "changes (rename -> ACK, including the {} ms debounce):",
                self.debounce_ms
            );
            let _ = writeln!(
                o,
                "{:<3} {:<8} {:<40} {:>4} {:>9} {:>9} {:>6} {:>9} {:>9} {:>9} {:>12}",
                "#",
                "kind",
                "change",
                "type",
                "expected",
                "converged",
                "missed",
                "p50 ms",
                "p99 ms",
                "max ms",
                "B/client"
            );
            for c in &self.changes {
                let _ = writeln!(
                    o,
                    "{:<3} {:<8} {:<40} {:>4} {:>9} {:>9} {:>6} {:>9} {:>9} {:>9} {:>12}",
                    c.index,
                    c.kind,
                    c.description,
                    c.resource_type,
                    c.expected,
                    c.converged,
                    c.missed,
                    opt_ms(c.p50_ms),
                    opt_ms(c.p99_ms),
                    opt_ms(c.max_ms),
                    c.bytes_per_client
                );
            }
        }
        let traffic: Vec<String> = self
            .traffic
            .iter()
            .map(|(t, x)| {
                let removed = if x.removed > 0 {
                    format!(", {} removed", x.removed)
                } else {
                    String::new()
                };
                format!(
                    "{t} {} in {} responses{removed}",
                    size(x.bytes),
                    x.responses
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "received  {} ({})",
            size(self.bytes_received),
            traffic.join(", ")
        );
        if let Some(cp) = &self.control_plane {
            let rss =
                |s: &Option<ProcSample>| s.map(|s| mib(s.rss_kb)).unwrap_or_else(|| "-".into());
            let hwm = [cp.baseline, cp.after_sync, cp.end]
                .iter()
                .flatten()
                .map(|s| s.hwm_kb)
                .max()
                .unwrap_or(0);
            let _ = writeln!(
                o,
                "control plane pid {}: RSS {} before, {} synced, {} at end; peak (VmHWM) {}; {} KiB per client",
                cp.pid,
                rss(&cp.baseline),
                rss(&cp.after_sync),
                rss(&cp.end),
                mib(hwm),
                cp.rss_per_client_kb
                    .map(|k| format!("{k:.1}"))
                    .unwrap_or_else(|| "-".into())
            );
            let _ = writeln!(
                o,
                "control plane CPU: {} s connecting and syncing, {} s during changes",
                cp.cpu_sync_s
                    .map(|s| format!("{s:.1}"))
                    .unwrap_or_else(|| "-".into()),
                cp.cpu_changes_s
                    .map(|s| format!("{s:.1}"))
                    .unwrap_or_else(|| "-".into())
            );
        }
        let _ = writeln!(
            o,
            "loadgen: RSS {} (peak {}), {:.1} KiB per client, CPU {:.1} s ({:.1} s until synced)",
            mib(self.loadgen.rss_kb),
            mib(self.loadgen.hwm_kb),
            self.loadgen.rss_per_client_kb,
            self.loadgen.cpu_s,
            self.loadgen.cpu_sync_s
        );
        let m = &self.machine;
        let secs = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            o,
            "machine ({} cores): busy {} s until synced ({} s not shmesh or loadgen), {} s during changes ({} s other)",
            m.cores,
            secs(m.busy_sync_s),
            secs(m.other_sync_s),
            secs(m.busy_changes_s),
            secs(m.other_changes_s)
        );
        let e = &self.errors;
        let _ = writeln!(
            o,
            "errors: connect {}, stream {}, reconnects {} ({} streams ended by the server), NACKs sent {}",
            e.connect, e.stream, e.reconnects, e.server_closed, e.nacks
        );
        for (reason, count) in &e.reasons {
            let _ = writeln!(o, "  {count} x {reason}");
        }
        if let Some(e) = self.verify.as_ref().and_then(|v| v.error.as_ref()) {
            let _ = writeln!(o, "server view (/debug/proxies): unavailable: {e}");
        } else if let Some(v) = &self.verify {
            let _ = writeln!(
                o,
                "server view (/debug/proxies): {} fleet streams of {}, {} in sync, {} NACKed",
                v.fleet_streams, v.streams, v.in_sync, v.nacked
            );
            if v.per_admin.len() > 1 {
                let _ = writeln!(
                    o,
                    "  fleet streams per replica: {:?}, {} listed twice",
                    v.per_admin, v.duplicates
                );
            }
        }
        for e in &self.driver_errors {
            let _ = writeln!(o, "driver error: {e}");
        }
        let _ = writeln!(
            o,
            "result: {}",
            if self.complete {
                "complete"
            } else {
                "INCOMPLETE"
            }
        );
        o
    }
}
