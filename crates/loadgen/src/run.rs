//! `shmesh-loadgen run`: connects the fleet at a bounded rate, waits for it
//! to sync, drives timed changes by rewriting files in the served mesh
//! directory, optionally asks the control plane's admin API whether every
//! stream is in sync, and builds the [`Report`].
//!
//! Inputs: the command line, the mesh directory (its spec from
//! `.meshgen.json`), `/proc` for the control plane's pid. Outputs: progress
//! on stderr every second, the report to the caller.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmesh_loadgen::meshgen::{self, MeshSpec, PendingChange};
use tokio::sync::watch;

use crate::client::{self, Api, Config, Identity};
use crate::fleet::{ChangeTrack, Fleet};
use crate::report::{ChangeReport, ControlPlane, Errors, Loadgen, Machine, Phase, Report, Traffic};
use crate::sys::{self, FdLimit};
use crate::verify;

/// What a driven change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChangeKind {
    /// Move one endpoint of a service to a new address (an EDS update).
    Endpoint,
    /// Shift a VirtualService's weights between two subsets (an RDS update).
    Weights,
    /// No changes.
    None,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The control plane's xDS address; for several replicas, each one's
    /// (repeatable, comma-separated). Every client connects to the first,
    /// then, whenever it reconnects (say at the server's maximum connection
    /// age), to one picked at random, as a Kubernetes Service does.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:15010")]
    pub xds: Vec<SocketAddr>,
    /// Number of simulated proxies (one connection and one ADS stream each).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// ADS flavour.
    #[arg(long, value_enum, default_value = "delta")]
    pub api: Api,
    /// Spread clients round-robin over namespaces ns-0..ns-(N-1).
    #[arg(long, default_value_t = 1, conflicts_with = "namespace")]
    pub namespaces: usize,
    /// Put every client in this one namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Local addresses to connect from, e.g. 127.0.0.2-127.0.0.31 (one port
    /// range each: past ~28,000 connections one address runs out of ports).
    #[arg(long)]
    pub source_ips: Option<String>,
    /// New clients per second.
    #[arg(long, default_value_t = 1000.0)]
    pub connect_rate: f64,
    /// Multiplex this many clients' ADS streams over one HTTP/2 connection.
    /// Envoy opens one connection per proxy (the default, 1); more lets a
    /// fleet exceed the file descriptors a process may have, measuring the
    /// control plane's per-stream costs at the price of its per-connection ones.
    #[arg(long, default_value_t = 1)]
    pub streams_per_connection: usize,
    /// The bound outbound listener every client asks for
    /// (SHMESH_OUTBOUND_LISTENER); the same for all so views are shared.
    #[arg(long, default_value = "127.0.0.1:15001")]
    pub listener: String,
    /// The directory the control plane serves, written by `gen-mesh`;
    /// needed to drive changes.
    #[arg(long)]
    pub mesh_dir: Option<PathBuf>,
    /// What each change does; a comma-separated list is used in turn
    /// (endpoint,weights).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "none")]
    pub change: Vec<ChangeKind>,
    /// Number of changes to drive, one at a time.
    #[arg(long, default_value_t = 0)]
    pub changes: usize,
    /// Pause after a change has converged (or timed out) before the next.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// How long to wait for one change to reach every expected client.
    #[arg(long, default_value_t = 10)]
    pub change_timeout_s: u64,
    /// The control plane's pid: its RSS, peak RSS and CPU from /proc.
    #[arg(long)]
    pub pid: Option<u32>,
    /// The control plane's admin address: check /debug/proxies at the end;
    /// for several replicas, each one's (repeatable, comma-separated): every
    /// client must then be on exactly one of them.
    #[arg(long, value_delimiter = ',')]
    pub admin: Vec<SocketAddr>,
    /// The control plane's debounce, for the report (latencies include it).
    #[arg(long, default_value_t = 100)]
    pub debounce_ms: u64,
    /// Keep the fleet connected this long after the changes (for profiling).
    #[arg(long, default_value_t = 0)]
    pub hold_s: u64,
    /// Print the report as JSON (one line) after the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// How long to wait for every client to sync before driving the changes
    /// anyway (default: the whole --timeout-s).
    #[arg(long)]
    pub sync_timeout_s: Option<u64>,
    /// Bound on the whole run, seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,
}

/// Runs the fleet; `Err` only for setup problems (bad arguments, unreadable
/// mesh directory), never for what the control plane did.
pub async fn run(args: &RunArgs, fd_limit: Option<FdLimit>) -> anyhow::Result<Report> {
    let n = args.clients;
    if n == 0 {
        anyhow::bail!("--clients must be at least 1");
    }
    let namespaces: Vec<Arc<str>> = match &args.namespace {
        Some(ns) => vec![ns.as_str().into()],
        None => (0..args.namespaces.max(1))
            .map(|i| MeshSpec::namespace(i).into())
            .collect(),
    };
    let ips: Vec<IpAddr> = match &args.source_ips {
        Some(r) => sys::parse_ip_range(r)?,
        None => Vec::new(),
    };
    let kinds: Vec<ChangeKind> = args
        .change
        .iter()
        .copied()
        .filter(|k| *k != ChangeKind::None)
        .collect();
    let changes = if kinds.is_empty() { 0 } else { args.changes };
    let spec = match (&args.mesh_dir, changes) {
        (Some(dir), _) => Some(
            meshgen::read_spec(dir)
                .map_err(|e| anyhow::anyhow!("{}: not a gen-mesh directory: {e}", dir.display()))?,
        ),
        (None, 0) => None,
        (None, _) => anyhow::bail!("--changes needs --mesh-dir"),
    };
    if args.connect_rate <= 0.0 {
        anyhow::bail!("--connect-rate must be positive");
    }
    if args.xds.is_empty() {
        anyhow::bail!("--xds needs an address");
    }
    if args.xds.len() > 1 && args.streams_per_connection > 1 {
        anyhow::bail!("--streams-per-connection needs a single --xds address");
    }
    let xds_list = args
        .xds
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");

    let fleet = Arc::new(Fleet::new(n));
    let cfg = Arc::new(Config {
        uris: args.xds.iter().map(|a| format!("http://{a}")).collect(),
        api: args.api,
        listener: args.listener.clone(),
        connect_timeout: Duration::from_secs(10),
    });
    let cp = match args.pid {
        Some(pid) => Some(Arc::new(
            sys::Sampler::open(&pid.to_string())
                .map_err(|e| anyhow::anyhow!("--pid {pid}: {e}"))?,
        )),
        None => None,
    };
    let me_sampler = sys::Sampler::open("self").map_err(|e| anyhow::anyhow!("/proc/self: {e}"))?;
    let machine = sys::MachineCpu::open().map_err(|e| anyhow::anyhow!("/proc/stat: {e}"))?;
    let cp_sample = || cp.as_ref().and_then(|s| s.sample());
    let baseline = cp_sample();
    let me_start = me_sampler.sample().unwrap_or_default();
    let busy_start = machine.busy_s();
    let deadline = fleet.start + Duration::from_secs(args.timeout_s);
    let (stop_tx, stop_rx) = watch::channel(false);
    eprintln!(
        "loadgen: {n} {} clients -> {} over {} namespace(s), {} source IP(s), {}/s",
        match args.api {
            Api::Sotw => "SotW",
            Api::Delta => "delta",
        },
        xds_list,
        namespaces.len(),
        ips.len().max(1),
        args.connect_rate
    );
    let progress = tokio::spawn(progress(fleet.clone(), n, cp.clone(), stop_rx.clone()));

    // Connect at the given rate: client i starts at i / rate seconds.
    let spawner = {
        let (fleet, cfg, namespaces, ips, stop_rx) = (
            fleet.clone(),
            cfg.clone(),
            namespaces.clone(),
            ips.clone(),
            stop_rx.clone(),
        );
        let rate = args.connect_rate;
        let per_connection = args.streams_per_connection.max(1);
        tokio::spawn(async move {
            let mut handles = Vec::with_capacity(n);
            let mut shared = None;
            for idx in 0..n {
                if *stop_rx.borrow() {
                    break;
                }
                let at = fleet.start + Duration::from_secs_f64(idx as f64 / rate);
                tokio::time::sleep_until(at.into()).await;
                let local_ip = (!ips.is_empty()).then(|| ips[(idx / per_connection) % ips.len()]);
                if per_connection > 1 && idx % per_connection == 0 {
                    // A lazy channel: it connects when the first stream opens.
                    shared = client::endpoint(&cfg, &cfg.uris[0], local_ip)
                        .ok()
                        .map(|e| e.connect_lazy());
                }
                let me = Identity {
                    idx,
                    namespace: namespaces[idx % namespaces.len()].clone(),
                    local_ip,
                    shared: (per_connection > 1).then(|| shared.clone()).flatten(),
                };
                handles.push(tokio::spawn(client::run(
                    fleet.clone(),
                    cfg.clone(),
                    me,
                    stop_rx.clone(),
                )));
            }
            handles
        })
    };

    // Sync phase.
    let sync_deadline = args.sync_timeout_s.map_or(deadline, |s| {
        (fleet.start + Duration::from_secs(s)).min(deadline)
    });
    wait_until(sync_deadline, || {
        fleet.counters.synced.load(Ordering::Relaxed) >= n
    })
    .await;
    let after_sync = cp_sample();
    let me_synced = me_sampler.sample().unwrap_or_default();
    let busy_synced = machine.busy_s();
    let synced_now = fleet.counters.synced.load(Ordering::Relaxed);
    if synced_now >= n {
        eprintln!(
            "loadgen: all {n} clients synced in {:.2} s",
            fleet.start.elapsed().as_secs_f64()
        );
    } else {
        eprintln!(
            "loadgen: only {synced_now} of {n} clients synced after {:.2} s; going on",
            fleet.start.elapsed().as_secs_f64()
        );
    }

    // Changes, one at a time.
    let mut reports = Vec::new();
    let mut driver_errors = Vec::new();
    if let (Some(spec), Some(dir)) = (&spec, &args.mesh_dir) {
        for k in 0..changes {
            if Instant::now() >= deadline {
                eprintln!(
                    "loadgen: --timeout-s reached; {} of {changes} changes made",
                    k
                );
                break;
            }
            let kind = kinds[k % kinds.len()];
            // A change that cannot be written (e.g. no file descriptor left
            // while the fleet holds them all) ends the changes, not the report.
            let pending = match prepare(dir, spec, kind, k, &namespaces) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("loadgen: {e}; no more changes");
                    driver_errors.push(e.to_string());
                    break;
                }
            };
            let ns_name: Arc<str> = pending.marker.namespace.as_str().into();
            let scope = spec.namespace_scoped.then(|| ns_name.clone());
            let expected = match &scope {
                Some(ns) => (0..n)
                    .filter(|i| namespaces[i % namespaces.len()] == *ns)
                    .count(),
                None => n,
            };
            let track = Arc::new(ChangeTrack::new(
                k,
                pending.marker.clone(),
                scope,
                n,
                expected,
            ));
            fleet.add_change(track.clone());
            let bytes_before = fleet.counters.total_bytes();
            let (t0, marker) = match pending.commit() {
                Ok(x) => x,
                Err(e) => {
                    let e = format!("renaming change {k} into place: {e}");
                    eprintln!("loadgen: {e}; no more changes");
                    driver_errors.push(e);
                    break;
                }
            };
            let _ = track.t0.set(fleet.us(t0));
            let until = (t0 + Duration::from_secs(args.change_timeout_s)).min(deadline);
            wait_until(until, || {
                track.converged.load(Ordering::Relaxed) >= expected
            })
            .await;
            let bytes = fleet.counters.total_bytes().saturating_sub(bytes_before);
            let report = change_report(&track, kind, fleet.us(t0), bytes);
            eprintln!(
                "loadgen: change {k} ({}): {}/{} converged, p99 {} ms",
                marker.describe(),
                report.converged,
                report.expected,
                report
                    .p99_ms
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into())
            );
            reports.push(report);
            let pause = Instant::now() + Duration::from_millis(args.interval_ms);
            tokio::time::sleep_until(pause.min(deadline).into()).await;
        }
    }

    let verified = match args.admin.is_empty() {
        false => {
            let left = deadline.saturating_duration_since(Instant::now());
            let bound = left
                .min(Duration::from_secs(10))
                .max(Duration::from_secs(1));
            Some(verify::check(&args.admin, n, bound).await)
        }
        true => None,
    };
    if args.hold_s > 0 {
        eprintln!("loadgen: holding the fleet for {} s", args.hold_s);
        let hold = Instant::now() + Duration::from_secs(args.hold_s);
        tokio::time::sleep_until(hold.into()).await;
    }
    let end = cp_sample();
    let me_end = me_sampler.sample().unwrap_or_default();
    let busy_end = machine.busy_s();
    let duration_s = fleet.start.elapsed().as_secs_f64();

    // Disconnect everyone, bounded.
    let _ = stop_tx.send(true);
    if let Ok(Ok(handles)) = tokio::time::timeout(Duration::from_secs(10), spawner).await {
        let all = futures::future::join_all(handles);
        let _ = tokio::time::timeout(Duration::from_secs(10), all).await;
    }
    let _ = progress.await;

    let times = |f: fn(&crate::fleet::ClientTimes) -> u64| -> (Vec<u64>, Option<u64>) {
        let mut durations = Vec::new();
        let mut last = None;
        for t in &fleet.times {
            let (start, at) = (t.started.load(Ordering::Relaxed), f(t));
            if start != 0 && at != 0 {
                durations.push(at.saturating_sub(start));
                last = last.max(Some(at));
            }
        }
        (durations, last)
    };
    let (open, last_open) = times(|t| t.open.load(Ordering::Relaxed));
    let (synced, last_synced) = times(|t| t.synced.load(Ordering::Relaxed));
    let c = &fleet.counters;
    let traffic = shmesh_cache::ResourceType::ALL
        .iter()
        .map(|t| {
            let i = t.index();
            (
                t.short(),
                Traffic {
                    responses: c.responses[i].load(Ordering::Relaxed),
                    resources: c.resources[i].load(Ordering::Relaxed),
                    removed: c.removed[i].load(Ordering::Relaxed),
                    bytes: c.bytes[i].load(Ordering::Relaxed),
                },
            )
        })
        .collect();
    let me = me_sampler.sample().unwrap_or_default();
    let control_plane = args.pid.map(|pid| ControlPlane {
        pid,
        baseline,
        after_sync,
        end,
        rss_per_client_kb: baseline
            .zip(after_sync)
            .map(|(b, s)| round2(s.rss_kb.saturating_sub(b.rss_kb) as f64 / n as f64)),
        cpu_sync_s: baseline
            .zip(after_sync)
            .map(|(b, s)| round2(s.cpu_s - b.cpu_s)),
        cpu_changes_s: after_sync.zip(end).map(|(s, e)| round2(e.cpu_s - s.cpu_s)),
    });
    // Busy time not spent by shmesh (when known) or by this simulator.
    let cp_cpu = |a: Option<sys::ProcSample>, b: Option<sys::ProcSample>| {
        a.zip(b).map_or(0.0, |(a, b)| b.cpu_s - a.cpu_s)
    };
    let busy_sync_s = busy_start.zip(busy_synced).map(|(a, b)| b - a);
    let busy_changes_s = busy_synced.zip(busy_end).map(|(a, b)| b - a);
    let machine = Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        busy_sync_s: busy_sync_s.map(round2),
        busy_changes_s: busy_changes_s.map(round2),
        other_sync_s: busy_sync_s.map(|b| {
            round2((b - cp_cpu(baseline, after_sync) - (me_synced.cpu_s - me_start.cpu_s)).max(0.0))
        }),
        other_changes_s: busy_changes_s.map(|b| {
            round2((b - cp_cpu(after_sync, end) - (me_end.cpu_s - me_synced.cpu_s)).max(0.0))
        }),
    };
    let sync = Phase::new(synced, last_synced, n);
    let complete = sync.done == n
        && reports.len() == changes
        && driver_errors.is_empty()
        && reports.iter().all(|r| r.missed == 0)
        && verified.as_ref().is_none_or(|v| v.ok(n));
    Ok(Report {
        api: args.api,
        clients: n,
        namespaces: namespaces.len(),
        xds: xds_list,
        source_ips: ips.len().max(1),
        streams_per_connection: args.streams_per_connection.max(1),
        fd_limit,
        connect: Phase::new(open, last_open, n),
        sync,
        debounce_ms: args.debounce_ms,
        changes: reports,
        bytes_received: c.total_bytes(),
        traffic,
        control_plane,
        loadgen: Loadgen {
            rss_kb: me.rss_kb,
            hwm_kb: me.hwm_kb,
            rss_per_client_kb: round2(me.rss_kb as f64 / n as f64),
            cpu_s: round2(me.cpu_s),
            cpu_sync_s: round2(me_synced.cpu_s),
            distinct_subscriptions: fleet.memo.distinct(),
        },
        machine,
        errors: Errors {
            connect: c.connect_errors.load(Ordering::Relaxed),
            stream: c.stream_errors.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            server_closed: c.server_closed.load(Ordering::Relaxed),
            nacks: c.nacks.load(Ordering::Relaxed),
            reasons: c.reasons(),
        },
        verify: verified,
        driver_errors,
        duration_s,
        complete,
    })
}

/// Rewrites (but does not yet rename into place) the file of the `k`-th
/// change. Targets rotate over the namespaces that have clients (every one
/// has some in an unscoped mesh), then services, then endpoints.
fn prepare(
    dir: &std::path::Path,
    spec: &MeshSpec,
    kind: ChangeKind,
    k: usize,
    client_namespaces: &[Arc<str>],
) -> anyhow::Result<PendingChange> {
    let with_clients: Vec<usize> = (0..spec.namespaces)
        .filter(|i| {
            let name = MeshSpec::namespace(*i);
            client_namespaces.iter().any(|n| **n == *name)
        })
        .collect();
    let pool: Vec<usize> = if with_clients.is_empty() {
        (0..spec.namespaces).collect()
    } else {
        with_clients
    };
    let generation =
        meshgen::next_generation(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let result = match kind {
        ChangeKind::Endpoint => {
            let ns = pool[k % pool.len()];
            let svc = (k / pool.len()) % spec.services_per_namespace;
            let ep = k % spec.endpoints_per_service;
            meshgen::prepare_move_endpoint(dir, ns, svc, ep, generation)
        }
        ChangeKind::Weights => {
            let target = (0..spec.virtual_services.max(1))
                .filter_map(|o| spec.virtual_service_target(k + o))
                .find(|(ns, _)| pool.contains(ns))
                .ok_or_else(|| anyhow::anyhow!("--change weights: no VirtualService in a namespace with clients (gen-mesh --virtual-services)"))?;
            meshgen::prepare_shift_weights(dir, target.0, target.1, generation)
        }
        ChangeKind::None => anyhow::bail!("no change to make"),
    };
    result.map_err(|e| anyhow::anyhow!("preparing change {k}: {e}"))
}

fn change_report(track: &ChangeTrack, kind: ChangeKind, t0_us: u64, bytes: u64) -> ChangeReport {
    let lat = track.latencies_us();
    let phase = Phase::new(lat, None, track.expected);
    let m = &track.marker;
    ChangeReport {
        index: track.index,
        kind: match kind {
            ChangeKind::Endpoint => "endpoint",
            ChangeKind::Weights => "weights",
            ChangeKind::None => "none",
        },
        target: format!("{}/{}", m.namespace, m.service),
        description: m.describe(),
        address: match &m.kind {
            meshgen::ChangeKind::Endpoint { address, .. } => Some(address.to_string()),
            meshgen::ChangeKind::Weights { .. } => None,
        },
        weights: match &m.kind {
            meshgen::ChangeKind::Weights { weights } => Some(*weights),
            meshgen::ChangeKind::Endpoint { .. } => None,
        },
        resource_type: m.resource_type.short(),
        at_s: t0_us as f64 / 1e6,
        expected: track.expected,
        converged: phase.done,
        missed: track.expected.saturating_sub(phase.done),
        p50_ms: phase.p50_ms,
        p99_ms: phase.p99_ms,
        max_ms: phase.max_ms,
        bytes,
        bytes_per_client: bytes / track.expected.max(1) as u64,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Polls `done` every 10 ms until it holds or `deadline` passes.
async fn wait_until(deadline: Instant, done: impl Fn() -> bool) {
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One line on stderr every second until `stop`.
async fn progress(
    fleet: Arc<Fleet>,
    n: usize,
    cp: Option<Arc<sys::Sampler>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let c = &fleet.counters;
        let cp = cp
            .as_ref()
            .and_then(|s| s.sample())
            .map(|s| {
                format!(
                    " | control plane RSS {:.0} MiB CPU {:.1} s",
                    s.rss_kb as f64 / 1024.0,
                    s.cpu_s
                )
            })
            .unwrap_or_default();
        eprintln!(
            "[{:6.1}s] open {}/{n} synced {}/{n} | errors connect {} stream {} reconnects {} (server closed {}) | rx {:.1} MB{cp}",
            fleet.start.elapsed().as_secs_f64(),
            c.open.load(Ordering::Relaxed),
            c.synced.load(Ordering::Relaxed),
            c.connect_errors.load(Ordering::Relaxed),
            c.stream_errors.load(Ordering::Relaxed),
            c.reconnects.load(Ordering::Relaxed),
            c.server_closed.load(Ordering::Relaxed),
            c.total_bytes() as f64 / 1e6,
        );
    }
}
