//! A TCP conversation built by hand for the integration tests: client
//! 10.0.0.1:40000 talking to server 10.0.0.2:8080 (fd00::1 and fd00::2 over
//! IPv6), with the sequence and acknowledgment numbers a real stack would send.
//! Its segments are framed for any link type kubetap reads, fed through a
//! `Pipeline`, or written as a pcap file; entries are compared as `Exchange`s.
//!
//! Used by tap-worker's and tap-cli's tests (testkit's `pipeline` feature).

use etherparse::{EtherType, Ethernet2Header, IpHeaders, PacketBuilder, PacketBuilderStep, VlanId};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use proto::v1::{Entry, HttpRequest, HttpResponse, request, response};
use std::time::Duration;
use tap_worker::capture::{Packet, link};
use tap_worker::{Pipeline, PipelineConfig, Stats};

pub const CLIENT_V4: [u8; 4] = [10, 0, 0, 1];
pub const SERVER_V4: [u8; 4] = [10, 0, 0, 2];
pub const CLIENT_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const SERVER_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
pub const CLIENT_PORT: u16 = 40000;
pub const SERVER_PORT: u16 = 8080;
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
/// Capture time of the first packet: 2026-01-01T00:00:00Z.
const START_NS: u64 = 1_767_225_600_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Client,
    Server,
}

impl Peer {
    fn index(self) -> usize {
        match self {
            Peer::Client => 0,
            Peer::Server => 1,
        }
    }

    fn other(self) -> Peer {
        match self {
            Peer::Client => Peer::Server,
            Peer::Server => Peer::Client,
        }
    }
}

/// One TCP segment as sent on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub from: Peer,
    pub ts_ns: u64,
    pub seq: u32,
    /// The acknowledgment number when the ACK flag is set.
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub payload: Vec<u8>,
}

/// Segments of one connection, in the order a capture would see them.
pub struct Conversation {
    /// Next sequence number of the client and of the server.
    next: [u32; 2],
    clock_ns: u64,
    pub segments: Vec<Segment>,
}

impl Conversation {
    /// A connection opened by the three-way handshake with everyday ISNs.
    pub fn open() -> Self {
        Self::open_with_isn(1_000, 50_000)
    }

    /// SYN, SYN-ACK and ACK with the given initial sequence numbers.
    pub fn open_with_isn(client_isn: u32, server_isn: u32) -> Self {
        let mut c = Conversation {
            next: [client_isn, server_isn],
            clock_ns: START_NS,
            segments: Vec::new(),
        };
        let syn = c.control(Peer::Client, true, false, false);
        c.segments.push(syn);
        let syn_ack = c.control(Peer::Server, true, false, true);
        c.segments.push(syn_ack);
        c.ack(Peer::Client);
        c
    }

    /// A connection whose handshake happened before the capture started.
    pub fn midstream(client_seq: u32, server_seq: u32) -> Self {
        Conversation {
            next: [client_seq, server_seq],
            clock_ns: START_NS,
            segments: Vec::new(),
        }
    }

    /// Cuts `data` into segments sent at one time: the first pieces have the
    /// lengths in `sizes`, the last one takes the rest. Sequence numbers advance
    /// but nothing is added, so a test can drop, reorder or alter the segments.
    pub fn cut(&mut self, from: Peer, data: &[u8], sizes: &[usize]) -> Vec<Segment> {
        let ts_ns = self.tick();
        let ack = Some(self.next[from.other().index()]);
        let mut pieces = Vec::new();
        let mut rest = data;
        for &n in sizes {
            let (piece, tail) = rest.split_at(n);
            pieces.push(piece);
            rest = tail;
        }
        if !rest.is_empty() || pieces.is_empty() {
            pieces.push(rest);
        }
        pieces
            .into_iter()
            .map(|piece| {
                let seq = self.next[from.index()];
                self.next[from.index()] = seq.wrapping_add(piece.len() as u32);
                Segment {
                    from,
                    ts_ns,
                    seq,
                    ack,
                    syn: false,
                    fin: false,
                    payload: piece.to_vec(),
                }
            })
            .collect()
    }

    /// Sends `data` in one segment.
    pub fn send(&mut self, from: Peer, data: &[u8]) -> &mut Self {
        self.send_split(from, data, &[])
    }

    /// Sends `data` in segments cut as [`Conversation::cut`] does.
    pub fn send_split(&mut self, from: Peer, data: &[u8], sizes: &[usize]) -> &mut Self {
        let segs = self.cut(from, data, sizes);
        self.segments.extend(segs);
        self
    }

    /// Sends `data` in one segment that also carries `from`'s FIN.
    pub fn send_with_fin(&mut self, from: Peer, data: &[u8]) -> &mut Self {
        let mut segs = self.cut(from, data, &[]);
        let mut last = segs.pop().expect("cut makes at least one segment");
        last.fin = true;
        self.next[from.index()] = self.next[from.index()].wrapping_add(1);
        self.segments.extend(segs);
        self.segments.push(last);
        self
    }

    /// A request from the client, then the server's response.
    pub fn exchange(&mut self, request: &[u8], response: &[u8]) -> &mut Self {
        self.send(Peer::Client, request)
            .send(Peer::Server, response)
    }

    pub fn push(&mut self, seg: Segment) -> &mut Self {
        self.segments.push(seg);
        self
    }

    /// A bare ACK of everything the other side sent.
    pub fn ack(&mut self, from: Peer) -> &mut Self {
        let seg = self.control(from, false, false, true);
        self.segments.push(seg);
        self
    }

    /// A FIN from `from` (it takes one sequence number).
    pub fn fin(&mut self, from: Peer) -> &mut Self {
        let seg = self.control(from, false, true, true);
        self.segments.push(seg);
        self
    }

    /// The orderly close: `first` sends FIN, the other answers FIN, `first` ACKs.
    pub fn close(&mut self, first: Peer) -> &mut Self {
        self.fin(first).fin(first.other()).ack(first)
    }

    /// The segments framed for `link`.
    pub fn frames(&self, link: Link) -> Vec<Frame> {
        self.segments.iter().map(|s| frame(s, link)).collect()
    }

    fn control(&mut self, from: Peer, syn: bool, fin: bool, ack: bool) -> Segment {
        let ts_ns = self.tick();
        let seq = self.next[from.index()];
        if syn || fin {
            self.next[from.index()] = seq.wrapping_add(1);
        }
        Segment {
            from,
            ts_ns,
            seq,
            ack: ack.then_some(self.next[from.other().index()]),
            syn,
            fin,
            payload: Vec::new(),
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock_ns += 1_000_000;
        self.clock_ns
    }
}

/// How a segment is framed on the capture's link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Ethernet with one 802.1Q tag.
    Vlan(u16),
    /// Ethernet with two tags (QinQ): outer, inner.
    DoubleVlan(u16, u16),
    /// IPv6 over Ethernet.
    Ipv6,
    /// Linux cooked capture v1 (16-byte header).
    LinuxSll,
    /// Linux cooked capture v2 (20-byte header).
    LinuxSll2,
    /// Raw IPv4, no link header.
    RawIp,
    /// BSD loopback: a 4-byte address family in host (little-endian) order.
    Null,
    /// BSD loopback carrying IPv6 (AF_INET6 = 30 on macOS).
    NullIpv6,
    /// OpenBSD loopback: the address family in network order.
    Loop,
}

/// A captured packet that owns its bytes.
#[derive(Clone, Debug)]
pub struct Frame {
    pub ts_ns: u64,
    pub link: u32,
    pub data: Vec<u8>,
}

impl Frame {
    pub fn packet(&self) -> Packet<'_> {
        Packet {
            ts_ns: self.ts_ns,
            link: self.link,
            data: &self.data,
            orig_len: self.data.len() as u32,
        }
    }
}

pub fn frame(seg: &Segment, link: Link) -> Frame {
    let (src_mac, dst_mac) = match seg.from {
        Peer::Client => (CLIENT_MAC, SERVER_MAC),
        Peer::Server => (SERVER_MAC, CLIENT_MAC),
    };
    let (linktype, data) = match link {
        Link::Ethernet => {
            let (src, dst) = v4_addrs(seg.from);
            let b = PacketBuilder::ethernet2(src_mac, dst_mac).ipv4(src, dst, 64);
            (link::ETHERNET, tcp(b, seg))
        }
        Link::Vlan(id) => {
            let (src, dst) = v4_addrs(seg.from);
            let b = PacketBuilder::ethernet2(src_mac, dst_mac)
                .single_vlan(VlanId::try_new(id).expect("VLAN id below 4096"))
                .ipv4(src, dst, 64);
            (link::ETHERNET, tcp(b, seg))
        }
        Link::DoubleVlan(outer, inner) => {
            let (src, dst) = v4_addrs(seg.from);
            let b = PacketBuilder::ethernet2(src_mac, dst_mac)
                .double_vlan(
                    VlanId::try_new(outer).expect("VLAN id below 4096"),
                    VlanId::try_new(inner).expect("VLAN id below 4096"),
                )
                .ipv4(src, dst, 64);
            (link::ETHERNET, tcp(b, seg))
        }
        Link::Ipv6 => {
            let (src, dst) = v6_addrs(seg.from);
            let b = PacketBuilder::ethernet2(src_mac, dst_mac).ipv6(src, dst, 64);
            (link::ETHERNET, tcp(b, seg))
        }
        Link::LinuxSll => {
            // Packet type (0: to us), ARPHRD_ETHER, address length, address (8), protocol.
            let mut sll = vec![0, 0, 0, 1, 0, 6];
            sll.extend_from_slice(&src_mac);
            sll.extend_from_slice(&[0, 0, 0x08, 0x00]);
            (link::LINUX_SLL, [sll, ip_packet(seg, false)].concat())
        }
        Link::LinuxSll2 => {
            // Protocol, reserved, interface index, ARPHRD_ETHER, packet type, address length, address (8).
            let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6];
            sll2.extend_from_slice(&src_mac);
            sll2.extend_from_slice(&[0, 0]);
            (link::LINUX_SLL2, [sll2, ip_packet(seg, false)].concat())
        }
        Link::RawIp => (link::RAW, ip_packet(seg, false)),
        Link::Null => (
            link::NULL,
            [2u32.to_le_bytes().to_vec(), ip_packet(seg, false)].concat(),
        ),
        Link::NullIpv6 => (
            link::NULL,
            [30u32.to_le_bytes().to_vec(), ip_packet(seg, true)].concat(),
        ),
        Link::Loop => (
            link::LOOP,
            [2u32.to_be_bytes().to_vec(), ip_packet(seg, false)].concat(),
        ),
    };
    Frame {
        ts_ns: seg.ts_ns,
        link: linktype,
        data,
    }
}

/// The segment as an IP datagram (no link header).
pub fn ip_packet(seg: &Segment, v6: bool) -> Vec<u8> {
    if v6 {
        let (src, dst) = v6_addrs(seg.from);
        tcp(PacketBuilder::ipv6(src, dst, 64), seg)
    } else {
        let (src, dst) = v4_addrs(seg.from);
        tcp(PacketBuilder::ipv4(src, dst, 64), seg)
    }
}

/// An Ethernet frame around an IP datagram.
pub fn ethernet(from: Peer, ether_type: EtherType, ip: &[u8]) -> Vec<u8> {
    let (source, destination) = match from {
        Peer::Client => (CLIENT_MAC, SERVER_MAC),
        Peer::Server => (SERVER_MAC, CLIENT_MAC),
    };
    let header = Ethernet2Header {
        source,
        destination,
        ether_type,
    };
    [&header.to_bytes()[..], ip].concat()
}

fn v4_addrs(from: Peer) -> ([u8; 4], [u8; 4]) {
    match from {
        Peer::Client => (CLIENT_V4, SERVER_V4),
        Peer::Server => (SERVER_V4, CLIENT_V4),
    }
}

fn v6_addrs(from: Peer) -> ([u8; 16], [u8; 16]) {
    match from {
        Peer::Client => (CLIENT_V6, SERVER_V6),
        Peer::Server => (SERVER_V6, CLIENT_V6),
    }
}

fn ports(from: Peer) -> (u16, u16) {
    match from {
        Peer::Client => (CLIENT_PORT, SERVER_PORT),
        Peer::Server => (SERVER_PORT, CLIENT_PORT),
    }
}

fn tcp(b: PacketBuilderStep<IpHeaders>, seg: &Segment) -> Vec<u8> {
    let (src_port, dst_port) = ports(seg.from);
    let mut t = b.tcp(src_port, dst_port, seg.seq, 65535);
    if seg.syn {
        t = t.syn();
    }
    if let Some(ack) = seg.ack {
        t = t.ack(ack);
    }
    if seg.fin {
        t = t.fin();
    }
    if !seg.payload.is_empty() {
        t = t.psh();
    }
    let mut out = Vec::with_capacity(t.size(seg.payload.len()));
    t.write(&mut out, &seg.payload)
        .expect("segment fits in one IP datagram");
    out
}

/// What feeding frames through a pipeline produced.
pub struct Run {
    pub entries: Vec<Entry>,
    pub stats: Stats,
}

impl Run {
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.entries.iter().map(Exchange::of).collect()
    }
}

pub fn run(frames: &[Frame]) -> Run {
    run_with(PipelineConfig::default(), frames)
}

/// Feeds every frame, then ends the capture.
pub fn run_with(config: PipelineConfig, frames: &[Frame]) -> Run {
    let mut pipeline = Pipeline::new(config);
    let mut entries = Vec::new();
    for f in frames {
        pipeline.packet(&f.packet(), &mut entries);
    }
    pipeline.finish(&mut entries);
    Run {
        entries,
        stats: pipeline.stats(),
    }
}

/// A little-endian, microsecond pcap file holding the frames (all of one link type).
pub fn pcap(frames: &[Frame]) -> Vec<u8> {
    pcap_with_header(
        PcapHeader {
            datalink: DataLink::from(frames.first().map_or(link::ETHERNET, |f| f.link)),
            endianness: Endianness::Little,
            ts_resolution: TsResolution::MicroSecond,
            ..PcapHeader::default()
        },
        frames,
    )
}

pub fn pcap_with_header(header: PcapHeader, frames: &[Frame]) -> Vec<u8> {
    let mut w = PcapWriter::with_header(Vec::new(), header).expect("pcap header");
    for f in frames {
        let ts = Duration::from_nanos(f.ts_ns);
        w.write_packet(&PcapPacket::new(ts, f.data.len() as u32, &f.data))
            .expect("pcap record");
    }
    w.into_writer()
}

pub fn http_request(e: &Entry) -> Option<&HttpRequest> {
    match e.request.as_ref()?.kind.as_ref()? {
        request::Kind::Http(r) => Some(r),
        _ => None,
    }
}

pub fn http_response(e: &Entry) -> Option<&HttpResponse> {
    match e.response.as_ref()?.kind.as_ref()? {
        response::Kind::Http(r) => Some(r),
        _ => None,
    }
}

/// What a user reads off an HTTP entry: method, path, status, bodies and flags.
#[derive(Clone, PartialEq, Eq)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub status: Option<u32>,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
    /// Sorted, so that the order flags were added in does not matter.
    pub flags: Vec<String>,
}

impl Exchange {
    /// An expected request answered with `status`, no bodies, no flags.
    pub fn new(method: &str, path: &str, status: u32) -> Self {
        Exchange {
            method: method.into(),
            path: path.into(),
            status: Some(status),
            request_body: Vec::new(),
            response_body: Vec::new(),
            flags: Vec::new(),
        }
    }

    /// An expected request that got no response.
    pub fn unanswered(method: &str, path: &str) -> Self {
        Exchange {
            status: None,
            ..Self::new(method, path, 0)
        }
    }

    /// An expected response whose request was not seen.
    pub fn orphan_response(status: u32) -> Self {
        Self::new("", "", status)
    }

    pub fn request_body(mut self, body: &[u8]) -> Self {
        self.request_body = body.to_vec();
        self
    }

    pub fn response_body(mut self, body: &[u8]) -> Self {
        self.response_body = body.to_vec();
        self
    }

    pub fn flags(mut self, flags: &[&str]) -> Self {
        self.flags = flags.iter().map(|f| f.to_string()).collect();
        self.flags.sort();
        self
    }

    pub fn of(e: &Entry) -> Self {
        let req = http_request(e);
        let resp = http_response(e);
        let body = |b: Option<&proto::v1::Body>| b.map(|b| b.data.clone()).unwrap_or_default();
        let mut flags = e.flags.clone();
        flags.sort();
        Exchange {
            method: req.map(|r| r.method.clone()).unwrap_or_default(),
            path: req.map(|r| r.path.clone()).unwrap_or_default(),
            status: resp.map(|r| r.status),
            request_body: body(req.and_then(|r| r.body.as_ref())),
            response_body: body(resp.and_then(|r| r.body.as_ref())),
            flags,
        }
    }
}

/// Bodies shown as escaped text, so that a failed comparison reads like the traffic.
impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("status", &self.status)
            .field(
                "request_body",
                &self.request_body.escape_ascii().to_string(),
            )
            .field(
                "response_body",
                &self.response_body.escape_ascii().to_string(),
            )
            .field("flags", &self.flags)
            .finish()
    }
}

/// A minimal GET.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\n\r\n").into_bytes()
}

/// A 200 with a Content-Length body.
pub fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Two keep-alive exchanges on one connection, `/first` then `/second`: cut
/// the capture inside the last frame to leave the second without its response.
pub fn two_requests() -> Vec<Frame> {
    let mut c = Conversation::open();
    c.exchange(&get("/first"), &ok("one"))
        .exchange(&get("/second"), &ok("two"));
    c.frames(Link::Ethernet)
}
