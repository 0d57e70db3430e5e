//! Under load: h2load against nghttpd between two testkit pods at full speed
//! for a bounded time, a real worker capturing the server pod with a small
//! ring (so the kernel may drop), a real hub. Afterwards the counters must
//! add up with nothing unaccounted for:
//!
//! - packets: what the capture filter passed (the kernel's PACKET_STATISTICS)
//!   = packets the pipeline processed + packets the kernel dropped;
//! - entries: entries the worker made = entries the hub stored + entries
//!   dropped at the worker's queue + entries lost in flight;
//! - requests: when nothing was dropped anywhere, one complete entry per
//!   request h2load got an answer to (checked on a rate-limited run by a
//!   second worker with the default ring, which must take it without a drop).

mod peers;

use peers::{Peer, node};
use std::process::Stdio;
use std::time::{Duration, Instant};
use testkit::{Node, Pod, require, require_root};

/// Runs h2load from `client` against `server`; returns (requests answered
/// 2xx, requests started).
fn h2load(client: &Pod, server: &Pod, path: &str, extra: &[&str]) -> (u64, u64) {
    let out = client
        .command("h2load")
        .args(extra)
        .arg(format!("http://{}:8080{path}", server.ip))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "h2load: {text}");
    // "requests: 3000 total, 3000 started, 3000 done, 3000 succeeded, 0 failed, ..."
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no requests line: {text}"));
    let field = |name: &str| -> u64 {
        line.split(',')
            .find(|p| p.trim().ends_with(name))
            .and_then(|p| p.split_whitespace().rev().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    (field("succeeded"), field("started"))
}

/// The worker's counters once everything it holds has reached the hub.
fn settled(node: &Node, port: u16, worker: &str) -> (serde_json::Value, serde_json::Value) {
    let started = Instant::now();
    let mut last = None;
    loop {
        let w = node::api(node, port, "/api/workers");
        let c = w["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["node"] == worker)
            .map_or(serde_json::Value::Null, |x| x["counters"].clone());
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        let done = n("queued") == 0
            && n("kernel_packets") == n("packets") + n("kernel_drops")
            && n("entries") == n("entries_sent");
        // Two heartbeats alike: nothing is moving any more.
        if done && last.as_ref() == Some(&c) {
            return (c, w);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "counters never settled: {w:#}"
        );
        last = Some(c);
        std::thread::sleep(Duration::from_millis(1500));
    }
}

fn count(node: &Node, port: u16, filter: &str) -> u64 {
    let q: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    let mut total = 0;
    let mut cursor = String::new();
    loop {
        let v = node::api(
            node,
            port,
            &format!("/api/entries?filter={q}&limit=1000{cursor}"),
        );
        total += v["entries"].as_array().unwrap().len() as u64;
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return total,
        }
    }
}

#[test]
fn counters_add_up_under_load() {
    if !require_root() || !require(&["nghttpd", "h2load"]) {
        return;
    }
    let node = Node::new("ld").unwrap();
    let server = node.pod("server").unwrap();
    let client = node.pod("client").unwrap();
    let docs = std::env::temp_dir().join(format!("kt-load-{}", std::process::id()));
    std::fs::create_dir_all(&docs).unwrap();
    for name in ["full", "paced"] {
        std::fs::write(docs.join(name), vec![b'x'; 512]).unwrap();
    }
    let _nghttpd = server
        .spawn(
            server
                .command("nghttpd")
                .args(["--no-tls", "-a", &server.ip.to_string(), "-d"])
                .arg(&docs)
                .arg("8080")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap();
    node.wait_for_tcp(server.addr(8080), Duration::from_secs(10))
        .unwrap();
    let list = docs.join("pods.json");
    std::fs::write(
        &list,
        serde_json::json!([{"name": "server", "namespace": "load", "ips": [server.ip.to_string()]}])
            .to_string(),
    )
    .unwrap();

    let (grpc, http) = (18898, 18899);
    let mut hub = node::hub(&node, grpc, http, &["--memory-budget", "1GiB"]);
    let start_worker = |name: &str, ring: &[&str]| -> Peer {
        let mut args = vec!["--pods", list.to_str().unwrap()];
        args.extend_from_slice(ring);
        node::worker(&node, grpc, name, &args, "capturing load/server on")
    };
    let stop = |mut worker: Peer| {
        std::process::Command::new("kill")
            .args(["-TERM", &worker.id().to_string()])
            .status()
            .unwrap();
        assert!(worker.child().wait().unwrap().success());
    };
    // A small ring: 2 blocks of 64 KiB, so a burst can overrun it.
    let worker = start_worker("node-a", &["--block-size", "64KiB", "--blocks", "2"]);

    // Full speed for 3 s: 4 connections, 16 streams each in flight.
    let (full_ok, full_started) = h2load(
        &client,
        &server,
        "/full",
        &["-c", "4", "-m", "16", "-D", "3"],
    );
    assert!(full_ok > 1000, "h2load made only {full_ok} requests");
    let (c, w) = settled(&node, http, "node-a");
    let n = |k: &str| c[k].as_u64().unwrap();
    eprintln!(
        "full speed: {full_ok} requests answered ({full_started} started); worker: {} packets seen by the filter, {} processed, {} dropped by the kernel, {} entries, {} dropped at the queue, {} lost in flight, other drops {}",
        n("kernel_packets"),
        n("packets"),
        n("kernel_drops"),
        n("entries"),
        n("queue_drops"),
        n("lost_in_flight"),
        n("drops") - n("kernel_drops"),
    );
    // Packets: every packet the filter passed was processed or dropped by
    // the kernel, and counted.
    assert_eq!(
        n("kernel_packets"),
        n("packets") + n("kernel_drops"),
        "{w:#}"
    );
    // Entries: every entry made was stored or counted as dropped.
    let stored = w["hub"]["entries_ingested"].as_u64().unwrap();
    assert_eq!(
        n("entries"),
        stored + n("queue_drops") + n("lost_in_flight"),
        "{w:#}"
    );
    let full_entries = count(
        &node,
        http,
        "request.path == \"/full\" && response.status == 200",
    );
    if n("drops") == 0 && n("queue_drops") == 0 && n("lost_in_flight") == 0 {
        assert_eq!(
            full_entries, full_ok,
            "no drops: one entry per answered request"
        );
    } else {
        assert!(
            full_entries <= full_ok,
            "{full_entries} entries for {full_ok} requests"
        );
        assert!(
            n("gap_bytes") > 0 || n("queue_drops") > 0 || n("lost_in_flight") > 0 || n("drops") > 0
        );
    }

    stop(worker);

    // Paced, by a second worker with the default 4 MiB ring: 2 connections
    // at 100 requests/s each for 2 s; nothing may drop.
    let worker = start_worker("node-b", &[]);
    let (paced_ok, _) = h2load(
        &client,
        &server,
        "/paced",
        &["-c", "2", "--rps", "100", "-D", "2"],
    );
    let (c, w) = settled(&node, http, "node-b");
    let n = |k: &str| c[k].as_u64().unwrap();
    assert_eq!(n("drops"), 0, "{w:#}");
    assert_eq!(n("queue_drops"), 0, "{w:#}");
    assert_eq!(n("kernel_packets"), n("packets"), "{w:#}");
    let paced_entries = count(
        &node,
        http,
        "request.path == \"/paced\" && response.status == 200",
    );
    assert_eq!(paced_entries, paced_ok, "one entry per answered request");
    stop(worker);
    let _ = hub.child().kill();
    let _ = std::fs::remove_dir_all(&docs);
}
