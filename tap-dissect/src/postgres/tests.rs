//! The postgres dissector's unit tests.

use super::*;
use crate::GenericFields;
use crate::testing::{Ev, Out, drive, flow};
use proto::v1::Entry;
use std::sync::LazyLock;

const C: Direction = Direction::ToServer;
const S: Direction = Direction::ToClient;

static HELLO: LazyLock<Vec<u8>> = LazyLock::new(|| startup(&[("user", "u")]));
static WELCOME: LazyLock<Vec<u8>> = LazyLock::new(connected);

/// Feeds the events to a new dissector and closes the connection. A
/// connection seen from its start that the events do not open gets a
/// startup exchange first, whose entry is checked and left out.
fn run_with(events: &[Ev], config: &DissectConfig, midstream: bool, bytewise: bool) -> Out {
    let opens = !midstream
        && !matches!(events.first(), Some(Ev::Data(C, b)) if startup_claim(b) == Claim::Yes);
    let mut all = Vec::new();
    if opens {
        all.push(Ev::Data(C, HELLO.as_slice()));
        all.push(Ev::Data(S, WELCOME.as_slice()));
    }
    all.extend_from_slice(events);
    let flow = flow(9, 15432, midstream);
    let mut out = Out::collect(
        "postgres",
        drive(new(&flow, config, None), &flow, &all, bytewise),
    );
    for (i, e) in out.entries.iter().enumerate() {
        assert_eq!(e.id, format!("{:016x}-{i}", 9));
        assert_eq!(e.protocol, Protocol::Postgres as i32);
    }
    if opens {
        let first = out.entries.remove(0);
        assert_eq!(first.method(), Some("STARTUP"));
        assert!(first.flags.is_empty(), "{:?}", first.flags);
    }
    out
}

/// Runs the events whole and split into single bytes: the entries must not differ.
fn run(events: &[Ev]) -> Out {
    let whole = run_with(events, &DissectConfig::default(), false, false);
    let bytewise = run_with(events, &DissectConfig::default(), false, true);
    assert_eq!(
        summary(&whole),
        summary(&bytewise),
        "split into bytes, the entries differ"
    );
    assert_eq!(whole.errors, bytewise.errors);
    whole
}

fn req(e: &Entry) -> &PostgresRequest {
    match e.request.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(request::Kind::Postgres(r)) => r,
        other => panic!("no postgres request: {other:?}"),
    }
}

fn resp(e: &Entry) -> &PostgresResponse {
    match e.response.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(response::Kind::Postgres(r)) => r,
        other => panic!("no postgres response: {other:?}"),
    }
}

/// An entry's verb, SQL, tags, SQLSTATE and flags.
type Row = (String, String, Vec<String>, String, Vec<String>);

/// Per entry, what segmentation must not change.
fn summary(out: &Out) -> Vec<Row> {
    out.entries
        .iter()
        .map(|e| {
            let r = req(e);
            let (tags, code) = match e.response.as_ref().and_then(|r| r.kind.as_ref()) {
                Some(response::Kind::Postgres(p)) => (
                    p.results.iter().map(|x| x.command_tag.clone()).collect(),
                    p.error.as_ref().map(|e| e.code.clone()).unwrap_or_default(),
                ),
                _ => (Vec::new(), String::new()),
            };
            let mut flags = e.flags.clone();
            flags.sort();
            (r.verb.clone(), r.sql.clone(), tags, code, flags)
        })
        .collect()
}

fn msg(t: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend(cstr(k));
        body.extend(cstr(v));
    }
    body.push(0);
    let mut v = (body.len() as u32 + 4).to_be_bytes().to_vec();
    v.extend(body);
    v
}

fn untyped(code: u32, rest: &[u8]) -> Vec<u8> {
    let mut v = ((8 + rest.len()) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(rest);
    v
}

fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', &cstr(sql))
}

fn parse(statement: &str, sql: &str) -> Vec<u8> {
    msg(b'P', &cat(&[cstr(statement), cstr(sql), vec![0, 0]]))
}

fn bind(portal: &str, statement: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut b = cat(&[cstr(portal), cstr(statement), vec![0, 0]]);
    b.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        match p {
            Some(v) => {
                b.extend_from_slice(&(v.len() as u32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    b.extend_from_slice(&[0, 0]);
    msg(b'B', &b)
}

fn describe_portal(portal: &str) -> Vec<u8> {
    msg(b'D', &cat(&[b"P".to_vec(), cstr(portal)]))
}

fn execute(portal: &str, max_rows: u32) -> Vec<u8> {
    msg(b'E', &cat(&[cstr(portal), max_rows.to_be_bytes().to_vec()]))
}

fn sync() -> Vec<u8> {
    msg(b'S', &[])
}

fn auth(code: u32, rest: &[u8]) -> Vec<u8> {
    msg(b'R', &cat(&[code.to_be_bytes().to_vec(), rest.to_vec()]))
}

fn param_status(k: &str, v: &str) -> Vec<u8> {
    msg(b'S', &cat(&[cstr(k), cstr(v)]))
}

fn ready(status: u8) -> Vec<u8> {
    msg(b'Z', &[status])
}

fn row_description(columns: &[&str]) -> Vec<u8> {
    let mut b = (columns.len() as u16).to_be_bytes().to_vec();
    for c in columns {
        b.extend(cstr(c));
        b.extend_from_slice(&[
            0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 255, 255, 255, 255, 255, 255, 0, 0,
        ]);
    }
    msg(b'T', &b)
}

fn data_row(values: &[Option<&str>]) -> Vec<u8> {
    let mut b = (values.len() as u16).to_be_bytes().to_vec();
    for v in values {
        match v {
            Some(v) => {
                b.extend_from_slice(&(v.len() as u32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    msg(b'D', &b)
}

fn complete(tag: &str) -> Vec<u8> {
    msg(b'C', &cstr(tag))
}

fn error(severity: &str, code: &str, message: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (f, v) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        b.push(f);
        b.extend(cstr(v));
    }
    b.push(0);
    msg(b'E', &b)
}

fn connected() -> Vec<u8> {
    cat(&[
        auth(0, &[]),
        param_status("server_version", "15.18"),
        msg(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]),
        ready(b'I'),
    ])
}

fn texts(values: &[PostgresValue]) -> Vec<Option<&str>> {
    values.iter().map(|v| v.text.as_deref()).collect()
}

#[test]
fn startup_and_authentication() {
    let hello = startup(&[
        ("user", "alice"),
        ("database", "shop"),
        ("application_name", "psql"),
        ("client_encoding", "UTF8"),
    ]);
    // trust: AuthenticationOk straight away.
    let ok = connected();
    let out = run(&[Ev::Data(C, &hello), Ev::Data(S, &ok)]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.entries.len(), 1);
    let e = &out.entries[0];
    let r = req(e);
    assert_eq!(
        (r.kind.as_str(), e.method(), e.path()),
        ("startup", Some("STARTUP"), Some(""))
    );
    assert_eq!((r.user.as_str(), r.database.as_str()), ("alice", "shop"));
    assert_eq!(r.application_name, "psql");
    assert_eq!(r.options[0].name, "client_encoding");
    assert_eq!(r.protocol_version, "3.0");
    let p = resp(e);
    assert_eq!(p.auth_method, "none");
    assert_eq!(p.backend_pid, 12345);
    assert_eq!(p.parameters[0].value, "15.18");
    assert_eq!(p.transaction_status, "idle");
    assert_eq!(e.status(), Some(0));
    assert!(e.flags.is_empty(), "{:?}", e.flags);
    assert_eq!(e.request_size, hello.len() as u64);
    assert_eq!(e.response_size, ok.len() as u64);

    // Passwords and SASL data are never kept; the method and mechanism are.
    let secret = "s3cr3t-n0nce";
    let md5 = [Ev::Data(C, &hello), Ev::Data(S, &auth(5, &[1, 2, 3, 4]))];
    let password = msg(b'p', &cstr(&format!("md5{secret}")));
    let mut events = md5.to_vec();
    events.push(Ev::Data(C, &password));
    events.push(Ev::Data(S, &ok));
    let out = run(&events);
    assert_eq!(resp(&out.entries[0]).auth_method, "md5");
    let json = format!("{:?}", out.entries[0]);
    assert!(!json.contains(secret), "{json}");

    let mut mechanisms = cstr("SCRAM-SHA-256");
    mechanisms.push(0);
    let first = format!("n,,n=,r={secret}");
    let mut initial = cstr("SCRAM-SHA-256");
    initial.extend_from_slice(&(first.len() as u32).to_be_bytes());
    initial.extend_from_slice(first.as_bytes());
    let initial = msg(b'p', &initial);
    let server_first = auth(11, format!("r={secret}xyz,s=c2FsdA==,i=4096").as_bytes());
    let client_final = msg(b'p', format!("c=biws,r={secret}xyz,p=cHJvb2Y=").as_bytes());
    let server_final = auth(12, b"v=c2lnbmF0dXJl");
    let out = run(&[
        Ev::Data(C, &hello),
        Ev::Data(S, &auth(10, &mechanisms)),
        Ev::Data(C, &initial),
        Ev::Data(S, &server_first),
        Ev::Data(C, &client_final),
        Ev::Data(S, &cat(&[server_final.clone(), ok.clone()])),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.entries.len(), 1);
    let p = resp(&out.entries[0]);
    assert_eq!(
        (p.auth_method.as_str(), p.sasl_mechanism.as_str()),
        ("sasl", "SCRAM-SHA-256")
    );
    let json = format!("{:?}", out.entries[0]);
    assert!(
        !json.contains(secret) && !json.contains("cHJvb2Y="),
        "{json}"
    );

    // A wrong password: the FATAL error is the startup's answer.
    let out = run(&[
        Ev::Data(C, &hello),
        Ev::Data(S, &auth(3, &[])),
        Ev::Data(C, &msg(b'p', &cstr(secret))),
        Ev::Data(
            S,
            &error(
                "FATAL",
                "28P01",
                "password authentication failed for user \"alice\"",
            ),
        ),
    ]);
    let e = &out.entries[0];
    assert_eq!(resp(e).auth_method, "cleartext");
    assert_eq!(resp(e).error.as_ref().unwrap().code, "28P01");
    assert_eq!(resp(e).error.as_ref().unwrap().severity, "FATAL");
    assert_eq!(e.status(), Some(1));
    assert!(!format!("{e:?}").contains(secret));
}

#[test]
fn ssl_request_refused_goes_on_accepted_stops() {
    let ssl = untyped(SSL_REQUEST, &[]);
    let hello = startup(&[("user", "bob")]);
    let out = run(&[
        Ev::Data(C, &ssl),
        Ev::Data(S, b"N"),
        Ev::Data(C, &hello),
        Ev::Data(S, &connected()),
        Ev::Data(C, &query("SELECT 1")),
        Ev::Data(
            S,
            &cat(&[
                row_description(&["?column?"]),
                data_row(&[Some("1")]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let s = summary(&out);
    assert_eq!(s.len(), 2);
    let r = req(&out.entries[0]);
    assert_eq!((r.user.as_str(), r.encryption.as_str()), ("bob", "ssl"));
    assert_eq!(resp(&out.entries[0]).encryption, "refused");
    assert_eq!(
        out.entries[0].request_size,
        (ssl.len() + hello.len()) as u64
    );
    assert_eq!(s[1].2, ["SELECT 1"]);

    // Accepted: a TLS handshake follows and nothing is parsed; the entry says tls.
    let client_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage";
    let out = run(&[
        Ev::Data(C, &ssl),
        Ev::Data(S, b"S"),
        Ev::Data(C, client_hello),
        Ev::Data(
            S,
            b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03Q\x00\x00\x00\x05",
        ),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.entries.len(), 1);
    let e = &out.entries[0];
    assert_eq!(req(e).encryption, "ssl");
    assert_eq!(resp(e).encryption, "accepted");
    assert_eq!(e.flags, ["tls"]);
    assert!(!e.tls, "the entry's bytes were not seen as plaintext");
    // The server's S not seen (lost): the client's handshake record says it.
    let out = run(&[Ev::Data(C, &ssl), Ev::Data(C, client_hello)]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.entries[0].flags, ["tls"]);
}

#[test]
fn protocol_3_2_keys_are_longer() {
    let mut key = vec![0, 0, 0x30, 0x39];
    key.extend_from_slice(&[7; 32]);
    let out = run(&[
        Ev::Data(C, &startup(&[("user", "u")])),
        Ev::Data(S, &cat(&[auth(0, &[]), msg(b'K', &key), ready(b'I')])),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(resp(&out.entries[0]).backend_pid, 12345);
    assert!(
        out.entries[0].flags.is_empty(),
        "{:?}",
        out.entries[0].flags
    );
    let cancel = untyped(CANCEL_REQUEST, &key);
    assert_eq!(probe(C, &cancel, false), Claim::Yes);
    let out = run(&[Ev::Data(C, &cancel)]);
    assert_eq!(req(&out.entries[0]).cancel_pid, 12345);
}

#[test]
fn cancel_request_is_an_entry_without_answer() {
    let cancel = untyped(CANCEL_REQUEST, &[0, 0, 0x30, 0x39, 9, 9, 9, 9]);
    let out = run(&[Ev::Data(C, &cancel)]);
    assert!(out.errors.is_empty());
    let e = &out.entries[0];
    assert_eq!((e.method(), req(e).cancel_pid), (Some("CANCEL"), 12345));
    assert!(e.flags.is_empty(), "{:?}", e.flags);
}

#[test]
fn simple_query_with_rows() {
    let sql = "  /* list */ select id, name FROM items ORDER BY id";
    let answer = cat(&[
        row_description(&["id", "name"]),
        data_row(&[Some("1"), Some("apple")]),
        data_row(&[Some("2"), None]),
        data_row(&[Some("3"), Some("fïg")]),
        complete("SELECT 3"),
        ready(b'I'),
    ]);
    let out = run(&[
        Ev::Data(C, &startup(&[("user", "u")])),
        Ev::Data(S, &connected()),
        Ev::Data(C, &query(sql)),
        Ev::Data(S, &answer),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let e = &out.entries[1];
    assert_eq!((e.method(), e.path()), (Some("SELECT"), Some(sql)));
    assert_eq!(req(e).kind, "simple");
    let p = resp(e);
    assert_eq!(p.results.len(), 1);
    let r = &p.results[0];
    assert_eq!(r.command_tag, "SELECT 3");
    assert_eq!(r.row_count, 3);
    assert_eq!(r.columns, ["id", "name"]);
    let rows: Vec<_> = r.rows.iter().map(|r| texts(&r.values)).collect();
    assert_eq!(
        rows,
        [
            vec![Some("1"), Some("apple")],
            vec![Some("2"), None],
            vec![Some("3"), Some("fïg")]
        ]
    );
    assert_eq!(p.transaction_status, "idle");
    assert_eq!(e.status(), Some(0));
    assert!(e.flags.is_empty(), "{:?}", e.flags);
    assert_eq!(e.request_size, query(sql).len() as u64);
    assert_eq!(e.response_size, answer.len() as u64);
    assert_eq!(e.elapsed_ns, Some(1000));
}

#[test]
fn multi_statement_query_has_a_result_per_statement() {
    let sql = "BEGIN; INSERT INTO t VALUES (1); SELECT count(*) FROM t; COMMIT";
    let out = run(&[
        Ev::Data(C, &query(sql)),
        Ev::Data(
            S,
            &cat(&[
                complete("BEGIN"),
                complete("INSERT 0 1"),
                row_description(&["count"]),
                data_row(&[Some("7")]),
                complete("SELECT 1"),
                complete("COMMIT"),
                ready(b'I'),
            ]),
        ),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.entries.len(), 1);
    let p = resp(&out.entries[0]);
    let tags: Vec<_> = p
        .results
        .iter()
        .map(|r| (r.command_tag.as_str(), r.row_count))
        .collect();
    assert_eq!(
        tags,
        [
            ("BEGIN", 0),
            ("INSERT 0 1", 1),
            ("SELECT 1", 1),
            ("COMMIT", 0)
        ]
    );
    assert_eq!(p.results[2].columns, ["count"]);
    assert_eq!(out.entries[0].method(), Some("BEGIN"));
}

#[test]
fn errors_carry_their_sqlstate() {
    let out = run(&[
        Ev::Data(C, &query("SELECT * FROM missing")),
        Ev::Data(
            S,
            &cat(&[
                error("ERROR", "42P01", "relation \"missing\" does not exist"),
                ready(b'I'),
            ]),
        ),
        // The second statement fails: the first's result stays, the rest never runs.
        Ev::Data(C, &query("SELECT 1; SELECT 1/0; SELECT 2")),
        Ev::Data(
            S,
            &cat(&[
                row_description(&["?column?"]),
                data_row(&[Some("1")]),
                complete("SELECT 1"),
                row_description(&["?column?"]),
                error("ERROR", "22012", "division by zero"),
                ready(b'I'),
            ]),
        ),
        Ev::Data(C, &query("SELECT 3")),
        Ev::Data(
            S,
            &cat(&[
                row_description(&["x"]),
                data_row(&[Some("3")]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let s = summary(&out);
    assert_eq!(s[0].3, "42P01");
    let e = &out.entries[0];
    assert_eq!(e.status(), Some(1));
    let err = resp(e).error.as_ref().unwrap();
    assert_eq!(
        (err.severity.as_str(), err.message.as_str()),
        ("ERROR", "relation \"missing\" does not exist")
    );
    assert_eq!(s[1].2, ["SELECT 1", ""]);
    assert_eq!(s[1].3, "22012");
    assert_eq!(s[2].2, ["SELECT 1"]);
    assert_eq!(s[2].3, "");
    assert_eq!(out.entries[2].status(), Some(0));
}

#[test]
fn extended_query_with_named_and_unnamed_statements() {
    let out = run(&[
        // PQprepare: a named statement, then PQexecPrepared twice.
        Ev::Data(C, &cat(&[parse("s1", "SELECT $1::int + 1 AS n"), sync()])),
        Ev::Data(S, &cat(&[msg(b'1', &[]), ready(b'I')])),
        Ev::Data(
            C,
            &cat(&[
                bind("", "s1", &[Some("41")]),
                describe_portal(""),
                execute("", 0),
                sync(),
            ]),
        ),
        Ev::Data(
            S,
            &cat(&[
                msg(b'2', &[]),
                row_description(&["n"]),
                data_row(&[Some("42")]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
        // PQexecParams: the unnamed statement, replaced each time.
        Ev::Data(
            C,
            &cat(&[
                parse("", "UPDATE t SET a = $1 WHERE b = $2"),
                bind("", "", &[Some("5"), None]),
                describe_portal(""),
                execute("", 0),
                sync(),
            ]),
        ),
        Ev::Data(
            S,
            &cat(&[
                msg(b'1', &[]),
                msg(b'2', &[]),
                msg(b'n', &[]),
                complete("UPDATE 2"),
                ready(b'I'),
            ]),
        ),
        Ev::Data(
            C,
            &cat(&[bind("", "s1", &[Some("1")]), execute("", 0), sync()]),
        ),
        Ev::Data(
            S,
            &cat(&[
                msg(b'2', &[]),
                data_row(&[Some("2")]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.entries.len(), 3, "{:?}", summary(&out));
    let e = &out.entries[0];
    let r = req(e);
    assert_eq!(
        (
            r.kind.as_str(),
            r.verb.as_str(),
            r.sql.as_str(),
            r.statement.as_str()
        ),
        ("extended", "SELECT", "SELECT $1::int + 1 AS n", "s1")
    );
    assert_eq!(texts(&r.parameters), [Some("41")]);
    assert_eq!(r.parameter_count, 1);
    let res = &resp(e).results[0];
    assert_eq!(
        (res.command_tag.as_str(), res.columns.clone()),
        ("SELECT 1", vec!["n".to_string()])
    );
    assert_eq!(texts(&res.rows[0].values), [Some("42")]);
    assert!(e.flags.is_empty(), "{:?}", e.flags);
    let r = req(&out.entries[1]);
    assert_eq!(
        (r.sql.as_str(), r.statement.as_str()),
        ("UPDATE t SET a = $1 WHERE b = $2", "")
    );
    assert_eq!(texts(&r.parameters), [Some("5"), None]);
    assert_eq!(resp(&out.entries[1]).results[0].row_count, 2);
    let r = req(&out.entries[2]);
    assert_eq!(
        (r.sql.as_str(), texts(&r.parameters)),
        ("SELECT $1::int + 1 AS n", vec![Some("1")])
    );
}

#[test]
fn pipelined_extended_queries_pair_in_order() {
    let mut client = Vec::new();
    let mut server = Vec::new();
    for i in 0..5 {
        let sql = format!("SELECT {i}");
        client.extend(parse("", &sql));
        client.extend(bind("", "", &[]));
        client.extend(describe_portal(""));
        client.extend(execute("", 0));
        server.extend(cat(&[
            msg(b'1', &[]),
            msg(b'2', &[]),
            row_description(&["c"]),
            data_row(&[Some(&i.to_string())]),
            complete("SELECT 1"),
        ]));
    }
    client.extend(sync());
    server.extend(ready(b'I'));
    // A batch whose second Execute fails: the third is skipped by the server.
    client.extend(cat(&[
        parse("a", "INSERT INTO t VALUES (1)"),
        bind("", "a", &[]),
        execute("", 0),
        parse("b", "INSERT INTO t VALUES (1)"),
        bind("", "b", &[]),
        execute("", 0),
        parse("c", "SELECT 'never'"),
        bind("", "c", &[]),
        execute("", 0),
        sync(),
    ]));
    server.extend(cat(&[
        msg(b'1', &[]),
        msg(b'2', &[]),
        complete("INSERT 0 1"),
        msg(b'1', &[]),
        msg(b'2', &[]),
        error(
            "ERROR",
            "23505",
            "duplicate key value violates unique constraint \"t_pkey\"",
        ),
        ready(b'I'),
    ]));
    // A Parse that fails with no Execute in its batch still shows its error.
    client.extend(cat(&[parse("bad", "SELEC 1"), sync()]));
    server.extend(cat(&[
        error("ERROR", "42601", "syntax error at or near \"SELEC\""),
        ready(b'I'),
    ]));
    let out = run(&[Ev::Data(C, &client), Ev::Data(S, &server)]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let s = summary(&out);
    let rows: Vec<_> = out.entries[..5]
        .iter()
        .map(|e| {
            texts(&resp(e).results[0].rows[0].values)[0]
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(rows, ["0", "1", "2", "3", "4"]);
    for (i, e) in out.entries[..5].iter().enumerate() {
        assert_eq!(req(e).sql, format!("SELECT {i}"));
    }
    assert_eq!(s[5].2, ["INSERT 0 1"]);
    assert_eq!(
        (s[6].1.as_str(), s[6].3.as_str()),
        ("INSERT INTO t VALUES (1)", "23505")
    );
    assert_eq!(s[7].1, "SELECT 'never'");
    assert_eq!(s[7].4, ["skipped"]);
    assert!(out.entries[7].response.is_none());
    assert_eq!(req(&out.entries[8]).kind, "parse");
    assert_eq!((s[8].1.as_str(), s[8].3.as_str()), ("SELEC 1", "42601"));
    assert_eq!(s.len(), 9);
}

#[test]
fn copy_data_is_counted_not_kept() {
    let rows = ["1\tapple\n", "2\tpear\n", "3\tfig\n"];
    let mut client = query("COPY items FROM STDIN");
    let mut copy_in = Vec::new();
    for r in rows {
        copy_in.extend(msg(b'd', r.as_bytes()));
    }
    copy_in.extend(msg(b'c', &[]));
    let out = run(&[
        Ev::Data(C, &client),
        Ev::Data(S, &msg(b'G', &[0, 0, 2, 0, 0, 0, 0])),
        Ev::Data(C, &copy_in),
        Ev::Data(S, &cat(&[complete("COPY 3"), ready(b'I')])),
        Ev::Data(C, &query("COPY items TO STDOUT")),
        Ev::Data(
            S,
            &cat(&[
                msg(b'H', &[0, 0, 2, 0, 0, 0, 0]),
                msg(b'd', b"1\tapple\n"),
                msg(b'd', b"2\tpear\n"),
                msg(b'c', &[]),
                complete("COPY 2"),
                ready(b'I'),
            ]),
        ),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let e = &out.entries[0];
    let total: usize = rows.iter().map(|r| r.len()).sum();
    assert_eq!(req(e).copy_bytes, total as u64);
    client.extend(copy_in);
    assert_eq!(e.request_size, client.len() as u64);
    let r = &resp(e).results[0];
    assert_eq!(
        (r.copy.as_str(), r.command_tag.as_str(), r.row_count),
        ("in", "COPY 3", 3)
    );
    let r = &resp(&out.entries[1]).results[0];
    assert_eq!((r.copy.as_str(), r.copy_bytes, r.row_count), ("out", 15, 2));
    assert!(r.rows.is_empty());
}

#[test]
fn notices_parameters_and_notifications_do_not_break_pairing() {
    let notification = msg(b'A', &cat(&[vec![0, 0, 0, 7], cstr("news"), cstr("hello")]));
    let out = run(&[
        Ev::Data(C, &query("LISTEN news; SET search_path = x")),
        Ev::Data(
            S,
            &cat(&[
                complete("LISTEN"),
                msg(
                    b'N',
                    &cat(&[b"SWARNING\0VWARNING\0C01000\0Mjust so\0\0".to_vec()]),
                ),
                param_status("search_path", "x"),
                complete("SET"),
                ready(b'I'),
            ]),
        ),
        Ev::Data(C, &query("NOTIFY news, 'hello'")),
        Ev::Data(
            S,
            &cat(&[complete("NOTIFY"), notification.clone(), ready(b'I')]),
        ),
        // Delivered while idle too.
        Ev::Data(S, &notification),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let verbs: Vec<_> = out
        .entries
        .iter()
        .map(|e| e.method().unwrap().to_string())
        .collect();
    assert_eq!(verbs, ["LISTEN", "NOTIFICATION", "NOTIFY", "NOTIFICATION"]);
    let p = resp(&out.entries[0]);
    assert_eq!(p.results.len(), 2);
    assert_eq!(
        (p.notices[0].code.as_str(), p.notices[0].message.as_str()),
        ("01000", "just so")
    );
    assert_eq!(p.parameters[0].name, "search_path");
    let n = &out.entries[1];
    assert_eq!(n.path(), Some("news"));
    assert_eq!((resp(n).notify_pid, resp(n).payload.as_str()), (7, "hello"));
    assert_eq!(n.elapsed_ns, None);
    assert!(out.entries.iter().all(|e| e.flags.is_empty()));
}

#[test]
fn huge_length_fields_are_malformed_without_allocating() {
    // 2 GiB: past the limit, an error, never an allocation; then parsing resumes.
    let mut bad = vec![b'Q', 0x80, 0, 0, 0];
    bad.extend_from_slice(b"SELECT 'x'");
    let out = run(&[
        Ev::Data(C, &bad),
        Ev::Data(C, &query("SELECT 2")),
        Ev::Data(
            S,
            &cat(&[
                row_description(&["c"]),
                data_row(&[Some("2")]),
                complete("SELECT 1"),
                ready(b'I'),
            ]),
        ),
    ]);
    assert_eq!(out.errors, ["length_out_of_range"]);
    let s = summary(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].1, "SELECT 2");
    assert!(
        s[0].4
            .contains(&"malformed:length_out_of_range".to_string()),
        "{:?}",
        s[0].4
    );
    // A length the server allows is streamed: the cap is kept, the rest counted.
    let config = DissectConfig {
        max_body: 1024,
        ..Default::default()
    };
    let flow = flow(9, 15432, false);
    let mut d = new(&flow, &config, None);
    let mut out = Vec::new();
    d.on_data(&flow, C, 1, &HELLO, &mut out);
    d.on_data(&flow, S, 1, &WELCOME, &mut out);
    out.clear();
    d.on_data(&flow, C, 1, &query("SELECT big"), &mut out);
    let value = 256u32 << 20;
    let mut head = vec![b'D'];
    head.extend_from_slice(&(4 + 2 + 4 + value).to_be_bytes());
    head.extend_from_slice(&[0, 1]);
    head.extend_from_slice(&value.to_be_bytes());
    d.on_data(&flow, S, 2, &row_description(&["big"]), &mut out);
    d.on_data(&flow, S, 2, &head, &mut out);
    let chunk = vec![b'x'; 1 << 16];
    for _ in 0..(value as usize / chunk.len()) {
        d.on_data(&flow, S, 3, &chunk, &mut out);
    }
    d.on_data(
        &flow,
        S,
        4,
        &cat(&[complete("SELECT 1"), ready(b'I')]),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    let Some(Emit::Entry(e)) = out.pop() else {
        panic!("no entry")
    };
    let r = &resp(&e).results[0];
    let v = r.rows[0].values[0].text.as_deref().unwrap();
    assert!(v.len() <= 1024 && v.starts_with("xxxx"), "{}", v.len());
    assert!(r.rows_truncated);
    assert!(e.flags.contains(&"truncated".to_string()));
    assert!(e.response_size > u64::from(value));
    // A DataRow past 1 GiB from the server is malformed.
    let out = run(&[
        Ev::Data(C, &query("SELECT 1")),
        Ev::Data(S, &[b'D', 0x7f, 0xff, 0xff, 0xff, 0, 1]),
    ]);
    assert_eq!(out.errors, ["length_out_of_range"]);
}

#[test]
fn caps_bound_what_is_kept() {
    let config = DissectConfig {
        max_body: 64,
        max_pending: 4,
        ..Default::default()
    };
    let long = "x".repeat(500);
    let many: Vec<Option<&str>> = (0..1000).map(|_| Some("abcdef")).collect();
    let nulls: Vec<Option<&str>> = vec![None; 60000];
    let mut server = cat(&[row_description(&["a"]), data_row(&nulls)]);
    for _ in 0..500 {
        server.extend(data_row(&[Some(&long)]));
    }
    server.extend(cat(&[complete("SELECT 501"), ready(b'I')]));
    let out = run_with(
        &[
            Ev::Data(
                C,
                &cat(&[
                    parse("", &format!("SELECT '{long}'")),
                    bind("", "", &many),
                    execute("", 0),
                    sync(),
                ]),
            ),
            Ev::Data(
                S,
                &cat(&[
                    msg(b'1', &[]),
                    msg(b'2', &[]),
                    complete("SELECT 1"),
                    ready(b'I'),
                ]),
            ),
            Ev::Data(C, &query(&format!("SELECT '{long}'"))),
            Ev::Data(S, &server),
        ],
        &config,
        false,
        false,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let r = req(&out.entries[0]);
    assert!(r.sql.len() <= 64 && r.sql_truncated);
    assert_eq!(r.parameter_count, 1000);
    let kept: usize = r
        .parameters
        .iter()
        .map(|p| p.text.as_ref().map_or(0, String::len))
        .sum();
    assert!(kept <= 64 && r.parameters_truncated, "{kept}");
    assert!(out.entries[0].flags.contains(&"truncated".to_string()));
    let p = resp(&out.entries[1]);
    let res = &p.results[0];
    assert_eq!(res.row_count, 501);
    assert!(res.rows_truncated);
    let values: usize = res.rows.iter().map(|r| r.values.len()).sum();
    assert!(values <= 64 / VALUE_COST + 1, "{values}");
    // Many pending queries: the oldest is pushed out, counted, and still an entry.
    let mut client = Vec::new();
    for i in 0..20 {
        client.extend(query(&format!("SELECT {i}")));
    }
    let out = run_with(&[Ev::Data(C, &client)], &config, false, false);
    assert_eq!(out.entries.len(), 20);
    assert_eq!(out.dropped, 20 - 16);
    assert!(out.entries.iter().all(|e| e.flags == ["no_response"]));
}

#[test]
fn statements_are_bounded() {
    let mut st: Named<Statement> = Named::new(MAX_STATEMENTS, MAX_STATEMENT_BYTES);
    let stmt = |sql: String| Statement {
        sql,
        truncated: false,
    };
    for i in 0..5000 {
        st.insert(format!("s{i}"), stmt("SELECT 1".into()));
        // The unnamed statement is redefined all the time.
        st.insert(String::new(), stmt(format!("SELECT {i}")));
    }
    assert!(st.map.len() <= MAX_STATEMENTS);
    assert!(st.order.len() <= 2 * MAX_STATEMENTS + 16);
    assert_eq!(st.get("").unwrap().sql, "SELECT 4999");
    assert!(st.get("s4999").is_some() && st.get("s0").is_none());
    let big = "y".repeat(3 << 20);
    st.insert("a".into(), stmt(big.clone()));
    st.insert("b".into(), stmt(big));
    assert!(st.bytes <= MAX_STATEMENT_BYTES);
    assert!(st.get("a").is_none() && st.get("b").is_some());
    st.remove("b");
    assert!(st.get("b").is_none());
}

#[test]
fn gaps() {
    // Inside a message: its framing holds, the entry is flagged.
    let out = run_with(
        &[
            Ev::Data(C, &query("SELECT 1")),
            Ev::Data(
                S,
                &cat(&[
                    row_description(&["c"]),
                    b"D\0\0\0\x10\0\x01\0\0\0\x06ab".to_vec(),
                ]),
            ),
            Ev::Gap(S, 2),
            Ev::Data(
                S,
                &cat(&[b"ef".to_vec(), complete("SELECT 1"), ready(b'I')]),
            ),
            Ev::Data(C, &query("SELECT 2")),
            Ev::Data(S, &cat(&[complete("SELECT 0"), ready(b'I')])),
        ],
        &DissectConfig::default(),
        false,
        false,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let s = summary(&out);
    assert_eq!(s[0].2, ["SELECT 1"]);
    assert!(s[0].4.contains(&"gap".to_string()), "{:?}", s[0].4);
    assert_eq!(
        texts(&resp(&out.entries[0]).results[0].rows[0].values),
        [Some("ab")]
    );
    assert_eq!(s[1].2, ["SELECT 0"]);
    assert!(s[1].4.is_empty());

    // Across message boundaries: the cut query is an entry, and parsing
    // resumes at the next message after bytes that are not one.
    let q2 = query("SELECT 'two', 'lost tail'");
    let mut tail = b"ELECT 2\0".to_vec();
    tail.extend(query("SELECT 3"));
    let out = run_with(
        &[
            Ev::Data(C, &query("SELECT 1")),
            Ev::Data(S, &cat(&[complete("SELECT 0"), ready(b'I')])),
            Ev::Data(C, &q2[..12]),
            Ev::Gap(C, (q2.len() - 12) as u64 + 10),
            Ev::Data(S, &cat(&[complete("SELECT 2"), ready(b'I')])),
            Ev::Data(C, &tail),
            Ev::Data(S, &cat(&[complete("SELECT 3"), ready(b'I')])),
        ],
        &DissectConfig::default(),
        false,
        false,
    );
    assert!(
        out.errors.is_empty(),
        "gaps are not parse errors: {:?}",
        out.errors
    );
    let s = summary(&out);
    assert_eq!(s.len(), 3, "{s:?}");
    assert_eq!(
        (s[1].1.as_str(), s[1].2.clone()),
        ("SELECT ", vec!["SELECT 2".to_string()])
    );
    assert!(s[1].4.contains(&"gap".to_string()) && s[1].4.contains(&"truncated".to_string()));
    assert_eq!(
        (s[2].1.as_str(), s[2].2.clone()),
        ("SELECT 3", vec!["SELECT 3".to_string()])
    );

    // The server's answer cut across its end: the next answer goes to the next query.
    let out = run_with(
        &[
            Ev::Data(C, &query("SELECT 1")),
            Ev::Data(S, &cat(&[row_description(&["c"]), data_row(&[Some("1")])])),
            Ev::Gap(S, 20),
            Ev::Data(C, &query("SELECT 2")),
            Ev::Data(
                S,
                &cat(&[
                    row_description(&["c"]),
                    data_row(&[Some("2")]),
                    complete("SELECT 1"),
                    ready(b'I'),
                ]),
            ),
        ],
        &DissectConfig::default(),
        false,
        false,
    );
    let s = summary(&out);
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(s[0].4.contains(&"gap".to_string()) && s[0].4.contains(&"incomplete".to_string()));
    assert_eq!(
        (s[1].1.as_str(), s[1].2.clone()),
        ("SELECT 2", vec!["SELECT 1".to_string()])
    );
    assert_eq!(
        texts(&resp(&out.entries[1]).results[0].rows[0].values),
        [Some("2")]
    );
}

#[test]
fn midstream_starts_at_a_message_boundary() {
    let mut client = b"ECT * FROM t WHERE a = 1\0".to_vec();
    client.extend(cat(&[bind("", "s7", &[Some("3")]), execute("", 0), sync()]));
    let mut server = b"\0\0\0\x05xyz".to_vec();
    server.extend(cat(&[
        msg(b'2', &[]),
        data_row(&[Some("3")]),
        complete("SELECT 1"),
        ready(b'T'),
    ]));
    let out = run_with(
        &[Ev::Data(C, &client), Ev::Data(S, &server)],
        &DissectConfig::default(),
        true,
        false,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.entries.len(), 1);
    let e = &out.entries[0];
    // The statement was prepared before the capture: its SQL is not known.
    let r = req(e);
    assert_eq!(
        (r.statement.as_str(), r.sql.as_str(), r.verb.as_str()),
        ("s7", "", "")
    );
    assert_eq!(resp(e).results[0].command_tag, "SELECT 1");
    assert_eq!(e.flags, ["midstream"]);
}

#[test]
fn probe_claims_by_content() {
    let startup_msg = startup(&[("user", "postgres"), ("database", "x")]);
    let ssl = untyped(SSL_REQUEST, &[]);
    let gss = untyped(GSSENC_REQUEST, &[]);
    let cancel = untyped(CANCEL_REQUEST, &[0, 0, 0, 1, 0, 0, 0, 2]);
    let run_client = cat(&[query("SELECT 1"), query("SELECT 2")]);
    let run_server = cat(&[complete("SELECT 1"), ready(b'I')]);
    let mut tail_then_run = b"garbage tail".to_vec();
    tail_then_run.extend(cat(&[
        parse("", "SELECT 1"),
        bind("", "", &[]),
        execute("", 0),
        sync(),
    ]));
    // A Kafka Metadata v0 request begins with the bytes of protocol 3.0.
    let kafka = [
        0, 0, 0, 20, 0, 3, 0, 0, 0, 0, 0, 1, 0, 4, b'k', b'c', b'a', b't', 0, 0, 0, 0,
    ];
    let table: &[(Direction, &[u8], bool, Claim)] = &[
        (C, &startup_msg, false, Claim::Yes),
        (C, &startup_msg[..6], false, Claim::NeedMore),
        (C, &startup_msg[..12], false, Claim::NeedMore),
        (C, &ssl, false, Claim::Yes),
        (C, &ssl[..5], false, Claim::NeedMore),
        (C, &gss, false, Claim::Yes),
        (C, &cancel, false, Claim::Yes),
        (C, &kafka, false, Claim::No),
        (C, b"GET / HTTP/1.1\r\n", false, Claim::No),
        (C, b"*1\r\n$4\r\nPING\r\n", false, Claim::No),
        (C, b"\x16\x03\x01\x02\x00\x01", false, Claim::No),
        (C, &[0, 0, 0, 8, 1, 2, 3, 4], false, Claim::No),
        (C, &run_client, false, Claim::No),
        (C, &run_client, true, Claim::Yes),
        (C, &query("SELECT 1"), true, Claim::NeedMore),
        (C, &tail_then_run, true, Claim::Yes),
        (S, &run_server, false, Claim::No),
        (S, &run_server, true, Claim::Yes),
        (S, b"HTTP/1.1 200 OK\r\n\r\n", true, Claim::No),
        (
            C,
            b"just some text that is not postgres at all",
            true,
            Claim::No,
        ),
    ];
    for (dir, bytes, midstream, want) in table {
        assert_eq!(
            probe(*dir, bytes, *midstream),
            *want,
            "{dir:?} {bytes:?} {midstream}"
        );
    }
}

#[test]
fn verbs_and_tags() {
    let table = [
        ("select 1", "SELECT"),
        ("  -- comment\n  insert into t values (1)", "INSERT"),
        (
            "/* a /* nested */ comment */ WITH x AS (SELECT 1) SELECT * FROM x",
            "WITH",
        ),
        ("((SELECT 1)) UNION (SELECT 2)", "SELECT"),
        ("", ""),
        ("/* unterminated", ""),
        ("123", ""),
    ];
    for (sql, want) in table {
        assert_eq!(verb(sql), want, "{sql}");
    }
    assert_eq!(tag_rows("INSERT 0 5"), Some(5));
    assert_eq!(tag_rows("SELECT 3"), Some(3));
    assert_eq!(tag_rows("CREATE TABLE"), None);
    assert_eq!(tag_rows("COPY 100000"), Some(100_000));
}

/// Picked up mid-connection with only a couple of messages: one query, its
/// answer. Detection still makes it PostgreSQL.
#[test]
fn a_connection_picked_up_with_one_query_is_claimed() {
    use crate::flow::FlowHandler;
    use std::sync::Arc;
    let f = flow(9, 15432, true);
    let mut conn = crate::Connection::new(Arc::new(DissectConfig::default()));
    let mut out = Vec::new();
    conn.on_data(&f, C, 1_000, &query("SELECT 1"), &mut out);
    let answer = cat(&[
        row_description(&["?column?"]),
        data_row(&[Some("1")]),
        complete("SELECT 1"),
        ready(b'I'),
    ]);
    conn.on_data(&f, S, 2_000, &answer, &mut out);
    conn.on_close(&f, &crate::testing::fin(3_000), &mut out);
    let entries: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            Emit::Entry(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(entries.len(), 1, "{out:?}");
    assert_eq!(entries[0].protocol, Protocol::Postgres as i32, "{out:?}");
    assert_eq!(entries[0].path(), Some("SELECT 1"));
}
