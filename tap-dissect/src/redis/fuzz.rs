//! Arbitrary bytes as the two directions of a Redis connection, split at
//! arbitrary points, with gaps, fed straight to the Redis dissector (no probe
//! in the way): it must never panic, and never keep more than its caps.
#![no_main]

#[path = "../../../fuzz/fuzz_targets/records/mod.rs"]
mod records;

use libfuzzer_sys::fuzz_target;
use proto::v1::{request, response};
use tap_dissect::{DissectConfig, Emit, redis};

const MAX_BODY: usize = 512;

fuzz_target!(|data: &[u8]| {
    let midstream = data.first().is_some_and(|b| b & 1 == 1);
    let flow = records::flow([127, 0, 0, 1], ([127, 0, 0, 1], 6390), midstream);
    let config = DissectConfig {
        max_body: MAX_BODY,
        max_head: 1024,
        max_pending: 8,
    };
    let mut d = redis::new(&flow, &config, None);
    let mut out = Vec::new();
    records::drive(&mut d, &flow, data.get(1..).unwrap_or_default(), &mut out);
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
