//! SOCKS5 (RFC 1928, with RFC 1929's username/password step): a sidecar's or
//! egress proxy's handshake is one `socks` entry (the destination asked for,
//! the methods offered and chosen, the reply), and after a successful
//! CONNECT the stream is handed back to detection (`Handoff::DETECT`), so
//! the protocol inside the tunnel is dissected and its entries number on
//! from the handshake's, as through an HTTP `CONNECT`.
//!
//! Each side is a fixed sequence of small messages, read as they complete:
//! the client's greeting, credentials when it sends them, request; the
//! proxy's method choice, credentials verdict, reply. A client that does not
//! wait for the proxy's answers (optimistic data) is followed the same way:
//! what it sends after its request is held for the tunnel. Credentials are
//! read past, never kept. BIND's second reply, UDP ASSOCIATE's datagrams and
//! methods that encapsulate the rest (GSSAPI) are not followed: the entry is
//! made and the connection's later bytes are ignored. SOCKS4 is not read.

pub mod json;
pub mod model;
#[cfg(test)]
mod tests;

use super::{Claim, DissectConfig, Dissector, Emit, Handoff};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{Message, entry};
use proto::v1::{Protocol, Request, Response, SocksRequest, SocksResponse, request, response};
use std::net::{Ipv4Addr, Ipv6Addr};

const VERSION: u8 = 5;
/// RFC 1929's sub-negotiation version.
const CREDENTIALS_VERSION: u8 = 1;
/// Most methods a greeting may offer for the probe to claim it (clients
/// offer one to four).
const MAX_PROBE_METHODS: u8 = 32;
const CONNECT: u8 = 1;
const METHOD_NONE: u8 = 0;
const METHOD_CREDENTIALS: u8 = 2;
const NO_ACCEPTABLE: u8 = 0xff;
/// Tunnel bytes held while the proxy's reply is awaited (a client sending
/// before it is answered); past this the handshake is given up.
const MAX_HELD: usize = 64 << 10;

/// Claims a connection seen from its start whose client opens with a SOCKS5
/// greeting: version 5, one to [`MAX_PROBE_METHODS`] methods, each an
/// assigned or private one, and after it nothing yet (the client waits for
/// the choice) or the next message's version (credentials or the request).
pub fn probe(dir: Direction, first: &[u8], midstream: bool) -> Claim {
    if dir != Direction::ToServer || midstream {
        return Claim::No;
    }
    let Some(&version) = first.first() else {
        return Claim::NeedMore;
    };
    if version != VERSION {
        return Claim::No;
    }
    let Some(&n) = first.get(1) else {
        return Claim::NeedMore;
    };
    if n == 0 || n > MAX_PROBE_METHODS {
        return Claim::No;
    }
    let methods = &first[2..first.len().min(2 + usize::from(n))];
    if !methods
        .iter()
        .all(|&m| m <= 9 || (0x80..=0xfe).contains(&m))
    {
        return Claim::No;
    }
    if methods.len() < usize::from(n) {
        return Claim::NeedMore;
    }
    match first.get(2 + usize::from(n)) {
        None | Some(&CREDENTIALS_VERSION) | Some(&VERSION) => Claim::Yes,
        Some(_) => Claim::No,
    }
}

pub fn new(_flow: &FlowInfo, _config: &DissectConfig, _: Option<&Handoff>) -> Box<dyn Dissector> {
    Box::new(Socks::default())
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ClientStage {
    #[default]
    Greeting,
    /// Credentials (RFC 1929) or the request, whichever comes.
    AfterGreeting,
    Request,
    Tunnel,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ServerStage {
    #[default]
    Choice,
    Credentials,
    Reply,
    Tunnel,
}

#[derive(Default)]
struct Socks {
    client: ClientStage,
    server: ServerStage,
    /// Bytes of the message being read, per direction (at most one
    /// message: 513 bytes).
    buf: [Vec<u8>; 2],
    req: SocksRequest,
    resp: SocksResponse,
    /// When each side's first byte arrived, and its handshake's bytes.
    started: [Option<u64>; 2],
    wire: [u64; 2],
    flags: Vec<String>,
    /// The entry is made.
    made: bool,
    /// Nothing more is read: the handshake failed, was cut, or continues in
    /// a way not followed.
    stopped: bool,
    /// Tunnel bytes that came before the proxy's reply was read.
    held: Vec<(Direction, u64, Vec<u8>)>,
    handoff: Option<Handoff>,
}

/// What reading one message needs: more bytes, or it is read (its length).
enum Read<T> {
    More,
    Done(T, usize),
    Bad(String),
}

impl Socks {
    fn read(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        let i = dir.index();
        let mut input = data;
        while !input.is_empty() && !self.stopped && self.handoff.is_none() {
            let tunnel = match dir {
                Direction::ToServer => self.client == ClientStage::Tunnel,
                Direction::ToClient => self.server == ServerStage::Tunnel,
            };
            if tunnel {
                // Only the client's side gets here: the proxy's reply
                // ends the handshake (handoff) or stops it.
                let held: usize = self.held.iter().map(|h| h.2.len()).sum();
                if held + input.len() > MAX_HELD {
                    self.held.clear();
                    self.stop(flow, "no_reply".to_string(), out);
                    return;
                }
                self.held.push((dir, ts_ns, input.to_vec()));
                return;
            }
            self.started[i].get_or_insert(ts_ns);
            // One message at a time: take bytes until it parses.
            let before = self.buf[i].len();
            self.buf[i].extend_from_slice(input);
            let step = match dir {
                Direction::ToServer => self.client_step(),
                Direction::ToClient => self.server_step(),
            };
            match step {
                Read::More => {
                    self.wire[i] += input.len() as u64;
                    return;
                }
                Read::Bad(reason) => {
                    self.buf[i].clear();
                    self.stop(flow, format!("malformed:{reason}"), out);
                    out.push(Emit::ParseError {
                        protocol: "socks",
                        reason,
                    });
                    return;
                }
                Read::Done((), len) => {
                    let used = len - before;
                    self.wire[i] += used as u64;
                    self.buf[i].clear();
                    input = &input[used..];
                    if dir == Direction::ToClient {
                        self.after_server_message(flow, ts_ns, input, out);
                        if self.handoff.is_some() {
                            return;
                        }
                    }
                }
            }
        }
    }

    fn client_step(&mut self) -> Read<()> {
        let b = &self.buf[0];
        match self.client {
            ClientStage::Greeting => {
                let Some(&n) = b.get(1) else {
                    return Read::More;
                };
                if b[0] != VERSION {
                    return Read::Bad(format!("version {} in the greeting", b[0]));
                }
                let len = 2 + usize::from(n);
                let Some(methods) = b.get(2..len) else {
                    return Read::More;
                };
                self.req.auth_methods = methods.iter().map(|&m| method_name(m)).collect();
                self.client = ClientStage::AfterGreeting;
                Read::Done((), len)
            }
            ClientStage::AfterGreeting => match b[0] {
                CREDENTIALS_VERSION => {
                    // Version, user name, password: read past, not kept.
                    let Some(&ulen) = b.get(1) else {
                        return Read::More;
                    };
                    let Some(&plen) = b.get(2 + usize::from(ulen)) else {
                        return Read::More;
                    };
                    let len = 3 + usize::from(ulen) + usize::from(plen);
                    if b.len() < len {
                        return Read::More;
                    }
                    self.req.credentials = true;
                    self.client = ClientStage::Request;
                    Read::Done((), len)
                }
                VERSION => {
                    self.client = ClientStage::Request;
                    self.client_step()
                }
                v => Read::Bad(format!("version {v} after the greeting")),
            },
            ClientStage::Request => match address(b) {
                Read::Done((command, host, port), len) => {
                    self.req.command = command_name(command);
                    self.req.target = target(&host, port);
                    self.req.host = host;
                    self.req.port = u32::from(port);
                    self.client = ClientStage::Tunnel;
                    Read::Done((), len)
                }
                Read::More => Read::More,
                Read::Bad(why) => Read::Bad(format!("request: {why}")),
            },
            ClientStage::Tunnel => Read::Done((), 0),
        }
    }

    fn server_step(&mut self) -> Read<()> {
        let b = &self.buf[1];
        match self.server {
            ServerStage::Choice => {
                let Some(&m) = b.get(1) else {
                    return Read::More;
                };
                if b[0] != VERSION {
                    return Read::Bad(format!("version {} in the method choice", b[0]));
                }
                self.resp.auth_method = method_name(m);
                self.server = match m {
                    METHOD_CREDENTIALS => ServerStage::Credentials,
                    _ => ServerStage::Reply,
                };
                Read::Done((), 2)
            }
            ServerStage::Credentials => {
                let Some(&status) = b.get(1) else {
                    return Read::More;
                };
                self.resp.authenticated = Some(status == 0);
                self.server = ServerStage::Reply;
                Read::Done((), 2)
            }
            ServerStage::Reply => match address(b) {
                Read::Done((reply, host, port), len) => {
                    self.resp.reply = Some(u32::from(reply));
                    self.resp.reply_name = reply_name(reply);
                    self.resp.bound_host = host;
                    self.resp.bound_port = u32::from(port);
                    self.server = ServerStage::Tunnel;
                    Read::Done((), len)
                }
                Read::More => Read::More,
                Read::Bad(why) => Read::Bad(format!("reply: {why}")),
            },
            ServerStage::Tunnel => Read::Done((), 0),
        }
    }

    /// After each of the proxy's messages: a refusal ends the handshake; a
    /// successful CONNECT reply hands the stream on with what follows it.
    fn after_server_message(
        &mut self,
        flow: &FlowInfo,
        ts_ns: u64,
        rest: &[u8],
        out: &mut Vec<Emit>,
    ) {
        match self.server {
            ServerStage::Credentials | ServerStage::Choice => {}
            ServerStage::Reply => {
                let chosen = self.resp.auth_method.as_str();
                if self.resp.authenticated == Some(false) {
                    self.stop(flow, String::new(), out);
                } else if chosen != method_name(METHOD_NONE)
                    && chosen != method_name(METHOD_CREDENTIALS)
                {
                    // No acceptable method, or one that wraps what follows.
                    let flag = if chosen == method_name(NO_ACCEPTABLE) {
                        String::new()
                    } else {
                        "encapsulated".to_string()
                    };
                    self.stop(flow, flag, out);
                }
            }
            ServerStage::Tunnel => {
                let connected = self.resp.reply == Some(0)
                    && self.req.command == command_name(CONNECT)
                    && self.client == ClientStage::Tunnel;
                self.make(flow, out);
                if !connected {
                    self.stopped = true;
                    return;
                }
                let mut held = std::mem::take(&mut self.held);
                if !rest.is_empty() {
                    held.push((Direction::ToClient, ts_ns, rest.to_vec()));
                }
                self.handoff = Some(Handoff {
                    protocol: Handoff::DETECT,
                    held,
                    entries_made: 1,
                    ..Default::default()
                });
            }
        }
    }

    /// Ends reading with `flag` on the entry, which is made now.
    fn stop(&mut self, flow: &FlowInfo, flag: String, out: &mut Vec<Emit>) {
        if !flag.is_empty() {
            self.flags.push(flag);
        }
        self.stopped = true;
        self.make(flow, out);
    }

    /// The handshake's entry, once: the client's side as the request, the
    /// proxy's as the response, each absent when that side sent nothing.
    fn make(&mut self, flow: &FlowInfo, out: &mut Vec<Emit>) {
        if self.made {
            return;
        }
        self.made = true;
        let flags = std::mem::take(&mut self.flags);
        let req = self.started[0].map(|ts_ns| Message {
            ts_ns,
            wire_size: self.wire[0],
            flags: flags.clone(),
            body: Request {
                kind: Some(request::Kind::Socks(Box::new(std::mem::take(
                    &mut self.req,
                )))),
            },
        });
        let resp = self.started[1].map(|ts_ns| Message {
            ts_ns,
            wire_size: self.wire[1],
            flags: if req.is_none() { flags } else { Vec::new() },
            body: Response {
                kind: Some(response::Kind::Socks(Box::new(std::mem::take(
                    &mut self.resp,
                )))),
            },
        });
        if req.is_none() && resp.is_none() {
            return;
        }
        out.push(Emit::Entry(Box::new(entry(
            flow,
            0,
            Protocol::Socks,
            req,
            resp,
        ))));
    }
}

/// A request or reply: version, a code, a reserved byte, an address type
/// and address, a port. The code, the address as text, the port.
fn address(b: &[u8]) -> Read<(u8, String, u16)> {
    let Some(h) = b.get(..4) else {
        return Read::More;
    };
    if h[0] != VERSION {
        return Read::Bad(format!("version {}", h[0]));
    }
    let (host, at) = match h[3] {
        1 => match b.get(4..8) {
            Some(a) => (Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(), 8),
            None => return Read::More,
        },
        3 => {
            let Some(&n) = b.get(4) else {
                return Read::More;
            };
            let end = 5 + usize::from(n);
            match b.get(5..end) {
                Some(name) => (String::from_utf8_lossy(name).into_owned(), end),
                None => return Read::More,
            }
        }
        4 => match b.get(4..20).and_then(|a| <[u8; 16]>::try_from(a).ok()) {
            Some(a) => (Ipv6Addr::from(a).to_string(), 20),
            None => return Read::More,
        },
        t => return Read::Bad(format!("address type {t}")),
    };
    match b.get(at..at + 2) {
        Some(p) => Read::Done((h[1], host, u16::from_be_bytes([p[0], p[1]])), at + 2),
        None => Read::More,
    }
}

fn target(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// IANA's SOCKS authentication method names.
fn method_name(m: u8) -> String {
    match m {
        0 => "none",
        1 => "gssapi",
        2 => "username_password",
        3 => "chap",
        5 => "challenge_response",
        6 => "ssl",
        7 => "nds",
        8 => "multi_authentication",
        9 => "json_parameter_block",
        NO_ACCEPTABLE => "no_acceptable",
        _ => return format!("0x{m:02x}"),
    }
    .to_string()
}

fn command_name(c: u8) -> String {
    match c {
        1 => "CONNECT",
        2 => "BIND",
        3 => "UDP_ASSOCIATE",
        _ => return format!("0x{c:02x}"),
    }
    .to_string()
}

fn reply_name(r: u8) -> String {
    match r {
        0 => "succeeded",
        1 => "general_failure",
        2 => "not_allowed",
        3 => "network_unreachable",
        4 => "host_unreachable",
        5 => "connection_refused",
        6 => "ttl_expired",
        7 => "command_not_supported",
        8 => "address_type_not_supported",
        _ => return format!("0x{r:02x}"),
    }
    .to_string()
}

impl Dissector for Socks {
    fn on_data(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        if !self.stopped && self.handoff.is_none() {
            self.read(flow, dir, ts_ns, data, out);
        }
    }

    fn on_gap(
        &mut self,
        flow: &FlowInfo,
        _dir: Direction,
        _ts_ns: u64,
        _len: u64,
        out: &mut Vec<Emit>,
    ) {
        if !self.stopped && self.handoff.is_none() {
            // A handshake with a hole cannot be followed.
            self.stop(flow, "gap".to_string(), out);
        }
    }

    fn on_close(&mut self, flow: &FlowInfo, _end: &FlowEnd, out: &mut Vec<Emit>) {
        if !self.made && !self.stopped {
            self.flags.push("incomplete".to_string());
        }
        self.make(flow, out);
    }

    fn handoff(&mut self) -> Option<Handoff> {
        self.handoff.take()
    }
}
