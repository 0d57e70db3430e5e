//! AMQP 0-9-1 (RabbitMQ's protocol): method frames, and the content (a header
//! frame and body frames) after basic.publish, basic.deliver, basic.get-ok and
//! basic.return, assembled into one message.
//!
//! The client opens with the protocol header `AMQP\0\0\x09\x01`; after it both
//! sides send frames: type (1 method, 2 content header, 3 body, 8 heartbeat),
//! channel, a 4-byte size, the payload and the frame-end octet 0xCE. Pairing
//! is per channel and in order: a synchronous method (queue.declare,
//! basic.get, connection.tune, … whichever side sends it) waits in its
//! channel's queue for the other side's reply (queue.declare-ok,
//! basic.get-ok or get-empty, connection.tune-ok); asynchronous ones (publish,
//! deliver, ack, nack, reject, return) and synchronous ones sent with
//! no-wait are entries of their own.
//!
//! The parser is ours rather than `amq-protocol`'s: that crate's nom parser
//! wants a whole frame in one buffer, so a body frame of the negotiated
//! frame_max (or a hostile size) would be held before it is looked at, and it
//! decodes every field table into maps (wire order lost). Here a frame's size
//! is checked against the negotiated frame_max (at most [`MAX_FRAME`]) before
//! anything else; method and header frames are buffered only up to the head
//! cap, body frames stream through with only the body cap kept. A bad frame
//! (unknown type, size over the limit, missing frame end) reports one parse
//! error and starts a resynchronisation at the next complete well-formed frame.

pub mod json;
pub mod model;

use super::{Claim, DissectConfig, Dissector, Emit, Handoff};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{self, Message};
use proto::v1::{AmqpMethod, Body, Header, Protocol, Request, Response, request, response};
use std::collections::{HashMap, VecDeque};

/// The protocol header a client sends first.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
const FRAME_END: u8 = 0xCE;
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
/// Largest frame accepted before frame_max is negotiated (and the ceiling of
/// what a negotiation may raise it to); RabbitMQ's own ceiling is 128 MiB.
const MAX_FRAME: u64 = 128 << 20;
/// Largest frame a resynchronisation or mid-stream probe accepts as a start.
const RESYNC_FRAME: usize = 64 << 10;
/// Field-table entries kept per table, and characters per value.
const MAX_TABLE: usize = 64;
const MAX_VALUE: usize = 1024;
/// Channels with content being assembled at once, per direction.
const MAX_ASSEMBLING: usize = 64;

/// How a method takes part in pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Waits for the other side's reply.
    Sync,
    /// Answers the oldest synchronous method the other side sent on its channel.
    Reply,
    /// An entry of its own.
    Async,
}

/// Every method of AMQP 0-9-1: class id, method id, name, kind.
const METHODS: &[(u16, u16, &str, Kind)] = &[
    (10, 10, "connection.start", Kind::Sync),
    (10, 11, "connection.start-ok", Kind::Reply),
    (10, 20, "connection.secure", Kind::Sync),
    (10, 21, "connection.secure-ok", Kind::Reply),
    (10, 30, "connection.tune", Kind::Sync),
    (10, 31, "connection.tune-ok", Kind::Reply),
    (10, 40, "connection.open", Kind::Sync),
    (10, 41, "connection.open-ok", Kind::Reply),
    (10, 50, "connection.close", Kind::Sync),
    (10, 51, "connection.close-ok", Kind::Reply),
    (10, 60, "connection.blocked", Kind::Async),
    (10, 61, "connection.unblocked", Kind::Async),
    (10, 70, "connection.update-secret", Kind::Sync),
    (10, 71, "connection.update-secret-ok", Kind::Reply),
    (20, 10, "channel.open", Kind::Sync),
    (20, 11, "channel.open-ok", Kind::Reply),
    (20, 20, "channel.flow", Kind::Sync),
    (20, 21, "channel.flow-ok", Kind::Reply),
    (20, 40, "channel.close", Kind::Sync),
    (20, 41, "channel.close-ok", Kind::Reply),
    (40, 10, "exchange.declare", Kind::Sync),
    (40, 11, "exchange.declare-ok", Kind::Reply),
    (40, 20, "exchange.delete", Kind::Sync),
    (40, 21, "exchange.delete-ok", Kind::Reply),
    (40, 30, "exchange.bind", Kind::Sync),
    (40, 31, "exchange.bind-ok", Kind::Reply),
    (40, 40, "exchange.unbind", Kind::Sync),
    (40, 51, "exchange.unbind-ok", Kind::Reply),
    (50, 10, "queue.declare", Kind::Sync),
    (50, 11, "queue.declare-ok", Kind::Reply),
    (50, 20, "queue.bind", Kind::Sync),
    (50, 21, "queue.bind-ok", Kind::Reply),
    (50, 30, "queue.purge", Kind::Sync),
    (50, 31, "queue.purge-ok", Kind::Reply),
    (50, 40, "queue.delete", Kind::Sync),
    (50, 41, "queue.delete-ok", Kind::Reply),
    (50, 50, "queue.unbind", Kind::Sync),
    (50, 51, "queue.unbind-ok", Kind::Reply),
    (60, 10, "basic.qos", Kind::Sync),
    (60, 11, "basic.qos-ok", Kind::Reply),
    (60, 20, "basic.consume", Kind::Sync),
    (60, 21, "basic.consume-ok", Kind::Reply),
    (60, 30, "basic.cancel", Kind::Sync),
    (60, 31, "basic.cancel-ok", Kind::Reply),
    (60, 40, "basic.publish", Kind::Async),
    (60, 50, "basic.return", Kind::Async),
    (60, 60, "basic.deliver", Kind::Async),
    (60, 70, "basic.get", Kind::Sync),
    (60, 71, "basic.get-ok", Kind::Reply),
    (60, 72, "basic.get-empty", Kind::Reply),
    (60, 80, "basic.ack", Kind::Async),
    (60, 90, "basic.reject", Kind::Async),
    (60, 100, "basic.recover-async", Kind::Async),
    (60, 110, "basic.recover", Kind::Sync),
    (60, 111, "basic.recover-ok", Kind::Reply),
    (60, 120, "basic.nack", Kind::Async),
    (85, 10, "confirm.select", Kind::Sync),
    (85, 11, "confirm.select-ok", Kind::Reply),
    (90, 10, "tx.select", Kind::Sync),
    (90, 11, "tx.select-ok", Kind::Reply),
    (90, 20, "tx.commit", Kind::Sync),
    (90, 21, "tx.commit-ok", Kind::Reply),
    (90, 30, "tx.rollback", Kind::Sync),
    (90, 31, "tx.rollback-ok", Kind::Reply),
];

fn class_name(class: u16) -> Option<&'static str> {
    Some(match class {
        10 => "connection",
        20 => "channel",
        40 => "exchange",
        50 => "queue",
        60 => "basic",
        85 => "confirm",
        90 => "tx",
        _ => return None,
    })
}

fn lookup(class: u16, method: u16) -> Option<(&'static str, Kind)> {
    METHODS
        .iter()
        .find(|m| m.0 == class && m.1 == method)
        .map(|m| (m.2, m.3))
}

/// Methods followed by a content header and body frames.
fn has_content(class: u16, method: u16) -> bool {
    class == 60 && matches!(method, 40 | 50 | 60 | 71)
}

/// Claims a stream that starts with the protocol header (client) or with a
/// connection.start frame (server); mid-stream, two consecutive well-formed
/// frames starting anywhere in the first bytes.
pub fn probe(dir: Direction, first: &[u8], midstream: bool) -> Claim {
    let n = first.len().min(PROTOCOL_HEADER.len());
    if dir == Direction::ToServer && first[..n] == PROTOCOL_HEADER[..n] {
        return if n == PROTOCOL_HEADER.len() {
            Claim::Yes
        } else {
            Claim::NeedMore
        };
    }
    const START: &[u8] = &[FRAME_METHOD, 0, 0];
    if dir == Direction::ToClient && first.len() >= 11 && first.starts_with(START) {
        if first[7..11] == [0, 10, 0, 10] {
            return match frame_at(first, 0) {
                Framed::Yes(_) => Claim::Yes,
                Framed::NeedMore => Claim::NeedMore,
                Framed::No => Claim::No,
            };
        }
    } else if dir == Direction::ToClient
        && first.len() < 11
        && (first.starts_with(START) || START.starts_with(first))
    {
        return Claim::NeedMore;
    }
    if !midstream {
        return Claim::No;
    }
    // Waiting is worth it only for a complete first frame whose successor
    // has not arrived: a mere size field promising bytes to come would hold
    // back every other protocol's probe.
    let mut need_more = false;
    for at in 0..first.len() {
        match run_at(first, at) {
            Framed::Yes(_) => return Claim::Yes,
            Framed::NeedMore if matches!(frame_at(first, at), Framed::Yes(_)) => need_more = true,
            _ => {}
        }
    }
    if need_more {
        Claim::NeedMore
    } else {
        Claim::No
    }
}

/// Whether a complete, well-formed frame starts at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framed {
    /// Yes: its length with header and frame end.
    Yes(usize),
    No,
    NeedMore,
}

fn frame_at(b: &[u8], at: usize) -> Framed {
    let Some(h) = b.get(at..at + 7) else {
        return if b.len() > at && !matches!(b[at], 1 | 2 | 3 | 8) {
            Framed::No
        } else {
            Framed::NeedMore
        };
    };
    let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
    let shape = match h[0] {
        FRAME_HEARTBEAT => size == 0 && h[1] == 0 && h[2] == 0,
        FRAME_METHOD => (4..=RESYNC_FRAME).contains(&size),
        FRAME_HEADER => (14..=RESYNC_FRAME).contains(&size),
        FRAME_BODY => size <= RESYNC_FRAME,
        _ => false,
    };
    if !shape {
        return Framed::No;
    }
    let Some(&end) = b.get(at + 7 + size) else {
        return Framed::NeedMore;
    };
    if end != FRAME_END {
        return Framed::No;
    }
    if h[0] == FRAME_METHOD {
        let class = u16::from_be_bytes([b[at + 7], b[at + 8]]);
        let method = u16::from_be_bytes([b[at + 9], b[at + 10]]);
        if lookup(class, method).is_none() {
            return Framed::No;
        }
    }
    Framed::Yes(8 + size)
}

/// Two well-formed frames in a row at `at`.
fn run_at(b: &[u8], at: usize) -> Framed {
    match frame_at(b, at) {
        Framed::Yes(n) => match frame_at(b, at + n) {
            Framed::Yes(m) => Framed::Yes(n + m),
            other => other,
        },
        other => other,
    }
}

/// A cursor over a method or header frame's payload; `None` when it ends too soon.
struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn shortstr(&mut self) -> Option<String> {
        let n = self.u8()? as usize;
        Some(text(self.take(n)?))
    }
    fn longstr(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A field table, its entries appended to `out` as `prefix` + name.
    fn table(&mut self, prefix: &str, out: &mut Vec<Header>) -> Option<()> {
        let body = self.longstr()?;
        let mut t = Reader { b: body, i: 0 };
        while t.i < body.len() {
            let name = t.shortstr()?;
            let value = t.value()?;
            if out.len() < MAX_TABLE {
                out.push(header(format!("{prefix}{name}"), value));
            }
        }
        Some(())
    }
    /// One field value (RabbitMQ's type letters), as text.
    fn value(&mut self) -> Option<String> {
        Some(match self.u8()? {
            b't' => (self.u8()? != 0).to_string(),
            b'b' => (self.u8()? as i8).to_string(),
            b'B' => self.u8()?.to_string(),
            b's' => (self.u16()? as i16).to_string(),
            b'u' => self.u16()?.to_string(),
            b'I' => (self.u32()? as i32).to_string(),
            b'i' => self.u32()?.to_string(),
            b'l' => (self.u64()? as i64).to_string(),
            b'T' => self.u64()?.to_string(),
            b'f' => f32::from_bits(self.u32()?).to_string(),
            b'd' => f64::from_bits(self.u64()?).to_string(),
            b'D' => {
                let scale = self.u8()?;
                let v = self.u32()?;
                format!("{v}e-{scale}")
            }
            b'S' | b'x' => text(self.longstr()?),
            b'A' => {
                self.longstr()?;
                "(array)".into()
            }
            b'F' => {
                self.longstr()?;
                "(table)".into()
            }
            b'V' => String::new(),
            _ => return None,
        })
    }
}

/// Text of at most [`MAX_VALUE`] bytes, invalid UTF-8 replaced.
fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(MAX_VALUE)]).into_owned()
}

fn header(name: impl Into<String>, value: impl Into<String>) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

/// A decoded method frame.
#[derive(Debug)]
struct Decoded {
    class: u16,
    method: u16,
    kind: Kind,
    no_wait: bool,
    body: AmqpMethod,
}

/// Decodes a method frame's payload; `Err` when its arguments do not fit it.
fn decode_method(channel: u16, payload: &[u8]) -> Result<Decoded, &'static str> {
    let mut r = Reader { b: payload, i: 0 };
    let class = r.u16().ok_or("short method frame")?;
    let method = r.u16().ok_or("short method frame")?;
    let (name, kind) = lookup(class, method).ok_or("unknown method")?;
    let mut m = AmqpMethod {
        channel: u32::from(channel),
        class: class_name(class).unwrap_or_default().to_string(),
        method: name.to_string(),
        ..Default::default()
    };
    let no_wait = arguments(class, method, &mut r, &mut m).ok_or("method arguments cut short")?;
    m.path = if !m.queue.is_empty() && (class == 50 || matches!((class, method), (60, 20 | 70))) {
        m.queue.clone()
    } else if !m.exchange.is_empty() || !m.routing_key.is_empty() {
        format!("{}/{}", m.exchange, m.routing_key)
    } else {
        m.queue.clone()
    };
    Ok(Decoded {
        class,
        method,
        kind,
        no_wait,
        body: m,
    })
}

/// Reads the arguments the entry shows; returns the no-wait bit.
fn arguments(class: u16, method: u16, r: &mut Reader, m: &mut AmqpMethod) -> Option<bool> {
    let args = &mut m.arguments;
    let flag = |args: &mut Vec<Header>, bits: u8, i: u8, name: &str| {
        args.push(header(name, (bits >> i & 1 == 1).to_string()));
    };
    let mut no_wait = false;
    match (class, method) {
        (10, 10) => {
            let (major, minor) = (r.u8()?, r.u8()?);
            args.push(header("version", format!("{major}-{minor}")));
            r.table("server_properties.", args)?;
            args.push(header("mechanisms", text(r.longstr()?)));
            args.push(header("locales", text(r.longstr()?)));
        }
        (10, 11) => {
            r.table("client_properties.", args)?;
            args.push(header("mechanism", r.shortstr()?));
            // The response holds the credentials: skipped, never kept.
            r.longstr()?;
            args.push(header("locale", r.shortstr()?));
        }
        (10, 30) | (10, 31) => {
            args.push(header("channel_max", r.u16()?.to_string()));
            args.push(header("frame_max", r.u32()?.to_string()));
            args.push(header("heartbeat", r.u16()?.to_string()));
        }
        (10, 40) => args.push(header("virtual_host", r.shortstr()?)),
        (10, 50) | (20, 40) => {
            m.reply_code = u32::from(r.u16()?);
            m.reply_text = r.shortstr()?;
            let (c, i) = (r.u16()?, r.u16()?);
            if let Some((name, _)) = lookup(c, i) {
                m.arguments.push(header("failing_method", name));
            }
        }
        (10, 60) => args.push(header("reason", r.shortstr()?)),
        (20, 20) | (20, 21) => flag(args, r.u8()?, 0, "active"),
        (40, 10) => {
            r.u16()?;
            m.exchange = r.shortstr()?;
            args.push(header("type", r.shortstr()?));
            let bits = r.u8()?;
            for (i, name) in ["passive", "durable", "auto_delete", "internal"]
                .iter()
                .enumerate()
            {
                flag(args, bits, i as u8, name);
            }
            no_wait = bits >> 4 & 1 == 1;
            r.table("arguments.", args)?;
        }
        (40, 20) => {
            r.u16()?;
            m.exchange = r.shortstr()?;
            let bits = r.u8()?;
            flag(args, bits, 0, "if_unused");
            no_wait = bits >> 1 & 1 == 1;
        }
        (40, 30) | (40, 40) => {
            r.u16()?;
            args.push(header("destination", r.shortstr()?));
            m.exchange = r.shortstr()?;
            m.routing_key = r.shortstr()?;
            no_wait = r.u8()? & 1 == 1;
        }
        (50, 10) => {
            r.u16()?;
            m.queue = r.shortstr()?;
            let bits = r.u8()?;
            for (i, name) in ["passive", "durable", "exclusive", "auto_delete"]
                .iter()
                .enumerate()
            {
                flag(args, bits, i as u8, name);
            }
            no_wait = bits >> 4 & 1 == 1;
            r.table("arguments.", args)?;
        }
        (50, 11) => {
            m.queue = r.shortstr()?;
            args.push(header("message_count", r.u32()?.to_string()));
            args.push(header("consumer_count", r.u32()?.to_string()));
        }
        (50, 20) | (50, 50) => {
            r.u16()?;
            m.queue = r.shortstr()?;
            m.exchange = r.shortstr()?;
            m.routing_key = r.shortstr()?;
            if method == 20 {
                no_wait = r.u8()? & 1 == 1;
            }
        }
        (50, 30) | (50, 40) => {
            r.u16()?;
            m.queue = r.shortstr()?;
            let bits = r.u8()?;
            if method == 40 {
                flag(args, bits, 0, "if_unused");
                flag(args, bits, 1, "if_empty");
                no_wait = bits >> 2 & 1 == 1;
            } else {
                no_wait = bits & 1 == 1;
            }
        }
        (50, 31) | (50, 41) => args.push(header("message_count", r.u32()?.to_string())),
        (60, 10) => {
            args.push(header("prefetch_size", r.u32()?.to_string()));
            args.push(header("prefetch_count", r.u16()?.to_string()));
            flag(args, r.u8()?, 0, "global");
        }
        (60, 20) => {
            r.u16()?;
            m.queue = r.shortstr()?;
            m.consumer_tag = r.shortstr()?;
            let bits = r.u8()?;
            for (i, name) in ["no_local", "no_ack", "exclusive"].iter().enumerate() {
                flag(args, bits, i as u8, name);
            }
            no_wait = bits >> 3 & 1 == 1;
            r.table("arguments.", args)?;
        }
        (60, 21) | (60, 31) => m.consumer_tag = r.shortstr()?,
        (60, 30) => {
            m.consumer_tag = r.shortstr()?;
            no_wait = r.u8()? & 1 == 1;
        }
        (60, 40) => {
            r.u16()?;
            m.exchange = r.shortstr()?;
            m.routing_key = r.shortstr()?;
            let bits = r.u8()?;
            flag(args, bits, 0, "mandatory");
            flag(args, bits, 1, "immediate");
        }
        (60, 50) => {
            m.reply_code = u32::from(r.u16()?);
            m.reply_text = r.shortstr()?;
            m.exchange = r.shortstr()?;
            m.routing_key = r.shortstr()?;
        }
        (60, 60) => {
            m.consumer_tag = r.shortstr()?;
            m.delivery_tag = r.u64()?;
            flag(args, r.u8()?, 0, "redelivered");
            m.exchange = r.shortstr()?;
            m.routing_key = r.shortstr()?;
        }
        (60, 70) => {
            r.u16()?;
            m.queue = r.shortstr()?;
            flag(args, r.u8()?, 0, "no_ack");
        }
        (60, 71) => {
            m.delivery_tag = r.u64()?;
            flag(args, r.u8()?, 0, "redelivered");
            m.exchange = r.shortstr()?;
            m.routing_key = r.shortstr()?;
            args.push(header("message_count", r.u32()?.to_string()));
        }
        (60, 80) | (60, 90) | (60, 120) => {
            m.delivery_tag = r.u64()?;
            let bits = r.u8()?;
            match method {
                80 => flag(args, bits, 0, "multiple"),
                90 => flag(args, bits, 0, "requeue"),
                _ => {
                    flag(args, bits, 0, "multiple");
                    flag(args, bits, 1, "requeue");
                }
            }
        }
        (60, 100) | (60, 110) => flag(args, r.u8()?, 0, "requeue"),
        (85, 10) => no_wait = r.u8()? & 1 == 1,
        _ => {}
    }
    Some(no_wait)
}

/// Content properties in flag order (bit 15 first) and whether each is a short string.
const PROPERTIES: &[&str] = &[
    "content-type",
    "content-encoding",
    "headers",
    "delivery-mode",
    "priority",
    "correlation-id",
    "reply-to",
    "expiration",
    "message-id",
    "timestamp",
    "type",
    "user-id",
    "app-id",
    "cluster-id",
];

/// A content header frame: the body's size and the properties.
fn decode_content_header(payload: &[u8], out: &mut Vec<Header>) -> Option<u64> {
    let mut r = Reader { b: payload, i: 0 };
    r.u16()?;
    r.u16()?;
    let size = r.u64()?;
    let flags = r.u16()?;
    for (i, name) in PROPERTIES.iter().enumerate() {
        if flags >> (15 - i) & 1 == 0 {
            continue;
        }
        let value = match *name {
            "headers" => {
                r.table("headers.", out)?;
                continue;
            }
            "delivery-mode" | "priority" => r.u8()?.to_string(),
            "timestamp" => r.u64()?.to_string(),
            _ => r.shortstr()?,
        };
        out.push(header(*name, value));
    }
    Some(size)
}

/// A content-bearing method waiting for its header and body frames.
#[derive(Debug)]
struct Content {
    decoded: Decoded,
    msg: Message<()>,
    /// The body's size, once the header frame came.
    size: Option<u64>,
    received: u64,
    data: Vec<u8>,
    truncated: bool,
}

/// Where a direction's parser stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a frame's start (or, `at_start`, perhaps the protocol header).
    Frame,
    /// Inside a body frame of `channel`: `left` payload bytes to go, then
    /// the frame end.
    Body { channel: u16, left: u64 },
    /// Inside a frame too large to keep: `left` payload bytes to skip.
    Skip { left: u64 },
    /// Looking for the next well-formed frame after bytes that did not parse.
    Resync,
}

/// One direction of the connection.
#[derive(Debug)]
struct Side {
    buf: Vec<u8>,
    state: State,
    /// Capture time of the first byte in `buf` (or of the frame being streamed).
    ts: u64,
    /// Content being assembled, by channel.
    content: HashMap<u16, Content>,
    /// Flags for the next message (a gap before it).
    flags: Vec<String>,
}

impl Side {
    fn new(midstream: bool) -> Side {
        Side {
            buf: Vec::new(),
            state: if midstream {
                State::Resync
            } else {
                State::Frame
            },
            ts: 0,
            content: HashMap::new(),
            flags: Vec::new(),
        }
    }
}

/// A synchronous method waiting for its reply.
#[derive(Debug)]
struct Pending {
    from: Direction,
    class: u16,
    msg: Message<AmqpMethod>,
}

pub fn new(
    flow: &FlowInfo,
    config: &DissectConfig,
    handoff: Option<&Handoff>,
) -> Box<dyn Dissector> {
    Box::new(Amqp {
        config: config.clone(),
        sides: [Side::new(flow.midstream), Side::new(flow.midstream)],
        pending: HashMap::new(),
        waiting: 0,
        made: handoff.map_or(0, |h| h.entries_made),
        frame_max: MAX_FRAME,
    })
}

pub struct Amqp {
    config: DissectConfig,
    sides: [Side; 2],
    /// Synchronous methods waiting for replies, per channel, oldest first.
    pending: HashMap<u16, VecDeque<Pending>>,
    /// Methods in `pending`, all channels together (bounded by max_pending).
    waiting: usize,
    made: u64,
    /// The negotiated frame_max (connection.tune-ok), or [`MAX_FRAME`].
    frame_max: u64,
}

fn sender(dir: Direction) -> &'static str {
    match dir {
        Direction::ToServer => "client",
        Direction::ToClient => "server",
    }
}

fn add_flag(flags: &mut Vec<String>, flag: &str) {
    if !flags.iter().any(|f| f == flag) {
        flags.push(flag.to_string());
    }
}

impl Amqp {
    fn run(&mut self, flow: &FlowInfo, dir: Direction, ts_ns: u64, out: &mut Vec<Emit>) {
        let mut at = 0;
        loop {
            let side = &mut self.sides[dir.index()];
            let b = &side.buf[at..];
            if b.is_empty() {
                break;
            }
            match side.state {
                State::Resync => {
                    // The first complete frame, even past a start that
                    // could still become one (a size claiming bytes that
                    // never come would otherwise hold the stream).
                    let mut next = None;
                    for i in 0..b.len() {
                        match frame_at(b, i) {
                            Framed::Yes(_) => {
                                next = Some((i, true));
                                break;
                            }
                            Framed::NeedMore if next.is_none() => next = Some((i, false)),
                            _ => {}
                        }
                    }
                    match next {
                        Some((i, true)) => {
                            at += i;
                            side.state = State::Frame;
                        }
                        Some((i, false)) => {
                            at += i;
                            break;
                        }
                        None => at += b.len(),
                    }
                }
                State::Frame => {
                    if b.len() < 8 && PROTOCOL_HEADER.starts_with(b) {
                        break;
                    }
                    if b.starts_with(PROTOCOL_HEADER) {
                        at += PROTOCOL_HEADER.len();
                        continue;
                    }
                    if b.len() < 7 {
                        break;
                    }
                    let ty = b[0];
                    let channel = u16::from_be_bytes([b[1], b[2]]);
                    let size = u64::from(u32::from_be_bytes([b[3], b[4], b[5], b[6]]));
                    let reason = match ty {
                        _ if size > self.frame_max => Some("frame larger than frame_max"),
                        FRAME_HEARTBEAT if size != 0 => Some("heartbeat with a payload"),
                        FRAME_METHOD | FRAME_HEADER | FRAME_HEARTBEAT | FRAME_BODY => None,
                        _ => Some("unknown frame type"),
                    };
                    if let Some(reason) = reason {
                        self.parse_error(dir, reason, out);
                        at += 1;
                        continue;
                    }
                    if ty == FRAME_BODY {
                        at += 7;
                        side.state = State::Body {
                            channel,
                            left: size,
                        };
                        continue;
                    }
                    if size > self.config.max_head as u64 {
                        at += 7;
                        side.state = State::Skip { left: size };
                        self.parse_error(dir, "method or header frame over the head cap", out);
                        continue;
                    }
                    let size = size as usize;
                    if b.len() < 8 + size {
                        break;
                    }
                    if b[7 + size] != FRAME_END {
                        self.parse_error(dir, "missing frame end", out);
                        at += 1;
                        continue;
                    }
                    let payload = b[7..7 + size].to_vec();
                    at += 8 + size;
                    let ts = side.ts;
                    self.frame(flow, dir, ts, ty, channel, &payload, out);
                }
                State::Body { left, .. } | State::Skip { left } if left > 0 => {
                    let n = (b.len() as u64).min(left) as usize;
                    if let State::Body { channel, .. } = side.state {
                        self.body(dir, channel, n as u64, Some(at));
                    }
                    at += n;
                    let side = &mut self.sides[dir.index()];
                    side.state = match side.state {
                        State::Body { channel, left } => State::Body {
                            channel,
                            left: left - n as u64,
                        },
                        State::Skip { left } => State::Skip {
                            left: left - n as u64,
                        },
                        s => s,
                    };
                }
                State::Body { .. } | State::Skip { .. } => {
                    let channel = match side.state {
                        State::Body { channel, .. } => Some(channel),
                        _ => None,
                    };
                    if b[0] == FRAME_END {
                        at += 1;
                        side.state = State::Frame;
                        side.ts = ts_ns;
                        if let Some(c) = channel {
                            self.content_done(flow, dir, c, out);
                        }
                    } else {
                        self.parse_error(dir, "missing frame end", out);
                    }
                }
            }
            if at > 0 && self.sides[dir.index()].state == State::Frame {
                // Later frames in the buffer arrived with this call.
                self.sides[dir.index()].ts = ts_ns;
            }
        }
        let side = &mut self.sides[dir.index()];
        side.buf.drain(..at.min(side.buf.len()));
    }

    /// Bytes that do not parse: one error, then a resynchronisation.
    fn parse_error(&mut self, dir: Direction, reason: &str, out: &mut Vec<Emit>) {
        let side = &mut self.sides[dir.index()];
        side.state = State::Resync;
        add_flag(&mut side.flags, "gap");
        out.push(Emit::ParseError {
            protocol: "amqp",
            reason: reason.to_string(),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts: u64,
        ty: u8,
        channel: u16,
        payload: &[u8],
        out: &mut Vec<Emit>,
    ) {
        let wire = payload.len() as u64 + 8;
        match ty {
            FRAME_METHOD => match decode_method(channel, payload) {
                Ok(d) => {
                    let side = &mut self.sides[dir.index()];
                    // A method ends any content still assembled on its channel.
                    if let Some(c) = side.content.remove(&channel) {
                        self.finish_content(flow, dir, c, true, out);
                    }
                    let side = &mut self.sides[dir.index()];
                    let msg = Message {
                        ts_ns: ts,
                        wire_size: wire,
                        flags: std::mem::take(&mut side.flags),
                        body: (),
                    };
                    if has_content(d.class, d.method) {
                        if side.content.len() >= MAX_ASSEMBLING {
                            out.push(Emit::Dropped {
                                protocol: "amqp",
                                what: "content",
                            });
                            return;
                        }
                        side.content.insert(
                            channel,
                            Content {
                                decoded: d,
                                msg,
                                size: None,
                                received: 0,
                                data: Vec::new(),
                                truncated: false,
                            },
                        );
                    } else {
                        self.method(flow, dir, d, msg, out);
                    }
                }
                Err(reason) => {
                    // The frame itself was well-formed: the stream stays in step.
                    out.push(Emit::ParseError {
                        protocol: "amqp",
                        reason: reason.to_string(),
                    });
                }
            },
            FRAME_HEADER => {
                let side = &mut self.sides[dir.index()];
                let Some(c) = side.content.get_mut(&channel) else {
                    out.push(Emit::ParseError {
                        protocol: "amqp",
                        reason: "content header without a method".into(),
                    });
                    return;
                };
                c.msg.wire_size += wire;
                match decode_content_header(payload, &mut c.decoded.body.properties) {
                    Some(size) => {
                        c.size = Some(size);
                        if size == 0 {
                            self.content_done(flow, dir, channel, out);
                        }
                    }
                    None => {
                        let c = side.content.remove(&channel);
                        out.push(Emit::ParseError {
                            protocol: "amqp",
                            reason: "malformed content header".into(),
                        });
                        if let Some(c) = c {
                            self.finish_content(flow, dir, c, true, out);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// `n` body bytes of `channel`, at `at` in the buffer (`None`: lost in a gap).
    fn body(&mut self, dir: Direction, channel: u16, n: u64, at: Option<usize>) {
        let max_body = self.config.max_body;
        let side = &mut self.sides[dir.index()];
        let Some(c) = side.content.get_mut(&channel) else {
            return;
        };
        c.received += n;
        c.msg.wire_size += n;
        match at {
            Some(at) => {
                let room = max_body.saturating_sub(c.data.len()).min(n as usize);
                c.data.extend_from_slice(&side.buf[at..at + room]);
                if room < n as usize {
                    c.truncated = true;
                }
            }
            None => {
                c.truncated = true;
                add_flag(&mut c.msg.flags, "gap");
            }
        }
    }

    /// A body frame ended: the content is complete once its size is reached.
    fn content_done(&mut self, flow: &FlowInfo, dir: Direction, channel: u16, out: &mut Vec<Emit>) {
        let side = &mut self.sides[dir.index()];
        let complete = side
            .content
            .get(&channel)
            .is_some_and(|c| c.size.is_some_and(|s| c.received >= s));
        if complete && let Some(c) = side.content.remove(&channel) {
            self.finish_content(flow, dir, c, false, out);
        }
    }

    fn finish_content(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        c: Content,
        cut: bool,
        out: &mut Vec<Emit>,
    ) {
        let Content {
            mut decoded,
            mut msg,
            data,
            received,
            mut truncated,
            size,
            ..
        } = c;
        truncated |= cut;
        if truncated {
            add_flag(&mut msg.flags, "truncated");
        }
        decoded.body.body = Some(Body {
            data,
            wire_size: size.unwrap_or(received).max(received),
            truncated,
            decoded_from: String::new(),
        });
        self.method(flow, dir, decoded, msg, out);
    }

    /// A whole method (with its content): paired, queued or emitted.
    fn method(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        d: Decoded,
        msg: Message<()>,
        out: &mut Vec<Emit>,
    ) {
        let mut m = d.body;
        m.sender = sender(dir).to_string();
        let channel = m.channel as u16;
        if (d.class, d.method) == (10, 31) {
            let frame_max = m
                .arguments
                .iter()
                .find(|h| h.name == "frame_max")
                .and_then(|h| h.value.parse::<u64>().ok())
                .unwrap_or(0);
            if frame_max != 0 {
                // Never below the spec's minimum, never above our ceiling.
                self.frame_max = frame_max.clamp(4096, MAX_FRAME);
            }
        }
        let msg = Message {
            ts_ns: msg.ts_ns,
            wire_size: msg.wire_size,
            flags: msg.flags,
            body: m,
        };
        match d.kind {
            Kind::Sync if !d.no_wait => {
                if self.waiting >= self.config.max_pending.max(1) {
                    // The oldest waiting method anywhere leaves as an entry of its own.
                    if let Some(old) = self
                        .pending
                        .values_mut()
                        .filter_map(|q| q.front().map(|p| p.msg.ts_ns))
                        .min()
                        .and_then(|ts| {
                            self.pending
                                .values_mut()
                                .find(|q| q.front().is_some_and(|p| p.msg.ts_ns == ts))
                        })
                        .and_then(VecDeque::pop_front)
                    {
                        self.waiting -= 1;
                        out.push(Emit::Dropped {
                            protocol: "amqp",
                            what: "pending method",
                        });
                        self.emit(flow, Some(old.msg), None, out);
                    }
                    self.pending.retain(|_, q| !q.is_empty());
                }
                self.pending.entry(channel).or_default().push_back(Pending {
                    from: dir,
                    class: d.class,
                    msg,
                });
                self.waiting += 1;
            }
            Kind::Reply => {
                let other = self.pending.get_mut(&channel).and_then(|q| {
                    let i = q.iter().position(|p| p.from != dir && p.class == d.class)?;
                    q.remove(i)
                });
                match other {
                    Some(p) => {
                        self.waiting -= 1;
                        self.emit(flow, Some(p.msg), Some(msg), out);
                    }
                    None => self.emit(flow, None, Some(msg), out),
                }
                if matches!((d.class, d.method), (20, 41) | (10, 51)) {
                    self.close_channel(flow, channel, d.class == 10, out);
                }
            }
            _ => {
                let (req, resp) = match dir {
                    Direction::ToServer => (Some(msg), None),
                    Direction::ToClient => (None, Some(msg)),
                };
                let mut e = self.entry(flow, req, resp);
                e.flags.retain(|f| f != "no_response" && f != "no_request");
                out.push(Emit::Entry(Box::new(e)));
            }
        }
    }

    /// A channel (or, `all`, the connection) closed: what still waits there
    /// gets no reply.
    fn close_channel(&mut self, flow: &FlowInfo, channel: u16, all: bool, out: &mut Vec<Emit>) {
        let mut channels: Vec<u16> = if all {
            self.pending.keys().copied().collect()
        } else {
            vec![channel]
        };
        channels.sort_unstable();
        for c in channels {
            if let Some(q) = self.pending.remove(&c) {
                for p in q {
                    self.waiting -= 1;
                    self.emit(flow, Some(p.msg), None, out);
                }
            }
        }
    }

    /// Emits the entry of a method and its reply.
    fn emit(
        &mut self,
        flow: &FlowInfo,
        req: Option<Message<AmqpMethod>>,
        resp: Option<Message<AmqpMethod>>,
        out: &mut Vec<Emit>,
    ) {
        let e = self.entry(flow, req, resp);
        out.push(Emit::Entry(Box::new(e)));
    }

    fn entry(
        &mut self,
        flow: &FlowInfo,
        req: Option<Message<AmqpMethod>>,
        resp: Option<Message<AmqpMethod>>,
    ) -> proto::v1::Entry {
        let wrap_req = |m: Message<AmqpMethod>| Message {
            ts_ns: m.ts_ns,
            wire_size: m.wire_size,
            flags: m.flags,
            body: Request {
                kind: Some(request::Kind::Amqp(Box::new(m.body))),
            },
        };
        let wrap_resp = |m: Message<AmqpMethod>| Message {
            ts_ns: m.ts_ns,
            wire_size: m.wire_size,
            flags: m.flags,
            body: Response {
                kind: Some(response::Kind::Amqp(Box::new(m.body))),
            },
        };
        let n = self.made;
        self.made += 1;
        let mut e = pair::entry(
            flow,
            n,
            Protocol::Amqp,
            req.map(wrap_req),
            resp.map(wrap_resp),
        );
        if let Some(request::Kind::Amqp(m)) = e.request.as_ref().and_then(|r| r.kind.as_ref()) {
            e.stream_id = u64::from(m.channel);
        } else if let Some(response::Kind::Amqp(m)) =
            e.response.as_ref().and_then(|r| r.kind.as_ref())
        {
            e.stream_id = u64::from(m.channel);
        }
        e
    }
}

impl Dissector for Amqp {
    fn on_data(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        let side = &mut self.sides[dir.index()];
        if side.buf.is_empty() {
            side.ts = ts_ns;
        }
        side.buf.extend_from_slice(data);
        self.run(flow, dir, ts_ns, out);
    }

    fn on_gap(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        _ts_ns: u64,
        len: u64,
        out: &mut Vec<Emit>,
    ) {
        let side = &mut self.sides[dir.index()];
        match side.state {
            // Bytes lost inside a body frame: the framing holds, the body is cut.
            State::Body { channel, left } if side.buf.is_empty() && len <= left => {
                side.state = State::Body {
                    channel,
                    left: left - len,
                };
                self.body(dir, channel, len, None);
            }
            State::Skip { left } if side.buf.is_empty() && len <= left => {
                side.state = State::Skip { left: left - len };
            }
            _ => {
                side.buf.clear();
                side.state = State::Resync;
                add_flag(&mut side.flags, "gap");
                let cut: Vec<Content> = side.content.drain().map(|(_, c)| c).collect();
                for mut c in cut {
                    add_flag(&mut c.msg.flags, "gap");
                    self.finish_content(flow, dir, c, true, out);
                }
            }
        }
    }

    fn on_close(&mut self, flow: &FlowInfo, _end: &FlowEnd, out: &mut Vec<Emit>) {
        for dir in [Direction::ToServer, Direction::ToClient] {
            let side = &mut self.sides[dir.index()];
            let mut cut: Vec<Content> = side.content.drain().map(|(_, c)| c).collect();
            cut.sort_by_key(|c| c.msg.ts_ns);
            for c in cut {
                self.finish_content(flow, dir, c, true, out);
            }
        }
        let mut left: Vec<Pending> = self.pending.drain().flat_map(|(_, q)| q).collect();
        left.sort_by_key(|p| p.msg.ts_ns);
        self.waiting = 0;
        for p in left {
            self.emit(flow, Some(p.msg), None, out);
        }
    }
}

#[cfg(test)]
mod tests;
