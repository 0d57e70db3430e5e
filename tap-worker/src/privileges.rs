//! Least privilege: the Linux capabilities each capture mode needs, and
//! dropping every other one when a capturing command starts.
//!
//! `tap-worker` and `kubetap tap --local` call [`keep_only`] with the needs
//! of their source ([`for_source`]) first thing, before any thread exists:
//! capabilities are per thread, and threads started afterwards inherit the
//! reduced sets. Everything not needed goes from the effective, permitted,
//! inheritable and bounding sets, the ambient set is cleared and
//! `PR_SET_NO_NEW_PRIVS` is set, so nothing the worker runs later (it runs
//! `mount` for tracefs at most) can gain privileges either. What a mode
//! needs is kept for the whole run: pods appear later (a new capture
//! socket, a new namespace to enter) and so do processes using TLS (new
//! uprobes). What each need is for, and how the numbers were found, is in
//! docs/security.md ("Least privilege: capabilities").
//!
//! [`missing`] tells a stage which of its needs the calling thread lacks, so
//! that it can say so by name (`--tls` without CAP_SYS_ADMIN, `--pods`
//! without it) instead of failing on an `EPERM` deep in the kernel.

use crate::driver::{LiveArgs, Source};
use rustix::thread::{self as rt, CapabilitySet, CapabilitySets};
use std::fmt;
use std::io;

/// A Linux capability kubetap may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cap {
    NetBindService,
    NetRaw,
    SysPtrace,
    SysAdmin,
    Perfmon,
    Bpf,
}

impl Cap {
    /// The kernel's name, `CAP_NET_RAW`.
    pub fn name(self) -> &'static str {
        match self {
            Cap::NetBindService => "CAP_NET_BIND_SERVICE",
            Cap::NetRaw => "CAP_NET_RAW",
            Cap::SysPtrace => "CAP_SYS_PTRACE",
            Cap::SysAdmin => "CAP_SYS_ADMIN",
            Cap::Perfmon => "CAP_PERFMON",
            Cap::Bpf => "CAP_BPF",
        }
    }

    /// Its bit.
    pub fn set(self) -> CapabilitySet {
        match self {
            Cap::NetBindService => CapabilitySet::NET_BIND_SERVICE,
            Cap::NetRaw => CapabilitySet::NET_RAW,
            Cap::SysPtrace => CapabilitySet::SYS_PTRACE,
            Cap::SysAdmin => CapabilitySet::SYS_ADMIN,
            Cap::Perfmon => CapabilitySet::PERFMON,
            Cap::Bpf => CapabilitySet::BPF,
        }
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One capability a mode needs, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub cap: Cap,
    pub what_for: &'static str,
}

const fn need(cap: Cap, what_for: &'static str) -> Need {
    Need { cap, what_for }
}

/// Live capture on interfaces (`-i`).
pub const CAPTURE: &[Need] = &[need(Cap::NetRaw, "opening AF_PACKET capture sockets")];

/// Capturing pods (`--pods`), for as long as pods come and go.
pub const PODS: &[Need] = &[
    need(
        Cap::NetRaw,
        "opening an AF_PACKET capture socket on each pod's host veth",
    ),
    need(
        Cap::SysAdmin,
        "entering pods' network namespaces (setns) to read their addresses",
    ),
    need(
        Cap::SysPtrace,
        "finding network namespaces through other processes' /proc/<pid>/ns/net",
    ),
];

/// TLS plaintext through eBPF (`--tls`), for as long as processes start.
pub const TLS: &[Need] = &[
    need(Cap::Bpf, "loading the eBPF programs and reading their maps"),
    need(
        Cap::Perfmon,
        "attaching the syscall and process tracepoints",
    ),
    need(
        Cap::SysAdmin,
        "attaching uprobes to TLS libraries and Go binaries (the kernel's uprobe perf events require it), and mounting tracefs when it is not mounted",
    ),
    need(
        Cap::SysPtrace,
        "reading other processes' /proc/<pid>/maps, exe and fd, and their files through /proc/<pid>/root",
    ),
];

/// `kubetap tap --local --netns`.
pub const ENTER_NETNS: Need = need(Cap::SysAdmin, "entering the namespace of --netns");

/// Listening on a port below 1024 (`kubetap tap --local --port`).
pub const LOW_PORT: Need = need(Cap::NetBindService, "listening on a port below 1024");

/// What capturing from `source` needs: nothing for a file; a live
/// capture's, or pods', and TLS's.
pub fn for_source(source: &Source) -> Vec<Need> {
    match source {
        Source::File { .. } => Vec::new(),
        Source::Interfaces { live, .. } => with_tls(CAPTURE, live),
        Source::Pods { live, .. } => with_tls(PODS, live),
    }
}

/// What a live capture with these options needs (`--pods` or interfaces,
/// and `--tls`), before its source is made.
pub fn for_live(live: &LiveArgs) -> Vec<Need> {
    with_tls(if live.pods.is_some() { PODS } else { CAPTURE }, live)
}

fn with_tls(base: &[Need], live: &LiveArgs) -> Vec<Need> {
    let mut needs = base.to_vec();
    if live.tls {
        needs.extend_from_slice(TLS);
    }
    needs
}

/// The capabilities of `needs`, as one set.
pub fn set_of(needs: &[Need]) -> CapabilitySet {
    needs
        .iter()
        .fold(CapabilitySet::empty(), |s, n| s | n.cap.set())
}

/// Whether `set` grants what `cap` does: the kernel lets CAP_SYS_ADMIN
/// stand for CAP_BPF and CAP_PERFMON (as before Linux 5.8 split them off).
fn grants(set: CapabilitySet, cap: Cap) -> bool {
    set.contains(cap.set())
        || (matches!(cap, Cap::Bpf | Cap::Perfmon) && set.contains(CapabilitySet::SYS_ADMIN))
}

/// Of `needs`, the ones the calling thread does not have in effect.
pub fn missing(needs: &[Need]) -> Vec<Need> {
    let effective = rt::capabilities(None)
        .map(|s| s.effective)
        .unwrap_or(CapabilitySet::empty());
    needs
        .iter()
        .filter(|n| !grants(effective, n.cap))
        .copied()
        .collect()
}

/// `CAP_X (what for), CAP_Y (what for)`; a capability needed for several
/// things is named once, with all of them.
pub fn describe(needs: &[Need]) -> String {
    let mut caps: Vec<Cap> = needs.iter().map(|n| n.cap).collect();
    caps.sort();
    caps.dedup();
    caps.iter()
        .map(|c| {
            let why: Vec<&str> = needs
                .iter()
                .filter(|n| n.cap == *c)
                .map(|n| n.what_for)
                .collect();
            format!("{c} ({})", why.join("; "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The names of a set's capabilities kubetap knows, in order
/// (`CAP_NET_RAW`, …).
pub fn names(set: CapabilitySet) -> Vec<&'static str> {
    [
        Cap::NetBindService,
        Cap::NetRaw,
        Cap::SysPtrace,
        Cap::SysAdmin,
        Cap::Perfmon,
        Cap::Bpf,
    ]
    .into_iter()
    .filter(|c| set.contains(c.set()))
    .map(Cap::name)
    .collect()
}

/// What [`keep_only`] did.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The capabilities kept (effective and permitted; the bounding set
    /// holds these alone when it could be reduced).
    pub kept: CapabilitySet,
    /// Needs the process did not have when it started: what depends on
    /// them fails and says so.
    pub missing: Vec<Need>,
    /// Capabilities left in the bounding set for want of CAP_SETPCAP (a
    /// process started without it, e.g. a user with ambient capabilities);
    /// with no-new-privileges set they cannot be gained anyway.
    pub bounding_left: CapabilitySet,
}

impl Kept {
    /// The kept capabilities by name (`CAP_NET_RAW`, …).
    pub fn names(&self) -> Vec<&'static str> {
        names(self.kept)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("reading this process's capabilities (capget): {0}")]
    Read(io::Error),
    #[error("dropping {cap} from the bounding set (PR_CAPBSET_DROP): {error}")]
    Bounding { cap: String, error: io::Error },
    #[error("clearing the ambient capabilities (PR_CAP_AMBIENT_CLEAR_ALL): {0}")]
    Ambient(io::Error),
    #[error("setting the capabilities kept (capset): {0}")]
    Set(io::Error),
    #[error("setting no-new-privileges (PR_SET_NO_NEW_PRIVS): {0}")]
    NoNewPrivs(io::Error),
}

/// Keeps the capabilities of `needs` (those the process has) and drops
/// every other one from every set; sets no-new-privileges. Call it before
/// any thread is started: it changes the calling thread, which the threads
/// started afterwards copy.
pub fn keep_only(needs: &[Need]) -> Result<Kept, PrivilegeError> {
    let now = rt::capabilities(None).map_err(|e| PrivilegeError::Read(e.into()))?;
    let wanted = set_of(needs);
    let kept = wanted & now.permitted;
    let missing = needs
        .iter()
        .filter(|n| !grants(now.permitted, n.cap))
        .copied()
        .collect();
    // The bounding set first: dropping from it takes CAP_SETPCAP, which
    // goes with the rest below.
    let setpcap = now.effective.contains(CapabilitySet::SETPCAP);
    let mut bounding_left = CapabilitySet::empty();
    for bit in 0..=last_cap() {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        if kept.contains(cap) || !rt::capability_is_in_bounding_set(cap).unwrap_or(false) {
            continue;
        }
        if !setpcap {
            bounding_left |= cap;
            continue;
        }
        rt::remove_capability_from_bounding_set(cap).map_err(|e| PrivilegeError::Bounding {
            cap: format!("capability {bit}"),
            error: e.into(),
        })?;
    }
    rt::clear_ambient_capability_set().map_err(|e| PrivilegeError::Ambient(e.into()))?;
    rt::set_capabilities(
        None,
        CapabilitySets {
            effective: kept,
            permitted: kept,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| PrivilegeError::Set(e.into()))?;
    rt::set_no_new_privs(true).map_err(|e| PrivilegeError::NoNewPrivs(e.into()))?;
    Ok(Kept {
        kept,
        missing,
        bounding_left,
    })
}

/// The highest capability number this kernel knows (40 on Linux 5.9+).
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
        .min(63)
}

/// [`keep_only`] for a capturing command `who`, with its one log line: the
/// capabilities kept, and a warning naming each one missing and what for.
pub fn drop_for(who: &str, needs: &[Need]) -> Result<Kept, PrivilegeError> {
    let kept = keep_only(needs)?;
    let names = kept.names();
    tracing::info!(
        capabilities = %if names.is_empty() { "none".to_string() } else { names.join(", ") },
        "{who}: capabilities kept (every other one dropped; no new privileges)"
    );
    if !kept.missing.is_empty() {
        tracing::warn!(
            "{who}: started without {}; what needs them will fail (run as root, or grant them: securityContext.capabilities.add)",
            describe(&kept.missing)
        );
    }
    if !kept.bounding_left.is_empty() {
        tracing::debug!(
            "{who}: the bounding set keeps {:#x} (no CAP_SETPCAP to drop them); no-new-privileges keeps them from being gained",
            kept.bounding_left.bits()
        );
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capability_needed_twice_is_named_once_with_both_reasons() {
        let mut needs = PODS.to_vec();
        needs.extend_from_slice(TLS);
        let text = describe(&needs);
        assert_eq!(text.matches("CAP_SYS_ADMIN").count(), 1, "{text}");
        assert!(
            text.contains("CAP_SYS_ADMIN (entering pods' network namespaces (setns) to read their addresses; attaching uprobes"),
            "{text}"
        );
        assert_eq!(
            names(set_of(&needs)),
            [
                "CAP_NET_RAW",
                "CAP_SYS_PTRACE",
                "CAP_SYS_ADMIN",
                "CAP_PERFMON",
                "CAP_BPF"
            ]
        );
    }

    #[test]
    fn a_file_needs_nothing_and_each_live_mode_its_list() {
        let live = |tls| crate::driver::LiveArgs {
            interfaces: vec!["lo".into()],
            pods: None,
            block_size: bytesize::ByteSize::mib(1),
            blocks: 4,
            fanout: 1,
            tls,
        };
        let file = Source::File {
            path: "x.pcap".into(),
            pace: None,
        };
        assert!(for_source(&file).is_empty());
        let interfaces = |tls| Source::Interfaces {
            names: vec!["lo".into()],
            live: live(tls),
        };
        assert_eq!(
            names(set_of(&for_source(&interfaces(false)))),
            ["CAP_NET_RAW"]
        );
        assert_eq!(
            names(set_of(&for_source(&interfaces(true)))),
            [
                "CAP_NET_RAW",
                "CAP_SYS_PTRACE",
                "CAP_SYS_ADMIN",
                "CAP_PERFMON",
                "CAP_BPF"
            ]
        );
        let pods = Source::Pods {
            pods: crate::tap::PodSource::List(Vec::new()),
            node: None,
            live: live(false),
        };
        assert_eq!(
            names(set_of(&for_source(&pods))),
            ["CAP_NET_RAW", "CAP_SYS_PTRACE", "CAP_SYS_ADMIN"]
        );
    }
}
