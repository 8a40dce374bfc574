//! The demo's workloads: a small HTTP server on every address and port the
//! manifests give a service's endpoints (pods, EndpointSlices,
//! WorkloadEntries), each answering every request with its identity
//! (`reviews-v1`), and the services the demo sends requests to.
//!
//! Both are read from the model the manifests load into, so they are the
//! endpoints shmesh sends Envoy, and an edited example brings its own.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use shmesh_api::meta::Labels;
use shmesh_model::{Backing, Health, Model, Resolution};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One endpoint address to answer on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub addr: SocketAddr,
    /// `APP-VERSION` from its labels, as Istio names a workload's canonical
    /// service and revision: `reviews-v1`.
    pub identity: String,
    /// Terminating but serving: Envoy sends it no new requests.
    pub draining: bool,
}

/// A service port to send requests to through Envoy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// The Service's name (a ServiceEntry's host), as the split shows it.
    pub service: String,
    pub namespace: String,
    /// The Host header Envoy routes by: `FQDN:PORT`.
    pub authority: String,
    /// The shortest name a proxy of the service's own namespace routes by,
    /// for the `curl` a user can type.
    pub short_authority: String,
}

/// What the manifests declare, as far as the demo can run it.
#[derive(Debug, Default)]
pub struct Declared {
    /// By address, so that two services selecting one workload share it.
    pub workloads: BTreeMap<SocketAddr, Workload>,
    pub targets: Vec<Target>,
    /// Endpoints the demo cannot answer for (addresses of other machines).
    pub skipped: Vec<String>,
}

/// The workloads and targets of every service whose endpoints Envoy gets by
/// EDS on an HTTP port. Endpoints on addresses other than loopback belong to
/// other machines: they are listed in `skipped`, not started.
pub fn declared(model: &Model) -> Declared {
    let mut out = Declared::default();
    for svc in model.services().values() {
        if svc.resolution != Resolution::Static {
            continue;
        }
        let service = match svc.backing {
            Backing::Kubernetes { .. } => svc.name.clone(),
            Backing::ServiceEntry { .. } => svc.hostname.clone(),
        };
        for port in svc.ports.iter().filter(|p| p.protocol.is_http()) {
            let mut answered = false;
            for ep in model.endpoints(&svc.hostname, port.number) {
                let identity = identity(&service, &ep.labels);
                let Ok(ip) = ep.address.parse::<IpAddr>() else {
                    continue;
                };
                let addr = SocketAddr::new(ip, ep.port);
                if !ip.is_loopback() {
                    out.skipped.push(format!(
                        "{identity} {addr} (not a loopback address of this machine)"
                    ));
                    continue;
                }
                answered = true;
                out.workloads.entry(addr).or_insert(Workload {
                    addr,
                    identity,
                    draining: ep.health == Health::Draining,
                });
            }
            if answered {
                let short = match svc.backing {
                    Backing::Kubernetes { .. } => svc.name.as_str(),
                    Backing::ServiceEntry { .. } => svc.hostname.as_str(),
                };
                out.targets.push(Target {
                    service: service.clone(),
                    namespace: svc.namespace.clone(),
                    authority: format!("{}:{}", svc.hostname, port.number),
                    short_authority: format!("{short}:{}", port.number),
                });
            }
        }
    }
    out.targets.sort();
    out
}

/// `app-version` (or the `app.kubernetes.io/` labels), the service's name
/// where the workload has no `app` label, without `-version` where it has
/// no version.
fn identity(service: &str, labels: &Labels) -> String {
    let label = |keys: [&str; 2]| keys.iter().find_map(|k| labels.get(*k));
    let app = label(["app", "app.kubernetes.io/name"]).map_or(service, String::as_str);
    match label(["version", "app.kubernetes.io/version"]) {
        Some(version) => format!("{app}-{version}"),
        None => app.to_string(),
    }
}

/// The workload servers running, by address.
#[derive(Default)]
pub struct Servers {
    running: BTreeMap<SocketAddr, (Workload, JoinHandle<()>)>,
}

/// What [`Servers::reconcile`] did, for the user to read.
#[derive(Debug, Default)]
pub struct Reconciled {
    pub started: Vec<Workload>,
    pub stopped: Vec<Workload>,
    /// Workloads that could not listen, and why.
    pub failed: Vec<(Workload, std::io::Error)>,
}

impl Servers {
    /// Starts a server for each wanted workload not running yet (or running
    /// under another identity) and stops those no longer wanted.
    pub async fn reconcile(&mut self, wanted: &BTreeMap<SocketAddr, Workload>) -> Reconciled {
        let mut done = Reconciled::default();
        let gone: Vec<SocketAddr> = self
            .running
            .iter()
            .filter(|(addr, (w, _))| wanted.get(addr) != Some(w))
            .map(|(addr, _)| *addr)
            .collect();
        for addr in gone {
            if let Some((workload, task)) = self.running.remove(&addr) {
                // Awaited, so that its listener is closed before the address
                // is bound again under a new identity.
                task.abort();
                let _ = task.await;
                done.stopped.push(workload);
            }
        }
        for (addr, workload) in wanted {
            if self.running.contains_key(addr) {
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    let task = tokio::spawn(serve(listener, workload.identity.clone()));
                    self.running.insert(*addr, (workload.clone(), task));
                    done.started.push(workload.clone());
                }
                Err(e) => done.failed.push((workload.clone(), e)),
            }
        }
        done
    }

    /// Stops every server and its connections.
    pub async fn stop(self) {
        for (_, (_, task)) in self.running {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Answers every request on `listener` with `identity`. Connections are
/// tasks of this one, so stopping it closes them too.
async fn serve(listener: TcpListener, identity: String) {
    let body = Bytes::from(format!("{identity}\n"));
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, say: try again shortly rather
                // than spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let (body, identity) = (body.clone(), identity.clone());
        connections.spawn(async move {
            let answer = hyper::service::service_fn(move |_request| {
                let response = Response::builder()
                    .status(StatusCode::OK)
                    .header(hyper::header::CONTENT_TYPE, "text/plain")
                    .header("x-workload", identity.as_str())
                    .body(Full::new(body.clone()));
                async move { Ok::<_, Infallible>(response.unwrap_or_default()) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), answer)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_app_and_version() {
        let labels = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            identity("reviews", &labels(&[("app", "reviews"), ("version", "v1")])),
            "reviews-v1"
        );
        assert_eq!(identity("details", &labels(&[])), "details");
        assert_eq!(
            identity("web", &labels(&[("app.kubernetes.io/version", "2")])),
            "web-2"
        );
    }

    #[test]
    fn bookinfo_declares_its_pods_slices_and_vm() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bookinfo");
        let (changes, problems) = crate::sources::files::load_once(&[dir]);
        assert!(problems.is_empty(), "{problems:?}");
        let mut model = Model::new();
        model.apply(changes);
        let declared = declared(&model);
        let got: Vec<(String, String, bool)> = declared
            .workloads
            .values()
            .map(|w| (w.addr.to_string(), w.identity.clone(), w.draining))
            .collect();
        let want = [
            ("127.0.0.11:9080", "productpage", false),
            ("127.0.0.21:9081", "reviews-v1", false),
            ("127.0.0.22:9082", "reviews-v2", false),
            ("127.0.0.23:9083", "reviews-v3", false),
            ("127.0.0.31:9080", "ratings-v1", false),
            ("127.0.0.32:9080", "ratings-v2", false),
            ("127.0.0.41:9080", "details", false),
            ("127.0.0.42:9080", "details", true),
        ]
        .map(|(a, i, d)| (a.to_string(), i.to_string(), d));
        assert_eq!(got, want);
        let authorities: Vec<&str> = declared
            .targets
            .iter()
            .map(|t| t.authority.as_str())
            .collect();
        // The DNS ServiceEntry (httpbin.example.com) has no endpoint to run.
        assert_eq!(
            authorities,
            [
                "details.default.svc.cluster.local:9080",
                "productpage.default.svc.cluster.local:9080",
                "ratings.default.svc.cluster.local:9080",
                "reviews.default.svc.cluster.local:9080",
            ]
        );
        assert!(declared.skipped.is_empty());
    }
}
