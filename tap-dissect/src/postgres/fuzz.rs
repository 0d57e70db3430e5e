//! Arbitrary bytes as the two directions of a PostgreSQL connection, split at
//! arbitrary points, with gaps, fed straight to the PostgreSQL dissector (no
//! probe in the way), from the start (optionally after a canned startup
//! exchange) or mid-stream: it must never panic or hang, and never keep more
//! than its caps.
#![no_main]

#[path = "../../../fuzz/fuzz_targets/records/mod.rs"]
mod records;

use libfuzzer_sys::fuzz_target;
use proto::v1::{request, response};
use tap_dissect::{DissectConfig, Emit, postgres};
use tap_dissect::flow::Direction;

const MAX_BODY: usize = 512;

/// StartupMessage (user=u) and AuthenticationOk + ReadyForQuery.
const STARTUP: &[u8] = b"\0\0\0\x0f\0\x03\0\0user\0u\0\0";
const WELCOME: &[u8] = b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I";

fuzz_target!(|data: &[u8]| {
    let mode = data.first().copied().unwrap_or(0);
    let flow = records::flow([127, 0, 0, 1], ([127, 0, 0, 1], 5432), mode & 1 == 1);
    let config = DissectConfig {
        max_body: MAX_BODY,
        max_head: 1024,
        max_pending: 8,
    };
    let mut d = postgres::new(&flow, &config, None);
    let mut out = Vec::new();
    if mode & 3 == 2 {
        d.on_data(&flow, Direction::ToServer, 0, STARTUP, &mut out);
        d.on_data(&flow, Direction::ToClient, 0, WELCOME, &mut out);
    }
    records::drive(&mut d, &flow, data.get(1..).unwrap_or_default(), &mut out);
    for e in out {
        let Emit::Entry(e) = e else { continue };
        if let Some(request::Kind::Postgres(r)) = e.request.and_then(|r| r.kind) {
            assert!(r.sql.len() <= MAX_BODY);
            let params: usize = r
                .parameters
                .iter()
                .map(|p| p.text.as_ref().map_or(0, String::len))
                .sum();
            assert!(params <= MAX_BODY);
            assert!(r.parameters.len() <= 256);
            assert!(r.options.len() <= 64);
        }
        if let Some(response::Kind::Postgres(r)) = e.response.and_then(|r| r.kind) {
            assert!(r.results.len() <= 256);
            let kept: usize = r
                .results
                .iter()
                .flat_map(|x| &x.rows)
                .flat_map(|row| &row.values)
                .map(|v| v.text.as_ref().map_or(0, String::len))
                .sum();
            assert!(kept <= MAX_BODY);
            assert!(r.results.iter().all(|x| x.rows.len() <= 100));
            assert!(r.notices.len() <= 16 && r.parameters.len() <= 64);
        }
    }
});
