//! End to end: a real `tap-hub` and real `tap-worker` processes replaying
//! capture files this test writes, checked through the hub's HTTP API against
//! what the test knows it wrote (every exchange's node, addresses, status and
//! latency). And what a user relies on when things go wrong: a hub killed and
//! restarted keeps what it stored, a killed worker is shown disconnected, a
//! stalled hub makes workers drop and count instead of hang, and no bad input
//! takes the hub down.
//!
//! The worker is another package's binary: `cargo build -p tap-worker` first
//! (`cargo test --workspace` and `cargo xtask test` do).

mod support;

use proto::v1::hub_client::HubClient;
use proto::v1::{Entry, EntryBatch, Hello, HubMessage, WorkerMessage, worker_message};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::process::{Hub, Summary, channel, finish_worker, start_worker};
use testkit::http::encode;
use testkit::synth::exchanges::{self as capture, EdgeStats, Exchange, Spec};
use testkit::{TempDir, eventually, free_port};
use tonic::{Code, Status};

/// Writes a capture per node and returns the files and their exchanges.
fn captures(
    dir: &TempDir,
    specs: &[(&'static str, Spec)],
) -> (
    BTreeMap<&'static str, std::path::PathBuf>,
    BTreeMap<&'static str, Vec<Exchange>>,
) {
    let mut files = BTreeMap::new();
    let mut written = BTreeMap::new();
    for (node, spec) in specs {
        let file = dir.join(format!("{node}.pcap"));
        written.insert(*node, capture::write(&file, spec));
        files.insert(*node, file);
    }
    (files, written)
}

fn id_of(entry: &Value) -> u64 {
    entry["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("an entry id is a number in a string: {entry}"))
}

/// Each entry is an exchange the test wrote (by node and path), with that
/// exchange's addresses, status and latency, and none is there twice; ids
/// are unique and newest first. Returns how many of each node's there are.
fn check_entries(
    entries: &[Value],
    written: &BTreeMap<&str, Vec<Exchange>>,
) -> BTreeMap<String, usize> {
    let ids: Vec<u64> = entries.iter().map(id_of).collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "ids are not unique and newest first: {ids:?}"
    );
    let mut unseen: HashMap<(&str, &str), &Exchange> = written
        .iter()
        .flat_map(|(node, xs)| xs.iter().map(move |x| ((*node, x.path.as_str()), x)))
        .collect();
    let mut per_node = BTreeMap::new();
    for e in entries {
        let node = e["node"].as_str().unwrap_or_default();
        let path = e["request"]["path"].as_str().unwrap_or_default();
        let x = unseen
            .remove(&(node, path))
            .unwrap_or_else(|| panic!("an entry no worker was given, or one stored twice: {e}"));
        let got = json!({
            "protocol": e["protocol"],
            "src": [e["src"]["ip"], e["src"]["port"]],
            "dst": [e["dst"]["ip"], e["dst"]["port"]],
            "method": e["request"]["method"],
            "status": e["response"]["status"],
            "elapsed_us": e["elapsed_us"],
        });
        let want = json!({
            "protocol": "http",
            "src": [x.client.to_string(), x.client_port],
            "dst": [x.server.to_string(), x.server_port],
            "method": "GET",
            "status": x.status,
            "elapsed_us": x.elapsed_us(),
        });
        assert_eq!(got, want, "entry {} ({node} {path})", e["id"]);
        *per_node.entry(node.to_string()).or_insert(0) += 1;
    }
    per_node
}

/// `/api/servicemap?filter=` draws exactly the edges of `exchanges`, with
/// their requests, errors and nearest-rank latency percentiles.
fn check_servicemap<'a>(
    hub: &Hub,
    filter: &str,
    exchanges: impl IntoIterator<Item = &'a Exchange>,
) {
    let want = capture::edges(exchanges);
    assert!(
        want.values()
            .any(|e| e.p50 < e.p95 && e.p95 < e.p99 && e.p99 < e.max),
        "no edge has enough exchanges for its percentiles to tell anything"
    );
    let map = hub.get_json(&format!("/api/servicemap?filter={}", encode(filter)));
    let requests: u64 = want.values().map(|e| e.requests).sum();
    assert_eq!(
        map["entries"], requests,
        "entries of the map for {filter:?}"
    );
    let edges = map["edges"].as_array().expect("edges is a list");
    let mut got = BTreeMap::new();
    for e in edges {
        assert_eq!(e["protocol"], "http", "{e}");
        let latency = &e["latency_us"];
        assert_eq!(latency["sampled"], false, "{e}");
        assert_eq!(latency["measured"], e["requests"], "{e}");
        let n = |v: &Value| {
            v.as_u64()
                .unwrap_or_else(|| panic!("not a count: {v} in {e}"))
        };
        let key = (
            e["source"].as_str().unwrap_or_default().to_string(),
            e["target"].as_str().unwrap_or_default().to_string(),
        );
        let stats = EdgeStats {
            requests: n(&e["requests"]),
            errors: n(&e["errors"]),
            p50: n(&latency["p50"]),
            p95: n(&latency["p95"]),
            p99: n(&latency["p99"]),
            max: n(&latency["max"]),
        };
        assert!(got.insert(key, stats).is_none(), "an edge drawn twice: {e}");
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "service map edges for {filter:?}"
    );
    for (edge, stats) in &want {
        assert_eq!(&got[edge], stats, "edge {edge:?} of the map for {filter:?}");
    }
}

#[test]
fn entries_from_several_workers_are_queryable_and_mapped() {
    let dir = TempDir::new("several");
    let span = Duration::from_secs(2);
    let (files, written) = captures(
        &dir,
        &[
            ("w1", Spec::new(1, 900, span)),
            ("w2", Spec::new(2, 600, span)),
            ("w3", Spec::new(3, 300, span)),
        ],
    );
    let hub = Hub::start(&[]);
    let mut workers: Vec<_> = files
        .iter()
        .map(|(node, file)| (*node, start_worker(&hub, node, file, &[])))
        .collect();
    for (node, worker) in &mut workers {
        let (status, s) = finish_worker(worker, Duration::from_secs(60));
        let n = written[node].len() as u64;
        assert!(status.success(), "worker {node} failed: {s:?}");
        assert_eq!(
            (s.entries, s.acknowledged, s.queue_drops, s.lost_in_flight),
            (n, n, 0, 0),
            "worker {node}: {s:?}"
        );
    }
    let total: usize = written.values().map(Vec::len).sum();

    let all = hub.entries("");
    assert_eq!(all.len(), total, "entries paged 100 at a time");
    let per_node = check_entries(&all, &written);
    for (node, xs) in &written {
        assert_eq!(per_node.get(*node), Some(&xs.len()), "entries of {node}");
        let only = hub.entries(&format!("node == \"{node}\""));
        assert_eq!(only.len(), xs.len(), "filter node == {node:?}");
        assert!(only.iter().all(|e| e["node"] == *node));
    }
    let errors = written.values().flatten().filter(|x| x.is_error()).count();
    assert!(errors > 0, "the captures have no 5xx to find");
    assert_eq!(
        hub.entries("http && response.status >= 500").len(),
        errors,
        "filter on status"
    );

    let one = &all[all.len() / 2];
    let got = hub.get(&format!("/api/entries/{}", id_of(one)));
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json(), *one, "an entry by id is the entry listed");
    let missing = hub.get("/api/entries/999999999");
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(missing.json()["error"].is_string(), "{}", missing.body);

    let workers = hub.workers();
    assert_eq!(
        workers["workers"].as_array().map(Vec::len),
        Some(3),
        "{workers}"
    );
    for (node, xs) in &written {
        let w = hub
            .worker(node)
            .unwrap_or_else(|| panic!("{node} not listed"));
        let n = xs.len();
        assert_eq!(w["entries_received"], n, "{w}");
        assert_eq!(w["counters"]["entries"], n, "{w}");
        assert_eq!(w["counters"]["queue_drops"], 0, "{w}");
        assert_eq!(w["counters"]["lost_in_flight"], 0, "{w}");
        assert_eq!(w["state"], "disconnected", "{w}");
        assert_eq!(w["last_error"], Value::Null, "a clean end: {w}");
    }
    assert_eq!(workers["hub"]["entries_ingested"], total, "{workers}");

    check_servicemap(&hub, "", written.values().flatten());
    check_servicemap(&hub, "node == \"w1\"", &written["w1"]);
}

#[test]
fn hub_killed_and_restarted_keeps_stored_entries_on_disk() {
    let dir = TempDir::new("restart");
    let (files, written) = captures(&dir, &[("w1", Spec::new(1, 400, Duration::from_secs(6)))]);
    let store = dir.join("store");
    let store = store.to_str().expect("a UTF-8 temp dir");
    let grpc = format!("127.0.0.1:{}", free_port());
    let api = format!("127.0.0.1:{}", free_port());
    let mut hub = Hub::start_on(&grpc, &api, &["--disk", store]);
    let started = Instant::now();
    let mut worker = start_worker(&hub, "w1", &files["w1"], &["--pace", "1.0"]);

    eventually(Duration::from_secs(20), "the first entries stored", || {
        (!hub.entries("").is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2).saturating_sub(started.elapsed()));
    let before = hub.entries("");
    hub.process.kill();
    assert!(
        before.len() < written["w1"].len(),
        "the worker was done before the hub was killed: make the capture longer"
    );
    std::thread::sleep(Duration::from_secs(1));
    hub = Hub::start_on(&grpc, &api, &["--disk", store]);

    let (status, s) = finish_worker(&mut worker, Duration::from_secs(60));
    eprintln!("the worker's summary: {s:?}");
    assert!(status.success(), "the worker failed: {s:?}");
    assert_eq!(s.entries, written["w1"].len() as u64, "{s:?}");
    assert_eq!(
        s.acknowledged + s.queue_drops + s.lost_in_flight,
        s.entries,
        "every entry acknowledged, dropped or lost in flight: {s:?}"
    );
    assert!(s.reconnects >= 1, "the worker never reconnected: {s:?}");

    let after = hub.entries("");
    check_entries(&after, &written);
    // A batch the dead hub stored but could not acknowledge is on its disk,
    // and the worker counts it lost in flight: never resent, never twice.
    let stored = after.len() as u64;
    eprintln!(
        "{} entries listed before the kill, {stored} after the restart",
        before.len()
    );
    assert!(
        s.acknowledged <= stored && stored <= s.acknowledged + s.lost_in_flight,
        "{stored} entries stored after the restart; the worker says {s:?}"
    );
    for e in &before {
        let got = hub.get(&format!("/api/entries/{}", id_of(e)));
        assert_eq!(
            got.status, 200,
            "entry {} lost by the restart: {}",
            e["id"], got.body
        );
        assert_eq!(got.json(), *e, "entry {} changed by the restart", e["id"]);
    }
    let w = hub.worker("w1").expect("w1 listed by the restarted hub");
    assert_eq!(w["counters"]["reconnects"], s.reconnects, "{w}");
    assert_eq!(w["counters"]["lost_in_flight"], s.lost_in_flight, "{w}");
    assert_eq!(w["counters"]["entries"], s.entries, "{w}");
}

#[test]
fn killed_worker_is_shown_disconnected_and_others_go_on() {
    let dir = TempDir::new("killed-worker");
    let (files, written) = captures(
        &dir,
        &[
            ("w1", Spec::new(1, 300, Duration::from_secs(10))),
            ("w2", Spec::new(2, 100, Duration::from_secs(2))),
        ],
    );
    let hub = Hub::start(&[]);
    let mut w1 = start_worker(&hub, "w1", &files["w1"], &["--pace", "1.0"]);
    eventually(Duration::from_secs(20), "w1 streaming entries", || {
        hub.worker("w1")
            .filter(|w| w["state"] == "connected" && w["entries_received"].as_u64() > Some(0))
    });
    w1.kill();
    let gone = eventually(Duration::from_secs(30), "w1 shown disconnected", || {
        hub.worker("w1").filter(|w| w["state"] == "disconnected")
    });
    assert!(
        gone["last_error"].is_string(),
        "a worker killed mid-stream shown as if it ended cleanly: {gone}"
    );
    let received = gone["entries_received"].as_u64().expect("a count");
    assert!(
        received < written["w1"].len() as u64,
        "w1 was done before it was killed"
    );

    let mut w2 = start_worker(&hub, "w2", &files["w2"], &[]);
    let (status, s) = finish_worker(&mut w2, Duration::from_secs(60));
    assert!(status.success(), "w2 failed: {s:?}");
    let n2 = written["w2"].len();
    assert_eq!(s.acknowledged, n2 as u64, "{s:?}");

    let all = hub.entries("");
    let per_node = check_entries(&all, &written);
    assert_eq!(per_node.get("w2"), Some(&n2), "w2's entries");
    assert_eq!(
        per_node.get("w1").copied().unwrap_or(0) as u64,
        received,
        "w1's entries are those the hub received before it was killed"
    );
    assert_eq!(hub.entries("node == \"w2\"").len(), n2);
    let w1 = hub.worker("w1").expect("w1 still listed");
    assert_eq!(w1["state"], "disconnected", "{w1}");
    let w2 = hub.worker("w2").expect("w2 listed");
    assert_eq!(w2["state"], "disconnected", "{w2}");
    assert_eq!(w2["last_error"], Value::Null, "{w2}");
    assert_eq!(w2["entries_received"], n2, "{w2}");
}

#[test]
fn stalled_hub_slows_workers_and_drops_are_counted() {
    let dir = TempDir::new("stalled");
    // 500 exchanges a second: far more than 50 queued entries and a window
    // of batches hold while the hub is stopped.
    let (files, written) = captures(&dir, &[("w1", Spec::new(1, 4000, Duration::from_secs(8)))]);
    let hub = Hub::start(&[]);
    let mut worker = start_worker(
        &hub,
        "w1",
        &files["w1"],
        &["--pace", "1.0", "--queue", "50"],
    );
    eventually(Duration::from_secs(20), "w1 streaming entries", || {
        hub.worker("w1")
            .filter(|w| w["entries_received"].as_u64() > Some(0))
    });
    hub.process.signal("STOP");
    std::thread::sleep(Duration::from_secs(4));
    hub.process.signal("CONT");

    let (status, s) = finish_worker(&mut worker, Duration::from_secs(60));
    eprintln!("the worker's summary: {s:?}");
    assert!(status.success(), "the worker failed: {s:?}");
    assert_eq!(s.entries, written["w1"].len() as u64, "{s:?}");
    assert!(
        s.queue_drops > 0,
        "nothing dropped while the hub was stopped: {s:?}"
    );
    assert_eq!(
        s.acknowledged + s.queue_drops + s.lost_in_flight,
        s.entries,
        "{s:?}"
    );
    // The worker's last heartbeat carries its final counters.
    let w = hub.worker("w1").expect("w1 listed");
    assert_eq!(w["counters"]["queue_drops"], s.queue_drops, "{w}");
    assert_eq!(w["counters"]["lost_in_flight"], s.lost_in_flight, "{w}");
    assert_eq!(w["counters"]["entries"], s.entries, "{w}");

    let stored = hub.entries("");
    check_entries(&stored, &written);
    let stored = stored.len() as u64;
    assert!(
        s.acknowledged <= stored && stored <= s.acknowledged + s.lost_in_flight,
        "{stored} entries stored; the worker says {s:?}"
    );
    assert_eq!(w["entries_received"], stored, "{w}");

    // Drops by cause: the queue's add up to its total, and the stream's
    // losses are their own cause.
    let by_cause = &w["counters"]["drops_by_cause"];
    let n = |c: &str| {
        by_cause[c]
            .as_u64()
            .unwrap_or_else(|| panic!("no {c}: {w}"))
    };
    assert_eq!(
        n("queue_full") + n("queue_memory") + n("queue_closed"),
        s.queue_drops,
        "{w}"
    );
    assert!(
        n("queue_full") > 0,
        "--queue 50 was the bound that bit: {w}"
    );
    assert_eq!(n("lost_in_flight"), s.lost_in_flight, "{w}");
    // /metrics, read by Prometheus's own Python parser: one series per
    // cause, each the worker's count.
    let metrics = hub.get("/metrics");
    assert_eq!(metrics.status, 200);
    let families = prometheus_families(&metrics.body);
    let dropped: BTreeMap<String, u64> = families["kubetap_worker_dropped"]["samples"]
        .as_array()
        .expect("kubetap_worker_dropped is exposed")
        .iter()
        .filter(|x| x["labels"]["node"] == "w1")
        .map(|x| {
            (
                x["labels"]["cause"].as_str().unwrap().to_string(),
                x["value"].as_f64().unwrap() as u64,
            )
        })
        .collect();
    let api: BTreeMap<String, u64> = by_cause
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert!(api.len() >= 13, "{api:?}");
    assert_eq!(dropped, api);
    assert_eq!(families["kubetap_worker_dropped"]["type"], "counter");
}

/// `/metrics` as Python's `prometheus_client` parses it: family name (as
/// the parser names it, without `_total`) -> its type and samples.
fn prometheus_families(text: &str) -> Value {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [
        {"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (cargo xtask setup installs it and prometheus_client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client cannot parse /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A message type the hub does not expect on `Hub.Session`: field 1 carries
/// an encoded `Hello` (wire-compatible with `WorkerMessage.hello`), field 2
/// whatever bytes the test wants where `WorkerMessage.batch` belongs.
#[derive(Clone, PartialEq, prost::Message)]
struct Rogue {
    #[prost(bytes = "vec", tag = "1")]
    hello: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    batch: Vec<u8>,
}

fn hello(node: &str) -> Hello {
    Hello {
        node: node.into(),
        version: "test".into(),
        capabilities: vec!["entries".into()],
        instance: format!("{node}-instance"),
        linux_capabilities: Vec::new(),
    }
}

fn message(kind: worker_message::Kind) -> WorkerMessage {
    WorkerMessage { kind: Some(kind) }
}

/// The status that ends a session: the call's own, or the stream's.
async fn session_error(
    call: Result<tonic::Response<tonic::Streaming<HubMessage>>, Status>,
) -> Status {
    let mut inbound = match call {
        Ok(response) => response.into_inner(),
        Err(status) => return status,
    };
    loop {
        match tokio::time::timeout(Duration::from_secs(30), inbound.message()).await {
            Err(_) => panic!("the hub neither answered nor ended the stream in 30 s"),
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => panic!("the hub ended the stream without an error"),
            Ok(Err(status)) => return status,
        }
    }
}

async fn rogue_session(url: String, certs: std::path::PathBuf, messages: Vec<Rogue>) -> Status {
    let channel = channel(url, &certs).await;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the channel is ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/kubetap.v1.Hub/Session");
    let codec = tonic_prost::ProstCodec::<Rogue, HubMessage>::default();
    let call = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter(messages)),
            path,
            codec,
        )
        .await;
    session_error(call).await
}

/// Reads until the peer closes the connection (true) or 10 s pass (false).
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("setting a read timeout");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn hub_counter(hub: &Hub, name: &str) -> u64 {
    let workers = hub.workers();
    workers["hub"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no hub counter {name}: {workers}"))
}

#[test]
fn bad_input_never_takes_the_hub_down() {
    let dir = TempDir::new("bad-input");
    let hub = Hub::start(&["--max-message", "64KiB"]);
    let (url, certs) = (hub.url(), hub.certs.clone());
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");

    // (a) Garbage on both ports is refused (on the gRPC port by the TLS
    // handshake); a connection that says nothing does not hold up anything
    // below (the hub drops it after 10 s without a handshake).
    let mut garbage = TcpStream::connect(hub.grpc).expect("connecting to the gRPC port");
    garbage
        .write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff\xfe garbage \x16\x03\x01")
        .expect("writing garbage");
    assert!(
        closed_by_peer(&mut garbage),
        "the hub kept a garbage gRPC connection"
    );
    let mut garbage = TcpStream::connect(hub.api).expect("connecting to the API port");
    garbage
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not HTTP\r\n\r\n")
        .expect("writing garbage");
    assert!(
        closed_by_peer(&mut garbage),
        "the hub kept a garbage HTTP connection"
    );
    let silent = TcpStream::connect(hub.grpc).expect("connecting to the gRPC port");

    // A session that never says hello is ended by the hub (after 10 s; it is
    // checked at the end).
    let hello_never = runtime.spawn({
        let (url, certs) = (url.clone(), certs.clone());
        async move {
            let mut client = HubClient::new(channel(url, &certs).await);
            session_error(
                client
                    .session(tokio_stream::pending::<WorkerMessage>())
                    .await,
            )
            .await
        }
    });

    // (b) A batch before the hello.
    let status = runtime.block_on(async {
        let mut client = HubClient::new(channel(url.clone(), &certs).await);
        let batch = message(worker_message::Kind::Batch(EntryBatch {
            seq: 1,
            entries: vec![Entry::default()],
        }));
        session_error(client.session(tokio_stream::iter(vec![batch])).await).await
    });
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // (c) A message over --max-message after a good hello.
    let bad = hub_counter(&hub, "bad_messages");
    let status = runtime.block_on(async {
        let mut client = HubClient::new(channel(url.clone(), &certs).await);
        let big = message(worker_message::Kind::Batch(EntryBatch {
            seq: 1,
            entries: vec![Entry {
                id: "x".repeat(100 << 10),
                ..Default::default()
            }],
        }));
        let hello = message(worker_message::Kind::Hello(hello("big")));
        session_error(client.session(tokio_stream::iter(vec![hello, big])).await).await
    });
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(
        hub_counter(&hub, "bad_messages"),
        bad + 1,
        "oversized message not counted"
    );

    // (d) Bytes that do not decode: as the first message, and after a hello.
    let garbage = Rogue {
        hello: Vec::new(),
        batch: vec![0xff; 32],
    };
    let status = runtime.block_on(rogue_session(
        url.clone(),
        certs.clone(),
        vec![garbage.clone()],
    ));
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(
        hub_counter(&hub, "bad_messages"),
        bad + 2,
        "undecodable hello not counted"
    );
    let good_hello = Rogue {
        hello: prost::Message::encode_to_vec(&hello("rogue")),
        batch: Vec::new(),
    };
    let status = runtime.block_on(rogue_session(
        url.clone(),
        certs.clone(),
        vec![good_hello, garbage],
    ));
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(
        hub_counter(&hub, "bad_messages"),
        bad + 3,
        "undecodable batch not counted"
    );
    for node in ["big", "rogue"] {
        // The hub sends the status before it marks the stream ended.
        let w = eventually(
            Duration::from_secs(10),
            "a refused worker shown disconnected",
            || hub.worker(node).filter(|w| w["state"] == "disconnected"),
        );
        assert!(
            w["last_error"].is_string(),
            "why {node}'s stream ended: {w}"
        );
    }

    // (e) The API answers bad queries with 400 or 404 and a JSON error.
    let cases: [(String, u16); 10] = [
        (format!("/api/entries?filter={}", encode("foo == 1")), 400),
        (
            format!("/api/entries?filter={}", encode("protocol == ")),
            400,
        ),
        (
            format!("/api/entries?filter={}", encode("response.status >= \"x\"")),
            400,
        ),
        ("/api/entries?cursor=abc".into(), 400),
        ("/api/entries?limit=0".into(), 400),
        ("/api/entries?limit=100000".into(), 400),
        ("/api/entries/abc".into(), 400),
        ("/api/servicemap?window=forever".into(), 400),
        ("/api/entries/123456789".into(), 404),
        ("/api/no-such-thing".into(), 404),
    ];
    for (path, want) in &cases {
        let reply = hub.get(path);
        assert_eq!(reply.status, *want, "GET {path}: {}", reply.body);
        assert_eq!(
            reply.content_type.as_deref(),
            Some("application/json"),
            "GET {path}"
        );
        let error = &reply.json()["error"];
        assert!(
            error.as_str().is_some_and(|e| !e.is_empty()),
            "GET {path}: {}",
            reply.body
        );
    }
    let column = |filter: &str| {
        let reply = hub.get(&format!("/api/entries?filter={}", encode(filter)));
        reply.json()["column"].as_u64()
    };
    assert_eq!(
        column("foo == 1"),
        Some(1),
        "the column of an unknown field"
    );
    assert_eq!(
        column("protocol == "),
        Some(13),
        "a missing operand is reported where the filter ends"
    );

    // (f) After all that the hub is healthy and a worker delivers everything.
    let healthz = hub.get("/healthz");
    assert_eq!((healthz.status, healthz.body.trim()), (200, "ok"));
    let status = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), hello_never).await })
        .expect("the hub ends a session without a hello within 30 s")
        .expect("the stalled session's task");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let (files, written) = captures(&dir, &[("w9", Spec::new(9, 60, Duration::from_secs(1)))]);
    let mut worker = start_worker(&hub, "w9", &files["w9"], &[]);
    let (status, s): (_, Summary) = finish_worker(&mut worker, Duration::from_secs(60));
    assert!(status.success(), "the worker failed: {s:?}");
    assert_eq!(s.acknowledged, 60, "{s:?}");
    let all = hub.entries("");
    assert_eq!(all.len(), 60, "only the worker's entries are stored");
    check_entries(&all, &written);

    let counters = hub.workers()["hub"].clone();
    let got = json!({
        "sessions": counters["sessions"],
        "rejected_sessions": counters["rejected_sessions"],
        "bad_messages": counters["bad_messages"],
        "entries_ingested": counters["entries_ingested"],
    });
    // Accepted: big, rogue, w9. Refused: batch first, garbage first, no hello.
    let want = json!({
        "sessions": 3,
        "rejected_sessions": 3,
        "bad_messages": 3,
        "entries_ingested": 60,
    });
    assert_eq!(got, want, "{counters}");
    let metrics = hub.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l == "kubetap_hub_bad_messages_total 3"),
        "{}",
        metrics.body
    );
    drop(silent);
}

/// A worker that lost its connection reconnects as the same instance, often
/// before the hub notices the old stream is gone (a half-open connection is
/// found by keepalive: by the worker within ~10 s, by the hub within ~15 s).
/// When the hub finally ends the old stream, the worker is still connected
/// on the new one and must be shown so.
#[test]
fn reconnected_worker_stays_connected_when_its_old_stream_ends() {
    let hub = Hub::start(&[]);
    let (url, certs) = (hub.url(), hub.certs.clone());
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let mut streams = runtime.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            tx.send(message(worker_message::Kind::Hello(hello("w1"))))
                .await
                .expect("queueing the hello");
            let mut client = HubClient::new(channel(url.clone(), &certs).await);
            let mut inbound = client
                .session(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .expect("the hub accepts the session")
                .into_inner();
            let config = inbound.message().await.expect("the hub's first message");
            assert!(config.is_some(), "the hub sends its configuration first");
            streams.push((tx, inbound));
        }
        streams
    });
    let w = hub.worker("w1").expect("w1 listed");
    assert_eq!(w["state"], "connected", "{w}");
    assert_eq!(w["sessions"], 2, "{w}");

    // The old stream ends cleanly. The hub updates the worker's state before
    // it ends its side, so once that ends the state is final.
    let (old_tx, mut old_inbound) = streams.remove(0);
    drop(old_tx);
    let end = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), old_inbound.message()).await
    });
    assert!(
        matches!(end, Ok(Ok(None))),
        "the hub did not end the old stream: {end:?}"
    );
    let w = hub.worker("w1").expect("w1 listed");
    assert_eq!(
        w["state"], "connected",
        "w1 streams on its new connection: {w}"
    );
    drop(streams);
}
