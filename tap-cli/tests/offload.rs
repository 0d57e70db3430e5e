//! Large transfers on a node with BIG TCP (Cilium's `enable-ipv4-big-tcp`):
//! the pods' links pass segments of up to 185,000 bytes whole, so the
//! worker's capture on the host veth sees super-packets, those above 64 KiB
//! with an IPv4 total length of 0. Every one must be read at its captured
//! length: the HTTP download is one entry with the whole body counted, no
//! byte missing from the connection and no packet dropped as malformed.
//!
//! The worker gets a 32 MiB ring: the download runs at veth speed, and the
//! default 4 MiB holds about 2 ms of it, less than a scheduling hiccup on a
//! two-core machine running both peers. How fast a capture keeps up is the
//! bench's business (`cargo xtask bench live`, bulk TCP), not this test's.

mod peers;

use peers::node;
use std::time::Duration;
use testkit::{Node, TempDir, require, require_root};

const FILE_BYTES: usize = 24 << 20;

#[test]
fn big_tcp_super_packets_are_read_whole() {
    if !require_root() || !require(&["python3", "curl"]) {
        return;
    }
    let node = Node::new("gso").unwrap();
    let web = node.pod("web").unwrap();
    let client = node.pod("client").unwrap();
    for pod in [&web, &client] {
        node.offload(pod, 185_000).unwrap();
    }
    let dir = TempDir::new("offload");
    std::fs::write(dir.join("big.bin"), vec![b'k'; FILE_BYTES]).unwrap();

    let (grpc, http) = (18798, 18799);
    let _hub = node::hub(&node, grpc, http, &[]);
    let _worker = node::worker(
        &node,
        grpc,
        "node-a",
        &["-i", &web.host_veth, "--blocks", "32"],
        "capturing on",
    );
    let _server = web
        .spawn(
            web.command("python3")
                .args(["-m", "http.server", "8080", "--bind", &web.ip.to_string()])
                .arg("--directory")
                .arg(dir.root())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )
        .unwrap();
    node.wait_for_tcp(web.addr(8080), Duration::from_secs(20))
        .unwrap();

    let out = client
        .command("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{size_download}"])
        .arg(format!("http://{}:8080/big.bin", web.ip))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), FILE_BYTES.to_string());

    let entry = testkit::eventually(Duration::from_secs(30), "the download's entry", || {
        let v = node::api(&node, http, "/api/entries?filter=http&limit=10");
        v["entries"]
            .as_array()?
            .iter()
            .find(|e| e["request"]["path"] == "/big.bin")
            .cloned()
    });
    let id = entry["id"].as_str().unwrap();
    let full = node::api(&node, http, &format!("/api/entries/{id}"));
    assert_eq!(full["response"]["status"], 200, "{full}");
    assert_eq!(
        full["response"]["body_size"].as_u64(),
        Some(FILE_BYTES as u64),
        "{full}"
    );

    // The counters reach the hub with the next heartbeat.
    let w = testkit::eventually(Duration::from_secs(15), "offloaded packets counted", || {
        let w = node::api(&node, http, "/api/workers");
        let n = w["workers"][0]["counters"]["offloaded_packets"].as_u64();
        n.is_some_and(|n| n > 0).then_some(w)
    });
    let c = &w["workers"][0]["counters"];
    assert_eq!(c["drops_by_cause"]["malformed_packet"], 0, "{w}");
    assert_eq!(c["gap_bytes"], 0, "{w}");
    assert_eq!(c["kernel_drops"], 0, "{w}");
}
