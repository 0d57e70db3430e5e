//! The SOCKS5 dissector's unit tests, through detection as the pipeline
//! runs it (so the tunnel's handoff is exercised too).

use super::*;
use crate::GenericFields;
use crate::flow::FlowHandler;
use proto::v1::Entry;

const C: Direction = Direction::ToServer;
const S: Direction = Direction::ToClient;

/// Feeds a connection through detection whole, then byte by byte; both must
/// give the same entries, which are returned with the parse errors.
fn connection(events: &[(Direction, &[u8])]) -> (Vec<Entry>, Vec<String>) {
    let whole = run(events, false);
    let bytewise = run(events, true);
    assert_eq!(
        whole.0.iter().map(line).collect::<Vec<_>>(),
        bytewise.0.iter().map(line).collect::<Vec<_>>(),
        "byte by byte differs"
    );
    whole
}

fn run(events: &[(Direction, &[u8])], bytewise: bool) -> (Vec<Entry>, Vec<String>) {
    let f = crate::testing::flow(6, 1080, false);
    let mut conn = crate::Connection::new(std::sync::Arc::new(DissectConfig::default()));
    let mut out = Vec::new();
    for (i, (dir, b)) in events.iter().enumerate() {
        let ts = 1000 * (i as u64 + 1);
        if bytewise {
            for byte in b.chunks(1) {
                conn.on_data(&f, *dir, ts, byte, &mut out);
            }
        } else {
            conn.on_data(&f, *dir, ts, b, &mut out);
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

fn socks(e: &Entry) -> (&SocksRequest, &SocksResponse) {
    let req = match e.request.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(request::Kind::Socks(r)) => &**r,
        other => panic!("not a socks request: {other:?}"),
    };
    let resp = match e.response.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(response::Kind::Socks(r)) => &**r,
        other => panic!("not a socks response: {other:?}"),
    };
    (req, resp)
}

/// A request or reply for `host` (a name) and `port`.
fn named(code: u8, host: &str, port: u16) -> Vec<u8> {
    let mut b = vec![5, code, 0, 3, host.len() as u8];
    b.extend(host.as_bytes());
    b.extend(port.to_be_bytes());
    b
}

fn ipv4(code: u8, ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut b = vec![5, code, 0, 1];
    b.extend(ip);
    b.extend(port.to_be_bytes());
    b
}

#[test]
fn http_through_a_socks5_tunnel_is_dissected_after_the_handshake() {
    let (entries, errors) = connection(&[
        (C, &[5, 1, 0]),
        (S, &[5, 0]),
        (C, &named(1, "shop.internal", 80)),
        (S, &ipv4(0, [10, 0, 0, 9], 40000)),
        (C, b"GET /cart HTTP/1.1\r\nHost: shop.internal\r\n\r\n"),
        (S, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        entries.iter().map(line).collect::<Vec<_>>(),
        [
            "0 socks CONNECT shop.internal:80 0 ",
            "1 http GET /cart 200 ",
        ]
    );
    let (req, resp) = socks(&entries[0]);
    assert_eq!(req.auth_methods, ["none"]);
    assert_eq!((req.host.as_str(), req.port), ("shop.internal", 80));
    assert_eq!(resp.auth_method, "none");
    assert_eq!(resp.reply_name, "succeeded");
    assert_eq!(
        (resp.bound_host.as_str(), resp.bound_port),
        ("10.0.0.9", 40000)
    );
    assert_eq!(entries[0].request_size, 3 + 20);
    assert_eq!(entries[0].response_size, 2 + 10);
}

/// The password never reaches the entry; the user name neither.
#[test]
fn credentials_are_read_past_and_not_kept() {
    let mut auth = vec![1, 5];
    auth.extend(b"alice");
    auth.push(6);
    auth.extend(b"s3cret");
    let (entries, _) = connection(&[
        (C, &[5, 2, 0, 2]),
        (S, &[5, 2]),
        (C, &auth),
        (S, &[1, 0]),
        (C, &ipv4(1, [10, 1, 2, 3], 6379)),
        (S, &ipv4(0, [0, 0, 0, 0], 0)),
        (C, b"*1\r\n$4\r\nPING\r\n"),
        (S, b"+PONG\r\n"),
    ]);
    assert_eq!(
        entries.iter().map(line).collect::<Vec<_>>(),
        ["0 socks CONNECT 10.1.2.3:6379 0 ", "1 redis PING  0 "]
    );
    let (req, resp) = socks(&entries[0]);
    assert!(req.credentials);
    assert_eq!(req.auth_methods, ["none", "username_password"]);
    assert_eq!(resp.authenticated, Some(true));
    let json = serde_json::to_string(&crate::json::EntryJson(&entries[0])).unwrap();
    assert!(
        !json.contains("s3cret") && !json.contains("alice"),
        "{json}"
    );
}

#[test]
fn refusals_are_failed_entries_and_nothing_is_handed_on() {
    let mut bad_auth = vec![1, 1, b'u', 1, b'p'];
    type Case = (&'static str, Vec<(Direction, Vec<u8>)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "connection refused",
            vec![
                (C, vec![5, 1, 0]),
                (S, vec![5, 0]),
                (C, named(1, "db", 5432)),
                (S, ipv4(5, [0; 4], 0)),
                (C, b"stray".to_vec()),
            ],
            "0 socks CONNECT db:5432 5 ",
        ),
        (
            "no acceptable method",
            vec![(C, vec![5, 1, 0]), (S, vec![5, 0xff])],
            "0 socks   - ",
        ),
        (
            "bad credentials",
            vec![
                (C, vec![5, 1, 2]),
                (S, vec![5, 2]),
                (C, std::mem::take(&mut bad_auth)),
                (S, vec![1, 1]),
            ],
            "0 socks   - ",
        ),
    ];
    for (name, events, want) in cases {
        let events: Vec<(Direction, &[u8])> = events.iter().map(|(d, b)| (*d, &b[..])).collect();
        let (entries, errors) = connection(&events);
        assert!(errors.is_empty(), "{name}: {errors:?}");
        assert_eq!(
            entries.iter().map(line).collect::<Vec<_>>(),
            [want],
            "{name}"
        );
        let failed = crate::registry::failed(&entries[0]);
        assert!(failed, "{name}: not failed");
    }
}

/// A client that sends its request and first tunnel bytes without waiting
/// for the proxy (optimistic data), an IPv6 destination.
#[test]
fn optimistic_clients_and_ipv6_destinations() {
    let mut request = vec![5, 1, 0, 4];
    request.extend(std::net::Ipv6Addr::LOCALHOST.octets());
    request.extend(8080u16.to_be_bytes());
    let mut all = vec![5, 1, 0];
    all.extend(&request);
    all.extend(b"GET / HTTP/1.1\r\n\r\n");
    let (entries, _) = connection(&[
        (C, &all),
        (S, &[5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]),
        (S, b"HTTP/1.1 204 No Content\r\n\r\n"),
    ]);
    assert_eq!(
        entries.iter().map(line).collect::<Vec<_>>(),
        ["0 socks CONNECT [::1]:8080 0 ", "1 http GET / 204 "]
    );
}

#[test]
fn what_is_not_a_handshake() {
    let cases: &[(&str, &[u8], bool, Claim)] = &[
        ("greeting", &[5, 1, 0], false, Claim::Yes),
        (
            "greeting and request",
            &[5, 1, 0, 5, 1, 0, 1],
            false,
            Claim::Yes,
        ),
        ("too short", &[5], false, Claim::NeedMore),
        (
            "methods still coming",
            &[5, 3, 0, 2],
            false,
            Claim::NeedMore,
        ),
        ("mid-stream", &[5, 1, 0], true, Claim::No),
        ("socks4", &[4, 1, 0, 80, 10, 0, 0, 1, 0], false, Claim::No),
        ("no methods", &[5, 0], false, Claim::No),
        ("an unassigned method", &[5, 1, 0x20], false, Claim::No),
        (
            "junk after the greeting",
            &[5, 1, 0, 0x47],
            false,
            Claim::No,
        ),
        ("http", b"GET / HTTP/1.1\r\n", false, Claim::No),
    ];
    for (name, bytes, midstream, want) in cases {
        assert_eq!(probe(C, bytes, *midstream), *want, "{name}");
    }
    assert_eq!(probe(S, &[5, 0], false), Claim::No);
}

/// Hostile bytes inside the handshake: a parse error, the entry with what
/// was read, never a panic.
#[test]
fn a_bad_request_is_a_parse_error() {
    let (entries, errors) =
        connection(&[(C, &[5, 1, 0]), (S, &[5, 0]), (C, &[5, 1, 0, 9, 1, 2, 3])]);
    assert_eq!(errors, ["request: address type 9"]);
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0].flags.iter().any(|f| f.starts_with("malformed:")),
        "{:?}",
        entries[0].flags
    );
}

/// A handshake the capture saw only the start of.
#[test]
fn a_cut_handshake_is_incomplete() {
    let (entries, _) = connection(&[(C, &[5, 1, 0]), (S, &[5, 0]), (C, &[5, 1, 0, 3])]);
    assert_eq!(
        entries.iter().map(line).collect::<Vec<_>>(),
        ["0 socks   - incomplete"]
    );
}
