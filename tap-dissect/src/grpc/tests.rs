//! The grpc dissector's unit tests.

use super::*;
use std::io::Write;

fn frame(compressed: bool, msg: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::from(compressed)];
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    v
}

fn side(framer: Framer, headers: Vec<Header>) -> Side {
    Side {
        headers,
        trailers: Vec::new(),
        framer: Some(framer),
        body_size: 0,
    }
}

#[test]
fn decodes_scalars_strings_and_nested_messages() {
    // {1: 150, 2: "testing", 3: {1: 1, 2: "x\x01"}, 4: fixed32 7, 5: fixed64 9, 6: bytes ff}
    let msg = b"\x08\x96\x01\x12\x07testing\x1a\x07\x08\x01\x12\x03x\x01y\
                    \x25\x07\x00\x00\x00\x29\x09\x00\x00\x00\x00\x00\x00\x00\x32\x01\xff";
    let f = decode_message(msg).unwrap();
    assert_eq!(f.len(), 6);
    assert_eq!((f[0].number, f[0].wire_type, f[0].scalar), (1, 0, 150));
    assert_eq!(f[1].kind, ProtoValueKind::String as i32);
    assert_eq!(f[1].text, "testing");
    assert_eq!(f[2].kind, ProtoValueKind::Message as i32);
    assert_eq!(f[2].fields[0].scalar, 1);
    // Valid UTF-8 with a control character, not a message: still text.
    assert_eq!(f[2].fields[1].text, "x\u{1}y");
    assert_eq!(
        (f[3].kind, f[3].scalar),
        (ProtoValueKind::Fixed32 as i32, 7)
    );
    assert_eq!(
        (f[4].kind, f[4].scalar),
        (ProtoValueKind::Fixed64 as i32, 9)
    );
    assert_eq!(f[5].kind, ProtoValueKind::Bytes as i32);
    assert_eq!(f[5].data, [0xff]);
}

#[test]
fn not_protobuf_is_not_decoded() {
    for bad in [
        &b"\x0b"[..],                                    // group start
        b"\x00\x01",                                     // field number 0
        b"\x12\x05ab",                                   // length past the end
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", // varint overflow
    ] {
        assert_eq!(decode_message(bad), None, "{bad:?}");
    }
    assert_eq!(decode_message(b"").unwrap(), Vec::new());
}

#[test]
fn deep_nesting_and_many_fields_are_bounded() {
    // 200 levels of {1: {1: {…}}}: decoding stops trying at MAX_DEPTH.
    let mut m = b"\x08\x01".to_vec();
    for _ in 0..200 {
        let mut outer = vec![0x0a, 0];
        let mut len = Vec::new();
        let mut n = m.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                len.push(b);
                break;
            }
            len.push(b | 0x80);
        }
        outer.truncate(1);
        outer.extend(len);
        outer.extend(&m);
        m = outer;
    }
    let f = decode_message(&m).unwrap();
    let mut depth = 0;
    let mut cur = &f;
    while let Some(x) = cur
        .first()
        .filter(|x| x.kind == ProtoValueKind::Message as i32)
    {
        depth += 1;
        cur = &x.fields;
    }
    assert!(depth < MAX_DEPTH);
    // 100,000 varint fields: more than the budget, so not decoded at all.
    let many = b"\x08\x01".repeat(100_000);
    assert_eq!(decode_message(&many), None);
}

#[test]
fn framer_splits_across_chunks_and_counts_past_the_caps() {
    let mut bytes = frame(false, b"\x08\x01");
    bytes.extend(frame(false, b""));
    bytes.extend(frame(false, b"\x12\x03abc"));
    let mut f = Framer::new(1 << 20);
    for b in bytes.chunks(1) {
        f.feed(b);
    }
    let r = request("/pkg.Svc/Do", "h", side(f, Vec::new()));
    assert_eq!((r.service.as_str(), r.method.as_str()), ("pkg.Svc", "Do"));
    assert_eq!(r.message_count, 3);
    assert_eq!(r.messages[1].length, 0);
    assert!(r.messages[1].decoded);
    assert_eq!(r.messages[2].fields[0].text, "abc");
    assert!(!r.truncated);

    let mut f = Framer::new(10);
    for _ in 0..(MAX_MESSAGES + 5) {
        f.feed(&frame(false, b"\x08\x01\x08\x01"));
    }
    let r = request("/a/b", "", side(f, Vec::new()));
    assert_eq!(r.message_count, MAX_MESSAGES as u64 + 5);
    assert!(r.truncated);
    let kept: usize = r.messages.iter().map(|m| m.data.len()).sum();
    assert_eq!(kept, 10);
    assert!(r.messages[2].truncated && !r.messages[2].decoded);
}

#[test]
fn compressed_messages_are_inflated_and_huge_lengths_not_allocated() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"\x12\x05hello").unwrap();
    let mut f = Framer::new(1 << 20);
    f.feed(&frame(true, &gz.finish().unwrap()));
    // A prefix announcing 4 GiB, then a few bytes: only those are kept.
    f.feed(b"\x00\xff\xff\xff\xffabc");
    let headers = vec![Header {
        name: "grpc-encoding".into(),
        value: "gzip".into(),
    }];
    let r = response(200, side(f, headers));
    assert!(r.messages[0].compressed);
    assert_eq!(r.messages[0].fields[0].text, "hello");
    assert_eq!(r.messages[1].length, u32::MAX);
    assert_eq!(r.messages[1].data, b"abc");
    assert!(r.messages[1].truncated && r.truncated);
}

#[test]
fn status_from_trailers_or_trailers_only_headers() {
    let h = |n: &str, v: &str| Header {
        name: n.into(),
        value: v.into(),
    };
    let r = response(
        200,
        Side {
            headers: vec![h("content-type", "application/grpc")],
            trailers: vec![h("grpc-status", "5"), h("grpc-message", "no%20such%20key%")],
            framer: None,
            body_size: 0,
        },
    );
    assert_eq!(r.status, Some(5));
    assert_eq!(r.status_name, "NOT_FOUND");
    assert_eq!(r.message, "no such key%");
    let only = response(
        200,
        Side {
            headers: vec![h("grpc-status", "99")],
            trailers: Vec::new(),
            framer: None,
            body_size: 0,
        },
    );
    assert_eq!(
        (only.status, only.status_name.as_str()),
        (Some(99), "CODE99")
    );
    assert!(is_grpc("application/grpc+proto"));
    assert!(!is_grpc("application/json"));
}
