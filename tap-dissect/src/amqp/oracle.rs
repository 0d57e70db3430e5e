//! Real AMQP 0-9-1 traffic, real oracle: a RabbitMQ broker of its own (Debian's
//! rabbitmq-server, its node, database and logs in a temporary directory, on
//! free loopback ports, with an epmd of its own), driven by amqp-tools
//! (amqp-declare-queue, amqp-publish, amqp-consume acking each message,
//! amqp-get with a message and on an empty queue), captured by dumpcap. Per
//! connection, channel and sender, and in order, the methods kubetap finds
//! must equal those tshark's AMQP dissector finds; the publishes' routing
//! keys and bodies must be those sent.
//!
//! Needs root, dumpcap, tshark, rabbitmq-server and amqp-tools (`cargo xtask
//! setup` installs them). Without them the test says why and skips, unless
//! KUBETAP_REQUIRE_PEERS=1 (set by `cargo xtask test`).

#[path = "../../../tap-cli/tests/peers/mod.rs"]
mod peers;

use peers::{Capture, Peer, TempDir, free_port, run};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Per connection (the client's port), channel and sender, in order.
type Methods = BTreeMap<Key, Vec<String>>;
/// A connection (the client's port), a channel and a sender.
type Key = (u16, u64, String);

/// The methods this test's clients use, by class and method id, as kubetap names them.
const NAMES: &[(u64, u64, &str)] = &[
    (10, 10, "connection.start"),
    (10, 11, "connection.start-ok"),
    (10, 30, "connection.tune"),
    (10, 31, "connection.tune-ok"),
    (10, 40, "connection.open"),
    (10, 41, "connection.open-ok"),
    (10, 50, "connection.close"),
    (10, 51, "connection.close-ok"),
    (20, 10, "channel.open"),
    (20, 11, "channel.open-ok"),
    (20, 40, "channel.close"),
    (20, 41, "channel.close-ok"),
    (50, 10, "queue.declare"),
    (50, 11, "queue.declare-ok"),
    (60, 10, "basic.qos"),
    (60, 11, "basic.qos-ok"),
    (60, 20, "basic.consume"),
    (60, 21, "basic.consume-ok"),
    (60, 30, "basic.cancel"),
    (60, 31, "basic.cancel-ok"),
    (60, 40, "basic.publish"),
    (60, 60, "basic.deliver"),
    (60, 70, "basic.get"),
    (60, 71, "basic.get-ok"),
    (60, 72, "basic.get-empty"),
    (60, 80, "basic.ack"),
];

/// The broker: its node stopped, and the epmd it started, when dropped.
struct Broker {
    script: Peer,
    pid_file: std::path::PathBuf,
    epmd_port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let pid = pid.trim().to_string();
            let _ = Command::new("kill")
                .args(["-TERM", &pid])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("kill")
                .args(["-KILL", &pid])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("epmd")
            .args(["-port", &self.epmd_port.to_string(), "-kill"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.script.child().kill();
        let _ = self.script.child().wait();
    }
}

fn start_broker(dir: &TempDir, port: u16) -> Broker {
    // Debian's rabbitmq-server drops from root to the rabbitmq user.
    let home = dir.path("rabbitmq");
    std::fs::create_dir(&home).unwrap();
    run(Command::new("chown").arg("rabbitmq:").arg(&home));
    let epmd_port = free_port();
    let pid_file = home.join("rabbit.pid");
    let mut cmd = Command::new("rabbitmq-server");
    cmd.env("HOME", &home)
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", free_port().to_string())
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .env("RABBITMQ_NODENAME", "kubetaptest@localhost")
        .env("RABBITMQ_MNESIA_BASE", home.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", home.join("log"))
        .env("RABBITMQ_PID_FILE", &pid_file)
        .env(
            "RABBITMQ_ENABLED_PLUGINS_FILE",
            home.join("enabled_plugins"),
        )
        .env("RABBITMQ_CONFIG_FILE", home.join("rabbitmq"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir(&home);
    let broker = Broker {
        script: Peer::spawn(&mut cmd),
        pid_file,
        epmd_port,
    };
    // The broker boots in seconds but can take longer than a peer's usual 20.
    testkit::assert_eventually!(
        Duration::from_secs(90),
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "rabbitmq-server listening on {port}"
    );
    broker
}

/// tshark's view: every method frame, per connection, channel and sender.
fn tshark(file: &Path, port: u16) -> Methods {
    let rows = peers::tshark_fields(
        file,
        &["-d", &format!("tcp.port=={port},amqp")],
        "amqp",
        &[
            "tcp.srcport",
            "tcp.dstport",
            "amqp.type",
            "amqp.channel",
            "amqp.method.class",
            "amqp.method.method",
        ],
    );
    let mut m = Methods::new();
    for row in rows {
        let one = |i: usize| row[i][0].parse::<u64>().unwrap();
        let (src, dst) = (one(0), one(1));
        let (client, sender) = if dst == u64::from(port) {
            (src, "client")
        } else {
            (dst, "server")
        };
        // A packet's frames: channels line up with types; classes and
        // methods only with the method frames among them.
        let mut classes = row[4].iter().zip(&row[5]);
        for (ty, channel) in row[2].iter().zip(&row[3]) {
            if ty != "1" {
                continue;
            }
            let (class, method) = classes.next().expect("a method frame without class");
            let (class, method): (u64, u64) = (class.parse().unwrap(), method.parse().unwrap());
            let name = NAMES
                .iter()
                .find(|n| n.0 == class && n.1 == method)
                .map_or(format!("{class}.{method}"), |n| n.2.to_string());
            m.entry((client as u16, channel.parse().unwrap(), sender.into()))
                .or_default()
                .push(name);
        }
    }
    m
}

/// An entry's `ts` (`2026-11-24T19:36:50.123456789Z`) as nanoseconds since the
/// start of its month: enough to order one test's packets.
fn ts_ns(e: &Value) -> u128 {
    let t = e["ts"].as_str().unwrap();
    let num = |r: std::ops::Range<usize>| t[r].parse::<u128>().unwrap();
    let secs = ((num(8..10) * 24 + num(11..13)) * 60 + num(14..16)) * 60 + num(17..19);
    secs * 1_000_000_000 + num(20..29)
}

/// kubetap's view: both sides of every entry, ordered by when each was sent.
/// Per connection, channel and sender, kubetap's methods in wire order, each
/// with its time in µs (a reply's time is known to the µs only, from
/// `elapsed_us`).
fn ours(entries: &[Value]) -> BTreeMap<Key, Vec<(u128, String)>> {
    let mut sent: Vec<(u128, usize, Key, String)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["protocol"], "amqp", "{e}");
        let client = e["src"]["port"].as_u64().unwrap() as u16;
        let start = ts_ns(e);
        let (first, second) = (&e["request"], &e["response"]);
        let both = [
            (first, start),
            (
                second,
                start + u128::from(e["elapsed_us"].as_u64().unwrap_or(0)) * 1000,
            ),
        ];
        for (m, ts) in both {
            if !m.is_object() {
                continue;
            }
            let key = (
                client,
                m["channel"].as_u64().unwrap(),
                m["sender"].as_str().unwrap().to_string(),
            );
            sent.push((ts, i, key, m["method"].as_str().unwrap().to_string()));
        }
    }
    // Within one µs, the order the entries were made in (which follows the wire) decides.
    sent.sort_by_key(|s| (s.0 / 1000, s.1));
    let mut m: BTreeMap<Key, Vec<(u128, String)>> = BTreeMap::new();
    for (ts, _, key, name) in sent {
        m.entry(key).or_default().push((ts / 1000, name));
    }
    m
}

/// `ours` aligned with tshark's order where the JSON cannot tell: two
/// neighbours less than 2 µs apart (one of them a reply, whose time is cut
/// to the µs) may be in either order, so they are swapped when that is what
/// tshark saw. Anything else must match as it is.
fn aligned(ours: BTreeMap<Key, Vec<(u128, String)>>, theirs: &Methods) -> Methods {
    ours.into_iter()
        .map(|(key, mut seq)| {
            if let Some(want) = theirs.get(&key) {
                for i in 0..seq.len().saturating_sub(1) {
                    let close = seq[i + 1].0.abs_diff(seq[i].0) <= 1;
                    if close
                        && want.get(i) == Some(&seq[i + 1].1)
                        && want.get(i + 1) == Some(&seq[i].1)
                    {
                        seq.swap(i, i + 1);
                    }
                }
            }
            (key, seq.into_iter().map(|(_, name)| name).collect())
        })
        .collect()
}

#[test]
fn amqp_methods_match_tshark_on_real_traffic() {
    if !peers::require(&[
        "rabbitmq-server",
        "epmd",
        "amqp-publish",
        "amqp-consume",
        "amqp-get",
        "amqp-declare-queue",
    ]) {
        return;
    }
    let dir = TempDir::new("amqp-oracle");
    let port = free_port();
    let broker = start_broker(&dir, port);
    let capture = Capture::start(dir.path("amqp.pcapng"), &format!("tcp port {port}"));
    let url = format!("amqp://guest:guest@127.0.0.1:{port}");
    let amqp = |tool: &str, args: &[&str]| {
        let mut cmd = Command::new(tool);
        cmd.args(["--url", &url]).args(args);
        cmd
    };

    run(&mut amqp("amqp-declare-queue", &["-q", "jobs"]));
    let bodies = ["first job", "second job", "third job", "fourth job"];
    for body in bodies {
        run(&mut amqp(
            "amqp-publish",
            &["-r", "jobs", "-C", "text/plain", "-b", body],
        ));
    }
    // Three deliveries, each acked after `cat` read it.
    run(&mut amqp(
        "amqp-consume",
        &["-q", "jobs", "-c", "3", "-p", "1", "cat"],
    ));
    run(&mut amqp("amqp-get", &["-q", "jobs"]));
    // The queue is empty now: a basic.get-empty, and amqp-get says so.
    let empty = amqp("amqp-get", &["-q", "jobs"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!empty.success(), "amqp-get on an empty queue");

    let file = capture.stop();
    drop(broker);

    let theirs = tshark(&file, port);
    let entries = peers::kubetap_entries(&file);
    let ours = aligned(ours(&entries), &theirs);
    let all: Vec<&String> = theirs.values().flatten().collect();
    for needed in [
        "queue.declare",
        "basic.publish",
        "basic.consume",
        "basic.deliver",
        "basic.ack",
        "basic.get-ok",
        "basic.get-empty",
    ] {
        assert!(all.iter().any(|n| *n == needed), "tshark saw no {needed}");
    }
    assert_eq!(ours, theirs, "methods per connection, channel and sender");

    let published: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| &e["request"])
        .filter(|r| r["method"] == "basic.publish")
        .map(|r| {
            (
                r["routing_key"].as_str().unwrap(),
                r["body"].as_str().unwrap(),
            )
        })
        .collect();
    let sent: Vec<(&str, &str)> = bodies.iter().map(|b| ("jobs", *b)).collect();
    assert_eq!(published, sent);
    for e in &entries {
        let r = if e["request"].is_object() {
            &e["request"]
        } else {
            &e["response"]
        };
        if r["method"] == "basic.publish" {
            assert_eq!(r["properties"]["content-type"], "text/plain", "{e}");
        }
        let delivered = ["basic.deliver", "basic.get-ok"].contains(&r["method"].as_str().unwrap());
        if delivered {
            assert!(bodies.contains(&r["body"].as_str().unwrap()), "{e}");
        }
        // The broker answered every synchronous method.
        assert!(
            !e["flags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "no_response"),
            "{e}"
        );
        assert!(
            !format!("{e}").contains("\\u0000guest"),
            "credentials kept: {e}"
        );
    }
}
