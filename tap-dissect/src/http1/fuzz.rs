//! Arbitrary bytes as the two directions of an HTTP/1 connection, split at
//! arbitrary points, with gaps: the dissector must never panic and never keep
//! more body than its cap.
#![no_main]

#[path = "../../../fuzz/fuzz_targets/records/mod.rs"]
mod records;

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use tap_dissect::{Connection, DissectConfig, Emit};

fuzz_target!(|data: &[u8]| {
    let midstream = data.first().is_some_and(|b| b & 1 == 1);
    let flow = records::flow([10, 0, 0, 1], ([10, 0, 0, 2], 80), midstream);
    let config = DissectConfig { max_body: 1024, max_head: 2048, max_pending: 8 };
    let mut conn = Connection::new(Arc::new(config));
    let mut out = Vec::new();
    records::drive(&mut conn, &flow, data, &mut out);
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
