//! The generic fields every protocol fills where they mean something, so one
//! table column, one filter and one UI column work across protocols:
//! `request.method`, `request.path` and `response.status` (see DESIGN.md).

use crate::v1::{Entry, request, response};

impl Entry {
    /// HTTP method, Redis command, DNS query type, SQL verb, …
    pub fn method(&self) -> Option<&str> {
        match self.request.as_ref()?.kind.as_ref()? {
            request::Kind::Http(r) => Some(&r.method),
            request::Kind::Stream(_) => None,
        }
    }

    /// HTTP path, gRPC method, DNS name, SQL text, …
    pub fn path(&self) -> Option<&str> {
        match self.request.as_ref()?.kind.as_ref()? {
            request::Kind::Http(r) => Some(&r.path),
            request::Kind::Stream(_) => None,
        }
    }

    /// HTTP status, gRPC status code, DNS rcode, …
    pub fn status(&self) -> Option<i64> {
        match self.response.as_ref()?.kind.as_ref()? {
            response::Kind::Http(r) => Some(i64::from(r.status)),
            response::Kind::Stream(_) => None,
        }
    }
}
