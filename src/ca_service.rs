//! Istio's CA API, `istio.v1.auth.IstioCertificateService/CreateCertificate`,
//! on the xDS TLS listener as istiod serves it on 15012: Istio agents send a
//! certificate signing request and get back a workload certificate signed by
//! shmesh's CA, so they can use shmesh as their CA as they use istiod.
//!
//! A certificate goes only to a caller that proved an identity, and only for
//! that identity: either the client certificate its TLS connection verified
//! (an identity of the mesh's trust domain, as an agent renewing presents),
//! or, in Kubernetes mode, the service-account token in its `authorization`
//! header, which the API server's TokenReview (audience `istio-ca`) must
//! accept. Anything else is refused as unauthenticated, logged (never the
//! token) and counted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use envoy_types::pb::google::protobuf::Struct;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::{Code, Status};
use tracing::{info, warn};

use crate::identity::Identities;
use crate::identity::IdentityMetrics;
use shmesh_xds::listen::Peer;

pub const SERVICE_NAME: &str = "istio.v1.auth.IstioCertificateService";
const CREATE_PATH: &str = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

/// The audience Istio agents' tokens are minted for.
pub const TOKEN_AUDIENCE: &str = "istio-ca";

/// `istio.v1.auth.IstioCertificateRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateRequest {
    /// PEM-encoded certificate signing request.
    #[prost(string, tag = "1")]
    pub csr: String,
    /// Requested lifetime in seconds; the CA's own when 0 or longer.
    #[prost(int64, tag = "2")]
    pub validity_duration: i64,
    #[prost(message, optional, tag = "3")]
    pub metadata: Option<Struct>,
}

/// `istio.v1.auth.IstioCertificateResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateResponse {
    /// The certificate, then its issuers up to the root, as PEM.
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
}

/// How long a TokenReview's answer is reused for the same token: a fleet
/// reconnecting at once asks the API server once per token.
const REVIEW_CACHE: Duration = Duration::from_secs(60);
/// Answers kept at most; the cache starts over beyond.
const REVIEW_CACHE_ENTRIES: usize = 100_000;

type Reviewed = Result<(String, String), String>;

/// Recent answers by token, with when they were given.
type ReviewCache = HashMap<Arc<str>, (Instant, Reviewed)>;

/// Checks service-account tokens with the API server.
#[derive(Clone)]
pub struct TokenReviewer {
    client: kube::Client,
    recent: Arc<Mutex<ReviewCache>>,
}

impl TokenReviewer {
    pub fn new(client: kube::Client) -> TokenReviewer {
        TokenReviewer {
            client,
            recent: Arc::default(),
        }
    }

    /// The (namespace, service account) `token` belongs to, if the API server
    /// authenticates it for the `istio-ca` audience; answers are reused for
    /// a minute.
    async fn review(&self, token: &str) -> Reviewed {
        let now = Instant::now();
        {
            let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, answer)) = recent.get(token) {
                if now.duration_since(*at) < REVIEW_CACHE {
                    return answer.clone();
                }
            }
        }
        let answer = self.ask(token).await;
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= REVIEW_CACHE_ENTRIES {
            recent.clear();
        }
        recent.insert(Arc::from(token), (now, answer.clone()));
        answer
    }

    /// The SPIFFE identity in `trust_domain` of the service account `token`
    /// belongs to (`review`).
    pub async fn identity(&self, token: &str, trust_domain: &str) -> Result<String, String> {
        let (namespace, account) = self.review(token).await?;
        Ok(shmesh_translate::tls::spiffe_id(
            trust_domain,
            &namespace,
            &account,
        ))
    }

    async fn ask(&self, token: &str) -> Reviewed {
        let api: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![TOKEN_AUDIENCE.to_string()]),
            },
            ..Default::default()
        };
        let reviewed = api
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| format!("TokenReview failed: {e}"))?;
        let status = reviewed.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Err(match status.error {
                Some(e) if !e.is_empty() => format!("token not authenticated: {e}"),
                _ => "token not authenticated".to_string(),
            });
        }
        if let Some(audiences) = &status.audiences {
            if !audiences.iter().any(|a| a == TOKEN_AUDIENCE) {
                return Err(format!("token is not for audience {TOKEN_AUDIENCE}"));
            }
        }
        let username = status.user.and_then(|u| u.username).unwrap_or_default();
        let mut parts = username.split(':');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some("system"), Some("serviceaccount"), Some(ns), Some(sa), None)
                if !ns.is_empty() && !sa.is_empty() =>
            {
                Ok((ns.to_string(), sa.to_string()))
            }
            _ => Err(format!("{username:?} is not a service account")),
        }
    }
}

struct Inner {
    identities: Arc<Identities>,
    reviewer: Option<TokenReviewer>,
    metrics: Arc<IdentityMetrics>,
}

/// The gRPC service, to route beside ADS on the TLS listener.
#[derive(Clone)]
pub struct CertificateService {
    inner: Arc<Inner>,
}

impl CertificateService {
    pub fn new(
        identities: Arc<Identities>,
        reviewer: Option<TokenReviewer>,
        metrics: Arc<IdentityMetrics>,
    ) -> CertificateService {
        CertificateService {
            inner: Arc::new(Inner {
                identities,
                reviewer,
                metrics,
            }),
        }
    }
}

impl Inner {
    /// The identity the caller proved: its client certificate's, or its
    /// token's.
    /// The identity the caller proved: its client certificate's, or the
    /// bearer token's its request carried (`Peer`, from the TLS listener).
    async fn caller(&self, peer: Option<&Peer>) -> Result<String, Status> {
        let trust_domain = self.identities.trust_domain();
        let from_certificate = peer
            .and_then(|p| p.certificate.as_deref())
            .and_then(crate::ca::spiffe_id_of)
            .filter(|id| {
                crate::ca::parse_spiffe_id(id).is_some_and(|(domain, _, _)| domain == trust_domain)
            });
        if let Some(id) = from_certificate {
            return Ok(id);
        }
        let Some(token) = peer.and_then(|p| p.bearer_token.as_deref()) else {
            return Err(Status::unauthenticated(
                "no client certificate of this trust domain and no bearer token",
            ));
        };
        let Some(reviewer) = &self.reviewer else {
            return Err(Status::unauthenticated(
                "tokens are checked only in Kubernetes mode (TokenReview)",
            ));
        };
        reviewer
            .identity(token, trust_domain)
            .await
            .map_err(Status::unauthenticated)
    }

    async fn create(
        &self,
        request: tonic::Request<IstioCertificateRequest>,
    ) -> Result<IstioCertificateResponse, Status> {
        let peer = request.extensions().get::<Peer>().cloned();
        let id = self.caller(peer.as_ref()).await?;
        let message = request.into_inner();
        let most = self.identities.workload_lifetime();
        let lifetime = match u64::try_from(message.validity_duration) {
            Ok(secs) if secs > 0 => Duration::from_secs(secs).min(most),
            _ => most,
        };
        let chain = self
            .identities
            .ca()
            .sign_request(&message.csr, &id, lifetime)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        info!(identity = %id, lifetime = ?lifetime, "signed a certificate request");
        Ok(IstioCertificateResponse { cert_chain: chain })
    }
}

/// `CreateCertificate` for tonic's unary plumbing.
struct CreateCertificate(Arc<Inner>);

impl tonic::server::UnaryService<IstioCertificateRequest> for CreateCertificate {
    type Response = IstioCertificateResponse;
    type Future = BoxFuture<tonic::Response<IstioCertificateResponse>, Status>;

    fn call(&mut self, request: tonic::Request<IstioCertificateRequest>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move {
            match inner.create(request).await {
                Ok(response) => {
                    inner.metrics.csr_signed.inc();
                    Ok(tonic::Response::new(response))
                }
                Err(status) => {
                    inner.metrics.csr_refused.inc();
                    if status.code() == Code::Unauthenticated {
                        warn!(reason = status.message(), "certificate request refused");
                    } else {
                        info!(reason = status.message(), "certificate request refused");
                    }
                    Err(status)
                }
            }
        })
    }
}

impl tonic::server::NamedService for CertificateService {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> tonic::codegen::Service<http::Request<B>> for CertificateService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != CREATE_PATH {
            return Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) });
        }
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(CreateCertificate(inner), req).await)
        })
    }
}
