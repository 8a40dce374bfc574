//! A second opinion from the server's side: shmesh's admin API
//! (`/debug/proxies`) lists every stream with the versions it was sent and
//! the versions the proxy ACKed, per type. After the changes, every
//! simulated proxy should be connected with nothing unacknowledged and no
//! NACK. With several replicas, every simulated proxy should be on exactly
//! one of them. Read over plain HTTP/1.1 on loopback; the result goes to the
//! report.

use std::collections::HashSet;
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
    /// Fleet streams per admin address, in the order given.
    pub per_admin: Vec<usize>,
    /// Fleet nodes listed more than once (by two replicas as a proxy moves,
    /// or twice by one).
    pub duplicates: usize,
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
        self.fleet_streams == clients
            && self.in_sync == clients
            && self.nacked == 0
            && self.duplicates == 0
    }
}

/// Polls `/debug/proxies` on every admin address until all `clients` are in
/// sync or `timeout` passes; returns the last view (or the last error).
pub async fn check(admins: &[SocketAddr], clients: usize, timeout: Duration) -> Verify {
    let deadline = Instant::now() + timeout;
    let mut polls = 0;
    loop {
        polls += 1;
        let lists = match poll_all(admins).await {
            Ok(lists) => lists,
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
        let v = tally(&lists, polls);
        if v.ok(clients) || Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one poll of every admin's `/debug/proxies` says about the fleet.
fn tally(lists: &[Vec<serde_json::Value>], polls: usize) -> Verify {
    let mut v = Verify {
        streams: lists.iter().map(Vec::len).sum(),
        per_admin: vec![0; lists.len()],
        polls,
        ..Default::default()
    };
    let mut seen = HashSet::new();
    for (admin, p) in lists
        .iter()
        .enumerate()
        .flat_map(|(i, list)| list.iter().map(move |p| (i, p)))
    {
        let id = p["node_id"].as_str().unwrap_or_default();
        if !id.starts_with("loadgen-") {
            continue;
        }
        v.fleet_streams += 1;
        v.per_admin[admin] += 1;
        if !seen.insert(id) {
            v.duplicates += 1;
        }
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
    v
}

/// Every admin's list, one after the other.
async fn poll_all(admins: &[SocketAddr]) -> anyhow::Result<Vec<Vec<serde_json::Value>>> {
    let mut lists = Vec::with_capacity(admins.len());
    for admin in admins {
        lists.push(poll(*admin).await?);
    }
    Ok(lists)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stream(node: &str, sent: &str, acked: &str) -> serde_json::Value {
        json!({"node_id": node, "sent": {"cds": sent}, "acked": {"cds": acked}, "last_nack": null})
    }

    #[test]
    fn a_fleet_spread_over_replicas_counts_once_per_replica() {
        let a = vec![stream("loadgen-0", "1", "1"), stream("other", "1", "0")];
        let b = vec![stream("loadgen-1", "1", "1"), stream("loadgen-2", "2", "1")];
        let v = tally(&[a, b], 1);
        assert_eq!(v.streams, 4);
        assert_eq!(v.fleet_streams, 3);
        assert_eq!(v.per_admin, vec![1, 2]);
        assert_eq!(v.in_sync, 2);
        assert_eq!(v.out_of_sync_sample, vec!["loadgen-2"]);
        assert_eq!(v.duplicates, 0);
        assert!(!v.ok(3));
    }

    #[test]
    fn a_proxy_listed_by_two_replicas_is_not_ok() {
        let a = vec![stream("loadgen-0", "1", "1")];
        let b = vec![stream("loadgen-0", "1", "1"), stream("loadgen-1", "1", "1")];
        let v = tally(&[a.clone(), b], 1);
        assert_eq!((v.fleet_streams, v.duplicates), (3, 1));
        assert!(!v.ok(2));
        let v = tally(&[a, vec![stream("loadgen-1", "1", "1")]], 1);
        assert!(v.ok(2), "{v:?}");
    }
}
