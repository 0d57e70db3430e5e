//! The client's messages: the startup, queries, the extended protocol's
//! Parse/Bind/Execute, each queued as an op that waits for its answer.

use super::*;

impl Postgres {
    pub(super) fn push_op(&mut self, flow: &FlowInfo, op: Op, out: &mut Vec<Emit>) {
        if self.ops.len() >= self.max_ops
            && let Some(old) = self.ops.pop_front()
        {
            out.push(Emit::Dropped {
                protocol: "postgres",
                what: "pending_request",
            });
            self.retire(flow, old, Retire::Unanswered, out);
        }
        self.ops.push_back(op);
    }

    /// An op for a client message: its own bytes, and for an op that makes an
    /// entry the bytes of the messages since the last one (its Parse and Bind).
    pub(super) fn op(&mut self, kind: OpKind, m: Msg, body: PostgresRequest) -> Op {
        let mut flags = m.flags;
        if body.sql_truncated || body.parameters_truncated {
            add_flag(&mut flags, "truncated");
        }
        let wire = if kind.makes_entry() {
            std::mem::take(&mut self.req_carry) + m.wire
        } else {
            self.req_carry += m.wire;
            m.wire
        };
        Op {
            kind,
            req: Message {
                ts_ns: m.ts,
                wire_size: wire,
                flags,
                body,
            },
            resp: Draft::default(),
        }
    }

    /// The connection's startup op, made by its first untyped message.
    pub(super) fn startup_op(&mut self, flow: &FlowInfo, m: &Msg, out: &mut Vec<Emit>) -> &mut Op {
        if !self.ops.iter().any(|o| o.kind == OpKind::Startup) {
            let op = Op {
                kind: OpKind::Startup,
                req: Message {
                    ts_ns: m.ts,
                    wire_size: 0,
                    flags: Vec::new(),
                    body: PostgresRequest {
                        kind: "startup".into(),
                        verb: "STARTUP".into(),
                        ..Default::default()
                    },
                },
                resp: Draft::default(),
            };
            self.push_op(flow, op, out);
        }
        let op = self
            .ops
            .iter_mut()
            .find(|o| o.kind == OpKind::Startup)
            .expect("startup op was just pushed");
        op.req.wire_size += m.wire;
        for f in &m.flags {
            add_flag(&mut op.req.flags, f);
        }
        op
    }

    pub(super) fn startup_message(&mut self, flow: &FlowInfo, m: Msg, out: &mut Vec<Emit>) {
        let code = be32(m.body, 0).unwrap_or(0);
        match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                let op = self.startup_op(flow, &m, out);
                op.req.body.encryption = if code == SSL_REQUEST { "ssl" } else { "gss" }.into();
                self.awaiting_answer = true;
                self.enc_requested = true;
            }
            CANCEL_REQUEST => {
                let req = Message {
                    ts_ns: m.ts,
                    wire_size: m.wire,
                    flags: m.flags,
                    body: PostgresRequest {
                        kind: "cancel".into(),
                        verb: "CANCEL".into(),
                        cancel_pid: be32(m.body, 4).unwrap_or(0),
                        ..Default::default()
                    },
                };
                self.emit(flow, Some(req), None, &[], out);
                // A cancel is never answered: the server closes the connection.
                if let Some(Emit::Entry(e)) = out.last_mut() {
                    e.flags.retain(|f| f != "no_response");
                }
            }
            c if c >> 16 == 3 => {
                let mut r = Reader::new(m.body.get(4..).unwrap_or_default());
                let mut options = Vec::new();
                let (mut user, mut database, mut app) =
                    (String::new(), String::new(), String::new());
                while let Some(key) = r.cstr() {
                    if key.is_empty() {
                        break;
                    }
                    let value = r.cstr().unwrap_or_else(|| r.rest());
                    let (key, value) = (name(key), name(value));
                    match key.as_str() {
                        "user" => user = value,
                        "database" => database = value,
                        "application_name" => app = value,
                        _ if options.len() < MAX_REPORTS => {
                            options.push(Header { name: key, value })
                        }
                        _ => {}
                    }
                }
                let op = self.startup_op(flow, &m, out);
                let b = &mut op.req.body;
                b.user = user;
                b.database = database;
                b.application_name = app;
                b.options = options;
                b.protocol_version = format!("3.{}", c & 0xffff);
                self.sides[Direction::ToServer.index()].typed = true;
            }
            // Cut short by a loss or the end of the capture: nothing to tell.
            _ if m.cut => {}
            _ => {
                self.sides[Direction::ToServer.index()].synced = true;
                let rest = m.body.to_vec();
                self.malformed(Direction::ToServer, "unknown_startup_code", rest, out);
            }
        }
    }

    pub(super) fn client_message(&mut self, flow: &FlowInfo, m: Msg, out: &mut Vec<Emit>) {
        let mut r = Reader::new(m.body);
        match m.t {
            b'Q' => {
                let raw = r.cstr();
                let (sql, capped) = text(raw.unwrap_or(m.body), self.max_body);
                let body = PostgresRequest {
                    kind: "simple".into(),
                    verb: verb(&sql),
                    sql,
                    sql_truncated: capped || raw.is_none(),
                    ..Default::default()
                };
                let op = self.op(OpKind::Query, m, body);
                self.push_op(flow, op, out);
            }
            b'P' => {
                let statement = name(r.cstr().unwrap_or_default());
                let raw = r.cstr();
                let (sql, capped) = text(raw.unwrap_or_else(|| r.rest()), self.max_body);
                let truncated = capped || raw.is_none();
                let body = PostgresRequest {
                    kind: "parse".into(),
                    verb: verb(&sql),
                    statement: statement.clone(),
                    ..Default::default()
                };
                self.statements
                    .insert(statement, Statement { sql, truncated });
                let op = self.op(OpKind::Parse, m, body);
                self.push_op(flow, op, out);
            }
            b'B' => {
                let portal = self.bind(m.body);
                let key = portal.0.clone();
                let body = PostgresRequest {
                    kind: "bind".into(),
                    statement: portal.1.statement.clone(),
                    portal: key.clone(),
                    ..Default::default()
                };
                self.portals.insert(key, portal.1);
                let op = self.op(OpKind::Bind, m, body);
                self.push_op(flow, op, out);
            }
            b'D' | b'C' => {
                let which = r.u8().unwrap_or(0);
                let target = name(r.cstr().unwrap_or_default());
                let mut body = PostgresRequest {
                    kind: if m.t == b'D' { "describe" } else { "close" }.into(),
                    ..Default::default()
                };
                if which == b'S' {
                    body.statement = target;
                } else {
                    body.portal = target;
                }
                if m.t == b'C' {
                    if which == b'S' {
                        self.statements.remove(&body.statement);
                    } else {
                        self.portals.remove(&body.portal);
                    }
                }
                let kind = if m.t == b'D' {
                    OpKind::Describe
                } else {
                    OpKind::Close
                };
                let op = self.op(kind, m, body);
                self.push_op(flow, op, out);
            }
            b'E' => {
                let key = name(r.cstr().unwrap_or_default());
                let max_rows = r.u32().unwrap_or(0);
                let p = self.portals.get(&key).cloned().unwrap_or_default();
                let sql = p.sql.unwrap_or_default();
                let body = PostgresRequest {
                    kind: "extended".into(),
                    verb: verb(&sql),
                    sql,
                    sql_truncated: p.sql_truncated,
                    statement: p.statement,
                    portal: key,
                    parameters: p.params,
                    parameter_count: p.param_count,
                    parameters_truncated: p.params_truncated,
                    max_rows,
                    ..Default::default()
                };
                let mut op = self.op(OpKind::Execute, m, body);
                op.resp.formats = p.result_formats;
                self.push_op(flow, op, out);
            }
            b'S' => {
                let op = self.op(
                    OpKind::Sync,
                    m,
                    PostgresRequest {
                        kind: "sync".into(),
                        verb: "SYNC".into(),
                        ..Default::default()
                    },
                );
                self.push_op(flow, op, out);
            }
            b'F' => {
                let body = PostgresRequest {
                    kind: "function_call".into(),
                    verb: "FUNCTION".into(),
                    function_oid: r.u32().unwrap_or(0),
                    ..Default::default()
                };
                let op = self.op(OpKind::Function, m, body);
                self.push_op(flow, op, out);
            }
            b'd' | b'c' | b'f' => {
                // COPY FROM STDIN: the data belongs to the COPY being run.
                let copy = self
                    .ops
                    .iter_mut()
                    .rev()
                    .find(|o| matches!(o.kind, OpKind::Query | OpKind::Execute));
                match copy {
                    Some(op) => {
                        op.req.wire_size += m.wire;
                        if m.t == b'd' {
                            op.req.body.copy_bytes += m.len;
                        }
                        for f in &m.flags {
                            add_flag(&mut op.req.flags, f);
                        }
                    }
                    None => self.req_carry += m.wire,
                }
            }
            b'p' => {
                let sasl = std::mem::take(&mut self.sasl_pending);
                let mechanism = r
                    .cstr()
                    .filter(|s| sasl && s.iter().all(u8::is_ascii_graphic));
                let mechanism = mechanism.map(name);
                if let Some(op) = self.ops.iter_mut().find(|o| o.kind == OpKind::Startup) {
                    op.req.wire_size += m.wire;
                    if let Some(mech) = mechanism {
                        op.resp.body.sasl_mechanism = mech;
                    }
                } else {
                    self.req_carry += m.wire;
                }
            }
            // Flush and Terminate expect no answer.
            _ => self.req_carry += m.wire,
        }
    }

    /// A Bind: its portal's name and what the portal holds.
    pub(super) fn bind(&self, body: &[u8]) -> (String, Portal) {
        let mut r = Reader::new(body);
        let key = name(r.cstr().unwrap_or_default());
        let statement = name(r.cstr().unwrap_or_default());
        let stmt = self.statements.get(&statement);
        let mut p = Portal {
            sql: stmt.map(|s| s.sql.clone()),
            sql_truncated: stmt.is_some_and(|s| s.truncated),
            statement,
            ..Default::default()
        };
        let nf = usize::from(r.u16().unwrap_or(0));
        let mut formats = Vec::new();
        for _ in 0..nf {
            let Some(f) = r.u16() else { break };
            if formats.len() <= MAX_PARAMS {
                formats.push(f);
            }
        }
        let Some(np) = r.u16() else {
            p.params_truncated = true;
            return (key, p);
        };
        p.param_count = u64::from(np);
        let mut used = 0;
        for i in 0..usize::from(np) {
            if i >= MAX_PARAMS || used >= self.max_body {
                p.params_truncated = true;
                return (key, p);
            }
            let Some(len) = r.u32() else {
                p.params_truncated = true;
                return (key, p);
            };
            if len as i32 == -1 {
                p.params.push(PostgresValue { text: None });
                used += VALUE_COST;
                continue;
            }
            let (bytes, complete) = r.take(len as usize);
            let room = self.max_body.saturating_sub(used + VALUE_COST);
            let (t, fits) = render(bytes, format_of(&formats, i) == 1, !complete, room);
            used += t.len() + VALUE_COST;
            p.params.push(PostgresValue { text: Some(t) });
            if !complete || !fits {
                p.params_truncated = true;
                return (key, p);
            }
        }
        let nr = usize::from(r.u16().unwrap_or(0));
        for _ in 0..nr.min(MAX_COLUMNS) {
            let Some(f) = r.u16() else { break };
            p.result_formats.push(f);
        }
        (key, p)
    }

    /// Makes sure the front op is one of `kinds`: ops before the first such
    /// op of the batch got no answer and leave the queue. False when no op
    /// of the batch is such an op (the message answers nothing we saw).
    pub(super) fn answer(
        &mut self,
        flow: &FlowInfo,
        kinds: &[OpKind],
        out: &mut Vec<Emit>,
    ) -> bool {
        let mut found = None;
        for (i, op) in self.ops.iter().enumerate() {
            if kinds.contains(&op.kind) {
                found = Some(i);
                break;
            }
            if op.kind.ends_batch() {
                break;
            }
        }
        let Some(i) = found else { return false };
        let how = if self.skipping {
            Retire::Skipped
        } else {
            Retire::Unanswered
        };
        for _ in 0..i {
            if let Some(op) = self.ops.pop_front() {
                self.retire(flow, op, how, out);
            }
        }
        true
    }

    /// The front op, touched by a server message (its time, bytes and flags).
    pub(super) fn front(&mut self, m: &mut Msg) -> Option<&mut Op> {
        let op = self.ops.front_mut()?;
        op.resp.touch(m.ts, m.wire, std::mem::take(&mut m.flags));
        if m.cut
            && !matches!(
                m.t,
                b'D' | b'd' | b'G' | b'H' | b'W' | b't' | b'R' | b'v' | b'K'
            )
        {
            op.resp.cut = true;
        }
        Some(op)
    }

    pub(super) fn stray(&mut self, m: &Msg) {
        self.resp_carry += m.wire;
    }
}
