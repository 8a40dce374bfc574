//! `shmesh demo`: a whole mesh on one machine, to watch an edit to the
//! manifests move traffic.
//!
//! It serves a directory of manifests (by default `examples/bookinfo`) with
//! shmesh in-process, as `shmesh serve` would but on ports the OS picks;
//! starts a server on every endpoint address the manifests declare, answering
//! with its workload's identity ([`workloads`]); starts a real Envoy
//! bootstrapped to shmesh with an outbound listener ([`envoy`]); and sends
//! requests to every service through that Envoy ([`traffic`]), printing who
//! answered, per service, every interval.
//!
//! The directory is served and watched as it is, so editing its files is how
//! a user changes the mesh. The demo prints each routing policy that changes
//! (from the views' record of policies in force) and, once Envoy has applied
//! it (the xDS registry's rollout record), counts answers afresh, so the
//! split shown is the new configuration's.

pub mod envoy;
pub mod traffic;
pub mod workloads;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Parser;
use tokio::task::JoinHandle;
use tokio::time::{interval, interval_at, Instant, MissedTickBehavior};

use crate::app::{self, Bound};
use crate::bootstrap;
use crate::config::{Cli, Command, DemoArgs, ServeArgs};
use crate::views::PolicyInfo;
use shmesh_api::virtual_service::VirtualServiceSpec;
use shmesh_api::Kind;
use shmesh_model::{Model, Policy};
use workloads::{Declared, Target};

/// How often the demo looks for changed policies, problems and files.
const WATCH_EVERY: Duration = Duration::from_millis(200);
/// How long the services may take to answer through Envoy at the start.
const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the demo until Ctrl-C (or SIGTERM), or for `--duration`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = args.config_dir.clone();
    if !dir.is_dir() {
        anyhow::bail!(
            "{}: no such directory (run the demo from the repository root, or give --config-dir DIR)",
            dir.display()
        );
    }
    let dir = std::fs::canonicalize(&dir)?;
    let envoy_bin = args.envoy.clone().or_else(|| {
        std::env::var_os("ENVOY_BIN")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let envoy_bin = envoy::find(envoy_bin.as_deref())?;

    let (model, problems) = app::load(std::slice::from_ref(&dir));
    for problem in &problems {
        println!("problem: {problem}");
    }
    let declared = workloads::declared(&model);
    if declared.targets.is_empty() {
        anyhow::bail!(
            "{}: no service has an endpoint on a loopback address (127.0.0.x) for the demo to run",
            dir.display()
        );
    }
    let mut servers = workloads::Servers::default();
    let started = servers.reconcile(&declared.workloads).await;
    if let Some((workload, e)) = started.failed.first() {
        anyhow::bail!(
            "cannot listen on {} for {}: {e} (is another demo running?)",
            workload.addr,
            workload.identity
        );
    }

    let shmesh = app::build(serve_args(&dir)?).await?;
    let scratch = tempfile::Builder::new().prefix("shmesh-demo-").tempdir()?;
    let namespace = namespace_of(&declared.targets);
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let bootstrap = bootstrap::bootstrap_json(&bootstrap::Options {
        node_id: "shmesh-demo".to_string(),
        cluster: None,
        namespace: Some(namespace.clone()),
        xds_addrs: vec![shmesh.xds_addr],
        delta: true,
        outbound_listener: Some(any_port),
        admin_addr: any_port,
        labels: BTreeMap::new(),
        instance_ip: None,
        credentials: None,
        token: None,
        // 15090 may be taken; the demo does not scrape Envoy.
        prometheus_addr: None,
    })?;
    let client = traffic::client();
    // Ctrl-C (or the end of --duration) while Envoy starts stops the demo
    // too: Envoy is dropped, which kills it.
    let stop = stop_after(args.duration);
    tokio::pin!(stop);
    let start_envoy = async {
        let mut envoy = envoy::Envoy::start(&envoy_bin, &bootstrap, scratch.path()).await?;
        let listener = envoy.listener(&client).await?;
        first_answers(&client, listener, &declared.targets).await;
        anyhow::Ok((envoy, listener))
    };
    let (mut envoy, listener) = tokio::select! {
        started = start_envoy => started?,
        _ = &mut stop => {
            shmesh.shutdown().await;
            servers.stop().await;
            println!("stopped while Envoy was starting");
            return Ok(());
        }
    };

    introduce(
        &dir, &model, &declared, &shmesh, &envoy, &envoy_bin, listener, &namespace,
    );
    let mut demo = Demo {
        policies: shmesh.views.policies(),
        problems: problem_lines(&shmesh),
        files: files_of(&dir),
        dir,
        shmesh,
        client,
        listener,
        rate: args.rate,
        tally: Arc::new(traffic::Tally::default()),
        loops: BTreeMap::new(),
        servers,
        waiting: BTreeMap::new(),
    };
    demo.follow(declared.targets);

    let begun = Instant::now();
    let mut splits = interval_at(begun + args.interval, args.interval);
    splits.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut looks = interval(WATCH_EVERY);
    looks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let outcome = loop {
        tokio::select! {
            _ = &mut stop => break Ok(()),
            why = envoy.exited_by_itself() => break Err(anyhow::anyhow!(why)),
            _ = splits.tick() => {
                let line = traffic::split_line(&demo.tally.counts());
                println!("{:>4}s {line}", begun.elapsed().as_secs());
            }
            _ = looks.tick() => demo.look().await,
        }
    };
    let ran = begun.elapsed();
    for (_, task) in std::mem::take(&mut demo.loops) {
        task.abort();
    }
    envoy.stop().await;
    demo.shmesh.shutdown().await;
    demo.servers.stop().await;
    println!(
        "stopped after {}s: Envoy, shmesh and the workloads are gone",
        ran.as_secs()
    );
    outcome
}

/// `shmesh serve --config-dir DIR` on loopback ports the OS picks, with
/// every other flag at its default.
fn serve_args(dir: &Path) -> anyhow::Result<ServeArgs> {
    let cli = Cli::try_parse_from([
        "shmesh".as_ref(),
        "serve".as_ref(),
        "--config-dir".as_ref(),
        dir.as_os_str(),
        "--xds-addr".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--admin-addr".as_ref(),
        "127.0.0.1:0".as_ref(),
    ])?;
    match cli.command {
        Command::Serve(args) => Ok(args),
        other => anyhow::bail!("`serve` parsed as {other:?}"),
    }
}

/// The namespace most services are in: the demo's Envoy is a proxy there,
/// so their short names resolve.
fn namespace_of(targets: &[Target]) -> String {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for t in targets {
        *count.entry(&t.namespace).or_default() += 1;
    }
    count
        .into_iter()
        .max_by_key(|(ns, n)| (*n, std::cmp::Reverse(*ns)))
        .map_or_else(|| "default".to_string(), |(ns, _)| ns.to_string())
}

/// Waits (a bounded time) until every service answers through Envoy, so the
/// first split is not Envoy still receiving its routes.
async fn first_answers(client: &traffic::Client, listener: SocketAddr, targets: &[Target]) {
    let deadline = Instant::now() + FIRST_ANSWER_TIMEOUT;
    let url = format!("http://{listener}/");
    for target in targets {
        loop {
            let answer = traffic::get(client, &url, Some(&target.authority)).await;
            match answer {
                Ok((status, _)) if status.is_success() => break,
                _ if Instant::now() > deadline => {
                    let why = match answer {
                        Ok((status, _)) => format!("HTTP {}", status.as_u16()),
                        Err(e) => e.to_string(),
                    };
                    println!(
                        "warning: {} does not answer through Envoy ({why})",
                        target.service
                    );
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// Says what runs where, what to edit and how to send a request oneself.
#[allow(clippy::too_many_arguments)]
fn introduce(
    dir: &Path,
    model: &Model,
    declared: &Declared,
    shmesh: &Bound,
    envoy: &envoy::Envoy,
    envoy_bin: &Path,
    listener: SocketAddr,
    namespace: &str,
) {
    println!("shmesh demo: serving {}", dir.display());
    let split = split_to_edit(model);
    match &split {
        Some(vs) => println!(
            "  edit the weights of VirtualService {}/{} in {} and watch the split move",
            vs.namespace,
            vs.name,
            model
                .origin(Kind::VirtualService, &vs.namespace, &vs.name)
                .source
        ),
        None => println!("  edit its files and watch the traffic follow"),
    }
    println!(
        "shmesh: xDS on {}, admin on http://{} (/debug/rollout, /debug/problems)",
        shmesh.xds_addr, shmesh.admin_addr
    );
    let workloads: Vec<String> = declared
        .workloads
        .values()
        .map(|w| {
            let draining = if w.draining { " (draining)" } else { "" };
            format!("{} {}{draining}", w.identity, w.addr)
        })
        .collect();
    println!("workloads: {}", workloads.join(", "));
    for skipped in &declared.skipped {
        println!("  not run: {skipped}");
    }
    println!(
        "envoy: {} (pid {}, log {}), outbound listener {listener}",
        envoy_bin.display(),
        envoy.pid,
        envoy.log.display()
    );
    // A service the split above routes, else any.
    let routed = |t: &&Target| {
        split.is_some_and(|vs| {
            vs.hosts
                .iter()
                .any(|h| t.authority.starts_with(&format!("{h}:")))
        })
    };
    let shown = declared.targets.iter().find(routed);
    if let Some(target) = shown.or(declared.targets.first()) {
        let host = match target.namespace == namespace {
            true => &target.short_authority,
            false => &target.authority,
        };
        println!("  try: curl -H 'Host: {host}' http://{listener}/");
    }
    println!("answers per service since the last change Envoy applied (Ctrl-C stops):");
}

/// The first VirtualService that splits traffic by weight, else the first.
fn split_to_edit(model: &Model) -> Option<&Policy<VirtualServiceSpec>> {
    let weighted = |vs: &&Arc<Policy<VirtualServiceSpec>>| {
        vs.spec.http.iter().any(|rule| rule.route.len() > 1)
    };
    model
        .virtual_services()
        .find(weighted)
        .or_else(|| model.virtual_services().next())
        .map(Arc::as_ref)
}

/// Completes on Ctrl-C or SIGTERM, or after `duration`.
async fn stop_after(duration: Option<Duration>) {
    match duration {
        Some(duration) => {
            tokio::select! {
                _ = tokio::time::sleep(duration) => {}
                _ = app::shutdown_signal() => {}
            }
        }
        None => app::shutdown_signal().await,
    }
}

/// The running demo's state, between looks.
struct Demo {
    dir: PathBuf,
    shmesh: Bound,
    client: traffic::Client,
    listener: SocketAddr,
    rate: u32,
    tally: Arc<traffic::Tally>,
    /// A request loop per service port.
    loops: BTreeMap<Target, JoinHandle<()>>,
    servers: workloads::Servers,
    /// The policies in force when last looked at.
    policies: Arc<BTreeMap<String, PolicyInfo>>,
    /// Changed policies Envoy has not applied yet.
    waiting: BTreeMap<String, PolicyInfo>,
    /// Problems already shown.
    problems: BTreeSet<String>,
    /// The manifest files as last seen (path, size, modification time).
    files: Vec<(PathBuf, u64, Option<SystemTime>)>,
}

impl Demo {
    /// Sends requests to exactly `targets`.
    fn follow(&mut self, targets: Vec<Target>) {
        let wanted: BTreeSet<Target> = targets.into_iter().collect();
        self.loops.retain(|target, task| {
            let keep = wanted.contains(target);
            if !keep {
                task.abort();
            }
            keep
        });
        for target in wanted {
            if self.loops.contains_key(&target) {
                continue;
            }
            let task = traffic::spawn(
                self.client.clone(),
                self.listener,
                target.clone(),
                self.rate,
                self.tally.clone(),
            );
            self.loops.insert(target, task);
        }
    }

    /// Reports changed policies, Envoy applying them, new problems, and
    /// starts or stops workloads when the manifests' files changed.
    async fn look(&mut self) {
        let policies = self.shmesh.views.policies();
        if !Arc::ptr_eq(&policies, &self.policies) {
            for (key, info) in changed(&self.policies, &policies) {
                match info {
                    Some(info) => {
                        println!(
                            "change: {} {}/{} ({}) is now version {}",
                            info.kind,
                            info.namespace,
                            info.name,
                            info.source,
                            short(&info.stamp.version)
                        );
                        self.waiting.insert(key, info.clone());
                    }
                    None => {
                        println!("change: {key} removed");
                        self.waiting.remove(&key);
                        self.tally.reset();
                    }
                }
            }
            self.policies = policies;
        }
        let mut applied = Vec::new();
        for (key, info) in &self.waiting {
            let report = crate::rollout::report(
                &self.shmesh.views,
                &self.shmesh.registry,
                info.kind,
                &info.namespace,
                &info.name,
            );
            let live = report
                .is_some_and(|r| r.version == *info.stamp.version && r.live && !r.acked.is_empty());
            if live {
                applied.push(key.clone());
                println!(
                    "applied: {} {}/{} version {} is live on Envoy; counting afresh",
                    info.kind,
                    info.namespace,
                    info.name,
                    short(&info.stamp.version)
                );
            }
        }
        if !applied.is_empty() {
            self.tally.reset();
        }
        for key in applied {
            self.waiting.remove(&key);
        }
        let problems = problem_lines(&self.shmesh);
        for line in problems.difference(&self.problems) {
            println!("problem: {line}");
        }
        self.problems = problems;
        let files = files_of(&self.dir);
        if files != self.files {
            self.files = files;
            self.reload().await;
        }
    }

    /// Reads the manifests again for their workloads and services.
    async fn reload(&mut self) {
        let (model, _) = app::load(std::slice::from_ref(&self.dir));
        let declared = workloads::declared(&model);
        let done = self.servers.reconcile(&declared.workloads).await;
        for w in &done.stopped {
            println!("workload: stopped {} {}", w.identity, w.addr);
        }
        for w in &done.started {
            println!("workload: started {} {}", w.identity, w.addr);
        }
        for (w, e) in &done.failed {
            println!(
                "workload: cannot listen on {} for {}: {e}",
                w.addr, w.identity
            );
        }
        self.follow(declared.targets);
    }
}

/// Every problem shmesh reports now (errors and warnings).
fn problem_lines(shmesh: &Bound) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    if let Ok(by_source) = shmesh.views.problems.lock() {
        lines.extend(by_source.values().flatten().map(ToString::to_string));
    }
    if let Ok(warnings) = shmesh.views.warnings.lock() {
        lines.extend(warnings.iter().map(ToString::to_string));
    }
    lines
}

/// Policies added or changed (`Some`) and removed (`None`), by key.
fn changed(
    before: &BTreeMap<String, PolicyInfo>,
    after: &BTreeMap<String, PolicyInfo>,
) -> Vec<(String, Option<PolicyInfo>)> {
    let mut out: Vec<(String, Option<PolicyInfo>)> = after
        .iter()
        .filter(|(key, info)| before.get(*key).map(|b| &b.stamp) != Some(&info.stamp))
        .map(|(key, info)| (key.clone(), Some(info.clone())))
        .collect();
    out.extend(
        before
            .keys()
            .filter(|key| !after.contains_key(*key))
            .map(|key| (key.clone(), None)),
    );
    out
}

/// The first characters of a content hash, enough to tell versions apart.
fn short(version: &str) -> &str {
    version.get(..8).unwrap_or(version)
}

/// The manifest files under `dir` (as the files source reads them: `.yaml`,
/// `.yml`, `.json`, hidden entries skipped, symlinks followed) with their
/// size and modification time: when this changes, the demo reads them again.
fn files_of(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                out.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmesh_cache::PolicyStamp;

    fn info(name: &str, version: &str) -> PolicyInfo {
        PolicyInfo {
            kind: Kind::VirtualService,
            namespace: "default".into(),
            name: name.into(),
            stamp: PolicyStamp {
                generation: None,
                version: version.into(),
            },
            source: "vs.yaml".into(),
            since: std::time::Instant::now(),
            routes: None,
        }
    }

    #[test]
    fn changes_are_added_changed_and_removed_policies() {
        let before = BTreeMap::from([
            ("a".to_string(), info("a", "1")),
            ("b".to_string(), info("b", "1")),
            ("c".to_string(), info("c", "1")),
        ]);
        let after = BTreeMap::from([
            ("a".to_string(), info("a", "1")),
            ("b".to_string(), info("b", "2")),
            ("d".to_string(), info("d", "1")),
        ]);
        let got: Vec<(String, Option<String>)> = changed(&before, &after)
            .into_iter()
            .map(|(k, i)| (k, i.map(|i| i.stamp.version.to_string())))
            .collect();
        assert_eq!(
            got,
            [
                ("b".to_string(), Some("2".to_string())),
                ("d".to_string(), Some("1".to_string())),
                ("c".to_string(), None),
            ]
        );
    }

    #[test]
    fn the_demo_namespace_is_the_most_common() {
        let target = |ns: &str| Target {
            service: "s".into(),
            namespace: ns.into(),
            authority: format!("s.{ns}:80"),
            short_authority: "s:80".into(),
        };
        assert_eq!(
            namespace_of(&[target("shop"), target("default"), target("shop")]),
            "shop"
        );
        assert_eq!(namespace_of(&[]), "default");
    }
}
