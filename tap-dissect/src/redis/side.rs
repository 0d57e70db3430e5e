//! Each direction's state: its parser, its draft, and a resynchronisation
//! after bytes that do not parse.

use super::*;

/// A resynchronisation under way: where the next message may start.
#[derive(Debug)]
pub(super) struct Resync {
    /// A line start whose check needs more bytes (at most [`LOOK`]).
    pub(super) window: Vec<u8>,
    /// The next byte begins a line.
    pub(super) line_start: bool,
}

/// What a resynchronisation step did.
pub(super) enum Resynced {
    /// Consumed this many bytes of the input (a message starts after them if resync ended).
    Consumed(usize),
    /// A message starts with these held bytes: parse them, then the input.
    Carry(Vec<u8>),
}

pub(super) struct Side {
    pub(super) parser: Parser,
    /// Capture time of the current frame's first byte.
    pub(super) ts: u64,
    /// Flags for the current (or next) message.
    pub(super) flags: Vec<String>,
    pub(super) resync: Option<Resync>,
    /// A frame has parsed since the last error or gap; errors meanwhile are not reported again.
    pub(super) synced: bool,
}

impl Side {
    pub(super) fn new(role: Role, config: &DissectConfig, midstream: bool) -> Self {
        Side {
            parser: Parser::new(role, config),
            ts: 0,
            flags: Vec::new(),
            resync: midstream.then(|| Resync {
                window: Vec::new(),
                line_start: true,
            }),
            synced: !midstream,
        }
    }

    pub(super) fn resync_step(&mut self, input: &[u8]) -> Resynced {
        let role = self.parser.role;
        let Some(r) = &mut self.resync else {
            return Resynced::Consumed(0);
        };
        if !r.window.is_empty() {
            let take = input.len().min(LOOK);
            let mut look = r.window.clone();
            look.extend_from_slice(&input[..take]);
            match plausible(role, &look, false) {
                Claim::Yes => {
                    let carry = std::mem::take(&mut r.window);
                    self.resync = None;
                    return Resynced::Carry(carry);
                }
                Claim::NeedMore if take == input.len() => {
                    r.window.extend_from_slice(input);
                    return Resynced::Consumed(input.len());
                }
                _ => {
                    // Not a start: try the next line start in the window, else in the input.
                    match r.window.iter().position(|&c| c == b'\n') {
                        Some(k) if k + 1 < r.window.len() => {
                            r.window.drain(..=k);
                        }
                        Some(_) => {
                            r.window.clear();
                            r.line_start = true;
                        }
                        None => {
                            r.window.clear();
                            r.line_start = false;
                        }
                    }
                    return Resynced::Consumed(0);
                }
            }
        }
        let mut p = if r.line_start {
            Some(0)
        } else {
            next_line_start(input, 0)
        };
        while let Some(at) = p {
            match plausible(role, &input[at..], false) {
                Claim::Yes => {
                    self.resync = None;
                    return Resynced::Consumed(at);
                }
                Claim::NeedMore => {
                    r.window = input[at..].to_vec();
                    r.line_start = true;
                    return Resynced::Consumed(input.len());
                }
                Claim::No => p = next_line_start(input, at),
            }
        }
        r.line_start = input.last() == Some(&b'\n');
        Resynced::Consumed(input.len())
    }
}

pub(super) fn add_flag(flags: &mut Vec<String>, flag: &str) {
    if !flags.iter().any(|f| f == flag) {
        flags.push(flag.to_string());
    }
}
