//! HTTP/1.x entries in the registry: generic fields, the error rule and the
//! heap walk of `HttpRequest` and `HttpResponse` (which HTTP/2 shares).

use super::json::{HttpRequestJson, HttpResponseJson, REQUEST_FIELDS, RESPONSE_FIELDS};
use crate::ProtocolSpec;
use crate::heap::heap_fields;
use crate::registry::{Messages, Protocol, StatusClasses};
use proto::v1::{self, Body, Entry, Header, HttpRequest, HttpResponse, request};
use serde::Serialize;

pub struct Http;

impl Protocol for Http {
    const ID: v1::Protocol = v1::Protocol::Http;
    const TCP: Option<ProtocolSpec> = Some(ProtocolSpec {
        name: Self::ID.name(),
        probe: super::probe,
        new: super::new,
    });
    const REQUEST_FIELDS: &'static [&'static str] = REQUEST_FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = RESPONSE_FIELDS;
    const COLOUR: &'static str = "#58a6ff";
    const STATUS: StatusClasses = StatusClasses::HTTP;

    fn expects_answer(_: &Entry) -> bool {
        true
    }
}

impl Messages for Http {
    type Request = HttpRequest;
    type Response = HttpResponse;
    fn request_json(m: &HttpRequest) -> impl Serialize + '_ {
        HttpRequestJson(m)
    }
    fn response_json(m: &HttpResponse) -> impl Serialize + '_ {
        HttpResponseJson(m)
    }
    fn method(m: &HttpRequest) -> Option<&str> {
        Some(&m.method)
    }
    /// The path with its query string.
    fn path(m: &HttpRequest) -> Option<&str> {
        Some(&m.path)
    }
    fn status(m: &HttpResponse, _: Option<&request::Kind>) -> Option<i64> {
        Some(i64::from(m.status))
    }
    /// A 5xx: 4xx is the caller's fault and says nothing about the callee's health.
    fn failed(m: &HttpResponse, _: &Entry) -> bool {
        m.status >= 500
    }
}

heap_fields! {
    Header { name, value }
    Body { data, decoded_from }
    HttpRequest { method, path, version, headers, body, trailers }
    HttpResponse { reason, version, headers, body, trailers }
}
