//! Per-call cost on the app's thread, raw-mode throughput into a real Redis, aggregating-mode
//! calls per second.

use std::time::{Duration, Instant};

use chouette_client::{Client, ClientConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Each sample uses a fresh client whose buffer holds every call of the sample, so no call is a
/// (cheaper) drop; the writer drains into Redis concurrently, as in an app.
fn per_call(c: &mut Criterion) {
    let redis = chouette_tests::RedisServer::start();
    let mut group = c.benchmark_group("call");
    group.throughput(Throughput::Elements(1));
    let raw = |iters: u64, call: &dyn Fn(&Client)| {
        let client = Client::new(
            ClientConfig::new(redis.url())
                .with_buffer_records(iters as usize + 1)
                .with_buffer_bytes(usize::MAX),
        )
        .expect("client");
        let start = Instant::now();
        for _ in 0..iters {
            call(&client);
        }
        let elapsed = start.elapsed();
        assert_eq!(client.stats().dropped, 0);
        let _ = client.shutdown(Duration::from_secs(60));
        let mut con = redis.client();
        let _: () = redis::cmd("FLUSHALL").query(&mut con).expect("flushall");
        elapsed
    };
    group.bench_function("raw count with 2 tags", |b| {
        b.iter_custom(|iters| {
            raw(iters, &|c| c.count("bench.requests", 1, &[("route", "/pay"), ("shop", "eu")]))
        })
    });
    group.bench_function("raw gauge float, no tags", |b| {
        b.iter_custom(|iters| raw(iters, &|c| c.gauge("bench.level", 0.5, &[])))
    });
    let agg =
        Client::new(ClientConfig::new(redis.url()).aggregating(Duration::from_secs(10))).expect("client");
    group.bench_function("aggregating count with 2 tags", |b| {
        b.iter(|| agg.count("bench.requests", 1, &[("route", "/pay"), ("shop", "eu")]))
    });
    // Two app threads (the machine's cores), each on four series of its own: what one lock for
    // all series made them wait for. Time per call over both threads' calls.
    const SHOPS: [[&str; 4]; 2] = [["eu", "us", "asia", "africa"], ["uk", "ca", "jp", "br"]];
    group.bench_function("aggregating count with 2 tags, 2 threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for shops in &SHOPS {
                    let agg = &agg;
                    scope.spawn(move || {
                        for i in 0..iters / 2 {
                            let shop = shops[(i % 4) as usize];
                            agg.count("bench.requests", 1, &[("route", "/pay"), ("shop", shop)]);
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    group.finish();
    let _ = agg.shutdown(Duration::from_secs(5));
}

/// One app thread writes N records as fast as it can; the time until the writer has sent them
/// all gives the sustained rate into Redis.
fn throughput(c: &mut Criterion) {
    let redis = chouette_tests::RedisServer::start();
    let mut group = c.benchmark_group("sustained");
    group.sample_size(10);
    const N: u64 = 200_000;
    group.throughput(Throughput::Elements(N));
    group.bench_function("raw into redis", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let client = Client::new(
                    ClientConfig::new(redis.url())
                        .with_buffer_records(N as usize)
                        .with_buffer_bytes(usize::MAX),
                )
                .expect("client");
                let start = Instant::now();
                for i in 0..N {
                    client.count("bench.requests", i, &[("route", "/pay")]);
                }
                client.shutdown(Duration::from_secs(60)).expect("flushed");
                total += start.elapsed();
                assert_eq!(client.stats().sent, N);
                let mut con = redis.client();
                let _: () = redis::cmd("FLUSHALL").query(&mut con).expect("flushall");
            }
            total
        })
    });
    group.finish();
}

/// Rendering one call as the original's JSON with the core's encoder, as the writer thread does
/// (into a reused buffer, then copied out; no Redis).
fn render(c: &mut Criterion) {
    use chouette_core::wire::raw::{encode_raw_metric, Number, RawRecord, RawValue};
    use chouette_core::MetricType;
    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(1));
    let mut buf = vec![0u8; 1024];
    let mut one = |name: &str, record: RawRecord<'static>| {
        group.bench_function(name, |b| {
            b.iter(|| {
                let record = std::hint::black_box(&record);
                let len = encode_raw_metric(record, &mut buf).expect("fits");
                buf[..len].to_vec()
            })
        });
    };
    one(
        "raw count with 2 tags",
        RawRecord {
            name: "bench.requests",
            kind: MetricType::Count,
            value: RawValue::Number(Number::Int(1)),
            timestamp: 1_763_780_437.123_456,
            tags: &[("route", "/pay"), ("shop", "eu")],
        },
    );
    one(
        "raw gauge float, no tags",
        RawRecord {
            name: "bench.level",
            kind: MetricType::Gauge,
            value: RawValue::Number(Number::Float(0.1)),
            timestamp: 1_763_780_437.5,
            tags: &[],
        },
    );
    group.finish();
}

criterion_group!(benches, render, per_call, throughput);
criterion_main!(benches);
