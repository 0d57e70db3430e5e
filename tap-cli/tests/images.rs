//! The hub's and the worker's container images, run the way the chart runs
//! them. Both images are built as `cargo xtask images` builds them
//! (`testkit::images::build`: static musl binaries, `FROM scratch`), with
//! the chart's registry and tag, which must be the images the manifests
//! name. Each container gets exactly what `kubetap install --dry-run`'s
//! Deployment or DaemonSet asks for, turned into `docker run` flags: user
//! and group, capabilities dropped and added, read-only root,
//! no-new-privileges, memory and CPU limits, its Secrets as read-only bind
//! mounts at their mount paths with the Secret's file mode (and the pod's
//! fsGroup as their group), its arguments and environment; a field this
//! test cannot map fails it, so a chart change cannot slip past.
//!
//! The topology is a node as Kubernetes lays it out, from containers: a
//! pause container (built here, a static `pause` like Kubernetes' own)
//! holds the node's network namespace, made a testkit `Node` (bridge
//! `cbr0`); the hub's container starts with no network and is wired into
//! the bridge as a pod, as a CNI plugin does, and its Service address
//! (`10.96.0.10`, what kube-proxy would route) is the name the worker
//! dials, in the node's `/etc/hosts`. The worker shares the node's network
//! namespace (`hostNetwork`) and host PIDs (`hostPID`). Two testkit pods on
//! the node run `python3 -m http.server` and curl.
//!
//! Departures from the manifests: the chart starts the worker with
//! `--hub-pods` (pods sent by a hub that follows them in the Kubernetes
//! API, which this test has none of; the hub container says so and keeps
//! serving); the test gives it `-i <the server pod's host veth>` instead,
//! so it keeps only CAP_NET_RAW of the capabilities the DaemonSet adds. Seccomp: the hub's
//! `RuntimeDefault` is Docker's default profile; the worker names none
//! (Kubernetes' default is unconfined) and gets Docker's default too, the
//! stricter of the two.
//!
//! Not run: the chart's `--tls` worker. Docker 20.10 (Debian 12's
//! docker.io) refuses its capabilities: `invalid CapAdd: unknown
//! capability: "CAP_BPF"` (likewise PERFMON), and without them in its set
//! the worker reports TLS unavailable although SYS_ADMIN would cover both.
//!
//! Every container, namespace and veth the test makes goes at its end, also
//! on a panic (guards); the images stay, as the build cache (a second
//! `docker build` of an unchanged binary takes about a second).

mod peers;

use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::{Node, TempDir, images};

/// The hub Service's address in this test (Kubernetes' default service
/// range), routed to the hub pod inside the node.
const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// The node's name (the DaemonSet's `NODE_NAME`, `spec.nodeName`).
const NODE_NAME: &str = "images-node-1";

const PAUSE_IMAGE: &str = "kubetap-test/pause:latest";

/// The pause process: a pod sandbox's only job is to hold its namespaces.
const PAUSE_SOURCE: &str = "fn main() {\n    loop {\n        std::thread::park();\n    }\n}\n";

/// A container this test started, removed (by id) when dropped; its log is
/// printed first if the test is failing.
struct Container {
    id: String,
    what: &'static str,
}

impl Container {
    fn run(what: &'static str, args: &[String]) -> Container {
        let id = peers::run(Command::new("docker").args(["run", "--detach"]).args(args));
        Container {
            id: String::from_utf8_lossy(&id).trim().to_string(),
            what,
        }
    }

    /// The container's first process, as the host sees it.
    fn pid(&self) -> u32 {
        let out = peers::run(Command::new("docker").args([
            "inspect",
            "--format",
            "{{.State.Pid}}",
            &self.id,
        ]));
        String::from_utf8_lossy(&out).trim().parse().unwrap()
    }

    fn logs(&self) -> String {
        let out = Command::new("docker")
            .args(["logs", "--tail", "60", &self.id])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} ({}) log:\n{}", self.what, self.id, self.logs());
        }
        let _ = Command::new("docker")
            .args(["rm", "--force", &self.id])
            .stdout(Stdio::null())
            .status();
    }
}

/// `kubetap install --dry-run -o json`'s objects by `Kind/name`.
fn manifests(home: &Path) -> BTreeMap<String, Json> {
    let out = peers::run(
        Command::new(peers::sibling("kubetap"))
            .args(["install", "--dry-run", "-o", "json"])
            .env("HOME", home),
    );
    let list: Json = serde_json::from_slice(&out).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let key = format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            );
            (key, o.clone())
        })
        .collect()
}

/// What a pod's and its container's security context ask for, as `docker
/// run` flags. Panics on a field it does not know, and on `privileged`.
fn security_flags(pod: &Json, container: &Json) -> Vec<String> {
    let mut merged = serde_json::Map::new();
    for (scope, context) in [
        ("pod", &pod["securityContext"]),
        ("container", &container["securityContext"]),
    ] {
        for (key, value) in context.as_object().into_iter().flatten() {
            let known = match scope {
                "pod" => [
                    "runAsUser",
                    "runAsGroup",
                    "runAsNonRoot",
                    "fsGroup",
                    "seccompProfile",
                ]
                .contains(&key.as_str()),
                _ => [
                    "runAsUser",
                    "runAsGroup",
                    "runAsNonRoot",
                    "seccompProfile",
                    "privileged",
                    "allowPrivilegeEscalation",
                    "readOnlyRootFilesystem",
                    "capabilities",
                ]
                .contains(&key.as_str()),
            };
            assert!(
                known,
                "the {scope} securityContext's {key} is not mapped to docker run flags: map it"
            );
            merged.insert(key.clone(), value.clone());
        }
    }
    let mut flags = Vec::new();
    let user = merged.get("runAsUser").and_then(Json::as_u64);
    if let Some(uid) = user {
        flags.push("--user".to_string());
        flags.push(match merged.get("runAsGroup").and_then(Json::as_u64) {
            Some(gid) => format!("{uid}:{gid}"),
            None => uid.to_string(),
        });
    }
    if merged.get("runAsNonRoot") == Some(&Json::Bool(true)) {
        assert!(
            user.is_some_and(|u| u != 0),
            "runAsNonRoot needs a non-zero runAsUser"
        );
    }
    if let Some(group) = merged.get("fsGroup").and_then(Json::as_u64) {
        flags.extend(["--group-add".to_string(), group.to_string()]);
    }
    match merged.get("seccompProfile").map(|p| &p["type"]) {
        None => {}
        Some(t) if t == "RuntimeDefault" => {}
        Some(t) if t == "Unconfined" => {
            flags.extend(["--security-opt".into(), "seccomp=unconfined".into()]);
        }
        Some(t) => panic!("seccompProfile {t} is not mapped"),
    }
    assert_ne!(
        merged.get("privileged"),
        Some(&Json::Bool(true)),
        "never --privileged"
    );
    if merged.get("allowPrivilegeEscalation") == Some(&Json::Bool(false)) {
        flags.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    if merged.get("readOnlyRootFilesystem") == Some(&Json::Bool(true)) {
        flags.push("--read-only".into());
    }
    if let Some(caps) = merged.get("capabilities") {
        for (key, flag) in [("drop", "--cap-drop"), ("add", "--cap-add")] {
            for cap in caps[key].as_array().into_iter().flatten() {
                flags.extend([flag.to_string(), cap.as_str().unwrap().to_string()]);
            }
        }
        for key in caps.as_object().unwrap().keys() {
            assert!(
                key == "drop" || key == "add",
                "capabilities.{key} is not mapped"
            );
        }
    }
    flags
}

/// The container's limits as `--memory` and `--cpus`.
fn limit_flags(container: &Json) -> Vec<String> {
    let limits = &container["resources"]["limits"];
    let mut flags = Vec::new();
    if let Some(memory) = limits["memory"].as_str() {
        let (n, unit) = memory.split_at(
            memory
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(memory.len()),
        );
        let suffix = match unit {
            "Mi" => "m",
            "Gi" => "g",
            other => panic!("memory limit unit {other:?} is not mapped"),
        };
        flags.extend(["--memory".to_string(), format!("{n}{suffix}")]);
    }
    if let Some(cpu) = limits["cpu"].as_str() {
        let cpus = match cpu.strip_suffix('m') {
            Some(milli) => milli.parse::<f64>().unwrap() / 1000.0,
            None => cpu.parse().unwrap(),
        };
        flags.extend(["--cpus".to_string(), cpus.to_string()]);
    }
    flags
}

/// The container's Secret volumes, made as kubelet makes them (each key a
/// file with the volume's `defaultMode`, group `fsGroup`) under `dir`, as
/// read-only bind mounts at their `mountPath`. `content(secret, key)` is
/// each file's content.
fn volume_flags(
    dir: &TempDir,
    pod: &Json,
    container: &Json,
    objects: &BTreeMap<String, Json>,
    content: impl Fn(&str, &str) -> Vec<u8>,
) -> Vec<String> {
    let group = pod["securityContext"]["fsGroup"].as_u64().map(|g| g as u32);
    let mut flags = Vec::new();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = mount["name"].as_str().unwrap();
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap();
        let target = mount["mountPath"].as_str().unwrap();
        let secret_name = volume["secret"]["secretName"]
            .as_str()
            .unwrap_or_else(|| panic!("volume {name}: only Secret volumes are mapped"));
        let mode = volume["secret"]["defaultMode"].as_u64().unwrap_or(0o644) as u32;
        let secret = &objects[&format!("Secret/{secret_name}")];
        // One directory per container and volume, as kubelet makes them.
        let host_dir = (0..)
            .map(|n| dir.path(&format!("{secret_name}.{n}")))
            .find(|d| !d.exists())
            .unwrap();
        std::fs::create_dir(&host_dir).unwrap();
        std::fs::set_permissions(&host_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for key in secret["data"].as_object().unwrap().keys() {
            let file = host_dir.join(key);
            std::fs::write(&file, content(secret_name, key)).unwrap();
            std::os::unix::fs::chown(&file, Some(0), group).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        assert_eq!(
            mount["readOnly"], true,
            "volume {name} is mounted read-only"
        );
        flags.extend([
            "--volume".into(),
            format!("{}:{target}:ro", host_dir.display()),
        ]);
    }
    flags
}

/// Everything the manifest asks for `container` of `pod` as `docker run`
/// flags: [`security_flags`], [`limit_flags`], [`volume_flags`] and `env`.
fn manifest_flags(
    dir: &TempDir,
    pod: &Json,
    container: &Json,
    objects: &BTreeMap<String, Json>,
    content: impl Fn(&str, &str) -> Vec<u8>,
    env: &[(String, String)],
) -> Vec<String> {
    let mut flags = security_flags(pod, container);
    flags.extend(limit_flags(container));
    flags.extend(volume_flags(dir, pod, container, objects, content));
    for (k, v) in env {
        flags.extend(["--env".to_string(), format!("{k}={v}")]);
    }
    flags
}

/// The container's environment, each `fieldRef` answered from `fields`.
fn env(container: &Json, fields: &[(&str, &str)]) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match e["value"].as_str() {
                Some(v) => v.to_string(),
                None => {
                    let path = e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap();
                    let (_, v) = fields
                        .iter()
                        .find(|(f, _)| *f == path)
                        .unwrap_or_else(|| panic!("env {name}: fieldRef {path} is not mapped"));
                    v.to_string()
                }
            };
            (name, value)
        })
        .collect()
}

/// The container's args with `$(VAR)` expanded from `env`, as kubelet does.
fn args(container: &Json, env: &[(String, String)]) -> Vec<String> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            env.iter()
                .fold(a.as_str().unwrap().to_string(), |arg, (k, v)| {
                    arg.replace(&format!("$({k})"), v)
                })
        })
        .collect()
}

/// The pause image: a static `pause` compiled here with rustc, FROM scratch.
fn pause_image(dir: &TempDir) {
    let source = dir.path("pause.rs");
    std::fs::write(&source, PAUSE_SOURCE).unwrap();
    let binary = dir.path("pause");
    peers::run(
        Command::new("rustc")
            .args(["--target", images::MUSL, "-C", "opt-level=s", "-o"])
            .arg(&binary)
            .arg(&source),
    );
    let dockerfile = dir.path("pause.Dockerfile");
    std::fs::write(
        &dockerfile,
        "FROM scratch\nCOPY pause /pause\nENTRYPOINT [\"/pause\"]\n",
    )
    .unwrap();
    images::docker_build(&dockerfile, &binary, PAUSE_IMAGE).unwrap();
}

/// A line of `/proc/<pid>/status`, after its `Name:`.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// The options of the mount at `/` of process `pid`.
fn root_mount_options(pid: u32) -> String {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    info.lines()
        .find_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            (fields.get(4) == Some(&"/")).then(|| fields[5].to_string())
        })
        .unwrap()
}

/// GET `path` from `addr`, from inside `node`.
fn get(node: &Node, addr: SocketAddr, path: &str) -> Result<testkit::http::Reply, String> {
    let path = path.to_string();
    node.in_netns(move || testkit::http::try_get(addr, &path))
        .unwrap()
}

/// The DaemonSet's worker in `objects` as node `node_name`: the node's
/// network (the pause container's) and PIDs, the manifest's everything
/// else; `-i <web's host veth>` for `--hub-pods` (no hub here follows
/// pods: there is no Kubernetes API).
fn start_worker(
    dir: &TempDir,
    objects: &BTreeMap<String, Json>,
    image: &str,
    node: &Container,
    web: &testkit::Pod,
    node_name: &str,
    content: impl Fn(&str, &str) -> Vec<u8>,
) -> Container {
    let pod = &objects["DaemonSet/kubetap-worker"]["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["hostPID"], true);
    let container = &pod["containers"][0];
    let env = env(container, &[("spec.nodeName", node_name)]);
    let mut run = vec![
        "--network".to_string(),
        format!("container:{}", node.id),
        "--pid".into(),
        "host".into(),
    ];
    run.extend(manifest_flags(dir, pod, container, objects, content, &env));
    run.push(image.to_string());
    let args = args(container, &env);
    assert!(args.iter().any(|a| a == "--hub-pods"));
    for arg in args {
        match arg.as_str() {
            "--hub-pods" => run.extend(["-i".to_string(), web.host_veth.clone()]),
            _ => run.push(arg),
        }
    }
    Container::run("tap-worker", &run)
}

/// The hub's `/api/workers` entry of `node_name` once it is connected.
fn worker_status(node: &Node, api: SocketAddr, node_name: &str) -> Json {
    testkit::eventually(
        Duration::from_secs(30),
        &format!("worker {node_name} connected to the hub"),
        || {
            let reply = get(node, api, "/api/workers").ok()?;
            let workers = reply.json()["workers"].as_array()?.clone();
            workers
                .into_iter()
                .find(|w| w["node"] == node_name && w["state"] == "connected")
        },
    )
}

#[test]
fn the_images_run_with_what_the_manifests_ask_and_capture_pod_traffic() {
    if !testkit::require_tools(
        "container images",
        true,
        &["docker", "dockerd", "ip", "curl", "python3", "rustc"],
    ) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    images::ensure_daemon(&target.join("dockerd.log")).unwrap();

    let dir = TempDir::new("images");
    let (registry, tag) = images::chart_defaults(root).unwrap();
    let built = images::build(root, target, &registry, &tag).unwrap();
    for image in &built {
        println!(
            "image {}: {} bytes ({:.1} MiB)",
            image.reference,
            image.size,
            image.size as f64 / (1024.0 * 1024.0)
        );
    }
    pause_image(&dir);

    // A home of its own: no ~/.kubetap/config.yaml changes the values.
    let home = dir.path("home");
    std::fs::create_dir(&home).unwrap();
    let objects = manifests(&home);
    let hub_pod = &objects["Deployment/kubetap-hub"]["spec"]["template"]["spec"];
    let worker_pod = &objects["DaemonSet/kubetap-worker"]["spec"]["template"]["spec"];
    let hub_container = &hub_pod["containers"][0];
    let worker_container = &worker_pod["containers"][0];
    for (container, image) in [(hub_container, &built[0]), (worker_container, &built[1])] {
        assert_eq!(
            container["image"],
            image.reference.as_str(),
            "the manifest names the image built"
        );
    }
    let worker_args = args(
        worker_container,
        &env(worker_container, &[("spec.nodeName", NODE_NAME)]),
    );
    let hub_url = worker_args
        .iter()
        .find_map(|a| a.strip_prefix("--hub="))
        .unwrap();
    let hub_name = hub_url
        .strip_prefix("https://")
        .and_then(|r| r.split(':').next())
        .unwrap()
        .to_string();

    // The install's certificates, for the name the worker dials.
    let certs = dir.path("certs");
    tap_certs::CertSet::generate(
        std::slice::from_ref(&hub_name),
        &tap_certs::Validity::days(1),
    )
    .unwrap()
    .write(&certs)
    .unwrap();
    let content = |secret: &str, key: &str| match secret {
        "kubetap-token" => testkit::http::TOKEN.as_bytes().to_vec(),
        _ => std::fs::read(certs.join(key)).unwrap(),
    };

    // The node: a pause container's network namespace, the hub's name in its hosts file.
    let pause = Container::run(
        "node sandbox",
        &[
            "--network".into(),
            "none".into(),
            "--add-host".into(),
            format!("{hub_name}:{SERVICE_IP}"),
            PAUSE_IMAGE.into(),
        ],
    );
    let node = Node::adopt("images", pause.pid()).unwrap();

    // The hub: started with no network, wired into the node as a pod.
    assert_ne!(hub_pod["hostNetwork"], true);
    let mut hub_run = vec!["--network".to_string(), "none".to_string()];
    hub_run.extend(manifest_flags(
        &dir,
        hub_pod,
        hub_container,
        &objects,
        content,
        &[],
    ));
    hub_run.push(built[0].reference.clone());
    hub_run.extend(args(hub_container, &[]));
    let hub = Container::run("tap-hub", &hub_run);
    let hub_pid = hub.pid();
    let hub_net = node.attach_pod("kubetap-hub", hub_pid).unwrap();
    let service = SERVICE_IP.to_string();
    testkit::netns::ip([
        "-n",
        &hub_net.netns,
        "addr",
        "add",
        &format!("{service}/32"),
        "dev",
        "eth0",
    ])
    .unwrap();
    testkit::netns::ip([
        "-n",
        node.netns(),
        "route",
        "add",
        &format!("{service}/32"),
        "via",
        &hub_net.ip.to_string(),
    ])
    .unwrap();

    let api = SocketAddr::from((hub_net.ip, 8899));
    testkit::eventually(
        Duration::from_secs(30),
        "the hub container's /readyz",
        || get(&node, api, "/readyz").ok().filter(|r| r.status == 200),
    );
    let workers = get(&node, api, "/api/workers").unwrap();
    assert_eq!(workers.status, 200, "{}", workers.body);
    let refused = node
        .in_netns(move || {
            testkit::http::try_request_as(api, "GET", "/api/workers", None, None, &[])
        })
        .unwrap()
        .unwrap();
    assert_eq!(refused.status, 401, "no token, no API");
    // Who the hub runs as: the manifest's user and group, no capability, no
    // new privileges, a read-only root.
    assert!(
        status_field(hub_pid, "Uid").starts_with("65532\t"),
        "{}",
        status_field(hub_pid, "Uid")
    );
    assert!(status_field(hub_pid, "Gid").starts_with("65532\t"));
    assert_eq!(status_field(hub_pid, "CapEff"), "0000000000000000");
    assert_eq!(status_field(hub_pid, "CapBnd"), "0000000000000000");
    assert_eq!(status_field(hub_pid, "NoNewPrivs"), "1");
    assert!(
        root_mount_options(hub_pid).starts_with("ro"),
        "{}",
        root_mount_options(hub_pid)
    );

    // Two pods on the node: a server and a client.
    let web = node.pod("web").unwrap();
    let client = node.pod("client").unwrap();
    // The server serves the system's temporary directory, which holds ours.
    std::fs::write(dir.path("images-test.txt"), "served to curl\n").unwrap();
    let path = Path::new("/")
        .join(dir.strip_prefix(std::env::temp_dir()).unwrap())
        .join("images-test.txt");
    let path = path.to_str().unwrap().to_string();
    let _server = peers::node::http_servers(&node, &[&web], 8080);

    let worker = start_worker(
        &dir,
        &objects,
        &built[1].reference,
        &pause,
        &web,
        NODE_NAME,
        content,
    );
    let worker_pid = worker.pid();
    let status = worker_status(&node, api, NODE_NAME);
    // With -i the worker keeps CAP_NET_RAW of the DaemonSet's list, and
    // runs as root without any other capability.
    assert_eq!(
        status["linux_capabilities"],
        serde_json::json!(["CAP_NET_RAW"]),
        "{status}"
    );
    assert!(status_field(worker_pid, "Uid").starts_with("0\t"));
    assert_eq!(
        status_field(worker_pid, "CapEff"),
        format!("{:016x}", 1u64 << 13)
    );
    assert!(root_mount_options(worker_pid).starts_with("ro"));

    // A real exchange between the pods, on the wire the worker captures.
    let url = format!("http://{}:8080{path}", web.ip);
    let out = client.command("curl").args(["-sf", &url]).output().unwrap();
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"served to curl\n");
    let entry = testkit::eventually(
        Duration::from_secs(30),
        "the request in the hub's /api/entries",
        || {
            let reply = get(&node, api, "/api/entries?filter=http&limit=100").ok()?;
            reply.json()["entries"]
                .as_array()?
                .iter()
                .find(|e| e["request"]["path"] == path.as_str())
                .cloned()
        },
    );
    assert_eq!(entry["request"]["method"], "GET", "{entry}");
    assert_eq!(entry["response"]["status"], 200, "{entry}");
    assert_eq!(entry["node"], NODE_NAME, "{entry}");
    assert_eq!(entry["src"]["ip"], client.ip.to_string(), "{entry}");
    assert_eq!(entry["dst"]["ip"], web.ip.to_string(), "{entry}");

    // The containers go before the namespaces they are in.
    drop(worker);
    drop(hub);
    drop(pause);
}
