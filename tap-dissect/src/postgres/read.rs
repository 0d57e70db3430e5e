//! Reading message bodies: a bounded reader, text and values as entries
//! show them, SQL verbs, command tags, error fields.

use super::*;

/// A bounded reader over a message body (or the part of it that was kept).
pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
    pub(super) i: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(b: &'a [u8]) -> Self {
        Reader { b, i: 0 }
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.i)?;
        self.i += 1;
        Some(v)
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        let v = be16(self.b, self.i)?;
        self.i += 2;
        Some(v)
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        let v = be32(self.b, self.i)?;
        self.i += 4;
        Some(v)
    }

    /// A NUL-terminated string; `None` when the kept bytes end before its NUL.
    pub(super) fn cstr(&mut self) -> Option<&'a [u8]> {
        let (s, next) = cstr_within(self.b, self.i, usize::MAX)?;
        self.i = next;
        Some(s)
    }

    /// Up to `n` bytes, and whether all `n` were there.
    pub(super) fn take(&mut self, n: usize) -> (&'a [u8], bool) {
        let rest = &self.b[self.i.min(self.b.len())..];
        let k = n.min(rest.len());
        self.i += k;
        (&rest[..k], k == n)
    }

    pub(super) fn rest(&self) -> &'a [u8] {
        &self.b[self.i.min(self.b.len())..]
    }
}

/// Text as a `String`: at most `max` bytes (cut at a character boundary),
/// invalid UTF-8 replaced; and whether it was cut.
pub(super) fn text(b: &[u8], max: usize) -> (String, bool) {
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
pub(super) fn name(b: &[u8]) -> String {
    text(b, MAX_NAME).0
}

/// A value as an entry shows it: text when it is in text format and UTF-8
/// (a value cut short may end inside a character), else `\x` and hex, as
/// PostgreSQL writes bytea; at most `room` bytes. Also whether it all fitted.
pub(super) fn render(b: &[u8], binary: bool, partial: bool, room: usize) -> (String, bool) {
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
pub(super) fn format_of(formats: &[u16], i: usize) -> u16 {
    match formats {
        [one] => *one,
        _ => formats.get(i).copied().unwrap_or(0),
    }
}

/// The SQL's first keyword, upper-cased, after blanks, comments and opening parentheses.
pub(super) fn verb(sql: &str) -> String {
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
pub(super) fn tag_rows(tag: &str) -> Option<u64> {
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
pub(super) fn error_fields(b: &[u8]) -> PostgresError {
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

pub(super) fn add_flag(flags: &mut Vec<String>, flag: &str) {
    if !flags.iter().any(|f| f == flag) {
        flags.push(flag.to_string());
    }
}
