//! kubetap installed in a cluster that runs it: the test API server on a
//! testkit node's address and `testkit::kube_api::kubelet` running the
//! chart's Deployment and DaemonSet (the hub in a pod's network namespace as
//! uid 65532, the worker on the node's network with the chart's
//! capabilities only, both with their Secrets mounted where the chart says,
//! the hub following pods through its service account). The `kubetap`
//! commands run on the node, as a user's would: `install`, `check`, `tap`
//! with real HTTP and HTTPS between two pods, `version`, `export` (with
//! `--encrypted` too), `logs`, `clean`.
//! Needs root (namespaces, mounts), python3, curl, tshark.

mod peers;

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;
use testkit::kube_api::ApiServer;
use testkit::kube_api::kubelet::Kubelet;
use testkit::{Node, Pod, TempDir};

struct Cli<'a> {
    node: &'a Node,
    home: TempDir,
    kubeconfig: std::path::PathBuf,
}

impl Cli<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = self
            .node
            .command(peers::sibling("kubetap").to_str().unwrap());
        c.args(args)
            .env("HOME", self.home.root())
            .env("KUBECONFIG", &self.kubeconfig);
        c
    }

    /// Runs to the end; its stdout, and its stderr when it fails.
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out: Output = self.command(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn pod_object(p: &Pod) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": p.name, "namespace": "shop"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "app"}]},
        "status": {"phase": "Running", "podIP": p.ip.to_string(), "podIPs": [{"ip": p.ip.to_string()}]},
    })
}

fn ready(api: &ApiServer, component: &str) -> Option<serde_json::Value> {
    api.list("Pod", Some("kubetap")).into_iter().find(|p| {
        p["metadata"]["labels"]["app.kubernetes.io/component"] == component
            && p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    })
}

#[test]
fn an_installed_kubetap_runs_taps_pods_and_is_cleaned_away() {
    if !testkit::require_root()
        || !testkit::require_tools(
            "cluster test",
            true,
            &["python3", "curl", "tshark", "setpriv", "unshare"],
        )
    {
        return;
    }
    let node = Arc::new(Node::new("kc").unwrap());
    let gateway = node.gateway();
    let api = Arc::new(
        node.in_netns(move || ApiServer::start_on(gateway.into()))
            .unwrap()
            .unwrap(),
    );
    let _kubelet = Kubelet::start(
        api.clone(),
        node.clone(),
        "node-a",
        &[
            ("tap-hub", peers::sibling("tap-hub")),
            ("tap-worker", peers::sibling("tap-worker")),
        ],
    )
    .unwrap();
    let web = node.pod("web").unwrap();
    let client = node.pod("client").unwrap();
    // Its sandbox's process, as a pod's pause container is: the worker
    // finds a pod's network namespace through a process in it (the host's
    // /run/netns is not in its container).
    let _pause = client
        .spawn(client.command("sleep").arg("600").stdout(Stdio::null()))
        .unwrap();
    api.create(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    )
    .unwrap();
    api.create(pod_object(&web)).unwrap();
    api.create(pod_object(&client)).unwrap();
    let _server = peers::node::http_servers(&node, &[&web], 8080);
    let dir = TempDir::new("kube-cluster");
    let (cert, key) = testkit::self_signed(&dir, "web");
    let _https = peers::node::https_server(&node, &web, &cert, &key);
    let cli = Cli {
        node: &node,
        home: TempDir::new("kube-cluster-home"),
        kubeconfig: api.kubeconfig().to_path_buf(),
    };

    let (ok, out, err) = cli.run(&["install", "--tls"]);
    assert!(ok, "{out}{err}");
    let pods = || {
        api.list("Pod", Some("kubetap"))
            .iter()
            .map(|p| format!("{} {}", p["metadata"]["name"], p["status"]))
            .collect::<Vec<_>>()
    };
    let started = std::time::Instant::now();
    while (ready(&api, "hub").is_none() || ready(&api, "worker").is_none())
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        ready(&api, "hub").is_some() && ready(&api, "worker").is_some(),
        "the hub and the worker ready: {:#?}",
        pods()
    );

    // They run as the chart says: the hub as 65532 with no capability, the
    // worker as root with the three it asks for, neither able to gain more.
    let hub = status_of("tap-hub");
    assert!(hub.contains("Uid:\t65532\t65532\t65532\t65532"), "{hub}");
    assert!(hub.contains("CapEff:\t0000000000000000"), "{hub}");
    assert!(hub.contains("NoNewPrivs:\t1"), "{hub}");
    let worker = status_of("tap-worker");
    assert!(worker.contains("Uid:\t0\t0\t0\t0"), "{worker}");
    // NET_RAW (13), SYS_PTRACE (19), SYS_ADMIN (21), PERFMON (38), BPF (39).
    let caps = (1u64 << 13) | (1 << 19) | (1 << 21) | (1 << 38) | (1 << 39);
    assert!(
        worker.contains(&format!("CapEff:\t{caps:016x}")),
        "{worker}"
    );
    assert!(
        worker.contains(&format!("CapBnd:\t{caps:016x}")),
        "{worker}"
    );

    // check: every line passes, the worker connected to the hub.
    // (The worker reports its TLS state once its probes are loaded.)
    let check = testkit::eventually(Duration::from_secs(30), "check passing, TLS on", || {
        let (ok, out, _) = cli.run(&["check"]);
        (ok && out.contains(", TLS on")).then_some(out)
    });
    assert!(
        check.contains("[pass] hub: pod kubetap/kubetap-hub-"),
        "{check}"
    );
    assert!(
        check.contains("[pass] workers: 1 of 1 nodes have a ready worker"),
        "{check}"
    );
    assert!(
        check.contains("[pass] worker on node-a: connected"),
        "{check}"
    );

    // tap: the pods of shop named web, the UI on a local port of the node.
    let port = testkit::free_port();
    let mut tap = testkit::Process::spawn(
        cli.command(&[
            "tap",
            "^web$",
            "-n",
            "shop",
            "--no-browser",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped()),
    )
    .unwrap();
    let stderr = tap.child().stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            eprintln!("tap: {l}");
            let _ = tx.send(l);
        }
    });
    let ui = loop {
        let l = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("tap printed the UI's address");
        if l.contains("the UI: ") {
            break l;
        }
    };
    let token = ui
        .split("?token=")
        .nth(1)
        .expect("the UI's address has the token")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let ui_get = |path: String| {
        let token = token.clone();
        node.in_netns(move || {
            testkit::http::try_request_as(
                ([127, 0, 0, 1], port).into(),
                "GET",
                &path,
                None,
                Some(&token),
                &[],
            )
        })
        .unwrap()
    };
    for i in 0..3 {
        let out = client
            .command("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{}:8080/kc-{i}", web.ip))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    }
    // And one over TLS, read in plain text by the worker's uprobes on the
    // server's libssl, once the worker has found it (its first look at the
    // node's processes takes a moment after it reports TLS on).
    let https = u64::from(_https.id());
    testkit::eventually(Duration::from_secs(30), "the HTTPS server hooked", || {
        let v = ui_get("/api/workers".into()).ok()?.json();
        v["workers"][0]["tls"]["libraries"]
            .as_array()?
            .iter()
            .any(|l| {
                l["hooked"] == true
                    && l["processes"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|p| p["pid"] == https))
            })
            .then_some(())
    });
    let out = client
        .command("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://{}:8443/kc-tls", web.ip))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    // On failure: what the hub has, and the worker's log.
    let worker_log = || {
        let pod = ready(&api, "worker").map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        pod.and_then(|p| api.pod_log("kubetap", &p, "tap-worker"))
            .unwrap_or_default()
    };
    let started = std::time::Instant::now();
    let entries = testkit::eventually(
        Duration::from_secs(40),
        "the pods' entries in the UI's API",
        || {
            if started.elapsed() > Duration::from_secs(30) {
                let all = ui_get("/api/entries?limit=100".into()).ok()?.body;
                panic!(
                    "not within 30 s; the entries: {all}\nthe worker's log:\n{}",
                    worker_log()
                );
            }
            let reply = ui_get("/api/entries?limit=100".into()).ok()?;
            let v = reply.json();
            let es: Vec<serde_json::Value> = v["entries"]
                .as_array()?
                .iter()
                .filter(|e| {
                    e["request"]["path"]
                        .as_str()
                        .is_some_and(|p| p.starts_with("/kc-"))
                })
                .cloned()
                .collect();
            (es.len() == 4).then_some(es)
        },
    );
    for e in &entries {
        assert_eq!(e["dst"]["pod"], "web", "{e}");
        assert_eq!(e["dst"]["namespace"], "shop", "{e}");
        assert_eq!(e["src"]["pod"], "client", "{e}");
        assert_eq!(e["node"], "node-a", "{e}");
        let tls = e["request"]["path"] == "/kc-tls";
        assert_eq!(e["tls"], tls, "{e}");
        assert_eq!(e["response"]["status"], if tls { 200 } else { 404 }, "{e}");
    }

    // version: the CLI's, the hub's and the worker's.
    let (ok, out, err) = cli.run(&["version"]);
    assert!(ok, "{err}");
    let v = env!("CARGO_PKG_VERSION");
    assert!(out.contains(&format!("kubetap {v}\n")), "{out}");
    assert!(
        out.contains(&format!("hub {v} (pod kubetap/kubetap-hub-")),
        "{out}"
    );
    assert!(
        out.contains(&format!("worker node-a {v} (connected)")),
        "{out}"
    );

    // export: the exchanges as a PCAP that tshark reads as HTTP.
    let pcap = dir.path("kc.pcapng");
    let (ok, out, err) = cli.run(&[
        "export",
        "request.path.startsWith(\"/kc-\")",
        "-o",
        pcap.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    // The TLS exchange as its plaintext made into TCP packets.
    let mut uris: Vec<String> = peers::tshark_fields(
        &pcap,
        &["-d", "tcp.port==8443,http"],
        "http.request",
        &["http.request.uri"],
    )
    .into_iter()
    .map(|row| row[0][0].clone())
    .collect();
    uris.sort();
    assert_eq!(uris, ["/kc-0", "/kc-1", "/kc-2", "/kc-tls"]);

    // --encrypted: the TLS exchange's captured packets beside its
    // plaintext, as tshark reads them: TLS records and the same HTTP request
    // on one pair of ports.
    let both = dir.path("kc-tls.pcapng");
    let (ok, out, err) = cli.run(&[
        "export",
        "request.path == \"/kc-tls\"",
        "--encrypted",
        "-o",
        both.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let ports = |filter: &str| -> BTreeSet<Vec<String>> {
        peers::tshark_fields(&both, &[], filter, &["tcp.srcport", "tcp.dstport"])
            .into_iter()
            .map(|row| {
                let mut ends = [row[0].concat(), row[1].concat()].to_vec();
                ends.sort();
                ends
            })
            .collect()
    };
    let records = ports(r#"tls.record && frame.comment contains "captured""#);
    assert_eq!(
        records.len(),
        1,
        "one connection's TLS records: {records:?}"
    );
    assert_eq!(
        ports(r#"http.request.uri == "/kc-tls""#),
        records,
        "its plaintext on the same ports"
    );

    // A filter the hub refuses: its reason, and no file.
    let refused = dir.path("refused.pcapng");
    let (ok, _, err) = cli.run(&["export", "request.path ==", "-o", refused.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("filter"), "{err}");
    assert!(!refused.exists());

    // logs: the pods' logs (the hub's own lines), check's output, no token.
    let zip = dir.path("logs.zip");
    let (ok, out, err) = cli.run(&["logs", "-o", zip.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let listing = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nfor n in z.namelist():\n    print('== ' + n)\n    print(z.read(n).decode('utf-8', 'replace'))",
        ])
        .arg(&zip)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let name = |component: &str| {
        ready(&api, component).unwrap()["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (hub_pod, worker_pod) = (name("hub"), name("worker"));
    for file in [
        "version.txt".to_string(),
        "check.txt".into(),
        "config.yaml".into(),
        "events.yaml".into(),
        format!("pods/{hub_pod}.yaml"),
        format!("pods/{worker_pod}.yaml"),
        format!("logs/{hub_pod}/tap-hub.log"),
        format!("logs/{worker_pod}/tap-worker.log"),
    ] {
        assert!(
            listing.contains(&format!("== kubetap-logs/{file}\n")),
            "{file} in the zip: {listing}"
        );
    }
    assert!(
        listing.contains("workers connect"),
        "the hub's log: {listing}"
    );
    assert!(
        listing.contains("connected to the hub"),
        "the worker's log: {listing}"
    );
    assert!(listing.contains("[pass] hub"), "check's output: {listing}");
    assert!(!listing.contains(&token), "the token is in the zip");

    // Ctrl-C ends the forward; clean stops the hub and the worker.
    Command::new("kill")
        .args(["-INT", &tap.id().to_string()])
        .status()
        .unwrap();
    assert!(tap.wait_timeout(Duration::from_secs(20)).unwrap().is_some());
    let (ok, out, err) = cli.run(&["clean"]);
    assert!(ok, "{out}{err}");
    testkit::eventually(Duration::from_secs(30), "the kubetap pods gone", || {
        api.list("Pod", Some("kubetap")).is_empty().then_some(())
    });
    // Their processes end with their pods (the copies of the binaries the
    // kubelet ran are under its pods' directories).
    testkit::eventually(
        Duration::from_secs(20),
        "the containers' processes gone",
        || {
            let out = Command::new("pgrep")
                .args(["-f", "kubetap-kubelet-pod-.*/bin/tap-"])
                .output()
                .ok()?;
            out.stdout.is_empty().then_some(())
        },
    );
}

/// `/proc/<pid>/status` of the one process running the kubelet's copy of
/// `binary`.
fn status_of(binary: &str) -> String {
    let out = Command::new("pgrep")
        .args(["-f", &format!("kubetap-kubelet-pod-[^ ]*/bin/{binary} ")])
        .output()
        .unwrap();
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(pids.len(), 1, "one {binary} process: {pids:?}");
    std::fs::read_to_string(format!("/proc/{}/status", pids[0])).unwrap()
}
