//! The web view (`/ui`) in a real headless Chromium: it shows a
//! VirtualService's weight split, follows a change of weights without a
//! reload, and shows a proxy that rejects its configuration as pending.
//!
//! Skipped where Chromium or chromedriver is missing, unless
//! `SHMESH_REQUIRE_BROWSER` is set (CI). With `SHMESH_UPDATE_SCREENSHOT=1`
//! the final screenshot also replaces `docs/web-view.png`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::browser::Browser;
use common::{free_port, http_get, mesh, Envoy, Shmesh};
use serde_json::Value;

/// Each destination of the reviews VirtualService as the page shows it:
/// `subset=weight` from its data, then the text the reader sees.
const REVIEWS_SPLIT: &str = r#"
    const vs = document.querySelector('article[data-key="VirtualService/default/reviews"]');
    if (!vs) return null;
    return [...vs.querySelectorAll('.dest')].map(d =>
        `${d.dataset.subset}=${d.dataset.weight} ${d.querySelector('.weight').textContent}`);
"#;

/// The rollout row of the reviews VirtualService.
const REVIEWS_ROLLOUT: &str = r#"
    const row = document.querySelector('#rollouts tr[data-key="VirtualService/default/reviews"]');
    if (!row) return null;
    return {
        live: row.dataset.live,
        status: row.querySelector('.badge').textContent,
        acked: row.querySelector('td.acked').textContent,
        pending: row.querySelector('td.pending').textContent,
    };
"#;

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A VirtualService for a host no service has, so the page has warnings to show.
const DANGLING_VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings, subset: v2}
";

#[test]
fn the_web_view_follows_weights_and_rollouts_live() {
    let work = tempfile::tempdir().expect("tempdir");
    let Some(mut browser) = Browser::start(
        "the_web_view_follows_weights_and_rollouts_live",
        work.path(),
    ) else {
        return;
    };
    let reviews = mesh::ReviewsOnV1::write();
    let dir = reviews.dir.path();
    mesh::write_atomic(
        dir,
        "vs.yaml",
        &mesh::weighted_vs("v1", &[("v1", 80), ("v2", 20)]),
    );
    mesh::write_atomic(dir, "ratings.yaml", DANGLING_VS);
    let shmesh = Shmesh::start(dir);
    let listener: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("addr");
    let envoy = Envoy::start(&shmesh.bootstrap("envoy-1", "default", listener, true));
    assert!(envoy.wait_until(Duration::from_secs(20), |_| {
        http_get(listener, "reviews:9080", "/", &[]).is_ok_and(|r| r.status == 200)
    }));

    browser.goto(&format!("http://{}/ui", shmesh.admin));
    let want = ["v1=80 weight 80 (80%)", "v2=20 weight 20 (20%)"];
    let (split, shown) = browser.wait_for(Duration::from_secs(10), REVIEWS_SPLIT, |v| {
        strings(v) == want
    });
    assert!(
        shown,
        "the page shows {split}, not {want:?}\n{}",
        browser.log()
    );
    let (rollout, live) = browser.wait_for(Duration::from_secs(10), REVIEWS_ROLLOUT, |v| {
        v["live"] == "true" && v["acked"] == "envoy-1"
    });
    assert!(live, "rollout row: {rollout}");
    assert_eq!(rollout["status"], "✓ live", "{rollout}");
    let (warnings, listed) = browser.wait_for(
        Duration::from_secs(10),
        "return [...document.querySelectorAll('#problems .warnings li')].map(li => li.textContent)",
        |v| strings(v).iter().any(|w| w.contains("ratings")),
    );
    assert!(
        listed,
        "the problems section lists the dangling host: {warnings}"
    );

    // New weights reach the open page by themselves: the marker set on this
    // page's window is still there, so it was not reloaded.
    browser.execute("window.shmeshMarker = 'same page'; return null;");
    let written = Instant::now();
    mesh::write_atomic(
        dir,
        "vs.yaml",
        &mesh::weighted_vs("v1", &[("v1", 30), ("v2", 70)]),
    );
    let want = ["v1=30 weight 30 (30%)", "v2=70 weight 70 (70%)"];
    let (split, updated) = browser.wait_for(Duration::from_secs(2), REVIEWS_SPLIT, |v| {
        strings(v) == want
    });
    assert!(
        updated,
        "within 2 s of the change the page shows {split}, not {want:?}; /ui/state: {}",
        shmesh.admin_get("/ui/state").1
    );
    eprintln!(
        "new weights on the page {} ms after the file was written",
        written.elapsed().as_millis()
    );
    assert_eq!(
        browser.execute("return window.shmeshMarker ?? null;"),
        "same page",
        "the page was reloaded"
    );

    // A second Envoy is given a listener on an address something already
    // holds: it cannot bind it, rejects the listeners (NACK) and so never
    // applies the VirtualService's version.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr");
    let _rejects = Envoy::start(&shmesh.bootstrap("rejects-1", "default", taken_addr, true));
    let (rollout, pending) = browser.wait_for(Duration::from_secs(20), REVIEWS_ROLLOUT, |v| {
        v["live"] == "false" && v["pending"] == "rejects-1"
    });
    assert!(pending, "rollout row: {rollout}");
    assert!(
        rollout["status"]
            .as_str()
            .is_some_and(|s| s.contains("pending on 1 proxy")),
        "{rollout}"
    );
    assert_eq!(rollout["acked"], "envoy-1", "{rollout}");
    let (proxy, rejected) = browser.wait_for(
        Duration::from_secs(10),
        r#"
        const row = document.querySelector('#proxies tr[data-node="rejects-1"]');
        if (!row) return null;
        return { sync: [...row.querySelectorAll('td.sync')].map(td => td.textContent),
                 nack: row.querySelector('td.nack').textContent };
        "#,
        |v| {
            strings(&v["sync"]).contains(&"STALE".to_string())
                && v["nack"].as_str().is_some_and(|n| n.contains("lds"))
        },
    );
    assert!(rejected, "proxies row of rejects-1: {proxy}");
    assert_eq!(
        browser.execute("return window.shmeshMarker ?? null;"),
        "same page",
        "the page was reloaded"
    );

    // The same state, for scripts.
    let (status, body) = shmesh.admin_get("/ui/state");
    assert_eq!(status, 200, "{body}");
    let state: Value = serde_json::from_str(&body).expect("JSON");
    let vs = state["virtual_services"]
        .as_array()
        .expect("list")
        .iter()
        .find(|v| v["name"] == "reviews")
        .expect("reviews");
    let weights: Vec<i64> = vs["routes"][0]["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .filter_map(|d| d["weight"].as_i64())
        .collect();
    assert_eq!(weights, vec![30, 70], "{vs}");

    browser.fit_to_page();
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(work.path().join("web-view.png"), &png).expect("write screenshot");
    if std::env::var_os("SHMESH_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/web-view.png");
        std::fs::write(&docs, &png).expect("write docs/web-view.png");
        eprintln!("wrote {}", docs.display());
    }
    drop(taken);
}

/// Reads `stream` until it has received `count` events named `state`;
/// their data, or what came so far when `timeout` passes first.
async fn state_events(
    stream: &mut tokio::net::TcpStream,
    received: &mut String,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Value>, String> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let events: Vec<Value> = received
            .split("\n\n")
            .filter_map(|block| {
                // Lines of HTTP chunk sizes come between events: only the
                // event's own lines are read.
                block.lines().find(|l| *l == "event: state")?;
                let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
                serde_json::from_str(data).ok()
            })
            .collect();
        if events.len() >= count {
            return Ok(events);
        }
        let mut buf = [0u8; 65536];
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) => return Err(format!("the stream ended after: {received}")),
            Ok(Ok(n)) => received.push_str(&String::from_utf8_lossy(&buf[..n])),
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Err(_) => {
                return Err(format!(
                    "no {count} state events within {timeout:?}: {received}"
                ))
            }
        }
    }
}

/// Without a browser: the event stream sends the state on connecting and
/// again after a change, and the page is built only from shmesh's own files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_sends_each_change() {
    use tokio::io::AsyncWriteExt;
    let reviews = mesh::ReviewsOnV1::write();
    let dir = reviews.dir.path();
    mesh::write_atomic(
        dir,
        "vs.yaml",
        &mesh::weighted_vs("v1", &[("v1", 80), ("v2", 20)]),
    );
    let shmesh = Shmesh::start(dir);

    for (path, content_type) in [
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/ui.css", "text/css; charset=utf-8"),
        ("/ui/ui.js", "text/javascript; charset=utf-8"),
    ] {
        let r = common::http_get(shmesh.admin, "shmesh", path, &[]).expect(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(content_type), "{path}");
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'self'; img-src 'self' data:"),
            "{path}"
        );
        // Nothing is fetched from elsewhere: no CDN, no external fonts.
        assert!(
            !r.body.contains("http://") && !r.body.contains("https://"),
            "{path}"
        );
    }

    let weights = |state: &Value| -> Vec<i64> {
        state["virtual_services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["name"] == "reviews")
            .flat_map(|v| {
                v["routes"][0]["destinations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|d| d["weight"].as_i64())
            .collect()
    };
    let mut stream = tokio::net::TcpStream::connect(shmesh.admin)
        .await
        .expect("connect to the admin port");
    stream
        .write_all(b"GET /ui/events HTTP/1.1\r\nHost: shmesh\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .expect("send request");
    let mut received = String::new();
    let first = state_events(&mut stream, &mut received, 1, Duration::from_secs(10))
        .await
        .expect("the state on connecting");
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    assert!(
        received
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{received}"
    );
    assert_eq!(weights(&first[0]), vec![80, 20], "{}", first[0]);

    mesh::write_atomic(
        dir,
        "vs.yaml",
        &mesh::weighted_vs("v1", &[("v1", 10), ("v2", 90)]),
    );
    let mut last = Vec::new();
    for n in 2..=5 {
        let events = state_events(&mut stream, &mut received, n, Duration::from_secs(10))
            .await
            .expect("an event after the change");
        last = weights(&events[n - 1]);
        if last == vec![10, 90] {
            break;
        }
    }
    assert_eq!(last, vec![10, 90], "{received}");
}
