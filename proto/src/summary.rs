//! The generic fields every protocol fills where they mean something, so one
//! table column, one filter and one UI column work across protocols:
//! `request.method`, `request.path` and `response.status` (see docs/entries.md).

use crate::v1::{Entry, GraphqlRequest, WebSocketMessage, request, response};

impl Entry {
    /// HTTP method, Redis command, DNS query type, SQL verb, …
    pub fn method(&self) -> Option<&str> {
        if let Some(m) = self.websocket() {
            // The opcode's name, for the server's messages too.
            return Some(&m.opcode);
        }
        match self.request.as_ref()?.kind.as_ref()? {
            request::Kind::Http(r) => Some(&r.method),
            // The RPC's method name: an HTTP method would always be POST.
            request::Kind::Grpc(r) => Some(&r.method),
            request::Kind::Dns(r) => Some(&r.qtype),
            // "PUSH" for an entry made of a server push (pub/sub message).
            request::Kind::Redis(r) => Some(&r.command),
            // "basic.publish", "queue.declare": class and method.
            request::Kind::Amqp(r) => Some(&r.method),
            // The SQL verb; STARTUP, CANCEL, FUNCTION, NOTIFICATION otherwise.
            request::Kind::Postgres(r) => Some(&r.verb),
            request::Kind::Websocket(r) => Some(&r.opcode),
            // query, mutation or subscription.
            request::Kind::Graphql(r) => Some(&r.operation_type),
            // The API's name: Produce, Fetch, Metadata, …
            request::Kind::Kafka(r) => Some(&r.api_name),
            request::Kind::Stream(_) => None,
        }
    }

    /// A WebSocket message, on whichever side of the entry its sender's is.
    fn websocket(&self) -> Option<&WebSocketMessage> {
        match (
            self.request.as_ref().and_then(|r| r.kind.as_ref()),
            self.response.as_ref().and_then(|r| r.kind.as_ref()),
        ) {
            (Some(request::Kind::Websocket(m)), _) | (_, Some(response::Kind::Websocket(m))) => {
                Some(m)
            }
            _ => None,
        }
    }

    /// HTTP path, gRPC method, DNS name, SQL text, …
    pub fn path(&self) -> Option<&str> {
        if let Some(m) = self.websocket() {
            // The upgrade request's path, for the server's messages too.
            return Some(&m.path);
        }
        match self.request.as_ref()?.kind.as_ref()? {
            request::Kind::Http(r) => Some(&r.path),
            request::Kind::Grpc(r) => Some(&r.path),
            request::Kind::Dns(r) => Some(&r.name),
            request::Kind::Redis(r) => Some(&r.key),
            // exchange/routing key, or the queue.
            request::Kind::Amqp(r) => Some(&r.path),
            // The SQL text; a notification's channel.
            request::Kind::Postgres(r) if r.kind == "notification" => Some(&r.channel),
            request::Kind::Postgres(r) => Some(&r.sql),
            request::Kind::Websocket(r) => Some(&r.path),
            request::Kind::Graphql(r) => Some(r.generic_path()),
            // The first topic named, or empty.
            request::Kind::Kafka(r) => Some(r.topics.first().map_or("", |t| t.name.as_str())),
            request::Kind::Stream(_) => None,
        }
    }

    /// HTTP status, gRPC status code, DNS rcode, …
    pub fn status(&self) -> Option<i64> {
        if let Some(m) = self.websocket() {
            // A close frame's code, whichever side sent it.
            return m.close_code.map(i64::from);
        }
        match self.response.as_ref()?.kind.as_ref()? {
            response::Kind::Http(r) => Some(i64::from(r.status)),
            response::Kind::Grpc(r) => r.status.map(i64::from),
            response::Kind::Dns(r) => Some(i64::from(r.rcode)),
            // Redis has no status code: 0 for a reply, 1 for an error reply.
            response::Kind::Redis(r) => Some(i64::from(r.is_error)),
            // The reply code of a close (the request's, for a close the
            // other side confirmed) or a basic.return; 0 when there is none.
            response::Kind::Amqp(r) => {
                let asked = match self.request.as_ref().and_then(|q| q.kind.as_ref()) {
                    Some(request::Kind::Amqp(q)) => q.reply_code,
                    _ => 0,
                };
                Some(i64::from(r.reply_code.max(asked)))
            }
            // SQLSTATEs are not numbers: 0 for success, 1 for an ErrorResponse
            // (its code is `response.sqlstate`).
            response::Kind::Postgres(r) => Some(i64::from(r.error.is_some())),
            response::Kind::Websocket(r) => r.close_code.map(i64::from),
            // The HTTP status: GraphQL reports its errors in the body (`errors`).
            response::Kind::Graphql(r) => r.http.as_ref().map(|h| i64::from(h.status)),
            // The Kafka error code: top-level, or the first non-zero of a topic or partition.
            response::Kind::Kafka(r) => Some(i64::from(r.error_code)),
            response::Kind::Stream(_) => None,
        }
    }
}

impl GraphqlRequest {
    /// The generic `request.path`: the operation's name, or for an anonymous
    /// operation the HTTP path without its query string (which, for a GET,
    /// holds the whole document).
    pub fn generic_path(&self) -> &str {
        if !self.operation_name.is_empty() {
            return &self.operation_name;
        }
        let path = self.http.as_ref().map_or("", |h| h.path.as_str());
        path.split('?').next().unwrap_or(path)
    }
}
