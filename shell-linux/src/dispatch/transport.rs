//! The I/O edge of dispatch: one POST. [`UreqTransport`] talks HTTP(S); [`DryRunTransport`]
//! prints what would be sent; tests script their own.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use chouette_core::wire::json::{Scanner, Token};
use chouette_core::wire::zlib;

use crate::config::Config;
use crate::limits::MAX_RESPONSE_BODY_BYTES;

/// What the backend answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The response body, lossily decoded and truncated to [`MAX_RESPONSE_BODY_BYTES`].
    pub body: String,
    /// `Retry-After` in seconds, when the answer has one (429, 503).
    pub retry_after: Option<Duration>,
}

impl HttpResponse {
    /// An answer with `status` and `body`, no `Retry-After`.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        HttpResponse { status, body: body.into(), retry_after: None }
    }
}

/// Why a POST got no HTTP answer. Every variant names the URL (which never holds the API key).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Connecting or the whole request took longer than its timeout.
    #[error("url={url} : request timed out")]
    Timeout {
        /// The URL posted to.
        url: String,
    },
    /// Nothing listens there (or a firewall refused).
    #[error("url={url} : connection refused")]
    ConnectRefused {
        /// The URL posted to.
        url: String,
    },
    /// The connection closed or reset before a whole answer came.
    #[error("url={url} : connection reset or closed before an answer")]
    ConnectionReset {
        /// The URL posted to.
        url: String,
    },
    /// The TLS handshake failed (certificate not trusted, wrong name, protocol).
    #[error("url={url} : TLS failed: {detail}")]
    Tls {
        /// The URL posted to.
        url: String,
        /// What the TLS layer said.
        detail: String,
    },
    /// Anything else (DNS, bad URL, I/O).
    #[error("url={url} : {detail}")]
    Other {
        /// The URL posted to.
        url: String,
        /// What went wrong.
        detail: String,
    },
}

impl TransportError {
    /// A short label for logs and the report's `last_status` (`timeout`, `reset`...).
    pub fn label(&self) -> &'static str {
        match self {
            TransportError::Timeout { .. } => "timeout",
            TransportError::ConnectRefused { .. } => "connect_refused",
            TransportError::ConnectionReset { .. } => "reset",
            TransportError::Tls { .. } => "tls",
            TransportError::Other { .. } => "error",
        }
    }
}

/// One HTTP POST. Implementations must not log header values (one is the API key).
pub trait Transport: Send {
    /// Posts `body` to `url` with `headers`; any HTTP status is an `Ok` answer.
    fn post(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, TransportError>;

    /// Posts `body`, the compressed form of `plain`: what the dispatcher calls. The dry run
    /// prints `plain` instead of inflating `body` again; others post `body`.
    fn post_payload(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        plain: &[u8],
    ) -> Result<HttpResponse, TransportError> {
        let _ = plain;
        self.post(url, headers, body)
    }
}

/// A boxed transport is a transport (the agent picks ureq or the dry run at startup).
impl<T: Transport + ?Sized> Transport for Box<T> {
    fn post(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, TransportError> {
        (**self).post(url, headers, body)
    }

    fn post_payload(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        plain: &[u8],
    ) -> Result<HttpResponse, TransportError> {
        (**self).post_payload(url, headers, body, plain)
    }
}

/// Why a [`UreqTransport`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportSetupError {
    /// `CHOUETTE_CA_BUNDLE` could not be read.
    #[error("CHOUETTE_CA_BUNDLE={path} : cannot read: {source}")]
    CaBundleRead {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// `CHOUETTE_CA_BUNDLE` holds no usable certificate.
    #[error("CHOUETTE_CA_BUNDLE={path} : no valid PEM certificate in it")]
    CaBundleEmpty {
        /// The file.
        path: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// HTTP(S) with ureq: TLS always verified (rustls, webpki roots, plus `CHOUETTE_CA_BUNDLE`),
/// connect and whole-request timeouts from the config, `User-Agent: chouette/<version>`.
/// Plain `http://` is allowed (local backends, tests).
pub struct UreqTransport {
    agent: ureq::Agent,
}

impl UreqTransport {
    /// Builds the agent from the config (reads the CA bundle, if any).
    pub fn new(config: &Config) -> Result<Self, TransportSetupError> {
        Self::with_options(config.connect_timeout, config.request_timeout, config.ca_bundle.as_deref())
    }

    /// A transport with these timeouts, trusting the webpki roots and, when given, every
    /// certificate of the PEM file `ca_bundle`.
    pub fn with_options(
        connect: Duration,
        request: Duration,
        ca_bundle: Option<&std::path::Path>,
    ) -> Result<Self, TransportSetupError> {
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(connect)
            .timeout(request)
            .user_agent(&format!("chouette/{}", env!("CARGO_PKG_VERSION")))
            .redirects(0)
            .max_idle_connections_per_host(2);
        if let Some(path) = ca_bundle {
            builder = builder.tls_config(tls_config_with_bundle(path)?);
        }
        Ok(UreqTransport { agent: builder.build() })
    }

    /// A transport with these timeouts and the default roots (tests, tools).
    pub fn with_timeouts(connect: Duration, request: Duration) -> Self {
        UreqTransport {
            agent: ureq::AgentBuilder::new()
                .timeout_connect(connect)
                .timeout(request)
                .user_agent(&format!("chouette/{}", env!("CARGO_PKG_VERSION")))
                .redirects(0)
                .build(),
        }
    }
}

/// webpki roots plus every certificate of the PEM file `path`.
fn tls_config_with_bundle(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, TransportSetupError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path)
        .map_err(|source| TransportSetupError::CaBundleRead { path: shown.clone(), source })?;
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let mut reader = pem.as_slice();
    let certs = rustls_pemfile::certs(&mut reader).filter_map(Result::ok);
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TransportSetupError::CaBundleEmpty { path: shown });
    }
    let config = rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| TransportSetupError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_body(response: ureq::Response) -> String {
    let mut buf = Vec::new();
    let _ = io::Read::read_to_end(
        &mut io::Read::take(response.into_reader(), MAX_RESPONSE_BODY_BYTES as u64),
        &mut buf,
    );
    String::from_utf8_lossy(&buf).into_owned()
}

fn classify(url: &str, err: &ureq::Transport) -> TransportError {
    let url = url.to_owned();
    // Walk the source chain for an io::Error (timeouts, resets) or a rustls error.
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                    return TransportError::Timeout { url }
                }
                io::ErrorKind::ConnectionRefused => return TransportError::ConnectRefused { url },
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => return TransportError::ConnectionReset { url },
                _ => {}
            }
            if let Some(inner) = io.get_ref() {
                if inner.downcast_ref::<rustls::Error>().is_some() {
                    return TransportError::Tls { url, detail: inner.to_string() };
                }
            }
        }
        if e.downcast_ref::<rustls::Error>().is_some() {
            return TransportError::Tls { url, detail: e.to_string() };
        }
        source = e.source();
    }
    let detail = err.to_string();
    if detail.contains("timed out") {
        TransportError::Timeout { url }
    } else if err.kind() == ureq::ErrorKind::BadStatus || detail.contains("closed") {
        // The server closed the connection without a status line.
        TransportError::ConnectionReset { url }
    } else {
        TransportError::Other { url, detail }
    }
}

impl Transport for UreqTransport {
    fn post(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, TransportError> {
        let mut request = self.agent.post(url);
        for (name, value) in headers {
            request = request.set(name, value);
        }
        match request.send_bytes(body) {
            Ok(response) | Err(ureq::Error::Status(_, response)) => {
                let status = response.status();
                let retry_after = response
                    .header("Retry-After")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|secs| Duration::from_secs(secs.min(3600)));
                Ok(HttpResponse { status, body: read_body(response), retry_after })
            }
            Err(ureq::Error::Transport(t)) => Err(classify(url, &t)),
        }
    }
}

/// Prints what would be sent, one line per series point or log record, and answers 202.
///
/// Series points: `metric{tag,tag} type value @ts interval=10 host=h`. Logs: `log <the record's
/// JSON as the intake would get it>`.
pub struct DryRunTransport<W: Write> {
    out: W,
}

impl<W: Write> DryRunTransport<W> {
    /// A dry run writing to `out` (stdout in the agent).
    pub fn new(out: W) -> Self {
        DryRunTransport { out }
    }

    /// The writer back (tests read what was written).
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Inflates a zlib body, growing the buffer as needed.
pub fn inflate(body: &[u8]) -> Result<Vec<u8>, zlib::InflateError> {
    let mut size = (body.len() * 8).max(1024);
    loop {
        let mut out = vec![0u8; size];
        match zlib::decompress_into(body, &mut out) {
            Ok(n) => {
                out.truncate(n);
                return Ok(out);
            }
            Err(zlib::InflateError::BufferTooSmall { .. }) if size < 256 << 20 => size *= 4,
            Err(e) => return Err(e),
        }
    }
}

fn render_series(json: &str, out: &mut impl Write) -> Result<(), chouette_core::wire::json::JsonError> {
    let mut sc = Scanner::new(json.as_bytes())?;
    sc.value()?;
    while let Some(key) = sc.next_key()? {
        if key.as_raw() != "series" {
            sc.skip_value()?;
            continue;
        }
        sc.value()?;
        while sc.next_element()? {
            let entry = sc.raw_value()?;
            render_entry(entry, out)?;
        }
    }
    Ok(())
}

fn render_entry(entry: &str, out: &mut impl Write) -> Result<(), chouette_core::wire::json::JsonError> {
    let mut sc = Scanner::from_str(entry);
    sc.value()?;
    let (mut metric, mut kind, mut interval, mut host, mut points) = ("", "", "", "", "");
    let mut tags = Vec::new();
    while let Some(key) = sc.next_key()? {
        if key.as_raw() == "points" {
            points = sc.raw_value()?;
            continue;
        }
        match (key.as_raw(), sc.value()?) {
            ("metric", Token::Str(s)) => metric = s.as_raw(),
            ("type", Token::Str(s)) => kind = s.as_raw(),
            ("host", Token::Str(s)) => host = s.as_raw(),
            ("interval", Token::Number(n)) => interval = n,
            ("tags", Token::ArrayStart) => {
                while sc.next_element()? {
                    if let Token::Str(s) = sc.value()? {
                        tags.push(s.as_raw());
                    }
                }
            }
            (_, Token::ObjectStart | Token::ArrayStart) => sc.skip_container()?,
            _ => {}
        }
    }
    let mut psc = Scanner::from_str(points);
    if points.is_empty() || psc.value()? != Token::ArrayStart {
        return Ok(());
    }
    while psc.next_element()? {
        psc.value()?;
        let mut pair = ["", ""];
        for slot in pair.iter_mut() {
            if psc.next_element()? {
                if let Token::Number(n) = psc.value()? {
                    *slot = n;
                }
            }
        }
        while psc.next_element()? {
            psc.skip_value()?;
        }
        let _ = writeln!(
            out,
            "{metric}{{{}}} {kind} {} @{} interval={} host={}",
            tags.join(","),
            pair[1],
            pair[0],
            if interval.is_empty() { "-" } else { interval },
            if host.is_empty() { "-" } else { host },
        );
    }
    Ok(())
}

fn render_logs(json: &str, out: &mut impl Write) -> Result<(), chouette_core::wire::json::JsonError> {
    let mut sc = Scanner::new(json.as_bytes())?;
    sc.value()?;
    while sc.next_element()? {
        let _ = writeln!(out, "log {}", sc.raw_value()?);
    }
    Ok(())
}

impl<W: Write + Send> Transport for DryRunTransport<W> {
    fn post(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, TransportError> {
        let other = |detail: String| TransportError::Other { url: url.to_owned(), detail };
        let json = match headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("Content-Encoding")) {
            Some((_, "gzip")) => crate::dispatch::gzip::decompress(body).map_err(other)?,
            None => body.to_vec(),
            _ => inflate(body).map_err(|e| other(e.to_string()))?,
        };
        self.post_payload(url, headers, body, &json)
    }

    fn post_payload(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        plain: &[u8],
    ) -> Result<HttpResponse, TransportError> {
        let other = |detail: String| TransportError::Other { url: url.to_owned(), detail };
        let json = String::from_utf8_lossy(plain);
        let shown = crate::config::redact_url(url);
        let _ = writeln!(self.out, "# dry run: POST {shown} ({} bytes compressed)", body.len());
        let content_type =
            headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("Content-Type")).map(|(_, v)| *v);
        if content_type.is_some_and(|t| t.starts_with("text/plain")) {
            // Line protocol: already one point per line.
            let _ = self.out.write_all(json.as_bytes());
        } else if url.contains("/api/put") || url.contains("/v1/events") || url.contains("/v1/check_run") {
            let _ = writeln!(self.out, "{json}");
        } else if json.trim_start().starts_with('[') {
            render_logs(&json, &mut self.out).map_err(|e| other(e.to_string()))?;
        } else {
            render_series(&json, &mut self.out).map_err(|e| other(e.to_string()))?;
        }
        let _ = self.out.flush();
        Ok(HttpResponse::new(202, "{\"status\":\"ok\"}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_bundle_is_a_setup_error_naming_the_file() {
        let t = Duration::from_secs(1);
        let missing = std::path::Path::new("/nonexistent/chouette-ca.pem");
        let err = UreqTransport::with_options(t, t, Some(missing)).err().expect("error");
        assert!(matches!(err, TransportSetupError::CaBundleRead { .. }));
        assert!(err.to_string().contains("/nonexistent/chouette-ca.pem"));
        let empty = std::env::temp_dir().join(format!("chouette-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, b"not a certificate\n").expect("write");
        let err = UreqTransport::with_options(t, t, Some(&empty)).err().expect("error");
        assert!(matches!(err, TransportSetupError::CaBundleEmpty { .. }));
        let _ = std::fs::remove_file(&empty);
        assert!(UreqTransport::with_options(t, t, None).is_ok());
    }

    #[test]
    fn inflate_round_trips_large_bodies() {
        let data = vec![b'a'; 1 << 20];
        let z = zlib::compress(&data, 6);
        assert_eq!(inflate(&z).expect("inflate"), data);
    }
}
