//! A proxyless gRPC client resolves a mesh service through shmesh and
//! completes calls.
//!
//! How: a Python gRPC server (`tests/grpc/greeter.py server`) listens on
//! 127.0.0.21 on a port the OS picks. A mesh directory holds a Service
//! `greeter` (port 50051, named `grpc`) whose EndpointSlice points at that
//! server, and `shmesh serve` runs on it. The Python client
//! (`tests/grpc/greeter.py client`) then calls `xds:///<name>:50051` with
//! `GRPC_XDS_BOOTSTRAP` naming a bootstrap that points at shmesh's xDS port:
//! grpcio's own xDS resolver fetches the Listener, RouteConfiguration, Cluster
//! and ClusterLoadAssignment over ADS, and every call must be answered by the
//! server. This is done for the FQDN and for the short names a client in
//! namespace `default` may use.
//!
//! Needs `python3`; installs `grpcio` with pip when it is missing, and fails
//! (rather than skips) if that is impossible. Each child process is killed
//! when the test ends, and every wait is bounded. On failure the client's
//! output and shmesh's log are printed; to see the xDS exchange from gRPC's
//! side, run with `GRPC_VERBOSITY=debug GRPC_TRACE=xds_client` (the client
//! inherits the environment).

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{mesh, Shmesh};
use serde_json::json;

/// Where the greeter server listens (port 0: the OS picks).
const SERVER_IP: &str = "127.0.0.21";
/// What the server answers every call with.
const SERVER_NAME: &str = "greeter-1";
/// The Service port clients dial (the server's real port differs).
const SERVICE_PORT: u16 = 50051;
/// Calls per client run.
const CALLS: usize = 5;
/// The client gives up on its own after this many seconds...
const CLIENT_DEADLINE_SECS: u64 = 30;
/// ...and is killed if it is still running after this.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on `pip install grpcio`.
const PIP_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on the server printing its port.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Proxy variables gRPC honours: loopback traffic must never go through a proxy.
const PROXY_VARS: &[&str] = &[
    "grpc_proxy",
    "http_proxy",
    "https_proxy",
    "GRPC_PROXY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
];

fn greeter_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc/greeter.py")
}

/// `python3 greeter.py <args>` without proxy settings.
fn greeter(args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(greeter_py()).args(args);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// A child process that is killed and reaped when dropped, so a failing test
/// leaves nothing running.
struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr going to `<dir>/<label>.stdout`
    /// and `.stderr` (files, not pipes: nothing blocks however much it writes).
    fn spawn(mut cmd: Command, dir: &Path, label: &str) -> (ChildGuard, Output) {
        let out = Output {
            stdout: dir.join(format!("{label}.stdout")),
            stderr: dir.join(format!("{label}.stderr")),
        };
        let stdout = File::create(&out.stdout).expect("create stdout file");
        let stderr = File::create(&out.stderr).expect("create stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        (ChildGuard { child }, out)
    }

    /// Waits up to `timeout` for the process to exit; kills it and returns
    /// `None` if it is still running then.
    fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return None;
                }
                Err(e) => panic!("waiting for child {}: {e}", self.child.id()),
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a child's output goes.
struct Output {
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Output {
    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Stderr, cut to its last 20 000 characters (gRPC traces can be long).
    fn stderr(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let chars: Vec<char> = text.chars().collect();
        match chars.len().checked_sub(20_000) {
            Some(skip) if skip > 0 => format!("[...]{}", chars[skip..].iter().collect::<String>()),
            _ => text,
        }
    }
}

/// A finished (or timed-out) run of a command.
struct Run {
    /// `None` when it was killed for running too long.
    status: Option<ExitStatus>,
    out: Output,
    elapsed: Duration,
}

impl Run {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    fn describe(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => format!("killed after {:?}", self.elapsed),
        };
        format!(
            "status: {status}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.out.stdout(),
            self.out.stderr()
        )
    }
}

/// Runs `cmd` to completion, killing it after `timeout`.
fn run_bounded(cmd: Command, dir: &Path, label: &str, timeout: Duration) -> Run {
    let start = Instant::now();
    let (mut child, out) = ChildGuard::spawn(cmd, dir, label);
    let status = child.wait_timeout(timeout);
    Run {
        status,
        out,
        elapsed: start.elapsed(),
    }
}

/// The installed grpcio version, installing grpcio with pip if needed.
fn ensure_grpcio(dir: &Path) -> String {
    let probe = || {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", "import grpc; print(grpc.__version__)"]);
        run_bounded(cmd, dir, "probe-grpcio", Duration::from_secs(60))
    };
    let first = probe();
    if first.ok() {
        return first.out.stdout().trim().to_string();
    }
    eprintln!("python3 cannot import grpc; installing grpcio with pip");
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip", "install", "--quiet", "grpcio"]);
    let install = run_bounded(cmd, dir, "pip-install", PIP_TIMEOUT);
    let second = probe();
    assert!(
        second.ok(),
        "this test needs Python's grpcio, and `python3 -m pip install grpcio` did not provide it\n\
         --- first import attempt ---\n{}\n--- pip install ---\n{}\n--- import after install ---\n{}",
        first.describe(),
        install.describe(),
        second.describe()
    );
    second.out.stdout().trim().to_string()
}

/// Starts the greeter server on `SERVER_IP` and returns it with its port.
fn start_server(dir: &Path) -> (ChildGuard, u16) {
    let addr = format!("{SERVER_IP}:0");
    let cmd = greeter(&["server", "--addr", &addr, "--name", SERVER_NAME]);
    let (mut server, out) = ChildGuard::spawn(cmd, dir, "server");
    let deadline = Instant::now() + SERVER_START_TIMEOUT;
    loop {
        let stdout = out.stdout();
        if let Some(line) = stdout.lines().next().filter(|_| stdout.contains('\n')) {
            let port = line
                .strip_prefix("PORT ")
                .and_then(|p| p.trim().parse::<u16>().ok())
                .unwrap_or_else(|| panic!("greeter server printed {line:?}, not `PORT <n>`"));
            return (server, port);
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("greeter server exited early ({status}):\n{}", out.stderr());
        }
        assert!(
            Instant::now() < deadline,
            "greeter server did not print its port within {SERVER_START_TIMEOUT:?}:\n{}",
            out.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Service `greeter` in `default` with gRPC port 50051, served by one ready
/// endpoint at `SERVER_IP:server_port`.
fn greeter_mesh(server_port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: greeter
  namespace: default
spec:
  ports:
  - {{name: grpc, port: {SERVICE_PORT}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter-1
  namespace: default
  labels: {{kubernetes.io/service-name: greeter}}
addressType: IPv4
ports:
- {{name: grpc, port: {server_port}}}
endpoints:
- addresses: [{SERVER_IP}]
  conditions: {{ready: true}}
"
    )
}

/// A gRPC xDS bootstrap for a client in namespace `default` talking to shmesh.
fn grpc_bootstrap(shmesh: &Shmesh) -> serde_json::Value {
    json!({
        "xds_servers": [{
            "server_uri": shmesh.xds.to_string(),
            "channel_creds": [{"type": "insecure"}],
            "server_features": ["xds_v3"]
        }],
        "node": {
            "id": "grpc-client-1",
            "cluster": "grpc",
            "metadata": {"NAMESPACE": "default"},
            "locality": {}
        }
    })
}

/// Runs the greeter client on `target` and asserts every call succeeded and
/// was answered by the server.
fn assert_calls_succeed(dir: &Path, bootstrap: &Path, target: &str, label: &str) {
    let count = CALLS.to_string();
    let deadline = CLIENT_DEADLINE_SECS.to_string();
    let mut cmd = greeter(&[
        "client",
        "--target",
        target,
        "--count",
        &count,
        "--deadline",
        &deadline,
    ]);
    cmd.env("GRPC_XDS_BOOTSTRAP", bootstrap);
    let run = run_bounded(cmd, dir, label, CLIENT_TIMEOUT);
    assert!(
        run.ok(),
        "gRPC client on {target} failed\n{}",
        run.describe()
    );
    let stdout = run.out.stdout();
    let replies: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("REPLY "))
        .collect();
    assert_eq!(
        replies,
        vec![SERVER_NAME; CALLS],
        "gRPC client on {target}: expected {CALLS} replies from {SERVER_NAME}\n{}",
        run.describe()
    );
    eprintln!(
        "{target}: {CALLS} calls answered by {SERVER_NAME} in {:?}",
        run.elapsed
    );
}

#[test]
fn proxyless_grpc_client_calls_service_through_shmesh() {
    let work = tempfile::tempdir().expect("work dir");
    let version = ensure_grpcio(work.path());
    eprintln!("using grpcio {version}");

    let (_server, server_port) = start_server(work.path());
    let config = tempfile::tempdir().expect("config dir");
    mesh::write_atomic(config.path(), "greeter.yaml", &greeter_mesh(server_port));
    // On a panic from here on, dropping `shmesh` prints its log.
    let shmesh = Shmesh::start(config.path());

    let bootstrap = work.path().join("grpc-bootstrap.json");
    let text = serde_json::to_string_pretty(&grpc_bootstrap(&shmesh)).expect("bootstrap json");
    std::fs::write(&bootstrap, text).expect("write gRPC bootstrap");

    // The FQDN, then the short names DNS search paths give a client in `default`.
    let targets = [
        (
            "fqdn",
            format!("greeter.default.svc.cluster.local:{SERVICE_PORT}"),
        ),
        ("short", format!("greeter:{SERVICE_PORT}")),
        ("namespaced", format!("greeter.default:{SERVICE_PORT}")),
    ];
    for (label, name) in &targets {
        let target = format!("xds:///{name}");
        assert_calls_succeed(work.path(), &bootstrap, &target, &format!("client-{label}"));
    }
}
