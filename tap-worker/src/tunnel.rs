//! Overlay tunnels, opened so that the traffic inside is dissected: VXLAN
//! (UDP 4789, and 8472 as Flannel and Calico send it), Geneve (UDP 6081, as
//! Cilium sends it), GRE (with or without key and sequence number) and
//! IP-in-IP (IPv4 or IPv6 inside IPv4 or IPv6). A capture on a node's uplink
//! otherwise sees only the outer UDP or IP.
//!
//! etherparse slices the outer packet; the tunnel headers, 8 to a few
//! dozen bytes each, are read here (etherparse has no tunnel headers). A
//! header that does not have its protocol's shape is left alone: the packet
//! stays the UDP or IP packet it looked like.

use crate::capture::link;
use crate::dissect::flow::TunnelKind;
use etherparse::{IpNumber, NetSlice, SlicedPacket, TransportSlice};

/// VXLAN's IANA port, and the one the Linux kernel used first (Flannel, Calico).
const VXLAN_PORTS: [u16; 2] = [4789, 8472];
const GENEVE_PORT: u16 = 6081;
/// Transparent Ethernet bridging: an Ethernet frame inside.
const ETHER_TEB: u16 = 0x6558;
const ETHER_IPV4: u16 = 0x0800;
const ETHER_IPV6: u16 = 0x86dd;

/// The packet a tunnel carries, and what the tunnel is.
pub(crate) struct Inner<'a> {
    pub link: u32,
    pub data: &'a [u8],
    pub kind: TunnelKind,
    /// VXLAN's or Geneve's network identifier, GRE's key.
    pub vni: Option<u32>,
}

/// The packet a tunnel carries: its link type and bytes.
pub(crate) fn inner<'a>(sliced: &SlicedPacket<'a>) -> Option<Inner<'a>> {
    match &sliced.transport {
        Some(TransportSlice::Udp(u)) => udp_inner(u.destination_port(), u.payload()),
        Some(_) => None,
        None => {
            let payload = match sliced.net.as_ref()? {
                NetSlice::Ipv4(v4) => v4.payload(),
                NetSlice::Ipv6(v6) => v6.payload(),
                NetSlice::Arp(_) => return None,
            };
            if payload.fragmented {
                return None;
            }
            ip_inner(payload.ip_number, payload.payload)
        }
    }
}

/// The packet a tunnel carries in an IP payload (a datagram reassembled from
/// fragments): UDP to a tunnel port, GRE or IP-in-IP.
pub(crate) fn inner_of(ip_number: IpNumber, payload: &[u8]) -> Option<Inner<'_>> {
    if ip_number == IpNumber::UDP {
        let u = etherparse::UdpSlice::from_slice(payload).ok()?;
        return udp_inner(u.destination_port(), u.payload());
    }
    ip_inner(ip_number, payload)
}

fn udp_inner(port: u16, b: &[u8]) -> Option<Inner<'_>> {
    // The 24-bit identifier in bytes 4..7 of both headers.
    let vni = b
        .get(4..7)
        .map(|v| u32::from_be_bytes([0, v[0], v[1], v[2]]));
    let (kind, (link, data)) = if VXLAN_PORTS.contains(&port) {
        (TunnelKind::Vxlan, vxlan(b)?)
    } else if port == GENEVE_PORT {
        (TunnelKind::Geneve, geneve(b)?)
    } else {
        return None;
    };
    Some(Inner {
        link,
        data,
        kind,
        vni,
    })
}

fn ip_inner(ip_number: IpNumber, payload: &[u8]) -> Option<Inner<'_>> {
    let (kind, link, data, vni) = match ip_number {
        IpNumber::GRE => {
            let (link, data, key) = gre(payload)?;
            (TunnelKind::Gre, link, data, key)
        }
        IpNumber::IPV4 => (TunnelKind::IpInIp, link::IPV4, payload, None),
        IpNumber::IPV6 => (TunnelKind::IpInIp, link::IPV6, payload, None),
        _ => return None,
    };
    Some(Inner {
        link,
        data,
        kind,
        vni,
    })
}

/// The link type of a tunnel's protocol type field.
fn by_ether_type(t: u16, rest: &[u8]) -> Option<(u32, &[u8])> {
    match t {
        ETHER_TEB => Some((link::ETHERNET, rest)),
        ETHER_IPV4 => Some((link::IPV4, rest)),
        ETHER_IPV6 => Some((link::IPV6, rest)),
        _ => None,
    }
}

/// VXLAN (RFC 7348): flags with the I bit (a valid VNI), 3 reserved bytes,
/// the VNI, a reserved byte; an Ethernet frame follows.
fn vxlan(b: &[u8]) -> Option<(u32, &[u8])> {
    let (h, rest) = (b.get(..8)?, b.get(8..)?);
    (h[0] & 0x08 != 0).then_some((link::ETHERNET, rest))
}

/// Geneve (RFC 8926): version 0, options' length in 4-byte words, flags,
/// the protocol type, the VNI; options follow the fixed 8 bytes.
fn geneve(b: &[u8]) -> Option<(u32, &[u8])> {
    let h = b.get(..8)?;
    if h[0] >> 6 != 0 {
        return None;
    }
    let len = 8 + usize::from(h[0] & 0x3f) * 4;
    by_ether_type(u16::from_be_bytes([h[2], h[3]]), b.get(len..)?)
}

/// GRE (RFC 2784, keys and sequence numbers RFC 2890), version 0: flags,
/// then the protocol type, then a checksum, a key and a sequence number
/// where the flags say so. Routing (RFC 1701) and version 1 (PPTP) are left
/// alone. Also the key, when there is one.
fn gre(b: &[u8]) -> Option<(u32, &[u8], Option<u32>)> {
    let h = b.get(..4)?;
    let flags = u16::from_be_bytes([h[0], h[1]]);
    let (checksum, routing, key, seq) = (
        flags & 0x8000 != 0,
        flags & 0x4000 != 0,
        flags & 0x2000 != 0,
        flags & 0x1000 != 0,
    );
    if routing || flags & 0x0007 != 0 {
        return None;
    }
    let len = 4 + 4 * (usize::from(checksum) + usize::from(key) + usize::from(seq));
    let key = if key {
        let at = 4 + 4 * usize::from(checksum);
        let k = b.get(at..at + 4)?;
        Some(u32::from_be_bytes([k[0], k[1], k[2], k[3]]))
    } else {
        None
    };
    let (link, rest) = by_ether_type(u16::from_be_bytes([h[2], h[3]]), b.get(len..)?)?;
    Some((link, rest, key))
}

/// NFLOG (`nflog:` captures): an address family, a version, a resource id,
/// then type-length-value attributes in the capturing host's byte order,
/// each padded to 4 bytes; attribute 9 is the packet, from its IP header.
pub(crate) fn nflog(b: &[u8]) -> Option<&[u8]> {
    let mut at = 4;
    loop {
        let tlv = b.get(at..at + 4)?;
        // Little-endian hosts are what this runs on; a length that does not
        // fit is read the other way round.
        let le = u16::from_le_bytes([tlv[0], tlv[1]]);
        let (len, kind) = if usize::from(le) >= 4 && at + usize::from(le) <= b.len() {
            (usize::from(le), u16::from_le_bytes([tlv[2], tlv[3]]))
        } else {
            (
                usize::from(u16::from_be_bytes([tlv[0], tlv[1]])),
                u16::from_be_bytes([tlv[2], tlv[3]]),
            )
        };
        if len < 4 {
            return None;
        }
        let value = b.get(at + 4..at + len)?;
        // The attribute type's top two bits are netlink flags.
        if kind & 0x3fff == 9 {
            return Some(value);
        }
        at += len.div_ceil(4) * 4;
    }
}

#[cfg(test)]
mod tests {
    use crate::capture::{Packet, link};
    use crate::decode::{Decoder, DefragConfig, Skip, Transport};
    use crate::dissect::flow::{Outer, TunnelKind};
    use etherparse::PacketBuilder;
    use std::net::IpAddr;

    /// The inner packet: TCP from 10.1.0.5:40000 to 10.1.1.7:8080, "GET /".
    fn inner_ethernet() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 5], [2, 0, 0, 0, 0, 7])
            .ipv4([10, 1, 0, 5], [10, 1, 1, 7], 64)
            .tcp(40000, 8080, 1, 65_000)
            .ack(1)
            .write(&mut out, b"GET /")
            .unwrap();
        out
    }

    /// The inner packet from its IP header.
    fn inner_ip() -> Vec<u8> {
        inner_ethernet()[14..].to_vec()
    }

    /// An outer Ethernet/IPv4 packet between the nodes 192.168.0.1 and .2,
    /// UDP to `port` carrying `payload`.
    fn outer_udp(port: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 168, 0, 1], [192, 168, 0, 2], 64)
            .udp(51000, port)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    /// An outer Ethernet/IPv4 packet carrying IP protocol `proto`.
    fn outer_ip(proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 168, 0, 1], [192, 168, 0, 2], 64)
            .write(&mut out, etherparse::IpNumber(proto), payload)
            .unwrap();
        out
    }

    /// What decoding `data` (of `link`) yields: addresses, ports, payload.
    fn decode(
        d: &mut Decoder,
        link: u32,
        data: &[u8],
    ) -> Result<(IpAddr, IpAddr, u16, Vec<u8>), Skip> {
        let pkt = Packet {
            ts_ns: 1,
            link,
            data,
            orig_len: data.len() as u32,
        };
        d.decode(&pkt, |dg| match dg.transport {
            Transport::Tcp(t) => (dg.src, dg.dst, t.dst_port, t.payload.to_vec()),
            Transport::Udp {
                dst_port, payload, ..
            } => (dg.src, dg.dst, dst_port, payload.to_vec()),
        })
    }

    fn the_inner_packet() -> (IpAddr, IpAddr, u16, Vec<u8>) {
        (
            IpAddr::from([10, 1, 0, 5]),
            IpAddr::from([10, 1, 1, 7]),
            8080,
            b"GET /".to_vec(),
        )
    }

    #[test]
    fn vxlan_geneve_gre_and_ip_in_ip_are_opened() {
        let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vxlan.extend(inner_ethernet());
        // Geneve with one 8-byte option (length 2 words), Ethernet inside.
        let mut geneve = vec![0x02, 0, 0x65, 0x58, 0, 0, 42, 0];
        geneve.extend([0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        geneve.extend(inner_ethernet());
        // GRE with a key and a sequence number, IPv4 inside.
        let mut gre = vec![0x30, 0, 0x08, 0x00, 0, 0, 0, 7, 0, 0, 0, 1];
        gre.extend(inner_ip());
        // GRE with transparent Ethernet bridging (as Linux gretap sends).
        let mut gretap = vec![0, 0, 0x65, 0x58];
        gretap.extend(inner_ethernet());
        let cases = [
            ("vxlan 4789", outer_udp(4789, &vxlan)),
            ("vxlan 8472 (flannel)", outer_udp(8472, &vxlan)),
            ("geneve", outer_udp(6081, &geneve)),
            ("gre", outer_ip(47, &gre)),
            ("gretap", outer_ip(47, &gretap)),
            ("ipip", outer_ip(4, &inner_ip())),
        ];
        for (name, frame) in cases {
            let mut d = Decoder::new(DefragConfig::default());
            assert_eq!(
                decode(&mut d, link::ETHERNET, &frame),
                Ok(the_inner_packet()),
                "{name}"
            );
            assert_eq!(d.stats.decapsulated, 1, "{name}");
        }
    }

    #[test]
    fn tunnels_inside_tunnels_are_opened_to_a_bound() {
        // IP-in-IP, inside VXLAN.
        let ipip = outer_ip(4, &inner_ip());
        let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vxlan.extend(&ipip);
        let mut d = Decoder::new(DefragConfig::default());
        let frame = outer_udp(4789, &vxlan);
        assert_eq!(
            decode(&mut d, link::ETHERNET, &frame),
            Ok(the_inner_packet())
        );
        assert_eq!(d.stats.decapsulated, 2);
        // Five IP-in-IP headers: past the bound, malformed, not a deep recursion.
        let mut ip = inner_ip();
        for _ in 0..5 {
            ip = outer_ip(4, &ip)[14..].to_vec();
        }
        let mut d = Decoder::new(DefragConfig::default());
        assert!(matches!(
            decode(&mut d, link::RAW, &ip),
            Err(Skip::Malformed(_))
        ));
    }

    #[test]
    fn what_is_not_shaped_like_a_tunnel_stays_what_it_looked_like() {
        let mut d = Decoder::new(DefragConfig::default());
        // VXLAN without the I flag: plain UDP to 4789.
        let mut bad = vec![0, 0, 0, 0, 0, 0, 42, 0];
        bad.extend(inner_ethernet());
        let (_, dst, port, payload) =
            decode(&mut d, link::ETHERNET, &outer_udp(4789, &bad)).unwrap();
        assert_eq!(
            (dst, port, payload),
            (IpAddr::from([192, 168, 0, 2]), 4789, bad)
        );
        // GRE version 1 (PPTP) and Geneve version 1: not opened.
        let mut pptp = vec![0x30, 0x01, 0x88, 0x0b, 0, 0, 0, 7, 0, 0, 0, 1];
        pptp.extend(inner_ip());
        assert_eq!(
            decode(&mut d, link::ETHERNET, &outer_ip(47, &pptp)),
            Err(Skip::NotTcpUdp)
        );
        let mut geneve1 = vec![0x40, 0, 0x65, 0x58, 0, 0, 42, 0];
        geneve1.extend(inner_ethernet());
        assert_eq!(
            decode(&mut d, link::ETHERNET, &outer_udp(6081, &geneve1))
                .unwrap()
                .2,
            6081
        );
        assert_eq!(d.stats.decapsulated, 0);
    }

    /// The tunnel a packet came in: kind, outer addresses, identifier.
    fn outer_of(d: &mut Decoder, data: &[u8]) -> Option<Outer> {
        let pkt = Packet {
            ts_ns: 1,
            link: link::ETHERNET,
            data,
            orig_len: data.len() as u32,
        };
        d.decode(&pkt, |dg| dg.outer).unwrap()
    }

    #[test]
    fn the_outer_hop_is_kept() {
        let nodes = (
            IpAddr::from([192, 168, 0, 1]),
            IpAddr::from([192, 168, 0, 2]),
        );
        let hop = |kind, vni| Outer {
            kind,
            src: nodes.0,
            dst: nodes.1,
            vni,
        };
        let mut vxlan = vec![0x08, 0, 0, 0, 0x01, 0x02, 0x03, 0];
        vxlan.extend(inner_ethernet());
        let mut geneve = vec![0, 0, 0x65, 0x58, 0, 0, 42, 0];
        geneve.extend(inner_ethernet());
        let mut keyed = vec![0x20, 0, 0x08, 0x00, 0, 0, 0x01, 0x00];
        keyed.extend(inner_ip());
        let mut keyless = vec![0, 0, 0x08, 0x00];
        keyless.extend(inner_ip());
        let cases = [
            (
                outer_udp(4789, &vxlan),
                hop(TunnelKind::Vxlan, Some(0x010203)),
            ),
            (outer_udp(6081, &geneve), hop(TunnelKind::Geneve, Some(42))),
            (outer_ip(47, &keyed), hop(TunnelKind::Gre, Some(256))),
            (outer_ip(47, &keyless), hop(TunnelKind::Gre, None)),
            (outer_ip(4, &inner_ip()), hop(TunnelKind::IpInIp, None)),
        ];
        for (frame, want) in cases {
            let mut d = Decoder::new(DefragConfig::default());
            assert_eq!(outer_of(&mut d, &frame), Some(want));
        }
        // Not in a tunnel: none.
        let mut d = Decoder::new(DefragConfig::default());
        assert_eq!(outer_of(&mut d, &inner_ethernet()), None);
        // Nested: the outermost hop, between the nodes.
        let ipip = outer_ip(4, &inner_ip());
        let mut nested = vec![0x08, 0, 0, 0, 0, 0, 7, 0];
        nested.extend(&ipip);
        assert_eq!(
            outer_of(&mut d, &outer_udp(4789, &nested)),
            Some(hop(TunnelKind::Vxlan, Some(7)))
        );
    }

    /// A VXLAN packet larger than the underlay's MTU, fragmented: once its
    /// fragments are put back together, what it carries is decoded.
    #[test]
    fn a_fragmented_tunnel_packet_is_opened_once_whole() {
        let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vxlan.extend(inner_ethernet());
        let whole = outer_udp(4789, &vxlan);
        // Split the IPv4 payload (UDP header and all) at 32 bytes.
        let ip = &whole[14..];
        let (header, payload) = ip.split_at(20);
        let fragment = |offset: usize, part: &[u8], more: bool| {
            let mut h = header.to_vec();
            let total = (20 + part.len()) as u16;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            let flags = (if more { 0x2000 } else { 0 }) | (offset / 8) as u16;
            h[6..8].copy_from_slice(&flags.to_be_bytes());
            h[10..12].copy_from_slice(&[0, 0]);
            let sum = etherparse::Ipv4HeaderSlice::from_slice(&h)
                .unwrap()
                .to_header()
                .calc_header_checksum();
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            let mut frame = whole[..14].to_vec();
            frame.extend(h);
            frame.extend(part);
            frame
        };
        let first = fragment(0, &payload[..32], true);
        let second = fragment(32, &payload[32..], false);
        let mut d = Decoder::new(DefragConfig::default());
        assert_eq!(decode(&mut d, link::ETHERNET, &first), Err(Skip::Fragment));
        assert_eq!(
            decode(&mut d, link::ETHERNET, &second),
            Ok(the_inner_packet())
        );
        assert_eq!(d.stats.decapsulated, 1);
        assert_eq!(
            outer_of(&mut d, &whole).map(|o| o.kind),
            Some(TunnelKind::Vxlan)
        );
    }

    #[test]
    fn nflog_messages_give_their_packet() {
        // Family AF_INET, version 0, resource 1; a prefix attribute ("x", padded),
        // then the payload attribute (9), little-endian as on this host.
        let ip = inner_ip();
        let mut msg = vec![2, 0, 0, 1];
        msg.extend([6, 0, 10, 0, b'x', 0, 0, 0]);
        msg.extend(((4 + ip.len()) as u16).to_le_bytes());
        msg.extend(9u16.to_le_bytes());
        msg.extend(&ip);
        let mut d = Decoder::new(DefragConfig::default());
        assert_eq!(decode(&mut d, link::NFLOG, &msg), Ok(the_inner_packet()));
        // Without a payload attribute there is no packet.
        assert_eq!(
            decode(&mut d, link::NFLOG, &msg[..12]),
            Err(Skip::NotTcpUdp)
        );
    }
}
