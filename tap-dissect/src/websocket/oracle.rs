//! Real WebSocket traffic, real oracle: a Python `websockets` server and
//! client (websocket/peer.py) talk over loopback, once without
//! extensions and once with permessage-deflate: text and binary messages both
//! ways (one with a 64-bit length), a message fragmented by each side, a
//! ping and its pong, a close with a code from each side. Captured by
//! dumpcap, the file is read by kubetap and by tshark's WebSocket dissector;
//! per connection and direction, the messages must agree in order: opcode,
//! fragments, payload bytes on the wire, close code and reason, and the text
//! of every uncompressed message tshark decodes from one frame. The payloads
//! must also be what the peers sent, the compressed ones included.
//!
//! Needs root, dumpcap, tshark, python3 and websockets (`cargo xtask setup`
//! installs them); skips with the reason otherwise, unless
//! KUBETAP_REQUIRE_PEERS=1, where it fails.

#[path = "../../../tap-cli/tests/peers/mod.rs"]
mod peers;

use base64::Engine as _;
use peers::serve::{encode, get, spawn_piped, wait_line};
use peers::{Capture, Peer, TempDir, free_port, run};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// One message as both sides must see it.
#[derive(Debug, Clone, PartialEq)]
struct Msg {
    opcode: String,
    fragments: u64,
    /// Payload bytes on the wire, all fragments.
    size: u64,
    close: Option<(u64, String)>,
}

/// Messages per (client port, sent by the client).
type Conversation = BTreeMap<(u64, bool), Vec<Msg>>;

fn number(v: &Value) -> u64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

fn opcode_name(op: u64) -> &'static str {
    match op {
        1 => "text",
        2 => "binary",
        8 => "close",
        9 => "ping",
        10 => "pong",
        _ => panic!("unexpected opcode {op}"),
    }
}

/// tshark's frames joined into messages, and the text of each uncompressed
/// message tshark decoded from one frame (keyed by its index in the direction's list).
fn tshark_view(file: &Path, port: u16) -> (Conversation, BTreeMap<(u64, bool, usize), String>) {
    let out = run(Command::new("tshark").args(["-n", "-r"]).arg(file).args([
        "-d",
        &format!("tcp.port=={port},http"),
        "-Y",
        "websocket",
        "-T",
        "json",
        "--no-duplicate-keys",
    ]));
    let packets: Vec<Value> = serde_json::from_slice(&out).unwrap();
    let mut messages = Conversation::new();
    let mut texts = BTreeMap::new();
    // Data messages being joined, per direction.
    let mut open: BTreeMap<(u64, bool), Msg> = BTreeMap::new();
    for p in &packets {
        let layers = &p["_source"]["layers"];
        let src = number(&layers["tcp"]["tcp.srcport"]);
        let dst = number(&layers["tcp"]["tcp.dstport"]);
        let from_client = dst == u64::from(port);
        let key = (if from_client { src } else { dst }, from_client);
        let frames: Vec<&Value> = match &layers["websocket"] {
            Value::Array(fs) => fs.iter().collect(),
            f => vec![f],
        };
        for f in frames {
            let fin = number(&f["websocket.fin"]) == 1;
            let op = number(&f["websocket.opcode"]);
            let size = [
                "websocket.payload_length_ext_64",
                "websocket.payload_length_ext_16",
            ]
            .iter()
            .find_map(|k| f.get(*k))
            .map_or_else(|| number(&f["websocket.payload_length"]), number);
            let payload = &f["websocket.payload"];
            let list = messages.entry(key).or_default();
            if op == 0 {
                let m = open.get_mut(&key).expect("a continuation of no message");
                m.fragments += 1;
                m.size += size;
                if fin {
                    list.push(open.remove(&key).unwrap());
                }
                continue;
            }
            let close = payload.get("websocket.payload.close").map(|c| {
                (
                    number(&c["websocket.payload.close.status_code"]),
                    c["websocket.payload.close.reason"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            });
            let m = Msg {
                opcode: opcode_name(op).into(),
                fragments: 1,
                size,
                close,
            };
            // tshark 4.0 inflates fragmented compressed messages wrongly, and
            // with them its window: compressed texts are checked against what
            // the peers sent instead.
            let compressed = f.get("websocket.pmc").is_some_and(|c| number(c) == 1);
            if fin
                && !compressed
                && let Some(t) = payload.get("websocket.payload.text")
            {
                texts.insert((key.0, key.1, list.len()), t.as_str().unwrap().to_string());
            }
            if fin {
                list.push(m);
            } else {
                assert!(open.insert(key, m).is_none(), "interleaved data messages");
            }
        }
    }
    assert!(open.is_empty(), "unfinished messages: {open:?}");
    (messages, texts)
}

/// A message's payload bytes and its JSON.
type Sent<'a> = (Vec<u8>, &'a Value);

/// The message of a websocket entry, from whichever side holds it.
fn message(e: &Value) -> &Value {
    if e["request"].is_object() {
        assert!(e["response"].is_null(), "{e}");
        &e["request"]
    } else {
        &e["response"]
    }
}

fn payload(m: &Value) -> Vec<u8> {
    let p = m["payload"].as_str().unwrap();
    if m["payload_encoding"] == "base64" {
        base64::engine::general_purpose::STANDARD.decode(p).unwrap()
    } else {
        p.as_bytes().to_vec()
    }
}

#[test]
fn websocket_messages_match_tshark_on_real_traffic() {
    if !peers::require(&["python3"]) {
        return;
    }
    let have_module = Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    if !have_module {
        let why = "python3 cannot import websockets (cargo xtask setup installs it)";
        testkit::skip("real-peer test", why);
        return;
    }
    let dir = TempDir::new("websocket-oracle");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tap-dissect/src/websocket/peer.py");
    let port = free_port();
    let p = port.to_string();
    let server = Peer::spawn(Command::new("python3").arg(&script).args(["serve", &p]));
    server.wait_for_port(port);
    let capture = Capture::start(dir.path("ws.pcapng"), &format!("tcp port {port}"));
    let conversations = [("/chat?room=1", "plain"), ("/compressed", "deflate")];
    for (path, mode) in conversations {
        run(Command::new("python3")
            .arg(&script)
            .args(["call", &p, path, mode]));
    }
    let file = capture.stop();
    drop(server);

    let (theirs, texts) = tshark_view(&file, port);
    let entries = peers::kubetap_entries(&file);

    // Each connection: the upgrade (an http entry answered 101), then its
    // messages, numbered on and tied to it.
    let mut ours = Conversation::new();
    let mut payloads: BTreeMap<(u64, bool), Vec<Sent>> = BTreeMap::new();
    let mut upgrades = BTreeMap::new();
    for e in &entries {
        let client = e["src"]["port"].as_u64().unwrap();
        let id = e["id"].as_str().unwrap();
        match e["protocol"].as_str().unwrap() {
            "http" => {
                assert_eq!(e["response"]["status"], 101, "{e}");
                assert!(id.ends_with("-0"), "{id}");
                upgrades.insert(client, (id.to_string(), e["request"]["path"].clone()));
            }
            "websocket" => {
                let m = message(e);
                let (upgrade, path) = &upgrades[&client];
                assert_eq!(m["upgrade_entry"], upgrade.as_str());
                assert_eq!(&m["path"], path);
                assert_eq!(m["method"], m["opcode"]);
                assert_eq!(e["flags"], serde_json::json!([]), "{e}");
                let from_client = m["direction"] == "client";
                let key = (client, from_client);
                let list = ours.entry(key).or_default();
                list.push(Msg {
                    opcode: m["opcode"].as_str().unwrap().into(),
                    fragments: m["fragments"].as_u64().unwrap(),
                    size: m["payload_size"].as_u64().unwrap(),
                    close: m["close_code"]
                        .as_u64()
                        .map(|c| (c, m["close_reason"].as_str().unwrap().to_string())),
                });
                assert_eq!(m["status"], m["close_code"]);
                payloads.entry(key).or_default().push((payload(m), m));
            }
            other => panic!("unexpected protocol {other}: {e}"),
        }
    }
    assert_eq!(upgrades.len(), 2, "two upgrades");
    upgrades_resolve_through_the_api(&file);
    let count = |c: &Conversation| c.values().map(Vec::len).sum::<usize>();
    assert_eq!(count(&theirs), 2 * 14 + 1, "tshark's messages");
    assert_eq!(ours, theirs, "messages per connection and direction");

    // The texts tshark decoded from single uncompressed frames.
    assert!(texts.len() >= 5, "too few texts from tshark: {texts:?}");
    for ((client, from_client, i), text) in &texts {
        let (bytes, _) = &payloads[&(*client, *from_client)][*i];
        assert_eq!(String::from_utf8_lossy(bytes), *text);
    }

    // What the peers sent, compressed or not, fragmented or not.
    let every_byte: Vec<u8> = (0..=255).collect();
    let big: Vec<u8> = (0..70000).map(|i| (i % 251) as u8).collect();
    for (client, (_, path)) in &upgrades {
        let deflate = path == "/compressed";
        for from_client in [true, false] {
            let sent: Vec<&[u8]> = payloads[&(*client, from_client)]
                .iter()
                .map(|(b, _)| b.as_slice())
                .collect();
            let mut want: Vec<&[u8]> = vec![
                b"hello",
                &every_byte,
                &big,
                b"three fragments",
                if from_client {
                    b"fragments please"
                } else {
                    b"fragmented reply"
                },
                b"are you there",
            ];
            if !deflate && from_client {
                want.push(b"close please");
            }
            // Close frames: code and reason only.
            want.push(b"");
            assert_eq!(sent, want, "{path} from the client: {from_client}");
            for (_, m) in &payloads[&(*client, from_client)] {
                let data = matches!(m["opcode"].as_str(), Some("text" | "binary"));
                assert_eq!(m["compressed"] == true, deflate && data, "{m}");
                assert_eq!(m["inflated"] == true, deflate && data, "{m}");
            }
        }
    }
}

/// Served by `read --serve`, each message's `upgrade_entry` is an id the
/// API resolves (`/api/entries/{id}`), and what it resolves to is the HTTP
/// upgrade that opened the message's connection.
fn upgrades_resolve_through_the_api(file: &Path) {
    let port = free_port();
    let mut serve = spawn_piped(
        testkit::http::with_token(&mut Command::new(env!("CARGO_BIN_EXE_kubetap")))
            .args(["read", "--serve", "--port", &port.to_string()])
            .arg(file),
    );
    wait_line(&mut serve, "all entries loaded");
    let json = |path: &str| {
        let (status, body) = get(port, path);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    let filter = encode("protocol == \"websocket\"");
    let messages = json(&format!("/api/entries?limit=1000&filter={filter}"));
    let messages = messages["entries"].as_array().unwrap();
    assert!(messages.len() > 20, "{} messages", messages.len());
    for e in messages {
        let up = message(e)["upgrade_entry"].as_str().unwrap();
        let upgrade = json(&format!("/api/entries/{up}"));
        assert_eq!(upgrade["protocol"], "http", "{upgrade}");
        assert_eq!(upgrade["response"]["status"], 101, "{upgrade}");
        assert_eq!(upgrade["src"]["port"], e["src"]["port"], "same connection");
        assert_eq!(upgrade["request"]["path"], message(e)["path"]);
    }
}
