//! From a stream's two halves to an entry: pseudo-headers, headers,
//! trailers and bodies as an HTTP request and response.

use super::*;

#[derive(Default)]
pub(super) struct Pseudo {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) authority: String,
    pub(super) status: u32,
}

pub(super) struct BodyParts {
    pub(super) body: Option<proto::v1::Body>,
    pub(super) framer: Option<grpc::Framer>,
    pub(super) wire: u64,
}

pub(super) type HalfParts = (Pseudo, Vec<Header>, Vec<Header>, BodyParts);

/// A half's time, size, flags, pseudo-headers, headers, trailers and body.
pub(super) fn parts(h: Half, max_body: usize) -> (u64, u64, Vec<String>, HalfParts) {
    let mut flags = h.flags;
    let mut pseudo = Pseudo::default();
    let mut headers = Vec::new();
    for (name, value) in h.headers.unwrap_or_default() {
        match name.as_str() {
            ":method" => pseudo.method = value,
            ":path" => pseudo.path = value,
            ":authority" => pseudo.authority = value,
            ":status" => pseudo.status = value.parse().unwrap_or(0),
            n if n.starts_with(':') => {}
            _ => headers.push(Header { name, value }),
        }
    }
    let trailers = h
        .trailers
        .into_iter()
        .filter(|(n, _)| !n.starts_with(':'))
        .map(|(name, value)| Header { name, value })
        .collect();
    if h.body_cut && !flags.iter().any(|f| f == "truncated") {
        flags.push("truncated".into());
    }
    let body = (h.grpc.is_none() && (h.body_wire > 0 || !h.body.is_empty())).then(|| {
        let coding = headers
            .iter()
            .find(|x: &&Header| x.name == "content-encoding")
            .map(|x| x.value.as_str());
        encoding::body(h.body, h.body_wire, !h.body_cut, coding, max_body)
    });
    let body = BodyParts {
        body,
        framer: h.grpc,
        wire: h.body_wire,
    };
    (h.ts, h.wire, flags, (pseudo, headers, trailers, body))
}

pub(super) fn http_request(
    pseudo: Pseudo,
    mut headers: Vec<Header>,
    trailers: Vec<Header>,
    body: Option<proto::v1::Body>,
) -> HttpRequest {
    if !pseudo.authority.is_empty() && !headers.iter().any(|h| h.name == "host") {
        headers.insert(
            0,
            Header {
                name: "host".into(),
                value: pseudo.authority.clone(),
            },
        );
    }
    // CONNECT names its target in :authority and has no :path.
    let path = if pseudo.path.is_empty() && pseudo.method == "CONNECT" {
        pseudo.authority
    } else {
        pseudo.path
    };
    HttpRequest {
        method: pseudo.method,
        path,
        version: "2".into(),
        headers,
        body,
        trailers,
    }
}
