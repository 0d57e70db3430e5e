//! Arbitrary TCP segments (flags, sequence numbers, payloads, both directions)
//! through the reassembler; checks that what it delivers never exceeds what it
//! was given and that it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use tap_worker::decode::TcpSegment;
use tap_worker::reassembly::{Direction, FlowEnd, FlowHandler, FlowInfo, ReassemblyConfig, Reassembler};

struct Count;

impl FlowHandler for Count {
    type Out = u64;
    fn on_data(&mut self, _: &FlowInfo, _: Direction, _: u64, data: &[u8], out: &mut Vec<u64>) {
        out.push(data.len() as u64);
    }
    fn on_gap(&mut self, _: &FlowInfo, _: Direction, _: u64, _: u64, _: &mut Vec<u64>) {}
    fn on_close(&mut self, _: &FlowInfo, _: &FlowEnd, _: &mut Vec<u64>) {}
}

fuzz_target!(|data: &[u8]| {
    let config = ReassemblyConfig { max_flows: 4, max_flow_buffer: 4096, max_total_buffer: 8192, idle_timeout_ns: 1_000_000_000 };
    let mut r = Reassembler::new(config, |_: &FlowInfo| Count);
    let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let mut out = Vec::new();
    let mut given = 0u64;
    let mut ts = 0u64;
    // Each record: flags byte, port selector, 4-byte seq, 4-byte ack, length byte, then payload.
    let mut rest = data;
    while rest.len() >= 11 {
        let flags = rest[0];
        let port = 1000 + u16::from(rest[1] % 3);
        let seq = u32::from_le_bytes(rest[2..6].try_into().unwrap());
        let ack = u32::from_le_bytes(rest[6..10].try_into().unwrap());
        let len = usize::from(rest[10]).min(rest.len() - 11);
        let payload = &rest[11..11 + len];
        rest = &rest[11 + len..];
        ts += u64::from(flags) * 10_000_000;
        let to_server = flags & 1 == 0;
        let seg = TcpSegment {
            src_port: if to_server { port } else { 80 },
            dst_port: if to_server { 80 } else { port },
            seq,
            ack,
            syn: flags & 2 != 0,
            ack_flag: flags & 4 != 0,
            fin: flags & 8 != 0,
            rst: flags & 16 != 0,
            payload,
        };
        given += payload.len() as u64;
        let (src, dst) = if to_server { (a, b) } else { (b, a) };
        r.segment(ts, src, dst, &seg, None, &mut out);
    }
    r.finish(&mut out);
    let delivered: u64 = out.iter().sum();
    assert!(delivered <= given, "delivered {delivered} bytes of {given} given");
    assert_eq!(r.stats.buffered_bytes, 0, "buffers not released at finish");
});
