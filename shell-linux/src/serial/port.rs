//! One serial link's byte pipe: a tty in raw mode, or a Unix socket to an emulator's UART.
//!
//! [`Port`] is one open connection. A read waits at most a given timeout (`poll(2)` on a
//! non-blocking descriptor) and says which of three things happened: bytes arrived, nothing
//! arrived in time ([`Received::Timeout`]), or the other side is gone ([`Received::Eof`]; a tty
//! that is hung up or unplugged usually answers `EIO` or `ENXIO`, an error). [`Reconnecting`] wraps
//! it: on EOF or any error it closes the port, logs once, and reopens it with a backoff, so a
//! device that disappears and comes back (USB unplug, emulator restart) needs no agent restart.
//!
//! Raw mode is `cfmakeraw` plus what it leaves out: 8N1, `CLOCAL | CREAD`, no hardware or
//! software flow control (`IXOFF`, `IXANY`, `CRTSCTS` off), so every byte value (0x00, XON 0x11,
//! XOFF 0x13, CR, LF) crosses unaltered in both directions. All through rustix: no `unsafe`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::termios::{self, ControlModes, InputModes, OptionalActions, SpecialCodeIndex};

use super::Endpoint;

/// The baud rates a tty may be set to (`SERIAL_BAUD`): the standard Linux rates from 1200 up.
/// Others are refused at configuration time rather than left to a driver's rounding.
pub const SUPPORTED_BAUDS: [u32; 19] = [
    1200, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 500_000, 576_000, 921_600,
    1_000_000, 1_152_000, 1_500_000, 2_000_000, 3_000_000, 4_000_000,
];

/// How long a write may wait for room in the device's buffer before the port counts as stuck.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The first reopen delay after a disconnect; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest reopen delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What one [`Port::read`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// This many bytes (at least one) are at the start of the buffer.
    Data(usize),
    /// Nothing arrived within the timeout; the port is still open.
    Timeout,
    /// The other side closed (socket peer gone, tty hung up): reopen.
    Eof,
}

/// A port that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The path cannot be opened or connected to (absent, refused, permission denied).
    #[error("device={device}: cannot open: {source}")]
    Open {
        /// The `SERIAL_DEVICES` entry.
        device: String,
        /// Why.
        source: io::Error,
    },
    /// The path opened but is not a tty, or refused raw mode or the baud rate.
    #[error("device={device}: cannot set raw mode at {baud} baud: {source}")]
    Termios {
        /// The `SERIAL_DEVICES` entry.
        device: String,
        /// The rate asked for.
        baud: u32,
        /// Why.
        source: io::Error,
    },
}

impl PortError {
    /// The I/O error underneath.
    pub fn io(&self) -> &io::Error {
        match self {
            PortError::Open { source, .. } | PortError::Termios { source, .. } => source,
        }
    }
}

enum Conn {
    Tty(File),
    Unix(UnixStream),
}

/// One open serial connection.
pub struct Port {
    conn: Conn,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.conn {
            Conn::Tty(_) => "tty",
            Conn::Unix(_) => "unix",
        };
        f.debug_struct("Port").field("kind", &kind).finish()
    }
}

impl Port {
    /// Opens `endpoint`: a tty read/write, non-blocking, in raw mode at `baud`; or a Unix
    /// stream socket connected to `unix:PATH`.
    pub fn open(endpoint: &Endpoint, baud: u32) -> Result<Port, PortError> {
        match endpoint {
            Endpoint::Tty(path) => open_tty(path, baud).map(|file| Port { conn: Conn::Tty(file) }),
            Endpoint::Unix(path) => {
                let open = || {
                    let stream = UnixStream::connect(path)?;
                    stream.set_nonblocking(true)?;
                    Ok(stream)
                };
                open()
                    .map(|stream| Port { conn: Conn::Unix(stream) })
                    .map_err(|source| PortError::Open { device: endpoint.to_string(), source })
            }
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match &self.conn {
            Conn::Tty(file) => file.as_fd(),
            Conn::Unix(stream) => stream.as_fd(),
        }
    }

    /// Reads what is there, waiting at most `timeout` for a first byte.
    pub fn read(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<Received> {
        if buf.is_empty() {
            return Ok(Received::Timeout);
        }
        if !wait(self.fd(), PollFlags::IN, timeout)? {
            return Ok(Received::Timeout);
        }
        let read = match &mut self.conn {
            Conn::Tty(file) => file.read(buf),
            Conn::Unix(stream) => stream.read(buf),
        };
        match read {
            Ok(0) => Ok(Received::Eof),
            Ok(n) => Ok(Received::Data(n)),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                Ok(Received::Timeout)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes all of `bytes`, waiting up to [`WRITE_TIMEOUT`] each time the device's buffer is
    /// full (`TimedOut` then: a device that stopped reading).
    pub fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let written = match &mut self.conn {
                Conn::Tty(file) => file.write(bytes),
                Conn::Unix(stream) => stream.write(bytes),
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !wait(self.fd(), PollFlags::OUT, WRITE_TIMEOUT)? {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the device took nothing for {WRITE_TIMEOUT:?}"),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Waits until `fd` is ready for `events` (or hung up, or in error: the read or write that
/// follows reports which); `false` on timeout.
fn wait(fd: BorrowedFd<'_>, events: PollFlags, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let spec = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
        let mut fds = [PollFd::from_borrowed_fd(fd, events)];
        match rustix::event::poll(&mut fds, Some(&spec)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) if !left.is_zero() => {}
            Err(rustix::io::Errno::INTR) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

fn open_tty(path: &Path, baud: u32) -> Result<File, PortError> {
    let device = path.display().to_string();
    // NONBLOCK: the open does not wait for a carrier, and reads go through poll(2).
    let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd: OwnedFd = rustix::fs::open(path, flags, Mode::empty())
        .map_err(|e| PortError::Open { device: device.clone(), source: e.into() })?;
    let raw = || -> rustix::io::Result<()> {
        let mut t = termios::tcgetattr(&fd)?;
        raw_mode(&mut t, baud)?;
        termios::tcsetattr(&fd, OptionalActions::Now, &t)
    };
    raw().map_err(|e| PortError::Termios { device, baud, source: e.into() })?;
    Ok(File::from(fd))
}

/// `cfmakeraw`, then 8N1 with the receiver on, modem lines ignored, no flow control of either
/// kind, and reads that return what is there (`VMIN = 0`, `VTIME = 0`: [`Port::read`] waits in
/// poll(2), which tells a timeout from a hang-up).
fn raw_mode(t: &mut termios::Termios, baud: u32) -> rustix::io::Result<()> {
    t.make_raw();
    t.input_modes.remove(InputModes::IXON | InputModes::IXOFF | InputModes::IXANY);
    t.control_modes.remove(ControlModes::CSTOPB | ControlModes::PARENB | ControlModes::CRTSCTS);
    t.control_modes.insert(ControlModes::CS8 | ControlModes::CLOCAL | ControlModes::CREAD);
    t.special_codes[SpecialCodeIndex::VMIN] = 0;
    t.special_codes[SpecialCodeIndex::VTIME] = 0;
    t.set_speed(baud)
}

/// Counters of one [`Reconnecting`] port, for `chouette status` and self-metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Successful opens.
    pub connects: u64,
    /// Opens lost (EOF, or an error on read or write).
    pub disconnects: u64,
    /// Bytes read.
    pub bytes_in: u64,
}

/// What one [`Reconnecting::read`] turn did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// This many bytes are at the start of the buffer.
    Data(usize),
    /// Nothing happened within the timeout (no bytes, or still waiting to reopen).
    Idle,
    /// The port was (re)opened: a link protocol starts over (a new HELLO).
    Connected,
    /// The port was lost and closed; it will be reopened after the backoff.
    Disconnected,
}

/// A [`Port`] that reopens itself: on EOF or an error (EIO, ENXIO, ENOENT, ECONNREFUSED, ...) it
/// closes, logs once per outage (WARN, `device=` first), and retries the open after a delay
/// of [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]. The delay starts over only after a
/// connection that lasted [`BACKOFF_MAX`]: a device that accepts and drops at once (a crashing
/// emulator) is retried at most every 5 s, not every 100 ms.
#[derive(Debug)]
pub struct Reconnecting {
    endpoint: Endpoint,
    baud: u32,
    port: Option<Port>,
    connected_at: Instant,
    backoff: Duration,
    next_open: Instant,
    /// Whether the current outage was logged (one WARN per outage, DEBUG after).
    warned: bool,
    counters: LinkCounters,
    last_error: Option<String>,
}

impl Reconnecting {
    /// A port for `endpoint` at `baud`, not yet open: the first [`Reconnecting::read`] opens it.
    pub fn new(endpoint: Endpoint, baud: u32) -> Self {
        Reconnecting {
            endpoint,
            baud,
            port: None,
            connected_at: Instant::now(),
            backoff: BACKOFF_MIN,
            next_open: Instant::now(),
            warned: false,
            counters: LinkCounters::default(),
            last_error: None,
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether the port is open now.
    pub fn is_connected(&self) -> bool {
        self.port.is_some()
    }

    /// Connects, disconnects and bytes read so far.
    pub fn counters(&self) -> LinkCounters {
        self.counters
    }

    /// The last open, read or write error, for `chouette status`.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// One turn of at most about `timeout`: opens the port if it is closed and the backoff has
    /// passed (else waits for that, within `timeout`), or reads from it.
    pub fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Event {
        let Some(port) = &mut self.port else {
            return self.try_open(timeout);
        };
        match port.read(buf, timeout) {
            Ok(Received::Data(n)) => {
                self.counters.bytes_in += n as u64;
                Event::Data(n)
            }
            Ok(Received::Timeout) => Event::Idle,
            Ok(Received::Eof) => self.lost("the other side closed".to_string()),
            Err(e) => self.lost(e.to_string()),
        }
    }

    /// Writes all of `bytes`; `false` when the port is closed or the write lost it (the bytes
    /// are then not sent: the link protocol retransmits).
    pub fn write_all(&mut self, bytes: &[u8]) -> bool {
        let Some(port) = &mut self.port else {
            return false;
        };
        match port.write_all(bytes) {
            Ok(()) => true,
            Err(e) => {
                self.lost(e.to_string());
                false
            }
        }
    }

    fn try_open(&mut self, timeout: Duration) -> Event {
        let now = Instant::now();
        if now < self.next_open {
            std::thread::sleep(timeout.min(self.next_open - now));
            if Instant::now() < self.next_open {
                return Event::Idle;
            }
        }
        match Port::open(&self.endpoint, self.baud) {
            Ok(port) => {
                self.port = Some(port);
                self.connected_at = Instant::now();
                self.counters.connects += 1;
                self.warned = false;
                log::info!(
                    "device={} connects={}: serial device connected",
                    self.endpoint,
                    self.counters.connects
                );
                Event::Connected
            }
            Err(e) => {
                let detail = e.io().to_string();
                if self.warned {
                    log::debug!("device={} error={detail:?}: serial device still unavailable", self.endpoint);
                } else {
                    log::warn!(
                        "device={} error={detail:?}: cannot open the serial device; retrying with backoff",
                        self.endpoint
                    );
                    self.warned = true;
                }
                self.last_error = Some(detail);
                self.schedule_reopen();
                Event::Idle
            }
        }
    }

    fn lost(&mut self, detail: String) -> Event {
        self.port = None;
        self.counters.disconnects += 1;
        log::warn!(
            "device={} error={detail:?} disconnects={}: serial device lost; reopening with backoff",
            self.endpoint,
            self.counters.disconnects
        );
        self.warned = true;
        self.last_error = Some(detail);
        if self.connected_at.elapsed() >= BACKOFF_MAX {
            self.backoff = BACKOFF_MIN;
        }
        self.schedule_reopen();
        Event::Disconnected
    }

    fn schedule_reopen(&mut self) {
        self.next_open = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use chouette_tests::{PtyPair, TempDir};
    use rustix::termios::LocalModes;

    use super::*;

    const SHORT: Duration = Duration::from_millis(50);
    const LONG: Duration = Duration::from_secs(10);

    /// Every byte value, with those a cooked tty would eat or change (NUL, ^C, ^D, XON, XOFF,
    /// CR, LF, DEL) also in runs.
    fn all_bytes() -> Vec<u8> {
        let mut bytes: Vec<u8> = (0..=255).collect();
        bytes.extend_from_slice(b"\r\n\r\r\n\n\x00\x00\x11\x13\x11\x13\x03\x04\x7f\x1a\x1c");
        bytes
    }

    /// Reads from `port` until `n` bytes came or [`LONG`] passed.
    fn read_n(port: &mut Port, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + LONG;
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while out.len() < n && Instant::now() < deadline {
            match port.read(&mut buf, SHORT).expect("read") {
                Received::Data(k) => out.extend_from_slice(&buf[..k]),
                Received::Timeout => {}
                Received::Eof => break,
            }
        }
        out
    }

    /// Turns of `link` until `want` happens or [`LONG`] passes; returns the data read meanwhile.
    fn until(link: &mut Reconnecting, want: Event) -> Vec<u8> {
        let deadline = Instant::now() + LONG;
        let mut data = Vec::new();
        let mut buf = [0u8; 1024];
        while Instant::now() < deadline {
            let event = link.read(&mut buf, SHORT);
            if let Event::Data(n) = event {
                data.extend_from_slice(&buf[..n]);
            }
            if event == want || matches!((event, want), (Event::Data(_), Event::Data(0))) {
                return data;
            }
        }
        panic!("no {want:?} within {LONG:?} (got {data:?})");
    }

    #[test]
    fn pty_carries_every_byte_unaltered_both_ways() {
        let mut pty = PtyPair::open();
        let mut port = Port::open(&Endpoint::Tty(pty.path.clone()), 115_200).expect("open the pty slave");
        let bytes = all_bytes();
        pty.write(&bytes);
        assert_eq!(read_n(&mut port, bytes.len()), bytes);
        // Another pattern back: an echo of the input would arrive first and differ.
        let back: Vec<u8> = bytes.iter().rev().copied().collect();
        port.write_all(&back).unwrap();
        assert_eq!(pty.read_for(back.len(), LONG), back);
    }

    #[test]
    fn pty_is_in_raw_mode_8n1_at_the_rate() {
        let pty = PtyPair::open();
        let _port = Port::open(&Endpoint::Tty(pty.path.clone()), 57_600).expect("open");
        let t = termios::tcgetattr(File::open(&pty.path).unwrap()).unwrap();
        for off in [LocalModes::ECHO, LocalModes::ICANON, LocalModes::ISIG, LocalModes::IEXTEN] {
            assert!(!t.local_modes.contains(off), "{off:?} is on");
        }
        for off in
            [InputModes::IXON, InputModes::IXOFF, InputModes::ICRNL, InputModes::INLCR, InputModes::ISTRIP]
        {
            assert!(!t.input_modes.contains(off), "{off:?} is on");
        }
        assert!(!t.output_modes.contains(termios::OutputModes::OPOST));
        assert!(t.control_modes.contains(ControlModes::CS8 | ControlModes::CLOCAL | ControlModes::CREAD));
        assert!(!t
            .control_modes
            .intersects(ControlModes::PARENB | ControlModes::CSTOPB | ControlModes::CRTSCTS));
        assert_eq!(
            (t.special_codes[SpecialCodeIndex::VMIN], t.special_codes[SpecialCodeIndex::VTIME]),
            (0, 0)
        );
        assert_eq!((t.input_speed(), t.output_speed()), (57_600, 57_600));
    }

    #[test]
    fn pty_read_times_out_then_fails_when_the_other_side_closes() {
        let pty = PtyPair::open();
        let mut port = Port::open(&Endpoint::Tty(pty.path.clone()), 115_200).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(port.read(&mut buf, SHORT).unwrap(), Received::Timeout);
        drop(pty);
        // Linux answers EIO on the slave once the master is gone (a hang-up reads as EOF).
        match port.read(&mut buf, LONG) {
            Ok(Received::Eof) => {}
            Err(e) => assert_eq!(e.raw_os_error(), Some(rustix::io::Errno::IO.raw_os_error()), "{e}"),
            other => panic!("expected EOF or EIO, got {other:?}"),
        }
    }

    #[test]
    fn a_file_that_is_not_a_tty_is_refused() {
        let dir = TempDir::new("serial");
        let path = dir.0.join("not-a-tty");
        std::fs::write(&path, b"x").unwrap();
        let err = Port::open(&Endpoint::Tty(path.clone()), 115_200).unwrap_err();
        assert!(matches!(err, PortError::Termios { baud: 115_200, .. }), "{err}");
        assert!(
            err.to_string().starts_with(&format!("device={}: cannot set raw mode", path.display())),
            "{err}"
        );
        let err = Port::open(&Endpoint::Tty(dir.0.join("absent")), 115_200).unwrap_err();
        assert_eq!(err.io().kind(), io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn unix_socket_carries_every_byte_and_tells_timeout_from_eof() {
        let dir = TempDir::new("serial");
        let path = dir.0.join("uart.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut port = Port::open(&Endpoint::Unix(path), 115_200).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(port.read(&mut buf, SHORT).unwrap(), Received::Timeout);
        let bytes = all_bytes();
        peer.write_all(&bytes).unwrap();
        assert_eq!(read_n(&mut port, bytes.len()), bytes);
        port.write_all(&bytes).unwrap();
        let mut got = vec![0u8; bytes.len()];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, bytes);
        drop(peer);
        assert_eq!(port.read(&mut buf, LONG).unwrap(), Received::Eof);
    }

    #[test]
    fn reconnects_when_the_socket_comes_back_at_the_same_path() {
        let dir = TempDir::new("serial");
        let path = dir.0.join("uart.sock");
        let endpoint = Endpoint::Unix(path.clone());
        let mut link = Reconnecting::new(endpoint, 115_200);
        // Absent at start: idle turns, retried with backoff, until the emulator is there.
        let mut buf = [0u8; 16];
        assert_eq!(link.read(&mut buf, SHORT), Event::Idle);
        assert!(!link.is_connected());
        assert!(link.last_error().is_some());
        assert!(!link.write_all(b"lost"));
        let listener = UnixListener::bind(&path).unwrap();
        until(&mut link, Event::Connected);
        let (mut peer, _) = listener.accept().unwrap();
        peer.write_all(b"\x00hello\x00").unwrap();
        assert_eq!(until(&mut link, Event::Data(0)), b"\x00hello\x00");

        // The emulator dies: its socket file stays behind (ECONNREFUSED), then it restarts and
        // binds a new socket at the same path.
        drop(peer);
        drop(listener);
        until(&mut link, Event::Disconnected);
        let lost_at = Instant::now();
        assert_eq!(link.counters(), LinkCounters { connects: 1, disconnects: 1, bytes_in: 7 });
        while lost_at.elapsed() < Duration::from_millis(400) {
            assert_eq!(link.read(&mut buf, SHORT), Event::Idle);
        }
        let refused = link.last_error().unwrap_or_default().to_string();
        assert!(refused.contains("refused"), "{refused}");
        std::fs::remove_file(&path).unwrap();
        let listener = UnixListener::bind(&path).unwrap();
        until(&mut link, Event::Connected);
        assert!(lost_at.elapsed() >= BACKOFF_MIN, "reopened after {:?}", lost_at.elapsed());
        let (mut peer, _) = listener.accept().unwrap();
        assert!(link.write_all(b"ack"));
        let mut got = [0u8; 3];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ack");
        peer.write_all(b"more").unwrap();
        assert_eq!(until(&mut link, Event::Data(0)), b"more");
        assert_eq!(link.counters(), LinkCounters { connects: 2, disconnects: 1, bytes_in: 11 });
    }

    #[test]
    fn a_device_that_drops_at_once_is_retried_ever_more_slowly() {
        let dir = TempDir::new("serial");
        let path = dir.0.join("uart.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut link = Reconnecting::new(Endpoint::Unix(path), 115_200);
        let mut gaps = Vec::new();
        let mut lost_at = None;
        for _ in 0..4 {
            until(&mut link, Event::Connected);
            if let Some(at) = lost_at {
                gaps.push(Instant::elapsed(&at));
            }
            // Accept and close at once, as a crashing emulator would.
            drop(listener.accept().unwrap());
            until(&mut link, Event::Disconnected);
            lost_at = Some(Instant::now());
        }
        // 100, 200, 400 ms: the delay doubles instead of starting over at each short connection.
        for (gap, min) in gaps.iter().zip([100, 200, 400]) {
            assert!(*gap >= Duration::from_millis(min), "{gaps:?}");
        }
        assert_eq!(link.counters().connects, 4);
        assert_eq!(link.counters().disconnects, 4);
    }

    #[test]
    fn a_pty_whose_master_closes_is_lost_and_retried() {
        let pty = PtyPair::open();
        let mut link = Reconnecting::new(Endpoint::Tty(pty.path.clone()), 115_200);
        until(&mut link, Event::Connected);
        drop(pty);
        until(&mut link, Event::Disconnected);
        assert_eq!(link.counters().disconnects, 1);
        assert!(!link.is_connected());
    }
}
