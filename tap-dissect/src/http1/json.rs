//! JSON form of HTTP/1.x (and later HTTP/2) requests and responses.

use crate::json::Display;
use base64::Engine as _;
use proto::v1::{Body, Header, HttpRequest, HttpResponse};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// The filter's field names under `request` and `response`; `json::fields`
/// lists them for the UI.
pub(crate) const REQUEST_FIELDS: &[&str] = &[
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
pub(crate) const RESPONSE_FIELDS: &[&str] = &[
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
pub(crate) struct HeadersJson<'a>(pub(crate) &'a [Header]);

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
pub(crate) fn body_fields<M: SerializeMap>(m: &mut M, body: Option<&Body>) -> Result<(), M::Error> {
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

pub(crate) struct HttpRequestJson<'a>(pub(crate) &'a HttpRequest);

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

pub(crate) struct HttpResponseJson<'a>(pub(crate) &'a HttpResponse);

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

/// The field lists are exactly what the serializers write: a field renamed
/// or added in the JSON form without its list fails here.
#[cfg(test)]
mod field_lists {
    use crate::json::field_lists::{keys, set};

    #[test]
    fn the_field_lists_are_what_the_json_form_writes() {
        let src = include_str!("json.rs");
        assert_eq!(
            set(super::REQUEST_FIELDS),
            keys(src, &["HttpRequestJson", "fn body_fields"]),
            "REQUEST_FIELDS"
        );
        assert_eq!(
            set(super::RESPONSE_FIELDS),
            keys(src, &["HttpResponseJson", "fn body_fields"]),
            "RESPONSE_FIELDS"
        );
    }
}
