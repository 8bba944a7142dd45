//! HTTP dispatch to the outputs (Datadog series and logs, InfluxDB, OpenTSDB): records in,
//! dispositions out.
//!
//! [`Dispatcher::send_until`] takes outbox records for one [`Destination`] and returns one
//! [`Disposition`] per record, in order: every record is delivered, dead-lettered or kept,
//! exactly once per call. Each record is parsed and encoded **once** by the destination's
//! [`Output`] (a record that cannot be encoded is dead at once, with the output's reason); the
//! encoded entries are cut into payloads within the output's [`Limits`], compressed (zlib or
//! gzip) and posted; splitting and bisection reuse the same entries. The outputs are
//! [`DatadogSeries`] and [`DatadogLogs`] (the API key in the `DD-API-KEY` header only),
//! [`DatadogEvents`] and [`DatadogServiceChecks`] (DogStatsD events and service checks),
//! [`InfluxOutput`] and [`OpentsdbOutput`]; [`outputs`] builds the enabled ones.
//!
//! Each destination is an outbox of its own: its own [`Backoff`] (so its own "next attempt"
//! deadline), its own [`DestinationStats`] and its own alarm state. One destination's trouble
//! never delays another: logs keep flowing while the metrics endpoint is down, InfluxDB's outage
//! holds no Datadog point.
//!
//! Status handling (reference `datadog-api.md` §1.1, §2, §4; fixes compat §7 items 17 and 31):
//!
//! | Answer | What happens |
//! |---|---|
//! | 2xx (200, 202, 204) | delivered; the backoff resets (INFO once if it was failing) |
//! | a 4xx whose body says which records were refused (InfluxDB `partial write`, OpenTSDB `?details`: [`Output::read_refusal`]) | those records dead, the rest delivered, nothing resent ([`Verdict::Partial`]) |
//! | 413, or a compressed payload over the limit | split in halves, each sent again, down to one record, which is then dead (`http_413`) |
//! | 400, 422 and any other 4xx not listed here | a record is poison only if the endpoint accepts others in the same call: bisect, only offenders dead (`http_400`, `http_<code>`), the rest delivered. If nothing at all is accepted (`O(log n)` requests, see `settle`), an endpoint problem: as the next row |
//! | 3xx, 404, 405, 410, 411, 415, 421, 426 | the URL or the configuration is wrong: everything kept; one ERROR naming the URL and the status ("check DATADOG_URL"); back off |
//! | 401, 403 | everything kept; one ERROR "check API_KEY" (or the output's credentials); back off |
//! | 408, 429, 5xx, 1xx, timeout, reset, refused, TLS | everything not yet settled kept; one WARN; back off, at least `Retry-After` when the answer has one |
//!
//! While a destination is failing, each later failure logs at DEBUG only (the ERROR or WARN is
//! written when the trouble starts or changes kind), and one INFO when it accepts again.
//!
//! Unlike the Datadog agent, 400 and 413 never drop a whole payload: only the records that the
//! backend refuses on their own go to the dead-letter queue. Unlike the original, a refused
//! record does not block the queue (head-of-line blocking, compat §7 item 17).
//!
//! While backing off ([`Dispatcher::ready_at`]) a call makes no request and keeps everything.
//! A call given a deadline ([`Dispatcher::send_until`]) stops sending when it passes and keeps
//! what is unsettled without counting a failure ([`Outcome::OutOfTime`]).

mod backoff;
pub mod datadog;
pub mod events;
pub mod gzip;
pub mod influxdb;
pub mod opentsdb;
pub mod output;
mod settle;
mod transport;

pub use backoff::{Backoff, DEFAULT_BASE, DEFAULT_CAP, MIN_DELAY};
pub use datadog::{DatadogLogs, DatadogSeries};
pub use events::{events_enabled, DatadogEvents, DatadogServiceChecks};
pub use influxdb::InfluxOutput;
pub use opentsdb::OpentsdbOutput;
pub use output::{Encoding, Entries, Framing, Limits, Output};
pub use settle::{settle, Disposition, Outcome, Settler, Verdict};
pub use transport::{
    inflate, DryRunTransport, HttpResponse, Transport, TransportError, TransportSetupError, UreqTransport,
};

use std::collections::BTreeMap;
use std::time::Instant;

use chouette_core::wire::series::{SeriesLimits, EMPTY_PAYLOAD_BYTES};
use chouette_core::wire::wrapped::MAX_POINTS;
use chouette_core::wire::{zlib, ParseError};

use crate::config::{redact_url, Config, LogsApi, Secret};
use crate::limits::{
    DEFAULT_LOGS_MAX_BYTES, DEFAULT_LOGS_MAX_ENTRIES, DEFAULT_LOG_MAX_ENTRY_BYTES,
    DEFAULT_SERIES_MAX_COMPRESSED_BYTES, DEFAULT_SERIES_MAX_UNCOMPRESSED_BYTES,
};
use crate::store::{Queue, Record};

/// Where and how to send: built from [`Config`] with [`DispatchConfig::from_config`].
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// `{DATADOG_URL}/v1/series`.
    pub series_url: String,
    /// `{DATADOG_LOGS_URL}/v1/input`, or `/api/v2/logs` with `CHOUETTE_LOGS_API=v2`.
    pub logs_url: String,
    /// `{DATADOG_URL}/v1/events`: DogStatsD events, one per request.
    pub events_url: String,
    /// `{DATADOG_URL}/v1/check_run`: DogStatsD service checks, a JSON array.
    pub check_run_url: String,
    /// Sent as `DD-API-KEY` when set.
    pub api_key: Option<Secret>,
    /// `GLOBAL_TAGS`, appended to every point's tags and every log's `ddtags`.
    pub global_tags: Vec<String>,
    /// `HOST`: set as `host` on every point and log.
    pub host: Option<String>,
    /// Most points per series request (`METRICS_BULK_SIZE`; at least [`MAX_POINTS`]).
    pub max_points: usize,
    /// Largest series payload before compression.
    pub series_max_uncompressed_bytes: usize,
    /// Largest series payload after compression.
    pub series_max_compressed_bytes: usize,
    /// Largest logs payload before compression.
    pub logs_max_bytes: usize,
    /// Most logs per request.
    pub logs_max_entries: usize,
    /// Largest single log, as encoded for the intake.
    pub log_max_entry_bytes: usize,
    /// zlib (and gzip) level: `COMPRESSION_LEVEL`, 6 by default (what the original sent).
    pub compression_level: u8,
}

fn join_url(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path)
}

impl DispatchConfig {
    /// Built from the agent's configuration, with the default payload limits.
    pub fn from_config(config: &Config) -> Self {
        let logs_path = match config.logs_api {
            LogsApi::V1 => "v1/input",
            LogsApi::V2 => "api/v2/logs",
        };
        DispatchConfig {
            series_url: join_url(&config.datadog_url, "v1/series"),
            logs_url: join_url(&config.datadog_logs_url, logs_path),
            events_url: join_url(&config.datadog_url, "v1/events"),
            check_run_url: join_url(&config.datadog_url, "v1/check_run"),
            api_key: config.api_key.clone(),
            global_tags: config.global_tags.clone(),
            host: config.host.clone().filter(|h| !h.is_empty()),
            max_points: config.metrics_bulk_size,
            compression_level: config.compression_level,
            ..Self::for_base_url("", None)
        }
    }

    /// A configuration for `base` (series at `{base}/v1/series`, logs at `{base}/v1/input`,
    /// events at `{base}/v1/events`, service checks at `{base}/v1/check_run`), with default
    /// limits, no tags and no host: for tests and tools.
    pub fn for_base_url(base: &str, api_key: Option<&str>) -> Self {
        DispatchConfig {
            series_url: join_url(base, "v1/series"),
            logs_url: join_url(base, "v1/input"),
            events_url: join_url(base, "v1/events"),
            check_run_url: join_url(base, "v1/check_run"),
            api_key: api_key.map(|k| Secret::new(k.to_owned())),
            global_tags: Vec::new(),
            host: None,
            max_points: chouette_core::wire::series::DEFAULT_MAX_POINTS,
            series_max_uncompressed_bytes: DEFAULT_SERIES_MAX_UNCOMPRESSED_BYTES,
            series_max_compressed_bytes: DEFAULT_SERIES_MAX_COMPRESSED_BYTES,
            logs_max_bytes: DEFAULT_LOGS_MAX_BYTES,
            logs_max_entries: DEFAULT_LOGS_MAX_ENTRIES,
            log_max_entry_bytes: DEFAULT_LOG_MAX_ENTRY_BYTES,
            compression_level: zlib::DEFAULT_LEVEL,
        }
    }

    fn series_limits(&self) -> SeriesLimits {
        SeriesLimits {
            max_payload_bytes: self.series_max_uncompressed_bytes.max(EMPTY_PAYLOAD_BYTES),
            max_points: self.max_points.max(MAX_POINTS),
        }
    }
}

/// One output of the agent, with its own outbox queue, URL, backoff and counters: the identity
/// the loop, the status and the self-metrics know it by. Its behaviour is an [`Output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Destination {
    /// Wrapped metrics to `{DATADOG_URL}/v1/series`.
    Metrics,
    /// Logs to the Datadog logs intake.
    Logs,
    /// Wrapped metrics to InfluxDB (`INFLUXDB_URL`), line protocol.
    Influxdb,
    /// Wrapped metrics to OpenTSDB or Apptuit (`OPENTSDB_URL`), `/api/put`.
    Opentsdb,
    /// DogStatsD events to `{DATADOG_URL}/v1/events`, one per request.
    Events,
    /// DogStatsD service checks to `{DATADOG_URL}/v1/check_run`.
    ServiceChecks,
}

impl Destination {
    /// Every destination, in the order the agent serves them.
    pub const ALL: [Destination; 6] = [
        Destination::Metrics,
        Destination::Logs,
        Destination::Influxdb,
        Destination::Opentsdb,
        Destination::Events,
        Destination::ServiceChecks,
    ];

    /// `metrics`, `logs`, `influxdb`, `opentsdb`, `events`, `service_checks`: the `destination` tag of the self-metrics and
    /// the status fields (`metrics` and `logs` are Datadog's, named as before there were others).
    pub fn name(self) -> &'static str {
        match self {
            Destination::Metrics => "metrics",
            Destination::Logs => "logs",
            Destination::Influxdb => "influxdb",
            Destination::Opentsdb => "opentsdb",
            Destination::Events => "events",
            Destination::ServiceChecks => "service_checks",
        }
    }

    /// The queue it sends from (its outbox).
    pub fn queue(self) -> Queue {
        match self {
            Destination::Metrics => Queue::WrappedMetrics,
            Destination::Logs => Queue::Logs,
            Destination::Influxdb => Queue::InfluxMetrics,
            Destination::Opentsdb => Queue::OpentsdbMetrics,
            Destination::Events => Queue::Events,
            Destination::ServiceChecks => Queue::ServiceChecks,
        }
    }

    /// The variable an operator fixes when the endpoint refuses everything.
    pub fn url_variable(self) -> &'static str {
        match self {
            Destination::Metrics | Destination::Events | Destination::ServiceChecks => "DATADOG_URL",
            Destination::Logs => "DATADOG_LOGS_URL",
            Destination::Influxdb => "INFLUXDB_URL (and INFLUXDB_DATABASE, or INFLUXDB_ORG/INFLUXDB_BUCKET)",
            Destination::Opentsdb => "OPENTSDB_URL",
        }
    }

    /// The variables an operator fixes when the credentials are refused (401, 403).
    pub fn auth_variable(self) -> &'static str {
        match self {
            Destination::Metrics | Destination::Logs | Destination::Events | Destination::ServiceChecks => {
                "API_KEY"
            }
            Destination::Influxdb => "INFLUXDB_USERNAME/INFLUXDB_PASSWORD or INFLUXDB_TOKEN",
            Destination::Opentsdb => "OPENTSDB_TOKEN",
        }
    }
}

/// One destination's counters since the agent started (for `chouette status` and self-metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationStats {
    /// HTTP requests made.
    pub requests: u64,
    /// Calls that failed and backed off (server errors, network errors, refused endpoint).
    pub failures: u64,
    /// Records kept for a later attempt after a failure (or while backing off).
    pub retried: u64,
    /// Records delivered.
    pub delivered: u64,
    /// Records dead-lettered.
    pub dead: u64,
    /// Points (log entries) in every payload posted, answered or not.
    pub points_sent: u64,
    /// Points (log entries) the backend accepted.
    pub points_delivered: u64,
    /// Points (log entries) in payloads that failed and were kept for a retry.
    pub points_failed: u64,
    /// The last answer: the status code (`"202"`) or a network error label (`"timeout"`).
    pub last_status: Option<String>,
    /// Failed calls since the last success (0: healthy).
    pub consecutive_failures: u32,
}

/// What one `send` call did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// One per input record, in input order.
    pub dispositions: Vec<Disposition>,
    /// HTTP requests made (payloads refused locally are not requests).
    pub requests: u32,
    /// Points (metrics) or entries (logs) in delivered records.
    pub delivered_points: u64,
    /// Compressed bytes of the requests the backend accepted.
    pub delivered_bytes: u64,
    /// The last answer: the status code (`"202"`) or a network error label (`"timeout"`).
    pub last_status: Option<String>,
    /// Records dead-lettered.
    pub dead: u64,
    /// Records kept for a later attempt after a failure (or while backing off).
    pub retried: u64,
    /// Records kept unsent because the call's deadline passed (not a failure).
    pub deferred: u64,
    /// How the call ended.
    pub outcome: Outcome,
    /// Whether the call was refused without a request because the destination is backing off.
    pub waiting: bool,
    /// Points (or entries) in every payload posted, answered or not (`sent` self-metric).
    pub sent_points: u64,
    /// Points (or entries) in payloads that failed (5xx, network, refused credentials...): kept
    /// for a retry (`points.failed` self-metric).
    pub failed_points: u64,
    /// How long each request took, in order (the `request.time` self-metric).
    pub latencies: Vec<std::time::Duration>,
}

impl Report {
    fn all_kept(n: usize) -> Self {
        Report {
            dispositions: vec![Disposition::Kept; n],
            retried: n as u64,
            outcome: Outcome::Stopped,
            waiting: true,
            ..Report::default()
        }
    }
}

/// What kind of trouble a destination is in: decides the log level and the hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// The URL or the configuration is wrong (404, 3xx, a refusal of everything).
    Endpoint,
    /// The API key is refused (401, 403).
    Auth,
    /// The backend or the network is down or busy (5xx, 408, 429, timeouts).
    Unavailable,
}

/// Why a call failed, for the log line written once the backoff delay is known.
struct Failure {
    trouble: Trouble,
    status: String,
    detail: String,
    /// The answer's `Retry-After` (429, 503): the next attempt waits at least this long.
    retry_after: Option<std::time::Duration>,
}

/// One destination's state: backoff, counters, and the trouble it is in (if any).
#[derive(Debug, Clone)]
struct Outbox {
    backoff: Backoff,
    stats: DestinationStats,
    trouble: Option<Trouble>,
}

/// State one call's `send` closure works with.
struct Attempt<'a, T> {
    transport: &'a mut T,
    output: &'a dyn Output,
    headers: Vec<(&'static str, String)>,
    level: u8,
    deadline: Option<Instant>,
    report: &'a mut Report,
    failure: Option<Failure>,
    last_refusal: String,
    /// Asked once, before the first request ([`Dispatcher::send_gated`]).
    gate: Option<&'a mut dyn FnMut() -> bool>,
}

impl<T: Transport> Attempt<'_, T> {
    /// Compresses and posts `json` (the payload of `group`, holding `units` points or entries)
    /// and interprets the answer.
    fn post(&mut self, json: &[u8], group: &[usize], units_of: &[u64], entries: &Entries<'_>) -> Verdict {
        let units: u64 = group.iter().map(|&i| units_of[i]).sum();
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Verdict::Deferred;
        }
        let encoding = self.output.encoding();
        let body = match encoding {
            Encoding::Deflate => zlib::compress(json, self.level),
            Encoding::Gzip => gzip::compress(json, self.level),
            Encoding::Identity => json.to_vec(),
        };
        if body.len() > self.output.limits().max_compressed {
            return Verdict::TooLarge { reason: "too_large".to_owned() };
        }
        if let Some(gate) = self.gate.take() {
            if !gate() {
                return Verdict::Deferred; // nothing sent, nothing counted: all kept
            }
        }
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(self.headers.len() + 1);
        if encoding != Encoding::Identity {
            headers.push(("Content-Encoding", encoding.header()));
        }
        headers.extend(self.headers.iter().map(|(k, v)| (*k, v.as_str())));
        self.report.requests += 1;
        let url = self.output.url();
        let records = group.len();
        let started = Instant::now();
        let answer = self.transport.post_payload(url, &headers, &body, json);
        self.report.latencies.push(started.elapsed());
        self.report.sent_points += units;
        let verdict = self.read(answer, url, records, units, &body, group, units_of, entries);
        if verdict == Verdict::Stop {
            self.report.failed_points += units;
        }
        verdict
    }

    /// What one answer (or transport error) means for the records of `group`.
    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        answer: Result<HttpResponse, TransportError>,
        url: &str,
        records: usize,
        units: u64,
        body: &[u8],
        group: &[usize],
        units_of: &[u64],
        entries: &Entries<'_>,
    ) -> Verdict {
        match answer {
            Ok(response) => {
                let status = response.status;
                self.report.last_status = Some(status.to_string());
                match status {
                    200..=299 => {
                        self.report.delivered_bytes += body.len() as u64;
                        self.report.delivered_points += units;
                        log::debug!(
                            "status={status} url={} records={records} units={units} bytes={} : delivered",
                            redact_url(url),
                            body.len()
                        );
                        Verdict::Delivered
                    }
                    413 => {
                        log::info!(
                            "status=413 url={} records={records} bytes={} : payload too large, splitting",
                            redact_url(url),
                            body.len()
                        );
                        Verdict::TooLarge { reason: "http_413".to_owned() }
                    }
                    401 | 403 => self.fail(Trouble::Auth, &response),
                    300..=399 | 404 | 405 | 410 | 411 | 415 | 421 | 426 => {
                        self.fail(Trouble::Endpoint, &response)
                    }
                    408 | 429 => self.fail(Trouble::Unavailable, &response),
                    400..=499 => {
                        if let Some(verdict) =
                            self.output.read_refusal(status, &response.body, entries, group)
                        {
                            if let Verdict::Partial { dead, .. } = &verdict {
                                self.report.delivered_bytes += body.len() as u64;
                                let refused: u64 = dead.iter().map(|&i| units_of[i]).sum();
                                self.report.delivered_points += units.saturating_sub(refused);
                                log::debug!(
                                    "status={status} url={} records={records} refused={refused} body={:?} : partial write, refused records identified",
                                    redact_url(url),
                                    short(&response.body)
                                );
                            }
                            return verdict;
                        }
                        log::debug!(
                            "status={status} url={} records={records} body={:?} : payload refused, isolating the offending records",
                            redact_url(url),
                            short(&response.body)
                        );
                        self.last_refusal = short(&response.body);
                        Verdict::Rejected { reason: format!("http_{status}") }
                    }
                    _ => self.fail(Trouble::Unavailable, &response),
                }
            }
            Err(err) => {
                self.report.last_status = Some(err.label().to_owned());
                self.failure = Some(Failure {
                    trouble: Trouble::Unavailable,
                    status: err.label().to_owned(),
                    detail: err.to_string(),
                    retry_after: None,
                });
                Verdict::Stop
            }
        }
    }

    fn fail(&mut self, trouble: Trouble, response: &HttpResponse) -> Verdict {
        self.failure = Some(Failure {
            trouble,
            status: response.status.to_string(),
            detail: short(&response.body),
            retry_after: response.retry_after,
        });
        Verdict::Stop
    }
}

fn short(body: &str) -> String {
    body.chars().take(200).collect()
}

/// The `reason` of a record that cannot be parsed: `not_json`, `missing_field:points`...
pub fn parse_reason(err: &ParseError) -> String {
    match err {
        ParseError::MissingField(f) | ParseError::WrongFieldType(f) | ParseError::NonFinite(f) => {
            format!("{}:{}", err.reason(), f.as_str())
        }
        _ => err.reason().to_owned(),
    }
}

/// The outputs `config` turns on, Datadog's first: Datadog (series, logs, DogStatsD events and
/// service checks) when `API_KEY` or `DATADOG_URL` is set (or in a dry run with nothing else
/// configured: [`events_enabled`]), InfluxDB when `INFLUXDB_URL` is, OpenTSDB when
/// `OPENTSDB_URL` is.
/// `dispatch` is [`DispatchConfig::from_config`]`(config)`, built once by the caller.
pub fn outputs(config: &Config, dispatch: &DispatchConfig) -> Vec<Box<dyn Output>> {
    let mut out: Vec<Box<dyn Output>> = Vec::new();
    if events_enabled(config) {
        out.push(Box::new(DatadogSeries::new(dispatch)));
        out.push(Box::new(DatadogLogs::new(dispatch)));
        out.push(Box::new(DatadogEvents::new(dispatch)));
        out.push(Box::new(DatadogServiceChecks::new(dispatch)));
    }
    if let Some(influx) = &config.influxdb {
        out.push(Box::new(InfluxOutput::new(influx, dispatch)));
    }
    if let Some(tsdb) = &config.opentsdb {
        out.push(Box::new(OpentsdbOutput::new(tsdb, dispatch)));
    }
    out
}

/// One output and its state.
struct Lane {
    output: Box<dyn Output>,
    outbox: Outbox,
}

/// Sends outbox records to their backends through a [`Transport`], with splitting, bisection
/// and a backoff per output (see the module docs).
pub struct Dispatcher<T> {
    transport: T,
    config: DispatchConfig,
    lanes: Vec<Lane>,
    /// The entries of the call in progress, back to back.
    entries: Vec<u8>,
    /// The payload being posted.
    payload: Vec<u8>,
}

impl<T: Transport> Dispatcher<T> {
    /// A dispatcher posting to Datadog (series and logs) through `transport`.
    pub fn new(transport: T, config: DispatchConfig) -> Self {
        let outputs: Vec<Box<dyn Output>> =
            vec![Box::new(DatadogSeries::new(&config)), Box::new(DatadogLogs::new(&config))];
        Self::with_outputs(transport, config, outputs)
    }

    /// A dispatcher posting to `outputs` (see [`outputs`]) through `transport`.
    pub fn with_outputs(transport: T, config: DispatchConfig, outputs: Vec<Box<dyn Output>>) -> Self {
        let lanes = outputs
            .into_iter()
            .map(|output| Lane {
                output,
                outbox: Outbox {
                    backoff: Backoff::default(),
                    stats: DestinationStats::default(),
                    trouble: None,
                },
            })
            .collect();
        Dispatcher { transport, config, lanes, entries: Vec::new(), payload: Vec::new() }
    }

    /// Frees the buffers kept from one request to the next (they grow to a batch's size: a few
    /// MB for 10,000 points). The agent calls it when an outbox is empty, so an agent idle
    /// after a backlog does not keep them (about 3 MB of its RSS, measured).
    pub fn release_buffers(&mut self) {
        self.entries = Vec::new();
        self.payload = Vec::new();
    }

    /// Replaces every destination's backoff (tests: a fixed seed, a short base).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        for lane in &mut self.lanes {
            lane.outbox.backoff = backoff.clone();
        }
        self
    }

    /// The destinations this dispatcher sends to, in order.
    pub fn destinations(&self) -> Vec<Destination> {
        self.lanes.iter().map(|lane| lane.output.destination()).collect()
    }

    fn lane(&self, destination: Destination) -> Option<&Lane> {
        self.lanes.iter().find(|lane| lane.output.destination() == destination)
    }

    /// When the next request to `destination` may go; `None`: now. While it lies in the future,
    /// `send` keeps every record without a request.
    pub fn ready_at(&self, destination: Destination) -> Option<Instant> {
        self.lane(destination)?.outbox.backoff.poll_timeout().filter(|&at| at > Instant::now())
    }

    /// `destination`'s backoff state.
    ///
    /// # Panics
    /// If the dispatcher does not send to `destination`.
    pub fn backoff(&self, destination: Destination) -> &Backoff {
        &self.lane(destination).expect("a destination of this dispatcher").outbox.backoff
    }

    /// `destination`'s counters since the dispatcher was made (zero for one it does not send to).
    pub fn stats(&self, destination: Destination) -> DestinationStats {
        self.lane(destination).map(|lane| lane.outbox.stats.clone()).unwrap_or_default()
    }

    /// The URL `destination` posts to (empty for one it does not send to).
    pub fn url(&self, destination: Destination) -> &str {
        self.lane(destination).map_or("", |lane| lane.output.url())
    }

    /// The configuration.
    pub fn config(&self) -> &DispatchConfig {
        &self.config
    }

    /// The transport (tests inspect what it saw).
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably (tests change its script).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Sends wrapped-metric records to `{DATADOG_URL}/v1/series`.
    pub fn send_metrics(&mut self, records: &[Record]) -> Report {
        self.send_at(Destination::Metrics, Instant::now(), None, records)
    }

    /// [`Dispatcher::send_metrics`] at an explicit `now` (the backoff clock).
    pub fn send_metrics_at(&mut self, now: Instant, records: &[Record]) -> Report {
        self.send_at(Destination::Metrics, now, None, records)
    }

    /// Sends log records to the logs intake (v1 `/v1/input` or v2 `/api/v2/logs`).
    pub fn send_logs(&mut self, records: &[Record]) -> Report {
        self.send_at(Destination::Logs, Instant::now(), None, records)
    }

    /// [`Dispatcher::send_logs`] at an explicit `now` (the backoff clock).
    pub fn send_logs_at(&mut self, now: Instant, records: &[Record]) -> Report {
        self.send_at(Destination::Logs, now, None, records)
    }

    /// Sends `records` to `destination`, making no request once `deadline` has passed (what is
    /// unsettled then is kept, [`Outcome::OutOfTime`], and counted in `deferred`).
    pub fn send_until(&mut self, destination: Destination, records: &[Record], deadline: Instant) -> Report {
        self.send_at(destination, Instant::now(), Some(deadline), records)
    }

    /// [`Dispatcher::send_until`], asking `gate` before the call's first request, once the first
    /// payload is encoded and compressed: the caller may still be settling the batch before
    /// (deleting what it delivered), and a batch goes out only after that. If `gate` answers
    /// false, no request is made and nothing is counted: everything is kept
    /// ([`Outcome::OutOfTime`]), for the caller to drop the report.
    pub fn send_gated(
        &mut self,
        destination: Destination,
        records: &[Record],
        deadline: Instant,
        gate: &mut dyn FnMut() -> bool,
    ) -> Report {
        self.send_with(destination, Instant::now(), Some(deadline), records, Some(gate))
    }

    /// [`Dispatcher::send_until`] at an explicit `now` (the backoff clock), deadline optional.
    /// A destination this dispatcher does not send to keeps everything.
    pub fn send_at(
        &mut self,
        destination: Destination,
        now: Instant,
        deadline: Option<Instant>,
        records: &[Record],
    ) -> Report {
        self.send_with(destination, now, deadline, records, None)
    }

    /// [`Dispatcher::send_at`], with the gate of [`Dispatcher::send_gated`] if there is one.
    fn send_with(
        &mut self,
        destination: Destination,
        now: Instant,
        deadline: Option<Instant>,
        records: &[Record],
        gate: Option<&mut dyn FnMut() -> bool>,
    ) -> Report {
        let Some(index) = self.lanes.iter().position(|lane| lane.output.destination() == destination) else {
            return Report::all_kept(records.len());
        };
        if self.lanes[index].outbox.backoff.is_waiting(now) {
            let report = Report::all_kept(records.len());
            self.lanes[index].outbox.stats.retried += report.retried;
            return report;
        }
        self.call(index, now, deadline, records, gate)
    }

    /// One call: encode each record once, plan payloads within the limits, settle them.
    fn call(
        &mut self,
        index: usize,
        now: Instant,
        deadline: Option<Instant>,
        records: &[Record],
        gate: Option<&mut dyn FnMut() -> bool>,
    ) -> Report {
        let Dispatcher { transport, config, lanes, entries, payload } = self;
        let Lane { output, outbox } = &mut lanes[index];
        let mut out: Vec<Option<Disposition>> = vec![None; records.len()];
        let mut spans = vec![0..0; records.len()];
        let mut units = vec![0u64; records.len()];
        let mut valid = Vec::with_capacity(records.len());
        let limits = output.limits();
        let framing = output.framing();
        let room = limits.max_bytes.saturating_sub(framing.open.len() + framing.close.len());
        entries.clear();
        for (i, record) in records.iter().enumerate() {
            let Some(value) = &record.value else {
                out[i] = Some(dead("orphan"));
                continue;
            };
            let start = entries.len();
            match output.encode(value, entries) {
                Ok(n) if entries.len() - start <= room => {
                    spans[i] = start..entries.len();
                    units[i] = n;
                    valid.push(i);
                }
                Ok(_) => {
                    entries.truncate(start);
                    out[i] = Some(dead("too_large"));
                }
                Err(reason) => {
                    entries.truncate(start);
                    out[i] = Some(dead(&reason));
                }
            }
        }

        // Plan: cut the encoded records into payloads within the limits.
        let mut chunks: Vec<Vec<usize>> = Vec::new();
        let mut chunk = Vec::new();
        let (mut bytes, mut chunk_units) = (0usize, 0u64);
        for &i in &valid {
            let len = spans[i].len() + framing.separator.len();
            if !chunk.is_empty()
                && (chunk_units + units[i] > limits.max_units.max(1)
                    || bytes + len > room + framing.separator.len())
            {
                chunks.push(std::mem::take(&mut chunk));
                (bytes, chunk_units) = (0, 0);
            }
            chunk.push(i);
            bytes += len;
            chunk_units += units[i];
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }

        let output: &dyn Output = &**output;
        let destination = output.destination();
        let mut report = Report::default();
        let entries = Entries { bytes: entries, spans: &spans };
        let mut attempt = Attempt {
            transport,
            output,
            headers: output.headers(),
            level: config.compression_level,
            deadline,
            report: &mut report,
            failure: None,
            last_refusal: String::new(),
            gate: match gate {
                Some(gate) => Some(&mut *gate),
                None => None,
            },
        };
        let sorts = output.sorts_entries();
        let mut sorted = Vec::new();
        let mut send = |group: &[usize]| {
            // Metrics in the order of their encoded bytes: by name, then tags. Neighbours then
            // share most of their bytes, which deflate turns into short back-references (about
            // half the compressed size of the queue's order, which is by random id). Which
            // records a payload holds does not change; logs and events keep their order.
            let group = if sorts {
                sort_by_bytes(group, &entries, &mut sorted);
                &sorted[..]
            } else {
                group
            };
            payload.clear();
            payload.extend_from_slice(framing.open);
            for (k, &i) in group.iter().enumerate() {
                if k > 0 {
                    payload.extend_from_slice(framing.separator);
                }
                payload.extend_from_slice(entries.get(i));
            }
            payload.extend_from_slice(framing.close);
            attempt.post(payload, group, &units, &entries)
        };
        let outcome = settle_chunks(&chunks, &mut send, &mut out);
        let (failure, refusal) = (attempt.failure, attempt.last_refusal);
        let call = Call { destination, url: output.url(), outcome, failure, refusal };
        finish(now, outbox, call, out, report)
    }
}

/// Writes `group` into `sorted` (cleared first) in the order of its entries' bytes, as
/// `sort_unstable_by` comparing them whole would, at a fraction of the cost (a
/// most-significant-digit radix sort): the entries of a payload share long stretches
/// (`{"metric":"`, a name's first words; a name's series differ only in their tags, at the end),
/// which every comparison would read again. See [`sort_from`].
fn sort_by_bytes(group: &[usize], entries: &Entries<'_>, sorted: &mut Vec<usize>) {
    let mut keyed: Vec<(u128, usize)> = group.iter().map(|&i| (0, i)).collect();
    sort_from(&mut keyed, entries, 0);
    sorted.clear();
    sorted.extend(keyed.into_iter().map(|(_, i)| i));
}

/// Sorts `keyed` (records whose entries agree on their first `from` bytes): skips the bytes
/// they all share after `from`, keys each record with the next 16 bytes of its entry
/// (zero-padded, big-endian), sorts the keys as integers, and each run of equal keys again
/// after them. A strictly smaller key is a smaller entry: a padded zero stands only past an
/// entry's end, where the shorter entry is the smaller. So records whose entries all end within
/// the key, keys equal, go by length. Each level starts past the bytes its run shares, so runs
/// split at once unless their entries go on with zero bytes, which JSON entries never hold (a
/// NUL is escaped): the recursion is a level or two deep, and at most one per 16 bytes.
fn sort_from(keyed: &mut [(u128, usize)], entries: &Entries<'_>, from: usize) {
    let Some(&(_, first)) = keyed.first() else { return };
    let first = entries.get(first).get(from..).unwrap_or_default();
    let shared = keyed.iter().fold(first.len(), |shared, &(_, i)| {
        common_prefix(&first[..shared], entries.get(i).get(from..).unwrap_or_default())
    });
    let from = from + shared;
    for (key, i) in keyed.iter_mut() {
        let rest = entries.get(*i).get(from..).unwrap_or_default();
        let mut bytes = [0u8; 16];
        let n = rest.len().min(16);
        bytes[..n].copy_from_slice(&rest[..n]);
        *key = u128::from_be_bytes(bytes);
    }
    sort_keys(keyed);
    let next = from + 16;
    for run in keyed.chunk_by_mut(|a, b| a.0 == b.0) {
        if run.len() < 2 {
            continue;
        }
        if run.iter().any(|&(_, i)| entries.get(i).len() > next) {
            sort_from(run, entries, next);
        } else {
            for (key, i) in run.iter_mut() {
                *key = entries.get(*i).len() as u128;
            }
            sort_keys(run);
        }
    }
}

/// Sorts `keyed` by key: one copy of the sort in the binary for both of [`sort_from`]'s sorts.
fn sort_keys(keyed: &mut [(u128, usize)]) {
    keyed.sort_unstable_by_key(|&(key, _)| key);
}

/// How many bytes `a` and `b` share at their start, compared 8 at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut at = 0;
    while let (Some(x), Some(y)) = (a[at..n].first_chunk::<8>(), b[at..n].first_chunk::<8>()) {
        let differ = u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y);
        if differ != 0 {
            return at + differ.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    at + a[at..n].iter().zip(&b[at..n]).take_while(|(x, y)| x == y).count()
}

fn dead(reason: &str) -> Disposition {
    Disposition::Dead { reason: reason.to_owned() }
}

/// Settles the chunks of one call in order, sharing the evidence that the endpoint works; the
/// chunks after a call-ending outcome are kept.
///
/// A chunk of one record (an output that sends one record per payload: DogStatsD events)
/// refused before anything was accepted is not yet judged: the next chunks are tried, up to
/// `3·ceil(log2(chunks)) + 1` such refusals (the bisection's own bound). If one of them is
/// accepted, those lone records are poison: dead, without another request. Otherwise the
/// endpoint refuses everything ([`Outcome::Refused`], all kept). So a refused event at the head
/// of its queue is dead-lettered instead of blocking the queue behind it. A larger chunk refused
/// whole already looked for evidence inside itself (see `settle`): the call ends there.
fn settle_chunks<F>(chunks: &[Vec<usize>], send: &mut F, out: &mut [Option<Disposition>]) -> Outcome
where
    F: FnMut(&[usize]) -> Verdict,
{
    let most_refused = 3 * chunks.len().next_power_of_two().trailing_zeros() as usize + 1;
    let mut settler = Settler::new();
    let mut refused: Vec<usize> = Vec::new();
    let mut refusal = None;
    for chunk in chunks {
        match settler.settle(chunk, send, out) {
            Outcome::Settled => {}
            Outcome::Refused { reason }
                if chunk.len() == 1 && !settler.accepted() && refused.len() + 1 < most_refused =>
            {
                refused.push(chunk[0]); // marked kept for now
                refusal = Some(reason);
                settler = Settler::new(); // no evidence is lost: there was none
            }
            outcome => return outcome, // the rest stays unsettled: kept
        }
    }
    match refusal {
        Some(reason) if !settler.accepted() => Outcome::Refused { reason },
        Some(reason) => {
            for i in refused {
                out[i] = Some(Disposition::Dead { reason: reason.clone() });
            }
            Outcome::Settled
        }
        None => Outcome::Settled,
    }
}

/// How one call went, for [`finish`].
struct Call<'a> {
    destination: Destination,
    url: &'a str,
    outcome: Outcome,
    failure: Option<Failure>,
    refusal: String,
}

/// Completes the report, updates the destination's backoff and counters, and writes the call's
/// log lines: ERROR/WARN when a trouble starts or changes kind, DEBUG while it lasts, INFO when
/// the destination accepts again.
fn finish(
    now: Instant,
    outbox: &mut Outbox,
    call: Call<'_>,
    out: Vec<Option<Disposition>>,
    mut report: Report,
) -> Report {
    let Call { destination, url, outcome, failure, refusal } = call;
    let url = redact_url(url);
    let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
    report.dispositions = out.into_iter().map(|d| d.unwrap_or(Disposition::Kept)).collect();
    let mut kept = 0;
    let mut delivered = 0;
    for d in &report.dispositions {
        match d {
            Disposition::Dead { reason } => {
                report.dead += 1;
                *reasons.entry(reason.as_str()).or_default() += 1;
            }
            Disposition::Kept => kept += 1,
            Disposition::Delivered => delivered += 1,
        }
    }
    if report.dead > 0 {
        log::warn!(
            "url={url} dead={} reasons={reasons:?} : records moved to the dead-letter queue",
            report.dead
        );
    }
    let failure = match &outcome {
        Outcome::Refused { reason } => Some(Failure {
            trouble: Trouble::Endpoint,
            status: reason.trim_start_matches("http_").to_owned(),
            detail: refusal,
            retry_after: None,
        }),
        Outcome::Stopped => failure,
        Outcome::Settled | Outcome::OutOfTime => None,
    };
    if failure.is_some() {
        report.retried = kept;
    } else {
        report.deferred = kept;
    }
    report.outcome = outcome;
    let stats = &mut outbox.stats;
    stats.requests += u64::from(report.requests);
    stats.retried += report.retried;
    stats.delivered += delivered;
    stats.dead += report.dead;
    stats.points_sent += report.sent_points;
    stats.points_delivered += report.delivered_points;
    stats.points_failed += report.failed_points;
    if report.last_status.is_some() {
        stats.last_status = report.last_status.clone();
    }

    if delivered > 0 || (report.outcome == Outcome::Settled && report.requests > 0) {
        if let Some(trouble) = outbox.trouble.take() {
            log::info!(
                "status={} url={url} failures={} was={trouble:?} : the {} endpoint accepts again",
                report.last_status.as_deref().unwrap_or("-"),
                outbox.backoff.failures(),
                destination.name()
            );
        }
        outbox.backoff.handle_success();
    }
    match failure {
        Some(Failure { trouble, status, detail, retry_after }) => {
            outbox.stats.failures += 1;
            let mut delay = outbox.backoff.handle_failure(now);
            if let Some(wait) = retry_after.filter(|&wait| wait > delay) {
                outbox.backoff.defer_until(now + wait);
                delay = wait;
            }
            let delay = delay.as_secs_f64();
            let first = outbox.trouble != Some(trouble);
            outbox.trouble = Some(trouble);
            let level = match (first, trouble) {
                (false, _) => log::Level::Debug,
                (true, Trouble::Unavailable) => log::Level::Warn,
                (true, _) => log::Level::Error,
            };
            match trouble {
                Trouble::Auth => log::log!(
                    level,
                    "status={status} url={url} kept={kept} body={detail:?} : the {} endpoint refused the credentials: check {}; data kept, retrying in {delay:.1} s",
                    destination.name(),
                    destination.auth_variable()
                ),
                Trouble::Endpoint => log::log!(
                    level,
                    "status={status} url={url} kept={kept} requests={} body={detail:?} : nothing accepted, the endpoint refuses every request: check {}; data kept, retrying in {delay:.1} s",
                    report.requests,
                    destination.url_variable()
                ),
                Trouble::Unavailable => log::log!(
                    level,
                    "status={status} url={url} kept={kept} detail={detail:?} : backend unavailable, data kept; retrying in {delay:.1} s"
                ),
            }
        }
        None if report.outcome == Outcome::OutOfTime
            && delivered == 0
            && report.dead == 0
            && report.requests > 0 =>
        {
            // Out of time before anything settled (a slow endpoint): wait a little rather than
            // start the same work over at once.
            let delay = outbox.backoff.handle_failure(now).as_secs_f64();
            log::debug!(
                "url={url} kept={kept} requests={} : time budget spent before anything settled; next try in {delay:.1} s",
                report.requests
            );
        }
        None => {}
    }
    outbox.stats.consecutive_failures = outbox.backoff.failures();
    if report.requests > 0 {
        log::debug!(
            "url={url} requests={} {}={} bytes={} : dispatch done",
            report.requests,
            destination.name(),
            report.delivered_points,
            report.delivered_bytes
        );
    }
    report
}

#[cfg(test)]
mod tests;
