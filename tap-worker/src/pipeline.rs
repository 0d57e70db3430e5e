//! The pipeline: the stages a packet goes through, for one source of
//! packets. It holds no packet beyond the call that brought it, so memory
//! depends on the configured bounds, never on the input's size.
//!
//! The stages, in order, and where each lives:
//!
//! 1. **decode** (`decode::Decoder`): link layer to TCP/UDP, IP fragments
//!    reassembled; `Pipeline::packet`.
//! 2. **reassemble** (`reassembly::Reassembler`, `datagram::DatagramFlows`):
//!    per-direction byte streams with gap events, or datagrams per flow.
//! 3. **detect** (`tap_dissect::tcp::Connection`, `tap_dissect::udp::Datagrams`):
//!    a new flow's first bytes offered to each protocol of the registry, by
//!    content.
//! 4. **dissect** (`tap_dissect::<protocol>`, one folder each): messages out
//!    of the streams.
//! 5. **pair** (`tap_dissect::pair`, called by the dissectors): requests
//!    with their responses, as entries (`Emit::Entry`).
//! 6. **entry stages** (`Pipeline::deliver`): each finished entry gets its
//!    node, is redacted (`redact::Stage`: nothing unredacted leaves the
//!    pipeline; what its raw packets need waits in [`Pipeline::take_blanks`]
//!    for the packet ring) and is counted.
//! 7. **sink**: not here; the capture driver (`driver`) moves the entries
//!    through the bounded queue to a sink.

use crate::capture::Packet;
use crate::datagram::{DatagramConfig, DatagramFlows, DatagramStats};
use crate::decode::{DecodeStats, Decoder, DefragConfig, Skip, Transport};
use crate::dissect::{Connection, Datagrams, DissectConfig, Emit};
use crate::reassembly::{FlowIds, FlowInfo, Reassembler, ReassemblyConfig, ReassemblyStats};
use crate::redact::{PendingBlank, Redaction, Stage};
use proto::v1::Entry;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct PipelineConfig {
    /// Node name written into every entry.
    pub node: String,
    pub dissect: DissectConfig,
    pub reassembly: ReassemblyConfig,
    pub datagram: DatagramConfig,
    pub defrag: DefragConfig,
    /// Where flow ids come from; pipelines side by side (fanout) made from
    /// clones of one config share the counter, so their ids never collide.
    pub ids: FlowIds,
    /// The redaction rules, shared by every pipeline made from clones of
    /// one config (and the TLS source).
    pub redaction: Redaction,
}

/// Everything the pipeline counted; the summary `kubetap read` prints.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub tcp_packets: u64,
    pub udp_packets: u64,
    pub entries: u64,
    pub parse_errors: u64,
    pub unclaimed_connections: u64,
    /// Messages a dissector's bound pushed out (queries evicted from a full pending list).
    pub dissect_dropped: u64,
    pub decode: DecodeStats,
    pub reassembly: ReassemblyStats,
    pub udp: DatagramStats,
}

impl Stats {
    /// Adds another pipeline's counts to these.
    pub fn absorb(&mut self, o: &Stats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.tcp_packets += o.tcp_packets;
        self.udp_packets += o.udp_packets;
        self.entries += o.entries;
        self.parse_errors += o.parse_errors;
        self.unclaimed_connections += o.unclaimed_connections;
        self.dissect_dropped += o.dissect_dropped;
        let (d, od) = (&mut self.decode, &o.decode);
        d.malformed += od.malformed;
        d.unsupported_link += od.unsupported_link;
        d.not_tcp_udp += od.not_tcp_udp;
        d.fragments += od.fragments;
        d.fragments_reassembled += od.fragments_reassembled;
        d.fragments_dropped += od.fragments_dropped;
        d.length_from_capture += od.length_from_capture;
        d.decapsulated += od.decapsulated;
        let (r, or) = (&mut self.reassembly, &o.reassembly);
        r.segments += or.segments;
        r.flows += or.flows;
        r.flows_expired += or.flows_expired;
        r.flows_evicted += or.flows_evicted;
        r.retransmitted_segments += or.retransmitted_segments;
        r.overlap_bytes += or.overlap_bytes;
        r.out_of_order_segments += or.out_of_order_segments;
        r.gaps += or.gaps;
        r.gap_bytes += or.gap_bytes;
        r.buffer_limit_hits += or.buffer_limit_hits;
        r.buffered_bytes += or.buffered_bytes;
        let (u, ou) = (&mut self.udp, &o.udp);
        u.datagrams += ou.datagrams;
        u.flows += ou.flows;
        u.flows_expired += ou.flows_expired;
        u.flows_evicted += ou.flows_evicted;
    }

    /// Bytes the capture lost inside connections (holes reported as gaps).
    pub fn gap_bytes(&self) -> u64 {
        self.reassembly.gap_bytes
    }

    /// Everything dropped by a bound or unreadable: malformed packets, fragments
    /// given up, flows evicted, buffer limits hit, messages pushed out of dissectors.
    pub fn drops(&self) -> u64 {
        self.dissect_dropped
            + self.decode.malformed
            + self.decode.fragments_dropped
            + self.reassembly.flows_evicted
            + self.reassembly.buffer_limit_hits
    }
}

type NewConnection = Box<dyn FnMut(&FlowInfo) -> Connection + Send>;
type NewDatagrams = Box<dyn FnMut(&FlowInfo) -> Datagrams + Send>;

/// The dissectors' settings, swapped whole when the hub changes them: each
/// new connection or flow takes the settings in force when it starts.
type SharedDissect = Arc<std::sync::Mutex<Arc<DissectConfig>>>;

pub struct Pipeline {
    node: String,
    dissect: SharedDissect,
    decoder: Decoder,
    tcp: Reassembler<Connection, NewConnection>,
    udp: DatagramFlows<Datagrams, NewDatagrams>,
    emitted: Vec<Emit>,
    redact: Stage,
    blanks: Vec<PendingBlank>,
    parse_errors: u64,
    unclaimed: u64,
    dissect_dropped: u64,
    entries: u64,
    packets: u64,
    bytes: u64,
    tcp_packets: u64,
    udp_packets: u64,
    last_ts_ns: u64,
}

impl Pipeline {
    pub fn new(config: PipelineConfig) -> Self {
        let dissect: SharedDissect = Arc::new(std::sync::Mutex::new(Arc::new(config.dissect)));
        let (for_tcp, for_udp) = (dissect.clone(), dissect.clone());
        let current = |c: &SharedDissect| c.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let new_conn: NewConnection =
            Box::new(move |_flow: &FlowInfo| Connection::new(current(&for_tcp)));
        let new_datagrams: NewDatagrams =
            Box::new(move |_flow: &FlowInfo| Datagrams::new(current(&for_udp)));
        let mut tcp = Reassembler::new(config.reassembly, new_conn);
        let mut udp = DatagramFlows::new(config.datagram, new_datagrams);
        tcp.share_ids(config.ids.clone());
        udp.share_ids(config.ids.clone());
        Pipeline {
            node: config.node,
            dissect,
            decoder: Decoder::new(config.defrag),
            tcp,
            udp,
            emitted: Vec::new(),
            redact: config.redaction.stage(),
            blanks: Vec::new(),
            parse_errors: 0,
            unclaimed: 0,
            dissect_dropped: 0,
            entries: 0,
            packets: 0,
            bytes: 0,
            tcp_packets: 0,
            udp_packets: 0,
            last_ts_ns: 0,
        }
    }

    /// Body bytes kept per message from now on: connections and flows that
    /// start after this call keep at most `max_body`; open ones keep theirs.
    pub fn set_max_body(&mut self, max_body: usize) {
        let mut cell = self.dissect.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = (**cell).clone();
        next.max_body = max_body;
        *cell = Arc::new(next);
    }

    /// Feeds one packet; entries it completes are appended to `out`. Returns
    /// the id of the TCP connection or UDP flow the packet belongs to (the
    /// `flow_id` of its entries), for the raw-packet ring.
    pub fn packet(&mut self, pkt: &Packet<'_>, out: &mut Vec<Entry>) -> Option<u64> {
        self.packets += 1;
        self.bytes += u64::from(pkt.orig_len);
        self.last_ts_ns = self.last_ts_ns.max(pkt.ts_ns);
        let tcp = &mut self.tcp;
        let udp = &mut self.udp;
        let emitted = &mut self.emitted;
        let r = self.decoder.decode(pkt, |d| match &d.transport {
            Transport::Tcp(seg) => (
                true,
                tcp.segment(pkt.ts_ns, d.src, d.dst, seg, d.outer, emitted),
            ),
            Transport::Udp {
                src_port,
                dst_port,
                payload,
            } => (
                false,
                udp.datagram(
                    pkt.ts_ns, d.src, *src_port, d.dst, *dst_port, payload, d.outer, emitted,
                ),
            ),
        });
        let flow = match r {
            Ok((true, flow)) => {
                self.tcp_packets += 1;
                flow
            }
            Ok((false, flow)) => {
                self.udp_packets += 1;
                flow
            }
            Err(Skip::Malformed(reason)) => {
                tracing::debug!(%reason, "malformed packet");
                None
            }
            Err(_) => None,
        };
        self.collect(out);
        flow
    }

    /// End of input: closes every connection and emits what they still hold.
    pub fn finish(&mut self, out: &mut Vec<Entry>) {
        self.tcp.finish(&mut self.emitted);
        self.udp.finish(&mut self.emitted);
        self.collect(out);
    }

    /// What the dissectors emitted: entries through the entry stages into
    /// `out`, the rest counted.
    fn collect(&mut self, out: &mut Vec<Entry>) {
        // Taken out and put back, so `deliver` can borrow `self` and the
        // buffer keeps its capacity (no allocation per packet).
        let mut emitted = std::mem::take(&mut self.emitted);
        for e in emitted.drain(..) {
            match e {
                Emit::Entry(entry) => self.deliver(*entry, out),
                Emit::ParseError { protocol, reason } => {
                    self.parse_errors += 1;
                    tracing::debug!(protocol, %reason, "parse error");
                }
                Emit::Unclaimed => self.unclaimed += 1,
                Emit::Dropped { protocol, what } => {
                    self.dissect_dropped += 1;
                    tracing::debug!(protocol, what, "dropped by a bound");
                }
            }
        }
        self.emitted = emitted;
    }

    /// The entry stages: the last work on an entry before it leaves the
    /// pipeline.
    fn deliver(&mut self, mut entry: Entry, out: &mut Vec<Entry>) {
        entry.node.clone_from(&self.node);
        self.redact.apply(&mut entry, &mut self.blanks);
        self.entries += 1;
        out.push(entry);
    }

    /// What the raw packets of the entries redacted since the last call
    /// need: for the packet ring, once the packet just fed is kept there.
    /// Callers without a ring call it too (and drop the result), so the
    /// list never grows.
    pub fn take_blanks(&mut self) -> Vec<PendingBlank> {
        std::mem::take(&mut self.blanks)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            packets: self.packets,
            bytes: self.bytes,
            tcp_packets: self.tcp_packets,
            udp_packets: self.udp_packets,
            entries: self.entries,
            parse_errors: self.parse_errors,
            unclaimed_connections: self.unclaimed,
            dissect_dropped: self.dissect_dropped,
            decode: self.decoder.stats.clone(),
            reassembly: self.tcp.stats.clone(),
            udp: self.udp.stats.clone(),
        }
    }
}
