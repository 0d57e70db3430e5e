//! kubetap's protocols: which protocol a flow speaks, decided by content
//! (`tcp`, `udp`: the detect stage), and one folder per protocol holding
//! everything about it — its dissector (bytes to messages, messages paired
//! into entries), its entries' JSON form, its heap walk, its generic fields
//! (method, path, status), its service-map error rule and its field names —
//! behind the [`Protocol`] trait, listed in one table, [`registry`].
//!
//! A dissector implements [`Dissector`] (TCP streams) or
//! [`DatagramDissector`] (UDP) and is found through the probe in its
//! [`ProtocolSpec`] or [`DatagramSpec`]. Ports are never consulted. Flows
//! nobody claims become `tcp` and `udp` entries (`tcp.rs`, `udp.rs`, which
//! also hold the per-flow handlers; their entries' form is in `stream`).
//! Adding a protocol: docs/architecture.md, "Adding a protocol".
#![forbid(unsafe_code)]

pub mod amqp;
pub mod dns;
pub mod encoding;
pub mod flow;
pub mod graphql;
pub mod grpc;
pub mod heap;
pub mod http1;
pub mod http2;
pub mod json;
pub mod kafka;
pub mod pair;
pub mod postgres;
pub mod redact;
pub mod redis;
pub mod registry;
pub mod socks;
pub mod stream;
pub mod tcp;
#[cfg(test)]
pub(crate) mod testing;
pub mod tls;
pub mod udp;
pub mod websocket;

use crate::flow::{Direction, FlowEnd, FlowInfo};
use proto::v1::Entry;

pub use registry::{GenericFields, Protocol, failed};
pub use tcp::Connection;
pub use udp::Datagrams;

/// What a flow's handler produces.
#[derive(Debug)]
pub enum Emit {
    Entry(Box<Entry>),
    /// Bytes a dissector could not parse; the stream resynchronises after them.
    ParseError {
        protocol: &'static str,
        reason: String,
    },
    /// A flow no dissector claimed (it becomes a `tcp` or `udp` entry too).
    Unclaimed,
    /// Something a bound pushed out (a query evicted from a full pending
    /// list); counted in the pipeline's drops.
    Dropped {
        protocol: &'static str,
        what: &'static str,
    },
}

/// Limits and settings every dissector reads.
#[derive(Debug, Clone)]
pub struct DissectConfig {
    /// Body bytes kept per message (after decoding); the rest is counted, not kept.
    pub max_body: usize,
    /// Largest message head (start line and headers).
    pub max_head: usize,
    /// Requests waiting for their responses on one connection.
    pub max_pending: usize,
}

impl Default for DissectConfig {
    fn default() -> Self {
        DissectConfig {
            max_body: 1 << 20,
            max_head: 64 << 10,
            max_pending: 256,
        }
    }
}

/// A protocol's parser for one TCP connection. `Send`: live capture runs
/// the pipeline on its capture threads.
pub trait Dissector: Send {
    fn on_data(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    );
    fn on_gap(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        len: u64,
        out: &mut Vec<Emit>,
    );
    fn on_close(&mut self, flow: &FlowInfo, end: &FlowEnd, out: &mut Vec<Emit>);
    /// The connection switched protocols (HTTP `Upgrade`): who takes it on.
    /// Asked after every call; a dissector returns `Some` once.
    fn handoff(&mut self) -> Option<Handoff> {
        None
    }
}

/// A connection handed from one dissector to another mid-way.
#[derive(Debug, Clone, Default)]
pub struct Handoff {
    /// The registered name of the protocol that takes over (`websocket`, `http2`).
    pub protocol: &'static str,
    /// Bytes that arrived after the switch, in order, for the new dissector.
    pub held: Vec<(Direction, u64, Vec<u8>)>,
    /// The entry of the request that asked for the switch.
    pub upgrade_entry: Option<String>,
    /// Entries already made on the connection: the next dissector numbers on from here.
    pub entries_made: u64,
    /// The path of the request that asked for the switch.
    pub upgrade_path: Option<String>,
    /// The headers of the response that switched (`101`): the negotiated
    /// `Sec-WebSocket-Extensions` and `Sec-WebSocket-Protocol`, say.
    pub upgrade_headers: Vec<proto::v1::Header>,
}

impl Handoff {
    /// The `protocol` of a tunnel (HTTP `CONNECT`): what it carries is
    /// detected again, as a new connection's first bytes are.
    pub const DETECT: &'static str = "detect";
}

/// A protocol's parser for one UDP flow.
pub trait DatagramDissector: Send {
    fn on_datagram(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        payload: &[u8],
        out: &mut Vec<Emit>,
    );
    fn on_close(&mut self, flow: &FlowInfo, end: &FlowEnd, out: &mut Vec<Emit>);
}

/// What one parsing step of a dissector did with its input.
pub(crate) enum Step {
    Consumed(usize),
    /// Parse these bytes, then the input after the first `usize` bytes.
    Replay(Vec<u8>, usize),
}

/// Runs `step` until `data` is consumed; a `Replay` puts bytes back in front
/// of the rest (how HTTP/1 and HTTP/2 resynchronise without recursion).
pub(crate) fn run_steps(data: &[u8], mut step: impl FnMut(&[u8]) -> Step) {
    let mut replay: Vec<u8>;
    let mut input = data;
    while !input.is_empty() {
        match step(input) {
            Step::Consumed(n) => input = &input[n..],
            Step::Replay(mut bytes, n) => {
                bytes.extend_from_slice(&input[n..]);
                replay = bytes;
                input = &replay;
            }
        }
    }
}

/// A probe's answer about the first bytes of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Yes,
    No,
    NeedMore,
}

/// How a TCP protocol is found and dissected: a probe over the first bytes
/// seen in one direction, and a constructor.
pub struct ProtocolSpec {
    pub name: &'static str,
    pub probe: fn(dir: Direction, first: &[u8], midstream: bool) -> Claim,
    pub new: fn(
        flow: &FlowInfo,
        config: &DissectConfig,
        handoff: Option<&Handoff>,
    ) -> Box<dyn Dissector>,
}

/// How a UDP protocol is found and dissected: a probe over one datagram, and a constructor.
pub struct DatagramSpec {
    pub name: &'static str,
    pub probe: fn(dir: Direction, payload: &[u8]) -> bool,
    pub new: fn(flow: &FlowInfo, config: &DissectConfig) -> Box<dyn DatagramDissector>,
}
