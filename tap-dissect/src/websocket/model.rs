//! WebSocket in the registry: an entry is one message, on the side of its
//! sender (the client's as requests, the server's as responses).

use super::json::{FIELDS, WebSocketMessageJson};
use crate::ProtocolSpec;
use crate::heap::heap_fields;
use crate::registry::{Messages, Protocol, Standalone, StatusClasses};
use proto::v1::{self, Entry, WebSocketMessage, request};
use serde::Serialize;

pub struct WebSocket;

impl Protocol for WebSocket {
    const ID: v1::Protocol = v1::Protocol::Websocket;
    // Entered only through an HTTP/1 upgrade: its probe never claims.
    const TCP: Option<ProtocolSpec> = Some(ProtocolSpec {
        name: Self::ID.name(),
        probe: super::probe,
        new: super::new,
    });
    const REQUEST_FIELDS: &'static [&'static str] = FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = FIELDS;
    const COLOUR: &'static str = "#56d4dd";
    /// 1000 (normal), 1001 (going away) and the libraries' and applications'
    /// codes (3000 and up) are not failures.
    const STATUS: StatusClasses = StatusClasses {
        ok: &[[1000, 1001], [3000, 65535]],
        redirect: &[],
        client: &[],
    };
}

/// A close code other than 1000 (normal) or 1001 (going away) below 3000;
/// codes 3000 and up belong to libraries and applications, whose meaning we
/// cannot know.
fn failed(m: &WebSocketMessage) -> bool {
    m.close_code
        .is_some_and(|c| c != 1000 && c != 1001 && c < 3000)
}

/// The opcode's name, the upgrade request's path and a close frame's code,
/// for the server's messages too.
fn standalone(m: &WebSocketMessage) -> Option<Standalone<'_>> {
    Some(Standalone {
        method: &m.opcode,
        path: &m.path,
        status: m.close_code.map(i64::from),
    })
}

impl Messages for WebSocket {
    type Request = WebSocketMessage;
    type Response = WebSocketMessage;
    fn request_json(m: &WebSocketMessage) -> impl Serialize + '_ {
        WebSocketMessageJson(m)
    }
    fn response_json(m: &WebSocketMessage) -> impl Serialize + '_ {
        WebSocketMessageJson(m)
    }
    fn method(m: &WebSocketMessage) -> Option<&str> {
        Some(&m.opcode)
    }
    fn path(m: &WebSocketMessage) -> Option<&str> {
        Some(&m.path)
    }
    fn status(m: &WebSocketMessage, _: Option<&request::Kind>) -> Option<i64> {
        m.close_code.map(i64::from)
    }
    fn failed(m: &WebSocketMessage, _: &Entry) -> bool {
        failed(m)
    }
    fn request_failed(m: &WebSocketMessage) -> bool {
        failed(m)
    }
    fn standalone_request(m: &WebSocketMessage) -> Option<Standalone<'_>> {
        standalone(m)
    }
    fn standalone_response(m: &WebSocketMessage) -> Option<Standalone<'_>> {
        standalone(m)
    }
}

heap_fields! {
    WebSocketMessage { opcode, direction, payload, close_reason, upgrade_entry, path }
}
