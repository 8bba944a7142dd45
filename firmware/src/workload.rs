//! The demo's workload: what it records at every 100 ms tick. The MCU crate (chouette-mcu)
//! records these into its aggregator, closing 1 s intervals; the placeholder loop only numbers
//! its frames with the tick.

/// `fw.demo.ticks`, a count: +1 per tick.
pub const TICKS: &str = "fw.demo.ticks";
/// `fw.demo.temperature`, a gauge.
pub const TEMPERATURE: &str = "fw.demo.temperature";
/// `fw.demo.latency_ms`, a histogram.
pub const LATENCY_MS: &str = "fw.demo.latency_ms";
/// Ticks are this far apart, in uptime.
pub const TICK_MS: u64 = 100;
/// Intervals the aggregator closes, in uptime.
pub const INTERVAL_MS: u64 = 1_000;

/// What one tick records. Deterministic, so that a test knows every value the gateway must see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Added to [`TICKS`]: always 1.
    pub ticks: f64,
    /// [`TEMPERATURE`]: 20.0, 20.1, ... 20.9, then 20.0 again.
    pub temperature: f64,
    /// Recorded into [`LATENCY_MS`]: 1 to 7.
    pub latency_ms: f64,
}

/// The samples of tick `tick` (0-based).
pub fn workload(tick: u32) -> Sample {
    Sample {
        ticks: 1.0,
        temperature: 20.0 + f64::from(tick % 10) / 10.0,
        latency_ms: f64::from(tick % 7 + 1),
    }
}
