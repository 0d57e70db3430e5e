//! The hub's live stream (`/api/stream`, WebSocket) with a real client:
//! Python's `websockets` subscribes with a filter, a real worker ships a real
//! capture to a real hub, and the client must receive exactly the entries the
//! filter selects (as kubetap read finds them in the same file), in order.
//! A second client asks for rows (`format=rows`, what the UI takes): they
//! are exactly the rows `/api/rows` gives for the same filter.

mod peers;

use peers::{Peer, TempDir, certs, free_port, kubetap_entries, require, run, sibling};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLIENT: &str = r#"
import asyncio, json, sys
import websockets

async def main(url, want, out, token):
    got = []
    # The browser's way to send the API token: a subprotocol beside kubetap.v1.
    protocols = ["kubetap.v1", "kubetap.bearer." + token]
    async with websockets.connect(url, max_size=None, subprotocols=protocols) as ws:
        assert ws.subprotocol == "kubetap.v1", ws.subprotocol
        print("subscribed", flush=True)
        while len(got) < want:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
            got.append(msg)
    with open(out, "w") as f:
        json.dump(got, f)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
"#;

/// Waits for a line containing `needle` on the child's stdout, or its
/// stderr when stdout is not piped.
fn wait_line(child: &mut std::process::Child, needle: &str) {
    let reader: Box<dyn std::io::Read + Send> = match child.stdout.take() {
        Some(o) => Box::new(o),
        None => Box::new(child.stderr.take().expect("a piped stdout or stderr")),
    };
    let mut lines = BufReader::new(reader).lines();
    let started = Instant::now();
    for line in lines.by_ref() {
        if line.unwrap().contains(needle) {
            std::thread::spawn(move || for _ in lines {});
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    panic!("ended before printing {needle:?}");
}

fn capture(dir: &TempDir) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/capture_http.sh");
    run(Command::new("bash")
        .arg(script)
        .arg(dir.root())
        .arg(free_port().to_string()));
    dir.path("lo.pcapng")
}

#[test]
fn live_stream_sends_exactly_the_matching_entries() {
    if !require(&["dumpcap", "curl", "python3"]) {
        return;
    }
    let dir = TempDir::new("live-stream");
    let file = capture(&dir);
    // The oracle: what kubetap read makes of the same file.
    let all = kubetap_entries(&file);
    let want: Vec<&serde_json::Value> = all
        .iter()
        .filter(|e| e["response"]["status"].as_u64().is_some_and(|s| s != 200))
        .collect();
    assert!(!want.is_empty() && want.len() < all.len());

    let (grpc, http) = (free_port(), free_port());
    let mut hub = Peer::start(
        testkit::http::with_token(&mut Command::new(sibling("tap-hub")))
            .args(["--grpc", &format!("127.0.0.1:{grpc}")])
            .args(["--listen", &format!("127.0.0.1:{http}")])
            .arg("--certs")
            .arg(certs())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    wait_line(hub.child(), "workers connect");

    let out = dir.path("stream.json");
    let filter = "http%20%26%26%20response.status%20!%3D%20200";
    let url = format!("ws://127.0.0.1:{http}/api/stream?filter={filter}");
    let subscribe = |url: &str, out: &Path| {
        let mut client = Peer::start(
            Command::new("python3")
                .args(["-c", CLIENT, url, &want.len().to_string()])
                .arg(out)
                .arg(testkit::http::TOKEN)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        wait_line(client.child(), "subscribed");
        client
    };
    let mut client = subscribe(&url, &out);
    let rows_out = dir.path("rows.json");
    let mut rows_client = subscribe(&format!("{url}&format=rows"), &rows_out);

    let status = Command::new(sibling("tap-worker"))
        .arg("--certs")
        .arg(certs())
        .args([
            "--hub",
            &format!("https://127.0.0.1:{grpc}"),
            "--node",
            "n1",
            "--file",
        ])
        .arg(&file)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    while client.child().try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the stream did not deliver {} entries",
            want.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let got: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(got.iter().all(|m| m["type"] == "entry"), "{got:?}");
    let key = |e: &serde_json::Value| {
        (
            e["src"]["port"].as_u64(),
            e["request"]["path"].as_str().map(str::to_string),
            e["response"]["status"].as_u64(),
        )
    };
    let got_keys: Vec<_> = got.iter().map(|m| key(&m["entry"])).collect();
    let want_keys: Vec<_> = want.iter().map(|e| key(e)).collect();
    assert_eq!(got_keys, want_keys);
    assert!(got.iter().all(|m| m["entry"]["node"] == "n1"));

    // The rows stream: the same entries, each the row /api/rows has for it.
    while rows_client.child().try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(60), "no rows");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&rows_out).unwrap()).unwrap();
    assert!(rows.iter().all(|m| m["type"] == "row"), "{rows:?}");
    let streamed: Vec<&serde_json::Value> = rows.iter().map(|m| &m["row"]).collect();
    let (status, body) = peers::serve::get(http, &format!("/api/rows?filter={filter}&limit=1000"));
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut listed: Vec<&serde_json::Value> = page["rows"].as_array().unwrap().iter().collect();
    listed.reverse();
    assert_eq!(
        streamed, listed,
        "streamed rows are /api/rows' rows, oldest first"
    );
    let ids: Vec<&str> = got
        .iter()
        .map(|m| m["entry"]["id"].as_str().unwrap())
        .collect();
    let row_ids: Vec<String> = streamed.iter().map(|r| r[0].to_string()).collect();
    assert_eq!(ids, row_ids, "row i is entry i");
}
