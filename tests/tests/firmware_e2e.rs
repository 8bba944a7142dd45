//! The firmware path end to end: the demo firmware (the core's aggregator on an emulated
//! Cortex-M3, `firmware/`) under QEMU ↔ a seeded fault-injecting byte proxy ↔ the agent's serial
//! source ↔ VictoriaMetrics. Every tick arrives exactly once, stamped inside the run's wall-clock
//! window, through damaged bytes, an agent killed -9 and restarted, and the gateway away longer
//! than the device's ring holds; and the same over a pty (the termios path).
//!
//! QEMU comes from `scripts/firmware-qemu.sh` (it installs `qemu-system-arm` and the Rust target
//! when missing); without them these tests fail, they never skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chouette_tests::{
    agent_binary, wait_until, Agent, FaultProxy, Faults, LineFaults, RedisServer, TempDir, VictoriaMetrics,
};
use redis::Commands;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/firmware-qemu.sh");

/// The demo's release ELF, built once per test process.
fn firmware() -> &'static Path {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        let out =
            Command::new("bash").arg(SCRIPT).arg("--build-only").output().expect("run firmware-qemu.sh");
        assert!(
            out.status.success(),
            "building the firmware failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.lines().last().expect("the ELF's path").trim())
    })
}

/// QEMU running the demo, its output (semihosting and QEMU's own) in a file.
struct Qemu {
    child: Child,
    log: PathBuf,
}

impl Qemu {
    fn start(dir: &Path, serial: &str, ticks: u32) -> Qemu {
        firmware();
        let log = dir.join("qemu.log");
        let out = std::fs::File::create(&log).expect("log");
        let err = out.try_clone().expect("log");
        let child = Command::new("bash")
            .arg(SCRIPT)
            .args(["--serial", serial, "--ticks", &ticks.to_string(), "--timeout", "600", "--report-stack"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start QEMU");
        Qemu { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the firmware to exit; its exit status.
    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the firmware did not finish; its output:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The loop's deepest stack (the firmware paints it after boot) stayed clear of the static data:
/// an overflow would have reached the lowest word.
fn assert_stack_held(output: &str) {
    let line = output.lines().find_map(|l| l.strip_prefix("stack used: ")).expect("a stack report");
    let words: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let [used, size] = words[..] else { panic!("stack report {line:?}") };
    eprintln!("firmware stack: {used} of {size} bytes");
    assert!(used + 1024 < size, "the stack came within 1 KiB of the static data: {line}");
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// The sum of every point of `metric` and the range of their timestamps (ms).
fn sum_and_span(vm: &VictoriaMetrics, metric: &str) -> (f64, Option<(i64, i64)>) {
    let mut sum = 0.0;
    let mut span: Option<(i64, i64)> = None;
    for points in vm.series(&format!("{{__name__={metric:?}}}")).values() {
        for &(ts, value) in points {
            sum += value;
            span = Some(span.map_or((ts, ts), |(lo, hi)| (lo.min(ts), hi.max(ts))));
        }
    }
    (sum, span)
}

fn agent_vars(store: (&str, String), vm: &VictoriaMetrics, device: &str) -> Vec<(&'static str, String)> {
    let (key, value) = store;
    let key: &'static str = if key == "REDIS_URL" { "REDIS_URL" } else { "CHOUETTE_STATE_DIR" };
    vec![
        (key, value),
        ("DATADOG_URL", vm.datadog_url()),
        ("API_KEY", "e2e".into()),
        ("HOST", "e2e-host".into()),
        ("RELEASE_INTERVAL", "1".into()),
        ("SERIAL_DEVICES", serde_json::json!([device]).to_string()),
        ("LOG_LEVEL", "info".into()),
    ]
}

/// Waits until VictoriaMetrics holds `expected` ticks, then checks it stays there (nothing is
/// counted twice after the last frame either).
///
/// With `histogram_counts`, `fw.demo.latency_ms.count` must sum to `expected` too: only when no
/// intervals merged, since the Datadog wrapper sends a histogram's count as a rate (n over the
/// interval, a merged interval's longer one), which a sum of values cannot add back up.
fn assert_ticks(vm: &VictoriaMetrics, expected: f64, agent: &Agent, histogram_counts: bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (ticks, _) = sum_and_span(vm, "fw.demo.ticks");
        if ticks == expected {
            break;
        }
        assert!(
            ticks < expected,
            "{ticks} ticks for {expected} sent: counted twice\nagent log:\n{}",
            agent.output()
        );
        assert!(
            Instant::now() < deadline,
            "{ticks} of {expected} ticks arrived\nagent log:\n{}",
            agent.output()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sum_and_span(vm, "fw.demo.ticks").0, expected, "after a pause");
    if histogram_counts {
        assert_eq!(sum_and_span(vm, "fw.demo.latency_ms.count").0, expected, "histogram counts");
    }
}

#[test]
fn every_tick_arrives_once_through_faults_a_killed_agent_and_a_long_absence() {
    const TICKS: u32 = 400;
    let vm = VictoriaMetrics::start();
    let redis = RedisServer::start();
    let dir = TempDir::new("firmware-e2e");
    let uart = dir.0.join("uart.sock");
    let gateway = dir.0.join("gateway.sock");
    let started = wall_ms();
    let mut qemu = Qemu::start(&dir.0, &format!("unix:{}", uart.display()), TICKS);
    let line = LineFaults {
        drop_per_byte: 0.002,
        flip_per_byte: 0.002,
        duplicate_per_chunk: 0.02,
        delay: Duration::ZERO,
    };
    let faults = Faults {
        seed: Faults::fresh_seed(),
        device_to_gateway: line,
        gateway_to_device: line,
        ..Faults::none()
    };
    let proxy = FaultProxy::start(&uart, &gateway, faults);
    let device = format!("unix:{}", gateway.display());
    let mut agent = Agent::start(agent_binary!(), &agent_vars(("REDIS_URL", redis.url()), &vm, &device));
    agent.wait_ready();
    // Some ticks in, the agent is killed -9 and restarted.
    wait_until("the first ticks", Duration::from_secs(60), || sum_and_span(&vm, "fw.demo.ticks").0 >= 20.0);
    agent.kill9_and_restart();
    agent.wait_ready();
    let before = sum_and_span(&vm, "fw.demo.ticks").0;
    wait_until("ticks after the restart", Duration::from_secs(60), || {
        sum_and_span(&vm, "fw.demo.ticks").0 > before
    });
    // The gateway goes away for longer than the device's ring holds: the device merges.
    proxy.pause();
    std::thread::sleep(Duration::from_secs(20));
    proxy.resume();
    let status = qemu.wait(Duration::from_secs(240));
    let output = qemu.output();
    assert!(status.success(), "the firmware failed: {status}\n{output}\nagent log:\n{}", agent.output());
    assert!(output.contains(&format!("demo done: ticks={TICKS}")), "{output}");
    assert_stack_held(&output);
    let finished = wall_ms();
    assert_ticks(&vm, f64::from(TICKS), &agent, false);
    // Stamped in wall time through the time exchange: inside the run, within a second.
    for metric in ["fw.demo.ticks", "fw.demo.temperature", "fw.demo.latency_ms.count"] {
        let (_, span) = sum_and_span(&vm, metric);
        let (first, last) = span.expect("points");
        assert!(
            first >= started - 1000 && last <= finished + 1000,
            "{metric}: {first}..{last} outside {started}..{finished}"
        );
    }
    let mut con = redis.client();
    let status: std::collections::HashMap<String, String> =
        con.hgetall("chouette:agent:status").expect("status");
    let field = |name: &str| -> u64 {
        status
            .get(&format!("serial.{device}.{name}"))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("serial.{device}.{name} in {status:?}"))
    };
    assert!(field("merged_intervals") > 0, "the ring merged while the gateway was away: {status:?}");
    assert_eq!(field("dropped_intervals"), 0);
    eprintln!("proxy: {}", proxy.stats());
    eprintln!(
        "serial: crc_failures={} duplicates={} gaps={} resync_requests={} merged_intervals={}",
        field("crc_failures"),
        field("duplicates"),
        field("gaps"),
        field("resync_requests"),
        field("merged_intervals")
    );
}

#[test]
fn a_pty_carries_the_demo_through_termios() {
    const TICKS: u32 = 50;
    let vm = VictoriaMetrics::start();
    let dir = TempDir::new("firmware-pty");
    let started = wall_ms();
    let mut qemu = Qemu::start(&dir.0, "pty", TICKS);
    let mut pty = String::new();
    wait_until("QEMU's pty", Duration::from_secs(60), || {
        let output = qemu.output();
        let found = output.lines().find_map(|l| {
            l.split("char device redirected to ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        });
        if let Some(path) = found {
            pty = path;
        }
        !pty.is_empty()
    });
    let state = dir.0.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let agent = Agent::start(
        agent_binary!(),
        &agent_vars(("CHOUETTE_STATE_DIR", state.display().to_string()), &vm, &pty),
    );
    let status = qemu.wait(Duration::from_secs(120));
    assert!(
        status.success(),
        "the firmware failed: {status}\n{}\nagent log:\n{}",
        qemu.output(),
        agent.output()
    );
    let finished = wall_ms();
    assert_ticks(&vm, f64::from(TICKS), &agent, true);
    let (_, span) = sum_and_span(&vm, "fw.demo.ticks");
    let (first, last) = span.expect("points");
    assert!(
        first >= started - 1000 && last <= finished + 1000,
        "{first}..{last} outside {started}..{finished}"
    );
}
