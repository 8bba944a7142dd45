//! `docker` (compat §6.3): the Docker Engine API over its Unix socket (`DOCKER_SOCKET_PATH`),
//! with a minimal HTTP/1.1 client and timeouts.
//!
//! `GET /containers/json`, then `GET /containers/{id}/stats?stream=false&one-shot=true` per
//! container on a small bounded pool ([`DOCKER_POOL`] threads). `one-shot` (API ≥ 1.41) skips the
//! second sample the daemon otherwise waits ~1 s for; older daemons ignore it.
//!
//! | metric | value | tags | unit |
//! |---|---|---|---|
//! | `Chouette.docker.memory.usage` | `memory_stats.usage` | `container:<name without leading />` | bytes |
//! | `Chouette.docker.cpu.usage` | `cpu_stats.cpu_usage.usage_in_kernelmode` (kernel mode only, cumulative) | same | ns |

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::json::{Json, JsonDoc};
use super::{CollectError, Collector, PluginConfigError, PluginVars, Point};
use crate::config::vars;
use crate::limits::{DOCKER_MAX_BODY_BYTES, DOCKER_POOL};

/// Per-request timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The `docker` collector's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `DOCKER_SOCKET_PATH`.
    pub socket: PathBuf,
}

impl Settings {
    /// From the plugin variables, through their table entries.
    pub fn from_vars(vars: &PluginVars) -> Result<Settings, PluginConfigError> {
        Ok(Settings { socket: PathBuf::from(vars::DOCKER_SOCKET_PATH.string(vars)?) })
    }
}

/// The `docker` collector.
pub struct Docker {
    socket: PathBuf,
    timeout: Duration,
}

impl Docker {
    /// From its [`Settings`].
    pub fn from_vars(vars: &PluginVars) -> Result<Docker, PluginConfigError> {
        Ok(Docker::new(Settings::from_vars(vars)?.socket, REQUEST_TIMEOUT))
    }

    /// A collector talking to `socket`, each request bounded by `timeout`.
    pub fn new(socket: PathBuf, timeout: Duration) -> Docker {
        Docker { socket, timeout }
    }

    /// `GET target`, checked as JSON and handed to `f`.
    fn get_json<T>(&self, target: &str, f: impl FnOnce(Json<'_>) -> T) -> Result<T, CollectError> {
        let context = format!("docker {}{target}", self.socket.display());
        let (status, body) = http_get_unix(&self.socket, target, self.timeout)
            .map_err(|e| CollectError::io(context.clone(), e))?;
        if status != 200 {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(CollectError::remote(context, format!("HTTP {status}: {text}")));
        }
        Json::parse(&body).map(f).map_err(|e| CollectError::parse(context, e))
    }

    /// The points of one stats document (`None` for a document without a name).
    pub fn stats_points<D: JsonDoc>(stats: D) -> Vec<Point> {
        let Some(name) = stats.get("name") else { return Vec::new() };
        let Some(name) = name.as_str() else { return Vec::new() };
        let name = name.strip_prefix('/').unwrap_or(&name);
        let mut out = Vec::new();
        let usage = stats.get("memory_stats").and_then(|m| m.get("usage"));
        if let Some(v) = usage.and_then(|v| v.as_f64()) {
            out.push(Point::new("Chouette.docker.memory.usage", v).tag("container", name));
        }
        let kernel = stats
            .get("cpu_stats")
            .and_then(|c| c.get("cpu_usage"))
            .and_then(|u| u.get("usage_in_kernelmode"));
        if let Some(v) = kernel.and_then(|v| v.as_f64()) {
            out.push(Point::new("Chouette.docker.cpu.usage", v).tag("container", name));
        }
        out
    }
}

impl Collector for Docker {
    fn name(&self) -> &str {
        "docker"
    }

    fn timeout(&self) -> Duration {
        self.timeout * 3
    }

    fn collect(&mut self, _now: f64) -> Result<Vec<Point>, CollectError> {
        let ids: Vec<String> = self.get_json("/containers/json", |list| {
            list.elements()
                .map(|a| a.iter().filter_map(|c| Some(c.get("Id")?.as_str()?.into_owned())).collect())
                .unwrap_or_default()
        })?;
        let mut out = Vec::new();
        let mut failed = 0usize;
        let this = &*self;
        for chunk in ids.chunks(DOCKER_POOL) {
            let results: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|id| {
                        scope.spawn(move || {
                            let target = format!("/containers/{id}/stats?stream=false&one-shot=true");
                            this.get_json(&target, |stats| Docker::stats_points(stats))
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join()).collect()
            });
            for (id, result) in chunk.iter().zip(results) {
                match result {
                    Ok(Ok(points)) => out.extend(points),
                    Ok(Err(e)) => {
                        failed += 1;
                        log::warn!("plugin=docker container={id}: {e}; no metrics for it");
                    }
                    Err(_) => failed += 1,
                }
            }
        }
        if failed > 0 && out.is_empty() {
            return Err(CollectError::remote("docker", format!("stats failed for all {failed} containers")));
        }
        Ok(out)
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_owned())
}

fn bad(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// `GET target` over the Unix socket `socket` with HTTP/1.1 and `Connection: close`; returns the
/// status and the body (`Content-Length`, chunked, or up to EOF). The whole exchange is bounded by
/// `timeout`.
pub fn http_get_unix(socket: &Path, target: &str, timeout: Duration) -> std::io::Result<(u16, Vec<u8>)> {
    let deadline = Instant::now() + timeout;
    let mut stream = UnixStream::connect(socket)?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: chouette\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out("docker response"));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(timed_out("docker response"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if raw.len() > DOCKER_MAX_BODY_BYTES + 64 * 1024 {
            return Err(bad("docker response too large"));
        }
        if let Some(done) = complete_response(&raw)? {
            return Ok(done);
        }
    }
    if let Some(done) = complete_response(&raw)? {
        return Ok(done);
    }
    let end = find(&raw, b"\r\n\r\n").ok_or_else(|| bad("docker response truncated"))?;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    if head.contains("content-length:") || head.contains("chunked") {
        return Err(bad("docker response truncated"));
    }
    eof_body(&raw).ok_or_else(|| bad("not an HTTP/1.x response"))
}

/// A response delimited by EOF (no length, not chunked).
fn eof_body(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = find(raw, b"\r\n\r\n")?;
    let status = status_code(&raw[..end])?;
    Some((status, raw[end + 4..].to_vec()))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn status_code(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut words = line.split_ascii_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    words.next()?.parse().ok()
}

/// `Some((status, body))` once `raw` holds a whole response framed by `Content-Length` or
/// chunked encoding; `None` if more is needed (or the body runs to EOF).
fn complete_response(raw: &[u8]) -> std::io::Result<Option<(u16, Vec<u8>)>> {
    let Some(end) = find(raw, b"\r\n\r\n") else { return Ok(None) };
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("non-UTF-8 response head"))?;
    let status = status_code(raw[..end].as_ref()).ok_or_else(|| bad("not an HTTP/1.x response"))?;
    let body = &raw[end + 4..];
    let mut length = None;
    let mut chunked = false;
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| bad("bad Content-Length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            chunked = true;
        }
    }
    if chunked {
        return Ok(dechunk(body)?.map(|b| (status, b)));
    }
    match length {
        Some(n) if n > DOCKER_MAX_BODY_BYTES => Err(bad("docker body too large")),
        Some(n) if body.len() >= n => Ok(Some((status, body[..n].to_vec()))),
        _ => Ok(None),
    }
}

/// Decodes a chunked body; `None` until the last (0) chunk has arrived.
fn dechunk(mut body: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(body, b"\r\n") else { return Ok(None) };
        let size_text = std::str::from_utf8(&body[..eol]).map_err(|_| bad("bad chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        if size > DOCKER_MAX_BODY_BYTES || out.len() + size > DOCKER_MAX_BODY_BYTES {
            return Err(bad("docker body too large"));
        }
        let rest = &body[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&rest[..size]);
        body = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::tests::{expected, flat};
    use std::os::unix::net::UnixListener;

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/chouette/");

    /// A fake daemon: serves the fixture list and stats; container 456b answers non-JSON,
    /// `chunked` selects chunked framing, `hang` never answers.
    fn fake_daemon(name: &str, list: &'static str, chunked: bool) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chouette-docker-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let socket = dir.join("docker.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).expect("bind");
        let stats = std::fs::read_to_string(format!("{DATA}docker_container_stats.json")).expect("fixture");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let stats = stats.clone();
                std::thread::spawn(move || {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while find(&req, b"\r\n\r\n").is_none() {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let req = String::from_utf8_lossy(&req).into_owned();
                    let body = if req.starts_with("GET /containers/json ") {
                        list.to_owned()
                    } else if req.starts_with("GET /containers/123a/stats?stream=false") {
                        stats
                    } else if req.starts_with("GET /containers/hang/") {
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    } else {
                        "this is not json".to_owned()
                    };
                    let response = if chunked {
                        let (a, b) = body.split_at(body.len() / 2);
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                            a.len(),
                            b.len()
                        )
                    } else {
                        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                    };
                    let _ = stream.write_all(response.as_bytes());
                });
            }
        });
        socket
    }

    fn expected_points() -> Vec<(String, Vec<String>, f64)> {
        let text =
            std::fs::read_to_string(format!("{DATA}docker_container_stats.expected.json")).expect("fixture");
        expected(&serde_json::from_str(&text).expect("json"))
    }

    #[test]
    fn parity_with_the_original_over_a_fake_daemon() {
        for chunked in [false, true] {
            let socket = fake_daemon(
                if chunked { "chunked" } else { "length" },
                r#"[{"Id": "123a"}, {"Id": "456b"}]"#,
                chunked,
            );
            let mut docker = Docker::new(socket, Duration::from_secs(2));
            let points = docker.collect(0.0).expect("collect");
            // 456b answers non-JSON: no metrics for it, the others still come.
            assert_eq!(flat(&points), expected_points(), "chunked={chunked}");
        }
    }

    #[test]
    fn a_hung_container_times_out_and_a_missing_socket_is_an_error() {
        let socket = fake_daemon("hang", r#"[{"Id": "hang"}, {"Id": "123a"}]"#, false);
        let mut docker = Docker::new(socket, Duration::from_millis(300));
        let start = Instant::now();
        let points = docker.collect(0.0).expect("the good container");
        assert_eq!(points.len(), 2);
        assert!(start.elapsed() < Duration::from_secs(3));

        let mut docker = Docker::new(PathBuf::from("/nonexistent/docker.sock"), Duration::from_millis(300));
        let err = docker.collect(0.0).expect_err("error").to_string();
        assert!(err.contains("/nonexistent/docker.sock"), "{err}");
    }

    #[test]
    fn framing() {
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n\r\n").ok().flatten(), Some(b"abc".to_vec()));
        assert_eq!(dechunk(b"3\r\nab").ok().flatten(), None);
        assert!(dechunk(b"zz\r\n").is_err());
        let r = complete_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno").expect("ok");
        assert_eq!(r, Some((404, b"no".to_vec())));
        assert_eq!(complete_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").expect("ok"), None);
        assert!(Docker::stats_points(&serde_json::json!({"memory_stats": {"usage": 1}})).is_empty());
    }
}
