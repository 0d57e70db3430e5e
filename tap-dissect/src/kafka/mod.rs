//! Kafka: length-prefixed requests and responses, paired by correlation id.
//!
//! Every message is an `i32` length and that many bytes. A request's header
//! names its API (key and version), a correlation id and the client; a response
//! carries only the correlation id, so the API and version of each waiting
//! request are remembered (in a bounded map) to decode its response. Brokers
//! answer a connection's requests in order, but pairing by id keeps entries
//! right when a request or response was lost to a gap.
//!
//! The `kafka-protocol` crate supplies the API table (names, valid versions,
//! which versions use flexible headers). Bodies are read here rather than with
//! its decoders: those preallocate arrays from the length the wire claims, so a
//! few bytes could ask for gigabytes. Produce, Fetch, Metadata, ApiVersions,
//! FindCoordinator, JoinGroup and OffsetCommit bodies are read for their
//! topics, partitions, record counts and error codes; other APIs keep the
//! header only. A message is kept up to the body cap and the rest counted; a
//! length that is negative or above [`MAX_MESSAGE`] is a parse error, after
//! which the direction resynchronises at the next plausible message start.

pub mod json;
pub mod model;

use super::{Claim, DissectConfig, Dissector, Emit, Handoff};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{Message, entry};
use kafka_protocol::messages::ApiKey;
use proto::v1::{
    KafkaPartition, KafkaRequest, KafkaResponse, KafkaTopic, Protocol, Request, Response, request,
    response,
};
use std::collections::{HashMap, VecDeque};

/// Largest message accepted: Kafka's `socket.request.max.bytes` is 100 MiB.
const MAX_MESSAGE: u64 = 100 << 20;
/// Highest API key a probe accepts.
const MAX_PROBE_KEY: i16 = 80;
/// Topics, and partitions per topic, kept per message (the rest are still read).
const MAX_TOPICS: usize = 256;
const MAX_PARTITIONS: usize = 1024;
/// Bytes of a client id or group id kept.
const MAX_NAME: usize = 256;
/// A request header's fixed part: length, key, version, correlation id, client id length.
const HEAD: usize = 14;
/// Bytes of a client id a probe checks are printable.
const LOOK_CLIENT: usize = 32;

/// Claims a stream whose client side starts with a plausible request header:
/// a length within bounds, a known API key at a version the API has, and a
/// client id that fits in the message. Responses carry too little to tell
/// them apart from other binary protocols, so the server side never claims.
pub fn probe(dir: Direction, first: &[u8], _midstream: bool) -> Claim {
    if dir != Direction::ToServer {
        return Claim::No;
    }
    request_start(first)
}

/// Whether `b` starts a request: `NeedMore` while it is too short to tell.
fn request_start(b: &[u8]) -> Claim {
    if b.len() < HEAD {
        // Reject early what can already be rejected.
        if b.len() >= 4 && !plausible_length(be_i32(&b[0..4]), HEAD as i64 - 4) {
            return Claim::No;
        }
        return Claim::NeedMore;
    }
    let len = be_i32(&b[0..4]);
    let key = be_i16(&b[4..6]);
    let version = be_i16(&b[6..8]);
    if !plausible_length(len, HEAD as i64 - 4) || !(0..=MAX_PROBE_KEY).contains(&key) {
        return Claim::No;
    }
    let Ok(api) = ApiKey::try_from(key) else {
        return Claim::No;
    };
    if version < 0 || version > api.valid_versions().max {
        return Claim::No;
    }
    let client_len = be_i16(&b[12..14]);
    if client_len < -1 || i64::from(client_len) > i64::from(len) - 10 {
        return Claim::No;
    }
    let shown = usize::try_from(client_len.max(0))
        .unwrap_or(0)
        .min(LOOK_CLIENT);
    let visible = &b[HEAD..b.len().min(HEAD + shown)];
    if visible.iter().any(|&c| !(0x20..0x7f).contains(&c)) {
        return Claim::No;
    }
    if visible.len() < shown {
        return Claim::NeedMore;
    }
    Claim::Yes
}

fn plausible_length(len: i32, min: i64) -> bool {
    i64::from(len) >= min && (len as u64) <= MAX_MESSAGE
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub fn new(
    _flow: &FlowInfo,
    config: &DissectConfig,
    handoff: Option<&Handoff>,
) -> Box<dyn Dissector> {
    Box::new(Kafka {
        keep: config.max_body.saturating_add(config.max_head),
        max_pending: config.max_pending.max(1),
        sides: [Side::new(), Side::new()],
        pending: HashMap::new(),
        order: VecDeque::new(),
        made: handoff.map_or(0, |h| h.entries_made),
    })
}

/// A request waiting for its response, with what decoding that response needs.
struct Pending {
    api_key: i16,
    api_version: i16,
    msg: Message<Request>,
}

pub struct Kafka {
    /// Bytes of one message kept; the rest are counted.
    keep: usize,
    max_pending: usize,
    sides: [Side; 2],
    pending: HashMap<i32, Pending>,
    /// Correlation ids in the order their requests came, for evicting the oldest.
    order: VecDeque<i32>,
    made: u64,
}

/// One direction's framing state.
struct Side {
    /// The length prefix, while it is incomplete.
    prefix: Vec<u8>,
    /// The current message's length, once its prefix is read.
    len: Option<u64>,
    /// Bytes of the current message read so far (kept or not).
    read: u64,
    /// The kept bytes of the current message.
    kept: Vec<u8>,
    ts: u64,
    /// Set after bytes that did not frame: the look-back window searched for a message start.
    resync: Option<Vec<u8>>,
    /// Whether a message has framed since the last error (errors are reported once per run).
    synced: bool,
    /// A gap cut the current message: nothing after it is kept.
    cut: bool,
}

impl Side {
    fn new() -> Self {
        Side {
            prefix: Vec::new(),
            len: None,
            read: 0,
            kept: Vec::new(),
            ts: 0,
            resync: None,
            synced: true,
            cut: false,
        }
    }

    fn reset(&mut self) {
        self.prefix.clear();
        self.len = None;
        self.read = 0;
        self.kept.clear();
        self.cut = false;
    }
}

impl Kafka {
    fn run(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        // A loop, not recursion: one segment may hold many resynchronisations.
        let mut rest = self.run_once(flow, dir, ts_ns, data, out);
        while let Some(bytes) = rest {
            rest = self.run_once(flow, dir, ts_ns, &bytes, out);
        }
    }

    /// Frames `data`; after a resynchronisation, returns the bytes from the
    /// message start found on, to be framed next.
    fn run_once(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) -> Option<Vec<u8>> {
        let mut input = data;
        while !input.is_empty() {
            if self.sides[dir.index()].resync.is_some() {
                return self.resync_step(dir, input);
            }
            let keep = self.keep;
            let side = &mut self.sides[dir.index()];
            let Some(len) = side.len else {
                if side.prefix.is_empty() {
                    side.ts = ts_ns;
                }
                let take = (4 - side.prefix.len()).min(input.len());
                side.prefix.extend_from_slice(&input[..take]);
                input = &input[take..];
                if side.prefix.len() == 4 {
                    let len = be_i32(&side.prefix);
                    if len < 0 || len as u64 > MAX_MESSAGE {
                        let reason = format!("message length {len} out of bounds");
                        self.parse_error(dir, reason, out);
                        continue;
                    }
                    side.len = Some(len as u64);
                    if len == 0 {
                        self.finish(flow, dir, out);
                    }
                }
                continue;
            };
            let want = len - side.read;
            let take = usize::try_from(want).unwrap_or(usize::MAX).min(input.len());
            let room = if side.cut {
                0
            } else {
                keep.saturating_sub(side.kept.len()).min(take)
            };
            side.kept.extend_from_slice(&input[..room]);
            side.read += take as u64;
            input = &input[take..];
            if side.read == len {
                self.finish(flow, dir, out);
            }
        }
        None
    }

    fn parse_error(&mut self, dir: Direction, reason: String, out: &mut Vec<Emit>) {
        let side = &mut self.sides[dir.index()];
        if side.synced {
            out.push(Emit::ParseError {
                protocol: "kafka",
                reason,
            });
        }
        side.synced = false;
        let window = std::mem::take(&mut side.prefix);
        side.reset();
        // The bad prefix's last bytes may begin the next message.
        side.resync = Some(window.get(1..).unwrap_or_default().to_vec());
    }

    /// Searches the resync window plus `input` for a message start; returns the
    /// bytes from there on once found.
    fn resync_step(&mut self, dir: Direction, input: &[u8]) -> Option<Vec<u8>> {
        let window = self.sides[dir.index()].resync.as_mut()?;
        window.extend_from_slice(input);
        let mut at = 0;
        while at < window.len() {
            let b = &window[at..];
            // The same answer whatever the segmentation: wait where it is too early to tell.
            let found = match dir {
                Direction::ToServer => request_start(b),
                Direction::ToClient if b.len() < 8 => Claim::NeedMore,
                Direction::ToClient => {
                    if plausible_length(be_i32(&b[0..4]), 4)
                        && self.pending.contains_key(&be_i32(&b[4..8]))
                    {
                        Claim::Yes
                    } else {
                        Claim::No
                    }
                }
            };
            if found == Claim::NeedMore {
                break;
            }
            if found == Claim::Yes {
                let rest = window[at..].to_vec();
                self.sides[dir.index()].resync = None;
                return Some(rest);
            }
            at += 1;
        }
        window.drain(..at);
        None
    }

    /// The current message of `dir` is complete: decode and pair it.
    fn finish(&mut self, flow: &FlowInfo, dir: Direction, out: &mut Vec<Emit>) {
        let side = &mut self.sides[dir.index()];
        let len = side.len.unwrap_or(0);
        let kept = std::mem::take(&mut side.kept);
        let truncated = (kept.len() as u64) < len;
        let ts_ns = side.ts;
        side.reset();
        side.synced = true;
        let mut flags = Vec::new();
        if truncated {
            flags.push("truncated".to_string());
        }
        match dir {
            Direction::ToServer => match decode_request(&kept, len) {
                Some((key, version, req)) => {
                    let msg = Message {
                        ts_ns,
                        wire_size: len + 4,
                        flags,
                        body: Request {
                            kind: Some(request::Kind::Kafka(Box::new(req))),
                        },
                    };
                    self.request(flow, key, version, msg, out);
                }
                None => self.parse_error(dir, "request header does not parse".into(), out),
            },
            Direction::ToClient => {
                if kept.len() < 4 {
                    self.parse_error(dir, "response shorter than its header".into(), out);
                    return;
                }
                let id = be_i32(&kept[0..4]);
                let waiting = self.pending.remove(&id);
                if waiting.is_some() {
                    self.order.retain(|&o| o != id);
                }
                let api = waiting.as_ref().map(|p| (p.api_key, p.api_version));
                let resp = decode_response(&kept, len, api);
                let msg = Message {
                    ts_ns,
                    wire_size: len + 4,
                    flags,
                    body: Response {
                        kind: Some(response::Kind::Kafka(Box::new(resp))),
                    },
                };
                self.emit(flow, waiting.map(|p| p.msg), Some(msg), out);
            }
        }
    }

    fn request(
        &mut self,
        flow: &FlowInfo,
        api_key: i16,
        api_version: i16,
        msg: Message<Request>,
        out: &mut Vec<Emit>,
    ) {
        let id = match &msg.body.kind {
            Some(request::Kind::Kafka(r)) => r.correlation_id,
            _ => return,
        };
        // Produce with acks=0 and a reused id both leave a request nobody answers.
        if let Some(old) = self.pending.remove(&id) {
            self.order.retain(|&o| o != id);
            self.emit(flow, Some(old.msg), None, out);
        }
        if self.pending.len() >= self.max_pending
            && let Some(oldest) = self.order.pop_front()
            && let Some(old) = self.pending.remove(&oldest)
        {
            self.emit(flow, Some(old.msg), None, out);
        }
        self.order.push_back(id);
        self.pending.insert(
            id,
            Pending {
                api_key,
                api_version,
                msg,
            },
        );
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
        out.push(Emit::Entry(Box::new(entry(
            flow,
            n,
            Protocol::Kafka,
            req,
            resp,
        ))));
    }
}

impl Dissector for Kafka {
    fn on_data(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        self.run(flow, dir, ts_ns, data, out);
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
        if let Some(total) = side.len
            && side.read.saturating_add(len) <= total
            && side.resync.is_none()
        {
            // The gap falls inside a message's body: framing survives, the body is cut.
            side.read += len;
            side.cut = true;
            if side.read == total {
                self.finish(flow, dir, out);
            }
            return;
        }
        if side.len.is_none() && side.prefix.is_empty() && side.resync.is_none() {
            side.resync = Some(Vec::new());
            side.synced = false;
            return;
        }
        if side.resync.is_none() {
            out.push(Emit::Dropped {
                protocol: "kafka",
                what: "message cut by a gap",
            });
        }
        side.reset();
        side.synced = false;
        side.resync = Some(Vec::new());
    }

    fn on_close(&mut self, flow: &FlowInfo, _end: &FlowEnd, out: &mut Vec<Emit>) {
        while let Some(id) = self.order.pop_front() {
            if let Some(p) = self.pending.remove(&id) {
                self.emit(flow, Some(p.msg), None, out);
            }
        }
    }
}

/// Decodes a request's header and, for the APIs read here, its body; `None`
/// when the header itself does not parse. Returns the API key and version too.
fn decode_request(b: &[u8], len: u64) -> Option<(i16, i16, KafkaRequest)> {
    let mut r = Reader::new(b, false);
    let key = r.i16()?;
    let version = r.i16()?;
    let correlation_id = r.i32()?;
    let api = ApiKey::try_from(key).ok();
    let header_version = api.map_or(1, |a| a.request_header_version(version));
    let client_id = if header_version >= 1 {
        r.nullable_string()?.unwrap_or_default()
    } else {
        String::new()
    };
    if header_version >= 2 {
        r.flexible = true;
        r.tagged()?;
    }
    let body_size = len.saturating_sub(r.pos as u64);
    let mut req = KafkaRequest {
        api_key: u32::from(key as u16),
        api_name: api_name(api),
        api_version: u32::from(version as u16),
        correlation_id,
        client_id: clip(client_id),
        body_size,
        ..Default::default()
    };
    if let Some(api) = api {
        let mut body = r.clone();
        body.flexible = header_version >= 2;
        let mut d = Decoded::default();
        if request_body(api, version, &mut body, &mut d).is_some() {
            req.body_decoded = true;
        }
        req.topics = d.topics;
        req.group_id = clip(d.group_id);
    }
    Some((key, version, req))
}

/// Decodes a response with the API and version of its request, when known.
fn decode_response(b: &[u8], len: u64, api: Option<(i16, i16)>) -> KafkaResponse {
    let mut r = Reader::new(b, false);
    let correlation_id = r.i32().unwrap_or_default();
    let mut resp = KafkaResponse {
        correlation_id,
        ..Default::default()
    };
    let Some((key, version)) = api else {
        resp.api_name = api_name(None);
        resp.body_size = len.saturating_sub(4);
        return resp;
    };
    let api = ApiKey::try_from(key).ok();
    resp.api_key = u32::from(key as u16);
    resp.api_name = api_name(api);
    let Some(api) = api else {
        resp.body_size = len.saturating_sub(4);
        return resp;
    };
    let flexible = api.request_header_version(version) >= 2;
    if api.response_header_version(version) >= 1 && r.with_flexible(true).tagged().is_none() {
        return resp;
    }
    resp.body_size = len.saturating_sub(r.pos as u64);
    r.flexible = flexible;
    let mut d = Decoded::default();
    resp.body_decoded = response_body(api, version, &mut r, &mut d).is_some();
    resp.error_code = if d.error != 0 {
        d.error
    } else {
        d.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.error_code)
            .find(|&e| e != 0)
            .unwrap_or(d.first_topic_error)
    };
    resp.topics = d.topics;
    resp
}

fn api_name(api: Option<ApiKey>) -> String {
    match api {
        Some(a) => format!("{a:?}"),
        None => "Unknown".to_string(),
    }
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_NAME {
        let mut at = MAX_NAME;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

/// What a body yields.
#[derive(Default)]
struct Decoded {
    topics: Vec<KafkaTopic>,
    group_id: String,
    /// The top-level error code.
    error: i32,
    /// The first non-zero error of a topic (Metadata's per-topic errors).
    first_topic_error: i32,
}

impl Decoded {
    fn topic(&mut self, name: String) -> Option<usize> {
        (self.topics.len() < MAX_TOPICS).then(|| {
            self.topics.push(KafkaTopic {
                name,
                partitions: Vec::new(),
            });
            self.topics.len() - 1
        })
    }

    fn partition(&mut self, topic: Option<usize>, p: KafkaPartition) {
        if let Some(t) = topic.and_then(|t| self.topics.get_mut(t))
            && t.partitions.len() < MAX_PARTITIONS
        {
            t.partitions.push(p);
        }
    }

    fn set_error(&mut self, code: i16) {
        if self.error == 0 {
            self.error = i32::from(code);
        }
    }
}

/// A topic's name, or (in versions that name topics by id) its id in hex.
fn topic_name(r: &mut Reader, by_id: bool) -> Option<String> {
    if by_id {
        let id = r.take(16)?;
        Some(id.iter().map(|b| format!("{b:02x}")).collect())
    } else {
        Some(r.nullable_string()?.unwrap_or_default())
    }
}

fn request_body(api: ApiKey, v: i16, r: &mut Reader, d: &mut Decoded) -> Option<()> {
    match api {
        ApiKey::Produce => {
            if v >= 3 {
                r.nullable_string()?;
            }
            r.i16()?;
            r.i32()?;
            for _ in 0..r.array()? {
                let t = d.topic(topic_name(r, v >= 13)?);
                for _ in 0..r.array()? {
                    let index = r.i32()?;
                    let records = r.nullable_bytes()?.unwrap_or_default();
                    let (record_count, size) = count_records(records);
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            record_count,
                            records_size: size,
                            ..Default::default()
                        },
                    );
                    r.tagged()?;
                }
                r.tagged()?;
            }
        }
        ApiKey::Fetch => {
            if v <= 14 {
                r.i32()?;
            }
            r.i32()?;
            r.i32()?;
            if v >= 3 {
                r.i32()?;
            }
            if v >= 4 {
                r.take(1)?;
            }
            if v >= 7 {
                r.i32()?;
                r.i32()?;
            }
            for _ in 0..r.array()? {
                let t = d.topic(topic_name(r, v >= 13)?);
                for _ in 0..r.array()? {
                    let index = r.i32()?;
                    if v >= 9 {
                        r.i32()?;
                    }
                    r.i64()?;
                    if v >= 12 {
                        r.i32()?;
                    }
                    if v >= 5 {
                        r.i64()?;
                    }
                    r.i32()?;
                    if v >= 17 {
                        r.take(16)?;
                    }
                    r.tagged()?;
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            ..Default::default()
                        },
                    );
                }
                r.tagged()?;
            }
        }
        ApiKey::Metadata => {
            for _ in 0..r.array()? {
                if v >= 10 {
                    r.take(16)?;
                }
                let name = r.nullable_string()?.unwrap_or_default();
                d.topic(name);
                r.tagged()?;
            }
        }
        ApiKey::FindCoordinator => {
            if v <= 3 {
                d.group_id = r.nullable_string()?.unwrap_or_default();
            } else {
                r.take(1)?;
                for i in 0..r.array()? {
                    let key = r.nullable_string()?.unwrap_or_default();
                    if i == 0 {
                        d.group_id = key;
                    }
                }
            }
        }
        ApiKey::JoinGroup => d.group_id = r.nullable_string()?.unwrap_or_default(),
        ApiKey::OffsetCommit => {
            d.group_id = r.nullable_string()?.unwrap_or_default();
            if v >= 1 {
                r.i32()?;
                r.nullable_string()?;
            }
            if v >= 7 {
                r.nullable_string()?;
            }
            if (2..=4).contains(&v) {
                r.i64()?;
            }
            for _ in 0..r.array()? {
                let t = d.topic(topic_name(r, v >= 10)?);
                for _ in 0..r.array()? {
                    let index = r.i32()?;
                    r.i64()?;
                    if v >= 6 {
                        r.i32()?;
                    }
                    if v == 1 {
                        r.i64()?;
                    }
                    r.nullable_string()?;
                    r.tagged()?;
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            ..Default::default()
                        },
                    );
                }
                r.tagged()?;
            }
        }
        ApiKey::ApiVersions => {}
        _ => return None,
    }
    Some(())
}

fn response_body(api: ApiKey, v: i16, r: &mut Reader, d: &mut Decoded) -> Option<()> {
    match api {
        ApiKey::Produce => {
            for _ in 0..r.array()? {
                let t = d.topic(topic_name(r, v >= 13)?);
                for _ in 0..r.array()? {
                    let index = r.i32()?;
                    let error_code = i32::from(r.i16()?);
                    r.i64()?;
                    if v >= 2 {
                        r.i64()?;
                    }
                    if v >= 5 {
                        r.i64()?;
                    }
                    if v >= 8 {
                        for _ in 0..r.array()? {
                            r.i32()?;
                            r.nullable_string()?;
                            r.tagged()?;
                        }
                        r.nullable_string()?;
                    }
                    r.tagged()?;
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            error_code,
                            ..Default::default()
                        },
                    );
                }
                r.tagged()?;
            }
        }
        ApiKey::Fetch => {
            if v >= 1 {
                r.i32()?;
            }
            if v >= 7 {
                let e = r.i16()?;
                d.set_error(e);
                r.i32()?;
            }
            for _ in 0..r.array()? {
                let t = d.topic(topic_name(r, v >= 13)?);
                for _ in 0..r.array()? {
                    let index = r.i32()?;
                    let error_code = i32::from(r.i16()?);
                    r.i64()?;
                    if v >= 4 {
                        r.i64()?;
                    }
                    if v >= 5 {
                        r.i64()?;
                    }
                    if v >= 4 {
                        for _ in 0..r.array()? {
                            r.i64()?;
                            r.i64()?;
                            r.tagged()?;
                        }
                    }
                    if v >= 11 {
                        r.i32()?;
                    }
                    let records = r.nullable_bytes()?.unwrap_or_default();
                    let (record_count, records_size) = count_records(records);
                    r.tagged()?;
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            error_code,
                            record_count,
                            records_size,
                        },
                    );
                }
                r.tagged()?;
            }
        }
        ApiKey::Metadata => {
            if v >= 3 {
                r.i32()?;
            }
            for _ in 0..r.array()? {
                r.i32()?;
                r.nullable_string()?;
                r.i32()?;
                if v >= 1 {
                    r.nullable_string()?;
                }
                r.tagged()?;
            }
            if v >= 2 {
                r.nullable_string()?;
            }
            if v >= 1 {
                r.i32()?;
            }
            for _ in 0..r.array()? {
                let error = r.i16()?;
                if d.first_topic_error == 0 {
                    d.first_topic_error = i32::from(error);
                }
                let t = d.topic(r.nullable_string()?.unwrap_or_default());
                if v >= 10 {
                    r.take(16)?;
                }
                if v >= 1 {
                    r.take(1)?;
                }
                for _ in 0..r.array()? {
                    let error_code = i32::from(r.i16()?);
                    let index = r.i32()?;
                    r.i32()?;
                    if v >= 7 {
                        r.i32()?;
                    }
                    r.int32_array()?;
                    r.int32_array()?;
                    if v >= 5 {
                        r.int32_array()?;
                    }
                    r.tagged()?;
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            error_code,
                            ..Default::default()
                        },
                    );
                }
                if v >= 8 {
                    r.i32()?;
                }
                r.tagged()?;
            }
        }
        ApiKey::ApiVersions | ApiKey::FindCoordinator | ApiKey::JoinGroup => {
            let throttle_first = match api {
                ApiKey::FindCoordinator => v >= 1,
                ApiKey::JoinGroup => v >= 2,
                _ => false,
            };
            if throttle_first {
                r.i32()?;
            }
            if api == ApiKey::FindCoordinator && v >= 4 {
                for _ in 0..r.array()? {
                    r.nullable_string()?;
                    r.i32()?;
                    r.nullable_string()?;
                    r.i32()?;
                    let e = r.i16()?;
                    d.set_error(e);
                    r.nullable_string()?;
                    r.tagged()?;
                }
            } else {
                let e = r.i16()?;
                d.set_error(e);
            }
        }
        ApiKey::OffsetCommit => {
            if v >= 3 {
                r.i32()?;
            }
            for _ in 0..r.array()? {
                let t = d.topic(topic_name(r, v >= 10)?);
                for _ in 0..r.array()? {
                    let index = r.i32()?;
                    let error_code = i32::from(r.i16()?);
                    r.tagged()?;
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            error_code,
                            ..Default::default()
                        },
                    );
                }
                r.tagged()?;
            }
        }
        _ => return None,
    }
    Some(())
}

/// Records in a partition's record batches (or legacy message sets), and
/// their size; a batch cut by the body cap counts as far as it is read.
fn count_records(b: &[u8]) -> (u64, u64) {
    let mut count = 0u64;
    let mut at = 0usize;
    while b.len() - at >= 12 {
        let size = be_i32(&b[at + 8..at + 12]);
        let Ok(size) = usize::try_from(size) else {
            break;
        };
        let magic = b.get(at + 16).copied();
        if magic == Some(2) && size >= 49 {
            match b.get(at + 57..at + 61) {
                Some(n) => count += u64::from(be_i32(n).max(0) as u32),
                None => break,
            }
        } else {
            count += 1;
        }
        at = at.saturating_add(12).saturating_add(size);
        if at >= b.len() {
            break;
        }
    }
    (count, b.len() as u64)
}

/// A cursor over a message's kept bytes; every read is bounds-checked and
/// nothing is preallocated from a length on the wire.
#[derive(Clone)]
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    /// Compact strings, arrays and tagged fields (the "flexible" versions).
    flexible: bool,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8], flexible: bool) -> Self {
        Reader {
            b,
            pos: 0,
            flexible,
        }
    }

    fn with_flexible(&mut self, flexible: bool) -> &mut Self {
        self.flexible = flexible;
        self
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(be_i16)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(be_i32)
    }

    fn i64(&mut self) -> Option<i64> {
        self.take(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            i64::from_be_bytes(a)
        })
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A length: `None` on the wire (null) as `Ok(None)`, a bad one as `None`.
    fn length(&mut self, short: bool) -> Option<Option<usize>> {
        let n: i64 = if self.flexible {
            self.uvarint()? as i64 - 1
        } else if short {
            i64::from(self.i16()?)
        } else {
            i64::from(self.i32()?)
        };
        match n {
            -1 => Some(None),
            n if n < -1 => None,
            n => Some(Some(usize::try_from(n).ok()?)),
        }
    }

    fn nullable_string(&mut self) -> Option<Option<String>> {
        match self.length(true)? {
            None => Some(None),
            Some(n) => {
                let s = self.take(n)?;
                Some(Some(String::from_utf8_lossy(s).into_owned()))
            }
        }
    }

    fn nullable_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.length(false)? {
            None => Some(None),
            Some(n) => self.take(n).map(Some),
        }
    }

    /// An array's element count (a null array has none); each element takes
    /// at least one byte, so a count above the bytes left is malformed.
    fn array(&mut self) -> Option<usize> {
        let n = self.length(false)?.unwrap_or(0);
        (n <= self.b.len() - self.pos).then_some(n)
    }

    fn int32_array(&mut self) -> Option<()> {
        let n = self.array()?;
        self.take(n.checked_mul(4)?).map(|_| ())
    }

    /// Skips tagged fields (flexible versions only).
    fn tagged(&mut self) -> Option<()> {
        if !self.flexible {
            return Some(());
        }
        let n = self.uvarint()?;
        for _ in 0..n {
            self.uvarint()?;
            let size = usize::try_from(self.uvarint()?).ok()?;
            self.take(size)?;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests;
