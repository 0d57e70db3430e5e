//! gRPC's message layer on top of HTTP/2 (`http2.rs` hands it the DATA bytes
//! of a call whose content-type is `application/grpc*`): the length-prefixed
//! messages of each side, decompressed per `grpc-encoding`, and read as
//! protobuf without a schema — field numbers, wire types and values, nested
//! messages tried recursively — so a call is readable without its `.proto`.
//!
//! Everything is bounded: messages kept per side, bytes kept per side (the
//! body cap), fields decoded per message, nesting depth and value length.

pub mod json;
pub mod model;

use super::encoding;
use proto::v1::{GrpcMessage, GrpcRequest, GrpcResponse, Header, ProtoField, ProtoValueKind};

/// Messages kept per side of a call; later ones are counted, not kept.
pub const MAX_MESSAGES: usize = 64;
/// Nesting depth to which length-delimited fields are tried as messages.
const MAX_DEPTH: usize = 8;
/// Fields decoded per message, nested ones and failed attempts included, so
/// hostile input costs a bounded amount of work.
const MAX_FIELDS: usize = 2048;
/// Bytes of one string or bytes value kept.
const MAX_VALUE: usize = 4096;
/// Size of the prefix: compressed flag and 32-bit big-endian length.
const PREFIX: usize = 5;

/// Whether a content-type names gRPC (`application/grpc`, `+proto`, `+json`, `-web`, …).
pub fn is_grpc(content_type: &str) -> bool {
    let ct = content_type.trim().as_bytes();
    ct.len() >= 16 && ct[..16].eq_ignore_ascii_case(b"application/grpc")
}

/// One message as captured, before decompression and decoding.
#[derive(Debug)]
struct Captured {
    compressed: bool,
    length: u32,
    data: Vec<u8>,
    /// The cap or a gap cut it.
    cut: bool,
}

/// Splits one side's DATA bytes into messages, keeping the first ones up to
/// the byte cap; framing is kept across DATA frames.
#[derive(Debug)]
pub struct Framer {
    prefix: [u8; PREFIX],
    prefix_len: usize,
    /// The message being read, whether it is kept, and its bytes still to come.
    current: Option<(Captured, bool, u32)>,
    messages: Vec<Captured>,
    count: u64,
    kept: usize,
    max_bytes: usize,
    truncated: bool,
    /// A gap broke the framing: later bytes cannot be split into messages.
    lost: bool,
}

impl Framer {
    pub fn new(max_bytes: usize) -> Self {
        Framer {
            prefix: [0; PREFIX],
            prefix_len: 0,
            current: None,
            messages: Vec::new(),
            count: 0,
            kept: 0,
            max_bytes,
            truncated: false,
            lost: false,
        }
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        if self.lost {
            return;
        }
        while !data.is_empty() {
            let Some((msg, keep, left)) = &mut self.current else {
                let n = (PREFIX - self.prefix_len).min(data.len());
                self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
                self.prefix_len += n;
                data = &data[n..];
                if self.prefix_len == PREFIX {
                    self.prefix_len = 0;
                    self.start_message();
                }
                continue;
            };
            let n = (*left as usize).min(data.len());
            if *keep {
                let room = self.max_bytes.saturating_sub(self.kept);
                let k = n.min(room);
                msg.data.extend_from_slice(&data[..k]);
                self.kept += k;
                if k < n {
                    msg.cut = true;
                    self.truncated = true;
                }
            }
            *left -= n as u32;
            data = &data[n..];
            if *left == 0 {
                self.end_message();
            }
        }
    }

    fn start_message(&mut self) {
        let length = u32::from_be_bytes([
            self.prefix[1],
            self.prefix[2],
            self.prefix[3],
            self.prefix[4],
        ]);
        self.count += 1;
        let keep = self.messages.len() < MAX_MESSAGES;
        if !keep {
            self.truncated = true;
        }
        let msg = Captured {
            // Bit 0 is the compressed flag; gRPC-Web marks its trailer frames with bit 7.
            compressed: self.prefix[0] & 1 == 1,
            length,
            data: Vec::new(),
            cut: false,
        };
        self.current = Some((msg, keep, length));
        if length == 0 {
            self.end_message();
        }
    }

    fn end_message(&mut self) {
        if let Some((msg, true, _)) = self.current.take() {
            self.messages.push(msg);
        }
    }

    /// Capture lost bytes of this side: the message being read is cut, and
    /// message boundaries are unknown from here on.
    pub fn gap(&mut self) {
        if let Some((msg, _, _)) = &mut self.current {
            msg.cut = true;
        }
        self.end_message();
        self.lost = true;
        self.truncated = true;
    }

    /// The side ended: its messages, decompressed per `grpc-encoding` and decoded.
    fn finish(mut self, grpc_encoding: Option<&str>) -> (Vec<GrpcMessage>, u64, bool) {
        if let Some((msg, _, _)) = &mut self.current {
            // The side ended inside a message.
            msg.cut = true;
            self.truncated = true;
        }
        self.end_message();
        let max = self.max_bytes;
        let messages = self
            .messages
            .into_iter()
            .map(|m| message(m, grpc_encoding, max))
            .collect();
        (messages, self.count, self.truncated)
    }
}

fn message(m: Captured, grpc_encoding: Option<&str>, max: usize) -> GrpcMessage {
    let (data, cut) = match grpc_encoding {
        Some(coding) if m.compressed && !coding.eq_ignore_ascii_case("identity") => {
            let body = encoding::body(m.data, u64::from(m.length), !m.cut, Some(coding), max);
            (body.data, body.truncated)
        }
        _ => (m.data, m.cut),
    };
    let fields = if cut { None } else { decode_message(&data) };
    GrpcMessage {
        compressed: m.compressed,
        length: m.length,
        decoded: fields.is_some(),
        fields: fields.unwrap_or_default(),
        data,
        truncated: cut,
    }
}

/// Reads bytes as a protobuf message without its schema; `None` when they are not one.
pub fn decode_message(b: &[u8]) -> Option<Vec<ProtoField>> {
    let mut budget = MAX_FIELDS;
    fields(b, 0, &mut budget)
}

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, byte) in b.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn fields(b: &[u8], depth: usize, budget: &mut usize) -> Option<Vec<ProtoField>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        *budget = budget.checked_sub(1)?;
        let (key, n) = varint(&b[i..])?;
        i += n;
        let number = u32::try_from(key >> 3).ok().filter(|n| *n != 0)?;
        let wire_type = (key & 7) as u32;
        let mut f = ProtoField {
            number,
            wire_type,
            ..Default::default()
        };
        match wire_type {
            0 => {
                let (v, n) = varint(&b[i..])?;
                i += n;
                f.kind = ProtoValueKind::Varint as i32;
                f.scalar = v;
            }
            1 => {
                let bytes: [u8; 8] = b.get(i..i + 8)?.try_into().ok()?;
                i += 8;
                f.kind = ProtoValueKind::Fixed64 as i32;
                f.scalar = u64::from_le_bytes(bytes);
            }
            5 => {
                let bytes: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
                i += 4;
                f.kind = ProtoValueKind::Fixed32 as i32;
                f.scalar = u64::from(u32::from_le_bytes(bytes));
            }
            2 => {
                let (len, n) = varint(&b[i..])?;
                i += n;
                let len = usize::try_from(len).ok()?;
                let value = b.get(i..i.checked_add(len)?)?;
                i += len;
                f.length = len as u32;
                length_delimited(&mut f, value, depth, budget);
            }
            // Groups (3, 4) are long deprecated; 6 and 7 do not exist.
            _ => return None,
        }
        out.push(f);
    }
    Some(out)
}

/// Text that reads as text: valid UTF-8 without control characters other than whitespace.
fn printable(s: &str) -> bool {
    s.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

/// A length-delimited value is a string, a nested message, or bytes. Short
/// text often happens to parse as a message too ("Hi" is field 9 = 105), so
/// printable text wins; then a message; then any UTF-8; then bytes.
fn length_delimited(f: &mut ProtoField, value: &[u8], depth: usize, budget: &mut usize) {
    let text = std::str::from_utf8(value).ok();
    if let Some(s) = text.filter(|s| printable(s)) {
        set_text(f, s);
        return;
    }
    if depth + 1 < MAX_DEPTH
        && let Some(nested) = fields(value, depth + 1, budget)
    {
        f.kind = ProtoValueKind::Message as i32;
        f.fields = nested;
        return;
    }
    if let Some(s) = text {
        set_text(f, s);
        return;
    }
    f.kind = ProtoValueKind::Bytes as i32;
    f.truncated = value.len() > MAX_VALUE;
    f.data = value[..value.len().min(MAX_VALUE)].to_vec();
}

fn set_text(f: &mut ProtoField, s: &str) {
    f.kind = ProtoValueKind::String as i32;
    let mut end = s.len().min(MAX_VALUE);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    f.truncated = end < s.len();
    f.text = s[..end].to_string();
}

/// The name of a gRPC status code.
pub fn status_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("CODE{code}"), |n| (*n).to_string())
}

/// grpc-message is percent-encoded UTF-8.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header<'a>(hs: &'a [Header], name: &str) -> Option<&'a str> {
    hs.iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// One side of a call as the HTTP/2 layer saw it.
pub struct Side {
    /// Headers without pseudo-headers.
    pub headers: Vec<Header>,
    pub trailers: Vec<Header>,
    pub framer: Option<Framer>,
    /// DATA payload bytes (padding excluded), counted past the cap.
    pub body_size: u64,
}

impl Side {
    fn messages(self) -> (Vec<GrpcMessage>, u64, bool, Vec<Header>, Vec<Header>) {
        let coding = header(&self.headers, "grpc-encoding").map(str::to_string);
        let (messages, count, truncated) = match self.framer {
            Some(f) => f.finish(coding.as_deref()),
            None => (Vec::new(), 0, false),
        };
        (messages, count, truncated, self.headers, self.trailers)
    }
}

/// The request side of a call to `path` ("/pkg.Service/Method").
pub fn request(path: &str, authority: &str, side: Side) -> GrpcRequest {
    let body_size = side.body_size;
    let (messages, message_count, truncated, headers, _) = side.messages();
    let (service, method) = path
        .strip_prefix('/')
        .and_then(|p| p.rsplit_once('/'))
        .unwrap_or(("", ""));
    GrpcRequest {
        service: service.to_string(),
        method: method.to_string(),
        path: path.to_string(),
        authority: authority.to_string(),
        headers,
        messages,
        message_count,
        truncated,
        body_size,
    }
}

/// The response side of a call; its status comes from the trailers, or from
/// the headers of a trailers-only response.
pub fn response(http_status: u32, side: Side) -> GrpcResponse {
    let body_size = side.body_size;
    let (messages, message_count, truncated, headers, trailers) = side.messages();
    let field = |name: &str| header(&trailers, name).or_else(|| header(&headers, name));
    let status = field("grpc-status").and_then(|s| s.trim().parse::<u32>().ok());
    let message = field("grpc-message")
        .map(percent_decode)
        .unwrap_or_default();
    GrpcResponse {
        status,
        status_name: status.map(status_name).unwrap_or_default(),
        message,
        http_status,
        headers,
        trailers,
        messages,
        message_count,
        truncated,
        body_size,
    }
}

#[cfg(test)]
mod tests;
