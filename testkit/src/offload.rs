//! Segmentation offload on a pod's path, as a node with BIG TCP (Cilium's
//! `enable-ipv4-big-tcp`) has it: the sender's TCP stack builds segments of up
//! to `bytes` and the veths and the bridge pass them on whole, so a capture
//! on the node sees super-packets. Above 64 KiB an IPv4 header cannot hold
//! the length, so the kernel writes a total length of 0.
//!
//! iproute2 6.1 (Debian's) cannot set the IPv4 limits (`gso_ipv4_max_size`,
//! Linux 6.3), so they are set over rtnetlink here.

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_sys::{Socket, constants::NETLINK_ROUTE};
use std::io;

use crate::netns;
use crate::pods::{BRIDGE, Node, Pod, PodError, ifindex};

/// The largest GSO/GRO size Linux accepts (`GSO_MAX_SIZE`, 512 KiB - 1).
pub const MAX_OFFLOAD: u32 = 524_280;

impl Node {
    /// Lets `pod`'s traffic travel as super-packets of up to `bytes`
    /// (IPv4 and IPv6 limits, GSO and GRO) on its `eth0`, its host veth and
    /// the node's bridge. Above 65 536 this is BIG TCP: the captured IPv4
    /// packets carry a total length of 0.
    pub fn offload(&self, pod: &Pod, bytes: u32) -> Result<(), PodError> {
        let bytes = bytes.min(MAX_OFFLOAD);
        set_offload(&pod.netns, "eth0", bytes)?;
        set_offload(self.netns(), &pod.host_veth, bytes)?;
        set_offload(self.netns(), BRIDGE, bytes)
    }
}

fn set_offload(ns: &str, dev: &str, bytes: u32) -> Result<(), PodError> {
    let index = ifindex(ns, dev)?;
    let mut link = LinkMessage::default();
    link.header.index = index;
    link.attributes = vec![
        LinkAttribute::GsoMaxSize(bytes),
        LinkAttribute::GroMaxSize(bytes),
        LinkAttribute::GsoIpv4MaxSize(bytes),
        LinkAttribute::GroIpv4MaxSize(bytes),
    ];
    netns::in_netns(ns, || set_link(link))?.map_err(|source| PodError::Offload {
        netns: ns.to_string(),
        dev: dev.to_string(),
        source,
    })
}

/// RTM_NEWLINK on an existing link, waiting for the kernel's answer.
fn set_link(link: LinkMessage) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::SetLink(link)),
    );
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut reply: Vec<u8> = Vec::with_capacity(1 << 16);
    socket.recv(&mut reply, 0)?;
    let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| io::Error::other(format!("bad netlink reply: {e}")))?;
    match answer.payload {
        NetlinkPayload::Error(e) => match e.code {
            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
            None => Ok(()),
        },
        other => Err(io::Error::other(format!(
            "unexpected netlink reply: {other:?}"
        ))),
    }
}
