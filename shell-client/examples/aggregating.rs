//! Aggregating mode: a million calls become one record per series per 10 s interval.
//! `cargo run -p chouette-client --example aggregating`

use std::time::{Duration, Instant};

use chouette_client::{Client, ClientConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ClientConfig::from_env()?.aggregating(Duration::from_secs(10));
    let client = Client::new(config)?;
    let start = Instant::now();
    for i in 0..1_000_000u32 {
        client.count("example.agg.requests", 1, &[("route", if i % 2 == 0 { "/a" } else { "/b" })]);
        client.gauge("example.agg.last_id", i, &[]);
    }
    println!("2M calls in {:?}", start.elapsed());
    client.shutdown(Duration::from_secs(2))?; // flushes the open buckets
    Ok(())
}
