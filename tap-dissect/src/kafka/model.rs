//! Kafka in the registry.

use super::json::{KafkaRequestJson, KafkaResponseJson, REQUEST_FIELDS, RESPONSE_FIELDS};
use crate::ProtocolSpec;
use crate::heap::heap_fields;
use crate::registry::{Messages, Protocol, request_kind};
use proto::v1::{self, Entry, KafkaPartition, KafkaRequest, KafkaResponse, KafkaTopic, request};
use serde::Serialize;

/// The Produce API's key: with `acks=0` nobody answers it.
const PRODUCE: u32 = 0;

pub struct Kafka;

impl Protocol for Kafka {
    const ID: v1::Protocol = v1::Protocol::Kafka;
    // A request's length, a known API key and version, and a client id that fits.
    const TCP: Option<ProtocolSpec> = Some(ProtocolSpec {
        name: Self::ID.name(),
        probe: super::probe,
        new: super::new,
    });
    const REQUEST_FIELDS: &'static [&'static str] = REQUEST_FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = RESPONSE_FIELDS;
    const COLOUR: &'static str = "#e3b341";

    /// Every request but Produce.
    fn expects_answer(e: &Entry) -> bool {
        !matches!(request_kind(e), Some(request::Kind::Kafka(r)) if r.api_key == PRODUCE)
    }
}

impl Messages for Kafka {
    type Request = KafkaRequest;
    type Response = KafkaResponse;
    fn request_json(m: &KafkaRequest) -> impl Serialize + '_ {
        KafkaRequestJson(m)
    }
    fn response_json(m: &KafkaResponse) -> impl Serialize + '_ {
        KafkaResponseJson(m)
    }
    /// The API's name: Produce, Fetch, Metadata, …
    fn method(m: &KafkaRequest) -> Option<&str> {
        Some(&m.api_name)
    }
    /// The first topic named, or empty.
    fn path(m: &KafkaRequest) -> Option<&str> {
        Some(m.topics.first().map_or("", |t| t.name.as_str()))
    }
    /// The error code: top-level, or the first non-zero of a topic or partition.
    fn status(m: &KafkaResponse, _: Option<&request::Kind>) -> Option<i64> {
        Some(i64::from(m.error_code))
    }
    fn failed(m: &KafkaResponse, _: &Entry) -> bool {
        m.error_code != 0
    }
}

heap_fields! {
    KafkaPartition {}
    KafkaTopic { name, partitions }
    KafkaRequest { api_name, client_id, topics, group_id }
    KafkaResponse { topics, api_name }
}
