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

/// How `msg` (the start of a message `len` bytes long) looks as DNS: a header
/// with one question, sane flags and counts that fit the length, and a
/// question that decodes. `NeedMore` when `msg` ends before the question does.
fn plausible(msg: &[u8], len: usize) -> Claim {
    if len < HEADER_LEN + MIN_QUESTION {
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
    let query_sane = metadata.message_type == MessageType::Response
        || metadata.op_code != OpCode::Query
        || (u16::from(metadata.response_code) == 0
            && counts.answers == 0
            && counts.authorities == 0);
    if z || !opcode_known
        || counts.queries != 1
        || !query_sane
        || HEADER_LEN + MIN_QUESTION + records * MIN_RECORD > len
    {
        return Claim::No;
    }
    let mut decoder = BinDecoder::new(&msg[..msg.len().min(len)]);
    let _ = decoder.read_slice(HEADER_LEN);
    match Query::read(&mut decoder) {
        Ok(q) => {
            // mDNS puts its unicast-response bit at the top of the class.
            let class = u16::from(q.query_class()) & 0x7fff;
            let class_ok = matches!(class, 1 | 3 | 4 | 254 | 255);
            if class_ok && u16::from(q.query_type()) != 0 {
                Claim::Yes
            } else {
                Claim::No
            }
        }
        Err(DecodeError::InsufficientBytes) if msg.len() < len => Claim::NeedMore,
        Err(_) => Claim::No,
    }
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
    question: Option<(String, String, String)>,
    msg: Message<Request>,
}

pub struct Dns {
    transport: Transport,
    sides: [Side; 2],
    waiting: VecDeque<Waiting>,
    max_pending: usize,
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
                let req = i.and_then(|i| self.waiting.remove(i)).map(|w| w.msg);
                let resp = Message {
                    ts_ns,
                    wire_size: msg.len() as u64,
                    flags: Vec::new(),
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
mod tests {
    use super::*;
    use crate::GenericFields;
    use crate::flow::CloseReason;
    use std::net::SocketAddr;

    // Hand-built wire format, so the tests do not trust the decoder's own encoder.

    /// A name as labels: "a.bc" is 1 'a' 2 'b' 'c' 0.
    fn name(n: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in n.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
        let mut v = id.to_be_bytes().to_vec();
        v.extend_from_slice(&flags.to_be_bytes());
        for c in counts {
            v.extend_from_slice(&c.to_be_bytes());
        }
        v
    }

    fn rr(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
        let mut v = owner.to_vec();
        v.extend_from_slice(&rtype.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        v.extend_from_slice(&ttl.to_be_bytes());
        v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        v.extend_from_slice(rdata);
        v
    }

    /// A pointer to the question's name, which starts right after the header.
    const TO_QNAME: [u8; 2] = [0xc0, 12];
    const QUERY_FLAGS: u16 = 0x0100; // RD
    const RESPONSE_FLAGS: u16 = 0x8180; // QR RD RA

    fn query(id: u16, qname: &str, qtype: u16) -> Vec<u8> {
        let mut v = header(id, QUERY_FLAGS, [1, 0, 0, 0]);
        v.extend(name(qname));
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        v
    }

    /// A response to `query(id, qname, qtype)` with `rcode` and these answers.
    fn response(id: u16, qname: &str, qtype: u16, rcode: u16, answers: &[Vec<u8>]) -> Vec<u8> {
        let mut v = query(id, qname, qtype);
        v[2..4].copy_from_slice(&(RESPONSE_FLAGS | rcode).to_be_bytes());
        v[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        for a in answers {
            v.extend_from_slice(a);
        }
        v
    }

    fn flow() -> FlowInfo {
        FlowInfo {
            id: 7,
            client: SocketAddr::from(([127, 0, 0, 1], 40000)),
            server: SocketAddr::from(([127, 0, 0, 1], 5353)),
            first_ts_ns: 1_000,
            midstream: false,
        }
    }

    fn end() -> FlowEnd {
        FlowEnd {
            ts_ns: 99_000,
            reason: CloseReason::Idle,
            packets: [0; 2],
            bytes: [0; 2],
        }
    }

    fn config(max_pending: usize) -> DissectConfig {
        DissectConfig {
            max_pending,
            ..Default::default()
        }
    }

    fn entries(out: &[Emit]) -> Vec<&proto::v1::Entry> {
        out.iter()
            .filter_map(|e| match e {
                Emit::Entry(e) => Some(&**e),
                _ => None,
            })
            .collect()
    }

    fn parse_errors(out: &[Emit]) -> Vec<&str> {
        out.iter()
            .filter_map(|e| match e {
                Emit::ParseError { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect()
    }

    fn dns_req(e: &proto::v1::Entry) -> &DnsRequest {
        match e.request.as_ref().and_then(|r| r.kind.as_ref()) {
            Some(request::Kind::Dns(r)) => r,
            other => panic!("not a DNS request: {other:?}"),
        }
    }

    fn dns_resp(e: &proto::v1::Entry) -> &DnsResponse {
        match e.response.as_ref().and_then(|r| r.kind.as_ref()) {
            Some(response::Kind::Dns(r)) => r,
            other => panic!("not a DNS response: {other:?}"),
        }
    }

    /// Query at t=10 µs, response at t=25 µs over UDP; the one entry they make.
    fn udp_exchange(q: &[u8], r: &[u8]) -> (proto::v1::Entry, Vec<String>) {
        let mut d = Dns::new(Transport::Udp, &config(8));
        let mut out = Vec::new();
        d.on_datagram(&flow(), Direction::ToServer, 10_000, q, &mut out);
        d.on_datagram(&flow(), Direction::ToClient, 25_000, r, &mut out);
        DatagramDissector::on_close(&mut d, &flow(), &end(), &mut out);
        let errors = parse_errors(&out).iter().map(|s| s.to_string()).collect();
        let es = entries(&out);
        assert_eq!(es.len(), 1, "{out:?}");
        (es[0].clone(), errors)
    }

    #[test]
    fn answers_of_each_type_are_written_as_in_a_zone_file() {
        let target = name("web.example.com");
        let mut mx = 10u16.to_be_bytes().to_vec();
        mx.extend(name("mail.example.com"));
        let mut srv = Vec::new();
        for n in [5u16, 7, 8080] {
            srv.extend_from_slice(&n.to_be_bytes());
        }
        srv.extend(target.clone());
        let mut txt = vec![11];
        txt.extend_from_slice(b"hello world");
        txt.push(6);
        txt.extend_from_slice(b"se\"c\\\xff");
        let aaaa: [u8; 16] = "fd00::7".parse::<std::net::Ipv6Addr>().unwrap().octets();
        // (query type, its number, answer type number, rdata, expected data)
        let table: &[(&str, u16, u16, Vec<u8>, &str)] = &[
            ("A", 1, 1, vec![10, 0, 0, 7], "10.0.0.7"),
            ("AAAA", 28, 28, aaaa.to_vec(), "fd00::7"),
            ("CNAME", 5, 5, target.clone(), "web.example.com."),
            ("MX", 15, 15, mx, "10 mail.example.com."),
            ("TXT", 16, 16, txt, "\"hello world\" \"se\\\"c\\\\\\255\""),
            ("SRV", 33, 33, srv, "5 7 8080 web.example.com."),
            ("PTR", 12, 12, target, "web.example.com."),
        ];
        for (qtype, code, rtype, rdata, want) in table {
            let q = query(0x1234, "q.example.com", *code);
            let r = response(
                0x1234,
                "q.example.com",
                *code,
                0,
                &[rr(&TO_QNAME, *rtype, 300, rdata)],
            );
            let (e, errors) = udp_exchange(&q, &r);
            assert!(errors.is_empty(), "{qtype}: {errors:?}");
            assert_eq!(e.protocol, Protocol::Dns as i32);
            assert_eq!(e.method(), Some(*qtype));
            assert_eq!(e.path(), Some("q.example.com"));
            assert_eq!(e.status(), Some(0));
            assert_eq!(e.elapsed_ns, Some(15_000));
            assert_eq!(e.request_size, q.len() as u64);
            assert_eq!(e.response_size, r.len() as u64);
            assert!(e.flags.is_empty(), "{qtype}: {:?}", e.flags);
            let (req, resp) = (dns_req(&e), dns_resp(&e));
            assert_eq!((req.id, req.rd, req.qclass.as_str()), (0x1234, true, "IN"));
            assert_eq!(req.transport, "udp");
            assert_eq!(resp.rcode_name, "NOERROR");
            assert!(resp.ra && resp.rd && !resp.aa && !resp.tc);
            assert_eq!(resp.answers.len(), 1, "{qtype}");
            let a = &resp.answers[0];
            assert_eq!(
                (a.name.as_str(), a.rtype.as_str(), a.ttl, a.data.as_str()),
                ("q.example.com", *qtype, 300, *want),
                "{qtype}"
            );
        }
    }

    #[test]
    fn error_rcodes_are_the_status() {
        let mut soa = name("ns.example.com");
        soa.extend(name("admin.example.com"));
        for n in [1u32, 3600, 600, 86400, 60] {
            soa.extend_from_slice(&n.to_be_bytes());
        }
        for (rcode, want) in [(3u16, "NXDOMAIN"), (2, "SERVFAIL"), (5, "REFUSED")] {
            let q = query(9, "missing.example.com", 1);
            let mut r = response(9, "missing.example.com", 1, rcode, &[]);
            // An NXDOMAIN carries the zone's SOA in the authority section.
            r[8..10].copy_from_slice(&1u16.to_be_bytes());
            r.extend(rr(&[0xc0, 12 + 8], 6, 60, &soa));
            let (e, errors) = udp_exchange(&q, &r);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(e.status(), Some(i64::from(rcode)));
            let resp = dns_resp(&e);
            assert_eq!(resp.rcode_name, want);
            assert_eq!((resp.answers.len(), resp.authority_count), (0, 1));
        }
    }

    #[test]
    fn compression_pointers_are_followed_backwards() {
        // The CNAME's target is "web" then a pointer to "example.com" inside the question.
        let q = query(1, "www.example.com", 1);
        let mut target = vec![3];
        target.extend_from_slice(b"web");
        target.extend_from_slice(&[0xc0, 12 + 4]);
        let r = response(
            1,
            "www.example.com",
            1,
            0,
            &[
                rr(&TO_QNAME, 5, 60, &target),
                // Owner: a pointer to the CNAME's data, itself ending in a pointer.
                rr(&[0xc0, 12 + 17 + 4 + 12], 1, 60, &[192, 0, 2, 1]),
            ],
        );
        let (e, errors) = udp_exchange(&q, &r);
        assert!(errors.is_empty(), "{errors:?}");
        let answers = &dns_resp(&e).answers;
        assert_eq!(answers[0].data, "web.example.com.");
        assert_eq!(answers[1].name, "web.example.com");
        assert_eq!(answers[1].data, "192.0.2.1");
    }

    #[test]
    fn malformed_messages_are_parse_errors_and_never_followed_forever() {
        let q = query(77, "loop.example.com", 1);
        // (what, response bytes, reason): every one answers the waiting query.
        let mut self_loop = response(77, "loop.example.com", 1, 0, &[]);
        self_loop[6..8].copy_from_slice(&1u16.to_be_bytes());
        let at = self_loop.len() as u8;
        self_loop.extend(rr(&[0xc0, at], 1, 60, &[1, 2, 3, 4]));
        // Two pointers that point at each other: the first one points forward.
        let mut two_loop = response(77, "loop.example.com", 1, 0, &[]);
        two_loop[6..8].copy_from_slice(&1u16.to_be_bytes());
        let at = two_loop.len() as u8;
        two_loop.extend(rr(&[0xc0, at + 2 + 10 + 4], 5, 60, &[0xc0, at]));
        let full = response(
            77,
            "loop.example.com",
            1,
            0,
            &[rr(&TO_QNAME, 1, 60, &[1, 2, 3, 4])],
        );
        let cut_data = full[..full.len() - 2].to_vec();
        let cut_head = full[..full.len() - 8].to_vec();
        let mut lying = response(77, "loop.example.com", 1, 0, &[]);
        lying[6..8].copy_from_slice(&u16::MAX.to_be_bytes());
        let table: &[(&str, Vec<u8>, &str)] = &[
            ("pointer to itself", self_loop, "pointer_not_prior_to_label"),
            ("pointer loop", two_loop, "pointer_not_prior_to_label"),
            (
                "truncated record data",
                cut_data,
                "incorrect_rdata_length_read",
            ),
            ("truncated record header", cut_head, "insufficient_bytes"),
            ("counts beyond the message", lying, "counts_exceed_length"),
        ];
        for (what, r, why) in table {
            let (e, errors) = udp_exchange(&q, r);
            assert_eq!(errors, vec![why.to_string()], "{what}");
            assert_eq!(e.flags, vec![format!("malformed:{why}")], "{what}");
            assert_eq!(dns_req(&e).name, "loop.example.com", "{what}");
            assert_eq!(dns_resp(&e).id, 77, "{what}");
            assert_eq!(e.elapsed_ns, Some(15_000), "{what}");
        }
        // A malformed query or a message shorter than a header makes no entry.
        let mut d = Dns::new(Transport::Udp, &config(8));
        let mut out = Vec::new();
        d.on_datagram(&flow(), Direction::ToServer, 1, &q[..q.len() - 3], &mut out);
        d.on_datagram(&flow(), Direction::ToServer, 2, &q[..5], &mut out);
        DatagramDissector::on_close(&mut d, &flow(), &end(), &mut out);
        assert_eq!(
            parse_errors(&out),
            vec!["insufficient_bytes", "short_message"]
        );
        assert!(entries(&out).is_empty());
    }

    #[test]
    fn answers_pair_by_id_out_of_order_and_the_unanswered_close_as_no_response() {
        let mut d = Dns::new(Transport::Udp, &config(8));
        let mut out = Vec::new();
        let f = flow();
        d.on_datagram(
            &f,
            Direction::ToServer,
            1_000,
            &query(1, "one.test", 1),
            &mut out,
        );
        d.on_datagram(
            &f,
            Direction::ToServer,
            2_000,
            &query(2, "two.test", 28),
            &mut out,
        );
        d.on_datagram(
            &f,
            Direction::ToServer,
            3_000,
            &query(3, "three.test", 1),
            &mut out,
        );
        let r2 = response(2, "two.test", 28, 0, &[]);
        let r1 = response(1, "one.test", 1, 3, &[]);
        let stray = response(4, "four.test", 1, 0, &[]);
        d.on_datagram(&f, Direction::ToClient, 5_000, &r2, &mut out);
        d.on_datagram(&f, Direction::ToClient, 9_000, &r1, &mut out);
        d.on_datagram(&f, Direction::ToClient, 9_500, &stray, &mut out);
        assert_eq!(entries(&out).len(), 3);
        DatagramDissector::on_close(&mut d, &f, &end(), &mut out);
        let es = entries(&out);
        let seen: Vec<_> = es
            .iter()
            .map(|e| {
                (
                    e.path().map(str::to_string),
                    e.status(),
                    e.elapsed_ns,
                    e.flags.clone(),
                )
            })
            .collect();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            seen,
            vec![
                (s("two.test"), Some(0), Some(3_000), vec![]),
                (s("one.test"), Some(3), Some(8_000), vec![]),
                (None, Some(0), None, vec!["no_request".to_string()]),
                (s("three.test"), None, None, vec!["no_response".to_string()]),
            ]
        );
        let ids: Vec<_> = es.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "0000000000000007-0",
                "0000000000000007-1",
                "0000000000000007-2",
                "0000000000000007-3"
            ]
        );
    }

    #[test]
    fn the_pending_list_is_bounded_and_what_it_pushes_out_is_counted() {
        let mut d = Dns::new(Transport::Udp, &config(2));
        let mut out = Vec::new();
        for id in 0..5u16 {
            d.on_datagram(
                &flow(),
                Direction::ToServer,
                1,
                &query(id, "x.test", 1),
                &mut out,
            );
        }
        let dropped = out
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Emit::Dropped {
                        protocol: "dns",
                        ..
                    }
                )
            })
            .count();
        assert_eq!(dropped, 3);
        let pushed: Vec<u32> = entries(&out).iter().map(|e| dns_req(e).id).collect();
        assert_eq!(pushed, [0, 1, 2]);
        assert_eq!(d.waiting.len(), 2);
        // The survivors still pair.
        d.on_datagram(
            &flow(),
            Direction::ToClient,
            2,
            &response(4, "x.test", 1, 0, &[]),
            &mut out,
        );
        let last = *entries(&out).last().unwrap();
        assert_eq!((dns_req(last).id, last.status()), (4, Some(0)));
    }

    /// Feeds TCP chunks: (direction, time, bytes).
    fn tcp_run(chunks: &[(Direction, u64, Vec<u8>)], midstream: bool) -> Vec<Emit> {
        let f = FlowInfo {
            midstream,
            ..flow()
        };
        let mut d = new(&f, &config(8), None);
        let mut out = Vec::new();
        for (dir, ts, bytes) in chunks {
            d.on_data(&f, *dir, *ts, bytes, &mut out);
        }
        d.on_close(&f, &end(), &mut out);
        out
    }

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut v = (msg.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    #[test]
    fn tcp_messages_split_across_segments_are_joined() {
        let q = framed(&query(5, "split.test", 1));
        let r = framed(&response(
            5,
            "split.test",
            1,
            0,
            &[rr(&TO_QNAME, 1, 1, &[1, 1, 1, 1])],
        ));
        // One byte per segment each way: the length prefix itself is split.
        let mut chunks: Vec<_> = q
            .iter()
            .enumerate()
            .map(|(i, b)| (Direction::ToServer, 100 + i as u64, vec![*b]))
            .collect();
        chunks.extend(
            r.iter()
                .enumerate()
                .map(|(i, b)| (Direction::ToClient, 500 + i as u64, vec![*b])),
        );
        let out = tcp_run(&chunks, false);
        assert!(parse_errors(&out).is_empty(), "{out:?}");
        let es = entries(&out);
        assert_eq!(es.len(), 1);
        let e = es[0];
        // Times are those of each message's first byte; sizes exclude the prefix.
        assert_eq!((e.ts_ns, e.elapsed_ns), (100, Some(400)));
        assert_eq!(e.request_size, q.len() as u64 - 2);
        assert_eq!(e.response_size, r.len() as u64 - 2);
        assert_eq!(dns_req(e).transport, "tcp");
        assert_eq!(dns_resp(e).answers[0].data, "1.1.1.1");
    }

    #[test]
    fn tcp_segments_with_two_messages_and_answers_out_of_order() {
        let mut qs = framed(&query(10, "a.test", 1));
        qs.extend(framed(&query(11, "b.test", 16)));
        let mut rs = framed(&response(11, "b.test", 16, 0, &[]));
        rs.extend(framed(&response(10, "a.test", 1, 3, &[])));
        // The first byte of the second response's prefix ends the first segment:
        // that response's time is the first segment's.
        let cut = framed(&response(11, "b.test", 16, 0, &[])).len() + 1;
        let out = tcp_run(
            &[
                (Direction::ToServer, 10, qs),
                (Direction::ToClient, 20, rs[..cut].to_vec()),
                (Direction::ToClient, 30, rs[cut..].to_vec()),
            ],
            false,
        );
        assert!(parse_errors(&out).is_empty(), "{out:?}");
        let got: Vec<_> = entries(&out)
            .iter()
            .map(|e| {
                (
                    e.path().unwrap().to_string(),
                    e.method().unwrap().to_string(),
                    e.status(),
                    e.elapsed_ns,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("b.test".to_string(), "TXT".to_string(), Some(0), Some(10)),
                ("a.test".to_string(), "A".to_string(), Some(3), Some(10)),
            ]
        );
    }

    #[test]
    fn tcp_framing_recovers_after_a_gap() {
        let q1 = framed(&query(1, "before.test", 1));
        let q2 = framed(&query(2, "after.test", 1));
        let f = flow();
        let mut d = new(&f, &config(8), None);
        let mut out = Vec::new();
        d.on_data(&f, Direction::ToServer, 1, &q1[..7], &mut out);
        d.on_gap(&f, Direction::ToServer, 2, 9, &mut out);
        // The rest of the lost message, then a whole one.
        let mut rest = q1[16..].to_vec();
        rest.extend_from_slice(&q2);
        d.on_data(&f, Direction::ToServer, 3, &rest, &mut out);
        d.on_data(
            &f,
            Direction::ToClient,
            4,
            &framed(&response(2, "after.test", 1, 0, &[])),
            &mut out,
        );
        d.on_close(&f, &end(), &mut out);
        let es = entries(&out);
        assert_eq!(es.len(), 1, "{out:?}");
        assert_eq!(
            (es[0].path(), es[0].status()),
            (Some("after.test"), Some(0))
        );
    }

    #[test]
    fn probes_claim_dns_by_content() {
        let q = query(0xbeef, "example.com", 28);
        let r = response(0xbeef, "example.com", 28, 3, &[]);
        assert!(probe_datagram(Direction::ToServer, &q));
        assert!(probe_datagram(Direction::ToServer, &r));
        let not_dns: &[&[u8]] = &[
            b"",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            &q[..16],
            &[0u8; 64],
            &[0xffu8; 64],
        ];
        for p in not_dns {
            assert!(!probe_datagram(Direction::ToServer, p), "{p:?}");
        }
        // A query that claims answers is not one.
        let mut odd = q.clone();
        odd[7] = 1;
        assert!(!probe_datagram(Direction::ToServer, &odd));

        let tq = framed(&q);
        assert_eq!(probe(Direction::ToServer, &tq, false), Claim::Yes);
        assert_eq!(probe(Direction::ToClient, &framed(&r), false), Claim::Yes);
        assert_eq!(probe(Direction::ToServer, &tq[..1], false), Claim::NeedMore);
        assert_eq!(
            probe(Direction::ToServer, &tq[..10], false),
            Claim::NeedMore
        );
        assert_eq!(
            probe(Direction::ToServer, &tq[..20], false),
            Claim::NeedMore
        );
        // A response from the client is not how DNS over TCP starts.
        assert_eq!(probe(Direction::ToServer, &framed(&r), false), Claim::No);
        assert_eq!(
            probe(Direction::ToServer, b"GET / HTTP/1.1\r\n", false),
            Claim::No
        );
        // The start of a TLS ClientHello.
        let mut hello = b"\x16\x03\x01\x00\xf8\x01\x00\x00\xf4\x03\x03".to_vec();
        hello.extend((0..64u8).map(|i| i.wrapping_mul(37)));
        assert_eq!(probe(Direction::ToServer, &hello, false), Claim::No);
    }

    #[test]
    fn flows_are_claimed_through_the_registries() {
        use crate::flow::DatagramHandler;
        use crate::flow::FlowHandler;
        use std::sync::Arc;
        let f = flow();
        let cfg = Arc::new(config(8));
        let mut out = Vec::new();
        let mut udp = crate::Datagrams::new(cfg.clone());
        udp.on_datagram(
            &f,
            Direction::ToServer,
            1,
            &query(3, "reg.test", 1),
            &mut out,
        );
        udp.on_datagram(
            &f,
            Direction::ToClient,
            2,
            &response(3, "reg.test", 1, 0, &[]),
            &mut out,
        );
        let mut tcp = crate::Connection::new(cfg);
        tcp.on_data(
            &f,
            Direction::ToServer,
            1,
            &framed(&query(4, "reg.test", 1)),
            &mut out,
        );
        tcp.on_data(
            &f,
            Direction::ToClient,
            2,
            &framed(&response(4, "reg.test", 1, 0, &[])),
            &mut out,
        );
        let es = entries(&out);
        assert_eq!(es.len(), 2, "{out:?}");
        let transports: Vec<_> = es.iter().map(|e| dns_req(e).transport.as_str()).collect();
        assert_eq!(transports, ["udp", "tcp"]);
    }
}
