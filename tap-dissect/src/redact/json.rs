//! JSON values of sensitive keys, at any depth, in bodies that may be cut
//! short (a body cap, a lost packet) or not quite JSON. A tokenizer, not a
//! parser: any string followed by `:` is a key, and a sensitive key's value
//! — a string, number, literal, or a whole object or array — is replaced by
//! `"[REDACTED]"`; a value cut by the end of the data is redacted to the
//! end. Brackets only name the path (`a.b[2].password`), so broken nesting
//! cannot hide a key. No recursion: nesting costs one small frame per
//! level, and levels past [`MAX_PATH_DEPTH`] are counted, not stored.
//! Written by hand: JSON libraries give neither byte spans nor a way
//! through truncated input.

use super::{Cx, REDACTED};

/// Levels of nesting named in a path; deeper ones are still scanned.
const MAX_PATH_DEPTH: usize = 32;
/// Bytes of a key kept in a path.
const MAX_PATH_KEY: usize = 64;

enum Frame {
    Object(Option<(usize, usize)>),
    Array(u32),
}

/// What to put in place of a byte range.
enum Edit {
    /// A sensitive key's whole value: `"[REDACTED]"`.
    Value,
    /// A pattern's match inside a string: `[REDACTED]`.
    Match,
}

/// Whether `data` looks like JSON: an object or an array first.
pub(super) fn looks_like(data: &[u8]) -> bool {
    matches!(
        data.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// Redacts `data` as JSON; `path` names the field it is in. Returns the
/// new bytes when anything was redacted.
pub(super) fn redact(cx: &mut Cx<'_>, path: &str, data: &[u8]) -> Option<Vec<u8>> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut deeper = 0usize;
    let mut edits: Vec<(usize, usize, Edit)> = Vec::new();
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'{' | b'[' => {
                if stack.len() < MAX_PATH_DEPTH {
                    stack.push(if data[i] == b'{' {
                        Frame::Object(None)
                    } else {
                        Frame::Array(0)
                    });
                } else {
                    deeper += 1;
                }
                i += 1;
            }
            b'}' | b']' => {
                if deeper > 0 {
                    deeper -= 1;
                } else {
                    stack.pop();
                }
                i += 1;
            }
            b',' => {
                if deeper == 0
                    && let Some(Frame::Array(n)) = stack.last_mut()
                {
                    *n = n.saturating_add(1);
                }
                i += 1;
            }
            b'"' => {
                let (inner, next) = string_at(data, i);
                let after = skip_ws(data, next);
                if data.get(after) == Some(&b':') {
                    if deeper == 0
                        && let Some(Frame::Object(key)) = stack.last_mut()
                    {
                        *key = Some(inner);
                    }
                    let value = skip_ws(data, after + 1);
                    if cx.sensitive(&data[inner.0..inner.1]) {
                        let end = value_end(data, value);
                        let field = name(path, &stack, deeper, data, Some(inner));
                        // The value's wire bytes, without a string's quotes.
                        let (vs, ve) = if data.get(value) == Some(&b'"') {
                            (value + 1, string_at(data, value).0.1)
                        } else {
                            (value, end)
                        };
                        // The key with its quotes, and what separates it
                        // from the value's first byte: a short value's context.
                        let key_end = (inner.1 + 1).min(data.len());
                        let key = &data[inner.0 - 1..key_end];
                        let sep = &data[key_end..vs.max(key_end)];
                        cx.needle(key, sep, &data[vs.min(ve)..ve]);
                        cx.path(field);
                        // Data that ends right after the key has nothing to hide.
                        if value < data.len() {
                            edits.push((value, end, Edit::Value));
                        }
                        i = end;
                    } else {
                        i = value;
                    }
                } else {
                    if cx.has_patterns() && inner.1 > inner.0 {
                        let before = edits.len();
                        for p in &cx.r.patterns {
                            for m in p.find_iter(&data[inner.0..inner.1]) {
                                if !m.is_empty() {
                                    edits.push((
                                        inner.0 + m.start(),
                                        inner.0 + m.end(),
                                        Edit::Match,
                                    ));
                                }
                            }
                        }
                        if edits.len() > before {
                            let needles: Vec<Vec<u8>> = edits[before..]
                                .iter()
                                .map(|(s, e, _)| data[*s..*e].to_vec())
                                .collect();
                            for n in needles {
                                cx.needle(&[], &[], &n);
                            }
                            let field = name(path, &stack, deeper, data, None);
                            cx.path(field);
                        }
                    }
                    i = next;
                }
            }
            _ => i += 1,
        }
    }
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|(s, e, _)| (*s, *e));
    let mut out = Vec::with_capacity(data.len());
    let mut at = 0;
    for (s, e, edit) in edits {
        if s < at {
            continue;
        }
        out.extend_from_slice(&data[at..s]);
        match edit {
            Edit::Value => {
                out.push(b'"');
                out.extend_from_slice(REDACTED.as_bytes());
                out.push(b'"');
            }
            Edit::Match => out.extend_from_slice(REDACTED.as_bytes()),
        }
        at = e;
    }
    out.extend_from_slice(&data[at..]);
    Some(out)
}

/// The string starting at the quote at `at`: its contents' range and the
/// index after its closing quote (the data's end when it has none).
fn string_at(data: &[u8], at: usize) -> ((usize, usize), usize) {
    let start = at + 1;
    let mut i = start;
    while i < data.len() {
        match memchr::memchr2(b'"', b'\\', &data[i..]) {
            Some(k) if data[i + k] == b'"' => return ((start, i + k), i + k + 1),
            Some(k) => i += k + 2,
            None => break,
        }
    }
    let end = data.len();
    ((start.min(end), end), end)
}

fn skip_ws(data: &[u8], mut i: usize) -> usize {
    while i < data.len() && data[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Where the value starting at `at` ends: a string's closing quote, an
/// object's or array's matching bracket, a scalar's delimiter, or the end
/// of the data.
fn value_end(data: &[u8], at: usize) -> usize {
    match data.get(at) {
        None => data.len(),
        Some(b'"') => string_at(data, at).1,
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut i = at;
            while i < data.len() {
                match data[i] {
                    b'"' => {
                        i = string_at(data, i).1;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            data.len()
        }
        Some(_) => {
            let mut i = at;
            while i < data.len()
                && !matches!(data[i], b',' | b'}' | b']')
                && !data[i].is_ascii_whitespace()
            {
                i += 1;
            }
            i
        }
    }
}

/// The path of the field at the top of `stack` (`key` when a key was just
/// read): `path.a.b[2].password`.
fn name(
    path: &str,
    stack: &[Frame],
    deeper: usize,
    data: &[u8],
    key: Option<(usize, usize)>,
) -> String {
    let mut out = String::from(path);
    let last = stack.len().saturating_sub(1);
    for (n, frame) in stack.iter().enumerate() {
        match frame {
            Frame::Array(i) => {
                out.push('[');
                out.push_str(itoa::Buffer::new().format(*i));
                out.push(']');
            }
            Frame::Object(k) => {
                let k = if n == last && deeper == 0 {
                    key.or(*k)
                } else {
                    *k
                };
                if let Some((s, e)) = k {
                    out.push('.');
                    let e = e.min(s + MAX_PATH_KEY);
                    out.push_str(&String::from_utf8_lossy(&data[s..e]));
                }
            }
        }
    }
    if deeper > 0 {
        out.push_str(".…");
    }
    out
}
