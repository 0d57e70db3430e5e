//! The entry's JSON form: one object per line from `kubetap read --json` and in
//! the hub's API. Field names are a stable contract (see docs/entries.md); this
//! serializer writes straight to the output without building a tree.

use crate::registry;
use proto::v1::{Endpoint, Entry, Protocol, Tunnel};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::time::{Duration, UNIX_EPOCH};

/// The entry's own fields, as the filter language and the UI name them.
pub const ENTRY_FIELDS: &[&str] = &[
    "dst",
    "elapsed_us",
    "flags",
    "flow_id",
    "id",
    "node",
    "protocol",
    "redacted",
    "request",
    "request_size",
    "response",
    "response_size",
    "src",
    "stream_id",
    "tls",
    "ts",
    "tunnel",
];
/// The fields of `src` and `dst`.
pub const ENDPOINT_FIELDS: &[&str] = &["ip", "namespace", "pod", "port", "service"];
/// The fields of `tunnel`.
pub const TUNNEL_FIELDS: &[&str] = &["dst", "kind", "src", "vni"];

/// Serializes an [`Entry`] in its JSON form: `serde_json::to_writer(w, &EntryJson(&e))`.
pub struct EntryJson<'a>(pub &'a Entry);

/// RFC 3339 UTC timestamp with nanoseconds, e.g. `2026-11-24T19:36:50.123456789Z`.
pub fn rfc3339_nanos(ts_ns: u64) -> impl std::fmt::Display {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(ts_ns))
}

impl Serialize for EntryJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &e.id)?;
        m.serialize_entry("ts", &Display(rfc3339_nanos(e.ts_ns)))?;
        m.serialize_entry("node", &e.node)?;
        let protocol = Protocol::try_from(e.protocol).unwrap_or(Protocol::Unspecified);
        m.serialize_entry("protocol", protocol.name())?;
        m.serialize_entry("src", &EndpointJson(e.src.as_ref()))?;
        m.serialize_entry("dst", &EndpointJson(e.dst.as_ref()))?;
        m.serialize_entry("tls", &e.tls)?;
        m.serialize_entry("elapsed_us", &e.elapsed_ns.map(|ns| ns / 1000))?;
        m.serialize_entry("request_size", &e.request_size)?;
        m.serialize_entry("response_size", &e.response_size)?;
        m.serialize_entry("flow_id", proto::FlowHex::new(e.flow_id).as_str())?;
        m.serialize_entry("stream_id", &e.stream_id)?;
        m.serialize_entry("request", &RequestJson(e))?;
        m.serialize_entry("response", &ResponseJson(e))?;
        m.serialize_entry("redacted", &e.redacted)?;
        m.serialize_entry("flags", &e.flags)?;
        m.serialize_entry("tunnel", &TunnelJson(e.tunnel.as_deref()))?;
        m.end()
    }
}

/// The `request` member of an entry's JSON form alone (null when absent):
/// the filter language reads protocol-specific fields from it.
pub struct RequestJson<'a>(pub &'a Entry);

impl Serialize for RequestJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        registry::request_json(registry::request_kind(self.0), s)
    }
}

/// The `response` member of an entry's JSON form alone (null when absent).
pub struct ResponseJson<'a>(pub &'a Entry);

impl Serialize for ResponseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        registry::response_json(registry::response_kind(self.0), s)
    }
}

/// Writes a `Display` value as a JSON string without an intermediate `String`.
pub(crate) struct Display<T>(pub(crate) T);

impl<T: std::fmt::Display> Serialize for Display<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `{kind, src, dst, vni}`, or null outside a tunnel.
struct TunnelJson<'a>(Option<&'a Tunnel>);

impl Serialize for TunnelJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(t) = self.0 else {
            return s.serialize_none();
        };
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("kind", &t.kind)?;
        m.serialize_entry("src", &t.src)?;
        m.serialize_entry("dst", &t.dst)?;
        m.serialize_entry("vni", &t.vni)?;
        m.end()
    }
}

struct EndpointJson<'a>(Option<&'a Endpoint>);

impl Serialize for EndpointJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(ep) = self.0 else {
            return s.serialize_none();
        };
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("ip", &ep.ip)?;
        m.serialize_entry("port", &ep.port)?;
        m.serialize_entry("pod", &ep.pod)?;
        m.serialize_entry("namespace", &ep.namespace)?;
        m.serialize_entry("service", &ep.service)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{
        Body, Header, HttpRequest, HttpResponse, Request, Response, request, response,
    };

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn entry_json_has_the_documented_fields() {
        let e = Entry {
            id: "00000000000000ab-0".into(),
            ts_ns: 1_795_203_410_123_456_789,
            node: "node-1".into(),
            protocol: Protocol::Http as i32,
            src: Some(Endpoint {
                ip: "10.1.0.5".into(),
                port: 51234,
                ..Default::default()
            }),
            dst: Some(Endpoint {
                ip: "10.1.1.7".into(),
                port: 8080,
                ..Default::default()
            }),
            elapsed_ns: Some(1_834_999),
            request_size: 312,
            response_size: 2048,
            flow_id: 0xab,
            request: Some(Request {
                kind: Some(request::Kind::Http(Box::new(HttpRequest {
                    method: "GET".into(),
                    path: "/catalogue?size=5".into(),
                    version: "1.1".into(),
                    headers: vec![
                        header("Host", "catalogue"),
                        header("Accept", "a"),
                        header("accept", "b"),
                    ],
                    ..Default::default()
                }))),
            }),
            response: Some(Response {
                kind: Some(response::Kind::Http(Box::new(HttpResponse {
                    status: 200,
                    reason: "OK".into(),
                    version: "1.1".into(),
                    body: Some(Body {
                        data: vec![0xff, 0x00],
                        wire_size: 2,
                        ..Default::default()
                    }),
                    ..Default::default()
                }))),
            }),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::to_value(EntryJson(&e)).unwrap();
        assert_eq!(v["ts"], "2026-11-20T19:36:50.123456789Z");
        assert_eq!(v["protocol"], "http");
        assert_eq!(v["src"]["port"], 51234);
        assert_eq!(v["src"]["pod"], serde_json::Value::Null);
        assert_eq!(v["elapsed_us"], 1834);
        assert_eq!(v["flow_id"], "00000000000000ab");
        assert_eq!(v["request"]["headers"]["host"], "catalogue");
        assert_eq!(v["request"]["headers"]["accept"], "a, b");
        assert_eq!(v["request"]["body"], serde_json::Value::Null);
        assert_eq!(v["response"]["status"], 200);
        assert_eq!(v["response"]["body"], "/wA=");
        assert_eq!(v["response"]["body_encoding"], "base64");
        assert_eq!(v["flags"], serde_json::json!([]));
    }
}

/// Holds a field list to the serializer that writes it: each protocol's
/// `json.rs` tests its lists with [`field_lists::keys`].
#[cfg(test)]
pub(crate) mod field_lists {
    use std::collections::BTreeSet;

    /// The keys the named items of `src` write: `Serialize` impls by type
    /// name, functions as `fn name`.
    pub(crate) fn keys(src: &str, items: &[&str]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for name in items {
            let at = if name.starts_with("fn ") {
                src.find(&format!("{name}("))
                    .or_else(|| src.find(&format!("{name}<")))
            } else {
                src.find(&format!("Serialize for {name} "))
                    .or_else(|| src.find(&format!("Serialize for {name}<")))
            }
            .unwrap_or_else(|| panic!("no {name}"));
            // A top-level item ends at the first `}` in column 0.
            let end = src[at..].find("\n}\n").map_or(src.len(), |e| at + e);
            for part in src[at..end].split("serialize_entry(\"").skip(1) {
                out.insert(part.split('"').next().unwrap().to_string());
            }
        }
        out
    }

    pub(crate) fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_entrys_own_fields_are_what_its_json_form_writes() {
        use super::*;
        let here = include_str!("json.rs");
        assert_eq!(set(ENTRY_FIELDS), keys(here, &["EntryJson"]));
        assert_eq!(set(ENDPOINT_FIELDS), keys(here, &["EndpointJson"]));
        assert_eq!(set(TUNNEL_FIELDS), keys(here, &["TunnelJson"]));
        // Every protocol the entry can have is in the registry once.
        let listed: Vec<&str> = crate::registry::protocols()
            .iter()
            .map(|f| f.protocol)
            .collect();
        let mut n = 0;
        for p in (1..64).filter_map(|i| Protocol::try_from(i).ok()) {
            n += 1;
            let name = p.name();
            assert_eq!(listed.iter().filter(|l| **l == name).count(), 1, "{name}");
        }
        assert_eq!(n, listed.len(), "{listed:?}");
    }
}
