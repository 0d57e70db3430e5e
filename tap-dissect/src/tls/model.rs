//! TLS in the registry: one entry per connection's handshake; a fatal
//! alert, or a handshake the connection's end cut off, is a failure.

use super::json::{REQUEST_FIELDS, RESPONSE_FIELDS, TlsRequestJson, TlsResponseJson};
use crate::ProtocolSpec;
use crate::heap::heap_fields;
use crate::registry::{Messages, Protocol, has_flag, request_kind};
use proto::v1::{self, Entry, TlsRequest, TlsResponse, request};
use serde::Serialize;

pub struct Tls;

impl Protocol for Tls {
    const ID: v1::Protocol = v1::Protocol::Tls;
    const TCP: Option<ProtocolSpec> = Some(ProtocolSpec {
        name: Self::ID.name(),
        probe: super::probe,
        new: super::new,
    });
    const REQUEST_FIELDS: &'static [&'static str] = REQUEST_FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = RESPONSE_FIELDS;
    const COLOUR: &'static str = "#b5e853";

    /// A server answers every ClientHello it receives (a connection picked
    /// up after its handshake has none).
    fn expects_answer(e: &Entry) -> bool {
        matches!(request_kind(e), Some(request::Kind::Tls(r)) if !r.handshake.is_empty())
    }
}

/// The response's status: a fatal alert's code.
pub(crate) fn status(m: &TlsResponse) -> Option<u32> {
    m.alert.filter(|_| m.alert_level == "fatal")
}

impl Messages for Tls {
    type Request = TlsRequest;
    type Response = TlsResponse;
    fn request_json(m: &TlsRequest) -> impl Serialize + '_ {
        TlsRequestJson(m)
    }
    fn response_json(m: &TlsResponse) -> impl Serialize + '_ {
        TlsResponseJson(m)
    }
    fn method(m: &TlsRequest) -> Option<&str> {
        (!m.handshake.is_empty()).then_some(m.handshake.as_str())
    }
    fn path(m: &TlsRequest) -> Option<&str> {
        Some(&m.target)
    }
    fn status(m: &TlsResponse, _: Option<&request::Kind>) -> Option<i64> {
        status(m).map(i64::from)
    }
    fn failed(m: &TlsResponse, e: &Entry) -> bool {
        status(m).is_some() || has_flag(e, "incomplete")
    }
}

heap_fields! {
    TlsRequest { handshake, server_name, alpn, versions, target }
    TlsResponse {
        version, cipher_suite, alpn, certificate_subject, certificate_issuer,
        certificate_sans, certificate_not_after, alert_name, alert_level, alert_from
    }
}
