use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use prost::Message;
use proto::v1::{
    Body, Endpoint, Header, HttpRequest, HttpResponse, Request, Response, request, response,
};

use super::*;

use testkit::TempDir;

/// An HTTP/1.1 exchange as the hub gets it from a worker: about 600 bytes
/// encoded, decoded by prost (whose vectors keep growth slack).
fn http_entry(i: u64) -> Entry {
    Entry::decode(built_http_entry(i).encode_to_vec().as_slice()).unwrap()
}

fn built_http_entry(i: u64) -> Entry {
    let header = |name: &str, value: &str| Header {
        name: name.into(),
        value: value.into(),
    };
    let endpoint = |ip: &str, port, pod: &str, service: Option<&str>| Endpoint {
        ip: ip.into(),
        port,
        pod: Some(pod.into()),
        namespace: Some("shop".into()),
        service: service.map(Into::into),
    };
    Entry {
        id: format!("{:016x}-{}", i * 7919, i % 13),
        ts_ns: 1_790_000_000_000_000_000 + i * 1_000_000,
        node: "node-1".into(),
        protocol: proto::v1::Protocol::Http as i32,
        src: Some(endpoint("10.1.0.5", 51234, "frontend-7c9f5d-x2xq", None)),
        dst: Some(endpoint("10.1.1.7", 8080, "catalogue-5d2a8b-k9l2", Some("catalogue"))),
        tls: false,
        elapsed_ns: Some(1_834_000 + i % 1000),
        request_size: 312,
        response_size: 2048,
        flow_id: i / 4,
        stream_id: 0,
        request: Some(Request {
            kind: Some(request::Kind::Http(Box::new(HttpRequest {
                method: "GET".into(),
                path: format!("/catalogue?size=5&page={i:07}"),
                version: "1.1".into(),
                headers: vec![
                    header("host", "catalogue"),
                    header("user-agent", "Go-http-client/1.1"),
                    header("accept", "application/json"),
                    header("accept-encoding", "gzip"),
                    header("x-request-id", "2f1c9a7e-5b3d-4e8f-9a6b-1c2d3e4f5a6b"),
                ],
                body: None,
                trailers: vec![],
            }))),
        }),
        response: Some(Response {
            kind: Some(response::Kind::Http(Box::new(HttpResponse {
                status: if i.is_multiple_of(50) { 503 } else { 200 },
                reason: "OK".into(),
                version: "1.1".into(),
                headers: vec![
                    header("content-type", "application/json"),
                    header("content-length", "2048"),
                    header("date", "Tue, 24 Nov 2026 19:36:50 GMT"),
                ],
                body: Some(Body {
                    data: br#"[{"id":"3395a43e","name":"Holy","price":99.99,"count":1},{"id":"510a0d7e","name":"Crossed","price":17.32,"count":33},{"id":"808a2de1","name":"Colourful","price":18,"count":438}]"#.to_vec(),
                    wire_size: 180,
                    truncated: false,
                    decoded_from: String::new(),
                }),
                trailers: vec![],
            }))),
        }),
        redacted: vec![],
        flags: vec![],
        tunnel: None,
    }
}

fn batch(seqs: Range<u64>) -> Vec<Entry> {
    seqs.map(http_entry).collect()
}

/// What one `http_entry` costs in memory: the same for every seq below ten
/// million, their numbers being of fixed width.
fn entry_bytes() -> u64 {
    slot_bytes(&http_entry(1))
}

fn disk_store(dir: &Path, memory_budget: u64, disk_budget: u64) -> Store {
    Store::open(StoreConfig {
        memory_budget,
        disk: Some(DiskConfig::new(dir, disk_budget)),
    })
    .unwrap()
}

fn memory_store(memory_budget: u64) -> Store {
    Store::open(StoreConfig {
        memory_budget,
        disk: None,
    })
    .unwrap()
}

fn seqs_back(store: &Store, before: Option<u64>) -> Vec<u64> {
    let mut seqs = Vec::new();
    store
        .scan_back(before, |seq, entry| {
            assert_eq!(
                entry.id,
                http_entry(seq).id,
                "seq {seq} holds another entry"
            );
            seqs.push(seq);
            ControlFlow::Continue(())
        })
        .unwrap();
    seqs
}

fn seqs_forward(store: &Store, after: Option<u64>) -> Vec<u64> {
    let mut seqs = Vec::new();
    store
        .scan_forward(after, |seq, entry| {
            assert_eq!(
                entry.id,
                http_entry(seq).id,
                "seq {seq} holds another entry"
            );
            seqs.push(seq);
            ControlFlow::Continue(())
        })
        .unwrap();
    seqs
}

/// Segment files in `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

fn first_seq_of(segment: &Path) -> u64 {
    let name = segment.file_name().unwrap().to_str().unwrap();
    name.trim_start_matches("seg-")
        .trim_end_matches(".log")
        .parse()
        .unwrap()
}

/// Bytes of the record of entry `seq` in a segment.
fn record_len(seq: u64) -> u64 {
    16 + http_entry(seq).encoded_len() as u64
}

/// Offset of the record of `seq` in a segment that starts at `first`.
fn record_offset(first: u64, seq: u64) -> u64 {
    8 + (first..seq).map(record_len).sum::<u64>()
}

#[test]
fn memory_budget_evicts_oldest_first_and_counts_every_eviction() {
    let per_entry = entry_bytes();
    let mut store = memory_store(10 * per_entry + per_entry / 2);
    assert_eq!(store.insert_batch(batch(1..8)).unwrap(), 1..8);
    assert_eq!(store.insert_batch(batch(8..26)).unwrap(), 8..26);
    let stats = store.stats();
    assert_eq!(stats.entries_in_memory, 10);
    assert_eq!(stats.memory_bytes, 10 * per_entry);
    assert_eq!(
        stats.evicted_from_memory,
        Evicted {
            entries: 15,
            bytes: 15 * per_entry
        }
    );
    assert_eq!(stats.lost_entries, 15);
    assert_eq!((stats.first_seq, stats.last_seq), (Some(16), Some(25)));
    assert_eq!(seqs_back(&store, None), (16..26).rev().collect::<Vec<_>>());
    for evicted in [1, 15] {
        assert!(store.get(evicted).is_none(), "seq {evicted} was evicted");
    }
    assert_eq!(store.get(16).unwrap().id, http_entry(16).id);
    assert!(store.get(26).is_none());
    assert!(store.get(u64::MAX).is_none());
}

#[test]
fn an_entry_over_the_whole_budget_is_evicted_at_once() {
    let mut store = memory_store(entry_bytes() - 1);
    assert_eq!(store.insert_batch(batch(1..3)).unwrap(), 1..3);
    let stats = store.stats();
    assert_eq!((stats.entries_in_memory, stats.memory_bytes), (0, 0));
    assert_eq!(stats.evicted_from_memory.entries, 2);
    assert_eq!((stats.first_seq, stats.last_seq), (None, None));
    // Seqs go on even when nothing stays.
    assert_eq!(store.insert_batch(batch(3..4)).unwrap(), 3..4);
}

#[test]
fn empty_batch_takes_no_seq() {
    let mut store = memory_store(DEFAULT_MEMORY_BUDGET);
    assert_eq!(store.insert_batch(Vec::new()).unwrap(), 1..1);
    assert_eq!(store.insert_batch(batch(1..2)).unwrap(), 1..2);
}

#[test]
fn seqs_continue_across_reopen_with_disk_and_restart_without() {
    let dir = TempDir::new("seqs");
    {
        let mut store = disk_store(dir.root(), DEFAULT_MEMORY_BUDGET, 1 << 20);
        assert_eq!(store.insert_batch(batch(1..6)).unwrap(), 1..6);
    }
    {
        let mut store = disk_store(dir.root(), DEFAULT_MEMORY_BUDGET, 1 << 20);
        let stats = store.stats();
        assert_eq!((stats.entries_in_memory, stats.disk_entries), (5, 5));
        assert_eq!(store.insert_batch(batch(6..9)).unwrap(), 6..9);
    }
    let store = disk_store(dir.root(), DEFAULT_MEMORY_BUDGET, 1 << 20);
    assert_eq!(seqs_forward(&store, None), (1..9).collect::<Vec<_>>());
    assert_eq!(store.stats().torn_records_recovered, 0);

    let mut memory_only = memory_store(DEFAULT_MEMORY_BUDGET);
    assert_eq!(memory_only.insert_batch(batch(1..2)).unwrap(), 1..2);
}

#[test]
fn reopen_refills_memory_with_the_newest_entries_up_to_the_budget() {
    let dir = TempDir::new("refill");
    let budget = 10 * entry_bytes();
    {
        let mut store = disk_store(dir.root(), budget, 1 << 20);
        for start in (1..41).step_by(8) {
            store.insert_batch(batch(start..start + 8)).unwrap();
        }
    }
    let store = disk_store(dir.root(), budget, 1 << 20);
    let stats = store.stats();
    assert_eq!(stats.entries_in_memory, 10);
    assert_eq!(stats.memory_bytes, budget);
    assert_eq!(stats.disk_entries, 40);
    assert_eq!((stats.first_seq, stats.last_seq), (Some(1), Some(40)));
    assert_eq!(stats.lost_entries, 0);
    assert_eq!(seqs_back(&store, None), (1..41).rev().collect::<Vec<_>>());
    // Memory-held and disk-only entries alike.
    assert_eq!(store.get(40).unwrap().id, http_entry(40).id);
    assert_eq!(*store.get(3).unwrap(), http_entry(3));
}

#[test]
fn scans_cross_from_memory_to_disk_with_cursors() {
    let dir = TempDir::new("scan");
    // Small segments, so the disk part spans several.
    let mut store = disk_store(dir.root(), 10 * entry_bytes(), 1 << 16);
    for start in (1..51).step_by(5) {
        store.insert_batch(batch(start..start + 5)).unwrap();
    }
    let stats = store.stats();
    assert_eq!((stats.entries_in_memory, stats.disk_entries), (10, 50));
    assert!(segments(dir.root()).len() > 2, "want several segments");
    assert_eq!(stats.lost_entries, 0, "evicted from memory but on disk");

    assert_eq!(seqs_back(&store, None), (1..51).rev().collect::<Vec<_>>());
    assert_eq!(
        seqs_back(&store, Some(30)),
        (1..30).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        seqs_back(&store, Some(45)),
        (1..45).rev().collect::<Vec<_>>()
    );
    assert_eq!(seqs_back(&store, Some(1)), Vec::<u64>::new());
    assert_eq!(seqs_forward(&store, None), (1..51).collect::<Vec<_>>());
    assert_eq!(seqs_forward(&store, Some(20)), (21..51).collect::<Vec<_>>());
    assert_eq!(seqs_forward(&store, Some(42)), (43..51).collect::<Vec<_>>());
    assert_eq!(seqs_forward(&store, Some(50)), Vec::<u64>::new());
    assert_eq!(seqs_forward(&store, Some(u64::MAX)), Vec::<u64>::new());

    // Pages of 7 by cursor, as the API pages, both ways.
    for page in [1, 7, 13] {
        let mut back = Vec::new();
        let mut cursor = None;
        loop {
            let mut got = Vec::new();
            store
                .scan_back(cursor, |seq, _| {
                    got.push(seq);
                    if got.len() == page {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .unwrap();
            let Some(&last) = got.last() else { break };
            cursor = Some(last);
            back.extend(got);
        }
        assert_eq!(
            back,
            (1..51).rev().collect::<Vec<_>>(),
            "pages of {page} backwards"
        );

        let mut forward = Vec::new();
        let mut cursor = None;
        loop {
            let mut got = Vec::new();
            store
                .scan_forward(cursor, |seq, _| {
                    got.push(seq);
                    if got.len() == page {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .unwrap();
            let Some(&last) = got.last() else { break };
            cursor = Some(last);
            forward.extend(got);
        }
        assert_eq!(
            forward,
            (1..51).collect::<Vec<_>>(),
            "pages of {page} forwards"
        );
    }
}

#[test]
fn disk_budget_evicts_oldest_segments_and_counts_them() {
    let dir = TempDir::new("disk-budget");
    let disk_budget = 64 << 10;
    let mut store = disk_store(dir.root(), 20 * entry_bytes(), disk_budget);
    let mut written = 0;
    let mut every_segment = std::collections::BTreeSet::new();
    for start in (1..501).step_by(10) {
        store.insert_batch(batch(start..start + 10)).unwrap();
        written += (start..start + 10).map(record_len).sum::<u64>();
        every_segment.extend(segments(dir.root()));
        let stats = store.stats();
        assert!(
            stats.disk_bytes <= disk_budget,
            "{} bytes on disk",
            stats.disk_bytes
        );
    }
    let stats = store.stats();
    let files = segments(dir.root());
    let file_bytes: u64 = files.iter().map(|f| fs::metadata(f).unwrap().len()).sum();
    assert_eq!(stats.disk_bytes, file_bytes);
    assert_eq!(stats.disk_entries + stats.evicted_from_disk.entries, 500);
    assert_eq!(
        stats.disk_bytes + stats.evicted_from_disk.bytes,
        written + 8 * every_segment.len() as u64
    );
    assert!(stats.evicted_from_disk.entries > 0);
    let oldest_on_disk = first_seq_of(&files[0]);
    assert_eq!(stats.first_seq, Some(oldest_on_disk));
    assert_eq!(stats.lost_entries, oldest_on_disk - 1);
    assert!(store.get(oldest_on_disk - 1).is_none());
    assert_eq!(
        store.get(oldest_on_disk).unwrap().id,
        http_entry(oldest_on_disk).id
    );
    assert_eq!(
        seqs_back(&store, None),
        (oldest_on_disk..501).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        seqs_forward(&store, None),
        (oldest_on_disk..501).collect::<Vec<_>>()
    );
}

#[test]
fn a_smaller_disk_budget_at_reopen_evicts_at_once() {
    let dir = TempDir::new("shrink");
    {
        let mut store = disk_store(dir.root(), 0, 1 << 20);
        store.insert_batch(batch(1..201)).unwrap();
    }
    let store = disk_store(dir.root(), 0, 32 << 10);
    let stats = store.stats();
    assert!(stats.disk_bytes <= 32 << 10);
    assert!(stats.evicted_from_disk.entries > 0);
    assert_eq!(stats.disk_entries + stats.evicted_from_disk.entries, 200);
    assert_eq!(stats.lost_entries, stats.evicted_from_disk.entries);
    assert_eq!(stats.last_seq, Some(200));
}

/// A kill mid-write leaves part of the last record; reopening keeps every
/// whole record, cuts the rest, and goes on from there.
#[test]
fn torn_last_record_is_cut_and_counted() {
    let last_len = record_len(10);
    // Bytes cut off the end: inside the payload, inside the header, all of
    // the record but one byte; and (negative) garbage after a whole record.
    for cut in [1i64, last_len as i64 - 10, last_len as i64 - 1, -5] {
        let dir = TempDir::new("torn");
        {
            let mut store = disk_store(dir.root(), DEFAULT_MEMORY_BUDGET, 1 << 20);
            store.insert_batch(batch(1..11)).unwrap();
        }
        let files = segments(dir.root());
        let file = fs::OpenOptions::new().write(true).open(&files[0]).unwrap();
        let len = file.metadata().unwrap().len();
        let complete = if cut > 0 {
            file.set_len(len - cut as u64).unwrap();
            9
        } else {
            file.write_all_at(&vec![0xab; (-cut) as usize], len)
                .unwrap();
            10
        };
        drop(file);

        let mut store = disk_store(dir.root(), DEFAULT_MEMORY_BUDGET, 1 << 20);
        let stats = store.stats();
        assert_eq!(stats.torn_records_recovered, 1, "cut {cut}");
        assert_eq!(stats.disk_entries, complete, "cut {cut}");
        assert_eq!(stats.entries_in_memory, complete, "cut {cut}");
        assert_eq!(
            fs::metadata(&files[0]).unwrap().len(),
            record_offset(1, complete + 1),
            "cut {cut}"
        );
        assert_eq!(
            seqs_back(&store, None),
            (1..complete + 1).rev().collect::<Vec<_>>()
        );
        // The torn record was never acknowledged: its seq is handed out again.
        assert_eq!(
            store
                .insert_batch(batch(complete + 1..complete + 3))
                .unwrap(),
            complete + 1..complete + 3
        );
        drop(store);

        let store = disk_store(dir.root(), 0, 1 << 20);
        assert_eq!(
            store.stats().torn_records_recovered,
            0,
            "the cut file is whole again"
        );
        assert_eq!(
            seqs_forward(&store, None),
            (1..complete + 3).collect::<Vec<_>>()
        );
    }
}

/// A damaged record in an older segment costs that segment's later records,
/// not the segments after it.
#[test]
fn corrupt_record_in_an_older_segment_skips_the_rest_of_that_segment() {
    let dir = TempDir::new("corrupt");
    {
        let mut store = disk_store(dir.root(), DEFAULT_MEMORY_BUDGET, 256 << 10);
        for start in (1..201).step_by(10) {
            store.insert_batch(batch(start..start + 10)).unwrap();
        }
    }
    let files = segments(dir.root());
    assert!(
        files.len() >= 3,
        "want several segments, got {}",
        files.len()
    );
    let first = first_seq_of(&files[1]);
    let next = first_seq_of(&files[2]);
    let bad = first + 4;
    let offset = record_offset(first, bad) + 16 + 20;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&files[1])
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], offset).unwrap();
    drop(file);

    // No memory: every read goes to disk.
    let store = disk_store(dir.root(), 0, 256 << 10);
    let stats = store.stats();
    assert_eq!(stats.corrupt_records, 1);
    assert_eq!(stats.torn_records_recovered, 0);
    assert_eq!(stats.disk_entries, 200 - (next - bad));
    assert!(store.get(bad - 1).is_some());
    assert!(store.get(bad).is_none());
    assert!(store.get(next - 1).is_none());
    assert_eq!(store.get(next).unwrap().id, http_entry(next).id);
    let want: Vec<u64> = (1..bad).chain(next..201).collect();
    assert_eq!(seqs_forward(&store, None), want);
    assert_eq!(
        seqs_back(&store, None),
        want.iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(stats.disk_read_errors, 0);
}

/// Damage in the middle of the last segment looks like a torn write: the
/// segment is cut there.
#[test]
fn corrupt_record_in_the_last_segment_cuts_it_there() {
    let dir = TempDir::new("corrupt-last");
    {
        let mut store = disk_store(dir.root(), DEFAULT_MEMORY_BUDGET, 1 << 20);
        store.insert_batch(batch(1..11)).unwrap();
    }
    let files = segments(dir.root());
    let file = fs::OpenOptions::new().write(true).open(&files[0]).unwrap();
    // The length field of record 6: over the 16 MiB limit.
    file.write_all_at(&u32::MAX.to_le_bytes(), record_offset(1, 6))
        .unwrap();
    drop(file);
    let mut store = disk_store(dir.root(), DEFAULT_MEMORY_BUDGET, 1 << 20);
    assert_eq!(store.stats().torn_records_recovered, 1);
    assert_eq!(seqs_forward(&store, None), (1..6).collect::<Vec<_>>());
    assert_eq!(store.insert_batch(batch(6..7)).unwrap(), 6..7);
}

/// Damage that appears while the hub runs costs the damaged record, not the
/// query; a missing file is an error the caller sees. Both are counted.
#[test]
fn damage_after_open_is_skipped_and_counted_by_queries() {
    let dir = TempDir::new("damage-live");
    let mut store = disk_store(dir.root(), 0, 1 << 20);
    store.insert_batch(batch(1..11)).unwrap();
    let files = segments(dir.root());
    let offset = record_offset(1, 4) + 16 + 30;
    let file = fs::OpenOptions::new().write(true).open(&files[0]).unwrap();
    file.write_all_at(b"\xff\xff", offset).unwrap();
    drop(file);

    assert!(store.get(4).is_none());
    assert_eq!(store.get(5).unwrap().id, http_entry(5).id);
    assert_eq!(store.stats().disk_read_errors, 1);
    let want: Vec<u64> = (1..11).filter(|&s| s != 4).collect();
    assert_eq!(seqs_forward(&store, None), want);
    assert_eq!(
        seqs_back(&store, None),
        want.iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(store.stats().disk_read_errors, 3);

    fs::remove_file(&files[0]).unwrap();
    let err = store
        .scan_back(None, |_, _| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(
        err.to_string().contains(&files[0].display().to_string()),
        "{err}"
    );
    assert_eq!(store.stats().disk_read_errors, 4);
}

#[test]
fn garbage_in_the_directory_does_not_stop_the_hub() {
    let dir = TempDir::new("garbage");
    fs::create_dir_all(dir.root()).unwrap();
    let name = |seq: u64| dir.root().join(format!("seg-{seq:020}.log"));
    fs::write(name(1), b"").unwrap();
    fs::write(name(5), b"not a segment at all, just bytes").unwrap();
    let mut huge = b"KTAPLOG1".to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend_from_slice(&[0; 12]);
    fs::write(name(9), &huge).unwrap();
    fs::write(dir.root().join("notes.txt"), b"kept").unwrap();

    let mut store = disk_store(dir.root(), DEFAULT_MEMORY_BUDGET, 1 << 20);
    let stats = store.stats();
    assert_eq!(stats.disk_entries, 0);
    assert_eq!(
        (stats.corrupt_records, stats.torn_records_recovered),
        (2, 1)
    );
    // Seqs stay above every segment name seen, even of a file with no record.
    assert_eq!(store.insert_batch(batch(9..10)).unwrap(), 9..10);
    assert!(dir.root().join("notes.txt").exists());
    drop(store);
    let store = disk_store(dir.root(), DEFAULT_MEMORY_BUDGET, 1 << 20);
    assert_eq!(seqs_forward(&store, None), vec![9]);
}

/// A batch the disk refuses stays in memory, is counted, and the log goes
/// on in a new segment.
#[test]
fn write_error_keeps_the_batch_in_memory_and_counts_it() {
    let dir = TempDir::new("write-error");
    let mut store = disk_store(dir.root(), DEFAULT_MEMORY_BUDGET, 64 << 20);
    store.insert_batch(batch(1..4)).unwrap();
    let mut huge = http_entry(4);
    huge.id = "x".repeat(disk::MAX_RECORD);
    let err = store.insert_batch(vec![huge]).unwrap_err();
    assert!(
        matches!(&err, StoreError::RecordTooLarge { seq: 4, seqs, .. } if *seqs == (4..5)),
        "{err}"
    );
    assert_eq!(store.get(4).unwrap().id.len(), disk::MAX_RECORD);
    assert_eq!(store.stats().disk_write_errors, 1);
    assert_eq!(store.insert_batch(batch(5..7)).unwrap(), 5..7);
    assert_eq!(
        segments(dir.root()).len(),
        2,
        "the log goes on in a new segment after the gap"
    );
    let stats = store.stats();
    assert_eq!((stats.disk_entries, stats.entries_in_memory), (5, 6));
    drop(store);

    // Only memory held seq 4.
    let store = disk_store(dir.root(), DEFAULT_MEMORY_BUDGET, 64 << 20);
    assert_eq!(seqs_forward(&store, None), vec![1, 2, 3, 5, 6]);
    assert_eq!(seqs_back(&store, None), vec![6, 5, 3, 2, 1]);
    assert!(store.get(4).is_none());
    assert_eq!(
        store.stats().entries_in_memory,
        2,
        "memory refills back to the gap only"
    );
}

#[test]
fn evicted_from_memory_without_disk_copy_is_lost() {
    let dir = TempDir::new("lost");
    let mut store = disk_store(dir.root(), 2 * entry_bytes(), 64 << 20);
    let mut huge = http_entry(1);
    huge.id = "x".repeat(disk::MAX_RECORD);
    assert!(store.insert_batch(vec![huge]).is_err());
    store.insert_batch(batch(2..5)).unwrap();
    let stats = store.stats();
    assert_eq!(stats.evicted_from_memory.entries, 2);
    assert_eq!(
        stats.lost_entries, 1,
        "seq 1 was only in memory; seq 2 is on disk"
    );
    assert!(store.get(1).is_none());
    assert!(store.get(2).is_some());
}

#[test]
fn fsync_mode_stores_and_recovers() {
    let dir = TempDir::new("fsync");
    let config = StoreConfig {
        memory_budget: DEFAULT_MEMORY_BUDGET,
        disk: Some(DiskConfig {
            dir: dir.root().to_path_buf(),
            budget: 1 << 20,
            fsync: true,
        }),
    };
    Store::open(config.clone())
        .unwrap()
        .insert_batch(batch(1..4))
        .unwrap();
    let store = Store::open(config).unwrap();
    assert_eq!(seqs_forward(&store, None), vec![1, 2, 3]);
}

#[test]
fn open_fails_with_the_path_when_the_directory_cannot_be_made() {
    let dir = TempDir::new("not-a-dir");
    fs::create_dir_all(dir.root()).unwrap();
    let file = dir.root().join("file");
    fs::write(&file, b"").unwrap();
    let err = Store::open(StoreConfig {
        memory_budget: 1,
        disk: Some(DiskConfig::new(file.join("sub"), 1 << 20)),
    })
    .err()
    .expect("a file is in the way");
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
}

/// Insert rate and scan time; prints, asserts nothing time-based. Run with
/// `cargo xtask bench --only micro` runs it.
#[test]
#[ignore = "a measurement: cargo xtask bench --only micro"]
fn throughput() {
    const N: u64 = 1_000_000;
    let batches = |seqs: Range<u64>| -> Vec<Vec<Entry>> {
        seqs.step_by(100).map(|s| batch(s..s + 100)).collect()
    };
    let sample = batch(0..1000);
    println!(
        "entry: {} bytes encoded on average, {} bytes in memory, size_of::<Entry>() = {}",
        sample.iter().map(|e| e.encoded_len()).sum::<usize>() / sample.len(),
        entry_bytes(),
        size_of::<Entry>()
    );

    let rate = |store: &mut Store, batches: Vec<Vec<Entry>>| {
        let n: usize = batches.iter().map(Vec::len).sum();
        let start = Instant::now();
        for b in batches {
            store.insert_batch(b).unwrap();
        }
        n as f64 / start.elapsed().as_secs_f64()
    };

    let mut store = memory_store(u64::MAX);
    let per_s = rate(&mut store, batches(0..N));
    println!(
        "insert, memory only, no eviction: {per_s:.0} entries/s ({N} in batches of 100, {} MiB)",
        store.stats().memory_bytes >> 20
    );
    for _ in 0..3 {
        let start = Instant::now();
        let mut hits = 0u64;
        store
            .scan_back(None, |_, e| {
                if let Some(Response {
                    kind: Some(response::Kind::Http(r)),
                }) = &e.response
                    && r.status >= 500
                {
                    hits += 1;
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        println!(
            "scan_back over {N} in memory (status >= 500): {:?}, {hits} hits",
            start.elapsed()
        );
    }
    drop(store);

    let mut store = memory_store(DEFAULT_MEMORY_BUDGET);
    let per_s = rate(&mut store, batches(0..N / 2));
    println!(
        "insert, memory only, 256 MiB budget: {per_s:.0} entries/s ({} in batches of 100, {} kept)",
        N / 2,
        store.stats().entries_in_memory
    );
    drop(store);

    for fsync in [false, true] {
        let n: u64 = if fsync { 20_000 } else { 300_000 };
        let dir = TempDir::new("throughput");
        let config = StoreConfig {
            memory_budget: DEFAULT_MEMORY_BUDGET,
            disk: Some(DiskConfig {
                dir: dir.root().to_path_buf(),
                budget: 4 << 30,
                fsync,
            }),
        };
        let mut store = Store::open(config.clone()).unwrap();
        let per_s = rate(&mut store, batches(0..n));
        let stats = store.stats();
        println!(
            "insert, disk (fsync {fsync}), 256 MiB memory: {per_s:.0} entries/s ({n} in batches of 100, {} MiB on disk, {} in memory)",
            stats.disk_bytes >> 20,
            stats.entries_in_memory
        );
        if !fsync {
            let start = Instant::now();
            let mut count = 0;
            store
                .scan_back(None, |_, _| {
                    count += 1;
                    ControlFlow::Continue(())
                })
                .unwrap();
            println!(
                "scan_back over {count} ({} in memory, then disk, decoding): {:?}",
                stats.entries_in_memory,
                start.elapsed()
            );
            drop(store);
            let start = Instant::now();
            let store = Store::open(config).unwrap();
            println!(
                "reopen ({} MiB log, refill {} entries): {:?}",
                store.stats().disk_bytes >> 20,
                store.stats().entries_in_memory,
                start.elapsed()
            );
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64),
    Reopen,
    /// The hub is killed while writing: part of a record follows the last
    /// whole one.
    KillMidWrite(Vec<u8>),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0u64..40).prop_map(Op::Insert),
        1 => Just(Op::Reopen),
        1 => proptest::collection::vec(any::<u8>(), 1..40).prop_map(Op::KillMidWrite),
    ]
}

/// Seqs a query finds, oldest first, checking both scans agree.
fn findable(store: &Store) -> Vec<u64> {
    let forward = seqs_forward(store, None);
    let mut back = seqs_back(store, None);
    back.reverse();
    assert_eq!(forward, back);
    forward
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

    /// Whatever the budgets and however the hub stops, every acknowledged
    /// entry is found by queries or counted as lost, seqs never repeat, and
    /// a restart loses only what memory alone held.
    #[test]
    fn acknowledged_entries_are_kept_or_counted(
        memory_entries in proptest::sample::select(vec![0u64, 5, 20, 200]),
        disk_budget in proptest::sample::select(vec![16u64 << 10, 64 << 10, 1 << 20]),
        ops in proptest::collection::vec(op(), 1..25),
    ) {
        let dir = TempDir::new("model");
        let open = || disk_store(dir.root(), memory_entries * entry_bytes(), disk_budget);
        let mut store = open();
        let mut next = 1;
        let mut at_open = 0;
        let mut inserted = 0;
        for op in ops {
            match op {
                Op::Insert(n) => {
                    let seqs = store.insert_batch(batch(next..next + n)).unwrap();
                    assert_eq!(seqs, next..next + n);
                    next += n;
                    inserted += n;
                    let stats = store.stats();
                    assert!(stats.memory_bytes <= stats.memory_budget);
                    assert!(stats.disk_bytes <= disk_budget);
                }
                Op::Reopen | Op::KillMidWrite(_) => {
                    let before = findable(&store);
                    drop(store);
                    let mut torn = 0;
                    if let Op::KillMidWrite(garbage) = op
                        && let Some(last) = segments(dir.root()).pop()
                    {
                        let file = fs::OpenOptions::new().append(true).open(&last).unwrap();
                        (&file).write_all(&garbage).unwrap();
                        torn = 1;
                    }
                    store = open();
                    let after = findable(&store);
                    assert_eq!(store.stats().torn_records_recovered, torn);
                    // What memory alone held (older than the disk's oldest) goes.
                    assert!(before.ends_with(&after), "before {before:?}, after {after:?}");
                    if let Some(&newest) = before.last() {
                        assert_eq!(after.last(), Some(&newest));
                    }
                    at_open = after.len() as u64;
                    inserted = 0;
                }
            }
            let found = findable(&store);
            let stats = store.stats();
            assert_eq!(found.len() as u64 + stats.lost_entries, at_open + inserted);
            assert_eq!(stats.first_seq, found.first().copied());
            assert_eq!(stats.last_seq, found.last().copied());
            // Found seqs are consecutive: nothing in the middle goes missing.
            assert!(found.windows(2).all(|w| w[1] == w[0] + 1), "{found:?}");
        }
    }
}
