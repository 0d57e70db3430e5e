//! The entry queue: the one place where entries wait between the capture
//! (a file, live interfaces, pods) and the sink that takes them away (the
//! gRPC shipper, an in-process hub, stdout).
//!
//! It is bounded twice: in entries and in memory (each entry counted as the
//! heap it holds, `tap_dissect::heap`, so a few huge bodies cannot fill the node's
//! memory while the count looks small). A live capture *offers*: what does
//! not fit is dropped and counted by cause, and capture never waits. A file
//! *sends*: it waits for room, since nothing is lost by waiting. Sinks *take*
//! batches by polling: a sink waiting on the queue would be woken by every
//! entry (a context switch per entry at full rate).

use proto::v1::Entry;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// The queue's bounds.
#[derive(Debug, Clone, Copy)]
pub struct QueueBounds {
    /// Entries waiting, at most.
    pub entries: usize,
    /// Heap bytes of the entries waiting, at most.
    pub memory: usize,
}

impl Default for QueueBounds {
    fn default() -> Self {
        QueueBounds {
            entries: 64 * 1024,
            memory: 32 << 20,
        }
    }
}

/// What the queue dropped, by cause.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueDrops {
    /// Offered while the queue held its most entries.
    pub full: u64,
    /// Offered while the entries waiting held the most memory.
    pub memory: u64,
    /// Offered after the queue was closed (the sink had gone).
    pub closed: u64,
}

impl QueueDrops {
    pub fn total(&self) -> u64 {
        self.full + self.memory + self.closed
    }
}

/// What [`EntryQueue::take_within`] found.
// Returned by value once per entry and never stored: boxing the entry would
// cost an allocation per entry instead.
#[allow(clippy::large_enum_variant)]
pub enum Take {
    Entry(Entry),
    /// Nothing queued.
    Empty,
    /// The oldest entry would not fit within the limit.
    Full,
}

#[derive(Debug, thiserror::Error)]
#[error("the entry queue is closed (its sink has stopped)")]
pub struct Closed;

struct State {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
    closed: bool,
}

/// A bounded queue of entries, shared by the producers and one sink.
pub struct EntryQueue {
    bounds: QueueBounds,
    state: Mutex<State>,
    /// Signalled when room is made or the queue closes (a file waits on it).
    room: Condvar,
    full: AtomicU64,
    memory: AtomicU64,
    closed: AtomicU64,
    accepted: AtomicU64,
}

impl EntryQueue {
    pub fn new(bounds: QueueBounds) -> EntryQueue {
        EntryQueue {
            bounds: QueueBounds {
                entries: bounds.entries.max(1),
                memory: bounds.memory.max(1),
            },
            state: Mutex::new(State {
                entries: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            room: Condvar::new(),
            full: AtomicU64::new(0),
            memory: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        }
    }

    pub fn bounds(&self) -> QueueBounds {
        self.bounds
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `e` holds, in bytes; an entry larger than the whole bound counts
    /// as the bound (it goes alone).
    fn cost(&self, e: &Entry) -> usize {
        usize::try_from(tap_dissect::heap::entry(e))
            .unwrap_or(usize::MAX)
            .min(self.bounds.memory)
    }

    /// Queues an entry without waiting (live capture): when the queue is full
    /// in entries or memory, or closed, the entry is dropped, counted by
    /// cause, and `false` returned.
    pub fn offer(&self, e: Entry) -> bool {
        let cost = self.cost(&e);
        let mut s = self.lock();
        let cause = if s.closed {
            &self.closed
        } else if s.entries.len() >= self.bounds.entries {
            &self.full
        } else if s.bytes + cost > self.bounds.memory {
            &self.memory
        } else {
            s.bytes += cost;
            s.entries.push_back((e, cost));
            self.accepted.fetch_add(1, Ordering::Relaxed);
            return true;
        };
        drop(s);
        cause.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Queues every entry of `batch`, waiting for room as needed (a capture
    /// file: nothing is lost by waiting). Fails once the queue is closed.
    pub fn send_all(&self, batch: &mut Vec<Entry>) -> Result<(), Closed> {
        let mut s = self.lock();
        for e in batch.drain(..) {
            let cost = self.cost(&e);
            loop {
                if s.closed {
                    return Err(Closed);
                }
                let fits = s.entries.is_empty()
                    || (s.entries.len() < self.bounds.entries
                        && s.bytes + cost <= self.bounds.memory);
                if fits {
                    break;
                }
                s = self.room.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            s.bytes += cost;
            s.entries.push_back((e, cost));
            self.accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Takes up to `max` entries, oldest first, without waiting.
    pub fn take(&self, max: usize) -> Vec<Entry> {
        let mut s = self.lock();
        let n = max.min(s.entries.len());
        let mut out = Vec::with_capacity(n);
        let mut freed = 0;
        for (e, cost) in s.entries.drain(..n) {
            freed += cost;
            out.push(e);
        }
        s.bytes -= freed;
        drop(s);
        if n > 0 {
            self.room.notify_all();
        }
        out
    }

    /// Takes the oldest entry if its encoded size with `bytes` already taken
    /// stays within `limit` (a gRPC batch's size).
    pub fn take_within(&self, bytes: &mut usize, limit: usize) -> Take {
        use prost::Message as _;
        let mut s = self.lock();
        let Some((front, _)) = s.entries.front() else {
            return Take::Empty;
        };
        let len = front.encoded_len();
        if *bytes > 0 && *bytes + len > limit {
            return Take::Full;
        }
        let Some((e, cost)) = s.entries.pop_front() else {
            return Take::Empty;
        };
        s.bytes -= cost;
        drop(s);
        *bytes += len;
        self.room.notify_all();
        Take::Entry(e)
    }

    /// No more entries: producers' `send_all` and `offer` fail from now on
    /// (offers are counted as `closed` drops); what is queued stays to be taken.
    pub fn close(&self) {
        self.lock().closed = true;
        self.room.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries ever queued.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn drops(&self) -> QueueDrops {
        QueueDrops {
            full: self.full.load(Ordering::Relaxed),
            memory: self.memory.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{Body, HttpRequest, Request, request};
    use std::sync::Arc;

    fn entry_with_body(bytes: usize) -> Entry {
        Entry {
            request: Some(Request {
                kind: Some(request::Kind::Http(Box::new(HttpRequest {
                    body: Some(Body {
                        data: vec![b'x'; bytes],
                        ..Default::default()
                    }),
                    ..Default::default()
                }))),
            }),
            ..Default::default()
        }
    }

    /// Nothing takes from the queue: it accepts entries until their memory
    /// reaches the bound, and drops (and counts, by cause) the rest.
    #[test]
    fn offers_are_bounded_in_memory_and_entries_and_counted_by_cause() {
        let q = EntryQueue::new(QueueBounds {
            entries: 10_000,
            memory: 1 << 20,
        });
        let cost = |e: &Entry| tap_dissect::heap::entry(e) as usize;
        let big = cost(&entry_with_body(100 << 10));
        assert!((100 << 10..101 << 10).contains(&big), "{big} bytes");
        let offered = 100;
        let taken = (0..offered)
            .filter(|_| q.offer(entry_with_body(100 << 10)))
            .count();
        assert_eq!(taken, (1 << 20) / big);
        assert_eq!(q.len(), taken);
        assert_eq!(q.drops().memory, (offered - taken) as u64);
        // Small entries fill what is left, and no more.
        let small = (0..10_000).filter(|_| q.offer(entry_with_body(0))).count();
        assert_eq!(small, ((1 << 20) - taken * big) / cost(&entry_with_body(0)));
        // An entry larger than the whole bound is never taken while others wait.
        assert!(!q.offer(entry_with_body(2 << 20)));

        let q = EntryQueue::new(QueueBounds {
            entries: 3,
            memory: 1 << 20,
        });
        let taken = (0..5).filter(|_| q.offer(Entry::default())).count();
        assert_eq!(taken, 3);
        assert_eq!(
            q.drops(),
            QueueDrops {
                full: 2,
                ..Default::default()
            }
        );
        q.close();
        assert!(!q.offer(Entry::default()));
        assert_eq!(q.drops().closed, 1);
        assert_eq!(q.drops().total(), 3);
        // What was queued before closing is still there to take.
        assert_eq!(q.take(10).len(), 3);
    }

    /// A file waits for room instead of dropping, in order, and stops
    /// waiting when the queue closes.
    #[test]
    fn send_all_waits_for_room_and_keeps_order() {
        let q = Arc::new(EntryQueue::new(QueueBounds {
            entries: 4,
            memory: 1 << 20,
        }));
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut batch: Vec<Entry> = (0..100)
                    .map(|i| Entry {
                        ts_ns: i,
                        ..Default::default()
                    })
                    .collect();
                q.send_all(&mut batch)
            })
        };
        let mut got = Vec::new();
        while got.len() < 100 {
            assert!(q.len() <= 4);
            got.extend(q.take(3).into_iter().map(|e| e.ts_ns));
            std::thread::yield_now();
        }
        producer.join().unwrap().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert_eq!(q.drops().total(), 0);

        let full = Arc::new(EntryQueue::new(QueueBounds {
            entries: 1,
            memory: 1 << 20,
        }));
        let producer = {
            let q = full.clone();
            std::thread::spawn(move || q.send_all(&mut vec![Entry::default(); 3]))
        };
        while full.is_empty() {
            std::thread::yield_now();
        }
        full.close();
        assert!(producer.join().unwrap().is_err());
    }
}
