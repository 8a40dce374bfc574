//! Kubernetes `Secret` (core/v1): the certificates a DestinationRule's
//! `credentialName` names, served to proxies of the Secret's namespace as
//! the SDS secrets `kubernetes://NAME` (certificate and key) and
//! `kubernetes://NAME-cacert` (the CA that verifies the peer).
//!
//! Two layouts are read, as Istio reads them: a TLS Secret (`tls.crt`,
//! `tls.key`, `ca.crt`, `ca.crl`) or a generic one (`cert`, `key`, `cacert`,
//! `crl`). The CA may also come from a Secret of its own named `NAME-cacert`.
//! Nothing here prints a Secret's data: its `Debug` shows key names only.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::{Deserialize, Deserializer};

use crate::meta::ObjectMeta;
use crate::validate::Validator;

#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Secret {
    pub metadata: ObjectMeta,
    #[serde(rename = "type")]
    pub secret_type: Option<String>,
    /// Values as the API gives them: base64.
    #[serde(deserialize_with = "base64_values")]
    pub data: BTreeMap<String, Vec<u8>>,
    /// Values as text (a file may give them so; the API folds them into `data`).
    pub string_data: BTreeMap<String, String>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("metadata", &self.metadata)
            .field("type", &self.secret_type)
            .field("keys", &self.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What a Secret holds for TLS, by Istio's key names.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TlsMaterial {
    pub certificate: Option<Vec<u8>>,
    pub private_key: Option<Vec<u8>>,
    pub ca_certificate: Option<Vec<u8>>,
    pub crl: Option<Vec<u8>>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("certificate", &self.certificate.is_some())
            .field("private_key", &self.private_key.is_some())
            .field("ca_certificate", &self.ca_certificate.is_some())
            .field("crl", &self.crl.is_some())
            .finish()
    }
}

impl Secret {
    fn keys(&self) -> impl Iterator<Item = &str> {
        self.data
            .keys()
            .chain(self.string_data.keys())
            .map(String::as_str)
    }

    /// The value of `key`, from `stringData` first (as the API merges them).
    fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.string_data
            .get(key)
            .map(|s| s.as_bytes().to_vec())
            .or_else(|| self.data.get(key).cloned())
            .filter(|v| !v.is_empty())
    }

    /// The certificate, key, CA and CRL, in whichever layout the Secret uses
    /// (the TLS one when it has `tls.crt`).
    pub fn tls_material(&self) -> TlsMaterial {
        let tls_layout = self.value("tls.crt").is_some() || self.value("tls.key").is_some();
        let (cert, key, ca, crl) = if tls_layout {
            ("tls.crt", "tls.key", "ca.crt", "ca.crl")
        } else {
            ("cert", "key", "cacert", "crl")
        };
        TlsMaterial {
            certificate: self.value(cert),
            private_key: self.value(key),
            // A TLS Secret's CA may still use the generic key, and the other way round.
            ca_certificate: self
                .value(ca)
                .or_else(|| self.value(if tls_layout { "cacert" } else { "ca.crt" })),
            crl: self.value(crl),
        }
    }
}

fn base64_values<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
    let text: BTreeMap<String, Option<String>> = BTreeMap::deserialize(d)?;
    text.into_iter()
        .map(|(k, v)| {
            let v = v.unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.trim().as_bytes())
                .map_err(|e| serde::de::Error::custom(format!("data.{k}: not base64: {e}")))?;
            Ok((k, bytes))
        })
        .collect()
}

impl Validator {
    /// A certificate without its key (or the other way round) cannot be used.
    pub(crate) fn secret(&mut self, secret: &Secret) {
        let m = secret.tls_material();
        let (cert, key) = if secret.value("tls.crt").is_some() || secret.value("tls.key").is_some()
        {
            ("tls.crt", "tls.key")
        } else {
            ("cert", "key")
        };
        match (&m.certificate, &m.private_key) {
            (Some(_), None) => self.err(
                format!("data.{key}"),
                format!("{cert} is given without {key}"),
            ),
            (None, Some(_)) => self.err(
                format!("data.{cert}"),
                format!("{key} is given without {cert}"),
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(yaml: &str) -> Secret {
        let value: serde_json::Value = serde_norway::from_str(yaml).unwrap();
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn reads_both_layouts_and_prints_no_data() {
        let tls = secret("metadata: {name: c, namespace: shop}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: Q0VSVA==\n  tls.key: S0VZ\n  ca.crt: Q0E=\n");
        let m = tls.tls_material();
        assert_eq!(m.certificate.as_deref(), Some(&b"CERT"[..]));
        assert_eq!(m.private_key.as_deref(), Some(&b"KEY"[..]));
        assert_eq!(m.ca_certificate.as_deref(), Some(&b"CA"[..]));
        let generic =
            secret("metadata: {name: c}\nstringData: {cert: CERT, key: KEY, cacert: CA}\n");
        assert_eq!(generic.tls_material(), m);
        let printed = format!("{tls:?} {m:?}");
        assert!(
            !printed.contains("CERT") && !printed.contains("Q0VSVA"),
            "{printed}"
        );
        assert!(printed.contains("tls.crt"), "{printed}");
    }

    #[test]
    fn bad_base64_names_the_key() {
        let value: serde_json::Value =
            serde_norway::from_str("metadata: {name: c}\ndata: {tls.crt: '%%%'}\n").unwrap();
        let err = serde_json::from_value::<Secret>(value)
            .unwrap_err()
            .to_string();
        assert!(err.contains("data.tls.crt"), "{err}");
    }
}
