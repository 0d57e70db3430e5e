//! A test double of the Kubernetes API server (feature `kube-api`): what
//! the `kubetap` CLI (a kube-rs client) and the hub are tested against, its
//! fidelity checked against real clients, `kubectl` and the official Python
//! client (`testkit/tests/kube_api.rs`).
//!
//! ```no_run
//! use testkit::kube_api::{ApiServer, Denial};
//!
//! let api = ApiServer::start().unwrap(); // HTTPS on 127.0.0.1:<free port>
//! api.create(serde_json::json!({
//!     "apiVersion": "v1", "kind": "Pod",
//!     "metadata": {"name": "web", "namespace": "default"},
//!     "spec": {"containers": [{"name": "app", "image": "nginx"}]},
//! })).unwrap();
//! // KUBECONFIG=api.kubeconfig() kubectl get pods  ⇒  web
//! api.set_denied(&[Denial::new("create", "apps", "daemonsets")]);
//! ```
//!
//! What it serves, over HTTPS (its own CA, made with rcgen, in the
//! kubeconfig; HTTP/1.1) with a bearer token, in real Kubernetes JSON:
//! - `/version` (v1.32), discovery (`/api`, `/api/v1`, `/apis`,
//!   `/apis/<group>[/<version>]`; a client asking for aggregated discovery
//!   gets the plain documents, which client-go accepts as a fallback), and
//!   `/healthz`, `/livez`, `/readyz`.
//! - core/v1 Namespace, Pod (with `log`, `portforward`, `status`), Node,
//!   Service, ServiceAccount, Secret, ConfigMap, Event, Endpoints; apps/v1
//!   Deployment, DaemonSet, ReplicaSet; rbac.authorization.k8s.io/v1 roles
//!   and bindings; authorization.k8s.io/v1 SelfSubjectAccessReview.
//! - get, list (`labelSelector`, `fieldSelector`, one namespace or all),
//!   watch (from a resourceVersion, BOOKMARKs each second with
//!   `allowWatchBookmarks`, `timeoutSeconds`, `sendInitialEvents`, an ERROR
//!   event with 410 Expired when the resourceVersion is older than the kept
//!   history of [`HISTORY`] changes), create, update (PUT, with the
//!   resourceVersion precondition), delete (a namespace takes what is in it),
//!   deletecollection, patch: server-side apply, JSON merge patch and
//!   strategic merge patch (as merge patch: lists are replaced whole).
//! - `kubectl get`'s Table (`meta.k8s.io/v1`, the real columns for the
//!   common kinds, in watches too) and `PartialObjectMetadata`.
//! - failures as the real server words them: 401 after [`ApiServer::expire_token`],
//!   403 for the [`Denial`]s (and SelfSubjectAccessReview says no), 404 for
//!   missing objects and namespaces, 409, 410, 413 past [`MAX_BODY`], 422.
//! - `pods/portforward` to the address given by
//!   [`ApiServer::set_port_forward`]: WebSocket `v4.channel.k8s.io` (kube-rs's
//!   protocol) and SPDY/3.1 (`kubectl port-forward`'s), tunnelled in a
//!   WebSocket or plain.
//!
//! What it approximates: server-side apply (see the `apply` module: lists are atomic,
//! conflicts are exact-field only; the applied configuration is read as
//! JSON, which kubectl and kube-rs send, a YAML one is a 400); objects are deleted at once (no
//! finalizers, no graceful deletion, no garbage collection of dependents);
//! `limit` returns everything with no `continue`; a list's `resourceVersion`
//! parameter is answered with the current state. What it does not do:
//! admission, validation beyond names, defaulting beyond what is listed in
//! `store`, controllers (a Deployment makes no pods), protobuf answers and
//! protobuf bodies beyond the few kubectl's typed clients send (see
//! `protobuf`: namespaces, config maps, access reviews), OpenAPI
//! (`kubectl apply` needs `--validate=false`), exec/attach, and HTTP/2.

mod apply;
pub mod kubelet;
mod portforward;
mod protobuf;
mod resources;
mod selector;
mod serve;
mod spdy;
mod status;
mod store;
mod table;

pub use status::{Details, Failure};
pub use store::HISTORY;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use serde_json::{Value, json};

use crate::TempDir;
use store::Store;

/// The largest request body read; larger ones get 413.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// How many requests [`ApiServer::requests`] keeps (the newest).
pub const REQUEST_LOG: usize = 10_000;

/// The user the token stands for, in 403 messages.
pub const USER: &str = "kubetap-test";

/// The kubeconfig's context (and cluster and user) name.
pub const CONTEXT: &str = "kubetap-test";

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum KubeApiError {
    #[error("cannot make the test API server's certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot set up the test API server's TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("test API server: {what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

/// A request the SelfSubjectAccessReview and the real request are refused
/// for (403 Forbidden).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, or `*`. A port-forward is `create` (as RBAC has it).
    pub verb: String,
    /// `""` for the core group.
    pub group: String,
    /// The plural, or `pods/portforward` for a subresource.
    pub resource: String,
    /// `None`: in every namespace and at the cluster scope.
    pub namespace: Option<String>,
}

impl Denial {
    pub fn new(verb: &str, group: &str, resource: &str) -> Denial {
        Denial {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: None,
        }
    }

    /// Only in `namespace`.
    pub fn in_namespace(mut self, namespace: &str) -> Denial {
        self.namespace = Some(namespace.into());
        self
    }
}

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The HTTP method.
    pub method: String,
    /// The Kubernetes verb (`get`, `list`, `watch`, `create`, …), or the
    /// method in lower case for paths that are no resource (`/version`).
    pub verb: String,
    pub path: String,
    /// The raw query string.
    pub query: String,
    pub watch: bool,
    /// The answer's HTTP status (200 for a watch that started).
    pub status: u16,
}

/// State shared by the server's tasks and the test.
pub(crate) struct Shared {
    store: Mutex<Store>,
    token: String,
    expired: AtomicBool,
    /// Milliseconds every request waits before it is answered.
    pub(crate) latency_ms: AtomicU64,
    denials: Mutex<Vec<Denial>>,
    requests: Mutex<VecDeque<RequestRecord>>,
    /// (namespace, pod, container) → log text.
    logs: Mutex<HashMap<(String, String, String), String>>,
    /// (namespace, pod, port) → where a port-forward connects.
    forwards: Mutex<HashMap<(String, String, u16), SocketAddr>>,
    addr: SocketAddr,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not take the server down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    fn record(&self, record: RequestRecord) {
        let mut log = lock(&self.requests);
        if log.len() == REQUEST_LOG {
            log.pop_front();
        }
        log.push_back(record);
    }

    /// The denial that refuses this request, if any.
    fn denied(&self, verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> bool {
        lock(&self.denials).iter().any(|d| {
            (d.verb == verb || d.verb == "*")
                && d.group == group
                && d.resource == resource
                && (d.namespace.is_none() || d.namespace.as_deref() == namespace)
        })
    }
}

/// The running server; dropping it stops it (its thread ends, open
/// connections and watches are closed).
pub struct ApiServer {
    shared: Arc<Shared>,
    /// Its CA's certificate (PEM).
    ca_pem: String,
    dir: TempDir,
    kubeconfig: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    /// Starts a server on 127.0.0.1 with a free port, a fresh CA, and a
    /// kubeconfig for it. Namespaces `default`, `kube-system`, `kube-public`
    /// and `kube-node-lease` exist, as in a new cluster.
    pub fn start() -> Result<ApiServer, KubeApiError> {
        ApiServer::start_on(std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// [`ApiServer::start`] on `ip` (a node's address, for pods that reach
    /// it as the in-cluster API server), its certificate valid for `ip` and
    /// 127.0.0.1.
    pub fn start_on(ip: std::net::IpAddr) -> Result<ApiServer, KubeApiError> {
        let io = |what| move |source| KubeApiError::Io { what, source };
        let (ca_pem, tls) = serve::tls_config(ip)?;
        let listener = std::net::TcpListener::bind((ip, 0)).map_err(io("binding the listener"))?;
        listener
            .set_nonblocking(true)
            .map_err(io("setting the listener non-blocking"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the listener's address"))?;
        let token: String = (0..32).map(|_| fastrand::alphanumeric()).collect();
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            token: token.clone(),
            expired: AtomicBool::new(false),
            latency_ms: AtomicU64::new(0),
            denials: Mutex::new(Vec::new()),
            requests: Mutex::new(VecDeque::new()),
            logs: Mutex::new(HashMap::new()),
            forwards: Mutex::new(HashMap::new()),
            addr,
        });
        let dir = TempDir::new("kube-api");
        let kubeconfig = dir.path("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(addr, &ca_pem, &token))
            .map_err(io("writing the kubeconfig"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("starting its runtime"))?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("kube-api".into())
            .spawn(move || {
                runtime.block_on(serve::run(listener, tls, state, stopped));
                // Dropping the runtime ends every connection and watch.
                drop(runtime);
            })
            .map_err(io("starting its thread"))?;
        Ok(ApiServer {
            shared,
            ca_pem,
            dir,
            kubeconfig,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.shared.addr)
    }

    /// A kubeconfig (JSON, which is YAML) for it: cluster with
    /// `certificate-authority-data`, user with the bearer token, context
    /// [`CONTEXT`] with namespace `default`, current.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The server's temporary directory (for a client's cache, say).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its CA's certificate (PEM), as the kubeconfig and a service
    /// account's `ca.crt` hold it.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token it accepts.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Refuses these requests from now on (replacing earlier denials).
    pub fn set_denied(&self, denials: &[Denial]) {
        *lock(&self.shared.denials) = denials.to_vec();
    }

    /// Every request is 401 Unauthorized from now on, as with expired
    /// credentials.
    pub fn expire_token(&self) {
        self.shared.expired.store(true, Ordering::SeqCst);
    }

    /// Every request waits `latency` before it is answered from now on, as
    /// on a slow or distant API server.
    pub fn set_latency(&self, latency: std::time::Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.shared.latency_ms.store(ms, Ordering::SeqCst);
    }

    /// The requests answered so far (the newest [`REQUEST_LOG`]).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).iter().cloned().collect()
    }

    /// Forgets the requests answered so far.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Stores an object as given (status too), as a controller would have
    /// made it: its kind from `apiVersion` and `kind`, its namespace from
    /// `metadata.namespace` (`default` when missing). The stored object.
    pub fn create(&self, object: Value) -> Result<Value, Failure> {
        let (r, namespace) = kind_of(&object)?;
        self.shared
            .store()
            .create(r, &namespace, object, None, false)
    }

    /// Replaces a stored object with `object` (status too): a new
    /// resourceVersion and a MODIFIED event.
    pub fn update(&self, object: Value) -> Result<Value, Failure> {
        let (r, namespace) = kind_of(&object)?;
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.shared
            .store()
            .commit(r, &namespace, &name, object, false)
    }

    /// An object by kind (`Pod`, `pods` or `po`), namespace (ignored for
    /// cluster-scoped kinds) and name.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let r = resources::lookup(kind, None)?;
        let namespace = if r.namespaced { namespace } else { "" };
        self.shared.store().get(r, namespace, name).cloned()
    }

    /// Deletes an object (a namespace with everything in it); the object as
    /// it was.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<Value, Failure> {
        let r = resources::lookup(kind, None)
            .ok_or_else(|| Failure::bad_request(format!("no kind {kind:?} is served")))?;
        let namespace = if r.namespaced { namespace } else { "" };
        self.shared.store().delete(r, namespace, name, false)
    }

    /// The objects of a kind, in `namespace` or (`None`) all.
    pub fn list(&self, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let Some(r) = resources::lookup(kind, None) else {
            return Vec::new();
        };
        self.shared.store().list(r, namespace).cloned().collect()
    }

    /// The current resourceVersion (of the last change).
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// What `pods/log` answers for this container.
    pub fn set_pod_log(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        lock(&self.shared.logs).insert(
            (namespace.into(), pod.into(), container.into()),
            text.into(),
        );
    }

    /// What `pods/log` answers for this container, if anything was set.
    pub fn pod_log(&self, namespace: &str, pod: &str, container: &str) -> Option<String> {
        lock(&self.shared.logs)
            .get(&(namespace.into(), pod.into(), container.into()))
            .cloned()
    }

    /// Where a port-forward to `port` of this pod connects (looked up as a
    /// WebSocket v4 forward starts, and for each of kubectl's connections).
    pub fn set_port_forward(&self, namespace: &str, pod: &str, port: u16, to: SocketAddr) {
        lock(&self.shared.forwards).insert((namespace.into(), pod.into(), port), to);
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The served kind and namespace of an object given by a test.
fn kind_of(object: &Value) -> Result<(&'static resources::Resource, String), Failure> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let r = resources::lookup(kind, object["apiVersion"].as_str())
        .filter(|r| r.kind == kind && !r.virtual_only)
        .ok_or_else(|| {
            Failure::bad_request(format!(
                "no kind {kind:?} in {:?} is stored by the test API server",
                object["apiVersion"]
            ))
        })?;
    let namespace = match r.namespaced {
        true => object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string(),
        false => String::new(),
    };
    Ok((r, namespace))
}

fn kubeconfig_text(addr: SocketAddr, ca_pem: &str, token: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {
            "server": format!("https://{addr}"),
            "certificate-authority-data": ca,
        }}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [{"name": CONTEXT, "context": {
            "cluster": CONTEXT, "user": CONTEXT, "namespace": "default",
        }}],
        "current-context": CONTEXT,
        "preferences": {},
    });
    serde_json::to_string_pretty(&config).expect("a kubeconfig serializes")
}
