//! The store is where profiling finds the server's time for direct
//! messages: one writer committing batches. This measures how many
//! messages it stores per second when requests arrive one at a time and
//! when a connection pipelines them, and the whole life of a message
//! (stored, then acknowledged and forgotten) spread over 100 pairs of
//! users, as in the `chat bench dm --pairs 100` load.
//!
//! SQLite always; the PostgreSQL engine too when `CHAT_BENCH_POSTGRES`
//! names a database (a URL), with `CHAT_BENCH_SYNC=full` for durable
//! commits (`synchronous_commit = on`; the default here is off, to measure
//! the CPU cost as the SQLite figures do).
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use server::store::{Store, StoreLimits};

/// No mailbox cap: the first groups never acknowledge what they store.
fn limits() -> StoreLimits {
    StoreLimits {
        mailbox_messages: u64::MAX,
        mailbox_bytes: u64::MAX,
        ..StoreLimits::default()
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let dir = tempfile::tempdir().expect("a temp dir");
    // `normal` sync: this measures the CPU cost, not the disk's fsync.
    let (store, _, _thread) = Store::open(dir.path(), false, 0, limits()).expect("the store opens");
    groups(c, &rt, "", &store);
    if let Ok(url) = std::env::var("CHAT_BENCH_POSTGRES") {
        let full = std::env::var("CHAT_BENCH_SYNC").is_ok_and(|s| s == "full");
        let (store, _, _task) = rt
            .block_on(Store::open_postgres(&url, full, 0, limits()))
            .expect("the PostgreSQL store opens");
        groups(c, &rt, if full { "pg_full_" } else { "pg_" }, &store);
    }
}

fn groups(c: &mut Criterion, rt: &tokio::runtime::Runtime, prefix: &str, store: &Store) {
    // Names of their own, so a second run on the same database starts
    // with new senders.
    let run = rand::random::<u32>();
    let (from, to) = rt.block_on(async {
        (
            store.sign_in(&format!("alice{run}")).await.expect("alice"),
            store.sign_in(&format!("bob{run}")).await.expect("bob"),
        )
    });
    let body = Bytes::from(vec![b'x'; 32]);
    let number = AtomicU64::new(1);
    let next = || number.fetch_add(1, Ordering::Relaxed);

    let mut group = c.benchmark_group(format!("{prefix}store_direct"));
    group.throughput(Throughput::Elements(256));
    group.bench_function("pipelined_x256", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut pending = Vec::with_capacity(256);
                for _ in 0..256 {
                    pending.push(store.store_direct(from, next(), to, body.clone()).await);
                }
                for p in pending {
                    p.wait().await.expect("stored");
                }
            })
        })
    });
    group.bench_function("one_at_a_time_x256", |b| {
        b.iter(|| {
            rt.block_on(async {
                for _ in 0..256 {
                    store
                        .store_direct(from, next(), to, body.clone())
                        .await
                        .wait()
                        .await
                        .expect("stored");
                }
            })
        })
    });
    group.finish();

    // 100 senders and 100 recipients: each batch touches every one of them,
    // which is what decides how many database pages a commit writes.
    let pairs: Vec<(u64, u64)> = rt.block_on(async {
        let mut pairs = Vec::new();
        for i in 0..100 {
            let s = store
                .sign_in(&format!("s{i}-{run}"))
                .await
                .expect("a sender");
            let r = store
                .sign_in(&format!("r{i}-{run}"))
                .await
                .expect("a recipient");
            pairs.push((s, r));
        }
        pairs
    });
    let mut group = c.benchmark_group(format!("{prefix}message_lifecycle"));
    group.throughput(Throughput::Elements(256));
    group.bench_function("100_pairs_x256", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut pending = Vec::with_capacity(256);
                for i in 0..256 {
                    let (from, to) = pairs[i % pairs.len()];
                    pending.push((to, store.store_direct(from, next(), to, body.clone()).await));
                }
                for (to, p) in pending {
                    if let server::store::Stored::New(delivery) = p.wait().await.expect("stored") {
                        // Committed with the next batch, as acknowledgements are.
                        store.forget(to, delivery).await;
                    }
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
