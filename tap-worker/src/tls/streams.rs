//! TLS plaintext as connections: each socket of a process is one flow whose
//! two directions are what the process wrote and read through the TLS
//! library, handed to the same detection and dissectors as captured packets
//! (`tap_dissect::Connection`), its entries marked `tls` and carrying the
//! connection's real addresses.
//!
//! A call's socket comes with the record when the call made a syscall;
//! calls the library served from its buffer made none, and take the socket
//! their connection object (`SSL *`) had last. A connection object not seen
//! with a socket yet (a server whose handshake's read also took the first
//! request, served from the buffer by its first `SSL_read`) has its records
//! held, a few per object, until one of its calls shows the socket (its
//! answer's write does). A record whose socket is never known, or no longer
//! resolves to a TCP connection, is counted and dropped. A chunk cut short (a call that moved more than one event holds)
//! is followed by a gap of the bytes missing, as a lost segment is.
//! Flows end when idle ([`Streams::sweep`]) or at [`Streams::finish`].
//!
//! A connection whose both ends are on this node is seen twice (the
//! client's writes are the server's reads): it is dissected from the
//! server's end, the client's counted as a mirror. Each connection's addresses go
//! into [`Decrypted`], so the entry of its encrypted packets is not reported
//! beside the plaintext's.

use super::{SocketInfo, TlsRecord, server_side, socket_of};
use crate::dissect::flow::{CloseReason, Direction, FlowEnd, FlowHandler, FlowInfo};
use crate::dissect::{Connection, DissectConfig, Emit};
use proto::v1::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Flow ids of TLS streams: apart from packet flows' (UDP's have bit 63).
const ID_BASE: u64 = 1 << 62;
/// Flows kept at once; the least recently active goes first.
const MAX_FLOWS: usize = 16 * 1024;
/// Connection objects whose socket is remembered.
const MAX_OBJECTS: usize = 64 * 1024;
/// Records held per connection object until its socket shows, their bytes,
/// and the objects with records held, at most.
const HELD_RECORDS: usize = 8;
const HELD_BYTES: usize = 64 * 1024;
const HELD_OBJECTS: usize = 1024;
/// Held records older than this are dropped (`no_socket`).
const HELD_NS: u64 = 10_000_000_000;

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
    /// Bytes a call moved beyond what its event held (gaps), and the calls.
    pub cut_bytes: u64,
    pub cut_calls: u64,
    /// Connections seen from both ends: dissected from one.
    pub mirrored: u64,
    /// Connections between no target pods (when pods are targeted): not
    /// dissected.
    pub untargeted: u64,
}

/// Connections (their two addresses) whose plaintext the probes read. The
/// packet side's entry of such a connection (`tls`, its handshake, or
/// `tcp`) is not reported; [`Decrypted::replaces`] says which. A
/// connection is noted from its `SSL_set_fd` on, before its handshake.
#[derive(Default)]
pub struct Decrypted {
    inner: Mutex<DecryptedInner>,
}

#[derive(Default)]
struct DecryptedInner {
    conns: HashMap<(SocketAddr, SocketAddr), Instant>,
    replaced: u64,
}

/// Connections remembered at once; the older than [`DECRYPTED_AGE`] go
/// first when full.
const MAX_DECRYPTED: usize = 64 * 1024;
const DECRYPTED_AGE: Duration = Duration::from_secs(600);

fn pair(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

impl Decrypted {
    fn lock(&self) -> std::sync::MutexGuard<'_, DecryptedInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, a: SocketAddr, b: SocketAddr) {
        let mut d = self.lock();
        if d.conns.len() >= MAX_DECRYPTED {
            d.conns.retain(|_, seen| seen.elapsed() < DECRYPTED_AGE);
            if d.conns.len() >= MAX_DECRYPTED {
                d.conns.clear();
            }
        }
        d.conns.insert(pair(a, b), Instant::now());
    }

    /// Whether `e` is the packets' view of a decrypted connection (a `tls`
    /// or `tcp` entry between its two addresses); counted when it is.
    pub fn replaces(&self, e: &Entry) -> bool {
        let encrypted = [proto::v1::Protocol::Tcp, proto::v1::Protocol::Tls]
            .iter()
            .any(|p| e.protocol == *p as i32);
        if e.tls || !encrypted {
            return false;
        }
        let addr = |end: Option<&proto::v1::Endpoint>| {
            let end = end?;
            let ip: std::net::IpAddr = end.ip.parse().ok()?;
            Some(SocketAddr::new(
                ip.to_canonical(),
                u16::try_from(end.port).ok()?,
            ))
        };
        let (Some(a), Some(b)) = (addr(e.src.as_ref()), addr(e.dst.as_ref())) else {
            return false;
        };
        let mut d = self.lock();
        if d.conns.contains_key(&pair(a, b)) {
            d.replaced += 1;
            true
        } else {
            false
        }
    }

    /// Entries not reported so far.
    pub fn replaced(&self) -> u64 {
        self.lock().replaced
    }
}

struct Stream {
    info: FlowInfo,
    /// The connection object of the flow's calls: another one on the same
    /// socket number means the process closed the old connection and the
    /// number was given to a new one.
    ssl: u64,
    conn: Connection,
    server_side: bool,
    /// The socket's addresses as the process sees them.
    local: SocketAddr,
    remote: SocketAddr,
    last_mono: u64,
    bytes: [u64; 2],
    calls: [u64; 2],
    /// The other end of a connection already followed: not dissected.
    mirror: bool,
    /// Next TCP sequence number of each direction's made packets.
    seq: [u32; 2],
}

/// A packet made from TLS plaintext, for the raw-packet ring: the flow's
/// id, wall-clock time, and an IP packet (LINKTYPE_RAW).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadePacket {
    pub flow: u64,
    pub ts_ns: u64,
    pub data: Vec<u8>,
}

/// pcap's LINKTYPE_RAW: an IPv4 or IPv6 packet, no link header.
pub const LINKTYPE_RAW: u32 = 101;
/// Plaintext per made packet, at most (within an IP packet's length).
const MADE_SEGMENT: usize = 32 * 1024;

/// TCP flags of a made packet.
#[derive(Clone, Copy)]
enum Flags {
    Syn,
    SynAck,
    Ack,
    PshAck,
    FinAck,
}

/// One TCP segment from `from` to `to`, as an IP packet.
fn segment(
    from: SocketAddr,
    to: SocketAddr,
    seq: u32,
    ack: u32,
    flags: Flags,
    payload: &[u8],
) -> Option<Vec<u8>> {
    use etherparse::PacketBuilder;
    let ip = match (from.ip(), to.ip()) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => {
            PacketBuilder::ipv4(a.octets(), b.octets(), 64)
        }
        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) => {
            PacketBuilder::ipv6(a.octets(), b.octets(), 64)
        }
        _ => return None,
    };
    let tcp = ip.tcp(from.port(), to.port(), seq, 65535);
    let tcp = match flags {
        Flags::Syn => tcp.syn(),
        Flags::SynAck => tcp.syn().ack(ack),
        Flags::Ack => tcp.ack(ack),
        Flags::PshAck => tcp.psh().ack(ack),
        Flags::FinAck => tcp.fin().ack(ack),
    };
    let mut out = Vec::with_capacity(tcp.size(payload.len()));
    tcp.write(&mut out, payload).ok()?;
    Some(out)
}

/// A socket's (local, remote) addresses as the kernel read them.
pub type Addrs = Option<(SocketAddr, SocketAddr)>;

/// Turns TLS records into dissected entries, flow by flow.
pub struct Streams<R = fn(u32, i32, Addrs) -> Option<SocketInfo>> {
    config: Arc<DissectConfig>,
    resolve: R,
    flows: HashMap<(u32, i32), Stream>,
    /// The socket each connection object used last, per process, with
    /// its addresses when the kernel read them.
    objects: HashMap<(u32, u64), (i32, Addrs)>,
    /// Records of connection objects whose socket is not known yet.
    held: HashMap<(u32, u64), Vec<TlsRecord>>,
    /// Processes whose calls were seen (bounded like `objects`).
    callers: std::collections::HashSet<u32>,
    /// The flow each connection (its two addresses) is dissected from.
    owners: HashMap<(SocketAddr, SocketAddr), (u32, i32)>,
    decrypted: Option<Arc<Decrypted>>,
    /// The target pods, when pods are targeted: a connection with neither
    /// end among them is not dissected.
    targets: Option<crate::pods::Names>,
    /// Flows opened since [`Streams::take_opened`]: the process and its
    /// socket's local address.
    opened: Vec<(u32, SocketAddr)>,
    /// Packets made from the plaintext since [`Streams::take_packets`]
    /// (only when [`Streams::make_packets`] asked for them).
    packets: Option<Vec<MadePacket>>,
    next_id: u64,
    /// Wall-clock nanoseconds minus monotonic ones.
    clock_offset: i128,
    stats: StreamStats,
}

/// A socket's connection: the addresses the kernel read, with the side
/// the process is on from its network namespace's listening sockets; else
/// from /proc ([`socket_of`]).
pub fn resolve(pid: u32, fd: i32, addrs: Addrs) -> Option<SocketInfo> {
    match addrs {
        Some((local, remote)) => Some(SocketInfo {
            local,
            remote,
            server_side: server_side(pid, local, remote),
        }),
        None => socket_of(pid, fd),
    }
}

impl Streams {
    /// Streams whose sockets are resolved by [`resolve`].
    pub fn new(config: Arc<DissectConfig>) -> Self {
        Streams::with_resolver(config, resolve)
    }
}

impl<R: FnMut(u32, i32, Addrs) -> Option<SocketInfo>> Streams<R> {
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
            held: HashMap::new(),
            callers: std::collections::HashSet::new(),
            owners: HashMap::new(),
            decrypted: None,
            targets: None,
            opened: Vec::new(),
            packets: None,
            next_id: 0,
            clock_offset,
            stats: StreamStats::default(),
        }
    }

    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Only connections with an end among `targets` (pods' addresses) are
    /// dissected from now on; `None`: every connection.
    pub fn set_targets(&mut self, targets: Option<crate::pods::Names>) {
        self.targets = targets;
    }

    /// Connections followed are noted in `decrypted`.
    pub fn note_decrypted(&mut self, decrypted: Arc<Decrypted>) {
        self.decrypted = Some(decrypted);
    }

    /// Make the plaintext into TCP packets on each connection's addresses
    /// (a handshake when a flow opens, a segment per call, FINs at its
    /// end), for PCAP export: Wireshark dissects them as it would the
    /// connection unencrypted.
    pub fn make_packets(&mut self) {
        self.packets.get_or_insert_with(Vec::new);
    }

    /// The packets made since the last call.
    pub fn take_packets(&mut self) -> Vec<MadePacket> {
        self.packets
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Appends made packets of flow `key` to [`Streams::packets`]: for each
    /// (direction, flags, payload), one segment; a payload's length moves
    /// that direction's sequence number (SYN and FIN move it by one).
    fn make(&mut self, key: (u32, i32), ts_ns: u64, segments: &[(Direction, Flags, &[u8])]) {
        let (Some(packets), Some(s)) = (self.packets.as_mut(), self.flows.get_mut(&key)) else {
            return;
        };
        if s.mirror {
            return;
        }
        for (dir, flags, payload) in segments {
            let i = dir.index();
            let (from, to) = match dir {
                Direction::ToServer => (s.info.client, s.info.server),
                Direction::ToClient => (s.info.server, s.info.client),
            };
            for piece in payload.chunks(MADE_SEGMENT).chain(
                // A segment without payload (SYN, ACK, FIN) still goes.
                payload.is_empty().then_some(&[][..]),
            ) {
                let ack = s.seq[1 - i];
                if let Some(data) = segment(from, to, s.seq[i], ack, *flags, piece) {
                    packets.push(MadePacket {
                        flow: s.info.id,
                        ts_ns,
                        data,
                    });
                }
                let moved = piece.len() as u32
                    + u32::from(matches!(flags, Flags::Syn | Flags::SynAck | Flags::FinAck));
                s.seq[i] = s.seq[i].wrapping_add(moved);
            }
        }
    }

    /// The flows opened since the last call: each one's process and local
    /// address.
    pub fn take_opened(&mut self) -> Vec<(u32, SocketAddr)> {
        std::mem::take(&mut self.opened)
    }

    /// Wall-clock nanoseconds of a monotonic time.
    fn wall(&self, mono_ns: u64) -> u64 {
        u64::try_from(i128::from(mono_ns) + self.clock_offset).unwrap_or(0)
    }

    /// One TLS call's bytes, into its flow; what the flow's dissector
    /// completes goes to `out`.
    pub fn record(&mut self, r: &TlsRecord, out: &mut Vec<Emit>) {
        let object = (r.pid, r.ssl);
        if !self.callers.contains(&r.pid) {
            if self.callers.len() >= MAX_OBJECTS {
                // Forgetting callers only means an exit closes nothing early;
                // their flows still end when idle.
                self.callers.clear();
            }
            self.callers.insert(r.pid);
        }
        if r.socket_set {
            self.socket_set(r, out);
            return;
        }
        self.stats.records += 1;
        let fd = match r.fd {
            Some(fd) => {
                if self.objects.len() >= MAX_OBJECTS && !self.objects.contains_key(&object) {
                    self.objects.clear();
                }
                self.objects.insert(object, (fd, r.addrs));
                // What the object did before its socket showed, first.
                for held in self.held.remove(&object).unwrap_or_default() {
                    self.stats.records -= 1;
                    self.record(&held, out);
                }
                fd
            }
            None => match self.objects.get(&object) {
                Some(&(fd, _)) => fd,
                None => {
                    self.hold(r);
                    return;
                }
            },
        };
        let key = (r.pid, fd);
        // Another connection on the same socket number: another connection
        // object, or (the object's memory reused) other addresses.
        let addrs = r
            .addrs
            .or_else(|| self.objects.get(&object).and_then(|o| o.1));
        if self
            .flows
            .get(&key)
            .is_some_and(|s| s.ssl != r.ssl || addrs.is_some_and(|a| a != (s.local, s.remote)))
        {
            self.close(key, CloseReason::Reused, r.mono_ns, out);
        }
        if !self.flows.contains_key(&key) && !self.open(key, object, r.mono_ns, out) {
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
        if s.mirror {
            return;
        }
        s.conn.on_data(&s.info, dir, ts, &r.data, out);
        let cut = u64::from(r.total).saturating_sub(r.data.len() as u64);
        if cut > 0 {
            self.stats.cut_bytes += cut;
            self.stats.cut_calls += 1;
            s.conn.on_gap(&s.info, dir, ts, cut, out);
        }
        if self.packets.is_some() {
            self.make(key, ts, &[(dir, Flags::PshAck, &r.data)]);
            // What the event could not hold: a hole in the sequence, as a
            // lost segment would leave.
            if let Some(s) = self.flows.get_mut(&key) {
                let i = dir.index();
                s.seq[i] = s.seq[i].wrapping_add(cut as u32);
            }
        }
    }

    /// `SSL_set_fd`: the object starts a new connection on `r.fd`. What it
    /// held belonged to an older one (the object's memory reused); a flow
    /// on that socket number of another connection ends.
    fn socket_set(&mut self, r: &TlsRecord, out: &mut Vec<Emit>) {
        let (object, Some(fd)) = ((r.pid, r.ssl), r.fd) else {
            return;
        };
        if let Some(old) = self.held.remove(&object) {
            self.stats.no_socket += old.len() as u64;
        }
        if self.objects.len() >= MAX_OBJECTS && !self.objects.contains_key(&object) {
            self.objects.clear();
        }
        self.objects.insert(object, (fd, r.addrs));
        if let (Some(d), Some((local, remote))) = (&self.decrypted, r.addrs) {
            d.insert(local, remote);
        }
        let key = (r.pid, fd);
        if self
            .flows
            .get(&key)
            .is_some_and(|s| s.ssl != r.ssl || r.addrs.is_some_and(|a| a != (s.local, s.remote)))
        {
            self.close(key, CloseReason::Reused, r.mono_ns, out);
        }
    }

    /// Keeps a record of an object whose socket is not known yet, within
    /// the bounds; what does not fit is counted as `no_socket`.
    fn hold(&mut self, r: &TlsRecord) {
        let object = (r.pid, r.ssl);
        if !self.held.contains_key(&object) && self.held.len() >= HELD_OBJECTS {
            self.stats.no_socket += 1;
            return;
        }
        let held = self.held.entry(object).or_default();
        let bytes: usize = held.iter().map(|h| h.data.len()).sum();
        if held.len() >= HELD_RECORDS || bytes + r.data.len() > HELD_BYTES {
            self.stats.no_socket += 1;
            return;
        }
        held.push(r.clone());
    }

    /// A new flow for `key`, if its socket resolves; the least recently
    /// active flow is closed first when the table is full.
    fn open(
        &mut self,
        key: (u32, i32),
        object: (u32, u64),
        mono_ns: u64,
        out: &mut Vec<Emit>,
    ) -> bool {
        let ssl = object.1;
        let addrs = self.objects.get(&object).and_then(|o| o.1);
        let Some(sock) = (self.resolve)(key.0, key.1, addrs) else {
            tracing::debug!(
                pid = key.0,
                fd = key.1,
                "a TLS call's socket is no TCP connection"
            );
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
        // Both ends on this node: the server's is dissected (it reads every
        // request whole; a client may stop reading mid-answer). A client's
        // flow that came first is demoted when the server's shows up,
        // which is at the server's first read, before any answer.
        let tuple = pair(client, server);
        let owner = self
            .owners
            .get(&tuple)
            .copied()
            .filter(|owner| *owner != key && self.flows.contains_key(owner));
        let targeted = self
            .targets
            .as_ref()
            .is_none_or(|t| t.pod_of(client.ip()).is_some() || t.pod_of(server.ip()).is_some());
        if !targeted {
            self.stats.untargeted += 1;
        }
        let mirror = match owner {
            // Not a target pod's: followed (its socket number stays taken)
            // but not dissected.
            _ if !targeted => true,
            Some(owner) if sock.server_side && !self.flows[&owner].server_side => {
                if let Some(o) = self.flows.get_mut(&owner) {
                    o.mirror = true;
                }
                false
            }
            Some(_) => true,
            None => false,
        };
        if owner.is_some() && targeted {
            self.stats.mirrored += 1;
        }
        if !mirror {
            self.owners.insert(tuple, key);
        }
        if let Some(d) = self.decrypted.as_ref().filter(|_| targeted) {
            d.insert(client, server);
        }
        self.opened.push((key.0, sock.local));
        self.flows.insert(
            key,
            Stream {
                info,
                ssl,
                conn: Connection::new(self.config.clone()),
                server_side: sock.server_side,
                local: sock.local,
                remote: sock.remote,
                last_mono: mono_ns,
                bytes: [0; 2],
                calls: [0; 2],
                mirror,
                seq: [1, 1],
            },
        );
        let ts = self.wall(mono_ns);
        self.make(
            key,
            ts,
            &[
                (Direction::ToServer, Flags::Syn, &[]),
                (Direction::ToClient, Flags::SynAck, &[]),
                (Direction::ToServer, Flags::Ack, &[]),
            ],
        );
        true
    }

    fn close(&mut self, key: (u32, i32), reason: CloseReason, mono_ns: u64, out: &mut Vec<Emit>) {
        if let Some(last) = self.flows.get(&key).map(|s| s.last_mono) {
            let ts = self.wall(mono_ns.max(last));
            self.make(
                key,
                ts,
                &[
                    (Direction::ToServer, Flags::FinAck, &[]),
                    (Direction::ToClient, Flags::FinAck, &[]),
                ],
            );
        }
        let Some(mut s) = self.flows.remove(&key) else {
            return;
        };
        let tuple = pair(s.info.client, s.info.server);
        if self.owners.get(&tuple) == Some(&key) {
            self.owners.remove(&tuple);
        }
        if s.mirror {
            return;
        }
        let end = FlowEnd {
            ts_ns: self.wall(mono_ns.max(s.last_mono)),
            reason,
            packets: s.calls,
            bytes: s.bytes,
        };
        s.conn.on_close(&s.info, &end, out);
    }

    /// Closes flows with no call for `idle_ns` up to `now_mono`, and drops
    /// held records whose socket never showed.
    pub fn sweep(&mut self, now_mono: u64, idle_ns: u64, out: &mut Vec<Emit>) {
        let mut expired = 0;
        self.held.retain(|_, records| {
            let before = records.len();
            records.retain(|r| now_mono.saturating_sub(r.mono_ns) < HELD_NS);
            expired += (before - records.len()) as u64;
            !records.is_empty()
        });
        self.stats.no_socket += expired;
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

    /// Closes the flows of a process that exited (its sockets are closed).
    pub fn process_exited(&mut self, pid: u32, now_mono: u64, out: &mut Vec<Emit>) {
        // Most processes that exit on a node never made a TLS call here:
        // nothing to look through for them.
        if !self.callers.remove(&pid) {
            return;
        }
        let gone: Vec<(u32, i32)> = self.flows.keys().filter(|k| k.0 == pid).copied().collect();
        for key in gone {
            self.close(key, CloseReason::Fin, now_mono, out);
        }
        self.objects.retain(|o, _| o.0 != pid);
        let held: u64 = self
            .held
            .iter()
            .filter(|(o, _)| o.0 == pid)
            .map(|(_, r)| r.len() as u64)
            .sum();
        self.held.retain(|o, _| o.0 != pid);
        self.stats.no_socket += held;
    }

    /// Closes every flow (the source stops); held records are dropped.
    pub fn finish(&mut self, now_mono: u64, out: &mut Vec<Emit>) {
        self.stats.no_socket += self.held.drain().map(|(_, r)| r.len() as u64).sum::<u64>();
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
            addrs: None,
            socket_set: false,
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
    fn resolver(pid: u32, fd: i32, _: Addrs) -> Option<SocketInfo> {
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
        assert_eq!((st.records, st.unresolved, st.flows), (2, 1, 0));
        // The first is held for its socket, which never shows.
        assert_eq!(st.no_socket, 0);
        s.sweep(HELD_NS + 2_000, u64::MAX, &mut out);
        assert_eq!(s.stats().no_socket, 1);
    }

    /// A server's handshake read took the first request too: its first
    /// `SSL_read` is served from the buffer (no syscall, no socket). The
    /// record waits for the answer's write, which shows the socket.
    #[test]
    fn a_read_before_the_socket_shows_is_held_for_it() {
        let mut s = Streams::with_resolver(Arc::new(DissectConfig::default()), resolver);
        let mut out = Vec::new();
        s.record(
            &record(9, None, false, b"GET /early HTTP/1.1\r\n\r\n"),
            &mut out,
        );
        s.record(
            &record(
                9,
                Some(4),
                true,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            ),
            &mut out,
        );
        s.finish(2_000, &mut out);
        let es = entries(out);
        assert_eq!(es.len(), 1, "{es:?}");
        assert_eq!(tap_dissect::GenericFields::path(&es[0]), Some("/early"));
        assert_eq!(tap_dissect::GenericFields::status(&es[0]), Some(200));
        let st = s.stats();
        assert_eq!((st.records, st.no_socket), (2, 0));
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

    /// Both ends of one connection on this node: one entry, from the
    /// server's end though the client's came first; the connection is noted as decrypted, so the packets'
    /// `tcp` entry for it is not reported.
    #[test]
    fn a_connection_seen_from_both_ends_gives_one_entry() {
        let mut s = Streams::with_resolver(Arc::new(DissectConfig::default()), resolver);
        let decrypted = Arc::new(Decrypted::default());
        s.note_decrypted(decrypted.clone());
        let mut out = Vec::new();
        let req = b"GET /both HTTP/1.1\r\n\r\n";
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        s.record(&record(7, Some(5), true, req), &mut out);
        s.record(&record(9, Some(4), false, req), &mut out);
        s.record(&record(9, Some(4), true, resp), &mut out);
        s.record(&record(7, Some(5), false, resp), &mut out);
        s.finish(2_000, &mut out);
        let es = entries(out);
        assert_eq!(es.len(), 1, "{es:?}");
        assert_eq!(es[0].flow_id, ID_BASE | 2, "the server's flow: {es:?}");
        assert_eq!(s.stats().mirrored, 1);
        let mut tcp = proto::v1::Entry {
            protocol: Protocol::Tcp as i32,
            src: Some(proto::v1::Endpoint {
                ip: "10.1.0.5".into(),
                port: 40000,
                ..Default::default()
            }),
            dst: Some(proto::v1::Endpoint {
                ip: "10.1.1.7".into(),
                port: 443,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(decrypted.replaces(&tcp));
        tcp.dst.as_mut().unwrap().port = 444;
        assert!(!decrypted.replaces(&tcp));
        assert!(
            !decrypted.replaces(&es[0]),
            "the plaintext's own entry stays"
        );
        assert_eq!(decrypted.replaced(), 1);
    }

    /// The process freed a connection object and the next connection got
    /// the same memory (the same `SSL *`) and the same socket number; its
    /// first read came from the handshake's buffer (no syscall). The
    /// `SSL_set_fd` of the new connection tells them apart.
    #[test]
    fn a_reused_object_on_a_reused_socket_is_told_apart_by_set_fd() {
        let mut s = Streams::with_resolver(Arc::new(DissectConfig::default()), |_, _, a: Addrs| {
            let (local, remote) = a?;
            Some(SocketInfo {
                local,
                remote,
                server_side: true,
            })
        });
        let mut out = Vec::new();
        let server: SocketAddr = SERVER.parse().unwrap();
        for (port, path) in [(40001, "/first"), (40002, "/second")] {
            let addrs = Some((server, SocketAddr::new([10, 1, 0, 5].into(), port)));
            let mut set = record(9, Some(4), false, b"");
            (set.socket_set, set.addrs, set.total) = (true, addrs, 0);
            s.record(&set, &mut out);
            let read = record(
                9,
                None,
                false,
                format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes(),
            );
            s.record(&read, &mut out);
            let mut write = record(
                9,
                Some(4),
                true,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            );
            write.addrs = addrs;
            s.record(&write, &mut out);
        }
        s.finish(2_000, &mut out);
        let es = entries(out);
        assert_eq!(es.len(), 2, "{es:?}");
        let ports: Vec<u32> = es.iter().map(|e| e.src.as_ref().unwrap().port).collect();
        assert_eq!(ports, [40001, 40002], "{es:?}");
        assert_eq!(tap_dissect::GenericFields::path(&es[1]), Some("/second"));
        assert_eq!(s.stats().records, 4, "set_fd is no call: {:?}", s.stats());
    }

    /// Made packets: a handshake, the plaintext as segments with running
    /// sequence numbers on the connection's addresses, FINs; what tshark
    /// reads back is the plaintext.
    #[test]
    fn plaintext_is_made_into_tcp_packets_on_the_connections_addresses() {
        let mut s = Streams::with_resolver(Arc::new(DissectConfig::default()), resolver);
        s.make_packets();
        let mut out = Vec::new();
        let req = b"GET /made HTTP/1.1\r\n\r\n";
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        s.record(&record(7, Some(5), true, req), &mut out);
        s.record(&record(7, Some(5), false, resp), &mut out);
        s.finish(2_000, &mut out);
        let made = s.take_packets();
        assert_eq!(made.len(), 3 + 2 + 2, "{made:?}");
        let tcp = |p: &MadePacket| {
            let sliced = etherparse::SlicedPacket::from_ip(&p.data).unwrap();
            let Some(etherparse::TransportSlice::Tcp(t)) = sliced.transport else {
                panic!("no tcp: {p:?}");
            };
            (
                t.source_port(),
                t.destination_port(),
                t.sequence_number(),
                t.acknowledgment_number(),
                t.syn(),
                t.fin(),
                t.payload().to_vec(),
            )
        };
        assert_eq!(tcp(&made[0]), (40000, 443, 1, 0, true, false, vec![]));
        assert_eq!(tcp(&made[1]), (443, 40000, 1, 2, true, false, vec![]));
        assert_eq!(
            tcp(&made[3]),
            (40000, 443, 2, 2, false, false, req.to_vec())
        );
        let answer = 2 + req.len() as u32;
        assert_eq!(
            tcp(&made[4]),
            (443, 40000, 2, answer, false, false, resp.to_vec())
        );
        assert!(tcp(&made[5]).5 && tcp(&made[6]).5, "FINs");
        assert!(made.iter().all(|p| p.flow == ID_BASE | 1));
    }

    /// Pods targeted: a connection between two other addresses is not
    /// dissected (and counted); one with a target pod at either end is.
    #[test]
    fn with_target_pods_only_their_connections_are_dissected() {
        let mut s = Streams::with_resolver(Arc::new(DissectConfig::default()), resolver);
        let pod = |ip: &str| crate::pods::TargetPod {
            name: "web".into(),
            namespace: "shop".into(),
            ips: vec![ip.parse().unwrap()],
            node: None,
        };
        let mut out = Vec::new();
        s.set_targets(Some(crate::pods::Names::new(&[pod("10.9.9.9")])));
        s.record(
            &record(7, Some(5), true, b"GET /other HTTP/1.1\r\n\r\n"),
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
        s.finish(2_000, &mut out);
        assert!(entries(std::mem::take(&mut out)).is_empty());
        assert_eq!(s.stats().untargeted, 1);
        s.set_targets(Some(crate::pods::Names::new(&[pod("10.1.1.7")])));
        s.record(
            &record(7, Some(5), true, b"GET /web HTTP/1.1\r\n\r\n"),
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
        s.finish(3_000, &mut out);
        let es = entries(out);
        assert_eq!(es.len(), 1, "{es:?}");
        assert_eq!(tap_dissect::GenericFields::path(&es[0]), Some("/web"));
    }

    /// A client that exits: its connection's entry comes at once (an
    /// HTTP/1.0 answer ends with the connection), not when it goes idle.
    #[test]
    fn a_process_that_exits_closes_its_flows() {
        let mut s = Streams::with_resolver(Arc::new(DissectConfig::default()), resolver);
        let mut out = Vec::new();
        s.record(
            &record(7, Some(5), true, b"GET /bye HTTP/1.0\r\n\r\n"),
            &mut out,
        );
        s.record(
            &record(7, Some(5), false, b"HTTP/1.0 200 ok\r\n\r\nuntil the end"),
            &mut out,
        );
        assert!(entries(std::mem::take(&mut out)).is_empty());
        s.process_exited(7, 2_000, &mut out);
        let es = entries(out);
        assert_eq!(es.len(), 1, "{es:?}");
        assert_eq!(tap_dissect::GenericFields::path(&es[0]), Some("/bye"));
        assert!(s.flows.is_empty());
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
