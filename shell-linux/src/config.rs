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
            StoreConfig::Redis { url, implicit } => f
                .debug_struct("Redis")
                .field("url", &redact_url(url))
                .field("implicit", implicit)
                .finish(),
            StoreConfig::Embedded { path } => {
                f.debug_struct("Embedded").field("path", path).finish()
            }
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
    /// The plugins' variables ([`PLUGIN_VARS`]: `HOST_COLLECTOR_METRICS`, `K8S_METRICS`, ...)
    /// that are set, by canonical upper-case name, as raw text. JSON syntax is checked at startup;
    /// the plugins (boards issue) parse the meaning.
    pub plugin_vars: BTreeMap<String, String>,
    /// `CHOUETTE_CA_BUNDLE` (else `REQUESTS_CA_BUNDLE`, which the original honoured through
    /// requests): extra PEM CA certificates to trust (TLS verification is always on).
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

// ---------------------------------------------------------------------------------------------
// Parsing.
// ---------------------------------------------------------------------------------------------

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::path::Path;

use chouette_core::wire::json::{JsonStr, Scanner, Token};
use chouette_core::wrap::WrapperKind;

/// The variables the collector plugins read (compat §4.2). Their JSON syntax is checked at
/// startup (as pydantic did); their meaning belongs to the plugins, so they are carried as raw
/// strings in [`Config::plugin_vars`] under these canonical (upper-case) names.
pub const PLUGIN_VARS: [&str; 9] = [
    "HOST_COLLECTOR_METRICS",
    "TEGRASTATS_METRICS",
    "TEGRASTATS_PATH",
    "K8S_STATS_SERVICE_IP",
    "K8S_STATS_SERVICE_PORT",
    "K8S_CERT_PATH",
    "K8S_KEY_PATH",
    "K8S_METRICS",
    "DOCKER_SOCKET_PATH",
];

/// The plugin names `COLLECTOR_PLUGINS` may list (case-sensitive, as the original).
pub const KNOWN_PLUGINS: [&str; 5] = ["host", "k8s", "tegrastats", "docker", "dramatiq"];

/// The original's default Redis host and port: used when no store is configured and `redis`
/// resolves (a deployment that relied on the default keeps its data in Redis).
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
}

/// The real [`HostProbe`]: DNS through `std::net`, a test file for writability.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemProbe;

impl HostProbe for SystemProbe {
    fn resolves(&self, host: &str, port: u16) -> bool {
        (host, port)
            .to_socket_addrs()
            .map(|mut addrs| addrs.next().is_some())
            .unwrap_or(false)
    }

    fn dir_writable(&self, dir: &Path) -> bool {
        if std::fs::create_dir_all(dir).is_err() {
            return false;
        }
        let probe = dir.join(format!(".chouette-write-test-{}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
        {
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
                    let (first, second) = if *other < name {
                        (other.clone(), name)
                    } else {
                        (name, other.clone())
                    };
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

    /// The variable's spelling and value, if set to something non-empty.
    fn get(&self, name: &str) -> Option<(&str, &str)> {
        self.map
            .get(name)
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

fn invalid(name: &str, value: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        value: redact_url(value),
        expected: expected.into(),
    }
}

/// Replaces the credentials of a URL (`scheme://user:password@host`) by `***`, for logs and
/// error messages. Text that is not such a URL is returned unchanged.
pub fn redact_url(text: &str) -> String {
    if let Some(scheme_end) = text.find("://") {
        let rest = &text[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{}://***@{}", &text[..scheme_end], &rest[at + 1..]);
        }
    }
    text.to_owned()
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
    s.decode(&mut buf)
        .map(str::to_owned)
        .map_err(|e| e.to_string())
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
            Token::Number(n) => out.push(
                n.parse::<f64>()
                    .map_err(|_| format!("{n} is not a number"))?,
            ),
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

fn seconds(vars: &Vars, name: &str, default: u32) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(u64::from(positive(
        vars, name, default,
    )?)))
}

fn positive(vars: &Vars, name: &str, default: u32) -> Result<u32, ConfigError> {
    let Some((spelled, value)) = vars.get(name) else {
        return Ok(default);
    };
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(
            spelled,
            value,
            format!("a whole number from 1 to {} (default {default})", u32::MAX),
        )),
    }
}

fn url(vars: &Vars, name: &str, default: &str) -> Result<String, ConfigError> {
    let Some((spelled, value)) = vars.get(name) else {
        return Ok(default.to_owned());
    };
    let value = value.trim();
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        return Err(invalid(
            spelled,
            value,
            format!("an http:// or https:// URL (default {default})"),
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

impl Config {
    /// Reads the process environment (see [`Config::from_vars_with`]). Variables whose name or
    /// value is not UTF-8 are read lossily.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_vars(std::env::vars_os().map(|(n, v)| {
            (
                n.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        }))
    }

    /// Parses `vars` as the environment, asking the system about the default Redis host and
    /// state directory when neither is configured.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Self::from_vars_with(vars, &SystemProbe)
    }

    /// Parses `vars` as the environment, with an injected [`HostProbe`].
    ///
    /// Rules beyond the original's (compat §4):
    /// - Names are case-insensitive; two spellings with different values are an error.
    /// - An empty value is the same as an unset variable.
    /// - `API_KEY` is optional. Neither `API_KEY` nor `DATADOG_URL`: dry-run. `API_KEY` only:
    ///   Datadog. `DATADOG_URL` without `API_KEY`: allowed, for backends that need no key
    ///   (VictoriaMetrics, a local proxy). `GLOBAL_TAGS` defaults to `[]`.
    /// - Intervals, TTLs, timeouts and the bulk size are whole numbers ≥ 1.
    /// - `METRICS_WRAPPER` other than `datadog` / `simple` is an error (the original silently
    ///   stopped aggregating).
    /// - Unknown `COLLECTOR_PLUGINS` names are an error (the original ignored them).
    pub fn from_vars_with(
        vars: impl IntoIterator<Item = (String, String)>,
        probe: &dyn HostProbe,
    ) -> Result<Config, ConfigError> {
        let vars = Vars::new(vars)?;

        let api_key = match vars.get("API_KEY") {
            Some((name, value)) => {
                let value = value.trim();
                if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    return Err(ConfigError::InvalidSecret {
                        name: name.to_owned(),
                        expected: "an API key without spaces or control characters".to_owned(),
                    });
                }
                Some(Secret::new(value.to_owned()))
            }
            None => None,
        };
        let datadog_url_set = vars.get("DATADOG_URL").is_some();
        let dry_run = api_key.is_none() && !datadog_url_set;

        let global_tags = match vars.get("GLOBAL_TAGS") {
            Some((name, value)) => parse_string_list(value).map_err(|e| {
                invalid(
                    name,
                    value,
                    format!("a JSON list of \"key:value\" strings ({e})"),
                )
            })?,
            None => Vec::new(),
        };

        let datadog_url = url(&vars, "DATADOG_URL", "https://api.datadoghq.com/api")?;
        let datadog_logs_url = url(
            &vars,
            "DATADOG_LOGS_URL",
            "https://http-intake.logs.datadoghq.com",
        )?;
        let logs_api = match vars.get("CHOUETTE_LOGS_API") {
            None => LogsApi::V1,
            Some((_, v)) if v.trim().eq_ignore_ascii_case("v1") => LogsApi::V1,
            Some((_, v)) if v.trim().eq_ignore_ascii_case("v2") => LogsApi::V2,
            Some((name, v)) => return Err(invalid(name, v, "v1 or v2 (default v1)")),
        };
        let host = vars.get("HOST").map(|(_, v)| v.trim().to_owned());

        let aggregate_interval = seconds(&vars, "AGGREGATE_INTERVAL", 10)?;
        let capture_interval = seconds(&vars, "CAPTURE_INTERVAL", 30)?;
        let release_interval = seconds(&vars, "RELEASE_INTERVAL", 60)?;
        let metric_ttl = seconds(&vars, "METRIC_TTL", 14_400)?;
        let log_ttl = seconds(&vars, "LOG_TTL", 64_800)?;
        let metrics_bulk_size = positive(&vars, "METRICS_BULK_SIZE", 10_000)? as usize;
        let connect_timeout = seconds(&vars, "CHOUETTE_CONNECT_TIMEOUT", 10)?;
        let request_timeout = seconds(&vars, "CHOUETTE_REQUEST_TIMEOUT", 30)?;
        let grace = match vars.get("CHOUETTE_GRACE") {
            None => Duration::from_secs(2),
            Some((name, value)) => match value.trim().parse::<u32>() {
                Ok(n) => Duration::from_secs(u64::from(n)),
                Err(_) => {
                    return Err(invalid(
                        name,
                        value,
                        "a whole number of seconds ≥ 0 (default 2)",
                    ))
                }
            },
        };

        let wrap = wrap_config(&vars)?;

        let send_self_metrics = match vars.get("SEND_SELF_METRICS") {
            None => true,
            Some((name, value)) => parse_bool(value).ok_or_else(|| {
                invalid(
                    name,
                    value,
                    "a boolean: true/false, 1/0, yes/no, on/off, t/f, y/n",
                )
            })?,
        };
        let log_level = match vars.get("LOG_LEVEL") {
            None => log::LevelFilter::Info,
            Some((name, value)) => parse_log_level(value).ok_or_else(|| {
                invalid(
                    name,
                    value,
                    "DEBUG, INFO, WARNING (or WARN), ERROR, CRITICAL or NOTSET, any case (default INFO)",
                )
            })?,
        };

        let collector_plugins = match vars.get("COLLECTOR_PLUGINS") {
            None => Vec::new(),
            Some((name, value)) => {
                let expected = || {
                    format!(
                        "a JSON list of plugin names among {}",
                        KNOWN_PLUGINS.join(", ")
                    )
                };
                let list = parse_string_list(value)
                    .map_err(|e| invalid(name, value, format!("{} ({e})", expected())))?;
                if let Some(unknown) = list.iter().find(|p| !KNOWN_PLUGINS.contains(&p.as_str())) {
                    return Err(invalid(
                        name,
                        value,
                        format!(
                            "{} (unknown: {unknown:?}; names are case-sensitive)",
                            expected()
                        ),
                    ));
                }
                list
            }
        };
        let plugin_vars = plugin_vars(&vars)?;

        let ca_bundle = vars
            .get("CHOUETTE_CA_BUNDLE")
            .or_else(|| vars.get("REQUESTS_CA_BUNDLE"))
            .map(|(_, v)| PathBuf::from(v.trim()));

        let store = store_config(&vars, probe)?;

        Ok(Config {
            api_key,
            global_tags,
            datadog_url,
            datadog_logs_url,
            logs_api,
            host,
            aggregate_interval,
            capture_interval,
            release_interval,
            metric_ttl,
            log_ttl,
            metrics_bulk_size,
            wrap,
            send_self_metrics,
            log_level,
            store,
            collector_plugins,
            plugin_vars,
            ca_bundle,
            connect_timeout,
            request_timeout,
            grace,
            dry_run,
        })
    }
}

fn wrap_config(vars: &Vars) -> Result<WrapConfig, ConfigError> {
    let mut wrap = WrapConfig::default();
    if let Some((name, value)) = vars.get("METRICS_WRAPPER") {
        wrap.kind = WrapperKind::parse(value.trim())
            .ok_or_else(|| invalid(name, value, "datadog or simple, any case (default datadog)"))?;
    }
    let aggregates = vars.get("HISTOGRAM_AGGREGATES");
    let percentiles = vars.get("HISTOGRAM_PERCENTILES");
    if aggregates.is_none() && percentiles.is_none() {
        return Ok(wrap);
    }
    // Each list, when set, replaces its default; the other keeps its default.
    let default = WrapConfig::default();
    wrap.clear_histogram_outputs();
    match aggregates {
        Some((name, value)) => {
            let expected = "a JSON list among \"avg\", \"count\", \"sum\", \"min\", \"max\", \"median\" (case-sensitive)";
            let list = parse_string_list(value)
                .map_err(|e| invalid(name, value, format!("{expected} ({e})")))?;
            for item in &list {
                wrap.add_aggregate_named(item)
                    .map_err(|_| invalid(name, value, format!("{expected} (unknown: {item:?})")))?;
            }
        }
        None => {
            for aggregate in chouette_core::wrap::HistogramAggregate::ALL {
                if default.has_aggregate(aggregate) {
                    wrap.add_aggregate(aggregate);
                }
            }
        }
    }
    match percentiles {
        Some((name, value)) => {
            let expected =
                "a JSON list of whole percents as fractions in 0..1, e.g. [0.5, 0.95, 0.99]";
            let list = parse_number_list(value)
                .map_err(|e| invalid(name, value, format!("{expected} ({e})")))?;
            for p in list {
                wrap.add_percentile(p)
                    .map_err(|e| invalid(name, value, format!("{expected} ({e})")))?;
            }
        }
        None => {
            for p in default.percentiles() {
                // The default is valid; re-adding it to a cleared config cannot fail.
                let _ = wrap.add_percentile(p.fraction);
            }
        }
    }
    Ok(wrap)
}

fn plugin_vars(vars: &Vars) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for canonical in PLUGIN_VARS {
        let Some((name, value)) = vars.get(canonical) else {
            continue;
        };
        match canonical {
            "HOST_COLLECTOR_METRICS" | "TEGRASTATS_METRICS" => {
                parse_string_list(value)
                    .map_err(|e| invalid(name, value, format!("a JSON list of strings ({e})")))?;
            }
            "K8S_METRICS" => {
                parse_string_list_map(value).map_err(|e| {
                    invalid(
                        name,
                        value,
                        format!(
                            "a JSON object of lists of strings, e.g. {{\"pods\": [\"cpu\"]}} ({e})"
                        ),
                    )
                })?;
            }
            "K8S_STATS_SERVICE_PORT" => match value.trim().parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => {
                    return Err(invalid(
                        name,
                        value,
                        "a TCP port, 1 to 65535 (default 10250)",
                    ))
                }
            },
            _ => {}
        }
        out.insert(canonical.to_owned(), value.to_owned());
    }
    Ok(out)
}

fn store_config(vars: &Vars, probe: &dyn HostProbe) -> Result<StoreConfig, ConfigError> {
    if let Some((name, value)) = vars.get("REDIS_URL") {
        let value = value.trim();
        let rest = value
            .strip_prefix("redis://")
            .or_else(|| value.strip_prefix("rediss://"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {}
            _ => {
                return Err(invalid(
                    name,
                    value,
                    "redis://[user:password@]host[:port][/db] or rediss://... (TLS)",
                ))
            }
        }
        return Ok(StoreConfig::Redis {
            url: value.to_owned(),
            implicit: false,
        });
    }
    let host = vars.get("REDIS_HOST");
    let port = vars.get("REDIS_PORT");
    let storage = match vars.get("CHOUETTE_STORAGE_TYPE") {
        None => None,
        Some((_, v)) if v.trim().eq_ignore_ascii_case("redis") => Some(true),
        Some((_, v)) if v.trim().eq_ignore_ascii_case("embedded") => Some(false),
        Some((name, v)) => return Err(invalid(name, v, "redis or embedded")),
    };
    if host.is_some() || port.is_some() || storage == Some(true) {
        let host_text = host.map_or(DEFAULT_REDIS_HOST, |(_, h)| h.trim());
        let port_number = match port {
            None => DEFAULT_REDIS_PORT,
            Some((name, value)) => match value.trim().parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    return Err(invalid(
                        name,
                        value,
                        "a TCP port, 1 to 65535 (default 6379)",
                    ))
                }
            },
        };
        if let Some((name, value)) = host {
            if host_text.contains(['/', '@', '?', '#', ' ']) {
                return Err(invalid(
                    name,
                    value,
                    "a host name or IP address (use REDIS_URL for credentials or TLS)",
                ));
            }
        }
        let host_part = if host_text.contains(':') && !host_text.starts_with('[') {
            format!("[{host_text}]")
        } else {
            host_text.to_owned()
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
    let dir = if let Some((_, dir)) = vars.get("CHOUETTE_STATE_DIR") {
        PathBuf::from(dir.trim())
    } else if let Some((_, dirs)) = vars.get("STATE_DIRECTORY") {
        // systemd's StateDirectory= may list several, separated by ':'; the first is ours.
        PathBuf::from(dirs.split(':').next().unwrap_or(dirs).trim())
    } else if probe.dir_writable(Path::new(DEFAULT_STATE_DIR)) {
        PathBuf::from(DEFAULT_STATE_DIR)
    } else {
        PathBuf::from(FALLBACK_STATE_DIR)
    };
    Ok(StoreConfig::Embedded {
        path: dir.join(EMBEDDED_FILE),
    })
}
