//! SPDY/3.1 framing, as `kubectl port-forward` speaks it (client-go's
//! `httpstream/spdy` over moby/spdystream): frames read from and written to
//! an upgraded connection, for the port-forward sessions in `portforward`.
//! No Rust SPDY crate fits a server (crates.io has `spdy-mux`, a client-side
//! multiplexer, and the long-abandoned `spdy`), so the few frames are done
//! here by hand.
//!
//! A frame is 8 bytes of header and a payload. Control frames:
//! `1vvvvvvv vvvvvvvv tttttttt tttttttt | flags(8) length(24)` (version 3,
//! a type); data frames: `0sssssss ssssssss ssssssss ssssssss | flags(8)
//! length(24)` (a stream id). SYN_STREAM, SYN_REPLY and HEADERS carry a
//! name/value block (a count, then length-prefixed names and values, every
//! number a big-endian u32), and all the blocks of one direction of a
//! connection are pieces of one zlib stream made with the preset
//! [`DICTIONARY`], each piece ending with a sync flush.
//!
//! - Reading: [`Inflater`] runs miniz_oxide's raw inflate over a 32 KiB
//!   window buffer that starts out holding the dictionary, so back
//!   references reach into it as zlib's `inflateSetDictionary` would let
//!   them; the zlib header and dictionary id are checked and skipped by
//!   hand. (miniz_oxide takes no preset dictionary, and flate2's zlib
//!   backends, which do, must not be enabled: cargo would unify the feature
//!   into every crate's flate2 and change what they compress.)
//! - Writing: [`Deflater`] compresses nothing: its zlib stream is the
//!   header once, then per frame a stored (uncompressed) deflate block with
//!   the name/value block and an empty stored block, the sync flush marker
//!   on which Go's inflater hands out what it has read.

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The SPDY version spoken.
const VERSION: u16 = 3;

/// Control frame types.
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// FLAG_FIN, on data and control frames: the sender's half of the stream
/// ends.
const FLAG_FIN: u8 = 0x01;

/// Stream ids (and window deltas) are 31 bits.
const MASK_31: u32 = 0x7fff_ffff;

/// The longest payload a frame's 24-bit length allows.
pub(crate) const MAX_PAYLOAD: usize = 0xff_ffff;

/// The most a header block may inflate to (kubectl's are under 100 bytes).
const MAX_HEADERS: usize = 64 * 1024;

/// deflate's window: the farthest a back reference reaches.
const WINDOW: usize = 32 * 1024;

/// RST_STREAM and GOAWAY status: the peer broke the protocol.
pub(crate) const PROTOCOL_ERROR: u32 = 1;
/// RST_STREAM status: the stream is refused (too many open).
pub(crate) const REFUSED_STREAM: u32 = 3;

/// SPDY/3's zlib dictionary for header blocks (the spec's, as Go's
/// spdystream has it).
pub(crate) const DICTIONARY: &[u8] = concat!(
    "\0\0\0\x07options\0\0\0\x04head\0\0\0\x04post\0\0\0\x03put\0\0\0\x06delete\0\0\0\x05",
    "trace\0\0\0\x06accept\0\0\0\x0eaccept-charset\0\0\0\x0faccept-encoding\0\0\0\x0facce",
    "pt-language\0\0\0\x0daccept-ranges\0\0\0\x03age\0\0\0\x05allow\0\0\0\x0dauthorizatio",
    "n\0\0\0\x0dcache-control\0\0\0\x0aconnection\0\0\0\x0ccontent-base\0\0\0\x10content-",
    "encoding\0\0\0\x10content-language\0\0\0\x0econtent-length\0\0\0\x10content-location",
    "\0\0\0\x0bcontent-md5\0\0\0\x0dcontent-range\0\0\0\x0ccontent-type\0\0\0\x04date\0\0",
    "\0\x04etag\0\0\0\x06expect\0\0\0\x07expires\0\0\0\x04from\0\0\0\x04host\0\0\0\x08if-",
    "match\0\0\0\x11if-modified-since\0\0\0\x0dif-none-match\0\0\0\x08if-range\0\0\0\x13i",
    "f-unmodified-since\0\0\0\x0dlast-modified\0\0\0\x08location\0\0\0\x0cmax-forwards\0",
    "\0\0\x06pragma\0\0\0\x12proxy-authenticate\0\0\0\x13proxy-authorization\0\0\0\x05ran",
    "ge\0\0\0\x07referer\0\0\0\x0bretry-after\0\0\0\x06server\0\0\0\x02te\0\0\0\x07traile",
    "r\0\0\0\x11transfer-encoding\0\0\0\x07upgrade\0\0\0\x0auser-agent\0\0\0\x04vary\0\0",
    "\0\x03via\0\0\0\x07warning\0\0\0\x10www-authenticate\0\0\0\x06method\0\0\0\x03get\0",
    "\0\0\x06status\0\0\0\x06200 OK\0\0\0\x07version\0\0\0\x08HTTP/1.1\0\0\0\x03url\0\0\0",
    "\x06public\0\0\0\x0aset-cookie\0\0\0\x0akeep-alive\0\0\0\x06origin100101201202205206",
    "300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Auth",
    "oritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthori",
    "zed403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service",
    " UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed,",
    " Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/",
    "xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,defla",
    "te,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
)
.as_bytes();

/// The dictionary's Adler-32, which a zlib stream names it by.
const DICTIONARY_ID: u32 = adler32(DICTIONARY);

const fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b, mut i) = (1u32, 0u32, 0);
    while i < data.len() {
        a = (a + data[i] as u32) % 65521;
        b = (b + a) % 65521;
        i += 1;
    }
    (b << 16) | a
}

/// Why a SPDY connection is given up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpdyError {
    #[error("cannot read a SPDY frame: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY version {0} is not spoken here, only 3")]
    Version(u16),
    #[error("a malformed SPDY control frame of type {0}")]
    Malformed(u16),
    #[error("a SPDY header block does not inflate: {0}")]
    Inflate(&'static str),
}

/// A header block's names and values, in order (a value holding NULs is
/// several values, kept as sent).
pub(crate) type Headers = Vec<(String, String)>;

/// One frame. SETTINGS are read and dropped: nothing here depends on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
    SynStream {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    Headers {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Settings,
    Ping(u32),
    GoAway {
        last_good: u32,
        status: u32,
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
    /// A control frame type SPDY/3.1 does not define (ignored, as the spec
    /// says).
    Unknown(u16),
}

/// The next frame, or `None` where the connection ends.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    decoder: &mut Decoder,
) -> Result<Option<Frame>, SpdyError> {
    let mut head = [0u8; 8];
    match io.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]);
    let mut payload = vec![0; len as usize];
    io.read_exact(&mut payload).await?;
    decoder.decode(head, payload).map(Some)
}

/// Frames from bytes, for one direction of one connection (it holds that
/// direction's header-block zlib stream).
#[derive(Default)]
pub(crate) struct Decoder {
    inflater: Inflater,
}

impl Decoder {
    /// The frame with this header and payload.
    pub(crate) fn decode(&mut self, head: [u8; 8], payload: Vec<u8>) -> Result<Frame, SpdyError> {
        let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let fin = head[4] & FLAG_FIN != 0;
        if word & 0x8000_0000 == 0 {
            let stream = word & MASK_31;
            return Ok(Frame::Data {
                stream,
                fin,
                data: payload,
            });
        }
        let version = (word >> 16) as u16 & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = word as u16;
        let malformed = || SpdyError::Malformed(kind);
        let at = |i: usize| {
            payload
                .get(i..i + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(malformed)
        };
        let sized = |len: usize| match payload.len() == len {
            true => Ok(()),
            false => Err(malformed()),
        };
        let block = |from: usize| payload.get(from..).ok_or_else(malformed);
        Ok(match kind {
            SYN_STREAM => Frame::SynStream {
                // Then the associated stream, a priority and a slot: unused.
                stream: at(0)? & MASK_31,
                fin,
                headers: self.headers(block(10)?, kind)?,
            },
            SYN_REPLY => Frame::SynReply {
                stream: at(0)? & MASK_31,
                fin,
                headers: self.headers(block(4)?, kind)?,
            },
            HEADERS => Frame::Headers {
                stream: at(0)? & MASK_31,
                fin,
                headers: self.headers(block(4)?, kind)?,
            },
            RST_STREAM => {
                sized(8)?;
                Frame::RstStream {
                    stream: at(0)? & MASK_31,
                    status: at(4)?,
                }
            }
            SETTINGS => {
                sized(4 + 8 * at(0)? as usize)?;
                Frame::Settings
            }
            PING => {
                sized(4)?;
                Frame::Ping(at(0)?)
            }
            GOAWAY => {
                sized(8)?;
                Frame::GoAway {
                    last_good: at(0)? & MASK_31,
                    status: at(4)?,
                }
            }
            WINDOW_UPDATE => {
                sized(8)?;
                Frame::WindowUpdate {
                    stream: at(0)? & MASK_31,
                    delta: at(4)? & MASK_31,
                }
            }
            other => Frame::Unknown(other),
        })
    }

    fn headers(&mut self, compressed: &[u8], kind: u16) -> Result<Headers, SpdyError> {
        let block = self.inflater.inflate(compressed)?;
        name_values(&block).ok_or(SpdyError::Malformed(kind))
    }
}

/// A name/value block's pairs (bytes after them are ignored).
fn name_values(mut block: &[u8]) -> Option<Headers> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = b.split_at_checked(n)?;
        *b = rest;
        Some(head)
    }
    fn number(b: &mut &[u8]) -> Option<u32> {
        take(b, 4).map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]))
    }
    fn string(b: &mut &[u8]) -> Option<String> {
        let len = number(b)? as usize;
        String::from_utf8(take(b, len)?.to_vec()).ok()
    }
    // Each pair takes 8 bytes at least, so a false count ends soon.
    (0..number(&mut block)?)
        .map(|_| Some((string(&mut block)?, string(&mut block)?)))
        .collect()
}

/// Bytes from frames, for one direction of one connection (it holds that
/// direction's header-block zlib stream).
#[derive(Default)]
pub(crate) struct Encoder {
    deflater: Deflater,
}

impl Encoder {
    /// Appends the frame's bytes to `out`. Data frames must be at most
    /// [`MAX_PAYLOAD`] long.
    pub(crate) fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        let numbers = |out: &mut Vec<u8>, numbers: &[u32]| {
            for n in numbers {
                out.extend_from_slice(&n.to_be_bytes());
            }
        };
        // The first word, FLAG_FIN, and the header block after the fields.
        let (word, fin, headers) = match frame {
            Frame::Data { stream, fin, data } => {
                out.extend_from_slice(data);
                (stream & MASK_31, *fin, None)
            }
            Frame::SynStream {
                stream,
                fin,
                headers,
            } => {
                // No associated stream, priority 0, slot 0.
                numbers(out, &[*stream, 0]);
                out.extend_from_slice(&[0, 0]);
                (control(SYN_STREAM), *fin, Some(headers))
            }
            Frame::SynReply {
                stream,
                fin,
                headers,
            } => {
                numbers(out, &[*stream]);
                (control(SYN_REPLY), *fin, Some(headers))
            }
            Frame::Headers {
                stream,
                fin,
                headers,
            } => {
                numbers(out, &[*stream]);
                (control(HEADERS), *fin, Some(headers))
            }
            Frame::RstStream { stream, status } => {
                numbers(out, &[*stream, *status]);
                (control(RST_STREAM), false, None)
            }
            Frame::Settings => {
                numbers(out, &[0]);
                (control(SETTINGS), false, None)
            }
            Frame::Ping(id) => {
                numbers(out, &[*id]);
                (control(PING), false, None)
            }
            Frame::GoAway { last_good, status } => {
                numbers(out, &[*last_good, *status]);
                (control(GOAWAY), false, None)
            }
            Frame::WindowUpdate { stream, delta } => {
                numbers(out, &[*stream, *delta]);
                (control(WINDOW_UPDATE), false, None)
            }
            Frame::Unknown(kind) => (control(*kind), false, None),
        };
        if let Some(headers) = headers {
            self.deflater.deflate(&name_value_block(headers), out);
        }
        let len = out.len() - start - 8;
        debug_assert!(len <= MAX_PAYLOAD, "a SPDY frame of {len} bytes");
        let flags = u32::from(fin) * u32::from(FLAG_FIN);
        out[start..start + 4].copy_from_slice(&word.to_be_bytes());
        out[start + 4..start + 8].copy_from_slice(&(flags << 24 | len as u32).to_be_bytes());
    }
}

/// A control frame's first word.
const fn control(kind: u16) -> u32 {
    0x8000_0000 | (VERSION as u32) << 16 | kind as u32
}

fn name_value_block(headers: &Headers) -> Vec<u8> {
    let mut block = (headers.len() as u32).to_be_bytes().to_vec();
    for (name, value) in headers {
        for s in [name, value] {
            block.extend_from_slice(&(s.len() as u32).to_be_bytes());
            block.extend_from_slice(s.as_bytes());
        }
    }
    block
}

/// One direction's header-block zlib stream, inflated a piece (a frame's
/// block) at a time.
pub(crate) struct Inflater {
    state: Box<DecompressorOxide>,
    /// The last 32 KiB inflated (at first: the dictionary), written round
    /// and round from `at`, where back references look.
    window: Vec<u8>,
    at: usize,
    /// The stream's zlib header and dictionary id, until all 6 bytes are in.
    header: Vec<u8>,
}

impl Default for Inflater {
    fn default() -> Inflater {
        let mut window = vec![0; WINDOW];
        window[..DICTIONARY.len()].copy_from_slice(DICTIONARY);
        Inflater {
            state: Box::default(),
            window,
            at: DICTIONARY.len(),
            header: Vec::with_capacity(6),
        }
    }
}

impl Inflater {
    /// The bytes of the next piece.
    pub(crate) fn inflate(&mut self, mut piece: &[u8]) -> Result<Vec<u8>, SpdyError> {
        if self.header.len() < 6 {
            let n = piece.len().min(6 - self.header.len());
            self.header.extend_from_slice(&piece[..n]);
            piece = &piece[n..];
            if self.header.len() == 6 && !names_dictionary(&self.header) {
                return Err(SpdyError::Inflate(
                    "not a zlib stream with the SPDY/3 dictionary",
                ));
            }
        }
        let mut out = Vec::new();
        loop {
            // Raw deflate (the header is skipped above); more pieces follow.
            let (status, read, written) = decompress(
                &mut self.state,
                piece,
                &mut self.window,
                self.at,
                inflate_flags::TINFL_FLAG_HAS_MORE_INPUT,
            );
            out.extend_from_slice(&self.window[self.at..self.at + written]);
            self.at = (self.at + written) % WINDOW;
            piece = &piece[read..];
            if out.len() > MAX_HEADERS {
                return Err(SpdyError::Inflate("it inflates past 64 KiB"));
            }
            match status {
                // The window's end: on from its start.
                TINFLStatus::HasMoreOutput if read + written > 0 => {}
                TINFLStatus::NeedsMoreInput | TINFLStatus::Done if piece.is_empty() => {
                    return Ok(out);
                }
                _ => return Err(SpdyError::Inflate("corrupt deflate data")),
            }
        }
    }
}

/// Whether a zlib header and dictionary id are deflate's with
/// [`DICTIONARY`] preset.
fn names_dictionary(header: &[u8]) -> bool {
    let [cmf, flg, id @ ..] = header else {
        return false;
    };
    let preset = 0x20;
    cmf & 0x0f == 8
        && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        && flg & preset != 0
        && id == DICTIONARY_ID.to_be_bytes()
}

/// One direction's header-block zlib stream, written as stored blocks.
#[derive(Default)]
pub(crate) struct Deflater {
    started: bool,
}

impl Deflater {
    /// Appends the zlib bytes of the next piece to `out`.
    pub(crate) fn deflate(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        if !std::mem::replace(&mut self.started, true) {
            // CMF: deflate with a 32 KiB window; FLG: a preset dictionary
            // (its id follows), the fastest level, (CMF·256 + FLG) % 31 = 0.
            out.extend_from_slice(&[0x78, 0x20]);
            out.extend_from_slice(&DICTIONARY_ID.to_be_bytes());
        }
        // The last, empty block is the sync flush marker.
        for chunk in piece.chunks(usize::from(u16::MAX)).chain([&[][..]]) {
            // A stored block: BFINAL 0 and BTYPE 00, padded to the byte;
            // LEN and its complement, little-endian; the bytes.
            let len = u16::try_from(chunk.len()).expect("chunks of at most 65535 bytes");
            out.push(0);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Headers {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn decode(decoder: &mut Decoder, bytes: &[u8]) -> Result<Frame, SpdyError> {
        let head: [u8; 8] = bytes[..8].try_into().unwrap();
        decoder.decode(head, bytes[8..].to_vec())
    }

    #[test]
    fn the_dictionary_is_named_by_the_id_zlib_gives_it() {
        // zlib (Python's, compressobj(zdict=…)) writes this DICTID for the
        // spec's dictionary: the transcription is exact.
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(DICTIONARY_ID, 0xe3c6_a7c2);
    }

    #[test]
    fn header_blocks_compressed_by_zlib_inflate_with_one_context() {
        // kubectl's two header blocks for a connection, compressed by zlib
        // at level 9 with the dictionary and a sync flush after each
        // (Python's zlib; Go's writer does the same): the second piece is
        // mostly back references into the first.
        let first = [
            0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0x25, 0x3a, 0x48, 0xf9, 0x5b, 0x04, 0x4e,
            0xea, 0x16, 0x06, 0x16, 0x06, 0x40, 0x9a, 0xb3, 0x08, 0x12, 0x5f, 0x99, 0xa0, 0x74,
            0xcc, 0x68, 0x00, 0x4e, 0x89, 0x25, 0x45, 0xa9, 0x89, 0xb9, 0xd0, 0xc2, 0x86, 0x35,
            0x15, 0x14, 0x15, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        let second = [
            0x22, 0x53, 0x33, 0xa8, 0xa4, 0x4a, 0x04, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        let mut decoder = Decoder::default();
        let cases: [(u32, &[u8], &str); 2] = [(1, &first, "error"), (3, &second, "data")];
        for (stream, piece, kind) in cases {
            let mut frame = control(SYN_STREAM).to_be_bytes().to_vec();
            frame.extend_from_slice(&(10 + piece.len() as u32).to_be_bytes());
            frame.extend_from_slice(&stream.to_be_bytes());
            frame.extend_from_slice(&[0; 6]);
            frame.extend_from_slice(piece);
            assert_eq!(
                decode(&mut decoder, &frame).unwrap(),
                Frame::SynStream {
                    stream,
                    fin: false,
                    headers: pairs(&[("port", "8080"), ("requestid", "0"), ("streamtype", kind)]),
                },
            );
        }
    }

    #[test]
    fn frames_decode_as_they_were_encoded() {
        let kubectl = pairs(&[("streamtype", "data"), ("port", "8080"), ("requestid", "7")]);
        let frames = [
            Frame::SynStream {
                stream: 1,
                fin: false,
                headers: kubectl.clone(),
            },
            Frame::SynStream {
                stream: 3,
                fin: true,
                headers: kubectl,
            },
            Frame::SynReply {
                stream: 1,
                fin: false,
                headers: Vec::new(),
            },
            Frame::Headers {
                stream: 3,
                fin: true,
                headers: pairs(&[("a", "b\0c")]),
            },
            Frame::Data {
                stream: 1,
                fin: false,
                data: vec![7; 40_000],
            },
            Frame::Data {
                stream: MASK_31,
                fin: true,
                data: Vec::new(),
            },
            Frame::RstStream {
                stream: 5,
                status: REFUSED_STREAM,
            },
            Frame::Settings,
            Frame::Ping(9),
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
            Frame::WindowUpdate {
                stream: 0,
                delta: 65536,
            },
            Frame::Unknown(5),
        ];
        // One encoder and one decoder for them all, as on a connection.
        let (mut encoder, mut decoder) = (Encoder::default(), Decoder::default());
        for frame in frames {
            let mut bytes = Vec::new();
            encoder.encode(&frame, &mut bytes);
            assert_eq!(decode(&mut decoder, &bytes).unwrap(), frame);
        }
    }

    #[test]
    fn malformed_frames_are_refused() {
        let cases: [(&str, Vec<u8>, &str); 6] = [
            (
                "version 2",
                vec![0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1],
                "Version(2)",
            ),
            (
                "a short PING",
                vec![0x80, 3, 0, 6, 0, 0, 0, 2, 0, 1],
                "Malformed(6)",
            ),
            (
                "a long RST_STREAM",
                [&[0x80, 3, 0, 3, 0, 0, 0, 9][..], &[0; 9]].concat(),
                "Malformed(3)",
            ),
            (
                "SETTINGS with a false count",
                vec![0x80, 3, 0, 4, 0, 0, 0, 4, 0, 0, 0, 2],
                "Malformed(4)",
            ),
            (
                "a SYN_STREAM cut short",
                vec![0x80, 3, 0, 1, 0, 0, 0, 3, 0, 0, 1],
                "Malformed(1)",
            ),
            (
                "a header block without the dictionary",
                [
                    &[0x80, 3, 0, 2, 0, 0, 0, 12, 0, 0, 0, 1][..],
                    &[0x78, 0x9c, 0, 0, 0, 0, 0, 0],
                ]
                .concat(),
                "Inflate(\"not a zlib stream with the SPDY/3 dictionary\")",
            ),
        ];
        for (what, bytes, error) in cases {
            let result = decode(&mut Decoder::default(), &bytes);
            assert_eq!(
                format!("{:?}", result.err()),
                format!("Some({error})"),
                "{what}"
            );
        }
    }

    #[test]
    fn a_header_block_past_the_limit_is_refused() {
        // Also: a block longer than one stored block (65535 bytes) is cut.
        let mut bytes = Vec::new();
        let huge = Frame::SynReply {
            stream: 1,
            fin: false,
            headers: pairs(&[("x", &"y".repeat(70_000))]),
        };
        Encoder::default().encode(&huge, &mut bytes);
        match decode(&mut Decoder::default(), &bytes) {
            Err(SpdyError::Inflate(why)) => assert!(why.contains("64 KiB"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
