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
mod tests;
