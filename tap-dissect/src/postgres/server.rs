//! The server's messages: answers paired with the ops in order, results,
//! errors, notifications, and the entries they make.

use super::*;

impl Postgres {
    pub(super) fn server_message(&mut self, flow: &FlowInfo, mut m: Msg, out: &mut Vec<Emit>) {
        let mut r = Reader::new(m.body);
        match m.t {
            b'R' => {
                if !self.answer(flow, &[OpKind::Startup], out) {
                    return self.stray(&m);
                }
                let code = r.u32().unwrap_or(u32::MAX);
                if code == 10 {
                    self.sasl_pending = true;
                }
                let Some(op) = self.front(&mut m) else { return };
                let method = match code {
                    2 => "kerberos_v5",
                    3 => "cleartext",
                    5 => "md5",
                    7 => "gss",
                    9 => "sspi",
                    10 => "sasl",
                    _ => "",
                };
                let auth = &mut op.resp.body.auth_method;
                if auth.is_empty() {
                    if !method.is_empty() {
                        *auth = method.into();
                    } else if code == 0 {
                        *auth = "none".into();
                    }
                }
            }
            b'K' => {
                if !self.answer(flow, &[OpKind::Startup], out) {
                    return self.stray(&m);
                }
                let pid = r.u32().unwrap_or(0);
                if let Some(op) = self.front(&mut m) {
                    op.resp.body.backend_pid = pid;
                }
            }
            b'v' => {
                if !self.answer(flow, &[OpKind::Startup], out) {
                    return self.stray(&m);
                }
                self.front(&mut m);
            }
            b'S' => {
                let key = name(r.cstr().unwrap_or_default());
                let value = name(r.cstr().unwrap_or_default());
                match self.front(&mut m) {
                    Some(op) => {
                        if op.resp.body.parameters.len() < MAX_REPORTS {
                            op.resp.body.parameters.push(Header { name: key, value });
                        }
                    }
                    None => self.stray(&m),
                }
            }
            b'N' => match self.front(&mut m) {
                Some(op) => {
                    if op.resp.body.notices.len() < MAX_NOTICES {
                        op.resp.body.notices.push(error_fields(m.body));
                    }
                }
                None => self.stray(&m),
            },
            b'A' => self.notification(flow, &m, out),
            b'Z' => self.ready(flow, m, out),
            b'E' => self.error(flow, m, out),
            b'1' | b'2' | b'3' | b'n' => {
                let kind = match m.t {
                    b'1' => OpKind::Parse,
                    b'2' => OpKind::Bind,
                    b'3' => OpKind::Close,
                    _ => OpKind::Describe,
                };
                if !self.answer(flow, &[kind], out) {
                    return self.stray(&m);
                }
                self.front(&mut m);
                if let Some(op) = self.ops.pop_front() {
                    self.retire(flow, op, Retire::Answered, out);
                }
            }
            b't' => {
                if !self.answer(flow, &[OpKind::Describe], out) {
                    return self.stray(&m);
                }
                self.front(&mut m);
            }
            b'T' => self.row_description(flow, m, out),
            b'D' | b'C' | b'I' | b's' | b'G' | b'H' | b'W' | b'd' | b'c' => {
                if !self.answer(flow, &[OpKind::Query, OpKind::Execute], out) {
                    return self.stray(&m);
                }
                let max_body = self.max_body;
                let Some(op) = self.front(&mut m) else { return };
                let kind = op.kind;
                let d = &mut op.resp;
                match m.t {
                    b'D' => d.data_row(m.body, max_body),
                    b'G' | b'H' | b'W' => {
                        d.result().res.copy = match m.t {
                            b'G' => "in",
                            b'H' => "out",
                            _ => "both",
                        }
                        .into();
                    }
                    b'd' => d.result().res.copy_bytes += m.len,
                    b'c' => {}
                    _ => {
                        let res = &mut d.result().res;
                        match m.t {
                            b'C' => res.command_tag = text(r.cstr().unwrap_or(m.body), MAX_TAG).0,
                            b'I' => res.empty_query = true,
                            _ => res.suspended = true,
                        }
                        d.close_result();
                        if kind == OpKind::Execute
                            && let Some(op) = self.ops.pop_front()
                        {
                            self.retire(flow, op, Retire::Answered, out);
                        }
                    }
                }
            }
            b'V' => {
                if !self.answer(flow, &[OpKind::Function], out) {
                    return self.stray(&m);
                }
                let value = match r.u32() {
                    Some(len) if len as i32 != -1 => {
                        let (bytes, complete) = r.take(len as usize);
                        Some(render(bytes, true, !complete, self.max_body).0)
                    }
                    _ => None,
                };
                if let Some(op) = self.front(&mut m) {
                    op.resp.body.function_result = Some(PostgresValue { text: value });
                }
            }
            _ => self.stray(&m),
        }
    }

    /// The one-byte answer to an SSLRequest or GSSENCRequest.
    pub(super) fn encryption_answer(
        &mut self,
        flow: &FlowInfo,
        ts: u64,
        answer: u8,
        out: &mut Vec<Emit>,
    ) {
        let Some(i) = self.ops.iter().position(|o| o.kind == OpKind::Startup) else {
            if answer != b'N' {
                self.encrypted = true;
            }
            return;
        };
        let op = &mut self.ops[i];
        op.resp.touch(ts, 1, Vec::new());
        if answer == b'N' {
            op.resp.body.encryption = "refused".into();
            return;
        }
        op.resp.body.encryption = "accepted".into();
        self.encrypted = true;
        let flag = if answer == b'G' { "gssenc" } else { "tls" };
        if let Some(op) = self.ops.remove(i) {
            let resp = Some(op.resp);
            self.emit(flow, Some(op.req), resp, &[flag], out);
        }
    }

    pub(super) fn notification(&mut self, flow: &FlowInfo, m: &Msg, out: &mut Vec<Emit>) {
        let mut r = Reader::new(m.body);
        let pid = r.u32().unwrap_or(0);
        let channel = name(r.cstr().unwrap_or_default());
        let payload = text(r.cstr().unwrap_or_else(|| r.rest()), self.max_body).0;
        let req = Message {
            ts_ns: m.ts,
            wire_size: 0,
            flags: Vec::new(),
            body: PostgresRequest {
                kind: "notification".into(),
                verb: "NOTIFICATION".into(),
                channel,
                ..Default::default()
            },
        };
        let mut d = Draft::default();
        d.touch(m.ts, m.wire, m.flags.clone());
        d.body.notify_pid = pid;
        d.body.payload = payload;
        self.emit(flow, Some(req), Some(d), &[], out);
        if let Some(Emit::Entry(e)) = out.last_mut() {
            // Nothing was asked, so nothing took time.
            e.elapsed_ns = None;
        }
    }

    pub(super) fn row_description(&mut self, flow: &FlowInfo, mut m: Msg, out: &mut Vec<Emit>) {
        if !self.answer(flow, &[OpKind::Describe, OpKind::Query], out) {
            return self.stray(&m);
        }
        let mut r = Reader::new(m.body);
        let n = usize::from(r.u16().unwrap_or(0));
        let mut columns = Vec::new();
        let mut formats = Vec::new();
        for _ in 0..n.min(MAX_COLUMNS) {
            let Some(c) = r.cstr() else { break };
            let (_, whole) = r.take(16);
            let Some(f) = r.u16().filter(|_| whole) else {
                break;
            };
            columns.push(name(c));
            formats.push(f);
        }
        let Some(op) = self.front(&mut m) else { return };
        if columns.len() < n {
            op.resp.cut = true;
        }
        if op.kind == OpKind::Query {
            op.resp.close_result();
            op.resp.cur = Some(Partial {
                res: PostgresResult {
                    columns,
                    ..Default::default()
                },
                data_rows: 0,
                formats,
            });
            return;
        }
        // A Describe: its columns are those of the Execute after it in the batch.
        if let Some(op) = self.ops.pop_front() {
            self.retire(flow, op, Retire::Answered, out);
        }
        if let Some(exec) = self
            .ops
            .iter_mut()
            .take_while(|o| !o.kind.ends_batch())
            .find(|o| o.kind == OpKind::Execute)
        {
            exec.resp.described = Some((columns, formats));
        }
    }

    pub(super) fn ready(&mut self, flow: &FlowInfo, mut m: Msg, out: &mut Vec<Emit>) {
        let status = match m.body.first() {
            Some(b'I') => "idle",
            Some(b'T') => "transaction",
            Some(b'E') => "failed",
            _ => "",
        };
        let answered = self.answer(
            flow,
            &[
                OpKind::Sync,
                OpKind::Query,
                OpKind::Function,
                OpKind::Startup,
            ],
            out,
        );
        self.skipping = false;
        if !answered {
            return self.stray(&m);
        }
        if self.ops.front().is_some_and(|o| o.kind == OpKind::Sync) {
            self.stray(&m);
            if let Some(op) = self.ops.pop_front() {
                self.retire(flow, op, Retire::Answered, out);
            }
            return;
        }
        if let Some(op) = self.front(&mut m) {
            op.resp.body.transaction_status = status.into();
        }
        if let Some(op) = self.ops.pop_front() {
            self.retire(flow, op, Retire::Answered, out);
        }
    }

    pub(super) fn error(&mut self, flow: &FlowInfo, mut m: Msg, out: &mut Vec<Emit>) {
        let err = error_fields(m.body);
        let Some(kind) = self.ops.front().map(|o| o.kind) else {
            // Nobody asked (a FATAL as the server shuts down).
            let mut d = Draft::default();
            d.touch(m.ts, m.wire, std::mem::take(&mut m.flags));
            d.body.error = Some(err);
            return self.emit(flow, None, Some(d), &[], out);
        };
        match kind {
            OpKind::Startup | OpKind::Query | OpKind::Function => {
                if let Some(op) = self.front(&mut m) {
                    op.resp.close_result();
                    op.resp.body.error = Some(err);
                }
                // Authentication failures are FATAL: the server hangs up.
                if kind == OpKind::Startup
                    && let Some(op) = self.ops.pop_front()
                {
                    self.retire(flow, op, Retire::Answered, out);
                }
            }
            OpKind::Sync => {
                // The implicit COMMIT at Sync failed: an entry of its own.
                let Some(op) = self.ops.front() else { return };
                let req = Message {
                    ts_ns: op.req.ts_ns,
                    wire_size: op.req.wire_size,
                    flags: Vec::new(),
                    body: op.req.body.clone(),
                };
                let mut d = Draft::default();
                d.touch(m.ts, m.wire, std::mem::take(&mut m.flags));
                d.body.error = Some(err);
                self.emit(flow, Some(req), Some(d), &[], out);
            }
            _ => {
                self.skipping = true;
                // The error stops the batch: it belongs to the Execute it
                // prevented (or the one that failed), else to the message itself.
                let exec = self
                    .ops
                    .iter()
                    .take_while(|o| !o.kind.ends_batch())
                    .position(|o| o.kind == OpKind::Execute);
                match exec {
                    Some(i) => {
                        for _ in 0..i {
                            if let Some(op) = self.ops.pop_front() {
                                self.retire(flow, op, Retire::Answered, out);
                            }
                        }
                    }
                    None => {
                        let Some(op) = self.ops.front_mut() else {
                            return;
                        };
                        let b = &mut op.req.body;
                        if let Some(s) = self.statements.get(&b.statement) {
                            b.sql = s.sql.clone();
                            b.sql_truncated = s.truncated;
                            b.verb = verb(&b.sql);
                        }
                        op.kind = OpKind::Execute;
                    }
                }
                if let Some(op) = self.front(&mut m) {
                    op.resp.close_result();
                    op.resp.body.error = Some(err);
                }
                if let Some(op) = self.ops.pop_front() {
                    self.retire(flow, op, Retire::Answered, out);
                }
            }
        }
    }

    pub(super) fn retire(&mut self, flow: &FlowInfo, mut op: Op, how: Retire, out: &mut Vec<Emit>) {
        if !op.kind.makes_entry() {
            self.resp_carry += op.resp.wire;
            return;
        }
        let mut extra = Vec::new();
        match how {
            Retire::Skipped => extra.push("skipped"),
            Retire::Closed if op.resp.started => extra.push("incomplete"),
            _ => {}
        }
        let resp = op.resp.started.then(|| {
            op.resp.wire += std::mem::take(&mut self.resp_carry);
            op.resp
        });
        self.emit(flow, Some(op.req), resp, &extra, out);
        if how == Retire::Skipped
            && let Some(Emit::Entry(e)) = out.last_mut()
        {
            // Not waiting for anything: the server decided not to run it.
            e.flags.retain(|f| f != "no_response");
        }
    }

    pub(super) fn emit(
        &mut self,
        flow: &FlowInfo,
        req: Option<Message<PostgresRequest>>,
        resp: Option<Draft>,
        extra: &[&str],
        out: &mut Vec<Emit>,
    ) {
        let req = req.map(|m| Message {
            ts_ns: m.ts_ns,
            wire_size: m.wire_size,
            flags: m.flags,
            body: Request {
                kind: Some(request::Kind::Postgres(Box::new(m.body))),
            },
        });
        let resp = resp.map(|mut d| {
            d.close_result();
            if d.cut {
                add_flag(&mut d.flags, "truncated");
            }
            Message {
                ts_ns: d.ts,
                wire_size: d.wire,
                flags: d.flags,
                body: Response {
                    kind: Some(response::Kind::Postgres(Box::new(d.body))),
                },
            }
        });
        let mut e = pair::entry(flow, self.made, Protocol::Postgres, req, resp);
        self.made += 1;
        for f in extra {
            add_flag(&mut e.flags, f);
        }
        out.push(Emit::Entry(Box::new(e)));
    }
}
