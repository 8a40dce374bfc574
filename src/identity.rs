//! Workload identities: who a connected proxy proved it is, and the
//! certificates shmesh's CA gives it for that.
//!
//! A proxy proves an identity with the client certificate it presents on
//! the xDS-over-TLS listener (`shmesh bootstrap --credentials-dir` writes
//! one). Its view then carries `Certificates::Ads` for that service account,
//! and its snapshot the SDS secrets `default` (a short-lived certificate for
//! `spiffe://TRUST_DOMAIN/ns/NS/sa/SA`) and `ROOTCA` (the trusted roots).
//! Certificates are issued once per identity and renewed at half their
//! lifetime; every view of the identity then gets the new one. A proxy that
//! proved nothing, or claims a namespace its certificate does not name,
//! gets no certificate: it is logged and counted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use tracing::{info, warn};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::ca::{self, Ca, CaError, Issued};
use shmesh_cache::ResourceWriter;
use shmesh_translate::tls::{Certificates, ROOT_SECRET, WORKLOAD_SECRET};

/// What the certificate authority did, and whom it refused. Written here and
/// by `ca_service`; rendered at `/metrics`.
#[derive(Debug, Default)]
pub struct IdentityMetrics {
    /// Streams that proved no identity (or a mismatched one) on a server
    /// that issues certificates.
    pub unproven: Counter,
    /// Workload certificates issued, renewals included.
    pub certificates_issued: Counter,
    /// Certificate requests signed over Istio's CA API.
    pub csr_signed: Counter,
    /// Certificate requests refused (unauthenticated, invalid).
    pub csr_refused: Counter,
}

impl IdentityMetrics {
    pub fn new(registry: &mut Registry) -> IdentityMetrics {
        let m = IdentityMetrics::default();
        registry.register(
            "shmesh_identity_unproven",
            "Proxies that asked for certificates without proving the identity they claim",
            m.unproven.clone(),
        );
        registry.register(
            "shmesh_workload_certificates_issued",
            "Workload certificates issued over SDS by shmesh's CA, renewals included",
            m.certificates_issued.clone(),
        );
        registry.register(
            "shmesh_ca_requests_signed",
            "Certificate signing requests signed over Istio's CA API",
            m.csr_signed.clone(),
        );
        registry.register(
            "shmesh_ca_requests_refused",
            "Certificate signing requests refused over Istio's CA API (unauthenticated or invalid)",
            m.csr_refused.clone(),
        );
        m
    }
}

/// Where the CA comes from and how it signs.
#[derive(Debug, Clone)]
pub struct CaOptions {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// More roots to trust beside the CA's own.
    pub also_trusted: Vec<PathBuf>,
    pub trust_domain: String,
    /// How long a workload certificate is valid.
    pub workload_lifetime: Duration,
}

/// The CA and the workload certificates it has issued, by identity.
pub struct Identities {
    ca: Ca,
    trust_domain: String,
    lifetime: Duration,
    issued: Mutex<HashMap<(String, String), Issued>>,
    metrics: Arc<IdentityMetrics>,
}

impl Identities {
    pub fn load(options: &CaOptions, metrics: Arc<IdentityMetrics>) -> Result<Identities, CaError> {
        let ca = Ca::load(&options.cert, &options.key, &options.also_trusted)?;
        Ok(Identities {
            ca,
            trust_domain: options.trust_domain.clone(),
            lifetime: options.workload_lifetime,
            issued: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// How long a workload certificate is valid.
    pub fn workload_lifetime(&self) -> Duration {
        self.lifetime
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// How often to look for certificates due for renewal: often enough to
    /// renew each well before it expires.
    pub fn renewal_check(&self) -> Duration {
        (self.lifetime / 10).clamp(Duration::from_millis(50), Duration::from_secs(60))
    }

    /// The certificates a proxy of `namespace` gets, given the client
    /// certificate its connection verified. Only the identity that
    /// certificate names, and only in the namespace it names.
    pub fn certificates_for(
        &self,
        node_id: &str,
        namespace: &str,
        peer_certificate: Option<&[u8]>,
    ) -> Certificates {
        let proven = peer_certificate.and_then(ca::spiffe_id_of);
        self.certificates_of(
            node_id,
            namespace,
            proven.as_deref(),
            "no client certificate",
        )
    }

    /// The certificates a proxy of `namespace` gets as the SPIFFE identity
    /// `proven` (from its certificate or its token); `why_not` says what it
    /// lacked when there is none.
    pub fn certificates_of(
        &self,
        node_id: &str,
        namespace: &str,
        proven: Option<&str>,
        why_not: &str,
    ) -> Certificates {
        let unproven = |why: &str| {
            self.metrics.unproven.inc();
            info!(
                node = node_id,
                reason = why,
                "no identity proven: no certificates"
            );
            Certificates::None
        };
        let Some(id) = proven else {
            return unproven(why_not);
        };
        match ca::parse_spiffe_id(id) {
            Some((domain, ns, sa)) if domain == self.trust_domain && ns == namespace => {
                Certificates::Ads {
                    service_account: sa.to_string(),
                }
            }
            Some((domain, ns, _)) if domain == self.trust_domain => {
                warn!(
                    node = node_id,
                    claimed = namespace,
                    proven = ns,
                    "a proxy claims another namespace than it proved"
                );
                unproven("namespace differs from the proven one")
            }
            _ => unproven("the proven identity is of another trust domain"),
        }
    }

    /// Writes the SDS secrets of `service_account` in `namespace`: its
    /// certificate (issued now if it has none, or if the one it has is past
    /// half its lifetime) and the trusted roots.
    pub fn write_secrets(
        &self,
        namespace: &str,
        service_account: &str,
        w: &mut ResourceWriter,
    ) -> Result<(), CaError> {
        let issued = self.current(namespace, service_account, SystemTime::now())?;
        let inline = |text: &str| core::DataSource {
            specifier: Some(core::data_source::Specifier::InlineString(text.to_string())),
            ..Default::default()
        };
        w.encode(
            ROOT_SECRET.to_string(),
            &tls::Secret {
                name: ROOT_SECRET.to_string(),
                r#type: Some(tls::secret::Type::ValidationContext(
                    tls::CertificateValidationContext {
                        trusted_ca: Some(inline(self.ca.trusted_pem())),
                        ..Default::default()
                    },
                )),
            },
        );
        w.encode(
            WORKLOAD_SECRET.to_string(),
            &tls::Secret {
                name: WORKLOAD_SECRET.to_string(),
                r#type: Some(tls::secret::Type::TlsCertificate(tls::TlsCertificate {
                    certificate_chain: Some(inline(&issued.chain_pem)),
                    private_key: Some(inline(&issued.key_pem)),
                    ..Default::default()
                })),
            },
        );
        Ok(())
    }

    /// The identity's certificate, renewed when due at `now`.
    fn current(
        &self,
        namespace: &str,
        service_account: &str,
        now: SystemTime,
    ) -> Result<Issued, CaError> {
        let key = (namespace.to_string(), service_account.to_string());
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cert) = issued.get(&key) {
            if !due(cert, now) {
                return Ok(cert.clone());
            }
        }
        let id = shmesh_translate::tls::spiffe_id(&self.trust_domain, namespace, service_account);
        let cert = self.ca.issue_workload(&id, self.lifetime)?;
        self.metrics.certificates_issued.inc();
        info!(identity = %id, lifetime_s = self.lifetime.as_secs_f64(), "issued a workload certificate");
        issued.insert(key, cert.clone());
        Ok(cert)
    }

    /// Whether any certificate issued so far is due for renewal at `now`.
    pub fn any_due(&self, now: SystemTime) -> bool {
        let issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        issued.values().any(|c| due(c, now))
    }
}

/// Renewal at half the lifetime, as Istio's agent does: the old certificate
/// stays valid for as long again, so no connection ever meets an expired one.
fn due(cert: &Issued, now: SystemTime) -> bool {
    let lifetime = cert
        .not_after
        .duration_since(cert.issued_at)
        .unwrap_or_default();
    now >= cert.issued_at + lifetime / 2
}

/// The TLS configuration of the xDS-over-TLS listener: a server certificate
/// for `names` from the CA; client certificates verified against the
/// trusted roots when sent, and not required (a proxy without one still
/// gets its routing config).
pub fn xds_tls(
    identities: &Identities,
    names: &[String],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let server = identities
        .ca
        .issue_server(names, Duration::from_secs(365 * 86400))?;
    let (chain, key) =
        crate::pem::chain_and_key(server.chain_pem.as_bytes(), server.key_pem.as_bytes())?;
    let mut roots = rustls::RootCertStore::empty();
    for root in identities.ca.trusted_der() {
        roots.add(root.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identities(lifetime: Duration) -> (tempfile::TempDir, Identities) {
        let dir = tempfile::tempdir().unwrap();
        Ca::create_root(dir.path(), "test").unwrap();
        let options = CaOptions {
            cert: dir.path().join("root-cert.pem"),
            key: dir.path().join("root-key.pem"),
            also_trusted: vec![],
            trust_domain: "cluster.local".into(),
            workload_lifetime: lifetime,
        };
        let ids = Identities::load(&options, Default::default()).unwrap();
        (dir, ids)
    }

    #[test]
    fn only_the_proven_identity_in_its_own_namespace_gets_certificates() {
        let (_dir, ids) = identities(Duration::from_secs(3600));
        let cert = ids
            .ca
            .issue_workload(
                "spiffe://cluster.local/ns/shop/sa/cart",
                Duration::from_secs(60),
            )
            .unwrap();
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(
            ids.certificates_for("n", "shop", Some(&der)),
            Certificates::Ads {
                service_account: "cart".into()
            }
        );
        assert_eq!(
            ids.certificates_for("n", "bank", Some(&der)),
            Certificates::None
        );
        assert_eq!(ids.certificates_for("n", "shop", None), Certificates::None);
        assert_eq!(ids.metrics.unproven.get(), 2);
    }

    #[test]
    fn certificates_are_reused_until_half_their_lifetime_then_renewed() {
        let (_dir, ids) = identities(Duration::from_secs(100));
        let t0 = SystemTime::now();
        let first = ids.current("shop", "cart", t0).unwrap();
        let again = ids
            .current("shop", "cart", t0 + Duration::from_secs(10))
            .unwrap();
        assert_eq!(first.chain_pem, again.chain_pem);
        assert!(!ids.any_due(t0 + Duration::from_secs(10)));
        assert!(ids.any_due(t0 + Duration::from_secs(51)));
        let renewed = ids
            .current("shop", "cart", t0 + Duration::from_secs(51))
            .unwrap();
        assert_ne!(first.chain_pem, renewed.chain_pem);
        let mut w = ResourceWriter::for_type(shmesh_cache::ResourceType::Secret);
        ids.write_secrets("shop", "cart", &mut w).unwrap();
        let secrets = w.finish_by_name();
        let names: Vec<&str> = secrets.names().collect();
        assert_eq!(names, vec!["ROOTCA", "default"]);
    }
}
