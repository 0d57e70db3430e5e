//! A synthetic HTTP/1.1 capture for the benchmark: many interleaved
//! connections, keep-alive and not, GET and POST, Content-Length and chunked
//! bodies of mixed sizes, full TCP handshakes and teardowns, Ethernet/IPv4,
//! written as classic pcap with nanosecond timestamps. Deterministic per seed.

use anyhow::Result;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

const MSS: usize = 1448;
const SERVER_PORT: u16 = 80;
const ACTIVE: usize = 64;

struct Conn {
    client: [u8; 4],
    server: [u8; 4],
    port: u16,
    cseq: u32,
    sseq: u32,
    left: u32,
}

pub struct Summary {
    pub packets: u64,
    pub bytes: u64,
}

struct Writer<W: Write> {
    pcap: PcapWriter<W>,
    ts_ns: u64,
    buf: Vec<u8>,
    packets: u64,
}

impl<W: Write> Writer<W> {
    fn packet(&mut self, c: &Conn, to_server: bool, flags: &str, payload: &[u8]) -> Result<()> {
        let (src, dst, sport, dport, seq, ack) = if to_server {
            (c.client, c.server, c.port, SERVER_PORT, c.cseq, c.sseq)
        } else {
            (c.server, c.client, SERVER_PORT, c.port, c.sseq, c.cseq)
        };
        self.buf.clear();
        let seg = super::Segment {
            src,
            dst,
            sport,
            dport,
            seq,
            ack,
        };
        super::tcp_frame(&mut self.buf, &seg, flags, payload)?;
        self.ts_ns += 7_000;
        let p = PcapPacket::new(
            Duration::from_nanos(self.ts_ns),
            self.buf.len() as u32,
            &self.buf,
        );
        self.pcap.write_packet(&p)?;
        self.packets += 1;
        Ok(())
    }

    /// Sends `data` in MSS-sized segments and advances that side's sequence number.
    fn send(&mut self, c: &mut Conn, to_server: bool, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(MSS) {
            self.packet(c, to_server, "AP", chunk)?;
            if to_server {
                c.cseq = c.cseq.wrapping_add(chunk.len() as u32);
            } else {
                c.sseq = c.sseq.wrapping_add(chunk.len() as u32);
            }
        }
        // The receiver acknowledges.
        self.packet(c, !to_server, "A", &[])
    }
}

fn body_size(rng: &mut fastrand::Rng) -> usize {
    match rng.u32(0..1000) {
        0..700 => rng.usize(20..300),
        700..950 => rng.usize(300..2500),
        950..995 => rng.usize(2500..12_000),
        _ => rng.usize(12_000..80_000),
    }
}

/// Writes a capture with `transactions` request/response pairs to `path`.
pub fn generate(path: &Path, transactions: u64, seed: u64) -> Result<Summary> {
    let file = std::fs::File::create(path)?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        snaplen: 262_144,
        ..Default::default()
    };
    let mut w = Writer {
        pcap: PcapWriter::with_header(BufWriter::with_capacity(1 << 20, file), header)?,
        ts_ns: 1_790_000_000_000_000_000,
        buf: Vec::with_capacity(2048),
        packets: 0,
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut conns: Vec<Conn> = Vec::new();
    let mut next_port: u32 = 0;
    let filler: Vec<u8> = b"{\"id\":12345,\"name\":\"kubetap\",\"tags\":[\"a\",\"b\"]},"
        .iter()
        .copied()
        .cycle()
        .take(80_000)
        .collect();
    let mut done = 0;
    while done < transactions {
        while conns.len() < ACTIVE {
            next_port += 1;
            let mut c = Conn {
                client: [
                    10,
                    1,
                    (next_port >> 16) as u8 % 250,
                    (next_port % 250) as u8 + 1,
                ],
                server: [10, 2, 0, rng.u8(1..20)],
                port: 1024 + (next_port % 60_000) as u16,
                cseq: rng.u32(..),
                sseq: rng.u32(..),
                left: if rng.u8(0..5) == 0 { 1 } else { rng.u32(2..60) },
            };
            w.packet(&c, true, "S", &[])?;
            c.cseq = c.cseq.wrapping_add(1);
            w.packet(&c, false, "SA", &[])?;
            c.sseq = c.sseq.wrapping_add(1);
            w.packet(&c, true, "A", &[])?;
            conns.push(c);
        }
        let i = rng.usize(..conns.len());
        let c = &mut conns[i];
        c.left -= 1;
        let last = c.left == 0;
        let close = if last { "Connection: close\r\n" } else { "" };
        let n = rng.u32(..100_000);
        let request = if rng.u8(0..10) == 0 {
            let body = &filler[..body_size(&mut rng).min(4000)];
            let mut r = format!(
                "POST /api/v1/orders?customer={n} HTTP/1.1\r\nHost: orders.shop\r\nUser-Agent: bench/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{close}\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        } else {
            format!("GET /api/v1/items/{n}?page={} HTTP/1.1\r\nHost: catalogue.shop\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n{close}\r\n", n % 7)
                .into_bytes()
        };
        w.send(c, true, &request)?;
        let status = if rng.u8(0..20) == 0 {
            "404 Not Found"
        } else {
            "200 OK"
        };
        let body = &filler[..body_size(&mut rng)];
        let mut response;
        if rng.u8(0..10) == 0 {
            response = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n{close}\r\n").into_bytes();
            for part in body.chunks(4096) {
                response.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                response.extend_from_slice(part);
                response.extend_from_slice(b"\r\n");
            }
            response.extend_from_slice(b"0\r\n\r\n");
        } else {
            response = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{close}\r\n", body.len()).into_bytes();
            response.extend_from_slice(body);
        }
        w.send(c, false, &response)?;
        done += 1;
        if last {
            let mut c = conns.swap_remove(i);
            w.packet(&c, false, "FA", &[])?;
            c.sseq = c.sseq.wrapping_add(1);
            w.packet(&c, true, "FA", &[])?;
            c.cseq = c.cseq.wrapping_add(1);
            w.packet(&c, false, "A", &[])?;
        }
    }
    // Close what is still open so every transaction is complete.
    for mut c in conns {
        w.packet(&c, true, "FA", &[])?;
        c.cseq = c.cseq.wrapping_add(1);
        w.packet(&c, false, "FA", &[])?;
        c.sseq = c.sseq.wrapping_add(1);
        w.packet(&c, true, "A", &[])?;
    }
    let packets = w.packets;
    let mut inner = w.pcap.into_writer();
    inner.flush()?;
    let bytes = std::fs::metadata(path)?.len();
    Ok(Summary { packets, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use pcap_file::pcap::PcapReader;

    #[test]
    fn every_frame_is_ethernet_ipv4_tcp_and_the_summary_counts_them() {
        let dir = crate::TempDir::new("synth-bulk");
        let path = dir.join("bulk.pcap");
        let summary = generate(&path, 200, 7).unwrap();
        let mut reader = PcapReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let (mut packets, mut syns) = (0u64, 0u64);
        while let Some(p) = reader.next_packet() {
            let p = p.unwrap();
            let sliced = SlicedPacket::from_ethernet(&p.data).unwrap();
            assert!(matches!(sliced.net, Some(NetSlice::Ipv4(_))));
            let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
                panic!("not TCP")
            };
            syns += u64::from(tcp.syn() && !tcp.ack());
            packets += 1;
        }
        assert_eq!(packets, summary.packets);
        assert!(syns > 0 && syns <= 200, "{syns} connections opened");
        // Deterministic per seed.
        let again = dir.join("again.pcap");
        generate(&again, 200, 7).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap()
        );
    }
}
