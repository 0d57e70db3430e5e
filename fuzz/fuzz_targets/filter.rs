//! Arbitrary text as a filter, parsed and evaluated against entries of several
//! protocols: parsing and evaluation must never panic (nesting, huge literals,
//! regular expressions), an error's column must lie within the filter, and
//! the `ts` bound a filter reports must hold for every entry it matches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::v1::{
    DnsRequest, DnsResponse, Endpoint, Entry, GrpcRequest, GrpcResponse, Header, HttpRequest,
    HttpResponse, Protocol, RedisRequest, RedisResponse, Request, Response, StreamSide, request,
    response,
};
use std::sync::LazyLock;
use tap_hub::filter::Filter;

const NOW: u64 = 1_795_203_470_000_000_000;

static ENTRIES: LazyLock<Vec<Entry>> = LazyLock::new(|| {
    let ep = |pod: Option<&str>| {
        Some(Endpoint {
            ip: "10.1.0.5".into(),
            port: 8080,
            pod: pod.map(Into::into),
            namespace: Some("shop".into()),
            service: None,
        })
    };
    let headers = vec![
        Header {
            name: "Content-Type".into(),
            value: "application/json".into(),
        },
        Header {
            name: "accept".into(),
            value: "a".into(),
        },
        Header {
            name: "Accept".into(),
            value: "b".into(),
        },
    ];
    let entry = |protocol: Protocol, req: request::Kind, resp: response::Kind| Entry {
        id: "0000000000000001-0".into(),
        ts_ns: NOW - 1_000_000_000,
        node: "node-1".into(),
        protocol: protocol as i32,
        src: ep(Some("frontend-7c9f")),
        dst: ep(None),
        elapsed_ns: Some(1_500_000),
        flow_id: 1,
        request: Some(Request { kind: Some(req) }),
        response: Some(Response { kind: Some(resp) }),
        flags: vec!["gap".into(), "malformed:x".into()],
        ..Default::default()
    };
    vec![
        entry(
            Protocol::Http,
            request::Kind::Http(
                HttpRequest {
                    method: "GET".into(),
                    path: "/api".into(),
                    headers: headers.clone(),
                    ..Default::default()
                }
                .into(),
            ),
            response::Kind::Http(
                HttpResponse {
                    status: 503,
                    headers,
                    ..Default::default()
                }
                .into(),
            ),
        ),
        entry(
            Protocol::Grpc,
            request::Kind::Grpc(
                GrpcRequest {
                    path: "/a.B/C".into(),
                    ..Default::default()
                }
                .into(),
            ),
            response::Kind::Grpc(
                GrpcResponse {
                    status: Some(14),
                    ..Default::default()
                }
                .into(),
            ),
        ),
        entry(
            Protocol::Redis,
            request::Kind::Redis(
                RedisRequest {
                    command: "GET".into(),
                    ..Default::default()
                }
                .into(),
            ),
            response::Kind::Redis(
                RedisResponse {
                    is_error: true,
                    ..Default::default()
                }
                .into(),
            ),
        ),
        entry(
            Protocol::Dns,
            request::Kind::Dns(
                DnsRequest {
                    name: "example.com".into(),
                    ..Default::default()
                }
                .into(),
            ),
            response::Kind::Dns(
                DnsResponse {
                    rcode: 3,
                    ..Default::default()
                }
                .into(),
            ),
        ),
        entry(
            Protocol::Tcp,
            request::Kind::Stream(
                StreamSide {
                    bytes: 10,
                    ..Default::default()
                }
                .into(),
            ),
            response::Kind::Stream(
                StreamSide {
                    ended: "fin".into(),
                    ..Default::default()
                }
                .into(),
            ),
        ),
        Entry::default(),
    ]
});

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match Filter::parse(src) {
        Ok(f) => {
            for now in [NOW, 0, u64::MAX] {
                let bound = f.min_ts_ns(now);
                for e in ENTRIES.iter() {
                    if f.matches(e, now) {
                        assert!(
                            bound.is_none_or(|b| e.ts_ns >= b),
                            "{src:?} matched below its bound"
                        );
                    }
                }
            }
        }
        Err(e) => {
            assert!(e.column >= 1, "{src:?}: column {}", e.column);
            assert!(
                e.column <= src.chars().count() + 1,
                "{src:?}: column {}",
                e.column
            );
        }
    }
});
