//! Arbitrary bytes as the two directions of a Redis connection, split at
//! arbitrary points, with gaps, fed straight to the Redis dissector (no probe
//! in the way): it must never panic, and never keep more than its caps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::v1::{request, response};
use std::net::SocketAddr;
use tap_worker::dissect::{DissectConfig, Emit, redis};
use tap_worker::reassembly::{CloseReason, Direction, FlowEnd, FlowInfo};

const MAX_BODY: usize = 512;

fuzz_target!(|data: &[u8]| {
    let flow = FlowInfo {
        id: 1,
        client: SocketAddr::from(([127, 0, 0, 1], 40000)),
        server: SocketAddr::from(([127, 0, 0, 1], 6390)),
        first_ts_ns: 0,
        midstream: data.first().is_some_and(|b| b & 1 == 1),
    };
    let config = DissectConfig {
        max_body: MAX_BODY,
        max_head: 1024,
        max_pending: 8,
    };
    let mut d = redis::new(&flow, &config, None);
    let mut out = Vec::new();
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
            d.on_gap(&flow, dir, ts, u64::from(ctl & 0x3f), &mut out);
        } else {
            d.on_data(&flow, dir, ts, chunk, &mut out);
        }
    }
    let end = FlowEnd {
        ts_ns: ts,
        reason: CloseReason::Fin,
        packets: [0; 2],
        bytes: [0; 2],
    };
    d.on_close(&flow, &end, &mut out);
    for e in out {
        if let Emit::Entry(e) = e {
            if let Some(request::Kind::Redis(r)) = e.request.and_then(|r| r.kind) {
                assert!(r.args.iter().map(Vec::len).sum::<usize>() <= MAX_BODY);
                assert!(r.args.len() <= 4097);
                assert!(r.command.len() <= 3 * 64 + 1 + 32);
            }
            if let Some(response::Kind::Redis(r)) = e.response.and_then(|r| r.kind) {
                assert!(r.value.len() <= MAX_BODY);
                assert!(r.error.len() <= 3 * MAX_BODY);
            }
        }
    }
});
