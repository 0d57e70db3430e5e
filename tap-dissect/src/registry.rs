//! The registry: every protocol kubetap knows, one line each, and the
//! functions through which the rest of kubetap asks about an entry without
//! naming a protocol (detection's probes, the JSON form, the generic fields,
//! the heap walk, the service map's error rule, the filter's field names).
//!
//! A protocol lives in its own folder and implements [`Protocol`] there; if
//! it has messages of its own in the entry's `oneof`s (`request.kind`,
//! `response.kind` in `entry.proto`) it implements [`Messages`] too. Its line
//! below names the type, and the `oneof` arm after `=>` when it has one:
//! matches over the arms are generated from this list, so a missing line
//! does not compile.

use crate::heap::Heap;
use crate::{DatagramSpec, ProtocolSpec};
use proto::v1::{self, Entry, request, response};
use serde::Serialize;

/// Everything kubetap knows about one protocol; implemented in its folder.
pub trait Protocol {
    /// Its value of the entry's `protocol` field (its name is `ID.name()`).
    const ID: v1::Protocol;
    /// How a TCP connection speaking it is recognised and dissected; probed
    /// in the registry's order. `None`: never probed (reached through
    /// another protocol, as gRPC and GraphQL are through HTTP).
    const TCP: Option<ProtocolSpec> = None;
    /// The same for a UDP flow.
    const DATAGRAM: Option<DatagramSpec> = None;
    /// The field names its JSON form writes under `request` and `response`
    /// (the filter's completion, `/api/fields`); a test holds them to the
    /// serializer.
    const REQUEST_FIELDS: &'static [&'static str];
    const RESPONSE_FIELDS: &'static [&'static str];
    /// The colour the UI draws it in (badges, service-map edges), `#rrggbb`.
    const COLOUR: &'static str;
    /// How the UI reads its `response.status`.
    const STATUS: StatusClasses = StatusClasses::ZERO_IS_OK;

    /// Whether every request of this entry's kind gets an answer, so that
    /// one left without (flagged `no_response`, and nothing lost: no `gap`)
    /// counts as an error in the service map.
    fn expects_answer(_e: &Entry) -> bool {
        false
    }
}

/// A protocol's messages in the entry's `oneof`s: their JSON form, heap,
/// generic fields and error rule. The entry's messages decide these, not
/// its `protocol` (an entry is classified by the response it has).
pub trait Messages {
    type Request: Heap;
    type Response: Heap;
    fn request_json(m: &Self::Request) -> impl Serialize + '_;
    fn response_json(m: &Self::Response) -> impl Serialize + '_;
    /// The generic `request.method` (docs/entries.md): HTTP method, Redis
    /// command, SQL verb, …
    fn method(m: &Self::Request) -> Option<&str>;
    /// The generic `request.path`: HTTP path, DNS name, SQL text, …
    fn path(m: &Self::Request) -> Option<&str>;
    /// The generic `response.status`: HTTP status, gRPC code, DNS rcode, …;
    /// `request` is the entry's other side.
    fn status(m: &Self::Response, request: Option<&request::Kind>) -> Option<i64>;
    /// Whether this response says the exchange failed; `e` for its flags.
    fn failed(m: &Self::Response, e: &Entry) -> bool;
    /// Whether this request already says so (a close with an error code
    /// that the other side confirmed).
    fn request_failed(_m: &Self::Request) -> bool {
        false
    }
    /// Messages that stand alone on the side of their sender (WebSocket's)
    /// give all three generic fields from whichever side holds them.
    fn standalone_request(_m: &Self::Request) -> Option<Standalone<'_>> {
        None
    }
    fn standalone_response(_m: &Self::Response) -> Option<Standalone<'_>> {
        None
    }
}

/// How the UI reads a `response.status`: inclusive ranges per class; any
/// value outside them is a failure.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct StatusClasses {
    pub ok: &'static [[i64; 2]],
    pub redirect: &'static [[i64; 2]],
    pub client: &'static [[i64; 2]],
}

impl StatusClasses {
    /// 0 is success, anything else a failure (gRPC, Kafka, Redis, PostgreSQL).
    pub const ZERO_IS_OK: StatusClasses = StatusClasses {
        ok: &[[0, 0]],
        redirect: &[],
        client: &[],
    };
    /// HTTP's classes: 1xx and 2xx, 3xx, 4xx; 5xx (and anything else) fail.
    pub const HTTP: StatusClasses = StatusClasses {
        ok: &[[0, 299]],
        redirect: &[[300, 399]],
        client: &[[400, 499]],
    };
}

/// The generic fields of a message that stands alone.
pub struct Standalone<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: Option<i64>,
}

/// Generates the registry's tables and dispatch functions from its list.
macro_rules! registry {
    ($($p:ty $(=> $kind:ident)?),* $(,)?) => {
        /// Every TCP protocol's spec, in probe order.
        static TCP: &[Option<ProtocolSpec>] = &[$(<$p as Protocol>::TCP),*];
        /// Every UDP protocol's spec, in probe order.
        static DATAGRAM: &[Option<DatagramSpec>] = &[$(<$p as Protocol>::DATAGRAM),*];

        /// Every protocol as the UI learns it (`/api/fields`).
        pub fn protocols() -> Vec<ProtocolInfo> {
            vec![$(ProtocolInfo {
                protocol: <$p as Protocol>::ID.name(),
                request: <$p as Protocol>::REQUEST_FIELDS,
                response: <$p as Protocol>::RESPONSE_FIELDS,
                colour: <$p as Protocol>::COLOUR,
                status: <$p as Protocol>::STATUS,
            }),*]
        }

        /// Asks `v` of the protocol whose `ID` is `id`.
        fn with<V: Visit>(id: i32, v: V) -> Option<V::Out> {
            $(if id == <$p as Protocol>::ID as i32 {
                return Some(v.visit::<$p>());
            })*
            None
        }

        /// Writes a request's JSON form (null when absent).
        pub(crate) fn request_json<S: serde::Serializer>(
            kind: Option<&request::Kind>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match kind {
                $($(Some(request::Kind::$kind(m)) => s.serialize_some(&<$p as Messages>::request_json(m)),)?)*
                None => s.serialize_none(),
            }
        }

        /// Writes a response's JSON form (null when absent).
        pub(crate) fn response_json<S: serde::Serializer>(
            kind: Option<&response::Kind>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match kind {
                $($(Some(response::Kind::$kind(m)) => s.serialize_some(&<$p as Messages>::response_json(m)),)?)*
                None => s.serialize_none(),
            }
        }

        /// The request's generic method and path.
        fn request_generic(kind: &request::Kind) -> (Option<&str>, Option<&str>) {
            match kind {
                $($(request::Kind::$kind(m) => (<$p as Messages>::method(m), <$p as Messages>::path(m)),)?)*
            }
        }

        fn response_status(kind: &response::Kind, request: Option<&request::Kind>) -> Option<i64> {
            match kind {
                $($(response::Kind::$kind(m) => <$p as Messages>::status(m, request),)?)*
            }
        }

        fn response_failed(kind: &response::Kind, e: &Entry) -> bool {
            match kind {
                $($(response::Kind::$kind(m) => <$p as Messages>::failed(m, e),)?)*
            }
        }

        fn request_failed(kind: &request::Kind) -> bool {
            match kind {
                $($(request::Kind::$kind(m) => <$p as Messages>::request_failed(m),)?)*
            }
        }

        /// The message that stands alone, on whichever side (the request's first).
        fn standalone(e: &Entry) -> Option<Standalone<'_>> {
            let from_request = match request_kind(e) {
                $($(Some(request::Kind::$kind(m)) => <$p as Messages>::standalone_request(m),)?)*
                None => None,
            };
            from_request.or_else(|| match response_kind(e) {
                $($(Some(response::Kind::$kind(m)) => <$p as Messages>::standalone_response(m),)?)*
                None => None,
            })
        }

        impl Heap for request::Kind {
            fn heap(&self) -> u64 {
                match self {
                    $($(request::Kind::$kind(m) => m.heap(),)?)*
                }
            }
        }

        impl Heap for response::Kind {
            fn heap(&self) -> u64 {
                match self {
                    $($(response::Kind::$kind(m) => m.heap(),)?)*
                }
            }
        }
    };
}

// The registry. Order is probe order: protocols with an unmistakable start
// first, short binary ones (DNS) late.
registry! {
    crate::http1::model::Http => Http,
    crate::http2::model::Http2,
    crate::grpc::model::Grpc => Grpc,
    crate::graphql::model::Graphql => Graphql,
    crate::redis::model::Redis => Redis,
    crate::postgres::model::Postgres => Postgres,
    crate::kafka::model::Kafka => Kafka,
    crate::amqp::model::Amqp => Amqp,
    crate::tls::model::Tls => Tls,
    crate::dns::model::Dns => Dns,
    crate::websocket::model::WebSocket => Websocket,
    crate::socks::model::Socks => Socks,
    crate::stream::Tcp => Stream,
    crate::stream::Udp,
}

/// The TCP protocols that detection probes, in order.
pub fn tcp_protocols() -> impl Iterator<Item = &'static ProtocolSpec> {
    TCP.iter().flatten()
}

/// The UDP protocols that detection probes, in order.
pub fn datagram_protocols() -> impl Iterator<Item = &'static DatagramSpec> {
    DATAGRAM.iter().flatten()
}

/// One protocol as the UI learns it: its name, its field names under
/// `request` and `response`, its colour and how its status reads.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ProtocolInfo {
    pub protocol: &'static str,
    pub request: &'static [&'static str],
    pub response: &'static [&'static str],
    pub colour: &'static str,
    pub status: StatusClasses,
}

/// A question asked of one protocol, answered by [`with`].
trait Visit {
    type Out;
    fn visit<P: Protocol>(self) -> Self::Out;
}

/// The generic fields every protocol fills where they mean something, so one
/// table column, one filter and one UI column work across protocols:
/// `request.method`, `request.path` and `response.status` (docs/entries.md).
pub trait GenericFields {
    fn method(&self) -> Option<&str>;
    fn path(&self) -> Option<&str>;
    fn status(&self) -> Option<i64>;
}

impl GenericFields for Entry {
    fn method(&self) -> Option<&str> {
        if let Some(m) = standalone(self) {
            return Some(m.method);
        }
        request_generic(request_kind(self)?).0
    }

    fn path(&self) -> Option<&str> {
        if let Some(m) = standalone(self) {
            return Some(m.path);
        }
        request_generic(request_kind(self)?).1
    }

    fn status(&self) -> Option<i64> {
        if let Some(m) = standalone(self) {
            return m.status;
        }
        response_status(response_kind(self)?, request_kind(self))
    }
}

/// Whether the service map counts the entry as an error: its response says
/// so, or its request does, or it went unanswered where its protocol always
/// answers. Each protocol's rules are in its folder's `model.rs`.
pub fn failed(e: &Entry) -> bool {
    struct ExpectsAnswer<'a>(&'a Entry);
    impl Visit for ExpectsAnswer<'_> {
        type Out = bool;
        fn visit<P: Protocol>(self) -> Self::Out {
            P::expects_answer(self.0)
        }
    }
    response_kind(e).is_some_and(|k| response_failed(k, e))
        || request_kind(e).is_some_and(request_failed)
        || (response_kind(e).is_none()
            && has_flag(e, "no_response")
            && !has_flag(e, "gap")
            && with(e.protocol, ExpectsAnswer(e)).unwrap_or(false))
}

/// The request side's message, when it has one.
pub(crate) fn request_kind(e: &Entry) -> Option<&request::Kind> {
    e.request.as_ref().and_then(|r| r.kind.as_ref())
}

/// The response side's message, when it has one.
pub(crate) fn response_kind(e: &Entry) -> Option<&response::Kind> {
    e.response.as_ref().and_then(|r| r.kind.as_ref())
}

/// Whether the entry carries `flag`.
pub(crate) fn has_flag(e: &Entry, flag: &str) -> bool {
    e.flags.iter().any(|f| f == flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_is_listed_once_and_every_probe_is_named_after_it() {
        let names: Vec<&str> = protocols().iter().map(|f| f.protocol).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(names.len(), 14, "twelve protocols, tcp and udp: {names:?}");
        for spec in tcp_protocols() {
            assert!(names.contains(&spec.name), "{}", spec.name);
        }
        let tcp: Vec<&str> = tcp_protocols().map(|s| s.name).collect();
        assert_eq!(
            tcp,
            [
                "http",
                "http2",
                "redis",
                "postgres",
                "kafka",
                "amqp",
                "tls",
                "dns",
                "websocket",
                "socks"
            ]
        );
        let udp: Vec<&str> = datagram_protocols().map(|s| s.name).collect();
        assert_eq!(udp, ["dns"]);
    }

    #[test]
    fn colours_are_css_hex_and_status_ranges_are_ordered() {
        for p in protocols() {
            let c = p.colour.strip_prefix('#').unwrap_or("");
            assert!(
                c.len() == 6 && c.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}: {}",
                p.protocol,
                p.colour
            );
            for [lo, hi] in [p.status.ok, p.status.redirect, p.status.client].concat() {
                assert!(lo <= hi, "{}: [{lo}, {hi}]", p.protocol);
            }
        }
    }
}
