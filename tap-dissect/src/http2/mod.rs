//! HTTP/2 in cleartext (RFC 9113), and gRPC on top of it (`grpc.rs`).
//!
//! A connection is claimed by the client's preface (prior knowledge), by the
//! server's first SETTINGS frame, by `http1` handing it over after `Upgrade:
//! h2c`, or mid-stream by a run of plausible frame headers. Each direction is
//! cut into frames; header blocks (HEADERS, PUSH_PROMISE and their
//! CONTINUATIONs) are decoded with HPACK (loona-hpack), keeping each
//! direction's dynamic table; DATA is streamed into its stream's body, never
//! buffered as a frame. Every stream becomes one entry, paired by stream id:
//! when both sides ended it, when it is reset (flagged `reset:<error>`), when
//! a GOAWAY says it was never processed (flagged `goaway`), or when the
//! connection ends. PRIORITY, PING and WINDOW_UPDATE carry nothing an entry
//! shows; flow control is not checked.
//!
//! Bounds: a frame's length is checked against the receiver's
//! SETTINGS_MAX_FRAME_SIZE, header blocks are kept up to `max_head` bytes
//! across CONTINUATIONs and decode to at most `max_head` bytes of headers (an
//! HPACK bomb is flagged `malformed:header_list_too_large`), the dynamic
//! table grows only as far as SETTINGS allow (at most [`MAX_TABLE_SIZE`]),
//! bodies keep `max_body` bytes, and open streams are at most `max_pending`.
//!
//! When the start of a direction was missed (a mid-stream capture, a gap),
//! its dynamic table is unknown: from then on only entries the peer adds are
//! known, so a header block that refers to an older entry is decoded as far
//! as it can be and its message flagged `hpack_unknown`; nothing is guessed.

mod entry;
mod frames;
mod hpack;
pub mod huffman;
pub mod model;
mod state;

use super::{
    Claim, DissectConfig, Dissector, Emit, Handoff, Step, encoding, graphql, grpc, run_steps,
};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{self, Message};
use entry::*;
use frames::*;
use hpack::*;
use loona_hpack::Decoder;
use loona_hpack::decoder::DecoderError;
use loona_hpack::encoder::encode_integer_into;
use proto::v1::{
    Header, HttpRequest, HttpResponse, Protocol, Request, Response, request, response,
};
use state::*;
use std::collections::{BTreeMap, VecDeque};

/// What a client sends first on an HTTP/2 connection.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_HEADER: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE until a peer says otherwise, and its smallest value.
const DEFAULT_MAX_FRAME: u32 = 16_384;
const LARGEST_FRAME: u32 = (1 << 24) - 1;
/// SETTINGS_HEADER_TABLE_SIZE until a peer says otherwise.
const DEFAULT_TABLE_SIZE: usize = 4096;
/// The largest HPACK dynamic table kept per direction, whatever SETTINGS allow.
pub const MAX_TABLE_SIZE: usize = 64 << 10;
/// Payload bytes kept of a SETTINGS, GOAWAY or other control frame.
const MAX_CONTROL: usize = 4096;
/// Bytes kept while looking for a frame boundary.
const RESYNC_WINDOW: usize = 64 << 10;
/// Plausible frame headers in a row that settle where frames start.
const CHAIN: usize = 4;
/// Streams that were open before the capture began and became entries,
/// remembered so their late frames do not open them again.
const MAX_CLOSED_EARLY: usize = 1024;
/// How long a stream the client reset waits for the response in flight.
const RESET_WAIT_NS: u64 = 1_000_000_000;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

pub fn new(
    flow: &FlowInfo,
    config: &DissectConfig,
    handoff: Option<&Handoff>,
) -> Box<dyn Dissector> {
    Box::new(Http2::new(flow, config, handoff))
}

pub struct Http2 {
    config: DissectConfig,
    sides: [Side; 2],
    streams: BTreeMap<u32, Stream>,
    /// Streams the client opened (odd) and the server promised (even).
    client_opened: Option<Opened>,
    server_opened: Option<Opened>,
    closed_early: VecDeque<u32>,
    /// Streams the client reset while their response was due, and when:
    /// the response already on its way is still paired with the request,
    /// for up to [`RESET_WAIT_NS`] of capture time.
    reset_waiting: VecDeque<(u32, u64)>,
    /// Entries made on the connection (HTTP/1 ones before an upgrade included).
    made: u64,
    /// The HTTP/1 entry whose `Upgrade: h2c` request stream 1 answers.
    upgrade_entry: Option<String>,
}

fn error_name(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "no_error",
        "protocol_error",
        "internal_error",
        "flow_control_error",
        "settings_timeout",
        "stream_closed",
        "frame_size_error",
        "refused_stream",
        "cancel",
        "compression_error",
        "connect_error",
        "enhance_your_calm",
        "inadequate_security",
        "http_1_1_required",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("0x{code:x}"), |n| (*n).to_string())
}

/// The frame's header block fragment: the payload without padding and the
/// fields before the fragment (`skip`: priority, promised stream id).
fn fragment(payload: &[u8], h: FrameHeader, skip: usize) -> Result<&[u8], &'static str> {
    let (pad, start) = if h.flags & PADDED != 0 {
        (usize::from(*payload.first().ok_or("padding")?), 1)
    } else {
        (0, 0)
    };
    let start = start + skip;
    let end = (h.len as usize).checked_sub(pad).ok_or("padding")?;
    if start > end {
        return Err("padding");
    }
    // The payload may have been kept only in part (too large): the block is then flagged anyway.
    Ok(&payload[start.min(payload.len())..end.min(payload.len())])
}

impl Http2 {
    fn new(flow: &FlowInfo, config: &DissectConfig, handoff: Option<&Handoff>) -> Self {
        let known = !flow.midstream;
        let (client, server) = if flow.midstream {
            (Phase::Resync, Phase::Resync)
        } else {
            (Phase::Preface(0), Phase::Header)
        };
        let mut d = Http2 {
            config: config.clone(),
            sides: [Side::new(client, known), Side::new(server, known)],
            streams: BTreeMap::new(),
            client_opened: None,
            server_opened: None,
            closed_early: VecDeque::new(),
            reset_waiting: VecDeque::new(),
            made: 0,
            upgrade_entry: None,
        };
        if let Some(h) = handoff {
            d.made = h.entries_made;
            d.upgrade_entry.clone_from(&h.upgrade_entry);
            // The upgrade request is stream 1, already ended by the client
            // (RFC 9113 §3.2): only its response comes as HTTP/2.
            let mut s = Stream::default();
            s.req.ended = true;
            d.streams.insert(1, s);
            Opened::note(&mut d.client_opened, 1);
        }
        d
    }

    fn step(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts: u64,
        input: &[u8],
        out: &mut Vec<Emit>,
    ) -> Step {
        let side = &mut self.sides[dir.index()];
        match side.phase {
            Phase::Preface(matched) => {
                let n = (PREFACE.len() - matched).min(input.len());
                if input[..n] == PREFACE[matched..matched + n] {
                    side.phase = if matched + n == PREFACE.len() {
                        Phase::Header
                    } else {
                        Phase::Preface(matched + n)
                    };
                    Step::Consumed(n)
                } else {
                    out.push(Emit::ParseError {
                        protocol: "http2",
                        reason: "bad_preface".into(),
                    });
                    self.lose_sync(dir);
                    Step::Consumed(0)
                }
            }
            Phase::Header => {
                if side.head_len == 0 {
                    side.head_ts = ts;
                }
                let n = (FRAME_HEADER - side.head_len).min(input.len());
                side.head[side.head_len..side.head_len + n].copy_from_slice(&input[..n]);
                side.head_len += n;
                if side.head_len < FRAME_HEADER {
                    return Step::Consumed(n);
                }
                side.head_len = 0;
                let raw = side.head;
                let ts = side.head_ts;
                if self.start_frame(flow, dir, &raw, ts, out) {
                    Step::Consumed(n)
                } else {
                    // Look for frames again from the byte after this header's start.
                    Step::Replay(raw[1..].to_vec(), n)
                }
            }
            Phase::Payload(p) => Step::Consumed(self.payload(flow, dir, p, input, out)),
            Phase::Resync => {
                if side.buf.is_empty() && whole_frames(input, side.max_frame) {
                    // A segment that holds exactly whole, plausible frames: senders
                    // write frames whole, so this is a boundary even when alone.
                    side.phase = Phase::Header;
                    return Step::Consumed(0);
                }
                side.buf.extend_from_slice(input);
                match find_frame_start(&side.buf, side.max_frame) {
                    Ok(at) => {
                        let rest = side.buf.split_off(at);
                        side.buf = Vec::new();
                        side.phase = Phase::Header;
                        Step::Replay(rest, input.len())
                    }
                    Err(at) => {
                        side.buf.drain(..at);
                        if side.buf.len() > RESYNC_WINDOW {
                            let cut = side.buf.len() - RESYNC_WINDOW / 2;
                            side.buf.drain(..cut);
                        }
                        Step::Consumed(input.len())
                    }
                }
            }
        }
    }

    /// The framing of `dir` is lost: open messages that way may miss bytes,
    /// the header table is unknown, and parsing waits for a frame boundary.
    fn lose_sync(&mut self, dir: Direction) {
        let side = &mut self.sides[dir.index()];
        side.phase = Phase::Resync;
        side.head_len = 0;
        side.buf.clear();
        if let Some(b) = side.block.take() {
            // The block's stream is among the open ones flagged below; its headers are lost.
            if let Some(s) = self.streams.get_mut(&b.stream) {
                s.half(dir).flag("hpack_unknown");
            }
        }
        self.sides[dir.index()].hpack.lose();
        for s in self.streams.values_mut() {
            let h = s.half(dir);
            if h.seen && !h.ended {
                h.flag("gap");
                h.body_cut = true;
                if let Some(f) = &mut h.grpc {
                    f.gap();
                }
            }
        }
    }

    fn parse_error(&mut self, reason: &str, out: &mut Vec<Emit>) {
        out.push(Emit::ParseError {
            protocol: "http2",
            reason: reason.to_string(),
        });
    }

    /// A frame header was read. False when it cannot be a frame: the framing is lost.
    fn start_frame(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        raw: &[u8; FRAME_HEADER],
        ts: u64,
        out: &mut Vec<Emit>,
    ) -> bool {
        let h = FrameHeader::parse(raw);
        let in_block = self.sides[dir.index()].block.as_ref().map(|b| b.stream);
        if let Some(stream) = in_block
            && (h.kind != CONTINUATION || h.stream != stream)
        {
            // A header block must be continued before anything else (RFC 9113 §6.10).
            self.parse_error("continuation_expected", out);
            self.broken_block(dir, "malformed:continuation_expected");
        }
        if let Some(why) = h.violation() {
            self.parse_error(why, out);
            self.lose_sync(dir);
            return false;
        }
        if h.kind == CONTINUATION && in_block != Some(h.stream) {
            self.parse_error("unexpected_continuation", out);
            self.lose_sync(dir);
            return false;
        }
        if h.len > self.sides[dir.index()].max_frame {
            // Larger than the receiver accepts. Nothing is allocated for it: DATA
            // is streamed and the rest is kept only up to its cap.
            self.parse_error("frame_too_large", out);
            if let Some(s) = self.streams.get_mut(&h.stream) {
                s.half(dir).flag("malformed:frame_too_large");
            }
        }
        if h.kind == DATA
            && let Some(s) = self.stream_for(flow, h.stream, out)
        {
            let half = s.half(dir);
            if !half.seen {
                // Its headers were missed (a mid-stream start or a gap).
                half.flag("incomplete");
            }
            half.touch(ts);
            half.wire += (FRAME_HEADER as u64) + u64::from(h.len);
        }
        let p = Payload {
            h,
            ts,
            pos: 0,
            pad: 0,
        };
        self.sides[dir.index()].phase = Phase::Payload(p);
        if h.len == 0 {
            self.end_frame(flow, dir, p, out);
        }
        true
    }

    /// Payload bytes of the current frame; returns how many were used.
    fn payload(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        mut p: Payload,
        input: &[u8],
        out: &mut Vec<Emit>,
    ) -> usize {
        let n = ((p.h.len - p.pos) as usize).min(input.len());
        let chunk = &input[..n];
        if p.h.kind == DATA {
            let mut content = chunk;
            let padded = p.h.flags & PADDED != 0;
            if padded && p.pos == 0 {
                p.pad = u32::from(chunk[0]);
                if p.pad >= p.h.len {
                    self.parse_error("padding", out);
                    if let Some(s) = self.streams.get_mut(&p.h.stream) {
                        s.half(dir).flag("malformed:padding");
                    }
                    p.pad = p.h.len - 1;
                }
                content = &chunk[1..];
            }
            // Payload offsets [start, end) hold data; the rest is padding.
            let start = u32::from(padded);
            let end = p.h.len - p.pad;
            let at = p.pos.max(start);
            let upto = (p.pos + n as u32).min(end);
            // `content` starts at offset max(pos, start), which is `at`.
            if upto > at {
                self.data(dir, p.h.stream, &content[..(upto - at) as usize]);
            }
        } else {
            let limit = match p.h.kind {
                HEADERS | PUSH_PROMISE | CONTINUATION => self.config.max_head + FRAME_HEADER,
                SETTINGS | GOAWAY | RST_STREAM => MAX_CONTROL,
                _ => 0,
            };
            let buf = &mut self.sides[dir.index()].buf;
            let room = limit.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..n.min(room)]);
        }
        p.pos += n as u32;
        self.sides[dir.index()].phase = Phase::Payload(p);
        if p.pos == p.h.len {
            self.end_frame(flow, dir, p, out);
        }
        n
    }

    /// Body bytes of a stream's DATA frame.
    fn data(&mut self, dir: Direction, id: u32, data: &[u8]) {
        let max = self.config.max_body;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let grpc = s.grpc;
        let half = s.half(dir);
        if grpc && half.grpc.is_none() && half.body_wire == 0 {
            half.grpc = Some(grpc::Framer::new(max));
        }
        half.body_wire += data.len() as u64;
        if let Some(f) = &mut half.grpc {
            f.feed(data);
        } else {
            let room = max.saturating_sub(half.body.len());
            if data.len() > room {
                half.body_cut = true;
            }
            half.body.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    /// The frame's payload is all read (what was kept of it is in the side's buffer).
    fn end_frame(&mut self, flow: &FlowInfo, dir: Direction, p: Payload, out: &mut Vec<Emit>) {
        self.expire_resets(flow, p.ts, out);
        self.sides[dir.index()].phase = Phase::Header;
        let mut payload = std::mem::take(&mut self.sides[dir.index()].buf);
        let h = p.h;
        match h.kind {
            DATA if h.flags & END_STREAM != 0 => self.end_stream(flow, dir, h.stream, out),
            HEADERS => {
                let skip = if h.flags & PRIORITY_FLAG != 0 { 5 } else { 0 };
                self.block_start(flow, dir, p, &payload, skip, None, out);
            }
            PUSH_PROMISE => {
                let at = usize::from(h.flags & PADDED != 0);
                let promised = payload
                    .get(at..at + 4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff);
                match promised {
                    Some(id) if id != 0 => {
                        self.block_start(flow, dir, p, &payload, 4, Some(id), out)
                    }
                    _ => {
                        self.parse_error("push_promise", out);
                        self.sides[dir.index()].hpack.lose();
                    }
                }
            }
            CONTINUATION => self.continuation(flow, dir, &h, &payload, out),
            RST_STREAM if payload.len() == 4 => {
                let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                let flag = format!("reset:{}", error_name(code));
                match self.streams.get_mut(&h.stream) {
                    // The client gave up; the response may already be on its
                    // way: it is paired when it comes, flagged with the reset.
                    Some(s) if dir == Direction::ToServer && !s.resp.ended => {
                        s.flags.push(flag);
                        s.req.ended = true;
                        if self.reset_waiting.len() >= MAX_CLOSED_EARLY
                            && let Some((old, _)) = self.reset_waiting.pop_front()
                            && let Some(s) = self.streams.remove(&old)
                        {
                            self.emit(flow, old, s, out);
                        }
                        self.reset_waiting.push_back((h.stream, p.ts));
                    }
                    Some(_) => {
                        if let Some(mut s) = self.streams.remove(&h.stream) {
                            s.flags.push(flag);
                            self.emit(flow, h.stream, s, out);
                        }
                    }
                    None => {}
                }
            }
            SETTINGS if h.flags & ACK == 0 => self.settings(dir, &payload, out),
            GOAWAY if payload.len() >= 8 => {
                let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff;
                self.goaway(flow, dir, last, out);
            }
            _ => {}
        }
        payload.clear();
        let side = &mut self.sides[dir.index()];
        if side.buf.is_empty() && payload.capacity() <= MAX_CONTROL {
            // Keep a small allocation for the next frame; a large one would
            // stay with the connection for its whole life.
            side.buf = payload;
        }
    }

    /// A HEADERS or PUSH_PROMISE frame: its block, complete or awaiting CONTINUATIONs.
    #[allow(clippy::too_many_arguments)]
    fn block_start(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        p: Payload,
        payload: &[u8],
        skip: usize,
        promised: Option<u32>,
        out: &mut Vec<Emit>,
    ) {
        let h = p.h;
        let mut block = Block {
            stream: h.stream,
            promised,
            end_stream: h.flags & END_STREAM != 0,
            ts: p.ts,
            wire: (FRAME_HEADER as u64) + u64::from(h.len),
            fragment: Vec::new(),
            too_large: false,
            flags: Vec::new(),
        };
        match fragment(payload, h, skip) {
            Ok(f) if payload.len() == h.len as usize => self.extend_block(&mut block, f),
            Ok(_) => block.too_large = true,
            Err(why) => {
                self.parse_error(why, out);
                block.flags.push(format!("malformed:{why}"));
                block.too_large = true;
            }
        }
        if h.flags & END_HEADERS != 0 {
            self.header_block(flow, dir, block, out);
        } else {
            self.sides[dir.index()].block = Some(block);
        }
    }

    fn extend_block(&self, block: &mut Block, fragment: &[u8]) {
        if block.too_large {
            return;
        }
        if block.fragment.len() + fragment.len() > self.config.max_head {
            block.too_large = true;
            block.fragment = Vec::new();
        } else {
            block.fragment.extend_from_slice(fragment);
        }
    }

    fn continuation(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        h: &FrameHeader,
        payload: &[u8],
        out: &mut Vec<Emit>,
    ) {
        let Some(mut block) = self.sides[dir.index()].block.take() else {
            return;
        };
        block.wire += (FRAME_HEADER as u64) + u64::from(h.len);
        if payload.len() == h.len as usize {
            self.extend_block(&mut block, payload);
        } else {
            block.too_large = true;
        }
        if h.flags & END_HEADERS != 0 {
            self.header_block(flow, dir, block, out);
        } else {
            self.sides[dir.index()].block = Some(block);
        }
    }

    /// A header block ended without its CONTINUATIONs: what it held is lost,
    /// and with it the header table's state.
    fn broken_block(&mut self, dir: Direction, flag: &str) {
        let side = &mut self.sides[dir.index()];
        let Some(block) = side.block.take() else {
            return;
        };
        side.hpack.lose();
        let id = block.promised.unwrap_or(block.stream);
        if let Some(s) = self.streams.get_mut(&id) {
            let half = s.half(dir);
            half.flag(flag);
            half.flag("hpack_unknown");
        }
    }

    fn header_block(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        mut block: Block,
        out: &mut Vec<Emit>,
    ) {
        let side = &mut self.sides[dir.index()];
        let mut decoded = if block.too_large {
            // Undecodable, so the table's later state is unknown too.
            side.hpack.lose();
            Decoded {
                headers: Vec::new(),
                flags: vec![
                    "malformed:header_block_too_large".into(),
                    "hpack_unknown".into(),
                ],
            }
        } else {
            side.hpack.decode(&block.fragment, self.config.max_head)
        };
        decoded.flags.append(&mut block.flags);
        if decoded.flags.iter().any(|f| f.starts_with("malformed:")) {
            self.parse_error("header_block", out);
        }
        match block.promised {
            Some(promised) => self.promise(flow, promised, decoded, block.ts, block.wire, out),
            None => self.headers(flow, dir, &block, decoded, out),
        }
    }

    /// Decoded headers (or trailers) of a stream's request or response.
    fn headers(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        block: &Block,
        decoded: Decoded,
        out: &mut Vec<Emit>,
    ) {
        let id = block.stream;
        let opens = dir == Direction::ToServer && id % 2 == 1 && !self.streams.contains_key(&id);
        if self.stream_for(flow, id, out).is_none() {
            return;
        }
        if opens {
            Opened::note(&mut self.client_opened, id);
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let half = s.half(dir);
        half.touch(block.ts);
        half.wire += block.wire;
        for f in &decoded.flags {
            half.flag(f);
        }
        let status = decoded
            .headers
            .iter()
            .find(|(n, _)| n == ":status")
            .and_then(|(_, v)| v.parse::<u32>().ok());
        if half.headers.is_none() {
            if dir == Direction::ToClient && status.is_some_and(|s| (100..200).contains(&s)) {
                // Interim (100 Continue, 103 Early Hints): the final response follows.
            } else {
                if dir == Direction::ToClient {
                    // Elapsed time runs to the final response, as for HTTP/1.
                    half.ts = block.ts;
                }
                half.headers = Some(decoded.headers);
            }
        } else if half.trailers.is_empty() {
            half.trailers = decoded.headers;
        }
        let is_grpc = |h: &Half| {
            h.headers.as_ref().is_some_and(|hs| {
                hs.iter()
                    .any(|(n, v)| n == "content-type" && grpc::is_grpc(v))
            })
        };
        if !s.grpc && (is_grpc(&s.req) || is_grpc(&s.resp)) {
            s.grpc = true;
        }
        if block.end_stream {
            self.end_stream(flow, dir, id, out);
        }
    }

    /// A PUSH_PROMISE: the server opens stream `promised` with this request.
    fn promise(
        &mut self,
        flow: &FlowInfo,
        promised: u32,
        decoded: Decoded,
        ts: u64,
        wire: u64,
        out: &mut Vec<Emit>,
    ) {
        if self.streams.contains_key(&promised) || self.is_closed(promised) {
            return;
        }
        if self.stream_for(flow, promised, out).is_none() {
            return;
        }
        Opened::note(&mut self.server_opened, promised);
        let Some(s) = self.streams.get_mut(&promised) else {
            return;
        };
        s.req.touch(ts);
        s.req.wire = wire;
        s.req.headers = Some(decoded.headers);
        s.req.flags = decoded.flags;
        s.req.ended = true;
    }

    /// Streams reset by the client whose response did not come in time
    /// become entries as they are.
    fn expire_resets(&mut self, flow: &FlowInfo, now: u64, out: &mut Vec<Emit>) {
        while let Some(&(id, at)) = self.reset_waiting.front() {
            if now.saturating_sub(at) < RESET_WAIT_NS {
                break;
            }
            self.reset_waiting.pop_front();
            if let Some(s) = self.streams.remove(&id) {
                self.emit(flow, id, s, out);
            }
        }
    }

    fn end_stream(&mut self, flow: &FlowInfo, dir: Direction, id: u32, out: &mut Vec<Emit>) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.half(dir).ended = true;
        if s.done()
            && let Some(s) = self.streams.remove(&id)
        {
            self.emit(flow, id, s, out);
        }
    }

    fn settings(&mut self, dir: Direction, payload: &[u8], out: &mut Vec<Emit>) {
        // A peer's settings bound what the other peer sends it.
        let other = dir.reverse().index();
        for s in payload.chunks_exact(6) {
            let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match u16::from_be_bytes([s[0], s[1]]) {
                0x1 => self.sides[other].hpack.set_allowed(value),
                0x5 if (DEFAULT_MAX_FRAME..=LARGEST_FRAME).contains(&value) => {
                    self.sides[other].max_frame = value;
                }
                0x5 => self.parse_error("max_frame_size", out),
                _ => {}
            }
        }
    }

    /// Streams the GOAWAY's receiver opened above `last` were not processed and never will be.
    fn goaway(&mut self, flow: &FlowInfo, dir: Direction, last: u32, out: &mut Vec<Emit>) {
        let receiver_opens_odd = dir == Direction::ToClient;
        let gone: Vec<u32> = self
            .streams
            .range(last.saturating_add(1)..)
            .map(|(id, _)| *id)
            .filter(|id| (id % 2 == 1) == receiver_opens_odd)
            .collect();
        for id in gone {
            if let Some(mut s) = self.streams.remove(&id) {
                s.flags.push("goaway".into());
                self.emit(flow, id, s, out);
            }
        }
    }

    fn is_closed(&self, id: u32) -> bool {
        !self.streams.contains_key(&id)
            && (Opened::covers(self.client_opened, id)
                || Opened::covers(self.server_opened, id)
                || self.closed_early.contains(&id))
    }

    /// The stream `id`, opened if it is new; `None` once it is closed.
    fn stream_for(&mut self, flow: &FlowInfo, id: u32, out: &mut Vec<Emit>) -> Option<&mut Stream> {
        if self.is_closed(id) {
            return None;
        }
        if !self.streams.contains_key(&id)
            && self.streams.len() >= self.config.max_pending.max(1)
            && let Some((old, mut s)) = self.streams.pop_first()
        {
            // Too many open streams: the oldest becomes an entry as it is.
            for half in [&mut s.req, &mut s.resp] {
                if half.seen && !half.ended {
                    half.flag("incomplete");
                }
            }
            out.push(Emit::Dropped {
                protocol: "http2",
                what: "open stream",
            });
            self.emit(flow, old, s, out);
        }
        Some(self.streams.entry(id).or_default())
    }

    fn emit(&mut self, flow: &FlowInfo, id: u32, s: Stream, out: &mut Vec<Emit>) {
        let protocol = if s.grpc {
            Protocol::Grpc
        } else {
            Protocol::Http2
        };
        let max = self.config.max_body;
        let req = s.req.seen.then(|| {
            let (ts_ns, wire_size, flags, (pseudo, headers, trailers, body)) = parts(s.req, max);
            let kind = if s.grpc {
                let side = grpc::Side {
                    headers,
                    trailers,
                    framer: body.framer,
                    body_size: body.wire,
                };
                request::Kind::Grpc(Box::new(grpc::request(
                    &pseudo.path,
                    &pseudo.authority,
                    side,
                )))
            } else {
                request::Kind::Http(Box::new(http_request(pseudo, headers, trailers, body.body)))
            };
            Message {
                ts_ns,
                wire_size,
                flags,
                body: Request { kind: Some(kind) },
            }
        });
        let resp = s.resp.seen.then(|| {
            let (ts_ns, wire_size, flags, (pseudo, headers, trailers, body)) = parts(s.resp, max);
            let kind = if s.grpc {
                let side = grpc::Side {
                    headers,
                    trailers,
                    framer: body.framer,
                    body_size: body.wire,
                };
                response::Kind::Grpc(Box::new(grpc::response(pseudo.status, side)))
            } else {
                response::Kind::Http(Box::new(HttpResponse {
                    status: pseudo.status,
                    reason: String::new(),
                    version: "2".into(),
                    headers,
                    body: body.body,
                    trailers,
                }))
            };
            Message {
                ts_ns,
                wire_size,
                flags,
                body: Response { kind: Some(kind) },
            }
        });
        let upgraded = id == 1 && req.is_none();
        let mut entry = pair::entry(flow, self.made, protocol, req, resp);
        self.made += 1;
        entry.stream_id = u64::from(id);
        for f in s.flags {
            if !entry.flags.contains(&f) {
                entry.flags.push(f);
            }
        }
        if upgraded && let Some(up) = &self.upgrade_entry {
            // The request is the HTTP/1 entry that asked for the upgrade.
            entry.flags.retain(|f| f != "no_request");
            entry.flags.push(format!("upgrade:{up}"));
        }
        if !Opened::covers(self.client_opened, id) && !Opened::covers(self.server_opened, id) {
            if self.closed_early.len() >= MAX_CLOSED_EARLY {
                self.closed_early.pop_front();
            }
            self.closed_early.push_back(id);
        }
        // GraphQL over HTTP/2 is recognised the same way as over HTTP/1.
        graphql::refine(&mut entry);
        out.push(Emit::Entry(Box::new(entry)));
    }
}

impl Dissector for Http2 {
    fn on_data(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        run_steps(data, |input| self.step(flow, dir, ts_ns, input, out));
    }

    fn on_gap(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        _ts_ns: u64,
        len: u64,
        out: &mut Vec<Emit>,
    ) {
        if let Phase::Payload(mut p) = self.sides[dir.index()].phase
            && p.h.kind == DATA
            && len <= u64::from(p.h.len - p.pos)
            && !(p.pos == 0 && p.h.flags & PADDED != 0)
        {
            // Within one DATA frame: the framing holds, only body bytes are lost.
            if let Some(s) = self.streams.get_mut(&p.h.stream) {
                let half = s.half(dir);
                half.flag("gap");
                half.body_cut = true;
                half.body_wire += len;
                if let Some(f) = &mut half.grpc {
                    f.gap();
                }
            }
            p.pos += len as u32;
            self.sides[dir.index()].phase = Phase::Payload(p);
            if p.pos == p.h.len {
                self.end_frame(flow, dir, p, out);
            }
            return;
        }
        self.lose_sync(dir);
    }

    fn on_close(&mut self, flow: &FlowInfo, _end: &FlowEnd, out: &mut Vec<Emit>) {
        for dir in [Direction::ToServer, Direction::ToClient] {
            if self.sides[dir.index()].block.is_some() {
                self.parse_error("incomplete_header_block", out);
                self.broken_block(dir, "incomplete");
            }
        }
        while let Some((id, mut s)) = self.streams.pop_first() {
            for half in [&mut s.req, &mut s.resp] {
                if half.seen && !half.ended {
                    half.flag("incomplete");
                }
            }
            self.emit(flow, id, s, out);
        }
    }
}

#[cfg(test)]
mod tests;
