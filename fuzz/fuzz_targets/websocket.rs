//! Arbitrary bytes as the two directions of a WebSocket connection, split at
//! arbitrary points, with gaps, fed to the WebSocket dissector as an HTTP/1
//! upgrade hands it over (with or without permessage-deflate): it must never
//! panic, never keep more than its caps, and number its entries on from the
//! upgrade's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::v1::{Header, request, response};
use std::net::SocketAddr;
use tap_worker::dissect::{DissectConfig, Emit, Handoff, websocket};
use tap_worker::reassembly::{CloseReason, Direction, FlowEnd, FlowInfo};

const MAX_BODY: usize = 512;

fuzz_target!(|data: &[u8]| {
    let flow = FlowInfo {
        id: 1,
        client: SocketAddr::from(([127, 0, 0, 1], 40000)),
        server: SocketAddr::from(([127, 0, 0, 1], 8765)),
        first_ts_ns: 0,
        midstream: false,
    };
    let config = DissectConfig {
        max_body: MAX_BODY,
        max_head: 1024,
        max_pending: 8,
    };
    // The first byte picks the extension the 101 agreed on.
    let extension = match data.first().map(|b| b & 3) {
        Some(1) => Some("permessage-deflate"),
        Some(2) => {
            Some("permessage-deflate; client_no_context_takeover; server_no_context_takeover")
        }
        _ => None,
    };
    let handoff = Handoff {
        protocol: "websocket",
        held: Vec::new(),
        upgrade_entry: Some("0000000000000001-0".into()),
        entries_made: 1,
        upgrade_path: Some("/ws".into()),
        upgrade_headers: extension
            .map(|v| Header {
                name: "Sec-WebSocket-Extensions".into(),
                value: v.into(),
            })
            .into_iter()
            .collect(),
    };
    let mut d = websocket::new(&flow, &config, Some(&handoff));
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
    let mut next = 1;
    for e in out {
        if let Emit::Entry(e) = e {
            assert_eq!(e.id, format!("{:016x}-{next}", 1));
            next += 1;
            let m = match (
                e.request.and_then(|r| r.kind),
                e.response.and_then(|r| r.kind),
            ) {
                (Some(request::Kind::Websocket(m)), None) => m,
                (None, Some(response::Kind::Websocket(m))) => m,
                other => panic!("not one websocket message: {other:?}"),
            };
            assert!(m.payload.len() <= MAX_BODY);
            assert!(m.close_reason.len() <= 3 * 125);
            assert!(m.compressed || !m.inflated);
        }
    }
});
