//! A connection's state: prepared statements and portals by name (bounded),
//! the client messages waiting for answers and the answers being gathered,
//! each direction's framing and resynchronisation.

use super::*;

/// What a bounded name map charges for an entry.
pub(super) trait Weight {
    fn weight(&self) -> usize;
}

/// Prepared statements or portals by name; the oldest are forgotten past a
/// count or a byte bound.
pub(super) struct Named<T> {
    pub(super) map: HashMap<String, (u64, T)>,
    /// Names in the order they were (re)defined, with the definition's number.
    pub(super) order: VecDeque<(u64, String)>,
    pub(super) seq: u64,
    pub(super) bytes: usize,
    pub(super) max: usize,
    pub(super) max_bytes: usize,
}

impl<T: Weight> Named<T> {
    pub(super) fn new(max: usize, max_bytes: usize) -> Self {
        Named {
            map: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            bytes: 0,
            max,
            max_bytes,
        }
    }

    pub(super) fn insert(&mut self, key: String, v: T) {
        let w = v.weight() + key.len();
        if let Some((_, old)) = self.map.insert(key.clone(), (self.seq, v)) {
            self.bytes = self.bytes.saturating_sub(old.weight() + key.len());
        }
        self.bytes += w;
        self.order.push_back((self.seq, key));
        self.seq += 1;
        while self.map.len() > self.max || self.bytes > self.max_bytes {
            let Some((s, k)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&k).is_some_and(|(q, _)| *q == s)
                && let Some((_, old)) = self.map.remove(&k)
            {
                self.bytes = self.bytes.saturating_sub(old.weight() + k.len());
            }
        }
        if self.order.len() > 2 * self.max + 16 {
            let map = &self.map;
            self.order
                .retain(|(s, k)| map.get(k).is_some_and(|(q, _)| q == s));
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&T> {
        self.map.get(key).map(|(_, v)| v)
    }

    pub(super) fn remove(&mut self, key: &str) {
        if let Some((_, old)) = self.map.remove(key) {
            self.bytes = self.bytes.saturating_sub(old.weight() + key.len());
        }
    }
}

/// A prepared statement: its SQL, as the Parse sent it (capped).
pub(super) struct Statement {
    pub(super) sql: String,
    pub(super) truncated: bool,
}

impl Weight for Statement {
    fn weight(&self) -> usize {
        self.sql.len()
    }
}

/// A portal: what a Bind bound, for the Executes that run it.
#[derive(Default, Clone)]
pub(super) struct Portal {
    pub(super) statement: String,
    pub(super) sql: Option<String>,
    pub(super) sql_truncated: bool,
    pub(super) params: Vec<PostgresValue>,
    pub(super) param_count: u64,
    pub(super) params_truncated: bool,
    pub(super) result_formats: Vec<u16>,
}

impl Weight for Portal {
    fn weight(&self) -> usize {
        self.statement.len()
            + self.sql.as_ref().map_or(0, String::len)
            + self
                .params
                .iter()
                .map(|p| p.text.as_ref().map_or(0, String::len) + VALUE_COST)
                .sum::<usize>()
            + 2 * self.result_formats.len()
    }
}

/// A client message that waits for the server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpKind {
    Startup,
    Query,
    Parse,
    Bind,
    Describe,
    Execute,
    Close,
    Sync,
    Function,
}

impl OpKind {
    pub(super) fn makes_entry(self) -> bool {
        matches!(
            self,
            OpKind::Startup | OpKind::Query | OpKind::Execute | OpKind::Function
        )
    }

    /// Answered by a ReadyForQuery, which ends a batch.
    pub(super) fn ends_batch(self) -> bool {
        matches!(
            self,
            OpKind::Startup | OpKind::Query | OpKind::Sync | OpKind::Function
        )
    }
}

/// A result under way.
#[derive(Debug, Default)]
pub(super) struct Partial {
    pub(super) res: PostgresResult,
    pub(super) data_rows: u64,
    pub(super) formats: Vec<u16>,
}

/// The answer to an op, gathered as the server's messages arrive.
#[derive(Debug, Default)]
pub(super) struct Draft {
    pub(super) started: bool,
    pub(super) ts: u64,
    pub(super) wire: u64,
    pub(super) flags: Vec<String>,
    pub(super) body: PostgresResponse,
    pub(super) cur: Option<Partial>,
    /// Columns and formats an Execute's Describe reported.
    pub(super) described: Option<(Vec<String>, Vec<u16>)>,
    /// Result formats its Bind asked for, until a RowDescription says.
    pub(super) formats: Vec<u16>,
    /// Bytes of row values kept across the answer.
    pub(super) rows_bytes: usize,
    /// Something was not kept.
    pub(super) cut: bool,
}

impl Draft {
    pub(super) fn touch(&mut self, ts: u64, wire: u64, flags: Vec<String>) {
        if !self.started {
            self.started = true;
            self.ts = ts;
        }
        self.wire += wire;
        for f in &flags {
            add_flag(&mut self.flags, f);
        }
    }

    pub(super) fn result(&mut self) -> &mut Partial {
        let described = &mut self.described;
        let formats = &self.formats;
        self.cur.get_or_insert_with(|| {
            let (columns, formats) = described
                .take()
                .unwrap_or_else(|| (Vec::new(), formats.clone()));
            Partial {
                res: PostgresResult {
                    columns,
                    ..Default::default()
                },
                data_rows: 0,
                formats,
            }
        })
    }

    pub(super) fn close_result(&mut self) {
        if let Some(p) = self.cur.take() {
            let mut r = p.res;
            r.row_count = tag_rows(&r.command_tag).unwrap_or(p.data_rows);
            if r.rows_truncated {
                self.cut = true;
            }
            if self.body.results.len() < MAX_RESULTS {
                self.body.results.push(r);
            } else {
                self.cut = true;
            }
        }
    }

    /// A DataRow: counted, and rendered while the row and byte caps allow.
    pub(super) fn data_row(&mut self, body: &[u8], max: usize) {
        let budget = max.saturating_sub(self.rows_bytes);
        let p = self.result();
        p.data_rows += 1;
        if p.res.rows.len() >= MAX_ROWS || budget == 0 {
            p.res.rows_truncated = true;
            return;
        }
        let mut r = Reader::new(body);
        let n = r.u16().unwrap_or(0);
        let mut values = Vec::new();
        let mut used = 0;
        let mut whole = true;
        for i in 0..usize::from(n) {
            let Some(len) = r.u32() else {
                whole = false;
                break;
            };
            used += VALUE_COST;
            if len as i32 == -1 {
                values.push(PostgresValue { text: None });
            } else {
                let (bytes, complete) = r.take(len as usize);
                let room = budget.saturating_sub(used);
                let (t, fits) = render(bytes, format_of(&p.formats, i) == 1, !complete, room);
                used += t.len();
                values.push(PostgresValue { text: Some(t) });
                if !complete || !fits {
                    whole = false;
                    break;
                }
            }
            if used >= budget && i + 1 < usize::from(n) {
                whole = false;
                break;
            }
        }
        if !whole {
            p.res.rows_truncated = true;
        }
        p.res.rows.push(PostgresRow { values });
        self.rows_bytes += used;
    }
}

/// A client message waiting for its answer, with the request it makes.
pub(super) struct Op {
    pub(super) kind: OpKind,
    pub(super) req: Message<PostgresRequest>,
    pub(super) resp: Draft,
}

/// How an op leaves the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retire {
    Answered,
    /// The server skipped it after an error earlier in its batch.
    Skipped,
    Unanswered,
    Closed,
}

/// A resynchronisation under way: bytes since the loss or the bad header,
/// and the offsets in them that may begin a message.
#[derive(Debug, Default)]
pub(super) struct Resync {
    pub(super) window: Vec<u8>,
    /// The first offset not yet looked at.
    pub(super) next: usize,
    /// Offsets whose check needs more bytes.
    pub(super) candidates: Vec<usize>,
}

impl Resync {
    pub(super) fn with(window: Vec<u8>) -> Self {
        Resync {
            window,
            ..Default::default()
        }
    }

    /// Takes in some of `data`: how much, and the bytes from a message
    /// boundary on when one was found (the resynchronisation is over).
    pub(super) fn feed(&mut self, role: Role, data: &[u8]) -> (usize, Option<Vec<u8>>) {
        let take = data.len().min(RESYNC_WINDOW / 2);
        self.window.extend_from_slice(&data[..take]);
        // A message ending exactly where a segment does is a boundary; one
        // ending where this call cut the input is not.
        let end_ok = take == data.len();
        let mut found = None;
        let mut waiting = Vec::new();
        for &c in &self.candidates {
            match plausible(role, &self.window[c..], 2, end_ok) {
                Claim::Yes => {
                    found = Some(c);
                    break;
                }
                Claim::NeedMore => waiting.push(c),
                Claim::No => {}
            }
        }
        self.candidates = waiting;
        while found.is_none() && self.next < self.window.len() {
            let at = self.next;
            match plausible(role, &self.window[at..], 2, end_ok) {
                Claim::Yes => found = Some(at),
                Claim::NeedMore if self.window.len() - at < 5 => break,
                Claim::NeedMore => {
                    if self.candidates.len() < MAX_CANDIDATES {
                        self.candidates.push(at);
                    }
                }
                Claim::No => {}
            }
            self.next += 1;
        }
        if let Some(c) = found {
            return (take, Some(self.window[c..].to_vec()));
        }
        let from = self
            .candidates
            .first()
            .map_or(self.next, |&c| c.min(self.next));
        // Dropped in steps, so that tiny segments do not move the window each time.
        if from >= 4096 || from == self.window.len() {
            self.window.drain(..from);
            self.next -= from;
            for c in &mut self.candidates {
                *c -= from;
            }
        }
        if self.window.len() > 2 * RESYNC_WINDOW {
            // Cannot happen (a candidate resolves within a window); bound it anyway.
            self.candidates.clear();
            self.window.drain(..self.next);
            self.next = 0;
        }
        (take, None)
    }
}

/// A message body being read.
pub(super) struct Body {
    pub(super) t: u8,
    pub(super) len: u64,
    pub(super) left: u64,
    pub(super) keep: Vec<u8>,
    pub(super) cap: usize,
    pub(super) cut: bool,
    pub(super) ts: u64,
}

/// One direction's framing state.
pub(super) struct Side {
    /// The client's first messages (startup, SSLRequest) have no type byte.
    pub(super) typed: bool,
    pub(super) hdr: [u8; 5],
    pub(super) hdr_n: usize,
    pub(super) hdr_ts: u64,
    pub(super) body: Option<Body>,
    pub(super) resync: Option<Resync>,
    /// A message has parsed since the last error or gap; errors meanwhile are not reported again.
    pub(super) synced: bool,
    /// Flags for the next message (gap, malformed).
    pub(super) flags: Vec<String>,
}

impl Side {
    pub(super) fn new(role: Role, midstream: bool) -> Self {
        Side {
            typed: role == Role::Server || midstream,
            hdr: [0; 5],
            hdr_n: 0,
            hdr_ts: 0,
            body: None,
            resync: midstream.then(Resync::default),
            synced: !midstream,
            flags: Vec::new(),
        }
    }

    pub(super) fn at_boundary(&self) -> bool {
        self.body.is_none() && self.hdr_n == 0 && self.resync.is_none()
    }
}

/// A complete message (or what was kept of it).
pub(super) struct Msg<'a> {
    pub(super) t: u8,
    pub(super) body: &'a [u8],
    /// Body bytes on the wire.
    pub(super) len: u64,
    /// The body was not all kept (cap or loss).
    pub(super) cut: bool,
    pub(super) ts: u64,
    /// Bytes on the wire with the header.
    pub(super) wire: u64,
    pub(super) flags: Vec<String>,
}
