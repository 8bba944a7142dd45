//! systemd's notify protocol (`sd_notify(3)`), written to `$NOTIFY_SOCKET` directly (no
//! libsystemd): `READY=1` once the store is open and the loop starts, `WATCHDOG=1` while the loop
//! turns, `STOPPING=1` on shutdown, `STATUS=...` for `systemctl status`.
//!
//! With `Type=notify` and `WatchdogSec=` in the unit, systemd kills and restarts an agent whose
//! loop stopped turning (a hung socket, a deadlock). Outside systemd (`NOTIFY_SOCKET` unset) every
//! call is a no-op.
//!
//! - `NOTIFY_SOCKET`: a path (`/run/systemd/notify`) or an abstract name (`@...`).
//! - `WATCHDOG_USEC`: the watchdog timeout; pings are sent at most every half of it (and only
//!   when `WATCHDOG_PID` is unset or ours, as `sd_watchdog_enabled(3)` says).
//!
//! The process-wide notifier ([`init_from_env`], [`ready`], [`watchdog`], [`stopping`]) lets any
//! step that makes progress ping with one line, without passing a handle around.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Config;

/// Why the notify socket cannot be used (logged once at startup, as a warning: the agent runs
/// on, but systemd will not hear from it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is neither a path nor an abstract name (`vsock:` is not supported).
    #[error("NOTIFY_SOCKET={0:?}: not a Unix socket path or @abstract name")]
    Address(String),
    /// The socket could not be created or addressed.
    #[error("NOTIFY_SOCKET={socket:?}: {source}")]
    Io {
        /// `NOTIFY_SOCKET`.
        socket: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Where to send notifications: a filesystem path or a Linux abstract name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddr {
    /// `/run/systemd/notify`.
    Path(std::path::PathBuf),
    /// `@name`: the name, without the `@` (sent with a leading NUL byte).
    Abstract(Vec<u8>),
}

/// Parses `NOTIFY_SOCKET`. `None` for an empty value.
pub fn parse_notify_socket(text: &str) -> Result<Option<NotifyAddr>, NotifyError> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Some(name) = text.strip_prefix('@') {
        return Ok(Some(NotifyAddr::Abstract(name.as_bytes().to_vec())));
    }
    if text.starts_with('/') {
        return Ok(Some(NotifyAddr::Path(text.into())));
    }
    Err(NotifyError::Address(text.to_owned()))
}

/// The interval between watchdog pings: half of `WATCHDOG_USEC`, or `None` when the watchdog
/// is off (unset, not a positive number, or `WATCHDOG_PID` names another process).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid.map(str::trim).filter(|p| !p.is_empty()) {
        if pid.parse::<u32>().ok() != Some(our_pid) {
            return None;
        }
    }
    let usec = usec?.trim().parse::<u64>().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec) / 2)
}

/// The longest a legitimate pass of the main loop may take without a ping, for this
/// configuration: a release pass (bounded by `RELEASE_INTERVAL`), plus one request in flight
/// at its deadline (`CHOUETTE_CONNECT_TIMEOUT` + `CHOUETTE_REQUEST_TIMEOUT`), plus
/// [`STEP_MARGIN`] for one aggregation step, a capture tick and store round trips. Pessimistic
/// on purpose: a watchdog that kills a slow but working agent restarts it into the same
/// backlog, again and again.
pub fn longest_step(config: &Config) -> Duration {
    config.release_interval + config.connect_timeout + config.request_timeout + STEP_MARGIN
}

/// See [`longest_step`]: one aggregation step (one bucket), a capture tick (collectors time out
/// after a few seconds) and the store's timeouts, with room to spare on a slow board.
pub const STEP_MARGIN: Duration = Duration::from_secs(60);

/// A connection to systemd's notify socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// Half the watchdog timeout, when the watchdog is on.
    ping_every: Option<Duration>,
    /// The watchdog timeout systemd enforces (`WATCHDOG_USEC`, or what we asked for since).
    timeout: Option<Duration>,
    last_ping: Option<Instant>,
    warned: bool,
}

impl Notifier {
    /// From the process environment: `None` outside systemd (no `NOTIFY_SOCKET`).
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        let var = |name: &str| std::env::var(name).ok();
        let Some(socket) = var("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let usec = var("WATCHDOG_USEC");
        let pid = var("WATCHDOG_PID");
        Self::new(&socket, watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id()))
    }

    /// A notifier for `NOTIFY_SOCKET=socket`, pinging every `ping_every` (half the timeout).
    pub fn new(socket: &str, ping_every: Option<Duration>) -> Result<Option<Notifier>, NotifyError> {
        let io = |source| NotifyError::Io { socket: socket.to_owned(), source };
        let addr = match parse_notify_socket(socket)? {
            None => return Ok(None),
            Some(NotifyAddr::Path(path)) => SocketAddr::from_pathname(path).map_err(io)?,
            Some(NotifyAddr::Abstract(name)) => abstract_addr(&name).map_err(io)?,
        };
        let unbound = UnixDatagram::unbound().map_err(io)?;
        Ok(Some(Notifier {
            socket: unbound,
            addr,
            ping_every,
            timeout: ping_every.map(|p| p * 2),
            last_ping: None,
            warned: false,
        }))
    }

    /// Sends one notification (newline-separated `KEY=value` lines). A failure is logged once
    /// as a warning; the agent goes on.
    pub fn send(&mut self, message: &str) {
        match self.socket.send_to_addr(message.as_bytes(), &self.addr) {
            Ok(_) => {}
            Err(error) if !self.warned => {
                self.warned = true;
                log::warn!("message={message:?}: cannot notify systemd ({error}); the watchdog may restart the agent");
            }
            Err(_) => {}
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&mut self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// `WATCHDOG=1`, if the watchdog is on and half its timeout has passed since the last ping.
    pub fn watchdog(&mut self, now: Instant) {
        let Some(every) = self.ping_every else {
            return;
        };
        if self.last_ping.is_some_and(|last| now.saturating_duration_since(last) < every) {
            return;
        }
        self.send("WATCHDOG=1");
        self.last_ping = Some(now);
    }

    /// Raises systemd's watchdog timeout to `at_least` (`WATCHDOG_USEC=`), when the watchdog is
    /// on and the unit's is shorter, so that a configuration with long steps (a long
    /// `RELEASE_INTERVAL` or request timeout) is not killed while working. Pings keep their
    /// pace (half the unit's timeout). Returns the timeout now in force.
    pub fn require_timeout(&mut self, at_least: Duration) -> Option<Duration> {
        let current = self.timeout?;
        if at_least > current {
            self.send(&format!("WATCHDOG_USEC={}", at_least.as_micros()));
            self.timeout = Some(at_least);
        }
        self.timeout
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&mut self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}"));
    }
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "abstract sockets are Linux-only"))
}

// ---------------------------------------------------------------------------------------------
// The process-wide notifier.
// ---------------------------------------------------------------------------------------------

static NOTIFIER: Mutex<Option<Notifier>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Notifier) -> T) -> Option<T> {
    let mut guard = NOTIFIER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    guard.as_mut().map(f)
}

/// Sets up the process-wide notifier from the environment and raises the watchdog timeout to
/// [`longest_step`] if the unit's is shorter; logs what it does.
pub fn init_from_env(config: &Config) {
    let notifier = match Notifier::from_env() {
        Ok(notifier) => notifier,
        Err(error) => {
            log::warn!("{error}: systemd will not be notified");
            None
        }
    };
    let mut guard = NOTIFIER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *guard = notifier;
    if let Some(notifier) = guard.as_mut() {
        let unit = notifier.timeout;
        match (unit, notifier.require_timeout(longest_step(config))) {
            (Some(unit), Some(now)) if now > unit => log::warn!(
                "watchdog_unit={unit:?} watchdog={now:?}: the unit's WatchdogSec= is shorter than this configuration's longest step; raised"
            ),
            (_, Some(now)) => log::info!("watchdog={now:?}: systemd watchdog on"),
            (_, None) => log::info!("systemd notify socket in use, watchdog off"),
        }
    }
}

/// `READY=1` (see [`Notifier::ready`]); a no-op outside systemd.
pub fn ready(status: &str) {
    with(|n| n.ready(status));
}

/// `WATCHDOG=1` when due (see [`Notifier::watchdog`]); cheap enough to call from any loop that
/// makes progress; a no-op outside systemd.
pub fn watchdog() {
    with(|n| n.watchdog(Instant::now()));
}

/// `STOPPING=1` (see [`Notifier::stopping`]); a no-op outside systemd.
pub fn stopping(status: &str) {
    with(|n| n.stopping(status));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses() {
        assert_eq!(parse_notify_socket("").unwrap(), None);
        assert_eq!(
            parse_notify_socket("/run/systemd/notify").unwrap(),
            Some(NotifyAddr::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_notify_socket("@sd/notify").unwrap(),
            Some(NotifyAddr::Abstract(b"sd/notify".to_vec()))
        );
        assert!(matches!(parse_notify_socket("vsock:2:1234"), Err(NotifyError::Address(_))));
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_our_pid_only() {
        assert_eq!(watchdog_interval(Some("180000000"), None, 7), Some(Duration::from_secs(90)));
        assert_eq!(watchdog_interval(Some("1000000"), Some("7"), 7), Some(Duration::from_millis(500)));
        assert_eq!(watchdog_interval(Some("1000000"), Some(""), 7), Some(Duration::from_millis(500)));
        assert_eq!(watchdog_interval(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    fn receiver() -> (UnixDatagram, String, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "chouette-notify-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        (socket, path.to_str().unwrap().to_owned(), dir)
    }

    fn received(socket: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn pings_at_most_every_half_timeout() {
        let (socket, path, dir) = receiver();
        let mut n = Notifier::new(&path, Some(Duration::from_secs(10))).unwrap().unwrap();
        let t0 = Instant::now();
        n.ready("running");
        n.watchdog(t0);
        n.watchdog(t0 + Duration::from_secs(1)); // too soon
        n.watchdog(t0 + Duration::from_secs(10));
        n.watchdog(t0 + Duration::from_secs(15)); // too soon
        n.watchdog(t0 + Duration::from_secs(20));
        n.stopping("stopping");
        assert_eq!(
            received(&socket),
            [
                "READY=1\nSTATUS=running",
                "WATCHDOG=1",
                "WATCHDOG=1",
                "WATCHDOG=1",
                "STOPPING=1\nSTATUS=stopping"
            ]
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn no_watchdog_no_pings_and_timeout_raised_only_when_on() {
        let (socket, path, dir) = receiver();
        let mut off = Notifier::new(&path, None).unwrap().unwrap();
        off.watchdog(Instant::now());
        assert_eq!(off.require_timeout(Duration::from_secs(500)), None);
        let mut on = Notifier::new(&path, Some(Duration::from_secs(90))).unwrap().unwrap();
        assert_eq!(on.require_timeout(Duration::from_secs(100)), Some(Duration::from_secs(180)));
        assert_eq!(on.require_timeout(Duration::from_secs(700)), Some(Duration::from_secs(700)));
        assert_eq!(received(&socket), ["WATCHDOG_USEC=700000000"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn abstract_socket_names_work() {
        let name = format!("chouette-notify-test-{}", std::process::id());
        let addr = abstract_addr(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket.set_nonblocking(true).unwrap();
        let mut n = Notifier::new(&format!("@{name}"), None).unwrap().unwrap();
        n.ready("up");
        assert_eq!(received(&socket), ["READY=1\nSTATUS=up"]);
    }

    #[test]
    fn a_missing_socket_is_not_fatal() {
        let mut n =
            Notifier::new("/nonexistent/chouette/notify", Some(Duration::from_secs(1))).unwrap().unwrap();
        n.ready("up");
        n.watchdog(Instant::now() + Duration::from_secs(5));
    }

    #[test]
    fn default_config_fits_the_units_watchdog() {
        let unit = include_str!("../../deploy/chouette.service");
        let seconds: u64 = unit
            .lines()
            .find_map(|l| l.strip_prefix("WatchdogSec="))
            .expect("the unit sets WatchdogSec=")
            .trim()
            .parse()
            .expect("WatchdogSec= in whole seconds");
        let config =
            Config::from_vars([("CHOUETTE_STORAGE_TYPE".to_owned(), "embedded".to_owned())]).unwrap();
        assert_eq!(longest_step(&config), Duration::from_secs(60 + 10 + 30 + 60));
        assert!(longest_step(&config) < Duration::from_secs(seconds), "WatchdogSec={seconds}");
        assert!(unit.contains("\nType=notify\n") && unit.contains("\nNotifyAccess=main\n"));
    }
}
