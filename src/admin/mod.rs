//! The admin HTTP server: `/healthz`, `/readyz`, `/metrics`, debug views
//! (`/debug/proxies`, `/debug/problems`, `/debug/rollout`, and for
//! `shmesh proxy-status` and `proxy-config`, `/debug/syncz` and
//! `/debug/config_dump?proxyID=`) and the web view (`/ui`). It only reads
//! shared state.

pub mod syncz;
pub mod ui;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::views::Views;
use shmesh_xds::server::Registry;

/// A response body: whole, or streamed (the web view's events).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub struct AdminState {
    pub views: Arc<Views>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// This shmesh's name (`POD_NAME`, else the host name), as proxy-status
    /// shows it.
    pub instance: String,
}

pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move {
                    let path = req.uri().path();
                    let response = match ui::respond(&state, path) {
                        Some(r) => r,
                        None => handle(&state, req).map(BodyExt::boxed_unsync),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                debug!(error = %e, "admin connection ended");
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

fn json(value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => {
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn handle(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if *state.views.ready().borrow() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "waiting for the first full sync of every source\n",
                )
            }
        }
        "/metrics" => {
            let mut r = text(StatusCode::OK, state.metrics.render());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(Metrics::CONTENT_TYPE),
            );
            r
        }
        "/debug/proxies" => json(&state.registry.list()),
        "/debug/syncz" => json(&syncz::list(state.registry.sync(), &state.instance)),
        "/debug/config_dump" => config_dump(state, req.uri().query().unwrap_or("")),
        "/debug/rollout" => rollout(state, req.uri().query().unwrap_or("")),
        "/debug/problems" => json(&problems(state)),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The configuration's problems: objects rejected (errors) and references
/// that lead nowhere (warnings).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Problems {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

fn problems(state: &AdminState) -> Problems {
    let mut errors: Vec<String> = state
        .views
        .problems
        .lock()
        .map(|p| p.values().flatten().map(|p| p.to_string()).collect())
        .unwrap_or_default();
    // Sources are kept in a hash map: a stable order for readers.
    errors.sort();
    let warnings: Vec<String> = state
        .views
        .warnings
        .lock()
        .map(|w| w.iter().map(|p| p.to_string()).collect())
        .unwrap_or_default();
    Problems { errors, warnings }
}

/// `/debug/config_dump?proxyID=ID`: what the connected proxy `ID` (its node
/// id, or its name as proxy-status shows it) was sent, in the shape of
/// Envoy's `/config_dump`, private keys redacted. A proxy connected more
/// than once (a reconnect not yet noticed) is shown on its newest stream.
fn config_dump(state: &AdminState, query: &str) -> Response<Full<Bytes>> {
    let Some(id) = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "proxyID")
        .map(|(_, v)| v.into_owned())
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "give the proxy: /debug/config_dump?proxyID=NODE_ID\n",
        );
    };
    let stream = state
        .registry
        .list()
        .into_iter()
        .filter(|p| p.node_id == id || syncz::proxy_name(&p.node_id) == id)
        .map(|p| p.stream)
        .max();
    let Some(sent) = stream.and_then(|s| state.registry.sent_config(s)) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no proxy {id:?} is connected to this shmesh\n"),
        );
    };
    match crate::jsonpb::config_dump_of(&sent.resources) {
        Ok(dump) => json(&dump),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// `/debug/rollout`: every policy's rollout, or one with
/// `?kind=VirtualService&namespace=NS&name=NAME` (404 if it does not exist).
fn rollout(state: &AdminState, query: &str) -> Response<Full<Bytes>> {
    let params: std::collections::HashMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let (Some(kind), Some(name)) = (params.get("kind"), params.get("name")) else {
        return json(&crate::rollout::reports(&state.views, &state.registry));
    };
    let namespace = params.get("namespace").copied().unwrap_or("default");
    use shmesh_api::Kind;
    let found = match *kind {
        "VirtualService" | "DestinationRule" | "Gateway" => {
            let kind = match *kind {
                "VirtualService" => Kind::VirtualService,
                "DestinationRule" => Kind::DestinationRule,
                _ => Kind::Gateway,
            };
            let report = |name: &str| {
                crate::rollout::report(&state.views, &state.registry, kind, namespace, name)
            };
            // A Gateway API Gateway is followed through the Istio Gateway it became.
            report(name).or_else(|| {
                (kind == Kind::Gateway)
                    .then(|| report(&shmesh_model::gateway_api::istio_gateway_name(name)))
                    .flatten()
            })
        }
        "HTTPRoute" | "GRPCRoute" | "TCPRoute" | "TLSRoute" => {
            let kind = match *kind {
                "HTTPRoute" => Kind::HTTPRoute,
                "GRPCRoute" => Kind::GRPCRoute,
                "TCPRoute" => Kind::TCPRoute,
                _ => Kind::TLSRoute,
            };
            crate::rollout::route_report(&state.views, &state.registry, kind, namespace, name)
        }
        other => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("kind must be VirtualService, DestinationRule, Gateway, HTTPRoute, GRPCRoute, TCPRoute or TLSRoute, not {other:?}\n"),
            )
        }
    };
    match found {
        Some(r) => json(&r),
        None => text(
            StatusCode::NOT_FOUND,
            format!("no {kind} {namespace}/{name}\n"),
        ),
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
