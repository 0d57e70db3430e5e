//! Claiming a stream as PostgreSQL: the shapes of the startup packet and of
//! typed messages, checked over bounded prefixes (also what
//! resynchronisation looks for).

use super::*;

pub(super) const CLIENT_TYPES: &[u8] = b"QPBEDCSHXFdcfp";
pub(super) const SERVER_TYPES: &[u8] = b"RSKZTDCEN123nIstGHWdcAVv";

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

    pub(super) fn types(self) -> &'static [u8] {
        match self {
            Role::Client => CLIENT_TYPES,
            Role::Server => SERVER_TYPES,
        }
    }
}

pub(super) fn be16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

pub(super) fn be32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// The body length of messages whose length is fixed.
pub(super) fn fixed_len(role: Role, t: u8) -> Option<u64> {
    match (role, t) {
        (Role::Client, b'S' | b'H' | b'X' | b'c') => Some(0),
        (Role::Server, b'1' | b'2' | b'3' | b'n' | b'I' | b's' | b'c') => Some(0),
        (Role::Server, b'Z') => Some(1),
        _ => None,
    }
}

/// A typed message's header: its body length, or why it is malformed.
pub(super) fn check_header(role: Role, t: u8, len: u32) -> Result<u64, &'static str> {
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
pub(super) fn cstr_within(b: &[u8], i: usize, max: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(i..)?;
    let n = rest.iter().take(max).position(|&c| c == 0)?;
    Some((&rest[..n], i + n + 1))
}

pub(super) fn name_like(b: &[u8]) -> bool {
    b.iter().all(|&c| c >= 0x20 && c != 0x7f)
}

/// The first bytes look like text (SQL, a tag, a message).
pub(super) fn text_start(b: &[u8]) -> bool {
    b.iter()
        .take(64)
        .all(|&c| c >= 0x20 || matches!(c, b'\t' | b'\r' | b'\n'))
}

/// A DataRow's values fit its body (the first 64 are walked).
pub(super) fn data_row_ok(b: &[u8]) -> bool {
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
pub(super) fn body_ok(role: Role, t: u8, b: &[u8]) -> bool {
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
pub(super) fn plausible(role: Role, b: &[u8], need: usize, end_ok: bool) -> Claim {
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
pub(super) fn startup_claim(b: &[u8]) -> Claim {
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
pub(super) fn params_claim(b: &[u8], complete: bool) -> Claim {
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
