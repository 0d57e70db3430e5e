//! The websocket dissector's unit tests.

use super::*;
use crate::GenericFields;
use crate::flow::FlowHandler;
use crate::testing::{Ev, Out, drive, entries, fin, flow};
use flate2::{Compress, Compression, FlushCompress};
use proto::v1::Entry;
use std::sync::Arc;

const C: Direction = Direction::ToServer;
const S: Direction = Direction::ToClient;
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn handoff(extensions: Option<&str>) -> Handoff {
    Handoff {
        protocol: "websocket",
        held: Vec::new(),
        upgrade_entry: Some("0000000000000007-2".into()),
        entries_made: 3,
        upgrade_path: Some("/chat?room=1".into()),
        upgrade_headers: extensions
            .map(|v| Header {
                name: "Sec-WebSocket-Extensions".into(),
                value: v.into(),
            })
            .into_iter()
            .collect(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Len {
    Minimal,
    Ext16,
    Ext64,
}

/// A frame as an endpoint sends it: client frames masked with [`KEY`].
fn frame_with(dir: Direction, fin: bool, rsv1: bool, op: u8, payload: &[u8], len: Len) -> Vec<u8> {
    let mut b = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | op];
    let mask = if dir == C { 0x80 } else { 0 };
    let n = payload.len();
    match len {
        Len::Minimal if n < 126 => b.push(mask | n as u8),
        Len::Minimal if n <= 0xffff => {
            b.push(mask | 126);
            b.extend_from_slice(&(n as u16).to_be_bytes());
        }
        Len::Ext16 => {
            b.push(mask | 126);
            b.extend_from_slice(&(n as u16).to_be_bytes());
        }
        Len::Minimal | Len::Ext64 => {
            b.push(mask | 127);
            b.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if dir == C {
        b.extend_from_slice(&KEY);
        b.extend(payload.iter().enumerate().map(|(i, x)| x ^ KEY[i % 4]));
    } else {
        b.extend_from_slice(payload);
    }
    b
}

fn frame(dir: Direction, fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(dir, fin, false, op, payload, Len::Minimal)
}

fn close(dir: Direction, code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    frame(dir, true, CLOSE, &p)
}

/// A message compressed as permessage-deflate sends it: a sync flush without its tail.
fn deflate(c: &mut Compress, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    let start = c.total_in();
    loop {
        let done = (c.total_in() - start) as usize;
        out.reserve(4096);
        c.compress_vec(&msg[done..], &mut out, FlushCompress::Sync)
            .unwrap();
        if (c.total_in() - start) as usize == msg.len() && out.capacity() > out.len() {
            break;
        }
    }
    assert!(out.ends_with(&DEFLATE_TAIL));
    out.truncate(out.len() - 4);
    out
}

fn run_with(events: &[Ev], config: &DissectConfig, h: &Handoff, bytewise: bool) -> Out {
    let flow = flow(7, 8765, false);
    let emitted = drive(new(&flow, config, Some(h)), &flow, events, bytewise);
    let out = Out::collect("websocket", emitted);
    assert_eq!(out.dropped, 0);
    // Numbered on from the HTTP entries, every one tied to the upgrade.
    for (i, e) in out.entries.iter().enumerate() {
        assert_eq!(e.id, format!("{:016x}-{}", 7, i + 3));
        assert_eq!(e.protocol, Protocol::Websocket as i32);
        assert_eq!(msg(e).upgrade_entry, "0000000000000007-2");
        assert_eq!(msg(e).path, "/chat?room=1");
        assert_eq!(e.elapsed_ns, None);
    }
    out
}

fn run_h(events: &[Ev], h: &Handoff) -> Out {
    let config = DissectConfig::default();
    let whole = run_with(events, &config, h, false);
    let bytewise = run_with(events, &config, h, true);
    // Segmentation never changes what is seen (timestamps aside).
    assert_eq!(summary(&whole), summary(&bytewise), "byte-by-byte differs");
    assert_eq!(whole.errors, bytewise.errors);
    whole
}

fn run(events: &[Ev]) -> Out {
    run_h(events, &handoff(None))
}

/// The message of an entry, from whichever side holds it; the other side is absent.
fn msg(e: &Entry) -> &WebSocketMessage {
    match (
        e.request.as_ref().and_then(|r| r.kind.as_ref()),
        e.response.as_ref().and_then(|r| r.kind.as_ref()),
    ) {
        (Some(request::Kind::Websocket(m)), None) => {
            assert_eq!(m.direction, "client");
            assert_eq!(e.response_size, 0);
            m
        }
        (None, Some(response::Kind::Websocket(m))) => {
            assert_eq!(m.direction, "server");
            assert_eq!(e.request_size, 0);
            m
        }
        other => panic!("not one websocket message: {other:?}"),
    }
}

/// (direction, opcode, payload, close code, fragments, flags) per entry.
type Summary = (String, String, Vec<u8>, Option<u32>, u32, Vec<String>);

fn summary(o: &Out) -> Vec<Summary> {
    o.entries
        .iter()
        .map(|e| {
            let m = msg(e);
            (
                m.direction.clone(),
                m.opcode.clone(),
                m.payload.clone(),
                m.close_code,
                m.fragments,
                e.flags.clone(),
            )
        })
        .collect()
}

fn row(dir: &str, op: &str, payload: &[u8], code: Option<u32>, frags: u32) -> Summary {
    (
        dir.into(),
        op.into(),
        payload.to_vec(),
        code,
        frags,
        Vec::new(),
    )
}

#[test]
fn probe_never_claims() {
    for first in [
        &b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"[..],
        b"GET / HTTP/1.1\r\n",
        b"",
    ] {
        assert_eq!(probe(C, first, false), Claim::No);
        assert_eq!(probe(S, first, true), Claim::No);
    }
}

#[test]
fn messages_each_way_and_control_frames() {
    // (events, expected entries)
    let hello = frame(C, true, TEXT, b"hello");
    let world = frame(S, true, TEXT, "wörld".as_bytes());
    let bin_c = frame(C, true, BINARY, &[0, 1, 2, 0xff]);
    let bin_s = frame(S, true, BINARY, &[0xfe; 3]);
    let empty = frame(C, true, TEXT, b"");
    let ping = frame(C, true, PING, b"p1");
    let pong = frame(S, true, PONG, b"p1");
    let close_s = close(S, 1000, "bye");
    let close_c = close(C, 1000, "");
    let table: Vec<(Vec<Ev>, Vec<Summary>)> = vec![
        (
            vec![Ev::Data(C, &hello), Ev::Data(S, &world)],
            vec![
                row("client", "text", b"hello", None, 1),
                row("server", "text", "wörld".as_bytes(), None, 1),
            ],
        ),
        (
            vec![
                Ev::Data(C, &bin_c),
                Ev::Data(S, &bin_s),
                Ev::Data(C, &empty),
            ],
            vec![
                row("client", "binary", &[0, 1, 2, 0xff], None, 1),
                row("server", "binary", &[0xfe; 3], None, 1),
                row("client", "text", b"", None, 1),
            ],
        ),
        (
            vec![
                Ev::Data(C, &ping),
                Ev::Data(S, &pong),
                Ev::Data(S, &close_s),
                Ev::Data(C, &close_c),
            ],
            vec![
                row("client", "ping", b"p1", None, 1),
                row("server", "pong", b"p1", None, 1),
                row("server", "close", b"", Some(1000), 1),
                row("client", "close", b"", Some(1000), 1),
            ],
        ),
    ];
    for (events, want) in table {
        let out = run(&events);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(summary(&out), want);
    }
    // Sizes: a client frame's header is 2 bytes plus the 4-byte key.
    let out = run(&[Ev::Data(C, &hello), Ev::Data(S, &close_s)]);
    assert_eq!(out.entries[0].request_size, 2 + 4 + 5);
    assert_eq!(msg(&out.entries[0]).payload_size, 5);
    assert_eq!(out.entries[1].response_size, 2 + 5);
    assert_eq!(msg(&out.entries[1]).close_reason, "bye");
    // The generic fields: opcode, the upgrade's path, the close code, whoever sent it.
    let server_close = &out.entries[1];
    assert!(server_close.request.is_none());
    assert_eq!(server_close.method(), Some("close"));
    assert_eq!(server_close.path(), Some("/chat?room=1"));
    assert_eq!(server_close.status(), Some(1000));
    assert_eq!(out.entries[0].method(), Some("text"));
    assert_eq!(out.entries[0].status(), None);
}

#[test]
fn length_forms() {
    // (payload length, length form)
    let table = [
        (0, Len::Minimal),
        (125, Len::Minimal),
        (126, Len::Minimal),
        (65535, Len::Minimal),
        (65536, Len::Minimal),
        (200_000, Len::Minimal),
        // Longer forms than needed are tolerated.
        (5, Len::Ext16),
        (5, Len::Ext64),
        (300, Len::Ext64),
    ];
    for (n, form) in table {
        for dir in [C, S] {
            let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let f = frame_with(dir, true, false, BINARY, &payload, form);
            let out = run(&[Ev::Data(dir, &f)]);
            assert!(out.errors.is_empty(), "{n} {form:?}: {:?}", out.errors);
            assert_eq!(out.entries.len(), 1);
            let m = msg(&out.entries[0]);
            assert_eq!(m.payload, payload, "{n} {form:?}");
            assert_eq!(m.payload_size, n as u64);
            let wire = out.entries[0].request_size + out.entries[0].response_size;
            assert_eq!(wire, f.len() as u64);
        }
    }
}

#[test]
fn headers_no_endpoint_sends_stop_the_direction() {
    let mut huge = vec![0x82, 0x7f];
    huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
    let mut msb = vec![0x82, 0x7f];
    msb.extend_from_slice(&(1u64 << 63).to_be_bytes());
    let long_ping = frame(S, true, PING, &[0; 126]);
    let fragmented_close = frame(S, false, CLOSE, b"");
    let reserved = frame(S, true, 0x3, b"x");
    let after = frame(S, true, TEXT, b"never seen");
    let ok = frame(C, true, TEXT, b"still parsed");
    // (bad bytes, reason)
    let table: [(&[u8], &str); 5] = [
        (&huge, "frame_too_long"),
        (&msb, "frame_too_long"),
        (&long_ping, "control_frame_too_long"),
        (&fragmented_close, "fragmented_control_frame"),
        (&reserved, "reserved_opcode"),
    ];
    for (bad, reason) in table {
        let out = run(&[Ev::Data(S, bad), Ev::Data(S, &after), Ev::Data(C, &ok)]);
        assert_eq!(out.errors, vec![reason.to_string()]);
        // The other direction goes on; this one is not parsed further.
        assert_eq!(
            summary(&out),
            vec![row("client", "text", b"still parsed", None, 1)]
        );
    }
}

#[test]
fn fragments_join_with_control_frames_between() {
    let f1 = frame(C, false, TEXT, b"frag");
    let ping = frame(C, true, PING, b"");
    let f2 = frame(C, false, CONTINUATION, b"men");
    let f3 = frame(C, true, CONTINUATION, b"ted");
    let s1 = frame(S, false, BINARY, &[1]);
    let s2 = frame(S, true, CONTINUATION, &[2]);
    let out = run(&[
        Ev::Data(C, &f1),
        Ev::Data(C, &ping),
        Ev::Data(S, &s1),
        Ev::Data(C, &f2),
        Ev::Data(S, &s2),
        Ev::Data(C, &f3),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(
        summary(&out),
        vec![
            row("client", "ping", b"", None, 1),
            row("server", "binary", &[1, 2], None, 2),
            row("client", "text", b"fragmented", None, 3),
        ]
    );
    let text = &out.entries[2];
    assert_eq!(text.request_size, (f1.len() + f2.len() + f3.len()) as u64);
    assert_eq!(msg(text).payload_size, 10);
    // Timed by the first fragment.
    assert_eq!(text.ts_ns, 1000);
}

#[test]
fn broken_fragment_sequences() {
    let orphan = frame(C, true, CONTINUATION, b"orphan");
    let first = frame(C, false, TEXT, b"first");
    let next = frame(C, true, TEXT, b"next");
    let out = run(&[
        Ev::Data(C, &orphan),
        Ev::Data(C, &first),
        Ev::Data(C, &next),
    ]);
    assert_eq!(
        out.errors,
        vec!["continuation_without_message", "unfinished_message"]
    );
    let s = summary(&out);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].2, b"first");
    assert_eq!(s[0].5, vec!["malformed:unfinished_message", "truncated"]);
    assert_eq!(s[1], row("client", "text", b"next", None, 1));
}

#[test]
fn close_payloads() {
    let with_reason = close(S, 4000, "custom reason");
    let bare = frame(S, true, CLOSE, b"");
    let one = frame(S, true, CLOSE, &[3]);
    let going_away = close(C, 1001, "");
    let out = run(&[
        Ev::Data(S, &with_reason),
        Ev::Data(S, &bare),
        Ev::Data(S, &one),
        Ev::Data(C, &going_away),
    ]);
    let m: Vec<(Option<u32>, &str)> = out
        .entries
        .iter()
        .map(|e| (msg(e).close_code, msg(e).close_reason.as_str()))
        .collect();
    assert_eq!(
        m,
        vec![
            (Some(4000), "custom reason"),
            (None, ""),
            (None, ""),
            (Some(1001), ""),
        ]
    );
    assert_eq!(out.entries[2].flags, vec!["malformed:close_payload"]);
    assert_eq!(out.entries[1].status(), None);
    assert_eq!(out.entries[3].status(), Some(1001));
}

#[test]
fn payloads_past_the_cap_are_counted_not_kept() {
    let config = DissectConfig {
        max_body: 8,
        ..Default::default()
    };
    // "aéééé" is 9 bytes: cut at 8, inside the last "é".
    let long = frame(C, true, BINARY, &[7; 100]);
    let text = frame(S, true, TEXT, "aéééé".as_bytes());
    let frags = [
        frame(S, false, TEXT, b"12345"),
        frame(S, true, CONTINUATION, b"67890"),
    ];
    let ping = frame(C, true, PING, &[1; 100]);
    let close_long = close(S, 1001, "a reason longer than the cap");
    let h = handoff(None);
    for bytewise in [false, true] {
        let out = run_with(
            &[
                Ev::Data(C, &long),
                Ev::Data(S, &text),
                Ev::Data(S, &frags[0]),
                Ev::Data(S, &frags[1]),
                Ev::Data(C, &ping),
                Ev::Data(S, &close_long),
            ],
            &config,
            &h,
            bytewise,
        );
        let m: Vec<_> = out.entries.iter().map(msg).collect();
        assert_eq!(m[0].payload, [7; 8]);
        assert_eq!(m[0].payload_size, 100);
        assert!(m[0].truncated);
        assert_eq!(out.entries[0].flags, vec!["truncated"]);
        // Cut inside "é": the whole characters stay, so it is still text.
        assert_eq!(m[1].payload, "aééé".as_bytes());
        assert!(m[1].truncated);
        assert_eq!(m[2].payload, b"12345678");
        assert_eq!(m[2].payload_size, 10);
        assert_eq!(m[3].payload, [1; 8]);
        assert!(m[3].truncated);
        // A close's code and reason come from its whole payload.
        assert_eq!(m[4].close_code, Some(1001));
        assert_eq!(m[4].close_reason, "a reason longer than the cap");
    }
}

#[test]
fn invalid_utf8_text_is_flagged() {
    let bad = frame(S, true, TEXT, &[0x61, 0xff, 0x62]);
    let out = run(&[Ev::Data(S, &bad)]);
    assert_eq!(out.entries[0].flags, vec!["malformed:text_not_utf8"]);
    assert_eq!(msg(&out.entries[0]).payload, [0x61, 0xff, 0x62]);
}

#[test]
fn gaps() {
    let long = frame(S, true, TEXT, &[b'a'; 100]);
    let next = frame(S, true, TEXT, b"next");
    // A gap inside a payload: the frame's length still finds the next frame.
    let out = run(&[
        Ev::Data(S, &long[..30]),
        Ev::Gap(S, 50),
        Ev::Data(S, &long[80..]),
        Ev::Data(S, &next),
    ]);
    assert!(out.errors.is_empty());
    let s = summary(&out);
    assert_eq!(s[0].2, vec![b'a'; 28 + 22]);
    assert_eq!(s[0].5, vec!["gap", "truncated"]);
    assert_eq!(msg(&out.entries[0]).payload_size, 100);
    assert_eq!(s[1], row("server", "text", b"next", None, 1));
    // A gap through the payload's end to its last byte, masked: the key's position follows.
    let c = frame(C, true, TEXT, b"0123456789");
    let c2 = frame(C, true, TEXT, b"after");
    let out = run(&[
        Ev::Data(C, &c[..9]),
        Ev::Gap(C, 3),
        Ev::Data(C, &c[12..]),
        Ev::Data(C, &c2),
    ]);
    let s = summary(&out);
    assert_eq!(s[0].2, b"0126789");
    assert_eq!(s[1].2, b"after");
    // A gap past the frame's end loses the framing: what was in progress is
    // emitted, later frames of that direction are not parsed.
    let out = run(&[
        Ev::Data(S, &long[..30]),
        Ev::Gap(S, 200),
        Ev::Data(S, &next),
    ]);
    assert_eq!(out.errors, vec!["framing_lost_in_gap"]);
    let s = summary(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].5, vec!["gap", "truncated"]);
    // At a frame boundary too.
    let out = run(&[Ev::Data(S, &next), Ev::Gap(S, 10), Ev::Data(S, &next)]);
    assert_eq!(out.errors, vec!["framing_lost_in_gap"]);
    assert_eq!(out.entries.len(), 1);
}

#[test]
fn connection_ends_inside_a_message() {
    let first = frame(C, false, TEXT, b"part");
    let long = frame(S, true, BINARY, &[1; 50]);
    let out = run(&[Ev::Data(C, &first), Ev::Data(S, &long[..20])]);
    let s = summary(&out);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].2, b"part");
    assert_eq!(s[0].5, vec!["incomplete", "truncated"]);
    assert_eq!(s[1].2, [1; 18]);
    assert_eq!(s[1].5, vec!["incomplete", "truncated"]);
    // A header cut short makes nothing.
    let out = run(&[Ev::Data(S, &long[..1])]);
    assert!(out.entries.is_empty() && out.errors.is_empty());
}

#[test]
fn permessage_deflate() {
    let negotiated = handoff(Some("permessage-deflate; client_max_window_bits=15"));
    let mut cc = Compress::new(Compression::default(), false);
    let mut sc = Compress::new(Compression::default(), false);
    let text = "the same words, the same words, the same words".as_bytes();
    let c1 = frame_with(C, true, true, TEXT, &deflate(&mut cc, text), Len::Minimal);
    // The second message refers back to the first one's window.
    let c2 = frame_with(C, true, true, TEXT, &deflate(&mut cc, text), Len::Minimal);
    let plain = frame(C, true, TEXT, b"not compressed");
    let s1_body = deflate(&mut sc, &[9; 1000]);
    let (a, b) = s1_body.split_at(s1_body.len() / 2);
    let s1 = [
        frame_with(S, false, true, BINARY, a, Len::Minimal),
        frame(S, true, CONTINUATION, b),
    ];
    let events = [
        Ev::Data(C, &c1),
        Ev::Data(S, &s1[0]),
        Ev::Data(C, &c2),
        Ev::Data(S, &s1[1]),
        Ev::Data(C, &plain),
    ];
    let out = run_h(&events, &negotiated);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let m: Vec<_> = out.entries.iter().map(msg).collect();
    assert_eq!(m.len(), 4);
    // The server's message ends after the client's second.
    for (i, want) in [(0, text), (1, text), (3, b"not compressed".as_slice())] {
        assert_eq!(m[i].direction, "client");
        assert_eq!(m[i].payload, want, "{i}");
    }
    assert!(m[0].compressed && m[0].inflated);
    assert!(m[1].payload_size < m[0].payload_size, "no back-reference");
    assert!(!m[3].compressed && !m[3].inflated);
    assert_eq!(m[2].payload, vec![9; 1000]);
    assert!(m[2].compressed && m[2].inflated);
    assert_eq!(m[2].fragments, 2);
    assert_eq!(m[2].payload_size, s1_body.len() as u64);
    assert!(out.entries.iter().all(|e| e.flags.is_empty()));

    // Not negotiated: shown as sent.
    let out = run_h(&events[..1], &handoff(None));
    let m = msg(&out.entries[0]);
    assert!(m.compressed && !m.inflated);
    assert_eq!(
        m.payload,
        deflate(&mut Compress::new(Compression::default(), false), text)
    );

    // A gap inside a compressed message loses the window: the next message
    // that refers to it is shown as sent.
    let out = run_h(
        &[
            Ev::Data(C, &c1[..8]),
            Ev::Gap(C, 2),
            Ev::Data(C, &c1[10..]),
            Ev::Data(C, &c2),
        ],
        &negotiated,
    );
    let m: Vec<_> = out.entries.iter().map(msg).collect();
    assert!(m[0].inflated && m[0].truncated);
    assert!(m[1].compressed && !m[1].inflated);
    // Unless the sender resets its window per message.
    let reset = handoff(Some("permessage-deflate; client_no_context_takeover"));
    let fresh = |msg: &[u8]| {
        let mut c = Compress::new(Compression::default(), false);
        frame_with(C, true, true, TEXT, &deflate(&mut c, msg), Len::Minimal)
    };
    let (f1, f2) = (fresh(text), fresh(b"second"));
    let out = run_h(
        &[
            Ev::Data(C, &f1[..8]),
            Ev::Gap(C, 2),
            Ev::Data(C, &f1[10..]),
            Ev::Data(C, &f2),
        ],
        &reset,
    );
    let m: Vec<_> = out.entries.iter().map(msg).collect();
    assert!(m[1].inflated);
    assert_eq!(m[1].payload, b"second");
}

#[test]
fn deflate_garbage_and_bombs_stay_bounded() {
    let negotiated = handoff(Some("permessage-deflate"));
    // Not deflate at all (a reserved block type).
    let garbage = frame_with(S, true, true, TEXT, &[0xff; 20], Len::Minimal);
    let out = run_h(&[Ev::Data(S, &garbage)], &negotiated);
    assert_eq!(out.entries[0].flags, vec!["malformed:inflate", "truncated"]);
    // Past MAX_INFLATED the message stops inflating (its kept bytes are the
    // cap's worth) and the window is lost for the next one.
    let mut c = Compress::new(Compression::best(), false);
    let bomb = deflate(&mut c, &vec![0; (MAX_INFLATED + (1 << 20)) as usize]);
    let bomb = frame_with(S, true, true, BINARY, &bomb, Len::Minimal);
    let small = frame_with(S, true, true, TEXT, &deflate(&mut c, b"ok"), Len::Minimal);
    let config = DissectConfig::default();
    let out = run_with(
        &[Ev::Data(S, &bomb), Ev::Data(S, &small)],
        &config,
        &negotiated,
        false,
    );
    let m: Vec<_> = out.entries.iter().map(msg).collect();
    assert_eq!(m[0].payload.len(), config.max_body);
    assert!(m[0].truncated && m[0].inflated);
    assert!(!m[1].inflated);
}

#[test]
fn extensions_header() {
    let h = |v: &str| {
        negotiated(&[Header {
            name: "sec-websocket-extensions".into(),
            value: v.into(),
        }])
    };
    assert_eq!(h("permessage-deflate"), Some(Deflate::default()));
    assert_eq!(
        h(
            "x-webkit-deflate-frame, PerMessage-Deflate; server_no_context_takeover ; client_max_window_bits=10"
        ),
        Some(Deflate {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
        })
    );
    assert_eq!(h("x-other"), None);
    assert_eq!(negotiated(&[]), None);
}

/// Through the connection handler: an HTTP/1 upgrade, then frames in the
/// same segment as the 101 and after it.
#[test]
fn handed_over_by_http1() {
    let flow = flow(7, 8765, false);
    let mut conn = super::super::Connection::new(Arc::new(DissectConfig::default()));
    let mut out = Vec::new();
    let req =
        b"GET /socket?v=2 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut c = Compress::new(Compression::default(), false);
    let mut resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
            .to_vec();
    resp.extend(frame_with(
        S,
        true,
        true,
        TEXT,
        &deflate(&mut c, b"welcome"),
        Len::Minimal,
    ));
    conn.on_data(&flow, C, 1, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut out);
    conn.on_data(
        &flow,
        S,
        2,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        &mut out,
    );
    conn.on_data(&flow, C, 3, req, &mut out);
    conn.on_data(&flow, S, 4, &resp, &mut out);
    conn.on_data(&flow, C, 5, &frame(C, true, TEXT, b"hi"), &mut out);
    conn.on_data(&flow, S, 6, &close(S, 1000, ""), &mut out);
    conn.on_close(&flow, &fin(7), &mut out);
    let entries = entries(out);
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "0000000000000007-0",
            "0000000000000007-1",
            "0000000000000007-2",
            "0000000000000007-3",
            "0000000000000007-4"
        ]
    );
    assert_eq!(entries[1].status(), Some(101));
    let ws: Vec<&WebSocketMessage> = entries[2..].iter().map(msg).collect();
    assert_eq!(ws[0].payload, b"welcome");
    assert!(ws[0].inflated);
    assert_eq!(ws[1].payload, b"hi");
    assert_eq!(ws[2].close_code, Some(1000));
    for m in ws {
        assert_eq!(m.upgrade_entry, "0000000000000007-1");
        assert_eq!(m.path, "/socket?v=2");
    }
}
