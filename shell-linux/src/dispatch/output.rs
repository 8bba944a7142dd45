//! The output seam: what one backend tells the [`Dispatcher`](super::Dispatcher) so that it can
//! send an outbox there.
//!
//! An output encodes each queued record once into an *entry* (bytes that go in a payload as they
//! are), says how entries are joined into a payload ([`Framing`]), how large a payload may grow
//! ([`Limits`]), how it is compressed and which headers go with it, and how to read a refusal
//! whose body says more than its status (a partial write). Everything else (planning payloads,
//! posting, bisection, backoff, counters, log lines) is shared, in `dispatch/mod.rs`.
//!
//! Adding an output: a file here implementing [`Output`], a [`Destination`] variant (its name,
//! outbox queue and variables) and a line in [`super::outputs`] that builds it from the
//! configuration. The main loop, the pipeline and the dispatcher do not change.

use chouette_core::wire::wrapped::{parse_wrapped_into, wrapped_scratch_len, WrappedRecord};
use chouette_core::wire::EncodeError;
use chouette_core::Tag;

use super::{parse_reason, Destination, Verdict};

/// How a payload is compressed (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// zlib (`deflate`): Datadog, Apptuit.
    Deflate,
    /// gzip: InfluxDB, OpenTSDB, VictoriaMetrics.
    Gzip,
    /// Not compressed, no `Content-Encoding` header: Datadog's `/api/v1/events`.
    Identity,
}

impl Encoding {
    /// The `Content-Encoding` header value.
    pub fn header(self) -> &'static str {
        match self {
            Encoding::Deflate => "deflate",
            Encoding::Gzip => "gzip",
            Encoding::Identity => "identity",
        }
    }
}

/// How large one payload may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most units (points, log entries) in one payload; at least one record always goes.
    pub max_units: u64,
    /// Largest payload before compression, framing included.
    pub max_bytes: usize,
    /// Largest payload after compression (a larger one is split before it is sent).
    pub max_compressed: usize,
}

/// How entries are joined into a payload: `open`, entries separated by `separator`, `close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Before the first entry (`{"series": [`, `[`, nothing).
    pub open: &'static [u8],
    /// Between two entries (`, `, nothing for newline-terminated lines).
    pub separator: &'static [u8],
    /// After the last entry.
    pub close: &'static [u8],
}

/// The entries of one call, for an output reading a partial refusal.
pub struct Entries<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) spans: &'a [std::ops::Range<usize>],
}

impl<'a> Entries<'a> {
    /// Record `index`'s entry as encoded (empty for a record that was not encoded).
    pub fn get(&self, index: usize) -> &'a [u8] {
        self.spans.get(index).and_then(|span| self.bytes.get(span.clone())).unwrap_or_default()
    }
}

/// One backend: see the module docs.
pub trait Output: Send {
    /// Which output this is (its name, outbox queue and variables).
    fn destination(&self) -> Destination;

    /// Where payloads are posted (the full URL, query included).
    fn url(&self) -> &str;

    /// Payload limits.
    fn limits(&self) -> Limits;

    /// How entries are joined.
    fn framing(&self) -> Framing;

    /// How payloads are compressed.
    fn encoding(&self) -> Encoding;

    /// Whether a payload's entries may be put in the order of their encoded bytes (metrics:
    /// their order carries no meaning, and sorted they compress to about half), rather than
    /// the queue's order (logs, events: kept as they came).
    fn sorts_entries(&self) -> bool {
        false
    }

    /// Headers besides `Content-Encoding` (content type, credentials).
    fn headers(&self) -> Vec<(&'static str, String)>;

    /// Encodes one queued record's value, appending its entry to `out`. `Ok(units)`: the points
    /// (or log entries) it holds. `Err(reason)`: the record can never be sent (`not_json`,
    /// `no_tags`, `log_too_large`...): it is dead-lettered with that reason, and whatever this
    /// call appended is discarded.
    fn encode(&mut self, value: &[u8], out: &mut Vec<u8>) -> Result<u64, String>;

    /// Reads a 4xx answer outside the shared table (400, 422...) for the records of `group`.
    /// `Some(verdict)` when the body says which records were refused and the rest was stored (a
    /// partial write: [`Verdict::Partial`]); `None` for the shared rule (bisection).
    fn read_refusal(
        &self,
        status: u16,
        body: &str,
        entries: &Entries<'_>,
        group: &[usize],
    ) -> Option<Verdict> {
        let _ = (status, body, entries, group);
        None
    }
}

/// Parses `value` as a wrapped record and appends its entry to `out`, written by `write` (one of
/// the core's encoders into a caller buffer, given the record and the parsed `global_tags`); the
/// buffer grows once to what the encoder says it requires. `Ok(points)`; `Err(reason)` for a
/// record that cannot be parsed or encoded (the caller discards what was appended).
pub(super) fn encode_wrapped_entry(
    value: &[u8],
    scratch: &mut Vec<u8>,
    global_tags: &[String],
    out: &mut Vec<u8>,
    write: impl Fn(&WrappedRecord<'_>, &[Tag<'_>], &mut [u8]) -> Result<usize, EncodeError>,
) -> Result<u64, String> {
    scratch.resize(wrapped_scratch_len(value.len()), 0);
    let mut rec = WrappedRecord::empty();
    parse_wrapped_into(value, scratch, &mut rec).map_err(|e| parse_reason(&e))?;
    let tags: Vec<Tag<'_>> = global_tags.iter().map(|t| Tag::parse(t)).collect();
    let start = out.len();
    out.resize(start + 2 * value.len() + 256, 0);
    loop {
        match write(&rec, &tags, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(rec.points().len() as u64);
            }
            Err(EncodeError::BufferTooSmall { required }) if required > out.len() - start => {
                out.resize(start + required, 0)
            }
            Err(e) => return Err(e.reason().to_owned()),
        }
    }
}
