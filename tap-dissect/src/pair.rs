//! Pairing: turns a connection's dissected messages into entries, matching each
//! response to its request. HTTP/1 (and later Redis, PostgreSQL) answer in
//! order, so requests wait in a bounded FIFO; a request still waiting when the
//! connection ends, or pushed out by the bound, becomes an entry flagged
//! `no_response`, and a response with no request one flagged `no_request`.

use crate::Emit;
use crate::flow::{FlowEnd, FlowInfo};
use proto::v1::{Endpoint, Entry, Protocol, Request, Response, StreamSide, request, response};
use std::collections::VecDeque;

/// One dissected message: a request or a response with what pairing needs.
#[derive(Debug, Clone)]
pub struct Message<T> {
    /// Capture time of the message's first packet.
    pub ts_ns: u64,
    /// Bytes the message took on the wire (head, framing and body).
    pub wire_size: u64,
    pub flags: Vec<String>,
    pub body: T,
}

/// In-order pairing of one connection's requests and responses.
#[derive(Debug)]
pub struct Fifo {
    protocol: Protocol,
    pending: VecDeque<Message<Request>>,
    max_pending: usize,
    /// Entries made on this connection, for the entry id.
    made: u64,
    /// Looks at each entry before it is emitted (see [`Fifo::refined_by`]).
    refine: Option<fn(&mut Entry)>,
}

impl Fifo {
    /// Passes each entry through `refine` before emitting it: HTTP/1 makes
    /// the exchanges that carry a GraphQL operation `graphql` entries.
    pub fn refined_by(mut self, refine: fn(&mut Entry)) -> Self {
        self.refine = Some(refine);
        self
    }

    pub fn new(protocol: Protocol, max_pending: usize) -> Self {
        Self::numbered_from(protocol, max_pending, 0)
    }

    /// A FIFO whose first entry gets index `first` on the flow (after an upgrade).
    pub fn numbered_from(protocol: Protocol, max_pending: usize, first: u64) -> Self {
        Fifo {
            protocol,
            pending: VecDeque::new(),
            max_pending: max_pending.max(1),
            made: first,
            refine: None,
        }
    }

    /// Entries made on the flow so far, counting from the first index.
    pub fn made(&self) -> u64 {
        self.made
    }

    /// The oldest request still waiting for its response.
    pub fn front(&self) -> Option<&Message<Request>> {
        self.pending.front()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn request(&mut self, flow: &FlowInfo, req: Message<Request>, out: &mut Vec<Emit>) {
        if self.pending.len() >= self.max_pending
            && let Some(old) = self.pending.pop_front()
        {
            self.emit(flow, Some(old), None, out);
        }
        self.pending.push_back(req);
    }

    pub fn response(&mut self, flow: &FlowInfo, resp: Message<Response>, out: &mut Vec<Emit>) {
        let req = self.pending.pop_front();
        self.emit(flow, req, Some(resp), out);
    }

    /// An entry outside the request/response order (a Redis pub/sub push):
    /// it takes the flow's next index and leaves the waiting requests alone.
    pub fn unsolicited(
        &mut self,
        flow: &FlowInfo,
        req: Option<Message<Request>>,
        resp: Message<Response>,
        out: &mut Vec<Emit>,
    ) {
        self.emit(flow, req, Some(resp), out);
    }

    /// The connection ended: every waiting request becomes an entry.
    pub fn close(&mut self, flow: &FlowInfo, out: &mut Vec<Emit>) {
        while let Some(req) = self.pending.pop_front() {
            self.emit(flow, Some(req), None, out);
        }
    }

    fn emit(
        &mut self,
        flow: &FlowInfo,
        req: Option<Message<Request>>,
        resp: Option<Message<Response>>,
        out: &mut Vec<Emit>,
    ) {
        let n = self.made;
        self.made += 1;
        let mut e = entry(flow, n, self.protocol, req, resp);
        if let Some(refine) = self.refine {
            refine(&mut e);
        }
        out.push(Emit::Entry(Box::new(e)));
    }
}

fn endpoint(addr: std::net::SocketAddr) -> Endpoint {
    Endpoint {
        ip: ip_string(addr.ip()),
        port: u32::from(addr.port()),
        ..Default::default()
    }
}

/// An address as text; IPv4 (nearly every entry) without the `fmt`
/// machinery, which costs more than the rest of building a small entry.
pub(crate) fn ip_string(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut s = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(itoa::Buffer::new().format(octet));
            }
            s
        }
        std::net::IpAddr::V6(_) => ip.to_string(),
    }
}

/// Builds the entry for a request and/or response on `flow`; `n` is its index on the flow.
pub fn entry(
    flow: &FlowInfo,
    n: u64,
    protocol: Protocol,
    req: Option<Message<Request>>,
    resp: Option<Message<Response>>,
) -> Entry {
    let mut flags: Vec<String> = Vec::new();
    if flow.midstream {
        flags.push("midstream".into());
    }
    let mut add = |fs: &[String]| {
        for f in fs {
            if !flags.contains(f) {
                flags.push(f.clone());
            }
        }
    };
    if let Some(r) = &req {
        add(&r.flags);
    }
    if let Some(r) = &resp {
        add(&r.flags);
    }
    match (&req, &resp) {
        (Some(_), None) => add(&["no_response".into()]),
        (None, Some(_)) => add(&["no_request".into()]),
        _ => {}
    }
    let ts_ns = req
        .as_ref()
        .map(|r| r.ts_ns)
        .or(resp.as_ref().map(|r| r.ts_ns))
        .unwrap_or(flow.first_ts_ns);
    let elapsed_ns = match (&req, &resp) {
        (Some(q), Some(p)) => Some(p.ts_ns.saturating_sub(q.ts_ns)),
        _ => None,
    };
    Entry {
        id: proto::entry_id(flow.id, n),
        ts_ns,
        node: String::new(),
        protocol: protocol as i32,
        src: Some(endpoint(flow.client)),
        dst: Some(endpoint(flow.server)),
        tls: flow.tls,
        elapsed_ns,
        request_size: req.as_ref().map_or(0, |r| r.wire_size),
        response_size: resp.as_ref().map_or(0, |r| r.wire_size),
        flow_id: flow.id,
        stream_id: 0,
        request: req.map(|r| r.body),
        response: resp.map(|r| r.body),
        redacted: Vec::new(),
        flags,
        tunnel: flow.outer.as_ref().map(|o| Box::new(o.to_proto())),
    }
}

/// The entry of a flow no dissector claimed (`tcp` or `udp`): the client's
/// side as the request, the server's (with how the flow ended) as the
/// response, and the flow's duration as elapsed.
pub fn flow_entry(flow: &FlowInfo, end: &FlowEnd, protocol: Protocol) -> Entry {
    let side = |i: usize, ended: &str| StreamSide {
        bytes: end.bytes[i],
        packets: end.packets[i],
        ended: ended.to_string(),
    };
    let req = Message {
        ts_ns: flow.first_ts_ns,
        wire_size: end.bytes[0],
        flags: Vec::new(),
        body: Request {
            kind: Some(request::Kind::Stream(Box::new(side(0, "")))),
        },
    };
    let resp = Message {
        ts_ns: end.ts_ns.max(flow.first_ts_ns),
        wire_size: end.bytes[1],
        flags: Vec::new(),
        body: Response {
            kind: Some(response::Kind::Stream(Box::new(side(1, end.reason.name())))),
        },
    };
    entry(flow, 0, protocol, Some(req), Some(resp))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ip_string_matches_display() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.20.255.9", "::1", "fe80::1:2"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(super::ip_string(ip), ip.to_string());
        }
    }

    #[test]
    fn an_entry_says_tls_when_its_flow_is_tls_plaintext() {
        let mut flow = crate::testing::flow(1, 443, false);
        for tls in [false, true] {
            flow.tls = tls;
            let e = super::entry(&flow, 0, proto::v1::Protocol::Http, None, None);
            assert_eq!(e.tls, tls);
        }
    }
}
