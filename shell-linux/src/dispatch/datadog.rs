//! The Datadog outputs: wrapped metrics to `{DATADOG_URL}/v1/series`, logs to the logs intake.
//! Both zlib-compressed (`Content-Encoding: deflate`), the API key in `DD-API-KEY` only.

use chouette_core::wire::log::{encode_log_for_intake, parse_log};
use chouette_core::wire::series::{
    PushError, SeriesEncoder, SeriesLimits, ENTRY_SEPARATOR, PAYLOAD_CLOSE, PAYLOAD_OPEN,
};
use chouette_core::wire::wrapped::{parse_wrapped_into, wrapped_scratch_len, WrappedRecord};
use chouette_core::wire::EncodeError;
use chouette_core::Tag;

use super::output::{Encoding, Framing, Limits, Output};
use super::{parse_reason, Destination, DispatchConfig};

/// JSON, and the API key in `DD-API-KEY` when set: every Datadog endpoint.
pub(super) fn headers(config: &DispatchConfig) -> Vec<(&'static str, String)> {
    let mut headers = vec![("Content-Type", "application/json".to_owned())];
    if let Some(key) = &config.api_key {
        headers.push(("DD-API-KEY", key.expose().to_owned()));
    }
    headers
}

/// Wrapped metrics to `{DATADOG_URL}/v1/series`: each record is one series entry.
pub struct DatadogSeries {
    config: DispatchConfig,
    scratch: Vec<u8>,
    buf: Vec<u8>,
}

impl DatadogSeries {
    /// The series output of `config`.
    pub fn new(config: &DispatchConfig) -> Self {
        DatadogSeries { config: config.clone(), scratch: Vec::new(), buf: Vec::new() }
    }
}

impl Output for DatadogSeries {
    fn sorts_entries(&self) -> bool {
        true
    }

    fn destination(&self) -> Destination {
        Destination::Metrics
    }

    fn url(&self) -> &str {
        &self.config.series_url
    }

    fn limits(&self) -> Limits {
        let series = self.config.series_limits();
        Limits {
            max_units: series.max_points as u64,
            max_bytes: series.max_payload_bytes,
            max_compressed: self.config.series_max_compressed_bytes,
        }
    }

    fn framing(&self) -> Framing {
        Framing { open: PAYLOAD_OPEN, separator: ENTRY_SEPARATOR, close: PAYLOAD_CLOSE }
    }

    fn encoding(&self) -> Encoding {
        Encoding::Deflate
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        headers(&self.config)
    }

    fn encode(&mut self, value: &[u8], out: &mut Vec<u8>) -> Result<u64, String> {
        self.scratch.resize(wrapped_scratch_len(value.len()), 0);
        let mut rec = WrappedRecord::empty();
        parse_wrapped_into(value, &mut self.scratch, &mut rec).map_err(|e| parse_reason(&e))?;
        let tags: Vec<Tag<'_>> = self.config.global_tags.iter().map(|t| Tag::parse(t)).collect();
        // A host in the record is kept unless HOST overrides it (as the original did).
        let host = self.config.host.as_deref().or(rec.host());
        let extra: usize = tags.iter().map(|t| 6 * t.encoded_len() + 4).sum();
        let mut size = 2 * value.len() + extra + host.map_or(0, |h| 6 * h.len()) + 256;
        loop {
            self.buf.resize(size, 0);
            // One record alone in a payload: the limits are the buffer's.
            let limits = SeriesLimits { max_payload_bytes: size, max_points: usize::MAX };
            let mut enc = SeriesEncoder::new(&mut self.buf, limits);
            let mut pushed = Ok(());
            for i in 0..rec.points().len() {
                if let Some(point) = rec.wrapped(i) {
                    pushed = enc.push(&point, &tags, host);
                    if pushed.is_err() {
                        break;
                    }
                }
            }
            match pushed.map_err(Some).and_then(|()| enc.finish().map_err(|_| None)) {
                Ok(payload) => {
                    let bytes = payload.bytes();
                    out.extend_from_slice(&bytes[PAYLOAD_OPEN.len()..bytes.len() - PAYLOAD_CLOSE.len()]);
                    return Ok(rec.points().len() as u64);
                }
                Err(Some(PushError::NonFinite)) => return Err("non_finite".to_owned()),
                Err(_) if size < 4 * 1024 * 1024 => size *= 2,
                Err(_) => return Err("too_large".to_owned()),
            }
        }
    }
}

/// Logs to `{DATADOG_LOGS_URL}/v1/input` (or `/api/v2/logs`): a JSON array of records.
pub struct DatadogLogs {
    config: DispatchConfig,
}

impl DatadogLogs {
    /// The logs output of `config`.
    pub fn new(config: &DispatchConfig) -> Self {
        DatadogLogs { config: config.clone() }
    }
}

impl Output for DatadogLogs {
    fn destination(&self) -> Destination {
        Destination::Logs
    }

    fn url(&self) -> &str {
        &self.config.logs_url
    }

    fn limits(&self) -> Limits {
        Limits {
            max_units: self.config.logs_max_entries.max(1) as u64,
            max_bytes: self.config.logs_max_bytes,
            max_compressed: self.config.logs_max_bytes,
        }
    }

    fn framing(&self) -> Framing {
        Framing { open: b"[", separator: b", ", close: b"]" }
    }

    fn encoding(&self) -> Encoding {
        Encoding::Deflate
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        headers(&self.config)
    }

    fn encode(&mut self, value: &[u8], out: &mut Vec<u8>) -> Result<u64, String> {
        let config = &self.config;
        let rec = parse_log(value).map_err(|e| parse_reason(&e))?;
        let tags: Vec<Tag<'_>> = config.global_tags.iter().map(|t| Tag::parse(t)).collect();
        let host = config.host.as_deref();
        let extra: usize = tags.iter().map(|t| t.encoded_len() + 1).sum();
        let start = out.len();
        out.resize(start + value.len() + extra + host.map_or(0, |h| 6 * h.len()) + 64, 0);
        let written = loop {
            match encode_log_for_intake(&rec, &tags, host, &mut out[start..]) {
                Ok(n) => break Some(n),
                Err(EncodeError::BufferTooSmall { required }) if required > out.len() - start => {
                    out.resize(start + required, 0)
                }
                Err(_) => break None,
            }
        };
        match written {
            Some(n) if n <= config.log_max_entry_bytes => {
                out.truncate(start + n);
                Ok(1)
            }
            Some(_) => Err("log_too_large".to_owned()),
            None => Err("encode_failed".to_owned()),
        }
    }
}
