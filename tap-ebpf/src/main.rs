//! kubetap's kernel programs: the plaintext OpenSSL (libssl 1.1 and 3, and
//! BoringSSL where the symbols match) and Go's crypto/tls read and write,
//! taken where the library hands it over, with the socket the call used.
//!
//! - Entry uprobes on `SSL_write`, `SSL_read`, `SSL_write_ex`, `SSL_read_ex`
//!   keep the caller's buffer (and, for the `_ex` forms, where the byte
//!   count goes) per thread in `CALLS`.
//! - The syscall tracepoints the call makes on the same thread (`read`,
//!   `write`, `sendto`, `recvfrom`, …, attached by user space) note its
//!   socket: no per-version OpenSSL struct offsets, no kprobes. There the
//!   socket's addresses are read too (task → files → fdtable → file →
//!   socket → sock, with the kernel's struct offsets that user space found
//!   in its BTF and put in `OFFSETS`), so a connection closed right after
//!   its last call is still joined to its addresses.
//! - One return uprobe, on all four, reads the bytes the call moved into a
//!   `TlsEvent` (built in a per-CPU scratch slot, cut to `CHUNK`) and puts
//!   its used part in the `EVENTS` ring buffer. What cannot be
//!   sent is counted in `LOST` by cause.
//! - Go (amd64, register ABI of Go 1.17+): an entry uprobe on
//!   `crypto/tls.(*Conn).Write` and `Read` (RAX the `*tls.Conn`, RBX and
//!   RCX the buffer) and a uprobe on each of their `ret` instructions (RAX
//!   the bytes moved), never a return probe: uretprobes rewrite the return
//!   address on the goroutine's stack, which Go moves when it grows. A
//!   call is kept by goroutine (R14 holds `g`) in `GO_CALLS`: a goroutine
//!   parked in `Read` may come back on another thread. The socket number
//!   is read at entry from the `tls.Conn` (its `net.Conn`'s `*TCPConn` →
//!   `netFD` → `poll.FD.Sysfd`), with the binary's offsets as the probe's
//!   attach cookie, and its addresses by the same socket walk; the event
//!   is OpenSSL's `TlsEvent` (`ssl` the `*tls.Conn`).
//! - With pods targeted, user space lists their addresses in `SCOPE`: a
//!   call on a connection with neither end among them is dropped before
//!   its bytes are read (`OBJECTS` keeps each connection object's last
//!   addresses for calls that make no syscall).
//! - Tracepoints on `sched_process_exec` and `sched_process_exit` tell user
//!   space, through `PROCS`, which processes to look at for TLS libraries
//!   and when a library's last user is gone.
//!
//! Built for `bpfel-unknown-none` by tap-worker's build script (aya-build);
//! on the host it compiles to an empty program, so the workspace's checks
//! cover it.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::EbpfContext;
use aya_ebpf::helpers::{
    bpf_get_attach_cookie, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns,
    bpf_probe_read_kernel, bpf_probe_read_user, bpf_probe_read_user_buf,
};
use aya_ebpf::macros::{map, tracepoint, uprobe, uretprobe};
use aya_ebpf::maps::{HashMap, LruHashMap, PerCpuArray, RingBuf};
use aya_ebpf::programs::{ProbeContext, RetProbeContext, TracePointContext};
use aya_log_ebpf::warn;
use tap_ebpf_common::{
    CHUNK, Call, EGRESS, GoCall, GoOffsets, INGRESS, KernelOffsets, ObjectKey, PROC_EXEC,
    PROC_EXIT, PROCS_BYTES, ProcEvent, RING_BYTES, SCOPE_MAX, SCOPE_SET, SET_FD, SetFdEvent,
    SocketAddrs, TlsEvent, scope_key,
};

/// The kernel's struct offsets for the socket walk, set by user space at
/// load time (`valid` 0: no walk).
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets {
    valid: 0,
    task_files: 0,
    files_fdt: 0,
    fdt_max_fds: 0,
    fdt_fd: 0,
    file_private_data: 0,
    socket_file: 0,
    socket_sk: 0,
    skc_family: 0,
    skc_num: 0,
    skc_dport: 0,
    skc_rcv_saddr: 0,
    skc_daddr: 0,
    skc_v6_rcv_saddr: 0,
    skc_v6_daddr: 0,
};

/// The target pods' addresses, when user space set `SCOPE_SET` (pods
/// targeted); see `in_scope`.
#[map]
static SCOPE: HashMap<[u8; 16], u8> = HashMap::with_max_entries(SCOPE_MAX, 0);

/// The socket addresses each connection object had last, for its calls
/// that make no syscall (served from the library's buffer). LRU: objects
/// are freed without a word to the kernel.
#[map]
static OBJECTS: LruHashMap<ObjectKey, SocketAddrs> = LruHashMap::with_max_entries(16 * 1024, 0);

/// Calls in progress, by thread (`pid_tgid`).
#[map]
static CALLS: HashMap<u64, Call> = HashMap::with_max_entries(16 * 1024, 0);

/// Go calls in progress, by goroutine. LRU: a goroutine that never
/// returns (it panicked through the call) leaves its entry to be evicted.
#[map]
static GO_CALLS: LruHashMap<GoCall, Call> = LruHashMap::with_max_entries(16 * 1024, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Where each CPU builds its event before the used part goes to `EVENTS`.
#[map]
static SCRATCH: PerCpuArray<TlsEvent> = PerCpuArray::with_max_entries(1, 0);
/// A `TlsEvent`'s bytes before its data.
const HEADER: usize = core::mem::offset_of!(TlsEvent, data);

#[map]
static PROCS: RingBuf = RingBuf::with_byte_size(PROCS_BYTES, 0);

/// Losses by cause, per CPU: `LOST_RING_FULL`, `LOST_READ`,
/// `LOST_CALLS_FULL`, `LOST_PROCS_FULL`.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(4, 0);
const LOST_RING_FULL: u32 = 0;
const LOST_READ: u32 = 1;
const LOST_CALLS_FULL: u32 = 2;
const LOST_PROCS_FULL: u32 = 3;

/// The `fd` argument of the `sys_enter_*` tracepoints: after the common
/// fields (8 bytes) and the syscall number (8 with its padding).
const SYSCALL_FD_OFFSET: usize = 16;

/// Counts a loss; the first of each cause on a CPU is also said in the
/// worker's log (aya-log), so the log shows when losses began and why
/// without a line per loss (the counts are in the worker's drops).
fn lose<C: EbpfContext>(ctx: &C, cause: u32) {
    let Some(n) = LOST.get_ptr_mut(cause) else {
        return;
    };
    // SAFETY: a per-CPU slot, written by this CPU alone.
    let first = unsafe {
        *n += 1;
        *n == 1
    };
    if !first {
        return;
    }
    match cause {
        LOST_RING_FULL => warn!(
            ctx,
            "TLS plaintext lost: the ring buffer is full (first on this CPU; counted as tls_ring_full)"
        ),
        LOST_READ => warn!(
            ctx,
            "TLS plaintext lost: a call's buffer could not be read (first on this CPU; counted as tls_unreadable)"
        ),
        LOST_CALLS_FULL => warn!(
            ctx,
            "TLS call not followed: too many calls in progress (first on this CPU; counted as tls_calls_full)"
        ),
        _ => warn!(
            ctx,
            "process event lost: its ring buffer is full (first on this CPU; the periodic scan finds it)"
        ),
    }
}

/// Whether a call of connection object `object` on `socket` is read: every
/// call, unless user space set a scope (pods targeted); then only calls on
/// connections with an end at a target pod's address, the same test user
/// space applies to connections. A call whose socket is not known (no
/// syscall showed it) takes the addresses its object had last; with none
/// it is read, and user space decides. A call out of scope is dropped
/// before its bytes are read.
fn in_scope(object: u64, socket: &SocketAddrs) -> bool {
    // SAFETY: a lookup whose value is not used.
    if unsafe { SCOPE.get(SCOPE_SET) }.is_none() {
        return true;
    }
    let key = ObjectKey {
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        object,
    };
    let addrs = if socket.family != 0 {
        let _ = OBJECTS.insert(key, *socket, 0);
        *socket
    } else {
        // SAFETY: copied out at once.
        match unsafe { OBJECTS.get(key) } {
            Some(a) => *a,
            None => return true,
        }
    };
    let ends = [
        scope_key(addrs.family, &addrs.local),
        scope_key(addrs.family, &addrs.remote),
    ];
    // SAFETY: lookups whose values are not used.
    ends.iter().any(|end| unsafe { SCOPE.get(end) }.is_some())
}

/// Keeps the call's buffer (argument 1) and, for the `_ex` forms, where the
/// count goes (argument 3), for the return probe.
fn try_enter(ctx: &ProbeContext, direction: u8, ex: bool) -> Result<(), i32> {
    let ssl = ctx.arg::<u64>(0).ok_or(-1)?;
    let buf = ctx.arg::<u64>(1).ok_or(-1)?;
    let count_ptr = if ex { ctx.arg::<u64>(3).ok_or(-1)? } else { 0 };
    let call = Call {
        ssl,
        buf,
        count_ptr,
        fd: -1,
        direction,
        _pad: [0; 3],
        socket: SocketAddrs::NONE,
    };
    CALLS
        .insert(bpf_get_current_pid_tgid(), call, 0)
        .inspect_err(|_| lose(ctx, LOST_CALLS_FULL))
}

#[uprobe]
pub fn tap_ssl_write(ctx: ProbeContext) -> u32 {
    let _ = try_enter(&ctx, EGRESS, false);
    0
}

#[uprobe]
pub fn tap_ssl_read(ctx: ProbeContext) -> u32 {
    let _ = try_enter(&ctx, INGRESS, false);
    0
}

#[uprobe]
pub fn tap_ssl_write_ex(ctx: ProbeContext) -> u32 {
    let _ = try_enter(&ctx, EGRESS, true);
    0
}

#[uprobe]
pub fn tap_ssl_read_ex(ctx: ProbeContext) -> u32 {
    let _ = try_enter(&ctx, INGRESS, true);
    0
}

/// `SSL_set_fd(ssl, fd)`: a connection object starts on a socket (a new
/// connection, though the object may sit where a freed one did). Tells
/// user space at once, with the socket's addresses, so the object's first
/// reads (often served from what the handshake read, with no syscall)
/// join the right connection.
#[uprobe]
pub fn tap_ssl_set_fd(ctx: ProbeContext) -> u32 {
    let _ = try_set_fd(&ctx);
    0
}

fn try_set_fd(ctx: &ProbeContext) -> Result<(), i32> {
    let ssl = ctx.arg::<u64>(0).ok_or(-1)?;
    let fd = ctx.arg::<u64>(1).ok_or(-1)? as i32;
    let id = bpf_get_current_pid_tgid();
    let socket = socket_addrs(fd).unwrap_or(SocketAddrs::NONE);
    if !in_scope(ssl, &socket) {
        return Ok(());
    }
    let ev = SetFdEvent {
        // SAFETY: a helper without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        ssl,
        pid: (id >> 32) as u32,
        tid: id as u32,
        fd,
        direction: SET_FD,
        _pad: [0; 3],
        total: 0,
        len: 0,
        socket,
    };
    if EVENTS.output::<SetFdEvent>(ev, 0).is_err() {
        lose(ctx, LOST_RING_FULL);
    }
    Ok(())
}

/// The socket of a `read`/`write`-family syscall, for the TLS call this
/// thread is in (the first one seen).
#[tracepoint]
pub fn tap_syscall_fd(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    if let Some(call) = CALLS.get_ptr_mut(id) {
        // SAFETY: the tracepoint's record has the fd at this offset (the
        // format of every sys_enter_* attached, checked by user space).
        if let Ok(fd) = unsafe { ctx.read_at::<u64>(SYSCALL_FD_OFFSET) } {
            // SAFETY: a value of this thread's own entry.
            unsafe {
                if (*call).fd < 0 {
                    (*call).fd = fd as i32;
                    if let Ok(addrs) = socket_addrs(fd as i32) {
                        (*call).socket = addrs;
                    }
                }
            }
        }
    }
    0
}

/// Reads a kernel value of type `T` at `base + offset`.
fn kread<T>(base: u64, offset: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an
    // error, never a fault.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T) }.map_err(|_| -1)
}

/// The addresses of this thread's socket `fd`: its task's file table,
/// the file, the socket (which must point back at the file: anything else
/// is no socket), its sock's common part.
fn socket_addrs(fd: i32) -> Result<SocketAddrs, i32> {
    // SAFETY: a read of the program's own read-only global, which user
    // space set before loading.
    let o = unsafe { core::ptr::read_volatile(&OFFSETS) };
    if o.valid == 0 || fd < 0 {
        return Err(-1);
    }
    // SAFETY: the helper only returns the current task's address.
    let task = unsafe { bpf_get_current_task() };
    let files: u64 = kread(task, o.task_files)?;
    let fdt: u64 = kread(files, o.files_fdt)?;
    let max_fds: u32 = kread(fdt, o.fdt_max_fds)?;
    if fd as u32 >= max_fds {
        return Err(-1);
    }
    let fds: u64 = kread(fdt, o.fdt_fd)?;
    let file: u64 = kread(fds, (fd as u32) * 8)?;
    let socket: u64 = kread(file, o.file_private_data)?;
    let back: u64 = kread(socket, o.socket_file)?;
    if back != file {
        return Err(-1);
    }
    let sk: u64 = kread(socket, o.socket_sk)?;
    let family: u16 = kread(sk, o.skc_family)?;
    let mut a = SocketAddrs::NONE;
    a.local_port = kread(sk, o.skc_num)?;
    a.remote_port_be = kread(sk, o.skc_dport)?;
    match family {
        2 => {
            let l: [u8; 4] = kread(sk, o.skc_rcv_saddr)?;
            let r: [u8; 4] = kread(sk, o.skc_daddr)?;
            a.local = [l[0], l[1], l[2], l[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            a.remote = [r[0], r[1], r[2], r[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        }
        10 => {
            a.local = kread(sk, o.skc_v6_rcv_saddr)?;
            a.remote = kread(sk, o.skc_v6_daddr)?;
        }
        _ => return Err(-1),
    }
    a.family = family;
    Ok(a)
}

#[uretprobe]
pub fn tap_ssl_return(ctx: RetProbeContext) -> u32 {
    let _ = try_return(&ctx);
    0
}

fn try_return(ctx: &RetProbeContext) -> Result<(), i32> {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: copied out before the entry is removed.
    let call = unsafe { CALLS.get(id) }.copied().ok_or(-1)?;
    let _ = CALLS.remove(id);
    let total = if call.count_ptr != 0 {
        // `_ex`: 1 on success, the count written through the pointer.
        if ctx.ret::<i64>() as i32 != 1 {
            return Ok(());
        }
        // SAFETY: the caller's size_t, read with the kernel's checks.
        unsafe { bpf_probe_read_user(call.count_ptr as *const u64) }?
    } else {
        let n = ctx.ret::<i64>() as i32;
        if n <= 0 {
            return Ok(());
        }
        n as u64
    };
    emit(ctx, id, &call, total);
    Ok(())
}

/// The `TlsEvent` of a call that moved `total` bytes, its first `CHUNK`
/// read from the caller's buffer. It is built in a per-CPU scratch slot and
/// only its used part (header and the bytes moved) goes into the ring: a
/// small call takes a small part of the ring, not a whole 16 KiB chunk.
fn emit<C: EbpfContext>(ctx: &C, id: u64, call: &Call, total: u64) {
    if !in_scope(call.ssl, &call.socket) {
        return;
    }
    let Some(ev) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let len = (total as usize).min(CHUNK);
    // SAFETY: `ev` is this CPU's scratch slot, ours until the program ends
    // (programs do not nest on a CPU); every header field is written and
    // the data read before the used part is copied out.
    unsafe {
        (*ev).ts_ns = bpf_ktime_get_ns();
        (*ev).ssl = call.ssl;
        (*ev).pid = (id >> 32) as u32;
        (*ev).tid = id as u32;
        (*ev).fd = call.fd;
        (*ev).direction = call.direction;
        (*ev)._pad = [0; 3];
        (*ev).total = total.min(u64::from(u32::MAX)) as u32;
        (*ev).len = len as u32;
        (*ev).socket = call.socket;
        let data = &mut (*ev).data;
        let read = match data.get_mut(..len) {
            Some(dst) => bpf_probe_read_user_buf(call.buf as *const u8, dst),
            None => Err(-1),
        };
        if read.is_err() {
            lose(ctx, LOST_READ);
            return;
        }
        let size = HEADER + len;
        if size > core::mem::size_of::<TlsEvent>() {
            return;
        }
        let used = core::slice::from_raw_parts(ev as *const u8, size);
        if EVENTS.output::<[u8]>(used, 0).is_err() {
            lose(ctx, LOST_RING_FULL);
        }
    }
}

/// The goroutine of this Go call: its process and `g` (R14 in Go's
/// register ABI).
fn goroutine(ctx: &ProbeContext) -> GoCall {
    GoCall {
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        // SAFETY: the probe's saved registers, which the context points at.
        g: unsafe { (*ctx.regs).r14 },
    }
}

/// Reads a user value of type `T` at `base + offset`.
fn uread<T>(base: u64, offset: u16) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_user checks the address; a bad one is an
    // error, never a fault.
    unsafe { bpf_probe_read_user((base + u64::from(offset)) as *const T) }.map_err(|_| -1)
}

/// `crypto/tls.(*Conn).Write`/`Read` entry: the `*tls.Conn` (RAX) and the
/// buffer (RBX), with the connection's socket, read from the `tls.Conn`
/// with this binary's offsets (the probe's cookie).
fn try_go_enter(ctx: &ProbeContext, direction: u8) -> Result<(), i32> {
    // SAFETY: the probe's saved registers, which the context points at.
    let (conn, buf) = unsafe { ((*ctx.regs).rax, (*ctx.regs).rbx) };
    // SAFETY: a helper reading this attachment's cookie.
    let o = GoOffsets::from_cookie(unsafe { bpf_get_attach_cookie(ctx.as_ptr()) });
    let fd = go_fd(conn, &o).unwrap_or(-1);
    let call = Call {
        ssl: conn,
        buf,
        count_ptr: 0,
        fd,
        direction,
        _pad: [0; 3],
        socket: socket_addrs(fd).unwrap_or(SocketAddrs::NONE),
    };
    GO_CALLS
        .insert(goroutine(ctx), call, 0)
        .inspect_err(|_| lose(ctx, LOST_CALLS_FULL))
}

/// The socket number behind a `*tls.Conn`: its `net.Conn`'s data word (a
/// `*net.TCPConn`), that one's `*netFD`, its `poll.FD`'s `Sysfd`.
fn go_fd(conn: u64, o: &GoOffsets) -> Result<i32, i32> {
    if o.conn_data == 0 {
        return Err(-1);
    }
    let tcp: u64 = uread(conn, o.conn_data)?;
    let netfd: u64 = uread(tcp, o.tcpconn_fd)?;
    let sysfd: i64 = uread(netfd, o.netfd_pfd + o.pfd_sysfd)?;
    i32::try_from(sysfd).map_err(|_| -1)
}

#[uprobe]
pub fn tap_go_write(ctx: ProbeContext) -> u32 {
    let _ = try_go_enter(&ctx, EGRESS);
    0
}

#[uprobe]
pub fn tap_go_read(ctx: ProbeContext) -> u32 {
    let _ = try_go_enter(&ctx, INGRESS);
    0
}

/// At a `ret` of `(*Conn).Write` or `Read`: RAX is the count of bytes
/// moved (`n`; the error is in RBX and RCX).
#[uprobe]
pub fn tap_go_return(ctx: ProbeContext) -> u32 {
    let _ = try_go_return(&ctx);
    0
}

fn try_go_return(ctx: &ProbeContext) -> Result<(), i32> {
    let key = goroutine(ctx);
    // SAFETY: copied out before the entry is removed.
    let call = unsafe { GO_CALLS.get(key) }.copied().ok_or(-1)?;
    let _ = GO_CALLS.remove(key);
    // SAFETY: the probe's saved registers, which the context points at.
    let n = unsafe { (*ctx.regs).rax } as i64;
    if n <= 0 {
        return Ok(());
    }
    emit(ctx, bpf_get_current_pid_tgid(), &call, n as u64);
    Ok(())
}

fn process_event(ctx: &TracePointContext, kind: u32) {
    let id = bpf_get_current_pid_tgid();
    let pid = (id >> 32) as u32;
    // A thread's exit is not the process's: only its leader's is.
    if kind == PROC_EXIT && pid != id as u32 {
        return;
    }
    if PROCS
        .output::<ProcEvent>(ProcEvent { pid, kind }, 0)
        .is_err()
    {
        lose(ctx, LOST_PROCS_FULL);
    }
}

#[tracepoint]
pub fn tap_process_exec(ctx: TracePointContext) -> u32 {
    process_event(&ctx, PROC_EXEC);
    0
}

#[tracepoint]
pub fn tap_process_exit(ctx: TracePointContext) -> u32 {
    process_event(&ctx, PROC_EXIT);
    0
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The kernel's licence string: GPL-compatible, so the programs may call
/// GPL-only helpers (tap-ebpf's LICENSE-MIT and LICENSE-GPL2).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
pub static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
