//! Redis in the registry.

use super::json::{REQUEST_FIELDS, RESPONSE_FIELDS, RedisRequestJson, RedisResponseJson};
use crate::ProtocolSpec;
use crate::heap::heap_fields;
use crate::registry::{Messages, Protocol};
use proto::v1::{self, Entry, RedisRequest, RedisResponse, request};
use serde::Serialize;

pub struct Redis;

impl Protocol for Redis {
    const ID: v1::Protocol = v1::Protocol::Redis;
    const TCP: Option<ProtocolSpec> = Some(ProtocolSpec {
        name: Self::ID.name(),
        probe: super::probe,
        new: super::new,
    });
    const REQUEST_FIELDS: &'static [&'static str] = REQUEST_FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = RESPONSE_FIELDS;
    const COLOUR: &'static str = "#ff7b72";

    fn expects_answer(_: &Entry) -> bool {
        true
    }
}

impl Messages for Redis {
    type Request = RedisRequest;
    type Response = RedisResponse;
    fn request_json(m: &RedisRequest) -> impl Serialize + '_ {
        RedisRequestJson(m)
    }
    fn response_json(m: &RedisResponse) -> impl Serialize + '_ {
        RedisResponseJson(m)
    }
    /// The command; "PUSH" for an entry made of a server push (pub/sub message).
    fn method(m: &RedisRequest) -> Option<&str> {
        Some(&m.command)
    }
    /// The command's key.
    fn path(m: &RedisRequest) -> Option<&str> {
        Some(&m.key)
    }
    /// Redis has no status code: 0 for a reply, 1 for an error reply.
    fn status(m: &RedisResponse, _: Option<&request::Kind>) -> Option<i64> {
        Some(i64::from(m.is_error))
    }
    fn failed(m: &RedisResponse, _: &Entry) -> bool {
        m.is_error
    }
}

heap_fields! {
    RedisRequest { command, key, args }
    RedisResponse { r#type, value, error }
}
