//! Claiming a stream as AMQP: the protocol header, a connection.start
//! frame, or mid-stream a run of well-formed frames (also what
//! resynchronisation looks for).

use super::*;

/// Claims a stream that starts with the protocol header (client) or with a
/// connection.start frame (server); mid-stream, two consecutive well-formed
/// frames starting anywhere in the first bytes.
pub fn probe(dir: Direction, first: &[u8], midstream: bool) -> Claim {
    let n = first.len().min(PROTOCOL_HEADER.len());
    if dir == Direction::ToServer && first[..n] == PROTOCOL_HEADER[..n] {
        return if n == PROTOCOL_HEADER.len() {
            Claim::Yes
        } else {
            Claim::NeedMore
        };
    }
    const START: &[u8] = &[FRAME_METHOD, 0, 0];
    if dir == Direction::ToClient && first.len() >= 11 && first.starts_with(START) {
        if first[7..11] == [0, 10, 0, 10] {
            return match frame_at(first, 0) {
                Framed::Yes(_) => Claim::Yes,
                Framed::NeedMore => Claim::NeedMore,
                Framed::No => Claim::No,
            };
        }
    } else if dir == Direction::ToClient
        && first.len() < 11
        && (first.starts_with(START) || START.starts_with(first))
    {
        return Claim::NeedMore;
    }
    if !midstream {
        return Claim::No;
    }
    // Waiting is worth it only for a complete first frame whose successor
    // has not arrived: a mere size field promising bytes to come would hold
    // back every other protocol's probe.
    let mut need_more = false;
    for at in 0..first.len() {
        match run_at(first, at) {
            Framed::Yes(_) => return Claim::Yes,
            Framed::NeedMore if matches!(frame_at(first, at), Framed::Yes(_)) => need_more = true,
            _ => {}
        }
    }
    if need_more {
        Claim::NeedMore
    } else {
        Claim::No
    }
}

/// Whether a complete, well-formed frame starts at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framed {
    /// Yes: its length with header and frame end.
    Yes(usize),
    No,
    NeedMore,
}

pub(super) fn frame_at(b: &[u8], at: usize) -> Framed {
    let Some(h) = b.get(at..at + 7) else {
        return if b.len() > at && !matches!(b[at], 1 | 2 | 3 | 8) {
            Framed::No
        } else {
            Framed::NeedMore
        };
    };
    let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
    let shape = match h[0] {
        FRAME_HEARTBEAT => size == 0 && h[1] == 0 && h[2] == 0,
        FRAME_METHOD => (4..=RESYNC_FRAME).contains(&size),
        FRAME_HEADER => (14..=RESYNC_FRAME).contains(&size),
        FRAME_BODY => size <= RESYNC_FRAME,
        _ => false,
    };
    if !shape {
        return Framed::No;
    }
    let Some(&end) = b.get(at + 7 + size) else {
        return Framed::NeedMore;
    };
    if end != FRAME_END {
        return Framed::No;
    }
    if h[0] == FRAME_METHOD {
        let class = u16::from_be_bytes([b[at + 7], b[at + 8]]);
        let method = u16::from_be_bytes([b[at + 9], b[at + 10]]);
        if lookup(class, method).is_none() {
            return Framed::No;
        }
    }
    Framed::Yes(8 + size)
}

/// Two well-formed frames in a row at `at`.
pub(super) fn run_at(b: &[u8], at: usize) -> Framed {
    match frame_at(b, at) {
        Framed::Yes(n) => match frame_at(b, at + n) {
            Framed::Yes(m) => Framed::Yes(n + m),
            other => other,
        },
        other => other,
    }
}
