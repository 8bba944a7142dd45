//! Configuration from the environment: every variable of the original (compat §4), with its
//! defaults and JSON list syntax, plus Chouette's own (`REDIS_URL`, `CHOUETTE_*`).
//!
//! Names are case-insensitive, as pydantic's were. A value that cannot work is a startup error
//! naming the variable, never a crash later.

use std::path::PathBuf;
use std::time::Duration;

use chouette_core::wrap::WrapConfig;

/// A secret (the API key): never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that sends it (the `DD-API-KEY` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where queues live.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    /// Redis, in the original's layout.
    Redis {
        /// `redis://[user:password@]host:port/db` or `rediss://...` (TLS). Built from
        /// `REDIS_URL`, or from `REDIS_HOST` / `REDIS_PORT`.
        url: String,
        /// Whether Redis was chosen because the original's default host `redis` resolved,
        /// rather than configured explicitly (logged at startup).
        implicit: bool,
    },
    /// The embedded store (redb), in `CHOUETTE_STATE_DIR`.
    Embedded {
        /// The database file.
        path: PathBuf,
    },
}

/// Which Datadog logs API to post to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogsApi {
    /// `{DATADOG_LOGS_URL}/v1/input`, as the original.
    #[default]
    V1,
    /// `{DATADOG_LOGS_URL}/api/v2/logs`.
    V2,
}

/// The agent's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `API_KEY`. `None` (with no `DATADOG_URL` either) means dry-run.
    pub api_key: Option<Secret>,
    /// `GLOBAL_TAGS`: JSON list of `k:v` strings appended to every metric and log.
    pub global_tags: Vec<String>,
    /// `DATADOG_URL` (default `https://api.datadoghq.com/api`): series go to `{url}/v1/series`.
    pub datadog_url: String,
    /// `DATADOG_LOGS_URL` (default `https://http-intake.logs.datadoghq.com`).
    pub datadog_logs_url: String,
    /// `CHOUETTE_LOGS_API`: `v1` (default) or `v2`.
    pub logs_api: LogsApi,
    /// `HOST`: set as `host` on every metric and log when non-empty.
    pub host: Option<String>,
    /// `AGGREGATE_INTERVAL` (default 10 s): the flush interval and the aggregate tick.
    pub aggregate_interval: Duration,
    /// `CAPTURE_INTERVAL` (default 30 s): the collectors' tick.
    pub capture_interval: Duration,
    /// `RELEASE_INTERVAL` (default 60 s): the release tick (which then drains the backlog).
    pub release_interval: Duration,
    /// `METRIC_TTL` (default 14400 s): raw and wrapped metrics older than this are deleted.
    pub metric_ttl: Duration,
    /// `LOG_TTL` (default 64800 s): logs older than this are deleted.
    pub log_ttl: Duration,
    /// `METRICS_BULK_SIZE` (default 10000): most points per request.
    pub metrics_bulk_size: usize,
    /// `METRICS_WRAPPER`, `HISTOGRAM_AGGREGATES`, `HISTOGRAM_PERCENTILES`.
    pub wrap: WrapConfig,
    /// `SEND_SELF_METRICS` (default true).
    pub send_self_metrics: bool,
    /// `LOG_LEVEL` (default INFO).
    pub log_level: log::LevelFilter,
    /// `REDIS_URL`, `REDIS_HOST`, `REDIS_PORT`, `CHOUETTE_STATE_DIR`.
    pub store: StoreConfig,
    /// `COLLECTOR_PLUGINS`: JSON list of plugin names (filled by the boards issue).
    pub collector_plugins: Vec<String>,
    /// `CHOUETTE_CA_BUNDLE`: extra PEM CA certificates to trust (TLS verification is always on).
    pub ca_bundle: Option<PathBuf>,
    /// `CHOUETTE_CONNECT_TIMEOUT` (default 10 s).
    pub connect_timeout: Duration,
    /// `CHOUETTE_REQUEST_TIMEOUT` (default 30 s): the whole request.
    pub request_timeout: Duration,
    /// `CHOUETTE_GRACE` (default 2 s): how long after its end a bucket waits for late records.
    pub grace: Duration,
    /// True when neither `API_KEY` nor `DATADOG_URL` is set: print what would be sent.
    pub dry_run: bool,
}
