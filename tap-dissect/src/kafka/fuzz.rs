//! Arbitrary bytes as the two directions of a Kafka connection, split at
//! arbitrary points, with gaps, fed straight to the Kafka dissector (no probe
//! in the way): it must never panic, never allocate what a length prefix
//! claims, and never keep more than its caps.
#![no_main]

#[path = "../../../fuzz/fuzz_targets/records/mod.rs"]
mod records;

use libfuzzer_sys::fuzz_target;
use proto::v1::{request, response};
use tap_dissect::{DissectConfig, Emit, kafka};

fuzz_target!(|data: &[u8]| {
    let flow = records::flow([127, 0, 0, 1], ([127, 0, 0, 1], 9092), false);
    let config = DissectConfig {
        max_body: 512,
        max_head: 1024,
        max_pending: 8,
    };
    let mut d = kafka::new(&flow, &config, None);
    let mut out = Vec::new();
    records::drive(&mut d, &flow, data, &mut out);
    for e in out {
        if let Emit::Entry(e) = e {
            if let Some(request::Kind::Kafka(r)) = e.request.and_then(|r| r.kind) {
                assert!(r.client_id.len() <= 256 && r.group_id.len() <= 256);
                assert!(r.topics.len() <= 256);
                assert!(r.topics.iter().all(|t| t.partitions.len() <= 1024));
            }
            if let Some(response::Kind::Kafka(r)) = e.response.and_then(|r| r.kind) {
                assert!(r.topics.len() <= 256);
            }
        }
    }
});
