//! Content-encoding removal for display: gzip, deflate (zlib or raw) and
//! brotli bodies are decoded, never past the configured cap, so a compression
//! bomb costs at most the cap.

use proto::v1::Body;
use std::io::Read;

/// Makes the displayed body from the captured body bytes. `raw_complete` is
/// false when capture or the cap cut the raw bytes short.
pub fn body(
    raw: Vec<u8>,
    wire_size: u64,
    raw_complete: bool,
    content_encoding: Option<&str>,
    max: usize,
) -> Body {
    let coding = content_encoding.map(|c| c.trim().to_ascii_lowercase());
    let decoded = match coding.as_deref() {
        Some("gzip" | "x-gzip") => decode(flate2::read::MultiGzDecoder::new(&raw[..]), max),
        Some("deflate") => {
            // "deflate" is meant to be zlib-wrapped, but raw deflate is common too.
            let zlib = decode(flate2::read::ZlibDecoder::new(&raw[..]), max);
            if zlib.as_ref().is_some_and(|(d, _)| !d.is_empty()) {
                zlib
            } else {
                decode(flate2::read::DeflateDecoder::new(&raw[..]), max)
            }
        }
        Some("br") => decode(brotli::Decompressor::new(&raw[..], 4096), max),
        _ => None,
    };
    match decoded {
        Some((data, complete)) => Body {
            data,
            wire_size,
            truncated: !complete || !raw_complete,
            decoded_from: coding.unwrap_or_default(),
        },
        None => Body {
            data: raw,
            wire_size,
            truncated: !raw_complete,
            decoded_from: String::new(),
        },
    }
}

/// Decodes at most `max` bytes; `None` if nothing decodes at all. The flag says
/// whether the stream decoded to its end within the cap.
fn decode<R: Read>(reader: R, max: usize) -> Option<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut limited = reader.take(max as u64 + 1);
    let complete = match limited.read_to_end(&mut out) {
        Ok(_) => out.len() <= max,
        Err(_) if out.is_empty() => return None,
        Err(_) => false,
    };
    out.truncate(max);
    Some((out, complete))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_decodes() {
        let b = body(gzip(b"hello world"), 31, true, Some("gzip"), 100);
        assert_eq!(b.data, b"hello world");
        assert_eq!(b.decoded_from, "gzip");
        assert!(!b.truncated);
    }

    #[test]
    fn bomb_is_capped() {
        let raw = gzip(&vec![0u8; 10 << 20]);
        let b = body(raw, 0, true, Some("gzip"), 1000);
        assert_eq!(b.data.len(), 1000);
        assert!(b.truncated);
    }

    #[test]
    fn deflate_raw_and_zlib() {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"zlib body").unwrap();
        assert_eq!(
            body(z.finish().unwrap(), 0, true, Some("deflate"), 100).data,
            b"zlib body"
        );
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        d.write_all(b"raw body").unwrap();
        assert_eq!(
            body(d.finish().unwrap(), 0, true, Some("deflate"), 100).data,
            b"raw body"
        );
    }

    #[test]
    fn brotli_decodes() {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            w.write_all(b"brotli body").unwrap();
        }
        assert_eq!(body(out, 0, true, Some("br"), 100).data, b"brotli body");
    }

    #[test]
    fn not_really_compressed_is_kept_raw() {
        let b = body(b"plain".to_vec(), 5, true, Some("gzip"), 100);
        assert_eq!(b.data, b"plain");
        assert_eq!(b.decoded_from, "");
    }
}
