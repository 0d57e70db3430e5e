//! Hostile and broken input: capture files that are empty, not captures,
//! truncated or lying about their lengths; random bytes as packets; and HTTP
//! built to exhaust memory or confuse a terminal. The reader must fail with an
//! error naming the file and the byte offset, keep what it decoded before,
//! and never let a length field decide how much memory it takes.

use pcap_file::pcap::PcapHeader;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::{DataLink, Endianness};
use proptest::prelude::*;
use proto::v1::Entry;
use std::borrow::Cow;
use std::io::{Cursor, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tap_worker::capture::file::MAX_RECORD;
use tap_worker::capture::{CaptureError, CaptureFile, link};
use tap_worker::dissect::DissectConfig;
use tap_worker::{Pipeline, PipelineConfig, Stats};
use testkit::conversation::{
    Conversation, Exchange, Frame, Link, Peer, get, http_request, http_response, ok, pcap,
    pcap_with_header, run, run_with, two_requests,
};

/// A byte source that records the largest buffer the reader asked it to fill,
/// which is the size of the reader's own buffer.
struct Probe {
    inner: Cursor<Vec<u8>>,
    largest: Arc<AtomicUsize>,
}

impl Read for Probe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.largest.fetch_max(buf.len(), Ordering::Relaxed);
        self.inner.read(buf)
    }
}

/// The largest buffer the reader may ever hold: one maximal record plus slack.
const BUFFER_BOUND: usize = MAX_RECORD + 128;

fn open(name: &str, bytes: Vec<u8>) -> Result<CaptureFile, CaptureError> {
    CaptureFile::from_reader(name.into(), Box::new(Cursor::new(bytes)))
}

/// Opens through a [`Probe`]; the counter holds the largest read buffer.
fn open_probed(
    name: &str,
    bytes: Vec<u8>,
) -> (Result<CaptureFile, CaptureError>, Arc<AtomicUsize>) {
    let largest = Arc::new(AtomicUsize::new(0));
    let probe = Probe {
        inner: Cursor::new(bytes),
        largest: largest.clone(),
    };
    (
        CaptureFile::from_reader(name.into(), Box::new(probe)),
        largest,
    )
}

/// What `kubetap read` does with a capture: every packet through the
/// pipeline until the end or the first error, then `finish`.
struct Outcome {
    packets: usize,
    entries: Vec<Entry>,
    error: Option<CaptureError>,
}

impl Outcome {
    fn exchanges(&self) -> Vec<Exchange> {
        self.entries.iter().map(Exchange::of).collect()
    }

    /// The error's message, which must exist.
    fn message(&self) -> String {
        self.error
            .as_ref()
            .map(ToString::to_string)
            .expect("the capture should have failed")
    }
}

fn read_capture(mut file: CaptureFile) -> Outcome {
    let mut pipeline = Pipeline::new(PipelineConfig::default());
    let mut entries = Vec::new();
    let mut packets = 0;
    let error = loop {
        match file.next_packet() {
            Ok(Some(pkt)) => {
                packets += 1;
                pipeline.packet(&pkt, &mut entries);
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    pipeline.finish(&mut entries);
    Outcome {
        packets,
        entries,
        error,
    }
}

/// File offset of each pcap record written by `conversation::pcap`.
fn pcap_record_offsets(frames: &[Frame]) -> Vec<usize> {
    frames
        .iter()
        .scan(24, |off, f| {
            let at = *off;
            *off += 16 + f.data.len();
            Some(at)
        })
        .collect()
}

/// A pcapng file (section header, one Ethernet interface, one enhanced packet
/// block per frame) and the file offset of each packet block.
fn pcapng(frames: &[Frame], endianness: Endianness) -> (Vec<u8>, Vec<usize>) {
    let mut w = PcapNgWriter::with_endianness(Vec::new(), endianness).expect("section header");
    w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535))
        .expect("interface block");
    let mut offsets = Vec::new();
    for f in frames {
        offsets.push(w.get_ref().len());
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            // pcap-file writes the duration's nanoseconds as ticks: microseconds here.
            timestamp: Duration::from_nanos(f.ts_ns / 1000),
            original_len: f.data.len() as u32,
            data: Cow::Borrowed(&f.data),
            options: vec![],
        })
        .expect("packet block");
    }
    (w.into_inner(), offsets)
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32, endianness: Endianness) {
    let b = match endianness {
        Endianness::Big => v.to_be_bytes(),
        Endianness::Little => v.to_le_bytes(),
    };
    bytes[at..at + 4].copy_from_slice(&b);
}

fn get_u32(bytes: &[u8], at: usize, endianness: Endianness) -> u32 {
    let b: [u8; 4] = bytes[at..at + 4].try_into().expect("4 bytes");
    match endianness {
        Endianness::Big => u32::from_be_bytes(b),
        Endianness::Little => u32::from_le_bytes(b),
    }
}

fn assert_names_file_and_offset(message: &str, name: &str, offset: usize) {
    assert!(
        message.contains(&format!("'{name}'")) && message.contains(&format!("byte {offset}")),
        "expected the file name '{name}' and 'byte {offset}' in: {message}"
    );
}

fn max_body(n: usize) -> PipelineConfig {
    PipelineConfig {
        dissect: DissectConfig {
            max_body: n,
            ..DissectConfig::default()
        },
        ..PipelineConfig::default()
    }
}

fn response_body_of(e: &Entry) -> &proto::v1::Body {
    http_response(e)
        .and_then(|r| r.body.as_ref())
        .expect("a response body")
}

#[test]
fn empty_file_is_refused_as_empty() {
    let err = open("empty.pcap", Vec::new()).err().expect("an error");
    assert!(matches!(err, CaptureError::Empty { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("'empty.pcap'") && msg.contains("empty"),
        "{msg}"
    );
}

#[test]
fn files_that_are_not_captures_are_refused_at_byte_0() {
    let mut wrong_magic = pcap(&two_requests());
    wrong_magic[..4].copy_from_slice(&[0xa1, 0xb2, 0xc3, 0xd5]);
    let gzipped_pcap = [&[0x1f, 0x8b, 0x08, 0x00][..], &[0; 40]].concat();
    let text = b"this is a text file somebody saved as capture.pcap\n".to_vec();
    let mut failures = Vec::new();
    for (name, bytes, magic) in [
        ("wrong-magic.pcap", wrong_magic, "a1b2c3d5"),
        ("capture.pcap.gz", gzipped_pcap, "1f8b0800"),
        ("notes.pcap", text, "74686973"),
    ] {
        match open(name, bytes) {
            Err(e @ CaptureError::BadMagic { .. }) => {
                let msg = e.to_string();
                if !(msg.contains(&format!("'{name}'"))
                    && msg.contains(magic)
                    && msg.contains("byte 0")
                    && msg.contains("not a pcap or pcapng file"))
                {
                    failures.push(format!("{name}: unclear message: {msg}"));
                }
            }
            Err(e) => failures.push(format!("{name}: wrong error: {e:?}")),
            Ok(_) => failures.push(format!("{name}: opened as a capture")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn file_shorter_than_a_magic_number_is_a_truncated_header() {
    let err = open("tiny.pcap", b"\xd4\xc3".to_vec())
        .err()
        .expect("an error");
    assert!(matches!(err, CaptureError::Truncated { .. }), "{err:?}");
    assert_names_file_and_offset(&err.to_string(), "tiny.pcap", 0);
}

#[test]
fn pcap_header_cut_short_is_a_truncated_header() {
    let bytes = pcap(&two_requests())[..20].to_vec();
    let err = open("short.pcap", bytes).err().expect("an error");
    assert!(matches!(err, CaptureError::Truncated { .. }), "{err:?}");
    assert_names_file_and_offset(&err.to_string(), "short.pcap", 0);
}

#[test]
fn a_2_gib_snaplen_reads_normal_records_with_a_bounded_buffer() {
    let frames = two_requests();
    for endianness in [Endianness::Little, Endianness::Big] {
        let bytes = pcap_with_header(
            PcapHeader {
                snaplen: 0x8000_0000,
                endianness,
                ..PcapHeader::default()
            },
            &frames,
        );
        let (file, largest) = open_probed("huge-snaplen.pcap", bytes);
        let out = read_capture(file.expect("a valid pcap"));

        assert!(out.error.is_none(), "{endianness:?}: {:?}", out.error);
        assert_eq!(out.packets, frames.len(), "{endianness:?}");
        assert_eq!(
            out.exchanges(),
            vec![
                Exchange::new("GET", "/first", 200).response_body(b"one"),
                Exchange::new("GET", "/second", 200).response_body(b"two"),
            ],
            "{endianness:?}"
        );
        let largest = largest.load(Ordering::Relaxed);
        assert!(
            largest <= BUFFER_BOUND,
            "{endianness:?}: read buffer of {largest} bytes"
        );
    }
}

#[test]
fn a_record_claiming_2_gib_is_an_error_at_its_offset_without_the_allocation() {
    let frames = two_requests();
    for endianness in [Endianness::Little, Endianness::Big] {
        let mut bytes = pcap_with_header(
            PcapHeader {
                endianness,
                ..PcapHeader::default()
            },
            &frames,
        );
        let bad_at = bytes.len();
        let mut record = vec![0u8; 16];
        put_u32(&mut record, 0, 1_767_225_601, endianness);
        put_u32(&mut record, 8, 0x7fff_ffff, endianness);
        put_u32(&mut record, 12, 0x7fff_ffff, endianness);
        bytes.extend_from_slice(&record);
        bytes.extend_from_slice(&[0xab; 512]);
        let (file, largest) = open_probed("liar.pcap", bytes);
        let out = read_capture(file.expect("a valid pcap header"));

        assert_eq!(out.packets, frames.len(), "{endianness:?}");
        assert!(
            matches!(out.error, Some(CaptureError::Oversized { .. })),
            "{endianness:?}: {:?}",
            out.error
        );
        assert_names_file_and_offset(&out.message(), "liar.pcap", bad_at);
        let largest = largest.load(Ordering::Relaxed);
        assert!(
            largest <= BUFFER_BOUND,
            "{endianness:?}: read buffer of {largest} bytes"
        );
        assert_eq!(
            out.entries.len(),
            2,
            "entries before the bad record are kept"
        );
    }
}

#[test]
fn truncated_file_fails_at_the_cut_record_and_keeps_earlier_entries() {
    let frames = two_requests();
    let whole = pcap(&frames);
    let last = *pcap_record_offsets(&frames).last().expect("records");
    for (where_cut, cut) in [
        ("inside the record header", last + 10),
        ("inside the packet data", last + 16 + 20),
    ] {
        let out = read_capture(open("cut.pcap", whole[..cut].to_vec()).expect("a valid header"));

        assert_eq!(out.packets, frames.len() - 1, "{where_cut}");
        assert!(
            matches!(out.error, Some(CaptureError::Truncated { .. })),
            "{where_cut}: {:?}",
            out.error
        );
        let msg = out.message();
        assert_names_file_and_offset(&msg, "cut.pcap", last);
        assert!(msg.contains("truncated"), "{msg}");
        assert_eq!(
            out.exchanges(),
            vec![
                Exchange::new("GET", "/first", 200).response_body(b"one"),
                Exchange::unanswered("GET", "/second").flags(&["no_response"]),
            ],
            "{where_cut}"
        );
    }
}

#[test]
fn pcapng_block_with_a_corrupt_length_fails_at_that_block() {
    let frames = two_requests();
    let bad = 4; // the first request's response
    let mut failures = Vec::new();
    for endianness in [Endianness::Little, Endianness::Big] {
        let (clean, offsets) = pcapng(&frames, endianness);
        let at = offsets[bad];
        let len = get_u32(&clean, at + 4, endianness);
        let trailer = at + len as usize - 4;
        // What is broken, and the length field written over with which value.
        let corruptions = [
            ("4 GiB length", at + 4, 0xffff_fff0),
            ("length not a multiple of 4", at + 4, len + 2),
            ("length below the 12-byte minimum", at + 4, 8),
            ("length past the block's end", at + 4, len + 16),
            ("trailing length disagrees", trailer, len + 4),
        ];
        for (what, field, value) in corruptions {
            let mut bytes = clean.clone();
            put_u32(&mut bytes, field, value, endianness);
            let (file, largest) = open_probed("corrupt.pcapng", bytes);
            let out = read_capture(file.expect("a valid section header"));
            let msg = out
                .error
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let largest = largest.load(Ordering::Relaxed);
            if out.packets != bad
                || !msg.contains("'corrupt.pcapng'")
                || !msg.contains(&format!("byte {at}"))
                || largest > BUFFER_BOUND
            {
                failures.push(format!(
                    "{endianness:?}, {what}: {} packets (want {bad}), buffer {largest}, error: {msg:?}",
                    out.packets
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pcapng_reads_like_pcap() {
    // The reference for the corruption test above: the clean file reads in full.
    for endianness in [Endianness::Little, Endianness::Big] {
        let frames = two_requests();
        let (bytes, _) = pcapng(&frames, endianness);
        let out = read_capture(open("clean.pcapng", bytes).expect("a valid pcapng"));
        assert!(out.error.is_none(), "{endianness:?}: {:?}", out.error);
        assert_eq!(out.packets, frames.len());
        assert_eq!(out.entries.len(), 2);
    }
}

#[test]
fn ten_megabyte_header_line_is_a_bounded_parse_error_and_the_connection_recovers() {
    let mut huge = b"GET /upload HTTP/1.1\r\nHost: shop.example\r\nX-Padding: ".to_vec();
    huge.resize(huge.len() + (10 << 20), b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    let sizes = vec![16_000; huge.len() / 16_000];
    let mut c = Conversation::open();
    c.send_split(Peer::Client, &huge, &sizes)
        .send(
            Peer::Server,
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n",
        )
        .exchange(&get("/after"), &ok("fine"))
        .close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));

    assert_eq!(r.stats.parse_errors, 1);
    let statuses: Vec<Option<u32>> = r.exchanges().iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![Some(431), Some(200)]);
    assert_eq!(
        r.exchanges()[1],
        Exchange::new("GET", "/after", 200).response_body(b"fine")
    );
    let max_head = DissectConfig::default().max_head;
    for e in &r.entries {
        let kept: usize = http_request(e)
            .map(|q| q.headers.iter().map(|h| h.name.len() + h.value.len()).sum())
            .unwrap_or(0);
        assert!(kept <= max_head, "an entry kept {kept} header bytes");
    }
}

#[test]
fn endless_chunked_body_is_capped_at_max_body_and_flagged_truncated() {
    let chunk = format!("64\r\n{}\r\n", "z".repeat(100)); // 0x64 = 100 bytes
    let mut c = Conversation::open();
    c.send(Peer::Client, &get("/stream")).send(
        Peer::Server,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..100 {
        c.send(Peer::Server, chunk.repeat(10).as_bytes());
    }
    // The capture ends while the body is still flowing.
    let r = run_with(max_body(4096), &c.frames(Link::Ethernet));

    assert_eq!(r.entries.len(), 1);
    let e = &r.entries[0];
    assert_eq!(http_response(e).map(|r| r.status), Some(200));
    assert!(e.flags.contains(&"truncated".to_string()), "{:?}", e.flags);
    let body = response_body_of(e);
    assert_eq!(body.data.len(), 4096);
    assert!(body.truncated);
    assert_eq!(body.wire_size, 100 * 10 * 100);
}

#[test]
fn invalid_chunk_size_flags_the_entry_and_the_next_exchange_parses() {
    let mut c = Conversation::open();
    c.exchange(
        &get("/chunks"),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .exchange(&get("/after"), &ok("fine"))
    .close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));

    let got = r.exchanges();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].path.as_str(), got[0].status),
        ("/chunks", Some(200))
    );
    assert!(
        got[0].flags.contains(&"malformed:chunk_size".to_string()),
        "{:?}",
        got[0].flags
    );
    assert_eq!(
        got[1],
        Exchange::new("GET", "/after", 200).response_body(b"fine")
    );
    assert!(r.stats.parse_errors >= 1);
}

#[test]
fn escape_byte_in_a_path_is_a_parse_error_and_never_reaches_an_entry() {
    let mut c = Conversation::open();
    c.exchange(
        b"GET /\x1b[2J\x1b]0;owned\x07 HTTP/1.1\r\nHost: shop.example\r\n\r\n",
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    )
    .exchange(&get("/after"), &ok("fine"))
    .close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));

    assert_eq!(r.stats.parse_errors, 1);
    for e in &r.entries {
        if let Some(q) = http_request(e) {
            assert!(
                !q.path.contains('\x1b'),
                "path kept an escape: {:?}",
                q.path
            );
        }
    }
    assert_eq!(
        r.exchanges().last(),
        Some(&Exchange::new("GET", "/after", 200).response_body(b"fine"))
    );
}

#[test]
fn c1_control_in_a_utf8_path_is_kept_exactly_for_the_display_to_clean() {
    let path = "/caf\u{9b}31mred";
    let mut c = Conversation::open();
    c.exchange(&get(path), &ok("fine")).close(Peer::Client);
    let r = run(&c.frames(Link::Ethernet));

    assert_eq!(
        r.exchanges(),
        vec![Exchange::new("GET", path, 200).response_body(b"fine")]
    );
}

/// Link types kubetap decodes, and a few it does not.
fn any_link() -> impl Strategy<Value = u32> {
    prop_oneof![
        prop::sample::select(vec![
            link::NULL,
            link::ETHERNET,
            link::RAW_OPENBSD,
            link::RAW_BSD,
            link::RAW,
            link::LOOP,
            link::LINUX_SLL,
            link::IPV4,
            link::IPV6,
            link::LINUX_SLL2,
        ]),
        any::<u32>(),
    ]
}

fn every_framing() -> impl Strategy<Value = Link> {
    prop::sample::select(vec![
        Link::Ethernet,
        Link::Vlan(7),
        Link::Ipv6,
        Link::LinuxSll,
        Link::LinuxSll2,
        Link::RawIp,
        Link::Null,
        Link::NullIpv6,
    ])
}

fn feed(frames: &[Frame]) -> Stats {
    let mut pipeline = Pipeline::new(PipelineConfig::default());
    let mut entries = Vec::new();
    for f in frames {
        pipeline.packet(&f.packet(), &mut entries);
    }
    pipeline.finish(&mut entries);
    pipeline.stats()
}

proptest! {
    #[test]
    fn random_bytes_as_packets_of_any_link_type_do_not_panic(
        packets in prop::collection::vec(
            (any_link(), prop::collection::vec(any::<u8>(), 0..200)),
            1..30,
        ),
    ) {
        let frames: Vec<Frame> = packets
            .into_iter()
            .enumerate()
            .map(|(i, (link, data))| Frame { ts_ns: i as u64 * 1_000_000, link, data })
            .collect();
        let stats = feed(&frames);
        prop_assert_eq!(stats.packets, frames.len() as u64);
    }

    #[test]
    fn mutated_conversation_packets_do_not_panic(
        framing in every_framing(),
        mutations in prop::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 1..40),
        cut in prop::option::of((any::<usize>(), any::<usize>())),
    ) {
        let mut c = Conversation::open();
        c.exchange(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        )
        .exchange(&get("/next"), &ok("next"))
        .close(Peer::Client);
        let mut frames = c.frames(framing);
        let count = frames.len();
        for (frame, at, byte) in mutations {
            let f = &mut frames[frame % count];
            let n = f.data.len();
            f.data[at % n] = byte;
        }
        if let Some((frame, len)) = cut {
            let f = &mut frames[frame % count];
            let n = f.data.len();
            f.data.truncate(len % n);
        }
        let stats = feed(&frames);
        prop_assert_eq!(stats.packets, frames.len() as u64);
    }

    #[test]
    fn random_bytes_after_a_capture_header_end_cleanly_or_with_an_offset(
        header in prop::sample::select(vec!["pcap-le", "pcap-be", "pcapng-le", "pcapng-be"]),
        tail in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = match header {
            "pcap-le" => pcap(&[]),
            "pcap-be" => pcap_with_header(PcapHeader::default(), &[]),
            "pcapng-le" => pcapng(&[], Endianness::Little).0,
            _ => pcapng(&[], Endianness::Big).0,
        };
        bytes.extend_from_slice(&tail);
        let mut file = open("random.cap", bytes).expect("a valid header");
        // Every record takes at least 12 bytes, so this many reads must reach the end.
        for _ in 0..=tail.len() / 12 + 1 {
            match file.next_packet() {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.contains("'random.cap'") && msg.contains("byte "), "{}", msg);
                    return Ok(());
                }
            }
        }
        prop_assert!(false, "the reader did not reach the end of {} bytes", tail.len());
    }
}
