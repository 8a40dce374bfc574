//! The validating admission webhook of a real `shmesh serve`, spoken to as
//! the Kubernetes API server speaks to it: AdmissionReview v1 JSON POSTed
//! to `/validate` over HTTPS, the server's certificate checked against the
//! test CA that issued it.
//!
//! - A good and a bad object of every kind shmesh reads: the good one is
//!   allowed, the bad one denied with `status.message` equal, line for line,
//!   to what `shmesh validate` prints for the same object written to a file
//!   (without the `FILE:LINE: ` each line starts with); the response echoes
//!   the request's uid.
//! - DELETE and kinds shmesh does not read are allowed; bodies that are not
//!   an AdmissionReview v1 get HTTP 400 saying why. HTTP/2, which the API
//!   server speaks when offered, is answered like HTTP/1.1.
//! - The certificate is read from files laid out as a mounted Secret: until
//!   they exist the webhook refuses handshakes; once they do it serves them,
//!   and when the Secret's `..data` symlink is swapped to a renewed pair,
//!   the renewed certificate is served without a restart.
//! - The `openssl` commands manifests/README.md gives for a certificate
//!   without cert-manager make one shmesh serves for the Service's name.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use common::http::{https2_request, https_request_in, Response};
use common::{eventually, Shmesh};
use shmesh::ca::Ca;

/// A CA for the test and the directory holding its root.
fn test_ca() -> (tempfile::TempDir, Ca) {
    let dir = tempfile::tempdir().expect("tempdir");
    Ca::create_root(dir.path(), "webhook test").expect("root");
    let ca = Ca::load(
        &dir.path().join("root-cert.pem"),
        &dir.path().join("root-key.pem"),
        &[],
    )
    .expect("load the CA");
    (dir, ca)
}

/// Writes a serving certificate for 127.0.0.1 as a `kubernetes.io/tls`
/// Secret volume holds it: `tls.crt` and `tls.key` are symlinks through
/// `..data`, which points at a directory of this version; swapping `..data`
/// (a rename over it) replaces both at once, as the kubelet does.
fn write_secret_volume(dir: &Path, ca: &Ca, version: &str) -> String {
    let issued = ca
        .issue_server(&["127.0.0.1".to_string()], Duration::from_secs(3600))
        .expect("issue");
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir(&data).expect("version dir");
    std::fs::write(data.join("tls.crt"), &issued.chain_pem).expect("tls.crt");
    std::fs::write(data.join("tls.key"), &issued.key_pem).expect("tls.key");
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("..data_tmp");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).expect("link");
        }
    }
    serial_of(&issued.chain_pem)
}

/// The serial number (hex, as the HTTPS helper reports it) of the first
/// certificate of `pem`.
fn serial_of(pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM");
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("X.509");
    cert.raw_serial_as_string()
}

/// `shmesh serve` with the webhook on a free port, its certificate from
/// `volume/tls.crt` and `volume/tls.key`.
fn start_with_webhook(volume: &Path) -> (tempfile::TempDir, Shmesh) {
    let config = tempfile::tempdir().expect("config dir");
    let cert = volume.join("tls.crt");
    let key = volume.join("tls.key");
    let args: Vec<&std::ffi::OsStr> = vec![
        "--config-dir".as_ref(),
        config.path().as_os_str(),
        "--webhook-addr".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--webhook-cert".as_ref(),
        cert.as_os_str(),
        "--webhook-key".as_ref(),
        key.as_os_str(),
    ];
    let shmesh = Shmesh::spawn(&args, &[]);
    shmesh.wait_ready();
    assert!(
        shmesh.webhook.is_some(),
        "no webhook address:\n{}",
        shmesh.log()
    );
    (config, shmesh)
}

/// POSTs `body` to the webhook's `path`; the response and the serial of the
/// certificate it presented.
fn post(
    shmesh: &Shmesh,
    root: &str,
    path: &str,
    body: &[u8],
) -> Result<(Response, String), String> {
    https_request_in(
        None,
        shmesh.webhook.expect("webhook address"),
        "POST",
        "127.0.0.1",
        path,
        &[("content-type", "application/json")],
        body,
        root,
    )
}

/// What the API server sends for `operation` on `object` of resource
/// `group/version/resource`.
fn admission_review(
    uid: &str,
    operation: &str,
    resource: Resource,
    object: &Value,
    old_object: Option<&Value>,
) -> Value {
    let (group, version, plural) = resource;
    let namespace = object["metadata"]["namespace"].clone();
    let options_kind = match operation {
        "CREATE" => "CreateOptions",
        "UPDATE" => "UpdateOptions",
        _ => "DeleteOptions",
    };
    let gvk = json!({"group": group, "version": version, "kind": object["kind"]});
    let gvr = json!({"group": group, "version": version, "resource": plural});
    let mut request = json!({
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": object["metadata"]["name"],
        "operation": operation,
        "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
        "object": if operation == "DELETE" { Value::Null } else { object.clone() },
        "oldObject": old_object.cloned().unwrap_or(Value::Null),
        "dryRun": false,
        "options": {"kind": options_kind, "apiVersion": "meta.k8s.io/v1"},
    });
    if !namespace.is_null() {
        request["namespace"] = namespace;
    }
    json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request})
}

/// The `response` of an AdmissionReview answer, checked for shape and uid.
fn admission_response(answer: &Response, uid: &str) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let review: Value = serde_json::from_str(&answer.body).expect("a JSON answer");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review}");
    assert_eq!(review["kind"], "AdmissionReview", "{review}");
    assert_eq!(
        review["response"]["uid"], uid,
        "the request's uid: {review}"
    );
    review["response"].clone()
}

/// A kind as the API server names its resource: group, version, plural.
type Resource = (&'static str, &'static str, &'static str);

/// A good and a bad object of one kind.
struct Case {
    what: &'static str,
    resource: Resource,
    good: Value,
    bad: Value,
}

/// A good and a bad object of each kind shmesh reads.
fn objects() -> Vec<Case> {
    let meta = |name: &str| json!({"name": name, "namespace": "shop"});
    let istio = |kind: &str, name: &str, spec: Value| json!({"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": meta(name), "spec": spec});
    let security = |kind: &str, name: &str, spec: Value| json!({"apiVersion": "security.istio.io/v1", "kind": kind, "metadata": meta(name), "spec": spec});
    let gateway_api = |version: &str, kind: &str, name: &str, spec: Value| json!({"apiVersion": format!("gateway.networking.k8s.io/{version}"), "kind": kind, "metadata": meta(name), "spec": spec});
    let backend = json!([{"name": "reviews", "port": 9080}]);
    let parent = json!([{"name": "edge"}]);
    let cases: Vec<(&str, Resource, Value, Value)> = vec![
        (
            "Service",
            ("", "v1", "services"),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("reviews"),
                "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}}),
            // Two problems: both lines must come, in validate's order.
            json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("ratings"),
                "spec": {"ports": [{"port": 70000}, {"port": 80}]}}),
        ),
        (
            "EndpointSlice",
            ("discovery.k8s.io", "v1", "endpointslices"),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "reviews-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "reviews"}},
                "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}],
                "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}]}),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "reviews-def", "namespace": "shop", "labels": {"kubernetes.io/service-name": "reviews"}},
                "addressType": "IPv5", "endpoints": [{"addresses": []}], "ports": []}),
        ),
        (
            "Pod",
            ("", "v1", "pods"),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reviews-1", "namespace": "shop", "labels": {"app": "reviews"}},
                "spec": {"containers": [{"name": "app", "image": "reviews:1", "ports": [{"containerPort": 9080}]}]},
                "status": {"podIP": "10.0.0.1"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("reviews-2"),
                "spec": {"containers": [{"name": "app", "image": "reviews:1", "ports": [{"containerPort": 0}]}]},
                "status": {"podIP": "ten.zero"}}),
        ),
        (
            "Secret",
            ("", "v1", "secrets"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("reviews-tls"), "type": "Opaque",
                "data": {"username": "YWRtaW4="}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("half-tls"), "type": "kubernetes.io/tls",
                "data": {"tls.crt": "LS0tLS0="}}),
        ),
        (
            "VirtualService",
            ("networking.istio.io", "v1", "virtualservices"),
            istio(
                "VirtualService",
                "reviews",
                json!({"hosts": ["reviews"], "http": [{"route": [
                {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20}]}]}),
            ),
            istio(
                "VirtualService",
                "ratings",
                json!({"hosts": ["ratings"], "http": [
                {"match": [{"uri": {"regex": "["}}], "route": [{"destination": {"host": "ratings"}, "weight": -1}]}]}),
            ),
        ),
        (
            "DestinationRule",
            ("networking.istio.io", "v1beta1", "destinationrules"),
            json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule", "metadata": meta("reviews"),
                "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}),
            json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule", "metadata": meta("nohost"),
                "spec": {"host": ""}}),
        ),
        (
            "ServiceEntry",
            ("networking.istio.io", "v1", "serviceentries"),
            istio(
                "ServiceEntry",
                "payments",
                json!({"hosts": ["api.payments.example"], "location": "MESH_EXTERNAL",
                "ports": [{"number": 443, "name": "https", "protocol": "TLS"}], "resolution": "DNS"}),
            ),
            istio(
                "ServiceEntry",
                "nowhere",
                json!({"hosts": [], "ports": [{"number": 443, "name": "https", "protocol": "TLS"}]}),
            ),
        ),
        (
            "WorkloadEntry",
            ("networking.istio.io", "v1", "workloadentries"),
            istio(
                "WorkloadEntry",
                "vm-1",
                json!({"address": "10.0.0.5", "labels": {"app": "reviews"}}),
            ),
            istio("WorkloadEntry", "vm-2", json!({"address": ""})),
        ),
        (
            "Sidecar",
            ("networking.istio.io", "v1", "sidecars"),
            istio(
                "Sidecar",
                "default",
                json!({"egress": [{"hosts": ["./*", "istio-system/*"]}]}),
            ),
            istio(
                "Sidecar",
                "ingress",
                json!({"workloadSelector": {"labels": {"app": "reviews"}}, "ingress": [
                {"port": {"number": 9080, "protocol": "HTTP", "name": "http"}, "defaultEndpoint": "127.0.0.1:9080"},
                {"port": {"number": 9080, "protocol": "HTTP", "name": "again"}, "defaultEndpoint": "127.0.0.1:9080"}]}),
            ),
        ),
        (
            "Gateway",
            ("networking.istio.io", "v1", "gateways"),
            istio(
                "Gateway",
                "edge",
                json!({"selector": {"istio": "ingressgateway"},
                "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}),
            ),
            istio(
                "Gateway",
                "empty",
                json!({"selector": {"istio": "ingressgateway"}, "servers": []}),
            ),
        ),
        (
            "PeerAuthentication",
            ("security.istio.io", "v1", "peerauthentications"),
            security(
                "PeerAuthentication",
                "default",
                json!({"mtls": {"mode": "STRICT"}}),
            ),
            security(
                "PeerAuthentication",
                "odd",
                json!({"mtls": {"mode": "SOMETIMES"}}),
            ),
        ),
        (
            "AuthorizationPolicy",
            ("security.istio.io", "v1", "authorizationpolicies"),
            security(
                "AuthorizationPolicy",
                "reviews",
                json!({"action": "ALLOW", "rules": [
                {"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/productpage"]}}]}]}),
            ),
            security("AuthorizationPolicy", "maybe", json!({"action": "MAYBE"})),
        ),
        (
            "RequestAuthentication",
            ("security.istio.io", "v1", "requestauthentications"),
            security(
                "RequestAuthentication",
                "jwt",
                json!({"jwtRules": [
                {"issuer": "https://issuer.example", "jwksUri": "https://issuer.example/jwks"}]}),
            ),
            security(
                "RequestAuthentication",
                "no-issuer",
                json!({"jwtRules": [{"jwksUri": "https://issuer.example/jwks"}]}),
            ),
        ),
        (
            "GatewayClass",
            ("gateway.networking.k8s.io", "v1", "gatewayclasses"),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "istio"},
                "spec": {"controllerName": "istio.io/gateway-controller"}}),
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "nobody"},
                "spec": {}}),
        ),
        (
            "Gateway (Gateway API)",
            ("gateway.networking.k8s.io", "v1", "gateways"),
            gateway_api(
                "v1",
                "Gateway",
                "edge",
                json!({"gatewayClassName": "istio",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}),
            ),
            gateway_api(
                "v1",
                "Gateway",
                "classless",
                json!({"listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}),
            ),
        ),
        (
            "HTTPRoute",
            ("gateway.networking.k8s.io", "v1", "httproutes"),
            gateway_api(
                "v1",
                "HTTPRoute",
                "reviews",
                json!({"parentRefs": parent, "hostnames": ["reviews.example"],
                "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/reviews"}}], "backendRefs": backend}]}),
            ),
            gateway_api(
                "v1",
                "HTTPRoute",
                "broken",
                json!({"parentRefs": parent,
                "rules": [{"matches": [{"path": {"type": "RegularExpression", "value": "(["}}], "backendRefs": backend}]}),
            ),
        ),
        (
            "GRPCRoute",
            ("gateway.networking.k8s.io", "v1", "grpcroutes"),
            gateway_api(
                "v1",
                "GRPCRoute",
                "greeter",
                json!({"parentRefs": parent, "rules": [
                {"matches": [{"method": {"service": "helloworld.Greeter", "method": "SayHello"}}], "backendRefs": backend}]}),
            ),
            gateway_api(
                "v1",
                "GRPCRoute",
                "slashed",
                json!({"parentRefs": parent, "rules": [
                {"matches": [{"method": {"service": "hello/world", "type": "Prefix"}}], "backendRefs": backend}]}),
            ),
        ),
        (
            "TCPRoute",
            ("gateway.networking.k8s.io", "v1alpha2", "tcproutes"),
            gateway_api(
                "v1alpha2",
                "TCPRoute",
                "db",
                json!({"parentRefs": parent,
                "rules": [{"backendRefs": [{"name": "db", "port": 5432}]}]}),
            ),
            gateway_api(
                "v1alpha2",
                "TCPRoute",
                "nowhere",
                json!({"parentRefs": parent, "rules": []}),
            ),
        ),
        (
            "TLSRoute",
            ("gateway.networking.k8s.io", "v1alpha2", "tlsroutes"),
            gateway_api(
                "v1alpha2",
                "TLSRoute",
                "secure",
                json!({"parentRefs": parent, "hostnames": ["secure.example"],
                "rules": [{"backendRefs": [{"name": "secure", "port": 443}]}]}),
            ),
            gateway_api(
                "v1alpha2",
                "TLSRoute",
                "ruleless",
                json!({"parentRefs": parent, "hostnames": ["secure.example"], "rules": []}),
            ),
        ),
        (
            "ReferenceGrant",
            ("gateway.networking.k8s.io", "v1beta1", "referencegrants"),
            gateway_api(
                "v1beta1",
                "ReferenceGrant",
                "from-web",
                json!({
                "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "web"}],
                "to": [{"group": "", "kind": "Service"}]}),
            ),
            gateway_api(
                "v1beta1",
                "ReferenceGrant",
                "from-nobody",
                json!({"from": [], "to": [{"group": "", "kind": "Service"}]}),
            ),
        ),
        (
            "Namespace",
            ("", "v1", "namespaces"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "checkout"}}}),
            // Only its labels are read; the API server itself refuses these.
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "odd", "labels": {"team": ["a", "b"]}}}),
        ),
    ];
    cases
        .into_iter()
        .map(|(what, resource, good, bad)| Case {
            what,
            resource,
            good,
            bad,
        })
        .collect()
}

/// Runs `shmesh validate` on `dir`; the lines it printed for each file
/// there, without the `FILE:LINE: ` they start with.
fn shmesh_validate(dir: &Path, files: &[PathBuf]) -> (i32, Vec<Vec<String>>) {
    let out = Command::new(env!("CARGO_BIN_EXE_shmesh"))
        .arg("validate")
        .arg(dir)
        .output()
        .expect("run shmesh validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let per_file = files
        .iter()
        .map(|file| {
            let prefix = format!("{}:", file.display());
            stdout
                .lines()
                .filter_map(|line| line.strip_prefix(&prefix))
                .map(|rest| {
                    let (line_number, words) = rest.split_once(": ").expect("FILE:LINE: ...");
                    assert!(line_number.parse::<u32>().is_ok(), "{rest}");
                    words.to_string()
                })
                .collect()
        })
        .collect();
    (out.status.code().unwrap_or(-1), per_file)
}

#[test]
fn every_kind_is_judged_with_the_words_of_shmesh_validate() {
    let (ca_dir, ca) = test_ca();
    let root = ca.trusted_pem().to_string();
    let volume = tempfile::tempdir().expect("volume");
    write_secret_volume(volume.path(), &ca, "1");
    let (_config, shmesh) = start_with_webhook(volume.path());

    // What `shmesh validate` prints for each bad object, in a file of its own.
    let cases = objects();
    let files_dir = tempfile::tempdir().expect("files");
    let mut files = Vec::new();
    for (i, Case { bad, .. }) in cases.iter().enumerate() {
        let file = files_dir.path().join(format!("bad-{i:02}.yaml"));
        std::fs::write(&file, serde_norway::to_string(bad).expect("YAML")).expect("write");
        files.push(file);
    }
    let (code, printed) = shmesh_validate(files_dir.path(), &files);
    assert_eq!(code, 1, "shmesh validate finds errors");

    for (
        i,
        Case {
            what,
            resource,
            good,
            bad,
        },
    ) in cases.iter().enumerate()
    {
        // A good object created: allowed.
        let uid = format!("good-{i}");
        let review = admission_review(&uid, "CREATE", *resource, good, None);
        let (answer, _) = post(&shmesh, &root, "/validate", review.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let response = admission_response(&answer, &uid);
        assert_eq!(response["allowed"], true, "{what}: {response}");

        // The good object updated into the bad one: denied with validate's words.
        let expected = &printed[i];
        assert!(
            !expected.is_empty() && expected.iter().all(|l| l.starts_with("error: ")),
            "{what}: shmesh validate prints errors for the bad object: {expected:?}"
        );
        let uid = format!("bad-{i}");
        let review = admission_review(&uid, "UPDATE", *resource, bad, Some(good));
        let (answer, _) = post(&shmesh, &root, "/validate", review.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let response = admission_response(&answer, &uid);
        assert_eq!(response["allowed"], false, "{what}: {response}");
        assert_eq!(
            response["status"]["message"].as_str().unwrap_or_default(),
            expected.join("\n"),
            "{what}: the webhook's words are shmesh validate's"
        );
        assert_eq!(response["status"]["code"], 400, "{what}: {response}");
    }

    // The good objects, all in one directory, are clean for validate too.
    let good_dir = tempfile::tempdir().expect("good files");
    let mut good_files = Vec::new();
    for (i, Case { good, .. }) in cases.iter().enumerate() {
        let file = good_dir.path().join(format!("good-{i:02}.yaml"));
        std::fs::write(&file, serde_norway::to_string(good).expect("YAML")).expect("write");
        good_files.push(file);
    }
    let (code, printed) = shmesh_validate(good_dir.path(), &good_files);
    assert_eq!(code, 0, "{printed:?}");
    assert_eq!(
        shmesh.metric("galley_validation_passed"),
        cases.len() as u64
    );
    assert_eq!(
        shmesh.metric("galley_validation_failed"),
        cases.len() as u64
    );
    drop(ca_dir);
}

#[test]
fn deletions_foreign_kinds_and_malformed_reviews() {
    let (_ca_dir, ca) = test_ca();
    let root = ca.trusted_pem().to_string();
    let volume = tempfile::tempdir().expect("volume");
    write_secret_volume(volume.path(), &ca, "1");
    let (_config, shmesh) = start_with_webhook(volume.path());
    let send = |path: &str, body: &[u8]| {
        post(&shmesh, &root, path, body)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .0
    };

    // Deleting even an invalid object is allowed: nothing is left to check.
    let bad = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "nohost", "namespace": "shop"}, "spec": {"host": ""}});
    let resource = ("networking.istio.io", "v1", "destinationrules");
    let review = admission_review("del", "DELETE", resource, &bad, Some(&bad));
    let response = admission_response(&send("/validate", review.to_string().as_bytes()), "del");
    assert_eq!(response["allowed"], true, "{response}");
    // A kind of these groups that shmesh does not read: allowed, whatever it says.
    let foreign = json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "ProxyConfig",
        "metadata": {"name": "p", "namespace": "shop"}, "spec": {"concurrency": "many"}});
    let review = admission_review(
        "foreign",
        "CREATE",
        ("networking.istio.io", "v1beta1", "proxyconfigs"),
        &foreign,
        None,
    );
    let response = admission_response(&send("/validate", review.to_string().as_bytes()), "foreign");
    assert_eq!(response["allowed"], true, "{response}");

    // Not AdmissionReview v1: 400 and why.
    let mut v1beta1 = admission_review("old", "CREATE", resource, &bad, None);
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut no_uid = admission_review("x", "CREATE", resource, &bad, None);
    no_uid["request"]
        .as_object_mut()
        .expect("request")
        .remove("uid");
    let mut no_object = admission_review("y", "CREATE", resource, &bad, None);
    no_object["request"]["object"] = Value::Null;
    let malformed: [(Vec<u8>, &str); 5] = [
        (b"{\"apiVersion\": ".to_vec(), "not JSON"),
        (
            v1beta1.to_string().into_bytes(),
            "admission.k8s.io/v1beta1 AdmissionReview, not admission.k8s.io/v1 AdmissionReview",
        ),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            "the AdmissionReview has no request",
        ),
        (
            no_uid.to_string().into_bytes(),
            "request: missing field `uid`",
        ),
        (
            no_object.to_string().into_bytes(),
            "request.object is missing",
        ),
    ];
    for (body, says) in &malformed {
        let answer = send("/validate", body);
        assert_eq!(answer.status, 400, "{says}: {}", answer.body);
        assert!(
            answer.body.contains(says),
            "{:?} does not say {says:?}",
            answer.body
        );
    }
    assert_eq!(
        shmesh.metric("galley_validation_http_error"),
        malformed.len() as u64
    );
    let answer = send("/inject", b"{}");
    assert_eq!(answer.status, 404, "{}", answer.body);
    let answer = https_request_in(
        None,
        shmesh.webhook.expect("webhook"),
        "GET",
        "127.0.0.1",
        "/validate",
        &[],
        b"",
        &root,
    )
    .expect("GET")
    .0;
    assert_eq!(answer.status, 405, "{}", answer.body);
    // Still serving after all that.
    let good = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "shop"}, "spec": {"host": "reviews"}});
    let review = admission_review("after", "CREATE", resource, &good, None);
    let response = admission_response(&send("/validate", review.to_string().as_bytes()), "after");
    assert_eq!(response["allowed"], true, "{response}");
}

#[test]
fn the_certificate_is_served_once_it_exists_and_again_when_renewed() {
    let (_ca_dir, ca) = test_ca();
    let root = ca.trusted_pem().to_string();
    // The Secret is not there yet (an optional volume, cert-manager still
    // issuing): shmesh serves xDS, and the webhook refuses handshakes.
    let volume = tempfile::tempdir().expect("volume");
    let (_config, shmesh) = start_with_webhook(volume.path());
    let good = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "shop"}, "spec": {"host": "reviews"}});
    let review = admission_review(
        "r",
        "CREATE",
        ("networking.istio.io", "v1", "destinationrules"),
        &good,
        None,
    )
    .to_string();
    let refused = post(&shmesh, &root, "/validate", review.as_bytes());
    assert!(
        matches!(&refused, Err(e) if e.contains("TLS handshake failed")),
        "{refused:?}"
    );
    assert!(
        shmesh.log().contains("no webhook certificate yet"),
        "{}",
        shmesh.log()
    );

    let first = write_secret_volume(volume.path(), &ca, "1");
    let mut served = String::new();
    eventually("the first certificate is served", || {
        match post(&shmesh, &root, "/validate", review.as_bytes()) {
            Ok((answer, serial)) => {
                served = serial;
                admission_response(&answer, "r")["allowed"] == true
            }
            Err(_) => false,
        }
    });
    assert_eq!(served, first);

    // cert-manager renews it: the kubelet swaps `..data` to the new pair.
    let renewed = write_secret_volume(volume.path(), &ca, "2");
    assert_ne!(renewed, first);
    eventually("the renewed certificate is served", || {
        match post(&shmesh, &root, "/validate", review.as_bytes()) {
            Ok((answer, serial)) => {
                assert_eq!(admission_response(&answer, "r")["allowed"], true);
                serial == renewed
            }
            Err(e) => panic!("the webhook stopped serving during the renewal: {e}"),
        }
    });
    // The old version's files go, as the kubelet removes them.
    std::fs::remove_dir_all(volume.path().join("..1")).expect("remove the old version");
    let (_, serial) = post(&shmesh, &root, "/validate", review.as_bytes()).expect("served");
    assert_eq!(serial, renewed);
}

#[test]
fn the_webhook_speaks_http2_as_the_api_server_does() {
    let (_ca_dir, ca) = test_ca();
    let volume = tempfile::tempdir().expect("volume");
    write_secret_volume(volume.path(), &ca, "1");
    let (_config, shmesh) = start_with_webhook(volume.path());
    let bad = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "nohost", "namespace": "shop"}, "spec": {"host": ""}});
    let review = admission_review(
        "h2",
        "CREATE",
        ("networking.istio.io", "v1", "destinationrules"),
        &bad,
        None,
    );
    let answer = https2_request(
        shmesh.webhook.expect("webhook"),
        "POST",
        "127.0.0.1",
        "/validate",
        &[("content-type", "application/json")],
        review.to_string().as_bytes(),
        ca.trusted_pem(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let response = admission_response(&answer, "h2");
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(
        response["status"]["message"],
        "error: DestinationRule shop/nohost: spec.host: host is required"
    );
}

/// The `openssl` commands of manifests/README.md ("Without cert-manager"),
/// continuation lines joined; the `kubectl` and `helm` lines need a cluster
/// and are left out.
fn readme_openssl_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/README.md"))
            .expect("manifests/README.md");
    let section = readme
        .split_once("### Without cert-manager")
        .expect("the section")
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("its first sh block")
        .0;
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
        .into_iter()
        .filter(|c| c.starts_with("openssl ") || c.starts_with("printf "))
        .collect()
}

#[test]
fn the_readme_self_signed_certificate_is_served_for_the_service_name() {
    let dir = tempfile::tempdir().expect("dir");
    let commands = readme_openssl_commands();
    assert!(commands.len() >= 3, "{commands:?}");
    for command in &commands {
        let out = Command::new("sh")
            .args(["-c", command])
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{command}: {e} (is openssl installed?)"));
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (_config, shmesh) = start_with_webhook(dir.path());
    // The API server dials the Service by name and trusts the caBundle: ca.crt.
    let root = std::fs::read_to_string(dir.path().join("ca.crt")).expect("ca.crt");
    let good = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "shop"}, "spec": {"host": "reviews"}});
    let review = admission_review(
        "readme",
        "CREATE",
        ("networking.istio.io", "v1", "destinationrules"),
        &good,
        None,
    );
    let (answer, _) = https_request_in(
        None,
        shmesh.webhook.expect("webhook"),
        "POST",
        "shmesh.istio-system.svc",
        "/validate",
        &[("content-type", "application/json")],
        review.to_string().as_bytes(),
        &root,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", shmesh.log()));
    assert_eq!(admission_response(&answer, "readme")["allowed"], true);
}
