//! The one table of configuration variables ([`VARS`]): name, default, kind, help, section.
//!
//! Everything else is derived from it: the parsers take their defaults and the "expected" text of
//! their errors from an entry ([`Var::read`] and the typed accessors below), `chouette --help`
//! prints it by section ([`super::docs::help_variables`]), and `docs/configuration.md` (between
//! `<!-- vars:begin SECTION -->` markers) and `deploy/chouette.env` are generated from it (the
//! tests in [`super::docs`] fail with a diff when they are stale;
//! `CHOUETTE_BLESS=1 cargo test -p chouette-agent --lib config::` rewrites them).
//!
//! A default is written once, here, as the text a user would set: it goes through the same parser
//! as a value from the environment, so it cannot disagree with what the agent does.
//!
//! Code reads a variable through its entry (`vars::AGGREGATE_INTERVAL.seconds(&env)`), never by a
//! bare name; asking for an entry that is not in [`VARS`] exactly once is a bug caught in debug
//! builds, and a test checks that a full parse reads every entry (no documented variable is dead).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{parse_bool, parse_number_list, parse_string_list, parse_string_list_map, Secret};

/// One configuration variable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Var {
    /// The canonical (upper-case) name; the environment's spelling may be any case.
    pub name: &'static str,
    /// What applies when the variable is unset or empty.
    pub default: DefaultValue,
    /// The value's type: how it is parsed, checked and described.
    pub kind: Kind,
    /// One or two sentences for `--help`, the docs and `chouette.env` (no trailing period).
    pub help: &'static str,
    /// Where it is listed.
    pub section: Section,
}

/// What applies when a variable is unset (or set to an empty value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// A value, written as a user would set it, parsed like one.
    Value(&'static str),
    /// Nothing: the feature is off, or the variable is optional.
    Unset,
    /// Computed or taken from elsewhere, described in words (e.g. "the machine's hostname").
    Described(&'static str),
}

/// A variable's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Whole seconds, at least `min`.
    Seconds {
        /// The smallest value accepted (0 or 1).
        min: u32,
    },
    /// A whole number ≥ 1.
    Count,
    /// A whole number from `min` to `max`.
    Range {
        /// The smallest value accepted.
        min: u32,
        /// The largest value accepted.
        max: u32,
    },
    /// `true/false/1/0/yes/no/on/off/t/f/y/n`, any case.
    Bool,
    /// An `http://` or `https://` URL (a trailing `/` is dropped).
    HttpUrl,
    /// `redis://` or `rediss://` URL.
    RedisUrl,
    /// A host name or IP address.
    Host,
    /// A TCP port, 1 to 65535.
    Port,
    /// A file or directory.
    Path,
    /// Free text.
    Text,
    /// A secret without spaces or control characters (never shown).
    ApiKey,
    /// A secret without control characters (never shown).
    Secret,
    /// One of these values, any case (the first spelling listed is the canonical one).
    OneOf(&'static [&'static str]),
    /// A JSON list of strings; if `among` is not empty, each one of those.
    List {
        /// What the strings are, for messages: "strings", "plugin names".
        of: &'static str,
        /// The allowed values (empty: any).
        among: &'static [&'static str],
        /// Whether `among` is matched in any case.
        any_case: bool,
    },
    /// A JSON list of whole percents as fractions in 0..1.
    Fractions,
    /// A JSON object whose values are lists of strings.
    ListMap,
}

/// Where a variable is listed (in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Where data goes: Datadog, InfluxDB, OpenTSDB, and what every output shares.
    Outputs,
    /// Periods, TTLs and batch sizes.
    Timing,
    /// How metrics are aggregated.
    Aggregation,
    /// Where queues live.
    Store,
    /// The collector plugins.
    Collectors,
    /// The serial link to microcontrollers.
    Serial,
    /// The DogStatsD listener.
    DogStatsD,
    /// The agent's own log.
    Logging,
}

impl Section {
    /// Every section, in display order.
    pub const ALL: [Section; 8] = [
        Section::Outputs,
        Section::Timing,
        Section::Aggregation,
        Section::Store,
        Section::Collectors,
        Section::Serial,
        Section::DogStatsD,
        Section::Logging,
    ];

    /// The marker key in `docs/configuration.md` (`<!-- vars:begin outputs -->`).
    pub fn key(self) -> &'static str {
        match self {
            Section::Outputs => "outputs",
            Section::Timing => "timing",
            Section::Aggregation => "aggregation",
            Section::Store => "store",
            Section::Collectors => "collectors",
            Section::Serial => "serial",
            Section::DogStatsD => "dogstatsd",
            Section::Logging => "logging",
        }
    }

    /// The heading in `--help` and `chouette.env`.
    pub fn title(self) -> &'static str {
        match self {
            Section::Outputs => "Outputs",
            Section::Timing => "Timing and volume",
            Section::Aggregation => "Aggregation",
            Section::Store => "Store",
            Section::Collectors => "Collector plugins",
            Section::Serial => "Serial link (microcontrollers)",
            Section::DogStatsD => "DogStatsD listener",
            Section::Logging => "Logging",
        }
    }

    /// A paragraph printed after the section's variables in `--help` and before them in
    /// `chouette.env` (the docs have their own prose around the table).
    pub fn note(self) -> &'static str {
        match self {
            Section::Outputs => {
                "Each output is on when its URL is set (Datadog: API_KEY or DATADOG_URL); several may \
                 be on at once. None: a dry run with the embedded store (what would be sent is \
                 printed, then deleted); with a Redis the agent refuses to start (exit 2) unless \
                 CHOUETTE_DRY_RUN=true, since a dry run would delete what the apps queued."
            }
            Section::Timing => "",
            Section::Aggregation => {
                "Setting one of the two histogram lists replaces that list's default only."
            }
            Section::Store => {
                "With no store configured: Redis at redis://redis:6379/0 if the host `redis` \
                 resolves (the original's default), else the embedded store in CHOUETTE_STATE_DIR, \
                 else $STATE_DIRECTORY (systemd), else /var/lib/chouette if writable, else \
                 ./chouette-state. Percent-encode special characters in passwords (p@ss/word -> \
                 p%40ss%2Fword). A rediss:// server's certificate is always verified, against the \
                 public roots or REDIS_TLS_CA_FILE; a server with tls-auth-clients yes (Redis's \
                 default with TLS) also needs REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE. The \
                 dramatiq collector uses these files too when it reads the store's Redis."
            }
            Section::Collectors => {
                "The JSON syntax of the plugins' variables is checked at startup; their meaning \
                 when the plugin starts."
            }
            Section::Serial => {
                "A device that disappears (USB unplug, emulator restart) is reopened with a backoff \
                 of 100 ms doubling to 5 s; the agent keeps running."
            }
            Section::DogStatsD => {
                "Lines are aggregated in memory per AGGREGATE_INTERVAL bucket and merged with the \
                 apps' records of the same series and bucket (one point). SIGTERM flushes what is \
                 held; a kill -9 loses the buckets not yet aggregated, as with the Datadog Agent. A \
                 socket that cannot be bound is an ERROR and the agent runs without it."
            }
            Section::Logging => "JSON lines on stdout (the journal under systemd).",
        }
    }
}

const fn var(
    name: &'static str,
    default: DefaultValue,
    kind: Kind,
    help: &'static str,
    section: Section,
) -> Var {
    Var { name, default, kind, help, section }
}

use DefaultValue::{Described, Unset, Value};
use Section::{Aggregation, Collectors, DogStatsD, Logging, Outputs, Serial, Store, Timing};

const SECONDS: Kind = Kind::Seconds { min: 1 };
const STRINGS: Kind = Kind::List { of: "strings", among: &[], any_case: false };

// ---- Outputs -------------------------------------------------------------------------------

/// `API_KEY`.
pub const API_KEY: Var = var(
    "API_KEY",
    Unset,
    Kind::ApiKey,
    "Datadog API key, sent as the DD-API-KEY header, never logged. Set, the Datadog output is on",
    Outputs,
);
/// `DATADOG_URL`.
pub const DATADOG_URL: Var = var(
    "DATADOG_URL",
    Value("https://api.datadoghq.com/api"),
    Kind::HttpUrl,
    "metrics go to {DATADOG_URL}/v1/series. Set (even without API_KEY, for keyless backends such \
     as VictoriaMetrics), the Datadog output is on",
    Outputs,
);
/// `DATADOG_LOGS_URL`.
pub const DATADOG_LOGS_URL: Var = var(
    "DATADOG_LOGS_URL",
    Value("https://http-intake.logs.datadoghq.com"),
    Kind::HttpUrl,
    "logs go to {DATADOG_LOGS_URL}/v1/input (v1) or /api/v2/logs (v2)",
    Outputs,
);
/// `CHOUETTE_LOGS_API`.
pub const CHOUETTE_LOGS_API: Var =
    var("CHOUETTE_LOGS_API", Value("v1"), Kind::OneOf(&["v1", "v2"]), "Datadog logs API", Outputs);
/// `INFLUXDB_URL`.
pub const INFLUXDB_URL: Var = var(
    "INFLUXDB_URL",
    Unset,
    Kind::HttpUrl,
    "InfluxDB, e.g. http://host:8086. Set, the InfluxDB output is on: v1 POST /write?db=, or v2 \
     POST /api/v2/write?org=&bucket= when INFLUXDB_ORG and INFLUXDB_BUCKET are set",
    Outputs,
);
/// `INFLUXDB_DATABASE`.
pub const INFLUXDB_DATABASE: Var =
    var("INFLUXDB_DATABASE", Value("chouette"), Kind::Text, "InfluxDB v1 database", Outputs);
/// `INFLUXDB_USERNAME`.
pub const INFLUXDB_USERNAME: Var =
    var("INFLUXDB_USERNAME", Unset, Kind::Text, "InfluxDB v1 user (basic auth)", Outputs);
/// `INFLUXDB_PASSWORD`.
pub const INFLUXDB_PASSWORD: Var =
    var("INFLUXDB_PASSWORD", Unset, Kind::Secret, "InfluxDB v1 password (basic auth)", Outputs);
/// `INFLUXDB_ORG`.
pub const INFLUXDB_ORG: Var =
    var("INFLUXDB_ORG", Unset, Kind::Text, "InfluxDB v2 organization (with INFLUXDB_BUCKET)", Outputs);
/// `INFLUXDB_BUCKET`.
pub const INFLUXDB_BUCKET: Var =
    var("INFLUXDB_BUCKET", Unset, Kind::Text, "InfluxDB v2 bucket (with INFLUXDB_ORG)", Outputs);
/// `INFLUXDB_TOKEN`.
pub const INFLUXDB_TOKEN: Var =
    var("INFLUXDB_TOKEN", Unset, Kind::Secret, "InfluxDB v2 token (Authorization: Token)", Outputs);
/// `OPENTSDB_URL`.
pub const OPENTSDB_URL: Var = var(
    "OPENTSDB_URL",
    Unset,
    Kind::HttpUrl,
    "OpenTSDB or Apptuit. Set, the OpenTSDB output is on: points go to {OPENTSDB_URL}/api/put?details",
    Outputs,
);
/// `OPENTSDB_TOKEN`.
pub const OPENTSDB_TOKEN: Var =
    var("OPENTSDB_TOKEN", Unset, Kind::Secret, "sent as Authorization: Bearer (Apptuit)", Outputs);
/// `OPENTSDB_SANITIZE`.
pub const OPENTSDB_SANITIZE: Var = var(
    "OPENTSDB_SANITIZE",
    Value("none"),
    Kind::OneOf(&["none", "apptuit", "prometheus"]),
    "how metric names and tag keys are rewritten, as apptuit-py's sanitize_mode",
    Outputs,
);
/// `OPENTSDB_COMPRESSION`.
pub const OPENTSDB_COMPRESSION: Var = var(
    "OPENTSDB_COMPRESSION",
    Value("gzip"),
    Kind::OneOf(&["gzip", "deflate"]),
    "request body encoding (deflate: zlib, as apptuit-py sends)",
    Outputs,
);
/// `COMPRESSION_LEVEL`.
pub const COMPRESSION_LEVEL: Var = var(
    "COMPRESSION_LEVEL",
    Value("6"),
    Kind::Range { min: 0, max: 9 },
    "the zlib (gzip) level of every output's request bodies: 0 (none) to 9 (smallest), 6 as the \
     original. On the bench's series, 1 takes a fifth of 6's time for 1.8x the bytes, 4 about \
     two thirds for 10 % more (docs/outputs.md)",
    Outputs,
);
/// `CHOUETTE_DRY_RUN`.
pub const CHOUETTE_DRY_RUN: Var = var(
    "CHOUETTE_DRY_RUN",
    Described("by outputs"),
    Kind::Bool,
    "true: print what would be sent (and delete it from the store) instead of sending; false: \
     never a dry run. Unset: a dry run when no output is on",
    Outputs,
);
/// `GLOBAL_TAGS`.
pub const GLOBAL_TAGS: Var = var(
    "GLOBAL_TAGS",
    Value("[]"),
    Kind::List { of: "\"key:value\" strings", among: &[], any_case: false },
    "tags added to every metric and log",
    Outputs,
);
/// `HOST`.
pub const HOST: Var = var(
    "HOST",
    Described("hostname"),
    Kind::Text,
    "the `host` of every metric and log: unset, the machine's hostname; set empty, no host",
    Outputs,
);
/// `CHOUETTE_CONNECT_TIMEOUT`.
pub const CHOUETTE_CONNECT_TIMEOUT: Var =
    var("CHOUETTE_CONNECT_TIMEOUT", Value("10"), SECONDS, "seconds to connect to an output", Outputs);
/// `CHOUETTE_REQUEST_TIMEOUT`.
pub const CHOUETTE_REQUEST_TIMEOUT: Var = var(
    "CHOUETTE_REQUEST_TIMEOUT",
    Value("30"),
    SECONDS,
    "seconds for a whole request (independent of RELEASE_INTERVAL)",
    Outputs,
);
/// `CHOUETTE_CA_BUNDLE`.
pub const CHOUETTE_CA_BUNDLE: Var = var(
    "CHOUETTE_CA_BUNDLE",
    Unset,
    Kind::Path,
    "PEM file of extra CA certificates to trust (TLS verification is always on)",
    Outputs,
);
/// `REQUESTS_CA_BUNDLE`.
pub const REQUESTS_CA_BUNDLE: Var = var(
    "REQUESTS_CA_BUNDLE",
    Unset,
    Kind::Path,
    "used when CHOUETTE_CA_BUNDLE is unset (the original honoured it through requests)",
    Outputs,
);

// ---- Timing and volume ---------------------------------------------------------------------

/// `AGGREGATE_INTERVAL`.
pub const AGGREGATE_INTERVAL: Var = var(
    "AGGREGATE_INTERVAL",
    Value("10"),
    SECONDS,
    "aggregation period and bucket width (the flush interval)",
    Timing,
);
/// `CAPTURE_INTERVAL`.
pub const CAPTURE_INTERVAL: Var =
    var("CAPTURE_INTERVAL", Value("30"), SECONDS, "collector plugins' period", Timing);
/// `RELEASE_INTERVAL`.
pub const RELEASE_INTERVAL: Var =
    var("RELEASE_INTERVAL", Value("60"), SECONDS, "dispatch period (1 works: timeouts are separate)", Timing);
/// `CHOUETTE_GRACE`.
pub const CHOUETTE_GRACE: Var = var(
    "CHOUETTE_GRACE",
    Value("2"),
    Kind::Seconds { min: 0 },
    "seconds a closed bucket waits for late records",
    Timing,
);
/// `METRIC_TTL`.
pub const METRIC_TTL: Var = var(
    "METRIC_TTL",
    Value("14400"),
    SECONDS,
    "raw and wrapped metrics older than this are dropped (counted)",
    Timing,
);
/// `LOG_TTL`.
pub const LOG_TTL: Var =
    var("LOG_TTL", Value("64800"), SECONDS, "logs older than this are dropped (counted)", Timing);
/// `METRICS_BULK_SIZE`.
pub const METRICS_BULK_SIZE: Var =
    var("METRICS_BULK_SIZE", Value("10000"), Kind::Count, "most points per request", Timing);

// ---- Aggregation ---------------------------------------------------------------------------

/// `METRICS_WRAPPER`.
pub const METRICS_WRAPPER: Var = var(
    "METRICS_WRAPPER",
    Value("datadog"),
    Kind::OneOf(&["datadog", "simple"]),
    "how aggregates are named and typed (anything else is an error)",
    Aggregation,
);
/// The names `HISTOGRAM_AGGREGATES` accepts.
pub const AGGREGATE_NAMES: [&str; 6] = ["avg", "count", "sum", "min", "max", "median"];
/// `HISTOGRAM_AGGREGATES`.
pub const HISTOGRAM_AGGREGATES: Var = var(
    "HISTOGRAM_AGGREGATES",
    Value(r#"["max","median","avg","count"]"#),
    Kind::List { of: "strings", among: &AGGREGATE_NAMES, any_case: false },
    "aggregates of every histogram",
    Aggregation,
);
/// `HISTOGRAM_PERCENTILES`.
pub const HISTOGRAM_PERCENTILES: Var = var(
    "HISTOGRAM_PERCENTILES",
    Value("[0.95]"),
    Kind::Fractions,
    "percentiles of every histogram, each emitted as <name>.<percent>percentile",
    Aggregation,
);
/// `SEND_SELF_METRICS`.
pub const SEND_SELF_METRICS: Var =
    var("SEND_SELF_METRICS", Value("true"), Kind::Bool, "emit the chouette.* self-metrics", Aggregation);

// ---- Store ---------------------------------------------------------------------------------

/// `REDIS_URL`.
pub const REDIS_URL: Var =
    var("REDIS_URL", Unset, Kind::RedisUrl, "the Redis store; wins over REDIS_HOST / REDIS_PORT", Store);
/// `REDIS_HOST`.
pub const REDIS_HOST: Var = var(
    "REDIS_HOST",
    Value("redis"),
    Kind::Host,
    "Redis host, used if this, REDIS_PORT or CHOUETTE_STORAGE_TYPE=redis is set",
    Store,
);
/// `REDIS_PORT`.
pub const REDIS_PORT: Var = var("REDIS_PORT", Value("6379"), Kind::Port, "Redis port", Store);
/// `REDIS_TLS_CA_FILE`.
pub const REDIS_TLS_CA_FILE: Var = var(
    "REDIS_TLS_CA_FILE",
    Described("the public roots"),
    Kind::Path,
    "for a rediss:// store: PEM CA certificates its certificate must chain to, instead of the public roots",
    Store,
);
/// `REDIS_TLS_CERT_FILE`.
pub const REDIS_TLS_CERT_FILE: Var = var(
    "REDIS_TLS_CERT_FILE",
    Unset,
    Kind::Path,
    "for a rediss:// store: PEM client certificate, for a server with tls-auth-clients (with REDIS_TLS_KEY_FILE)",
    Store,
);
/// `REDIS_TLS_KEY_FILE`.
pub const REDIS_TLS_KEY_FILE: Var = var(
    "REDIS_TLS_KEY_FILE",
    Unset,
    Kind::Path,
    "for a rediss:// store: PEM private key of REDIS_TLS_CERT_FILE",
    Store,
);
/// `CHOUETTE_STORAGE_TYPE`.
pub const CHOUETTE_STORAGE_TYPE: Var = var(
    "CHOUETTE_STORAGE_TYPE",
    Unset,
    Kind::OneOf(&["redis", "embedded"]),
    "redis (at REDIS_HOST / REDIS_PORT or their defaults) or embedded; unset: see below",
    Store,
);
/// `CHOUETTE_STATE_DIR`.
pub const CHOUETTE_STATE_DIR: Var = var(
    "CHOUETTE_STATE_DIR",
    Described("see below"),
    Kind::Path,
    "directory of the embedded store (its file chouette.redb)",
    Store,
);
/// `STATE_DIRECTORY`.
pub const STATE_DIRECTORY: Var = var(
    "STATE_DIRECTORY",
    Unset,
    Kind::Path,
    "set by systemd's StateDirectory=: used (its first entry) when CHOUETTE_STATE_DIR is unset",
    Store,
);

// ---- Collector plugins ---------------------------------------------------------------------

/// `COLLECTOR_PLUGINS`.
pub const COLLECTOR_PLUGINS: Var = var(
    "COLLECTOR_PLUGINS",
    Value("[]"),
    Kind::List { of: "plugin names", among: &super::KNOWN_PLUGINS, any_case: false },
    "the collector plugins to run",
    Collectors,
);
/// `CHOUETTE_PROC_ROOT`.
pub const CHOUETTE_PROC_ROOT: Var =
    var("CHOUETTE_PROC_ROOT", Value("/"), Kind::Path, "where host and rpi read /proc and /sys", Collectors);
/// `HOST_COLLECTOR_METRICS`.
pub const HOST_COLLECTOR_METRICS: Var = var(
    "HOST_COLLECTOR_METRICS",
    Value(r#"["cpu","fs","la","ram"]"#),
    Kind::List { of: "strings", among: &crate::collect::host::GROUPS, any_case: true },
    "host: metric groups",
    Collectors,
);
/// `TEGRASTATS_METRICS`.
pub const TEGRASTATS_METRICS: Var = var(
    "TEGRASTATS_METRICS",
    Value(r#"["ram","temp"]"#),
    Kind::List { of: "strings", among: &crate::collect::tegrastats::GROUPS, any_case: false },
    "tegrastats: metric groups; nvidia (alias datadog) is Datadog's nvidia.jetson.* set",
    Collectors,
);
/// `TEGRASTATS_PATH`.
pub const TEGRASTATS_PATH: Var = var(
    "TEGRASTATS_PATH",
    Value("/usr/bin/tegrastats"),
    Kind::Path,
    "tegrastats: the tool, run as one long-lived child (restarted if it exits)",
    Collectors,
);
/// `TEGRASTATS_ARGS`.
pub const TEGRASTATS_ARGS: Var = var(
    "TEGRASTATS_ARGS",
    Value(r#"["--interval","1000"]"#),
    STRINGS,
    "tegrastats: the tool's arguments",
    Collectors,
);
/// `K8S_STATS_SERVICE_IP`.
pub const K8S_STATS_SERVICE_IP: Var = var(
    "K8S_STATS_SERVICE_IP",
    Described("required"),
    Kind::Text,
    "k8s: the kubelet's IP address",
    Collectors,
);
/// `K8S_STATS_SERVICE_PORT`.
pub const K8S_STATS_SERVICE_PORT: Var =
    var("K8S_STATS_SERVICE_PORT", Value("10250"), Kind::Port, "k8s: the kubelet's port", Collectors);
/// `K8S_CERT_PATH`.
pub const K8S_CERT_PATH: Var =
    var("K8S_CERT_PATH", Described("required"), Kind::Path, "k8s: client certificate, PEM", Collectors);
/// `K8S_KEY_PATH`.
pub const K8S_KEY_PATH: Var =
    var("K8S_KEY_PATH", Described("required"), Kind::Path, "k8s: client key, PEM", Collectors);
/// `K8S_CA_PATH`.
pub const K8S_CA_PATH: Var = var(
    "K8S_CA_PATH",
    Unset,
    Kind::Path,
    "k8s: PEM CA the kubelet's certificate is verified with (besides the system's)",
    Collectors,
);
/// `K8S_METRICS`.
pub const K8S_METRICS: Var = var(
    "K8S_METRICS",
    Value(r#"{"pods": ["memory","cpu"], "node": ["inodes"]}"#),
    Kind::ListMap,
    "k8s: metric groups, pods among cpu, memory, network; node among cpu, ram, network, inodes, \
     filesystem",
    Collectors,
);
/// `DOCKER_SOCKET_PATH`.
pub const DOCKER_SOCKET_PATH: Var = var(
    "DOCKER_SOCKET_PATH",
    Value("/var/run/docker.sock"),
    Kind::Path,
    "docker: the Docker Engine API's Unix socket",
    Collectors,
);
/// `DRAMATIQ_REDIS_URL`.
pub const DRAMATIQ_REDIS_URL: Var = var(
    "DRAMATIQ_REDIS_URL",
    Described("the store's"),
    Kind::Text,
    "dramatiq: the broker's Redis URL; unset, the agent's Redis store (REDIS_URL or REDIS_HOST/PORT)",
    Collectors,
);
/// `VCGENCMD_PATH`.
pub const VCGENCMD_PATH: Var = var(
    "VCGENCMD_PATH",
    Value("/usr/bin/vcgencmd"),
    Kind::Path,
    "rpi: the vcgencmd tool (skipped when absent)",
    Collectors,
);
/// `RPI_I2C_SENSORS`.
pub const RPI_I2C_SENSORS: Var = var(
    "RPI_I2C_SENSORS",
    Value("[]"),
    Kind::List { of: "MODEL@DEVICE:ADDRESS entries", among: &[], any_case: false },
    "rpi: I2C sensors to read (with rpi in COLLECTOR_PLUGINS), e.g. [\"tmp102@/dev/i2c-1:0x48\", \
     \"bme280@/dev/i2c-1:0x76\"]. MODEL is \
     tmp102, lm75 (9-bit), lm75a (11-bit LM75A/B, alias lm75b) or bme280 (temperature, pressure, \
     humidity); ADDRESS is hex as i2cdetect shows it. A bad entry stops the agent at startup; a \
     sensor that fails is counted (Chouette.rpi.i2c.errors) and retried. Empty, no I2C access",
    Collectors,
);

// ---- Serial link --------------------------------------------------------------------------

/// `SERIAL_DEVICES`.
pub const SERIAL_DEVICES: Var = var(
    "SERIAL_DEVICES",
    Value("[]"),
    Kind::List { of: "tty paths or unix:PATH", among: &[], any_case: false },
    "microcontrollers forwarding over a serial line: ttys (/dev/ttyUSB0, put in raw mode) or \
     unix:PATH (an emulator's UART socket, connected to). Empty, the serial link is off",
    Serial,
);
/// `SERIAL_BAUD`.
pub const SERIAL_BAUD: Var = var(
    "SERIAL_BAUD",
    Value("115200"),
    Kind::OneOf(&[
        "1200", "2400", "4800", "9600", "19200", "38400", "57600", "115200", "230400", "460800", "500000",
        "576000", "921600", "1000000", "1152000", "1500000", "2000000", "3000000", "4000000",
    ]),
    "the ttys' rate, 8N1 (ignored for unix:)",
    Serial,
);

// ---- DogStatsD -----------------------------------------------------------------------------

/// `DOGSTATSD_PORT`.
pub const DOGSTATSD_PORT: Var = var(
    "DOGSTATSD_PORT",
    Value("8125"),
    Kind::Text,
    "UDP port of the DogStatsD listener (0 to 65535); 0 turns UDP off",
    DogStatsD,
);
/// `DOGSTATSD_NON_LOCAL_TRAFFIC`.
pub const DOGSTATSD_NON_LOCAL_TRAFFIC: Var = var(
    "DOGSTATSD_NON_LOCAL_TRAFFIC",
    Value("false"),
    Kind::Bool,
    "listen for UDP on every interface (0.0.0.0) rather than 127.0.0.1, as the Agent's option",
    DogStatsD,
);
/// `DOGSTATSD_SOCKET`.
pub const DOGSTATSD_SOCKET: Var = var(
    "DOGSTATSD_SOCKET",
    Unset,
    Kind::Path,
    "Unix datagram socket to listen on (a stale socket file there is replaced); unset, none",
    DogStatsD,
);
/// `DOGSTATSD_SOCKET_MODE`.
pub const DOGSTATSD_SOCKET_MODE: Var = var(
    "DOGSTATSD_SOCKET_MODE",
    Value("0622"),
    Kind::Text,
    "octal mode of the socket file (0622: any local user may write to it)",
    DogStatsD,
);
/// `DOGSTATSD_BUFFER_SIZE`.
pub const DOGSTATSD_BUFFER_SIZE: Var = var(
    "DOGSTATSD_BUFFER_SIZE",
    Value("8192"),
    Kind::Count,
    "largest datagram in bytes; longer ones are dropped and counted (truncated)",
    DogStatsD,
);
/// `DOGSTATSD_SO_RCVBUF`.
pub const DOGSTATSD_SO_RCVBUF: Var = var(
    "DOGSTATSD_SO_RCVBUF",
    Value("8388608"),
    Kind::Count,
    "receive buffer in bytes asked of the kernel (capped at net.core.rmem_max without \
     CAP_NET_ADMIN; the size obtained is logged and in chouette status)",
    DogStatsD,
);
/// `DOGSTATSD_MAX_CONTEXTS`.
pub const DOGSTATSD_MAX_CONTEXTS: Var = var(
    "DOGSTATSD_MAX_CONTEXTS",
    Value("20000"),
    Kind::Count,
    "most contexts (name, type and tags) per interval; lines for more are refused and counted \
     (contexts_full)",
    DogStatsD,
);

// ---- Logging -------------------------------------------------------------------------------

/// `LOG_LEVEL`.
pub const LOG_LEVEL: Var = var(
    "LOG_LEVEL",
    Value("INFO"),
    Kind::OneOf(&[
        "DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL", "NOTSET", "TRACE", "OFF",
    ]),
    "the agent's log level (CRITICAL and FATAL are ERROR, NOTSET is TRACE)",
    Logging,
);

/// Every variable, by section, in display order.
pub const VARS: &[Var] = &[
    API_KEY,
    DATADOG_URL,
    DATADOG_LOGS_URL,
    CHOUETTE_LOGS_API,
    INFLUXDB_URL,
    INFLUXDB_DATABASE,
    INFLUXDB_USERNAME,
    INFLUXDB_PASSWORD,
    INFLUXDB_ORG,
    INFLUXDB_BUCKET,
    INFLUXDB_TOKEN,
    OPENTSDB_URL,
    OPENTSDB_TOKEN,
    OPENTSDB_SANITIZE,
    OPENTSDB_COMPRESSION,
    COMPRESSION_LEVEL,
    CHOUETTE_DRY_RUN,
    GLOBAL_TAGS,
    HOST,
    CHOUETTE_CONNECT_TIMEOUT,
    CHOUETTE_REQUEST_TIMEOUT,
    CHOUETTE_CA_BUNDLE,
    REQUESTS_CA_BUNDLE,
    AGGREGATE_INTERVAL,
    CAPTURE_INTERVAL,
    RELEASE_INTERVAL,
    CHOUETTE_GRACE,
    METRIC_TTL,
    LOG_TTL,
    METRICS_BULK_SIZE,
    METRICS_WRAPPER,
    HISTOGRAM_AGGREGATES,
    HISTOGRAM_PERCENTILES,
    SEND_SELF_METRICS,
    REDIS_URL,
    REDIS_HOST,
    REDIS_PORT,
    REDIS_TLS_CA_FILE,
    REDIS_TLS_CERT_FILE,
    REDIS_TLS_KEY_FILE,
    CHOUETTE_STORAGE_TYPE,
    CHOUETTE_STATE_DIR,
    STATE_DIRECTORY,
    COLLECTOR_PLUGINS,
    CHOUETTE_PROC_ROOT,
    HOST_COLLECTOR_METRICS,
    TEGRASTATS_METRICS,
    TEGRASTATS_PATH,
    TEGRASTATS_ARGS,
    K8S_STATS_SERVICE_IP,
    K8S_STATS_SERVICE_PORT,
    K8S_CERT_PATH,
    K8S_KEY_PATH,
    K8S_CA_PATH,
    K8S_METRICS,
    DOCKER_SOCKET_PATH,
    DRAMATIQ_REDIS_URL,
    VCGENCMD_PATH,
    RPI_I2C_SENSORS,
    SERIAL_DEVICES,
    SERIAL_BAUD,
    DOGSTATSD_PORT,
    DOGSTATSD_NON_LOCAL_TRAFFIC,
    DOGSTATSD_SOCKET,
    DOGSTATSD_SOCKET_MODE,
    DOGSTATSD_BUFFER_SIZE,
    DOGSTATSD_SO_RCVBUF,
    DOGSTATSD_MAX_CONTEXTS,
    LOG_LEVEL,
];

/// The variables the collector plugins read: [`Section::Collectors`] but `COLLECTOR_PLUGINS`.
/// Their values are carried as text in [`super::Config::plugin_vars`].
pub fn plugin_vars() -> impl Iterator<Item = &'static Var> {
    VARS.iter().filter(|v| v.section == Section::Collectors && v.name != COLLECTOR_PLUGINS.name)
}

// ---- Reading -------------------------------------------------------------------------------

/// Where variables are looked up: the environment ([`super::Config`]'s parser) or the plugin
/// variables ([`super::Config::plugin_vars`]).
pub trait Source {
    /// The variable's spelling and value as set (possibly empty), by canonical name.
    fn lookup(&self, canonical: &str) -> Option<(&str, &str)>;
}

impl Source for BTreeMap<String, String> {
    fn lookup(&self, canonical: &str) -> Option<(&str, &str)> {
        self.get_key_value(canonical).map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A variable's value that cannot be used: names the variable (as spelled), the value and what
/// is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarError {
    /// The variable, as spelled in the environment.
    pub name: String,
    /// The value as given (empty when a required variable is missing).
    pub value: String,
    /// What is expected instead.
    pub expected: String,
    /// Whether the value is secret (then it is not shown).
    pub secret: bool,
}

impl std::fmt::Display for VarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.secret {
            write!(f, "{} (value not shown): {}", self.name, self.expected)
        } else {
            write!(f, "{}={:?}: {}", self.name, self.value, self.expected)
        }
    }
}

impl std::error::Error for VarError {}

/// A variable's text, as set or from its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a> {
    /// The spelling used (the canonical name for a default).
    pub spelled: &'a str,
    /// The text, trimmed of surrounding white space.
    pub text: &'a str,
    /// Whether it was set (not the default).
    pub set: bool,
}

#[cfg(test)]
thread_local! {
    /// The variables read on this thread, for the coverage test.
    pub(crate) static READ: std::cell::RefCell<std::collections::BTreeSet<&'static str>> =
        const { std::cell::RefCell::new(std::collections::BTreeSet::new()) };
}

/// A typed value parsed per [`Kind`].
#[derive(Debug, Clone, PartialEq)]
enum Parsed {
    Seconds(Duration),
    Count(u32),
    Bool(bool),
    Text(String),
    Port(u16),
    Choice(&'static str),
    List(Vec<String>),
    Fractions(Vec<f64>),
    ListMap(BTreeMap<String, Vec<String>>),
}

impl Var {
    /// Checks in debug builds that `self` is an entry of [`VARS`], exactly once; records the
    /// read in tests.
    fn note_read(&self) {
        debug_assert_eq!(
            VARS.iter().filter(|v| v.name == self.name).count(),
            1,
            "{} must be in config::vars::VARS exactly once",
            self.name
        );
        debug_assert!(VARS.contains(self), "{} differs from its VARS entry", self.name);
        #[cfg(test)]
        READ.with(|r| r.borrow_mut().insert(self.name));
    }

    /// Whether the variable is set to an empty (or blank) value: for `HOST`, "no host".
    pub fn set_empty(&self, src: &dyn Source) -> bool {
        self.note_read();
        src.lookup(self.name).is_some_and(|(_, v)| v.trim().is_empty())
    }

    /// The variable as set (non-empty), else its default [`DefaultValue::Value`], else `None`.
    pub fn read<'a>(&self, src: &'a dyn Source) -> Option<Raw<'a>> {
        self.note_read();
        match src.lookup(self.name) {
            Some((spelled, value)) if !value.trim().is_empty() => {
                Some(Raw { spelled, text: value.trim(), set: true })
            }
            _ => match self.default {
                DefaultValue::Value(text) => Some(Raw { spelled: self.name, text, set: false }),
                DefaultValue::Unset | DefaultValue::Described(_) => None,
            },
        }
    }

    /// The variable as set (non-empty), ignoring its default.
    pub fn read_set<'a>(&self, src: &'a dyn Source) -> Option<Raw<'a>> {
        self.read(src).filter(|r| r.set)
    }

    /// What a value must be, for error messages: the kind, then the default.
    pub fn expected(&self) -> String {
        let mut out = self.kind.expected();
        if let DefaultValue::Value(text) = self.default {
            out.push_str(&format!(" (default {text})"));
        }
        out
    }

    /// An error about `raw` (`detail`, if any, says what is wrong with it).
    pub fn error(&self, raw: Raw<'_>, detail: &str) -> VarError {
        let mut expected = self.expected();
        if !detail.is_empty() {
            expected.push_str(&format!(" ({detail})"));
        }
        VarError {
            name: raw.spelled.to_owned(),
            value: raw.text.to_owned(),
            expected,
            secret: matches!(self.kind, Kind::ApiKey | Kind::Secret),
        }
    }

    /// The error for a required variable that is unset (`why`: who requires it).
    pub fn missing(&self, why: &str) -> VarError {
        VarError {
            name: self.name.to_owned(),
            value: String::new(),
            expected: format!("required{}{why} ({})", if why.is_empty() { "" } else { " " }, self.help),
            secret: false,
        }
    }

    fn parse(&self, src: &dyn Source) -> Result<Option<Parsed>, VarError> {
        let Some(raw) = self.read(src) else { return Ok(None) };
        self.kind.parse(raw.text).map(Some).map_err(|detail| self.error(raw, &detail))
    }

    /// Checks the value's syntax only (JSON lists and objects, ports), not the meaning (list
    /// members): what the agent checks at startup for a plugin's variables.
    pub fn check_syntax(&self, src: &dyn Source) -> Result<(), VarError> {
        let Some(raw) = self.read_set(src) else { return Ok(()) };
        let syntax_only = match self.kind {
            Kind::List { of, .. } => Kind::List { of, among: &[], any_case: false },
            Kind::ListMap | Kind::Port => self.kind,
            _ => return Ok(()),
        };
        syntax_only.parse(raw.text).map(drop).map_err(|detail| self.error(raw, &detail))
    }

    /// Whole seconds (a required variable: unset without a default is an error).
    pub fn seconds(&self, src: &dyn Source) -> Result<Duration, VarError> {
        match self.parse(src)? {
            Some(Parsed::Seconds(d)) => Ok(d),
            _ => Err(self.missing("")),
        }
    }

    /// A whole number: ≥ 1 ([`Kind::Count`]) or in its [`Kind::Range`] (required).
    pub fn count(&self, src: &dyn Source) -> Result<u32, VarError> {
        match self.parse(src)? {
            Some(Parsed::Count(n)) => Ok(n),
            _ => Err(self.missing("")),
        }
    }

    /// A boolean, `None` when unset without a default.
    pub fn flag(&self, src: &dyn Source) -> Result<Option<bool>, VarError> {
        match self.parse(src)? {
            Some(Parsed::Bool(b)) => Ok(Some(b)),
            _ => Ok(None),
        }
    }

    /// A boolean (required: unset without a default is an error).
    pub fn boolean(&self, src: &dyn Source) -> Result<bool, VarError> {
        self.flag(src)?.ok_or_else(|| self.missing(""))
    }

    /// Text (required).
    pub fn string(&self, src: &dyn Source) -> Result<String, VarError> {
        self.text(src)?.ok_or_else(|| self.missing(""))
    }

    /// One of [`Kind::OneOf`]'s values, as spelled in the table (required).
    pub fn one_of(&self, src: &dyn Source) -> Result<&'static str, VarError> {
        self.choice(src)?.ok_or_else(|| self.missing(""))
    }

    /// Text (a URL without its trailing `/`, a path, a name), `None` when unset without a default.
    pub fn text(&self, src: &dyn Source) -> Result<Option<String>, VarError> {
        match self.parse(src)? {
            Some(Parsed::Text(t)) => Ok(Some(t)),
            _ => Ok(None),
        }
    }

    /// A path, `None` when unset without a default.
    pub fn path(&self, src: &dyn Source) -> Result<Option<PathBuf>, VarError> {
        Ok(self.text(src)?.map(PathBuf::from))
    }

    /// A secret, `None` when unset.
    pub fn secret(&self, src: &dyn Source) -> Result<Option<Secret>, VarError> {
        Ok(self.text(src)?.map(Secret::new))
    }

    /// A TCP port, `None` when unset without a default.
    pub fn port(&self, src: &dyn Source) -> Result<Option<u16>, VarError> {
        match self.parse(src)? {
            Some(Parsed::Port(p)) => Ok(Some(p)),
            _ => Ok(None),
        }
    }

    /// One of [`Kind::OneOf`]'s values, as spelled in the table, `None` when unset without a
    /// default.
    pub fn choice(&self, src: &dyn Source) -> Result<Option<&'static str>, VarError> {
        match self.parse(src)? {
            Some(Parsed::Choice(c)) => Ok(Some(c)),
            _ => Ok(None),
        }
    }

    /// A JSON list of strings, members checked against [`Kind::List`]'s `among` (lower-cased
    /// when `any_case`); empty when unset without a default.
    pub fn list(&self, src: &dyn Source) -> Result<Vec<String>, VarError> {
        match self.parse(src)? {
            Some(Parsed::List(l)) => Ok(l),
            _ => Ok(Vec::new()),
        }
    }

    /// A JSON list of fractions; empty when unset without a default.
    pub fn fractions(&self, src: &dyn Source) -> Result<Vec<f64>, VarError> {
        match self.parse(src)? {
            Some(Parsed::Fractions(l)) => Ok(l),
            _ => Ok(Vec::new()),
        }
    }

    /// A JSON object of lists of strings; empty when unset without a default.
    pub fn list_map(&self, src: &dyn Source) -> Result<BTreeMap<String, Vec<String>>, VarError> {
        match self.parse(src)? {
            Some(Parsed::ListMap(m)) => Ok(m),
            _ => Ok(BTreeMap::new()),
        }
    }
}

/// `a, b or c`.
fn either(values: &[&str]) -> String {
    match values {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

impl Kind {
    /// What a value of this kind must be, for error messages (without the default).
    pub fn expected(&self) -> String {
        match *self {
            Kind::Seconds { min: 0 } => "a whole number of seconds ≥ 0".to_owned(),
            Kind::Seconds { min } => format!("a whole number from {min} to {}", u32::MAX),
            Kind::Count => format!("a whole number from 1 to {}", u32::MAX),
            Kind::Range { min, max } => format!("a whole number from {min} to {max}"),
            Kind::Bool => "a boolean: true/false, 1/0, yes/no, on/off, t/f, y/n".to_owned(),
            Kind::HttpUrl => "an http:// or https:// URL".to_owned(),
            Kind::RedisUrl => "redis://[user:password@]host[:port][/db] or rediss://... (TLS)".to_owned(),
            Kind::Host => "a host name or IP address (use REDIS_URL for credentials or TLS)".to_owned(),
            Kind::Port => "a TCP port, 1 to 65535".to_owned(),
            Kind::Path => "a path".to_owned(),
            Kind::Text => "text".to_owned(),
            Kind::ApiKey => "an API key without spaces or control characters".to_owned(),
            Kind::Secret => "a value without control characters".to_owned(),
            Kind::OneOf(values) => format!("{}, any case", either(values)),
            Kind::List { of, among: [], .. } => format!("a JSON list of {of}"),
            Kind::List { of, among, any_case } => format!(
                "a JSON list of {of} among {} ({})",
                among.join(", "),
                if any_case { "any case" } else { "case-sensitive" }
            ),
            Kind::Fractions => {
                "a JSON list of whole percents as fractions in 0..1, e.g. [0.5, 0.95, 0.99]".to_owned()
            }
            Kind::ListMap => "a JSON object of lists of strings, e.g. {\"pods\": [\"cpu\"]}".to_owned(),
        }
    }

    /// A short description for `--help`, the docs and `chouette.env`.
    pub fn describe(&self) -> String {
        match *self {
            Kind::Seconds { min: 0 } => "seconds, 0 or more".to_owned(),
            Kind::Seconds { min } => format!("seconds, at least {min}"),
            Kind::Count => "a number, at least 1".to_owned(),
            Kind::Range { min, max } => format!("a number, {min} to {max}"),
            Kind::Bool => "boolean".to_owned(),
            Kind::HttpUrl => "http(s) URL".to_owned(),
            Kind::RedisUrl => "redis:// or rediss:// URL".to_owned(),
            Kind::Host => "host name or IP".to_owned(),
            Kind::Port => "TCP port".to_owned(),
            Kind::Path => "path".to_owned(),
            Kind::Text => "text".to_owned(),
            Kind::ApiKey | Kind::Secret => "secret".to_owned(),
            Kind::OneOf(values) => format!("{}, any case", either(values)),
            Kind::List { of, among: [], .. } => format!("JSON list of {of}"),
            Kind::List { among, any_case, .. } => {
                format!("JSON list among {}{}", among.join(", "), if any_case { ", any case" } else { "" })
            }
            Kind::Fractions => "JSON list of fractions in 0..1, whole percents".to_owned(),
            Kind::ListMap => "JSON object of lists".to_owned(),
        }
    }

    /// Parses `text` (trimmed); the error says what is wrong when the kind's expected text
    /// alone would not (empty otherwise).
    fn parse(&self, text: &str) -> Result<Parsed, String> {
        match *self {
            Kind::Seconds { min } => match text.parse::<u32>() {
                Ok(n) if n >= min => Ok(Parsed::Seconds(Duration::from_secs(u64::from(n)))),
                _ => Err(String::new()),
            },
            Kind::Count => match text.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Parsed::Count(n)),
                _ => Err(String::new()),
            },
            Kind::Range { min, max } => match text.parse::<u32>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Parsed::Count(n)),
                _ => Err(String::new()),
            },
            Kind::Bool => parse_bool(text).map(Parsed::Bool).ok_or_default(),
            Kind::HttpUrl => {
                if text.starts_with("http://") || text.starts_with("https://") {
                    Ok(Parsed::Text(text.trim_end_matches('/').to_owned()))
                } else {
                    Err(String::new())
                }
            }
            Kind::RedisUrl => {
                let rest = text.strip_prefix("redis://").or_else(|| text.strip_prefix("rediss://"));
                match rest {
                    Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {
                        Ok(Parsed::Text(text.to_owned()))
                    }
                    _ => Err(String::new()),
                }
            }
            Kind::Host => {
                if text.contains(['/', '@', '?', '#', ' ']) {
                    Err(String::new())
                } else {
                    Ok(Parsed::Text(text.to_owned()))
                }
            }
            Kind::Port => match text.parse::<u16>() {
                Ok(p) if p > 0 => Ok(Parsed::Port(p)),
                _ => Err(String::new()),
            },
            Kind::Path | Kind::Text => Ok(Parsed::Text(text.to_owned())),
            Kind::ApiKey => {
                if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    Err(String::new())
                } else {
                    Ok(Parsed::Text(text.to_owned()))
                }
            }
            Kind::Secret => {
                if text.chars().any(char::is_control) {
                    Err(String::new())
                } else {
                    Ok(Parsed::Text(text.to_owned()))
                }
            }
            Kind::OneOf(values) => values
                .iter()
                .find(|v| v.eq_ignore_ascii_case(text))
                .map(|v| Parsed::Choice(v))
                .ok_or_default(),
            Kind::List { among, any_case, .. } => {
                let mut list = parse_string_list(text)?;
                if any_case {
                    list.iter_mut().for_each(|s| s.make_ascii_lowercase());
                }
                if !among.is_empty() {
                    if let Some(unknown) = list.iter().find(|s| !among.contains(&s.as_str())) {
                        return Err(format!("unknown: {unknown:?}"));
                    }
                }
                Ok(Parsed::List(list))
            }
            Kind::Fractions => parse_number_list(text).map(Parsed::Fractions),
            Kind::ListMap => parse_string_list_map(text).map(Parsed::ListMap),
        }
    }
}

trait OkOrDefault<T> {
    fn ok_or_default(self) -> Result<T, String>;
}

impl<T> OkOrDefault<T> for Option<T> {
    fn ok_or_default(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_upper_case_and_sections_in_order() {
        for (i, var) in VARS.iter().enumerate() {
            assert_eq!(var.name, var.name.to_ascii_uppercase());
            assert!(VARS[i + 1..].iter().all(|v| v.name != var.name), "{} twice", var.name);
            assert!(!var.help.is_empty() && !var.help.ends_with('.'), "{}", var.name);
        }
        assert!(VARS.windows(2).all(|w| w[0].section <= w[1].section), "VARS is grouped by section");
    }

    #[test]
    fn every_default_parses_with_its_kind() {
        for var in VARS {
            if let DefaultValue::Value(text) = var.default {
                assert!(
                    var.kind.parse(text).is_ok(),
                    "{}: default {text:?} is not {}",
                    var.name,
                    var.kind.expected()
                );
            }
        }
    }

    #[test]
    fn aggregate_names_are_the_cores() {
        let mut wrap = chouette_core::wrap::WrapConfig::default();
        for name in AGGREGATE_NAMES {
            assert!(wrap.add_aggregate_named(name).is_ok(), "{name}");
        }
        assert!(wrap.add_aggregate_named("p99").is_err());
    }
}
