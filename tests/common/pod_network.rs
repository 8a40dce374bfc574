//! Pods on this machine: network namespaces on a bridge, with Istio's
//! traffic capture in the meshed ones.
//!
//! A test's cluster is one "node" namespace holding a bridge (10.77.0.1/24)
//! and one namespace per pod, each with `lo`, an `eth0` veth into the
//! bridge, a pod IP from 10.77.0.0/24 and a default route via the bridge.
//! That range exists only inside the test's own namespaces: the machine's
//! own interfaces and routes are never touched, and tests in parallel each
//! have their own bridge. A Service's clusterIP needs no route of its own:
//! a meshed pod's capture sends the connection to its sidecar first.
//!
//! [`PodNetwork::capture`] writes the nat rules Istio's `istio-iptables`
//! writes: inbound TCP to 15006 except the ports Istio leaves alone,
//! outbound TCP to 15001 except the proxy's own (uid and gid 1337), traffic
//! to 127.0.0.1 and the inbound side's connections from 127.0.0.6.
//!
//! Needs root, `ip` and `iptables`; [`PodNetwork::create`] says why it
//! cannot run and returns `None` elsewhere (and panics instead when
//! `SHMESH_REQUIRE_POD_NETWORK` is set, as CI does). Namespaces carry the test
//! process's pid: dropping the network (also while a test panics) ends
//! every process in them and deletes them, and namespaces a killed test
//! process left behind are removed by the next one.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Mutex;

use super::envoy::{Envoy, EnvoyOptions};
use super::netns::Netns;
use super::shmesh::Shmesh;

/// The uid and gid Istio's sidecar runs as; capture lets its traffic through.
pub const PROXY_UID: u32 = 1337;

/// Ports Istio's capture leaves alone on the way in.
const INBOUND_EXCLUDED: [u16; 4] = [15008, 15020, 15021, 15090];

const PREFIX: &str = "shmt";

pub struct PodNetwork {
    prefix: String,
    node: Netns,
    pods: Mutex<Vec<Netns>>,
    next_host: AtomicU8,
    /// Files the sidecars read (their credentials), removed with the network.
    dirs: Mutex<Vec<tempfile::TempDir>>,
}

/// A pod: its namespace and IP.
#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub ip: Ipv4Addr,
    pub netns: Netns,
}

impl PodNetwork {
    /// A fresh cluster for `test`, or `None` (with the reason on stderr)
    /// where this machine cannot make one.
    pub fn create(test: &str) -> Option<PodNetwork> {
        if let Err(why) = can_run() {
            // CI sets this where it made sure the machine can.
            if std::env::var_os("SHMESH_REQUIRE_POD_NETWORK").is_some() {
                panic!("{test}: {why}");
            }
            eprintln!("skipped {test}: {why}");
            return None;
        }
        remove_stale();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("{PREFIX}{}x{n}", std::process::id());
        let node = Netns::named(&format!("{prefix}-node"));
        let network = PodNetwork {
            prefix,
            node: node.clone(),
            pods: Mutex::new(Vec::new()),
            next_host: AtomicU8::new(2),
            dirs: Mutex::new(Vec::new()),
        };
        ip(&["netns", "add", node.name()]);
        ip(&["-n", node.name(), "link", "set", "lo", "up"]);
        ip(&["-n", node.name(), "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            node.name(),
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            "br0",
        ]);
        ip(&["-n", node.name(), "link", "set", "br0", "up"]);
        Some(network)
    }

    /// The node's namespace, where the control plane runs.
    pub fn node(&self) -> &Netns {
        &self.node
    }

    /// The node's address on the bridge, which every pod reaches.
    pub fn node_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 1)
    }

    /// A new pod with its own IP, no capture yet.
    pub fn pod(&self, name: &str) -> Pod {
        let host = self.next_host.fetch_add(1, Ordering::SeqCst);
        assert!(host < 250, "a test cluster holds at most 248 pods");
        let netns = Netns::named(&format!("{}-{name}", self.prefix));
        ip(&["netns", "add", netns.name()]);
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(netns.clone());
        let veth = format!("veth{host}");
        let node = self.node.name();
        let pod = netns.name();
        ip(&[
            "-n", node, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", pod,
        ]);
        ip(&["-n", node, "link", "set", &veth, "master", "br0", "up"]);
        let addr = Ipv4Addr::new(10, 77, 0, host);
        ip(&["-n", pod, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            pod,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", pod, "link", "set", "eth0", "up"]);
        ip(&["-n", pod, "route", "add", "default", "via", "10.77.0.1"]);
        Pod {
            name: name.to_string(),
            ip: addr,
            netns,
        }
    }

    /// Writes Istio's capture rules into `pod`'s namespace.
    pub fn capture(&self, pod: &Pod) {
        let mut rules = String::from(
            "*nat\n\
             :ISTIO_INBOUND - [0:0]\n\
             :ISTIO_IN_REDIRECT - [0:0]\n\
             :ISTIO_OUTPUT - [0:0]\n\
             :ISTIO_REDIRECT - [0:0]\n\
             -A PREROUTING -p tcp -j ISTIO_INBOUND\n\
             -A OUTPUT -p tcp -j ISTIO_OUTPUT\n",
        );
        for port in INBOUND_EXCLUDED {
            rules.push_str(&format!(
                "-A ISTIO_INBOUND -p tcp --dport {port} -j RETURN\n"
            ));
        }
        let uid = PROXY_UID;
        rules.push_str(&format!(
            "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n\
             -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006\n\
             -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n\
             -A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN\n\
             -A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp ! --dport 15008 -m owner --uid-owner {uid} -j ISTIO_IN_REDIRECT\n\
             -A ISTIO_OUTPUT -o lo -m owner ! --uid-owner {uid} -j RETURN\n\
             -A ISTIO_OUTPUT -m owner --uid-owner {uid} -j RETURN\n\
             -A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --gid-owner {uid} -j ISTIO_IN_REDIRECT\n\
             -A ISTIO_OUTPUT -o lo -m owner ! --gid-owner {uid} -j RETURN\n\
             -A ISTIO_OUTPUT -m owner --gid-owner {uid} -j RETURN\n\
             -A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN\n\
             -A ISTIO_OUTPUT -j ISTIO_REDIRECT\n\
             COMMIT\n"
        ));
        let mut child = pod
            .netns
            .command("iptables-restore")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("iptables-restore in {}: {e}", pod.name));
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin
                .write_all(rules.as_bytes())
                .expect("write capture rules");
        }
        let out = child.wait_with_output().expect("iptables-restore ran");
        assert!(
            out.status.success(),
            "iptables-restore in pod {} failed: {}\n{rules}",
            pod.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What a sidecar says about its workload.
pub struct Workload<'a> {
    pub namespace: &'a str,
    pub labels: &'a [(&'a str, &'a str)],
    /// Delta ADS, or state of the world.
    pub delta: bool,
    /// Prove this identity to shmesh's xDS TLS listener.
    pub identity: Option<Identity<'a>>,
}

/// Credentials for `service_account`, signed by the CA whose root and key
/// are in `ca_dir` (as `shmesh ca init` writes them).
pub struct Identity<'a> {
    pub service_account: &'a str,
    pub ca_dir: &'a Path,
}

impl PodNetwork {
    /// Meshes `pod` as Istio's injector would: capture rules, and an Envoy
    /// running as the proxy's uid inside the pod, bootstrapped by
    /// `shmesh bootstrap` to `shmesh` with an Istio-style node id (over TLS
    /// with credentials when the workload has an identity).
    pub fn sidecar(&self, pod: &Pod, shmesh: &Shmesh, workload: &Workload) -> Envoy {
        self.capture(pod);
        let node = format!(
            "sidecar~{}~{}.{ns}~{ns}.svc.cluster.local",
            pod.ip,
            pod.name,
            ns = workload.namespace
        );
        let credentials = tempfile::Builder::new()
            .prefix("shmesh-credentials-")
            .tempdir()
            .expect("credentials dir");
        let xds = match (&workload.identity, shmesh.xds_tls) {
            (Some(_), Some(tls)) => tls,
            (Some(_), None) => panic!("an identity needs shmesh's xDS TLS listener"),
            (None, _) => shmesh.xds,
        };
        let api = if workload.delta { "delta" } else { "sotw" };
        let mut cmd = Command::new(super::shmesh_binary());
        cmd.args(["bootstrap", "--node", &node])
            .args(["--namespace", workload.namespace])
            .args(["--xds-addr", &xds.to_string()])
            .args(["--ip", &pod.ip.to_string()])
            .args(["--admin-addr", "127.0.0.1:15000"])
            .args(["--api", api]);
        for (k, v) in workload.labels {
            cmd.args(["--label", &format!("{k}={v}")]);
        }
        if let Some(identity) = &workload.identity {
            cmd.arg("--credentials-dir")
                .arg(credentials.path())
                .args(["--service-account", identity.service_account])
                .arg("--ca-cert")
                .arg(identity.ca_dir.join("root-cert.pem"))
                .arg("--ca-key")
                .arg(identity.ca_dir.join("root-key.pem"))
                .args(["--xds-tls-name", &xds.ip().to_string()]);
        }
        let bootstrap = super::printed_bootstrap(&mut cmd);
        // The proxy's user reads its own credentials.
        let files = std::fs::read_dir(credentials.path())
            .expect("credentials")
            .flatten()
            .map(|e| e.path());
        for path in std::iter::once(credentials.path().to_path_buf()).chain(files) {
            std::os::unix::fs::chown(&path, Some(PROXY_UID), Some(PROXY_UID))
                .expect("hand the credentials to the proxy user");
        }
        let envoy = Envoy::start_with(
            &bootstrap,
            EnvoyOptions {
                netns: Some(pod.netns.clone()),
                uid: Some(PROXY_UID),
                ..EnvoyOptions::default()
            },
        );
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(credentials);
        envoy
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        let pods = std::mem::take(&mut *self.pods.lock().unwrap_or_else(|p| p.into_inner()));
        for netns in pods.iter().chain(std::iter::once(&self.node)) {
            delete(netns.name());
        }
    }
}

/// Ends every process in namespace `name`, then deletes it.
fn delete(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: a plain kill(2) of a process in the test's namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// Deletes the namespaces of test processes that are gone (killed before
/// their teardown could run).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('x').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            delete(name);
        }
    }
}

fn can_run() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("pod networks need root (network namespaces, iptables)".into());
    }
    for tool in ["ip", "iptables-restore", "setpriv"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!("`{tool}` is not installed"));
        }
    }
    Ok(())
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip: {e}"));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `binary`, or a copy of it that a user other than root can run: the
/// proxy's uid cannot reach into root's home, where pip may have put Envoy.
pub fn runnable_by_anyone(binary: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let open_to_all = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    };
    if binary.ancestors().all(open_to_all) {
        return binary.to_path_buf();
    }
    let dir = std::env::temp_dir().join("shmesh-envoy-for-pods");
    let copy = dir.join("envoy");
    let len = binary.metadata().map(|m| m.len()).unwrap_or(0);
    if copy.metadata().is_ok_and(|m| m.len() == len) {
        return copy;
    }
    std::fs::create_dir_all(&dir).expect("create the Envoy copy's dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .expect("open the Envoy copy's dir");
    // Copied under a name of this process's and thread's own, then renamed
    // into place, so tests running in parallel never see half a copy.
    static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let partial = dir.join(format!("envoy.{}.{n}", std::process::id()));
    std::fs::copy(binary, &partial).expect("copy Envoy for the proxy user");
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .expect("make the Envoy copy executable");
    std::fs::rename(&partial, &copy).expect("put the Envoy copy in place");
    copy
}

/// A meshed Service of `namespace` on clusterIP `vip`, port 80 to 8080,
/// and its one pod at `pod_ip`, whose manifest names service account
/// `account` and carries Istio's `security.istio.io/tlsMode: istio`.
pub fn meshed_service(
    namespace: &str,
    name: &str,
    vip: &str,
    pod_ip: &str,
    account: &str,
) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  clusterIP: {vip}\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-1\n  namespace: {namespace}\n  labels: {{app: {name}, security.istio.io/tlsMode: istio}}\nspec: {{serviceAccountName: {account}}}\nstatus: {{podIP: {pod_ip}, phase: Running, conditions: [{{type: Ready, status: \"True\"}}]}}\n---\n"
    )
}

/// Service `b` of namespace `shop` outside mutual TLS: clusterIP
/// [`SHOP_B_VIP`], port 80 to the pods' 8080, selecting `app: b`; and its
/// one pod at `b_ip`.
pub fn shop_b(b_ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: b, namespace: shop}}\nspec:\n  clusterIP: 10.96.0.20\n  selector: {{app: b}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: b-1, namespace: shop, labels: {{app: b}}}}\nstatus: {{podIP: {b_ip}, phase: Running, conditions: [{{type: Ready, status: \"True\"}}]}}\n"
    )
}

/// Where [`shop_b`]'s Service answers.
pub const SHOP_B_VIP: &str = "10.96.0.20:80";

/// A new root CA in `dir`, as `shmesh ca init` writes it.
pub fn ca_init(dir: &Path) {
    let out = Command::new(super::shmesh_binary())
        .args(["ca", "init"])
        .arg(dir)
        .output()
        .expect("run shmesh ca init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PodNetwork {
    /// shmesh in the node namespace, reading `config_dir`, signing workload
    /// certificates with the CA in `ca_dir` and serving xDS over TLS to
    /// sidecars that prove an identity; `extra` flags after those.
    pub fn shmesh_with_ca(&self, config_dir: &Path, ca_dir: &Path, extra: &[&str]) -> Shmesh {
        let root = ca_dir.join("root-cert.pem");
        let key = ca_dir.join("root-key.pem");
        let node_ip = self.node_ip().to_string();
        let tls_addr = format!("{node_ip}:0");
        let mut args = vec![
            "--ca-cert",
            root.to_str().expect("utf-8 path"),
            "--ca-key",
            key.to_str().expect("utf-8 path"),
            "--xds-tls-addr",
            &tls_addr,
            "--xds-tls-name",
            &node_ip,
        ];
        args.extend_from_slice(extra);
        Shmesh::start_in(self.node(), &node_ip, config_dir, &args)
    }
}
