//! Insert throughput of the sketches, through the public API.
//!
//! `cargo bench --bench sketch -- --warm-up-time 1 --measurement-time 3`

use core::hint::black_box;

use chouette_core::limits::SKETCH_BINS;
use chouette_core::sketch::{Histogram, QuantileSketch, SetCounter};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const VALUES: usize = 1_000_000;

/// 1M values log-uniform over 6 decades (1e-3 to 1e3), from a fixed splitmix64 stream.
fn values() -> Vec<f64> {
    let mut state = 0x1234_5678_9abc_def0u64;
    (0..VALUES)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let unit = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64;
            10f64.powf(unit * 6.0 - 3.0)
        })
        .collect()
}

fn hashes() -> Vec<u64> {
    (0..VALUES as u64).map(|i| chouette_core::hash::hash_bytes(0, &i.to_le_bytes())).collect()
}

fn bench(c: &mut Criterion) {
    let values = values();
    let hashes = hashes();
    let mut group = c.benchmark_group("sketch");
    group.throughput(Throughput::Elements(VALUES as u64));
    group.sample_size(20);

    group.bench_function("QuantileSketch::insert", |b| {
        b.iter_batched_ref(
            QuantileSketch::<SKETCH_BINS>::new,
            |sketch| {
                for &v in &values {
                    let _ = sketch.insert(black_box(v));
                }
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function("Histogram::insert", |b| {
        b.iter_batched_ref(
            Histogram::new,
            |histogram| {
                for &v in &values {
                    let _ = histogram.insert(black_box(v));
                }
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function("SetCounter::insert_hash", |b| {
        b.iter_batched_ref(
            SetCounter::new,
            |set| {
                for &h in &hashes {
                    set.insert_hash(black_box(h));
                }
            },
            BatchSize::LargeInput,
        )
    });

    // The exact phase alone: 256 values into a fresh histogram (sorted insertion).
    group.throughput(Throughput::Elements(256));
    group.bench_function("Histogram::insert exact (256)", |b| {
        b.iter_batched_ref(
            Histogram::new,
            |histogram| {
                for &v in &values[..256] {
                    let _ = histogram.insert(black_box(v));
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
