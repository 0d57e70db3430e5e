use super::*;
use proto::v1::{
    Body, GraphqlRequest, Header, HttpRequest, HttpResponse, PostgresRequest, PostgresResponse,
    RedisRequest, Request, Response, WebSocketMessage, request, response,
};

fn h(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

fn body(data: &str) -> Option<Body> {
    Some(Body {
        data: data.as_bytes().to_vec(),
        wire_size: data.len() as u64,
        ..Default::default()
    })
}

fn http(req: HttpRequest, resp: HttpResponse) -> Entry {
    Entry {
        request: Some(Request {
            kind: Some(request::Kind::Http(Box::new(req))),
        }),
        response: Some(Response {
            kind: Some(response::Kind::Http(Box::new(resp))),
        }),
        ..Default::default()
    }
}

fn req_http(e: &Entry) -> &HttpRequest {
    match e.request.as_ref().unwrap().kind.as_ref().unwrap() {
        request::Kind::Http(h) => h,
        _ => unreachable!(),
    }
}

fn resp_http(e: &Entry) -> &HttpResponse {
    match e.response.as_ref().unwrap().kind.as_ref().unwrap() {
        response::Kind::Http(h) => h,
        _ => unreachable!(),
    }
}

fn text(b: &Option<Body>) -> String {
    String::from_utf8(b.as_ref().unwrap().data.clone()).unwrap()
}

fn contexts(b: &Blanks) -> Vec<String> {
    b.needles
        .iter()
        .map(|n| String::from_utf8_lossy(&n.context[n.blank.clone()]).into_owned())
        .collect()
}

#[test]
fn keys_compare_whole_without_case_dashes_or_underscores() {
    let r = Redactor::default();
    for k in [
        "Password",
        "PASS_WORD",
        "client-secret",
        "Set-Cookie",
        "zip",
        "ZIP_CODE",
    ] {
        assert!(r.sensitive(k.as_bytes()), "{k}");
    }
    for k in [
        "passwords",
        "X-Request-Id",
        "keyboard",
        "zipper",
        "",
        "--",
        "content-type",
    ] {
        assert!(!r.sensitive(k.as_bytes()), "{k}");
    }
    assert!(!r.sensitive("p".repeat(100_000).as_bytes()), "a huge key");
}

#[test]
fn http_headers_query_and_json_bodies() {
    let mut e = http(
        HttpRequest {
            method: "POST".into(),
            path: "/login?user=alice&page=2&pass_word=hunter2hunter2".into(),
            headers: vec![
                h("Authorization", "Bearer tok-123456789"),
                h("Cookie", "session=abcdef123; theme=dark"),
                h("Content-Type", "application/json"),
                h("X-Request-Id", "visible-1"),
            ],
            body: body(
                r#"{"a":{"b":[1,{"password":"s3cret-value"}]},"token":{"x":[1,2]},"name":"bob"}"#,
            ),
            ..Default::default()
        },
        HttpResponse {
            status: 200,
            headers: vec![h("Set-Cookie", "id=zzzzzzzzz; Path=/; HttpOnly")],
            body: body(r#"{"ok":true,"jwt":"eyJhbGciOi"}"#),
            ..Default::default()
        },
    );
    let b = Redactor::default().entry(&mut e);
    let r = req_http(&e);
    assert_eq!(r.path, "/login?user=[REDACTED]&page=2&pass_word=[REDACTED]");
    assert_eq!(r.headers[0].value, "Bearer [REDACTED]");
    assert_eq!(r.headers[1].value, "session=[REDACTED]; theme=[REDACTED]");
    assert_eq!(r.headers[3].value, "visible-1");
    assert_eq!(
        text(&r.body),
        r#"{"a":{"b":[1,{"password":"[REDACTED]"}]},"token":"[REDACTED]","name":"bob"}"#
    );
    let s = resp_http(&e);
    assert_eq!(s.headers[0].value, "id=[REDACTED]; Path=/; HttpOnly");
    assert_eq!(text(&s.body), r#"{"ok":true,"jwt":"[REDACTED]"}"#);
    for p in [
        "request.query.user",
        "request.query.pass_word",
        "request.headers.authorization",
        "request.headers.cookie.session",
        "request.body.a.b[1].password",
        "request.body.token",
        "response.headers.set-cookie.id",
        "response.body.jwt",
    ] {
        assert!(e.redacted.iter().any(|x| x == p), "{p} in {:?}", e.redacted);
    }
    let c = contexts(&b);
    for v in [
        "tok-123456789",
        "abcdef123",
        "hunter2hunter2",
        "s3cret-value",
        "zzzzzzzzz",
        "alice",
        r#"{"x":[1,2]}"#,
    ] {
        assert!(c.iter().any(|x| x == v), "{v} in {c:?}");
    }
    // A short value is searched with its key around it.
    let alice = b
        .needles
        .iter()
        .find(|n| n.context.ends_with(b"alice"))
        .unwrap();
    assert_eq!(alice.context, b"user=alice");
    assert!(!b.whole_request && !b.whole_response);
}

#[test]
fn truncated_and_broken_json_still_hides_values() {
    for (input, expected) in [
        (r#"{"password":"abc"#, r#"{"password":"[REDACTED]""#),
        (
            r#"{"a":[{"token":{"deep":[1,2"#,
            r#"{"a":[{"token":"[REDACTED]""#,
        ),
        (
            r#"{"password": 12345, "x": 1}"#,
            r#"{"password": "[REDACTED]", "x": 1}"#,
        ),
        (r#"{"password":"#, r#"{"password":"#),
        (r#"[}}]]{"user":null}"#, r#"[}}]]{"user":"[REDACTED]"}"#),
        (
            r#"{"pass\"word":"x","user":"a\"b"}"#,
            r#"{"pass\"word":"x","user":"[REDACTED]"}"#,
        ),
    ] {
        let mut e = http(
            HttpRequest {
                body: body(input),
                ..Default::default()
            },
            HttpResponse::default(),
        );
        Redactor::default().entry(&mut e);
        assert_eq!(text(&req_http(&e).body), expected, "{input}");
    }
}

#[test]
fn forms_graphql_and_encoded_bodies() {
    let mut e = http(
        HttpRequest {
            headers: vec![h("Content-Type", "application/x-www-form-urlencoded")],
            body: body("nick_name=Ann&Pass%77ord=p%40ss+word&x=1"),
            ..Default::default()
        },
        HttpResponse {
            headers: vec![
                h("Content-Type", "application/json"),
                h("Transfer-Encoding", "chunked"),
            ],
            body: body(r#"{"refresh_token":"rrrrrrrrrr"}"#),
            ..Default::default()
        },
    );
    let b = Redactor::default().entry(&mut e);
    assert_eq!(
        text(&req_http(&e).body),
        "nick_name=Ann&Pass%77ord=[REDACTED]&x=1"
    );
    assert_eq!(
        text(&resp_http(&e).body),
        r#"{"refresh_token":"[REDACTED]"}"#
    );
    // The chunked response is blanked whole; its value is not searched.
    assert!(b.whole_response && !b.whole_request);
    assert_eq!(contexts(&b), ["p%40ss+word"]);

    let mut g = Entry {
        request: Some(Request {
            kind: Some(request::Kind::Graphql(Box::new(GraphqlRequest {
                query: r#"mutation { login(username: "ann", password: "pw-in-query", keep: "k") }"#
                    .into(),
                variables: Some(r#"{"input":{"password":"pw-in-vars"},"n":1}"#.into()),
                ..Default::default()
            }))),
        }),
        ..Default::default()
    };
    Redactor::default().entry(&mut g);
    let Some(request::Kind::Graphql(q)) = g.request.unwrap().kind else {
        unreachable!()
    };
    assert_eq!(
        q.query,
        r#"mutation { login(username: "[REDACTED]", password: "[REDACTED]", keep: "k") }"#
    );
    assert_eq!(
        q.variables.unwrap(),
        r#"{"input":{"password":"[REDACTED]"},"n":1}"#
    );
}

#[test]
fn redis_credentials_by_position() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("AUTH", &["pw-1"], &["[REDACTED]"]),
        ("AUTH", &["default", "pw-2"], &["[REDACTED]", "[REDACTED]"]),
        (
            "HELLO",
            &["3", "AUTH", "default", "pw-3", "SETNAME", "app"],
            &["3", "AUTH", "[REDACTED]", "[REDACTED]", "SETNAME", "app"],
        ),
        (
            "MIGRATE",
            &["h", "6379", "k", "0", "10", "AUTH2", "u", "pw-4", "KEYS"],
            &[
                "h",
                "6379",
                "k",
                "0",
                "10",
                "AUTH2",
                "[REDACTED]",
                "[REDACTED]",
                "KEYS",
            ],
        ),
        (
            "CONFIG SET",
            &["requirepass", "pw-5"],
            &["requirepass", "[REDACTED]"],
        ),
        (
            "ACL SETUSER",
            &["bob", "on", ">pw-6"],
            &["bob", "on", "[REDACTED]"],
        ),
        ("SET", &["password", "value"], &["password", "value"]),
    ];
    for (command, args, expected) in cases {
        let mut e = Entry {
            request: Some(Request {
                kind: Some(request::Kind::Redis(Box::new(RedisRequest {
                    command: command.to_string(),
                    args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
                    ..Default::default()
                }))),
            }),
            ..Default::default()
        };
        let b = Redactor::default().entry(&mut e);
        let Some(request::Kind::Redis(r)) = e.request.unwrap().kind else {
            unreachable!()
        };
        let got: Vec<String> = r
            .args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert_eq!(got, *expected, "{command} {args:?}");
        if let Some(pw) = args
            .iter()
            .find(|a| a.starts_with("pw-") || a.starts_with(">pw-"))
        {
            let n = &b
                .needles
                .iter()
                .find(|n| n.context.ends_with(pw.as_bytes()))
                .unwrap();
            assert_eq!(n.context, format!("${}\r\n{pw}", pw.len()).as_bytes());
        }
    }
}

#[test]
fn postgres_user_is_hidden_where_the_server_says_it_back() {
    let mut e = Entry {
        request: Some(Request {
            kind: Some(request::Kind::Postgres(Box::new(PostgresRequest {
                kind: "startup".into(),
                user: "canary-user".into(),
                database: "shop".into(),
                ..Default::default()
            }))),
        }),
        response: Some(Response {
            kind: Some(response::Kind::Postgres(Box::new(PostgresResponse {
                parameters: vec![
                    h("session_authorization", "canary-user"),
                    h("TimeZone", "UTC"),
                ],
                ..Default::default()
            }))),
        }),
        ..Default::default()
    };
    let b = Redactor::default().entry(&mut e);
    assert!(
        b.whole_request,
        "password and SASL messages follow the startup"
    );
    let text = format!("{e:?}");
    assert!(!text.contains("canary-user"), "{text}");
    assert!(text.contains("UTC") && text.contains("shop"));

    let mut q = Entry {
        request: Some(Request {
            kind: Some(request::Kind::Postgres(Box::new(PostgresRequest {
                kind: "simple".into(),
                sql: "ALTER ROLE app PASSWORD  'pg-secret' VALID UNTIL 'infinity'".into(),
                ..Default::default()
            }))),
        }),
        ..Default::default()
    };
    Redactor::default().entry(&mut q);
    let Some(request::Kind::Postgres(p)) = q.request.unwrap().kind else {
        unreachable!()
    };
    assert_eq!(
        p.sql,
        "ALTER ROLE app PASSWORD  '[REDACTED]' VALID UNTIL 'infinity'"
    );
}

#[test]
fn websocket_json_from_a_client_blanks_its_frames_whole() {
    let mut e = Entry {
        request: Some(Request {
            kind: Some(request::Kind::Websocket(Box::new(WebSocketMessage {
                opcode: "text".into(),
                direction: "client".into(),
                payload: br#"{"token":"ws-secret","msg":"hi"}"#.to_vec(),
                ..Default::default()
            }))),
        }),
        ..Default::default()
    };
    let b = Redactor::default().entry(&mut e);
    let Some(request::Kind::Websocket(w)) = e.request.unwrap().kind else {
        unreachable!()
    };
    assert_eq!(w.payload, br#"{"token":"[REDACTED]","msg":"hi"}"#);
    assert!(b.whole_request && b.needles.is_empty());
}

#[test]
fn user_keys_and_patterns() {
    let rules = [
        Rule::Key("SSN".into()),
        Rule::Pattern(EXAMPLE_PATTERNS[0].1.into()),
        Rule::Pattern(EXAMPLE_PATTERNS[2].1.into()),
    ];
    let r = Redactor::new(&rules).unwrap();
    let mut e = http(
        HttpRequest {
            path: "/pay?ssn=123-45-6789".into(),
            headers: vec![h("X-Email", "ann@example.com")],
            body: body(r#"{"card":"4111 1111 1111 1111","note":"mail bob@example.org now"}"#),
            ..Default::default()
        },
        HttpResponse {
            headers: vec![h("Content-Type", "text/plain")],
            body: body("card 4111-1111-1111-1111 ok"),
            ..Default::default()
        },
    );
    Redactor::new(&rules).unwrap().entry(&mut e);
    let q = req_http(&e);
    assert_eq!(q.path, "/pay?ssn=[REDACTED]");
    assert_eq!(q.headers[0].value, "[REDACTED]");
    assert_eq!(
        text(&q.body),
        r#"{"card":"[REDACTED]","note":"mail [REDACTED] now"}"#
    );
    assert_eq!(text(&resp_http(&e).body), "card [REDACTED] ok");
    assert!(r.sensitive(b"s_s_n"));
    assert!(matches!(
        Redactor::new(&[Rule::Pattern("(".into())]),
        Err(RuleError::BadPattern { .. })
    ));
    assert!(matches!(
        Redactor::new(&[Rule::Key("-_-".into())]),
        Err(RuleError::EmptyKey(_))
    ));
    // A pattern whose automaton would be huge is refused, not built.
    assert!(Redactor::new(&[Rule::Pattern(r"\w{1000}\w{1000}\w{1000}".into())]).is_err());
}

#[test]
fn hostile_nesting_and_sizes_cost_linear_time() {
    let deep = format!("{}{}", "[".repeat(200_000), r#"{"password":"deep-secret"}"#);
    let wide: String = (0..20_000)
        .map(|i| format!(r#"{{"k{i}":{i},"token":"t{i}"}},"#))
        .collect();
    for input in [
        deep,
        format!("[{wide}]"),
        "\"".repeat(100_000),
        "{\"".repeat(100_000),
    ] {
        let mut e = http(
            HttpRequest {
                body: body(&input),
                ..Default::default()
            },
            HttpResponse::default(),
        );
        let started = std::time::Instant::now();
        Redactor::default().entry(&mut e);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let out = text(&req_http(&e).body);
        assert!(!out.contains("deep-secret") && !out.contains("\"t19999\""));
        assert!(e.redacted.len() <= 65, "{:?}", e.redacted.len());
    }
}

#[test]
fn disabled_redactor_changes_nothing() {
    let mut e = http(
        HttpRequest {
            headers: vec![h("Authorization", "Bearer x")],
            ..Default::default()
        },
        HttpResponse::default(),
    );
    let before = e.clone();
    assert!(Redactor::disabled().entry(&mut e).is_empty());
    assert_eq!(e, before);
}
