//! The web view on the admin port: `/ui` is a page that shows the routes of
//! every VirtualService with their weight splits, how far each policy
//! version has rolled out to the proxies, the configuration's problems and
//! the connected proxies, and keeps itself up to date.
//!
//! The page, its style sheet and its script are built into the binary. The
//! state it shows comes from the views task (`Views::policies`, which carries
//! each VirtualService's route summary, the problems and warnings) and the
//! xDS streams' registry (`Registry::sync`, `rollout::reports`). It is served
//! whole at `/ui/state` (JSON, for scripts) and as server-sent events at
//! `/ui/events`: one `state` event on connecting and another whenever the
//! views or the registry change, coalesced over `SETTLE`, with a keep-alive
//! comment when nothing changes. A connection computes the next event only
//! once the previous one has been written out, so a slow browser holds at
//! most one state, the latest, never a queue.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::watch;

use super::{syncz, AdminState, Body};
use crate::rollout::Report;
use crate::views::routes::VirtualServiceRoutes;
use shmesh_api::Kind;

const PAGE: &str = include_str!("ui/index.html");
const STYLE: &str = include_str!("ui/ui.css");
const SCRIPT: &str = include_str!("ui/ui.js");

/// How long a connection waits after a change before it reads the state, so
/// a burst of changes (a push reaching many proxies, their ACKs) is one event.
const SETTLE: Duration = Duration::from_millis(100);

/// A comment line this often keeps idle connections (and proxies between the
/// browser and shmesh) from timing out.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long the browser waits before reconnecting after the stream breaks.
const RETRY_MS: u32 = 2000;

/// What the page shows.
#[derive(Debug, Serialize, PartialEq)]
pub struct UiState {
    /// This shmesh's name.
    pub instance: String,
    /// Every source has synced and proxies are being served.
    pub ready: bool,
    pub virtual_services: Vec<VirtualServiceView>,
    /// Every policy's rollout (`/debug/rollout`).
    pub rollouts: Vec<Report>,
    pub problems: super::Problems,
    pub proxies: Vec<ProxyView>,
}

/// A VirtualService in force and its routes.
#[derive(Debug, Serialize, PartialEq)]
pub struct VirtualServiceView {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub version: String,
    /// `kubernetes` or the file it was read from.
    pub source: String,
    #[serde(flatten)]
    pub routes: Arc<VirtualServiceRoutes>,
}

/// A connected proxy and how far it has applied what it was sent.
#[derive(Debug, Serialize, PartialEq)]
pub struct ProxyView {
    pub node_id: String,
    /// The name proxy-status shows.
    pub name: String,
    /// Istio's node type (`sidecar`, `router`), when the node id says.
    pub proxy_type: String,
    /// `sotw` or `delta`.
    pub protocol: &'static str,
    pub proxy_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub istio_version: Option<String>,
    /// Every type it asked for.
    pub types: Vec<TypeView>,
    /// The last response it rejected and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_nack: Option<String>,
}

/// One type of one proxy, in proxy-status' words.
#[derive(Debug, Serialize, PartialEq)]
pub struct TypeView {
    /// `CDS`, `EDS`, `LDS`, `RDS`, `VHDS`, `SDS`.
    #[serde(rename = "type")]
    pub ty: String,
    /// `SYNCED`, `STALE` or `NOT SENT`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The state as it stands.
pub fn state(admin: &AdminState) -> UiState {
    let policies = admin.views.policies();
    let virtual_services = policies
        .values()
        .filter(|p| p.kind == Kind::VirtualService)
        .filter_map(|p| {
            Some(VirtualServiceView {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                generation: p.stamp.generation,
                version: p.stamp.version.to_string(),
                source: p.source.clone(),
                routes: p.routes.clone()?,
            })
        })
        .collect();
    let proxies = admin
        .registry
        .sync()
        .into_iter()
        .map(|p| ProxyView {
            name: syncz::proxy_name(&p.status.node_id).to_string(),
            proxy_type: syncz::proxy_type(&p.status.node_id).to_string(),
            node_id: p.status.node_id,
            protocol: p.status.protocol,
            proxy_version: p.status.proxy_version,
            istio_version: p.status.istio_version,
            types: p
                .types
                .into_iter()
                .map(|t| TypeView {
                    ty: t.ty.short().to_ascii_uppercase(),
                    status: t.state.as_str(),
                    sent: t.sent,
                    acked: t.acked,
                    error: t.error,
                })
                .collect(),
            last_nack: p.status.last_nack,
        })
        .collect();
    UiState {
        instance: admin.instance.clone(),
        ready: *admin.views.ready().borrow(),
        virtual_services,
        rollouts: crate::rollout::reports(&admin.views, &admin.registry),
        problems: super::problems(admin),
        proxies,
    }
}

/// The response for a path under `/ui`, if it is one.
pub fn respond(admin: &Arc<AdminState>, path: &str) -> Option<Response<Body>> {
    let asset = |content_type: &'static str, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync());
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        r
    };
    let mut response = match path {
        "/ui" | "/ui/" => asset("text/html; charset=utf-8", PAGE),
        "/ui/ui.css" => asset("text/css; charset=utf-8", STYLE),
        "/ui/ui.js" => asset("text/javascript; charset=utf-8", SCRIPT),
        "/ui/state" => super::json(&state(admin)).map(BodyExt::boxed_unsync),
        "/ui/events" => events(admin.clone()),
        _ => return None,
    };
    let headers = response.headers_mut();
    // Everything the page needs comes from here; names from the
    // configuration are only ever set as text.
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Some(response)
}

/// What one event stream knows between events.
struct Feed {
    admin: Arc<AdminState>,
    registry: watch::Receiver<u64>,
    views: watch::Receiver<u64>,
    keep_alive: tokio::time::Interval,
    /// Hash of the last state sent: an unchanged state is not sent again.
    last: Option<u64>,
    /// The first event goes out at once.
    first: bool,
}

impl Feed {
    /// The next frame: a state that differs from the last one sent, or a
    /// keep-alive comment; `None` once the process is shutting down.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if !self.first {
                tokio::select! {
                    changed = self.registry.changed() => changed.ok()?,
                    changed = self.views.changed() => changed.ok()?,
                    _ = self.keep_alive.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
                }
                tokio::time::sleep(SETTLE).await;
            }
            self.first = false;
            self.registry.mark_unchanged();
            self.views.mark_unchanged();
            let json = match serde_json::to_string(&state(&self.admin)) {
                Ok(json) => json,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot encode the web view's state");
                    continue;
                }
            };
            let hash = xxhash_rust::xxh3::xxh3_64(json.as_bytes());
            if self.last == Some(hash) {
                continue;
            }
            self.last = Some(hash);
            self.keep_alive.reset();
            // One `data:` line: JSON escapes every newline in its strings.
            return Some(Bytes::from(format!("event: state\ndata: {json}\n\n")));
        }
    }
}

/// `/ui/events`: the state as server-sent events.
fn events(admin: Arc<AdminState>) -> Response<Body> {
    let start = tokio::time::Instant::now() + KEEP_ALIVE;
    let feed = Feed {
        registry: admin.registry.changes(),
        views: admin.views.changes(),
        keep_alive: tokio::time::interval_at(start, KEEP_ALIVE),
        admin,
        last: None,
        first: true,
    };
    let retry =
        stream::once(async { Ok(Frame::data(Bytes::from(format!("retry: {RETRY_MS}\n\n")))) });
    // Polled only when hyper wants the next frame, that is when the last one
    // has been written out: nothing queues up behind a slow reader.
    let states = stream::unfold(feed, |mut feed| async move {
        let frame = feed.next().await?;
        Some((Ok::<_, Infallible>(Frame::data(frame)), feed))
    });
    let body = StreamBody::new(futures::StreamExt::chain(retry, states)).boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    let headers = r.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
