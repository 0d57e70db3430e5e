//! Where each protocol's entries hold keys, values and credentials: the
//! walk over one entry, by the request's and response's kind.

use super::{Cx, REDACTED, Side, json, text};
use proto::v1::{
    AmqpMethod, Body, GraphqlRequest, GrpcMessage, Header, HttpRequest, HttpResponse, KafkaRequest,
    PostgresRequest, PostgresResponse, ProtoField, RedisRequest, RedisResponse, WebSocketMessage,
    request, response,
};
use proto::v1::{Entry, GrpcRequest, GrpcResponse};

pub(super) fn entry(cx: &mut Cx<'_>, e: &mut Entry) {
    if let Some(kind) = e.request.as_mut().and_then(|r| r.kind.as_mut()) {
        match kind {
            request::Kind::Http(h) => http_request(cx, h),
            request::Kind::Grpc(g) => grpc_request(cx, g),
            request::Kind::Graphql(g) => graphql_request(cx, g),
            request::Kind::Websocket(w) => websocket(cx, Side::Request, w),
            request::Kind::Redis(r) => redis_request(cx, r),
            request::Kind::Postgres(p) => postgres_request(cx, p),
            request::Kind::Amqp(a) => amqp(cx, Side::Request, a),
            request::Kind::Kafka(k) => kafka_request(cx, k),
            request::Kind::Socks(s) => {
                // The dissector reads past RFC 1929's user and password;
                // the packets still carry them.
                if s.credentials {
                    cx.whole(Side::Request);
                    cx.path("request.socks.credentials".into());
                }
            }
            request::Kind::Stream(_) | request::Kind::Dns(_) | request::Kind::Tls(_) => {}
        }
    }
    if let Some(kind) = e.response.as_mut().and_then(|r| r.kind.as_mut()) {
        match kind {
            response::Kind::Http(h) => http_response(cx, h),
            response::Kind::Grpc(g) => grpc_response(cx, g),
            response::Kind::Graphql(g) => {
                if let Some(h) = g.http.as_mut() {
                    http_response(cx, h);
                }
                cx.text(|| "response.error".into(), &mut g.error);
            }
            response::Kind::Websocket(w) => websocket(cx, Side::Response, w),
            response::Kind::Redis(r) => redis_response(cx, r),
            response::Kind::Postgres(p) => postgres_response(cx, p),
            response::Kind::Amqp(a) => amqp(cx, Side::Response, a),
            response::Kind::Kafka(_)
            | response::Kind::Socks(_)
            | response::Kind::Stream(_)
            | response::Kind::Dns(_)
            | response::Kind::Tls(_) => {}
        }
    }
}

fn header<'h>(headers: &'h [Header], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn http_request(cx: &mut Cx<'_>, h: &mut HttpRequest) {
    text::headers(cx, Side::Request, "headers", &mut h.headers);
    text::headers(cx, Side::Request, "trailers", &mut h.trailers);
    query(cx, &mut h.path);
    body(cx, Side::Request, &h.headers, &mut h.body);
}

fn http_response(cx: &mut Cx<'_>, h: &mut HttpResponse) {
    text::headers(cx, Side::Response, "headers", &mut h.headers);
    text::headers(cx, Side::Response, "trailers", &mut h.trailers);
    body(cx, Side::Response, &h.headers, &mut h.body);
}

/// A request target's query string (`/login?user=x&password=y`).
fn query(cx: &mut Cx<'_>, path: &mut String) {
    let Some(q) = path.find('?') else {
        return;
    };
    if let Some(new) = text::pairs(cx, "request.query", &path.as_bytes()[q + 1..]) {
        let mut out = path[..=q].to_string();
        out.push_str(&String::from_utf8_lossy(&new));
        *path = out;
    }
}

/// A body by its content type: JSON (or what looks like it), a form, or
/// other text for the user's patterns. When its plaintext was redacted but
/// it is not on the wire as such (compressed, chunked), the packets of that
/// side are blanked whole.
fn body(cx: &mut Cx<'_>, side: Side, headers: &[Header], body: &mut Option<Body>) {
    let Some(b) = body.as_mut() else {
        return;
    };
    if b.data.is_empty() {
        return;
    }
    let ct = header(headers, "content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let path = format!("{}.body", side.name());
    let before = cx.blanks.needles.len();
    let changed = if ct.starts_with("application/x-www-form-urlencoded") {
        text::pairs(cx, &path, &b.data)
            .map(|n| b.data = n)
            .is_some()
    } else if ct.contains("json") || json::looks_like(&b.data) {
        json::redact(cx, &path, &b.data)
            .map(|n| b.data = n)
            .is_some()
    } else {
        cx.bytes(|| path.clone(), &mut b.data)
    };
    let chunked = header(headers, "transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    if changed && (!b.decoded_from.is_empty() || chunked) {
        // The wire has these bytes encoded: searching for them is useless.
        cx.blanks.needles.truncate(before);
        cx.whole(side);
    }
}

fn grpc_request(cx: &mut Cx<'_>, g: &mut GrpcRequest) {
    text::headers(cx, Side::Request, "metadata", &mut g.headers);
    grpc_messages(cx, Side::Request, &mut g.messages);
}

fn grpc_response(cx: &mut Cx<'_>, g: &mut GrpcResponse) {
    text::headers(cx, Side::Response, "metadata", &mut g.headers);
    text::headers(cx, Side::Response, "trailers", &mut g.trailers);
    cx.text(|| "response.message".into(), &mut g.message);
    grpc_messages(cx, Side::Response, &mut g.messages);
}

/// Protobuf has no key names on the wire: only the user's patterns apply,
/// to every string and bytes field and to undecoded message bytes.
fn grpc_messages(cx: &mut Cx<'_>, side: Side, messages: &mut [GrpcMessage]) {
    if !cx.has_patterns() {
        return;
    }
    for (n, m) in messages.iter_mut().enumerate() {
        let path = format!("{}.messages[{n}]", side.name());
        let mut changed = cx.bytes(|| path.clone(), &mut m.data);
        let mut stack: Vec<&mut ProtoField> = m.fields.iter_mut().collect();
        while let Some(f) = stack.pop() {
            let before = cx.paths.len();
            cx.text(|| path.clone(), &mut f.text);
            changed |= cx.bytes(|| path.clone(), &mut f.data) || cx.paths.len() > before;
            stack.extend(f.fields.iter_mut());
        }
        if changed && m.compressed {
            cx.whole(side);
        }
    }
}

fn graphql_request(cx: &mut Cx<'_>, g: &mut GraphqlRequest) {
    if let Some(h) = g.http.as_mut() {
        http_request(cx, h);
    }
    if let Some(v) = g.variables.as_mut()
        && let Some(new) = json::redact(cx, "request.variables", v.as_bytes())
    {
        *v = String::from_utf8_lossy(&new).into_owned();
    }
    if let Some(new) = text::graphql_arguments(cx, "request.query", g.query.as_bytes()) {
        g.query = String::from_utf8_lossy(&new).into_owned();
    }
    cx.text(|| "request.query".into(), &mut g.query);
}

/// A WebSocket message: JSON by its keys, other text by the user's
/// patterns. A client's frames are masked on the wire, and compressed ones
/// are deflated: their packets are blanked whole when anything was redacted.
fn websocket(cx: &mut Cx<'_>, side: Side, w: &mut WebSocketMessage) {
    if w.payload.is_empty() {
        return;
    }
    let path = format!("{}.payload", side.name());
    let before = cx.blanks.needles.len();
    let changed = if json::looks_like(&w.payload) {
        json::redact(cx, &path, &w.payload)
            .map(|n| w.payload = n)
            .is_some()
    } else {
        cx.bytes(|| path.clone(), &mut w.payload)
    };
    if changed && (w.compressed || w.direction.contains("client") || side == Side::Request) {
        cx.blanks.needles.truncate(before);
        cx.whole(side);
    }
}

/// Redis commands that carry credentials by position: `AUTH [user] pass`,
/// `HELLO … AUTH user pass`, `MIGRATE … AUTH pass | AUTH2 user pass`,
/// `CONFIG SET requirepass|masterauth|masteruser x`, and `ACL SETUSER`'s
/// `>pass` / `#hash` rules.
fn redis_request(cx: &mut Cx<'_>, r: &mut RedisRequest) {
    let command = r.command.to_ascii_uppercase();
    let mut secret: Vec<usize> = Vec::new();
    match command.as_str() {
        "AUTH" => secret.extend(0..r.args.len()),
        "HELLO" | "MIGRATE" => {
            let mut i = 0;
            while i < r.args.len() {
                let a = r.args[i].to_ascii_uppercase();
                let n = match a.as_slice() {
                    b"AUTH" if command == "HELLO" => 2,
                    b"AUTH" => 1,
                    b"AUTH2" => 2,
                    _ => 0,
                };
                secret.extend((i + 1..=i + n).filter(|j| *j < r.args.len()));
                i += 1 + n;
            }
        }
        "CONFIG SET" => {
            for i in (0..r.args.len()).step_by(2) {
                let name = r.args[i].to_ascii_lowercase();
                if (matches!(
                    name.as_slice(),
                    b"requirepass" | b"masterauth" | b"masteruser"
                ) || cx.sensitive(&name))
                    && i + 1 < r.args.len()
                {
                    secret.push(i + 1);
                }
            }
        }
        "ACL SETUSER" => secret.extend(
            r.args
                .iter()
                .enumerate()
                .skip(1)
                .filter(|(_, a)| matches!(a.first(), Some(b'>' | b'<' | b'#' | b'!')))
                .map(|(i, _)| i),
        ),
        _ => {}
    }
    for i in secret {
        let arg = std::mem::replace(&mut r.args[i], REDACTED.as_bytes().to_vec());
        if arg != REDACTED.as_bytes() {
            // RESP writes each argument after its length line.
            let len = format!("${}\r\n", arg.len());
            cx.needle(len.as_bytes(), b"", &arg);
            cx.path(format!("request.args[{i}]"));
        }
    }
    for (i, a) in r.args.iter_mut().enumerate() {
        cx.bytes(|| format!("request.args[{i}]"), a);
    }
    cx.text(|| "request.key".into(), &mut r.key);
}

fn redis_response(cx: &mut Cx<'_>, r: &mut RedisResponse) {
    cx.bytes(|| "response.value".into(), &mut r.value);
    cx.text(|| "response.error".into(), &mut r.error);
}

/// `… PASSWORD 'x'` in SQL (CREATE/ALTER ROLE/USER).
fn sql_password(cx: &mut Cx<'_>, sql: &mut String) {
    let lower = sql.to_ascii_lowercase();
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(p) = lower[from..].find("password") {
        let at = from + p + "password".len();
        from = at;
        let rest = &lower[at..];
        let ws = rest.len() - rest.trim_start().len();
        if ws == 0 || !rest[ws..].starts_with('\'') {
            continue;
        }
        let start = at + ws + 1;
        let end = lower[start..].find('\'').map_or(lower.len(), |e| start + e);
        if end > start {
            cx.needle(b"'", b"", &sql.as_bytes()[start..end]);
            spans.push((start, end));
        }
        from = end;
    }
    if !spans.is_empty() {
        *sql = String::from_utf8_lossy(&text::splice(sql.as_bytes(), &spans)).into_owned();
        cx.path("request.sql".into());
    }
}

fn postgres_request(cx: &mut Cx<'_>, p: &mut PostgresRequest) {
    // The startup message's parameters: `user` is a key like any other.
    if !p.user.is_empty() && cx.sensitive(b"user") && p.user != REDACTED {
        let user = std::mem::replace(&mut p.user, REDACTED.into());
        cx.needle(b"user\0", b"", user.as_bytes());
        cx.path("request.user".into());
        // The server says the session's user back (ParameterStatus).
        cx.echoes.push(user);
    }
    for o in &mut p.options {
        if cx.sensitive(o.name.as_bytes()) && o.value != REDACTED {
            let v = std::mem::replace(&mut o.value, REDACTED.into());
            cx.needle(format!("{}\0", o.name).as_bytes(), b"", v.as_bytes());
            cx.path(format!("request.options.{}", o.name));
        }
    }
    if p.kind == "startup" {
        // Password and SASL messages follow the startup in the same entry;
        // the dissector never keeps them, the packets do.
        cx.whole(Side::Request);
    }
    sql_password(cx, &mut p.sql);
    cx.text(|| "request.sql".into(), &mut p.sql);
    for (i, v) in p.parameters.iter_mut().enumerate() {
        if let Some(t) = v.text.as_mut() {
            cx.text(|| format!("request.parameters[{i}]"), t);
        }
    }
}

fn postgres_response(cx: &mut Cx<'_>, p: &mut PostgresResponse) {
    for h in &mut p.parameters {
        let echoed = cx.echoes.contains(&h.value);
        if (echoed || cx.sensitive(h.name.as_bytes())) && h.value != REDACTED {
            let v = std::mem::replace(&mut h.value, REDACTED.into());
            cx.needle(format!("{}\0", h.name).as_bytes(), b"", v.as_bytes());
            cx.path(format!("response.parameters.{}", h.name));
        }
    }
    if let Some(e) = p.error.as_mut() {
        for (f, t) in [("message", &mut e.message), ("detail", &mut e.detail)] {
            for user in cx.echoes.clone() {
                if t.contains(&user) {
                    *t = t.replace(&user, REDACTED);
                    cx.path(format!("response.error.{f}"));
                }
            }
            cx.text(|| format!("response.error.{f}"), t);
        }
    }
    for (r, result) in p.results.iter_mut().enumerate() {
        for row in &mut result.rows {
            for v in &mut row.values {
                if let Some(t) = v.text.as_mut() {
                    cx.text(|| format!("response.results[{r}].rows"), t);
                }
            }
        }
    }
    cx.text(|| "response.payload".into(), &mut p.payload);
}

/// AMQP: tables (arguments, message properties and headers) by key, the
/// body by its content type; `connection.start-ok` and `secure-ok` carry
/// the credentials, which the dissector never keeps, so their packets are
/// blanked.
fn amqp(cx: &mut Cx<'_>, side: Side, m: &mut AmqpMethod) {
    if m.method.ends_with("start-ok") || m.method.ends_with("secure-ok") {
        cx.whole(side);
        cx.path(format!("{}.response", side.name()));
    }
    text::headers(cx, side, "arguments", &mut m.arguments);
    text::headers(cx, side, "properties", &mut m.properties);
    let ct = header(&m.properties, "content-type").map(str::to_string);
    let headers = ct
        .map(|v| {
            vec![Header {
                name: "content-type".into(),
                value: v,
            }]
        })
        .unwrap_or_default();
    body(cx, side, &headers, &mut m.body);
}

/// Kafka keeps no request body in the entry; a SASL exchange
/// (SaslAuthenticate, API key 36) has its packets blanked.
fn kafka_request(cx: &mut Cx<'_>, k: &mut KafkaRequest) {
    if k.api_key == 36 {
        cx.whole(Side::Request);
        cx.path("request.sasl".into());
    }
}
