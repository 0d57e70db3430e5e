//! `ring`: the worker's bounded memory of raw packets, for PCAP export. Each
//! packet that belongs to a TCP connection or UDP flow is kept with that
//! flow's id (the `flow_id` of its entries) until the byte budget pushes it
//! out, oldest first, counted. The hub asks for the packets of some flows in
//! a time window and merges what every worker sends into one pcapng.

use crate::capture::Packet;
use proto::v1::{PcapChunk, PcapRequest, RawPacket};
use std::collections::{HashSet, VecDeque};

struct Stored {
    ts_ns: u64,
    link: u32,
    orig_len: u32,
    flow: u64,
    data: Box<[u8]>,
}

/// Bytes a stored packet is counted for: its data and the bookkeeping.
fn cost(data_len: usize) -> usize {
    data_len + size_of::<Stored>() + 16
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

pub struct PacketRing {
    budget: usize,
    bytes: usize,
    packets: VecDeque<Stored>,
    evicted_packets: u64,
    evicted_bytes: u64,
}

impl PacketRing {
    pub fn new(budget_bytes: usize) -> Self {
        PacketRing {
            budget: budget_bytes,
            bytes: 0,
            packets: VecDeque::new(),
            evicted_packets: 0,
            evicted_bytes: 0,
        }
    }

    pub fn push(&mut self, pkt: &Packet<'_>, flow: u64) {
        let c = cost(pkt.data.len());
        if c > self.budget {
            self.evicted_packets += 1;
            self.evicted_bytes += c as u64;
            return;
        }
        self.bytes += c;
        self.packets.push_back(Stored {
            ts_ns: pkt.ts_ns,
            link: pkt.link,
            orig_len: pkt.orig_len,
            flow,
            data: pkt.data.into(),
        });
        while self.bytes > self.budget {
            let Some(old) = self.packets.pop_front() else {
                break;
            };
            let c = cost(old.data.len());
            self.bytes -= c;
            self.evicted_packets += 1;
            self.evicted_bytes += c as u64;
        }
    }

    /// The kept packets of `flows` captured in `[from_ns, to_ns]` (0 = open),
    /// in capture order.
    pub fn select(&self, flows: &HashSet<u64>, from_ns: u64, to_ns: u64) -> Vec<RawPacket> {
        let to_ns = if to_ns == 0 { u64::MAX } else { to_ns };
        self.packets
            .iter()
            .filter(|p| flows.contains(&p.flow) && (from_ns..=to_ns).contains(&p.ts_ns))
            .map(|p| RawPacket {
                ts_ns: p.ts_ns,
                linktype: p.link,
                orig_len: p.orig_len,
                data: p.data.to_vec(),
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
                proto::json::rfc3339_nanos(oldest)
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
            packets: self.packets.len() as u64,
            bytes: self.bytes as u64,
            evicted_packets: self.evicted_packets,
            evicted_bytes: self.evicted_bytes,
            oldest_ts_ns: self.packets.front().map(|p| p.ts_ns),
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

    #[test]
    fn a_packet_larger_than_the_budget_is_counted_not_kept() {
        let mut r = PacketRing::new(50);
        r.push(&pkt(1, &[0; 100]), 1);
        assert_eq!(r.stats().packets, 0);
        assert_eq!(r.stats().evicted_packets, 1);
    }
}
