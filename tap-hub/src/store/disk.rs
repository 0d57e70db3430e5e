//! The store's log on local disk: append-only segment files of checksummed
//! records, so that the hub keeps more history than its memory holds and a
//! restart (or a kill) loses no entry it acknowledged.
//!
//! A segment is `seg-<its first seq, 20 digits>.log`: an 8-byte magic, then
//! records `[payload len u32][crc32 u32][seq u64][payload]`, little-endian;
//! the payload is the prost-encoded entry and the CRC-32 (IEEE, the one
//! `crc32fast::hash` computes) covers seq and payload. A segment holds
//! consecutive seqs: after a failed write it is closed, and the next batch
//! starts a segment of its own. In memory each segment is its first seq and
//! a dense vector of record offsets (4 bytes per record), enough to find any
//! record by seq and to read records in either direction.
//!
//! Recovery reads every record once and checks it. A bad record in the last
//! segment is where a killed write stopped: the file is cut there. A bad
//! record in an older segment is damage: the rest of that segment is skipped.
//! Both are counted and logged; neither stops the hub. No length read from a
//! file is trusted beyond `MAX_RECORD` and the file's own size.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::ops::{ControlFlow, Range};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;
use proto::v1::Entry;

use super::{DiskConfig, Evicted, StoreError};

/// Marks a segment file as ours and its format version.
const MAGIC: &[u8; 8] = b"KTAPLOG1";
const RECORD_HEADER: usize = 16;
/// The largest payload written or read back; workers cap bodies far below it,
/// and a length field past it is damage, not an entry.
pub(super) const MAX_RECORD: usize = 16 << 20;
/// How much of a segment a scan reads with one system call.
const READ_CHUNK: u64 = 1 << 20;
const SEGMENT_MAX: u64 = 64 << 20;
/// Keeps a tiny budget from making one segment per record.
const SEGMENT_MIN: u64 = 4 << 10;

/// CRC-32 (IEEE 802.3, reflected), bytewise from a table: the same checksum
/// as `crc32fast::hash`, which can replace it without changing the format.
fn crc32(parts: &[&[u8]]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

/// One segment file and where its records are.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    first_seq: u64,
    /// Byte offset of each record; record `i` has seq `first_seq + i`.
    offsets: Vec<u32>,
    /// End of the last good record.
    end: u64,
    /// Bytes of the file, counted against the budget (beyond `end` when an
    /// older segment has a damaged tail that was skipped).
    size: u64,
}

impl Segment {
    fn seqs(&self) -> Range<u64> {
        self.first_seq..self.first_seq + self.offsets.len() as u64
    }

    fn span(&self, i: usize) -> (u64, u64) {
        let end = self.offsets.get(i + 1).map_or(self.end, |&o| u64::from(o));
        (u64::from(self.offsets[i]), end)
    }
}

/// The on-disk log: segments oldest first, the last one open for appends.
pub(super) struct Disk {
    dir: PathBuf,
    budget: u64,
    fsync: bool,
    segment_max: u64,
    segments: VecDeque<Segment>,
    /// Append handle of the last segment; `None` when it is closed (full, or
    /// after a failed write) and the next batch starts a new one.
    active: Option<File>,
    bytes: u64,
    entries: u64,
    /// The highest seq a segment file is named with at open: the next seq
    /// is never below it, even when that file held no whole record.
    seq_floor: u64,
    pub(super) evicted: Evicted,
    pub(super) torn_records: u64,
    pub(super) corrupt_records: u64,
    /// Queries read with `&self`; the counter must not need `&mut`.
    pub(super) read_errors: AtomicU64,
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn segment_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Checks one record read whole into `buf` and decodes it.
fn decode_record(buf: &[u8], seq: u64) -> Result<Entry, &'static str> {
    if buf.len() < RECORD_HEADER {
        return Err("record shorter than its header");
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len != buf.len() - RECORD_HEADER {
        return Err("record length does not match the index");
    }
    if crc32(&[&buf[8..]]) != crc {
        return Err("checksum mismatch");
    }
    if u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes")) != seq {
        return Err("record has another seq than the index says");
    }
    Entry::decode(&buf[RECORD_HEADER..]).map_err(|_| "checksum good but the entry does not decode")
}

/// What reading a segment from its start found.
struct Scanned {
    offsets: Vec<u32>,
    end: u64,
    size: u64,
    /// Why the records stop before the end of the file.
    bad: Option<&'static str>,
}

/// Reads a segment's records in order, checking each, until the file ends
/// or a record is bad. Memory stays bounded by `MAX_RECORD` whatever the
/// file holds.
fn scan_segment(path: &Path, first_seq: u64) -> Result<Scanned, StoreError> {
    let file = File::open(path).map_err(io_error("open", path))?;
    let size = file.metadata().map_err(io_error("stat", path))?.len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut scanned = Scanned {
        offsets: Vec::new(),
        end: 0,
        size,
        bad: None,
    };
    let mut magic = [0u8; 8];
    if size < MAGIC.len() as u64 {
        scanned.bad = Some("file shorter than the segment header");
        return Ok(scanned);
    }
    reader
        .read_exact(&mut magic)
        .map_err(io_error("read", path))?;
    if &magic != MAGIC {
        scanned.bad = Some("not a kubetap segment (bad magic)");
        return Ok(scanned);
    }
    let mut pos = MAGIC.len() as u64;
    scanned.end = pos;
    let mut payload = Vec::new();
    let mut seq = first_seq;
    while pos < size {
        if size - pos < RECORD_HEADER as u64 {
            scanned.bad = Some("record header cut short");
            break;
        }
        let mut header = [0u8; RECORD_HEADER];
        reader
            .read_exact(&mut header)
            .map_err(io_error("read", path))?;
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            scanned.bad = Some("record length over the limit");
            break;
        }
        if size - pos - (RECORD_HEADER as u64) < len as u64 {
            scanned.bad = Some("record cut short");
            break;
        }
        let Ok(offset) = u32::try_from(pos) else {
            scanned.bad = Some("segment larger than 4 GiB");
            break;
        };
        payload.resize(len, 0);
        reader
            .read_exact(&mut payload)
            .map_err(io_error("read", path))?;
        if crc32(&[&header[8..16], &payload]) != crc {
            scanned.bad = Some("checksum mismatch");
            break;
        }
        if u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")) != seq {
            scanned.bad = Some("seq out of order");
            break;
        }
        scanned.offsets.push(offset);
        pos += (RECORD_HEADER + len) as u64;
        scanned.end = pos;
        seq += 1;
    }
    Ok(scanned)
}

impl Disk {
    /// Opens the log in `config.dir` (creating it), checking every record.
    pub(super) fn open(config: &DiskConfig) -> Result<Disk, StoreError> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        let mut found = Vec::new();
        for item in fs::read_dir(&dir).map_err(io_error("list directory", &dir))? {
            let item = item.map_err(io_error("list directory", &dir))?;
            if let Some(seq) = item.file_name().to_str().and_then(parse_segment_name) {
                found.push((seq, item.path()));
            }
        }
        found.sort();
        let mut disk = Disk {
            segment_max: (config.budget / 8).clamp(SEGMENT_MIN, SEGMENT_MAX),
            dir,
            budget: config.budget,
            fsync: config.fsync,
            segments: VecDeque::new(),
            active: None,
            bytes: 0,
            entries: 0,
            seq_floor: found.last().map_or(0, |(seq, _)| *seq),
            evicted: Evicted::default(),
            torn_records: 0,
            corrupt_records: 0,
            read_errors: AtomicU64::new(0),
        };
        let last = found.len().checked_sub(1);
        for (i, (first_seq, path)) in found.into_iter().enumerate() {
            disk.recover_segment(path, first_seq, Some(i) == last)?;
        }
        if let Some(seg) = disk.segments.back()
            && seg.end == seg.size
            && seg.end < disk.segment_max
        {
            let file = OpenOptions::new()
                .append(true)
                .open(&seg.path)
                .map_err(io_error("open for appending", &seg.path))?;
            disk.active = Some(file);
        }
        // The budget may have shrunk since the last run.
        disk.evict_for(0);
        Ok(disk)
    }

    fn recover_segment(
        &mut self,
        path: PathBuf,
        first_seq: u64,
        last: bool,
    ) -> Result<(), StoreError> {
        let scanned = scan_segment(&path, first_seq)?;
        let after = self.segments.back().map(|s| s.seqs().end);
        if after.is_some_and(|after| first_seq < after) {
            tracing::warn!(path = %path.display(), "segment overlaps the one before it; removing it");
            self.corrupt_records += 1;
            return remove(&path);
        }
        if let Some(reason) = scanned.bad {
            let lost = scanned.size - scanned.end;
            if last {
                self.torn_records += 1;
                tracing::warn!(
                    path = %path.display(), offset = scanned.end, bytes = lost, reason,
                    "entry store: cutting a torn record off the last segment (the hub stopped mid-write)"
                );
            } else {
                self.corrupt_records += 1;
                tracing::warn!(
                    path = %path.display(), offset = scanned.end, bytes = lost, reason,
                    "entry store: damaged record in a segment; skipping the rest of it"
                );
            }
        }
        if scanned.offsets.is_empty() {
            return remove(&path);
        }
        let mut size = scanned.size;
        if last && scanned.bad.is_some() {
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(scanned.end))
                .map_err(io_error("truncate torn record of", &path))?;
            size = scanned.end;
        }
        self.bytes += size;
        self.entries += scanned.offsets.len() as u64;
        self.segments.push_back(Segment {
            path,
            first_seq,
            offsets: scanned.offsets,
            end: scanned.end,
            size,
        });
        Ok(())
    }

    /// Seqs from the first to the last record on disk; empty when none.
    pub(super) fn seqs(&self) -> Range<u64> {
        match (self.segments.front(), self.segments.back()) {
            (Some(first), Some(last)) => first.first_seq..last.seqs().end,
            _ => 0..0,
        }
    }

    /// The seq the next entry gets after a restart: above every seq on disk
    /// and not below any segment's name.
    pub(super) fn next_seq(&self) -> u64 {
        self.seqs().end.max(self.seq_floor)
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(super) fn entries(&self) -> u64 {
        self.entries
    }

    pub(super) fn budget(&self) -> u64 {
        self.budget
    }

    fn find(&self, seq: u64) -> Option<(&Segment, usize)> {
        let after = self.segments.partition_point(|s| s.first_seq <= seq);
        let seg = self.segments.get(after.checked_sub(1)?)?;
        seg.seqs()
            .contains(&seq)
            .then(|| (seg, (seq - seg.first_seq) as usize))
    }

    pub(super) fn contains(&self, seq: u64) -> bool {
        self.find(seq).is_some()
    }

    /// Appends `entries` with seqs from `first_seq` on. Evicts the oldest
    /// segments to stay within the budget, adding their seqs to `evicted`
    /// (also when the append then fails). On error, the entries from the
    /// error's `seqs.start` on are not on disk.
    pub(super) fn append(
        &mut self,
        first_seq: u64,
        entries: &[Entry],
        evicted: &mut Vec<Range<u64>>,
    ) -> Result<(), StoreError> {
        let end_seq = first_seq + entries.len() as u64;
        // Encode the whole batch before writing any of it, so that a record
        // over the limit fails the batch before the disk holds part of it.
        let mut buf = Vec::new();
        let mut bounds = Vec::with_capacity(entries.len() + 1);
        for (seq, entry) in (first_seq..).zip(entries) {
            let len = entry.encoded_len();
            if len > MAX_RECORD {
                self.active = None;
                return Err(StoreError::RecordTooLarge {
                    seq,
                    len,
                    limit: MAX_RECORD,
                    seqs: first_seq..end_seq,
                });
            }
            bounds.push(buf.len());
            let start = buf.len();
            buf.extend_from_slice(&(len as u32).to_le_bytes());
            buf.extend_from_slice(&[0; 4]);
            buf.extend_from_slice(&seq.to_le_bytes());
            entry.encode(&mut buf).expect("a Vec grows as needed");
            let crc = crc32(&[&buf[start + 8..]]);
            buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        }
        bounds.push(buf.len());

        let mut i = 0;
        while i < entries.len() {
            let seq = first_seq + i as u64;
            self.ensure_active(seq, first_seq..end_seq)?;
            let seg = self.segments.back().expect("ensure_active made one");
            let room = self.segment_max.saturating_sub(seg.end);
            let first_len = (bounds[i + 1] - bounds[i]) as u64;
            if !seg.offsets.is_empty() && first_len > room {
                self.active = None;
                continue;
            }
            let mut j = i + 1;
            while j < entries.len() && ((bounds[j + 1] - bounds[i]) as u64) <= room {
                j += 1;
            }
            let chunk = &buf[bounds[i]..bounds[j]];
            evicted.extend(self.evict_for(chunk.len() as u64));
            self.write_chunk(chunk, &bounds[i..j], bounds[i], seq..end_seq)?;
            i = j;
        }
        Ok(())
    }

    /// Makes sure the last segment is open for appending, starting a new one
    /// at `seq` when it is closed or full.
    fn ensure_active(&mut self, seq: u64, batch: Range<u64>) -> Result<(), StoreError> {
        if self.active.is_some()
            && self
                .segments
                .back()
                .is_some_and(|s| s.end < self.segment_max)
        {
            return Ok(());
        }
        self.active = None;
        let path = self.dir.join(segment_name(seq));
        let created = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(MAGIC)?;
                if self.fsync {
                    file.sync_data()?;
                    // The new file's name is durable only once its directory is.
                    File::open(&self.dir)?.sync_all()?;
                }
                Ok(file)
            });
        let file = match created {
            Ok(file) => file,
            Err(source) => {
                let _ = fs::remove_file(&path);
                return Err(StoreError::DiskWrite {
                    path,
                    offset: 0,
                    seqs: seq..batch.end,
                    source,
                });
            }
        };
        let header = MAGIC.len() as u64;
        self.bytes += header;
        self.segments.push_back(Segment {
            path,
            first_seq: seq,
            offsets: Vec::new(),
            end: header,
            size: header,
        });
        self.active = Some(file);
        Ok(())
    }

    /// Writes records (starting at `bounds` within the batch buffer, the
    /// first at `base`) to the end of the active segment.
    fn write_chunk(
        &mut self,
        chunk: &[u8],
        bounds: &[usize],
        base: usize,
        unwritten: Range<u64>,
    ) -> Result<(), StoreError> {
        let fsync = self.fsync;
        let file = self.active.as_mut().expect("ensure_active opened it");
        let seg = self.segments.back_mut().expect("ensure_active made one");
        let written = file
            .write_all(chunk)
            .and_then(|()| if fsync { file.sync_data() } else { Ok(()) });
        if let Err(source) = written {
            // Cut the partial write so the file ends on a whole record, and
            // close the segment: the next batch's seqs come after a gap.
            if let Err(e) = file.set_len(seg.end) {
                tracing::warn!(path = %seg.path.display(), error = %e, "entry store: cannot cut a failed write off the segment");
                let grown = file
                    .metadata()
                    .map_or(seg.end + chunk.len() as u64, |m| m.len());
                self.bytes += grown.saturating_sub(seg.size);
                seg.size = grown;
            }
            let offset = seg.end;
            let path = seg.path.clone();
            self.active = None;
            if seg.offsets.is_empty() {
                self.bytes -= seg.size;
                self.segments.pop_back();
                let _ = fs::remove_file(&path);
            }
            return Err(StoreError::DiskWrite {
                path,
                offset,
                seqs: unwritten,
                source,
            });
        }
        for &b in bounds {
            // The segment stays under segment_max (64 MiB) plus one record.
            seg.offsets.push((seg.end + (b - base) as u64) as u32);
        }
        seg.end += chunk.len() as u64;
        seg.size = seg.end;
        self.bytes += chunk.len() as u64;
        self.entries += bounds.len() as u64;
        Ok(())
    }

    /// Removes the oldest segments until `incoming` more bytes fit in the
    /// budget; the last segment stays whatever its size.
    fn evict_for(&mut self, incoming: u64) -> Vec<Range<u64>> {
        let mut evicted = Vec::new();
        while self.bytes + incoming > self.budget && self.segments.len() > 1 {
            let seg = self.segments.pop_front().expect("more than one");
            if let Err(e) = fs::remove_file(&seg.path) {
                tracing::warn!(path = %seg.path.display(), error = %e, "entry store: cannot remove an evicted segment");
            }
            self.bytes -= seg.size;
            self.entries -= seg.offsets.len() as u64;
            self.evicted.entries += seg.offsets.len() as u64;
            self.evicted.bytes += seg.size;
            evicted.push(seg.seqs());
        }
        evicted
    }

    /// The entry with this seq, if it is on disk.
    pub(super) fn read(&self, seq: u64) -> Result<Option<Entry>, StoreError> {
        let Some((seg, i)) = self.find(seq) else {
            return Ok(None);
        };
        let (start, end) = seg.span(i);
        let file = File::open(&seg.path).map_err(io_error("open", &seg.path))?;
        let mut buf = vec![0; (end - start) as usize];
        file.read_exact_at(&mut buf, start)
            .map_err(io_error("read", &seg.path))?;
        decode_record(&buf, seq)
            .map(Some)
            .map_err(|reason| StoreError::Corrupt {
                path: seg.path.clone(),
                offset: start,
                reason,
            })
    }

    /// Entries with seqs below `before`, newest first.
    pub(super) fn scan_back(
        &self,
        before: u64,
        mut f: impl FnMut(u64, Entry) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        for seg in self.segments.iter().rev() {
            let hi = before
                .saturating_sub(seg.first_seq)
                .min(seg.offsets.len() as u64) as usize;
            if hi > 0 && self.visit(seg, 0..hi, true, &mut f)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Entries with seqs in `seqs`, oldest first.
    pub(super) fn scan_forward(
        &self,
        seqs: Range<u64>,
        mut f: impl FnMut(u64, Entry) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, StoreError> {
        for seg in &self.segments {
            let len = seg.offsets.len() as u64;
            let lo = seqs.start.saturating_sub(seg.first_seq).min(len) as usize;
            let hi = seqs.end.saturating_sub(seg.first_seq).min(len) as usize;
            if lo < hi && self.visit(seg, lo..hi, false, &mut f)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Reads records `records` of `seg` a chunk at a time and hands each to
    /// `f`, newest first when `back`. A damaged record is counted and skipped.
    fn visit(
        &self,
        seg: &Segment,
        records: Range<usize>,
        back: bool,
        f: &mut impl FnMut(u64, Entry) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, StoreError> {
        let file = File::open(&seg.path).map_err(io_error("open", &seg.path))?;
        let mut buf = Vec::new();
        let (mut lo, mut hi) = (records.start, records.end);
        while lo < hi {
            // A chunk of whole records of about READ_CHUNK bytes, at least one.
            let (a, b) = if back {
                let end = seg.span(hi - 1).1;
                let mut a = hi - 1;
                while a > lo && end - u64::from(seg.offsets[a - 1]) <= READ_CHUNK {
                    a -= 1;
                }
                (a, hi)
            } else {
                let start = u64::from(seg.offsets[lo]);
                let mut b = lo + 1;
                while b < hi && seg.span(b).1 - start <= READ_CHUNK {
                    b += 1;
                }
                (lo, b)
            };
            let base = u64::from(seg.offsets[a]);
            buf.resize((seg.span(b - 1).1 - base) as usize, 0);
            file.read_exact_at(&mut buf, base)
                .map_err(io_error("read", &seg.path))?;
            let mut each = |i: usize| {
                let (start, end) = seg.span(i);
                let seq = seg.first_seq + i as u64;
                match decode_record(&buf[(start - base) as usize..(end - base) as usize], seq) {
                    Ok(entry) => f(seq, entry),
                    Err(reason) => {
                        self.read_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(path = %seg.path.display(), offset = start, seq, reason, "entry store: skipping a damaged record");
                        ControlFlow::Continue(())
                    }
                }
            };
            let flow = if back {
                (a..b).rev().try_for_each(&mut each)
            } else {
                (a..b).try_for_each(&mut each)
            };
            if flow.is_break() {
                return Ok(flow);
            }
            if back {
                hi = a;
            } else {
                lo = b;
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

fn remove(path: &Path) -> Result<(), StoreError> {
    fs::remove_file(path).map_err(io_error("remove empty or stale segment", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_ieee_check_value() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[]), 0);
    }

    #[test]
    fn segment_names_round_trip_and_reject_others() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        for other in [
            "seg-42.log",
            "seg-0000000000000000004x.log",
            "seg-00000000000000000042.log.tmp",
            "x.log",
        ] {
            assert_eq!(parse_segment_name(other), None, "{other}");
        }
    }

    #[test]
    fn decode_record_rejects_damage() {
        let entry = Entry {
            id: "a".into(),
            ..Default::default()
        };
        let payload = entry.encode_to_vec();
        let mut rec = Vec::new();
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&[0; 4]);
        rec.extend_from_slice(&7u64.to_le_bytes());
        rec.extend_from_slice(&payload);
        let crc = crc32(&[&rec[8..]]);
        rec[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_record(&rec, 7), Ok(entry));
        assert!(decode_record(&rec, 8).is_err());
        assert!(decode_record(&rec[..rec.len() - 1], 7).is_err());
        assert!(decode_record(&rec[..3], 7).is_err());
        let mut flipped = rec.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode_record(&flipped, 7).is_err());
    }
}
