//! GraphQL over HTTP: not a dissector of its own but a look at HTTP entries
//! as they are made. [`refine`] turns an `http` (or `http2`) entry whose
//! request is a GraphQL operation into a `graphql` entry: the request keeps
//! the HTTP request whole and adds the operation's type and name, its document
//! and variables; the response keeps the HTTP response and adds what its JSON
//! result says (errors, data).
//!
//! A request is an operation when it is a POST whose JSON body has a "query"
//! string (or is an array of such: a batch), a POST of `application/graphql`,
//! or a GET with `?query=` (GraphQL over HTTP); and its document must start
//! like an executable GraphQL document, so a JSON search API's
//! `{"query": "shoes"}` is left alone. The document is scanned, not parsed: a
//! tokenizer and a brace counter find the top-level operations, with no
//! recursion and in one pass, so hostile nesting costs nothing.

pub mod json;
pub mod model;

use proto::v1::{
    Entry, GraphqlRequest, GraphqlResponse, HttpRequest, HttpResponse, Protocol, Request, Response,
    request, response,
};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Bytes kept of the document and of the variables.
pub const MAX_TEXT: usize = 64 << 10;
/// Top-level definitions looked at in a document.
const MAX_DEFINITIONS: usize = 256;

/// Makes `entry` a `graphql` entry when it is an HTTP exchange whose request
/// is a GraphQL operation; leaves every other entry as it is.
pub fn refine(entry: &mut Entry) {
    if entry.protocol != Protocol::Http as i32 && entry.protocol != Protocol::Http2 as i32 {
        return;
    }
    let Some(Request {
        kind: Some(request::Kind::Http(http)),
    }) = &entry.request
    else {
        return;
    };
    let Some(mut op) = classify(http) else {
        return;
    };
    if let Some(Request {
        kind: Some(request::Kind::Http(http)),
    }) = entry.request.take()
    {
        op.http = Some(*http);
    }
    entry.request = Some(Request {
        kind: Some(request::Kind::Graphql(Box::new(op))),
    });
    if let Some(Response {
        kind: Some(response::Kind::Http(http)),
    }) = entry.response.take()
    {
        entry.response = Some(Response {
            kind: Some(response::Kind::Graphql(Box::new(result(*http)))),
        });
    }
    entry.protocol = Protocol::Graphql as i32;
}

fn header<'a>(r: &'a HttpRequest, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// The media type of a content-type value, lower-cased, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The GraphQL operation an HTTP request carries, if it carries one (the
/// result's `http` is left empty for the caller).
pub fn classify(r: &HttpRequest) -> Option<GraphqlRequest> {
    let query_string = r.path.split_once('?').map_or("", |(_, q)| q);
    let url_param = |key: &str| {
        form_urlencoded::parse(query_string.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    };
    let body = r.body.as_ref();
    let body_data = body.map_or(&[][..], |b| b.data.as_slice());
    let body_cut = body.is_some_and(|b| b.truncated);
    let media = header(r, "content-type").map(media_type);
    if r.method.eq_ignore_ascii_case("GET") {
        let query = url_param("query")?;
        let variables = url_param("variables");
        return operation(
            &query,
            false,
            url_param("operationName").as_deref(),
            variables.as_deref(),
            0,
        );
    }
    if !r.method.eq_ignore_ascii_case("POST") {
        return None;
    }
    if media.as_deref() == Some("application/graphql") {
        let text = match std::str::from_utf8(body_data) {
            Ok(t) => t,
            // Cut by the body cap inside a character: the whole ones.
            Err(e) if body_cut && e.error_len().is_none() => {
                std::str::from_utf8(&body_data[..e.valid_up_to()]).ok()?
            }
            Err(_) => return None,
        };
        return operation(
            text,
            body_cut,
            url_param("operationName").as_deref(),
            None,
            0,
        );
    }
    if body_cut {
        // Cut JSON does not parse.
        return None;
    }
    let text = std::str::from_utf8(body_data).ok()?;
    match text.trim_start().as_bytes().first()? {
        b'{' => {
            let op: JsonOperation = serde_json::from_str(text).ok()?;
            op.classify(0)
        }
        b'[' => {
            let ops: Vec<JsonOperation> = serde_json::from_str(text).ok()?;
            let n = u32::try_from(ops.len()).unwrap_or(u32::MAX);
            // Every element must be an operation; the first one is shown.
            let mut found = None;
            for op in &ops {
                let g = op.classify(n)?;
                found.get_or_insert(g);
            }
            found
        }
        _ => None,
    }
}

/// One operation of a JSON request body.
#[derive(Deserialize)]
struct JsonOperation<'a> {
    #[serde(borrow)]
    query: Cow<'a, str>,
    #[serde(rename = "operationName", borrow, default)]
    operation_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    variables: Option<&'a RawValue>,
}

impl JsonOperation<'_> {
    fn classify(&self, batched: u32) -> Option<GraphqlRequest> {
        operation(
            &self.query,
            false,
            self.operation_name.as_deref(),
            self.variables.map(RawValue::get),
            batched,
        )
    }
}

/// The request of a document with the operation `operation_name` selects
/// (or its first), if the document is an executable one.
fn operation(
    document: &str,
    document_cut: bool,
    operation_name: Option<&str>,
    variables: Option<&str>,
    batched: u32,
) -> Option<GraphqlRequest> {
    let ops = operations(document, document_cut)?;
    let operation_name = operation_name.filter(|n| !n.is_empty());
    let chosen = operation_name
        .and_then(|n| ops.iter().find(|o| o.name == Some(n)))
        .unwrap_or(&ops[0]);
    let (query, query_cut) = cap(document);
    let variables = variables.filter(|v| v.trim() != "null").map(cap);
    Some(GraphqlRequest {
        operation_type: chosen.kind.to_string(),
        operation_name: operation_name
            .or(chosen.name)
            .unwrap_or_default()
            .to_string(),
        query,
        query_truncated: query_cut || document_cut,
        variables_truncated: variables.as_ref().is_some_and(|(_, cut)| *cut),
        variables: variables.map(|(v, _)| v),
        batched,
        http: None,
    })
}

/// `s` up to [`MAX_TEXT`] bytes, cut at a character boundary; and whether it was cut.
fn cap(s: &str) -> (String, bool) {
    let end = s.floor_char_boundary(MAX_TEXT);
    (s[..end].to_string(), end < s.len())
}

/// A top-level operation of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Operation<'a> {
    kind: &'static str,
    name: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Punct(u8),
    /// `...`
    Spread,
    Name(&'a str),
    /// A number or string literal: only skipped over.
    Value,
}

/// GraphQL's lexical tokens (spec §2.1), ignored tokens skipped.
struct Tokens<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Tokens<'a> {
    /// The next token; `Err` for bytes that are no GraphQL token.
    fn next(&mut self) -> Result<Option<Token<'a>>, ()> {
        let b = self.s.as_bytes();
        loop {
            match b.get(self.i) {
                None => return Ok(None),
                Some(b' ' | b'\t' | b'\n' | b'\r' | b',') => self.i += 1,
                Some(b'#') => {
                    while b.get(self.i).is_some_and(|c| *c != b'\n' && *c != b'\r') {
                        self.i += 1;
                    }
                }
                // A byte order mark.
                Some(0xef) if b[self.i..].starts_with("\u{feff}".as_bytes()) => self.i += 3,
                Some(_) => break,
            }
        }
        let start = self.i;
        let c = b[start];
        self.i += 1;
        let token = match c {
            b'!' | b'$' | b'&' | b'(' | b')' | b':' | b'=' | b'@' | b'[' | b']' | b'{' | b'|'
            | b'}' => Token::Punct(c),
            b'.' if b[start..].starts_with(b"...") => {
                self.i = start + 3;
                Token::Spread
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                while b
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    self.i += 1;
                }
                Token::Name(&self.s[start..self.i])
            }
            b'-' | b'0'..=b'9' => {
                while b
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-'))
                {
                    self.i += 1;
                }
                Token::Value
            }
            b'"' if b[start..].starts_with(b"\"\"\"") => {
                // A block string, ended by an unescaped `"""`.
                let mut i = start + 3;
                loop {
                    match b.get(i) {
                        None => return Err(()),
                        Some(b'\\') if b[i..].starts_with(b"\\\"\"\"") => i += 4,
                        Some(b'"') if b[i..].starts_with(b"\"\"\"") => break,
                        Some(_) => i += 1,
                    }
                }
                self.i = i + 3;
                Token::Value
            }
            b'"' => {
                let mut i = start + 1;
                loop {
                    match b.get(i) {
                        None | Some(b'\n' | b'\r') => return Err(()),
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                self.i = i + 1;
                Token::Value
            }
            _ => return Err(()),
        };
        Ok(Some(token))
    }
}

/// The top-level operations of an executable document (at most
/// [`MAX_DEFINITIONS`] definitions looked at), or `None` when it is not one:
/// another first token, a type definition, a definition without its
/// selection set, a selection set that does not start with a field, or no
/// operation at all. A document `cut` short keeps the operations seen before
/// the cut, the one it falls in included.
fn operations(document: &str, cut: bool) -> Option<Vec<Operation<'_>>> {
    let mut t = Tokens { s: document, i: 0 };
    let mut ops = Vec::new();
    for _ in 0..MAX_DEFINITIONS {
        let (kind, name, opened) = match t.next() {
            Ok(None) => break,
            // The query shorthand: a bare selection set.
            Ok(Some(Token::Punct(b'{'))) => ("query", None, true),
            Ok(Some(Token::Name(k @ ("query" | "mutation" | "subscription" | "fragment")))) => {
                let (name, opened) = definition_head(&mut t)?;
                let kind = match k {
                    "mutation" => "mutation",
                    "subscription" => "subscription",
                    "fragment" => "fragment",
                    _ => "query",
                };
                (kind, name, opened)
            }
            _ => return None,
        };
        let complete = opened && selection_set(&mut t)?;
        if !complete && !cut {
            return None;
        }
        if kind != "fragment" {
            ops.push(Operation { kind, name });
        }
        if !complete {
            break;
        }
    }
    (!ops.is_empty()).then_some(ops)
}

/// Reads a definition up to its selection set's `{`: its name, variable
/// definitions, type condition and directives, parentheses and brackets
/// balanced. Returns the name and whether the `{` came before the end.
fn definition_head<'a>(t: &mut Tokens<'a>) -> Option<(Option<&'a str>, bool)> {
    let mut name = None;
    let mut first = true;
    let mut depth = 0usize;
    loop {
        let token = t.next().ok()?;
        match token {
            None => return Some((name, false)),
            Some(Token::Punct(b'(' | b'[')) => depth += 1,
            Some(Token::Punct(b')' | b']')) => depth = depth.checked_sub(1)?,
            Some(Token::Punct(b'{')) if depth == 0 => return Some((name, true)),
            Some(Token::Name(n)) if first => name = Some(n),
            Some(_) => {}
        }
        first = false;
    }
}

/// Reads past a selection set whose `{` was just read: `Some(true)` when it
/// closed, `Some(false)` when the document ended inside it, `None` when it is
/// not one (empty, or not starting with a field or a spread).
fn selection_set(t: &mut Tokens<'_>) -> Option<bool> {
    match t.next() {
        Ok(Some(Token::Name(_) | Token::Spread)) => {}
        Ok(None) => return Some(false),
        _ => return None,
    }
    let mut depth = 1usize;
    loop {
        match t.next() {
            Err(()) => return None,
            Ok(None) => return Some(false),
            Ok(Some(Token::Punct(b'{'))) => depth += 1,
            Ok(Some(Token::Punct(b'}'))) => {
                depth -= 1;
                if depth == 0 {
                    return Some(true);
                }
            }
            Ok(Some(_)) => {}
        }
    }
}

/// One result of a JSON response body.
#[derive(Deserialize)]
struct JsonResult {
    #[serde(default)]
    data: Option<IgnoredAny>,
    #[serde(default)]
    errors: Option<Vec<JsonError>>,
}

#[derive(Deserialize)]
struct JsonError {
    #[serde(default)]
    message: Option<String>,
}

/// The GraphQL view of an HTTP response: its JSON result's errors and data.
pub fn result(http: HttpResponse) -> GraphqlResponse {
    let mut g = GraphqlResponse::default();
    let body = http.body.as_ref().filter(|b| !b.truncated);
    let results: Option<Vec<JsonResult>> = body.and_then(|b| {
        let text = std::str::from_utf8(&b.data).ok()?;
        match text.trim_start().as_bytes().first()? {
            b'{' => serde_json::from_str(text).ok().map(|r| vec![r]),
            b'[' => serde_json::from_str(text).ok(),
            _ => None,
        }
    });
    if let Some(results) = results {
        g.json = true;
        for r in results {
            g.has_data |= r.data.is_some();
            for e in r.errors.unwrap_or_default() {
                g.errors = g.errors.saturating_add(1);
                if g.error.is_empty()
                    && let Some(m) = e.message
                {
                    g.error = cap(&m).0;
                }
            }
        }
    }
    g.http = Some(http);
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GenericFields;
    use proto::v1::{Body, Header};

    fn http(method: &str, path: &str, content_type: Option<&str>, body: &str) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            path: path.into(),
            version: "1.1".into(),
            headers: content_type
                .map(|c| Header {
                    name: "Content-Type".into(),
                    value: c.into(),
                })
                .into_iter()
                .collect(),
            body: (!body.is_empty()).then(|| Body {
                data: body.as_bytes().to_vec(),
                wire_size: body.len() as u64,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const JSON: Option<&str> = Some("application/json; charset=utf-8");

    #[test]
    fn operations_over_http() {
        // (request, operation type, operation name, query, variables, batched)
        type Row = (
            HttpRequest,
            &'static str,
            &'static str,
            &'static str,
            Option<&'static str>,
            u32,
        );
        let table: Vec<Row> = vec![
            (
                http(
                    "POST",
                    "/graphql",
                    JSON,
                    r#"{"query":"query Hero { hero { name } }"}"#,
                ),
                "query",
                "Hero",
                "query Hero { hero { name } }",
                None,
                0,
            ),
            // Anonymous, the shorthand form, no content type.
            (
                http(
                    "POST",
                    "/graphql",
                    None,
                    r#" {"query":"{ hero { name } }","variables":null}"#,
                ),
                "query",
                "",
                "{ hero { name } }",
                None,
                0,
            ),
            (
                http(
                    "POST",
                    "/api",
                    JSON,
                    r#"{"query":"mutation AddUser($n: String!) {\n  addUser(name: $n) { id }\n}","variables": {"n": "ada", "tags": [1, 2]}}"#,
                ),
                "mutation",
                "AddUser",
                "mutation AddUser($n: String!) {\n  addUser(name: $n) { id }\n}",
                Some(r#"{"n": "ada", "tags": [1, 2]}"#),
                0,
            ),
            // operationName picks one of several operations; fragments are skipped.
            (
                http(
                    "POST",
                    "/graphql",
                    JSON,
                    r#"{"query":"fragment F on User { id } query A { a } subscription B($x: [Int] = [1]) @live { b { ...F } }","operationName":"B"}"#,
                ),
                "subscription",
                "B",
                "fragment F on User { id } query A { a } subscription B($x: [Int] = [1]) @live { b { ...F } }",
                None,
                0,
            ),
            (
                http(
                    "GET",
                    "/graphql?query=query%20Q%28%24id%3A%20ID%29%20%7B%20user%28id%3A%20%24id%29%20%7B%20name%20%7D%20%7D&variables=%7B%22id%22%3A1%7D",
                    None,
                    "",
                ),
                "query",
                "Q",
                "query Q($id: ID) { user(id: $id) { name } }",
                Some(r#"{"id":1}"#),
                0,
            ),
            (
                http(
                    "GET",
                    "/graphql?operationName=Two&query={+one+}+query+Two+{+two+}",
                    None,
                    "",
                ),
                "query",
                "Two",
                "{ one } query Two { two }",
                None,
                0,
            ),
            (
                http(
                    "POST",
                    "/graphql?operationName=M",
                    Some("application/graphql"),
                    "# a comment\nmutation M { go(s: \"}{\") }",
                ),
                "mutation",
                "M",
                "# a comment\nmutation M { go(s: \"}{\") }",
                None,
                0,
            ),
            (
                http(
                    "POST",
                    "/graphql",
                    JSON,
                    r#"[{"query":"query First { a }"},{"query":"mutation { b }","operationName":null}]"#,
                ),
                "query",
                "First",
                "query First { a }",
                None,
                2,
            ),
            // Block strings, numbers and a byte order mark.
            (
                http(
                    "POST",
                    "/graphql",
                    JSON,
                    r#"{"query":"\ufeffquery Q { f(a: \"\"\"x } \\\"\"\" y\"\"\", b: -1.5e3) }"}"#,
                ),
                "query",
                "Q",
                "\u{feff}query Q { f(a: \"\"\"x } \\\"\"\" y\"\"\", b: -1.5e3) }",
                None,
                0,
            ),
        ];
        for (req, kind, name, query, variables, batched) in table {
            let g = classify(&req).unwrap_or_else(|| panic!("not classified: {req:?}"));
            assert_eq!(g.operation_type, kind, "{req:?}");
            assert_eq!(g.operation_name, name, "{req:?}");
            assert_eq!(g.query, query);
            assert_eq!(g.variables.as_deref(), variables);
            assert_eq!(g.batched, batched);
            assert!(!g.query_truncated && !g.variables_truncated);
        }
    }

    #[test]
    fn other_requests_are_not_operations() {
        let table = [
            // Not JSON, cut JSON, JSON without a query string.
            http("POST", "/graphql", JSON, r#"{"query": "{ a }""#),
            http("POST", "/graphql", JSON, "query { a }"),
            http(
                "POST",
                "/search",
                JSON,
                r#"{"query": {"match": {"title": "x"}}}"#,
            ),
            http("POST", "/graphql", JSON, r#"{"operationName": "A"}"#),
            http("POST", "/graphql", JSON, r#"[{"query":"{ a }"}, {"q": 1}]"#),
            http("POST", "/graphql", JSON, "[]"),
            // A "query" that is no GraphQL document.
            http("POST", "/search", JSON, r#"{"query": "shoes"}"#),
            http("POST", "/search", JSON, r#"{"query": "query cats"}"#),
            http("POST", "/search", JSON, r#"{"query": "{}"}"#),
            http("POST", "/search", JSON, r#"{"query": "{\"a\": 1}"}"#),
            http("POST", "/graphql", JSON, r#"{"query": "query Q { a "}"#),
            http(
                "POST",
                "/graphql",
                JSON,
                r#"{"query": "type Query { a: Int }"}"#,
            ),
            http(
                "POST",
                "/graphql",
                JSON,
                r#"{"query": "fragment F on T { a }"}"#,
            ),
            http(
                "POST",
                "/graphql",
                JSON,
                r#"{"query": "query Q { a(s: \"open) }"}"#,
            ),
            http("POST", "/graphql", JSON, r#"{"query": "query Q) { a }"}"#),
            // Wrong methods and places.
            http("PUT", "/graphql", JSON, r#"{"query":"{ a }"}"#),
            http("GET", "/graphql", JSON, r#"{"query":"{ a }"}"#),
            http("GET", "/search?query=shoes", None, ""),
            http("POST", "/graphql?query={a}", None, ""),
            http("POST", "/graphql", Some("application/graphql"), "hello"),
        ];
        for req in table {
            assert_eq!(classify(&req), None, "{req:?}");
        }
    }

    #[test]
    fn long_documents_and_variables_are_capped() {
        let fields = "f ".repeat(MAX_TEXT);
        let doc = format!("query Big {{ {fields} }}");
        let vars = format!(r#"{{"s": "{}"}}"#, "é".repeat(MAX_TEXT));
        let body = serde_json::json!({ "query": doc, "variables": serde_json::from_str::<serde_json::Value>(&vars).unwrap() });
        let g = classify(&http("POST", "/graphql", JSON, &body.to_string())).unwrap();
        assert_eq!(g.operation_name, "Big");
        assert_eq!(g.query.len(), MAX_TEXT);
        assert!(g.query_truncated && g.variables_truncated);
        assert!(g.variables.unwrap().len() <= MAX_TEXT);
        // An application/graphql body cut by the body cap keeps its operation.
        let mut req = http(
            "POST",
            "/graphql",
            Some("application/graphql"),
            "query Cut { a b c",
        );
        req.body.as_mut().unwrap().truncated = true;
        let g = classify(&req).unwrap();
        assert_eq!(
            (g.operation_type.as_str(), g.operation_name.as_str()),
            ("query", "Cut")
        );
        assert!(g.query_truncated);
    }

    #[test]
    fn hostile_documents_cost_one_pass() {
        // Deep nesting: no recursion to overflow.
        let deep = format!(
            "query D {}a{}",
            "{ a ".repeat(200_000),
            " }".repeat(200_000)
        );
        let ops = operations(&deep, false).unwrap();
        assert_eq!(
            ops,
            vec![Operation {
                kind: "query",
                name: Some("D")
            }]
        );
        let unbalanced = format!("{{ a {}", ")".repeat(1000));
        assert_eq!(operations(&unbalanced, false), None);
        // Many definitions: only the first ones are looked at.
        let many = "query A { a } ".repeat(10 * MAX_DEFINITIONS);
        assert_eq!(operations(&many, false).unwrap().len(), MAX_DEFINITIONS);
    }

    fn response(status: u32, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            body: Some(Body {
                data: body.as_bytes().to_vec(),
                wire_size: body.len() as u64,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn results() {
        // (body, json, errors, first error, data)
        let table = [
            (r#"{"data":{"hero":{"name":"R2"}}}"#, true, 0, "", true),
            (
                r#"{"errors":[{"message":"Cannot query field 'x' on type 'Query'.","locations":[{"line":1,"column":3}]}]}"#,
                true,
                1,
                "Cannot query field 'x' on type 'Query'.",
                false,
            ),
            (
                r#"{"data":null,"errors":[{"message":"a"},{"message":"b"}]}"#,
                true,
                2,
                "a",
                false,
            ),
            (
                r#"[{"data":{"a":1}},{"errors":[{"message":"m"}]}]"#,
                true,
                1,
                "m",
                true,
            ),
            ("<html>Bad Gateway</html>", false, 0, "", false),
            (r#"{"data": {"#, false, 0, "", false),
        ];
        for (body, json, errors, error, data) in table {
            let g = result(response(200, body));
            assert_eq!(
                (g.json, g.errors, g.error.as_str(), g.has_data),
                (json, errors, error, data),
                "{body}"
            );
            assert_eq!(g.http.unwrap().status, 200);
        }
    }

    #[test]
    fn refine_makes_graphql_entries_and_leaves_others() {
        let req = http(
            "POST",
            "/graphql?v=1",
            JSON,
            r#"{"query":"{ hero { name } }"}"#,
        );
        let mut e = Entry {
            protocol: Protocol::Http as i32,
            request: Some(Request {
                kind: Some(request::Kind::Http(Box::new(req.clone()))),
            }),
            response: Some(Response {
                kind: Some(response::Kind::Http(Box::new(response(
                    200,
                    r#"{"data":{"hero":null}}"#,
                )))),
            }),
            ..Default::default()
        };
        refine(&mut e);
        assert_eq!(e.protocol, Protocol::Graphql as i32);
        assert_eq!(e.method(), Some("query"));
        // Anonymous: the HTTP path without its query string.
        assert_eq!(e.path(), Some("/graphql"));
        assert_eq!(e.status(), Some(200));
        match e.request.as_ref().and_then(|r| r.kind.as_ref()) {
            Some(request::Kind::Graphql(g)) => assert_eq!(g.http.as_ref(), Some(&req)),
            other => panic!("{other:?}"),
        }
        match e.response.as_ref().and_then(|r| r.kind.as_ref()) {
            Some(response::Kind::Graphql(g)) => assert!(g.has_data && g.json),
            other => panic!("{other:?}"),
        }
        // Without a response (no_response), and twice: still one graphql entry.
        let mut lone = Entry {
            protocol: Protocol::Http2 as i32,
            request: Some(Request {
                kind: Some(request::Kind::Http(Box::new(req.clone()))),
            }),
            ..Default::default()
        };
        refine(&mut lone);
        refine(&mut lone);
        assert_eq!(lone.protocol, Protocol::Graphql as i32);
        assert!(lone.response.is_none());
        // Not GraphQL, or not HTTP: untouched.
        let plain = http("POST", "/graphql", JSON, r#"{"q":1}"#);
        for (protocol, r) in [(Protocol::Http, plain), (Protocol::Grpc, req)] {
            let mut e = Entry {
                protocol: protocol as i32,
                request: Some(Request {
                    kind: Some(request::Kind::Http(Box::new(r))),
                }),
                ..Default::default()
            };
            let before = e.clone();
            refine(&mut e);
            assert_eq!(e, before);
        }
    }
}

/// Through the HTTP/1 dissector: pipelined exchanges, one of them GraphQL.
#[cfg(test)]
mod over_http1 {
    use crate::flow::{Direction, FlowHandler};
    use crate::testing::{entries, fin, flow};
    use crate::{Connection, DissectConfig, GenericFields};
    use proto::v1::{Protocol, request};
    use std::sync::Arc;

    #[test]
    fn graphql_exchanges_become_graphql_entries() {
        let flow = flow(9, 4000, false);
        let body =
            r#"{"query":"mutation Add($n: String!) { add(name: $n) }","variables":{"n":"x"}}"#;
        let requests = format!(
            "GET /health HTTP/1.1\r\nHost: a\r\n\r\n\
             POST /graphql HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let result = r#"{"errors":[{"message":"no"}],"data":null}"#;
        let responses = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\
             HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{result}",
            result.len()
        );
        let mut conn = Connection::new(Arc::new(DissectConfig::default()));
        let mut out = Vec::new();
        conn.on_data(&flow, Direction::ToServer, 1, requests.as_bytes(), &mut out);
        conn.on_data(
            &flow,
            Direction::ToClient,
            2,
            responses.as_bytes(),
            &mut out,
        );
        conn.on_close(&flow, &fin(3), &mut out);
        let entries = entries(out);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].protocol, Protocol::Http as i32);
        let g = &entries[1];
        assert_eq!(g.protocol, Protocol::Graphql as i32);
        assert_eq!(g.id, "0000000000000009-1");
        assert_eq!(
            (g.method(), g.path(), g.status()),
            (Some("mutation"), Some("Add"), Some(200))
        );
        assert!(g.flags.is_empty(), "{:?}", g.flags);
        let Some(request::Kind::Graphql(r)) = g.request.as_ref().and_then(|r| r.kind.as_ref())
        else {
            panic!("{g:?}");
        };
        assert_eq!(r.variables.as_deref(), Some(r#"{"n":"x"}"#));
        assert_eq!(r.http.as_ref().unwrap().method, "POST");
    }
}
