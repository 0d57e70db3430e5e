//! Decode: link layer → IP → TCP/UDP with etherparse. Handles Ethernet (with
//! 802.1Q/QinQ VLAN tags), Linux cooked SLL and SLL2, raw IPv4/IPv6 and BSD
//! loopback; IPv4 and IPv6 fragments are reassembled with etherparse's defrag
//! pool under our own bounds (count and age).

use crate::capture::{Packet, link};
use etherparse::defrag::IpDefragPool;
use etherparse::{EtherType, IpNumber, NetSlice, SlicedPacket, TcpSlice, TransportSlice, UdpSlice};
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
        let r = self.decode_inner(pkt, f);
        match &r {
            Err(Skip::NotTcpUdp) => self.stats.not_tcp_udp += 1,
            Err(Skip::Fragment) => {}
            Err(Skip::UnsupportedLink(_)) => self.stats.unsupported_link += 1,
            Err(Skip::Malformed(_)) => self.stats.malformed += 1,
            Ok(_) => {}
        }
        r
    }

    fn decode_inner<R>(
        &mut self,
        pkt: &Packet<'_>,
        f: impl FnOnce(&Datagram<'_>) -> R,
    ) -> Result<R, Skip> {
        let sliced = slice_link(pkt.link, pkt.data)?;
        let Some(net) = &sliced.net else {
            return Err(Skip::NotTcpUdp);
        };
        let (src, dst) = match net {
            NetSlice::Ipv4(v4) => (
                IpAddr::V4(v4.header().source_addr()),
                IpAddr::V4(v4.header().destination_addr()),
            ),
            NetSlice::Ipv6(v6) => (
                IpAddr::V6(v6.header().source_addr()),
                IpAddr::V6(v6.header().destination_addr()),
            ),
            NetSlice::Arp(_) => return Err(Skip::NotTcpUdp),
        };
        if sliced.is_ip_payload_fragmented() {
            return self.defragment(&sliced, pkt.ts_ns, src, dst, f);
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
        }))
    }

    fn defragment<R>(
        &mut self,
        sliced: &SlicedPacket<'_>,
        ts_ns: u64,
        src: IpAddr,
        dst: IpAddr,
        f: impl FnOnce(&Datagram<'_>) -> R,
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

/// Slices the payload of a Linux cooked header of `len` bytes with its protocol at `proto_at`.
fn cooked<'a>(
    data: &'a [u8],
    len: usize,
    proto_at: usize,
    name: &str,
) -> Result<Result<SlicedPacket<'a>, etherparse::err::packet::SliceError>, Skip> {
    if data.len() < len {
        return Err(Skip::Malformed(format!(
            "{name} header needs {len} bytes, packet has {}",
            data.len()
        )));
    }
    let proto = u16::from_be_bytes([data[proto_at], data[proto_at + 1]]);
    Ok(SlicedPacket::from_ether_type(
        EtherType(proto),
        &data[len..],
    ))
}

/// Slices a packet from its link layer down.
fn slice_link(linktype: u32, data: &[u8]) -> Result<SlicedPacket<'_>, Skip> {
    let r = match linktype {
        link::ETHERNET => SlicedPacket::from_ethernet(data),
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
                2 | 10 | 24 | 28 | 30 => SlicedPacket::from_ip(&data[4..]),
                _ => return Err(Skip::NotTcpUdp),
            }
        }
        link::RAW | link::RAW_OPENBSD | link::RAW_BSD | link::IPV4 | link::IPV6 => {
            SlicedPacket::from_ip(data)
        }
        other => return Err(Skip::UnsupportedLink(other)),
    };
    r.map_err(|e| Skip::Malformed(e.to_string()))
}
