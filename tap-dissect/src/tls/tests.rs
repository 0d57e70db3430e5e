//! The TLS dissector's unit tests, through detection as the pipeline runs
//! it, over real handshakes: OpenSSL's client and server (Python's `ssl`
//! over memory BIOs, `handshakes/make.py`), one flight per line.

use super::*;
use crate::GenericFields;
use crate::flow::FlowHandler;
use crate::testing::{Ev, Out, drive, flow};
use proto::v1::Entry;

const C: Direction = Direction::ToServer;
const S: Direction = Direction::ToClient;

/// A fixture's flights.
fn flights(hex: &str) -> Vec<(Direction, Vec<u8>)> {
    hex.lines()
        .map(|line| {
            let (d, h) = line.split_once(' ').unwrap();
            let dir = if d == "C" { C } else { S };
            let bytes = (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect();
            (dir, bytes)
        })
        .collect()
}

const TLS12: &str = include_str!("handshakes/tls12.hex");
const TLS12_RESUMED: &str = include_str!("handshakes/tls12_resumed.hex");
const TLS12_CLIENT_REJECTS: &str = include_str!("handshakes/tls12_client_rejects.hex");
const TLS13: &str = include_str!("handshakes/tls13.hex");
const TLS13_NO_SNI: &str = include_str!("handshakes/tls13_no_sni.hex");
const TLS13_HELLO_RETRY: &str = include_str!("handshakes/tls13_hello_retry.hex");
const HANDSHAKE_FAILURE: &str = include_str!("handshakes/handshake_failure.hex");

/// Feeds a connection through detection whole, then byte by byte, then in
/// pieces of 7 bytes (records and messages cut anywhere); all must give the
/// same entries, which are returned with the parse errors.
fn connection(events: &[(Direction, Vec<u8>)]) -> (Vec<Entry>, Vec<String>) {
    let whole = run(events, 0, false);
    for piece in [1, 7] {
        let cut = run(events, piece, false);
        assert_eq!(
            whole.0.iter().map(line).collect::<Vec<_>>(),
            cut.0.iter().map(line).collect::<Vec<_>>(),
            "in pieces of {piece} differs"
        );
        assert_eq!(whole.0, cut.0, "in pieces of {piece} differs");
    }
    whole
}

/// Runs the events through detection (`piece` bytes at a time, 0: whole)
/// and closes the connection.
fn run(
    events: &[(Direction, Vec<u8>)],
    piece: usize,
    midstream: bool,
) -> (Vec<Entry>, Vec<String>) {
    let f = flow(6, 443, midstream);
    let mut conn = crate::Connection::new(std::sync::Arc::new(DissectConfig::default()));
    let mut out = Vec::new();
    for (i, (dir, b)) in events.iter().enumerate() {
        let ts = 1000 * (i as u64 + 1);
        for chunk in b.chunks(if piece == 0 { b.len().max(1) } else { piece }) {
            conn.on_data(&f, *dir, ts, chunk, &mut out);
        }
    }
    conn.on_close(&f, &crate::testing::fin(1 << 30), &mut out);
    let errors = out
        .iter()
        .filter_map(|e| match e {
            Emit::ParseError { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    (crate::testing::entries(out), errors)
}

/// id protocol method path status flags
fn line(e: &Entry) -> String {
    format!(
        "{} {} {} {} {} {}",
        e.id.rsplit('-').next().unwrap(),
        Protocol::try_from(e.protocol).unwrap().name(),
        e.method().unwrap_or("-"),
        e.path().unwrap_or("-"),
        e.status().map_or("-".to_string(), |s| s.to_string()),
        e.flags.join(",")
    )
}

fn tls(e: &Entry) -> (&TlsRequest, &TlsResponse) {
    let req = match e.request.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(request::Kind::Tls(r)) => &**r,
        other => panic!("not a tls request: {other:?}"),
    };
    let resp = match e.response.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(response::Kind::Tls(r)) => &**r,
        other => panic!("not a tls response: {other:?}"),
    };
    (req, resp)
}

/// The bytes of the records in `b` up to and including the first of `kind`.
fn through_first(b: &[u8], kind: u8) -> u64 {
    let mut at = 0;
    while at + HEADER <= b.len() {
        let end = at + HEADER + usize::from(u16::from_be_bytes([b[at + 3], b[at + 4]]));
        if b[at] == kind {
            return end as u64;
        }
        at = end;
    }
    panic!("no record of type {kind}");
}

#[test]
fn a_tls12_handshake_shows_the_certificate_and_ends_at_both_change_cipher_specs() {
    let f = flights(TLS12);
    let (entries, errors) = connection(&f);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        entries.iter().map(line).collect::<Vec<_>>(),
        ["0 tls ClientHello shop.internal - "]
    );
    let e = &entries[0];
    let (req, resp) = tls(e);
    assert_eq!(req.server_name, "shop.internal");
    assert_eq!(req.alpn, ["h2", "http/1.1"]);
    assert_eq!(req.versions, ["TLS 1.2"]);
    assert!(req.cipher_suites > 10, "{}", req.cipher_suites);
    assert_eq!(resp.version, "TLS 1.2");
    assert_eq!(resp.cipher_suite, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
    assert_eq!(resp.alpn, "http/1.1");
    assert_eq!(resp.certificate_subject, "O=kubetap, CN=shop.internal");
    assert_eq!(resp.certificate_issuer, "O=kubetap, CN=shop.internal");
    assert_eq!(
        resp.certificate_sans,
        ["shop.internal", "*.shop.internal", "10.0.0.9"]
    );
    assert!(
        resp.certificate_not_after.starts_with("20") && resp.certificate_not_after.ends_with('Z'),
        "{}",
        resp.certificate_not_after
    );
    assert!(!resp.resumed && !resp.hello_retry && resp.alert.is_none());
    // The client's hello and key exchange flight; the server's first
    // flight and its second up to its ChangeCipherSpec: the application
    // data after them is not the handshake's.
    assert_eq!(e.request_size, (f[0].1.len() + f[2].1.len()) as u64);
    assert_eq!(
        e.response_size,
        f[1].1.len() as u64 + through_first(&f[3].1, CHANGE_CIPHER_SPEC)
    );
    assert_eq!((e.ts_ns, e.elapsed_ns), (1000, Some(1000)));
    assert!(!crate::registry::failed(e));
}

#[test]
fn a_tls13_handshake_has_no_certificate_in_clear() {
    let (entries, errors) = connection(&flights(TLS13));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        entries.iter().map(line).collect::<Vec<_>>(),
        ["0 tls ClientHello api.shop.internal - "]
    );
    let (req, resp) = tls(&entries[0]);
    assert_eq!(req.alpn, ["h2", "http/1.1"]);
    assert_eq!(req.versions, ["TLS 1.3", "TLS 1.2"]);
    assert_eq!(resp.version, "TLS 1.3");
    assert_eq!(resp.cipher_suite, "TLS_AES_256_GCM_SHA384");
    // The server's choice is in its EncryptedExtensions, like its certificate.
    assert!(resp.alpn.is_empty(), "{}", resp.alpn);
    assert!(resp.certificate_subject.is_empty() && resp.certificate_sans.is_empty());
    let json = serde_json::to_value(crate::json::EntryJson(&entries[0])).unwrap();
    assert_eq!(json["protocol"], "tls");
    assert_eq!(json["request"]["method"], "ClientHello");
    assert_eq!(json["response"]["version"], "TLS 1.3");
    assert_eq!(
        json["response"]["certificate_subject"],
        serde_json::Value::Null
    );
    assert_eq!(json["response"]["status"], serde_json::Value::Null);
}

#[test]
fn without_a_server_name_the_path_is_the_servers_address() {
    let (entries, _) = connection(&flights(TLS13_NO_SNI));
    assert_eq!(
        entries.iter().map(line).collect::<Vec<_>>(),
        ["0 tls ClientHello 127.0.0.1:443 - "]
    );
    let (req, _) = tls(&entries[0]);
    assert!(req.server_name.is_empty() && req.alpn.is_empty());
}

#[test]
fn a_hello_retry_is_followed_to_the_real_server_hello() {
    let (entries, errors) = connection(&flights(TLS13_HELLO_RETRY));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(entries.len(), 1);
    let (req, resp) = tls(&entries[0]);
    assert_eq!(req.server_name, "shop.internal");
    assert!(resp.hello_retry);
    assert_eq!(resp.version, "TLS 1.3");
    assert!(
        resp.cipher_suite.starts_with("TLS_AES_"),
        "{}",
        resp.cipher_suite
    );
}

#[test]
fn a_resumed_tls12_session_is_marked_and_has_no_certificate() {
    let (entries, errors) = connection(&flights(TLS12_RESUMED));
    assert!(errors.is_empty(), "{errors:?}");
    let (_, resp) = tls(&entries[0]);
    assert!(resp.resumed);
    assert_eq!(resp.version, "TLS 1.2");
    assert!(resp.certificate_subject.is_empty());
    assert_eq!(line(&entries[0]), "0 tls ClientHello shop.internal - ");
}

#[test]
fn fatal_alerts_are_the_status_and_fail() {
    // The server finds no common cipher suite.
    let (entries, _) = connection(&flights(HANDSHAKE_FAILURE));
    assert_eq!(
        entries.iter().map(line).collect::<Vec<_>>(),
        ["0 tls ClientHello shop.internal 40 "]
    );
    let (_, resp) = tls(&entries[0]);
    assert_eq!(
        (
            resp.alert_name.as_str(),
            resp.alert_level.as_str(),
            resp.alert_from.as_str()
        ),
        ("handshake_failure", "fatal", "server")
    );
    assert!(resp.version.is_empty());
    assert!(crate::registry::failed(&entries[0]));
    let json = serde_json::to_value(crate::json::EntryJson(&entries[0])).unwrap();
    assert_eq!(json["response"]["status"], 40);
    assert_eq!(json["response"]["alert_name"], "handshake_failure");

    // The client does not trust the server's certificate (TLS 1.2: its
    // alert is in clear).
    let (entries, _) = connection(&flights(TLS12_CLIENT_REJECTS));
    assert_eq!(entries.len(), 1);
    let (_, resp) = tls(&entries[0]);
    assert_eq!(resp.alert_from, "client");
    assert_eq!(resp.alert_level, "fatal");
    assert_eq!(
        entries[0].status(),
        resp.alert.map(i64::from),
        "{}",
        resp.alert_name
    );
    assert!(!resp.certificate_subject.is_empty());
    assert!(crate::registry::failed(&entries[0]));
}

/// A ClientHello cut into two records (as a large one with many key
/// shares is), then fed in small pieces by `connection`.
#[test]
fn a_client_hello_across_two_records() {
    let mut f = flights(TLS13);
    let hello = f[0].1.clone();
    let body = &hello[HEADER..];
    let mut split = Vec::new();
    for part in [&body[..100], &body[100..]] {
        split.extend([HANDSHAKE, 3, 1]);
        split.extend((part.len() as u16).to_be_bytes());
        split.extend(part);
    }
    f[0].1 = split;
    let (entries, errors) = connection(&f);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(line(&entries[0]), "0 tls ClientHello api.shop.internal - ");
    assert_eq!(tls(&entries[0]).0.alpn, ["h2", "http/1.1"]);
    assert_eq!(
        entries[0].request_size,
        hello.len() as u64 + HEADER as u64 + 80
    );
}

#[test]
fn cut_handshakes() {
    let f = flights(TLS12);
    // The server never answered: the handshake was cut, and fails.
    let (entries, _) = connection(&f[..1]);
    assert_eq!(
        entries.iter().map(line).collect::<Vec<_>>(),
        ["0 tls ClientHello shop.internal - incomplete,no_response"]
    );
    assert!(crate::registry::failed(&entries[0]));
    // The server answered, the client went away before its key exchange.
    let (entries, _) = connection(&f[..2]);
    assert_eq!(
        line(&entries[0]),
        "0 tls ClientHello shop.internal - incomplete"
    );
    assert_eq!(tls(&entries[0]).1.version, "TLS 1.2");
    assert!(crate::registry::failed(&entries[0]));
    // Half a ClientHello.
    let half = vec![(C, f[0].1[..60].to_vec())];
    let (entries, errors) = connection(&half);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        line(&entries[0]),
        "0 tls - 127.0.0.1:443 - incomplete,no_response"
    );
}

/// A hole in the capture: what was read is the entry, flagged; a lost
/// packet is not the server's failure.
#[test]
fn a_gap_ends_the_handshake() {
    let f = flights(TLS12);
    let d = super::new(&flow(1, 443, false), &DissectConfig::default(), None);
    let events = [
        Ev::Data(C, &f[0].1),
        Ev::Data(S, &f[1].1[..300]),
        Ev::Gap(S, 200),
        Ev::Data(S, &f[1].1[500..]),
    ];
    let out = Out::collect("tls", drive(d, &flow(1, 443, false), &events, false));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(
        out.entries.iter().map(line).collect::<Vec<_>>(),
        ["0 tls ClientHello shop.internal - gap"]
    );
    let (_, resp) = tls(&out.entries[0]);
    assert_eq!(resp.version, "TLS 1.2");
    assert!(!crate::registry::failed(&out.entries[0]));
}

/// Once the handshake is over the rest is not read, whatever it is.
#[test]
fn after_the_handshake_nothing_is_read() {
    let mut f = flights(TLS13);
    f.push((C, vec![0xff; 100_000]));
    f.push((S, b"not tls at all".to_vec()));
    let (entries, errors) = connection(&f);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(entries.len(), 1);
    assert!(entries[0].flags.is_empty(), "{:?}", entries[0].flags);
}

#[test]
fn hostile_lengths() {
    let hello = flights(TLS13)[0].1.clone();
    let fl = flow(1, 443, false);
    let drive_one = |bytes: &[u8]| {
        let d = super::new(&fl, &DissectConfig::default(), None);
        Out::collect("tls", drive(d, &fl, &[Ev::Data(C, bytes)], false))
    };
    // A record longer than any TLS allows: framing is lost at once.
    let mut long = vec![HANDSHAKE, 3, 3, 0xff, 0xff];
    long.extend(&hello[HEADER..]);
    let out = drive_one(&long);
    assert_eq!(out.entries.len(), 1);
    assert!(
        out.entries[0]
            .flags
            .contains(&"malformed:record".to_string())
    );
    // A handshake message that says 16 MiB: not buffered, flagged, and the
    // records around it still framed.
    let mut huge = vec![
        HANDSHAKE,
        3,
        1,
        0,
        8,
        CLIENT_HELLO,
        0xff,
        0xff,
        0xff,
        3,
        3,
        0,
        0,
    ];
    huge.extend([APPLICATION_DATA, 3, 3, 0, 1, 0]);
    let out = drive_one(&huge);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(
        out.entries.iter().map(line).collect::<Vec<_>>(),
        ["0 tls - 127.0.0.1:443 - truncated,incomplete,no_response"]
    );
    // A ClientHello whose inner lengths lie: a parse error, not a panic.
    let mut lying = hello.clone();
    let suites = HEADER + 4 + 2 + 32 + 1 + usize::from(hello[HEADER + 4 + 2 + 32]);
    lying[suites..suites + 2].copy_from_slice(&[0xff, 0xfe]);
    let out = drive_one(&lying);
    assert_eq!(out.entries.len(), 1);
    assert!(!out.errors.is_empty());
    assert!(
        out.entries[0]
            .flags
            .contains(&"malformed:client_hello".to_string()),
        "{:?}",
        out.entries[0].flags
    );
}

/// A message is held while it comes, within the bound; one that says it
/// is longer is not held at all.
#[test]
fn reassembly_is_bounded() {
    let fl = flow(1, 443, false);
    let record = |n: usize, start: &[u8]| {
        let mut r = vec![HANDSHAKE, 3, 3, (n >> 8) as u8, n as u8];
        r.extend(start);
        r.resize(HEADER + n, 0);
        r
    };
    let hello = |len: usize| [CLIENT_HELLO, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    let mut out = Vec::new();

    // Exactly the bound: held over four records, then read.
    let mut t = Tls {
        mode: Mode::Handshake,
        ..Tls::default()
    };
    t.on_data(
        &fl,
        C,
        1,
        &record(0x4000, &hello(MAX_HANDSHAKE - 4)),
        &mut out,
    );
    for _ in 0..2 {
        t.on_data(&fl, C, 2, &record(0x4000, &[]), &mut out);
        assert!(t.sides[0].handshake.len() < MAX_HANDSHAKE);
    }
    assert!(t.req.handshake.is_empty());
    t.on_data(&fl, C, 3, &record(0x4000, &[]), &mut out);
    assert!(t.sides[0].handshake.is_empty());
    assert_eq!(t.req.handshake, "ClientHello");
    assert!(t.flags.is_empty(), "{:?}", t.flags);

    // One byte more: not held, the side's handshake no longer read.
    let mut t = Tls {
        mode: Mode::Handshake,
        ..Tls::default()
    };
    t.on_data(
        &fl,
        C,
        1,
        &record(0x4000, &hello(MAX_HANDSHAKE - 3)),
        &mut out,
    );
    for _ in 0..8 {
        t.on_data(&fl, C, 2, &record(0x4000, &[]), &mut out);
        assert!(t.sides[0].handshake.is_empty());
    }
    assert_eq!(t.flags, ["truncated"]);
    assert!(!t.made && out.is_empty(), "{out:?}");
}

#[test]
fn what_is_not_a_tls_handshake() {
    let hello = flights(TLS13)[0].1.clone();
    let server_hello = flights(TLS13)[1].1.clone();
    let app = |n: usize| {
        let mut r = vec![APPLICATION_DATA, 3, 3, (n >> 8) as u8, n as u8];
        r.resize(HEADER + n, 0x5a);
        r
    };
    let chain = [app(40), app(30)].concat();
    let cases: &[(&str, Direction, &[u8], bool, Claim)] = &[
        ("client hello", C, &hello, false, Claim::Yes),
        ("its first 11 bytes", C, &hello[..11], false, Claim::Yes),
        (
            "its first 10 bytes",
            C,
            &hello[..10],
            false,
            Claim::NeedMore,
        ),
        ("a byte of it", C, &hello[..1], false, Claim::NeedMore),
        ("server hello", S, &server_hello, false, Claim::Yes),
        (
            "a server hello from the client",
            C,
            &server_hello,
            false,
            Claim::No,
        ),
        (
            "a client hello from the server",
            S,
            &hello,
            false,
            Claim::No,
        ),
        (
            "SSL 3.0 record",
            C,
            &[HANDSHAKE, 3, 0, 0, 50, 1, 0, 0, 46, 3, 0],
            false,
            Claim::No,
        ),
        (
            "SSLv2-style hello",
            C,
            &[0x80, 0x2e, 1, 3, 1, 0, 0x15, 0, 0, 0, 0x10],
            false,
            Claim::No,
        ),
        (
            "an empty handshake record",
            C,
            &[HANDSHAKE, 3, 3, 0, 0, 1, 0, 0, 46, 3, 3],
            false,
            Claim::No,
        ),
        (
            "a hello too short",
            C,
            &[HANDSHAKE, 3, 3, 0, 8, 1, 0, 0, 4, 3, 3],
            false,
            Claim::No,
        ),
        (
            "postgres SSLRequest",
            C,
            &[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f],
            false,
            Claim::No,
        ),
        (
            "postgres startup",
            C,
            b"\0\0\0\x29\0\x03\0\0user\0app\0database\0shop\0\0",
            false,
            Claim::No,
        ),
        (
            "http",
            C,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            false,
            Claim::No,
        ),
        ("http response", S, b"HTTP/1.1 200 OK\r\n", false, Claim::No),
        ("redis", C, b"*1\r\n$4\r\nPING\r\n", false, Claim::No),
        ("socks5", C, &[5, 1, 0], false, Claim::No),
        (
            "application data from the start",
            C,
            &chain,
            false,
            Claim::No,
        ),
        ("application data mid-stream", C, &chain, true, Claim::Yes),
        (
            "after junk mid-stream",
            S,
            &[&[1u8, 2, 3][..], &chain].concat(),
            true,
            Claim::Yes,
        ),
        (
            "one record mid-stream",
            C,
            &app(40)[..30],
            true,
            Claim::NeedMore,
        ),
        (
            // Not a chain (the last record may start one with what follows).
            "records of two versions",
            C,
            &[app(40), {
                let mut r = app(30);
                r[2] = 1;
                r
            }]
            .concat(),
            true,
            Claim::NeedMore,
        ),
        (
            "text mid-stream",
            C,
            b"+OK\r\n:1\r\n$3\r\nabc\r\n",
            true,
            Claim::No,
        ),
    ];
    for (name, dir, bytes, midstream, want) in cases {
        assert_eq!(probe(*dir, bytes, *midstream), *want, "{name}");
    }
}

/// A connection picked up after its handshake: one entry that says it is
/// TLS, made once both sides sent, not a failure.
#[test]
fn a_connection_picked_up_mid_stream() {
    let f = flights(TLS13);
    let events: Vec<(Direction, Vec<u8>)> = f[3..].to_vec();
    for piece in [0, 1] {
        let (entries, errors) = run(&events, piece, true);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            entries.iter().map(line).collect::<Vec<_>>(),
            ["0 tls - 127.0.0.1:443 - midstream"],
            "pieces of {piece}"
        );
        assert!(!crate::registry::failed(&entries[0]));
    }
    // Mid-stream but from the ClientHello on: read as from the start.
    let (entries, _) = run(&f, 0, true);
    assert_eq!(
        entries.iter().map(line).collect::<Vec<_>>(),
        ["0 tls ClientHello api.shop.internal - midstream"]
    );
}

/// HTTPS through a SOCKS5 proxy: the tunnel's TLS handshake is detected
/// after the proxy's, and numbered on from it.
#[test]
fn a_handshake_inside_a_socks_tunnel() {
    let mut events = vec![
        (C, vec![5, 1, 0]),
        (S, vec![5, 0]),
        (C, vec![5, 1, 0, 3, 13]),
        (S, vec![5, 0, 0, 1, 10, 0, 0, 9, 1, 187]),
    ];
    events[2].1.extend(b"shop.internal");
    events[2].1.extend(443u16.to_be_bytes());
    events.extend(flights(TLS13));
    let (entries, errors) = run(&events, 0, false);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        entries.iter().map(line).collect::<Vec<_>>(),
        [
            "0 socks CONNECT shop.internal:443 0 ",
            "1 tls ClientHello api.shop.internal - "
        ]
    );
}
