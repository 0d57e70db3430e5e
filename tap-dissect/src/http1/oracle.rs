//! Real traffic, real oracle: real HTTP clients and a real server on loopback,
//! captured by dumpcap; kubetap's entries must match tshark's HTTP dissector on
//! the same files — as pcapng, classic pcap (µs and ns), Linux cooked SLL and
//! SLL2, and read from stdin.
//!
//! Needs root, dumpcap, tshark, editcap, curl and python3 (`cargo xtask setup`
//! installs them). Without them the test says why and skips, unless
//! KUBETAP_REQUIRE_PEERS=1 (set by `cargo xtask test`), where it fails.

#[path = "../../../tap-cli/tests/peers/mod.rs"]
mod peers;

use peers::{TempDir, free_port, run};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// What both sides must agree on, per connection (keyed by the client's port):
/// the requests in order as (method, uri) and the final response codes in order.
/// HTTP/1 answers in order, so equal sequences mean equal pairing.
#[derive(Debug, Default, PartialEq)]
struct Conversation {
    requests: Vec<(String, String)>,
    statuses: Vec<u32>,
}

type Transactions = BTreeMap<u16, Conversation>;

fn count(t: &Transactions) -> (usize, usize) {
    (
        t.values().map(|c| c.requests.len()).sum(),
        t.values().map(|c| c.statuses.len()).sum(),
    )
}

fn tshark_view(file: &Path, port: u16) -> Transactions {
    let out = run(Command::new("tshark").args(["-n", "-r"]).arg(file).args([
        "-d",
        &format!("tcp.port=={port},http"),
        "-Y",
        "http",
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "aggregator=|",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.dstport",
        "-e",
        "http.request.method",
        "-e",
        "http.request.uri",
        "-e",
        "http.response.code",
    ]));
    let mut t = Transactions::new();
    for line in String::from_utf8(out).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let field = |i: usize| {
            f.get(i)
                .copied()
                .unwrap_or("")
                .split('|')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let (src, dst): (u16, u16) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let client = if src == port { dst } else { src };
        let conv = t.entry(client).or_default();
        for (m, u) in field(2).into_iter().zip(field(3)) {
            conv.requests.push((m, u));
        }
        for code in field(4) {
            let code: u32 = code.parse().unwrap();
            // Interim responses (100 Continue) are not entries.
            if !(100..200).contains(&code) || code == 101 {
                conv.statuses.push(code);
            }
        }
    }
    t
}

fn kubetap_view(json_lines: &[u8]) -> Transactions {
    let mut entries: Vec<serde_json::Value> = String::from_utf8(json_lines.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Entry ids are "<flow>-<index on the flow>": order each connection's entries by index.
    let index = |e: &serde_json::Value| -> u64 {
        e["id"]
            .as_str()
            .unwrap()
            .rsplit('-')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    entries.sort_by_key(|e| index(e));
    let mut t = Transactions::new();
    for e in &entries {
        assert_eq!(e["protocol"], "http");
        let conv = t
            .entry(e["src"]["port"].as_u64().unwrap() as u16)
            .or_default();
        let req = &e["request"];
        if req.is_object() {
            conv.requests.push((
                req["method"].as_str().unwrap().to_string(),
                req["path"].as_str().unwrap().to_string(),
            ));
        }
        if let Some(status) = e["response"]["status"].as_u64() {
            conv.statuses.push(status as u32);
        }
    }
    t
}

fn kubetap_json(file: &Path) -> Vec<u8> {
    peers::kubetap_json_raw(file)
}

#[test]
fn entries_match_tshark_on_real_loopback_traffic() {
    if !peers::require(&["editcap", "curl", "python3"]) {
        return;
    }
    let dir = TempDir::new("oracle");
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/capture_http.sh");
    run(Command::new("bash")
        .arg(&script)
        .arg(dir.root())
        .arg(port.to_string())
        .arg("2"));
    let lo = dir.root().join("lo.pcapng");
    let pcap_us = dir.root().join("lo.pcap");
    let pcap_ns = dir.root().join("lo-ns.pcap");
    run(Command::new("editcap")
        .args(["-F", "pcap"])
        .arg(&lo)
        .arg(&pcap_us));
    run(Command::new("editcap")
        .args(["-F", "nsecpcap"])
        .arg(&lo)
        .arg(&pcap_ns));

    let expected = tshark_view(&lo, port);
    let (requests, responses) = count(&expected);
    // Two rounds of the script's traffic: 2 x 19 requests, each answered.
    assert_eq!(
        requests, 38,
        "tshark saw {requests} requests: {expected:#?}"
    );
    assert_eq!(
        responses, 38,
        "tshark saw {responses} responses: {expected:#?}"
    );

    for file in [
        &lo,
        &pcap_us,
        &pcap_ns,
        &dir.root().join("sll.pcapng"),
        &dir.root().join("sll2.pcapng"),
    ] {
        let oracle = tshark_view(file, port);
        assert_eq!(
            oracle,
            expected,
            "tshark disagrees with itself on {}",
            file.display()
        );
        let ours = kubetap_view(&kubetap_json(file));
        assert_eq!(
            ours,
            oracle,
            "kubetap and tshark differ on {}",
            file.display()
        );
    }

    // The same capture through stdin gives the same entries, byte for byte.
    let from_file = kubetap_json(&pcap_us);
    let stdin = std::fs::File::open(&pcap_us).unwrap();
    let from_stdin = run(Command::new(env!("CARGO_BIN_EXE_kubetap"))
        .args(["read", "--json", "--quiet", "-"])
        .stdin(stdin));
    assert_eq!(from_stdin, from_file);

    // Details a user reads: decoded gzip, de-chunked body with its trailer, POST body, elapsed.
    let entries: Vec<serde_json::Value> = String::from_utf8(from_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |path: &str| {
        entries
            .iter()
            .find(|e| e["request"]["path"] == path)
            .unwrap_or_else(|| panic!("no entry for {path}"))
    };
    let gzip = find("/gzip");
    assert_eq!(gzip["response"]["body_decoded_from"], "gzip");
    assert!(
        gzip["response"]["body"]
            .as_str()
            .unwrap()
            .starts_with("{\"compressed\": true")
    );
    let chunked = find("/chunked");
    assert!(
        chunked["response"]["body"]
            .as_str()
            .unwrap()
            .starts_with("first chunk\nsecond, longer chunk\n")
    );
    assert_eq!(chunked["response"]["trailers"]["x-checksum"], "1234");
    let create = find("/create");
    assert_eq!(create["request"]["body"], "name=kubetap&x=1");
    assert_eq!(create["response"]["status"], 201);
    assert_eq!(find("/size/200000")["response"]["body_size"], 200000);
    for e in &entries {
        let elapsed = e["elapsed_us"]
            .as_u64()
            .unwrap_or_else(|| panic!("no elapsed: {e}"));
        assert!(elapsed < 5_000_000, "implausible elapsed {elapsed}us: {e}");
        assert!(e["ts"].as_str().unwrap().ends_with('Z'));
    }
}
