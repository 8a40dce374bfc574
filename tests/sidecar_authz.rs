//! AuthorizationPolicy and RequestAuthentication enforced by a real sidecar
//! in a pod network namespace under capture, with identities from
//! shmesh's CA. Needs root (skipped otherwise).
//!
//! Shop has service `b`; pods `a`, `b` and `c` are meshed and prove service
//! accounts `a`, `b` and `c`. Policies for `b` are written as files one
//! step at a time, and each step is checked with real requests from `a` and
//! `c` through their outbound capture and `b`'s inbound capture.

mod common;

use std::net::SocketAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use common::http::{describe, http_request_in};
use common::netns::Netns;
use common::pod_network::{ca_init, meshed_service, Identity, PodNetwork, Workload};
use common::{mesh, Response, Upstream};

const ISSUER: &str = "https://issuer.shop.test";

/// An ES256 signing key and its public half as a JWKS document.
struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Signer {
    fn new() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("load key");
        Signer { key, rng }
    }

    fn jwks(&self) -> String {
        // An uncompressed point: 0x04, then x and y.
        let point = self.key.public_key().as_ref();
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "test",
            "x": B64.encode(&point[1..33]),
            "y": B64.encode(&point[33..65]),
        }]})
        .to_string()
    }

    /// A token for `subject`, valid for an hour.
    fn token(&self, subject: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "test"});
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": subject, "aud": "b", "iat": now, "exp": now + 3600,
        });
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, input.as_bytes())
            .expect("sign token");
        format!("{input}.{}", B64.encode(signature.as_ref()))
    }
}

fn policy(kind: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}")
}

/// A GET for `path` at b's clusterIP from `netns`, with `headers`.
fn get(netns: &Netns, path: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
    let vip: SocketAddr = "10.96.0.40:80".parse().expect("vip");
    http_request_in(
        Some(netns),
        vip,
        "GET",
        "b.shop.svc.cluster.local",
        path,
        headers,
        b"",
    )
}

fn status(r: &Result<Response, String>) -> Option<u16> {
    r.as_ref().ok().map(|r| r.status)
}

/// A request from a pod (its namespace, path and headers) and the status it
/// should get.
type Check<'a> = (&'a Netns, &'a str, &'a [(&'a str, &'a str)], u16);

/// Waits until each request gets its expected status; says which did not.
fn expect_statuses(what: &str, checks: &[Check]) {
    let mut last = Vec::new();
    let settled = (0..300).any(|_| {
        last = checks
            .iter()
            .map(|(netns, path, headers, want)| {
                let r = get(netns, path, headers);
                (
                    status(&r) == Some(*want),
                    format!("{path} want {want}: {}", describe(&r)),
                )
            })
            .collect();
        if last.iter().all(|(ok, _)| *ok) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        false
    });
    assert!(settled, "{what}: {last:#?}");
}

fn authorization(delta: bool) {
    let Some(net) = PodNetwork::create("sidecar authz") else {
        return;
    };
    let [a, b, c] = ["a", "b", "c"].map(|name| net.pod(name));
    let ca = tempfile::tempdir().expect("CA dir");
    ca_init(ca.path());
    let dir = tempfile::tempdir().expect("config dir");
    mesh::write_atomic(
        dir.path(),
        "shop.yaml",
        &meshed_service("shop", "b", "10.96.0.40", &b.ip.to_string(), "b"),
    );
    let shmesh = net.shmesh_with_ca(dir.path(), ca.path(), &[]);
    let app_b = b
        .netns
        .run(|| Upstream::start_at(&b.ip.to_string(), 8080, "b"));
    let workload = |app, account| Workload {
        namespace: "shop",
        labels: app,
        delta,
        identity: Some(Identity {
            service_account: account,
            ca_dir: ca.path(),
        }),
    };
    let _sidecar_a = net.sidecar(&a, &shmesh, &workload(&[("app", "a")], "a"));
    let _sidecar_b = net.sidecar(&b, &shmesh, &workload(&[("app", "b")], "b"));
    let _sidecar_c = net.sidecar(&c, &shmesh, &workload(&[("app", "c")], "c"));
    let none: &[(&str, &str)] = &[];
    expect_statuses(
        "no policy lets everyone in",
        &[
            (&a.netns, "/hello", none, 200),
            (&a.netns, "/admin/users", none, 200),
            (&c.netns, "/hello", none, 200),
        ],
    );

    // DENY on a path: 403 there, other paths pass.
    mesh::write_atomic(
        dir.path(),
        "deny.yaml",
        &policy(
            "AuthorizationPolicy",
            "deny-admin",
            "  selector: {matchLabels: {app: b}}\n  action: DENY\n  rules: [{to: [{operation: {paths: ['/admin*']}}]}]\n",
        ),
    );
    expect_statuses(
        "DENY /admin*",
        &[
            (&a.netns, "/admin/users", none, 403),
            (&a.netns, "/hello", none, 200),
            (&c.netns, "/hello", none, 200),
        ],
    );
    app_b.reset();
    let r = get(&a.netns, "/admin/users", none);
    assert_eq!(status(&r), Some(403), "{}", describe(&r));
    assert_eq!(app_b.hits(), 0, "a denied request reached b's app");

    // ALLOW only from a's principal: a gets in, c does not.
    mesh::write_atomic(
        dir.path(),
        "allow.yaml",
        &policy(
            "AuthorizationPolicy",
            "from-a",
            "  selector: {matchLabels: {app: b}}\n  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/a]}}]}]\n",
        ),
    );
    expect_statuses(
        "ALLOW from a",
        &[
            (&a.netns, "/hello", none, 200),
            (&c.netns, "/hello", none, 403),
            // DENY still comes first.
            (&a.netns, "/admin/users", none, 403),
        ],
    );

    // A JWT-protected path: a valid token gets in from anyone, a bad one is
    // refused by authentication (401), none by authorization (403).
    let signer = Signer::new();
    let jwt = policy(
        "RequestAuthentication",
        "jwt",
        &format!(
            "  selector: {{matchLabels: {{app: b}}}}\n  jwtRules:\n  - issuer: {ISSUER}\n    audiences: [b]\n    jwks: '{}'\n",
            signer.jwks()
        ),
    );
    let allow = policy(
        "AuthorizationPolicy",
        "from-a",
        &format!("  selector: {{matchLabels: {{app: b}}}}\n  rules:\n  - from: [{{source: {{principals: [cluster.local/ns/shop/sa/a]}}}}]\n    to: [{{operation: {{notPaths: [/secure]}}}}]\n  - from: [{{source: {{requestPrincipals: ['{ISSUER}/alice']}}}}]\n    to: [{{operation: {{paths: [/secure]}}}}]\n"),
    );
    mesh::write_atomic(dir.path(), "jwt.yaml", &format!("{jwt}---\n{allow}"));
    let _ = std::fs::remove_file(dir.path().join("allow.yaml"));
    let alice = format!("Bearer {}", signer.token("alice"));
    let bob = format!("Bearer {}", signer.token("bob"));
    let forged = format!("Bearer {}", Signer::new().token("alice"));
    let alice_h = [("authorization", alice.as_str())];
    let bob_h = [("authorization", bob.as_str())];
    let forged_h = [("authorization", forged.as_str())];
    expect_statuses(
        "JWT on /secure",
        &[
            (&c.netns, "/secure", &alice_h, 200),
            (&c.netns, "/secure", &forged_h, 401),
            (&c.netns, "/secure", none, 403),
            (&c.netns, "/secure", &bob_h, 403),
            (&a.netns, "/hello", none, 200),
            (&c.netns, "/hello", &alice_h, 403),
        ],
    );
    // The token is checked, then removed: b's app does not see it.
    app_b.reset();
    let r = get(&c.netns, "/secure", &alice_h);
    assert_eq!(status(&r), Some(200), "{}", describe(&r));
    let seen = app_b.last_request().expect("b's app saw the request");
    assert_eq!(seen.header("authorization"), None);
    drop(shmesh);
}

#[test]
fn authorization_policies_in_pods_delta() {
    authorization(true);
}

#[test]
fn authorization_policies_in_pods_sotw() {
    authorization(false);
}
