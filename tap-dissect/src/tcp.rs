//! The handler of one TCP connection: detects its protocol from the first
//! bytes, feeds the claimed dissector (and the next one after an upgrade), and
//! makes a `tcp` entry of a connection no dissector claims: endpoints, bytes
//! and packets each way, duration and how it ended.

use super::{Claim, DissectConfig, Dissector, Emit, Handoff};
use crate::flow::{Direction, FlowEnd, FlowHandler, FlowInfo};
use crate::pair;
use crate::registry::tcp_protocols;
use proto::v1::Protocol;
use std::sync::Arc;

/// Bytes held per direction while no probe has decided. Past this a
/// connection seen from its start is unclaimed; one seen mid-stream drops what
/// it held and keeps looking for a message boundary, up to [`MAX_MIDSTREAM_PROBE`].
const MAX_PROBE_BYTES: usize = 4096;
/// Bytes a mid-stream connection may carry before it is declared unclaimed.
const MAX_MIDSTREAM_PROBE: u64 = 256 << 10;

enum State {
    /// Events held until a probe decides.
    Detecting {
        held: Vec<Held>,
        /// Bytes held per direction.
        bytes: [usize; 2],
        /// Bytes seen in both directions since the connection appeared.
        seen: u64,
    },
    Claimed(Box<dyn Dissector>),
    Unclaimed,
}

enum Held {
    Data(Direction, u64, Vec<u8>),
    Gap(Direction, u64, u64),
}

/// The handler of one connection: detects its protocol, then feeds its dissector.
pub struct Connection {
    state: State,
    config: Arc<DissectConfig>,
    /// Entries made before a tunnel (HTTP `CONNECT`) was opened: those of
    /// the protocol inside number on from there.
    offset: u64,
}

impl Connection {
    pub fn new(config: Arc<DissectConfig>) -> Self {
        Connection {
            state: State::Detecting {
                held: Vec::new(),
                bytes: [0; 2],
                seen: 0,
            },
            config,
            offset: 0,
        }
    }

    /// Numbers the entries `out` gained from `from` on after the tunnel's.
    fn renumber(&self, flow: &FlowInfo, out: &mut [Emit], from: usize) {
        if self.offset == 0 {
            return;
        }
        for e in out.iter_mut().skip(from) {
            if let Emit::Entry(e) = e
                && let Some(n) = e.id.rsplit('-').next().and_then(|n| n.parse::<u64>().ok())
            {
                e.id = proto::entry_id(flow.id, n + self.offset);
            }
        }
    }

    fn detect(&mut self, flow: &FlowInfo, out: &mut Vec<Emit>) {
        let State::Detecting { held, bytes, seen } = &self.state else {
            return;
        };
        let mut undecided = false;
        for spec in tcp_protocols() {
            let mut verdicts = [Claim::No; 2];
            for dir in [Direction::ToServer, Direction::ToClient] {
                let first: Vec<u8> = held
                    .iter()
                    .filter_map(|h| match h {
                        Held::Data(d, _, b) if *d == dir => Some(b.as_slice()),
                        _ => None,
                    })
                    .flatten()
                    .copied()
                    .take(MAX_PROBE_BYTES)
                    .collect();
                verdicts[dir.index()] = if first.is_empty() {
                    // The silent side may be the one a protocol recognises: the
                    // client of a server-speaks-first protocol, or mid-stream the
                    // side that starts the next message.
                    Claim::NeedMore
                } else {
                    (spec.probe)(dir, &first, flow.midstream)
                };
            }
            if verdicts.contains(&Claim::Yes) {
                let dissector = (spec.new)(flow, &self.config, None);
                let State::Detecting { held, .. } =
                    std::mem::replace(&mut self.state, State::Claimed(dissector))
                else {
                    unreachable!("state checked above")
                };
                let State::Claimed(d) = &mut self.state else {
                    unreachable!("just set")
                };
                for h in held {
                    match h {
                        Held::Data(dir, ts, b) => d.on_data(flow, dir, ts, &b, out),
                        Held::Gap(dir, ts, len) => d.on_gap(flow, dir, ts, len, out),
                    }
                }
                return;
            }
            undecided |= verdicts.contains(&Claim::NeedMore);
        }
        let exhausted = if flow.midstream {
            *seen >= MAX_MIDSTREAM_PROBE
        } else {
            bytes.iter().any(|b| *b >= MAX_PROBE_BYTES)
        };
        if !undecided || exhausted {
            self.state = State::Unclaimed;
            out.push(Emit::Unclaimed);
        }
    }

    /// After a call into the dissector: if it handed the connection on, start the next one.
    fn take_handoff(&mut self, flow: &FlowInfo, out: &mut Vec<Emit>) {
        let State::Claimed(d) = &mut self.state else {
            return;
        };
        let Some(handoff) = d.handoff() else { return };
        if handoff.protocol == Handoff::DETECT {
            // A tunnel: its first bytes are probed as a new connection's.
            self.offset = handoff.entries_made;
            let mut held = Vec::new();
            let mut bytes = [0; 2];
            for (dir, ts, b) in handoff.held {
                bytes[dir.index()] += b.len();
                held.push(Held::Data(dir, ts, b));
            }
            self.state = State::Detecting {
                held,
                bytes,
                seen: 0,
            };
            if bytes.iter().any(|b| *b > 0) {
                let from = out.len();
                self.detect(flow, out);
                self.renumber(flow, out, from);
            }
            return;
        }
        // A protocol we do not dissect yet stays with the old dissector, which ignores its bytes.
        let Some(spec) = tcp_protocols().find(|p| p.name == handoff.protocol) else {
            return;
        };
        let mut next = (spec.new)(flow, &self.config, Some(&handoff));
        for (dir, ts, bytes) in &handoff.held {
            next.on_data(flow, *dir, *ts, bytes, out);
        }
        self.state = State::Claimed(next);
    }
}

impl FlowHandler for Connection {
    type Out = Emit;

    fn on_data(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        match &mut self.state {
            State::Claimed(d) => {
                let from = out.len();
                d.on_data(flow, dir, ts_ns, data, out);
                self.renumber(flow, out, from);
                self.take_handoff(flow, out);
            }
            State::Unclaimed => {}
            State::Detecting { held, bytes, seen } => {
                *seen += data.len() as u64;
                if flow.midstream && bytes[dir.index()] >= MAX_PROBE_BYTES {
                    // Nothing parseable yet in this direction: forget it, keep looking.
                    let dropped = bytes[dir.index()] as u64;
                    held.retain(|h| !matches!(h, Held::Data(d, ..) if *d == dir));
                    held.push(Held::Gap(dir, ts_ns, dropped));
                    bytes[dir.index()] = 0;
                }
                let room = MAX_PROBE_BYTES.saturating_sub(bytes[dir.index()]);
                let keep = &data[..data.len().min(room)];
                bytes[dir.index()] += keep.len();
                held.push(Held::Data(dir, ts_ns, keep.to_vec()));
                // Claimed bytes past what we held are fed once the dissector exists.
                let rest = &data[keep.len()..];
                let from = out.len();
                self.detect(flow, out);
                if let State::Claimed(d) = &mut self.state
                    && !rest.is_empty()
                {
                    d.on_data(flow, dir, ts_ns, rest, out);
                }
                self.renumber(flow, out, from);
                self.take_handoff(flow, out);
            }
        }
    }

    fn on_gap(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        len: u64,
        out: &mut Vec<Emit>,
    ) {
        match &mut self.state {
            State::Claimed(d) => {
                let from = out.len();
                d.on_gap(flow, dir, ts_ns, len, out);
                self.renumber(flow, out, from);
                self.take_handoff(flow, out);
            }
            State::Unclaimed => {}
            State::Detecting { held, .. } => held.push(Held::Gap(dir, ts_ns, len)),
        }
    }

    fn on_close(&mut self, flow: &FlowInfo, end: &FlowEnd, out: &mut Vec<Emit>) {
        let from = out.len();
        match &mut self.state {
            State::Claimed(d) => d.on_close(flow, end, out),
            State::Unclaimed => out.push(Emit::Entry(Box::new(pair::flow_entry(
                flow,
                end,
                Protocol::Tcp,
            )))),
            State::Detecting { .. } => {
                out.push(Emit::Unclaimed);
                out.push(Emit::Entry(Box::new(pair::flow_entry(
                    flow,
                    end,
                    Protocol::Tcp,
                ))));
            }
        }
        // After a tunnel, these too number on from its entries.
        self.renumber(flow, out, from);
    }
}
