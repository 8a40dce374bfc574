//! The validating admission webhook, as istiod serves one: the API server
//! POSTs an AdmissionReview for each Istio or Gateway API object being
//! created or updated to `/validate` over HTTPS (15017 by default), and
//! shmesh answers with what `shmesh validate` says of it ([`admission`]).
//! The certificate comes from files, read again when they change
//! ([`certificate`]). The webhook reads nothing from the cluster and shares
//! no state with the rest of shmesh but its counters.

pub mod admission;
pub mod certificate;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use prometheus_client::registry::Registry;
use shmesh_xds::metrics::IstiodCounter;

use admission::Verdict;
use certificate::CertificateFiles;

/// The webhook's answers, under istiod's names (its validation server's),
/// which Istio's control-plane dashboard plots.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    /// Requests allowed: valid objects, kinds shmesh does not read, deletions.
    pub allowed: IstiodCounter,
    /// Requests denied: objects `shmesh validate` rejects.
    pub denied: IstiodCounter,
    /// Bodies that are not an AdmissionReview v1 (answered 400).
    pub malformed: IstiodCounter,
}

impl WebhookMetrics {
    pub fn new(registry: &mut Registry) -> WebhookMetrics {
        let m = WebhookMetrics::default();
        registry.register(
            "galley_validation_passed",
            "Admission reviews the webhook allowed (a counter)",
            m.allowed.clone(),
        );
        registry.register(
            "galley_validation_failed",
            "Admission reviews the webhook denied, the object being invalid (a counter)",
            m.denied.clone(),
        );
        registry.register(
            "galley_validation_http_error",
            "Requests to the webhook that were not an AdmissionReview v1 (a counter)",
            m.malformed.clone(),
        );
        m
    }
}

/// Where the API server sends reviews (Istio's path).
pub const PATH: &str = "/validate";
/// The largest body read: an AdmissionReview holds an object (the API
/// server takes at most 3 MiB) and, on UPDATE, its old version.
const MAX_BODY: usize = 8 << 20;
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS settings of the webhook: whatever certificate `certificate`
/// holds at each handshake, HTTP/2 or HTTP/1.1 as the client prefers.
pub fn tls_acceptor(certificate: Arc<CertificateFiles>) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: TlsAcceptor, metrics: Arc<WebhookMetrics>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "webhook accept failed");
                // Out of file descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let tls = tls.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(handle(req, &metrics).await) }
            });
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                debug!(%peer, error = %e, "webhook connection ended");
            }
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle(req: Request<Incoming>, metrics: &WebhookMetrics) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return text(
            StatusCode::NOT_FOUND,
            format!("not found: POST to {PATH}\n"),
        );
    }
    if req.method() != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("POST an AdmissionReview to {PATH}\n"),
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            metrics.malformed.inc();
            return match e.downcast_ref::<http_body_util::LengthLimitError>() {
                Some(_) => text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {MAX_BODY} bytes\n"),
                ),
                None => text(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {e}\n"),
                ),
            };
        }
    };
    let answer = admission::review(&body);
    match answer.verdict {
        Verdict::Allowed => metrics.allowed.inc(),
        Verdict::Denied => metrics.denied.inc(),
        Verdict::Malformed => metrics.malformed.inc(),
    }
    debug!(verdict = ?answer.verdict, "admission review answered");
    let mut response = text(
        StatusCode::from_u16(answer.http_status).unwrap_or(StatusCode::BAD_REQUEST),
        answer.body,
    );
    let content_type = match answer.http_status {
        200 => "application/json",
        _ => "text/plain; charset=utf-8",
    };
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
