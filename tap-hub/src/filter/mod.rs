//! The filter language: one expression that selects entries in the API, the
//! live stream, the service map and PCAP export. It is CEL (the Common
//! Expression Language) over the entry's JSON field names; cel-rust parses it,
//! and this module compiles the syntax tree into a small typed evaluator that
//! reads fields straight from a stored [`Entry`], so a query over a million
//! entries allocates nothing per entry for the common fields.
//!
//! # Fields
//!
//! | name | type | |
//! |---|---|---|
//! | `id`, `node` | string | |
//! | `ts` | timestamp | capture time of the request |
//! | `protocol` | string | `http`, `http2`, `grpc`, `graphql`, `websocket`, `redis`, `kafka`, `amqp`, `dns`, `postgres`, `socks`, `tls`, `tcp`, `udp` (the condition `tls` alone is the `tls` field below: write `protocol == "tls"` for handshakes) |
//! | `src.ip`, `dst.ip`, `src.pod`, `src.namespace`, `src.service` (and `dst.…`) | string | |
//! | `src.port`, `dst.port` | int | |
//! | `tls` | bool | the entry was read as TLS plaintext (eBPF), not a `tls` handshake entry |
//! | `elapsed_us` | int | response time in µs; a flow's duration for `tcp`/`udp` |
//! | `request_size`, `response_size`, `stream_id` | int | |
//! | `flow_id` | string | 16 hex digits, as in the JSON form |
//! | `flags`, `redacted` | list of strings | e.g. `"gap" in flags` |
//! | `tunnel.kind`, `tunnel.src`, `tunnel.dst`, `tunnel.vni` | string, int | the overlay hop (`vxlan`, `geneve`, `gre`, `ipip`); `tunnel == null` outside one |
//! | `request.method`, `request.path` | string | HTTP method and path, gRPC method and `/pkg.Service/Method`, Redis command and key, DNS type and name, SQL verb and text, … |
//! | `response.status` | int | HTTP status, gRPC status, DNS rcode, 1 for a Redis or PostgreSQL error, … |
//! | `request.headers["name"]`, `response.headers["name"]` | string | HTTP/1, HTTP/2, gRPC metadata, GraphQL's HTTP request; names are case-insensitive, repeated headers are joined with `", "` |
//! | `request.…`, `response.…` | any | every other field of the protocol's JSON form: `request.command`, `response.rcode_name`, `request.topics[0].name`, … |
//!
//! Each protocol name is also a condition of its own: `http` means
//! `protocol == "http"`, `dns || redis` means either.
//!
//! The protocol-specific `request.…` and `response.…` fields are read from
//! the entry's JSON form, which costs microseconds per entry rather than
//! nanoseconds; conditions joined by `&&` and `||` run cheapest first, so in
//! `request.command == "GET" && redis` only Redis entries pay it.
//!
//! # Operators and functions
//!
//! - `==`, `!=`, `<`, `<=`, `>`, `>=`; numbers of any kind compare with each other.
//! - `&&`, `||`, `!`, or the words `and`, `or`, `not`; `c ? a : b`; parentheses.
//! - `x in ["a", "b"]`, `"gap" in flags`, `"host" in request.headers`.
//! - `+`, `-`, `*`, `/`, `%` on numbers; timestamps and durations add and
//!   subtract (`now() - duration("5m")`, `ts - timestamp("2026-11-24T19:00:00Z")`).
//! - `s.contains(t)`, `s.startsWith(t)`, `s.endsWith(t)`, `s.matches(re)` (RE2 syntax,
//!   unanchored: `src.pod.matches("^front")`); `size(x)` or `x.size()` for strings, lists and maps.
//! - `has(src.pod)`; `flags.exists(f, f.startsWith("malformed"))`, `.all(x, …)`, `.exists_one(x, …)`.
//! - `now()` (the time of the query), `duration("1h30m")` (units `h`, `m`, `s`, `ms`, `us`, `ns`),
//!   `timestamp("2026-11-24T19:36:50Z")`; a timestamp also compares with an RFC 3339
//!   string literal: `ts >= "2026-11-24T19:00:00Z"`.
//! - `int(x)`, `uint(x)`, `double(x)`, `string(x)` conversions.
//! - Literals: `"text"`, `'text'`, `r"raw"`, `42`, `42u`, `0x2a`, `1.5`, `true`, `false`, `null`, `[…]`.
//!
//! # Missing fields
//!
//! A field the entry does not have is *absent*: an endpoint without a pod,
//! `elapsed_us` of a request that got no response, `response.status` of a
//! `tcp` entry, a header that was not sent, `request.command` of an HTTP entry.
//!
//! - A comparison, `in`, `contains`, `startsWith`, `endsWith` or `matches` with
//!   an absent side is **false**, `!=` included: for an entry without a pod
//!   both `src.pod == "a"` and `src.pod != "a"` are false, and
//!   `!(src.pod == "a")` is true.
//! - `x == null` is true when `x` is absent (or null in the JSON form), and
//!   `x != null` when it is there; `has(x)` is the same as `x != null`.
//! - An absent value used as a condition is false; arithmetic and `size()` of
//!   an absent value are absent; `exists` and `all` over an absent list are false.
//! - A value of another type than the comparison expects at run time (possible
//!   only with the protocol-specific `request.…` fields, which are typed by
//!   their JSON form) behaves as absent. Everything that can be checked when
//!   the filter is parsed is: unknown fields, functions, arity, comparing a
//!   number with a string, an invalid regular expression, duration or protocol
//!   name are errors that name the column.
//!
//! # Examples
//!
//! ```text
//! protocol == "http" && response.status >= 500
//! http and not request.path.startsWith("/healthz")
//! src.pod.matches("^front") && dst.namespace in ["shop", "pay"]
//! request.headers["content-type"].contains("json")
//! grpc && response.status != 0
//! elapsed_us > 100000 || "no_response" in flags
//! ts > now() - duration("5m")
//! dns && response.rcode_name == "NXDOMAIN"
//! redis && request.method == "SET" && request.path.startsWith("session:")
//! flags.exists(f, f.startsWith("malformed"))
//! ```
//!
//! An empty filter matches every entry. A filter is at most 4096 bytes and
//! nests at most 64 levels deep.

mod compile;
mod eval;
mod lex;
mod time;

#[cfg(test)]
mod tests;

use proto::v1::Entry;
use std::fmt;
use std::sync::Arc;

/// Longest filter accepted, in bytes: parsing cost grows with the source.
pub const MAX_SOURCE_LEN: usize = 4096;

/// Deepest nesting accepted (brackets, operators): the parser and the
/// evaluator recurse, and a filter must not be able to exhaust a stack.
pub const MAX_DEPTH: usize = 64;

/// Why a filter was rejected, and where: `column` is 1-based, in characters of
/// the filter as the user typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct FilterError {
    pub message: String,
    pub column: usize,
}

impl FilterError {
    fn new(column: usize, message: impl Into<String>) -> Self {
        FilterError {
            message: message.into(),
            column,
        }
    }
}

/// A compiled filter. Cheap to clone and shared across tasks.
#[derive(Clone, Default)]
pub struct Filter {
    source: Arc<str>,
    /// `None` matches everything.
    root: Option<Arc<eval::Program>>,
}

impl Filter {
    /// Compiles `src`; an empty (or all-whitespace) filter matches every entry.
    pub fn parse(src: &str) -> Result<Filter, FilterError> {
        if src.len() > MAX_SOURCE_LEN {
            return Err(FilterError::new(
                column_at(src, MAX_SOURCE_LEN),
                format!(
                    "filter too long: {} bytes, at most {MAX_SOURCE_LEN} are accepted",
                    src.len()
                ),
            ));
        }
        let root = if src.trim().is_empty() {
            None
        } else {
            let cel = lex::rewrite_aliases(src)?;
            compile::compile(src, &cel)?.map(|n| Arc::new(eval::Program::new(n)))
        };
        Ok(Filter {
            source: src.into(),
            root,
        })
    }

    /// Whether `e` passes the filter; `now_ns` is what `now()` returns
    /// (nanoseconds since the Unix epoch), taken once per query.
    pub fn matches(&self, e: &Entry, now_ns: u64) -> bool {
        match &self.root {
            None => true,
            Some(root) => root.matches(e, now_ns),
        }
    }

    /// The filter as it was written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the filter matches every entry (it is empty or `true`).
    pub fn is_all(&self) -> bool {
        self.root.is_none()
    }

    /// The smallest `ts_ns` an entry can have and still match, when the
    /// filter bounds `ts` from below in every alternative (as in
    /// `ts > now() - duration("5m") && http`), so that a store scanning from
    /// the newest entry can stop early.
    pub fn min_ts_ns(&self, now_ns: u64) -> Option<u64> {
        let root = self.root.as_deref()?;
        eval::min_ts(&root.root, now_ns).map(|ns| u64::try_from(ns).unwrap_or(0))
    }
}

#[cfg(test)]
impl Filter {
    /// [`Filter::matches`] without the fast form, to check the two agree.
    fn matches_in_general(&self, e: &Entry, now_ns: u64) -> bool {
        let now = i64::try_from(now_ns).unwrap_or(i64::MAX);
        self.root
            .as_ref()
            .is_none_or(|p| p.matches_in_general(e, now))
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Filter").field(&self.source).finish()
    }
}

impl std::str::FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filter::parse(s)
    }
}

/// The 1-based character column of byte `offset` of `src` (an offset inside a
/// character counts as that character).
fn column_at(src: &str, offset: usize) -> usize {
    src.char_indices()
        .take_while(|(i, c)| i + c.len_utf8() <= offset)
        .count()
        + 1
}
