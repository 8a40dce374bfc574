//! A GET on a running shmesh's admin server, for the commands that report
//! on it (`proxy-status`, `proxy-config`): plain HTTP/1.1, one request per
//! connection.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// `GET path` on the admin server at `addr`: the body of a 2xx answer, or
/// an error naming the address and what the server said.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Bytes> {
    let url = format!("http://{addr}{path}");
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach shmesh's admin server at {addr} (--admin-addr)"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("GET {url}"))?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .with_context(|| format!("GET {url}"))?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("GET {url}"))?
        .to_bytes();
    if !status.is_success() {
        anyhow::bail!(
            "GET {url}: {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    Ok(body)
}
