//! TLS plaintext as connections: each socket of a process is one flow whose
//! two directions are what the process wrote and read through the TLS
//! library, handed to the same detection and dissectors as captured packets
//! (`tap_dissect::Connection`), its entries marked `tls` and carrying the
//! connection's real addresses.
//!
//! A call's socket comes with the record when the call made a syscall;
//! calls the library served from its buffer made none, and take the socket
//! their connection object (`SSL *`) had last. A record whose socket cannot
//! be known, or no longer resolves to a TCP connection, is counted and
//! dropped. A chunk cut short (a call that moved more than one event holds)
//! is followed by a gap of the bytes missing, as a lost segment is.
//! Flows end when idle ([`Streams::sweep`]) or at [`Streams::finish`].

use super::{SocketInfo, TlsRecord, socket_of};
use crate::dissect::flow::{CloseReason, Direction, FlowEnd, FlowHandler, FlowInfo};
use crate::dissect::{Connection, DissectConfig, Emit};
use std::collections::HashMap;
use std::sync::Arc;

/// Flow ids of TLS streams: apart from packet flows' (UDP's have bit 63).
const ID_BASE: u64 = 1 << 62;
/// Flows kept at once; the least recently active goes first.
const MAX_FLOWS: usize = 16 * 1024;
/// Connection objects whose socket is remembered.
const MAX_OBJECTS: usize = 64 * 1024;

/// What happened to the records, by outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    pub records: u64,
    pub bytes: u64,
    /// Flows made, and of those closed to make room.
    pub flows: u64,
    pub evicted: u64,
    /// Dropped: no socket known for the call's connection object.
    pub no_socket: u64,
    /// Dropped: the socket was no TCP connection, or gone, when first seen.
    pub unresolved: u64,
    /// Bytes a call moved beyond what its event held (gaps).
    pub cut_bytes: u64,
}

struct Stream {
    info: FlowInfo,
    /// The connection object of the flow's calls: another one on the same
    /// socket number means the process closed the old connection and the
    /// number was given to a new one.
    ssl: u64,
    conn: Connection,
    server_side: bool,
    last_mono: u64,
    bytes: [u64; 2],
    calls: [u64; 2],
}

/// Turns TLS records into dissected entries, flow by flow.
pub struct Streams<R = fn(u32, i32) -> Option<SocketInfo>> {
    config: Arc<DissectConfig>,
    resolve: R,
    flows: HashMap<(u32, i32), Stream>,
    /// The socket each connection object used last, per process.
    objects: HashMap<(u32, u64), i32>,
    next_id: u64,
    /// Wall-clock nanoseconds minus monotonic ones.
    clock_offset: i128,
    stats: StreamStats,
}

impl Streams {
    /// Streams whose sockets are resolved from /proc ([`socket_of`]).
    pub fn new(config: Arc<DissectConfig>) -> Self {
        Streams::with_resolver(config, socket_of)
    }
}

impl<R: FnMut(u32, i32) -> Option<SocketInfo>> Streams<R> {
    /// Streams whose sockets `resolve` finds (tests hand a table).
    pub fn with_resolver(config: Arc<DissectConfig>, resolve: R) -> Self {
        let now = |id| {
            let t = rustix::time::clock_gettime(id);
            i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
        };
        let clock_offset =
            now(rustix::time::ClockId::Realtime) - now(rustix::time::ClockId::Monotonic);
        Streams {
            config,
            resolve,
            flows: HashMap::new(),
            objects: HashMap::new(),
            next_id: 0,
            clock_offset,
            stats: StreamStats::default(),
        }
    }

    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Wall-clock nanoseconds of a monotonic time.
    fn wall(&self, mono_ns: u64) -> u64 {
        u64::try_from(i128::from(mono_ns) + self.clock_offset).unwrap_or(0)
    }

    /// One TLS call's bytes, into its flow; what the flow's dissector
    /// completes goes to `out`.
    pub fn record(&mut self, r: &TlsRecord, out: &mut Vec<Emit>) {
        self.stats.records += 1;
        let fd = match r.fd {
            Some(fd) => {
                if self.objects.len() >= MAX_OBJECTS && !self.objects.contains_key(&(r.pid, r.ssl))
                {
                    self.objects.clear();
                }
                self.objects.insert((r.pid, r.ssl), fd);
                fd
            }
            None => match self.objects.get(&(r.pid, r.ssl)) {
                Some(&fd) => fd,
                None => {
                    self.stats.no_socket += 1;
                    return;
                }
            },
        };
        let key = (r.pid, fd);
        if self.flows.get(&key).is_some_and(|s| s.ssl != r.ssl) {
            self.close(key, CloseReason::Reused, r.mono_ns, out);
        }
        if !self.flows.contains_key(&key) && !self.open(key, r.ssl, r.mono_ns, out) {
            return;
        }
        let ts = self.wall(r.mono_ns);
        let Some(s) = self.flows.get_mut(&key) else {
            return;
        };
        // What the process wrote goes to its peer: towards the server when
        // the process is the client.
        let dir = match (r.egress, s.server_side) {
            (true, false) | (false, true) => Direction::ToServer,
            (true, true) | (false, false) => Direction::ToClient,
        };
        s.last_mono = r.mono_ns;
        s.bytes[dir.index()] += u64::from(r.total);
        s.calls[dir.index()] += 1;
        self.stats.bytes += u64::from(r.total);
        s.conn.on_data(&s.info, dir, ts, &r.data, out);
        let cut = u64::from(r.total).saturating_sub(r.data.len() as u64);
        if cut > 0 {
            self.stats.cut_bytes += cut;
            s.conn.on_gap(&s.info, dir, ts, cut, out);
        }
    }

    /// A new flow for `key`, if its socket resolves; the least recently
    /// active flow is closed first when the table is full.
    fn open(&mut self, key: (u32, i32), ssl: u64, mono_ns: u64, out: &mut Vec<Emit>) -> bool {
        let Some(sock) = (self.resolve)(key.0, key.1) else {
            self.stats.unresolved += 1;
            return false;
        };
        if self.flows.len() >= MAX_FLOWS
            && let Some(oldest) = self
                .flows
                .iter()
                .min_by_key(|(_, s)| s.last_mono)
                .map(|(k, _)| *k)
        {
            self.stats.evicted += 1;
            self.close(oldest, CloseReason::Evicted, mono_ns, out);
        }
        let (client, server) = if sock.server_side {
            (sock.remote, sock.local)
        } else {
            (sock.local, sock.remote)
        };
        self.next_id += 1;
        let info = FlowInfo {
            id: ID_BASE | self.next_id,
            client,
            server,
            first_ts_ns: self.wall(mono_ns),
            // The probes see a connection from its first TLS call on when
            // they were attached before it started; the dissectors cope
            // with either.
            midstream: false,
            tls: true,
            outer: None,
        };
        self.stats.flows += 1;
        self.flows.insert(
            key,
            Stream {
                info,
                ssl,
                conn: Connection::new(self.config.clone()),
                server_side: sock.server_side,
                last_mono: mono_ns,
                bytes: [0; 2],
                calls: [0; 2],
            },
        );
        true
    }

    fn close(&mut self, key: (u32, i32), reason: CloseReason, mono_ns: u64, out: &mut Vec<Emit>) {
        let Some(mut s) = self.flows.remove(&key) else {
            return;
        };
        let end = FlowEnd {
            ts_ns: self.wall(mono_ns.max(s.last_mono)),
            reason,
            packets: s.calls,
            bytes: s.bytes,
        };
        s.conn.on_close(&s.info, &end, out);
    }

    /// Closes flows with no call for `idle_ns` up to `now_mono`.
    pub fn sweep(&mut self, now_mono: u64, idle_ns: u64, out: &mut Vec<Emit>) {
        let idle: Vec<(u32, i32)> = self
            .flows
            .iter()
            .filter(|(_, s)| now_mono.saturating_sub(s.last_mono) >= idle_ns)
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            self.close(key, CloseReason::Idle, now_mono, out);
        }
    }

    /// Closes every flow (the source stops).
    pub fn finish(&mut self, now_mono: u64, out: &mut Vec<Emit>) {
        let all: Vec<(u32, i32)> = self.flows.keys().copied().collect();
        for key in all {
            self.close(key, CloseReason::EndOfCapture, now_mono, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{Entry, Protocol};

    fn record(pid: u32, fd: Option<i32>, egress: bool, data: &[u8]) -> TlsRecord {
        TlsRecord {
            mono_ns: 1_000,
            ssl: 0xabc,
            pid,
            tid: pid,
            fd,
            egress,
            total: data.len() as u32,
            data: data.to_vec(),
        }
    }

    fn entries(out: Vec<Emit>) -> Vec<Entry> {
        out.into_iter()
            .filter_map(|e| match e {
                Emit::Entry(e) => Some(*e),
                _ => None,
            })
            .collect()
    }

    const CLIENT: &str = "10.1.0.5:40000";
    const SERVER: &str = "10.1.1.7:443";

    /// A client (pid 7, fd 5) and the server (pid 9, fd 4) of one connection.
    fn resolver(pid: u32, fd: i32) -> Option<SocketInfo> {
        let (c, s) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
        match (pid, fd) {
            (7, 5) => Some(SocketInfo {
                local: c,
                remote: s,
                server_side: false,
            }),
            (9, 4) => Some(SocketInfo {
                local: s,
                remote: c,
                server_side: true,
            }),
            _ => None,
        }
    }

    #[test]
    fn a_clients_plaintext_is_an_http_entry_marked_tls_with_real_addresses() {
        let mut s = Streams::with_resolver(Arc::new(DissectConfig::default()), resolver);
        let mut out = Vec::new();
        s.record(
            &record(
                7,
                Some(5),
                true,
                b"GET /cart HTTP/1.1\r\nHost: shop\r\n\r\n",
            ),
            &mut out,
        );
        // The answer came from the library's buffer: no syscall, no fd.
        s.record(
            &record(
                7,
                None,
                false,
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            ),
            &mut out,
        );
        s.finish(2_000, &mut out);
        let es = entries(out);
        assert_eq!(es.len(), 1, "{es:?}");
        let e = &es[0];
        assert_eq!(e.protocol, Protocol::Http as i32);
        assert!(e.tls);
        assert_eq!(e.src.as_ref().unwrap().ip, "10.1.0.5");
        assert_eq!(e.dst.as_ref().unwrap().port, 443);
        assert_eq!(tap_dissect::GenericFields::status(e), Some(200), "{e:?}");
        assert_eq!(s.stats().flows, 1);
    }

    /// The server's side of the same exchange: its reads are the requests.
    #[test]
    fn a_servers_reads_are_the_requests() {
        let mut s = Streams::with_resolver(Arc::new(DissectConfig::default()), resolver);
        let mut out = Vec::new();
        s.record(
            &record(9, Some(4), false, b"GET /a HTTP/1.1\r\n\r\n"),
            &mut out,
        );
        s.record(
            &record(
                9,
                Some(4),
                true,
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            ),
            &mut out,
        );
        s.sweep(10_000_000_000, 1_000_000_000, &mut out);
        let es = entries(out);
        assert_eq!(es.len(), 1, "{es:?}");
        assert_eq!(es[0].src.as_ref().unwrap().port, 40000);
        assert_eq!(tap_dissect::GenericFields::status(&es[0]), Some(404));
    }

    #[test]
    fn records_without_a_known_or_resolvable_socket_are_counted() {
        let mut s = Streams::with_resolver(Arc::new(DissectConfig::default()), resolver);
        let mut out = Vec::new();
        s.record(&record(7, None, true, b"GET / HTTP/1.1\r\n\r\n"), &mut out);
        s.record(
            &record(8, Some(3), true, b"GET / HTTP/1.1\r\n\r\n"),
            &mut out,
        );
        let st = s.stats();
        assert_eq!(
            (st.records, st.no_socket, st.unresolved, st.flows),
            (2, 1, 1, 0)
        );
    }

    /// The process closed a connection and its socket number went to a new
    /// one (another `SSL *`): the old flow ends, the new one starts afresh.
    #[test]
    fn a_socket_number_reused_by_another_connection_starts_a_new_flow() {
        let mut s = Streams::with_resolver(Arc::new(DissectConfig::default()), resolver);
        let mut out = Vec::new();
        s.record(
            &record(7, Some(5), true, b"GET /one HTTP/1.1\r\n\r\n"),
            &mut out,
        );
        s.record(
            &record(
                7,
                Some(5),
                false,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            ),
            &mut out,
        );
        let mut next = record(7, Some(5), true, b"GET /two HTTP/1.1\r\n\r\n");
        next.ssl = 0xdef;
        s.record(&next, &mut out);
        s.finish(2_000, &mut out);
        let es = entries(out);
        let flows: Vec<u64> = es.iter().map(|e| e.flow_id).collect();
        assert_eq!(es.len(), 2, "{es:?}");
        assert_ne!(flows[0], flows[1]);
        assert_eq!(s.stats().flows, 2);
    }

    /// A call that moved more than its event holds: the rest is a gap, and
    /// the entry says so.
    #[test]
    fn a_cut_chunk_is_a_gap() {
        let mut s = Streams::with_resolver(Arc::new(DissectConfig::default()), resolver);
        let mut out = Vec::new();
        s.record(
            &record(7, Some(5), true, b"GET / HTTP/1.1\r\n\r\n"),
            &mut out,
        );
        let mut big = record(
            7,
            None,
            false,
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nxx",
        );
        big.total = 100_000 + 40;
        s.record(&big, &mut out);
        s.finish(2_000, &mut out);
        let es = entries(out);
        assert!(s.stats().cut_bytes > 0);
        assert!(
            es.iter().any(|e| e.flags.iter().any(|f| f == "gap")),
            "{es:?}"
        );
    }
}
