//! JSON form of HTTP/1.x (and later HTTP/2) requests and responses.

use super::Display;
use crate::v1::{Body, Header, HttpRequest, HttpResponse};
use base64::Engine as _;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// The filter's field names under `request` and `response`; `json::fields`
/// lists them for the UI.
pub(super) const REQUEST_FIELDS: &[&str] = &[
    "body",
    "body_decoded_from",
    "body_encoding",
    "body_size",
    "body_truncated",
    "headers",
    "method",
    "path",
    "trailers",
    "version",
];
pub(super) const RESPONSE_FIELDS: &[&str] = &[
    "body",
    "body_decoded_from",
    "body_encoding",
    "body_size",
    "body_truncated",
    "headers",
    "reason",
    "status",
    "trailers",
    "version",
];

/// Headers as an object keyed by lower-case name; repeated headers are joined
/// with ", " (RFC 9110 §5.3), so `request.headers["content-type"]` works.
pub(super) struct HeadersJson<'a>(pub(super) &'a [Header]);

impl Serialize for HeadersJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let hs = self.0;
        for (i, h) in hs.iter().enumerate() {
            // Emit each name once, at its first position.
            if hs[..i].iter().any(|p| p.name.eq_ignore_ascii_case(&h.name)) {
                continue;
            }
            let key = Display(LowerCase(&h.name));
            let repeated = hs[i + 1..]
                .iter()
                .any(|n| n.name.eq_ignore_ascii_case(&h.name));
            if repeated {
                let joined: Vec<&str> = hs[i..]
                    .iter()
                    .filter(|n| n.name.eq_ignore_ascii_case(&h.name))
                    .map(|n| n.value.as_str())
                    .collect();
                m.serialize_entry(&key, &joined.join(", "))?;
            } else {
                m.serialize_entry(&key, &h.value)?;
            }
        }
        m.end()
    }
}

struct LowerCase<'a>(&'a str);

impl std::fmt::Display for LowerCase<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        self.0
            .chars()
            .try_for_each(|c| f.write_char(c.to_ascii_lowercase()))
    }
}

/// Writes the body fields into the enclosing object: `body` (UTF-8 text, or
/// base64 with `body_encoding: "base64"`), `body_size`, `body_truncated`, `body_decoded_from`.
pub(super) fn body_fields<M: SerializeMap>(m: &mut M, body: Option<&Body>) -> Result<(), M::Error> {
    let Some(b) = body else {
        return m.serialize_entry("body", &());
    };
    match std::str::from_utf8(&b.data) {
        Ok(text) => m.serialize_entry("body", text)?,
        Err(_) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&b.data);
            m.serialize_entry("body", &encoded)?;
            m.serialize_entry("body_encoding", "base64")?;
        }
    }
    m.serialize_entry("body_size", &b.wire_size)?;
    if b.truncated {
        m.serialize_entry("body_truncated", &true)?;
    }
    if !b.decoded_from.is_empty() {
        m.serialize_entry("body_decoded_from", &b.decoded_from)?;
    }
    Ok(())
}

pub(super) struct HttpRequestJson<'a>(pub(super) &'a HttpRequest);

impl Serialize for HttpRequestJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("method", &r.method)?;
        m.serialize_entry("path", &r.path)?;
        m.serialize_entry("version", &r.version)?;
        m.serialize_entry("headers", &HeadersJson(&r.headers))?;
        body_fields(&mut m, r.body.as_ref())?;
        if !r.trailers.is_empty() {
            m.serialize_entry("trailers", &HeadersJson(&r.trailers))?;
        }
        m.end()
    }
}

pub(super) struct HttpResponseJson<'a>(pub(super) &'a HttpResponse);

impl Serialize for HttpResponseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("status", &r.status)?;
        m.serialize_entry("reason", &r.reason)?;
        m.serialize_entry("version", &r.version)?;
        m.serialize_entry("headers", &HeadersJson(&r.headers))?;
        body_fields(&mut m, r.body.as_ref())?;
        if !r.trailers.is_empty() {
            m.serialize_entry("trailers", &HeadersJson(&r.trailers))?;
        }
        m.end()
    }
}
