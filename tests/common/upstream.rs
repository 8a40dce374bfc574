//! A tiny HTTP/1.1 upstream server for tests: the backend Envoy routes to.
//!
//! [`Upstream::start`] binds `<ip>:0` (use distinct loopback IPs such as
//! `127.0.0.11`, `127.0.0.12`, ... to tell endpoints apart) and answers every
//! request with `200 OK`, header `x-upstream: <name>` and body `<name>`.
//! [`Upstream::start_with`] lets a test choose the reply (status, headers, body)
//! per request, e.g. to provoke retries or outlier detection.
//!
//! Each upstream serves hyper server connections (HTTP/1.1, keep-alive) on a
//! tokio runtime of its own, driven by a thread of its own, so it works from
//! `#[test]` and `#[tokio::test]` alike. It counts requests
//! ([`Upstream::hits`]) and remembers the most recent ones
//! ([`Upstream::requests`]) so tests can inspect headers Envoy added or removed.
//! Dropping it stops the runtime, which closes the listener and all open
//! connections (waiting a bounded time for that).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::http::{find_header, header_pairs};

/// How many recent requests an [`Upstream`] remembers.
const MAX_RECORDED: usize = 1000;
/// How long dropping an [`Upstream`] waits for its server to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A request as received by an [`Upstream`].
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Request target, e.g. `/path?query`.
    pub path: String,
    /// Lowercased names, trimmed values, wire order (repeats of a name
    /// follow its first occurrence).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Client (Envoy) address of the connection.
    pub peer: SocketAddr,
}

impl RecordedRequest {
    /// Value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// What an [`Upstream`] handler answers. `x-upstream: <name>`,
/// `content-type: text/plain` and `content-length` are always added by the
/// server; headers that are not valid HTTP are left out.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// A reply with `status` and `body` and no extra headers.
    pub fn new(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

type Handler = dyn Fn(&RecordedRequest) -> Reply + Send + Sync;

/// State shared between the [`Upstream`] handle and its server.
struct Shared {
    name: String,
    /// `name` as the value of `x-upstream`.
    name_header: HeaderValue,
    hits: AtomicUsize,
    recorded: Mutex<VecDeque<RecordedRequest>>,
    open: AtomicUsize,
    handler: Box<Handler>,
}

/// A running test upstream; see the module docs.
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    /// Disconnected once the server thread has dropped its runtime.
    stopped: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Starts an upstream on `<ip>:0` answering `200`, `x-upstream: <name>`,
    /// body `<name>`.
    pub fn start(ip: &str, name: &str) -> Upstream {
        let body = name.to_string();
        Upstream::start_with(ip, name, move |_| Reply::new(200, body.clone()))
    }

    /// Starts an upstream on `<ip>:0` whose replies come from `handler`.
    pub fn start_with<F>(ip: &str, name: &str, handler: F) -> Upstream
    where
        F: Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    {
        Upstream::serve(ip, 0, name, handler)
    }

    /// Starts an upstream on `<ip>:<port>` (an app in a pod, where the port
    /// is the pod's own) answering as [`Upstream::start`] does.
    pub fn start_at(ip: &str, port: u16, name: &str) -> Upstream {
        let body = name.to_string();
        Upstream::serve(ip, port, name, move |_| Reply::new(200, body.clone()))
    }

    fn serve<F>(ip: &str, port: u16, name: &str, handler: F) -> Upstream
    where
        F: Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    {
        let name_header = HeaderValue::from_str(name)
            .unwrap_or_else(|e| panic!("upstream {name:?}: not a header value: {e}"));
        let listener = std::net::TcpListener::bind((ip, port))
            .unwrap_or_else(|e| panic!("upstream {name}: cannot bind {ip}:{port}: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("upstream {name}: local_addr failed: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("upstream {name}: set_nonblocking failed: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("upstream {name}: cannot build a runtime: {e}"));
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
                .unwrap_or_else(|e| panic!("upstream {name}: cannot register listener: {e}"))
        };
        let shared = Arc::new(Shared {
            name: name.to_string(),
            name_header,
            hits: AtomicUsize::new(0),
            recorded: Mutex::new(VecDeque::new()),
            open: AtomicUsize::new(0),
            handler: Box::new(handler),
        });
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped) = mpsc::channel::<()>();
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("upstream-{name}"))
                .spawn(move || {
                    runtime.block_on(async {
                        tokio::select! {
                            _ = stop_rx => {}
                            () = accept_loop(listener, shared) => {}
                        }
                    });
                    // Dropping the runtime drops every connection, closing it.
                    drop(runtime);
                    drop(stopped_tx);
                })
                .unwrap_or_else(|e| panic!("upstream {name}: cannot spawn its thread: {e}"))
        };
        Upstream {
            addr,
            shared,
            stop: Some(stop),
            stopped,
            thread: Some(thread),
        }
    }

    /// The bound address (`<ip>:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name given at start (also the `x-upstream` header and default body).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Number of requests answered so far (counted before the reply is sent,
    /// so a client that got the reply always sees it counted).
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    /// Resets [`Upstream::hits`] to zero and forgets recorded requests.
    pub fn reset(&self) {
        self.shared.hits.store(0, Ordering::SeqCst);
        lock(&self.shared.recorded).clear();
    }

    /// The most recent requests (at most 1000), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.recorded).iter().cloned().collect()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.shared.recorded).back().cloned()
    }

    /// Number of currently open connections.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Only join once the thread is done, so dropping can never hang.
        let done = !matches!(
            self.stopped.recv_timeout(STOP_TIMEOUT),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if let Some(thread) = self.thread.take() {
            if done {
                let _ = thread.join();
            }
        }
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test thread must not
/// cascade into the server).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts a connection as open for as long as it lives.
struct OpenConnection(Arc<Shared>);

impl OpenConnection {
    fn new(shared: &Arc<Shared>) -> OpenConnection {
        shared.open.fetch_add(1, Ordering::SeqCst);
        OpenConnection(Arc::clone(shared))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Transient accept errors (e.g. EMFILE): back off briefly.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let open = OpenConnection::new(&shared);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _open = open;
            let service =
                hyper::service::service_fn(move |req| handle(Arc::clone(&shared), peer, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Records one request and answers it with the handler's reply.
async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, BoxError> {
    let (head, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let request = RecordedRequest {
        method: head.method.to_string(),
        path: head.uri.to_string(),
        headers: header_pairs(&head.headers),
        body: body.to_vec(),
        peer,
    };
    // The handler may block (a slow backend): off the runtime's thread, so
    // other connections are still served meanwhile.
    let (request, reply) = {
        let shared = Arc::clone(&shared);
        tokio::task::spawn_blocking(move || {
            let reply = (shared.handler)(&request);
            (request, reply)
        })
        .await?
    };
    let response = encode_reply(&shared, &reply);
    shared.hits.fetch_add(1, Ordering::SeqCst);
    {
        let mut recorded = lock(&shared.recorded);
        if recorded.len() >= MAX_RECORDED {
            recorded.pop_front();
        }
        recorded.push_back(request);
    }
    Ok(response)
}

fn encode_reply(shared: &Shared, reply: &Reply) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(reply.body.clone())));
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert("x-upstream", shared.name_header.clone());
    headers.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    headers.insert(
        hyper::header::CONTENT_LENGTH,
        HeaderValue::from(reply.body.len()),
    );
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    response
}
