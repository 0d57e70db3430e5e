//! Checks the store's memory accounting against the allocator: entries of
//! every protocol, decoded by prost as ingest decodes them, are inserted into
//! a store, and what the store says they take (`memory_bytes`) is compared
//! with the heap they really hold. A test binary of its own because it
//! replaces the global allocator, which the hub's library (no unsafe code)
//! cannot do.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::sync::atomic::{AtomicI64, Ordering};

use prost::Message;
use proto::v1::{
    AmqpMethod, Body, DnsQuestion, DnsRecord, DnsRequest, DnsResponse, Endpoint, Entry,
    GraphqlRequest, GraphqlResponse, GrpcMessage, GrpcRequest, GrpcResponse, Header, HttpRequest,
    HttpResponse, KafkaPartition, KafkaRequest, KafkaResponse, KafkaTopic, PostgresRequest,
    PostgresResponse, PostgresResult, PostgresRow, PostgresValue, ProtoField, RedisRequest,
    RedisResponse, Request, Response, StreamSide, WebSocketMessage, request, response,
};
use tap_hub::store::{Store, StoreConfig};

/// Live bytes as requested by the program, and as glibc's malloc holds them
/// (its chunks: the usable size plus an 8-byte header).
static REQUESTED: AtomicI64 = AtomicI64::new(0);
static CHUNKS: AtomicI64 = AtomicI64::new(0);

unsafe extern "C" {
    fn malloc_usable_size(ptr: *mut c_void) -> usize;
}

fn chunk(ptr: *mut u8) -> i64 {
    // SAFETY: `ptr` is a live allocation of the system allocator (malloc,
    // or posix_memalign for large alignments), which glibc can size.
    (unsafe { malloc_usable_size(ptr.cast()) } + 8) as i64
}

struct Counting;

// SAFETY: every call goes to `System` unchanged; the counters only watch.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            REQUESTED.fetch_add(layout.size() as i64, Ordering::Relaxed);
            CHUNKS.fetch_add(chunk(ptr), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for alloc.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            REQUESTED.fetch_add(layout.size() as i64, Ordering::Relaxed);
            CHUNKS.fetch_add(chunk(ptr), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        REQUESTED.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        CHUNKS.fetch_sub(chunk(ptr), Ordering::Relaxed);
        // SAFETY: as for alloc.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = chunk(ptr);
        // SAFETY: as for alloc.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            REQUESTED.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
            CHUNKS.fetch_add(chunk(new) - old, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

fn body(data: &[u8]) -> Option<Body> {
    Some(Body {
        data: data.to_vec(),
        wire_size: data.len() as u64,
        ..Default::default()
    })
}

fn base(
    i: u64,
    protocol: proto::Protocol,
    request: request::Kind,
    response: response::Kind,
) -> Entry {
    let endpoint = |ip: &str, pod: &str, service: Option<&str>| Endpoint {
        ip: ip.into(),
        port: 8080,
        pod: Some(pod.into()),
        namespace: Some("shop".into()),
        service: service.map(Into::into),
    };
    Entry {
        id: format!("{:016x}-{}", i * 7919, i % 7),
        ts_ns: 1_790_000_000_000_000_000 + i,
        node: "node-1".into(),
        protocol: protocol as i32,
        src: Some(endpoint("10.1.0.5", "frontend-7c9f5d-x2xq", None)),
        dst: Some(endpoint(
            "10.1.1.7",
            "catalogue-5d2a8b-k9l2",
            Some("catalogue"),
        )),
        elapsed_ns: Some(1_834_000),
        request: Some(Request {
            kind: Some(request),
        }),
        response: Some(Response {
            kind: Some(response),
        }),
        flags: if i.is_multiple_of(3) {
            vec!["midstream".into()]
        } else {
            vec![]
        },
        redacted: if i.is_multiple_of(5) {
            vec!["request.headers.authorization".into()]
        } else {
            vec![]
        },
        ..Default::default()
    }
}

fn http(i: u64) -> Entry {
    let req = HttpRequest {
        method: "GET".into(),
        path: format!("/catalogue?size=5&page={i}"),
        version: "1.1".into(),
        headers: vec![
            header("host", "catalogue"),
            header("user-agent", "Go-http-client/1.1"),
            header("accept", "application/json"),
            header("x-request-id", "2f1c9a7e-5b3d-4e8f-9a6b-1c2d3e4f5a6b"),
        ],
        ..Default::default()
    };
    let resp = HttpResponse {
        status: 200,
        reason: "OK".into(),
        version: "1.1".into(),
        headers: vec![
            header("content-type", "application/json"),
            header("content-length", "180"),
        ],
        body: body(&[b'x'; 180]),
        ..Default::default()
    };
    base(
        i,
        proto::Protocol::Http,
        request::Kind::Http(Box::new(req)),
        response::Kind::Http(Box::new(resp)),
    )
}

fn dns(i: u64) -> Entry {
    let question = DnsQuestion {
        name: "catalogue.shop.svc.cluster.local".into(),
        qtype: "A".into(),
        qclass: "IN".into(),
    };
    let req = DnsRequest {
        id: i as u32,
        opcode: "QUERY".into(),
        name: question.name.clone(),
        qtype: "A".into(),
        qclass: "IN".into(),
        questions: vec![question.clone()],
        rd: true,
        transport: "udp".into(),
        ..Default::default()
    };
    let resp = DnsResponse {
        id: i as u32,
        rcode_name: "NOERROR".into(),
        opcode: "QUERY".into(),
        questions: vec![question],
        answers: vec![DnsRecord {
            name: "catalogue.shop.svc.cluster.local".into(),
            rtype: "A".into(),
            rclass: "IN".into(),
            ttl: 30,
            data: "10.96.4.17".into(),
        }],
        transport: "udp".into(),
        ..Default::default()
    };
    base(
        i,
        proto::Protocol::Dns,
        request::Kind::Dns(Box::new(req)),
        response::Kind::Dns(Box::new(resp)),
    )
}

fn redis(i: u64) -> Entry {
    let req = RedisRequest {
        command: "SET".into(),
        key: format!("session:{i}"),
        args: vec![
            format!("session:{i}").into_bytes(),
            vec![b'v'; 64],
            b"EX".to_vec(),
            b"3600".to_vec(),
        ],
        arg_count: 4,
        ..Default::default()
    };
    let resp = RedisResponse {
        r#type: "simple".into(),
        value: b"OK".to_vec(),
        ..Default::default()
    };
    base(
        i,
        proto::Protocol::Redis,
        request::Kind::Redis(Box::new(req)),
        response::Kind::Redis(Box::new(resp)),
    )
}

fn grpc(i: u64) -> Entry {
    let field = |n, text: &str| ProtoField {
        number: n,
        wire_type: 2,
        kind: 5,
        text: text.into(),
        length: text.len() as u32,
        ..Default::default()
    };
    let message = GrpcMessage {
        length: 40,
        data: vec![0x0a; 40],
        decoded: true,
        fields: vec![
            field(1, "catalogue"),
            ProtoField {
                number: 2,
                kind: 4,
                fields: vec![field(1, "nested"), field(2, "value")],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let req = GrpcRequest {
        service: "shop.Catalogue".into(),
        method: "List".into(),
        path: "/shop.Catalogue/List".into(),
        authority: "catalogue:8080".into(),
        headers: vec![
            header("content-type", "application/grpc"),
            header("te", "trailers"),
        ],
        messages: vec![message.clone()],
        message_count: 1,
        body_size: 45,
        ..Default::default()
    };
    let resp = GrpcResponse {
        status: Some(0),
        status_name: "OK".into(),
        http_status: 200,
        headers: vec![header("content-type", "application/grpc")],
        trailers: vec![header("grpc-status", "0")],
        messages: vec![message],
        message_count: 1,
        body_size: 45 + i % 3,
        ..Default::default()
    };
    base(
        i,
        proto::Protocol::Grpc,
        request::Kind::Grpc(Box::new(req)),
        response::Kind::Grpc(Box::new(resp)),
    )
}

fn kafka(i: u64) -> Entry {
    let topic = || KafkaTopic {
        name: "orders".into(),
        partitions: (0..3)
            .map(|p| KafkaPartition {
                index: p,
                record_count: 10,
                records_size: 900,
                ..Default::default()
            })
            .collect(),
    };
    let req = KafkaRequest {
        api_key: 0,
        api_name: "Produce".into(),
        api_version: 9,
        correlation_id: i as i32,
        client_id: "orders-producer".into(),
        topics: vec![topic()],
        body_decoded: true,
        body_size: 2800,
        ..Default::default()
    };
    let resp = KafkaResponse {
        correlation_id: i as i32,
        topics: vec![topic()],
        api_name: "Produce".into(),
        body_decoded: true,
        ..Default::default()
    };
    base(
        i,
        proto::Protocol::Kafka,
        request::Kind::Kafka(Box::new(req)),
        response::Kind::Kafka(Box::new(resp)),
    )
}

fn amqp(i: u64) -> Entry {
    let method = AmqpMethod {
        channel: 1,
        class: "basic".into(),
        method: "basic.publish".into(),
        exchange: "orders".into(),
        routing_key: "order.created".into(),
        path: "orders/order.created".into(),
        properties: vec![
            header("content-type", "application/json"),
            header("delivery-mode", "2"),
        ],
        body: body(&[b'{'; 120]),
        arguments: vec![header("mandatory", "false")],
        sender: "client".into(),
        delivery_tag: i,
        ..Default::default()
    };
    let ack = AmqpMethod {
        channel: 1,
        class: "basic".into(),
        method: "basic.ack".into(),
        sender: "server".into(),
        ..Default::default()
    };
    base(
        i,
        proto::Protocol::Amqp,
        request::Kind::Amqp(Box::new(method)),
        response::Kind::Amqp(Box::new(ack)),
    )
}

fn postgres(i: u64) -> Entry {
    let req = PostgresRequest {
        kind: "extended".into(),
        verb: "SELECT".into(),
        sql: "SELECT id, name, price FROM items WHERE category = $1 LIMIT 20".into(),
        statement: "s1".into(),
        parameters: vec![PostgresValue {
            text: Some("shoes".into()),
        }],
        parameter_count: 1,
        ..Default::default()
    };
    let row = |n: u64| PostgresRow {
        values: vec![
            PostgresValue {
                text: Some(n.to_string()),
            },
            PostgresValue {
                text: Some(format!("item {n}")),
            },
            PostgresValue { text: None },
        ],
    };
    let resp = PostgresResponse {
        results: vec![PostgresResult {
            command_tag: "SELECT 3".into(),
            row_count: 3,
            columns: vec!["id".into(), "name".into(), "price".into()],
            rows: (i..i + 3).map(row).collect(),
            ..Default::default()
        }],
        transaction_status: "idle".into(),
        ..Default::default()
    };
    base(
        i,
        proto::Protocol::Postgres,
        request::Kind::Postgres(Box::new(req)),
        response::Kind::Postgres(Box::new(resp)),
    )
}

fn websocket(i: u64) -> Entry {
    let message = |direction: &str| WebSocketMessage {
        opcode: "text".into(),
        direction: direction.into(),
        payload: format!(r#"{{"type":"tick","n":{i}}}"#).into_bytes(),
        payload_size: 24,
        upgrade_entry: "000000000000abcd-0".into(),
        fragments: 1,
        path: "/live".into(),
        ..Default::default()
    };
    base(
        i,
        proto::Protocol::Websocket,
        request::Kind::Websocket(Box::new(message("client"))),
        response::Kind::Websocket(Box::new(message("server"))),
    )
}

fn graphql(i: u64) -> Entry {
    let Some(request::Kind::Http(http_req)) = http(i).request.and_then(|r| r.kind) else {
        unreachable!()
    };
    let Some(response::Kind::Http(http_resp)) = http(i).response.and_then(|r| r.kind) else {
        unreachable!()
    };
    let req = GraphqlRequest {
        operation_type: "query".into(),
        operation_name: "Items".into(),
        query: "query Items($c: String!) { items(category: $c) { id name price } }".into(),
        variables: Some(r#"{"c":"shoes"}"#.into()),
        http: Some(*http_req),
        ..Default::default()
    };
    let resp = GraphqlResponse {
        http: Some(*http_resp),
        has_data: true,
        json: true,
        ..Default::default()
    };
    base(
        i,
        proto::Protocol::Graphql,
        request::Kind::Graphql(Box::new(req)),
        response::Kind::Graphql(Box::new(resp)),
    )
}

fn tcp(i: u64) -> Entry {
    let side = |ended: &str| StreamSide {
        bytes: 1000 + i,
        packets: 4,
        ended: ended.into(),
    };
    base(
        i,
        proto::Protocol::Tcp,
        request::Kind::Stream(Box::new(side(""))),
        response::Kind::Stream(Box::new(side("fin"))),
    )
}

/// Builds the entry with a given index.
type Make = fn(u64) -> Entry;

/// Inserts `n` entries (decoded from their wire form, as ingest gets them)
/// and returns what the store counted, the chunk bytes and the requested
/// bytes they really hold.
fn measure(make: Make, n: u64) -> (u64, i64, i64) {
    let wire: Vec<Vec<u8>> = (0..n).map(|i| make(i).encode_to_vec()).collect();
    let mut store = Store::open(StoreConfig {
        memory_budget: u64::MAX,
        disk: None,
    })
    .unwrap();
    let (chunks0, requested0) = (
        CHUNKS.load(Ordering::Relaxed),
        REQUESTED.load(Ordering::Relaxed),
    );
    for batch in wire.chunks(100) {
        let entries: Vec<Entry> = batch
            .iter()
            .map(|b| Entry::decode(b.as_slice()).unwrap())
            .collect();
        store.insert_batch(entries).unwrap();
    }
    let counted = store.stats().memory_bytes;
    let held = (
        CHUNKS.load(Ordering::Relaxed) - chunks0,
        REQUESTED.load(Ordering::Relaxed) - requested0,
    );
    drop(store);
    (counted, held.0, held.1)
}

#[test]
fn memory_accounting_matches_the_allocator() {
    let kinds: [(&str, Make); 10] = [
        ("http", http),
        ("dns", dns),
        ("redis", redis),
        ("grpc", grpc),
        ("kafka", kafka),
        ("amqp", amqp),
        ("postgres", postgres),
        ("websocket", websocket),
        ("graphql", graphql),
        ("tcp", tcp),
    ];
    let n = 4000;
    for (name, make) in kinds {
        let (counted, chunks, requested) = measure(make, n);
        let error = counted as f64 / chunks as f64 - 1.0;
        println!(
            "{name:>9}: counted {:>5} B/entry, malloc chunks {:>5} B/entry ({:+.2}%), requested {:>5} B/entry",
            counted / n,
            chunks / n as i64,
            100.0 * error,
            requested / n as i64,
        );
        assert!(
            error.abs() < 0.02,
            "{name}: counted {counted} bytes, the heap holds {chunks} ({:+.2}%)",
            100.0 * error
        );
    }
}
