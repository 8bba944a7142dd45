//! Client configuration: where Redis is, global tags, sanitizing, buffer sizes, modes.

use std::path::PathBuf;
use std::time::Duration;

use crate::sanitize::SanitizeMode;

/// The original client's default Redis host (`REDIS_HOST`).
pub const DEFAULT_REDIS_HOST: &str = "redis";
/// The original client's default Redis port (`REDIS_PORT`).
pub const DEFAULT_REDIS_PORT: u16 = 6379;
/// Records the buffer holds before calls start dropping (about 150 bytes each: 15 MB).
pub const DEFAULT_BUFFER_RECORDS: usize = 100_000;
/// Bytes the buffer holds before calls start dropping, counted as the records' own bytes (a
/// metric call's compact form, a log's JSON) plus 60 bytes per record (its entry and its uuid),
/// the writer's unsent batch included. 16 MiB: a metric call with two tags takes about 130
/// bytes, so 100 000 of them (`DEFAULT_BUFFER_RECORDS`) fit and the record bound binds first for
/// metrics, as before; a Redis outage with large logs now holds about 1 600 logs of 10 KB (or
/// 30 000 of 500 bytes) instead of 1 GB, about 3% of a 512 MB board's memory.
pub const DEFAULT_BUFFER_BYTES: usize = 16 * 1024 * 1024;
/// Records written in one `MULTI … EXEC` transaction.
pub const DEFAULT_BATCH_RECORDS: usize = 2_000;

/// A configuration value that cannot work: reported when the client is set up, never later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable holds a value that cannot work.
    #[error("{name}={value:?} is invalid: expected {expected}")]
    InvalidVar {
        /// The variable, as spelled in the environment.
        name: String,
        /// Its value.
        value: String,
        /// What would have worked.
        expected: &'static str,
    },
    /// The Redis URL was refused by the Redis client.
    #[error("Redis URL {url:?} is invalid: {source}")]
    RedisUrl {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// Why.
        source: redis::RedisError,
    },
    /// A TLS file ([`RedisTls`]) cannot be read, or holds no certificate (or key).
    #[error("{var}={path}: {detail}")]
    RedisTls {
        /// Its variable (`REDIS_TLS_CA_FILE`, `REDIS_TLS_CERT_FILE` or `REDIS_TLS_KEY_FILE`).
        var: &'static str,
        /// Its path.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The background writer thread could not be started.
    #[error("cannot start the chouette-client writer thread: {0}")]
    Thread(std::io::Error),
}

/// How calls are turned into Redis records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// One record per call, in the original Python client's exact layout (the default).
    Raw,
    /// Calls are aggregated in-process; one record per series per interval (see the README).
    Aggregating {
        /// The aggregation interval.
        interval: Duration,
    },
}

/// PEM files for a `rediss://` Redis, as the agent reads them (`REDIS_TLS_CA_FILE`,
/// `REDIS_TLS_CERT_FILE`, `REDIS_TLS_KEY_FILE`). None: the server's certificate must chain to a
/// public root, and no client certificate is offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// The CA certificates the server's certificate must chain to, instead of the public roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (its chain), for a server with `tls-auth-clients` (Redis's default).
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
}

impl RedisTls {
    /// Whether no file is set.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    /// The files read, for redis-rs: `Err` names the variable and path of a file that cannot
    /// be read or holds no certificate (or no private key).
    pub(crate) fn certificates(&self) -> Result<redis::TlsCertificates, ConfigError> {
        let read = |var: &'static str, path: &Option<PathBuf>, key: bool| {
            let Some(path) = path else { return Ok(None) };
            let fail =
                |detail: String| ConfigError::RedisTls { var, path: path.display().to_string(), detail };
            let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            let found = if key {
                matches!(rustls_pemfile::private_key(&mut pem.as_slice()), Ok(Some(_)))
            } else {
                rustls_pemfile::certs(&mut pem.as_slice()).any(|c| c.is_ok())
            };
            if !found {
                return Err(fail(format!(
                    "no PEM {} in it",
                    if key { "private key" } else { "certificate" }
                )));
            }
            Ok(Some(pem))
        };
        let root_cert = read("REDIS_TLS_CA_FILE", &self.ca_file, false)?;
        let cert = read("REDIS_TLS_CERT_FILE", &self.cert_file, false)?;
        let key = read("REDIS_TLS_KEY_FILE", &self.key_file, true)?;
        let client_tls =
            cert.zip(key).map(|(client_cert, client_key)| redis::ClientTlsConfig { client_cert, client_key });
        Ok(redis::TlsCertificates { client_tls, root_cert })
    }
}

/// `REDIS_TLS_*`: only with a `rediss://` URL, and a certificate with its key.
fn redis_tls_from_vars(
    lookup: &impl Fn(&str) -> Option<(String, String)>,
    url: &str,
) -> Result<RedisTls, ConfigError> {
    let read = |name: &str| lookup(name).filter(|(_, v)| !v.trim().is_empty());
    let (ca, cert, key) =
        (read("REDIS_TLS_CA_FILE"), read("REDIS_TLS_CERT_FILE"), read("REDIS_TLS_KEY_FILE"));
    let invalid =
        |(name, value): (String, String), expected| ConfigError::InvalidVar { name, value, expected };
    if let Some(set) = ca.iter().chain(&cert).chain(&key).next() {
        if !url.starts_with("rediss://") {
            return Err(invalid(set.clone(), "to be unset: TLS files go with a rediss:// REDIS_URL"));
        }
    }
    match (&cert, &key) {
        (Some(c), None) => return Err(invalid(c.clone(), "a path, with REDIS_TLS_KEY_FILE (its key)")),
        (None, Some(k)) => {
            return Err(invalid(k.clone(), "a path, with REDIS_TLS_CERT_FILE (its certificate)"))
        }
        _ => {}
    }
    let path = |v: Option<(String, String)>| v.map(|(_, p)| PathBuf::from(p.trim()));
    Ok(RedisTls { ca_file: path(ca), cert_file: path(cert), key_file: path(key) })
}

/// Everything a [`Client`](crate::Client) needs; build it with [`ClientConfig::new`] or
/// [`ClientConfig::from_env`], then adjust with the `with_*` methods.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The Redis URL (`redis://[:password@]host:port[/db]`, or `rediss://` for TLS).
    pub redis_url: String,
    /// The TLS files of a `rediss://` URL.
    pub redis_tls: RedisTls,
    /// Tags added to every metric and log (`CHOUETTE_TAGS`), as `(key, value)`.
    pub global_tags: Vec<(String, String)>,
    /// How metric names and tag keys are sanitized (`CHOUETTE_SANITIZE`).
    pub sanitize: SanitizeMode,
    /// Records held while Redis is slow or down; beyond, calls drop (and count) their record.
    pub buffer_records: usize,
    /// Bytes held while Redis is slow or down (`CHOUETTE_BUFFER_BYTES`, see
    /// [`DEFAULT_BUFFER_BYTES`] for what is counted); beyond, calls drop (and count) their record,
    /// and a record bigger than this alone is never buffered.
    pub buffer_bytes: usize,
    /// Records per `MULTI … EXEC` transaction.
    pub batch_records: usize,
    /// How often the writer thread drains the buffer when it is not woken earlier.
    pub flush_every: Duration,
    /// First retry delay after a failed write; doubled after each failure up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Connect and read/write timeout of the Redis connection.
    pub redis_timeout: Duration,
    /// How often the meta metrics (`chouette.client.sent`, `.dropped`, `.errors`) are written.
    pub meta_every: Duration,
    /// Whether and how often the app's process metrics are written (`chouette.client.process.*`).
    pub process_metrics: Option<Duration>,
    /// Raw (default) or aggregating.
    pub mode: Mode,
}

impl ClientConfig {
    /// Defaults, writing to `redis_url`.
    pub fn new(redis_url: impl Into<String>) -> Self {
        ClientConfig {
            redis_url: redis_url.into(),
            redis_tls: RedisTls::default(),
            global_tags: Vec::new(),
            sanitize: SanitizeMode::None,
            buffer_records: DEFAULT_BUFFER_RECORDS,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            batch_records: DEFAULT_BATCH_RECORDS,
            flush_every: Duration::from_millis(50),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            redis_timeout: Duration::from_secs(2),
            meta_every: Duration::from_secs(10),
            process_metrics: None,
            mode: Mode::Raw,
        }
    }

    /// From the environment, as the original client and more:
    ///
    /// - `REDIS_URL` wins (auth and `rediss://` included); else `REDIS_HOST` (default `redis`) and
    ///   `REDIS_PORT` (default `6379`). Upper-case names are read first, then lower-case ones, so a
    ///   lower-case `redis_host` (which the agent accepts) also works here (compat §7 item 39).
    /// - `CHOUETTE_TAGS`: `k:v,k2:v2` global tags.
    /// - `CHOUETTE_SANITIZE`: `none`, `datadog` or `prometheus`, any case.
    /// - `CHOUETTE_BUFFER_BYTES`: the buffer's byte bound, a whole number of bytes (default
    ///   16777216, [`DEFAULT_BUFFER_BYTES`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(env_var)
    }

    /// Like [`ClientConfig::from_env`] from any lookup (for tests): `lookup(name)` gives
    /// `(spelling, value)`.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<(String, String)>) -> Result<Self, ConfigError> {
        let url = match lookup("REDIS_URL") {
            Some((_, url)) if !url.trim().is_empty() => url.trim().to_owned(),
            _ => {
                let host =
                    lookup("REDIS_HOST").map_or(DEFAULT_REDIS_HOST.to_owned(), |(_, h)| h.trim().to_owned());
                let port = match lookup("REDIS_PORT") {
                    None => DEFAULT_REDIS_PORT,
                    Some((name, value)) => value.trim().parse::<u16>().map_err(|_| {
                        ConfigError::InvalidVar { name, value, expected: "a TCP port number (1-65535)" }
                    })?,
                };
                format!("redis://{host}:{port}/")
            }
        };
        let mut config = ClientConfig::new(url);
        config.redis_tls = redis_tls_from_vars(&lookup, &config.redis_url)?;
        if let Some((_, tags)) = lookup("CHOUETTE_TAGS") {
            config.global_tags = parse_tags(&tags);
        }
        if let Some((name, value)) = lookup("CHOUETTE_SANITIZE") {
            config.sanitize = SanitizeMode::parse(&value).ok_or(ConfigError::InvalidVar {
                name,
                value,
                expected: "none, datadog or prometheus (any case)",
            })?;
        }
        if let Some((name, value)) = lookup("CHOUETTE_BUFFER_BYTES") {
            config.buffer_bytes =
                value.trim().parse::<usize>().ok().filter(|n| *n > 0).ok_or(ConfigError::InvalidVar {
                    name,
                    value,
                    expected: "a whole number of bytes above 0",
                })?;
        }
        Ok(config)
    }

    /// Sets the TLS files of a `rediss://` URL.
    pub fn with_redis_tls(mut self, tls: RedisTls) -> Self {
        self.redis_tls = tls;
        self
    }

    /// Adds global tags (`k:v` pairs) to every metric and log.
    pub fn with_tags<K: Into<String>, V: Into<String>>(
        mut self,
        tags: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.global_tags.extend(tags.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets the sanitize mode for metric names and tag keys.
    pub fn with_sanitize(mut self, mode: SanitizeMode) -> Self {
        self.sanitize = mode;
        self
    }

    /// Sets how many records the buffer holds before calls drop theirs (at least 1).
    pub fn with_buffer_records(mut self, records: usize) -> Self {
        self.buffer_records = records.max(1);
        self
    }

    /// Sets how many bytes the buffer holds before calls drop theirs (at least 1; see
    /// [`DEFAULT_BUFFER_BYTES`] for what is counted).
    pub fn with_buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes.max(1);
        self
    }

    /// Sets how many records go in one `MULTI … EXEC` transaction (at least 1); the writer is
    /// also woken as soon as this many records are buffered.
    pub fn with_batch_records(mut self, records: usize) -> Self {
        self.batch_records = records.max(1);
        self
    }

    /// Sets how often the writer drains the buffer when it is not woken by a full batch.
    pub fn with_flush_every(mut self, every: Duration) -> Self {
        self.flush_every = every;
        self
    }

    /// Writes the app's process metrics every `every`.
    pub fn with_process_metrics(mut self, every: Duration) -> Self {
        self.process_metrics = Some(every);
        self
    }

    /// Sets how often the meta metrics are written.
    pub fn with_meta_every(mut self, every: Duration) -> Self {
        self.meta_every = every;
        self
    }

    /// Sets the retry delays after a failed write.
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// Switches to aggregating mode with `interval` buckets (whole seconds, at least 1).
    pub fn aggregating(mut self, interval: Duration) -> Self {
        self.mode = Mode::Aggregating { interval: interval.max(Duration::from_secs(1)) };
        self
    }
}

/// Reads an environment variable by its upper-case name, then its lower-case one.
pub(crate) fn env_var(name: &str) -> Option<(String, String)> {
    if let Ok(v) = std::env::var(name) {
        return Some((name.to_owned(), v));
    }
    let lower = name.to_ascii_lowercase();
    std::env::var(&lower).ok().map(|v| (lower, v))
}

/// Parses `k:v,k2:v2` (a bare `k` gives an empty value); blanks around items are trimmed.
pub fn parse_tags(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once(':') {
            Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
            None => (t.to_owned(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<(String, String)> {
        move |name| list.iter().find(|(n, _)| *n == name).map(|(n, v)| (n.to_string(), v.to_string()))
    }

    #[test]
    fn redis_url_wins_over_host_and_port() {
        let c = ClientConfig::from_vars(vars(&[("REDIS_URL", "rediss://:pw@h:1/2"), ("REDIS_HOST", "x")]))
            .unwrap();
        assert_eq!(c.redis_url, "rediss://:pw@h:1/2");
        let c = ClientConfig::from_vars(vars(&[("REDIS_HOST", "x"), ("REDIS_PORT", "7000")])).unwrap();
        assert_eq!(c.redis_url, "redis://x:7000/");
        let c = ClientConfig::from_vars(vars(&[])).unwrap();
        assert_eq!(c.redis_url, "redis://redis:6379/");
    }

    #[test]
    fn tls_files_go_with_a_rediss_url_and_a_certificate_with_its_key() {
        const URL: (&str, &str) = ("REDIS_URL", "rediss://h:6380/0");
        let c = ClientConfig::from_vars(vars(&[
            URL,
            ("REDIS_TLS_CA_FILE", "/ca.pem"),
            ("REDIS_TLS_CERT_FILE", "/c.pem"),
            ("REDIS_TLS_KEY_FILE", "/k.pem"),
        ]))
        .unwrap();
        let want = RedisTls {
            ca_file: Some("/ca.pem".into()),
            cert_file: Some("/c.pem".into()),
            key_file: Some("/k.pem".into()),
        };
        assert_eq!(c.redis_tls, want);
        assert!(ClientConfig::from_vars(vars(&[URL])).unwrap().redis_tls.is_empty());
        let err = |v: &'static [(&'static str, &'static str)]| {
            ClientConfig::from_vars(vars(v)).unwrap_err().to_string()
        };
        assert_eq!(
            err(&[URL, ("REDIS_TLS_CERT_FILE", "/c.pem")]),
            r#"REDIS_TLS_CERT_FILE="/c.pem" is invalid: expected a path, with REDIS_TLS_KEY_FILE (its key)"#
        );
        assert_eq!(
            err(&[URL, ("REDIS_TLS_KEY_FILE", "/k.pem")]),
            r#"REDIS_TLS_KEY_FILE="/k.pem" is invalid: expected a path, with REDIS_TLS_CERT_FILE (its certificate)"#
        );
        assert_eq!(
            err(&[("REDIS_HOST", "h"), ("REDIS_TLS_CA_FILE", "/ca.pem")]),
            r#"REDIS_TLS_CA_FILE="/ca.pem" is invalid: expected to be unset: TLS files go with a rediss:// REDIS_URL"#
        );
    }

    #[test]
    fn bad_port_and_sanitize_are_setup_errors() {
        let e = ClientConfig::from_vars(vars(&[("REDIS_PORT", "http")])).unwrap_err();
        assert!(e.to_string().contains("REDIS_PORT"), "{e}");
        let e = ClientConfig::from_vars(vars(&[("CHOUETTE_SANITIZE", "loud")])).unwrap_err();
        assert!(e.to_string().contains("CHOUETTE_SANITIZE"), "{e}");
        for bad in ["16MiB", "0", "-1", ""] {
            let e =
                ClientConfig::from_vars(|n| (n == "CHOUETTE_BUFFER_BYTES").then(|| (n.into(), bad.into())))
                    .unwrap_err();
            assert!(e.to_string().contains("CHOUETTE_BUFFER_BYTES"), "{e}");
        }
    }

    #[test]
    fn the_byte_bound_has_a_default_and_reads_its_variable() {
        assert_eq!(ClientConfig::from_vars(vars(&[])).unwrap().buffer_bytes, 16 * 1024 * 1024);
        let c = ClientConfig::from_vars(vars(&[("CHOUETTE_BUFFER_BYTES", " 1048576 ")])).unwrap();
        assert_eq!(c.buffer_bytes, 1 << 20);
        assert_eq!(ClientConfig::new("redis://x/").with_buffer_bytes(0).buffer_bytes, 1);
    }

    #[test]
    fn tags_parse_as_key_value_pairs() {
        assert_eq!(
            parse_tags(" env:prod, region:eu:west ,bare,,"),
            vec![
                ("env".into(), "prod".into()),
                ("region".into(), "eu:west".into()),
                ("bare".into(), String::new())
            ]
        );
    }
}
