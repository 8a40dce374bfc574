//! Translation and incremental update cost on a synthetic mesh: every service
//! has three versions (DestinationRule subsets), a weighted VirtualService and
//! ten endpoints.
//!
//! `cargo bench --bench translate`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shmesh::allocator::holding_freed_pages;
use shmesh_cache::Snapshot;
use shmesh_model::{Change, Model};
use shmesh_translate::{build, update, ProxyView};

#[path = "support/mesh.rs"]
mod mesh;
use mesh::{changes, mesh_yaml, view};

/// The allocator the `shmesh` binary runs with (and, in `full_translation`,
/// its settings: the purge delay, and freed pages held while translating).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn full_translation(c: &mut Criterion) {
    shmesh::allocator::use_serve_settings();
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

/// A pod of svc-7 moving between two addresses and back.
fn pod_moves() -> [Vec<Change>; 2] {
    let moved = |ip: &str| {
        changes(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: svc-7-3, labels: {{app: svc-7, version: v0}}}}\nstatus: {{podIP: {ip}}}\n"
        ))
    };
    [moved("10.200.0.1"), moved("10.200.0.2")]
}

/// A canary step and back: svc-7's VirtualService shifts its weights, as
/// Flagger or Argo Rollouts would write them.
fn weight_shifts() -> [Vec<Change>; 2] {
    let shifted = |w: u32| {
        changes(&format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc-7}}\nspec:\n  hosts: [svc-7]\n  http:\n  - route:\n    - {{destination: {{host: svc-7, subset: v0}}, weight: {w}}}\n    - {{destination: {{host: svc-7, subset: v1}}, weight: {}}}\n",
            100 - w
        ))
    };
    [shifted(80), shifted(90)]
}

/// A mesh of 1,000 services, and the view's snapshot of it.
fn mesh_and_snapshot(v: &ProxyView) -> (Model, Snapshot) {
    let mut model = Model::new();
    model.apply(changes(&mesh_yaml(1000)));
    let snapshot = build(&model, v);
    (model, snapshot)
}

/// One change through the model and the view's incremental update,
/// alternating between the two `steps` so that each one changes something.
fn bench_update(c: &mut Criterion, name: &str, v: ProxyView, steps: [Vec<Change>; 2]) {
    let (mut model, snapshot) = mesh_and_snapshot(&v);
    let mut i = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            i += 1;
            let dirty = model.apply(steps[i % 2].clone());
            update(&model, &v, &snapshot, &dirty)
        })
    });
}

fn endpoint_change(c: &mut Criterion) {
    bench_update(c, "endpoint_change_1000_services", view(), pod_moves());
}

/// With whole route configurations, and with virtual hosts over VHDS.
fn weight_change(c: &mut Criterion) {
    bench_update(c, "weight_change_1000_services", view(), weight_shifts());
    let vhds = ProxyView {
        vhds: true,
        ..view()
    };
    bench_update(c, "weight_change_1000_services_vhds", vhds, weight_shifts());
}

/// The endpoint change's two halves on their own.
fn endpoint_change_parts(c: &mut Criterion) {
    let v = view();
    let (mut model, snapshot) = mesh_and_snapshot(&v);
    let moved = pod_moves();
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
    weight_change,
    endpoint_change_parts
);
criterion_main!(benches);
