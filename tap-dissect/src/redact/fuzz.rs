//! Redaction on hostile input: arbitrary bytes as a JSON body, a query
//! string, a form, header values, GraphQL variables and arguments, Redis
//! arguments and a WebSocket message, under the default rules plus a user
//! pattern and key taken from the input (a pattern that does not compile is
//! refused, as the hub refuses it). It must never panic, and what it makes
//! stays within a fixed multiple of what it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::v1::{
    Body, Entry, GraphqlRequest, Header, HttpRequest, RedisRequest, Request, WebSocketMessage,
    request,
};
use tap_dissect::redact::{REDACTED, Redactor, Rule};

fn entry(kind: request::Kind) -> Entry {
    Entry {
        request: Some(Request { kind: Some(kind) }),
        ..Default::default()
    }
}

fuzz_target!(|data: &[u8]| {
    // [pattern length][pattern][key length][key][the rest]
    let (pattern, data) = take(data);
    let (key, data) = take(data);
    let mut rules = Vec::new();
    if let Ok(p) = std::str::from_utf8(pattern)
        && !p.is_empty()
    {
        rules.push(Rule::Pattern(p.to_string()));
    }
    if let Ok(k) = std::str::from_utf8(key)
        && !k.is_empty()
    {
        rules.push(Rule::Key(k.to_string()));
    }
    let Ok(r) = Redactor::new(&rules) else {
        return;
    };
    let text = String::from_utf8_lossy(data).into_owned();
    // A pattern may match every byte: each becomes `[REDACTED]`, and a
    // sensitive key's empty value `"[REDACTED]"`; never more per byte.
    let bound = (REDACTED.len() + 2) * data.len() + 64;
    for content_type in ["application/json", "application/x-www-form-urlencoded", "text/plain"] {
        let mut e = entry(request::Kind::Http(Box::new(HttpRequest {
            method: "POST".into(),
            path: format!("/p?{text}"),
            headers: vec![
                Header {
                    name: "Content-Type".into(),
                    value: content_type.into(),
                },
                Header {
                    name: "Cookie".into(),
                    value: text.clone(),
                },
                Header {
                    name: "Authorization".into(),
                    value: text.clone(),
                },
            ],
            body: Some(Body {
                data: data.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        })));
        let blanks = r.entry(&mut e);
        let Some(request::Kind::Http(h)) = e.request.unwrap().kind else {
            unreachable!()
        };
        assert!(h.body.unwrap().data.len() <= bound);
        assert!(h.path.len() <= bound + 16);
        assert!(e.redacted.len() <= 65);
        assert!(blanks.needles.len() <= 128);
        assert!(blanks.needles.iter().all(|n| n.blank.end <= n.context.len()));
    }
    let mut g = entry(request::Kind::Graphql(Box::new(GraphqlRequest {
        query: text.clone(),
        variables: Some(text.clone()),
        ..Default::default()
    })));
    r.entry(&mut g);
    let mut redis = entry(request::Kind::Redis(Box::new(RedisRequest {
        command: "HELLO".into(),
        args: data.split(|b| *b == b' ').map(<[u8]>::to_vec).collect(),
        ..Default::default()
    })));
    r.entry(&mut redis);
    let mut ws = entry(request::Kind::Websocket(Box::new(WebSocketMessage {
        payload: data.to_vec(),
        ..Default::default()
    })));
    r.entry(&mut ws);
});

fn take(data: &[u8]) -> (&[u8], &[u8]) {
    let n = data.first().map_or(0, |n| usize::from(*n) % 64).min(data.len().saturating_sub(1));
    data.get(1..).map_or((&[][..], &[][..]), |rest| rest.split_at(n.min(rest.len())))
}
