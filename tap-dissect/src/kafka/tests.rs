//! The kafka dissector's unit tests.

use super::*;
use crate::GenericFields;
use crate::testing::{Ev, Out, drive, flow};
use proto::v1::Entry;

const C: Direction = Direction::ToServer;
const S: Direction = Direction::ToClient;

/// Builds wire bytes: big-endian integers, Kafka strings, arrays and frames.
#[derive(Default, Clone)]
struct W(Vec<u8>);

impl W {
    fn i8(mut self, v: i8) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i16(mut self, v: i16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str(self, s: &str) -> Self {
        let mut w = self.i16(s.len() as i16);
        w.0.extend_from_slice(s.as_bytes());
        w
    }
    /// A compact (flexible) string.
    fn cstr(mut self, s: &str) -> Self {
        self.0.push(s.len() as u8 + 1);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    /// A request header (v1): key, version, correlation id, client id.
    fn request(key: i16, version: i16, id: i32) -> Self {
        W::default().i16(key).i16(version).i32(id).str("tester")
    }
    /// The message with its length prefix.
    fn frame(self) -> Vec<u8> {
        let mut out = (self.0.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&self.0);
        out
    }
}

/// A record batch (magic 2) announcing `count` records.
fn batch(count: i32) -> Vec<u8> {
    let mut b = W::default()
        .i64(0)
        .i32(49)
        .i32(0)
        .i8(2)
        .i32(0)
        .i16(0)
        .i32(count - 1)
        .i64(0)
        .i64(0)
        .i64(-1)
        .i16(-1)
        .i32(-1)
        .i32(count)
        .0;
    b.resize(61, 0);
    b
}

fn produce_request(id: i32, topics: &[(&str, &[(i32, i32)])]) -> Vec<u8> {
    let mut w = W::request(0, 7, id).i16(-1).i16(1).i32(1000);
    w = w.i32(topics.len() as i32);
    for (name, parts) in topics {
        w = w.str(name).i32(parts.len() as i32);
        for &(index, batches) in *parts {
            let mut records = Vec::new();
            for _ in 0..batches {
                records.extend_from_slice(&batch(3));
            }
            w = w.i32(index).i32(records.len() as i32).raw(&records);
        }
    }
    w.frame()
}

fn produce_response(id: i32, topic: &str, error: i16) -> Vec<u8> {
    W::default()
        .i32(id)
        .i32(1)
        .str(topic)
        .i32(1)
        .i32(0)
        .i16(error)
        .i64(42)
        .i64(-1)
        .i64(0)
        .i32(0)
        .frame()
}

/// ApiVersions v3: a flexible request header (tagged fields) and compact body.
fn api_versions_request(id: i32) -> Vec<u8> {
    W::request(18, 3, id)
        .raw(&[0])
        .cstr("kafka-python")
        .cstr("2.2")
        .raw(&[0])
        .frame()
}

/// ApiVersions responses keep a v0 header (no tagged fields) in every version.
fn api_versions_response(id: i32, error: i16) -> Vec<u8> {
    W::default()
        .i32(id)
        .i16(error)
        .raw(&[1])
        .i32(0)
        .raw(&[0])
        .frame()
}

fn metadata_request(id: i32, topics: &[&str]) -> Vec<u8> {
    let mut w = W::request(3, 1, id).i32(topics.len() as i32);
    for t in topics {
        w = w.str(t);
    }
    w.frame()
}

fn metadata_response(id: i32, topic: &str, error: i16) -> Vec<u8> {
    W::default()
        .i32(id)
        .i32(1)
        .i32(0)
        .str("127.0.0.1")
        .i32(9092)
        .i16(-1)
        .i32(0)
        .i32(1)
        .i16(error)
        .str(topic)
        .i8(0)
        .i32(1)
        .i16(0)
        .i32(0)
        .i32(0)
        .i32(1)
        .i32(0)
        .i32(1)
        .i32(0)
        .frame()
}

fn fetch_response(id: i32, topic: &str, batches: usize) -> Vec<u8> {
    let mut records = Vec::new();
    for _ in 0..batches {
        records.extend_from_slice(&batch(2));
    }
    W::default()
        .i32(id)
        .i32(0)
        .i32(1)
        .str(topic)
        .i32(1)
        .i32(0)
        .i16(0)
        .i64(10)
        .i64(10)
        .i32(-1)
        .i32(records.len() as i32)
        .raw(&records)
        .frame()
}

fn run_with(events: &[Ev], config: &DissectConfig, bytewise: bool) -> Out {
    let flow = flow(3, 9092, false);
    let out = Out::collect(
        "kafka",
        drive(new(&flow, config, None), &flow, events, bytewise),
    );
    for (i, e) in out.entries.iter().enumerate() {
        assert_eq!(e.id, format!("{:016x}-{i}", 3));
        assert_eq!(e.protocol, Protocol::Kafka as i32);
    }
    out
}

/// Runs whole and byte by byte; both must see the same.
fn run(events: &[Ev]) -> Out {
    let whole = run_with(events, &DissectConfig::default(), false);
    let bytewise = run_with(events, &DissectConfig::default(), true);
    assert_eq!(summary(&whole), summary(&bytewise), "byte-by-byte differs");
    assert_eq!(whole.errors, bytewise.errors);
    whole
}

/// Per entry: method, path, correlation ids, status, flags.
fn summary(out: &Out) -> Vec<String> {
    out.entries.iter().map(line).collect()
}

fn line(e: &Entry) -> String {
    let id = |r: Option<i32>| r.map_or("-".to_string(), |i| i.to_string());
    let req = match e.request.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(request::Kind::Kafka(r)) => Some(r),
        _ => None,
    };
    let resp = match e.response.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(response::Kind::Kafka(r)) => Some(r),
        _ => None,
    };
    let records: u64 = req
        .map(|r| &r.topics)
        .into_iter()
        .chain(resp.map(|r| &r.topics))
        .flatten()
        .flat_map(|t| &t.partitions)
        .map(|p| p.record_count)
        .sum();
    format!(
        "{} {} {}>{} status={} records={records} {}",
        e.method().unwrap_or("-"),
        e.path().unwrap_or("-"),
        id(req.map(|r| r.correlation_id)),
        id(resp.map(|r| r.correlation_id)),
        e.status().map_or("-".to_string(), |s| s.to_string()),
        e.flags.join(",")
    )
}

/// A table row: name, requests, their responses (sent alternately), entries wanted.
type Case = (
    &'static str,
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
    &'static [&'static str],
);

#[test]
fn conversations() {
    let cases: &[Case] = &[
        (
            "produce to two topics, records counted",
            vec![produce_request(
                1,
                &[("orders", &[(0, 2), (1, 1)]), ("audit", &[(0, 1)])],
            )],
            vec![produce_response(1, "orders", 0)],
            &["Produce orders 1>1 status=0 records=12 "],
        ),
        (
            "a partition's error is the status",
            vec![produce_request(2, &[("orders", &[(0, 1)])])],
            vec![produce_response(2, "orders", 6)],
            &["Produce orders 2>2 status=6 records=3 "],
        ),
        (
            "flexible header with tagged fields; ApiVersions response keeps header v0",
            vec![api_versions_request(0)],
            vec![api_versions_response(0, 35)],
            &["ApiVersions  0>0 status=35 records=0 "],
        ),
        (
            "metadata topics and their errors",
            vec![metadata_request(5, &["orders", "audit"])],
            vec![metadata_response(5, "orders", 3)],
            &["Metadata orders 5>5 status=3 records=0 "],
        ),
        (
            "fetch response records counted",
            vec![
                W::request(1, 4, 9)
                    .i32(-1)
                    .i32(500)
                    .i32(1)
                    .i32(1 << 20)
                    .i8(0)
                    .i32(1)
                    .str("orders")
                    .i32(1)
                    .i32(0)
                    .i64(0)
                    .i64(0)
                    .i32(1 << 20)
                    .frame(),
            ],
            vec![fetch_response(9, "orders", 3)],
            &["Fetch orders 9>9 status=0 records=6 "],
        ),
        (
            "unknown api key: header only, still paired",
            vec![W::request(999, 0, 4).raw(b"opaque").frame()],
            vec![W::default().i32(4).raw(b"reply").frame()],
            &["Unknown  4>4 status=0 records=0 "],
        ),
        (
            "a response nobody asked for, a request never answered",
            vec![metadata_request(7, &[])],
            vec![produce_response(8, "x", 0)],
            &[
                "- - ->8 status=0 records=0 no_request",
                "Metadata  7>- status=- records=0 no_response",
            ],
        ),
    ];
    for (name, reqs, resps, want) in cases {
        let mut events = Vec::new();
        for (q, p) in reqs.iter().zip(resps) {
            events.push(Ev::Data(C, q));
            events.push(Ev::Data(S, p));
        }
        let out = run(&events);
        assert!(out.errors.is_empty(), "{name}: {:?}", out.errors);
        assert_eq!(summary(&out), *want, "{name}");
    }
}

#[test]
fn out_of_order_responses_pair_by_correlation_id() {
    let (a, b, c) = (
        metadata_request(10, &["a"]),
        metadata_request(11, &["b"]),
        produce_request(12, &[("c", &[(0, 1)])]),
    );
    let (rb, rc, ra) = (
        metadata_response(11, "b", 0),
        produce_response(12, "c", 0),
        metadata_response(10, "a", 5),
    );
    let out = run(&[
        Ev::Data(C, &a),
        Ev::Data(C, &b),
        Ev::Data(C, &c),
        Ev::Data(S, &rb),
        Ev::Data(S, &rc),
        Ev::Data(S, &ra),
    ]);
    assert_eq!(
        summary(&out),
        [
            "Metadata b 11>11 status=0 records=0 ",
            "Produce c 12>12 status=0 records=3 ",
            "Metadata a 10>10 status=5 records=0 ",
        ]
    );
}

#[test]
fn messages_split_across_segments() {
    let q = produce_request(1, &[("orders", &[(0, 4)])]);
    let p = produce_response(1, "orders", 0);
    let (q1, q2) = q.split_at(3);
    let (q2, q3) = q2.split_at(20);
    let (p1, p2) = p.split_at(6);
    let out = run(&[
        Ev::Data(C, q1),
        Ev::Data(C, q2),
        Ev::Data(C, q3),
        Ev::Data(S, p1),
        Ev::Data(S, p2),
    ]);
    assert_eq!(summary(&out), ["Produce orders 1>1 status=0 records=12 "]);
    assert_eq!(out.entries[0].request_size, q.len() as u64);
}

#[test]
fn lengths_out_of_bounds_are_errors_and_never_allocated() {
    for prefix in [
        [0xff, 0xff, 0xff, 0xff],
        [0x80, 0, 0, 0],
        ((MAX_MESSAGE + 1) as u32).to_be_bytes(),
    ] {
        // A 4 GiB claim (read as -1), a negative one, one just past the limit;
        // the next real request is found again after them.
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&metadata_request(3, &["t"]));
        let p = metadata_response(3, "t", 0);
        let out = run_with(
            &[Ev::Data(C, &bytes), Ev::Data(S, &p)],
            &DissectConfig::default(),
            true,
        );
        assert_eq!(
            summary(&out),
            ["Metadata t 3>3 status=0 records=0 "],
            "{prefix:?}"
        );
        let out = run(&[Ev::Data(C, &bytes), Ev::Data(S, &p)]);
        assert_eq!(out.errors.len(), 1, "{prefix:?}");
        assert!(out.errors[0].contains("out of bounds"), "{:?}", out.errors);
        assert_eq!(summary(&out), ["Metadata t 3>3 status=0 records=0 "]);
    }
}

#[test]
fn messages_too_short_for_their_header_are_errors() {
    // A two-byte request and a two-byte response: framed, but no header fits.
    let short = [0, 0, 0, 2, 0, 3];
    let q = metadata_request(4, &["t"]);
    let p = metadata_response(4, "t", 0);
    let out = run(&[
        Ev::Data(C, &short),
        Ev::Data(C, &q),
        Ev::Data(S, &short),
        Ev::Data(S, &p),
    ]);
    assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
    assert_eq!(summary(&out), ["Metadata t 4>4 status=0 records=0 "]);
}

#[test]
fn garbage_is_skipped_in_one_error() {
    let mut bytes = vec![0xff; 100_000];
    bytes.extend_from_slice(&metadata_request(6, &["t"]));
    bytes.extend_from_slice(&[0x80; 1000]);
    bytes.extend_from_slice(&metadata_request(7, &["u"]));
    let (p, r) = (metadata_response(6, "t", 0), metadata_response(7, "u", 0));
    let out = run_with(
        &[Ev::Data(C, &bytes), Ev::Data(S, &p), Ev::Data(S, &r)],
        &DissectConfig::default(),
        false,
    );
    assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
    assert_eq!(
        summary(&out),
        [
            "Metadata t 6>6 status=0 records=0 ",
            "Metadata u 7>7 status=0 records=0 "
        ]
    );
}

#[test]
fn body_beyond_the_cap_is_counted_not_kept() {
    let config = DissectConfig {
        max_body: 64,
        max_head: 16,
        ..DissectConfig::default()
    };
    let q = produce_request(1, &[("orders", &[(0, 8)])]);
    let p = produce_response(1, "orders", 0);
    let out = run_with(&[Ev::Data(C, &q), Ev::Data(S, &p)], &config, false);
    assert_eq!(out.entries.len(), 1);
    let e = &out.entries[0];
    assert_eq!(e.request_size, q.len() as u64);
    assert!(e.flags.contains(&"truncated".to_string()), "{:?}", e.flags);
    assert_eq!(e.method(), Some("Produce"));
    assert_eq!(e.status(), Some(0));
}

#[test]
fn gap_inside_a_body_keeps_framing() {
    let q = produce_request(1, &[("orders", &[(0, 2)])]);
    let p = produce_response(1, "orders", 0);
    let cut = q.len() - 30;
    let out = run(&[Ev::Data(C, &q[..cut]), Ev::Gap(C, 30), Ev::Data(S, &p)]);
    assert_eq!(out.entries.len(), 1);
    assert!(out.entries[0].response.is_some());
    assert!(out.entries[0].flags.contains(&"truncated".to_string()));
}

#[test]
fn probe_claims_requests_by_content() {
    let cases: &[(&str, Vec<u8>, Claim)] = &[
        ("metadata request", metadata_request(1, &["t"]), Claim::Yes),
        ("flexible api versions", api_versions_request(0), Claim::Yes),
        (
            "too short to tell",
            metadata_request(1, &[])[..6].to_vec(),
            Claim::NeedMore,
        ),
        ("unknown api key", W::request(999, 0, 1).frame(), Claim::No),
        (
            "version past the api's",
            W::request(3, 99, 1).frame(),
            Claim::No,
        ),
        (
            "4 GiB length",
            [&[0xff; 4][..], &metadata_request(1, &[])[4..]].concat(),
            Claim::No,
        ),
        (
            "client id longer than the message",
            W::default().i16(3).i16(1).i32(1).i16(200).frame(),
            Claim::No,
        ),
        (
            "http",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Claim::No,
        ),
        ("redis", b"*1\r\n$4\r\nPING\r\n".to_vec(), Claim::No),
    ];
    for (name, bytes, want) in cases {
        assert_eq!(probe(C, bytes, false), *want, "{name}");
    }
    assert_eq!(probe(S, &metadata_request(1, &[]), false), Claim::No);
}

/// Entries (as `line`s) of a connection picked up mid-way, run through
/// detection as the pipeline runs it.
fn midstream(events: &[Ev]) -> (Vec<Protocol>, Vec<String>) {
    use crate::flow::FlowHandler;
    let f = flow(3, 9092, true);
    let mut conn = crate::Connection::new(std::sync::Arc::new(DissectConfig::default()));
    let mut out = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let ts = 1_000 * (i as u64 + 1);
        match ev {
            Ev::Data(dir, b) => conn.on_data(&f, *dir, ts, b, &mut out),
            Ev::Gap(dir, n) => conn.on_gap(&f, *dir, ts, *n, &mut out),
        }
    }
    conn.on_close(&f, &crate::testing::fin(1_000_000), &mut out);
    let entries: Vec<&Entry> = out
        .iter()
        .filter_map(|e| match e {
            Emit::Entry(e) => Some(&**e),
            _ => None,
        })
        .collect();
    (
        entries
            .iter()
            .map(|e| Protocol::try_from(e.protocol).unwrap())
            .collect(),
        entries.iter().map(|e| line(e)).collect(),
    )
}

/// The capture started after a request was sent: its response comes first,
/// then the client goes on. The response is a response-only Kafka entry.
#[test]
fn a_response_to_a_request_before_the_capture_is_a_response_only_entry() {
    let (protocols, lines) = midstream(&[
        Ev::Data(S, &produce_response(41, "orders", 0)),
        Ev::Data(C, &metadata_request(42, &["orders"])),
        Ev::Data(S, &metadata_response(42, "orders", 0)),
    ]);
    assert_eq!(protocols, [Protocol::Kafka, Protocol::Kafka]);
    assert_eq!(
        lines,
        [
            "- - ->41 status=0 records=0 midstream,no_request",
            "Metadata orders 42>42 status=0 records=0 midstream",
        ]
    );
}

/// Only responses seen (the client's requests were all sent before the
/// capture, or the capture sees one direction): consecutive responses with
/// rising correlation ids, one frame after the next, are Kafka.
#[test]
fn a_connection_seen_only_as_responses_is_kafka() {
    let (protocols, lines) = midstream(&[
        Ev::Data(S, &fetch_response(7, "orders", 1)),
        Ev::Data(S, &fetch_response(8, "orders", 2)),
    ]);
    assert_eq!(protocols, [Protocol::Kafka, Protocol::Kafka], "{lines:?}");
    assert!(lines.iter().all(|l| l.ends_with("no_request")), "{lines:?}");
}

/// What the server-side probe must not take: one frame alone, ids that
/// fall or leap, frames that do not follow each other exactly.
#[test]
fn the_response_probe_wants_a_chain_of_responses() {
    let two = |a: i32, b: i32| [produce_response(a, "t", 0), produce_response(b, "t", 0)].concat();
    let cases: &[(&str, Vec<u8>, bool, Claim)] = &[
        ("two rising", two(7, 8), true, Claim::Yes),
        (
            "two rising, seen from the start",
            two(7, 8),
            false,
            Claim::No,
        ),
        (
            "one response",
            produce_response(7, "t", 0),
            true,
            Claim::NeedMore,
        ),
        ("falling ids", two(8, 7), true, Claim::No),
        ("a leap", two(7, 100_000), true, Claim::No),
        ("negative id", two(-5, -4), true, Claim::No),
        (
            "the first length two bytes off",
            {
                let mut b = two(7, 8);
                b[3] = b[3].wrapping_add(2);
                b
            },
            true,
            Claim::No,
        ),
        (
            "http",
            b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n\r\n".to_vec(),
            true,
            Claim::No,
        ),
    ];
    for (name, bytes, midstream, want) in cases {
        assert_eq!(probe(S, bytes, *midstream), *want, "{name}");
    }
}
