//! Scaffolding for the dissectors' unit tests: a flow, a script of data and
//! gaps, a driver that feeds the script to one dissector and closes the
//! connection, and a collector that sorts what came out.

use super::{Dissector, Emit};
use crate::flow::{CloseReason, Direction, FlowEnd, FlowInfo};
use proto::v1::Entry;
use std::net::SocketAddr;

/// A loopback connection from port 40000 to `server_port`, first seen at 0.
pub(crate) fn flow(id: u64, server_port: u16, midstream: bool) -> FlowInfo {
    FlowInfo {
        id,
        client: SocketAddr::from(([127, 0, 0, 1], 40000)),
        server: SocketAddr::from(([127, 0, 0, 1], server_port)),
        first_ts_ns: 0,
        midstream,
        tls: false,
        outer: None,
    }
}

/// A connection closed by FIN at `ts_ns`.
pub(crate) fn fin(ts_ns: u64) -> FlowEnd {
    FlowEnd {
        ts_ns,
        reason: CloseReason::Fin,
        packets: [0; 2],
        bytes: [0; 2],
    }
}

/// One step of a conversation as reassembly delivers it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ev<'a> {
    Data(Direction, &'a [u8]),
    Gap(Direction, u64),
}

/// Feeds the events to `d`, the i-th at 1000 * (i + 1) ns (byte by byte when
/// `bytewise`), closes the connection by FIN and returns everything emitted.
pub(crate) fn drive(
    mut d: Box<dyn Dissector>,
    flow: &FlowInfo,
    events: &[Ev],
    bytewise: bool,
) -> Vec<Emit> {
    let mut emitted = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let ts = (i as u64 + 1) * 1000;
        match *ev {
            Ev::Data(dir, b) if bytewise => {
                for byte in b.chunks(1) {
                    d.on_data(flow, dir, ts, byte, &mut emitted);
                }
            }
            Ev::Data(dir, b) => d.on_data(flow, dir, ts, b, &mut emitted),
            Ev::Gap(dir, n) => d.on_gap(flow, dir, ts, n, &mut emitted),
        }
    }
    d.on_close(flow, &fin(1 << 40), &mut emitted);
    emitted
}

/// What one dissector emitted, sorted.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub(crate) entries: Vec<Entry>,
    /// Parse error reasons, in order.
    pub(crate) errors: Vec<String>,
    pub(crate) dropped: usize,
}

impl Out {
    /// Sorts the emits; a parse error from another protocol, or a flow
    /// reported unclaimed, fails the test.
    pub(crate) fn collect(protocol: &str, emitted: Vec<Emit>) -> Out {
        let mut out = Out::default();
        for e in emitted {
            match e {
                Emit::Entry(e) => out.entries.push(*e),
                Emit::ParseError {
                    protocol: from,
                    reason,
                } => {
                    assert_eq!(from, protocol);
                    out.errors.push(reason);
                }
                Emit::Dropped { .. } => out.dropped += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }
}

/// The entries among `emitted`, the rest ignored.
pub(crate) fn entries(emitted: Vec<Emit>) -> Vec<Entry> {
    emitted
        .into_iter()
        .filter_map(|e| match e {
            Emit::Entry(e) => Some(*e),
            _ => None,
        })
        .collect()
}
