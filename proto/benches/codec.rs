//! Encode and decode throughput for small messages and 256-byte chunks.
#![allow(missing_docs)]

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use proto::{decode_from, Packet};

fn packets() -> Vec<(&'static str, Packet)> {
    vec![
        (
            "message_32B",
            Packet::MessageRequest {
                session: 0x1122_3344_5566_7788,
                to: 42,
                message: 7,
                body: Bytes::from(vec![b'x'; 32]),
            },
        ),
        (
            "chunk_256B",
            Packet::DownloadChunkResponse {
                transaction: 9,
                chunk: 1234,
                data: Bytes::from(vec![0xAB; 256]),
            },
        ),
    ]
}

const BATCH: usize = 1000;

fn bench(c: &mut Criterion) {
    for (name, packet) in packets() {
        let len = packet.encoded_len();
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function("encode_x1000", |b| {
            let mut buf = BytesMut::with_capacity(len * BATCH);
            b.iter(|| {
                buf.clear();
                for _ in 0..BATCH {
                    black_box(&packet).encode(&mut buf).ok();
                }
                black_box(buf.len())
            })
        });
        let mut stream = BytesMut::new();
        for _ in 0..BATCH {
            packet.encode(&mut stream).ok();
        }
        let stream = stream.freeze();
        group.bench_function("decode_x1000", |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(&stream[..]);
                let mut n = 0;
                while let Ok(Some(p)) = decode_from(&mut buf) {
                    black_box(p);
                    n += 1;
                }
                assert_eq!(n, BATCH);
            })
        });
        group.finish();
        let mut group = c.benchmark_group(format!("{name}_bytes"));
        group.throughput(Throughput::Bytes((len * BATCH) as u64));
        group.bench_function("decode_x1000", |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(&stream[..]);
                while let Ok(Some(p)) = decode_from(&mut buf) {
                    black_box(p);
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
