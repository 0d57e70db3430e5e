//! How many bytes of memory an entry takes, so that memory budgets (the
//! hub's store, the worker's shipping queue) are budgets of real heap and
//! not of wire bytes.
//!
//! A deep walk over the entry: each `String` and `Vec` counts its capacity
//! (not its length: a decoded repeated field keeps the slack of `Vec`'s
//! doubling), rounded the way glibc's malloc rounds a request, and the entry
//! struct counts once, inside its `Arc`. Wire size would be a poor proxy: a
//! header of two short strings is ~30 bytes encoded and ~112 on the heap,
//! while a large body is about the same in both.
//!
//! Measured against a counting allocator on prost-decoded entries of every
//! protocol (`tap-hub/tests/store_memory.rs`, 4000 entries each): within 0.05% of the
//! chunk bytes glibc holds for them. The bytes the program requested are
//! 15-25% less; the difference is malloc's headers and rounding, which are
//! real memory. Left out: the unused capacity of the store's ring of slots
//! (under 16 bytes per entry, the ring doubling as it grows), and under
//! another allocator (jemalloc, musl) the count is off by the difference in
//! rounding, of the same order.

use std::mem::size_of;

use crate::v1::{
    AmqpMethod, Body, DnsQuestion, DnsRecord, DnsRequest, DnsResponse, Endpoint, Entry,
    GraphqlRequest, GraphqlResponse, GrpcMessage, GrpcRequest, GrpcResponse, Header, HttpRequest,
    HttpResponse, KafkaPartition, KafkaRequest, KafkaResponse, KafkaTopic, PostgresError,
    PostgresRequest, PostgresResponse, PostgresResult, PostgresRow, PostgresValue, ProtoField,
    RedisRequest, RedisResponse, Request, Response, StreamSide, WebSocketMessage, request,
    response,
};

/// Bytes glibc's malloc takes for a request of `n` bytes: an 8-byte chunk
/// header, rounded up to 16, at least 32. jemalloc and musl round to size
/// classes instead; their average waste is of the same order.
pub const fn allocation(n: usize) -> u64 {
    if n == 0 {
        return 0;
    }
    let chunk = (n + 8 + 15) & !15;
    if chunk < 32 { 32 } else { chunk as u64 }
}

/// Heap bytes of an entry held as `Arc<Entry>`: the Arc's allocation (two
/// counters and the entry struct) and everything the entry owns.
pub fn arc_entry(entry: &Entry) -> u64 {
    allocation(2 * size_of::<usize>() + size_of::<Entry>()) + entry.heap()
}

/// Bytes an entry takes held by value (in a queue): the struct and
/// everything it owns.
pub fn entry(entry: &Entry) -> u64 {
    size_of::<Entry>() as u64 + entry.heap()
}

/// Heap bytes a value owns beyond its own inline size.
trait Heap {
    fn heap(&self) -> u64;
}

/// A boxed value (each protocol's message in the entry's oneofs): its own
/// allocation and what it owns.
impl<T: Heap> Heap for Box<T> {
    fn heap(&self) -> u64 {
        allocation(size_of::<T>()) + (**self).heap()
    }
}

impl Heap for String {
    fn heap(&self) -> u64 {
        allocation(self.capacity())
    }
}

impl Heap for u8 {
    fn heap(&self) -> u64 {
        0
    }
}

impl<T: Heap> Heap for Vec<T> {
    fn heap(&self) -> u64 {
        let own = allocation(self.capacity() * size_of::<T>());
        // Elements that need no drop own no heap (bytes, plain numbers), and
        // walking a 64 KiB body byte by byte would cost more than the insert.
        if std::mem::needs_drop::<T>() {
            own + self.iter().map(Heap::heap).sum::<u64>()
        } else {
            own
        }
    }
}

impl<T: Heap> Heap for Option<T> {
    fn heap(&self) -> u64 {
        self.as_ref().map_or(0, Heap::heap)
    }
}

/// Lists the fields of each message that own heap; scalar fields own none.
macro_rules! heap_fields {
    ($($ty:ty { $($field:ident),* $(,)? })*) => {
        $(impl Heap for $ty {
            fn heap(&self) -> u64 {
                0 $(+ self.$field.heap())*
            }
        })*
    };
}

heap_fields! {
    Entry { id, node, src, dst, request, response, redacted, flags }
    Endpoint { ip, pod, namespace, service }
    Request { kind }
    Response { kind }
    Header { name, value }
    Body { data, decoded_from }
    HttpRequest { method, path, version, headers, body, trailers }
    HttpResponse { reason, version, headers, body, trailers }
    StreamSide { ended }
    DnsQuestion { name, qtype, qclass }
    DnsRequest { opcode, name, qtype, qclass, questions, transport }
    DnsRecord { name, rtype, rclass, data }
    DnsResponse { rcode_name, opcode, questions, answers, transport }
    ProtoField { text, data, fields }
    GrpcMessage { data, fields }
    GrpcRequest { service, method, path, authority, headers, messages }
    GrpcResponse { status_name, message, headers, trailers, messages }
    RedisRequest { command, key, args }
    RedisResponse { r#type, value, error }
    KafkaPartition {}
    KafkaTopic { name, partitions }
    KafkaRequest { api_name, client_id, topics, group_id }
    KafkaResponse { topics, api_name }
    WebSocketMessage { opcode, direction, payload, close_reason, upgrade_entry, path }
    GraphqlRequest { operation_type, operation_name, query, variables, http }
    GraphqlResponse { http, error }
    PostgresValue { text }
    PostgresRow { values }
    PostgresError { severity, code, message, detail, hint }
    PostgresResult { command_tag, columns, rows, copy }
    PostgresRequest {
        kind, verb, sql, statement, portal, parameters, user, database,
        application_name, options, protocol_version, encryption, channel,
    }
    PostgresResponse {
        results, error, notices, auth_method, sasl_mechanism, parameters,
        encryption, transaction_status, payload, function_result,
    }
    AmqpMethod {
        class, method, exchange, routing_key, queue, consumer_tag, path,
        properties, body, reply_text, arguments, sender,
    }
}

/// A protocol added to the oneof after this walk was written is estimated
/// from its wire size (small allocations cost about twice their bytes), so
/// that adding a protocol does not have to touch the store; give it an arm
/// above for an exact count.
fn unlisted(encoded_len: usize) -> u64 {
    2 * encoded_len as u64
}

impl Heap for request::Kind {
    fn heap(&self) -> u64 {
        use request::Kind;
        #[allow(unreachable_patterns)]
        match self {
            Kind::Http(m) => m.heap(),
            Kind::Stream(m) => m.heap(),
            Kind::Dns(m) => m.heap(),
            Kind::Redis(m) => m.heap(),
            Kind::Grpc(m) => m.heap(),
            Kind::Kafka(m) => m.heap(),
            Kind::Amqp(m) => m.heap(),
            Kind::Postgres(m) => m.heap(),
            Kind::Websocket(m) => m.heap(),
            Kind::Graphql(m) => m.heap(),
            _ => unlisted(self.encoded_len()),
        }
    }
}

impl Heap for response::Kind {
    fn heap(&self) -> u64 {
        use response::Kind;
        #[allow(unreachable_patterns)]
        match self {
            Kind::Http(m) => m.heap(),
            Kind::Stream(m) => m.heap(),
            Kind::Dns(m) => m.heap(),
            Kind::Redis(m) => m.heap(),
            Kind::Grpc(m) => m.heap(),
            Kind::Kafka(m) => m.heap(),
            Kind::Amqp(m) => m.heap(),
            Kind::Postgres(m) => m.heap(),
            Kind::Websocket(m) => m.heap(),
            Kind::Graphql(m) => m.heap(),
            _ => unlisted(self.encoded_len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_follows_glibc_chunk_sizes() {
        for (request, chunk) in [
            (0, 0),
            (1, 32),
            (24, 32),
            (25, 48),
            (40, 48),
            (41, 64),
            (1000, 1008),
        ] {
            assert_eq!(allocation(request), chunk, "request of {request} bytes");
        }
    }

    #[test]
    fn counts_capacity_not_length() {
        let mut s = String::with_capacity(100);
        s.push('x');
        assert_eq!(s.heap(), allocation(100));
        let headers: Vec<Header> = Vec::with_capacity(4);
        assert_eq!(headers.heap(), allocation(4 * size_of::<Header>()));
    }

    #[test]
    fn walks_nested_messages() {
        let header = |n: &str, v: &str| Header {
            name: n.into(),
            value: v.into(),
        };
        let entry = Entry {
            request: Some(Request {
                kind: Some(request::Kind::Http(Box::new(HttpRequest {
                    method: "GET".into(),
                    headers: vec![header("host", "a"), header("accept", "b")],
                    ..Default::default()
                }))),
            }),
            ..Default::default()
        };
        // The boxed request, "GET", the headers' buffer, and four 1-to-6-byte
        // strings of 32 bytes each.
        let want = allocation(size_of::<HttpRequest>())
            + allocation(3)
            + allocation(2 * size_of::<Header>())
            + 4 * 32;
        assert_eq!(entry.heap(), want);
        assert_eq!(
            arc_entry(&entry),
            allocation(16 + size_of::<Entry>()) + want
        );
    }
}
