//! HPACK's Huffman code (RFC 7541, Appendix B): encoding, for redaction (an
//! HTTP/2 header value as the wire carries it when the sender Huffman-coded
//! it, as curl, Go and nghttp2 do when it is shorter, so the packet ring
//! can find and overwrite it), and decoding, for every header block.
//! `loona_hpack` has no encoder, and its decoder looks each bit up in a
//! hash map, which made it most of HTTP/2's cost under load; both are
//! written here from the RFC's table (the tests hold the decoder to
//! loona-hpack's).

/// (code, length in bits) for each octet; EOS (256) is never written.
const CODES: [(u32, u8); 256] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
];

/// EOS, which a string never holds (RFC 7541 §5.2).
const EOS: (u32, u8) = (0x3fffffff, 30);
/// The shortest and longest code.
const MIN_BITS: u8 = 5;
const MAX_BITS: u8 = 30;

/// Why a Huffman-coded string does not decode (RFC 7541 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuffmanError {
    /// It holds EOS.
    Eos,
    /// A code no symbol has, or padding longer than 7 bits.
    Invalid,
    /// The padding is not the most significant bits of EOS (all ones).
    Padding,
}

/// The codes of each length, sorted, with their symbols (256 for EOS).
struct Table {
    by_len: [Vec<(u32, u16)>; MAX_BITS as usize + 1],
}

fn table() -> &'static Table {
    static TABLE: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut by_len: [Vec<(u32, u16)>; MAX_BITS as usize + 1] = Default::default();
        for (sym, &(code, len)) in CODES.iter().enumerate().chain([(256, &EOS)]) {
            by_len[usize::from(len)].push((code, sym as u16));
        }
        for codes in &mut by_len {
            codes.sort_unstable();
        }
        Table { by_len }
    })
}

/// A Huffman-coded string decoded, bit by bit: at each length the codes
/// of that length are searched (a range check, then a binary search).
pub fn decode(coded: &[u8]) -> Result<Vec<u8>, HuffmanError> {
    let t = table();
    let mut out = Vec::with_capacity(coded.len() + coded.len() / 2);
    let (mut acc, mut len) = (0u32, 0u8);
    for &byte in coded {
        for shift in (0..8).rev() {
            acc = (acc << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            if len < MIN_BITS {
                continue;
            }
            let codes = &t.by_len[usize::from(len)];
            let hit = match (codes.first(), codes.last()) {
                (Some(first), Some(last)) if (first.0..=last.0).contains(&acc) => codes
                    .binary_search_by_key(&acc, |c| c.0)
                    .ok()
                    .map(|i| codes[i].1),
                _ => None,
            };
            match hit {
                Some(256) => return Err(HuffmanError::Eos),
                Some(sym) => {
                    out.push(sym as u8);
                    (acc, len) = (0, 0);
                }
                None if len >= MAX_BITS => return Err(HuffmanError::Invalid),
                None => {}
            }
        }
    }
    if len > 7 {
        return Err(HuffmanError::Invalid);
    }
    if acc != (1u32 << len) - 1 {
        return Err(HuffmanError::Padding);
    }
    Ok(out)
}

/// `value` Huffman-coded, padded with the most significant bits of EOS
/// (ones), as an encoder writes it.
pub fn encode(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let (mut acc, mut bits) = (0u64, 0u32);
    for &b in value {
        let (code, len) = CODES[usize::from(b)];
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1u64 << bits) - 1;
    }
    if bits > 0 {
        out.push(((acc << (8 - bits)) | ((1u64 << (8 - bits)) - 1)) as u8);
    }
    out
}

/// `n` bytes that decode as a Huffman-coded string of `0`s (code `00000`)
/// with valid padding: what an overwritten Huffman-coded value becomes, so
/// the header block still decodes (and the decoder's table stays in step).
pub fn filler(n: usize) -> Vec<u8> {
    let bits = 8 * n;
    let pad = bits % 5;
    let mut out = vec![0u8; n];
    // The last `pad` bits are ones (EOS's first bits).
    for i in 0..pad {
        let bit = bits - 1 - i;
        out[bit / 8] |= 0x80 >> (bit % 8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::huffman::HuffmanDecoder;

    #[test]
    fn what_we_encode_the_hpack_decoder_reads_back() {
        let all: Vec<u8> = (0..=255).collect();
        for value in [
            &b"Bearer canary-h2-bearer-0123456789abcdef"[..],
            b"/items?token=abc&page=2",
            b"",
            b"a",
            &all,
        ] {
            let encoded = encode(value);
            assert_eq!(HuffmanDecoder::new().decode(&encoded).unwrap(), value);
        }
        // RFC 7541 C.4.1: "www.example.com".
        assert_eq!(
            encode(b"www.example.com"),
            [
                0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff
            ]
        );
    }

    #[test]
    fn our_decoder_reads_what_we_encode_and_agrees_with_loona_hpack() {
        let all: Vec<u8> = (0..=255).collect();
        for value in [&b"www.example.com"[..], b"", b"a", &all] {
            assert_eq!(decode(&encode(value)).unwrap(), value);
        }
        // Random strings, and random bytes as coded strings: the same
        // answer as loona-hpack's decoder, or both refuse.
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut loona = HuffmanDecoder::new();
        for _ in 0..20_000 {
            let n = (next() % 40) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
            let ours = decode(&bytes);
            let theirs = loona.decode(&bytes);
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{bytes:02x?}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{bytes:02x?}: ours {ours:?}, loona-hpack's {theirs:?}"),
            }
        }
        // RFC 7541 §5.2's refusals.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::Eos));
        assert_eq!(
            decode(&[0xff]),
            Err(HuffmanError::Invalid),
            "8 bits of padding"
        );
        assert_eq!(
            decode(&[0x00]),
            Err(HuffmanError::Padding),
            "'0' then padding 000"
        );
    }

    /// Our decoder against loona-hpack's on the same Huffman-coded header
    /// values (paths, authorities, user agents, tokens), in one run.
    #[test]
    #[ignore = "a measurement: cargo xtask bench --only micro"]
    fn huffman_decode_rate() {
        let values: Vec<Vec<u8>> = (0..1000)
            .map(|i| {
                format!("/api/v1/items/{i}?page={}&sort=name", i % 7)
                    .into_bytes()
                    .into_iter()
                    .chain(format!("shop-{i}.example.svc.cluster.local").into_bytes())
                    .chain(
                        b"Mozilla/5.0 (X11; Linux x86_64) curl/8.5.0"
                            .iter()
                            .copied(),
                    )
                    .collect()
            })
            .map(|v: Vec<u8>| encode(&v))
            .collect();
        let bytes: usize = values.iter().map(Vec::len).sum();
        let rate = |f: &mut dyn FnMut(&[u8]) -> usize| {
            let start = std::time::Instant::now();
            let mut out = 0;
            for _ in 0..20 {
                for v in &values {
                    out += f(v);
                }
            }
            assert!(out > 0);
            (20 * bytes) as f64 / start.elapsed().as_secs_f64() / 1e6
        };
        let ours = rate(&mut |v| decode(v).unwrap().len());
        let mut loona = HuffmanDecoder::new();
        let theirs = rate(&mut |v| loona.decode(v).unwrap().len());
        eprintln!(
            "HPACK Huffman decoding: ours {ours:.1} MB/s, loona-hpack's {theirs:.1} MB/s (reference), ratio {:.1}",
            ours / theirs
        );
    }

    #[test]
    fn the_filler_decodes_as_zeros_at_every_length() {
        for n in 1..40 {
            let f = filler(n);
            assert_eq!(f.len(), n);
            let decoded = HuffmanDecoder::new().decode(&f).unwrap();
            assert_eq!(decoded, vec![b'0'; 8 * n / 5]);
        }
    }
}
