//! `ring`: the worker's bounded memory of raw packets, for PCAP export. Each
//! packet that belongs to a TCP connection or UDP flow is kept with that
//! flow's id (the `flow_id` of its entries) until the byte budget pushes it
//! out, oldest first, counted. The hub asks for the packets of some flows in
//! a time window and merges what every worker sends into one pcapng.
//!
//! Packets made from TLS plaintext are kept under their TLS flow's id, apart
//! from the captured (encrypted) packets of the same connection, which have
//! a packet flow's id. An export asking for the encrypted packets too
//! (`PcapRequest.encrypted`) finds them by address: the made packets'
//! connection, the captured flows with the same two ends.

use crate::capture::Packet;
use crate::decode::{Decoder, DefragConfig, Transport};
use crate::reassembly::FlowKey;
use crate::redact::PendingBlank;
use proto::v1::{PcapChunk, PcapRequest, RawPacket};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

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

/// The pcapng comment of a captured packet exported beside its
/// connection's made packets.
pub const ENCRYPTED_COMMENT: &str = "kubetap: captured (encrypted) packet of a connection whose TLS plaintext is exported beside it as made packets";

/// The pcapng comment of a packet with redacted values overwritten.
pub const BLANKED_COMMENT: &str = "kubetap: redacted values overwritten with '*' (same length; export with --raw-pcap for the packets as captured)";
/// The pcapng comment of a packet whose payload was overwritten whole.
pub const BLANKED_WHOLE_COMMENT: &str = "kubetap: payload overwritten with '*': it carried redacted data that is not on the wire as such (compressed, chunked, masked) or credentials the entry never keeps";

/// A redacted entry's packets are looked for this far before its start:
/// captures on several interfaces interleave, not quite in time order.
const BLANK_SLACK_NS: u64 = 1_000_000_000;
/// Other connections' packets may be older still (TLS plaintext made into
/// packets carries the time of its read): the search only gives up on
/// them this far before the entry's start.
const BLANK_GIVE_UP_NS: u64 = 30_000_000_000;

/// What to overwrite in one kept packet: byte ranges of its data, and
/// whether they are its whole payload.
#[derive(Debug, Default)]
struct Blanked {
    /// (offset, length, Huffman-coded: filled so it still decodes).
    ranges: Vec<(u32, u32, bool)>,
    whole: bool,
}

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
    /// The number of the packet at the index's front, counting every packet
    /// ever kept: the key of `blanked`.
    first_seq: u64,
    /// Redacted bytes in kept packets, by packet number; applied to every
    /// export but a raw one.
    blanked: HashMap<u64, Blanked>,
    /// Packets given ranges to overwrite, ever.
    blanked_packets: u64,
    /// Finds a kept packet's TCP payload again.
    decoder: Decoder,
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
            first_seq: 0,
            blanked: HashMap::new(),
            blanked_packets: 0,
            decoder: Decoder::new(DefragConfig::default()),
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(old) = self.index.pop_front() {
            if !self.blanked.is_empty() {
                self.blanked.remove(&self.first_seq);
            }
            self.first_seq += 1;
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
    /// in capture order; redacted values overwritten unless `raw`.
    pub fn select(
        &self,
        flows: &HashSet<u64>,
        from_ns: u64,
        to_ns: u64,
        raw: bool,
    ) -> Vec<RawPacket> {
        self.select_with(flows, &HashSet::new(), from_ns, to_ns, raw)
    }

    /// [`PacketRing::select`] of `flows` and `encrypted` (captured flows
    /// exported beside their plaintext, each packet saying so).
    fn select_with(
        &self,
        flows: &HashSet<u64>,
        encrypted: &HashSet<u64>,
        from_ns: u64,
        to_ns: u64,
        raw: bool,
    ) -> Vec<RawPacket> {
        let to_ns = if to_ns == 0 { u64::MAX } else { to_ns };
        self.index
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                (flows.contains(&p.flow) || encrypted.contains(&p.flow))
                    && (from_ns..=to_ns).contains(&p.ts_ns)
            })
            .map(|(pos, p)| {
                let mut data = self.buf[p.start..p.start + p.len as usize].to_vec();
                let mut comments = Vec::new();
                let beside = !p.synthetic && encrypted.contains(&p.flow);
                if p.synthetic {
                    comments.push(SYNTHETIC_COMMENT);
                } else if beside {
                    comments.push(ENCRYPTED_COMMENT);
                }
                if !raw && let Some(b) = self.blanked.get(&(self.first_seq + pos as u64)) {
                    for &(at, len, huffman) in &b.ranges {
                        let (at, len) = (at as usize, len as usize);
                        if let Some(bytes) = data.get_mut(at..at + len) {
                            if huffman {
                                bytes.copy_from_slice(&tap_dissect::http2::huffman::filler(len));
                            } else {
                                bytes.fill(b'*');
                            }
                        }
                    }
                    comments.push(if b.whole {
                        BLANKED_WHOLE_COMMENT
                    } else {
                        BLANKED_COMMENT
                    });
                }
                RawPacket {
                    ts_ns: p.ts_ns,
                    linktype: p.link,
                    orig_len: p.orig_len,
                    data,
                    comment: comments.join("; "),
                    encrypted: beside,
                }
            })
            .collect()
    }

    /// The captured flows of the connections whose plaintext `flows` hold as
    /// made packets (those not asked for already), among the packets in
    /// `[from_ns, to_ns]` (0 = open): the flows between the same two
    /// addresses, either way round. Each flow's addresses are read from its
    /// first packet in the window: one decode per flow, not per packet.
    fn encrypted_flows(&self, flows: &HashSet<u64>, from_ns: u64, to_ns: u64) -> HashSet<u64> {
        let to_ns = if to_ns == 0 { u64::MAX } else { to_ns };
        let window = |m: &&Meta| (from_ns..=to_ns).contains(&m.ts_ns);
        let mut decoder = Decoder::new(DefragConfig::default());
        // Per flow: its connection, or None when it is not TCP; a packet
        // that could not be decoded (a fragment) leaves it to the next.
        let mut ends: HashMap<u64, Option<FlowKey>> = HashMap::new();
        let mut decrypted = HashSet::new();
        for m in self.index.iter().filter(window) {
            if m.synthetic
                && flows.contains(&m.flow)
                && !ends.contains_key(&m.flow)
                && let Some(key) = self.tcp_ends(&mut decoder, m)
            {
                ends.insert(m.flow, key);
                decrypted.extend(key);
            }
        }
        let mut found = HashSet::new();
        if decrypted.is_empty() {
            return found;
        }
        for m in self.index.iter().filter(window) {
            if m.synthetic || flows.contains(&m.flow) {
                continue;
            }
            let key = match ends.get(&m.flow) {
                Some(key) => *key,
                None => match self.tcp_ends(&mut decoder, m) {
                    Some(key) => *ends.entry(m.flow).or_insert(key),
                    None => continue,
                },
            };
            if key.is_some_and(|k| decrypted.contains(&k)) {
                found.insert(m.flow);
            }
        }
        found
    }

    /// A kept packet's TCP connection (addresses in their canonical form:
    /// a socket may see IPv4 as IPv4-mapped IPv6); `Some(None)` when it is
    /// not TCP, `None` when it cannot be decoded on its own.
    fn tcp_ends(&self, decoder: &mut Decoder, m: &Meta) -> Option<Option<FlowKey>> {
        let pkt = Packet {
            ts_ns: m.ts_ns,
            link: m.link,
            data: &self.buf[m.start..m.start + m.len as usize],
            orig_len: m.orig_len,
        };
        decoder
            .decode(&pkt, |d| match &d.transport {
                Transport::Tcp(seg) => Some(FlowKey::new(
                    SocketAddr::new(d.src.to_canonical(), seg.src_port),
                    SocketAddr::new(d.dst.to_canonical(), seg.dst_port),
                )),
                Transport::Udp { .. } => None,
            })
            .ok()
    }

    /// Marks the bytes of a redacted entry's values in its flow's kept
    /// packets (from the entry's start on), to be overwritten in exports:
    /// each needle wherever it appears in either side's payload, read as one
    /// stream per side so a value split between packets is found too; or a
    /// side's whole payload. Call it once the packet that completed the
    /// entry is kept.
    pub fn blank(&mut self, b: &PendingBlank) {
        let from = b.from_ns.saturating_sub(BLANK_SLACK_NS);
        let give_up = b.from_ns.saturating_sub(BLANK_GIVE_UP_NS);
        // (index position, payload offset, payload length): the client's
        // side, then the server's.
        let mut sides: [Vec<(usize, usize, usize)>; 2] = Default::default();
        let PacketRing {
            index,
            buf,
            decoder,
            ..
        } = self;
        for pos in (0..index.len()).rev() {
            let m = &index[pos];
            if m.ts_ns < give_up {
                break;
            }
            if m.flow != b.flow {
                continue;
            }
            // The connection's own packets are in capture order.
            if m.ts_ns < from {
                break;
            }
            let pkt = Packet {
                ts_ns: m.ts_ns,
                link: m.link,
                data: &buf[m.start..m.start + m.len as usize],
                orig_len: m.orig_len,
            };
            let Some((src, at, len)) = tcp_payload(decoder, &pkt) else {
                continue;
            };
            if len > 0 {
                let side = usize::from(b.client.is_some_and(|c| c != src));
                sides[side].push((pos, at, len));
            }
        }
        let unknown = b.client.is_none();
        for (side, packets) in sides.iter_mut().enumerate() {
            packets.reverse();
            let whole = match side {
                0 => b.blanks.whole_request || (unknown && b.blanks.whole_response),
                _ => b.blanks.whole_response,
            };
            if whole {
                for &(pos, at, len) in packets.iter() {
                    self.mark(pos, at, len, true, false);
                }
                continue;
            }
            if b.blanks.needles.is_empty() || packets.is_empty() {
                continue;
            }
            let mut stream = Vec::new();
            let mut starts = Vec::with_capacity(packets.len());
            for &(pos, at, len) in packets.iter() {
                starts.push(stream.len());
                let m = &self.index[pos];
                stream.extend_from_slice(&self.buf[m.start + at..m.start + at + len]);
            }
            let mut found: Vec<(usize, usize, bool)> = Vec::new();
            for n in &b.blanks.needles {
                for hit in memchr::memmem::find_iter(&stream, &n.context) {
                    found.push((hit + n.blank.start, hit + n.blank.end, n.huffman));
                }
            }
            for (mut s, e, huffman) in found {
                let mut first = true;
                // A range may cross from one packet into the next.
                while s < e {
                    let k = starts.partition_point(|&x| x <= s) - 1;
                    let (pos, at, len) = packets[k];
                    let in_pkt = s - starts[k];
                    let n = (len - in_pkt).min(e - s);
                    // A Huffman-coded value split between packets gets
                    // `*`s: only a whole one can be refilled so it decodes.
                    self.mark(pos, at + in_pkt, n, false, huffman && n == e - s && first);
                    first = false;
                    s += n;
                }
            }
        }
    }

    fn mark(&mut self, pos: usize, at: usize, len: usize, whole: bool, huffman: bool) {
        let entry = self.blanked.entry(self.first_seq + pos as u64).or_default();
        if entry.ranges.is_empty() {
            self.blanked_packets += 1;
        }
        entry.ranges.push((at as u32, len as u32, huffman));
        entry.whole |= whole;
    }

    /// Packets given bytes to overwrite, ever.
    pub fn blanked_packets(&self) -> u64 {
        self.blanked_packets
    }

    /// The whole answer to a PCAP request, as one last chunk; `error` says
    /// when the ring no longer holds the start of the requested window.
    /// With `encrypted`, the captured packets of the connections whose
    /// plaintext is asked for come too.
    pub fn answer(&self, req: &PcapRequest) -> PcapChunk {
        let flows: HashSet<u64> = req.flow_ids.iter().copied().collect();
        let encrypted = if req.encrypted {
            self.encrypted_flows(&flows, req.from_ns, req.to_ns)
        } else {
            HashSet::new()
        };
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
            packets: self.select_with(&flows, &encrypted, req.from_ns, req.to_ns, req.raw),
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

/// A packet's TCP sender and where its payload is in its data.
fn tcp_payload(decoder: &mut Decoder, pkt: &Packet<'_>) -> Option<((IpAddr, u16), usize, usize)> {
    let base = pkt.data.as_ptr() as usize;
    decoder
        .decode(pkt, |d| match &d.transport {
            Transport::Tcp(seg) => {
                let p = seg.payload.as_ptr() as usize;
                // Only a payload inside this packet's bytes (not one put
                // together from IP fragments) can be overwritten in place.
                (p >= base && p + seg.payload.len() <= base + pkt.data.len())
                    .then(|| ((d.src, seg.src_port), p - base, seg.payload.len()))
            }
            Transport::Udp { .. } => None,
        })
        .ok()
        .flatten()
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
            .select(&HashSet::from([0]), 0, 0, false)
            .iter()
            .map(|p| p.ts_ns)
            .collect();
        assert_eq!(even, [2, 4]);
        let window: Vec<u64> = r
            .select(&HashSet::from([0, 1]), 3, 3, false)
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
                let kept = r.select(&HashSet::from([1]), 0, 0, false);
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
        let kept = r.select(&HashSet::from([1]), 0, 0, false);
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

    /// An Ethernet/IPv4/TCP packet from `src` port to `dst` port.
    fn tcp(src: u16, dst: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(src, dst, seq, 1000);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn needle(s: &[u8], blank: std::ops::Range<usize>) -> tap_dissect::redact::Needle {
        tap_dissect::redact::Needle {
            context: s.to_vec(),
            blank,
            huffman: false,
        }
    }

    #[test]
    fn redacted_values_are_overwritten_in_exports_even_across_packets() {
        const BASE: u64 = 100_000_000_000;
        let mut r = PacketRing::new(1 << 20);
        let client = (IpAddr::from([10, 0, 0, 1]), 40000);
        // The request's secret is split between two packets; the response
        // repeats it; another flow carries the same bytes and is left alone.
        let packets = [
            tcp(40000, 80, 1, b"GET /?token=sec"),
            tcp(40000, 80, 16, b"ret-value HTTP/1.1\r\n\r\n"),
            tcp(80, 40000, 1, b"HTTP/1.1 200 OK\r\n\r\nsecret-value"),
        ];
        for (i, p) in packets.iter().enumerate() {
            r.push(&pkt(BASE + i as u64, p), 7);
        }
        let other = tcp(40001, 80, 1, b"secret-value");
        r.push(&pkt(BASE + 3, &other), 8);
        // Another connection's packet stamped well before the entry (TLS
        // plaintext carries its read's time) does not end the search.
        r.push(&pkt(BASE - 5_000_000_000, &tcp(40002, 80, 1, b"made")), 9);
        r.push(&pkt(BASE + 4, &tcp(80, 40000, 31, b"secret-value")), 7);
        r.blank(&PendingBlank {
            flow: 7,
            from_ns: BASE,
            client: Some(client),
            blanks: tap_dissect::redact::Blanks {
                needles: vec![needle(b"secret-value", 0..12)],
                ..Default::default()
            },
        });
        assert_eq!(r.blanked_packets(), 4);
        let out = r.select(&HashSet::from([7, 8]), 0, 0, false);
        let text: Vec<String> = out
            .iter()
            .map(|p| String::from_utf8_lossy(&p.data[54..]).into_owned())
            .collect();
        assert_eq!(
            text,
            [
                "GET /?token=***",
                "********* HTTP/1.1\r\n\r\n",
                "HTTP/1.1 200 OK\r\n\r\n************",
                "secret-value",
                "************",
            ]
        );
        assert_eq!(out[0].comment, BLANKED_COMMENT);
        assert_eq!(out[3].comment, "");
        // Headers are untouched: the packets stay valid.
        assert_eq!(out[0].data[..54], packets[0][..54]);
        // Raw exports have them as captured.
        let raw = r.select(&HashSet::from([7]), 0, 0, true);
        assert_eq!(raw[0].data, packets[0]);
        assert_eq!(raw[0].comment, "");

        // A side blanked whole: the server's.
        r.blank(&PendingBlank {
            flow: 8,
            from_ns: BASE + 3,
            client: Some((IpAddr::from([10, 0, 0, 2]), 80)),
            blanks: tap_dissect::redact::Blanks {
                whole_response: true,
                ..Default::default()
            },
        });
        let out = r.select(&HashSet::from([8]), 0, 0, false);
        assert_eq!(&out[0].data[54..], b"************");
        assert_eq!(out[0].comment, BLANKED_WHOLE_COMMENT);
    }

    #[test]
    fn a_huffman_coded_value_is_refilled_so_it_still_decodes() {
        let coded = tap_dissect::http2::huffman::encode(b"Bearer secret-token-123");
        let mut payload = b"\x00\x00\x20\x01\x04".to_vec();
        payload.extend_from_slice(&coded);
        let mut r = PacketRing::new(1 << 20);
        r.push(&pkt(1, &tcp(40000, 80, 1, &payload)), 3);
        r.blank(&PendingBlank {
            flow: 3,
            from_ns: 1,
            client: None,
            blanks: tap_dissect::redact::Blanks {
                needles: vec![tap_dissect::redact::Needle {
                    blank: 0..coded.len(),
                    context: coded.clone(),
                    huffman: true,
                }],
                ..Default::default()
            },
        });
        let out = r.select(&HashSet::from([3]), 0, 0, false);
        let filled = &out[0].data[54 + 5..];
        assert_ne!(filled, &coded[..]);
        let decoded = loona_hpack::huffman::HuffmanDecoder::new()
            .decode(filled)
            .expect("the refilled value still decodes");
        assert!(decoded.iter().all(|b| *b == b'0'), "{decoded:?}");
    }

    #[test]
    fn blanks_go_with_their_packets_when_the_ring_evicts_them() {
        let one = cost(tcp(1, 2, 0, b"secret-value").len());
        let mut r = PacketRing::new(2 * one);
        r.push(&pkt(1, &tcp(1, 2, 0, b"secret-value")), 1);
        r.blank(&PendingBlank {
            flow: 1,
            from_ns: 1,
            client: None,
            blanks: tap_dissect::redact::Blanks {
                needles: vec![needle(b"secret-value", 0..12)],
                ..Default::default()
            },
        });
        r.push(&pkt(2, &tcp(1, 2, 12, b"public-value")), 1);
        r.push(&pkt(3, &tcp(1, 2, 24, b"public-value")), 1);
        assert!(r.blanked.is_empty(), "the blanked packet was evicted");
        for p in r.select(&HashSet::from([1]), 0, 0, false) {
            assert!(p.data.ends_with(b"public-value") && p.comment.is_empty());
        }
    }

    /// An IP packet (no link header) between two addresses.
    fn ip_tcp(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let ip = match (from.ip(), to.ip()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                etherparse::PacketBuilder::ipv4(a.octets(), b.octets(), 64)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                etherparse::PacketBuilder::ipv6(a.octets(), b.octets(), 64)
            }
            _ => unreachable!("one family"),
        };
        let b = ip.tcp(from.port(), to.port(), 1, 1000);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn raw(ts_ns: u64, data: &[u8]) -> Packet<'_> {
        Packet {
            link: crate::capture::link::RAW,
            ..pkt(ts_ns, data)
        }
    }

    /// With `encrypted`, a decrypted connection's captured packets come
    /// beside its made ones (either direction, marked), and only those of
    /// its two addresses within the window; without, the made ones alone.
    #[test]
    fn an_encrypted_export_adds_the_captured_packets_of_decrypted_connections() {
        let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "10.0.0.2:8443".parse().unwrap();
        let other: SocketAddr = "10.0.0.1:40001".parse().unwrap();
        const TLS: u64 = 1 << 62 | 1;
        // The same connection's plaintext from a socket that sees IPv4 as
        // IPv4-mapped IPv6.
        const MAPPED: u64 = 1 << 62 | 2;
        let mapped = |a: SocketAddr| match a.ip() {
            IpAddr::V4(v4) => SocketAddr::new(v4.to_ipv6_mapped().into(), a.port()),
            IpAddr::V6(_) => a,
        };
        let mut r = PacketRing::new(1 << 20);
        r.push(&raw(10, &ip_tcp(client, server, b"\x16\x03\x01hello")), 5);
        r.push(&raw(11, &ip_tcp(other, server, b"\x16\x03\x01other")), 6);
        r.push_synthetic(
            &raw(12, &ip_tcp(client, server, b"GET / HTTP/1.1\r\n\r\n")),
            TLS,
        );
        r.push(&raw(13, &ip_tcp(server, client, b"\x17\x03\x03answer")), 5);
        r.push_synthetic(
            &raw(14, &ip_tcp(mapped(server), mapped(client), b"x")),
            MAPPED,
        );
        r.push(&raw(15, &ip_tcp(server, client, b"\x17\x03\x03late")), 5);
        let ask = |flows: &[u64], to_ns: u64, encrypted: bool| {
            let chunk = r.answer(&PcapRequest {
                flow_ids: flows.to_vec(),
                to_ns,
                encrypted,
                ..Default::default()
            });
            chunk
                .packets
                .iter()
                .inspect(|p| assert_eq!(p.encrypted, p.comment == ENCRYPTED_COMMENT))
                .map(|p| (p.ts_ns, p.comment.clone()))
                .collect::<Vec<_>>()
        };
        let made = |ts| (ts, SYNTHETIC_COMMENT.to_string());
        let captured = |ts| (ts, ENCRYPTED_COMMENT.to_string());
        assert_eq!(ask(&[TLS], 0, false), [made(12)]);
        assert_eq!(
            ask(&[TLS], 0, true),
            [captured(10), made(12), captured(13), captured(15)]
        );
        assert_eq!(
            ask(&[TLS], 14, true),
            [captured(10), made(12), captured(13)]
        );
        assert_eq!(
            ask(&[MAPPED], 0, true),
            [captured(10), captured(13), made(14), captured(15)]
        );
        // A captured flow asked for itself is exported as usual.
        assert_eq!(
            ask(&[5], 0, true),
            [
                (10, String::new()),
                (13, String::new()),
                (15, String::new())
            ]
        );
        assert_eq!(ask(&[6], 0, true), [(11, String::new())]);
    }

    #[test]
    fn a_packet_larger_than_the_budget_is_counted_not_kept() {
        let mut r = PacketRing::new(50);
        r.push(&pkt(1, &[0; 100]), 1);
        assert_eq!(r.stats().packets, 0);
        assert_eq!(r.stats().evicted_packets, 1);
    }
}
