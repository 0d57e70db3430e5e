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
mod tests {
    use super::*;
    use crate::GenericFields;
    use crate::testing::{Ev, Out, drive, flow};
    use proto::v1::Entry;

    const C: Direction = Direction::ToServer;
    const S: Direction = Direction::ToClient;

    fn run_with(events: &[Ev], config: &DissectConfig, midstream: bool, bytewise: bool) -> Out {
        let flow = flow(7, 6390, midstream);
        let out = Out::collect(
            "redis",
            drive(new(&flow, config, None), &flow, events, bytewise),
        );
        assert_eq!(out.dropped, 0);
        // Entries are numbered in the order they are made.
        for (i, e) in out.entries.iter().enumerate() {
            assert_eq!(e.id, format!("{:016x}-{i}", 7));
            assert_eq!(e.protocol, Protocol::Redis as i32);
        }
        out
    }

    fn run(events: &[Ev]) -> Out {
        let whole = run_with(events, &DissectConfig::default(), false, false);
        let bytewise = run_with(events, &DissectConfig::default(), false, true);
        // Segmentation never changes what is seen (timestamps aside).
        assert_eq!(summary(&whole), summary(&bytewise), "byte-by-byte differs");
        assert_eq!(whole.errors, bytewise.errors);
        whole
    }

    fn req(e: &Entry) -> &RedisRequest {
        match e.request.as_ref().and_then(|r| r.kind.as_ref()) {
            Some(request::Kind::Redis(r)) => r,
            other => panic!("no redis request: {other:?}"),
        }
    }

    fn resp(e: &Entry) -> &RedisResponse {
        match e.response.as_ref().and_then(|r| r.kind.as_ref()) {
            Some(response::Kind::Redis(r)) => r,
            other => panic!("no redis response: {other:?}"),
        }
    }

    /// (command, key, reply type, reply value, flags) per entry.
    fn summary(o: &Out) -> Vec<(String, String, String, String, Vec<String>)> {
        o.entries
            .iter()
            .map(|e| {
                let (c, k) = e
                    .request
                    .as_ref()
                    .map_or((String::new(), String::new()), |_| {
                        (req(e).command.clone(), req(e).key.clone())
                    });
                let (t, v) = e
                    .response
                    .as_ref()
                    .map_or((String::new(), String::new()), |_| {
                        let r = resp(e);
                        (
                            r.r#type.clone(),
                            String::from_utf8_lossy(&r.value).into_owned(),
                        )
                    });
                (c, k, t, v, e.flags.clone())
            })
            .collect()
    }

    fn cmd(args: &[&[u8]]) -> Vec<u8> {
        let mut b = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            b.extend_from_slice(a);
            b.extend_from_slice(b"\r\n");
        }
        b
    }

    #[test]
    fn every_reply_type() {
        // (reply bytes, type, value, elements, error)
        let table: &[(&[u8], &str, &str, u64, &str)] = &[
            (b"+OK\r\n", "simple", "OK", 0, ""),
            (
                b"-ERR unknown command 'X'\r\n",
                "error",
                "",
                0,
                "ERR unknown command 'X'",
            ),
            (b":-42\r\n", "integer", "-42", 0, ""),
            (b"$5\r\nhello\r\n", "bulk", "hello", 0, ""),
            (b"$0\r\n\r\n", "bulk", "", 0, ""),
            (b"$-1\r\n", "null", "", 0, ""),
            (b"*-1\r\n", "null", "", 0, ""),
            (b"_\r\n", "null", "", 0, ""),
            (b"*0\r\n", "array", "[]", 0, ""),
            (
                b"*3\r\n$1\r\na\r\n:1\r\n*2\r\n+x\r\n$-1\r\n",
                "array",
                "[\"a\", 1, [\"x\", null]]",
                3,
                "",
            ),
            (b"#t\r\n", "boolean", "true", 0, ""),
            (b"#f\r\n", "boolean", "false", 0, ""),
            (b",3.14\r\n", "double", "3.14", 0, ""),
            (b",-inf\r\n", "double", "-inf", 0, ""),
            (
                b"(3492890328409238509324850943850943825024385\r\n",
                "big_number",
                "3492890328409238509324850943850943825024385",
                0,
                "",
            ),
            (
                b"!21\r\nSYNTAX invalid syntax\r\n",
                "bulk_error",
                "",
                0,
                "SYNTAX invalid syntax",
            ),
            (
                b"=15\r\ntxt:Some string\r\n",
                "verbatim",
                "Some string",
                0,
                "",
            ),
            (
                b"%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n#f\r\n",
                "map",
                "{\"first\": 1, \"second\": false}",
                2,
                "",
            ),
            (b"~2\r\n+a\r\n+a\r\n", "set", "{\"a\", \"a\"}", 2, ""),
            // An attribute annotates the reply after it and is not shown.
            (
                b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*1\r\n:2\r\n",
                "array",
                "[2]",
                1,
                "",
            ),
            (
                b"*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n",
                "array",
                "[1, 2]",
                2,
                "",
            ),
            // RESP3 streamed string and aggregates.
            (
                b"$?\r\n;4\r\nHell\r\n;2\r\no!\r\n;0\r\n",
                "bulk",
                "Hello!",
                0,
                "",
            ),
            (b"*?\r\n:1\r\n:2\r\n.\r\n", "array", "[1, 2]", 2, ""),
            (b"%?\r\n+a\r\n:1\r\n.\r\n", "map", "{\"a\": 1}", 1, ""),
            // Binary and quoting inside aggregates, as redis-cli shows them.
            (
                b"*2\r\n$3\r\na\"\xff\r\n-ERR x\r\n",
                "array",
                "[\"a\\\"\\xff\", error(\"ERR x\")]",
                2,
                "",
            ),
        ];
        for (bytes, t, value, elements, error) in table {
            let out = run(&[Ev::Data(C, &cmd(&[b"X"])), Ev::Data(S, bytes)]);
            assert!(out.errors.is_empty(), "{bytes:?}: {:?}", out.errors);
            assert_eq!(out.entries.len(), 1, "{bytes:?}");
            let e = &out.entries[0];
            let r = resp(e);
            assert_eq!(r.r#type, *t, "{bytes:?}");
            assert_eq!(String::from_utf8_lossy(&r.value), *value, "{bytes:?}");
            assert_eq!(r.elements, *elements, "{bytes:?}");
            assert_eq!(r.error, *error, "{bytes:?}");
            assert_eq!(r.is_error, !error.is_empty(), "{bytes:?}");
            assert_eq!(e.response_size, bytes.len() as u64, "{bytes:?}");
            assert!(e.flags.is_empty(), "{bytes:?}: {:?}", e.flags);
        }
    }

    #[test]
    fn binary_bulk_is_kept_exactly() {
        let out = run(&[
            Ev::Data(C, &cmd(&[b"GET", b"k\x00\xff"])),
            Ev::Data(S, b"$4\r\n\x00\r\n\xff\r\n"),
        ]);
        assert_eq!(req(&out.entries[0]).args, vec![b"k\x00\xff".to_vec()]);
        assert_eq!(resp(&out.entries[0]).value, b"\x00\r\n\xff");
    }

    #[test]
    fn pipelined_commands_pair_in_order() {
        let mut reqs = cmd(&[b"SET", b"k", b"v"]);
        reqs.extend(cmd(&[b"get", b"k"]));
        reqs.extend(cmd(&[b"INCR", b"k"]));
        reqs.extend(cmd(&[b"GET", b"missing"]));
        let out = run(&[
            Ev::Data(C, &reqs),
            Ev::Data(
                S,
                b"+OK\r\n$1\r\nv\r\n-ERR value is not an integer or out of range\r\n$-1\r\n",
            ),
        ]);
        let s = summary(&out);
        assert_eq!(
            s.iter()
                .map(|(c, k, t, v, _)| (c.as_str(), k.as_str(), t.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
            [
                ("SET", "k", "simple", "OK"),
                ("GET", "k", "bulk", "v"),
                ("INCR", "k", "error", ""),
                ("GET", "missing", "null", ""),
            ]
        );
        let incr = &out.entries[2];
        assert_eq!(
            resp(incr).error,
            "ERR value is not an integer or out of range"
        );
        assert_eq!(incr.status(), Some(1));
        assert_eq!(out.entries[0].status(), Some(0));
        assert_eq!(out.entries[0].method(), Some("SET"));
        assert_eq!(out.entries[0].path(), Some("k"));
        assert_eq!(
            req(&out.entries[0]).args,
            vec![b"k".to_vec(), b"v".to_vec()]
        );
        assert_eq!(req(&out.entries[0]).arg_count, 2);
        assert_eq!(out.entries[0].request_size, 27);
        assert!(out.entries.iter().all(|e| e.elapsed_ns == Some(1000)));
    }

    #[test]
    fn commands_and_keys() {
        // (arguments, command, key, args after the command's name)
        let table: &[(&[&[u8]], &str, &str, usize)] = &[
            (&[b"ping"], "PING", "", 0),
            (&[b"ECHO", b"hi"], "ECHO", "", 1),
            (&[b"client", b"setname", b"me"], "CLIENT SETNAME", "", 1),
            (&[b"OBJECT", b"ENCODING", b"k"], "OBJECT ENCODING", "k", 1),
            (&[b"EVAL", b"return 1", b"1", b"k1", b"a"], "EVAL", "k1", 4),
            (&[b"EVAL", b"return 1", b"0"], "EVAL", "", 2),
            (&[b"ZUNION", b"2", b"z1", b"z2"], "ZUNION", "z1", 3),
            (&[b"BLMPOP", b"0", b"1", b"l", b"LEFT"], "BLMPOP", "l", 4),
            (
                &[b"XREAD", b"COUNT", b"2", b"STREAMS", b"s", b"0"],
                "XREAD",
                "s",
                5,
            ),
            (&[b"SUBSCRIBE", b"ch"], "SUBSCRIBE", "ch", 1),
            (&[b"HSET", b"h", b"f", b"v"], "HSET", "h", 3),
            (&[b"CONFIG", b"GET", b"save"], "CONFIG GET", "", 1),
        ];
        for (args, command, key, n) in table {
            let out = run(&[Ev::Data(C, &cmd(args)), Ev::Data(S, b"+OK\r\n")]);
            let r = req(&out.entries[0]);
            assert_eq!(r.command, *command, "{args:?}");
            assert_eq!(r.key, *key, "{args:?}");
            assert_eq!(r.args.len(), *n, "{args:?}");
            assert_eq!(r.arg_count, *n as u64, "{args:?}");
        }
    }

    #[test]
    fn inline_commands() {
        let out = run(&[
            Ev::Data(C, b"PING\r\nset k \"a b\\x41\\n\"\r\n\r\nGET 'it\\'s'\n"),
            Ev::Data(S, b"+PONG\r\n+OK\r\n$-1\r\n"),
        ]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let got: Vec<_> = out.entries.iter().map(req).collect();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|r| r.inline));
        assert_eq!(got[0].command, "PING");
        assert_eq!(got[1].command, "SET");
        assert_eq!(got[1].args, vec![b"k".to_vec(), b"a bA\n".to_vec()]);
        assert_eq!(got[2].key, "it's");
        assert_eq!(resp(&out.entries[0]).value, b"PONG");
    }

    #[test]
    fn resp2_pubsub_pushes_are_entries_of_their_own() {
        let mut sub = cmd(&[b"SUBSCRIBE", b"a", b"b"]);
        let ping = cmd(&[b"PING"]);
        sub.extend_from_slice(&ping);
        let out = run(&[
            Ev::Data(C, &cmd(&[b"SUBSCRIBE", b"a", b"b"])),
            Ev::Data(
                S,
                b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nearly\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
            ),
            Ev::Data(S, b"*3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$5\r\nhello\r\n"),
            Ev::Data(C, &cmd(&[b"PSUBSCRIBE", b"n*"])),
            Ev::Data(
                S,
                b"*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:3\r\n*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$1\r\nx\r\n",
            ),
            Ev::Data(C, &ping),
            Ev::Data(S, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
            Ev::Data(C, &cmd(&[b"UNSUBSCRIBE"])),
            Ev::Data(
                S,
                b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n",
            ),
        ]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let s: Vec<_> = summary(&out)
            .into_iter()
            .map(|(c, k, t, _, f)| (c, k, t, f))
            .collect();
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let row = |c: &str, k: &str, t: &str, fl: &[&str]| {
            (c.to_string(), k.to_string(), t.to_string(), f(fl))
        };
        assert_eq!(
            s,
            [
                row("PUSH", "a", "array", &[]),
                row("SUBSCRIBE", "a", "array", &[]),
                row("PUSH", "b", "array", &[]),
                row("PSUBSCRIBE", "n*", "array", &[]),
                row("PUSH", "news", "array", &[]),
                row("PING", "", "array", &[]),
                row("UNSUBSCRIBE", "", "array", &[]),
            ]
        );
        // Both confirmations are in the SUBSCRIBE's entry; the push has no request bytes and no elapsed time.
        let subscribe = &out.entries[1];
        assert_eq!(
            String::from_utf8_lossy(&resp(subscribe).value),
            "[\"subscribe\", \"a\", 1], [\"subscribe\", \"b\", 2]"
        );
        let push = &out.entries[0];
        assert_eq!(push.request_size, 0);
        assert_eq!(push.elapsed_ns, None);
        assert_eq!(push.method(), Some("PUSH"));
        assert_eq!(
            String::from_utf8_lossy(&resp(&out.entries[2]).value),
            "[\"message\", \"b\", \"hello\"]"
        );
        assert_eq!(
            String::from_utf8_lossy(&resp(&out.entries[6]).value),
            "[\"unsubscribe\", \"a\", 2], [\"unsubscribe\", \"b\", 1]"
        );
    }

    #[test]
    fn resp3_pushes_do_not_disturb_pairing() {
        let mut pipeline = cmd(&[b"GET", b"a"]);
        pipeline.extend(cmd(&[b"GET", b"b"]));
        let out = run(&[
            Ev::Data(C, &cmd(&[b"HELLO", b"3"])),
            Ev::Data(S, b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
            Ev::Data(C, &cmd(&[b"SUBSCRIBE", b"ch"])),
            Ev::Data(S, b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"),
            Ev::Data(C, &pipeline),
            Ev::Data(
                S,
                b"$1\r\n1\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n$1\r\n2\r\n",
            ),
        ]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let s: Vec<_> = summary(&out)
            .into_iter()
            .map(|(c, k, t, v, _)| format!("{c} {k} {t} {v}"))
            .collect();
        assert_eq!(
            s,
            [
                "HELLO  map {\"server\": \"redis\"}",
                "SUBSCRIBE ch push [\"subscribe\", \"ch\", 1]",
                "GET a bulk 1",
                "PUSH  push [\"invalidate\", [\"a\"]]",
                "PUSH ch push [\"message\", \"ch\", \"hi\"]",
                "GET b bulk 2",
            ]
        );
    }

    #[test]
    fn monitor_lines_are_pushes() {
        let out = run(&[
            Ev::Data(C, &cmd(&[b"MONITOR"])),
            Ev::Data(S, b"+OK\r\n+1700000000.1 [0 127.0.0.1:5] \"GET\" \"k\"\r\n"),
        ]);
        let s: Vec<_> = summary(&out).into_iter().map(|(c, ..)| c).collect();
        assert_eq!(s, ["MONITOR", "PUSH"]);
    }

    #[test]
    fn nesting_bomb_is_rejected_with_bounded_memory() {
        for dir in [C, S] {
            let mut bomb = Vec::with_capacity(4_000_010);
            for _ in 0..1_000_000 {
                bomb.extend_from_slice(b"*1\r\n");
            }
            bomb.extend_from_slice(b":1\r\n");
            let events: Vec<Ev> = match dir {
                Direction::ToServer => vec![Ev::Data(C, &bomb)],
                Direction::ToClient => {
                    vec![Ev::Data(C, b"*1\r\n$4\r\nPING\r\n"), Ev::Data(S, &bomb)]
                }
            };
            let out = run_with(&events, &DissectConfig::default(), false, false);
            let reason = match dir {
                Direction::ToServer => "expected_bulk_string",
                Direction::ToClient => "nesting_too_deep",
            };
            assert_eq!(out.errors, [reason], "{dir:?}");
            let e = &out.entries[0];
            assert!(
                e.flags.contains(&format!("malformed:{reason}")),
                "{:?}",
                e.flags
            );
            if dir == S {
                assert_eq!(req(e).command, "PING");
                // The rendering stops at the depth limit.
                assert!(resp(e).value.len() <= MAX_DEPTH);
            }
        }
    }

    #[test]
    fn huge_length_prefixes_are_malformed_without_allocating() {
        let out = run(&[
            Ev::Data(C, b"*2\r\n$3\r\nGET\r\n$4294967296\r\nk\r\n"),
            Ev::Data(S, b"$4294967296\r\nxyz\r\n"),
        ]);
        assert_eq!(out.errors, ["bulk_too_long", "bulk_too_long"]);
        let e = &out.entries[0];
        assert_eq!(req(e).command, "GET");
        assert!(e.flags.contains(&"malformed:bulk_too_long".to_string()));
        // A length Redis accepts is streamed: only the cap is kept.
        let config = DissectConfig {
            max_body: 1024,
            ..Default::default()
        };
        let flow = flow(7, 6390, false);
        let mut d = new(&flow, &config, None);
        let mut out = Vec::new();
        d.on_data(&flow, C, 1, &cmd(&[b"GET", b"k"]), &mut out);
        d.on_data(&flow, S, 2, b"$536870912\r\n", &mut out);
        let chunk = vec![b'x'; 1 << 16];
        for _ in 0..(536870912 / chunk.len()) {
            d.on_data(&flow, S, 3, &chunk, &mut out);
        }
        assert!(out.is_empty());
        d.on_data(&flow, S, 4, b"\r\n", &mut out);
        let Some(Emit::Entry(e)) = out.pop() else {
            panic!("no entry")
        };
        let r = resp(&e);
        assert_eq!(r.value.len(), 1024);
        assert!(r.value_truncated);
        assert!(e.flags.contains(&"truncated".to_string()));
        assert_eq!(e.response_size, 536870912 + 14);
    }

    #[test]
    fn bodies_are_capped() {
        let config = DissectConfig {
            max_body: 16,
            ..Default::default()
        };
        let long = [b'a'; 40];
        let mut many: Vec<&[u8]> = vec![b"RPUSH", b"l"];
        many.extend(std::iter::repeat_n(b"x".as_slice(), 5000));
        let mut reqs = cmd(&[b"SET", b"k", &long]);
        reqs.extend(cmd(&many));
        let out = run_with(
            &[
                Ev::Data(C, &reqs),
                Ev::Data(S, b"+OK\r\n*2\r\n$20\r\nabcdefghijklmnopqrst\r\n:1\r\n"),
            ],
            &config,
            false,
            false,
        );
        let set = req(&out.entries[0]);
        assert_eq!(set.args, vec![b"k".to_vec(), vec![b'a'; 15]]);
        assert!(set.args_truncated);
        assert_eq!(set.arg_count, 2);
        assert!(out.entries[0].flags.contains(&"truncated".to_string()));
        let rpush = req(&out.entries[1]);
        assert_eq!(rpush.arg_count, 5001);
        assert!(rpush.args.len() <= 17 && rpush.args_truncated);
        let r = resp(&out.entries[1]);
        assert_eq!(r.value, b"[\"abcdefghijklmn");
        assert!(r.value_truncated);
        assert_eq!(r.elements, 2);
    }

    #[test]
    fn truncated_stream_ends_incomplete() {
        let out = run(&[
            Ev::Data(C, &cmd(&[b"GET", b"k"])),
            Ev::Data(S, b"$10\r\nhello"),
        ]);
        assert!(out.errors.is_empty());
        let e = &out.entries[0];
        assert_eq!(resp(e).value, b"hello");
        assert!(e.flags.contains(&"incomplete".to_string()), "{:?}", e.flags);
        assert!(e.flags.contains(&"truncated".to_string()));
        // A command cut short: it ends without its reply.
        let out = run(&[Ev::Data(C, b"*2\r\n$3\r\nGET\r\n$5\r\nab")]);
        assert_eq!(req(&out.entries[0]).command, "GET");
        assert!(out.entries[0].flags.contains(&"no_response".to_string()));
        assert!(out.entries[0].flags.contains(&"incomplete".to_string()));
    }

    #[test]
    fn garbage_gets_one_parse_error_and_parsing_resumes() {
        let mut client = cmd(&[b"SET", b"a", b"1"]);
        client.extend_from_slice(
            b"*2\r\n$3\r\nGET\r\nXXXX\r\n*7\r\n*9\r\nnot redis at all\r\n$$$\r\n",
        );
        client.extend(cmd(&[b"GET", b"b"]));
        let out = run(&[
            Ev::Data(C, &client),
            Ev::Data(S, b"+OK\r\n-ERR Protocol error\r\n"),
        ]);
        assert_eq!(out.errors, ["expected_bulk_string"]);
        let s: Vec<_> = summary(&out)
            .into_iter()
            .map(|(c, k, t, _, f)| (c, k, t, f))
            .collect();
        assert_eq!(s[0].0, "SET");
        assert_eq!(s[1].0, "GET");
        assert_eq!(s[1].3, ["malformed:expected_bulk_string"]);
        assert_eq!(s[2].0, "GET");
        assert_eq!(s[2].1, "b");
        assert_eq!(s.len(), 3);
        // Server side: an unknown type byte, then replies again.
        let mut reqs = cmd(&[b"GET", b"a"]);
        reqs.extend(cmd(&[b"GET", b"b"]));
        let out = run(&[Ev::Data(C, &reqs), Ev::Data(S, b"?what\r\n+two\r\n")]);
        assert_eq!(out.errors, ["unknown_type"]);
        assert_eq!(resp(&out.entries[0]).value, b"two");
    }

    #[test]
    fn gaps() {
        // Inside a bulk string the frame goes on, marked.
        let out = run(&[
            Ev::Data(C, &cmd(&[b"GET", b"k"])),
            Ev::Data(S, b"$10\r\nab"),
            Ev::Gap(S, 4),
            Ev::Data(S, b"ghij\r\n"),
        ]);
        assert!(out.errors.is_empty());
        let e = &out.entries[0];
        assert_eq!(resp(e).value, b"abghij");
        assert!(e.flags.contains(&"gap".to_string()));
        assert_eq!(e.response_size, 17);
        // Past a frame's end: resync at the next command.
        let mut after = b"ab\r\n".to_vec();
        after.extend(cmd(&[b"GET", b"next"]));
        let out = run(&[
            Ev::Data(C, b"*2\r\n$3\r\nSET\r\n$2\r\n"),
            Ev::Gap(C, 10),
            Ev::Data(C, &after),
            Ev::Data(S, b"+OK\r\n$1\r\nv\r\n"),
        ]);
        assert!(out.errors.is_empty(), "gaps are not parse errors");
        let s: Vec<_> = summary(&out).into_iter().map(|(c, k, ..)| (c, k)).collect();
        assert_eq!(s[0].0, "SET");
        assert_eq!(s[1], ("GET".to_string(), "next".to_string()));
        assert!(out.entries[0].flags.contains(&"gap".to_string()));
    }

    #[test]
    fn midstream_starts_at_a_message_boundary() {
        let mut client = b"ue\r\n".to_vec();
        client.extend(cmd(&[b"GET", b"k"]));
        let out = run_with(
            &[Ev::Data(C, &client), Ev::Data(S, b"lue\r\n$1\r\nv\r\n")],
            &DissectConfig::default(),
            true,
            false,
        );
        assert!(out.errors.is_empty());
        let s = summary(&out);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].0.as_str(), s[0].2.as_str()), ("GET", "bulk"));
        assert!(s[0].4.contains(&"midstream".to_string()));
    }

    #[test]
    fn probe_claims_by_content() {
        let table: &[(Direction, &[u8], bool, Claim)] = &[
            (C, b"*1\r\n$4\r\nPING\r\n", false, Claim::Yes),
            (C, b"*3\r\n$3\r\nSET\r\n", false, Claim::Yes),
            (C, b"*3\r\n$", false, Claim::NeedMore),
            (C, b"*", false, Claim::NeedMore),
            (C, b"*3\r\n*1\r\n", false, Claim::No),
            (C, b"*0\r\n", false, Claim::No),
            (C, b"PING\r\n", false, Claim::Yes),
            (C, b"set k v\r\n", false, Claim::Yes),
            (C, b"PIN", false, Claim::NeedMore),
            (C, b"HELO example.com\r\n", false, Claim::No),
            (C, b"\x16\x03\x01\x02\x00", false, Claim::No),
            (S, b"+OK\r\n", false, Claim::Yes),
            (S, b"-ERR unknown command\r\n", false, Claim::Yes),
            (S, b":1\r\n", false, Claim::Yes),
            (S, b"$5\r\n", false, Claim::Yes),
            (S, b"%7\r\n", false, Claim::Yes),
            (S, b">3\r\n", false, Claim::Yes),
            (S, b"+OK", false, Claim::NeedMore),
            (S, b"+OK POP3 server ready\r\n", false, Claim::No),
            (S, b"-bad\r\n", false, Claim::No),
            (S, b":x\r\n", false, Claim::No),
            (S, b"HTTP/1.1 200 OK\r\n", false, Claim::No),
            (S, b"SSH-2.0-OpenSSH\r\n", false, Claim::No),
            (
                C,
                b"tail of something\r\n*1\r\n$4\r\nPING\r\n",
                true,
                Claim::Yes,
            ),
            (
                C,
                b"tail of something\r\n*1\r\n$4\r\nPING\r\n",
                false,
                Claim::No,
            ),
        ];
        for (dir, bytes, midstream, want) in table {
            assert_eq!(probe(*dir, bytes, *midstream), *want, "{dir:?} {bytes:?}");
        }
        // A request line is HTTP's, even though GET is a Redis command too.
        assert_eq!(probe(C, b"GET / HTTP/1.1\r\n", false), Claim::No);
    }

    #[test]
    fn confirmations_nobody_asked_for_are_pushes() {
        let mut events = Vec::new();
        let replies: Vec<Vec<u8>> = ["subscribe", "psubscribe", "ssubscribe", "unsubscribe"]
            .iter()
            .map(|w| {
                format!("*3\r\n${}\r\n{w}\r\n$1\r\nc\r\n:{}\r\n", w.len(), i64::MAX).into_bytes()
            })
            .collect();
        for r in &replies {
            events.push(Ev::Data(S, r));
        }
        let out = run(&events);
        assert_eq!(out.entries.len(), 4);
        assert!(out.entries.iter().all(|e| req(e).command == "PUSH"));
    }

    #[test]
    fn split_args_as_redis() {
        type Args<'a> = Option<&'a [&'a [u8]]>;
        let table: &[(&[u8], Args)] = &[
            (b"SET k v", Some(&[b"SET", b"k", b"v"])),
            (b"  a\t b  ", Some(&[b"a", b"b"])),
            (b"\"a b\" 'c d'", Some(&[b"a b", b"c d"])),
            (b"\"\\x00\\xzz\"", Some(&[b"\x00xzz"])),
            (b"\"open", None),
            (b"\"a\"b", None),
            (b"", Some(&[])),
        ];
        for (line, want) in table {
            let want = want.map(|w| w.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
            assert_eq!(split_args(line), want, "{line:?}");
        }
    }
}
