//! Every fixed capacity of the agent, in one place: what each number bounds, what it costs, why
//! that number. The core's own bounds (names, tags, sketches, Datadog v1 payloads) are in
//! `chouette_core::limits`; what an operator sizes per deployment (`METRICS_BULK_SIZE`,
//! `DOGSTATSD_BUFFER_SIZE`, `DOGSTATSD_SO_RCVBUF`, `DOGSTATSD_MAX_CONTEXTS`, ...) is a variable
//! of the configuration table (`config/vars.rs`).
//!
//! What stays beside its code: timeouts, backoffs and intervals (`Duration`s, which bound time,
//! not size), the constants of a format or a system interface (redb's header, `cmsg` space, the
//! baud rates), the sizes of what is printed (`chouette status`'s top contexts, `chouette dead`'s
//! previews), and the scratch buffers that grow to fit what they encode.

use chouette_core::limits::{EXACT_SAMPLES, V1_MAX_COMPRESSED_BYTES};

// ---- Store -------------------------------------------------------------------------------------

/// The most value bytes one page read loads (`Store::read_page`): a page ends early, after at
/// least one record, when its values would exceed this. 8 MiB holds 10,000 typical raw records
/// (about 150 bytes each) many times over, so it only bites when records are large.
pub const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// The largest value a read of a metric queue (raw, wrapped, InfluxDB, OpenTSDB) loads
/// (`Queue::max_record_bytes`): 64 KiB. A raw or wrapped metric is a few hundred bytes; 64 KiB
/// is a histogram of thousands of samples. A larger value is never loaded: the agent
/// dead-letters it with reason `too_large`, which moves the bytes inside the store.
pub const MAX_METRIC_RECORD_BYTES: usize = 64 * 1024;

/// The largest value a read of the logs, events or service checks queue loads: 1 MiB, the
/// Datadog logs intake's own limit per log. An event or a check is one datagram
/// (`DOGSTATSD_BUFFER_SIZE`, 8 KiB by default) in JSON: a log's limit leaves room for any buffer
/// size an operator sets.
pub const MAX_LOG_RECORD_BYTES: usize = 1024 * 1024;

/// The largest value a read of a dead-letter queue loads: 16 MiB (an envelope escapes its value:
/// up to six bytes per byte of a log).
pub const MAX_DEAD_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Redis page reads of a metric queue: a page's values are loaded without asking their lengths
/// first (`HSTRLEN` per id, a third of Redis's work in a drain) when the queue's previous page
/// showed that they are small: none over the record limit, and its longest value times the
/// page's records within [`MAX_PAGE_BYTES`] (so such a page is not cut for bytes either).
/// Otherwise, and for the first page after a start, the lengths are asked first, as always for
/// the logs, events and dead letters (whose records may be up to 1 MiB or 16 MiB).
///
/// This is the number of ids in one `HMGET` of such a page; each is sent once the previous one
/// is read. It bounds what Redis sends that the page does not load when values turn out larger
/// than the previous page's (at most 1000 times the record limit, 64 MiB, in the worst case; a
/// few hundred KB for typical records), and costs one round trip per 1000 records.
pub const UNGUARDED_IDS_PER_REQUEST: usize = 1000;

/// Redis: the most ids (or id/value pairs) one command carries; longer lists become several
/// commands in the same transaction. Bounds one command's size (~64 KiB of uuids per 1024),
/// keeping each well under Redis's argument limits and its per-command latency short.
pub const ARGS_PER_COMMAND: usize = 8192;

/// The most records one cleanup step removes. Redis: one call of the cleanup script (one atomic
/// step of `Store::cleanup`), which bounds how long Redis is blocked by the script. Embedded
/// store: the entries collected before deleting them, which bounds cleanup's memory.
pub const CLEANUP_BATCH: usize = 10_000;

/// Redis read-ahead: a step with at least this share of a page (1/10) has a backlog behind it,
/// likely: its next step's first page is read ahead. Fewer records (the host's own few per
/// interval) read nothing ahead, which would cost a thread and a read per step for nothing.
pub const NEXT_STEP_SHARE: usize = 10;

/// Redis page reads (`store/resp.rs`): the buffer replies are read from, 64 KiB: big enough for
/// a page's headers in few reads.
pub const RESP_READ_BUFFER_BYTES: usize = 64 * 1024;

/// Redis page reads (`store/resp.rs`): commands are sent once this many bytes are waiting: a
/// page's 10,000 `HSTRLEN` (about 1 MB) go out in pieces of 64 KiB instead of being held whole.
pub const RESP_SEND_AT_BYTES: usize = 64 * 1024;

/// Embedded store: redb's page cache, 512 KiB (redb's default is 1 GiB, which a long backlog
/// would fill with pages read once). Queues are read oldest first, once: a small cache costs
/// little. redb keeps nine tenths of it for reads, and its region allocator's state, about
/// 520 KB written when the file is opened, stays there when it fits: at 8 MiB (before 2026-12-02)
/// an agent collecting host metrics held it for its whole life, 0.5 MB of its 4.3 MB RSS. At
/// 512 KiB, the drain of `cargo bench -p chouette-agent --bench store` makes 35 % more `pread`
/// calls (29,632 against 21,967, strace) and 0.5 % more instructions (cachegrind), its rate
/// within the noise (142-166k against 163-181k records/s, three interleaved runs).
pub const REDB_CACHE_BYTES: usize = 512 * 1024;

/// Embedded store: the size of the probe a reopen writes (then removes) to prove writes work
/// again after an I/O error: 64 KiB, more than a delete or a status update of the next tick
/// needs.
pub const PROBE_BYTES: usize = 64 * 1024;

// ---- Pipeline (the aggregation step) -----------------------------------------------------------

/// The step's aggregator (`StepAggregator`): 32,768 series-buckets, a bucket's app series plus
/// the DogStatsD listener's contexts (`DOGSTATSD_MAX_CONTEXTS`, 20,000 by default). With
/// [`STEP_SKETCHES`] and [`STEP_KEY_BYTES`], about 7.3 MB, allocated for a run of steps and freed
/// when idle.
pub const STEP_SERIES: usize = 32768;

/// The step's aggregator: 1024 pooled sketches (3088 B each) for the histograms and sets that
/// outgrow their inline storage.
pub const STEP_SKETCHES: usize = 1024;

/// The step's aggregator: 2 MiB of names and tags.
pub const STEP_KEY_BYTES: usize = 2 << 20;

/// The small step's aggregator (`SmallStepAggregator`, used when the raw queue holds at most
/// [`SMALL_STEP_RECORDS`] records and the DogStatsD listener nothing: the agent's own
/// self-metrics, a collector's samples): 256 series-buckets. With [`SMALL_STEP_SKETCHES`] and
/// [`SMALL_STEP_KEY_BYTES`], about 100 KB (a test holds it under 128 KiB). Building the full
/// aggregator touches its 7.3 MB (on a thread's stack, then on the heap): about 8 ms of CPU, at
/// every aggregation tick of an idle agent. A step it has no room for is done again by the full
/// one.
pub const SMALL_STEP_SERIES: usize = 256;

/// The small step's aggregator: 16 pooled sketches.
pub const SMALL_STEP_SKETCHES: usize = 16;

/// The small step's aggregator: 32 KiB of names and tags.
pub const SMALL_STEP_KEY_BYTES: usize = 32768;

/// Most raw records queued for a step to use the small aggregator (one series each at most).
pub const SMALL_STEP_RECORDS: u64 = SMALL_STEP_SERIES as u64;

/// Most raw records one aggregation step commits. The step reads them in pages of
/// [`RAW_PAGE`], keeping only their ids (about 40 bytes each: about 4 MB at most) until the commit.
///
/// A bucket holding more raw records than this is committed in several steps; the records after
/// the first step's share are then late and folded into the next bucket (counted as late).
pub const MAX_RAW_PER_STEP: usize = 100_000;

/// Raw records read per round trip within a step. 5,000 drained a 300k backlog faster than
/// 10,000 and 2,500 (203-220k records/s against 155-192k and 147-150k: the static build on
/// `scripts/bench-agent.sh`'s backlog, side by side), and the pages read ahead hold half the
/// memory: the agent idle after that drain at 10.0 MB instead of 12.8.
pub const RAW_PAGE: usize = 5_000;

/// Most request durations kept per destination between two self-metrics reports (8 KB of `f64`
/// each), sent as the `chouette.dispatch.request.time` histogram; more are not kept.
pub const MAX_LATENCIES: usize = 1000;

// ---- Dispatch (the outputs) --------------------------------------------------------------------

/// Default largest series payload before compression: 5 MB. Far under Datadog v1's 62 MiB, so a
/// payload that must be retried stays small on a slow uplink; 10,000 points are about 1 MB.
/// InfluxDB and OpenTSDB payloads (sent uncompressed) are held to it too: it is under InfluxDB
/// 1.x's default `max-body-size` (25,000,000 bytes).
pub const DEFAULT_SERIES_MAX_UNCOMPRESSED_BYTES: usize = 5_000_000;

/// Largest series payload after compression: Datadog v1's documented 3.2 MB.
pub const DEFAULT_SERIES_MAX_COMPRESSED_BYTES: usize = V1_MAX_COMPRESSED_BYTES;

/// Logs intake: largest payload before compression, 5 MB (Datadog's documented limit).
pub const DEFAULT_LOGS_MAX_BYTES: usize = 5_000_000;

/// Logs intake: most entries in one payload, 1000 (Datadog's documented limit).
pub const DEFAULT_LOGS_MAX_ENTRIES: usize = 1000;

/// Logs intake: largest single log, 1 MB (Datadog's documented limit: the intake truncates
/// bigger ones; we dead-letter them whole instead, so nothing is silently cut).
pub const DEFAULT_LOG_MAX_ENTRY_BYTES: usize = 1_000_000;

/// Most log, event and service check records one release request reads from its outbox (the
/// logs intake's limit is 1000 entries, [`DEFAULT_LOGS_MAX_ENTRIES`]). Metric outboxes read
/// `METRICS_BULK_SIZE` records instead.
pub const LOGS_PER_BATCH: usize = 1000;

/// Largest event, as encoded: 1 MiB, what the store loads of one record of its queue
/// ([`MAX_LOG_RECORD_BYTES`]). A DogStatsD event is one datagram (8 KiB by default,
/// `DOGSTATSD_BUFFER_SIZE`); Datadog keeps 4000 characters of its text.
pub const EVENT_MAX_BYTES: usize = 1024 * 1024;

/// Largest service checks payload before compression: 4 MiB, the Datadog Agent's
/// `serializer_max_uncompressed_payload_size`.
pub const SERVICE_CHECKS_MAX_UNCOMPRESSED_BYTES: usize = 4 * 1024 * 1024;

/// Largest service checks payload after compression: 2.5 MiB, the Datadog Agent's
/// `serializer_max_payload_size`.
pub const SERVICE_CHECKS_MAX_COMPRESSED_BYTES: usize = 2_621_440;

/// Most service checks in one payload: 1000 (about 200 KB), so a retried payload stays small.
pub const SERVICE_CHECKS_MAX_ENTRIES: usize = 1000;

/// Most bytes of a response body kept (for the log line of a refused request): 4 KiB, enough for
/// any backend's error message, and a misbehaving endpoint cannot make the agent read more.
pub const MAX_RESPONSE_BODY_BYTES: usize = 4096;

// ---- DogStatsD ---------------------------------------------------------------------------------

/// Datagrams read per `recvmmsg` call by the listener (the socket's default too). With
/// `DOGSTATSD_BUFFER_SIZE` at its 8 KiB default, a receive thread's buffers take 512 KiB.
pub const DOGSTATSD_BATCH: usize = 64;

/// Most datagrams read by one `recvmmsg` call: a socket's batch is capped to this. The call's
/// headers live on the reading thread's stack (80 bytes each: 20 KiB).
pub const DOGSTATSD_MAX_BATCH: usize = 256;

/// Largest datagram size a socket accepts (a larger `DOGSTATSD_BUFFER_SIZE` is an invalid option
/// of the socket, which is not bound): 64 KiB, above any UDP datagram (65,507 bytes of payload over IPv4) and the largest buffer DogStatsD
/// clients use for Unix sockets. Bounds a socket's buffers at [`DOGSTATSD_MAX_BATCH`] × 64 KiB
/// = 16 MiB.
pub const MAX_DATAGRAM_BYTES: usize = 64 * 1024;

/// Histogram samples a context keeps as a plain list, unsorted, before it moves to a
/// `Histogram`: as many as the histogram keeps exactly (the core's `EXACT_SAMPLES`, 2 KB), so a
/// sample costs a push, not a sorted insert.
pub const DOGSTATSD_INLINE_SAMPLES: usize = EXACT_SAMPLES;

/// Set members a context keeps as a plain list of hashes before it moves to a `SetCounter`
/// (3 KB).
pub const DOGSTATSD_INLINE_MEMBERS: usize = 8;

/// Heaviest sample weight (`1/rate`) recorded: a histogram line at a lower rate is refused
/// (`sample_rate_too_low`) rather than inserted millions of times; 10,000 insertions bound the
/// time one line costs.
pub const MAX_WEIGHT: u32 = 10_000;

/// Most `|T` points waiting for the listener's next turn; more are refused (`timestamped_full`).
pub const MAX_TIMESTAMPED: usize = 100_000;

/// Most events and service checks waiting for the listener's next turn; more are ignored,
/// counted (`events_full`).
pub const MAX_EVENTS: usize = 10_000;

/// Most buckets the listener's memory holds: while the aggregation step cannot commit (the store
/// is down), lines past this many buckets fold into the newest one (late) instead of opening
/// more, so an outage costs at most six buckets of contexts.
pub const MAX_HELD_BUCKETS: usize = 6;

// ---- Serial link (gateway side) ----------------------------------------------------------------

/// Bytes a device thread reads from its port at once (a stack buffer): 4 KiB, seven whole frames
/// of the largest size (`max_frame_bytes(MAX_PAYLOAD)`: 516 bytes encoded), about 0.36 s of a
/// line at 115,200 baud 8N1.
pub const SERIAL_READ_BYTES: usize = 4096;

/// The credit the gateway grants: frames in flight, unacknowledged, from one device (the
/// device's own window is 4 too).
pub const SERIAL_WINDOW_FRAMES: u8 = 4;

/// Frames queued while data waits for the clock (the device's window is 4; retransmissions
/// repeat them): beyond this the oldest are dropped (the device sends them again).
pub const MAX_QUEUED_FRAMES: usize = 64;

/// Time samples kept per device for its clock offset (the smallest round trip wins).
pub const TIME_SAMPLES: usize = 8;

// ---- `chouette dead` ---------------------------------------------------------------------------

/// Records read (and moved) in the first step. Later steps double while a page holds less than
/// [`DEAD_PAGE_BYTES`] / 2 and halve when it holds more than twice that, between 1 and
/// [`DEAD_MAX_PAGE_RECORDS`]: small records move in few large batches (one fsync each with the
/// embedded store), and 1 MiB logs a few at a time.
pub const DEAD_PAGE_RECORDS: usize = 16;

/// The most records one step of `chouette dead` reads and moves.
pub const DEAD_MAX_PAGE_RECORDS: usize = 4096;

/// The bytes (ids and envelopes) one step of `chouette dead` aims at: what it holds in memory,
/// 4 MiB.
pub const DEAD_PAGE_BYTES: usize = 4 << 20;

// ---- Collectors --------------------------------------------------------------------------------

/// `host`: longest mount point or device name decoded (the kernel's `PATH_MAX`); a longer one is
/// used as written. Two such buffers (8 KiB) live on the stack while the mounts are read.
pub const HOST_MAX_PATH_BYTES: usize = 4096;

/// `docker`: most concurrent stats requests (one thread each).
pub const DOCKER_POOL: usize = 4;

/// `docker`: largest response body read (a stats document is a few KB; a list of many containers
/// more).
pub const DOCKER_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// `k8s`: largest kubelet summary read.
pub const K8S_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
