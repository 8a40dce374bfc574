//! Process-wide counters, rendered in Prometheus text format by the admin
//! server: the xDS streams' own (`shmesh_xds::metrics`) and those of the
//! translator, the sources, the CA and the admission webhook.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use shmesh_xds::metrics::XdsMetrics;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Written by the xDS streams.
    pub xds: Arc<XdsMetrics>,
    pub translations: AtomicU64,
    pub config_errors: AtomicU64,
    pub config_warnings: AtomicU64,
    /// Written by the certificate authority.
    pub identity: Arc<IdentityMetrics>,
    /// Written by the admission webhook.
    pub webhook: Arc<WebhookMetrics>,
}

/// The admission webhook's answers.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    /// Requests allowed: valid objects, kinds shmesh does not read, deletions.
    pub allowed: AtomicU64,
    /// Requests denied: objects `shmesh validate` rejects.
    pub denied: AtomicU64,
    /// Bodies that are not an AdmissionReview v1 (answered 400).
    pub malformed: AtomicU64,
}

/// What the certificate authority did, and whom it refused.
#[derive(Debug, Default)]
pub struct IdentityMetrics {
    /// Streams that proved no identity (or a mismatched one) on a server
    /// that issues certificates.
    pub unproven: AtomicU64,
    /// Workload certificates issued, renewals included.
    pub certificates_issued: AtomicU64,
    /// Certificate requests signed over Istio's CA API.
    pub csr_signed: AtomicU64,
    /// Certificate requests refused (unauthenticated, invalid).
    pub csr_refused: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        shmesh_xds::metrics::inc(counter);
    }

    /// Prometheus exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.xds.render(&mut out);
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (name, counter) in [
            ("translations", &self.translations),
            ("config_errors", &self.config_errors),
            ("config_warnings", &self.config_warnings),
            ("identity_unproven", &self.identity.unproven),
            (
                "workload_certificates_issued",
                &self.identity.certificates_issued,
            ),
            ("ca_requests_signed", &self.identity.csr_signed),
            ("ca_requests_refused", &self.identity.csr_refused),
            ("webhook_allowed", &self.webhook.allowed),
            ("webhook_denied", &self.webhook.denied),
            ("webhook_malformed", &self.webhook.malformed),
        ] {
            out.push_str(&format!("# TYPE shmesh_{name}_total counter\n"));
            out.push_str(&format!("shmesh_{name}_total {}\n", g(counter)));
        }
        out
    }
}
