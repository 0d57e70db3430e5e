//! The RESP2/RESP3 parser: iterative and streaming, with an explicit stack
//! bounded at MAX_DEPTH; bulk strings kept only up to the body cap.

use super::*;

/// An aggregate being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Agg {
    Array,
    Map,
    Set,
    Push,
    Attribute,
    /// The chunks of a streamed string (`$?`).
    Chunks,
}

impl Agg {
    pub(super) fn of(t: u8) -> Agg {
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
pub(super) struct Level {
    pub(super) agg: Agg,
    /// Elements still to come; `None` for a streamed aggregate, which ends with `.`.
    pub(super) left: Option<u64>,
    /// Elements begun so far, for separators when rendering.
    pub(super) seen: u64,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum State {
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
pub(super) enum Feed {
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
pub(super) struct Parser {
    pub(super) role: Role,
    pub(super) max_line: usize,
    pub(super) state: State,
    pub(super) line: Vec<u8>,
    pub(super) stack: Vec<Level>,
    /// Bytes of the current frame so far; 0 between frames.
    pub(super) wire: u64,
    pub(super) done: bool,
    pub(super) draft: Draft,
    pub(super) max_body: usize,
}

impl Parser {
    pub(super) fn new(role: Role, config: &DissectConfig) -> Self {
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

    pub(super) fn reset(&mut self) {
        self.state = State::Type;
        self.line.clear();
        self.stack.clear();
        self.wire = 0;
        self.done = false;
        self.draft = Draft::new(self.role, self.max_body);
    }

    /// The frame so far (complete or not) and its bytes on the wire; the parser starts afresh.
    pub(super) fn take(&mut self) -> (Draft, u64) {
        let draft = std::mem::replace(&mut self.draft, Draft::new(self.role, self.max_body));
        let wire = self.wire;
        self.reset();
        (draft, wire)
    }

    /// A frame has begun and its type is known: something to make an entry of.
    pub(super) fn has_message(&self) -> bool {
        self.wire > 0 && self.draft.kind.is_some()
    }

    /// Lost bytes inside a bulk string: skips them if the string is longer,
    /// marking the frame truncated; false if the loss reaches past it.
    pub(super) fn skip_payload(&mut self, len: u64) -> bool {
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

    pub(super) fn feed(&mut self, data: &[u8]) -> Feed {
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
    pub(super) fn check_type(&self, c: u8) -> Result<(), &'static str> {
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
    pub(super) fn element(&mut self, t: u8) {
        let depth = self.stack.len();
        let parent = self.stack.last_mut().map(|l| {
            let i = l.seen;
            l.seen += 1;
            (l.agg, i)
        });
        self.draft.element(t, depth, parent);
    }

    /// An element ended: closes the aggregates it completes; the frame ends with the outermost.
    pub(super) fn element_done(&mut self) {
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
    pub(super) fn room(&self) -> Result<(), &'static str> {
        if self.stack.len() >= MAX_DEPTH {
            Err("nesting_too_deep")
        } else {
            Ok(())
        }
    }

    pub(super) fn header(&mut self, t: u8, line: &[u8]) -> Result<(), &'static str> {
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
    pub(super) fn inline(&mut self, line: &[u8]) -> Result<(), &'static str> {
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
pub(super) fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
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
