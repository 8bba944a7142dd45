//! Small helpers the suites share: free loopback ports (TCP and UDP), scratch directories, polling, raw
//! records written as the Python client does, plain HTTP/1.1 on loopback.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// A free loopback port for a test server (bound then released; the server binds it right
/// after), chosen **below the kernel's ephemeral range** (`ip_local_port_range`).
///
/// A port from the ephemeral range (what binding port 0 gives) can be taken back by any outgoing
/// connection as its source port: while a server is down for a restart, a client retrying
/// `connect(127.0.0.1:P)` can get source port P and connect to itself (TCP simultaneous open),
/// holding the port so the server cannot bind it again. No connection ever gets a source port
/// below the range. Within one process a port is never handed out twice; across processes the
/// start is spread by the pid.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|low| low.parse::<u32>().ok()))
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_low.max(12_000));
    let span = high - low;
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (start + offset.wrapping_mul(4099)) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local addr").port()
}

/// A free loopback port for a UDP server (a DogStatsD listener): a [`free_port`] (below the
/// ephemeral range, so no client socket is handed it as its source port) that UDP can bind too.
pub fn free_udp_port() -> u16 {
    loop {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until some process has a UDP socket bound to `port` (`/proc/net/udp` and `udp6`), so
/// datagrams sent to it are queued rather than refused; fails the test after `within`.
pub fn wait_udp_bound(port: u16, within: Duration) {
    wait_until(&format!("a UDP socket bound to port {port}"), within, || udp_rx_queue(port).is_some());
}

/// The kernel's count of datagrams the UDP socket bound to `port` dropped (`drops` in
/// `/proc/net/udp` or `udp6`: a full receive queue), or `None` when no socket is bound to it.
pub fn udp_drops(port: u16) -> Option<u64> {
    udp_socket_column(port, 12)
}

/// The bytes waiting in the receive queue of the UDP socket bound to `port` (`rx_queue` in
/// `/proc/net/udp` or `udp6`), or `None` when no socket is bound to it. `Some(0)` after sending:
/// the owner has read every datagram.
pub fn udp_rx_queue(port: u16) -> Option<u64> {
    udp_socket_column(port, 4)
}

/// Column `index` of the `/proc/net/udp` (or `udp6`) row of the socket bound to `port`, as a
/// number: for `tx_queue:rx_queue` (4), the receive queue, in hex; `drops` (12) is decimal.
fn udp_socket_column(port: u16, index: usize) -> Option<u64> {
    let suffix = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|table| {
        std::fs::read_to_string(table).unwrap_or_default().lines().skip(1).find_map(|row| {
            let columns: Vec<&str> = row.split_whitespace().collect();
            if !columns.get(1)?.ends_with(&suffix) {
                return None;
            }
            let column = columns.get(index)?;
            match column.split_once(':') {
                Some((_, rx)) => u64::from_str_radix(rx, 16).ok(),
                None => column.parse().ok(),
            }
        })
    })
}

/// Waits until `port` accepts a connection; panics if `child` exits first or after 30 s.
pub(crate) fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
            // A connection to itself (source port = `port`) is not the server listening.
            if stream.local_addr().ok() != stream.peer_addr().ok() {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on port {port}: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on port {port} within 30 s");
}

/// A scratch directory (`chouette-<what>-<pid>-<port>` under the temp dir), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `chouette-<what>-<pid>-<port>` under the temp dir.
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

pub(crate) fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chouette-{what}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Polls `done` every 50 ms until it holds; fails the test after `within`.
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
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
    try_http_request(port, method, path, body).unwrap_or_else(|e| panic!("{e}"))
}

/// [`http_request`], with a failure to connect, send or read as an `Err` saying which (a
/// readiness probe retries on those).
pub(crate) fn try_http_request(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("{method} {path}: connecting: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // One write: a server that answers before reading the body (404 for a missing database)
    // then has it all, and does not reset the connection over unread bytes.
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).map_err(|e| format!("{method} {path}: writing the request: {e}"))?;
    let mut response = Vec::new();
    if let Err(e) = stream.read_to_end(&mut response) {
        return Err(format!("{method} {path}: reading the response: {e} (after {} bytes)", response.len()));
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Ok((status, dechunk(body)));
    }
    Ok((status, body.to_string()))
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

pub(crate) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunk_joins_the_chunks_and_stops_at_the_last() {
        assert_eq!(dechunk("5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"), "hello, world");
        assert_eq!(dechunk("a\r\nshort"), "", "a chunk cut short is not returned");
    }

    #[test]
    fn percent_encode_keeps_unreserved_bytes_only() {
        assert_eq!(percent_encode(r#"{__name__=~"a.b"}"#), "%7B__name__%3D~%22a.b%22%7D");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn a_bound_udp_port_is_seen_and_a_free_one_is_bindable() {
        let port = free_udp_port();
        assert_eq!(udp_rx_queue(port), None);
        let socket = UdpSocket::bind(("127.0.0.1", port)).expect("the free UDP port binds");
        wait_udp_bound(port, Duration::from_secs(5));
        assert_eq!(udp_rx_queue(port), Some(0));
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind a client");
        client.send_to(b"0123456789", ("127.0.0.1", port)).expect("send");
        assert!(udp_rx_queue(port).is_some_and(|n| n >= 10), "a datagram waits: {:?}", udp_rx_queue(port));
        let mut buf = [0u8; 64];
        assert_eq!(socket.recv(&mut buf).expect("recv"), 10);
        assert_eq!(udp_rx_queue(port), Some(0));
        drop(socket);
        let other = free_udp_port();
        assert_ne!(other, port, "a port is never handed out twice");
    }

    #[test]
    fn a_temp_dir_is_removed_on_drop() {
        let dir = TempDir::new("util-test");
        std::fs::write(dir.0.join("f"), b"x").expect("write");
        let path = dir.0.clone();
        drop(dir);
        assert!(!path.exists());
    }
}
