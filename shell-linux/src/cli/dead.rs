//! `chouette dead`: list, requeue and purge dead letters, as SQS's redrive.
//!
//! Records the agent refuses (poison raw metrics, points and logs the backend refused) are moved
//! to `chouette:*.dead` queues in the envelope of [`crate::store::dead_letter_envelope`]. Once an
//! operator has fixed the cause, `chouette dead requeue` puts them back into their live queue with
//! their original id, score and exact bytes, and `chouette dead purge` deletes them.
//!
//! Both page through a dead-letter queue with a cursor ([`Store::scan`], pages of about
//! [`DEAD_PAGE_BYTES`], never the whole queue) and move each page with [`Store::redrive`]: one atomic step
//! that moves a record only if the dead-letter queue still holds it unchanged, so a crash or a
//! concurrent run never loses nor duplicates a record.
//!
//! An envelope that holds no value (`too_large` records keep only their `size`), an unreadable
//! envelope, an empty value (an orphan id) or one that names another queue cannot be requeued:
//! such records are counted and reported, and stay where they are.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::CliError;
use crate::limits::{DEAD_MAX_PAGE_RECORDS, DEAD_PAGE_BYTES, DEAD_PAGE_RECORDS};
use crate::store::{DeadMove, NewRecord, Queue, Record, Store, StoreError};

/// Records `chouette dead list` prints after the summary, unless `--limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 20;

/// Bytes of a value `chouette dead list` shows in its table.
const PREVIEW_BYTES: usize = 60;

/// Pseudo-reason of a dead-letter id with no envelope in the HASH (an orphan).
pub const NO_ENVELOPE: &str = "(no envelope)";
/// Pseudo-reason of an envelope that is not a JSON object.
pub const UNREADABLE: &str = "(unreadable envelope)";

/// `chouette dead --help`.
pub const HELP: &str = "\
chouette dead: list, requeue and purge dead letters (records the agent refused: poison raw
metrics, points and logs the backend refused). Opens the configured store as the agent does
(REDIS_URL, REDIS_HOST/REDIS_PORT, CHOUETTE_STATE_DIR; see `chouette --help`). With the embedded
store, stop the agent first: it holds the store's file locked.

USAGE:
    chouette dead list    [--queue Q] [--reason R] [--older-than SECS] [--limit N] [--json]
    chouette dead requeue --queue Q [--reason R] [--older-than SECS] [--dry-run]
    chouette dead purge   --queue Q [--reason R] [--older-than SECS] [--yes]

COMMANDS:
    list      a summary by queue and reason (count, how many can be requeued, oldest and
              newest record times), then the first N records (id, time, reason, first bytes)
    requeue   moves matching records back to their live queue with their original id, score
              (timestamp) and exact bytes, in atomic batches (up to 4096 records or about
              4 MiB): a crash mid-way neither loses nor duplicates a record. Records whose
              envelope holds no value (too_large), is unreadable or names another queue
              cannot be requeued: counted, left in place.
              Raw metrics older than the aggregation watermark are folded by the agent into
              its oldest open bucket (counted as late), not into their original bucket.
              Records older than METRIC_TTL / LOG_TTL (logs, events, service checks)
              are deleted at the agent's next cleanup.
    purge     deletes matching records. Without --yes, prints what would be deleted and exits 2

OPTIONS:
    --queue Q          raw, wrapped, logs, influxdb, opentsdb, events, service_checks or all
                       (list: all by default; requeue and purge: required)
    --reason R         only records refused for this reason (not_json, http_400, too_large...)
    --older-than SECS  only records whose timestamp is at least SECS seconds old
    --limit N          list: records to print after the summary (default 20; 0: none)
    --json             list: one JSON document ({\"summary\": [...], \"records\": [...]})
    --dry-run          requeue: print what would move, change nothing
    --yes              purge: really delete

EXIT CODES:
    0  done   1  the store failed or cannot be opened   2  usage error, or purge without --yes
";

/// What `chouette dead` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `list`
    List,
    /// `requeue`
    Requeue,
    /// `purge`
    Purge,
}

/// A parsed `chouette dead ...` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadArgs {
    /// The subcommand.
    pub action: Action,
    /// The dead-letter queues concerned ([`Queue::DeadRawMetrics`] ...), in that order.
    pub queues: Vec<Queue>,
    /// Only records refused for this reason.
    pub reason: Option<String>,
    /// Only records at least this many seconds old.
    pub older_than_secs: Option<u64>,
    /// `list`: how many records to print.
    pub limit: usize,
    /// `list`: JSON output.
    pub json: bool,
    /// `requeue`: change nothing.
    pub dry_run: bool,
    /// `purge`: confirmed.
    pub yes: bool,
}

/// What the command line asks of `chouette dead`: run it, or print [`HELP`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run this.
    Run(DeadArgs),
    /// `--help` anywhere.
    Help,
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::Dead(message.into())
}

/// The dead-letter queues named by `--queue`.
fn parse_queue(name: &str) -> Result<Vec<Queue>, CliError> {
    Ok(match name {
        "raw" => vec![Queue::DeadRawMetrics],
        "wrapped" => vec![Queue::DeadWrappedMetrics],
        "logs" => vec![Queue::DeadLogs],
        "influxdb" => vec![Queue::DeadInfluxMetrics],
        "opentsdb" => vec![Queue::DeadOpentsdbMetrics],
        "events" => vec![Queue::DeadEvents],
        "service_checks" => vec![Queue::DeadServiceChecks],
        "all" => Queue::ALL.into_iter().filter(|q| q.is_dead()).collect(),
        other => {
            return Err(usage(format!(
                "--queue {other:?}: expected raw, wrapped, logs, influxdb, opentsdb, events, service_checks or all"
            )))
        }
    })
}

/// Parses the arguments after `chouette dead`.
pub fn parse_args(args: &[String]) -> Result<Parsed, CliError> {
    if args.first().is_some_and(|a| a == "help") || args.iter().any(|a| matches!(a.as_str(), "-h" | "--help"))
    {
        return Ok(Parsed::Help);
    }
    let Some(action) = args.first() else {
        return Err(usage("missing command: list, requeue or purge"));
    };
    let action = match action.as_str() {
        "list" => Action::List,
        "requeue" => Action::Requeue,
        "purge" => Action::Purge,
        other => return Err(usage(format!("unknown command {other:?}: expected list, requeue or purge"))),
    };
    let mut parsed = DeadArgs {
        action,
        queues: Vec::new(),
        reason: None,
        older_than_secs: None,
        limit: DEFAULT_LIMIT,
        json: false,
        dry_run: false,
        yes: false,
    };
    let mut queue_given = false;
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, CliError> {
            match inline.clone().or_else(|| rest.next().cloned()) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(usage(format!("{name} needs a value"))),
            }
        };
        let flag = || {
            if inline.is_none() {
                Ok(true)
            } else {
                Err(usage(format!("{name} takes no value")))
            }
        };
        let only = |allowed: Action| {
            if action == allowed {
                Ok(())
            } else {
                Err(usage(format!("{name} does not apply to `{}`", args[0])))
            }
        };
        match name {
            "--queue" => {
                parsed.queues = parse_queue(&value(name)?)?;
                queue_given = true;
            }
            "--reason" => parsed.reason = Some(value(name)?),
            "--older-than" => {
                let v = value(name)?;
                let secs = v
                    .parse::<u64>()
                    .map_err(|_| usage(format!("--older-than {v:?}: expected whole seconds")))?;
                parsed.older_than_secs = Some(secs);
            }
            "--limit" => {
                only(Action::List)?;
                let v = value(name)?;
                parsed.limit =
                    v.parse::<usize>().map_err(|_| usage(format!("--limit {v:?}: expected a count")))?;
            }
            "--json" => {
                only(Action::List)?;
                parsed.json = flag()?;
            }
            "--dry-run" => {
                only(Action::Requeue)?;
                parsed.dry_run = flag()?;
            }
            "--yes" => {
                only(Action::Purge)?;
                parsed.yes = flag()?;
            }
            other => return Err(usage(format!("unknown option {other:?} for `{}`", args[0]))),
        }
    }
    if !queue_given {
        if action == Action::List {
            parsed.queues = parse_queue("all")?;
        } else {
            return Err(usage(format!(
                "`{}` needs --queue raw, wrapped, logs, influxdb, opentsdb or all",
                args[0]
            )));
        }
    }
    Ok(Parsed::Run(parsed))
}

/// The `--queue` name of a dead-letter queue.
pub fn short_name(dead: Queue) -> &'static str {
    match dead {
        Queue::RawMetrics | Queue::DeadRawMetrics => "raw",
        Queue::WrappedMetrics | Queue::DeadWrappedMetrics => "wrapped",
        Queue::Logs | Queue::DeadLogs => "logs",
        Queue::InfluxMetrics | Queue::DeadInfluxMetrics => "influxdb",
        Queue::OpentsdbMetrics | Queue::DeadOpentsdbMetrics => "opentsdb",
        Queue::Events | Queue::DeadEvents => "events",
        Queue::ServiceChecks | Queue::DeadServiceChecks => "service_checks",
    }
}

/// Raw, wrapped, logs: the order queues are reported in.
fn rank(dead: Queue) -> u8 {
    match dead {
        Queue::RawMetrics | Queue::DeadRawMetrics => 0,
        Queue::WrappedMetrics | Queue::DeadWrappedMetrics => 1,
        Queue::Logs | Queue::DeadLogs => 2,
        Queue::InfluxMetrics | Queue::DeadInfluxMetrics => 3,
        Queue::OpentsdbMetrics | Queue::DeadOpentsdbMetrics => 4,
        Queue::Events | Queue::DeadEvents => 5,
        Queue::ServiceChecks | Queue::DeadServiceChecks => 6,
    }
}

/// A dead-letter envelope, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Why it was refused.
    pub reason: String,
    /// The live queue's prefix it came from, if the envelope says.
    pub queue: Option<String>,
    /// The original bytes (`value_base64` when present, else `value`), if the envelope has them.
    pub value: Option<Vec<u8>>,
    /// `size` (bytes of the original), when the envelope gives it (`too_large`).
    pub size: Option<u64>,
}

/// Reads an envelope of [`crate::store::dead_letter_envelope`]. Tolerant: any JSON object with
/// a string `reason`; `value`, `value_base64`, `queue` and `size` are each optional. `None`
/// when the bytes are not such an object. A `value_base64` that does not decode leaves `value`
/// unset (the record cannot be requeued rather than requeued wrong).
pub fn parse_envelope(bytes: &[u8]) -> Option<Envelope> {
    use crate::collect::json::{Json, JsonDoc};
    // The core's scanner (as the collectors): serde_json is not linked into the agent.
    let object = Json::parse(bytes).ok()?;
    object.members()?;
    let reason = object.get("reason")?.as_str()?.into_owned();
    let queue = object.get("queue").and_then(|q| q.as_str().map(|q| q.into_owned()));
    let value = match object.get("value_base64") {
        Some(encoded) => encoded.as_str().and_then(|e| decode_base64(&e)),
        None => object.get("value").and_then(|v| v.as_str().map(|v| v.as_bytes().to_vec())),
    };
    let size = object
        .get("size")
        .and_then(|s| s.as_f64())
        .filter(|s| *s >= 0.0 && s.fract() == 0.0)
        .map(|s| s as u64);
    Some(Envelope { reason, queue, value, size })
}

/// Decodes standard base64 with padding (RFC 4648 §4); `None` if malformed.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let chunks = bytes.len() / 4;
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | sextet(c)?;
        }
        n <<= 6 * pad as u32;
        let all = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&all[..3 - pad]);
    }
    Some(out)
}

/// One dead letter, classified.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    /// The reason, or [`NO_ENVELOPE`] / [`UNREADABLE`].
    pub reason: String,
    /// What would go back to the live queue, or why it cannot.
    pub requeue: Result<NewRecord, String>,
    /// The envelope's `size`, if any.
    pub size: Option<u64>,
}

/// Classifies a record of the dead-letter queue `dead`.
pub fn classify(dead: Queue, record: &Record) -> Letter {
    let Some(bytes) = &record.value else {
        return Letter {
            reason: NO_ENVELOPE.into(),
            requeue: Err("no envelope in the HASH".into()),
            size: None,
        };
    };
    let Some(envelope) = parse_envelope(bytes) else {
        return Letter {
            reason: UNREADABLE.into(),
            requeue: Err("the envelope is not JSON".into()),
            size: None,
        };
    };
    let live = dead.live();
    let requeue = match (&envelope.value, &envelope.queue) {
        (_, Some(queue)) if queue != live.prefix() => Err(format!("the envelope names queue {queue:?}")),
        (None, _) => Err(match envelope.size {
            Some(size) => format!("the envelope holds no value (size {size} bytes)"),
            None => "the envelope holds no value".to_string(),
        }),
        (Some(value), _) if value.is_empty() => Err("empty value (an orphan id)".into()),
        (Some(value), _) => {
            Ok(NewRecord { id: record.id.to_vec(), score: record.score, value: value.clone() })
        }
    };
    Letter { reason: envelope.reason, requeue, size: envelope.size }
}

/// Counts for one (queue, reason).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Matching records.
    pub count: u64,
    /// Of those, how many can be requeued.
    pub requeueable: u64,
    /// Lowest score.
    pub oldest: f64,
    /// Highest score.
    pub newest: f64,
}

impl Tally {
    fn add(&mut self, score: f64, requeueable: bool) {
        if self.count == 0 {
            self.oldest = score;
            self.newest = score;
        }
        self.count += 1;
        self.requeueable += u64::from(requeueable);
        self.oldest = self.oldest.min(score);
        self.newest = self.newest.max(score);
    }
}

/// Whether a record passes `--reason` and `--older-than`.
fn selected(args: &DeadArgs, now: f64, score: f64, reason: &str) -> bool {
    args.reason.as_deref().is_none_or(|r| r == reason)
        && args.older_than_secs.is_none_or(|secs| score <= now - secs as f64)
}

/// Calls `each` on every record of `dead`, page by page (a cursor: `each` may move records).
fn for_each_page(
    store: &mut dyn Store,
    dead: Queue,
    mut each: impl FnMut(&mut dyn Store, Vec<Record>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut after: Option<(f64, Vec<u8>)> = None;
    let mut size = DEAD_PAGE_RECORDS;
    loop {
        let page = store.scan(dead, after.as_ref().map(|(s, id)| (*s, id.as_slice())), size)?;
        // Until an empty page: a short page is not the end when records moved meanwhile.
        let Some(last) = page.last() else { return Ok(()) };
        after = Some((last.score, last.id.to_vec()));
        let bytes: usize = page.iter().map(|r| r.id.len() + r.value.as_ref().map_or(0, |v| v.len())).sum();
        if bytes < DEAD_PAGE_BYTES / 2 && page.len() == size {
            size = (size * 2).min(DEAD_MAX_PAGE_RECORDS);
        } else if bytes > DEAD_PAGE_BYTES * 2 {
            size = (size / 2).max(1);
        }
        each(store, page)?;
    }
}

/// A store error as an I/O error (what was printed before it stays printed).
fn store_error(e: StoreError) -> io::Error {
    io::Error::other(e)
}

/// A score as a UTC time when it is one, else as the number.
fn when(score: f64) -> String {
    if score.is_finite() && (0.0..253_402_300_800.0).contains(&score) {
        crate::logging::format_asctime(score.floor() as i64)
    } else {
        format!("{score}")
    }
}

/// The first bytes of a value, printable on one line.
fn preview(letter: &Letter, record: &Record) -> String {
    let value = match (&letter.requeue, &record.value) {
        (Ok(r), _) => r.value.as_slice(),
        (Err(why), None) => return format!("({why})"),
        (Err(why), Some(raw)) => {
            if letter.reason == UNREADABLE {
                &raw[..]
            } else {
                return format!("({why})");
            }
        }
    };
    let cut = value.len().min(PREVIEW_BYTES);
    let mut text = String::new();
    for c in String::from_utf8_lossy(&value[..cut]).chars() {
        if c.is_control() {
            text.extend(c.escape_default());
        } else {
            text.push(c);
        }
    }
    if cut < value.len() {
        text.push('…');
    }
    text
}

/// `chouette dead list`: the summary, then up to `--limit` records.
pub fn list(store: &mut dyn Store, args: &DeadArgs, now: f64, out: &mut dyn Write) -> io::Result<()> {
    let mut summary: BTreeMap<(usize, String), Tally> = BTreeMap::new();
    let mut shown: Vec<(Queue, Record, Letter)> = Vec::new();
    for (q, &dead) in args.queues.iter().enumerate() {
        for_each_page(store, dead, |_, page| {
            for record in page {
                let letter = classify(dead, &record);
                if !selected(args, now, record.score, &letter.reason) {
                    continue;
                }
                summary
                    .entry((q, letter.reason.clone()))
                    .or_default()
                    .add(record.score, letter.requeue.is_ok());
                if shown.len() < args.limit {
                    shown.push((dead, record, letter));
                }
            }
            Ok(())
        })
        .map_err(store_error)?;
    }
    let total: u64 = summary.values().map(|t| t.count).sum();
    if args.json {
        return list_json(store, args, &summary, &shown, total, out);
    }
    writeln!(out, "store: {}", store.describe())?;
    if summary.is_empty() {
        writeln!(out, "no dead letters{}", filter_note(args))?;
        return Ok(());
    }
    let reason_width = summary.keys().map(|(_, r)| r.len()).max().unwrap_or(0).max("reason".len());
    writeln!(
        out,
        "{:<7}  {:<reason_width$}  {:>7}  {:>11}  {:<24}  newest",
        "queue", "reason", "count", "requeueable", "oldest"
    )?;
    for ((q, reason), tally) in &summary {
        writeln!(
            out,
            "{:<7}  {reason:<reason_width$}  {:>7}  {:>11}  {:<24}  {}",
            short_name(args.queues[*q]),
            tally.count,
            tally.requeueable,
            when(tally.oldest),
            when(tally.newest)
        )?;
    }
    let requeueable: u64 = summary.values().map(|t| t.requeueable).sum();
    writeln!(out, "{:<7}  {:<reason_width$}  {total:>7}  {requeueable:>11}", "total", "")?;
    if args.limit == 0 {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "records ({} of {total}, oldest first per queue; --limit {}):", shown.len(), args.limit)?;
    let id_width =
        shown.iter().map(|(_, r, _)| String::from_utf8_lossy(&r.id).len()).max().unwrap_or(0).max(2);
    writeln!(out, "{:<7}  {:<id_width$}  {:<24}  {:<reason_width$}  value", "queue", "id", "time", "reason")?;
    for (dead, record, letter) in &shown {
        writeln!(
            out,
            "{:<7}  {:<id_width$}  {:<24}  {:<reason_width$}  {}",
            short_name(*dead),
            String::from_utf8_lossy(&record.id),
            when(record.score),
            letter.reason,
            preview(letter, record)
        )?;
    }
    Ok(())
}

fn filter_note(args: &DeadArgs) -> String {
    let mut note = String::new();
    if let Some(reason) = &args.reason {
        note.push_str(&format!(" with reason {reason:?}"));
    }
    if let Some(secs) = args.older_than_secs {
        note.push_str(&format!(" older than {secs} s"));
    }
    note
}

/// `text` as a JSON string, quoted, non-ASCII as `\uXXXX` (the core's writer, as the agent's
/// own JSON; serde_json's serializer added 9 KB to the release binary).
fn json_str(text: &str) -> String {
    let write = |buf: &mut [u8]| {
        let mut w = chouette_core::wire::write::Writer::new(buf);
        w.json_str(text);
        w.len()
    };
    let mut out = vec![0; write(&mut [])];
    write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A score as a JSON number (`null` if not finite).
fn json_num(score: f64) -> String {
    if score.is_finite() {
        format!("{score:?}")
    } else {
        "null".into()
    }
}

fn list_json(
    store: &mut dyn Store,
    args: &DeadArgs,
    summary: &BTreeMap<(usize, String), Tally>,
    shown: &[(Queue, Record, Letter)],
    total: u64,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut doc = format!("{{\"store\": {}, \"total\": {total}, \"summary\": [", json_str(&store.describe()));
    for (i, ((q, reason), t)) in summary.iter().enumerate() {
        doc.push_str(if i == 0 { "" } else { ", " });
        doc.push_str(&format!(
            "{{\"queue\": \"{}\", \"reason\": {}, \"count\": {}, \"requeueable\": {}, \"oldest\": {}, \"newest\": {}}}",
            short_name(args.queues[*q]),
            json_str(reason),
            t.count,
            t.requeueable,
            json_num(t.oldest),
            json_num(t.newest)
        ));
    }
    doc.push_str("], \"records\": [");
    for (i, (dead, record, letter)) in shown.iter().enumerate() {
        doc.push_str(if i == 0 { "" } else { ", " });
        doc.push_str(&format!(
            "{{\"queue\": \"{}\", \"id\": {}, \"score\": {}, \"reason\": {}, \"requeueable\": {}",
            short_name(*dead),
            json_str(&String::from_utf8_lossy(&record.id)),
            json_num(record.score),
            json_str(&letter.reason),
            letter.requeue.is_ok()
        ));
        match &letter.requeue {
            Ok(r) => {
                doc.push_str(&format!(", \"value\": {}", json_str(&String::from_utf8_lossy(&r.value))));
                if std::str::from_utf8(&r.value).is_err() {
                    doc.push_str(&format!(
                        ", \"value_base64\": \"{}\"",
                        crate::store::encode_base64(&r.value)
                    ));
                }
            }
            Err(why) => doc.push_str(&format!(", \"why_not\": {}", json_str(why))),
        }
        if let Some(size) = letter.size {
            doc.push_str(&format!(", \"size\": {size}"));
        }
        doc.push('}');
    }
    doc.push_str("]}");
    writeln!(out, "{doc}")
}

/// What a requeue or purge did (or would do), per (queue, reason).
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Records moved back (requeue) or deleted (purge), by (queue rank, `--queue` name, reason).
    pub done: BTreeMap<(u8, &'static str, String), u64>,
    /// Records left in place because they cannot be requeued, with why (the first seen).
    pub kept: BTreeMap<(u8, &'static str, String), (u64, String)>,
    /// Records that changed or vanished between the read and the move (another run, the agent's
    /// TTL cleanup): not moved by this run.
    pub skipped: u64,
    /// Requeued raw records older than the aggregation watermark.
    pub late_raw: u64,
}

impl Outcome {
    /// Records moved or deleted.
    pub fn total(&self) -> u64 {
        self.done.values().sum()
    }
}

/// `chouette dead requeue`: moves matching records back, page by page.
pub fn requeue(store: &mut dyn Store, args: &DeadArgs, now: f64, out: &mut dyn Write) -> io::Result<Outcome> {
    let watermark = if args.queues.contains(&Queue::DeadRawMetrics) {
        store.aggregated_until().map_err(store_error)?
    } else {
        None
    };
    let mut outcome = Outcome::default();
    for &dead in &args.queues {
        let (rank, name) = (rank(dead), short_name(dead));
        for_each_page(store, dead, |store, page| {
            let mut moves = Vec::new();
            let mut reasons = Vec::new();
            for record in page {
                let letter = classify(dead, &record);
                if !selected(args, now, record.score, &letter.reason) {
                    continue;
                }
                match letter.requeue {
                    Ok(back) => {
                        if dead == Queue::DeadRawMetrics && watermark.is_some_and(|w| back.score < w) {
                            outcome.late_raw += 1;
                        }
                        reasons.push(letter.reason);
                        moves.push(DeadMove {
                            id: record.id.to_vec(),
                            envelope: record.value.map(Vec::from).unwrap_or_default(),
                            requeue: Some(back),
                        });
                    }
                    Err(why) => {
                        let kept = outcome.kept.entry((rank, name, letter.reason)).or_insert((0, why));
                        kept.0 += 1;
                    }
                }
            }
            let moved = if args.dry_run || moves.is_empty() {
                moves.len() as u64
            } else {
                store.redrive(dead, dead.live(), &moves)?
            };
            // Per reason as selected; records that changed meanwhile are reported apart.
            for reason in reasons {
                *outcome.done.entry((rank, name, reason)).or_default() += 1;
            }
            outcome.skipped += moves.len() as u64 - moved;
            Ok(())
        })
        .map_err(store_error)?;
    }
    writeln!(out, "store: {}", store.describe())?;
    let verb = if args.dry_run { "would requeue" } else { "requeued" };
    if outcome.done.is_empty() && outcome.kept.is_empty() {
        writeln!(out, "no dead letters{}: nothing to requeue", filter_note(args))?;
    }
    for ((_, queue, reason), n) in &outcome.done {
        writeln!(out, "{verb} {n} {queue} record(s) with reason {reason} to {}", live_name(queue))?;
    }
    for ((_, queue, reason), (n, why)) in &outcome.kept {
        writeln!(out, "kept {n} {queue} record(s) with reason {reason}: cannot be requeued ({why})")?;
    }
    if outcome.skipped > 0 {
        writeln!(
            out,
            "of these, {} record(s) changed or were removed meanwhile (another run, the TTL cleanup) and were not requeued by this run",
            outcome.skipped
        )?;
    }
    if outcome.late_raw > 0 {
        writeln!(
            out,
            "note: {} raw record(s) are older than the aggregation watermark: the agent folds them into its oldest open bucket and counts them as late",
            outcome.late_raw
        )?;
    }
    if args.dry_run {
        writeln!(out, "dry run: nothing was changed")?;
    }
    Ok(outcome)
}

fn live_name(short: &str) -> &'static str {
    match short {
        "raw" => Queue::RawMetrics.name(),
        "wrapped" => Queue::WrappedMetrics.name(),
        "influxdb" => Queue::InfluxMetrics.name(),
        "opentsdb" => Queue::OpentsdbMetrics.name(),
        "events" => Queue::Events.name(),
        "service_checks" => Queue::ServiceChecks.name(),
        _ => Queue::Logs.name(),
    }
}

/// `chouette dead purge`: deletes matching records (with `--yes`), page by page; without it,
/// counts what would be deleted. The caller exits 2 when `args.yes` is false.
pub fn purge(store: &mut dyn Store, args: &DeadArgs, now: f64, out: &mut dyn Write) -> io::Result<Outcome> {
    let mut outcome = Outcome::default();
    for &dead in &args.queues {
        let (rank, name) = (rank(dead), short_name(dead));
        for_each_page(store, dead, |store, page| {
            let mut moves = Vec::new();
            let mut orphans = Vec::new();
            for record in page {
                let letter = classify(dead, &record);
                if !selected(args, now, record.score, &letter.reason) {
                    continue;
                }
                *outcome.done.entry((rank, name, letter.reason)).or_default() += 1;
                match record.value {
                    Some(envelope) => moves.push(DeadMove {
                        id: record.id.to_vec(),
                        envelope: envelope.to_vec(),
                        requeue: None,
                    }),
                    None => orphans.push(record.id),
                }
            }
            if args.yes {
                let deleted = store.redrive(dead, dead.live(), &moves)?;
                outcome.skipped += moves.len() as u64 - deleted;
                store.delete(dead, &orphans)?;
            }
            Ok(())
        })
        .map_err(store_error)?;
    }
    writeln!(out, "store: {}", store.describe())?;
    if outcome.done.is_empty() {
        writeln!(out, "no dead letters{}: nothing to purge", filter_note(args))?;
    }
    let verb = if args.yes { "deleted" } else { "would delete" };
    for ((_, queue, reason), n) in &outcome.done {
        writeln!(out, "{verb} {n} {queue} record(s) with reason {reason}")?;
    }
    if outcome.skipped > 0 {
        writeln!(
            out,
            "of these, {} record(s) changed or were removed meanwhile and were not deleted by this run",
            outcome.skipped
        )?;
    }
    Ok(outcome)
}

/// Why `chouette dead` could not open the store (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A running agent holds the embedded store's file (redb locks it).
    #[error(
        "{}: the embedded store is held by a running agent; stop the agent first \
         (systemctl stop chouette), run chouette dead, then start it again",
        path.display()
    )]
    Locked {
        /// The store file.
        path: std::path::PathBuf,
    },
    /// Any other failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the configured store as the agent does. The embedded store's file is locked by a
/// running agent (never waited for: redb does not block); `Ok(None)` when it does not exist yet
/// (nothing was ever dead-lettered there, and nothing is created).
pub fn open_store(config: &crate::config::Config) -> Result<Option<Box<dyn Store>>, OpenError> {
    if let crate::config::StoreConfig::Embedded { path } = &config.store {
        if !path.exists() {
            return Ok(None);
        }
        if is_locked(path) {
            return Err(OpenError::Locked { path: path.clone() });
        }
    }
    match crate::agent::open_store(config) {
        Ok(store) => Ok(Some(store)),
        // Locked between the check and the open (the agent just started).
        Err(e) => match &config.store {
            crate::config::StoreConfig::Embedded { path } if is_locked(path) => {
                Err(OpenError::Locked { path: path.clone() })
            }
            _ => Err(e.into()),
        },
    }
}

/// Whether another process holds `path` under the exclusive `flock` redb takes when it opens
/// a database (tried without blocking, then released).
fn is_locked(path: &std::path::Path) -> bool {
    use rustix::fs::{flock, FlockOperation};
    let Ok(file) = std::fs::File::open(path) else { return false };
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            let _ = flock(&file, FlockOperation::Unlock);
            false
        }
        Err(e) => e == rustix::io::Errno::WOULDBLOCK,
    }
}

/// Runs a parsed `chouette dead` command against `store` (`None`: an embedded store that does
/// not exist yet); returns the exit code.
pub fn run(
    store: Option<&mut dyn Store>,
    description: &str,
    args: &DeadArgs,
    now: f64,
    out: &mut dyn Write,
) -> io::Result<i32> {
    let Some(store) = store else {
        writeln!(out, "store: {description} (does not exist yet)")?;
        writeln!(out, "no dead letters")?;
        return Ok(super::EXIT_OK);
    };
    match args.action {
        Action::List => list(store, args, now, out).map(|()| super::EXIT_OK),
        Action::Requeue => requeue(store, args, now, out).map(|_| super::EXIT_OK),
        Action::Purge => {
            let outcome = purge(store, args, now, out)?;
            if args.yes || outcome.total() == 0 {
                Ok(super::EXIT_OK)
            } else {
                writeln!(out, "nothing deleted: run again with --yes to delete these records")?;
                Ok(super::EXIT_USAGE)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{dead_letter_envelope, DeadRecord};

    fn args(list: &[&str]) -> Result<Parsed, CliError> {
        parse_args(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn run(list: &[&str]) -> DeadArgs {
        match args(list) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("{list:?}: {other:?}"),
        }
    }

    #[test]
    fn parses_each_command() {
        let list = run(&["list"]);
        assert_eq!(list.action, Action::List);
        assert_eq!(
            list.queues,
            [
                Queue::DeadRawMetrics,
                Queue::DeadWrappedMetrics,
                Queue::DeadLogs,
                Queue::DeadInfluxMetrics,
                Queue::DeadOpentsdbMetrics,
                Queue::DeadEvents,
                Queue::DeadServiceChecks
            ]
        );
        assert_eq!(list.limit, DEFAULT_LIMIT);
        let list = run(&["list", "--queue=logs", "--reason", "http_400", "--limit", "0", "--json"]);
        assert_eq!(list.queues, [Queue::DeadLogs]);
        assert_eq!(list.reason.as_deref(), Some("http_400"));
        assert_eq!(run(&["list", "--queue", "events"]).queues, [Queue::DeadEvents]);
        assert_eq!(run(&["list", "--queue", "service_checks"]).queues, [Queue::DeadServiceChecks]);
        assert_eq!((list.limit, list.json), (0, true));
        let requeue = run(&["requeue", "--queue", "raw", "--dry-run", "--older-than", "60"]);
        assert_eq!(
            (requeue.action, requeue.dry_run, requeue.older_than_secs),
            (Action::Requeue, true, Some(60))
        );
        assert_eq!(requeue.queues, [Queue::DeadRawMetrics]);
        let purge = run(&["purge", "--queue", "wrapped", "--yes"]);
        assert_eq!((purge.action, purge.yes), (Action::Purge, true));
        assert_eq!(args(&["purge", "--help"]), Ok(Parsed::Help));
        assert_eq!(args(&["--help"]), Ok(Parsed::Help));
        assert_eq!(args(&["help"]), Ok(Parsed::Help));
        assert_eq!(run(&["list", "--reason", "help"]).reason.as_deref(), Some("help"));
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        let cases: [(&[&str], &str); 10] = [
            (&[], "missing command"),
            (&["show"], "unknown command \"show\""),
            (&["requeue"], "`requeue` needs --queue"),
            (&["purge", "--yes"], "`purge` needs --queue"),
            (
                &["list", "--queue", "dead"],
                "--queue \"dead\": expected raw, wrapped, logs, influxdb, opentsdb, events, service_checks or all",
            ),
            (&["list", "--limit", "-1"], "--limit \"-1\": expected a count"),
            (&["list", "--reason"], "--reason needs a value"),
            (&["list", "--yes"], "--yes does not apply to `list`"),
            (&["purge", "--queue", "raw", "--dry-run"], "--dry-run does not apply to `purge`"),
            (&["requeue", "--queue", "raw", "--older-than", "1.5"], "expected whole seconds"),
        ];
        for (list, want) in cases {
            let err = args(list).unwrap_err().to_string();
            assert!(err.contains(want), "{list:?}: {err}");
            assert!(err.contains("chouette dead --help"), "{list:?}: {err}");
        }
        assert!(args(&["list", "--json=yes"]).unwrap_err().to_string().contains("takes no value"));
    }

    #[test]
    fn help_lines_fit() {
        assert!(HELP.lines().all(|l| l.len() <= 100));
    }

    fn dead_record(value: &[u8], reason: &str) -> DeadRecord {
        DeadRecord { id: b"id-1".to_vec(), score: 1.5, value: value.to_vec(), reason: reason.into() }
    }

    fn stored(queue: Queue, value: &[u8], reason: &str) -> Record {
        let envelope = dead_letter_envelope(queue, &dead_record(value, reason));
        Record { id: b"id-1".to_vec().into(), score: 1.5, value: Some(envelope.into()), oversize: None }
    }

    #[test]
    fn envelopes_round_trip_exact_bytes() {
        for value in [&b"{\"metric\": \"caf\xc3\xa9\\n\"}"[..], b"\xff\xfe\x00raw", "é🦉\u{1}\"\\".as_bytes()]
        {
            let letter = classify(Queue::DeadRawMetrics, &stored(Queue::RawMetrics, value, "not_json"));
            assert_eq!(letter.reason, "not_json");
            assert_eq!(
                letter.requeue,
                Ok(NewRecord { id: b"id-1".to_vec(), score: 1.5, value: value.to_vec() })
            );
        }
    }

    #[test]
    fn letters_that_cannot_be_requeued_say_why() {
        let too_large =
            Record {
                oversize: None,
                id: b"x".to_vec().into(),
                score: 2.0,
                value:
                    Some(
                        br#"{"reason": "too_large", "queue": "chouette:logs:wrapped", "size": 2000000}"#
                            .to_vec()
                            .into(),
                    ),
            };
        let letter = classify(Queue::DeadLogs, &too_large);
        assert_eq!(letter.reason, "too_large");
        assert_eq!(letter.size, Some(2_000_000));
        assert_eq!(letter.requeue, Err("the envelope holds no value (size 2000000 bytes)".into()));

        let orphan = Record { oversize: None, id: b"x".to_vec().into(), score: 2.0, value: None };
        assert_eq!(classify(Queue::DeadLogs, &orphan).reason, NO_ENVELOPE);
        let garbage = Record {
            oversize: None,
            id: b"x".to_vec().into(),
            score: 2.0,
            value: Some(b"not json".to_vec().into()),
        };
        assert_eq!(classify(Queue::DeadLogs, &garbage).reason, UNREADABLE);
        // Dead-lettered from the logs queue, found in the raw dead-letter queue.
        let elsewhere = classify(Queue::DeadRawMetrics, &stored(Queue::Logs, b"{}", "http_400"));
        assert_eq!(elsewhere.requeue, Err("the envelope names queue \"chouette:logs:wrapped\"".into()));
        let empty = classify(Queue::DeadLogs, &stored(Queue::Logs, b"", "orphan"));
        assert_eq!(empty.requeue, Err("empty value (an orphan id)".into()));
        let bad64 = Record {
            oversize: None,
            id: b"x".to_vec().into(),
            score: 2.0,
            value: Some(br#"{"reason": "r", "value": "?", "value_base64": "@@@@"}"#.to_vec().into()),
        };
        assert!(classify(Queue::DeadLogs, &bad64).requeue.is_err());
        // No queue field: taken as the dead-letter queue's own live queue.
        let bare = Record {
            oversize: None,
            id: b"x".to_vec().into(),
            score: 2.0,
            value: Some(br#"{"reason": "r", "value": "v"}"#.to_vec().into()),
        };
        assert_eq!(classify(Queue::DeadLogs, &bare).requeue.map(|r| r.value), Ok(b"v".to_vec()));
    }

    #[test]
    fn base64_decodes_what_the_envelope_encodes() {
        for bytes in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\x00\xfe\x01\x80"] {
            assert_eq!(decode_base64(&crate::store::encode_base64(bytes)).as_deref(), Some(bytes));
        }
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9v!A==", "===="] {
            assert_eq!(decode_base64(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_strings_and_numbers() {
        assert_eq!(json_str("a\"b\\c\né🦉"), r#""a\"b\\c\n\u00e9\ud83e\udd89""#);
        assert_eq!(json_num(1.5), "1.5");
        assert_eq!(json_num(1e300), "1e300");
        assert_eq!(json_num(f64::INFINITY), "null");
    }

    #[test]
    fn times_are_utc_when_plausible() {
        assert_eq!(when(1_795_310_737.5), "2026-11-22T01:25:37+0000");
        assert_eq!(when(1e15), "1000000000000000");
        assert_eq!(when(-3.0), "-3");
    }
}
