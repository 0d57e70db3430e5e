//! gRPC in the registry. Never probed: the HTTP/2 dissector makes its
//! entries from `application/grpc` streams.

use super::json::{GrpcRequestJson, GrpcResponseJson, REQUEST_FIELDS, RESPONSE_FIELDS};
use crate::heap::heap_fields;
use crate::registry::{Messages, Protocol, has_flag};
use proto::v1::{self, Entry, GrpcMessage, GrpcRequest, GrpcResponse, ProtoField, request};
use serde::Serialize;

pub struct Grpc;

impl Protocol for Grpc {
    const ID: v1::Protocol = v1::Protocol::Grpc;
    const REQUEST_FIELDS: &'static [&'static str] = REQUEST_FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = RESPONSE_FIELDS;
    const COLOUR: &'static str = "#d2a8ff";

    fn expects_answer(_: &Entry) -> bool {
        true
    }
}

impl Messages for Grpc {
    type Request = GrpcRequest;
    type Response = GrpcResponse;
    fn request_json(m: &GrpcRequest) -> impl Serialize + '_ {
        GrpcRequestJson(m)
    }
    fn response_json(m: &GrpcResponse) -> impl Serialize + '_ {
        GrpcResponseJson(m)
    }
    /// The RPC's method name: an HTTP method would always be POST.
    fn method(m: &GrpcRequest) -> Option<&str> {
        Some(&m.method)
    }
    fn path(m: &GrpcRequest) -> Option<&str> {
        Some(&m.path)
    }
    /// The grpc-status code, when the call ended with one.
    fn status(m: &GrpcResponse, _: Option<&request::Kind>) -> Option<i64> {
        m.status.map(i64::from)
    }
    /// A grpc-status other than 0 (OK), or a call that ended without one
    /// (reset or cut off) although nothing was lost in the capture.
    fn failed(m: &GrpcResponse, e: &Entry) -> bool {
        match m.status {
            Some(status) => status != 0,
            None => !has_flag(e, "gap"),
        }
    }
}

heap_fields! {
    ProtoField { text, data, fields }
    GrpcMessage { data, fields }
    GrpcRequest { service, method, path, authority, headers, messages }
    GrpcResponse { status_name, message, headers, trailers, messages }
}
