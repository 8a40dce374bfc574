//! A second opinion from the server's side: shmesh's admin API
//! (`/debug/proxies`) lists every stream with the versions it was sent and
//! the versions the proxy ACKed, per type. After the changes, every
//! simulated proxy should be connected with nothing unacknowledged and no
//! NACK. Read over plain HTTP/1.1 on loopback; the result goes to the report.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// What `/debug/proxies` said about the fleet.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Verify {
    /// Streams shmesh lists (any client).
    pub streams: usize,
    /// Streams of this fleet's nodes (`loadgen-N`).
    pub fleet_streams: usize,
    /// Fleet streams whose ACKed versions equal the sent ones for every type.
    pub in_sync: usize,
    /// Fleet streams with a NACK recorded.
    pub nacked: usize,
    /// A few node ids that were not in sync at the last poll.
    pub out_of_sync_sample: Vec<String>,
    pub polls: usize,
    /// Why the last poll failed, if it did (e.g. no file descriptor left
    /// to connect with while the fleet holds them all).
    pub error: Option<String>,
}

impl Verify {
    pub fn ok(&self, clients: usize) -> bool {
        self.fleet_streams == clients && self.in_sync == clients && self.nacked == 0
    }
}

/// Polls `/debug/proxies` on `admin` until all `clients` are in sync or
/// `timeout` passes; returns the last view (or the last error).
pub async fn check(admin: SocketAddr, clients: usize, timeout: Duration) -> Verify {
    let deadline = Instant::now() + timeout;
    let mut polls = 0;
    loop {
        polls += 1;
        let list = match poll(admin).await {
            Ok(list) => list,
            Err(e) if Instant::now() >= deadline => {
                return Verify {
                    polls,
                    error: Some(e.to_string()),
                    ..Default::default()
                }
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut v = Verify {
            streams: list.len(),
            polls,
            ..Default::default()
        };
        for p in &list {
            let id = p["node_id"].as_str().unwrap_or_default();
            if !id.starts_with("loadgen-") {
                continue;
            }
            v.fleet_streams += 1;
            if !p["last_nack"].is_null() {
                v.nacked += 1;
            }
            let (sent, acked) = (&p["sent"], &p["acked"]);
            if sent.as_object().is_some_and(|s| !s.is_empty()) && sent == acked {
                v.in_sync += 1;
            } else if v.out_of_sync_sample.len() < 5 {
                v.out_of_sync_sample.push(id.to_string());
            }
        }
        if v.ok(clients) || Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn poll(admin: SocketAddr) -> anyhow::Result<Vec<serde_json::Value>> {
    let body = get(admin, "/debug/proxies").await?;
    serde_json::from_slice(&body).map_err(|e| anyhow::anyhow!("/debug/proxies: {e}"))
}

async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Bytes> {
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("GET http://{addr}{path}: {e}");
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| err(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| err(&e))?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, "shmesh")
        .body(Empty::<Bytes>::new())
        .map_err(|e| err(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| err(&e))?;
    if !resp.status().is_success() {
        return Err(err(&resp.status()));
    }
    Ok(resp
        .into_body()
        .collect()
        .await
        .map_err(|e| err(&e))?
        .to_bytes())
}
