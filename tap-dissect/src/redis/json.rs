//! JSON form of Redis commands and replies. Besides the Redis fields, a command
//! carries the generic `method` (the command) and `path` (its key), and a reply
//! `status`: 0 for success, 1 for an error reply, so one filter such as
//! `response.status != 0` finds failures across protocols.

use base64::Engine as _;
use proto::v1::{RedisRequest, RedisResponse};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// Whether every byte string is UTF-8: then they are written as text, otherwise all as base64.
fn all_text(items: &[Vec<u8>]) -> bool {
    items.iter().all(|a| std::str::from_utf8(a).is_ok())
}

/// Byte strings as JSON strings: text, or base64 when `base64`.
struct BytesSeq<'a> {
    items: &'a [Vec<u8>],
    base64: bool,
}

/// The filter's field names under `request` and `response`; `json::fields`
/// lists them for the UI.
pub(crate) const REQUEST_FIELDS: &[&str] = &[
    "arg_count",
    "args_encoding",
    "args_truncated",
    "command",
    "inline",
    "key",
    "method",
    "path",
];
pub(crate) const RESPONSE_FIELDS: &[&str] = &[
    "elements",
    "error",
    "status",
    "type",
    "value",
    "value_encoding",
    "value_truncated",
];

impl Serialize for BytesSeq<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.items.len()))?;
        for a in self.items {
            if self.base64 {
                seq.serialize_element(&base64::engine::general_purpose::STANDARD.encode(a))?;
            } else {
                seq.serialize_element(std::str::from_utf8(a).unwrap_or_default())?;
            }
        }
        seq.end()
    }
}

pub(crate) struct RedisRequestJson<'a>(pub(crate) &'a RedisRequest);

impl Serialize for RedisRequestJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("method", &r.command)?;
        m.serialize_entry("path", &r.key)?;
        m.serialize_entry("command", &r.command)?;
        m.serialize_entry("key", &r.key)?;
        let text = all_text(&r.args);
        m.serialize_entry(
            "args",
            &BytesSeq {
                items: &r.args,
                base64: !text,
            },
        )?;
        if !text {
            m.serialize_entry("args_encoding", "base64")?;
        }
        m.serialize_entry("arg_count", &r.arg_count)?;
        if r.args_truncated {
            m.serialize_entry("args_truncated", &true)?;
        }
        if r.inline {
            m.serialize_entry("inline", &true)?;
        }
        m.end()
    }
}

pub(crate) struct RedisResponseJson<'a>(pub(crate) &'a RedisResponse);

impl Serialize for RedisResponseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("status", &u32::from(r.is_error))?;
        m.serialize_entry("type", &r.r#type)?;
        match std::str::from_utf8(&r.value) {
            Ok(text) => m.serialize_entry("value", text)?,
            Err(_) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(&r.value);
                m.serialize_entry("value", &encoded)?;
                m.serialize_entry("value_encoding", "base64")?;
            }
        }
        if r.value_truncated {
            m.serialize_entry("value_truncated", &true)?;
        }
        if r.is_error {
            m.serialize_entry("error", &r.error)?;
        }
        m.serialize_entry("elements", &r.elements)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_generic_and_redis_fields() {
        let r = RedisRequest {
            command: "SET".into(),
            key: "k".into(),
            args: vec![b"k".to_vec(), b"v".to_vec()],
            arg_count: 2,
            ..Default::default()
        };
        let v = serde_json::to_value(RedisRequestJson(&r)).unwrap();
        assert_eq!(v["method"], "SET");
        assert_eq!(v["path"], "k");
        assert_eq!(v["args"], serde_json::json!(["k", "v"]));
        assert_eq!(v["arg_count"], 2);
        assert!(v.get("args_encoding").is_none());
        assert!(v.get("inline").is_none());
    }

    #[test]
    fn binary_args_and_values_are_base64() {
        let r = RedisRequest {
            command: "SET".into(),
            args: vec![b"k".to_vec(), vec![0xff, 0x00]],
            arg_count: 2,
            ..Default::default()
        };
        let v = serde_json::to_value(RedisRequestJson(&r)).unwrap();
        assert_eq!(v["args"], serde_json::json!(["aw==", "/wA="]));
        assert_eq!(v["args_encoding"], "base64");
        let resp = RedisResponse {
            r#type: "bulk".into(),
            value: vec![0xff],
            ..Default::default()
        };
        let v = serde_json::to_value(RedisResponseJson(&resp)).unwrap();
        assert_eq!(v["value"], "/w==");
        assert_eq!(v["value_encoding"], "base64");
    }

    #[test]
    fn error_reply_has_status_1_and_its_message() {
        let resp = RedisResponse {
            r#type: "error".into(),
            error: "ERR value is not an integer or out of range".into(),
            is_error: true,
            ..Default::default()
        };
        let v = serde_json::to_value(RedisResponseJson(&resp)).unwrap();
        assert_eq!(v["status"], 1);
        assert_eq!(v["error"], "ERR value is not an integer or out of range");
        let ok = RedisResponse {
            r#type: "simple".into(),
            value: b"OK".to_vec(),
            ..Default::default()
        };
        let v = serde_json::to_value(RedisResponseJson(&ok)).unwrap();
        assert_eq!(v["status"], 0);
        assert_eq!(v["value"], "OK");
        assert!(v.get("error").is_none());
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
            keys(src, &["RedisRequestJson"]),
            "REQUEST_FIELDS"
        );
        assert_eq!(
            set(super::RESPONSE_FIELDS),
            keys(src, &["RedisResponseJson"]),
            "RESPONSE_FIELDS"
        );
    }
}
