//! The hub's entry store: every entry the workers send, kept decoded in
//! memory within a byte budget and, optionally, in an append-only log on
//! local disk within a second budget. Ingest inserts batches; the query side
//! (API, live stream, service map, PCAP export) scans it newest first or
//! oldest first with a compiled filter.
//!
//! Each entry gets a sequence number (seq, from 1) that only grows, also
//! across restarts when the disk is on; seqs are the API's cursors. Memory
//! holds the newest entries as `Arc<Entry>` in seq order, so a query runs its
//! filter over decoded entries without copying or decoding anything (a
//! million in a few milliseconds), and a result can be handed out without a
//! copy. The disk holds the same entries and older ones, decoded only when a
//! query goes past memory. Memory and disk each evict their oldest entries
//! first, on their own budgets, and every eviction is counted in
//! [`StoreStats`]; `lost_entries` counts those gone from both.
//!
//! Durability: `insert_batch` writes a batch to the log before it returns,
//! so a killed hub loses nothing it acknowledged; with `fsync` the batch is
//! on the device as well, and a power loss loses nothing either. A restart
//! reads the log back (see `disk`) and refills memory with its newest
//! entries.
//!
//! Not internally synchronized: the hub holds it in a lock.

mod disk;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io;
use std::ops::{ControlFlow, Range};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use proto::v1::Entry;

use self::disk::Disk;

/// The memory budget when none is configured.
pub const DEFAULT_MEMORY_BUDGET: u64 = 256 << 20;

/// Limits of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Bytes of heap the entries in memory may take (estimated per entry,
    /// see [`StoreStats::memory_bytes`]).
    pub memory_budget: u64,
    /// Keep entries on local disk too, and read them back after a restart.
    pub disk: Option<DiskConfig>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            memory_budget: DEFAULT_MEMORY_BUDGET,
            disk: None,
        }
    }
}

/// Where and how much to keep on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    /// A directory of the store's own; created when missing.
    pub dir: PathBuf,
    /// Bytes of segment files kept; the oldest segment goes first.
    pub budget: u64,
    /// Flush each batch to the device before `insert_batch` returns. Without
    /// it a batch survives the hub's death but not the machine's.
    pub fsync: bool,
}

impl DiskConfig {
    /// A disk store in `dir` of `budget` bytes, without fsync.
    pub fn new(dir: impl Into<PathBuf>, budget: u64) -> Self {
        DiskConfig {
            dir: dir.into(),
            budget,
            fsync: false,
        }
    }
}

/// Entries and bytes that went to make room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Evicted {
    pub entries: u64,
    pub bytes: u64,
}

/// What the store holds and what it dropped, for the workers panel and
/// `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub entries_in_memory: u64,
    /// Heap the entries in memory take, estimated per entry: struct sizes and
    /// the capacity of every string and vector, rounded as malloc rounds.
    pub memory_bytes: u64,
    pub memory_budget: u64,
    pub evicted_from_memory: Evicted,
    pub disk_entries: u64,
    /// Bytes of segment files.
    pub disk_bytes: u64,
    /// 0 when the disk is off.
    pub disk_budget: u64,
    pub evicted_from_disk: Evicted,
    /// Entries gone from memory and disk both: no query finds them again.
    pub lost_entries: u64,
    /// The oldest and newest seqs a query can still find.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Records cut off the end of the log when it was opened: writes a
    /// killed hub did not finish (never an acknowledged batch).
    pub torn_records_recovered: u64,
    /// Damaged records found in older segments when the log was opened; the
    /// rest of each such segment was skipped.
    pub corrupt_records: u64,
    /// Batches that reached memory but not the disk (disk full, I/O error).
    pub disk_write_errors: u64,
    /// Records a query could not read back from disk (damaged since the
    /// log was opened, or an I/O error).
    pub disk_read_errors: u64,
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("entry store: cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "entry store: cannot write entries {}..{} to {} at byte {offset}: {source}; \
         they are kept in memory only (is the disk full?)",
        seqs.start, seqs.end, path.display()
    )]
    DiskWrite {
        path: PathBuf,
        offset: u64,
        /// The entries not on disk; they are in memory all the same.
        seqs: Range<u64>,
        #[source]
        source: io::Error,
    },
    #[error(
        "entry store: entry {seq} is {len} bytes encoded, over the {limit}-byte record limit; \
         entries {}..{} are kept in memory only",
        seqs.start, seqs.end
    )]
    RecordTooLarge {
        seq: u64,
        len: usize,
        limit: usize,
        seqs: Range<u64>,
    },
    #[error("entry store: {} is damaged at byte {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },
}

/// An entry in memory and the bytes it is counted for.
struct Slot {
    entry: Arc<Entry>,
    bytes: u64,
}

/// What one entry in memory costs: its heap and its slot in the ring.
fn slot_bytes(entry: &Entry) -> u64 {
    tap_dissect::heap::arc_entry(entry) + size_of::<Slot>() as u64
}

/// The entry store; see the module docs.
pub struct Store {
    /// Consecutive seqs from `memory_first`, oldest first.
    memory: VecDeque<Slot>,
    /// Seq of `memory[0]`, or the next seq when memory is empty.
    memory_first: u64,
    memory_bytes: u64,
    memory_budget: u64,
    next_seq: u64,
    disk: Option<Disk>,
    evicted_from_memory: Evicted,
    lost_entries: u64,
    disk_write_errors: u64,
}

impl Store {
    /// Opens the store; with a disk, reads the log back (cutting off a torn
    /// last record, skipping damaged ones) and refills memory with the
    /// newest entries up to the memory budget.
    pub fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let disk = config.disk.as_ref().map(Disk::open).transpose()?;
        let next_seq = disk.as_ref().map_or(1, |d| d.next_seq().max(1));
        // Whatever the disk evicted while opening (a smaller budget than
        // last time) was in no memory.
        let lost_entries = disk.as_ref().map_or(0, |d| d.evicted.entries);
        let mut store = Store {
            memory: VecDeque::new(),
            memory_first: next_seq,
            memory_bytes: 0,
            memory_budget: config.memory_budget,
            next_seq,
            disk,
            evicted_from_memory: Evicted::default(),
            lost_entries,
            disk_write_errors: 0,
        };
        store.refill_memory()?;
        Ok(store)
    }

    /// Loads the newest entries on disk into memory, as many as the budget
    /// takes, stopping at a gap in the seqs: memory holds consecutive ones.
    fn refill_memory(&mut self) -> Result<(), StoreError> {
        let Some(disk) = &self.disk else {
            return Ok(());
        };
        let mut loaded = Vec::new();
        let mut bytes = 0;
        let mut expect = self.next_seq;
        disk.scan_back(self.next_seq, |seq, entry| {
            let cost = slot_bytes(&entry);
            if seq + 1 != expect || bytes + cost > self.memory_budget {
                return ControlFlow::Break(());
            }
            bytes += cost;
            expect = seq;
            loaded.push(Slot {
                entry: Arc::new(entry),
                bytes: cost,
            });
            ControlFlow::Continue(())
        })?;
        self.memory.extend(loaded.into_iter().rev());
        self.memory_first = expect;
        self.memory_bytes = bytes;
        Ok(())
    }

    /// Stores a batch and returns the seqs it got, in order. With a disk the
    /// batch is in the log when this returns. On a disk error the batch is
    /// stored in memory all the same (the error says which seqs are not on
    /// disk), and the error is counted.
    pub fn insert_batch(&mut self, entries: Vec<Entry>) -> Result<Range<u64>, StoreError> {
        let seqs = self.next_seq..self.next_seq + entries.len() as u64;
        if entries.is_empty() {
            return Ok(seqs);
        }
        self.next_seq = seqs.end;
        let mut evicted = Vec::new();
        let written = match &mut self.disk {
            Some(disk) => disk.append(seqs.start, &entries, &mut evicted),
            None => Ok(()),
        };
        for range in evicted {
            // Seqs from memory_first on are (or are about to be) in memory.
            self.lost_entries += range.end.min(self.memory_first).saturating_sub(range.start);
        }
        for entry in entries {
            let bytes = slot_bytes(&entry);
            self.memory_bytes += bytes;
            self.memory.push_back(Slot {
                entry: Arc::new(entry),
                bytes,
            });
        }
        self.evict_memory();
        debug_assert_eq!(self.memory_first + self.memory.len() as u64, self.next_seq);
        written
            .map(|_| seqs)
            .inspect_err(|_| self.disk_write_errors += 1)
    }

    fn evict_memory(&mut self) {
        while self.memory_bytes > self.memory_budget {
            let Some(slot) = self.memory.pop_front() else {
                break;
            };
            let seq = self.memory_first;
            self.memory_first += 1;
            self.memory_bytes -= slot.bytes;
            self.evicted_from_memory.entries += 1;
            self.evicted_from_memory.bytes += slot.bytes;
            if !self.disk.as_ref().is_some_and(|d| d.contains(seq)) {
                self.lost_entries += 1;
            }
        }
    }

    /// The seq the next inserted entry will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The entry with this seq: from memory, else read from disk.
    pub fn get(&self, seq: u64) -> Option<Arc<Entry>> {
        if seq >= self.memory_first {
            let slot = self
                .memory
                .get(usize::try_from(seq - self.memory_first).ok()?)?;
            return Some(Arc::clone(&slot.entry));
        }
        match self.disk.as_ref()?.read(seq) {
            Ok(entry) => entry.map(Arc::new),
            Err(e) => {
                self.disk_read_failed(&e);
                None
            }
        }
    }

    fn disk_read_failed(&self, error: &StoreError) {
        if let Some(disk) = &self.disk {
            disk.read_errors.fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(%error, "entry store: cannot read an entry back from disk");
    }

    /// Calls `f` on each entry with a seq below `before` (all when `None`),
    /// newest first, until `f` breaks: memory first, then the older entries
    /// that are only on disk. Damaged records on disk are skipped and
    /// counted; an error is an I/O error reading the log.
    pub fn scan_back(
        &self,
        before: Option<u64>,
        mut f: impl FnMut(u64, &Entry) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let before = before.unwrap_or(u64::MAX);
        let in_memory = before
            .saturating_sub(self.memory_first)
            .min(self.memory.len() as u64) as usize;
        for (i, slot) in self.memory.range(..in_memory).enumerate().rev() {
            if f(self.memory_first + i as u64, &slot.entry).is_break() {
                return Ok(());
            }
        }
        if let Some(disk) = &self.disk {
            disk.scan_back(before.min(self.memory_first), |seq, entry| f(seq, &entry))
                .inspect_err(|e| self.disk_read_failed(e))?;
        }
        Ok(())
    }

    /// Calls `f` on each entry with a seq above `after` (all when `None`),
    /// oldest first, until `f` breaks: the entries only on disk first, then
    /// memory.
    pub fn scan_forward(
        &self,
        after: Option<u64>,
        mut f: impl FnMut(u64, &Entry) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let from = after.map_or(0, |a| a.saturating_add(1));
        if let Some(disk) = &self.disk
            && from < self.memory_first
            && disk
                .scan_forward(from..self.memory_first, |seq, entry| f(seq, &entry))
                .inspect_err(|e| self.disk_read_failed(e))?
                .is_break()
        {
            return Ok(());
        }
        let skip = from
            .saturating_sub(self.memory_first)
            .min(self.memory.len() as u64) as usize;
        for (i, slot) in self.memory.range(skip..).enumerate() {
            if f(self.memory_first + (skip + i) as u64, &slot.entry).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Sizes and counters, for the workers panel and `/metrics`.
    pub fn stats(&self) -> StoreStats {
        let memory = self.memory_first..self.memory_first + self.memory.len() as u64;
        let on_disk = self.disk.as_ref().map_or(0..0, Disk::seqs);
        let held = [memory, on_disk].into_iter().filter(|r| !r.is_empty());
        let mut stats = StoreStats {
            entries_in_memory: self.memory.len() as u64,
            memory_bytes: self.memory_bytes,
            memory_budget: self.memory_budget,
            evicted_from_memory: self.evicted_from_memory,
            lost_entries: self.lost_entries,
            first_seq: held.clone().map(|r| r.start).min(),
            last_seq: held.map(|r| r.end - 1).max(),
            disk_write_errors: self.disk_write_errors,
            ..StoreStats::default()
        };
        if let Some(disk) = &self.disk {
            stats.disk_entries = disk.entries();
            stats.disk_bytes = disk.bytes();
            stats.disk_budget = disk.budget();
            stats.evicted_from_disk = disk.evicted;
            stats.torn_records_recovered = disk.torn_records;
            stats.corrupt_records = disk.corrupt_records;
            stats.disk_read_errors = disk.read_errors.load(Ordering::Relaxed);
        }
        stats
    }
}
