//! JSON form of WebSocket messages. A message sits on the side of the entry
//! of whoever sent it (`request` for the client, `response` for the server),
//! and that side carries the generic fields: `method` (the opcode's name),
//! `path` (the upgrade request's path) and `status` (a close frame's code, else
//! null), so `request.method == "text"` finds the client's text messages and
//! `response.status == 1011` the server's closes with that code.

use base64::Engine as _;
use proto::v1::WebSocketMessage;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// The filter's field names of a message, on whichever side it is
/// (`request.…` or `response.…`); `json::fields` lists them for the UI.
pub(crate) const FIELDS: &[&str] = &[
    "close_code",
    "close_reason",
    "compressed",
    "direction",
    "fragments",
    "inflated",
    "method",
    "opcode",
    "path",
    "payload",
    "payload_encoding",
    "payload_size",
    "payload_truncated",
    "status",
    "upgrade_entry",
];

pub(crate) struct WebSocketMessageJson<'a>(pub(crate) &'a WebSocketMessage);

impl Serialize for WebSocketMessageJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("method", &r.opcode)?;
        m.serialize_entry("path", &r.path)?;
        m.serialize_entry("status", &r.close_code)?;
        m.serialize_entry("opcode", &r.opcode)?;
        m.serialize_entry("direction", &r.direction)?;
        match std::str::from_utf8(&r.payload) {
            Ok(text) => m.serialize_entry("payload", text)?,
            Err(_) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(&r.payload);
                m.serialize_entry("payload", &encoded)?;
                m.serialize_entry("payload_encoding", "base64")?;
            }
        }
        m.serialize_entry("payload_size", &r.payload_size)?;
        if r.truncated {
            m.serialize_entry("payload_truncated", &true)?;
        }
        m.serialize_entry("fragments", &r.fragments)?;
        if r.close_code.is_some() || !r.close_reason.is_empty() {
            m.serialize_entry("close_code", &r.close_code)?;
            m.serialize_entry("close_reason", &r.close_reason)?;
        }
        if r.compressed {
            m.serialize_entry("compressed", &true)?;
            m.serialize_entry("inflated", &r.inflated)?;
        }
        m.serialize_entry("upgrade_entry", &r.upgrade_entry)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_message_has_generic_and_websocket_fields() {
        let msg = WebSocketMessage {
            opcode: "text".into(),
            direction: "client".into(),
            path: "/chat".into(),
            payload: b"hello".to_vec(),
            payload_size: 5,
            fragments: 2,
            upgrade_entry: "0000000000000007-0".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(WebSocketMessageJson(&msg)).unwrap();
        assert_eq!(v["method"], "text");
        assert_eq!(v["path"], "/chat");
        assert_eq!(v["status"], serde_json::Value::Null);
        assert_eq!(v["payload"], "hello");
        assert_eq!(v["fragments"], 2);
        assert_eq!(v["upgrade_entry"], "0000000000000007-0");
        assert!(v.get("close_code").is_none());
        assert!(v.get("payload_encoding").is_none());
        assert!(v.get("compressed").is_none());
    }

    #[test]
    fn close_has_its_code_as_status_and_binary_is_base64() {
        let close = WebSocketMessage {
            opcode: "close".into(),
            direction: "server".into(),
            close_code: Some(1001),
            close_reason: "going away".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(WebSocketMessageJson(&close)).unwrap();
        assert_eq!(v["status"], 1001);
        assert_eq!(v["close_code"], 1001);
        assert_eq!(v["close_reason"], "going away");
        let binary = WebSocketMessage {
            opcode: "binary".into(),
            payload: vec![0xff, 0x00],
            compressed: true,
            inflated: true,
            truncated: true,
            ..Default::default()
        };
        let v = serde_json::to_value(WebSocketMessageJson(&binary)).unwrap();
        assert_eq!(v["payload"], "/wA=");
        assert_eq!(v["payload_encoding"], "base64");
        assert_eq!(v["payload_truncated"], true);
        assert_eq!(v["compressed"], true);
        assert_eq!(v["inflated"], true);
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
            set(super::FIELDS),
            keys(src, &["WebSocketMessageJson"]),
            "FIELDS"
        );
    }
}
