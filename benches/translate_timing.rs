//! Wall and CPU time of full translations, one after another, as `shmesh
//! serve` runs them (its allocator settings, freed pages held while
//! translating). Prints the minimum and median of each: on a shared host the
//! minimum moves least, and CPU time shows work that wall time on two busy
//! cores hides. Complements criterion's `translate` bench.
//!
//! `cargo bench --bench translate_timing -- [services] [iterations]`
//! (default 10000 and 15).

use shmesh::allocator::{holding_freed_pages, use_serve_settings};
use shmesh_model::Model;
use shmesh_translate::build;
use std::time::Instant;

#[path = "support/mesh.rs"]
mod mesh;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU time of the whole process (every thread), in milliseconds.
fn process_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: fills a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

fn min_and_median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}

fn main() {
    use_serve_settings();
    // `cargo bench` passes `--bench`; numbers are ours.
    let numbers: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let services = numbers.first().copied().unwrap_or(10_000);
    let iterations = numbers.get(1).copied().unwrap_or(15).max(1);
    let mut model = Model::new();
    model.apply(mesh::changes(&mesh::mesh_yaml(services)));
    let view = mesh::view();
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for _ in 0..iterations {
        let (started, cpu) = (Instant::now(), process_cpu_ms());
        let snapshot = holding_freed_pages(|| build(&model, &view));
        walls.push(started.elapsed().as_secs_f64() * 1e3);
        cpus.push(process_cpu_ms() - cpu);
        drop(snapshot);
    }
    let (wall_min, wall_median) = min_and_median(walls);
    let (cpu_min, cpu_median) = min_and_median(cpus);
    println!(
        "full translation, {services} services, {iterations} runs: \
         wall min {wall_min:.1} ms, median {wall_median:.1} ms; \
         CPU min {cpu_min:.1} ms, median {cpu_median:.1} ms"
    );
}
