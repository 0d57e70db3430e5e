//! Arbitrary bytes as the two directions of a connection (opening with a
//! ClientHello in the seeds), split at arbitrary points, with gaps, fed
//! through detection, from the start or mid-stream: nothing may panic, at
//! most one TLS entry is made, it counts no more bytes than were fed, and
//! what it keeps from the wire stays within the dissector's bounds.
#![no_main]

#[path = "../../../fuzz/fuzz_targets/records/mod.rs"]
mod records;

use libfuzzer_sys::fuzz_target;
use proto::v1::{Protocol, request, response};
use std::sync::Arc;
use tap_dissect::{Connection, DissectConfig, Emit};

fuzz_target!(|data: &[u8]| {
    let midstream = data.first().is_some_and(|b| b & 0x40 != 0);
    let flow = records::flow([10, 0, 0, 1], ([10, 0, 0, 2], 443), midstream);
    let config = DissectConfig { max_body: 1024, max_head: 2048, max_pending: 8 };
    let mut conn = Connection::new(Arc::new(config));
    let mut out = Vec::new();
    records::drive(&mut conn, &flow, data, &mut out);
    let mut made = 0;
    for e in out {
        let Emit::Entry(e) = e else { continue };
        if e.protocol != Protocol::Tls as i32 {
            continue;
        }
        made += 1;
        assert!(e.request_size + e.response_size <= data.len() as u64);
        if let Some(request::Kind::Tls(r)) = e.request.and_then(|r| r.kind) {
            assert!(r.server_name.len() <= 1024 && r.alpn.iter().all(|a| a.len() <= 1024));
        }
        if let Some(response::Kind::Tls(r)) = e.response.and_then(|r| r.kind) {
            assert!(r.certificate_subject.len() <= 1024 && r.alpn.len() <= 1024);
            assert!(r.certificate_sans.len() <= data.len());
        }
    }
    assert!(made <= 1, "{made} TLS entries for one connection");
});
