//! `ring`: the worker's bounded memory of raw packets, for PCAP export. Each
//! packet that belongs to a TCP connection or UDP flow is kept with that
//! flow's id (the `flow_id` of its entries) until the byte budget pushes it
//! out, oldest first, counted. The hub asks for the packets of some flows in
//! a time window and merges what every worker sends into one pcapng.

use crate::capture::Packet;
use proto::v1::{PcapChunk, PcapRequest, RawPacket};
use std::collections::{HashSet, VecDeque};

/// Where a kept packet's bytes are in the ring's buffer, and what the PCAP
/// export needs besides them.
struct Meta {
    ts_ns: u64,
    flow: u64,
    start: usize,
    len: u32,
    orig_len: u32,
    link: u32,
    /// Made by kubetap (TLS plaintext as TCP), not captured.
    synthetic: bool,
}

/// The pcapng comment of a made packet.
pub const SYNTHETIC_COMMENT: &str = "kubetap: TLS plaintext read by eBPF uprobes in the process, written as TCP on the connection's real addresses and times (not captured on the wire)";

/// Bytes a stored packet is counted for: its data and its index entry.
fn cost(data_len: usize) -> usize {
    data_len + size_of::<Meta>()
}

/// Half the machine's memory: the most a ring's buffer may take.
fn memory_limit() -> usize {
    match crate::capture::live::total_memory() {
        0 => usize::MAX,
        n => usize::try_from(n / 2).unwrap_or(usize::MAX),
    }
}

/// Why a ring budget cannot be had on this machine, if it cannot.
pub fn budget_error(budget: u64) -> Option<String> {
    let limit = memory_limit() as u64;
    (budget > limit).then(|| {
        format!(
            "a packet ring of {} is more than half of this machine's memory ({} in all)",
            bytesize::ByteSize(budget),
            bytesize::ByteSize(limit.saturating_mul(2))
        )
    })
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RingStats {
    pub packets: u64,
    pub bytes: u64,
    pub evicted_packets: u64,
    pub evicted_bytes: u64,
    /// Capture time of the oldest packet still kept: an export asking for
    /// older ones is told the ring no longer has them.
    pub oldest_ts_ns: Option<u64>,
}

/// Packets are copied one after another into one buffer of the budget's
/// size, wrapping at its end (no allocation per packet); an index in capture
/// order says where each is. A new packet pushes out the oldest ones until
/// the budget holds it and its bytes are free. The buffer is allocated
/// zeroed at the first packet, so the kernel maps its pages as packets fill
/// them (growing it instead, by copying, stalled the capture long enough to
/// lose packets); a budget over half the machine's memory is cut to that.
pub struct PacketRing {
    budget: usize,
    bytes: usize,
    buf: Vec<u8>,
    /// The buffer's size: the budget, at most half the machine's memory.
    max_buf: usize,
    /// Where the next packet goes.
    write: usize,
    index: VecDeque<Meta>,
    evicted_packets: u64,
    evicted_bytes: u64,
}

impl PacketRing {
    pub fn new(budget_bytes: usize) -> Self {
        PacketRing {
            budget: budget_bytes,
            bytes: 0,
            buf: Vec::new(),
            max_buf: budget_bytes.min(memory_limit()),
            write: 0,
            index: VecDeque::new(),
            evicted_packets: 0,
            evicted_bytes: 0,
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(old) = self.index.pop_front() {
            let c = cost(old.len as usize);
            self.bytes -= c;
            self.evicted_packets += 1;
            self.evicted_bytes += c as u64;
        }
        if self.index.is_empty() {
            self.write = 0;
        }
    }

    pub fn push(&mut self, pkt: &Packet<'_>, flow: u64) {
        self.keep(pkt, flow, false);
    }

    /// A packet kubetap made (exported with [`SYNTHETIC_COMMENT`]).
    pub fn push_synthetic(&mut self, pkt: &Packet<'_>, flow: u64) {
        self.keep(pkt, flow, true);
    }

    fn keep(&mut self, pkt: &Packet<'_>, flow: u64, synthetic: bool) {
        let len = pkt.data.len();
        let c = cost(len);
        if c > self.budget {
            self.evicted_packets += 1;
            self.evicted_bytes += c as u64;
            return;
        }
        // A packet of no bytes still takes one, so that it has a place.
        let span = len.max(1);
        if self.buf.is_empty() {
            self.buf = vec![0; self.max_buf];
        }
        if span > self.buf.len() {
            self.evicted_packets += 1;
            self.evicted_bytes += c as u64;
            return;
        }
        while self.bytes + c > self.budget {
            self.evict_oldest();
        }
        if self.write + span > self.buf.len() {
            // No room before the end: the oldest packets are the ones from
            // here to the end; they go, and writing starts over at 0.
            let tail = self.write;
            while self.index.front().is_some_and(|m| m.start >= tail) {
                self.evict_oldest();
            }
            self.write = 0;
        }
        // The oldest packets are next in the buffer: those in the way go.
        let end = self.write + span;
        while self
            .index
            .front()
            .is_some_and(|m| m.start < end && m.start + (m.len as usize).max(1) > self.write)
        {
            self.evict_oldest();
        }
        let start = self.write;
        self.buf[start..start + len].copy_from_slice(pkt.data);
        self.index.push_back(Meta {
            ts_ns: pkt.ts_ns,
            flow,
            start,
            len: len as u32,
            orig_len: pkt.orig_len,
            link: pkt.link,
            synthetic,
        });
        self.bytes += c;
        self.write = end;
    }

    /// The kept packets of `flows` captured in `[from_ns, to_ns]` (0 = open),
    /// in capture order.
    pub fn select(&self, flows: &HashSet<u64>, from_ns: u64, to_ns: u64) -> Vec<RawPacket> {
        let to_ns = if to_ns == 0 { u64::MAX } else { to_ns };
        self.index
            .iter()
            .filter(|p| flows.contains(&p.flow) && (from_ns..=to_ns).contains(&p.ts_ns))
            .map(|p| RawPacket {
                ts_ns: p.ts_ns,
                linktype: p.link,
                orig_len: p.orig_len,
                data: self.buf[p.start..p.start + p.len as usize].to_vec(),
                comment: if p.synthetic {
                    SYNTHETIC_COMMENT.to_string()
                } else {
                    String::new()
                },
            })
            .collect()
    }

    /// The whole answer to a PCAP request, as one last chunk; `error` says
    /// when the ring no longer holds the start of the requested window.
    pub fn answer(&self, req: &PcapRequest) -> PcapChunk {
        let flows: HashSet<u64> = req.flow_ids.iter().copied().collect();
        let stats = self.stats();
        let error = match stats.oldest_ts_ns {
            Some(oldest) if stats.evicted_packets > 0 && req.from_ns < oldest => format!(
                "the packet ring ({} packets evicted so far) no longer holds packets before {}",
                stats.evicted_packets,
                tap_dissect::json::rfc3339_nanos(oldest)
            ),
            _ => String::new(),
        };
        PcapChunk {
            request_id: req.request_id,
            packets: self.select(&flows, req.from_ns, req.to_ns),
            last: true,
            error,
        }
    }

    pub fn stats(&self) -> RingStats {
        RingStats {
            packets: self.index.len() as u64,
            bytes: self.bytes as u64,
            evicted_packets: self.evicted_packets,
            evicted_bytes: self.evicted_bytes,
            oldest_ts_ns: self.index.front().map(|p| p.ts_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(ts_ns: u64, data: &[u8]) -> Packet<'_> {
        Packet {
            ts_ns,
            link: 1,
            data,
            orig_len: data.len() as u32,
        }
    }

    #[test]
    fn keeps_the_newest_within_the_budget_and_counts_the_rest() {
        let one = cost(100);
        let mut r = PacketRing::new(3 * one);
        for i in 0..5u64 {
            r.push(&pkt(i, &[i as u8; 100]), i % 2);
        }
        let s = r.stats();
        assert_eq!(s.packets, 3);
        assert_eq!(s.evicted_packets, 2);
        assert_eq!(s.oldest_ts_ns, Some(2));
        let even: Vec<u64> = r
            .select(&HashSet::from([0]), 0, 0)
            .iter()
            .map(|p| p.ts_ns)
            .collect();
        assert_eq!(even, [2, 4]);
        let window: Vec<u64> = r
            .select(&HashSet::from([0, 1]), 3, 3)
            .iter()
            .map(|p| p.ts_ns)
            .collect();
        assert_eq!(window, [3]);
    }

    proptest::proptest! {
        /// Whatever the sizes, the ring keeps the newest packets, intact and
        /// in order, within its budget, and counts every one it let go.
        #[test]
        fn keeps_a_suffix_intact_within_the_budget(
            budget in 100usize..6000,
            sizes in proptest::collection::vec(0usize..400, 1..300),
        ) {
            let mut r = PacketRing::new(budget);
            // Packets the budget can hold at all (others are refused at once).
            let mut fitting: Vec<(u64, Vec<u8>)> = Vec::new();
            for (i, &n) in sizes.iter().enumerate() {
                let data: Vec<u8> = (0..n).map(|j| (i * 7 + j) as u8).collect();
                r.push(&pkt(i as u64, &data), 1);
                if cost(n) <= budget {
                    fitting.push((i as u64, data));
                }
                let kept = r.select(&HashSet::from([1]), 0, 0);
                let first = fitting.len() - kept.len();
                for (k, p) in kept.iter().enumerate() {
                    proptest::prop_assert_eq!(p.ts_ns, fitting[first + k].0);
                    proptest::prop_assert_eq!(&p.data, &fitting[first + k].1);
                }
                if cost(n) <= budget {
                    proptest::prop_assert_eq!(kept.last().map(|p| p.ts_ns), Some(i as u64));
                }
                let s = r.stats();
                let held: usize = kept.iter().map(|p| cost(p.data.len())).sum();
                proptest::prop_assert_eq!(s.bytes as usize, held);
                proptest::prop_assert!(held <= budget);
                proptest::prop_assert_eq!(s.packets + s.evicted_packets, i as u64 + 1);
            }
        }
    }

    #[test]
    fn an_empty_packet_never_lets_a_kept_one_be_overwritten() {
        // Sizes found by review: an empty packet at the front used to stop
        // the eviction of the packet behind it, which was then overwritten.
        let mut r = PacketRing::new(1000);
        let sizes = [300, 0, 100, 350, 300, 50];
        let mut pushed = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let data = vec![i as u8 + 1; n];
            r.push(&pkt(i as u64, &data), 1);
            pushed.push(data);
        }
        let kept = r.select(&HashSet::from([1]), 0, 0);
        assert!(!kept.is_empty());
        for p in &kept {
            assert_eq!(p.data, pushed[p.ts_ns as usize], "packet {}", p.ts_ns);
        }
    }

    #[test]
    fn a_budget_beyond_the_machine_is_cut_and_refused_clearly() {
        let r = PacketRing::new(usize::MAX / 2);
        assert!(r.max_buf <= memory_limit());
        assert!(r.buf.is_empty(), "nothing is allocated before a packet");
        let e = budget_error(1 << 50).expect("a petabyte ring is refused");
        assert!(e.contains("more than half of this machine's memory"), "{e}");
        assert_eq!(budget_error(64 << 20), None);
    }

    #[test]
    fn a_packet_larger_than_the_budget_is_counted_not_kept() {
        let mut r = PacketRing::new(50);
        r.push(&pkt(1, &[0; 100]), 1);
        assert_eq!(r.stats().packets, 0);
        assert_eq!(r.stats().evicted_packets, 1);
    }
}
