//! Encoding wrapped records as InfluxDB lines and OpenTSDB `/api/put` objects.
//!
//! `cargo bench -p chouette-core --bench outputs -- --warm-up-time 1 --measurement-time 3`
//!
//! 10,000 wrapped records (one point each, as the original agent stores them), four tags each,
//! two global tags and a host: the agent's per-record work, parsing excluded.

use core::hint::black_box;

use chouette_core::wire::line::encode_lines;
use chouette_core::wire::opentsdb::{encode_points, Sanitize};
use chouette_core::wire::wrapped::{parse_wrapped, WrappedRecord};
use chouette_core::Tag;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const RECORDS: usize = 10_000;

fn records() -> Vec<String> {
    (0..RECORDS)
        .map(|i| {
            let suffix = ["avg", "count", "max", "95percentile"][i % 4];
            format!(
                r#"{{"metric": "chouette.http.latency.{}.{suffix}", "tags": ["endpoint:/api/v1/items/{}", "status:{}", "worker:w{}", "zone:eu west"], "points": [[{}.0, {}]], "type": "gauge"}}"#,
                i / 50,
                i % 20,
                ["200", "404", "500"][i % 3],
                i % 8,
                1_795_310_770 + (i % 100) * 10,
                (i % 997) as f64 * 0.25,
            )
        })
        .collect()
}

fn bench_outputs(c: &mut Criterion) {
    let texts = records();
    let parsed: Vec<WrappedRecord<'_>> =
        texts.iter().map(|t| parse_wrapped(t.as_bytes(), &mut []).expect("parse")).collect();
    let globals = [Tag::new("env", "prod"), Tag::new("device", "pi")];
    let mut out = vec![0u8; 512];
    let mut group = c.benchmark_group("outputs");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("line_protocol_10k_records", |b| {
        b.iter(|| {
            let mut total = 0;
            for rec in &parsed {
                total += encode_lines(rec, &globals, Some("myhost"), &mut out).expect("encode");
            }
            black_box(total)
        })
    });
    for sanitize in [Sanitize::None, Sanitize::Prometheus] {
        group.bench_function(format!("opentsdb_{}_10k_records", sanitize.as_str()), |b| {
            b.iter(|| {
                let mut total = 0;
                for rec in &parsed {
                    total +=
                        encode_points(rec, &globals, Some("myhost"), sanitize, &mut out).expect("encode");
                }
                black_box(total)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_outputs);
criterion_main!(benches);
