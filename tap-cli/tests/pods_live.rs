//! A real worker capturing live inside a "node" (testkit: network namespaces
//! on a bridge, like a CNI bridge) on a pod's host veth, shipping to a real
//! hub on the node: curl in one pod against a Python server in the watched
//! pod makes exactly one entry per request with the pods' addresses; traffic
//! between two pods it does not watch makes none. (Watching both ends of a
//! pod-to-pod connection on their two veths is not supported yet: each packet
//! would be seen twice; see docs/live.md.)

mod peers;

use peers::node;
use std::time::{Duration, Instant};
use testkit::{Node, require, require_root};

#[test]
fn a_worker_on_a_node_captures_its_pods() {
    if !require_root() || !require(&["python3", "curl"]) {
        return;
    }
    let node = Node::new("wk").unwrap();
    let web = node.pod("web").unwrap();
    let client = node.pod("client").unwrap();
    let other_web = node.pod("otherweb").unwrap();
    let other_client = node.pod("otherclient").unwrap();

    // The hub on the node, reachable from the worker there.
    let (grpc, http) = (18698, 18699);
    let mut hub = node::hub(&node, grpc, http, &[]);

    // The worker watches the web pod's host veth.
    let mut worker = node::worker(
        &node,
        grpc,
        "node-a",
        &["-i", &web.host_veth],
        "capturing on",
    );

    let _servers = node::http_servers(&node, &[&web, &other_web], 8080);
    let paths = ["/", "/nope-1", "/", "/nope-2", "/nope-3"];
    for p in paths {
        let ok = client
            .command("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                &format!("http://{}:8080{p}", web.ip),
            ])
            .status()
            .unwrap();
        assert!(ok.success());
        // Not watched: between two other pods.
        let ok = other_client
            .command("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                &format!("http://{}:8080{p}", other_web.ip),
            ])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    let started = Instant::now();
    let entries = loop {
        let v = node::api(&node, http, "/api/entries?filter=http&limit=100");
        let entries = v["entries"].as_array().unwrap().clone();
        if entries.len() >= paths.len() && started.elapsed() > Duration::from_secs(2) {
            break entries;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} of {} entries arrived",
            entries.len(),
            paths.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let got: Vec<(String, String, String, u64)> = entries
        .iter()
        .rev()
        .map(|e| {
            (
                e["src"]["ip"].as_str().unwrap().to_string(),
                e["dst"]["ip"].as_str().unwrap().to_string(),
                e["request"]["path"].as_str().unwrap().to_string(),
                e["response"]["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, String, String, u64)> = paths
        .iter()
        .map(|p| {
            (
                client.ip.to_string(),
                web.ip.to_string(),
                p.to_string(),
                if p.starts_with("/nope") { 404 } else { 200 },
            )
        })
        .collect();
    assert_eq!(got, want, "one entry per request, only the watched pods'");
    assert!(entries.iter().all(|e| e["node"] == "node-a"));

    // The worker's counters reached the hub.
    let w = node::api(&node, http, "/api/workers");
    let c = &w["workers"][0]["counters"];
    assert!(c["packets"].as_u64().unwrap() > 0, "{w}");
    // Every entry the worker made (the readiness probes' empty connections
    // too, as `tcp` entries) reached the hub.
    assert_eq!(c["entries"], w["hub"]["entries_ingested"], "{w}");

    // SIGTERM: the worker ships what it holds and exits cleanly.
    std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    let status = worker.child().wait().unwrap();
    assert!(status.success(), "{status}");
    let _ = hub.child().kill();
}
