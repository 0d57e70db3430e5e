//! Arbitrary bytes as the two directions of a WebSocket connection, split at
//! arbitrary points, with gaps, fed to the WebSocket dissector as an HTTP/1
//! upgrade hands it over (with or without permessage-deflate): it must never
//! panic, never keep more than its caps, and number its entries on from the
//! upgrade's.
#![no_main]

#[path = "../../../fuzz/fuzz_targets/records/mod.rs"]
mod records;

use libfuzzer_sys::fuzz_target;
use proto::v1::{Header, request, response};
use tap_dissect::{DissectConfig, Emit, Handoff, websocket};

const MAX_BODY: usize = 512;

fuzz_target!(|data: &[u8]| {
    let flow = records::flow([127, 0, 0, 1], ([127, 0, 0, 1], 8765), false);
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
    records::drive(&mut d, &flow, data.get(1..).unwrap_or_default(), &mut out);
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
