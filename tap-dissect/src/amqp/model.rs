//! AMQP 0-9-1 in the registry: both sides of an entry are methods (`AmqpMethod`).

use super::json::{AmqpMethodJson, FIELDS};
use crate::ProtocolSpec;
use crate::heap::heap_fields;
use crate::registry::{Messages, Protocol, StatusClasses};
use proto::v1::{self, AmqpMethod, Entry, request};
use serde::Serialize;

/// reply-success, the code of a normal close.
const REPLY_SUCCESS: u32 = 200;

pub struct Amqp;

impl Protocol for Amqp {
    const ID: v1::Protocol = v1::Protocol::Amqp;
    // The protocol header; mid-stream a run of two well-formed frames.
    const TCP: Option<ProtocolSpec> = Some(ProtocolSpec {
        name: Self::ID.name(),
        probe: super::probe,
        new: super::new,
    });
    const REQUEST_FIELDS: &'static [&'static str] = FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = FIELDS;
    const COLOUR: &'static str = "#ffa657";
    /// No reply code, or 200 (reply-success).
    const STATUS: StatusClasses = StatusClasses {
        ok: &[[0, 0], [200, 200]],
        redirect: &[],
        client: &[],
    };

    /// The dissector already drops `no_response` on asynchronous methods.
    fn expects_answer(_: &Entry) -> bool {
        true
    }
}

/// A reply code other than 200 (reply-success).
fn failed(reply_code: u32) -> bool {
    reply_code != 0 && reply_code != REPLY_SUCCESS
}

impl Messages for Amqp {
    type Request = AmqpMethod;
    type Response = AmqpMethod;
    fn request_json(m: &AmqpMethod) -> impl Serialize + '_ {
        AmqpMethodJson(m)
    }
    fn response_json(m: &AmqpMethod) -> impl Serialize + '_ {
        AmqpMethodJson(m)
    }
    /// "basic.publish", "queue.declare": class and method.
    fn method(m: &AmqpMethod) -> Option<&str> {
        Some(&m.method)
    }
    /// The exchange and routing key, or the queue.
    fn path(m: &AmqpMethod) -> Option<&str> {
        Some(&m.path)
    }
    /// The reply code of a close (the request's, for a close the other side
    /// confirmed) or a basic.return; 0 when there is none.
    fn status(m: &AmqpMethod, request: Option<&request::Kind>) -> Option<i64> {
        let asked = match request {
            Some(request::Kind::Amqp(q)) => q.reply_code,
            _ => 0,
        };
        Some(i64::from(m.reply_code.max(asked)))
    }
    fn failed(m: &AmqpMethod, _: &Entry) -> bool {
        failed(m.reply_code)
    }
    /// A close with an error code, which the other side confirmed.
    fn request_failed(m: &AmqpMethod) -> bool {
        failed(m.reply_code)
    }
}

heap_fields! {
    AmqpMethod {
        class, method, exchange, routing_key, queue, consumer_tag, path,
        properties, body, reply_text, arguments, sender,
    }
}
