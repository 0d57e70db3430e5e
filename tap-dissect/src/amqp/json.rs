//! JSON form of AMQP 0-9-1 methods. Besides the AMQP fields, a method carries
//! the generic `method` ("basic.publish"), `path` (exchange/routing key, or the
//! queue) and `status`: its reply code (connection.close, channel.close,
//! basic.return), 0 when it has none.

use crate::http1::json::{HeadersJson, body_fields};
use proto::v1::AmqpMethod;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// The filter's field names of a message, on whichever side it is
/// (`request.…` or `response.…`); `json::fields` lists them for the UI.
pub(crate) const FIELDS: &[&str] = &[
    "arguments",
    "channel",
    "class",
    "consumer_tag",
    "delivery_tag",
    "exchange",
    "method",
    "path",
    "properties",
    "queue",
    "reply_code",
    "reply_text",
    "routing_key",
    "sender",
    "status",
];

pub(crate) struct AmqpMethodJson<'a>(pub(crate) &'a AmqpMethod);

impl Serialize for AmqpMethodJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("method", &r.method)?;
        m.serialize_entry("path", &r.path)?;
        m.serialize_entry("status", &r.reply_code)?;
        m.serialize_entry("sender", &r.sender)?;
        m.serialize_entry("channel", &r.channel)?;
        m.serialize_entry("class", &r.class)?;
        m.serialize_entry("exchange", &r.exchange)?;
        m.serialize_entry("routing_key", &r.routing_key)?;
        m.serialize_entry("queue", &r.queue)?;
        if !r.consumer_tag.is_empty() {
            m.serialize_entry("consumer_tag", &r.consumer_tag)?;
        }
        if r.delivery_tag != 0 {
            m.serialize_entry("delivery_tag", &r.delivery_tag)?;
        }
        if r.reply_code != 0 || !r.reply_text.is_empty() {
            m.serialize_entry("reply_code", &r.reply_code)?;
            m.serialize_entry("reply_text", &r.reply_text)?;
        }
        m.serialize_entry("arguments", &HeadersJson(&r.arguments))?;
        m.serialize_entry("properties", &HeadersJson(&r.properties))?;
        body_fields(&mut m, r.body.as_ref())?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{Body, Header};

    #[test]
    fn publish_has_generic_fields_properties_and_body() {
        let msg = AmqpMethod {
            channel: 1,
            class: "basic".into(),
            method: "basic.publish".into(),
            exchange: "orders".into(),
            routing_key: "eu.new".into(),
            path: "orders/eu.new".into(),
            sender: "client".into(),
            properties: vec![Header {
                name: "content-type".into(),
                value: "application/json".into(),
            }],
            body: Some(Body {
                data: b"{}".to_vec(),
                wire_size: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(AmqpMethodJson(&msg)).unwrap();
        assert_eq!(v["method"], "basic.publish");
        assert_eq!(v["path"], "orders/eu.new");
        assert_eq!(v["status"], 0);
        assert_eq!(v["channel"], 1);
        assert_eq!(v["properties"]["content-type"], "application/json");
        assert_eq!(v["body"], "{}");
        assert_eq!(v["body_size"], 2);
        assert!(v.get("reply_code").is_none());
    }

    #[test]
    fn close_has_its_reply_code_as_status() {
        let msg = AmqpMethod {
            method: "channel.close".into(),
            reply_code: 404,
            reply_text: "NOT_FOUND - no queue 'q'".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(AmqpMethodJson(&msg)).unwrap();
        assert_eq!(v["status"], 404);
        assert_eq!(v["reply_text"], "NOT_FOUND - no queue 'q'");
        assert_eq!(v["body"], serde_json::Value::Null);
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
        assert_eq!(set(super::FIELDS), keys(src, &["AmqpMethodJson"]), "FIELDS");
    }
}
