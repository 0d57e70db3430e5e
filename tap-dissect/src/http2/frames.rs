//! Framing: frame headers, the flags each frame type defines, and runs of
//! plausible frames, which claim a stream mid-way (the probe) and find a
//! frame boundary again after a loss.

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) struct FrameHeader {
    pub(super) len: u32,
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) stream: u32,
}

impl FrameHeader {
    pub(super) fn parse(b: &[u8; FRAME_HEADER]) -> Self {
        FrameHeader {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// A rule whose breach is a connection error for a real peer: for us, a
    /// sign that the framing is lost.
    pub(super) fn violation(&self) -> Option<&'static str> {
        let stream_frame = matches!(
            self.kind,
            DATA | HEADERS | PRIORITY | RST_STREAM | PUSH_PROMISE | CONTINUATION
        );
        match self.kind {
            _ if stream_frame && self.stream == 0 => Some("frame_on_stream_0"),
            SETTINGS | PING | GOAWAY if self.stream != 0 => Some("control_frame_on_a_stream"),
            PRIORITY if self.len != 5 => Some("priority_size"),
            RST_STREAM | WINDOW_UPDATE if self.len != 4 => Some("frame_size"),
            PING if self.len != 8 => Some("ping_size"),
            SETTINGS if !self.len.is_multiple_of(6) || (self.flags & ACK != 0 && self.len != 0) => {
                Some("settings_size")
            }
            GOAWAY if self.len < 8 => Some("goaway_size"),
            _ => None,
        }
    }
}

/// The flags each frame type defines; real peers set no others.
pub(super) fn defined_flags(kind: u8) -> u8 {
    match kind {
        DATA => END_STREAM | PADDED,
        HEADERS => END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG,
        SETTINGS | PING => ACK,
        PUSH_PROMISE => END_HEADERS | PADDED,
        CONTINUATION => END_HEADERS,
        _ => 0,
    }
}

/// Whether the bytes (a whole frame header, or its first bytes) look like a
/// header a real peer sends: a known type with its own flags only, the
/// reserved bit clear, a length within `max_frame`, no rule broken.
pub(super) fn plausible(b: &[u8], max_frame: u32) -> bool {
    if b.first().is_some_and(|l| u32::from(*l) > max_frame >> 16) {
        return false;
    }
    if b.get(3).is_some_and(|k| *k > CONTINUATION) {
        return false;
    }
    if let (Some(k), Some(f)) = (b.get(3), b.get(4))
        && f & !defined_flags(*k) != 0
    {
        return false;
    }
    if b.get(5).is_some_and(|r| r & 0x80 != 0) {
        return false;
    }
    let Ok(full) = <&[u8; FRAME_HEADER]>::try_from(b) else {
        return true;
    };
    let h = FrameHeader::parse(full);
    // An empty DATA frame that does not end its stream says nothing; peers do not send it.
    let pointless = h.kind == DATA && h.len == 0 && h.flags & END_STREAM == 0;
    h.len <= max_frame && h.violation().is_none() && !pointless
}

/// Whether a run of frames starts at `at`: [`CHAIN`] plausible headers in a
/// row (CONTINUATIONs only where a header block is open), or at least two
/// that reach the end of `b`.
pub(super) fn chain_at(b: &[u8], mut at: usize, max_frame: u32) -> Claim {
    let mut seen = 0;
    let mut open_block: Option<u32> = None;
    loop {
        if seen >= CHAIN {
            return Claim::Yes;
        }
        let rest = &b[at.min(b.len())..];
        if rest.len() < FRAME_HEADER {
            return if seen >= 2 {
                Claim::Yes
            } else if plausible(rest, max_frame) {
                Claim::NeedMore
            } else {
                Claim::No
            };
        }
        let raw: &[u8; FRAME_HEADER] = rest[..FRAME_HEADER].try_into().expect("length checked");
        if !plausible(raw, max_frame) {
            return Claim::No;
        }
        let h = FrameHeader::parse(raw);
        match open_block {
            Some(s) if h.kind != CONTINUATION || h.stream != s => return Claim::No,
            None if h.kind == CONTINUATION => return Claim::No,
            _ => {}
        }
        open_block = (matches!(h.kind, HEADERS | PUSH_PROMISE | CONTINUATION)
            && h.flags & END_HEADERS == 0)
            .then_some(h.stream);
        seen += 1;
        at += FRAME_HEADER + h.len as usize;
        if at > b.len() {
            return if seen >= 2 {
                Claim::Yes
            } else {
                Claim::NeedMore
            };
        }
    }
}

/// Whether `b` is one or more plausible frames, ending exactly at its end.
pub(super) fn whole_frames(b: &[u8], max_frame: u32) -> bool {
    let mut at = 0;
    let mut open_block: Option<u32> = None;
    while at < b.len() {
        let Some(raw) = b.get(at..at + FRAME_HEADER) else {
            return false;
        };
        if !plausible(raw, max_frame) {
            return false;
        }
        let h = FrameHeader::parse(raw.try_into().expect("length checked"));
        match open_block {
            Some(s) if h.kind != CONTINUATION || h.stream != s => return false,
            None if h.kind == CONTINUATION => return false,
            _ => {}
        }
        open_block = (matches!(h.kind, HEADERS | PUSH_PROMISE | CONTINUATION)
            && h.flags & END_HEADERS == 0)
            .then_some(h.stream);
        at += FRAME_HEADER + h.len as usize;
    }
    at == b.len() && open_block.is_none()
}

/// The first offset in `b` where a run of frames starts; otherwise the first
/// offset where one may start once more bytes come (`b.len()` if none).
pub(super) fn find_frame_start(b: &[u8], max_frame: u32) -> Result<usize, usize> {
    let mut pending = None;
    for at in 0..b.len() {
        match chain_at(b, at, max_frame) {
            Claim::Yes => return Ok(at),
            Claim::NeedMore => {
                pending.get_or_insert(at);
            }
            Claim::No => {}
        }
    }
    Err(pending.unwrap_or(b.len()))
}

/// Claims a stream whose client side starts with the connection preface or
/// whose server side starts with a SETTINGS frame; mid-stream, a run of
/// plausible frame headers anywhere in the first bytes.
pub fn probe(dir: Direction, first: &[u8], midstream: bool) -> Claim {
    let n = first.len().min(PREFACE.len());
    if dir == Direction::ToServer && first[..n] == PREFACE[..n] {
        return if n == PREFACE.len() {
            Claim::Yes
        } else {
            Claim::NeedMore
        };
    }
    if midstream {
        return match find_frame_start(first, DEFAULT_MAX_FRAME) {
            Ok(_) => Claim::Yes,
            Err(at) if at < first.len() => Claim::NeedMore,
            Err(_) => Claim::No,
        };
    }
    if dir == Direction::ToServer {
        return Claim::No;
    }
    // A server speaks first with its SETTINGS, often before the client's preface arrives.
    let settings_start = |b: &[u8]| {
        let want: [Option<u8>; FRAME_HEADER] = [
            Some(0),
            None,
            None,
            Some(SETTINGS),
            Some(0),
            Some(0),
            Some(0),
            Some(0),
            Some(0),
        ];
        b.iter()
            .zip(want)
            .all(|(byte, w)| w.is_none_or(|w| w == *byte))
    };
    if !settings_start(first) {
        Claim::No
    } else if first.len() < FRAME_HEADER {
        Claim::NeedMore
    } else if u32::from_be_bytes([0, first[0], first[1], first[2]]).is_multiple_of(6) {
        Claim::Yes
    } else {
        Claim::No
    }
}
