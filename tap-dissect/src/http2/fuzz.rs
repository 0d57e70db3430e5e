//! Arbitrary bytes as the two directions of an HTTP/2 connection after the
//! client's preface (or mid-stream), split at arbitrary points, with gaps: the
//! dissector must never panic, and never keep more body, headers or gRPC
//! messages than its caps.
#![no_main]

#[path = "../../../fuzz/fuzz_targets/records/mod.rs"]
mod records;

use libfuzzer_sys::fuzz_target;
use proto::v1::{request, response};
use std::sync::Arc;
use tap_dissect::{Connection, DissectConfig, Emit, grpc, http2};
use tap_dissect::flow::{Direction, FlowHandler};

const MAX_BODY: usize = 1024;
const MAX_HEAD: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let midstream = data.first().is_some_and(|b| b & 1 == 1);
    let flow = records::flow([10, 0, 0, 1], ([10, 0, 0, 2], 80), midstream);
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
    records::drive(
        &mut conn,
        &flow,
        data.get(1..).unwrap_or_default(),
        &mut out,
    );
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
