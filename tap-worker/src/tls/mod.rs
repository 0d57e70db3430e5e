//! TLS plaintext from eBPF uprobes: loads tap-ebpf's programs (embedded at
//! build time), hooks a TLS library's read and write functions, and reads
//! what they moved, with the process, thread and socket of each call.
//!
//! - [`TlsProbes::load`] loads the programs and attaches the syscall
//!   tracepoints that tell each call's socket (tracefs is mounted at
//!   `/sys/kernel/tracing` first when it is not: the kernel's tracepoints
//!   are found there). No kprobes are used.
//! - [`TlsProbes::attach`] hooks `SSL_write`, `SSL_read`, `SSL_write_ex`,
//!   `SSL_read_ex` in one library file (OpenSSL 1.1 and 3, BoringSSL): an
//!   entry and a return probe each, for every process that maps the file.
//! - [`TlsProbes::attach_go`] hooks a Go binary's `crypto/tls.(*Conn).Write`
//!   and `Read` ([`go`] finds them): an entry probe each and one on each of
//!   their `ret` instructions, carrying the binary's struct offsets.
//! - [`TlsProbes::poll`] hands over the events; [`TlsProbes::lost`] counts
//!   what the kernel side could not send, by cause.
//!
//! - [`socket_of`] resolves a call's socket to its TCP connection, and
//!   [`streams::Streams`] turns the records into flows dissected as
//!   captured packets are, their entries marked `tls`.
//!
//! - [`discovery`] finds the processes that map a TLS library or run a Go
//!   binary with crypto/tls and hooks each file once, unhooking it with its
//!   last user;
//!   [`source::TlsSource`] runs all of it on a thread of its own, as the
//!   driver's second source (`--tls`).

pub mod btf;
pub mod discovery;
pub mod go;
pub mod linked;
pub mod source;
pub mod streams;

use aya::Ebpf;
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::uprobe::{
    UProbeAttachLocation, UProbeAttachPoint, UProbeError, UProbeLinkId, UProbeScope,
};
use aya::programs::{ProgramError, TracePoint, UProbe};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tap_ebpf_common::{CHUNK, SocketAddrs, TlsEvent};

/// tap-ebpf's object file, built by this crate's build script.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tap-ebpf"));

/// The TLS functions hooked, each with its entry program; one return
/// program serves all of them.
const FUNCTIONS: [(&str, &str); 4] = [
    ("SSL_write", "tap_ssl_write"),
    ("SSL_read", "tap_ssl_read"),
    ("SSL_write_ex", "tap_ssl_write_ex"),
    ("SSL_read_ex", "tap_ssl_read_ex"),
];
const RETURN: &str = "tap_ssl_return";
/// `SSL_set_fd`: an entry probe alone (a new connection's socket).
const SET_FD: (&str, &str) = ("SSL_set_fd", "tap_ssl_set_fd");
const SYSCALL_FD: &str = "tap_syscall_fd";
/// Go's `(*Conn).Write` and `Read` entries (as `go::FUNCTIONS`), and the
/// program on each of their `ret`s.
const GO_ENTRIES: [&str; 2] = ["tap_go_write", "tap_go_read"];
const GO_RETURN: &str = "tap_go_return";
/// Process starts and exits, for discovery.
const PROCESS_TRACEPOINTS: [(&str, &str); 2] = [
    ("tap_process_exec", "sched_process_exec"),
    ("tap_process_exit", "sched_process_exit"),
];

/// The syscalls a TLS library reads and writes its socket with; each
/// tracepoint's `fd` is the program's first argument (checked in its format).
const SYSCALLS: [&str; 8] = [
    "sys_enter_write",
    "sys_enter_read",
    "sys_enter_sendto",
    "sys_enter_recvfrom",
    "sys_enter_sendmsg",
    "sys_enter_recvmsg",
    "sys_enter_writev",
    "sys_enter_readv",
];
const TRACEFS: &str = "/sys/kernel/tracing";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "loading the TLS eBPF programs: {0} (needs root, or CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN and CAP_SYS_PTRACE, and Linux 5.8 or later for ring buffers)"
    )]
    Load(#[source] aya::EbpfError),
    #[error(
        "this process lacks {0}; run as root or grant them (securityContext.capabilities.add: [BPF, PERFMON, SYS_ADMIN, SYS_PTRACE])"
    )]
    Privileges(String),
    #[error("{}: cannot read it: {error}{}", .path.display(), unreadable_hint(.error))]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("TLS eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("TLS eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("the TLS eBPF object has no {0}: it does not match this kubetap")]
    Missing(&'static str),
    #[error(
        "tracefs is not mounted at {TRACEFS} and mounting it failed ({0}): the syscall tracepoints that tell a TLS call's socket are found there"
    )]
    Tracefs(String),
    #[error("tracepoint syscalls/{name}: {why}")]
    Format { name: &'static str, why: String },
    #[error("starting the TLS thread: {0}")]
    Thread(String),
    #[error("{}: none of SSL_read, SSL_write, SSL_read_ex, SSL_write_ex to hook", .0.display())]
    NoFunctions(PathBuf),
}

/// One TLS read or write, as the probes saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRecord {
    /// Monotonic nanoseconds since boot (`CLOCK_MONOTONIC`).
    pub mono_ns: u64,
    /// The library's connection object: the same for every call on one
    /// TLS connection of a process.
    pub ssl: u64,
    pub pid: u32,
    pub tid: u32,
    /// The socket of the call, when a syscall showed it.
    pub fd: Option<i32>,
    pub egress: bool,
    /// Bytes the call moved; `data` holds the first `CHUNK` of them.
    pub total: u32,
    /// The socket's (local, remote) addresses, when the kernel read them
    /// during the call.
    pub addrs: Option<(SocketAddr, SocketAddr)>,
    /// Not a read or write: the connection object was given socket `fd`
    /// (`SSL_set_fd`), a new connection.
    pub socket_set: bool,
    pub data: Vec<u8>,
}

/// What the kernel side could not send, by cause.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    /// The ring buffer was full (user space fell behind).
    pub ring_full: u64,
    /// The caller's buffer could not be read (paged out).
    pub unreadable: u64,
    /// Too many calls in progress at once to remember one more.
    pub calls_full: u64,
    /// Process starts or exits not sent (their ring was full); discovery's
    /// periodic scan finds what they would have said.
    pub procs_full: u64,
}

/// A process started a program or exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessEvent {
    Exec(u32),
    Exit(u32),
}

pub struct TlsProbes {
    ebpf: Ebpf,
    /// Why the kernel programs cannot read socket addresses themselves
    /// (sockets are then resolved from /proc).
    no_socket_walk: Option<String>,
    events: RingBuf<MapData>,
    procs: RingBuf<MapData>,
    /// The target pods' addresses, for the kernel programs (see
    /// [`set_scope`](Self::set_scope)).
    scope: aya::maps::HashMap<MapData, [u8; 16], u8>,
    /// The addresses in `scope` now (`None`: no scope, every call).
    scoped: Option<std::collections::BTreeSet<[u8; 16]>>,
    /// The kernel programs' own log lines (aya-log: the first loss of each
    /// cause on a CPU), into the worker's log; kept open while they run.
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Library files hooked, with their probes' links.
    attached: Vec<Hooked>,
}

/// One library file's probes: each program's link, to detach them.
struct Hooked {
    library: PathBuf,
    /// The functions hooked (for OpenSSL, of those counted, the ones before
    /// `counted`: `SSL_set_fd` is not essential).
    functions: Vec<&'static str>,
    counted: usize,
    links: Vec<(&'static str, UProbeLinkId)>,
}

impl TlsProbes {
    /// Loads the programs and attaches the syscall tracepoints; first says
    /// which capabilities are missing, if any
    /// ([`privileges::TLS`](crate::privileges::TLS)).
    pub fn load() -> Result<TlsProbes, TlsError> {
        Self::load_object(PROGRAMS)
    }

    /// The eBPF object built into this binary, which [`load`](Self::load)
    /// loads.
    #[doc(hidden)]
    pub fn embedded_object() -> &'static [u8] {
        PROGRAMS
    }

    /// [`load`](Self::load) with another build of the programs: tests hand
    /// it a damaged copy to see the kernel's refusal reported.
    #[doc(hidden)]
    pub fn load_object(object: &[u8]) -> Result<TlsProbes, TlsError> {
        let lacking = crate::privileges::missing(crate::privileges::TLS);
        if !lacking.is_empty() {
            return Err(TlsError::Privileges(crate::privileges::describe(&lacking)));
        }
        ensure_tracefs()?;
        let (offsets, no_socket_walk) = match btf::kernel_offsets() {
            Ok(o) => (o, None),
            Err(why) => (tap_ebpf_common::KernelOffsets::default(), Some(why)),
        };
        let mut ebpf = aya::EbpfLoader::new()
            .override_global("OFFSETS", &offsets, true)
            .load(object)
            .map_err(TlsError::Load)?;
        for name in FUNCTIONS
            .iter()
            .map(|f| f.1)
            .chain([RETURN, SET_FD.1, GO_RETURN])
            .chain(GO_ENTRIES)
        {
            uprobe(&mut ebpf, name)?
                .load()
                .map_err(|source| TlsError::Program { name, source })?;
        }
        let tp: &mut TracePoint = ebpf
            .program_mut(SYSCALL_FD)
            .ok_or(TlsError::Missing(SYSCALL_FD))?
            .try_into()
            .map_err(|source| TlsError::Program {
                name: SYSCALL_FD,
                source,
            })?;
        tp.load().map_err(|source| TlsError::Program {
            name: SYSCALL_FD,
            source,
        })?;
        for name in SYSCALLS {
            check_fd_field(name)?;
            tp.attach("syscalls", name)
                .map_err(|source| TlsError::Program {
                    name: SYSCALL_FD,
                    source,
                })?;
        }
        for (program, event) in PROCESS_TRACEPOINTS {
            let tp: &mut TracePoint = ebpf
                .program_mut(program)
                .ok_or(TlsError::Missing(program))?
                .try_into()
                .map_err(|source| TlsError::Program {
                    name: program,
                    source,
                })?;
            tp.load().map_err(|source| TlsError::Program {
                name: program,
                source,
            })?;
            tp.attach("sched", event)
                .map_err(|source| TlsError::Program {
                    name: program,
                    source,
                })?;
        }
        let mut ring = |name: &'static str| {
            let map = ebpf.take_map(name).ok_or(TlsError::Missing(name))?;
            RingBuf::try_from(map).map_err(|source| TlsError::Map { name, source })
        };
        let events = ring("EVENTS")?;
        let procs = ring("PROCS")?;
        // Their log is a help, not a need: without it the losses are still
        // counted.
        let logger = aya_log::EbpfLogger::init(&mut ebpf)
            .inspect_err(|e| tracing::warn!("the TLS programs' log is not read: {e}"))
            .ok();
        let scope =
            aya::maps::HashMap::try_from(ebpf.take_map("SCOPE").ok_or(TlsError::Missing("SCOPE"))?)
                .map_err(|source| TlsError::Map {
                    name: "SCOPE",
                    source,
                })?;
        Ok(TlsProbes {
            ebpf,
            no_socket_walk,
            events,
            procs,
            scope,
            scoped: None,
            logger,
            attached: Vec::new(),
        })
    }

    /// Hooks the TLS functions `library` (a shared object or an executable
    /// with OpenSSL linked in) exports, for every process that maps it;
    /// returns how many it has. Hooking a file twice does nothing more.
    pub fn attach(&mut self, library: &Path) -> Result<usize, TlsError> {
        if let Some(h) = self.attached.iter().find(|h| h.library == library) {
            return Ok(h.counted);
        }
        // The probes' symbol lookup takes a file it cannot read for one
        // without the symbols: an unreadable file is said here.
        if let Err(error) = std::fs::File::open(library) {
            return Err(TlsError::Unreadable {
                path: library.to_path_buf(),
                error,
            });
        }
        let mut hooked = Hooked {
            library: library.to_path_buf(),
            functions: Vec::new(),
            counted: 0,
            links: Vec::new(),
        };
        let result = self.hook(library, &mut hooked);
        if hooked.counted == 0 || result.is_err() {
            // Nothing half-attached stays behind.
            self.unhook(hooked);
            result?;
            return Err(TlsError::NoFunctions(library.to_path_buf()));
        }
        let n = hooked.counted;
        self.attached.push(hooked);
        Ok(n)
    }

    /// Hooks the crypto/tls functions of the Go binary `binary`, as
    /// [`go::inspect`] found them, for every process running it: an entry
    /// probe on each (its cookie the binary's struct offsets) and a probe
    /// on each `ret`. All or nothing; returns how many functions.
    pub fn attach_go(&mut self, binary: &Path, go: &go::GoBinary) -> Result<usize, TlsError> {
        if let Some(h) = self.attached.iter().find(|h| h.library == binary) {
            return Ok(h.counted);
        }
        let mut hooked = Hooked {
            library: binary.to_path_buf(),
            functions: Vec::new(),
            counted: 0,
            links: Vec::new(),
        };
        match self.hook_go(binary, go, &mut hooked) {
            Ok(()) => {
                let n = hooked.counted;
                self.attached.push(hooked);
                Ok(n)
            }
            Err(e) => {
                self.unhook(hooked);
                Err(e)
            }
        }
    }

    fn hook_go(
        &mut self,
        binary: &Path,
        go: &go::GoBinary,
        hooked: &mut Hooked,
    ) -> Result<(), TlsError> {
        let cookie = go.offsets.cookie();
        for f in &go.functions {
            let entry = go::FUNCTIONS
                .iter()
                .position(|n| *n == f.name)
                .map(|i| GO_ENTRIES[i])
                .ok_or(TlsError::Missing("a Go function's entry program"))?;
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(f.entry),
                cookie: Some(cookie),
            };
            let link = uprobe(&mut self.ebpf, entry)?
                .attach(point, binary, UProbeScope::AllProcesses)
                .map_err(|source| TlsError::Program {
                    name: entry,
                    source,
                })?;
            hooked.links.push((entry, link));
            for ret in &f.rets {
                let link = uprobe(&mut self.ebpf, GO_RETURN)?
                    .attach(
                        UProbeAttachLocation::AbsoluteOffset(*ret),
                        binary,
                        UProbeScope::AllProcesses,
                    )
                    .map_err(|source| TlsError::Program {
                        name: GO_RETURN,
                        source,
                    })?;
                hooked.links.push((GO_RETURN, link));
            }
            hooked.functions.push(f.name);
            hooked.counted += 1;
        }
        Ok(())
    }

    /// Attaches an entry and a return probe to each function `library` has.
    fn hook(&mut self, library: &Path, hooked: &mut Hooked) -> Result<(), TlsError> {
        for (function, entry) in FUNCTIONS {
            match uprobe(&mut self.ebpf, entry)?.attach(
                function,
                library,
                UProbeScope::AllProcesses,
            ) {
                Ok(link) => hooked.links.push((entry, link)),
                // Not every library has every function (1.0 has no `_ex`).
                Err(ProgramError::UProbeError(UProbeError::SymbolError { .. })) => continue,
                Err(source) => {
                    return Err(TlsError::Program {
                        name: entry,
                        source,
                    });
                }
            }
            let link = uprobe(&mut self.ebpf, RETURN)?
                .attach(function, library, UProbeScope::AllProcesses)
                .map_err(|source| TlsError::Program {
                    name: RETURN,
                    source,
                })?;
            hooked.links.push((RETURN, link));
            hooked.functions.push(function);
            hooked.counted += 1;
        }
        // Not essential (BIO-based programs never call it), so not counted.
        match uprobe(&mut self.ebpf, SET_FD.1)?.attach(SET_FD.0, library, UProbeScope::AllProcesses)
        {
            Ok(link) => {
                hooked.links.push((SET_FD.1, link));
                hooked.functions.push(SET_FD.0);
            }
            Err(ProgramError::UProbeError(UProbeError::SymbolError { .. })) => {}
            Err(source) => {
                return Err(TlsError::Program {
                    name: SET_FD.1,
                    source,
                });
            }
        }
        Ok(())
    }

    /// Removes the probes of `library` (its last user exited); whether it
    /// was hooked.
    pub fn detach(&mut self, library: &Path) -> bool {
        let Some(at) = self.attached.iter().position(|h| h.library == library) else {
            return false;
        };
        let hooked = self.attached.swap_remove(at);
        self.unhook(hooked);
        true
    }

    fn unhook(&mut self, hooked: Hooked) {
        for (program, link) in hooked.links {
            if let Ok(p) = uprobe(&mut self.ebpf, program)
                && let Err(e) = p.detach(link)
            {
                tracing::warn!(
                    library = %hooked.library.display(),
                    program,
                    "detaching a TLS probe: {e}"
                );
            }
        }
    }

    /// Reads only the TLS calls on connections with an end at one of these
    /// addresses (the target pods'), or every call (`None`): the kernel
    /// programs drop the others before reading their bytes. Connections
    /// whose socket the kernel cannot tell are still read; user space then
    /// drops what is out of scope (`untargeted_connections`).
    pub fn set_scope(&mut self, targets: Option<&std::collections::BTreeSet<IpAddr>>) {
        use tap_ebpf_common::{SCOPE_SET, scope_key};
        let keys = targets.map(|t| {
            t.iter()
                .map(|ip| match ip.to_canonical() {
                    IpAddr::V4(v4) => {
                        let mut k = [0; 16];
                        k[..4].copy_from_slice(&v4.octets());
                        k
                    }
                    IpAddr::V6(v6) => scope_key(10, &v6.octets()),
                })
                .collect::<std::collections::BTreeSet<_>>()
        });
        if self.scoped == keys {
            return;
        }
        let old = self.scoped.take().unwrap_or_default();
        let new = keys.clone().unwrap_or_default();
        let map = &mut self.scope;
        let mut failed = false;
        // The marker goes first when the scope ends and last when it
        // starts, and addresses are added before others are removed, so
        // no moment reads less than both scopes would.
        if keys.is_none() {
            failed |= map.remove(&SCOPE_SET).is_err();
        }
        for added in new.difference(&old) {
            failed |= map.insert(added, 1, 0).is_err();
        }
        for gone in old.difference(&new) {
            failed |= map.remove(gone).is_err();
        }
        if keys.is_some() {
            failed |= map.insert(SCOPE_SET, 1, 0).is_err();
        }
        if failed {
            tracing::warn!(
                addresses = new.len(),
                "the kernel's pod scope could not be written whole (more than {} addresses?)",
                tap_ebpf_common::SCOPE_MAX
            );
        }
        self.scoped = keys;
    }

    /// Why sockets are resolved from /proc rather than in the kernel.
    pub fn no_socket_walk(&self) -> Option<&str> {
        self.no_socket_walk.as_deref()
    }

    /// The functions hooked in `library` (or Go binary).
    pub fn functions_of(&self, library: &Path) -> Vec<&'static str> {
        self.attached
            .iter()
            .find(|h| h.library == library)
            .map(|h| h.functions.clone())
            .unwrap_or_default()
    }

    /// The library files hooked so far.
    pub fn attached(&self) -> impl Iterator<Item = &Path> {
        self.attached.iter().map(|h| h.library.as_path())
    }

    /// Hands every waiting TLS record to `f` and process start or exit to
    /// `p`, first waiting up to `timeout` for one; returns how many records
    /// there were.
    pub fn poll(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(TlsRecord),
        mut p: impl FnMut(ProcessEvent),
    ) -> usize {
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
        let procs = drain_procs(&mut self.procs, &mut p);
        let mut n = drain(&mut self.events, &mut f);
        if n == 0 && procs == 0 && !timeout.is_zero() {
            let ts =
                rustix::event::Timespec::try_from(timeout).unwrap_or(rustix::event::Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                });
            let (events, procs_fd) = (self.events.as_fd(), self.procs.as_fd());
            let mut fds = [
                rustix::event::PollFd::new(&events, rustix::event::PollFlags::IN),
                rustix::event::PollFd::new(&procs_fd, rustix::event::PollFlags::IN),
            ];
            // An interrupted or failed wait just finds nothing new.
            let _ = rustix::event::poll(&mut fds, Some(&ts));
            drain_procs(&mut self.procs, &mut p);
            n = drain(&mut self.events, &mut f);
        }
        n
    }

    /// What the kernel side could not send so far.
    pub fn lost(&self) -> Lost {
        let Some(map) = self.ebpf.map("LOST") else {
            return Lost::default();
        };
        let Ok(lost) = PerCpuArray::<_, u64>::try_from(map) else {
            return Lost::default();
        };
        let sum = |i: u32| {
            lost.get(&i, 0)
                .map(|per_cpu| per_cpu.iter().sum())
                .unwrap_or(0)
        };
        Lost {
            ring_full: sum(0),
            unreadable: sum(1),
            calls_full: sum(2),
            procs_full: sum(3),
        }
    }
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut UProbe, TlsError> {
    ebpf.program_mut(name)
        .ok_or(TlsError::Missing(name))?
        .try_into()
        .map_err(|source| TlsError::Program { name, source })
}

fn drain(events: &mut RingBuf<MapData>, f: &mut impl FnMut(TlsRecord)) -> usize {
    let mut n = 0;
    while let Some(item) = events.next() {
        if let Some(record) = parse(&item) {
            f(record);
            n += 1;
        }
    }
    n
}

fn drain_procs(procs: &mut RingBuf<MapData>, p: &mut impl FnMut(ProcessEvent)) -> usize {
    let mut n = 0;
    while let Some(item) = procs.next() {
        let word = |o: usize| {
            item.get(o..o + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
        };
        use std::mem::offset_of;
        use tap_ebpf_common::{PROC_EXEC, PROC_EXIT, ProcEvent};
        match (
            word(offset_of!(ProcEvent, pid)),
            word(offset_of!(ProcEvent, kind)),
        ) {
            (Some(pid), Some(PROC_EXEC)) => p(ProcessEvent::Exec(pid)),
            (Some(pid), Some(PROC_EXIT)) => p(ProcessEvent::Exit(pid)),
            _ => continue,
        }
        n += 1;
    }
    n
}

/// A `TlsEvent` from the ring's bytes, read field by field (no unsafe cast).
fn parse(b: &[u8]) -> Option<TlsRecord> {
    use std::mem::offset_of;
    let u32_at = |o: usize| Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let mono_ns = u64::from_ne_bytes(b.get(..8)?.try_into().ok()?);
    let fd = u32_at(offset_of!(TlsEvent, fd))? as i32;
    let total = u32_at(offset_of!(TlsEvent, total))?;
    let direction = *b.get(offset_of!(TlsEvent, direction))?;
    let socket_set = direction == tap_ebpf_common::SET_FD;
    let len = if socket_set {
        0
    } else {
        (u32_at(offset_of!(TlsEvent, len))? as usize).min(CHUNK)
    };
    let at = offset_of!(TlsEvent, data);
    let sock = offset_of!(TlsEvent, socket);
    let addrs = socket_addrs(b.get(sock..sock + std::mem::size_of::<SocketAddrs>())?);
    Some(TlsRecord {
        mono_ns,
        ssl: u64::from_ne_bytes(
            b.get(offset_of!(TlsEvent, ssl)..offset_of!(TlsEvent, ssl) + 8)?
                .try_into()
                .ok()?,
        ),
        pid: u32_at(offset_of!(TlsEvent, pid))?,
        tid: u32_at(offset_of!(TlsEvent, tid))?,
        fd: (fd >= 0).then_some(fd),
        egress: direction == tap_ebpf_common::EGRESS,
        total,
        addrs,
        socket_set,
        data: if socket_set {
            Vec::new()
        } else {
            b.get(at..at + len)?.to_vec()
        },
    })
}

/// The addresses the kernel read (`SocketAddrs`), when it read them.
fn socket_addrs(b: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    use std::mem::offset_of;
    let u16_at = |o: usize| Some(u16::from_ne_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let family = u16_at(offset_of!(SocketAddrs, family))?;
    let local_port = u16_at(offset_of!(SocketAddrs, local_port))?;
    let remote_port = u16::from_be(u16_at(offset_of!(SocketAddrs, remote_port_be))?);
    let addr = |o: usize| -> Option<[u8; 16]> { b.get(o..o + 16)?.try_into().ok() };
    let (l, r) = (
        addr(offset_of!(SocketAddrs, local))?,
        addr(offset_of!(SocketAddrs, remote))?,
    );
    let ip = |a: [u8; 16]| -> Option<IpAddr> {
        match family {
            2 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            10 => Some(Ipv6Addr::from(a).to_canonical()),
            _ => None,
        }
    };
    Some((
        SocketAddr::new(ip(l)?, local_port),
        SocketAddr::new(ip(r)?, remote_port),
    ))
}

/// Why a library may be unreadable: another process's files are reached
/// through `/proc/<pid>/root`, which needs CAP_SYS_PTRACE.
fn unreadable_hint(error: &std::io::Error) -> &'static str {
    if error.kind() == std::io::ErrorKind::PermissionDenied {
        " (reading another process's files through /proc/<pid>/root needs CAP_SYS_PTRACE)"
    } else {
        ""
    }
}

/// Mounts tracefs where the kernel's tracepoints are looked for, unless it
/// is there already.
fn ensure_tracefs() -> Result<(), TlsError> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    let out = std::process::Command::new("mount")
        .args(["-t", "tracefs", "nodev", TRACEFS])
        .output()
        .map_err(|e| TlsError::Tracefs(e.to_string()))?;
    if !out.status.success() {
        return Err(TlsError::Tracefs(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// The tracepoint's record has its `fd` where the program reads it.
fn check_fd_field(name: &'static str) -> Result<(), TlsError> {
    let path = Path::new(TRACEFS)
        .join("events/syscalls")
        .join(name)
        .join("format");
    let format = std::fs::read_to_string(&path).map_err(|e| TlsError::Format {
        name,
        why: format!("{}: {e}", path.display()),
    })?;
    let field = format
        .lines()
        .find(|l| l.contains(" fd;"))
        .ok_or_else(|| TlsError::Format {
            name,
            why: "no fd field".into(),
        })?;
    if field.contains("offset:16;") {
        Ok(())
    } else {
        Err(TlsError::Format {
            name,
            why: format!("fd is not at offset 16: {}", field.trim()),
        })
    }
}

/// The TCP connection behind a TLS call's socket, as the process sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketInfo {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The process listens on the local port: it is the connection's
    /// server, the remote end its client.
    pub server_side: bool,
}

/// The connection behind `fd` of process `pid`: the socket's inode
/// (`/proc/<pid>/fd/<fd>` is `socket:[inode]`) found in the TCP tables of
/// the process's network namespace (`/proc/<pid>/net/tcp`, `tcp6`). No
/// kprobes or per-kernel struct offsets; the process must still have the
/// socket open. `None` when it is not a TCP socket or is gone.
pub fn socket_of(pid: u32, fd: i32) -> Option<SocketInfo> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let inode: u64 = link
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    let mut rows = Vec::new();
    for table in ["tcp", "tcp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
            rows.extend(text.lines().skip(1).filter_map(tcp_row));
        }
    }
    let own = rows
        .iter()
        .find(|r| r.inode == inode && r.state != TCP_LISTEN)?;
    let server_side = rows
        .iter()
        .any(|r| r.state == TCP_LISTEN && r.local.port() == own.local.port());
    Some(SocketInfo {
        local: own.local,
        remote: own.remote,
        server_side,
    })
}

/// Which end of a connection the process is, from its local port: it
/// listens on it (in its network namespace's TCP tables), or, when the
/// tables cannot tell (the process is gone), the end whose port is not in
/// Linux's default ephemeral range is the server.
pub fn server_side(pid: u32, local: SocketAddr, remote: SocketAddr) -> bool {
    let mut listens = None;
    for table in ["tcp", "tcp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
            let rows = text.lines().skip(1).filter_map(tcp_row);
            let mut any = false;
            for r in rows {
                any = true;
                if r.state == TCP_LISTEN && r.local.port() == local.port() {
                    return true;
                }
            }
            listens = listens.or(any.then_some(false));
        }
    }
    if listens.is_some() {
        return false;
    }
    let ephemeral = |p: u16| (32768..=60999).contains(&p);
    match (ephemeral(local.port()), ephemeral(remote.port())) {
        (false, true) => true,
        (true, false) => false,
        _ => local.port() < remote.port(),
    }
}

/// `st` of a listening socket in /proc/net/tcp.
const TCP_LISTEN: u8 = 0x0a;

struct TcpRow {
    local: SocketAddr,
    remote: SocketAddr,
    state: u8,
    inode: u64,
}

/// One line of /proc/net/tcp or tcp6: `sl local rem st tx:rx tr:when
/// retrnsmt uid timeout inode …`, addresses as hex words in host order and
/// ports in hex.
fn tcp_row(line: &str) -> Option<TcpRow> {
    let f: Vec<&str> = line.split_whitespace().collect();
    Some(TcpRow {
        local: hex_addr(f.get(1)?)?,
        remote: hex_addr(f.get(2)?)?,
        state: u8::from_str_radix(f.get(3)?, 16).ok()?,
        inode: f.get(9)?.parse().ok()?,
    })
}

fn hex_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // Each 32-bit word as the kernel printed it: in host byte order.
    let word = |i: usize| {
        u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
            .ok()
            .map(u32::to_ne_bytes)
    };
    let ip: IpAddr = match ip.len() {
        8 => Ipv4Addr::from(word(0)?).into(),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(b);
            // A v4 peer of a dual-stack socket: shown as the v4 address.
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The TLS libraries process `pid` maps (`libssl.so…`), from its memory map.
pub fn libraries_of(pid: u32) -> Vec<PathBuf> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut out: Vec<PathBuf> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| {
            Path::new(p)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libssl.so"))
        })
        .map(PathBuf::from)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_field_by_field() {
        let mut b = vec![0u8; std::mem::offset_of!(TlsEvent, data) + 5];
        b[..8].copy_from_slice(&42u64.to_ne_bytes());
        let ssl = std::mem::offset_of!(TlsEvent, ssl);
        b[ssl..ssl + 8].copy_from_slice(&0x5000u64.to_ne_bytes());
        let put = |b: &mut Vec<u8>, o: usize, v: u32| b[o..o + 4].copy_from_slice(&v.to_ne_bytes());
        put(&mut b, std::mem::offset_of!(TlsEvent, pid), 7);
        put(&mut b, std::mem::offset_of!(TlsEvent, tid), 8);
        put(&mut b, std::mem::offset_of!(TlsEvent, fd), 5);
        b[std::mem::offset_of!(TlsEvent, direction)] = tap_ebpf_common::INGRESS;
        put(&mut b, std::mem::offset_of!(TlsEvent, total), 100);
        put(&mut b, std::mem::offset_of!(TlsEvent, len), 5);
        let at = std::mem::offset_of!(TlsEvent, data);
        b[at..].copy_from_slice(b"hello");
        assert_eq!(
            parse(&b),
            Some(TlsRecord {
                mono_ns: 42,
                ssl: 0x5000,
                pid: 7,
                tid: 8,
                fd: Some(5),
                egress: false,
                total: 100,
                addrs: None,
                socket_set: false,
                data: b"hello".to_vec(),
            })
        );
        // A length past the bytes there: not read beyond them.
        put(&mut b, std::mem::offset_of!(TlsEvent, len), 6);
        assert_eq!(parse(&b), None);
    }

    #[test]
    fn tcp_table_rows_read_as_the_kernel_prints_them() {
        // 127.0.0.1:8443 <- 127.0.0.1:40000, established; a listener on :8443.
        let v4 = "   1: 0100007F:20FB 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1";
        let r = tcp_row(v4).unwrap();
        assert_eq!(r.local, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(r.remote, "127.0.0.1:40000".parse().unwrap());
        assert_eq!((r.state, r.inode), (1, 4242));
        // ::ffff:10.1.2.3 (a v4 peer of a v6 socket) and ::1.
        let v6 = "   0: 0000000000000000FFFF00000302010A:01BB 00000000000000000000000001000000:C350 0A 00000000:00000000 00:00000000 00000000     0        0 77 1";
        let r = tcp_row(v6).unwrap();
        assert_eq!(r.local, "10.1.2.3:443".parse().unwrap());
        assert_eq!(r.remote, "[::1]:50000".parse().unwrap());
        assert_eq!(r.state, TCP_LISTEN);
        assert!(tcp_row("  sl  local_address rem_address   st").is_none());
    }
}
