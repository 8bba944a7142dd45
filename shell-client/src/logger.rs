//! A `log::Log` that ships records to Chouette, like the original `ChouetteLogHandler`.

use chouette_core::wire::log::{format_log_date, parse_log_date};
use chouette_core::wire::write::Writer;
use chouette_core::Timestamp;
use log::kv::{Key, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::buffer::Kind;
use crate::render::{now_secs, render};
use crate::Client;

/// Fields the log record always has; extras never replace them.
const BASE_FIELDS: [&str; 6] = ["date", "ddsource", "ddtags", "level", "message", "service"];

/// Why the logger could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogSetupError {
    /// `CHOUETTE_LOG_LEVEL` is not a level name.
    #[error(
        "{name}={value:?} is not a log level: expected NOTSET, TRACE, DEBUG, INFO, WARNING (or WARN), \
         ERROR or CRITICAL, any case"
    )]
    InvalidLevel {
        /// The variable, as spelled in the environment.
        name: String,
        /// Its value.
        value: String,
    },
    /// Another logger is already installed.
    #[error("a logger is already installed: {0}")]
    AlreadySet(#[from] log::SetLoggerError),
}

/// Parses a Python level name, any case: `NOTSET` and `TRACE` let everything through,
/// `CRITICAL` (and `FATAL`) is `ERROR` (the `log` crate's highest).
pub fn parse_level(text: &str) -> Option<LevelFilter> {
    Some(match text.trim().to_ascii_uppercase().as_str() {
        "NOTSET" | "TRACE" => LevelFilter::Trace,
        "DEBUG" => LevelFilter::Debug,
        "INFO" => LevelFilter::Info,
        "WARNING" | "WARN" => LevelFilter::Warn,
        "ERROR" | "CRITICAL" | "FATAL" => LevelFilter::Error,
        _ => return None,
    })
}

/// Python's `levelname` for a `log` level.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARNING",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

/// Ships `log` records to `chouette:logs:wrapped.*` in the original handler's shape:
///
/// ```text
/// {"date": "2026-11-22T01:25:26.038424+00:00", "ddsource": "svc", "ddtags": ["k:v"],
///  "level": "INFO", "message": {"msg": "formatted text"}, "service": "svc", "extra": …}
/// ```
///
/// Key-values (`log` feature `kv`): a `tags` key holding `k:v,k2:v2`, and any `tag_k = v` (or
/// `tag.k`, through `Record::builder`) key giving `k:v`, become `ddtags` (after the client's global tags); every other key becomes a
/// top-level field (numbers and booleans as JSON numbers and booleans, the rest as strings),
/// never replacing a base field. Records logged by this crate or on its writer thread are not
/// shipped (no feedback loop).
#[derive(Debug)]
pub struct ChouetteLogger {
    client: Client,
    service: String,
    level: LevelFilter,
}

impl ChouetteLogger {
    /// A logger for `service_name` (both `ddsource` and `service`), level from
    /// `CHOUETTE_LOG_LEVEL` (default `NOTSET`: everything).
    pub fn new(client: Client, service_name: impl Into<String>) -> Result<Self, LogSetupError> {
        let level = match crate::config::env_var("CHOUETTE_LOG_LEVEL") {
            None => LevelFilter::Trace,
            Some((name, value)) => parse_level(&value).ok_or(LogSetupError::InvalidLevel { name, value })?,
        };
        Ok(ChouetteLogger { client, service: service_name.into(), level })
    }

    /// Overrides the level.
    pub fn with_level(mut self, level: LevelFilter) -> Self {
        self.level = level;
        self
    }

    /// The level records must reach to be shipped.
    pub fn level(&self) -> LevelFilter {
        self.level
    }

    /// Installs this logger as the `log` crate's logger and sets its max level.
    pub fn init(self) -> Result<(), LogSetupError> {
        let level = self.level;
        log::set_boxed_logger(Box::new(self))?;
        log::set_max_level(level);
        Ok(())
    }

    /// Renders `record` as the JSON the agent reads, stamped `date`.
    pub fn render(&self, record: &Record<'_>, date: Timestamp) -> Option<(f64, Vec<u8>)> {
        let mut kv = Fields::default();
        let _ = record.key_values().visit(&mut kv);
        let mut date_buf = [0u8; 32];
        let date_text = format_log_date(date, &mut date_buf);
        let score = parse_log_date(date_text).map_or(date.as_secs_f64(), |t| t.as_secs_f64());
        let message = record.args().to_string();
        let global = &self.client.shared().config.global_tags;
        let json = render(
            |w| {
                w.str("{\"date\": ");
                w.json_str(date_text);
                w.str(", \"ddsource\": ");
                w.json_str(&self.service);
                w.str(", \"ddtags\": [");
                let mut first = true;
                let all = global.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                let all = all.chain(kv.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                for (k, v) in all {
                    if !first {
                        w.str(", ");
                    }
                    first = false;
                    w.byte(b'"');
                    w.json_str_body(k);
                    if !v.is_empty() {
                        w.byte(b':');
                        w.json_str_body(v);
                    }
                    w.byte(b'"');
                }
                w.str("], \"level\": ");
                w.json_str(level_name(record.level()));
                w.str(", \"message\": {\"msg\": ");
                w.json_str(&message);
                w.str("}, \"service\": ");
                w.json_str(&self.service);
                for (k, v) in &kv.extras {
                    w.str(", ");
                    w.json_str(k);
                    w.str(": ");
                    write_extra(w, v);
                }
                w.byte(b'}');
            },
            <[u8]>::to_vec,
        )?;
        Some((score, json))
    }
}

#[derive(Debug)]
enum Extra {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
}

fn write_extra(w: &mut Writer<'_>, v: &Extra) {
    match v {
        Extra::Int(i) => w.i64(*i),
        Extra::UInt(u) => w.u64(*u),
        Extra::Float(f) if f.is_finite() => w.python_float(*f),
        Extra::Float(f) => w.json_str(&f.to_string()),
        Extra::Bool(b) => w.str(if *b { "true" } else { "false" }),
        Extra::Str(s) => w.json_str(s),
    }
}

#[derive(Default)]
struct Fields {
    tags: Vec<(String, String)>,
    extras: Vec<(String, Extra)>,
}

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let key = key.as_str();
        if key == "tags" {
            self.tags.extend(crate::config::parse_tags(&value.to_string()));
        } else if let Some(tag) = key.strip_prefix("tag.").or_else(|| key.strip_prefix("tag_")) {
            self.tags.push((tag.to_owned(), value.to_string()));
        } else if !BASE_FIELDS.contains(&key) && !self.extras.iter().any(|(k, _)| k == key) {
            let extra = if let Some(b) = value.to_bool() {
                Extra::Bool(b)
            } else if let Some(i) = value.to_i64() {
                Extra::Int(i)
            } else if let Some(u) = value.to_u64() {
                Extra::UInt(u)
            } else if let Some(f) = value.to_f64() {
                Extra::Float(f)
            } else {
                Extra::Str(value.to_string())
            };
            self.extras.push((key.to_owned(), extra));
        }
        Ok(())
    }
}

/// Whether a record comes from the client itself (its modules or its writer thread).
fn is_own(target: &str) -> bool {
    target.starts_with("chouette_client")
        || std::thread::current().name().is_some_and(|n| n == crate::worker::THREAD_NAME)
}

impl Log for ChouetteLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level && !is_own(metadata.target())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match self.render(record, Timestamp(now_secs())) {
            Some((score, json)) => self.client.shared().push(Kind::Log, score, &json),
            None => self.client.shared().stats.add_dropped(1),
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_in_any_case() {
        assert_eq!(parse_level("warning"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("Warn"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("NOTSET"), Some(LevelFilter::Trace));
        assert_eq!(parse_level("critical"), Some(LevelFilter::Error));
        assert_eq!(parse_level("loud"), None);
    }

    #[test]
    fn records_render_like_the_original_handler_but_formatted() {
        let client =
            Client::inert(crate::ClientConfig::new("redis://127.0.0.1:1/").with_tags([("env", "test")]));
        let logger = ChouetteLogger { client, service: "svc".into(), level: LevelFilter::Trace };
        let kvs = [("tags", "a:b,c:d"), ("tag.e", "f"), ("level", "nope"), ("user", "ann")];
        let (score, json) = logger
            .render(
                &Record::builder()
                    .args(format_args!("hello {}", "world"))
                    .level(Level::Warn)
                    .target("app")
                    .key_values(&kvs)
                    .build(),
                Timestamp(1356048000.0),
            )
            .unwrap();
        assert_eq!(score, 1356048000.0);
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"date": "2012-12-21T00:00:00.000000+00:00", "ddsource": "svc", "ddtags": ["env:test", "a:b", "c:d", "e:f"], "level": "WARNING", "message": {"msg": "hello world"}, "service": "svc", "user": "ann"}"#
        );
        let kvs: [(&str, log::kv::Value<'_>); 3] =
            [("code", 89i64.into()), ("ok", true.into()), ("ratio", 0.5f64.into())];
        let (_, json) = logger
            .render(
                &Record::builder().args(format_args!("x")).level(Level::Info).key_values(&kvs).build(),
                Timestamp(1.5),
            )
            .unwrap();
        let text = String::from_utf8(json).unwrap();
        assert!(text.ends_with(r#""service": "svc", "code": 89, "ok": true, "ratio": 0.5}"#), "{text}");
    }

    #[test]
    fn own_records_are_not_shipped() {
        let client = Client::inert(crate::ClientConfig::new("redis://127.0.0.1:1/"));
        let logger = ChouetteLogger { client, service: "svc".into(), level: LevelFilter::Trace };
        let meta = Metadata::builder().level(Level::Error).target("chouette_client::worker").build();
        assert!(!logger.enabled(&meta));
        let meta = Metadata::builder().level(Level::Error).target("app").build();
        assert!(logger.enabled(&meta));
        let on_writer = std::thread::Builder::new()
            .name(crate::worker::THREAD_NAME.into())
            .spawn(move || logger.enabled(&Metadata::builder().level(Level::Error).target("redis").build()))
            .unwrap()
            .join()
            .unwrap();
        assert!(!on_writer);
    }
}
