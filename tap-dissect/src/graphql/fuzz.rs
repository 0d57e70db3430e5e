//! Arbitrary bytes as a finished HTTP request (method, path and body, a
//! content type) and response body, through GraphQL's classification: it
//! must never panic, and never keep more than its caps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::v1::{
    Body, Entry, Header, HttpRequest, HttpResponse, Request, Response, request, response,
};
use tap_dissect::graphql;

fuzz_target!(|data: &[u8]| {
    // Control byte (method, content type, cut), then path and body split at a 0xff,
    // then the response body after a second 0xff.
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |b| *b == 0xff);
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default().to_vec();
    let result = parts.next().unwrap_or_default().to_vec();
    let content_type = match (ctl >> 1) & 3 {
        0 => Some("application/json"),
        1 => Some("application/graphql"),
        2 => Some("text/plain"),
        _ => None,
    };
    let req = HttpRequest {
        method: if ctl & 1 == 0 { "POST" } else { "GET" }.into(),
        path: format!("/graphql?{path}"),
        headers: content_type
            .map(|c| Header {
                name: "content-type".into(),
                value: c.into(),
            })
            .into_iter()
            .collect(),
        body: Some(Body {
            wire_size: body.len() as u64,
            data: body,
            truncated: ctl & 0x10 != 0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let resp = HttpResponse {
        status: 200,
        body: Some(Body {
            wire_size: result.len() as u64,
            data: result,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut e = Entry {
        protocol: proto::v1::Protocol::Http as i32,
        request: Some(Request {
            kind: Some(request::Kind::Http(Box::new(req))),
        }),
        response: Some(Response {
            kind: Some(response::Kind::Http(Box::new(resp))),
        }),
        ..Default::default()
    };
    graphql::refine(&mut e);
    if let Some(request::Kind::Graphql(g)) = e.request.as_ref().and_then(|r| r.kind.as_ref()) {
        assert!(g.query.len() <= graphql::MAX_TEXT);
        assert!(
            g.variables
                .as_ref()
                .is_none_or(|v| v.len() <= graphql::MAX_TEXT)
        );
        assert!(matches!(
            g.operation_type.as_str(),
            "query" | "mutation" | "subscription"
        ));
        assert!(matches!(
            e.response.as_ref().and_then(|r| r.kind.as_ref()),
            Some(response::Kind::Graphql(_))
        ));
    }
    if let Some(response::Kind::Graphql(r)) = e.response.as_ref().and_then(|r| r.kind.as_ref()) {
        assert!(r.error.len() <= graphql::MAX_TEXT);
    }
});
