//! What kubetap's eBPF programs (`tap-ebpf`) and the worker exchange: the
//! plaintext a TLS library (OpenSSL, or Go's crypto/tls) read or wrote, one
//! event per call, through a ring buffer. `#![no_std]` for the kernel side; with the `user` feature the
//! types are `aya::Pod`, so user space reads them from the map as they are.
#![no_std]

/// Plaintext bytes one event carries; a call that moved more is cut to
/// this and says so (`len < total`).
pub const CHUNK: usize = 16 * 1024;

/// The ring buffer's size (a power-of-two number of pages).
pub const RING_BYTES: u32 = 8 << 20;

/// `TlsEvent::direction`: the process wrote (sent) the bytes.
pub const EGRESS: u8 = 0;
/// `TlsEvent::direction`: the process read (received) them.
pub const INGRESS: u8 = 1;
/// `SetFdEvent::direction`: the connection object was given a socket
/// (`SSL_set_fd`): a new connection, whatever the object's address.
pub const SET_FD: u8 = 2;

/// One TLS read or write that moved plaintext.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TlsEvent {
    /// `bpf_ktime_get_ns` when the call returned (monotonic, since boot).
    pub ts_ns: u64,
    /// The library's connection object (`SSL *`): calls served from the
    /// library's buffer make no syscall, so user space learns the socket of
    /// this object from its other calls.
    pub ssl: u64,
    /// The process (thread group) and thread.
    pub pid: u32,
    pub tid: u32,
    /// The socket the library read or wrote during the call (a syscall on the
    /// same thread), -1 when none was seen (a buffered read).
    pub fd: i32,
    /// [`EGRESS`] or [`INGRESS`].
    pub direction: u8,
    pub _pad: [u8; 3],
    /// Bytes the call moved, and of those the bytes in `data`.
    pub total: u32,
    pub len: u32,
    /// The socket's addresses, read in the kernel during the call.
    pub socket: SocketAddrs,
    pub data: [u8; CHUNK],
}

/// `SSL_set_fd(ssl, fd)`: a [`TlsEvent`] without data, its fields at the
/// same offsets (`direction` is [`SET_FD`], `total` and `len` 0).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SetFdEvent {
    pub ts_ns: u64,
    pub ssl: u64,
    pub pid: u32,
    pub tid: u32,
    pub fd: i32,
    pub direction: u8,
    pub _pad: [u8; 3],
    pub total: u32,
    pub len: u32,
    pub socket: SocketAddrs,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(SetFdEvent, direction) == offset_of!(TlsEvent, direction));
    assert!(offset_of!(SetFdEvent, socket) == offset_of!(TlsEvent, socket));
    assert!(offset_of!(SetFdEvent, fd) == offset_of!(TlsEvent, fd));
    assert!(offset_of!(SetFdEvent, ssl) == offset_of!(TlsEvent, ssl));
    assert!(core::mem::size_of::<SetFdEvent>() == offset_of!(TlsEvent, data));
};

/// A TCP socket's two ends as the kernel holds them, read while the call
/// runs (so a connection closed right after is still known).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SocketAddrs {
    /// `AF_INET` (2) or `AF_INET6` (10); 0: not read (no socket walk on
    /// this kernel, or the fd was no socket).
    pub family: u16,
    /// The local port in host order (`skc_num`), the remote one in network
    /// order (`skc_dport`).
    pub local_port: u16,
    pub remote_port_be: u16,
    pub _pad: u16,
    /// IPv4 addresses in the first 4 bytes; IPv6 in all 16.
    pub local: [u8; 16],
    pub remote: [u8; 16],
}

impl SocketAddrs {
    pub const NONE: SocketAddrs = SocketAddrs {
        family: 0,
        local_port: 0,
        remote_port_be: 0,
        _pad: 0,
        local: [0; 16],
        remote: [0; 16],
    };
}

// SAFETY: integers and byte arrays, padding explicit.
#[cfg(feature = "user")]
unsafe impl aya::Pod for SocketAddrs {}

/// Where the kernel keeps what the socket walk reads, found in the running
/// kernel's BTF by user space and handed to the programs as a global
/// (`OFFSETS`): task → files → fdtable → file → socket → sock. `valid` 0:
/// no walk (the user side resolves sockets from /proc instead).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    pub valid: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_private_data: u32,
    pub socket_file: u32,
    pub socket_sk: u32,
    pub skc_family: u32,
    pub skc_num: u32,
    pub skc_dport: u32,
    pub skc_rcv_saddr: u32,
    pub skc_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    pub skc_v6_daddr: u32,
}

/// The key of `SCOPE` that says a scope is set (the unspecified address,
/// never a pod's): only calls on connections with an end among the other
/// keys (target pods' addresses) are read. Without it, every call is.
pub const SCOPE_SET: [u8; 16] = [0; 16];
/// Addresses in `SCOPE`, at most (the target pods' on a node).
pub const SCOPE_MAX: u32 = 4096;

/// A connection object of a process (an `SSL *`, a `*tls.Conn`): the key
/// under which the kernel programs remember its socket's addresses, for
/// calls that make no syscall.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ObjectKey {
    pub pid: u32,
    pub _pad: u32,
    pub object: u64,
}

/// The scope key of an address as `SocketAddrs` holds it: IPv4 in the
/// first 4 bytes, IPv6 in all 16; an IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, a dual-stack socket's) is keyed as IPv4.
pub fn scope_key(family: u16, addr: &[u8; 16]) -> [u8; 16] {
    let mapped =
        family == 10 && addr[..10].iter().all(|b| *b == 0) && addr[10] == 0xff && addr[11] == 0xff;
    if mapped {
        let mut k = [0; 16];
        k[..4].copy_from_slice(&addr[12..]);
        k
    } else {
        *addr
    }
}

// SAFETY: integers only.
#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelOffsets {}

// SAFETY: plain old data: integers and a byte array, every bit pattern valid,
// no padding the compiler adds (the explicit `_pad` fills it).
#[cfg(feature = "user")]
unsafe impl aya::Pod for TlsEvent {}

/// Where a Go binary keeps a `*tls.Conn`'s socket number, for the kernel
/// programs to read it at `(*Conn).Read`/`Write`: `tls.Conn.conn` (a
/// `net.Conn` interface: its data word, a `*net.TCPConn`) → `TCPConn`'s
/// `fd *netFD` → `netFD.pfd` (a `poll.FD`) → `Sysfd`. Per binary (its
/// DWARF, or a table per Go version), so each probe carries its binary's
/// offsets as its attach cookie ([`GoOffsets::cookie`]).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct GoOffsets {
    /// The interface's data word in `tls.Conn` (the field's offset + 8).
    pub conn_data: u16,
    /// `fd *netFD` in `net.TCPConn` (through its embedded `conn`).
    pub tcpconn_fd: u16,
    /// `pfd` in `net.netFD`.
    pub netfd_pfd: u16,
    /// `Sysfd` in `poll.FD`.
    pub pfd_sysfd: u16,
}

impl GoOffsets {
    /// The four offsets in one attach cookie, 16 bits each.
    pub const fn cookie(&self) -> u64 {
        (self.conn_data as u64)
            | (self.tcpconn_fd as u64) << 16
            | (self.netfd_pfd as u64) << 32
            | (self.pfd_sysfd as u64) << 48
    }

    pub const fn from_cookie(c: u64) -> GoOffsets {
        GoOffsets {
            conn_data: c as u16,
            tcpconn_fd: (c >> 16) as u16,
            netfd_pfd: (c >> 32) as u16,
            pfd_sysfd: (c >> 48) as u16,
        }
    }
}

/// A Go call in progress is keyed by its goroutine (the `g` in R14), not
/// its thread: a goroutine that blocks in `Read` may return on another
/// thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoCall {
    pub pid: u32,
    pub _pad: u32,
    pub g: u64,
}

// SAFETY: integers only, padding explicit.
#[cfg(feature = "user")]
unsafe impl aya::Pod for GoCall {}

/// What a TLS call's entry probe keeps for its return probe, per thread
/// (per goroutine for Go).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Call {
    /// The connection object (argument 0; Go: the `*tls.Conn`).
    pub ssl: u64,
    /// The caller's buffer.
    pub buf: u64,
    /// `SSL_read_ex`/`SSL_write_ex`: where the library writes the byte
    /// count; 0 for `SSL_read`/`SSL_write`, which return it.
    pub count_ptr: u64,
    /// The socket seen in a syscall during the call, or -1.
    pub fd: i32,
    pub direction: u8,
    pub _pad: [u8; 3],
    /// Its addresses, read at that syscall.
    pub socket: SocketAddrs,
}

// SAFETY: as for TlsEvent: integers only, padding explicit.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Call {}

/// The `PROCS` ring buffer's size: process starts and exits only.
pub const PROCS_BYTES: u32 = 256 << 10;

/// `ProcEvent::kind`: the process called `execve` (a new program: its
/// libraries are mapped soon after).
pub const PROC_EXEC: u32 = 0;
/// `ProcEvent::kind`: the process (its last thread) exited.
pub const PROC_EXIT: u32 = 1;

/// A process started a program or exited, for discovery in user space.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProcEvent {
    pub pid: u32,
    /// [`PROC_EXEC`] or [`PROC_EXIT`].
    pub kind: u32,
}

// SAFETY: two integers, no padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ProcEvent {}
