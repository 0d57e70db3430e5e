//! Target pods and the interfaces to capture them on.
//!
//! The worker is told which pods to watch ([`TargetPod`]: name, namespace,
//! IPs, and in a cluster the node). For each one on this node it captures on
//! the host side of the pod's veth, found through the veth's peer: a pod's
//! `eth0` lives in the pod's network namespace and names its peer by
//! ifindex; the host side names the pod's namespace by a netns id
//! (`IFLA_LINK_NETNSID`). [`Resolver`] lists the host's links, asks the
//! kernel which netns id each candidate namespace has here (`RTM_GETNSID`),
//! enters only the namespaces that have a veth peer on this host, and reads
//! their addresses. That works for every CNI that gives pods veth pairs
//! (bridge, Calico, Cilium's veth mode, kindnet …), whatever the routing.
//!
//! Candidate namespaces are the ones pinned under `/run/netns` (containerd
//! and CRI-O pin pod sandboxes there, as `ip netns` does) and those of running
//! processes (`/proc/PID/ns/net`); the worker needs the host's PID namespace
//! in a cluster, as any node agent that looks into pods does.
//!
//! Netlink messages come from `netlink-packet-route`, sockets from
//! `netlink-sys`.

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_sys::{Socket, constants::NETLINK_ROUTE};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long addresses read from a pod's namespace are trusted.
const ADDRESS_TTL: Duration = Duration::from_secs(30);

/// A pod to watch, as the CLI or the hub describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TargetPod {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    pub ips: Vec<IpAddr>,
    /// The node it runs on; a worker watches only its own node's pods.
    #[serde(default)]
    pub node: Option<String>,
}

/// Which listed pods to capture, as the hub's configuration says: a pod is
/// taken when its name matches one of `names` (regexes; none: any) and its
/// namespace is one of `namespaces` (none: any).
#[derive(Debug, Clone, Default)]
pub struct Selector {
    names: Vec<regex::Regex>,
    namespaces: Vec<String>,
}

impl Selector {
    pub fn new(names: &[String], namespaces: &[String]) -> Result<Selector, regex::Error> {
        Ok(Selector {
            names: names
                .iter()
                .map(|n| regex::Regex::new(n))
                .collect::<Result<_, _>>()?,
            namespaces: namespaces.to_vec(),
        })
    }

    pub fn matches(&self, pod: &TargetPod) -> bool {
        (self.names.is_empty() || self.names.iter().any(|r| r.is_match(&pod.name)))
            && (self.namespaces.is_empty() || self.namespaces.contains(&pod.namespace))
    }
}

impl TargetPod {
    /// `namespace/name`, as logs and messages name a pod.
    pub fn id(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PodsError {
    #[error("reading the pod list {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error(
        "the pod list {path} is not valid: {error} (expected a JSON array of {{\"name\", \"namespace\", \"ips\": [...], \"node\"}})"
    )]
    Parse {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("pod {pod} has no IP address; a pod is found by its IPs")]
    NoIps { pod: String },
}

/// Reads a pod list: a JSON array of [`TargetPod`].
pub fn load(path: &Path) -> Result<Vec<TargetPod>, PodsError> {
    let text = std::fs::read_to_string(path).map_err(|error| PodsError::Read {
        path: path.to_owned(),
        error,
    })?;
    let pods: Vec<TargetPod> = serde_json::from_str(&text).map_err(|error| PodsError::Parse {
        path: path.to_owned(),
        error,
    })?;
    if let Some(p) = pods.iter().find(|p| p.ips.is_empty()) {
        return Err(PodsError::NoIps { pod: p.id() });
    }
    Ok(pods)
}

/// The host side of a pod's interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInterface {
    pub name: String,
    pub ifindex: u32,
}

/// A link of this namespace whose peer is in another namespace.
#[derive(Debug, Clone)]
struct PeerLink {
    index: u32,
    name: String,
    /// The peer's ifindex in its namespace.
    peer: u32,
    /// The peer's namespace, by its id in this namespace.
    netnsid: i32,
}

/// A namespace's netns id here, when its addresses were read, and the
/// addresses with their interface indexes.
type NamespaceAddresses = (i32, Instant, Vec<(u32, IpAddr)>);

/// Finds pods' host interfaces; keeps a netlink socket in the namespace it
/// was made in (the worker's), so make it on the thread that captures.
pub struct Resolver {
    socket: Socket,
    seq: u32,
    /// Addresses read from each namespace (by device and inode), with the
    /// netns id it had and when: a namespace is entered again only when its
    /// id changed or the reading is older than [`ADDRESS_TTL`].
    cache: HashMap<(u64, u64), NamespaceAddresses>,
    /// Extra places to look for namespaces (tests); `/run/netns` and
    /// `/proc/*/ns/net` are always searched.
    pub netns_dirs: Vec<PathBuf>,
}

impl Resolver {
    pub fn new() -> io::Result<Resolver> {
        Ok(Resolver {
            socket: route_socket()?,
            seq: 0,
            cache: HashMap::new(),
            netns_dirs: Vec::new(),
        })
    }

    /// For each of `ips` that belongs to a pod with a veth peer in this
    /// namespace, that peer. IPs not found are left out.
    pub fn resolve(&mut self, ips: &[IpAddr]) -> io::Result<HashMap<IpAddr, HostInterface>> {
        let mut out = HashMap::new();
        if ips.is_empty() {
            return Ok(out);
        }
        let links = self.peer_links()?;
        let nsids: HashSet<i32> = links.iter().map(|l| l.netnsid).collect();
        if nsids.is_empty() {
            return Ok(out);
        }
        let wanted: HashSet<IpAddr> = ips.iter().map(|ip| ip.to_canonical()).collect();
        let namespaces = self.namespaces();
        let present: HashSet<(u64, u64)> = namespaces.iter().map(|(_, key)| *key).collect();
        self.cache.retain(|key, _| present.contains(key));
        for (path, key) in namespaces {
            let Ok(file) = std::fs::File::open(&path) else {
                continue; // the process or namespace went away
            };
            let Ok(nsid) = self.nsid(&file) else { continue };
            if !nsids.contains(&nsid) {
                continue;
            }
            let addrs = match self.cache.get(&key) {
                Some((id, at, addrs)) if *id == nsid && at.elapsed() < ADDRESS_TTL => addrs.clone(),
                _ => {
                    // Entering a namespace is per thread: a short-lived
                    // thread does it and this one stays where it is.
                    let read = std::thread::scope(|s| {
                        s.spawn(|| -> io::Result<Vec<(u32, IpAddr)>> {
                            crate::capture::live::enter_netns(&path)?;
                            addresses(&route_socket()?)
                        })
                        .join()
                        .unwrap_or_else(|_| Err(io::Error::other("namespace reader panicked")))
                    });
                    let Ok(addrs) = read else { continue };
                    self.cache
                        .insert(key, (nsid, Instant::now(), addrs.clone()));
                    addrs
                }
            };
            for (ifindex, ip) in addrs {
                let ip = ip.to_canonical();
                if !wanted.contains(&ip) {
                    continue;
                }
                if let Some(l) = links
                    .iter()
                    .find(|l| l.netnsid == nsid && l.peer == ifindex)
                {
                    out.insert(
                        ip,
                        HostInterface {
                            name: l.name.clone(),
                            ifindex: l.index,
                        },
                    );
                }
            }
            if out.len() == wanted.len() {
                break;
            }
        }
        Ok(out)
    }

    /// Every namespace file to look into, one path per namespace (with the
    /// namespace's device and inode), leaving out this thread's own.
    fn namespaces(&self) -> Vec<(PathBuf, (u64, u64))> {
        let own = std::fs::metadata("/proc/thread-self/ns/net")
            .map(|m| (m.dev(), m.ino()))
            .ok();
        let mut seen = HashSet::new();
        seen.extend(own);
        let mut out = Vec::new();
        let mut add = |p: PathBuf| {
            if let Ok(m) = std::fs::metadata(&p)
                && seen.insert((m.dev(), m.ino()))
            {
                out.push((p, (m.dev(), m.ino())));
            }
        };
        let dirs = self
            .netns_dirs
            .iter()
            .cloned()
            .chain([PathBuf::from("/run/netns")]);
        for dir in dirs {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
                names.sort();
                names.into_iter().for_each(&mut add);
            }
        }
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let name = e.file_name();
                if name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                    add(e.path().join("ns/net"));
                }
            }
        }
        out
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// This namespace's links that have a peer in another namespace.
    fn peer_links(&mut self) -> io::Result<Vec<PeerLink>> {
        let seq = self.next_seq();
        let replies = request(
            &self.socket,
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
        )?;
        let mut out = Vec::new();
        for m in replies {
            let RouteNetlinkMessage::NewLink(link) = m else {
                continue;
            };
            let (mut name, mut peer, mut netnsid) = (None, None, None);
            for a in &link.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::Link(i) => peer = Some(*i),
                    LinkAttribute::LinkNetNsId(id) => netnsid = Some(*id),
                    _ => {}
                }
            }
            if let (Some(name), Some(peer), Some(netnsid)) = (name, peer, netnsid) {
                out.push(PeerLink {
                    index: link.header.index,
                    name,
                    peer,
                    netnsid,
                });
            }
        }
        Ok(out)
    }

    /// The id this namespace gives the namespace open as `file` (-1: none).
    fn nsid(&mut self, file: &std::fs::File) -> io::Result<i32> {
        let mut msg = NsidMessage::default();
        msg.attributes
            .push(NsidAttribute::Fd(file.as_raw_fd() as u32));
        let seq = self.next_seq();
        let replies = request(
            &self.socket,
            RouteNetlinkMessage::GetNsId(msg),
            NLM_F_REQUEST,
            seq,
        )?;
        for m in replies {
            if let RouteNetlinkMessage::NewNsId(m) = m {
                for a in m.attributes {
                    if let NsidAttribute::Id(id) = a {
                        return Ok(id);
                    }
                }
            }
        }
        Ok(-1)
    }
}

fn route_socket() -> io::Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind_auto()?;
    s.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    Ok(s)
}

/// Every address of the socket's namespace, with its interface index.
fn addresses(socket: &Socket) -> io::Result<Vec<(u32, IpAddr)>> {
    let replies = request(
        socket,
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        NLM_F_REQUEST | NLM_F_DUMP,
        1,
    )?;
    let mut out = Vec::new();
    for m in replies {
        if let RouteNetlinkMessage::NewAddress(a) = m {
            let index = a.header.index;
            for attr in a.attributes {
                if let AddressAttribute::Address(ip) | AddressAttribute::Local(ip) = attr {
                    out.push((index, ip));
                }
            }
        }
    }
    Ok(out)
}

/// Sends one request and collects the replies: up to `NLMSG_DONE` for a
/// dump, the first reply otherwise. A netlink error becomes an io::Error.
fn request(
    socket: &Socket,
    msg: RouteNetlinkMessage,
    flags: u16,
    seq: u32,
) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    loop {
        buf.clear();
        let n = socket.recv(&mut buf, 0)?;
        if n > buf.len() {
            return Err(io::Error::other("netlink reply larger than 64 KiB"));
        }
        let mut at = 0;
        while at < buf.len() {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[at..])
                .map_err(|e| io::Error::other(format!("bad netlink reply: {e}")))?;
            let len = reply.header.length as usize;
            if len == 0 {
                break;
            }
            at += len.next_multiple_of(4);
            if reply.header.sequence_number != seq {
                continue;
            }
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        None => Ok(out),
                    };
                }
                NetlinkPayload::InnerMessage(m) => {
                    out.push(m);
                    if !dump {
                        return Ok(out);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Pod names by IP, to name the ends of entries.
#[derive(Debug, Default, Clone)]
pub struct Names {
    by_ip: HashMap<IpAddr, (String, String)>,
}

impl Names {
    pub fn new(pods: &[TargetPod]) -> Names {
        let mut by_ip = HashMap::new();
        for p in pods {
            for ip in &p.ips {
                by_ip.insert(ip.to_canonical(), (p.name.clone(), p.namespace.clone()));
            }
        }
        Names { by_ip }
    }

    /// Whether no pod is listed.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// Every pod address listed.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.by_ip.keys().copied()
    }

    /// The pod (name, namespace) with this address.
    pub fn pod_of(&self, ip: IpAddr) -> Option<(String, String)> {
        self.by_ip.get(&ip.to_canonical()).cloned()
    }

    /// Fills in the pod and namespace of each end the list knows.
    pub fn annotate(&self, entry: &mut proto::v1::Entry) {
        if self.by_ip.is_empty() {
            return;
        }
        for end in [entry.src.as_mut(), entry.dst.as_mut()]
            .into_iter()
            .flatten()
        {
            if end.pod.is_some() {
                continue;
            }
            if let Ok(ip) = end.ip.parse::<IpAddr>()
                && let Some((pod, ns)) = self.by_ip.get(&ip.to_canonical())
            {
                end.pod = Some(pod.clone());
                if !ns.is_empty() {
                    end.namespace = Some(ns.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_lists_load_and_bad_ones_say_why() {
        let dir = std::env::temp_dir().join(format!("kt-pods-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(
            &good,
            r#"[{"name":"web","namespace":"shop","ips":["10.1.0.5","fd00::5"]},
                {"name":"db","ips":["10.1.0.6"],"node":"n1"}]"#,
        )
        .unwrap();
        let pods = load(&good).unwrap();
        assert_eq!(pods.len(), 2);
        assert_eq!(pods[0].id(), "shop/web");
        assert_eq!(pods[1].id(), "db");
        assert_eq!(pods[1].node.as_deref(), Some("n1"));

        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"[{"name":"web","ips":["10.1.0.500"]}]"#).unwrap();
        let e = load(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("not valid"), "{e}");
        std::fs::write(&bad, r#"[{"name":"web","ips":[]}]"#).unwrap();
        assert!(load(&bad).unwrap_err().to_string().contains("no IP"));
        let e = load(&dir.join("missing.json")).unwrap_err().to_string();
        assert!(e.contains("missing.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_fill_only_unknown_ends() {
        let pods = vec![TargetPod {
            name: "web".into(),
            namespace: "shop".into(),
            ips: vec!["10.1.0.5".parse().unwrap()],
            node: None,
        }];
        let names = Names::new(&pods);
        let mut e = proto::v1::Entry {
            src: Some(proto::v1::Endpoint {
                ip: "10.1.0.5".into(),
                port: 1,
                ..Default::default()
            }),
            dst: Some(proto::v1::Endpoint {
                ip: "10.1.0.9".into(),
                port: 80,
                ..Default::default()
            }),
            ..Default::default()
        };
        names.annotate(&mut e);
        let src = e.src.unwrap();
        assert_eq!(src.pod.as_deref(), Some("web"));
        assert_eq!(src.namespace.as_deref(), Some("shop"));
        assert_eq!(e.dst.unwrap().pod, None);
    }
}
