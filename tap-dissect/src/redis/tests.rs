//! The redis dissector's unit tests.

use super::*;
use crate::GenericFields;
use crate::testing::{Ev, Out, drive, flow};
use proto::v1::Entry;

const C: Direction = Direction::ToServer;
const S: Direction = Direction::ToClient;

fn run_with(events: &[Ev], config: &DissectConfig, midstream: bool, bytewise: bool) -> Out {
    let flow = flow(7, 6390, midstream);
    let out = Out::collect(
        "redis",
        drive(new(&flow, config, None), &flow, events, bytewise),
    );
    assert_eq!(out.dropped, 0);
    // Entries are numbered in the order they are made.
    for (i, e) in out.entries.iter().enumerate() {
        assert_eq!(e.id, format!("{:016x}-{i}", 7));
        assert_eq!(e.protocol, Protocol::Redis as i32);
    }
    out
}

fn run(events: &[Ev]) -> Out {
    let whole = run_with(events, &DissectConfig::default(), false, false);
    let bytewise = run_with(events, &DissectConfig::default(), false, true);
    // Segmentation never changes what is seen (timestamps aside).
    assert_eq!(summary(&whole), summary(&bytewise), "byte-by-byte differs");
    assert_eq!(whole.errors, bytewise.errors);
    whole
}

fn req(e: &Entry) -> &RedisRequest {
    match e.request.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(request::Kind::Redis(r)) => r,
        other => panic!("no redis request: {other:?}"),
    }
}

fn resp(e: &Entry) -> &RedisResponse {
    match e.response.as_ref().and_then(|r| r.kind.as_ref()) {
        Some(response::Kind::Redis(r)) => r,
        other => panic!("no redis response: {other:?}"),
    }
}

/// (command, key, reply type, reply value, flags) per entry.
fn summary(o: &Out) -> Vec<(String, String, String, String, Vec<String>)> {
    o.entries
        .iter()
        .map(|e| {
            let (c, k) = e
                .request
                .as_ref()
                .map_or((String::new(), String::new()), |_| {
                    (req(e).command.clone(), req(e).key.clone())
                });
            let (t, v) = e
                .response
                .as_ref()
                .map_or((String::new(), String::new()), |_| {
                    let r = resp(e);
                    (
                        r.r#type.clone(),
                        String::from_utf8_lossy(&r.value).into_owned(),
                    )
                });
            (c, k, t, v, e.flags.clone())
        })
        .collect()
}

fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut b = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        b.extend_from_slice(a);
        b.extend_from_slice(b"\r\n");
    }
    b
}

#[test]
fn every_reply_type() {
    // (reply bytes, type, value, elements, error)
    let table: &[(&[u8], &str, &str, u64, &str)] = &[
        (b"+OK\r\n", "simple", "OK", 0, ""),
        (
            b"-ERR unknown command 'X'\r\n",
            "error",
            "",
            0,
            "ERR unknown command 'X'",
        ),
        (b":-42\r\n", "integer", "-42", 0, ""),
        (b"$5\r\nhello\r\n", "bulk", "hello", 0, ""),
        (b"$0\r\n\r\n", "bulk", "", 0, ""),
        (b"$-1\r\n", "null", "", 0, ""),
        (b"*-1\r\n", "null", "", 0, ""),
        (b"_\r\n", "null", "", 0, ""),
        (b"*0\r\n", "array", "[]", 0, ""),
        (
            b"*3\r\n$1\r\na\r\n:1\r\n*2\r\n+x\r\n$-1\r\n",
            "array",
            "[\"a\", 1, [\"x\", null]]",
            3,
            "",
        ),
        (b"#t\r\n", "boolean", "true", 0, ""),
        (b"#f\r\n", "boolean", "false", 0, ""),
        (b",3.14\r\n", "double", "3.14", 0, ""),
        (b",-inf\r\n", "double", "-inf", 0, ""),
        (
            b"(3492890328409238509324850943850943825024385\r\n",
            "big_number",
            "3492890328409238509324850943850943825024385",
            0,
            "",
        ),
        (
            b"!21\r\nSYNTAX invalid syntax\r\n",
            "bulk_error",
            "",
            0,
            "SYNTAX invalid syntax",
        ),
        (
            b"=15\r\ntxt:Some string\r\n",
            "verbatim",
            "Some string",
            0,
            "",
        ),
        (
            b"%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n#f\r\n",
            "map",
            "{\"first\": 1, \"second\": false}",
            2,
            "",
        ),
        (b"~2\r\n+a\r\n+a\r\n", "set", "{\"a\", \"a\"}", 2, ""),
        // An attribute annotates the reply after it and is not shown.
        (
            b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*1\r\n:2\r\n",
            "array",
            "[2]",
            1,
            "",
        ),
        (
            b"*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n",
            "array",
            "[1, 2]",
            2,
            "",
        ),
        // RESP3 streamed string and aggregates.
        (
            b"$?\r\n;4\r\nHell\r\n;2\r\no!\r\n;0\r\n",
            "bulk",
            "Hello!",
            0,
            "",
        ),
        (b"*?\r\n:1\r\n:2\r\n.\r\n", "array", "[1, 2]", 2, ""),
        (b"%?\r\n+a\r\n:1\r\n.\r\n", "map", "{\"a\": 1}", 1, ""),
        // Binary and quoting inside aggregates, as redis-cli shows them.
        (
            b"*2\r\n$3\r\na\"\xff\r\n-ERR x\r\n",
            "array",
            "[\"a\\\"\\xff\", error(\"ERR x\")]",
            2,
            "",
        ),
    ];
    for (bytes, t, value, elements, error) in table {
        let out = run(&[Ev::Data(C, &cmd(&[b"X"])), Ev::Data(S, bytes)]);
        assert!(out.errors.is_empty(), "{bytes:?}: {:?}", out.errors);
        assert_eq!(out.entries.len(), 1, "{bytes:?}");
        let e = &out.entries[0];
        let r = resp(e);
        assert_eq!(r.r#type, *t, "{bytes:?}");
        assert_eq!(String::from_utf8_lossy(&r.value), *value, "{bytes:?}");
        assert_eq!(r.elements, *elements, "{bytes:?}");
        assert_eq!(r.error, *error, "{bytes:?}");
        assert_eq!(r.is_error, !error.is_empty(), "{bytes:?}");
        assert_eq!(e.response_size, bytes.len() as u64, "{bytes:?}");
        assert!(e.flags.is_empty(), "{bytes:?}: {:?}", e.flags);
    }
}

#[test]
fn binary_bulk_is_kept_exactly() {
    let out = run(&[
        Ev::Data(C, &cmd(&[b"GET", b"k\x00\xff"])),
        Ev::Data(S, b"$4\r\n\x00\r\n\xff\r\n"),
    ]);
    assert_eq!(req(&out.entries[0]).args, vec![b"k\x00\xff".to_vec()]);
    assert_eq!(resp(&out.entries[0]).value, b"\x00\r\n\xff");
}

#[test]
fn pipelined_commands_pair_in_order() {
    let mut reqs = cmd(&[b"SET", b"k", b"v"]);
    reqs.extend(cmd(&[b"get", b"k"]));
    reqs.extend(cmd(&[b"INCR", b"k"]));
    reqs.extend(cmd(&[b"GET", b"missing"]));
    let out = run(&[
        Ev::Data(C, &reqs),
        Ev::Data(
            S,
            b"+OK\r\n$1\r\nv\r\n-ERR value is not an integer or out of range\r\n$-1\r\n",
        ),
    ]);
    let s = summary(&out);
    assert_eq!(
        s.iter()
            .map(|(c, k, t, v, _)| (c.as_str(), k.as_str(), t.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [
            ("SET", "k", "simple", "OK"),
            ("GET", "k", "bulk", "v"),
            ("INCR", "k", "error", ""),
            ("GET", "missing", "null", ""),
        ]
    );
    let incr = &out.entries[2];
    assert_eq!(
        resp(incr).error,
        "ERR value is not an integer or out of range"
    );
    assert_eq!(incr.status(), Some(1));
    assert_eq!(out.entries[0].status(), Some(0));
    assert_eq!(out.entries[0].method(), Some("SET"));
    assert_eq!(out.entries[0].path(), Some("k"));
    assert_eq!(
        req(&out.entries[0]).args,
        vec![b"k".to_vec(), b"v".to_vec()]
    );
    assert_eq!(req(&out.entries[0]).arg_count, 2);
    assert_eq!(out.entries[0].request_size, 27);
    assert!(out.entries.iter().all(|e| e.elapsed_ns == Some(1000)));
}

#[test]
fn commands_and_keys() {
    // (arguments, command, key, args after the command's name)
    let table: &[(&[&[u8]], &str, &str, usize)] = &[
        (&[b"ping"], "PING", "", 0),
        (&[b"ECHO", b"hi"], "ECHO", "", 1),
        (&[b"client", b"setname", b"me"], "CLIENT SETNAME", "", 1),
        (&[b"OBJECT", b"ENCODING", b"k"], "OBJECT ENCODING", "k", 1),
        (&[b"EVAL", b"return 1", b"1", b"k1", b"a"], "EVAL", "k1", 4),
        (&[b"EVAL", b"return 1", b"0"], "EVAL", "", 2),
        (&[b"ZUNION", b"2", b"z1", b"z2"], "ZUNION", "z1", 3),
        (&[b"BLMPOP", b"0", b"1", b"l", b"LEFT"], "BLMPOP", "l", 4),
        (
            &[b"XREAD", b"COUNT", b"2", b"STREAMS", b"s", b"0"],
            "XREAD",
            "s",
            5,
        ),
        (&[b"SUBSCRIBE", b"ch"], "SUBSCRIBE", "ch", 1),
        (&[b"HSET", b"h", b"f", b"v"], "HSET", "h", 3),
        (&[b"CONFIG", b"GET", b"save"], "CONFIG GET", "", 1),
    ];
    for (args, command, key, n) in table {
        let out = run(&[Ev::Data(C, &cmd(args)), Ev::Data(S, b"+OK\r\n")]);
        let r = req(&out.entries[0]);
        assert_eq!(r.command, *command, "{args:?}");
        assert_eq!(r.key, *key, "{args:?}");
        assert_eq!(r.args.len(), *n, "{args:?}");
        assert_eq!(r.arg_count, *n as u64, "{args:?}");
    }
}

#[test]
fn inline_commands() {
    let out = run(&[
        Ev::Data(C, b"PING\r\nset k \"a b\\x41\\n\"\r\n\r\nGET 'it\\'s'\n"),
        Ev::Data(S, b"+PONG\r\n+OK\r\n$-1\r\n"),
    ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let got: Vec<_> = out.entries.iter().map(req).collect();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.inline));
    assert_eq!(got[0].command, "PING");
    assert_eq!(got[1].command, "SET");
    assert_eq!(got[1].args, vec![b"k".to_vec(), b"a bA\n".to_vec()]);
    assert_eq!(got[2].key, "it's");
    assert_eq!(resp(&out.entries[0]).value, b"PONG");
}

#[test]
fn resp2_pubsub_pushes_are_entries_of_their_own() {
    let mut sub = cmd(&[b"SUBSCRIBE", b"a", b"b"]);
    let ping = cmd(&[b"PING"]);
    sub.extend_from_slice(&ping);
    let out = run(&[
            Ev::Data(C, &cmd(&[b"SUBSCRIBE", b"a", b"b"])),
            Ev::Data(
                S,
                b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nearly\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
            ),
            Ev::Data(S, b"*3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$5\r\nhello\r\n"),
            Ev::Data(C, &cmd(&[b"PSUBSCRIBE", b"n*"])),
            Ev::Data(
                S,
                b"*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:3\r\n*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$1\r\nx\r\n",
            ),
            Ev::Data(C, &ping),
            Ev::Data(S, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
            Ev::Data(C, &cmd(&[b"UNSUBSCRIBE"])),
            Ev::Data(
                S,
                b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n",
            ),
        ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let s: Vec<_> = summary(&out)
        .into_iter()
        .map(|(c, k, t, _, f)| (c, k, t, f))
        .collect();
    let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let row = |c: &str, k: &str, t: &str, fl: &[&str]| {
        (c.to_string(), k.to_string(), t.to_string(), f(fl))
    };
    assert_eq!(
        s,
        [
            row("PUSH", "a", "array", &[]),
            row("SUBSCRIBE", "a", "array", &[]),
            row("PUSH", "b", "array", &[]),
            row("PSUBSCRIBE", "n*", "array", &[]),
            row("PUSH", "news", "array", &[]),
            row("PING", "", "array", &[]),
            row("UNSUBSCRIBE", "", "array", &[]),
        ]
    );
    // Both confirmations are in the SUBSCRIBE's entry; the push has no request bytes and no elapsed time.
    let subscribe = &out.entries[1];
    assert_eq!(
        String::from_utf8_lossy(&resp(subscribe).value),
        "[\"subscribe\", \"a\", 1], [\"subscribe\", \"b\", 2]"
    );
    let push = &out.entries[0];
    assert_eq!(push.request_size, 0);
    assert_eq!(push.elapsed_ns, None);
    assert_eq!(push.method(), Some("PUSH"));
    assert_eq!(
        String::from_utf8_lossy(&resp(&out.entries[2]).value),
        "[\"message\", \"b\", \"hello\"]"
    );
    assert_eq!(
        String::from_utf8_lossy(&resp(&out.entries[6]).value),
        "[\"unsubscribe\", \"a\", 2], [\"unsubscribe\", \"b\", 1]"
    );
}

#[test]
fn resp3_pushes_do_not_disturb_pairing() {
    let mut pipeline = cmd(&[b"GET", b"a"]);
    pipeline.extend(cmd(&[b"GET", b"b"]));
    let out = run(&[
            Ev::Data(C, &cmd(&[b"HELLO", b"3"])),
            Ev::Data(S, b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
            Ev::Data(C, &cmd(&[b"SUBSCRIBE", b"ch"])),
            Ev::Data(S, b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"),
            Ev::Data(C, &pipeline),
            Ev::Data(
                S,
                b"$1\r\n1\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n$1\r\n2\r\n",
            ),
        ]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let s: Vec<_> = summary(&out)
        .into_iter()
        .map(|(c, k, t, v, _)| format!("{c} {k} {t} {v}"))
        .collect();
    assert_eq!(
        s,
        [
            "HELLO  map {\"server\": \"redis\"}",
            "SUBSCRIBE ch push [\"subscribe\", \"ch\", 1]",
            "GET a bulk 1",
            "PUSH  push [\"invalidate\", [\"a\"]]",
            "PUSH ch push [\"message\", \"ch\", \"hi\"]",
            "GET b bulk 2",
        ]
    );
}

#[test]
fn monitor_lines_are_pushes() {
    let out = run(&[
        Ev::Data(C, &cmd(&[b"MONITOR"])),
        Ev::Data(S, b"+OK\r\n+1700000000.1 [0 127.0.0.1:5] \"GET\" \"k\"\r\n"),
    ]);
    let s: Vec<_> = summary(&out).into_iter().map(|(c, ..)| c).collect();
    assert_eq!(s, ["MONITOR", "PUSH"]);
}

#[test]
fn nesting_bomb_is_rejected_with_bounded_memory() {
    for dir in [C, S] {
        let mut bomb = Vec::with_capacity(4_000_010);
        for _ in 0..1_000_000 {
            bomb.extend_from_slice(b"*1\r\n");
        }
        bomb.extend_from_slice(b":1\r\n");
        let events: Vec<Ev> = match dir {
            Direction::ToServer => vec![Ev::Data(C, &bomb)],
            Direction::ToClient => {
                vec![Ev::Data(C, b"*1\r\n$4\r\nPING\r\n"), Ev::Data(S, &bomb)]
            }
        };
        let out = run_with(&events, &DissectConfig::default(), false, false);
        let reason = match dir {
            Direction::ToServer => "expected_bulk_string",
            Direction::ToClient => "nesting_too_deep",
        };
        assert_eq!(out.errors, [reason], "{dir:?}");
        let e = &out.entries[0];
        assert!(
            e.flags.contains(&format!("malformed:{reason}")),
            "{:?}",
            e.flags
        );
        if dir == S {
            assert_eq!(req(e).command, "PING");
            // The rendering stops at the depth limit.
            assert!(resp(e).value.len() <= MAX_DEPTH);
        }
    }
}

#[test]
fn huge_length_prefixes_are_malformed_without_allocating() {
    let out = run(&[
        Ev::Data(C, b"*2\r\n$3\r\nGET\r\n$4294967296\r\nk\r\n"),
        Ev::Data(S, b"$4294967296\r\nxyz\r\n"),
    ]);
    assert_eq!(out.errors, ["bulk_too_long", "bulk_too_long"]);
    let e = &out.entries[0];
    assert_eq!(req(e).command, "GET");
    assert!(e.flags.contains(&"malformed:bulk_too_long".to_string()));
    // A length Redis accepts is streamed: only the cap is kept.
    let config = DissectConfig {
        max_body: 1024,
        ..Default::default()
    };
    let flow = flow(7, 6390, false);
    let mut d = new(&flow, &config, None);
    let mut out = Vec::new();
    d.on_data(&flow, C, 1, &cmd(&[b"GET", b"k"]), &mut out);
    d.on_data(&flow, S, 2, b"$536870912\r\n", &mut out);
    let chunk = vec![b'x'; 1 << 16];
    for _ in 0..(536870912 / chunk.len()) {
        d.on_data(&flow, S, 3, &chunk, &mut out);
    }
    assert!(out.is_empty());
    d.on_data(&flow, S, 4, b"\r\n", &mut out);
    let Some(Emit::Entry(e)) = out.pop() else {
        panic!("no entry")
    };
    let r = resp(&e);
    assert_eq!(r.value.len(), 1024);
    assert!(r.value_truncated);
    assert!(e.flags.contains(&"truncated".to_string()));
    assert_eq!(e.response_size, 536870912 + 14);
}

#[test]
fn bodies_are_capped() {
    let config = DissectConfig {
        max_body: 16,
        ..Default::default()
    };
    let long = [b'a'; 40];
    let mut many: Vec<&[u8]> = vec![b"RPUSH", b"l"];
    many.extend(std::iter::repeat_n(b"x".as_slice(), 5000));
    let mut reqs = cmd(&[b"SET", b"k", &long]);
    reqs.extend(cmd(&many));
    let out = run_with(
        &[
            Ev::Data(C, &reqs),
            Ev::Data(S, b"+OK\r\n*2\r\n$20\r\nabcdefghijklmnopqrst\r\n:1\r\n"),
        ],
        &config,
        false,
        false,
    );
    let set = req(&out.entries[0]);
    assert_eq!(set.args, vec![b"k".to_vec(), vec![b'a'; 15]]);
    assert!(set.args_truncated);
    assert_eq!(set.arg_count, 2);
    assert!(out.entries[0].flags.contains(&"truncated".to_string()));
    let rpush = req(&out.entries[1]);
    assert_eq!(rpush.arg_count, 5001);
    assert!(rpush.args.len() <= 17 && rpush.args_truncated);
    let r = resp(&out.entries[1]);
    assert_eq!(r.value, b"[\"abcdefghijklmn");
    assert!(r.value_truncated);
    assert_eq!(r.elements, 2);
}

#[test]
fn truncated_stream_ends_incomplete() {
    let out = run(&[
        Ev::Data(C, &cmd(&[b"GET", b"k"])),
        Ev::Data(S, b"$10\r\nhello"),
    ]);
    assert!(out.errors.is_empty());
    let e = &out.entries[0];
    assert_eq!(resp(e).value, b"hello");
    assert!(e.flags.contains(&"incomplete".to_string()), "{:?}", e.flags);
    assert!(e.flags.contains(&"truncated".to_string()));
    // A command cut short: it ends without its reply.
    let out = run(&[Ev::Data(C, b"*2\r\n$3\r\nGET\r\n$5\r\nab")]);
    assert_eq!(req(&out.entries[0]).command, "GET");
    assert!(out.entries[0].flags.contains(&"no_response".to_string()));
    assert!(out.entries[0].flags.contains(&"incomplete".to_string()));
}

#[test]
fn garbage_gets_one_parse_error_and_parsing_resumes() {
    let mut client = cmd(&[b"SET", b"a", b"1"]);
    client.extend_from_slice(b"*2\r\n$3\r\nGET\r\nXXXX\r\n*7\r\n*9\r\nnot redis at all\r\n$$$\r\n");
    client.extend(cmd(&[b"GET", b"b"]));
    let out = run(&[
        Ev::Data(C, &client),
        Ev::Data(S, b"+OK\r\n-ERR Protocol error\r\n"),
    ]);
    assert_eq!(out.errors, ["expected_bulk_string"]);
    let s: Vec<_> = summary(&out)
        .into_iter()
        .map(|(c, k, t, _, f)| (c, k, t, f))
        .collect();
    assert_eq!(s[0].0, "SET");
    assert_eq!(s[1].0, "GET");
    assert_eq!(s[1].3, ["malformed:expected_bulk_string"]);
    assert_eq!(s[2].0, "GET");
    assert_eq!(s[2].1, "b");
    assert_eq!(s.len(), 3);
    // Server side: an unknown type byte, then replies again.
    let mut reqs = cmd(&[b"GET", b"a"]);
    reqs.extend(cmd(&[b"GET", b"b"]));
    let out = run(&[Ev::Data(C, &reqs), Ev::Data(S, b"?what\r\n+two\r\n")]);
    assert_eq!(out.errors, ["unknown_type"]);
    assert_eq!(resp(&out.entries[0]).value, b"two");
}

#[test]
fn gaps() {
    // Inside a bulk string the frame goes on, marked.
    let out = run(&[
        Ev::Data(C, &cmd(&[b"GET", b"k"])),
        Ev::Data(S, b"$10\r\nab"),
        Ev::Gap(S, 4),
        Ev::Data(S, b"ghij\r\n"),
    ]);
    assert!(out.errors.is_empty());
    let e = &out.entries[0];
    assert_eq!(resp(e).value, b"abghij");
    assert!(e.flags.contains(&"gap".to_string()));
    assert_eq!(e.response_size, 17);
    // Past a frame's end: resync at the next command.
    let mut after = b"ab\r\n".to_vec();
    after.extend(cmd(&[b"GET", b"next"]));
    let out = run(&[
        Ev::Data(C, b"*2\r\n$3\r\nSET\r\n$2\r\n"),
        Ev::Gap(C, 10),
        Ev::Data(C, &after),
        Ev::Data(S, b"+OK\r\n$1\r\nv\r\n"),
    ]);
    assert!(out.errors.is_empty(), "gaps are not parse errors");
    let s: Vec<_> = summary(&out).into_iter().map(|(c, k, ..)| (c, k)).collect();
    assert_eq!(s[0].0, "SET");
    assert_eq!(s[1], ("GET".to_string(), "next".to_string()));
    assert!(out.entries[0].flags.contains(&"gap".to_string()));
}

#[test]
fn midstream_starts_at_a_message_boundary() {
    let mut client = b"ue\r\n".to_vec();
    client.extend(cmd(&[b"GET", b"k"]));
    let out = run_with(
        &[Ev::Data(C, &client), Ev::Data(S, b"lue\r\n$1\r\nv\r\n")],
        &DissectConfig::default(),
        true,
        false,
    );
    assert!(out.errors.is_empty());
    let s = summary(&out);
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].0.as_str(), s[0].2.as_str()), ("GET", "bulk"));
    assert!(s[0].4.contains(&"midstream".to_string()));
}

#[test]
fn probe_claims_by_content() {
    let table: &[(Direction, &[u8], bool, Claim)] = &[
        (C, b"*1\r\n$4\r\nPING\r\n", false, Claim::Yes),
        (C, b"*3\r\n$3\r\nSET\r\n", false, Claim::Yes),
        (C, b"*3\r\n$", false, Claim::NeedMore),
        (C, b"*", false, Claim::NeedMore),
        (C, b"*3\r\n*1\r\n", false, Claim::No),
        (C, b"*0\r\n", false, Claim::No),
        (C, b"PING\r\n", false, Claim::Yes),
        (C, b"set k v\r\n", false, Claim::Yes),
        (C, b"PIN", false, Claim::NeedMore),
        (C, b"HELO example.com\r\n", false, Claim::No),
        (C, b"\x16\x03\x01\x02\x00", false, Claim::No),
        (S, b"+OK\r\n", false, Claim::Yes),
        (S, b"-ERR unknown command\r\n", false, Claim::Yes),
        (S, b":1\r\n", false, Claim::Yes),
        (S, b"$5\r\n", false, Claim::Yes),
        (S, b"%7\r\n", false, Claim::Yes),
        (S, b">3\r\n", false, Claim::Yes),
        (S, b"+OK", false, Claim::NeedMore),
        (S, b"+OK POP3 server ready\r\n", false, Claim::No),
        (S, b"-bad\r\n", false, Claim::No),
        (S, b":x\r\n", false, Claim::No),
        (S, b"HTTP/1.1 200 OK\r\n", false, Claim::No),
        (S, b"SSH-2.0-OpenSSH\r\n", false, Claim::No),
        (
            C,
            b"tail of something\r\n*1\r\n$4\r\nPING\r\n",
            true,
            Claim::Yes,
        ),
        (
            C,
            b"tail of something\r\n*1\r\n$4\r\nPING\r\n",
            false,
            Claim::No,
        ),
    ];
    for (dir, bytes, midstream, want) in table {
        assert_eq!(probe(*dir, bytes, *midstream), *want, "{dir:?} {bytes:?}");
    }
    // A request line is HTTP's, even though GET is a Redis command too.
    assert_eq!(probe(C, b"GET / HTTP/1.1\r\n", false), Claim::No);
}

#[test]
fn confirmations_nobody_asked_for_are_pushes() {
    let mut events = Vec::new();
    let replies: Vec<Vec<u8>> = ["subscribe", "psubscribe", "ssubscribe", "unsubscribe"]
        .iter()
        .map(|w| format!("*3\r\n${}\r\n{w}\r\n$1\r\nc\r\n:{}\r\n", w.len(), i64::MAX).into_bytes())
        .collect();
    for r in &replies {
        events.push(Ev::Data(S, r));
    }
    let out = run(&events);
    assert_eq!(out.entries.len(), 4);
    assert!(out.entries.iter().all(|e| req(e).command == "PUSH"));
}

#[test]
fn split_args_as_redis() {
    type Args<'a> = Option<&'a [&'a [u8]]>;
    let table: &[(&[u8], Args)] = &[
        (b"SET k v", Some(&[b"SET", b"k", b"v"])),
        (b"  a\t b  ", Some(&[b"a", b"b"])),
        (b"\"a b\" 'c d'", Some(&[b"a b", b"c d"])),
        (b"\"\\x00\\xzz\"", Some(&[b"\x00xzz"])),
        (b"\"open", None),
        (b"\"a\"b", None),
        (b"", Some(&[])),
    ];
    for (line, want) in table {
        let want = want.map(|w| w.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
        assert_eq!(split_args(line), want, "{line:?}");
    }
}
