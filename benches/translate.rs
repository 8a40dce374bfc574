//! Translation and incremental update cost on a synthetic mesh: every service
//! has three versions (DestinationRule subsets), a weighted VirtualService and
//! ten endpoints.
//!
//! `cargo bench --bench translate`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shmesh::allocator::holding_freed_pages;
use shmesh::model::Model;
use shmesh::translate::{build, update, ProxyView};

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

/// A canary step: one VirtualService's weights shift, as Flagger or Argo
/// Rollouts would write them, for a view with whole route configurations and
/// for one that takes its virtual hosts over VHDS.
fn weight_change(c: &mut Criterion) {
    let mut model = Model::new();
    model.apply(changes(&mesh_yaml(1000)));
    let shifted = |w: u32| {
        changes(&format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc-7}}\nspec:\n  hosts: [svc-7]\n  http:\n  - route:\n    - {{destination: {{host: svc-7, subset: v0}}, weight: {w}}}\n    - {{destination: {{host: svc-7, subset: v1}}, weight: {}}}\n",
            100 - w
        ))
    };
    let steps = [shifted(80), shifted(90)];
    for vhds in [false, true] {
        let v = ProxyView { vhds, ..view() };
        let snapshot = build(&model, &v);
        let mut i = 0;
        let name = if vhds {
            "weight_change_1000_services_vhds"
        } else {
            "weight_change_1000_services"
        };
        c.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                let dirty = model.apply(steps[i % 2].clone());
                update(&model, &v, &snapshot, &dirty)
            })
        });
    }
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
    weight_change,
    endpoint_change_parts
);
criterion_main!(benches);
