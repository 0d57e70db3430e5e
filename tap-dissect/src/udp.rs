//! The handler of one UDP flow: the first datagram each way is offered to the
//! registered datagram protocols; a flow nobody claims becomes a `udp` entry
//! when it ends (datagrams and bytes each way, duration).

use super::{DatagramDissector, DissectConfig, Emit};
use crate::flow::DatagramHandler;
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair;
use crate::registry::datagram_protocols;
use proto::v1::Protocol;
use std::sync::Arc;

enum State {
    Detecting,
    Claimed(Box<dyn DatagramDissector>),
    Unclaimed,
}

pub struct Datagrams {
    state: State,
    config: Arc<DissectConfig>,
}

impl Datagrams {
    pub fn new(config: Arc<DissectConfig>) -> Self {
        Datagrams {
            state: State::Detecting,
            config,
        }
    }
}

impl DatagramHandler for Datagrams {
    type Out = Emit;

    fn on_datagram(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        payload: &[u8],
        out: &mut Vec<Emit>,
    ) {
        if let State::Detecting = self.state {
            self.state = match datagram_protocols().find(|p| (p.probe)(dir, payload)) {
                Some(spec) => State::Claimed((spec.new)(flow, &self.config)),
                None => {
                    out.push(Emit::Unclaimed);
                    State::Unclaimed
                }
            };
        }
        if let State::Claimed(d) = &mut self.state {
            d.on_datagram(flow, dir, ts_ns, payload, out);
        }
    }

    fn on_close(&mut self, flow: &FlowInfo, end: &FlowEnd, out: &mut Vec<Emit>) {
        match &mut self.state {
            State::Claimed(d) => d.on_close(flow, end, out),
            State::Unclaimed | State::Detecting => {
                out.push(Emit::Entry(Box::new(pair::flow_entry(
                    flow,
                    end,
                    Protocol::Udp,
                ))));
            }
        }
    }
}
