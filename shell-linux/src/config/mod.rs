//! Configuration from the environment: every variable of the original (compat §4), with its
//! defaults and JSON list syntax, plus Chouette's own (`REDIS_URL`, `CHOUETTE_*`).
//!
//! Names are case-insensitive, as pydantic's were. A value that cannot work is a startup error
//! naming the variable, never a crash later.

use std::path::PathBuf;
use std::time::Duration;

use chouette_core::wrap::WrapConfig;

pub mod docs;
pub mod vars;

use vars::{Source, VarError};

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

/// Where queues live. `Debug` hides the password of a Redis URL.
#[derive(Clone, PartialEq)]
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

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreConfig::Redis { url, implicit } => {
                f.debug_struct("Redis").field("url", &redact_url(url)).field("implicit", implicit).finish()
            }
            StoreConfig::Embedded { path } => f.debug_struct("Embedded").field("path", path).finish(),
        }
    }
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

/// The InfluxDB output (`INFLUXDB_URL` set): which write API and its credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct InfluxConfig {
    /// `INFLUXDB_URL`, without a trailing slash: `http://host:8086`.
    pub url: String,
    /// v1 or v2, with their settings.
    pub api: InfluxApi,
}

/// InfluxDB's write API: v1 `/write?db=` unless `INFLUXDB_BUCKET` is set (then v2).
#[derive(Debug, Clone, PartialEq)]
pub enum InfluxApi {
    /// `POST {url}/write?db=<database>&precision=s`, basic auth when a username is set.
    V1 {
        /// `INFLUXDB_DATABASE`.
        database: String,
        /// `INFLUXDB_USERNAME`.
        username: Option<String>,
        /// `INFLUXDB_PASSWORD`.
        password: Option<Secret>,
    },
    /// `POST {url}/api/v2/write?org=<org>&bucket=<bucket>&precision=s`, `Authorization: Token`.
    V2 {
        /// `INFLUXDB_ORG`.
        org: String,
        /// `INFLUXDB_BUCKET`.
        bucket: String,
        /// `INFLUXDB_TOKEN`.
        token: Option<Secret>,
    },
}

/// How the OpenTSDB output rewrites metric names and tag keys (`OPENTSDB_SANITIZE`), as
/// apptuit-py's `sanitize_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SanitizeMode {
    /// Names and keys as they are (default).
    #[default]
    None,
    /// Anything but letters, digits, `-`, `_`, `.` and `/` becomes `_`.
    Apptuit,
    /// Anything but ASCII letters, digits and `_` becomes `_`; a leading digit gets a `_` prefix.
    Prometheus,
}

/// Body compression for an output that offers a choice (`OPENTSDB_COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// `Content-Encoding: gzip` (default: what OpenTSDB and VictoriaMetrics read).
    #[default]
    Gzip,
    /// `Content-Encoding: deflate` (zlib), as apptuit-py sends.
    Deflate,
}

/// The OpenTSDB / Apptuit output (`OPENTSDB_URL` set).
#[derive(Debug, Clone, PartialEq)]
pub struct OpentsdbConfig {
    /// `OPENTSDB_URL`, without a trailing slash: points go to `{url}/api/put?details`.
    pub url: String,
    /// `OPENTSDB_TOKEN`: sent as `Authorization: Bearer` (Apptuit).
    pub token: Option<Secret>,
    /// `OPENTSDB_SANITIZE`: `none`, `apptuit` or `prometheus`.
    pub sanitize: SanitizeMode,
    /// `OPENTSDB_COMPRESSION`: `gzip` or `deflate`.
    pub compression: Compression,
}

/// The agent's configuration. `Debug` hides the API key and the credentials of every URL.
#[derive(Clone)]
pub struct Config {
    /// `API_KEY`. `None` (with no `DATADOG_URL` either) means dry-run.
    pub api_key: Option<Secret>,
    /// `GLOBAL_TAGS`: JSON list of `k:v` strings appended to every metric and log.
    pub global_tags: Vec<String>,
    /// `DATADOG_URL`: series go to `{url}/v1/series`.
    pub datadog_url: String,
    /// `DATADOG_LOGS_URL`.
    pub datadog_logs_url: String,
    /// `CHOUETTE_LOGS_API`: `v1` or `v2`.
    pub logs_api: LogsApi,
    /// `HOST`: set as `host` on every metric and log; unset, the machine's hostname (as the
    /// Datadog Agent does); set empty, no host.
    pub host: Option<String>,
    /// Whether the Datadog output is on: `API_KEY` or `DATADOG_URL` set.
    pub datadog: bool,
    /// The InfluxDB output, when `INFLUXDB_URL` is set.
    pub influxdb: Option<InfluxConfig>,
    /// The OpenTSDB output, when `OPENTSDB_URL` is set.
    pub opentsdb: Option<OpentsdbConfig>,
    /// `AGGREGATE_INTERVAL`: the flush interval and the aggregate tick.
    pub aggregate_interval: Duration,
    /// `CAPTURE_INTERVAL`: the collectors' tick.
    pub capture_interval: Duration,
    /// `RELEASE_INTERVAL`: the release tick (which then drains the backlog).
    pub release_interval: Duration,
    /// `METRIC_TTL`: raw and wrapped metrics older than this are deleted.
    pub metric_ttl: Duration,
    /// `LOG_TTL`: logs older than this are deleted.
    pub log_ttl: Duration,
    /// `METRICS_BULK_SIZE`: most points per request.
    pub metrics_bulk_size: usize,
    /// `COMPRESSION_LEVEL`: zlib/gzip level of request bodies, 0 to 9.
    pub compression_level: u8,
    /// `METRICS_WRAPPER`, `HISTOGRAM_AGGREGATES`, `HISTOGRAM_PERCENTILES`.
    pub wrap: WrapConfig,
    /// `SEND_SELF_METRICS`.
    pub send_self_metrics: bool,
    /// `LOG_LEVEL`.
    pub log_level: log::LevelFilter,
    /// `REDIS_URL`, `REDIS_HOST`, `REDIS_PORT`, `CHOUETTE_STATE_DIR`.
    pub store: StoreConfig,
    /// `REDIS_TLS_CA_FILE`, `REDIS_TLS_CERT_FILE`, `REDIS_TLS_KEY_FILE`: only with a `rediss://`
    /// store; the certificate and its key together.
    pub redis_tls: crate::store::redis::TlsFiles,
    /// `COLLECTOR_PLUGINS`: JSON list of plugin names (filled by the boards issue).
    pub collector_plugins: Vec<String>,
    /// The plugins' variables ([`vars::plugin_vars`]: `HOST_COLLECTOR_METRICS`, `K8S_METRICS`,
    /// ...) that are set, by canonical upper-case name, as raw text. Their syntax is checked at
    /// startup; each plugin parses its typed settings from them through its table entries.
    pub plugin_vars: BTreeMap<String, String>,
    /// `SERIAL_DEVICES`, `SERIAL_BAUD`.
    pub serial: crate::serial::Settings,
    /// The DogStatsD listener (`DOGSTATSD_*`).
    pub dogstatsd: crate::dogstatsd::Settings,
    /// `CHOUETTE_CA_BUNDLE` (else `REQUESTS_CA_BUNDLE`, which the original honoured through
    /// requests): extra PEM CA certificates to trust (TLS verification is always on).
    pub ca_bundle: Option<PathBuf>,
    /// `CHOUETTE_CONNECT_TIMEOUT`.
    pub connect_timeout: Duration,
    /// `CHOUETTE_REQUEST_TIMEOUT`: the whole request.
    pub request_timeout: Duration,
    /// `CHOUETTE_GRACE`: how long after its end a bucket waits for late records.
    pub grace: Duration,
    /// Print what would be sent instead of sending it: `CHOUETTE_DRY_RUN=true`, or neither
    /// `API_KEY` nor `DATADOG_URL` set (then only with the embedded store, see
    /// [`Config::check_output`]).
    pub dry_run: bool,
    /// Why the agent must not run with this configuration, although `chouette status` may
    /// ([`Config::check_output`]).
    pub no_output: Option<NoOutput>,
}

/// A configuration with nowhere to send to, that the agent refuses to run (exit 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoOutput {
    /// A Redis store, no `API_KEY`/`DATADOG_URL` and no explicit `CHOUETTE_DRY_RUN=true`: a dry
    /// run would print and delete what the apps queued.
    RedisWithoutOutput,
    /// `CHOUETTE_DRY_RUN=false` and no `API_KEY`/`DATADOG_URL`.
    DryRunFalseWithoutOutput,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plugin_vars: BTreeMap<&str, String> =
            self.plugin_vars.iter().map(|(k, v)| (k.as_str(), shown_plugin_value(k, v))).collect();
        f.debug_struct("Config")
            .field("api_key", &self.api_key)
            .field("global_tags", &self.global_tags)
            .field("datadog_url", &redact_url(&self.datadog_url))
            .field("datadog_logs_url", &redact_url(&self.datadog_logs_url))
            .field("logs_api", &self.logs_api)
            .field("host", &self.host)
            .field("datadog", &self.datadog)
            .field("influxdb", &self.influxdb.as_ref().map(|c| (redact_url(&c.url), &c.api)))
            .field(
                "opentsdb",
                &self.opentsdb.as_ref().map(|c| (redact_url(&c.url), c.token.is_some(), c.sanitize)),
            )
            .field("aggregate_interval", &self.aggregate_interval)
            .field("capture_interval", &self.capture_interval)
            .field("release_interval", &self.release_interval)
            .field("metric_ttl", &self.metric_ttl)
            .field("log_ttl", &self.log_ttl)
            .field("metrics_bulk_size", &self.metrics_bulk_size)
            .field("compression_level", &self.compression_level)
            .field("wrap", &self.wrap)
            .field("send_self_metrics", &self.send_self_metrics)
            .field("log_level", &self.log_level)
            .field("store", &self.store)
            .field("redis_tls", &self.redis_tls)
            .field("collector_plugins", &self.collector_plugins)
            .field("plugin_vars", &plugin_vars)
            .field("serial", &self.serial)
            .field("dogstatsd", &self.dogstatsd)
            .field("ca_bundle", &self.ca_bundle)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("grace", &self.grace)
            .field("dry_run", &self.dry_run)
            .field("no_output", &self.no_output)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing.
// ---------------------------------------------------------------------------------------------

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::path::Path;

use chouette_core::wire::json::{JsonStr, Scanner, Token};
use chouette_core::wrap::WrapperKind;

/// The plugin names `COLLECTOR_PLUGINS` may list (case-sensitive, as the original).
pub const KNOWN_PLUGINS: [&str; 6] = ["host", "k8s", "tegrastats", "docker", "dramatiq", "rpi"];

/// The original's default Redis host and port: used when no store is configured and `redis`
/// resolves (a deployment that relied on the default keeps its data in Redis). The table's
/// defaults of `REDIS_HOST` and `REDIS_PORT` (a test checks they agree).
pub const DEFAULT_REDIS_HOST: &str = "redis";
/// The original's default Redis port.
pub const DEFAULT_REDIS_PORT: u16 = 6379;

/// The system-wide state directory, used when it is writable and nothing else is configured.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/chouette";
/// The state directory used when [`DEFAULT_STATE_DIR`] is not writable (relative to the
/// working directory).
pub const FALLBACK_STATE_DIR: &str = "./chouette-state";
/// The embedded store's file name inside the state directory.
pub const EMBEDDED_FILE: &str = "chouette.redb";

/// A configuration that cannot work. Every variant names the variable (as it was spelled in the
/// environment); values are quoted except the API key's, which is never printed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable's value cannot be used.
    #[error("{name}={value:?}: {expected}")]
    Invalid {
        /// The variable, as spelled in the environment.
        name: String,
        /// The value as given (credentials in URLs replaced by `***`).
        value: String,
        /// What is expected instead.
        expected: String,
    },
    /// A secret variable's value cannot be used (the value is not shown).
    #[error("{name} (value not shown): {expected}")]
    InvalidSecret {
        /// The variable.
        name: String,
        /// What is expected instead.
        expected: String,
    },
    /// Nowhere to send to, and a dry run was not asked for ([`NoOutput`]).
    #[error("{what}: set API_KEY (Datadog) or DATADOG_URL (a Datadog-compatible intake){hint}")]
    NoOutput {
        /// What is configured (the store, credentials hidden), and why that is refused.
        what: String,
        /// How to ask for a dry run, when one is possible.
        hint: &'static str,
    },
    /// Two spellings of one case-insensitive name are set to different values.
    #[error(
        "{first} and {second} are both set, to different values (names are case-insensitive): set only one"
    )]
    Conflict {
        /// One spelling.
        first: String,
        /// The other.
        second: String,
    },
}

/// What the configuration needs to know about the machine: whether a host name resolves and
/// whether a directory is writable. [`SystemProbe`] asks the system; tests inject answers.
pub trait HostProbe {
    /// Whether `host:port` resolves to at least one address.
    fn resolves(&self, host: &str, port: u16) -> bool;
    /// Whether `dir` exists (or can be created) and a file can be created in it.
    fn dir_writable(&self, dir: &Path) -> bool;

    /// The machine's hostname, the default `HOST` ([`machine_hostname`]).
    fn hostname(&self) -> Option<String> {
        machine_hostname()
    }
}

/// The real [`HostProbe`]: DNS through `std::net`, a test file for writability.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemProbe;

impl HostProbe for SystemProbe {
    fn resolves(&self, host: &str, port: u16) -> bool {
        (host, port).to_socket_addrs().map(|mut addrs| addrs.next().is_some()).unwrap_or(false)
    }

    fn dir_writable(&self, dir: &Path) -> bool {
        if std::fs::create_dir_all(dir).is_err() {
            return false;
        }
        let probe = dir.join(format!(".chouette-write-test-{}", std::process::id()));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                true
            }
            Err(_) => false,
        }
    }
}

/// The environment, keyed by upper-cased name, remembering the spelling used.
struct Vars {
    map: BTreeMap<String, (String, String)>,
}

impl Vars {
    fn new(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut map: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (name, value) in vars {
            let key = name.to_ascii_uppercase();
            match map.get(&key) {
                Some((other, old)) if *old != value => {
                    let (first, second) =
                        if *other < name { (other.clone(), name) } else { (name, other.clone()) };
                    return Err(ConfigError::Conflict { first, second });
                }
                Some(_) => {}
                None => {
                    map.insert(key, (name, value));
                }
            }
        }
        Ok(Vars { map })
    }
}

impl Source for Vars {
    fn lookup(&self, canonical: &str) -> Option<(&str, &str)> {
        self.map.get(canonical).map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl From<VarError> for ConfigError {
    fn from(e: VarError) -> ConfigError {
        if e.secret {
            ConfigError::InvalidSecret { name: e.name, expected: e.expected }
        } else {
            invalid(&e.name, &e.value, e.expected)
        }
    }
}

/// An error quoting `value`; credentials hidden when the variable may hold them (a `*_URL`,
/// `REDIS_HOST`) or the value looks like a URL.
fn invalid(name: &str, value: &str, expected: impl Into<String>) -> ConfigError {
    let upper = name.to_ascii_uppercase();
    let may_hold_credentials = upper.ends_with("URL") || upper == "REDIS_HOST" || value.contains("://");
    let value = if may_hold_credentials { redact_url(value) } else { value.to_owned() };
    ConfigError::Invalid { name: name.to_owned(), value, expected: expected.into() }
}

/// The span of `text` that holds a URL's credentials (`user:password`), if any.
///
/// The rule, chosen so that no byte of a password survives even when it was pasted unencoded
/// (`/ ? # @ :` included): the credentials run from just after the scheme's `://` (or from the
/// start of the text, when it does not begin with a valid scheme `[A-Za-z][A-Za-z0-9+.-]*://`)
/// to the **last** `@` of the whole text. A host never contains `@`, so a password that
/// contains one, or any of `/ ? #` (which would end the authority in RFC 3986), is still wholly
/// inside the span. The price: a URL whose path, query or fragment contains an `@` has that part
/// hidden too (never the other way round). Text without an `@` has no credentials.
pub fn credentials_span(text: &str) -> Option<std::ops::Range<usize>> {
    let at = text.rfind('@')?;
    let start = match text.find("://") {
        Some(end)
            if end > 0
                && text[..end].starts_with(|c: char| c.is_ascii_alphabetic())
                && text[..end].chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && end + 3 <= at =>
        {
            end + 3
        }
        _ => 0,
    };
    Some(start..at)
}

/// Replaces the credentials of a URL (`scheme://user:password@host`) by `***`, for logs and
/// error messages, by the rule of [`credentials_span`]. Text without an `@` is returned
/// unchanged.
pub fn redact_url(text: &str) -> String {
    match credentials_span(text) {
        Some(span) => format!("{}***{}", &text[..span.start], &text[span.end..]),
        None => text.to_owned(),
    }
}

/// A plugin variable's value as shown in errors and `Debug`: a URL variable's (`*_URL`, the ones
/// whose credentials are also scrubbed from the log, [`Config::secrets`]) with its credentials
/// hidden ([`redact_url`]); any other unchanged (an `@` in `RPI_I2C_SENSORS`' entries is not a
/// password).
pub fn shown_plugin_value(name: &str, value: &str) -> String {
    if name.to_ascii_uppercase().ends_with("URL") {
        redact_url(value)
    } else {
        value.to_owned()
    }
}

/// The strings to scrub from every log line for the credentials of `url` ([`credentials_span`]):
/// the whole `user:password@`, and the password alone (raw, percent-decoded and
/// percent-encoded, as HTTP and Redis libraries may echo it) when it is at least
/// [`MIN_SCRUBBED_LEN`] bytes (a shorter one would blank out unrelated text; the
/// `user:password@` form still catches it inside a URL).
pub fn url_secrets(url: &str) -> Vec<String> {
    let Some(span) = credentials_span(url) else {
        return Vec::new();
    };
    let userinfo = &url[span];
    let mut out = vec![format!("{userinfo}@")];
    let password = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
    for form in [password.to_owned(), percent_decode(password), percent_encode_userinfo(password)] {
        if form.len() >= MIN_SCRUBBED_LEN && !out.contains(&form) {
            out.push(form);
        }
    }
    out
}

/// The shortest password scrubbed on its own from log lines (see [`url_secrets`]).
pub const MIN_SCRUBBED_LEN: usize = 4;

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes what the WHATWG URL standard's userinfo set encodes (and `%` itself is
/// kept), as the `url` crate serializes a password.
fn percent_encode_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'%'
            );
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses a boolean as pydantic v1 did: `true/false/1/0/yes/no/on/off/t/f/y/n`, any case.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// Parses a log level name, any case: `TRACE`, `DEBUG`, `INFO`, `WARNING`/`WARN`, `ERROR`,
/// `CRITICAL` (as `ERROR`), `NOTSET` (everything, as Python's root logger), `OFF`.
pub fn parse_log_level(text: &str) -> Option<log::LevelFilter> {
    use log::LevelFilter;
    match text.trim().to_ascii_uppercase().as_str() {
        "NOTSET" | "TRACE" => Some(LevelFilter::Trace),
        "DEBUG" => Some(LevelFilter::Debug),
        "INFO" => Some(LevelFilter::Info),
        "WARNING" | "WARN" => Some(LevelFilter::Warn),
        "ERROR" | "CRITICAL" | "FATAL" => Some(LevelFilter::Error),
        "OFF" => Some(LevelFilter::Off),
        _ => None,
    }
}

fn decode(s: &JsonStr<'_>) -> Result<String, String> {
    if let Some(text) = s.borrowed() {
        return Ok(text.to_owned());
    }
    let mut buf = vec![0u8; s.decoded_len_bound()];
    s.decode(&mut buf).map(str::to_owned).map_err(|e| e.to_string())
}

/// Parses a JSON list of strings (`["a:b", "c"]`).
pub fn parse_string_list(text: &str) -> Result<Vec<String>, String> {
    let mut scanner = Scanner::from_str(text);
    let list = string_list(&mut scanner)?;
    scanner.finish().map_err(|e| e.to_string())?;
    Ok(list)
}

fn string_list(scanner: &mut Scanner<'_>) -> Result<Vec<String>, String> {
    match scanner.value().map_err(|e| e.to_string())? {
        Token::ArrayStart => {}
        _ => return Err("not a JSON list".to_owned()),
    }
    let mut out = Vec::new();
    while scanner.next_element().map_err(|e| e.to_string())? {
        match scanner.value().map_err(|e| e.to_string())? {
            Token::Str(s) => out.push(decode(&s)?),
            _ => return Err("an element is not a string".to_owned()),
        }
    }
    Ok(out)
}

/// Parses a JSON list of finite numbers (`[0.5, 0.95]`).
pub fn parse_number_list(text: &str) -> Result<Vec<f64>, String> {
    let mut scanner = Scanner::from_str(text);
    let bad = |e: chouette_core::wire::json::JsonError| e.to_string();
    match scanner.value().map_err(bad)? {
        Token::ArrayStart => {}
        _ => return Err("not a JSON list".to_owned()),
    }
    let mut out = Vec::new();
    while scanner.next_element().map_err(bad)? {
        match scanner.value().map_err(bad)? {
            Token::Number(n) => out.push(n.parse::<f64>().map_err(|_| format!("{n} is not a number"))?),
            _ => return Err("an element is not a finite number".to_owned()),
        }
    }
    scanner.finish().map_err(bad)?;
    Ok(out)
}

/// Parses a JSON object whose values are lists of strings (`{"pods": ["cpu"]}`).
pub fn parse_string_list_map(text: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut scanner = Scanner::from_str(text);
    let bad = |e: chouette_core::wire::json::JsonError| e.to_string();
    match scanner.value().map_err(bad)? {
        Token::ObjectStart => {}
        _ => return Err("not a JSON object".to_owned()),
    }
    let mut out = BTreeMap::new();
    while let Some(key) = scanner.next_key().map_err(bad)? {
        let key = decode(&key)?;
        let list = string_list(&mut scanner).map_err(|e| format!("{key}: {e}"))?;
        out.insert(key, list);
    }
    scanner.finish().map_err(bad)?;
    Ok(out)
}

impl Config {
    /// Reads the process environment (see [`Config::from_vars_with`]). Variables whose name or
    /// value is not UTF-8 are read lossily.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_vars(
            std::env::vars_os()
                .map(|(n, v)| (n.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())),
        )
    }

    /// Parses `vars` as the environment, asking the system about the default Redis host and
    /// state directory when neither is configured.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        Self::from_vars_with(vars, &SystemProbe)
    }

    /// Parses `vars` as the environment, with an injected [`HostProbe`].
    ///
    /// Rules beyond the original's (compat §4):
    /// - Names are case-insensitive; two spellings with different values are an error.
    /// - An empty value is the same as an unset variable.
    /// - `API_KEY` is optional. Neither `API_KEY` nor `DATADOG_URL`: dry-run. `API_KEY` only:
    ///   Datadog. `DATADOG_URL` without `API_KEY`: allowed, for backends that need no key
    ///   (VictoriaMetrics, a local proxy). `GLOBAL_TAGS` is optional.
    /// - Intervals, TTLs, timeouts and the bulk size are whole numbers ≥ 1.
    /// - `METRICS_WRAPPER` other than `datadog` / `simple` is an error (the original silently
    ///   stopped aggregating).
    /// - Unknown `COLLECTOR_PLUGINS` names are an error (the original ignored them).
    pub fn from_vars_with(
        vars: impl IntoIterator<Item = (String, String)>,
        probe: &dyn HostProbe,
    ) -> Result<Config, ConfigError> {
        let env = Vars::new(vars)?;

        let api_key = vars::API_KEY.secret(&env)?;
        let datadog = api_key.is_some() || vars::DATADOG_URL.read_set(&env).is_some();
        let influxdb = influx_config(&env)?;
        let opentsdb = opentsdb_config(&env)?;
        let output_configured = datadog || influxdb.is_some() || opentsdb.is_some();
        let dry_run_flag = vars::CHOUETTE_DRY_RUN.flag(&env)?;
        let dry_run = dry_run_flag.unwrap_or(!output_configured);

        let global_tags = vars::GLOBAL_TAGS.list(&env)?;
        let datadog_url = vars::DATADOG_URL.string(&env)?;
        let datadog_logs_url = vars::DATADOG_LOGS_URL.string(&env)?;
        let logs_api = match vars::CHOUETTE_LOGS_API.one_of(&env)? {
            "v2" => LogsApi::V2,
            _ => LogsApi::V1,
        };
        let host = if vars::HOST.set_empty(&env) {
            None
        } else {
            vars::HOST.text(&env)?.or_else(|| probe.hostname())
        };

        let aggregate_interval = vars::AGGREGATE_INTERVAL.seconds(&env)?;
        let capture_interval = vars::CAPTURE_INTERVAL.seconds(&env)?;
        let release_interval = vars::RELEASE_INTERVAL.seconds(&env)?;
        let metric_ttl = vars::METRIC_TTL.seconds(&env)?;
        let log_ttl = vars::LOG_TTL.seconds(&env)?;
        let metrics_bulk_size = vars::METRICS_BULK_SIZE.count(&env)? as usize;
        // At most 9 (the table's range).
        let compression_level = vars::COMPRESSION_LEVEL.count(&env)?.min(9) as u8;
        let connect_timeout = vars::CHOUETTE_CONNECT_TIMEOUT.seconds(&env)?;
        let request_timeout = vars::CHOUETTE_REQUEST_TIMEOUT.seconds(&env)?;
        let grace = vars::CHOUETTE_GRACE.seconds(&env)?;

        let wrap = wrap_config(&env)?;

        let send_self_metrics = vars::SEND_SELF_METRICS.boolean(&env)?;
        let level = vars::LOG_LEVEL.one_of(&env)?;
        // Every value of the table is a level (a test checks it).
        let log_level = parse_log_level(level).ok_or_else(|| vars::LOG_LEVEL.missing(""))?;

        let collector_plugins = vars::COLLECTOR_PLUGINS.list(&env)?;
        let plugin_vars = plugin_vars(&env)?;
        let serial = crate::serial::Settings::from_vars(&env)?;
        let dogstatsd = crate::dogstatsd::Settings::from_vars(&env)?;

        let ca_bundle = match vars::CHOUETTE_CA_BUNDLE.path(&env)? {
            Some(path) => Some(path),
            None => vars::REQUESTS_CA_BUNDLE.path(&env)?,
        };

        let store = store_config(&env, probe)?;
        let redis_tls = redis_tls_files(&env, &store)?;
        let no_output = match (dry_run_flag, output_configured, &store) {
            (Some(false), false, _) => Some(NoOutput::DryRunFalseWithoutOutput),
            (None, false, StoreConfig::Redis { .. }) => Some(NoOutput::RedisWithoutOutput),
            _ => None,
        };

        Ok(Config {
            api_key,
            global_tags,
            datadog_url,
            datadog_logs_url,
            logs_api,
            host,
            datadog,
            influxdb,
            opentsdb,
            aggregate_interval,
            capture_interval,
            release_interval,
            metric_ttl,
            log_ttl,
            metrics_bulk_size,
            compression_level,
            wrap,
            send_self_metrics,
            log_level,
            store,
            redis_tls,
            collector_plugins,
            plugin_vars,
            serial,
            dogstatsd,
            ca_bundle,
            connect_timeout,
            request_timeout,
            grace,
            dry_run,
            no_output,
        })
    }

    /// Whether the agent may run: refuses a configuration with nowhere to send to (see
    /// [`NoOutput`]). A dry run is for the embedded store on a fresh machine; with a Redis it
    /// would print and delete whatever the apps queued, so it must be asked for explicitly
    /// (`CHOUETTE_DRY_RUN=true`). `chouette status` does not call this.
    pub fn check_output(&self) -> Result<(), ConfigError> {
        match self.no_output {
            None => Ok(()),
            Some(NoOutput::RedisWithoutOutput) => {
                let (url, why) = match &self.store {
                    StoreConfig::Redis { url, implicit: true } => {
                        (url.as_str(), " (no REDIS_* set, but the host `redis` resolves)")
                    }
                    StoreConfig::Redis { url, implicit: false } => (url.as_str(), ""),
                    StoreConfig::Embedded { .. } => ("", ""),
                };
                Err(ConfigError::NoOutput {
                    what: format!(
                        "store={}{why}: a Redis store and no output configured; a dry run would print and delete what the apps queued",
                        redact_url(url)
                    ),
                    hint: ", or CHOUETTE_DRY_RUN=true to dry-run anyway",
                })
            }
            Some(NoOutput::DryRunFalseWithoutOutput) => Err(ConfigError::NoOutput {
                what: "CHOUETTE_DRY_RUN=false and no output configured".to_owned(),
                hint: "",
            }),
        }
    }

    /// Every string to scrub from log lines and printed errors: the API key and the
    /// credentials of every URL-shaped setting ([`url_secrets`]).
    pub fn secrets(&self) -> Vec<String> {
        let influx_secrets = self.influxdb.iter().flat_map(|c| match &c.api {
            InfluxApi::V1 { password, .. } => password.as_ref(),
            InfluxApi::V2 { token, .. } => token.as_ref(),
        });
        let opentsdb_secrets = self.opentsdb.iter().flat_map(|c| c.token.as_ref());
        let mut out: Vec<String> = self
            .api_key
            .iter()
            .chain(influx_secrets)
            .chain(opentsdb_secrets)
            .map(|k| k.expose().to_owned())
            .collect();
        let store_url = match &self.store {
            StoreConfig::Redis { url, .. } => Some(url.as_str()),
            StoreConfig::Embedded { .. } => None,
        };
        let urls = [
            Some(self.datadog_url.as_str()),
            Some(self.datadog_logs_url.as_str()),
            store_url,
            self.influxdb.as_ref().map(|c| c.url.as_str()),
            self.opentsdb.as_ref().map(|c| c.url.as_str()),
        ]
        .into_iter()
        .flatten()
        .chain(self.plugin_vars.iter().filter(|(name, _)| name.ends_with("URL")).map(|(_, v)| v.as_str()));
        for url in urls {
            for secret in url_secrets(url) {
                if !out.contains(&secret) {
                    out.push(secret);
                }
            }
        }
        out.retain(|s| !s.is_empty());
        out
    }
}

/// The machine's hostname (`/proc/sys/kernel/hostname`), if it can be read and is not empty.
pub fn machine_hostname() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(text.trim().to_owned()).filter(|h| !h.is_empty() && h != "(none)")
}

fn influx_config(env: &Vars) -> Result<Option<InfluxConfig>, ConfigError> {
    let Some(url) = vars::INFLUXDB_URL.text(env)? else {
        return Ok(None);
    };
    let api = match (vars::INFLUXDB_BUCKET.read(env), vars::INFLUXDB_ORG.read(env)) {
        (Some(bucket), Some(org)) => InfluxApi::V2 {
            org: org.text.to_owned(),
            bucket: bucket.text.to_owned(),
            token: vars::INFLUXDB_TOKEN.secret(env)?,
        },
        (Some(bucket), None) => {
            return Err(invalid(
                bucket.spelled,
                bucket.text,
                "set together with INFLUXDB_ORG (the v2 write API needs both)",
            ))
        }
        (None, Some(org)) => {
            return Err(invalid(
                org.spelled,
                org.text,
                "set together with INFLUXDB_BUCKET (the v2 write API needs both)",
            ))
        }
        (None, None) => InfluxApi::V1 {
            database: vars::INFLUXDB_DATABASE.string(env)?,
            username: vars::INFLUXDB_USERNAME.text(env)?,
            password: vars::INFLUXDB_PASSWORD.secret(env)?,
        },
    };
    Ok(Some(InfluxConfig { url, api }))
}

fn opentsdb_config(env: &Vars) -> Result<Option<OpentsdbConfig>, ConfigError> {
    let Some(url) = vars::OPENTSDB_URL.text(env)? else {
        return Ok(None);
    };
    let sanitize = match vars::OPENTSDB_SANITIZE.one_of(env)? {
        "apptuit" => SanitizeMode::Apptuit,
        "prometheus" => SanitizeMode::Prometheus,
        _ => SanitizeMode::None,
    };
    let compression = match vars::OPENTSDB_COMPRESSION.one_of(env)? {
        "deflate" => Compression::Deflate,
        _ => Compression::Gzip,
    };
    Ok(Some(OpentsdbConfig { url, token: vars::OPENTSDB_TOKEN.secret(env)?, sanitize, compression }))
}

/// `METRICS_WRAPPER` and the histogram lists, each list set or its default (the table's, which a
/// test checks is [`WrapConfig::default`]).
fn wrap_config(env: &Vars) -> Result<WrapConfig, ConfigError> {
    let wrapper = vars::METRICS_WRAPPER.one_of(env)?;
    let kind = WrapperKind::parse(wrapper).ok_or_else(|| vars::METRICS_WRAPPER.missing(""))?;
    let mut wrap = WrapConfig::empty(kind);
    for name in vars::HISTOGRAM_AGGREGATES.list(env)? {
        // The table lists the names the core knows (a test checks it).
        if wrap.add_aggregate_named(&name).is_err() {
            return Err(vars::HISTOGRAM_AGGREGATES.missing("").into());
        }
    }
    for p in vars::HISTOGRAM_PERCENTILES.fractions(env)? {
        if let Err(e) = wrap.add_percentile(p) {
            let raw = vars::HISTOGRAM_PERCENTILES
                .read(env)
                .ok_or_else(|| vars::HISTOGRAM_PERCENTILES.missing(""))?;
            return Err(vars::HISTOGRAM_PERCENTILES.error(raw, &e.to_string()).into());
        }
    }
    Ok(wrap)
}

/// The plugins' variables that are set, their syntax checked ([`vars::Var::check_syntax`]).
fn plugin_vars(env: &Vars) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for var in vars::plugin_vars() {
        var.check_syntax(env)?;
        if let Some(raw) = var.read_set(env) {
            out.insert(var.name.to_owned(), raw.text.to_owned());
        }
    }
    Ok(out)
}

/// The TLS files of a `rediss://` store: refused with another store (they would do nothing), and
/// a client certificate without its key, or a key without its certificate.
fn redis_tls_files(env: &Vars, store: &StoreConfig) -> Result<crate::store::redis::TlsFiles, ConfigError> {
    let files = crate::store::redis::TlsFiles {
        ca: vars::REDIS_TLS_CA_FILE.path(env)?,
        cert: vars::REDIS_TLS_CERT_FILE.path(env)?,
        key: vars::REDIS_TLS_KEY_FILE.path(env)?,
    };
    let vars = [vars::REDIS_TLS_CA_FILE, vars::REDIS_TLS_CERT_FILE, vars::REDIS_TLS_KEY_FILE];
    let Some((var, raw)) = vars.iter().find_map(|v| Some((v, v.read_set(env)?))) else { return Ok(files) };
    let tls_store = matches!(store, StoreConfig::Redis { url, .. } if url.starts_with("rediss://"));
    if !tls_store {
        let what = match store {
            StoreConfig::Redis { .. } => "the Redis store is not TLS: use a rediss:// REDIS_URL",
            StoreConfig::Embedded { .. } => "the store is the embedded one: set a rediss:// REDIS_URL",
        };
        return Err(var.error(raw, what).into());
    }
    match (vars::REDIS_TLS_CERT_FILE.read_set(env), vars::REDIS_TLS_KEY_FILE.read_set(env)) {
        (Some(raw), None) => {
            Err(vars::REDIS_TLS_CERT_FILE.error(raw, "needs REDIS_TLS_KEY_FILE, its key").into())
        }
        (None, Some(raw)) => {
            Err(vars::REDIS_TLS_KEY_FILE.error(raw, "needs REDIS_TLS_CERT_FILE, its certificate").into())
        }
        _ => Ok(files),
    }
}

fn store_config(env: &Vars, probe: &dyn HostProbe) -> Result<StoreConfig, ConfigError> {
    if let Some(url) = vars::REDIS_URL.text(env)? {
        return Ok(StoreConfig::Redis { url, implicit: false });
    }
    let host = vars::REDIS_HOST.read_set(env);
    let port = vars::REDIS_PORT.read_set(env);
    let storage = vars::CHOUETTE_STORAGE_TYPE.choice(env)?;
    if host.is_some() || port.is_some() || storage == Some("redis") {
        let host_text = vars::REDIS_HOST.string(env)?;
        let port_number = vars::REDIS_PORT.port(env)?.ok_or_else(|| vars::REDIS_PORT.missing(""))?;
        let host_part = if host_text.contains(':') && !host_text.starts_with('[') {
            format!("[{host_text}]")
        } else {
            host_text
        };
        return Ok(StoreConfig::Redis {
            url: format!("redis://{host_part}:{port_number}/0"),
            implicit: false,
        });
    }
    if storage.is_none() && probe.resolves(DEFAULT_REDIS_HOST, DEFAULT_REDIS_PORT) {
        return Ok(StoreConfig::Redis {
            url: format!("redis://{DEFAULT_REDIS_HOST}:{DEFAULT_REDIS_PORT}/0"),
            implicit: true,
        });
    }
    let dir = if let Some(dir) = vars::CHOUETTE_STATE_DIR.path(env)? {
        dir
    } else if let Some(dirs) = vars::STATE_DIRECTORY.text(env)? {
        // systemd's StateDirectory= may list several, separated by ':'; the first is ours.
        PathBuf::from(dirs.split(':').next().unwrap_or(&dirs).trim())
    } else if probe.dir_writable(Path::new(DEFAULT_STATE_DIR)) {
        PathBuf::from(DEFAULT_STATE_DIR)
    } else {
        PathBuf::from(FALLBACK_STATE_DIR)
    };
    Ok(StoreConfig::Embedded { path: dir.join(EMBEDDED_FILE) })
}

#[cfg(test)]
mod tests {
    use super::vars::{DefaultValue, Kind};
    use super::*;

    /// A probe with fixed answers: whether `redis` resolves, whether the default dir is writable.
    struct Probe {
        redis: bool,
        writable: bool,
    }

    impl HostProbe for Probe {
        fn hostname(&self) -> Option<String> {
            None
        }

        fn resolves(&self, host: &str, port: u16) -> bool {
            assert_eq!((host, port), (DEFAULT_REDIS_HOST, DEFAULT_REDIS_PORT));
            self.redis
        }
        fn dir_writable(&self, dir: &Path) -> bool {
            assert_eq!(dir, Path::new(DEFAULT_STATE_DIR));
            self.writable
        }
    }

    const NO_REDIS: Probe = Probe { redis: false, writable: true };

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        parse_with(vars, &NO_REDIS)
    }

    fn parse_with(vars: &[(&str, &str)], probe: &Probe) -> Result<Config, ConfigError> {
        Config::from_vars_with(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())), probe)
    }

    fn err(vars: &[(&str, &str)]) -> String {
        parse(vars).unwrap_err().to_string()
    }

    /// Every variable of the table is read by a parse (of the configuration, then of each
    /// plugin's settings), and every variable read is in the table exactly once (`Var::read`
    /// asserts it in debug builds): no dead documentation, no undocumented variable.
    #[test]
    fn parsing_reads_every_variable_of_the_table() {
        use crate::collect::{docker, dramatiq, host, k8s, rpi, tegrastats};
        vars::READ.with(|r| r.borrow_mut().clear());
        for vars in [
            &[][..],
            &[("INFLUXDB_URL", "http://i:8086"), ("OPENTSDB_URL", "http://o:4242"), ("REDIS_HOST", "r")],
            &[("INFLUXDB_URL", "http://i:8086"), ("INFLUXDB_ORG", "o"), ("INFLUXDB_BUCKET", "b")],
        ] {
            parse(vars).unwrap();
        }
        let plugin_vars: BTreeMap<String, String> = [
            ("K8S_STATS_SERVICE_IP", "10.0.0.1"),
            ("K8S_CERT_PATH", "/c.pem"),
            ("K8S_KEY_PATH", "/k.pem"),
            ("TEGRASTATS_PATH", "/nonexistent/tegrastats"),
            ("VCGENCMD_PATH", "/nonexistent/vcgencmd"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        host::Settings::from_vars(&plugin_vars).unwrap();
        tegrastats::Settings::from_vars(&plugin_vars).unwrap();
        k8s::Settings::from_vars(&plugin_vars).unwrap();
        docker::Settings::from_vars(&plugin_vars).unwrap();
        rpi::Settings::from_vars(&plugin_vars).unwrap();
        dramatiq::Settings::from_vars(&plugin_vars, None).unwrap_err();
        let read = vars::READ.with(|r| r.borrow().clone());
        let unread: Vec<&str> = vars::VARS.iter().map(|v| v.name).filter(|n| !read.contains(n)).collect();
        assert_eq!(unread, Vec::<&str>::new(), "in the table but never read");
    }

    #[test]
    fn the_tables_values_are_the_parsers() {
        let Kind::OneOf(levels) = vars::LOG_LEVEL.kind else { panic!("LOG_LEVEL is one of") };
        assert!(levels.iter().all(|l| parse_log_level(l).is_some()));
        let Kind::OneOf(wrappers) = vars::METRICS_WRAPPER.kind else { panic!("METRICS_WRAPPER is one of") };
        assert!(wrappers.iter().all(|w| WrapperKind::parse(w).is_some()));
        assert_eq!(vars::REDIS_HOST.default, DefaultValue::Value(DEFAULT_REDIS_HOST));
        let DefaultValue::Value(port) = vars::REDIS_PORT.default else { panic!("REDIS_PORT has a default") };
        assert_eq!(port, DEFAULT_REDIS_PORT.to_string());
        // The core's default wrapping and the Rust types' defaults are the table's.
        assert_eq!(parse(&[]).unwrap().wrap, WrapConfig::default());
        assert_eq!(parse(&[]).unwrap().logs_api, LogsApi::default());
        let tsdb = parse(&[("OPENTSDB_URL", "http://o")]).unwrap().opentsdb.unwrap();
        assert_eq!((tsdb.sanitize, tsdb.compression), (SanitizeMode::default(), Compression::default()));
    }

    #[test]
    fn defaults_are_the_originals() {
        let c = parse(&[]).unwrap();
        assert!(c.api_key.is_none());
        assert!(c.dry_run);
        assert!(c.global_tags.is_empty());
        assert_eq!(c.datadog_url, "https://api.datadoghq.com/api");
        assert_eq!(c.datadog_logs_url, "https://http-intake.logs.datadoghq.com");
        assert_eq!(c.logs_api, LogsApi::V1);
        assert_eq!(c.host, None);
        assert_eq!(c.aggregate_interval, Duration::from_secs(10));
        assert_eq!(c.capture_interval, Duration::from_secs(30));
        assert_eq!(c.release_interval, Duration::from_secs(60));
        assert_eq!(c.metric_ttl, Duration::from_secs(14_400));
        assert_eq!(c.log_ttl, Duration::from_secs(64_800));
        assert_eq!(c.metrics_bulk_size, 10_000);
        assert_eq!(c.compression_level, 6);
        assert_eq!(c.wrap, WrapConfig::default());
        assert!(c.send_self_metrics);
        assert_eq!(c.log_level, log::LevelFilter::Info);
        assert!(c.collector_plugins.is_empty());
        assert!(c.plugin_vars.is_empty());
        assert_eq!(c.ca_bundle, None);
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.grace, Duration::from_secs(2));
        assert_eq!(c.store, StoreConfig::Embedded { path: PathBuf::from("/var/lib/chouette/chouette.redb") });
    }

    #[test]
    fn outputs_are_on_when_their_url_is_set() {
        let c =
            parse(&[("INFLUXDB_URL", "http://i:8086/"), ("OPENTSDB_URL", "https://api.apptuit.ai")]).unwrap();
        assert!(!c.datadog);
        assert!(!c.dry_run);
        let influx = c.influxdb.unwrap();
        assert_eq!(influx.url, "http://i:8086");
        assert_eq!(influx.api, InfluxApi::V1 { database: "chouette".into(), username: None, password: None });
        let tsdb = c.opentsdb.unwrap();
        assert_eq!(
            (tsdb.url.as_str(), tsdb.sanitize, tsdb.compression),
            ("https://api.apptuit.ai", SanitizeMode::None, Compression::Gzip)
        );
        let c = parse(&[
            ("INFLUXDB_URL", "http://i:8086"),
            ("INFLUXDB_ORG", "o"),
            ("INFLUXDB_BUCKET", "b"),
            ("INFLUXDB_TOKEN", "t0k"),
            ("OPENTSDB_URL", "http://o:4242"),
            ("OPENTSDB_TOKEN", "bearer1"),
            ("OPENTSDB_SANITIZE", "Prometheus"),
            ("OPENTSDB_COMPRESSION", "deflate"),
        ])
        .unwrap();
        assert_eq!(
            c.influxdb.as_ref().unwrap().api,
            InfluxApi::V2 { org: "o".into(), bucket: "b".into(), token: Some(Secret::new("t0k".into())) }
        );
        assert_eq!(c.opentsdb.as_ref().unwrap().sanitize, SanitizeMode::Prometheus);
        assert_eq!(c.opentsdb.as_ref().unwrap().compression, Compression::Deflate);
        let secrets = c.secrets();
        assert!(secrets.contains(&"t0k".to_owned()) && secrets.contains(&"bearer1".to_owned()));
        assert!(!format!("{c:?}").contains("t0k") && !format!("{c:?}").contains("bearer1"));
        assert!(err(&[("INFLUXDB_URL", "http://i"), ("INFLUXDB_BUCKET", "b")]).contains("INFLUXDB_ORG"));
        assert!(err(&[("OPENTSDB_URL", "http://o"), ("OPENTSDB_SANITIZE", "x")])
            .contains("none, apptuit or prometheus"));
        assert!(err(&[("INFLUXDB_URL", "i:8086")]).contains("INFLUXDB_URL"));
    }

    #[test]
    fn host_defaults_to_the_machine_and_empty_means_none() {
        struct Named;
        impl HostProbe for Named {
            fn hostname(&self) -> Option<String> {
                Some("board-7".into())
            }
            fn resolves(&self, _: &str, _: u16) -> bool {
                false
            }
            fn dir_writable(&self, _: &Path) -> bool {
                true
            }
        }
        let with = |vars: &[(&str, &str)]| {
            Config::from_vars_with(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())), &Named)
                .unwrap()
                .host
        };
        assert_eq!(with(&[]), Some("board-7".into()));
        assert_eq!(with(&[("HOST", "")]), None);
        assert_eq!(with(&[("HOST", " pi-3 ")]), Some("pi-3".into()));
    }

    #[test]
    fn every_variable_parses() {
        let c = parse(&[
            ("API_KEY", "k123"),
            ("GLOBAL_TAGS", r#"["env:prod", "team:i\u00f8t"]"#),
            ("DATADOG_URL", "http://vm:8428/datadog/"),
            ("DATADOG_LOGS_URL", "https://logs.example"),
            ("CHOUETTE_LOGS_API", "V2"),
            ("HOST", "pi-7"),
            ("AGGREGATE_INTERVAL", "1"),
            ("CAPTURE_INTERVAL", "5"),
            ("RELEASE_INTERVAL", "1"),
            ("METRIC_TTL", "60"),
            ("LOG_TTL", "120"),
            ("METRICS_BULK_SIZE", "1"),
            ("COMPRESSION_LEVEL", "0"),
            ("METRICS_WRAPPER", "Simple"),
            ("HISTOGRAM_AGGREGATES", r#"["sum", "min"]"#),
            ("HISTOGRAM_PERCENTILES", "[0.5, 0.99, 1]"),
            ("SEND_SELF_METRICS", "off"),
            ("LOG_LEVEL", "warning"),
            ("COLLECTOR_PLUGINS", r#"["host", "tegrastats"]"#),
            ("HOST_COLLECTOR_METRICS", r#"["cpu", "network"]"#),
            ("K8S_METRICS", r#"{"pods": ["cpu"], "node": []}"#),
            ("K8S_STATS_SERVICE_PORT", "10255"),
            ("TEGRASTATS_PATH", "/opt/tegrastats"),
            ("CHOUETTE_CA_BUNDLE", "/etc/ca.pem"),
            ("CHOUETTE_CONNECT_TIMEOUT", "3"),
            ("CHOUETTE_REQUEST_TIMEOUT", "7"),
            ("CHOUETTE_GRACE", "0"),
            ("REDIS_HOST", "10.0.0.5"),
        ])
        .unwrap();
        assert_eq!(c.api_key.as_ref().map(Secret::expose), Some("k123"));
        assert!(!c.dry_run);
        assert_eq!(c.global_tags, ["env:prod", "team:iøt"]);
        assert_eq!(c.datadog_url, "http://vm:8428/datadog");
        assert_eq!(c.datadog_logs_url, "https://logs.example");
        assert_eq!(c.logs_api, LogsApi::V2);
        assert_eq!(c.host.as_deref(), Some("pi-7"));
        assert_eq!(c.aggregate_interval, Duration::from_secs(1));
        assert_eq!(c.capture_interval, Duration::from_secs(5));
        assert_eq!(c.release_interval, Duration::from_secs(1));
        assert_eq!(c.metric_ttl, Duration::from_secs(60));
        assert_eq!(c.log_ttl, Duration::from_secs(120));
        assert_eq!(c.metrics_bulk_size, 1);
        assert_eq!(c.compression_level, 0);
        assert_eq!(crate::dispatch::DispatchConfig::from_config(&c).compression_level, 0);
        assert_eq!(c.wrap.kind, WrapperKind::Simple);
        use chouette_core::wrap::HistogramAggregate as A;
        assert!(c.wrap.has_aggregate(A::Sum) && c.wrap.has_aggregate(A::Min));
        assert!(!c.wrap.has_aggregate(A::Max) && !c.wrap.has_aggregate(A::Count));
        let suffixes: Vec<_> = c.wrap.percentiles().iter().map(|p| p.suffix()).collect();
        assert_eq!(suffixes, ["50percentile", "99percentile", "100percentile"]);
        assert!(!c.send_self_metrics);
        assert_eq!(c.log_level, log::LevelFilter::Warn);
        assert_eq!(c.collector_plugins, ["host", "tegrastats"]);
        assert_eq!(
            c.plugin_vars.keys().collect::<Vec<_>>(),
            ["HOST_COLLECTOR_METRICS", "K8S_METRICS", "K8S_STATS_SERVICE_PORT", "TEGRASTATS_PATH"]
        );
        assert_eq!(c.ca_bundle, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.request_timeout, Duration::from_secs(7));
        assert_eq!(c.grace, Duration::ZERO);
        assert_eq!(c.store, StoreConfig::Redis { url: "redis://10.0.0.5:6379/0".into(), implicit: false });
    }

    #[test]
    fn errors_name_the_variable_the_value_and_what_is_expected() {
        let cases: &[(&str, &str, &str)] = &[
            ("GLOBAL_TAGS", "env:prod", "a JSON list of \"key:value\" strings"),
            ("GLOBAL_TAGS", "[1]", "not a string"),
            ("GLOBAL_TAGS", "[\"a\"", "JSON list"),
            ("DATADOG_URL", "api.datadoghq.com", "an http:// or https:// URL"),
            ("DATADOG_LOGS_URL", "ftp://x", "an http:// or https:// URL"),
            ("CHOUETTE_LOGS_API", "v3", "v1 or v2"),
            ("AGGREGATE_INTERVAL", "0", "a whole number from 1"),
            ("RELEASE_INTERVAL", "0", "a whole number from 1"),
            ("CAPTURE_INTERVAL", "-5", "a whole number from 1"),
            ("METRIC_TTL", "4h", "a whole number from 1"),
            ("LOG_TTL", "1.5", "a whole number from 1"),
            ("METRICS_BULK_SIZE", "0", "a whole number from 1"),
            ("COMPRESSION_LEVEL", "10", "a whole number from 0 to 9"),
            ("COMPRESSION_LEVEL", "-1", "a whole number from 0 to 9"),
            ("COMPRESSION_LEVEL", "fast", "a whole number from 0 to 9"),
            ("CHOUETTE_CONNECT_TIMEOUT", "0", "a whole number from 1"),
            ("CHOUETTE_REQUEST_TIMEOUT", "x", "a whole number from 1"),
            ("CHOUETTE_GRACE", "-1", "≥ 0"),
            ("METRICS_WRAPPER", "statsd", "datadog or simple"),
            ("HISTOGRAM_AGGREGATES", "[\"p99\"]", "unknown: \"p99\""),
            ("HISTOGRAM_AGGREGATES", "[\"MAX\"]", "case-sensitive"),
            ("HISTOGRAM_PERCENTILES", "[95]", "outside 0..1"),
            ("HISTOGRAM_PERCENTILES", "[0.955]", "not a whole percent"),
            ("HISTOGRAM_PERCENTILES", "[0.5, 0.50]", "named twice"),
            ("HISTOGRAM_PERCENTILES", "[\"0.5\"]", "not a finite number"),
            ("HISTOGRAM_PERCENTILES", "0.95", "not a JSON list"),
            ("SEND_SELF_METRICS", "maybe", "a boolean"),
            ("LOG_LEVEL", "verbose", "DEBUG, INFO, WARNING"),
            ("COLLECTOR_PLUGINS", "[\"Host\"]", "unknown: \"Host\""),
            ("COLLECTOR_PLUGINS", "host", "JSON list of plugin names"),
            ("HOST_COLLECTOR_METRICS", "cpu", "a JSON list of strings"),
            ("TEGRASTATS_METRICS", "[1]", "a JSON list of strings"),
            ("K8S_METRICS", "[\"pods\"]", "a JSON object of lists"),
            ("K8S_METRICS", "{\"pods\": \"cpu\"}", "pods: not a JSON list"),
            ("K8S_STATS_SERVICE_PORT", "0", "a TCP port"),
            ("RPI_I2C_SENSORS", "tmp102@/dev/i2c-1:0x48", "a JSON list of MODEL@DEVICE:ADDRESS entries"),
            ("REDIS_URL", "http://redis:6379", "redis://"),
            ("REDIS_URL", "redis://", "redis://"),
            ("REDIS_PORT", "65536", "a TCP port"),
            ("REDIS_HOST", "redis/0", "a host name or IP address"),
            ("CHOUETTE_STORAGE_TYPE", "memory", "redis or embedded"),
        ];
        for (name, value, expected) in cases {
            let text = err(&[(name, value)]);
            let shown = format!("{name}={value:?}: ");
            assert!(text.starts_with(&shown), "{name}={value}: {text}");
            assert!(text.contains(expected), "{name}={value}: {text}");
        }
    }

    #[test]
    fn intervals_of_one_second_work() {
        let c = parse(&[("RELEASE_INTERVAL", "1"), ("AGGREGATE_INTERVAL", "1"), ("CAPTURE_INTERVAL", "1")])
            .unwrap();
        assert_eq!(c.release_interval, Duration::from_secs(1));
        // Timeouts do not derive from the interval (the original's int(0.8 * 1) = 0 crash).
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn names_are_case_insensitive() {
        let c = parse(&[
            ("api_key", "k"),
            ("Global_Tags", "[\"a:b\"]"),
            ("release_interval", "5"),
            ("metrics_wrapper", "SIMPLE"),
            ("log_level", "Debug"),
            ("redis_host", "r"),
        ])
        .unwrap();
        assert_eq!(c.api_key.as_ref().map(Secret::expose), Some("k"));
        assert_eq!(c.global_tags, ["a:b"]);
        assert_eq!(c.release_interval, Duration::from_secs(5));
        assert_eq!(c.wrap.kind, WrapperKind::Simple);
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        assert!(matches!(c.store, StoreConfig::Redis { ref url, .. } if url == "redis://r:6379/0"));
        // The error names the spelling used.
        assert!(err(&[("release_interval", "0")]).starts_with("release_interval=\"0\""));
    }

    #[test]
    fn conflicting_spellings_are_an_error_naming_both() {
        let text = err(&[("RELEASE_INTERVAL", "5"), ("release_interval", "6")]);
        assert!(text.contains("RELEASE_INTERVAL") && text.contains("release_interval"));
        assert!(text.contains("set only one"));
        // The same value twice is fine.
        let c = parse(&[("LOG_TTL", "5"), ("log_ttl", "5")]).unwrap();
        assert_eq!(c.log_ttl, Duration::from_secs(5));
    }

    #[test]
    fn booleans_and_levels() {
        for (text, value) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("yes", true),
            ("On", true),
            ("t", true),
            ("Y", true),
            ("false", false),
            ("False", false),
            ("0", false),
            ("NO", false),
            ("off", false),
            ("f", false),
            ("n", false),
        ] {
            let c = parse(&[("SEND_SELF_METRICS", text)]).unwrap();
            assert_eq!(c.send_self_metrics, value, "{text}");
        }
        use log::LevelFilter as L;
        for (text, level) in [
            ("DEBUG", L::Debug),
            ("info", L::Info),
            ("WARNING", L::Warn),
            ("warn", L::Warn),
            ("Error", L::Error),
            ("CRITICAL", L::Error),
            ("notset", L::Trace),
        ] {
            assert_eq!(parse(&[("LOG_LEVEL", text)]).unwrap().log_level, level);
        }
    }

    #[test]
    fn dry_run_rules() {
        let c = parse(&[]).unwrap();
        assert!(c.dry_run && c.api_key.is_none());
        // API key only: real Datadog.
        let c = parse(&[("API_KEY", "k")]).unwrap();
        assert!(!c.dry_run);
        assert_eq!(c.datadog_url, "https://api.datadoghq.com/api");
        // URL only: a keyless backend.
        let c = parse(&[("DATADOG_URL", "http://127.0.0.1:8428/datadog")]).unwrap();
        assert!(!c.dry_run && c.api_key.is_none());
        // Both.
        let c = parse(&[("API_KEY", "k"), ("DATADOG_URL", "https://x")]).unwrap();
        assert!(!c.dry_run);
        // Empty counts as unset.
        let c = parse(&[("API_KEY", ""), ("DATADOG_URL", " ")]).unwrap();
        assert!(c.dry_run);
    }

    #[test]
    fn redis_tls_files_go_with_a_rediss_store_and_a_certificate_with_its_key() {
        let tls = |ca: Option<&str>, cert: Option<&str>, key: Option<&str>| crate::store::redis::TlsFiles {
            ca: ca.map(PathBuf::from),
            cert: cert.map(PathBuf::from),
            key: key.map(PathBuf::from),
        };
        let all = [
            ("REDIS_TLS_CA_FILE", "/ca.pem"),
            ("REDIS_TLS_CERT_FILE", "/c.pem"),
            ("REDIS_TLS_KEY_FILE", "/k.pem"),
        ];
        let mut vars = vec![("REDIS_URL", "rediss://cache:6380/0")];
        vars.extend(all);
        assert_eq!(parse(&vars).unwrap().redis_tls, tls(Some("/ca.pem"), Some("/c.pem"), Some("/k.pem")));
        let only_ca = [("REDIS_URL", "rediss://cache/0"), ("REDIS_TLS_CA_FILE", "/ca.pem")];
        assert_eq!(parse(&only_ca).unwrap().redis_tls, tls(Some("/ca.pem"), None, None));
        assert_eq!(parse(&[("REDIS_URL", "rediss://cache/0")]).unwrap().redis_tls, tls(None, None, None));

        assert_eq!(
            err(&[("REDIS_URL", "rediss://cache/0"), ("REDIS_TLS_CERT_FILE", "/c.pem")]),
            r#"REDIS_TLS_CERT_FILE="/c.pem": a path (needs REDIS_TLS_KEY_FILE, its key)"#
        );
        assert_eq!(
            err(&[("REDIS_URL", "rediss://cache/0"), ("REDIS_TLS_KEY_FILE", "/k.pem")]),
            r#"REDIS_TLS_KEY_FILE="/k.pem": a path (needs REDIS_TLS_CERT_FILE, its certificate)"#
        );
        // Files that would do nothing: a plain Redis, the embedded store.
        assert_eq!(
            err(&[("REDIS_URL", "redis://:pw@cache/0"), ("REDIS_TLS_CA_FILE", "/ca.pem")]),
            r#"REDIS_TLS_CA_FILE="/ca.pem": a path (the Redis store is not TLS: use a rediss:// REDIS_URL)"#
        );
        assert_eq!(
            err(&[("CHOUETTE_STATE_DIR", "/s"), ("REDIS_TLS_KEY_FILE", "/k.pem")]),
            r#"REDIS_TLS_KEY_FILE="/k.pem": a path (the store is the embedded one: set a rediss:// REDIS_URL)"#
        );
    }

    #[test]
    fn store_selection() {
        let redis = |url: &str, implicit| StoreConfig::Redis { url: url.into(), implicit };
        let embedded = |p: &str| StoreConfig::Embedded { path: p.into() };
        let yes = Probe { redis: true, writable: true };
        let unwritable = Probe { redis: false, writable: false };
        // REDIS_URL wins over REDIS_HOST / PORT.
        let c = parse(&[("REDIS_URL", "rediss://u:pw@cache:6380/2"), ("REDIS_HOST", "other")]).unwrap();
        assert_eq!(c.store, redis("rediss://u:pw@cache:6380/2", false));
        // Either of REDIS_HOST / REDIS_PORT.
        assert_eq!(parse(&[("REDIS_PORT", "6390")]).unwrap().store, redis("redis://redis:6390/0", false));
        assert_eq!(parse(&[("REDIS_HOST", "::1")]).unwrap().store, redis("redis://[::1]:6379/0", false));
        // CHOUETTE_STORAGE_TYPE=redis: the original's defaults, explicitly.
        assert_eq!(
            parse(&[("CHOUETTE_STORAGE_TYPE", "Redis")]).unwrap().store,
            redis("redis://redis:6379/0", false)
        );
        // Nothing configured, `redis` resolves: implicit Redis.
        assert_eq!(parse_with(&[], &yes).unwrap().store, redis("redis://redis:6379/0", true));
        // ... unless the embedded store is asked for.
        assert_eq!(
            parse_with(&[("CHOUETTE_STORAGE_TYPE", "embedded"), ("CHOUETTE_STATE_DIR", "/s")], &yes)
                .unwrap()
                .store,
            embedded("/s/chouette.redb")
        );
        // Embedded: CHOUETTE_STATE_DIR, then STATE_DIRECTORY, then /var/lib/chouette, then ./
        assert_eq!(
            parse(&[("CHOUETTE_STATE_DIR", "/data"), ("STATE_DIRECTORY", "/sd")]).unwrap().store,
            embedded("/data/chouette.redb")
        );
        assert_eq!(
            parse(&[("STATE_DIRECTORY", "/var/lib/chouette-a:/var/lib/b")]).unwrap().store,
            embedded("/var/lib/chouette-a/chouette.redb")
        );
        assert_eq!(parse(&[]).unwrap().store, embedded("/var/lib/chouette/chouette.redb"));
        assert_eq!(parse_with(&[], &unwritable).unwrap().store, embedded("./chouette-state/chouette.redb"));
    }

    #[test]
    fn percentiles_and_aggregates_replace_their_defaults_independently() {
        use chouette_core::wrap::HistogramAggregate as A;
        let c = parse(&[("HISTOGRAM_PERCENTILES", "[]")]).unwrap();
        assert!(c.wrap.percentiles().is_empty());
        assert!(c.wrap.has_aggregate(A::Max) && c.wrap.has_aggregate(A::Median));
        assert!(c.wrap.has_aggregate(A::Avg) && c.wrap.has_aggregate(A::Count));
        let c = parse(&[("HISTOGRAM_AGGREGATES", "[]")]).unwrap();
        assert!(A::ALL.iter().all(|a| !c.wrap.has_aggregate(*a)));
        assert_eq!(c.wrap.percentiles()[0].suffix(), "95percentile");
        let text = err(&[("HISTOGRAM_PERCENTILES", "[0.95, 1.5]")]);
        assert!(text.starts_with("HISTOGRAM_PERCENTILES=\"[0.95, 1.5]\""), "{text}");
        assert!(text.contains("1.5"), "{text}");
    }

    #[test]
    fn secrets_never_show() {
        let key = "abcdef0123456789-very-secret";
        let c = parse(&[("API_KEY", key), ("REDIS_URL", "redis://user:hunter2@cache:6379/0")]).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains(key), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("redis://***@cache:6379/0"), "{debug}");
        // An unusable key: the error names the variable, not the value.
        let bad = "abc def-secret";
        let text = err(&[("API_KEY", bad)]);
        assert!(text.starts_with("API_KEY (value not shown)"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        // Conflicting spellings of the key: names only.
        let text = err(&[("API_KEY", key), ("api_key", "other-secret")]);
        assert!(!text.contains(key) && !text.contains("other-secret"), "{text}");
        // A bad REDIS_URL with a password: redacted.
        let text = err(&[("REDIS_URL", "http://u:hunter2@x")]);
        assert!(!text.contains("hunter2"), "{text}");
        // Plugin variables: the URL ones redacted, the others (an `@` in an I2C entry) shown.
        let c = parse(&[
            ("DRAMATIQ_REDIS_URL", "redis://:hunter2@broker/0"),
            ("RPI_I2C_SENSORS", r#"["tmp102@/dev/i2c-1:0x48"]"#),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2") && debug.contains("redis://***@broker/0"), "{debug}");
        assert!(debug.contains("tmp102@/dev/i2c-1:0x48"), "{debug}");
        assert_eq!(shown_plugin_value("dramatiq_redis_url", "u:pw@h"), "***@h");
    }

    #[test]
    fn system_probe_checks_writability() {
        let dir = std::env::temp_dir().join(format!("chouette-probe-{}", std::process::id()));
        assert!(SystemProbe.dir_writable(&dir.join("state")));
        assert!(dir.join("state").is_dir());
        assert_eq!(std::fs::read_dir(dir.join("state")).unwrap().count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!SystemProbe.dir_writable(Path::new("/proc/chouette-cannot-exist")));
        assert!(SystemProbe.resolves("127.0.0.1", 6379));
    }

    #[test]
    fn redact_url_hides_credentials_only() {
        assert_eq!(redact_url("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redact_url("https://vm:8428/datadog"), "https://vm:8428/datadog");
        assert_eq!(redact_url("not a url"), "not a url");
        // An `@` after the host: hidden too (over-redaction, never a leak).
        assert_eq!(redact_url("redis://h/0?x=a@b"), "redis://***@b");
    }

    /// Passwords pasted unencoded, with every character that ends an RFC 3986 authority.
    const NASTY: [&str; 6] = ["Pw/9x", "Pw?9x", "Pw#9x", "Pw@9x", "Pw:9x", "Lg7/Hq?Rz#Wm@Kd:Np"];

    #[test]
    fn redact_url_hides_passwords_with_any_character() {
        for pw in NASTY {
            for (url, want) in [
                (format!("redis://:{pw}@cache:6380/2"), "redis://***@cache:6380/2"),
                (format!("rediss://user:{pw}@cache/0"), "rediss://***@cache/0"),
                (format!("https://user:{pw}@vm:8428/datadog"), "https://***@vm:8428/datadog"),
                (format!("http://user:{pw}@[::1]:1/?q=1#f"), "http://***@[::1]:1/?q=1#f"),
                // No scheme, or a mangled one: from the start.
                (format!("user:{pw}@cache:6379"), "***@cache:6379"),
                (format!("redis:/user:{pw}@cache"), "***@cache"),
                (format!("redis//user:{pw}@cache"), "***@cache"),
            ] {
                assert_eq!(redact_url(&url), want, "{url}");
            }
        }
        // A password that itself contains `://`: the scheme is the first one.
        assert_eq!(redact_url("redis://:a://b@h/0"), "redis://***@h/0");
        assert_eq!(redact_url(":a://b@h"), "***@h");
    }

    #[test]
    fn url_secrets_list_every_form_of_the_password() {
        assert_eq!(url_secrets("redis://h:1/0"), Vec::<String>::new());
        assert_eq!(url_secrets("redis://:ab@h"), [":ab@"]);
        assert_eq!(url_secrets("redis://u:p%40ss@h"), ["u:p%40ss@", "p%40ss", "p@ss"]);
        assert_eq!(url_secrets("http://u:Pw/9x@h"), ["u:Pw/9x@", "Pw/9x", "Pw%2F9x"]);
    }

    #[test]
    fn errors_and_debug_never_show_a_url_password() {
        for pw in NASTY {
            for name in ["REDIS_URL", "DATADOG_URL", "DATADOG_LOGS_URL"] {
                for bad in [format!("ftp://u:{pw}@h/"), format!("u:{pw}@h"), format!("//u:{pw}@h")] {
                    let text = err(&[(name, &bad)]);
                    assert!(text.starts_with(&format!("{name}=")), "{text}");
                    assert!(!text.contains(pw), "{text}");
                }
            }
            let text = err(&[("REDIS_HOST", &format!("u:{pw}@h"))]);
            assert!(!text.contains(pw), "{text}");
            let c = parse(&[
                ("REDIS_URL", &format!("redis://u:{pw}@cache:6379/0")),
                ("DATADOG_URL", &format!("https://u:{pw}@vm/datadog")),
                ("DATADOG_LOGS_URL", &format!("https://u:{pw}@logs")),
                ("DRAMATIQ_REDIS_URL", &format!("redis://:{pw}@broker/1")),
            ])
            .unwrap();
            let debug = format!("{c:?}");
            assert!(!debug.contains(pw), "{debug}");
            assert!(debug.contains("redis://***@broker/1") && debug.contains("https://***@vm/datadog"));
            // The refusal to run names the store without its password.
            let c = parse(&[("REDIS_URL", &format!("redis://u:{pw}@cache:6379/0"))]).unwrap();
            let text = c.check_output().unwrap_err().to_string();
            assert!(!text.contains(pw) && text.contains("store=redis://***@cache:6379/0"), "{text}");
        }
        // Other values keep their `@` (only URL-shaped ones are redacted).
        assert!(err(&[("GLOBAL_TAGS", "[\"owner:ops@example\"")]).contains("ops@example"));
    }

    #[test]
    fn a_redis_without_output_is_refused_unless_a_dry_run_is_asked_for() {
        let yes = Probe { redis: true, writable: true };
        let refused = |c: &Config| c.check_output().unwrap_err().to_string();
        // Explicit Redis, nothing to send to: refused, saying what to set.
        let c = parse(&[("REDIS_URL", "redis://127.0.0.1:6379/0")]).unwrap();
        assert_eq!(c.no_output, Some(NoOutput::RedisWithoutOutput));
        assert_eq!(
            refused(&c),
            "store=redis://127.0.0.1:6379/0: a Redis store and no output configured; a dry run would \
             print and delete what the apps queued: set API_KEY (Datadog) or DATADOG_URL (a \
             Datadog-compatible intake), or CHOUETTE_DRY_RUN=true to dry-run anyway"
        );
        for vars in
            [&[("REDIS_HOST", "r")][..], &[("REDIS_PORT", "6390")], &[("CHOUETTE_STORAGE_TYPE", "redis")]]
        {
            assert_eq!(parse(vars).unwrap().no_output, Some(NoOutput::RedisWithoutOutput), "{vars:?}");
        }
        // The implicit Redis (the host `redis` resolves) too.
        let c = parse_with(&[], &yes).unwrap();
        assert!(refused(&c)
            .starts_with("store=redis://redis:6379/0 (no REDIS_* set, but the host `redis` resolves):"));
        // Asked for explicitly: a dry run.
        let c = parse_with(&[("CHOUETTE_DRY_RUN", "true")], &yes).unwrap();
        assert!(c.dry_run && c.check_output().is_ok());
        // An output: no dry run.
        for vars in [&[("API_KEY", "k")][..], &[("DATADOG_URL", "http://vm:8428/datadog")]] {
            let c = parse_with(vars, &yes).unwrap();
            assert!(!c.dry_run && c.check_output().is_ok(), "{vars:?}");
        }
        // The embedded store on a fresh machine: the README's first command, a dry run.
        let c = parse(&[]).unwrap();
        assert!(c.dry_run && c.no_output.is_none() && c.check_output().is_ok());
        // CHOUETTE_DRY_RUN=false with nothing to send to: refused, whatever the store.
        for probe in [&NO_REDIS, &yes] {
            let c = parse_with(&[("CHOUETTE_DRY_RUN", "false")], probe).unwrap();
            assert_eq!(c.no_output, Some(NoOutput::DryRunFalseWithoutOutput));
            assert_eq!(
                refused(&c),
                "CHOUETTE_DRY_RUN=false and no output configured: set API_KEY (Datadog) or DATADOG_URL \
                 (a Datadog-compatible intake)"
            );
        }
        // CHOUETTE_DRY_RUN=true with an output: printed, not sent.
        let c = parse(&[("CHOUETTE_DRY_RUN", "yes"), ("API_KEY", "k")]).unwrap();
        assert!(c.dry_run && c.check_output().is_ok());
        assert!(err(&[("CHOUETTE_DRY_RUN", "sure")]).starts_with("CHOUETTE_DRY_RUN=\"sure\": a boolean"));
    }
}
