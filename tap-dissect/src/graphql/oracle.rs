//! Real GraphQL traffic, two oracles: a graphql-core server (the Python port
//! of the reference implementation, graphql/peer.py) answers curl
//! over loopback — named, anonymous and multi-operation queries, a mutation
//! with variables, a GET with ?query=, an application/graphql body, a batch,
//! a query failing validation — besides requests that are no GraphQL (a JSON
//! "query" that is not a document, a plain GET). Captured by dumpcap, the
//! file is read by kubetap:
//! - per connection, each entry's HTTP method, URI, body and status must be
//!   what tshark's HTTP dissector decodes;
//! - each request must be a `graphql` entry exactly when graphql-core could
//!   parse its document, with the operation type and name graphql-core
//!   selected, and the response's error count and data presence those of
//!   graphql-core's result (the server logs them).
//!
//! Needs root, dumpcap, tshark, curl, python3 and graphql-core (`cargo xtask
//! setup` installs them); skips with the reason otherwise, unless
//! KUBETAP_REQUIRE_PEERS=1, where it fails.

#[path = "../../../tap-cli/tests/peers/mod.rs"]
mod peers;

use peers::{Capture, Peer, TempDir, free_port, run};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

/// What tshark and kubetap must agree on for one HTTP exchange.
#[derive(Debug, PartialEq)]
struct Exchange {
    method: String,
    uri: String,
    body: String,
    status: u64,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// tshark's exchanges keyed by client port (one request per connection here).
fn tshark_exchanges(file: &std::path::Path, port: u16) -> BTreeMap<u64, Exchange> {
    let decode = ["-d", &format!("tcp.port=={port},http")];
    let requests = peers::tshark_fields(
        file,
        &decode,
        "http.request",
        &[
            "tcp.srcport",
            "http.request.method",
            "http.request.uri",
            "http.file_data",
        ],
    );
    let responses = peers::tshark_fields(
        file,
        &decode,
        "http.response",
        &["tcp.dstport", "http.response.code"],
    );
    let mut statuses = BTreeMap::new();
    for r in responses {
        let client: u64 = r[0][0].parse().unwrap();
        assert!(statuses.insert(client, r[1][0].parse().unwrap()).is_none());
    }
    let mut out = BTreeMap::new();
    for r in requests {
        let client: u64 = r[0][0].parse().unwrap();
        // http.file_data is written as hex when the body is binary, else as text.
        let body = r[3].first().cloned().unwrap_or_default();
        let body = if !body.is_empty()
            && body.len() % 2 == 0
            && body.bytes().all(|c| c.is_ascii_hexdigit())
        {
            String::from_utf8(unhex(&body)).unwrap_or(body)
        } else {
            body
        };
        let exchange = Exchange {
            method: r[1][0].clone(),
            uri: r[2][0].clone(),
            body,
            status: statuses[&client],
        };
        assert!(
            out.insert(client, exchange).is_none(),
            "one request per connection"
        );
    }
    out
}

#[test]
fn graphql_operations_match_graphql_core_and_tshark() {
    if !peers::require(&["curl", "python3"]) {
        return;
    }
    let have_module = Command::new("python3")
        .args(["-c", "import graphql"])
        .status()
        .is_ok_and(|s| s.success());
    if !have_module {
        let why = "python3 cannot import graphql (graphql-core; cargo xtask setup installs it)";
        testkit::skip("real-peer test", why);
        return;
    }
    let dir = TempDir::new("graphql-oracle");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tap-dissect/src/graphql/peer.py");
    let log = dir.path("operations.jsonl");
    let port = free_port();
    let server = Peer::spawn(
        Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(&log),
    );
    server.wait_for_port(port);
    let capture = Capture::start(dir.path("graphql.pcapng"), &format!("tcp port {port}"));
    let url = format!("http://127.0.0.1:{port}/graphql");
    let post = |content_type: &str, body: &str, url: &str| {
        run(Command::new("curl").args([
            "-sS",
            "-o",
            "/dev/null",
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            body,
            url,
        ]));
    };
    let json = "application/json";
    post(
        json,
        r#"{"query":"query GetUser($id: ID!) { user(id: $id) { name } }","variables":{"id":"1"}}"#,
        &url,
    );
    post(json, r#"{"query":"{ users { id name } }"}"#, &url);
    post(
        json,
        r#"{"query":"mutation AddUser($n: String!) {\n  addUser(name: $n) { id }\n}","variables":{"n":"linus"},"operationName":"AddUser"}"#,
        &url,
    );
    run(Command::new("curl").args([
        "-sS",
        "-o",
        "/dev/null",
        "-G",
        "--data-urlencode",
        "query=query Hello($who: String) { hello(name: $who) }",
        "--data-urlencode",
        r#"variables={"who":"kubetap"}"#,
        "--data-urlencode",
        "operationName=Hello",
        &url,
    ]));
    post("application/graphql", "query Plain { hello }", &url);
    post(
        json,
        r#"[{"query":"query A { hello }"},{"query":"{ users { name } }"}]"#,
        &url,
    );
    post(json, r#"{"query":"query Broken { nosuchfield }"}"#, &url);
    post(
        json,
        r#"{"query":"query One { hello } query Two { users { id } }","operationName":"Two"}"#,
        &url,
    );
    // No GraphQL: a "query" that is no document, and another path.
    post(json, r#"{"query":"shoes"}"#, &url);
    run(Command::new("curl").args([
        "-sS",
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{port}/health"),
    ]));
    let file = capture.stop();
    drop(server);

    let logged: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logged.len(), 10, "{logged:?}");
    let theirs = tshark_exchanges(&file, port);
    let mut entries = peers::kubetap_entries(&file);
    entries.sort_by_key(|e| e["ts"].as_str().unwrap().to_string());
    assert_eq!(entries.len(), logged.len());

    let mut ours = BTreeMap::new();
    for (e, seen) in entries.iter().zip(&logged) {
        assert_eq!(e["flags"], serde_json::json!([]), "{e}");
        let ops = seen["ops"].as_array();
        let parsed = ops.is_some_and(|ops| ops.iter().all(|o| o["type"].is_string()));
        let (http_req, http_resp) = if parsed {
            let ops = ops.unwrap();
            assert_eq!(e["protocol"], "graphql", "{e}\n{seen}");
            let (req, resp) = (&e["request"], &e["response"]);
            assert_eq!(req["method"], ops[0]["type"], "{e}");
            assert_eq!(req["operation_type"], ops[0]["type"]);
            assert_eq!(req["operation_name"], ops[0]["name"], "{e}");
            assert_eq!(req["batched"], seen["batched"]);
            let errors: u64 = ops.iter().map(|o| o["errors"].as_u64().unwrap()).sum();
            assert_eq!(resp["errors"], errors, "{e}");
            let data = ops.iter().any(|o| o["data"] == true);
            assert_eq!(resp["data"], data, "{e}");
            assert_eq!(resp["json"], true);
            assert_eq!(resp["status"], resp["http"]["status"]);
            let path = if ops[0]["name"] == "" {
                seen["path"].as_str().unwrap().split('?').next().unwrap()
            } else {
                ops[0]["name"].as_str().unwrap()
            };
            assert_eq!(req["path"], path);
            (&req["http"], &resp["http"])
        } else {
            assert_eq!(e["protocol"], "http", "{e}\n{seen}");
            (&e["request"], &e["response"])
        };
        assert_eq!(http_req["method"], seen["method"]);
        assert_eq!(http_req["path"], seen["path"]);
        let exchange = Exchange {
            method: http_req["method"].as_str().unwrap().into(),
            uri: http_req["path"].as_str().unwrap().into(),
            body: http_req["body"].as_str().unwrap_or_default().into(),
            status: http_resp["status"].as_u64().unwrap(),
        };
        ours.insert(e["src"]["port"].as_u64().unwrap(), exchange);
    }
    assert_eq!(ours, theirs, "HTTP exchanges per connection");
    let graphql = entries
        .iter()
        .filter(|e| e["protocol"] == "graphql")
        .count();
    assert_eq!(graphql, 8);
    // The variables are kept as sent.
    assert_eq!(entries[0]["request"]["variables"], r#"{"id":"1"}"#);
    assert_eq!(entries[3]["request"]["variables"], r#"{"who":"kubetap"}"#);
}
