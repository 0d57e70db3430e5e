//! kubetap's node agent as a library. The data flow is
//! `capture` → `decode` → `reassembly` → `dissect` → `pair` → entries, tied
//! together by `pipeline`; `ship` streams the entries to the hub. Each stage
//! is a plain module with a narrow input and output type so the same code
//! serves a capture file and (later) a live interface or TLS plaintext.
#![deny(unsafe_code)]

pub mod capture;
pub mod datagram;
pub mod decode;
pub mod dedup;
pub mod dissect;
pub mod pair;
pub mod pipeline;
pub mod pods;
pub mod reassembly;
pub mod ring;
pub mod ship;
pub mod tap;

pub use pipeline::{Pipeline, PipelineConfig, Stats};
