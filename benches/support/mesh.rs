//! The synthetic mesh the translation benches share.

use shmesh_api::parse::{parse_text, Outcome};
use shmesh_model::Change;
use shmesh_translate::{ListenerMode, ProxyView};

/// `services` services in namespace `default`, each with 10 pods over 3 versions.
pub fn mesh_yaml(services: usize) -> String {
    let mut out = String::new();
    for s in 0..services {
        out.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}}}\nspec:\n  selector: {{app: svc-{s}}}\n  ports: [{{name: http, port: 8080}}]\n---\n"
        ));
        for p in 0..10 {
            out.push_str(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: svc-{s}-{p}, labels: {{app: svc-{s}, version: v{v}}}}}\nstatus: {{podIP: 10.{a}.{b}.{p}}}\n---\n",
                v = p % 3,
                a = s / 256,
                b = s % 256,
            ));
        }
        out.push_str(&format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: svc-{s}}}\nspec:\n  host: svc-{s}\n  subsets:\n  - {{name: v0, labels: {{version: v0}}}}\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc-{s}}}\nspec:\n  hosts: [svc-{s}]\n  http:\n  - route:\n    - {{destination: {{host: svc-{s}, subset: v0}}, weight: 90}}\n    - {{destination: {{host: svc-{s}, subset: v1}}, weight: 10}}\n---\n"
        ));
    }
    out
}

pub fn changes(yaml: &str) -> Vec<Change> {
    parse_text("bench.yaml", yaml)
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Object(p) => Some(Change::Upsert(p.key, p.object, p.origin)),
            _ => None,
        })
        .collect()
}

/// A sidecar in `default` that sees the whole mesh.
pub fn view() -> ProxyView {
    ProxyView {
        namespace: "default".into(),
        mode: ListenerMode::Capture,
        labels: Default::default(),
        certificates: Default::default(),
        vhds: false,
    }
}
