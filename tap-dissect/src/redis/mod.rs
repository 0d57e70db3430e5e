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

pub mod json;
pub mod model;

use super::{Claim, DissectConfig, Dissector, Emit, Handoff};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{Fifo, Message};
use proto::v1::{Protocol, RedisRequest, RedisResponse, Request, Response, request, response};

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

/// Who sends a direction's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

impl Role {
    fn of(dir: Direction) -> Role {
        match dir {
            Direction::ToServer => Role::Client,
            Direction::ToClient => Role::Server,
        }
    }
}

/// Claims a stream whose client side starts with a RESP array of bulk strings
/// or a known inline command, or whose server side starts with a well-formed
/// reply header; mid-stream, such a start at any line boundary in the first bytes.
pub fn probe(dir: Direction, first: &[u8], midstream: bool) -> Claim {
    let role = Role::of(dir);
    let at_start = match role {
        Role::Client => match array_start(first) {
            Claim::No => inline_start(first),
            c => c,
        },
        Role::Server => reply_start(first, true),
    };
    if at_start != Claim::No || !midstream {
        return at_start;
    }
    let mut p = next_line_start(first, 0);
    while let Some(at) = p {
        if plausible(role, &first[at..], true) == Claim::Yes {
            return Claim::Yes;
        }
        p = next_line_start(first, at);
    }
    Claim::No
}

/// Whether `b` starts a message of `role`'s side: for resynchronising (and,
/// `strict`, for claiming a stream mid-way).
fn plausible(role: Role, b: &[u8], strict: bool) -> Claim {
    match role {
        Role::Client => array_start(b),
        Role::Server => reply_start(b, strict),
    }
}

/// The index after the next `\n` at or after `from`, if bytes follow it.
fn next_line_start(b: &[u8], from: usize) -> Option<usize> {
    let nl = b[from..].iter().position(|&c| c == b'\n')?;
    let at = from + nl + 1;
    (at < b.len()).then_some(at)
}

/// A cursor for the shape checks of the probe: `Err` carries the verdict when
/// the bytes do not fit (`No`) or end too soon (`NeedMore`).
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn lit(&mut self, c: u8) -> Result<(), Claim> {
        match self.b.get(self.i) {
            None => Err(Claim::NeedMore),
            Some(&x) if x == c => {
                self.i += 1;
                Ok(())
            }
            Some(_) => Err(Claim::No),
        }
    }

    fn digits(&mut self, max: usize) -> Result<u64, Claim> {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
            if self.i - start > max {
                return Err(Claim::No);
            }
        }
        if self.i == self.b.len() {
            return Err(Claim::NeedMore);
        }
        if self.i == start {
            return Err(Claim::No);
        }
        std::str::from_utf8(&self.b[start..self.i])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Claim::No)
    }

    /// The rest of a line ending in CRLF, at most `max` bytes before it.
    fn line(&mut self, max: usize) -> Result<&[u8], Claim> {
        let rest = &self.b[self.i..];
        match rest.iter().take(max + 2).position(|&c| c == b'\n') {
            Some(n) if n > 0 && rest[n - 1] == b'\r' => {
                self.i += n + 1;
                Ok(&rest[..n - 1])
            }
            Some(_) => Err(Claim::No),
            None if rest.len() >= max + 2 => Err(Claim::No),
            None => Err(Claim::NeedMore),
        }
    }
}

fn verdict(r: Result<(), Claim>) -> Claim {
    r.err().unwrap_or(Claim::Yes)
}

/// `*<count>\r\n$<length>\r\n`: the start of a command array.
fn array_start(b: &[u8]) -> Claim {
    let mut c = Cursor { b, i: 0 };
    verdict((|| {
        c.lit(b'*')?;
        if c.digits(7)? == 0 {
            return Err(Claim::No);
        }
        c.lit(b'\r')?;
        c.lit(b'\n')?;
        c.lit(b'$')?;
        if c.digits(10)? > MAX_BULK {
            return Err(Claim::No);
        }
        c.lit(b'\r')?;
        c.lit(b'\n')
    })())
}

/// A known command word followed by printable arguments on one line.
fn inline_start(b: &[u8]) -> Claim {
    let word_end = b.iter().position(|c| matches!(c, b' ' | b'\r' | b'\n'));
    let Some(n) = word_end else {
        let prefix = !b.is_empty()
            && INLINE_COMMANDS
                .iter()
                .any(|w| w.len() >= b.len() && w.as_bytes()[..b.len()].eq_ignore_ascii_case(b));
        return if prefix { Claim::NeedMore } else { Claim::No };
    };
    if !INLINE_COMMANDS
        .iter()
        .any(|w| w.as_bytes().eq_ignore_ascii_case(&b[..n]))
    {
        return Claim::No;
    }
    let (line, complete) = match b.iter().position(|&c| c == b'\n') {
        Some(e) => (&b[n..e], true),
        None => (&b[n..], false),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.iter().all(|c| (0x20..0x7f).contains(c) || *c == b'\t')
        || line.ends_with(b" HTTP/1.1")
        || line.ends_with(b" HTTP/1.0")
    {
        Claim::No
    } else if complete {
        Claim::Yes
    } else {
        Claim::NeedMore
    }
}

/// A reply's type byte and a well-formed header line. `strict` (claiming a
/// stream) also wants simple strings without spaces (`+OK`, `+PONG`) and errors
/// starting with an upper-case code (`-ERR`, `-WRONGTYPE`), so that the
/// greetings of text protocols (`+OK POP3 ready`) are not taken for Redis.
fn reply_start(b: &[u8], strict: bool) -> Claim {
    let Some(&t) = b.first() else {
        return Claim::NeedMore;
    };
    if !b"+-:$*_,#(!=%~>|".contains(&t) {
        return Claim::No;
    }
    let mut c = Cursor { b, i: 1 };
    let line = match c.line(LOOK - 8) {
        Ok(l) => l,
        Err(claim) => return claim,
    };
    let printable = line.iter().all(|c| (0x20..0x7f).contains(c) || *c == b'\t');
    let ok = match t {
        b'+' => printable && !(strict && line.contains(&b' ')),
        b'-' => {
            let code = line.iter().take_while(|c| c.is_ascii_uppercase()).count();
            printable && (!strict || (code >= 2 && matches!(line.get(code), None | Some(b' '))))
        }
        _ => header_ok(Role::Server, t, line),
    };
    if ok { Claim::Yes } else { Claim::No }
}

/// Whether a header line (after its type byte) is well-formed, as the parser would find it.
fn header_ok(role: Role, t: u8, line: &[u8]) -> bool {
    match t {
        b'+' | b'-' => true,
        b':' => integer(line).is_some(),
        b'(' => big_number(line),
        b',' => double(line),
        b'#' => line == b"t" || line == b"f",
        b'_' => line.is_empty(),
        b'$' | b'!' | b'=' | b'*' | b'%' | b'~' | b'>' | b'|' => match length(line) {
            Some(Len::N(n)) => {
                if matches!(t, b'$' | b'!' | b'=') {
                    n <= MAX_BULK && (t != b'=' || n >= 4)
                } else {
                    n <= MAX_AGGREGATE
                }
            }
            Some(Len::Null) => matches!(t, b'$' | b'*') && role == Role::Server,
            Some(Len::Streamed) => matches!(t, b'$' | b'*' | b'%' | b'~') && role == Role::Server,
            None => false,
        },
        _ => false,
    }
}

fn integer(line: &[u8]) -> Option<i64> {
    std::str::from_utf8(line).ok()?.parse().ok()
}

fn big_number(line: &[u8]) -> bool {
    let digits = line
        .strip_prefix(b"-")
        .or(line.strip_prefix(b"+"))
        .unwrap_or(line);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

fn double(line: &[u8]) -> bool {
    std::str::from_utf8(line).is_ok_and(|s| s.parse::<f64>().is_ok())
}

/// A length or count field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Len {
    N(u64),
    /// `-1`: RESP2's null bulk string or null array.
    Null,
    /// `?`: a RESP3 streamed string or aggregate.
    Streamed,
}

fn length(line: &[u8]) -> Option<Len> {
    match line {
        b"-1" => Some(Len::Null),
        b"?" => Some(Len::Streamed),
        _ if !line.is_empty() && line.len() <= 19 && line.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(line).ok()?.parse().ok().map(Len::N)
        }
        _ => None,
    }
}

/// An aggregate being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agg {
    Array,
    Map,
    Set,
    Push,
    Attribute,
    /// The chunks of a streamed string (`$?`).
    Chunks,
}

impl Agg {
    fn of(t: u8) -> Agg {
        match t {
            b'%' => Agg::Map,
            b'~' => Agg::Set,
            b'>' => Agg::Push,
            b'|' => Agg::Attribute,
            _ => Agg::Array,
        }
    }
}

#[derive(Debug)]
struct Level {
    agg: Agg,
    /// Elements still to come; `None` for a streamed aggregate, which ends with `.`.
    left: Option<u64>,
    /// Elements begun so far, for separators when rendering.
    seen: u64,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// At a type byte.
    Type,
    /// Reading the header line of type `t`.
    Line(u8),
    /// An inline command's line.
    Inline,
    /// The bytes of a bulk string (or chunk) of type `t`.
    Payload { t: u8, depth: usize, left: u64 },
    /// The CRLF after a payload; `seen` of its bytes so far.
    PayloadEnd { t: u8, depth: usize, seen: u8 },
}

/// What one call to [`Parser::feed`] did.
#[derive(Debug)]
enum Feed {
    /// Every byte was consumed; a frame may be under way.
    More,
    /// A frame ended after this many bytes.
    Frame(usize),
    /// The bytes from `at` on do not parse; `line_start` if `at` begins a line.
    Error {
        at: usize,
        reason: &'static str,
        line_start: bool,
    },
}

/// The streaming RESP parser of one direction: an explicit stack instead of
/// recursion, and a [`Draft`] that keeps what the entry shows.
struct Parser {
    role: Role,
    max_line: usize,
    state: State,
    line: Vec<u8>,
    stack: Vec<Level>,
    /// Bytes of the current frame so far; 0 between frames.
    wire: u64,
    done: bool,
    draft: Draft,
    max_body: usize,
}

impl Parser {
    fn new(role: Role, config: &DissectConfig) -> Self {
        Parser {
            role,
            max_line: config.max_head.max(64),
            state: State::Type,
            line: Vec::new(),
            stack: Vec::new(),
            wire: 0,
            done: false,
            draft: Draft::new(role, config.max_body),
            max_body: config.max_body,
        }
    }

    fn reset(&mut self) {
        self.state = State::Type;
        self.line.clear();
        self.stack.clear();
        self.wire = 0;
        self.done = false;
        self.draft = Draft::new(self.role, self.max_body);
    }

    /// The frame so far (complete or not) and its bytes on the wire; the parser starts afresh.
    fn take(&mut self) -> (Draft, u64) {
        let draft = std::mem::replace(&mut self.draft, Draft::new(self.role, self.max_body));
        let wire = self.wire;
        self.reset();
        (draft, wire)
    }

    /// A frame has begun and its type is known: something to make an entry of.
    fn has_message(&self) -> bool {
        self.wire > 0 && self.draft.kind.is_some()
    }

    /// Lost bytes inside a bulk string: skips them if the string is longer,
    /// marking the frame truncated; false if the loss reaches past it.
    fn skip_payload(&mut self, len: u64) -> bool {
        match self.state {
            State::Payload { t, depth, left } if len <= left => {
                self.state = State::Payload {
                    t,
                    depth,
                    left: left - len,
                };
                self.wire += len;
                self.draft.cut = true;
                true
            }
            _ => false,
        }
    }

    fn feed(&mut self, data: &[u8]) -> Feed {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                State::Type => {
                    let c = data[i];
                    if self.wire == 0 && (c == b'\r' || c == b'\n') {
                        // Blank lines between commands are ignored, as Redis does.
                        i += 1;
                        continue;
                    }
                    if self.role == Role::Client && self.wire == 0 && c != b'*' {
                        self.state = State::Inline;
                        self.line.clear();
                        continue;
                    }
                    if let Err(reason) = self.check_type(c) {
                        return Feed::Error {
                            at: i,
                            reason,
                            line_start: true,
                        };
                    }
                    self.state = State::Line(c);
                    self.line.clear();
                    self.wire += 1;
                    i += 1;
                }
                State::Line(_) | State::Inline => {
                    let rest = &data[i..];
                    let (take, end) = match rest.iter().position(|&b| b == b'\n') {
                        Some(n) => (n + 1, true),
                        None => (rest.len(), false),
                    };
                    if self.line.len() + take > self.max_line + 2 {
                        return Feed::Error {
                            at: i,
                            reason: "line_too_long",
                            line_start: false,
                        };
                    }
                    self.line.extend_from_slice(&rest[..take]);
                    self.wire += take as u64;
                    i += take;
                    if end {
                        self.line.pop();
                        if self.line.last() == Some(&b'\r') {
                            self.line.pop();
                        }
                        let line = std::mem::take(&mut self.line);
                        let r = match self.state {
                            State::Line(t) => {
                                self.state = State::Type;
                                self.header(t, &line)
                            }
                            _ => {
                                self.state = State::Type;
                                self.inline(&line)
                            }
                        };
                        self.line = line;
                        self.line.clear();
                        if let Err(reason) = r {
                            return Feed::Error {
                                at: i,
                                reason,
                                line_start: true,
                            };
                        }
                    }
                }
                State::Payload { t, depth, left } => {
                    let n = left.min((data.len() - i) as u64) as usize;
                    self.draft.payload(depth, &data[i..i + n]);
                    self.wire += n as u64;
                    i += n;
                    self.state = if left == n as u64 {
                        State::PayloadEnd { t, depth, seen: 0 }
                    } else {
                        State::Payload {
                            t,
                            depth,
                            left: left - n as u64,
                        }
                    };
                }
                State::PayloadEnd { t, depth, seen } => {
                    if data[i] != b"\r\n"[usize::from(seen)] {
                        return Feed::Error {
                            at: i,
                            reason: "bulk_not_terminated",
                            line_start: false,
                        };
                    }
                    i += 1;
                    self.wire += 1;
                    if seen == 0 {
                        self.state = State::PayloadEnd { t, depth, seen: 1 };
                    } else {
                        self.state = State::Type;
                        if t != b';' {
                            self.draft.payload_end(depth, t);
                            self.element_done();
                        }
                    }
                }
            }
            if self.done {
                self.done = false;
                return Feed::Frame(i);
            }
        }
        Feed::More
    }

    /// Whether a type byte may come here.
    fn check_type(&self, c: u8) -> Result<(), &'static str> {
        let top = self.stack.last();
        match self.role {
            // Redis reads commands as one array of bulk strings and nothing else.
            Role::Client if self.stack.is_empty() && c == b'*' => Ok(()),
            Role::Client if c == b'$' && self.stack.len() == 1 => Ok(()),
            Role::Client => Err("expected_bulk_string"),
            Role::Server => match top {
                Some(l) if l.agg == Agg::Chunks => {
                    if c == b';' {
                        Ok(())
                    } else {
                        Err("expected_string_chunk")
                    }
                }
                Some(l) if c == b'.' && l.left.is_none() => Ok(()),
                _ if b"+-:$*_,#(!=%~>|".contains(&c) => Ok(()),
                _ => Err("unknown_type"),
            },
        }
    }

    /// Starts an element at the current depth: counts it in its parent.
    fn element(&mut self, t: u8) {
        let depth = self.stack.len();
        let parent = self.stack.last_mut().map(|l| {
            let i = l.seen;
            l.seen += 1;
            (l.agg, i)
        });
        self.draft.element(t, depth, parent);
    }

    /// An element ended: closes the aggregates it completes; the frame ends with the outermost.
    fn element_done(&mut self) {
        loop {
            let Some(top) = self.stack.last_mut() else {
                self.done = true;
                return;
            };
            let Some(left) = &mut top.left else {
                return;
            };
            *left -= 1;
            if *left > 0 {
                return;
            }
            let agg = top.agg;
            self.stack.pop();
            if agg == Agg::Attribute {
                // An attribute annotates the element after it and is not one itself.
                self.draft.attr -= 1;
                return;
            }
            self.draft.close(self.stack.len(), agg);
        }
    }

    /// Whether one more level of nesting is allowed.
    fn room(&self) -> Result<(), &'static str> {
        if self.stack.len() >= MAX_DEPTH {
            Err("nesting_too_deep")
        } else {
            Ok(())
        }
    }

    fn header(&mut self, t: u8, line: &[u8]) -> Result<(), &'static str> {
        let depth = self.stack.len();
        match t {
            b'+' | b'-' | b':' | b'(' | b',' | b'#' | b'_' => {
                if !header_ok(self.role, t, line) {
                    return Err(match t {
                        b':' => "invalid_integer",
                        b'(' => "invalid_big_number",
                        b',' => "invalid_double",
                        b'#' => "invalid_boolean",
                        _ => "invalid_null",
                    });
                }
                self.element(t);
                self.draft.scalar(depth, t, line);
                self.element_done();
            }
            b'$' | b'!' | b'=' => match length(line) {
                Some(Len::Null) if t == b'$' && self.role == Role::Server => {
                    self.element(t);
                    self.draft.null(depth);
                    self.element_done();
                }
                Some(Len::Streamed) if t == b'$' && self.role == Role::Server => {
                    self.room()?;
                    self.element(t);
                    self.draft.payload_begin(depth, t);
                    self.stack.push(Level {
                        agg: Agg::Chunks,
                        left: None,
                        seen: 0,
                    });
                }
                Some(Len::N(n)) if n > MAX_BULK => return Err("bulk_too_long"),
                Some(Len::N(n)) if t == b'=' && n < 4 => return Err("invalid_verbatim"),
                Some(Len::N(n)) => {
                    self.element(t);
                    self.draft.payload_begin(depth, t);
                    self.state = if n == 0 {
                        State::PayloadEnd { t, depth, seen: 0 }
                    } else {
                        State::Payload { t, depth, left: n }
                    };
                }
                _ => return Err("invalid_length"),
            },
            b';' => match length(line) {
                Some(Len::N(0)) => {
                    self.stack.pop();
                    self.draft.payload_end(depth - 1, b'$');
                    self.element_done();
                }
                Some(Len::N(n)) if n <= MAX_BULK => {
                    self.state = State::Payload {
                        t,
                        depth: depth - 1,
                        left: n,
                    };
                }
                Some(Len::N(_)) => return Err("bulk_too_long"),
                _ => return Err("invalid_length"),
            },
            b'.' => {
                if !line.is_empty() {
                    return Err("invalid_end");
                }
                let agg = self.stack.pop().map_or(Agg::Array, |l| l.agg);
                self.draft.close(depth - 1, agg);
                self.element_done();
            }
            _ => {
                let agg = Agg::of(t);
                let per = if matches!(agg, Agg::Map | Agg::Attribute) {
                    2
                } else {
                    1
                };
                let left = match length(line) {
                    Some(Len::N(n)) if n > MAX_AGGREGATE => return Err("aggregate_too_long"),
                    Some(Len::N(n)) => Some(n * per),
                    Some(Len::Null) if t == b'*' => None,
                    Some(Len::Streamed)
                        if self.role == Role::Server && !matches!(agg, Agg::Attribute) =>
                    {
                        None
                    }
                    _ => return Err("invalid_length"),
                };
                let null = left.is_none() && length(line) == Some(Len::Null);
                if self.role == Role::Client && (null || left == Some(0)) {
                    // Redis skips an empty command array.
                    self.reset();
                    return Ok(());
                }
                if null {
                    self.element(t);
                    self.draft.null(depth);
                    self.element_done();
                    return Ok(());
                }
                self.room()?;
                if agg == Agg::Attribute {
                    // An empty attribute annotates nothing; a full one hides what it holds.
                    if left != Some(0) {
                        self.draft.attr += 1;
                        self.stack.push(Level { agg, left, seen: 0 });
                    }
                    return Ok(());
                }
                self.element(t);
                self.draft.open(depth, agg, left.map(|n| n / per));
                if left == Some(0) {
                    self.draft.close(depth, agg);
                    self.element_done();
                } else {
                    self.stack.push(Level { agg, left, seen: 0 });
                }
            }
        }
        Ok(())
    }

    /// An inline command: arguments split as redis-cli and Redis split them.
    fn inline(&mut self, line: &[u8]) -> Result<(), &'static str> {
        let args = split_args(line).ok_or("unbalanced_quotes")?;
        if args.is_empty() {
            self.reset();
            return Ok(());
        }
        self.draft.kind = Some(b'i');
        for a in &args {
            self.draft.element(b'$', 1, None);
            self.draft.collect(a);
        }
        self.done = true;
        Ok(())
    }
}

/// Splits an inline command line into arguments: whitespace-separated, with
/// "double quotes" (escapes \n \r \t \b \a \\ \" \xHH) and 'single quotes' (\').
fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    let space = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0);
    loop {
        while i < line.len() && space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let quote = line[i];
        if quote == b'"' || quote == b'\'' {
            i += 1;
            loop {
                let c = *line.get(i)?;
                if c == quote {
                    i += 1;
                    if line.get(i).is_some_and(|&c| !space(c)) {
                        return None;
                    }
                    break;
                }
                if c == b'\\' && quote == b'"' {
                    let next = *line.get(i + 1)?;
                    let hex = |c: u8| (c as char).to_digit(16);
                    if next == b'x'
                        && let (Some(h), Some(l)) = (
                            line.get(i + 2).and_then(|&c| hex(c)),
                            line.get(i + 3).and_then(|&c| hex(c)),
                        )
                    {
                        cur.push((h * 16 + l) as u8);
                        i += 4;
                        continue;
                    }
                    cur.push(match next {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        c => c,
                    });
                    i += 2;
                } else if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    cur.push(b'\'');
                    i += 2;
                } else {
                    cur.push(c);
                    i += 1;
                }
            }
        } else {
            while i < line.len() && !space(line[i]) {
                cur.push(line[i]);
                i += 1;
            }
        }
        args.push(cur);
    }
}

/// What the entry keeps of a frame, gathered while it is parsed and capped as it goes.
#[derive(Debug)]
struct Draft {
    role: Role,
    max: usize,
    /// The frame's type byte (after any attributes); `i` for an inline command.
    kind: Option<u8>,
    null: bool,
    /// Elements an aggregate frame announced (pairs for a map); `None` when streamed.
    declared: Option<u64>,
    /// Server: the reply rendered as text.
    value: Vec<u8>,
    error: Vec<u8>,
    /// Bytes or elements were not kept (cap, or bytes the capture lost).
    cut: bool,
    /// Elements at depth 1 with their type byte: the command and its
    /// arguments, or the first elements of a reply (for pub/sub).
    items: Vec<(u8, Vec<u8>)>,
    items_seen: u64,
    items_bytes: usize,
    /// Bytes of the current element go into the last item.
    collecting: bool,
    /// Inside an attribute (nothing is kept).
    attr: u32,
    /// Bytes still to skip at the start of a verbatim string: its `txt:` format.
    skip: u8,
}

impl Draft {
    fn new(role: Role, max: usize) -> Self {
        Draft {
            role,
            max,
            kind: None,
            null: false,
            declared: None,
            value: Vec::new(),
            error: Vec::new(),
            cut: false,
            items: Vec::new(),
            items_seen: 0,
            items_bytes: 0,
            collecting: false,
            attr: 0,
            skip: 0,
        }
    }

    fn element(&mut self, t: u8, depth: usize, parent: Option<(Agg, u64)>) {
        if self.attr > 0 {
            return;
        }
        self.collecting = false;
        if depth == 0 {
            self.kind = Some(t);
            return;
        }
        if let Some((agg, i)) = parent
            && i > 0
        {
            let sep: &[u8] = if agg == Agg::Map && i % 2 == 1 {
                b": "
            } else {
                b", "
            };
            self.render(sep);
        }
        if depth == 1 {
            self.items_seen += 1;
            let most = match self.role {
                Role::Client => MAX_ARGS + 1,
                Role::Server => PUBSUB_ITEMS,
            };
            let full =
                self.role == Role::Client && self.items.len() > 1 && self.items_bytes >= self.max;
            if self.items.len() < most && !full {
                self.items.push((t, Vec::new()));
                self.collecting = true;
            } else if self.role == Role::Client {
                self.cut = true;
            }
        }
    }

    /// Bytes of the current depth-1 element.
    fn collect(&mut self, b: &[u8]) {
        if !self.collecting || self.attr > 0 {
            return;
        }
        // The cap is for arguments; a command's name has a small one of its own.
        let name = self.role == Role::Client && self.items.len() == 1;
        let Some((_, item)) = self.items.last_mut() else {
            return;
        };
        let room = match self.role {
            Role::Client if name => MAX_COMMAND.saturating_sub(item.len()),
            Role::Client => self
                .max
                .saturating_sub(item.len())
                .min(self.max.saturating_sub(self.items_bytes)),
            Role::Server => PUBSUB_ITEM.saturating_sub(item.len()),
        };
        if b.len() > room && self.role == Role::Client && !name {
            self.cut = true;
        }
        let n = b.len().min(room);
        item.extend_from_slice(&b[..n]);
        if !name {
            self.items_bytes += n;
        }
    }

    fn render(&mut self, b: &[u8]) {
        if self.role == Role::Client || self.attr > 0 {
            return;
        }
        let room = self.max.saturating_sub(self.value.len());
        if b.len() > room {
            self.cut = true;
        }
        self.value.extend_from_slice(&b[..b.len().min(room)]);
    }

    /// Bytes inside a quoted string, escaped as redis-cli shows them.
    fn render_escaped(&mut self, b: &[u8]) {
        if self.role == Role::Client || self.attr > 0 {
            return;
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &c in b {
            let hex;
            let esc: &[u8] = match c {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x20..=0x7e => std::slice::from_ref(&c),
                _ => {
                    hex = [
                        b'\\',
                        b'x',
                        HEX[usize::from(c >> 4)],
                        HEX[usize::from(c & 15)],
                    ];
                    &hex
                }
            };
            if self.value.len() + esc.len() > self.max {
                self.cut = true;
                return;
            }
            self.value.extend_from_slice(esc);
        }
    }

    fn error_text(&mut self, b: &[u8]) {
        let room = self.max.saturating_sub(self.error.len());
        if b.len() > room {
            self.cut = true;
        }
        self.error.extend_from_slice(&b[..b.len().min(room)]);
    }

    fn scalar(&mut self, depth: usize, t: u8, text: &[u8]) {
        if self.attr > 0 {
            return;
        }
        let boolean: &[u8] = if text == b"t" { b"true" } else { b"false" };
        if depth == 0 {
            match t {
                b'-' => self.error_text(text),
                b'#' => self.render(boolean),
                b'_' => self.null = true,
                _ => self.render(text),
            }
            return;
        }
        if depth == 1 {
            self.collect(text);
        }
        match t {
            b'+' => {
                self.render(b"\"");
                self.render_escaped(text);
                self.render(b"\"");
            }
            b'-' => {
                self.render(b"error(\"");
                self.render_escaped(text);
                self.render(b"\")");
            }
            b'#' => self.render(boolean),
            b'_' => self.render(b"null"),
            _ => self.render(text),
        }
    }

    fn null(&mut self, depth: usize) {
        if self.attr > 0 {
            return;
        }
        if depth == 0 {
            self.null = true;
        } else {
            self.render(b"null");
        }
    }

    fn payload_begin(&mut self, depth: usize, t: u8) {
        if self.attr > 0 {
            return;
        }
        self.skip = if t == b'=' { 4 } else { 0 };
        if depth > 0 {
            self.render(if t == b'!' { b"error(\"" } else { b"\"" });
        }
    }

    fn payload(&mut self, depth: usize, data: &[u8]) {
        if self.attr > 0 {
            return;
        }
        let skip = usize::from(self.skip).min(data.len());
        self.skip -= skip as u8;
        let data = &data[skip..];
        if depth == 0 {
            if self.kind == Some(b'!') {
                self.error_text(data);
            } else {
                self.render(data);
            }
            return;
        }
        if depth == 1 {
            self.collect(data);
        }
        self.render_escaped(data);
    }

    fn payload_end(&mut self, depth: usize, t: u8) {
        if self.attr > 0 || depth == 0 {
            return;
        }
        self.render(if t == b'!' { b"\")" } else { b"\"" });
    }

    fn open(&mut self, depth: usize, agg: Agg, declared: Option<u64>) {
        if self.attr > 0 {
            return;
        }
        if depth == 0 {
            self.declared = declared;
        }
        self.render(if matches!(agg, Agg::Map | Agg::Set) {
            b"{"
        } else {
            b"["
        });
    }

    fn close(&mut self, _depth: usize, agg: Agg) {
        if self.attr > 0 {
            return;
        }
        self.render(if matches!(agg, Agg::Map | Agg::Set) {
            b"}"
        } else {
            b"]"
        });
    }

    fn into_request(self) -> (RedisRequest, bool) {
        let mut items = self.items.into_iter().map(|(_, b)| b);
        let name = items.next().unwrap_or_default();
        let mut command = upper(&name[..name.len().min(MAX_COMMAND)]);
        let mut args: Vec<Vec<u8>> = items.collect();
        let mut arg_count = self.items_seen.saturating_sub(1);
        if CONTAINERS.contains(&command.as_str())
            && let Some(sub) = args.first()
            && !sub.is_empty()
            && sub.len() <= 32
            && sub.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        {
            command = format!("{command} {}", upper(sub));
            args.remove(0);
            arg_count -= 1;
        }
        let key = key_of(&command, &args)
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        let req = RedisRequest {
            command,
            key,
            args,
            arg_count,
            args_truncated: self.cut,
            inline: self.kind == Some(b'i'),
        };
        (req, self.cut)
    }

    fn into_reply(self) -> Reply {
        let t = self.kind;
        let name = match t {
            Some(b'+') => "simple",
            Some(b'-') => "error",
            Some(b':') => "integer",
            Some(b'$') | Some(b'*') if self.null => "null",
            Some(b'$') => "bulk",
            Some(b'*') => "array",
            Some(b'_') => "null",
            Some(b',') => "double",
            Some(b'#') => "boolean",
            Some(b'(') => "big_number",
            Some(b'!') => "bulk_error",
            Some(b'=') => "verbatim",
            Some(b'%') => "map",
            Some(b'~') => "set",
            Some(b'>') => "push",
            _ => "",
        };
        let elements = match t {
            Some(b'%') => self.declared.unwrap_or(self.items_seen / 2),
            Some(b'*' | b'~' | b'>') => self.declared.unwrap_or(self.items_seen),
            _ => 0,
        };
        let is_error = matches!(t, Some(b'-' | b'!'));
        Reply {
            resp: RedisResponse {
                r#type: name.to_string(),
                value: self.value,
                value_truncated: self.cut,
                error: String::from_utf8_lossy(&self.error).into_owned(),
                is_error,
                elements,
            },
            kind: t,
            items: self.items,
        }
    }
}

fn upper(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_uppercase()
}

/// The argument holding a command's first key, after its name's words.
fn key_of<'a>(command: &str, args: &'a [Vec<u8>]) -> Option<&'a [u8]> {
    let numkeys =
        |i: usize| -> Option<u64> { std::str::from_utf8(args.get(i)?).ok()?.parse().ok() };
    let at = match command {
        c if KEYLESS.contains(&c) => return None,
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => {
            (numkeys(1)? > 0).then_some(2)?
        }
        "ZUNION" | "ZINTER" | "ZDIFF" | "SINTERCARD" | "ZINTERCARD" | "LMPOP" | "ZMPOP" => {
            (numkeys(0)? > 0).then_some(1)?
        }
        "BLMPOP" | "BZMPOP" => (numkeys(1)? > 0).then_some(2)?,
        "XREAD" | "XREADGROUP" => {
            args.iter()
                .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?
                + 1
        }
        "MIGRATE" => 2,
        "OBJECT ENCODING"
        | "OBJECT FREQ"
        | "OBJECT IDLETIME"
        | "OBJECT REFCOUNT"
        | "MEMORY USAGE"
        | "XINFO STREAM"
        | "XINFO GROUPS"
        | "XINFO CONSUMERS"
        | "XGROUP CREATE"
        | "XGROUP SETID"
        | "XGROUP DESTROY"
        | "XGROUP CREATECONSUMER"
        | "XGROUP DELCONSUMER" => 0,
        c if c.contains(' ') => return None,
        _ => 0,
    };
    args.get(at).map(Vec::as_slice).filter(|k| !k.is_empty())
}

/// A parsed reply with what pub/sub recognition needs.
struct Reply {
    resp: RedisResponse,
    kind: Option<u8>,
    items: Vec<(u8, Vec<u8>)>,
}

impl Reply {
    /// The first element in lower case, when it is a string.
    fn word(&self) -> Option<String> {
        let (t, b) = self.items.first()?;
        matches!(t, b'$' | b'+').then(|| String::from_utf8_lossy(b).to_ascii_lowercase())
    }

    fn item_text(&self, i: usize) -> String {
        self.items
            .get(i)
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }

    /// The subscription count a (un)subscribe confirmation ends with.
    fn count(&self) -> Option<u64> {
        match self.items.get(2)? {
            (b':', b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }
}

/// The confirmation word a (un)subscribe command is answered with.
fn confirmation_of(command: &str) -> Option<&'static str> {
    Some(match command {
        "SUBSCRIBE" => "subscribe",
        "UNSUBSCRIBE" => "unsubscribe",
        "PSUBSCRIBE" => "psubscribe",
        "PUNSUBSCRIBE" => "punsubscribe",
        "SSUBSCRIBE" => "ssubscribe",
        "SUNSUBSCRIBE" => "sunsubscribe",
        _ => return None,
    })
}

/// Subscriptions of the connection as the server counted them in its confirmations.
#[derive(Debug, Default)]
struct PubSub {
    channels: u64,
    patterns: u64,
    shard: u64,
    /// The confirmations of a (un)subscribe of several channels, until all are in.
    group: Option<Group>,
    /// MONITOR was accepted: the server's lines are pushes.
    monitor: bool,
}

#[derive(Debug)]
struct Group {
    word: String,
    left: u64,
    resp: Message<Response>,
}

impl PubSub {
    fn subscribed(&self) -> bool {
        self.channels
            .saturating_add(self.patterns)
            .saturating_add(self.shard)
            > 0
    }

    /// Follows the counts a confirmation reports (channels and patterns share
    /// one count; shard channels have their own).
    fn track(&mut self, word: &str, count: u64) {
        let total = self.channels.saturating_add(self.patterns);
        let which = match word {
            "subscribe" | "unsubscribe" => &mut self.channels,
            "psubscribe" | "punsubscribe" => &mut self.patterns,
            _ => {
                self.shard = count;
                return;
            }
        };
        if count > total {
            *which += count - total;
        } else {
            *which -= (total - count).min(*which);
        }
    }

    /// How many confirmations answer a (un)subscribe with `args` channels:
    /// one per channel, or per current subscription when it names none.
    fn expected(&self, word: &str, args: u64) -> u64 {
        if args > 0 {
            return args;
        }
        match word {
            "unsubscribe" => self.channels,
            "punsubscribe" => self.patterns,
            "sunsubscribe" => self.shard,
            _ => 1,
        }
        .max(1)
    }
}

/// A resynchronisation under way: where the next message may start.
#[derive(Debug)]
struct Resync {
    /// A line start whose check needs more bytes (at most [`LOOK`]).
    window: Vec<u8>,
    /// The next byte begins a line.
    line_start: bool,
}

/// What a resynchronisation step did.
enum Resynced {
    /// Consumed this many bytes of the input (a message starts after them if resync ended).
    Consumed(usize),
    /// A message starts with these held bytes: parse them, then the input.
    Carry(Vec<u8>),
}

struct Side {
    parser: Parser,
    /// Capture time of the current frame's first byte.
    ts: u64,
    /// Flags for the current (or next) message.
    flags: Vec<String>,
    resync: Option<Resync>,
    /// A frame has parsed since the last error or gap; errors meanwhile are not reported again.
    synced: bool,
}

impl Side {
    fn new(role: Role, config: &DissectConfig, midstream: bool) -> Self {
        Side {
            parser: Parser::new(role, config),
            ts: 0,
            flags: Vec::new(),
            resync: midstream.then(|| Resync {
                window: Vec::new(),
                line_start: true,
            }),
            synced: !midstream,
        }
    }

    fn resync_step(&mut self, input: &[u8]) -> Resynced {
        let role = self.parser.role;
        let Some(r) = &mut self.resync else {
            return Resynced::Consumed(0);
        };
        if !r.window.is_empty() {
            let take = input.len().min(LOOK);
            let mut look = r.window.clone();
            look.extend_from_slice(&input[..take]);
            match plausible(role, &look, false) {
                Claim::Yes => {
                    let carry = std::mem::take(&mut r.window);
                    self.resync = None;
                    return Resynced::Carry(carry);
                }
                Claim::NeedMore if take == input.len() => {
                    r.window.extend_from_slice(input);
                    return Resynced::Consumed(input.len());
                }
                _ => {
                    // Not a start: try the next line start in the window, else in the input.
                    match r.window.iter().position(|&c| c == b'\n') {
                        Some(k) if k + 1 < r.window.len() => {
                            r.window.drain(..=k);
                        }
                        Some(_) => {
                            r.window.clear();
                            r.line_start = true;
                        }
                        None => {
                            r.window.clear();
                            r.line_start = false;
                        }
                    }
                    return Resynced::Consumed(0);
                }
            }
        }
        let mut p = if r.line_start {
            Some(0)
        } else {
            next_line_start(input, 0)
        };
        while let Some(at) = p {
            match plausible(role, &input[at..], false) {
                Claim::Yes => {
                    self.resync = None;
                    return Resynced::Consumed(at);
                }
                Claim::NeedMore => {
                    r.window = input[at..].to_vec();
                    r.line_start = true;
                    return Resynced::Consumed(input.len());
                }
                Claim::No => p = next_line_start(input, at),
            }
        }
        r.line_start = input.last() == Some(&b'\n');
        Resynced::Consumed(input.len())
    }
}

fn add_flag(flags: &mut Vec<String>, flag: &str) {
    if !flags.iter().any(|f| f == flag) {
        flags.push(flag.to_string());
    }
}

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
