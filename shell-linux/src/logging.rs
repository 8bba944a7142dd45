//! The agent's own log lines: one JSON object per line on stdout, in the original's shape
//! (compat §4.3), plus the record's target:
//!
//! ```text
//! {"asctime": "2026-11-22T01:25:37+0000", "levelname": "INFO", "message": "Starting Chouette.", "target": "chouette_agent"}
//! ```
//!
//! Times are UTC (`%Y-%m-%dT%H:%M:%S%z`). Level names are Python's (`WARNING`, not `WARN`).
//! As defence in depth, a secret registered with [`set_secret`] or [`add_secret`] (the API key,
//! the credentials of the configured URLs) is replaced by `***` wherever it appears in a message.

use std::io::Write;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Secret;

/// The secrets to redact from every line (the API key, URL credentials), longest first.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// What replaces a secret in a log line.
pub const REDACTED: &str = "***";

/// The logger: JSON lines on stdout.
#[derive(Debug)]
pub struct JsonLogger;

static LOGGER: JsonLogger = JsonLogger;

/// Installs the JSON logger for the whole process at `level` (the configured `LOG_LEVEL`).
///
/// Fails if a logger is already installed (call once, at startup).
pub fn init(level: log::LevelFilter) -> Result<(), log::SetLoggerError> {
    log::set_logger(&LOGGER)?;
    log::set_max_level(level);
    Ok(())
}

/// Registers the secret to redact from every later log line. Empty secrets are ignored.
pub fn set_secret(secret: &Secret) {
    add_secret(secret.expose());
}

/// Registers one more string to redact from every later log line (empty ones are ignored). One
/// that ends in `@` (a URL's `user:password@`) is replaced by `***@`, keeping the URL readable.
pub fn add_secret(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut guard = SECRETS.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !guard.iter().any(|s| s == secret) {
        guard.push(secret.to_owned());
        // Longest first, so that a secret containing another is replaced whole.
        guard.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Replaces every occurrence of the registered secrets in `text` by [`REDACTED`].
pub fn redact(text: &str) -> String {
    let guard = SECRETS.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = text.to_owned();
    for secret in guard.iter() {
        if out.contains(secret.as_str()) {
            let with = if secret.ends_with('@') { "***@" } else { REDACTED };
            out = out.replace(secret.as_str(), with);
        }
    }
    out
}

/// Python's name for a level.
pub const fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARNING",
        log::Level::Info => "INFO",
        log::Level::Debug => "DEBUG",
        log::Level::Trace => "TRACE",
    }
}

/// Formats Unix seconds as `%Y-%m-%dT%H:%M:%S+0000` (UTC), as the original's `asctime`.
pub fn format_asctime(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+0000", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends `text` to `out` as a JSON string (quotes included), escaping `"`, `\` and every
/// control character.
pub fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One log line (with its trailing newline), the message redacted.
pub fn format_line(unix_seconds: i64, level: log::Level, target: &str, message: &str) -> String {
    let mut line = String::with_capacity(96 + message.len());
    line.push_str("{\"asctime\": ");
    push_json_string(&mut line, &format_asctime(unix_seconds));
    line.push_str(", \"levelname\": ");
    push_json_string(&mut line, level_name(level));
    line.push_str(", \"message\": ");
    push_json_string(&mut line, &redact(message));
    line.push_str(", \"target\": ");
    push_json_string(&mut line, target);
    line.push_str("}\n");
    line
}

fn now_unix_seconds() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

impl log::Log for JsonLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let line = format_line(now_unix_seconds(), record.level(), record.target(), &message);
        // One locked write per line, so lines from several threads never interleave. A closed
        // stdout is not worth crashing for.
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(line.as_bytes());
        let _ = stdout.flush();
    }

    fn flush(&self) {
        let _ = std::io::stdout().lock().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asctime_is_utc_in_the_original_format() {
        assert_eq!(format_asctime(0), "1970-01-01T00:00:00+0000");
        // 2026-11-22T01:25:37Z, the compat reference's example.
        assert_eq!(format_asctime(1_795_310_737), "2026-11-22T01:25:37+0000");
        assert_eq!(format_asctime(951_782_400), "2000-02-29T00:00:00+0000");
        assert_eq!(format_asctime(-1), "1969-12-31T23:59:59+0000");
    }

    #[test]
    fn line_has_the_original_shape() {
        let line = format_line(1_795_310_737, log::Level::Info, "chouette", "Starting Chouette.");
        assert_eq!(
            line,
            "{\"asctime\": \"2026-11-22T01:25:37+0000\", \"levelname\": \"INFO\", \
             \"message\": \"Starting Chouette.\", \"target\": \"chouette\"}\n"
        );
        let warn = format_line(0, log::Level::Warn, "t", "m");
        assert!(warn.contains("\"levelname\": \"WARNING\""));
    }

    #[test]
    fn message_is_escaped_json_on_one_line() {
        let nasty = "quote \" backslash \\ newline \n cr \r tab \t nul \u{0} bell \u{7} del \u{7f} é ✓";
        let line = format_line(0, log::Level::Error, "x", nasty);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with("}\n"));
        assert!(line.contains(
            r#"quote \" backslash \\ newline \n cr \r tab \t nul \u0000 bell \u0007 del \u007f é ✓"#
        ));
        // It parses back as JSON with the core's scanner, message intact.
        let mut scanner = chouette_core::wire::json::Scanner::from_str(line.trim_end());
        assert_eq!(scanner.value().unwrap(), chouette_core::wire::json::Token::ObjectStart);
        let mut message = None;
        while let Some(key) = scanner.next_key().unwrap() {
            let chouette_core::wire::json::Token::Str(value) = scanner.value().unwrap() else {
                panic!("not a string");
            };
            let mut buf = vec![0; value.decoded_len_bound()];
            let text = value.decode(&mut buf).unwrap().to_owned();
            if key.as_raw() == "message" {
                message = Some(text);
            }
        }
        scanner.finish().unwrap();
        assert_eq!(message.as_deref(), Some(nasty));
    }

    #[test]
    fn secret_is_redacted_from_messages() {
        set_secret(&Secret::new("s3cr3t-key-1234".to_owned()));
        let line = format_line(
            0,
            log::Level::Error,
            "x",
            "POST https://h/v1/series?api_key=s3cr3t-key-1234 failed (s3cr3t-key-1234)",
        );
        assert!(!line.contains("s3cr3t-key-1234"), "{line}");
        assert!(line.contains("api_key=*** failed (***)"));
        // An empty secret is ignored (it would otherwise match everywhere).
        set_secret(&Secret::new(String::new()));
        assert_eq!(redact("nothing to hide here"), "nothing to hide here");
    }

    #[test]
    fn url_credentials_are_redacted_keeping_the_url_readable() {
        for secret in crate::config::url_secrets("http://bob:Lg7/Hq?Rz#Wm@Kd:Np@vm:8428/datadog") {
            add_secret(&secret);
        }
        let line = redact("url=http://bob:Lg7/Hq?Rz#Wm@Kd:Np@vm:8428/datadog/v1/series: refused");
        assert_eq!(line, "url=http://***@vm:8428/datadog/v1/series: refused");
        // The password alone, and as a URL library re-encodes it.
        assert_eq!(redact("auth Lg7/Hq?Rz#Wm@Kd:Np failed"), "auth *** failed");
        assert_eq!(redact("http://bob:Lg7%2FHq%3FRz%23Wm%40Kd%3ANp@vm/"), "http://bob:***@vm/");
    }

    #[test]
    fn level_filter_is_respected() {
        // The logger defers to log::max_level; check `enabled` against it without installing.
        log::set_max_level(log::LevelFilter::Warn);
        let logger = JsonLogger;
        use log::Log;
        let meta = |level| log::Metadata::builder().level(level).target("t").build();
        assert!(logger.enabled(&meta(log::Level::Error)));
        assert!(logger.enabled(&meta(log::Level::Warn)));
        assert!(!logger.enabled(&meta(log::Level::Info)));
        log::set_max_level(log::LevelFilter::Info);
        assert!(logger.enabled(&meta(log::Level::Info)));
    }
}
