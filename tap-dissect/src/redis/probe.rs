//! Claiming a stream as Redis: the shape of a command (an array of bulk
//! strings, or an inline command) or of a reply, over a bounded prefix;
//! also where resynchronisation may restart.

use super::*;

/// Who sends a direction's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Client,
    Server,
}

impl Role {
    pub(super) fn of(dir: Direction) -> Role {
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
pub(super) fn plausible(role: Role, b: &[u8], strict: bool) -> Claim {
    match role {
        Role::Client => array_start(b),
        Role::Server => reply_start(b, strict),
    }
}

/// The index after the next `\n` at or after `from`, if bytes follow it.
pub(super) fn next_line_start(b: &[u8], from: usize) -> Option<usize> {
    let nl = b[from..].iter().position(|&c| c == b'\n')?;
    let at = from + nl + 1;
    (at < b.len()).then_some(at)
}

/// A cursor for the shape checks of the probe: `Err` carries the verdict when
/// the bytes do not fit (`No`) or end too soon (`NeedMore`).
pub(super) struct Cursor<'a> {
    pub(super) b: &'a [u8],
    pub(super) i: usize,
}

impl Cursor<'_> {
    pub(super) fn lit(&mut self, c: u8) -> Result<(), Claim> {
        match self.b.get(self.i) {
            None => Err(Claim::NeedMore),
            Some(&x) if x == c => {
                self.i += 1;
                Ok(())
            }
            Some(_) => Err(Claim::No),
        }
    }

    pub(super) fn digits(&mut self, max: usize) -> Result<u64, Claim> {
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
    pub(super) fn line(&mut self, max: usize) -> Result<&[u8], Claim> {
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

pub(super) fn verdict(r: Result<(), Claim>) -> Claim {
    r.err().unwrap_or(Claim::Yes)
}

/// `*<count>\r\n$<length>\r\n`: the start of a command array.
pub(super) fn array_start(b: &[u8]) -> Claim {
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
pub(super) fn inline_start(b: &[u8]) -> Claim {
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
pub(super) fn reply_start(b: &[u8], strict: bool) -> Claim {
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
pub(super) fn header_ok(role: Role, t: u8, line: &[u8]) -> bool {
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

pub(super) fn integer(line: &[u8]) -> Option<i64> {
    std::str::from_utf8(line).ok()?.parse().ok()
}

pub(super) fn big_number(line: &[u8]) -> bool {
    let digits = line
        .strip_prefix(b"-")
        .or(line.strip_prefix(b"+"))
        .unwrap_or(line);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

pub(super) fn double(line: &[u8]) -> bool {
    std::str::from_utf8(line).is_ok_and(|s| s.parse::<f64>().is_ok())
}

/// A length or count field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Len {
    N(u64),
    /// `-1`: RESP2's null bulk string or null array.
    Null,
    /// `?`: a RESP3 streamed string or aggregate.
    Streamed,
}

pub(super) fn length(line: &[u8]) -> Option<Len> {
    match line {
        b"-1" => Some(Len::Null),
        b"?" => Some(Len::Streamed),
        _ if !line.is_empty() && line.len() <= 19 && line.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(line).ok()?.parse().ok().map(Len::N)
        }
        _ => None,
    }
}
