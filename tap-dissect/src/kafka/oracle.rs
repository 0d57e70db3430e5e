//! Real Kafka client traffic, real oracle: kafka-python produces messages to
//! two topics and consumes them back from a small in-repo broker (see
//! `kafka_broker`; no Kafka broker installs from the registries used here),
//! captured by dumpcap. kubetap's requests (API key and correlation id) must
//! equal those tshark's Kafka dissector finds, per connection and in order,
//! and each must be paired with the response tshark pairs it with.
//!
//! Needs root, dumpcap, tshark and python3 with kafka-python (`cargo xtask
//! setup` installs them). Without them the test says why and skips, unless
//! KUBETAP_REQUIRE_PEERS=1 (set by `cargo xtask test`).

#[path = "broker.rs"]
mod kafka_broker;
#[path = "../../../tap-cli/tests/peers/mod.rs"]
mod peers;

use peers::{Capture, TempDir, run};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Per connection (the client's port): requests as (API key, correlation id), in order.
type Requests = BTreeMap<u16, Vec<(u32, i64)>>;

const CLIENT: &str = r#"
import sys
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
server = "127.0.0.1:" + sys.argv[1]
# Not idempotent: the test broker serves no InitProducerId.
p = KafkaProducer(bootstrap_servers=server, linger_ms=0, enable_idempotence=False)
for i in range(3):
    p.send("orders", b"order-%d" % i).get(timeout=10)
for i in range(2):
    p.send("audit", b"audit-%d" % i).get(timeout=10)
p.close()
c = KafkaConsumer("orders", "audit", bootstrap_servers=server, group_id="readers",
                  auto_offset_reset="earliest", enable_auto_commit=False)
# Poll until all five arrive: joining the group can take seconds on a loaded machine.
import time
got, deadline = [], time.time() + 60
while len(got) < 5 and time.time() < deadline:
    for batch in c.poll(timeout_ms=500).values():
        got.extend(m.value.decode() for m in batch)
got.sort()
c.commit()
c.close()
print(",".join(got))
"#;

/// tshark's requests per connection, and the correlation ids of the responses it read.
fn tshark_view(file: &Path, port: u16) -> (Requests, BTreeMap<u16, Vec<i64>>) {
    let rows = peers::tshark_fields(
        file,
        &["-d", &format!("tcp.port=={port},kafka")],
        "kafka",
        &[
            "tcp.srcport",
            "tcp.dstport",
            "kafka.request_key",
            "kafka.correlation_id",
        ],
    );
    let mut requests = Requests::new();
    let mut answered: BTreeMap<u16, Vec<i64>> = BTreeMap::new();
    for row in rows {
        let src: u16 = row[0][0].parse().unwrap();
        let ids = row[3].iter().map(|i| i.parse::<i64>().unwrap());
        if src == port {
            let client: u16 = row[1][0].parse().unwrap();
            answered.entry(client).or_default().extend(ids);
        } else {
            let keys = row[2].iter().map(|k| k.parse::<u32>().unwrap());
            requests.entry(src).or_default().extend(keys.zip(ids));
        }
    }
    (requests, answered)
}

#[test]
fn kafka_requests_match_tshark_on_real_traffic() {
    if !peers::require(&["python3"]) {
        return;
    }
    let have_client = Command::new("python3")
        .args(["-c", "import kafka"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_client {
        let why = "python3 cannot import kafka (cargo xtask setup installs kafka-python)";
        testkit::skip("real-peer test", why);
        return;
    }
    let dir = TempDir::new("kafka-oracle");
    let port = kafka_broker::start();
    let capture = Capture::start(dir.path("kafka.pcapng"), &format!("tcp port {port}"));
    let out = run(Command::new("python3").args(["-c", CLIENT, &port.to_string()]));
    let file = capture.stop();
    assert_eq!(
        String::from_utf8_lossy(&out).trim(),
        "audit-0,audit-1,order-0,order-1,order-2",
        "the client did not read back what it produced"
    );

    let (theirs, answered) = tshark_view(&file, port);
    let mut entries = peers::kubetap_entries(&file);
    entries.sort_by_key(|e| {
        let id = e["id"].as_str().unwrap().to_string();
        let (flow, n) = id.rsplit_once('-').unwrap();
        (flow.to_string(), n.parse::<u64>().unwrap())
    });
    let mut ours = Requests::new();
    let mut paired: BTreeMap<u16, Vec<i64>> = BTreeMap::new();
    for e in &entries {
        assert_eq!(e["protocol"], "kafka", "{e}");
        let client = e["src"]["port"].as_u64().unwrap() as u16;
        let req = &e["request"];
        let id = req["correlation_id"].as_i64().unwrap();
        ours.entry(client)
            .or_default()
            .push((req["api_key"].as_u64().unwrap() as u32, id));
        // Every request was answered, by the response with its correlation id.
        assert_eq!(e["response"]["correlation_id"].as_i64(), Some(id), "{e}");
        // The broker turns down ApiVersions newer than it serves (35,
        // UNSUPPORTED_VERSION), and the client asks again with an older one.
        let status = e["response"]["status"].as_i64().unwrap();
        let api = req["api_name"].as_str().unwrap();
        assert!(status == 0 || (api == "ApiVersions" && status == 35), "{e}");
        paired.entry(client).or_default().push(id);
    }
    let count = |r: &Requests| r.values().map(Vec::len).sum::<usize>();
    assert!(count(&theirs) >= 8, "too few requests captured: {theirs:?}");
    assert_eq!(ours, theirs, "requests per connection");
    let mut answered = answered;
    for ids in paired.values_mut().chain(answered.values_mut()) {
        ids.sort_unstable();
    }
    assert_eq!(paired, answered, "responses per connection");

    // The generic fields: the API's name, the first topic, record counts.
    let produced: u64 = entries
        .iter()
        .filter(|e| e["request"]["method"] == "Produce")
        .map(|e| {
            e["request"]["topics"][0]["partitions"][0]["record_count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(produced, 5);
    let topics: Vec<&str> = entries
        .iter()
        .filter(|e| e["request"]["method"] == "Produce")
        .map(|e| e["request"]["path"].as_str().unwrap())
        .collect();
    assert!(
        topics.contains(&"orders") && topics.contains(&"audit"),
        "{topics:?}"
    );
    let fetched: u64 = entries
        .iter()
        .filter(|e| e["request"]["method"] == "Fetch")
        .flat_map(|e| e["response"]["topics"].as_array().unwrap().iter())
        .flat_map(|t| t["partitions"].as_array().unwrap().iter())
        .map(|p| p["record_count"].as_u64().unwrap())
        .sum();
    assert!(fetched >= 5, "records fetched: {fetched}");

    // The consumer group's requests name the group; every body read here parsed.
    for api in ["FindCoordinator", "JoinGroup", "SyncGroup", "OffsetCommit"] {
        let of_api: Vec<_> = entries
            .iter()
            .filter(|e| e["request"]["method"] == api)
            .collect();
        assert!(!of_api.is_empty(), "no {api} request");
        for e in of_api {
            assert_eq!(e["request"]["group_id"], "readers", "{e}");
        }
    }
    // kafka-python 3 joins with the flexible versions (JoinGroup v7,
    // SyncGroup v5: compact strings, tagged fields), which the broker serves.
    for (api, version) in [("JoinGroup", 7), ("SyncGroup", 5)] {
        assert!(
            entries
                .iter()
                .any(|e| e["request"]["method"] == api && e["request"]["api_version"] == version),
            "no {api} v{version} request"
        );
    }
    let committed: Vec<&str> = entries
        .iter()
        .filter(|e| e["request"]["method"] == "OffsetCommit")
        .flat_map(|e| e["request"]["topics"].as_array().unwrap().iter())
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        committed.contains(&"orders") && committed.contains(&"audit"),
        "{committed:?}"
    );
    let decoded = [
        "Produce",
        "Fetch",
        "Metadata",
        "ApiVersions",
        "FindCoordinator",
        "JoinGroup",
        "SyncGroup",
        "Heartbeat",
        "LeaveGroup",
        "OffsetCommit",
    ];
    for e in &entries {
        if decoded.contains(&e["request"]["method"].as_str().unwrap()) {
            assert_eq!(e["request"]["body_decoded"], true, "{e}");
            assert_eq!(e["response"]["body_decoded"], true, "{e}");
        }
    }
}
