//! Flows no dissector claims still become entries: `tcp` for connections,
//! `udp` for datagram flows, with bytes and packets each way, the duration and
//! how the flow ended.

use etherparse::PacketBuilder;
use proto::v1::{Entry, Protocol, StreamSide, request, response};
use tap_worker::capture::{Packet, link};
use tap_worker::{Pipeline, PipelineConfig};
use testkit::conversation::{Conversation, Link, Peer, run};

fn sides(e: &Entry) -> (&StreamSide, &StreamSide) {
    match (
        e.request.as_ref().and_then(|r| r.kind.as_ref()),
        e.response.as_ref().and_then(|r| r.kind.as_ref()),
    ) {
        (Some(request::Kind::Stream(up)), Some(response::Kind::Stream(down))) => (up, down),
        other => panic!("not a stream entry: {other:?}"),
    }
}

#[test]
fn binary_tcp_connection_becomes_a_tcp_entry() {
    let mut c = Conversation::open();
    c.send(Peer::Client, &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .send(Peer::Server, &[0xAB; 300])
        .send(Peer::Client, &[0xCD; 20])
        .close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));
    assert_eq!(r.entries.len(), 1, "{:?}", r.entries);
    let e = &r.entries[0];
    assert_eq!(e.protocol, Protocol::Tcp as i32);
    let (up, down) = sides(e);
    assert_eq!((up.bytes, down.bytes), (30, 300));
    assert_eq!(down.ended, "fin");
    assert!(up.packets >= 2 && down.packets >= 1, "{up:?} {down:?}");
    assert!(e.elapsed_ns.is_some_and(|d| d > 0));
    assert_eq!(r.stats.unclaimed_connections, 1);
    let json: serde_json::Value = serde_json::to_value(tap_dissect::json::EntryJson(e)).unwrap();
    assert_eq!(json["protocol"], "tcp");
    assert_eq!(json["request"]["bytes"], 30);
    assert_eq!(json["response"]["ended"], "fin");
}

#[test]
fn connection_without_data_is_still_a_tcp_entry() {
    let mut c = Conversation::open();
    c.close(Peer::Server);
    let r = run(&c.frames(Link::Ethernet));
    assert_eq!(r.entries.len(), 1);
    let (up, down) = sides(&r.entries[0]);
    assert_eq!((up.bytes, down.bytes, down.ended.as_str()), (0, 0, "fin"));
}

fn udp(from_client: bool, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sp, dp) = if from_client {
        ([10, 0, 0, 1], [10, 0, 0, 2], 40000, 9999)
    } else {
        ([10, 0, 0, 2], [10, 0, 0, 1], 9999, 40000)
    };
    let b = PacketBuilder::ipv4(src, dst, 64).udp(sp, dp);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

#[test]
fn udp_flow_becomes_a_udp_entry() {
    let packets = [
        udp(true, b"ping one"),
        udp(false, b"pong"),
        udp(true, b"ping two!"),
    ];
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut entries = Vec::new();
    for (i, data) in packets.iter().enumerate() {
        let pkt = Packet {
            ts_ns: 1_000_000_000 + i as u64 * 1_000_000,
            link: link::RAW,
            data,
            orig_len: data.len() as u32,
        };
        p.packet(&pkt, &mut entries);
    }
    p.finish(&mut entries);
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.protocol, Protocol::Udp as i32);
    assert_eq!(e.src.as_ref().unwrap().port, 40000);
    let (up, down) = sides(e);
    assert_eq!(
        (up.bytes, up.packets, down.bytes, down.packets),
        (17, 2, 4, 1)
    );
    assert_eq!(down.ended, "capture_end");
    assert_eq!(e.elapsed_ns, Some(2_000_000));
}
