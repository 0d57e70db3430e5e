//! Keys and values in text forms: headers (with cookies and credentials'
//! schemes), `key=value&…` pairs (query strings, form bodies) and GraphQL
//! arguments in a query's text.

use super::{Cx, REDACTED, Side};
use proto::v1::Header;

/// The value of a header whose name is sensitive, or a cookie's: the
/// scheme of a credential stays visible (`Bearer [REDACTED]`).
fn credential_scheme(value: &str) -> Option<usize> {
    let (scheme, rest) = value.split_once(' ')?;
    (!rest.trim().is_empty()
        && (1..=16).contains(&scheme.len())
        && scheme.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-'))
    .then_some(scheme.len() + 1)
}

/// A header list: sensitive names' values, each cookie's value, and the
/// user's patterns over the other values. `field` names the list
/// (`headers`, `trailers`, `metadata`).
pub(super) fn headers(cx: &mut Cx<'_>, side: Side, field: &str, headers: &mut [Header]) {
    for h in headers {
        if let Some(original) = header(cx, side, field, h)
            && cx.hpack
        {
            cx.hpack_value(&original);
        }
    }
}

/// Redacts one header; returns its value as it was when it changed (an
/// HTTP/2 entry's blanking looks for it Huffman-coded too). Nothing is
/// allocated for a header left alone, the common case.
fn header(cx: &mut Cx<'_>, side: Side, field: &str, h: &mut Header) -> Option<String> {
    let path = |name: &str| format!("{}.{field}.{}", side.name(), name.to_ascii_lowercase());
    if h.name.eq_ignore_ascii_case("cookie") || h.name.eq_ignore_ascii_case("set-cookie") {
        let original = h.value.clone();
        let set = h.name.len() == "set-cookie".len();
        cookies(cx, side, field, set, h);
        (original != h.value).then_some(original)
    } else if cx.sensitive(h.name.as_bytes()) {
        if h.value == REDACTED {
            return None;
        }
        let keep = credential_scheme(&h.value).unwrap_or(0);
        let original = h.value.clone();
        cx.needle(
            format!("{}:", h.name).as_bytes(),
            b" ",
            &original.as_bytes()[keep..],
        );
        h.value.truncate(keep);
        h.value.push_str(REDACTED);
        cx.path(path(&h.name));
        Some(original)
    } else if cx.has_patterns() {
        let original = h.value.clone();
        cx.text(|| path(&h.name), &mut h.value);
        (original != h.value).then_some(original)
    } else {
        None
    }
}

/// `Cookie: a=1; b=2` (every value) and `Set-Cookie: a=1; Path=/` (the
/// cookie's value; its attributes stay).
fn cookies(cx: &mut Cx<'_>, side: Side, field: &str, set: bool, h: &mut Header) {
    let lower = if set { "set-cookie" } else { "cookie" };
    let mut out = String::with_capacity(h.value.len());
    let mut changed = false;
    for (n, part) in h.value.split(';').enumerate() {
        if n > 0 {
            out.push(';');
        }
        if set && n > 0 {
            out.push_str(part);
            continue;
        }
        match part.split_once('=') {
            Some((name, value)) if !value.is_empty() && value != REDACTED => {
                let name_t = name.trim();
                cx.needle(format!("{name_t}=").as_bytes(), b"", value.as_bytes());
                cx.path(format!("{}.{field}.{lower}.{name_t}", side.name()));
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
                changed = true;
            }
            _ => out.push_str(part),
        }
    }
    if changed {
        h.value = out;
    }
}

/// `key=value&…` (a query string or a form body): sensitive keys' values,
/// and values a pattern matches (after percent-decoding), become
/// `[REDACTED]`. Returns the new text when anything changed.
pub(super) fn pairs(cx: &mut Cx<'_>, path: &str, data: &[u8]) -> Option<Vec<u8>> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    for part in data.split(|b| *b == b'&') {
        let start = at;
        at += part.len() + 1;
        let Some(eq) = part.iter().position(|b| *b == b'=') else {
            continue;
        };
        let (raw_key, value) = (&part[..eq], &part[eq + 1..]);
        if value.is_empty() || value == REDACTED.as_bytes() {
            continue;
        }
        let key = decode(raw_key);
        let hit = cx.sensitive(key.as_bytes())
            || (cx.has_patterns() && {
                let decoded = decode(value);
                cx.r.patterns.iter().any(|p| p.is_match(decoded.as_bytes()))
            });
        if hit {
            cx.needle(raw_key, b"=", value);
            cx.path(format!("{path}.{key}"));
            spans.push((start + eq + 1, start + part.len()));
        }
    }
    (!spans.is_empty()).then(|| splice(data, &spans))
}

/// A percent-encoded form key or value, decoded.
fn decode(raw: &[u8]) -> String {
    form_urlencoded::parse(raw)
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default()
}

/// GraphQL arguments written into the query (`login(password: "x")`): a
/// sensitive name's literal — a string or a scalar — becomes `[REDACTED]`
/// (a string keeps its quotes). Variables are JSON and go through
/// [`super::json`]. Returns the new query when anything changed.
pub(super) fn graphql_arguments(cx: &mut Cx<'_>, path: &str, query: &[u8]) -> Option<Vec<u8>> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < query.len() {
        let b = query[i];
        if b == b'"' {
            // Skip string literals: what they hold is not a name.
            i += 1;
            while i < query.len() && query[i] != b'"' {
                i += if query[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if b == b'#' {
            while i < query.len() && query[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if !ident(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < query.len() && ident(query[i]) {
            i += 1;
        }
        let name = &query[start..i];
        let mut j = i;
        while j < query.len() && query[j].is_ascii_whitespace() {
            j += 1;
        }
        if query.get(j) != Some(&b':') || !cx.sensitive(name) {
            continue;
        }
        j += 1;
        while j < query.len() && query[j].is_ascii_whitespace() {
            j += 1;
        }
        let quoted = query.get(j) == Some(&b'"');
        let (vs, ve) = if quoted {
            let mut k = j + 1;
            while k < query.len() && query[k] != b'"' {
                k += if query[k] == b'\\' { 2 } else { 1 };
            }
            (j + 1, k.min(query.len()))
        } else {
            let mut k = j;
            while k < query.len()
                && !query[k].is_ascii_whitespace()
                && !matches!(query[k], b',' | b')' | b'}' | b'$' | b'{' | b'[')
            {
                k += 1;
            }
            (j, k)
        };
        // A variable (`$pw`) or an object holds nothing here to hide.
        if ve > vs {
            let value = query[vs..ve].to_vec();
            cx.needle(name, b": ", &value);
            cx.path(format!("{path}.{}", String::from_utf8_lossy(name)));
            spans.push((vs, ve));
        }
        // Past a string's closing quote, which would read as an opening one.
        i = ve + usize::from(quoted);
    }
    (!spans.is_empty()).then(|| splice(query, &spans))
}

/// `data` with each span replaced by `[REDACTED]`.
pub(super) fn splice(data: &[u8], spans: &[(usize, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut at = 0;
    for &(s, e) in spans {
        if s < at {
            continue;
        }
        out.extend_from_slice(&data[at..s]);
        out.extend_from_slice(REDACTED.as_bytes());
        at = e;
    }
    out.extend_from_slice(&data[at..]);
    out
}
