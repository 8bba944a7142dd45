//! The serial link's gateway plumbing: microcontrollers that aggregate with `chouette-core` and
//! forward closed intervals over a serial line (issue 11; protocol in `docs/link.md`).
//!
//! # Map
//!
//! - [`Settings`] (this file): `SERIAL_DEVICES` and `SERIAL_BAUD`, parsed into [`Endpoint`]s and
//!   a checked baud rate ([`port::SUPPORTED_BAUDS`]). Empty = the serial link is off.
//! - [`port`]: the bytes. [`port::Port`] is one open tty (raw mode via termios: 8N1, no echo,
//!   no CR/LF translation, no flow control) or one Unix socket (`unix:PATH`, an emulator's
//!   UART); a read tells data, timeout and EOF apart. [`port::Reconnecting`] reopens a lost
//!   device with a backoff (100 ms doubling to 5 s) and counts connects and disconnects.
//! - The atomic step: [`crate::source::Sink::commit_link`] writes a frame's points to every
//!   enabled outbox and the device's link state (boot id, last committed sequence: bytes the
//!   core defines, opaque to the store) in one store transaction
//!   ([`crate::store::Store::commit_link`]); [`crate::source::Sink::link_state`] reads it back
//!   when the device's link starts. Acknowledge a frame only after that call returned `Ok`.
//! - [`DeviceStats`] (this file): one device's counters, as `chouette status` fields
//!   (`serial.<device>.<field>`) and self-metrics (`chouette.serial.<field>`, tag `device:`).
//!
//! - [`session`]: one device's link, gateway side, sans-IO: frames in, hello, time requests and
//!   acks out, points and link state to commit.
//! - [`source`]: the [`Source`](crate::source::Source): one thread per device runs its session
//!   over a [`port::Reconnecting`]; the run loop's turn commits ([`crate::source::Sink::commit_link`])
//!   and only then the thread acknowledges.

pub mod port;
pub mod session;
pub mod source;

use std::fmt;
use std::path::PathBuf;

use chouette_core::wire::raw::Number;
use chouette_core::MetricType;

use crate::config::vars::{self, VarError};
use crate::pipeline::{raw_record, IdGenerator};
use crate::store::NewRecord;

/// One `SERIAL_DEVICES` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// A tty (`/dev/ttyUSB0`, `/dev/ttyACM0`, `/dev/pts/3`), put in raw mode.
    Tty(PathBuf),
    /// `unix:PATH`: a Unix stream socket to connect to (QEMU's `-serial unix:PATH,server=on`).
    Unix(PathBuf),
}

impl Endpoint {
    /// Parses one entry: `unix:` followed by a path, or an absolute tty path.
    pub fn parse(entry: &str) -> Result<Endpoint, String> {
        if let Some(path) = entry.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("{entry:?}: unix: needs a socket path"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if entry.is_empty() {
            return Err("an entry is empty".into());
        }
        if !entry.starts_with('/') {
            return Err(format!("{entry:?} is neither an absolute tty path nor unix:PATH"));
        }
        Ok(Endpoint::Tty(PathBuf::from(entry)))
    }

    /// The device's name in logs, status fields and the `device:` tag: the entry as configured.
    pub fn name(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tty(path) => write!(f, "{}", path.display()),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The serial link's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `SERIAL_DEVICES`: the devices to serve (empty: the serial link is off).
    pub devices: Vec<Endpoint>,
    /// `SERIAL_BAUD`: the tty rate (ignored for `unix:`), one of [`port::SUPPORTED_BAUDS`].
    pub baud: u32,
}

impl Settings {
    /// Reads `SERIAL_DEVICES` and `SERIAL_BAUD`.
    pub fn from_vars(src: &dyn vars::Source) -> Result<Settings, VarError> {
        let entries = vars::SERIAL_DEVICES.list(src)?;
        let mut devices = Vec::with_capacity(entries.len());
        for entry in &entries {
            let endpoint = Endpoint::parse(entry).map_err(|detail| list_error(src, &detail))?;
            if devices.contains(&endpoint) {
                return Err(list_error(src, &format!("{entry:?} is listed twice")));
            }
            devices.push(endpoint);
        }
        let text = vars::SERIAL_BAUD.one_of(src)?;
        // Every value the table allows is a supported rate (a test checks it).
        let baud = text.parse::<u32>().map_err(|_| vars::SERIAL_BAUD.missing(""))?;
        Ok(Settings { devices, baud })
    }
}

fn list_error(src: &dyn vars::Source, detail: &str) -> VarError {
    match vars::SERIAL_DEVICES.read(src) {
        Some(raw) => vars::SERIAL_DEVICES.error(raw, detail),
        None => vars::SERIAL_DEVICES.missing(detail),
    }
}

/// One device's counters since the agent started, for `chouette status` and self-metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceStats {
    /// Successful opens of the port.
    pub connects: u64,
    /// Opens lost (EOF, I/O error).
    pub disconnects: u64,
    /// Bytes read from the device.
    pub bytes_in: u64,
    /// Frames that passed the framer (COBS, CRC) and the protocol.
    pub frames_accepted: u64,
    /// Frames refused for a CRC mismatch.
    pub crc_failures: u64,
    /// Other framer refusals (bad COBS, too long, bad header): the framer resynchronised.
    pub resyncs: u64,
    /// Frames already committed (a retransmission), acknowledged again and dropped.
    pub duplicates: u64,
    /// Sequence numbers skipped (frames the device no longer has).
    pub gaps: u64,
    /// Intervals stamped with receipt time because no time exchange was possible.
    pub time_fallbacks: u64,
    /// Intervals the device merged into older ones while its ring was full (reported by it).
    pub merged_intervals: u64,
    /// Intervals the device could not keep at all (reported by it).
    pub dropped_intervals: u64,
    /// Points committed to the outboxes.
    pub points: u64,
    /// Resyncs asked of the device (a session or a context this gateway does not know).
    pub resync_requests: u64,
    /// Frames whose payload did not parse (not acknowledged: the device is asked to resync).
    pub malformed: u64,
    /// Samples the device's aggregator refused (reported by it).
    pub refused_samples: u64,
    /// Histograms the device sent without quantiles (their sketch did not fit a frame).
    pub coarsened: u64,
    /// The device clock's offset from wall time, from the last time exchange, if any.
    pub clock_offset_ms: Option<i64>,
    /// The last open, read or protocol error.
    pub last_error: Option<String>,
}

/// The counters of [`DeviceStats`], by field name, in display order.
const COUNTERS: [&str; 16] = [
    "connects",
    "disconnects",
    "bytes_in",
    "frames_accepted",
    "crc_failures",
    "resyncs",
    "duplicates",
    "gaps",
    "time_fallbacks",
    "merged_intervals",
    "dropped_intervals",
    "points",
    "resync_requests",
    "malformed",
    "refused_samples",
    "coarsened",
];

/// The self-metrics' prefix: `chouette.serial.<field>`.
pub const METRIC_PREFIX: &str = "chouette.serial.";

impl DeviceStats {
    fn counters(&self) -> [u64; COUNTERS.len()] {
        [
            self.connects,
            self.disconnects,
            self.bytes_in,
            self.frames_accepted,
            self.crc_failures,
            self.resyncs,
            self.duplicates,
            self.gaps,
            self.time_fallbacks,
            self.merged_intervals,
            self.dropped_intervals,
            self.points,
            self.resync_requests,
            self.malformed,
            self.refused_samples,
            self.coarsened,
        ]
    }

    /// The `chouette status` fields of `device`: `serial.<device>.<field>` for every counter,
    /// `clock_offset_ms` (`none yet` before a time exchange) and `last_error` (`none`).
    pub fn status_fields(&self, device: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = COUNTERS
            .iter()
            .zip(self.counters())
            .map(|(field, value)| (format!("serial.{device}.{field}"), value.to_string()))
            .collect();
        let offset = self.clock_offset_ms.map_or_else(|| "none yet".to_string(), |ms| ms.to_string());
        out.push((format!("serial.{device}.clock_offset_ms"), offset));
        let error = self.last_error.clone().unwrap_or_else(|| "none".to_string());
        out.push((format!("serial.{device}.last_error"), error));
        out
    }

    /// Self-metrics (raw records, stamped `now`) for `device`: each counter's increase since
    /// `previous` as a count `chouette.serial.<field>` (none when it did not grow), and the clock
    /// offset as a gauge `chouette.serial.clock_offset_ms`, all tagged `device:<device>`.
    pub fn self_metrics(
        &self,
        previous: &DeviceStats,
        device: &str,
        now: f64,
        ids: &mut IdGenerator,
    ) -> Vec<NewRecord> {
        let tags = [("device", device)];
        let mut out = Vec::new();
        let mut push = |field: &str, kind: MetricType, value: Number| {
            if let Some(value) = raw_record(&format!("{METRIC_PREFIX}{field}"), kind, value, now, &tags) {
                out.push(NewRecord { id: ids.next_id().to_vec(), score: now, value });
            }
        };
        for ((field, value), before) in COUNTERS.iter().zip(self.counters()).zip(previous.counters()) {
            let delta = value.saturating_sub(before);
            if delta > 0 {
                push(field, MetricType::Count, Number::from(delta));
            }
        }
        if let Some(ms) = self.clock_offset_ms {
            push("clock_offset_ms", MetricType::Gauge, Number::from(ms));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn settings_default_to_off_at_115200() {
        let s = Settings::from_vars(&env(&[])).unwrap();
        assert_eq!(s, Settings { devices: vec![], baud: 115_200 });
    }

    #[test]
    fn settings_parse_ttys_and_sockets() {
        let s = Settings::from_vars(&env(&[
            ("SERIAL_DEVICES", r#"["/dev/ttyUSB0", "unix:/run/qemu/uart0.sock", "/dev/pts/7"]"#),
            ("SERIAL_BAUD", "921600"),
        ]))
        .unwrap();
        assert_eq!(
            s.devices,
            [
                Endpoint::Tty("/dev/ttyUSB0".into()),
                Endpoint::Unix("/run/qemu/uart0.sock".into()),
                Endpoint::Tty("/dev/pts/7".into()),
            ]
        );
        assert_eq!(s.baud, 921_600);
        assert_eq!(s.devices[1].name(), "unix:/run/qemu/uart0.sock");
        assert_eq!(s.devices[0].name(), "/dev/ttyUSB0");
    }

    #[test]
    fn settings_errors_name_the_variable_and_the_problem() {
        let err = |pairs: &[(&str, &str)]| Settings::from_vars(&env(pairs)).unwrap_err().to_string();
        let e = err(&[("SERIAL_DEVICES", "/dev/ttyUSB0")]);
        assert!(e.contains("SERIAL_DEVICES") && e.contains("JSON list"), "{e}");
        let e = err(&[("SERIAL_DEVICES", r#"["ttyUSB0"]"#)]);
        assert!(e.contains(r#""ttyUSB0" is neither an absolute tty path nor unix:PATH"#), "{e}");
        let e = err(&[("SERIAL_DEVICES", r#"["unix:"]"#)]);
        assert!(e.contains("unix: needs a socket path"), "{e}");
        let e = err(&[("SERIAL_DEVICES", r#"["/dev/ttyS0", "/dev/ttyS0"]"#)]);
        assert!(e.contains("listed twice"), "{e}");
        let e = err(&[("SERIAL_DEVICES", r#"[1]"#)]);
        assert!(e.contains("SERIAL_DEVICES"), "{e}");
        let e = err(&[("SERIAL_BAUD", "115201")]);
        assert!(e.contains("SERIAL_BAUD") && e.contains("115201") && e.contains("115200"), "{e}");
        let e = err(&[("SERIAL_BAUD", "fast")]);
        assert!(e.contains("SERIAL_BAUD"), "{e}");
    }

    #[test]
    fn the_baud_table_is_the_supported_rates() {
        let vars::Kind::OneOf(rates) = vars::SERIAL_BAUD.kind else { panic!("SERIAL_BAUD is OneOf") };
        let rates: Vec<u32> = rates.iter().map(|r| r.parse().unwrap()).collect();
        assert_eq!(rates, port::SUPPORTED_BAUDS);
    }

    fn stats() -> DeviceStats {
        DeviceStats {
            connects: 2,
            disconnects: 1,
            bytes_in: 4096,
            frames_accepted: 40,
            crc_failures: 3,
            resyncs: 4,
            duplicates: 5,
            gaps: 6,
            time_fallbacks: 7,
            merged_intervals: 8,
            dropped_intervals: 9,
            points: 10,
            resync_requests: 11,
            malformed: 12,
            refused_samples: 13,
            coarsened: 14,
            clock_offset_ms: Some(-250),
            last_error: Some("EIO".into()),
        }
    }

    #[test]
    fn status_fields_are_named_per_device() {
        let fields = stats().status_fields("unix:/tmp/uart");
        let got: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("serial.unix:/tmp/uart.connects", "2"),
                ("serial.unix:/tmp/uart.disconnects", "1"),
                ("serial.unix:/tmp/uart.bytes_in", "4096"),
                ("serial.unix:/tmp/uart.frames_accepted", "40"),
                ("serial.unix:/tmp/uart.crc_failures", "3"),
                ("serial.unix:/tmp/uart.resyncs", "4"),
                ("serial.unix:/tmp/uart.duplicates", "5"),
                ("serial.unix:/tmp/uart.gaps", "6"),
                ("serial.unix:/tmp/uart.time_fallbacks", "7"),
                ("serial.unix:/tmp/uart.merged_intervals", "8"),
                ("serial.unix:/tmp/uart.dropped_intervals", "9"),
                ("serial.unix:/tmp/uart.points", "10"),
                ("serial.unix:/tmp/uart.resync_requests", "11"),
                ("serial.unix:/tmp/uart.malformed", "12"),
                ("serial.unix:/tmp/uart.refused_samples", "13"),
                ("serial.unix:/tmp/uart.coarsened", "14"),
                ("serial.unix:/tmp/uart.clock_offset_ms", "-250"),
                ("serial.unix:/tmp/uart.last_error", "EIO"),
            ]
        );
        let fresh = DeviceStats::default().status_fields("/dev/ttyACM0");
        assert_eq!(fresh[16], ("serial./dev/ttyACM0.clock_offset_ms".to_string(), "none yet".to_string()));
        assert_eq!(fresh[17], ("serial./dev/ttyACM0.last_error".to_string(), "none".to_string()));
    }

    #[test]
    fn self_metrics_are_deltas_tagged_by_device() {
        let mut ids = crate::pipeline::id_generator();
        let mut previous = stats();
        previous.frames_accepted = 30;
        previous.crc_failures = 3;
        previous.connects = 0;
        previous.dropped_intervals = 10; // a counter that went down (new boot): no negative count
        let records = stats().self_metrics(&previous, "/dev/ttyUSB0", 10.0, &mut ids);
        let texts: Vec<String> =
            records.iter().map(|r| String::from_utf8(r.value.clone()).unwrap()).collect();
        let line = |metric: &str, kind: &str, value: i64| {
            format!(
                r#"{{"metric": "chouette.serial.{metric}", "type": "{kind}", "value": {value}, "timestamp": 10.0, "tags": {{"device": "/dev/ttyUSB0"}}}}"#
            )
        };
        assert_eq!(
            texts,
            [
                line("connects", "count", 2),
                line("frames_accepted", "count", 10),
                line("clock_offset_ms", "gauge", -250)
            ]
        );
        assert!(records.iter().all(|r| r.score == 10.0));
        // Nothing changed and no offset yet: nothing to send.
        let quiet = DeviceStats::default();
        assert!(quiet.self_metrics(&quiet, "d", 1.0, &mut ids).is_empty());
    }
}
