//! Synthetic captures, written with etherparse and pcap-file.
//!
//! - `bulk`: a large HTTP/1.1 capture for the benchmarks (many interleaved
//!   connections, bodies of mixed sizes), deterministic per seed.
//! - `exchanges`: small HTTP/1.1 captures whose every exchange the test
//!   knows, with the service-map edges a hub must compute from them.
//!
//! Hand-built TCP conversations fed straight through a pipeline are
//! `conversation` (the `pipeline` feature).

pub mod bulk;
pub mod exchanges;

use etherparse::PacketBuilder;

/// One direction of a TCP segment: addresses, ports, and the sequence and
/// acknowledgment numbers it carries.
pub(crate) struct Segment {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
}

/// Appends one Ethernet/IPv4/TCP frame to `out`; `flags` holds any of `S`,
/// `A`, `F`, `P`.
pub(crate) fn tcp_frame(
    out: &mut Vec<u8>,
    seg: &Segment,
    flags: &str,
    payload: &[u8],
) -> Result<(), etherparse::err::packet::BuildWriteError> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(seg.src, seg.dst, 64)
        .tcp(seg.sport, seg.dport, seg.seq, 65_000);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('A') {
        b = b.ack(seg.ack);
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('P') {
        b = b.psh();
    }
    b.write(out, payload)
}
