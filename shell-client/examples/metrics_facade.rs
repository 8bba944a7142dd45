//! The `metrics` facade reporting through Chouette.
//! `cargo run -p chouette-client --example metrics_facade`

use std::time::Duration;

use chouette_client::{ChouetteRecorder, Client};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::from_env()?;
    ChouetteRecorder::new(client.clone()).install().map_err(|_| "a metrics recorder is already installed")?;
    for i in 0..10u32 {
        metrics::counter!("example.requests", "route" => "/pay").increment(1);
        metrics::gauge!("example.inflight").set(f64::from(i % 3));
        metrics::histogram!("example.latency_seconds").record(0.01 * f64::from(i));
    }
    client.shutdown(Duration::from_secs(2))?;
    Ok(())
}
