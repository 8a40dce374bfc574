//! The xDS listener: accepts proxies' connections and serves the ADS streams
//! on them over HTTP/2.
//!
//! Connections are served with hyper directly so the per-stream send buffer
//! can be set: HTTP/2 buffers what a stream wrote until the client's window
//! and the socket take it, and with thousands of proxies syncing at once that
//! buffer, not the cache, decides memory.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::server::{AdsServer, ViewSource};

/// Response bytes HTTP/2 may hold per stream before the stream waits: two of
/// the chunks a response is written in.
const SEND_BUFFER: usize = 64 * 1024;
/// How long open streams get after a shutdown signal: proxies are told to go
/// (GOAWAY) and reconnect elsewhere, but ADS streams do not end by themselves.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of descriptors), instead of retrying at once.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// HTTP/2 keepalive pings, so dead proxies are noticed.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Serves ADS on `listener` until `shutdown` completes.
pub async fn serve<S: ViewSource>(
    listener: TcpListener,
    ads: AdsServer<S>,
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
        let conn =
            http2.serve_connection(TokioIo::new(stream), TowerToHyperService::new(ads.clone()));
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { stopping.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await {
                        Ok(r) => r,
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                debug!(error = %e, "xDS connection ended");
            }
        });
    }
    info!("xDS listener closing");
    let _ = stop.send(true);
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}
