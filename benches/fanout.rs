//! Pushing one change to many subscribers: every stream's state machine moves
//! to the new snapshot and its responses are encoded for the wire, as the xDS
//! server does per stream. Resources are encoded once in the cache; what is
//! measured here is what each stream still pays.
//!
//! Delta and SotW streams subscribed to 1,000 assignments each, one of which
//! changes. `cargo bench --bench fanout`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use shmesh_cache::responses::Chunked;
use shmesh_cache::{Resource, ResourceType, Snapshot, SnapshotBuilder};
use shmesh_xds::delta::DeltaStream;
use shmesh_xds::request::DeltaRequest;
use shmesh_xds::NameSets;

/// The allocator the `shmesh` binary runs with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A snapshot with `n` clusters' assignments, `changed` of them at a new version.
fn snapshot(n: usize, generation: u32) -> Arc<Snapshot> {
    let mut b = SnapshotBuilder::default();
    let resources = (0..n)
        .map(|i| {
            let name = format!("outbound|8080||svc-{i}.ns.svc.cluster.local");
            // Only assignment 0 changes between generations.
            let tag = if i == 0 { generation } else { 0 };
            let cla = ClusterLoadAssignment {
                cluster_name: format!("{name}-{tag}"),
                ..Default::default()
            };
            Resource::encode(name, &cla)
        })
        .collect();
    b.set(ResourceType::Endpoint, resources);
    Arc::new(b.build())
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_one_endpoint_change");
    group.sample_size(10);
    for streams in [1_000, 10_000] {
        let first = snapshot(1_000, 0);
        // One server's interned subscriptions, shared by its streams.
        let name_sets = Arc::new(NameSets::default());
        let mut machines: Vec<DeltaStream> = (0..streams)
            .map(|_| {
                let mut m = DeltaStream::new(first.clone(), "bench", name_sets.clone());
                let req = DeltaDiscoveryRequest {
                    type_url: ResourceType::Endpoint.type_url().to_string(),
                    resource_names_subscribe: first
                        .get(ResourceType::Endpoint)
                        .names()
                        .map(String::from)
                        .collect(),
                    ..Default::default()
                };
                let _ = m.on_request(&DeltaRequest::from(&req));
                m
            })
            .collect();
        let mut generation = 0;
        group.bench_with_input(BenchmarkId::from_parameter(streams), &streams, |b, _| {
            b.iter(|| {
                generation += 1;
                let next = snapshot(1_000, generation);
                let mut bytes = 0;
                for m in machines.iter_mut() {
                    for r in m.on_snapshot(next.clone()).responses {
                        bytes += r.encoded_len();
                    }
                }
                bytes
            })
        });
    }
    group.finish();
}

fn fan_out_sotw(c: &mut Criterion) {
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use shmesh_xds::request::SotwRequest;
    use shmesh_xds::sotw::SotwStream;
    let mut group = c.benchmark_group("fanout_one_endpoint_change_sotw");
    group.sample_size(10);
    for streams in [1_000, 10_000] {
        let first = snapshot(1_000, 0);
        let name_sets = Arc::new(NameSets::default());
        let names: Vec<String> = first
            .get(ResourceType::Endpoint)
            .names()
            .map(String::from)
            .collect();
        let mut machines: Vec<SotwStream> = (0..streams)
            .map(|_| {
                let mut m = SotwStream::new(first.clone(), "bench", name_sets.clone());
                let req = DiscoveryRequest {
                    type_url: ResourceType::Endpoint.type_url().to_string(),
                    resource_names: names.clone(),
                    ..Default::default()
                };
                let _ = m.on_request(&SotwRequest::from(&req));
                m
            })
            .collect();
        let mut generation = 0;
        group.bench_with_input(BenchmarkId::from_parameter(streams), &streams, |b, _| {
            b.iter(|| {
                generation += 1;
                let next = snapshot(1_000, generation);
                let mut bytes = 0;
                for m in machines.iter_mut() {
                    for r in m.on_snapshot(next.clone()).responses {
                        bytes += r.encoded_len();
                    }
                }
                bytes
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fan_out, fan_out_sotw);
criterion_main!(benches);
