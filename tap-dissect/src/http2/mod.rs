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

pub mod model;

use super::{
    Claim, DissectConfig, Dissector, Emit, Handoff, Step, encoding, graphql, grpc, run_steps,
};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{self, Message};
use loona_hpack::Decoder;
use loona_hpack::decoder::DecoderError;
use loona_hpack::encoder::encode_integer_into;
use loona_hpack::huffman::HuffmanDecoder;
use proto::v1::{
    Header, HttpRequest, HttpResponse, Protocol, Request, Response, request, response,
};
use std::cell::RefCell;
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

#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    len: u32,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHeader {
    fn parse(b: &[u8; FRAME_HEADER]) -> Self {
        FrameHeader {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// A rule whose breach is a connection error for a real peer: for us, a
    /// sign that the framing is lost.
    fn violation(&self) -> Option<&'static str> {
        let stream_frame = matches!(
            self.kind,
            DATA | HEADERS | PRIORITY | RST_STREAM | PUSH_PROMISE | CONTINUATION
        );
        match self.kind {
            _ if stream_frame && self.stream == 0 => Some("frame_on_stream_0"),
            SETTINGS | PING | GOAWAY if self.stream != 0 => Some("control_frame_on_a_stream"),
            PRIORITY if self.len != 5 => Some("priority_size"),
            RST_STREAM | WINDOW_UPDATE if self.len != 4 => Some("frame_size"),
            PING if self.len != 8 => Some("ping_size"),
            SETTINGS if !self.len.is_multiple_of(6) || (self.flags & ACK != 0 && self.len != 0) => {
                Some("settings_size")
            }
            GOAWAY if self.len < 8 => Some("goaway_size"),
            _ => None,
        }
    }
}

/// The flags each frame type defines; real peers set no others.
fn defined_flags(kind: u8) -> u8 {
    match kind {
        DATA => END_STREAM | PADDED,
        HEADERS => END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG,
        SETTINGS | PING => ACK,
        PUSH_PROMISE => END_HEADERS | PADDED,
        CONTINUATION => END_HEADERS,
        _ => 0,
    }
}

/// Whether the bytes (a whole frame header, or its first bytes) look like a
/// header a real peer sends: a known type with its own flags only, the
/// reserved bit clear, a length within `max_frame`, no rule broken.
fn plausible(b: &[u8], max_frame: u32) -> bool {
    if b.first().is_some_and(|l| u32::from(*l) > max_frame >> 16) {
        return false;
    }
    if b.get(3).is_some_and(|k| *k > CONTINUATION) {
        return false;
    }
    if let (Some(k), Some(f)) = (b.get(3), b.get(4))
        && f & !defined_flags(*k) != 0
    {
        return false;
    }
    if b.get(5).is_some_and(|r| r & 0x80 != 0) {
        return false;
    }
    let Ok(full) = <&[u8; FRAME_HEADER]>::try_from(b) else {
        return true;
    };
    let h = FrameHeader::parse(full);
    // An empty DATA frame that does not end its stream says nothing; peers do not send it.
    let pointless = h.kind == DATA && h.len == 0 && h.flags & END_STREAM == 0;
    h.len <= max_frame && h.violation().is_none() && !pointless
}

/// Whether a run of frames starts at `at`: [`CHAIN`] plausible headers in a
/// row (CONTINUATIONs only where a header block is open), or at least two
/// that reach the end of `b`.
fn chain_at(b: &[u8], mut at: usize, max_frame: u32) -> Claim {
    let mut seen = 0;
    let mut open_block: Option<u32> = None;
    loop {
        if seen >= CHAIN {
            return Claim::Yes;
        }
        let rest = &b[at.min(b.len())..];
        if rest.len() < FRAME_HEADER {
            return if seen >= 2 {
                Claim::Yes
            } else if plausible(rest, max_frame) {
                Claim::NeedMore
            } else {
                Claim::No
            };
        }
        let raw: &[u8; FRAME_HEADER] = rest[..FRAME_HEADER].try_into().expect("length checked");
        if !plausible(raw, max_frame) {
            return Claim::No;
        }
        let h = FrameHeader::parse(raw);
        match open_block {
            Some(s) if h.kind != CONTINUATION || h.stream != s => return Claim::No,
            None if h.kind == CONTINUATION => return Claim::No,
            _ => {}
        }
        open_block = (matches!(h.kind, HEADERS | PUSH_PROMISE | CONTINUATION)
            && h.flags & END_HEADERS == 0)
            .then_some(h.stream);
        seen += 1;
        at += FRAME_HEADER + h.len as usize;
        if at > b.len() {
            return if seen >= 2 {
                Claim::Yes
            } else {
                Claim::NeedMore
            };
        }
    }
}

/// Whether `b` is one or more plausible frames, ending exactly at its end.
fn whole_frames(b: &[u8], max_frame: u32) -> bool {
    let mut at = 0;
    let mut open_block: Option<u32> = None;
    while at < b.len() {
        let Some(raw) = b.get(at..at + FRAME_HEADER) else {
            return false;
        };
        if !plausible(raw, max_frame) {
            return false;
        }
        let h = FrameHeader::parse(raw.try_into().expect("length checked"));
        match open_block {
            Some(s) if h.kind != CONTINUATION || h.stream != s => return false,
            None if h.kind == CONTINUATION => return false,
            _ => {}
        }
        open_block = (matches!(h.kind, HEADERS | PUSH_PROMISE | CONTINUATION)
            && h.flags & END_HEADERS == 0)
            .then_some(h.stream);
        at += FRAME_HEADER + h.len as usize;
    }
    at == b.len() && open_block.is_none()
}

/// The first offset in `b` where a run of frames starts; otherwise the first
/// offset where one may start once more bytes come (`b.len()` if none).
fn find_frame_start(b: &[u8], max_frame: u32) -> Result<usize, usize> {
    let mut pending = None;
    for at in 0..b.len() {
        match chain_at(b, at, max_frame) {
            Claim::Yes => return Ok(at),
            Claim::NeedMore => {
                pending.get_or_insert(at);
            }
            Claim::No => {}
        }
    }
    Err(pending.unwrap_or(b.len()))
}

/// Claims a stream whose client side starts with the connection preface or
/// whose server side starts with a SETTINGS frame; mid-stream, a run of
/// plausible frame headers anywhere in the first bytes.
pub fn probe(dir: Direction, first: &[u8], midstream: bool) -> Claim {
    let n = first.len().min(PREFACE.len());
    if dir == Direction::ToServer && first[..n] == PREFACE[..n] {
        return if n == PREFACE.len() {
            Claim::Yes
        } else {
            Claim::NeedMore
        };
    }
    if midstream {
        return match find_frame_start(first, DEFAULT_MAX_FRAME) {
            Ok(_) => Claim::Yes,
            Err(at) if at < first.len() => Claim::NeedMore,
            Err(_) => Claim::No,
        };
    }
    if dir == Direction::ToServer {
        return Claim::No;
    }
    // A server speaks first with its SETTINGS, often before the client's preface arrives.
    let settings_start = |b: &[u8]| {
        let want: [Option<u8>; FRAME_HEADER] = [
            Some(0),
            None,
            None,
            Some(SETTINGS),
            Some(0),
            Some(0),
            Some(0),
            Some(0),
            Some(0),
        ];
        b.iter()
            .zip(want)
            .all(|(byte, w)| w.is_none_or(|w| w == *byte))
    };
    if !settings_start(first) {
        Claim::No
    } else if first.len() < FRAME_HEADER {
        Claim::NeedMore
    } else if u32::from_be_bytes([0, first[0], first[1], first[2]]).is_multiple_of(6) {
        Claim::Yes
    } else {
        Claim::No
    }
}

pub fn new(
    flow: &FlowInfo,
    config: &DissectConfig,
    handoff: Option<&Handoff>,
) -> Box<dyn Dissector> {
    Box::new(Http2::new(flow, config, handoff))
}

#[derive(Debug, Clone, Copy)]
struct Payload {
    h: FrameHeader,
    /// Capture time of the frame's first byte.
    ts: u64,
    /// Payload bytes read so far.
    pos: u32,
    /// A DATA frame's padding length, once read.
    pad: u32,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The client's connection preface: bytes of it matched so far.
    Preface(usize),
    Header,
    Payload(Payload),
    /// Looking for a frame boundary after a gap, bad bytes or a mid-stream start.
    Resync,
}

/// HPACK decoding of one direction's header blocks.
struct Hpack {
    decoder: Decoder<'static>,
    /// The table is known from the connection's start; false after a
    /// mid-stream start, a gap, or a block that did not decode.
    known: bool,
    /// SETTINGS_HEADER_TABLE_SIZE of the decoding peer, as it was sent.
    advertised: u32,
}

thread_local! {
    /// loona-hpack builds its Huffman table (a map of 257 codes) for every
    /// string it decodes, which made up most of the cost of HTTP/2; this one
    /// table per thread decodes the strings for it instead.
    static HUFFMAN: RefCell<HuffmanDecoder> = RefCell::new(HuffmanDecoder::new());
}

/// An HPACK integer with an N-bit prefix (RFC 7541 §5.1), limited to five
/// octets as loona-hpack limits it: the value and the octets it took.
fn hpack_integer(b: &[u8], prefix: u8) -> Option<(usize, usize)> {
    let mask = (1usize << prefix) - 1;
    let mut v = usize::from(*b.first()?) & mask;
    if v < mask {
        return Some((v, 1));
    }
    for (k, byte) in b.iter().enumerate().skip(1).take(4) {
        v += usize::from(byte & 0x7f) << (7 * (k - 1));
        if byte & 0x80 == 0 {
            return Some((v, k + 1));
        }
    }
    None
}

/// Copies the string literal at `at` to `out`, Huffman-decoded and written
/// raw when it was coded; returns where the next field starts.
fn raw_string(
    b: &[u8],
    at: usize,
    huffman: &mut HuffmanDecoder,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let rest = b.get(at..)?;
    let (len, n) = hpack_integer(rest, 7)?;
    let end = n.checked_add(len)?;
    let coded = rest.get(n..end)?;
    match (rest[0] & 0x80 != 0).then(|| huffman.decode(coded)) {
        Some(Ok(raw)) => {
            encode_integer_into(raw.len(), 7, 0, out).ok()?;
            out.extend_from_slice(&raw);
        }
        // Raw already, or a bad code that loona-hpack will report.
        _ => out.extend_from_slice(&rest[..end]),
    }
    Some(at + end)
}

/// The block with its Huffman-coded strings written out raw, which decodes to
/// the same headers; `None` when the block does not parse, and loona-hpack
/// then reads the original and says why. At most 8/5 of the block's size.
fn without_huffman(block: &[u8]) -> Option<Vec<u8>> {
    HUFFMAN.with_borrow_mut(|huffman| {
        let mut out = Vec::with_capacity(block.len() + block.len() / 2);
        let mut i = 0;
        while i < block.len() {
            let b = block[i];
            // Representations (RFC 7541 §6): indexed, literal with incremental
            // indexing, size update, literal without or never indexed.
            let (prefix, literal) = if b & 0x80 != 0 {
                (7, false)
            } else if b & 0x40 != 0 {
                (6, true)
            } else if b & 0x20 != 0 {
                (5, false)
            } else {
                (4, true)
            };
            let (index, n) = hpack_integer(&block[i..], prefix)?;
            out.extend_from_slice(&block[i..i + n]);
            i += n;
            if literal {
                if index == 0 {
                    i = raw_string(block, i, huffman, &mut out)?;
                }
                i = raw_string(block, i, huffman, &mut out)?;
            }
        }
        Some(out)
    })
}

/// A decoded header block and what went wrong decoding it.
#[derive(Debug, Default)]
struct Decoded {
    headers: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Hpack {
    fn new(known: bool) -> Self {
        let mut h = Hpack {
            decoder: Decoder::new(),
            known: true,
            advertised: DEFAULT_TABLE_SIZE as u32,
        };
        h.decoder.set_max_allowed_table_size(DEFAULT_TABLE_SIZE);
        if !known {
            h.lose();
        }
        h
    }

    /// From here on only entries the peer adds are known. They sit at the
    /// newest positions whatever came before, so a reference to them decodes
    /// right and one past them fails instead of being guessed. The table may
    /// grow larger than the peer's: it then keeps entries the peer evicted and
    /// never refers to again, which is harmless.
    fn lose(&mut self) {
        self.decoder = Decoder::new();
        self.decoder.set_max_allowed_table_size(MAX_TABLE_SIZE);
        self.decoder.set_max_table_size(MAX_TABLE_SIZE);
        self.known = false;
    }

    fn set_allowed(&mut self, size: u32) {
        self.advertised = size;
        if self.known {
            self.decoder
                .set_max_allowed_table_size((size as usize).min(MAX_TABLE_SIZE));
        }
    }

    /// Decodes a block; headers past `max_list` bytes (counted as HPACK's
    /// header list size) are dropped. The whole block is still read, at a
    /// cost bounded by its size, so the dynamic table stays in step.
    fn decode(&mut self, block: &[u8], max_list: usize) -> Decoded {
        let mut d = Decoded::default();
        let mut size = 0usize;
        let mut over = false;
        let raw = without_huffman(block);
        let block = raw.as_deref().unwrap_or(block);
        let r = self.decoder.decode_with_cb(block, |name, value| {
            size = size.saturating_add(name.len() + value.len() + 32);
            if size > max_list {
                over = true;
            } else {
                d.headers.push((
                    String::from_utf8_lossy(&name).into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                ));
            }
        });
        if over {
            d.flags.push("malformed:header_list_too_large".into());
        }
        match r {
            // A size update ending a block is out of place but changes nothing decoded.
            Ok(()) | Err(DecoderError::SizeUpdateAtEnd) => {}
            Err(e) => {
                // Past our own cap the peer may be within its SETTINGS: unknown, not malformed.
                let beyond_our_cap = matches!(e, DecoderError::InvalidMaxDynamicSize)
                    && self.advertised as usize > MAX_TABLE_SIZE;
                if self.known && !beyond_our_cap {
                    let why = match e {
                        DecoderError::HeaderIndexOutOfBounds => "index",
                        DecoderError::IntegerDecodingError(_) => "integer",
                        DecoderError::StringDecodingError(_) => "string",
                        DecoderError::InvalidMaxDynamicSize => "table_size",
                        _ => "error",
                    };
                    d.flags.push(format!("malformed:hpack_{why}"));
                }
                d.flags.push("hpack_unknown".into());
                self.lose();
            }
        }
        d
    }
}

/// A header block being gathered across CONTINUATION frames.
struct Block {
    stream: u32,
    /// A PUSH_PROMISE's promised stream.
    promised: Option<u32>,
    end_stream: bool,
    ts: u64,
    wire: u64,
    fragment: Vec<u8>,
    /// Longer than `max_head`: not kept, not decodable.
    too_large: bool,
    flags: Vec<String>,
}

struct Side {
    phase: Phase,
    head: [u8; FRAME_HEADER],
    head_len: usize,
    head_ts: u64,
    /// The current frame's kept payload, or the resync window.
    buf: Vec<u8>,
    block: Option<Block>,
    hpack: Hpack,
    /// Largest frame the other peer accepts (its SETTINGS_MAX_FRAME_SIZE).
    max_frame: u32,
}

impl Side {
    fn new(phase: Phase, known: bool) -> Self {
        Side {
            phase,
            head: [0; FRAME_HEADER],
            head_len: 0,
            head_ts: 0,
            buf: Vec::new(),
            block: None,
            hpack: Hpack::new(known),
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// One side of a stream: a request or a response.
#[derive(Default)]
struct Half {
    seen: bool,
    ts: u64,
    wire: u64,
    /// The (final) header block, pseudo-headers included.
    headers: Option<Vec<(String, String)>>,
    trailers: Vec<(String, String)>,
    body: Vec<u8>,
    body_wire: u64,
    body_cut: bool,
    grpc: Option<grpc::Framer>,
    ended: bool,
    flags: Vec<String>,
}

impl Half {
    fn flag(&mut self, f: &str) {
        if !self.flags.iter().any(|x| x == f) {
            self.flags.push(f.to_string());
        }
    }

    /// The first frame of this side: its time is the message's.
    fn touch(&mut self, ts: u64) {
        if !self.seen {
            self.seen = true;
            self.ts = ts;
        }
    }
}

#[derive(Default)]
struct Stream {
    req: Half,
    resp: Half,
    grpc: bool,
    /// Conditions of the whole stream: reset, goaway.
    flags: Vec<String>,
}

impl Stream {
    fn half(&mut self, dir: Direction) -> &mut Half {
        match dir {
            Direction::ToServer => &mut self.req,
            Direction::ToClient => &mut self.resp,
        }
    }

    fn done(&self) -> bool {
        self.resp.ended && (self.req.ended || !self.req.seen)
    }
}

/// Stream ids one peer opened while we watched: every id in between was
/// opened too, as ids only grow, so one not open any more is closed.
#[derive(Debug, Clone, Copy)]
struct Opened {
    first: u32,
    last: u32,
}

impl Opened {
    fn note(o: &mut Option<Opened>, id: u32) {
        match o {
            Some(o) => o.last = o.last.max(id),
            None => {
                *o = Some(Opened {
                    first: id,
                    last: id,
                })
            }
        }
    }

    fn covers(o: Option<Opened>, id: u32) -> bool {
        o.is_some_and(|o| (o.first..=o.last).contains(&id))
    }
}

pub struct Http2 {
    config: DissectConfig,
    sides: [Side; 2],
    streams: BTreeMap<u32, Stream>,
    /// Streams the client opened (odd) and the server promised (even).
    client_opened: Option<Opened>,
    server_opened: Option<Opened>,
    closed_early: VecDeque<u32>,
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
                if let Some(mut s) = self.streams.remove(&h.stream) {
                    s.flags.push(format!("reset:{}", error_name(code)));
                    self.emit(flow, h.stream, s, out);
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

#[derive(Default)]
struct Pseudo {
    method: String,
    path: String,
    authority: String,
    status: u32,
}

struct BodyParts {
    body: Option<proto::v1::Body>,
    framer: Option<grpc::Framer>,
    wire: u64,
}

type HalfParts = (Pseudo, Vec<Header>, Vec<Header>, BodyParts);

/// A half's time, size, flags, pseudo-headers, headers, trailers and body.
fn parts(h: Half, max_body: usize) -> (u64, u64, Vec<String>, HalfParts) {
    let mut flags = h.flags;
    let mut pseudo = Pseudo::default();
    let mut headers = Vec::new();
    for (name, value) in h.headers.unwrap_or_default() {
        match name.as_str() {
            ":method" => pseudo.method = value,
            ":path" => pseudo.path = value,
            ":authority" => pseudo.authority = value,
            ":status" => pseudo.status = value.parse().unwrap_or(0),
            n if n.starts_with(':') => {}
            _ => headers.push(Header { name, value }),
        }
    }
    let trailers = h
        .trailers
        .into_iter()
        .filter(|(n, _)| !n.starts_with(':'))
        .map(|(name, value)| Header { name, value })
        .collect();
    if h.body_cut && !flags.iter().any(|f| f == "truncated") {
        flags.push("truncated".into());
    }
    let body = (h.grpc.is_none() && (h.body_wire > 0 || !h.body.is_empty())).then(|| {
        let coding = headers
            .iter()
            .find(|x: &&Header| x.name == "content-encoding")
            .map(|x| x.value.as_str());
        encoding::body(h.body, h.body_wire, !h.body_cut, coding, max_body)
    });
    let body = BodyParts {
        body,
        framer: h.grpc,
        wire: h.body_wire,
    };
    (h.ts, h.wire, flags, (pseudo, headers, trailers, body))
}

fn http_request(
    pseudo: Pseudo,
    mut headers: Vec<Header>,
    trailers: Vec<Header>,
    body: Option<proto::v1::Body>,
) -> HttpRequest {
    if !pseudo.authority.is_empty() && !headers.iter().any(|h| h.name == "host") {
        headers.insert(
            0,
            Header {
                name: "host".into(),
                value: pseudo.authority.clone(),
            },
        );
    }
    // CONNECT names its target in :authority and has no :path.
    let path = if pseudo.path.is_empty() && pseudo.method == "CONNECT" {
        pseudo.authority
    } else {
        pseudo.path
    };
    HttpRequest {
        method: pseudo.method,
        path,
        version: "2".into(),
        headers,
        body,
        trailers,
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
mod tests {
    use super::*;
    use crate::Connection;
    use crate::GenericFields;
    use crate::flow::FlowHandler;
    use crate::testing::{entries, fin};
    use loona_hpack::Encoder;
    use proto::v1::Entry;
    use std::net::SocketAddr;
    use std::sync::Arc;

    const C: Direction = Direction::ToServer;
    const S: Direction = Direction::ToClient;

    fn flow(midstream: bool) -> FlowInfo {
        FlowInfo {
            id: 7,
            client: SocketAddr::from(([10, 0, 0, 1], 40000)),
            server: SocketAddr::from(([10, 0, 0, 2], 8080)),
            first_ts_ns: 1,
            midstream,
        }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        v.extend([kind, flags]);
        v.extend(stream.to_be_bytes());
        v.extend(payload);
        v
    }

    fn block(enc: &mut Encoder, list: &[(&str, &str)]) -> Vec<u8> {
        enc.encode(list.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    fn get(path: &str) -> Vec<(&str, &str)> {
        vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "example.test"),
            ("user-agent", "test/1"),
        ]
    }

    /// A conversation: bytes each way, in capture order.
    #[derive(Default)]
    struct Script {
        parts: Vec<(Direction, Vec<u8>)>,
        client: Encoder<'static>,
        server: Encoder<'static>,
    }

    impl Script {
        fn prior_knowledge() -> Self {
            let mut s = Script::default();
            let mut hello = PREFACE.to_vec();
            hello.extend(frame(SETTINGS, 0, 0, &[]));
            s.send(C, hello);
            s.send(S, frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
            s
        }

        fn send(&mut self, dir: Direction, bytes: Vec<u8>) {
            self.parts.push((dir, bytes));
        }

        fn request(&mut self, id: u32, headers: &[(&str, &str)], end: bool) {
            let b = block(&mut self.client, headers);
            let flags = END_HEADERS | if end { END_STREAM } else { 0 };
            self.send(C, frame(HEADERS, flags, id, &b));
        }

        fn response(&mut self, id: u32, headers: &[(&str, &str)], end: bool) {
            let b = block(&mut self.server, headers);
            let flags = END_HEADERS | if end { END_STREAM } else { 0 };
            self.send(S, frame(HEADERS, flags, id, &b));
        }

        fn data(&mut self, dir: Direction, id: u32, body: &[u8], end: bool) {
            self.send(dir, frame(DATA, if end { END_STREAM } else { 0 }, id, body));
        }

        /// Feeds the conversation in pieces of at most `chunk` bytes.
        fn run_with(&self, midstream: bool, config: DissectConfig, chunk: usize) -> Vec<Entry> {
            let flow = flow(midstream);
            let mut conn = Connection::new(Arc::new(config));
            let mut out = Vec::new();
            let mut ts = 1;
            for (dir, bytes) in &self.parts {
                ts += 1000;
                for piece in bytes.chunks(chunk) {
                    conn.on_data(&flow, *dir, ts, piece, &mut out);
                }
            }
            conn.on_close(&flow, &fin(ts), &mut out);
            entries(out)
        }

        fn run(&self) -> Vec<Entry> {
            self.run_with(false, DissectConfig::default(), usize::MAX)
        }
    }

    fn req(e: &Entry) -> &HttpRequest {
        match e.request.as_ref().and_then(|r| r.kind.as_ref()) {
            Some(request::Kind::Http(r)) => r,
            other => panic!("not an HTTP request: {other:?}"),
        }
    }

    fn resp(e: &Entry) -> &HttpResponse {
        match e.response.as_ref().and_then(|r| r.kind.as_ref()) {
            Some(response::Kind::Http(r)) => r,
            other => panic!("not an HTTP response: {other:?}"),
        }
    }

    fn header<'a>(hs: &'a [Header], name: &str) -> Option<&'a str> {
        hs.iter().find(|h| h.name == name).map(|h| h.value.as_str())
    }

    fn by_stream(entries: &[Entry], id: u64) -> &Entry {
        entries
            .iter()
            .find(|e| e.stream_id == id)
            .unwrap_or_else(|| panic!("no entry for stream {id}"))
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn huffman_coded_requests_of_rfc_7541() {
        // RFC 7541 C.4: three requests with Huffman-coded strings and a growing dynamic table.
        let mut h = Hpack::new(true);
        let blocks = [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ];
        let want = [
            "GET http / www.example.com",
            "GET http / www.example.com no-cache",
            "GET https /index.html www.example.com custom-key custom-value",
        ];
        for (block, want) in blocks.iter().zip(want) {
            let raw = without_huffman(&hex(block)).unwrap();
            assert!(raw.len() > hex(block).len());
            let d = h.decode(&hex(block), 4096);
            assert!(d.flags.is_empty(), "{:?}", d.flags);
            let got: Vec<String> = d
                .headers
                .iter()
                .flat_map(|(n, v)| {
                    let name = (n == "custom-key").then(|| n.clone());
                    name.into_iter().chain(std::iter::once(v.clone()))
                })
                .collect();
            assert_eq!(got.join(" "), want);
        }
        // A bad Huffman code is left for loona-hpack, which reports it.
        let d = Hpack::new(true).decode(&hex("0085 ffff ffff ff01 61"), 4096);
        assert!(
            d.flags.contains(&"malformed:hpack_string".into()),
            "{:?}",
            d.flags
        );
    }

    #[test]
    fn probe_claims_the_preface_and_the_server_settings_only() {
        assert_eq!(probe(C, b"PRI * HT", false), Claim::NeedMore);
        assert_eq!(probe(C, PREFACE, false), Claim::Yes);
        assert_eq!(probe(C, b"GET / HTTP/1.1\r\n", false), Claim::No);
        assert_eq!(probe(C, b"POST / HTTP/1.1\r\n", false), Claim::No);
        let settings = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        assert_eq!(probe(S, &settings, false), Claim::Yes);
        assert_eq!(probe(S, &settings[..4], false), Claim::NeedMore);
        assert_eq!(probe(S, b"HTTP/1.1 200 OK\r\n", false), Claim::No);
        assert_eq!(probe(S, &frame(DATA, 0, 1, b"x"), false), Claim::No);
        // Mid-stream: a run of frames after the tail of an earlier one.
        let mut mid = b"tail of a body".to_vec();
        mid.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        mid.extend(frame(PING, 0, 0, &[0; 8]));
        mid.extend(frame(DATA, 0, 3, b"abc"));
        assert_eq!(probe(S, &mid, true), Claim::Yes);
        assert_eq!(
            probe(C, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", true),
            Claim::No
        );
        let text: Vec<u8> = (0..4096).map(|i| b"lorem ipsum "[i % 12]).collect();
        assert_eq!(probe(C, &text, true), Claim::No);
    }

    #[test]
    fn graphql_over_http2_is_a_graphql_entry() {
        let mut s = Script::prior_knowledge();
        let mut post = get("/graphql");
        post[0] = (":method", "POST");
        post.push(("content-type", "application/json"));
        s.request(1, &post, false);
        s.data(C, 1, br#"{"query":"query Shop { items { id } }"}"#, true);
        s.response(
            1,
            &[(":status", "200"), ("content-type", "application/json")],
            false,
        );
        s.data(S, 1, br#"{"data":{"items":[]}}"#, true);
        s.request(3, &get("/plain"), true);
        s.response(3, &[(":status", "200")], true);
        let entries = s.run();
        let gql = by_stream(&entries, 1);
        assert_eq!(gql.protocol, Protocol::Graphql as i32);
        assert_eq!(gql.method(), Some("query"));
        assert_eq!(gql.path(), Some("Shop"));
        assert_eq!(gql.status(), Some(200));
        assert_eq!(by_stream(&entries, 3).protocol, Protocol::Http2 as i32);
    }

    #[test]
    fn requests_and_responses_pair_by_stream() {
        let mut s = Script::prior_knowledge();
        s.request(1, &get("/a"), true);
        let mut post = get("/submit");
        post[0] = (":method", "POST");
        post.push(("content-type", "text/plain"));
        s.request(3, &post, false);
        s.data(C, 3, b"hello ", false);
        s.data(C, 3, b"world", true);
        s.response(3, &[(":status", "201")], false);
        s.data(S, 3, b"made", true);
        s.response(
            1,
            &[(":status", "200"), ("content-type", "text/plain")],
            false,
        );
        s.data(S, 1, b"body of a", true);
        let entries = s.run();
        assert_eq!(entries.len(), 2);
        let a = by_stream(&entries, 1);
        assert_eq!(a.protocol, Protocol::Http2 as i32);
        assert_eq!(
            (a.method(), a.path(), a.status()),
            (Some("GET"), Some("/a"), Some(200))
        );
        assert_eq!(req(a).version, "2");
        assert_eq!(header(&req(a).headers, "host"), Some("example.test"));
        assert!(req(a).headers.iter().all(|h| !h.name.starts_with(':')));
        assert_eq!(resp(a).body.as_ref().unwrap().data, b"body of a");
        let p = by_stream(&entries, 3);
        assert_eq!((p.method(), p.status()), (Some("POST"), Some(201)));
        assert_eq!(req(p).body.as_ref().unwrap().data, b"hello world");
        // Frame headers count in the sizes: HEADERS + two DATA frames.
        assert!(p.request_size > 9 * 3 + 11);
        assert!(p.flags.is_empty(), "{:?}", p.flags);
        assert!(a.elapsed_ns.is_some());
        // Entries are numbered on the flow in the order they completed.
        assert_eq!(p.id, "0000000000000007-0");
        assert_eq!(a.id, "0000000000000007-1");
    }

    #[test]
    fn interleaved_streams_and_any_segmentation() {
        let mut s = Script::prior_knowledge();
        for id in [1, 3, 5] {
            s.request(id, &get(&format!("/file{id}")), true);
        }
        for id in [5, 1, 3] {
            s.response(id, &[(":status", "200")], false);
        }
        for round in 0..3 {
            for id in [3, 5, 1] {
                s.data(S, id, format!("{id}:{round};").as_bytes(), round == 2);
            }
        }
        for chunk in [usize::MAX, 7, 1] {
            let entries = s.run_with(false, DissectConfig::default(), chunk);
            assert_eq!(entries.len(), 3, "chunk {chunk}");
            for id in [1u64, 3, 5] {
                let e = by_stream(&entries, id);
                assert_eq!(e.path(), Some(format!("/file{id}").as_str()));
                let body = &resp(e).body.as_ref().unwrap().data;
                assert_eq!(body, format!("{id}:0;{id}:1;{id}:2;").as_bytes());
            }
        }
    }

    #[test]
    fn continuation_and_padding() {
        let mut s = Script::prior_knowledge();
        let mut headers = get("/long");
        let big = "v".repeat(300);
        headers.push(("x-big", &big));
        let b = block(&mut s.client, &headers);
        let (one, rest) = b.split_at(10);
        let (two, three) = rest.split_at(100);
        // HEADERS padded and with priority, then two CONTINUATIONs.
        let mut first = vec![4u8];
        first.extend([0, 0, 0, 0, 16]);
        first.extend(one);
        first.extend([0; 4]);
        let mut bytes = frame(HEADERS, PADDED | PRIORITY_FLAG | END_STREAM, 1, &first);
        bytes.extend(frame(CONTINUATION, 0, 1, two));
        bytes.extend(frame(CONTINUATION, END_HEADERS, 1, three));
        s.send(C, bytes);
        s.response(1, &[(":status", "200")], false);
        let mut padded = vec![3u8];
        padded.extend(b"data");
        padded.extend([0; 3]);
        s.send(S, frame(DATA, PADDED | END_STREAM, 1, &padded));
        for chunk in [usize::MAX, 1] {
            let entries = s.run_with(false, DissectConfig::default(), chunk);
            assert_eq!(entries.len(), 1);
            let e = &entries[0];
            assert_eq!(e.path(), Some("/long"));
            assert_eq!(header(&req(e).headers, "x-big"), Some(big.as_str()));
            assert_eq!(resp(e).body.as_ref().unwrap().data, b"data");
            assert!(e.flags.is_empty(), "{:?}", e.flags);
        }
    }

    #[test]
    fn too_long_header_block_is_flagged_and_bounded() {
        let config = DissectConfig {
            max_head: 1000,
            ..Default::default()
        };
        let mut s = Script::prior_knowledge();
        let b = block(
            &mut s.client,
            &[(":method", "GET"), ("x", &"y".repeat(600))],
        );
        let mut bytes = frame(HEADERS, END_STREAM, 1, &b);
        // An endless run of CONTINUATIONs, each fine alone.
        for _ in 0..50 {
            bytes.extend(frame(CONTINUATION, 0, 1, &[0x82; 100]));
        }
        bytes.extend(frame(CONTINUATION, END_HEADERS, 1, &[0x82]));
        s.send(C, bytes);
        s.response(1, &[(":status", "431")], true);
        let entries = s.run_with(false, config, usize::MAX);
        let e = by_stream(&entries, 1);
        assert!(e.flags.contains(&"malformed:header_block_too_large".into()));
        assert!(e.flags.contains(&"hpack_unknown".into()));
        assert_eq!(e.status(), Some(431));
    }

    #[test]
    fn trailers_reset_and_goaway() {
        let mut s = Script::prior_knowledge();
        s.request(1, &get("/t"), true);
        s.request(3, &get("/cancelled"), true);
        s.request(5, &get("/never"), true);
        s.response(1, &[(":status", "200")], false);
        s.data(S, 1, b"x", false);
        s.response(1, &[("checksum", "abc")], true);
        let mut rst = frame(RST_STREAM, 0, 3, &8u32.to_be_bytes());
        rst.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]));
        s.send(S, rst);
        let entries = s.run();
        assert_eq!(entries.len(), 3);
        let t = by_stream(&entries, 1);
        assert_eq!(header(&resp(t).trailers, "checksum"), Some("abc"));
        assert!(t.flags.is_empty(), "{:?}", t.flags);
        let c = by_stream(&entries, 3);
        assert!(c.flags.contains(&"reset:cancel".into()), "{:?}", c.flags);
        let n = by_stream(&entries, 5);
        assert!(n.flags.contains(&"goaway".into()), "{:?}", n.flags);
        assert!(n.flags.contains(&"no_response".into()));
    }

    #[test]
    fn server_push_becomes_its_own_entry() {
        let mut s = Script::prior_knowledge();
        s.request(1, &get("/page"), true);
        let promise = block(&mut s.server, &get("/style.css"));
        let mut payload = 2u32.to_be_bytes().to_vec();
        payload.extend(promise);
        s.send(S, frame(PUSH_PROMISE, END_HEADERS, 1, &payload));
        s.response(1, &[(":status", "200")], true);
        s.response(
            2,
            &[(":status", "200"), ("content-type", "text/css")],
            false,
        );
        s.data(S, 2, b"body{}", true);
        let entries = s.run();
        assert_eq!(entries.len(), 2);
        let pushed = by_stream(&entries, 2);
        assert_eq!(
            (pushed.method(), pushed.path()),
            (Some("GET"), Some("/style.css"))
        );
        assert_eq!(resp(pushed).body.as_ref().unwrap().data, b"body{}");
        assert!(pushed.flags.is_empty(), "{:?}", pushed.flags);
    }

    #[test]
    fn open_streams_are_bounded() {
        let mut s = Script::prior_knowledge();
        for id in [1, 3, 5] {
            s.request(id, &get("/slow"), true);
        }
        s.response(5, &[(":status", "200")], true);
        // Stream 1 was pushed out by stream 5; its late response opens nothing.
        s.response(1, &[(":status", "200")], true);
        s.response(3, &[(":status", "200")], true);
        let config = DissectConfig {
            max_pending: 2,
            ..Default::default()
        };
        let entries = s.run_with(false, config, usize::MAX);
        assert_eq!(entries.len(), 3, "{entries:?}");
        let one = by_stream(&entries, 1);
        assert_eq!(one.status(), None);
        assert!(one.flags.contains(&"no_response".into()));
        assert_eq!(by_stream(&entries, 3).status(), Some(200));
        assert_eq!(by_stream(&entries, 5).status(), Some(200));
    }

    #[test]
    fn dynamic_table_is_kept_across_requests() {
        let mut s = Script::prior_knowledge();
        let mut headers = get("/one");
        headers.push(("x-token", "secret-value"));
        s.request(1, &headers, true);
        let first_len = s.parts.last().unwrap().1.len();
        headers[2] = (":path", "/two");
        s.request(3, &headers, true);
        // The second block refers to the first's entries instead of repeating them.
        assert!(s.parts.last().unwrap().1.len() < first_len - 20);
        s.response(1, &[(":status", "200"), ("server", "x")], true);
        s.response(3, &[(":status", "404"), ("server", "x")], true);
        let entries = s.run();
        let two = by_stream(&entries, 3);
        assert_eq!(two.path(), Some("/two"));
        assert_eq!(header(&req(two).headers, "x-token"), Some("secret-value"));
        assert_eq!(header(&req(two).headers, "host"), Some("example.test"));
        assert_eq!(header(&resp(two).headers, "server"), Some("x"));
        assert_eq!(two.status(), Some(404));
    }

    #[test]
    fn hpack_bomb_and_table_size_beyond_settings() {
        let mut s = Script::prior_knowledge();
        // One 4000-byte entry, then 2000 one-byte references to it: 8 MB of headers.
        let mut b = block(&mut s.client, &get("/bomb"));
        b.extend(block(&mut s.client, &[("x-bomb", &"b".repeat(4000))]));
        b.extend([0xbe; 2000]);
        s.send(C, frame(HEADERS, END_HEADERS | END_STREAM, 1, &b));
        s.response(1, &[(":status", "400")], true);
        // A size update to 8192 when SETTINGS allow 4096.
        let mut b = vec![0x3f, 0xe1, 0x3f];
        b.extend(block(&mut s.client, &get("/big-table")));
        s.send(C, frame(HEADERS, END_HEADERS | END_STREAM, 3, &b));
        s.response(3, &[(":status", "200")], true);
        let config = DissectConfig::default();
        let max_head = config.max_head;
        let entries = s.run_with(false, config, usize::MAX);
        let bomb = by_stream(&entries, 1);
        assert!(
            bomb.flags
                .contains(&"malformed:header_list_too_large".into())
        );
        assert_eq!(bomb.path(), Some("/bomb"));
        let kept: usize = req(bomb)
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len() + 32)
            .sum();
        assert!(kept <= max_head, "{kept}");
        let big = by_stream(&entries, 3);
        assert!(
            big.flags.contains(&"malformed:hpack_table_size".into()),
            "{:?}",
            big.flags
        );
        assert!(big.flags.contains(&"hpack_unknown".into()));
        assert_eq!(big.status(), Some(200));
    }

    #[test]
    fn settings_raise_the_table_size_allowed() {
        let mut s = Script::default();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        s.send(C, hello);
        // The server's decoder accepts 8192 bytes of table.
        s.send(S, frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x20, 0]));
        s.client.set_max_table_size(8192);
        let mut b = vec![0x3f, 0xe1, 0x3f];
        b.extend(block(&mut s.client, &get("/ok")));
        s.send(C, frame(HEADERS, END_HEADERS | END_STREAM, 1, &b));
        s.response(1, &[(":status", "200")], true);
        let entries = s.run();
        assert_eq!(entries[0].path(), Some("/ok"));
        assert!(entries[0].flags.is_empty(), "{:?}", entries[0].flags);
    }

    #[test]
    fn oversized_frame_is_flagged_without_allocating_it() {
        let flow = flow(false);
        let mut d = Http2::new(&flow, &DissectConfig::default(), None);
        let mut out = Vec::new();
        let mut enc = Encoder::new();
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &block(&mut enc, &get("/up")),
        ));
        d.on_data(&flow, C, 1, &bytes, &mut out);
        // A DATA frame announcing 16 MiB - 1 bytes, then 1 MiB of it, then a HEADERS frame as long.
        let mut huge = vec![0xff, 0xff, 0xff, DATA, 0, 0, 0, 0, 1];
        d.on_data(&flow, C, 2, &huge, &mut out);
        for _ in 0..16 {
            d.on_data(&flow, C, 3, &[b'z'; 64 << 10], &mut out);
        }
        assert!(d.sides[0].buf.capacity() < 64 << 10);
        huge[3] = HEADERS;
        huge[8] = 3;
        let mut d2 = Http2::new(&flow, &DissectConfig::default(), None);
        d2.on_data(&flow, C, 1, PREFACE, &mut out);
        d2.on_data(&flow, C, 2, &huge, &mut out);
        for _ in 0..64 {
            d2.on_data(&flow, C, 3, &[0x82; 64 << 10], &mut out);
        }
        assert!(d2.sides[0].buf.capacity() <= (64 << 10) * 2 + FRAME_HEADER);
        d.on_close(&flow, &fin(9), &mut out);
        let entries = entries(out);
        let e = by_stream(&entries, 1);
        assert!(
            e.flags.contains(&"malformed:frame_too_large".into()),
            "{:?}",
            e.flags
        );
        let body = req(e).body.as_ref().unwrap();
        assert_eq!(body.wire_size, 1 << 20);
        assert_eq!(body.data.len(), 1 << 20);
    }

    #[test]
    fn midstream_start_says_what_the_table_hid() {
        let mut s = Script::default();
        // Before the capture: the client's encoder learnt these headers.
        let mut headers = get("/old");
        headers.push(("x-session", "s-1"));
        block(&mut s.client, &headers);
        block(&mut s.server, &[(":status", "200"), ("server", "srv")]);
        // The capture starts inside a DATA frame's payload.
        let mut first = b"...the end of an earlier body".to_vec();
        first.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0x10, 0]));
        first.extend(frame(PING, 0, 0, &[1; 8]));
        s.send(S, first);
        // Stream 9 refers to the unknown entries: decoded only up to the first of them.
        headers[2] = (":path", "/new");
        s.request(9, &headers, true);
        s.response(9, &[(":status", "200"), ("server", "srv")], true);
        // Stream 11 adds a new entry, stream 13 refers to it: that is known.
        s.request(11, &[(":method", "GET"), ("x-fresh", "f-1")], true);
        s.request(13, &[(":method", "PUT"), ("x-fresh", "f-1")], true);
        s.response(11, &[(":status", "204")], true);
        s.response(13, &[(":status", "201")], true);
        let entries = s.run_with(true, DissectConfig::default(), usize::MAX);
        assert_eq!(entries.len(), 3, "{entries:?}");
        let nine = by_stream(&entries, 9);
        assert!(
            nine.flags.contains(&"hpack_unknown".into()),
            "{:?}",
            nine.flags
        );
        assert!(nine.flags.contains(&"midstream".into()));
        // Literals and the static table decode; x-session was in the lost dynamic table.
        assert_eq!((nine.method(), nine.path()), (Some("GET"), Some("/new")));
        assert_eq!(header(&req(nine).headers, "x-session"), None);
        assert_eq!(nine.status(), Some(200));
        let thirteen = by_stream(&entries, 13);
        assert_eq!(thirteen.method(), Some("PUT"));
        assert_eq!(header(&req(thirteen).headers, "x-fresh"), Some("f-1"));
        assert!(!thirteen.flags.contains(&"hpack_unknown".into()));
        assert_eq!(thirteen.status(), Some(201));
    }

    #[test]
    fn gap_inside_data_keeps_framing_and_a_gap_elsewhere_resyncs() {
        let flow = flow(false);
        let mut conn = Connection::new(Arc::new(DissectConfig::default()));
        let mut out = Vec::new();
        let mut cenc = Encoder::new();
        let mut senc = Encoder::new();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        conn.on_data(&flow, C, 1, &hello, &mut out);
        let mut traced = get("/g");
        traced.push(("x-trace", "t1"));
        let h = frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &block(&mut cenc, &traced),
        );
        conn.on_data(&flow, C, 2, &h, &mut out);
        let mut r = frame(
            HEADERS,
            END_HEADERS,
            1,
            &block(&mut senc, &[(":status", "200")]),
        );
        let data = frame(DATA, END_STREAM, 1, &[b'd'; 100]);
        r.extend(&data[..50]);
        conn.on_data(&flow, S, 3, &r, &mut out);
        conn.on_gap(&flow, S, 4, 30, &mut out);
        conn.on_data(&flow, S, 5, &data[80..], &mut out);
        // Stream 3's request is lost in a gap that ends inside another frame.
        let h3 = frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &block(&mut cenc, &get("/lost")),
        );
        conn.on_gap(&flow, C, 6, h3.len() as u64 + 4, &mut out);
        let mut after = frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]);
        traced[2] = (":path", "/after");
        after.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            5,
            &block(&mut cenc, &traced),
        ));
        // Frames after the one the gap cut into: two in a row settle the boundary.
        after.extend(frame(PING, 0, 0, &[0; 8]));
        conn.on_data(&flow, C, 7, &after[4..], &mut out);
        let r5 = frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            5,
            &block(&mut senc, &[(":status", "200")]),
        );
        conn.on_data(&flow, S, 8, &r5, &mut out);
        conn.on_close(&flow, &fin(9), &mut out);
        let entries = entries(out);
        assert_eq!(entries.len(), 2, "{entries:?}");
        let one = by_stream(&entries, 1);
        assert!(one.flags.contains(&"gap".into()));
        assert_eq!(resp(one).body.as_ref().unwrap().wire_size, 100);
        assert_eq!(one.status(), Some(200));
        let five = by_stream(&entries, 5);
        assert_eq!(five.status(), Some(200));
        // Stream 5's block refers to the entry stream 1 added before the gap.
        assert!(
            five.flags.contains(&"hpack_unknown".into()),
            "{:?}",
            five.flags
        );
        assert_eq!((five.method(), five.path()), (Some("GET"), Some("/after")));
        assert_eq!(header(&req(five).headers, "x-trace"), None);
    }

    #[test]
    fn h2c_upgrade_continues_the_connection() {
        let mut s = Script::default();
        s.send(
            C,
            b"GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
                .to_vec(),
        );
        let mut switch =
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                .to_vec();
        switch.extend(frame(SETTINGS, 0, 0, &[]));
        s.send(S, switch);
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        s.send(C, hello);
        s.response(1, &[(":status", "200")], false);
        s.data(S, 1, b"upgraded", true);
        s.request(3, &get("/next"), true);
        s.response(3, &[(":status", "200")], true);
        let entries = s.run();
        assert_eq!(entries.len(), 3, "{entries:?}");
        assert_eq!(entries[0].protocol, Protocol::Http as i32);
        assert_eq!(entries[0].status(), Some(101));
        let one = by_stream(&entries[1..], 1);
        assert_eq!(one.protocol, Protocol::Http2 as i32);
        assert_eq!(one.id, "0000000000000007-1");
        assert_eq!(resp(one).body.as_ref().unwrap().data, b"upgraded");
        assert_eq!(one.flags, vec!["upgrade:0000000000000007-0".to_string()]);
        let three = by_stream(&entries, 3);
        assert_eq!(three.path(), Some("/next"));
    }

    fn grpc_frame(msg: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend((msg.len() as u32).to_be_bytes());
        v.extend(msg);
        v
    }

    fn grpc_call(path: &str) -> Vec<(&str, &str)> {
        vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "svc:50051"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("x-request-id", "r1"),
        ]
    }

    #[test]
    fn grpc_unary_streaming_and_error_calls() {
        use proto::v1::{GrpcRequest, GrpcResponse};
        let mut s = Script::prior_knowledge();
        // Unary: {1: "world"} -> {1: "hello world"}.
        s.request(1, &grpc_call("/helloworld.Greeter/SayHello"), false);
        s.data(C, 1, &grpc_frame(b"\x0a\x05world"), true);
        s.response(
            1,
            &[(":status", "200"), ("content-type", "application/grpc")],
            false,
        );
        // The message split across two DATA frames.
        let m = grpc_frame(b"\x0a\x0bhello world");
        s.data(S, 1, &m[..3], false);
        s.data(S, 1, &m[3..], false);
        s.response(1, &[("grpc-status", "0")], true);
        // Server streaming: three messages in one DATA frame and one more.
        s.request(3, &grpc_call("/pkg.Feed/Watch"), false);
        s.data(C, 3, &grpc_frame(b"\x08\x03"), true);
        s.response(
            3,
            &[(":status", "200"), ("content-type", "application/grpc")],
            false,
        );
        let mut three = Vec::new();
        for i in 0..3u8 {
            three.extend(grpc_frame(&[0x08, i]));
        }
        s.data(S, 3, &three, false);
        s.data(S, 3, &grpc_frame(&[0x08, 9]), false);
        s.response(3, &[("grpc-status", "0"), ("grpc-message", "")], true);
        // A failure answered trailers-only.
        s.request(5, &grpc_call("/pkg.Feed/Missing"), false);
        s.data(C, 5, &grpc_frame(b""), true);
        s.response(
            5,
            &[
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "12"),
                ("grpc-message", "unknown%20method"),
            ],
            true,
        );
        let entries = s.run();
        assert_eq!(entries.len(), 3);
        let calls = |e: &Entry| -> (GrpcRequest, GrpcResponse) {
            assert_eq!(e.protocol, Protocol::Grpc as i32);
            match (
                e.request.clone().and_then(|r| r.kind),
                e.response.clone().and_then(|r| r.kind),
            ) {
                (Some(request::Kind::Grpc(q)), Some(response::Kind::Grpc(p))) => (*q, *p),
                other => panic!("not gRPC: {other:?}"),
            }
        };
        let unary = by_stream(&entries, 1);
        let (q, p) = calls(unary);
        assert_eq!(
            (q.service.as_str(), q.method.as_str()),
            ("helloworld.Greeter", "SayHello")
        );
        assert_eq!(unary.method(), Some("SayHello"));
        assert_eq!(unary.path(), Some("/helloworld.Greeter/SayHello"));
        assert_eq!(unary.status(), Some(0));
        assert_eq!(header(&q.headers, "x-request-id"), Some("r1"));
        assert_eq!(q.messages[0].fields[0].text, "world");
        assert_eq!(p.messages.len(), 1);
        assert_eq!(p.messages[0].fields[0].text, "hello world");
        assert_eq!(p.status_name, "OK");
        let (_, p) = calls(by_stream(&entries, 3));
        assert_eq!(p.message_count, 4);
        let values: Vec<u64> = p.messages.iter().map(|m| m.fields[0].scalar).collect();
        assert_eq!(values, [0, 1, 2, 9]);
        let failed = by_stream(&entries, 5);
        let (q, p) = calls(failed);
        assert_eq!(q.messages[0].length, 0);
        assert_eq!(failed.status(), Some(12));
        assert_eq!(p.status_name, "UNIMPLEMENTED");
        assert_eq!(p.message, "unknown method");
    }
}
