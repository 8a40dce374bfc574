//! Translation and incremental update cost on a synthetic mesh: every service
//! has three versions (DestinationRule subsets), a weighted VirtualService and
//! ten endpoints.
//!
//! `cargo bench --bench translate`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shmesh::allocator::holding_freed_pages;
use shmesh::model::parse::{parse_text, Outcome};
use shmesh::model::{Change, Model};
use shmesh::translate::{build, update, ListenerMode, ProxyView};

/// The allocator the `shmesh` binary runs with (and, in `full_translation`,
/// its settings: the purge delay, and freed pages held while translating).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `services` services in namespace `default`, each with 10 pods over 3 versions.
fn mesh_yaml(services: usize) -> String {
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

fn changes(yaml: &str) -> Vec<Change> {
    parse_text("bench.yaml", yaml)
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Object(p) => Some(Change::Upsert(p.key, p.object, p.origin)),
            _ => None,
        })
        .collect()
}

fn view() -> ProxyView {
    ProxyView {
        namespace: "default".into(),
        mode: ListenerMode::Capture,
        vhds: false,
    }
}

fn full_translation(c: &mut Criterion) {
    shmesh::allocator::set_purge_delay(shmesh::allocator::SERVE_PURGE_DELAY_MS);
    let mut group = c.benchmark_group("full_translation");
    group.sample_size(10);
    for services in [1_000, 10_000] {
        let mut model = Model::new();
        model.apply(changes(&mesh_yaml(services)));
        group.bench_with_input(BenchmarkId::from_parameter(services), &model, |b, model| {
            // The snapshot is dropped outside the timed part: in the server
            // that happens later, wherever the last stream lets go of it.
            b.iter_with_large_drop(|| holding_freed_pages(|| build(model, &view())))
        });
    }
    group.finish();
}

fn endpoint_change(c: &mut Criterion) {
    let mut model = Model::new();
    model.apply(changes(&mesh_yaml(1000)));
    let v = view();
    let snapshot = build(&model, &v);
    let moved = [
        changes("apiVersion: v1\nkind: Pod\nmetadata: {name: svc-7-3, labels: {app: svc-7, version: v0}}\nstatus: {podIP: 10.200.0.1}\n"),
        changes("apiVersion: v1\nkind: Pod\nmetadata: {name: svc-7-3, labels: {app: svc-7, version: v0}}\nstatus: {podIP: 10.200.0.2}\n"),
    ];
    let mut i = 0;
    c.bench_function("endpoint_change_1000_services", |b| {
        b.iter(|| {
            i += 1;
            let dirty = model.apply(moved[i % 2].clone());
            update(&model, &v, &snapshot, &dirty)
        })
    });
}

fn endpoint_change_parts(c: &mut Criterion) {
    let mut model = Model::new();
    model.apply(changes(&mesh_yaml(1000)));
    let v = view();
    let snapshot = build(&model, &v);
    let moved = [
        changes("apiVersion: v1\nkind: Pod\nmetadata: {name: svc-7-3, labels: {app: svc-7, version: v0}}\nstatus: {podIP: 10.200.0.1}\n"),
        changes("apiVersion: v1\nkind: Pod\nmetadata: {name: svc-7-3, labels: {app: svc-7, version: v0}}\nstatus: {podIP: 10.200.0.2}\n"),
    ];
    let mut i = 0;
    c.bench_function("model_apply_only", |b| {
        b.iter(|| {
            i += 1;
            model.apply(moved[i % 2].clone())
        })
    });
    let dirty = model.apply(moved[0].clone());
    c.bench_function("update_only", |b| {
        b.iter(|| update(&model, &v, &snapshot, &dirty))
    });
}

criterion_group!(
    benches,
    full_translation,
    endpoint_change,
    endpoint_change_parts
);
criterion_main!(benches);
