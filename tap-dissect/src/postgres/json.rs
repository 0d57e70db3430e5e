//! JSON form of PostgreSQL requests and responses. Besides the PostgreSQL
//! fields, a request carries the generic `method` (the SQL verb, or STARTUP,
//! CANCEL, FUNCTION, NOTIFICATION) and `path` (the SQL text; a notification's
//! channel), and a response `status`: 0 for success, 1 when an ErrorResponse
//! ended it. SQLSTATEs (`42P01`) are not numbers, so the code is the
//! response's `sqlstate`, beside `error` with severity, code, message, detail
//! and hint. Fields that do not apply to a request's `kind` are left out.

use proto::v1::{
    Header, PostgresError, PostgresRequest, PostgresResponse, PostgresResult, PostgresRow,
    PostgresValue,
};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A value: its text, or null for SQL NULL.
struct ValueJson<'a>(&'a PostgresValue);

/// The filter's field names under `request` and `response`; `json::fields`
/// lists them for the UI.
pub(crate) const REQUEST_FIELDS: &[&str] = &[
    "application_name",
    "cancel_pid",
    "channel",
    "copy_bytes",
    "database",
    "encryption",
    "function_oid",
    "kind",
    "max_rows",
    "method",
    "options",
    "parameter_count",
    "parameters",
    "parameters_truncated",
    "path",
    "portal",
    "protocol_version",
    "sql",
    "sql_truncated",
    "statement",
    "user",
];
pub(crate) const RESPONSE_FIELDS: &[&str] = &[
    "auth_method",
    "backend_pid",
    "command_tag",
    "encryption",
    "error",
    "function_result",
    "notices",
    "notify_pid",
    "parameters",
    "payload",
    "results",
    "row_count",
    "sasl_mechanism",
    "sqlstate",
    "status",
    "transaction_status",
];

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0.text {
            Some(t) => s.serialize_str(t),
            None => s.serialize_none(),
        }
    }
}

struct ValuesJson<'a>(&'a [PostgresValue]);

impl Serialize for ValuesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            seq.serialize_element(&ValueJson(v))?;
        }
        seq.end()
    }
}

struct RowsJson<'a>(&'a [PostgresRow]);

impl Serialize for RowsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0 {
            seq.serialize_element(&ValuesJson(&r.values))?;
        }
        seq.end()
    }
}

/// Name-value pairs as an object, in wire order.
struct PairsJson<'a>(&'a [Header]);

impl Serialize for PairsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for h in self.0 {
            m.serialize_entry(&h.name, &h.value)?;
        }
        m.end()
    }
}

struct ErrorJson<'a>(&'a PostgresError);

impl Serialize for ErrorJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("severity", &e.severity)?;
        m.serialize_entry("code", &e.code)?;
        m.serialize_entry("message", &e.message)?;
        if !e.detail.is_empty() {
            m.serialize_entry("detail", &e.detail)?;
        }
        if !e.hint.is_empty() {
            m.serialize_entry("hint", &e.hint)?;
        }
        m.end()
    }
}

struct ErrorsJson<'a>(&'a [PostgresError]);

impl Serialize for ErrorsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            seq.serialize_element(&ErrorJson(e))?;
        }
        seq.end()
    }
}

struct ResultJson<'a>(&'a PostgresResult);

impl Serialize for ResultJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("command_tag", &r.command_tag)?;
        m.serialize_entry("row_count", &r.row_count)?;
        m.serialize_entry("columns", &r.columns)?;
        m.serialize_entry("rows", &RowsJson(&r.rows))?;
        if r.rows_truncated {
            m.serialize_entry("rows_truncated", &true)?;
        }
        if !r.copy.is_empty() {
            m.serialize_entry("copy", &r.copy)?;
            m.serialize_entry("copy_bytes", &r.copy_bytes)?;
        }
        if r.suspended {
            m.serialize_entry("suspended", &true)?;
        }
        if r.empty_query {
            m.serialize_entry("empty_query", &true)?;
        }
        m.end()
    }
}

struct ResultsJson<'a>(&'a [PostgresResult]);

impl Serialize for ResultsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0 {
            seq.serialize_element(&ResultJson(r))?;
        }
        seq.end()
    }
}

pub(crate) struct PostgresRequestJson<'a>(pub(crate) &'a PostgresRequest);

impl Serialize for PostgresRequestJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("method", &r.verb)?;
        let path = if r.kind == "notification" {
            &r.channel
        } else {
            &r.sql
        };
        m.serialize_entry("path", path)?;
        m.serialize_entry("kind", &r.kind)?;
        match r.kind.as_str() {
            "startup" => {
                m.serialize_entry("user", &r.user)?;
                m.serialize_entry("database", &r.database)?;
                m.serialize_entry("application_name", &r.application_name)?;
                m.serialize_entry("options", &PairsJson(&r.options))?;
                m.serialize_entry("protocol_version", &r.protocol_version)?;
                if !r.encryption.is_empty() {
                    m.serialize_entry("encryption", &r.encryption)?;
                }
            }
            "cancel" => m.serialize_entry("cancel_pid", &r.cancel_pid)?,
            "notification" => m.serialize_entry("channel", &r.channel)?,
            "function_call" => m.serialize_entry("function_oid", &r.function_oid)?,
            _ => {
                m.serialize_entry("sql", &r.sql)?;
                if r.sql_truncated {
                    m.serialize_entry("sql_truncated", &true)?;
                }
                if r.kind != "simple" {
                    m.serialize_entry("statement", &r.statement)?;
                    m.serialize_entry("portal", &r.portal)?;
                    m.serialize_entry("parameters", &ValuesJson(&r.parameters))?;
                    m.serialize_entry("parameter_count", &r.parameter_count)?;
                    if r.parameters_truncated {
                        m.serialize_entry("parameters_truncated", &true)?;
                    }
                    if r.max_rows != 0 {
                        m.serialize_entry("max_rows", &r.max_rows)?;
                    }
                }
            }
        }
        if r.copy_bytes != 0 {
            m.serialize_entry("copy_bytes", &r.copy_bytes)?;
        }
        m.end()
    }
}

pub(crate) struct PostgresResponseJson<'a>(pub(crate) &'a PostgresResponse);

impl Serialize for PostgresResponseJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("status", &u32::from(r.error.is_some()))?;
        if let Some(e) = &r.error {
            m.serialize_entry("sqlstate", &e.code)?;
            m.serialize_entry("error", &ErrorJson(e))?;
        }
        let tags: Vec<&str> = r.results.iter().map(|x| x.command_tag.as_str()).collect();
        m.serialize_entry("command_tag", &tags.join("; "))?;
        let rows: u64 = r.results.iter().map(|x| x.row_count).sum();
        m.serialize_entry("row_count", &rows)?;
        m.serialize_entry("results", &ResultsJson(&r.results))?;
        if !r.notices.is_empty() {
            m.serialize_entry("notices", &ErrorsJson(&r.notices))?;
        }
        if !r.auth_method.is_empty() {
            m.serialize_entry("auth_method", &r.auth_method)?;
        }
        if !r.sasl_mechanism.is_empty() {
            m.serialize_entry("sasl_mechanism", &r.sasl_mechanism)?;
        }
        if !r.parameters.is_empty() {
            m.serialize_entry("parameters", &PairsJson(&r.parameters))?;
        }
        if r.backend_pid != 0 {
            m.serialize_entry("backend_pid", &r.backend_pid)?;
        }
        if !r.encryption.is_empty() {
            m.serialize_entry("encryption", &r.encryption)?;
        }
        if !r.transaction_status.is_empty() {
            m.serialize_entry("transaction_status", &r.transaction_status)?;
        }
        if r.notify_pid != 0 {
            m.serialize_entry("notify_pid", &r.notify_pid)?;
            m.serialize_entry("payload", &r.payload)?;
        }
        if let Some(v) = &r.function_result {
            m.serialize_entry("function_result", &ValueJson(v))?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> PostgresValue {
        PostgresValue {
            text: Some(s.into()),
        }
    }

    #[test]
    fn simple_query_has_generic_fields_rows_and_nulls() {
        let q = PostgresRequest {
            kind: "simple".into(),
            verb: "SELECT".into(),
            sql: "SELECT id, name FROM t".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(PostgresRequestJson(&q)).unwrap();
        assert_eq!(v["method"], "SELECT");
        assert_eq!(v["path"], "SELECT id, name FROM t");
        assert_eq!(v["sql"], "SELECT id, name FROM t");
        assert!(v.get("statement").is_none());
        assert!(v.get("user").is_none());
        let r = PostgresResponse {
            results: vec![
                PostgresResult {
                    command_tag: "SELECT 2".into(),
                    row_count: 2,
                    columns: vec!["id".into(), "name".into()],
                    rows: vec![
                        PostgresRow {
                            values: vec![text("1"), text("a")],
                        },
                        PostgresRow {
                            values: vec![text("2"), PostgresValue { text: None }],
                        },
                    ],
                    ..Default::default()
                },
                PostgresResult {
                    command_tag: "COMMIT".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let v = serde_json::to_value(PostgresResponseJson(&r)).unwrap();
        assert_eq!(v["status"], 0);
        assert!(v.get("sqlstate").is_none());
        assert_eq!(v["command_tag"], "SELECT 2; COMMIT");
        assert_eq!(v["row_count"], 2);
        assert_eq!(
            v["results"][0]["rows"],
            serde_json::json!([["1", "a"], ["2", null]])
        );
        assert_eq!(
            v["results"][0]["columns"],
            serde_json::json!(["id", "name"])
        );
    }

    #[test]
    fn error_has_status_1_and_the_sqlstate() {
        let r = PostgresResponse {
            error: Some(PostgresError {
                severity: "ERROR".into(),
                code: "42P01".into(),
                message: "relation \"nope\" does not exist".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(PostgresResponseJson(&r)).unwrap();
        assert_eq!(v["status"], 1);
        assert_eq!(v["sqlstate"], "42P01");
        assert_eq!(v["error"]["severity"], "ERROR");
        assert_eq!(v["error"]["message"], "relation \"nope\" does not exist");
        assert!(v["error"].get("hint").is_none());
    }

    #[test]
    fn startup_and_extended_show_their_own_fields() {
        let s = PostgresRequest {
            kind: "startup".into(),
            verb: "STARTUP".into(),
            user: "postgres".into(),
            database: "shop".into(),
            options: vec![Header {
                name: "client_encoding".into(),
                value: "UTF8".into(),
            }],
            protocol_version: "3.0".into(),
            encryption: "ssl".into(),
            ..Default::default()
        };
        let v = serde_json::to_value(PostgresRequestJson(&s)).unwrap();
        assert_eq!(v["method"], "STARTUP");
        assert_eq!(v["path"], "");
        assert_eq!(v["options"]["client_encoding"], "UTF8");
        assert_eq!(v["encryption"], "ssl");
        assert!(v.get("sql").is_none());
        let e = PostgresRequest {
            kind: "extended".into(),
            verb: "UPDATE".into(),
            sql: "UPDATE t SET a = $1".into(),
            statement: "P0_1".into(),
            parameters: vec![text("5"), PostgresValue { text: None }],
            parameter_count: 2,
            ..Default::default()
        };
        let v = serde_json::to_value(PostgresRequestJson(&e)).unwrap();
        assert_eq!(v["statement"], "P0_1");
        assert_eq!(v["portal"], "");
        assert_eq!(v["parameters"], serde_json::json!(["5", null]));
        assert!(v.get("max_rows").is_none());
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
            keys(src, &["PostgresRequestJson"]),
            "REQUEST_FIELDS"
        );
        assert_eq!(
            set(super::RESPONSE_FIELDS),
            keys(src, &["PostgresResponseJson"]),
            "RESPONSE_FIELDS"
        );
    }
}
