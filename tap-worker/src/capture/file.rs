//! Reads pcap and pcapng captures as a stream, from a file or stdin, with
//! pcap-file's slice parsers over a bounded buffer: memory stays flat whatever
//! the file size, and every error names the byte offset where it happened.

use super::Packet;
use pcap_file::PcapError;
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Largest packet record accepted. Linux captures with GRO/TSO can hold
/// 256 KiB packets; anything far above that is a corrupt length field.
pub const MAX_RECORD: usize = 4 << 20;
const READ_CHUNK: usize = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    // The io::Error is in the message and not a `source`: printed with its
    // cause chain it would otherwise appear twice.
    #[error("cannot open capture '{name}': {error}")]
    Open { name: String, error: io::Error },
    #[error("cannot read capture '{name}' at byte {offset}: {error}")]
    Read {
        name: String,
        offset: u64,
        error: io::Error,
    },
    #[error("capture '{name}' is empty")]
    Empty { name: String },
    #[error(
        "capture '{name}' is not a pcap or pcapng file (magic {magic:08x} at byte 0; expected a1b2c3d4, a1b23c4d or 0a0d0d0a)"
    )]
    BadMagic { name: String, magic: u32 },
    #[error(
        "cannot read capture '{name}' at byte {offset}: truncated {what} (file may still be written)"
    )]
    Truncated {
        name: String,
        offset: u64,
        what: &'static str,
    },
    #[error(
        "cannot read capture '{name}' at byte {offset}: {what} claims {len} bytes, more than the {limit}-byte limit (corrupt file)"
    )]
    Oversized {
        name: String,
        offset: u64,
        what: &'static str,
        len: u64,
        limit: usize,
    },
    #[error("cannot read capture '{name}' at byte {offset}: corrupt {what}: {reason}")]
    Corrupt {
        name: String,
        offset: u64,
        what: &'static str,
        reason: String,
    },
}

enum Format {
    Pcap {
        parser: PcapParser,
        link: u32,
        big_endian: bool,
    },
    PcapNg {
        parser: PcapNgParser,
        ifaces: Vec<Iface>,
    },
}

/// What a pcapng interface needs to turn an Enhanced Packet Block into a packet.
/// pcap-file 2.0 hands out raw timestamp ticks; `if_tsresol` and `if_tsoffset`
/// are applied here.
#[derive(Clone, Copy)]
struct Iface {
    link: u32,
    tsresol: u8,
    tsoffset_s: i64,
}

impl Iface {
    fn ts_ns(&self, ticks: u64) -> u64 {
        let r = self.tsresol;
        let ns: u128 = if r & 0x80 == 0 {
            let exp = u32::from(r);
            if exp <= 9 {
                u128::from(ticks) * 10u128.pow(9 - exp)
            } else {
                u128::from(ticks) / 10u128.pow((exp - 9).min(38))
            }
        } else {
            let exp = u32::from(r & 0x7f).min(127);
            (u128::from(ticks) * 1_000_000_000) >> exp
        };
        let ns = ns as i128 + i128::from(self.tsoffset_s) * 1_000_000_000;
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }
}

/// Where a parsed record's packet lies inside the buffer.
struct Record {
    consumed: usize,
    packet: Option<(u64, u32, std::ops::Range<usize>, u32)>,
}

/// A capture file read one packet at a time.
pub struct CaptureFile {
    name: String,
    src: Box<dyn Read + Send>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    eof: bool,
    format: Option<Format>,
}

impl CaptureFile {
    /// Opens a file by path, or stdin when the path is `-`.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let src: Box<dyn Read + Send> = if name == "-" {
            Box::new(io::stdin())
        } else {
            let f = File::open(path).map_err(|error| CaptureError::Open {
                name: name.clone(),
                error,
            })?;
            Box::new(f)
        };
        Self::from_reader(name, src)
    }

    /// Reads a capture from any byte source; `name` is used in error messages.
    pub fn from_reader(name: String, src: Box<dyn Read + Send>) -> Result<Self, CaptureError> {
        let mut cf = CaptureFile {
            name,
            src,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            offset: 0,
            eof: false,
            format: None,
        };
        cf.fill(24)?;
        if cf.end == 0 {
            return Err(CaptureError::Empty { name: cf.name });
        }
        if cf.end < 4 {
            return Err(cf.truncated("file header"));
        }
        let magic = u32::from_be_bytes(cf.buf[..4].try_into().expect("4 bytes"));
        match magic {
            0xa1b2c3d4 | 0xa1b23c4d | 0xd4c3b2a1 | 0x4d3cb2a1 => {
                if cf.end < 24 {
                    return Err(cf.truncated("pcap file header"));
                }
                let (rem, parser) = PcapParser::new(&cf.buf[..cf.end])
                    .map_err(|e| cf.corrupt("pcap file header", e))?;
                let used = cf.end - rem.len();
                let header = parser.header();
                let big_endian = matches!(magic, 0xa1b2c3d4 | 0xa1b23c4d);
                cf.format = Some(Format::Pcap {
                    parser,
                    link: u32::from(header.datalink),
                    big_endian,
                });
                cf.advance(used);
            }
            0x0a0d0d0a => {
                let parser = loop {
                    let avail = &cf.buf[cf.start..cf.end];
                    if let Some(e) = check_ng_len(&cf.name, cf.offset, avail, None) {
                        return Err(e);
                    }
                    match PcapNgParser::new(avail) {
                        Ok((rem, parser)) => {
                            let used = avail.len() - rem.len();
                            cf.advance(used);
                            break parser;
                        }
                        Err(PcapError::IncompleteBuffer) if !cf.eof => {
                            cf.fill(cf.end - cf.start + READ_CHUNK)?
                        }
                        Err(PcapError::IncompleteBuffer) => {
                            return Err(cf.truncated("pcapng section header"));
                        }
                        Err(e) => return Err(cf.corrupt("pcapng section header", e)),
                    }
                };
                cf.format = Some(Format::PcapNg {
                    parser,
                    ifaces: Vec::new(),
                });
            }
            _ => {
                return Err(CaptureError::BadMagic {
                    name: cf.name,
                    magic,
                });
            }
        }
        Ok(cf)
    }

    /// The name given at open (the path, or `-`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes of the file consumed so far (the offset of the next record).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next packet, `None` at a clean end of file, or an error naming the byte offset.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        loop {
            match self.parse_record() {
                Ok(Some(rec)) => {
                    let base = self.start;
                    self.advance(rec.consumed);
                    if let Some((ts_ns, link, range, orig_len)) = rec.packet {
                        let data = &self.buf[base + range.start..base + range.end];
                        return Ok(Some(Packet {
                            ts_ns,
                            link,
                            data,
                            orig_len,
                        }));
                    }
                }
                Ok(None) => {
                    if self.end - self.start > MAX_RECORD + 64 {
                        return Err(CaptureError::Oversized {
                            name: self.name.clone(),
                            offset: self.offset,
                            what: "record",
                            len: (self.end - self.start) as u64,
                            limit: MAX_RECORD,
                        });
                    }
                    if self.eof {
                        if self.start == self.end {
                            return Ok(None);
                        }
                        return Err(self.truncated("packet record"));
                    }
                    let want = (self.end - self.start) + READ_CHUNK;
                    self.fill(want)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Parses one record at `buf[start..end]`: `Ok(None)` when more bytes are needed.
    fn parse_record(&mut self) -> Result<Option<Record>, CaptureError> {
        let avail = &self.buf[self.start..self.end];
        let Some(format) = self.format.as_mut() else {
            return Ok(None);
        };
        match format {
            Format::Pcap {
                parser,
                link,
                big_endian,
            } => {
                if avail.len() < 16 {
                    return Ok(None);
                }
                let len_bytes: [u8; 4] = avail[8..12].try_into().expect("4 bytes");
                let incl = if *big_endian {
                    u32::from_be_bytes(len_bytes)
                } else {
                    u32::from_le_bytes(len_bytes)
                };
                if incl as usize > MAX_RECORD {
                    return Err(CaptureError::Oversized {
                        name: self.name.clone(),
                        offset: self.offset,
                        what: "packet record",
                        len: u64::from(incl),
                        limit: MAX_RECORD,
                    });
                }
                // Raw records: snap length and timestamp sanity are ours to judge,
                // so a huge header snaplen or an odd writer is not fatal.
                match parser.next_raw_packet(avail) {
                    Ok((rem, raw)) => {
                        let consumed = avail.len() - rem.len();
                        let frac_ns = match parser.header().ts_resolution {
                            pcap_file::TsResolution::MicroSecond => u64::from(raw.ts_frac) * 1000,
                            pcap_file::TsResolution::NanoSecond => u64::from(raw.ts_frac),
                        };
                        let ts_ns = u64::from(raw.ts_sec) * 1_000_000_000 + frac_ns;
                        let range = 16..16 + raw.incl_len as usize;
                        let orig_len = raw.orig_len.max(raw.incl_len);
                        Ok(Some(Record {
                            consumed,
                            packet: Some((ts_ns, *link, range, orig_len)),
                        }))
                    }
                    Err(PcapError::IncompleteBuffer) => Ok(None),
                    Err(e) => Err(corrupt(&self.name, self.offset, "packet record", e)),
                }
            }
            Format::PcapNg { parser, ifaces } => {
                let big = matches!(parser.section().endianness, pcap_file::Endianness::Big);
                if let Some(e) = check_ng_len(&self.name, self.offset, avail, Some(big)) {
                    return Err(e);
                }
                let (rem, block) = match parser.next_block(avail) {
                    Ok(v) => v,
                    Err(PcapError::IncompleteBuffer) => return Ok(None),
                    Err(e) => return Err(corrupt(&self.name, self.offset, "pcapng block", e)),
                };
                let consumed = avail.len() - rem.len();
                let base = avail.as_ptr() as usize;
                let packet = match block {
                    Block::SectionHeader(_) => {
                        ifaces.clear();
                        None
                    }
                    Block::InterfaceDescription(idb) => {
                        let mut iface = Iface {
                            link: u32::from(idb.linktype),
                            tsresol: 6,
                            tsoffset_s: 0,
                        };
                        for opt in &idb.options {
                            match opt {
                                InterfaceDescriptionOption::IfTsResol(r) => iface.tsresol = *r,
                                InterfaceDescriptionOption::IfTsOffset(o) => {
                                    iface.tsoffset_s = *o as i64
                                }
                                _ => {}
                            }
                        }
                        ifaces.push(iface);
                        None
                    }
                    Block::EnhancedPacket(epb) => {
                        let Some(iface) = ifaces.get(epb.interface_id as usize) else {
                            return Err(CaptureError::Corrupt {
                                name: self.name.clone(),
                                offset: self.offset,
                                what: "enhanced packet block",
                                reason: format!(
                                    "interface {} was never described",
                                    epb.interface_id
                                ),
                            });
                        };
                        let ticks = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                        let start = epb.data.as_ptr() as usize - base;
                        let len = epb.data.len();
                        Some((
                            iface.ts_ns(ticks),
                            iface.link,
                            start..start + len,
                            epb.original_len.max(len as u32),
                        ))
                    }
                    Block::SimplePacket(spb) => {
                        // No timestamp in a simple packet block; it belongs to interface 0.
                        let Some(iface) = ifaces.first() else {
                            return Err(CaptureError::Corrupt {
                                name: self.name.clone(),
                                offset: self.offset,
                                what: "simple packet block",
                                reason: "no interface was described".into(),
                            });
                        };
                        let start = spb.data.as_ptr() as usize - base;
                        let len = spb.data.len();
                        Some((
                            0,
                            iface.link,
                            start..start + len,
                            spb.original_len.max(len as u32),
                        ))
                    }
                    Block::Packet(pb) => {
                        let Some(iface) = ifaces.get(usize::from(pb.interface_id)) else {
                            return Err(CaptureError::Corrupt {
                                name: self.name.clone(),
                                offset: self.offset,
                                what: "packet block",
                                reason: format!(
                                    "interface {} was never described",
                                    pb.interface_id
                                ),
                            });
                        };
                        let start = pb.data.as_ptr() as usize - base;
                        let len = pb.data.len();
                        let ticks = pb.timestamp;
                        Some((
                            iface.ts_ns(ticks),
                            iface.link,
                            start..start + len,
                            pb.original_len.max(len as u32),
                        ))
                    }
                    _ => None,
                };
                Ok(Some(Record { consumed, packet }))
            }
        }
    }

    fn advance(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// Reads until at least `want` bytes are buffered past `start`, or end of file.
    fn fill(&mut self, want: usize) -> Result<(), CaptureError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let want = want.min(MAX_RECORD + 128);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        while self.end < want && !self.eof {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(CaptureError::Read {
                        name: self.name.clone(),
                        offset: self.offset + self.end as u64,
                        error,
                    });
                }
            }
        }
        Ok(())
    }

    fn truncated(&self, what: &'static str) -> CaptureError {
        CaptureError::Truncated {
            name: self.name.clone(),
            offset: self.offset,
            what,
        }
    }

    fn corrupt(&self, what: &'static str, e: PcapError) -> CaptureError {
        corrupt(&self.name, self.offset, what, e)
    }
}

fn corrupt(name: &str, offset: u64, what: &'static str, e: PcapError) -> CaptureError {
    CaptureError::Corrupt {
        name: name.to_string(),
        offset,
        what,
        reason: e.to_string(),
    }
}

/// Rejects a pcapng block whose length field is absurd before we buffer it.
/// `big_endian` is the section's byte order, `None` before the first section header.
fn check_ng_len(
    name: &str,
    offset: u64,
    avail: &[u8],
    big_endian: Option<bool>,
) -> Option<CaptureError> {
    if avail.len() < 12 {
        return None;
    }
    let ty = u32::from_le_bytes(avail[..4].try_into().expect("4 bytes"));
    let raw: [u8; 4] = avail[4..8].try_into().expect("4 bytes");
    let (le, be) = (u32::from_le_bytes(raw), u32::from_be_bytes(raw));
    let len = if ty == 0x0a0d0d0a {
        // Section header: its byte-order magic says how to read the length.
        if avail[8..12] == [0x4d, 0x3c, 0x2b, 0x1a] {
            le
        } else {
            be
        }
    } else if big_endian == Some(true) {
        be
    } else {
        le
    };
    (len as usize > MAX_RECORD).then(|| CaptureError::Oversized {
        name: name.to_string(),
        offset,
        what: "pcapng block",
        len: u64::from(len),
        limit: MAX_RECORD,
    })
}
