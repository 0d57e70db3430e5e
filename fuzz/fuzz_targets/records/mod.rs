//! The input format the connection fuzz targets share: arbitrary bytes read as
//! records (a control byte, bit 0 the direction and bit 7 a gap of bits 0-5
//! bytes; a length byte; that many bytes), fed in order to one connection's
//! handler, which is then closed.

use std::net::SocketAddr;
use tap_dissect::{Connection, Dissector, Emit};
use tap_dissect::flow::{CloseReason, Direction, FlowEnd, FlowHandler, FlowInfo};

/// Connection 1, from port 40000 of `client` to `server`, first seen at 0.
pub fn flow(client: [u8; 4], server: ([u8; 4], u16), midstream: bool) -> FlowInfo {
    FlowInfo {
        id: 1,
        client: SocketAddr::from((client, 40000)),
        server: SocketAddr::from(server),
        first_ts_ns: 0,
        midstream,
        tls: false,
        outer: None,
    }
}

/// What the records drive: one dissector, or the whole per-flow handler.
pub trait Handler {
    fn data(&mut self, flow: &FlowInfo, dir: Direction, ts: u64, bytes: &[u8], out: &mut Vec<Emit>);
    fn gap(&mut self, flow: &FlowInfo, dir: Direction, ts: u64, len: u64, out: &mut Vec<Emit>);
    fn close(&mut self, flow: &FlowInfo, end: &FlowEnd, out: &mut Vec<Emit>);
}

// The same three calls, under `Dissector` for one and `FlowHandler` for the other.
macro_rules! handler {
    ($($t:ty),*) => {$(
        impl Handler for $t {
            fn data(&mut self, flow: &FlowInfo, dir: Direction, ts: u64, bytes: &[u8], out: &mut Vec<Emit>) {
                self.on_data(flow, dir, ts, bytes, out);
            }
            fn gap(&mut self, flow: &FlowInfo, dir: Direction, ts: u64, len: u64, out: &mut Vec<Emit>) {
                self.on_gap(flow, dir, ts, len, out);
            }
            fn close(&mut self, flow: &FlowInfo, end: &FlowEnd, out: &mut Vec<Emit>) {
                self.on_close(flow, end, out);
            }
        }
    )*};
}

handler!(Box<dyn Dissector>, Connection);

/// Feeds the records in `data` to `h`, the n-th at n * 1000 ns (a short last
/// record is cut to what is there), then closes the connection by FIN at the
/// last record's time.
pub fn drive(h: &mut impl Handler, flow: &FlowInfo, data: &[u8], out: &mut Vec<Emit>) {
    let mut rest = data;
    let mut ts = 0;
    while rest.len() >= 2 {
        let (ctl, len) = (rest[0], usize::from(rest[1]).min(rest.len() - 2));
        let chunk = &rest[2..2 + len];
        rest = &rest[2 + len..];
        ts += 1000;
        let dir = if ctl & 1 == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        if ctl & 0x80 != 0 {
            h.gap(flow, dir, ts, u64::from(ctl & 0x3f), out);
        } else {
            h.data(flow, dir, ts, chunk, out);
        }
    }
    let end = FlowEnd {
        ts_ns: ts,
        reason: CloseReason::Fin,
        packets: [0; 2],
        bytes: [0; 2],
    };
    h.close(flow, &end, out);
}
