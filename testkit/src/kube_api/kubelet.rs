//! A simulated kubelet (and the two controllers kubetap's chart needs) for
//! the test API server: what makes an installed kubetap actually run in
//! tests, its Pods' containers started as processes on a testkit [`Node`].
//!
//! Every [`TICK`] it reads the server's store (in process: it makes no HTTP
//! request, so it never shows in [`ApiServer::requests`]) and:
//! - as the Deployment and DaemonSet controllers: makes a Pod from the
//!   template of each Deployment without one and of each DaemonSet without
//!   one on this node (`<owner>-<5 letters>`, `ownerReferences`, `nodeName`),
//!   deletes Pods whose owner is gone, and writes the owners' status
//!   (`readyReplicas`, `numberReady`, …);
//! - as the kubelet of one node: runs each Pod bound to it whose every
//!   image it knows (the images map: an image's name without registry and
//!   tag → the binary that is its entrypoint); other Pods are the test's own
//!   and left alone. A Pod gets a network namespace of the node (a testkit
//!   pod: veth, address, route) or, with `hostNetwork`, the node's. Each
//!   container runs as
//!   `ip netns exec <ns> unshare --mount -- sh -c '<mounts>' setpriv … <binary> <args>`:
//!   in a mount namespace of its own, read-only overlays on `/etc` and
//!   `/run` add its Secret volumes at their `mountPath` (only under those
//!   two), the service account's token, `ca.crt` and namespace (unless
//!   `automountServiceAccountToken: false`), and an `/etc/hosts` naming the
//!   Services (`<svc>.<ns>.svc`, …) by the address of a ready Pod they
//!   select (there is no kube-proxy: a Service is its Pod); `/` is read-only
//!   with `readOnlyRootFilesystem`; `setpriv` applies `runAsUser`,
//!   `runAsGroup`, `fsGroup`, `runAsNonRoot` (refused as the kubelet
//!   refuses it), the capabilities (`drop: [ALL]` and `add`; otherwise the
//!   container runtime's default set) and `allowPrivilegeEscalation: false`
//!   (no_new_privs). Environment: only the Pod's (`value`, `fieldRef`,
//!   `secretKeyRef`, `$(VAR)` in args), `PATH`, `HOME=/`, `HOSTNAME` and
//!   `KUBERNETES_SERVICE_HOST`/`_PORT` (the API server's address), and
//!   `KUBETAP_LOG` when the test has it (to debug a test);
//! - writes each Pod's status (phase, addresses, conditions, container
//!   states, restarts) when it changes; readiness from the `httpGet`
//!   readiness probe (every second), a container that exits is started
//!   again after a second (restarts counted, `CrashLoopBackOff` meanwhile);
//!   its output is the Pod's log (`pods/log`, the last [`LOG_BYTES`], made
//!   the log at each tick when it grew);
//!   each container port is where a port-forward to the Pod leads;
//! - makes the Node object (its kernel's version from `uname -r`).
//!
//! Not simulated: liveness probes, resource limits, init containers, image
//! pulls, scheduling beyond one node, events.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::ApiServer;
use crate::{Node, Pod, Process, TempDir};

/// How often the store is read.
pub const TICK: Duration = Duration::from_millis(200);
/// A Pod's log kept, at most (its newest bytes).
pub const LOG_BYTES: usize = 256 * 1024;
/// How long a container that exited waits before it starts again.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// How often a readiness probe runs.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// The container runtime's capabilities when a container drops none.
const DEFAULT_CAPS: [&str; 14] = [
    "chown",
    "dac_override",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "net_bind_service",
    "net_raw",
    "sys_chroot",
    "mknod",
    "audit_write",
    "setfcap",
];
/// The script each container starts with: overlays (`$1` on /etc, `$2` on
/// /run), `/` read-only when `$3` is 1, then the rest of the arguments.
const CONTAINER_SCRIPT: &str = r#"set -e
mount -t overlay kubetap-etc -o "lowerdir=$1:/etc" /etc
mount -t overlay kubetap-run -o "lowerdir=$2:/run" /run
if [ "$3" = 1 ]; then mount -o remount,bind,ro /; fi
shift 3
exec "$@""#;

/// The running kubelet; dropping it stops every container it started and
/// removes their pods' namespaces (the API objects stay).
pub struct Kubelet {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Kubelet {
    /// Starts the kubelet of `node`, named `node_name` in the API, running
    /// the images of `images` (name → binary). Its thread runs in the
    /// node's network namespace (the probes and port-forwards reach the
    /// pods from there).
    pub fn start(
        api: Arc<ApiServer>,
        node: Arc<Node>,
        node_name: &str,
        images: &[(&str, PathBuf)],
    ) -> Result<Kubelet, crate::NetnsError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut state = State {
            api,
            node: node.clone(),
            node_name: node_name.to_string(),
            images: images
                .iter()
                .map(|(n, p)| (n.to_string(), p.clone()))
                .collect(),
            running: BTreeMap::new(),
        };
        let flag = stop.clone();
        let thread = crate::spawn_in_netns(node.netns(), move || {
            state.ensure_node();
            while !flag.load(Ordering::Relaxed) {
                state.tick();
                std::thread::sleep(TICK);
            }
            state.running.clear();
        })?;
        Ok(Kubelet {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    api: Arc<ApiServer>,
    node: Arc<Node>,
    node_name: String,
    images: HashMap<String, PathBuf>,
    /// (namespace, name) → the pod run.
    running: BTreeMap<(String, String), Running>,
}

/// A Pod this kubelet runs.
struct Running {
    uid: String,
    /// Its network namespace (None: the node's).
    netns: Option<Pod>,
    node: Arc<Node>,
    ip: IpAddr,
    /// Its files: binaries, the /etc and /run layers.
    dir: TempDir,
    containers: Vec<Container>,
    started: String,
    /// Why it cannot run (a waiting reason and message), if so.
    refused: Option<(String, String)>,
    /// When its containers were last prepared.
    tried: Instant,
    written: Value,
}

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.containers {
            c.process = None;
        }
        if let Some(pod) = self.netns.take() {
            let _ = self.node.remove_pod(pod);
        }
    }
}

struct Container {
    name: String,
    image: String,
    command: Vec<String>,
    env: Vec<(String, String)>,
    process: Option<Process>,
    restarts: u32,
    exited: Option<(Instant, i32)>,
    started_at: String,
    /// (path, port) of its readiness probe.
    probe: Option<(String, u16)>,
    /// Its output (the newest [`LOG_BYTES`]), and whether it changed since
    /// it was last made the Pod's log.
    log: Arc<Mutex<(String, bool)>>,
    ready: bool,
    probed: Option<Instant>,
}

fn now() -> String {
    super::store::now()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn name_of(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace_of(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// The image's name without registry and tag: `r.example/x/tap-hub:1` →
/// `tap-hub`.
fn image_name(image: &str) -> &str {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split([':', '@']).next().unwrap_or(last)
}

/// Five lower-case letters and digits, as a ReplicaSet's pods get.
fn suffix() -> String {
    (0..5)
        .map(|_| {
            let c = fastrand::alphanumeric().to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { 'x' }
        })
        .collect()
}

impl State {
    fn ensure_node(&self) {
        if self.api.get("Node", "", &self.node_name).is_some() {
            return;
        }
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let ip = self.node.gateway().to_string();
        let _ = self.api.create(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node_name, "labels": {
                "kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux"}},
            "status": {
                "nodeInfo": {"kernelVersion": kernel, "kubeletVersion": "v1.32.0-testkit",
                    "osImage": "testkit", "containerRuntimeVersion": "testkit://1",
                    "architecture": "amd64", "operatingSystem": "linux",
                    "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": ""},
                "addresses": [{"type": "InternalIP", "address": ip},
                    {"type": "Hostname", "address": self.node_name}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            },
        }));
    }

    fn tick(&mut self) {
        let pods = self.api.list("Pod", None);
        self.controllers(&pods);
        let pods = self.api.list("Pod", None);
        self.kubelet(&pods);
        self.owner_status();
    }

    /// Pods for Deployments and DaemonSets; Pods of owners gone deleted.
    fn controllers(&self, pods: &[Value]) {
        let owned_by = |uid: &str| -> Vec<&Value> {
            pods.iter()
                .filter(|p| {
                    p["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|o| o.iter().any(|r| r["uid"] == uid))
                })
                .collect()
        };
        for (kind, per_node) in [("Deployment", false), ("DaemonSet", true)] {
            for owner in self.api.list(kind, None) {
                let uid = owner["metadata"]["uid"].as_str().unwrap_or_default();
                let mine = owned_by(uid);
                let wanted = if per_node {
                    !mine
                        .iter()
                        .any(|p| p["spec"]["nodeName"] == self.node_name.as_str())
                } else {
                    let replicas = owner["spec"]["replicas"].as_u64().unwrap_or(1);
                    (mine.len() as u64) < replicas
                };
                if wanted {
                    self.make_pod(kind, &owner);
                }
            }
        }
        for p in pods {
            let Some(refs) = p["metadata"]["ownerReferences"].as_array() else {
                continue;
            };
            for r in refs {
                let kind = r["kind"].as_str().unwrap_or_default();
                if !matches!(kind, "Deployment" | "DaemonSet") {
                    continue;
                }
                let alive = self
                    .api
                    .get(
                        kind,
                        namespace_of(p),
                        r["name"].as_str().unwrap_or_default(),
                    )
                    .is_some_and(|o| o["metadata"]["uid"] == r["uid"]);
                if !alive {
                    let _ = self.api.delete("Pod", namespace_of(p), name_of(p));
                }
            }
        }
    }

    fn make_pod(&self, kind: &str, owner: &Value) {
        let template = &owner["spec"]["template"];
        let mut metadata = template["metadata"].clone();
        if !metadata.is_object() {
            metadata = json!({});
        }
        metadata["name"] = format!("{}-{}", name_of(owner), suffix()).into();
        metadata["namespace"] = namespace_of(owner).into();
        metadata["ownerReferences"] = json!([{
            "apiVersion": owner["apiVersion"], "kind": kind, "name": name_of(owner),
            "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);
        let mut spec = template["spec"].clone();
        spec["nodeName"] = self.node_name.as_str().into();
        let _ = self.api.create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
            "status": {"phase": "Pending"},
        }));
    }

    /// Starts the Pods bound here, stops those gone, writes their status.
    fn kubelet(&mut self, pods: &[Value]) {
        let mine: Vec<&Value> = pods
            .iter()
            .filter(|p| p["spec"]["nodeName"] == self.node_name.as_str())
            .filter(|p| {
                p["spec"]["containers"].as_array().is_some_and(|cs| {
                    cs.iter().all(|c| {
                        self.images
                            .contains_key(image_name(c["image"].as_str().unwrap_or_default()))
                    })
                })
            })
            .collect();
        let key = |p: &Value| (namespace_of(p).to_string(), name_of(p).to_string());
        self.running.retain(|k, r| {
            mine.iter()
                .any(|p| key(p) == *k && p["metadata"]["uid"] == r.uid.as_str())
        });
        for p in &mine {
            if !self.running.contains_key(&key(p)) {
                let run = self.run(p);
                self.running.insert(key(p), run);
            }
        }
        let hosts = self.hosts(pods);
        let keys: Vec<(String, String)> = self.running.keys().cloned().collect();
        for k in keys {
            let Some(pod) = mine.iter().find(|p| key(p) == k).copied() else {
                continue;
            };
            let secrets = self.secrets_of(pod);
            let Some(r) = self.running.get_mut(&k) else {
                continue;
            };
            // A missing Secret, say: tried again, as the kubelet does.
            if r.refused
                .as_ref()
                .is_some_and(|(why, _)| why == "CreateContainerConfigError")
                && r.tried.elapsed() >= RESTART_DELAY
            {
                r.tried = Instant::now();
                r.containers.clear();
                r.refused = r
                    .prepare(pod, &self.api, &self.images, &secrets)
                    .err()
                    .map(|why| ("CreateContainerConfigError".to_string(), why));
            }
            // In place: a container's /etc/hosts is this file, through its
            // overlay.
            let _ = rewrite(&r.dir.path("etc").join("hosts"), &hosts);
            r.step(pod, &self.api);
            let status = r.status(pod);
            if status != r.written {
                let mut updated = pod.clone();
                updated["status"] = status.clone();
                if self.api.update(updated).is_ok() {
                    r.written = status;
                }
            }
        }
    }

    /// The Secrets a Pod's volumes and environment read, by name.
    fn secrets_of(&self, pod: &Value) -> HashMap<String, Value> {
        self.api
            .list("Secret", Some(namespace_of(pod)))
            .into_iter()
            .map(|s| (name_of(&s).to_string(), s))
            .collect()
    }

    /// `/etc/hosts`: localhost, and each Service's names at the address of
    /// a ready Pod it selects.
    fn hosts(&self, pods: &[Value]) -> String {
        let mut text = String::from("127.0.0.1\tlocalhost\n");
        for svc in self.api.list("Service", None) {
            let Some(selector) = svc["spec"]["selector"].as_object() else {
                continue;
            };
            let ns = namespace_of(&svc);
            let ready = pods.iter().find(|p| {
                namespace_of(p) == ns
                    && selector
                        .iter()
                        .all(|(k, v)| p["metadata"]["labels"][k] == *v)
                    && is_ready(p)
            });
            if let Some(ip) = ready.and_then(|p| p["status"]["podIP"].as_str()) {
                let name = name_of(&svc);
                text.push_str(&format!(
                    "{ip}\t{name}.{ns}.svc.cluster.local {name}.{ns}.svc {name}.{ns}\n"
                ));
            }
        }
        text
    }

    /// Prepares a Pod: its network, files and containers (started by
    /// `step`), or why it cannot run.
    fn run(&self, pod: &Value) -> Running {
        let name = name_of(pod);
        let dir = TempDir::new("kubelet-pod");
        let mut refused = None;
        let (netns, ip) = if pod["spec"]["hostNetwork"] == true {
            (None, IpAddr::from(self.node.gateway()))
        } else {
            match self.node.pod(name) {
                Ok(p) => {
                    let ip = IpAddr::from(p.ip);
                    (Some(p), ip)
                }
                Err(e) => {
                    refused = Some(("CreatePodSandboxError".into(), e.to_string()));
                    (None, IpAddr::from(self.node.gateway()))
                }
            }
        };
        let mut running = Running {
            uid: pod["metadata"]["uid"].as_str().unwrap_or_default().into(),
            netns,
            node: self.node.clone(),
            ip,
            dir,
            containers: Vec::new(),
            started: now(),
            refused,
            tried: Instant::now(),
            written: Value::Null,
        };
        if running.refused.is_none()
            && let Err(why) = running.prepare(pod, &self.api, &self.images, &self.secrets_of(pod))
        {
            running.refused = Some(("CreateContainerConfigError".into(), why));
        }
        running
    }

    /// The owners' status, from their Pods', when it changed.
    fn owner_status(&self) {
        let pods = self.api.list("Pod", None);
        for kind in ["Deployment", "DaemonSet"] {
            for owner in self.api.list(kind, None) {
                let uid = &owner["metadata"]["uid"];
                let mine: Vec<&Value> = pods
                    .iter()
                    .filter(|p| {
                        p["metadata"]["ownerReferences"]
                            .as_array()
                            .is_some_and(|o| o.iter().any(|r| r["uid"] == *uid))
                    })
                    .collect();
                let (n, r) = (mine.len(), mine.iter().filter(|p| is_ready(p)).count());
                let generation = owner["metadata"]["generation"].clone();
                let status = if kind == "Deployment" {
                    json!({"observedGeneration": generation, "replicas": n, "updatedReplicas": n,
                        "readyReplicas": r, "availableReplicas": r, "unavailableReplicas": n - r})
                } else {
                    json!({"observedGeneration": generation, "desiredNumberScheduled": 1,
                        "currentNumberScheduled": n, "updatedNumberScheduled": n,
                        "numberReady": r, "numberAvailable": r, "numberMisscheduled": 0,
                        "numberUnavailable": 1 - r.min(1)})
                };
                if owner["status"] != status {
                    let mut updated = owner.clone();
                    updated["status"] = status;
                    let _ = self.api.update(updated);
                }
            }
        }
    }
}

/// Writes `text` into `path`'s own inode (a reader through an overlay sees
/// it), unless it holds it already.
fn rewrite(path: &Path, text: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// A Secret's key, decoded.
fn secret_value(secret: &Value, key: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    if let Some(s) = secret["stringData"][key].as_str() {
        return Some(s.as_bytes().to_vec());
    }
    base64::engine::general_purpose::STANDARD
        .decode(secret["data"][key].as_str()?)
        .ok()
}

/// `$(VAR)` in `s` replaced from `env` (unknown ones kept, as Kubernetes
/// does).
fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = s.to_string();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32, group: Option<u32>) -> Result<(), String> {
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(g) = group {
        std::os::unix::fs::chown(path, None, Some(g))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    set_mode(path, mode)
}

impl Running {
    /// Files (volumes, service account, hosts, binaries) and the
    /// containers' command lines.
    fn prepare(
        &mut self,
        pod: &Value,
        api: &ApiServer,
        images: &HashMap<String, PathBuf>,
        secrets: &HashMap<String, Value>,
    ) -> Result<(), String> {
        let spec = &pod["spec"];
        let (etc, run, bin) = (
            self.dir.path("etc"),
            self.dir.path("run"),
            self.dir.path("bin"),
        );
        // Its users (runAsUser) reach their binary and files through it.
        set_mode(self.dir.root(), 0o755)?;
        for d in [&etc, &run, &bin] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            // The overlay's root takes the top layer's mode.
            set_mode(d, 0o755)?;
        }
        write_file(&etc.join("hosts"), b"127.0.0.1\tlocalhost\n", 0o644, None)?;
        let pod_sc = &spec["securityContext"];
        let fs_group = pod_sc["fsGroup"]
            .as_u64()
            .and_then(|g| u32::try_from(g).ok());
        let ns = namespace_of(pod);
        if spec["automountServiceAccountToken"] != false {
            let sa = run.join("secrets/kubernetes.io/serviceaccount");
            write_file(&sa.join("token"), api.token().as_bytes(), 0o644, None)?;
            write_file(&sa.join("ca.crt"), api.ca_pem().as_bytes(), 0o644, None)?;
            write_file(&sa.join("namespace"), ns.as_bytes(), 0o644, None)?;
        }
        let volumes: HashMap<&str, &Value> = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| (v["name"].as_str().unwrap_or_default(), v))
            .collect();
        for c in spec["containers"].as_array().into_iter().flatten() {
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let vname = m["name"].as_str().unwrap_or_default();
                let path = m["mountPath"].as_str().unwrap_or_default();
                let v = volumes
                    .get(vname)
                    .ok_or_else(|| format!("volume {vname:?} is not in the pod"))?;
                if let Some(host) = v["hostPath"]["path"].as_str() {
                    if host == path {
                        // The host's own file at its own place.
                        continue;
                    }
                    return Err(format!(
                        "hostPath {host} at {path}: only at its own path here"
                    ));
                }
                let Some(secret_name) = v["secret"]["secretName"].as_str() else {
                    return Err(format!(
                        "volume {vname:?}: only secret and hostPath volumes here"
                    ));
                };
                let (layer, rest) = if let Some(rest) = path.strip_prefix("/etc/") {
                    (&etc, rest)
                } else if let Some(rest) = path
                    .strip_prefix("/run/")
                    .or_else(|| path.strip_prefix("/var/run/"))
                {
                    (&run, rest)
                } else {
                    return Err(format!("mountPath {path}: only under /etc and /run here"));
                };
                let secret = secrets
                    .get(secret_name)
                    .ok_or_else(|| format!("secret \"{secret_name}\" not found"))?;
                let mode = v["secret"]["defaultMode"].as_u64().unwrap_or(0o644) as u32;
                let keys: Vec<String> = secret["data"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k.clone())
                    .collect();
                let into = layer.join(rest);
                std::fs::create_dir_all(&into).map_err(|e| format!("{}: {e}", into.display()))?;
                let mut d = into.clone();
                while d.starts_with(layer) && d != *layer {
                    set_mode(&d, 0o755)?;
                    d.pop();
                }
                for k in keys {
                    let bytes = secret_value(secret, &k).unwrap_or_default();
                    write_file(&into.join(&k), &bytes, mode, fs_group)?;
                }
            }
        }
        for c in spec["containers"].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            let image = c["image"].as_str().unwrap_or_default().to_string();
            let source = &images[image_name(&image)];
            let binary = bin.join(image_name(&image));
            if !binary.exists() {
                std::fs::copy(source, &binary).map_err(|e| format!("{}: {e}", source.display()))?;
                set_mode(&binary, 0o755)?;
            }
            let env = self.env_of(pod, c, secrets)?;
            let sc = &c["securityContext"];
            let pick = |k: &str| sc[k].as_u64().or_else(|| pod_sc[k].as_u64());
            let non_root = sc["runAsNonRoot"]
                .as_bool()
                .or_else(|| pod_sc["runAsNonRoot"].as_bool())
                .unwrap_or(false);
            let user = pick("runAsUser");
            if non_root && user.unwrap_or(0) == 0 {
                return Err("container has runAsNonRoot and image will run as root".to_string());
            }
            let mut command = vec![
                "ip".to_string(),
                "netns".into(),
                "exec".into(),
                self.netns
                    .as_ref()
                    .map_or_else(|| self.node.netns().to_string(), |p| p.netns.clone()),
                "unshare".into(),
                "--mount".into(),
                "--propagation".into(),
                "private".into(),
                "--".into(),
                "sh".into(),
                "-c".into(),
                CONTAINER_SCRIPT.into(),
                "sh".into(),
                etc.display().to_string(),
                run.display().to_string(),
                if sc["readOnlyRootFilesystem"] == true {
                    "1"
                } else {
                    "0"
                }
                .into(),
            ];
            if sc["privileged"] != true {
                command.push("setpriv".into());
                if let Some(u) = user {
                    command.push(format!("--reuid={u}"));
                    command.push(format!("--regid={}", pick("runAsGroup").unwrap_or(0)));
                    match fs_group {
                        Some(g) => command.push(format!("--groups={g}")),
                        None => command.push("--clear-groups".into()),
                    }
                }
                if sc["allowPrivilegeEscalation"] == false {
                    command.push("--no-new-privs".into());
                }
                let caps = &sc["capabilities"];
                let list = |k: &str| -> Vec<String> {
                    caps[k]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
                        .collect()
                };
                let (drop, add) = (list("drop"), list("add"));
                let mut keep: Vec<String> = if drop.iter().any(|d| d == "all") {
                    Vec::new()
                } else {
                    DEFAULT_CAPS
                        .iter()
                        .map(|c| c.to_string())
                        .filter(|c| !drop.contains(c))
                        .collect()
                };
                keep.extend(add);
                let mut bounding = String::from("-all");
                for c in &keep {
                    bounding.push_str(&format!(",+{c}"));
                }
                command.push(format!("--bounding-set={bounding}"));
                command.push("--inh-caps=-all".into());
                command.push("--".into());
            }
            let args = |k: &str| -> Vec<String> {
                c[k].as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|a| expand(a, &env))
                    .collect()
            };
            let (cmd, args) = (args("command"), args("args"));
            if cmd.is_empty() {
                command.push(binary.display().to_string());
            } else {
                command.extend(cmd);
            }
            command.extend(args);
            let probe = c["readinessProbe"]["httpGet"].as_object().and_then(|g| {
                let path = g.get("path")?.as_str().unwrap_or("/").to_string();
                let port = match g.get("port")? {
                    Value::String(named) => c["ports"]
                        .as_array()?
                        .iter()
                        .find(|p| p["name"] == named.as_str())?["containerPort"]
                        .as_u64()?,
                    n => n.as_u64()?,
                };
                Some((path, u16::try_from(port).ok()?))
            });
            for p in c["ports"].as_array().into_iter().flatten() {
                if let Some(port) = p["containerPort"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                {
                    api.set_port_forward(ns, name_of(pod), port, SocketAddr::new(self.ip, port));
                }
            }
            self.containers.push(Container {
                name,
                image,
                command,
                env,
                process: None,
                restarts: 0,
                exited: None,
                started_at: String::new(),
                ready: probe.is_none(),
                probe,
                probed: None,
                log: Arc::default(),
            });
        }
        Ok(())
    }

    /// The container's environment: the Pod's, then the runtime's.
    fn env_of(
        &self,
        pod: &Value,
        c: &Value,
        secrets: &HashMap<String, Value>,
    ) -> Result<Vec<(String, String)>, String> {
        let mut env = Vec::new();
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or_default().to_string();
            let value = if let Some(v) = e["value"].as_str() {
                expand(v, &env)
            } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match path {
                    "spec.nodeName" => pod["spec"]["nodeName"].as_str().unwrap_or_default().into(),
                    "metadata.name" => name_of(pod).into(),
                    "metadata.namespace" => namespace_of(pod).into(),
                    "status.podIP" | "status.hostIP" => self.ip.to_string(),
                    other => return Err(format!("fieldRef {other}: not served here")),
                }
            } else if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
                let (s, k) = (
                    r.get("name").and_then(Value::as_str).unwrap_or_default(),
                    r.get("key").and_then(Value::as_str).unwrap_or_default(),
                );
                let bytes = secrets
                    .get(s)
                    .and_then(|secret| secret_value(secret, k))
                    .ok_or_else(|| {
                        format!("couldn't find key {k} in Secret {}/{s}", namespace_of(pod))
                    })?;
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                String::new()
            };
            env.push((name, value));
        }
        Ok(env)
    }

    /// Starts what is not running, restarts what exited, probes.
    fn step(&mut self, pod: &Value, api: &Arc<ApiServer>) {
        if self.refused.is_some() {
            return;
        }
        let api_addr = api.addr();
        let ip = self.ip;
        let (ns, name) = (namespace_of(pod).to_string(), name_of(pod).to_string());
        for c in &mut self.containers {
            if let Some(p) = &mut c.process
                && let Ok(Some(status)) = p.try_wait()
            {
                c.exited = Some((Instant::now(), status.code().unwrap_or(-1)));
                c.process = None;
                c.ready = false;
                c.restarts += 1;
            }
            let due = c.exited.is_none_or(|(at, _)| at.elapsed() >= RESTART_DELAY);
            if c.process.is_none() && due {
                let mut cmd = Command::new(&c.command[0]);
                cmd.args(&c.command[1..])
                    .env_clear()
                    .env(
                        "PATH",
                        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    )
                    .env("HOME", "/")
                    .env("HOSTNAME", &name)
                    .env("KUBERNETES_SERVICE_HOST", api_addr.ip().to_string())
                    .env("KUBERNETES_SERVICE_PORT", api_addr.port().to_string())
                    .envs(c.env.iter().map(|(k, v)| (k, v)))
                    // For debugging a test: its log level, passed on.
                    .envs(std::env::var("KUBETAP_LOG").map(|v| ("KUBETAP_LOG", v)))
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                match Process::spawn(&mut cmd) {
                    Ok(mut p) => {
                        for out in [
                            p.child()
                                .stdout
                                .take()
                                .map(|o| Box::new(o) as Box<dyn Read + Send>),
                            p.child()
                                .stderr
                                .take()
                                .map(|o| Box::new(o) as Box<dyn Read + Send>),
                        ]
                        .into_iter()
                        .flatten()
                        {
                            let log = c.log.clone();
                            std::thread::spawn(move || {
                                for line in
                                    std::io::BufReader::new(out).lines().map_while(Result::ok)
                                {
                                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                                    let text = &mut log.0;
                                    text.push_str(&line);
                                    text.push('\n');
                                    if text.len() > LOG_BYTES {
                                        let mut cut = text.len() - LOG_BYTES;
                                        while !text.is_char_boundary(cut) {
                                            cut += 1;
                                        }
                                        text.drain(..cut);
                                    }
                                    log.1 = true;
                                }
                            });
                        }
                        c.process = Some(p);
                        c.started_at = now();
                        c.probed = None;
                    }
                    Err(e) => {
                        c.exited = Some((Instant::now(), -1));
                        c.restarts += 1;
                        let mut log = c.log.lock().unwrap_or_else(|e| e.into_inner());
                        log.0.push_str(&format!("cannot start: {e}\n"));
                        log.1 = true;
                    }
                }
            }
            let mut log = c.log.lock().unwrap_or_else(|e| e.into_inner());
            if std::mem::take(&mut log.1) {
                api.set_pod_log(&ns, &name, &c.name, &log.0);
            }
            drop(log);
            if c.process.is_some()
                && let Some((path, port)) = &c.probe
                && c.probed.is_none_or(|t| t.elapsed() >= PROBE_EVERY)
            {
                c.probed = Some(Instant::now());
                c.ready = probe(SocketAddr::new(ip, *port), path);
            }
        }
    }

    fn status(&self, pod: &Value) -> Value {
        let ip = self.ip.to_string();
        let host = self.node.gateway().to_string();
        let condition =
            |t: &str, ok: bool| json!({"type": t, "status": if ok { "True" } else { "False" }});
        if let Some((reason, message)) = &self.refused {
            let statuses: Vec<Value> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": false,
                    "restartCount": 0, "started": false,
                    "state": {"waiting": {"reason": reason, "message": message}}})
                })
                .collect();
            return json!({"phase": "Pending", "hostIP": host, "podIP": ip, "podIPs": [{"ip": ip}],
                "startTime": self.started,
                "conditions": [condition("PodScheduled", true), condition("Ready", false)],
                "containerStatuses": statuses});
        }
        let all_ready = self
            .containers
            .iter()
            .all(|c| c.process.is_some() && c.ready);
        let statuses: Vec<Value> = self
            .containers
            .iter()
            .map(|c| {
                let state = match (&c.process, c.exited) {
                    (Some(_), _) => json!({"running": {"startedAt": c.started_at}}),
                    (None, Some((_, code))) => json!({"waiting": {"reason": "CrashLoopBackOff",
                        "message": format!("back-off restarting failed container {} (exit code {code})", c.name)}}),
                    (None, None) => json!({"waiting": {"reason": "ContainerCreating"}}),
                };
                let last = c.exited.map_or(json!({}), |(_, code)| {
                    json!({"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}})
                });
                json!({"name": c.name, "image": c.image, "imageID": "", "ready": c.process.is_some() && c.ready,
                    "restartCount": c.restarts, "started": c.process.is_some(), "state": state,
                    "lastState": last})
            })
            .collect();
        json!({"phase": "Running", "hostIP": host, "hostIPs": [{"ip": host}], "podIP": ip,
            "podIPs": [{"ip": ip}], "startTime": self.started, "qosClass": "Burstable",
            "conditions": [condition("PodScheduled", true), condition("Initialized", true),
                condition("ContainersReady", all_ready), condition("Ready", all_ready)],
            "containerStatuses": statuses})
    }
}

/// An HTTP GET of `path` answered 200–399 within a second.
fn probe(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.32\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    if s.read_exact(&mut head).is_err() {
        return false;
    }
    let code = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse::<u16>().ok());
    code.is_some_and(|c| (200..400).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_images_name_is_its_last_segment_without_tag() {
        assert_eq!(image_name("ghcr.io/kubetap/tap-hub:0.1.0"), "tap-hub");
        assert_eq!(image_name("tap-worker"), "tap-worker");
        assert_eq!(image_name("r:5000/x/tap-hub@sha256:ab"), "tap-hub");
    }

    #[test]
    fn variables_in_arguments_are_expanded_and_unknown_ones_kept() {
        let env = vec![("NODE_NAME".to_string(), "node-a".to_string())];
        assert_eq!(expand("--node=$(NODE_NAME)", &env), "--node=node-a");
        assert_eq!(expand("$(OTHER)", &env), "$(OTHER)");
    }
}
