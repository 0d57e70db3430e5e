//! The dns dissector's unit tests.

use super::*;
use crate::GenericFields;
use crate::flow::CloseReason;
use std::net::SocketAddr;

// Hand-built wire format, so the tests do not trust the decoder's own encoder.

/// A name as labels: "a.bc" is 1 'a' 2 'b' 'c' 0.
fn name(n: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for l in n.split('.').filter(|l| !l.is_empty()) {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
    v
}

fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        v.extend_from_slice(&c.to_be_bytes());
    }
    v
}

fn rr(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut v = owner.to_vec();
    v.extend_from_slice(&rtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&ttl.to_be_bytes());
    v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    v.extend_from_slice(rdata);
    v
}

/// A pointer to the question's name, which starts right after the header.
const TO_QNAME: [u8; 2] = [0xc0, 12];
const QUERY_FLAGS: u16 = 0x0100; // RD
const RESPONSE_FLAGS: u16 = 0x8180; // QR RD RA

fn query(id: u16, qname: &str, qtype: u16) -> Vec<u8> {
    let mut v = header(id, QUERY_FLAGS, [1, 0, 0, 0]);
    v.extend(name(qname));
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v
}

/// A response to `query(id, qname, qtype)` with `rcode` and these answers.
fn response(id: u16, qname: &str, qtype: u16, rcode: u16, answers: &[Vec<u8>]) -> Vec<u8> {
    let mut v = query(id, qname, qtype);
    v[2..4].copy_from_slice(&(RESPONSE_FLAGS | rcode).to_be_bytes());
    v[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
    for a in answers {
        v.extend_from_slice(a);
    }
    v
}

fn flow() -> FlowInfo {
    FlowInfo {
        id: 7,
        client: SocketAddr::from(([127, 0, 0, 1], 40000)),
        server: SocketAddr::from(([127, 0, 0, 1], 5353)),
        first_ts_ns: 1_000,
        midstream: false,
        tls: false,
        outer: None,
    }
}

fn end() -> FlowEnd {
    FlowEnd {
        ts_ns: 99_000,
        reason: CloseReason::Idle,
        packets: [0; 2],
        bytes: [0; 2],
    }
}

fn config(max_pending: usize) -> DissectConfig {
    DissectConfig {
        max_pending,
        ..Default::default()
    }
}

fn entries(out: &[Emit]) -> Vec<&proto::v1::Entry> {
    out.iter()
        .filter_map(|e| match e {
            Emit::Entry(e) => Some(&**e),
            _ => None,
        })
        .collect()
}

fn parse_errors(out: &[Emit]) -> Vec<&str> {
    out.iter()
        .filter_map(|e| match e {
            Emit::ParseError { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect()
}

fn dns_req(e: &proto::v1::Entry) -> &DnsRequest {
    match e.request.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(request::Kind::Dns(r)) => r,
        other => panic!("not a DNS request: {other:?}"),
    }
}

fn dns_resp(e: &proto::v1::Entry) -> &DnsResponse {
    match e.response.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(response::Kind::Dns(r)) => r,
        other => panic!("not a DNS response: {other:?}"),
    }
}

/// Query at t=10 µs, response at t=25 µs over UDP; the one entry they make.
fn udp_exchange(q: &[u8], r: &[u8]) -> (proto::v1::Entry, Vec<String>) {
    let mut d = Dns::new(Transport::Udp, &config(8));
    let mut out = Vec::new();
    d.on_datagram(&flow(), Direction::ToServer, 10_000, q, &mut out);
    d.on_datagram(&flow(), Direction::ToClient, 25_000, r, &mut out);
    DatagramDissector::on_close(&mut d, &flow(), &end(), &mut out);
    let errors = parse_errors(&out).iter().map(|s| s.to_string()).collect();
    let es = entries(&out);
    assert_eq!(es.len(), 1, "{out:?}");
    (es[0].clone(), errors)
}

#[test]
fn answers_of_each_type_are_written_as_in_a_zone_file() {
    let target = name("web.example.com");
    let mut mx = 10u16.to_be_bytes().to_vec();
    mx.extend(name("mail.example.com"));
    let mut srv = Vec::new();
    for n in [5u16, 7, 8080] {
        srv.extend_from_slice(&n.to_be_bytes());
    }
    srv.extend(target.clone());
    let mut txt = vec![11];
    txt.extend_from_slice(b"hello world");
    txt.push(6);
    txt.extend_from_slice(b"se\"c\\\xff");
    let aaaa: [u8; 16] = "fd00::7".parse::<std::net::Ipv6Addr>().unwrap().octets();
    // (query type, its number, answer type number, rdata, expected data)
    let table: &[(&str, u16, u16, Vec<u8>, &str)] = &[
        ("A", 1, 1, vec![10, 0, 0, 7], "10.0.0.7"),
        ("AAAA", 28, 28, aaaa.to_vec(), "fd00::7"),
        ("CNAME", 5, 5, target.clone(), "web.example.com."),
        ("MX", 15, 15, mx, "10 mail.example.com."),
        ("TXT", 16, 16, txt, "\"hello world\" \"se\\\"c\\\\\\255\""),
        ("SRV", 33, 33, srv, "5 7 8080 web.example.com."),
        ("PTR", 12, 12, target, "web.example.com."),
    ];
    for (qtype, code, rtype, rdata, want) in table {
        let q = query(0x1234, "q.example.com", *code);
        let r = response(
            0x1234,
            "q.example.com",
            *code,
            0,
            &[rr(&TO_QNAME, *rtype, 300, rdata)],
        );
        let (e, errors) = udp_exchange(&q, &r);
        assert!(errors.is_empty(), "{qtype}: {errors:?}");
        assert_eq!(e.protocol, Protocol::Dns as i32);
        assert_eq!(e.method(), Some(*qtype));
        assert_eq!(e.path(), Some("q.example.com"));
        assert_eq!(e.status(), Some(0));
        assert_eq!(e.elapsed_ns, Some(15_000));
        assert_eq!(e.request_size, q.len() as u64);
        assert_eq!(e.response_size, r.len() as u64);
        assert!(e.flags.is_empty(), "{qtype}: {:?}", e.flags);
        let (req, resp) = (dns_req(&e), dns_resp(&e));
        assert_eq!((req.id, req.rd, req.qclass.as_str()), (0x1234, true, "IN"));
        assert_eq!(req.transport, "udp");
        assert_eq!(resp.rcode_name, "NOERROR");
        assert!(resp.ra && resp.rd && !resp.aa && !resp.tc);
        assert_eq!(resp.answers.len(), 1, "{qtype}");
        let a = &resp.answers[0];
        assert_eq!(
            (a.name.as_str(), a.rtype.as_str(), a.ttl, a.data.as_str()),
            ("q.example.com", *qtype, 300, *want),
            "{qtype}"
        );
    }
}

#[test]
fn error_rcodes_are_the_status() {
    let mut soa = name("ns.example.com");
    soa.extend(name("admin.example.com"));
    for n in [1u32, 3600, 600, 86400, 60] {
        soa.extend_from_slice(&n.to_be_bytes());
    }
    for (rcode, want) in [(3u16, "NXDOMAIN"), (2, "SERVFAIL"), (5, "REFUSED")] {
        let q = query(9, "missing.example.com", 1);
        let mut r = response(9, "missing.example.com", 1, rcode, &[]);
        // An NXDOMAIN carries the zone's SOA in the authority section.
        r[8..10].copy_from_slice(&1u16.to_be_bytes());
        r.extend(rr(&[0xc0, 12 + 8], 6, 60, &soa));
        let (e, errors) = udp_exchange(&q, &r);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(e.status(), Some(i64::from(rcode)));
        let resp = dns_resp(&e);
        assert_eq!(resp.rcode_name, want);
        assert_eq!((resp.answers.len(), resp.authority_count), (0, 1));
    }
}

#[test]
fn compression_pointers_are_followed_backwards() {
    // The CNAME's target is "web" then a pointer to "example.com" inside the question.
    let q = query(1, "www.example.com", 1);
    let mut target = vec![3];
    target.extend_from_slice(b"web");
    target.extend_from_slice(&[0xc0, 12 + 4]);
    let r = response(
        1,
        "www.example.com",
        1,
        0,
        &[
            rr(&TO_QNAME, 5, 60, &target),
            // Owner: a pointer to the CNAME's data, itself ending in a pointer.
            rr(&[0xc0, 12 + 17 + 4 + 12], 1, 60, &[192, 0, 2, 1]),
        ],
    );
    let (e, errors) = udp_exchange(&q, &r);
    assert!(errors.is_empty(), "{errors:?}");
    let answers = &dns_resp(&e).answers;
    assert_eq!(answers[0].data, "web.example.com.");
    assert_eq!(answers[1].name, "web.example.com");
    assert_eq!(answers[1].data, "192.0.2.1");
}

#[test]
fn malformed_messages_are_parse_errors_and_never_followed_forever() {
    let q = query(77, "loop.example.com", 1);
    // (what, response bytes, reason): every one answers the waiting query.
    let mut self_loop = response(77, "loop.example.com", 1, 0, &[]);
    self_loop[6..8].copy_from_slice(&1u16.to_be_bytes());
    let at = self_loop.len() as u8;
    self_loop.extend(rr(&[0xc0, at], 1, 60, &[1, 2, 3, 4]));
    // Two pointers that point at each other: the first one points forward.
    let mut two_loop = response(77, "loop.example.com", 1, 0, &[]);
    two_loop[6..8].copy_from_slice(&1u16.to_be_bytes());
    let at = two_loop.len() as u8;
    two_loop.extend(rr(&[0xc0, at + 2 + 10 + 4], 5, 60, &[0xc0, at]));
    let full = response(
        77,
        "loop.example.com",
        1,
        0,
        &[rr(&TO_QNAME, 1, 60, &[1, 2, 3, 4])],
    );
    let cut_data = full[..full.len() - 2].to_vec();
    let cut_head = full[..full.len() - 8].to_vec();
    let mut lying = response(77, "loop.example.com", 1, 0, &[]);
    lying[6..8].copy_from_slice(&u16::MAX.to_be_bytes());
    let table: &[(&str, Vec<u8>, &str)] = &[
        ("pointer to itself", self_loop, "pointer_not_prior_to_label"),
        ("pointer loop", two_loop, "pointer_not_prior_to_label"),
        (
            "truncated record data",
            cut_data,
            "incorrect_rdata_length_read",
        ),
        ("truncated record header", cut_head, "insufficient_bytes"),
        ("counts beyond the message", lying, "counts_exceed_length"),
    ];
    for (what, r, why) in table {
        let (e, errors) = udp_exchange(&q, r);
        assert_eq!(errors, vec![why.to_string()], "{what}");
        assert_eq!(e.flags, vec![format!("malformed:{why}")], "{what}");
        assert_eq!(dns_req(&e).name, "loop.example.com", "{what}");
        assert_eq!(dns_resp(&e).id, 77, "{what}");
        assert_eq!(e.elapsed_ns, Some(15_000), "{what}");
    }
    // A malformed query or a message shorter than a header makes no entry.
    let mut d = Dns::new(Transport::Udp, &config(8));
    let mut out = Vec::new();
    d.on_datagram(&flow(), Direction::ToServer, 1, &q[..q.len() - 3], &mut out);
    d.on_datagram(&flow(), Direction::ToServer, 2, &q[..5], &mut out);
    DatagramDissector::on_close(&mut d, &flow(), &end(), &mut out);
    assert_eq!(
        parse_errors(&out),
        vec!["insufficient_bytes", "short_message"]
    );
    assert!(entries(&out).is_empty());
}

#[test]
fn answers_pair_by_id_out_of_order_and_the_unanswered_close_as_no_response() {
    let mut d = Dns::new(Transport::Udp, &config(8));
    let mut out = Vec::new();
    let f = flow();
    d.on_datagram(
        &f,
        Direction::ToServer,
        1_000,
        &query(1, "one.test", 1),
        &mut out,
    );
    d.on_datagram(
        &f,
        Direction::ToServer,
        2_000,
        &query(2, "two.test", 28),
        &mut out,
    );
    d.on_datagram(
        &f,
        Direction::ToServer,
        3_000,
        &query(3, "three.test", 1),
        &mut out,
    );
    let r2 = response(2, "two.test", 28, 0, &[]);
    let r1 = response(1, "one.test", 1, 3, &[]);
    let stray = response(4, "four.test", 1, 0, &[]);
    d.on_datagram(&f, Direction::ToClient, 5_000, &r2, &mut out);
    d.on_datagram(&f, Direction::ToClient, 9_000, &r1, &mut out);
    d.on_datagram(&f, Direction::ToClient, 9_500, &stray, &mut out);
    assert_eq!(entries(&out).len(), 3);
    DatagramDissector::on_close(&mut d, &f, &end(), &mut out);
    let es = entries(&out);
    let seen: Vec<_> = es
        .iter()
        .map(|e| {
            (
                e.path().map(str::to_string),
                e.status(),
                e.elapsed_ns,
                e.flags.clone(),
            )
        })
        .collect();
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        seen,
        vec![
            (s("two.test"), Some(0), Some(3_000), vec![]),
            (s("one.test"), Some(3), Some(8_000), vec![]),
            (None, Some(0), None, vec!["no_request".to_string()]),
            (s("three.test"), None, None, vec!["no_response".to_string()]),
        ]
    );
    let ids: Vec<_> = es.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "0000000000000007-0",
            "0000000000000007-1",
            "0000000000000007-2",
            "0000000000000007-3"
        ]
    );
}

#[test]
fn the_pending_list_is_bounded_and_what_it_pushes_out_is_counted() {
    let mut d = Dns::new(Transport::Udp, &config(2));
    let mut out = Vec::new();
    for id in 0..5u16 {
        d.on_datagram(
            &flow(),
            Direction::ToServer,
            1,
            &query(id, "x.test", 1),
            &mut out,
        );
    }
    let dropped = out
        .iter()
        .filter(|e| {
            matches!(
                e,
                Emit::Dropped {
                    protocol: "dns",
                    ..
                }
            )
        })
        .count();
    assert_eq!(dropped, 3);
    let pushed: Vec<u32> = entries(&out).iter().map(|e| dns_req(e).id).collect();
    assert_eq!(pushed, [0, 1, 2]);
    assert_eq!(d.waiting.len(), 2);
    // The survivors still pair.
    d.on_datagram(
        &flow(),
        Direction::ToClient,
        2,
        &response(4, "x.test", 1, 0, &[]),
        &mut out,
    );
    let last = *entries(&out).last().unwrap();
    assert_eq!((dns_req(last).id, last.status()), (4, Some(0)));
}

/// Feeds TCP chunks: (direction, time, bytes).
fn tcp_run(chunks: &[(Direction, u64, Vec<u8>)], midstream: bool) -> Vec<Emit> {
    let f = FlowInfo {
        midstream,
        tls: false,
        ..flow()
    };
    let mut d = new(&f, &config(8), None);
    let mut out = Vec::new();
    for (dir, ts, bytes) in chunks {
        d.on_data(&f, *dir, *ts, bytes, &mut out);
    }
    d.on_close(&f, &end(), &mut out);
    out
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

#[test]
fn tcp_messages_split_across_segments_are_joined() {
    let q = framed(&query(5, "split.test", 1));
    let r = framed(&response(
        5,
        "split.test",
        1,
        0,
        &[rr(&TO_QNAME, 1, 1, &[1, 1, 1, 1])],
    ));
    // One byte per segment each way: the length prefix itself is split.
    let mut chunks: Vec<_> = q
        .iter()
        .enumerate()
        .map(|(i, b)| (Direction::ToServer, 100 + i as u64, vec![*b]))
        .collect();
    chunks.extend(
        r.iter()
            .enumerate()
            .map(|(i, b)| (Direction::ToClient, 500 + i as u64, vec![*b])),
    );
    let out = tcp_run(&chunks, false);
    assert!(parse_errors(&out).is_empty(), "{out:?}");
    let es = entries(&out);
    assert_eq!(es.len(), 1);
    let e = es[0];
    // Times are those of each message's first byte; sizes exclude the prefix.
    assert_eq!((e.ts_ns, e.elapsed_ns), (100, Some(400)));
    assert_eq!(e.request_size, q.len() as u64 - 2);
    assert_eq!(e.response_size, r.len() as u64 - 2);
    assert_eq!(dns_req(e).transport, "tcp");
    assert_eq!(dns_resp(e).answers[0].data, "1.1.1.1");
}

#[test]
fn tcp_segments_with_two_messages_and_answers_out_of_order() {
    let mut qs = framed(&query(10, "a.test", 1));
    qs.extend(framed(&query(11, "b.test", 16)));
    let mut rs = framed(&response(11, "b.test", 16, 0, &[]));
    rs.extend(framed(&response(10, "a.test", 1, 3, &[])));
    // The first byte of the second response's prefix ends the first segment:
    // that response's time is the first segment's.
    let cut = framed(&response(11, "b.test", 16, 0, &[])).len() + 1;
    let out = tcp_run(
        &[
            (Direction::ToServer, 10, qs),
            (Direction::ToClient, 20, rs[..cut].to_vec()),
            (Direction::ToClient, 30, rs[cut..].to_vec()),
        ],
        false,
    );
    assert!(parse_errors(&out).is_empty(), "{out:?}");
    let got: Vec<_> = entries(&out)
        .iter()
        .map(|e| {
            (
                e.path().unwrap().to_string(),
                e.method().unwrap().to_string(),
                e.status(),
                e.elapsed_ns,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("b.test".to_string(), "TXT".to_string(), Some(0), Some(10)),
            ("a.test".to_string(), "A".to_string(), Some(3), Some(10)),
        ]
    );
}

#[test]
fn tcp_framing_recovers_after_a_gap() {
    let q1 = framed(&query(1, "before.test", 1));
    let q2 = framed(&query(2, "after.test", 1));
    let f = flow();
    let mut d = new(&f, &config(8), None);
    let mut out = Vec::new();
    d.on_data(&f, Direction::ToServer, 1, &q1[..7], &mut out);
    d.on_gap(&f, Direction::ToServer, 2, 9, &mut out);
    // The rest of the lost message, then a whole one.
    let mut rest = q1[16..].to_vec();
    rest.extend_from_slice(&q2);
    d.on_data(&f, Direction::ToServer, 3, &rest, &mut out);
    d.on_data(
        &f,
        Direction::ToClient,
        4,
        &framed(&response(2, "after.test", 1, 0, &[])),
        &mut out,
    );
    d.on_close(&f, &end(), &mut out);
    let es = entries(&out);
    assert_eq!(es.len(), 1, "{out:?}");
    assert_eq!(
        (es[0].path(), es[0].status()),
        (Some("after.test"), Some(0))
    );
}

#[test]
fn probes_claim_dns_by_content() {
    let q = query(0xbeef, "example.com", 28);
    let r = response(0xbeef, "example.com", 28, 3, &[]);
    assert!(probe_datagram(Direction::ToServer, &q));
    assert!(probe_datagram(Direction::ToServer, &r));
    let not_dns: &[&[u8]] = &[
        b"",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &q[..16],
        &[0u8; 64],
        &[0xffu8; 64],
    ];
    for p in not_dns {
        assert!(!probe_datagram(Direction::ToServer, p), "{p:?}");
    }
    // A query that claims answers is not one.
    let mut odd = q.clone();
    odd[7] = 1;
    assert!(!probe_datagram(Direction::ToServer, &odd));

    let tq = framed(&q);
    assert_eq!(probe(Direction::ToServer, &tq, false), Claim::Yes);
    assert_eq!(probe(Direction::ToClient, &framed(&r), false), Claim::Yes);
    assert_eq!(probe(Direction::ToServer, &tq[..1], false), Claim::NeedMore);
    assert_eq!(
        probe(Direction::ToServer, &tq[..10], false),
        Claim::NeedMore
    );
    assert_eq!(
        probe(Direction::ToServer, &tq[..20], false),
        Claim::NeedMore
    );
    // A response from the client is not how DNS over TCP starts.
    assert_eq!(probe(Direction::ToServer, &framed(&r), false), Claim::No);
    assert_eq!(
        probe(Direction::ToServer, b"GET / HTTP/1.1\r\n", false),
        Claim::No
    );
    // The start of a TLS ClientHello.
    let mut hello = b"\x16\x03\x01\x00\xf8\x01\x00\x00\xf4\x03\x03".to_vec();
    hello.extend((0..64u8).map(|i| i.wrapping_mul(37)));
    assert_eq!(probe(Direction::ToServer, &hello, false), Claim::No);
}

#[test]
fn flows_are_claimed_through_the_registries() {
    use crate::flow::DatagramHandler;
    use crate::flow::FlowHandler;
    use std::sync::Arc;
    let f = flow();
    let cfg = Arc::new(config(8));
    let mut out = Vec::new();
    let mut udp = crate::Datagrams::new(cfg.clone());
    udp.on_datagram(
        &f,
        Direction::ToServer,
        1,
        &query(3, "reg.test", 1),
        &mut out,
    );
    udp.on_datagram(
        &f,
        Direction::ToClient,
        2,
        &response(3, "reg.test", 1, 0, &[]),
        &mut out,
    );
    let mut tcp = crate::Connection::new(cfg);
    tcp.on_data(
        &f,
        Direction::ToServer,
        1,
        &framed(&query(4, "reg.test", 1)),
        &mut out,
    );
    tcp.on_data(
        &f,
        Direction::ToClient,
        2,
        &framed(&response(4, "reg.test", 1, 0, &[])),
        &mut out,
    );
    let es = entries(&out);
    assert_eq!(es.len(), 2, "{out:?}");
    let transports: Vec<_> = es.iter().map(|e| dns_req(e).transport.as_str()).collect();
    assert_eq!(transports, ["udp", "tcp"]);
}

/// Datagrams one after the other on one UDP flow, then its end: the entries.
fn udp_run(datagrams: &[(Direction, &[u8])]) -> Vec<proto::v1::Entry> {
    let mut d = Dns::new(Transport::Udp, &config(8));
    let mut out = Vec::new();
    for (i, (dir, m)) in datagrams.iter().enumerate() {
        d.on_datagram(&flow(), *dir, 10_000 * (i as u64 + 1), m, &mut out);
    }
    DatagramDissector::on_close(&mut d, &flow(), &end(), &mut out);
    entries(&out).into_iter().cloned().collect()
}

/// Multicast DNS (RFC 6762) asks several questions at once and announces
/// records in responses with no question; LLMNR (RFC 4795) answers a name it
/// does not hold with no answer at all.
#[test]
fn mdns_and_llmnr_messages_are_claimed() {
    // Two questions (QU bit set on the second's class).
    let mut two = header(0, 0, [2, 0, 0, 0]);
    two.extend(name("printer.local"));
    two.extend([0, 1, 0, 1]);
    two.extend(name("printer.local"));
    two.extend([0, 28, 0x80, 1]);
    assert!(probe_datagram(Direction::ToServer, &two));
    let es = udp_run(&[(Direction::ToServer, &two)]);
    assert_eq!(es.len(), 1);
    assert_eq!(dns_req(&es[0]).questions.len(), 2);
    // An announcement: a response with no question and one answer.
    let mut announce = header(0, 0x8400, [0, 1, 0, 0]);
    announce.extend(rr(&name("printer.local"), 1, 120, &[192, 168, 1, 9]));
    assert!(probe_datagram(Direction::ToClient, &announce));
    let es = udp_run(&[(Direction::ToClient, &announce)]);
    assert_eq!(es.len(), 1);
    assert_eq!(dns_resp(&es[0]).answers.len(), 1);
    assert_eq!(es[0].flags, ["no_request"]);
    // An LLMNR reply with no answer (not the holder of the name).
    let q = query(0x1234, "host-b", 1);
    let mut none = q.clone();
    none[2..4].copy_from_slice(&0x8000u16.to_be_bytes());
    assert!(probe_datagram(Direction::ToClient, &none));
    let es = udp_run(&[(Direction::ToServer, &q), (Direction::ToClient, &none)]);
    assert_eq!(es.len(), 1);
    assert!(dns_resp(&es[0]).answers.is_empty());
}

/// NetBIOS name service (UDP 137) borrows DNS's header but names are 32
/// letters from A to P (RFC 1002's encoding): not DNS.
#[test]
fn netbios_name_service_is_not_dns() {
    let nb = |qtype: u16| {
        let mut v = header(0x77, 0x0110, [1, 0, 0, 0]);
        v.push(32);
        v.extend(b"FHEPFCELEHFCEPFFFACACACACACACAAA");
        v.push(0);
        v.extend(qtype.to_be_bytes());
        v.extend([0, 1]);
        v
    };
    // NB (name query) and NBSTAT (node status).
    assert!(!probe_datagram(Direction::ToServer, &nb(0x20)));
    assert!(!probe_datagram(Direction::ToServer, &nb(0x21)));
    // SRV (33, NBSTAT's number) on a DNS name stays DNS.
    assert!(probe_datagram(
        Direction::ToServer,
        &query(1, "_http._tcp.shop.svc", 33)
    ));
}

/// A second response with the same id and question (a resolver's retry
/// answered twice, a duplicating network) is an entry of its own, flagged
/// `duplicate`, not a response without a request.
#[test]
fn a_second_response_to_one_query_is_flagged_duplicate() {
    let q = query(7, "twice.test", 1);
    let r = response(7, "twice.test", 1, 0, &[]);
    let es = udp_run(&[
        (Direction::ToServer, &q),
        (Direction::ToClient, &r),
        (Direction::ToClient, &r),
    ]);
    assert_eq!(es.len(), 2, "{es:?}");
    assert!(
        es[0].request.is_some() && es[0].flags.is_empty(),
        "{:?}",
        es[0]
    );
    assert_eq!(es[1].flags, ["duplicate", "no_request"]);
    assert_eq!(es[1].path(), None);
    assert_eq!(dns_resp(&es[1]).id, 7);
}
