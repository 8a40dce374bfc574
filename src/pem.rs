//! PEM text to what a rustls server presents: a certificate chain and its
//! private key. The xDS TLS listener (its certificate issued by the CA) and
//! the admission webhook (its certificate read from files) both read theirs
//! here. Errors say what is missing or malformed, never the text itself.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why PEM text is not a usable chain or key.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The text holds no `CERTIFICATE` block.
    #[error("no PEM certificate")]
    NoCertificate,
    /// A `CERTIFICATE` block that does not decode.
    #[error("a certificate does not decode: {0}")]
    Certificate(rustls_pki_types::pem::Error),
    /// No private key block (PKCS#8, PKCS#1 or SEC1), or one that does not decode.
    #[error("no usable PEM private key: {0}")]
    Key(rustls_pki_types::pem::Error),
}

/// The certificates of `chain_pem`, leaf first, and the first private key
/// of `key_pem`.
pub fn chain_and_key(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PemError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(PemError::Certificate)?;
    if chain.is_empty() {
        return Err(PemError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(PemError::Key)?;
    Ok((chain, key))
}
