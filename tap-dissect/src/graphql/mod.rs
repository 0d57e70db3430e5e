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
mod tests;

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
