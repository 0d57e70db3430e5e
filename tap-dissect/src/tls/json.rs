//! JSON form of a TLS handshake. The request carries the generic fields
//! `method` (`ClientHello`; null for a connection picked up after its
//! handshake) and `path` (the server name asked for, or the server's
//! address without one); the response's `status` is the code of a fatal
//! alert seen in clear (40 handshake_failure, 48 unknown_ca, …), null when
//! there was none.

use proto::v1::{TlsRequest, TlsResponse};
use serde::ser::{Serialize, SerializeMap, Serializer};

pub(crate) const REQUEST_FIELDS: &[&str] = &[
    "alpn",
    "cipher_suites",
    "handshake",
    "method",
    "path",
    "server_name",
    "versions",
];

pub(crate) const RESPONSE_FIELDS: &[&str] = &[
    "alert",
    "alert_from",
    "alert_level",
    "alert_name",
    "alpn",
    "certificate_issuer",
    "certificate_not_after",
    "certificate_sans",
    "certificate_subject",
    "cipher_suite",
    "hello_retry",
    "resumed",
    "status",
    "version",
];

/// An empty string as null: the field was not seen.
fn seen(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

pub(crate) struct TlsRequestJson<'a>(pub(crate) &'a TlsRequest);

impl Serialize for TlsRequestJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("method", &seen(&r.handshake))?;
        m.serialize_entry("path", &r.target)?;
        m.serialize_entry("handshake", &seen(&r.handshake))?;
        m.serialize_entry("server_name", &seen(&r.server_name))?;
        m.serialize_entry("alpn", &r.alpn)?;
        m.serialize_entry("versions", &r.versions)?;
        m.serialize_entry("cipher_suites", &r.cipher_suites)?;
        m.end()
    }
}

pub(crate) struct TlsResponseJson<'a>(pub(crate) &'a TlsResponse);

impl Serialize for TlsResponseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("status", &super::model::status(r))?;
        m.serialize_entry("version", &seen(&r.version))?;
        m.serialize_entry("cipher_suite", &seen(&r.cipher_suite))?;
        m.serialize_entry("alpn", &seen(&r.alpn))?;
        m.serialize_entry("certificate_subject", &seen(&r.certificate_subject))?;
        m.serialize_entry("certificate_issuer", &seen(&r.certificate_issuer))?;
        m.serialize_entry("certificate_sans", &r.certificate_sans)?;
        m.serialize_entry("certificate_not_after", &seen(&r.certificate_not_after))?;
        m.serialize_entry("alert", &r.alert)?;
        m.serialize_entry("alert_name", &seen(&r.alert_name))?;
        m.serialize_entry("alert_level", &seen(&r.alert_level))?;
        m.serialize_entry("alert_from", &seen(&r.alert_from))?;
        m.serialize_entry("hello_retry", &r.hello_retry)?;
        m.serialize_entry("resumed", &r.resumed)?;
        m.end()
    }
}

/// The field lists are exactly what the serializers write.
#[cfg(test)]
mod field_lists {
    use crate::json::field_lists::{keys, set};

    #[test]
    fn the_field_lists_are_what_the_json_form_writes() {
        let src = include_str!("json.rs");
        assert_eq!(
            set(super::REQUEST_FIELDS),
            keys(src, &["TlsRequestJson"]),
            "REQUEST_FIELDS"
        );
        assert_eq!(
            set(super::RESPONSE_FIELDS),
            keys(src, &["TlsResponseJson"]),
            "RESPONSE_FIELDS"
        );
    }
}
