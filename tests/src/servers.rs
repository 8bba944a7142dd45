//! Real servers for integration tests, each on a free loopback port, stopped on drop.
//!
//! `redis-server` and `victoria-metrics` must be on the PATH (CI installs the Debian packages
//! `redis-server` and `victoria-metrics`; `scripts/install-test-deps.sh` does it by hand).
//! `influxd` (InfluxDB 1.6, Debian's `influxdb` unpacked by `scripts/install-test-deps.sh`) is
//! found through `CHOUETTE_INFLUXD`, the PATH, or that script's cache directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{
    free_port, http_get, http_request, percent_encode, scratch_dir, try_http_request, wait_for_port,
};

/// Waits until Redis answers `PING` with `PONG`: a server that listens may still be loading its
/// append-only file and answer every command with `LOADING` (a `BusyLoadingError` in a test
/// that wrote too early made the restart test flaky), and the server answering is this child
/// (`INFO server`'s `process_id`). `Err` with the end of its log if it exits first, or if another
/// process's server answers there (a port taken meanwhile: the caller may try another).
fn wait_for_redis_ready(port: u16, child: &mut Child, log: &std::path::Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("redis://127.0.0.1:{port}/0");
    let mut last = String::new();
    while Instant::now() < deadline {
        // The PING, then on the same connection (once it answered) the server's process id.
        let pong = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut con| {
                // Whatever else listens there may never answer.
                con.set_read_timeout(Some(Duration::from_secs(1)))?;
                let reply = redis::cmd("PING").query::<String>(&mut con)?;
                let info = match reply.as_str() {
                    "PONG" => redis::cmd("INFO").arg("server").query::<String>(&mut con).ok(),
                    _ => None,
                };
                Ok((reply, info))
            });
        match pong {
            // Ours, not a server another process started on the port meanwhile: a test sharing
            // it would see that process's tests' keys.
            Ok((reply, info)) if reply == "PONG" => {
                let pid = info.and_then(|info| {
                    info.lines().find_map(|l| l.strip_prefix("process_id:")?.trim().parse::<u32>().ok())
                });
                match pid {
                    Some(pid) if pid == child.id() => return Ok(()),
                    Some(pid) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(format!(
                            "port {port} answers for another redis-server (process {pid}, ours is {})",
                            child.id()
                        ));
                    }
                    // Not told (a slow answer): asked again.
                    None => last = "no process_id in INFO server".to_owned(),
                }
            }
            Ok((reply, _)) => last = reply,
            Err(e) => last = e.to_string(),
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(5)..].join("\n");
            return Err(format!(
                "redis-server exited before it was ready on port {port}: {status}; its log ends:\n{tail}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} not ready within 30 s: {last}");
}

/// A `redis-server` on a free loopback port, without persistence, killed on drop.
pub struct RedisServer {
    /// The loopback port it listens on.
    pub port: u16,
    /// Its TLS listener, when started with [`RedisServer::start_tls`].
    pub tls: Option<RedisTls>,
    child: Child,
    dir: PathBuf,
}

/// A TLS listener of a [`RedisServer`] (beside its plain port, which the tests write through):
/// its port and the PEM files of a CA made for it, the server's certificate (for `localhost` and
/// `127.0.0.1`) and a client certificate, all signed by that CA.
pub struct RedisTls {
    /// The TLS port.
    pub port: u16,
    /// The CA's certificate: what a client must trust.
    pub ca: PathBuf,
    /// A client certificate and its key, signed by the CA (for `tls-auth-clients yes`).
    pub client_cert: PathBuf,
    /// The client certificate's private key.
    pub client_key: PathBuf,
    /// A second CA's certificate, which signed nothing here: trusting it alone must fail.
    pub other_ca: PathBuf,
}

/// Makes, with the `openssl` command, a CA, a server certificate for `localhost` and
/// `127.0.0.1`, a client certificate, and a second, unrelated CA, in `dir` (P-256 keys, valid
/// two days).
fn make_test_pki(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (install the Debian package openssl)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    for (ca, subject) in [("ca", "/CN=Chouette test CA"), ("other-ca", "/CN=Chouette other CA")] {
        let (k, c) = (format!("{ca}.key"), format!("{ca}.crt"));
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", subject, "-keyout", &k, "-out", &c];
        args.extend(key);
        args.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        run(&args);
    }
    for (who, ext) in [
        ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        let (k, csr, c, e) =
            (format!("{who}.key"), format!("{who}.csr"), format!("{who}.crt"), format!("{who}.ext"));
        std::fs::write(dir.join(&e), ext).expect("write an extensions file");
        let mut args = vec!["req", "-new", "-subj", "/CN=localhost", "-keyout", &k, "-out", &csr];
        args.extend(key);
        run(&args);
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &e,
            "-out",
            &c,
        ]);
    }
}

impl RedisServer {
    /// Starts a server on a free port, ready (it answered `PONG`). A port another process takes
    /// between the pick and the server's bind is given up for another, up to 3 times.
    pub fn start() -> RedisServer {
        Self::start_on_a_free_port("redis", false)
    }

    /// Starts a server that also listens with TLS ([`RedisServer::tls`]) on a second free port,
    /// with a CA made for it; `client_auth`: clients must present a certificate the CA signed
    /// (Redis's default, `tls-auth-clients yes`).
    pub fn start_tls(client_auth: bool) -> RedisServer {
        let mut errors = Vec::new();
        for _ in 0..3 {
            let dir = scratch_dir("redis-tls");
            make_test_pki(&dir);
            let tls = RedisTls {
                port: free_port(),
                ca: dir.join("ca.crt"),
                client_cert: dir.join("client.crt"),
                client_key: dir.join("client.key"),
                other_ca: dir.join("other-ca.crt"),
            };
            let auth = if client_auth { "yes" } else { "no" };
            let args: Vec<std::ffi::OsString> = vec![
                "--tls-port".into(),
                tls.port.to_string().into(),
                "--tls-cert-file".into(),
                dir.join("server.crt").into(),
                "--tls-key-file".into(),
                dir.join("server.key").into(),
                "--tls-ca-cert-file".into(),
                tls.ca.clone().into(),
                "--tls-auth-clients".into(),
                auth.into(),
            ];
            match Self::spawn_with(free_port(), dir, false, &args) {
                Ok(mut server) => {
                    server.tls = Some(tls);
                    return server;
                }
                Err(e) => errors.push(e),
            }
        }
        panic!("redis-server with TLS did not start on 3 pairs of free ports:\n{}", errors.join("\n"));
    }

    /// `rediss://localhost:<tls port>/0` (the name its certificate carries).
    pub fn tls_url(&self) -> String {
        format!("rediss://localhost:{}/0", self.tls.as_ref().expect("a server started with start_tls").port)
    }

    /// Starts on a given port (to restart a server where clients expect it).
    pub fn start_on(port: u16) -> RedisServer {
        Self::spawn(port, scratch_dir("redis"), false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A server that fsyncs every write to an append-only file in `dir`, so a kill loses
    /// nothing: restart it with [`RedisServer::restart_persistent`].
    pub fn start_persistent() -> RedisServer {
        Self::start_on_a_free_port("redis-aof", true)
    }

    fn start_on_a_free_port(what: &str, persistent: bool) -> RedisServer {
        let mut errors = Vec::new();
        for _ in 0..3 {
            match Self::spawn(free_port(), scratch_dir(what), persistent) {
                Ok(server) => return server,
                Err(e) => errors.push(e),
            }
        }
        panic!("redis-server did not start on 3 free ports:\n{}", errors.join("\n"));
    }

    /// Kills this persistent server and starts a new one on the same port and data.
    pub fn restart_persistent(mut self) -> RedisServer {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, PathBuf::new());
        let port = self.port;
        drop(self);
        Self::spawn(port, dir, true).unwrap_or_else(|e| panic!("{e}"))
    }

    fn spawn(port: u16, dir: PathBuf, persistent: bool) -> Result<RedisServer, String> {
        Self::spawn_with(port, dir, persistent, &[])
    }

    fn spawn_with(
        port: u16,
        dir: PathBuf,
        persistent: bool,
        extra: &[std::ffi::OsString],
    ) -> Result<RedisServer, String> {
        let aof: &[&str] = if persistent {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let log = dir.join(format!("redis-{port}.log"));
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(aof)
            .args(extra)
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (install the Debian package redis-server)");
        match wait_for_redis_ready(port, &mut child, &log) {
            Ok(()) => Ok(RedisServer { port, tls: None, child, dir }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A new connection to database 0.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url()).expect("redis url").get_connection().expect("connect to test redis")
    }

    /// How many times `command` (lower case, as `INFO commandstats` names it) has run since
    /// the server started or its stats were reset; 0 if never.
    pub fn command_calls(&self, command: &str) -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query(&mut self.client()).expect("INFO");
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or(0, |rest| rest.split(',').next().unwrap_or_default().parse().expect("a call count"))
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
    /// The HTTP port (Datadog API, export, queries).
    pub port: u16,
    /// The OpenTSDB HTTP listener's port, when started with [`VictoriaMetrics::start_with_opentsdb`].
    pub opentsdb_port: Option<u16>,
    child: Child,
    dir: PathBuf,
}

impl VictoriaMetrics {
    /// Starts a server on a free port, listening.
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
    /// The HTTP port.
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl InfluxServer {
    /// Starts a server on a free port, ready (`/ping` answered 204).
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
        let mut server = InfluxServer { port, child, dir };
        // Ready once /ping answers 204. A connection reset while it starts (seen once in CI,
        // right after the port accepted connections) is not ready yet, as long as it runs.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let last = match try_http_request(server.port, "GET", "/ping", b"") {
                Ok((204, _)) => break,
                Ok((status, body)) => format!("{status} {body}"),
                Err(e) => e,
            };
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(server.dir.join("influxd.log")).unwrap_or_default();
                panic!("influxd exited ({status}) before /ping answered 204 ({last}); its log:\n{log}");
            }
            assert!(Instant::now() < deadline, "influxd /ping did not answer 204 within 30 s: {last}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_that_cannot_start_says_why() {
        // Another process listens on the port (and never answers).
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let error = RedisServer::spawn(port, scratch_dir("redis"), false).err().expect("the port is taken");
        assert!(error.contains("Address already in use"), "{error}");
    }
}
