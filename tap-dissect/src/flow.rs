//! What the dissectors know of a flow: its addresses and id, which way bytes
//! travel, how it ended, and the handler traits through which TCP reassembly
//! (`tap-worker`'s `reassembly`) and UDP flows (`datagram`) feed them.

use std::net::{IpAddr, SocketAddr};

/// Which way bytes travel on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    ToServer = 0,
    ToClient = 1,
}

impl Direction {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn reverse(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }
}

/// What is known about a connection; fixed when the flow is created.
#[derive(Debug, Clone)]
pub struct FlowInfo {
    /// Unique within one reassembler (one capture or one worker).
    pub id: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Time of the first packet seen.
    pub first_ts_ns: u64,
    /// No SYN was seen: the capture started after the connection did, and the
    /// client/server roles were guessed from the ports.
    pub midstream: bool,
    /// The bytes are a TLS connection's plaintext, read where the TLS
    /// library hands it over (the eBPF TLS source), not off the wire; its
    /// entries say `tls`.
    pub tls: bool,
    /// The overlay tunnel its first packet was unwrapped from, if any.
    pub outer: Option<Outer>,
}

/// An overlay hop: the tunnel a flow's packets travel in between two nodes
/// (the outermost, when tunnels nest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    pub kind: TunnelKind,
    /// The outer addresses: the tunnel's two endpoints.
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The VXLAN or Geneve network identifier, or the GRE key.
    pub vni: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    Vxlan,
    Geneve,
    Gre,
    IpInIp,
}

impl TunnelKind {
    /// The name entries carry (`tunnel.kind`).
    pub fn name(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Gre => "gre",
            TunnelKind::IpInIp => "ipip",
        }
    }
}

impl Outer {
    /// The entry's `tunnel`.
    pub fn to_proto(&self) -> proto::v1::Tunnel {
        proto::v1::Tunnel {
            kind: self.kind.name().to_string(),
            src: crate::pair::ip_string(self.src),
            dst: crate::pair::ip_string(self.dst),
            vni: self.vni,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides sent FIN and all their bytes were delivered.
    Fin,
    Rst,
    /// No packet for the idle timeout.
    Idle,
    /// Removed to make room under the flow limit.
    Evicted,
    /// A new SYN reused the connection's addresses and ports.
    Reused,
    EndOfCapture,
}

/// Receives a connection's events; one handler per flow.
pub trait FlowHandler {
    type Out;
    /// In-order bytes in one direction; `ts_ns` is the capture time of the segment that carried them.
    fn on_data(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        data: &[u8],
        out: &mut Vec<Self::Out>,
    );
    /// `len` bytes in this direction were never captured; the stream resumes after them.
    fn on_gap(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        len: u64,
        out: &mut Vec<Self::Out>,
    );
    /// The connection is over; no more calls follow.
    fn on_close(&mut self, flow: &FlowInfo, end: &FlowEnd, out: &mut Vec<Self::Out>);
}

/// How a flow ended, with its totals; indexed by [`Direction::index`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowEnd {
    pub ts_ns: u64,
    pub reason: CloseReason,
    /// Packets seen each way.
    pub packets: [u64; 2],
    /// Bytes each way: the stream's length for TCP (missing bytes included), payload bytes for UDP.
    pub bytes: [u64; 2],
}

impl CloseReason {
    /// How the flow ended, in the words of the JSON form.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Fin => "fin",
            CloseReason::Rst => "rst",
            CloseReason::Idle => "idle",
            CloseReason::Evicted => "evicted",
            CloseReason::Reused => "reused",
            CloseReason::EndOfCapture => "capture_end",
        }
    }
}

/// Receives a UDP flow's events; one handler per flow.
pub trait DatagramHandler {
    type Out;
    fn on_datagram(
        &mut self,
        flow: &FlowInfo,
        dir: Direction,
        ts_ns: u64,
        payload: &[u8],
        out: &mut Vec<Self::Out>,
    );
    fn on_close(&mut self, flow: &FlowInfo, end: &FlowEnd, out: &mut Vec<Self::Out>);
}
