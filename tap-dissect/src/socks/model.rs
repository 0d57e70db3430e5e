//! SOCKS5 in the registry: one entry per handshake; a reply other than
//! succeeded, no acceptable method or refused credentials is a failure.

use super::json::{REQUEST_FIELDS, RESPONSE_FIELDS, SocksRequestJson, SocksResponseJson};
use crate::ProtocolSpec;
use crate::heap::heap_fields;
use crate::registry::{Messages, Protocol};
use proto::v1::{self, Entry, SocksRequest, SocksResponse, request};
use serde::Serialize;

pub struct Socks;

impl Protocol for Socks {
    const ID: v1::Protocol = v1::Protocol::Socks;
    const TCP: Option<ProtocolSpec> = Some(ProtocolSpec {
        name: Self::ID.name(),
        probe: super::probe,
        new: super::new,
    });
    const REQUEST_FIELDS: &'static [&'static str] = REQUEST_FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = RESPONSE_FIELDS;
    const COLOUR: &'static str = "#c297e0";

    /// A proxy answers every handshake it takes.
    fn expects_answer(_e: &Entry) -> bool {
        true
    }
}

impl Messages for Socks {
    type Request = SocksRequest;
    type Response = SocksResponse;
    fn request_json(m: &SocksRequest) -> impl Serialize + '_ {
        SocksRequestJson(m)
    }
    fn response_json(m: &SocksResponse) -> impl Serialize + '_ {
        SocksResponseJson(m)
    }
    fn method(m: &SocksRequest) -> Option<&str> {
        Some(&m.command)
    }
    fn path(m: &SocksRequest) -> Option<&str> {
        Some(&m.target)
    }
    fn status(m: &SocksResponse, _: Option<&request::Kind>) -> Option<i64> {
        m.reply.map(i64::from)
    }
    fn failed(m: &SocksResponse, _: &Entry) -> bool {
        m.reply.is_some_and(|r| r != 0)
            || m.auth_method == "no_acceptable"
            || m.authenticated == Some(false)
    }
}

heap_fields! {
    SocksRequest { command, host, auth_methods, target }
    SocksResponse { auth_method, reply_name, bound_host }
}
