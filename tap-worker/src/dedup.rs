//! `dedup`: a packet captured on two interfaces is processed once.
//!
//! Capturing several interfaces of one host without pod filters (`kubetap
//! tap --local` on every interface, or `-i` given a bridge's ports) sees a
//! bridged packet on each interface it crosses: a container's packet to
//! another enters the bridge on one veth and leaves on the other, a
//! container's packet to the host enters on its veth and again on the
//! bridge. Bridging changes nothing from the IP header on, so such copies
//! are the same bytes, captured microseconds apart. [`Dedup`] remembers a
//! hash of each IP packet (TTL / hop limit and the IPv4 header checksum left
//! out, so a routed copy matches too) with the interface and capture time,
//! and calls a packet a copy when the same bytes were taken on another
//! interface within [`WINDOW_NS`]. The same bytes twice on one interface
//! are left alone (a retransmission is the sender's, and the dissectors
//! count it). NAT rewrites addresses: a copy seen before and after NAT is
//! a different packet here, as it is a different connection.

use crate::capture::Packet;
use crate::capture::link;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher as _, Hasher as _};

/// Copies further apart than this (capture time) are not matched.
pub const WINDOW_NS: u64 = 200_000_000;

/// Packets remembered, at most; past it the oldest are forgotten first.
pub const MAX_REMEMBERED: usize = 1 << 17;

pub struct Dedup {
    hasher: foldhash::fast::FixedState,
    /// hash -> (interface, capture time) of its latest sighting.
    seen: HashMap<u64, (u32, u64)>,
    /// Sightings in arrival order, for forgetting.
    order: VecDeque<(u64, u64)>,
    newest_ns: u64,
    /// Copies skipped.
    pub copies: u64,
    scratch: Vec<u8>,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup::new()
    }
}

impl Dedup {
    pub fn new() -> Dedup {
        Dedup {
            // Seeded per process: crafted collisions cannot be aimed at it.
            hasher: foldhash::fast::FixedState::with_seed(fastrand::u64(..)),
            seen: HashMap::new(),
            order: VecDeque::new(),
            newest_ns: 0,
            copies: 0,
            scratch: Vec::new(),
        }
    }

    /// Whether `pkt`, captured on `interface` (any number that tells the
    /// captures apart), is a copy of a packet taken on another interface
    /// within the window; the first sighting is remembered.
    pub fn is_copy(&mut self, pkt: &Packet<'_>, interface: u32) -> bool {
        let Some(ip) = ip_packet(pkt.link, pkt.data) else {
            return false;
        };
        let Some(hash) = self.hash(ip) else {
            return false;
        };
        self.newest_ns = self.newest_ns.max(pkt.ts_ns);
        self.forget();
        match self.seen.get_mut(&hash) {
            Some((other, ts)) if *other != interface && pkt.ts_ns.abs_diff(*ts) <= WINDOW_NS => {
                self.copies += 1;
                true
            }
            Some(sighting) => {
                *sighting = (interface, pkt.ts_ns);
                self.order.push_back((hash, pkt.ts_ns));
                false
            }
            None => {
                self.seen.insert(hash, (interface, pkt.ts_ns));
                self.order.push_back((hash, pkt.ts_ns));
                false
            }
        }
    }

    /// Forgets sightings older than the window, and the oldest past the bound.
    fn forget(&mut self) {
        while let Some(&(hash, ts)) = self.order.front() {
            let old = ts.saturating_add(WINDOW_NS) < self.newest_ns;
            if !old && self.order.len() < MAX_REMEMBERED {
                break;
            }
            self.order.pop_front();
            // Only if this was its latest sighting.
            if self.seen.get(&hash).is_some_and(|&(_, t)| t == ts) {
                self.seen.remove(&hash);
            }
        }
    }

    /// The hash of an IP packet with the fields a router changes zeroed:
    /// the header is copied to zero them, the rest hashed where it lies.
    fn hash(&mut self, ip: &[u8]) -> Option<u64> {
        let (mutable, len, total): (&[usize], usize, usize) = match ip.first()? >> 4 {
            // TTL, header checksum; the total length.
            4 => (
                &[8, 10, 11],
                20,
                usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?])),
            ),
            // Hop limit; the payload length.
            6 => (
                &[7],
                40,
                40 + usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?])),
            ),
            _ => return None,
        };
        if ip.len() < len {
            return None;
        }
        // Ethernet pads short frames: the padding is not the packet's (and
        // may differ between copies). A length the header cannot vouch for
        // (0 in a jumbogram) leaves the packet as captured.
        let ip = if (len..=ip.len()).contains(&total) {
            &ip[..total]
        } else {
            ip
        };
        self.scratch.clear();
        self.scratch.extend_from_slice(&ip[..len]);
        for &i in mutable {
            self.scratch[i] = 0;
        }
        let mut h = self.hasher.build_hasher();
        h.write(&self.scratch);
        h.write(&ip[len..]);
        Some(h.finish())
    }
}

/// The IP packet inside a captured frame, for the link types live capture
/// gives (Ethernet with any VLAN tags, raw IP, Linux cooked).
fn ip_packet(link_type: u32, data: &[u8]) -> Option<&[u8]> {
    match link_type {
        link::ETHERNET => {
            let mut at = 12;
            loop {
                let ethertype = u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]);
                match ethertype {
                    0x8100 | 0x88a8 => at += 4,
                    0x0800 | 0x86dd => return data.get(at + 2..),
                    _ => return None,
                }
            }
        }
        link::RAW | link::IPV4 | link::IPV6 | link::RAW_OPENBSD | link::RAW_BSD => Some(data),
        link::LINUX_SLL => data.get(16..),
        link::LINUX_SLL2 => data.get(20..),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame with an IPv4/UDP packet; `ttl` and `vlan` vary.
    fn frame(ttl: u8, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        if let Some(id) = vlan {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&id.to_be_bytes());
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 8 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, ttl, 17]);
        // A checksum that differs with the TTL, as a router would write it.
        f.extend_from_slice(&[0xbe, ttl]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x9c, 0x40, 0, 53]);
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    fn pkt(ts_ns: u64, data: &[u8]) -> Packet<'_> {
        Packet {
            ts_ns,
            link: link::ETHERNET,
            data,
            orig_len: data.len() as u32,
        }
    }

    #[test]
    fn a_copy_on_another_interface_is_skipped_once() {
        let mut d = Dedup::new();
        let a = frame(64, None, b"query");
        assert!(!d.is_copy(&pkt(1_000, &a), 1));
        // The same packet leaving the bridge on another port, routed (TTL
        // and checksum changed) and tagged on the way: a copy.
        let routed = frame(63, Some(7), b"query");
        assert!(d.is_copy(&pkt(1_500, &routed), 2));
        assert!(d.is_copy(&pkt(1_600, &a), 3));
        assert_eq!(d.copies, 2);
        // Other bytes are another packet.
        assert!(!d.is_copy(&pkt(1_700, &frame(64, None, b"other")), 2));
    }

    #[test]
    fn ethernet_padding_is_not_part_of_the_packet() {
        let mut d = Dedup::new();
        let a = frame(64, None, b"q");
        let mut padded = a.clone();
        padded.extend_from_slice(&[0xee; 17]);
        assert!(!d.is_copy(&pkt(1_000, &a), 1));
        assert!(d.is_copy(&pkt(1_100, &padded), 2));
    }

    #[test]
    fn the_same_bytes_on_one_interface_are_kept() {
        let mut d = Dedup::new();
        let a = frame(64, None, b"retransmitted");
        assert!(!d.is_copy(&pkt(1_000, &a), 1));
        assert!(!d.is_copy(&pkt(2_000, &a), 1));
        assert_eq!(d.copies, 0);
    }

    #[test]
    fn sightings_older_than_the_window_are_forgotten() {
        let mut d = Dedup::new();
        let a = frame(64, None, b"x");
        assert!(!d.is_copy(&pkt(1_000, &a), 1));
        let later = 1_000 + WINDOW_NS + 1;
        assert!(!d.is_copy(&pkt(later, &a), 2));
        // Time moves on with other packets: the old sighting goes.
        assert!(!d.is_copy(&pkt(later + 2 * WINDOW_NS, &frame(64, None, b"y")), 1));
        assert!(d.seen.len() <= 2 && d.order.len() <= 2, "{:?}", d.order);
    }

    #[test]
    fn memory_is_bounded_however_fast_packets_come() {
        let mut d = Dedup::new();
        for i in 0..(MAX_REMEMBERED as u64 + 5_000) {
            let f = frame(64, None, &i.to_be_bytes());
            d.is_copy(&pkt(1_000 + i, &f), 1);
        }
        assert!(d.order.len() <= MAX_REMEMBERED);
        assert!(d.seen.len() <= MAX_REMEMBERED);
    }

    #[test]
    fn frames_that_are_not_ip_are_never_copies() {
        let mut d = Dedup::new();
        let arp = [0u8; 12]
            .iter()
            .copied()
            .chain([0x08, 0x06])
            .chain([0; 28])
            .collect::<Vec<u8>>();
        assert!(!d.is_copy(&pkt(1, &arp), 1));
        assert!(!d.is_copy(&pkt(2, &arp), 2));
        assert!(!d.is_copy(&pkt(3, &[0x45]), 2));
    }
}
