//! systemd's notify protocol, as the real binary speaks it: a Unix datagram socket stands in for
//! systemd's (`NOTIFY_SOCKET`, a path or an `@abstract` name), with `WATCHDOG_USEC` set. The
//! agent must send `READY=1` once its store is open, `WATCHDOG=1` repeatedly (at most every
//! `WATCHDOG_USEC / 2`) while its loop turns, and `STOPPING=1` after SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chouette_tests::agent_binary;
use chouette_tests::free_port;

/// The socket systemd would listen on.
struct FakeSystemd {
    socket: UnixDatagram,
    /// What to put in `NOTIFY_SOCKET`.
    address: String,
    dir: PathBuf,
}

impl FakeSystemd {
    fn bind(abstract_name: bool) -> FakeSystemd {
        let dir =
            std::env::temp_dir().join(format!("chouette-watchdog-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let (socket, address) = if abstract_name {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("chouette-test-notify-{}-{}", std::process::id(), free_port());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
            (UnixDatagram::bind_addr(&addr).expect("bind abstract"), format!("@{name}"))
        } else {
            let path = dir.join("notify");
            (UnixDatagram::bind(&path).expect("bind"), path.display().to_string())
        };
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        FakeSystemd { socket, address, dir }
    }

    /// The next message, or `None` after `within`.
    fn next(&self, within: Duration) -> Option<(Instant, String)> {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                return Some((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        }
        None
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(systemd: &FakeSystemd, extra: &[(&str, String)]) -> Child {
    let state = systemd.dir.join("state");
    let mut command = Command::new(agent_binary!());
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // No DogStatsD UDP socket (8125 by default), as the harness's agents.
        .env("DOGSTATSD_PORT", "0")
        .env("NOTIFY_SOCKET", &systemd.address)
        .env("CHOUETTE_STATE_DIR", &state)
        .env("RELEASE_INTERVAL", "1");
    for (name, value) in extra {
        command.env(name, value);
    }
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start chouette")
}

fn sigterm_and_wait(child: &mut Child) -> std::process::ExitStatus {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ready, then pings, then stopping, for a notify socket at `abstract_name` or a path.
fn ready_pings_stopping(abstract_name: bool) {
    let systemd = FakeSystemd::bind(abstract_name);
    // A 400 ms watchdog: pings every 200 ms at most.
    let mut child = start(&systemd, &[("WATCHDOG_USEC", "400000".into())]);
    let first = systemd.next(Duration::from_secs(20)).expect("a first message");
    // This configuration's longest pass (notify::longest_step: RELEASE_INTERVAL 1 s + connect
    // 10 s + request 30 s + 60 s) is longer than 400 ms: the agent raises systemd's timeout to
    // 101 s, then says it is ready.
    assert_eq!(first.1, "WATCHDOG_USEC=101000000");
    let ready = systemd.next(Duration::from_secs(20)).expect("READY=1");
    assert_eq!(ready.1, "READY=1\nSTATUS=running");
    let mut pings = Vec::new();
    while pings.len() < 5 {
        let (at, message) = systemd.next(Duration::from_secs(10)).expect("a watchdog ping within 10 s");
        assert_eq!(message, "WATCHDOG=1");
        pings.push(at);
    }
    // Rate-limited to half the timeout: 5 pings span at least 4 intervals of 200 ms (minus
    // the receiver's own scheduling jitter).
    let span = pings[4].duration_since(pings[0]);
    assert!(span >= Duration::from_millis(700), "5 pings in {span:?}");
    let status = sigterm_and_wait(&mut child);
    assert!(status.success(), "exit {status}");
    let mut after = Vec::new();
    while let Some((_, message)) = systemd.next(Duration::from_millis(300)) {
        after.push(message);
    }
    let stopping: Vec<_> = after.iter().filter(|m| *m != "WATCHDOG=1").collect();
    assert_eq!(stopping, ["STOPPING=1\nSTATUS=stopping: signal received"]);
}

#[test]
fn ready_then_watchdog_pings_then_stopping_on_a_path_socket() {
    ready_pings_stopping(false);
}

#[test]
fn ready_then_watchdog_pings_then_stopping_on_an_abstract_socket() {
    ready_pings_stopping(true);
}

#[test]
fn no_pings_when_the_watchdog_is_for_another_process() {
    let systemd = FakeSystemd::bind(false);
    let mut child = start(&systemd, &[("WATCHDOG_USEC", "400000".into()), ("WATCHDOG_PID", "1".into())]);
    let ready = systemd.next(Duration::from_secs(20)).expect("READY=1");
    assert_eq!(ready.1, "READY=1\nSTATUS=running");
    // Several would-be ping intervals pass: nothing until the stop.
    assert_eq!(systemd.next(Duration::from_millis(1200)), None);
    assert!(sigterm_and_wait(&mut child).success());
    assert_eq!(
        systemd.next(Duration::from_secs(5)).map(|m| m.1).as_deref(),
        Some("STOPPING=1\nSTATUS=stopping: signal received")
    );
}

/// An HTTP intake that accepts connections and never answers, until released: a send that hangs.
struct HangingIntake {
    port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    release: std::sync::Arc<std::sync::atomic::AtomicBool>,
    held: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl HangingIntake {
    fn start() -> HangingIntake {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let intake = HangingIntake {
            port,
            accepted: Default::default(),
            release: Default::default(),
            held: Default::default(),
        };
        let (accepted, release, held) =
            (intake.accepted.clone(), intake.release.clone(), intake.held.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                accepted.fetch_add(1, Ordering::SeqCst);
                if !release.load(Ordering::SeqCst) {
                    held.lock().unwrap().push(stream); // never answered
                } // else: dropped at once, the send fails fast
            }
        });
        intake
    }

    /// Closes the held connections; later ones are closed at once.
    fn release(&self) {
        self.release.store(true, std::sync::atomic::Ordering::SeqCst);
        self.held.lock().unwrap().clear();
    }
}

/// One raw metric from 3 minutes ago in the embedded store at `dir`: the agent aggregates and
/// sends it at once.
fn seed_one_metric(dir: &std::path::Path) {
    use chouette_agent::store::{embedded::EmbeddedStore, NewRecord, Queue, Store};
    let ts =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() - 180.0;
    let value = format!(
        r#"{{"metric": "hang.check", "type": "count", "value": 1, "timestamp": {ts}, "tags": {{}}}}"#
    );
    std::fs::create_dir_all(dir).expect("state dir");
    let mut store = EmbeddedStore::open(&dir.join("chouette.redb")).expect("open the embedded store");
    let record = NewRecord { id: b"m-1".to_vec(), score: ts, value: value.into_bytes() };
    store.add(Queue::RawMetrics, &[record]).expect("seed");
}

#[test]
fn a_step_that_hangs_stops_the_pings_until_it_returns() {
    use std::sync::atomic::Ordering;
    let systemd = FakeSystemd::bind(false);
    let intake = HangingIntake::start();
    seed_one_metric(&systemd.dir.join("state"));
    let mut child = start(
        &systemd,
        &[
            ("WATCHDOG_USEC", "400000".into()),
            ("DATADOG_URL", format!("http://127.0.0.1:{}/api", intake.port)),
            ("AGGREGATE_INTERVAL", "1".into()),
            ("CHOUETTE_GRACE", "0".into()),
            ("CHOUETTE_REQUEST_TIMEOUT", "120".into()),
        ],
    );
    // Pings while the loop turns; then a release pass sends the self-metrics and hangs.
    let mut pings_before = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while intake.accepted.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no request reached the intake within 30 s");
        if let Some((_, m)) = systemd.next(Duration::from_millis(50)) {
            pings_before += usize::from(m == "WATCHDOG=1");
        }
    }
    while let Some((_, m)) = systemd.next(Duration::from_millis(1)) {
        pings_before += usize::from(m == "WATCHDOG=1");
    }
    assert!(pings_before >= 1, "pings before the hang");
    // The loop is stuck in the send: not one ping in 2 s (10 intervals), though the process
    // lives. Under systemd, WatchdogSec later it would be killed and restarted.
    assert_eq!(systemd.next(Duration::from_secs(2)), None);
    assert!(child.try_wait().expect("try_wait").is_none(), "the agent is alive, only stuck");
    // The send fails, the loop turns again: pings resume.
    intake.release();
    let (_, message) = systemd.next(Duration::from_secs(10)).expect("pings resume");
    assert_eq!(message, "WATCHDOG=1");
    assert!(sigterm_and_wait(&mut child).success());
}
