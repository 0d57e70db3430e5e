//! TLS: the clear-text part of a handshake as captured off the wire is one
//! `tls` entry per connection: the client's ClientHello (server name,
//! application protocols and versions offered, how many cipher suites) as
//! the request, the server's ServerHello and what follows it in clear (the
//! version, cipher suite and application protocol chosen; up to TLS 1.2 the
//! server certificate's names and expiry) as the response, and an alert
//! sent in clear as the response's status. What TLS carries is encrypted
//! and is not read: kubetap reads it only where a TLS library hands over
//! the plaintext (`tap_worker::tls`, entries marked `tls`).
//!
//! Records are framed on both sides; handshake messages are reassembled
//! across records, at most [`MAX_HANDSHAKE`] bytes per side (a longer
//! message is not read: `truncated`). Records, handshake messages and
//! extensions are parsed with `tls-parser`, the certificate with
//! `x509-parser`. The entry is made once the clear part is over as the
//! packets show it: application data seen both ways (TLS 1.3's encrypted
//! handshake is application data on the wire), both sides' ChangeCipherSpec
//! up to TLS 1.2, a fatal alert, a gap, or the connection's end (then
//! flagged `incomplete` when the handshake was cut). After that the
//! connection's bytes are ignored.
//!
//! A connection picked up after its handshake (mid-stream, only
//! application data) is claimed on a chain of two well-formed records and
//! makes one entry saying no more than that it is TLS, once both sides sent
//! something; its records are not framed.

pub mod json;
pub mod model;
#[cfg(test)]
mod tests;

use super::{Claim, DissectConfig, Dissector, Emit, Handoff};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{Message, entry};
use proto::v1::{Protocol, Request, Response, TlsRequest, TlsResponse, request, response};
use std::time::{Duration, UNIX_EPOCH};
use tls_parser::{
    SNIType, TlsCipherSuite, TlsExtension, TlsMessage, TlsMessageHandshake,
    parse_tls_client_hello_extension, parse_tls_message_handshake,
    parse_tls_server_hello_extension,
};
use x509_parser::extensions::GeneralName;

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const HEARTBEAT: u8 = 24;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const CERTIFICATE: u8 = 11;
const TLS12: u16 = 0x0303;
const TLS13: u16 = 0x0304;
const FATAL: u8 = 2;
/// A record header: content type, version, length.
const HEADER: usize = 5;
/// The largest record body: 2^14 bytes of plaintext expanded by at most
/// 2048 (RFC 5246 §6.2.3).
const MAX_RECORD: usize = (1 << 14) + 2048;
/// The largest clear record body: 2^14 bytes (RFC 8446 §5.1).
const MAX_PLAINTEXT: usize = 1 << 14;
/// Handshake bytes held per side while a message is reassembled across
/// records. A certificate chain takes a few KiB; past this the side's
/// handshake is not read.
pub const MAX_HANDSHAKE: usize = 64 << 10;
/// The shortest hello: version, random, an empty session id, one cipher
/// suite (ServerHello: two bytes of it), one compression method.
const MIN_HELLO: usize = 2 + 32 + 1 + 2 + 1;
/// Longest server name, application protocol name or certificate name kept.
const MAX_NAME: usize = 1024;
/// TLS 1.3's HelloRetryRequest is a ServerHello with this random
/// (RFC 8446 §4.1.3: SHA-256 of "HelloRetryRequest").
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Claims a connection whose client opens with a handshake record carrying
/// a ClientHello (or whose server side opens with one carrying a
/// ServerHello, when the client's side was not captured); mid-stream also
/// one that shows two application-data records back to back.
pub fn probe(dir: Direction, first: &[u8], midstream: bool) -> Claim {
    let hello = match dir {
        Direction::ToServer => CLIENT_HELLO,
        Direction::ToClient => SERVER_HELLO,
    };
    let at_start = hello_start(first, hello);
    if at_start != Claim::No || !midstream {
        return at_start;
    }
    application_data_chain(first)
}

/// A handshake record (TLS 1.0 to 1.3, at most 2^14 bytes) whose first
/// message is a `hello` of a plausible length and version; decided as soon
/// as a byte rules it out.
fn hello_start(b: &[u8], hello: u8) -> Claim {
    // Each check with the last byte it reads.
    let checks: [(usize, bool); 5] = [
        (0, b.first() == Some(&HANDSHAKE)),
        (1, b.get(1) == Some(&3)),
        (2, b.get(2).is_some_and(|v| (1..=4).contains(v))),
        (
            4,
            b.get(3..5).is_some_and(|l| {
                (4..=MAX_PLAINTEXT).contains(&usize::from(u16::from_be_bytes([l[0], l[1]])))
            }),
        ),
        (5, b.get(5) == Some(&hello)),
    ];
    for (last, ok) in checks {
        if b.len() <= last {
            return Claim::NeedMore;
        }
        if !ok {
            return Claim::No;
        }
    }
    if b.len() < 11 {
        return Claim::NeedMore;
    }
    let len = u24(&b[6..9]);
    // The hello's own (legacy) version: SSL 3.0 to TLS 1.3.
    if (MIN_HELLO..=MAX_HANDSHAKE).contains(&len) && b[9] == 3 && b[10] <= 4 {
        Claim::Yes
    } else {
        Claim::No
    }
}

/// Mid-stream: somewhere in `b`, an application-data record header, its
/// body, and another such header right after it, of the same version.
/// Undecided while a header's record runs past the bytes seen.
fn application_data_chain(b: &[u8]) -> Claim {
    // A header cut by the end of the bytes seen may be the chain's start.
    let mut undecided = (b.len().saturating_sub(HEADER - 1)..b.len()).any(|at| {
        let mut h = [APPLICATION_DATA, 3, 3, 0, 1];
        h[..b.len() - at].copy_from_slice(&b[at..]);
        application_data_header(&h).is_some()
    });
    for at in 0..b.len() {
        let Some(len) = application_data_header(&b[at..]) else {
            continue;
        };
        let next = at + HEADER + len;
        match b.get(next..next + HEADER) {
            Some(h) if application_data_header(h).is_some() && h[1..3] == b[at + 1..at + 3] => {
                return Claim::Yes;
            }
            Some(_) => {}
            None => undecided = true,
        }
    }
    if undecided {
        Claim::NeedMore
    } else {
        Claim::No
    }
}

fn application_data_header(b: &[u8]) -> Option<usize> {
    let h = b.get(..HEADER)?;
    let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
    (h[0] == APPLICATION_DATA
        && h[1] == 3
        && (1..=3).contains(&h[2])
        && (1..=MAX_RECORD).contains(&len))
    .then_some(len)
}

/// A record header's content type and body length, if it is one.
fn record_header(h: &[u8]) -> Option<(u8, usize)> {
    let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
    ((CHANGE_CIPHER_SPEC..=HEARTBEAT).contains(&h[0])
        && h[1] == 3
        && h[2] <= 4
        && len <= MAX_RECORD)
        .then_some((h[0], len))
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

pub fn new(flow: &FlowInfo, _config: &DissectConfig, _: Option<&Handoff>) -> Box<dyn Dissector> {
    Box::new(Tls {
        mode: if flow.midstream {
            Mode::Unknown
        } else {
            Mode::Handshake
        },
        ..Tls::default()
    })
}

/// How a connection's bytes are read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Mid-stream, before the first bytes: a handshake record starts
    /// [`Mode::Handshake`], anything else [`Mode::Opaque`].
    #[default]
    Unknown,
    /// Records framed, the clear handshake read.
    Handshake,
    /// Picked up after the handshake: bytes counted, nothing read.
    Opaque,
}

/// One direction's records.
#[derive(Default)]
struct Side {
    /// The header of the next record, as far as it came.
    header: Vec<u8>,
    /// The record being read: its content type and the body bytes to come.
    record: Option<(u8, usize)>,
    /// Handshake bytes not yet a whole message (at most [`MAX_HANDSHAKE`]).
    handshake: Vec<u8>,
    /// The alert record's level and description, as far as they came.
    alert: Vec<u8>,
    /// Past this side's ChangeCipherSpec (up to TLS 1.2) or TLS 1.3's
    /// ServerHello: its handshake records are encrypted.
    encrypted: bool,
    change_cipher_spec: bool,
    application_data: bool,
    /// A handshake message past the bound: this side's handshake is not read.
    overflow: bool,
    started: Option<u64>,
    wire: u64,
}

#[derive(Default)]
struct Tls {
    mode: Mode,
    sides: [Side; 2],
    req: TlsRequest,
    resp: TlsResponse,
    /// The version the ServerHello chose.
    version: Option<u16>,
    /// The session id the client offered (an abbreviated handshake reuses it).
    session_id: Vec<u8>,
    /// When the first alert was seen (a response made of a client's alert).
    alert_ts: Option<u64>,
    flags: Vec<String>,
    /// The entry is made: the rest of the connection is ignored.
    made: bool,
}

impl Tls {
    fn read(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        let i = dir.index();
        self.sides[i].started.get_or_insert(ts_ns);
        let mut input = data;
        while !input.is_empty() && !self.made {
            let side = &mut self.sides[i];
            let Some((kind, left)) = side.record else {
                let take = (HEADER - side.header.len()).min(input.len());
                side.header.extend_from_slice(&input[..take]);
                side.wire += take as u64;
                input = &input[take..];
                if side.header.len() < HEADER {
                    return;
                }
                let header = std::mem::take(&mut side.header);
                let Some((kind, len)) = record_header(&header) else {
                    let reason = format!("not a record header: {:02x?}", header);
                    self.malformed(flow, "record", reason, out);
                    return;
                };
                side.record = Some((kind, len));
                if len == 0 {
                    self.end_record(flow, dir, ts_ns, kind, out);
                }
                continue;
            };
            let n = left.min(input.len());
            let (body, rest) = input.split_at(n);
            side.wire += n as u64;
            side.record = Some((kind, left - n));
            input = rest;
            match kind {
                HANDSHAKE => self.handshake(dir, body, out),
                ALERT if !side.encrypted => {
                    let take = (2 - side.alert.len()).min(body.len());
                    side.alert.extend_from_slice(&body[..take]);
                }
                _ => {}
            }
            if left == n {
                self.end_record(flow, dir, ts_ns, kind, out);
            }
        }
    }

    /// A record was read whole: what it says about the handshake's progress.
    fn end_record(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        kind: u8,
        out: &mut Vec<Emit>,
    ) {
        let side = &mut self.sides[dir.index()];
        side.record = None;
        match kind {
            CHANGE_CIPHER_SPEC => {
                side.change_cipher_spec = true;
                // TLS 1.3 sends one only for middleboxes' sake, and a
                // client may send it before its second ClientHello.
                if self.version != Some(TLS13) {
                    side.encrypted = true;
                }
            }
            APPLICATION_DATA => side.application_data = true,
            ALERT => {
                if let [level, description] = std::mem::take(&mut side.alert)[..] {
                    self.alert(dir, ts_ns, level, description);
                }
            }
            _ => {}
        }
        if self.over() {
            self.make(flow, out);
        }
    }

    /// Whether the clear part of the handshake is over.
    fn over(&self) -> bool {
        let [c, s] = &self.sides;
        self.resp.alert_level == "fatal"
            || (c.application_data && s.application_data)
            || (self.version.is_some_and(|v| v <= TLS12)
                && c.change_cipher_spec
                && s.change_cipher_spec)
    }

    /// Handshake record bytes: reassembled into messages while the side
    /// is in clear.
    fn handshake(&mut self, dir: Direction, mut body: &[u8], out: &mut Vec<Emit>) {
        let i = dir.index();
        while !body.is_empty() && !self.made {
            let side = &mut self.sides[i];
            if side.encrypted || side.overflow {
                return;
            }
            let room = MAX_HANDSHAKE - side.handshake.len();
            if room == 0 {
                self.overflow(dir);
                return;
            }
            let n = room.min(body.len());
            side.handshake.extend_from_slice(&body[..n]);
            body = &body[n..];
            let buf = std::mem::take(&mut side.handshake);
            let mut at = 0;
            while let Some(h) = buf.get(at..at + 4) {
                let len = 4 + u24(&h[1..4]);
                if len > MAX_HANDSHAKE {
                    self.overflow(dir);
                    return;
                }
                let Some(msg) = buf.get(at..at + len) else {
                    break;
                };
                at += len;
                self.message(dir, msg, out);
                if self.sides[i].encrypted {
                    // TLS 1.3's ServerHello: what follows is not in clear.
                    return;
                }
            }
            self.sides[i].handshake = buf[at..].to_vec();
        }
    }

    fn overflow(&mut self, dir: Direction) {
        let side = &mut self.sides[dir.index()];
        side.overflow = true;
        side.handshake = Vec::new();
        self.flag("truncated");
    }

    /// One whole handshake message (type, length, body).
    fn message(&mut self, dir: Direction, msg: &[u8], out: &mut Vec<Emit>) {
        let what = match (dir, msg[0]) {
            (Direction::ToServer, CLIENT_HELLO) => "client_hello",
            (Direction::ToClient, SERVER_HELLO) => "server_hello",
            (Direction::ToClient, CERTIFICATE) => "certificate",
            _ => return,
        };
        let parsed = match parse_tls_message_handshake(msg) {
            Ok((_, TlsMessage::Handshake(m))) => m,
            _ => {
                self.flag(&format!("malformed:{what}"));
                out.push(Emit::ParseError {
                    protocol: "tls",
                    reason: format!("{what}: cannot parse its {} bytes", msg.len()),
                });
                return;
            }
        };
        match parsed {
            TlsMessageHandshake::ClientHello(ch) if self.req.handshake.is_empty() => {
                self.req.handshake = "ClientHello".to_string();
                self.req.cipher_suites = ch.ciphers.len() as u32;
                self.session_id = ch.session_id.unwrap_or_default().to_vec();
                let mut versions = None;
                for ext in extensions(ch.ext, parse_tls_client_hello_extension) {
                    match ext {
                        TlsExtension::SNI(names) => {
                            if let Some((_, name)) =
                                names.iter().find(|(t, _)| *t == SNIType::HostName)
                            {
                                self.req.server_name = text(name);
                            }
                        }
                        TlsExtension::ALPN(names) => {
                            self.req.alpn = names.iter().map(|n| text(n)).collect();
                        }
                        TlsExtension::SupportedVersions(v) => {
                            versions = Some(v.iter().map(|v| v.0).collect::<Vec<_>>());
                        }
                        _ => {}
                    }
                }
                let versions = versions.unwrap_or_else(|| vec![ch.version.0]);
                self.req.versions = versions
                    .into_iter()
                    .filter(|&v| !grease(v))
                    .map(version_name)
                    .collect();
            }
            TlsMessageHandshake::ServerHello(sh) => {
                let retry = sh.random == HELLO_RETRY_RANDOM;
                self.resp.hello_retry |= retry;
                let mut version = sh.version.0;
                self.resp.alpn.clear();
                for ext in extensions(sh.ext, parse_tls_server_hello_extension) {
                    match ext {
                        TlsExtension::SupportedVersions(v) if v.len() == 1 => version = v[0].0,
                        TlsExtension::ALPN(names) => {
                            if let Some(n) = names.first() {
                                self.resp.alpn = text(n);
                            }
                        }
                        _ => {}
                    }
                }
                self.version = Some(version);
                self.resp.version = version_name(version);
                self.resp.cipher_suite = cipher_name(sh.cipher.0);
                let sid = sh.session_id.unwrap_or_default();
                self.resp.resumed =
                    version <= TLS12 && !sid.is_empty() && sid == self.session_id.as_slice();
                if version == TLS13 && !retry {
                    self.sides[dir.index()].encrypted = true;
                }
            }
            TlsMessageHandshake::Certificate(c) if self.resp.certificate_subject.is_empty() => {
                if let Some(cert) = c.cert_chain.first() {
                    self.certificate(cert.data, out);
                }
            }
            _ => {}
        }
    }

    /// The server certificate's subject, issuer, alternative names and expiry.
    fn certificate(&mut self, der: &[u8], out: &mut Vec<Emit>) {
        let cert = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => cert,
            Err(e) => {
                self.flag("malformed:certificate");
                out.push(Emit::ParseError {
                    protocol: "tls",
                    reason: format!("certificate: {e}"),
                });
                return;
            }
        };
        self.resp.certificate_subject = capped(cert.subject().to_string());
        self.resp.certificate_issuer = capped(cert.issuer().to_string());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => {
                        self.resp.certificate_sans.push(capped(n.to_string()))
                    }
                    GeneralName::IPAddress(ip) => {
                        let ip = match ip.len() {
                            4 => <[u8; 4]>::try_from(*ip).map(std::net::IpAddr::from).ok(),
                            16 => <[u8; 16]>::try_from(*ip).map(std::net::IpAddr::from).ok(),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            self.resp.certificate_sans.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let not_after = cert.validity().not_after;
        self.resp.certificate_not_after = match u64::try_from(not_after.timestamp()) {
            Ok(secs) => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
                .to_string(),
            Err(_) => not_after.to_string(),
        };
    }

    /// An alert in clear: the first fatal one is kept, else the first.
    fn alert(&mut self, dir: Direction, ts_ns: u64, level: u8, description: u8) {
        let fatal = level == FATAL;
        if self.resp.alert.is_some() && (!fatal || self.resp.alert_level == "fatal") {
            return;
        }
        self.alert_ts.get_or_insert(ts_ns);
        self.resp.alert = Some(u32::from(description));
        self.resp.alert_name = alert_name(description);
        self.resp.alert_level = if fatal { "fatal" } else { "warning" }.to_string();
        self.resp.alert_from = match dir {
            Direction::ToServer => "client",
            Direction::ToClient => "server",
        }
        .to_string();
    }

    fn flag(&mut self, flag: &str) {
        if !self.flags.iter().any(|f| f == flag) {
            self.flags.push(flag.to_string());
        }
    }

    /// Framing is lost: the entry is made with what was read.
    fn malformed(&mut self, flow: &FlowInfo, what: &str, reason: String, out: &mut Vec<Emit>) {
        self.flag(&format!("malformed:{what}"));
        out.push(Emit::ParseError {
            protocol: "tls",
            reason,
        });
        self.make(flow, out);
    }

    /// The connection's entry, once: the client's side as the request, the
    /// server's (or an alert) as the response, each absent when it never
    /// showed.
    fn make(&mut self, flow: &FlowInfo, out: &mut Vec<Emit>) {
        if self.made {
            return;
        }
        self.made = true;
        let flags = std::mem::take(&mut self.flags);
        let [client, server] = std::mem::take(&mut self.sides);
        let req = client.started.map(|ts_ns| {
            let mut body = std::mem::take(&mut self.req);
            body.target = if body.server_name.is_empty() {
                flow.server.to_string()
            } else {
                body.server_name.clone()
            };
            Message {
                ts_ns,
                wire_size: client.wire,
                flags: flags.clone(),
                body: Request {
                    kind: Some(request::Kind::Tls(Box::new(body))),
                },
            }
        });
        let resp = server.started.or(self.alert_ts).map(|ts_ns| Message {
            ts_ns,
            wire_size: server.wire,
            flags: if req.is_none() { flags } else { Vec::new() },
            body: Response {
                kind: Some(response::Kind::Tls(Box::new(std::mem::take(
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
            Protocol::Tls,
            req,
            resp,
        ))));
    }
}

/// The extensions in `raw` that parse; one that does not is stepped over.
fn extensions<'a, E>(
    raw: Option<&'a [u8]>,
    parse: impl Fn(&'a [u8]) -> Result<(&'a [u8], TlsExtension<'a>), E>,
) -> Vec<TlsExtension<'a>> {
    let mut out = Vec::new();
    let mut rest = raw.unwrap_or_default();
    while rest.len() >= 4 {
        let len = 4 + usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if rest.len() < len {
            break;
        }
        if let Ok((_, ext)) = parse(&rest[..len]) {
            out.push(ext);
        }
        rest = &rest[len..];
    }
    out
}

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, … 0xfafa.
fn grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0",
        0x0301 => "TLS 1.0",
        0x0302 => "TLS 1.1",
        TLS12 => "TLS 1.2",
        TLS13 => "TLS 1.3",
        _ => return format!("0x{v:04x}"),
    }
    .to_string()
}

fn cipher_name(id: u16) -> String {
    match TlsCipherSuite::from_id(id) {
        Some(c) => c.name.to_string(),
        None => format!("0x{id:04x}"),
    }
}

/// IANA's alert names (RFC 8446 §6 and its registry), as written there.
fn alert_name(d: u8) -> String {
    match d {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        121 => "ech_required",
        _ => return format!("0x{d:02x}"),
    }
    .to_string()
}

/// Bytes from the wire as text, at most [`MAX_NAME`] bytes of them.
fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(MAX_NAME)]).into_owned()
}

fn capped(mut s: String) -> String {
    if s.len() > MAX_NAME {
        let mut end = MAX_NAME;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Dissector for Tls {
    fn on_data(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        if self.made || data.is_empty() {
            return;
        }
        if self.mode == Mode::Unknown {
            self.mode = if data[0] == HANDSHAKE {
                Mode::Handshake
            } else {
                Mode::Opaque
            };
        }
        match self.mode {
            Mode::Opaque => {
                let side = &mut self.sides[dir.index()];
                side.started.get_or_insert(ts_ns);
                side.wire += data.len() as u64;
                if self.sides.iter().all(|s| s.started.is_some()) {
                    self.make(flow, out);
                }
            }
            _ => self.read(flow, dir, ts_ns, data, out),
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
        // Records cannot be framed across a hole; an opaque connection
        // (or one not started yet) frames nothing.
        if !self.made && self.mode == Mode::Handshake {
            self.flag("gap");
            self.make(flow, out);
        }
    }

    fn on_close(&mut self, flow: &FlowInfo, _end: &FlowEnd, out: &mut Vec<Emit>) {
        if !self.made && self.mode == Mode::Handshake && !self.over() {
            self.flag("incomplete");
        }
        self.make(flow, out);
    }
}
