//! JSON form of a SOCKS5 handshake. The request carries the generic fields
//! `method` (the command: `CONNECT`, `BIND`, `UDP_ASSOCIATE`) and `path`
//! (`host:port` asked for); the response's `status` is the proxy's reply
//! code (0 succeeded), null when it never replied.

use proto::v1::{SocksRequest, SocksResponse};
use serde::ser::{Serialize, SerializeMap, Serializer};

pub(crate) const REQUEST_FIELDS: &[&str] = &[
    "auth_methods",
    "command",
    "credentials",
    "host",
    "method",
    "path",
    "port",
];

pub(crate) const RESPONSE_FIELDS: &[&str] = &[
    "auth_method",
    "authenticated",
    "bound_host",
    "bound_port",
    "reply",
    "reply_name",
    "status",
];

pub(crate) struct SocksRequestJson<'a>(pub(crate) &'a SocksRequest);

impl Serialize for SocksRequestJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("method", &r.command)?;
        m.serialize_entry("path", &r.target)?;
        m.serialize_entry("command", &r.command)?;
        m.serialize_entry("host", &r.host)?;
        m.serialize_entry("port", &r.port)?;
        m.serialize_entry("auth_methods", &r.auth_methods)?;
        m.serialize_entry("credentials", &r.credentials)?;
        m.end()
    }
}

pub(crate) struct SocksResponseJson<'a>(pub(crate) &'a SocksResponse);

impl Serialize for SocksResponseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("status", &r.reply)?;
        m.serialize_entry("auth_method", &r.auth_method)?;
        m.serialize_entry("authenticated", &r.authenticated)?;
        m.serialize_entry("reply", &r.reply)?;
        m.serialize_entry("reply_name", &r.reply_name)?;
        m.serialize_entry("bound_host", &r.bound_host)?;
        m.serialize_entry("bound_port", &r.bound_port)?;
        m.end()
    }
}

/// The field lists are exactly what the serializers write.
#[cfg(test)]
mod field_lists {
    use crate::json::field_lists::{keys, set};

    #[test]
    fn the_field_lists_are_what_the_json_form_writes() {
        let src = include_str!("json.rs");
        assert_eq!(
            set(super::REQUEST_FIELDS),
            keys(src, &["SocksRequestJson"]),
            "REQUEST_FIELDS"
        );
        assert_eq!(
            set(super::RESPONSE_FIELDS),
            keys(src, &["SocksResponseJson"]),
            "RESPONSE_FIELDS"
        );
    }
}
