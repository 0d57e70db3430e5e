//! HPACK: one direction's header blocks decoded with the dynamic table, and
//! what can still be read without it (literal names and values) after a
//! mid-stream start or a loss.

use super::*;

/// HPACK decoding of one direction's header blocks.
pub(super) struct Hpack {
    pub(super) decoder: Decoder<'static>,
    /// The table is known from the connection's start; false after a
    /// mid-stream start, a gap, or a block that did not decode.
    pub(super) known: bool,
    /// SETTINGS_HEADER_TABLE_SIZE of the decoding peer, as it was sent.
    pub(super) advertised: u32,
}

/// An HPACK integer with an N-bit prefix (RFC 7541 §5.1), limited to five
/// octets as loona-hpack limits it: the value and the octets it took.
pub(super) fn hpack_integer(b: &[u8], prefix: u8) -> Option<(usize, usize)> {
    let mask = (1usize << prefix) - 1;
    let mut v = usize::from(*b.first()?) & mask;
    if v < mask {
        return Some((v, 1));
    }
    for (k, byte) in b.iter().enumerate().skip(1).take(4) {
        v += usize::from(byte & 0x7f) << (7 * (k - 1));
        if byte & 0x80 == 0 {
            return Some((v, k + 1));
        }
    }
    None
}

/// Copies the string literal at `at` to `out`, Huffman-decoded and written
/// raw when it was coded; returns where the next field starts.
pub(super) fn raw_string(b: &[u8], at: usize, out: &mut Vec<u8>) -> Option<usize> {
    let rest = b.get(at..)?;
    let (len, n) = hpack_integer(rest, 7)?;
    let end = n.checked_add(len)?;
    let coded = rest.get(n..end)?;
    match (rest[0] & 0x80 != 0).then(|| super::huffman::decode(coded)) {
        Some(Ok(raw)) => {
            encode_integer_into(raw.len(), 7, 0, out).ok()?;
            out.extend_from_slice(&raw);
        }
        // Raw already, or a bad code that loona-hpack will report.
        _ => out.extend_from_slice(&rest[..end]),
    }
    Some(at + end)
}

/// A field representation's kind from its first octet (RFC 7541 §6): the
/// bits of its index's integer prefix, and whether strings follow (indexed
/// and size updates: no; literals with incremental indexing, without
/// indexing or never indexed: yes).
fn representation(first: u8) -> (u8, bool) {
    if first & 0x80 != 0 {
        (7, false)
    } else if first & 0x40 != 0 {
        (6, true)
    } else if first & 0x20 != 0 {
        (5, false)
    } else {
        (4, true)
    }
}

/// The block with its Huffman-coded strings written out raw, which decodes to
/// the same headers; `None` when the block does not parse, and loona-hpack
/// then reads the original and says why. At most 8/5 of the block's size.
pub(super) fn without_huffman(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len() + block.len() / 2);
    let mut i = 0;
    while i < block.len() {
        let (prefix, literal) = representation(block[i]);
        let (index, n) = hpack_integer(&block[i..], prefix)?;
        out.extend_from_slice(&block[i..i + n]);
        i += n;
        if literal {
            if index == 0 {
                i = raw_string(block, i, &mut out)?;
            }
            i = raw_string(block, i, &mut out)?;
        }
    }
    Some(out)
}

/// A string literal at `at` (RFC 7541 §5.2), Huffman-decoded where it was
/// coded, and where the next field starts.
fn string_at(b: &[u8], at: usize) -> Option<(Vec<u8>, usize)> {
    let rest = b.get(at..)?;
    let (len, n) = hpack_integer(rest, 7)?;
    let end = n.checked_add(len)?;
    let coded = rest.get(n..end)?;
    let value = if rest[0] & 0x80 != 0 {
        super::huffman::decode(coded).ok()?
    } else {
        coded.to_vec()
    };
    Some((value, at + end))
}

/// The `content-type` a block carries as a literal (its name by the static
/// table's index 31 or spelled out): readable without the dynamic table, so
/// a call picked up mid-connection still shows that it is gRPC.
pub(super) fn literal_content_type(block: &[u8]) -> Option<String> {
    const CONTENT_TYPE: usize = 31;
    let mut i = 0;
    while i < block.len() {
        let (prefix, literal) = representation(block[i]);
        let (index, n) = hpack_integer(&block[i..], prefix)?;
        i += n;
        if !literal {
            continue;
        }
        let named = if index == 0 {
            let (name, next) = string_at(block, i)?;
            i = next;
            name == b"content-type"
        } else {
            index == CONTENT_TYPE
        };
        let (value, next) = string_at(block, i)?;
        i = next;
        if named {
            return Some(String::from_utf8_lossy(&value).into_owned());
        }
    }
    None
}

/// A decoded header block and what went wrong decoding it.
#[derive(Debug, Default)]
pub(super) struct Decoded {
    pub(super) headers: Vec<(String, String)>,
    pub(super) flags: Vec<String>,
}

impl Hpack {
    pub(super) fn new(known: bool) -> Self {
        let mut h = Hpack {
            decoder: Decoder::new(),
            known: true,
            advertised: DEFAULT_TABLE_SIZE as u32,
        };
        h.decoder.set_max_allowed_table_size(DEFAULT_TABLE_SIZE);
        if !known {
            h.lose();
        }
        h
    }

    /// From here on only entries the peer adds are known. They sit at the
    /// newest positions whatever came before, so a reference to them decodes
    /// right and one past them fails instead of being guessed. The table may
    /// grow larger than the peer's: it then keeps entries the peer evicted and
    /// never refers to again, which is harmless.
    pub(super) fn lose(&mut self) {
        self.decoder = Decoder::new();
        self.decoder.set_max_allowed_table_size(MAX_TABLE_SIZE);
        self.decoder.set_max_table_size(MAX_TABLE_SIZE);
        self.known = false;
    }

    pub(super) fn set_allowed(&mut self, size: u32) {
        self.advertised = size;
        if self.known {
            self.decoder
                .set_max_allowed_table_size((size as usize).min(MAX_TABLE_SIZE));
        }
    }

    /// Decodes a block; headers past `max_list` bytes (counted as HPACK's
    /// header list size) are dropped. The whole block is still read, at a
    /// cost bounded by its size, so the dynamic table stays in step.
    pub(super) fn decode(&mut self, block: &[u8], max_list: usize) -> Decoded {
        let mut d = Decoded::default();
        let mut size = 0usize;
        let mut over = false;
        let original = block;
        let raw = without_huffman(block);
        let block = raw.as_deref().unwrap_or(block);
        let r = self.decoder.decode_with_cb(block, |name, value| {
            size = size.saturating_add(name.len() + value.len() + 32);
            if size > max_list {
                over = true;
            } else {
                d.headers.push((
                    String::from_utf8_lossy(&name).into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                ));
            }
        });
        if over {
            d.flags.push("malformed:header_list_too_large".into());
        }
        match r {
            // A size update ending a block is out of place but changes nothing decoded.
            Ok(()) | Err(DecoderError::SizeUpdateAtEnd) => {}
            Err(e) => {
                // Past our own cap the peer may be within its SETTINGS: unknown, not malformed.
                let beyond_our_cap = matches!(e, DecoderError::InvalidMaxDynamicSize)
                    && self.advertised as usize > MAX_TABLE_SIZE;
                if self.known && !beyond_our_cap {
                    let why = match e {
                        DecoderError::HeaderIndexOutOfBounds => "index",
                        DecoderError::IntegerDecodingError(_) => "integer",
                        DecoderError::StringDecodingError(_) => "string",
                        DecoderError::InvalidMaxDynamicSize => "table_size",
                        _ => "error",
                    };
                    d.flags.push(format!("malformed:hpack_{why}"));
                }
                d.flags.push("hpack_unknown".into());
                self.lose();
                // What the table hid may come before a literal content type.
                if !d.headers.iter().any(|(n, _)| n == "content-type")
                    && let Some(ct) = literal_content_type(original)
                {
                    d.headers.push(("content-type".into(), ct));
                }
            }
        }
        d
    }
}
