//! Classic BPF socket filters for live capture: the kernel runs the program
//! on every packet of the interface before it reaches the capture ring, so
//! traffic of pods we do not watch never costs a copy into user space.
//!
//! [`compile`] turns the current [`Targets`] (pod IPs, optionally ports) into a
//! program; `capture::live` attaches it with `SO_ATTACH_FILTER`. The program
//! accepts a packet (returning the snap length) when
//!
//! - it is IPv4 or IPv6, untagged or under one 802.1Q / 802.1ad tag (the
//!   kernel usually strips the tag into metadata before the filter runs, but
//!   not always, so both layouts are matched), and
//! - its source or destination address is one of `ips`, and the other
//!   address is not one of `exclude` (packets between two watched pods are
//!   captured on one pod's interface only, so no packet is counted twice),
//!   and
//! - `ports` is empty, or it is TCP or UDP with a source or destination port
//!   in `ports`. Packets whose ports cannot be seen are decided by address
//!   only: IPv4 fragments after the first (the decoder reassembles them), and
//!   IPv6 packets whose next header is not TCP, UDP, ICMPv6 or "no next
//!   header" (extension headers are not walked, so TCP/UDP behind one is
//!   matched by address), are accepted; other IPv4 protocols, ICMPv6 and
//!   "no next header" are dropped.
//!
//! On a raw-IP interface (tun, WireGuard) the same rules apply from the IP
//! header on. Everything else is dropped (`ret #0`), including ARP and short
//! packets (a load past the end of a packet ends a classic BPF program with
//! 0). With no `ips` at all the program drops everything: no targets, nothing
//! to capture. Capturing everything is the absence of a filter.

use std::net::IpAddr;

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

/// What a capture is for: packets to or from any of `ips` whose other end is
/// not one of `exclude`, and, when `ports` is not empty, to or from any of
/// `ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    pub ips: Vec<IpAddr>,
    pub ports: Vec<u16>,
    /// Peers whose traffic with `ips` is captured elsewhere.
    pub exclude: Vec<IpAddr>,
}

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Where the IP header starts in the bytes the filter sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// An Ethernet header (also loopback), optionally one VLAN tag.
    Ethernet,
    /// No link header: the packet starts with IPv4 or IPv6 (tun, WireGuard,
    /// IP-in-IP tunnels).
    RawIp,
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(
        "capture filter for {ipv4} IPv4 and {ipv6} IPv6 addresses and {ports} ports needs {insns} BPF instructions, more than the kernel's {MAX_INSNS}; watch fewer pods or ports per capture (an IPv4 address costs about 4 instructions, an IPv6 address 32, a port 8)"
    )]
    TooLarge {
        ipv4: usize,
        ipv6: usize,
        ports: usize,
        insns: usize,
    },
}

// Opcodes (linux/filter.h, linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_H_IND: u16 = 0x48;
const LDX_B_MSH: u16 = 0xb1;
const ALU_RSH_K: u16 = 0x74;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

const ETHERTYPE_IPV4: u32 = 0x0800;
const ETHERTYPE_IPV6: u32 = 0x86dd;
const ETHERTYPE_VLAN: u32 = 0x8100;
const ETHERTYPE_QINQ: u32 = 0x88a8;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
const IPPROTO_ICMPV6: u32 = 58;
const IPPROTO_NONE: u32 = 59;

/// A program that accepts every packet, cut to `snaplen` bytes.
pub fn accept_all(snaplen: u32) -> Vec<Insn> {
    vec![stmt(RET_K, snaplen)]
}

/// A program that drops every packet.
pub fn drop_all() -> Vec<Insn> {
    vec![stmt(RET_K, 0)]
}

/// Builds the filter for `targets`; accepted packets are cut to `snaplen`.
pub fn compile(
    targets: &Targets,
    framing: Framing,
    snaplen: u32,
) -> Result<Vec<Insn>, FilterError> {
    let (v4, v6) = split(&targets.ips);
    let (mut x4, mut x6) = split(&targets.exclude);
    // A target is never its own exclusion.
    x4.retain(|a| v4.binary_search(a).is_err());
    x6.retain(|a| v6.binary_search(a).is_err());
    let mut ports: Vec<u32> = targets.ports.iter().map(|&p| u32::from(p)).collect();
    ports.sort_unstable();
    ports.dedup();
    if v4.is_empty() && v6.is_empty() {
        return Ok(drop_all());
    }

    let mut a = Asm::default();
    let reject = a.label();
    // One section per (family, IP header offset) that the dispatch can reach.
    let mut sections: Vec<(Label, bool, u32)> = Vec::new();
    let mut section = |a: &mut Asm, is_v6: bool, base: u32| {
        let l = a.label();
        sections.push((l, is_v6, base));
        l
    };
    match framing {
        Framing::Ethernet => {
            a.stmt(LD_H_ABS, 12);
            for base in [14, 18] {
                if !v4.is_empty() {
                    let l = section(&mut a, false, base);
                    a.jeq(ETHERTYPE_IPV4, l, Next);
                }
                if !v6.is_empty() {
                    let l = section(&mut a, true, base);
                    a.jeq(ETHERTYPE_IPV6, l, Next);
                }
                if base == 14 {
                    let tagged = a.label();
                    a.jeq(ETHERTYPE_VLAN, tagged, Next);
                    a.jeq(ETHERTYPE_QINQ, tagged, reject);
                    a.place(tagged);
                    a.stmt(LD_H_ABS, 16);
                }
            }
            a.ja(reject);
        }
        Framing::RawIp => {
            a.stmt(LD_B_ABS, 0);
            a.stmt(ALU_RSH_K, 4);
            if !v4.is_empty() {
                let l = section(&mut a, false, 0);
                a.jeq(4, l, Next);
            }
            if !v6.is_empty() {
                let l = section(&mut a, true, 0);
                a.jeq(6, l, Next);
            }
            a.ja(reject);
        }
    }
    for (label, is_v6, base) in sections {
        a.place(label);
        if is_v6 {
            ipv6_section(&mut a, (&v6, &x6), &ports, base, snaplen, reject);
        } else {
            ipv4_section(&mut a, (&v4, &x4), &ports, base, snaplen, reject);
        }
    }
    a.place(reject);
    a.stmt(RET_K, 0);

    let prog = a.assemble();
    if prog.len() > MAX_INSNS {
        return Err(FilterError::TooLarge {
            ipv4: v4.len() + x4.len(),
            ipv6: v6.len() + x6.len(),
            ports: ports.len(),
            insns: prog.len(),
        });
    }
    Ok(prog)
}

/// Sorted, deduplicated IPv4 and IPv6 addresses as the words the filter loads.
fn split(ips: &[IpAddr]) -> (Vec<u32>, Vec<[u32; 4]>) {
    let mut v4: Vec<u32> = Vec::new();
    let mut v6: Vec<[u32; 4]> = Vec::new();
    for ip in ips {
        match ip.to_canonical() {
            IpAddr::V4(a) => v4.push(u32::from(a)),
            IpAddr::V6(a) => {
                let o = a.octets();
                v6.push(std::array::from_fn(|i| {
                    u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
                }));
            }
        }
    }
    v4.sort_unstable();
    v4.dedup();
    v6.sort_unstable();
    v6.dedup();
    (v4, v6)
}

/// The address test shared by both families: one end in `ips` and the
/// other not in `exclude`. `load(a, off, list, hit)` jumps to `hit` when the
/// address at `off` is in `list` and falls through otherwise. Before an
/// address is tested against `exclude` its last word is loaded, so a packet
/// cut inside that address is dropped rather than let through because its
/// first word matched nothing.
fn address_test<T>(
    a: &mut Asm,
    (ips, exclude): (&[T], &[T]),
    (src, dst, width): (u32, u32, u32),
    reject: Label,
    load: impl Fn(&mut Asm, u32, &[T], Label),
) -> Label {
    let ip_ok = a.label();
    if exclude.is_empty() {
        for off in [src, dst] {
            load(a, off, ips, ip_ok);
        }
        a.ja(reject);
        return ip_ok;
    }
    let try_dst = a.label();
    let src_own = a.label();
    let dst_own = a.label();
    load(a, src, ips, src_own);
    a.ja(try_dst);
    a.place(src_own);
    if width > 4 {
        a.stmt(LD_W_ABS, dst + width - 4);
    }
    load(a, dst, exclude, try_dst);
    a.ja(ip_ok);
    a.place(try_dst);
    load(a, dst, ips, dst_own);
    a.ja(reject);
    a.place(dst_own);
    if width > 4 {
        a.stmt(LD_W_ABS, src + width - 4);
    }
    load(a, src, exclude, reject);
    a.ja(ip_ok);
    ip_ok
}

/// IPv4 header at `b`: addresses at b+12 / b+16, flags and fragment offset at
/// b+6, protocol at b+9, the header length in the low nibble of b.
fn ipv4_section(
    a: &mut Asm,
    ips: (&[u32], &[u32]),
    ports: &[u32],
    b: u32,
    snaplen: u32,
    reject: Label,
) {
    let ip_ok = address_test(a, ips, (b + 12, b + 16, 4), reject, |a, off, list, hit| {
        a.stmt(LD_W_ABS, off);
        a.any_of(list, hit, |a, &ip, hit| a.jeq(ip, hit, Next));
    });
    a.place(ip_ok);
    if ports.is_empty() {
        a.stmt(RET_K, snaplen);
        return;
    }
    let l4 = a.label();
    let first_fragment = a.label();
    a.stmt(LD_H_ABS, b + 6);
    // A later fragment has no port header; the decoder reassembles it.
    a.jump(JSET_K, 0x1fff, Next, first_fragment);
    a.stmt(RET_K, snaplen);
    a.place(first_fragment);
    a.stmt(LD_B_ABS, b + 9);
    a.jeq(IPPROTO_TCP, l4, Next);
    a.jeq(IPPROTO_UDP, l4, reject);
    a.place(l4);
    a.stmt(LDX_B_MSH, b);
    ports_section(a, ports, b, snaplen);
}

/// IPv6 header at `b`: next header at b+6, addresses at b+8 / b+24, the
/// TCP/UDP header at b+40 when there are no extension headers.
fn ipv6_section(
    a: &mut Asm,
    ips: (&[[u32; 4]], &[[u32; 4]]),
    ports: &[u32],
    b: u32,
    snaplen: u32,
    reject: Label,
) {
    let ip_ok = address_test(a, ips, (b + 8, b + 24, 16), reject, |a, off, list, hit| {
        a.any_of(list, hit, |a, ip, hit| {
            let miss = a.label();
            for (i, &word) in ip.iter().enumerate() {
                a.stmt(LD_W_ABS, off + 4 * i as u32);
                if i == 3 {
                    a.jeq(word, hit, miss);
                } else {
                    a.jeq(word, Next, miss);
                }
            }
            a.place(miss);
        });
    });
    a.place(ip_ok);
    if ports.is_empty() {
        a.stmt(RET_K, snaplen);
        return;
    }
    let l4 = a.label();
    let not_l4 = a.label();
    a.stmt(LD_B_ABS, b + 6);
    a.jeq(IPPROTO_TCP, l4, Next);
    a.jeq(IPPROTO_UDP, l4, not_l4);
    a.place(not_l4);
    a.jeq(IPPROTO_ICMPV6, reject, Next);
    a.jeq(IPPROTO_NONE, reject, Next);
    // Probably an extension header in front of TCP/UDP: address match only.
    a.stmt(RET_K, snaplen);
    a.place(l4);
    // X = 40 so the port loads below share one shape with IPv4's.
    a.stmt(LDX_IMM, 40);
    ports_section(a, ports, b, snaplen);
}

const LDX_IMM: u16 = 0x01;

/// Source port at [X + b], destination at [X + b + 2].
fn ports_section(a: &mut Asm, ports: &[u32], b: u32, snaplen: u32) {
    let hit = a.label();
    for off in [b, b + 2] {
        a.stmt(LD_H_IND, off);
        a.any_of(ports, hit, |a, &p, hit| a.jeq(p, hit, Next));
    }
    a.stmt(RET_K, 0);
    a.place(hit);
    a.stmt(RET_K, snaplen);
}

/// A jump target: a label, or the next instruction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Next,
    To(Label),
}
use Target::Next;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Label(usize);

impl From<Label> for Target {
    fn from(l: Label) -> Target {
        Target::To(l)
    }
}

enum Op {
    Stmt(Insn),
    Jump {
        code: u16,
        k: u32,
        jt: Target,
        jf: Target,
    },
    Ja(Label),
    Place(Label),
}

/// A tiny assembler with forward labels. Conditional jumps reach at most 255
/// instructions ahead, so a jump to a far label is rewritten as a short jump
/// to a `ja` (32-bit offset) placed right after it.
#[derive(Default)]
struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }
    fn place(&mut self, l: Label) {
        self.ops.push(Op::Place(l));
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.ops.push(Op::Stmt(stmt(code, k)));
    }
    fn ja(&mut self, l: Label) {
        self.ops.push(Op::Ja(l));
    }
    fn jeq(&mut self, k: u32, jt: impl Into<Target>, jf: impl Into<Target>) {
        self.jump(JEQ_K, k, jt, jf);
    }
    fn jump(&mut self, code: u16, k: u32, jt: impl Into<Target>, jf: impl Into<Target>) {
        let (jt, jf) = (jt.into(), jf.into());
        self.ops.push(Op::Jump { code, k, jt, jf });
    }

    /// Emits one test per item, each jumping to the label it is given when
    /// the item matches and falling through otherwise; all of them reach
    /// `hit`. Long lists are cut into runs that jump to a nearby `ja hit`,
    /// so each test stays one instruction instead of the two a far jump
    /// costs.
    fn any_of<T>(&mut self, items: &[T], hit: Label, mut test: impl FnMut(&mut Asm, &T, Label)) {
        const RUN: usize = 200;
        let mut local = self.label();
        let mut start = self.ops.len();
        for (i, item) in items.iter().enumerate() {
            test(self, item, local);
            if self.ops.len() - start >= RUN || i + 1 == items.len() {
                let past = self.label();
                self.ja(past);
                self.place(local);
                self.ja(hit);
                self.place(past);
                local = self.label();
                start = self.ops.len();
            }
        }
    }

    fn assemble(self) -> Vec<Insn> {
        // far[i] = (true branch needs a `ja`, false branch needs a `ja`);
        // growing only, so the loop ends.
        let mut far = vec![(false, false); self.ops.len()];
        let (pos, at) = loop {
            let (pos, at) = self.layout(&far);
            let mut changed = false;
            for (i, op) in self.ops.iter().enumerate() {
                if let Op::Jump { jt, jf, .. } = *op {
                    let after = pos[i] + 1;
                    let (far_t, far_f) = &mut far[i];
                    for (target, is_far) in [(jt, far_t), (jf, far_f)] {
                        if let Target::To(l) = target
                            && !*is_far
                            && at[l.0] - after > usize::from(u8::MAX)
                        {
                            *is_far = true;
                            changed = true;
                        }
                    }
                }
            }
            if !changed {
                break (pos, at);
            }
        };
        let mut out = Vec::with_capacity(pos.last().copied().unwrap_or(0) + 2);
        for (i, op) in self.ops.iter().enumerate() {
            match *op {
                Op::Stmt(insn) => out.push(insn),
                Op::Place(_) => {}
                Op::Ja(l) => out.push(stmt(JA, (at[l.0] - (out.len() + 1)) as u32)),
                Op::Jump { code, k, jt, jf } => {
                    let p = out.len();
                    let (far_t, far_f) = far[i];
                    let t_slot = p + 1;
                    let f_slot = p + 1 + usize::from(far_t);
                    let short = |target: Target| match target {
                        Target::Next => 0,
                        Target::To(l) => at[l.0] - (p + 1),
                    };
                    // A `Next` target must skip the `ja`s placed after the jump.
                    let skip = usize::from(far_t) + usize::from(far_f);
                    let off = |target: Target, is_far: bool, slot: usize| {
                        if is_far {
                            slot - (p + 1)
                        } else if target == Target::Next {
                            skip
                        } else {
                            short(target)
                        }
                    };
                    out.push(Insn {
                        code,
                        k,
                        jt: off(jt, far_t, t_slot) as u8,
                        jf: off(jf, far_f, f_slot) as u8,
                    });
                    for (target, is_far) in [(jt, far_t), (jf, far_f)] {
                        if let (Target::To(l), true) = (target, is_far) {
                            let here = out.len();
                            out.push(stmt(JA, (at[l.0] - (here + 1)) as u32));
                        }
                    }
                }
            }
        }
        out
    }

    /// Instruction index of every op and of every label.
    fn layout(&self, far: &[(bool, bool)]) -> (Vec<usize>, Vec<usize>) {
        let mut pos = Vec::with_capacity(self.ops.len());
        let mut at = vec![usize::MAX; self.labels];
        let mut n = 0;
        for (i, op) in self.ops.iter().enumerate() {
            pos.push(n);
            n += match op {
                Op::Stmt(_) | Op::Ja(_) => 1,
                Op::Place(l) => {
                    at[l.0] = n;
                    0
                }
                Op::Jump { .. } => 1 + usize::from(far[i].0) + usize::from(far[i].1),
            };
        }
        (pos, at)
    }
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

#[cfg(test)]
mod tests {
    //! The programs run through a small classic BPF interpreter written here
    //! (the subset `compile` emits, with the kernel's rule that a load past
    //! the end of the packet returns 0), on hand-built packets. This proves
    //! the filters without root; `tests/live_capture.rs` runs them in the
    //! kernel.

    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SNAP: u32 = 65535;

    /// Checks what the kernel's checker would: known opcodes, jumps inside
    /// the program, a return at the end, the size limit.
    fn check(prog: &[Insn]) {
        assert!(
            !prog.is_empty() && prog.len() <= MAX_INSNS,
            "size {}",
            prog.len()
        );
        assert_eq!(prog.last().unwrap().code, RET_K, "must end with a return");
        for (pc, i) in prog.iter().enumerate() {
            match i.code {
                JA => assert!(
                    pc + 1 + (i.k as usize) < prog.len(),
                    "ja out of range at {pc}"
                ),
                JEQ_K | JSET_K => {
                    assert!(
                        pc + 1 + usize::from(i.jt) < prog.len(),
                        "jt out of range at {pc}"
                    );
                    assert!(
                        pc + 1 + usize::from(i.jf) < prog.len(),
                        "jf out of range at {pc}"
                    );
                }
                LD_W_ABS | LD_H_ABS | LD_B_ABS | LD_H_IND | LDX_B_MSH | LDX_IMM | ALU_RSH_K
                | RET_K => {}
                c => panic!("unknown opcode {c:#x} at {pc}"),
            }
        }
    }

    /// Runs `prog` on `pkt`; the return value is the bytes to keep.
    fn run(prog: &[Insn], pkt: &[u8]) -> u32 {
        let load = |off: u32, n: usize| -> Option<u32> {
            let off = off as usize;
            let bytes = pkt.get(off..off.checked_add(n)?)?;
            Some(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
        };
        let (mut a, mut x) = (0u32, 0u32);
        let mut pc = 0;
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS | LD_H_ABS | LD_B_ABS => {
                    let n = [4, 2, 1][usize::from((i.code >> 3) & 3)];
                    match load(i.k, n) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                LD_H_IND => match load(x.wrapping_add(i.k), 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LDX_B_MSH => match load(i.k, 1) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return 0,
                },
                LDX_IMM => x = i.k,
                ALU_RSH_K => a >>= i.k,
                JA => pc += i.k as usize,
                JEQ_K | JSET_K => {
                    let taken = if i.code == JEQ_K {
                        a == i.k
                    } else {
                        a & i.k != 0
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                RET_K => return i.k,
                c => panic!("unknown opcode {c:#x}"),
            }
        }
    }

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        p.extend_from_slice(&ethertype.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// Puts a tag (type `tpid`, VLAN 7) after the MAC addresses.
    fn tagged(frame: &[u8], tpid: u16) -> Vec<u8> {
        let mut p = frame[..12].to_vec();
        p.extend_from_slice(&tpid.to_be_bytes());
        p.extend_from_slice(&7u16.to_be_bytes());
        p.extend_from_slice(&frame[12..]);
        p
    }

    fn udp(sport: u16, dport: u16) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 12, 0, 0, b'p', b'i', b'n', b'g']);
        p
    }

    fn tcp(sport: u16, dport: u16) -> Vec<u8> {
        let mut p = udp(sport, dport);
        p.resize(20, 0);
        p[12] = 5 << 4;
        p
    }

    /// IPv4 with `options` 32-bit words of options and the given
    /// fragment-offset field (flags and offset).
    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, options: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x40 | (5 + options), 0];
        let total = 20 + 4 * usize::from(options) + l4.len();
        p.extend_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[64, proto, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend(std::iter::repeat_n(1u8, 4 * usize::from(options)));
        p.extend_from_slice(l4);
        p
    }

    fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(l4);
        p
    }

    const POD: [u8; 4] = [10, 1, 0, 5];
    const OTHER: [u8; 4] = [10, 1, 0, 9];
    const PEER: [u8; 4] = [10, 2, 0, 7];
    const POD6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 5);
    const OTHER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 9);
    const PEER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, 5);

    fn targets(ports: &[u16]) -> Targets {
        Targets {
            ips: vec![IpAddr::V4(Ipv4Addr::from(POD)), IpAddr::V6(POD6)],
            ports: ports.to_vec(),
            ..Default::default()
        }
    }

    fn passes(t: &Targets, framing: Framing, pkt: &[u8]) -> bool {
        let prog = compile(t, framing, SNAP).unwrap();
        check(&prog);
        match run(&prog, pkt) {
            0 => false,
            SNAP => true,
            n => panic!("returned {n}, neither 0 nor the snap length"),
        }
    }

    #[test]
    fn table() {
        let v4 = |src, dst, l4: &[u8], proto| eth(0x0800, &ipv4(src, dst, proto, 0, 0, l4));
        let v6 = |src, dst, next, l4: &[u8]| eth(0x86dd, &ipv6(src, dst, next, l4));
        let hop_by_hop = {
            let mut h = vec![17, 0, 0, 0, 0, 0, 0, 0];
            h.extend_from_slice(&udp(1, 2));
            h
        };
        let p = [80];
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<u16>, Vec<u8>, bool)> = vec![
            ("v4 udp from pod", vec![], v4(POD, PEER, &udp(5000, 53), 17), true),
            ("v4 udp to pod", vec![], v4(PEER, POD, &udp(5000, 53), 17), true),
            ("v4 neither", vec![], v4(OTHER, PEER, &udp(5000, 53), 17), false),
            ("v4 icmp, no ports", vec![], v4(POD, PEER, &[8, 0, 0, 0], 1), true),
            ("v4 tcp dport", p.to_vec(), v4(PEER, POD, &tcp(40000, 80), 6), true),
            ("v4 tcp sport", p.to_vec(), v4(POD, PEER, &tcp(80, 40000), 6), true),
            ("v4 tcp other port", p.to_vec(), v4(POD, PEER, &tcp(81, 40000), 6), false),
            ("v4 udp port", p.to_vec(), v4(POD, PEER, &udp(80, 40000), 17), true),
            ("v4 port, other ip", p.to_vec(), v4(OTHER, PEER, &tcp(80, 80), 6), false),
            ("v4 icmp with ports", p.to_vec(), v4(POD, PEER, &[8, 0, 0, 0], 1), false),
            ("v4 options", p.to_vec(), eth(0x0800, &ipv4(PEER, POD, 6, 0, 2, &tcp(1, 80))), true),
            ("v4 options, other port", p.to_vec(), eth(0x0800, &ipv4(PEER, POD, 6, 0, 2, &tcp(1, 81))), false),
            ("v4 later fragment", p.to_vec(), eth(0x0800, &ipv4(PEER, POD, 17, 0x00b9, 0, &[0; 8])), true),
            ("v4 first fragment, MF", p.to_vec(), eth(0x0800, &ipv4(PEER, POD, 17, 0x2000, 0, &udp(9, 80))), true),
            ("v4 first fragment, other port", p.to_vec(), eth(0x0800, &ipv4(PEER, POD, 17, 0x2000, 0, &udp(9, 81))), false),
            ("v4 DF set", p.to_vec(), eth(0x0800, &ipv4(PEER, POD, 6, 0x4000, 0, &tcp(9, 80))), true),
            ("v6 udp from pod", vec![], v6(POD6, PEER6, 17, &udp(1, 2)), true),
            ("v6 udp to pod", vec![], v6(PEER6, POD6, 17, &udp(1, 2)), true),
            ("v6 neither", vec![], v6(OTHER6, PEER6, 17, &udp(1, 2)), false),
            ("v6 tcp port", p.to_vec(), v6(PEER6, POD6, 6, &tcp(1, 80)), true),
            ("v6 tcp other port", p.to_vec(), v6(PEER6, POD6, 6, &tcp(1, 81)), false),
            ("v6 udp sport", p.to_vec(), v6(POD6, PEER6, 17, &udp(80, 1)), true),
            ("v6 icmpv6 with ports", p.to_vec(), v6(POD6, PEER6, 58, &[128, 0, 0, 0]), false),
            ("v6 no next header", p.to_vec(), v6(POD6, PEER6, 59, &[]), false),
            ("v6 extension header: address only", p.to_vec(), v6(POD6, PEER6, 0, &hop_by_hop), true),
            ("v6 extension header, other ip", p.to_vec(), v6(OTHER6, PEER6, 0, &hop_by_hop), false),
            ("v6 differs in last word only", vec![], v6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 6), PEER6, 17, &udp(1, 2)), false),
            ("v6 differs in first word only", vec![], v6(Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 5), PEER6, 17, &udp(1, 2)), false),
            ("vlan v4", p.to_vec(), tagged(&v4(PEER, POD, &tcp(1, 80), 6), 0x8100), true),
            ("vlan v4 other port", p.to_vec(), tagged(&v4(PEER, POD, &tcp(1, 81), 6), 0x8100), false),
            ("vlan v4 other ip", vec![], tagged(&v4(PEER, OTHER, &tcp(1, 80), 6), 0x8100), false),
            ("qinq outer tag v4", vec![], tagged(&v4(PEER, POD, &tcp(1, 80), 6), 0x88a8), true),
            ("vlan v6", p.to_vec(), tagged(&v6(PEER6, POD6, 6, &tcp(1, 80)), 0x8100), true),
            ("vlan v6 other ip", p.to_vec(), tagged(&v6(PEER6, OTHER6, 6, &tcp(1, 80)), 0x8100), false),
            ("two tags (only one is read)", vec![], tagged(&tagged(&v4(PEER, POD, &tcp(1, 80), 6), 0x8100), 0x8100), false),
            ("arp", vec![], eth(0x0806, &[0, 1, 8, 0, 6, 4, 0, 1]), false),
            ("lldp", vec![], eth(0x88cc, &[0; 40]), false),
            ("empty", vec![], vec![], false),
            ("runt ethernet", vec![], vec![0; 13], false),
            ("v4 cut before dst", vec![], v4(PEER, POD, &[], 17)[..14 + 18].to_vec(), false),
            ("v4 cut before ports", p.to_vec(), v4(PEER, POD, &[], 6), false),
            ("v4 cut inside dst port", p.to_vec(), v4(PEER, POD, &tcp(1, 80), 6)[..14 + 20 + 3].to_vec(), false),
            ("v6 cut inside dst", vec![], v6(PEER6, POD6, 17, &[])[..14 + 39].to_vec(), false),
        ];
        for (name, ports, pkt, want) in cases {
            let t = targets(&ports);
            assert_eq!(passes(&t, Framing::Ethernet, &pkt), want, "{name}");
            // The same packet without its link header, as a raw-IP interface
            // delivers it (tagged and non-IP frames have no raw form).
            let ethertype = pkt.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]]));
            if matches!(ethertype, Some(0x0800 | 0x86dd)) {
                assert_eq!(
                    passes(&t, Framing::RawIp, &pkt[14..]),
                    want,
                    "{name}, raw IP"
                );
            }
        }
    }

    /// Between two watched pods a packet is captured on one pod's interface
    /// only: here POD's capture leaves POD<->OTHER to OTHER's.
    #[test]
    fn excluded_peers() {
        let t = Targets {
            ips: vec![IpAddr::V4(Ipv4Addr::from(POD)), IpAddr::V6(POD6)],
            ports: vec![],
            exclude: vec![
                IpAddr::V4(Ipv4Addr::from(OTHER)),
                IpAddr::V6(OTHER6),
                // A target listed as excluded stays a target.
                IpAddr::V4(Ipv4Addr::from(POD)),
            ],
        };
        let v4 = |src, dst| eth(0x0800, &ipv4(src, dst, 17, 0, 0, &udp(1, 2)));
        let v6 = |src, dst| eth(0x86dd, &ipv6(src, dst, 17, &udp(1, 2)));
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("v4 pod to peer", v4(POD, PEER), true),
            ("v4 peer to pod", v4(PEER, POD), true),
            ("v4 pod to excluded", v4(POD, OTHER), false),
            ("v4 excluded to pod", v4(OTHER, POD), false),
            ("v4 pod to itself", v4(POD, POD), true),
            ("v4 excluded to peer", v4(OTHER, PEER), false),
            ("v6 pod to peer", v6(POD6, PEER6), true),
            ("v6 peer to pod", v6(PEER6, POD6), true),
            ("v6 pod to excluded", v6(POD6, OTHER6), false),
            ("v6 excluded to pod", v6(OTHER6, POD6), false),
            ("v6 pod to peer, cut inside the peer", v6(POD6, PEER6)[..14 + 38].to_vec(), false),
            ("vlan v4 excluded to pod", tagged(&v4(OTHER, POD), 0x8100), false),
            ("vlan v4 peer to pod", tagged(&v4(PEER, POD), 0x8100), true),
        ];
        for (name, pkt, want) in cases {
            assert_eq!(passes(&t, Framing::Ethernet, &pkt), want, "{name}");
            assert_eq!(reference(&t, &pkt), want, "{name}: reference");
            if u16::from_be_bytes([pkt[12], pkt[13]]) != 0x8100 {
                assert_eq!(
                    passes(&t, Framing::RawIp, &pkt[14..]),
                    want,
                    "{name}, raw IP"
                );
            }
        }
    }

    #[test]
    fn only_one_family() {
        let only_v4 = Targets {
            ips: vec![IpAddr::V4(Ipv4Addr::from(POD))],
            ports: vec![],
            ..Default::default()
        };
        let v6_pkt = eth(0x86dd, &ipv6(POD6, PEER6, 17, &udp(1, 2)));
        assert!(!passes(&only_v4, Framing::Ethernet, &v6_pkt));
        assert!(passes(
            &only_v4,
            Framing::Ethernet,
            &eth(0x0800, &ipv4(POD, PEER, 17, 0, 0, &udp(1, 2)))
        ));
        // An IPv4-mapped IPv6 target is the IPv4 address.
        let mapped = Targets {
            ips: vec![IpAddr::V6(Ipv4Addr::from(POD).to_ipv6_mapped())],
            ports: vec![],
            ..Default::default()
        };
        assert!(passes(
            &mapped,
            Framing::Ethernet,
            &eth(0x0800, &ipv4(PEER, POD, 17, 0, 0, &udp(1, 2)))
        ));
    }

    #[test]
    fn no_targets_pass_nothing_and_no_filter_passes_all() {
        let none = Targets {
            ips: vec![],
            ports: vec![80],
            ..Default::default()
        };
        let pkt = eth(0x0800, &ipv4(POD, PEER, 6, 0, 0, &tcp(80, 80)));
        assert_eq!(
            run(&compile(&none, Framing::Ethernet, SNAP).unwrap(), &pkt),
            0
        );
        assert_eq!(run(&accept_all(96), &pkt), 96);
        assert_eq!(run(&drop_all(), &pkt), 0);
    }

    #[test]
    fn snap_length_is_returned() {
        let t = targets(&[]);
        let pkt = eth(0x0800, &ipv4(POD, PEER, 17, 0, 0, &udp(1, 2)));
        let prog = compile(&t, Framing::Ethernet, 128).unwrap();
        assert_eq!(run(&prog, &pkt), 128);
    }

    #[test]
    fn duplicates_cost_nothing() {
        let once = compile(&targets(&[80]), Framing::Ethernet, SNAP).unwrap();
        let mut twice = targets(&[80, 80]);
        twice.ips.extend(twice.ips.clone());
        assert_eq!(compile(&twice, Framing::Ethernet, SNAP).unwrap(), once);
    }

    #[test]
    fn too_many_targets_is_an_error_naming_the_counts() {
        let t = Targets {
            ips: (0..1100u32)
                .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
                .collect(),
            ports: vec![],
            ..Default::default()
        };
        let err = compile(&t, Framing::Ethernet, SNAP).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("1100 IPv4") && msg.contains("4096"), "{msg}");
        // The largest set that fits still compiles and checks.
        let t = Targets {
            ips: (0..900u32)
                .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
                .collect(),
            ports: vec![80, 443],
            ..Default::default()
        };
        check(&compile(&t, Framing::Ethernet, SNAP).unwrap());
    }

    /// The documented rule, written independently of the program. Loads are
    /// lazy as the program's are: a packet cut short passes if what decided
    /// it was present (its source matched before the destination was cut).
    fn reference(t: &Targets, pkt: &[u8]) -> bool {
        let mut l3 = 14;
        let Some(mut ethertype) = be16(pkt, 12) else {
            return false;
        };
        if ethertype == 0x8100 || ethertype == 0x88a8 {
            let Some(e) = be16(pkt, 16) else { return false };
            ethertype = e;
            l3 = 18;
        }
        let ips: Vec<IpAddr> = t.ips.iter().map(|i| i.to_canonical()).collect();
        let port_ok = |l4: usize| -> bool {
            match be16(pkt, l4) {
                Some(s) if t.ports.contains(&s) => true,
                Some(_) => be16(pkt, l4 + 2).is_some_and(|d| t.ports.contains(&d)),
                None => false,
            }
        };
        let exclude: Vec<IpAddr> = t
            .exclude
            .iter()
            .map(|i| i.to_canonical())
            .filter(|i| !ips.contains(i))
            .collect();
        let is_in = |list: &[IpAddr], bytes: &[u8]| {
            list.iter().any(|ip| match ip {
                IpAddr::V4(a) => a.octets()[..] == *bytes,
                IpAddr::V6(a) => a.octets()[..] == *bytes,
            })
        };
        let family =
            |ip: &IpAddr, len: usize| matches!((ip, len), (IpAddr::V4(_), 4) | (IpAddr::V6(_), 16));
        // One end a target, the other not excluded; with nothing excluded
        // (of this family) a source match decides before the destination is read.
        let hit = |src: usize, len: usize| -> bool {
            let dst = src + len;
            let x: Vec<IpAddr> = exclude.iter().filter(|i| family(i, len)).copied().collect();
            let Some(s) = pkt.get(src..src + len) else {
                return false;
            };
            if x.is_empty() && is_in(&ips, s) {
                return true;
            }
            let Some(d) = pkt.get(dst..dst + len) else {
                return false;
            };
            (is_in(&ips, s) && !is_in(&x, d)) || (is_in(&ips, d) && !is_in(&x, s))
        };
        match ethertype {
            0x0800 => {
                if !hit(l3 + 12, 4) {
                    return false;
                }
                if t.ports.is_empty() || be16(pkt, l3 + 6).unwrap() & 0x1fff != 0 {
                    return true;
                }
                matches!(pkt[l3 + 9], 6 | 17) && port_ok(l3 + 4 * usize::from(pkt[l3] & 0xf))
            }
            0x86dd => {
                if !hit(l3 + 8, 16) {
                    return false;
                }
                if t.ports.is_empty() {
                    return true;
                }
                match pkt[l3 + 6] {
                    6 | 17 => port_ok(l3 + 40),
                    58 | 59 => false,
                    _ => true,
                }
            }
            _ => false,
        }
    }

    fn be16(pkt: &[u8], at: usize) -> Option<u16> {
        pkt.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn arb_packet(
        v4s: Vec<[u8; 4]>,
        v6s: Vec<Ipv6Addr>,
        ports: Vec<u16>,
    ) -> impl Strategy<Value = Vec<u8>> {
        let v4 = prop_oneof![proptest::sample::select(v4s), any::<[u8; 4]>(),];
        let v6 = prop_oneof![
            proptest::sample::select(v6s),
            any::<[u8; 16]>().prop_map(Ipv6Addr::from),
        ];
        let port = prop_oneof![proptest::sample::select(ports), any::<u16>()];
        let l4 = (
            prop_oneof![Just(6u8), Just(17), Just(1), Just(58), Just(0), any::<u8>()],
            port.clone(),
            port,
        )
            .prop_map(|(proto, s, d)| (proto, if proto == 6 { tcp(s, d) } else { udp(s, d) }));
        let ip = prop_oneof![
            (
                v4.clone(),
                v4,
                l4.clone(),
                prop_oneof![Just(0u16), Just(0x2000), Just(0x4000), 1..0x1fffu16],
                0..3u8
            )
                .prop_map(|(s, d, (proto, l4), frag, opt)| eth(
                    0x0800,
                    &ipv4(s, d, proto, frag, opt, &l4)
                )),
            (v6.clone(), v6, l4).prop_map(|(s, d, (next, l4))| eth(0x86dd, &ipv6(s, d, next, &l4))),
        ];
        (
            ip,
            prop_oneof![Just(None), Just(Some(0x8100u16)), Just(Some(0x88a8))],
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(pkt, tag, cut, truncate)| {
                let pkt = match tag {
                    Some(tpid) => tagged(&pkt, tpid),
                    None => pkt,
                };
                if truncate {
                    let n = cut.index(pkt.len());
                    pkt[..n].to_vec()
                } else {
                    pkt
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Large target sets force far jumps through `ja`; every packet, from
        /// targets or not, gets the reference answer.
        #[test]
        fn matches_the_reference(
            (t, pkts) in (
                proptest::collection::vec(any::<[u8; 4]>(), 1..400),
                proptest::collection::vec(any::<[u8; 16]>().prop_map(Ipv6Addr::from), 1..30),
                proptest::collection::vec(any::<u16>(), 0..60),
                proptest::collection::vec(any::<[u8; 4]>(), 0..20),
                proptest::collection::vec(any::<[u8; 16]>().prop_map(Ipv6Addr::from), 0..4),
            ).prop_flat_map(|(v4s, v6s, ports, x4s, x6s)| {
                let t = Targets {
                    ips: v4s.iter().map(|&a| IpAddr::from(a)).chain(v6s.iter().map(|&a| IpAddr::V6(a))).collect(),
                    ports: ports.clone(),
                    exclude: x4s.iter().map(|&a| IpAddr::from(a)).chain(x6s.iter().map(|&a| IpAddr::V6(a))).collect(),
                };
                let nonempty_ports = if ports.is_empty() { vec![80] } else { ports };
                let all4 = v4s.into_iter().chain(x4s).collect();
                let all6 = v6s.into_iter().chain(x6s).collect();
                (Just(t), proptest::collection::vec(arb_packet(all4, all6, nonempty_ports), 64))
            })
        ) {
            let prog = match compile(&t, Framing::Ethernet, SNAP) {
                Ok(p) => p,
                Err(FilterError::TooLarge { insns, .. }) => {
                    prop_assert!(insns > MAX_INSNS);
                    return Ok(());
                }
            };
            check(&prog);
            for pkt in &pkts {
                let want = reference(&t, pkt);
                prop_assert_eq!(run(&prog, pkt) == SNAP, want, "packet {:02x?}", pkt);
            }
        }
    }
}
