//! One id scheme from worker to hub. A worker names its entries by
//! connection (`<flow id>-<n>`, `proto::entry_id`), and an entry may refer
//! to another by that name: a WebSocket message to the HTTP upgrade that
//! opened its connection (`upgrade_entry`), an h2c stream to its HTTP/1
//! request (`upgrade:<id>` flag). The hub gives every entry its own id (its
//! store sequence, unique across workers and restarts), so at ingest it
//! turns each such reference into the hub id of the entry referred to, and
//! every id an entry shows resolves through `/api/entries/{id}`.
//!
//! Only entries that can be referred to are remembered: HTTP responses
//! switching protocols (101), which are rare; at most [`REMEMBERED`], the
//! oldest forgotten first. A reference to an entry the hub never stored (a
//! capture started mid-connection) or has forgotten is removed rather than
//! left pointing nowhere.

use proto::v1::{Entry, request, response};
use std::collections::{HashMap, VecDeque};
use tap_dissect::GenericFields;

/// Upgrade entries remembered, at most.
pub const REMEMBERED: usize = 64 * 1024;

/// (node, the worker's entry id) → the hub's id.
#[derive(Default)]
pub struct References {
    ids: HashMap<(String, String), u64>,
    order: VecDeque<(String, String)>,
}

impl References {
    /// Gives `e`, from `node`, the hub id `seq`: remembers it if others may
    /// refer to it, and turns its own references into hub ids.
    pub fn assign(&mut self, node: &str, e: &mut Entry, seq: u64) {
        let worker_id = std::mem::replace(&mut e.id, seq.to_string());
        // Only an HTTP/1 response switching protocols can be referred to.
        let upgrade = e.protocol == proto::v1::Protocol::Http as i32 && e.status() == Some(101);
        if upgrade && !worker_id.is_empty() {
            let key = (node.to_string(), worker_id);
            if self.ids.insert(key.clone(), seq).is_none() {
                self.order.push_back(key);
                if self.order.len() > REMEMBERED
                    && let Some(old) = self.order.pop_front()
                {
                    self.ids.remove(&old);
                }
            }
        }
        if e.flags.is_empty() && e.protocol != proto::v1::Protocol::Websocket as i32 {
            return;
        }
        let resolve = |id: &str| {
            self.ids
                .get(&(node.to_string(), id.to_string()))
                .map(u64::to_string)
        };
        let websocket = match (
            e.request.as_mut().and_then(|r| r.kind.as_mut()),
            e.response.as_mut().and_then(|r| r.kind.as_mut()),
        ) {
            (Some(request::Kind::Websocket(m)), _) | (_, Some(response::Kind::Websocket(m))) => {
                Some(m)
            }
            _ => None,
        };
        if let Some(m) = websocket
            && !m.upgrade_entry.is_empty()
        {
            m.upgrade_entry = resolve(&m.upgrade_entry).unwrap_or_default();
        }
        for f in &mut e.flags {
            if let Some(id) = f.strip_prefix("upgrade:") {
                *f = match resolve(id) {
                    Some(hub_id) => format!("upgrade:{hub_id}"),
                    None => "upgrade".into(),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{HttpResponse, Response, WebSocketMessage};

    fn upgrade(worker_id: &str) -> Entry {
        Entry {
            id: worker_id.into(),
            protocol: proto::v1::Protocol::Http as i32,
            response: Some(Response {
                kind: Some(response::Kind::Http(Box::new(HttpResponse {
                    status: 101,
                    ..Default::default()
                }))),
            }),
            ..Default::default()
        }
    }

    fn message(upgrade_entry: &str) -> Entry {
        Entry {
            protocol: proto::v1::Protocol::Websocket as i32,
            request: Some(proto::v1::Request {
                kind: Some(request::Kind::Websocket(Box::new(WebSocketMessage {
                    upgrade_entry: upgrade_entry.into(),
                    ..Default::default()
                }))),
            }),
            ..Default::default()
        }
    }

    fn upgrade_entry(e: &Entry) -> &str {
        match e.request.as_ref().and_then(|r| r.kind.as_ref()) {
            Some(request::Kind::Websocket(m)) => &m.upgrade_entry,
            _ => panic!("not a websocket message"),
        }
    }

    #[test]
    fn references_become_hub_ids_per_node_and_unknown_ones_are_removed() {
        let mut r = References::default();
        let mut up = upgrade("0000000000000007-0");
        r.assign("a", &mut up, 40);
        assert_eq!(up.id, "40");
        // Node b's worker has its own flow 7.
        r.assign("b", &mut upgrade("0000000000000007-0"), 41);
        let mut m = message("0000000000000007-0");
        r.assign("a", &mut m, 42);
        assert_eq!((m.id.as_str(), upgrade_entry(&m)), ("42", "40"));
        let mut m = message("0000000000000007-0");
        r.assign("b", &mut m, 43);
        assert_eq!(upgrade_entry(&m), "41");
        // Never stored (the capture began mid-connection): no dangling id.
        let mut m = message("0000000000000009-0");
        r.assign("a", &mut m, 44);
        assert_eq!(upgrade_entry(&m), "");
        let mut h2 = Entry {
            flags: vec!["upgrade:0000000000000007-0".into(), "gap".into()],
            ..Default::default()
        };
        r.assign("a", &mut h2, 45);
        assert_eq!(h2.flags, ["upgrade:40", "gap"]);
        let mut h2 = Entry {
            flags: vec!["upgrade:00000000000000ff-0".into()],
            ..Default::default()
        };
        r.assign("a", &mut h2, 46);
        assert_eq!(h2.flags, ["upgrade"]);
    }

    #[test]
    fn remembers_a_bounded_number() {
        let mut r = References::default();
        for i in 0..REMEMBERED + 10 {
            r.assign("a", &mut upgrade(&format!("{i:016x}-0")), i as u64);
        }
        assert_eq!(r.ids.len(), REMEMBERED);
        let mut m = message(&format!("{:016x}-0", 0));
        r.assign("a", &mut m, 0);
        assert_eq!(upgrade_entry(&m), "", "the oldest is forgotten");
        let mut m = message(&format!("{:016x}-0", REMEMBERED + 9));
        r.assign("a", &mut m, 0);
        assert_eq!(upgrade_entry(&m), (REMEMBERED + 9).to_string());
    }
}
