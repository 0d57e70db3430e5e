//! kubetap's protobuf schema and generated types: the entry model that workers
//! produce and the hub stores, and (in `json`) its stable JSON form.
#![forbid(unsafe_code)]

pub mod json;
mod summary;

/// Generated from `proto/kubetap/v1/*.proto`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/kubetap.v1.rs"));
}

pub use v1::{Entry, Protocol};

impl v1::Protocol {
    /// The protocol's name as used in the JSON form and the filter language.
    pub fn name(self) -> &'static str {
        use v1::Protocol::*;
        match self {
            Unspecified => "unknown",
            Http => "http",
            Http2 => "http2",
            Grpc => "grpc",
            Graphql => "graphql",
            Websocket => "websocket",
            Redis => "redis",
            Kafka => "kafka",
            Amqp => "amqp",
            Dns => "dns",
            Postgres => "postgres",
            Tcp => "tcp",
            Udp => "udp",
        }
    }
}
