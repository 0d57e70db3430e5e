//! Arbitrary bytes as the two directions of an HTTP/1 connection, split at
//! arbitrary points, with gaps: the dissector must never panic and never keep
//! more body than its cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::Arc;
use tap_worker::dissect::{Connection, DissectConfig, Emit};
use tap_worker::reassembly::{CloseReason, Direction, FlowEnd, FlowHandler, FlowInfo};

fuzz_target!(|data: &[u8]| {
    let flow = FlowInfo {
        id: 1,
        client: SocketAddr::from(([10, 0, 0, 1], 40000)),
        server: SocketAddr::from(([10, 0, 0, 2], 80)),
        first_ts_ns: 0,
        midstream: data.first().is_some_and(|b| b & 1 == 1),
    };
    let config = DissectConfig { max_body: 1024, max_head: 2048, max_pending: 8 };
    let mut conn = Connection::new(Arc::new(config));
    let mut out = Vec::new();
    // Records: control byte (direction, gap), length byte, bytes.
    let mut rest = data;
    let mut ts = 0;
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], usize::from(rest[1]).min(rest.len() - 2));
        let chunk = &rest[2..2 + len];
        rest = &rest[2 + len..];
        ts += 1000;
        let dir = if ctl & 1 == 0 { Direction::ToServer } else { Direction::ToClient };
        if ctl & 0x80 != 0 {
            conn.on_gap(&flow, dir, ts, u64::from(ctl & 0x3f), &mut out);
        } else {
            conn.on_data(&flow, dir, ts, chunk, &mut out);
        }
    }
    let end = FlowEnd { ts_ns: ts, reason: CloseReason::Fin, packets: [0; 2], bytes: [0; 2] };
    conn.on_close(&flow, &end, &mut out);
    for e in out {
        if let Emit::Entry(e) = e {
            let body = |b: Option<&proto::v1::Body>| b.map_or(0, |b| b.data.len());
            if let Some(proto::v1::request::Kind::Http(r)) = e.request.and_then(|r| r.kind) {
                assert!(body(r.body.as_ref()) <= 1024);
            }
            if let Some(proto::v1::response::Kind::Http(r)) = e.response.and_then(|r| r.kind) {
                assert!(body(r.body.as_ref()) <= 1024);
            }
        }
    }
});
