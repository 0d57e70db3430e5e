//! DNS in the registry: over UDP and over TCP.

use super::json::{DnsRequestJson, DnsResponseJson, REQUEST_FIELDS, RESPONSE_FIELDS};
use crate::heap::heap_fields;
use crate::registry::{Messages, Protocol, StatusClasses};
use crate::{DatagramSpec, ProtocolSpec};
use proto::v1::{self, DnsQuestion, DnsRecord, DnsRequest, DnsResponse, Entry, request};
use serde::Serialize;

/// NXDOMAIN: the name does not exist, an answer rather than a failure.
const NXDOMAIN: u32 = 3;

pub struct Dns;

impl Protocol for Dns {
    const ID: v1::Protocol = v1::Protocol::Dns;
    // Binary and short to recognise: probed after the protocols with a clearer start.
    const TCP: Option<ProtocolSpec> = Some(ProtocolSpec {
        name: Self::ID.name(),
        probe: super::probe,
        new: super::new,
    });
    const DATAGRAM: Option<DatagramSpec> = Some(DatagramSpec {
        name: Self::ID.name(),
        probe: super::probe_datagram,
        new: super::new_datagram,
    });
    const REQUEST_FIELDS: &'static [&'static str] = REQUEST_FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = RESPONSE_FIELDS;
    const COLOUR: &'static str = "#7ee787";
    /// NOERROR; NXDOMAIN is an answer about the name (the caller's
    /// concern); SERVFAIL, REFUSED, … are failures.
    const STATUS: StatusClasses = StatusClasses {
        ok: &[[0, 0]],
        redirect: &[],
        client: &[[3, 3]],
    };

    fn expects_answer(_: &Entry) -> bool {
        true
    }
}

impl Messages for Dns {
    type Request = DnsRequest;
    type Response = DnsResponse;
    fn request_json(m: &DnsRequest) -> impl Serialize + '_ {
        DnsRequestJson(m)
    }
    fn response_json(m: &DnsResponse) -> impl Serialize + '_ {
        DnsResponseJson(m)
    }
    /// The query type (A, AAAA, SRV, …).
    fn method(m: &DnsRequest) -> Option<&str> {
        Some(&m.qtype)
    }
    /// The name asked for.
    fn path(m: &DnsRequest) -> Option<&str> {
        Some(&m.name)
    }
    fn status(m: &DnsResponse, _: Option<&request::Kind>) -> Option<i64> {
        Some(i64::from(m.rcode))
    }
    /// An rcode other than 0 (NOERROR) or 3 (NXDOMAIN): SERVFAIL, REFUSED,
    /// FORMERR … are failures.
    fn failed(m: &DnsResponse, _: &Entry) -> bool {
        m.rcode != 0 && m.rcode != NXDOMAIN
    }
}

heap_fields! {
    DnsQuestion { name, qtype, qclass }
    DnsRequest { opcode, name, qtype, qclass, questions, transport }
    DnsRecord { name, rtype, rclass, data }
    DnsResponse { rcode_name, opcode, questions, answers, transport }
}
