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

use proto::v1::{Endpoint, Entry, Request, Response, Tunnel};

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

/// Heap bytes a value owns beyond its own inline size. Each protocol lists
/// its messages' fields with [`heap_fields!`] in its `model.rs`; the
/// registry walks the entry's `oneof`s.
pub trait Heap {
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
        $(impl $crate::heap::Heap for $ty {
            fn heap(&self) -> u64 {
                0 $(+ $crate::heap::Heap::heap(&self.$field))*
            }
        })*
    };
}

pub(crate) use heap_fields;

heap_fields! {
    Entry { id, node, src, dst, request, response, redacted, flags, tunnel }
    Endpoint { ip, pod, namespace, service }
    Tunnel { kind, src, dst }
    Request { kind }
    Response { kind }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{Header, HttpRequest, request};

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
