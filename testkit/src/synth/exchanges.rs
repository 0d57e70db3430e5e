//! Capture files of HTTP/1.1 exchanges whose every status and latency the
//! test knows, and what a hub must make of them (its service map's edges).

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// Capture time of the first packet; any fixed time does.
const START_NS: u64 = 1_790_000_000_000_000_000;
/// The servers every worker's clients call.
const SERVERS: [([u8; 4], u16); 3] = [
    ([10, 9, 0, 1], 80),
    ([10, 9, 0, 2], 8080),
    ([10, 9, 0, 3], 9090),
];
/// Client addresses per worker: 10.0.<worker>.1 to .3. Few, so that an
/// edge has enough exchanges for its percentiles to differ.
const CLIENTS: usize = 3;

/// One request and its response, as written to a capture.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub client: Ipv4Addr,
    pub client_port: u16,
    pub server: Ipv4Addr,
    pub server_port: u16,
    /// Unique per worker and exchange: `/shop/w<worker>/<n>`.
    pub path: String,
    pub status: u16,
    /// The response's packet time minus the request's, in ns; not whole
    /// microseconds, so the hub's rounding down is checked too.
    pub elapsed_ns: u64,
}

impl Exchange {
    pub fn elapsed_us(&self) -> u64 {
        self.elapsed_ns / 1000
    }

    pub fn is_error(&self) -> bool {
        self.status >= 500
    }
}

/// What to write: `exchanges` exchanges of clients 10.0.`worker`.x,
/// their connections starting evenly over `span` of capture time.
pub struct Spec {
    pub worker: u8,
    pub exchanges: usize,
    pub span: Duration,
}

impl Spec {
    pub fn new(worker: u8, exchanges: usize, span: Duration) -> Spec {
        Spec {
            worker,
            exchanges,
            span,
        }
    }
}

/// SplitMix64: deterministic, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Connection {
    client: [u8; 4],
    client_port: u16,
    server: [u8; 4],
    server_port: u16,
    client_seq: u32,
    server_seq: u32,
}

impl Connection {
    /// One TCP segment (flags of `SAFP`); advances the sender's sequence
    /// number past its payload, SYN and FIN.
    fn segment(&mut self, to_server: bool, flags: &str, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sport, dport, seq, ack) = if to_server {
            let c = (self.client, self.server, self.client_port, self.server_port);
            (c.0, c.1, c.2, c.3, self.client_seq, self.server_seq)
        } else {
            let c = (self.server, self.client, self.server_port, self.client_port);
            (c.0, c.1, c.2, c.3, self.server_seq, self.client_seq)
        };
        let mut out = Vec::with_capacity(64 + payload.len());
        let seg = super::Segment {
            src,
            dst,
            sport,
            dport,
            seq,
            ack,
        };
        super::tcp_frame(&mut out, &seg, flags, payload).expect("writing a packet to a Vec");
        let advance = payload.len() as u32 + u32::from(flags.contains('S') || flags.contains('F'));
        let next = if to_server {
            &mut self.client_seq
        } else {
            &mut self.server_seq
        };
        *next = next.wrapping_add(advance);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    }
}

/// Writes the capture (Ethernet, nanosecond pcap) and returns its
/// exchanges in the order written. Connections carry one to four
/// exchanges each (keep-alive) and overlap in time; every one has its
/// handshake and its FIN teardown. Statuses are 200, 404, 500 and 503;
/// latencies 100 µs to 50 ms.
pub fn write(path: &Path, spec: &Spec) -> Vec<Exchange> {
    let mut rng =
        Rng(0x6b75_6265_7461_7000 ^ (u64::from(spec.worker) << 32) ^ spec.exchanges as u64);
    let mut sizes = Vec::new();
    let mut left = spec.exchanges;
    while left > 0 {
        let k = (1 + rng.below(4) as usize).min(left);
        sizes.push(k);
        left -= k;
    }
    assert!(sizes.len() < 40_000, "more connections than client ports");
    let span_ns = u64::try_from(spec.span.as_nanos()).expect("a span of less than 584 years");
    let mut packets: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut exchanges = Vec::with_capacity(spec.exchanges);
    for (c, &k) in sizes.iter().enumerate() {
        let (server, server_port) = SERVERS[rng.below(SERVERS.len() as u64) as usize];
        let mut conn = Connection {
            client: [10, 0, spec.worker, 1 + (c % CLIENTS) as u8],
            client_port: 20_000 + c as u16,
            server,
            server_port,
            client_seq: rng.next() as u32,
            server_seq: rng.next() as u32,
        };
        let mut ts = START_NS + span_ns * c as u64 / sizes.len() as u64;
        packets.push((ts, conn.segment(true, "S", b"")));
        packets.push((ts + 30_000, conn.segment(false, "SA", b"")));
        packets.push((ts + 60_000, conn.segment(true, "A", b"")));
        ts += 100_000;
        for _ in 0..k {
            let path = format!("/shop/w{}/{}", spec.worker, exchanges.len());
            let status = match rng.below(10) {
                0 => 500,
                1 => 503,
                2 => 404,
                _ => 200,
            };
            let us = match rng.below(10) {
                0 => 5_000 + rng.below(45_000),
                1..=3 => 1_000 + rng.below(4_000),
                _ => 100 + rng.below(900),
            };
            let elapsed_ns = us * 1000 + rng.below(1000);
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: shop.local\r\nUser-Agent: kubetap-test\r\n\r\n"
            );
            let body = format!("{{\"path\":\"{path}\"}}");
            let response = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                reason(status),
                body.len()
            );
            packets.push((ts, conn.segment(true, "AP", request.as_bytes())));
            packets.push((
                ts + elapsed_ns,
                conn.segment(false, "AP", response.as_bytes()),
            ));
            packets.push((ts + elapsed_ns + 20_000, conn.segment(true, "A", b"")));
            exchanges.push(Exchange {
                client: conn.client.into(),
                client_port: conn.client_port,
                server: server.into(),
                server_port,
                path,
                status,
                elapsed_ns,
            });
            ts += elapsed_ns + 100_000 + rng.below(2_000) * 1000;
        }
        packets.push((ts, conn.segment(true, "FA", b"")));
        packets.push((ts + 30_000, conn.segment(false, "FA", b"")));
        packets.push((ts + 60_000, conn.segment(true, "A", b"")));
    }
    // Stable: a connection's packets keep their order.
    packets.sort_by_key(|p| p.0);
    let file = std::fs::File::create(path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        snaplen: 65_535,
        ..Default::default()
    };
    let mut pcap = PcapWriter::with_header(BufWriter::new(file), header).expect("pcap header");
    for (ts, data) in &packets {
        let p = PcapPacket::new(Duration::from_nanos(*ts), data.len() as u32, data);
        pcap.write_packet(&p).expect("writing a packet");
    }
    pcap.into_writer().flush().expect("flushing the capture");
    exchanges
}

/// An `http` edge of the service map as it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeStats {
    pub requests: u64,
    pub errors: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

/// The edges (`ip:<client>` → `ip:<server>:<port>`) `exchanges` make,
/// with nearest-rank latency percentiles in whole µs.
pub fn edges<'a>(
    exchanges: impl IntoIterator<Item = &'a Exchange>,
) -> BTreeMap<(String, String), EdgeStats> {
    let mut by_edge: BTreeMap<(String, String), Vec<&Exchange>> = BTreeMap::new();
    for x in exchanges {
        let key = (
            format!("ip:{}", x.client),
            format!("ip:{}:{}", x.server, x.server_port),
        );
        by_edge.entry(key).or_default().push(x);
    }
    by_edge
        .into_iter()
        .map(|(key, xs)| {
            let mut us: Vec<u64> = xs.iter().map(|x| x.elapsed_us()).collect();
            us.sort_unstable();
            let stats = EdgeStats {
                requests: xs.len() as u64,
                errors: xs.iter().filter(|x| x.is_error()).count() as u64,
                p50: nearest_rank(&us, 50),
                p95: nearest_rank(&us, 95),
                p99: nearest_rank(&us, 99),
                max: *us.last().expect("an edge has an exchange"),
            };
            (key, stats)
        })
        .collect()
}

/// The ⌈q·n/100⌉-th smallest of `sorted`.
pub fn nearest_rank(sorted: &[u64], q: usize) -> u64 {
    let rank = (q * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}
