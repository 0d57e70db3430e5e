//! A worker given target pods (`tap-worker --pods FILE`) inside a testkit node
//! (network namespaces on a bridge, like a CNI bridge) with a real hub:
//!
//! - it finds each target pod's host veth itself, names the pods in the
//!   entries, and leaves other pods' traffic and pods of other nodes alone;
//! - a pod added to the list while running is picked up;
//! - traffic between two watched pods makes exactly one entry per request,
//!   and its exported packets have no duplicates (no packet counted twice);
//! - a watched pod deleted mid-capture ends only its own capture: the others
//!   keep producing entries;
//! - without a pod list, a bridge and its ports captured together count each
//!   packet once (copies on a second interface are skipped and counted).

mod peers;

use peers::{Peer, node, sibling};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};
use testkit::{Node, Pod, require, require_root};

fn curl(from: &Pod, to: &Pod, path: &str) {
    let ok = from
        .command("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            &format!("http://{}:8080{path}", to.ip),
        ])
        .status()
        .unwrap();
    assert!(ok.success(), "curl {} -> {}{path}", from.name, to.name);
}

/// Waits for a worker log line containing `what`.
fn wait_log(lines: &Receiver<String>, what: &str) {
    wait_logs(lines, &[what]);
}

/// Waits for log lines containing each of `what`, in any order.
fn wait_logs(lines: &Receiver<String>, what: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut missing: Vec<&str> = what.to_vec();
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => missing.retain(|w| !l.contains(w)),
            Err(_) => panic!("never logged {missing:?}"),
        }
    }
}

/// The http entries the hub holds for `filter`, oldest first, once there
/// are `n` of them (and no more after a short wait).
fn entries(node: &Node, port: u16, filter: &str, n: usize) -> Vec<serde_json::Value> {
    let q: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    let started = Instant::now();
    let mut settled: Option<Instant> = None;
    loop {
        let v = node::api(node, port, &format!("/api/entries?filter={q}&limit=1000"));
        let mut got = v["entries"].as_array().unwrap().clone();
        if got.len() >= n {
            let s = *settled.get_or_insert_with(Instant::now);
            if s.elapsed() > Duration::from_millis(1500) {
                got.reverse();
                return got;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} of {n} entries for {filter} arrived",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn pod_json(p: &Pod, node: &str) -> serde_json::Value {
    serde_json::json!({"name": p.name, "namespace": "shop", "ips": [p.ip.to_string()], "node": node})
}

/// `tap-worker --node node-a --pods LIST` in `node`, shipping to the hub on
/// `grpc`; its log lines come out of the receiver.
fn pods_worker(node: &Node, grpc: u16, list: &std::path::Path) -> (Peer, Receiver<String>) {
    node_a_worker(node, grpc, &["--pods", list.to_str().unwrap()])
}

/// `tap-worker --node node-a` with `source` (its pods) in `node`.
fn node_a_worker(node: &Node, grpc: u16, source: &[&str]) -> (Peer, Receiver<String>) {
    let mut worker = Peer::start(
        node.command(sibling("tap-worker").to_str().unwrap())
            .args(["--hub", &format!("https://127.0.0.1:{grpc}")])
            .arg("--certs")
            .arg(peers::certs())
            .args(["--node", "node-a"])
            .args(source)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let lines = log_lines(&mut worker, "worker");
    (worker, lines)
}

#[test]
fn a_worker_follows_its_target_pods() {
    if !require_root() || !require(&["python3", "curl", "tshark"]) {
        return;
    }
    let node = Node::new("tg").unwrap();
    let web = node.pod("web").unwrap();
    let api_pod = node.pod("api").unwrap();
    let client = node.pod("client").unwrap();
    let other = node.pod("other").unwrap();
    let elsewhere = node.pod("elsewhere").unwrap();
    let servers = node::http_servers(&node, &[&web, &api_pod, &other, &elsewhere], 8080);

    let dir = std::env::temp_dir().join(format!("kt-targets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("pods.json");
    // `elsewhere` is listed for another node: this worker leaves it alone.
    let write_list = |pods: Vec<serde_json::Value>| {
        let tmp = dir.join("pods.json.new");
        std::fs::write(&tmp, serde_json::to_vec(&pods).unwrap()).unwrap();
        std::fs::rename(&tmp, &list).unwrap();
    };
    write_list(vec![
        pod_json(&web, "node-a"),
        pod_json(&elsewhere, "node-b"),
    ]);

    let (grpc, http) = (18798, 18799);
    let mut hub = node::hub(&node, grpc, http, &[]);
    let (mut worker, lines) = pods_worker(&node, grpc, &list);
    wait_log(&lines, &format!("capturing shop/web on {}", web.host_veth));

    // 1. client -> web is watched; other -> elsewhere and client -> other are not.
    for i in 0..4 {
        curl(&client, &web, &format!("/web-{i}"));
        curl(&other, &elsewhere, &format!("/elsewhere-{i}"));
        curl(&client, &other, &format!("/other-{i}"));
    }
    let got = entries(&node, http, "protocol == \"http\"", 4);
    assert_eq!(got.len(), 4, "only the watched pod's requests: {got:#?}");
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e["request"]["path"], format!("/web-{i}"));
        assert_eq!(e["src"]["ip"], client.ip.to_string());
        assert_eq!(
            e["src"]["pod"],
            serde_json::Value::Null,
            "client is not listed"
        );
        assert_eq!(e["dst"]["ip"], web.ip.to_string());
        assert_eq!(e["dst"]["pod"], "web");
        assert_eq!(e["dst"]["namespace"], "shop");
        assert_eq!(e["node"], "node-a");
    }

    // 2. api joins the list while the worker runs.
    write_list(vec![
        pod_json(&web, "node-a"),
        pod_json(&api_pod, "node-a"),
        pod_json(&elsewhere, "node-b"),
    ]);
    wait_log(
        &lines,
        &format!("capturing shop/api on {}", api_pod.host_veth),
    );
    // Both ends watched: web -> api crosses both veths.
    for i in 0..5 {
        curl(&web, &api_pod, &format!("/both-{i}"));
        curl(&api_pod, &web, &format!("/back-{i}"));
        curl(&client, &api_pod, &format!("/api-{i}"));
    }
    let both = entries(
        &node,
        http,
        "request.path.startsWith(\"/both\") || request.path.startsWith(\"/back\")",
        10,
    );
    assert_eq!(
        both.len(),
        10,
        "one entry per request between watched pods: {both:#?}"
    );
    for e in &both {
        let flags = e["flags"].as_array().unwrap();
        assert!(flags.is_empty(), "clean connection expected: {e}");
        let (s, d) = (
            e["src"]["pod"].as_str().unwrap(),
            e["dst"]["pod"].as_str().unwrap(),
        );
        let path = e["request"]["path"].as_str().unwrap();
        if path.starts_with("/both") {
            assert_eq!((s, d), ("web", "api"));
        } else {
            assert_eq!((s, d), ("api", "web"));
        }
    }
    let to_api = entries(&node, http, "request.path.startsWith(\"/api-\")", 5);
    assert_eq!(to_api.len(), 5);

    // No packet counted twice: the web<->api connections' packets, exported
    // from the worker's ring, hold each TCP segment once.
    let filter: String = form_urlencoded::byte_serialize(
        b"request.path.startsWith(\"/both\") || request.path.startsWith(\"/back\")",
    )
    .collect();
    let pcap = node::get(&node, http, &format!("/api/pcap?filter={filter}"));
    let file = dir.join("both.pcapng");
    std::fs::write(&file, &pcap).unwrap();
    let out = std::process::Command::new("tshark")
        .args(["-r", file.to_str().unwrap(), "-T", "fields"])
        .args([
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.seq_raw",
            "-e",
            "tcp.ack_raw",
        ])
        .args(["-e", "tcp.flags", "-e", "tcp.len", "-e", "ip.id"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    // 10 connections: at least SYN, SYN-ACK, ACK, request, response, FINs.
    assert!(frames.len() >= 10 * 7, "{} frames", frames.len());
    let mut unique = frames.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), frames.len(), "a packet was captured twice");

    // 3. web is deleted: its capture ends, api's goes on.
    let web_veth = web.host_veth.clone();
    node.remove_pod(web).unwrap();
    wait_log(&lines, &web_veth);
    for i in 0..3 {
        curl(&client, &api_pod, &format!("/after-{i}"));
    }
    let after = entries(&node, http, "request.path.startsWith(\"/after-\")", 3);
    assert_eq!(after.len(), 3);
    assert!(after.iter().all(|e| e["dst"]["pod"] == "api"));
    wait_log(&lines, "pod shop/web: no interface on this node");

    // The worker's counters: nothing dropped, everything it made ingested.
    let w = node::api(&node, http, "/api/workers");
    let c = &w["workers"][0]["counters"];
    assert_eq!(c["drops"], 0, "{w}");
    assert!(
        worker.child().try_wait().unwrap().is_none(),
        "the worker exited"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    let status = worker.child().wait().unwrap();
    assert!(status.success(), "{status}");
    let _ = hub.child().kill();
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The hub's configuration reaches a running worker and changes what it
/// captures: of the two listed pods, `PUT /api/config` with target pods
/// `^api$` leaves only api captured; an empty list takes both again; a max
/// body cuts the bodies of the connections after it.
#[test]
fn the_hubs_target_pods_change_what_a_running_worker_captures() {
    if !require_root() || !require(&["python3", "curl"]) {
        return;
    }
    let node = Node::new("tc").unwrap();
    let web = node.pod("web").unwrap();
    let api_pod = node.pod("api").unwrap();
    let client = node.pod("client").unwrap();
    let servers = node::http_servers(&node, &[&web, &api_pod], 8080);
    let dir = std::env::temp_dir().join(format!("kt-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("pods.json");
    let pods = vec![pod_json(&web, "node-a"), pod_json(&api_pod, "node-a")];
    std::fs::write(&list, serde_json::to_vec(&pods).unwrap()).unwrap();

    let (grpc, http) = (18796, 18797);
    let mut hub = node::hub(&node, grpc, http, &[]);
    let (mut worker, lines) = pods_worker(&node, grpc, &list);
    wait_logs(
        &lines,
        &[
            &format!("capturing shop/web on {}", web.host_veth),
            &format!("capturing shop/api on {}", api_pod.host_veth),
            "target pods from the hub",
        ],
    );
    let round = |tag: &str| {
        for i in 0..3 {
            curl(&client, &web, &format!("/{tag}-web-{i}"));
            curl(&client, &api_pod, &format!("/{tag}-api-{i}"));
        }
    };
    round("all");
    let both = entries(&node, http, "request.path.startsWith(\"/all-\")", 6);
    assert_eq!(both.len(), 6, "{both:#?}");

    node::request(
        &node,
        http,
        "PUT",
        "/api/config",
        r#"{"target_pods":["^api$"],"target_namespaces":["shop"]}"#,
    );
    wait_logs(
        &lines,
        &[
            "target pods from the hub: names [\"^api$\"]",
            &format!("stopped capturing shop/web on {}", web.host_veth),
        ],
    );
    round("narrow");
    let narrow = entries(&node, http, "request.path.startsWith(\"/narrow-\")", 3);
    assert_eq!(narrow.len(), 3, "only api's requests: {narrow:#?}");
    assert!(
        narrow.iter().all(|e| e["dst"]["pod"] == "api"),
        "{narrow:#?}"
    );
    // web's capture came first, so api's left out web's traffic; with web
    // no longer captured, api's takes it.
    curl(&web, &api_pod, "/from-web");
    let from_web = entries(&node, http, "request.path == \"/from-web\"", 1);
    assert_eq!(from_web[0]["src"]["pod"], "web", "{from_web:#?}");

    node::request(&node, http, "PUT", "/api/config", r#"{"target_pods":[]}"#);
    wait_log(&lines, &format!("capturing shop/web on {}", web.host_veth));
    round("again");
    let again = entries(&node, http, "request.path.startsWith(\"/again-\")", 6);
    assert_eq!(again.len(), 6, "{again:#?}");

    // Capture settings: bodies cut at the hub's max body from then on.
    let flags = |e: &serde_json::Value| e["flags"].as_array().unwrap().clone();
    assert!(again.iter().all(|e| flags(e).is_empty()), "{again:#?}");
    node::request(
        &node,
        http,
        "PUT",
        "/api/config",
        r#"{"capture":{"max_body":16,"pcap_ring_bytes":1048576}}"#,
    );
    wait_logs(
        &lines,
        &[
            "max body from the hub: 16 bytes",
            "PCAP ring from the hub: 1048576 bytes",
        ],
    );
    round("cut");
    let cut = entries(&node, http, "request.path.startsWith(\"/cut-\")", 6);
    assert_eq!(cut.len(), 6, "{cut:#?}");
    for e in &cut {
        assert!(flags(e).contains(&serde_json::json!("truncated")), "{e}");
        assert!(e["response"]["body_size"].as_u64() > Some(16), "{e}");
    }

    let _ = worker.child().kill();
    let _ = hub.child().kill();
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kubetap tap --local --netns NODE --pods FILE`: local mode capturing a
/// node's pods from this host, the API on this host's loopback.
/// `kubetap tap --local` capturing inside `node`'s namespace with its API on
/// this host's `port`, plus `args`; its log lines come out of the receiver
/// (and are echoed).
fn local_kubetap(node: &Node, port: u16, args: &[&str]) -> (Peer, Receiver<String>) {
    let mut kubetap = Peer::start(
        testkit::http::with_token(&mut std::process::Command::new(env!(
            "CARGO_BIN_EXE_kubetap"
        )))
        .args([
            "tap",
            "--local",
            "--no-browser",
            "--port",
            &port.to_string(),
        ])
        .args([
            "--netns",
            testkit::netns::netns_path(node.netns()).to_str().unwrap(),
        ])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped()),
    );
    let lines = log_lines(&mut kubetap, "kubetap");
    (kubetap, lines)
}

/// The lines `p` writes to stderr, echoed with `who` and handed on.
fn log_lines(p: &mut Peer, who: &'static str) -> Receiver<String> {
    let (tx, lines) = channel();
    let stderr = p.child().stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{who}: {l}");
            let _ = tx.send(l);
        }
    });
    lines
}

/// A JSON document from the API on this host's loopback (not the node's).
fn host_api(port: u16, path: &str) -> serde_json::Value {
    let reply = testkit::http::get_local(port, path);
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    reply.json()
}

#[test]
fn local_mode_taps_pods_of_another_namespace() {
    if !require_root() || !require(&["python3", "curl"]) {
        return;
    }
    let node = Node::new("lt").unwrap();
    let web = node.pod("web").unwrap();
    let client = node.pod("client").unwrap();
    let _server = node::http_servers(&node, &[&web], 8080);
    let dir = std::env::temp_dir().join(format!("kt-localpods-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("pods.json");
    std::fs::write(
        &list,
        serde_json::to_vec(&vec![pod_json(&web, "local"), pod_json(&client, "local")]).unwrap(),
    )
    .unwrap();
    let port = peers::free_port();
    let (mut kubetap, lines) = local_kubetap(&node, port, &["--pods", list.to_str().unwrap()]);
    wait_logs(&lines, &["capturing shop/client", "capturing shop/web"]);
    for i in 0..3 {
        curl(&client, &web, &format!("/local-{i}"));
    }
    // The API is on this host's loopback, not the node's.
    let host_get = |path: &str| host_api(port, path);
    let started = Instant::now();
    let got = loop {
        let v = host_get("/api/entries?filter=protocol%20%3D%3D%20%22http%22");
        let got = v["entries"].as_array().unwrap().clone();
        if got.len() >= 3 {
            break got;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{v}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(got.len(), 3, "{got:#?}");
    for e in &got {
        assert_eq!(e["src"]["pod"], "client");
        assert_eq!(e["dst"]["pod"], "web");
    }
    std::process::Command::new("kill")
        .args(["-INT", &kubetap.id().to_string()])
        .status()
        .unwrap();
    assert!(kubetap.child().wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bridge_and_its_ports_captured_together_count_each_packet_once() {
    if !require_root() || !require(&["python3", "curl"]) {
        return;
    }
    bridge_and_ports(1);
    // With two sockets per interface too: socket i of every interface feeds
    // table i, so a connection's packets kept from different interfaces
    // still meet in one table.
    bridge_and_ports(2);
}

fn bridge_and_ports(fanout: u16) {
    let node = Node::new(&format!("dd{fanout}")).unwrap();
    let web = node.pod("web").unwrap();
    let client = node.pod("client").unwrap();
    let _server = node::http_servers(&node, &[&web], 8080);
    let port = peers::free_port();
    let fanout = fanout.to_string();
    // Pod to pod crosses both ports; node to pod the bridge and a port.
    let (mut kubetap, lines) = local_kubetap(
        &node,
        port,
        &[
            "--fanout",
            &fanout,
            "-i",
            &client.host_veth,
            "-i",
            &web.host_veth,
            "-i",
            node.bridge(),
        ],
    );
    wait_log(&lines, "capturing on");
    for i in 0..5 {
        curl(&client, &web, &format!("/pod-{i}"));
        let ok = node
            .command("curl")
            .args(["-s", "-o", "/dev/null"])
            .arg(format!("http://{}:8080/node-{i}", web.ip))
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let host_get = |path: &str| host_api(port, path);
    let started = Instant::now();
    let mut settled: Option<Instant> = None;
    let got = loop {
        let v = host_get("/api/entries?filter=protocol%20%3D%3D%20%22http%22&limit=100");
        let got = v["entries"].as_array().unwrap().clone();
        if got.len() >= 10
            && settled.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1)
        {
            break got;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{v}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut paths: Vec<String> = got
        .iter()
        .map(|e| {
            // The test servers answer 404 for these paths: paired, whole.
            assert_eq!(e["response"]["status"], 404, "{e}");
            e["request"]["path"].as_str().unwrap().to_string()
        })
        .collect();
    paths.sort();
    let mut want: Vec<String> = (0..5)
        .flat_map(|i| [format!("/node-{i}"), format!("/pod-{i}")])
        .collect();
    want.sort();
    assert_eq!(paths, want, "one entry per request, fanout {fanout}");

    let w = host_get("/api/workers");
    let c = &w["workers"][0]["counters"];
    let n = |k: &str| c[k].as_u64().unwrap();
    assert!(n("duplicate_packets") > 0, "{c}");
    assert_eq!(
        n("kernel_packets"),
        n("packets") + n("kernel_drops") + n("duplicate_packets"),
        "{c}"
    );
    std::process::Command::new("kill")
        .args(["-INT", &kubetap.id().to_string()])
        .status()
        .unwrap();
    assert!(kubetap.child().wait().unwrap().success());
}

/// A Pod object as the API server holds a running one on `node`.
fn pod_object(p: &Pod, node: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": p.name, "namespace": "shop"},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app"}]},
        "status": {"phase": "Running", "podIP": p.ip.to_string(), "podIPs": [{"ip": p.ip.to_string()}]},
    })
}

/// In a cluster: the hub follows the pods with one watch on the API server
/// (`--watch-pods`, here the test API server through a kubeconfig), and a
/// worker started with `--hub-pods` captures the pods of its node the hub
/// sends it, following pods added and deleted; pods of another node are
/// not sent to it.
#[test]
fn a_worker_captures_the_pods_a_hub_follows_in_the_cluster() {
    if !require_root() || !require(&["python3", "curl"]) {
        return;
    }
    let node = Node::new("hp").unwrap();
    let web = node.pod("web").unwrap();
    let api_pod = node.pod("api").unwrap();
    let client = node.pod("client").unwrap();
    let _servers = node::http_servers(&node, &[&web, &api_pod], 8080);
    // The API server listens inside the node's namespace, where the hub runs.
    let cluster = node
        .in_netns(testkit::kube_api::ApiServer::start)
        .unwrap()
        .unwrap();
    cluster
        .create(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}))
        .unwrap();
    cluster.create(pod_object(&web, "node-a")).unwrap();
    // On another node: never sent to this worker.
    cluster.create(pod_object(&api_pod, "node-b")).unwrap();

    let (grpc, http) = (18898, 18899);
    let _hub = node::hub_with_env(
        &node,
        grpc,
        http,
        &["--watch-pods"],
        &[("KUBECONFIG", cluster.kubeconfig())],
    );
    let (_worker, lines) = node_a_worker(&node, grpc, &["--hub-pods"]);
    wait_logs(
        &lines,
        &[
            "pods from the hub: 1 on this node",
            &format!("capturing shop/web on {}", web.host_veth),
        ],
    );
    for i in 0..3 {
        curl(&client, &web, &format!("/web-{i}"));
        curl(&client, &api_pod, &format!("/not-yet-{i}"));
    }
    let got = entries(&node, http, "protocol == \"http\"", 3);
    assert_eq!(got.len(), 3, "only the pod on this node: {got:#?}");
    for e in &got {
        assert_eq!(e["dst"]["pod"], "web");
        assert_eq!(e["dst"]["namespace"], "shop");
        assert_eq!(e["node"], "node-a");
    }

    // The api pod moves to this node (deleted and made again, as a new pod
    // would be), and web is deleted: followed without a restart.
    cluster.delete("Pod", "shop", "api").unwrap();
    cluster.create(pod_object(&api_pod, "node-a")).unwrap();
    wait_log(
        &lines,
        &format!("capturing shop/api on {}", api_pod.host_veth),
    );
    cluster.delete("Pod", "shop", "web").unwrap();
    wait_log(
        &lines,
        &format!("stopped capturing shop/web on {}", web.host_veth),
    );
    for i in 0..3 {
        curl(&client, &api_pod, &format!("/api-{i}"));
        curl(&client, &web, &format!("/gone-{i}"));
    }
    let got = entries(
        &node,
        http,
        "request.path.startsWith(\"/api-\") || request.path.startsWith(\"/gone-\")",
        3,
    );
    assert_eq!(
        got.len(),
        3,
        "the new pod's requests, not the deleted one's: {got:#?}"
    );
    for e in &got {
        assert_eq!(e["dst"]["pod"], "api");
    }
    let hub = node::api(&node, http, "/api/workers");
    assert_eq!(hub["hub"]["pods_followed"], 1, "{hub}");
    // One list and one watch: the hub does not poll.
    let lists = cluster
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/pods") && !r.watch)
        .count();
    assert_eq!(lists, 1, "the hub listed pods more than once");
}
