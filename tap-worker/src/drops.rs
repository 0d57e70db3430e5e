//! Every way the worker loses or skips data, one named cause per limit, so a
//! user sees which bound bit instead of one merged number. The causes flow
//! unchanged from the pipeline's counters (`Stats`), the kernel's, the entry
//! queue's, the raw-packet ring's and the shipper's into
//! `WorkerCounters.drops_by_cause`, then the hub's `/api/workers`, the UI's
//! workers panel and `/metrics` (`kubetap_worker_drops_total{node, cause}`).

use crate::Stats;
use crate::queue::QueueDrops;
use crate::tls::source::TlsCounts;
use std::collections::HashMap;

/// A cause, as its name appears everywhere (API, metrics, UI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropCause {
    /// The capture ring was full: the kernel dropped the packet.
    KernelRingFull,
    /// A packet that did not decode (truncated, bad lengths).
    MalformedPacket,
    /// A packet of a link type kubetap does not read.
    UnsupportedLink,
    /// IP fragments given up (too many datagrams in reassembly, expired).
    FragmentsDropped,
    /// Connections pushed out by the connection table's bound.
    ConnectionsEvicted,
    /// Out-of-order data beyond a connection's or the total buffer bound.
    ReassemblyBufferFull,
    /// UDP flows pushed out by the flow table's bound.
    UdpFlowsEvicted,
    /// Messages a dissector's bound pushed out (requests waiting too long).
    DissectorBound,
    /// Entries offered while the entry queue held its most entries.
    QueueFull,
    /// Entries offered while the queued entries held the most memory.
    QueueMemory,
    /// Entries offered after the queue's sink had stopped.
    QueueClosed,
    /// Entries in flight to the hub when the stream broke (not resent).
    LostInFlight,
    /// Raw packets pushed out of the PCAP ring by newer ones.
    PcapRingEvicted,
    /// TLS calls whose plaintext did not fit the probes' ring buffer (the
    /// worker fell behind).
    TlsRingFull,
    /// TLS calls whose buffer the kernel could not read (paged out).
    TlsUnreadable,
    /// TLS calls not followed: too many in progress at once.
    TlsCallsFull,
    /// TLS calls whose socket was never seen (no syscall on their
    /// connection yet).
    TlsNoSocket,
    /// TLS calls whose socket was no TCP connection, or gone, when first
    /// seen (a process that exited at once).
    TlsUnresolved,
    /// TLS calls that moved more than one event holds: the rest is a gap.
    TlsChunkCut,
}

impl DropCause {
    pub const ALL: [DropCause; 19] = [
        DropCause::KernelRingFull,
        DropCause::MalformedPacket,
        DropCause::UnsupportedLink,
        DropCause::FragmentsDropped,
        DropCause::ConnectionsEvicted,
        DropCause::ReassemblyBufferFull,
        DropCause::UdpFlowsEvicted,
        DropCause::DissectorBound,
        DropCause::QueueFull,
        DropCause::QueueMemory,
        DropCause::QueueClosed,
        DropCause::LostInFlight,
        DropCause::PcapRingEvicted,
        DropCause::TlsRingFull,
        DropCause::TlsUnreadable,
        DropCause::TlsCallsFull,
        DropCause::TlsNoSocket,
        DropCause::TlsUnresolved,
        DropCause::TlsChunkCut,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropCause::KernelRingFull => "kernel_ring_full",
            DropCause::MalformedPacket => "malformed_packet",
            DropCause::UnsupportedLink => "unsupported_link",
            DropCause::FragmentsDropped => "fragments_dropped",
            DropCause::ConnectionsEvicted => "connections_evicted",
            DropCause::ReassemblyBufferFull => "reassembly_buffer_full",
            DropCause::UdpFlowsEvicted => "udp_flows_evicted",
            DropCause::DissectorBound => "dissector_bound",
            DropCause::QueueFull => "queue_full",
            DropCause::QueueMemory => "queue_memory",
            DropCause::QueueClosed => "queue_closed",
            DropCause::LostInFlight => "lost_in_flight",
            DropCause::PcapRingEvicted => "pcap_ring_evicted",
            DropCause::TlsRingFull => "tls_ring_full",
            DropCause::TlsUnreadable => "tls_unreadable",
            DropCause::TlsCallsFull => "tls_calls_full",
            DropCause::TlsNoSocket => "tls_no_socket",
            DropCause::TlsUnresolved => "tls_unresolved",
            DropCause::TlsChunkCut => "tls_chunk_cut",
        }
    }
}

/// What the capture side counts, by cause (every cause present, zeros too,
/// so a dashboard has a series for each from the start).
pub fn by_cause(
    stats: &Stats,
    kernel_drops: u64,
    queue: QueueDrops,
    ring_evicted: u64,
    tls: &TlsCounts,
) -> HashMap<String, u64> {
    DropCause::ALL
        .iter()
        .map(|&c| {
            let n = match c {
                DropCause::KernelRingFull => kernel_drops,
                DropCause::MalformedPacket => stats.decode.malformed,
                DropCause::UnsupportedLink => stats.decode.unsupported_link,
                DropCause::FragmentsDropped => stats.decode.fragments_dropped,
                DropCause::ConnectionsEvicted => stats.reassembly.flows_evicted,
                DropCause::ReassemblyBufferFull => stats.reassembly.buffer_limit_hits,
                DropCause::UdpFlowsEvicted => stats.udp.flows_evicted,
                DropCause::DissectorBound => stats.dissect_dropped,
                DropCause::QueueFull => queue.full,
                DropCause::QueueMemory => queue.memory,
                DropCause::QueueClosed => queue.closed,
                // The shipper's: set where it reports.
                DropCause::LostInFlight => 0,
                DropCause::PcapRingEvicted => ring_evicted,
                DropCause::TlsRingFull => tls.lost.ring_full,
                DropCause::TlsUnreadable => tls.lost.unreadable,
                DropCause::TlsCallsFull => tls.lost.calls_full,
                DropCause::TlsNoSocket => tls.streams.no_socket,
                DropCause::TlsUnresolved => tls.streams.unresolved,
                DropCause::TlsChunkCut => tls.streams.cut_calls,
            };
            (c.name().to_string(), n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_is_named_once_and_reported() {
        let mut names: Vec<&str> = DropCause::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropCause::ALL.len());
        let mut s = Stats::default();
        s.decode.malformed = 3;
        s.udp.flows_evicted = 5;
        let m = by_cause(
            &s,
            7,
            QueueDrops {
                full: 1,
                memory: 2,
                closed: 0,
            },
            9,
            &TlsCounts::default(),
        );
        assert_eq!(m.len(), DropCause::ALL.len());
        assert_eq!(m["malformed_packet"], 3);
        assert_eq!(m["udp_flows_evicted"], 5);
        assert_eq!(m["kernel_ring_full"], 7);
        assert_eq!((m["queue_full"], m["queue_memory"]), (1, 2));
        assert_eq!(m["pcap_ring_evicted"], 9);
    }
}
