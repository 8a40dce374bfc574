//! Manifests for tests: a reviews-like service with versions backed by real
//! upstreams, its DestinationRule subsets, and VirtualServices.

use std::net::SocketAddr;
use std::path::Path;

use super::Upstream;

/// `reviews` v1 and v2 on two real upstreams, with every request routed to
/// v1, in a directory of their own. The upstreams serve while this lives.
pub struct ReviewsOnV1 {
    pub dir: tempfile::TempDir,
    pub v1: Upstream,
    pub v2: Upstream,
}

impl ReviewsOnV1 {
    pub fn write() -> ReviewsOnV1 {
        let v1 = Upstream::start("127.0.0.11", "v1");
        let v2 = Upstream::start("127.0.0.12", "v2");
        let dir = tempfile::tempdir().expect("dir");
        write_atomic(
            dir.path(),
            "mesh.yaml",
            &reviews(&[("v1", v1.addr()), ("v2", v2.addr())]),
        );
        write_atomic(dir.path(), "vs.yaml", &weighted_vs("v1", &[("v1", 100)]));
        ReviewsOnV1 { dir, v1, v2 }
    }
}

/// Service `reviews` (port 9080) in `default`, one Pod and EndpointSlice per
/// version pointing at the given upstream, and a DestinationRule with one
/// subset per version.
pub fn reviews(versions: &[(&str, SocketAddr)]) -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n  selector: {app: reviews}\n  ports:\n  - {name: http, port: 9080, targetPort: 9080}\n",
    );
    for (version, addr) in versions {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: reviews-{version}\n  namespace: default\n  labels: {{app: reviews, version: {version}}}\nstatus:\n  podIP: {ip}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: reviews-{version}\n  namespace: default\n  labels: {{kubernetes.io/service-name: reviews}}\naddressType: IPv4\nports:\n- {{name: http, port: {port}}}\nendpoints:\n- addresses: [{ip}]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, name: reviews-{version}, namespace: default}}\n",
            ip = addr.ip(),
            port = addr.port(),
        ));
    }
    out.push_str("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n  host: reviews\n  subsets:\n");
    for (version, _) in versions {
        out.push_str(&format!(
            "  - name: {version}\n    labels: {{version: {version}}}\n"
        ));
    }
    out
}

/// A VirtualService for `reviews` splitting traffic by weight over subsets.
pub fn weighted_vs(api: &str, weights: &[(&str, i64)]) -> String {
    let mut out = format!(
        "apiVersion: networking.istio.io/{api}\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n  hosts: [reviews]\n  http:\n  - name: split\n    route:\n"
    );
    for (subset, w) in weights {
        out.push_str(&format!(
            "    - destination: {{host: reviews, subset: {subset}}}\n      weight: {w}\n"
        ));
    }
    out
}

/// `end-user: jason` goes to `jason_subset`, everything else to `default_subset`.
pub fn header_vs(jason_subset: &str, default_subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n  hosts: [reviews]\n  http:\n  - name: jason\n    match:\n    - headers:\n        end-user: {{exact: jason}}\n    route:\n    - destination: {{host: reviews, subset: {jason_subset}}}\n  - name: default\n    route:\n    - destination: {{host: reviews, subset: {default_subset}}}\n"
    )
}

/// Writes `text` to `dir/name` atomically (write then rename), as editors and
/// ConfigMap updates do, so a reader never sees half a file.
pub fn write_atomic(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write temp manifest");
    std::fs::rename(&tmp, dir.join(name)).expect("rename manifest");
}
