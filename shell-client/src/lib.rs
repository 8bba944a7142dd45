#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc = include_str!("../README.md")]
//!
//! ## Map of the layers
//!
//! - [`Client`] and [`ClientConfig`]: the calls, the bounded buffer, the writer thread.
//! - [`ChouetteLogger`]: the `log` bridge; [`ChouetteRecorder`]: the `metrics` bridge.
//! - [`SanitizeMode`]: name and tag-key rules.
//! - [`global`] and the free functions: a process-wide client configured from the environment.
//!
//! ## Files, from the app's call to Redis
//!
//! - `config.rs` (the settings), `sanitize.rs` (name and tag-key rules);
//! - `client.rs`: the calls the app makes, on the app's threads; `compact.rs`: a raw-mode call
//!   in its compact form (a few copies, no JSON); `aggregate.rs`: the aggregating mode's tables;
//! - `buffer.rs`: the bounded buffer between the app's threads and the writer thread;
//!   `shared.rs`: everything both sides hold (the buffer, the tables, the counters, the shutdown
//!   handshake), so that `worker.rs` never imports `client.rs` (which starts it);
//! - `worker.rs`: the writer thread (batches into `MULTI; ZADD; HSET; EXEC`, retries, flushes
//!   aggregates, process metrics from `process.rs`); `render.rs`: records as the Python client
//!   writes them, and ids;
//! - `logger.rs` and `recorder.rs`: the `log` and `metrics` bridges onto [`Client`].

mod aggregate;
mod buffer;
mod client;
mod compact;
mod config;
mod logger;
mod process;
mod recorder;
mod render;
mod sanitize;
mod shared;
mod worker;

use std::sync::OnceLock;
use std::time::Duration;

pub use buffer::StatsSnapshot;
pub use chouette_core::wire::raw::{encode_raw_metric, RawRecord, RawValue};
pub use chouette_core::{Member, MetricType};
pub use client::{At, Client, ShutdownError, TimeUnit, Timed, DEFAULT_SHUTDOWN};
pub use config::{
    parse_tags, ClientConfig, ConfigError, Mode, RedisTls, DEFAULT_BATCH_RECORDS, DEFAULT_BUFFER_BYTES,
    DEFAULT_BUFFER_RECORDS, DEFAULT_REDIS_HOST, DEFAULT_REDIS_PORT,
};
pub use logger::{parse_level, ChouetteLogger, LogSetupError};
pub use recorder::ChouetteRecorder;
pub use render::Number;
pub use sanitize::SanitizeMode;

static GLOBAL: OnceLock<Client> = OnceLock::new();

/// The process-wide client, started on first use from the environment
/// ([`ClientConfig::from_env`]) unless [`set_global`] came first. If the environment cannot
/// work (a bad `REDIS_PORT`, say), the error is logged once and the client is inert: calls are
/// dropped and counted, never a panic in the app.
pub fn global() -> &'static Client {
    GLOBAL.get_or_init(|| {
        match Client::from_env() {
            Ok(client) => client,
            Err(error) => {
                log::error!(target: "chouette_client", "error={error}; chouette-client is disabled, records are dropped");
                Client::inert(ClientConfig::new(format!("redis://{DEFAULT_REDIS_HOST}:{DEFAULT_REDIS_PORT}/")))
            }
        }
    })
}

/// Makes `client` the process-wide client; gives it back if one is already set.
pub fn set_global(client: Client) -> Result<(), Client> {
    GLOBAL.set(client)
}

/// Flushes and stops the process-wide client (if it was started), waiting at most `timeout`.
pub fn shutdown_global(timeout: Duration) -> Result<(), ShutdownError> {
    GLOBAL.get().map_or(Ok(()), |c| c.shutdown(timeout))
}

/// [`Client::count`] on the [`global`] client.
pub fn count(name: &str, value: impl Into<Number>, tags: &[(&str, &str)]) {
    global().count(name, value, tags)
}

/// [`Client::increment`] on the [`global`] client.
pub fn increment(name: &str, value: impl Into<Number>, tags: &[(&str, &str)]) {
    global().increment(name, value, tags)
}

/// [`Client::decrement`] on the [`global`] client.
pub fn decrement(name: &str, value: impl Into<Number>, tags: &[(&str, &str)]) {
    global().decrement(name, value, tags)
}

/// [`Client::gauge`] on the [`global`] client.
pub fn gauge(name: &str, value: impl Into<Number>, tags: &[(&str, &str)]) {
    global().gauge(name, value, tags)
}

/// [`Client::rate`] on the [`global`] client.
pub fn rate(name: &str, value: impl Into<Number>, tags: &[(&str, &str)]) {
    global().rate(name, value, tags)
}

/// [`Client::histogram`] on the [`global`] client.
pub fn histogram(name: &str, value: impl Into<Number>, tags: &[(&str, &str)]) {
    global().histogram(name, value, tags)
}

/// [`Client::set`] on the [`global`] client.
pub fn set(name: &str, members: &[Member<'_>], tags: &[(&str, &str)]) {
    global().set(name, members, tags)
}

/// [`Client::at`] on the [`global`] client: calls stamped `timestamp`.
pub fn at(timestamp: f64) -> At<'static> {
    global().at(timestamp)
}

/// [`Client::timed`] on the [`global`] client.
pub fn timed<'a>(name: &'a str, tags: &'a [(&'a str, &'a str)]) -> Timed<'a> {
    global().timed(name, tags)
}

/// [`Client::time`] on the [`global`] client.
pub fn time<R>(name: &str, tags: &[(&str, &str)], work: impl FnOnce() -> R) -> R {
    global().time(name, tags, work)
}
