//! TCP reassembly: turns segments into two ordered byte streams per connection
//! (client→server and server→client) for the dissectors.
//!
//! - Retransmissions and overlaps: the first bytes seen for a sequence range
//!   win, as in Wireshark.
//! - Out-of-order segments wait in a per-direction buffer until the hole fills.
//! - A hole that will not fill (the peer ACKed bytes we never saw, a buffer limit
//!   was hit, or the connection ended) becomes a gap event: the dissector is
//!   told how many bytes are missing, never handed silently corrupted data.
//! - Connections first seen mid-way start at the first segment seen.
//! - Sequence numbers wrap: offsets are 64-bit, derived from signed 32-bit distances.
//! - Memory is bounded per direction and in total, and flows by count and idle
//!   time; every limit that bites is counted in [`ReassemblyStats`].

use crate::decode::TcpSegment;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use tap_dissect::flow::{CloseReason, Direction, FlowEnd, FlowHandler, FlowInfo, Outer};

#[derive(Debug, Clone)]
pub struct ReassemblyConfig {
    /// Connections tracked at once; the least recently active is evicted beyond it.
    pub max_flows: usize,
    /// Out-of-order bytes buffered per direction of one connection.
    pub max_flow_buffer: usize,
    /// Out-of-order bytes buffered over all connections.
    pub max_total_buffer: usize,
    /// A connection with no packet for this long is closed.
    pub idle_timeout_ns: u64,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_flows: 65_536,
            max_flow_buffer: 1 << 20,
            max_total_buffer: 64 << 20,
            idle_timeout_ns: 120_000_000_000,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct ReassemblyStats {
    pub segments: u64,
    pub flows: u64,
    pub flows_expired: u64,
    pub flows_evicted: u64,
    pub retransmitted_segments: u64,
    /// Bytes already delivered or buffered that arrived again (dropped: first seen wins).
    pub overlap_bytes: u64,
    pub out_of_order_segments: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Times a buffer limit forced a hole to be given up early.
    pub buffer_limit_hits: u64,
    /// Out-of-order bytes buffered right now.
    pub buffered_bytes: u64,
}

/// A connection's key with the two endpoints in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey(SocketAddr, SocketAddr);

impl FlowKey {
    pub(crate) fn new(a: SocketAddr, b: SocketAddr) -> Self {
        if a <= b { FlowKey(a, b) } else { FlowKey(b, a) }
    }
}

/// The least recently active flow: the one to evict when a table is full.
pub(crate) fn oldest_flow<V>(
    flows: &HashMap<FlowKey, V>,
    last_ts_ns: impl Fn(&V) -> u64,
) -> Option<FlowKey> {
    flows
        .iter()
        .min_by_key(|(_, f)| last_ts_ns(f))
        .map(|(k, _)| *k)
}

/// Finds idle flows at most once per second of capture time, for the TCP and UDP tables alike.
#[derive(Debug, Default)]
pub(crate) struct IdleSweep {
    last_ns: u64,
}

impl IdleSweep {
    /// The flows with no packet for `timeout_ns`, or none when a sweep ran less than a second ago.
    pub(crate) fn due<V>(
        &mut self,
        now_ns: u64,
        timeout_ns: u64,
        flows: &HashMap<FlowKey, V>,
        last_ts_ns: impl Fn(&V) -> u64,
    ) -> Vec<FlowKey> {
        if now_ns < self.last_ns.saturating_add(1_000_000_000) {
            return Vec::new();
        }
        self.last_ns = now_ns;
        let cutoff = now_ns.saturating_sub(timeout_ns);
        flows
            .iter()
            .filter(|(_, f)| last_ts_ns(f) < cutoff)
            .map(|(k, _)| *k)
            .collect()
    }
}

/// One direction of a connection.
#[derive(Debug, Default)]
struct Half {
    /// Sequence number of stream offset 0; unknown until this side sends.
    base: Option<u32>,
    /// Offset of the next byte to deliver.
    next: u64,
    /// Offset just past the last byte, once a FIN was seen.
    fin_at: Option<u64>,
    /// Out-of-order segments by offset: capture time and bytes.
    ooo: BTreeMap<u64, (u64, Vec<u8>)>,
    ooo_bytes: usize,
}

impl Half {
    /// Stream offset of a sequence number, relative to the next expected byte.
    fn offset(&self, base: u32, seq: u32) -> i64 {
        let expected = base.wrapping_add(self.next as u32);
        self.next as i64 + i64::from(seq.wrapping_sub(expected) as i32)
    }

    fn finished(&self) -> bool {
        self.fin_at.is_some_and(|f| self.next >= f) && self.ooo.is_empty()
    }
}

struct Flow<H> {
    info: FlowInfo,
    halves: [Half; 2],
    packets: [u64; 2],
    last_ts_ns: u64,
    handler: H,
}

/// The part of the reassembler a flow's operations need, borrowed apart from the flow map.
struct Ctx<'a, O> {
    stats: &'a mut ReassemblyStats,
    config: &'a ReassemblyConfig,
    out: &'a mut Vec<O>,
}

pub struct Reassembler<H, F> {
    flows: HashMap<FlowKey, Flow<H>>,
    new_handler: F,
    config: ReassemblyConfig,
    ids: FlowIds,
    idle: IdleSweep,
    /// Connections closed lately and their ids, oldest first: the last ACK
    /// after both FINs (or a stray RST) still belongs to its connection in
    /// the raw-packet ring. Bounded by [`RECENTLY_CLOSED`].
    closed: HashMap<FlowKey, u64>,
    closed_order: VecDeque<FlowKey>,
    pub stats: ReassemblyStats,
}

/// Where flow ids come from: a counter that pipelines side by side (fanout)
/// share, so their ids never collide. A clone shares the counter.
#[derive(Debug, Clone, Default)]
pub struct FlowIds(Arc<AtomicU64>);

impl FlowIds {
    /// The next id: 1, 2, ...
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Closed connections remembered for their trailing packets.
const RECENTLY_CLOSED: usize = 1024;

impl<H: FlowHandler, F: FnMut(&FlowInfo) -> H> Reassembler<H, F> {
    /// `new_handler` makes the handler for each new connection.
    pub fn new(config: ReassemblyConfig, new_handler: F) -> Self {
        Reassembler {
            flows: HashMap::new(),
            new_handler,
            config,
            ids: FlowIds::default(),
            idle: IdleSweep::default(),
            closed: HashMap::new(),
            closed_order: VecDeque::new(),
            stats: ReassemblyStats::default(),
        }
    }

    /// Takes connection ids from `ids` from now on.
    pub fn share_ids(&mut self, ids: FlowIds) {
        self.ids = ids;
    }

    /// Connections tracked right now.
    pub fn active_flows(&self) -> usize {
        self.flows.len()
    }

    /// Feeds one TCP segment sent from `src` to `dst` at `ts_ns`, unwrapped
    /// from tunnel `outer` if any; returns the id of the connection it
    /// belongs to (None when it starts none).
    pub fn segment(
        &mut self,
        ts_ns: u64,
        src: IpAddr,
        dst: IpAddr,
        seg: &TcpSegment<'_>,
        outer: Option<Outer>,
        out: &mut Vec<H::Out>,
    ) -> Option<u64> {
        self.stats.segments += 1;
        self.sweep(ts_ns, out);
        let from = SocketAddr::new(src, seg.src_port);
        let to = SocketAddr::new(dst, seg.dst_port);
        let key = FlowKey::new(from, to);

        if seg.syn && !seg.ack_flag {
            // A new SYN on a tracked connection with another sequence number: the ports were reused.
            let reused = self.flows.get(&key).is_some_and(|f| {
                f.info.client != from
                    || f.halves[0]
                        .base
                        .is_some_and(|b| b != seg.seq.wrapping_add(1))
            });
            if reused {
                self.close(key, CloseReason::Reused, out);
            }
        }
        if !self.flows.contains_key(&key) {
            if seg.payload.is_empty() && !seg.syn {
                // A bare ACK, FIN or RST of a connection we do not know starts
                // nothing; it may be the tail of one that just closed.
                return self.closed.get(&key).copied();
            }
            self.create((from, to), ts_ns, seg, outer, out);
        }
        let flow = self.flows.get_mut(&key)?;
        let id = flow.info.id;
        flow.last_ts_ns = ts_ns;
        let dir = if from == flow.info.client {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        flow.packets[dir.index()] += 1;
        let mut ctx = Ctx {
            stats: &mut self.stats,
            config: &self.config,
            out,
        };
        let done = flow.segment(dir, ts_ns, seg, &mut ctx);
        if let Some(reason) = done {
            self.close(key, reason, out);
        }
        Some(id)
    }

    /// Closes every connection (end of capture), flushing what is buffered as gaps.
    pub fn finish(&mut self, out: &mut Vec<H::Out>) {
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        for key in keys {
            self.close(key, CloseReason::EndOfCapture, out);
        }
    }

    fn create(
        &mut self,
        (from, to): (SocketAddr, SocketAddr),
        ts_ns: u64,
        seg: &TcpSegment<'_>,
        outer: Option<Outer>,
        out: &mut Vec<H::Out>,
    ) {
        let key = FlowKey::new(from, to);
        if self.flows.len() >= self.config.max_flows
            && let Some(k) = oldest_flow(&self.flows, |f| f.last_ts_ns)
        {
            self.stats.flows_evicted += 1;
            self.close(k, CloseReason::Evicted, out);
        }
        let (client, server) = if seg.syn {
            if seg.ack_flag { (to, from) } else { (from, to) }
        } else if from.port() < to.port() {
            // Mid-stream: the lower port is most likely the service.
            (to, from)
        } else {
            (from, to)
        };
        let info = FlowInfo {
            id: self.ids.next(),
            client,
            server,
            first_ts_ns: ts_ns,
            midstream: !seg.syn,
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
                halves: [Half::default(), Half::default()],
                packets: [0; 2],
                last_ts_ns: ts_ns,
                handler,
            },
        );
    }

    fn close(&mut self, key: FlowKey, reason: CloseReason, out: &mut Vec<H::Out>) {
        let Some(mut flow) = self.flows.remove(&key) else {
            return;
        };
        if self.closed_order.len() == RECENTLY_CLOSED
            && let Some(old) = self.closed_order.pop_front()
        {
            self.closed.remove(&old);
        }
        if self.closed.insert(key, flow.info.id).is_none() {
            self.closed_order.push_back(key);
        }
        let mut ctx = Ctx {
            stats: &mut self.stats,
            config: &self.config,
            out,
        };
        for dir in [Direction::ToServer, Direction::ToClient] {
            flow.flush(dir, &mut ctx);
        }
        let end = FlowEnd {
            ts_ns: flow.last_ts_ns.max(flow.info.first_ts_ns),
            reason,
            packets: flow.packets,
            bytes: [flow.halves[0].next, flow.halves[1].next],
        };
        flow.handler.on_close(&flow.info, &end, ctx.out);
    }

    /// Closes connections idle for longer than the timeout, once per second of capture time.
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

impl<H: FlowHandler> Flow<H> {
    /// Handles one segment; returns a reason when the connection is now over.
    fn segment(
        &mut self,
        dir: Direction,
        ts_ns: u64,
        seg: &TcpSegment<'_>,
        ctx: &mut Ctx<'_, H::Out>,
    ) -> Option<CloseReason> {
        let half = &mut self.halves[dir.index()];
        let data_seq = if seg.syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        let base = match half.base {
            Some(b) => b,
            None => {
                // From a SYN, offset 0 is the byte after it; mid-stream, the first byte seen.
                half.base = Some(data_seq);
                data_seq
            }
        };
        let off = half.offset(base, data_seq);
        if seg.ack_flag {
            // First what the ACK says about the other direction: a reply must not
            // be dissected before the hole in the request it answers is declared.
            self.acked(dir.reverse(), seg.ack, ts_ns, ctx);
        }
        if !seg.payload.is_empty() {
            self.place(dir, off, ts_ns, seg.payload, ctx);
        }
        if seg.fin {
            let end = (off + seg.payload.len() as i64).max(0) as u64;
            let half = &mut self.halves[dir.index()];
            half.fin_at = Some(half.fin_at.map_or(end, |f| f.min(end)));
        }
        if seg.rst {
            return Some(CloseReason::Rst);
        }
        if self.halves.iter().all(Half::finished) {
            return Some(CloseReason::Fin);
        }
        None
    }

    /// The peer acknowledged `ack` in direction `dir`: bytes below it that we
    /// never saw are lost to the capture, so give up waiting for them.
    fn acked(&mut self, dir: Direction, ack: u32, ts_ns: u64, ctx: &mut Ctx<'_, H::Out>) {
        let half = &self.halves[dir.index()];
        let Some(base) = half.base else { return };
        let mut acked = half.offset(base, ack);
        if let Some(f) = half.fin_at {
            // The FIN takes one sequence number of its own.
            acked = acked.min(f as i64);
        }
        let ahead = acked - half.next as i64;
        // Beyond 1 GiB ahead the ACK is not about this stream (a bogus or reused sequence space).
        if ahead > 0 && ahead < (1 << 30) {
            self.skip_to(dir, acked as u64, ts_ns, ctx);
        }
    }

    /// Places bytes at stream offset `off`: delivered now if they are next,
    /// buffered if they are ahead, trimmed or dropped where already seen.
    fn place(
        &mut self,
        dir: Direction,
        off: i64,
        ts_ns: u64,
        data: &[u8],
        ctx: &mut Ctx<'_, H::Out>,
    ) {
        let half = &mut self.halves[dir.index()];
        let next = half.next as i64;
        let end = off + data.len() as i64;
        if end <= next {
            ctx.stats.retransmitted_segments += 1;
            ctx.stats.overlap_bytes += data.len() as u64;
            return;
        }
        let (off, data) = if off < next {
            let cut = (next - off) as usize;
            ctx.stats.overlap_bytes += cut as u64;
            (next as u64, &data[cut..])
        } else {
            (off as u64, data)
        };
        if off == half.next {
            // Deliver up to the first buffered segment only: the bytes it holds were seen first.
            let end = off + data.len() as u64;
            let first_buffered = half.ooo.range(off..end).next().map(|(&k, _)| k);
            let now = first_buffered.map_or(data.len(), |k| (k - off) as usize);
            self.deliver(dir, ts_ns, &data[..now], ctx);
            self.drain(dir, ctx);
            if now < data.len() {
                self.place(dir, (off + now as u64) as i64, ts_ns, &data[now..], ctx);
            }
            return;
        }
        ctx.stats.out_of_order_segments += 1;
        // Keep only the parts no buffered segment covers yet: first seen wins.
        let end = off + data.len() as u64;
        let mut pieces: Vec<(u64, u64)> = Vec::new();
        let mut cur = off;
        if let Some((&k, (_, d))) = half.ooo.range(..=off).next_back() {
            cur = cur.max((k + d.len() as u64).min(end));
        }
        for (&k, (_, d)) in half.ooo.range(off..end) {
            if k > cur {
                pieces.push((cur, k));
            }
            cur = cur.max((k + d.len() as u64).min(end));
        }
        if cur < end {
            pieces.push((cur, end));
        }
        let covered = data.len() as u64 - pieces.iter().map(|(a, b)| b - a).sum::<u64>();
        ctx.stats.overlap_bytes += covered;
        for (a, b) in pieces {
            let piece = &data[(a - off) as usize..(b - off) as usize];
            let next = self.halves[dir.index()].next;
            if a <= next {
                // Reached meanwhile by an earlier piece's skip: place it against the new position.
                self.place(dir, a as i64, ts_ns, piece, ctx);
                continue;
            }
            let half = &mut self.halves[dir.index()];
            let over_flow = half.ooo_bytes + piece.len() > ctx.config.max_flow_buffer;
            let over_total =
                ctx.stats.buffered_bytes as usize + piece.len() > ctx.config.max_total_buffer;
            if over_flow || over_total {
                // Give up on the hole before this piece rather than buffer past the limit.
                ctx.stats.buffer_limit_hits += 1;
                self.skip_to(dir, a, ts_ns, ctx);
                self.place(dir, a as i64, ts_ns, piece, ctx);
            } else {
                half.ooo_bytes += piece.len();
                ctx.stats.buffered_bytes += piece.len() as u64;
                half.ooo.insert(a, (ts_ns, piece.to_vec()));
            }
        }
    }

    fn deliver(&mut self, dir: Direction, ts_ns: u64, data: &[u8], ctx: &mut Ctx<'_, H::Out>) {
        self.halves[dir.index()].next += data.len() as u64;
        self.handler.on_data(&self.info, dir, ts_ns, data, ctx.out);
    }

    fn gap(&mut self, dir: Direction, ts_ns: u64, len: u64, ctx: &mut Ctx<'_, H::Out>) {
        self.halves[dir.index()].next += len;
        ctx.stats.gaps += 1;
        ctx.stats.gap_bytes += len;
        self.handler.on_gap(&self.info, dir, ts_ns, len, ctx.out);
    }

    /// Delivers buffered segments that have become contiguous.
    fn drain(&mut self, dir: Direction, ctx: &mut Ctx<'_, H::Out>) {
        loop {
            let half = &mut self.halves[dir.index()];
            let Some(entry) = half.ooo.first_entry() else {
                return;
            };
            let k = *entry.key();
            if k > half.next {
                return;
            }
            let (ts, data) = entry.remove();
            half.ooo_bytes -= data.len();
            ctx.stats.buffered_bytes -= data.len() as u64;
            let skip = (half.next - k) as usize;
            if skip < data.len() {
                self.deliver(dir, ts, &data[skip..], ctx);
            }
        }
    }

    /// Moves the stream to `target`, delivering buffered bytes below it and
    /// reporting the holes between them as gaps.
    fn skip_to(&mut self, dir: Direction, target: u64, ts_ns: u64, ctx: &mut Ctx<'_, H::Out>) {
        loop {
            self.drain(dir, ctx);
            let half = &self.halves[dir.index()];
            match half.ooo.keys().next() {
                Some(&k) if k < target => {
                    let len = k - half.next;
                    self.gap(dir, ts_ns, len, ctx);
                }
                _ => break,
            }
        }
        let next = self.halves[dir.index()].next;
        if next < target {
            self.gap(dir, ts_ns, target - next, ctx);
        }
        self.drain(dir, ctx);
    }

    /// At close: delivers everything buffered, with gaps for the holes, and a
    /// gap for bytes missing before a FIN.
    fn flush(&mut self, dir: Direction, ctx: &mut Ctx<'_, H::Out>) {
        let half = &self.halves[dir.index()];
        let buffered_end = half
            .ooo
            .iter()
            .next_back()
            .map(|(k, (_, d))| k + d.len() as u64);
        let target = buffered_end.into_iter().chain(half.fin_at).max();
        if let Some(t) = target {
            let ts = self.last_ts_ns;
            self.skip_to(dir, t, ts, ctx);
        }
    }
}
