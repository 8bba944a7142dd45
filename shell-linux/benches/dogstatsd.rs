//! The listener's hot path, in process: DogStatsD datagrams parsed and recorded into the
//! listener's memory (`Memory::record_datagram`), against parsing alone (the ceiling) measured in
//! the same run. 100k lines over 10k contexts, every kind, 3 tags, a quarter at `@0.5`, in 8 KiB
//! datagrams (the core's `dogstatsd/parse+record` bench's workload). Prints lines/s and the ratio.
//!
//! `cargo bench -p chouette-agent --bench dogstatsd`

use std::hint::black_box;
use std::time::Instant;

use chouette_agent::dogstatsd::memory::Memory;
use chouette_core::wire::dogstatsd::{parse_datagram, Message, Value};

const LINES: usize = 100_000;
const ROUNDS: usize = 20;

fn datagrams() -> Vec<Vec<u8>> {
    let kinds = ["c", "g", "ms", "h", "s", "d"];
    let mut datagrams: Vec<Vec<u8>> = vec![Vec::new()];
    for i in 0..LINES {
        let ctx = (i * 7919) % 10_000;
        let kind = kinds[ctx % kinds.len()];
        let value = if kind == "s" { format!("user-{}", i % 50) } else { format!("{}.25", i % 1000) };
        let rate = if i % 4 == 0 { "|@0.5" } else { "" };
        let line = format!(
            "app.metric_{}:{value}|{kind}{rate}|#host:board-{},endpoint:/api/v1/thing/{},env:prod",
            ctx / 100,
            ctx % 10,
            ctx % 100
        );
        if datagrams.last().map_or(0, Vec::len) + line.len() + 1 > 8192 {
            datagrams.push(Vec::new());
        }
        if let Some(d) = datagrams.last_mut() {
            if !d.is_empty() {
                d.push(b'\n');
            }
            d.extend_from_slice(line.as_bytes());
        }
    }
    datagrams
}

/// Best lines/s of `ROUNDS` rounds of `round`.
fn best(mut round: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        round();
        best = best.min(start.elapsed().as_secs_f64());
    }
    LINES as f64 / best
}

fn main() {
    let datagrams = datagrams();
    let parse = best(|| {
        let mut sum = 0.0;
        for d in &datagrams {
            for line in parse_datagram(d) {
                if let Ok(Message::Metric { values, tags, .. }) = line.result {
                    for v in values.iter() {
                        if let Value::Number(n) = v {
                            sum += n;
                        }
                    }
                    sum += tags.iter().count() as f64;
                }
            }
        }
        black_box(sum);
    });
    let now = 1_700_000_005.0;
    let mut memory = Memory::new(10, 20_000);
    let record = best(|| {
        for d in &datagrams {
            memory.record_datagram(black_box(now), d);
        }
    });
    assert_eq!(memory.stats().accounted_lines(), memory.stats().lines);
    assert!(memory.stats().refused.is_empty(), "{:?}", memory.stats().refused);
    println!("| path | lines/s | ratio to parsing |");
    println!("|---|---|---|");
    println!("| parse + walk values and tags (ceiling) | {:.2} M | 1.00 |", parse / 1e6);
    println!("| parse + record into the listener's memory | {:.2} M | {:.2} |", record / 1e6, record / parse);
}
