//! Runs the real `shmesh serve` binary on a directory of manifests (or with
//! any arguments, e.g. `--kubernetes`), on ports the OS picks, and builds
//! Envoy bootstraps that point at it.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmesh::bootstrap::{bootstrap_json, Options};

use super::netns::Netns;

pub struct Shmesh {
    child: Child,
    pub xds: SocketAddr,
    /// xDS over TLS, when shmesh was given a CA.
    pub xds_tls: Option<SocketAddr>,
    /// The admission webhook, when shmesh was given its certificate.
    pub webhook: Option<SocketAddr>,
    pub admin: SocketAddr,
    log: PathBuf,
    /// Where the admin interface is reached (the test's own namespace when `None`).
    netns: Option<Netns>,
    /// What it was started with, for `restart`.
    args: Vec<std::ffi::OsString>,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Shmesh {
    /// Starts `shmesh serve --config-dir <dir>` and waits until it is ready.
    pub fn start(config_dir: &Path) -> Shmesh {
        Self::start_with(config_dir, &[])
    }

    pub fn start_with(config_dir: &Path, extra: &[&str]) -> Shmesh {
        let mut args = vec![OsStr::new("--config-dir"), config_dir.as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        let me = Self::spawn(&args, &[]);
        me.wait_ready();
        me
    }

    /// Starts `shmesh serve ARGS` with extra environment variables (e.g.
    /// `KUBECONFIG`), xDS and admin on ports the OS picks, and returns once it
    /// has bound them, ready or not.
    pub fn spawn<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Shmesh {
        Self::spawn_at(None, "127.0.0.1", args, env)
    }

    /// Stops this shmesh and starts it again with the same arguments on the
    /// same xDS and admin addresses, as a restarted control plane comes
    /// back: its proxies reconnect to it. Returns once it is ready.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let addrs = (self.xds.to_string(), self.admin.to_string());
        let next = Self::spawn_on(
            self.netns.as_ref(),
            (&addrs.0, &addrs.1),
            &self.args.clone(),
            &env,
        );
        let _ = std::mem::replace(self, next);
        self.wait_ready();
    }

    /// `shmesh serve --config-dir <dir> EXTRA` on the given xDS and admin
    /// addresses (a replica whose address its clients knew before it
    /// started); ready when it returns.
    pub fn start_on(
        config_dir: &Path,
        extra: &[&str],
        (xds, admin): (SocketAddr, SocketAddr),
    ) -> Shmesh {
        let mut args = vec![OsStr::new("--config-dir"), config_dir.as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        let addrs = (xds.to_string(), admin.to_string());
        let me = Self::spawn_on(None, (&addrs.0, &addrs.1), &args, &[]);
        me.wait_ready();
        me
    }

    /// `shmesh serve --config-dir <dir>` inside network namespace `netns`
    /// (a test cluster's node), serving on `ip`; ready when it returns.
    pub fn start_in(netns: &Netns, ip: &str, config_dir: &Path, extra: &[&str]) -> Shmesh {
        let mut args = vec![OsStr::new("--config-dir"), config_dir.as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        let me = Self::spawn_at(Some(netns), ip, &args, &[]);
        me.wait_ready();
        me
    }

    fn spawn_at<S: AsRef<OsStr>>(
        netns: Option<&Netns>,
        ip: &str,
        args: &[S],
        env: &[(&str, &str)],
    ) -> Shmesh {
        let any_port = format!("{ip}:0");
        Self::spawn_on(netns, (&any_port, &any_port), args, env)
    }

    /// Starts `shmesh serve ARGS` with xDS and admin on `(xds, admin)`.
    fn spawn_on<S: AsRef<OsStr>>(
        netns: Option<&Netns>,
        (xds, admin): (&str, &str),
        args: &[S],
        env: &[(&str, &str)],
    ) -> Shmesh {
        let dir = tempfile::tempdir().expect("tempdir for shmesh");
        let addr_file = dir.path().join("addresses");
        let log = dir.path().join("shmesh.log");
        let log_file = std::fs::File::create(&log).expect("create shmesh log");
        let mut command = match netns {
            Some(netns) => netns.command(super::shmesh_binary()),
            None => Command::new(super::shmesh_binary()),
        };
        let child = command
            .arg("serve")
            .args(args)
            .args(["--xds-addr", xds, "--admin-addr", admin, "--address-file"])
            .arg(&addr_file)
            .env("SHMESH_LOG", "info,shmesh=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn shmesh");
        let mut me = Shmesh {
            child,
            xds: "0.0.0.0:0".parse().expect("addr"),
            xds_tls: None,
            webhook: None,
            admin: "0.0.0.0:0".parse().expect("addr"),
            log,
            netns: netns.cloned(),
            args: args.iter().map(|a| a.as_ref().to_os_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                let get = |k: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(k))
                        .and_then(|v| v.parse::<SocketAddr>().ok())
                };
                if let (Some(x), Some(a)) = (get("xds="), get("admin=")) {
                    me.xds = x;
                    me.admin = a;
                    me.xds_tls = get("xds_tls=");
                    me.webhook = get("webhook=");
                    break;
                }
            }
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("shmesh exited early ({status}):\n{}", me.log());
            }
            assert!(
                Instant::now() < deadline,
                "shmesh did not start:\n{}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }

    /// Waits (30 s at most) until `/readyz` answers 200; panics otherwise.
    pub fn wait_ready(&self) {
        let ready = self.wait_until(Duration::from_secs(30), |s| s.admin_get("/readyz").0 == 200);
        assert!(ready, "shmesh never became ready:\n{}", self.log());
    }

    pub fn admin_get(&self, path: &str) -> (u16, String) {
        match super::http::http_request_in(
            self.netns.as_ref(),
            self.admin,
            "GET",
            "shmesh",
            path,
            &[],
            b"",
        ) {
            Ok(r) => (r.status, r.body),
            Err(_) => (0, String::new()),
        }
    }

    /// A counter from `/metrics`, summed over its labels (0 when absent).
    pub fn metric(&self, name: &str) -> u64 {
        let (status, body) = self.admin_get("/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_until(&self, timeout: Duration, mut f: impl FnMut(&Shmesh) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        f(self)
    }

    /// An Envoy bootstrap for a node of `namespace` with a bound outbound
    /// listener on `listener`, over delta or SotW ADS.
    pub fn bootstrap(
        &self,
        node: &str,
        namespace: &str,
        listener: SocketAddr,
        delta: bool,
    ) -> serde_json::Value {
        bootstrap_json(&Options {
            node_id: node.to_string(),
            cluster: None,
            namespace: Some(namespace.to_string()),
            xds_addrs: vec![self.xds],
            delta,
            outbound_listener: Some(listener),
            admin_addr: "127.0.0.1:0".parse().expect("addr"),
            labels: Default::default(),
            instance_ip: None,
            credentials: None,
            token: None,
            prometheus_addr: None,
        })
        .expect("bootstrap json")
    }

    /// A gateway proxy of `namespace` labelled `label` (`key=value`); with
    /// `credentials` (the CA's directory, and where to write its own), it proves
    /// service account `ingress` to shmesh's xDS TLS listener.
    pub fn gateway_proxy(
        &self,
        namespace: &str,
        label: &str,
        credentials: Option<(&Path, &Path)>,
        delta: bool,
    ) -> super::Envoy {
        let mut cmd = Command::new(super::shmesh_binary());
        cmd.args(["bootstrap", "--node"])
            .arg(format!(
                "router~127.0.0.1~gateway-1.{namespace}~{namespace}.svc.cluster.local"
            ))
            .args(["--namespace", namespace, "--label", label])
            .args(["--admin-addr", "127.0.0.1:0", "--prometheus-addr", "none"])
            .args(["--api", if delta { "delta" } else { "sotw" }]);
        match credentials {
            Some((ca, dir)) => {
                let tls = self.xds_tls.expect("xDS TLS listener");
                cmd.args([
                    "--xds-addr",
                    &tls.to_string(),
                    "--xds-tls-name",
                    "127.0.0.1",
                ])
                .arg("--credentials-dir")
                .arg(dir)
                .args(["--service-account", "ingress"])
                .arg("--ca-cert")
                .arg(ca.join("root-cert.pem"))
                .arg("--ca-key")
                .arg(ca.join("root-key.pem"));
            }
            None => {
                cmd.args(["--xds-addr", &self.xds.to_string()]);
            }
        }
        super::Envoy::start(&super::printed_bootstrap(&mut cmd))
    }
}

impl Drop for Shmesh {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- shmesh log ---\n{}", self.log());
        }
    }
}
