//! The amqp dissector's unit tests.

use super::*;
use crate::GenericFields;
use crate::testing::{Ev, Out, drive, flow};
use Direction::{ToClient as S, ToServer as C};
use proto::v1::Entry;

fn frame(ty: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![ty];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(FRAME_END);
    f
}

fn short(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

fn long(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

/// A method frame: class, method and the arguments' bytes, concatenated.
fn method(channel: u16, class: u16, id: u16, args: &[&[u8]]) -> Vec<u8> {
    let mut p = class.to_be_bytes().to_vec();
    p.extend_from_slice(&id.to_be_bytes());
    for a in args {
        p.extend_from_slice(a);
    }
    frame(FRAME_METHOD, channel, &p)
}

/// A content header with content-type, delivery-mode and one header.
fn content_header(channel: u16, size: u64) -> Vec<u8> {
    let mut p = 60u16.to_be_bytes().to_vec();
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&size.to_be_bytes());
    p.extend_from_slice(&0b1011_0000_0000_0000u16.to_be_bytes());
    p.extend_from_slice(&short("text/plain"));
    let mut table = short("x-trace");
    table.push(b'S');
    table.extend_from_slice(&long(b"abc"));
    p.extend_from_slice(&long(&table));
    p.push(2);
    frame(FRAME_HEADER, channel, &p)
}

type Script = Vec<(Direction, Vec<u8>)>;

const HEARTBEAT: &[u8] = &[8, 0, 0, 0, 0, 0, 0, FRAME_END];
const NO_TABLE: &[u8] = &[0, 0, 0, 0];

/// connection.start … open-ok and channel 1 opened.
fn handshake() -> Vec<(Direction, Vec<u8>)> {
    vec![
        (C, PROTOCOL_HEADER.to_vec()),
        (
            S,
            method(
                0,
                10,
                10,
                &[&[0, 9], NO_TABLE, &long(b"PLAIN AMQPLAIN"), &long(b"en_US")],
            ),
        ),
        (
            C,
            method(
                0,
                10,
                11,
                &[
                    NO_TABLE,
                    &short("PLAIN"),
                    &long(b"\0guest\0s3cret"),
                    &short("en_US"),
                ],
            ),
        ),
        (
            S,
            method(
                0,
                10,
                30,
                &[&[0, 0x07, 0xff], &131072u32.to_be_bytes(), &[0, 60]],
            ),
        ),
        (
            C,
            method(
                0,
                10,
                31,
                &[&[0, 0x07, 0xff], &131072u32.to_be_bytes(), &[0, 60]],
            ),
        ),
        (C, method(0, 10, 40, &[&short("/"), &short(""), &[0]])),
        (S, method(0, 10, 41, &[&short("")])),
        (C, method(1, 20, 10, &[&short("")])),
        (S, method(1, 20, 11, &[&long(b"")])),
    ]
}

fn publish(channel: u16, rk: &str, body: &[&[u8]]) -> Vec<(Direction, Vec<u8>)> {
    let size = body.iter().map(|b| b.len() as u64).sum();
    let mut v = vec![
        (
            C,
            method(channel, 60, 40, &[&[0, 0], &short(""), &short(rk), &[0]]),
        ),
        (C, content_header(channel, size)),
    ];
    v.extend(body.iter().map(|b| (C, frame(FRAME_BODY, channel, b))));
    v
}

fn run(script: &[(Direction, Vec<u8>)], bytewise: bool, config: &DissectConfig) -> Out {
    let f = flow(1, 5672, false);
    let events: Vec<Ev> = script.iter().map(|(d, b)| Ev::Data(*d, b)).collect();
    Out::collect("amqp", drive(new(&f, config, None), &f, &events, bytewise))
}

fn amqp(e: &Entry) -> (Option<&AmqpMethod>, Option<&AmqpMethod>) {
    let req = match e.request.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(request::Kind::Amqp(m)) => Some(m.as_ref()),
        _ => None,
    };
    let resp = match e.response.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(response::Kind::Amqp(m)) => Some(m.as_ref()),
        _ => None,
    };
    (req, resp)
}

/// Each entry as "request -> response" method names.
fn summary(out: &Out) -> Vec<String> {
    out.entries
        .iter()
        .map(|e| {
            let (q, p) = amqp(e);
            let name = |m: Option<&AmqpMethod>| m.map_or("-".to_string(), |m| m.method.clone());
            format!("{} -> {}", name(q), name(p))
        })
        .collect()
}

#[test]
fn conversations_pair_per_channel_in_order() {
    let mut everything = handshake();
    everything.extend([
        (
            C,
            method(1, 50, 10, &[&[0, 0], &short("jobs"), &[0b10], NO_TABLE]),
        ),
        (
            S,
            method(1, 50, 11, &[&short("jobs"), &[0, 0, 0, 0], &[0, 0, 0, 0]]),
        ),
        (C, HEARTBEAT.to_vec()),
        (S, HEARTBEAT.to_vec()),
    ]);
    everything.extend(publish(1, "jobs", &[b"hello ", b"world"]));
    everything.extend([
        (C, method(1, 60, 10, &[&[0, 0, 0, 0], &[0, 10], &[0]])),
        (S, method(1, 60, 11, &[])),
        (
            C,
            method(
                1,
                60,
                20,
                &[&[0, 0], &short("jobs"), &short(""), &[0], NO_TABLE],
            ),
        ),
        (S, method(1, 60, 21, &[&short("ctag-1")])),
        (
            S,
            method(
                1,
                60,
                60,
                &[
                    &short("ctag-1"),
                    &1u64.to_be_bytes(),
                    &[0],
                    &short(""),
                    &short("jobs"),
                ],
            ),
        ),
        (S, content_header(1, 3)),
        (S, frame(FRAME_BODY, 1, b"one")),
        (C, method(1, 60, 80, &[&1u64.to_be_bytes(), &[0]])),
        (C, method(1, 60, 70, &[&[0, 0], &short("jobs"), &[1]])),
        (
            S,
            method(
                1,
                60,
                71,
                &[
                    &2u64.to_be_bytes(),
                    &[0],
                    &short(""),
                    &short("jobs"),
                    &[0, 0, 0, 0],
                ],
            ),
        ),
        (S, content_header(1, 0)),
        (C, method(1, 60, 70, &[&[0, 0], &short("jobs"), &[1]])),
        (S, method(1, 60, 72, &[&short("")])),
        (C, method(1, 85, 10, &[&[0]])),
        (S, method(1, 85, 11, &[])),
        (
            C,
            method(1, 20, 40, &[&[0, 200], &short("bye"), &[0, 0, 0, 0]]),
        ),
        (S, method(1, 20, 41, &[])),
        (
            C,
            method(0, 10, 50, &[&[0, 200], &short("Goodbye"), &[0, 0, 0, 0]]),
        ),
        (S, method(0, 10, 51, &[])),
    ]);
    let want = [
        "connection.start -> connection.start-ok",
        "connection.tune -> connection.tune-ok",
        "connection.open -> connection.open-ok",
        "channel.open -> channel.open-ok",
        "queue.declare -> queue.declare-ok",
        "basic.publish -> -",
        "basic.qos -> basic.qos-ok",
        "basic.consume -> basic.consume-ok",
        "- -> basic.deliver",
        "basic.ack -> -",
        "basic.get -> basic.get-ok",
        "basic.get -> basic.get-empty",
        "confirm.select -> confirm.select-ok",
        "channel.close -> channel.close-ok",
        "connection.close -> connection.close-ok",
    ];
    for bytewise in [false, true] {
        let out = run(&everything, bytewise, &DissectConfig::default());
        assert_eq!(out.errors, Vec::<String>::new(), "bytewise {bytewise}");
        assert_eq!(summary(&out), want, "bytewise {bytewise}");
        for e in &out.entries {
            assert!(e.flags.is_empty(), "{:?}: {:?}", e.id, e.flags);
            assert!(!format!("{e:?}").contains("s3cret"), "credentials kept");
        }
        let publish = &out.entries[5];
        let (Some(m), None) = amqp(publish) else {
            panic!("publish is a request only")
        };
        let body = m.body.as_ref().unwrap();
        assert_eq!(body.data, b"hello world");
        assert_eq!((body.wire_size, body.truncated), (11, false));
        assert_eq!(m.routing_key, "jobs");
        assert_eq!(publish.method(), Some("basic.publish"));
        assert_eq!(publish.path(), Some("/jobs"));
        let props: Vec<(&str, &str)> = m
            .properties
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(
            props,
            [
                ("content-type", "text/plain"),
                ("headers.x-trace", "abc"),
                ("delivery-mode", "2")
            ]
        );
        let deliver = amqp(&out.entries[8]).1.unwrap();
        assert_eq!(
            (deliver.consumer_tag.as_str(), deliver.delivery_tag),
            ("ctag-1", 1)
        );
        assert_eq!(deliver.body.as_ref().unwrap().data, b"one");
        assert_eq!(deliver.sender, "server");
        let get_ok = amqp(&out.entries[10]).1.unwrap();
        assert_eq!(get_ok.delivery_tag, 2);
        assert_eq!(out.entries[4].path(), Some("jobs"));
        assert_eq!(out.entries[4].status(), Some(0));
        assert_eq!(out.entries[14].status(), Some(200));
        assert_eq!(out.entries[4].stream_id, 1);
    }
}

#[test]
fn bad_input_is_bounded_and_resynchronises() {
    let declare = || {
        vec![
            (
                C,
                method(1, 50, 10, &[&[0, 0], &short("q"), &[0], NO_TABLE]),
            ),
            (S, method(1, 50, 11, &[&short("q"), &[0; 4], &[0; 4]])),
        ]
    };
    let huge = vec![(C, vec![FRAME_BODY, 0, 1, 0xff, 0xff, 0xff, 0xf0, 1, 2, 3])];
    let bad_end = vec![(C, {
        let mut f = method(1, 60, 80, &[&1u64.to_be_bytes(), &[0]]);
        *f.last_mut().unwrap() = 0;
        f
    })];
    let unknown = vec![(C, frame(FRAME_METHOD, 1, &[0, 99, 0, 1]))];
    let cases: [(&str, Script, usize); 3] = [
        ("huge frame size", huge, 1),
        ("missing frame end", bad_end, 1),
        ("unknown method", unknown, 1),
    ];
    for (name, bad, errors) in cases {
        let mut script = handshake();
        script.extend(bad);
        script.extend(declare());
        let out = run(&script, false, &DissectConfig::default());
        assert_eq!(out.errors.len(), errors, "{name}: {:?}", out.errors);
        let s = summary(&out);
        assert_eq!(
            s.last().map(String::as_str),
            Some("queue.declare -> queue.declare-ok"),
            "{name}: {s:?}"
        );
    }
}

#[test]
fn body_is_capped_and_cut_content_is_flagged() {
    let config = DissectConfig {
        max_body: 4,
        ..Default::default()
    };
    let mut script = handshake();
    script.extend(publish(1, "k", &[b"0123456789", b"abc"]));
    // A publish whose body never arrives.
    script.extend(publish(1, "k", &[]).into_iter().take(1));
    let out = run(&script, false, &config);
    let publishes: Vec<&AmqpMethod> = out
        .entries
        .iter()
        .filter_map(|e| amqp(e).0)
        .filter(|m| m.method == "basic.publish")
        .collect();
    assert_eq!(publishes.len(), 2);
    let body = publishes[0].body.as_ref().unwrap();
    assert_eq!(
        (body.data.as_slice(), body.wire_size, body.truncated),
        (&b"0123"[..], 13, true)
    );
    let cut = out
        .entries
        .iter()
        .find(|e| e.flags.contains(&"truncated".to_string()));
    assert!(cut.is_some());
}

#[test]
fn lost_bytes_inside_a_body_keep_the_framing() {
    let f = flow(1, 5672, false);
    let hs = handshake();
    let mut events: Vec<Ev> = hs.iter().map(|(d, b)| Ev::Data(*d, b)).collect();
    let m = method(1, 60, 40, &[&[0, 0], &short("x"), &short("k"), &[0]]);
    let h = content_header(1, 10);
    let b = frame(FRAME_BODY, 1, b"0123456789");
    events.extend([
        Ev::Data(C, &m),
        Ev::Data(C, &h),
        Ev::Data(C, &b[..9]),
        Ev::Gap(C, 4),
        Ev::Data(C, &b[13..]),
    ]);
    let declare = method(1, 50, 10, &[&[0, 0], &short("q"), &[0], NO_TABLE]);
    events.push(Ev::Data(C, &declare));
    let out = Out::collect(
        "amqp",
        drive(new(&f, &DissectConfig::default(), None), &f, &events, false),
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let p = out
        .entries
        .iter()
        .find_map(|e| amqp(e).0.filter(|m| m.method == "basic.publish"))
        .unwrap();
    let body = p.body.as_ref().unwrap();
    assert_eq!(
        (body.data.as_slice(), body.truncated),
        (&b"016789"[..], true)
    );
    assert!(summary(&out).contains(&"queue.declare -> -".to_string()));
}

#[test]
fn unanswered_methods_are_bounded() {
    let config = DissectConfig {
        max_pending: 2,
        ..Default::default()
    };
    let mut script = handshake();
    for q in ["a", "b", "c"] {
        script.push((C, method(1, 50, 10, &[&[0, 0], &short(q), &[0], NO_TABLE])));
    }
    // No-wait: nothing to wait for.
    script.push((
        C,
        method(1, 50, 10, &[&[0, 0], &short("d"), &[0b1_0000], NO_TABLE]),
    ));
    script.push((S, method(1, 50, 11, &[&short("b"), &[0; 4], &[0; 4]])));
    let out = run(&script, false, &config);
    assert_eq!(out.dropped, 1);
    let queues: Vec<(String, String, bool)> = out
        .entries
        .iter()
        .filter_map(|e| {
            let (q, p) = amqp(e);
            let q = q?;
            (q.class == "queue").then(|| {
                let reply = p.map_or("-".into(), |p| p.method.clone());
                (
                    q.queue.clone(),
                    reply,
                    e.flags.iter().any(|f| f == "no_response"),
                )
            })
        })
        .collect();
    let want = [
        ("a", "-", true),
        ("d", "-", false),
        ("b", "queue.declare-ok", false),
        ("c", "-", true),
    ];
    let want: Vec<(String, String, bool)> = want
        .iter()
        .map(|(q, r, f)| (q.to_string(), r.to_string(), *f))
        .collect();
    assert_eq!(queues, want);
}

#[test]
fn midstream_starts_at_the_first_well_formed_frame() {
    let f = flow(1, 5672, true);
    let mut tail = b"rest of an earlier body".to_vec();
    tail.push(FRAME_END);
    tail.extend(method(2, 60, 70, &[&[0, 0], &short("q"), &[0]]));
    let reply = method(2, 60, 72, &[&short("")]);
    let events = [Ev::Data(C, &tail), Ev::Data(S, &reply)];
    let out = Out::collect(
        "amqp",
        drive(new(&f, &DissectConfig::default(), None), &f, &events, false),
    );
    assert_eq!(summary(&out), ["basic.get -> basic.get-empty"]);
    assert!(out.entries[0].flags.contains(&"midstream".to_string()));
    assert_eq!(out.entries[0].path(), Some("q"));
}

#[test]
fn probe_claims_the_header_and_frame_runs() {
    let declare = method(1, 50, 10, &[&[0, 0], &short("q"), &[0], NO_TABLE]);
    let mut two = declare.clone();
    two.extend_from_slice(HEARTBEAT);
    let start = method(
        0,
        10,
        10,
        &[&[0, 9], NO_TABLE, &long(b"PLAIN"), &long(b"en_US")],
    );
    let mut mid = b"tail of something".to_vec();
    mid.extend_from_slice(&two);
    let cases: &[(Direction, &[u8], bool, Claim)] = &[
        (C, PROTOCOL_HEADER, false, Claim::Yes),
        (C, b"AMQ", false, Claim::NeedMore),
        (C, b"AMQP\x01\x01\x00\x0a", false, Claim::No),
        (C, b"GET / HTTP/1.1\r\n", false, Claim::No),
        (S, &start, false, Claim::Yes),
        (S, &start[..5], false, Claim::NeedMore),
        (C, &two, false, Claim::No),
        (C, &two, true, Claim::Yes),
        (C, &mid, true, Claim::Yes),
        (C, &declare, true, Claim::NeedMore),
        (C, &[0xffu8; 200], true, Claim::No),
    ];
    for (i, (dir, bytes, midstream, want)) in cases.iter().enumerate() {
        assert_eq!(probe(*dir, bytes, *midstream), *want, "case {i}");
    }
}
