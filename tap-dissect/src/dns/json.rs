//! JSON form of DNS queries and responses. Besides the DNS fields, a query
//! carries the generic `method` (its type) and `path` (its name), and a
//! response `status` (its numeric rcode), so filters written for HTTP work here.

use proto::v1::{DnsQuestion, DnsRecord, DnsRequest, DnsResponse};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// A question: `{"name":…,"type":…,"class":…}`.
struct QuestionJson<'a>(&'a DnsQuestion);

/// The filter's field names under `request` and `response`; `json::fields`
/// lists them for the UI.
pub(crate) const REQUEST_FIELDS: &[&str] = &[
    "ad",
    "cd",
    "id",
    "method",
    "name",
    "opcode",
    "path",
    "qclass",
    "qtype",
    "questions",
    "rd",
    "transport",
];
pub(crate) const RESPONSE_FIELDS: &[&str] = &[
    "aa",
    "ad",
    "additional_count",
    "answers",
    "authority_count",
    "cd",
    "id",
    "opcode",
    "questions",
    "ra",
    "rcode",
    "rcode_name",
    "rd",
    "status",
    "tc",
    "transport",
];

impl Serialize for QuestionJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("name", &self.0.name)?;
        m.serialize_entry("type", &self.0.qtype)?;
        m.serialize_entry("class", &self.0.qclass)?;
        m.end()
    }
}

struct QuestionsJson<'a>(&'a [DnsQuestion]);

impl Serialize for QuestionsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(QuestionJson))
    }
}

/// A record: `{"name":…,"type":…,"class":…,"ttl":…,"data":…}`.
struct RecordJson<'a>(&'a DnsRecord);

impl Serialize for RecordJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("name", &r.name)?;
        m.serialize_entry("type", &r.rtype)?;
        m.serialize_entry("class", &r.rclass)?;
        m.serialize_entry("ttl", &r.ttl)?;
        m.serialize_entry("data", &r.data)?;
        m.end()
    }
}

struct RecordsJson<'a>(&'a [DnsRecord]);

impl Serialize for RecordsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(RecordJson))
    }
}

pub(crate) struct DnsRequestJson<'a>(pub(crate) &'a DnsRequest);

impl Serialize for DnsRequestJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("method", &r.qtype)?;
        m.serialize_entry("path", &r.name)?;
        m.serialize_entry("id", &r.id)?;
        m.serialize_entry("opcode", &r.opcode)?;
        m.serialize_entry("name", &r.name)?;
        m.serialize_entry("qtype", &r.qtype)?;
        m.serialize_entry("qclass", &r.qclass)?;
        m.serialize_entry("questions", &QuestionsJson(&r.questions))?;
        m.serialize_entry("rd", &r.rd)?;
        m.serialize_entry("cd", &r.cd)?;
        m.serialize_entry("ad", &r.ad)?;
        m.serialize_entry("transport", &r.transport)?;
        m.end()
    }
}

pub(crate) struct DnsResponseJson<'a>(pub(crate) &'a DnsResponse);

impl Serialize for DnsResponseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("status", &r.rcode)?;
        m.serialize_entry("id", &r.id)?;
        m.serialize_entry("rcode", &r.rcode)?;
        m.serialize_entry("rcode_name", &r.rcode_name)?;
        m.serialize_entry("opcode", &r.opcode)?;
        m.serialize_entry("questions", &QuestionsJson(&r.questions))?;
        m.serialize_entry("answers", &RecordsJson(&r.answers))?;
        m.serialize_entry("authority_count", &r.authority_count)?;
        m.serialize_entry("additional_count", &r.additional_count)?;
        m.serialize_entry("aa", &r.aa)?;
        m.serialize_entry("tc", &r.tc)?;
        m.serialize_entry("ra", &r.ra)?;
        m.serialize_entry("ad", &r.ad)?;
        m.serialize_entry("rd", &r.rd)?;
        m.serialize_entry("cd", &r.cd)?;
        m.serialize_entry("transport", &r.transport)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GenericFields;
    use crate::json::EntryJson;
    use proto::v1::{Entry, Protocol, Request, Response, request, response};

    #[test]
    fn dns_entry_has_generic_and_dns_fields() {
        let question = DnsQuestion {
            name: "web.example.com".into(),
            qtype: "AAAA".into(),
            qclass: "IN".into(),
        };
        let e = Entry {
            protocol: Protocol::Dns as i32,
            request: Some(Request {
                kind: Some(request::Kind::Dns(Box::new(DnsRequest {
                    id: 4660,
                    opcode: "QUERY".into(),
                    name: question.name.clone(),
                    qtype: question.qtype.clone(),
                    qclass: question.qclass.clone(),
                    questions: vec![question.clone()],
                    rd: true,
                    transport: "udp".into(),
                    ..Default::default()
                }))),
            }),
            response: Some(Response {
                kind: Some(response::Kind::Dns(Box::new(DnsResponse {
                    id: 4660,
                    rcode: 3,
                    rcode_name: "NXDOMAIN".into(),
                    questions: vec![question],
                    answers: vec![DnsRecord {
                        name: "web.example.com".into(),
                        rtype: "AAAA".into(),
                        rclass: "IN".into(),
                        ttl: 60,
                        data: "fd00::7".into(),
                    }],
                    authority_count: 1,
                    ..Default::default()
                }))),
            }),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::to_value(EntryJson(&e)).unwrap();
        assert_eq!(v["protocol"], "dns");
        assert_eq!(v["request"]["method"], "AAAA");
        assert_eq!(v["request"]["path"], "web.example.com");
        assert_eq!(v["request"]["id"], 4660);
        assert_eq!(v["request"]["rd"], true);
        assert_eq!(v["request"]["questions"][0]["type"], "AAAA");
        assert_eq!(v["response"]["status"], 3);
        assert_eq!(v["response"]["rcode_name"], "NXDOMAIN");
        assert_eq!(v["response"]["answers"][0]["data"], "fd00::7");
        assert_eq!(v["response"]["answers"][0]["ttl"], 60);
        assert_eq!(v["response"]["authority_count"], 1);
        assert_eq!(e.method(), Some("AAAA"));
        assert_eq!(e.path(), Some("web.example.com"));
        assert_eq!(e.status(), Some(3));
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
            keys(src, &["DnsRequestJson"]),
            "REQUEST_FIELDS"
        );
        assert_eq!(
            set(super::RESPONSE_FIELDS),
            keys(src, &["DnsResponseJson"]),
            "RESPONSE_FIELDS"
        );
    }
}
