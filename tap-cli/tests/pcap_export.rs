//! PCAP export, end to end with tshark as the oracle: real HTTP traffic
//! (curl and Python on loopback) captured by dumpcap, then served by
//! `kubetap read --serve` and by a real hub fed by two real workers; the
//! pcapng from `/api/pcap?filter=…` must hold exactly the connections of the
//! entries the filter selects, each with every packet the original capture
//! has of it.

mod peers;

use peers::serve::{encode, get, spawn_piped, wait_line};
use peers::{Peer, TempDir, certs, free_port, require, run, sibling};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Client ports of the connections of the entries `filter` selects, per node.
fn selected(port: u16, filter: &str) -> BTreeMap<String, BTreeSet<u16>> {
    let (status, body) = get(
        port,
        &format!("/api/entries?limit=1000&filter={}", encode(filter)),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["next_cursor"].is_null(), "more than one page");
    let mut out: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for e in v["entries"].as_array().unwrap() {
        out.entry(e["node"].as_str().unwrap().to_string())
            .or_default()
            .insert(e["src"]["port"].as_u64().unwrap() as u16);
    }
    out
}

/// Per (interface name, client port): frames in a capture, by tshark.
fn frames(file: &Path, server: u16) -> BTreeMap<(String, u16), usize> {
    let out = run(Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-T", "fields", "-e", "frame.interface_name"])
        .args(["-e", "tcp.srcport", "-e", "tcp.dstport"]));
    let mut m = BTreeMap::new();
    for line in String::from_utf8(out).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (a, b): (u16, u16) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        let client = if a == server { b } else { a };
        *m.entry((f[0].to_string(), client)).or_insert(0) += 1;
    }
    m
}

/// The export for `filter` must hold, per node, exactly the selected
/// connections with all of their frames from `original`.
fn check_export(port: u16, filter: &str, original: &Path, server: u16, dir: &TempDir) {
    let want = selected(port, filter);
    assert!(!want.is_empty(), "the filter {filter:?} selects nothing");
    let (status, body) = get(port, &format!("/api/pcap?filter={}", encode(filter)));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let file = dir.path(&format!("export-{}.pcapng", want.len()));
    std::fs::write(&file, &body).unwrap();
    let got = frames(&file, server);
    let source: BTreeMap<u16, usize> = frames(original, server)
        .into_iter()
        .map(|((_, port), n)| (port, n))
        .collect();
    let mut expected = BTreeMap::new();
    for (node, ports) in &want {
        for p in ports {
            expected.insert((node.clone(), *p), source[p]);
        }
    }
    assert_eq!(got, expected, "filter {filter:?}");
}

fn capture(dir: &TempDir) -> (PathBuf, u16) {
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/capture_http.sh");
    run(Command::new("bash")
        .arg(script)
        .arg(dir.root())
        .arg(port.to_string()));
    (dir.path("lo.pcapng"), port)
}

#[test]
fn read_serve_exports_exactly_the_selected_connections() {
    if !require(&["dumpcap", "tshark", "curl", "python3"]) {
        return;
    }
    let dir = TempDir::new("pcap-export-serve");
    let (file, server) = capture(&dir);
    let port = free_port();
    let mut serve = spawn_piped(
        testkit::http::with_token(&mut Command::new(env!("CARGO_BIN_EXE_kubetap")))
            .args(["read", "--serve", "--port", &port.to_string()])
            .arg(&file),
    );
    wait_line(&mut serve, "all entries loaded");
    for filter in [
        "http",
        "response.status == 404",
        "request.path.startsWith(\"/json\")",
    ] {
        check_export(port, filter, &file, server, &dir);
    }
    let (status, body) = get(port, &format!("/api/pcap?filter={}", encode("dns")));
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn a_hub_merges_the_packets_of_several_workers() {
    if !require(&["dumpcap", "tshark", "curl", "python3"]) {
        return;
    }
    let dir = TempDir::new("pcap-export-workers");
    let (file, server) = capture(&dir);
    let (grpc, http) = (free_port(), free_port());
    let mut hub = spawn_piped(
        testkit::http::with_token(&mut Command::new(sibling("tap-hub")))
            .args(["--grpc", &format!("127.0.0.1:{grpc}")])
            .args(["--listen", &format!("127.0.0.1:{http}")])
            .arg("--certs")
            .arg(certs()),
    );
    wait_line(&mut hub, "workers connect");
    // Each worker ships the file and stays to answer PCAP requests.
    let _workers: Vec<Peer> = ["w1", "w2"]
        .iter()
        .map(|node| {
            Peer::spawn(
                Command::new(sibling("tap-worker"))
                    .args(["--hub", &format!("https://127.0.0.1:{grpc}")])
                    .arg("--certs")
                    .arg(certs())
                    .args(["--node", node, "--linger", "120", "--file"])
                    .arg(&file),
            )
        })
        .collect();
    let total = peers::kubetap_entries(&file).len();
    let started = Instant::now();
    loop {
        let (_, body) = get(http, "/api/workers");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let received: u64 = v["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["entries_received"].as_u64().unwrap())
            .sum();
        if received == 2 * total as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the hub got {received} of {} entries",
            2 * total
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for filter in [
        "response.status == 404",
        "node == \"w2\" && request.path.startsWith(\"/json\")",
        "http",
    ] {
        check_export(http, filter, &file, server, &dir);
    }
}
