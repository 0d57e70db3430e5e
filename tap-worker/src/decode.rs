//! Decode: link layer → IP → TCP/UDP with etherparse. Handles Ethernet (with
//! 802.1Q/QinQ VLAN tags), Linux cooked SLL and SLL2, raw IPv4/IPv6, BSD
//! loopback and NFLOG; IPv4 and IPv6 fragments are reassembled with
//! etherparse's defrag pool under our own bounds (count and age). Overlay
//! tunnels (VXLAN, Geneve, GRE, IP-in-IP; `tunnel`) are opened and what they
//! carry is decoded instead, up to four tunnels deep.
//!
//! An IP length of 0, or larger than the frame, is what a capture holds for a
//! segmentation-offloaded super-packet seen before segmentation (and for BIG
//! TCP packets above 64 KiB, and for frames cut by the snap length): such a
//! packet is sliced again with etherparse's lax slicer, which takes the
//! captured length instead, and is counted (`length_from_capture`), not
//! dropped.

use crate::capture::{Packet, link};
use crate::dissect::flow::Outer;
use crate::tunnel;
use etherparse::defrag::IpDefragPool;
use etherparse::{
    EtherType, IpNumber, LaxNetSlice, LaxSlicedPacket, LenSource, NetSlice, SlicedPacket, TcpSlice,
    TransportSlice, UdpSlice,
};
use std::collections::HashMap;
use std::net::IpAddr;

/// The transport part of a decoded packet.
#[derive(Debug, Clone, Copy)]
pub enum Transport<'a> {
    Tcp(TcpSegment<'a>),
    Udp {
        src_port: u16,
        dst_port: u16,
        payload: &'a [u8],
    },
}

/// The fields of a TCP segment that reassembly needs.
#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ack_flag: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: &'a [u8],
}

impl<'a> TcpSegment<'a> {
    fn from_slice(t: &TcpSlice<'a>) -> Self {
        TcpSegment {
            src_port: t.source_port(),
            dst_port: t.destination_port(),
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            syn: t.syn(),
            ack_flag: t.ack(),
            fin: t.fin(),
            rst: t.rst(),
            payload: t.payload(),
        }
    }
}

/// An IP datagram carrying TCP or UDP.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub transport: Transport<'a>,
    /// The overlay tunnel it was unwrapped from (the outermost).
    pub outer: Option<Outer>,
}

/// The tunnels a packet being decoded was unwrapped from: the outermost
/// hop, and how many.
#[derive(Debug, Clone, Copy, Default)]
struct Within {
    outer: Option<Outer>,
    depth: usize,
}

/// Why a packet was not decoded; each is counted in [`DecodeStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not IP, or IP carrying neither TCP nor UDP (ARP, ICMP, …): not an error.
    NotTcpUdp,
    /// A fragment kept until the rest of its datagram arrives.
    Fragment,
    UnsupportedLink(u32),
    Malformed(String),
}

#[derive(Debug, Default, Clone)]
pub struct DecodeStats {
    pub malformed: u64,
    pub unsupported_link: u64,
    pub not_tcp_udp: u64,
    pub fragments: u64,
    pub fragments_reassembled: u64,
    /// Fragments dropped: too many datagrams in reassembly, expired, or inconsistent.
    pub fragments_dropped: u64,
    /// Packets whose IP length was 0 or larger than the frame (offloaded
    /// super-packets, BIG TCP, a snap length): decoded with the captured
    /// length instead.
    pub length_from_capture: u64,
    /// Packets taken out of an overlay tunnel (VXLAN, Geneve, GRE, IP-in-IP).
    pub decapsulated: u64,
}

/// Bounds for IP fragment reassembly.
#[derive(Debug, Clone)]
pub struct DefragConfig {
    /// Datagrams being reassembled at once.
    pub max_datagrams: usize,
    /// A datagram whose fragments stop arriving for this long is dropped.
    pub timeout_ns: u64,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig {
            max_datagrams: 4096,
            timeout_ns: 30_000_000_000,
        }
    }
}

/// Identifies a datagram in reassembly, mirroring etherparse's own key so that
/// our bound on their number is exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
    vlan: Vec<u16>,
}

pub struct Decoder {
    pool: IpDefragPool<u64, ()>,
    /// Datagrams in reassembly and their last fragment time.
    active: HashMap<FragKey, u64>,
    config: DefragConfig,
    last_sweep_ns: u64,
    pub stats: DecodeStats,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DefragConfig::default())
    }
}

impl Decoder {
    pub fn new(config: DefragConfig) -> Self {
        Decoder {
            pool: IpDefragPool::new(),
            active: HashMap::new(),
            config,
            last_sweep_ns: 0,
            stats: DecodeStats::default(),
        }
    }

    /// Decodes one packet and hands the datagram to `f`; the datagram may borrow
    /// a reassembled buffer, hence the callback.
    pub fn decode<R>(
        &mut self,
        pkt: &Packet<'_>,
        f: impl FnOnce(&Datagram<'_>) -> R,
    ) -> Result<R, Skip> {
        let r = self.decode_inner(pkt, f, Within::default());
        match &r {
            Err(Skip::NotTcpUdp) => self.stats.not_tcp_udp += 1,
            Err(Skip::Fragment) => {}
            Err(Skip::UnsupportedLink(_)) => self.stats.unsupported_link += 1,
            Err(Skip::Malformed(_)) => self.stats.malformed += 1,
            Ok(_) => {}
        }
        r
    }

    /// `within`: the tunnels `pkt` was unwrapped from.
    fn decode_inner<R>(
        &mut self,
        pkt: &Packet<'_>,
        f: impl FnOnce(&Datagram<'_>) -> R,
        within: Within,
    ) -> Result<R, Skip> {
        let sliced = match slice_link(pkt.link, pkt.data) {
            Ok(sliced) => sliced,
            Err(Skip::Malformed(why)) => {
                return match self.decode_lax(pkt, f, within.outer) {
                    Some(r) => r,
                    None => Err(Skip::Malformed(why)),
                };
            }
            Err(other) => return Err(other),
        };
        let Some(net) = &sliced.net else {
            return Err(Skip::NotTcpUdp);
        };
        let (src, dst) = match net {
            NetSlice::Ipv4(v4) => (
                IpAddr::V4(v4.header().source_addr()),
                IpAddr::V4(v4.header().destination_addr()),
            ),
            NetSlice::Ipv6(v6) => {
                // etherparse reads a payload length of 0 as a jumbogram's
                // and takes the captured length itself: count it too.
                if v6.header().payload_length() == 0 {
                    self.stats.length_from_capture += 1;
                }
                (
                    IpAddr::V6(v6.header().source_addr()),
                    IpAddr::V6(v6.header().destination_addr()),
                )
            }
            NetSlice::Arp(_) => return Err(Skip::NotTcpUdp),
        };
        if let Some(t) = tunnel::inner(&sliced) {
            return self.unwrap(t, pkt.ts_ns, (src, dst), f, within);
        }
        if sliced.is_ip_payload_fragmented() {
            return self.defragment(&sliced, pkt.ts_ns, (src, dst), f, within);
        }
        let transport = match &sliced.transport {
            Some(TransportSlice::Tcp(t)) => Transport::Tcp(TcpSegment::from_slice(t)),
            Some(TransportSlice::Udp(u)) => Transport::Udp {
                src_port: u.source_port(),
                dst_port: u.destination_port(),
                payload: u.payload(),
            },
            _ => return Err(Skip::NotTcpUdp),
        };
        Ok(f(&Datagram {
            src,
            dst,
            transport,
            outer: within.outer,
        }))
    }

    /// Decodes the packet tunnel `t` between `src` and `dst` carries.
    fn unwrap<R>(
        &mut self,
        t: tunnel::Inner<'_>,
        ts_ns: u64,
        (src, dst): (IpAddr, IpAddr),
        f: impl FnOnce(&Datagram<'_>) -> R,
        within: Within,
    ) -> Result<R, Skip> {
        if within.depth >= MAX_TUNNELS {
            return Err(Skip::Malformed(format!(
                "more than {MAX_TUNNELS} tunnels inside one another"
            )));
        }
        self.stats.decapsulated += 1;
        let inner = Packet {
            ts_ns,
            link: t.link,
            data: t.data,
            orig_len: t.data.len() as u32,
        };
        let within = Within {
            // The outermost hop is the one between nodes.
            outer: within.outer.or(Some(Outer {
                kind: t.kind,
                src,
                dst,
                vni: t.vni,
            })),
            depth: within.depth + 1,
        };
        self.decode_inner(&inner, f, within)
    }

    /// A packet the strict slicer refused, sliced again taking the captured
    /// length where the IP length is 0 or larger than the frame. `None` when
    /// that is not what was wrong with it (the strict error stands).
    fn decode_lax<R>(
        &mut self,
        pkt: &Packet<'_>,
        f: impl FnOnce(&Datagram<'_>) -> R,
        outer: Option<Outer>,
    ) -> Option<Result<R, Skip>> {
        let lax = match link_start(pkt.link, pkt.data).ok()? {
            LinkStart::Ethernet(d) => LaxSlicedPacket::from_ethernet(d).ok()?,
            LinkStart::EtherType(t, d) => LaxSlicedPacket::from_ether_type(t, d),
            LinkStart::Ip(d) => LaxSlicedPacket::from_ip(d).ok()?,
        };
        let (src, dst, payload) = match lax.net.as_ref()? {
            LaxNetSlice::Ipv4(v4) => (
                IpAddr::V4(v4.header().source_addr()),
                IpAddr::V4(v4.header().destination_addr()),
                v4.payload(),
            ),
            LaxNetSlice::Ipv6(v6) => (
                IpAddr::V6(v6.header().source_addr()),
                IpAddr::V6(v6.header().destination_addr()),
                v6.payload(),
            ),
            LaxNetSlice::Arp(_) => return None,
        };
        // Only the length was wrong; a fragment with a wrong length stays malformed.
        if payload.len_source != LenSource::Slice || payload.fragmented {
            return None;
        }
        let transport = match lax.transport.as_ref()? {
            TransportSlice::Tcp(t) => Transport::Tcp(TcpSegment::from_slice(t)),
            TransportSlice::Udp(u) => Transport::Udp {
                src_port: u.source_port(),
                dst_port: u.destination_port(),
                payload: u.payload(),
            },
            _ => return None,
        };
        self.stats.length_from_capture += 1;
        Some(Ok(f(&Datagram {
            src,
            dst,
            transport,
            outer,
        })))
    }

    fn defragment<R>(
        &mut self,
        sliced: &SlicedPacket<'_>,
        ts_ns: u64,
        (src, dst): (IpAddr, IpAddr),
        f: impl FnOnce(&Datagram<'_>) -> R,
        within: Within,
    ) -> Result<R, Skip> {
        self.stats.fragments += 1;
        self.sweep(ts_ns);
        let key = frag_key(sliced, src, dst);
        if !self.active.contains_key(&key) && self.active.len() >= self.config.max_datagrams {
            self.stats.fragments_dropped += 1;
            return Err(Skip::Fragment);
        }
        match self.pool.process_sliced_packet(sliced, ts_ns, ()) {
            Ok(None) => {
                self.active.insert(key, ts_ns);
                Err(Skip::Fragment)
            }
            Ok(Some(whole)) => {
                self.active.remove(&key);
                self.stats.fragments_reassembled += 1;
                // A tunnel packet fragmented on the underlay: what it carries
                // is decoded now that it is whole.
                if let Some(t) = tunnel::inner_of(whole.ip_number, &whole.payload) {
                    let r = self.unwrap(t, ts_ns, (src, dst), f, within);
                    self.pool.return_buf(whole);
                    return r;
                }
                let transport = match whole.ip_number {
                    IpNumber::TCP => TcpSlice::from_slice(&whole.payload)
                        .map(|t| Transport::Tcp(TcpSegment::from_slice(&t)))
                        .map_err(|e| Skip::Malformed(format!("reassembled TCP: {e}"))),
                    IpNumber::UDP => UdpSlice::from_slice(&whole.payload)
                        .map(|u| Transport::Udp {
                            src_port: u.source_port(),
                            dst_port: u.destination_port(),
                            payload: u.payload(),
                        })
                        .map_err(|e| Skip::Malformed(format!("reassembled UDP: {e}"))),
                    _ => Err(Skip::NotTcpUdp),
                };
                let r = transport.map(|transport| {
                    f(&Datagram {
                        src,
                        dst,
                        transport,
                        outer: within.outer,
                    })
                });
                self.pool.return_buf(whole);
                r
            }
            Err(e) => {
                // The pool dropped this datagram's buffer; forget it too.
                self.active.remove(&key);
                self.stats.fragments_dropped += 1;
                Err(Skip::Malformed(format!("IP fragment: {e}")))
            }
        }
    }

    /// Drops datagrams whose fragments stopped arriving.
    fn sweep(&mut self, now_ns: u64) {
        if now_ns < self.last_sweep_ns.saturating_add(1_000_000_000) {
            return;
        }
        self.last_sweep_ns = now_ns;
        let cutoff = now_ns.saturating_sub(self.config.timeout_ns);
        let before = self.active.len();
        self.active.retain(|_, ts| *ts >= cutoff);
        self.stats.fragments_dropped += (before - self.active.len()) as u64;
        self.pool.retain(|ts| *ts >= cutoff);
    }
}

fn frag_key(sliced: &SlicedPacket<'_>, src: IpAddr, dst: IpAddr) -> FragKey {
    let (id, proto) = match &sliced.net {
        Some(NetSlice::Ipv4(v4)) => (
            u32::from(v4.header().identification()),
            v4.payload().ip_number.0,
        ),
        Some(NetSlice::Ipv6(v6)) => {
            let id = v6
                .extensions()
                .clone()
                .into_iter()
                .find_map(|ext| match ext {
                    etherparse::Ipv6ExtensionSlice::Fragment(fr) => Some(fr.identification()),
                    _ => None,
                })
                .unwrap_or(0);
            (id, v6.payload().ip_number.0)
        }
        _ => (0, 0),
    };
    let vlan = sliced.vlan_ids().iter().map(|v| v.value()).collect();
    FragKey {
        src,
        dst,
        id,
        proto,
        vlan,
    }
}

/// Tunnels opened inside one another, at most.
const MAX_TUNNELS: usize = 4;

/// Where a packet's network layer starts, by link type.
enum LinkStart<'a> {
    Ethernet(&'a [u8]),
    /// After a Linux cooked header: the protocol it names, and what follows.
    EtherType(EtherType, &'a [u8]),
    Ip(&'a [u8]),
}

/// The payload of a Linux cooked header of `len` bytes with its protocol at `proto_at`.
fn cooked<'a>(
    data: &'a [u8],
    len: usize,
    proto_at: usize,
    name: &str,
) -> Result<LinkStart<'a>, Skip> {
    if data.len() < len {
        return Err(Skip::Malformed(format!(
            "{name} header needs {len} bytes, packet has {}",
            data.len()
        )));
    }
    let proto = u16::from_be_bytes([data[proto_at], data[proto_at + 1]]);
    Ok(LinkStart::EtherType(EtherType(proto), &data[len..]))
}

/// Reads the link layer's header.
fn link_start(linktype: u32, data: &[u8]) -> Result<LinkStart<'_>, Skip> {
    Ok(match linktype {
        link::ETHERNET => LinkStart::Ethernet(data),
        // Linux cooked captures, parsed here: etherparse rejects SLL from the
        // loopback device (ARPHRD 772), which is what `-i any` records for lo.
        // SLL: packet type (2), ARPHRD (2), address length (2), address (8), protocol (2).
        link::LINUX_SLL => cooked(data, 16, 14, "SLL")?,
        // SLL2: protocol (2), reserved (2), ifindex (4), ARPHRD (2), packet type (1),
        // address length (1), address (8).
        link::LINUX_SLL2 => cooked(data, 20, 0, "SLL2")?,
        link::NULL | link::LOOP => {
            if data.len() < 4 {
                return Err(Skip::Malformed(format!(
                    "loopback header needs 4 bytes, packet has {}",
                    data.len()
                )));
            }
            let raw: [u8; 4] = data[..4].try_into().expect("4 bytes");
            // NULL stores the address family in the writer's byte order, LOOP in
            // network order; accept either reading.
            let family = if linktype == link::LOOP {
                u32::from_be_bytes(raw)
            } else {
                u32::from_le_bytes(raw).min(u32::from_be_bytes(raw))
            };
            match family {
                // AF_INET; AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, macOS.
                2 | 10 | 24 | 28 | 30 => LinkStart::Ip(&data[4..]),
                _ => return Err(Skip::NotTcpUdp),
            }
        }
        link::RAW | link::RAW_OPENBSD | link::RAW_BSD | link::IPV4 | link::IPV6 => {
            LinkStart::Ip(data)
        }
        link::NFLOG => match tunnel::nflog(data) {
            Some(ip) => LinkStart::Ip(ip),
            // A log message without a packet (a rule that logs no payload).
            None => return Err(Skip::NotTcpUdp),
        },
        other => return Err(Skip::UnsupportedLink(other)),
    })
}

/// Slices a packet from its link layer down.
fn slice_link(linktype: u32, data: &[u8]) -> Result<SlicedPacket<'_>, Skip> {
    let r = match link_start(linktype, data)? {
        LinkStart::Ethernet(d) => SlicedPacket::from_ethernet(d),
        LinkStart::EtherType(t, d) => SlicedPacket::from_ether_type(t, d),
        LinkStart::Ip(d) => SlicedPacket::from_ip(d),
    };
    r.map_err(|e| Skip::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// An Ethernet frame: TCP from 10.0.0.1:40000 to 10.0.0.2:80 over IPv4
    /// (or fd00::1 to fd00::2 over IPv6) carrying `payload`.
    fn tcp_frame(v6: bool, payload: &[u8]) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let ip = if v6 {
            let a = |last| {
                let mut a = [0u8; 16];
                a[0] = 0xfd;
                a[15] = last;
                a
            };
            eth.ipv6(a(1), a(2), 64)
        } else {
            eth.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        };
        let mut out = Vec::new();
        ip.tcp(40000, 80, 1, 65_000)
            .ack(1)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    /// Decodes one Ethernet frame: the TCP payload, or why it was skipped.
    fn decode(d: &mut Decoder, data: &[u8]) -> Result<Vec<u8>, Skip> {
        let pkt = Packet {
            ts_ns: 1,
            link: link::ETHERNET,
            data,
            orig_len: data.len() as u32,
        };
        d.decode(&pkt, |dg| match dg.transport {
            Transport::Tcp(t) => t.payload.to_vec(),
            Transport::Udp { payload, .. } => payload.to_vec(),
        })
    }

    /// A segmentation-offloaded super-packet as a capture before the NIC
    /// sees it: one 20 kB TCP payload, the IPv4 total length 0.
    #[test]
    fn an_ipv4_total_length_of_0_takes_the_captured_length() {
        let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let mut frame = tcp_frame(false, &payload);
        frame[16..18].copy_from_slice(&[0, 0]);
        let mut d = Decoder::new(DefragConfig::default());
        assert_eq!(decode(&mut d, &frame), Ok(payload));
        assert_eq!((d.stats.length_from_capture, d.stats.malformed), (1, 0));
    }

    /// A frame shorter than its IP length says (cut by a snap length, or a
    /// GRO packet captured in part): the bytes that are there.
    #[test]
    fn an_ip_length_past_the_frame_takes_the_captured_length() {
        let payload = vec![b'x'; 1000];
        for v6 in [false, true] {
            let frame = tcp_frame(v6, &payload);
            let cut = &frame[..frame.len() - 400];
            let mut d = Decoder::new(DefragConfig::default());
            assert_eq!(decode(&mut d, cut), Ok(vec![b'x'; 600]), "v6 {v6}");
            assert_eq!((d.stats.length_from_capture, d.stats.malformed), (1, 0));
        }
    }

    /// An IPv6 payload length of 0 (BIG TCP over IPv6 drops the jumbo
    /// option before the capture sees the packet).
    #[test]
    fn an_ipv6_payload_length_of_0_takes_the_captured_length() {
        let payload = vec![b'y'; 3000];
        let mut frame = tcp_frame(true, &payload);
        frame[18..20].copy_from_slice(&[0, 0]);
        let mut d = Decoder::new(DefragConfig::default());
        assert_eq!(decode(&mut d, &frame), Ok(payload));
        assert_eq!((d.stats.length_from_capture, d.stats.malformed), (1, 0));
    }

    /// Lengths are not the only thing that can be wrong: a broken TCP header
    /// stays malformed, and a consistent packet is not counted.
    #[test]
    fn other_damage_stays_malformed_and_good_packets_are_not_counted() {
        let mut d = Decoder::new(DefragConfig::default());
        let frame = tcp_frame(false, b"ok");
        assert_eq!(decode(&mut d, &frame), Ok(b"ok".to_vec()));
        // TCP data offset 2 (8 bytes): shorter than a TCP header.
        let mut bad = frame.clone();
        bad[14 + 20 + 12] = 0x20;
        assert!(matches!(decode(&mut d, &bad), Err(Skip::Malformed(_))));
        assert_eq!((d.stats.length_from_capture, d.stats.malformed), (0, 1));
    }
}
