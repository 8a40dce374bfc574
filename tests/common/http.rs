//! Minimal blocking HTTP/1.1 client (and the wire parser shared with the test upstream).
//!
//! Integration tests send traffic *through Envoy* with these helpers:
//!
//! * [`http_get`] / [`http_request`]: one request on a fresh connection with
//!   `Connection: close` (simple, no state carried between requests);
//! * [`HttpClient`]: one keep-alive connection reused across requests (for load
//!   tests), reconnecting once when the server closed an idle connection.
//!
//! Everything is plain `std::net::TcpStream`, so it works the same from `#[test]`
//! and `#[tokio::test]` functions. Every call is bounded by a timeout
//! ([`DEFAULT_TIMEOUT`] unless changed) and reports failures as `Err(String)` with
//! context instead of panicking.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Timeout applied to a whole request (connect + send + receive) by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest request/response head (start line + headers) accepted.
const MAX_HEAD: usize = 1 << 20;
/// Largest body accepted.
const MAX_BODY: usize = 64 << 20;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code, e.g. `200`.
    pub status: u16,
    /// Headers in wire order; names are lowercased, values are trimmed.
    pub headers: Vec<(String, String)>,
    /// Body (decoded from chunked encoding if needed), lossily converted to UTF-8.
    pub body: String,
}

impl Response {
    /// Value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Values of all headers called `name` (case-insensitive), in wire order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Sends one `GET` with `Host: <host>` to `proxy` on a new connection
/// (`Connection: close`) and reads the whole response, within [`DEFAULT_TIMEOUT`].
pub fn http_get(
    proxy: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    http_request(proxy, "GET", host, path, headers, b"")
}

/// Like [`http_get`] with any method and body (a `Content-Length` is added
/// when the body is non-empty).
pub fn http_request(
    proxy: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    let what = || format!("{method} http://{host}{path} via {proxy}");
    let mut wire = Wire::connect(proxy, deadline).map_err(|e| format!("{}: {e}", what()))?;
    let request = encode_request(method, host, path, headers, body, true);
    wire.write_all(&request)
        .map_err(|e| format!("{}: {e}", what()))?;
    match wire.read_response(method) {
        Ok(Some((response, _))) => Ok(response),
        Ok(None) => Err(format!(
            "{}: connection closed before any response byte",
            what()
        )),
        Err(e) => Err(format!("{}: {e}", what())),
    }
}

/// A keep-alive HTTP/1.1 client bound to one address (usually an Envoy listener).
///
/// Requests are sent one at a time on a single connection. If a *reused*
/// connection turns out to be closed by the server (write fails or EOF before
/// any response byte), the client reconnects and resends the request once.
pub struct HttpClient {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<Wire>,
    /// Connections opened so far (including the first one).
    connects: usize,
}

impl HttpClient {
    /// Opens a connection to `proxy` (bounded by [`DEFAULT_TIMEOUT`]).
    pub fn connect(proxy: SocketAddr) -> Result<HttpClient, String> {
        let mut client = HttpClient {
            addr: proxy,
            timeout: DEFAULT_TIMEOUT,
            conn: None,
            connects: 0,
        };
        client.reconnect()?;
        Ok(client)
    }

    /// Changes the per-request timeout (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Number of TCP connections opened so far (1 after `connect`).
    pub fn connects(&self) -> usize {
        self.connects
    }

    /// Sends a `GET` with `Host: <host>` on the shared connection.
    pub fn get(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, String> {
        self.request("GET", host, path, headers, b"")
    }

    /// Sends any request on the shared connection.
    pub fn request(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let addr = self.addr;
        let what = || format!("{method} http://{host}{path} via {addr}");
        let request = encode_request(method, host, path, headers, body, false);
        let mut retried = false;
        loop {
            let fresh = self.conn.is_none();
            if fresh {
                self.reconnect().map_err(|e| format!("{}: {e}", what()))?;
            }
            let deadline = Instant::now() + self.timeout;
            let wire = self
                .conn
                .as_mut()
                .expect("HttpClient connection present after reconnect");
            wire.deadline = Some(deadline);
            let outcome = match wire.write_all(&request) {
                Err(e) => Err((true, e)),
                Ok(()) => match wire.read_response(method) {
                    Ok(Some(r)) => Ok(r),
                    Ok(None) => Err((true, "connection closed before any response byte".into())),
                    Err(e) => Err((false, e)),
                },
            };
            match outcome {
                Ok((response, keep_alive)) => {
                    if !keep_alive {
                        self.conn = None;
                    }
                    return Ok(response);
                }
                Err((closed_early, e)) => {
                    self.conn = None;
                    if closed_early && !fresh && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(format!("{}: {e}", what()));
                }
            }
        }
    }

    fn reconnect(&mut self) -> Result<(), String> {
        let wire = Wire::connect(self.addr, Instant::now() + self.timeout)?;
        self.conn = Some(wire);
        self.connects += 1;
        Ok(())
    }
}

/// Builds an HTTP/1.1 request. `close` adds `Connection: close` unless the
/// caller passed its own `connection` header.
fn encode_request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if close && !has("connection") {
        out.push_str("Connection: close\r\n");
    }
    if (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH"))
        && !has("content-length")
        && !has("transfer-encoding")
    {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// First value of header `name` (case-insensitive) in `headers`.
pub(super) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether the `connection` header lists `token` (case-insensitive).
pub(super) fn connection_has(headers: &[(String, String)], token: &str) -> bool {
    headers
        .iter()
        .filter(|(k, _)| k == "connection")
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Start line and headers of a request or response.
#[derive(Debug)]
pub(super) struct Head {
    /// e.g. `GET / HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub start_line: String,
    /// Lowercased names, trimmed values.
    pub headers: Vec<(String, String)>,
}

/// A buffered TCP connection that tolerates read timeouts.
///
/// Reads give up either at `deadline` (client side) or as soon as `stop` is set
/// (server side; the stream then has a short read timeout so the flag is polled).
pub(super) struct Wire {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub deadline: Option<Instant>,
    pub stop: Option<Arc<AtomicBool>>,
}

impl Wire {
    /// Connects to `addr`, failing at `deadline`.
    pub fn connect(addr: SocketAddr, deadline: Instant) -> Result<Wire, String> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(format!("timed out before connecting to {addr}"));
        }
        let stream = TcpStream::connect_timeout(&addr, remaining)
            .map_err(|e| format!("connect to {addr} failed: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("set_nodelay on {addr} failed: {e}"))?;
        Ok(Wire {
            stream,
            buf: Vec::new(),
            deadline: Some(deadline),
            stop: None,
        })
    }

    /// Wraps an accepted stream (server side).
    pub fn server(stream: TcpStream, stop: Arc<AtomicBool>) -> Wire {
        Wire {
            stream,
            buf: Vec::new(),
            deadline: None,
            stop: Some(stop),
        }
    }

    /// Writes all of `data`, bounded by the deadline (or 5 s without one).
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), String> {
        let timeout = match self.deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => DEFAULT_TIMEOUT,
        };
        if timeout.is_zero() {
            return Err("timed out before sending".into());
        }
        self.stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| format!("set_write_timeout failed: {e}"))?;
        self.stream
            .write_all(data)
            .and_then(|()| self.stream.flush())
            .map_err(|e| format!("write failed: {e}"))
    }

    /// Reads more bytes into the buffer. `Ok(0)` means the peer closed
    /// (EOF or reset).
    fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(stop) = &self.stop {
                if stop.load(Ordering::SeqCst) {
                    return Err("stopped".into());
                }
            }
            if let Some(deadline) = self.deadline {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    return Err(format!(
                        "timed out waiting for data ({} bytes buffered)",
                        self.buf.len()
                    ));
                }
                self.stream
                    .set_read_timeout(Some(remaining))
                    .map_err(|e| format!("set_read_timeout failed: {e}"))?;
            }
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset
                            | ErrorKind::ConnectionAborted
                            | ErrorKind::BrokenPipe
                    ) =>
                {
                    return Ok(0)
                }
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }

    /// Reads a start line + headers. `Ok(None)` if the peer closed before
    /// sending a single byte (a clean end of a keep-alive connection).
    pub fn read_head(&mut self) -> Result<Option<Head>, String> {
        let end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(format!("message head larger than {MAX_HEAD} bytes"));
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(format!(
                    "connection closed in the middle of a message head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        };
        let raw: Vec<u8> = self.buf.drain(..end + 4).collect();
        let text = String::from_utf8_lossy(&raw[..end]);
        let mut lines = text.split("\r\n");
        let start_line = lines.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("malformed header line {line:?}"))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        Ok(Some(Head {
            start_line,
            headers,
        }))
    }

    /// Reads one `\r\n`-terminated line (without the terminator).
    fn read_line(&mut self) -> Result<String, String> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
            }
            if self.buf.len() > MAX_HEAD {
                return Err("line too long".into());
            }
            if self.fill()? == 0 {
                return Err("connection closed in the middle of a line".into());
            }
        }
    }

    /// Reads exactly `n` bytes.
    fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        if n > MAX_BODY {
            return Err(format!("body of {n} bytes exceeds {MAX_BODY}"));
        }
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(format!(
                    "connection closed after {} of {n} body bytes",
                    self.buf.len()
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Decodes a chunked body (trailers are read and discarded).
    fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|e| format!("bad chunk size {line:?}: {e}"))?;
            if size == 0 {
                // Trailers, up to an empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(format!("chunked body exceeds {MAX_BODY} bytes"));
            }
            body.extend(self.read_exact(size)?);
            let crlf = self.read_line()?;
            if !crlf.is_empty() {
                return Err(format!("missing CRLF after chunk, got {crlf:?}"));
            }
        }
    }

    /// Reads until the peer closes.
    fn read_to_eof(&mut self) -> Result<Vec<u8>, String> {
        while self.fill()? > 0 {
            if self.buf.len() > MAX_BODY {
                return Err(format!("body exceeds {MAX_BODY} bytes"));
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// Reads a body delimited by `Transfer-Encoding: chunked` or
    /// `Content-Length`; `None` if neither is present.
    fn read_framed_body(
        &mut self,
        headers: &[(String, String)],
    ) -> Result<Option<Vec<u8>>, String> {
        if let Some(te) = find_header(headers, "transfer-encoding") {
            if te.to_ascii_lowercase().contains("chunked") {
                return self.read_chunked().map(Some);
            }
        }
        if let Some(cl) = find_header(headers, "content-length") {
            let n: usize = cl
                .parse()
                .map_err(|e| format!("bad content-length {cl:?}: {e}"))?;
            return self.read_exact(n).map(Some);
        }
        Ok(None)
    }

    /// Reads a request body (empty if not framed, as HTTP/1.1 requires).
    pub fn read_request_body(&mut self, head: &Head) -> Result<Vec<u8>, String> {
        Ok(self.read_framed_body(&head.headers)?.unwrap_or_default())
    }

    /// Reads a full response (skipping `1xx` interim responses). Returns the
    /// response and whether the connection may be reused; `Ok(None)` if the
    /// peer closed before sending anything.
    pub fn read_response(&mut self, method: &str) -> Result<Option<(Response, bool)>, String> {
        loop {
            let Some(head) = self.read_head()? else {
                return Ok(None);
            };
            let mut parts = head.start_line.splitn(3, ' ');
            let version = parts.next().unwrap_or_default().to_string();
            let status: u16 = parts
                .next()
                .unwrap_or_default()
                .parse()
                .map_err(|e| format!("bad status line {:?}: {e}", head.start_line))?;
            if !version.starts_with("HTTP/1.") {
                return Err(format!("bad status line {:?}", head.start_line));
            }
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let mut keep_alive = if version == "HTTP/1.0" {
                connection_has(&head.headers, "keep-alive")
            } else {
                !connection_has(&head.headers, "close")
            };
            let no_body = method.eq_ignore_ascii_case("HEAD")
                || status == 204
                || status == 304
                || (100..200).contains(&status);
            let body = if no_body {
                Vec::new()
            } else {
                match self.read_framed_body(&head.headers)? {
                    Some(body) => body,
                    None => {
                        keep_alive = false;
                        self.read_to_eof()?
                    }
                }
            };
            let response = Response {
                status,
                headers: head.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            return Ok(Some((response, keep_alive)));
        }
    }
}

/// Position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
