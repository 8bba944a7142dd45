//! `dramatiq` (compat §6.5): queue sizes of a Dramatiq Redis broker.
//!
//! `SCAN MATCH dramatiq:*.msgs COUNT 500` (never the original's blocking `KEYS`), then `HLEN`
//! per key. The Redis is `DRAMATIQ_REDIS_URL`, else the agent's own (`REDIS_URL` or
//! `REDIS_HOST`/`REDIS_PORT`, as the original). Connect/read/write timeouts of 2 s.
//!
//! | metric | value | tags |
//! |---|---|---|
//! | `Chouette.dramatiq.queue_size` | `HLEN dramatiq:<queue>.msgs` (0 is sent) | `queue:<queue>` (`pizza`, `pizza.DQ`, `pizza.XQ`) |

use std::time::Duration;

use super::{CollectError, Collector, PluginConfigError, PluginVars, Point};
use crate::config::vars;
use crate::store::redis::{with_tls_files, TlsFiles};

/// Connect, read and write timeout.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The `dramatiq` collector's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// `DRAMATIQ_REDIS_URL`, else the agent's Redis store.
    pub url: String,
    /// The store's TLS files (`REDIS_TLS_*`) when `url` is the store's; else none.
    pub tls: TlsFiles,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &crate::config::redact_url(&self.url))
            .field("tls", &self.tls)
            .finish()
    }
}

impl Settings {
    /// From `DRAMATIQ_REDIS_URL` (through its table entry), else `store`, the agent's Redis URL
    /// and TLS files.
    pub fn from_vars(
        vars: &PluginVars,
        store: Option<(&str, &TlsFiles)>,
    ) -> Result<Settings, PluginConfigError> {
        match (vars::DRAMATIQ_REDIS_URL.text(vars)?, store) {
            (Some(url), _) => Ok(Settings { url, tls: TlsFiles::default() }),
            (None, Some((url, tls))) => Ok(Settings { url: url.to_owned(), tls: tls.clone() }),
            (None, None) => Err(PluginConfigError::new(
                vars::DRAMATIQ_REDIS_URL.name,
                "",
                "dramatiq needs a Redis: set REDIS_URL/REDIS_HOST (the agent's store) or DRAMATIQ_REDIS_URL",
            )),
        }
    }
}

/// The `dramatiq` collector.
pub struct Dramatiq {
    client: redis::Client,
    connection: Option<redis::Connection>,
}

impl Dramatiq {
    /// A collector for the Redis at `url` (connected lazily, reconnected after errors).
    pub fn new(url: &str) -> Result<Dramatiq, PluginConfigError> {
        Self::with_tls(url, &TlsFiles::default())
    }

    /// [`Dramatiq::new`] with TLS files (read now) for a `rediss://` URL.
    pub fn with_tls(url: &str, tls: &TlsFiles) -> Result<Dramatiq, PluginConfigError> {
        let refuse = |expected: String| {
            PluginConfigError::new("DRAMATIQ_REDIS_URL", &crate::config::redact_url(url), expected)
        };
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| refuse(format!("a Redis URL ({e})")))?;
        let client = if tls.is_empty() {
            redis::Client::open(info).map_err(|e| refuse(format!("a Redis URL ({e})")))?
        } else {
            with_tls_files(info, tls).map_err(|e| refuse(format!("its TLS files ({e})")))?
        };
        Ok(Dramatiq { client, connection: None })
    }

    fn sizes(connection: &mut redis::Connection) -> redis::RedisResult<Vec<(String, u64)>> {
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("dramatiq:*.msgs")
                .arg("COUNT")
                .arg(500)
                .query(connection)?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup(); // SCAN may return a key twice
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let size: u64 = redis::cmd("HLEN").arg(&key).query(connection)?;
            out.push((String::from_utf8_lossy(&key).into_owned(), size));
        }
        Ok(out)
    }
}

/// `dramatiq:pizza.msgs` → `pizza`.
pub fn queue_name(key: &str) -> &str {
    let name = key.strip_prefix("dramatiq:").unwrap_or(key);
    name.strip_suffix(".msgs").unwrap_or(name)
}

impl Collector for Dramatiq {
    fn name(&self) -> &str {
        "dramatiq"
    }

    fn collect(&mut self, _now: f64) -> Result<Vec<Point>, CollectError> {
        let context = || format!("dramatiq redis {}", self.client.get_connection_info().addr);
        if self.connection.is_none() {
            let connection = self
                .client
                .get_connection_with_timeout(TIMEOUT)
                .map_err(|e| CollectError::remote(context(), e))?;
            connection.set_read_timeout(Some(TIMEOUT)).map_err(|e| CollectError::remote(context(), e))?;
            connection.set_write_timeout(Some(TIMEOUT)).map_err(|e| CollectError::remote(context(), e))?;
            self.connection = Some(connection);
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(CollectError::Unavailable("no Redis connection".into()));
        };
        match Dramatiq::sizes(connection) {
            Ok(sizes) => Ok(sizes
                .into_iter()
                .map(|(key, size)| {
                    Point::new("Chouette.dramatiq.queue_size", size as f64).tag("queue", queue_name(&key))
                })
                .collect()),
            Err(e) => {
                self.connection = None; // reconnect next time
                Err(CollectError::remote(context(), e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        assert_eq!(queue_name("dramatiq:pizza.msgs"), "pizza");
        assert_eq!(queue_name("dramatiq:pizza.DQ.msgs"), "pizza.DQ");
        assert_eq!(queue_name("dramatiq:pizza.XQ.msgs"), "pizza.XQ");
    }

    #[test]
    fn an_unreachable_redis_is_an_error() {
        let mut d = Dramatiq::new("redis://127.0.0.1:1/").expect("url");
        assert!(d.collect(0.0).is_err());
        assert!(Dramatiq::new("http://nope").is_err());
    }
}
