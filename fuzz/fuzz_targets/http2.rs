//! Arbitrary bytes as the two directions of an HTTP/2 connection after the
//! client's preface (or mid-stream), split at arbitrary points, with gaps: the
//! dissector must never panic, and never keep more body, headers or gRPC
//! messages than its caps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::v1::{request, response};
use std::net::SocketAddr;
use std::sync::Arc;
use tap_worker::dissect::{Connection, DissectConfig, Emit, grpc, http2};
use tap_worker::reassembly::{CloseReason, Direction, FlowEnd, FlowHandler, FlowInfo};

const MAX_BODY: usize = 1024;
const MAX_HEAD: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let midstream = data.first().is_some_and(|b| b & 1 == 1);
    let flow = FlowInfo {
        id: 1,
        client: SocketAddr::from(([10, 0, 0, 1], 40000)),
        server: SocketAddr::from(([10, 0, 0, 2], 80)),
        first_ts_ns: 0,
        midstream,
    };
    let config = DissectConfig {
        max_body: MAX_BODY,
        max_head: MAX_HEAD,
        max_pending: 8,
    };
    let mut conn = Connection::new(Arc::new(config));
    let mut out = Vec::new();
    if !midstream {
        conn.on_data(&flow, Direction::ToServer, 0, http2::PREFACE, &mut out);
    }
    // Records: control byte (direction, gap), length byte, bytes.
    let mut rest = data.get(1..).unwrap_or_default();
    let mut ts = 0;
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], usize::from(rest[1]).min(rest.len() - 2));
        let chunk = &rest[2..2 + len];
        rest = &rest[2 + len..];
        ts += 1000;
        let dir = if ctl & 1 == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        if ctl & 0x80 != 0 {
            conn.on_gap(&flow, dir, ts, u64::from(ctl & 0x3f), &mut out);
        } else {
            conn.on_data(&flow, dir, ts, chunk, &mut out);
        }
    }
    let end = FlowEnd {
        ts_ns: ts,
        reason: CloseReason::Fin,
        packets: [0; 2],
        bytes: [0; 2],
    };
    conn.on_close(&flow, &end, &mut out);
    let head = |hs: &[proto::v1::Header]| {
        hs.iter()
            .map(|h| h.name.len() + h.value.len())
            .sum::<usize>()
    };
    for e in out {
        let Emit::Entry(e) = e else { continue };
        let body = |b: Option<&proto::v1::Body>| b.map_or(0, |b| b.data.len());
        match e.request.and_then(|r| r.kind) {
            Some(request::Kind::Http(r)) => {
                assert!(body(r.body.as_ref()) <= MAX_BODY);
                assert!(head(&r.headers) <= MAX_HEAD && head(&r.trailers) <= MAX_HEAD);
            }
            Some(request::Kind::Grpc(r)) => {
                assert!(r.messages.len() <= grpc::MAX_MESSAGES);
                assert!(r.messages.iter().map(|m| m.data.len()).sum::<usize>() <= MAX_BODY);
                assert!(head(&r.headers) <= MAX_HEAD);
            }
            _ => {}
        }
        match e.response.and_then(|r| r.kind) {
            Some(response::Kind::Http(r)) => {
                assert!(body(r.body.as_ref()) <= MAX_BODY);
                assert!(head(&r.headers) <= MAX_HEAD && head(&r.trailers) <= MAX_HEAD);
            }
            Some(response::Kind::Grpc(r)) => {
                assert!(r.messages.len() <= grpc::MAX_MESSAGES);
                assert!(r.messages.iter().map(|m| m.data.len()).sum::<usize>() <= MAX_BODY);
            }
            _ => {}
        }
    }
});
