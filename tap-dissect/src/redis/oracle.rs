//! Real Redis traffic, real oracle: a real redis-server on its own loopback
//! port, driven by redis-cli (single commands, RESP3 sessions, a pipelined
//! batch through `--pipe`, pub/sub) and redis-benchmark (pipelined), captured
//! by dumpcap; kubetap's commands must equal those tshark's RESP dissector
//! finds, per connection and in order, and every command must be answered.
//!
//! The server runs with its own port, no persistence and its own directory, so
//! a system Redis service (Debian starts one on 6379) is neither used nor touched.
//!
//! Needs root, dumpcap, tshark, redis-server, redis-cli and redis-benchmark
//! (`cargo xtask setup` installs them). Without them the test says why and
//! skips, unless KUBETAP_REQUIRE_PEERS=1 (set by `cargo xtask test`).

#[path = "../../../tap-cli/tests/peers/mod.rs"]
mod peers;

use peers::{Capture, Peer, TempDir, free_port, run};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Command names per connection (keyed by the client's port), in order.
type Commands = BTreeMap<u16, Vec<String>>;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// tshark's commands: each client packet's arrays, split by their lengths, first element upper-cased.
fn tshark_commands(file: &Path, port: u16) -> Commands {
    let rows = peers::tshark_fields(
        file,
        &["-d", &format!("tcp.port=={port},resp")],
        &format!("resp && tcp.dstport == {port}"),
        &["tcp.srcport", "resp.array.length", "resp.bulk_string.value"],
    );
    let mut t = Commands::new();
    for row in rows {
        let client: u16 = row[0][0].parse().unwrap();
        let lengths: Vec<usize> = row[1].iter().map(|l| l.parse().unwrap()).collect();
        let values = &row[2];
        assert_eq!(
            lengths.iter().sum::<usize>(),
            values.len(),
            "a client packet whose arrays tshark did not read whole: {row:?}"
        );
        let mut at = 0;
        for n in lengths {
            let name = String::from_utf8_lossy(&unhex(&values[at])).to_ascii_uppercase();
            t.entry(client).or_default().push(name);
            at += n;
        }
    }
    t
}

/// kubetap's commands (first word of the command; pushes left out), and all entries per connection.
fn kubetap_commands(entries: &[serde_json::Value]) -> Commands {
    let mut t = Commands::new();
    for e in entries {
        assert_eq!(e["protocol"], "redis", "{e}");
        let command = e["request"]["command"].as_str().unwrap();
        if command == "PUSH" {
            continue;
        }
        let first = command.split(' ').next().unwrap().to_string();
        t.entry(e["src"]["port"].as_u64().unwrap() as u16)
            .or_default()
            .push(first);
    }
    t
}

/// Entries ordered per connection by their index ("<flow>-<n>").
fn ordered(mut entries: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    let key = |e: &serde_json::Value| {
        let id = e["id"].as_str().unwrap();
        let (flow, n) = id.rsplit_once('-').unwrap();
        (flow.to_string(), n.parse::<u64>().unwrap())
    };
    entries.sort_by_key(key);
    entries
}

#[test]
fn redis_commands_match_tshark_on_real_traffic() {
    if !peers::require(&["redis-server", "redis-cli", "redis-benchmark"]) {
        return;
    }
    let dir = TempDir::new("redis-oracle");
    let port = free_port();
    let p = port.to_string();
    let server = Peer::spawn(
        Command::new("redis-server")
            .args(["--port", &p, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--dir"])
            .arg(dir.root()),
    );
    server.wait_for_port(port);
    let capture = Capture::start(dir.path("redis.pcapng"), &format!("tcp port {port}"));
    let cli = |args: &[&str]| run(Command::new("redis-cli").args(["-p", &p]).args(args));

    cli(&["SET", "greeting", "hello world"]);
    cli(&["GET", "greeting"]);
    cli(&["GET", "missing"]);
    cli(&["SET", "n", "41"]);
    cli(&["INCR", "n"]);
    // An error reply: INCR on a string that is not a number.
    cli(&["INCR", "greeting"]);
    cli(&["HSET", "h", "a", "1", "b", "2"]);
    cli(&["HGETALL", "h"]);
    cli(&["LPUSH", "l", "x", "y", "z"]);
    cli(&["LRANGE", "l", "0", "-1"]);
    // RESP3: HELLO 3 first, then a map reply.
    cli(&["-3", "HGETALL", "h"]);

    // A pipelined batch: RESP arrays written at once, answered in order
    // (`--pipe` fails on any error reply, so the values are numbers).
    let mut batch = Vec::new();
    for i in 0..50 {
        for args in [
            vec!["SET".to_string(), format!("k{i}"), format!("{i}")],
            vec!["GET".to_string(), format!("k{i}")],
            vec!["INCR".to_string(), format!("k{i}")],
        ] {
            batch.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                batch.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
        }
    }
    let mut pipe = Command::new("redis-cli")
        .args(["-p", &p, "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-cli --pipe");
    pipe.stdin.take().unwrap().write_all(&batch).unwrap();
    assert!(pipe.wait().unwrap().success(), "redis-cli --pipe failed");

    run(Command::new("redis-benchmark").args([
        "-p", &p, "-n", "200", "-P", "16", "-c", "4", "-t", "set,get", "-q",
    ]));

    // Pub/sub: a RESP2 and a RESP3 subscriber, then two messages each.
    let subscribers = [
        Peer::spawn(Command::new("redis-cli").args(["-p", &p, "SUBSCRIBE", "news", "weather"])),
        Peer::spawn(Command::new("redis-cli").args(["-3", "-p", &p, "SUBSCRIBE", "news"])),
    ];
    testkit::assert_eventually!(
        Duration::from_secs(20),
        String::from_utf8_lossy(&cli(&["PUBSUB", "NUMSUB", "news"]))
            .lines()
            .nth(1)
            == Some("2"),
        "two subscribers to news"
    );
    cli(&["PUBLISH", "news", "first"]);
    cli(&["PUBLISH", "news", "second"]);
    std::thread::sleep(Duration::from_millis(300));
    drop(subscribers);

    let file = capture.stop();
    drop(server);

    let theirs = tshark_commands(&file, port);
    let entries = ordered(peers::kubetap_entries(&file));
    let ours = kubetap_commands(&entries);
    let count = |c: &Commands| c.values().map(Vec::len).sum::<usize>();
    assert!(
        count(&theirs) >= 11 + 150 + 400 + 2,
        "too few commands captured: {}",
        count(&theirs)
    );
    assert_eq!(count(&ours), count(&theirs), "number of commands");
    assert_eq!(ours, theirs, "commands per connection");

    // Every command was answered; pushes are entries of their own.
    for e in &entries {
        assert!(e["response"].is_object(), "unanswered: {e}");
        assert!(
            !e["flags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f != "truncated"),
            "flags: {e}"
        );
    }
    let find = |command: &str, key: &str| {
        entries
            .iter()
            .filter(|e| e["request"]["method"] == command && e["request"]["path"] == key)
            .collect::<Vec<_>>()
    };
    let get = find("GET", "greeting");
    assert_eq!(get[0]["response"]["value"], "hello world");
    assert_eq!(get[0]["response"]["status"], 0);
    assert_eq!(find("GET", "missing")[0]["response"]["type"], "null");
    let incr = find("INCR", "greeting");
    assert_eq!(incr[0]["response"]["status"], 1);
    assert_eq!(
        incr[0]["response"]["error"],
        "ERR value is not an integer or out of range"
    );
    assert_eq!(find("INCR", "n")[0]["response"]["value"], "42");
    let maps: Vec<_> = find("HGETALL", "h")
        .iter()
        .map(|e| e["response"]["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(maps, ["array", "map"]);
    assert_eq!(find("LRANGE", "l")[0]["response"]["elements"], 3);
    // One entry per SUBSCRIBE, holding a confirmation per channel.
    let mut subscribe: Vec<_> = find("SUBSCRIBE", "news")
        .iter()
        .map(|e| {
            (
                e["response"]["type"].as_str().unwrap().to_string(),
                e["response"]["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    subscribe.sort();
    assert_eq!(
        subscribe,
        [
            (
                "array".to_string(),
                "[\"subscribe\", \"news\", 1], [\"subscribe\", \"weather\", 2]".to_string()
            ),
            (
                "push".to_string(),
                "[\"subscribe\", \"news\", 1]".to_string()
            ),
        ]
    );
    let pushes = find("PUSH", "news");
    let values: Vec<_> = pushes
        .iter()
        .map(|e| {
            (
                e["response"]["type"].as_str().unwrap(),
                e["response"]["value"].as_str().unwrap(),
            )
        })
        .collect();
    let mut want = Vec::new();
    for t in ["array", "push"] {
        for v in ["first", "second"] {
            want.push((t, format!("[\"message\", \"news\", \"{v}\"]")));
        }
    }
    let mut got: Vec<_> = values.iter().map(|(t, v)| (*t, v.to_string())).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(pushes.iter().all(|e| e["elapsed_us"].is_null()));
}
