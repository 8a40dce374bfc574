//! Blocking HTTP/1.1 client on hyper, for sending test traffic *through Envoy*
//! (and to the Envoy and shmesh admin interfaces):
//!
//! * [`http_get`] / [`http_request`]: one request on a fresh connection with
//!   `Connection: close` (simple, no state carried between requests);
//! * [`HttpClient`]: one keep-alive connection reused across requests (for load
//!   tests), reconnecting when the server closed it.
//!
//! Connections are hyper client connections (`hyper::client::conn::http1`)
//! driven by one small tokio runtime for the whole test process; the caller's
//! thread only waits for the outcome, so the helpers work the same from
//! `#[test]` and `#[tokio::test]` functions. Every call is bounded by a timeout
//! ([`DEFAULT_TIMEOUT`] unless changed) and reports failures as `Err(String)`
//! with context instead of panicking.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;

use super::netns::Netns;

/// Timeout applied to a whole request (connect + send + receive) by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code, e.g. `200`.
    pub status: u16,
    /// Headers in wire order, except that repeats of a name follow its first
    /// occurrence; names are lowercased, values are trimmed.
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
    http_request_in(None, proxy, method, host, path, headers, body)
}

/// Like [`http_request`], connecting from inside network namespace `netns`
/// (a pod's) when given.
pub fn http_request_in(
    netns: Option<&Netns>,
    proxy: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let what = format!("{method} http://{host}{path} via {proxy}");
    let request = build_request(method, host, path, headers, body, true)
        .map_err(|e| format!("{what}: {e}"))?;
    let netns = netns.cloned();
    let outcome = run(async move {
        let exchange = async {
            let mut sender = connect(proxy, netns).await?;
            exchange(&mut sender, request).await.map_err(|f| f.message)
        };
        within_timeout(exchange).await.map(|(response, _)| response)
    });
    outcome.map_err(|e| format!("{what}: {e}"))
}

/// One `GET https://HOST/PATH` to `addr` over TLS with SNI `host`, trusting
/// only the roots in `ca_pem` (HTTP/1.1 by ALPN); also returns the serial
/// number (hex) of the certificate the server presented.
pub fn https_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    ca_pem: &str,
) -> Result<(Response, String), String> {
    https_get_in(None, addr, host, path, ca_pem)
}

/// Like [`https_get`], connecting from inside network namespace `netns`
/// (a pod's) when given.
pub fn https_get_in(
    netns: Option<&Netns>,
    addr: SocketAddr,
    host: &str,
    path: &str,
    ca_pem: &str,
) -> Result<(Response, String), String> {
    https_request_in(netns, addr, "GET", host, path, &[], b"", ca_pem)
}

/// One request of any method (with `headers` and `body`) to
/// `https://HOST/PATH` at `addr`, as [`https_get`] sends it: SNI and
/// certificate check for `host` (a DNS name or an IP address) against only
/// the roots in `ca_pem`, HTTP/1.1; also returns the serial number (hex) of
/// the certificate the server presented.
#[allow(clippy::too_many_arguments)]
pub fn https_request_in(
    netns: Option<&Netns>,
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    ca_pem: &str,
) -> Result<(Response, String), String> {
    let netns = netns.cloned();
    let what = format!("{method} https://{host}{path} via {addr}");
    let (connector, name) =
        tls_connector(ca_pem, host, b"http/1.1").map_err(|e| format!("{what}: {e}"))?;
    let request = build_request(method, host, path, headers, body, true)
        .map_err(|e| format!("{what}: {e}"))?;
    let outcome = run(async move {
        let exchange = async {
            let tls = tls_connect(addr, netns, connector, name).await?;
            let serial = peer_serial(&tls);
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP/1.1 handshake failed: {e}"))?;
            tokio::spawn(connection);
            let (response, _) = exchange(&mut sender, request)
                .await
                .map_err(|f| f.message)?;
            Ok((response, serial))
        };
        within_timeout(exchange).await
    });
    outcome.map_err(|e: String| format!("{what}: {e}"))
}

/// One request to `https://HOST/PATH` at `addr` over HTTP/2 (ALPN `h2`
/// only), as Go clients such as the Kubernetes API server speak to a server
/// that offers it; the certificate checked for `host` against only the roots
/// in `ca_pem`.
pub fn https2_request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    ca_pem: &str,
) -> Result<Response, String> {
    let what = format!("{method} https://{host}{path} via {addr} (HTTP/2)");
    let (connector, name) =
        tls_connector(ca_pem, host, b"h2").map_err(|e| format!("{what}: {e}"))?;
    let mut request = build_request(method, host, path, headers, body, false)
        .map_err(|e| format!("{what}: {e}"))?;
    // HTTP/2 carries the authority in the URI, not a Host header.
    request.headers_mut().remove(hyper::header::HOST);
    *request.uri_mut() = format!("https://{host}{path}")
        .parse()
        .map_err(|e| format!("{what}: {e}"))?;
    let outcome = run(async move {
        let exchange = async {
            let tls = tls_connect(addr, None, connector, name).await?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err("the server did not agree to HTTP/2".to_string());
            }
            let (mut sender, connection) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                TokioIo::new(tls),
            )
            .await
            .map_err(|e| format!("HTTP/2 handshake failed: {e}"))?;
            tokio::spawn(connection);
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let (head, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("reading the body failed: {e}"))?;
            Ok(Response {
                status: head.status.as_u16(),
                headers: header_pairs(&head.headers),
                body: String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            })
        };
        within_timeout(exchange).await
    });
    outcome.map_err(|e: String| format!("{what}: {e}"))
}

/// `exchange`, given up after [`DEFAULT_TIMEOUT`].
async fn within_timeout<T>(exchange: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    match tokio::time::timeout(DEFAULT_TIMEOUT, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("timed out after {DEFAULT_TIMEOUT:?}")),
    }
}

/// A TLS connection to `addr` (from inside `netns` when given) through
/// `connector`, the server's certificate checked for `name`.
async fn tls_connect(
    addr: SocketAddr,
    netns: Option<Netns>,
    connector: tokio_rustls::TlsConnector,
    name: rustls_pki_types::ServerName<'static>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tcp_connect(addr, netns).await?;
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))
}

/// A TLS client that trusts only the roots in `ca_pem` and offers `alpn`,
/// and the name to check the server's certificate for.
fn tls_connector(
    ca_pem: &str,
    host: &str,
    alpn: &[u8],
) -> Result<
    (
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    ),
    String,
> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("CA: {e}"))?;
        roots.add(cert).map_err(|e| format!("CA: {e}"))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    Ok((
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
        name,
    ))
}

/// The serial number (hex) of the certificate the server presented.
fn peer_serial(tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| {
            x509_parser::parse_x509_certificate(c.as_ref())
                .ok()
                .map(|(_, x)| x.raw_serial_as_string())
        })
        .unwrap_or_default()
}

/// Whether `r` is a 200 response.
pub fn is_ok(r: &Result<Response, String>) -> bool {
    matches!(r, Ok(r) if r.status == 200)
}

/// The status and body of a response, or why there is none.
pub fn describe(r: &Result<Response, String>) -> String {
    match r {
        Ok(r) => format!("{} {}", r.status, r.body),
        Err(e) => e.clone(),
    }
}

/// A `GET` with `Host: <host>` to `to` from inside pod namespace `netns`.
pub fn http_get_in(
    netns: &Netns,
    to: SocketAddr,
    host: &str,
    path: &str,
) -> Result<Response, String> {
    http_request_in(Some(netns), to, "GET", host, path, &[], b"")
}

/// A keep-alive HTTP/1.1 client bound to one address (usually an Envoy listener).
///
/// Requests are sent one at a time on a single connection. A connection the
/// server closed (`Connection: close`, or closed while idle) is replaced
/// before the next request; if a *reused* connection turns out to be closed
/// only while sending (nothing of a response received), the client
/// reconnects and resends the request once.
pub struct HttpClient {
    addr: SocketAddr,
    /// Where connections are opened from (the test's own namespace when `None`).
    netns: Option<Netns>,
    timeout: Duration,
    conn: Option<SendRequest<Full<Bytes>>>,
    /// Connections opened so far (including the first one).
    connects: usize,
}

impl HttpClient {
    /// Opens a connection to `proxy` (bounded by [`DEFAULT_TIMEOUT`]).
    pub fn connect(proxy: SocketAddr) -> Result<HttpClient, String> {
        HttpClient::connect_in(None, proxy)
    }

    /// Like [`HttpClient::connect`], from inside network namespace `netns`.
    pub fn connect_in(netns: Option<Netns>, proxy: SocketAddr) -> Result<HttpClient, String> {
        let mut client = HttpClient {
            addr: proxy,
            netns,
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
        let mut retried = false;
        loop {
            let request = build_request(method, host, path, headers, body, false)
                .map_err(|e| format!("{}: {e}", what()))?;
            let fresh = self.conn.as_ref().is_none_or(|conn| conn.is_closed());
            if fresh {
                self.reconnect().map_err(|e| format!("{}: {e}", what()))?;
            }
            let mut sender = self
                .conn
                .take()
                .expect("HttpClient connection present after reconnect");
            let timeout = self.timeout;
            let (sender, outcome) = run(async move {
                let outcome = tokio::time::timeout(timeout, exchange(&mut sender, request)).await;
                (sender, outcome)
            });
            match outcome {
                Ok(Ok((response, keep_alive))) => {
                    if keep_alive {
                        self.conn = Some(sender);
                    }
                    return Ok(response);
                }
                Ok(Err(failure)) => {
                    if failure.closed_early && !fresh && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(format!("{}: {}", what(), failure.message));
                }
                Err(_) => return Err(format!("{}: timed out after {timeout:?}", what())),
            }
        }
    }

    fn reconnect(&mut self) -> Result<(), String> {
        self.conn = None;
        let (addr, timeout, netns) = (self.addr, self.timeout, self.netns.clone());
        let sender = run(async move {
            match tokio::time::timeout(timeout, connect(addr, netns)).await {
                Ok(connected) => connected,
                Err(_) => Err(format!("connect to {addr} timed out after {timeout:?}")),
            }
        })?;
        self.conn = Some(sender);
        self.connects += 1;
        Ok(())
    }
}

/// First value of header `name` (case-insensitive) in `headers`.
pub(super) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `headers` as (lowercase name, trimmed value) pairs.
pub(super) fn header_pairs(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes());
            (name.as_str().to_string(), value.trim().to_string())
        })
        .collect()
}

/// Runs `future` on the client runtime and waits for its output.
fn run<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-http-client")
            .enable_all()
            .build()
            .expect("runtime for the test HTTP client")
    });
    let (tx, rx) = mpsc::channel();
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .expect("the test HTTP client's task ended without an answer")
}

/// Opens a connection to `addr` and starts driving it on the runtime.
/// A TCP connection to `addr`, opened inside `netns` when given.
async fn tcp_connect(
    addr: SocketAddr,
    netns: Option<Netns>,
) -> Result<tokio::net::TcpStream, String> {
    let failed = |e: std::io::Error| format!("connect to {addr} failed: {e}");
    match netns {
        None => tokio::net::TcpStream::connect(addr).await.map_err(failed),
        Some(netns) => {
            let opened = tokio::task::spawn_blocking(move || netns.connect(addr, DEFAULT_TIMEOUT))
                .await
                .map_err(|e| format!("connect to {addr}: {e}"))?
                .map_err(failed)?;
            opened.set_nonblocking(true).map_err(failed)?;
            tokio::net::TcpStream::from_std(opened).map_err(failed)
        }
    }
}

async fn connect(
    addr: SocketAddr,
    netns: Option<Netns>,
) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tcp_connect(addr, netns).await?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set_nodelay on {addr} failed: {e}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake with {addr} failed: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Why an exchange failed; `closed_early` when the connection was found
/// closed before any response arrived (so the request may be resent).
struct Failure {
    closed_early: bool,
    message: String,
}

/// Sends `request` on `sender` and reads the whole response (`1xx` interim
/// responses are skipped by hyper). Returns the response and whether the
/// connection may be reused.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(Response, bool), Failure> {
    if let Err(e) = sender.ready().await {
        return Err(Failure {
            closed_early: true,
            message: format!("connection closed before sending: {e}"),
        });
    }
    let response = sender.send_request(request).await.map_err(|e| Failure {
        closed_early: closed_early(&e),
        message: if e.is_incomplete_message() {
            "connection closed before any response byte".to_string()
        } else {
            format!("request failed: {e}")
        },
    })?;
    let (head, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| Failure {
        closed_early: false,
        message: format!("reading the body of a {} response failed: {e}", head.status),
    })?;
    let headers = header_pairs(&head.headers);
    let keep_alive = if head.version == hyper::Version::HTTP_10 {
        connection_has(&headers, "keep-alive")
    } else {
        !connection_has(&headers, "close")
    };
    let response = Response {
        status: head.status.as_u16(),
        headers,
        body: String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    };
    Ok((response, keep_alive))
}

/// Whether `e` means the connection was gone before the request got any
/// response: not sent at all, or closed or reset before a response head.
fn closed_early(e: &hyper::Error) -> bool {
    if e.is_canceled() || e.is_closed() || e.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        source = cause.source();
    }
    false
}

/// Whether the `connection` header lists `token` (case-insensitive).
fn connection_has(headers: &[(String, String)], token: &str) -> bool {
    headers
        .iter()
        .filter(|(k, _)| k == "connection")
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Builds an HTTP/1.1 request with `Host: <host>` and the caller's headers.
/// `close` adds `Connection: close` unless the caller passed its own
/// `connection` header; a `Content-Length` is added for a non-empty body and
/// for `POST`, `PUT` and `PATCH` unless the caller framed the body.
fn build_request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Result<hyper::Request<Full<Bytes>>, String> {
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, host)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| format!("invalid request: {e}"))?;
    let map = request.headers_mut();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("invalid header name {name:?}: {e}"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| format!("invalid value for header {name}: {e}"))?;
        map.append(name, value);
    }
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if close && !has("connection") {
        map.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    if (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH"))
        && !has("content-length")
        && !has("transfer-encoding")
    {
        map.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    Ok(request)
}
