//! JSON form of Kafka requests and responses. Besides the Kafka fields, a
//! request carries the generic `method` (the API's name) and `path` (the first
//! topic), and a response `status`: its error code, 0 for success.

use proto::v1::{KafkaPartition, KafkaRequest, KafkaResponse, KafkaTopic};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

struct Topics<'a>(&'a [KafkaTopic]);

/// The filter's field names under `request` and `response`; `json::fields`
/// lists them for the UI.
pub(crate) const REQUEST_FIELDS: &[&str] = &[
    "api_key",
    "api_name",
    "api_version",
    "body_decoded",
    "body_size",
    "client_id",
    "correlation_id",
    "group_id",
    "method",
    "path",
    "topics",
];
pub(crate) const RESPONSE_FIELDS: &[&str] = &[
    "api_key",
    "api_name",
    "body_decoded",
    "body_size",
    "correlation_id",
    "error_code",
    "status",
    "topics",
];

impl Serialize for Topics<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for t in self.0 {
            seq.serialize_element(&TopicJson(t))?;
        }
        seq.end()
    }
}

struct TopicJson<'a>(&'a KafkaTopic);

impl Serialize for TopicJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", &self.0.name)?;
        let parts: Vec<PartitionJson> = self.0.partitions.iter().map(PartitionJson).collect();
        m.serialize_entry("partitions", &parts)?;
        m.end()
    }
}

struct PartitionJson<'a>(&'a KafkaPartition);

impl Serialize for PartitionJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("index", &p.index)?;
        m.serialize_entry("error_code", &p.error_code)?;
        m.serialize_entry("record_count", &p.record_count)?;
        m.serialize_entry("records_size", &p.records_size)?;
        m.end()
    }
}

pub(crate) struct KafkaRequestJson<'a>(pub(crate) &'a KafkaRequest);

impl Serialize for KafkaRequestJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("method", &r.api_name)?;
        m.serialize_entry("path", r.topics.first().map_or("", |t| t.name.as_str()))?;
        m.serialize_entry("api_key", &r.api_key)?;
        m.serialize_entry("api_name", &r.api_name)?;
        m.serialize_entry("api_version", &r.api_version)?;
        m.serialize_entry("correlation_id", &r.correlation_id)?;
        m.serialize_entry("client_id", &r.client_id)?;
        if !r.group_id.is_empty() {
            m.serialize_entry("group_id", &r.group_id)?;
        }
        m.serialize_entry("topics", &Topics(&r.topics))?;
        m.serialize_entry("body_decoded", &r.body_decoded)?;
        m.serialize_entry("body_size", &r.body_size)?;
        m.end()
    }
}

pub(crate) struct KafkaResponseJson<'a>(pub(crate) &'a KafkaResponse);

impl Serialize for KafkaResponseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("status", &r.error_code)?;
        m.serialize_entry("correlation_id", &r.correlation_id)?;
        m.serialize_entry("error_code", &r.error_code)?;
        m.serialize_entry("api_key", &r.api_key)?;
        m.serialize_entry("api_name", &r.api_name)?;
        m.serialize_entry("topics", &Topics(&r.topics))?;
        m.serialize_entry("body_decoded", &r.body_decoded)?;
        m.serialize_entry("body_size", &r.body_size)?;
        m.end()
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
            keys(src, &["KafkaRequestJson"]),
            "REQUEST_FIELDS"
        );
        assert_eq!(
            set(super::RESPONSE_FIELDS),
            keys(src, &["KafkaResponseJson"]),
            "RESPONSE_FIELDS"
        );
    }
}
