mod common;
use std::time::Duration;
#[test]
fn bad_bootstrap_panics_with_log() {
    let r = std::panic::catch_unwind(|| {
        common::Envoy::start(&serde_json::json!({"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}, "static_resources": {"clusters": [{"name": "x", "type": "BOGUS"}]}}))
    });
    let msg = r.err().expect("should panic");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    eprintln!("PANIC MESSAGE:\n{msg}");
    assert!(msg.contains("BOGUS"), "{msg}");
}
#[test]
fn upstream_drop_and_client_reconnect() {
    let u = common::Upstream::start("127.0.0.13", "u");
    let addr = u.addr();
    let mut c = common::HttpClient::connect(addr).expect("connect");
    let t = std::time::Instant::now();
    for _ in 0..2000 { assert_eq!(c.get("x", "/", &[]).expect("get").body, "u"); }
    eprintln!("2000 keepalive reqs in {:?}", t.elapsed());
    // POST with body, chunked request body
    let r = c.request("POST", "x", "/p", &[], b"hello").expect("post");
    assert_eq!(r.status, 200);
    let r = c.request("POST", "x", "/p", &[("transfer-encoding","chunked")], b"5\r\nhello\r\n0\r\n\r\n").expect("chunked post");
    assert_eq!(r.status, 200);
    assert_eq!(u.last_request().expect("last").body, b"hello");
    assert_eq!(c.connects(), 1);
    // server closes: request with connection: close then client reconnects
    let r = c.get("x", "/", &[("connection", "close")]).expect("close");
    assert_eq!(r.header("connection"), Some("close"));
    let r = c.get("x", "/", &[]).expect("after close");
    assert_eq!(r.status, 200);
    assert_eq!(c.connects(), 2);
    let t = std::time::Instant::now();
    drop(u);
    eprintln!("drop took {:?}", t.elapsed());
    assert!(c.get("x", "/", &[]).is_err());
    assert!(common::http_get(addr, "x", "/", &[]).is_err());
    let _ = Duration::from_secs(1);
}
#[tokio::test]
async fn works_in_tokio() {
    let u = common::Upstream::start("127.0.0.14", "t");
    let addr = u.addr();
    let r = tokio::task::spawn_blocking(move || common::http_get(addr, "h", "/", &[])).await.expect("join").expect("get");
    assert_eq!(r.body, "t");
    let r = common::http_get(addr, "h", "/", &[]).expect("get direct");
    assert_eq!(r.status, 200);
}
