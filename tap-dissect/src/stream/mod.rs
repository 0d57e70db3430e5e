//! `tcp` and `udp` entries: flows no dissector claimed, one entry per flow
//! with its byte and packet counts each way (made by `tcp.rs` and `udp.rs`,
//! the detect stage).

use crate::heap::heap_fields;
use crate::registry::{Messages, Protocol};
use proto::v1::{self, Entry, StreamSide, request};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// `request` and `response` of an undissected flow.
const FIELDS: &[&str] = &["bytes", "ended", "packets"];

/// An undissected TCP connection.
pub struct Tcp;

impl Protocol for Tcp {
    const ID: v1::Protocol = v1::Protocol::Tcp;
    const REQUEST_FIELDS: &'static [&'static str] = FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = FIELDS;
    const COLOUR: &'static str = "#8b949e";
}

/// An undissected UDP flow: the same messages as `tcp`.
pub struct Udp;

impl Protocol for Udp {
    const ID: v1::Protocol = v1::Protocol::Udp;
    const REQUEST_FIELDS: &'static [&'static str] = FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = FIELDS;
    const COLOUR: &'static str = "#6e7681";
}

/// Both sides of a `tcp` or `udp` entry: counts, no generic fields.
impl Messages for Tcp {
    type Request = StreamSide;
    type Response = StreamSide;
    fn request_json(m: &StreamSide) -> impl Serialize + '_ {
        StreamSideJson(m)
    }
    fn response_json(m: &StreamSide) -> impl Serialize + '_ {
        StreamSideJson(m)
    }
    fn method(_: &StreamSide) -> Option<&str> {
        None
    }
    fn path(_: &StreamSide) -> Option<&str> {
        None
    }
    fn status(_: &StreamSide, _: Option<&request::Kind>) -> Option<i64> {
        None
    }
    /// The connection ended with a reset (UDP flows never do).
    fn failed(m: &StreamSide, _: &Entry) -> bool {
        m.ended == "rst"
    }
}

/// A side of an undissected flow: `{"bytes":…,"packets":…}`, plus `"ended"` on the response side.
pub(crate) struct StreamSideJson<'a>(&'a StreamSide);

impl Serialize for StreamSideJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("bytes", &self.0.bytes)?;
        m.serialize_entry("packets", &self.0.packets)?;
        if !self.0.ended.is_empty() {
            m.serialize_entry("ended", &self.0.ended)?;
        }
        m.end()
    }
}

heap_fields! {
    StreamSide { ended }
}

#[cfg(test)]
mod tests {
    use crate::json::field_lists::{keys, set};

    #[test]
    fn the_field_list_is_what_the_json_form_writes() {
        assert_eq!(
            set(super::FIELDS),
            keys(include_str!("mod.rs"), &["StreamSideJson"])
        );
    }
}
