//! Real servers for integration tests, each on a free loopback port, stopped on drop.
//!
//! `redis-server` and `victoria-metrics` must be on the PATH (CI installs the Debian packages
//! `redis-server` and `victoria-metrics`; `scripts/install-test-deps.sh` does it by hand).
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound then released; the server binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local addr").port()
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on port {port}: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on port {port} within 30 s");
}

/// Waits until Redis answers `PING` with `PONG`: a server that listens may still be loading its
/// append-only file and answer every command with `LOADING` (a `BusyLoadingError` in a test
/// that wrote too early made the restart test flaky).
fn wait_for_redis_ready(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("redis://127.0.0.1:{port}/0");
    let mut last = String::new();
    while Instant::now() < deadline {
        let pong = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut con| redis::cmd("PING").query::<String>(&mut con));
        match pong {
            Ok(reply) if reply == "PONG" => return,
            Ok(reply) => last = reply,
            Err(e) => last = e.to_string(),
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("redis-server exited before it was ready on port {port}: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} not ready within 30 s: {last}");
}

/// A scratch directory (`chouette-<what>-<pid>-<port>` under the temp dir), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        TempDir(scratch_dir(what))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes raw records exactly as the Python client does (`MULTI; ZADD; HSET; EXEC`), 5000 a
/// transaction.
pub fn write_raw(con: &mut redis::Connection, records: &[(String, f64, String)]) {
    for chunk in records.chunks(5000) {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (id, score, value) in chunk {
            pipe.cmd("ZADD").arg(chouette_core::keys::RAW_METRICS.keys).arg(*score).arg(id).ignore();
            pipe.cmd("HSET").arg(chouette_core::keys::RAW_METRICS.values).arg(id).arg(value).ignore();
        }
        let () = pipe.query(con).expect("write raw records");
    }
}

fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chouette-{what}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A `redis-server` on a free loopback port, without persistence, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_on(free_port())
    }

    /// Starts on a given port (to restart a server where clients expect it).
    pub fn start_on(port: u16) -> RedisServer {
        Self::spawn(port, scratch_dir("redis"), false)
    }

    /// A server that fsyncs every write to an append-only file in `dir`, so a kill loses
    /// nothing: restart it with [`RedisServer::restart_persistent`].
    pub fn start_persistent() -> RedisServer {
        Self::spawn(free_port(), scratch_dir("redis-aof"), true)
    }

    /// Kills this persistent server and starts a new one on the same port and data.
    pub fn restart_persistent(mut self) -> RedisServer {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, PathBuf::new());
        let port = self.port;
        drop(self);
        Self::spawn(port, dir, true)
    }

    fn spawn(port: u16, dir: PathBuf, persistent: bool) -> RedisServer {
        let aof: &[&str] = if persistent {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(aof)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (install the Debian package redis-server)");
        wait_for_port(port, "redis-server", &mut child);
        wait_for_redis_ready(port, &mut child);
        RedisServer { port, child, dir }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url()).expect("redis url").get_connection().expect("connect to test redis")
    }

    /// Stops the server (a kill, like a crash), keeping the port for `start_on`.
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A single-node VictoriaMetrics on a free loopback port, killed on drop. It accepts Datadog's
/// `POST /datadog/api/v1/series`; point `DATADOG_URL` at [`VictoriaMetrics::datadog_url`].
pub struct VictoriaMetrics {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl VictoriaMetrics {
    pub fn start() -> VictoriaMetrics {
        let port = free_port();
        let dir = scratch_dir("vm");
        let mut child = Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", dir.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=100y")
            .arg("-search.disableCache")
            // One sample per series and timestamp, as Datadog keeps the last point: a point
            // re-sent after a crash is then idempotent, which the kill -9 test relies on.
            .arg("-dedup.minScrapeInterval=1ms")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start victoria-metrics (install the Debian package victoria-metrics)");
        wait_for_port(port, "victoria-metrics", &mut child);
        VictoriaMetrics { port, child, dir }
    }

    /// The `DATADOG_URL` that makes the agent post to this server.
    pub fn datadog_url(&self) -> String {
        format!("http://127.0.0.1:{}/datadog/api", self.port)
    }

    /// Makes ingested samples visible to queries.
    pub fn flush(&self) {
        let _ = http_get(self.port, "/internal/force_flush");
    }

    /// Exports every series matching `selector` (e.g. `{__name__=~"req.*"}`) as JSON lines:
    /// `{"metric":{...labels},"values":[...],"timestamps":[ms...]}`.
    pub fn export(&self, selector: &str) -> String {
        self.flush();
        http_get(self.port, &format!("/api/v1/export?match[]={}", percent_encode(selector)))
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plain HTTP/1.1 GET on loopback; returns the body.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("write request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return dechunk(body);
    }
    body.to_string()
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `chouette` binary of this package, started with a clean environment (only `PATH`) plus
/// the given variables, its stdout in a temporary log file. Killed on drop.
pub struct Agent {
    child: std::process::Child,
    log: PathBuf,
}

impl Agent {
    pub fn start(vars: &[(&str, String)]) -> Agent {
        let log =
            std::env::temp_dir().join(format!("chouette-agent-{}-{}.log", std::process::id(), free_port()));
        // Set for chouette-agent's own tests; other packages that include this module have no agent.
        let Some(binary) = option_env!("CARGO_BIN_EXE_chouette") else {
            panic!("support::Agent is only for chouette-agent's own tests");
        };
        let mut command = Command::new(binary);
        command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        for (name, value) in vars {
            command.env(name, value);
        }
        let out = std::fs::File::create(&log).expect("agent log file");
        let child = command.stdout(out).stderr(Stdio::inherit()).spawn().expect("start chouette");
        Agent { child, log }
    }

    /// What the agent printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the agent has opened its store (its signal handlers are installed by then).
    pub fn wait_ready(&self) {
        wait_until("the agent to open its store", Duration::from_secs(20), || {
            self.output().contains("store in use")
        });
    }

    /// SIGTERM once the agent is up, then its exit status (within 20 s); the log is printed
    /// when the exit is not a success.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.wait_ready();
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                if !status.success() {
                    eprintln!("agent log:\n{}", self.output());
                }
                return status;
            }
            assert!(Instant::now() < deadline, "the agent did not stop within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A kill -9.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Polls `done` every 50 ms until it holds; fails the test after `within`.
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl VictoriaMetrics {
    /// Every series matching `selector`, keyed `label=value,...` (sorted, `__name__` first by
    /// order), with its `(timestamp ms, value)` points.
    pub fn series(&self, selector: &str) -> std::collections::BTreeMap<String, Vec<(i64, f64)>> {
        let mut out = std::collections::BTreeMap::new();
        for line in self.export(selector).lines().filter(|l| !l.trim().is_empty()) {
            let row: serde_json::Value = serde_json::from_str(line).expect("export line");
            let labels: std::collections::BTreeMap<String, String> = row["metric"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let key = labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            let points = row["timestamps"]
                .as_array()
                .expect("timestamps")
                .iter()
                .zip(row["values"].as_array().expect("values"))
                .map(|(t, v)| (t.as_i64().expect("ts"), v.as_f64().expect("value")))
                .collect();
            out.insert(key, points);
        }
        out
    }
}
