//! DogStatsD end to end, with real servers: the official Python `datadog` client, the `cadence`
//! crate (UDP and the Unix datagram socket) and hand-written datagrams → the `chouette` binary's
//! DogStatsD listener → its Redis outbox → VictoriaMetrics (Datadog's series API), queried back
//! with exact values; refusals, conservation (kernel drops and truncation included), SIGTERM, the
//! context limit and the socket options read from the agent's status hash (`chouette status`),
//! which the listener writes every `RELEASE_INTERVAL` (1 s here): the tests poll it, 20 s at most.
//!
//! Buckets are 1 s (`AGGREGATE_INTERVAL=1`) and lines are stamped on receipt, so each test sends
//! its lines right after a second starts ([`align_to_second`]) and checks that the sending ended
//! in that same second: every point then lands at that second, exactly.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cadence::prelude::*;
use cadence::{StatsdClient, UdpMetricSink, UnixMetricSink};
use chouette_tests::agent_binary;
use chouette_tests::{
    free_udp_port, udp_drops, udp_rx_queue, wait_udp_bound, wait_until, Agent, RedisServer, TempDir,
    VictoriaMetrics,
};
use redis::Commands;

type Series = BTreeMap<String, Vec<(i64, f64)>>;

/// The agent's environment: Redis, VictoriaMetrics as the Datadog backend, 1 s buckets, a
/// dispatch every second, no self-metrics; then `extra` (which wins).
fn agent_env(
    redis: &RedisServer,
    vm: &VictoriaMetrics,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("REDIS_URL", redis.url()),
        ("DATADOG_URL", vm.datadog_url()),
        ("GLOBAL_TAGS", r#"["env:e2e"]"#.into()),
        ("HOST", "e2e-host".into()),
        ("AGGREGATE_INTERVAL", "1".into()),
        ("RELEASE_INTERVAL", "1".into()),
        ("SEND_SELF_METRICS", "false".into()),
    ];
    for (name, value) in extra {
        env.retain(|(n, _)| n != name);
        env.push((name, value.clone()));
    }
    env
}

/// Redis, VictoriaMetrics and an agent listening for DogStatsD on a free UDP port.
struct Setup {
    redis: RedisServer,
    vm: VictoriaMetrics,
    agent: Agent,
    port: u16,
}

impl Setup {
    fn start(extra: &[(&'static str, String)]) -> Setup {
        let redis = RedisServer::start();
        let vm = VictoriaMetrics::start();
        let port = free_udp_port();
        let mut vars = vec![("DOGSTATSD_PORT", port.to_string())];
        vars.extend(extra.iter().cloned());
        let agent = Agent::start(agent_binary!(), &agent_env(&redis, &vm, &vars));
        agent.wait_ready();
        wait_udp_bound(port, Duration::from_secs(20));
        Setup { redis, vm, agent, port }
    }

    /// Sends each datagram, in order, to the agent's UDP port.
    fn send(&self, datagrams: &[impl AsRef<[u8]>]) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
        for datagram in datagrams {
            let sent = socket.send_to(datagram.as_ref(), ("127.0.0.1", self.port)).expect("send");
            assert_eq!(sent, datagram.as_ref().len());
        }
    }

    /// The agent's `dogstatsd.*` status fields, read from its status hash.
    fn status(&self) -> BTreeMap<String, String> {
        let mut con = self.redis.client();
        let all: BTreeMap<String, String> = con.hgetall("chouette:agent:status").expect("status hash");
        all.into_iter().filter(|(k, _)| k.starts_with("dogstatsd.")).collect()
    }

    /// What `chouette status` prints for this store.
    fn chouette_status(&self) -> String {
        let out = Command::new(agent_binary!())
            .arg("status")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("REDIS_URL", self.redis.url())
            .output()
            .expect("chouette status");
        assert!(out.status.success(), "chouette status: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls VictoriaMetrics until the series matching `selector` are exactly `want` (20 s), then
    /// stops the agent and checks again (nothing more arrived: no second point, no duplicate).
    fn expect_series(self, selector: &str, want: &Series) {
        let got = wait_for_series(&self.vm, selector, want);
        assert_eq!(&got, want, "{selector}\nagent log:\n{}", self.agent.output());
        let Setup { vm, agent, redis, .. } = self;
        assert!(agent.stop().success(), "exit 0 after SIGTERM");
        vm.flush();
        assert_eq!(&vm.series(selector), want, "{selector}: after the agent stopped");
        drop(redis);
    }
}

/// Reads every 200 ms until `done` holds of what was read, or 20 s; returns the last read (the
/// caller asserts on it, so a failure shows what was seen).
fn poll<T>(mut read: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = read();
        if done(&got) || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Polls until the series matching `selector` equal `want`, or 20 s; returns the last read.
fn wait_for_series(vm: &VictoriaMetrics, selector: &str, want: &Series) -> Series {
    poll(
        || {
            vm.flush();
            vm.series(selector)
        },
        |got| got == want,
    )
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs_f64()
}

/// Sleeps until 50 ms into a second with at least 700 ms left (a 1 s bucket's start), and returns
/// that second. Sending a few dozen datagrams then ends well within the same bucket.
fn align_to_second() -> i64 {
    let frac = now().fract();
    if !(0.05..0.3).contains(&frac) {
        let wait = if frac < 0.05 { 0.05 - frac } else { 1.05 - frac };
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
    now().floor() as i64
}

/// Checks that the lines sent since [`align_to_second`] returned `second` were all sent within it.
fn assert_same_second(second: i64) {
    let end = now().floor() as i64;
    assert_eq!(end, second, "sending crossed a bucket boundary (a loaded machine?): the points would split");
}

/// The series key VictoriaMetrics gives a point: `__name__=<name>,<labels sorted>` with the
/// agent's GLOBAL_TAGS (`env:e2e`) and host added to `labels` (`k=v` each).
fn key(name: &str, labels: &[&str]) -> String {
    let mut all: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
    all.push("env=e2e".into());
    all.push("host=e2e-host".into());
    all.sort();
    format!("__name__={name},{}", all.join(","))
}

/// The points the Datadog wrapper's defaults (`HISTOGRAM_AGGREGATES` max, median, avg, count;
/// `HISTOGRAM_PERCENTILES` 0.95) give one histogram bucket of `samples` with 1 s buckets:
/// `.count` is a rate (samples / interval), so the number of samples.
fn histogram_points(want: &mut Series, name: &str, labels: &[&str], ms: i64, samples: &[f64]) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let avg = sorted.iter().sum::<f64>() / n;
    for (suffix, value) in [
        ("avg", avg),
        ("count", n),
        ("max", sorted[sorted.len() - 1]),
        ("median", chouette_core::wrap::interpolate_sorted(&sorted, 0.5)),
        ("95percentile", chouette_core::wrap::interpolate_sorted(&sorted, 0.95)),
    ] {
        want.insert(key(&format!("{name}.{suffix}"), labels), vec![(ms, vm_stored(value))]);
    }
}

/// A value as VictoriaMetrics stores it: 12 significant digits (`9.549999999999999` → `9.55`).
fn vm_stored(value: f64) -> f64 {
    format!("{value:.11e}").parse().expect("a float")
}

/// Runs a Python script with `args` and the caller's environment less any `DD_*` variable (the
/// Datadog client reads `DD_ENV`, `DD_TAGS`, `DD_AGENT_HOST`...) plus `env`; returns its stdout.
fn python(script: &str, args: &[String], env: &[(&str, String)]) -> String {
    let mut command = Command::new("python3");
    command.args(["-c", script]).args(args).env("PYTHONDONTWRITEBYTECODE", "1");
    for (name, _) in std::env::vars() {
        if name.starts_with("DD_") {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().expect("python3");
    assert!(
        out.status.success(),
        "the Python script failed (scripts/install-test-deps.sh installs the datadog and \
         chouette-iot-client packages):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The preamble of the Python scripts: the official client on the agent's UDP port, unbuffered,
/// no telemetry of its own, no container id detection. Sampling is stubbed: the client sends a
/// line at rate `r` when `random() <= r` (`DogStatsd._report`); `random` returning 0 keeps every
/// send, each still marked `|@r`, so the test knows exactly what was sent. `align()` sleeps to
/// 50 ms into a second as [`align_to_second`] does.
const PYTHON_PREAMBLE: &str = r#"
import sys, time
import datadog.dogstatsd.base as base
from datadog import DogStatsd
base.random = lambda: 0.0
statsd = DogStatsd(host="127.0.0.1", port=int(sys.argv[1]), disable_telemetry=True,
                   origin_detection_enabled=False, disable_buffering=True)

def align():
    frac = time.time() % 1
    if not 0.05 <= frac < 0.3:
        time.sleep(0.05 - frac if frac < 0.05 else 1.05 - frac)
    return int(time.time())
"#;

/// Runs `body` after [`PYTHON_PREAMBLE`] with the agent's port; the body prints the second it
/// aligned to and the second it ended in; returns the first after checking they are equal.
fn python_in_one_second(port: u16, body: &str, env: &[(&str, String)]) -> i64 {
    let out = python(&format!("{PYTHON_PREAMBLE}\n{body}"), &[port.to_string()], env);
    let seconds: Vec<i64> = out.split_whitespace().map(|s| s.parse().expect("a second")).collect();
    assert_eq!(seconds.len(), 2, "{out}");
    assert_eq!(seconds[0], seconds[1], "the Python client's sends crossed a bucket boundary");
    seconds[0]
}

// ---- 1. the official Python client ------------------------------------------------------------

#[test]
fn the_python_datadog_client_every_type_exactly() {
    let setup = Setup::start(&[]);
    let second = python_in_one_second(
        setup.port,
        r#"
second = align()
statsd.increment("py.req", tags=["ep:a"])
statsd.increment("py.req", 5, tags=["ep:a"])
statsd.decrement("py.req", tags=["ep:a"])
for _ in range(3):
    statsd.increment("py.sampled", sample_rate=0.5, tags=["ep:a"])
statsd.gauge("py.temp", 40, tags=["room:b"])
statsd.gauge("py.temp", 42.5, tags=["room:b"])
for v in range(1, 11):
    statsd.histogram("py.hist", v, tags=["route:/x"])
for v in (100, 200, 300, 400):
    statsd.timing("py.time", v, tags=["route:/x"])
statsd.histogram("py.hsampled", 8, sample_rate=0.5)
for v in (1.5, 2.5):
    statsd.distribution("py.dist", v, tags=["route:/y"])
for member in ("alice", "bob", "alice"):
    statsd.set("py.users", member)
statsd.event("Deployed", "version 2\nby ci", alert_type="success", aggregation_key="deploy",
             source_type_name="ci", priority="low", tags=["app:shop"], hostname="pi-4")
statsd.service_check("py.db.up", statsd.WARNING, tags=["db:main"], message="slow | very", hostname="pi-4")
statsd.close_socket()
print(second, int(time.time()))
"#,
        &[],
    );
    let ms = second * 1000;
    let mut want: Series = [
        (key("py.req", &["ep=a"]), vec![(ms, 5.0)]),
        // Three sends at @0.5: each counts 2.
        (key("py.sampled", &["ep=a"]), vec![(ms, 6.0)]),
        (key("py.temp", &["room=b"]), vec![(ms, 42.5)]),
        (key("py.users", &[]), vec![(ms, 2.0)]),
    ]
    .into_iter()
    .collect();
    histogram_points(&mut want, "py.hist", &["route=/x"], ms, &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10.]);
    histogram_points(&mut want, "py.time", &["route=/x"], ms, &[100., 200., 300., 400.]);
    // One sample at @0.5 weighs 2.
    histogram_points(&mut want, "py.hsampled", &[], ms, &[8., 8.]);
    histogram_points(&mut want, "py.dist", &["route=/y"], ms, &[1.5, 2.5]);
    // 28 metric lines with 28 values, the event and the service check, nothing refused.
    let counted = |status: &BTreeMap<String, String>| {
        ["dogstatsd.lines", "dogstatsd.samples", "dogstatsd.events", "dogstatsd.service_checks"]
            .map(|f| field(status, f))
    };
    let status = poll(|| setup.status(), |status| counted(status) == [30, 28, 1, 1]);
    assert_eq!(counted(&status), [30, 28, 1, 1], "{status:#?}");
    assert_eq!(refused(&status), BTreeMap::new(), "{status:#?}");
    setup.expect_series(r#"{__name__=~"py\\..*"}"#, &want);
}

// ---- 2. cadence, over UDP and the Unix socket ---------------------------------------------------

/// Every type cadence sends, under `prefix`, with a client-wide tag and per-metric tags.
fn send_with_cadence(client: &StatsdClient) {
    client.count_with_tags("req", 3).with_tag("ep", "a").try_send().expect("count");
    client.incr_with_tags("req").with_tag("ep", "a").try_send().expect("incr");
    client.decr_with_tags("req").with_tag("ep", "a").try_send().expect("decr");
    client.count_with_tags("sampled", 2).with_sampling_rate(0.25).try_send().expect("sampled count");
    client.gauge_with_tags("temp", 20u64).with_tag("room", "b").try_send().expect("gauge");
    client.gauge_with_tags("temp", 21.5).with_tag("room", "b").try_send().expect("gauge");
    client.time_with_tags("time", 120u64).try_send().expect("timer");
    client.time_with_tags("time", Duration::from_millis(80)).try_send().expect("timer");
    client.time_with_tags("time", vec![10u64, 30]).try_send().expect("packed timer");
    client.histogram_with_tags("hist", vec![1.0, 2.0, 3.0]).with_tag("route", "/x").try_send().expect("hist");
    client.histogram_with_tags("hist", 4u64).with_tag("route", "/x").try_send().expect("hist");
    client.distribution_with_tags("dist", 7u64).with_sampling_rate(0.5).try_send().expect("dist");
    client.distribution_with_tags("dist", vec![1.0, 2.0]).try_send().expect("dist");
    for member in [42i64, 7, 42] {
        client.set_with_tags("users", member).try_send().expect("set");
    }
}

fn cadence_want(prefix: &str, ms: i64) -> Series {
    let c = "client=cadence";
    let name = |n: &str| format!("{prefix}.{n}");
    let mut want: Series = [
        (key(&name("req"), &[c, "ep=a"]), vec![(ms, 3.0)]),
        (key(&name("sampled"), &[c]), vec![(ms, 8.0)]),
        (key(&name("temp"), &[c, "room=b"]), vec![(ms, 21.5)]),
        (key(&name("users"), &[c]), vec![(ms, 2.0)]),
    ]
    .into_iter()
    .collect();
    histogram_points(&mut want, &name("time"), &[c], ms, &[120., 80., 10., 30.]);
    histogram_points(&mut want, &name("hist"), &[c, "route=/x"], ms, &[1., 2., 3., 4.]);
    histogram_points(&mut want, &name("dist"), &[c], ms, &[7., 7., 1., 2.]);
    want
}

#[test]
fn cadence_over_udp_every_type_exactly() {
    let setup = Setup::start(&[]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sink = UdpMetricSink::from(("127.0.0.1", setup.port), socket).expect("UDP sink");
    let client = StatsdClient::builder("cad.udp", sink).with_tag("client", "cadence").build();
    let second = align_to_second();
    send_with_cadence(&client);
    assert_same_second(second);
    setup.expect_series(r#"{__name__=~"cad\\.udp\\..*"}"#, &cadence_want("cad.udp", second * 1000));
}

#[test]
fn cadence_over_the_unix_socket_every_type_exactly() {
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let dir = TempDir::new("dogstatsd-uds");
    let path = dir.0.join("dsd.sock");
    let agent = Agent::start(
        agent_binary!(),
        &agent_env(&redis, &vm, &[("DOGSTATSD_SOCKET", path.display().to_string())]),
    );
    agent.wait_ready();
    wait_until("the DogStatsD socket file", Duration::from_secs(20), || path.exists());
    let mode = std::fs::metadata(&path).expect("the socket file").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o622, "DOGSTATSD_SOCKET_MODE's default: {mode:o}");
    let socket = std::os::unix::net::UnixDatagram::unbound().expect("a Unix datagram socket");
    let client = StatsdClient::builder("cad.uds", UnixMetricSink::from(&path, socket))
        .with_tag("client", "cadence")
        .build();
    let second = align_to_second();
    send_with_cadence(&client);
    assert_same_second(second);
    let setup = Setup { redis, vm, agent, port: 0 };
    setup.expect_series(r#"{__name__=~"cad\\.uds\\..*"}"#, &cadence_want("cad.uds", second * 1000));
}

/// The local addresses (`/proc/net/udp` and `udp6` hex, e.g. `0100007F` for 127.0.0.1) of the
/// UDP sockets bound to `port`.
fn udp_bound_addresses(port: u16) -> Vec<String> {
    let suffix = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .flat_map(|table| {
            std::fs::read_to_string(table)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter_map(|row| {
            let local = row.split_whitespace().nth(1)?.to_string();
            Some(local.strip_suffix(&suffix)?.to_string())
        })
        .collect()
}

#[test]
fn udp_is_on_loopback_unless_non_local_traffic_is_on() {
    let setup = Setup::start(&[]);
    assert_eq!(udp_bound_addresses(setup.port), ["0100007F"], "127.0.0.1 by default");
    let open = Setup::start(&[("DOGSTATSD_NON_LOCAL_TRAFFIC", "true".into())]);
    assert_eq!(udp_bound_addresses(open.port), ["00000000"], "0.0.0.0 with DOGSTATSD_NON_LOCAL_TRAFFIC=true");
    for setup in [setup, open] {
        assert!(setup.agent.stop().success());
    }
}

#[test]
fn a_taken_port_is_an_error_line_and_the_unix_socket_still_works() {
    let redis = RedisServer::start();
    let vm = VictoriaMetrics::start();
    let port = free_udp_port();
    let _taken = UdpSocket::bind(("127.0.0.1", port)).expect("take the port");
    let dir = TempDir::new("dogstatsd-options");
    let path = dir.0.join("dsd.sock");
    let agent = Agent::start(
        agent_binary!(),
        &agent_env(
            &redis,
            &vm,
            &[
                ("DOGSTATSD_PORT", port.to_string()),
                ("DOGSTATSD_SOCKET", path.display().to_string()),
                ("DOGSTATSD_SOCKET_MODE", "0660".into()),
                ("DOGSTATSD_SO_RCVBUF", "1048576".into()),
            ],
        ),
    );
    agent.wait_ready();
    wait_until("the DogStatsD socket file", Duration::from_secs(20), || path.exists());
    let mode = std::fs::metadata(&path).expect("the socket file").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o660, "DOGSTATSD_SOCKET_MODE=0660: {mode:o}");
    let log = agent.output();
    assert!(
        log.lines().any(|l| l.contains(r#""levelname": "ERROR""#) && l.contains(&format!(":{port}"))),
        "an ERROR line names the taken port:\n{log}"
    );
    let socket = std::os::unix::net::UnixDatagram::unbound().expect("a Unix datagram socket");
    socket.send_to(b"opt.count:2|c\nopt.count:3|c", &path).expect("send");
    let setup = Setup { redis, vm, agent, port };
    let status = poll(|| setup.status(), |status| field(status, "dogstatsd.uds.datagrams") == 1);
    assert_eq!(field(&status, "dogstatsd.uds.datagrams"), 1, "{status:#?}");
    assert!(!status.contains_key("dogstatsd.udp.datagrams"), "no UDP socket: {status:#?}");
    // The effective receive buffer is in the status and in the log.
    let recv_buffer = field(&status, "dogstatsd.uds.recv_buffer");
    assert!(recv_buffer > 0, "{status:#?}");
    assert!(setup.agent.output().contains(&format!("recv_buffer={recv_buffer}")), "{}", setup.agent.output());
    let want: Series = [(key("opt.count", &[]), vec![])].into_iter().collect();
    let got = poll(
        || {
            setup.vm.flush();
            setup.vm.series(r#"{__name__="opt.count"}"#)
        },
        |got| got.keys().eq(want.keys()),
    );
    let total: f64 = got.values().flat_map(|p| p.iter().map(|(_, v)| v)).sum();
    assert_eq!(total, 5.0, "{got:?}");
    let Setup { agent, .. } = setup;
    assert!(agent.stop().success());
}

// ---- 3. hand-written datagrams: each grammar feature, each malformed shape ---------------------

/// One datagram per malformed shape (the list of `core/tests/dogstatsd.rs`), with its reason.
const MALFORMED: &[(&[u8], &str)] = &[
    (b"a:1|c\xff", "not_utf8"),
    (b"\xc3(:1|c", "not_utf8"),
    (b":1|c", "empty_name"),
    (b"abc", "missing_value"),
    (b"abc|c", "missing_value"),
    (b"abc:1", "missing_type"),
    (b"a:1|", "unknown_type"),
    (b"a:1|x", "unknown_type"),
    (b"a:1|C", "unknown_type"),
    (b"a:1|c |#t", "unknown_type"),
    (b"a:|c", "empty_value"),
    (b"a::|h", "empty_value"),
    (b"a:|s", "empty_value"),
    (b"a:abc|g", "bad_value"),
    (b"a:1:x|h", "bad_value"),
    (b"a:1,5|g", "bad_value"),
    (b"a: 1|g", "bad_value"),
    (b"a:NaN|g", "non_finite"),
    (b"a:inf|h", "non_finite"),
    (b"a:-infinity|d", "non_finite"),
    (b"a:1e999|c", "non_finite"),
    (b"a:1|c|@0", "bad_sample_rate"),
    (b"a:1|c|@1.5", "bad_sample_rate"),
    (b"a:1|c|@-0.5", "bad_sample_rate"),
    (b"a:1|c|@x", "bad_sample_rate"),
    (b"a:1|c|@NaN", "bad_sample_rate"),
    (b"a:1|c|@", "bad_sample_rate"),
    (b"a:1|g|T0", "bad_timestamp"),
    (b"a:1|g|T-5", "bad_timestamp"),
    (b"a:1|g|T1.5", "bad_timestamp"),
    (b"a:1|g|T", "bad_timestamp"),
    (b"_e{5,4:title|text", "bad_event_header"),
    (b"_e{5}:title|text", "bad_event_header"),
    (b"_e{,4}:title|text", "bad_event_header"),
    (b"_e{-1,4}:title|text", "bad_event_header"),
    (b"_e{5,5}:title|text", "event_length_mismatch"),
    (b"_e{4,4}:title|text", "event_length_mismatch"),
    (b"_e{5,3}:title|text", "event_length_mismatch"),
    ("_e{1,1}:t|é".as_bytes(), "event_length_mismatch"),
    (b"_e{99999999999999999999,1}:t|x", "bad_event_header"),
    (b"_e{0,4}:|text", "empty_title"),
    (b"_e{1,1}:t|x|p:urgent", "bad_priority"),
    (b"_e{1,1}:t|x|t:fatal", "bad_alert_type"),
    (b"_e{1,1}:t|x|d:0", "bad_timestamp"),
    (b"_sc|", "bad_service_check"),
    (b"_sc||0", "bad_service_check"),
    (b"_sc|name|", "bad_service_check"),
    (b"_sc|name|4", "bad_status"),
    (b"_sc|name|ok", "bad_status"),
    (b"_sc|name|0|d:x", "bad_timestamp"),
];

/// The `dogstatsd.refused.<reason>` fields that are not zero.
fn refused(status: &BTreeMap<String, String>) -> BTreeMap<String, u64> {
    status
        .iter()
        .filter_map(|(k, v)| {
            Some((k.strip_prefix("dogstatsd.refused.")?.to_string(), v.parse::<u64>().ok()?))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn field(status: &BTreeMap<String, String>, name: &str) -> u64 {
    status.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[test]
fn hand_written_datagrams_each_grammar_feature_exactly() {
    let setup = Setup::start(&[]);
    let second = align_to_second();
    let datagrams = [
        "hw.pack:1:2:3|h|#k:v".to_string(),
        "hw.sr.count:1|c|@0.25".to_string(),
        "hw.sr.hist:10|h|@0.25\nhw.sr.hist:20|h".to_string(),
        "hw.sr.dist:4:6|d|@0.5".to_string(),
        "hw.tags:1|c|#a:b,bare,url:http://x:80".to_string(),
        "hw.cid:2|c|c:abc|#a:b".to_string(),
        "hw.ml.a:1|c\r\nhw.ml.a:2|c\r\nhw.ml.g:7|g\nhw.ml.g:-3|g\r\nhw.ml.s:x|s\r\nhw.ml.s:y|s\r\nhw.ml.s:x|s\r\n\r\n"
            .to_string(),
        "hw.ms:5|ms\n".to_string(),
    ];
    setup.send(&datagrams);
    assert_same_second(second);
    setup.send(&MALFORMED.iter().map(|(d, _)| *d).collect::<Vec<_>>());

    let ms = second * 1000;
    let mut want: Series = [
        (key("hw.sr.count", &[]), vec![(ms, 4.0)]),
        (key("hw.tags", &["a=b", "bare=no_label_value", "url=http://x:80"]), vec![(ms, 1.0)]),
        (key("hw.cid", &["a=b", "container_id=abc"]), vec![(ms, 2.0)]),
        (key("hw.ml.a", &[]), vec![(ms, 3.0)]),
        (key("hw.ml.g", &[]), vec![(ms, -3.0)]),
        (key("hw.ml.s", &[]), vec![(ms, 2.0)]),
    ]
    .into_iter()
    .collect();
    histogram_points(&mut want, "hw.pack", &["k=v"], ms, &[1., 2., 3.]);
    histogram_points(&mut want, "hw.sr.hist", &[], ms, &[10., 10., 10., 10., 20.]);
    histogram_points(&mut want, "hw.sr.dist", &[], ms, &[4., 4., 6., 6.]);
    histogram_points(&mut want, "hw.ms", &[], ms, &[5.]);

    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for (_, reason) in MALFORMED {
        *reasons.entry(reason.to_string()).or_default() += 1;
    }
    let last = "bad_timestamp: _sc|name|0|d:x";
    let status = poll(
        || setup.status(),
        |status| {
            refused(status) == reasons
                && status.get("dogstatsd.last_bad_line").map(String::as_str) == Some(last)
        },
    );
    assert_eq!(refused(&status), reasons, "{status:#?}");
    assert_eq!(status.get("dogstatsd.last_bad_line").map(String::as_str), Some(last), "{status:#?}");
    let printed = setup.chouette_status();
    assert!(
        printed.lines().any(|l| l.trim_start().starts_with("dogstatsd.last_bad_line") && l.ends_with(last)),
        "{printed}"
    );
    setup.expect_series(r#"{__name__=~"hw\\..*"}"#, &want);
}

/// A line stamped on receipt, delivered: from then on the agent has emitted buckets later than
/// any `|T` 30 s in the past, as on any agent that has been running for a while. Returns its series.
fn deliver_a_first_line(setup: &Setup, name: &str) -> Series {
    setup.send(&[format!("{name}:1|c")]);
    let selector = format!(r#"{{__name__="{name}"}}"#);
    let first = poll(
        || {
            setup.vm.flush();
            setup.vm.series(&selector)
        },
        |got| !got.is_empty(),
    );
    assert_eq!(first.len(), 1, "the first line was delivered: {first:?}");
    first
}

#[test]
fn a_timestamped_line_lands_in_its_own_bucket() {
    // Protocol 1.3's `|T` on counts and gauges: the point keeps its own timestamp (issue 12, the
    // listener's contract), here 30 s before the receipt, a bucket the agent has long emitted.
    let setup = Setup::start(&[]);
    let first = deliver_a_first_line(&setup, "ts.first");
    let past = now().floor() as i64 - 30;
    setup.send(&[format!("ts.gauge:5|g|T{past}\nts.count:3|c|#a:b|T{past}")]);
    let want: Series = [
        (key("ts.gauge", &[]), vec![(past * 1000, 5.0)]),
        (key("ts.count", &["a=b"]), vec![(past * 1000, 3.0)]),
    ]
    .into_iter()
    .chain(first)
    .collect();
    setup.expect_series(r#"{__name__=~"ts\\..*"}"#, &want);
}

/// The Agent sends them as two points at one timestamp, and a backend keeps one of them; the
/// listener holds a `|T` point a second after its first line and adds the later ones into it.
#[test]
fn two_timestamped_counts_of_one_series_and_second_are_one_point() {
    let setup = Setup::start(&[]);
    let first = deliver_a_first_line(&setup, "tsl.first");
    let past = now().floor() as i64 - 30;
    setup.send(&[format!("tsl.count:3|c|#a:b|T{past}\ntsl.count:4|c|#a:b|T{past}")]);
    let want: Series =
        [(key("tsl.count", &["a=b"]), vec![(past * 1000, 7.0)])].into_iter().chain(first).collect();
    setup.expect_series(r#"{__name__=~"tsl\\..*"}"#, &want);
}

// ---- 4. one point with the apps' records --------------------------------------------------------

#[test]
fn a_dogstatsd_count_and_a_chouette_count_of_one_series_and_bucket_are_one_point() {
    let setup = Setup::start(&[]);
    let second = python_in_one_second(
        setup.port,
        r#"
from chouette_iot_client import ChouetteClient
second = align()
assert ChouetteClient.count("mix.count", 2, timestamp=time.time(), tags={"ep": "a"}).result()
statsd.increment("mix.count", 3, tags=["ep:a"])
statsd.close_socket()
print(second, int(time.time()))
"#,
        &[("REDIS_HOST", "127.0.0.1".into()), ("REDIS_PORT", setup.redis.port.to_string())],
    );
    let want: Series = [(key("mix.count", &["ep=a"]), vec![(second * 1000, 5.0)])].into_iter().collect();
    setup.expect_series(r#"{__name__=~"mix\\..*"}"#, &want);
}

// ---- 5. conservation ----------------------------------------------------------------------------

#[test]
fn every_datagram_and_every_line_is_accounted_for() {
    let setup =
        Setup::start(&[("DOGSTATSD_BUFFER_SIZE", "1024".into()), ("SEND_SELF_METRICS", "true".into())]);
    let mut datagrams: Vec<String> = Vec::new();
    let (mut lines, mut metric_lines, mut samples, mut events, mut checks) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut count_sum = 0.0;
    for i in 0..200 {
        let datagram = match i % 5 {
            0 => {
                lines += 1;
                metric_lines += 1;
                samples += 1;
                count_sum += 1.0;
                format!("cons.c:1|c|#i:{}", i % 3)
            }
            1 => {
                lines += 2;
                metric_lines += 1;
                samples += 1;
                *reasons.entry("bad_value".into()).or_default() += 1;
                format!("cons.g:{i}|g\ncons.bad:abc|g")
            }
            2 => {
                lines += 2;
                events += 1;
                checks += 1;
                "_e{5,4}:title|text|#a:b\n_sc|cons.check|0|#a:b\n".to_string()
            }
            3 => {
                lines += 3;
                metric_lines += 1;
                samples += 3;
                *reasons.entry("unknown_type".into()).or_default() += 1;
                *reasons.entry("empty_name".into()).or_default() += 1;
                "cons.h:1:2:3|h\ncons.x:1|x\n:1|c".to_string()
            }
            _ => {
                lines += 2;
                metric_lines += 1;
                samples += 1;
                count_sum += 2.0;
                *reasons.entry("bad_status".into()).or_default() += 1;
                "cons.c:2|c\r\n_sc|cons.check|4\r\n".to_string()
            }
        };
        datagrams.push(datagram);
    }
    // Last, a bad line longer than the 200 bytes `last_bad_line` keeps.
    let long = format!("cons.long:{}|g", "x".repeat(300));
    let last_bad_line = format!("bad_value: {}", &long[..200]);
    lines += 1;
    *reasons.entry("bad_value".into()).or_default() += 1;
    datagrams.push(long);
    let bytes: usize = datagrams.iter().map(String::len).sum();
    // Longer than DOGSTATSD_BUFFER_SIZE: dropped whole, counted as truncated, none of its lines read.
    let too_long = "cons.big:1|c\n".repeat(160);
    assert!(too_long.len() > 1024);
    datagrams.insert(100, too_long);
    setup.send(&datagrams);

    let want: BTreeMap<&str, u64> = [
        ("dogstatsd.udp.datagrams", 201),
        ("dogstatsd.udp.bytes", bytes as u64),
        ("dogstatsd.udp.kernel_drops", 0),
        ("dogstatsd.udp.truncated", 1),
        ("dogstatsd.lines", lines),
        ("dogstatsd.samples", samples),
        ("dogstatsd.events", events),
        ("dogstatsd.service_checks", checks),
    ]
    .into_iter()
    .collect();
    let read = |status: &BTreeMap<String, String>| -> BTreeMap<&str, u64> {
        want.keys().map(|k| (*k, field(status, k))).collect()
    };
    let status = poll(|| setup.status(), |status| read(status) == want && refused(status) == reasons);
    assert_eq!(read(&status), want, "{status:#?}");
    assert_eq!(refused(&status), reasons, "{status:#?}");
    assert_eq!(status.get("dogstatsd.last_bad_line"), Some(&last_bad_line), "{status:#?}");
    // The identities themselves, on what the agent reported.
    let sent_datagrams = datagrams.len() as u64;
    assert_eq!(
        sent_datagrams,
        field(&status, "dogstatsd.udp.datagrams")
            + field(&status, "dogstatsd.udp.kernel_drops")
            + field(&status, "dogstatsd.udp.truncated")
    );
    let refused_lines: u64 = refused(&status).values().sum();
    assert_eq!(
        field(&status, "dogstatsd.lines"),
        metric_lines
            + field(&status, "dogstatsd.events")
            + field(&status, "dogstatsd.service_checks")
            + refused_lines
    );

    // The counts reached VictoriaMetrics (summed over however many buckets the sending spanned),
    // the too-long datagram's did not.
    let sum = |vm: &VictoriaMetrics| -> f64 {
        vm.flush();
        vm.series(r#"{__name__="cons.c"}"#).values().flat_map(|p| p.iter().map(|(_, v)| v)).sum()
    };
    assert_eq!(poll(|| sum(&setup.vm), |got| *got == count_sum), count_sum);
    assert!(setup.vm.series(r#"{__name__="cons.big"}"#).is_empty());

    // The self-metrics (deltas per interval) add up to the same figures, per socket and reason.
    let self_metrics = |vm: &VictoriaMetrics| -> BTreeMap<String, f64> {
        vm.flush();
        let mut totals = BTreeMap::new();
        for (labels, points) in vm.series(r#"{__name__=~"chouette\\.dogstatsd\\..*"}"#) {
            let name =
                labels.split(',').next().unwrap_or_default().trim_start_matches("__name__=").to_string();
            let detail: Vec<&str> =
                labels.split(',').filter(|l| l.starts_with("socket=") || l.starts_with("reason=")).collect();
            let total: f64 = points.iter().map(|(_, v)| v).sum();
            *totals.entry(format!("{name}{{{}}}", detail.join(","))).or_default() += total;
        }
        totals.retain(|_, v| *v != 0.0);
        totals
    };
    let mut want_self: BTreeMap<String, f64> = [
        ("chouette.dogstatsd.datagrams{socket=udp}".to_string(), 201.0),
        ("chouette.dogstatsd.truncated{socket=udp}".to_string(), 1.0),
        ("chouette.dogstatsd.samples{}".to_string(), samples as f64),
        ("chouette.dogstatsd.events{}".to_string(), events as f64),
        ("chouette.dogstatsd.service_checks{}".to_string(), checks as f64),
    ]
    .into_iter()
    .collect();
    for (reason, n) in &reasons {
        want_self.insert(format!("chouette.dogstatsd.refused{{reason={reason}}}"), *n as f64);
    }
    assert_eq!(poll(|| self_metrics(&setup.vm), |got| *got == want_self), want_self);
    let Setup { agent, .. } = setup;
    assert!(agent.stop().success());
}

#[test]
fn kernel_drops_are_counted_and_what_was_read_is_delivered() {
    // A small receive buffer and a stopped agent (SIGSTOP): the kernel queues a few datagrams and
    // drops the rest. Sent = read + dropped, exactly, and what was read reaches the backend.
    let setup = Setup::start(&[("DOGSTATSD_SO_RCVBUF", "4096".into())]);
    let signal = |name: &str| {
        let sent = Command::new("kill").args([name, &setup.agent.pid().to_string()]).status().expect("kill");
        assert!(sent.success());
    };
    let sent = 2000u64;
    signal("-STOP");
    setup.send(&vec!["drop.c:1|c"; sent as usize]);
    signal("-CONT");
    let counts = |status: &BTreeMap<String, String>| {
        (field(status, "dogstatsd.udp.datagrams"), field(status, "dogstatsd.udp.kernel_drops"))
    };
    let status = poll(|| setup.status(), |status| counts(status).0 + counts(status).1 == sent);
    let (read, dropped) = counts(&status);
    eprintln!(
        "datagrams={sent} read={read} kernel_drops={dropped}: a 4 KiB receive buffer, the agent stopped"
    );
    assert_eq!(read + dropped, sent, "{status:#?}");
    assert!(read > 0 && dropped > 0, "a 4 KiB buffer holds some datagrams, not 2000: {status:#?}");
    // The kernel's own count, as `netstat -su` and /proc/net/udp show it.
    assert_eq!(udp_drops(setup.port), Some(dropped), "/proc/net/udp's drops column");
    assert_eq!(field(&status, "dogstatsd.samples"), read);
    let sum = || -> f64 {
        setup.vm.flush();
        setup.vm.series(r#"{__name__="drop.c"}"#).values().flat_map(|p| p.iter().map(|(_, v)| v)).sum()
    };
    assert_eq!(poll(sum, |got| *got == read as f64), read as f64);
    let Setup { agent, .. } = setup;
    assert!(agent.stop().success());
}

// ---- 6. SIGTERM ---------------------------------------------------------------------------------

#[test]
fn sigterm_flushes_the_open_bucket_and_loses_nothing() {
    // 10 s buckets: the lines are sent early in one, SIGTERM comes while it is still open.
    let interval = 10;
    let extra = [("AGGREGATE_INTERVAL", interval.to_string())];
    let setup = Setup::start(&extra);
    let frac = now() % interval as f64;
    if frac > 4.0 {
        std::thread::sleep(Duration::from_secs_f64(interval as f64 - frac + 0.1));
    }
    let bucket = (now() / interval as f64).floor() as i64 * interval;
    let mut datagrams: Vec<&str> = vec!["term.count:1|c"; 20];
    datagrams.extend(["term.count:2|c|#k:v"; 5]);
    datagrams.push("term.gauge:3|g");
    setup.send(&datagrams);
    // The listener has taken every datagram off the socket (what it took is recorded before its
    // thread stops); the status is only written every few seconds.
    wait_until("the listener to read every datagram", Duration::from_secs(5), || {
        udp_rx_queue(setup.port) == Some(0)
    });
    let Setup { redis, vm, agent, port } = setup;
    // SIGTERM follows within milliseconds; half a second of margin before the bucket's end.
    let before_close = now() + 0.5 < (bucket + interval) as f64;
    assert!(agent.stop().success(), "exit 0 after SIGTERM");
    assert!(before_close, "the bucket closed before SIGTERM: the test checked nothing (a loaded machine?)");
    let mut con = redis.client();
    let status: BTreeMap<String, String> = con.hgetall("chouette:agent:status").expect("status hash");
    assert_eq!(field(&status, "dogstatsd.samples"), 26, "the last status, written at SIGTERM: {status:#?}");

    // A new agent delivers what the first one put in the outbox.
    let again = Agent::start(
        agent_binary!(),
        &agent_env(&redis, &vm, &[("DOGSTATSD_PORT", port.to_string()), extra[0].clone()]),
    );
    let ms = bucket * 1000;
    let want: Series = [
        (key("term.count", &[]), vec![(ms, 20.0)]),
        (key("term.count", &["k=v"]), vec![(ms, 10.0)]),
        (key("term.gauge", &[]), vec![(ms, 3.0)]),
    ]
    .into_iter()
    .collect();
    let got = wait_for_series(&vm, r#"{__name__=~"term\\..*"}"#, &want);
    assert_eq!(got, want, "agent log:\n{}", again.output());
    assert!(again.stop().success());
}

#[test]
fn datagrams_still_in_the_kernel_queue_at_sigterm_are_read_and_flushed() {
    let extra = [("AGGREGATE_INTERVAL", "10".to_string())];
    let setup = Setup::start(&extra);
    let signal = |name: &str, pid: u32| {
        let sent = Command::new("kill").args([name, &pid.to_string()]).status().expect("kill");
        assert!(sent.success(), "kill {name}");
    };
    // The agent stopped (SIGSTOP): what is sent now stays in the kernel's receive queue.
    let pid = setup.agent.pid();
    signal("-STOP", pid);
    // Enough that the receive thread cannot read them all before it sees the stop: without the
    // drain, most would be lost (10,000 small datagrams fit the 16 MiB receive buffer).
    let mut datagrams = vec!["drain.count:1|c"; 8000];
    datagrams.extend(["drain.count:1|c|#k:v"; 2000]);
    setup.send(&datagrams);
    let queued = udp_rx_queue(setup.port).unwrap_or(0);
    // SIGTERM arrives with the datagrams still queued (delivered at SIGCONT, sent 300 ms after).
    let continued = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        signal("-CONT", pid);
    });
    let Setup { redis, vm, agent, port } = setup;
    assert!(agent.stop().success(), "exit 0 after SIGTERM");
    continued.join().expect("SIGCONT");
    assert!(queued > 0, "nothing was queued in the kernel at SIGTERM: the test checked nothing");
    let mut con = redis.client();
    let status: BTreeMap<String, String> = con.hgetall("chouette:agent:status").expect("status hash");
    // Every datagram the kernel kept was read (a receive buffer smaller than this machine's
    // 16 MiB, without CAP_NET_ADMIN, drops some: counted).
    let read = field(&status, "dogstatsd.udp.datagrams");
    assert_eq!(read + field(&status, "dogstatsd.udp.kernel_drops"), 10_000, "{status:#?}");
    assert!(read >= 2000, "the kernel kept only {read} datagrams: {status:#?}");
    assert_eq!(field(&status, "dogstatsd.samples"), read, "{status:#?}");

    // A new agent delivers what the first one put in the outbox, whatever buckets.
    let again = Agent::start(
        agent_binary!(),
        &agent_env(&redis, &vm, &[("DOGSTATSD_PORT", port.to_string()), extra[0].clone()]),
    );
    let total = |series: &Series| -> f64 { series.values().flatten().map(|(_, v)| v).sum() };
    let got = poll(
        || {
            vm.flush();
            vm.series(r#"{__name__="drain.count"}"#)
        },
        |got| total(got) >= read as f64,
    );
    assert_eq!(total(&got), read as f64, "{got:?}\nagent log:\n{}", again.output());
    assert!(again.stop().success());
}

// ---- 7. the context limit -----------------------------------------------------------------------

#[test]
fn contexts_past_the_limit_are_refused_and_counted() {
    let setup = Setup::start(&[("DOGSTATSD_MAX_CONTEXTS", "5".into())]);
    let datagram: String = (0..8).map(|k| format!("ctx.n{k}:1|c\nctx.n{k}:2|c\n")).collect();
    let second = align_to_second();
    setup.send(&[datagram]);
    assert_same_second(second);
    let status = poll(
        || setup.status(),
        |status| field(status, "dogstatsd.samples") == 10 && refused(status).get("contexts_full") == Some(&6),
    );
    assert_eq!(field(&status, "dogstatsd.samples"), 10, "{status:#?}");
    assert_eq!(refused(&status), BTreeMap::from([("contexts_full".to_string(), 6)]), "{status:#?}");
    assert_eq!(field(&status, "dogstatsd.lines"), 16);
    // The last closed interval's contexts and its top contexts by samples (`name{tags} n`).
    let top = "ctx.n0{} 2; ctx.n1{} 2; ctx.n2{} 2; ctx.n3{} 2; ctx.n4{} 2";
    let status = poll(
        || setup.status(),
        |status| {
            status.get("dogstatsd.contexts").map(String::as_str) == Some("5")
                && status.get("dogstatsd.top").map(String::as_str) == Some(top)
        },
    );
    assert_eq!(status.get("dogstatsd.contexts").map(String::as_str), Some("5"), "{status:#?}");
    assert_eq!(status.get("dogstatsd.top").map(String::as_str), Some(top), "{status:#?}");
    let want: Series = (0..5).map(|k| (key(&format!("ctx.n{k}"), &[]), vec![(second * 1000, 3.0)])).collect();
    setup.expect_series(r#"{__name__=~"ctx\\..*"}"#, &want);
}
