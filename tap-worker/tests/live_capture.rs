//! Live capture on real interfaces: each test builds its own pair of network
//! namespaces joined by a veth (`kt-a` in one, `kt-b` in the other,
//! 10.199.N.1 and .2), captures on `kt-a` from a thread moved into the first
//! namespace, and sends traffic between the two with python3. Nothing
//! touches an interface or address outside the namespaces a test made, and a
//! guard deletes them even when the test panics.
//!
//! These tests need root (network namespaces, CAP_NET_RAW); without it they
//! print `SKIPPED: needs root` and pass, except under KUBETAP_REQUIRE_PEERS=1
//! (set by `cargo xtask test`), where they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tap_worker::capture::link;
use tap_worker::capture::live::{Fanout, LiveCapture, LiveConfig, LiveError, Targets, enter_netns};

// ---------------------------------------------------------------- setup

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

/// True when the test may run; otherwise says why it is skipped, or fails
/// under KUBETAP_REQUIRE_PEERS=1.
fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    testkit::skip(
        "live capture",
        "needs root (network namespaces and CAP_NET_RAW for live capture)",
    )
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

const MAC_A: &str = "02:6b:74:00:00:0a";
const MAC_B: &str = "02:6b:74:00:00:0b";

/// Two namespaces joined by a veth; deleted on drop.
struct Pair {
    n: u32,
    a: String,
    b: String,
}

impl Pair {
    fn new() -> Pair {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 256, "too many namespace pairs for 10.199.N.0/24");
        let pid = std::process::id();
        let pair = Pair {
            n,
            a: format!("kt-lc-{pid}-{n}-a"),
            b: format!("kt-lc-{pid}-{n}-b"),
        };
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        let (a, b) = (pair.a.as_str(), pair.b.as_str());
        #[rustfmt::skip]
        ip(&["-n", a, "link", "add", "kt-a", "address", MAC_A, "type", "veth",
             "peer", "name", "kt-b", "address", MAC_B, "netns", b]);
        for (ns, dev) in [(a, "kt-a"), (b, "kt-b")] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        for (ns, dev) in [(a, "kt-a"), (b, "kt-b")] {
            testkit::netns::wait_ready(ns, dev).expect("the veth pair comes up");
        }
        pair.add_addrs(1, 2);
        pair
    }

    /// Adds 10.199.N.`host_a` and fd00:199:N::`host_a` on kt-a (and the
    /// same for `host_b` on kt-b), with permanent neighbour entries so no
    /// ARP or neighbour discovery delays or drops the first datagrams.
    fn add_addrs(&self, host_a: u8, host_b: u8) {
        let (a, b) = (self.a.as_str(), self.b.as_str());
        ip(&[
            "-n",
            a,
            "addr",
            "add",
            &format!("{}/24", self.v4(host_a)),
            "dev",
            "kt-a",
        ]);
        ip(&[
            "-n",
            b,
            "addr",
            "add",
            &format!("{}/24", self.v4(host_b)),
            "dev",
            "kt-b",
        ]);
        #[rustfmt::skip]
        ip(&["-n", a, "addr", "add", &format!("{}/64", self.v6(host_a)), "dev", "kt-a", "nodad"]);
        #[rustfmt::skip]
        ip(&["-n", b, "addr", "add", &format!("{}/64", self.v6(host_b)), "dev", "kt-b", "nodad"]);
        for (ns, dev, peer, mac) in [(a, "kt-a", host_b, MAC_B), (b, "kt-b", host_a, MAC_A)] {
            for addr in [self.v4(peer), self.v6(peer)] {
                #[rustfmt::skip]
                ip(&["-n", ns, "neigh", "replace", &addr, "lladdr", mac, "dev", dev, "nud", "permanent"]);
            }
        }
    }

    fn v4(&self, host: u8) -> String {
        format!("10.199.{}.{host}", self.n)
    }

    fn v6(&self, host: u8) -> String {
        format!("fd00:199:{}::{host}", self.n)
    }

    fn ipaddr(&self, host: u8) -> IpAddr {
        self.v4(host).parse().unwrap()
    }

    /// Runs `f` on a thread inside namespace `a`, where captures open.
    fn in_a<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let path = PathBuf::from(format!("/run/netns/{}", self.a));
        let thread = std::thread::spawn(move || {
            enter_netns(&path).expect("entering the test namespace");
            f()
        });
        thread
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

// ---------------------------------------------------------------- traffic

/// Sends `count` UDP datagrams `PREFIX-i` from SRC:SPORT to DST:DPORT.
const SEND_UDP: &str = r#"
import socket, sys
src, sport, dst, dport, prefix, count = sys.argv[1:7]
s = socket.socket(socket.AF_INET6 if ':' in dst else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, int(sport)))
for i in range(int(count)):
    s.sendto(f'{prefix}-{i}'.encode(), (dst, int(dport)))
"#;

/// Sends PER datagrams `flowF-i` on each of FLOWS flows from SRC (source
/// ports FIRST_SPORT + F) to DST:DPORT.
const SEND_FLOWS: &str = r#"
import socket, sys
src, dst, dport, first, flows, per = sys.argv[1:7]
socks = []
for f in range(int(flows)):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, int(first) + f))
    socks.append(s)
for i in range(int(per)):
    for f, s in enumerate(socks):
        s.sendto(f'flow{f}-{i}'.encode(), (dst, int(dport)))
"#;

/// Sends UDP datagrams as fast as it can for SECONDS; prints the count.
const FLOOD_UDP: &str = r#"
import socket, sys, time
src, dst, dport, seconds = sys.argv[1:5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
end = time.monotonic() + float(seconds)
n = 0
msg = b'x' * 18
addr = (dst, int(dport))
while time.monotonic() < end:
    for _ in range(256):
        s.sendto(msg, addr)
    n += 256
print(n)
"#;

/// Writes raw Ethernet frames on IFACE carrying an 802.1Q tag (VLAN 7) and
/// IPv4/UDP datagrams `PREFIX-i`.
const SEND_TAGGED: &str = r#"
import socket, struct, sys
iface, dst_mac, src_mac, src, dst, sport, dport, prefix, count = sys.argv[1:10]
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
mac = lambda m: bytes.fromhex(m.replace(':', ''))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for i in range(int(count)):
    payload = f'{prefix}-{i}'.encode()
    udp = struct.pack('!HHHH', int(sport), int(dport), 8 + len(payload), 0) + payload
    hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:]
    s.send(mac(dst_mac) + mac(src_mac) + struct.pack('!HH', 0x8100, 7) + b'\x08\x00' + hdr + udp)
"#;

/// Attaches to the persistent tun device IFACE, sends `count` datagrams
/// `out-i` from LOCAL through it and writes `count` IPv4/UDP packets `in-i`
/// from REMOTE to LOCAL into it.
const TUN_TRAFFIC: &str = r#"
import fcntl, os, socket, struct, sys, time
iface, local, remote, count = sys.argv[1:5]
fd = os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', iface.encode(), 0x0001 | 0x1000))
time.sleep(0.2)
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((local, 40000))
for i in range(int(count)):
    s.sendto(f'out-{i}'.encode(), (remote, 9000))
for i in range(int(count)):
    payload = f'in-{i}'.encode()
    udp = struct.pack('!HHHH', 40001, 9000, 8 + len(payload), 0) + payload
    hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                      socket.inet_aton(remote), socket.inet_aton(local))
    hdr = hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:]
    os.write(fd, hdr + udp)
time.sleep(0.2)
"#;

fn python(ns: &str, script: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "python3", "-c", script])
        .args(args);
    cmd
}

fn send_udp(ns: &str, src: &str, sport: u16, dst: &str, dport: u16, prefix: &str, count: u32) {
    let (sport, dport, count) = (sport.to_string(), dport.to_string(), count.to_string());
    run(&mut python(
        ns,
        SEND_UDP,
        &[src, &sport, dst, &dport, prefix, &count],
    ));
}

fn spawn_sh(ns: &str, script: &str) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", script])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawning a shell in the test namespace")
}

// ---------------------------------------------------------------- reading

#[derive(Debug, Clone)]
struct Frame {
    ts_ns: u64,
    link: u32,
    data: Vec<u8>,
    orig_len: u32,
}

/// Reads until no packet arrived for `idle`.
fn drain(cap: &mut LiveCapture, idle: Duration) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(p) = cap.next_packet(idle).expect("reading the capture") {
        frames.push(Frame {
            ts_ns: p.ts_ns,
            link: p.link,
            data: p.data.to_vec(),
            orig_len: p.orig_len,
        });
    }
    frames
}

/// Runs `traffic` on another thread while this one reads `cap`, then reads
/// until no packet arrived for `idle`. The ring keeps only `block_count`
/// block timeouts' worth of packets (200 ms by default) however few each
/// block holds, so a reader that waits for several senders (each a Python
/// start, far slower on a busy machine) loses the first senders' packets.
fn capture_while(
    cap: &mut LiveCapture,
    idle: Duration,
    traffic: impl FnOnce() + Send,
) -> Vec<Frame> {
    std::thread::scope(|scope| {
        let sender = scope.spawn(traffic);
        let mut frames = Vec::new();
        loop {
            let finished = sender.is_finished();
            let got = cap
                .next_packet(Duration::from_millis(20))
                .expect("reading the capture");
            match got {
                Some(p) => frames.push(Frame {
                    ts_ns: p.ts_ns,
                    link: p.link,
                    data: p.data.to_vec(),
                    orig_len: p.orig_len,
                }),
                None if finished => break,
                None => {}
            }
        }
        if let Err(panic) = sender.join() {
            std::panic::resume_unwind(panic);
        }
        frames.extend(drain(cap, idle));
        frames
    })
}

/// A capture of `dev` whose ring outlasts a stalled test: 64 blocks of 128
/// KiB hold 3.2 s of block timeouts (the default's 4 blocks hold 200 ms),
/// so a reader that waits for a Python sender on a busy machine loses
/// nothing. Tests of the ring's own limits set theirs.
fn roomy(dev: &str) -> LiveConfig {
    let mut config = LiveConfig::new(dev);
    config.block_size = 128 << 10;
    config.block_count = 64;
    config
}

const IDLE: Duration = Duration::from_millis(400);
/// Three block timeouts: long enough for a partly filled block to retire.
const SHORT_IDLE: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Udp {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: String,
    vlan: Option<u16>,
}

/// The UDP datagram a frame carries at its top level (not one quoted inside
/// an ICMP error), if any.
fn udp_of(f: &Frame) -> Option<Udp> {
    let d = &f.data;
    let be16 = |at: usize| d.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let (mut l3, mut ethertype, mut vlan) = (0, None, None);
    if f.link == link::ETHERNET {
        l3 = 14;
        ethertype = be16(12);
        if ethertype == Some(0x8100) {
            vlan = Some(be16(14)? & 0xfff);
            ethertype = be16(16);
            l3 = 18;
        }
    }
    let version = d.get(l3)? >> 4;
    let (src, dst, l4) = match (ethertype, version) {
        (Some(0x0800) | None, 4) => {
            if d[l3 + 9] != 17 {
                return None;
            }
            let a = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&d[at..at + 4]).unwrap());
            (a(l3 + 12), a(l3 + 16), l3 + 4 * usize::from(d[l3] & 0xf))
        }
        (Some(0x86dd) | None, 6) => {
            if d[l3 + 6] != 17 {
                return None;
            }
            let a = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&d[at..at + 16]).unwrap());
            (a(l3 + 8), a(l3 + 24), l3 + 40)
        }
        _ => return None,
    };
    Some(Udp {
        src,
        dst,
        sport: be16(l4)?,
        dport: be16(l4 + 2)?,
        payload: String::from_utf8_lossy(d.get(l4 + 8..)?).into_owned(),
        vlan,
    })
}

fn payload_counts(frames: &[Frame]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for u in frames.iter().filter_map(udp_of) {
        *counts.entry(u.payload).or_insert(0) += 1;
    }
    counts
}

fn expected(prefix: &str, count: u32) -> impl Iterator<Item = String> {
    (0..count).map(move |i| format!("{prefix}-{i}"))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

// ---------------------------------------------------------------- tests

#[test]
fn every_datagram_is_captured_once_in_both_directions() {
    if !root_or_skip() {
        return;
    }
    let pair = Pair::new();
    let (a, b) = (pair.a.clone(), pair.b.clone());
    let (ip_a, ip_b) = (pair.v4(1), pair.v4(2));
    let start = now_ns();
    let (frames, stats, link_type) = pair.in_a(move || {
        let mut cap = LiveCapture::open(roomy("kt-a")).expect("opening kt-a");
        let frames = capture_while(&mut cap, IDLE, || {
            send_udp(&b, &ip_b, 40000, &ip_a, 9000, "ba", 40);
            send_udp(&a, &ip_a, 40001, &ip_b, 9001, "ab", 40);
        });
        (frames, cap.stats().unwrap(), cap.link_type())
    });
    let end = now_ns();
    assert_eq!(link_type, link::ETHERNET);

    let mut seen = BTreeMap::new();
    for f in &frames {
        assert_eq!(f.link, link::ETHERNET);
        assert_eq!(
            f.orig_len as usize,
            f.data.len(),
            "small packets are not cut"
        );
        assert!(
            start <= f.ts_ns && f.ts_ns <= end,
            "timestamp {} outside the test",
            f.ts_ns
        );
        if let Some(u) = udp_of(f) {
            assert!(
                seen.insert(u.payload.clone(), u).is_none(),
                "captured twice"
            );
        }
    }
    let missing: Vec<String> = expected("ba", 40)
        .chain(expected("ab", 40))
        .filter(|p| !seen.contains_key(p))
        .collect();
    assert!(missing.is_empty(), "not captured: {missing:?}; {stats:?}");
    for p in expected("ba", 40) {
        let u = seen.get(&p).unwrap_or_else(|| panic!("{p} not captured"));
        assert_eq!((u.src, u.dst), (pair.ipaddr(2), pair.ipaddr(1)), "{p}");
        assert_eq!((u.sport, u.dport), (40000, 9000), "{p}");
    }
    for p in expected("ab", 40) {
        let u = seen.get(&p).unwrap_or_else(|| panic!("{p} not captured"));
        assert_eq!((u.src, u.dst), (pair.ipaddr(1), pair.ipaddr(2)), "{p}");
        assert_eq!((u.sport, u.dport), (40001, 9001), "{p}");
    }
    assert_eq!(seen.len(), 80, "only our datagrams: {:?}", seen.keys());
    // Unfiltered, the socket also sees IPv6 link chatter; every packet the
    // kernel accepted was delivered (a late one may still sit in the ring).
    assert_eq!(stats.delivered, frames.len() as u64);
    assert_eq!(stats.kernel_drops, 0);
    assert!(stats.packets >= stats.delivered, "{stats:?}");
}

#[test]
fn the_filter_passes_only_the_targets_and_can_be_replaced() {
    if !root_or_skip() {
        return;
    }
    let pair = Pair::new();
    pair.add_addrs(11, 12);
    let (a, b) = (pair.a.clone(), pair.b.clone());
    let [a1, a11, b2, b12] = [1, 11, 2, 12].map(|h| pair.v4(h));
    let [a6, b6] = [1, 2].map(|h| pair.v6(h));
    let targets = Targets {
        ips: vec![pair.ipaddr(12), pair.v6(2).parse().unwrap()],
        ports: vec![7000],
        ..Default::default()
    };
    let only_b2 = Targets {
        ips: vec![pair.ipaddr(2)],
        ports: vec![],
        ..Default::default()
    };
    let (first, second, third, stats) = pair.in_a(move || {
        let mut config = roomy("kt-a");
        config.filter = Some(targets);
        let mut cap = LiveCapture::open(config).expect("opening kt-a");
        // The ring keeps at most `block_count` retired blocks however few
        // packets each holds, so read after every batch.
        let mut first = Vec::new();
        let mut batch =
            |cap: &mut LiveCapture, ns: &str, src: &str, sport, dst: &str, dport, prefix| {
                send_udp(ns, src, sport, dst, dport, prefix, 5);
                first.extend(drain(cap, SHORT_IDLE));
            };
        // Matching: a target address and port, either side, either family.
        batch(&mut cap, &b, &b12, 40001, &a1, 7000, "m-v4-dport");
        batch(&mut cap, &a, &a1, 7000, &b12, 40002, "m-v4-sport");
        batch(&mut cap, &b, &b6, 40003, &a6, 7000, "m-v6");
        // Not matching: right port, other address; right address, other port.
        batch(&mut cap, &b, &b2, 40004, &a1, 7000, "n-ip");
        batch(&mut cap, &b, &b12, 40005, &a1, 7001, "n-port");
        batch(&mut cap, &a, &a11, 40006, &b2, 7000, "n-ip2");
        batch(&mut cap, &b, &b6, 40007, &a6, 7001, "n-v6-port");
        first.extend(drain(&mut cap, IDLE));
        let stats = cap.stats().unwrap();

        cap.set_filter(None).unwrap();
        send_udp(&b, &b2, 40004, &a1, 7000, "all", 5);
        let second = drain(&mut cap, IDLE);

        cap.set_filter(Some(&only_b2)).unwrap();
        send_udp(&b, &b2, 40004, &a1, 7000, "now-b2", 5);
        send_udp(&b, &b12, 40001, &a1, 7000, "now-not-b12", 5);
        let third = drain(&mut cap, IDLE);
        (first, second, third, stats)
    });

    let counts = payload_counts(&first);
    let want: BTreeMap<String, usize> = ["m-v4-dport", "m-v4-sport", "m-v6"]
        .iter()
        .flat_map(|p| expected(p, 5))
        .map(|p| (p, 1))
        .collect();
    assert_eq!(counts, want);
    // Nothing else at all: no ARP, no neighbour discovery, no ICMP.
    assert_eq!(
        first.len(),
        15,
        "{:?}",
        first.iter().map(|f| &f.data).collect::<Vec<_>>()
    );
    assert_eq!(
        stats.packets, 15,
        "the kernel counts only what passed: {stats:?}"
    );
    assert_eq!(stats.delivered, 15);

    let counts = payload_counts(&second);
    assert!(
        expected("all", 5).all(|p| counts.get(&p) == Some(&1)),
        "{counts:?}"
    );

    let counts = payload_counts(&third);
    assert!(
        expected("now-b2", 5).all(|p| counts.get(&p) == Some(&1)),
        "{counts:?}"
    );
    assert!(
        !counts.keys().any(|p| p.starts_with("now-not-b12")),
        "{counts:?}"
    );
}

#[test]
fn a_full_ring_drops_and_the_counters_add_up() {
    if !root_or_skip() {
        return;
    }
    const SENT: u32 = 600;
    let pair = Pair::new();
    let a = pair.a.clone();
    let (ip_a, ip_b) = (pair.v4(1), pair.v4(2));
    let targets = Targets {
        ips: vec![pair.ipaddr(2)],
        ports: vec![9000],
        ..Default::default()
    };
    let (frames, stats) = pair.in_a(move || {
        let mut config = LiveConfig::new("kt-a");
        // The smallest ring: one page-sized block.
        config.block_size = 4096;
        config.block_count = 1;
        config.filter = Some(targets);
        let mut cap = LiveCapture::open(config).expect("opening a one-block ring");
        // Outgoing on kt-a: every datagram passes the socket's tap before
        // the veth could drop it, so the kernel's count is exact.
        send_udp(&a, &ip_a, 40000, &ip_b, 9000, "burst", SENT);
        std::thread::sleep(Duration::from_millis(200));
        let frames = drain(&mut cap, IDLE);
        (frames, cap.stats().unwrap())
    });
    let counts = payload_counts(&frames);
    assert!(counts.values().all(|&n| n == 1), "duplicates: {counts:?}");
    let sent: BTreeSet<String> = expected("burst", SENT).collect();
    assert!(counts.keys().all(|p| sent.contains(p)), "{counts:?}");
    eprintln!("one 4 KiB block, {SENT} datagrams: {stats:?}");
    assert_eq!(stats.delivered, frames.len() as u64);
    assert!(stats.kernel_drops > 0, "{stats:?}");
    assert!(stats.freeze_count > 0, "{stats:?}");
    assert_eq!(stats.packets, u64::from(SENT), "{stats:?}");
    assert_eq!(
        stats.delivered + stats.kernel_drops,
        u64::from(SENT),
        "{stats:?}"
    );
    // The kernel resets its counters on each read; ours keep the sum.
}

#[test]
fn a_deleted_interface_ends_the_capture_after_its_last_packets() {
    deleted_interface(Duration::from_millis(200), Duration::ZERO);
}

/// A reader that never waits in `next_packet` learns of the deletion too.
#[test]
fn a_non_blocking_reader_sees_the_deletion() {
    deleted_interface(Duration::ZERO, Duration::from_millis(5));
}

/// Reads with `timeout`, sleeping `pause` between reads, while the
/// interface is deleted.
fn deleted_interface(timeout: Duration, pause: Duration) {
    if !root_or_skip() {
        return;
    }
    let pair = Pair::new();
    let a = pair.a.clone();
    let (ip_a, ip_b) = (pair.v4(1), pair.v4(2));
    let (frames, err, again, took) = pair.in_a(move || {
        let mut cap = LiveCapture::open(roomy("kt-a")).expect("opening kt-a");
        send_udp(&a, &ip_a, 40000, &ip_b, 9000, "last", 20);
        // Deleted while the capture waits, with the last block not yet
        // retired by its timeout.
        let mut deleter = spawn_sh(&a, "ip link del kt-a");
        let start = Instant::now();
        let mut frames = Vec::new();
        let err = loop {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no end within 5 s"
            );
            std::thread::sleep(pause);
            match cap.next_packet(timeout) {
                Ok(Some(p)) => frames.push(Frame {
                    ts_ns: p.ts_ns,
                    link: p.link,
                    data: p.data.to_vec(),
                    orig_len: p.orig_len,
                }),
                Ok(None) => {}
                Err(e) => break e,
            }
        };
        let took = start.elapsed();
        assert!(deleter.wait().unwrap().success());
        let again = cap
            .next_packet(Duration::from_millis(10))
            .map(|p| p.is_some());
        cap.stats().expect("counters still readable");
        (frames, err, again, took)
    });
    assert!(matches!(err, LiveError::InterfaceGone { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("'kt-a'") && msg.contains("deleted"), "{msg}");
    assert!(
        matches!(again, Err(LiveError::InterfaceGone { .. })),
        "{again:?}"
    );
    let counts = payload_counts(&frames);
    assert!(
        expected("last", 20).all(|p| counts.get(&p) == Some(&1)),
        "lost the last packets: {counts:?}"
    );
    eprintln!("interface deletion reported after {took:?}");
}

#[test]
fn a_downed_interface_pauses_the_capture_without_ending_it() {
    if !root_or_skip() {
        return;
    }
    let pair = Pair::new();
    let a = pair.a.clone();
    let (ip_a, ip_b) = (pair.v4(1), pair.v4(2));
    // Only our datagrams: taking the link down and up makes IPv6 chatter.
    let targets = Targets {
        ips: vec![pair.ipaddr(2)],
        ports: vec![9000],
        ..Default::default()
    };
    let (quiet, after) = pair.in_a(move || {
        let mut config = roomy("kt-a");
        config.filter = Some(targets);
        let mut cap = LiveCapture::open(config).expect("opening kt-a");
        send_udp(&a, &ip_a, 40000, &ip_b, 9000, "before", 10);
        ip(&["-n", &a, "link", "set", "kt-a", "down"]);
        let start = Instant::now();
        let mut quiet = Vec::new();
        while start.elapsed() < Duration::from_millis(800) {
            let got = cap
                .next_packet(Duration::from_millis(100))
                .expect("down is not an error");
            quiet.push(got.is_some());
        }
        ip(&["-n", &a, "link", "set", "kt-a", "up"]);
        send_udp(&a, &ip_a, 40000, &ip_b, 9000, "back", 10);
        (quiet, drain(&mut cap, IDLE))
    });
    // What was sent before going down is still delivered, then nothing.
    assert_eq!(quiet.iter().filter(|&&got| got).count(), 10, "{quiet:?}");
    assert!(!quiet.last().unwrap(), "packets while down: {quiet:?}");
    let counts = payload_counts(&after);
    assert!(
        expected("back", 10).all(|p| counts.get(&p) == Some(&1)),
        "{counts:?}"
    );
}

#[test]
fn a_missing_interface_is_named_in_the_error() {
    if !root_or_skip() {
        return;
    }
    let pair = Pair::new();
    let errs = pair.in_a(|| {
        ["kt-nope", "a-name-longer-than-ifnamsiz"]
            .map(|name| LiveCapture::open(LiveConfig::new(name)).expect_err("no such interface"))
    });
    for (err, name) in errs.iter().zip(["kt-nope", "a-name-longer-than-ifnamsiz"]) {
        assert!(matches!(err, LiveError::NoSuchInterface { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("'{name}'")) && msg.contains("no such network interface"),
            "{msg}"
        );
    }
}

#[test]
fn rings_the_kernel_or_the_node_cannot_take_are_refused_clearly() {
    if !root_or_skip() {
        return;
    }
    let pair = Pair::new();
    let a = pair.a.clone();
    let (ip_a, ip_b) = (pair.v4(1), pair.v4(2));
    let (errs, still_works) = pair.in_a(move || {
        let with = |block_size: usize, block_count: usize| {
            let mut c = LiveConfig::new("kt-a");
            c.block_size = block_size;
            c.block_count = block_count;
            LiveCapture::open(c).expect_err("refused")
        };
        let errs = vec![
            // The kernel's refusal: not a multiple of the page size.
            ("not page-aligned", with(4000, 4)),
            // Ours: does not fit the kernel's field; more than the node has.
            ("1 TiB block", with(1 << 40, 1)),
            ("1 TiB ring", with(1 << 30, 1 << 10)),
            ("no blocks", with(1 << 20, 0)),
        ];
        // The refusals left nothing behind: a sane ring still opens.
        let mut cap = LiveCapture::open(roomy("kt-a")).expect("opening kt-a");
        send_udp(&a, &ip_a, 40000, &ip_b, 9000, "ok", 3);
        (errs, payload_counts(&drain(&mut cap, IDLE)).len())
    });
    for (what, err) in &errs {
        let msg = err.to_string();
        eprintln!("{what}: {msg}");
        assert!(
            matches!(err, LiveError::RingRefused { .. }),
            "{what}: {err:?}"
        );
        assert!(
            msg.contains("'kt-a'") && msg.contains("page size"),
            "{what}: {msg}"
        );
    }
    assert!(
        errs[0].1.to_string().contains("4000 bytes"),
        "{:?}",
        errs[0]
    );
    assert!(
        errs[0].1.to_string().contains("Invalid argument"),
        "kernel's reason: {:?}",
        errs[0]
    );
    assert!(errs[2].1.to_string().contains("memory"), "{:?}", errs[2]);
    assert_eq!(still_works, 3);
}

#[test]
fn without_privileges_the_error_says_what_is_needed() {
    if !root_or_skip() {
        return;
    }
    // A copy of this test binary that `nobody` can run, wherever the build
    // directory is.
    let dir = std::env::temp_dir().join(format!("kt-lc-{}-perm", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("live_capture");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    run(Command::new("chmod").args(["755", dir.to_str().unwrap(), exe.to_str().unwrap()]));
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--exact", "unprivileged_open", "--ignored", "--nocapture"])
        .output()
        .expect("running setpriv");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("variant: Permission"), "{stdout}");
    assert!(
        stdout.contains("capturing on 'lo' needs root or CAP_NET_RAW"),
        "{stdout}"
    );
}

/// Run by `without_privileges_the_error_says_what_is_needed` as `nobody`.
#[test]
#[ignore = "helper: run as an unprivileged user by another test"]
fn unprivileged_open() {
    match LiveCapture::open(LiveConfig::new("lo")) {
        Ok(_) => println!("opened: running with privileges"),
        Err(e) => {
            let variant = format!("{e:?}");
            let variant = variant.split([' ', '{']).next().unwrap_or_default();
            println!("variant: {variant}\nmessage: {e}");
        }
    }
}

#[test]
fn fanout_gives_each_flow_to_one_socket() {
    if !root_or_skip() {
        return;
    }
    const FLOWS: u16 = 40;
    const FIRST_SPORT: u16 = 41000;
    let pair = Pair::new();
    let b = pair.b.clone();
    let (ip_a, ip_b) = (pair.v4(1), pair.v4(2));
    let targets = Targets {
        ips: vec![pair.ipaddr(2)],
        ports: vec![9000],
        ..Default::default()
    };
    let group = 0x6b00 + pair.n as u16;
    let (got, stats) = pair.in_a(move || {
        let open = || {
            let mut c = roomy("kt-a");
            c.fanout = Some(Fanout::Join(group));
            c.filter = Some(targets.clone());
            LiveCapture::open(c).expect("joining the fanout group")
        };
        let mut caps = [open(), open()];
        // Read while sending: a stalled TPACKET_V3 reader loses packets as
        // soon as every block has been retired, however empty the blocks.
        let (flows, first) = (FLOWS.to_string(), FIRST_SPORT.to_string());
        let mut sender = python(&b, SEND_FLOWS, &[&ip_b, &ip_a, "9000", &first, &flows, "3"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut got: [Vec<Frame>; 2] = Default::default();
        let mut idle_rounds = 0;
        let mut sent = false;
        while idle_rounds < 20 {
            let mut any = false;
            for (cap, frames) in caps.iter_mut().zip(&mut got) {
                while let Some(p) = cap.next_packet(Duration::from_millis(10)).unwrap() {
                    any = true;
                    frames.push(Frame {
                        ts_ns: p.ts_ns,
                        link: p.link,
                        data: p.data.to_vec(),
                        orig_len: p.orig_len,
                    });
                }
            }
            if !sent {
                sent = sender.try_wait().unwrap().is_some();
            } else if !any {
                idle_rounds += 1;
            }
        }
        assert!(sender.wait().unwrap().success());
        (got, caps.each_mut().map(|c| c.stats().unwrap()))
    });
    let mut owner: BTreeMap<u16, usize> = BTreeMap::new();
    let mut all = BTreeMap::new();
    for (socket, frames) in got.iter().enumerate() {
        for u in frames.iter().filter_map(udp_of) {
            assert!((FIRST_SPORT..FIRST_SPORT + FLOWS).contains(&u.sport));
            let previous = owner.insert(u.sport, socket);
            assert!(
                previous.is_none_or(|s| s == socket),
                "flow {} split over sockets",
                u.sport
            );
            *all.entry(u.payload).or_insert(0) += 1;
        }
    }
    let want: BTreeMap<String, usize> = (0..FLOWS)
        .flat_map(|f| expected(&format!("flow{f}"), 3).collect::<Vec<_>>())
        .map(|p| (p, 1))
        .collect();
    assert_eq!(all, want, "each datagram exactly once over the group");
    let per_socket = [0, 1].map(|s| owner.values().filter(|&&o| o == s).count());
    assert!(
        per_socket.iter().all(|&n| n > 0),
        "flows per socket: {per_socket:?}"
    );
    eprintln!("fanout: flows per socket {per_socket:?}, stats {stats:?}");
    for (st, frames) in stats.iter().zip(&got) {
        assert_eq!(
            (st.kernel_drops, st.packets),
            (0, frames.len() as u64),
            "{st:?}"
        );
    }
}

/// Answers each connection's one HTTP request with `ok PATH`, then closes.
const HTTP_SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 8080))
s.listen(256)
print('ready', flush=True)
while True:
    c, _ = s.accept()
    data = b''
    while b'\r\n\r\n' not in data:
        d = c.recv(4096)
        if not d:
            break
        data += d
    body = b'ok ' + (data.split(b' ')[1] if b' ' in data else b'?')
    c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' % (len(body), body))
    c.close()
"#;

/// COUNT connections to DST:8080, one `GET /cI` each, read to the end.
const HTTP_CLIENTS: &str = r#"
import socket, sys
dst, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    c = socket.create_connection((dst, 8080))
    c.sendall(b'GET /c%d HTTP/1.1\r\nHost: t\r\n\r\n' % i)
    while c.recv(4096):
        pass
    c.close()
"#;

#[test]
fn fanout_spreads_connections_over_sockets_and_keeps_each_whole() {
    use std::io::BufRead as _;
    use std::sync::{Arc, Mutex};
    use tap_worker::PipelineConfig;
    use tap_worker::ring::PacketRing;
    use tap_worker::tap::{LiveTap, Sink};

    if !root_or_skip() {
        return;
    }
    const CONNECTIONS: usize = 60;
    let pair = Pair::new();
    let (a, ip_b) = (pair.a.clone(), pair.v4(2));
    let mut server = python(&pair.b, HTTP_SERVER, &[&ip_b])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");

    let entries = Arc::new(Mutex::new(Vec::new()));
    let sink: Sink = {
        let entries = entries.clone();
        Arc::new(move |e| entries.lock().unwrap().push(e))
    };
    let targets = Targets {
        ips: vec![pair.ipaddr(2)],
        ports: vec![8080],
        ..Default::default()
    };
    let ring = Arc::new(Mutex::new(PacketRing::new(16 << 20)));
    let waiting = entries.clone();
    let (per_socket, pipeline, kernel, errors) = pair.in_a(move || {
        let config = LiveConfig {
            filter: Some(targets),
            ..roomy("kt-a")
        };
        let tap = LiveTap::start(vec![config], PipelineConfig::default(), 2, ring, sink)
            .expect("opening a fanout capture");
        let count = CONNECTIONS.to_string();
        run(&mut python(&a, HTTP_CLIENTS, &[&ip_b, &count]));
        let started = Instant::now();
        while waiting.lock().unwrap().len() < CONNECTIONS
            && started.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Both sockets' counters, refreshed when idle.
        std::thread::sleep(Duration::from_millis(500));
        let per_socket = tap.socket_packets();
        let (pipeline, kernel) = (tap.pipeline_stats(), tap.live_stats());
        (per_socket, pipeline, kernel, tap.stop().errors)
    });
    let _ = server.kill();
    let _ = server.wait();
    assert!(errors.is_empty(), "{errors:?}");

    let entries = entries.lock().unwrap();
    let mut paths = BTreeSet::new();
    let mut flows = BTreeSet::new();
    for e in entries.iter() {
        let v = serde_json::to_value(tap_dissect::json::EntryJson(e)).unwrap();
        let path = v["request"]["path"].as_str().unwrap().to_string();
        assert_eq!(v["response"]["status"], 200, "{v}");
        assert_eq!(
            v["response"]["body"].as_str(),
            Some(format!("ok {path}").as_str()),
            "{v}"
        );
        assert!(paths.insert(path), "one entry per request: {v}");
        assert!(flows.insert(e.flow_id), "flow ids unique: {v}");
    }
    let want: BTreeSet<String> = (0..CONNECTIONS).map(|i| format!("/c{i}")).collect();
    assert_eq!(paths, want);
    assert_eq!(entries.len(), CONNECTIONS);

    eprintln!("fanout: packets per socket {per_socket:?}; {kernel:?}");
    let [(interface, sockets)] = &per_socket[..] else {
        panic!("one capture: {per_socket:?}")
    };
    assert_eq!(interface, "kt-a");
    assert_eq!(sockets.len(), 2);
    assert!(sockets.iter().all(|&n| n > 0), "{sockets:?}");
    assert_eq!(kernel.kernel_drops, 0);
    assert_eq!(sockets.iter().sum::<u64>(), kernel.packets);
    assert_eq!(
        pipeline.packets, kernel.packets,
        "every packet processed once"
    );
    assert_eq!(pipeline.reassembly.gaps, 0);
}

#[test]
fn loopback_delivers_each_packet_once() {
    if !root_or_skip() {
        return;
    }
    let pair = Pair::new();
    let a = pair.a.clone();
    let (frames, link_type) = pair.in_a(move || {
        let mut cap = LiveCapture::open(roomy("lo")).expect("opening lo");
        send_udp(&a, "127.0.0.1", 40000, "127.0.0.1", 9000, "lo", 20);
        (drain(&mut cap, IDLE), cap.link_type())
    });
    assert_eq!(link_type, link::ETHERNET);
    let counts = payload_counts(&frames);
    let want: BTreeMap<String, usize> = expected("lo", 20).map(|p| (p, 1)).collect();
    assert_eq!(counts, want);
}

#[test]
fn a_vlan_tag_is_kept_in_both_directions_and_filtered() {
    if !root_or_skip() {
        return;
    }
    let pair = Pair::new();
    let (a, b) = (pair.a.clone(), pair.b.clone());
    let (ip_a, ip_b) = (pair.v4(1), pair.v4(2));
    let targets = Targets {
        ips: vec![pair.ipaddr(2)],
        ports: vec![9000],
        ..Default::default()
    };
    let frames = pair.in_a(move || {
        let mut config = roomy("kt-a");
        config.filter = Some(targets);
        let mut cap = LiveCapture::open(config).expect("opening kt-a");
        let tagged =
            |ns: &str, dev, dst_mac, src_mac, src: &str, dst: &str, dport: &str, prefix| {
                run(&mut python(
                    ns,
                    SEND_TAGGED,
                    &[
                        dev, dst_mac, src_mac, src, dst, "40000", dport, prefix, "10",
                    ],
                ));
            };
        // Received on kt-a: the kernel moves the tag into metadata before
        // the filter runs. Sent on kt-a from a packet socket: the tag stays
        // in the bytes the filter sees.
        capture_while(&mut cap, IDLE, || {
            tagged(&b, "kt-b", MAC_A, MAC_B, &ip_b, &ip_a, "9000", "in");
            tagged(&a, "kt-a", MAC_B, MAC_A, &ip_a, &ip_b, "9000", "out");
            #[rustfmt::skip]
            tagged(&b, "kt-b", MAC_A, MAC_B, &ip_b, &ip_a, "9001", "in-other-port");
        })
    });
    let mut counts = BTreeMap::new();
    for f in &frames {
        let u = udp_of(f).unwrap_or_else(|| panic!("not UDP: {:02x?}", f.data));
        assert_eq!(u.vlan, Some(7), "{u:?}");
        assert_eq!(f.orig_len as usize, f.data.len());
        *counts.entry(u.payload).or_insert(0) += 1;
    }
    let want: BTreeMap<String, usize> = expected("in", 10)
        .chain(expected("out", 10))
        .map(|p| (p, 1))
        .collect();
    assert_eq!(counts, want);
}

#[test]
fn a_raw_ip_interface_is_captured_and_filtered() {
    if !root_or_skip() {
        return;
    }
    let pair = Pair::new();
    let a = pair.a.clone();
    let local = format!("10.197.{}.1", pair.n);
    let remote = format!("10.197.{}.2", pair.n);
    ip(&["-n", &a, "tuntap", "add", "mode", "tun", "name", "kt-tun"]);
    ip(&[
        "-n", &a, "addr", "add", &local, "peer", &remote, "dev", "kt-tun",
    ]);
    ip(&["-n", &a, "link", "set", "kt-tun", "up"]);
    let targets = Targets {
        ips: vec![remote.parse().unwrap()],
        ports: vec![9000],
        ..Default::default()
    };
    let (frames, link_type) = pair.in_a(move || {
        let mut config = roomy("kt-tun");
        config.filter = Some(targets);
        let mut cap = LiveCapture::open(config).expect("opening kt-tun");
        run(&mut python(
            &a,
            TUN_TRAFFIC,
            &["kt-tun", &local, &remote, "10"],
        ));
        (drain(&mut cap, IDLE), cap.link_type())
    });
    assert_eq!(link_type, link::RAW);
    let counts = payload_counts(&frames);
    let want: BTreeMap<String, usize> = expected("in", 10)
        .chain(expected("out", 10))
        .map(|p| (p, 1))
        .collect();
    assert_eq!(counts, want);
    assert_eq!(frames.len(), 20);
    assert!(
        frames
            .iter()
            .all(|f| f.link == link::RAW && f.data[0] >> 4 == 4)
    );
}

/// Not a pass/fail test: how fast the capture goes. Run with
/// `cargo test --release -p tap-worker --test live_capture -- --ignored --nocapture throughput`.
#[test]
#[ignore = "a measurement: cargo xtask bench --only micro"]
fn throughput() {
    if !root_or_skip() {
        return;
    }
    let pair = Pair::new();
    let b = pair.b.clone();
    let (ip_a, ip_b) = (pair.v4(1), pair.v4(2));
    let targets = Targets {
        ips: vec![pair.ipaddr(2)],
        ports: vec![9000],
        ..Default::default()
    };
    pair.in_a(move || {
        // 1. Live: read while python floods.
        let mut config = LiveConfig::new("kt-a");
        config.filter = Some(targets.clone());
        let mut cap = LiveCapture::open(config).unwrap();
        let flood = python(&b, FLOOD_UDP, &[&ip_b, &ip_a, "9000", "3"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let mut n = 0u64;
        while let Some(_p) = cap.next_packet(Duration::from_millis(300)).unwrap() {
            n += 1;
        }
        let took = start.elapsed();
        let sent: u64 = String::from_utf8_lossy(&flood.wait_with_output().unwrap().stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        let stats = cap.stats().unwrap();
        println!(
            "live: {n} packets in {took:.2?} ({:.0} pkt/s); sender {sent} datagrams ({:.0}/s); {stats:?}",
            n as f64 / took.as_secs_f64(),
            sent as f64 / 3.0
        );

        // 2. The consumer alone: fill a large ring without reading, then time the walk.
        let mut config = LiveConfig::new("kt-a");
        config.filter = Some(targets);
        config.block_count = 64;
        let mut cap = LiveCapture::open(config).unwrap();
        run(&mut python(&b, FLOOD_UDP, &[&ip_b, &ip_a, "9000", "2"]));
        std::thread::sleep(Duration::from_millis(200));
        let start = Instant::now();
        let mut n = 0u64;
        let mut bytes = 0u64;
        while let Some(p) = cap.next_packet(Duration::ZERO).unwrap() {
            n += 1;
            bytes += p.data.len() as u64;
        }
        let took = start.elapsed();
        println!(
            "drain of a filled 64 MiB ring: {n} packets ({bytes} bytes) in {took:.2?}: {:.1} ns/packet, {:.1} Mpkt/s; {:?}",
            took.as_nanos() as f64 / n.max(1) as f64,
            n as f64 / took.as_secs_f64() / 1e6,
            cap.stats().unwrap()
        );
    });
}
