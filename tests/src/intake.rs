//! A fake Datadog intake for fault-injection tests: a small threaded HTTP/1.1 server on
//! `127.0.0.1:0` (std::net only) that records every request and answers per a script.
//!
//! ```no_run
//! use chouette_tests::intake::{Answer, FakeIntake, When};
//!
//! let intake = FakeIntake::start();                 // answers 202 by default
//! intake.push_answers([Answer::Status(503), Answer::Reset]); // the next two requests
//! intake.add_rule(When::BodyContains("poison".into()), Answer::Status(400));
//! intake.add_rule(When::BodyOver(10_000), Answer::Status(413));
//! let base = intake.url();                          // "http://127.0.0.1:<port>"
//! // ... post to format!("{base}/api/v1/series") ...
//! let requests = intake.take_requests();            // path, headers, decompressed body, answer
//! ```
//!
//! How an answer is chosen for each request: the next one-shot answer if any
//! ([`FakeIntake::push_answers`]), else the first rule whose condition holds
//! ([`FakeIntake::add_rule`]), else the default ([`FakeIntake::set_default`], 202).
//! Every connection is closed after one answer (`Connection: close`).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the server does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Answer this status with a small JSON body (`{"status":"ok"}` or `{"errors":[...]}`).
    Status(u16),
    /// Wait `delay`, then answer `status` (longer than the client's timeout: a timeout).
    Slow {
        /// How long to wait before answering.
        delay: Duration,
        /// The status then sent (if the client still listens).
        status: u16,
    },
    /// Read the request, then close the connection without answering.
    Reset,
}

/// When a rule applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Every request.
    Always,
    /// The decompressed body is longer than this many bytes.
    BodyOver(usize),
    /// The decompressed body contains this text.
    BodyContains(String),
    /// The path (without the query) is this.
    PathIs(String),
}

impl When {
    fn holds(&self, req: &Request) -> bool {
        match self {
            When::Always => true,
            When::BodyOver(n) => req.body.len() > *n,
            When::BodyContains(text) => req.body.contains(text.as_str()),
            When::PathIs(path) => req.path == *path,
        }
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `POST`.
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string (without `?`), empty when none.
    pub query: String,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body as received.
    pub raw_body: Vec<u8>,
    /// The body inflated when `Content-Encoding: deflate` (zlib), else as received (lossy UTF-8).
    pub body: String,
    /// What the server did.
    pub answer: Answer,
}

impl Request {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// Whether the server answered 2xx (the data counts as delivered), at once or after a
    /// delay (a slow 2xx counts: tests that make the client time out do not count entries).
    pub fn accepted(&self) -> bool {
        matches!(self.answer, Answer::Status(200..=299) | Answer::Slow { status: 200..=299, .. })
    }
}

#[derive(Default)]
struct State {
    once: VecDeque<Answer>,
    rules: Vec<(When, Answer)>,
    default: Option<Answer>,
    requests: Vec<Request>,
}

/// The fake intake. Stops accepting on drop.
pub struct FakeIntake {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FakeIntake {
    /// Starts a server on a free loopback port, answering 202 until told otherwise.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake intake");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                thread::spawn(move || serve(conn, &st));
            }
        });
        FakeIntake { port, state, stop }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers for the next requests, in order, before any rule.
    pub fn push_answers(&self, answers: impl IntoIterator<Item = Answer>) {
        self.lock().once.extend(answers);
    }

    /// Adds a rule (checked in the order added, after the one-shot answers).
    pub fn add_rule(&self, when: When, answer: Answer) {
        self.lock().rules.push((when, answer));
    }

    /// Removes every rule and one-shot answer (the default stays).
    pub fn clear_rules(&self) {
        let mut s = self.lock();
        s.rules.clear();
        s.once.clear();
    }

    /// The answer when nothing else applies (202 at start).
    pub fn set_default(&self, answer: Answer) {
        self.lock().default = Some(answer);
    }

    /// Every request received since the last call, oldest first.
    pub fn take_requests(&self) -> Vec<Request> {
        std::mem::take(&mut self.lock().requests)
    }

    /// Requests received so far (not yet taken).
    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeIntake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

fn inflate(body: &[u8]) -> Option<Vec<u8>> {
    let mut size = (body.len() * 8).max(1024);
    loop {
        let mut out = vec![0u8; size];
        match chouette_core::wire::zlib::decompress_into(body, &mut out) {
            Ok(n) => {
                out.truncate(n);
                return Some(out);
            }
            Err(chouette_core::wire::zlib::InflateError::BufferTooSmall { .. }) => size *= 4,
            Err(_) => return None,
        }
    }
}

fn read_request(conn: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize =
        headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut raw_body = vec![0u8; len];
    reader.read_exact(&mut raw_body).ok()?;
    let deflated = headers.iter().any(|(k, v)| k == "content-encoding" && v == "deflate");
    let body =
        if deflated { inflate(&raw_body).map(|b| String::from_utf8_lossy(&b).into_owned()) } else { None }
            .unwrap_or_else(|| String::from_utf8_lossy(&raw_body).into_owned());
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target, String::new()),
    };
    Some(Request { method, path, query, headers, raw_body, body, answer: Answer::Status(0) })
}

fn serve(mut conn: TcpStream, state: &Mutex<State>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(mut req) = read_request(&conn) else {
        return;
    };
    let answer = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let answer = s
            .once
            .pop_front()
            .or_else(|| s.rules.iter().find(|(when, _)| when.holds(&req)).map(|(_, a)| a.clone()))
            .or_else(|| s.default.clone())
            .unwrap_or(Answer::Status(202));
        req.answer = answer.clone();
        s.requests.push(req);
        answer
    };
    let status = match answer {
        Answer::Reset => return, // dropping `conn` closes it without a word
        Answer::Slow { delay, status } => {
            thread::sleep(delay);
            status
        }
        Answer::Status(status) => status,
    };
    let body = if (200..300).contains(&status) {
        r#"{"status":"ok"}"#.to_owned()
    } else {
        format!(r#"{{"errors":["status {status}"]}}"#)
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} Fake\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
}
