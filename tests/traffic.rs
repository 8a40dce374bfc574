//! Real traffic through a real Envoy configured by shmesh over ADS: weighted
//! splits, header matches, live weight changes, rejected bad input, on both
//! delta and state-of-the-world ADS.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{eventually, free_port, http_get, mesh, Envoy, HttpClient, Shmesh, Upstream};

struct Rig {
    upstreams: Vec<Upstream>,
    dir: tempfile::TempDir,
    shmesh: Shmesh,
    envoy: Envoy,
    listener: SocketAddr,
}

/// Three reviews versions on their own loopback addresses, shmesh serving a
/// directory with `vs`, and an Envoy whose outbound listener routes through it.
fn rig(vs: &str, delta: bool) -> Rig {
    rig_with(vs, delta, &[])
}

/// `rig`, with extra arguments for `shmesh serve`.
fn rig_with(vs: &str, delta: bool, serve_args: &[&str]) -> Rig {
    let upstreams: Vec<Upstream> = ["v1", "v2", "v3"]
        .iter()
        .enumerate()
        .map(|(i, v)| Upstream::start(&format!("127.0.0.{}", 11 + i), v))
        .collect();
    let versions: Vec<(&str, SocketAddr)> =
        upstreams.iter().map(|u| (u.name(), u.addr())).collect();
    let dir = tempfile::tempdir().expect("config dir");
    mesh::write_atomic(dir.path(), "reviews.yaml", &mesh::reviews(&versions));
    mesh::write_atomic(dir.path(), "vs.yaml", vs);
    let shmesh = Shmesh::start_with(dir.path(), serve_args);
    let listener: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .expect("addr");
    let envoy = Envoy::start(&shmesh.bootstrap("productpage-1", "default", listener, delta));
    let ok = envoy.wait_until(Duration::from_secs(20), |_| {
        http_get(listener, "reviews:9080", "/", &[]).is_ok_and(|r| r.status == 200)
    });
    assert!(ok, "traffic never flowed through Envoy\n{}", envoy.log());
    Rig {
        upstreams,
        dir,
        shmesh,
        envoy,
        listener,
    }
}

/// Sends `n` requests and counts responses by upstream.
fn shares(listener: SocketAddr, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let mut client = HttpClient::connect(listener).expect("connect to Envoy");
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = client
            .get("reviews:9080", "/", headers)
            .expect("request through Envoy");
        assert_eq!(r.status, 200, "unexpected status: {r:?}");
        let who = r.header("x-upstream").unwrap_or("none").to_string();
        *counts.entry(who).or_insert(0) += 1;
    }
    counts
}

fn share(counts: &HashMap<String, usize>, who: &str, n: usize) -> f64 {
    *counts.get(who).unwrap_or(&0) as f64 * 100.0 / n as f64
}

fn weighted_split(delta: bool) {
    let rig = rig(&mesh::weighted_vs("v1", &[("v1", 80), ("v2", 20)]), delta);
    let n = 1000;
    let counts = shares(rig.listener, n, &[]);
    let (v1, v2, v3) = (
        share(&counts, "v1", n),
        share(&counts, "v2", n),
        share(&counts, "v3", n),
    );
    assert!((v1 - 80.0).abs() <= 5.0, "v1 got {v1}% of {n}: {counts:?}");
    assert!((v2 - 20.0).abs() <= 5.0, "v2 got {v2}% of {n}: {counts:?}");
    assert_eq!(v3, 0.0, "v3 must get nothing: {counts:?}");
    assert_eq!(rig.upstreams[2].hits(), 0);
}

#[test]
fn weighted_split_delta() {
    weighted_split(true);
}

#[test]
fn weighted_split_sotw() {
    weighted_split(false);
}

fn header_match(delta: bool) {
    let rig = rig(&mesh::header_vs("v2", "v1"), delta);
    let jason = shares(rig.listener, 50, &[("end-user", "jason")]);
    assert_eq!(jason.get("v2"), Some(&50), "{jason:?}");
    let others = shares(rig.listener, 50, &[("end-user", "someone-else")]);
    assert_eq!(others.get("v1"), Some(&50), "{others:?}");
    let anonymous = shares(rig.listener, 50, &[]);
    assert_eq!(anonymous.get("v1"), Some(&50), "{anonymous:?}");
}

#[test]
fn header_match_delta() {
    header_match(true);
}

#[test]
fn header_match_sotw() {
    header_match(false);
}

/// Rewrites the weights and measures how long until a request shows them.
fn weight_change(delta: bool) {
    let rig = rig(
        &mesh::weighted_vs("v1beta1", &[("v1", 100), ("v2", 0)]),
        delta,
    );
    assert_eq!(shares(rig.listener, 20, &[]).get("v1"), Some(&20));
    let written = Instant::now();
    mesh::write_atomic(
        rig.dir.path(),
        "vs.yaml",
        &mesh::weighted_vs("v1beta1", &[("v1", 0), ("v2", 100)]),
    );
    let mut client = HttpClient::connect(rig.listener).expect("connect");
    let seen = loop {
        let r = client.get("reviews:9080", "/", &[]).expect("request");
        if r.header("x-upstream") == Some("v2") {
            break written.elapsed();
        }
        assert!(
            written.elapsed() < Duration::from_secs(10),
            "new weights never applied\n{}",
            rig.shmesh.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        seen <= Duration::from_secs(1),
        "new weights took {seen:?} to apply"
    );
    assert_eq!(shares(rig.listener, 50, &[]).get("v2"), Some(&50));
}

#[test]
fn weight_change_delta() {
    weight_change(true);
}

#[test]
fn weight_change_sotw() {
    weight_change(false);
}

fn invalid_update_keeps_previous(delta: bool) {
    let rig = rig(&mesh::weighted_vs("v1alpha3", &[("v1", 100)]), delta);
    let bad = mesh::weighted_vs("v1alpha3", &[("v1", -50), ("v2", 150)]);
    mesh::write_atomic(rig.dir.path(), "vs.yaml", &bad);
    let rejected = rig.shmesh.wait_until(Duration::from_secs(10), |s| {
        s.log().contains(
            "VirtualService default/reviews: spec.http[0].route[0].weight: weight -50 is negative",
        )
    });
    assert!(
        rejected,
        "no clear error for the invalid VirtualService:\n{}",
        rig.shmesh.log()
    );
    let (status, problems) = rig.shmesh.admin_get("/debug/problems");
    assert_eq!(status, 200);
    assert!(problems.contains("vs.yaml"), "{problems}");
    // Traffic keeps following the last good version.
    assert_eq!(shares(rig.listener, 100, &[]).get("v1"), Some(&100));
    assert_eq!(rig.upstreams[1].hits(), 0);
}

#[test]
fn invalid_update_keeps_previous_delta() {
    invalid_update_keeps_previous(true);
}

#[test]
fn invalid_update_keeps_previous_sotw() {
    invalid_update_keeps_previous(false);
}

#[test]
fn config_dump_shows_istio_names() {
    let rig = rig(&mesh::weighted_vs("v1", &[("v1", 80), ("v2", 20)]), true);
    let dump = rig.envoy.config_dump().to_string();
    for name in [
        "outbound|9080||reviews.default.svc.cluster.local",
        "outbound|9080|v1|reviews.default.svc.cluster.local",
        "outbound|9080|v2|reviews.default.svc.cluster.local",
        "outbound|9080|v3|reviews.default.svc.cluster.local",
        "BlackHoleCluster",
        "PassthroughCluster",
        "reviews.default.svc.cluster.local:9080",
        "http_proxy",
        &format!("127.0.0.1_{}", rig.listener.port()),
    ] {
        assert!(
            dump.contains(&format!("\"{name}\"")),
            "{name} missing from Envoy's config_dump"
        );
    }
}

/// With `--vhds`, a delta Envoy receives its route configuration without
/// virtual hosts and fetches them over VHDS: weights move, a new service's
/// host starts routing, and a removed service's host stops.
#[test]
fn virtual_hosts_over_vhds() {
    let rig = rig_with(
        &mesh::weighted_vs("v1", &[("v1", 100), ("v2", 0)]),
        true,
        &["--vhds"],
    );
    assert_eq!(shares(rig.listener, 20, &[]).get("v1"), Some(&20));
    let dump = rig.envoy.config_dump().to_string();
    assert!(
        dump.contains("\"http_proxy/reviews.default.svc.cluster.local:9080\""),
        "the virtual host came over VHDS under its resource name:\n{dump}"
    );
    assert!(dump.contains("\"vhds\""), "route configuration names VHDS");

    mesh::write_atomic(
        rig.dir.path(),
        "vs.yaml",
        &mesh::weighted_vs("v1", &[("v1", 0), ("v2", 100)]),
    );
    let moved = rig.envoy.wait_until(Duration::from_secs(10), |_| {
        shares(rig.listener, 5, &[]).get("v2") == Some(&5)
    });
    assert!(moved, "new weights never applied\n{}", rig.shmesh.log());

    let ratings = mesh::reviews(&[("v1", rig.upstreams[2].addr())]).replace("reviews", "ratings");
    mesh::write_atomic(rig.dir.path(), "ratings.yaml", &ratings);
    let routed = rig.envoy.wait_until(Duration::from_secs(10), |_| {
        http_get(rig.listener, "ratings:9080", "/", &[])
            .is_ok_and(|r| r.status == 200 && r.header("x-upstream") == Some("v3"))
    });
    assert!(routed, "the new host never routed\n{}", rig.envoy.log());

    std::fs::remove_file(rig.dir.path().join("ratings.yaml")).expect("remove ratings");
    let gone = rig.envoy.wait_until(Duration::from_secs(10), |_| {
        http_get(rig.listener, "ratings:9080", "/", &[]).is_ok_and(|r| r.status == 404)
    });
    assert!(gone, "the removed host still routes\n{}", rig.envoy.log());
    assert_eq!(shares(rig.listener, 10, &[]).get("v2"), Some(&10));
}

/// Steady load through Envoy while the weights are rewritten ten times: not
/// one request may fail.
fn no_failures_under_rewrites(delta: bool) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let rig = rig(&mesh::weighted_vs("v1", &[("v1", 50), ("v2", 50)]), delta);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            let listener = rig.listener;
            std::thread::spawn(move || {
                let mut client = HttpClient::connect(listener).expect("connect");
                // About 150 requests/s per worker.
                while !stop.load(Ordering::Relaxed) {
                    match client.get("reviews:9080", "/", &[]) {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures
                            .lock()
                            .expect("lock")
                            .push(format!("status {}", r.status)),
                        Err(e) => failures.lock().expect("lock").push(e),
                    }
                    std::thread::sleep(Duration::from_micros(6500));
                }
            })
        })
        .collect();
    let plans: [&[(&str, i64)]; 10] = [
        &[("v1", 90), ("v2", 10)],
        &[("v2", 100)],
        &[("v1", 10), ("v3", 90)],
        &[("v1", 1), ("v2", 1), ("v3", 1)],
        &[("v3", 100)],
        &[("v1", 70), ("v2", 30)],
        &[("v2", 50), ("v3", 50)],
        &[("v1", 100)],
        &[("v1", 33), ("v2", 33), ("v3", 34)],
        &[("v2", 80), ("v3", 20)],
    ];
    for plan in plans {
        std::thread::sleep(Duration::from_millis(300));
        mesh::write_atomic(rig.dir.path(), "vs.yaml", &mesh::weighted_vs("v1", plan));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("load worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    let failures = failures.lock().expect("lock");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(10)]
    );
    let rate = ok as f64 / elapsed;
    assert!(
        rate >= 100.0,
        "load too light to prove anything: {rate:.0} requests/s"
    );
    // The last plan is in force.
    let last = shares(rig.listener, 200, &[]);
    assert!(
        !last.contains_key("v1"),
        "v1 still receives traffic: {last:?}"
    );
}

#[test]
fn no_failures_under_rewrites_delta() {
    no_failures_under_rewrites(true);
}

#[test]
fn no_failures_under_rewrites_sotw() {
    no_failures_under_rewrites(false);
}

/// Header changes, URI rewrite, mirroring and fault injection, as Envoy
/// carries them out.
#[test]
fn route_features_take_effect() {
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n  hosts: [reviews]\n  http:\n  - name: headers\n    match: [{uri: {prefix: /hdr}}]\n    headers:\n      request: {set: {x-canary: \"yes\"}, remove: [x-secret]}\n      response: {add: {x-served-by: shmesh}}\n    route:\n    - destination: {host: reviews, subset: v1}\n  - name: rewrite\n    match: [{uri: {prefix: /old}}]\n    rewrite: {uri: /new}\n    route:\n    - destination: {host: reviews, subset: v1}\n  - name: mirror\n    match: [{uri: {prefix: /mirror}}]\n    route:\n    - destination: {host: reviews, subset: v1}\n    mirror: {host: reviews, subset: v3}\n    mirrorPercentage: {value: 100.0}\n  - name: abort\n    match: [{uri: {prefix: /abort}}]\n    fault:\n      abort: {httpStatus: 418, percentage: {value: 100}}\n    route:\n    - destination: {host: reviews, subset: v1}\n  - name: cors\n    match: [{uri: {prefix: /cors}}]\n    corsPolicy:\n      allowOrigins: [{exact: https://shop.example.com}, {regex: 'https://.*\\.partner\\.example'}]\n      allowMethods: [GET, POST]\n      allowHeaders: [x-token]\n      exposeHeaders: [x-upstream]\n      maxAge: 24h\n      allowCredentials: true\n      unmatchedPreflights: IGNORE\n    route:\n    - destination: {host: reviews, subset: v1}\n  - name: rest\n    route:\n    - destination: {host: reviews, subset: v2}\n";
    let rig = rig(vs, true);
    let [v1, _v2, v3] = &rig.upstreams[..] else {
        panic!("three upstreams")
    };

    let r = http_get(
        rig.listener,
        "reviews:9080",
        "/hdr",
        &[("x-secret", "s3cr3t")],
    )
    .expect("request");
    assert_eq!(r.header("x-upstream"), Some("v1"));
    assert_eq!(r.header("x-served-by"), Some("shmesh"));
    let seen = v1.last_request().expect("v1 got the request");
    assert_eq!(seen.header("x-canary"), Some("yes"));
    assert_eq!(seen.header("x-secret"), None);

    let r = http_get(rig.listener, "reviews:9080", "/old/page", &[]).expect("request");
    assert_eq!(r.header("x-upstream"), Some("v1"));
    assert_eq!(v1.last_request().expect("request").path, "/new/page");

    let before = v3.hits();
    for _ in 0..5 {
        let r = http_get(rig.listener, "reviews:9080", "/mirror", &[]).expect("request");
        assert_eq!(
            r.header("x-upstream"),
            Some("v1"),
            "mirrored traffic must not answer"
        );
    }
    let mirrored = rig
        .envoy
        .wait_until(Duration::from_secs(5), |_| v3.hits() >= before + 5);
    assert!(mirrored, "v3 saw {} mirrored requests", v3.hits() - before);
    let shadow = v3.last_request().expect("mirrored request");
    assert!(
        shadow.header("host").is_some_and(|h| h.contains("-shadow")),
        "{shadow:?}"
    );

    let r = http_get(rig.listener, "reviews:9080", "/abort", &[]).expect("request");
    assert_eq!(r.status, 418);
    assert_eq!(r.header("x-upstream"), None);

    // CORS: a preflight from an allowed origin is answered by Envoy with
    // the policy; one from another origin is not let through (IGNORE); an
    // actual request from an allowed origin carries the allowance.
    let preflight = |origin: &str| {
        common::http_request(
            rig.listener,
            "OPTIONS",
            "reviews:9080",
            "/cors",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
            ],
            b"",
        )
        .expect("preflight")
    };
    for origin in ["https://shop.example.com", "https://eu.partner.example"] {
        let r = preflight(origin);
        assert_eq!(r.status, 200, "{origin}");
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        assert_eq!(r.header("access-control-allow-methods"), Some("GET,POST"));
        assert_eq!(r.header("access-control-allow-headers"), Some("x-token"));
        assert_eq!(r.header("access-control-max-age"), Some("86400"));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(r.header("x-upstream"), None, "a preflight reached the app");
    }
    let r = preflight("https://evil.example.com");
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(
        r.header("x-upstream"),
        None,
        "an unmatched preflight reached the app"
    );
    let r = http_get(
        rig.listener,
        "reviews:9080",
        "/cors",
        &[("origin", "https://shop.example.com")],
    )
    .expect("request");
    assert_eq!(r.header("x-upstream"), Some("v1"));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example.com")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-upstream")
    );
    let r = http_get(
        rig.listener,
        "reviews:9080",
        "/cors",
        &[("origin", "https://evil.example.com")],
    )
    .expect("request");
    assert_eq!(r.header("access-control-allow-origin"), None);

    let r = http_get(rig.listener, "reviews:9080", "/other", &[]).expect("request");
    assert_eq!(r.header("x-upstream"), Some("v2"));
}

/// A root VirtualService delegating `/v2` to a VirtualService of another
/// namespace: its routes apply within the root's match, and a change to the
/// delegate alone reaches Envoy.
#[test]
fn delegation_follows_the_delegate() {
    let root = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n  - match: [{uri: {prefix: /v2}}]\n    delegate: {name: reviews-team, namespace: team}\n  - route: [{destination: {host: reviews, subset: v1}}]\n";
    let delegate = |subset: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews-team, namespace: team}}\nspec:\n  http:\n  - match: [{{uri: {{prefix: /v2/admin}}}}]\n    directResponse: {{status: 403}}\n  - route: [{{destination: {{host: reviews.default.svc.cluster.local, subset: {subset}}}}}]\n")
    };
    let rig = rig(root, true);
    let who = |path: &str| {
        http_get(rig.listener, "reviews:9080", path, &[])
            .map(|r| (r.status, r.header("x-upstream").map(String::from)))
            .expect("request")
    };
    // No delegate yet: the delegating entry routes nothing, the rest does.
    assert_eq!(who("/"), (200, Some("v1".to_string())));
    mesh::write_atomic(rig.dir.path(), "team.yaml", &delegate("v2"));
    eventually("/v2 follows the delegate", || {
        who("/v2/page") == (200, Some("v2".to_string()))
    });
    assert_eq!(who("/v2/admin"), (403, None));
    assert_eq!(who("/other"), (200, Some("v1".to_string())));
    mesh::write_atomic(rig.dir.path(), "team.yaml", &delegate("v3"));
    eventually("a change to the delegate alone reaches Envoy", || {
        who("/v2/page") == (200, Some("v3".to_string()))
    });
}
