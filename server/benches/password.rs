//! How long one password hash takes with the default Argon2id parameters
//! (the README records it: about 50 ms is the aim), and with the cheapest.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use server::accounts::hasher::HashParams;
use server::config::{ARGON2_ITERATIONS, ARGON2_MEMORY_KIB};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("argon2id");
    group.sample_size(20);
    let default = HashParams {
        memory_kib: ARGON2_MEMORY_KIB,
        iterations: ARGON2_ITERATIONS,
    };
    group.bench_function("default_params", |b| {
        b.iter(|| default.hash_now("correct horse battery").expect("hashed"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
