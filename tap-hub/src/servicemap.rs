//! The service map: who calls whom, how often, how well and how fast. The hub
//! feeds it the entries that match the user's filter and time window (it does
//! no filtering itself), and `/api/servicemap` serves the [`ServiceMap`] as
//! JSON for the UI's graph.
//!
//! # Nodes
//!
//! A node is a workload, named by the best identity the entry's endpoint has:
//!
//! 1. its Kubernetes service (`svc:<namespace>/<service>`, kind `service`);
//! 2. else its pod, reduced to the workload when the name has the shape a
//!    Deployment gives its pods (`pod:<namespace>/<workload>`, kind `pod`);
//! 3. else its address (kind `ip`): `ip:<ip>:<port>` for the callee
//!    (`ip:[<ipv6>]:<port>`), but only `ip:<ip>` for the caller, whose port is
//!    ephemeral, so a node per connection would tell nothing.
//!
//! Without a namespace the id is `svc:<service>` or `pod:<workload>`; an entry
//! without an endpoint, or with an empty address, is counted on `ip:unknown`
//! rather than dropped, so edge requests always add up to `entries`.
//!
//! A Deployment's pod is named `<deployment>-<pod-template-hash>-<suffix>`. The
//! hash is a 32-bit number in decimal, each digit spelt with one character of
//! Kubernetes' safe alphabet, so it only ever holds `4-9`, `b`, `c`, `d`, `f`;
//! the suffix is five characters of that whole alphabet
//! (`bcdfghjklmnpqrstvwxz2456789`, no vowels, no `0`, `1`, `3`). A pod name is
//! cut to its workload only when its last two dash-separated parts match exactly
//! that: a hash of 6 to 10 such characters and a 5-character suffix
//! (`frontend-7c9f8d6b5-x2x4q` → `frontend`). The shorter hashes (a number
//! below 100 000, 1 in 43 000 of them) are left alone because two-to-five
//! letter words like `db` fit the alphabet; those pods keep their full name.
//! Other owners' pods are not reduced: a DaemonSet's or Job's
//! `<name>-<suffix>` cannot be told from a hand-named pod like `app-http2`, and
//! a StatefulSet's `<name>-<ordinal>` pods are distinct members on purpose.
//!
//! # Edges
//!
//! An edge is caller (the entry's `src`, the connection's client) → callee
//! (`dst`, the server), one per protocol, with its entries (`requests`), errors,
//! the request and response bytes on the wire, and latency.
//!
//! An entry is an error when (each protocol's rule is `failed` in its folder's
//! `model.rs` in `tap-dissect`; `tap_dissect::failed` asks the right one):
//!
//! - HTTP, HTTP/2: its status is 5xx (4xx is the caller's fault and says
//!   nothing about the callee's health).
//! - GraphQL: its HTTP status is 5xx, or its result has errors and no data (a
//!   failed operation; errors beside data are a partial success).
//! - gRPC: its grpc-status is not 0 (OK), or the call ended without one (reset
//!   or cut off).
//! - DNS: its rcode is not 0 (NOERROR) or 3 (NXDOMAIN): a name that does not
//!   exist is an answer, SERVFAIL, REFUSED, FORMERR … are failures.
//! - Redis: the reply is an error reply. PostgreSQL: an ErrorResponse ended it.
//!   Kafka: the response has a non-zero error code.
//! - AMQP: a reply code (of a connection.close, channel.close or basic.return,
//!   on either side of the entry) other than 200 (reply-success).
//! - WebSocket: a close frame with a code other than 1000 (normal) or 1001
//!   (going away) below 3000; codes 3000 and up belong to libraries and
//!   applications, whose meaning we cannot know.
//! - `tcp`: the connection ended with a reset (`rst`). `udp`: never.
//! - Any protocol that answers every request (HTTP, HTTP/2, gRPC, GraphQL, DNS,
//!   Redis, PostgreSQL, AMQP, Kafka other than Produce): the entry is flagged
//!   `no_response` — unless it is also flagged `gap`, for then the capture lost
//!   bytes and the answer may be what it lost. Kafka's Produce is exempt
//!   because with `acks=0` nobody answers it; the workers already drop the flag
//!   where a protocol expects no answer (AMQP's asynchronous methods,
//!   WebSocket messages, PostgreSQL's CancelRequest). A request still waiting
//!   when the capture ends is flagged `no_response` too and so counts as an
//!   error: the entry does not say why the connection ended.
//!
//! # Latency
//!
//! Over the edge's entries that have an `elapsed_ns` (for `tcp` and `udp`
//! that is the connection's duration), in whole microseconds (rounded down).
//! The percentiles are nearest-rank: of the n values sorted ascending, the
//! p-th percentile is the ⌈p·n/100⌉-th smallest, computed
//! in integers — equivalently, the smallest value v with at least p % of the
//! values ≤ v. `max` is exact. `latency_us` is null when no entry had an
//! elapsed time.
//!
//! Values are kept exactly until the builder holds its sample budget
//! ([`DEFAULT_SAMPLE_BUDGET`], 8 bytes each, across all edges). Past it an edge
//! keeps a uniform random sample (reservoir sampling, algorithm R) of the size
//! it had reached, at least [`MIN_RESERVOIR`], and its percentiles are those
//! of the sample, marked `sampled: true`. Memory is thus bounded by the budget
//! plus [`MIN_RESERVOIR`] values per edge that appeared late, and the edges
//! are bounded by the entries the store holds.

use proto::v1::{Endpoint, Entry, Protocol};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Latency values kept exactly, across all edges, before edges switch to
/// reservoir sampling: 4 Mi values, 32 MiB.
pub const DEFAULT_SAMPLE_BUDGET: usize = 4 << 20;

/// The smallest reservoir an edge samples into once the budget is spent, so
/// an edge that appears late still has meaningful percentiles.
pub const MIN_RESERVOIR: usize = 1024;

/// The map of a set of entries: workloads and who calls whom.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceMap {
    /// Sorted by id.
    pub nodes: Vec<Node>,
    /// Sorted by source, target and protocol.
    pub edges: Vec<Edge>,
    /// Entries the map was built from.
    pub entries: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Service,
    Pod,
    Ip,
}

/// A workload: a service, a pod's workload, or an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// `svc:shop/catalogue`, `pod:shop/frontend`, `ip:10.1.0.5`,
    /// `ip:10.1.1.7:8080`, `ip:[fd00::7]:53`.
    pub id: String,
    /// The service, workload or address alone, for display.
    pub name: String,
    pub namespace: Option<String>,
    pub kind: NodeKind,
    /// Requests the node received and made, over all its edges.
    pub requests_in: u64,
    pub requests_out: u64,
}

/// Caller → callee over one protocol.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    /// The caller's node id.
    pub source: String,
    /// The callee's node id.
    pub target: String,
    /// The protocol's name as in the entry's JSON form; `unknown` for a
    /// number this build does not know.
    pub protocol: String,
    pub requests: u64,
    pub errors: u64,
    /// errors / requests.
    pub error_rate: f64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub latency_us: Option<Latency>,
}

/// Nearest-rank percentiles of an edge's latency, in microseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
    /// Entries that had an elapsed time: the population the percentiles describe.
    pub measured: u64,
    /// The percentiles come from a uniform sample of the values, not all of them.
    pub sampled: bool,
}

/// Builds a [`ServiceMap`] from entries, one at a time.
pub struct ServiceMapBuilder {
    nodes: Vec<NodeAcc>,
    node_index: HashMap<String, u32>,
    edges: Vec<EdgeAcc>,
    edge_index: HashMap<(u32, u32, &'static str), u32>,
    entries: u64,
    /// Latency values held across all edges, and how many may be.
    kept: usize,
    budget: usize,
    /// State of the generator that picks reservoir slots.
    rng: u64,
    /// The node id being looked up, so a known node costs no allocation.
    scratch: String,
}

struct NodeAcc {
    id: String,
    name: String,
    namespace: Option<String>,
    kind: NodeKind,
}

struct EdgeAcc {
    source: u32,
    target: u32,
    protocol: &'static str,
    requests: u64,
    errors: u64,
    request_bytes: u64,
    response_bytes: u64,
    measured: u64,
    max_us: u64,
    samples: Vec<u64>,
    /// The samples are a reservoir: some values were not kept.
    sampled: bool,
}

impl Default for ServiceMapBuilder {
    fn default() -> Self {
        Self::with_sample_budget(DEFAULT_SAMPLE_BUDGET)
    }
}

impl ServiceMapBuilder {
    /// A builder that keeps at most `budget` latency values exactly (see the
    /// module docs) before sampling.
    pub fn with_sample_budget(budget: usize) -> Self {
        ServiceMapBuilder {
            nodes: Vec::new(),
            node_index: HashMap::new(),
            edges: Vec::new(),
            edge_index: HashMap::new(),
            entries: 0,
            kept: 0,
            budget,
            // Fixed, so the same entries give the same map.
            rng: 0x9e37_79b9_7f4a_7c15,
            scratch: String::new(),
        }
    }

    pub fn add(&mut self, e: &Entry) {
        self.entries += 1;
        let source = self.node(Identity::of(e.src.as_ref(), Role::Caller));
        let target = self.node(Identity::of(e.dst.as_ref(), Role::Callee));
        let protocol = Protocol::try_from(e.protocol).ok();
        let name = protocol.map_or("unknown", Protocol::name);
        let edges = &mut self.edges;
        let index = *self
            .edge_index
            .entry((source, target, name))
            .or_insert_with(|| {
                edges.push(EdgeAcc::new(source, target, name));
                (edges.len() - 1) as u32
            }) as usize;
        let edge = &mut self.edges[index];
        edge.requests += 1;
        edge.errors += u64::from(tap_dissect::failed(e));
        edge.request_bytes = edge.request_bytes.saturating_add(e.request_size);
        edge.response_bytes = edge.response_bytes.saturating_add(e.response_size);
        if let Some(ns) = e.elapsed_ns {
            self.measure(index, ns / 1000);
        }
    }

    pub fn build(self) -> ServiceMap {
        let mut requests = vec![(0u64, 0u64); self.nodes.len()];
        let mut edges: Vec<Edge> = self
            .edges
            .into_iter()
            .map(|mut a| {
                requests[a.source as usize].1 += a.requests;
                requests[a.target as usize].0 += a.requests;
                let latency_us = (a.measured > 0).then(|| {
                    let [p50, p95, p99] = percentiles(&mut a.samples);
                    Latency {
                        p50,
                        p95,
                        p99,
                        max: a.max_us,
                        measured: a.measured,
                        sampled: a.sampled,
                    }
                });
                Edge {
                    source: self.nodes[a.source as usize].id.clone(),
                    target: self.nodes[a.target as usize].id.clone(),
                    protocol: a.protocol.to_string(),
                    requests: a.requests,
                    errors: a.errors,
                    error_rate: a.errors as f64 / a.requests as f64,
                    request_bytes: a.request_bytes,
                    response_bytes: a.response_bytes,
                    latency_us,
                }
            })
            .collect();
        edges.sort_by(|a, b| {
            (&a.source, &a.target, &a.protocol).cmp(&(&b.source, &b.target, &b.protocol))
        });
        let mut nodes: Vec<Node> = self
            .nodes
            .into_iter()
            .zip(requests)
            .map(|(n, (requests_in, requests_out))| Node {
                id: n.id,
                name: n.name,
                namespace: n.namespace,
                kind: n.kind,
                requests_in,
                requests_out,
            })
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        ServiceMap {
            nodes,
            edges,
            entries: self.entries,
        }
    }

    fn node(&mut self, identity: Identity<'_>) -> u32 {
        self.scratch.clear();
        identity.write_id(&mut self.scratch);
        if let Some(&i) = self.node_index.get(self.scratch.as_str()) {
            return i;
        }
        let i = self.nodes.len() as u32;
        let id = self.scratch.clone();
        self.node_index.insert(id.clone(), i);
        let (name, namespace, kind) = identity.describe();
        self.nodes.push(NodeAcc {
            id,
            name,
            namespace,
            kind,
        });
        i
    }

    fn measure(&mut self, index: usize, us: u64) {
        let edge = &mut self.edges[index];
        edge.measured += 1;
        edge.max_us = edge.max_us.max(us);
        if !edge.sampled && self.kept < self.budget {
            edge.samples.push(us);
            self.kept += 1;
            return;
        }
        if edge.samples.len() < MIN_RESERVOIR {
            // All of the edge's first MIN_RESERVOIR values are kept, as
            // algorithm R needs before it starts replacing.
            edge.samples.push(us);
            self.kept += 1;
            return;
        }
        edge.sampled = true;
        // Algorithm R: the i-th value replaces a random slot with probability k/i.
        let slot = bounded(next_random(&mut self.rng), edge.measured);
        if let Some(s) = edge.samples.get_mut(slot as usize) {
            *s = us;
        }
    }
}

impl EdgeAcc {
    fn new(source: u32, target: u32, protocol: &'static str) -> Self {
        EdgeAcc {
            source,
            target,
            protocol,
            requests: 0,
            errors: 0,
            request_bytes: 0,
            response_bytes: 0,
            measured: 0,
            max_us: 0,
            samples: Vec::new(),
            sampled: false,
        }
    }
}

/// Nearest-rank p50, p95 and p99 of `values`; zeros when it is empty (an
/// edge whose values were all sampled away cannot be: a reservoir never shrinks).
fn percentiles(values: &mut [u64]) -> [u64; 3] {
    let n = values.len();
    if n == 0 {
        return [0; 3];
    }
    let mut out = [0; 3];
    // Each rank is at least the one before, and selecting it leaves only
    // larger values to its right, so each search runs on what remains.
    let mut from = 0;
    for (slot, p) in out.iter_mut().zip([50, 95, 99]) {
        let rank = (p * n).div_ceil(100).max(1) - 1;
        let (_, v, _) = values[from..].select_nth_unstable(rank - from);
        *slot = *v;
        from = rank;
    }
    out
}

/// splitmix64: a fast, well-mixed sequence; sampling needs no more.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A value in `0..n` from a random u64, by multiplication rather than modulo
/// (Lemire), which is both faster and less biased.
fn bounded(random: u64, n: u64) -> u64 {
    ((u128::from(random) * u128::from(n)) >> 64) as u64
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Caller,
    Callee,
}

/// An endpoint's best identity, borrowed from the entry.
enum Identity<'a> {
    Service {
        namespace: Option<&'a str>,
        name: &'a str,
    },
    Pod {
        namespace: Option<&'a str>,
        workload: &'a str,
    },
    Ip {
        ip: &'a str,
        port: Option<u32>,
    },
    Unknown,
}

impl<'a> Identity<'a> {
    fn of(endpoint: Option<&'a Endpoint>, role: Role) -> Self {
        let Some(ep) = endpoint else {
            return Identity::Unknown;
        };
        let known = |s: &'a Option<String>| s.as_deref().filter(|s| !s.is_empty());
        let namespace = known(&ep.namespace);
        if let Some(name) = known(&ep.service) {
            return Identity::Service { namespace, name };
        }
        if let Some(pod) = known(&ep.pod) {
            return Identity::Pod {
                namespace,
                workload: workload_of(pod),
            };
        }
        if ep.ip.is_empty() {
            return Identity::Unknown;
        }
        Identity::Ip {
            ip: &ep.ip,
            port: (role == Role::Callee).then_some(ep.port),
        }
    }

    fn write_id(&self, out: &mut String) {
        match self {
            Identity::Service { namespace, name } => {
                out.push_str("svc:");
                write_qualified(out, *namespace, name);
            }
            Identity::Pod {
                namespace,
                workload,
            } => {
                out.push_str("pod:");
                write_qualified(out, *namespace, workload);
            }
            Identity::Ip { .. } => {
                out.push_str("ip:");
                self.write_address(out);
            }
            Identity::Unknown => out.push_str("ip:unknown"),
        }
    }

    fn write_address(&self, out: &mut String) {
        if let Identity::Ip { ip, port } = self {
            match port {
                // Brackets keep an IPv6 address's colons apart from the port's.
                Some(port) if ip.contains(':') => {
                    let _ = write!(out, "[{ip}]:{port}");
                }
                Some(port) => {
                    let _ = write!(out, "{ip}:{port}");
                }
                None => out.push_str(ip),
            }
        }
    }

    /// Name, namespace and kind of a new node.
    fn describe(&self) -> (String, Option<String>, NodeKind) {
        match self {
            Identity::Service { namespace, name } => (
                name.to_string(),
                namespace.map(str::to_string),
                NodeKind::Service,
            ),
            Identity::Pod {
                namespace,
                workload,
            } => (
                workload.to_string(),
                namespace.map(str::to_string),
                NodeKind::Pod,
            ),
            Identity::Ip { .. } => {
                let mut name = String::new();
                self.write_address(&mut name);
                (name, None, NodeKind::Ip)
            }
            Identity::Unknown => ("unknown".to_string(), None, NodeKind::Ip),
        }
    }
}

fn write_qualified(out: &mut String, namespace: Option<&str>, name: &str) {
    if let Some(ns) = namespace {
        out.push_str(ns);
        out.push('/');
    }
    out.push_str(name);
}

/// The Deployment a pod belongs to when its name has the shape a Deployment's
/// ReplicaSet gives its pods (see the module docs), else the pod name itself.
fn workload_of(pod: &str) -> &str {
    const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    // The safe alphabet's characters for the digits 0-9.
    const HASH_ALPHABET: &[u8] = b"456789bcdf";
    let mut parts = pod.rsplitn(3, '-');
    let (Some(suffix), Some(hash), Some(workload)) = (parts.next(), parts.next(), parts.next())
    else {
        return pod;
    };
    let fits = suffix.len() == 5
        && suffix.bytes().all(|b| SUFFIX_ALPHABET.contains(&b))
        && (6..=10).contains(&hash.len())
        && hash.bytes().all(|b| HASH_ALPHABET.contains(&b))
        && !workload.is_empty();
    if fits { workload } else { pod }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{
        AmqpMethod, DnsResponse, GraphqlResponse, GrpcResponse, HttpResponse, KafkaRequest,
        KafkaResponse, PostgresError, PostgresResponse, RedisResponse, Request, Response,
        StreamSide, WebSocketMessage, request, response,
    };

    fn ep(ip: &str, port: u32) -> Endpoint {
        Endpoint {
            ip: ip.into(),
            port,
            ..Default::default()
        }
    }

    fn pod(ip: &str, port: u32, ns: &str, pod: &str) -> Endpoint {
        Endpoint {
            namespace: Some(ns.into()),
            pod: Some(pod.into()),
            ..ep(ip, port)
        }
    }

    fn svc(ip: &str, port: u32, ns: &str, pod_name: &str, service: &str) -> Endpoint {
        Endpoint {
            service: Some(service.into()),
            ..pod(ip, port, ns, pod_name)
        }
    }

    fn entry(protocol: Protocol, src: Endpoint, dst: Endpoint) -> Entry {
        Entry {
            protocol: protocol as i32,
            src: Some(src),
            dst: Some(dst),
            ..Default::default()
        }
    }

    fn with_response(mut e: Entry, kind: response::Kind) -> Entry {
        e.response = Some(Response { kind: Some(kind) });
        e
    }

    fn with_request(mut e: Entry, kind: request::Kind) -> Entry {
        e.request = Some(Request { kind: Some(kind) });
        e
    }

    fn flagged(mut e: Entry, flags: &[&str]) -> Entry {
        e.flags = flags.iter().map(|f| f.to_string()).collect();
        e
    }

    fn http(status: u32) -> response::Kind {
        response::Kind::Http(Box::new(HttpResponse {
            status,
            ..Default::default()
        }))
    }

    fn map_of<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> ServiceMap {
        let mut b = ServiceMapBuilder::default();
        for e in entries {
            b.add(e);
        }
        b.build()
    }

    /// A client and a server, the server's pod behind a service.
    fn client() -> Endpoint {
        pod("10.1.0.5", 51234, "shop", "frontend-7c9f8d6b5-x2x4q")
    }

    fn server() -> Endpoint {
        svc(
            "10.1.1.7",
            8080,
            "shop",
            "catalogue-5d9c8f7b46-qzl2t",
            "catalogue",
        )
    }

    /// Nearest-rank by its other definition: the smallest value with at
    /// least p % of the values at or below it.
    fn reference_percentile(values: &[u64], p: u64) -> u64 {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let n = sorted.len() as u64;
        let mut at_or_below = 0u64;
        for (i, v) in sorted.iter().enumerate() {
            if sorted.get(i + 1) == Some(v) {
                continue;
            }
            at_or_below = i as u64 + 1;
            if at_or_below * 100 >= p * n {
                return *v;
            }
        }
        panic!("no value reaches {p} % of {n} ({at_or_below})");
    }

    /// A deterministic spread of latencies with repeats and a long tail.
    fn synthetic_latencies_ns(n: usize, seed: u64) -> Vec<u64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let r = s >> 33;
                // Mostly milliseconds, one in 50 up to a few seconds.
                if r.is_multiple_of(50) {
                    r % 4_000_000_000
                } else {
                    r % 20_000_000
                }
            })
            .collect()
    }

    #[test]
    fn empty_input_gives_an_empty_map() {
        let m = ServiceMapBuilder::default().build();
        assert_eq!(m.entries, 0);
        assert!(m.nodes.is_empty() && m.edges.is_empty());
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"nodes": [], "edges": [], "entries": 0})
        );
    }

    #[test]
    fn counts_errors_and_bytes_per_edge() {
        let mut entries = Vec::new();
        for (i, status) in [200, 500, 503, 404, 200, 302].into_iter().enumerate() {
            let mut e = with_response(entry(Protocol::Http, client(), server()), http(status));
            e.request_size = 100 + i as u64;
            e.response_size = 1000 * (i as u64 + 1);
            entries.push(e);
        }
        let mut unanswered = flagged(entry(Protocol::Http, client(), server()), &["no_response"]);
        unanswered.request_size = 7;
        entries.push(unanswered);

        let m = map_of(&entries);
        assert_eq!(m.entries, 7);
        assert_eq!(m.edges.len(), 1);
        let edge = &m.edges[0];
        assert_eq!(edge.source, "pod:shop/frontend");
        assert_eq!(edge.target, "svc:shop/catalogue");
        assert_eq!(edge.protocol, "http");
        assert_eq!(edge.requests, 7);
        // 500, 503 and the unanswered request; 404 and 302 are not.
        assert_eq!(edge.errors, 3);
        assert_eq!(edge.error_rate, 3.0 / 7.0);
        assert_eq!(edge.request_bytes, 100 + 101 + 102 + 103 + 104 + 105 + 7);
        assert_eq!(edge.response_bytes, 1000 * (1 + 2 + 3 + 4 + 5 + 6));
        assert_eq!(edge.latency_us, None, "no entry had an elapsed time");

        let by_id = |id: &str| m.nodes.iter().find(|n| n.id == id).unwrap();
        assert_eq!(by_id("pod:shop/frontend").requests_out, 7);
        assert_eq!(by_id("pod:shop/frontend").requests_in, 0);
        assert_eq!(by_id("svc:shop/catalogue").requests_in, 7);
        assert_eq!(by_id("svc:shop/catalogue").requests_out, 0);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        // Every small n, where off-by-one errors in the rank show.
        for n in 1..=250 {
            let values: Vec<u64> = synthetic_latencies_ns(n, n as u64);
            let mut b = ServiceMapBuilder::default();
            for &ns in &values {
                let mut e = entry(Protocol::Grpc, client(), server());
                e.elapsed_ns = Some(ns);
                b.add(&e);
            }
            // Entries without an elapsed time count as requests, not in latency.
            b.add(&entry(Protocol::Grpc, client(), server()));
            let m = b.build();
            let us: Vec<u64> = values.iter().map(|ns| ns / 1000).collect();
            let lat = m.edges[0].latency_us.clone().unwrap();
            assert_eq!(m.edges[0].requests, n as u64 + 1);
            assert_eq!(lat.measured, n as u64);
            assert!(!lat.sampled);
            assert_eq!(lat.p50, reference_percentile(&us, 50), "p50 of {n}");
            assert_eq!(lat.p95, reference_percentile(&us, 95), "p95 of {n}");
            assert_eq!(lat.p99, reference_percentile(&us, 99), "p99 of {n}");
            assert_eq!(lat.max, *us.iter().max().unwrap(), "max of {n}");
        }
    }

    #[test]
    fn percentiles_of_known_values() {
        // 1..=100 ms: the p-th percentile is p ms; 1..=10: ⌈5⌉=5, ⌈9.5⌉=10, ⌈9.9⌉=10.
        for (values, expect) in [
            ((1..=100).collect::<Vec<u64>>(), [50_000, 95_000, 99_000]),
            ((1..=10).collect(), [5000, 10_000, 10_000]),
            (vec![7], [7000, 7000, 7000]),
            (vec![3, 1], [1000, 3000, 3000]),
        ] {
            let mut b = ServiceMapBuilder::default();
            for ms in &values {
                let mut e = entry(Protocol::Http, client(), server());
                e.elapsed_ns = Some(ms * 1_000_000 + 999);
                b.add(&e);
            }
            let lat = b.build().edges[0].latency_us.clone().unwrap();
            assert_eq!([lat.p50, lat.p95, lat.p99], expect, "{values:?}");
        }
    }

    #[test]
    fn past_the_budget_edges_sample_uniformly_and_stay_bounded() {
        let budget = 3000;
        let mut b = ServiceMapBuilder::with_sample_budget(budget);
        // One edge that spends the budget, then a second that appears late.
        let values: Vec<u64> = (1..=100_000).collect();
        for &v in &values {
            let mut e = entry(Protocol::Http, client(), server());
            e.elapsed_ns = Some(v * 1000);
            b.add(&e);
            let mut late = entry(Protocol::Redis, client(), ep("10.9.9.9", 6379));
            late.elapsed_ns = Some(v * 1000);
            b.add(&late);
        }
        assert!(b.kept <= budget + MIN_RESERVOIR * b.edges.len());
        assert!(b.edges.iter().all(|e| e.samples.len() >= MIN_RESERVOIR));
        let m = b.build();
        for edge in &m.edges {
            let lat = edge.latency_us.clone().unwrap();
            assert!(lat.sampled, "{}", edge.protocol);
            assert_eq!(lat.measured, 100_000);
            assert_eq!(lat.max, 100_000, "max stays exact");
            // Uniform over 1..=100 000: within a few percent of the truth.
            for (got, want) in [(lat.p50, 50_000), (lat.p95, 95_000), (lat.p99, 99_000)] {
                assert!(
                    got.abs_diff(want) < 4_000,
                    "{}: {got} vs {want}",
                    edge.protocol
                );
            }
        }
    }

    #[test]
    fn within_the_budget_nothing_is_sampled() {
        let mut b = ServiceMapBuilder::with_sample_budget(100);
        for v in 0..100 {
            let mut e = entry(Protocol::Http, client(), server());
            e.elapsed_ns = Some(v * 1000);
            b.add(&e);
        }
        let lat = b.build().edges[0].latency_us.clone().unwrap();
        assert!(!lat.sampled);
        assert_eq!((lat.p50, lat.p99, lat.max), (49, 98, 99));
    }

    /// An endpoint in a role, and the node's id, name, namespace and kind.
    type NodeCase = (
        Endpoint,
        Role,
        &'static str,
        &'static str,
        Option<&'static str>,
        NodeKind,
    );

    #[test]
    fn node_identity_prefers_service_then_pod_then_address() {
        let cases: &[NodeCase] = &[
            (
                server(),
                Role::Callee,
                "svc:shop/catalogue",
                "catalogue",
                Some("shop"),
                NodeKind::Service,
            ),
            (
                client(),
                Role::Caller,
                "pod:shop/frontend",
                "frontend",
                Some("shop"),
                NodeKind::Pod,
            ),
            (
                pod("10.1.0.9", 5432, "db", "postgres-0"),
                Role::Callee,
                "pod:db/postgres-0",
                "postgres-0",
                Some("db"),
                NodeKind::Pod,
            ),
            (
                ep("10.1.0.5", 51234),
                Role::Caller,
                "ip:10.1.0.5",
                "10.1.0.5",
                None,
                NodeKind::Ip,
            ),
            (
                ep("10.1.1.7", 8080),
                Role::Callee,
                "ip:10.1.1.7:8080",
                "10.1.1.7:8080",
                None,
                NodeKind::Ip,
            ),
            (
                ep("fd00::7", 53),
                Role::Callee,
                "ip:[fd00::7]:53",
                "[fd00::7]:53",
                None,
                NodeKind::Ip,
            ),
            (
                ep("fd00::5", 40000),
                Role::Caller,
                "ip:fd00::5",
                "fd00::5",
                None,
                NodeKind::Ip,
            ),
            // Empty strings are as good as absent.
            (
                Endpoint {
                    service: Some(String::new()),
                    pod: Some(String::new()),
                    namespace: Some(String::new()),
                    ..ep("10.1.1.7", 8080)
                },
                Role::Callee,
                "ip:10.1.1.7:8080",
                "10.1.1.7:8080",
                None,
                NodeKind::Ip,
            ),
            (
                Endpoint {
                    service: Some("kube-dns".into()),
                    ..ep("10.96.0.10", 53)
                },
                Role::Callee,
                "svc:kube-dns",
                "kube-dns",
                None,
                NodeKind::Service,
            ),
            (
                ep("", 80),
                Role::Callee,
                "ip:unknown",
                "unknown",
                None,
                NodeKind::Ip,
            ),
        ];
        for (endpoint, role, id, name, namespace, kind) in cases {
            let (src, dst) = match role {
                Role::Caller => (endpoint.clone(), server()),
                Role::Callee => (client(), endpoint.clone()),
            };
            let m = map_of(&[entry(Protocol::Tcp, src, dst)]);
            let edge = &m.edges[0];
            let node_id = match role {
                Role::Caller => &edge.source,
                Role::Callee => &edge.target,
            };
            assert_eq!(node_id, id);
            let node = m.nodes.iter().find(|n| &n.id == node_id).unwrap();
            assert_eq!(
                (node.name.as_str(), node.namespace.as_deref(), node.kind),
                (*name, *namespace, *kind),
                "{id}"
            );
        }
    }

    #[test]
    fn callers_on_many_ports_are_one_node() {
        let entries: Vec<Entry> = (40000..40010)
            .map(|port| entry(Protocol::Http, ep("10.1.0.5", port), ep("10.1.1.7", 80)))
            .collect();
        let m = map_of(&entries);
        assert_eq!(m.nodes.len(), 2);
        assert_eq!(m.edges.len(), 1);
        assert_eq!(m.edges[0].requests, 10);
    }

    #[test]
    fn deployment_pods_reduce_to_their_workload() {
        for (pod, workload) in [
            ("frontend-7c9f8d6b5-x2x4q", "frontend"),
            ("catalogue-5d9c8f7b46-qzl2t", "catalogue"),
            ("cart-api-v2-6f4b9c8d77-9xk2m", "cart-api-v2"),
            ("coredns-668d6bf9bc-4wz7n", "coredns"),
            // Not the shape: kept whole.
            ("postgres-0", "postgres-0"),
            ("frontend", "frontend"),
            // A DaemonSet's or Job's pod: a suffix without a hash.
            ("kube-proxy-x2x4q", "kube-proxy-x2x4q"),
            // A short word in the hash alphabet is not a hash.
            ("cache-db-xk2pq", "cache-db-xk2pq"),
            // A CronJob's Job: its minutes hold 0, 1 and 3, which no hash does.
            ("backup-29391520-xk2pq", "backup-29391520-xk2pq"),
            // Vowels, 'y', '0', '1', '3' never appear in a generated suffix.
            ("web-7c9f8d6b5-proxy", "web-7c9f8d6b5-proxy"),
            ("web-7c9f8d6b5-x2x41", "web-7c9f8d6b5-x2x41"),
            // A hash with letters outside the digit alphabet ('a', 'g').
            ("web-7c9a8d6b5-x2x4q", "web-7c9a8d6b5-x2x4q"),
            ("web-7c9g8d6b5-x2x4q", "web-7c9g8d6b5-x2x4q"),
            // Too long to be a 32-bit number.
            ("web-7c9f8d6b5bb-x2x4q", "web-7c9f8d6b5bb-x2x4q"),
            ("-7c9f8d6b5-x2x4q", "-7c9f8d6b5-x2x4q"),
            ("7c9f8d6b5-x2x4q", "7c9f8d6b5-x2x4q"),
            ("", ""),
        ] {
            assert_eq!(workload_of(pod), workload, "{pod}");
        }
    }

    #[test]
    fn replicas_of_a_deployment_are_one_node() {
        let entries = [
            entry(
                Protocol::Http,
                pod("10.1.0.5", 1, "shop", "frontend-7c9f8d6b5-x2x4q"),
                server(),
            ),
            entry(
                Protocol::Http,
                pod("10.1.0.6", 2, "shop", "frontend-7c9f8d6b5-bq9zt"),
                server(),
            ),
            // Same workload name in another namespace: another node.
            entry(
                Protocol::Http,
                pod("10.2.0.6", 3, "staging", "frontend-7c9f8d6b5-bq9zt"),
                server(),
            ),
        ];
        let m = map_of(&entries);
        let ids: Vec<&str> = m.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "pod:shop/frontend",
                "pod:staging/frontend",
                "svc:shop/catalogue"
            ]
        );
        assert_eq!(m.edges[0].requests, 2);
    }

    #[test]
    fn each_protocol_has_its_own_edge() {
        let entries = [
            entry(Protocol::Http, client(), server()),
            entry(Protocol::Grpc, client(), server()),
            entry(Protocol::Grpc, client(), server()),
            entry(Protocol::Tcp, client(), server()),
            // The reverse direction is another edge.
            entry(Protocol::Http, server(), client()),
        ];
        let m = map_of(&entries);
        let edges: Vec<(&str, &str, &str, u64)> = m
            .edges
            .iter()
            .map(|e| {
                (
                    e.source.as_str(),
                    e.target.as_str(),
                    e.protocol.as_str(),
                    e.requests,
                )
            })
            .collect();
        assert_eq!(
            edges,
            [
                ("pod:shop/frontend", "svc:shop/catalogue", "grpc", 2),
                ("pod:shop/frontend", "svc:shop/catalogue", "http", 1),
                ("pod:shop/frontend", "svc:shop/catalogue", "tcp", 1),
                ("svc:shop/catalogue", "pod:shop/frontend", "http", 1),
            ]
        );
    }

    #[test]
    fn odd_entries_are_counted_not_fatal() {
        let mut odd = Entry {
            protocol: 99,
            elapsed_ns: Some(u64::MAX),
            request_size: u64::MAX,
            ..Default::default()
        };
        let mut b = ServiceMapBuilder::default();
        b.add(&odd);
        odd.protocol = 100;
        b.add(&odd);
        // A response kind that does not match the protocol, and empty oneofs.
        let mut e = with_response(entry(Protocol::Dns, client(), server()), http(503));
        e.request = Some(Request { kind: None });
        b.add(&e);
        b.add(&with_response(
            flagged(
                entry(Protocol::Unspecified, client(), server()),
                &["no_response"],
            ),
            http(200),
        ));
        let m = b.build();
        assert_eq!(m.entries, 4);
        assert_eq!(m.edges.iter().map(|e| e.requests).sum::<u64>(), 4);
        let unknown = &m.edges.iter().find(|e| e.source == "ip:unknown").unwrap();
        assert_eq!(
            (unknown.target.as_str(), unknown.protocol.as_str()),
            ("ip:unknown", "unknown")
        );
        assert_eq!(unknown.requests, 2);
        assert_eq!(unknown.request_bytes, u64::MAX, "saturates");
        assert_eq!(unknown.latency_us.as_ref().unwrap().max, u64::MAX / 1000);
        let dns = m.edges.iter().find(|e| e.protocol == "dns").unwrap();
        assert_eq!(dns.errors, 1, "classified by the response it has");
    }

    /// (protocol, entry, is an error) for every rule in the module docs.
    fn error_cases() -> Vec<(&'static str, Entry, bool)> {
        let e = |p| entry(p, client(), server());
        let grpc = |status| {
            response::Kind::Grpc(Box::new(GrpcResponse {
                status,
                ..Default::default()
            }))
        };
        let dns = |rcode| {
            response::Kind::Dns(Box::new(DnsResponse {
                rcode,
                ..Default::default()
            }))
        };
        let graphql = |status, errors, has_data| {
            response::Kind::Graphql(Box::new(GraphqlResponse {
                http: Some(HttpResponse {
                    status,
                    ..Default::default()
                }),
                errors,
                has_data,
                json: true,
                ..Default::default()
            }))
        };
        let redis = |is_error| {
            response::Kind::Redis(Box::new(RedisResponse {
                r#type: if is_error { "error" } else { "simple" }.into(),
                is_error,
                ..Default::default()
            }))
        };
        let amqp = |method: &str, reply_code| AmqpMethod {
            method: method.into(),
            reply_code,
            ..Default::default()
        };
        let ws = |close_code| WebSocketMessage {
            opcode: "close".into(),
            close_code,
            ..Default::default()
        };
        let tcp = |ended: &str| {
            response::Kind::Stream(Box::new(StreamSide {
                ended: ended.into(),
                ..Default::default()
            }))
        };
        let kafka_req = |api_key| {
            request::Kind::Kafka(Box::new(KafkaRequest {
                api_key,
                ..Default::default()
            }))
        };
        let nr = |e: Entry| flagged(e, &["no_response"]);
        vec![
            (
                "http 200",
                with_response(e(Protocol::Http), http(200)),
                false,
            ),
            (
                "http 499",
                with_response(e(Protocol::Http), http(499)),
                false,
            ),
            (
                "http 500",
                with_response(e(Protocol::Http), http(500)),
                true,
            ),
            (
                "http2 502",
                with_response(e(Protocol::Http2), http(502)),
                true,
            ),
            ("http no response", nr(e(Protocol::Http)), true),
            (
                "http no response, gap",
                flagged(e(Protocol::Http), &["gap", "no_response"]),
                false,
            ),
            ("http2 no response", nr(e(Protocol::Http2)), true),
            (
                "grpc OK",
                with_response(e(Protocol::Grpc), grpc(Some(0))),
                false,
            ),
            (
                "grpc UNAVAILABLE",
                with_response(e(Protocol::Grpc), grpc(Some(14))),
                true,
            ),
            (
                "grpc NOT_FOUND",
                with_response(e(Protocol::Grpc), grpc(Some(5))),
                true,
            ),
            (
                "grpc without status",
                with_response(e(Protocol::Grpc), grpc(None)),
                true,
            ),
            (
                "grpc without status, gap",
                flagged(with_response(e(Protocol::Grpc), grpc(None)), &["gap"]),
                false,
            ),
            ("grpc no response", nr(e(Protocol::Grpc)), true),
            (
                "graphql data",
                with_response(e(Protocol::Graphql), graphql(200, 0, true)),
                false,
            ),
            (
                "graphql partial",
                with_response(e(Protocol::Graphql), graphql(200, 2, true)),
                false,
            ),
            (
                "graphql failed",
                with_response(e(Protocol::Graphql), graphql(200, 1, false)),
                true,
            ),
            (
                "graphql 500",
                with_response(e(Protocol::Graphql), graphql(500, 0, false)),
                true,
            ),
            (
                "dns NOERROR",
                with_response(e(Protocol::Dns), dns(0)),
                false,
            ),
            (
                "dns NXDOMAIN",
                with_response(e(Protocol::Dns), dns(3)),
                false,
            ),
            (
                "dns SERVFAIL",
                with_response(e(Protocol::Dns), dns(2)),
                true,
            ),
            ("dns REFUSED", with_response(e(Protocol::Dns), dns(5)), true),
            (
                "dns BADVERS",
                with_response(e(Protocol::Dns), dns(16)),
                true,
            ),
            ("dns timeout", nr(e(Protocol::Dns)), true),
            (
                "redis reply",
                with_response(e(Protocol::Redis), redis(false)),
                false,
            ),
            (
                "redis error",
                with_response(e(Protocol::Redis), redis(true)),
                true,
            ),
            ("redis no response", nr(e(Protocol::Redis)), true),
            (
                "postgres ok",
                with_response(
                    e(Protocol::Postgres),
                    response::Kind::Postgres(Box::default()),
                ),
                false,
            ),
            (
                "postgres notice only",
                with_response(
                    e(Protocol::Postgres),
                    response::Kind::Postgres(Box::new(PostgresResponse {
                        notices: vec![PostgresError {
                            severity: "WARNING".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })),
                ),
                false,
            ),
            (
                "postgres error",
                with_response(
                    e(Protocol::Postgres),
                    response::Kind::Postgres(Box::new(PostgresResponse {
                        error: Some(PostgresError {
                            severity: "ERROR".into(),
                            code: "42P01".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })),
                ),
                true,
            ),
            ("postgres no response", nr(e(Protocol::Postgres)), true),
            (
                "kafka ok",
                with_response(
                    with_request(e(Protocol::Kafka), kafka_req(1)),
                    response::Kind::Kafka(Box::default()),
                ),
                false,
            ),
            (
                "kafka error",
                with_response(
                    with_request(e(Protocol::Kafka), kafka_req(1)),
                    response::Kind::Kafka(Box::new(KafkaResponse {
                        error_code: 6,
                        ..Default::default()
                    })),
                ),
                true,
            ),
            (
                "kafka produce acks=0",
                nr(with_request(e(Protocol::Kafka), kafka_req(0))),
                false,
            ),
            (
                "kafka fetch unanswered",
                nr(with_request(e(Protocol::Kafka), kafka_req(1))),
                true,
            ),
            (
                "amqp declare-ok",
                with_response(
                    with_request(
                        e(Protocol::Amqp),
                        request::Kind::Amqp(Box::new(amqp("queue.declare", 0))),
                    ),
                    response::Kind::Amqp(Box::new(amqp("queue.declare-ok", 0))),
                ),
                false,
            ),
            (
                "amqp normal close",
                with_response(
                    with_request(
                        e(Protocol::Amqp),
                        request::Kind::Amqp(Box::new(amqp("connection.close", 200))),
                    ),
                    response::Kind::Amqp(Box::new(amqp("connection.close-ok", 0))),
                ),
                false,
            ),
            (
                "amqp channel closed with 404",
                with_response(
                    with_request(
                        e(Protocol::Amqp),
                        request::Kind::Amqp(Box::new(amqp("channel.close", 404))),
                    ),
                    response::Kind::Amqp(Box::new(amqp("channel.close-ok", 0))),
                ),
                true,
            ),
            (
                "amqp basic.return NO_ROUTE",
                with_response(
                    e(Protocol::Amqp),
                    response::Kind::Amqp(Box::new(amqp("basic.return", 312))),
                ),
                true,
            ),
            (
                "amqp publish",
                with_request(
                    e(Protocol::Amqp),
                    request::Kind::Amqp(Box::new(amqp("basic.publish", 0))),
                ),
                false,
            ),
            (
                "amqp unanswered",
                nr(with_request(
                    e(Protocol::Amqp),
                    request::Kind::Amqp(Box::new(amqp("queue.declare", 0))),
                )),
                true,
            ),
            (
                "websocket text",
                with_request(
                    e(Protocol::Websocket),
                    request::Kind::Websocket(Box::new(WebSocketMessage {
                        opcode: "text".into(),
                        ..Default::default()
                    })),
                ),
                false,
            ),
            (
                "websocket normal close",
                with_request(
                    e(Protocol::Websocket),
                    request::Kind::Websocket(Box::new(ws(Some(1000)))),
                ),
                false,
            ),
            (
                "websocket going away",
                with_response(
                    e(Protocol::Websocket),
                    response::Kind::Websocket(Box::new(ws(Some(1001)))),
                ),
                false,
            ),
            (
                "websocket close without code",
                with_response(
                    e(Protocol::Websocket),
                    response::Kind::Websocket(Box::new(ws(None))),
                ),
                false,
            ),
            (
                "websocket internal error",
                with_response(
                    e(Protocol::Websocket),
                    response::Kind::Websocket(Box::new(ws(Some(1011)))),
                ),
                true,
            ),
            (
                "websocket protocol error from the client",
                with_request(
                    e(Protocol::Websocket),
                    request::Kind::Websocket(Box::new(ws(Some(1002)))),
                ),
                true,
            ),
            (
                "websocket application code",
                with_response(
                    e(Protocol::Websocket),
                    response::Kind::Websocket(Box::new(ws(Some(4000)))),
                ),
                false,
            ),
            (
                "tcp fin",
                with_response(e(Protocol::Tcp), tcp("fin")),
                false,
            ),
            (
                "tcp idle",
                with_response(e(Protocol::Tcp), tcp("idle")),
                false,
            ),
            ("tcp rst", with_response(e(Protocol::Tcp), tcp("rst")), true),
            ("tcp no response", nr(e(Protocol::Tcp)), false),
            ("udp", with_response(e(Protocol::Udp), tcp("")), false),
        ]
    }

    #[test]
    fn errors_follow_each_protocols_rule() {
        for (name, e, want) in error_cases() {
            let m = map_of([&e]);
            assert_eq!(m.edges[0].errors, u64::from(want), "{name}");
            assert_eq!(m.edges[0].error_rate, f64::from(u8::from(want)), "{name}");
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let mut timed = with_response(entry(Protocol::Http, client(), server()), http(500));
        timed.elapsed_ns = Some(1_834_000);
        timed.request_size = 312;
        timed.response_size = 2048;
        let m = map_of(&[
            timed,
            entry(Protocol::Dns, ep("10.1.0.5", 40000), ep("fd00::a", 53)),
        ]);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "nodes": [
                    {"id": "ip:10.1.0.5", "name": "10.1.0.5", "namespace": null, "kind": "ip",
                     "requests_in": 0, "requests_out": 1},
                    {"id": "ip:[fd00::a]:53", "name": "[fd00::a]:53", "namespace": null,
                     "kind": "ip", "requests_in": 1, "requests_out": 0},
                    {"id": "pod:shop/frontend", "name": "frontend", "namespace": "shop",
                     "kind": "pod", "requests_in": 0, "requests_out": 1},
                    {"id": "svc:shop/catalogue", "name": "catalogue", "namespace": "shop",
                     "kind": "service", "requests_in": 1, "requests_out": 0},
                ],
                "edges": [
                    {"source": "ip:10.1.0.5", "target": "ip:[fd00::a]:53", "protocol": "dns",
                     "requests": 1, "errors": 0, "error_rate": 0.0, "request_bytes": 0,
                     "response_bytes": 0, "latency_us": null},
                    {"source": "pod:shop/frontend", "target": "svc:shop/catalogue",
                     "protocol": "http", "requests": 1, "errors": 1, "error_rate": 1.0,
                     "request_bytes": 312, "response_bytes": 2048,
                     "latency_us": {"p50": 1834, "p95": 1834, "p99": 1834, "max": 1834,
                                    "measured": 1, "sampled": false}},
                ],
                "entries": 2,
            })
        );
    }

    /// `cargo xtask bench --only micro` runs it.
    #[test]
    #[ignore = "a measurement: cargo xtask bench --only micro"]
    fn build_one_million_entries() {
        const N: usize = 1_000_000;
        let latencies = synthetic_latencies_ns(N, 42);
        let protocols = [
            Protocol::Http,
            Protocol::Grpc,
            Protocol::Redis,
            Protocol::Dns,
        ];
        const SUFFIXES: [&str; 10] = [
            "x2x4q", "bq9zt", "k7m2p", "zz4rt", "9xk2m", "wv5hd", "pq8nn", "tt2dg", "r6s7j",
            "mhl4c",
        ];
        let entries: Vec<Entry> = latencies
            .iter()
            .enumerate()
            .map(|(i, &ns)| {
                // 200 client pods of 20 workloads, 50 services, some bare IPs.
                let src = pod(
                    &format!("10.1.0.{}", i % 200),
                    40000 + (i % 20000) as u32,
                    "shop",
                    &format!("app{}-7c9f8d6b5-{}", i % 20, SUFFIXES[i % 10]),
                );
                let dst = if i.is_multiple_of(10) {
                    ep(&format!("10.2.0.{}", i % 30), 8080)
                } else {
                    svc("10.3.0.1", 80, "shop", "x", &format!("svc{}", i % 50))
                };
                let mut e = entry(protocols[i % protocols.len()], src, dst);
                e.elapsed_ns = Some(ns);
                e.request_size = 300;
                e.response_size = 2000;
                e.response = Some(Response {
                    kind: Some(http(if i.is_multiple_of(97) { 503 } else { 200 })),
                });
                e
            })
            .collect();
        let start = std::time::Instant::now();
        let mut b = ServiceMapBuilder::default();
        for e in &entries {
            b.add(e);
        }
        let m = b.build();
        let took = start.elapsed();
        println!(
            "service map of {N} entries: {} nodes, {} edges in {took:?} ({:.0} ns/entry)",
            m.nodes.len(),
            m.edges.len(),
            took.as_nanos() as f64 / N as f64
        );
        assert_eq!(m.entries, N as u64);
        assert_eq!(m.edges.iter().map(|e| e.requests).sum::<u64>(), N as u64);
    }
}
