//! Arbitrary bytes as the two directions of an AMQP 0-9-1 connection, split
//! at arbitrary points, with gaps, fed straight to the AMQP dissector (no probe
//! in the way): it must never panic, and never keep more than its caps.
#![no_main]

#[path = "../../../fuzz/fuzz_targets/records/mod.rs"]
mod records;

use libfuzzer_sys::fuzz_target;
use proto::v1::{AmqpMethod, request, response};
use tap_dissect::{DissectConfig, Emit, amqp};

const MAX_BODY: usize = 512;

fn check(m: &AmqpMethod) {
    assert!(m.body.as_ref().is_none_or(|b| b.data.len() <= MAX_BODY));
    assert!(m.properties.len() <= 64 + 14);
    assert!(m.arguments.len() <= 64 + 16);
    assert!(m.exchange.len() <= 3 * 255 && m.routing_key.len() <= 3 * 255);
}

fuzz_target!(|data: &[u8]| {
    let midstream = data.first().is_some_and(|b| b & 1 == 1);
    let flow = records::flow([127, 0, 0, 1], ([127, 0, 0, 1], 5672), midstream);
    let config = DissectConfig {
        max_body: MAX_BODY,
        max_head: 1024,
        max_pending: 8,
    };
    let mut d = amqp::new(&flow, &config, None);
    let mut out = Vec::new();
    records::drive(&mut d, &flow, data.get(1..).unwrap_or_default(), &mut out);
    for e in out {
        if let Emit::Entry(e) = e {
            if let Some(request::Kind::Amqp(m)) = e.request.and_then(|r| r.kind) {
                check(&m);
            }
            if let Some(response::Kind::Amqp(m)) = e.response.and_then(|r| r.kind) {
                check(&m);
            }
        }
    }
});
