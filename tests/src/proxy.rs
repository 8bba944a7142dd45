//! A fault-injecting byte proxy for the serial link's end-to-end tests: the device's line
//! (a Unix socket that QEMU serves as UART0) on one side, the gateway (the agent, which
//! connects to a Unix socket as it would open a tty) on the other, and seeded loss, bit flips,
//! duplicated chunks and delay in between. QEMU never loses a UART byte; this does, and the same
//! seed on the same bytes does it again, so a failure in CI replays.
//!
//! ```no_run
//! use std::path::Path;
//! use chouette_tests::proxy::{FaultProxy, Faults, LineFaults};
//!
//! let line = LineFaults { drop_per_byte: 1e-3, flip_per_byte: 1e-3, ..LineFaults::none() };
//! let faults = Faults {
//!     seed: Faults::fresh_seed(), // printed at start; CHOUETTE_FAULT_SEED=<it> replays the run
//!     device_to_gateway: LineFaults { duplicate_per_chunk: 0.01, ..line },
//!     gateway_to_device: line,
//!     ..Faults::none()
//! };
//! // A: QEMU's `-serial unix:A,server=on,wait=on`; B: the agent's `SERIAL_DEVICES='["unix:B"]'`.
//! let proxy = FaultProxy::start(Path::new("/tmp/a.sock"), Path::new("/tmp/b.sock"), faults);
//! proxy.pause();  // the gateway is away: B is gone, the device's bytes are held
//! proxy.resume(); // B is back; the held bytes go to the next client, in order
//! let stats = proxy.stop();
//! ```
//!
//! What it models:
//!
//! - **The device side is one long line.** The proxy connects to A (retrying until it exists:
//!   QEMU creates it) and keeps that connection whatever the gateway does. If A closes (the
//!   emulator exits), it connects again, and the gateway's connection is left alone, as a tty
//!   stays open while the board behind it resets.
//! - **The gateway side comes and goes.** One client at a time on B; a new client replaces the
//!   old one (a restarted agent may connect before its dead predecessor's socket is noticed). A
//!   killed client loses at most what the kernel had buffered for it, as a UART loses bytes.
//! - **A line backs up.** Bytes that cannot be delivered (no client on B, or no device on A for
//!   the other direction) are held, in order, up to [`Faults::hold_bytes`] per direction; past
//!   that the newest are dropped and counted ([`LineStats::overflowed`]), as a UART's FIFO
//!   overruns (a limit of 0: everything sent while nobody listens is lost). While the destination
//!   is connected the proxy does not drop: it stops reading the source instead, as a socket
//!   would. Bytes already queued when a destination goes away stay queued for the next one.
//! - **Faults are a function of the byte stream and the seed**, not of timing or of how reads
//!   split it ([`FaultStream`]): the same seed on the same bytes drops, flips and duplicates the
//!   same bytes. Each direction has its own generator, derived from the seed.
//!
//! The effective seed is printed when the proxy starts; `CHOUETTE_FAULT_SEED` overrides the one
//! in [`Faults`] to replay a failing run.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The environment variable that overrides [`Faults::seed`], to replay a run from its log.
pub const SEED_VAR: &str = "CHOUETTE_FAULT_SEED";

/// Bytes held per direction while nobody is there to take them: 64 KiB, about eleven minutes of
/// the demo firmware's ~100 B/s (one minute is 6 KB), so a gateway away for a minute loses
/// nothing in the proxy. Bounded so that a run that never reconnects does not grow forever.
pub const DEFAULT_HOLD_BYTES: usize = 64 * 1024;

/// Bytes on their way to a connected destination past which the proxy stops reading the source
/// (backpressure, as a socket gives), whatever the hold limit: a hold limit of 0 still forwards.
pub const IN_FLIGHT_BYTES: usize = 64 * 1024;

/// The longest duplicated chunk: the stream is cut into chunks of 1 to this many bytes (lengths
/// drawn from the seed), and each chunk is sent twice with probability
/// [`LineFaults::duplicate_per_chunk`].
pub const MAX_CHUNK_BYTES: usize = 64;

/// How often the proxy retries connecting to the device's socket, and polls its listener.
const RETRY_MS: u64 = 10;

/// Faults on one direction of the line. All zero ([`LineFaults::none`]) forwards every byte as is.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LineFaults {
    /// Probability that a byte is dropped.
    pub drop_per_byte: f64,
    /// Probability that a byte (not dropped) has one of its bits flipped.
    pub flip_per_byte: f64,
    /// Probability that a chunk (1 to [`MAX_CHUNK_BYTES`] bytes of the stream) is sent twice,
    /// the copy right after the original.
    pub duplicate_per_chunk: f64,
    /// How long each byte waits in the proxy before it is sent on.
    pub delay: Duration,
}

impl LineFaults {
    /// No fault, no delay.
    pub fn none() -> LineFaults {
        LineFaults::default()
    }
}

/// The proxy's faults, per direction, with their seed and the hold limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Seeds both directions' generators (overridden by [`SEED_VAR`]).
    pub seed: u64,
    /// From the device (A) to the gateway (B): frames, hellos, time answers.
    pub device_to_gateway: LineFaults,
    /// From the gateway (B) to the device (A): acks, naks, time requests.
    pub gateway_to_device: LineFaults,
    /// Bytes held per direction while the destination is away ([`DEFAULT_HOLD_BYTES`]).
    pub hold_bytes: usize,
}

impl Faults {
    /// No faults in either direction, the default hold limit, seed 0.
    pub fn none() -> Faults {
        Faults {
            seed: 0,
            device_to_gateway: LineFaults::none(),
            gateway_to_device: LineFaults::none(),
            hold_bytes: DEFAULT_HOLD_BYTES,
        }
    }

    /// The transformer the proxy runs on `direction` when its effective seed is `seed`
    /// ([`FaultProxy::seed`]): feed it what the source sends to know what the destination gets.
    pub fn stream(&self, direction: Direction, seed: u64) -> FaultStream {
        let faults = match direction {
            Direction::DeviceToGateway => self.device_to_gateway,
            Direction::GatewayToDevice => self.gateway_to_device,
        };
        FaultStream::new(direction_seed(seed, direction), faults)
    }

    /// A seed that differs from run to run (time and pid), for a suite that explores: the proxy
    /// prints it, and [`SEED_VAR`] replays it.
    pub fn fresh_seed() -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        SplitMix64::new(nanos ^ u64::from(std::process::id()).rotate_left(32)).next_u64()
    }
}

/// The seed the proxy uses: [`SEED_VAR`] when set, else `configured`.
///
/// # Panics
///
/// When [`SEED_VAR`] is set but is not a decimal or `0x` hexadecimal `u64`.
pub fn effective_seed(configured: u64) -> u64 {
    match std::env::var(SEED_VAR) {
        Ok(text) => parse_seed(&text).unwrap_or_else(|e| panic!("{SEED_VAR}={text:?} is not a u64: {e}")),
        Err(_) => configured,
    }
}

/// A seed as printed (decimal) or as hexadecimal with `0x`.
fn parse_seed(text: &str) -> Result<u64, std::num::ParseIntError> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded generator, good enough to decide faults,
/// and every seed (0 included) gives a full-period stream.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p` (false for `p <= 0`, true for `p >= 1`).
    pub fn chance(&mut self, p: f64) -> bool {
        // 53 random bits as a float in [0, 1).
        ((self.next_u64() >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < p
    }

    /// A number in `0..n` (`n > 0`; the bias of the modulo is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// What the faults did to one direction's stream so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Bytes dropped.
    pub dropped: u64,
    /// Bytes with one bit flipped.
    pub flipped: u64,
    /// Chunks sent twice.
    pub duplicated_chunks: u64,
    /// Bytes sent a second time (the copies' total length).
    pub duplicated_bytes: u64,
}

/// One direction's faults as a pure stream transformer: bytes in, faulted bytes out, decided by
/// the seed and the position in the stream only. However the input is split across
/// [`FaultStream::feed`] calls, the output is the same. The proxy runs one per direction; a test
/// runs one to know exactly what the proxy will deliver.
#[derive(Debug, Clone)]
pub struct FaultStream {
    rng: SplitMix64,
    faults: LineFaults,
    /// Input bytes left in the current chunk (0: draw the next chunk).
    chunk_left: usize,
    /// Whether the current chunk is sent twice.
    chunk_twice: bool,
    /// The current chunk's bytes as sent, when it is sent twice.
    chunk: Vec<u8>,
    counts: FaultCounts,
}

impl FaultStream {
    /// A transformer for `faults`, its generator seeded with `seed`.
    pub fn new(seed: u64, faults: LineFaults) -> FaultStream {
        FaultStream {
            rng: SplitMix64::new(seed),
            faults,
            chunk_left: 0,
            chunk_twice: false,
            chunk: Vec::new(),
            counts: FaultCounts::default(),
        }
    }

    /// Appends to `out` what the line delivers of `input`. A duplicated chunk's copy follows the
    /// chunk's last byte, so it can come out of a later call.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let LineFaults { drop_per_byte, flip_per_byte, duplicate_per_chunk, .. } = self.faults;
        let chunks = duplicate_per_chunk > 0.0;
        for &byte in input {
            if chunks && self.chunk_left == 0 {
                self.chunk_left = 1 + self.rng.below(MAX_CHUNK_BYTES as u64) as usize;
                self.chunk_twice = self.rng.chance(duplicate_per_chunk);
                self.chunk.clear();
            }
            if drop_per_byte > 0.0 && self.rng.chance(drop_per_byte) {
                self.counts.dropped += 1;
            } else {
                let mut byte = byte;
                if flip_per_byte > 0.0 && self.rng.chance(flip_per_byte) {
                    byte ^= 1 << self.rng.below(8);
                    self.counts.flipped += 1;
                }
                out.push(byte);
                if self.chunk_twice {
                    self.chunk.push(byte);
                }
            }
            if chunks {
                self.chunk_left -= 1;
                if self.chunk_left == 0 && self.chunk_twice && !self.chunk.is_empty() {
                    out.extend_from_slice(&self.chunk);
                    self.counts.duplicated_chunks += 1;
                    self.counts.duplicated_bytes += self.chunk.len() as u64;
                }
            }
        }
    }

    /// What the faults did so far.
    pub fn counts(&self) -> FaultCounts {
        self.counts
    }
}

/// The seed of one direction's generator: both directions derive from the proxy's seed, and
/// neither one's draws depend on the other's traffic.
fn direction_seed(seed: u64, direction: Direction) -> u64 {
    match direction {
        Direction::DeviceToGateway => seed,
        Direction::GatewayToDevice => seed ^ 0x5851_f42d_4c95_7f2d,
    }
}

/// One direction of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the device (A) to the gateway (B).
    DeviceToGateway,
    /// From the gateway (B) to the device (A).
    GatewayToDevice,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::DeviceToGateway => 0,
            Direction::GatewayToDevice => 1,
        }
    }
}

/// One direction's counters. At rest (nothing in flight):
/// `received - dropped + duplicated_bytes == forwarded + held + overflowed`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineStats {
    /// Bytes read from the source.
    pub received: u64,
    /// Bytes written to the destination (copies and flipped bytes included). A destination that
    /// dies may not have read the last of them.
    pub forwarded: u64,
    /// What the faults did.
    pub faults: FaultCounts,
    /// Bytes waiting in the proxy now (no destination, a slow one, or the delay).
    pub held: u64,
    /// The most bytes ever waiting at once.
    pub held_max: u64,
    /// Bytes dropped because [`Faults::hold_bytes`] were already waiting with no destination.
    pub overflowed: u64,
}

/// The proxy's counters, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// From the device (A) to the gateway (B).
    pub device_to_gateway: LineStats,
    /// From the gateway (B) to the device (A).
    pub gateway_to_device: LineStats,
    /// Clients accepted on B.
    pub clients: u64,
    /// Connections made to A.
    pub upstream_connects: u64,
}

impl std::fmt::Display for LineStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.faults;
        write!(
            f,
            "received={} forwarded={} dropped={} flipped={} duplicated_chunks={} duplicated_bytes={} \
             held={} held_max={} overflowed={}",
            self.received,
            self.forwarded,
            c.dropped,
            c.flipped,
            c.duplicated_chunks,
            c.duplicated_bytes,
            self.held,
            self.held_max,
            self.overflowed
        )
    }
}

/// One line per direction and one for the connections, fields first, for a test's log.
impl std::fmt::Display for ProxyStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "direction=device_to_gateway {}", self.device_to_gateway)?;
        writeln!(f, "direction=gateway_to_device {}", self.gateway_to_device)?;
        write!(
            f,
            "clients={} upstream_connects={} fault proxy connections",
            self.clients, self.upstream_connects
        )
    }
}

/// A connected end, with an id so that a thread that saw it fail clears that one and not its
/// successor.
struct Peer {
    id: u64,
    stream: Arc<UnixStream>,
}

impl Peer {
    fn close(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Bytes waiting for their destination, sent from `sent` on, not before `release_at`.
struct Pending {
    release_at: Instant,
    bytes: Vec<u8>,
    sent: usize,
}

struct Line {
    faults: FaultStream,
    delay: Duration,
    queue: VecDeque<Pending>,
    queued: usize,
    stats: LineStats,
}

struct State {
    stopping: bool,
    paused: bool,
    listener: Option<UnixListener>,
    client: Option<Peer>,
    upstream: Option<Peer>,
    next_id: u64,
    lines: [Line; 2],
    hold_bytes: usize,
    clients: u64,
    upstream_connects: u64,
    client_readers: Vec<JoinHandle<()>>,
}

impl State {
    fn destination(&self, direction: Direction) -> Option<&Peer> {
        match direction {
            Direction::DeviceToGateway => self.client.as_ref(),
            Direction::GatewayToDevice => self.upstream.as_ref(),
        }
    }

    fn line(&mut self, direction: Direction) -> &mut Line {
        &mut self.lines[direction.index()]
    }

    fn next_peer(&mut self, stream: UnixStream) -> Peer {
        self.next_id += 1;
        Peer { id: self.next_id, stream: Arc::new(stream) }
    }

    /// Forgets the destination of `direction` if it is still `id`.
    fn drop_destination(&mut self, direction: Direction, id: u64) {
        let slot = match direction {
            Direction::DeviceToGateway => &mut self.client,
            Direction::GatewayToDevice => &mut self.upstream,
        };
        if slot.as_ref().is_some_and(|peer| peer.id == id) {
            if let Some(peer) = slot.take() {
                peer.close();
            }
        }
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.wake.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    fn wait_for<'a>(&self, guard: MutexGuard<'a, State>, within: Duration) -> MutexGuard<'a, State> {
        self.wake.wait_timeout(guard, within).unwrap_or_else(|e| e.into_inner()).0
    }

    /// Runs `input` (read from the source of `direction`) through the faults and queues it.
    /// While the destination is connected, waits for room (past the hold limit or
    /// [`IN_FLIGHT_BYTES`], whichever is larger); while it is not, drops and counts what does
    /// not fit under the hold limit.
    fn ingest(&self, direction: Direction, input: &[u8]) {
        let mut state = self.lock();
        let hold = state.hold_bytes;
        let line = state.line(direction);
        line.stats.received += input.len() as u64;
        let mut out = Vec::with_capacity(input.len() + MAX_CHUNK_BYTES);
        line.faults.feed(input, &mut out);
        let release_at = Instant::now() + line.delay;
        let mut rest = &out[..];
        while !rest.is_empty() {
            let connected = state.destination(direction).is_some() && !state.stopping;
            let cap = if connected { hold.max(IN_FLIGHT_BYTES) } else { hold };
            let line = state.line(direction);
            let room = cap.saturating_sub(line.queued);
            if room > 0 {
                let (now, later) = rest.split_at(room.min(rest.len()));
                line.queue.push_back(Pending { release_at, bytes: now.to_vec(), sent: 0 });
                line.queued += now.len();
                line.stats.held_max = line.stats.held_max.max(line.queued as u64);
                rest = later;
                self.wake.notify_all();
            } else if connected {
                state = self.wait(state);
            } else {
                state.line(direction).stats.overflowed += rest.len() as u64;
                break;
            }
        }
    }

    /// Sends what `direction` holds to its destination, whoever that is at the time, until stop.
    fn write_loop(&self, direction: Direction) {
        let mut state = self.lock();
        loop {
            if state.stopping {
                return;
            }
            let Some((id, stream)) = state.destination(direction).map(|p| (p.id, Arc::clone(&p.stream)))
            else {
                state = self.wait(state);
                continue;
            };
            let now = Instant::now();
            let bytes = match state.line(direction).queue.front() {
                None => {
                    state = self.wait(state);
                    continue;
                }
                Some(front) if front.release_at > now => {
                    let within = front.release_at - now;
                    state = self.wait_for(state, within);
                    continue;
                }
                Some(front) => front.bytes[front.sent..].to_vec(),
            };
            drop(state);
            let written = (&*stream).write(&bytes);
            state = self.lock();
            match written {
                Ok(n) if n > 0 => {
                    let line = state.line(direction);
                    if let Some(front) = line.queue.front_mut() {
                        front.sent += n;
                        if front.sent == front.bytes.len() {
                            line.queue.pop_front();
                        }
                    }
                    line.queued -= n;
                    line.stats.forwarded += n as u64;
                    self.wake.notify_all();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The destination is gone (EPIPE, reset, or a write of nothing): what was not
                // written stays queued for the next one.
                Ok(_) | Err(_) => {
                    state.drop_destination(direction, id);
                    self.wake.notify_all();
                }
            }
        }
    }

    /// Reads `stream` (the source of `direction`) until it ends, then forgets it.
    fn read_loop(&self, direction: Direction, id: u64, stream: &UnixStream) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match (&*stream).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.ingest(direction, &buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let source = match direction {
            Direction::DeviceToGateway => Direction::GatewayToDevice,
            Direction::GatewayToDevice => Direction::DeviceToGateway,
        };
        let mut state = self.lock();
        // The source of one direction is the destination of the other.
        state.drop_destination(source, id);
        self.wake.notify_all();
    }
}

/// The fault-injecting proxy. Its threads stop, and B is removed, on [`FaultProxy::stop`] or drop.
pub struct FaultProxy {
    shared: Arc<Shared>,
    listen: PathBuf,
    seed: u64,
    threads: Vec<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on `listen` (B, replacing a stale socket file) and connects to `upstream` (A) in
    /// the background, retrying until it exists; prints the effective seed.
    ///
    /// # Panics
    ///
    /// When B cannot be bound, or [`SEED_VAR`] is not a number.
    pub fn start(upstream: &Path, listen: &Path, faults: Faults) -> FaultProxy {
        let seed = effective_seed(faults.seed);
        eprintln!(
            "upstream={} listen={} seed={seed} faults={faults:?} fault proxy started; \
             {SEED_VAR}={seed} replays it",
            upstream.display(),
            listen.display(),
        );
        let line = |direction: Direction, delay: Duration| Line {
            faults: faults.stream(direction, seed),
            delay,
            queue: VecDeque::new(),
            queued: 0,
            stats: LineStats::default(),
        };
        let state = State {
            stopping: false,
            paused: false,
            listener: Some(bind(listen)),
            client: None,
            upstream: None,
            next_id: 0,
            lines: [
                line(Direction::DeviceToGateway, faults.device_to_gateway.delay),
                line(Direction::GatewayToDevice, faults.gateway_to_device.delay),
            ],
            hold_bytes: faults.hold_bytes,
            clients: 0,
            upstream_connects: 0,
            client_readers: Vec::new(),
        };
        let shared = Arc::new(Shared { state: Mutex::new(state), wake: Condvar::new() });
        let mut threads = Vec::new();
        for direction in [Direction::DeviceToGateway, Direction::GatewayToDevice] {
            let shared = Arc::clone(&shared);
            threads.push(spawn("fault-proxy-write", move || shared.write_loop(direction)));
        }
        let upstream = upstream.to_path_buf();
        let up = Arc::clone(&shared);
        threads.push(spawn("fault-proxy-upstream", move || upstream_loop(&up, &upstream)));
        let acc = Arc::clone(&shared);
        threads.push(spawn("fault-proxy-accept", move || accept_loop(&acc)));
        FaultProxy { shared, listen: listen.to_path_buf(), seed, threads }
    }

    /// The seed in use (the configured one, or [`SEED_VAR`]'s).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// B, where the gateway connects.
    pub fn listen_path(&self) -> &Path {
        &self.listen
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        let state = self.shared.lock();
        let line =
            |line: &Line| LineStats { faults: line.faults.counts(), held: line.queued as u64, ..line.stats };
        ProxyStats {
            device_to_gateway: line(&state.lines[0]),
            gateway_to_device: line(&state.lines[1]),
            clients: state.clients,
            upstream_connects: state.upstream_connects,
        }
    }

    /// Whether the proxy is connected to the device (A) now.
    pub fn upstream_connected(&self) -> bool {
        self.shared.lock().upstream.is_some()
    }

    /// Whether a gateway client is connected to B now (as far as the proxy has noticed).
    pub fn client_connected(&self) -> bool {
        self.shared.lock().client.is_some()
    }

    /// The gateway goes away: the client on B is closed and B is removed, so a connection
    /// attempt fails as it would on an unplugged device, until [`FaultProxy::resume`]. The
    /// device's bytes are held meanwhile (up to the hold limit).
    pub fn pause(&self) {
        let mut state = self.shared.lock();
        state.paused = true;
        state.listener = None;
        let _ = std::fs::remove_file(&self.listen);
        if let Some(client) = state.client.take() {
            client.close();
        }
        self.shared.wake.notify_all();
    }

    /// B is back: the next client gets the held bytes, in order.
    ///
    /// # Panics
    ///
    /// When B cannot be bound again.
    pub fn resume(&self) {
        let mut state = self.shared.lock();
        if state.paused && !state.stopping {
            state.paused = false;
            state.listener = Some(bind(&self.listen));
        }
    }

    /// Stops the proxy (closes both ends, joins its threads, removes B) and returns the last
    /// counters.
    pub fn stop(mut self) -> ProxyStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        let readers = {
            let mut state = self.shared.lock();
            state.stopping = true;
            state.listener = None;
            if let Some(client) = state.client.take() {
                client.close();
            }
            if let Some(upstream) = state.upstream.take() {
                upstream.close();
            }
            self.shared.wake.notify_all();
            std::mem::take(&mut state.client_readers)
        };
        for thread in self.threads.drain(..).chain(readers) {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.listen);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown();
        }
    }
}

fn spawn(name: &str, run: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new().name(name.into()).spawn(run).expect("spawn a fault proxy thread")
}

/// Binds B (non-blocking, polled by the accept loop), replacing a stale socket file.
fn bind(path: &Path) -> UnixListener {
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).unwrap_or_else(|e| panic!("fault proxy: bind {}: {e}", path.display()));
    listener.set_nonblocking(true).expect("non-blocking listener");
    listener
}

/// Makes a connected stream blocking, with a write timeout so a writer stuck on a peer that
/// does not read still sees a stop.
fn prepare(stream: &UnixStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
}

/// Connects to A (retrying), reads it until it ends, connects again; until stop.
fn upstream_loop(shared: &Arc<Shared>, path: &Path) {
    loop {
        let stream = loop {
            if shared.lock().stopping {
                return;
            }
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(_) => std::thread::sleep(Duration::from_millis(RETRY_MS)),
            }
        };
        prepare(&stream);
        let (id, stream) = {
            let mut state = shared.lock();
            if state.stopping {
                return;
            }
            let peer = state.next_peer(stream);
            let taken = (peer.id, Arc::clone(&peer.stream));
            state.upstream = Some(peer);
            state.upstream_connects += 1;
            shared.wake.notify_all();
            taken
        };
        shared.read_loop(Direction::DeviceToGateway, id, &stream);
    }
}

/// Accepts clients on B while not paused; a new client replaces the current one.
fn accept_loop(shared: &Arc<Shared>) {
    loop {
        let mut state = shared.lock();
        if state.stopping {
            return;
        }
        let accepted = state.listener.as_ref().map(|listener| listener.accept());
        match accepted {
            Some(Ok((stream, _))) => {
                prepare(&stream);
                let peer = state.next_peer(stream);
                let (id, stream) = (peer.id, Arc::clone(&peer.stream));
                if let Some(old) = state.client.replace(peer) {
                    old.close();
                }
                state.clients += 1;
                state.client_readers.retain(|reader| !reader.is_finished());
                let reader = Arc::clone(shared);
                state.client_readers.push(spawn("fault-proxy-client", move || {
                    reader.read_loop(Direction::GatewayToDevice, id, &stream)
                }));
                shared.wake.notify_all();
            }
            Some(Err(e)) if e.kind() != ErrorKind::WouldBlock => {
                eprintln!("listen error={e} fault proxy could not accept a client; retrying");
                drop(state);
                std::thread::sleep(Duration::from_millis(RETRY_MS));
            }
            _ => {
                drop(state);
                std::thread::sleep(Duration::from_millis(RETRY_MS));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faulty() -> LineFaults {
        LineFaults {
            drop_per_byte: 0.01,
            flip_per_byte: 0.01,
            duplicate_per_chunk: 0.05,
            ..LineFaults::none()
        }
    }

    fn all_bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 256) as u8).collect()
    }

    #[test]
    fn no_faults_is_the_identity() {
        let input = all_bytes(100_000);
        let mut stream = FaultStream::new(1, LineFaults::none());
        let mut out = Vec::new();
        stream.feed(&input, &mut out);
        assert!(out == input);
        assert_eq!(stream.counts(), FaultCounts::default());
    }

    #[test]
    fn the_output_does_not_depend_on_how_the_input_is_split() {
        let input = all_bytes(200_000);
        let mut whole = FaultStream::new(42, faulty());
        let mut expected = Vec::new();
        whole.feed(&input, &mut expected);

        let mut split = FaultStream::new(42, faulty());
        let mut sizes = SplitMix64::new(9);
        let (mut out, mut rest) = (Vec::new(), &input[..]);
        while !rest.is_empty() {
            let n = (1 + sizes.below(300) as usize).min(rest.len());
            split.feed(&rest[..n], &mut out);
            rest = &rest[n..];
        }
        assert!(out == expected);
        assert_eq!(split.counts(), whole.counts());
    }

    #[test]
    fn the_counts_account_for_every_byte_and_follow_the_probabilities() {
        let input = all_bytes(1 << 20);
        let mut stream = FaultStream::new(7, faulty());
        let mut out = Vec::new();
        stream.feed(&input, &mut out);
        let c = stream.counts();
        let len = input.len() as u64;
        assert_eq!(out.len() as u64, len - c.dropped + c.duplicated_bytes);
        // 1 MiB at 1 %: 10,486 expected, σ ≈ 102; the seed is fixed, so the figure is too.
        assert!((9_900..11_100).contains(&c.dropped), "{c:?}");
        assert!((9_800..11_100).contains(&c.flipped), "{c:?}");
        // Chunks average 32.5 bytes: ~32,263 of them, 5 % sent twice.
        assert!((1_450..1_800).contains(&c.duplicated_chunks), "{c:?}");
    }

    #[test]
    fn a_flip_changes_one_bit_of_one_byte() {
        let input = all_bytes(1 << 16);
        let faults = LineFaults { flip_per_byte: 0.02, ..LineFaults::none() };
        let mut stream = FaultStream::new(3, faults);
        let mut out = Vec::new();
        stream.feed(&input, &mut out);
        assert_eq!(out.len(), input.len());
        let changed: Vec<u32> =
            out.iter().zip(&input).map(|(o, i)| (o ^ i).count_ones()).filter(|&n| n > 0).collect();
        assert!(changed.iter().all(|&bits| bits == 1));
        assert_eq!(changed.len() as u64, stream.counts().flipped);
        assert!(changed.len() > 1000, "{}", changed.len());
    }

    #[test]
    fn a_different_seed_gives_different_faults() {
        let input = all_bytes(10_000);
        let run = |seed| {
            let mut stream = FaultStream::new(seed, faulty());
            let mut out = Vec::new();
            stream.feed(&input, &mut out);
            out
        };
        assert!(run(1) == run(1));
        assert!(run(1) != run(2));
    }

    #[test]
    fn splitmix64_matches_the_reference_stream() {
        // The first outputs for seed 1234567 of the reference C implementation (Vigna).
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn the_counters_print_fields_first() {
        let stats = ProxyStats {
            device_to_gateway: LineStats {
                received: 10,
                forwarded: 9,
                faults: FaultCounts { dropped: 2, flipped: 1, duplicated_chunks: 1, duplicated_bytes: 3 },
                held: 1,
                held_max: 5,
                overflowed: 1,
            },
            clients: 2,
            upstream_connects: 1,
            ..ProxyStats::default()
        };
        assert_eq!(
            stats.to_string(),
            "direction=device_to_gateway received=10 forwarded=9 dropped=2 flipped=1 duplicated_chunks=1 \
             duplicated_bytes=3 held=1 held_max=5 overflowed=1\n\
             direction=gateway_to_device received=0 forwarded=0 dropped=0 flipped=0 duplicated_chunks=0 \
             duplicated_bytes=0 held=0 held_max=0 overflowed=0\n\
             clients=2 upstream_connects=1 fault proxy connections"
        );
    }

    #[test]
    fn a_seed_is_read_in_decimal_or_hex() {
        assert_eq!(parse_seed("12345"), Ok(12_345));
        assert_eq!(parse_seed(" 0xff\n"), Ok(255));
        assert_eq!(parse_seed(&u64::MAX.to_string()), Ok(u64::MAX));
        assert!(parse_seed("seven").is_err());
    }
}
