//! kubetap's protobuf schema and generated types: the entry model that workers
//! produce and the hub stores, and the worker-hub service. What a protocol's
//! messages mean (their JSON form, generic fields, heap walk) is in
//! `tap-dissect`, one folder per protocol.
#![forbid(unsafe_code)]

/// Generated from `proto/kubetap/v1/*.proto`: the entry model and the
/// worker-hub service (`hub_client`, `hub_server`).
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/kubetap.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/protocol_names.rs"));
}

pub use v1::{Entry, Protocol};

/// A flow id as the 16 lowercase hex digits entry ids and `flow_id` use
/// (`0000000000000001`), formatted without the `fmt` machinery: it is written
/// for every entry.
#[derive(Clone, Copy)]
pub struct FlowHex([u8; 16]);

impl FlowHex {
    pub fn new(id: u64) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'0'; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = DIGITS[((id >> (60 - 4 * i)) & 0xf) as usize];
        }
        FlowHex(out)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// An entry's id: its flow and its index on that flow, `0000000000000001-3`.
pub fn entry_id(flow_id: u64, n: u64) -> String {
    let mut id = String::with_capacity(24);
    id.push_str(FlowHex::new(flow_id).as_str());
    id.push('-');
    id.push_str(itoa::Buffer::new().format(n));
    id
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn flow_hex_and_entry_id_match_the_fmt_forms() {
        for (id, n) in [(0u64, 0u64), (1, 7), (0xab, 12345), (u64::MAX, u64::MAX)] {
            assert_eq!(FlowHex::new(id).as_str(), format!("{id:016x}"));
            assert_eq!(entry_id(id, n), format!("{id:016x}-{n}"));
        }
    }
}
