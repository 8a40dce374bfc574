//! The xDS listener: accepts proxies' connections and serves the ADS streams
//! on them over HTTP/2.
//!
//! Connections are served with hyper directly so the per-stream send buffer
//! can be set: HTTP/2 buffers what a stream wrote until the client's window
//! and the socket take it, and with thousands of proxies syncing at once that
//! buffer, not the cache, decides memory.
//!
//! A TLS listener (as istiod's 15012) verifies the client certificates
//! proxies present and tells each stream whose it was (`Peer`): the
//! identity a proxy proved, and the only one it may get certificates for.
//!
//! A connection lives at most its [`ConnectionAge`], as istiod's do (gRPC's
//! `MaxConnectionAge`): then it is told to go (HTTP/2 GOAWAY, so the client
//! opens its next streams on a new connection), its streams get a grace to
//! finish, and the ADS streams still open are ended with UNAVAILABLE
//! ([`ConnectionClosing`]), so the proxy reconnects, through the Service,
//! to whichever replica it reaches. Without it a proxy stays on the replica
//! it first reached, and replicas added later serve none of the fleet.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio_rustls::TlsAcceptor;
use tonic::codegen::http;
use tracing::{debug, info, warn};

use std::convert::Infallible;

use hyper::body::Incoming;

/// Response bytes HTTP/2 may hold per stream before the stream waits: two of
/// the chunks a response is written in.
const SEND_BUFFER: usize = 64 * 1024;
/// How long open streams get after a shutdown signal: proxies are told to go
/// (GOAWAY) and reconnect elsewhere, but ADS streams do not end by themselves.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How long a connection has to send the ended streams' trailers before it
/// is closed anyway (a client that reads nothing must not keep it).
const CLOSE_FLUSH: Duration = Duration::from_millis(500);
/// Pause after a failed accept (out of descriptors), instead of retrying at once.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// HTTP/2 keepalive pings, so dead proxies are noticed.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A gRPC service a listener serves: ADS, or ADS routed beside others.
pub trait GrpcService:
    tonic::codegen::Service<
        http::Request<Incoming>,
        Response = http::Response<tonic::body::Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<T> GrpcService for T where
    T: tonic::codegen::Service<
            http::Request<Incoming>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// How long a proxy's connection lives before it must reconnect, so that
/// the proxies of a fleet spread over the replicas serving it, new ones
/// included (istiod: `MAX_SERVER_CONNECTION_AGE`, 30 minutes, with a grace
/// of 10 seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionAge {
    /// The age at which a connection is told to go, give or take 10%.
    pub max: Duration,
    /// How long its open streams then go on before they are ended.
    pub grace: Duration,
}

impl ConnectionAge {
    /// One connection's age: `max` ±10%, as gRPC jitters it, so a fleet
    /// that connected together does not reconnect together.
    pub fn jittered(&self) -> Duration {
        self.max.mul_f64(0.9 + 0.2 * fastrand::f64())
    }
}

/// Serves `service` (ADS, and on the TLS listener whatever is routed beside
/// it) on `listener` until `shutdown` completes; with `tls`, every
/// connection is TLS first, and the client certificate it verified (if the
/// client sent one) reaches each request as its `Peer`. With `age`, each
/// connection is closed, gracefully, once it is that old.
pub async fn serve(
    listener: TcpListener,
    service: impl GrpcService,
    tls: Option<TlsAcceptor>,
    age: Option<ConnectionAge>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopping) = watch::channel(false);
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .max_send_buf_size(SEND_BUFFER)
        .keep_alive_interval(KEEPALIVE)
        .timer(hyper_util::rt::TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "accepting an xDS connection failed; pausing");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (http2, ads, tls, stopping) = (
            http2.clone(),
            service.clone(),
            tls.clone(),
            stopping.clone(),
        );
        // One task type per kind of connection: a task is as large as its
        // future, and a plaintext connection's would otherwise carry room
        // for the TLS session it does not have (7 KiB a proxy).
        match tls {
            None => {
                tokio::spawn(async move {
                    serve_connection(&http2, stream, ads, Peer::default(), stopping, age).await
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            let certificate = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|leaf| Bytes::copy_from_slice(leaf.as_ref()));
                            let peer = Peer {
                                tls: true,
                                certificate,
                                bearer_token: None,
                            };
                            serve_connection(&http2, stream, ads, peer, stopping, age).await
                        }
                        Ok(Err(e)) => debug!(error = %e, "xDS TLS handshake failed"),
                        Err(_) => debug!("xDS TLS handshake timed out"),
                    }
                });
            }
        }
    }
    info!("xDS listener closing");
    let _ = stop.send(true);
    tokio::time::sleep(SHUTDOWN_GRACE + CLOSE_FLUSH).await;
}

/// Serves one connection's ADS streams until it ends, the server stops, or
/// it reaches its `age`; the last two close it in three steps: GOAWAY, a
/// grace for the streams in flight, then the ADS streams still open end
/// with UNAVAILABLE and the connection closes.
async fn serve_connection<IO>(
    http2: &hyper::server::conn::http2::Builder<TokioExecutor>,
    io: IO,
    ads: impl GrpcService,
    peer: Peer,
    mut stopping: watch::Receiver<bool>,
    age: Option<ConnectionAge>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let closing = ConnectionClosing::default();
    let service = PeerService {
        inner: ads,
        peer,
        closing: closing.clone(),
    };
    let conn = http2.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let too_old = async {
        match age {
            Some(age) => tokio::time::sleep(age.jittered()).await,
            None => std::future::pending().await,
        }
    };
    let (grace, reason) = tokio::select! {
        r = conn.as_mut() => return ended(r),
        _ = stopping.wait_for(|s| *s) => (SHUTDOWN_GRACE, Closing::Shutdown),
        _ = too_old => {
            debug!("xDS connection reached its maximum age");
            (age.map_or(Duration::ZERO, |a| a.grace), Closing::MaxAge)
        }
    };
    // GOAWAY: new streams go to a new connection, those open go on.
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        r = conn.as_mut() => return ended(r),
        _ = tokio::time::sleep(grace) => {}
        // The server stopping cuts an age's grace short.
        _ = stopping.wait_for(|s| *s), if reason == Closing::MaxAge => {}
    }
    closing.close(reason);
    match tokio::time::timeout(CLOSE_FLUSH, conn.as_mut()).await {
        Ok(r) => ended(r),
        Err(_) => debug!("xDS connection closed with streams open"),
    }
}

fn ended(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        debug!(error = %e, "xDS connection ended");
    }
}

/// Why a connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Closing {
    /// It reached its maximum age.
    MaxAge = 1,
    /// The server is stopping.
    Shutdown = 2,
}

/// On every request: learns when the connection it came on is being closed,
/// past its grace, so a long-lived stream (ADS) ends then, cleanly, with
/// UNAVAILABLE: the client reconnects at once instead of finding its
/// connection cut. One per connection, shared by its streams; a flag and a
/// `Notify` (not a watch channel, several times its size: every proxy holds
/// one).
#[derive(Debug, Clone, Default)]
pub struct ConnectionClosing(Arc<CloseSignal>);

#[derive(Debug, Default)]
struct CloseSignal {
    /// 0 while open, else the `Closing` as `u8`.
    why: AtomicU8,
    notify: Notify,
}

impl ConnectionClosing {
    /// Tells the connection's streams to end.
    fn close(&self, why: Closing) {
        self.0.why.store(why as u8, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    fn why(&self) -> Option<Closing> {
        match self.0.why.load(Ordering::Acquire) {
            0 => None,
            1 => Some(Closing::MaxAge),
            _ => Some(Closing::Shutdown),
        }
    }

    /// Completes when the connection is being closed (never, for a request
    /// that did not come through this listener).
    pub async fn closed(&self) -> Closing {
        loop {
            let notified = self.0.notify.notified();
            // Checked after registering, so a close in between is not missed.
            if let Some(why) = self.why() {
                return why;
            }
            notified.await;
        }
    }
}

/// Who is at the other end of a connection, as far as TLS proved it, and
/// the bearer token its request carried.
#[derive(Clone, Default)]
pub struct Peer {
    /// The connection is TLS (a token travels only on such a connection).
    pub tls: bool,
    /// The client's certificate (DER), verified against the trusted roots
    /// during the handshake; `None` on plaintext, or when the client sent none.
    pub certificate: Option<Bytes>,
    /// The request's `authorization: Bearer` token, on a TLS connection;
    /// unchecked: whoever reads it must verify it first.
    pub bearer_token: Option<Arc<str>>,
}

impl std::fmt::Debug for Peer {
    // Never print the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("tls", &self.tls)
            .field("certificate", &self.certificate.as_ref().map(|c| c.len()))
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A service with the connection's `Peer` and `ConnectionClosing` put on
/// every request.
struct PeerService<S> {
    inner: S,
    peer: Peer,
    closing: ConnectionClosing,
}

impl<S: Clone> Clone for PeerService<S> {
    fn clone(&self) -> Self {
        PeerService {
            inner: self.inner.clone(),
            peer: self.peer.clone(),
            closing: self.closing.clone(),
        }
    }
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for PeerService<S>
where
    S: tonic::codegen::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let mut peer = self.peer.clone();
        if peer.tls {
            peer.bearer_token = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(|t| Arc::from(t.trim()));
        }
        req.extensions_mut().insert(peer);
        req.extensions_mut().insert(self.closing.clone());
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_stream_of_a_connection_learns_it_is_closing() {
        let closing = ConnectionClosing::default();
        let waiting = tokio::spawn({
            let c = closing.clone();
            async move { c.closed().await }
        });
        tokio::task::yield_now().await;
        closing.close(Closing::MaxAge);
        assert_eq!(waiting.await.unwrap(), Closing::MaxAge);
        // A stream that starts waiting afterwards learns it at once.
        assert_eq!(closing.clone().closed().await, Closing::MaxAge);
        // A request that came another way never closes.
        let other = ConnectionClosing::default();
        let wait = tokio::time::timeout(Duration::from_millis(10), other.closed());
        assert!(wait.await.is_err());
    }

    #[test]
    fn ages_are_jittered_within_ten_percent() {
        let age = ConnectionAge {
            max: Duration::from_secs(100),
            grace: Duration::from_secs(10),
        };
        let ages: Vec<Duration> = (0..200).map(|_| age.jittered()).collect();
        assert!(ages
            .iter()
            .all(|a| (Duration::from_secs(90)..=Duration::from_secs(110)).contains(a)));
        let distinct: std::collections::BTreeSet<_> = ages.iter().collect();
        assert!(distinct.len() > 100, "not jittered: {distinct:?}");
    }
}
