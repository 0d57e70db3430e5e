//! `kubetap install` and `clean` against the test API server
//! (`testkit::kube_api`) through a real kubeconfig: what was installed is
//! what kubectl and the official Python client see, installing twice
//! changes nothing, clean leaves nothing; and each way a cluster says no
//! (unreachable, expired credentials, a forbidden verb, an unknown context)
//! is a sentence naming it, a non-zero exit, and nothing left half made.

mod peers;

use peers::TempDir;
use std::process::{Command, Output};
use std::time::Duration;
use testkit::kube_api::{ApiServer, Denial};

/// The kinds kubetap installs, as the API server serves them.
const KINDS: &[&str] = &[
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Secret",
    "Service",
    "Deployment",
    "DaemonSet",
];

struct Cli {
    home: TempDir,
    kubeconfig: std::path::PathBuf,
}

impl Cli {
    fn new(api: &ApiServer) -> Cli {
        Cli {
            home: TempDir::new("kube-install-home"),
            kubeconfig: api.kubeconfig().to_path_buf(),
        }
    }

    /// `kubetap args` running in the background, its stderr piped.
    fn spawn(&self, args: &[&str]) -> testkit::Process {
        testkit::Process::spawn(
            Command::new(peers::sibling("kubetap"))
                .args(args)
                .env("HOME", self.home.root())
                .env("KUBECONFIG", &self.kubeconfig)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped()),
        )
        .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(peers::sibling("kubetap"))
            .args(args)
            .env("HOME", self.home.root())
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .unwrap()
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every object with kubetap's label, or named for its namespace, left in
/// the server.
fn leftovers(api: &ApiServer) -> Vec<String> {
    let mut left = Vec::new();
    for kind in KINDS {
        for o in api.list(kind, None) {
            let name = o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ours = o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubetap"
                || name.starts_with("kubetap");
            if ours {
                left.push(format!("{kind}/{name}"));
            }
        }
    }
    left
}

#[test]
fn install_is_what_kubectl_and_python_see_twice_is_a_no_op_and_clean_leaves_nothing() {
    if !testkit::require_tools(
        "kubetap install on the test API server",
        false,
        &["kubectl", "python3"],
    ) {
        return;
    }
    let api = ApiServer::start().unwrap();
    let cli = Cli::new(&api);

    let out = cli.run(&["install"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.matches(" created\n").count(), 11, "{stdout}");
    for line in [
        "namespace/kubetap created",
        "daemonset/kubetap-worker created",
        "secret/kubetap-token created",
    ] {
        assert!(stdout.contains(line), "{stdout}");
    }
    assert!(
        stderr.contains("installed in namespace kubetap"),
        "{stderr}"
    );

    // kubectl sees the workloads and the service.
    let all = Command::new("kubectl")
        .args(["get", "-n", "kubetap", "all", "-o", "name"])
        .env("KUBECONFIG", api.kubeconfig())
        .output()
        .unwrap();
    let (names, err) = text(&all);
    assert!(all.status.success(), "{err}");
    for want in [
        "service/kubetap-hub",
        "deployment.apps/kubetap-hub",
        "daemonset.apps/kubetap-worker",
    ] {
        assert!(names.lines().any(|l| l == want), "kubectl get all: {names}");
    }
    // The Python client sees the secrets and the role, with the label.
    let py = Command::new("python3")
        .args([
            "-c",
            "import sys\n\
from kubernetes import client, config\n\
config.load_kube_config(config_file=sys.argv[1])\n\
core = client.CoreV1Api()\n\
print(' '.join(sorted(s.metadata.name for s in core.list_namespaced_secret('kubetap', label_selector='app.kubernetes.io/part-of=kubetap').items)))\n\
rbac = client.RbacAuthorizationV1Api()\n\
print(rbac.read_cluster_role('kubetap-hub-kubetap').rules[0].resources)",
        ])
        .arg(api.kubeconfig())
        .output()
        .unwrap();
    let (said, err) = text(&py);
    assert!(py.status.success(), "{err}");
    assert_eq!(
        said,
        "kubetap-hub-certs kubetap-token kubetap-worker-certs\n['pods']\n"
    );

    // Again: every object unchanged, the server's resourceVersion too, and
    // the token kept (the workers' certificates with it).
    let token = api.get("Secret", "kubetap", "kubetap-token").unwrap()["data"]["token"].clone();
    let version = api.resource_version();
    let out = cli.run(&["install"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.matches(" unchanged\n").count(), 11, "{stdout}");
    assert_eq!(
        api.resource_version(),
        version,
        "a second install changed something"
    );
    assert_eq!(
        api.get("Secret", "kubetap", "kubetap-token").unwrap()["data"]["token"],
        token
    );

    let out = cli.run(&["clean"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.matches(" deleted\n").count(), 11, "{stdout}");
    assert_eq!(leftovers(&api), Vec::<String>::new());
    // Nothing left to clean: said, and not an error.
    let out = cli.run(&["clean"]);
    let (_, stderr) = text(&out);
    assert!(
        out.status.success() && stderr.contains("nothing to remove"),
        "{stderr}"
    );
}

#[test]
fn a_cluster_that_says_no_is_named_and_nothing_is_left_half_made() {
    let api = ApiServer::start().unwrap();
    let cli = Cli::new(&api);

    // A verb RBAC forbids, midway: the error names it, what was made is removed.
    api.set_denied(&[Denial::new("patch", "apps", "daemonsets")]);
    let out = cli.run(&["install"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("forbidden") && stderr.contains("daemonsets") && stderr.contains("removed"),
        "{stderr}"
    );
    assert_eq!(leftovers(&api), Vec::<String>::new());
    api.set_denied(&[]);

    // An unknown context, before anything is sent.
    let out = cli.run(&["install", "--context", "nope"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("no context \"nope\""), "{stderr}");

    // Expired credentials.
    api.expire_token();
    for command in ["install", "clean"] {
        let out = cli.run(&[command]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{command}");
        assert!(
            stderr.contains("refused the kubeconfig's credentials") && stderr.contains("log in"),
            "{command}: {stderr}"
        );
    }
    assert_eq!(leftovers(&api), Vec::<String>::new());

    // An API server that is not there.
    let kubeconfig = std::fs::read_to_string(api.kubeconfig()).unwrap();
    let url = api.url();
    drop(api);
    let gone = cli.home.path("gone.kubeconfig");
    std::fs::write(
        &gone,
        kubeconfig.replace(&url, &format!("https://127.0.0.1:{}", testkit::free_port())),
    )
    .unwrap();
    let out = Command::new(peers::sibling("kubetap"))
        .args(["install", "--kubeconfig"])
        .arg(&gone)
        .env("HOME", cli.home.root())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach the API server at https://127.0.0.1:"),
        "{stderr}"
    );
}

/// `install` interrupted (SIGINT, as Ctrl-C sends) on a slow API server:
/// a first install removes what it had made and says so; an update of an
/// earlier install leaves it (the cluster had it before) and says how to
/// finish or remove it, and `clean` then leaves nothing. Both exit 130.
#[test]
fn ctrl_c_during_install_leaves_nothing_half_installed() {
    let api = ApiServer::start().unwrap();
    let cli = Cli::new(&api);
    let interrupted = |args: &[&str], started: &dyn Fn() -> bool| {
        let mut install = cli.spawn(args);
        testkit::eventually(Duration::from_secs(30), "the install under way", || {
            started().then_some(())
        });
        assert!(
            install.try_wait().unwrap().is_none(),
            "it ended before the interrupt"
        );
        Command::new("kill")
            .args(["-INT", &install.id().to_string()])
            .status()
            .unwrap();
        let status = install
            .wait_timeout(Duration::from_secs(60))
            .unwrap()
            .expect("the interrupted install ends");
        let mut said = String::new();
        std::io::Read::read_to_string(&mut install.child().stderr.take().unwrap(), &mut said)
            .unwrap();
        (status.code(), said)
    };

    api.set_latency(Duration::from_millis(150));
    let (code, said) = interrupted(&["install"], &|| leftovers(&api).len() >= 3);
    assert_eq!(code, Some(130), "{said}");
    assert!(
        said.contains("interrupted; removing what this install made"),
        "{said}"
    );
    assert_eq!(leftovers(&api), Vec::<String>::new(), "{said}");

    api.set_latency(Duration::ZERO);
    assert!(cli.run(&["install"]).status.success());
    let installed = leftovers(&api);
    api.set_latency(Duration::from_millis(150));
    api.clear_requests();
    let (code, said) = interrupted(&["install", "--tag", "other"], &|| {
        api.requests().iter().any(|r| r.method == "PATCH")
    });
    assert_eq!(code, Some(130), "{said}");
    assert!(
        said.contains("kubetap was installed before: run `kubetap install` again to finish, or `kubetap clean`"),
        "{said}"
    );
    assert_eq!(leftovers(&api), installed, "the earlier install is left");
    api.set_latency(Duration::ZERO);
    assert!(cli.run(&["clean"]).status.success());
    assert_eq!(leftovers(&api), Vec::<String>::new());
}

/// A real `tap-hub` with the install's token, where the hub pod's port 8899
/// leads (the API server's port-forward), started with `extra` (its
/// kubeconfig is the test API server's); it, its gRPC port and its HTTP
/// port.
fn real_hub(api: &ApiServer, extra: &[&str]) -> (testkit::Process, u16, u16) {
    let (grpc, http) = (testkit::free_port(), testkit::free_port());
    let mut hub = testkit::Process::spawn(
        Command::new(peers::sibling("tap-hub"))
            .args(["--grpc", &format!("127.0.0.1:{grpc}")])
            .args(["--listen", &format!("127.0.0.1:{http}")])
            .arg("--certs")
            .arg(peers::certs())
            .args(extra)
            .env("KUBETAP_TOKEN", installed_token(api))
            .env("KUBECONFIG", api.kubeconfig())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped()),
    )
    .unwrap();
    line_with(hub.child(), "workers connect");
    api.set_port_forward(
        "kubetap",
        "kubetap-hub-5d8f",
        8899,
        ([127, 0, 0, 1], http).into(),
    );
    (hub, grpc, http)
}

/// Reads `child`'s stderr until a line holds `what`; that line.
fn line_with(child: &mut std::process::Child, what: &str) -> String {
    use std::io::BufRead as _;
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut said = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains(what) {
            std::thread::spawn(move || for _ in lines {});
            return line;
        }
        said.push_str(&line);
        said.push('\n');
    }
    panic!("never said {what:?}:\n{said}")
}

/// `view` (and its alias `proxy`) forwards a local port to the hub's pod
/// through the API server's port-forward (kube-rs's WebSocket protocol),
/// here to a real `tap-hub`, and prints the address with the install's
/// token; without a ready hub pod it says why.
#[test]
fn view_forwards_a_local_port_to_the_hub_pod_with_the_installs_token() {
    let api = ApiServer::start().unwrap();
    let cli = Cli::new(&api);
    assert!(cli.run(&["install"]).status.success());
    let token = installed_token(&api);

    // No hub pod, then one not ready: each said.
    let out = cli.run(&["view", "--no-browser"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("hub is not running in namespace kubetap"),
        "{stderr}"
    );
    api.create(hub_pod("False")).unwrap();
    let out = cli.run(&["view", "--no-browser"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("kubetap-hub-5d8f: Running, not ready"),
        "{stderr}"
    );
    api.delete("Pod", "kubetap", "kubetap-hub-5d8f").unwrap();
    api.create(hub_pod("True")).unwrap();

    // A real hub with the install's token, where the pod's port 8899 leads.
    let _hub = real_hub(&api, &[]);

    for command in ["view", "proxy"] {
        let port = testkit::free_port();
        let mut view = cli.spawn(&[command, "--no-browser", "--port", &port.to_string()]);
        let said = line_with(view.child(), "the hub's UI");
        assert!(
            said.contains(&format!("http://127.0.0.1:{port}/?token={token}")),
            "{said}"
        );
        // Several connections, each through its own forward, with the token.
        let addr = ([127, 0, 0, 1], port).into();
        for _ in 0..3 {
            let reply =
                testkit::http::try_request_as(addr, "GET", "/api/workers", None, Some(&token), &[])
                    .unwrap();
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert!(reply.json()["hub"]["sessions"].is_u64(), "{}", reply.body);
        }
        // The hub behind it still wants the token.
        let reply =
            testkit::http::try_request_as(addr, "GET", "/api/workers", None, None, &[]).unwrap();
        assert_eq!(reply.status, 401);
    }
}

/// `check` before install (API server, every right, the nodes' kernels) and
/// after (the hub ready, a worker on every node, each worker as the hub
/// sees it through a port-forward); a denied right or a missing hub fails
/// with what to do.
#[test]
fn check_says_what_passes_and_what_fails_before_and_after_install() {
    if !testkit::require_root() {
        return;
    }
    let api = ApiServer::start().unwrap();
    let cli = Cli::new(&api);
    for (name, kernel) in [("node-a", "6.18.0-1-amd64"), ("node-b", "5.4.0-1103-aws")] {
        api.create(serde_json::json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"nodeInfo": {"kernelVersion": kernel}},
        }))
        .unwrap();
    }
    let out = cli.run(&["check"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("[pass] API server: https://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("[pass] rights: all "), "{stdout}");
    assert!(
        stdout.contains("[pass] nodes: 2 (node-a 6.18.0-1-amd64, node-b 5.4.0-1103-aws); TLS plaintext (--tls) needs Linux 5.8 or later, not on node-b"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[pass] install: kubetap is not installed"),
        "{stdout}"
    );

    api.set_denied(&[Denial::new("patch", "apps", "daemonsets")]);
    let out = cli.run(&["check"]);
    let (stdout, _) = text(&out);
    assert!(!out.status.success());
    assert!(
        stdout.contains("[FAIL] right: not allowed to patch daemonsets.apps (install and clean)"),
        "{stdout}"
    );
    api.set_denied(&[]);

    // Installed, but nothing runs yet: the hub and the workers fail.
    assert!(cli.run(&["install"]).status.success());
    let out = cli.run(&["check"]);
    let (stdout, _) = text(&out);
    assert!(!out.status.success());
    assert!(
        stdout.contains("[FAIL] hub: kubetap's hub is not running"),
        "{stdout}"
    );
    assert!(stdout.contains("[FAIL] workers: 0 of 0 nodes"), "{stdout}");

    // A ready hub pod leading to a real hub, a worker connected to it, and
    // the DaemonSet's status as its controller would write it.
    let (_hub, grpc, _) = real_hub(&api, &[]);
    let mut worker = testkit::Process::spawn(
        Command::new(peers::sibling("tap-worker"))
            .args(["--hub", &format!("https://127.0.0.1:{grpc}")])
            .arg("--certs")
            .arg(peers::certs())
            .args(["--node", "node-a", "-i", "lo"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped()),
    )
    .unwrap();
    line_with(worker.child(), "connected to the hub");
    api.create(hub_pod("True")).unwrap();
    let mut ds = api.get("DaemonSet", "kubetap", "kubetap-worker").unwrap();
    ds["status"] = serde_json::json!({"desiredNumberScheduled": 1, "numberReady": 1,
        "currentNumberScheduled": 1, "numberMisscheduled": 0});
    api.update(ds).unwrap();
    let out = cli.run(&["check"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("[pass] hub: pod kubetap/kubetap-hub-5d8f ready"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[pass] workers: 1 of 1 nodes have a ready worker"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "[pass] worker on node-a: connected, version {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{stdout}"
    );
}

/// `kubetap tap ^web- -n shop` forwarding the UI to `port`, and its
/// stderr's lines.
fn tap_web_in_shop(cli: &Cli, port: u16) -> (testkit::Process, std::sync::mpsc::Receiver<String>) {
    let port = port.to_string();
    let mut tap = cli.spawn(&[
        "tap",
        "^web-",
        "-n",
        "shop",
        "--no-browser",
        "--port",
        &port,
    ]);
    let lines = stderr_lines(tap.child());
    (tap, lines)
}

/// Lines of a child's stderr, as they come.
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("tap: {line}");
            let _ = tx.send(line);
        }
    });
    rx
}

fn wait_line(lines: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(_) => panic!("never said {what:?}"),
        }
    }
}

fn pod(name: &str, namespace: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
    })
}

/// `tap POD_REGEX -n NS`: a bad regex or namespace is said before anything
/// is done; otherwise kubetap is installed, the hub waited for, given the
/// targets, its UI forwarded, and the status line counts the pods the
/// targets take as pods come and go; Ctrl-C stops the forwarding only.
#[test]
fn tap_installs_targets_pods_follows_them_and_forwards_the_ui() {
    let api = ApiServer::start().unwrap();
    let cli = Cli::new(&api);
    for ns in ["shop", "other"] {
        api.create(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .unwrap();
    }
    for (name, ns) in [
        ("web-1", "shop"),
        ("web-2", "shop"),
        ("db-1", "shop"),
        ("web-3", "other"),
    ] {
        api.create(pod(name, ns)).unwrap();
    }

    api.clear_requests();
    let out = cli.run(&["tap", "web[", "-n", "shop", "--no-browser"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the pod regex \"web[\" is not valid"),
        "{stderr}"
    );
    assert!(api.requests().is_empty(), "a bad regex reached the cluster");
    let out = cli.run(&["tap", "web", "-n", "shop", "-n", "nope", "--no-browser"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("namespace \"nope\" does not exist"),
        "{stderr}"
    );
    assert_eq!(leftovers(&api), Vec::<String>::new(), "nothing installed");

    let port = testkit::free_port();
    let (mut tap, lines) = tap_web_in_shop(&cli, port);
    wait_line(&lines, "installed in namespace kubetap");
    wait_line(&lines, "waiting for the hub to be ready");

    // The hub "starts": a real tap-hub with the install's token behind a
    // ready pod.
    let token = installed_token(&api);
    let (_hub, _, hub_http) = real_hub(&api, &[]);
    api.create(hub_pod("True")).unwrap();
    wait_line(
        &lines,
        "tapping pods matching \"^web-\" in namespace(s) shop",
    );
    let ui = wait_line(&lines, "the UI: ");
    assert!(
        ui.contains(&format!("http://127.0.0.1:{port}/?token={token}")),
        "{ui}"
    );
    // The hub has the targets.
    let hub_addr = ([127, 0, 0, 1], hub_http).into();
    let config =
        testkit::http::try_request_as(hub_addr, "GET", "/api/config", None, Some(&token), &[])
            .unwrap()
            .json();
    assert_eq!(config["target_pods"], serde_json::json!(["^web-"]));
    assert_eq!(config["target_namespaces"], serde_json::json!(["shop"]));
    // The status follows the pods the targets take.
    wait_line(&lines, "pods targeted 2 · workers connected 0/0");
    api.create(pod("web-4", "shop")).unwrap();
    api.create(pod("web-5", "other")).unwrap();
    wait_line(&lines, "pods targeted 3 ·");
    api.delete("Pod", "shop", "web-1").unwrap();
    wait_line(&lines, "pods targeted 2 ·");
    // The UI's port leads to the hub.
    let reply = testkit::http::try_request_as(
        ([127, 0, 0, 1], port).into(),
        "GET",
        "/api/workers",
        None,
        Some(&token),
        &[],
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Ctrl-C: forwarding stops, kubetap stays installed.
    let pid = tap.child().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_line(
        &lines,
        "stopped forwarding; the workers keep capturing until `kubetap clean`",
    );
    let status = tap.child().wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(api.get("DaemonSet", "kubetap", "kubetap-worker").is_some());
}

/// Light on the API server: once `tap` runs (its watch on the targeted
/// namespaces' pods, the status line read from the hub over one kept
/// port-forward) and the hub follows the cluster's pods (`--watch-pods`, as
/// installed), a whole minute passes without one request to the API
/// server: nothing polls, each follows its pods with one watch.
#[test]
fn a_minute_of_tap_and_the_hub_asks_the_api_server_nothing() {
    let api = ApiServer::start().unwrap();
    let cli = Cli::new(&api);
    api.create(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    )
    .unwrap();
    for (i, name) in ["web-1", "web-2"].iter().enumerate() {
        let mut p = pod(name, "shop");
        p["spec"]["nodeName"] = "node-a".into();
        p["status"] = serde_json::json!({"phase": "Running",
            "podIP": format!("10.244.0.{}", i + 10), "podIPs": [{"ip": format!("10.244.0.{}", i + 10)}]});
        api.create(p).unwrap();
    }
    assert!(cli.run(&["install"]).status.success());
    let token = installed_token(&api);
    let (_hub, _, hub_http) = real_hub(&api, &["--watch-pods"]);
    api.create(hub_pod("True")).unwrap();
    let (mut tap, lines) = tap_web_in_shop(&cli, testkit::free_port());
    wait_line(&lines, "the UI: ");
    wait_line(&lines, "pods targeted 2 ·");
    let hub_addr = ([127, 0, 0, 1], hub_http).into();
    testkit::eventually(Duration::from_secs(30), "the hub follows the pods", || {
        let v =
            testkit::http::try_request_as(hub_addr, "GET", "/api/workers", None, Some(&token), &[])
                .ok()?
                .json();
        (v["hub"]["pods_followed"].as_u64()? >= 2).then_some(())
    });
    // Each watch that is open now was made before the minute starts.
    std::thread::sleep(Duration::from_secs(2));
    api.clear_requests();
    std::thread::sleep(Duration::from_secs(60));
    let asked: Vec<String> = api
        .requests()
        .iter()
        .map(|r| format!("{} {}?{}", r.verb, r.path, r.query))
        .collect();
    assert_eq!(
        asked,
        Vec::<String>::new(),
        "requests in a minute of steady state"
    );
    assert!(tap.try_wait().unwrap().is_none(), "tap still runs");
    // And it was following: a new pod is counted at once.
    let mut p = pod("web-3", "shop");
    p["status"] = serde_json::json!({"phase": "Running", "podIP": "10.244.0.30", "podIPs": [{"ip": "10.244.0.30"}]});
    api.create(p).unwrap();
    wait_line(&lines, "pods targeted 3 ·");
}

/// Into a namespace kubetap did not make: installed without changing the
/// namespace, and clean leaves it and what else is in it.
#[test]
fn a_namespace_kubetap_did_not_make_is_never_deleted() {
    let api = ApiServer::start().unwrap();
    let cli = Cli::new(&api);
    api.create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}}))
        .unwrap();
    api.create(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "theirs", "namespace": "monitoring"}, "data": {"a": "b"}}))
        .unwrap();
    let out = cli.run(&["install", "--kubetap-namespace", "monitoring"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("namespace monitoring exists and is not kubetap's"),
        "{stderr}"
    );
    assert_eq!(stdout.matches(" created\n").count(), 10, "{stdout}");
    assert!(!stdout.contains("namespace/"), "{stdout}");
    let out = cli.run(&["clean", "--kubetap-namespace", "monitoring"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.matches(" deleted\n").count(), 10, "{stdout}");
    assert!(
        api.get("Namespace", "", "monitoring").is_some(),
        "the namespace was deleted"
    );
    assert!(api.get("ConfigMap", "monitoring", "theirs").is_some());
}

/// The install's API token, from its Secret.
fn installed_token(api: &ApiServer) -> String {
    use base64::Engine as _;
    let secret = api.get("Secret", "kubetap", "kubetap-token").unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(secret["data"]["token"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// The hub's pod as its Deployment would make it, Ready `ready`.
fn hub_pod(ready: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kubetap-hub-5d8f", "namespace": "kubetap", "labels": {
            "app.kubernetes.io/part-of": "kubetap", "app.kubernetes.io/component": "hub"}},
        "spec": {"containers": [{"name": "tap-hub", "image": "tap-hub"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]},
    })
}
