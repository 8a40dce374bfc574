//! A tiny HTTP/1.1 upstream server for tests: the backend Envoy routes to.
//!
//! [`Upstream::start`] binds `<ip>:0` (use distinct loopback IPs such as
//! `127.0.0.11`, `127.0.0.12`, ... to tell endpoints apart) and answers every
//! request with `200 OK`, header `x-upstream: <name>` and body `<name>`.
//! [`Upstream::start_with`] lets a test choose the reply (status, headers, body)
//! per request, e.g. to provoke retries or outlier detection.
//!
//! It is plain `std::thread` code (one thread per connection, keep-alive
//! supported), so it works from `#[test]` and `#[tokio::test]` alike. It counts
//! requests ([`Upstream::hits`]) and remembers the most recent ones
//! ([`Upstream::requests`]) so tests can inspect headers Envoy added or removed.
//! Dropping it stops accepting and closes all open connections (bounded).

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::http::{connection_has, find_header, Wire};

/// How many recent requests an [`Upstream`] remembers.
const MAX_RECORDED: usize = 1000;
/// How often idle connection threads check the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// A request as received by an [`Upstream`].
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Request target, e.g. `/path?query`.
    pub path: String,
    /// Lowercased names, trimmed values, wire order.
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

/// What an [`Upstream`] handler answers. `x-upstream: <name>` and
/// `content-length` are always added by the server.
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

/// State shared between the [`Upstream`] handle and its threads.
struct Shared {
    name: String,
    stop: Arc<AtomicBool>,
    hits: AtomicUsize,
    recorded: Mutex<VecDeque<RecordedRequest>>,
    /// Open connections (clones), so `Drop` can shut them down.
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicUsize,
    handler: Box<Handler>,
}

/// A running test upstream; see the module docs.
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
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
        let listener = TcpListener::bind((ip, 0))
            .unwrap_or_else(|e| panic!("upstream {name}: cannot bind {ip}:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("upstream {name}: local_addr failed: {e}"));
        let shared = Arc::new(Shared {
            name: name.to_string(),
            stop: Arc::new(AtomicBool::new(false)),
            hits: AtomicUsize::new(0),
            recorded: Mutex::new(VecDeque::new()),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicUsize::new(0),
            handler: Box::new(handler),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("upstream-{name}-accept"))
                .spawn(move || accept_loop(listener, shared))
                .unwrap_or_else(|e| panic!("upstream {name}: cannot spawn accept thread: {e}"))
        };
        Upstream {
            addr,
            shared,
            acceptor: Some(acceptor),
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
        lock(&self.shared.conns).len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Unblock `accept()` by connecting to ourselves; only join if that
        // worked, so dropping can never hang.
        let woke = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(acceptor) = self.acceptor.take() {
            if woke {
                let _ = acceptor.join();
            }
        }
        // Close every open connection so peers (Envoy) notice immediately;
        // their threads exit on the resulting EOF / stop flag.
        for (_, stream) in lock(&self.shared.conns).drain() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test thread must not
/// cascade into the server threads).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            // Transient accept errors (e.g. EMFILE): back off briefly.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let id = shared.next_conn.fetch_add(1, Ordering::SeqCst) as u64;
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.conns).insert(id, clone);
        }
        let conn_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("upstream-{}-conn{id}", shared.name))
            .spawn(move || {
                serve_connection(stream, &conn_shared);
                lock(&conn_shared.conns).remove(&id);
            });
        if spawned.is_err() {
            lock(&shared.conns).remove(&id);
        }
    }
}

/// Serves requests on one keep-alive connection until the peer closes, asks
/// to close, errors, or the upstream stops.
fn serve_connection(stream: TcpStream, shared: &Shared) {
    let peer = match stream.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    if stream.set_read_timeout(Some(POLL)).is_err() || stream.set_nodelay(true).is_err() {
        return;
    }
    let mut wire = Wire::server(stream, Arc::clone(&shared.stop));
    loop {
        let head = match wire.read_head() {
            Ok(Some(head)) => head,
            Ok(None) | Err(_) => return,
        };
        let body = match wire.read_request_body(&head) {
            Ok(body) => body,
            Err(_) => return,
        };
        let mut parts = head.start_line.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let version = parts.next().unwrap_or_default().to_string();
        let keep_alive = if version == "HTTP/1.0" {
            connection_has(&head.headers, "keep-alive")
        } else {
            !connection_has(&head.headers, "close")
        };
        let request = RecordedRequest {
            method,
            path,
            headers: head.headers,
            body,
            peer,
        };
        let reply = (shared.handler)(&request);
        let response = encode_reply(&shared.name, &reply, &request.method, keep_alive);
        shared.hits.fetch_add(1, Ordering::SeqCst);
        {
            let mut recorded = lock(&shared.recorded);
            if recorded.len() >= MAX_RECORDED {
                recorded.pop_front();
            }
            recorded.push_back(request);
        }
        if wire.write_all(&response).is_err() || !keep_alive {
            return;
        }
    }
}

fn encode_reply(name: &str, reply: &Reply, method: &str, keep_alive: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nx-upstream: {name}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n",
        reply.status,
        reason(reply.status),
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !keep_alive {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    if !method.eq_ignore_ascii_case("HEAD") {
        out.push_str(&reply.body);
    }
    out.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
