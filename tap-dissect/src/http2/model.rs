//! HTTP/2 in the registry. Its entries carry HTTP/1's messages
//! (`HttpRequest`, `HttpResponse`, in `http1/model.rs`).

use crate::ProtocolSpec;
use crate::http1::json;
use crate::registry::{Protocol, StatusClasses};
use proto::v1::{self, Entry};

pub struct Http2;

impl Protocol for Http2 {
    const ID: v1::Protocol = v1::Protocol::Http2;
    // The preface is unmistakable; mid-stream it takes a run of valid frame headers.
    const TCP: Option<ProtocolSpec> = Some(ProtocolSpec {
        name: Self::ID.name(),
        probe: super::probe,
        new: super::new,
    });
    const REQUEST_FIELDS: &'static [&'static str] = json::REQUEST_FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = json::RESPONSE_FIELDS;
    const COLOUR: &'static str = "#79c0ff";
    const STATUS: StatusClasses = StatusClasses::HTTP;

    fn expects_answer(_: &Entry) -> bool {
        true
    }
}
