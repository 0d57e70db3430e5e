//! DNS (RFC 1035) over UDP, one message per datagram, and over TCP, each
//! message after a two-byte length (RFC 7766). Messages are decoded with
//! hickory-proto, which refuses compression pointers that do not point
//! backwards, so a pointer loop is an error and never followed.
//!
//! A flow is claimed by content: a header that makes sense and a first
//! question that parses; the port is never consulted. Queries wait in a
//! bounded list and are matched to responses by transaction id (and question),
//! not by order, because a resolver may answer out of order; a query pushed out
//! by the bound, or still waiting when the flow ends (UDP flows end when idle),
//! becomes an entry flagged `no_response`. Sizes are those of the DNS messages,
//! without TCP's length prefix. A message that does not decode is a parse
//! error and makes no entry, except that a response whose id a waiting query
//! has completes that query's entry, flagged `malformed:<reason>`.

pub mod json;
pub mod model;

use super::{Claim, DatagramDissector, DissectConfig, Dissector, Emit, Handoff};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{self, Message};
use hickory_proto::op::{Header, Message as DnsMessage, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, DecodeError};
use proto::v1::{
    DnsQuestion, DnsRecord, DnsRequest, DnsResponse, Protocol, Request, Response, request, response,
};
use std::collections::VecDeque;
use std::fmt::Write as _;

const HEADER_LEN: usize = 12;
/// The smallest question: the root name (one byte), type and class.
const MIN_QUESTION: usize = 5;
/// The smallest resource record: root name, type, class, TTL and data length.
const MIN_RECORD: usize = 11;
/// Bytes kept while looking for the next message after a gap in a TCP stream:
/// enough for a length, a header and the longest question.
const RESYNC_WINDOW: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Questions one message may ask: multicast DNS asks several at once.
const MAX_QUESTIONS: u16 = 32;

/// How `msg` (the start of a message `len` bytes long) looks as DNS: a header
/// with sane flags, one question or a few (multicast DNS), or none in a
/// response that carries answers (an mDNS announcement), counts that fit the
/// length, and a first question (or record) that decodes. `NeedMore` when
/// `msg` ends before it does. NetBIOS name service, which borrows the header,
/// is refused by its names.
fn plausible(msg: &[u8], len: usize) -> Claim {
    if len < HEADER_LEN + MIN_QUESTION.min(MIN_RECORD) {
        return Claim::No;
    }
    if msg.len() < HEADER_LEN {
        return Claim::NeedMore;
    }
    let Ok(Header { metadata, counts }) = Header::read(&mut BinDecoder::new(msg)) else {
        return Claim::No;
    };
    // The Z bit is zero in every message (RFC 1035 §4.1.1).
    let z = msg[3] & 0x40 != 0;
    let opcode_known = !matches!(metadata.op_code, OpCode::Unknown(_));
    let records = usize::from(counts.answers)
        + usize::from(counts.authorities)
        + usize::from(counts.additionals);
    let response = metadata.message_type == MessageType::Response;
    let query_sane = response
        || metadata.op_code != OpCode::Query
        || (u16::from(metadata.response_code) == 0
            && counts.answers == 0
            && counts.authorities == 0);
    let questions_sane = match counts.queries {
        0 => response && counts.answers > 0,
        n => n <= MAX_QUESTIONS,
    };
    if z || !opcode_known
        || !questions_sane
        || !query_sane
        || HEADER_LEN + usize::from(counts.queries) * MIN_QUESTION + records * MIN_RECORD > len
    {
        return Claim::No;
    }
    let mut decoder = BinDecoder::new(&msg[..msg.len().min(len)]);
    let _ = decoder.read_slice(HEADER_LEN);
    if counts.queries == 0 {
        return match hickory_proto::rr::Record::read(&mut decoder) {
            Ok(r) if u16::from(r.record_type()) != 0 => Claim::Yes,
            Ok(_) => Claim::No,
            Err(_) if msg.len() < len => Claim::NeedMore,
            Err(_) => Claim::No,
        };
    }
    match Query::read(&mut decoder) {
        Ok(q) => {
            // mDNS puts its unicast-response bit at the top of the class.
            let class = u16::from(q.query_class()) & 0x7fff;
            let class_ok = matches!(class, 1 | 3 | 4 | 254 | 255);
            if class_ok && u16::from(q.query_type()) != 0 && !netbios(q.name()) {
                Claim::Yes
            } else {
                Claim::No
            }
        }
        Err(_) if msg.len() < len => Claim::NeedMore,
        Err(_) => Claim::No,
    }
}

/// A NetBIOS name (RFC 1002 §4.1): its first label is 32 letters from `A`
/// to `P`, two per byte of the 16-byte NetBIOS name.
fn netbios(name: &Name) -> bool {
    name.iter()
        .next()
        .is_some_and(|l| l.len() == 32 && l.iter().all(|b| (b'A'..=b'P').contains(b)))
}

/// Claims a UDP flow whose first datagram is a DNS query or response.
pub fn probe_datagram(_dir: Direction, payload: &[u8]) -> bool {
    plausible(payload, payload.len()) == Claim::Yes
}

/// Claims a TCP connection whose first bytes one way are a length and the
/// start of a DNS message: a query from the client, a response from the server.
pub fn probe(dir: Direction, first: &[u8], midstream: bool) -> Claim {
    if first.len() < 2 {
        return Claim::NeedMore;
    }
    let len = usize::from(u16::from_be_bytes([first[0], first[1]]));
    let msg = &first[2..];
    let verdict = plausible(msg, len);
    if verdict == Claim::Yes && !midstream {
        let response = msg[2] & 0x80 != 0;
        if response != (dir == Direction::ToClient) {
            return Claim::No;
        }
    }
    verdict
}

pub fn new(
    flow: &FlowInfo,
    config: &DissectConfig,
    _handoff: Option<&Handoff>,
) -> Box<dyn Dissector> {
    let mut dns = Dns::new(Transport::Tcp, config);
    if flow.midstream {
        // The probe found a message start one way; the other may be inside a message.
        for side in &mut dns.sides {
            side.lost = true;
        }
    }
    Box::new(dns)
}

pub fn new_datagram(_flow: &FlowInfo, config: &DissectConfig) -> Box<dyn DatagramDissector> {
    Box::new(Dns::new(Transport::Udp, config))
}

/// One direction of a TCP connection: the message being framed.
#[derive(Default)]
struct Side {
    /// The length prefix and the message bytes so far; after a gap, the resync window.
    buf: Vec<u8>,
    /// Capture time of the first byte in `buf`.
    ts_ns: u64,
    /// A gap broke the framing: look for the next plausible message.
    lost: bool,
}

/// A query waiting for its response.
struct Waiting {
    id: u16,
    question: Option<QuestionKey>,
    msg: Message<Request>,
}

/// A question as pairing compares it: lower-cased name, type, class.
type QuestionKey = (String, String, String);

pub struct Dns {
    transport: Transport,
    sides: [Side; 2],
    waiting: VecDeque<Waiting>,
    max_pending: usize,
    /// The id and question of the queries answered last (as many as may
    /// wait): a second response to one of them is flagged `duplicate`.
    answered: VecDeque<(u16, Option<QuestionKey>)>,
    /// Entries made on this flow, for the entry id.
    made: u64,
}

/// A decode error as a flag-friendly reason: `PointerNotPriorToLabel { .. }`
/// becomes `pointer_not_prior_to_label`, `IncorrectRDataLengthRead` `incorrect_rdata_length_read`.
fn reason(e: &DecodeError) -> String {
    let debug = format!("{e:?}");
    let mut out = String::new();
    let mut after_lower = false;
    for c in debug.chars().take_while(char::is_ascii_alphanumeric) {
        if c.is_ascii_uppercase() && after_lower {
            out.push('_');
        }
        after_lower = !c.is_ascii_uppercase();
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A name without the root's trailing dot, as users type it; "." is the root.
fn name_text(n: &Name) -> String {
    if n.is_root() {
        return ".".into();
    }
    let mut s = n.to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s
}

fn type_text(t: RecordType) -> String {
    match t {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => t.to_string(),
    }
}

fn class_text(c: DNSClass) -> String {
    match c {
        DNSClass::IN | DNSClass::CH | DNSClass::HS | DNSClass::NONE | DNSClass::ANY => {
            c.to_string()
        }
        c => format!("CLASS{}", u16::from(c)),
    }
}

fn opcode_text(op: OpCode) -> String {
    match op {
        OpCode::Unknown(1) => "IQUERY".into(),
        OpCode::Unknown(n) => n.to_string(),
        op => op.to_string(),
    }
}

/// The mnemonic of a response code (IANA DNS parameters), or `RCODE<n>`.
fn rcode_text(code: u16) -> String {
    let name = match code {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11 => "DSOTYPENI",
        16 => "BADVERS",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        n => return format!("RCODE{n}"),
    };
    name.into()
}

/// Record data as a zone file writes it. hickory's `Display` fails for some
/// types (OPT), so it is written with `write!`, never `to_string`; TXT, which
/// it runs together, is written as quoted strings (RFC 1035 §5.1).
fn data_text(data: &RData) -> String {
    let mut s = String::new();
    if let RData::TXT(txt) = data {
        for (i, part) in txt.txt_data.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push('"');
            for &b in part.iter() {
                match b {
                    b'"' | b'\\' => {
                        s.push('\\');
                        s.push(char::from(b));
                    }
                    0x20..=0x7e => s.push(char::from(b)),
                    _ => {
                        let _ = write!(s, "\\{b:03}");
                    }
                }
            }
            s.push('"');
        }
    } else if write!(s, "{data}").is_err() {
        s.clear();
    }
    s
}

fn question(q: &Query) -> DnsQuestion {
    DnsQuestion {
        name: name_text(q.name()),
        qtype: type_text(q.query_type()),
        qclass: class_text(q.query_class()),
    }
}

/// The fields of the 12-byte header, read without hickory so that a message
/// whose body does not decode still yields them.
struct RawHeader {
    id: u16,
    response: bool,
    flags: [u8; 2],
    counts: [u16; 4],
}

impl RawHeader {
    fn read(msg: &[u8]) -> Option<RawHeader> {
        let h = msg.get(..HEADER_LEN)?;
        let word = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        Some(RawHeader {
            id: word(0),
            response: h[2] & 0x80 != 0,
            flags: [h[2], h[3]],
            counts: [word(4), word(6), word(8), word(10)],
        })
    }

    /// A response with what the header says, for a message whose records do not decode.
    fn response(&self, transport: Transport) -> DnsResponse {
        let [a, b] = self.flags;
        let rcode = u16::from(b & 0x0f);
        DnsResponse {
            id: u32::from(self.id),
            rcode: u32::from(rcode),
            rcode_name: rcode_text(rcode),
            opcode: opcode_text(OpCode::from_u8((a >> 3) & 0x0f)),
            authority_count: u32::from(self.counts[2]),
            additional_count: u32::from(self.counts[3]),
            aa: a & 0x04 != 0,
            tc: a & 0x02 != 0,
            rd: a & 0x01 != 0,
            ra: b & 0x80 != 0,
            ad: b & 0x20 != 0,
            cd: b & 0x10 != 0,
            transport: transport.name().into(),
            ..Default::default()
        }
    }
}

impl Dns {
    fn new(transport: Transport, config: &DissectConfig) -> Self {
        Dns {
            transport,
            sides: [Side::default(), Side::default()],
            waiting: VecDeque::new(),
            max_pending: config.max_pending.max(1),
            answered: VecDeque::new(),
            made: 0,
        }
    }

    fn emit(
        &mut self,
        flow: &FlowInfo,
        req: Option<Message<Request>>,
        resp: Option<Message<Response>>,
        out: &mut Vec<Emit>,
    ) {
        let n = self.made;
        self.made += 1;
        out.push(Emit::Entry(Box::new(pair::entry(
            flow,
            n,
            Protocol::Dns,
            req,
            resp,
        ))));
    }

    /// One whole DNS message, seen at `ts_ns`.
    fn message(&mut self, flow: &FlowInfo, ts_ns: u64, msg: &[u8], out: &mut Vec<Emit>) {
        let Some(head) = RawHeader::read(msg) else {
            out.push(Emit::ParseError {
                protocol: "dns",
                reason: "short_message".into(),
            });
            return;
        };
        let [qd, an, ns, ar] = head.counts.map(usize::from);
        // hickory reserves room for every question the header announces: refuse
        // counts the message cannot hold before it allocates for them.
        let decoded = if HEADER_LEN + qd * MIN_QUESTION + (an + ns + ar) * MIN_RECORD > msg.len() {
            Err("counts_exceed_length".to_string())
        } else {
            DnsMessage::from_vec(msg).map_err(|e| reason(&e))
        };
        let m = match decoded {
            Ok(m) => m,
            Err(why) => {
                out.push(Emit::ParseError {
                    protocol: "dns",
                    reason: why.clone(),
                });
                if head.response
                    && let Some(i) = self.waiting.iter().position(|w| w.id == head.id)
                    && let Some(w) = self.waiting.remove(i)
                {
                    let resp = Message {
                        ts_ns,
                        wire_size: msg.len() as u64,
                        flags: vec![format!("malformed:{why}")],
                        body: Response {
                            kind: Some(response::Kind::Dns(Box::new(
                                head.response(self.transport),
                            ))),
                        },
                    };
                    self.emit(flow, Some(w.msg), Some(resp), out);
                }
                return;
            }
        };
        let meta = m.metadata;
        let questions: Vec<DnsQuestion> = m.queries.iter().map(question).collect();
        let first = questions.first().map(|q| {
            (
                q.name.to_ascii_lowercase(),
                q.qtype.clone(),
                q.qclass.clone(),
            )
        });
        match meta.message_type {
            MessageType::Query => {
                let (name, qtype, qclass) = questions
                    .first()
                    .map(|q| (q.name.clone(), q.qtype.clone(), q.qclass.clone()))
                    .unwrap_or_default();
                let req = DnsRequest {
                    id: u32::from(meta.id),
                    opcode: opcode_text(meta.op_code),
                    name,
                    qtype,
                    qclass,
                    questions,
                    rd: meta.recursion_desired,
                    cd: meta.checking_disabled,
                    ad: meta.authentic_data,
                    transport: self.transport.name().into(),
                };
                if self.waiting.len() >= self.max_pending
                    && let Some(old) = self.waiting.pop_front()
                {
                    out.push(Emit::Dropped {
                        protocol: "dns",
                        what: "pending_query",
                    });
                    self.emit(flow, Some(old.msg), None, out);
                }
                self.waiting.push_back(Waiting {
                    id: meta.id,
                    question: first,
                    msg: Message {
                        ts_ns,
                        wire_size: msg.len() as u64,
                        flags: Vec::new(),
                        body: Request {
                            kind: Some(request::Kind::Dns(Box::new(req))),
                        },
                    },
                });
            }
            MessageType::Response => {
                let code = u16::from(meta.response_code);
                let answers = m
                    .answers
                    .iter()
                    .map(|r| DnsRecord {
                        name: name_text(&r.name),
                        rtype: type_text(r.record_type()),
                        rclass: class_text(r.dns_class),
                        ttl: r.ttl,
                        data: data_text(&r.data),
                    })
                    .collect();
                let resp = DnsResponse {
                    id: u32::from(meta.id),
                    rcode: u32::from(code),
                    rcode_name: rcode_text(code),
                    opcode: opcode_text(meta.op_code),
                    questions,
                    answers,
                    authority_count: u32::from(head.counts[2]),
                    additional_count: u32::from(head.counts[3]),
                    aa: meta.authoritative,
                    tc: meta.truncation,
                    ra: meta.recursion_available,
                    ad: meta.authentic_data,
                    rd: meta.recursion_desired,
                    cd: meta.checking_disabled,
                    transport: self.transport.name().into(),
                };
                // The query with this id and question; failing that, with this id
                // (a response may leave out the question).
                let i = self
                    .waiting
                    .iter()
                    .position(|w| w.id == meta.id && first.is_some() && w.question == first)
                    .or_else(|| self.waiting.iter().position(|w| w.id == meta.id));
                let req = i.and_then(|i| self.waiting.remove(i)).map(|w| {
                    if self.answered.len() >= self.max_pending {
                        self.answered.pop_front();
                    }
                    self.answered.push_back((w.id, w.question));
                    w.msg
                });
                // No query waits for it, but one was answered already.
                let duplicate = req.is_none()
                    && self.answered.iter().any(|(id, q)| {
                        *id == meta.id && (first.is_none() || q.is_none() || *q == first)
                    });
                let resp = Message {
                    ts_ns,
                    wire_size: msg.len() as u64,
                    flags: if duplicate {
                        vec!["duplicate".into()]
                    } else {
                        Vec::new()
                    },
                    body: Response {
                        kind: Some(response::Kind::Dns(Box::new(resp))),
                    },
                };
                self.emit(flow, req, Some(resp), out);
            }
        }
    }

    /// After a gap: finds the next plausible message in the side's window.
    /// Returns the bytes to frame from (the window from that message on) once
    /// found, or `None` while still looking.
    fn resync(&mut self, dir: Direction, ts_ns: u64, data: &[u8]) -> Option<Vec<u8>> {
        let side = &mut self.sides[dir.index()];
        if side.buf.is_empty() {
            side.ts_ns = ts_ns;
        }
        side.buf.extend_from_slice(data);
        let mut at = 0;
        while at < side.buf.len() {
            match probe(dir, &side.buf[at..], true) {
                Claim::Yes => {
                    side.lost = false;
                    let rest = side.buf.split_off(at);
                    side.buf.clear();
                    return Some(rest);
                }
                Claim::NeedMore => break,
                Claim::No => at += 1,
            }
        }
        side.buf.drain(..at);
        if side.buf.len() > RESYNC_WINDOW {
            // A start that stays undecided this long is not one.
            let cut = side.buf.len() - RESYNC_WINDOW / 2;
            side.buf.drain(..cut);
        }
        side.ts_ns = ts_ns;
        None
    }

    /// Frames length-prefixed messages from `data` and handles each whole one.
    fn frame(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        mut data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        while !data.is_empty() {
            let side = &mut self.sides[dir.index()];
            if side.buf.is_empty() {
                side.ts_ns = ts_ns;
            }
            let need = match side.buf[..] {
                [a, b, ..] => 2 + usize::from(u16::from_be_bytes([a, b])),
                _ => 2,
            };
            let take = (need - side.buf.len()).min(data.len());
            side.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            let whole = match side.buf[..] {
                [a, b, ..] => side.buf.len() == 2 + usize::from(u16::from_be_bytes([a, b])),
                _ => false,
            };
            if whole {
                let msg = std::mem::take(&mut side.buf);
                let ts = side.ts_ns;
                self.message(flow, ts, &msg[2..], out);
            }
        }
    }

    /// The flow ended: every waiting query becomes an entry.
    fn close(&mut self, flow: &FlowInfo, out: &mut Vec<Emit>) {
        while let Some(w) = self.waiting.pop_front() {
            self.emit(flow, Some(w.msg), None, out);
        }
    }
}

impl DatagramDissector for Dns {
    fn on_datagram(
        &mut self,
        flow: &FlowInfo,
        _dir: Direction,
        ts_ns: u64,
        payload: &[u8],
        out: &mut Vec<Emit>,
    ) {
        self.message(flow, ts_ns, payload, out);
    }

    fn on_close(&mut self, flow: &FlowInfo, _end: &FlowEnd, out: &mut Vec<Emit>) {
        self.close(flow, out);
    }
}

impl Dissector for Dns {
    fn on_data(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        if !self.sides[dir.index()].lost {
            self.frame(flow, dir, ts_ns, data, out);
        } else if let Some(rest) = self.resync(dir, ts_ns, data) {
            self.frame(flow, dir, ts_ns, &rest, out);
        }
    }

    fn on_gap(
        &mut self,
        _flow: &FlowInfo,
        dir: Direction,
        _ts_ns: u64,
        _len: u64,
        _out: &mut Vec<Emit>,
    ) {
        // A message cut by the gap is lost; its query (or response) stays
        // unanswered. Framing restarts at the next plausible message.
        let side = &mut self.sides[dir.index()];
        side.buf.clear();
        side.lost = true;
    }

    fn on_close(&mut self, flow: &FlowInfo, _end: &FlowEnd, out: &mut Vec<Emit>) {
        for side in &mut self.sides {
            if !side.lost && !side.buf.is_empty() {
                out.push(Emit::ParseError {
                    protocol: "dns",
                    reason: "incomplete_message".into(),
                });
            }
            side.buf.clear();
        }
        self.close(flow, out);
    }
}

#[cfg(test)]
mod tests;
