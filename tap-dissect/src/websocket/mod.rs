//! WebSocket (RFC 6455) on a connection an HTTP/1 `Upgrade: websocket` handed
//! over: the bytes after the server's 101 come here. A frame has no
//! recognisable start, so the probe never claims a stream by its content.
//!
//! Each direction is read frame by frame as its bytes arrive: a header of 2 to
//! 14 bytes (FIN, RSV1, opcode, mask bit, a 7-, 16- or 64-bit length, the
//! masking key), then the payload, unmasked as it streams by and kept up to the
//! body cap; nothing is allocated from a length field. Data frames (text,
//! binary and their continuations) are joined into messages; control frames
//! (close, ping, pong) may come between a message's fragments and are messages
//! of their own. Every message becomes one entry, numbered on from the HTTP
//! entries before the switch and tied to the upgrade request by its id: the
//! client's messages are the entry's request, the server's its response.
//!
//! permessage-deflate (RFC 7692): when the 101 agreed on it, a message sent
//! with RSV1 is inflated as it streams by, through one raw-deflate window per
//! direction kept from message to message (reset per message when the sender
//! agreed to no context takeover), at most [`MAX_INFLATED`] bytes per message.
//! A message that could not be inflated whole breaks a kept window, so the
//! sender's later compressed messages are shown as sent, flagged in
//! `inflated: false`.
//!
//! A capture gap inside a frame's payload is skipped, since the frame's length
//! says where the next one starts; a gap anywhere else, or a header no
//! endpoint would send, ends the parsing of that direction: WebSocket has no
//! marker to resynchronise on.

pub mod json;
pub mod model;

use super::{Claim, DissectConfig, Dissector, Emit, Handoff};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{self, Message};
use flate2::{Decompress, FlushDecompress, Status};
use proto::v1::{Header, Protocol, Request, Response, WebSocketMessage, request, response};

/// Longest frame payload accepted. Endpoints cap messages far lower (megabytes);
/// a longer length (the 64-bit form allows 2^63) is not a frame but garbage.
const MAX_FRAME: u64 = 1 << 32;
/// Control frames carry at most 125 bytes (RFC 6455 §5.5).
const MAX_CONTROL: u64 = 125;
/// Bytes a compressed message may inflate to, most of them counted and
/// dropped past the body cap; past it, inflating stops (a deflate bomb costs
/// this much work and no memory).
const MAX_INFLATED: u64 = 64 << 20;
/// Bytes unmasked or inflated at a time, on the stack.
const CHUNK: usize = 8192;
/// What a receiver appends to a compressed message before inflating it (RFC 7692 §7.2.2).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

fn opcode_name(op: u8) -> &'static str {
    match op {
        CONTINUATION => "continuation",
        TEXT => "text",
        BINARY => "binary",
        CLOSE => "close",
        PING => "ping",
        PONG => "pong",
        _ => "reserved",
    }
}

fn is_control(op: u8) -> bool {
    op & 0x8 != 0
}

/// Never claims a stream: WebSocket is entered only through an HTTP/1 upgrade.
pub fn probe(_dir: Direction, _first: &[u8], _midstream: bool) -> Claim {
    Claim::No
}

pub fn new(
    _flow: &FlowInfo,
    config: &DissectConfig,
    handoff: Option<&Handoff>,
) -> Box<dyn Dissector> {
    let deflate = handoff.and_then(|h| negotiated(&h.upgrade_headers));
    Box::new(WebSocket {
        conn: Conn {
            next: handoff.map_or(0, |h| h.entries_made),
            upgrade_entry: handoff
                .and_then(|h| h.upgrade_entry.clone())
                .unwrap_or_default(),
            path: handoff
                .and_then(|h| h.upgrade_path.clone())
                .unwrap_or_default(),
            max_body: config.max_body,
        },
        sides: [
            Side::new(
                Direction::ToServer,
                deflate.map(|d| Inflater::new(d.client_no_context_takeover)),
            ),
            Side::new(
                Direction::ToClient,
                deflate.map(|d| Inflater::new(d.server_no_context_takeover)),
            ),
        ],
    })
}

/// What a 101 agreed on for permessage-deflate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Deflate {
    client_no_context_takeover: bool,
    server_no_context_takeover: bool,
}

/// permessage-deflate as the switching response's `Sec-WebSocket-Extensions` accepted it.
fn negotiated(headers: &[Header]) -> Option<Deflate> {
    let values = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"));
    for ext in values.flat_map(|h| h.value.split(',')) {
        let mut params = ext.split(';').map(str::trim);
        if !params
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case("permessage-deflate"))
        {
            continue;
        }
        let mut d = Deflate::default();
        for p in params {
            let name = p.split('=').next().unwrap_or_default().trim();
            if name.eq_ignore_ascii_case("client_no_context_takeover") {
                d.client_no_context_takeover = true;
            } else if name.eq_ignore_ascii_case("server_no_context_takeover") {
                d.server_no_context_takeover = true;
            }
        }
        return Some(d);
    }
    None
}

/// One direction's raw-deflate window.
struct Inflater {
    d: Decompress,
    /// The sender starts each message with an empty window.
    reset_each: bool,
    /// A message was not inflated whole, so the window the next one may refer to is gone.
    broken: bool,
}

impl Inflater {
    fn new(reset_each: bool) -> Self {
        Inflater {
            d: Decompress::new(false),
            reset_each,
            broken: false,
        }
    }

    /// Whether a compressed message starting now can be inflated.
    fn begin(&mut self) -> bool {
        if self.reset_each {
            self.d.reset(false);
            self.broken = false;
        }
        !self.broken
    }

    /// Inflates `input` into `p`'s payload (kept up to `max`).
    fn feed(&mut self, input: &[u8], p: &mut Partial, max: usize) {
        let mut out = [0u8; CHUNK];
        let mut pos = 0;
        while p.mode == Mode::Inflating {
            let (in0, out0) = (self.d.total_in(), self.d.total_out());
            let status = self
                .d
                .decompress(&input[pos..], &mut out, FlushDecompress::None);
            let used = (self.d.total_in() - in0) as usize;
            let made = (self.d.total_out() - out0) as usize;
            pos += used;
            p.inflated += made as u64;
            keep(p, &out[..made], max);
            match status {
                Err(_) => {
                    add_flag(&mut p.flags, "malformed:inflate");
                    self.stop(p);
                }
                _ if p.inflated > MAX_INFLATED => self.stop(p),
                Ok(Status::StreamEnd) => {
                    // A final deflate block: the sender starts afresh (RFC 7692 §7.2.3.3).
                    self.d.reset(false);
                    p.mode = Mode::Ended;
                }
                Ok(_) if made < out.len() && pos == input.len() => return,
                Ok(_) if used == 0 && made == 0 => return,
                Ok(_) => {}
            }
        }
    }

    /// Inflating this message stopped before its end: the window is lost.
    fn stop(&mut self, p: &mut Partial) {
        p.mode = Mode::Stopped;
        p.cut = true;
        self.broken = true;
    }
}

/// How a message's payload is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As sent (unmasked): uncompressed, or compressed and not inflatable.
    Raw,
    /// Compressed, being inflated.
    Inflating,
    /// Compressed, inflated up to a final deflate block; later bytes are not data.
    Ended,
    /// Compressed, inflated until an error, a gap or the inflate limit.
    Stopped,
}

/// A message (or control frame) being read.
struct Partial {
    ts_ns: u64,
    opcode: u8,
    payload: Vec<u8>,
    /// Payload bytes on the wire.
    size: u64,
    /// Frame bytes on the wire, headers included.
    wire: u64,
    fragments: u32,
    /// Payload bytes were not kept (the cap) or were lost (a gap).
    cut: bool,
    compressed: bool,
    mode: Mode,
    /// Bytes inflated so far.
    inflated: u64,
    flags: Vec<String>,
}

fn add_flag(flags: &mut Vec<String>, flag: &str) {
    if !flags.iter().any(|f| f == flag) {
        flags.push(flag.to_string());
    }
}

/// Keeps payload bytes up to the cap; past it they are counted by the caller.
fn keep(p: &mut Partial, bytes: &[u8], max: usize) {
    let room = max.saturating_sub(p.payload.len());
    if bytes.len() > room {
        p.cut = true;
    }
    p.payload.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// The frame whose payload is being read.
struct Frame {
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Payload bytes still to come.
    left: u64,
    /// Payload bytes read, for the masking key's position.
    at: u64,
    /// Where its payload goes.
    into: Into,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Into {
    Message,
    Control,
    /// A continuation of no message: read past, not kept.
    Nowhere,
}

/// What a header says, or why it is not one.
enum Head {
    /// Not all of it yet: this many bytes in all.
    Need(usize),
    Frame(FrameHead),
    Bad(&'static str),
}

/// A frame's header, read whole.
struct FrameHead {
    /// Its own length on the wire.
    len: usize,
    fin: bool,
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// The payload's length.
    payload: u64,
}

fn parse_head(b: &[u8]) -> Head {
    if b.len() < 2 {
        return Head::Need(2);
    }
    let (b0, b1) = (b[0], b[1]);
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7f;
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let len = 2 + ext + if masked { 4 } else { 0 };
    if b.len() < len {
        return Head::Need(len);
    }
    let payload = match len7 {
        126 => u64::from(u16::from_be_bytes([b[2], b[3]])),
        127 => u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")),
        n => u64::from(n),
    };
    let opcode = b0 & 0x0f;
    let fin = b0 & 0x80 != 0;
    if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Head::Bad("reserved_opcode");
    }
    if is_control(opcode) && !fin {
        return Head::Bad("fragmented_control_frame");
    }
    if is_control(opcode) && payload > MAX_CONTROL {
        return Head::Bad("control_frame_too_long");
    }
    if payload > MAX_FRAME {
        return Head::Bad("frame_too_long");
    }
    let mask = masked.then(|| b[len - 4..len].try_into().expect("4 bytes"));
    Head::Frame(FrameHead {
        len,
        fin,
        rsv1: b0 & 0x40 != 0,
        opcode,
        mask,
        payload,
    })
}

/// What every entry of the connection shares.
struct Conn {
    /// The next entry's index on the flow.
    next: u64,
    upgrade_entry: String,
    path: String,
    max_body: usize,
}

impl Conn {
    /// Makes an entry of a finished message.
    fn emit(&mut self, flow: &FlowInfo, dir: Direction, mut p: Partial, out: &mut Vec<Emit>) {
        let plain = p.mode != Mode::Raw || !p.compressed;
        let (mut close_code, mut close_reason) = (None, String::new());
        if p.opcode == CLOSE {
            match p.payload.len() {
                0 => {}
                1 => add_flag(&mut p.flags, "malformed:close_payload"),
                _ => {
                    close_code = Some(u32::from(u16::from_be_bytes([p.payload[0], p.payload[1]])));
                    close_reason = String::from_utf8_lossy(&p.payload[2..]).into_owned();
                }
            }
            p.payload.clear();
        }
        if p.payload.len() > self.max_body {
            // A control frame's payload is read whole (for the close code), then capped.
            p.payload.truncate(self.max_body);
            p.cut = true;
        }
        if p.opcode == TEXT
            && plain
            && let Err(e) = std::str::from_utf8(&p.payload)
        {
            match e.error_len() {
                // Cut inside a character: keep the whole ones.
                None if p.cut => p.payload.truncate(e.valid_up_to()),
                _ => add_flag(&mut p.flags, "malformed:text_not_utf8"),
            }
        }
        if p.cut {
            add_flag(&mut p.flags, "truncated");
        }
        let msg = WebSocketMessage {
            opcode: opcode_name(p.opcode).into(),
            direction: match dir {
                Direction::ToServer => "client",
                Direction::ToClient => "server",
            }
            .into(),
            payload: p.payload,
            payload_size: p.size,
            truncated: p.cut,
            close_code,
            close_reason,
            upgrade_entry: self.upgrade_entry.clone(),
            fragments: p.fragments,
            compressed: p.compressed,
            inflated: p.compressed && p.mode != Mode::Raw,
            path: self.path.clone(),
        };
        let (req, resp) = match dir {
            Direction::ToServer => (
                Some(Message {
                    ts_ns: p.ts_ns,
                    wire_size: p.wire,
                    flags: p.flags,
                    body: Request {
                        kind: Some(request::Kind::Websocket(Box::new(msg))),
                    },
                }),
                None,
            ),
            Direction::ToClient => (
                None,
                Some(Message {
                    ts_ns: p.ts_ns,
                    wire_size: p.wire,
                    flags: p.flags,
                    body: Response {
                        kind: Some(response::Kind::Websocket(Box::new(msg))),
                    },
                }),
            ),
        };
        let mut e = pair::entry(flow, self.next, Protocol::Websocket, req, resp);
        self.next += 1;
        // A message stands alone: the absent side is not missing.
        e.flags.retain(|f| f != "no_response" && f != "no_request");
        out.push(Emit::Entry(Box::new(e)));
    }
}

/// One direction's frames.
struct Side {
    dir: Direction,
    head: [u8; 14],
    head_len: usize,
    /// Capture time of the header's first byte.
    head_ts: u64,
    frame: Option<Frame>,
    /// The data message being reassembled.
    message: Option<Partial>,
    /// The control frame being read (it may come between a message's fragments).
    control: Option<Partial>,
    /// Present when permessage-deflate was negotiated.
    inflater: Option<Inflater>,
    /// Frame boundaries are lost: the direction's later bytes are not parsed.
    lost: bool,
}

impl Side {
    fn new(dir: Direction, inflater: Option<Inflater>) -> Self {
        Side {
            dir,
            head: [0; 14],
            head_len: 0,
            head_ts: 0,
            frame: None,
            message: None,
            control: None,
            inflater,
            lost: false,
        }
    }

    fn feed(
        &mut self,
        conn: &mut Conn,
        flow: &FlowInfo,
        ts_ns: u64,
        mut data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        while !data.is_empty() && !self.lost {
            if let Some(f) = &self.frame {
                let n = data
                    .len()
                    .min(usize::try_from(f.left).unwrap_or(usize::MAX));
                self.payload(conn.max_body, &data[..n]);
                data = &data[n..];
                if self.frame.as_ref().is_some_and(|f| f.left == 0) {
                    self.end_frame(conn, flow, out);
                }
                continue;
            }
            if self.head_len == 0 {
                self.head_ts = ts_ns;
            }
            let need = match parse_head(&self.head[..self.head_len]) {
                Head::Need(n) => n,
                _ => unreachable!("a complete header is consumed at once"),
            };
            let take = (need - self.head_len).min(data.len());
            self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
            self.head_len += take;
            data = &data[take..];
            match parse_head(&self.head[..self.head_len]) {
                Head::Need(_) => {}
                Head::Bad(reason) => self.lose(conn, flow, reason, out),
                Head::Frame(head) => {
                    self.head_len = 0;
                    self.start_frame(conn, flow, head, out);
                    if self.frame.as_ref().is_some_and(|f| f.left == 0) {
                        self.end_frame(conn, flow, out);
                    }
                }
            }
        }
    }

    fn start_frame(
        &mut self,
        conn: &mut Conn,
        flow: &FlowInfo,
        head: FrameHead,
        out: &mut Vec<Emit>,
    ) {
        let FrameHead {
            len,
            fin,
            rsv1,
            opcode,
            mask,
            payload,
        } = head;
        let head_len = len as u64;
        let ts_ns = self.head_ts;
        let partial = |compressed| Partial {
            ts_ns,
            opcode,
            payload: Vec::new(),
            size: payload,
            wire: head_len + payload,
            fragments: 1,
            cut: false,
            compressed,
            mode: Mode::Raw,
            inflated: 0,
            flags: Vec::new(),
        };
        let into = if is_control(opcode) {
            self.control = Some(partial(false));
            Into::Control
        } else if opcode == CONTINUATION {
            match &mut self.message {
                Some(m) => {
                    m.size += payload;
                    m.wire += head_len + payload;
                    m.fragments = m.fragments.saturating_add(1);
                    Into::Message
                }
                None => {
                    out.push(Emit::ParseError {
                        protocol: "websocket",
                        reason: "continuation_without_message".into(),
                    });
                    Into::Nowhere
                }
            }
        } else {
            if let Some(mut old) = self.message.take() {
                // A new message before the last one's final fragment.
                out.push(Emit::ParseError {
                    protocol: "websocket",
                    reason: "unfinished_message".into(),
                });
                add_flag(&mut old.flags, "malformed:unfinished_message");
                old.cut = true;
                self.finish_message(conn, flow, old, out);
            }
            let mut m = partial(rsv1);
            if rsv1 && self.inflater.as_mut().is_some_and(Inflater::begin) {
                m.mode = Mode::Inflating;
            }
            self.message = Some(m);
            Into::Message
        };
        self.frame = Some(Frame {
            fin,
            mask,
            left: payload,
            at: 0,
            into,
        });
    }

    /// Payload bytes of the current frame, unmasked and kept or inflated.
    fn payload(&mut self, max: usize, data: &[u8]) {
        let Some(f) = &mut self.frame else { return };
        let mut buf = [0u8; CHUNK];
        for block in data.chunks(CHUNK) {
            let b = &mut buf[..block.len()];
            b.copy_from_slice(block);
            if let Some(key) = f.mask {
                for (i, x) in b.iter_mut().enumerate() {
                    *x ^= key[((f.at + i as u64) % 4) as usize];
                }
            }
            f.at += block.len() as u64;
            f.left -= block.len() as u64;
            match f.into {
                Into::Control => {
                    if let Some(c) = &mut self.control {
                        keep(c, b, MAX_CONTROL as usize);
                    }
                }
                Into::Message => {
                    if let Some(m) = &mut self.message {
                        match (m.mode, &mut self.inflater) {
                            (Mode::Inflating, Some(inf)) => inf.feed(b, m, max),
                            (Mode::Raw, _) => keep(m, b, max),
                            // Inflating ended or stopped: the rest is not the message's data.
                            _ => {}
                        }
                    }
                }
                Into::Nowhere => {}
            }
        }
    }

    fn end_frame(&mut self, conn: &mut Conn, flow: &FlowInfo, out: &mut Vec<Emit>) {
        let Some(f) = self.frame.take() else { return };
        match f.into {
            Into::Control => {
                if let Some(c) = self.control.take() {
                    conn.emit(flow, self.dir, c, out);
                }
            }
            Into::Message if f.fin => {
                if let Some(m) = self.message.take() {
                    self.finish_message(conn, flow, m, out);
                }
            }
            Into::Message | Into::Nowhere => {}
        }
    }

    fn finish_message(
        &mut self,
        conn: &mut Conn,
        flow: &FlowInfo,
        mut m: Partial,
        out: &mut Vec<Emit>,
    ) {
        if let (Mode::Inflating, Some(inf)) = (m.mode, &mut self.inflater) {
            inf.feed(&DEFLATE_TAIL, &mut m, conn.max_body);
        }
        conn.emit(flow, self.dir, m, out);
    }

    /// Frame boundaries are lost: what is in progress is emitted, the rest ignored.
    fn lose(&mut self, conn: &mut Conn, flow: &FlowInfo, reason: &str, out: &mut Vec<Emit>) {
        out.push(Emit::ParseError {
            protocol: "websocket",
            reason: reason.to_string(),
        });
        let flag = format!("malformed:{reason}");
        self.flush(conn, flow, &[&flag], out);
        self.lost = true;
    }

    /// Emits the message and control frame in progress, flagged, as they are.
    fn flush(&mut self, conn: &mut Conn, flow: &FlowInfo, flags: &[&str], out: &mut Vec<Emit>) {
        self.frame = None;
        self.head_len = 0;
        for mut p in [self.control.take(), self.message.take()]
            .into_iter()
            .flatten()
        {
            for f in flags {
                add_flag(&mut p.flags, f);
            }
            p.cut = true;
            if p.mode == Mode::Inflating
                && let Some(inf) = &mut self.inflater
            {
                inf.stop(&mut p);
            }
            conn.emit(flow, self.dir, p, out);
        }
    }

    fn gap(&mut self, conn: &mut Conn, flow: &FlowInfo, len: u64, out: &mut Vec<Emit>) {
        if self.lost {
            return;
        }
        if let Some(f) = &mut self.frame
            && len <= f.left
        {
            // Inside this frame's payload: its length says where the next frame starts.
            f.left -= len;
            f.at += len;
            let target = match f.into {
                Into::Control => self.control.as_mut(),
                Into::Message => self.message.as_mut(),
                Into::Nowhere => None,
            };
            if let Some(p) = target {
                p.cut = true;
                add_flag(&mut p.flags, "gap");
                if p.mode == Mode::Inflating
                    && let Some(inf) = &mut self.inflater
                {
                    inf.stop(p);
                }
            }
            if f.left == 0 {
                self.end_frame(conn, flow, out);
            }
            return;
        }
        out.push(Emit::ParseError {
            protocol: "websocket",
            reason: "framing_lost_in_gap".into(),
        });
        self.flush(conn, flow, &["gap"], out);
        self.lost = true;
    }
}

pub struct WebSocket {
    conn: Conn,
    sides: [Side; 2],
}

impl Dissector for WebSocket {
    fn on_data(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        self.sides[dir.index()].feed(&mut self.conn, flow, ts_ns, data, out);
    }

    fn on_gap(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        _ts_ns: u64,
        len: u64,
        out: &mut Vec<Emit>,
    ) {
        self.sides[dir.index()].gap(&mut self.conn, flow, len, out);
    }

    fn on_close(&mut self, flow: &FlowInfo, _end: &FlowEnd, out: &mut Vec<Emit>) {
        for side in &mut self.sides {
            if !side.lost {
                side.flush(&mut self.conn, flow, &["incomplete"], out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GenericFields;
    use crate::flow::FlowHandler;
    use crate::testing::{Ev, Out, drive, entries, fin, flow};
    use flate2::{Compress, Compression, FlushCompress};
    use proto::v1::Entry;
    use std::sync::Arc;

    const C: Direction = Direction::ToServer;
    const S: Direction = Direction::ToClient;
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn handoff(extensions: Option<&str>) -> Handoff {
        Handoff {
            protocol: "websocket",
            held: Vec::new(),
            upgrade_entry: Some("0000000000000007-2".into()),
            entries_made: 3,
            upgrade_path: Some("/chat?room=1".into()),
            upgrade_headers: extensions
                .map(|v| Header {
                    name: "Sec-WebSocket-Extensions".into(),
                    value: v.into(),
                })
                .into_iter()
                .collect(),
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Len {
        Minimal,
        Ext16,
        Ext64,
    }

    /// A frame as an endpoint sends it: client frames masked with [`KEY`].
    fn frame_with(
        dir: Direction,
        fin: bool,
        rsv1: bool,
        op: u8,
        payload: &[u8],
        len: Len,
    ) -> Vec<u8> {
        let mut b = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | op];
        let mask = if dir == C { 0x80 } else { 0 };
        let n = payload.len();
        match len {
            Len::Minimal if n < 126 => b.push(mask | n as u8),
            Len::Minimal if n <= 0xffff => {
                b.push(mask | 126);
                b.extend_from_slice(&(n as u16).to_be_bytes());
            }
            Len::Ext16 => {
                b.push(mask | 126);
                b.extend_from_slice(&(n as u16).to_be_bytes());
            }
            Len::Minimal | Len::Ext64 => {
                b.push(mask | 127);
                b.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if dir == C {
            b.extend_from_slice(&KEY);
            b.extend(payload.iter().enumerate().map(|(i, x)| x ^ KEY[i % 4]));
        } else {
            b.extend_from_slice(payload);
        }
        b
    }

    fn frame(dir: Direction, fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        frame_with(dir, fin, false, op, payload, Len::Minimal)
    }

    fn close(dir: Direction, code: u16, reason: &str) -> Vec<u8> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        frame(dir, true, CLOSE, &p)
    }

    /// A message compressed as permessage-deflate sends it: a sync flush without its tail.
    fn deflate(c: &mut Compress, msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(msg.len() + 64);
        let start = c.total_in();
        loop {
            let done = (c.total_in() - start) as usize;
            out.reserve(4096);
            c.compress_vec(&msg[done..], &mut out, FlushCompress::Sync)
                .unwrap();
            if (c.total_in() - start) as usize == msg.len() && out.capacity() > out.len() {
                break;
            }
        }
        assert!(out.ends_with(&DEFLATE_TAIL));
        out.truncate(out.len() - 4);
        out
    }

    fn run_with(events: &[Ev], config: &DissectConfig, h: &Handoff, bytewise: bool) -> Out {
        let flow = flow(7, 8765, false);
        let emitted = drive(new(&flow, config, Some(h)), &flow, events, bytewise);
        let out = Out::collect("websocket", emitted);
        assert_eq!(out.dropped, 0);
        // Numbered on from the HTTP entries, every one tied to the upgrade.
        for (i, e) in out.entries.iter().enumerate() {
            assert_eq!(e.id, format!("{:016x}-{}", 7, i + 3));
            assert_eq!(e.protocol, Protocol::Websocket as i32);
            assert_eq!(msg(e).upgrade_entry, "0000000000000007-2");
            assert_eq!(msg(e).path, "/chat?room=1");
            assert_eq!(e.elapsed_ns, None);
        }
        out
    }

    fn run_h(events: &[Ev], h: &Handoff) -> Out {
        let config = DissectConfig::default();
        let whole = run_with(events, &config, h, false);
        let bytewise = run_with(events, &config, h, true);
        // Segmentation never changes what is seen (timestamps aside).
        assert_eq!(summary(&whole), summary(&bytewise), "byte-by-byte differs");
        assert_eq!(whole.errors, bytewise.errors);
        whole
    }

    fn run(events: &[Ev]) -> Out {
        run_h(events, &handoff(None))
    }

    /// The message of an entry, from whichever side holds it; the other side is absent.
    fn msg(e: &Entry) -> &WebSocketMessage {
        match (
            e.request.as_ref().and_then(|r| r.kind.as_ref()),
            e.response.as_ref().and_then(|r| r.kind.as_ref()),
        ) {
            (Some(request::Kind::Websocket(m)), None) => {
                assert_eq!(m.direction, "client");
                assert_eq!(e.response_size, 0);
                m
            }
            (None, Some(response::Kind::Websocket(m))) => {
                assert_eq!(m.direction, "server");
                assert_eq!(e.request_size, 0);
                m
            }
            other => panic!("not one websocket message: {other:?}"),
        }
    }

    /// (direction, opcode, payload, close code, fragments, flags) per entry.
    type Summary = (String, String, Vec<u8>, Option<u32>, u32, Vec<String>);

    fn summary(o: &Out) -> Vec<Summary> {
        o.entries
            .iter()
            .map(|e| {
                let m = msg(e);
                (
                    m.direction.clone(),
                    m.opcode.clone(),
                    m.payload.clone(),
                    m.close_code,
                    m.fragments,
                    e.flags.clone(),
                )
            })
            .collect()
    }

    fn row(dir: &str, op: &str, payload: &[u8], code: Option<u32>, frags: u32) -> Summary {
        (
            dir.into(),
            op.into(),
            payload.to_vec(),
            code,
            frags,
            Vec::new(),
        )
    }

    #[test]
    fn probe_never_claims() {
        for first in [
            &b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"[..],
            b"GET / HTTP/1.1\r\n",
            b"",
        ] {
            assert_eq!(probe(C, first, false), Claim::No);
            assert_eq!(probe(S, first, true), Claim::No);
        }
    }

    #[test]
    fn messages_each_way_and_control_frames() {
        // (events, expected entries)
        let hello = frame(C, true, TEXT, b"hello");
        let world = frame(S, true, TEXT, "wörld".as_bytes());
        let bin_c = frame(C, true, BINARY, &[0, 1, 2, 0xff]);
        let bin_s = frame(S, true, BINARY, &[0xfe; 3]);
        let empty = frame(C, true, TEXT, b"");
        let ping = frame(C, true, PING, b"p1");
        let pong = frame(S, true, PONG, b"p1");
        let close_s = close(S, 1000, "bye");
        let close_c = close(C, 1000, "");
        let table: Vec<(Vec<Ev>, Vec<Summary>)> = vec![
            (
                vec![Ev::Data(C, &hello), Ev::Data(S, &world)],
                vec![
                    row("client", "text", b"hello", None, 1),
                    row("server", "text", "wörld".as_bytes(), None, 1),
                ],
            ),
            (
                vec![
                    Ev::Data(C, &bin_c),
                    Ev::Data(S, &bin_s),
                    Ev::Data(C, &empty),
                ],
                vec![
                    row("client", "binary", &[0, 1, 2, 0xff], None, 1),
                    row("server", "binary", &[0xfe; 3], None, 1),
                    row("client", "text", b"", None, 1),
                ],
            ),
            (
                vec![
                    Ev::Data(C, &ping),
                    Ev::Data(S, &pong),
                    Ev::Data(S, &close_s),
                    Ev::Data(C, &close_c),
                ],
                vec![
                    row("client", "ping", b"p1", None, 1),
                    row("server", "pong", b"p1", None, 1),
                    row("server", "close", b"", Some(1000), 1),
                    row("client", "close", b"", Some(1000), 1),
                ],
            ),
        ];
        for (events, want) in table {
            let out = run(&events);
            assert!(out.errors.is_empty(), "{:?}", out.errors);
            assert_eq!(summary(&out), want);
        }
        // Sizes: a client frame's header is 2 bytes plus the 4-byte key.
        let out = run(&[Ev::Data(C, &hello), Ev::Data(S, &close_s)]);
        assert_eq!(out.entries[0].request_size, 2 + 4 + 5);
        assert_eq!(msg(&out.entries[0]).payload_size, 5);
        assert_eq!(out.entries[1].response_size, 2 + 5);
        assert_eq!(msg(&out.entries[1]).close_reason, "bye");
        // The generic fields: opcode, the upgrade's path, the close code, whoever sent it.
        let server_close = &out.entries[1];
        assert!(server_close.request.is_none());
        assert_eq!(server_close.method(), Some("close"));
        assert_eq!(server_close.path(), Some("/chat?room=1"));
        assert_eq!(server_close.status(), Some(1000));
        assert_eq!(out.entries[0].method(), Some("text"));
        assert_eq!(out.entries[0].status(), None);
    }

    #[test]
    fn length_forms() {
        // (payload length, length form)
        let table = [
            (0, Len::Minimal),
            (125, Len::Minimal),
            (126, Len::Minimal),
            (65535, Len::Minimal),
            (65536, Len::Minimal),
            (200_000, Len::Minimal),
            // Longer forms than needed are tolerated.
            (5, Len::Ext16),
            (5, Len::Ext64),
            (300, Len::Ext64),
        ];
        for (n, form) in table {
            for dir in [C, S] {
                let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                let f = frame_with(dir, true, false, BINARY, &payload, form);
                let out = run(&[Ev::Data(dir, &f)]);
                assert!(out.errors.is_empty(), "{n} {form:?}: {:?}", out.errors);
                assert_eq!(out.entries.len(), 1);
                let m = msg(&out.entries[0]);
                assert_eq!(m.payload, payload, "{n} {form:?}");
                assert_eq!(m.payload_size, n as u64);
                let wire = out.entries[0].request_size + out.entries[0].response_size;
                assert_eq!(wire, f.len() as u64);
            }
        }
    }

    #[test]
    fn headers_no_endpoint_sends_stop_the_direction() {
        let mut huge = vec![0x82, 0x7f];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        let mut msb = vec![0x82, 0x7f];
        msb.extend_from_slice(&(1u64 << 63).to_be_bytes());
        let long_ping = frame(S, true, PING, &[0; 126]);
        let fragmented_close = frame(S, false, CLOSE, b"");
        let reserved = frame(S, true, 0x3, b"x");
        let after = frame(S, true, TEXT, b"never seen");
        let ok = frame(C, true, TEXT, b"still parsed");
        // (bad bytes, reason)
        let table: [(&[u8], &str); 5] = [
            (&huge, "frame_too_long"),
            (&msb, "frame_too_long"),
            (&long_ping, "control_frame_too_long"),
            (&fragmented_close, "fragmented_control_frame"),
            (&reserved, "reserved_opcode"),
        ];
        for (bad, reason) in table {
            let out = run(&[Ev::Data(S, bad), Ev::Data(S, &after), Ev::Data(C, &ok)]);
            assert_eq!(out.errors, vec![reason.to_string()]);
            // The other direction goes on; this one is not parsed further.
            assert_eq!(
                summary(&out),
                vec![row("client", "text", b"still parsed", None, 1)]
            );
        }
    }

    #[test]
    fn fragments_join_with_control_frames_between() {
        let f1 = frame(C, false, TEXT, b"frag");
        let ping = frame(C, true, PING, b"");
        let f2 = frame(C, false, CONTINUATION, b"men");
        let f3 = frame(C, true, CONTINUATION, b"ted");
        let s1 = frame(S, false, BINARY, &[1]);
        let s2 = frame(S, true, CONTINUATION, &[2]);
        let out = run(&[
            Ev::Data(C, &f1),
            Ev::Data(C, &ping),
            Ev::Data(S, &s1),
            Ev::Data(C, &f2),
            Ev::Data(S, &s2),
            Ev::Data(C, &f3),
        ]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            summary(&out),
            vec![
                row("client", "ping", b"", None, 1),
                row("server", "binary", &[1, 2], None, 2),
                row("client", "text", b"fragmented", None, 3),
            ]
        );
        let text = &out.entries[2];
        assert_eq!(text.request_size, (f1.len() + f2.len() + f3.len()) as u64);
        assert_eq!(msg(text).payload_size, 10);
        // Timed by the first fragment.
        assert_eq!(text.ts_ns, 1000);
    }

    #[test]
    fn broken_fragment_sequences() {
        let orphan = frame(C, true, CONTINUATION, b"orphan");
        let first = frame(C, false, TEXT, b"first");
        let next = frame(C, true, TEXT, b"next");
        let out = run(&[
            Ev::Data(C, &orphan),
            Ev::Data(C, &first),
            Ev::Data(C, &next),
        ]);
        assert_eq!(
            out.errors,
            vec!["continuation_without_message", "unfinished_message"]
        );
        let s = summary(&out);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].2, b"first");
        assert_eq!(s[0].5, vec!["malformed:unfinished_message", "truncated"]);
        assert_eq!(s[1], row("client", "text", b"next", None, 1));
    }

    #[test]
    fn close_payloads() {
        let with_reason = close(S, 4000, "custom reason");
        let bare = frame(S, true, CLOSE, b"");
        let one = frame(S, true, CLOSE, &[3]);
        let going_away = close(C, 1001, "");
        let out = run(&[
            Ev::Data(S, &with_reason),
            Ev::Data(S, &bare),
            Ev::Data(S, &one),
            Ev::Data(C, &going_away),
        ]);
        let m: Vec<(Option<u32>, &str)> = out
            .entries
            .iter()
            .map(|e| (msg(e).close_code, msg(e).close_reason.as_str()))
            .collect();
        assert_eq!(
            m,
            vec![
                (Some(4000), "custom reason"),
                (None, ""),
                (None, ""),
                (Some(1001), ""),
            ]
        );
        assert_eq!(out.entries[2].flags, vec!["malformed:close_payload"]);
        assert_eq!(out.entries[1].status(), None);
        assert_eq!(out.entries[3].status(), Some(1001));
    }

    #[test]
    fn payloads_past_the_cap_are_counted_not_kept() {
        let config = DissectConfig {
            max_body: 8,
            ..Default::default()
        };
        // "aéééé" is 9 bytes: cut at 8, inside the last "é".
        let long = frame(C, true, BINARY, &[7; 100]);
        let text = frame(S, true, TEXT, "aéééé".as_bytes());
        let frags = [
            frame(S, false, TEXT, b"12345"),
            frame(S, true, CONTINUATION, b"67890"),
        ];
        let ping = frame(C, true, PING, &[1; 100]);
        let close_long = close(S, 1001, "a reason longer than the cap");
        let h = handoff(None);
        for bytewise in [false, true] {
            let out = run_with(
                &[
                    Ev::Data(C, &long),
                    Ev::Data(S, &text),
                    Ev::Data(S, &frags[0]),
                    Ev::Data(S, &frags[1]),
                    Ev::Data(C, &ping),
                    Ev::Data(S, &close_long),
                ],
                &config,
                &h,
                bytewise,
            );
            let m: Vec<_> = out.entries.iter().map(msg).collect();
            assert_eq!(m[0].payload, [7; 8]);
            assert_eq!(m[0].payload_size, 100);
            assert!(m[0].truncated);
            assert_eq!(out.entries[0].flags, vec!["truncated"]);
            // Cut inside "é": the whole characters stay, so it is still text.
            assert_eq!(m[1].payload, "aééé".as_bytes());
            assert!(m[1].truncated);
            assert_eq!(m[2].payload, b"12345678");
            assert_eq!(m[2].payload_size, 10);
            assert_eq!(m[3].payload, [1; 8]);
            assert!(m[3].truncated);
            // A close's code and reason come from its whole payload.
            assert_eq!(m[4].close_code, Some(1001));
            assert_eq!(m[4].close_reason, "a reason longer than the cap");
        }
    }

    #[test]
    fn invalid_utf8_text_is_flagged() {
        let bad = frame(S, true, TEXT, &[0x61, 0xff, 0x62]);
        let out = run(&[Ev::Data(S, &bad)]);
        assert_eq!(out.entries[0].flags, vec!["malformed:text_not_utf8"]);
        assert_eq!(msg(&out.entries[0]).payload, [0x61, 0xff, 0x62]);
    }

    #[test]
    fn gaps() {
        let long = frame(S, true, TEXT, &[b'a'; 100]);
        let next = frame(S, true, TEXT, b"next");
        // A gap inside a payload: the frame's length still finds the next frame.
        let out = run(&[
            Ev::Data(S, &long[..30]),
            Ev::Gap(S, 50),
            Ev::Data(S, &long[80..]),
            Ev::Data(S, &next),
        ]);
        assert!(out.errors.is_empty());
        let s = summary(&out);
        assert_eq!(s[0].2, vec![b'a'; 28 + 22]);
        assert_eq!(s[0].5, vec!["gap", "truncated"]);
        assert_eq!(msg(&out.entries[0]).payload_size, 100);
        assert_eq!(s[1], row("server", "text", b"next", None, 1));
        // A gap through the payload's end to its last byte, masked: the key's position follows.
        let c = frame(C, true, TEXT, b"0123456789");
        let c2 = frame(C, true, TEXT, b"after");
        let out = run(&[
            Ev::Data(C, &c[..9]),
            Ev::Gap(C, 3),
            Ev::Data(C, &c[12..]),
            Ev::Data(C, &c2),
        ]);
        let s = summary(&out);
        assert_eq!(s[0].2, b"0126789");
        assert_eq!(s[1].2, b"after");
        // A gap past the frame's end loses the framing: what was in progress is
        // emitted, later frames of that direction are not parsed.
        let out = run(&[
            Ev::Data(S, &long[..30]),
            Ev::Gap(S, 200),
            Ev::Data(S, &next),
        ]);
        assert_eq!(out.errors, vec!["framing_lost_in_gap"]);
        let s = summary(&out);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].5, vec!["gap", "truncated"]);
        // At a frame boundary too.
        let out = run(&[Ev::Data(S, &next), Ev::Gap(S, 10), Ev::Data(S, &next)]);
        assert_eq!(out.errors, vec!["framing_lost_in_gap"]);
        assert_eq!(out.entries.len(), 1);
    }

    #[test]
    fn connection_ends_inside_a_message() {
        let first = frame(C, false, TEXT, b"part");
        let long = frame(S, true, BINARY, &[1; 50]);
        let out = run(&[Ev::Data(C, &first), Ev::Data(S, &long[..20])]);
        let s = summary(&out);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].2, b"part");
        assert_eq!(s[0].5, vec!["incomplete", "truncated"]);
        assert_eq!(s[1].2, [1; 18]);
        assert_eq!(s[1].5, vec!["incomplete", "truncated"]);
        // A header cut short makes nothing.
        let out = run(&[Ev::Data(S, &long[..1])]);
        assert!(out.entries.is_empty() && out.errors.is_empty());
    }

    #[test]
    fn permessage_deflate() {
        let negotiated = handoff(Some("permessage-deflate; client_max_window_bits=15"));
        let mut cc = Compress::new(Compression::default(), false);
        let mut sc = Compress::new(Compression::default(), false);
        let text = "the same words, the same words, the same words".as_bytes();
        let c1 = frame_with(C, true, true, TEXT, &deflate(&mut cc, text), Len::Minimal);
        // The second message refers back to the first one's window.
        let c2 = frame_with(C, true, true, TEXT, &deflate(&mut cc, text), Len::Minimal);
        let plain = frame(C, true, TEXT, b"not compressed");
        let s1_body = deflate(&mut sc, &[9; 1000]);
        let (a, b) = s1_body.split_at(s1_body.len() / 2);
        let s1 = [
            frame_with(S, false, true, BINARY, a, Len::Minimal),
            frame(S, true, CONTINUATION, b),
        ];
        let events = [
            Ev::Data(C, &c1),
            Ev::Data(S, &s1[0]),
            Ev::Data(C, &c2),
            Ev::Data(S, &s1[1]),
            Ev::Data(C, &plain),
        ];
        let out = run_h(&events, &negotiated);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let m: Vec<_> = out.entries.iter().map(msg).collect();
        assert_eq!(m.len(), 4);
        // The server's message ends after the client's second.
        for (i, want) in [(0, text), (1, text), (3, b"not compressed".as_slice())] {
            assert_eq!(m[i].direction, "client");
            assert_eq!(m[i].payload, want, "{i}");
        }
        assert!(m[0].compressed && m[0].inflated);
        assert!(m[1].payload_size < m[0].payload_size, "no back-reference");
        assert!(!m[3].compressed && !m[3].inflated);
        assert_eq!(m[2].payload, vec![9; 1000]);
        assert!(m[2].compressed && m[2].inflated);
        assert_eq!(m[2].fragments, 2);
        assert_eq!(m[2].payload_size, s1_body.len() as u64);
        assert!(out.entries.iter().all(|e| e.flags.is_empty()));

        // Not negotiated: shown as sent.
        let out = run_h(&events[..1], &handoff(None));
        let m = msg(&out.entries[0]);
        assert!(m.compressed && !m.inflated);
        assert_eq!(
            m.payload,
            deflate(&mut Compress::new(Compression::default(), false), text)
        );

        // A gap inside a compressed message loses the window: the next message
        // that refers to it is shown as sent.
        let out = run_h(
            &[
                Ev::Data(C, &c1[..8]),
                Ev::Gap(C, 2),
                Ev::Data(C, &c1[10..]),
                Ev::Data(C, &c2),
            ],
            &negotiated,
        );
        let m: Vec<_> = out.entries.iter().map(msg).collect();
        assert!(m[0].inflated && m[0].truncated);
        assert!(m[1].compressed && !m[1].inflated);
        // Unless the sender resets its window per message.
        let reset = handoff(Some("permessage-deflate; client_no_context_takeover"));
        let fresh = |msg: &[u8]| {
            let mut c = Compress::new(Compression::default(), false);
            frame_with(C, true, true, TEXT, &deflate(&mut c, msg), Len::Minimal)
        };
        let (f1, f2) = (fresh(text), fresh(b"second"));
        let out = run_h(
            &[
                Ev::Data(C, &f1[..8]),
                Ev::Gap(C, 2),
                Ev::Data(C, &f1[10..]),
                Ev::Data(C, &f2),
            ],
            &reset,
        );
        let m: Vec<_> = out.entries.iter().map(msg).collect();
        assert!(m[1].inflated);
        assert_eq!(m[1].payload, b"second");
    }

    #[test]
    fn deflate_garbage_and_bombs_stay_bounded() {
        let negotiated = handoff(Some("permessage-deflate"));
        // Not deflate at all (a reserved block type).
        let garbage = frame_with(S, true, true, TEXT, &[0xff; 20], Len::Minimal);
        let out = run_h(&[Ev::Data(S, &garbage)], &negotiated);
        assert_eq!(out.entries[0].flags, vec!["malformed:inflate", "truncated"]);
        // Past MAX_INFLATED the message stops inflating (its kept bytes are the
        // cap's worth) and the window is lost for the next one.
        let mut c = Compress::new(Compression::best(), false);
        let bomb = deflate(&mut c, &vec![0; (MAX_INFLATED + (1 << 20)) as usize]);
        let bomb = frame_with(S, true, true, BINARY, &bomb, Len::Minimal);
        let small = frame_with(S, true, true, TEXT, &deflate(&mut c, b"ok"), Len::Minimal);
        let config = DissectConfig::default();
        let out = run_with(
            &[Ev::Data(S, &bomb), Ev::Data(S, &small)],
            &config,
            &negotiated,
            false,
        );
        let m: Vec<_> = out.entries.iter().map(msg).collect();
        assert_eq!(m[0].payload.len(), config.max_body);
        assert!(m[0].truncated && m[0].inflated);
        assert!(!m[1].inflated);
    }

    #[test]
    fn extensions_header() {
        let h = |v: &str| {
            negotiated(&[Header {
                name: "sec-websocket-extensions".into(),
                value: v.into(),
            }])
        };
        assert_eq!(h("permessage-deflate"), Some(Deflate::default()));
        assert_eq!(
            h(
                "x-webkit-deflate-frame, PerMessage-Deflate; server_no_context_takeover ; client_max_window_bits=10"
            ),
            Some(Deflate {
                server_no_context_takeover: true,
                client_no_context_takeover: false,
            })
        );
        assert_eq!(h("x-other"), None);
        assert_eq!(negotiated(&[]), None);
    }

    /// Through the connection handler: an HTTP/1 upgrade, then frames in the
    /// same segment as the 101 and after it.
    #[test]
    fn handed_over_by_http1() {
        let flow = flow(7, 8765, false);
        let mut conn = super::super::Connection::new(Arc::new(DissectConfig::default()));
        let mut out = Vec::new();
        let req =
            b"GET /socket?v=2 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let mut c = Compress::new(Compression::default(), false);
        let mut resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
            .to_vec();
        resp.extend(frame_with(
            S,
            true,
            true,
            TEXT,
            &deflate(&mut c, b"welcome"),
            Len::Minimal,
        ));
        conn.on_data(&flow, C, 1, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut out);
        conn.on_data(
            &flow,
            S,
            2,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            &mut out,
        );
        conn.on_data(&flow, C, 3, req, &mut out);
        conn.on_data(&flow, S, 4, &resp, &mut out);
        conn.on_data(&flow, C, 5, &frame(C, true, TEXT, b"hi"), &mut out);
        conn.on_data(&flow, S, 6, &close(S, 1000, ""), &mut out);
        conn.on_close(&flow, &fin(7), &mut out);
        let entries = entries(out);
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "0000000000000007-0",
                "0000000000000007-1",
                "0000000000000007-2",
                "0000000000000007-3",
                "0000000000000007-4"
            ]
        );
        assert_eq!(entries[1].status(), Some(101));
        let ws: Vec<&WebSocketMessage> = entries[2..].iter().map(msg).collect();
        assert_eq!(ws[0].payload, b"welcome");
        assert!(ws[0].inflated);
        assert_eq!(ws[1].payload, b"hi");
        assert_eq!(ws[2].close_code, Some(1000));
        for m in ws {
            assert_eq!(m.upgrade_entry, "0000000000000007-1");
            assert_eq!(m.path, "/socket?v=2");
        }
    }
}
