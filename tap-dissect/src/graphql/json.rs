//! JSON form of GraphQL operations over HTTP. The request carries the generic
//! `method` (the operation type: `query`, `mutation`, `subscription`) and
//! `path` (the operation's name, or the HTTP path of an anonymous one), the
//! response the generic `status` (the HTTP status); the HTTP request and
//! response they came in are kept whole under `http`.

use crate::http1::json::{HttpRequestJson, HttpResponseJson};
use proto::v1::{GraphqlRequest, GraphqlResponse};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// The filter's field names under `request` and `response`; `json::fields`
/// lists them for the UI.
pub(crate) const REQUEST_FIELDS: &[&str] = &[
    "batched",
    "http",
    "method",
    "operation_name",
    "operation_type",
    "path",
    "query",
    "query_truncated",
    "variables",
    "variables_truncated",
];
pub(crate) const RESPONSE_FIELDS: &[&str] = &["data", "error", "errors", "http", "json", "status"];

pub(crate) struct GraphqlRequestJson<'a>(pub(crate) &'a GraphqlRequest);

impl Serialize for GraphqlRequestJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("method", &r.operation_type)?;
        m.serialize_entry("path", super::model::generic_path(r))?;
        m.serialize_entry("operation_type", &r.operation_type)?;
        m.serialize_entry("operation_name", &r.operation_name)?;
        m.serialize_entry("query", &r.query)?;
        if r.query_truncated {
            m.serialize_entry("query_truncated", &true)?;
        }
        m.serialize_entry("variables", &r.variables)?;
        if r.variables_truncated {
            m.serialize_entry("variables_truncated", &true)?;
        }
        m.serialize_entry("batched", &r.batched)?;
        match &r.http {
            Some(h) => m.serialize_entry("http", &HttpRequestJson(h))?,
            None => m.serialize_entry("http", &())?,
        }
        m.end()
    }
}

pub(crate) struct GraphqlResponseJson<'a>(pub(crate) &'a GraphqlResponse);

impl Serialize for GraphqlResponseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("status", &r.http.as_ref().map(|h| h.status))?;
        m.serialize_entry("errors", &r.errors)?;
        if !r.error.is_empty() {
            m.serialize_entry("error", &r.error)?;
        }
        m.serialize_entry("data", &r.has_data)?;
        m.serialize_entry("json", &r.json)?;
        match &r.http {
            Some(h) => m.serialize_entry("http", &HttpResponseJson(h))?,
            None => m.serialize_entry("http", &())?,
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{HttpRequest, HttpResponse};

    #[test]
    fn request_has_generic_fields_and_the_http_request() {
        let r = GraphqlRequest {
            operation_type: "mutation".into(),
            operation_name: "AddUser".into(),
            query: "mutation AddUser($n: String!) { addUser(name: $n) { id } }".into(),
            variables: Some(r#"{"n":"ada"}"#.into()),
            http: Some(HttpRequest {
                method: "POST".into(),
                path: "/graphql?x=1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(GraphqlRequestJson(&r)).unwrap();
        assert_eq!(v["method"], "mutation");
        assert_eq!(v["path"], "AddUser");
        assert_eq!(v["operation_name"], "AddUser");
        assert_eq!(v["variables"], r#"{"n":"ada"}"#);
        assert_eq!(v["batched"], 0);
        assert_eq!(v["http"]["method"], "POST");
        assert!(v.get("query_truncated").is_none());
        // Anonymous: the HTTP path without its query string.
        let anonymous = GraphqlRequest {
            operation_type: "query".into(),
            http: r.http.clone(),
            ..Default::default()
        };
        let v = serde_json::to_value(GraphqlRequestJson(&anonymous)).unwrap();
        assert_eq!(v["path"], "/graphql");
        assert_eq!(v["variables"], serde_json::Value::Null);
    }

    #[test]
    fn response_has_http_status_and_error_count() {
        let r = GraphqlResponse {
            errors: 2,
            error: "Cannot query field 'x' on type 'Query'.".into(),
            has_data: false,
            json: true,
            http: Some(HttpResponse {
                status: 200,
                ..Default::default()
            }),
        };
        let v = serde_json::to_value(GraphqlResponseJson(&r)).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["errors"], 2);
        assert_eq!(v["error"], "Cannot query field 'x' on type 'Query'.");
        assert_eq!(v["data"], false);
        assert_eq!(v["http"]["status"], 200);
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
            keys(src, &["GraphqlRequestJson"]),
            "REQUEST_FIELDS"
        );
        assert_eq!(
            set(super::RESPONSE_FIELDS),
            keys(src, &["GraphqlResponseJson"]),
            "RESPONSE_FIELDS"
        );
    }
}
