//! Live capture from one network interface: an AF_PACKET socket with a
//! TPACKET_V3 memory-mapped block ring, a classic BPF filter from
//! [`super::bpf`] so that only the watched pods' packets reach the ring,
//! optional PACKET_FANOUT to spread one interface over several sockets, and
//! the kernel's drop counters. It yields the same [`Packet`]s as a capture
//! file, for `pipeline`.
//!
//! How the ring works: the kernel fills `block_count` blocks of `block_size`
//! bytes in turn, packing as many packets into a block as fit, and hands a
//! block to user space (`TP_STATUS_USER`) when it is full or when
//! `block_timeout_ms` has passed since its first packet. [`LiveCapture`] walks
//! the packets of the block it holds and gives it back (`TP_STATUS_KERNEL`)
//! when it moves on. When every block is held by user space the kernel drops
//! packets and counts them ([`LiveStats::kernel_drops`]). A block is handed
//! over at the timeout however few packets it holds, so at a trickle the ring
//! keeps only `block_count` timeouts' worth: a reader that stalls for longer
//! than `block_count * block_timeout_ms` loses packets even though the ring is
//! nearly empty in bytes. The reader must keep reading (the worker's capture
//! thread does nothing else).
//!
//! What the socket sees: both directions of the interface (a veth's host end
//! carries a pod's incoming and outgoing traffic). On loopback every packet
//! passes twice, once outgoing and once incoming; the socket asks the kernel
//! to skip the outgoing copy (`PACKET_IGNORE_OUTGOING`), and skips it itself
//! on kernels older than 4.20 that lack the option. A VLAN tag the kernel
//! moved into metadata is put back into the bytes, as libpcap does, so the
//! decoder sees the frame as it was on the wire.
//!
//! All of kubetap's `unsafe` code for capture lives in this module.

use super::Packet;
use super::bpf::{self, Framing, Insn};
pub use super::bpf::{FilterError, Targets};
use super::link;
use rustix::io::Errno;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const DEFAULT_BLOCK_SIZE: usize = 1 << 20;
pub const DEFAULT_BLOCK_COUNT: usize = 4;
pub const DEFAULT_BLOCK_TIMEOUT_MS: u32 = 50;
/// As tcpdump: enough for the largest GRO/TSO packet Linux builds.
pub const DEFAULT_SNAPLEN: u32 = 262_144;

/// TPACKET_V3 packs packets of any size into a block; the frame size only
/// feeds the kernel's frames-per-block bookkeeping.
const FRAME_SIZE: u32 = 2048;
/// A ring may take at most this share of the node's memory: an absurd
/// setting must fail here, not push the node into the OOM killer.
const MAX_MEMORY_SHARE: u64 = 2;
/// How long to wait for the kernel to retire the last partly filled block
/// after the interface went away, beyond the block timeout.
const GONE_GRACE: Duration = Duration::from_millis(100);
/// While the interface is down, how often to check whether it was deleted.
const DOWN_RECHECK: Duration = Duration::from_millis(200);

/// `ARPHRD_RAWIP` (linux/if_arp.h), absent from `libc`.
const ARPHRD_RAWIP: u16 = 519;
/// The tag type the kernel means when it gives no `tp_vlan_tpid`.
const ETHERTYPE_VLAN: u16 = 0x8100;

#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Interface name in the calling thread's network namespace.
    pub interface: String,
    /// Bytes per ring block: a multiple of the page size, best a power of two.
    pub block_size: usize,
    /// Blocks in the ring; the ring takes `block_size * block_count` bytes.
    /// Also how many block timeouts the reader may fall behind (see above).
    pub block_count: usize,
    /// Hand a partly filled block to user space after this long, so quiet
    /// traffic is not held back; 0 lets the kernel choose.
    pub block_timeout_ms: u32,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// Join a PACKET_FANOUT group (hash of the flow, IP fragments
    /// reassembled first): sockets on the same interface in the same group
    /// share its packets, each flow going to one socket.
    pub fanout: Option<Fanout>,
    /// Pass only these targets' packets; `None` passes every packet.
    pub filter: Option<Targets>,
}

/// Which PACKET_FANOUT group a socket joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fanout {
    /// A new group, with an id the kernel picks among those unused in this
    /// network namespace ([`LiveCapture::fanout_group`] tells it, for the
    /// other sockets to join). 0 is a valid id.
    New,
    /// The group with this id (made if there is none).
    Join(u16),
}

impl LiveConfig {
    /// The defaults: 4 blocks of 1 MiB, 50 ms block timeout, 256 KiB snap
    /// length, no fanout, no filter.
    pub fn new(interface: impl Into<String>) -> LiveConfig {
        LiveConfig {
            interface: interface.into(),
            block_size: DEFAULT_BLOCK_SIZE,
            block_count: DEFAULT_BLOCK_COUNT,
            block_timeout_ms: DEFAULT_BLOCK_TIMEOUT_MS,
            snaplen: DEFAULT_SNAPLEN,
            fanout: None,
            filter: None,
        }
    }
}

/// Counters since the capture was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Packets that passed the filter, including those the kernel dropped
    /// for want of ring space (the kernel's `tp_packets`).
    pub packets: u64,
    /// Packets that passed the filter but found the ring full.
    pub kernel_drops: u64,
    /// Times the kernel found every block held by user space.
    pub freeze_count: u64,
    /// Packets handed to the caller by `next_packet`.
    pub delivered: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    // io::Errors are in the messages and not `source`s, as in `file`.
    #[error(
        "capturing on '{interface}' needs root or CAP_NET_RAW ({error}); run as root or grant the capability (securityContext.capabilities.add: [NET_RAW])"
    )]
    Permission { interface: String, error: io::Error },
    #[error(
        "cannot capture on '{interface}': no such network interface in this network namespace (see `ip link`)"
    )]
    NoSuchInterface { interface: String },
    #[error("cannot capture on '{interface}': {reason}")]
    BadConfig { interface: String, reason: String },
    #[error(
        "cannot capture on '{interface}': a ring of {block_count} blocks of {block_size} bytes ({total}) was refused: {error}; use a block size that is a power-of-two multiple of the page size ({page_size} bytes), e.g. 1 MiB, and fewer or smaller blocks if memory is short",
        total = bytesize::ByteSize((*block_size as u64).saturating_mul(*block_count as u64))
    )]
    RingRefused {
        interface: String,
        block_size: usize,
        block_count: usize,
        page_size: usize,
        error: io::Error,
    },
    #[error(
        "cannot capture on '{interface}': its link type (ARPHRD {arphrd}) is not supported; capture on an Ethernet, loopback or raw-IP interface"
    )]
    UnsupportedLink { interface: String, arphrd: u16 },
    #[error("cannot capture on '{interface}': {error}")]
    Filter {
        interface: String,
        error: FilterError,
    },
    #[error("capture on '{interface}' ended: the interface was deleted (its pod is gone?)")]
    InterfaceGone { interface: String },
    #[error("capture on '{interface}': {what}: {error}")]
    Io {
        interface: String,
        what: &'static str,
        error: io::Error,
    },
}

/// The mmapped ring; unmapped on drop.
struct Ring {
    base: NonNull<u8>,
    block_size: usize,
    block_count: usize,
}

impl Ring {
    fn len(&self) -> usize {
        self.block_size * self.block_count
    }

    /// The kernel-shared `block_status` word of block `i`.
    fn status(&self, i: usize) -> &AtomicU32 {
        debug_assert!(i < self.block_count);
        let off = i * self.block_size + BLOCK_STATUS;
        // SAFETY: `off` is inside the mapping (i < block_count and the block
        // descriptor is far smaller than a block), 4-aligned (blocks are
        // page-aligned, BLOCK_STATUS is 8), and the kernel accesses this word
        // only with its own barriers, so treating it as an atomic is sound.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(off).cast()) }
    }

    /// Reads a plain value at `off` bytes into the ring.
    ///
    /// # Safety
    /// `off + size_of::<T>()` must lie in a block user space holds, and any
    /// bit pattern must be a valid `T`.
    unsafe fn read<T: Copy>(&self, off: usize) -> T {
        debug_assert!(off + size_of::<T>() <= self.len());
        // SAFETY: the caller keeps the read in bounds and in a held block,
        // which the kernel does not write.
        unsafe { self.base.as_ptr().add(off).cast::<T>().read_unaligned() }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: base and len describe the mapping made in `open`, and no
        // borrow of it outlives `self` (packets borrow the LiveCapture).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len());
        }
    }
}

const BLOCK_STATUS: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, block_status);
const BLOCK_NUM_PKTS: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, num_pkts);
const BLOCK_FIRST_PKT: usize = offset_of!(libc::tpacket_block_desc, hdr)
    + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);
/// The `sockaddr_ll` the kernel writes after each `tpacket3_hdr`
/// (TPACKET_ALIGN(sizeof(struct tpacket3_hdr)), linux/if_packet.h).
const SLL_OFFSET: usize = (size_of::<libc::tpacket3_hdr>() + libc::TPACKET_ALIGNMENT - 1)
    & !(libc::TPACKET_ALIGNMENT - 1);

/// Where the next packet is, in the block user space holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    block: usize,
    left: u32,
    /// Offset of the next packet's header from the block's start.
    next: usize,
}

/// A frame found in the ring, as offsets (not yet a borrow).
struct Frame {
    ts_ns: u64,
    offset: usize,
    len: usize,
    orig_len: u32,
    vlan: Option<[u8; 4]>,
}

/// A live capture on one interface. Owns the socket and the ring; dropping it
/// unmaps the ring and closes the socket (leaving any fanout group).
pub struct LiveCapture {
    // Field order is drop order: unmap before close.
    ring: Ring,
    fd: OwnedFd,
    interface: String,
    ifindex: i32,
    link: u32,
    framing: Framing,
    snaplen: u32,
    block_timeout: Duration,
    /// Skip PACKET_OUTGOING copies in user space (loopback on old kernels).
    skip_outgoing: bool,
    fanout_group: Option<u16>,
    held: Option<Held>,
    /// First block not yet looked at.
    cursor: usize,
    /// VLAN-tagged frames are rebuilt here.
    scratch: Vec<u8>,
    stats: LiveStats,
    /// Since when the kernel reported the interface down.
    down_since: Option<Instant>,
    down_checked: Option<Instant>,
    /// Since when the interface is known to be deleted.
    gone_since: Option<Instant>,
}

// SAFETY: the ring mapping and the socket belong to this value alone and hold
// no thread-affine state; moving them to another thread is sound. (Not Sync:
// `next_packet` needs `&mut self` anyway.)
unsafe impl Send for LiveCapture {}

impl LiveCapture {
    /// Opens a capture on `config.interface` in the calling thread's network
    /// namespace. The socket is set up completely (ring, filter) before it is
    /// bound to the interface, so no packet of another interface or outside
    /// the filter is ever queued.
    pub fn open(config: LiveConfig) -> Result<LiveCapture, LiveError> {
        let interface = config.interface.clone();
        let page_size = page_size();
        let io_err = |what: &'static str| {
            let interface = interface.clone();
            move |error: io::Error| LiveError::Io {
                interface,
                what,
                error,
            }
        };
        check_config(&config, page_size)?;

        // Protocol 0 (None): the socket receives nothing until `bind` names
        // the protocol and the interface.
        let fd = match rustix::net::socket_with(
            rustix::net::AddressFamily::PACKET,
            rustix::net::SocketType::RAW,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        ) {
            Ok(fd) => fd,
            Err(e @ (Errno::PERM | Errno::ACCESS)) => {
                return Err(LiveError::Permission {
                    interface,
                    error: e.into(),
                });
            }
            Err(e) => return Err(io_err("opening an AF_PACKET socket")(e.into())),
        };

        let ifindex = interface_index(&fd, &interface)?;
        let arphrd = interface_arphrd(&fd, &interface)?;
        let (link, framing) = match arphrd {
            libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK => (link::ETHERNET, Framing::Ethernet),
            libc::ARPHRD_NONE
            | libc::ARPHRD_TUNNEL
            | libc::ARPHRD_TUNNEL6
            | libc::ARPHRD_SIT
            | ARPHRD_RAWIP => (link::RAW, Framing::RawIp),
            _ => return Err(LiveError::UnsupportedLink { interface, arphrd }),
        };

        let program =
            program_for(config.filter.as_ref(), framing, config.snaplen).map_err(|error| {
                LiveError::Filter {
                    interface: interface.clone(),
                    error,
                }
            })?;
        attach_filter(&fd, &program)
            .map_err(io_err("attaching the capture filter (SO_ATTACH_FILTER)"))?;

        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version).map_err(io_err(
            "selecting TPACKET_V3 (PACKET_VERSION; Linux 3.2 or later)",
        ))?;

        let skip_outgoing = arphrd == libc::ARPHRD_LOOPBACK && {
            let on: libc::c_int = 1;
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &on).is_err()
        };

        let ring_refused = |error: io::Error| LiveError::RingRefused {
            interface: interface.clone(),
            block_size: config.block_size,
            block_count: config.block_count,
            page_size,
            error,
        };
        // check_config proved these fit in u32.
        let block_size = config.block_size as u32;
        let block_nr = config.block_count as u32;
        let req = libc::tpacket_req3 {
            tp_block_size: block_size,
            tp_block_nr: block_nr,
            tp_frame_size: FRAME_SIZE,
            tp_frame_nr: (block_size / FRAME_SIZE) * block_nr,
            tp_retire_blk_tov: config.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req).map_err(ring_refused)?;
        let len = config.block_size * config.block_count;
        // SAFETY: maps the ring the kernel just allocated for this socket;
        // the result is checked before use and owned by `Ring`.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(ring_refused(io::Error::last_os_error()));
        }
        let ring = Ring {
            base: NonNull::new(base.cast()).expect("mmap returned null without MAP_FIXED"),
            block_size: config.block_size,
            block_count: config.block_count,
        };

        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a valid sockaddr_ll and the length says so.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let error = io::Error::last_os_error();
            return Err(match error.raw_os_error() {
                Some(libc::ENODEV | libc::ENXIO) => LiveError::NoSuchInterface { interface },
                _ => io_err("binding to the interface")(error),
            });
        }

        let mut fanout_group = None;
        if let Some(fanout) = config.fanout {
            let mut kind = libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG;
            let group = match fanout {
                Fanout::New => {
                    kind |= libc::PACKET_FANOUT_FLAG_UNIQUEID;
                    0
                }
                Fanout::Join(id) => id,
            };
            let arg: u32 = u32::from(group) | (kind << 16);
            setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg).map_err(io_err(
                "joining the fanout group (PACKET_FANOUT; every socket of a group needs the same interface and settings)",
            ))?;
            let mut joined: libc::c_int = 0;
            getsockopt(&fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &mut joined)
                .map_err(io_err("reading the fanout group's id"))?;
            fanout_group = Some((joined & 0xffff) as u16);
        }

        Ok(LiveCapture {
            ring,
            fd,
            interface,
            ifindex,
            link,
            framing,
            snaplen: config.snaplen,
            block_timeout: Duration::from_millis(u64::from(config.block_timeout_ms)),
            skip_outgoing,
            fanout_group,
            held: None,
            cursor: 0,
            scratch: Vec::new(),
            stats: LiveStats::default(),
            down_since: None,
            down_checked: None,
            gone_since: None,
        })
    }

    /// The interface's name, as given.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The PACKET_FANOUT group this socket joined, if any.
    pub fn fanout_group(&self) -> Option<u16> {
        self.fanout_group
    }

    /// LINKTYPE_* of the packets: Ethernet (also for loopback), or raw IP.
    pub fn link_type(&self) -> u32 {
        self.link
    }

    /// The next packet, waiting at most `timeout`; `None` when none came.
    ///
    /// The packet borrows the ring: its block goes back to the kernel on a
    /// later call. After the interface is deleted the packets still in the
    /// ring come first, then [`LiveError::InterfaceGone`] (on every call). An
    /// interface that is only down yields nothing until it is up again.
    pub fn next_packet(&mut self, timeout: Duration) -> Result<Option<Packet<'_>>, LiveError> {
        let Some(frame) = self.next_frame(timeout)? else {
            return Ok(None);
        };
        // SAFETY: `next_frame` checked that the frame lies inside the block
        // we hold. The kernel does not write a block whose status is
        // TP_STATUS_USER, and we hand it back only inside a later call, which
        // needs `&mut self` and so ends this borrow first.
        let data = unsafe {
            std::slice::from_raw_parts(self.ring.base.as_ptr().add(frame.offset), frame.len)
        };
        self.stats.delivered += 1;
        let (data, orig_len) = match frame.vlan {
            Some(tag) if data.len() >= 12 => {
                self.scratch.clear();
                self.scratch.extend_from_slice(&data[..12]);
                self.scratch.extend_from_slice(&tag);
                self.scratch.extend_from_slice(&data[12..]);
                (&self.scratch[..], frame.orig_len.saturating_add(4))
            }
            _ => (data, frame.orig_len),
        };
        Ok(Some(Packet {
            ts_ns: frame.ts_ns,
            link: self.link,
            data,
            orig_len,
        }))
    }

    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, LiveError> {
        let deadline = Instant::now().checked_add(timeout);
        let mut polled = false;
        loop {
            if let Some(held) = self.held {
                if held.left > 0 {
                    let frame = self.take_frame(held)?;
                    if let Some(frame) = frame {
                        return Ok(Some(frame));
                    }
                    continue;
                }
                // Release store: our reads of the block happen before the
                // kernel may write it again.
                self.ring
                    .status(held.block)
                    .store(libc::TP_STATUS_KERNEL, Ordering::Release);
                self.held = None;
            }
            // Acquire load: the kernel's writes of the block happen before
            // our reads of it.
            let status = self.ring.status(self.cursor).load(Ordering::Acquire);
            if status & libc::TP_STATUS_USER != 0 {
                let block = self.cursor;
                self.cursor = (self.cursor + 1) % self.ring.block_count;
                let base = block * self.ring.block_size;
                // SAFETY: the block descriptor lies at the start of a block
                // we now hold (status TP_STATUS_USER).
                let (left, first) = unsafe {
                    (
                        self.ring.read::<u32>(base + BLOCK_NUM_PKTS),
                        self.ring.read::<u32>(base + BLOCK_FIRST_PKT),
                    )
                };
                self.held = Some(Held {
                    block,
                    left,
                    next: first as usize,
                });
                continue;
            }
            if let Some(since) = self.gone_since
                && since.elapsed() >= self.block_timeout + GONE_GRACE
            {
                return Err(LiveError::InterfaceGone {
                    interface: self.interface.clone(),
                });
            }
            if self.down_since.is_some() {
                self.check_interface()?;
            }
            // Poll at least once, even with a zero timeout: socket errors
            // (the interface going away) arrive only through poll.
            let now = Instant::now();
            let mut wait = match deadline {
                Some(d) if d <= now && polled => return Ok(None),
                Some(d) => d.saturating_duration_since(now),
                None => Duration::from_secs(3600),
            };
            if self.gone_since.is_some() {
                wait = wait.min(self.block_timeout + GONE_GRACE);
            } else if self.down_since.is_some() {
                wait = wait.min(DOWN_RECHECK);
            }
            self.wait(wait)?;
            polled = true;
        }
    }

    /// Reads the next frame of the held block and advances past it; `None`
    /// for a frame that is skipped.
    fn take_frame(&mut self, held: Held) -> Result<Option<Frame>, LiveError> {
        let block_base = held.block * self.ring.block_size;
        let hdr_end = held
            .next
            .checked_add(SLL_OFFSET + size_of::<libc::sockaddr_ll>());
        if hdr_end.is_none_or(|end| end > self.ring.block_size) {
            return Err(self.corrupt_ring(held));
        }
        let at = block_base + held.next;
        // SAFETY: checked just above that the header and the sockaddr_ll after
        // it are inside the held block.
        let (hdr, pkttype) = unsafe {
            (
                self.ring.read::<libc::tpacket3_hdr>(at),
                self.ring
                    .read::<u8>(at + SLL_OFFSET + offset_of!(libc::sockaddr_ll, sll_pkttype)),
            )
        };
        let data_start = held.next + usize::from(hdr.tp_mac);
        let data_end = data_start + hdr.tp_snaplen as usize;
        if data_end > self.ring.block_size {
            return Err(self.corrupt_ring(held));
        }
        self.held = Some(Held {
            block: held.block,
            left: held.left - 1,
            next: held.next + hdr.tp_next_offset as usize,
        });
        if self.skip_outgoing && pkttype == libc::PACKET_OUTGOING {
            return Ok(None);
        }
        let vlan = (hdr.tp_status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
            let tpid = if hdr.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                hdr.hv1.tp_vlan_tpid
            } else {
                ETHERTYPE_VLAN
            };
            let tci = hdr.hv1.tp_vlan_tci as u16;
            let [a, b] = tpid.to_be_bytes();
            let [c, d] = tci.to_be_bytes();
            [a, b, c, d]
        });
        Ok(Some(Frame {
            ts_ns: u64::from(hdr.tp_sec) * 1_000_000_000 + u64::from(hdr.tp_nsec),
            offset: block_base + data_start,
            len: hdr.tp_snaplen as usize,
            orig_len: hdr.tp_len,
            vlan: vlan.filter(|_| self.link == link::ETHERNET),
        }))
    }

    /// A frame header pointing outside its block: give the block back and
    /// report it rather than read out of bounds.
    fn corrupt_ring(&mut self, held: Held) -> LiveError {
        self.ring
            .status(held.block)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.held = None;
        LiveError::Io {
            interface: self.interface.clone(),
            what: "reading the capture ring",
            error: io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a frame in block {} at offset {} runs past the block; the block was skipped",
                    held.block, held.next
                ),
            ),
        }
    }

    /// Waits for the ring to become readable or for a socket error.
    fn wait(&mut self, wait: Duration) -> Result<(), LiveError> {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let timeout = Timespec::try_from(wait).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        let mut pfd = [PollFd::new(&self.fd, PollFlags::IN)];
        match rustix::event::poll(&mut pfd, Some(&timeout)) {
            Ok(_) => {}
            Err(Errno::INTR) => return Ok(()),
            Err(e) => return Err(self.io("waiting for packets (poll)", e.into())),
        }
        let revents = pfd[0].revents();
        if revents.contains(PollFlags::ERR) {
            let err = rustix::net::sockopt::socket_error(&self.fd)
                .map_err(|e| self.io("reading the socket error (SO_ERROR)", e.into()))?;
            match err {
                Ok(()) => {}
                // The kernel unhooks the socket when the interface goes down
                // and hooks it again when it comes back up; deletion starts
                // with going down, so a down interface is watched for deletion.
                Err(Errno::NETDOWN | Errno::NXIO | Errno::NODEV) => {
                    if self.down_since.is_none() {
                        tracing::debug!(interface = %self.interface, "capture interface went down");
                        self.down_since = Some(Instant::now());
                    }
                    self.check_interface()?;
                }
                Err(e) => return Err(self.io("capture socket error", e.into())),
            }
        } else if revents.contains(PollFlags::NVAL) {
            return Err(self.io("waiting for packets (poll)", Errno::BADF.into()));
        }
        Ok(())
    }

    /// While the interface is down: marks it gone when its index no longer
    /// names a device in the socket's network namespace, and stops watching
    /// when it is up again (the kernel then feeds the socket again).
    fn check_interface(&mut self) -> Result<(), LiveError> {
        if self.gone_since.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        if self
            .down_checked
            .is_some_and(|t| now.duration_since(t) < DOWN_RECHECK / 2)
        {
            return Ok(());
        }
        self.down_checked = Some(now);
        // By index, in the socket's namespace: the name may have changed.
        let index = u32::try_from(self.ifindex).unwrap_or(0);
        let name = match rustix::net::netdevice::index_to_name_inlined(&self.fd, index) {
            Ok(name) => name,
            Err(Errno::NODEV) => {
                tracing::debug!(interface = %self.interface, "capture interface deleted");
                self.gone_since = Some(now);
                return Ok(());
            }
            Err(e) => return Err(self.io("looking up the interface (SIOCGIFNAME)", e.into())),
        };
        let Some(mut ifr) = ifreq_named(name.as_str()) else {
            return Ok(());
        };
        match ioctl_ifreq(&self.fd, libc::SIOCGIFFLAGS, &mut ifr) {
            // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
            Ok(()) if unsafe { ifr.ifr_ifru.ifru_flags } & libc::IFF_UP as libc::c_short != 0 => {
                tracing::debug!(interface = %self.interface, "capture interface up again");
                self.down_since = None;
                Ok(())
            }
            Ok(()) => Ok(()),
            // Deleted between the two calls: the next check sees it.
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(self.io("reading the interface flags (SIOCGIFFLAGS)", e)),
        }
    }

    /// Replaces the filter while capturing; `None` passes every packet.
    ///
    /// The kernel swaps the program atomically (`SO_ATTACH_FILTER` on a
    /// socket with a filter replaces it), so no packet is ever unfiltered.
    /// Packets already in the ring passed the old filter and are still
    /// delivered; they were wanted when they arrived.
    pub fn set_filter(&mut self, targets: Option<&Targets>) -> Result<(), LiveError> {
        let program = program_for(targets, self.framing, self.snaplen).map_err(|error| {
            LiveError::Filter {
                interface: self.interface.clone(),
                error,
            }
        })?;
        attach_filter(&self.fd, &program)
            .map_err(|e| self.io("replacing the capture filter (SO_ATTACH_FILTER)", e))
    }

    /// The counters; reads (and so resets) the kernel's and adds them up.
    pub fn stats(&mut self) -> Result<LiveStats, LiveError> {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        getsockopt(&self.fd, libc::SOL_PACKET, libc::PACKET_STATISTICS, &mut st)
            .map_err(|e| self.io("reading kernel counters (PACKET_STATISTICS)", e))?;
        self.stats.packets += u64::from(st.tp_packets);
        self.stats.kernel_drops += u64::from(st.tp_drops);
        self.stats.freeze_count += u64::from(st.tp_freeze_q_cnt);
        Ok(self.stats)
    }

    fn io(&self, what: &'static str, error: io::Error) -> LiveError {
        LiveError::Io {
            interface: self.interface.clone(),
            what,
            error,
        }
    }
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("interface", &self.interface)
            .field("ifindex", &self.ifindex)
            .field("link", &self.link)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Checks what the kernel would misread or what would hurt the node, before
/// any socket exists (so these errors need no privileges).
fn check_config(config: &LiveConfig, page_size: usize) -> Result<(), LiveError> {
    let interface = &config.interface;
    let bad = |reason: String| LiveError::BadConfig {
        interface: interface.clone(),
        reason,
    };
    if config.snaplen == 0 {
        return Err(bad("snap length 0 would keep nothing of a packet".into()));
    }
    let refused = |reason: String| LiveError::RingRefused {
        interface: interface.clone(),
        block_size: config.block_size,
        block_count: config.block_count,
        page_size,
        error: io::Error::new(io::ErrorKind::InvalidInput, reason),
    };
    if config.block_count == 0 {
        return Err(refused("a ring needs at least one block".into()));
    }
    // The kernel takes these as u32, and the block size as a positive int.
    if config.block_size > i32::MAX as usize || config.block_count > u32::MAX as usize {
        return Err(refused(
            "the kernel takes a block size below 2 GiB and fewer than 2^32 blocks".into(),
        ));
    }
    if (config.block_size as u32) < FRAME_SIZE {
        return Err(refused(format!(
            "a block must hold at least {FRAME_SIZE} bytes"
        )));
    }
    let total = (config.block_size as u64).saturating_mul(config.block_count as u64);
    let memory = total_memory();
    if memory > 0 && total > memory / MAX_MEMORY_SHARE {
        return Err(refused(format!(
            "the ring would take {}, more than 1/{MAX_MEMORY_SHARE} of this node's {} of memory",
            bytesize::ByteSize(total),
            bytesize::ByteSize(memory)
        )));
    }
    if usize::try_from(total).is_err() {
        return Err(refused("the ring does not fit the address space".into()));
    }
    Ok(())
}

fn program_for(
    targets: Option<&Targets>,
    framing: Framing,
    snaplen: u32,
) -> Result<Vec<Insn>, FilterError> {
    match targets {
        Some(t) => bpf::compile(t, framing, snaplen),
        // Still a program: it is what applies the snap length.
        None => Ok(bpf::accept_all(snaplen)),
    }
}

fn attach_filter(fd: &OwnedFd, program: &[Insn]) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> = program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let prog = libc::sock_fprog {
        // bpf::compile keeps programs within BPF_MAXINSNS.
        len: insns.len() as u16,
        filter: insns.as_mut_ptr(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

fn interface_index(fd: &OwnedFd, interface: &str) -> Result<i32, LiveError> {
    let no_such = || LiveError::NoSuchInterface {
        interface: interface.to_owned(),
    };
    // A name no interface can have is refused here, not by the kernel.
    ifreq_named(interface).ok_or_else(no_such)?;
    match rustix::net::netdevice::name_to_index(fd, interface) {
        Ok(index) => i32::try_from(index).map_err(|_| no_such()),
        Err(Errno::NODEV) => Err(no_such()),
        Err(e) => Err(LiveError::Io {
            interface: interface.to_owned(),
            what: "looking up the interface (SIOCGIFINDEX)",
            error: e.into(),
        }),
    }
}

/// The interface's ARPHRD_* hardware type.
fn interface_arphrd(fd: &OwnedFd, interface: &str) -> Result<u16, LiveError> {
    let mut ifr = ifreq_named(interface).ok_or_else(|| LiveError::NoSuchInterface {
        interface: interface.to_owned(),
    })?;
    match ioctl_ifreq(fd, libc::SIOCGIFHWADDR, &mut ifr) {
        // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
        Ok(()) => Ok(unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_family }),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(LiveError::NoSuchInterface {
            interface: interface.to_owned(),
        }),
        Err(error) => Err(LiveError::Io {
            interface: interface.to_owned(),
            what: "reading the interface's link type (SIOCGIFHWADDR)",
            error,
        }),
    }
}

/// An ifreq naming `interface`; `None` when no interface can have that name.
fn ifreq_named(interface: &str) -> Option<libc::ifreq> {
    let bytes = interface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return None;
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, &s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = s as libc::c_char;
    }
    Some(ifr)
}

fn ioctl_ifreq(fd: &OwnedFd, request: libc::c_ulong, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `ifr` is a valid, writable ifreq for the duration of the call,
    // which is what these SIOCGIF* requests read and write.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, std::ptr::from_mut(ifr)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the given size for the call; the
    // kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Types made of integers alone: any bytes the kernel writes are a valid
/// value. Private, so `getsockopt` cannot be handed anything else.
trait IntegersOnly: Copy {}
impl IntegersOnly for libc::c_int {}
impl IntegersOnly for libc::tpacket_stats_v3 {}

fn getsockopt<T: IntegersOnly>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &mut T,
) -> io::Result<()> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a writable T of `len` bytes for the call, and T is
    // made of integers, so whatever the kernel writes is a valid T.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_mut(value).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn page_size() -> usize {
    rustix::param::page_size()
}

/// Physical memory in bytes.
pub fn total_memory() -> u64 {
    let info = rustix::system::sysinfo();
    (info.totalram as u64).saturating_mul(u64::from(info.mem_unit))
}

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`).
/// Live capture and the hub allocate and free entries at a high rate on
/// several threads; the allocator gives memory back and takes it again, and
/// with huge pages each fault clears 2 MiB. Measured: a third of the
/// worker's shipping thread and kernel ring drops at 400k packets/s; the
/// hub's ingest 211k -> 260k entries per CPU second. The error only means
/// the kernel's default stays.
pub fn disable_transparent_huge_pages() -> io::Result<()> {
    rustix::thread::disable_transparent_huge_pages(true).map_err(io::Error::from)
}

/// Moves the calling thread into the network namespace at `path` (e.g.
/// `/run/netns/NAME`), so that sockets it opens afterwards live there, and
/// threads it starts afterwards start there; other threads keep theirs.
pub fn enter_netns(path: &Path) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&file),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    //! What needs no privileges: settings refused before any socket exists.
    //! The kernel side is in `tests/live_capture.rs`.

    use super::*;

    fn refused(f: impl FnOnce(&mut LiveConfig)) -> String {
        let mut config = LiveConfig::new("eth0");
        f(&mut config);
        let err = check_config(&config, 4096).expect_err("refused");
        err.to_string()
    }

    #[test]
    fn the_defaults_pass() {
        check_config(&LiveConfig::new("eth0"), 4096).unwrap();
    }

    #[test]
    fn absurd_rings_are_refused_with_the_sizes_and_what_to_do() {
        let msg = refused(|c| c.block_size = 1 << 40);
        assert!(
            msg.contains("1099511627776 bytes") && msg.contains("below 2 GiB"),
            "{msg}"
        );
        assert!(
            msg.contains("'eth0'") && msg.contains("page size (4096 bytes)"),
            "{msg}"
        );
        let msg = refused(|c| {
            c.block_size = 1 << 30;
            c.block_count = 1 << 20;
        });
        assert!(
            msg.contains("of this node's") && msg.contains("memory"),
            "{msg}"
        );
        let msg = refused(|c| c.block_count = 0);
        assert!(msg.contains("at least one block"), "{msg}");
        let msg = refused(|c| c.block_size = 1024);
        assert!(msg.contains("at least 2048 bytes"), "{msg}");
    }

    #[test]
    fn a_zero_snap_length_is_refused() {
        let msg = refused(|c| c.snaplen = 0);
        assert!(msg.contains("snap length 0"), "{msg}");
    }

    #[test]
    fn interface_names_that_cannot_exist_need_no_lookup() {
        assert!(ifreq_named("").is_none());
        assert!(ifreq_named("sixteen-chars-xx").is_none());
        assert!(ifreq_named("nul\0").is_none());
        let ifr = ifreq_named("fifteen-chars-x").unwrap();
        assert_eq!(ifr.ifr_name[14], b'x' as libc::c_char);
        assert_eq!(ifr.ifr_name[15], 0);
    }

    #[test]
    fn the_ring_layout_matches_the_kernel_headers() {
        // linux/if_packet.h: block_status follows version and offset_to_priv;
        // the sockaddr_ll sits at TPACKET_ALIGN(sizeof(struct tpacket3_hdr)).
        assert_eq!(BLOCK_STATUS, 8);
        assert_eq!(BLOCK_NUM_PKTS, 12);
        assert_eq!(BLOCK_FIRST_PKT, 16);
        assert_eq!(size_of::<libc::tpacket3_hdr>(), 48);
        assert_eq!(SLL_OFFSET, 48);
    }
}
