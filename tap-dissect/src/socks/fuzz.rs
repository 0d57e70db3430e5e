//! Arbitrary bytes as the two directions of a connection that opens with a
//! SOCKS5 greeting, split at arbitrary points, with gaps, fed through
//! detection (so a tunnel's handoff to the next protocol runs too): nothing
//! may panic, and no SOCKS entry may hold more than one handshake's bytes.
#![no_main]

#[path = "../../../fuzz/fuzz_targets/records/mod.rs"]
mod records;

use libfuzzer_sys::fuzz_target;
use proto::v1::{request, response};
use std::sync::Arc;
use tap_dissect::{Connection, DissectConfig, Emit};

fuzz_target!(|data: &[u8]| {
    let flow = records::flow([10, 0, 0, 1], ([10, 0, 0, 2], 1080), false);
    let config = DissectConfig { max_body: 1024, max_head: 2048, max_pending: 8 };
    let mut conn = Connection::new(Arc::new(config));
    let mut out = Vec::new();
    records::drive(&mut conn, &flow, data, &mut out);
    for e in out {
        if let Emit::Entry(e) = e {
            if let Some(request::Kind::Socks(r)) = e.request.and_then(|r| r.kind) {
                assert!(r.host.len() <= 255 * 3 + 2 && r.auth_methods.len() <= 255);
            }
            if let Some(response::Kind::Socks(r)) = e.response.and_then(|r| r.kind) {
                assert!(r.bound_host.len() <= 255 * 3 + 2);
            }
        }
    }
});
