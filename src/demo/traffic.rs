//! The demo's requests: one loop per service sends requests through Envoy's
//! outbound listener at a steady rate, naming the service in the Host
//! header, and counts who answered (the workload's identity in the body) in
//! a [`Tally`] that the demo prints as the split per service.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;

use super::workloads::Target;

/// A keep-alive HTTP/1.1 client.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Empty<Bytes>>;

pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// Longer than any timeout the example's routes set, short enough that a
/// stuck request does not stall its service's loop for long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// GETs `url`, with `host` as the Host header if given: the status and body.
pub async fn get(
    client: &Client,
    url: &str,
    host: Option<&str>,
) -> anyhow::Result<(hyper::StatusCode, String)> {
    let mut request = hyper::Request::get(url);
    if let Some(host) = host {
        request = request.header(hyper::header::HOST, host);
    }
    let request = request.body(Empty::new())?;
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}"))?
}

/// Answers counted per service and per answer (`v1`, `HTTP-503`), since
/// the last [`Tally::reset`].
#[derive(Default)]
pub struct Tally {
    counts: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
}

impl Tally {
    fn record(&self, service: &str, answer: String) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts
            .entry(service.to_string())
            .or_default()
            .entry(answer)
            .or_default() += 1;
    }

    /// Starts counting afresh.
    pub fn reset(&self) {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn counts(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Sends `rate` requests a second for `target` through `listener` until
/// aborted, counting each answer in `tally`.
pub fn spawn(
    client: Client,
    listener: SocketAddr,
    target: Target,
    rate: u32,
    tally: Arc<Tally>,
) -> JoinHandle<()> {
    let url = format!("http://{listener}/");
    let period = Duration::from_secs(1) / rate.max(1);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        // A slow answer (a fault delay) postpones the next request rather
        // than causing a burst after it.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let answer = match get(&client, &url, Some(&target.authority)).await {
                Ok((status, body)) if status.is_success() => answer_of(&target.service, &body),
                Ok((status, _)) => format!("HTTP-{}", status.as_u16()),
                Err(_) => "no-answer".to_string(),
            };
            tally.record(&target.service, answer);
        }
    })
}

/// What the split shows of a workload's identity: the part after the
/// service's name (`v1` of `reviews-v1`), else the whole identity.
fn answer_of(service: &str, body: &str) -> String {
    let identity = body.trim();
    identity
        .strip_prefix(service)
        .and_then(|rest| rest.strip_prefix('-'))
        .filter(|version| !version.is_empty())
        .unwrap_or(identity)
        .to_string()
}

/// One line of the split, services in order:
/// `reviews: v1 80% (412) v3 20% (103) | ratings: v1 100% (515)`. Answers
/// have no spaces, so each share is three words.
pub fn split_line(counts: &BTreeMap<String, BTreeMap<String, u64>>) -> String {
    let services: Vec<String> = counts
        .iter()
        .map(|(service, answers)| {
            let total: u64 = answers.values().sum();
            let shares: Vec<String> = answers
                .iter()
                .map(|(answer, n)| {
                    let percent = (*n as f64) * 100.0 / (total.max(1) as f64);
                    format!("{answer} {percent:.0}% ({n})")
                })
                .collect();
            format!("{service}: {}", shares.join(" "))
        })
        .collect();
    if services.is_empty() {
        return "no answers yet".to_string();
    }
    services.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_show_the_version_of_the_service() {
        assert_eq!(answer_of("reviews", "reviews-v1\n"), "v1");
        assert_eq!(answer_of("details", "details\n"), "details");
        assert_eq!(answer_of("reviews", "ratings-v2\n"), "ratings-v2");
    }

    #[test]
    fn the_split_line_gives_shares_and_counts() {
        let tally = Tally::default();
        for _ in 0..3 {
            tally.record("reviews", "v1".into());
        }
        tally.record("reviews", "v3".into());
        tally.record("details", "HTTP-503".into());
        assert_eq!(
            split_line(&tally.counts()),
            "details: HTTP-503 100% (1) | reviews: v1 75% (3) v3 25% (1)"
        );
        tally.reset();
        assert_eq!(split_line(&tally.counts()), "no answers yet");
    }
}
