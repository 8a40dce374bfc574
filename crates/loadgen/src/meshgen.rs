//! Synthetic meshes for benchmarks: writes ordinary Kubernetes and Istio
//! manifests into a directory, and rewrites single services to drive changes.
//!
//! Data goes one way: a [`MeshSpec`] in, YAML files out. Nothing here talks
//! to shmesh; the files are served by `shmesh serve --config-dir DIR` (or fed
//! to any other control plane that reads manifests), and the fleet simulator
//! (`shmesh-loadgen`) uses the [`ChangeMarker`]s returned by
//! [`move_endpoint`] and [`shift_weights`] to recognise, in the raw bytes of
//! the xDS responses its clients receive, that a change has arrived.
//!
//! Layout of a generated directory:
//!
//! ```text
//! DIR/.meshgen.json          the spec (hidden: shmesh skips dot files)
//! DIR/.meshgen-generation    counter for change generations (hidden)
//! DIR/ns-I/svc-J.yaml        Service, Pods, EndpointSlice, DestinationRule, VirtualService
//! DIR/ns-I/sidecar.yaml      Sidecar `egress.hosts: ["./*"]` (namespace-scoped meshes)
//! ```
//!
//! Every service file starts with a `# meshgen-state: {...}` comment holding
//! the changes applied to it so far, so successive changes to one service
//! (an endpoint move, then a weight shift) build on each other without any
//! state outside the file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use envoy_types::pb::envoy::config::route::v3::weighted_cluster::ClusterWeight;
use prost::Message;
use serde::{Deserialize, Serialize};

use shmesh_cache::ResourceType;

/// Hidden file holding the spec a directory was generated from.
pub const SPEC_FILE: &str = ".meshgen.json";
/// Hidden file holding the last change generation handed out.
const GENERATION_FILE: &str = ".meshgen-generation";
/// First line of every service file: the changes applied to it.
const STATE_PREFIX: &str = "# meshgen-state: ";
/// Moved endpoints get addresses in 10.250.0.0/16, outside the generated range.
const MOVED_OCTET: u8 = 250;

/// What to generate. Namespaces are `ns-0..`, services `svc-0..` in each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshSpec {
    pub namespaces: usize,
    pub services_per_namespace: usize,
    /// Pods (and EndpointSlice endpoints) per service.
    pub endpoints_per_service: usize,
    /// DestinationRule subsets per service (`v0..`); pods are spread over them.
    pub versions: usize,
    /// How many services get a VirtualService splitting weight between
    /// subsets `v0` and `v1` (needs `versions >= 2`). Services are counted
    /// across namespaces first (`svc-0` of every namespace, then `svc-1`...),
    /// so VirtualServices spread evenly over namespaces.
    pub virtual_services: usize,
    /// Write a Sidecar per namespace limiting its proxies to their own
    /// namespace (`egress.hosts: ["./*"]`).
    pub namespace_scoped: bool,
    /// The service port (named `http`), also the pods' target port.
    pub port: u16,
}

impl Default for MeshSpec {
    fn default() -> Self {
        MeshSpec {
            namespaces: 1,
            services_per_namespace: 10,
            endpoints_per_service: 3,
            versions: 3,
            virtual_services: 0,
            namespace_scoped: false,
            port: 8080,
        }
    }
}

impl MeshSpec {
    pub fn services(&self) -> usize {
        self.namespaces * self.services_per_namespace
    }

    pub fn endpoints(&self) -> usize {
        self.services() * self.endpoints_per_service
    }

    /// Namespace `i`'s name.
    pub fn namespace(i: usize) -> String {
        format!("ns-{i}")
    }

    /// Service `j`'s name (in any namespace).
    pub fn service(j: usize) -> String {
        format!("svc-{j}")
    }

    /// The FQDN Envoy resources are named after.
    pub fn host(&self, ns: usize, svc: usize) -> String {
        format!(
            "{}.{}.svc.cluster.local",
            Self::service(svc),
            Self::namespace(ns)
        )
    }

    /// Whether service `svc` of namespace `ns` has a VirtualService.
    pub fn has_virtual_service(&self, ns: usize, svc: usize) -> bool {
        svc * self.namespaces + ns < self.virtual_services
    }

    /// The (namespace, service) of the `ordinal`-th service with a
    /// VirtualService, in the order [`MeshSpec::has_virtual_service`] counts.
    pub fn virtual_service_target(&self, ordinal: usize) -> Option<(usize, usize)> {
        let total = self.virtual_services.min(self.services());
        (total > 0 && self.namespaces > 0).then(|| {
            let o = ordinal % total;
            (o % self.namespaces, o / self.namespaces)
        })
    }

    /// The generated address of endpoint `ep` of service `svc` in `ns`: unique
    /// across the mesh, from 10.0.0.1 up, below 10.250.0.0.
    pub fn endpoint_ip(&self, ns: usize, svc: usize, ep: usize) -> Ipv4Addr {
        let g =
            ((ns * self.services_per_namespace + svc) * self.endpoints_per_service + ep + 1) as u32;
        Ipv4Addr::new(10, (g >> 16) as u8, (g >> 8) as u8, g as u8)
    }

    fn check(&self) -> io::Result<()> {
        let invalid = |msg: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, msg.to_string()));
        if self.namespaces == 0 || self.services_per_namespace == 0 {
            return invalid("a mesh needs at least one namespace and one service");
        }
        if self.endpoints_per_service == 0 || self.versions == 0 {
            return invalid("every service needs at least one endpoint and one version");
        }
        if self.virtual_services > 0 && self.versions < 2 {
            return invalid("weighted VirtualServices need at least two versions");
        }
        if self.endpoints() + 1 >= (MOVED_OCTET as usize) << 16 {
            return invalid("too many endpoints for 10.0.0.0-10.249.255.255");
        }
        if self.port == 0 {
            return invalid("port must not be 0");
        }
        Ok(())
    }
}

/// What [`write`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub files: usize,
    pub bytes: u64,
    pub services: usize,
    pub pods: usize,
    pub endpoint_slices: usize,
    pub destination_rules: usize,
    pub virtual_services: usize,
    pub sidecars: usize,
}

/// Changes applied to one service file so far (its first line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ServiceState {
    /// Endpoint index → address it was moved to.
    #[serde(default)]
    moved: BTreeMap<usize, Ipv4Addr>,
    /// Weights of subsets `v0` and `v1` when changed from the default.
    #[serde(default)]
    weights: Option<[u32; 2]>,
}

/// Initial VirtualService weights for `v0` and `v1`.
const DEFAULT_WEIGHTS: [u32; 2] = [90, 10];

/// Writes the mesh `spec` describes into `dir` (created if missing). Files
/// of an earlier mesh in `dir` that this spec does not name are left alone.
pub fn write(spec: &MeshSpec, dir: &Path) -> io::Result<Summary> {
    spec.check()?;
    std::fs::create_dir_all(dir)?;
    let mut summary = Summary::default();
    let put = |path: PathBuf, text: String, summary: &mut Summary| -> io::Result<()> {
        summary.files += 1;
        summary.bytes += text.len() as u64;
        write_atomic(&path, text.as_bytes())
    };
    for ns in 0..spec.namespaces {
        let ns_dir = dir.join(MeshSpec::namespace(ns));
        std::fs::create_dir_all(&ns_dir)?;
        for svc in 0..spec.services_per_namespace {
            let text = render_service(spec, ns, svc, &ServiceState::default());
            put(service_path(dir, ns, svc), text, &mut summary)?;
            summary.services += 1;
            summary.pods += spec.endpoints_per_service;
            summary.endpoint_slices += 1;
            summary.destination_rules += 1;
            summary.virtual_services += usize::from(spec.has_virtual_service(ns, svc));
        }
        if spec.namespace_scoped {
            put(
                ns_dir.join("sidecar.yaml"),
                render_sidecar(ns),
                &mut summary,
            )?;
            summary.sidecars += 1;
        }
    }
    let json = serde_json::to_vec_pretty(spec).map_err(io::Error::other)?;
    write_atomic(&dir.join(SPEC_FILE), &json)?;
    write_atomic(&dir.join(GENERATION_FILE), b"0\n")?;
    Ok(summary)
}

/// The spec `dir` was generated from.
pub fn read_spec(dir: &Path) -> io::Result<MeshSpec> {
    let bytes = std::fs::read(dir.join(SPEC_FILE))?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A fresh change generation for `dir` (1, 2, ...), persisted so that runs
/// one after another on the same directory never reuse a marker.
pub fn next_generation(dir: &Path) -> io::Result<u32> {
    let path = dir.join(GENERATION_FILE);
    let last: u32 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let next = last.wrapping_add(1).max(1);
    // Written in place: a hidden file the control plane skips, whereas an
    // atomic write's `..`-prefixed temporary file would look like a
    // ConfigMap swap and make it rescan the whole directory.
    std::fs::write(&path, format!("{next}\n"))?;
    Ok(next)
}

/// `DIR/ns-I/svc-J.yaml`
pub fn service_path(dir: &Path, ns: usize, svc: usize) -> PathBuf {
    dir.join(MeshSpec::namespace(ns))
        .join(format!("{}.yaml", MeshSpec::service(svc)))
}

/// What a change looks like on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// Endpoint `index` of the service now has `address`.
    Endpoint { index: usize, address: Ipv4Addr },
    /// Subsets `v0` and `v1` now get these weights.
    Weights { weights: [u32; 2] },
}

/// How to recognise a change in the xDS responses a proxy receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeMarker {
    pub namespace: String,
    pub service: String,
    /// The service's FQDN.
    pub host: String,
    pub kind: ChangeKind,
    /// The type of the resources that carry the change (EDS for an endpoint
    /// move, RDS for a weight shift).
    pub resource_type: ResourceType,
    /// Byte strings that all appear in one encoded resource of
    /// `resource_type` once the proxy has the change: the new address as
    /// text (it is a string field of `SocketAddress`), or the encoded
    /// `ClusterWeight { name, weight }` of each subset.
    pub patterns: Vec<Vec<u8>>,
}

impl ChangeMarker {
    /// Whether `resource` (an encoded resource of `resource_type`) carries the change.
    pub fn matches(&self, resource: &[u8]) -> bool {
        self.patterns.iter().all(|p| contains(resource, p))
    }

    /// One line for humans: `ns-0/svc-3 endpoint 2 -> 10.250.0.7`.
    pub fn describe(&self) -> String {
        match &self.kind {
            ChangeKind::Endpoint { index, address } => format!(
                "{}/{} endpoint {index} -> {address}",
                self.namespace, self.service
            ),
            ChangeKind::Weights { weights } => format!(
                "{}/{} weights v0={} v1={}",
                self.namespace, self.service, weights[0], weights[1]
            ),
        }
    }
}

/// A rewritten service file waiting in a temporary file next to its place:
/// [`PendingChange::commit`] renames it in, so the caller can take its
/// clock reading right before the change becomes visible.
#[derive(Debug)]
pub struct PendingChange {
    tmp: PathBuf,
    path: PathBuf,
    pub marker: ChangeMarker,
}

impl PendingChange {
    /// The file that will change.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the new file into place; returns the instant right before the rename.
    pub fn commit(self) -> io::Result<(Instant, ChangeMarker)> {
        let t0 = Instant::now();
        std::fs::rename(&self.tmp, &self.path)?;
        Ok((t0, self.marker))
    }
}

/// Prepares moving endpoint `ep` of service `svc` in namespace `ns` to
/// `10.250.G/256.G%256` (G = `generation`, 1..=65535 give distinct addresses).
pub fn prepare_move_endpoint(
    dir: &Path,
    ns: usize,
    svc: usize,
    ep: usize,
    generation: u32,
) -> io::Result<PendingChange> {
    let spec = read_spec(dir)?;
    in_range(&spec, ns, svc)?;
    if ep >= spec.endpoints_per_service {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("endpoint {ep} out of range"),
        ));
    }
    let path = service_path(dir, ns, svc);
    let mut state = read_state(&path)?;
    let g = (generation % 65536).max(1);
    let address = Ipv4Addr::new(10, MOVED_OCTET, (g >> 8) as u8, g as u8);
    state.moved.insert(ep, address);
    let marker = ChangeMarker {
        namespace: MeshSpec::namespace(ns),
        service: MeshSpec::service(svc),
        host: spec.host(ns, svc),
        kind: ChangeKind::Endpoint { index: ep, address },
        resource_type: ResourceType::Endpoint,
        patterns: vec![address.to_string().into_bytes()],
    };
    stage(&path, render_service(&spec, ns, svc, &state), marker)
}

/// Moves an endpoint now (see [`prepare_move_endpoint`]).
pub fn move_endpoint(
    dir: &Path,
    ns: usize,
    svc: usize,
    ep: usize,
    generation: u32,
) -> io::Result<ChangeMarker> {
    Ok(prepare_move_endpoint(dir, ns, svc, ep, generation)?
        .commit()?
        .1)
}

/// Prepares new VirtualService weights for service `svc` of namespace `ns`
/// (which must have one): `v0` gets 1..=98 depending on `generation`, never
/// what it has now, and `v1` the rest of 100.
pub fn prepare_shift_weights(
    dir: &Path,
    ns: usize,
    svc: usize,
    generation: u32,
) -> io::Result<PendingChange> {
    let spec = read_spec(dir)?;
    in_range(&spec, ns, svc)?;
    if !spec.has_virtual_service(ns, svc) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ns-{ns}/svc-{svc} has no VirtualService"),
        ));
    }
    let path = service_path(dir, ns, svc);
    let mut state = read_state(&path)?;
    let current = state.weights.unwrap_or(DEFAULT_WEIGHTS)[0];
    let mut w0 = 1 + (generation.wrapping_mul(37) % 98);
    if w0 == current {
        w0 = w0 % 98 + 1;
    }
    let weights = [w0, 100 - w0];
    state.weights = Some(weights);
    let host = spec.host(ns, svc);
    let patterns = (0..2)
        .map(|i| {
            ClusterWeight {
                name: format!("outbound|{}|v{i}|{host}", spec.port),
                weight: Some(envoy_types::pb::google::protobuf::UInt32Value { value: weights[i] }),
                ..Default::default()
            }
            .encode_to_vec()
        })
        .collect();
    let marker = ChangeMarker {
        namespace: MeshSpec::namespace(ns),
        service: MeshSpec::service(svc),
        host,
        kind: ChangeKind::Weights { weights },
        resource_type: ResourceType::Route,
        patterns,
    };
    stage(&path, render_service(&spec, ns, svc, &state), marker)
}

/// Shifts weights now (see [`prepare_shift_weights`]).
pub fn shift_weights(
    dir: &Path,
    ns: usize,
    svc: usize,
    generation: u32,
) -> io::Result<ChangeMarker> {
    Ok(prepare_shift_weights(dir, ns, svc, generation)?.commit()?.1)
}

fn in_range(spec: &MeshSpec, ns: usize, svc: usize) -> io::Result<()> {
    if ns >= spec.namespaces || svc >= spec.services_per_namespace {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ns-{ns}/svc-{svc} is not in the mesh"),
        ));
    }
    Ok(())
}

/// Writes `text` to a hidden temporary file beside `path` (shmesh skips
/// hidden files, so it never reads half a change).
fn stage(path: &Path, text: String, marker: ChangeMarker) -> io::Result<PendingChange> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, text)?;
    Ok(PendingChange {
        tmp,
        path: path.to_path_buf(),
        marker,
    })
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Write then rename, so a watcher never sees a half-written file.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn read_state(path: &Path) -> io::Result<ServiceState> {
    let text = std::fs::read_to_string(path)?;
    let first = text.lines().next().unwrap_or_default();
    match first.strip_prefix(STATE_PREFIX) {
        Some(json) => serde_json::from_str(json).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        None => Ok(ServiceState::default()),
    }
}

/// Whether `needle` occurs in `haystack` (empty needles always do).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut at = 0;
    // Jump between occurrences of the first byte; the markers are short and
    // their first bytes rare enough that this beats a window-by-window scan.
    while let Some(i) = haystack[at..].iter().position(|&b| b == first) {
        let start = at + i + 1;
        if haystack.len() - start < rest.len() {
            return false;
        }
        if &haystack[start..start + rest.len()] == rest {
            return true;
        }
        at = start;
    }
    false
}

fn render_sidecar(ns: usize) -> String {
    format!(
        "# Proxies of this namespace only see its own services.\n\
         apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: default\n  namespace: {n}\n\
         spec:\n  egress:\n  - hosts: [\"./*\"]\n",
        n = MeshSpec::namespace(ns)
    )
}

/// One service's file: Service, Pods, EndpointSlice, DestinationRule and,
/// when it has one, its VirtualService.
fn render_service(spec: &MeshSpec, ns: usize, svc: usize, state: &ServiceState) -> String {
    let n = MeshSpec::namespace(ns);
    let s = MeshSpec::service(svc);
    let port = spec.port;
    let mut out = String::with_capacity(600 + spec.endpoints_per_service * 420);
    // serde_json of this small struct cannot fail; an empty state is the fallback.
    let state_json = serde_json::to_string(state).unwrap_or_else(|_| "{}".to_string());
    let _ = writeln!(out, "{STATE_PREFIX}{state_json}");
    let _ = write!(
        out,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {s}\n  namespace: {n}\n\
         spec:\n  selector: {{app: {s}}}\n  ports:\n  - {{name: http, port: {port}, targetPort: {port}, protocol: TCP}}\n"
    );
    let ips: Vec<Ipv4Addr> = (0..spec.endpoints_per_service)
        .map(|ep| {
            state
                .moved
                .get(&ep)
                .copied()
                .unwrap_or_else(|| spec.endpoint_ip(ns, svc, ep))
        })
        .collect();
    for (ep, ip) in ips.iter().enumerate() {
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {s}-{ep}\n  namespace: {n}\n\
             \x20 labels: {{app: {s}, version: v{v}}}\nstatus: {{podIP: {ip}, phase: Running}}\n",
            v = ep % spec.versions
        );
    }
    let _ = write!(
        out,
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {s}-0\n  namespace: {n}\n\
         \x20 labels: {{kubernetes.io/service-name: {s}}}\naddressType: IPv4\n\
         ports:\n- {{name: http, port: {port}, protocol: TCP}}\nendpoints:\n"
    );
    for (ep, ip) in ips.iter().enumerate() {
        let _ = write!(
            out,
            "- addresses: [{ip}]\n  conditions: {{ready: true, serving: true, terminating: false}}\n\
             \x20 targetRef: {{kind: Pod, name: {s}-{ep}, namespace: {n}}}\n"
        );
    }
    let _ = write!(
        out,
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {s}\n  namespace: {n}\n\
         spec:\n  host: {s}\n  subsets:\n"
    );
    for v in 0..spec.versions {
        let _ = writeln!(out, "  - {{name: v{v}, labels: {{version: v{v}}}}}");
    }
    if spec.has_virtual_service(ns, svc) {
        let [w0, w1] = state.weights.unwrap_or(DEFAULT_WEIGHTS);
        let _ = write!(
            out,
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {s}\n  namespace: {n}\n\
             spec:\n  hosts: [{s}]\n  http:\n  - name: split\n    route:\n\
             \x20   - {{destination: {{host: {s}, subset: v0}}, weight: {w0}}}\n\
             \x20   - {{destination: {{host: {s}, subset: v1}}, weight: {w1}}}\n"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmesh_api::parse::{parse_text, Outcome};
    use shmesh_model::{Change, Model};
    use shmesh_translate::{build, ListenerMode, ProxyView};

    fn spec() -> MeshSpec {
        MeshSpec {
            namespaces: 2,
            services_per_namespace: 3,
            endpoints_per_service: 4,
            versions: 3,
            virtual_services: 3,
            namespace_scoped: true,
            port: 8080,
        }
    }

    /// Parses every manifest below `dir` into a model; panics on any rejection.
    fn model(dir: &Path) -> Model {
        let mut changes = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap().flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for outcome in parse_text(&path.display().to_string(), &text) {
                    match outcome {
                        Outcome::Object(p) => {
                            changes.push(Change::Upsert(p.key, p.object, p.origin))
                        }
                        other => panic!("{}: {other:?}", path.display()),
                    }
                }
            }
        }
        let mut m = Model::new();
        m.apply(changes);
        m
    }

    fn view(ns: &str) -> ProxyView {
        ProxyView {
            namespace: ns.to_string(),
            mode: ListenerMode::Explicit("127.0.0.1:15001".parse().unwrap()),
            vhds: false,
            labels: Default::default(),
            certificates: Default::default(),
        }
    }

    fn found(model: &Model, ns: &str, marker: &ChangeMarker) -> usize {
        let snap = build(model, &view(ns));
        snap.get(marker.resource_type)
            .iter()
            .filter(|r| marker.matches(&r.body))
            .count()
    }

    #[test]
    fn writes_a_mesh_that_parses_and_translates() {
        let dir = tempfile::tempdir().unwrap();
        let summary = write(&spec(), dir.path()).unwrap();
        assert_eq!(summary.services, 6);
        assert_eq!(summary.pods, 24);
        assert_eq!(summary.virtual_services, 3);
        assert_eq!(summary.sidecars, 2);
        assert_eq!(summary.files, 8);
        assert_eq!(read_spec(dir.path()).unwrap(), spec());
        // VirtualServices spread over namespaces: svc-0 of both, svc-1 of ns-0.
        assert!(spec().has_virtual_service(1, 0));
        assert!(spec().has_virtual_service(0, 1));
        assert!(!spec().has_virtual_service(1, 1));
        let m = model(dir.path());
        // Scoped: ns-0 sees its 3 services, each with a cluster per subset
        // plus the plain one, all EDS.
        let snap = build(&m, &view("ns-0"));
        let eds = snap.get(ResourceType::Endpoint);
        assert_eq!(
            eds.names()
                .filter(|n| n.contains("svc.cluster.local"))
                .count(),
            3 * 4,
            "{:?}",
            eds.names().collect::<Vec<_>>()
        );
        assert!(eds.names().all(|n| !n.contains("ns-1")));
    }

    #[test]
    fn endpoint_addresses_are_unique() {
        let s = MeshSpec {
            namespaces: 100,
            services_per_namespace: 20,
            endpoints_per_service: 10,
            ..spec()
        };
        let mut all = std::collections::HashSet::new();
        for ns in 0..s.namespaces {
            for svc in 0..s.services_per_namespace {
                for ep in 0..s.endpoints_per_service {
                    assert!(all.insert(s.endpoint_ip(ns, svc, ep)));
                }
            }
        }
    }

    #[test]
    fn markers_match_the_translated_resources_after_the_change_only() {
        let dir = tempfile::tempdir().unwrap();
        write(&spec(), dir.path()).unwrap();
        let g = next_generation(dir.path()).unwrap();
        let pending = prepare_move_endpoint(dir.path(), 1, 2, 3, g).unwrap();
        let marker = pending.marker.clone();
        assert_eq!(found(&model(dir.path()), "ns-1", &marker), 0);
        pending.commit().unwrap();
        let m = model(dir.path());
        // The plain cluster and subset v0 (endpoint 3 is version 3 % 3 = v0).
        assert_eq!(found(&m, "ns-1", &marker), 2);
        assert_eq!(found(&m, "ns-0", &marker), 0, "scoped away");

        let g2 = next_generation(dir.path()).unwrap();
        assert_ne!(g, g2);
        let w = shift_weights(dir.path(), 1, 0, g2).unwrap();
        assert_eq!(w.patterns.len(), 2);
        let m = model(dir.path());
        assert_eq!(found(&m, "ns-1", &w), 1, "the http_proxy route config");
        // The endpoint move survives the later rewrite of the same file...
        let m2 = move_endpoint(dir.path(), 1, 0, 0, next_generation(dir.path()).unwrap()).unwrap();
        let m = model(dir.path());
        assert_eq!(found(&m, "ns-1", &w), 1);
        assert!(found(&m, "ns-1", &m2) > 0);
        // ...and weights always change.
        for g in 1..200 {
            let before = read_state(&service_path(dir.path(), 0, 0)).unwrap().weights;
            let after = shift_weights(dir.path(), 0, 0, g).unwrap();
            let ChangeKind::Weights { weights } = after.kind else {
                panic!()
            };
            assert_ne!(Some(weights), before);
            assert_eq!(weights[0] + weights[1], 100);
            assert!(weights[0] >= 1 && weights[1] >= 1);
        }
        assert!(prepare_shift_weights(dir.path(), 1, 2, 1).is_err(), "no VS");
    }

    #[test]
    fn contains_finds_needles() {
        assert!(contains(b"abc10.250.0.1xyz", b"10.250.0.1"));
        assert!(!contains(b"abc10.250.0.1", b"10.250.0.12"));
        assert!(contains(b"aab", b"ab"));
        assert!(contains(b"x", b""));
        assert!(!contains(b"", b"x"));
    }
}
