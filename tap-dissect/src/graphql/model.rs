//! GraphQL in the registry. Never probed: the HTTP dissectors make its
//! entries from requests that carry a GraphQL operation.

use super::json::{GraphqlRequestJson, GraphqlResponseJson, REQUEST_FIELDS, RESPONSE_FIELDS};
use crate::heap::heap_fields;
use crate::registry::{Messages, Protocol, StatusClasses};
use proto::v1::{self, Entry, GraphqlRequest, GraphqlResponse, request};
use serde::Serialize;

pub struct Graphql;

impl Protocol for Graphql {
    const ID: v1::Protocol = v1::Protocol::Graphql;
    const REQUEST_FIELDS: &'static [&'static str] = REQUEST_FIELDS;
    const RESPONSE_FIELDS: &'static [&'static str] = RESPONSE_FIELDS;
    const COLOUR: &'static str = "#f778ba";
    const STATUS: StatusClasses = StatusClasses::HTTP;

    fn expects_answer(_: &Entry) -> bool {
        true
    }
}

impl Messages for Graphql {
    type Request = GraphqlRequest;
    type Response = GraphqlResponse;
    fn request_json(m: &GraphqlRequest) -> impl Serialize + '_ {
        GraphqlRequestJson(m)
    }
    fn response_json(m: &GraphqlResponse) -> impl Serialize + '_ {
        GraphqlResponseJson(m)
    }
    /// query, mutation or subscription.
    fn method(m: &GraphqlRequest) -> Option<&str> {
        Some(&m.operation_type)
    }
    fn path(m: &GraphqlRequest) -> Option<&str> {
        Some(generic_path(m))
    }
    /// The HTTP status: GraphQL reports its errors in the body (`errors`).
    fn status(m: &GraphqlResponse, _: Option<&request::Kind>) -> Option<i64> {
        m.http.as_ref().map(|h| i64::from(h.status))
    }
    /// A 5xx, or a result with errors and no data (a failed operation;
    /// errors beside data are a partial success).
    fn failed(m: &GraphqlResponse, _: &Entry) -> bool {
        m.http.as_ref().is_some_and(|h| h.status >= 500) || (m.errors > 0 && !m.has_data)
    }
}

/// The generic `request.path`: the operation's name, or for an anonymous
/// operation the HTTP path without its query string (which, for a GET,
/// holds the whole document).
pub fn generic_path(r: &GraphqlRequest) -> &str {
    if !r.operation_name.is_empty() {
        return &r.operation_name;
    }
    let path = r.http.as_ref().map_or("", |h| h.path.as_str());
    path.split('?').next().unwrap_or(path)
}

heap_fields! {
    GraphqlRequest { operation_type, operation_name, query, variables, http }
    GraphqlResponse { http, error }
}
