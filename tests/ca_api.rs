//! Istio's CA API (`IstioCertificateService/CreateCertificate`) on shmesh's
//! xDS TLS listener, called by a real gRPC client over TLS as an Istio agent
//! calls istiod: a certificate only for the identity the caller proved,
//! with its client certificate or, in Kubernetes mode, with a
//! service-account token the API server's TokenReview accepts. The same
//! token proves a sidecar's identity on its ADS stream over TLS.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use shmesh::ca_service::{IstioCertificateRequest, IstioCertificateResponse};
use tokio::net::TcpStream;
use tokio_stream::StreamExt;
use tonic::codegen::http;
use tonic::Code;

use common::pod_network::ca_init;
use common::{eventually, printed_bootstrap, ApiServer, Shmesh};

const CREATE: &str = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

/// Connects to `addr` over TLS, trusting `root` and presenting `client`
/// (certificate chain and key, PEM) when given.
#[derive(Clone)]
struct TlsConnect {
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl TlsConnect {
    fn new(addr: SocketAddr, root: &str, client: Option<(String, String)>) -> TlsConnect {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(root.as_bytes()) {
            roots.add(cert.expect("root PEM")).expect("add root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let mut config = match client {
            Some((chain, key)) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(chain.as_bytes())
                        .collect::<Result<_, _>>()
                        .expect("client chain");
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client certificate")
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        TlsConnect {
            addr,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }
}

impl tonic::codegen::Service<http::Uri> for TlsConnect {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let (addr, tls) = (self.addr, self.tls.clone());
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            let name = ServerName::IpAddress(addr.ip().into());
            Ok(TokioIo::new(tls.connect(name, tcp).await?))
        })
    }
}

/// One `CreateCertificate` call: the certificate chain, or the status.
fn create_certificate(
    connect: TlsConnect,
    bearer: Option<&str>,
    csr: String,
    validity: i64,
) -> Result<Vec<String>, tonic::Status> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let channel = tonic::transport::Endpoint::from_static("http://ca.shmesh")
            .connect_with_connector(connect)
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connect: {e}")))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut request = tonic::Request::new(IstioCertificateRequest {
            csr,
            validity_duration: validity,
            metadata: None,
        });
        if let Some(token) = bearer {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        let response: tonic::Response<IstioCertificateResponse> = grpc
            .unary(
                request,
                http::uri::PathAndQuery::from_static(CREATE),
                tonic_prost::ProstCodec::default(),
            )
            .await?;
        Ok(response.into_inner().cert_chain)
    })
}

/// A signing request for `uri` with a fresh key.
fn csr(uri: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().expect("uri"))];
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("csr pem")
}

/// The leaf's URI SAN and lifetime in seconds, after checking that `root`
/// signed it.
fn leaf(chain: &[String], root: &str) -> (String, i64) {
    let der = |pem: &str| {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("certificate PEM")
            .to_vec()
    };
    let (leaf_der, root_der) = (der(&chain[0]), der(root));
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf_der).expect("leaf");
    let (_, issuer) = x509_parser::parse_x509_certificate(&root_der).expect("root");
    cert.verify_signature(Some(issuer.public_key()))
        .expect("the root signed the certificate");
    let uri = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                _ => None,
            })
        })
        .unwrap_or_default();
    let validity = cert.validity();
    (
        uri,
        validity.not_after.timestamp() - validity.not_before.timestamp(),
    )
}

/// Credentials `shmesh bootstrap` writes for service account `account` of
/// `shop`: (certificate chain, key).
fn bootstrap_credentials(ca: &Path, account: &str, tls: SocketAddr) -> (String, String) {
    let dir = tempfile::tempdir().expect("credentials dir");
    printed_bootstrap(
        std::process::Command::new(common::shmesh_binary())
            .args([
                "bootstrap",
                "--node",
                "sidecar~10.0.0.1~a.shop~shop.svc.cluster.local",
            ])
            .args(["--namespace", "shop", "--xds-addr", &tls.to_string()])
            .arg("--credentials-dir")
            .arg(dir.path())
            .args(["--service-account", account])
            .arg("--ca-cert")
            .arg(ca.join("root-cert.pem"))
            .arg("--ca-key")
            .arg(ca.join("root-key.pem"))
            .args(["--xds-tls-name", "127.0.0.1"]),
    );
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).expect("credential file");
    (read("cert-chain.pem"), read("key.pem"))
}

fn ca_flags(ca: &Path) -> Vec<String> {
    let path = |f: &str| ca.join(f).to_str().expect("utf-8 path").to_string();
    vec![
        "--ca-cert".into(),
        path("root-cert.pem"),
        "--ca-key".into(),
        path("root-key.pem"),
        "--xds-tls-addr".into(),
        "127.0.0.1:0".into(),
        "--xds-tls-name".into(),
        "127.0.0.1".into(),
    ]
}

const A: &str = "spiffe://cluster.local/ns/shop/sa/a";

/// shmesh in Kubernetes mode with a CA, against a fake API server whose
/// TokenReview accepts `tokens` (token, namespace, account, audience).
struct KubernetesCa {
    api: ApiServer,
    shmesh: Shmesh,
    root: String,
    _ca: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl KubernetesCa {
    fn start(tokens: &[(&str, &str, &str, &str)]) -> KubernetesCa {
        let ca = tempfile::tempdir().expect("CA dir");
        ca_init(ca.path());
        let root = std::fs::read_to_string(ca.path().join("root-cert.pem")).expect("root");
        let api = ApiServer::start();
        for (token, namespace, account, audience) in tokens {
            api.add_token(token, namespace, account, &[audience]);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        api.kubeconfig(&kubeconfig);
        let mut args = vec!["--kubernetes".to_string()];
        args.extend(ca_flags(ca.path()));
        let shmesh = Shmesh::spawn(
            &args,
            &[
                ("KUBECONFIG", kubeconfig.to_str().expect("utf-8 path")),
                ("NO_PROXY", "127.0.0.1,localhost"),
            ],
        );
        shmesh.wait_ready();
        KubernetesCa {
            api,
            shmesh,
            root,
            _ca: ca,
            _dir: dir,
        }
    }

    /// A TLS connection to the xDS TLS listener presenting no certificate.
    fn anonymous(&self) -> TlsConnect {
        let tls = self.shmesh.xds_tls.expect("xDS TLS listener");
        TlsConnect::new(tls, &self.root, None)
    }
}

#[test]
fn a_client_certificate_proves_the_identity_it_gets_a_certificate_for() {
    let ca = tempfile::tempdir().expect("CA dir");
    ca_init(ca.path());
    let root = std::fs::read_to_string(ca.path().join("root-cert.pem")).expect("root");
    let config = tempfile::tempdir().expect("config dir");
    let flags = ca_flags(ca.path());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let shmesh = Shmesh::start_with(config.path(), &flags);
    let tls = shmesh.xds_tls.expect("xDS TLS listener");
    let proven = TlsConnect::new(tls, &root, Some(bootstrap_credentials(ca.path(), "a", tls)));

    let chain = create_certificate(proven.clone(), None, csr(A), 3600).expect("signed");
    assert_eq!(chain.len(), 2, "certificate then root");
    assert_eq!(chain[1].trim(), root.trim());
    let (uri, lifetime) = leaf(&chain, &root);
    assert_eq!(uri, A);
    // An hour as asked, from a minute before now.
    assert_eq!(lifetime, 3600 + 60);
    // Never longer than the CA's workload lifetime (24 h).
    let chain = create_certificate(proven.clone(), None, csr(A), 10 * 365 * 86400).expect("signed");
    assert_eq!(leaf(&chain, &root).1, 86400 + 60);

    // Another identity than the proven one is refused.
    let other = create_certificate(
        proven.clone(),
        None,
        csr("spiffe://cluster.local/ns/shop/sa/b"),
        0,
    )
    .expect_err("a certificate for b");
    assert_eq!(other.code(), Code::InvalidArgument, "{other:?}");
    // Garbage is refused.
    let garbage = create_certificate(proven, None, "not a CSR".into(), 0).expect_err("garbage");
    assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");

    // No client certificate: a token cannot be checked without Kubernetes,
    // and nothing at all proves nothing.
    let anonymous = TlsConnect::new(tls, &root, None);
    for bearer in [Some("a-made-up-token"), None] {
        let refused = create_certificate(anonymous.clone(), bearer, csr(A), 0)
            .expect_err("an unauthenticated caller got a certificate");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    assert_eq!(shmesh.metric("shmesh_ca_requests_signed_total"), 2);
    assert_eq!(shmesh.metric("shmesh_ca_requests_refused_total"), 4);
    let log = shmesh.log();
    assert!(!log.contains("a-made-up-token"), "a token was logged");
    assert!(!log.contains("PRIVATE KEY") && !log.contains("BEGIN CERTIFICATE"));
}

#[test]
fn in_kubernetes_mode_a_service_account_token_is_checked_with_token_review() {
    let rig = KubernetesCa::start(&[
        ("token-of-a", "shop", "a", "istio-ca"),
        ("token-for-another-audience", "shop", "b", "vault"),
    ]);
    let (api, shmesh, root) = (&rig.api, &rig.shmesh, &rig.root);
    let anonymous = rig.anonymous();

    let chain = create_certificate(anonymous.clone(), Some("token-of-a"), csr(A), 0)
        .expect("a's token gets a's certificate");
    assert_eq!(leaf(&chain, root).0, A);
    for bad in ["not-a-token", "token-for-another-audience"] {
        let refused = create_certificate(anonymous.clone(), Some(bad), csr(A), 0)
            .expect_err("a bad token got a certificate");
        assert_eq!(refused.code(), Code::Unauthenticated, "{bad}: {refused:?}");
    }
    // A's token does not get b's certificate.
    let other = create_certificate(
        anonymous,
        Some("token-of-a"),
        csr("spiffe://cluster.local/ns/shop/sa/b"),
        0,
    )
    .expect_err("a certificate for b");
    assert_eq!(other.code(), Code::InvalidArgument);
    assert!(api
        .token_reviews()
        .iter()
        .all(|audiences| audiences == &["istio-ca".to_string()]));
    // a's token was reviewed once: the answer is reused.
    assert_eq!(api.token_reviews().len(), 3);
    assert!(!shmesh.log().contains("token-of-a"), "a token was logged");
}

const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// A rule that gives pods `app: a` of shop a client certificate from a Secret.
const CREDENTIAL: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: bank, namespace: shop}\nspec:\n  host: bank.example.com\n  workloadSelector: {matchLabels: {app: a}}\n  trafficPolicy: {tls: {mode: MUTUAL, credentialName: bank-client}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: bank-client, namespace: shop}\ntype: kubernetes.io/tls\ndata: {tls.crt: Q0VSVA==, tls.key: S0VZ, ca.crt: Q0E=}\n";

/// The names of the SDS secrets a capture sidecar of `shop` labelled
/// `app: a` gets on an ADS stream opened over `connect` with `token`, when
/// it asks for `default`, `ROOTCA` and `more`.
fn secrets_over_ads(
    connect: TlsConnect,
    token: Option<&str>,
    pod: &str,
    more: &[&str],
) -> Vec<String> {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let channel = tonic::transport::Endpoint::from_static("http://xds.shmesh")
            .connect_with_connector(connect)
            .await
            .expect("connect over TLS");
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
        let value = |kind| Value { kind: Some(kind) };
        let labels = Struct {
            fields: [("app".to_string(), value(Kind::StringValue("a".into())))].into(),
        };
        let node = Node {
            id: format!("sidecar~10.1.0.9~{pod}.shop~shop.svc.cluster.local"),
            cluster: "a.shop".into(),
            metadata: Some(Struct {
                fields: [("LABELS".to_string(), value(Kind::StructValue(labels)))].into(),
            }),
            ..Default::default()
        };
        let mut names = vec!["default".to_string(), "ROOTCA".to_string()];
        names.extend(more.iter().map(|n| n.to_string()));
        let first = DiscoveryRequest {
            node: Some(node),
            type_url: SECRET.into(),
            resource_names: names,
            ..Default::default()
        };
        let mut request =
            tonic::Request::new(tokio_stream::iter(vec![first]).chain(tokio_stream::pending()));
        if let Some(token) = token {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        let mut responses = client
            .stream_aggregated_resources(request)
            .await
            .expect("ADS stream")
            .into_inner();
        let response =
            tokio::time::timeout(std::time::Duration::from_secs(3), responses.message()).await;
        match response {
            Ok(Ok(Some(r))) => r
                .resources
                .iter()
                .map(|any| {
                    use prost::Message;
                    envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret::decode(
                        any.value.as_slice(),
                    )
                    .expect("secret")
                    .name
                })
                .collect(),
            _ => Vec::new(),
        }
    })
}

#[test]
fn in_kubernetes_mode_a_token_proves_a_sidecars_identity_on_its_ads_stream() {
    let rig = KubernetesCa::start(&[
        ("token-of-a", "shop", "a", "istio-ca"),
        ("token-of-bank", "bank", "teller", "istio-ca"),
    ]);
    let shmesh = &rig.shmesh;
    let anonymous = rig.anonymous();

    let mut got = secrets_over_ads(anonymous.clone(), Some("token-of-a"), "a-1", &[]);
    got.sort();
    assert_eq!(got, ["ROOTCA", "default"], "a's token proves a");
    // A bad token, a token of another namespace, or none: no certificate.
    for token in [Some("not-a-token"), Some("token-of-bank"), None] {
        let got = secrets_over_ads(anonymous.clone(), token, "a-2", &[]);
        assert!(got.is_empty(), "{token:?} got {got:?}");
    }

    // A DestinationRule's credentialName: the Secret, watched in the
    // cluster, goes to a (proven, selected) and to nobody unproven.
    rig.api.apply_yaml(CREDENTIAL);
    let wanted = [
        "kubernetes://bank-client",
        "kubernetes://bank-client-cacert",
    ];
    let mut got = Vec::new();
    eventually("a gets the Secret", || {
        got = secrets_over_ads(anonymous.clone(), Some("token-of-a"), "a-3", &wanted);
        got.sort();
        got.len() == 4
    });
    assert_eq!(got[2..], wanted, "{got:?}");
    for token in [Some("token-of-bank"), None] {
        let got = secrets_over_ads(anonymous.clone(), token, "a-4", &wanted);
        assert!(got.is_empty(), "{token:?} got {got:?}");
    }
    assert!(
        !shmesh.log().contains("S0VZ"),
        "the Secret's data was logged"
    );
    assert!(!shmesh.log().contains("token-of-a"), "a token was logged");
}

/// A gateway Envoy bootstrapped with `shmesh bootstrap --token-file` proves
/// its identity with its service-account token on its ADS stream (read by
/// Envoy from the file), so its Gateway's `credentialName` Secret, watched
/// in the cluster, reaches it over SDS and it serves HTTPS with it; so does
/// the certificate of a Gateway API Gateway that a ReferenceGrant lets it
/// take from another namespace.
#[test]
fn in_kubernetes_mode_a_gateway_proves_itself_with_its_token_file() {
    use common::{free_port, shmesh_binary, Envoy, Upstream};
    let rig = KubernetesCa::start(&[("token-of-ingress", "edge", "ingress", "istio-ca")]);
    let web = Upstream::start("127.0.0.71", "web");
    let server_ca = tempfile::tempdir().expect("CA dir");
    ca_init(server_ca.path());
    let ca = shmesh::ca::Ca::load(
        &server_ca.path().join("root-cert.pem"),
        &server_ca.path().join("root-key.pem"),
        &[],
    )
    .expect("CA");
    let cert = ca
        .issue_server(
            &["secure.example.com".to_string()],
            std::time::Duration::from_secs(3600),
        )
        .expect("certificate");
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let [port, api_port] = [(); 2].map(|_| free_port("127.0.0.1"));
    let api_cert = ca
        .issue_server(
            &["api.example.com".to_string()],
            std::time::Duration::from_secs(3600),
        )
        .expect("certificate");
    rig.api.apply_yaml(&format!(
        "apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: shop, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: {web_port}}}]
endpoints: [{{addresses: [127.0.0.71], conditions: {{ready: true}}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: public, namespace: edge}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: https, protocol: HTTPS}}
    bind: 127.0.0.1
    hosts: [shop/secure.example.com]
    tls: {{mode: SIMPLE, credentialName: secure-cert}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: secure, namespace: shop}}
spec:
  hosts: [secure.example.com]
  gateways: [edge/public]
  http: [{{route: [{{destination: {{host: web}}}}]}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: secure-cert, namespace: edge}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}",
        indent(&cert.chain_pem),
        indent(&cert.key_pem),
        web_port = web.addr().port(),
    ));
    // A Gateway API Gateway of edge whose certificate is a Secret of `certs`,
    // which a ReferenceGrant there lets edge's Gateways use.
    rig.api.apply_yaml(&format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: istio}}
spec: {{controllerName: istio.io/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: api, namespace: edge}}
spec:
  gatewayClassName: istio
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
  - name: https
    port: {api_port}
    protocol: HTTPS
    hostname: api.example.com
    tls: {{certificateRefs: [{{name: api-cert, namespace: certs}}]}}
    allowedRoutes: {{namespaces: {{from: All}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: api, namespace: shop}}
spec:
  parentRefs: [{{name: api, namespace: edge}}]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: edge-gateways, namespace: certs}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: edge}}]
  to: [{{group: '', kind: Secret, name: api-cert}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: api-cert, namespace: certs}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}",
        indent(&api_cert.chain_pem),
        indent(&api_cert.key_pem),
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("istio-token");
    std::fs::write(&token, "token-of-ingress").expect("token file");
    let root = dir.path().join("root-cert.pem");
    std::fs::write(&root, &rig.root).expect("root file");
    let tls = rig.shmesh.xds_tls.expect("xDS TLS listener");
    let bootstrap = printed_bootstrap(
        std::process::Command::new(shmesh_binary())
            .args([
                "bootstrap",
                "--node",
                "router~127.0.0.1~gateway-1.edge~edge.svc.cluster.local",
            ])
            .args(["--namespace", "edge", "--label", "istio=ingressgateway"])
            .args(["--label", "gateway.networking.k8s.io/gateway-name=api"])
            .args(["--admin-addr", "127.0.0.1:0", "--xds-tls-name", "127.0.0.1"])
            .args(["--prometheus-addr", "none"])
            .args(["--xds-addr", &tls.to_string()])
            .arg("--token-file")
            .arg(&token)
            .arg("--xds-root-cert")
            .arg(&root),
    );
    let envoy = Envoy::start(&bootstrap);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let served = envoy.wait_for_https(
        std::time::Duration::from_secs(30),
        addr,
        "secure.example.com",
        ca.trusted_pem(),
        "web",
    );
    if let Err(last) = served {
        panic!(
            "no HTTPS with the Secret's certificate: {last}
{}
{}",
            envoy.log(),
            rig.shmesh.log()
        );
    }
    let api: SocketAddr = format!("127.0.0.1:{api_port}").parse().expect("addr");
    let served = envoy.wait_for_https(
        std::time::Duration::from_secs(30),
        api,
        "api.example.com",
        ca.trusted_pem(),
        "web",
    );
    if let Err(last) = served {
        panic!(
            "no HTTPS with the granted Secret of another namespace: {last}
{}",
            rig.shmesh.log()
        );
    }
    assert!(
        !rig.shmesh.log().contains("token-of-ingress"),
        "a token was logged"
    );
}

/// The xDS TLS listener, too, closes a connection at its maximum age: the
/// ADS stream of a sidecar that proved its identity is served, then ends
/// with UNAVAILABLE once the age and its grace are over.
#[test]
fn the_tls_listener_closes_connections_at_their_maximum_age() {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use std::time::Duration;

    let ca = tempfile::tempdir().expect("CA dir");
    ca_init(ca.path());
    let root = std::fs::read_to_string(ca.path().join("root-cert.pem")).expect("root");
    let config = tempfile::tempdir().expect("config dir");
    let mut flags = ca_flags(ca.path());
    flags.extend(
        [
            "--max-connection-age",
            "300ms",
            "--max-connection-age-grace",
            "200ms",
        ]
        .map(String::from),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let shmesh = Shmesh::start_with(config.path(), &flags);
    let tls = shmesh.xds_tls.expect("xDS TLS listener");
    let proven = TlsConnect::new(tls, &root, Some(bootstrap_credentials(ca.path(), "a", tls)));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (secrets, end) = runtime.block_on(async move {
        let channel = tonic::transport::Endpoint::from_static("http://xds.shmesh")
            .connect_with_connector(proven)
            .await
            .expect("connect over TLS");
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let first = DiscoveryRequest {
            node: Some(Node {
                id: "sidecar~10.1.0.9~a-1.shop~shop.svc.cluster.local".into(),
                cluster: "a.shop".into(),
                ..Default::default()
            }),
            type_url: SECRET.into(),
            resource_names: vec!["default".into(), "ROOTCA".into()],
            ..Default::default()
        };
        let requests = tokio_stream::iter(vec![first]).chain(tokio_stream::pending());
        let mut responses = client
            .stream_aggregated_resources(requests)
            .await
            .expect("ADS stream")
            .into_inner();
        let mut secrets = 0;
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(10), responses.message()).await {
                Ok(Ok(Some(r))) => secrets += r.resources.len(),
                Ok(Ok(None)) => break tonic::Status::ok("ended without a status"),
                Ok(Err(status)) => break status,
                Err(_) => panic!("the stream outlived its connection's maximum age"),
            }
        };
        (secrets, end)
    });
    assert_eq!(secrets, 2, "default and ROOTCA were served first");
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert!(end.message().contains("maximum age"), "{end:?}");
}
