//! Nodes and pods the way a CNI bridge plugin lays them out: a node is a
//! network namespace holding a Linux bridge (`cbr0`) whose address is the
//! pods' gateway; a pod is a namespace whose `eth0` is one end of a veth pair,
//! the other end (`veth…`) sitting in the node namespace as a bridge port.
//! A tap-worker under test runs in the node namespace and captures on those
//! host-side veths, one per pod, exactly as on a real node.
//!
//! Nothing is connected to the host: the node namespace has no uplink, so
//! traffic stays between the namespaces a test made (and their loopbacks).
//! IPv6 is switched off in every namespace so that captures hold only the
//! test's own traffic, not router solicitations and MLD reports.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::netns::{self, NetnsError, PREFIX, ip};
use crate::process::Process;

/// The bridge in every node namespace (kubenet's name for it).
pub const BRIDGE: &str = "cbr0";

/// Pods and nodes get /24s, as a node's podCIDR usually is.
pub const PREFIX_LEN: u8 = 24;

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("invalid {what} '{name}': {why}")]
    Name {
        what: &'static str,
        name: String,
        why: String,
    },
    #[error("node {node} already has a pod named '{pod}'")]
    Duplicate { node: String, pod: String },
    #[error(
        "no free /24 for a new node: every candidate in 10.244.0.0/16, 172.30.0.0/16 and \
         192.168.0.0/16 is used by a live node of this process or overlaps a host route"
    )]
    NoSubnet,
    #[error("node {node} has no addresses left in {subnet}/24: at most 253 pods per node")]
    Full { node: String, subnet: Ipv4Addr },
    #[error("pod '{pod}' belongs to node {owner}, not {node}")]
    ForeignPod {
        pod: String,
        owner: String,
        node: String,
    },
    #[error("`{command}` would not run in pod '{pod}': build it with Pod::command")]
    NotInPod { command: String, pod: String },
    #[error(transparent)]
    Spawn(std::io::Error),
    #[error("cannot set {key} in namespace {netns}: {source}")]
    Sysctl {
        netns: String,
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set the offload sizes of {dev} in namespace {netns}: {source}")]
    Offload {
        netns: String,
        dev: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected output from `ip` for {what}: {output:?}")]
    Parse { what: String, output: String },
    #[error("nothing accepted TCP connections on {addr} within {timeout:?}, seen from node {node}")]
    Timeout {
        addr: SocketAddr,
        timeout: Duration,
        node: String,
    },
}

/// A "node": its own network namespace with a bridge holding the gateway
/// address of the node's pod /24. Dropping it kills every process left in its
/// namespaces and deletes them all (and with them the veths and the bridge),
/// also while a panic unwinds.
#[derive(Debug)]
pub struct Node {
    netns: String,
    subnet: Ipv4Addr,
    gateway: Ipv4Addr,
    state: Mutex<NodeState>,
}

#[derive(Debug, Default)]
struct NodeState {
    /// The last octet the next pod gets.
    next_host: u8,
    pods: Vec<PodSlot>,
}

#[derive(Debug)]
struct PodSlot {
    name: String,
    netns: String,
    host_veth: String,
}

/// A pod on a node. `Node::remove_pod` deletes it; otherwise the node's Drop
/// does.
#[derive(Debug)]
pub struct Pod {
    /// The pod's name, unique on its node.
    pub name: String,
    /// The pod's network namespace, for `ip netns exec` / `in_netns`.
    pub netns: String,
    /// The namespace of the node the pod runs on.
    pub node_netns: String,
    /// `eth0`'s address, in the node's /24.
    pub ip: Ipv4Addr,
    /// The default route's next hop: the bridge's address.
    pub gateway: Ipv4Addr,
    /// The host side of the veth pair, in the node namespace, a port of `cbr0`.
    pub host_veth: String,
    /// `host_veth`'s interface index in the node namespace (what a capture binds to).
    pub host_ifindex: u32,
}

static NODE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Subnets (network addresses) of this process's live nodes.
static SUBNETS: Mutex<Vec<Ipv4Addr>> = Mutex::new(Vec::new());

fn check_name(what: &'static str, name: &str, max: usize, dash: bool) -> Result<(), PodError> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || (dash && b == b'-');
    let why = if name.is_empty() || name.len() > max {
        format!("must be 1 to {max} characters")
    } else if !name.bytes().all(allowed) {
        if dash {
            "use a-z, 0-9 and '-'".to_string()
        } else {
            "use a-z and 0-9 only (the pid is parsed out of namespace names)".to_string()
        }
    } else if name.starts_with('-') || name.ends_with('-') {
        "must not start or end with '-'".to_string()
    } else {
        return Ok(());
    };
    Err(PodError::Name {
        what,
        name: name.to_string(),
        why,
    })
}

impl Node {
    /// Makes a node namespace `kt-<tag>-<pid>-<counter>` with bridge `cbr0`
    /// on a /24 that no other live node of this process uses and that does
    /// not overlap the host's routes. Sweeps up namespaces of dead test runs
    /// first (`cleanup_stale`). `tag` is 1–16 of a-z and 0-9.
    pub fn new(tag: &str) -> Result<Node, PodError> {
        Node::make(tag, netns::add)
    }

    /// A node on the network namespace of process `pid` (a container's,
    /// which a runtime made: a pause container standing for a node's host
    /// network), named and laid out as [`Node::new`] does. Dropping the node
    /// kills what still runs in that namespace.
    pub fn adopt(tag: &str, pid: u32) -> Result<Node, PodError> {
        Node::make(tag, |name| netns::attach(name, pid))
    }

    fn make(
        tag: &str,
        create: impl FnOnce(&str) -> Result<(), NetnsError>,
    ) -> Result<Node, PodError> {
        check_name("node tag", tag, 16, false)?;
        netns::cleanup_stale(PREFIX);
        let name = format!(
            "{PREFIX}{tag}-{}-{}",
            std::process::id(),
            NODE_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        netns::own(&name);
        let subnet = match allocate_subnet() {
            Ok(s) => s,
            Err(e) => {
                netns::disown(&name);
                return Err(e);
            }
        };
        if let Err(e) = create(&name) {
            release_subnet(subnet);
            netns::disown(&name);
            return Err(e.into());
        }
        let [a, b, c, _] = subnet.octets();
        let node = Node {
            netns: name,
            subnet,
            gateway: Ipv4Addr::new(a, b, c, 1),
            state: Mutex::new(NodeState {
                next_host: 2,
                pods: Vec::new(),
            }),
        };
        // From here on a failure drops `node`, which deletes the namespace.
        let ns = node.netns.as_str();
        ip(["-n", ns, "link", "set", "lo", "up"])?;
        // A node routes (a new namespace does not): traffic for an address
        // it has no route to gets an ICMP unreachable back at once instead
        // of vanishing, as on a real node.
        sysctl(ns, "net/ipv4/ip_forward", "1")?;
        disable_ipv6(ns)?;
        ip(["-n", ns, "link", "add", BRIDGE, "type", "bridge"])?;
        let gw = format!("{}/{PREFIX_LEN}", node.gateway);
        ip(["-n", ns, "addr", "add", &gw, "dev", BRIDGE])?;
        ip(["-n", ns, "link", "set", BRIDGE, "up"])?;
        Ok(node)
    }

    /// The node's namespace name, for `ip -n` / `ip netns exec` / `in_netns`.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The bridge's name in the node namespace.
    pub fn bridge(&self) -> &str {
        BRIDGE
    }

    /// The bridge's address: every pod's default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The node's pod network, `(network address, 24)`.
    pub fn subnet(&self) -> (Ipv4Addr, u8) {
        (self.subnet, PREFIX_LEN)
    }

    /// True when `addr` is in the node's pod /24.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        addr.octets()[..3] == self.subnet.octets()[..3]
    }

    /// `ip netns exec <node> <program>`: a command run in the node namespace.
    pub fn command(&self, program: &str) -> Command {
        netns_command(&self.netns, program)
    }

    /// Runs `f` on a thread inside the node namespace (see `in_netns`).
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        netns::in_netns(&self.netns, f)
    }

    /// Makes pod `name` (a DNS label, unique on this node): namespace
    /// `<node>-<name>` with `eth0` at the next free address of the node's /24,
    /// a default route via the bridge and `lo` up; the veth's host side is a
    /// port of `cbr0`, up.
    pub fn pod(&self, name: &str) -> Result<Pod, PodError> {
        self.make_pod(name, netns::add)
    }

    /// Makes pod `name` out of the network namespace of process `pid` (a
    /// container started with no network), wired as [`Node::pod`] wires a
    /// new one: what a CNI plugin does for a runtime's pod sandbox.
    pub fn attach_pod(&self, name: &str, pid: u32) -> Result<Pod, PodError> {
        self.make_pod(name, |ns| netns::attach(ns, pid))
    }

    fn make_pod(
        &self,
        name: &str,
        create: impl FnOnce(&str) -> Result<(), NetnsError>,
    ) -> Result<Pod, PodError> {
        check_name("pod name", name, 63, true)?;
        let (pod_ns, host_veth, host) = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.pods.iter().any(|p| p.name == name) {
                return Err(PodError::Duplicate {
                    node: self.netns.clone(),
                    pod: name.to_string(),
                });
            }
            if state.next_host > 254 || state.next_host < 2 {
                return Err(PodError::Full {
                    node: self.netns.clone(),
                    subnet: self.subnet,
                });
            }
            let host = state.next_host;
            state.next_host = state.next_host.wrapping_add(1);
            let host_veth = veth_name(&self.netns, name, &state.pods);
            let pod_ns = format!("{}-{name}", self.netns);
            state.pods.push(PodSlot {
                name: name.to_string(),
                netns: pod_ns.clone(),
                host_veth: host_veth.clone(),
            });
            (pod_ns, host_veth, host)
        };
        let [a, b, c, _] = self.subnet.octets();
        let mut pod = Pod {
            name: name.to_string(),
            netns: pod_ns,
            node_netns: self.netns.clone(),
            ip: Ipv4Addr::new(a, b, c, host),
            gateway: self.gateway,
            host_veth,
            host_ifindex: 0,
        };
        match create(&pod.netns)
            .map_err(PodError::from)
            .and_then(|()| self.wire(&pod))
        {
            Ok(index) => {
                pod.host_ifindex = index;
                Ok(pod)
            }
            Err(e) => {
                if let Err(cleanup) = self.remove(&pod.name) {
                    eprintln!(
                        "testkit: cannot remove half-made pod {}: {cleanup}",
                        pod.netns
                    );
                }
                Err(e)
            }
        }
    }

    /// The `ip` steps that turn a reserved pod slot, its namespace made,
    /// into a running pod;
    /// returns the host veth's interface index.
    fn wire(&self, pod: &Pod) -> Result<u32, PodError> {
        let (node, ns, veth) = (self.netns.as_str(), pod.netns.as_str(), &pod.host_veth);
        disable_ipv6(ns)?;
        // The pod end is created directly inside the pod namespace, so no
        // `eth0` ever appears on the node.
        ip([
            "-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(["-n", node, "link", "set", veth, "master", BRIDGE, "up"])?;
        ip(["-n", ns, "link", "set", "lo", "up"])?;
        let addr = format!("{}/{PREFIX_LEN}", pod.ip);
        ip(["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
        ip(["-n", ns, "link", "set", "eth0", "up"])?;
        netns::wait_ready(node, veth)?;
        netns::wait_ready(ns, "eth0")?;
        let gw = self.gateway.to_string();
        ip([
            "-n", ns, "route", "add", "default", "via", &gw, "dev", "eth0",
        ])?;
        ifindex(node, veth)
    }

    /// Deletes `pod`: first its host veth (so the interface vanishes from the
    /// node at once, even if something still holds the pod namespace), then
    /// the processes in it and its namespace.
    pub fn remove_pod(&self, pod: Pod) -> Result<(), PodError> {
        if pod.node_netns != self.netns {
            return Err(PodError::ForeignPod {
                pod: pod.name,
                owner: pod.node_netns,
                node: self.netns.clone(),
            });
        }
        self.remove(&pod.name)
    }

    fn remove(&self, name: &str) -> Result<(), PodError> {
        let slot = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(i) = state.pods.iter().position(|p| p.name == name) else {
                return Ok(());
            };
            state.pods.remove(i)
        };
        let veth = ip(["-n", &self.netns, "link", "del", &slot.host_veth]);
        let ns = if netns::exists(&slot.netns) {
            netns::delete(&slot.netns)
        } else {
            Ok(())
        };
        // A veth that was never made is fine; a namespace that will not go is not.
        ns?;
        if let Err(e) = veth
            && ifindex(&self.netns, &slot.host_veth).is_ok()
        {
            return Err(e.into());
        }
        Ok(())
    }

    /// Waits until something accepts TCP connections on `addr`, connecting
    /// from inside the node namespace (which routes to every pod).
    pub fn wait_for_tcp(&self, addr: SocketAddr, timeout: Duration) -> Result<(), PodError> {
        let deadline = Instant::now() + timeout;
        let up = self.in_netns(|| {
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return true;
                }
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        })?;
        if up {
            Ok(())
        } else {
            Err(PodError::Timeout {
                addr,
                timeout,
                node: self.netns.clone(),
            })
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let pods = std::mem::take(
            &mut self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pods,
        );
        for pod in pods {
            if netns::exists(&pod.netns)
                && let Err(e) = netns::delete(&pod.netns)
            {
                eprintln!("testkit: cannot delete pod namespace {}: {e}", pod.netns);
            }
        }
        if let Err(e) = netns::delete(&self.netns) {
            eprintln!("testkit: cannot delete node namespace {}: {e}", self.netns);
        }
        release_subnet(self.subnet);
        netns::disown(&self.netns);
    }
}

impl Pod {
    /// `ip netns exec <pod> <program>`: a command run in the pod's namespace.
    pub fn command(&self, program: &str) -> Command {
        netns_command(&self.netns, program)
    }

    /// Starts `cmd`, which must come from `self.command(…)`, as a `Process`
    /// (killed with its process group and reaped on drop). Refusing other
    /// commands keeps a test's servers from running in the host namespace by
    /// mistake.
    pub fn spawn(&self, cmd: &mut Command) -> Result<Process, PodError> {
        let args: Vec<_> = cmd.get_args().take(3).collect();
        let in_pod = cmd.get_program() == "ip"
            && args.len() == 3
            && args[0] == "netns"
            && args[1] == "exec"
            && args[2] == self.netns.as_str();
        if !in_pod {
            return Err(PodError::NotInPod {
                command: format!("{cmd:?}").replace('"', ""),
                pod: self.name.clone(),
            });
        }
        Process::spawn(cmd).map_err(PodError::Spawn)
    }

    /// Runs `f` on a thread inside the pod's namespace (see `in_netns`).
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        netns::in_netns(&self.netns, f)
    }

    /// The pod's address with `port`.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.ip, port))
    }
}

fn netns_command(ns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    cmd
}

/// Sets `/proc/sys/<key>` in namespace `ns`: /proc/sys/net answers for the
/// namespace of the thread that opens it.
fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), PodError> {
    let path = format!("/proc/sys/{key}");
    netns::in_netns(ns, || std::fs::write(&path, value))?.map_err(|source| PodError::Sysctl {
        netns: ns.to_string(),
        key: key.to_string(),
        source,
    })
}

/// Switches IPv6 off (`all` for existing interfaces, `default` for new
/// ones). A kernel without IPv6 has no such keys, which is as good.
fn disable_ipv6(ns: &str) -> Result<(), PodError> {
    for conf in ["all", "default"] {
        match sysctl(ns, &format!("net/ipv6/conf/{conf}/disable_ipv6"), "1") {
            Err(PodError::Sysctl { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// An interface's index, from `ip -o link show dev X` (`5: X@if2: <…`).
pub(crate) fn ifindex(ns: &str, dev: &str) -> Result<u32, PodError> {
    let out = ip(["-n", ns, "-o", "link", "show", "dev", dev])?;
    out.split(':')
        .next()
        .and_then(|i| i.trim().parse().ok())
        .ok_or_else(|| PodError::Parse {
            what: format!("the index of {dev} in {ns}"),
            output: out.clone(),
        })
}

/// A CNI-style host veth name (`veth` + 8 hex digits, 12 of the 15 characters
/// an interface name may have), derived from the pod's namespace and unique
/// on the node.
fn veth_name(node: &str, pod: &str, taken: &[PodSlot]) -> String {
    // FNV-1a: stable across runs, so a name in a failure message can be found again.
    let mut h: u32 = 0x811c_9dc5;
    for b in node.bytes().chain([b'/']).chain(pod.bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    loop {
        let name = format!("veth{h:08x}");
        if !taken.iter().any(|p| p.host_veth == name) {
            return name;
        }
        h = h.wrapping_add(1);
    }
}

/// The /24s a node may use: 10.244.0.0/16 (flannel's default pod network)
/// first, then 172.30.0.0/16 and 192.168.0.0/16.
fn candidate(i: usize) -> Ipv4Addr {
    let third = (i % 256) as u8;
    match i / 256 {
        0 => Ipv4Addr::new(10, 244, third, 0),
        1 => Ipv4Addr::new(172, 30, third, 0),
        _ => Ipv4Addr::new(192, 168, third, 0),
    }
}

const CANDIDATES: usize = 3 * 256;

fn allocate_subnet() -> Result<Ipv4Addr, PodError> {
    let host = ip(["-4", "route", "show", "table", "all"])
        .map(|routes| route_prefixes(&routes))
        .unwrap_or_default();
    let mut live = SUBNETS.lock().unwrap_or_else(PoisonError::into_inner);
    // Start where the pid points, so concurrent test processes tend to differ
    // too (which only matters for reading captures: nodes never share a wire).
    let start = (std::process::id() as usize).wrapping_mul(7) % 256;
    let free = (0..CANDIDATES)
        .map(|i| candidate(if i < 256 { (start + i) % 256 } else { i }))
        .find(|net| {
            !live.contains(net)
                && !host
                    .iter()
                    .any(|&route| overlaps((u32::from(*net), PREFIX_LEN), route))
        })
        .ok_or(PodError::NoSubnet)?;
    live.push(free);
    Ok(free)
}

fn release_subnet(net: Ipv4Addr) {
    SUBNETS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|n| *n != net);
}

/// Destination prefixes of `ip -4 route show table all`, without default
/// routes (which cover everything and would leave no candidate).
fn route_prefixes(routes: &str) -> Vec<(u32, u8)> {
    const TYPES: &[&str] = &[
        "unicast",
        "local",
        "broadcast",
        "multicast",
        "unreachable",
        "blackhole",
        "prohibit",
        "throw",
        "nat",
        "anycast",
    ];
    routes
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let mut dst = words.next()?;
            if TYPES.contains(&dst) {
                dst = words.next()?;
            }
            let (addr, len) = match dst.split_once('/') {
                Some((a, l)) => (a, l.parse().ok()?),
                None => (dst, 32),
            };
            let addr: Ipv4Addr = addr.parse().ok()?;
            (len <= 32).then(|| (u32::from(addr), len))
        })
        .collect()
}

fn overlaps((a, alen): (u32, u8), (b, blen): (u32, u8)) -> bool {
    let len = alen.min(blen);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_routes_parse_into_prefixes() {
        let routes = "default via 192.0.2.1 dev eth0\n\
                      192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2\n\
                      local 192.0.2.2 dev eth0 table local proto kernel scope host src 192.0.2.2\n\
                      broadcast 127.255.255.255 dev lo table local proto kernel scope link\n\
                      local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1\n\
                      blackhole 10.244.3.0/24\n";
        let ip = |s: &str| u32::from(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(
            route_prefixes(routes),
            vec![
                (ip("192.0.2.0"), 24),
                (ip("192.0.2.2"), 32),
                (ip("127.255.255.255"), 32),
                (ip("127.0.0.0"), 8),
                (ip("10.244.3.0"), 24),
            ]
        );
    }

    #[test]
    fn prefixes_overlap_when_one_contains_the_other() {
        let ip = |s: &str| u32::from(s.parse::<Ipv4Addr>().unwrap());
        let cases = [
            ((ip("10.244.3.0"), 24), (ip("10.0.0.0"), 8), true),
            ((ip("10.244.3.0"), 24), (ip("10.244.3.7"), 32), true),
            ((ip("10.244.3.0"), 24), (ip("10.244.4.0"), 24), false),
            ((ip("10.244.3.0"), 24), (ip("11.0.0.0"), 8), false),
            ((ip("10.244.3.0"), 24), (0, 0), true),
        ];
        for (a, b, want) in cases {
            assert_eq!(overlaps(a, b), want, "{a:?} {b:?}");
        }
    }

    #[test]
    fn candidates_are_distinct_24s() {
        let all: std::collections::HashSet<_> = (0..CANDIDATES).map(candidate).collect();
        assert_eq!(all.len(), CANDIDATES);
        assert!(all.iter().all(|n| n.octets()[3] == 0));
    }

    #[test]
    fn veth_names_fit_and_avoid_taken_ones() {
        let first = veth_name("kt-pods-12-0", "web", &[]);
        assert!(first.len() <= 15 && first.starts_with("veth"), "{first}");
        let taken = [PodSlot {
            name: "web".into(),
            netns: "kt-pods-12-0-web".into(),
            host_veth: first.clone(),
        }];
        let second = veth_name("kt-pods-12-0", "web", &taken);
        assert_ne!(first, second);
        assert_eq!(second.len(), first.len());
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(check_name("node tag", "pods", 16, false).is_ok());
        assert!(check_name("node tag", "a-b", 16, false).is_err());
        assert!(check_name("node tag", "", 16, false).is_err());
        assert!(check_name("node tag", "abcdefghijklmnopq", 16, false).is_err());
        assert!(check_name("pod name", "web-1", 63, true).is_ok());
        assert!(check_name("pod name", "-web", 63, true).is_err());
        assert!(check_name("pod name", "Web", 63, true).is_err());
    }
}
