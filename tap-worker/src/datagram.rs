//! UDP flows: datagrams grouped by their address pair, the UDP counterpart of
//! `reassembly`. There are no streams to rebuild, only a bounded table of
//! flows (by count and idle time) whose handlers see each datagram in order.

use crate::reassembly::{
    CloseReason, Direction, FlowEnd, FlowIds, FlowInfo, FlowKey, IdleSweep, Outer, oldest_flow,
};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// UDP flow ids have the top bit set, so they never collide with TCP's in one pipeline.
const ID_BASE: u64 = 1 << 63;

pub use tap_dissect::flow::DatagramHandler;

#[derive(Debug, Clone)]
pub struct DatagramConfig {
    pub max_flows: usize,
    /// A flow with no datagram for this long is closed.
    pub idle_timeout_ns: u64,
}

impl Default for DatagramConfig {
    fn default() -> Self {
        DatagramConfig {
            max_flows: 65_536,
            idle_timeout_ns: 30_000_000_000,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct DatagramStats {
    pub datagrams: u64,
    pub flows: u64,
    pub flows_expired: u64,
    pub flows_evicted: u64,
}

struct Flow<H> {
    info: FlowInfo,
    packets: [u64; 2],
    bytes: [u64; 2],
    last_ts_ns: u64,
    handler: H,
}

pub struct DatagramFlows<H, F> {
    flows: HashMap<FlowKey, Flow<H>>,
    new_handler: F,
    config: DatagramConfig,
    ids: FlowIds,
    idle: IdleSweep,
    pub stats: DatagramStats,
}

impl<H: DatagramHandler, F: FnMut(&FlowInfo) -> H> DatagramFlows<H, F> {
    pub fn new(config: DatagramConfig, new_handler: F) -> Self {
        DatagramFlows {
            flows: HashMap::new(),
            new_handler,
            config,
            ids: FlowIds::default(),
            idle: IdleSweep::default(),
            stats: DatagramStats::default(),
        }
    }

    /// Takes flow ids from `ids` from now on (`ID_BASE` set on each).
    pub fn share_ids(&mut self, ids: FlowIds) {
        self.ids = ids;
    }

    /// Feeds one datagram sent from `src` to `dst`, unwrapped from tunnel
    /// `outer` if any; returns its flow's id.
    #[allow(clippy::too_many_arguments)]
    pub fn datagram(
        &mut self,
        ts_ns: u64,
        src: IpAddr,
        src_port: u16,
        dst: IpAddr,
        dst_port: u16,
        payload: &[u8],
        outer: Option<Outer>,
        out: &mut Vec<H::Out>,
    ) -> Option<u64> {
        self.stats.datagrams += 1;
        self.sweep(ts_ns, out);
        let from = SocketAddr::new(src, src_port);
        let to = SocketAddr::new(dst, dst_port);
        let key = FlowKey::new(from, to);
        if !self.flows.contains_key(&key) {
            self.create(key, from, to, ts_ns, outer, out);
        }
        let flow = self.flows.get_mut(&key)?;
        let dir = if from == flow.info.client {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        flow.last_ts_ns = ts_ns;
        flow.packets[dir.index()] += 1;
        flow.bytes[dir.index()] += payload.len() as u64;
        flow.handler
            .on_datagram(&flow.info, dir, ts_ns, payload, out);
        Some(flow.info.id)
    }

    /// Closes every flow (end of capture).
    pub fn finish(&mut self, out: &mut Vec<H::Out>) {
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        for key in keys {
            self.close(key, CloseReason::EndOfCapture, out);
        }
    }

    fn create(
        &mut self,
        key: FlowKey,
        from: SocketAddr,
        to: SocketAddr,
        ts_ns: u64,
        outer: Option<Outer>,
        out: &mut Vec<H::Out>,
    ) {
        if self.flows.len() >= self.config.max_flows
            && let Some(k) = oldest_flow(&self.flows, |f| f.last_ts_ns)
        {
            self.stats.flows_evicted += 1;
            self.close(k, CloseReason::Evicted, out);
        }
        // The first sender is the client, unless it sends from a well-known
        // port to an ephemeral one (a reply whose query was not captured).
        let (client, server) = if from.port() < 1024 && to.port() >= 1024 {
            (to, from)
        } else {
            (from, to)
        };
        let info = FlowInfo {
            id: ID_BASE | self.ids.next(),
            client,
            server,
            first_ts_ns: ts_ns,
            midstream: false,
            // Bytes off the wire: a TLS connection's stay encrypted here.
            tls: false,
            outer,
        };
        self.stats.flows += 1;
        let handler = (self.new_handler)(&info);
        self.flows.insert(
            key,
            Flow {
                info,
                packets: [0; 2],
                bytes: [0; 2],
                last_ts_ns: ts_ns,
                handler,
            },
        );
    }

    fn close(&mut self, key: FlowKey, reason: CloseReason, out: &mut Vec<H::Out>) {
        let Some(mut flow) = self.flows.remove(&key) else {
            return;
        };
        let end = FlowEnd {
            ts_ns: flow.last_ts_ns,
            reason,
            packets: flow.packets,
            bytes: flow.bytes,
        };
        flow.handler.on_close(&flow.info, &end, out);
    }

    fn sweep(&mut self, now_ns: u64, out: &mut Vec<H::Out>) {
        let timeout = self.config.idle_timeout_ns;
        for key in self
            .idle
            .due(now_ns, timeout, &self.flows, |f| f.last_ts_ns)
        {
            self.stats.flows_expired += 1;
            self.close(key, CloseReason::Idle, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tap_dissect::{Datagrams, DissectConfig, Emit, GenericFields};

    /// A standard query for `name`'s A record.
    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut q = Vec::new();
        q.extend_from_slice(&id.to_be_bytes());
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn an_idle_udp_flow_closes_its_unanswered_dns_queries() {
        let cfg = Arc::new(DissectConfig {
            max_pending: 8,
            ..DissectConfig::default()
        });
        let mut flows = DatagramFlows::new(DatagramConfig::default(), |_: &FlowInfo| {
            Datagrams::new(cfg.clone())
        });
        let lo = IpAddr::from([127, 0, 0, 1]);
        let mut out = Vec::new();
        let q = query(21, "idle.test");
        flows.datagram(1_000_000_000, lo, 40000, lo, 5353, &q, None, &mut out);
        let entries = |out: &[Emit]| -> Vec<proto::v1::Entry> {
            out.iter()
                .filter_map(|e| match e {
                    Emit::Entry(e) => Some((**e).clone()),
                    _ => None,
                })
                .collect()
        };
        assert!(entries(&out).is_empty());
        // Another flow's datagram 31 s later: the first flow has been idle past 30 s.
        flows.datagram(32_000_000_000, lo, 40001, lo, 5353, &q, None, &mut out);
        let es = entries(&out);
        assert_eq!(es.len(), 1, "{out:?}");
        assert_eq!(es[0].flags, ["no_response"]);
        assert_eq!(
            (es[0].path(), es[0].ts_ns),
            (Some("idle.test"), 1_000_000_000)
        );
        assert_eq!(flows.stats.flows_expired, 1);
    }
}
