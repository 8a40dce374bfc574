//! Wiring: starts the sources, the views task, the xDS server, the admin
//! server and the admission webhook, and runs the one-shot commands.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::info;

use crate::ca_service::{CertificateService, TokenReviewer};
use crate::config::{Api, BootstrapArgs, CaCommand, Command, ServeArgs, TranslateArgs};
use crate::identity::{CaOptions, Identities};
use crate::metrics::Metrics;
use crate::{admin, bootstrap, jsonpb, rollout, sources, views, webhook};
use shmesh_model::{analyze, Model};
use shmesh_translate as translate;
use shmesh_xds::listen::ConnectionAge;
use shmesh_xds::pacing::PushSlots;
use shmesh_xds::server::{AdsServer, Registry, Shared};

/// Runs a command; returns the process exit code.
pub async fn run(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Serve(args) => serve(args).await.map(|_| 0),
        Command::Validate { paths } => Ok(validate(&paths)),
        Command::Translate(args) => translate_cmd(args).map(|_| 0),
        Command::Bootstrap(args) => bootstrap_cmd(args).map(|_| 0),
        Command::ProxyStatus(args) => crate::proxy_status::run(args).await,
        Command::ProxyConfig(command) => crate::proxy_config::run(command).await,
        Command::Demo(args) => crate::demo::run(args).await.map(|_| 0),
        Command::Ca(CaCommand::Init { dir, organization }) => {
            crate::ca::Ca::create_root(&dir, &organization)?;
            println!(
                "wrote {} and {} (keep the key secret)",
                dir.join("root-cert.pem").display(),
                dir.join("root-key.pem").display()
            );
            Ok(0)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    build(args).await?.run_until(shutdown_signal()).await;
    info!("shut down");
    Ok(())
}

/// A running `shmesh serve`: the addresses it bound, what tests and tools may
/// read of it, and the way to stop it.
pub struct Bound {
    pub xds_addr: SocketAddr,
    /// xDS over TLS, served when shmesh has a CA.
    pub xds_tls_addr: Option<SocketAddr>,
    /// The admission webhook, served when shmesh has its certificate.
    pub webhook_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub views: Arc<views::Views>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// Records the fleet in the state directory (`--state-dir`).
    save_fleet: Option<JoinHandle<()>>,
    /// Tells the xDS listeners to stop.
    stop_xds: watch::Sender<bool>,
    /// The xDS listeners: each returns once its connections have drained.
    xds: Vec<JoinHandle<()>>,
    /// Sources, the views task, the status writer, the admin server and the
    /// admission webhook.
    tasks: JoinSet<()>,
}

impl Bound {
    /// Serves until `signal` completes, then shuts down.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }

    /// Stops accepting proxies, tells the connected ones to go (HTTP/2
    /// GOAWAY) and gives their streams a moment to end, then stops every task.
    pub async fn shutdown(mut self) {
        // The fleet leaving now is not the fleet to wait for after a restart.
        if let Some(saver) = &self.save_fleet {
            saver.abort();
        }
        let _ = self.stop_xds.send(true);
        for listener in self.xds {
            let _ = listener.await;
        }
        self.tasks.shutdown().await;
    }
}

/// Starts everything `shmesh serve` runs: the sources, the views task, the
/// status writer in Kubernetes mode, the admin server and the xDS server.
/// Returns once both addresses are bound.
pub async fn build(args: ServeArgs) -> anyhow::Result<Bound> {
    if args.config_dirs.is_empty() && !args.kubernetes {
        anyhow::bail!("nothing to serve: give --config-dir DIR and/or --kubernetes");
    }
    for dir in &args.config_dirs {
        if !dir.exists() {
            anyhow::bail!("--config-dir {}: no such file or directory", dir.display());
        }
    }
    let metrics = Arc::new(Metrics::default());
    let registry = Arc::new(Registry::default());
    let mut tasks = JoinSet::new();
    // The views task answers no proxy until every source named here has synced.
    let mut names = BTreeSet::new();
    if !args.config_dirs.is_empty() {
        names.insert(sources::files::SOURCE);
    }
    if args.kubernetes {
        names.insert(crate::kubernetes::SOURCE);
    }
    let identities = match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => {
            let options = CaOptions {
                cert: cert.clone(),
                key: key.clone(),
                also_trusted: args.ca_trust.clone(),
                trust_domain: args.trust_domain.clone(),
                workload_lifetime: args.workload_cert_ttl,
            };
            Some(Arc::new(Identities::load(
                &options,
                metrics.identity.clone(),
            )?))
        }
        _ => None,
    };
    let kube_client = match args.kubernetes {
        true => Some(kubernetes_client().await?),
        false => None,
    };
    // Bearer tokens are checked by the API server, so only in Kubernetes mode.
    let reviewer = kube_client.clone().map(TokenReviewer::new);
    let (views, updates, views_task) = views::new(
        names,
        args.debounce,
        args.vhds,
        views::MeshSettings {
            trust_domain: args.trust_domain.clone(),
            tracing: args.tracing(),
        },
        identities.clone(),
        reviewer.clone(),
        metrics.clone(),
    );
    tasks.spawn(views_task);
    // Rollout waits for the proxies the previous process served to return.
    let mut save_fleet = None;
    if let Some(dir) = &args.state_dir {
        let before = crate::state::Fleet::load(dir).map_or(0, |f| f.proxies);
        if before > 0 {
            info!(
                proxies = before,
                "served before this restart; rollout waits for them to reconnect"
            );
        }
        views.set_fleet_gate(rollout::FleetGate::new(before, args.reconnect_grace));
        save_fleet = Some(tokio::spawn(rollout::save_fleet(
            registry.clone(),
            dir.clone(),
        )));
    }
    tasks.spawn(rollout::measure(
        views.clone(),
        registry.clone(),
        metrics.clone(),
    ));
    if !args.config_dirs.is_empty() {
        tasks.spawn(sources::files::run(
            args.config_dirs.clone(),
            args.state_dir.clone(),
            updates.clone(),
            metrics.clone(),
        ));
    }
    if let Some(client) = kube_client.clone() {
        tasks.spawn(sources::kube::run(
            client.clone(),
            args.watch_namespaces.clone(),
            identities.is_some(),
            args.state_dir.clone(),
            updates.clone(),
            metrics.clone(),
        ));
        if !args.no_status {
            tasks.spawn(status_writer(
                &args,
                client,
                views.clone(),
                registry.clone(),
            ));
        }
    }

    match crate::fd_limit::raise_fd_limit(0) {
        Ok(lim) => info!(
            limit = lim.soft,
            "file descriptors (one per proxy connection)"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the file descriptor limit"),
    }
    let xds = bind_xds(args.xds_addr)
        .with_context(|| format!("binding xDS address {}", args.xds_addr))?;
    let admin_listener = admin::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding admin address {}", args.admin_addr))?;
    let xds_addr = xds.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let xds_tls = match &identities {
        Some(ids) => {
            let listener = bind_xds(args.xds_tls_addr)
                .with_context(|| format!("binding xDS TLS address {}", args.xds_tls_addr))?;
            let config = crate::identity::xds_tls(ids, &args.xds_tls_names)
                .context("the xDS TLS listener's certificate")?;
            Some((listener, tokio_rustls::TlsAcceptor::from(config)))
        }
        None => None,
    };
    let xds_tls_addr = match &xds_tls {
        Some((listener, _)) => Some(listener.local_addr()?),
        None => None,
    };
    let webhook = match (&args.webhook_cert, &args.webhook_key) {
        (Some(cert), Some(key)) => {
            let listener = tokio::net::TcpListener::bind(args.webhook_addr)
                .await
                .with_context(|| format!("binding webhook address {}", args.webhook_addr))?;
            let certificate = Arc::new(webhook::certificate::CertificateFiles::new(
                cert.clone(),
                key.clone(),
                Arc::new(rustls::crypto::ring::default_provider()),
            ));
            // Read before the address is published, so a certificate that
            // is there is served from the first connection.
            certificate.refresh();
            let tls = webhook::tls_acceptor(certificate.clone())?;
            Some((listener, certificate, tls))
        }
        _ => None,
    };
    let webhook_addr = match &webhook {
        Some((listener, _, _)) => Some(listener.local_addr()?),
        None => None,
    };
    info!(%xds_addr, ?xds_tls_addr, %admin_addr, ?webhook_addr, "shmesh serving");
    if let Some(path) = &args.address_file {
        let mut text = format!("xds={xds_addr}\nadmin={admin_addr}\n");
        if let Some(addr) = xds_tls_addr {
            text.push_str(&format!("xds_tls={addr}\n"));
        }
        if let Some(addr) = webhook_addr {
            text.push_str(&format!("webhook={addr}\n"));
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    tasks.spawn(admin::serve(
        admin_listener,
        Arc::new(admin::AdminState {
            views: views.clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            instance: instance_name(&args),
        }),
    ));
    if let Some((listener, certificate, tls)) = webhook {
        tasks.spawn(certificate.watch());
        tasks.spawn(webhook::serve(listener, tls, metrics.webhook.clone()));
    }
    let push_slots = PushSlots::new(args.push_slots, args.push_ack_timeout, metrics.xds.clone());
    let shared = Arc::new(Shared {
        views: views.clone(),
        metrics: metrics.xds.clone(),
        registry: registry.clone(),
        control_plane: format!("shmesh-{}", env!("CARGO_PKG_VERSION")),
        push_slots,
        name_sets: Arc::default(),
    });
    let (stop_xds, stopped) = watch::channel(false);
    let ads = AdsServer::new(shared);
    // The accept loops run on threads of their own, outside the runtime's
    // workers, as it did on the main thread when `serve` awaited it: on a
    // worker, a synced W1 fleet took 7 MiB more (docs/performance-notes.md,
    // Connections). Needs a multi-threaded runtime, whose workers drive I/O.
    let on_own_thread = |serve: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || runtime.block_on(serve))
    };
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let age = args.max_connection_age.map(|max| ConnectionAge {
        max,
        grace: args.max_connection_age_grace,
    });
    info!(?age, "maximum xDS connection age");
    let mut xds = vec![on_own_thread(Box::pin(shmesh_xds::listen::serve(
        xds,
        ads.clone(),
        None,
        age,
        until_stopped(),
    )))];
    if let (Some((listener, acceptor)), Some(ids)) = (xds_tls, &identities) {
        // Istio's CA API beside ADS, as istiod serves both on 15012.
        let ca = CertificateService::new(ids.clone(), reviewer.clone(), metrics.identity.clone());
        let routes = tonic::service::Routes::new(ads.clone()).add_service(ca);
        xds.push(on_own_thread(Box::pin(shmesh_xds::listen::serve(
            listener,
            routes,
            Some(acceptor),
            age,
            until_stopped(),
        ))));
    }
    Ok(Bound {
        save_fleet,
        xds_addr,
        xds_tls_addr,
        webhook_addr,
        admin_addr,
        views,
        registry,
        metrics,
        stop_xds,
        xds,
        tasks,
    })
}

/// Elects one replica (by Lease) to write rollout status onto VirtualServices
/// and DestinationRules once every proxy has applied them.
fn status_writer(
    args: &ServeArgs,
    client: kube::Client,
    views: Arc<views::Views>,
    registry: Arc<Registry>,
) -> impl Future<Output = ()> + Send + 'static {
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    info!(%identity, lease_namespace = %args.lease_namespace, "status writer candidate");
    let leader = rollout::elect(client.clone(), args.lease_namespace.clone(), identity);
    rollout::write_status(client, views, registry, leader)
}

/// This instance's name, as istiod names itself to istioctl: the Pod's name
/// (`POD_NAME`, `--identity`), else the host's.
fn instance_name(args: &ServeArgs) -> String {
    args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        match host.trim() {
            "" => "shmesh".to_string(),
            host => host.to_string(),
        }
    })
}

/// Connects to the API server (in-cluster config, or KUBECONFIG).
async fn kubernetes_client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("--kubernetes: no in-cluster config and no usable KUBECONFIG")
}

/// How many connections may wait to be accepted: a fleet reconnecting after a
/// restart arrives all at once, and the kernel's default of 128 resets the rest.
const XDS_BACKLOG: u32 = 4096;

fn bind_xds(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(XDS_BACKLOG)
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Loads manifests into a model, as `serve` would at start-up.
pub(crate) fn load(paths: &[std::path::PathBuf]) -> (Model, Vec<shmesh_api::Problem>) {
    let (changes, mut problems) = sources::files::load_once(paths);
    let mut model = Model::new();
    model.apply(changes);
    problems.extend(analyze::analyze(&model));
    problems.sort();
    (model, problems)
}

fn validate(paths: &[std::path::PathBuf]) -> i32 {
    for p in paths {
        if !p.exists() {
            println!("{}: error: no such file or directory", p.display());
            return 1;
        }
    }
    let (_, problems) = load(paths);
    for p in &problems {
        println!("{p}");
    }
    if problems.iter().any(|p| p.is_error()) {
        1
    } else {
        0
    }
}

fn translate_cmd(args: TranslateArgs) -> anyhow::Result<()> {
    let (model, problems) = load(&args.config_dirs);
    for p in &problems {
        eprintln!("{p}");
    }
    let mut view = translate_view(&args)?;
    if let Some(ns) = args.namespace {
        view.namespace = ns;
    }
    let snapshot = translate::build(&model, &view);
    let dump = jsonpb::config_dump(&snapshot)?;
    println!("{}", serde_json::to_string_pretty(&dump)?);
    Ok(())
}

fn translate_view(args: &TranslateArgs) -> anyhow::Result<translate::ProxyView> {
    use envoy_types::pb::envoy::config::core::v3::Node;
    let node = Node {
        id: args.node.clone(),
        user_agent_name: if args.proxyless {
            "gRPC".into()
        } else {
            "envoy".into()
        },
        ..Default::default()
    };
    let mut view = shmesh_translate::node::view_of(&node).map_err(anyhow::Error::msg)?;
    if let Some(addr) = args.outbound_listener {
        view.mode = translate::ListenerMode::Explicit(addr);
    }
    Ok(view)
}

fn bootstrap_cmd(args: BootstrapArgs) -> anyhow::Result<()> {
    if args.token_file.is_some() && args.xds_addr.len() > 1 {
        anyhow::bail!(
            "--token-file takes a single --xds-addr (Envoy's Google gRPC client dials one target)"
        );
    }
    let credentials = match (&args.credentials_dir, &args.ca_cert, &args.ca_key) {
        (Some(dir), Some(cert), Some(key)) => {
            let ca = crate::ca::Ca::load(cert, key, &[])?;
            let namespace = args.namespace.as_deref().unwrap_or_default();
            let service_account = args.service_account.as_deref().unwrap_or_default();
            let id = translate::tls::spiffe_id(&args.trust_domain, namespace, service_account);
            bootstrap::write_credentials(&ca, &id, args.credentials_ttl, dir)?;
            // Envoy reads the files from wherever it runs.
            let dir = std::fs::canonicalize(dir)?;
            eprintln!("wrote credentials for {id} into {}", dir.display());
            Some(bootstrap::Credentials::in_dir(&dir, &args.xds_tls_name))
        }
        _ => None,
    };
    let prometheus_addr = args.prometheus_addr.0;
    if prometheus_addr.is_some() && args.admin_addr.port() == 0 {
        anyhow::bail!(
            "--prometheus-addr passes /stats/prometheus to the admin, whose port must be known: \
             give --admin-addr a port other than 0, or --prometheus-addr none"
        );
    }
    let opts = bootstrap::Options {
        node_id: args.node,
        cluster: args.cluster,
        namespace: args.namespace,
        xds_addrs: args.xds_addr,
        delta: args.api == Api::Delta,
        outbound_listener: args.outbound_listener,
        admin_addr: args.admin_addr,
        labels: args.labels.into_iter().collect(),
        instance_ip: args.ip,
        credentials,
        token: match (args.token_file, args.xds_root_cert) {
            (Some(token), Some(root)) => Some(bootstrap::TokenProof {
                token,
                root,
                server_name: args.xds_tls_name,
            }),
            _ => None,
        },
        prometheus_addr,
    };
    let json = bootstrap::bootstrap_json(&opts)?;
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
