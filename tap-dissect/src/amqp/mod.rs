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

mod decode;
pub mod json;
mod methods;
pub mod model;
mod probe;

use super::{Claim, DissectConfig, Dissector, Emit, Handoff};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{self, Message};
use decode::*;
use methods::*;
use probe::*;
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
