//! Real HTTP/2 and gRPC traffic, real oracle: nghttpd serving files to nghttp
//! (several requests on one connection, a 404, a POST), curl with prior
//! knowledge and h2load (100 requests multiplexed on 2 connections), and a
//! Python grpcio server and client (unary, server-streaming, a failing call),
//! captured by dumpcap on lo. Per connection and stream id, kubetap's method,
//! path and status — for gRPC the RPC method and grpc-status — must equal what
//! tshark's HTTP/2 dissector decodes from the same file.
//!
//! Needs root, dumpcap, tshark, nghttpd, nghttp, h2load, curl, python3 and
//! grpcio (`cargo xtask setup` installs them); skips with the reason otherwise,
//! unless KUBETAP_REQUIRE_PEERS=1, where it fails.

#[path = "../../../tap-cli/tests/peers/mod.rs"]
mod peers;

use peers::{Capture, Peer, TempDir, free_port, run};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// What both sides must agree on for one stream.
#[derive(Debug, Default, PartialEq)]
struct Stream {
    /// The HTTP method, or for gRPC the RPC's method name.
    method: Option<String>,
    path: Option<String>,
    status: Option<u64>,
    grpc_status: Option<u64>,
}

/// Streams keyed by (client port, stream id).
type Streams = BTreeMap<(u64, u64), Stream>;

/// Every object under a `key` anywhere in `v` (tshark's JSON holds one or a
/// list of them depending on how many a packet carries).
fn objects<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == key {
                    match x {
                        Value::Array(xs) => out.extend(xs.iter()),
                        x => out.push(x),
                    }
                } else {
                    objects(x, key, out);
                }
            }
        }
        Value::Array(xs) => xs.iter().for_each(|x| objects(x, key, out)),
        _ => {}
    }
}

fn number(v: &Value) -> u64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

fn rpc_method(path: &str) -> String {
    path.rsplit('/').next().unwrap_or_default().to_string()
}

fn tshark_view(file: &Path, port: u16) -> Streams {
    let out = run(Command::new("tshark").args(["-n", "-r"]).arg(file).args([
        "-d",
        &format!("tcp.port=={port},http2"),
        "-Y",
        "http2",
        "-T",
        "json",
        "--no-duplicate-keys",
    ]));
    let packets: Vec<Value> = serde_json::from_slice(&out).unwrap();
    let mut streams = Streams::new();
    for p in &packets {
        let layers = &p["_source"]["layers"];
        let (src, dst) = (
            number(&layers["tcp"]["tcp.srcport"]),
            number(&layers["tcp"]["tcp.dstport"]),
        );
        let to_server = dst == u64::from(port);
        let client = if to_server { src } else { dst };
        let mut frames = Vec::new();
        objects(&layers["http2"], "http2.stream", &mut frames);
        for f in frames {
            let mut headers = Vec::new();
            objects(f, "http2.header", &mut headers);
            if headers.is_empty() {
                continue;
            }
            let field = |name: &str| {
                headers
                    .iter()
                    .find(|h| h["http2.header.name"] == name)
                    .and_then(|h| h["http2.header.value"].as_str())
                    .map(str::to_string)
            };
            let s = streams
                .entry((client, number(&f["http2.streamid"])))
                .or_default();
            let grpc = field("content-type").is_some_and(|c| c.starts_with("application/grpc"));
            if let Some(method) = field(":method") {
                let path = field(":path");
                s.method = Some(match (&path, grpc) {
                    (Some(p), true) => rpc_method(p),
                    _ => method,
                });
                s.path = path;
            }
            if let Some(status) = field(":status") {
                s.status = Some(status.parse().unwrap());
            }
            if let Some(code) = field("grpc-status") {
                s.grpc_status = Some(code.parse().unwrap());
            }
        }
    }
    streams
}

fn kubetap_view(entries: &[Value]) -> Streams {
    let mut streams = Streams::new();
    for e in entries {
        let key = (
            e["src"]["port"].as_u64().unwrap(),
            e["stream_id"].as_u64().unwrap(),
        );
        let (req, resp) = (&e["request"], &e["response"]);
        let s = Stream {
            method: req["method"].as_str().map(str::to_string),
            path: req["path"].as_str().map(str::to_string),
            status: match e["protocol"].as_str() {
                Some("grpc") => resp["http_status"].as_u64(),
                _ => resp["status"].as_u64(),
            },
            grpc_status: match e["protocol"].as_str() {
                Some("grpc") => resp["status"].as_u64(),
                _ => None,
            },
        };
        assert!(
            streams.insert(key, s).is_none(),
            "two entries for one stream: {e}"
        );
    }
    streams
}

fn flags(e: &Value) -> Vec<&str> {
    e["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect()
}

#[test]
fn http2_entries_match_tshark_on_real_traffic() {
    if !peers::require(&["nghttpd", "nghttp", "h2load", "curl"]) {
        return;
    }
    let dir = TempDir::new("http2-oracle");
    let www = dir.path("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<h1>hello</h1>\n").unwrap();
    // Large enough for many DATA frames and several TCP segments.
    let big: String = (0..20_000).map(|i| format!("line {i:05}\n")).collect();
    std::fs::write(www.join("big.txt"), &big).unwrap();
    std::fs::write(www.join("file.txt"), "a small file\n").unwrap();
    let form = dir.path("form.txt");
    std::fs::write(&form, "name=kubetap&proto=h2").unwrap();

    let port = free_port();
    let server = Peer::spawn(
        Command::new("nghttpd")
            .args(["--no-tls", "-d"])
            .arg(&www)
            .arg(port.to_string()),
    );
    server.wait_for_port(port);
    let capture = Capture::start(dir.path("h2.pcapng"), &format!("tcp port {port}"));
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    run(Command::new("nghttp").arg("-n").args([
        url("/index.html"),
        url("/big.txt"),
        url("/missing"),
    ]));
    run(Command::new("nghttp")
        .arg("-n")
        .arg("-d")
        .arg(&form)
        .arg(url("/file.txt")));
    run(Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--http2-prior-knowledge"])
        .arg(url("/file.txt")));
    run(Command::new("h2load")
        .args(["-n", "100", "-c", "2", "-m", "10"])
        .arg(url("/file.txt")));
    let file = capture.stop();
    drop(server);

    let tshark = tshark_view(&file, port);
    let entries = peers::kubetap_entries(&file);
    let kubetap = kubetap_view(&entries);
    // 3 + 1 + 1 + 100 requests: a comparison of two empty views proves nothing.
    assert_eq!(tshark.values().filter(|s| s.method.is_some()).count(), 105);
    assert_eq!(kubetap, tshark);

    for e in &entries {
        assert_eq!(e["protocol"], "http2", "{e}");
        assert!(flags(e).is_empty(), "{e}");
        assert_eq!(e["request"]["version"], "2");
    }
    let find = |path: &str| {
        entries
            .iter()
            .find(|e| e["request"]["path"] == path)
            .unwrap_or_else(|| panic!("no entry for {path}"))
    };
    let body = &find("/big.txt")["response"];
    assert_eq!(body["body_size"], big.len());
    assert!(
        body["body"] == big.as_str(),
        "the body differs from the file served"
    );
    assert_eq!(find("/missing")["response"]["status"], 404);
    let post = entries
        .iter()
        .find(|e| e["request"]["method"] == "POST")
        .unwrap();
    assert_eq!(post["request"]["body"], "name=kubetap&proto=h2");
    assert_eq!(
        post["request"]["headers"]["host"],
        format!("127.0.0.1:{port}")
    );
    // h2load's streams were multiplexed: 50 on each of its two connections.
    let mut per_conn: BTreeMap<u64, usize> = BTreeMap::new();
    for ((client, _), s) in &kubetap {
        if s.path.as_deref() == Some("/file.txt") && s.method.as_deref() == Some("GET") {
            *per_conn.entry(*client).or_default() += 1;
        }
    }
    assert_eq!(per_conn.values().filter(|n| **n == 50).count(), 2);
}

/// grpcio is a Python module, not a command `peers::require` can look for.
fn require_grpcio() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    let why = "the Python module grpcio is not installed (cargo xtask setup installs it)";
    testkit::skip("real-peer test", why)
}

#[test]
fn grpc_entries_match_tshark_on_real_traffic() {
    if !peers::require(&["python3"]) || !require_grpcio() {
        return;
    }
    let dir = TempDir::new("grpc-oracle");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tap-dissect/src/grpc/peer.py");
    let port = free_port();
    let server = Peer::spawn(
        Command::new("python3")
            .arg(&script)
            .args(["serve", &port.to_string()]),
    );
    server.wait_for_port(port);
    let capture = Capture::start(dir.path("grpc.pcapng"), &format!("tcp port {port}"));
    run(Command::new("python3")
        .arg(&script)
        .args(["call", &port.to_string()]));
    let file = capture.stop();
    drop(server);

    let tshark = tshark_view(&file, port);
    let entries = peers::kubetap_entries(&file);
    let kubetap = kubetap_view(&entries);
    assert_eq!(tshark.values().filter(|s| s.method.is_some()).count(), 3);
    assert_eq!(kubetap, tshark);

    let call = |method: &str| {
        entries
            .iter()
            .find(|e| e["request"]["method"] == method)
            .unwrap_or_else(|| panic!("no call to {method}"))
    };
    let hello = call("SayHello");
    assert_eq!(hello["protocol"], "grpc");
    assert_eq!(hello["request"]["service"], "demo.Greeter");
    assert_eq!(hello["request"]["path"], "/demo.Greeter/SayHello");
    let field = |m: &Value| m["fields"][0].clone();
    assert_eq!(field(&hello["request"]["messages"][0])["string"], "kubetap");
    assert_eq!(
        field(&hello["response"]["messages"][0])["string"],
        "hello kubetap"
    );
    assert_eq!(hello["response"]["status_name"], "OK");
    let counted: Vec<u64> = call("Count")["response"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| field(m)["varint"].as_u64().unwrap())
        .collect();
    assert_eq!(counted, [1, 2, 3]);
    let fail = call("Fail");
    assert_eq!(fail["response"]["status"], 5);
    assert_eq!(fail["response"]["status_name"], "NOT_FOUND");
    assert_eq!(fail["response"]["message"], "no such thing");
    for e in &entries {
        assert!(flags(e).is_empty(), "{e}");
    }
}
