//! The http1 dissector's unit tests (its end-to-end tests are the oracle's).

use super::*;
use crate::GenericFields;
use crate::testing::{Ev, Out, drive, flow};

fn run(events: &[Ev], midstream: bool) -> Out {
    let f = flow(1, 8080, midstream);
    let d = new(&f, &DissectConfig::default(), None);
    Out::collect("http", drive(d, &f, events, false))
}

fn summary(out: &Out) -> Vec<(String, String, Option<i64>)> {
    out.entries
        .iter()
        .map(|e| {
            (
                e.method().unwrap_or("-").to_string(),
                e.path().unwrap_or("-").to_string(),
                e.status(),
            )
        })
        .collect()
}

/// What real servers accept: the QUERY method and other extension methods
/// (SSDP's M-SEARCH), a run of spaces between the request line's parts, an
/// asterisk for a URI.
#[test]
fn request_lines_real_servers_accept_are_read() {
    let requests: &[(&[u8], &str, &str)] = &[
        (
            b"QUERY /search HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "QUERY",
            "/search",
        ),
        (b"M-SEARCH * HTTP/1.1\r\nHost: x\r\n\r\n", "M-SEARCH", "*"),
        (
            b"GET  /two-spaces  HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET",
            "/two-spaces",
        ),
        (b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", "BREW", "/pot"),
    ];
    for (req, method, path) in requests {
        // Claimed from the first bytes, by content.
        assert_eq!(
            probe(Direction::ToServer, req, false),
            Claim::Yes,
            "{method}"
        );
        let out = run(
            &[
                Ev::Data(Direction::ToServer, req),
                Ev::Data(
                    Direction::ToClient,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                ),
            ],
            false,
        );
        assert!(out.errors.is_empty(), "{method}: {:?}", out.errors);
        assert_eq!(
            summary(&out),
            [(method.to_string(), path.to_string(), Some(200))],
            "{method}"
        );
    }
    // Not a request line: a word and a space, then no HTTP version.
    assert_eq!(
        probe(Direction::ToServer, b"HELLO there, how are you?\r\n", false),
        Claim::No
    );
    // An unknown method claims only once the line shows its version.
    assert_eq!(
        probe(Direction::ToServer, b"BREW /pot", false),
        Claim::NeedMore
    );
}

/// A status line with two spaces, and a header with a space before its colon
/// (both tolerated by tshark and by clients), are read.
#[test]
fn response_heads_clients_accept_are_read() {
    let out = run(
        &[
            Ev::Data(Direction::ToServer, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ev::Data(
                Direction::ToClient,
                b"HTTP/1.1  204  No Content\r\nServer : odd\r\n\r\n",
            ),
        ],
        false,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(summary(&out), [("GET".into(), "/".into(), Some(204))]);
}

/// A connection first seen in the middle of a response body: the body's
/// tail does not end with a line break, and the next status line follows it
/// directly. The next exchange is still found and paired.
#[test]
fn a_connection_picked_up_inside_a_body_finds_the_next_messages() {
    let out = run(
        &[
            // The tail of a request body, then the next request.
            Ev::Data(
                Direction::ToServer,
                b"ta\":1}GET /next HTTP/1.1\r\nHost: x\r\n\r\n",
            ),
            // The tail of a (binary) response body, then the next response.
            Ev::Data(
                Direction::ToClient,
                b"\x00\x17\x8b tail of a body\xffHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ),
            Ev::Data(
                Direction::ToServer,
                b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n",
            ),
            Ev::Data(
                Direction::ToClient,
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            ),
        ],
        true,
    );
    let paired: Vec<_> = summary(&out)
        .into_iter()
        .filter(|(m, _, s)| m != "-" && s.is_some())
        .collect();
    assert_eq!(
        paired,
        [
            ("GET".into(), "/next".into(), Some(200)),
            ("GET".into(), "/after".into(), Some(404))
        ],
        "{:?}",
        out.entries
    );
}

/// Feeds a whole connection through detection (`Connection`), closed by FIN.
fn connection(events: &[(Direction, &[u8])]) -> Vec<proto::v1::Entry> {
    use crate::flow::FlowHandler;
    let f = flow(5, 3128, false);
    let mut conn = crate::Connection::new(std::sync::Arc::new(DissectConfig::default()));
    let mut out = Vec::new();
    for (i, (dir, b)) in events.iter().enumerate() {
        conn.on_data(&f, *dir, 1000 * (i as u64 + 1), b, &mut out);
    }
    conn.on_close(&f, &crate::testing::fin(1 << 30), &mut out);
    crate::testing::entries(out)
}

/// Through an HTTP proxy's tunnel (`CONNECT`, then 200), the traffic inside
/// is detected as a new connection's: plain HTTP inside is dissected, and its
/// entries number on from the CONNECT's.
#[test]
fn what_goes_through_a_connect_tunnel_is_detected_again() {
    let es = connection(&[
        (
            Direction::ToServer,
            b"CONNECT shop.internal:80 HTTP/1.1\r\nHost: shop.internal:80\r\n\r\n",
        ),
        (
            Direction::ToClient,
            b"HTTP/1.1 200 Connection established\r\n\r\n",
        ),
        (
            Direction::ToServer,
            b"GET /inner HTTP/1.1\r\nHost: shop.internal\r\n\r\n",
        ),
        (
            Direction::ToClient,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
    ]);
    let got: Vec<_> = es
        .iter()
        .map(|e| {
            (
                e.id.clone(),
                e.method().unwrap_or("-").to_string(),
                e.status(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "0000000000000005-0".to_string(),
                "CONNECT".to_string(),
                Some(200)
            ),
            (
                "0000000000000005-1".to_string(),
                "GET".to_string(),
                Some(200)
            ),
        ],
        "{es:?}"
    );
    assert_eq!(es[1].path(), Some("/inner"));
}

/// A tunnel carrying what nothing dissects (SSH) ends as a `tcp` entry beside
/// the CONNECT's, with an id of its own.
#[test]
fn an_undissected_tunnel_is_a_tcp_entry_after_the_connect() {
    let es = connection(&[
        (
            Direction::ToServer,
            b"CONNECT git.example:22 HTTP/1.1\r\n\r\n",
        ),
        (Direction::ToClient, b"HTTP/1.1 200 OK\r\n\r\n"),
        (Direction::ToServer, b"SSH-2.0-OpenSSH_9.6\r\n"),
        (Direction::ToClient, b"SSH-2.0-OpenSSH_9.2p1\r\n"),
    ]);
    let got: Vec<_> = es.iter().map(|e| (e.id.as_str(), e.protocol)).collect();
    assert_eq!(
        got,
        [
            ("0000000000000005-0", Protocol::Http as i32),
            ("0000000000000005-1", Protocol::Tcp as i32)
        ],
        "{es:?}"
    );
}
