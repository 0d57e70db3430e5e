//! The methods of AMQP 0-9-1: ids, names, how each takes part in pairing,
//! and which carry content.

/// How a method takes part in pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Waits for the other side's reply.
    Sync,
    /// Answers the oldest synchronous method the other side sent on its channel.
    Reply,
    /// An entry of its own.
    Async,
}

/// Every method of AMQP 0-9-1: class id, method id, name, kind.
pub(super) const METHODS: &[(u16, u16, &str, Kind)] = &[
    (10, 10, "connection.start", Kind::Sync),
    (10, 11, "connection.start-ok", Kind::Reply),
    (10, 20, "connection.secure", Kind::Sync),
    (10, 21, "connection.secure-ok", Kind::Reply),
    (10, 30, "connection.tune", Kind::Sync),
    (10, 31, "connection.tune-ok", Kind::Reply),
    (10, 40, "connection.open", Kind::Sync),
    (10, 41, "connection.open-ok", Kind::Reply),
    (10, 50, "connection.close", Kind::Sync),
    (10, 51, "connection.close-ok", Kind::Reply),
    (10, 60, "connection.blocked", Kind::Async),
    (10, 61, "connection.unblocked", Kind::Async),
    (10, 70, "connection.update-secret", Kind::Sync),
    (10, 71, "connection.update-secret-ok", Kind::Reply),
    (20, 10, "channel.open", Kind::Sync),
    (20, 11, "channel.open-ok", Kind::Reply),
    (20, 20, "channel.flow", Kind::Sync),
    (20, 21, "channel.flow-ok", Kind::Reply),
    (20, 40, "channel.close", Kind::Sync),
    (20, 41, "channel.close-ok", Kind::Reply),
    (40, 10, "exchange.declare", Kind::Sync),
    (40, 11, "exchange.declare-ok", Kind::Reply),
    (40, 20, "exchange.delete", Kind::Sync),
    (40, 21, "exchange.delete-ok", Kind::Reply),
    (40, 30, "exchange.bind", Kind::Sync),
    (40, 31, "exchange.bind-ok", Kind::Reply),
    (40, 40, "exchange.unbind", Kind::Sync),
    (40, 51, "exchange.unbind-ok", Kind::Reply),
    (50, 10, "queue.declare", Kind::Sync),
    (50, 11, "queue.declare-ok", Kind::Reply),
    (50, 20, "queue.bind", Kind::Sync),
    (50, 21, "queue.bind-ok", Kind::Reply),
    (50, 30, "queue.purge", Kind::Sync),
    (50, 31, "queue.purge-ok", Kind::Reply),
    (50, 40, "queue.delete", Kind::Sync),
    (50, 41, "queue.delete-ok", Kind::Reply),
    (50, 50, "queue.unbind", Kind::Sync),
    (50, 51, "queue.unbind-ok", Kind::Reply),
    (60, 10, "basic.qos", Kind::Sync),
    (60, 11, "basic.qos-ok", Kind::Reply),
    (60, 20, "basic.consume", Kind::Sync),
    (60, 21, "basic.consume-ok", Kind::Reply),
    (60, 30, "basic.cancel", Kind::Sync),
    (60, 31, "basic.cancel-ok", Kind::Reply),
    (60, 40, "basic.publish", Kind::Async),
    (60, 50, "basic.return", Kind::Async),
    (60, 60, "basic.deliver", Kind::Async),
    (60, 70, "basic.get", Kind::Sync),
    (60, 71, "basic.get-ok", Kind::Reply),
    (60, 72, "basic.get-empty", Kind::Reply),
    (60, 80, "basic.ack", Kind::Async),
    (60, 90, "basic.reject", Kind::Async),
    (60, 100, "basic.recover-async", Kind::Async),
    (60, 110, "basic.recover", Kind::Sync),
    (60, 111, "basic.recover-ok", Kind::Reply),
    (60, 120, "basic.nack", Kind::Async),
    (85, 10, "confirm.select", Kind::Sync),
    (85, 11, "confirm.select-ok", Kind::Reply),
    (90, 10, "tx.select", Kind::Sync),
    (90, 11, "tx.select-ok", Kind::Reply),
    (90, 20, "tx.commit", Kind::Sync),
    (90, 21, "tx.commit-ok", Kind::Reply),
    (90, 30, "tx.rollback", Kind::Sync),
    (90, 31, "tx.rollback-ok", Kind::Reply),
];

pub(super) fn class_name(class: u16) -> Option<&'static str> {
    Some(match class {
        10 => "connection",
        20 => "channel",
        40 => "exchange",
        50 => "queue",
        60 => "basic",
        85 => "confirm",
        90 => "tx",
        _ => return None,
    })
}

pub(super) fn lookup(class: u16, method: u16) -> Option<(&'static str, Kind)> {
    METHODS
        .iter()
        .find(|m| m.0 == class && m.1 == method)
        .map(|m| (m.2, m.3))
}

/// Methods followed by a content header and body frames.
pub(super) fn has_content(class: u16, method: u16) -> bool {
    class == 60 && matches!(method, 40 | 50 | 60 | 71)
}
