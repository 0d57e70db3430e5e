//! Real SOCKS5 traffic, real oracle: curl asks a Python HTTP server for
//! pages through a small SOCKS5 proxy (socks/peer.py) on loopback, by name
//! (`--socks5-hostname`), by address with a user and password, and for a
//! port nobody listens on (the proxy replies 5, connection refused).
//! Captured by dumpcap, the file is read by kubetap and by tshark's SOCKS
//! dissector: per connection to the proxy, the destination asked for and
//! the reply must agree. Inside each tunnel kubetap must find the HTTP
//! exchange, and the password must appear in no entry.
//!
//! Needs root, dumpcap, tshark, python3 and curl; skips with the reason
//! otherwise, unless KUBETAP_REQUIRE_PEERS=1, where it fails.

#[path = "../../../tap-cli/tests/peers/mod.rs"]
mod peers;

use peers::serve::{spawn_piped, wait_line};
use peers::{Capture, Peer, TempDir, free_port};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

const PROXY: &str = include_str!("peer.py");

/// Per client port: (destination host, port, reply).
type Handshakes = BTreeMap<u64, (String, u64, u64)>;

/// tshark's view: the request's destination and the reply, per client port.
fn tshark_view(file: &Path, proxies: &[u16]) -> Handshakes {
    let mut decode = Vec::new();
    for p in proxies {
        decode.push("-d".to_string());
        decode.push(format!("tcp.port=={p},socks"));
    }
    let decode: Vec<&str> = decode.iter().map(String::as_str).collect();
    let rows = peers::tshark_fields(
        file,
        &decode,
        "socks.command || socks.results",
        &[
            "tcp.srcport",
            "tcp.dstport",
            "socks.remote_name",
            "socks.dst",
            "socks.port",
            "socks.results",
            "socks.dstport",
        ],
    );
    let mut out = Handshakes::new();
    let first = |v: &Vec<String>| v.first().cloned();
    for row in rows {
        let (src, dst): (u64, u64) = (row[0][0].parse().unwrap(), row[1][0].parse().unwrap());
        // tshark marks the tunnel's packets with the destination too; the
        // request is the first with one (its port in `socks.port`, or
        // after RFC 1929 credentials in `socks.dstport`), the reply the
        // one with a result.
        if proxies.contains(&(dst as u16)) {
            let e = out.entry(src).or_default();
            if e.0.is_empty()
                && let Some(host) = first(&row[2]).or_else(|| first(&row[3]))
            {
                let port = first(&row[4]).or_else(|| first(&row[6]));
                (e.0, e.1) = (host, port.map_or(0, |p| p.parse().unwrap()));
            }
        } else if let Some(r) = first(&row[5]) {
            out.entry(dst).or_default().2 = r.parse().unwrap();
        }
    }
    out
}

#[test]
fn socks5_handshakes_match_tshark_and_the_tunnels_are_dissected() {
    if !peers::require(&["python3", "curl", "dumpcap", "tshark"]) {
        return;
    }
    let dir = TempDir::new("socks-oracle");
    std::fs::write(dir.path("index.html"), "hello through socks\n").unwrap();
    let web = free_port();
    let _server = Peer::start(
        Command::new("python3")
            .args(["-m", "http.server", &web.to_string(), "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(dir.root())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let (open, locked) = (free_port(), free_port());
    let script = dir.path("proxy.py");
    std::fs::write(&script, PROXY).unwrap();
    let mut proxy = spawn_piped(Command::new("python3").arg(&script).arg(open.to_string()));
    wait_line(&mut proxy, "ready");
    let mut proxy_auth = spawn_piped(Command::new("python3").arg(&script).args([
        &locked.to_string(),
        "alice",
        "s3cret",
    ]));
    wait_line(&mut proxy_auth, "ready");
    testkit::assert_eventually!(
        std::time::Duration::from_secs(20),
        std::net::TcpStream::connect(("127.0.0.1", web)).is_ok(),
        "the HTTP server"
    );

    let capture = Capture::start(
        dir.path("socks.pcapng"),
        &format!("tcp port {open} or tcp port {locked}"),
    );
    let curl = |proxy: String, url: String| {
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-x",
                &proxy,
                &url,
            ])
            .output()
            .unwrap()
    };
    let by_name = curl(
        format!("socks5h://127.0.0.1:{open}"),
        format!("http://localhost:{web}/index.html"),
    );
    assert_eq!(String::from_utf8_lossy(&by_name.stdout), "200");
    let with_password = curl(
        format!("socks5://alice:s3cret@127.0.0.1:{locked}"),
        format!("http://127.0.0.1:{web}/missing"),
    );
    assert_eq!(String::from_utf8_lossy(&with_password.stdout), "404");
    let refused = curl(
        format!("socks5://127.0.0.1:{open}"),
        format!("http://127.0.0.1:{}/", free_port()),
    );
    assert!(!refused.status.success(), "a closed port answered");
    let file = capture.stop();

    let theirs = tshark_view(&file, &[open, locked]);
    let entries = peers::kubetap_entries(&file);
    let mut ours = Handshakes::new();
    for e in entries.iter().filter(|e| e["protocol"] == "socks") {
        let client = e["src"]["port"].as_u64().unwrap();
        let req = &e["request"];
        let reply = e["response"]["reply"].as_u64().unwrap();
        ours.insert(
            client,
            (
                req["host"].as_str().unwrap().to_string(),
                req["port"].as_u64().unwrap(),
                reply,
            ),
        );
    }
    assert_eq!(ours.len(), 3, "{entries:?}");
    assert_eq!(ours, theirs, "handshakes per connection");
    assert!(ours.values().any(|h| h.0 == "localhost" && h.2 == 0));
    assert!(ours.values().any(|h| h.2 == 5), "no refusal: {ours:?}");

    // Inside the two tunnels: the HTTP exchanges, on the proxy connections.
    let mut http: Vec<(String, u64)> = entries
        .iter()
        .filter(|e| e["protocol"] == "http")
        .map(|e| {
            assert!(
                ours.contains_key(&e["src"]["port"].as_u64().unwrap()),
                "{e}"
            );
            (
                e["request"]["path"].as_str().unwrap().to_string(),
                e["response"]["status"].as_u64().unwrap(),
            )
        })
        .collect();
    http.sort();
    assert_eq!(
        http,
        [
            ("/index.html".to_string(), 200),
            ("/missing".to_string(), 404)
        ]
    );
    let authed = entries
        .iter()
        .find(|e| e["protocol"] == "socks" && e["dst"]["port"] == locked)
        .unwrap();
    assert_eq!(authed["request"]["credentials"], true, "{authed}");
    assert_eq!(authed["response"]["authenticated"], true, "{authed}");
    let all = serde_json::to_string(&entries).unwrap();
    assert!(!all.contains("s3cret"), "the password reached an entry");
}
