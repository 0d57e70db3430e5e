//! PostgreSQL: the frontend/backend protocol, version 3. One entry per simple
//! query (a Query message, with one result per statement it holds), one per
//! Execute of the extended protocol, and one for the connection's startup.
//!
//! A connection starts with the client's untyped StartupMessage, or first an
//! SSLRequest/GSSENCRequest answered by one byte: `S` or `G` means encryption
//! follows, so parsing stops and the startup entry is flagged `tls` (or
//! `gssenc`); `N` means plaintext goes on. Authentication follows up to the
//! first ReadyForQuery: its method is kept, passwords and SASL data never are.
//! From then on every message is a type byte and a 4-byte length. The server
//! answers in order, so each client message that expects an answer waits in
//! an in-order queue: a Query until its ReadyForQuery, Parse, Bind, Describe,
//! Close and Sync until their own answers, and an Execute until its
//! CommandComplete, EmptyQueryResponse, PortalSuspended or ErrorResponse. An
//! Execute's entry shows the SQL and parameters of the portal it runs, from
//! the Parse and Bind before it (statements and portals are remembered by name
//! in bounded maps). After an error the server skips the rest of the batch up
//! to Sync, so an Execute it skipped is an entry flagged `skipped`. Notices,
//! ParameterStatus and NotificationResponse may come at any time without
//! disturbing the order; a notification is an entry of its own.
//!
//! The parser is ours. The framing is five bytes, and the crates that decode
//! the protocol (`pgwire`, `postgres-protocol`) wait for a whole message in
//! one buffer before decoding it, so a 1 GiB DataRow or CopyData would be held
//! in memory; `postgres-protocol` reads only the server's side besides. Here a
//! length field is checked before anything else (4 bytes to 1 GiB, the
//! server's own limit; a startup packet at most 10,000 bytes), and the body
//! streams through: only a capped prefix of what an entry shows is kept,
//! CopyData is counted, and nothing is allocated from a length field. Bytes
//! the capture lost inside a message keep its framing (the message is cut);
//! a loss across a message boundary, or a malformed header, starts a
//! resynchronisation that looks for a run of well-formed messages (type,
//! length and body shape).

pub mod json;
pub mod model;

use super::{Claim, DissectConfig, Dissector, Emit, Handoff};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{self, Message};
use proto::v1::{
    Header, PostgresError, PostgresRequest, PostgresResponse, PostgresResult, PostgresRow,
    PostgresValue, Protocol, Request, Response, request, response,
};
use std::collections::{HashMap, VecDeque};

/// Longest message the length field may announce: PostgreSQL's own limit.
const MAX_MESSAGE: u64 = 1 << 30;
/// Longest startup packet PostgreSQL accepts.
const MAX_STARTUP: u64 = 10_000;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Rows kept per result; more are counted.
const MAX_ROWS: usize = 100;
/// Results kept per entry (a Query of many statements).
const MAX_RESULTS: usize = 256;
/// Bind parameters kept per entry.
const MAX_PARAMS: usize = 256;
const MAX_NOTICES: usize = 16;
/// ParameterStatus reports and startup options kept.
const MAX_REPORTS: usize = 64;
/// The most columns a table can have.
const MAX_COLUMNS: usize = 1664;
/// Bytes kept of a statement, portal or channel name.
const MAX_NAME: usize = 1024;
const MAX_TAG: usize = 1024;
/// Prepared statements remembered per connection, and their SQL's bytes.
const MAX_STATEMENTS: usize = 1024;
const MAX_STATEMENT_BYTES: usize = 4 << 20;
/// Portals remembered per connection, and their bytes.
const MAX_PORTALS: usize = 64;
const MAX_PORTAL_BYTES: usize = 8 << 20;
/// Bytes kept of a DataRow or Bind beyond the value budget (lengths, format codes).
const OVERHEAD: usize = 8 << 10;
/// Bytes a resynchronisation holds while it looks for a message boundary;
/// a message it accepts as the boundary is shorter than this.
const RESYNC_WINDOW: usize = 64 << 10;
const RESYNC_MAX: u64 = (RESYNC_WINDOW - 16) as u64;
/// Possible boundaries a resynchronisation waits on at once.
const MAX_CANDIDATES: usize = 64;
const MAX_VERB: usize = 32;
/// What a value costs at least against the budget (a NULL too).
const VALUE_COST: usize = 4;

const CLIENT_TYPES: &[u8] = b"QPBEDCSHXFdcfp";
const SERVER_TYPES: &[u8] = b"RSKZTDCEN123nIstGHWdcAVv";

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

    fn types(self) -> &'static [u8] {
        match self {
            Role::Client => CLIENT_TYPES,
            Role::Server => SERVER_TYPES,
        }
    }
}

fn be16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// The body length of messages whose length is fixed.
fn fixed_len(role: Role, t: u8) -> Option<u64> {
    match (role, t) {
        (Role::Client, b'S' | b'H' | b'X' | b'c') => Some(0),
        (Role::Server, b'1' | b'2' | b'3' | b'n' | b'I' | b's' | b'c') => Some(0),
        (Role::Server, b'Z') => Some(1),
        _ => None,
    }
}

/// A typed message's header: its body length, or why it is malformed.
fn check_header(role: Role, t: u8, len: u32) -> Result<u64, &'static str> {
    if !role.types().contains(&t) {
        return Err("unknown_type");
    }
    let len = u64::from(len);
    if !(4..=MAX_MESSAGE).contains(&len) {
        return Err("length_out_of_range");
    }
    let body = len - 4;
    if fixed_len(role, t).is_some_and(|f| f != body) {
        return Err("unexpected_length");
    }
    Ok(body)
}

/// The bytes before the NUL at or after `i`, looking at most `max` bytes,
/// and the index after the NUL.
fn cstr_within(b: &[u8], i: usize, max: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(i..)?;
    let n = rest.iter().take(max).position(|&c| c == 0)?;
    Some((&rest[..n], i + n + 1))
}

fn name_like(b: &[u8]) -> bool {
    b.iter().all(|&c| c >= 0x20 && c != 0x7f)
}

/// The first bytes look like text (SQL, a tag, a message).
fn text_start(b: &[u8]) -> bool {
    b.iter()
        .take(64)
        .all(|&c| c >= 0x20 || matches!(c, b'\t' | b'\r' | b'\n'))
}

/// A DataRow's values fit its body (the first 64 are walked).
fn data_row_ok(b: &[u8]) -> bool {
    let Some(n) = be16(b, 0) else { return false };
    let mut i = 2;
    for _ in 0..n.min(64) {
        let Some(len) = be32(b, i) else { return false };
        i += 4;
        match len as i32 {
            -1 => {}
            l if l < 0 => return false,
            l => i += l as usize,
        }
        if i > b.len() {
            return false;
        }
    }
    n > 64 || i == b.len()
}

/// Whether a message body has its type's shape, looking at a bounded number
/// of bytes (names are at most 63 bytes in PostgreSQL, so 64 are looked at):
/// for claiming a stream mid-way and for resynchronising, which check many offsets.
fn body_ok(role: Role, t: u8, b: &[u8]) -> bool {
    const LOOK: usize = 64;
    let ends_nul = b.last() == Some(&0);
    let named = |i: usize| cstr_within(b, i, LOOK).filter(|(n, _)| name_like(n));
    match (role, t) {
        (Role::Client, b'Q' | b'f') => ends_nul && text_start(&b[..b.len() - 1]),
        (Role::Client, b'P') => {
            named(0).is_some_and(|(_, i)| text_start(&b[i..]) && b.len() >= i + 3)
        }
        (Role::Client, b'B') => named(0)
            .and_then(|(_, i)| named(i))
            .is_some_and(|(_, i)| b.len() >= i + 6),
        (Role::Client, b'E') => named(0).is_some_and(|(_, i)| b.len() == i + 4),
        (Role::Client, b'D' | b'C') => {
            matches!(b.first(), Some(b'S' | b'P')) && named(1).is_some_and(|(_, i)| i == b.len())
        }
        (Role::Client, b'F') => b.len() >= 10,
        (Role::Server, b'R') => be32(b, 0)
            .is_some_and(|c| matches!(c, 0 | 2 | 3 | 5 | 7..=12) && (c != 0 || b.len() == 4)),
        (Role::Server, b'S') => {
            named(0).is_some_and(|(n, i)| !n.is_empty() && ends_nul && b.len() > i)
        }
        (Role::Server, b'T') => be16(b, 0)
            .is_some_and(|n| b.len() >= 2 + 19 * usize::from(n) && (n == 0 || named(2).is_some())),
        (Role::Server, b'D') => data_row_ok(b),
        (Role::Server, b'C') => {
            ends_nul
                && b.first().is_some_and(u8::is_ascii_uppercase)
                && text_start(&b[..b.len() - 1])
        }
        (Role::Server, b'E' | b'N') => ends_nul && b.first().is_some_and(u8::is_ascii_alphabetic),
        (Role::Server, b't') => be16(b, 0).is_some_and(|n| b.len() == 2 + 4 * usize::from(n)),
        (Role::Server, b'G' | b'H' | b'W') => {
            b.first().is_some_and(|&f| f <= 1)
                && be16(b, 1).is_some_and(|n| b.len() == 3 + 2 * usize::from(n))
        }
        (Role::Server, b'Z') => matches!(b, [b'I' | b'T' | b'E']),
        (Role::Server, b'A') => b.len() >= 6 && ends_nul,
        // A pid and a key of 4 bytes (protocol 3.0) up to 256 (3.2).
        (Role::Server, b'K') => (8..=260).contains(&b.len()),
        (Role::Server, b'V') => b.len() >= 4,
        (Role::Server, b'v') => b.len() >= 8,
        _ => true,
    }
}

/// Whether a run of well-formed messages of `role` starts at `b`: `need` of
/// them, or (`end_ok`) at least one ending exactly where `b` does. CopyData
/// and password messages, which have no shape, may not begin a run.
fn plausible(role: Role, b: &[u8], need: usize, end_ok: bool) -> Claim {
    let mut at = 0;
    let mut run = 0;
    loop {
        let rest = &b[at..];
        let Some(&t) = rest.first() else {
            return if run > 0 && end_ok {
                Claim::Yes
            } else {
                Claim::NeedMore
            };
        };
        if !role.types().contains(&t) || (run == 0 && matches!(t, b'd' | b'p')) {
            return Claim::No;
        }
        let Some(len) = be32(rest, 1) else {
            return Claim::NeedMore;
        };
        let body = match check_header(role, t, len) {
            Ok(body) if body <= RESYNC_MAX => body as usize,
            _ => return Claim::No,
        };
        if rest.len() < 5 + body {
            return Claim::NeedMore;
        }
        if !body_ok(role, t, &rest[5..5 + body]) {
            return Claim::No;
        }
        run += 1;
        at += 5 + body;
        if run >= need {
            return Claim::Yes;
        }
    }
}

/// The client's first message: a StartupMessage (protocol 3.x, with
/// well-formed parameters), an SSLRequest, GSSENCRequest or CancelRequest.
fn startup_claim(b: &[u8]) -> Claim {
    const STARTS: [[u8; 4]; 4] = [
        [0, 3, 0, 0],
        [0x04, 0xd2, 0x16, 0x2f],
        [0x04, 0xd2, 0x16, 0x30],
        [0x04, 0xd2, 0x16, 0x2e],
    ];
    if b.len() < 8 {
        let len_ok = match be32(b, 0) {
            Some(len) => (8..=MAX_STARTUP).contains(&u64::from(len)),
            None => b.iter().take(2).all(|&c| c == 0),
        };
        let code = b.get(4..).unwrap_or_default();
        // Protocol 3's minor version may be anything: only its major is compared.
        let code_ok = STARTS.iter().enumerate().any(|(k, s)| {
            let n = if k == 0 {
                code.len().min(2)
            } else {
                code.len()
            };
            code[..n] == s[..n]
        });
        return if len_ok && code_ok {
            Claim::NeedMore
        } else {
            Claim::No
        };
    }
    let len = u64::from(be32(b, 0).unwrap_or(0));
    match be32(b, 4).unwrap_or(0) {
        SSL_REQUEST | GSSENC_REQUEST if len == 8 => Claim::Yes,
        CANCEL_REQUEST if (16..=268).contains(&len) => Claim::Yes,
        c if c >> 16 == 3 && (9..=MAX_STARTUP).contains(&len) => {
            let end = (len as usize).min(b.len());
            params_claim(&b[8..end], b.len() >= len as usize)
        }
        _ => Claim::No,
    }
}

/// A StartupMessage's parameters: `name\0value\0` pairs and a final NUL, with
/// printable names; `complete` when `b` holds the whole message.
fn params_claim(b: &[u8], complete: bool) -> Claim {
    let mut i = 0;
    let mut pairs = 0;
    while let Some((key, next)) = cstr_within(b, i, usize::MAX) {
        if key.is_empty() {
            return if pairs > 0 && next == b.len() {
                Claim::Yes
            } else {
                Claim::No
            };
        }
        if !key.iter().all(u8::is_ascii_graphic) {
            return Claim::No;
        }
        let Some((_, after)) = cstr_within(b, next, usize::MAX) else {
            break;
        };
        i = after;
        pairs += 1;
    }
    // The bytes ran out inside a pair.
    if complete {
        Claim::No
    } else if pairs > 0 {
        Claim::Yes
    } else {
        Claim::NeedMore
    }
}

/// Claims a stream whose client side starts with a StartupMessage, SSLRequest,
/// GSSENCRequest or CancelRequest; mid-stream, one where either side has a
/// run of two well-formed messages of its own at some offset of its first bytes.
pub fn probe(dir: Direction, first: &[u8], midstream: bool) -> Claim {
    let role = Role::of(dir);
    let start = match role {
        Role::Client => startup_claim(first),
        Role::Server => Claim::No,
    };
    if start != Claim::No || !midstream {
        return start;
    }
    let mut verdict = Claim::No;
    for i in 0..first.len() {
        match plausible(role, &first[i..], 2, false) {
            Claim::Yes => return Claim::Yes,
            Claim::NeedMore => verdict = Claim::NeedMore,
            Claim::No => {}
        }
    }
    verdict
}

/// A bounded reader over a message body (or the part of it that was kept).
struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b, i: 0 }
    }

    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.i)?;
        self.i += 1;
        Some(v)
    }

    fn u16(&mut self) -> Option<u16> {
        let v = be16(self.b, self.i)?;
        self.i += 2;
        Some(v)
    }

    fn u32(&mut self) -> Option<u32> {
        let v = be32(self.b, self.i)?;
        self.i += 4;
        Some(v)
    }

    /// A NUL-terminated string; `None` when the kept bytes end before its NUL.
    fn cstr(&mut self) -> Option<&'a [u8]> {
        let (s, next) = cstr_within(self.b, self.i, usize::MAX)?;
        self.i = next;
        Some(s)
    }

    /// Up to `n` bytes, and whether all `n` were there.
    fn take(&mut self, n: usize) -> (&'a [u8], bool) {
        let rest = &self.b[self.i.min(self.b.len())..];
        let k = n.min(rest.len());
        self.i += k;
        (&rest[..k], k == n)
    }

    fn rest(&self) -> &'a [u8] {
        &self.b[self.i.min(self.b.len())..]
    }
}

/// Text as a `String`: at most `max` bytes (cut at a character boundary),
/// invalid UTF-8 replaced; and whether it was cut.
fn text(b: &[u8], max: usize) -> (String, bool) {
    let s = String::from_utf8_lossy(b);
    if s.len() <= max {
        return (s.into_owned(), false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s[..end].to_string(), true)
}

/// A name (statement, portal, parameter) as text, capped.
fn name(b: &[u8]) -> String {
    text(b, MAX_NAME).0
}

/// A value as an entry shows it: text when it is in text format and UTF-8
/// (a value cut short may end inside a character), else `\x` and hex, as
/// PostgreSQL writes bytea; at most `room` bytes. Also whether it all fitted.
fn render(b: &[u8], binary: bool, partial: bool, room: usize) -> (String, bool) {
    if !binary {
        let valid = match std::str::from_utf8(b) {
            Ok(s) => Some(s),
            Err(e) if partial && e.error_len().is_none() => {
                std::str::from_utf8(&b[..e.valid_up_to()]).ok()
            }
            Err(_) => None,
        };
        if let Some(s) = valid {
            let (t, cut) = text(s.as_bytes(), room);
            return (t, !cut);
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let fit = room.saturating_sub(2) / 2;
    let mut s = String::with_capacity(2 + 2 * fit.min(b.len()));
    if room >= 2 {
        s.push_str("\\x");
    }
    for &c in b.iter().take(fit) {
        s.push(char::from(HEX[usize::from(c >> 4)]));
        s.push(char::from(HEX[usize::from(c & 15)]));
    }
    (s, fit >= b.len() && room >= 2)
}

/// The format code of column or parameter `i`: one code applies to all.
fn format_of(formats: &[u16], i: usize) -> u16 {
    match formats {
        [one] => *one,
        _ => formats.get(i).copied().unwrap_or(0),
    }
}

/// The SQL's first keyword, upper-cased, after blanks, comments and opening parentheses.
fn verb(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'(') {
            i += 1;
        }
        if b[i..].starts_with(b"--") {
            i = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n + 1);
            continue;
        }
        if b[i..].starts_with(b"/*") {
            // Block comments nest in PostgreSQL.
            let mut depth = 0usize;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        break;
    }
    b[i..]
        .iter()
        .take_while(|c| c.is_ascii_alphabetic() || **c == b'_')
        .take(MAX_VERB)
        .map(|c| char::from(c.to_ascii_uppercase()))
        .collect()
}

/// Rows a command tag reports, for the commands whose tag has a count.
fn tag_rows(tag: &str) -> Option<u64> {
    let first = tag.split(' ').next()?;
    if !matches!(
        first,
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "COPY" | "FETCH" | "MOVE"
    ) {
        return None;
    }
    tag.rsplit(' ').next()?.parse().ok()
}

/// An ErrorResponse's or NoticeResponse's fields.
fn error_fields(b: &[u8]) -> PostgresError {
    let mut e = PostgresError::default();
    let mut localized = String::new();
    let mut r = Reader::new(b);
    while let Some(code) = r.u8() {
        if code == 0 {
            break;
        }
        let value = match r.cstr() {
            Some(v) => v,
            None => r.take(usize::MAX).0,
        };
        let v = text(value, MAX_TAG * 4).0;
        match code {
            b'S' => localized = v,
            b'V' => e.severity = v,
            b'C' => e.code = v,
            b'M' => e.message = v,
            b'D' => e.detail = v,
            b'H' => e.hint = v,
            _ => {}
        }
    }
    if e.severity.is_empty() {
        e.severity = localized;
    }
    e
}

fn add_flag(flags: &mut Vec<String>, flag: &str) {
    if !flags.iter().any(|f| f == flag) {
        flags.push(flag.to_string());
    }
}

/// What a bounded name map charges for an entry.
trait Weight {
    fn weight(&self) -> usize;
}

/// Prepared statements or portals by name; the oldest are forgotten past a
/// count or a byte bound.
struct Named<T> {
    map: HashMap<String, (u64, T)>,
    /// Names in the order they were (re)defined, with the definition's number.
    order: VecDeque<(u64, String)>,
    seq: u64,
    bytes: usize,
    max: usize,
    max_bytes: usize,
}

impl<T: Weight> Named<T> {
    fn new(max: usize, max_bytes: usize) -> Self {
        Named {
            map: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            bytes: 0,
            max,
            max_bytes,
        }
    }

    fn insert(&mut self, key: String, v: T) {
        let w = v.weight() + key.len();
        if let Some((_, old)) = self.map.insert(key.clone(), (self.seq, v)) {
            self.bytes = self.bytes.saturating_sub(old.weight() + key.len());
        }
        self.bytes += w;
        self.order.push_back((self.seq, key));
        self.seq += 1;
        while self.map.len() > self.max || self.bytes > self.max_bytes {
            let Some((s, k)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&k).is_some_and(|(q, _)| *q == s)
                && let Some((_, old)) = self.map.remove(&k)
            {
                self.bytes = self.bytes.saturating_sub(old.weight() + k.len());
            }
        }
        if self.order.len() > 2 * self.max + 16 {
            let map = &self.map;
            self.order
                .retain(|(s, k)| map.get(k).is_some_and(|(q, _)| q == s));
        }
    }

    fn get(&self, key: &str) -> Option<&T> {
        self.map.get(key).map(|(_, v)| v)
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, old)) = self.map.remove(key) {
            self.bytes = self.bytes.saturating_sub(old.weight() + key.len());
        }
    }
}

/// A prepared statement: its SQL, as the Parse sent it (capped).
struct Statement {
    sql: String,
    truncated: bool,
}

impl Weight for Statement {
    fn weight(&self) -> usize {
        self.sql.len()
    }
}

/// A portal: what a Bind bound, for the Executes that run it.
#[derive(Default, Clone)]
struct Portal {
    statement: String,
    sql: Option<String>,
    sql_truncated: bool,
    params: Vec<PostgresValue>,
    param_count: u64,
    params_truncated: bool,
    result_formats: Vec<u16>,
}

impl Weight for Portal {
    fn weight(&self) -> usize {
        self.statement.len()
            + self.sql.as_ref().map_or(0, String::len)
            + self
                .params
                .iter()
                .map(|p| p.text.as_ref().map_or(0, String::len) + VALUE_COST)
                .sum::<usize>()
            + 2 * self.result_formats.len()
    }
}

/// A client message that waits for the server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Startup,
    Query,
    Parse,
    Bind,
    Describe,
    Execute,
    Close,
    Sync,
    Function,
}

impl OpKind {
    fn makes_entry(self) -> bool {
        matches!(
            self,
            OpKind::Startup | OpKind::Query | OpKind::Execute | OpKind::Function
        )
    }

    /// Answered by a ReadyForQuery, which ends a batch.
    fn ends_batch(self) -> bool {
        matches!(
            self,
            OpKind::Startup | OpKind::Query | OpKind::Sync | OpKind::Function
        )
    }
}

/// A result under way.
#[derive(Debug, Default)]
struct Partial {
    res: PostgresResult,
    data_rows: u64,
    formats: Vec<u16>,
}

/// The answer to an op, gathered as the server's messages arrive.
#[derive(Debug, Default)]
struct Draft {
    started: bool,
    ts: u64,
    wire: u64,
    flags: Vec<String>,
    body: PostgresResponse,
    cur: Option<Partial>,
    /// Columns and formats an Execute's Describe reported.
    described: Option<(Vec<String>, Vec<u16>)>,
    /// Result formats its Bind asked for, until a RowDescription says.
    formats: Vec<u16>,
    /// Bytes of row values kept across the answer.
    rows_bytes: usize,
    /// Something was not kept.
    cut: bool,
}

impl Draft {
    fn touch(&mut self, ts: u64, wire: u64, flags: Vec<String>) {
        if !self.started {
            self.started = true;
            self.ts = ts;
        }
        self.wire += wire;
        for f in &flags {
            add_flag(&mut self.flags, f);
        }
    }

    fn result(&mut self) -> &mut Partial {
        let described = &mut self.described;
        let formats = &self.formats;
        self.cur.get_or_insert_with(|| {
            let (columns, formats) = described
                .take()
                .unwrap_or_else(|| (Vec::new(), formats.clone()));
            Partial {
                res: PostgresResult {
                    columns,
                    ..Default::default()
                },
                data_rows: 0,
                formats,
            }
        })
    }

    fn close_result(&mut self) {
        if let Some(p) = self.cur.take() {
            let mut r = p.res;
            r.row_count = tag_rows(&r.command_tag).unwrap_or(p.data_rows);
            if r.rows_truncated {
                self.cut = true;
            }
            if self.body.results.len() < MAX_RESULTS {
                self.body.results.push(r);
            } else {
                self.cut = true;
            }
        }
    }

    /// A DataRow: counted, and rendered while the row and byte caps allow.
    fn data_row(&mut self, body: &[u8], max: usize) {
        let budget = max.saturating_sub(self.rows_bytes);
        let p = self.result();
        p.data_rows += 1;
        if p.res.rows.len() >= MAX_ROWS || budget == 0 {
            p.res.rows_truncated = true;
            return;
        }
        let mut r = Reader::new(body);
        let n = r.u16().unwrap_or(0);
        let mut values = Vec::new();
        let mut used = 0;
        let mut whole = true;
        for i in 0..usize::from(n) {
            let Some(len) = r.u32() else {
                whole = false;
                break;
            };
            used += VALUE_COST;
            if len as i32 == -1 {
                values.push(PostgresValue { text: None });
            } else {
                let (bytes, complete) = r.take(len as usize);
                let room = budget.saturating_sub(used);
                let (t, fits) = render(bytes, format_of(&p.formats, i) == 1, !complete, room);
                used += t.len();
                values.push(PostgresValue { text: Some(t) });
                if !complete || !fits {
                    whole = false;
                    break;
                }
            }
            if used >= budget && i + 1 < usize::from(n) {
                whole = false;
                break;
            }
        }
        if !whole {
            p.res.rows_truncated = true;
        }
        p.res.rows.push(PostgresRow { values });
        self.rows_bytes += used;
    }
}

/// A client message waiting for its answer, with the request it makes.
struct Op {
    kind: OpKind,
    req: Message<PostgresRequest>,
    resp: Draft,
}

/// How an op leaves the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retire {
    Answered,
    /// The server skipped it after an error earlier in its batch.
    Skipped,
    Unanswered,
    Closed,
}

/// A resynchronisation under way: bytes since the loss or the bad header,
/// and the offsets in them that may begin a message.
#[derive(Debug, Default)]
struct Resync {
    window: Vec<u8>,
    /// The first offset not yet looked at.
    next: usize,
    /// Offsets whose check needs more bytes.
    candidates: Vec<usize>,
}

impl Resync {
    fn with(window: Vec<u8>) -> Self {
        Resync {
            window,
            ..Default::default()
        }
    }

    /// Takes in some of `data`: how much, and the bytes from a message
    /// boundary on when one was found (the resynchronisation is over).
    fn feed(&mut self, role: Role, data: &[u8]) -> (usize, Option<Vec<u8>>) {
        let take = data.len().min(RESYNC_WINDOW / 2);
        self.window.extend_from_slice(&data[..take]);
        // A message ending exactly where a segment does is a boundary; one
        // ending where this call cut the input is not.
        let end_ok = take == data.len();
        let mut found = None;
        let mut waiting = Vec::new();
        for &c in &self.candidates {
            match plausible(role, &self.window[c..], 2, end_ok) {
                Claim::Yes => {
                    found = Some(c);
                    break;
                }
                Claim::NeedMore => waiting.push(c),
                Claim::No => {}
            }
        }
        self.candidates = waiting;
        while found.is_none() && self.next < self.window.len() {
            let at = self.next;
            match plausible(role, &self.window[at..], 2, end_ok) {
                Claim::Yes => found = Some(at),
                Claim::NeedMore if self.window.len() - at < 5 => break,
                Claim::NeedMore => {
                    if self.candidates.len() < MAX_CANDIDATES {
                        self.candidates.push(at);
                    }
                }
                Claim::No => {}
            }
            self.next += 1;
        }
        if let Some(c) = found {
            return (take, Some(self.window[c..].to_vec()));
        }
        let from = self
            .candidates
            .first()
            .map_or(self.next, |&c| c.min(self.next));
        // Dropped in steps, so that tiny segments do not move the window each time.
        if from >= 4096 || from == self.window.len() {
            self.window.drain(..from);
            self.next -= from;
            for c in &mut self.candidates {
                *c -= from;
            }
        }
        if self.window.len() > 2 * RESYNC_WINDOW {
            // Cannot happen (a candidate resolves within a window); bound it anyway.
            self.candidates.clear();
            self.window.drain(..self.next);
            self.next = 0;
        }
        (take, None)
    }
}

/// A message body being read.
struct Body {
    t: u8,
    len: u64,
    left: u64,
    keep: Vec<u8>,
    cap: usize,
    cut: bool,
    ts: u64,
}

/// One direction's framing state.
struct Side {
    /// The client's first messages (startup, SSLRequest) have no type byte.
    typed: bool,
    hdr: [u8; 5],
    hdr_n: usize,
    hdr_ts: u64,
    body: Option<Body>,
    resync: Option<Resync>,
    /// A message has parsed since the last error or gap; errors meanwhile are not reported again.
    synced: bool,
    /// Flags for the next message (gap, malformed).
    flags: Vec<String>,
}

impl Side {
    fn new(role: Role, midstream: bool) -> Self {
        Side {
            typed: role == Role::Server || midstream,
            hdr: [0; 5],
            hdr_n: 0,
            hdr_ts: 0,
            body: None,
            resync: midstream.then(Resync::default),
            synced: !midstream,
            flags: Vec::new(),
        }
    }

    fn at_boundary(&self) -> bool {
        self.body.is_none() && self.hdr_n == 0 && self.resync.is_none()
    }
}

/// A complete message (or what was kept of it).
struct Msg<'a> {
    t: u8,
    body: &'a [u8],
    /// Body bytes on the wire.
    len: u64,
    /// The body was not all kept (cap or loss).
    cut: bool,
    ts: u64,
    /// Bytes on the wire with the header.
    wire: u64,
    flags: Vec<String>,
}

pub fn new(
    flow: &FlowInfo,
    config: &DissectConfig,
    handoff: Option<&Handoff>,
) -> Box<dyn Dissector> {
    Box::new(Postgres {
        max_body: config.max_body,
        max_head: config.max_head.max(1024),
        max_ops: config.max_pending.max(2) * 4,
        sides: [
            Side::new(Role::Client, flow.midstream),
            Side::new(Role::Server, flow.midstream),
        ],
        ops: VecDeque::new(),
        statements: Named::new(MAX_STATEMENTS, MAX_STATEMENT_BYTES),
        portals: Named::new(MAX_PORTALS, MAX_PORTAL_BYTES),
        made: handoff.map_or(0, |h| h.entries_made),
        encrypted: false,
        enc_requested: false,
        awaiting_answer: false,
        sasl_pending: false,
        skipping: false,
        req_carry: 0,
        resp_carry: 0,
    })
}

pub struct Postgres {
    max_body: usize,
    max_head: usize,
    max_ops: usize,
    sides: [Side; 2],
    ops: VecDeque<Op>,
    statements: Named<Statement>,
    portals: Named<Portal>,
    /// Entries made on the connection, for the entry id.
    made: u64,
    /// TLS or GSS encryption began: nothing more is readable.
    encrypted: bool,
    /// The client asked for encryption before its startup.
    enc_requested: bool,
    /// The server's next byte answers an SSLRequest/GSSENCRequest.
    awaiting_answer: bool,
    /// The server asked for SASL and the client has not named its mechanism yet.
    sasl_pending: bool,
    /// An error earlier in the batch: the server skips messages up to Sync.
    skipping: bool,
    /// Client bytes not yet counted in an entry (Parse, Bind, Sync, …).
    req_carry: u64,
    /// Server bytes not yet counted in an entry (ParseComplete, ReadyForQuery, …).
    resp_carry: u64,
}

impl Postgres {
    fn run(&mut self, flow: &FlowInfo, dir: Direction, ts: u64, data: &[u8], out: &mut Vec<Emit>) {
        // Bytes a resynchronisation gave back, parsed before the rest of `data`.
        let mut replay: Vec<u8> = Vec::new();
        let mut at = 0;
        let mut rest = data;
        loop {
            if at < replay.len() {
                let (n, carry) = self.step(flow, dir, ts, &replay[at..], out);
                at += n;
                if let Some(mut c) = carry {
                    c.extend_from_slice(&replay[at..]);
                    replay = c;
                    at = 0;
                }
                continue;
            }
            if rest.is_empty() {
                break;
            }
            let (n, carry) = self.step(flow, dir, ts, rest, out);
            rest = &rest[n..];
            if let Some(c) = carry {
                replay = c;
                at = 0;
            }
        }
    }

    /// Consumes some of `data` (at least one byte); returns how much, and
    /// bytes to parse next when a resynchronisation found a boundary.
    fn step(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) -> (usize, Option<Vec<u8>>) {
        if self.encrypted {
            return (data.len(), None);
        }
        let role = Role::of(dir);
        let side = &mut self.sides[dir.index()];
        if let Some(r) = &mut side.resync {
            let (n, carry) = r.feed(role, data);
            if carry.is_some() {
                side.resync = None;
            }
            return (n, carry);
        }
        if side.at_boundary() {
            if role == Role::Server && self.awaiting_answer {
                self.awaiting_answer = false;
                if matches!(data[0], b'S' | b'G' | b'N') {
                    self.encryption_answer(flow, ts, data[0], out);
                    return (1, None);
                }
                // Not a one-byte answer (an old server's ErrorResponse): messages follow.
            }
            if role == Role::Client && !side.typed && self.enc_requested && data[0] == 0x16 {
                // A TLS handshake record: the server's `S` was not seen.
                self.encryption_answer(flow, ts, b'S', out);
                return (data.len(), None);
            }
        }
        if let Some(b) = &mut side.body {
            let n = b.left.min(data.len() as u64) as usize;
            let k = n.min(b.cap.saturating_sub(b.keep.len()));
            b.keep.extend_from_slice(&data[..k]);
            if k < n {
                b.cut = true;
            }
            b.left -= n as u64;
            if b.left == 0 {
                self.finish_body(flow, dir, out);
            }
            return (n, None);
        }
        let need = if side.typed { 5 } else { 4 };
        if side.hdr_n == 0 {
            side.hdr_ts = ts;
        }
        let take = (need - side.hdr_n).min(data.len());
        side.hdr[side.hdr_n..side.hdr_n + take].copy_from_slice(&data[..take]);
        side.hdr_n += take;
        if side.hdr_n < need {
            return (take, None);
        }
        side.hdr_n = 0;
        let (t, checked) = if side.typed {
            let len = be32(&side.hdr, 1).unwrap_or(0);
            (side.hdr[0], check_header(role, side.hdr[0], len))
        } else {
            let len = u64::from(be32(&side.hdr, 0).unwrap_or(0));
            let ok = (8..=MAX_STARTUP).contains(&len);
            (
                0,
                if ok {
                    Ok(len - 4)
                } else {
                    Err("bad_startup_length")
                },
            )
        };
        match checked {
            Err(reason) => {
                let skipped = side.hdr[1..need].to_vec();
                self.malformed(dir, reason, skipped, out);
            }
            Ok(len) => {
                let cap = self.cap(dir, t).min(len as usize);
                let side = &mut self.sides[dir.index()];
                side.body = Some(Body {
                    t,
                    len,
                    left: len,
                    keep: Vec::new(),
                    cap,
                    cut: false,
                    ts: side.hdr_ts,
                });
                if len == 0 {
                    self.finish_body(flow, dir, out);
                }
            }
        }
        (take, None)
    }

    /// Bytes of a message body worth keeping: what its entry shows, capped.
    fn cap(&self, dir: Direction, t: u8) -> usize {
        let max_body = self.max_body;
        match (Role::of(dir), t) {
            (Role::Client, 0) => MAX_STARTUP as usize,
            (Role::Client, b'Q') => max_body + 1,
            (Role::Client, b'P') => MAX_NAME + max_body + 2,
            (Role::Client, b'B') => 2 * MAX_NAME + max_body + OVERHEAD,
            (Role::Client, b'E' | b'D' | b'C') => MAX_NAME + 6,
            (Role::Client, b'F') => 4,
            (Role::Client, b'p') if self.sasl_pending => 64,
            (Role::Server, b'R') => 4,
            (Role::Server, b'S') => 2 * MAX_NAME,
            (Role::Server, b'K') => 4,
            (Role::Server, b'Z') => 1,
            (Role::Server, b'T' | b'E' | b'N') => self.max_head,
            (Role::Server, b'C') => MAX_TAG,
            (Role::Server, b'A') => 4 + MAX_NAME + max_body,
            (Role::Server, b'V') => 4 + max_body,
            (Role::Server, b'D') => match self.ops.front() {
                Some(op) if matches!(op.kind, OpKind::Query | OpKind::Execute) => {
                    let room = max_body.saturating_sub(op.resp.rows_bytes);
                    let rows = op.resp.cur.as_ref().map_or(0, |p| p.res.rows.len());
                    if room == 0 || rows >= MAX_ROWS {
                        0
                    } else {
                        room + OVERHEAD
                    }
                }
                _ => 0,
            },
            _ => 0,
        }
    }

    fn finish_body(&mut self, flow: &FlowInfo, dir: Direction, out: &mut Vec<Emit>) {
        let side = &mut self.sides[dir.index()];
        let Some(b) = side.body.take() else { return };
        side.synced = true;
        let flags = std::mem::take(&mut side.flags);
        let typed = u64::from(b.t != 0);
        let m = Msg {
            t: b.t,
            body: &b.keep,
            len: b.len,
            cut: b.cut,
            ts: b.ts,
            wire: b.len + 4 + typed,
            flags,
        };
        match (Role::of(dir), b.t) {
            (Role::Client, 0) => self.startup_message(flow, m, out),
            (Role::Client, _) => self.client_message(flow, m, out),
            (Role::Server, _) => self.server_message(flow, m, out),
        }
    }

    fn malformed(
        &mut self,
        dir: Direction,
        reason: &'static str,
        skipped: Vec<u8>,
        out: &mut Vec<Emit>,
    ) {
        let side = &mut self.sides[dir.index()];
        if side.synced {
            out.push(Emit::ParseError {
                protocol: "postgres",
                reason: reason.to_string(),
            });
        }
        add_flag(&mut side.flags, &format!("malformed:{reason}"));
        side.synced = false;
        side.typed = true;
        side.body = None;
        side.hdr_n = 0;
        side.resync = Some(Resync::with(skipped));
    }

    fn push_op(&mut self, flow: &FlowInfo, op: Op, out: &mut Vec<Emit>) {
        if self.ops.len() >= self.max_ops
            && let Some(old) = self.ops.pop_front()
        {
            out.push(Emit::Dropped {
                protocol: "postgres",
                what: "pending_request",
            });
            self.retire(flow, old, Retire::Unanswered, out);
        }
        self.ops.push_back(op);
    }

    /// An op for a client message: its own bytes, and for an op that makes an
    /// entry the bytes of the messages since the last one (its Parse and Bind).
    fn op(&mut self, kind: OpKind, m: Msg, body: PostgresRequest) -> Op {
        let mut flags = m.flags;
        if body.sql_truncated || body.parameters_truncated {
            add_flag(&mut flags, "truncated");
        }
        let wire = if kind.makes_entry() {
            std::mem::take(&mut self.req_carry) + m.wire
        } else {
            self.req_carry += m.wire;
            m.wire
        };
        Op {
            kind,
            req: Message {
                ts_ns: m.ts,
                wire_size: wire,
                flags,
                body,
            },
            resp: Draft::default(),
        }
    }

    /// The connection's startup op, made by its first untyped message.
    fn startup_op(&mut self, flow: &FlowInfo, m: &Msg, out: &mut Vec<Emit>) -> &mut Op {
        if !self.ops.iter().any(|o| o.kind == OpKind::Startup) {
            let op = Op {
                kind: OpKind::Startup,
                req: Message {
                    ts_ns: m.ts,
                    wire_size: 0,
                    flags: Vec::new(),
                    body: PostgresRequest {
                        kind: "startup".into(),
                        verb: "STARTUP".into(),
                        ..Default::default()
                    },
                },
                resp: Draft::default(),
            };
            self.push_op(flow, op, out);
        }
        let op = self
            .ops
            .iter_mut()
            .find(|o| o.kind == OpKind::Startup)
            .expect("startup op was just pushed");
        op.req.wire_size += m.wire;
        for f in &m.flags {
            add_flag(&mut op.req.flags, f);
        }
        op
    }

    fn startup_message(&mut self, flow: &FlowInfo, m: Msg, out: &mut Vec<Emit>) {
        let code = be32(m.body, 0).unwrap_or(0);
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                let op = self.startup_op(flow, &m, out);
                op.req.body.encryption = if code == SSL_REQUEST { "ssl" } else { "gss" }.into();
                self.awaiting_answer = true;
                self.enc_requested = true;
            }
            CANCEL_REQUEST => {
                let req = Message {
                    ts_ns: m.ts,
                    wire_size: m.wire,
                    flags: m.flags,
                    body: PostgresRequest {
                        kind: "cancel".into(),
                        verb: "CANCEL".into(),
                        cancel_pid: be32(m.body, 4).unwrap_or(0),
                        ..Default::default()
                    },
                };
                self.emit(flow, Some(req), None, &[], out);
                // A cancel is never answered: the server closes the connection.
                if let Some(Emit::Entry(e)) = out.last_mut() {
                    e.flags.retain(|f| f != "no_response");
                }
            }
            c if c >> 16 == 3 => {
                let mut r = Reader::new(m.body.get(4..).unwrap_or_default());
                let mut options = Vec::new();
                let (mut user, mut database, mut app) =
                    (String::new(), String::new(), String::new());
                while let Some(key) = r.cstr() {
                    if key.is_empty() {
                        break;
                    }
                    let value = r.cstr().unwrap_or_else(|| r.rest());
                    let (key, value) = (name(key), name(value));
                    match key.as_str() {
                        "user" => user = value,
                        "database" => database = value,
                        "application_name" => app = value,
                        _ if options.len() < MAX_REPORTS => {
                            options.push(Header { name: key, value })
                        }
                        _ => {}
                    }
                }
                let op = self.startup_op(flow, &m, out);
                let b = &mut op.req.body;
                b.user = user;
                b.database = database;
                b.application_name = app;
                b.options = options;
                b.protocol_version = format!("3.{}", c & 0xffff);
                self.sides[Direction::ToServer.index()].typed = true;
            }
            // Cut short by a loss or the end of the capture: nothing to tell.
            _ if m.cut => {}
            _ => {
                self.sides[Direction::ToServer.index()].synced = true;
                let rest = m.body.to_vec();
                self.malformed(Direction::ToServer, "unknown_startup_code", rest, out);
            }
        }
    }

    fn client_message(&mut self, flow: &FlowInfo, m: Msg, out: &mut Vec<Emit>) {
        let mut r = Reader::new(m.body);
        match m.t {
            b'Q' => {
                let raw = r.cstr();
                let (sql, capped) = text(raw.unwrap_or(m.body), self.max_body);
                let body = PostgresRequest {
                    kind: "simple".into(),
                    verb: verb(&sql),
                    sql,
                    sql_truncated: capped || raw.is_none(),
                    ..Default::default()
                };
                let op = self.op(OpKind::Query, m, body);
                self.push_op(flow, op, out);
            }
            b'P' => {
                let statement = name(r.cstr().unwrap_or_default());
                let raw = r.cstr();
                let (sql, capped) = text(raw.unwrap_or_else(|| r.rest()), self.max_body);
                let truncated = capped || raw.is_none();
                let body = PostgresRequest {
                    kind: "parse".into(),
                    verb: verb(&sql),
                    statement: statement.clone(),
                    ..Default::default()
                };
                self.statements
                    .insert(statement, Statement { sql, truncated });
                let op = self.op(OpKind::Parse, m, body);
                self.push_op(flow, op, out);
            }
            b'B' => {
                let portal = self.bind(m.body);
                let key = portal.0.clone();
                let body = PostgresRequest {
                    kind: "bind".into(),
                    statement: portal.1.statement.clone(),
                    portal: key.clone(),
                    ..Default::default()
                };
                self.portals.insert(key, portal.1);
                let op = self.op(OpKind::Bind, m, body);
                self.push_op(flow, op, out);
            }
            b'D' | b'C' => {
                let which = r.u8().unwrap_or(0);
                let target = name(r.cstr().unwrap_or_default());
                let mut body = PostgresRequest {
                    kind: if m.t == b'D' { "describe" } else { "close" }.into(),
                    ..Default::default()
                };
                if which == b'S' {
                    body.statement = target;
                } else {
                    body.portal = target;
                }
                if m.t == b'C' {
                    if which == b'S' {
                        self.statements.remove(&body.statement);
                    } else {
                        self.portals.remove(&body.portal);
                    }
                }
                let kind = if m.t == b'D' {
                    OpKind::Describe
                } else {
                    OpKind::Close
                };
                let op = self.op(kind, m, body);
                self.push_op(flow, op, out);
            }
            b'E' => {
                let key = name(r.cstr().unwrap_or_default());
                let max_rows = r.u32().unwrap_or(0);
                let p = self.portals.get(&key).cloned().unwrap_or_default();
                let sql = p.sql.unwrap_or_default();
                let body = PostgresRequest {
                    kind: "extended".into(),
                    verb: verb(&sql),
                    sql,
                    sql_truncated: p.sql_truncated,
                    statement: p.statement,
                    portal: key,
                    parameters: p.params,
                    parameter_count: p.param_count,
                    parameters_truncated: p.params_truncated,
                    max_rows,
                    ..Default::default()
                };
                let mut op = self.op(OpKind::Execute, m, body);
                op.resp.formats = p.result_formats;
                self.push_op(flow, op, out);
            }
            b'S' => {
                let op = self.op(
                    OpKind::Sync,
                    m,
                    PostgresRequest {
                        kind: "sync".into(),
                        verb: "SYNC".into(),
                        ..Default::default()
                    },
                );
                self.push_op(flow, op, out);
            }
            b'F' => {
                let body = PostgresRequest {
                    kind: "function_call".into(),
                    verb: "FUNCTION".into(),
                    function_oid: r.u32().unwrap_or(0),
                    ..Default::default()
                };
                let op = self.op(OpKind::Function, m, body);
                self.push_op(flow, op, out);
            }
            b'd' | b'c' | b'f' => {
                // COPY FROM STDIN: the data belongs to the COPY being run.
                let copy = self
                    .ops
                    .iter_mut()
                    .rev()
                    .find(|o| matches!(o.kind, OpKind::Query | OpKind::Execute));
                match copy {
                    Some(op) => {
                        op.req.wire_size += m.wire;
                        if m.t == b'd' {
                            op.req.body.copy_bytes += m.len;
                        }
                        for f in &m.flags {
                            add_flag(&mut op.req.flags, f);
                        }
                    }
                    None => self.req_carry += m.wire,
                }
            }
            b'p' => {
                let sasl = std::mem::take(&mut self.sasl_pending);
                let mechanism = r
                    .cstr()
                    .filter(|s| sasl && s.iter().all(u8::is_ascii_graphic));
                let mechanism = mechanism.map(name);
                if let Some(op) = self.ops.iter_mut().find(|o| o.kind == OpKind::Startup) {
                    op.req.wire_size += m.wire;
                    if let Some(mech) = mechanism {
                        op.resp.body.sasl_mechanism = mech;
                    }
                } else {
                    self.req_carry += m.wire;
                }
            }
            // Flush and Terminate expect no answer.
            _ => self.req_carry += m.wire,
        }
    }

    /// A Bind: its portal's name and what the portal holds.
    fn bind(&self, body: &[u8]) -> (String, Portal) {
        let mut r = Reader::new(body);
        let key = name(r.cstr().unwrap_or_default());
        let statement = name(r.cstr().unwrap_or_default());
        let stmt = self.statements.get(&statement);
        let mut p = Portal {
            sql: stmt.map(|s| s.sql.clone()),
            sql_truncated: stmt.is_some_and(|s| s.truncated),
            statement,
            ..Default::default()
        };
        let nf = usize::from(r.u16().unwrap_or(0));
        let mut formats = Vec::new();
        for _ in 0..nf {
            let Some(f) = r.u16() else { break };
            if formats.len() <= MAX_PARAMS {
                formats.push(f);
            }
        }
        let Some(np) = r.u16() else {
            p.params_truncated = true;
            return (key, p);
        };
        p.param_count = u64::from(np);
        let mut used = 0;
        for i in 0..usize::from(np) {
            if i >= MAX_PARAMS || used >= self.max_body {
                p.params_truncated = true;
                return (key, p);
            }
            let Some(len) = r.u32() else {
                p.params_truncated = true;
                return (key, p);
            };
            if len as i32 == -1 {
                p.params.push(PostgresValue { text: None });
                used += VALUE_COST;
                continue;
            }
            let (bytes, complete) = r.take(len as usize);
            let room = self.max_body.saturating_sub(used + VALUE_COST);
            let (t, fits) = render(bytes, format_of(&formats, i) == 1, !complete, room);
            used += t.len() + VALUE_COST;
            p.params.push(PostgresValue { text: Some(t) });
            if !complete || !fits {
                p.params_truncated = true;
                return (key, p);
            }
        }
        let nr = usize::from(r.u16().unwrap_or(0));
        for _ in 0..nr.min(MAX_COLUMNS) {
            let Some(f) = r.u16() else { break };
            p.result_formats.push(f);
        }
        (key, p)
    }

    /// Makes sure the front op is one of `kinds`: ops before the first such
    /// op of the batch got no answer and leave the queue. False when no op
    /// of the batch is such an op (the message answers nothing we saw).
    fn answer(&mut self, flow: &FlowInfo, kinds: &[OpKind], out: &mut Vec<Emit>) -> bool {
        let mut found = None;
        for (i, op) in self.ops.iter().enumerate() {
            if kinds.contains(&op.kind) {
                found = Some(i);
                break;
            }
            if op.kind.ends_batch() {
                break;
            }
        }
        let Some(i) = found else { return false };
        let how = if self.skipping {
            Retire::Skipped
        } else {
            Retire::Unanswered
        };
        for _ in 0..i {
            if let Some(op) = self.ops.pop_front() {
                self.retire(flow, op, how, out);
            }
        }
        true
    }

    /// The front op, touched by a server message (its time, bytes and flags).
    fn front(&mut self, m: &mut Msg) -> Option<&mut Op> {
        let op = self.ops.front_mut()?;
        op.resp.touch(m.ts, m.wire, std::mem::take(&mut m.flags));
        if m.cut
            && !matches!(
                m.t,
                b'D' | b'd' | b'G' | b'H' | b'W' | b't' | b'R' | b'v' | b'K'
            )
        {
            op.resp.cut = true;
        }
        Some(op)
    }

    fn stray(&mut self, m: &Msg) {
        self.resp_carry += m.wire;
    }

    fn server_message(&mut self, flow: &FlowInfo, mut m: Msg, out: &mut Vec<Emit>) {
        let mut r = Reader::new(m.body);
        match m.t {
            b'R' => {
                if !self.answer(flow, &[OpKind::Startup], out) {
                    return self.stray(&m);
                }
                let code = r.u32().unwrap_or(u32::MAX);
                if code == 10 {
                    self.sasl_pending = true;
                }
                let Some(op) = self.front(&mut m) else { return };
                let method = match code {
                    2 => "kerberos_v5",
                    3 => "cleartext",
                    5 => "md5",
                    7 => "gss",
                    9 => "sspi",
                    10 => "sasl",
                    _ => "",
                };
                let auth = &mut op.resp.body.auth_method;
                if auth.is_empty() {
                    if !method.is_empty() {
                        *auth = method.into();
                    } else if code == 0 {
                        *auth = "none".into();
                    }
                }
            }
            b'K' => {
                if !self.answer(flow, &[OpKind::Startup], out) {
                    return self.stray(&m);
                }
                let pid = r.u32().unwrap_or(0);
                if let Some(op) = self.front(&mut m) {
                    op.resp.body.backend_pid = pid;
                }
            }
            b'v' => {
                if !self.answer(flow, &[OpKind::Startup], out) {
                    return self.stray(&m);
                }
                self.front(&mut m);
            }
            b'S' => {
                let key = name(r.cstr().unwrap_or_default());
                let value = name(r.cstr().unwrap_or_default());
                match self.front(&mut m) {
                    Some(op) => {
                        if op.resp.body.parameters.len() < MAX_REPORTS {
                            op.resp.body.parameters.push(Header { name: key, value });
                        }
                    }
                    None => self.stray(&m),
                }
            }
            b'N' => match self.front(&mut m) {
                Some(op) => {
                    if op.resp.body.notices.len() < MAX_NOTICES {
                        op.resp.body.notices.push(error_fields(m.body));
                    }
                }
                None => self.stray(&m),
            },
            b'A' => self.notification(flow, &m, out),
            b'Z' => self.ready(flow, m, out),
            b'E' => self.error(flow, m, out),
            b'1' | b'2' | b'3' | b'n' => {
                let kind = match m.t {
                    b'1' => OpKind::Parse,
                    b'2' => OpKind::Bind,
                    b'3' => OpKind::Close,
                    _ => OpKind::Describe,
                };
                if !self.answer(flow, &[kind], out) {
                    return self.stray(&m);
                }
                self.front(&mut m);
                if let Some(op) = self.ops.pop_front() {
                    self.retire(flow, op, Retire::Answered, out);
                }
            }
            b't' => {
                if !self.answer(flow, &[OpKind::Describe], out) {
                    return self.stray(&m);
                }
                self.front(&mut m);
            }
            b'T' => self.row_description(flow, m, out),
            b'D' | b'C' | b'I' | b's' | b'G' | b'H' | b'W' | b'd' | b'c' => {
                if !self.answer(flow, &[OpKind::Query, OpKind::Execute], out) {
                    return self.stray(&m);
                }
                let max_body = self.max_body;
                let Some(op) = self.front(&mut m) else { return };
                let kind = op.kind;
                let d = &mut op.resp;
                match m.t {
                    b'D' => d.data_row(m.body, max_body),
                    b'G' | b'H' | b'W' => {
                        d.result().res.copy = match m.t {
                            b'G' => "in",
                            b'H' => "out",
                            _ => "both",
                        }
                        .into();
                    }
                    b'd' => d.result().res.copy_bytes += m.len,
                    b'c' => {}
                    _ => {
                        let res = &mut d.result().res;
                        match m.t {
                            b'C' => res.command_tag = text(r.cstr().unwrap_or(m.body), MAX_TAG).0,
                            b'I' => res.empty_query = true,
                            _ => res.suspended = true,
                        }
                        d.close_result();
                        if kind == OpKind::Execute
                            && let Some(op) = self.ops.pop_front()
                        {
                            self.retire(flow, op, Retire::Answered, out);
                        }
                    }
                }
            }
            b'V' => {
                if !self.answer(flow, &[OpKind::Function], out) {
                    return self.stray(&m);
                }
                let value = match r.u32() {
                    Some(len) if len as i32 != -1 => {
                        let (bytes, complete) = r.take(len as usize);
                        Some(render(bytes, true, !complete, self.max_body).0)
                    }
                    _ => None,
                };
                if let Some(op) = self.front(&mut m) {
                    op.resp.body.function_result = Some(PostgresValue { text: value });
                }
            }
            _ => self.stray(&m),
        }
    }

    /// The one-byte answer to an SSLRequest or GSSENCRequest.
    fn encryption_answer(&mut self, flow: &FlowInfo, ts: u64, answer: u8, out: &mut Vec<Emit>) {
        let Some(i) = self.ops.iter().position(|o| o.kind == OpKind::Startup) else {
            if answer != b'N' {
                self.encrypted = true;
            }
            return;
        };
        let op = &mut self.ops[i];
        op.resp.touch(ts, 1, Vec::new());
        if answer == b'N' {
            op.resp.body.encryption = "refused".into();
            return;
        }
        op.resp.body.encryption = "accepted".into();
        self.encrypted = true;
        let flag = if answer == b'G' { "gssenc" } else { "tls" };
        if let Some(op) = self.ops.remove(i) {
            let resp = Some(op.resp);
            self.emit(flow, Some(op.req), resp, &[flag], out);
        }
    }

    fn notification(&mut self, flow: &FlowInfo, m: &Msg, out: &mut Vec<Emit>) {
        let mut r = Reader::new(m.body);
        let pid = r.u32().unwrap_or(0);
        let channel = name(r.cstr().unwrap_or_default());
        let payload = text(r.cstr().unwrap_or_else(|| r.rest()), self.max_body).0;
        let req = Message {
            ts_ns: m.ts,
            wire_size: 0,
            flags: Vec::new(),
            body: PostgresRequest {
                kind: "notification".into(),
                verb: "NOTIFICATION".into(),
                channel,
                ..Default::default()
            },
        };
        let mut d = Draft::default();
        d.touch(m.ts, m.wire, m.flags.clone());
        d.body.notify_pid = pid;
        d.body.payload = payload;
        self.emit(flow, Some(req), Some(d), &[], out);
        if let Some(Emit::Entry(e)) = out.last_mut() {
            // Nothing was asked, so nothing took time.
            e.elapsed_ns = None;
        }
    }

    fn row_description(&mut self, flow: &FlowInfo, mut m: Msg, out: &mut Vec<Emit>) {
        if !self.answer(flow, &[OpKind::Describe, OpKind::Query], out) {
            return self.stray(&m);
        }
        let mut r = Reader::new(m.body);
        let n = usize::from(r.u16().unwrap_or(0));
        let mut columns = Vec::new();
        let mut formats = Vec::new();
        for _ in 0..n.min(MAX_COLUMNS) {
            let Some(c) = r.cstr() else { break };
            let (_, whole) = r.take(16);
            let Some(f) = r.u16().filter(|_| whole) else {
                break;
            };
            columns.push(name(c));
            formats.push(f);
        }
        let Some(op) = self.front(&mut m) else { return };
        if columns.len() < n {
            op.resp.cut = true;
        }
        if op.kind == OpKind::Query {
            op.resp.close_result();
            op.resp.cur = Some(Partial {
                res: PostgresResult {
                    columns,
                    ..Default::default()
                },
                data_rows: 0,
                formats,
            });
            return;
        }
        // A Describe: its columns are those of the Execute after it in the batch.
        if let Some(op) = self.ops.pop_front() {
            self.retire(flow, op, Retire::Answered, out);
        }
        if let Some(exec) = self
            .ops
            .iter_mut()
            .take_while(|o| !o.kind.ends_batch())
            .find(|o| o.kind == OpKind::Execute)
        {
            exec.resp.described = Some((columns, formats));
        }
    }

    fn ready(&mut self, flow: &FlowInfo, mut m: Msg, out: &mut Vec<Emit>) {
        let status = match m.body.first() {
            Some(b'I') => "idle",
            Some(b'T') => "transaction",
            Some(b'E') => "failed",
            _ => "",
        };
        let answered = self.answer(
            flow,
            &[
                OpKind::Sync,
                OpKind::Query,
                OpKind::Function,
                OpKind::Startup,
            ],
            out,
        );
        self.skipping = false;
        if !answered {
            return self.stray(&m);
        }
        if self.ops.front().is_some_and(|o| o.kind == OpKind::Sync) {
            self.stray(&m);
            if let Some(op) = self.ops.pop_front() {
                self.retire(flow, op, Retire::Answered, out);
            }
            return;
        }
        if let Some(op) = self.front(&mut m) {
            op.resp.body.transaction_status = status.into();
        }
        if let Some(op) = self.ops.pop_front() {
            self.retire(flow, op, Retire::Answered, out);
        }
    }

    fn error(&mut self, flow: &FlowInfo, mut m: Msg, out: &mut Vec<Emit>) {
        let err = error_fields(m.body);
        let Some(kind) = self.ops.front().map(|o| o.kind) else {
            // Nobody asked (a FATAL as the server shuts down).
            let mut d = Draft::default();
            d.touch(m.ts, m.wire, std::mem::take(&mut m.flags));
            d.body.error = Some(err);
            return self.emit(flow, None, Some(d), &[], out);
        };
        match kind {
            OpKind::Startup | OpKind::Query | OpKind::Function => {
                if let Some(op) = self.front(&mut m) {
                    op.resp.close_result();
                    op.resp.body.error = Some(err);
                }
                // Authentication failures are FATAL: the server hangs up.
                if kind == OpKind::Startup
                    && let Some(op) = self.ops.pop_front()
                {
                    self.retire(flow, op, Retire::Answered, out);
                }
            }
            OpKind::Sync => {
                // The implicit COMMIT at Sync failed: an entry of its own.
                let Some(op) = self.ops.front() else { return };
                let req = Message {
                    ts_ns: op.req.ts_ns,
                    wire_size: op.req.wire_size,
                    flags: Vec::new(),
                    body: op.req.body.clone(),
                };
                let mut d = Draft::default();
                d.touch(m.ts, m.wire, std::mem::take(&mut m.flags));
                d.body.error = Some(err);
                self.emit(flow, Some(req), Some(d), &[], out);
            }
            _ => {
                self.skipping = true;
                // The error stops the batch: it belongs to the Execute it
                // prevented (or the one that failed), else to the message itself.
                let exec = self
                    .ops
                    .iter()
                    .take_while(|o| !o.kind.ends_batch())
                    .position(|o| o.kind == OpKind::Execute);
                match exec {
                    Some(i) => {
                        for _ in 0..i {
                            if let Some(op) = self.ops.pop_front() {
                                self.retire(flow, op, Retire::Answered, out);
                            }
                        }
                    }
                    None => {
                        let Some(op) = self.ops.front_mut() else {
                            return;
                        };
                        let b = &mut op.req.body;
                        if let Some(s) = self.statements.get(&b.statement) {
                            b.sql = s.sql.clone();
                            b.sql_truncated = s.truncated;
                            b.verb = verb(&b.sql);
                        }
                        op.kind = OpKind::Execute;
                    }
                }
                if let Some(op) = self.front(&mut m) {
                    op.resp.close_result();
                    op.resp.body.error = Some(err);
                }
                if let Some(op) = self.ops.pop_front() {
                    self.retire(flow, op, Retire::Answered, out);
                }
            }
        }
    }

    fn retire(&mut self, flow: &FlowInfo, mut op: Op, how: Retire, out: &mut Vec<Emit>) {
        if !op.kind.makes_entry() {
            self.resp_carry += op.resp.wire;
            return;
        }
        let mut extra = Vec::new();
        match how {
            Retire::Skipped => extra.push("skipped"),
            Retire::Closed if op.resp.started => extra.push("incomplete"),
            _ => {}
        }
        let resp = op.resp.started.then(|| {
            op.resp.wire += std::mem::take(&mut self.resp_carry);
            op.resp
        });
        self.emit(flow, Some(op.req), resp, &extra, out);
        if how == Retire::Skipped
            && let Some(Emit::Entry(e)) = out.last_mut()
        {
            // Not waiting for anything: the server decided not to run it.
            e.flags.retain(|f| f != "no_response");
        }
    }

    fn emit(
        &mut self,
        flow: &FlowInfo,
        req: Option<Message<PostgresRequest>>,
        resp: Option<Draft>,
        extra: &[&str],
        out: &mut Vec<Emit>,
    ) {
        let req = req.map(|m| Message {
            ts_ns: m.ts_ns,
            wire_size: m.wire_size,
            flags: m.flags,
            body: Request {
                kind: Some(request::Kind::Postgres(Box::new(m.body))),
            },
        });
        let resp = resp.map(|mut d| {
            d.close_result();
            if d.cut {
                add_flag(&mut d.flags, "truncated");
            }
            Message {
                ts_ns: d.ts,
                wire_size: d.wire,
                flags: d.flags,
                body: Response {
                    kind: Some(response::Kind::Postgres(Box::new(d.body))),
                },
            }
        });
        let mut e = pair::entry(flow, self.made, Protocol::Postgres, req, resp);
        self.made += 1;
        for f in extra {
            add_flag(&mut e.flags, f);
        }
        out.push(Emit::Entry(Box::new(e)));
    }
}

impl Dissector for Postgres {
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
        if self.encrypted {
            return;
        }
        let side = &mut self.sides[dir.index()];
        if side.resync.is_some() {
            // What the window held no longer continues into what comes next.
            side.resync = Some(Resync::default());
            return;
        }
        add_flag(&mut side.flags, "gap");
        if let Some(b) = &mut side.body
            && len <= b.left
        {
            // Inside one message: its framing holds; what it lost is not kept.
            b.left -= len;
            b.cut = true;
            b.cap = b.keep.len();
            if b.left == 0 {
                self.finish_body(flow, dir, out);
            }
            return;
        }
        if let Some(b) = &mut side.body {
            b.cut = true;
            self.finish_body(flow, dir, out);
        }
        if dir == Direction::ToClient {
            self.awaiting_answer = false;
            // The answer under way most likely ended in the loss: what follows
            // answers the next op.
            if self
                .ops
                .front()
                .is_some_and(|o| o.kind.makes_entry() && o.resp.started)
                && let Some(mut op) = self.ops.pop_front()
            {
                add_flag(&mut op.resp.flags, "gap");
                self.retire(flow, op, Retire::Closed, out);
            }
        }
        let side = &mut self.sides[dir.index()];
        side.hdr_n = 0;
        side.synced = false;
        side.typed = true;
        side.flags = vec!["gap".to_string()];
        side.resync = Some(Resync::default());
    }

    fn on_close(&mut self, flow: &FlowInfo, _end: &FlowEnd, out: &mut Vec<Emit>) {
        if !self.encrypted {
            for dir in [Direction::ToServer, Direction::ToClient] {
                let side = &mut self.sides[dir.index()];
                if let Some(b) = &mut side.body {
                    b.cut = true;
                    add_flag(&mut side.flags, "incomplete");
                    self.finish_body(flow, dir, out);
                }
            }
        }
        while let Some(op) = self.ops.pop_front() {
            self.retire(flow, op, Retire::Closed, out);
        }
    }
}

#[cfg(test)]
mod tests;
