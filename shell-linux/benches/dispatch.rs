//! The dispatcher's own work per request, through the public API: 10,000 wrapped records shaped
//! as `scripts/bench-agent.sh`'s (1000 series of 5 types, global tags and a host) sent to a
//! transport that accepts at once, so what is measured is parsing, encoding, sorting and
//! compressing, nothing of the network or a backend. Each compression level is also timed alone
//! on the same payload (its share of a request) with its compressed bytes per point.
//!
//! Measured with it (and dropped): a deflate state kept from one request to the next instead of
//! miniz_oxide's one-shot `compress_to_vec_zlib` (which allocates about 300 KB of state and a
//! zeroed output of half the input per request) compressed these payloads in the same time (5.9
//! against 5.8 ms), for 1.8 KB more binary and, kept for the dispatcher's life, 0.1 to 0.5 MB more
//! RSS in an idle agent.
//!
//! `cargo bench -p chouette-agent --bench dispatch`

use std::time::{Duration, Instant};

use chouette_agent::dispatch::{DispatchConfig, Dispatcher, HttpResponse, Transport, TransportError};
use chouette_agent::store::Record;
use chouette_core::wire::zlib;

const RECORDS: usize = 10_000;
const ROUNDS: u32 = 20;

/// Accepts everything at once; keeps the last payload (decompressed) for the level table.
#[derive(Default)]
struct Instant202 {
    plain: Vec<u8>,
    bytes: u64,
}

impl Transport for Instant202 {
    fn post(&mut self, _: &str, _: &[(&str, &str)], body: &[u8]) -> Result<HttpResponse, TransportError> {
        self.bytes += body.len() as u64;
        Ok(HttpResponse::new(202, "{}"))
    }

    fn post_payload(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        plain: &[u8],
    ) -> Result<HttpResponse, TransportError> {
        self.plain.clear();
        self.plain.extend_from_slice(plain);
        self.post(url, headers, body)
    }
}

/// The wrapped records `fill_raw` + aggregation give: one point each, in random-id order.
fn records() -> Vec<Record> {
    let kinds = ["count", "gauge", "rate", "set", "histogram"];
    let suffixes = ["avg", "count", "max", "median", "95percentile"];
    (0..RECORDS)
        .map(|i| {
            let k = (i * 7919) % 1000;
            let kind = kinds[k % 5];
            let (name, ty, interval) = match kind {
                "count" | "set" => (format!("bench.{kind}.m{}", k / 5), "count", r#", "interval": 10"#),
                "rate" => (format!("bench.rate.m{}", k / 5), "rate", r#", "interval": 10"#),
                "gauge" => (format!("bench.gauge.m{}", k / 5), "gauge", ""),
                _ => (format!("bench.histogram.m{}.{}", k / 5, suffixes[i % 5]), "gauge", ""),
            };
            let value = format!(
                r#"{{"metric": "{name}", "tags": ["board:b{}", "unit:u{}"], "points": [[1796121860.0, {}.25]], "type": "{ty}"{interval}}}"#,
                k % 10,
                k % 3,
                i % 997
            );
            Record { id: format!("{:08x}-d10d-490c-a59c-a89e{:08x}", i * 2654435761 % (1 << 32), i).into(), score: 1796121860.0, value: Some(value.into()), oversize: None }
        })
        .collect()
}

fn main() {
    let records = records();
    let mut config = DispatchConfig::for_base_url("http://127.0.0.1:1/datadog/api", None);
    config.global_tags = vec!["env:bench".to_owned()];
    config.host = Some("bench".to_owned());
    let mut dispatcher = Dispatcher::new(Instant202::default(), config);
    dispatcher.send_metrics(&records); // warm up: buffers grown once
    let start = Instant::now();
    for _ in 0..ROUNDS {
        let report = dispatcher.send_metrics(&records);
        assert_eq!(report.delivered_points, RECORDS as u64, "{report:?}");
    }
    let call = start.elapsed() / ROUNDS;
    let plain = dispatcher.transport().plain.clone();
    let rate = |d: Duration| RECORDS as f64 / d.as_secs_f64();
    println!("| step (10,000 points, {} KB of JSON) | time per request | points/s | share of a request | compressed bytes per point |", plain.len() / 1000);
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| whole request (parse, encode, sort, zlib 6) | {:.1} ms | {:.0} | 1.00 | {:.2} |",
        ms(call),
        rate(call),
        dispatcher.transport().bytes as f64 / (RECORDS as f64 * f64::from(ROUNDS + 1))
    );
    for level in [1u8, 2, 3, 4, 6] {
        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..ROUNDS {
            bytes = std::hint::black_box(zlib::compress(&plain, level)).len();
        }
        let d = start.elapsed() / ROUNDS;
        println!(
            "| zlib level {level} alone | {:.1} ms | {:.0} | {:.2} | {:.2} |",
            ms(d),
            rate(d),
            d.as_secs_f64() / call.as_secs_f64(),
            bytes as f64 / RECORDS as f64
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
