//! The offline pipeline on hand-built TCP conversations: how reassembly copes
//! with reordering, retransmission, loss, mid-stream starts, sequence wrap and
//! IP fragments; which link layers decode; and how HTTP/1 framing becomes
//! entries. Each test asserts the entries a user would see.

use etherparse::{EtherType, IpFragOffset, Ipv4Header};
use proptest::prelude::*;
use proto::v1::Header;
use std::io::Write as _;
use tap_worker::capture::link;
use tap_worker::{Pipeline, PipelineConfig};
use testkit::conversation::{
    Conversation, Exchange, Frame, Link, Peer, ethernet, http_request, http_response, ip_packet,
    run,
};

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: curl/8.5.0\r\n\r\n")
        .into_bytes()
}

/// A 200 response with a Content-Length body.
fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip into memory");
    e.finish().expect("gzip into memory")
}

/// Splits an IPv4 datagram into fragments whose payloads start at `cuts`
/// (byte offsets into the IP payload, multiples of 8), each in an Ethernet frame.
fn ipv4_fragments(ip: &[u8], cuts: &[usize], from: Peer) -> Vec<Vec<u8>> {
    let (header, rest) = Ipv4Header::from_slice(ip).expect("an IPv4 datagram");
    let payload = &rest[..usize::from(header.total_len) - header.header_len()];
    let bounds: Vec<usize> = std::iter::once(0)
        .chain(cuts.iter().copied())
        .chain(std::iter::once(payload.len()))
        .collect();
    bounds
        .windows(2)
        .map(|w| {
            let (start, end) = (w[0], w[1]);
            assert_eq!(start % 8, 0, "fragment offsets are in units of 8 bytes");
            let mut h = header.clone();
            h.identification = 0x4242;
            h.dont_fragment = false;
            h.more_fragments = end < payload.len();
            h.fragment_offset = IpFragOffset::try_new((start / 8) as u16).expect("offset");
            h.set_payload_len(end - start).expect("fragment length");
            h.header_checksum = h.calc_header_checksum();
            let datagram = [&h.to_bytes()[..], &payload[start..end]].concat();
            ethernet(from, EtherType::IPV4, &datagram)
        })
        .collect()
}

/// One row of a table test: the messages sent in order, then a close.
struct Case {
    name: &'static str,
    messages: Vec<(Peer, Vec<u8>)>,
    closes_first: Peer,
    expect: Vec<Exchange>,
}

fn case(name: &'static str, messages: Vec<(Peer, &[u8])>, expect: Vec<Exchange>) -> Case {
    Case {
        name,
        messages: messages.into_iter().map(|(p, m)| (p, m.to_vec())).collect(),
        closes_first: Peer::Client,
        expect,
    }
}

/// Runs every case and reports all the rows that differ at once.
fn check_cases(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in cases {
        let mut conv = Conversation::open();
        for (peer, msg) in &c.messages {
            conv.send(*peer, msg);
        }
        conv.close(c.closes_first);
        let got = run(&conv.frames(Link::Ethernet)).exchanges();
        if got != c.expect {
            failures.push(format!(
                "{}:\n  expected {:?}\n  got      {:?}",
                c.name, c.expect, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// How one message is cut and shuffled in the property test.
#[derive(Debug, Clone)]
struct Delivery {
    sizes: Vec<usize>,
    /// Sort keys: segment `i` is sent in the order of `keys[i % len]`.
    keys: Vec<u8>,
    /// Segment `i` is sent twice when `repeat[i % len]`.
    repeat: Vec<bool>,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (
        prop::collection::vec(1usize..90, 0..12),
        prop::collection::vec(any::<u8>(), 1..12),
        prop::collection::vec(prop::bool::weighted(0.15), 1..12),
    )
        .prop_map(|(sizes, keys, repeat)| Delivery {
            sizes,
            keys,
            repeat,
        })
}

/// Initial sequence numbers, often close enough to 2^32 for the data to wrap.
fn isn() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (u32::MAX - 1500)..=u32::MAX]
}

/// Sends `data` cut and reordered within its own burst: every segment of a
/// burst acknowledges the same peer bytes, all sent before it.
fn deliver(c: &mut Conversation, from: Peer, data: &[u8], d: &Delivery) {
    let mut sizes = Vec::new();
    let mut total = 0;
    for &n in &d.sizes {
        if total + n >= data.len() {
            break;
        }
        sizes.push(n);
        total += n;
    }
    let segs = c.cut(from, data, &sizes);
    let mut order: Vec<usize> = (0..segs.len()).collect();
    order.sort_by_key(|&i| (d.keys[i % d.keys.len()], i));
    for i in order {
        c.push(segs[i].clone());
        if d.repeat[i % d.repeat.len()] {
            c.push(segs[i].clone());
        }
    }
}

fn shop_messages() -> Vec<(Peer, Vec<u8>)> {
    vec![
        (Peer::Client, post("/cart", &"item=42&qty=3&".repeat(20))),
        (
            Peer::Server,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Count\r\n\r\n10\r\nfirst sixteen by\r\n4\r\ntes!\r\n0\r\nX-Count: 2\r\n\r\n"
                .to_vec(),
        ),
        (Peer::Client, get("/cart")),
        (Peer::Server, ok(&"item 42 x3; ".repeat(30))),
    ]
}

#[test]
fn http_framing_cases_become_the_expected_entries() {
    use Peer::{Client, Server};
    let pipelined_requests = [get("/first"), get("/second")].concat();
    let pipelined_responses = [
        ok("first body"),
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 11\r\n\r\nsecond body".to_vec(),
    ]
    .concat();
    // An upgrade to a protocol kubetap does not dissect: the tunnel's bytes are nobody's.
    let upgrade_other = b"GET /chat HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: kubetap-test/1\r\n\r\n";
    let switching_other = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: kubetap-test/1\r\n\r\n";
    let h2c = b"GET /h2c HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let mut close_delimited = case(
        "a body without length ends at the server's FIN",
        vec![
            (Client, &get("/export")),
            (
                Server,
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfirst part, ",
            ),
            (Server, b"second part"),
        ],
        vec![Exchange::new("GET", "/export", 200).response_body(b"first part, second part")],
    );
    close_delimited.closes_first = Server;

    check_cases(vec![
        case(
            "GET answered with a Content-Length body",
            vec![(Client, &get("/index.html")), (Server, &ok("hello"))],
            vec![Exchange::new("GET", "/index.html", 200).response_body(b"hello")],
        ),
        case(
            "POST with a request body",
            vec![(Client, &post("/login", "item=ann")), (Server, &ok("welcome"))],
            vec![
                Exchange::new("POST", "/login", 200)
                    .request_body(b"item=ann")
                    .response_body(b"welcome"),
            ],
        ),
        case(
            "keep-alive: three requests on one connection",
            vec![
                (Client, &get("/a")),
                (Server, &ok("one")),
                (Client, &get("/b")),
                (Server, &ok("two")),
                (Client, &get("/c")),
                (Server, &ok("three")),
            ],
            vec![
                Exchange::new("GET", "/a", 200).response_body(b"one"),
                Exchange::new("GET", "/b", 200).response_body(b"two"),
                Exchange::new("GET", "/c", 200).response_body(b"three"),
            ],
        ),
        case(
            "two pipelined requests in one segment are paired in order",
            vec![(Client, &pipelined_requests), (Server, &pipelined_responses)],
            vec![
                Exchange::new("GET", "/first", 200).response_body(b"first body"),
                Exchange::new("GET", "/second", 404).response_body(b"second body"),
            ],
        ),
        case(
            "a HEAD response has Content-Length but no body",
            vec![
                (Client, b"HEAD /video.mp4 HTTP/1.1\r\nHost: shop.example\r\n\r\n"),
                (Server, b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n"),
                (Client, &get("/next")),
                (Server, &ok("next")),
            ],
            vec![
                Exchange::new("HEAD", "/video.mp4", 200),
                Exchange::new("GET", "/next", 200).response_body(b"next"),
            ],
        ),
        case(
            "204 has no body",
            vec![
                (Client, b"DELETE /cart/42 HTTP/1.1\r\nHost: shop.example\r\n\r\n"),
                (Server, b"HTTP/1.1 204 No Content\r\n\r\n"),
                (Client, &get("/next")),
                (Server, &ok("next")),
            ],
            vec![
                Exchange::new("DELETE", "/cart/42", 204),
                Exchange::new("GET", "/next", 200).response_body(b"next"),
            ],
        ),
        case(
            "304 has no body even with Content-Length",
            vec![
                (
                    Client,
                    b"GET /logo.png HTTP/1.1\r\nHost: shop.example\r\nIf-None-Match: \"v1\"\r\n\r\n",
                ),
                (
                    Server,
                    b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 4096\r\n\r\n",
                ),
                (Client, &get("/next")),
                (Server, &ok("next")),
            ],
            vec![
                Exchange::new("GET", "/logo.png", 304),
                Exchange::new("GET", "/next", 200).response_body(b"next"),
            ],
        ),
        case(
            "100 Continue is interim: the request pairs with the final response",
            vec![
                (
                    Client,
                    b"POST /upload HTTP/1.1\r\nHost: shop.example\r\nExpect: 100-continue\r\nContent-Length: 12\r\n\r\n",
                ),
                (Server, b"HTTP/1.1 100 Continue\r\n\r\n"),
                (Client, b"name=kubetap"),
                (Server, b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
            ],
            vec![
                Exchange::new("POST", "/upload", 201)
                    .request_body(b"name=kubetap")
                    .response_body(b"ok"),
            ],
        ),
        close_delimited,
        case(
            "a chunked body is de-chunked",
            vec![
                (Client, &get("/chunks")),
                (
                    Server,
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
                ),
            ],
            vec![Exchange::new("GET", "/chunks", 200).response_body(b"hello, world")],
        ),
        case(
            "after a 101 upgrade, bytes that look like HTTP make no entries",
            vec![
                (Client, upgrade_other),
                (Server, switching_other),
                (Client, b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"),
                (Client, b"GET /inside-the-tunnel HTTP/1.1\r\nHost: x\r\n\r\n"),
                (Server, b"\x81\x05Hello"),
                (Server, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            ],
            vec![Exchange::new("GET", "/chat", 101)],
        ),
        case(
            "a refused upgrade (200) keeps the connection HTTP",
            vec![
                (Client, h2c),
                (Server, &ok("plain")),
                (Client, &get("/next")),
                (Server, &ok("next")),
            ],
            vec![
                Exchange::new("GET", "/h2c", 200).response_body(b"plain"),
                Exchange::new("GET", "/next", 200).response_body(b"next"),
            ],
        ),
        case(
            "a request sent while an upgrade is pending is parsed once it is refused",
            vec![
                (Client, h2c),
                (Client, &get("/next")),
                (Server, &[ok("plain"), ok("next")].concat()),
            ],
            vec![
                Exchange::new("GET", "/h2c", 200).response_body(b"plain"),
                Exchange::new("GET", "/next", 200).response_body(b"next"),
            ],
        ),
        case(
            "a pipelined HEAD and GET: only the GET's response has a body",
            vec![
                (
                    Client,
                    &[
                        b"HEAD /video.mp4 HTTP/1.1\r\nHost: shop.example\r\n\r\n".to_vec(),
                        get("/next"),
                    ]
                    .concat(),
                ),
                (
                    Server,
                    &[
                        b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_vec(),
                        ok("next"),
                    ]
                    .concat(),
                ),
            ],
            vec![
                Exchange::new("HEAD", "/video.mp4", 200),
                Exchange::new("GET", "/next", 200).response_body(b"next"),
            ],
        ),
    ]);
}

#[test]
fn request_entry_records_its_headers() {
    // The pairing tests above compare method/path/status; this checks the head itself.
    let mut c = Conversation::open();
    c.exchange(&get("/index.html"), &ok("hello"))
        .close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));
    let req = http_request(&r.entries[0]).expect("an HTTP request");
    assert_eq!(req.version, "1.1");
    assert_eq!(
        req.headers,
        vec![
            Header {
                name: "Host".into(),
                value: "shop.example".into()
            },
            Header {
                name: "User-Agent".into(),
                value: "curl/8.5.0".into()
            },
        ]
    );
}

#[test]
fn body_ended_by_a_fin_on_its_last_segment_is_complete_as_soon_as_the_connection_closes() {
    let mut c = Conversation::open();
    c.send(Peer::Client, &get("/export.csv"))
        .send(
            Peer::Server,
            b"HTTP/1.0 200 OK\r\nContent-Type: text/csv\r\n\r\nid,name\n",
        )
        .send_with_fin(Peer::Server, b"42,kubetap\n")
        .fin(Peer::Client)
        .ack(Peer::Server);
    let mut pipeline = Pipeline::new(PipelineConfig::default());
    let mut entries = Vec::new();
    for f in c.frames(Link::Ethernet) {
        pipeline.packet(&f.packet(), &mut entries);
    }

    // Emitted by the FIN exchange itself, not by the end of the capture.
    assert_eq!(
        entries.iter().map(Exchange::of).collect::<Vec<_>>(),
        vec![Exchange::new("GET", "/export.csv", 200).response_body(b"id,name\n42,kubetap\n")]
    );
}

#[test]
fn chunked_response_keeps_its_trailers() {
    let mut c = Conversation::open();
    c.exchange(
        &get("/report"),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n6\r\nreport\r\n0\r\nX-Checksum: abc123\r\n\r\n",
    )
    .exchange(&get("/next"), &ok("next"))
    .close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));

    assert_eq!(
        r.exchanges(),
        vec![
            Exchange::new("GET", "/report", 200).response_body(b"report"),
            Exchange::new("GET", "/next", 200).response_body(b"next"),
        ]
    );
    let resp = http_response(&r.entries[0]).expect("an HTTP response");
    assert_eq!(
        resp.trailers,
        vec![Header {
            name: "X-Checksum".into(),
            value: "abc123".into()
        }]
    );
}

#[test]
fn gzip_body_is_shown_decoded() {
    let text = b"{\"items\":[1,2,3],\"note\":\"compressed on the wire\"}".repeat(20);
    let gz = gzip(&text);
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        gz.len()
    )
    .into_bytes();
    response.extend_from_slice(&gz);
    let mut c = Conversation::open();
    c.exchange(&get("/items"), &response).close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));

    assert_eq!(
        r.exchanges(),
        vec![Exchange::new("GET", "/items", 200).response_body(&text)]
    );
    let body = http_response(&r.entries[0])
        .and_then(|resp| resp.body.as_ref())
        .expect("a response body");
    assert_eq!(body.decoded_from, "gzip");
    assert_eq!(body.wire_size, gz.len() as u64);
    assert!(!body.truncated);
}

#[test]
fn out_of_order_segments_give_the_same_entry_as_in_order() {
    let request = post("/checkout", "card=4111&amount=1999");
    let mut in_order = Conversation::open();
    in_order
        .send_split(Peer::Client, &request, &[30, 40])
        .send(Peer::Server, &ok("paid"))
        .close(Peer::Client);

    let mut reordered = Conversation::open();
    let parts = reordered.cut(Peer::Client, &request, &[30, 40]);
    reordered
        .push(parts[0].clone())
        .push(parts[2].clone())
        .push(parts[1].clone())
        .send(Peer::Server, &ok("paid"))
        .close(Peer::Client);

    let expected = run(&in_order.frames(Link::Ethernet));
    let got = run(&reordered.frames(Link::Ethernet));
    assert_eq!(
        expected.exchanges(),
        vec![
            Exchange::new("POST", "/checkout", 200)
                .request_body(b"card=4111&amount=1999")
                .response_body(b"paid")
        ]
    );
    assert_eq!(got.entries, expected.entries);
    assert_eq!(got.stats.reassembly.out_of_order_segments, 1);
    assert_eq!(got.stats.gap_bytes(), 0);
}

#[test]
fn retransmission_with_different_bytes_keeps_the_first_bytes() {
    let request = post("/transfer", "amount=100");
    let mut c = Conversation::open();
    let parts = c.cut(Peer::Client, &request, &[request.len() - 2]);
    let mut forged = parts[0].clone();
    let n = forged.payload.len();
    forged.payload[n - 1] = b'9'; // "amount=1" resent as "amount=9"
    c.push(parts[0].clone())
        .push(forged)
        .push(parts[1].clone())
        .send(Peer::Server, &ok("done"))
        .close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));

    assert_eq!(
        r.exchanges(),
        vec![
            Exchange::new("POST", "/transfer", 200)
                .request_body(b"amount=100")
                .response_body(b"done")
        ]
    );
    assert_eq!(r.stats.reassembly.retransmitted_segments, 1);
}

#[test]
fn overlap_with_a_buffered_segment_keeps_the_first_bytes() {
    let request = post("/transfer", "from=ann&to=bob");
    let head = request.len() - "from=ann&to=bob".len();
    let mut c = Conversation::open();
    // Head, then "from=ann", then "&to=bob"; the last arrives first and is buffered.
    let parts = c.cut(Peer::Client, &request, &[head, 8]);
    let mut overlap = parts[1].clone();
    overlap.payload = b"from=ann&to=eve".to_vec(); // covers parts 1 and 2, disagrees on part 2
    c.push(parts[0].clone())
        .push(parts[2].clone())
        .push(overlap)
        .send(Peer::Server, &ok("done"))
        .close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));

    assert_eq!(
        r.exchanges(),
        vec![
            Exchange::new("POST", "/transfer", 200)
                .request_body(b"from=ann&to=bob")
                .response_body(b"done")
        ]
    );
    assert_eq!(r.stats.reassembly.overlap_bytes, 7);
}

#[test]
fn lost_body_segment_flags_the_entry_and_later_requests_still_parse() {
    let body = "A".repeat(100) + &"B".repeat(100) + &"C".repeat(100);
    let response = ok(&body);
    let head = response.len() - body.len();
    let mut c = Conversation::open();
    c.send(Peer::Client, &get("/big"));
    let parts = c.cut(Peer::Server, &response, &[head + 100, 100]);
    // The middle segment (the B's) never reaches the capture; the client's
    // next request acknowledges it, which tells reassembly it is lost.
    c.push(parts[0].clone())
        .push(parts[2].clone())
        .exchange(&get("/after"), &ok("still here"))
        .close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));

    let got = r.exchanges();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].method.as_str(), got[0].path.as_str(), got[0].status),
        ("GET", "/big", Some(200))
    );
    assert!(
        got[0].flags.contains(&"gap".to_string())
            && got[0].flags.contains(&"truncated".to_string()),
        "flags: {:?}",
        got[0].flags
    );
    assert!(got[0].response_body.starts_with(&[b'A'; 100]));
    assert!(!got[0].response_body.contains(&b'B'));
    let resp_body = http_response(&r.entries[0])
        .and_then(|resp| resp.body.as_ref())
        .expect("a response body");
    assert!(resp_body.truncated);
    assert_eq!(
        got[1],
        Exchange::new("GET", "/after", 200).response_body(b"still here")
    );
    assert_eq!(r.stats.gap_bytes(), 100);
}

#[test]
fn lost_request_body_segment_flags_the_request_and_the_response_still_pairs() {
    let body = "x".repeat(300);
    let request = post("/upload", &body);
    let head = request.len() - body.len();
    let mut c = Conversation::open();
    let parts = c.cut(Peer::Client, &request, &[head + 100, 100]);
    // The middle 100 body bytes are lost; the server's response acknowledges them.
    c.push(parts[0].clone())
        .push(parts[2].clone())
        .send(Peer::Server, &ok("stored"))
        .exchange(&get("/after"), &ok("fine"))
        .close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));

    let got = r.exchanges();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].method.as_str(), got[0].path.as_str(), got[0].status),
        ("POST", "/upload", Some(200))
    );
    assert_eq!(got[0].response_body, b"stored");
    assert!(
        got[0].flags.contains(&"gap".to_string())
            && got[0].flags.contains(&"truncated".to_string()),
        "flags: {:?}",
        got[0].flags
    );
    let req_body = http_request(&r.entries[0])
        .and_then(|q| q.body.as_ref())
        .expect("a request body");
    assert!(req_body.truncated, "the request body lost 100 bytes");
    assert_eq!(
        got[1],
        Exchange::new("GET", "/after", 200).response_body(b"fine")
    );
}

#[test]
fn ethernet_padding_after_a_short_segment_is_not_payload() {
    let request = post("/tiny", "ab");
    let response = ok("k");
    let mut c = Conversation::open();
    c.send_split(Peer::Client, &request, &[request.len() - 2])
        .send_split(Peer::Server, &response, &[response.len() - 1])
        .close(Peer::Client);
    let mut frames = c.frames(Link::Ethernet);
    for f in &mut frames {
        // Ethernet's 60-byte minimum frame: short frames carry zero padding.
        if f.data.len() < 60 {
            f.data.resize(60, 0);
        }
    }
    let r = run(&frames);

    assert_eq!(
        r.exchanges(),
        vec![
            Exchange::new("POST", "/tiny", 200)
                .request_body(b"ab")
                .response_body(b"k")
        ]
    );
}

#[test]
fn midstream_capture_starting_at_a_response_parses_the_next_exchange() {
    let mut c = Conversation::midstream(7_000_000, 9_000_000);
    c.send(
        Peer::Server,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly",
    )
    .exchange(&get("/next"), &ok("next"))
    .close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));

    assert_eq!(
        r.exchanges(),
        vec![
            Exchange::orphan_response(200)
                .response_body(b"early")
                .flags(&["midstream", "no_request"]),
            Exchange::new("GET", "/next", 200)
                .response_body(b"next")
                .flags(&["midstream"]),
        ]
    );
    let src = r.entries[1].src.as_ref().expect("a source");
    assert_eq!((src.ip.as_str(), src.port), ("10.0.0.1", 40000));
}

#[test]
fn midstream_capture_starting_inside_a_body_parses_the_next_exchange() {
    let mut c = Conversation::midstream(7_000_000, 9_000_000);
    c.send(
        Peer::Server,
        b"the tail of a body whose response began before the capture\n",
    )
    .exchange(&get("/next"), &ok("next"))
    .close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));

    assert_eq!(
        r.exchanges(),
        vec![
            Exchange::new("GET", "/next", 200)
                .response_body(b"next")
                .flags(&["midstream"])
        ]
    );
}

#[test]
fn sequence_numbers_wrapping_past_zero_do_not_disturb_the_streams() {
    let mut c = Conversation::open_with_isn(u32::MAX - 10, u32::MAX - 30);
    c.exchange(&get("/before-wrap"), &ok("crosses zero in the response"));
    let request = post("/after-wrap", "x=1");
    let parts = c.cut(Peer::Client, &request, &[20, 20]);
    c.push(parts[1].clone())
        .push(parts[0].clone())
        .push(parts[2].clone())
        .send(Peer::Server, &ok("fine"))
        .close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));

    assert_eq!(
        r.exchanges(),
        vec![
            Exchange::new("GET", "/before-wrap", 200)
                .response_body(b"crosses zero in the response"),
            Exchange::new("POST", "/after-wrap", 200)
                .request_body(b"x=1")
                .response_body(b"fine"),
        ]
    );
    assert_eq!(r.stats.gap_bytes(), 0);
}

#[test]
fn fragmented_request_is_reassembled_in_any_fragment_order() {
    let mut failures = Vec::new();
    for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0]] {
        let mut c = Conversation::open();
        c.send(Peer::Client, &post("/fragmented", &"f".repeat(120)))
            .send(Peer::Server, &ok("whole"))
            .close(Peer::Client);
        let request_at = 3; // after the handshake
        let ip = ip_packet(&c.segments[request_at], false);
        let fragments = ipv4_fragments(&ip, &[24, 96], Peer::Client);
        let mut frames: Vec<Frame> = c.frames(Link::Ethernet);
        let ts_ns = frames[request_at].ts_ns;
        frames.splice(
            request_at..=request_at,
            order.iter().map(|&i| Frame {
                ts_ns,
                link: link::ETHERNET,
                data: fragments[i].clone(),
            }),
        );
        let r = run(&frames);
        let expected = vec![
            Exchange::new("POST", "/fragmented", 200)
                .request_body("f".repeat(120).as_bytes())
                .response_body(b"whole"),
        ];
        if r.exchanges() != expected || r.stats.decode.fragments_reassembled != 1 {
            failures.push(format!(
                "order {order:?}: {:?}, {} reassembled",
                r.exchanges(),
                r.stats.decode.fragments_reassembled
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_link_type_yields_the_same_exchange() {
    let mut c = Conversation::open();
    c.exchange(&get("/index.html"), &ok("hello"))
        .close(Peer::Client);
    let expected = vec![Exchange::new("GET", "/index.html", 200).response_body(b"hello")];
    let mut failures = Vec::new();
    for (l, client_ip) in [
        (Link::Ethernet, "10.0.0.1"),
        (Link::Vlan(42), "10.0.0.1"),
        (Link::DoubleVlan(100, 42), "10.0.0.1"),
        (Link::Ipv6, "fd00::1"),
        (Link::LinuxSll, "10.0.0.1"),
        (Link::LinuxSll2, "10.0.0.1"),
        (Link::RawIp, "10.0.0.1"),
        (Link::Null, "10.0.0.1"),
        (Link::NullIpv6, "fd00::1"),
        (Link::Loop, "10.0.0.1"),
    ] {
        let r = run(&c.frames(l));
        let src = r.entries.first().and_then(|e| e.src.clone());
        let dst = r.entries.first().and_then(|e| e.dst.clone());
        let endpoints = (src.map(|s| (s.ip, s.port)), dst.map(|d| d.port));
        if r.exchanges() != expected
            || endpoints != (Some((client_ip.to_string(), 40000)), Some(8080))
        {
            failures.push(format!("{l:?}: {:?} {endpoints:?}", r.exchanges()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shop_messages_sent_whole_parse_cleanly() {
    // The reference the property below compares against.
    let mut c = Conversation::open();
    for (peer, msg) in shop_messages() {
        c.send(peer, &msg);
    }
    c.close(Peer::Client);
    assert_eq!(
        run(&c.frames(Link::Ethernet)).exchanges(),
        vec![
            Exchange::new("POST", "/cart", 200)
                .request_body("item=42&qty=3&".repeat(20).as_bytes())
                .response_body(b"first sixteen bytes!"),
            Exchange::new("GET", "/cart", 200).response_body("item 42 x3; ".repeat(30).as_bytes()),
        ]
    );
}

proptest! {
    #[test]
    fn segmentation_and_reordering_within_a_burst_do_not_change_entries(
        plans in prop::collection::vec(delivery(), 4),
        client_isn in isn(),
        server_isn in isn(),
    ) {
        let messages = shop_messages();
        let mut whole = Conversation::open_with_isn(client_isn, server_isn);
        let mut cut = Conversation::open_with_isn(client_isn, server_isn);
        for ((peer, msg), plan) in messages.iter().zip(&plans) {
            whole.send(*peer, msg);
            deliver(&mut cut, *peer, msg, plan);
        }
        whole.close(Peer::Client);
        cut.close(Peer::Client);

        let expected = run(&whole.frames(Link::Ethernet));
        let got = run(&cut.frames(Link::Ethernet));
        prop_assert_eq!(expected.entries.len(), 2);
        prop_assert!(expected.entries.iter().all(|e| e.flags.is_empty()));
        prop_assert_eq!(got.entries, expected.entries);
        prop_assert_eq!(got.stats.gap_bytes(), 0);
    }
}

/// A capture taken before segmentation offload (or with BIG TCP): every IPv4
/// packet says total length 0 and a response body comes as one 30 kB
/// super-packet. Each packet is decoded from its captured length and counted;
/// none is dropped as malformed, and the exchange is whole.
#[test]
fn offloaded_super_packets_with_ip_length_0_are_decoded_and_counted() {
    let body = "z".repeat(30_000);
    let mut c = Conversation::open();
    c.exchange(&get("/big"), &ok(&body));
    let mut frames = c.frames(Link::Ethernet);
    for f in &mut frames {
        // Ethernet (14 bytes), then the IPv4 total length at offset 2.
        f.data[16..18].copy_from_slice(&[0, 0]);
    }
    let out = run(&frames);
    assert_eq!(out.stats.decode.malformed, 0);
    assert_eq!(out.stats.decode.length_from_capture, frames.len() as u64);
    let http: Vec<_> = out
        .entries
        .iter()
        .filter_map(|e| Some((http_request(e)?, http_response(e)?)))
        .collect();
    assert_eq!(http.len(), 1, "{:?}", out.entries);
    let (req, resp) = http[0];
    assert_eq!((req.path.as_str(), resp.status), ("/big", 200));
    assert_eq!(resp.body.as_ref().map(|b| b.data.len()), Some(30_000));
}
