//! JSON form of gRPC calls: the call's path split into service and method,
//! metadata and trailers as header objects, and each length-prefixed message
//! with its schema-less protobuf decoding (`fields`), a list of
//! `{"field":1,"wire_type":2,"string":"…"}` objects whose value key names how
//! it was read: `varint`, `fixed64`, `fixed32`, `string`, `bytes` (base64) or
//! `message` (a nested list).

use crate::http1::json::HeadersJson;
use base64::Engine as _;
use proto::v1::{GrpcMessage, GrpcRequest, GrpcResponse, ProtoField, ProtoValueKind};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The filter's field names under `request` and `response`; `json::fields`
/// lists them for the UI.
pub(crate) const REQUEST_FIELDS: &[&str] = &[
    "authority",
    "body_size",
    "headers",
    "message_count",
    "messages",
    "messages_truncated",
    "method",
    "path",
    "service",
];
pub(crate) const RESPONSE_FIELDS: &[&str] = &[
    "body_size",
    "headers",
    "http_status",
    "message",
    "message_count",
    "messages",
    "messages_truncated",
    "status",
    "status_name",
    "trailers",
];

pub(crate) struct GrpcRequestJson<'a>(pub(crate) &'a GrpcRequest);

impl Serialize for GrpcRequestJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("method", &r.method)?;
        m.serialize_entry("path", &r.path)?;
        m.serialize_entry("service", &r.service)?;
        m.serialize_entry("authority", &r.authority)?;
        m.serialize_entry("headers", &HeadersJson(&r.headers))?;
        m.serialize_entry("messages", &MessagesJson(&r.messages))?;
        m.serialize_entry("message_count", &r.message_count)?;
        if r.truncated {
            m.serialize_entry("messages_truncated", &true)?;
        }
        m.serialize_entry("body_size", &r.body_size)?;
        m.end()
    }
}

pub(crate) struct GrpcResponseJson<'a>(pub(crate) &'a GrpcResponse);

impl Serialize for GrpcResponseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("status", &r.status)?;
        m.serialize_entry("status_name", &r.status_name)?;
        m.serialize_entry("message", &r.message)?;
        m.serialize_entry("http_status", &r.http_status)?;
        m.serialize_entry("headers", &HeadersJson(&r.headers))?;
        m.serialize_entry("trailers", &HeadersJson(&r.trailers))?;
        m.serialize_entry("messages", &MessagesJson(&r.messages))?;
        m.serialize_entry("message_count", &r.message_count)?;
        if r.truncated {
            m.serialize_entry("messages_truncated", &true)?;
        }
        m.serialize_entry("body_size", &r.body_size)?;
        m.end()
    }
}

struct MessagesJson<'a>(&'a [GrpcMessage]);

impl Serialize for MessagesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for msg in self.0 {
            seq.serialize_element(&MessageJson(msg))?;
        }
        seq.end()
    }
}

/// `{"compressed":false,"length":7,"data":"<base64>","fields":[…]}`; `fields`
/// is null when the bytes are not a protobuf message (or were cut short).
struct MessageJson<'a>(&'a GrpcMessage);

impl Serialize for MessageJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let g = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("compressed", &g.compressed)?;
        m.serialize_entry("length", &g.length)?;
        m.serialize_entry("data", &base64(&g.data))?;
        if g.truncated {
            m.serialize_entry("data_truncated", &true)?;
        }
        if g.decoded {
            m.serialize_entry("fields", &FieldsJson(&g.fields))?;
        } else {
            m.serialize_entry("fields", &())?;
        }
        m.end()
    }
}

struct FieldsJson<'a>(&'a [ProtoField]);

impl Serialize for FieldsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for f in self.0 {
            seq.serialize_element(&FieldJson(f))?;
        }
        seq.end()
    }
}

struct FieldJson<'a>(&'a ProtoField);

impl Serialize for FieldJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("field", &f.number)?;
        m.serialize_entry("wire_type", &f.wire_type)?;
        match ProtoValueKind::try_from(f.kind).unwrap_or(ProtoValueKind::Unspecified) {
            ProtoValueKind::Varint => m.serialize_entry("varint", &f.scalar)?,
            ProtoValueKind::Fixed64 => m.serialize_entry("fixed64", &f.scalar)?,
            ProtoValueKind::Fixed32 => m.serialize_entry("fixed32", &f.scalar)?,
            ProtoValueKind::Message => m.serialize_entry("message", &FieldsJson(&f.fields))?,
            ProtoValueKind::String => m.serialize_entry("string", &f.text)?,
            ProtoValueKind::Bytes => m.serialize_entry("bytes", &base64(&f.data))?,
            ProtoValueKind::Unspecified => m.serialize_entry("unknown", &())?,
        }
        if f.truncated {
            m.serialize_entry("length", &f.length)?;
            m.serialize_entry("truncated", &true)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use crate::json::EntryJson;
    use proto::v1::{
        Entry, GrpcMessage, GrpcRequest, GrpcResponse, Header, ProtoField, ProtoValueKind,
        Protocol, Request, Response, request, response,
    };

    fn field(number: u32, kind: ProtoValueKind) -> ProtoField {
        ProtoField {
            number,
            wire_type: match kind {
                ProtoValueKind::Varint => 0,
                ProtoValueKind::Fixed64 => 1,
                ProtoValueKind::Fixed32 => 5,
                _ => 2,
            },
            kind: kind as i32,
            ..Default::default()
        }
    }

    #[test]
    fn grpc_entry_json() {
        let nested = ProtoField {
            fields: vec![ProtoField {
                scalar: 150,
                ..field(1, ProtoValueKind::Varint)
            }],
            ..field(3, ProtoValueKind::Message)
        };
        let e = Entry {
            protocol: Protocol::Grpc as i32,
            stream_id: 1,
            request: Some(Request {
                kind: Some(request::Kind::Grpc(Box::new(GrpcRequest {
                    service: "helloworld.Greeter".into(),
                    method: "SayHello".into(),
                    path: "/helloworld.Greeter/SayHello".into(),
                    headers: vec![Header {
                        name: "te".into(),
                        value: "trailers".into(),
                    }],
                    messages: vec![GrpcMessage {
                        length: 7,
                        data: b"\x0a\x03abc".to_vec(),
                        decoded: true,
                        fields: vec![
                            ProtoField {
                                text: "abc".into(),
                                ..field(1, ProtoValueKind::String)
                            },
                            ProtoField {
                                data: vec![0xff],
                                ..field(2, ProtoValueKind::Bytes)
                            },
                            nested,
                        ],
                        ..Default::default()
                    }],
                    message_count: 1,
                    ..Default::default()
                }))),
            }),
            response: Some(Response {
                kind: Some(response::Kind::Grpc(Box::new(GrpcResponse {
                    status: Some(5),
                    status_name: "NOT_FOUND".into(),
                    message: "no such thing".into(),
                    http_status: 200,
                    ..Default::default()
                }))),
            }),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::to_value(EntryJson(&e)).unwrap();
        assert_eq!(v["protocol"], "grpc");
        assert_eq!(v["request"]["method"], "SayHello");
        assert_eq!(v["request"]["path"], "/helloworld.Greeter/SayHello");
        assert_eq!(v["request"]["headers"]["te"], "trailers");
        let msg = &v["request"]["messages"][0];
        assert_eq!(msg["data"], "CgNhYmM=");
        assert_eq!(msg["fields"][0]["field"], 1);
        assert_eq!(msg["fields"][0]["wire_type"], 2);
        assert_eq!(msg["fields"][0]["string"], "abc");
        assert_eq!(msg["fields"][1]["bytes"], "/w==");
        assert_eq!(msg["fields"][2]["message"][0]["varint"], 150);
        assert_eq!(v["response"]["status"], 5);
        assert_eq!(v["response"]["status_name"], "NOT_FOUND");
        assert_eq!(v["response"]["message"], "no such thing");
        assert_eq!(v["response"]["messages"], serde_json::json!([]));
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
            keys(src, &["GrpcRequestJson"]),
            "REQUEST_FIELDS"
        );
        assert_eq!(
            set(super::RESPONSE_FIELDS),
            keys(src, &["GrpcResponseJson"]),
            "RESPONSE_FIELDS"
        );
    }
}
