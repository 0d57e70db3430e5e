//! The graphql dissector's unit tests.

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
