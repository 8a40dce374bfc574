//! gRPC test peers: the Python greeter (`tests/grpc/greeter.py`) as a
//! server and as a client (plain or through grpcio's xDS resolver), run as
//! child processes that are killed when dropped, with bounded waits and
//! their output kept in files for failure messages.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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

pub fn greeter_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc/greeter.py")
}

/// `python3 greeter.py <args>` without proxy settings.
pub fn greeter(args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(greeter_py()).args(args);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// A child process that is killed and reaped when dropped, so a failing test
/// leaves nothing running.
pub struct ChildGuard {
    pub child: Child,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr going to `<dir>/<label>.stdout`
    /// and `.stderr` (files, not pipes: nothing blocks however much it writes).
    pub fn spawn(mut cmd: Command, dir: &Path, label: &str) -> (ChildGuard, Output) {
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
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
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
pub struct Output {
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Output {
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Stderr, cut to its last 20 000 characters (gRPC traces can be long).
    pub fn stderr(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let chars: Vec<char> = text.chars().collect();
        match chars.len().checked_sub(20_000) {
            Some(skip) if skip > 0 => format!("[...]{}", chars[skip..].iter().collect::<String>()),
            _ => text,
        }
    }
}

/// A finished (or timed-out) run of a command.
pub struct Run {
    /// `None` when it was killed for running too long.
    pub status: Option<ExitStatus>,
    pub out: Output,
    pub elapsed: Duration,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn describe(&self) -> String {
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
pub fn run_bounded(cmd: Command, dir: &Path, label: &str, timeout: Duration) -> Run {
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
pub fn ensure_grpcio(dir: &Path) -> String {
    ensure_python_package(dir, "grpc", "grpcio")
}

/// The version of Python module `module`, installing PyPI's `package` with
/// pip if python3 cannot import it.
pub fn ensure_python_package(dir: &Path, module: &str, package: &str) -> String {
    let probe = || {
        let mut cmd = Command::new("python3");
        cmd.args([
            "-c",
            &format!("import {module}; print(getattr({module}, '__version__', 'present'))"),
        ]);
        run_bounded(
            cmd,
            dir,
            &format!("probe-{package}"),
            Duration::from_secs(60),
        )
    };
    let first = probe();
    if first.ok() {
        return first.out.stdout().trim().to_string();
    }
    eprintln!("python3 cannot import {module}; installing {package} with pip");
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip", "install", "--quiet", package]);
    let install = run_bounded(cmd, dir, &format!("pip-install-{package}"), PIP_TIMEOUT);
    let second = probe();
    assert!(
        second.ok(),
        "this test needs Python's {package}, and `python3 -m pip install {package}` did not provide it\n\
         --- first import attempt ---\n{}\n--- pip install ---\n{}\n--- import after install ---\n{}",
        first.describe(),
        install.describe(),
        second.describe()
    );
    second.out.stdout().trim().to_string()
}

/// Starts a greeter server on `ip` (a port the OS picks) answering with
/// `name`, and returns it with its port.
pub fn start_server(dir: &Path, ip: &str, name: &str) -> (ChildGuard, u16) {
    let addr = format!("{ip}:0");
    let cmd = greeter(&["server", "--addr", &addr, "--name", name]);
    let (server, _, port) = start_printing_port(cmd, dir, &format!("server-{name}"));
    (server, port)
}

/// Starts the OpenTelemetry collector (`tests/grpc/otlp_collector.py`) on
/// `ip` (a port the OS picks); its stdout has a JSON line per resource of
/// each export.
pub fn start_otlp_collector(dir: &Path, ip: &str) -> (ChildGuard, Output, u16) {
    ensure_grpcio(dir);
    ensure_python_package(dir, "opentelemetry.proto", "opentelemetry-proto");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc/otlp_collector.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args(["--addr", &format!("{ip}:0")]);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    start_printing_port(cmd, dir, "otlp-collector")
}

/// Spawns a server whose first line of stdout is `PORT <n>` once bound, and
/// waits for that line.
fn start_printing_port(cmd: Command, dir: &Path, label: &str) -> (ChildGuard, Output, u16) {
    let (mut server, out) = ChildGuard::spawn(cmd, dir, label);
    let deadline = Instant::now() + SERVER_START_TIMEOUT;
    loop {
        let stdout = out.stdout();
        if let Some(line) = stdout.lines().next().filter(|_| stdout.contains('\n')) {
            let port = line
                .strip_prefix("PORT ")
                .and_then(|p| p.trim().parse::<u16>().ok())
                .unwrap_or_else(|| panic!("{label} printed {line:?}, not `PORT <n>`"));
            return (server, out, port);
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("{label} exited early ({status}):\n{}", out.stderr());
        }
        assert!(
            Instant::now() < deadline,
            "{label} did not print its port within {SERVER_START_TIMEOUT:?}:\n{}",
            out.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes `count` calls to `target` with the greeter client (given `env`,
/// and extra client arguments `args`) and returns the name each reply
/// carried; panics with the client's output if any call failed.
pub fn call(
    dir: &Path,
    target: &str,
    count: usize,
    env: &[(&str, &Path)],
    args: &[&str],
    label: &str,
) -> Vec<String> {
    const CLIENT_DEADLINE_SECS: u64 = 30;
    const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
    let count = count.to_string();
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
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let run = run_bounded(cmd, dir, label, CLIENT_TIMEOUT);
    assert!(
        run.ok(),
        "gRPC client on {target} failed\n{}",
        run.describe()
    );
    run.out
        .stdout()
        .lines()
        .filter_map(|l| l.strip_prefix("REPLY "))
        .map(String::from)
        .collect()
}
