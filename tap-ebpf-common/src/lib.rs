//! What kubetap's eBPF programs (`tap-ebpf`) and the worker exchange: the
//! plaintext a TLS library read or wrote, one event per call, through a ring
//! buffer. `#![no_std]` for the kernel side; with the `user` feature the
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
    pub data: [u8; CHUNK],
}

// SAFETY: plain old data: integers and a byte array, every bit pattern valid,
// no padding the compiler adds (the explicit `_pad` fills it).
#[cfg(feature = "user")]
unsafe impl aya::Pod for TlsEvent {}

/// What a TLS call's entry probe keeps for its return probe, per thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Call {
    /// The connection object (argument 0).
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
}

// SAFETY: as for TlsEvent: integers only, padding explicit.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Call {}
