//! HTTP/1.0 and 1.1 (RFC 9112) with httparse for the message heads.
//!
//! Each direction is a small state machine: head, then a body framed by
//! Content-Length, chunked coding (with trailers) or the connection's close.
//! Responses are framed by their request (HEAD, CONNECT) and status (1xx, 204,
//! 304). Pipelined requests wait in the pairing FIFO. After a gap, a parse
//! error or a mid-stream start a direction resynchronises at the next line that
//! looks like a request or status line. An accepted `Upgrade` (101) or CONNECT
//! hands the connection on: its later bytes are not parsed as HTTP. An
//! exchange that carries a GraphQL operation becomes a `graphql` entry
//! (`graphql.rs`).

pub mod json;
pub mod model;

use super::{Claim, DissectConfig, Dissector, Emit, Handoff, Step, encoding, graphql, run_steps};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{Fifo, Message};
use proto::v1::{
    Header, HttpRequest, HttpResponse, Protocol, Request, Response, request, response,
};

const MAX_HEADERS: usize = 256;
/// Bytes kept while looking for the next message start.
const RESYNC_WINDOW: usize = 16 << 10;
/// Longest chunk-size line accepted (hex digits plus extensions).
const MAX_CHUNK_LINE: usize = 4096;

const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"PURGE",
    b"QUERY",
];

/// Longest extension method (a token, RFC 9110 §9.1) a request line may start with.
const MAX_METHOD: usize = 24;

/// How leniently heads are parsed: as real servers and clients (and tshark)
/// accept them — runs of spaces between a start line's parts, a space before
/// a response header's colon, obsolete folded response headers, and invalid
/// header lines skipped rather than failing the message.
fn lenient() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    c.allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .ignore_invalid_headers_in_requests(true)
        .ignore_invalid_headers_in_responses(true);
    c
}

/// Claims a stream whose client side starts with a request line or whose
/// server side starts with a status line; mid-stream, either anywhere in the first bytes.
pub fn probe(dir: Direction, first: &[u8], midstream: bool) -> Claim {
    let at_start = match dir {
        Direction::ToServer => starts_like_request(first),
        Direction::ToClient => starts_like_response(first),
    };
    if at_start != Claim::No || !midstream {
        return at_start;
    }
    if find_message_start(dir, first).is_some() {
        Claim::Yes
    } else {
        Claim::No
    }
}

fn starts_like_request(b: &[u8]) -> Claim {
    for m in METHODS {
        let n = m.len().min(b.len());
        if b[..n] == m[..n] {
            if b.len() <= m.len() {
                return Claim::NeedMore;
            }
            if b[m.len()] == b' ' {
                return Claim::Yes;
            }
        }
    }
    extension_request(b)
}

/// A request line with a method not in [`METHODS`] (`M-SEARCH`, `BREW`): a
/// token of upper-case letters, digits, `-` and `_`, a space, and a line that
/// ends in an HTTP/1 version. Unknown words are common in other protocols, so
/// the whole line must be seen.
fn extension_request(b: &[u8]) -> Claim {
    let method = b
        .iter()
        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || **c == b'-' || **c == b'_')
        .count();
    if method == 0 || method > MAX_METHOD || !b[0].is_ascii_uppercase() {
        return Claim::No;
    }
    match b.get(method) {
        None => return Claim::NeedMore,
        Some(b' ') => {}
        Some(_) => return Claim::No,
    }
    let Some(end) = b.iter().position(|&c| c == b'\n') else {
        return if b.len() < 8 << 10 {
            Claim::NeedMore
        } else {
            Claim::No
        };
    };
    let line = b[..end].strip_suffix(b"\r").unwrap_or(&b[..end]);
    if line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0") {
        Claim::Yes
    } else {
        Claim::No
    }
}

fn starts_like_response(b: &[u8]) -> Claim {
    const P: &[u8] = b"HTTP/1.";
    let n = P.len().min(b.len());
    if b[..n] != P[..n] {
        Claim::No
    } else if b.len() < P.len() {
        Claim::NeedMore
    } else {
        Claim::Yes
    }
}

/// Where the next request line (to server) or status line (to client) starts
/// in `b`. A message may start anywhere, not only after a line break: after a
/// body picked up mid-way the next head follows its last byte directly. So
/// every `HTTP/1.` in `b` is a candidate: the start of a status line, or the
/// version that ends a request line, whose method is then found before it.
fn find_message_start(dir: Direction, b: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(k) = find(&b[from..], b"HTTP/1.") {
        let at = from + k;
        let found = match dir {
            Direction::ToClient => status_line_at(&b[at..]).then_some(at),
            Direction::ToServer => request_line_ending_at(b, at),
        };
        if found.is_some() {
            return found;
        }
        from = at + 1;
    }
    // A request line still arriving at the end of `b`, from a line start.
    if dir == Direction::ToServer {
        let last = b.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
        if starts_like_request(&b[last..]) == Claim::Yes {
            return Some(last);
        }
    }
    None
}

/// `HTTP/1.x ddd` starts `b`.
fn status_line_at(b: &[u8]) -> bool {
    b.len() >= 12
        && b.starts_with(b"HTTP/1.")
        && b[8] == b' '
        && b[9..12].iter().all(u8::is_ascii_digit)
}

/// The start of the request line whose version begins at `at` (`… HTTP/1.x`
/// and the line's end): the method before the request target, found by
/// going back over the target and the spaces around it. Where the method's
/// token runs into the bytes before it (a body's tail), the known method it
/// ends with is taken.
fn request_line_ending_at(b: &[u8], at: usize) -> Option<usize> {
    let minor = *b.get(at + 7)?;
    let after = b.get(at + 8).copied();
    if !matches!(minor, b'0' | b'1') || !matches!(after, None | Some(b'\r') | Some(b'\n')) {
        return None;
    }
    let space = |c: &u8| *c == b' ';
    let target_end = at - b[..at].iter().rev().take_while(|c| space(c)).count();
    if target_end == at {
        return None;
    }
    let target = b[..target_end]
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_graphic())
        .count();
    let method_end = target_end - target;
    let spaces = b[..method_end]
        .iter()
        .rev()
        .take_while(|c| space(c))
        .count();
    if target == 0 || spaces == 0 {
        return None;
    }
    let method_end = method_end - spaces;
    let token = b[..method_end]
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || **c == b'-' || **c == b'_')
        .count()
        .min(MAX_METHOD);
    if token == 0 {
        return None;
    }
    let method = &b[method_end - token..method_end];
    let start = match METHODS
        .iter()
        .filter(|m| method.ends_with(m))
        .map(|m| method_end - m.len())
        .min()
    {
        Some(known) => known,
        // An extension method only at a line's start: a token cut from the
        // front of a message (`ET /x HTTP/1.1` after a bad `GET`) is not one.
        None if method_end - token > 0 && b[method_end - token - 1] == b'\n' => method_end - token,
        None => return None,
    };
    (starts_like_request(&b[start..]) == Claim::Yes).then_some(start)
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn new(
    flow: &FlowInfo,
    config: &DissectConfig,
    _handoff: Option<&Handoff>,
) -> Box<dyn Dissector> {
    let start = if flow.midstream {
        Phase::Resync
    } else {
        Phase::Head
    };
    Box::new(Http1 {
        config: config.clone(),
        sides: [Side::new(start.clone()), Side::new(start)],
        pairs: Fifo::new(Protocol::Http, config.max_pending).refined_by(graphql::refine),
        held: Vec::new(),
        handoff: None,
    })
}

#[derive(Debug, Clone)]
enum Phase {
    Head,
    Body(Framing),
    /// Looking for the next message start after a gap, an error or a mid-stream start.
    Resync,
    /// A request asked to switch protocols; later client bytes wait for the answer.
    AwaitUpgrade,
    /// The connection was handed to another protocol.
    Tunnel,
}

#[derive(Debug, Clone)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
}

enum Head {
    Request(HttpRequest),
    Response(HttpResponse),
}

/// A message whose head is parsed and whose body is still arriving.
struct Partial {
    ts_ns: u64,
    head: Head,
    wire: u64,
    body: Vec<u8>,
    body_wire: u64,
    body_cut: bool,
    flags: Vec<String>,
    content_encoding: Option<String>,
    /// The request asked for an upgrade (or is a CONNECT).
    upgrade: bool,
}

struct Side {
    phase: Phase,
    /// Head bytes, chunk lines, trailers, resync window or held upgrade bytes.
    buf: Vec<u8>,
    /// Capture time of the first byte in `buf` while a head is being read.
    buf_ts: u64,
    msg: Option<Partial>,
}

impl Side {
    fn new(phase: Phase) -> Self {
        Side {
            phase,
            buf: Vec::new(),
            buf_ts: 0,
            msg: None,
        }
    }
}

pub struct Http1 {
    config: DissectConfig,
    sides: [Side; 2],
    pairs: Fifo,
    /// Client bytes held during a refused upgrade, to parse again.
    held: Vec<u8>,
    /// Set when the server switched protocols, until the connection takes it.
    handoff: Option<Handoff>,
}

fn headers_of(hs: &[httparse::Header<'_>]) -> Vec<Header> {
    hs.iter()
        .map(|h| Header {
            name: h.name.to_string(),
            value: String::from_utf8_lossy(h.value).into_owned(),
        })
        .collect()
}

fn header<'a>(hs: &'a [Header], name: &str) -> Option<&'a str> {
    hs.iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn has_token(hs: &[Header], name: &str, token: &str) -> bool {
    hs.iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .any(|h| {
            h.value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
}

/// Body framing from the headers (RFC 9112 §6.3): chunked wins over Content-Length.
fn framing(hs: &[Header], until_close: bool) -> Result<Framing, String> {
    if let Some(te) = header(hs, "transfer-encoding") {
        let last = te.rsplit(',').next().unwrap_or("").trim();
        if last.eq_ignore_ascii_case("chunked") {
            return Ok(Framing::Chunked(Chunk::Size));
        }
        return Ok(if until_close {
            Framing::UntilClose
        } else {
            Framing::Length(0)
        });
    }
    let mut length: Option<u64> = None;
    for h in hs
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        for v in h.value.split(',') {
            let n: u64 = v.trim().parse().map_err(|_| "content_length".to_string())?;
            if length.is_some_and(|l| l != n) {
                return Err("content_length".into());
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => Framing::Length(n),
        None if until_close => Framing::UntilClose,
        None => Framing::Length(0),
    })
}

fn version(v: Option<u8>) -> String {
    match v {
        Some(0) => "1.0".into(),
        _ => "1.1".into(),
    }
}

impl Http1 {
    fn parse_error(&mut self, dir: Direction, reason: &str, out: &mut Vec<Emit>) {
        out.push(Emit::ParseError {
            protocol: "http",
            reason: reason.to_string(),
        });
        let side = &mut self.sides[dir.index()];
        if let Some(mut m) = side.msg.take() {
            m.flags.push(format!("malformed:{reason}"));
            side.msg = Some(m);
        }
        side.buf.clear();
        side.phase = Phase::Resync;
    }

    /// The method of the request the next response answers.
    fn method_for_response(&self) -> Option<String> {
        if let Some(front) = self.pairs.front()
            && let Some(request::Kind::Http(r)) = &front.body.kind
        {
            return Some(r.method.clone());
        }
        match &self.sides[0].msg {
            Some(Partial {
                head: Head::Request(r),
                ..
            }) => Some(r.method.clone()),
            _ => None,
        }
    }

    /// The path of the request the next response answers.
    fn path_for_response(&self) -> Option<String> {
        match &self.pairs.front()?.body.kind {
            Some(request::Kind::Http(r)) => Some(r.path.clone()),
            _ => None,
        }
    }

    /// Reads a message head from `data`.
    fn head(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) -> Step {
        let side = &mut self.sides[dir.index()];
        if side.buf.is_empty() {
            // Blank lines between messages are allowed (RFC 9112 §2.2); skip them here
            // so a message's time is that of its first real byte.
            let blank = data
                .iter()
                .take_while(|c| **c == b'\r' || **c == b'\n')
                .count();
            if blank > 0 {
                return Step::Consumed(blank);
            }
            side.buf_ts = ts_ns;
        }
        let old = side.buf.len();
        let room = (self.config.max_head + 1).saturating_sub(old);
        let take = data.len().min(room);
        side.buf.extend_from_slice(&data[..take]);
        let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = match dir {
            Direction::ToServer => {
                let mut req = httparse::Request::new(&mut hs);
                match lenient().parse_request(&mut req, &side.buf) {
                    Ok(httparse::Status::Complete(n)) => Ok(Some((
                        n,
                        Head::Request(HttpRequest {
                            method: req.method.unwrap_or_default().to_string(),
                            path: req.path.unwrap_or_default().to_string(),
                            version: version(req.version),
                            headers: headers_of(req.headers),
                            ..Default::default()
                        }),
                    ))),
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            Direction::ToClient => {
                let mut resp = httparse::Response::new(&mut hs);
                match lenient().parse_response(&mut resp, &side.buf) {
                    Ok(httparse::Status::Complete(n)) => Ok(Some((
                        n,
                        Head::Response(HttpResponse {
                            status: u32::from(resp.code.unwrap_or_default()),
                            reason: resp.reason.unwrap_or_default().to_string(),
                            version: version(resp.version),
                            headers: headers_of(resp.headers),
                            ..Default::default()
                        }),
                    ))),
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        };
        let reason = match parsed {
            Err(e) => format!("{e}").replace(' ', "_").to_ascii_lowercase(),
            Ok(None) if side.buf.len() > self.config.max_head => "header_too_large".to_string(),
            Ok(None) => return Step::Consumed(take),
            Ok(Some((n, head))) => {
                let ts = side.buf_ts;
                side.buf.clear();
                self.start_message(flow, dir, ts, n as u64, head, out);
                return Step::Consumed(n - old);
            }
        };
        // Look for the next message from the byte after this one's start, so
        // a message hidden behind a bad one is still found.
        let window = side.buf.split_off(1.min(side.buf.len()));
        self.parse_error(dir, &reason, out);
        Step::Replay(window, take)
    }

    fn start_message(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        head_len: u64,
        head: Head,
        out: &mut Vec<Emit>,
    ) {
        let mut p = Partial {
            ts_ns,
            head,
            wire: head_len,
            body: Vec::new(),
            body_wire: 0,
            body_cut: false,
            flags: Vec::new(),
            content_encoding: None,
            upgrade: false,
        };
        let framing = match &p.head {
            Head::Request(r) => {
                p.content_encoding = header(&r.headers, "content-encoding").map(str::to_string);
                p.upgrade = r.method.eq_ignore_ascii_case("CONNECT")
                    || (header(&r.headers, "upgrade").is_some()
                        && has_token(&r.headers, "connection", "upgrade"));
                framing(&r.headers, false)
            }
            Head::Response(r) => {
                if (100..200).contains(&r.status) && r.status != 101 {
                    // Interim (100 Continue, 103 Early Hints): the final response follows.
                    return;
                }
                p.content_encoding = header(&r.headers, "content-encoding").map(str::to_string);
                let method = self.method_for_response();
                let connect_ok = method
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"))
                    && (200..300).contains(&r.status);
                let no_body = r.status == 101
                    || r.status == 204
                    || r.status == 304
                    || connect_ok
                    || method
                        .as_deref()
                        .is_some_and(|m| m.eq_ignore_ascii_case("HEAD"));
                if no_body {
                    Ok(Framing::Length(0))
                } else {
                    framing(&r.headers, true)
                }
            }
        };
        let framing = match framing {
            Ok(f) => f,
            Err(reason) => {
                p.flags.push(format!("malformed:{reason}"));
                out.push(Emit::ParseError {
                    protocol: "http",
                    reason,
                });
                self.sides[dir.index()].msg = Some(p);
                self.finish_message(flow, dir, out);
                self.sides[dir.index()].phase = Phase::Resync;
                return;
            }
        };
        let side = &mut self.sides[dir.index()];
        side.msg = Some(p);
        match framing {
            Framing::Length(0) => {
                side.phase = Phase::Head;
                self.finish_message(flow, dir, out);
            }
            f => side.phase = Phase::Body(f),
        }
    }

    /// Body bytes (after de-chunking) of the current message.
    fn body_bytes(&mut self, dir: Direction, data: &[u8]) {
        let max = self.config.max_body;
        if let Some(m) = &mut self.sides[dir.index()].msg {
            m.body_wire += data.len() as u64;
            let room = max.saturating_sub(m.body.len());
            if data.len() > room {
                m.body_cut = true;
            }
            m.body.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    fn add_wire(&mut self, dir: Direction, n: usize) {
        if let Some(m) = &mut self.sides[dir.index()].msg {
            m.wire += n as u64;
        }
    }

    /// Reads body bytes in the current framing; returns the bytes consumed.
    fn body(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        framing: Framing,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) -> usize {
        match framing {
            Framing::UntilClose => {
                self.add_wire(dir, data.len());
                self.body_bytes(dir, data);
                data.len()
            }
            Framing::Length(rem) => {
                let n = (rem as usize).min(data.len());
                self.add_wire(dir, n);
                self.body_bytes(dir, &data[..n]);
                let left = rem - n as u64;
                if left == 0 {
                    self.sides[dir.index()].phase = Phase::Head;
                    self.finish_message(flow, dir, out);
                } else {
                    self.sides[dir.index()].phase = Phase::Body(Framing::Length(left));
                }
                n
            }
            Framing::Chunked(Chunk::Data(rem)) => {
                let n = (rem as usize).min(data.len());
                self.add_wire(dir, n);
                self.body_bytes(dir, &data[..n]);
                let left = rem - n as u64;
                let next = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                };
                self.sides[dir.index()].phase = Phase::Body(Framing::Chunked(next));
                n
            }
            Framing::Chunked(chunk @ (Chunk::Size | Chunk::DataEnd | Chunk::Trailers)) => {
                self.chunk_line(flow, dir, chunk, data, out)
            }
        }
    }

    /// Chunk-size lines, the CRLF after chunk data, and trailers: line-oriented parts of chunked coding.
    fn chunk_line(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        chunk: Chunk,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) -> usize {
        let side = &mut self.sides[dir.index()];
        let Some(nl) = data.iter().position(|c| *c == b'\n') else {
            side.buf.extend_from_slice(data);
            let limit = if matches!(chunk, Chunk::Trailers) {
                self.config.max_head
            } else {
                MAX_CHUNK_LINE
            };
            if side.buf.len() > limit {
                self.add_wire(dir, data.len());
                self.finish_with_flag(flow, dir, "malformed:chunk_line", out);
                self.parse_error(dir, "chunk_line_too_long", out);
            } else {
                self.add_wire(dir, data.len());
            }
            return data.len();
        };
        side.buf.extend_from_slice(&data[..=nl]);
        let consumed = nl + 1;
        self.add_wire(dir, consumed);
        let side = &mut self.sides[dir.index()];
        match chunk {
            Chunk::DataEnd => {
                if side.buf.iter().any(|c| !c.is_ascii_whitespace()) {
                    side.buf.clear();
                    self.finish_with_flag(flow, dir, "malformed:chunk_data", out);
                    self.parse_error(dir, "chunk_data_overrun", out);
                    return consumed;
                }
                side.buf.clear();
                side.phase = Phase::Body(Framing::Chunked(Chunk::Size));
            }
            Chunk::Size => match httparse::parse_chunk_size(&side.buf) {
                Ok(httparse::Status::Complete((_, 0))) => {
                    side.buf.clear();
                    side.phase = Phase::Body(Framing::Chunked(Chunk::Trailers));
                }
                Ok(httparse::Status::Complete((_, n))) => {
                    side.buf.clear();
                    side.phase = Phase::Body(Framing::Chunked(Chunk::Data(n)));
                }
                _ => {
                    side.buf.clear();
                    self.finish_with_flag(flow, dir, "malformed:chunk_size", out);
                    self.parse_error(dir, "invalid_chunk_size", out);
                }
            },
            Chunk::Trailers => {
                let done = side.buf == b"\r\n"
                    || side.buf == b"\n"
                    || side.buf.ends_with(b"\r\n\r\n")
                    || side.buf.ends_with(b"\n\n");
                if done {
                    let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let trailers = match httparse::parse_headers(&side.buf, &mut hs) {
                        Ok(httparse::Status::Complete((_, hs))) => headers_of(hs),
                        _ => Vec::new(),
                    };
                    side.buf.clear();
                    side.phase = Phase::Head;
                    if let Some(m) = &mut side.msg {
                        match &mut m.head {
                            Head::Request(r) => r.trailers = trailers,
                            Head::Response(r) => r.trailers = trailers,
                        }
                    }
                    self.finish_message(flow, dir, out);
                }
            }
            Chunk::Data(_) => unreachable!("data is not line-oriented"),
        }
        consumed
    }

    fn finish_with_flag(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        flag: &str,
        out: &mut Vec<Emit>,
    ) {
        if let Some(m) = &mut self.sides[dir.index()].msg {
            m.flags.push(flag.to_string());
            m.body_cut = true;
        }
        self.finish_message(flow, dir, out);
    }

    /// The current message of `dir` is complete (or as complete as it will get): pair it.
    fn finish_message(&mut self, flow: &FlowInfo, dir: Direction, out: &mut Vec<Emit>) {
        let Some(p) = self.sides[dir.index()].msg.take() else {
            return;
        };
        let mut flags = p.flags;
        if p.body_cut && !flags.iter().any(|f| f == "truncated") {
            flags.push("truncated".into());
        }
        let body = (p.body_wire > 0 || !p.body.is_empty()).then(|| {
            encoding::body(
                p.body,
                p.body_wire,
                !p.body_cut,
                p.content_encoding.as_deref(),
                self.config.max_body,
            )
        });
        match p.head {
            Head::Request(mut r) => {
                r.body = body;
                if p.upgrade {
                    self.sides[dir.index()].phase = Phase::AwaitUpgrade;
                }
                let msg = Message {
                    ts_ns: p.ts_ns,
                    wire_size: p.wire,
                    flags,
                    body: Request {
                        kind: Some(request::Kind::Http(Box::new(r))),
                    },
                };
                self.pairs.request(flow, msg, out);
            }
            Head::Response(mut r) => {
                r.body = body;
                let status = r.status;
                let upgrade = header(&r.headers, "upgrade").map(str::to_ascii_lowercase);
                let method = self.method_for_response();
                // What the next protocol learns of a switch: the request's path, the 101's headers.
                let switch = (status == 101).then(|| (self.path_for_response(), r.headers.clone()));
                let resp_ts = p.ts_ns;
                let msg = Message {
                    ts_ns: p.ts_ns,
                    wire_size: p.wire,
                    flags,
                    body: Response {
                        kind: Some(response::Kind::Http(Box::new(r))),
                    },
                };
                if self.pairs.is_empty() && self.sides[0].msg.is_some() {
                    // An early answer (e.g. 413 before the body): pair it with the request in progress.
                    let req_side = Direction::ToServer;
                    if let Some(m) = &mut self.sides[req_side.index()].msg {
                        m.flags.push("incomplete".into());
                        m.body_cut = true;
                    }
                    let keep_phase = self.sides[0].phase.clone();
                    self.finish_message(flow, req_side, out);
                    self.sides[0].phase = keep_phase;
                }
                self.pairs.response(flow, msg, out);
                self.after_response(flow, resp_ts, status, method.as_deref(), upgrade.as_deref());
                if let (Some(h), Some((path, headers))) = (&mut self.handoff, switch) {
                    h.upgrade_path = path;
                    h.upgrade_headers = headers;
                }
                let held = std::mem::take(&mut self.held);
                if !held.is_empty() {
                    // The upgrade was refused: the bytes the client sent meanwhile are HTTP.
                    self.on_data(flow, Direction::ToServer, resp_ts, &held, out);
                }
            }
        }
    }

    /// Decides a pending upgrade: 101 (or 2xx to CONNECT) hands the connection
    /// on, to the protocol named by the response's `Upgrade` header when we
    /// dissect it; the client bytes sent meanwhile go with it.
    fn after_response(
        &mut self,
        flow: &FlowInfo,
        ts_ns: u64,
        status: u32,
        method: Option<&str>,
        upgrade: Option<&str>,
    ) {
        let switched = status == 101
            || (method.is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"))
                && (200..300).contains(&status));
        if switched {
            let early = std::mem::take(&mut self.sides[0].buf);
            for side in &mut self.sides {
                side.phase = Phase::Tunnel;
                side.buf.clear();
                side.msg = None;
            }
            let protocol = match upgrade {
                Some("websocket") if status == 101 => "websocket",
                Some("h2c") if status == 101 => "http2",
                // A tunnel: what goes through it is detected afresh.
                _ if status != 101 => Handoff::DETECT,
                _ => return,
            };
            let made = self.pairs.made();
            self.handoff = Some(Handoff {
                protocol,
                held: if early.is_empty() {
                    Vec::new()
                } else {
                    vec![(Direction::ToServer, ts_ns, early)]
                },
                upgrade_entry: made.checked_sub(1).map(|n| proto::entry_id(flow.id, n)),
                entries_made: made,
                // Set by the caller, which still has the request and response.
                ..Default::default()
            });
            return;
        }
        let req = &mut self.sides[0];
        if matches!(req.phase, Phase::AwaitUpgrade) {
            req.phase = Phase::Head;
            self.held = std::mem::take(&mut req.buf);
        }
    }

    /// Looks for the next message start in the resync window.
    fn resync(&mut self, dir: Direction, ts_ns: u64, data: &[u8]) -> Step {
        let side = &mut self.sides[dir.index()];
        let old = side.buf.len();
        side.buf.extend_from_slice(data);
        match find_message_start(dir, &side.buf) {
            Some(at) if at >= old => {
                // The message starts inside `data`: the head parser takes it from there.
                side.buf.clear();
                side.phase = Phase::Head;
                Step::Consumed(at - old)
            }
            Some(at) => {
                // It starts in bytes kept from earlier calls: parse them again.
                let rest = side.buf.split_off(at);
                side.buf.clear();
                side.phase = Phase::Head;
                side.buf_ts = ts_ns;
                Step::Replay(rest, data.len())
            }
            None => {
                if side.buf.len() > RESYNC_WINDOW {
                    let cut = side.buf.len() - RESYNC_WINDOW / 2;
                    side.buf.drain(..cut);
                }
                Step::Consumed(data.len())
            }
        }
    }
    /// One parsing step in the direction's current phase.
    fn step(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        input: &[u8],
        out: &mut Vec<Emit>,
    ) -> Step {
        match self.sides[dir.index()].phase.clone() {
            Phase::Head => self.head(flow, dir, ts_ns, input, out),
            Phase::Body(f) => Step::Consumed(self.body(flow, dir, f, input, out)),
            Phase::Resync => self.resync(dir, ts_ns, input),
            Phase::AwaitUpgrade => {
                let side = &mut self.sides[dir.index()];
                let room = self.config.max_head.saturating_sub(side.buf.len());
                side.buf.extend_from_slice(&input[..input.len().min(room)]);
                Step::Consumed(input.len())
            }
            Phase::Tunnel => {
                // Bytes after a switch wait for the next dissector. All of them:
                // the connection takes the handoff as soon as this call returns,
                // so what is held is bounded by one call's data, and dropping
                // any would put the next dissector out of step.
                if let Some(h) = &mut self.handoff {
                    h.held.push((dir, ts_ns, input.to_vec()));
                }
                Step::Consumed(input.len())
            }
        }
    }
}

impl Dissector for Http1 {
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
        let side = &mut self.sides[dir.index()];
        match side.phase.clone() {
            Phase::Body(Framing::Length(rem)) if len < rem => {
                if let Some(m) = &mut side.msg {
                    m.body_cut = true;
                    m.body_wire += len;
                    m.wire += len;
                    if !m.flags.iter().any(|f| f == "gap") {
                        m.flags.push("gap".into());
                    }
                }
                side.phase = Phase::Body(Framing::Length(rem - len));
            }
            Phase::Body(Framing::UntilClose) => {
                if let Some(m) = &mut side.msg {
                    m.body_cut = true;
                    if !m.flags.iter().any(|f| f == "gap") {
                        m.flags.push("gap".into());
                    }
                }
            }
            Phase::Body(_) => {
                // The gap reaches past the body's end or breaks chunk framing.
                self.finish_with_flag(flow, dir, "gap", out);
                self.sides[dir.index()].phase = Phase::Resync;
            }
            Phase::Head | Phase::Resync => {
                side.buf.clear();
                side.phase = Phase::Resync;
            }
            Phase::AwaitUpgrade => side.buf.clear(),
            Phase::Tunnel => {}
        }
    }

    fn handoff(&mut self) -> Option<Handoff> {
        self.handoff.take()
    }

    fn on_close(&mut self, flow: &FlowInfo, _end: &FlowEnd, out: &mut Vec<Emit>) {
        for dir in [Direction::ToServer, Direction::ToClient] {
            let side = &mut self.sides[dir.index()];
            let until_close = matches!(side.phase, Phase::Body(Framing::UntilClose));
            if let Some(m) = &mut side.msg {
                if !until_close {
                    // The connection ended inside a message framed by length or chunks.
                    m.body_cut = true;
                    m.flags.push("incomplete".into());
                }
            } else if matches!(side.phase, Phase::Head) && !side.buf.is_empty() {
                out.push(Emit::ParseError {
                    protocol: "http",
                    reason: "incomplete_head".into(),
                });
            }
            self.finish_message(flow, dir, out);
        }
        self.pairs.close(flow, out);
    }
}

#[cfg(test)]
mod tests;
