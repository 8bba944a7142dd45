//! Real servers for integration tests, each on a free loopback port, stopped on drop.
//!
//! `redis-server` and `victoria-metrics` must be on the PATH (CI installs the Debian packages
//! `redis-server` and `victoria-metrics`; `scripts/install-test-deps.sh` does it by hand).
//! `influxd` (InfluxDB 1.6, Debian's `influxdb` unpacked by `scripts/install-test-deps.sh`) is
//! found through `CHOUETTE_INFLUXD`, the PATH, or that script's cache directory.
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
    /// The OpenTSDB HTTP listener's port, when started with [`VictoriaMetrics::start_with_opentsdb`].
    pub opentsdb_port: Option<u16>,
    child: Child,
    dir: PathBuf,
}

impl VictoriaMetrics {
    pub fn start() -> VictoriaMetrics {
        Self::spawn(&[])
    }

    fn spawn(extra_args: &[String]) -> VictoriaMetrics {
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
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start victoria-metrics (install the Debian package victoria-metrics)");
        wait_for_port(port, "victoria-metrics", &mut child);
        VictoriaMetrics { port, opentsdb_port: None, child, dir }
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

impl VictoriaMetrics {
    /// Like [`VictoriaMetrics::start`], with the OpenTSDB HTTP listener (`POST /api/put`) on a
    /// second free loopback port, [`VictoriaMetrics::opentsdb_url`]. VictoriaMetrics answers 204
    /// even to junk there: assert on [`VictoriaMetrics::export`], never on the status.
    pub fn start_with_opentsdb() -> VictoriaMetrics {
        let opentsdb_port = free_port();
        let mut vm = Self::spawn(&[format!("-opentsdbHTTPListenAddr=127.0.0.1:{opentsdb_port}")]);
        wait_for_port(opentsdb_port, "victoria-metrics opentsdb listener", &mut vm.child);
        vm.opentsdb_port = Some(opentsdb_port);
        vm
    }

    /// `http://127.0.0.1:<port>` of the OpenTSDB listener (post to `/api/put`), if started with
    /// [`VictoriaMetrics::start_with_opentsdb`].
    pub fn opentsdb_url(&self) -> Option<String> {
        self.opentsdb_port.map(|port| format!("http://127.0.0.1:{port}"))
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

/// A plain HTTP/1.1 request on loopback; returns the status and the body.
pub fn http_request(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // One write: a server that answers before reading the body (404 for a missing database)
    // then has it all, and does not reset the connection over unread bytes.
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).expect("write request");
    let mut response = Vec::new();
    if let Err(e) = stream.read_to_end(&mut response) {
        panic!("{method} {path}: reading the response: {e} (after {} bytes)", response.len());
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return (status, dechunk(body));
    }
    (status, body.to_string())
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

/// Where `influxd` is: `CHOUETTE_INFLUXD`, else `influxd` on the PATH, else where
/// `scripts/install-test-deps.sh` unpacks Debian's package.
pub fn influxd_path() -> PathBuf {
    if let Some(path) = std::env::var_os("CHOUETTE_INFLUXD") {
        return PathBuf::from(path);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        if let Some(found) = std::env::split_paths(&paths).map(|d| d.join("influxd")).find(|p| p.is_file()) {
            return found;
        }
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/nonexistent"));
    cache.join("chouette/influxdb/usr/bin/influxd")
}

/// A real InfluxDB 1.6 (`influxd`) on free loopback ports (HTTP and the meta/RPC bind address),
/// with its meta, data and WAL in a scratch directory, usage reporting off; killed on drop.
/// Its write API is `POST {url}/write?db=..&precision=s`.
pub struct InfluxServer {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl InfluxServer {
    pub fn start() -> InfluxServer {
        InfluxServer::start_on(free_port())
    }

    /// An InfluxDB on `port` (to bring one back where an agent already points).
    pub fn start_on(port: u16) -> InfluxServer {
        let rpc_port = free_port();
        let dir = scratch_dir("influxdb");
        let config = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{dir}/meta"
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[logging]
  level = "warn"
"#,
            dir = dir.display()
        );
        let config_path = dir.join("influxdb.conf");
        std::fs::write(&config_path, config).expect("write influxdb.conf");
        let influxd = influxd_path();
        let mut child = Command::new(&influxd)
            .arg("-config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("influxd.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} ({e}): run scripts/install-test-deps.sh or set CHOUETTE_INFLUXD",
                    influxd.display()
                )
            });
        wait_for_port(port, "influxd", &mut child);
        let server = InfluxServer { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = http_request(server.port, "GET", "/ping", b"");
            if status == 204 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "influxd /ping did not answer 204 within 30 s: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `CREATE DATABASE <name>` (a no-op if it exists), then waits until writes to it are
    /// accepted: an empty write answers 204 (InfluxDB 1.6 answered `database not found` to 2 of
    /// 300 writes sent right after a successful `CREATE DATABASE`).
    pub fn create_database(&self, name: &str) {
        let q = format!("CREATE DATABASE \"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""));
        let (status, body) =
            http_request(self.port, "POST", &format!("/query?q={}", percent_encode(&q)), b"");
        assert_eq!(status, 200, "CREATE DATABASE {name}: {body}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.write(name, b"");
            if status == 204 {
                return;
            }
            assert!(Instant::now() < deadline, "database {name} not writable within 30 s: {status} {body}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /query?db=<db>&q=<q>&epoch=s`, as JSON (times in whole seconds).
    pub fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let path = format!("/query?db={}&q={}&epoch=s", percent_encode(db), percent_encode(q));
        let (status, body) = http_request(self.port, "GET", &path, b"");
        assert_eq!(status, 200, "query {q:?}: {body}");
        serde_json::from_str(&body).expect("query JSON")
    }

    /// `POST /write?db=<db>&precision=s` with `body`; the status and the response body (an
    /// error answer is returned, not raised).
    pub fn write(&self, db: &str, body: &[u8]) -> (u16, String) {
        http_request(self.port, "POST", &format!("/write?db={}&precision=s", percent_encode(db)), body)
    }
}

impl Drop for InfluxServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
