//! shmesh's certificate authority, for plain Envoys (no Istio agent).
//!
//! The root (certificate and key) comes from files the operator keeps
//! (`shmesh ca init` makes one); more roots may be trusted beside it while a
//! new root is rolled in. From it shmesh signs:
//! - short-lived workload certificates for SPIFFE identities, served as the
//!   SDS secret `default` to proxies that proved they are that identity;
//! - the certificate of its own xDS-over-TLS listener;
//! - the longer-lived bootstrap credentials `shmesh bootstrap` writes, with
//!   which a proxy proves its identity on that listener.
//!
//! Keys never leave this module as text except into files and SDS secrets;
//! nothing here logs a certificate or a key.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;

/// Why the CA cannot be loaded or cannot sign.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file holds no usable certificate or key.
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    /// Signing failed (an invalid name, a key that cannot sign).
    #[error("signing a certificate for {subject}: {source}")]
    Sign {
        subject: String,
        source: rcgen::Error,
    },
}

/// A certificate with its key, as PEM, and when it expires.
#[derive(Clone)]
pub struct Issued {
    /// The certificate, then the issuer's (the root).
    pub chain_pem: String,
    pub key_pem: String,
    pub not_after: SystemTime,
    pub issued_at: SystemTime,
}

impl std::fmt::Debug for Issued {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
    /// Every root proxies trust: the signing root first, then the others.
    trusted_pem: String,
    trusted_der: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trusted_roots", &self.trusted_der.len())
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::File {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path, reason: impl ToString) -> CaError {
    CaError::Pem {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The certificates in a PEM text, as DER.
fn certificates(path: &Path, text: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

impl Ca {
    /// The CA of root certificate `cert` and its key `key`, trusting the
    /// roots in `also_trusted` too (an old root while proxies move to a new
    /// one, or a new one before it signs).
    pub fn load(cert: &Path, key: &Path, also_trusted: &[PathBuf]) -> Result<Ca, CaError> {
        let root_pem = read(cert)?;
        let root_der = certificates(cert, &root_pem)?;
        let key_pair = KeyPair::from_pem(&read(key)?).map_err(|e| pem_error(key, e))?;
        let issuer =
            Issuer::from_ca_cert_der(&root_der[0], key_pair).map_err(|e| pem_error(cert, e))?;
        let mut trusted_pem = root_pem.trim_end().to_string();
        trusted_pem.push('\n');
        let mut trusted_der = root_der;
        for path in also_trusted {
            let text = read(path)?;
            trusted_der.extend(certificates(path, &text)?);
            trusted_pem.push_str(text.trim_end());
            trusted_pem.push('\n');
        }
        Ok(Ca {
            issuer,
            root_pem,
            trusted_pem,
            trusted_der,
        })
    }

    /// A new self-signed root, written as `root-cert.pem` and `root-key.pem`
    /// (readable by the owner only) into `dir`.
    pub fn create_root(dir: &Path, organization: &str) -> Result<(), CaError> {
        let key = KeyPair::generate().map_err(|source| CaError::Sign {
            subject: "root".into(),
            source,
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
        params
            .distinguished_name
            .push(DnType::CommonName, "shmesh root CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(10 * 365 * 86400)).into();
        let cert = params.self_signed(&key).map_err(|source| CaError::Sign {
            subject: "root".into(),
            source,
        })?;
        std::fs::create_dir_all(dir).map_err(|source| CaError::File {
            path: dir.to_path_buf(),
            source,
        })?;
        write_private(&dir.join("root-key.pem"), &key.serialize_pem())?;
        let cert_path = dir.join("root-cert.pem");
        std::fs::write(&cert_path, cert.pem()).map_err(|source| CaError::File {
            path: cert_path,
            source,
        })
    }

    /// The roots proxies trust, as PEM (the SDS secret `ROOTCA`).
    pub fn trusted_pem(&self) -> &str {
        &self.trusted_pem
    }

    /// The roots proxies trust, as DER (to verify their client certificates).
    pub fn trusted_der(&self) -> &[CertificateDer<'static>] {
        &self.trusted_der
    }

    /// A certificate for workload identity `spiffe_id`, valid for `lifetime`
    /// (and from a minute before now, for clocks a little behind).
    pub fn issue_workload(&self, spiffe_id: &str, lifetime: Duration) -> Result<Issued, CaError> {
        let uri = rcgen::string::Ia5String::try_from(spiffe_id).map_err(|e| CaError::Sign {
            subject: spiffe_id.to_string(),
            source: e,
        })?;
        self.issue(spiffe_id, vec![SanType::URI(uri)], lifetime)
    }

    /// A server certificate for shmesh's own TLS listener under `names`.
    pub fn issue_server(&self, names: &[String], lifetime: Duration) -> Result<Issued, CaError> {
        let mut sans = Vec::new();
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => {
                    SanType::DnsName(name.as_str().try_into().map_err(|e: rcgen::Error| {
                        CaError::Sign {
                            subject: name.clone(),
                            source: e,
                        }
                    })?)
                }
            };
            sans.push(san);
        }
        self.issue("shmesh", sans, lifetime)
    }

    fn issue(
        &self,
        subject: &str,
        sans: Vec<SanType>,
        lifetime: Duration,
    ) -> Result<Issued, CaError> {
        let sign_error = |source| CaError::Sign {
            subject: subject.to_string(),
            source,
        };
        let key = KeyPair::generate().map_err(sign_error)?;
        let now = SystemTime::now();
        let cert = leaf_params(sans, now, lifetime)
            .signed_by(&key, &self.issuer)
            .map_err(sign_error)?;
        let mut chain_pem = cert.pem();
        chain_pem.push_str(&self.root_pem);
        Ok(Issued {
            chain_pem,
            key_pem: key.serialize_pem(),
            not_after: now + lifetime,
            issued_at: now,
        })
    }

    /// Signs a certificate signing request (PEM) for workload identity
    /// `spiffe_id`, as Istio's CA API does: the request gives the public key
    /// (its signature proves the caller holds the private one) and may name
    /// only that identity; the names and the lifetime are the CA's. Returns
    /// the certificate, then the signing root, as PEM.
    pub fn sign_request(
        &self,
        csr_pem: &str,
        spiffe_id: &str,
        lifetime: Duration,
    ) -> Result<Vec<String>, CsrError> {
        let request = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CsrError::Invalid(e.to_string()))?;
        for san in &request.params.subject_alt_names {
            let named = match san {
                SanType::URI(uri) => uri.as_str().to_string(),
                SanType::DnsName(name) => name.as_str().to_string(),
                other => format!("{other:?}"),
            };
            if named != spiffe_id {
                return Err(CsrError::OtherIdentity(named));
            }
        }
        let uri = rcgen::string::Ia5String::try_from(spiffe_id)
            .map_err(|e| CsrError::Invalid(e.to_string()))?;
        let cert = leaf_params(vec![SanType::URI(uri)], SystemTime::now(), lifetime)
            .signed_by(&request.public_key, &self.issuer)
            .map_err(|e| CsrError::Invalid(e.to_string()))?;
        Ok(vec![cert.pem(), self.root_pem.clone()])
    }
}

/// Why a certificate signing request is refused.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// Not a signing request, a bad signature, an unsupported key or extension.
    #[error("invalid certificate signing request: {0}")]
    Invalid(String),
    /// The request names an identity the caller did not prove.
    #[error("the request names {0}, not the caller's identity")]
    OtherIdentity(String),
}

/// A leaf certificate for `sans`, for servers and clients alike, valid for
/// `lifetime` from `now` (and from a minute before, for clocks a little
/// behind).
fn leaf_params(sans: Vec<SanType>, now: SystemTime, lifetime: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + lifetime).into();
    params
}

/// Writes a key file only its owner can read.
pub fn write_private(path: &Path, text: &str) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let file_error = |source| CaError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(file_error)?;
    file.write_all(text.as_bytes()).map_err(file_error)
}

/// The SPIFFE identity (URI SAN `spiffe://...`) of a certificate.
pub fn spiffe_id_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let sans = cert.subject_alternative_name().ok()??;
    sans.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
            Some(uri.to_string())
        }
        _ => None,
    })
}

/// `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT` taken apart:
/// (trust domain, namespace, service account).
pub fn parse_spiffe_id(id: &str) -> Option<(&str, &str, &str)> {
    let rest = id.strip_prefix("spiffe://")?;
    let (domain, path) = rest.split_once('/')?;
    let mut parts = path.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("ns"), Some(ns), Some("sa"), Some(sa), None) if !ns.is_empty() && !sa.is_empty() => {
            Some((domain, ns, sa))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_workload_certificates_carrying_their_spiffe_id() {
        let dir = tempfile::tempdir().unwrap();
        Ca::create_root(dir.path(), "test").unwrap();
        let mode = std::fs::metadata(dir.path().join("root-key.pem")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        let ca = Ca::load(
            &dir.path().join("root-cert.pem"),
            &dir.path().join("root-key.pem"),
            &[],
        )
        .unwrap();
        let id = "spiffe://cluster.local/ns/shop/sa/cart";
        let issued = ca.issue_workload(id, Duration::from_secs(600)).unwrap();
        let chain = certificates(Path::new("chain"), &issued.chain_pem).unwrap();
        assert_eq!(chain.len(), 2, "leaf, then root");
        assert_eq!(spiffe_id_of(&chain[0]).as_deref(), Some(id));
        assert_eq!(chain[1], ca.trusted_der()[0]);
        assert!(format!("{issued:?}").find("PRIVATE").is_none());
        assert_eq!(parse_spiffe_id(id), Some(("cluster.local", "shop", "cart")));
        assert_eq!(parse_spiffe_id("spiffe://td/ns/shop"), None);
    }

    #[test]
    fn more_roots_can_be_trusted_beside_the_signing_one() {
        let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        Ca::create_root(old.path(), "old").unwrap();
        Ca::create_root(new.path(), "new").unwrap();
        let ca = Ca::load(
            &new.path().join("root-cert.pem"),
            &new.path().join("root-key.pem"),
            &[old.path().join("root-cert.pem")],
        )
        .unwrap();
        assert_eq!(ca.trusted_der().len(), 2);
        assert_eq!(ca.trusted_pem().matches("BEGIN CERTIFICATE").count(), 2);
        let missing = Ca::load(
            &new.path().join("nope.pem"),
            &new.path().join("root-key.pem"),
            &[],
        );
        assert!(missing.unwrap_err().to_string().contains("nope.pem"));
    }
}
