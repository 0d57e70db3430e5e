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
//! FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup and
//! OffsetCommit bodies are read for their topics, groups, partitions, record
//! counts and error codes; other APIs keep the header only. A message is kept up to the body cap and the rest counted; a
//! length that is negative or above [`MAX_MESSAGE`] is a parse error, after
//! which the direction resynchronises at the next plausible message start.

mod decode;
pub mod json;
pub mod model;

use super::{Claim, DissectConfig, Dissector, Emit, Handoff};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{Message, entry};
use decode::*;
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
/// client id that fits in the message. One response carries too little to
/// tell it from other binary protocols, so the server side claims only a
/// connection picked up mid-way (whose requests may all predate the capture)
/// and only on a chain of responses (see [`response_chain`]).
pub fn probe(dir: Direction, first: &[u8], midstream: bool) -> Claim {
    match dir {
        Direction::ToServer => request_start(first),
        Direction::ToClient if midstream => response_chain(first),
        Direction::ToClient => Claim::No,
    }
}

/// Largest rise of the correlation id from one response to the next: clients
/// number their requests one by one, and a broker answers them in order.
const MAX_ID_STEP: i64 = 1024;

/// Whether `b` starts with two whole responses back to back: plausible
/// lengths, the second frame starting exactly where the first ends, and
/// correlation ids that are not negative and rise by 1 to [`MAX_ID_STEP`].
/// `NeedMore` until the second response's header is in.
fn response_chain(b: &[u8]) -> Claim {
    let frame = |at: usize| -> Option<(i32, i32)> {
        let h = b.get(at..at + 8)?;
        Some((be_i32(&h[0..4]), be_i32(&h[4..8])))
    };
    if b.len() >= 4 && !plausible_length(be_i32(&b[0..4]), 4) {
        return Claim::No;
    }
    let Some((len, first)) = frame(0) else {
        return Claim::NeedMore;
    };
    if first < 0 {
        return Claim::No;
    }
    let next = 4 + len as usize;
    let Some((len2, second)) = frame(next) else {
        return Claim::NeedMore;
    };
    let step = i64::from(second) - i64::from(first);
    if plausible_length(len2, 4) && (1..=MAX_ID_STEP).contains(&step) {
        Claim::Yes
    } else {
        Claim::No
    }
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

#[cfg(test)]
mod tests;
