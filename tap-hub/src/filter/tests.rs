//! The filter language against a small set of entries, one per protocol.

use super::*;
use proto::v1::{
    DnsQuestion, DnsRequest, DnsResponse, Endpoint, GrpcRequest, GrpcResponse, Header, HttpRequest,
    HttpResponse, PostgresError, PostgresRequest, PostgresResponse, Protocol, RedisRequest,
    RedisResponse, Request, Response, StreamSide, request, response,
};
use tap_dissect::GenericFields;

/// 2026-11-20T19:36:50Z
const T0: u64 = 1_795_203_410_000_000_000;
const S: u64 = 1_000_000_000;
/// The queries' `now()`: a minute after the first entry.
const NOW: u64 = T0 + 60 * S;

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

fn endpoint(
    ip: &str,
    port: u32,
    pod: Option<&str>,
    ns: Option<&str>,
    svc: Option<&str>,
) -> Option<Endpoint> {
    Some(Endpoint {
        ip: ip.into(),
        port,
        pod: pod.map(Into::into),
        namespace: ns.map(Into::into),
        service: svc.map(Into::into),
    })
}

fn req(kind: request::Kind) -> Option<Request> {
    Some(Request { kind: Some(kind) })
}

fn resp(kind: response::Kind) -> Option<Response> {
    Some(Response { kind: Some(kind) })
}

/// e0 HTTP/1, e1 HTTP/2, e2 gRPC, e3 Redis (no endpoints), e4 DNS,
/// e5 PostgreSQL, e6 a TCP flow an hour old.
fn entries() -> Vec<Entry> {
    vec![
        Entry {
            id: "e0".into(),
            ts_ns: T0,
            node: "node-1".into(),
            protocol: Protocol::Http as i32,
            src: endpoint("10.1.0.5", 51234, Some("frontend-7c9f"), Some("shop"), None),
            dst: endpoint(
                "10.1.1.7",
                8080,
                Some("catalogue-5d2a"),
                Some("shop"),
                Some("catalogue"),
            ),
            elapsed_ns: Some(150_000_000),
            request_size: 312,
            response_size: 2048,
            flow_id: 0xab,
            request: req(request::Kind::Http(
                HttpRequest {
                    method: "GET".into(),
                    path: "/api/users?id=1".into(),
                    version: "1.1".into(),
                    headers: vec![
                        header("Host", "catalogue"),
                        header("Content-Type", "application/json"),
                        header("Accept", "a"),
                        header("accept", "b"),
                    ],
                    ..Default::default()
                }
                .into(),
            )),
            response: resp(response::Kind::Http(
                HttpResponse {
                    status: 503,
                    reason: "Service Unavailable".into(),
                    version: "1.1".into(),
                    headers: vec![header("content-type", "text/html")],
                    body: Some(proto::v1::Body {
                        data: b"oops".to_vec(),
                        wire_size: 4,
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .into(),
            )),
            redacted: vec!["request.headers.authorization".into()],
            flags: vec!["gap".into()],
            ..Default::default()
        },
        Entry {
            id: "e1".into(),
            ts_ns: T0 + S,
            node: "node-2".into(),
            protocol: Protocol::Http2 as i32,
            src: endpoint("10.1.0.9", 40000, None, None, None),
            dst: endpoint("10.1.2.3", 443, Some("pay-1"), Some("pay"), None),
            tls: true,
            elapsed_ns: Some(2_000_000),
            request_size: 500,
            response_size: 100,
            flow_id: 0x1234,
            stream_id: 3,
            request: req(request::Kind::Http(
                HttpRequest {
                    method: "POST".into(),
                    path: "/api/orders".into(),
                    version: "2".into(),
                    headers: vec![
                        header("content-type", "application/json; charset=utf-8"),
                        header("user-agent", "curl/8.5"),
                    ],
                    ..Default::default()
                }
                .into(),
            )),
            response: resp(response::Kind::Http(
                HttpResponse {
                    status: 201,
                    version: "2".into(),
                    headers: vec![header("server", "envoy")],
                    ..Default::default()
                }
                .into(),
            )),
            tunnel: Some(Box::new(proto::v1::Tunnel {
                kind: "vxlan".into(),
                src: "192.168.0.1".into(),
                dst: "192.168.0.2".into(),
                vni: Some(42),
            })),
            ..Default::default()
        },
        Entry {
            id: "e2".into(),
            ts_ns: T0 + 2 * S,
            node: "node-1".into(),
            protocol: Protocol::Grpc as i32,
            src: endpoint("10.1.0.7", 50000, Some("cart-1"), Some("shop"), None),
            dst: endpoint(
                "10.1.2.4",
                9090,
                Some("pay-2"),
                Some("pay"),
                Some("payments"),
            ),
            elapsed_ns: Some(50_000_000),
            stream_id: 1,
            request: req(request::Kind::Grpc(
                GrpcRequest {
                    service: "shop.Cart".into(),
                    method: "Add".into(),
                    path: "/shop.Cart/Add".into(),
                    authority: "cart:9090".into(),
                    headers: vec![
                        header("x-request-id", "42"),
                        header("content-type", "application/grpc"),
                    ],
                    ..Default::default()
                }
                .into(),
            )),
            response: resp(response::Kind::Grpc(
                GrpcResponse {
                    status: Some(14),
                    status_name: "UNAVAILABLE".into(),
                    message: "upstream down".into(),
                    http_status: 200,
                    headers: vec![header("content-type", "application/grpc")],
                    ..Default::default()
                }
                .into(),
            )),
            flags: vec!["malformed:frame".into()],
            ..Default::default()
        },
        Entry {
            id: "e3".into(),
            ts_ns: T0 + 3 * S,
            node: "node-2".into(),
            protocol: Protocol::Redis as i32,
            elapsed_ns: Some(100_000),
            request_size: 30,
            response_size: 10,
            request: req(request::Kind::Redis(
                RedisRequest {
                    command: "GET".into(),
                    key: "session:1".into(),
                    args: vec![b"session:1".to_vec()],
                    arg_count: 1,
                    ..Default::default()
                }
                .into(),
            )),
            response: resp(response::Kind::Redis(
                RedisResponse {
                    r#type: "bulk".into(),
                    value: b"v".to_vec(),
                    ..Default::default()
                }
                .into(),
            )),
            ..Default::default()
        },
        Entry {
            id: "e4".into(),
            ts_ns: T0 + 4 * S,
            node: "node-1".into(),
            protocol: Protocol::Dns as i32,
            src: endpoint("10.1.0.5", 5353, Some("frontend-7c9f"), Some("shop"), None),
            dst: endpoint(
                "10.96.0.10",
                53,
                None,
                Some("kube-system"),
                Some("kube-dns"),
            ),
            elapsed_ns: Some(300_000),
            request: req(request::Kind::Dns(
                DnsRequest {
                    id: 7,
                    opcode: "QUERY".into(),
                    name: "example.com".into(),
                    qtype: "A".into(),
                    qclass: "IN".into(),
                    questions: vec![DnsQuestion {
                        name: "example.com".into(),
                        qtype: "A".into(),
                        qclass: "IN".into(),
                    }],
                    transport: "udp".into(),
                    ..Default::default()
                }
                .into(),
            )),
            response: resp(response::Kind::Dns(
                DnsResponse {
                    id: 7,
                    rcode: 3,
                    rcode_name: "NXDOMAIN".into(),
                    transport: "udp".into(),
                    ..Default::default()
                }
                .into(),
            )),
            ..Default::default()
        },
        Entry {
            id: "e5".into(),
            ts_ns: T0 + 5 * S,
            node: "node-3".into(),
            protocol: Protocol::Postgres as i32,
            src: endpoint("10.1.0.8", 41000, Some("orders-1"), Some("shop"), None),
            dst: endpoint("10.1.3.3", 5432, Some("db-0"), Some("data"), Some("db")),
            elapsed_ns: Some(1_000_000),
            request: req(request::Kind::Postgres(
                PostgresRequest {
                    kind: "simple".into(),
                    verb: "SELECT".into(),
                    sql: "SELECT * FROM users".into(),
                    ..Default::default()
                }
                .into(),
            )),
            response: resp(response::Kind::Postgres(
                PostgresResponse {
                    error: Some(PostgresError {
                        severity: "ERROR".into(),
                        code: "42P01".into(),
                        message: "relation \"users\" does not exist".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .into(),
            )),
            ..Default::default()
        },
        Entry {
            id: "e6".into(),
            ts_ns: T0 - 3600 * S,
            node: "node-3".into(),
            protocol: Protocol::Tcp as i32,
            src: endpoint("10.1.0.1", 1234, None, None, None),
            dst: endpoint("10.1.9.9", 6000, None, None, None),
            request: req(request::Kind::Stream(
                StreamSide {
                    bytes: 100,
                    packets: 2,
                    ..Default::default()
                }
                .into(),
            )),
            response: resp(response::Kind::Stream(
                StreamSide {
                    bytes: 200,
                    packets: 3,
                    ended: "fin".into(),
                }
                .into(),
            )),
            flags: vec!["midstream".into(), "no_response".into()],
            ..Default::default()
        },
    ]
}

/// A filter and what it should do: the entries it matches (`x` for each of
/// e0…e6 that matches, `.` otherwise), or the column and a word of its error.
enum Want {
    Matches(&'static str),
    Error(usize, &'static str),
}

use Want::{Error as Err_, Matches as M};

#[rustfmt::skip]
fn cases() -> Vec<(String, Want)> {
    let mut cases: Vec<(String, Want)> = [
        // The issue's examples.
        (r#"protocol == "http" && response.status >= 500"#, M("x......")),
        (r#"request.path.startsWith("/api")"#, M("xx.....")),
        (r#"src.pod.matches("^front")"#, M("x...x..")),
        (r#"dst.namespace in ["shop", "pay"]"#, M("xxx....")),
        (r#"request.headers["content-type"].contains("json")"#, M("xx.....")),
        ("elapsed_us > 100000", M("x......")),
        (r#"ts > now() - duration("5m")"#, M("xxxxxx.")),
        // Protocol shorthands and word operators.
        ("http", M("x......")),
        ("http2", M(".x.....")),
        ("grpc", M("..x....")),
        ("redis", M("...x...")),
        ("dns", M("....x..")),
        ("postgres", M(".....x.")),
        ("tcp", M("......x")),
        ("udp || kafka || amqp || websocket || graphql", M(".......")),
        ("http or http2", M("xx.....")),
        ("grpc and response.status == 14", M("..x....")),
        ("not http", M(".xxxxxx")),
        // The overlay hop, from the JSON form.
        (r#"tunnel.kind == "vxlan""#, M(".x.....")),
        ("tunnel.vni == 42 && tunnel.dst == \"192.168.0.2\"", M(".x.....")),
        ("tunnel == null", M("x.xxxxx")),
        ("not(http)", M(".xxxxxx")),
        ("http and not tls", M("x......")),
        (r#""and" == "and" and "or" != "not""#, M("xxxxxxx")),
        ("http\n&& response.status == 503", M("x......")),
        ("http // only http", M("x......")),
        ("response.status >= 500 or elapsed_us > 40000 and grpc", M("x.x....")),
        // Absent fields.
        (r#"not (src.pod == "frontend-7c9f")"#, M(".xxx.xx")),
        (r#"src.pod != "frontend-7c9f""#, M("..x..x.")),
        ("src.pod == null", M(".x.x..x")),
        ("src.pod != null", M("x.x.xx.")),
        ("has(src.pod)", M("x.x.xx.")),
        ("!has(src.pod)", M(".x.x..x")),
        ("src == null", M("...x...")),
        ("response == null", M(".......")),
        ("response.status == 0", M("...x...")),
        ("response.status != 0", M("xxx.xx.")),
        ("!(response.status == 0)", M("xxx.xxx")),
        ("elapsed_us == null", M("......x")),
        ("elapsed_us >= 0", M("xxxxxx.")),
        ("src.namespace == dst.namespace", M("x......")),
        ("src.namespace != dst.namespace", M("..x.xx.")),
        ("request.nonexistent == 1", M(".......")),
        ("request.nonexistent != 1", M(".......")),
        ("!(request.nonexistent == 1)", M("xxxxxxx")),
        ("request.nonexistent", M(".......")),
        ("!request.nonexistent", M("xxxxxxx")),
        ("request.body == null", M("xxxxxxx")),
        ("has(response.body)", M("x......")),
        ("response.status + 1 > 0", M("xxxxxx.")),
        ("size(request.path) >= 0", M("xxxxxx.")),
        // Endpoints and scalar fields.
        (r#"dst.service == "catalogue""#, M("x......")),
        (r#"dst.service in ["kube-dns", "db"]"#, M("....xx.")),
        (r#"src.ip == "10.1.0.5""#, M("x...x..")),
        ("dst.port == 53", M("....x..")),
        ("dst.port in [8080, 443]", M("xx.....")),
        ("src.port > 50000", M("x......")),
        (r#"id == "e3""#, M("...x...")),
        (r#"node == "node-1""#, M("x.x.x..")),
        (r#"node.matches("node-[23]")"#, M(".x.x.xx")),
        (r#"matches(node, "3$")"#, M(".....xx")),
        (r#"flow_id == "00000000000000ab""#, M("x......")),
        (r#"flow_id.endsWith("1234")"#, M(".x.....")),
        ("stream_id == 3", M(".x.....")),
        ("tls", M(".x.....")),
        ("!tls", M("x.xxxxx")),
        ("tls == false", M("x.xxxxx")),
        ("request_size + response_size > 2000", M("x......")),
        // Protocol names.
        (r#"protocol in ["redis", "dns"]"#, M("...xx..")),
        (r#"protocol != "tcp""#, M("xxxxxx.")),
        (r#""grpc" == protocol"#, M("..x....")),
        (r#"protocol.startsWith("http")"#, M("xx.....")),
        (r#"protocol == "unknown""#, M(".......")),
        // Numbers.
        ("elapsed_us < 1000", M("...xx..")),
        ("elapsed_us <= 1000", M("...xxx.")),
        ("elapsed_us > 0u", M("xxxxxx.")),
        ("elapsed_us > 1.5e5 - 1.0", M("x......")),
        ("elapsed_us / 1000 >= 50", M("x.x....")),
        ("elapsed_us * 2 > 200000", M("x......")),
        ("elapsed_us % 2 == 0", M("xxxxxx.")),
        ("-elapsed_us < -100000", M("x......")),
        ("elapsed_us - 100 == 0", M("...x...")),
        ("uint(elapsed_us) == 100u", M("...x...")),
        ("double(elapsed_us) / 1000.0 > 100.0", M("x......")),
        ("elapsed_us == 100.0", M("...x...")),
        ("0x10 == 16 && 1u == 1", M("xxxxxxx")),
        ("elapsed_us / 0 == 0", M(".......")),
        // Generic request and response fields.
        ("response.status >= 400", M("x......")),
        (r#"request.method == "GET""#, M("x..x...")),
        (r#"request.method in ["POST", "SELECT"]"#, M(".x...x.")),
        (r#"request.method == "Add""#, M("..x....")),
        (r#"request.path == "example.com""#, M("....x..")),
        (r#"request.path.endsWith(".com")"#, M("....x..")),
        (r#"request.path.contains("users")"#, M("x....x.")),
        (r#"request.path.matches("^/api/(users|orders)")"#, M("xx.....")),
        ("size(request.path) == 9", M("...x...")),
        // Headers.
        (r#"request.headers["CONTENT-TYPE"] == "application/json""#, M("x......")),
        (r#"request.headers.host == "catalogue""#, M("x......")),
        (r#"request.headers["accept"] == "a, b""#, M("x......")),
        (r#""user-agent" in request.headers"#, M(".x.....")),
        (r#""User-Agent" in request.headers"#, M(".x.....")),
        ("has(request.headers.host)", M("x......")),
        (r#"request.headers["x-request-id"] == "42""#, M("..x....")),
        (r#"int(request.headers["x-request-id"]) == 42"#, M("..x....")),
        (r#"response.headers["content-type"].startsWith("application/grpc")"#, M("..x....")),
        (r#"response.headers["server"] == "envoy""#, M(".x.....")),
        ("size(request.headers) == 3", M("x......")),
        (r#"request.headers.exists(h, h == "user-agent")"#, M(".x.....")),
        (r#"response.headers.exists(h, h == "server")"#, M(".x.....")),
        (r#"request.headers["content-type"] == "application/json" || request.headers["content-type"] == "application/grpc""#, M("x.x....")),
        (r#"request.headers["x-none"] != "a""#, M(".......")),
        // Lists.
        (r#""gap" in flags"#, M("x......")),
        (r#"flags.exists(f, f.startsWith("malformed"))"#, M("..x....")),
        (r#"flags.all(f, f != "gap")"#, M(".xxxxxx")),
        (r#"flags.exists_one(f, f.endsWith("response"))"#, M("......x")),
        (r#"flags.existsOne(f, f.contains("m"))"#, M("..x...x")),
        (r#"flags.exists_one(f, f.contains("s"))"#, M(".......")),
        ("size(flags) == 0", M(".x.xxx.")),
        ("flags.size() >= 2", M("......x")),
        ("flags == []", M(".x.xxx.")),
        (r#"flags[0] == "gap""#, M("x......")),
        (r#""no_response" in flags || elapsed_us > 100000"#, M("x.....x")),
        (r#"redacted.exists(r, r.contains("authorization"))"#, M("x......")),
        (r#"[src.pod, dst.pod].exists(p, p == "db-0")"#, M(".....x.")),
        (r#"dst.pod in [src.pod, "pay-1"]"#, M(".x.....")),
        (r#"flags.exists(f, flags.exists(g, f != g))"#, M("......x")),
        (r#"[1, 2, 3].all(n, n > 0) && "b" in ["a", "b"]"#, M("xxxxxxx")),
        // The JSON form's protocol-specific fields.
        (r#"request.command == "GET""#, M("...x...")),
        (r#"response.rcode_name == "NXDOMAIN""#, M("....x..")),
        (r#"dns && request.qtype == "A""#, M("....x..")),
        (r#"response.sqlstate == "42P01""#, M(".....x.")),
        ("has(response.error)", M(".....x.")),
        (r#"response.status_name == "UNAVAILABLE""#, M("..x....")),
        (r#"request.service == "shop.Cart""#, M("..x....")),
        (r#"request.version == "2""#, M(".x.....")),
        (r#"response.reason.contains("Unavailable")"#, M("x......")),
        (r#"response.body == "oops""#, M("x......")),
        ("request.bytes > 50", M("......x")),
        (r#"response.ended == "fin""#, M("......x")),
        (r#"request.questions.exists(q, q.name == "example.com")"#, M("....x..")),
        ("size(request.questions) == 1", M("....x..")),
        (r#"request.questions[0].type == "A""#, M("....x..")),
        (r#"request.questions[5].name == "x""#, M(".......")),
        (r#"request.topics[0].name == "t""#, M(".......")),
        (r#"request.command > 3"#, M(".......")),
        (r#""session:1" in request.args"#, M("...x...")),
        (r#"request["command"] == "GET""#, M("...x...")),
        // Time.
        (r#"ts >= timestamp("2026-11-20T19:36:52Z")"#, M("..xxxx.")),
        (r#"ts < "2026-11-20T19:36:50Z""#, M("......x")),
        (r#"ts - duration("1h") < timestamp("2026-11-20T18:00:00Z")"#, M("......x")),
        (r#"now() - ts > duration("30m")"#, M("......x")),
        (r#"now() - ts < duration("61s") && http"#, M("x......")),
        (r#"duration("1h30m") == duration("90m")"#, M("xxxxxxx")),
        (r#"string(ts) == "2026-11-20T19:36:50Z""#, M("x......")),
        (r#"timestamp(string(ts)) == ts"#, M("xxxxxxx")),
        // Constants, conditionals, conversions.
        ("true", M("xxxxxxx")),
        ("false", M(".......")),
        ("1 < 2", M("xxxxxxx")),
        (r#""a" + "b" == "ab""#, M("xxxxxxx")),
        (r#"(http || http2) && request.method == "POST""#, M(".x.....")),
        ("http ? response.status == 503 : false", M("x......")),
        (r#"(dns ? request.path : "x") == "example.com""#, M("....x..")),
        (r#"string(dst.port) == "53""#, M("....x..")),
        (r#""catalogue-5d2a".matches(dst.pod)"#, M("x......")),
        // Errors.
        ("foo == 1", Err_(1, "unknown field")),
        ("android", Err_(1, "unknown field")),
        (r#"elapsed_us > "x""#, Err_(14, "compare")),
        ("protocol >= 3", Err_(13, "compare")),
        (r#"http && src.foo == "x""#, Err_(13, "unknown field")),
        (r#"request.path.startswith("/")"#, Err_(14, "unknown function")),
        (r#"request.path.startsWith("/", 2)"#, Err_(14, "argument")),
        (r#"src.pod.matches("(")"#, Err_(17, "regular expression")),
        (r#"duration("5x") < now()"#, Err_(10, "duration")),
        (r#"timestamp("yesterday") < ts"#, Err_(11, "timestamp")),
        (r#"ts > "yesterday""#, Err_(6, "timestamp")),
        (r#"protocol == "htpp""#, Err_(13, "protocol")),
        (r#"protocol in ["http", "htpp"]"#, Err_(22, "protocol")),
        ("http &&", Err_(8, "end")),
        ("http and", Err_(9, "end")),
        ("http and and http", Err_(10, "unexpected 'and'")),
        ("http or or http", Err_(9, "unexpected 'or'")),
        ("elapsed_us", Err_(1, "condition")),
        ("elapsed_us && http", Err_(1, "condition")),
        ("http || src.pod", Err_(9, "condition")),
        ("size(tls) > 0", Err_(6, "size")),
        (r#""x" in tls"#, Err_(8, "in")),
        ("3 in flags", Err_(1, "list")),
        ("ts > 5", Err_(6, "compare")),
        (r#"ts - "x" > now()"#, Err_(4, "apply")),
        ("src.pod.foo == 1", Err_(9, "select")),
        ("now(1) > ts", Err_(1, "argument")),
        ("request.method ==", Err_(18, "end")),
        ("flags.map(f, f)", Err_(7, "not supported")),
        (r#"{"a": 1}["a"] == 1"#, Err_(1, "map")),
        (r#"b"x" == "x""#, Err_(1, "byte")),
        (r#""é" == é"#, Err_(8, "character")),
        (r#""éé" == foo"#, Err_(9, "unknown field")),
        ("http &&\n  foo", Err_(11, "unknown field")),
        ("has(1)", Err_(5, "field")),
        ("flags.exists(1, true)", Err_(14, "variable")),
        ("flags.exists(f, f)", Err_(17, "condition")),
        (r#"flags < ["a"]"#, Err_(1, "order")),
        ("foo(1)", Err_(1, "unknown function")),
        ("ts.now() > ts", Err_(4, "not a method")),
        (r#"contains("a")"#, Err_(1, "on a value")),
        (r#"request.path + 1 == "x""#, Err_(14, "apply")),
        ("src.pod == 3", Err_(12, "compare")),
        (r#"response.status == "500""#, Err_(20, "compare")),
        (r#"dst.port in ["80"]"#, Err_(1, "look for")),
        (r#""x" in request.headers["a"]"#, Err_(8, "needs a list")),
        (r#"request.headers[1] == "x""#, Err_(17, "index")),
        ("tls[0]", Err_(4, "index")),
        (r#"http ? 1 : "x""#, Err_(12, "branches")),
        (r#"-src.pod == "x""#, Err_(1, "negate")),
        ("request.path.matches(1)", Err_(22, "strings")),
        ("a ? b", Err_(6, "end")),
        ("http )", Err_(6, "syntax")),
        ("(http", Err_(6, "missing ')' at end of filter")),
        ("x.y{a: 1}", Err_(1, "message literals")),
        ("src.pod.?x", Err_(8, "syntax")),
        (r#"src.pod.matches("a{5000}{5000}")"#, Err_(17, "regular expression")),
    ]
    .into_iter()
    .map(|(f, w)| (f.to_string(), w))
    .collect();
    cases.push((
        "(".repeat(MAX_DEPTH + 1) + "http" + &")".repeat(MAX_DEPTH + 1),
        Err_(MAX_DEPTH + 1, "nested"),
    ));
    cases.push((vec!["1"; 80].join(" + ") + " > 0", Err_(1, "nested")));
    cases.push(("http || ".repeat(600) + "http", Err_(4097, "too long")));
    cases
}

#[test]
fn the_table_of_filters() {
    let entries = entries();
    let cases = cases();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (src, want) in &cases {
        match (Filter::parse(src), want) {
            (Ok(f), Want::Matches(expected)) => {
                let got: String = entries
                    .iter()
                    .map(|e| if f.matches(e, NOW) { 'x' } else { '.' })
                    .collect();
                if got != *expected {
                    failures.push(format!("{src:?}: matched {got}, want {expected}"));
                }
                let general: String = entries
                    .iter()
                    .map(|e| {
                        if f.matches_in_general(e, NOW) {
                            'x'
                        } else {
                            '.'
                        }
                    })
                    .collect();
                if general != got {
                    failures.push(format!(
                        "{src:?}: fast form matched {got}, general {general}"
                    ));
                }
            }
            (Err(e), Want::Error(column, word)) => {
                if e.column != *column || !e.message.contains(word) {
                    failures.push(format!(
                        "{src:?}: error {e}, want column {column} with {word:?}"
                    ));
                }
            }
            (Ok(_), Want::Error(column, word)) => failures.push(format!(
                "{src:?}: parsed, want an error at column {column} with {word:?}"
            )),
            (Err(e), Want::Matches(_)) => failures.push(format!("{src:?}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn empty_and_true_match_everything() {
    for src in ["", "  \n\t", "true", "(true)"] {
        let f = Filter::parse(src).unwrap();
        assert!(f.is_all(), "{src:?}");
        assert_eq!(f.source(), src);
        assert!(f.matches(&Entry::default(), 0));
    }
    assert!(!Filter::parse("http").unwrap().is_all());
    assert!(Filter::default().is_all());
}

#[test]
fn error_display_names_the_column() {
    let e = Filter::parse("http && foo == 1").unwrap_err();
    assert_eq!(e.column, 9);
    let text = e.to_string();
    assert!(
        text.starts_with("column 9: unknown field 'foo' (known: id, ts, node, protocol, src, dst,"),
        "{text}"
    );
}

#[test]
fn min_ts_bounds_the_scan() {
    let five_min = 300 * S;
    let cases: [(&str, Option<u64>); 9] = [
        (r#"ts > now() - duration("5m")"#, Some(NOW - five_min + 1)),
        (
            r#"ts >= now() - duration("5m") && http"#,
            Some(NOW - five_min),
        ),
        (r#"now() - duration("5m") <= ts"#, Some(NOW - five_min)),
        (
            r#"http && (ts > "2026-11-20T19:36:50Z" || ts >= now())"#,
            Some(T0 + 1),
        ),
        (r#"ts > now() - duration("5m") || http"#, None),
        (r#"ts < now()"#, None),
        ("http", None),
        ("", None),
        (
            r#"ts > now() - duration("5m") && ts > now() - duration("1m")"#,
            Some(NOW - 60 * S + 1),
        ),
    ];
    for (src, want) in cases {
        assert_eq!(Filter::parse(src).unwrap().min_ts_ns(NOW), want, "{src}");
    }
    // Every entry the bound excludes is one the filter rejects.
    let f = Filter::parse(r#"ts > now() - duration("5m")"#).unwrap();
    let bound = f.min_ts_ns(NOW).unwrap();
    for e in entries() {
        if e.ts_ns < bound {
            assert!(!f.matches(&e, NOW));
        }
    }
}

#[test]
fn filters_are_shared_across_threads() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    shared::<Filter>();
    let f = Filter::parse("http").unwrap();
    let g = f.clone();
    let matched = std::thread::spawn(move || g.matches(&entries()[0], NOW))
        .join()
        .unwrap();
    assert!(matched);
    assert_eq!("http".parse::<Filter>().unwrap().source(), f.source());
}

#[test]
fn deep_and_long_filters_are_errors_not_crashes() {
    // These would overflow a stack if nothing bounded them.
    let long_chain = vec!["1"; 2000].join("+");
    let unary = "!".repeat(3001) + "http";
    let minus = "-".repeat(3000) + "elapsed_us > 0";
    let ternary = "http ? http : ".repeat(290) + "http";
    let selects = "request".to_string() + &".a".repeat(2000);
    for src in [long_chain, unary, minus, ternary, selects] {
        let _ = Filter::parse(&src);
    }
    let e =
        Filter::parse(&format!("request.x.exists(f, f{} == 1)", ".a".repeat(1000))).unwrap_err();
    assert!(e.message.contains("nested"), "{e}");
    let e = Filter::parse(&"[".repeat(5000)).unwrap_err();
    assert!(e.message.contains("too long"), "{e}");
}

/// Prints the cost per entry of a few filters over a million entries; run it
/// with `cargo xtask bench --only micro`.
#[test]
#[ignore = "a measurement: cargo xtask bench --only micro"]
fn time_per_entry() {
    let samples = entries();
    let n = 1_000_000;
    let store: Vec<Entry> = (0..n).map(|i| samples[i % samples.len()].clone()).collect();
    let report = |what: &str, elapsed: std::time::Duration, matched: usize| {
        let ns = elapsed.as_nanos() as f64 / n as f64;
        println!("{ns:>8.1} ns/entry  {matched:>7} matched  {what}");
    };
    // The reference: the same condition written in Rust, which costs mostly
    // the memory traffic of reading a million entries.
    let start = std::time::Instant::now();
    let matched = store
        .iter()
        .filter(|e| e.protocol == Protocol::Http as i32 && e.status().is_some_and(|s| s >= 500))
        .count();
    report(
        "(reference: the first filter in Rust)",
        start.elapsed(),
        matched,
    );
    println!("size of an Entry: {} bytes", std::mem::size_of::<Entry>());
    for src in [
        r#"protocol == "http" && response.status >= 500"#,
        "true",
        "elapsed_us > 0",
        r#"ts > now() - duration("5m") && src.pod.matches("^front")"#,
        r#"request.headers["content-type"].contains("json")"#,
        r#"dst.namespace in ["shop", "pay"] && !("gap" in flags)"#,
        r#"request.command == "GET""#,
        r#"redis && request.command == "GET""#,
    ] {
        let f = Filter::parse(src).unwrap();
        let start = std::time::Instant::now();
        let matched = store.iter().filter(|e| f.matches(e, NOW)).count();
        report(src, start.elapsed(), matched);
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of the language, so that random filters often get past the parser.
    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("http".to_string()),
            Just("dst.namespace".to_string()),
            Just("\"shop\"".to_string()),
            Just("[\"shop\", \"a\"]".to_string()),
            Just("response.status".to_string()),
            Just("500".to_string()),
            Just(".startsWith(\"/a\")".to_string()),
            Just("request.path".to_string()),
            Just("\"gap\" in flags".to_string()),
            Just("src.pod".to_string()),
            Just("request.headers[\"a\"]".to_string()),
            Just("request.x.y".to_string()),
            Just("flags".to_string()),
            Just("elapsed_us".to_string()),
            Just("ts".to_string()),
            Just("now()".to_string()),
            Just("duration(\"1s\")".to_string()),
            Just(" && ".to_string()),
            Just(" or ".to_string()),
            Just(" not ".to_string()),
            Just(" == ".to_string()),
            Just(" != ".to_string()),
            Just(" < ".to_string()),
            Just(" + ".to_string()),
            Just(" - ".to_string()),
            Just(" / ".to_string()),
            Just(" in ".to_string()),
            Just(".exists(f, f == 1)".to_string()),
            Just(".matches(\"a\")".to_string()),
            Just(".size()".to_string()),
            Just("(".to_string()),
            Just(")".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("\"".to_string()),
            Just("0".to_string()),
            Just("-9223372036854775808".to_string()),
            Just("18446744073709551615u".to_string()),
            Just("null".to_string()),
            Just(" ? ".to_string()),
            Just(" : ".to_string()),
            "[a-z_.]{1,8}",
            "\\PC{1,3}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn parse_never_panics(src in "\\PC{0,64}") {
            let _ = Filter::parse(&src);
        }

        #[test]
        fn evaluation_never_panics(parts in proptest::collection::vec(token(), 1..12)) {
            let src = parts.concat();
            if let Ok(f) = Filter::parse(&src) {
                for e in entries().iter().chain([&Entry::default()]) {
                    for now in [NOW, 0, u64::MAX] {
                        prop_assert_eq!(f.matches(e, now), f.matches_in_general(e, now), "{}", src);
                        if f.matches(e, now) {
                            prop_assert!(f.min_ts_ns(now).is_none_or(|b| e.ts_ns >= b), "{}", src);
                        }
                    }
                }
            }
        }
    }
}
