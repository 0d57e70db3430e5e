//! State: each direction's framing phase and the header block it gathers,
//! and each stream's two halves until the stream closes.

use super::*;

#[derive(Debug, Clone, Copy)]
pub(super) struct Payload {
    pub(super) h: FrameHeader,
    /// Capture time of the frame's first byte.
    pub(super) ts: u64,
    /// Payload bytes read so far.
    pub(super) pos: u32,
    /// A DATA frame's padding length, once read.
    pub(super) pad: u32,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    /// The client's connection preface: bytes of it matched so far.
    Preface(usize),
    Header,
    Payload(Payload),
    /// Looking for a frame boundary after a gap, bad bytes or a mid-stream start.
    Resync,
}

/// A header block being gathered across CONTINUATION frames.
pub(super) struct Block {
    pub(super) stream: u32,
    /// A PUSH_PROMISE's promised stream.
    pub(super) promised: Option<u32>,
    pub(super) end_stream: bool,
    pub(super) ts: u64,
    pub(super) wire: u64,
    pub(super) fragment: Vec<u8>,
    /// Longer than `max_head`: not kept, not decodable.
    pub(super) too_large: bool,
    pub(super) flags: Vec<String>,
}

pub(super) struct Side {
    pub(super) phase: Phase,
    pub(super) head: [u8; FRAME_HEADER],
    pub(super) head_len: usize,
    pub(super) head_ts: u64,
    /// The current frame's kept payload, or the resync window.
    pub(super) buf: Vec<u8>,
    pub(super) block: Option<Block>,
    pub(super) hpack: Hpack,
    /// Largest frame the other peer accepts (its SETTINGS_MAX_FRAME_SIZE).
    pub(super) max_frame: u32,
}

impl Side {
    pub(super) fn new(phase: Phase, known: bool) -> Self {
        Side {
            phase,
            head: [0; FRAME_HEADER],
            head_len: 0,
            head_ts: 0,
            buf: Vec::new(),
            block: None,
            hpack: Hpack::new(known),
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// One side of a stream: a request or a response.
#[derive(Default)]
pub(super) struct Half {
    pub(super) seen: bool,
    pub(super) ts: u64,
    pub(super) wire: u64,
    /// The (final) header block, pseudo-headers included.
    pub(super) headers: Option<Vec<(String, String)>>,
    pub(super) trailers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    pub(super) body_wire: u64,
    pub(super) body_cut: bool,
    pub(super) grpc: Option<grpc::Framer>,
    pub(super) ended: bool,
    pub(super) flags: Vec<String>,
}

impl Half {
    pub(super) fn flag(&mut self, f: &str) {
        if !self.flags.iter().any(|x| x == f) {
            self.flags.push(f.to_string());
        }
    }

    /// The first frame of this side: its time is the message's.
    pub(super) fn touch(&mut self, ts: u64) {
        if !self.seen {
            self.seen = true;
            self.ts = ts;
        }
    }
}

#[derive(Default)]
pub(super) struct Stream {
    pub(super) req: Half,
    pub(super) resp: Half,
    pub(super) grpc: bool,
    /// Conditions of the whole stream: reset, goaway.
    pub(super) flags: Vec<String>,
}

impl Stream {
    pub(super) fn half(&mut self, dir: Direction) -> &mut Half {
        match dir {
            Direction::ToServer => &mut self.req,
            Direction::ToClient => &mut self.resp,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.resp.ended && (self.req.ended || !self.req.seen)
    }
}

/// Stream ids one peer opened while we watched: every id in between was
/// opened too, as ids only grow, so one not open any more is closed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Opened {
    pub(super) first: u32,
    pub(super) last: u32,
}

impl Opened {
    pub(super) fn note(o: &mut Option<Opened>, id: u32) {
        match o {
            Some(o) => o.last = o.last.max(id),
            None => {
                *o = Some(Opened {
                    first: id,
                    last: id,
                })
            }
        }
    }

    pub(super) fn covers(o: Option<Opened>, id: u32) -> bool {
        o.is_some_and(|o| (o.first..=o.last).contains(&id))
    }
}
