//! HTTP dispatch to Datadog (or any Datadog-compatible backend): records in, dispositions out.
//!
//! [`Dispatcher::send_until`] takes queue records for one [`Destination`] (metrics, logs) and
//! returns one [`Disposition`] per record, in order: every record is delivered, dead-lettered or
//! kept, exactly once per call. Records are parsed (a record that cannot be parsed is dead at once),
//! encoded with the core encoders into payloads within the configured limits, zlib-compressed
//! (`Content-Encoding: deflate`) and posted with the API key in the `DD-API-KEY` header only.
//!
//! Each destination is an outbox of its own: its own [`Backoff`] (so its own "next attempt"
//! deadline), its own [`DestinationStats`] and its own alarm state. One destination's trouble
//! never delays another: logs keep flowing while the metrics endpoint is down.
//!
//! Status handling (reference `datadog-api.md` §1.1, §2, §4; fixes compat §7 items 17 and 31):
//!
//! | Answer | What happens |
//! |---|---|
//! | 2xx (200, 202) | delivered; the backoff resets (INFO once if it was failing) |
//! | 413, or a compressed payload over the limit | split in halves, each sent again, down to one record, which is then dead (`http_413`) |
//! | 400, 422 and any other 4xx not listed here | a record is poison only if the endpoint accepts others in the same call: bisect, only offenders dead (`http_400`, `http_<code>`), the rest delivered. If nothing at all is accepted (`O(log n)` requests, see `settle`), an endpoint problem: as the next row |
//! | 3xx, 404, 405, 410, 411, 415, 421, 426 | the URL or the configuration is wrong: everything kept; one ERROR naming the URL and the status ("check DATADOG_URL"); back off |
//! | 401, 403 | everything kept; one ERROR "check API_KEY"; back off |
//! | 408, 429, 5xx, 1xx, timeout, reset, refused, TLS | everything not yet settled kept; one WARN; back off |
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
mod settle;
mod transport;

pub use backoff::{Backoff, DEFAULT_BASE, DEFAULT_CAP, MIN_DELAY};
pub use settle::{settle, Disposition, Outcome, Settler, Verdict};
pub use transport::{
    inflate, DryRunTransport, HttpResponse, Transport, TransportError, TransportSetupError, UreqTransport,
    MAX_RESPONSE_BODY_BYTES,
};

use std::collections::BTreeMap;
use std::time::Instant;

use chouette_core::limits::V1_MAX_COMPRESSED_BYTES;
use chouette_core::wire::log::{encode_log_for_intake, parse_log};
use chouette_core::wire::series::{PushError, SeriesEncoder, SeriesLimits, EMPTY_PAYLOAD_BYTES};
use chouette_core::wire::wrapped::{parse_wrapped, wrapped_scratch_len, MAX_POINTS};
use chouette_core::wire::{zlib, EncodeError, ParseError};
use chouette_core::Tag;

use crate::config::{redact_url, Config, LogsApi, Secret};
use crate::store::{Queue, Record};

/// Default largest series payload before compression: 5 MB. Far under v1's 62 MiB, so a payload
/// that must be retried stays small on a slow uplink; 10,000 points are about 1 MB.
pub const DEFAULT_SERIES_MAX_UNCOMPRESSED_BYTES: usize = 5_000_000;
/// Largest series payload after compression: v1's 3.2 MB.
pub const DEFAULT_SERIES_MAX_COMPRESSED_BYTES: usize = V1_MAX_COMPRESSED_BYTES;
/// Logs intake: largest payload before compression, 5 MB.
pub const DEFAULT_LOGS_MAX_BYTES: usize = 5_000_000;
/// Logs intake: most entries in one payload, 1000.
pub const DEFAULT_LOGS_MAX_ENTRIES: usize = 1000;
/// Logs intake: largest single log, 1 MB (the intake truncates bigger ones; we dead-letter them
/// whole instead, so nothing is silently cut).
pub const DEFAULT_LOG_MAX_ENTRY_BYTES: usize = 1_000_000;

/// Where and how to send: built from [`Config`] with [`DispatchConfig::from_config`].
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// `{DATADOG_URL}/v1/series`.
    pub series_url: String,
    /// `{DATADOG_LOGS_URL}/v1/input`, or `/api/v2/logs` with `CHOUETTE_LOGS_API=v2`.
    pub logs_url: String,
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
    /// zlib level (6, what the original sent).
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
            api_key: config.api_key.clone(),
            global_tags: config.global_tags.clone(),
            host: config.host.clone().filter(|h| !h.is_empty()),
            max_points: config.metrics_bulk_size,
            ..Self::for_base_url("", None)
        }
    }

    /// A configuration for `base` (series at `{base}/v1/series`, logs at `{base}/v1/input`),
    /// with default limits, no tags and no host: for tests and tools.
    pub fn for_base_url(base: &str, api_key: Option<&str>) -> Self {
        DispatchConfig {
            series_url: join_url(base, "v1/series"),
            logs_url: join_url(base, "v1/input"),
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

/// One output of the agent, with its own queue, URL, backoff and counters. The next outputs
/// (InfluxDB, OpenTSDB) are new variants: a name, a queue, an encoder and a status policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Destination {
    /// Wrapped metrics to `{DATADOG_URL}/v1/series`.
    Metrics,
    /// Logs to the logs intake.
    Logs,
}

impl Destination {
    /// Every destination, in the order the agent serves them.
    pub const ALL: [Destination; 2] = [Destination::Metrics, Destination::Logs];

    /// `metrics`, `logs`: the `destination` tag of the self-metrics and the status fields.
    pub fn name(self) -> &'static str {
        match self {
            Destination::Metrics => "metrics",
            Destination::Logs => "logs",
        }
    }

    /// The queue it sends from.
    pub fn queue(self) -> Queue {
        match self {
            Destination::Metrics => Queue::WrappedMetrics,
            Destination::Logs => Queue::Logs,
        }
    }

    /// The variable an operator fixes when the endpoint refuses everything.
    pub fn url_variable(self) -> &'static str {
        match self {
            Destination::Metrics => "DATADOG_URL",
            Destination::Logs => "DATADOG_LOGS_URL",
        }
    }

    fn index(self) -> usize {
        match self {
            Destination::Metrics => 0,
            Destination::Logs => 1,
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
    url: &'a str,
    api_key: Option<&'a Secret>,
    level: u8,
    max_compressed: usize,
    deadline: Option<Instant>,
    report: &'a mut Report,
    failure: Option<Failure>,
    last_refusal: String,
}

impl<T: Transport> Attempt<'_, T> {
    /// Compresses and posts `json` (holding `units` points or entries) and interprets the answer.
    fn post(&mut self, json: &[u8], records: usize, units: u64) -> Verdict {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Verdict::Deferred;
        }
        let body = zlib::compress(json, self.level);
        if body.len() > self.max_compressed {
            return Verdict::TooLarge { reason: "too_large".to_owned() };
        }
        let mut headers = vec![("Content-Type", "application/json"), ("Content-Encoding", "deflate")];
        if let Some(key) = self.api_key {
            headers.push(("DD-API-KEY", key.expose()));
        }
        self.report.requests += 1;
        let url = self.url;
        match self.transport.post(url, &headers, &body) {
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
                    401 | 403 => self.fail(Trouble::Auth, status.to_string(), short(&response.body)),
                    300..=399 | 404 | 405 | 410 | 411 | 415 | 421 | 426 => {
                        self.fail(Trouble::Endpoint, status.to_string(), short(&response.body))
                    }
                    408 | 429 => self.fail(Trouble::Unavailable, status.to_string(), short(&response.body)),
                    400..=499 => {
                        log::debug!(
                            "status={status} url={} records={records} body={:?} : payload refused, isolating the offending records",
                            redact_url(url),
                            short(&response.body)
                        );
                        self.last_refusal = short(&response.body);
                        Verdict::Rejected { reason: format!("http_{status}") }
                    }
                    _ => self.fail(Trouble::Unavailable, status.to_string(), short(&response.body)),
                }
            }
            Err(err) => {
                self.report.last_status = Some(err.label().to_owned());
                self.fail(Trouble::Unavailable, err.label().to_owned(), err.to_string())
            }
        }
    }

    fn fail(&mut self, trouble: Trouble, status: String, detail: String) -> Verdict {
        self.failure = Some(Failure { trouble, status, detail });
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

/// Parses record `value` as a wrapped metric and pushes its points; `Ok(points)`.
fn push_record(
    enc: &mut SeriesEncoder<'_>,
    value: &[u8],
    scratch: &mut Vec<u8>,
    tags: &[Tag<'_>],
    host: Option<&str>,
) -> Result<u64, PushError> {
    scratch.resize(wrapped_scratch_len(value.len()), 0);
    let Ok(rec) = parse_wrapped(value, scratch) else {
        return Err(PushError::NonFinite);
    };
    // A host in the record is kept unless HOST overrides it (as the original did).
    let host = host.or(rec.host());
    for i in 0..rec.points().len() {
        if let Some(point) = rec.wrapped(i) {
            enc.push(&point, tags, host)?;
        }
    }
    Ok(rec.points().len() as u64)
}

/// Sends queue records to the backend through a [`Transport`], with splitting, bisection and
/// a backoff per destination (see the module docs).
pub struct Dispatcher<T> {
    transport: T,
    config: DispatchConfig,
    outboxes: [Outbox; 2],
    series_buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl<T: Transport> Dispatcher<T> {
    /// A dispatcher posting through `transport`.
    pub fn new(transport: T, config: DispatchConfig) -> Self {
        let outbox = |backoff| Outbox { backoff, stats: DestinationStats::default(), trouble: None };
        Dispatcher {
            transport,
            config,
            outboxes: [outbox(Backoff::default()), outbox(Backoff::default())],
            series_buf: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Replaces every destination's backoff (tests: a fixed seed, a short base).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        for outbox in &mut self.outboxes {
            outbox.backoff = backoff.clone();
        }
        self
    }

    /// When the next request to `destination` may go; `None`: now. While it lies in the future,
    /// `send` keeps every record without a request.
    pub fn ready_at(&self, destination: Destination) -> Option<Instant> {
        self.outboxes[destination.index()].backoff.poll_timeout().filter(|&at| at > Instant::now())
    }

    /// `destination`'s backoff state.
    pub fn backoff(&self, destination: Destination) -> &Backoff {
        &self.outboxes[destination.index()].backoff
    }

    /// `destination`'s counters since the dispatcher was made.
    pub fn stats(&self, destination: Destination) -> &DestinationStats {
        &self.outboxes[destination.index()].stats
    }

    /// The URL `destination` posts to.
    pub fn url(&self, destination: Destination) -> &str {
        match destination {
            Destination::Metrics => &self.config.series_url,
            Destination::Logs => &self.config.logs_url,
        }
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

    /// [`Dispatcher::send_until`] at an explicit `now` (the backoff clock), deadline optional.
    pub fn send_at(
        &mut self,
        destination: Destination,
        now: Instant,
        deadline: Option<Instant>,
        records: &[Record],
    ) -> Report {
        if self.outboxes[destination.index()].backoff.is_waiting(now) {
            let report = Report::all_kept(records.len());
            self.outboxes[destination.index()].stats.retried += report.retried;
            return report;
        }
        match destination {
            Destination::Metrics => self.metrics_call(now, deadline, records),
            Destination::Logs => self.logs_call(now, deadline, records),
        }
    }

    fn metrics_call(&mut self, now: Instant, deadline: Option<Instant>, records: &[Record]) -> Report {
        let mut out: Vec<Option<Disposition>> = vec![None; records.len()];
        let mut valid = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let Some(value) = &r.value else {
                out[i] = Some(dead("orphan"));
                continue;
            };
            self.scratch.resize(wrapped_scratch_len(value.len()), 0);
            match parse_wrapped(value, &mut self.scratch) {
                Ok(_) => valid.push(i),
                Err(e) => out[i] = Some(dead(&parse_reason(&e))),
            }
        }
        let limits = self.config.series_limits();
        if self.series_buf.len() < limits.max_payload_bytes {
            self.series_buf = vec![0; limits.max_payload_bytes];
        }
        let Dispatcher { transport, config, outboxes, series_buf, scratch } = self;
        let tags: Vec<Tag<'_>> = config.global_tags.iter().map(|t| Tag::parse(t)).collect();
        let host = config.host.as_deref();
        let value = |i: usize| records[i].value.as_deref().unwrap_or_default();

        // Plan: cut the valid records into payloads within the limits.
        let mut chunks = Vec::new();
        let mut pos = 0;
        while pos < valid.len() {
            let mut enc = SeriesEncoder::new(series_buf, limits);
            let mut chunk = Vec::new();
            while let Some(&i) = valid.get(pos) {
                match push_record(&mut enc, value(i), scratch, &tags, host) {
                    Ok(_) => {
                        chunk.push(i);
                        pos += 1;
                    }
                    Err(PushError::Full) if !chunk.is_empty() => break,
                    Err(e) => {
                        out[i] = Some(dead(match e {
                            PushError::NonFinite => "non_finite",
                            _ => "too_large",
                        }));
                        pos += 1;
                        break;
                    }
                }
            }
            if !chunk.is_empty() {
                chunks.push(chunk);
            }
        }

        let mut report = Report::default();
        let mut attempt = Attempt {
            transport,
            url: &config.series_url,
            api_key: config.api_key.as_ref(),
            level: config.compression_level,
            max_compressed: config.series_max_compressed_bytes,
            deadline,
            report: &mut report,
            failure: None,
            last_refusal: String::new(),
        };
        let mut send = |group: &[usize]| {
            let mut enc = SeriesEncoder::new(series_buf, limits);
            let mut units = 0;
            for &i in group {
                match push_record(&mut enc, value(i), scratch, &tags, host) {
                    Ok(n) => units += n,
                    Err(_) => return Verdict::TooLarge { reason: "too_large".to_owned() },
                }
            }
            match enc.finish() {
                Ok(payload) => attempt.post(payload.bytes(), group.len(), units),
                Err(_) => Verdict::TooLarge { reason: "too_large".to_owned() },
            }
        };
        let outcome = settle_chunks(&chunks, &mut send, &mut out);
        let (failure, refusal) = (attempt.failure, attempt.last_refusal);
        let call =
            Call { destination: Destination::Metrics, url: &config.series_url, outcome, failure, refusal };
        finish(now, &mut outboxes[Destination::Metrics.index()], call, out, report)
    }

    fn logs_call(&mut self, now: Instant, deadline: Option<Instant>, records: &[Record]) -> Report {
        let config = &self.config;
        let tags: Vec<Tag<'_>> = config.global_tags.iter().map(|t| Tag::parse(t)).collect();
        let host = config.host.as_deref();
        let mut out: Vec<Option<Disposition>> = vec![None; records.len()];
        let mut encoded: Vec<Vec<u8>> = vec![Vec::new(); records.len()];
        let mut valid = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let Some(value) = &r.value else {
                out[i] = Some(dead("orphan"));
                continue;
            };
            let rec = match parse_log(value) {
                Ok(rec) => rec,
                Err(e) => {
                    out[i] = Some(dead(&parse_reason(&e)));
                    continue;
                }
            };
            let extra: usize = tags.iter().map(|t| t.encoded_len() + 1).sum();
            let mut buf = vec![0u8; value.len() + extra + host.map_or(0, |h| 6 * h.len()) + 64];
            let written = loop {
                match encode_log_for_intake(&rec, &tags, host, &mut buf) {
                    Ok(n) => break Some(n),
                    Err(EncodeError::BufferTooSmall { required }) if required > buf.len() => {
                        buf.resize(required, 0)
                    }
                    Err(_) => break None,
                }
            };
            match written {
                Some(n) if n <= config.log_max_entry_bytes => {
                    buf.truncate(n);
                    encoded[i] = buf;
                    valid.push(i);
                }
                Some(_) => out[i] = Some(dead("log_too_large")),
                None => out[i] = Some(dead("encode_failed")),
            }
        }

        // Plan: at most `logs_max_entries` per payload and `logs_max_bytes` in all.
        let mut chunks: Vec<Vec<usize>> = Vec::new();
        let mut chunk = Vec::new();
        let mut bytes = 2;
        for &i in &valid {
            let len = encoded[i].len() + 2;
            if !chunk.is_empty()
                && (chunk.len() >= config.logs_max_entries.max(1) || bytes + len > config.logs_max_bytes)
            {
                chunks.push(std::mem::take(&mut chunk));
                bytes = 2;
            }
            chunk.push(i);
            bytes += len;
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }

        let mut report = Report::default();
        let mut attempt = Attempt {
            transport: &mut self.transport,
            url: &config.logs_url,
            api_key: config.api_key.as_ref(),
            level: config.compression_level,
            max_compressed: config.logs_max_bytes,
            deadline,
            report: &mut report,
            failure: None,
            last_refusal: String::new(),
        };
        let mut send = |group: &[usize]| {
            let mut json = Vec::with_capacity(group.iter().map(|&i| encoded[i].len() + 2).sum());
            json.push(b'[');
            for (k, &i) in group.iter().enumerate() {
                if k > 0 {
                    json.extend_from_slice(b", ");
                }
                json.extend_from_slice(&encoded[i]);
            }
            json.push(b']');
            attempt.post(&json, group.len(), group.len() as u64)
        };
        let outcome = settle_chunks(&chunks, &mut send, &mut out);
        let (failure, refusal) = (attempt.failure, attempt.last_refusal);
        let call = Call { destination: Destination::Logs, url: &config.logs_url, outcome, failure, refusal };
        finish(now, &mut self.outboxes[Destination::Logs.index()], call, out, report)
    }
}

fn dead(reason: &str) -> Disposition {
    Disposition::Dead { reason: reason.to_owned() }
}

/// Settles the chunks of one call in order, sharing the evidence that the endpoint works; the
/// chunks after a call-ending outcome are kept.
fn settle_chunks<F>(chunks: &[Vec<usize>], send: &mut F, out: &mut [Option<Disposition>]) -> Outcome
where
    F: FnMut(&[usize]) -> Verdict,
{
    let mut settler = Settler::new();
    for chunk in chunks {
        let outcome = settler.settle(chunk, send, out);
        if outcome != Outcome::Settled {
            return outcome; // the rest stays unsettled: kept
        }
    }
    Outcome::Settled
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
        Some(Failure { trouble, status, detail }) => {
            outbox.stats.failures += 1;
            let delay = outbox.backoff.handle_failure(now).as_secs_f64();
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
                    "status={status} url={url} kept={kept} body={detail:?} : the intake refused the API key: check API_KEY; data kept, retrying in {delay:.1} s"
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
