//! The http2 dissector's unit tests.

use super::*;
use crate::Connection;
use crate::GenericFields;
use crate::flow::FlowHandler;
use crate::testing::{entries, fin};
use loona_hpack::Encoder;
use proto::v1::Entry;
use std::net::SocketAddr;
use std::sync::Arc;

const C: Direction = Direction::ToServer;
const S: Direction = Direction::ToClient;

fn flow(midstream: bool) -> FlowInfo {
    FlowInfo {
        id: 7,
        client: SocketAddr::from(([10, 0, 0, 1], 40000)),
        server: SocketAddr::from(([10, 0, 0, 2], 8080)),
        first_ts_ns: 1,
        midstream,
        tls: false,
        outer: None,
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    v.extend([kind, flags]);
    v.extend(stream.to_be_bytes());
    v.extend(payload);
    v
}

fn block(enc: &mut Encoder, list: &[(&str, &str)]) -> Vec<u8> {
    enc.encode(list.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

fn get(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "example.test"),
        ("user-agent", "test/1"),
    ]
}

/// A conversation: bytes each way, in capture order.
#[derive(Default)]
struct Script {
    parts: Vec<(Direction, Vec<u8>)>,
    client: Encoder<'static>,
    server: Encoder<'static>,
}

impl Script {
    fn prior_knowledge() -> Self {
        let mut s = Script::default();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        s.send(C, hello);
        s.send(S, frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        s
    }

    fn send(&mut self, dir: Direction, bytes: Vec<u8>) {
        self.parts.push((dir, bytes));
    }

    fn request(&mut self, id: u32, headers: &[(&str, &str)], end: bool) {
        let b = block(&mut self.client, headers);
        let flags = END_HEADERS | if end { END_STREAM } else { 0 };
        self.send(C, frame(HEADERS, flags, id, &b));
    }

    fn response(&mut self, id: u32, headers: &[(&str, &str)], end: bool) {
        let b = block(&mut self.server, headers);
        let flags = END_HEADERS | if end { END_STREAM } else { 0 };
        self.send(S, frame(HEADERS, flags, id, &b));
    }

    fn data(&mut self, dir: Direction, id: u32, body: &[u8], end: bool) {
        self.send(dir, frame(DATA, if end { END_STREAM } else { 0 }, id, body));
    }

    /// Feeds the conversation in pieces of at most `chunk` bytes.
    fn run_with(&self, midstream: bool, config: DissectConfig, chunk: usize) -> Vec<Entry> {
        let flow = flow(midstream);
        let mut conn = Connection::new(Arc::new(config));
        let mut out = Vec::new();
        let mut ts = 1;
        for (dir, bytes) in &self.parts {
            ts += 1000;
            for piece in bytes.chunks(chunk) {
                conn.on_data(&flow, *dir, ts, piece, &mut out);
            }
        }
        conn.on_close(&flow, &fin(ts), &mut out);
        entries(out)
    }

    fn run(&self) -> Vec<Entry> {
        self.run_with(false, DissectConfig::default(), usize::MAX)
    }
}

fn req(e: &Entry) -> &HttpRequest {
    match e.request.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(request::Kind::Http(r)) => r,
        other => panic!("not an HTTP request: {other:?}"),
    }
}

fn resp(e: &Entry) -> &HttpResponse {
    match e.response.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(response::Kind::Http(r)) => r,
        other => panic!("not an HTTP response: {other:?}"),
    }
}

fn header<'a>(hs: &'a [Header], name: &str) -> Option<&'a str> {
    hs.iter().find(|h| h.name == name).map(|h| h.value.as_str())
}

fn by_stream(entries: &[Entry], id: u64) -> &Entry {
    entries
        .iter()
        .find(|e| e.stream_id == id)
        .unwrap_or_else(|| panic!("no entry for stream {id}"))
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn huffman_coded_requests_of_rfc_7541() {
    // RFC 7541 C.4: three requests with Huffman-coded strings and a growing dynamic table.
    let mut h = Hpack::new(true);
    let blocks = [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ];
    let want = [
        "GET http / www.example.com",
        "GET http / www.example.com no-cache",
        "GET https /index.html www.example.com custom-key custom-value",
    ];
    for (block, want) in blocks.iter().zip(want) {
        let raw = without_huffman(&hex(block)).unwrap();
        assert!(raw.len() > hex(block).len());
        let d = h.decode(&hex(block), 4096);
        assert!(d.flags.is_empty(), "{:?}", d.flags);
        let got: Vec<String> = d
            .headers
            .iter()
            .flat_map(|(n, v)| {
                let name = (n == "custom-key").then(|| n.clone());
                name.into_iter().chain(std::iter::once(v.clone()))
            })
            .collect();
        assert_eq!(got.join(" "), want);
    }
    // A bad Huffman code is left for loona-hpack, which reports it.
    let d = Hpack::new(true).decode(&hex("0085 ffff ffff ff01 61"), 4096);
    assert!(
        d.flags.contains(&"malformed:hpack_string".into()),
        "{:?}",
        d.flags
    );
}

#[test]
fn probe_claims_the_preface_and_the_server_settings_only() {
    assert_eq!(probe(C, b"PRI * HT", false), Claim::NeedMore);
    assert_eq!(probe(C, PREFACE, false), Claim::Yes);
    assert_eq!(probe(C, b"GET / HTTP/1.1\r\n", false), Claim::No);
    assert_eq!(probe(C, b"POST / HTTP/1.1\r\n", false), Claim::No);
    let settings = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    assert_eq!(probe(S, &settings, false), Claim::Yes);
    assert_eq!(probe(S, &settings[..4], false), Claim::NeedMore);
    assert_eq!(probe(S, b"HTTP/1.1 200 OK\r\n", false), Claim::No);
    assert_eq!(probe(S, &frame(DATA, 0, 1, b"x"), false), Claim::No);
    // Mid-stream: a run of frames after the tail of an earlier one.
    let mut mid = b"tail of a body".to_vec();
    mid.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
    mid.extend(frame(PING, 0, 0, &[0; 8]));
    mid.extend(frame(DATA, 0, 3, b"abc"));
    assert_eq!(probe(S, &mid, true), Claim::Yes);
    assert_eq!(
        probe(C, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", true),
        Claim::No
    );
    let text: Vec<u8> = (0..4096).map(|i| b"lorem ipsum "[i % 12]).collect();
    assert_eq!(probe(C, &text, true), Claim::No);
}

#[test]
fn graphql_over_http2_is_a_graphql_entry() {
    let mut s = Script::prior_knowledge();
    let mut post = get("/graphql");
    post[0] = (":method", "POST");
    post.push(("content-type", "application/json"));
    s.request(1, &post, false);
    s.data(C, 1, br#"{"query":"query Shop { items { id } }"}"#, true);
    s.response(
        1,
        &[(":status", "200"), ("content-type", "application/json")],
        false,
    );
    s.data(S, 1, br#"{"data":{"items":[]}}"#, true);
    s.request(3, &get("/plain"), true);
    s.response(3, &[(":status", "200")], true);
    let entries = s.run();
    let gql = by_stream(&entries, 1);
    assert_eq!(gql.protocol, Protocol::Graphql as i32);
    assert_eq!(gql.method(), Some("query"));
    assert_eq!(gql.path(), Some("Shop"));
    assert_eq!(gql.status(), Some(200));
    assert_eq!(by_stream(&entries, 3).protocol, Protocol::Http2 as i32);
}

#[test]
fn requests_and_responses_pair_by_stream() {
    let mut s = Script::prior_knowledge();
    s.request(1, &get("/a"), true);
    let mut post = get("/submit");
    post[0] = (":method", "POST");
    post.push(("content-type", "text/plain"));
    s.request(3, &post, false);
    s.data(C, 3, b"hello ", false);
    s.data(C, 3, b"world", true);
    s.response(3, &[(":status", "201")], false);
    s.data(S, 3, b"made", true);
    s.response(
        1,
        &[(":status", "200"), ("content-type", "text/plain")],
        false,
    );
    s.data(S, 1, b"body of a", true);
    let entries = s.run();
    assert_eq!(entries.len(), 2);
    let a = by_stream(&entries, 1);
    assert_eq!(a.protocol, Protocol::Http2 as i32);
    assert_eq!(
        (a.method(), a.path(), a.status()),
        (Some("GET"), Some("/a"), Some(200))
    );
    assert_eq!(req(a).version, "2");
    assert_eq!(header(&req(a).headers, "host"), Some("example.test"));
    assert!(req(a).headers.iter().all(|h| !h.name.starts_with(':')));
    assert_eq!(resp(a).body.as_ref().unwrap().data, b"body of a");
    let p = by_stream(&entries, 3);
    assert_eq!((p.method(), p.status()), (Some("POST"), Some(201)));
    assert_eq!(req(p).body.as_ref().unwrap().data, b"hello world");
    // Frame headers count in the sizes: HEADERS + two DATA frames.
    assert!(p.request_size > 9 * 3 + 11);
    assert!(p.flags.is_empty(), "{:?}", p.flags);
    assert!(a.elapsed_ns.is_some());
    // Entries are numbered on the flow in the order they completed.
    assert_eq!(p.id, "0000000000000007-0");
    assert_eq!(a.id, "0000000000000007-1");
}

#[test]
fn interleaved_streams_and_any_segmentation() {
    let mut s = Script::prior_knowledge();
    for id in [1, 3, 5] {
        s.request(id, &get(&format!("/file{id}")), true);
    }
    for id in [5, 1, 3] {
        s.response(id, &[(":status", "200")], false);
    }
    for round in 0..3 {
        for id in [3, 5, 1] {
            s.data(S, id, format!("{id}:{round};").as_bytes(), round == 2);
        }
    }
    for chunk in [usize::MAX, 7, 1] {
        let entries = s.run_with(false, DissectConfig::default(), chunk);
        assert_eq!(entries.len(), 3, "chunk {chunk}");
        for id in [1u64, 3, 5] {
            let e = by_stream(&entries, id);
            assert_eq!(e.path(), Some(format!("/file{id}").as_str()));
            let body = &resp(e).body.as_ref().unwrap().data;
            assert_eq!(body, format!("{id}:0;{id}:1;{id}:2;").as_bytes());
        }
    }
}

#[test]
fn continuation_and_padding() {
    let mut s = Script::prior_knowledge();
    let mut headers = get("/long");
    let big = "v".repeat(300);
    headers.push(("x-big", &big));
    let b = block(&mut s.client, &headers);
    let (one, rest) = b.split_at(10);
    let (two, three) = rest.split_at(100);
    // HEADERS padded and with priority, then two CONTINUATIONs.
    let mut first = vec![4u8];
    first.extend([0, 0, 0, 0, 16]);
    first.extend(one);
    first.extend([0; 4]);
    let mut bytes = frame(HEADERS, PADDED | PRIORITY_FLAG | END_STREAM, 1, &first);
    bytes.extend(frame(CONTINUATION, 0, 1, two));
    bytes.extend(frame(CONTINUATION, END_HEADERS, 1, three));
    s.send(C, bytes);
    s.response(1, &[(":status", "200")], false);
    let mut padded = vec![3u8];
    padded.extend(b"data");
    padded.extend([0; 3]);
    s.send(S, frame(DATA, PADDED | END_STREAM, 1, &padded));
    for chunk in [usize::MAX, 1] {
        let entries = s.run_with(false, DissectConfig::default(), chunk);
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(e.path(), Some("/long"));
        assert_eq!(header(&req(e).headers, "x-big"), Some(big.as_str()));
        assert_eq!(resp(e).body.as_ref().unwrap().data, b"data");
        assert!(e.flags.is_empty(), "{:?}", e.flags);
    }
}

#[test]
fn too_long_header_block_is_flagged_and_bounded() {
    let config = DissectConfig {
        max_head: 1000,
        ..Default::default()
    };
    let mut s = Script::prior_knowledge();
    let b = block(
        &mut s.client,
        &[(":method", "GET"), ("x", &"y".repeat(600))],
    );
    let mut bytes = frame(HEADERS, END_STREAM, 1, &b);
    // An endless run of CONTINUATIONs, each fine alone.
    for _ in 0..50 {
        bytes.extend(frame(CONTINUATION, 0, 1, &[0x82; 100]));
    }
    bytes.extend(frame(CONTINUATION, END_HEADERS, 1, &[0x82]));
    s.send(C, bytes);
    s.response(1, &[(":status", "431")], true);
    let entries = s.run_with(false, config, usize::MAX);
    let e = by_stream(&entries, 1);
    assert!(e.flags.contains(&"malformed:header_block_too_large".into()));
    assert!(e.flags.contains(&"hpack_unknown".into()));
    assert_eq!(e.status(), Some(431));
}

#[test]
fn trailers_reset_and_goaway() {
    let mut s = Script::prior_knowledge();
    s.request(1, &get("/t"), true);
    s.request(3, &get("/cancelled"), true);
    s.request(5, &get("/never"), true);
    s.response(1, &[(":status", "200")], false);
    s.data(S, 1, b"x", false);
    s.response(1, &[("checksum", "abc")], true);
    let mut rst = frame(RST_STREAM, 0, 3, &8u32.to_be_bytes());
    rst.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]));
    s.send(S, rst);
    let entries = s.run();
    assert_eq!(entries.len(), 3);
    let t = by_stream(&entries, 1);
    assert_eq!(header(&resp(t).trailers, "checksum"), Some("abc"));
    assert!(t.flags.is_empty(), "{:?}", t.flags);
    let c = by_stream(&entries, 3);
    assert!(c.flags.contains(&"reset:cancel".into()), "{:?}", c.flags);
    let n = by_stream(&entries, 5);
    assert!(n.flags.contains(&"goaway".into()), "{:?}", n.flags);
    assert!(n.flags.contains(&"no_response".into()));
}

#[test]
fn server_push_becomes_its_own_entry() {
    let mut s = Script::prior_knowledge();
    s.request(1, &get("/page"), true);
    let promise = block(&mut s.server, &get("/style.css"));
    let mut payload = 2u32.to_be_bytes().to_vec();
    payload.extend(promise);
    s.send(S, frame(PUSH_PROMISE, END_HEADERS, 1, &payload));
    s.response(1, &[(":status", "200")], true);
    s.response(
        2,
        &[(":status", "200"), ("content-type", "text/css")],
        false,
    );
    s.data(S, 2, b"body{}", true);
    let entries = s.run();
    assert_eq!(entries.len(), 2);
    let pushed = by_stream(&entries, 2);
    assert_eq!(
        (pushed.method(), pushed.path()),
        (Some("GET"), Some("/style.css"))
    );
    assert_eq!(resp(pushed).body.as_ref().unwrap().data, b"body{}");
    assert!(pushed.flags.is_empty(), "{:?}", pushed.flags);
}

#[test]
fn open_streams_are_bounded() {
    let mut s = Script::prior_knowledge();
    for id in [1, 3, 5] {
        s.request(id, &get("/slow"), true);
    }
    s.response(5, &[(":status", "200")], true);
    // Stream 1 was pushed out by stream 5; its late response opens nothing.
    s.response(1, &[(":status", "200")], true);
    s.response(3, &[(":status", "200")], true);
    let config = DissectConfig {
        max_pending: 2,
        ..Default::default()
    };
    let entries = s.run_with(false, config, usize::MAX);
    assert_eq!(entries.len(), 3, "{entries:?}");
    let one = by_stream(&entries, 1);
    assert_eq!(one.status(), None);
    assert!(one.flags.contains(&"no_response".into()));
    assert_eq!(by_stream(&entries, 3).status(), Some(200));
    assert_eq!(by_stream(&entries, 5).status(), Some(200));
}

#[test]
fn dynamic_table_is_kept_across_requests() {
    let mut s = Script::prior_knowledge();
    let mut headers = get("/one");
    headers.push(("x-token", "secret-value"));
    s.request(1, &headers, true);
    let first_len = s.parts.last().unwrap().1.len();
    headers[2] = (":path", "/two");
    s.request(3, &headers, true);
    // The second block refers to the first's entries instead of repeating them.
    assert!(s.parts.last().unwrap().1.len() < first_len - 20);
    s.response(1, &[(":status", "200"), ("server", "x")], true);
    s.response(3, &[(":status", "404"), ("server", "x")], true);
    let entries = s.run();
    let two = by_stream(&entries, 3);
    assert_eq!(two.path(), Some("/two"));
    assert_eq!(header(&req(two).headers, "x-token"), Some("secret-value"));
    assert_eq!(header(&req(two).headers, "host"), Some("example.test"));
    assert_eq!(header(&resp(two).headers, "server"), Some("x"));
    assert_eq!(two.status(), Some(404));
}

#[test]
fn hpack_bomb_and_table_size_beyond_settings() {
    let mut s = Script::prior_knowledge();
    // One 4000-byte entry, then 2000 one-byte references to it: 8 MB of headers.
    let mut b = block(&mut s.client, &get("/bomb"));
    b.extend(block(&mut s.client, &[("x-bomb", &"b".repeat(4000))]));
    b.extend([0xbe; 2000]);
    s.send(C, frame(HEADERS, END_HEADERS | END_STREAM, 1, &b));
    s.response(1, &[(":status", "400")], true);
    // A size update to 8192 when SETTINGS allow 4096.
    let mut b = vec![0x3f, 0xe1, 0x3f];
    b.extend(block(&mut s.client, &get("/big-table")));
    s.send(C, frame(HEADERS, END_HEADERS | END_STREAM, 3, &b));
    s.response(3, &[(":status", "200")], true);
    let config = DissectConfig::default();
    let max_head = config.max_head;
    let entries = s.run_with(false, config, usize::MAX);
    let bomb = by_stream(&entries, 1);
    assert!(
        bomb.flags
            .contains(&"malformed:header_list_too_large".into())
    );
    assert_eq!(bomb.path(), Some("/bomb"));
    let kept: usize = req(bomb)
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 32)
        .sum();
    assert!(kept <= max_head, "{kept}");
    let big = by_stream(&entries, 3);
    assert!(
        big.flags.contains(&"malformed:hpack_table_size".into()),
        "{:?}",
        big.flags
    );
    assert!(big.flags.contains(&"hpack_unknown".into()));
    assert_eq!(big.status(), Some(200));
}

#[test]
fn settings_raise_the_table_size_allowed() {
    let mut s = Script::default();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    s.send(C, hello);
    // The server's decoder accepts 8192 bytes of table.
    s.send(S, frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x20, 0]));
    s.client.set_max_table_size(8192);
    let mut b = vec![0x3f, 0xe1, 0x3f];
    b.extend(block(&mut s.client, &get("/ok")));
    s.send(C, frame(HEADERS, END_HEADERS | END_STREAM, 1, &b));
    s.response(1, &[(":status", "200")], true);
    let entries = s.run();
    assert_eq!(entries[0].path(), Some("/ok"));
    assert!(entries[0].flags.is_empty(), "{:?}", entries[0].flags);
}

#[test]
fn oversized_frame_is_flagged_without_allocating_it() {
    let flow = flow(false);
    let mut d = Http2::new(&flow, &DissectConfig::default(), None);
    let mut out = Vec::new();
    let mut enc = Encoder::new();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &block(&mut enc, &get("/up")),
    ));
    d.on_data(&flow, C, 1, &bytes, &mut out);
    // A DATA frame announcing 16 MiB - 1 bytes, then 1 MiB of it, then a HEADERS frame as long.
    let mut huge = vec![0xff, 0xff, 0xff, DATA, 0, 0, 0, 0, 1];
    d.on_data(&flow, C, 2, &huge, &mut out);
    for _ in 0..16 {
        d.on_data(&flow, C, 3, &[b'z'; 64 << 10], &mut out);
    }
    assert!(d.sides[0].buf.capacity() < 64 << 10);
    huge[3] = HEADERS;
    huge[8] = 3;
    let mut d2 = Http2::new(&flow, &DissectConfig::default(), None);
    d2.on_data(&flow, C, 1, PREFACE, &mut out);
    d2.on_data(&flow, C, 2, &huge, &mut out);
    for _ in 0..64 {
        d2.on_data(&flow, C, 3, &[0x82; 64 << 10], &mut out);
    }
    assert!(d2.sides[0].buf.capacity() <= (64 << 10) * 2 + FRAME_HEADER);
    d.on_close(&flow, &fin(9), &mut out);
    let entries = entries(out);
    let e = by_stream(&entries, 1);
    assert!(
        e.flags.contains(&"malformed:frame_too_large".into()),
        "{:?}",
        e.flags
    );
    let body = req(e).body.as_ref().unwrap();
    assert_eq!(body.wire_size, 1 << 20);
    assert_eq!(body.data.len(), 1 << 20);
}

#[test]
fn midstream_start_says_what_the_table_hid() {
    let mut s = Script::default();
    // Before the capture: the client's encoder learnt these headers.
    let mut headers = get("/old");
    headers.push(("x-session", "s-1"));
    block(&mut s.client, &headers);
    block(&mut s.server, &[(":status", "200"), ("server", "srv")]);
    // The capture starts inside a DATA frame's payload.
    let mut first = b"...the end of an earlier body".to_vec();
    first.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0x10, 0]));
    first.extend(frame(PING, 0, 0, &[1; 8]));
    s.send(S, first);
    // Stream 9 refers to the unknown entries: decoded only up to the first of them.
    headers[2] = (":path", "/new");
    s.request(9, &headers, true);
    s.response(9, &[(":status", "200"), ("server", "srv")], true);
    // Stream 11 adds a new entry, stream 13 refers to it: that is known.
    s.request(11, &[(":method", "GET"), ("x-fresh", "f-1")], true);
    s.request(13, &[(":method", "PUT"), ("x-fresh", "f-1")], true);
    s.response(11, &[(":status", "204")], true);
    s.response(13, &[(":status", "201")], true);
    let entries = s.run_with(true, DissectConfig::default(), usize::MAX);
    assert_eq!(entries.len(), 3, "{entries:?}");
    let nine = by_stream(&entries, 9);
    assert!(
        nine.flags.contains(&"hpack_unknown".into()),
        "{:?}",
        nine.flags
    );
    assert!(nine.flags.contains(&"midstream".into()));
    // Literals and the static table decode; x-session was in the lost dynamic table.
    assert_eq!((nine.method(), nine.path()), (Some("GET"), Some("/new")));
    assert_eq!(header(&req(nine).headers, "x-session"), None);
    assert_eq!(nine.status(), Some(200));
    let thirteen = by_stream(&entries, 13);
    assert_eq!(thirteen.method(), Some("PUT"));
    assert_eq!(header(&req(thirteen).headers, "x-fresh"), Some("f-1"));
    assert!(!thirteen.flags.contains(&"hpack_unknown".into()));
    assert_eq!(thirteen.status(), Some(201));
}

#[test]
fn gap_inside_data_keeps_framing_and_a_gap_elsewhere_resyncs() {
    let flow = flow(false);
    let mut conn = Connection::new(Arc::new(DissectConfig::default()));
    let mut out = Vec::new();
    let mut cenc = Encoder::new();
    let mut senc = Encoder::new();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    conn.on_data(&flow, C, 1, &hello, &mut out);
    let mut traced = get("/g");
    traced.push(("x-trace", "t1"));
    let h = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &block(&mut cenc, &traced),
    );
    conn.on_data(&flow, C, 2, &h, &mut out);
    let mut r = frame(
        HEADERS,
        END_HEADERS,
        1,
        &block(&mut senc, &[(":status", "200")]),
    );
    let data = frame(DATA, END_STREAM, 1, &[b'd'; 100]);
    r.extend(&data[..50]);
    conn.on_data(&flow, S, 3, &r, &mut out);
    conn.on_gap(&flow, S, 4, 30, &mut out);
    conn.on_data(&flow, S, 5, &data[80..], &mut out);
    // Stream 3's request is lost in a gap that ends inside another frame.
    let h3 = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &block(&mut cenc, &get("/lost")),
    );
    conn.on_gap(&flow, C, 6, h3.len() as u64 + 4, &mut out);
    let mut after = frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]);
    traced[2] = (":path", "/after");
    after.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        5,
        &block(&mut cenc, &traced),
    ));
    // Frames after the one the gap cut into: two in a row settle the boundary.
    after.extend(frame(PING, 0, 0, &[0; 8]));
    conn.on_data(&flow, C, 7, &after[4..], &mut out);
    let r5 = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        5,
        &block(&mut senc, &[(":status", "200")]),
    );
    conn.on_data(&flow, S, 8, &r5, &mut out);
    conn.on_close(&flow, &fin(9), &mut out);
    let entries = entries(out);
    assert_eq!(entries.len(), 2, "{entries:?}");
    let one = by_stream(&entries, 1);
    assert!(one.flags.contains(&"gap".into()));
    assert_eq!(resp(one).body.as_ref().unwrap().wire_size, 100);
    assert_eq!(one.status(), Some(200));
    let five = by_stream(&entries, 5);
    assert_eq!(five.status(), Some(200));
    // Stream 5's block refers to the entry stream 1 added before the gap.
    assert!(
        five.flags.contains(&"hpack_unknown".into()),
        "{:?}",
        five.flags
    );
    assert_eq!((five.method(), five.path()), (Some("GET"), Some("/after")));
    assert_eq!(header(&req(five).headers, "x-trace"), None);
}

#[test]
fn h2c_upgrade_continues_the_connection() {
    let mut s = Script::default();
    s.send(
        C,
        b"GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
            .to_vec(),
    );
    let mut switch =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
    switch.extend(frame(SETTINGS, 0, 0, &[]));
    s.send(S, switch);
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    s.send(C, hello);
    s.response(1, &[(":status", "200")], false);
    s.data(S, 1, b"upgraded", true);
    s.request(3, &get("/next"), true);
    s.response(3, &[(":status", "200")], true);
    let entries = s.run();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[0].protocol, Protocol::Http as i32);
    assert_eq!(entries[0].status(), Some(101));
    let one = by_stream(&entries[1..], 1);
    assert_eq!(one.protocol, Protocol::Http2 as i32);
    assert_eq!(one.id, "0000000000000007-1");
    assert_eq!(resp(one).body.as_ref().unwrap().data, b"upgraded");
    assert_eq!(one.flags, vec!["upgrade:0000000000000007-0".to_string()]);
    let three = by_stream(&entries, 3);
    assert_eq!(three.path(), Some("/next"));
}

fn grpc_frame(msg: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend((msg.len() as u32).to_be_bytes());
    v.extend(msg);
    v
}

fn grpc_call(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "svc:50051"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("x-request-id", "r1"),
    ]
}

#[test]
fn grpc_unary_streaming_and_error_calls() {
    use proto::v1::{GrpcRequest, GrpcResponse};
    let mut s = Script::prior_knowledge();
    // Unary: {1: "world"} -> {1: "hello world"}.
    s.request(1, &grpc_call("/helloworld.Greeter/SayHello"), false);
    s.data(C, 1, &grpc_frame(b"\x0a\x05world"), true);
    s.response(
        1,
        &[(":status", "200"), ("content-type", "application/grpc")],
        false,
    );
    // The message split across two DATA frames.
    let m = grpc_frame(b"\x0a\x0bhello world");
    s.data(S, 1, &m[..3], false);
    s.data(S, 1, &m[3..], false);
    s.response(1, &[("grpc-status", "0")], true);
    // Server streaming: three messages in one DATA frame and one more.
    s.request(3, &grpc_call("/pkg.Feed/Watch"), false);
    s.data(C, 3, &grpc_frame(b"\x08\x03"), true);
    s.response(
        3,
        &[(":status", "200"), ("content-type", "application/grpc")],
        false,
    );
    let mut three = Vec::new();
    for i in 0..3u8 {
        three.extend(grpc_frame(&[0x08, i]));
    }
    s.data(S, 3, &three, false);
    s.data(S, 3, &grpc_frame(&[0x08, 9]), false);
    s.response(3, &[("grpc-status", "0"), ("grpc-message", "")], true);
    // A failure answered trailers-only.
    s.request(5, &grpc_call("/pkg.Feed/Missing"), false);
    s.data(C, 5, &grpc_frame(b""), true);
    s.response(
        5,
        &[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "12"),
            ("grpc-message", "unknown%20method"),
        ],
        true,
    );
    let entries = s.run();
    assert_eq!(entries.len(), 3);
    let calls = |e: &Entry| -> (GrpcRequest, GrpcResponse) {
        assert_eq!(e.protocol, Protocol::Grpc as i32);
        match (
            e.request.clone().and_then(|r| r.kind),
            e.response.clone().and_then(|r| r.kind),
        ) {
            (Some(request::Kind::Grpc(q)), Some(response::Kind::Grpc(p))) => (*q, *p),
            other => panic!("not gRPC: {other:?}"),
        }
    };
    let unary = by_stream(&entries, 1);
    let (q, p) = calls(unary);
    assert_eq!(
        (q.service.as_str(), q.method.as_str()),
        ("helloworld.Greeter", "SayHello")
    );
    assert_eq!(unary.method(), Some("SayHello"));
    assert_eq!(unary.path(), Some("/helloworld.Greeter/SayHello"));
    assert_eq!(unary.status(), Some(0));
    assert_eq!(header(&q.headers, "x-request-id"), Some("r1"));
    assert_eq!(q.messages[0].fields[0].text, "world");
    assert_eq!(p.messages.len(), 1);
    assert_eq!(p.messages[0].fields[0].text, "hello world");
    assert_eq!(p.status_name, "OK");
    let (_, p) = calls(by_stream(&entries, 3));
    assert_eq!(p.message_count, 4);
    let values: Vec<u64> = p.messages.iter().map(|m| m.fields[0].scalar).collect();
    assert_eq!(values, [0, 1, 2, 9]);
    let failed = by_stream(&entries, 5);
    let (q, p) = calls(failed);
    assert_eq!(q.messages[0].length, 0);
    assert_eq!(failed.status(), Some(12));
    assert_eq!(p.status_name, "UNIMPLEMENTED");
    assert_eq!(p.message, "unknown method");
}

/// Picked up mid-connection, a call's header block refers to table entries
/// the capture never saw, but still carries `content-type: application/grpc`
/// as a literal: that is readable, and the call is gRPC, not plain HTTP/2.
#[test]
fn a_grpc_call_picked_up_midstream_is_grpc_by_its_literal_content_type() {
    let mut s = Script::default();
    // Before the capture: the client's table learnt a session header.
    block(&mut s.client, &[(":method", "POST"), ("x-session", "s-1")]);
    s.send(S, frame(PING, 0, 0, &[1; 8]));
    // x-session now refers to the lost table; content-type comes after it, literal.
    let call = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/pkg.Svc/Call"),
        ("x-session", "s-1"),
        ("content-type", "application/grpc"),
    ];
    s.request(9, &call, false);
    s.data(C, 9, &grpc_frame(b"\x08\x01"), true);
    // The response's content type was indexed before the capture: nothing
    // on this side says gRPC.
    s.response(9, &[(":status", "200")], false);
    s.data(S, 9, &grpc_frame(b"\x08\x02"), false);
    s.response(9, &[("grpc-status", "0")], true);
    let entries = s.run_with(true, DissectConfig::default(), usize::MAX);
    let e = by_stream(&entries, 9);
    assert!(e.flags.contains(&"hpack_unknown".into()), "{:?}", e.flags);
    assert_eq!(e.protocol, Protocol::Grpc as i32, "{e:?}");
    assert_eq!(e.path(), Some("/pkg.Svc/Call"));
    assert_eq!(e.status(), Some(0));
}

/// A client cancels a call (RST_STREAM) while its response is already on
/// its way: the response is paired with the request, and the entry says
/// the stream was reset. A reset stream nobody answers still becomes an
/// entry, once the wait is over.
#[test]
fn a_response_after_the_clients_reset_is_paired_and_flagged() {
    let mut s = Script::prior_knowledge();
    s.request(1, &grpc_call("/pkg.Feed/Watch"), false);
    s.data(C, 1, &grpc_frame(b"\x08\x01"), true);
    s.request(3, &get("/abandoned"), true);
    s.send(C, frame(RST_STREAM, 0, 1, &8u32.to_be_bytes()));
    s.send(C, frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()));
    s.response(
        1,
        &[(":status", "200"), ("content-type", "application/grpc")],
        false,
    );
    s.data(S, 1, &grpc_frame(b"\x08\x02"), false);
    s.response(1, &[("grpc-status", "1")], true);
    let entries = s.run();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let call = by_stream(&entries, 1);
    assert_eq!(call.protocol, Protocol::Grpc as i32);
    assert!(
        call.flags.contains(&"reset:cancel".into()),
        "{:?}",
        call.flags
    );
    assert_eq!(call.status(), Some(1), "{call:?}");
    assert!(
        !call.flags.contains(&"no_response".into()),
        "{:?}",
        call.flags
    );
    let abandoned = by_stream(&entries, 3);
    assert!(abandoned.flags.contains(&"reset:cancel".into()));
    assert!(abandoned.flags.contains(&"no_response".into()));
}
