//! The test API server (`testkit::kube_api`) against real clients: kubectl
//! 1.32 and the official Python client must list, watch and describe the
//! same objects, and get the real server's failures.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::kube_api::{ApiServer, Denial};

const NS: &str = "kubetap";

/// A Python HTTP server on 127.0.0.1:`argv[1]`, serving its directory and
/// answering a POST with the request's body.
const ECHO_SERVER: &str = r#"
import http.server, sys

class Handler(http.server.SimpleHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"#;

/// kubectl and the Python client, or a skip.
fn peers(what: &str) -> bool {
    if !testkit::require_tools(what, false, &["kubectl", "python3", "curl"]) {
        return false;
    }
    let client = Command::new("python3")
        .args(["-c", "import kubernetes"])
        .output()
        .is_ok_and(|o| o.status.success());
    client
        || testkit::skip(
            what,
            "needs the Python module kubernetes (cargo xtask setup installs it)",
        )
}

fn kubectl_cmd(api: &ApiServer, args: &[&str]) -> Command {
    let mut cmd = Command::new("kubectl");
    cmd.env("KUBECONFIG", api.kubeconfig())
        .arg("--cache-dir")
        .arg(api.dir().join("kubectl-cache"))
        .args(args);
    cmd
}

fn kubectl_out(api: &ApiServer, args: &[&str]) -> Output {
    kubectl_cmd(api, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl {args:?}: {e}"))
}

/// kubectl's stdout; panics with its stderr when it fails.
fn kubectl(api: &ApiServer, args: &[&str]) -> String {
    let out = kubectl_out(api, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that a command succeeded, showing its stderr when not.
fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// kubectl with a manifest on its standard input.
fn kubectl_stdin(api: &ApiServer, args: &[&str], manifest: &str) -> Output {
    let mut child = kubectl_cmd(api, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl starts");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(manifest.as_bytes())
        .expect("kubectl reads its input");
    child.wait_with_output().expect("kubectl ends")
}

/// Runs a Python script with the client configured as `k` and `api`'s
/// kubeconfig loaded; its stdout as JSON.
fn python(api: &ApiServer, script: &str) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("{PRELUDE}{script}"))
        .env("KUBECONFIG", api.kubeconfig())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

const PRELUDE: &str = "
import json, os, sys
import kubernetes as k
k.config.load_kube_config(config_file=os.environ['KUBECONFIG'])
core = k.client.CoreV1Api()
apps = k.client.AppsV1Api()
def ids(items):
    return sorted([i.metadata.namespace or '', i.metadata.name, i.metadata.uid, i.metadata.resource_version] for i in items)
def failure(call):
    try:
        call()
        return None
    except k.client.ApiException as e:
        return {'status': e.status, 'reason': e.reason, 'body': json.loads(e.body)}
";

/// (namespace, name, uid, resourceVersion) of a list's items, sorted.
fn ids(list: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = list["items"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            json!([
                m["namespace"].as_str().unwrap_or(""),
                m["name"],
                m["uid"],
                m["resourceVersion"]
            ])
        })
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

fn pod(name: &str, phase: &str, labels: Value, containers: &[&str]) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "registry.local/app:1"}))
        .collect();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c["name"], "ready": phase == "Running", "restartCount": 0, "image": c["image"], "imageID": "", "state": {"running": {}}}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": containers, "nodeName": "node-1"},
        "status": {"phase": phase, "podIP": "10.1.0.7", "containerStatuses": statuses},
    })
}

/// A server with the namespace [`NS`], when the peers are here (else the
/// test `what` is skipped).
fn started(what: &str) -> Option<ApiServer> {
    if !peers(what) {
        return None;
    }
    let api = ApiServer::start().expect("the test API server starts");
    api.create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
        .expect("a new namespace");
    Some(api)
}

#[test]
fn kubectl_and_python_see_the_same_objects() {
    if !peers("kube api: same objects") {
        return;
    }
    let api = ApiServer::start().expect("the test API server starts");
    kubectl(&api, &["create", "namespace", NS]);
    let web = api
        .create(pod(
            "web-1",
            "Running",
            json!({"app": "web", "tier": "front"}),
            &["app"],
        ))
        .unwrap();
    api.create(pod("web-2", "Pending", json!({"app": "web"}), &["app"]))
        .unwrap();
    api.create(pod(
        "db-1",
        "Running",
        json!({"app": "db"}),
        &["db", "sidecar"],
    ))
    .unwrap();
    // kubectl's generators write protobuf (served for namespaces and
    // config maps); `create -f` writes JSON.
    kubectl(
        &api,
        &[
            "create",
            "configmap",
            "settings",
            "--from-literal=a=1",
            "-n",
            NS,
        ],
    );
    let manifests = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop", "namespace": NS},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "shop"}},
                  "template": {"metadata": {"labels": {"app": "shop"}}, "spec": {"containers": [{"name": "shop", "image": "registry.local/shop:1"}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop", "namespace": NS},
         "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}], "selector": {"app": "shop"}}},
    ]});
    let out = kubectl_stdin(
        &api,
        &["create", "--validate=false", "-f", "-"],
        &manifests.to_string(),
    );
    succeeded(&out);
    assert_eq!(
        api.get("configmaps", NS, "settings").unwrap()["data"],
        json!({"a": "1"})
    );
    let uid = web["metadata"]["uid"].as_str().unwrap();
    api.create(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "web-1.pulled", "namespace": NS},
        "involvedObject": {"kind": "Pod", "namespace": NS, "name": "web-1", "uid": uid, "apiVersion": "v1"},
        "reason": "Pulled", "message": "Successfully pulled image registry.local/app:1",
        "type": "Normal", "source": {"component": "kubelet"}, "count": 1,
        "firstTimestamp": web["metadata"]["creationTimestamp"], "lastTimestamp": web["metadata"]["creationTimestamp"],
    }))
    .unwrap();

    // Names, uids and resourceVersions: kubectl's JSON, Python's objects.
    let by_kubectl =
        ids(&serde_json::from_str(&kubectl(&api, &["get", "pods", "-A", "-o", "json"])).unwrap());
    let by_python = python(
        &api,
        "print(json.dumps(ids(core.list_pod_for_all_namespaces().items)))",
    );
    assert_eq!(by_kubectl.len(), 3);
    assert_eq!(Value::Array(by_kubectl), by_python);
    let deployments = ids(&serde_json::from_str(&kubectl(
        &api,
        &["get", "deployments", "-n", NS, "-o", "json"],
    ))
    .unwrap());
    let python_deployments = python(
        &api,
        &format!("print(json.dumps(ids(apps.list_namespaced_deployment('{NS}').items)))"),
    );
    assert_eq!(Value::Array(deployments), python_deployments);
    assert_eq!(
        api.list("Deployment", Some(NS)).len(),
        1,
        "kubectl's create reached the store"
    );

    // Selectors, both clients.
    let names = kubectl(
        &api,
        &[
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "app in (web),tier!=back",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name",
        ],
    );
    assert_eq!(names.trim(), "pod/web-1");
    let python_names = python(
        &api,
        &format!(
            "print(json.dumps(sorted(p.metadata.name for p in core.list_namespaced_pod('{NS}', label_selector='app,!missing', field_selector='spec.nodeName=node-1').items)))"
        ),
    );
    assert_eq!(python_names, json!(["db-1", "web-1", "web-2"]));

    // The Table kubectl prints.
    let table = kubectl(&api, &["get", "pods", "-n", NS]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{table}"
    );
    assert_eq!(&rows[1][..4], ["db-1", "2/2", "Running", "0"], "{table}");
    assert_eq!(&rows[3][..4], ["web-2", "0/1", "Pending", "0"], "{table}");
    let all_namespaces = kubectl(&api, &["get", "pods", "-A"]);
    assert!(all_namespaces.starts_with("NAMESPACE"), "{all_namespaces}");
    assert_eq!(
        all_namespaces
            .lines()
            .filter(|l| l.starts_with("kubetap "))
            .count(),
        3,
        "{all_namespaces}"
    );
    let all = kubectl(&api, &["get", "all", "-n", NS]);
    for expected in [
        "pod/web-1",
        "pod/db-1",
        "service/shop",
        "deployment.apps/shop",
    ] {
        assert!(
            all.contains(expected),
            "{expected} missing from get all:\n{all}"
        );
    }
    assert!(
        !all.contains("configmap"),
        "configmaps are not in the all category:\n{all}"
    );

    // describe: the pod and its events (listed with a field selector).
    let described = kubectl(&api, &["describe", "pod", "web-1", "-n", NS]);
    for expected in [
        "Name:",
        "web-1",
        "Node:",
        "node-1",
        "Status:",
        "Running",
        "Pulled",
        "Successfully pulled image registry.local/app:1",
    ] {
        assert!(
            described.contains(expected),
            "{expected} missing from describe:\n{described}"
        );
    }
    let event_lists: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/events") && r.query.contains("fieldSelector"))
        .collect();
    assert!(
        !event_lists.is_empty(),
        "describe listed no events by field selector"
    );

    // A single object through both.
    let one: Value = serde_json::from_str(&kubectl(
        &api,
        &["get", "pod", "web-1", "-n", NS, "-o", "json"],
    ))
    .unwrap();
    let python_one = python(
        &api,
        &format!(
            "p = core.read_namespaced_pod('web-1', '{NS}'); print(json.dumps([p.metadata.uid, p.metadata.resource_version, p.status.phase]))"
        ),
    );
    assert_eq!(
        python_one,
        json!([
            one["metadata"]["uid"],
            one["metadata"]["resourceVersion"],
            "Running"
        ])
    );

    // kubectl delete; a namespace's delete takes what is in it.
    let deleted = kubectl(&api, &["delete", "pod", "web-2", "-n", NS]);
    assert_eq!(deleted.trim(), "pod \"web-2\" deleted");
    assert!(api.get("pods", NS, "web-2").is_none());
    kubectl(&api, &["delete", "namespace", NS]);
    assert!(
        api.list("pods", None).is_empty(),
        "the namespace's pods went with it"
    );
    let gone = python(
        &api,
        &format!("print(json.dumps(failure(lambda: core.read_namespaced_pod('web-1', '{NS}'))))"),
    );
    assert_eq!(gone["status"], 404);
    assert_eq!(gone["body"]["reason"], "NotFound");
    assert_eq!(gone["body"]["message"], "pods \"web-1\" not found");
    assert_eq!(
        gone["body"]["details"],
        json!({"name": "web-1", "kind": "pods"})
    );
}

/// Lines a child prints (on a pipe of its), as they come.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next line containing `needle` (others are collected into `seen`).
fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => {
                seen.push(line.clone());
                return line;
            }
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line with {needle:?}; saw {seen:#?}"),
        }
    }
}

#[test]
fn watches_see_the_other_clients_changes() {
    let Some(api) = started("kube api: watches") else {
        return;
    };
    api.create(pod("first", "Running", json!({"app": "web"}), &["app"]))
        .unwrap();

    // Python watches; kubectl (and the test) change things.
    let mut watcher = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "{PRELUDE}
w = k.watch.Watch()
for e in w.stream(core.list_namespaced_pod, '{NS}', timeout_seconds=20):
    o = e['object']
    print(e['type'], o.metadata.name, o.metadata.resource_version, (o.metadata.labels or {{}}).get('stage', '-'), flush=True)
"
        ))
        .env("KUBECONFIG", api.kubeconfig())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let python_lines = lines_of(watcher.stdout.take().expect("piped"));
    // kubectl watches the same pods as a Table.
    let mut kubectl_watch = kubectl_cmd(&api, &["get", "pods", "-n", NS, "--watch"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let kubectl_lines = lines_of(kubectl_watch.stdout.take().expect("piped"));
    let (mut py, mut kc) = (Vec::new(), Vec::new());
    wait_line(&python_lines, "ADDED first", &mut py);
    wait_line(&kubectl_lines, "first", &mut kc);

    kubectl(&api, &["label", "pod", "first", "-n", NS, "stage=two"]);
    let modified = wait_line(&python_lines, "MODIFIED first", &mut py);
    let rv = api.get("pods", NS, "first").unwrap()["metadata"]["resourceVersion"].clone();
    assert_eq!(
        modified,
        format!("MODIFIED first {} two", rv.as_str().unwrap())
    );

    let manifest =
        serde_json::to_string(&pod("second", "Pending", json!({"app": "web"}), &["app"])).unwrap();
    let out = kubectl_stdin(
        &api,
        &["apply", "--server-side", "--validate=false", "-f", "-"],
        &manifest,
    );
    succeeded(&out);
    wait_line(&python_lines, "ADDED second", &mut py);
    wait_line(&kubectl_lines, "second", &mut kc);

    api.delete("pods", NS, "first").unwrap();
    wait_line(&python_lines, "DELETED first", &mut py);
    let _ = kubectl_watch.kill();
    let _ = kubectl_watch.wait();
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert_eq!(
        kc[0].split_whitespace().next(),
        Some("NAME"),
        "kubectl's watch prints the table header first: {kc:?}"
    );
    assert_eq!(
        kc.iter().filter(|l| l.starts_with("NAME")).count(),
        1,
        "one header: {kc:?}"
    );
}

/// curl against the server with its CA and token: (status, body).
fn curl(api: &ApiServer, args: &[&str], path: &str) -> (u16, String) {
    let ca = api.dir().join("ca.crt");
    if !ca.exists() {
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(api.kubeconfig()).unwrap()).unwrap();
        let data = config["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap();
        let pem = Command::new("base64")
            .args(["-d"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(data.as_bytes())?;
                c.wait_with_output()
            });
        std::fs::write(&ca, pem.expect("base64 decodes").stdout).unwrap();
    }
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--cacert"])
        .arg(&ca)
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", api.token()))
        .args(args)
        .arg(format!("{}{path}", api.url()))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn server_side_apply_twice_changes_nothing() {
    let Some(api) = started("kube api: server-side apply") else {
        return;
    };
    let manifest = |replicas: u32, extra_label: bool| {
        let mut labels = json!({"app": "agent"});
        if extra_label {
            labels["extra"] = "yes".into();
        }
        format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\n  namespace: {NS}\n  labels: {labels}\nspec:\n  minReadySeconds: {replicas}\n  selector:\n    matchLabels: {{app: agent}}\n  template:\n    metadata:\n      labels: {{app: agent}}\n    spec:\n      containers:\n      - name: agent\n        image: registry.local/agent:1\n"
        )
    };
    let apply = |text: &str, extra: &[&str]| {
        let mut args = vec!["apply", "--server-side", "--validate=false", "-f", "-"];
        args.extend_from_slice(extra);
        kubectl_stdin(&api, &args, text)
    };
    let out = apply(&manifest(1, true), &[]);
    succeeded(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "daemonset.apps/agent serverside-applied"
    );
    let first = api.get("daemonsets", NS, "agent").unwrap();
    assert_eq!(first["metadata"]["generation"], 1);
    assert_eq!(first["metadata"]["managedFields"][0]["manager"], "kubectl");
    assert_eq!(first["metadata"]["managedFields"][0]["operation"], "Apply");
    let rv_before = api.resource_version();
    let out = apply(&manifest(1, true), &[]);
    succeeded(&out);
    let again = api.get("daemonsets", NS, "agent").unwrap();
    assert_eq!(
        again["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"],
        "the same apply changed the object"
    );
    assert_eq!(
        api.resource_version(),
        rv_before,
        "the same apply made a change"
    );

    // A new spec and a label no longer applied: generation 2, label gone.
    let out = apply(&manifest(5, false), &[]);
    succeeded(&out);
    let changed = api.get("daemonsets", NS, "agent").unwrap();
    assert_ne!(
        changed["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    assert_eq!(changed["metadata"]["generation"], 2);
    assert_eq!(changed["spec"]["minReadySeconds"], 5);
    assert_eq!(changed["metadata"]["labels"], json!({"app": "agent"}));

    // Another manager with another value conflicts, as on a real server.
    let out = apply(&manifest(7, false), &["--field-manager=other"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("conflict with \"kubectl\"") && err.contains(".spec.minReadySeconds"),
        "{err}"
    );
    let out = apply(
        &manifest(7, false),
        &["--field-manager=other", "--force-conflicts"],
    );
    succeeded(&out);
    assert_eq!(
        api.get("daemonsets", NS, "agent").unwrap()["spec"]["minReadySeconds"],
        7
    );

    // The JSON kube-rs sends, through curl: the same no-change rule.
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}).to_string();
    let path = format!("/api/v1/namespaces/{NS}/configmaps/c?fieldManager=kubetap&force=true");
    let ssa = [
        "-X",
        "PATCH",
        "-H",
        "Content-Type: application/apply-patch+yaml",
        "--data-binary",
        &body,
    ];
    let (code, created) = curl(&api, &ssa, &path);
    assert_eq!(code, 201, "{created}");
    let (code, again) = curl(&api, &ssa, &path);
    assert_eq!(code, 200, "{again}");
    let (created, again): (Value, Value) = (
        serde_json::from_str(&created).unwrap(),
        serde_json::from_str(&again).unwrap(),
    );
    assert_eq!(
        created["metadata"]["resourceVersion"],
        again["metadata"]["resourceVersion"]
    );
}

#[test]
fn failures_are_the_real_servers() {
    let Some(api) = started("kube api: failures") else {
        return;
    };
    api.set_denied(&[Denial::new("create", "apps", "daemonsets").in_namespace(NS)]);

    // can-i: no for the denial, yes elsewhere.
    let out = kubectl_out(
        &api,
        &["auth", "can-i", "create", "daemonsets.apps", "-n", NS],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    assert!(!out.status.success());
    assert_eq!(
        kubectl(
            &api,
            &[
                "auth",
                "can-i",
                "create",
                "daemonsets.apps",
                "-n",
                "default"
            ]
        )
        .trim(),
        "yes"
    );
    assert_eq!(
        kubectl(&api, &["auth", "can-i", "list", "pods", "-A"]).trim(),
        "yes"
    );

    // The real request: 403 with the real message.
    let ds = format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\n  namespace: {NS}\nspec:\n  selector:\n    matchLabels: {{app: a}}\n  template:\n    metadata:\n      labels: {{app: a}}\n    spec:\n      containers:\n      - name: a\n        image: x\n"
    );
    let out = kubectl_stdin(&api, &["create", "--validate=false", "-f", "-"], &ds);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "Error from server (Forbidden): error when creating \"STDIN\": daemonsets.apps is forbidden: User \"kubetap-test\" cannot create resource \"daemonsets\" in API group \"apps\" in the namespace \"{NS}\""
        )
    );
    let denied = python(
        &api,
        &format!(
            "print(json.dumps(failure(lambda: apps.create_namespaced_daemon_set('{NS}', {{'metadata': {{'name': 'agent'}}, 'spec': {{}}}}))))"
        ),
    );
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["body"]["reason"], "Forbidden");
    assert_eq!(
        denied["body"]["details"],
        json!({"group": "apps", "kind": "daemonsets"})
    );

    // 404 for a namespace that does not exist.
    let out = kubectl_out(&api, &["create", "configmap", "x", "-n", "nope"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: failed to create configmap: namespaces \"nope\" not found"
    );
    let missing = python(
        &api,
        "print(json.dumps(failure(lambda: core.create_namespaced_config_map('nope', {'metadata': {'name': 'x'}}))))",
    );
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["body"]["message"], "namespaces \"nope\" not found");

    // 409 for a second create.
    kubectl(&api, &["create", "configmap", "x", "-n", NS]);
    let out = kubectl_out(&api, &["create", "configmap", "x", "-n", NS]);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: failed to create configmap: configmaps \"x\" already exists"
    );

    // Bad selectors and bodies get a Status, never a dropped connection.
    let (code, body) = curl(&api, &[], "/api/v1/pods?labelSelector=a%20in%20b");
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        "BadRequest"
    );
    let (code, body) = curl(&api, &[], "/api/v1/pods?fieldSelector=spec.image%3Dx");
    assert_eq!(
        (
            code,
            serde_json::from_str::<Value>(&body).unwrap()["message"].clone()
        ),
        (400, json!("field label not supported: spec.image"))
    );
    let post_config_map = |data: &str| {
        let args = [
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            data,
        ];
        curl(&api, &args, &format!("/api/v1/namespaces/{NS}/configmaps"))
    };
    assert_eq!(post_config_map("{not json").0, 400);
    let big = api.dir().join("big.json");
    std::fs::write(&big, format!("{{\"data\": \"{}\"}}", "x".repeat(4 << 20))).unwrap();
    let (code, body) = post_config_map(&format!("@{}", big.display()));
    assert_eq!(code, 413, "{body}");
    let (code, _) = curl(&api, &[], "/api/v1/nonsense");
    assert_eq!(code, 404);

    // Expired credentials: 401 for everything.
    api.expire_token();
    let out = kubectl_out(&api, &["get", "pods"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim().lines().last(),
        Some("error: You must be logged in to the server (Unauthorized)")
    );
    let unauthorized = python(
        &api,
        "print(json.dumps(failure(lambda: core.list_namespaced_pod('default'))))",
    );
    assert_eq!(unauthorized["status"], 401);
    assert_eq!(unauthorized["body"]["reason"], "Unauthorized");
}

#[test]
fn pod_logs() {
    let Some(api) = started("kube api: logs") else {
        return;
    };
    api.create(pod("one", "Running", json!({}), &["app"]))
        .unwrap();
    api.create(pod("two", "Running", json!({}), &["app", "proxy"]))
        .unwrap();
    api.set_pod_log(NS, "one", "app", "line 1\nline 2\nline 3\n");
    api.set_pod_log(NS, "two", "proxy", "proxy up\n");
    assert_eq!(
        kubectl(&api, &["logs", "one", "-n", NS]),
        "line 1\nline 2\nline 3\n"
    );
    assert_eq!(
        kubectl(&api, &["logs", "one", "-n", NS, "--tail=1"]),
        "line 3\n"
    );
    assert_eq!(
        kubectl(&api, &["logs", "two", "-n", NS, "-c", "proxy"]),
        "proxy up\n"
    );
    let (code, body) = curl(&api, &[], &format!("/api/v1/namespaces/{NS}/pods/two/log"));
    assert_eq!(code, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["message"],
        "a container name must be specified for pod two, choose one of: [app proxy]"
    );
    let python_log = python(
        &api,
        &format!("print(json.dumps(core.read_namespaced_pod_log('one', '{NS}', tail_lines=2)))"),
    );
    assert_eq!(python_log, "line 2\nline 3\n");
}

#[test]
fn watch_history_bookmarks_and_the_request_log() {
    let Some(api) = started("kube api: watch details") else {
        return;
    };
    let start = api.resource_version();
    for i in 0..3 {
        api.create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}"), "namespace": NS}}))
            .unwrap();
    }
    // From a resourceVersion: the changes after it, then bookmarks.
    let path = format!(
        "/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={start}&allowWatchBookmarks=true&timeoutSeconds=3"
    );
    let (code, body) = curl(&api, &[], &path);
    assert_eq!(code, 200);
    let events: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "ADDED")
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c0", "c1", "c2"]);
    let bookmarks: Vec<&Value> = events.iter().filter(|e| e["type"] == "BOOKMARK").collect();
    assert!(!bookmarks.is_empty(), "no bookmark in 3 s: {body}");
    assert_eq!(
        bookmarks[0]["object"]["metadata"]["resourceVersion"],
        api.resource_version().to_string()
    );

    // Past the kept history: 410 as an ERROR event, as the real server.
    for i in 0..testkit::kube_api::HISTORY {
        api.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("s{i}"), "namespace": NS}}))
            .unwrap();
    }
    let (code, body) = curl(
        &api,
        &[],
        &format!("/api/v1/namespaces/{NS}/configmaps?watch=1&resourceVersion={start}"),
    );
    assert_eq!(code, 200);
    let error: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(error["type"], "ERROR");
    assert_eq!(error["object"]["code"], 410);
    assert_eq!(error["object"]["reason"], "Expired");

    // The request log counts what a client asked.
    api.clear_requests();
    kubectl(&api, &["get", "configmaps", "-n", NS]);
    let requests = api.requests();
    let lists: Vec<_> = requests.iter().filter(|r| r.verb == "list").collect();
    assert_eq!(lists.len(), 1, "{requests:#?}");
    assert_eq!(lists[0].path, format!("/api/v1/namespaces/{NS}/configmaps"));
    assert!(
        requests.iter().all(|r| !r.watch && r.status == 200),
        "{requests:#?}"
    );
}

/// A TLS connection to the server trusting its CA (from the kubeconfig).
async fn tls_to(api: &ApiServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use base64::Engine as _;
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(api.kubeconfig()).unwrap()).unwrap();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(
            config["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&pem).expect("the CA is PEM"))
        .unwrap();
    #[allow(deprecated)] // ring, as the server.
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(api.addr()).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS with the kubeconfig's CA")
}

/// The WebSocket handshake kube-rs's `Api::<Pod>::portforward` makes.
fn forward_request(
    api: &ApiServer,
    pod: &str,
    ports: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let url = format!(
        "wss://{}/api/v1/namespaces/{NS}/pods/{pod}/portforward?ports={ports}",
        api.addr()
    );
    let mut req = url.into_client_request().unwrap();
    let headers = req.headers_mut();
    headers.insert(
        "Authorization",
        format!("Bearer {}", api.token()).parse().unwrap(),
    );
    headers.insert(
        "Sec-WebSocket-Protocol",
        "v4.channel.k8s.io".parse().unwrap(),
    );
    req
}

/// The HTTP status of a port-forward upgrade that must be refused.
async fn refused_upgrade(api: &ApiServer, pod: &str) -> u16 {
    let refused =
        tokio_tungstenite::client_async(forward_request(api, pod, "8080"), tls_to(api).await).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(reply)) => reply.status().as_u16(),
        Err(e) => panic!("the port-forward to {pod} failed without an answer: {e}"),
        Ok(_) => panic!("the port-forward to {pod} was upgraded"),
    }
}

#[test]
fn port_forward_over_websocket_v4_and_spdy() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let Some(api) = started("kube api: port-forward") else {
        return;
    };
    api.create(pod("web", "Running", json!({}), &["app"]))
        .unwrap();
    // A real HTTP server, serving a directory with a file the answer names,
    // and answering a POST with its body.
    let site = testkit::TempDir::new("kube-api-site");
    std::fs::write(site.path("marker-7f3a.txt"), "hello").unwrap();
    let port = testkit::free_port();
    let _server = testkit::Process::spawn(
        Command::new("python3")
            .args(["-c", ECHO_SERVER, &port.to_string()])
            .current_dir(&*site)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("python3 serves");
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    testkit::assert_eventually!(
        Duration::from_secs(10),
        std::net::TcpStream::connect(target).is_ok(),
        "the HTTP server on {target}"
    );
    // Port 8080 of the pod reaches it; 9 has no target.
    api.set_port_forward(NS, "web", 8080, target);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (mut ws, reply) = tokio_tungstenite::client_async(
            forward_request(&api, "web", "8080,9"),
            tls_to(&api).await,
        )
        .await
        .expect("the upgrade is accepted");
        assert_eq!(
            reply.headers()["sec-websocket-protocol"],
            "v4.channel.k8s.io"
        );
        let mut request = vec![0u8];
        request.extend_from_slice(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n");
        ws.send(Message::binary(request)).await.unwrap();
        let (mut first, mut data, mut errors) = (Vec::new(), Vec::new(), String::new());
        let read = async {
            while let Some(Ok(message)) = ws.next().await {
                let Message::Binary(b) = message else {
                    continue;
                };
                let channel = b[0];
                if !first.contains(&channel) {
                    // Each channel's first message is its port, little-endian.
                    first.push(channel);
                    let port = u16::from_le_bytes([b[1], b[2]]);
                    assert_eq!(
                        port,
                        if channel < 2 { 8080 } else { 9 },
                        "channel {channel}"
                    );
                    assert_eq!(b.len(), 3);
                    continue;
                }
                match channel {
                    0 => data.extend_from_slice(&b[1..]),
                    3 => errors.push_str(&String::from_utf8_lossy(&b[1..])),
                    other => panic!("a message on channel {other}: {b:?}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("the server closes the socket when the HTTP server has answered");
        first.sort();
        assert_eq!(first, [0, 1, 2, 3]);
        let answer = String::from_utf8_lossy(&data);
        assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
        assert!(answer.contains("marker-7f3a.txt"), "{answer}");
        assert_eq!(
            errors,
            format!(
                "error forwarding port 9 to pod {NS}/web: no port-forward target set for port 9"
            )
        );

        // A denial, a missing pod and a plain GET are refused before any upgrade.
        api.set_denied(&[Denial::new("create", "", "pods/portforward")]);
        assert_eq!(refused_upgrade(&api, "web").await, 403);
        api.set_denied(&[]);
        assert_eq!(refused_upgrade(&api, "nope").await, 404);
    });
    let (code, body) = curl(
        &api,
        &[],
        &format!("/api/v1/namespaces/{NS}/pods/web/portforward?ports=8080"),
    );
    assert_eq!(code, 400, "{body}");

    // kubectl port-forward reaches the same server over SPDY/3.1: tunnelled
    // in a WebSocket (what kubectl 1.32 tries first), and plain (its
    // fallback, taken at once with KUBECTL_PORT_FORWARD_WEBSOCKETS=false).
    // One upgrade each: the WebSocket's is a GET, plain SPDY's a POST.
    for (websockets, method) in [(None, "GET"), (Some("false"), "POST")] {
        api.clear_requests();
        kubectl_port_forward_reaches(&api, websockets);
        let upgrades: Vec<_> = api
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/portforward"))
            .map(|r| (r.method, r.status))
            .collect();
        assert_eq!(
            upgrades,
            [(method.to_string(), 101)],
            "KUBECTL_PORT_FORWARD_WEBSOCKETS={websockets:?}"
        );
    }
}

/// The pod's port 8080 through `kubectl port-forward` (with
/// KUBECTL_PORT_FORWARD_WEBSOCKETS=`websockets`, or kubectl's default)
/// reaches the test's server: connections one after another and two at
/// once, a MiB each way intact. A connection to port 9, which has no
/// target, gets the kubelet's error, on which kubectl 1.32 gives up the
/// whole forward, as with a real cluster.
fn kubectl_port_forward_reaches(api: &ApiServer, websockets: Option<&str>) {
    let (local, unset) = (testkit::free_port(), testkit::free_port());
    let mut cmd = kubectl_cmd(
        api,
        &[
            "port-forward",
            "-n",
            NS,
            "pod/web",
            &format!("{local}:8080"),
            &format!("{unset}:9"),
        ],
    );
    match websockets {
        Some(v) => cmd.env("KUBECTL_PORT_FORWARD_WEBSOCKETS", v),
        None => cmd.env_remove("KUBECTL_PORT_FORWARD_WEBSOCKETS"),
    };
    let mut kubectl = testkit::Process::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()))
        .expect("kubectl runs");
    let stdout = lines_of(kubectl.child().stdout.take().expect("piped"));
    let stderr = lines_of(kubectl.child().stderr.take().expect("piped"));
    let (mut said, mut complained) = (Vec::new(), Vec::new());
    for port in [local, unset] {
        wait_line(
            &stdout,
            &format!("Forwarding from 127.0.0.1:{port} ->"),
            &mut said,
        );
    }

    for _ in 0..3 {
        let (status, body) = http(local, b"GET / HTTP/1.0\r\nHost: web\r\n\r\n");
        assert!(
            status.starts_with("HTTP/1.0 200"),
            "GET through {local}: {status:?}; kubectl said {:#?}",
            stderr.try_iter().collect::<Vec<_>>()
        );
        assert!(
            String::from_utf8_lossy(&body).contains("marker-7f3a.txt"),
            "{body:?}"
        );
    }
    // A MiB up and back down on each of two connections at once: more than
    // SPDY's 64 KiB windows, which kubectl's side does not keep to.
    let echoes: Vec<_> = (0..2u8)
        .map(|i| {
            std::thread::spawn(move || {
                let payload: Vec<u8> = (0..1 << 20).map(|_| fastrand::u8(..)).collect();
                let mut request = format!(
                    "POST / HTTP/1.0\r\nContent-Length: {}\r\n\r\n",
                    payload.len()
                )
                .into_bytes();
                request.extend_from_slice(&payload);
                let (status, body) = http(local, &request);
                assert!(status.starts_with("HTTP/1.0 200"), "echo {i}: {status}");
                assert!(
                    body == payload,
                    "echo {i}: {} bytes back, not the MiB sent",
                    body.len()
                );
            })
        })
        .collect();
    for echo in echoes {
        echo.join().expect("the echo went through intact");
    }

    // Port 9: the error on the error stream, which kubectl prints; then it
    // drops the connection to the pod (client-go since 1.23) and exits.
    let (status, body) = http(unset, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(
        (status.as_str(), body.len()),
        ("", 0),
        "no answer through port 9"
    );
    wait_line(
        &stderr,
        &format!(
            "an error occurred forwarding {unset} -> 9: error forwarding port 9 to pod {NS}/web: no port-forward target set for port 9"
        ),
        &mut complained,
    );
    wait_line(&stderr, "lost connection to pod", &mut complained);
    let ended = kubectl.wait_timeout(Duration::from_secs(20)).unwrap();
    assert!(
        ended.is_some_and(|s| !s.success()),
        "kubectl ends failing: {ended:?}, {complained:#?}"
    );
}

/// An HTTP/1.0 exchange with 127.0.0.1:`port`: the answer's status line
/// and body (empty when the connection closes without an answer).
fn http(port: u16, request: &[u8]) -> (String, Vec<u8>) {
    use std::io::Read as _;
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("cannot connect to 127.0.0.1:{port}: {e}"));
    for limit in [
        tcp.set_read_timeout(Some(Duration::from_secs(30))),
        tcp.set_write_timeout(Some(Duration::from_secs(30))),
    ] {
        limit.unwrap();
    }
    // kubectl may close a failed connection while the request is written.
    let _ = tcp.write_all(request);
    let mut answer = Vec::new();
    if let Err(e) = tcp.read_to_end(&mut answer) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "reading from {port}: {e}"
        );
    }
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (String::from_utf8_lossy(&answer).into_owned(), Vec::new());
    };
    let head = String::from_utf8_lossy(&answer[..end]);
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, answer[end + 4..].to_vec())
}
