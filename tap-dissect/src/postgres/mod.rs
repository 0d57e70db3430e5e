//! PostgreSQL: the frontend/backend protocol, version 3. One entry per simple
//! query (a Query message, with one result per statement it holds), one per
//! Execute of the extended protocol, and one for the connection's startup.
//!
//! A connection starts with the client's untyped StartupMessage, or first an
//! SSLRequest/GSSENCRequest answered by one byte: `S` or `G` means encryption
//! follows, so parsing stops and the startup entry is flagged `tls` (or
//! `gssenc`); `N` means plaintext goes on. Authentication follows up to the
//! first ReadyForQuery: its method is kept, passwords and SASL data never are.
//! From then on every message is a type byte and a 4-byte length. The server
//! answers in order, so each client message that expects an answer waits in
//! an in-order queue: a Query until its ReadyForQuery, Parse, Bind, Describe,
//! Close and Sync until their own answers, and an Execute until its
//! CommandComplete, EmptyQueryResponse, PortalSuspended or ErrorResponse. An
//! Execute's entry shows the SQL and parameters of the portal it runs, from
//! the Parse and Bind before it (statements and portals are remembered by name
//! in bounded maps). After an error the server skips the rest of the batch up
//! to Sync, so an Execute it skipped is an entry flagged `skipped`. Notices,
//! ParameterStatus and NotificationResponse may come at any time without
//! disturbing the order; a notification is an entry of its own.
//!
//! The parser is ours. The framing is five bytes, and the crates that decode
//! the protocol (`pgwire`, `postgres-protocol`) wait for a whole message in
//! one buffer before decoding it, so a 1 GiB DataRow or CopyData would be held
//! in memory; `postgres-protocol` reads only the server's side besides. Here a
//! length field is checked before anything else (4 bytes to 1 GiB, the
//! server's own limit; a startup packet at most 10,000 bytes), and the body
//! streams through: only a capped prefix of what an entry shows is kept,
//! CopyData is counted, and nothing is allocated from a length field. Bytes
//! the capture lost inside a message keep its framing (the message is cut);
//! a loss across a message boundary, or a malformed header, starts a
//! resynchronisation that looks for a run of well-formed messages (type,
//! length and body shape).

mod client;
pub mod json;
pub mod model;
mod probe;
mod read;
mod server;
mod state;

use super::{Claim, DissectConfig, Dissector, Emit, Handoff};
use crate::flow::{Direction, FlowEnd, FlowInfo};
use crate::pair::{self, Message};
use probe::*;
use proto::v1::{
    Header, PostgresError, PostgresRequest, PostgresResponse, PostgresResult, PostgresRow,
    PostgresValue, Protocol, Request, Response, request, response,
};
use read::*;
use state::*;
use std::collections::{HashMap, VecDeque};

/// Longest message the length field may announce: PostgreSQL's own limit.
const MAX_MESSAGE: u64 = 1 << 30;
/// Longest startup packet PostgreSQL accepts.
const MAX_STARTUP: u64 = 10_000;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Rows kept per result; more are counted.
const MAX_ROWS: usize = 100;
/// Results kept per entry (a Query of many statements).
const MAX_RESULTS: usize = 256;
/// Bind parameters kept per entry.
const MAX_PARAMS: usize = 256;
const MAX_NOTICES: usize = 16;
/// ParameterStatus reports and startup options kept.
const MAX_REPORTS: usize = 64;
/// The most columns a table can have.
const MAX_COLUMNS: usize = 1664;
/// Bytes kept of a statement, portal or channel name.
const MAX_NAME: usize = 1024;
const MAX_TAG: usize = 1024;
/// Prepared statements remembered per connection, and their SQL's bytes.
const MAX_STATEMENTS: usize = 1024;
const MAX_STATEMENT_BYTES: usize = 4 << 20;
/// Portals remembered per connection, and their bytes.
const MAX_PORTALS: usize = 64;
const MAX_PORTAL_BYTES: usize = 8 << 20;
/// Bytes kept of a DataRow or Bind beyond the value budget (lengths, format codes).
const OVERHEAD: usize = 8 << 10;
/// Bytes a resynchronisation holds while it looks for a message boundary;
/// a message it accepts as the boundary is shorter than this.
const RESYNC_WINDOW: usize = 64 << 10;
const RESYNC_MAX: u64 = (RESYNC_WINDOW - 16) as u64;
/// Possible boundaries a resynchronisation waits on at once.
const MAX_CANDIDATES: usize = 64;
const MAX_VERB: usize = 32;
/// What a value costs at least against the budget (a NULL too).
const VALUE_COST: usize = 4;

pub fn new(
    flow: &FlowInfo,
    config: &DissectConfig,
    handoff: Option<&Handoff>,
) -> Box<dyn Dissector> {
    Box::new(Postgres {
        max_body: config.max_body,
        max_head: config.max_head.max(1024),
        max_ops: config.max_pending.max(2) * 4,
        sides: [
            Side::new(Role::Client, flow.midstream),
            Side::new(Role::Server, flow.midstream),
        ],
        ops: VecDeque::new(),
        statements: Named::new(MAX_STATEMENTS, MAX_STATEMENT_BYTES),
        portals: Named::new(MAX_PORTALS, MAX_PORTAL_BYTES),
        made: handoff.map_or(0, |h| h.entries_made),
        encrypted: false,
        enc_requested: false,
        awaiting_answer: false,
        sasl_pending: false,
        skipping: false,
        req_carry: 0,
        resp_carry: 0,
    })
}

pub struct Postgres {
    max_body: usize,
    max_head: usize,
    max_ops: usize,
    sides: [Side; 2],
    ops: VecDeque<Op>,
    statements: Named<Statement>,
    portals: Named<Portal>,
    /// Entries made on the connection, for the entry id.
    made: u64,
    /// TLS or GSS encryption began: nothing more is readable.
    encrypted: bool,
    /// The client asked for encryption before its startup.
    enc_requested: bool,
    /// The server's next byte answers an SSLRequest/GSSENCRequest.
    awaiting_answer: bool,
    /// The server asked for SASL and the client has not named its mechanism yet.
    sasl_pending: bool,
    /// An error earlier in the batch: the server skips messages up to Sync.
    skipping: bool,
    /// Client bytes not yet counted in an entry (Parse, Bind, Sync, …).
    req_carry: u64,
    /// Server bytes not yet counted in an entry (ParseComplete, ReadyForQuery, …).
    resp_carry: u64,
}

impl Postgres {
    fn run(&mut self, flow: &FlowInfo, dir: Direction, ts: u64, data: &[u8], out: &mut Vec<Emit>) {
        // Bytes a resynchronisation gave back, parsed before the rest of `data`.
        let mut replay: Vec<u8> = Vec::new();
        let mut at = 0;
        let mut rest = data;
        loop {
            if at < replay.len() {
                let (n, carry) = self.step(flow, dir, ts, &replay[at..], out);
                at += n;
                if let Some(mut c) = carry {
                    c.extend_from_slice(&replay[at..]);
                    replay = c;
                    at = 0;
                }
                continue;
            }
            if rest.is_empty() {
                break;
            }
            let (n, carry) = self.step(flow, dir, ts, rest, out);
            rest = &rest[n..];
            if let Some(c) = carry {
                replay = c;
                at = 0;
            }
        }
    }

    /// Consumes some of `data` (at least one byte); returns how much, and
    /// bytes to parse next when a resynchronisation found a boundary.
    fn step(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) -> (usize, Option<Vec<u8>>) {
        if self.encrypted {
            return (data.len(), None);
        }
        let role = Role::of(dir);
        let side = &mut self.sides[dir.index()];
        if let Some(r) = &mut side.resync {
            let (n, carry) = r.feed(role, data);
            if carry.is_some() {
                side.resync = None;
            }
            return (n, carry);
        }
        if side.at_boundary() {
            if role == Role::Server && self.awaiting_answer {
                self.awaiting_answer = false;
                if matches!(data[0], b'S' | b'G' | b'N') {
                    self.encryption_answer(flow, ts, data[0], out);
                    return (1, None);
                }
                // Not a one-byte answer (an old server's ErrorResponse): messages follow.
            }
            if role == Role::Client && !side.typed && self.enc_requested && data[0] == 0x16 {
                // A TLS handshake record: the server's `S` was not seen.
                self.encryption_answer(flow, ts, b'S', out);
                return (data.len(), None);
            }
        }
        if let Some(b) = &mut side.body {
            let n = b.left.min(data.len() as u64) as usize;
            let k = n.min(b.cap.saturating_sub(b.keep.len()));
            b.keep.extend_from_slice(&data[..k]);
            if k < n {
                b.cut = true;
            }
            b.left -= n as u64;
            if b.left == 0 {
                self.finish_body(flow, dir, out);
            }
            return (n, None);
        }
        let need = if side.typed { 5 } else { 4 };
        if side.hdr_n == 0 {
            side.hdr_ts = ts;
        }
        let take = (need - side.hdr_n).min(data.len());
        side.hdr[side.hdr_n..side.hdr_n + take].copy_from_slice(&data[..take]);
        side.hdr_n += take;
        if side.hdr_n < need {
            return (take, None);
        }
        side.hdr_n = 0;
        let (t, checked) = if side.typed {
            let len = be32(&side.hdr, 1).unwrap_or(0);
            (side.hdr[0], check_header(role, side.hdr[0], len))
        } else {
            let len = u64::from(be32(&side.hdr, 0).unwrap_or(0));
            let ok = (8..=MAX_STARTUP).contains(&len);
            (
                0,
                if ok {
                    Ok(len - 4)
                } else {
                    Err("bad_startup_length")
                },
            )
        };
        match checked {
            Err(reason) => {
                let skipped = side.hdr[1..need].to_vec();
                self.malformed(dir, reason, skipped, out);
            }
            Ok(len) => {
                let cap = self.cap(dir, t).min(len as usize);
                let side = &mut self.sides[dir.index()];
                side.body = Some(Body {
                    t,
                    len,
                    left: len,
                    keep: Vec::new(),
                    cap,
                    cut: false,
                    ts: side.hdr_ts,
                });
                if len == 0 {
                    self.finish_body(flow, dir, out);
                }
            }
        }
        (take, None)
    }

    /// Bytes of a message body worth keeping: what its entry shows, capped.
    fn cap(&self, dir: Direction, t: u8) -> usize {
        let max_body = self.max_body;
        match (Role::of(dir), t) {
            (Role::Client, 0) => MAX_STARTUP as usize,
            (Role::Client, b'Q') => max_body + 1,
            (Role::Client, b'P') => MAX_NAME + max_body + 2,
            (Role::Client, b'B') => 2 * MAX_NAME + max_body + OVERHEAD,
            (Role::Client, b'E' | b'D' | b'C') => MAX_NAME + 6,
            (Role::Client, b'F') => 4,
            (Role::Client, b'p') if self.sasl_pending => 64,
            (Role::Server, b'R') => 4,
            (Role::Server, b'S') => 2 * MAX_NAME,
            (Role::Server, b'K') => 4,
            (Role::Server, b'Z') => 1,
            (Role::Server, b'T' | b'E' | b'N') => self.max_head,
            (Role::Server, b'C') => MAX_TAG,
            (Role::Server, b'A') => 4 + MAX_NAME + max_body,
            (Role::Server, b'V') => 4 + max_body,
            (Role::Server, b'D') => match self.ops.front() {
                Some(op) if matches!(op.kind, OpKind::Query | OpKind::Execute) => {
                    let room = max_body.saturating_sub(op.resp.rows_bytes);
                    let rows = op.resp.cur.as_ref().map_or(0, |p| p.res.rows.len());
                    if room == 0 || rows >= MAX_ROWS {
                        0
                    } else {
                        room + OVERHEAD
                    }
                }
                _ => 0,
            },
            _ => 0,
        }
    }

    fn finish_body(&mut self, flow: &FlowInfo, dir: Direction, out: &mut Vec<Emit>) {
        let side = &mut self.sides[dir.index()];
        let Some(b) = side.body.take() else { return };
        side.synced = true;
        let flags = std::mem::take(&mut side.flags);
        let typed = u64::from(b.t != 0);
        let m = Msg {
            t: b.t,
            body: &b.keep,
            len: b.len,
            cut: b.cut,
            ts: b.ts,
            wire: b.len + 4 + typed,
            flags,
        };
        match (Role::of(dir), b.t) {
            (Role::Client, 0) => self.startup_message(flow, m, out),
            (Role::Client, _) => self.client_message(flow, m, out),
            (Role::Server, _) => self.server_message(flow, m, out),
        }
    }

    fn malformed(
        &mut self,
        dir: Direction,
        reason: &'static str,
        skipped: Vec<u8>,
        out: &mut Vec<Emit>,
    ) {
        let side = &mut self.sides[dir.index()];
        if side.synced {
            out.push(Emit::ParseError {
                protocol: "postgres",
                reason: reason.to_string(),
            });
        }
        add_flag(&mut side.flags, &format!("malformed:{reason}"));
        side.synced = false;
        side.typed = true;
        side.body = None;
        side.hdr_n = 0;
        side.resync = Some(Resync::with(skipped));
    }
}

impl Dissector for Postgres {
    fn on_data(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Emit>,
    ) {
        self.run(flow, dir, ts_ns, data, out);
    }

    fn on_gap(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        _ts_ns: u64,
        len: u64,
        out: &mut Vec<Emit>,
    ) {
        if self.encrypted {
            return;
        }
        let side = &mut self.sides[dir.index()];
        if side.resync.is_some() {
            // What the window held no longer continues into what comes next.
            side.resync = Some(Resync::default());
            return;
        }
        add_flag(&mut side.flags, "gap");
        if let Some(b) = &mut side.body
            && len <= b.left
        {
            // Inside one message: its framing holds; what it lost is not kept.
            b.left -= len;
            b.cut = true;
            b.cap = b.keep.len();
            if b.left == 0 {
                self.finish_body(flow, dir, out);
            }
            return;
        }
        if let Some(b) = &mut side.body {
            b.cut = true;
            self.finish_body(flow, dir, out);
        }
        if dir == Direction::ToClient {
            self.awaiting_answer = false;
            // The answer under way most likely ended in the loss: what follows
            // answers the next op.
            if self
                .ops
                .front()
                .is_some_and(|o| o.kind.makes_entry() && o.resp.started)
                && let Some(mut op) = self.ops.pop_front()
            {
                add_flag(&mut op.resp.flags, "gap");
                self.retire(flow, op, Retire::Closed, out);
            }
        }
        let side = &mut self.sides[dir.index()];
        side.hdr_n = 0;
        side.synced = false;
        side.typed = true;
        side.flags = vec!["gap".to_string()];
        side.resync = Some(Resync::default());
    }

    fn on_close(&mut self, flow: &FlowInfo, _end: &FlowEnd, out: &mut Vec<Emit>) {
        if !self.encrypted {
            for dir in [Direction::ToServer, Direction::ToClient] {
                let side = &mut self.sides[dir.index()];
                if let Some(b) = &mut side.body {
                    b.cut = true;
                    add_flag(&mut side.flags, "incomplete");
                    self.finish_body(flow, dir, out);
                }
            }
        }
        while let Some(op) = self.ops.pop_front() {
            self.retire(flow, op, Retire::Closed, out);
        }
    }
}

#[cfg(test)]
mod tests;
