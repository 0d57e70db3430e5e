//! kubetap's node agent as a library. The data flow is
//! `capture` → `decode` → `reassembly` → `dissect` (with pairing; the
//! `tap-dissect` crate) → entries, tied
//! together by `pipeline`; `driver` runs a source (a file, live interfaces,
//! pods) through it into the one bounded entry `queue`, from which a sink
//! takes them (`ship` streams them to the hub). Each stage is a plain module
//! with a narrow input and output type so the same code serves a capture
//! file, a live interface and (later) TLS plaintext.
#![deny(unsafe_code)]

pub mod capture;
pub mod datagram;
pub mod decode;
pub mod dedup;
pub mod driver;
pub mod drops;
pub mod pipeline;
pub mod pods;
pub mod queue;
pub mod reassembly;
pub mod redact;
pub mod ring;
pub mod ship;
pub mod tap;
pub mod tls;
pub mod tunnel;

pub use pipeline::{Pipeline, PipelineConfig, Stats};
/// The detect, dissect and pair stages: one folder per protocol, in `tap-dissect`.
pub use tap_dissect as dissect;
