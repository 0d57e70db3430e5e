//! Redis: RESP2 and RESP3 commands and replies, paired in order.
//!
//! The client sends arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or
//! inline commands (`GET k\r\n`); the server answers each in order with one
//! reply of any RESP type, so pipelined commands wait in the pairing FIFO. Pub/sub
//! breaks that order: after SUBSCRIBE the server pushes messages nobody asked
//! for. Those (RESP2 `message`/`pmessage`/`smessage` arrays of a subscribed
//! connection, every RESP3 `>` push, MONITOR's lines) become entries of their own
//! whose request is a stand-in with the command "PUSH" and the channel as key;
//! the confirmations of a (un)subscribe, one per channel, are folded into the
//! entry of the command that asked for them.
//!
//! The parser is ours, iterative and streaming, rather than the
//! `redis-protocol` crate's: that decoder recurses once per nesting level (a
//! reply nested a million deep overflows the stack), needs a whole frame in one
//! buffer (a 512 MiB bulk string would be held, and re-parsed from its start
//! each time a segment arrives), keeps maps and sets in hash containers (wire
//! order and duplicates lost) and has no inline commands. Here a frame is read
//! as it arrives with an explicit stack bounded at [`MAX_DEPTH`]; bulk strings
//! are copied only up to the body cap, so memory does not grow with what a
//! length prefix claims. After bytes that do not parse, the direction reports
//! one parse error and resynchronises at the next line that plausibly starts a
//! message (`*N\r\n$` from the client, a reply header from the server).

mod draft;
pub mod json;
pub mod model;
mod parse;
mod probe;
mod side;

use super::{Claim, DissectConfig, Dissector, Emit, Handoff};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{Fifo, Message};
use draft::*;
use parse::*;
use probe::*;
use proto::v1::{Protocol, RedisRequest, RedisResponse, Request, Response, request, response};
use side::*;

/// Deepest nesting of aggregates (attributes and streamed strings included)
/// accepted in one reply; real replies stay within a handful of levels.
const MAX_DEPTH: usize = 128;
/// Longest bulk string: Redis's default `proto-max-bulk-len`.
const MAX_BULK: u64 = 512 << 20;
/// Most elements an aggregate may announce; they are counted, never preallocated.
const MAX_AGGREGATE: u64 = u32::MAX as u64;
/// Arguments kept per command (each costs a vector even when empty).
const MAX_ARGS: usize = 4096;
/// Bytes of a command's name kept.
const MAX_COMMAND: usize = 64;
/// Elements of a reply kept for pub/sub recognition, and bytes of each.
const PUBSUB_ITEMS: usize = 4;
const PUBSUB_ITEM: usize = 1024;
/// Bytes a message-start check looks at (a header line, or two for a command).
const LOOK: usize = 320;

/// Commands recognised when sent inline (a text line) as a stream's first bytes.
const INLINE_COMMANDS: &[&str] = &[
    "PING",
    "ECHO",
    "SET",
    "GET",
    "DEL",
    "EXISTS",
    "INCR",
    "DECR",
    "INCRBY",
    "APPEND",
    "MGET",
    "MSET",
    "KEYS",
    "SCAN",
    "TYPE",
    "TTL",
    "EXPIRE",
    "HSET",
    "HGET",
    "HGETALL",
    "HDEL",
    "LPUSH",
    "RPUSH",
    "LPOP",
    "RPOP",
    "LRANGE",
    "LLEN",
    "SADD",
    "SREM",
    "SMEMBERS",
    "ZADD",
    "ZRANGE",
    "INFO",
    "SELECT",
    "HELLO",
    "CLIENT",
    "CONFIG",
    "COMMAND",
    "DBSIZE",
    "FLUSHDB",
    "FLUSHALL",
    "MONITOR",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "PUBLISH",
    "MULTI",
    "EXEC",
];

/// Commands whose first word names a family and second the operation.
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY", "MEMORY",
    "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// Commands without a key (pub/sub commands name a channel, which serves as their key).
const KEYLESS: &[&str] = &[
    "AUTH",
    "BGREWRITEAOF",
    "BGSAVE",
    "DBSIZE",
    "DISCARD",
    "ECHO",
    "EXEC",
    "FAILOVER",
    "FLUSHALL",
    "FLUSHDB",
    "HELLO",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LOLWUT",
    "MONITOR",
    "MULTI",
    "PING",
    "PSYNC",
    "QUIT",
    "RANDOMKEY",
    "READONLY",
    "READWRITE",
    "REPLCONF",
    "REPLICAOF",
    "RESET",
    "ROLE",
    "SAVE",
    "SCAN",
    "SELECT",
    "SHUTDOWN",
    "SLAVEOF",
    "SWAPDB",
    "SYNC",
    "TIME",
    "UNWATCH",
    "WAIT",
    "WAITAOF",
];

pub fn new(
    flow: &FlowInfo,
    config: &DissectConfig,
    handoff: Option<&Handoff>,
) -> Box<dyn Dissector> {
    Box::new(Redis {
        max_body: config.max_body,
        sides: [
            Side::new(Role::Client, config, flow.midstream),
            Side::new(Role::Server, config, flow.midstream),
        ],
        pairs: Fifo::numbered_from(
            Protocol::Redis,
            config.max_pending,
            handoff.map_or(0, |h| h.entries_made),
        ),
        pubsub: PubSub::default(),
    })
}

pub struct Redis {
    max_body: usize,
    sides: [Side; 2],
    pairs: Fifo,
    pubsub: PubSub,
}

impl Redis {
    fn run(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        let mut input = data;
        while !input.is_empty() {
            let side = &mut self.sides[dir.index()];
            if side.resync.is_some() {
                match side.resync_step(input) {
                    Resynced::Consumed(n) => input = &input[n..],
                    // Held bytes are a short line start; parsing them never resynchronises into a carry again.
                    Resynced::Carry(bytes) => self.run(flow, dir, ts_ns, &bytes, out),
                }
                continue;
            }
            if side.parser.wire == 0 {
                side.ts = ts_ns;
            }
            match side.parser.feed(input) {
                Feed::More => input = &[],
                Feed::Frame(n) => {
                    input = &input[n..];
                    side.synced = true;
                    self.finish(flow, dir, &[], out);
                }
                Feed::Error {
                    at,
                    reason,
                    line_start,
                } => {
                    input = &input[at..];
                    self.parse_error(flow, dir, reason, line_start, out);
                }
            }
        }
    }

    fn parse_error(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        reason: &'static str,
        line_start: bool,
        out: &mut Vec<Emit>,
    ) {
        let side = &mut self.sides[dir.index()];
        if side.synced {
            out.push(Emit::ParseError {
                protocol: "redis",
                reason: reason.to_string(),
            });
            if side.parser.has_message() {
                // The frame began well: it is (most likely) the answer or command
                // the other side pairs with, so it still makes its entry.
                self.finish(flow, dir, &[&format!("malformed:{reason}")], out);
            }
        }
        let side = &mut self.sides[dir.index()];
        side.parser.reset();
        side.synced = false;
        side.resync = Some(Resync {
            window: Vec::new(),
            line_start,
        });
    }

    /// The current frame of `dir` is complete (or as complete as it will get): pair it.
    fn finish(&mut self, flow: &FlowInfo, dir: Direction, extra: &[&str], out: &mut Vec<Emit>) {
        let side = &mut self.sides[dir.index()];
        let (draft, wire) = side.parser.take();
        let mut flags = std::mem::take(&mut side.flags);
        for f in extra {
            add_flag(&mut flags, f);
        }
        let ts_ns = side.ts;
        match dir {
            Direction::ToServer => {
                let (req, cut) = draft.into_request();
                if cut {
                    add_flag(&mut flags, "truncated");
                }
                let msg = Message {
                    ts_ns,
                    wire_size: wire,
                    flags,
                    body: Request {
                        kind: Some(request::Kind::Redis(Box::new(req))),
                    },
                };
                self.pairs.request(flow, msg, out);
            }
            Direction::ToClient => {
                let mut reply = draft.into_reply();
                if reply.resp.value_truncated {
                    add_flag(&mut flags, "truncated");
                }
                let resp = std::mem::take(&mut reply.resp);
                let msg = Message {
                    ts_ns,
                    wire_size: wire,
                    flags,
                    body: Response {
                        kind: Some(response::Kind::Redis(Box::new(resp))),
                    },
                };
                self.reply(flow, reply, msg, out);
            }
        }
    }

    /// The command the next reply answers, and its argument count.
    fn front(&self) -> Option<(&str, u64)> {
        match &self.pairs.front()?.body.kind {
            Some(request::Kind::Redis(r)) => Some((r.command.as_str(), r.arg_count)),
            _ => None,
        }
    }

    /// Routes a reply: confirmations of (un)subscribing to their command,
    /// pushes to entries of their own, everything else to the next command.
    fn reply(
        &mut self,
        flow: &FlowInfo,
        reply: Reply,
        msg: Message<Response>,
        out: &mut Vec<Emit>,
    ) {
        let push = reply.kind == Some(b'>');
        let array = reply.kind == Some(b'*');
        let word = reply.word();
        let word = word.as_deref();
        let confirmation = matches!(
            word,
            Some(
                "subscribe"
                    | "unsubscribe"
                    | "psubscribe"
                    | "punsubscribe"
                    | "ssubscribe"
                    | "sunsubscribe"
            )
        );
        if (push || array)
            && confirmation
            && let Some(count) = reply.count()
        {
            let word = word.unwrap_or_default();
            if let Some(g) = &mut self.pubsub.group
                && g.word == word
            {
                g.left -= 1;
                merge(&mut g.resp, msg, self.max_body);
                let complete = g.left == 0;
                self.pubsub.track(word, count);
                if complete {
                    self.flush_group(flow, out);
                }
                return;
            }
            self.flush_group(flow, out);
            if let Some((command, args)) = self.front()
                && confirmation_of(command) == Some(word)
            {
                let expected = self.pubsub.expected(word, args);
                self.pubsub.track(word, count);
                if expected > 1 {
                    self.pubsub.group = Some(Group {
                        word: word.to_string(),
                        left: expected - 1,
                        resp: msg,
                    });
                } else {
                    self.pairs.response(flow, msg, out);
                }
                return;
            }
            if push || self.pubsub.subscribed() || self.pairs.is_empty() {
                self.pubsub.track(word, count);
                self.push(flow, &reply, msg, out);
                return;
            }
        }
        let message = array
            && matches!(word, Some("message" | "pmessage" | "smessage"))
            && (self.pubsub.subscribed() || self.pairs.is_empty());
        let monitor_line = self.pubsub.monitor && self.pairs.is_empty();
        if push || message || monitor_line {
            self.push(flow, &reply, msg, out);
            return;
        }
        self.flush_group(flow, out);
        if let Some((command, _)) = self.front() {
            match command {
                "MONITOR" if reply.kind == Some(b'+') => self.pubsub.monitor = true,
                "RESET" => self.pubsub = PubSub::default(),
                _ => {}
            }
        }
        self.pairs.response(flow, msg, out);
    }

    /// An entry of a server push: its request is a stand-in ("PUSH", channel as key, no bytes).
    fn push(
        &mut self,
        flow: &FlowInfo,
        reply: &Reply,
        msg: Message<Response>,
        out: &mut Vec<Emit>,
    ) {
        let channel = match reply.word().as_deref() {
            Some("pmessage") => reply.item_text(2),
            Some(_) if reply.items.len() >= 2 => reply.item_text(1),
            _ => String::new(),
        };
        let req = Message {
            ts_ns: msg.ts_ns,
            wire_size: 0,
            flags: Vec::new(),
            body: Request {
                kind: Some(request::Kind::Redis(Box::new(RedisRequest {
                    command: "PUSH".into(),
                    key: channel,
                    ..Default::default()
                }))),
            },
        };
        self.pairs.unsolicited(flow, Some(req), msg, out);
        if let Some(Emit::Entry(e)) = out.last_mut() {
            // Nothing was asked, so nothing took time.
            e.elapsed_ns = None;
        }
    }

    fn flush_group(&mut self, flow: &FlowInfo, out: &mut Vec<Emit>) {
        if let Some(g) = self.pubsub.group.take() {
            self.pairs.response(flow, g.resp, out);
        }
    }
}

/// Folds a further confirmation into the first one's response.
fn merge(into: &mut Message<Response>, more: Message<Response>, max: usize) {
    into.wire_size += more.wire_size;
    for f in &more.flags {
        add_flag(&mut into.flags, f);
    }
    if let (Some(response::Kind::Redis(a)), Some(response::Kind::Redis(b))) =
        (&mut into.body.kind, more.body.kind)
    {
        let room = max.saturating_sub(a.value.len());
        let joined = [b", ".as_slice(), &b.value].concat();
        if joined.len() > room {
            a.value_truncated = true;
        }
        a.value.extend_from_slice(&joined[..joined.len().min(room)]);
    }
}

impl Dissector for Redis {
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
        if let Some(r) = &mut side.resync {
            r.window.clear();
            r.line_start = false;
            return;
        }
        add_flag(&mut side.flags, "gap");
        if side.parser.skip_payload(len) {
            // The loss fell inside a bulk string: the frame goes on, marked truncated.
            return;
        }
        if side.parser.has_message() {
            side.parser.draft.cut = true;
            self.finish(flow, dir, &[], out);
        }
        let side = &mut self.sides[dir.index()];
        side.parser.reset();
        side.synced = false;
        side.resync = Some(Resync {
            window: Vec::new(),
            line_start: false,
        });
    }

    fn on_close(&mut self, flow: &FlowInfo, _end: &FlowEnd, out: &mut Vec<Emit>) {
        for dir in [Direction::ToServer, Direction::ToClient] {
            let side = &mut self.sides[dir.index()];
            if side.resync.is_none() && side.parser.has_message() {
                side.parser.draft.cut = true;
                self.finish(flow, dir, &["incomplete"], out);
            }
        }
        self.flush_group(flow, out);
        self.pairs.close(flow, out);
    }
}

#[cfg(test)]
mod tests;
