//! A fake Kubernetes API server for testing the Kubernetes source with the
//! real kube-rs client: plain HTTP/1.1 on `127.0.0.1:0` that speaks the list
//! and watch protocol over objects the test puts in.
//!
//! * LIST (`GET /api/v1/services`, `/apis/networking.istio.io/v1/namespaces/NS/virtualservices`,
//!   ...): `{kind: XList, apiVersion, metadata: {resourceVersion}, items}`.
//!   Items of built-in kinds carry no apiVersion/kind, as a real server sends
//!   them. `limit` is ignored: everything is one page.
//! * WATCH (`watch=true` or `watch=1`): a chunked stream of newline-delimited
//!   events after `resourceVersion` (ADDED, MODIFIED, DELETED), a BOOKMARK every
//!   second when `allowWatchBookmarks=true`, and an `ERROR` event with 410 Gone
//!   when the version is older than the compaction point. `timeoutSeconds`
//!   ends the stream cleanly. A missing or `0` version watches from now.
//! * Resource versions come from one global counter, as etcd's revision.
//!   Istio objects are stored and served as `networking.istio.io/v1`, whatever
//!   version they were written in, as the API server converts them.
//!
//! Test controls are blocking methods: [`ApiServer::apply`] /
//! [`ApiServer::apply_yaml`] / [`ApiServer::delete`] change objects and notify
//! open watches; [`ApiServer::break_watches`] cuts every open watch mid-stream;
//! [`ApiServer::compact`] forgets history so resuming watches get 410 and must
//! relist; [`ApiServer::set_missing`] answers 404 for a kind (a CRD that is
//! not installed); [`ApiServer::hold`] / [`ApiServer::release`] make LISTs of
//! a kind wait; [`ApiServer::list_count`] / [`ApiServer::watch_count`] count
//! requests. [`ApiServer::kubeconfig`] writes a kubeconfig for `KUBECONFIG`
//! (no TLS, no auth: kube-rs accepts an `http://` server).
//!
//! For the rollout status writer it also takes merge PATCHes of the `status`
//! subresource of Istio and Gateway API kinds (recorded: [`ApiServer::status_patches`]) and
//! serves coordination.k8s.io Leases (GET, POST, PUT with resourceVersion
//! preconditions: [`ApiServer::lease`]). kube-rs needs no
//! discovery endpoints for `Api<DynamicObject>` with an explicit
//! `ApiResource`, so none are served.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

/// How often an open watch gets a BOOKMARK (when it asked for them).
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);
/// A held LIST is answered after this long even if never released.
const MAX_HOLD: Duration = Duration::from_secs(60);

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A kind the server serves: its apiVersion and where.
#[derive(Debug, Clone, Copy)]
struct Resource {
    /// The kind, prefixed by its group where two groups share a kind name
    /// (`gateway.networking.k8s.io/Gateway` beside Istio's `Gateway`).
    kind: &'static str,
    api_version: &'static str,
    /// URL prefix before `[namespaces/NS/]PLURAL`.
    prefix: &'static str,
    plural: &'static str,
    /// Built-in kinds: list items carry no apiVersion/kind; custom resources
    /// keep them and get a `metadata.generation`.
    builtin: bool,
}

const fn builtin(
    kind: &'static str,
    api_version: &'static str,
    prefix: &'static str,
    plural: &'static str,
) -> Resource {
    Resource {
        kind,
        api_version,
        prefix,
        plural,
        builtin: true,
    }
}

const fn istio(kind: &'static str, plural: &'static str) -> Resource {
    Resource {
        kind,
        api_version: "networking.istio.io/v1",
        prefix: "/apis/networking.istio.io/v1/",
        plural,
        builtin: false,
    }
}

const fn security(kind: &'static str, plural: &'static str) -> Resource {
    Resource {
        kind,
        api_version: "security.istio.io/v1",
        prefix: "/apis/security.istio.io/v1/",
        plural,
        builtin: false,
    }
}

impl Resource {
    /// The kind without the group that tells it apart.
    fn kind_name(&self) -> &'static str {
        self.kind.rsplit('/').next().unwrap_or(self.kind)
    }
}

const fn gateway_api(kind: &'static str, version: &'static str, plural: &'static str) -> Resource {
    let (api_version, prefix) = match version.as_bytes() {
        b"v1" => (
            "gateway.networking.k8s.io/v1",
            "/apis/gateway.networking.k8s.io/v1/",
        ),
        b"v1beta1" => (
            "gateway.networking.k8s.io/v1beta1",
            "/apis/gateway.networking.k8s.io/v1beta1/",
        ),
        _ => (
            "gateway.networking.k8s.io/v1alpha2",
            "/apis/gateway.networking.k8s.io/v1alpha2/",
        ),
    };
    Resource {
        kind,
        api_version,
        prefix,
        plural,
        builtin: false,
    }
}

const RESOURCES: [Resource; 21] = [
    builtin("Service", "v1", "/api/v1/", "services"),
    builtin("Pod", "v1", "/api/v1/", "pods"),
    builtin("Secret", "v1", "/api/v1/", "secrets"),
    builtin("Namespace", "v1", "/api/v1/", "namespaces"),
    builtin(
        "EndpointSlice",
        "discovery.k8s.io/v1",
        "/apis/discovery.k8s.io/v1/",
        "endpointslices",
    ),
    istio("VirtualService", "virtualservices"),
    istio("DestinationRule", "destinationrules"),
    istio("ServiceEntry", "serviceentries"),
    istio("WorkloadEntry", "workloadentries"),
    istio("Sidecar", "sidecars"),
    istio("Gateway", "gateways"),
    security("PeerAuthentication", "peerauthentications"),
    security("AuthorizationPolicy", "authorizationpolicies"),
    security("RequestAuthentication", "requestauthentications"),
    gateway_api("GatewayClass", "v1", "gatewayclasses"),
    gateway_api("gateway.networking.k8s.io/Gateway", "v1", "gateways"),
    gateway_api("HTTPRoute", "v1", "httproutes"),
    gateway_api("GRPCRoute", "v1", "grpcroutes"),
    gateway_api("TCPRoute", "v1alpha2", "tcproutes"),
    gateway_api("TLSRoute", "v1alpha2", "tlsroutes"),
    gateway_api("ReferenceGrant", "v1beta1", "referencegrants"),
];

fn resource_of(kind: &str) -> Resource {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .copied()
        .unwrap_or_else(|| panic!("the fake API server does not serve kind {kind:?}"))
}

/// `/api/v1/namespaces/ns/services` → (Service, Some("ns")).
fn route(path: &str) -> Option<(Resource, Option<String>)> {
    RESOURCES.iter().find_map(|r| {
        let rest = path.strip_prefix(r.prefix)?;
        if rest == r.plural {
            return Some((*r, None));
        }
        let (ns, plural) = rest.strip_prefix("namespaces/")?.split_once('/')?;
        (plural == r.plural && !ns.is_empty()).then(|| (*r, Some(ns.to_string())))
    })
}

/// One change, kept for watches that resume from an earlier version.
struct Event {
    resource_version: u64,
    kind: &'static str,
    namespace: String,
    /// The event as a watch sends it, newline included.
    line: Bytes,
}

#[derive(Default)]
struct Store {
    /// The latest resource version handed out.
    resource_version: u64,
    /// Watches from a version older than this get 410 Gone.
    compacted: u64,
    /// By (kind, namespace, name).
    objects: BTreeMap<(&'static str, String, String), Value>,
    events: Vec<Event>,
    /// Paths of every LIST and WATCH, in order.
    paths: Vec<String>,
    lists: HashMap<&'static str, usize>,
    watches: HashMap<&'static str, usize>,
    /// The version the latest WATCH of each kind started from.
    watched_from: HashMap<&'static str, u64>,
    /// The highest version a BOOKMARK of each kind has carried.
    bookmarked: HashMap<&'static str, u64>,
    missing: BTreeSet<&'static str>,
    /// Every status patch, in order: (kind, namespace, name, patch body).
    status_patches: Vec<(&'static str, String, String, Value)>,
    /// Leases by (namespace, name).
    leases: BTreeMap<(String, String), Value>,
    /// Service-account tokens TokenReview accepts: token → (username,
    /// audiences).
    tokens: HashMap<String, (String, Vec<String>)>,
    /// Every TokenReview's requested audiences, in order.
    token_reviews: Vec<Vec<String>>,
}

struct Shared {
    store: Mutex<Store>,
    /// The latest resource version: open watches wake when it moves.
    latest: watch::Sender<u64>,
    /// Bumped to cut every open watch.
    breaks: watch::Sender<u64>,
    /// Kinds whose LISTs wait.
    held: watch::Sender<BTreeSet<&'static str>>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The fake API server; stops when dropped.
pub struct ApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ApiServer {
    /// Starts serving on `127.0.0.1` on a port the OS picks.
    pub fn start() -> ApiServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-apiserver")
            .enable_all()
            .build()
            .expect("runtime for the fake API server");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            // Versions start high, so tests never mistake one for a count.
            store: Mutex::new(Store {
                resource_version: 1000,
                ..Store::default()
            }),
            latest: watch::channel(1000).0,
            breaks: watch::channel(0).0,
            held: watch::channel(BTreeSet::new()).0,
        });
        runtime.spawn(accept(listener, shared.clone()));
        ApiServer {
            addr,
            shared,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes TokenReview accept `token` as service account `account` of
    /// `namespace`, for `audiences`.
    pub fn add_token(&self, token: &str, namespace: &str, account: &str, audiences: &[&str]) {
        self.shared.store().tokens.insert(
            token.to_string(),
            (
                format!("system:serviceaccount:{namespace}:{account}"),
                audiences.iter().map(|a| a.to_string()).collect(),
            ),
        );
    }

    /// The audiences each TokenReview asked for, in order.
    pub fn token_reviews(&self) -> Vec<Vec<String>> {
        self.shared.store().token_reviews.clone()
    }

    /// Writes a kubeconfig pointing at this server (no TLS, no credentials).
    pub fn kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }

    /// Creates or replaces an object (as `kubectl apply` would), bumping the
    /// resource version and notifying watches.
    pub fn apply(&self, mut object: Value) {
        let kind = object["kind"]
            .as_str()
            .expect("object without a kind")
            .to_string();
        let gateway_api = object["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("gateway.networking.k8s.io/"));
        let resource = if gateway_api && kind == "Gateway" {
            resource_of("gateway.networking.k8s.io/Gateway")
        } else {
            resource_of(&kind)
        };
        let name = object["metadata"]["name"]
            .as_str()
            .expect("object without metadata.name")
            .to_string();
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let mut store = self.shared.store();
        store.resource_version += 1;
        let rv = store.resource_version;
        let key = (resource.kind, namespace.clone(), name);
        let previous = store.objects.get(&key);
        let event = if previous.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let generation = match previous {
            None => 1,
            Some(p) => {
                let g = p["metadata"]["generation"].as_i64().unwrap_or(1);
                if p.get("spec") == object.get("spec") {
                    g
                } else {
                    g + 1
                }
            }
        };
        let uid = previous
            .and_then(|p| p["metadata"]["uid"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("uid-{rv}"));
        object["apiVersion"] = resource.api_version.into();
        let meta = &mut object["metadata"];
        meta["namespace"] = namespace.clone().into();
        meta["resourceVersion"] = rv.to_string().into();
        meta["uid"] = uid.into();
        meta["creationTimestamp"] = "2026-01-01T00:00:00Z".into();
        if !resource.builtin {
            meta["generation"] = generation.into();
        }
        store.record(rv, resource.kind, &namespace, event, &object);
        store.objects.insert(key, object);
        drop(store);
        self.shared.latest.send_replace(rv);
    }

    /// Applies every document of a multi-document YAML text.
    pub fn apply_yaml(&self, text: &str) {
        for doc in serde_norway::Deserializer::from_str(text) {
            let value = Value::deserialize(doc).expect("YAML fixture");
            if !value.is_null() {
                self.apply(value);
            }
        }
    }

    /// Deletes an object; false if there was none.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let resource = resource_of(kind);
        let mut store = self.shared.store();
        let key = (resource.kind, namespace.to_string(), name.to_string());
        let Some(mut object) = store.objects.remove(&key) else {
            return false;
        };
        store.resource_version += 1;
        let rv = store.resource_version;
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        store.record(rv, resource.kind, namespace, "DELETED", &object);
        drop(store);
        self.shared.latest.send_replace(rv);
        true
    }

    /// Cuts every open watch mid-stream (the connection ends without the
    /// final chunk), as a dropped connection or an API server restart does.
    pub fn break_watches(&self) {
        self.shared.breaks.send_modify(|n| *n += 1);
    }

    /// Forgets all history up to now and cuts every open watch: a watch
    /// resuming from any version it has seen gets 410 Gone and must relist.
    /// The resource version moves on, as unrelated writes move it on a real
    /// server, so even a watch that saw the latest version is too old.
    pub fn compact(&self) {
        let mut store = self.shared.store();
        store.resource_version += 1;
        store.compacted = store.resource_version;
        // Cut while holding the store, so no watch can learn the new version
        // (from a bookmark) before it is cut.
        self.shared.breaks.send_modify(|n| *n += 1);
        drop(store);
    }

    /// Answers 404 for a kind's LIST and WATCH (as for a CRD that is not
    /// installed), or serves it again.
    pub fn set_missing(&self, kind: &str, missing: bool) {
        let kind = resource_of(kind).kind;
        let mut store = self.shared.store();
        if missing {
            store.missing.insert(kind);
        } else {
            store.missing.remove(kind);
        }
    }

    /// LISTs of `kind` wait until [`ApiServer::release`].
    pub fn hold(&self, kind: &str) {
        let kind = resource_of(kind).kind;
        self.shared.held.send_modify(|h| {
            h.insert(kind);
        });
    }

    pub fn release(&self, kind: &str) {
        let kind = resource_of(kind).kind;
        self.shared.held.send_modify(|h| {
            h.remove(kind);
        });
    }

    /// LIST requests received for `kind`.
    pub fn list_count(&self, kind: &str) -> usize {
        let kind = resource_of(kind).kind;
        self.shared.store().lists.get(kind).copied().unwrap_or(0)
    }

    /// WATCH requests received for `kind`.
    pub fn watch_count(&self, kind: &str) -> usize {
        let kind = resource_of(kind).kind;
        self.shared.store().watches.get(kind).copied().unwrap_or(0)
    }

    /// Paths (without the query) of every LIST and WATCH so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.shared.store().paths.clone()
    }

    /// The version the latest WATCH of `kind` resumed from.
    pub fn watched_from(&self, kind: &str) -> Option<u64> {
        let kind = resource_of(kind).kind;
        self.shared.store().watched_from.get(kind).copied()
    }

    /// The highest version a BOOKMARK of `kind` has carried.
    pub fn bookmarked(&self, kind: &str) -> Option<u64> {
        let kind = resource_of(kind).kind;
        self.shared.store().bookmarked.get(kind).copied()
    }

    /// The latest resource version handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version
    }

    /// Every kind the server serves.
    /// Status patches received for `kind`, in order: (namespace, name, body).
    pub fn status_patches(&self, kind: &str) -> Vec<(String, String, Value)> {
        self.shared
            .store()
            .status_patches
            .iter()
            .filter(|(k, ..)| *k == kind)
            .map(|(_, ns, name, body)| (ns.clone(), name.clone(), body.clone()))
            .collect()
    }

    /// A stored object, as the server holds it.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let resource = resource_of(kind);
        self.shared
            .store()
            .objects
            .get(&(resource.kind, namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// A Lease, if one was created.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .store()
            .leases
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    pub fn kinds() -> Vec<&'static str> {
        RESOURCES.iter().map(|r| r.kind).collect()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Store {
    fn record(
        &mut self,
        rv: u64,
        kind: &'static str,
        namespace: &str,
        event: &str,
        object: &Value,
    ) {
        let mut line = json!({ "type": event, "object": object }).to_string();
        line.push('\n');
        self.events.push(Event {
            resource_version: rv,
            kind,
            namespace: namespace.to_string(),
            line: Bytes::from(line),
        });
    }

    /// Event lines for a watch after `from`, and the version they bring it to.
    fn events_after(&self, kind: &str, namespace: Option<&str>, from: u64) -> (Vec<Bytes>, u64) {
        let lines = self
            .events
            .iter()
            .filter(|e| e.resource_version > from && e.kind == kind)
            .filter(|e| namespace.is_none_or(|ns| e.namespace == ns))
            .map(|e| e.line.clone())
            .collect();
        (lines, self.resource_version.max(from))
    }

    fn list(&self, resource: Resource, namespace: Option<&str>) -> Value {
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((kind, ns, _), _)| {
                *kind == resource.kind && namespace.is_none_or(|want| want == ns)
            })
            .map(|(_, object)| {
                let mut item = object.clone();
                if resource.builtin {
                    if let Some(map) = item.as_object_mut() {
                        map.remove("apiVersion");
                        map.remove("kind");
                    }
                }
                item
            })
            .collect();
        json!({
            "kind": format!("{}List", resource.kind_name()),
            "apiVersion": resource.api_version,
            "metadata": { "resourceVersion": self.resource_version.to_string() },
            "items": items,
        })
    }
}

async fn accept(listener: std::net::TcpListener, shared: Arc<Shared>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or similar: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let req = match write_request(&shared, &path, req).await {
        Ok(response) => return Ok(response),
        Err(req) => req,
    };
    let Some((resource, namespace)) = route(&path) else {
        return Ok(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the server could not find the requested resource ({path})"),
        ));
    };
    if req.method() != hyper::Method::GET {
        return Ok(status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the fake API server only lists and watches",
        ));
    }
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    shared.store().paths.push(path);
    Ok(if watching {
        watch(&shared, resource, namespace, &query)
    } else {
        list(&shared, resource, namespace).await
    })
}

/// GET and PATCH of an object's status, and Lease GET/POST/PUT; other requests
/// are handed back.
async fn write_request(
    shared: &Shared,
    path: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Request<Incoming>> {
    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/";
    if path == "/apis/authentication.k8s.io/v1/tokenreviews" && req.method() == hyper::Method::POST
    {
        let review = read_json(req).await;
        return Ok(token_review(shared, review));
    }
    if let Some(rest) = path.strip_prefix(LEASES) {
        let Some((ns, rest)) = rest.split_once("/leases") else {
            return Err(req);
        };
        let name = rest.strip_prefix('/').unwrap_or("").to_string();
        let method = req.method().clone();
        let body = read_json(req).await;
        return Ok(lease_request(shared, ns, &name, &method, body));
    }
    let Some(object_path) = path.strip_suffix("/status") else {
        return Err(req);
    };
    if req.method() == hyper::Method::GET {
        // The object, as a status reader sees it.
        let Some((prefix_path, name)) = object_path.rsplit_once('/') else {
            return Err(req);
        };
        let Some((resource, namespace)) = route(prefix_path) else {
            return Err(req);
        };
        let key = (
            resource.kind,
            namespace.unwrap_or_else(|| "default".to_string()),
            name.to_string(),
        );
        return Ok(match shared.store().objects.get(&key) {
            Some(object) => json_response(StatusCode::OK, object),
            None => status(StatusCode::NOT_FOUND, "NotFound", "not found"),
        });
    }
    if req.method() != hyper::Method::PATCH {
        return Err(req);
    }
    let Some((prefix_path, name)) = object_path.rsplit_once('/') else {
        return Err(req);
    };
    // Cluster-scoped objects (GatewayClasses) are stored under `default`.
    let Some((resource, namespace)) = route(prefix_path) else {
        return Err(req);
    };
    let namespace = namespace.unwrap_or_else(|| "default".to_string());
    let name = name.to_string();
    let patch = read_json(req).await;
    let mut store = shared.store();
    let key = (resource.kind, namespace.clone(), name.clone());
    if !store.objects.contains_key(&key) {
        return Ok(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{} {namespace}/{name} not found", resource.kind),
        ));
    }
    store
        .status_patches
        .push((resource.kind, namespace.clone(), name, patch.clone()));
    store.resource_version += 1;
    let rv = store.resource_version;
    let Some(object) = store.objects.get_mut(&key) else {
        return Ok(status(StatusCode::NOT_FOUND, "NotFound", "gone"));
    };
    if let Some(new_status) = patch.get("status") {
        object["status"] = new_status.clone();
    }
    object["metadata"]["resourceVersion"] = rv.to_string().into();
    let object = object.clone();
    store.record(rv, resource.kind, &namespace, "MODIFIED", &object);
    drop(store);
    shared.latest.send_replace(rv);
    Ok(json_response(StatusCode::OK, &object))
}

/// TokenReview as the API server answers it: authenticated when the token
/// is known and one of its audiences was asked for.
fn token_review(shared: &Shared, mut review: Value) -> Response<Body> {
    let token = review["spec"]["token"].as_str().unwrap_or("").to_string();
    let asked: Vec<String> = review["spec"]["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    let mut store = shared.store();
    store.token_reviews.push(asked.clone());
    let known = store.tokens.get(&token).cloned();
    drop(store);
    review["status"] = match known {
        Some((username, audiences)) if asked.iter().any(|a| audiences.contains(a)) => {
            serde_json::json!({
                "authenticated": true,
                "user": {"username": username},
                "audiences": asked,
            })
        }
        _ => serde_json::json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    json_response(StatusCode::CREATED, &review)
}

async fn read_json(req: Request<Incoming>) -> Value {
    match req.into_body().collect().await {
        Ok(body) => serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Leases with optimistic concurrency, as leader election relies on.
fn lease_request(
    shared: &Shared,
    ns: &str,
    name: &str,
    method: &hyper::Method,
    body: Value,
) -> Response<Body> {
    let mut store = shared.store();
    let key_of = |n: &str| (ns.to_string(), n.to_string());
    match *method {
        hyper::Method::GET => match store.leases.get(&key_of(name)) {
            Some(lease) => json_response(StatusCode::OK, lease),
            None => status(StatusCode::NOT_FOUND, "NotFound", "lease not found"),
        },
        hyper::Method::POST => {
            let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
            if store.leases.contains_key(&key_of(&name)) {
                return status(StatusCode::CONFLICT, "AlreadyExists", "lease exists");
            }
            store.resource_version += 1;
            let mut lease = body;
            lease["apiVersion"] = "coordination.k8s.io/v1".into();
            lease["kind"] = "Lease".into();
            lease["metadata"]["namespace"] = ns.into();
            lease["metadata"]["resourceVersion"] = store.resource_version.to_string().into();
            store.leases.insert(key_of(&name), lease.clone());
            json_response(StatusCode::CREATED, &lease)
        }
        hyper::Method::PUT => {
            let Some(current) = store.leases.get(&key_of(name)) else {
                return status(StatusCode::NOT_FOUND, "NotFound", "lease not found");
            };
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    "the object has been modified",
                );
            }
            store.resource_version += 1;
            let mut lease = body;
            lease["apiVersion"] = "coordination.k8s.io/v1".into();
            lease["kind"] = "Lease".into();
            lease["metadata"]["namespace"] = ns.into();
            lease["metadata"]["resourceVersion"] = store.resource_version.to_string().into();
            store.leases.insert(key_of(name), lease.clone());
            json_response(StatusCode::OK, &lease)
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "leases: GET, POST, PUT",
        ),
    }
}

async fn list(shared: &Shared, resource: Resource, namespace: Option<String>) -> Response<Body> {
    {
        let mut store = shared.store();
        *store.lists.entry(resource.kind).or_default() += 1;
        if store.missing.contains(resource.kind) {
            return not_served(resource);
        }
    }
    let mut held = shared.held.subscribe();
    let _ = tokio::time::timeout(MAX_HOLD, held.wait_for(|h| !h.contains(resource.kind))).await;
    let body = shared.store().list(resource, namespace.as_deref());
    json_response(StatusCode::OK, &body)
}

fn watch(
    shared: &Arc<Shared>,
    resource: Resource,
    namespace: Option<String>,
    query: &HashMap<String, String>,
) -> Response<Body> {
    let store = &mut *shared.store();
    *store.watches.entry(resource.kind).or_default() += 1;
    if store.missing.contains(resource.kind) {
        return not_served(resource);
    }
    let from = query
        .get("resourceVersion")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v != 0)
        .unwrap_or(store.resource_version);
    store.watched_from.insert(resource.kind, from);
    if from < store.compacted {
        let expired = json!({
            "type": "ERROR",
            "object": status_json(410, "Expired", &format!("too old resource version: {from} ({})", store.compacted)),
        });
        let body = Full::new(Bytes::from(format!("{expired}\n")))
            .map_err(|never| match never {})
            .boxed_unsync();
        return with_json_type(Response::new(body));
    }
    let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(290));
    let (tx, rx) = mpsc::channel(16);
    let stream = WatchStream {
        shared: shared.clone(),
        resource,
        namespace,
        cursor: from,
        bookmarks,
        timeout,
    };
    tokio::spawn(stream.run(tx));
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed_unsync();
    with_json_type(Response::new(body))
}

/// One open watch.
struct WatchStream {
    shared: Arc<Shared>,
    resource: Resource,
    namespace: Option<String>,
    /// The version this watch has delivered up to.
    cursor: u64,
    bookmarks: bool,
    timeout: Duration,
}

type Frames = mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

impl WatchStream {
    async fn run(mut self, tx: Frames) {
        let mut latest = self.shared.latest.subscribe();
        let mut breaks = self.shared.breaks.subscribe();
        let start = tokio::time::Instant::now();
        let mut bookmark = tokio::time::interval_at(start + BOOKMARK_EVERY, BOOKMARK_EVERY);
        let deadline = tokio::time::sleep_until(start + self.timeout);
        tokio::pin!(deadline);
        loop {
            let (lines, cursor) = self.shared.store().events_after(
                self.resource.kind,
                self.namespace.as_deref(),
                self.cursor,
            );
            self.cursor = cursor;
            for line in lines {
                if tx.send(Ok(Frame::data(line))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                // A cut wins over everything else that is ready.
                biased;
                _ = breaks.changed() => {
                    // An error frame makes hyper drop the connection without
                    // the final chunk: the client sees the stream break.
                    let _ = tx.send(Err(std::io::Error::other("watch cut by the test"))).await;
                    return;
                }
                _ = tx.closed() => return,
                _ = &mut deadline => return,
                _ = latest.changed() => {}
                _ = bookmark.tick(), if self.bookmarks => {
                    if tx.send(Ok(Frame::data(self.bookmark()))).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn bookmark(&self) -> Bytes {
        let mut store = self.shared.store();
        let highest = store.bookmarked.entry(self.resource.kind).or_default();
        *highest = (*highest).max(self.cursor);
        drop(store);
        let event = json!({
            "type": "BOOKMARK",
            "object": {
                "kind": self.resource.kind_name(),
                "apiVersion": self.resource.api_version,
                "metadata": { "resourceVersion": self.cursor.to_string() },
            },
        });
        Bytes::from(format!("{event}\n"))
    }
}

fn status_json(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &status_json(code.as_u16(), reason, message))
}

fn not_served(resource: Resource) -> Response<Body> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!(
            "the server could not find the requested resource ({} {})",
            resource.api_version, resource.plural
        ),
    )
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let body = Full::new(Bytes::from(body.to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = with_json_type(Response::new(body));
    *response.status_mut() = code;
    response
}

fn with_json_type(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
