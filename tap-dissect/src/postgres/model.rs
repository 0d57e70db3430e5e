//! PostgreSQL in the registry.

use super::json::{PostgresRequestJson, PostgresResponseJson, REQUEST_FIELDS, RESPONSE_FIELDS};
use crate::ProtocolSpec;
use crate::heap::heap_fields;
use crate::registry::{Messages, Protocol};
use proto::v1::{
    self, Entry, PostgresError, PostgresRequest, PostgresResponse, PostgresResult, PostgresRow,
    PostgresValue, request,
};
use serde::Serialize;

pub struct Postgres;

impl Protocol for Postgres {
    const ID: v1::Protocol = v1::Protocol::Postgres;
    // A startup packet's length and protocol code; mid-stream a run of typed messages.
    const TCP: Option<ProtocolSpec> = Some(ProtocolSpec {
        name: Self::ID.name(),
        probe: super::probe,
        new: super::new,
    });
    const REQUEST_FIELDS: &'static [&'static str] = REQUEST_FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = RESPONSE_FIELDS;
    const COLOUR: &'static str = "#a5d6ff";

    /// The dissector already drops `no_response` where nothing answers
    /// (a CancelRequest).
    fn expects_answer(_: &Entry) -> bool {
        true
    }
}

impl Messages for Postgres {
    type Request = PostgresRequest;
    type Response = PostgresResponse;
    fn request_json(m: &PostgresRequest) -> impl Serialize + '_ {
        PostgresRequestJson(m)
    }
    fn response_json(m: &PostgresResponse) -> impl Serialize + '_ {
        PostgresResponseJson(m)
    }
    /// The SQL verb; STARTUP, CANCEL, FUNCTION, NOTIFICATION otherwise.
    fn method(m: &PostgresRequest) -> Option<&str> {
        Some(&m.verb)
    }
    /// The SQL text; a notification's channel.
    fn path(m: &PostgresRequest) -> Option<&str> {
        if m.kind == "notification" {
            Some(&m.channel)
        } else {
            Some(&m.sql)
        }
    }
    /// SQLSTATEs are not numbers: 0 for success, 1 for an ErrorResponse (its
    /// code is `response.sqlstate`).
    fn status(m: &PostgresResponse, _: Option<&request::Kind>) -> Option<i64> {
        Some(i64::from(m.error.is_some()))
    }
    /// An ErrorResponse ended it.
    fn failed(m: &PostgresResponse, _: &Entry) -> bool {
        m.error.is_some()
    }
}

heap_fields! {
    PostgresValue { text }
    PostgresRow { values }
    PostgresError { severity, code, message, detail, hint }
    PostgresResult { command_tag, columns, rows, copy }
    PostgresRequest {
        kind, verb, sql, statement, portal, parameters, user, database,
        application_name, options, protocol_version, encryption, channel,
    }
    PostgresResponse {
        results, error, notices, auth_method, sasl_mechanism, parameters,
        encryption, transaction_status, payload, function_result,
    }
}
