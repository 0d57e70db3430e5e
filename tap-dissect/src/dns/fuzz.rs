//! Arbitrary bytes as DNS datagrams and as the two directions of a DNS-over-TCP
//! connection, split at arbitrary points, with gaps: the dissector must never
//! panic or hang (compression loops), and never make more entries than it was
//! given messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use tap_dissect::{DissectConfig, Emit, dns};
use tap_dissect::flow::{CloseReason, Direction, FlowEnd, FlowInfo};

fuzz_target!(|data: &[u8]| {
    let flow = FlowInfo {
        id: 1,
        client: SocketAddr::from(([10, 0, 0, 1], 40000)),
        server: SocketAddr::from(([10, 0, 0, 2], 53)),
        first_ts_ns: 0,
        midstream: data.first().is_some_and(|b| b & 1 == 1),
        tls: false,
        outer: None,
    };
    let config = DissectConfig { max_pending: 4, ..Default::default() };
    let mut udp = dns::new_datagram(&flow, &config);
    let mut tcp = dns::new(&flow, &config, None);
    let (mut udp_out, mut tcp_out) = (Vec::new(), Vec::new());
    // Records: control byte (direction, gap), two length bytes, bytes. Each
    // record is one datagram, and one TCP chunk (or a gap).
    let mut rest = data;
    let mut ts = 0;
    let mut datagrams = 0;
    while rest.len() >= 3 {
        let ctl = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let chunk = &rest[3..3 + len];
        rest = &rest[3 + len..];
        ts += 1000;
        let dir = if ctl & 1 == 0 { Direction::ToServer } else { Direction::ToClient };
        let _ = dns::probe_datagram(dir, chunk);
        let _ = dns::probe(dir, chunk, ctl & 2 != 0);
        udp.on_datagram(&flow, dir, ts, chunk, &mut udp_out);
        datagrams += 1;
        if ctl & 0x80 != 0 {
            tcp.on_gap(&flow, dir, ts, u64::from(ctl & 0x3f), &mut tcp_out);
        } else {
            tcp.on_data(&flow, dir, ts, chunk, &mut tcp_out);
        }
    }
    let end = FlowEnd { ts_ns: ts, reason: CloseReason::Fin, packets: [0; 2], bytes: [0; 2] };
    udp.on_close(&flow, &end, &mut udp_out);
    tcp.on_close(&flow, &end, &mut tcp_out);
    let entries = udp_out.iter().filter(|e| matches!(e, Emit::Entry(_))).count();
    assert!(entries <= datagrams, "{entries} entries from {datagrams} datagrams");
    // A TCP message takes at least its two-byte length.
    let tcp_entries = tcp_out.iter().filter(|e| matches!(e, Emit::Entry(_))).count();
    assert!(tcp_entries <= data.len() / 2);
});
