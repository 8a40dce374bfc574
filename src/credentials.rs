//! The SDS secrets of Kubernetes Secrets that DestinationRules and Gateways
//! name by `credentialName`, for the proxies of the Secrets' own namespace.
//!
//! The model holds the Secrets (from files, or watched in Kubernetes mode
//! when shmesh has a CA) and says which credential names a proxy's rules
//! use (`Model::credential_names`). A proxy gets them only after it proved
//! an identity in that namespace (`Certificates::Ads`): a Secret's key is
//! worth as much as a workload certificate. Each credential `NAME` becomes
//! `kubernetes://NAME` (certificate chain and key) and
//! `kubernetes://NAME-cacert` (the CA, from the Secret itself or from a
//! Secret named `NAME-cacert`), the names Istio's translation asks for. A
//! gateway's credential `NAMESPACE/NAME` (a Gateway API certificate of
//! another namespace) is that namespace's Secret, given only while a
//! ReferenceGrant there lets the gateway's Gateways use it.
//! Nothing here logs a Secret's data.

use envoy_types::pb::envoy::config::core::v3 as core;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3 as tls;

use shmesh_api::objects::TlsMaterial;
use shmesh_cache::ResourceWriter;
use shmesh_model::Model;
use shmesh_translate::tls::{credential_secret_names, CREDENTIAL_CA_SUFFIX};
use shmesh_translate::{ListenerMode, ProxyView};

/// Writes the SDS secrets of every credential the rules selecting the proxy
/// of `view` name (and, for a gateway proxy, the Gateways picking it), from
/// the Secrets of its namespace, as far as they exist. Returns the names no
/// Secret was found for.
pub fn write_secrets(model: &Model, view: &ProxyView, w: &mut ResourceWriter) -> Vec<String> {
    let namespace = view.namespace.as_str();
    let mut missing = Vec::new();
    let mut names = model.credential_names(namespace, &view.labels);
    if view.mode == ListenerMode::Router {
        names.extend(shmesh_translate::gateway::credential_names(model, view));
    }
    for name in names {
        // `NAMESPACE/NAME`: another namespace's Secret, which a gateway may
        // use where a ReferenceGrant of that namespace lets its Gateways.
        let (secret_ns, secret_name) = match name.split_once('/') {
            Some((ns, n)) if view.mode == ListenerMode::Router => {
                if !model.secret_granted(namespace, ns, n) {
                    missing.push(name);
                    continue;
                }
                (ns, n)
            }
            Some(_) => {
                missing.push(name);
                continue;
            }
            None => (namespace, name.as_str()),
        };
        let own = model
            .secret(secret_ns, secret_name)
            .map(|s| s.tls_material());
        let ca_secret = model
            .secret(secret_ns, &format!("{secret_name}{CREDENTIAL_CA_SUFFIX}"))
            .map(|s| s.tls_material());
        let (cert_name, ca_name) = credential_secret_names(&name);
        let mut found = false;
        if let Some(secret) = own.as_ref().and_then(|m| certificate(&cert_name, m)) {
            w.encode(cert_name, &secret);
            found = true;
        }
        let ca = own
            .as_ref()
            .filter(|m| m.ca_certificate.is_some())
            .or(ca_secret.as_ref());
        if let Some(secret) = ca.and_then(|m| validation(&ca_name, m)) {
            w.encode(ca_name, &secret);
            found = true;
        }
        if !found {
            missing.push(name);
        }
    }
    missing
}

fn inline(bytes: &[u8]) -> core::DataSource {
    core::DataSource {
        specifier: Some(core::data_source::Specifier::InlineBytes(bytes.to_vec())),
        ..Default::default()
    }
}

fn certificate(name: &str, m: &TlsMaterial) -> Option<tls::Secret> {
    let (Some(cert), Some(key)) = (&m.certificate, &m.private_key) else {
        return None;
    };
    Some(tls::Secret {
        name: name.to_string(),
        r#type: Some(tls::secret::Type::TlsCertificate(tls::TlsCertificate {
            certificate_chain: Some(inline(cert)),
            private_key: Some(inline(key)),
            ..Default::default()
        })),
    })
}

fn validation(name: &str, m: &TlsMaterial) -> Option<tls::Secret> {
    let ca = m
        .ca_certificate
        .as_ref()
        .or(m.certificate.as_ref().filter(|_| m.private_key.is_none()))?;
    Some(tls::Secret {
        name: name.to_string(),
        r#type: Some(tls::secret::Type::ValidationContext(
            tls::CertificateValidationContext {
                trusted_ca: Some(inline(ca)),
                crl: m.crl.as_deref().map(inline),
                ..Default::default()
            },
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use shmesh_api::parse::{parse_text, Outcome};
    use shmesh_cache::ResourceType;
    use shmesh_model::Change;

    fn model(yaml: &str) -> Model {
        let mut model = Model::new();
        let changes = parse_text("t.yaml", yaml).into_iter().map(|o| match o {
            Outcome::Object(p) => Change::Upsert(p.key, p.object, p.origin),
            other => panic!("not valid: {other:?}"),
        });
        model.apply(changes);
        model
    }

    const RULE: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: bank, namespace: shop}\nspec:\n  host: bank.example.com\n  workloadSelector: {matchLabels: {app: cart}}\n  trafficPolicy: {tls: {mode: MUTUAL, credentialName: bank-client}}\n---\n";

    fn secrets(model: &Model, labels: &[(&str, &str)]) -> (Vec<tls::Secret>, Vec<String>) {
        let view = ProxyView {
            namespace: "shop".into(),
            mode: ListenerMode::Capture,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            certificates: Default::default(),
            vhds: false,
        };
        let mut w = ResourceWriter::for_type(ResourceType::Secret);
        let missing = write_secrets(model, &view, &mut w);
        let set = w.finish_by_name();
        let out = set
            .names()
            .map(|n| tls::Secret::decode(set.get(n).unwrap().body.as_ref()).unwrap())
            .collect();
        (out, missing)
    }

    #[test]
    fn a_selected_proxy_gets_the_certificate_and_the_ca() {
        let m = model(&format!("{RULE}apiVersion: v1\nkind: Secret\nmetadata: {{name: bank-client, namespace: shop}}\ntype: kubernetes.io/tls\nstringData: {{tls.crt: CERT, tls.key: KEY, ca.crt: CA}}\n"));
        let (got, missing) = secrets(&m, &[("app", "cart")]);
        assert!(missing.is_empty());
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kubernetes://bank-client",
                "kubernetes://bank-client-cacert"
            ]
        );
        match &got[0].r#type {
            Some(tls::secret::Type::TlsCertificate(c)) => {
                assert_eq!(c.certificate_chain, Some(inline(b"CERT")));
                assert_eq!(c.private_key, Some(inline(b"KEY")));
            }
            other => panic!("{other:?}"),
        }
        match &got[1].r#type {
            Some(tls::secret::Type::ValidationContext(v)) => {
                assert_eq!(v.trusted_ca, Some(inline(b"CA")))
            }
            other => panic!("{other:?}"),
        }
        // Another workload of the namespace is not selected: nothing.
        assert!(secrets(&m, &[("app", "web")]).0.is_empty());
    }

    #[test]
    fn the_ca_may_come_from_its_own_secret_and_a_missing_secret_is_named() {
        let m = model(&format!("{RULE}apiVersion: v1\nkind: Secret\nmetadata: {{name: bank-client-cacert, namespace: shop}}\nstringData: {{cacert: CA}}\n"));
        let (got, missing) = secrets(&m, &[("app", "cart")]);
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["kubernetes://bank-client-cacert"]);
        assert!(missing.is_empty());
        let (got, missing) = secrets(&model(RULE), &[("app", "cart")]);
        assert!(got.is_empty());
        assert_eq!(missing, ["bank-client"]);
    }
}
