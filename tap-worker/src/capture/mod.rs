//! Capture: where packets come from. A pcap or pcapng file (or stdin), or a
//! live interface through an AF_PACKET TPACKET_V3 ring (`live`, with its
//! classic BPF filter built by `bpf`). Every source yields [`Packet`]s that
//! borrow the source's buffer until the next call.

pub mod bpf;
pub mod file;
#[allow(unsafe_code)]
pub mod live;

pub use file::{CaptureError, CaptureFile};

/// Link-layer types we decode (LINKTYPE_* values from tcpdump.org).
pub mod link {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const RAW_OPENBSD: u32 = 12;
    pub const RAW_BSD: u32 = 14;
    pub const RAW: u32 = 101;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    /// Netfilter log messages (`tcpdump -i nflog:N`): TLVs around the IP packet.
    pub const NFLOG: u32 = 239;
    pub const LINUX_SLL2: u32 = 276;
}

/// One captured packet: link type, capture time and the bytes captured.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// LINKTYPE_* of `data`.
    pub link: u32,
    pub data: &'a [u8],
    /// Length on the wire; larger than `data.len()` when the snap length cut it.
    pub orig_len: u32,
}
