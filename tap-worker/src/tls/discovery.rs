//! Which processes use a TLS library, and which library files to hook.
//!
//! Uprobes are attached to a file (its inode), not to a process: once a
//! libssl file is hooked, every process that maps it is read, including
//! processes that start later. So discovery keeps, per library file (by
//! device and inode, as `/proc/<pid>/maps` names it), the processes that map
//! it: the first one found hooks the file (through `/proc/<pid>/root`, which
//! reaches a container's own files), the last one to exit unhooks it.
//!
//! A process's executable (`/proc/<pid>/exe`, by device and inode too) is
//! looked at once for Go's crypto/tls ([`go::inspect`]) and for OpenSSL
//! linked in ([`linked_in`]): such a file is hooked and unhooked the same
//! way, and listed with `kind: go` or `openssl (linked in)`, hooked or with
//! the reason it cannot be (a stripped static OpenSSL); any other
//! executable (most, including Go binaries without crypto/tls) is
//! remembered as nothing to hook, so it is read once.
//!
//! Processes are looked at when they start a program (`sched_process_exec`,
//! then again as its libraries are loaded: soon after, and later for a
//! library opened on demand, as Python's `ssl` is), and all of them at
//! start and every [`RESCAN`] (which also catches what a full event ring
//! lost); an exit (`sched_process_exit`) removes a process at once.
//!
//! With pods targeted ([`Discovery::set_targets`]), only processes in a
//! target pod's network namespace (one that holds a target pod's address)
//! are looked at, listed and hooked; the others are not followed at all.
//! A hooked file is shared, though: a target pod's libssl may also be
//! mapped by other pods' processes (containers of one image share its
//! files), so the kernel programs are given the target pods' addresses too
//! ([`TlsProbes::set_scope`]) and drop other connections' calls. Which
//! namespace is a target's is read again at each scan.
//!
//! Events are read in batches, so a look may already have seen the program
//! an exec event announces: an exec of a process that still runs the
//! executable it was seen with changes nothing. And a file whose last
//! process is gone stays hooked for [`LINGER`] before it is unhooked: a
//! short-lived client (curl, a cron job) that comes back soon finds it
//! hooked already, and attaching and detaching (a second or more for a Go
//! binary's many return probes) is not repeated for each run.

use super::go::{self, GoBinary, GoError};
use super::linked::{LinkedIn, linked_in};
use super::{ProcessEvent, TlsProbes};
use crate::pods::Names;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A full look at every process, this often.
pub const RESCAN: Duration = Duration::from_secs(5);
/// After a process starts a program, it is looked at again after these
/// delays (its libraries are mapped by the loader, or opened later).
const LOOKS: [Duration; 4] = [
    Duration::from_millis(20),
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(3),
];
/// How long a file no process uses stays hooked.
pub const LINGER: Duration = Duration::from_secs(10);
/// Processes listed per library in the status, at most.
const STATUS_PROCESSES: usize = 64;
/// Processes followed at once (each a few bytes); beyond it, new ones wait
/// for the next scan.
const MAX_PROCESSES: usize = 64 * 1024;

/// Executables known to have nothing to hook, remembered at most (then
/// forgotten all at once, and read again as they are met).
const MAX_NOTHING: usize = 16 * 1024;

/// A file as `/proc/<pid>/maps` names it: device ("fd:01") and inode.
type FileKey = (String, u64);

/// One library file (or Go binary) and its users.
struct Library {
    /// What it is: "openssl", "go", "openssl (linked in)" (an executable
    /// with OpenSSL in it), or a library not hooked ("gnutls", …).
    kind: &'static str,
    /// The path inside the processes' mount namespace.
    path: PathBuf,
    /// The path the probes were attached through (`/proc/<pid>/root/…`).
    opened: PathBuf,
    /// The functions hooked, or why none are.
    hooked: Result<Vec<&'static str>, String>,
    users: std::collections::BTreeSet<u32>,
    bytes: u64,
    /// Since when no process uses it (it is unhooked after [`LINGER`]).
    unused_since: Option<Instant>,
}

#[derive(Default)]
struct Process {
    command: String,
    library: Option<FileKey>,
    /// Its executable, when it has TLS of its own: a Go binary with
    /// crypto/tls, or OpenSSL linked in.
    exe_tls: Option<FileKey>,
    /// Its executable's file, once looked at.
    exe: Option<FileKey>,
    /// Its executable was looked at.
    exe_seen: bool,
    pod: Option<(String, String)>,
    bytes: u64,
}

/// Target pods' addresses and which network namespaces hold one.
struct Scope {
    targets: Names,
    /// By namespace inode: whether it holds a target's address. Forgotten
    /// at each scan (a namespace's addresses change; inodes are reused).
    netns: HashMap<u64, bool>,
}

/// The library files found and the processes using them.
pub struct Discovery {
    libraries: BTreeMap<FileKey, Library>,
    processes: HashMap<u32, Process>,
    /// Executables with nothing to hook.
    nothing: std::collections::HashSet<FileKey>,
    /// Looks due: when, which process, how many looks done.
    due: Vec<(Instant, u32, usize)>,
    last_scan: Option<Instant>,
    own_pid: u32,
    /// Where `/proc` is (tests give another).
    proc_root: PathBuf,
    /// [`LINGER`] (tests give another).
    linger: Duration,
    /// Pods targeted: only their processes are followed.
    scope: Option<Scope>,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery::new()
    }
}

/// What hooking a library does; the worker's is [`TlsProbes`], tests count.
pub trait Hooks {
    /// Hooks the TLS functions of `opened`; the functions hooked, or why not.
    fn hook(&mut self, opened: &Path) -> Result<Vec<&'static str>, String>;
    /// Hooks the Go binary `opened`'s crypto/tls, as `go` describes it.
    fn hook_go(&mut self, opened: &Path, go: &GoBinary) -> Result<Vec<&'static str>, String>;
    fn unhook(&mut self, opened: &Path);
}

impl Hooks for TlsProbes {
    fn hook(&mut self, opened: &Path) -> Result<Vec<&'static str>, String> {
        self.attach(opened)
            .map(|_| self.functions_of(opened))
            .map_err(|e| e.to_string())
    }

    fn hook_go(&mut self, opened: &Path, go: &GoBinary) -> Result<Vec<&'static str>, String> {
        self.attach_go(opened, go)
            .map(|_| self.functions_of(opened))
            .map_err(|e| e.to_string())
    }

    fn unhook(&mut self, opened: &Path) {
        self.detach(opened);
    }
}

impl Discovery {
    pub fn new() -> Discovery {
        Discovery::with_proc(PathBuf::from("/proc"))
    }

    pub fn with_proc(proc_root: PathBuf) -> Discovery {
        Discovery {
            libraries: BTreeMap::new(),
            processes: HashMap::new(),
            nothing: Default::default(),
            due: Vec::new(),
            last_scan: None,
            own_pid: std::process::id(),
            proc_root,
            linger: LINGER,
            scope: None,
        }
    }

    /// Follows only processes of these pods (by network namespace), or
    /// every process (`None`, or no pods): processes out of scope now are
    /// forgotten, and every process is looked at again.
    pub fn set_targets(&mut self, targets: Option<Names>, hooks: &mut impl Hooks) {
        self.scope = targets.filter(|t| !t.is_empty()).map(|targets| Scope {
            targets,
            netns: HashMap::new(),
        });
        self.scan(hooks);
    }

    /// Whether process `pid` is followed: always without targets; with
    /// them, when its network namespace holds a target pod's address.
    fn in_scope(&mut self, pid: u32) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let Some(scope) = self.scope.as_mut() else {
            return true;
        };
        let base = self.proc_root.join(pid.to_string());
        let Ok(ns) = std::fs::metadata(base.join("ns/net")) else {
            return false;
        };
        *scope.netns.entry(ns.ino()).or_insert_with(|| {
            let local = local_addresses(&base);
            local.iter().any(|ip| scope.targets.pod_of(*ip).is_some())
        })
    }

    /// A process started a program or exited (what it used is unhooked by
    /// a later `tick`).
    pub fn event(&mut self, e: ProcessEvent) {
        tracing::debug!(event = ?e, "process event");
        match e {
            ProcessEvent::Exec(pid) => {
                // A new program: what the old one mapped is gone, unless a
                // look saw this program already (the event came later).
                let seen = self.processes.get(&pid).and_then(|p| p.exe.as_ref());
                if seen.is_none() || seen != self.exe_key(pid).as_ref() {
                    self.forget(pid);
                }
                self.due.push((Instant::now() + LOOKS[0], pid, 0));
            }
            ProcessEvent::Exit(pid) => self.forget(pid),
        }
    }

    /// Due looks, the periodic scan when it is time, and files unused for
    /// [`LINGER`] unhooked.
    pub fn tick(&mut self, hooks: &mut impl Hooks) {
        let now = Instant::now();
        let linger = self.linger;
        self.libraries.retain(|_, l| {
            if l.unused_since.is_none_or(|t| now.duration_since(t) < linger) {
                return true;
            }
            hooks.unhook(&l.opened);
            tracing::info!(library = %l.path.display(), "TLS library unhooked: no process has used it for {linger:?}");
            false
        });
        if self
            .last_scan
            .is_none_or(|t| now.duration_since(t) >= RESCAN)
        {
            self.scan(hooks);
        }
        let due: Vec<(Instant, u32, usize)> = std::mem::take(&mut self.due);
        for (when, pid, done) in due {
            if when > now {
                self.due.push((when, pid, done));
                continue;
            }
            self.look(pid, hooks);
            // Looked at until it maps a library (or runs Go's crypto/tls)
            // or the looks run out.
            let found = self
                .processes
                .get(&pid)
                .is_some_and(|p| p.library.is_some() || p.exe_tls.is_some());
            if !found && let Some(after) = LOOKS.get(done + 1) {
                self.due.push((now + *after - LOOKS[done], pid, done + 1));
            }
        }
    }

    /// Looks at every process, and forgets the ones gone without an exit
    /// event (a full ring).
    pub fn scan(&mut self, hooks: &mut impl Hooks) {
        self.last_scan = Some(Instant::now());
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
            return;
        };
        if let Some(scope) = self.scope.as_mut() {
            scope.netns.clear();
        }
        let mut alive = std::collections::HashSet::new();
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == self.own_pid || !self.in_scope(pid) {
                continue;
            }
            alive.insert(pid);
            // A process without a library yet may have opened one since.
            if self.processes.get(&pid).is_none_or(|p| p.library.is_none()) {
                self.look(pid, hooks);
            }
        }
        let gone: Vec<u32> = self
            .processes
            .keys()
            .filter(|p| !alive.contains(p))
            .copied()
            .collect();
        for pid in gone {
            tracing::debug!(pid, "process gone from /proc, or out of the pods' scope");
            self.forget(pid);
        }
    }

    /// Reads one process's memory map for a TLS library; hooks a file not
    /// seen before.
    fn look(&mut self, pid: u32, hooks: &mut impl Hooks) {
        if pid == self.own_pid || self.processes.len() >= MAX_PROCESSES || !self.in_scope(pid) {
            return;
        }
        let base = self.proc_root.join(pid.to_string());
        let Ok(maps) = std::fs::read_to_string(base.join("maps")) else {
            return;
        };
        let command = std::fs::read_to_string(base.join("comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default();
        let found = tls_library(&maps);
        let process = self.processes.entry(pid).or_default();
        process.command = command;
        if !process.exe_seen {
            process.exe_seen = true;
            self.look_exe(pid, hooks);
        }
        let Some(process) = self.processes.get_mut(&pid) else {
            return;
        };
        let Some((key, path, kind)) = found else {
            return;
        };
        if process.library.as_ref() == Some(&key) {
            return;
        }
        process.library = Some(key.clone());
        let library = self.libraries.entry(key).or_insert_with(|| {
            // The file as this process sees it, inside its container.
            let opened = base.join("root").join(path.strip_prefix("/").unwrap_or(&path));
            let hooked = match kind {
                "openssl" => hooks.hook(&opened),
                other => Err(format!(
                    "{other} is not hooked: its connections show as `tls` handshake entries"
                )),
            };
            match &hooked {
                Ok(f) => tracing::info!(library = %path.display(), pid, functions = ?f, "TLS library hooked"),
                Err(e) => tracing::warn!(library = %path.display(), pid, "TLS library not hooked: {e}"),
            }
            Library {
                path,
                kind,
                opened,
                hooked,
                users: Default::default(),
                bytes: 0,
                unused_since: None,
            }
        });
        library.users.insert(pid);
        library.unused_since = None;
    }

    /// The device and inode of the file process `pid` runs.
    fn exe_key(&self, pid: u32) -> Option<FileKey> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(self.proc_root.join(pid.to_string()).join("exe")).ok()?;
        Some((
            format!(
                "{:02x}:{:02x}",
                libc::major(meta.dev()),
                libc::minor(meta.dev())
            ),
            meta.ino(),
        ))
    }

    /// Reads a process's executable for Go's crypto/tls, once per file:
    /// hooks it, or keeps why it cannot be, or remembers there is nothing.
    fn look_exe(&mut self, pid: u32, hooks: &mut impl Hooks) {
        let base = self.proc_root.join(pid.to_string());
        // The file the process runs (its device and inode), and its path
        // inside the process's mount namespace.
        let Some(key) = self.exe_key(pid) else {
            return;
        };
        let Ok(path) = std::fs::read_link(base.join("exe")) else {
            return;
        };
        if let Some(p) = self.processes.get_mut(&pid) {
            p.exe = Some(key.clone());
        }
        if self.nothing.contains(&key) {
            return;
        }
        if !self.libraries.contains_key(&key) {
            let opened = base
                .join("root")
                .join(path.strip_prefix("/").unwrap_or(&path));
            let mut kind = "go";
            let hooked = match go::inspect(&opened) {
                // Not Go: OpenSSL may be linked in.
                Ok(None) => match linked_in(&opened) {
                    Ok(Some(LinkedIn::Hookable)) => {
                        kind = "openssl (linked in)";
                        hooks.hook(&opened).map_err(Some)
                    }
                    Ok(Some(LinkedIn::Stripped(name))) => {
                        kind = if name == "OpenSSL" {
                            "openssl (linked in)"
                        } else {
                            "boringssl (linked in)"
                        };
                        Err(Some(format!(
                            "statically linked {name}, its symbols stripped: SSL_read and SSL_write cannot be found to hook; its connections show as `tls` handshake entries"
                        )))
                    }
                    Ok(None) | Err(_) => Err(None),
                },
                Ok(Some(binary)) => hooks
                    .hook_go(&opened, &binary)
                    .map_err(|why| Some(format!("{}: {why}", binary.version))),
                // Gone, or not ours to read (a deleted executable): not
                // known to be Go, so nothing to list.
                Err(GoError::Io(e)) => {
                    tracing::debug!(pid, exe = %path.display(), "executable not read: {e}");
                    return;
                }
                Err(e) => Err(Some(e.to_string())),
            };
            let hooked = match hooked {
                Err(None) => {
                    if self.nothing.len() >= MAX_NOTHING {
                        self.nothing.clear();
                    }
                    self.nothing.insert(key);
                    return;
                }
                Err(Some(why)) => {
                    tracing::warn!(binary = %path.display(), pid, kind, "executable's TLS not hooked: {why}");
                    Err(why)
                }
                Ok(f) => {
                    tracing::info!(binary = %path.display(), pid, kind, functions = ?f, "executable's TLS hooked");
                    Ok(f)
                }
            };
            self.libraries.insert(
                key.clone(),
                Library {
                    kind,
                    path,
                    opened,
                    hooked,
                    users: Default::default(),
                    bytes: 0,
                    unused_since: None,
                },
            );
        }
        if let Some(library) = self.libraries.get_mut(&key) {
            library.users.insert(pid);
            library.unused_since = None;
        }
        if let Some(p) = self.processes.get_mut(&pid) {
            p.exe_tls = Some(key);
        }
    }

    /// The process is gone (or runs another program): its library loses a
    /// user; one hooked is unhooked [`LINGER`] after its last (by `tick`),
    /// one not hooked is forgotten at once.
    fn forget(&mut self, pid: u32) {
        let Some(p) = self.processes.remove(&pid) else {
            return;
        };
        for key in [p.library, p.exe_tls].into_iter().flatten() {
            let Some(library) = self.libraries.get_mut(&key) else {
                continue;
            };
            library.users.remove(&pid);
            if library.users.is_empty() {
                if library.hooked.is_ok() {
                    library.unused_since = Some(Instant::now());
                } else {
                    self.libraries.remove(&key);
                }
            }
        }
    }

    /// Plaintext bytes a process's TLS calls moved.
    pub fn count(&mut self, pid: u32, bytes: u64) {
        if let Some(p) = self.processes.get_mut(&pid) {
            p.bytes += bytes;
            if let Some(l) = p
                .library
                .as_ref()
                .or(p.exe_tls.as_ref())
                .and_then(|k| self.libraries.get_mut(k))
            {
                l.bytes += bytes;
            }
        }
    }

    /// The pod a process's connections use, from its socket's local address.
    pub fn name_process(&mut self, pid: u32, local: std::net::IpAddr, names: &Names) {
        if let Some(p) = self.processes.get_mut(&pid)
            && p.pod.is_none()
        {
            p.pod = names.pod_of(local);
        }
    }

    /// Library files hooked now.
    pub fn hooked(&self) -> usize {
        self.libraries.values().filter(|l| l.hooked.is_ok()).count()
    }

    /// Each library with its processes, for the status.
    pub fn libraries(&self) -> Vec<proto::v1::TlsLibrary> {
        self.libraries
            .values()
            .map(|l| proto::v1::TlsLibrary {
                path: l.path.display().to_string(),
                kind: l.kind.into(),
                hooked: l.hooked.is_ok(),
                functions: l
                    .hooked
                    .as_ref()
                    .map(|f| f.iter().map(|s| s.to_string()).collect())
                    .unwrap_or_default(),
                reason: l.hooked.as_ref().err().cloned().unwrap_or_default(),
                processes: l
                    .users
                    .iter()
                    .take(STATUS_PROCESSES)
                    .filter_map(|pid| {
                        let p = self.processes.get(pid)?;
                        Some(proto::v1::TlsProcess {
                            pid: *pid,
                            command: p.command.clone(),
                            pod: p.pod.as_ref().map(|(n, _)| n.clone()),
                            namespace: p
                                .pod
                                .as_ref()
                                .map(|(_, ns)| ns.clone())
                                .filter(|ns| !ns.is_empty()),
                            bytes: p.bytes,
                        })
                    })
                    .collect(),
                bytes: l.bytes,
            })
            .collect()
    }
}

/// The addresses of the network namespace of the process at `base` (a
/// `/proc/<pid>` directory): IPv4 from the routing table's local entries
/// (`net/fib_trie`: a `|-- <address>` line, then `/32 host LOCAL`), IPv6
/// from `net/if_inet6` (32 hex digits first on each line). Unreadable: none.
fn local_addresses(base: &Path) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    if let Ok(trie) = std::fs::read_to_string(base.join("net/fib_trie")) {
        let mut last: Option<std::net::Ipv4Addr> = None;
        for line in trie.lines() {
            let line = line.trim_start_matches([' ', '|', '+', '-']).trim();
            if let Ok(ip) = line.parse() {
                last = Some(ip);
            } else if line.starts_with("/32 host LOCAL")
                && let Some(ip) = last
                && !out.contains(&ip.into())
            {
                out.push(ip.into());
            }
        }
    }
    if let Ok(v6) = std::fs::read_to_string(base.join("net/if_inet6")) {
        for line in v6.lines() {
            let Some(hex) = line.split_whitespace().next() else {
                continue;
            };
            if let Ok(bits) = u128::from_str_radix(hex, 16)
                && hex.len() == 32
            {
                out.push(std::net::Ipv6Addr::from(bits).into());
            }
        }
    }
    out
}

/// TLS libraries by file name prefix: OpenSSL's is hooked, the others are
/// listed (their processes' TLS is not read).
const LIBRARIES: [(&str, &str); 5] = [
    ("libssl.so", "openssl"),
    ("libgnutls.so", "gnutls"),
    ("libnss3.so", "nss"),
    ("libwolfssl.so", "wolfssl"),
    ("libmbedtls.so", "mbedtls"),
];

/// The TLS library a memory map has (OpenSSL's first): its file's device
/// and inode, path and kind. Lines are `address perms offset dev inode
/// path`.
fn tls_library(maps: &str) -> Option<(FileKey, PathBuf, &'static str)> {
    let mut best: Option<(usize, FileKey, PathBuf)> = None;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(dev), Some(inode), Some(path)) = (f.nth(3), f.next(), f.next()) else {
            continue;
        };
        let Some(name) = Path::new(path).file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(rank) = LIBRARIES.iter().position(|(p, _)| name.starts_with(p)) else {
            continue;
        };
        let Ok(inode) = inode.parse() else {
            continue;
        };
        if best.as_ref().is_none_or(|b| rank < b.0) {
            best = Some((rank, (dev.to_string(), inode), PathBuf::from(path)));
        }
    }
    best.map(|(rank, key, path)| (key, path, LIBRARIES[rank].1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Count {
        hooked: Vec<PathBuf>,
        unhooked: Vec<PathBuf>,
    }

    impl Hooks for Count {
        fn hook(&mut self, opened: &Path) -> Result<Vec<&'static str>, String> {
            self.hooked.push(opened.to_path_buf());
            Ok(vec!["SSL_read"])
        }
        fn hook_go(&mut self, opened: &Path, _: &GoBinary) -> Result<Vec<&'static str>, String> {
            self.hooked.push(opened.to_path_buf());
            Ok(go::FUNCTIONS.to_vec())
        }
        fn unhook(&mut self, opened: &Path) {
            self.unhooked.push(opened.to_path_buf());
        }
    }

    const SSL: &str = "7f0000000000-7f0000001000 r-xp 00000000 fd:01 4242 /usr/lib/x86_64-linux-gnu/libssl.so.3\n";
    const OTHER_SSL: &str =
        "7f0000000000-7f0000001000 r-xp 00000000 00:2a 99 /usr/lib/libssl.so.1.1\n";
    const NONE: &str = "55d0-55d1 r-xp 00000000 fd:01 10 /usr/bin/cat\n";

    fn fake_proc(dir: &Path, pid: u32, maps: &str) {
        let p = dir.join(pid.to_string());
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("maps"), maps).unwrap();
        std::fs::write(p.join("comm"), format!("prog{pid}\n")).unwrap();
    }

    /// A fake process's network namespace: `ns/net` (its inode the
    /// namespace's), shared by the processes given the same `netns`
    /// directory, whose `net/` holds its addresses as the kernel lists them.
    fn fake_netns(dir: &Path, pid: u32, netns: &str, v4: &str, v6: &str) {
        use std::os::unix::fs::symlink;
        let ns = dir.join(netns);
        std::fs::create_dir_all(ns.join("net")).unwrap();
        std::fs::write(ns.join("net/net"), "").unwrap();
        let trie = format!(
            "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\nLocal:\n  +-- 10.0.0.0/8 2 0 2\n     |-- {v4}\n        /32 host LOCAL\n     |-- 10.255.255.255\n        /32 link BROADCAST\n"
        );
        std::fs::write(ns.join("net/fib_trie"), trie).unwrap();
        std::fs::write(ns.join("net/if_inet6"), format!("{v6} 02 40 00 80 eth0\n")).unwrap();
        let p = dir.join(pid.to_string());
        std::fs::create_dir_all(p.join("ns")).unwrap();
        symlink(ns.join("net/net"), p.join("ns/net")).unwrap();
        symlink(ns.join("net"), p.join("net")).unwrap();
    }

    fn target(name: &str, ip: &str) -> crate::pods::TargetPod {
        crate::pods::TargetPod {
            name: name.into(),
            namespace: "shop".into(),
            ips: vec![ip.parse().unwrap()],
            node: None,
        }
    }

    /// With pods targeted, only processes in a namespace holding a target's
    /// address (IPv4 or IPv6) are followed and hooked; without targets,
    /// every process again.
    #[test]
    fn with_pods_targeted_only_their_processes_are_followed() {
        let dir = testkit::TempDir::new("discovery-scope");
        let root = dir.root();
        fake_proc(root, 10, SSL);
        fake_netns(
            root,
            10,
            "ns-web",
            "10.1.0.5",
            "fd000000000000000000000000000005",
        );
        fake_proc(root, 11, SSL);
        fake_netns(
            root,
            11,
            "ns-web",
            "10.1.0.5",
            "fd000000000000000000000000000005",
        );
        fake_proc(root, 20, OTHER_SSL);
        fake_netns(
            root,
            20,
            "ns-db",
            "10.1.0.6",
            "fd000000000000000000000000000006",
        );
        let mut d = Discovery::with_proc(root.to_path_buf());
        let mut hooks = Count::default();
        let names = Names::new(&[target("web", "10.1.0.5")]);
        d.set_targets(Some(names), &mut hooks);
        assert_eq!(hooks.hooked.len(), 1, "{:?}", hooks.hooked);
        assert!(
            hooks.hooked[0].ends_with("libssl.so.3"),
            "{:?}",
            hooks.hooked
        );
        let libs = d.libraries();
        assert_eq!(libs.len(), 1);
        assert_eq!(libs[0].processes.len(), 2);

        // The other pod targeted by its IPv6 address instead: the first
        // pod's processes are forgotten (their file unhooked after LINGER).
        let names = Names::new(&[target("db", "fd00::6")]);
        d.set_targets(Some(names), &mut hooks);
        assert_eq!(hooks.hooked.len(), 2);
        assert!(hooks.hooked[1].ends_with("libssl.so.1.1"));
        d.linger = Duration::ZERO;
        d.tick(&mut hooks);
        assert_eq!(hooks.unhooked.len(), 1, "{:?}", hooks.unhooked);

        // No targets: every process, no scope.
        d.set_targets(None, &mut hooks);
        assert_eq!(hooks.hooked.len(), 3);
        assert_eq!(
            d.libraries()
                .iter()
                .map(|l| l.processes.len())
                .sum::<usize>(),
            3
        );
    }

    #[test]
    fn local_addresses_are_read_as_the_kernel_lists_them() {
        let dir = testkit::TempDir::new("discovery-addrs");
        fake_netns(
            dir.root(),
            7,
            "ns",
            "10.1.0.5",
            "fe80000000000000000000000000abcd",
        );
        let got = local_addresses(&dir.root().join("7"));
        let want: Vec<std::net::IpAddr> =
            vec!["10.1.0.5".parse().unwrap(), "fe80::abcd".parse().unwrap()];
        assert_eq!(got, want, "the broadcast and route entries are not local");
        assert!(local_addresses(&dir.root().join("nope")).is_empty());
    }

    #[test]
    fn a_library_is_hooked_once_and_unhooked_with_its_last_user() {
        let dir = testkit::TempDir::new("discovery");
        fake_proc(dir.root(), 10, SSL);
        fake_proc(dir.root(), 11, SSL);
        fake_proc(dir.root(), 12, NONE);
        fake_proc(dir.root(), 13, OTHER_SSL);
        let mut d = Discovery::with_proc(dir.root().to_path_buf());
        let mut hooks = Count::default();
        d.scan(&mut hooks);
        // One hook per file, through the first user's root.
        assert_eq!(hooks.hooked.len(), 2, "{:?}", hooks.hooked);
        assert!(
            hooks
                .hooked
                .iter()
                .any(|p| p.ends_with("root/usr/lib/x86_64-linux-gnu/libssl.so.3"))
        );
        let libs = d.libraries();
        let ssl3 = libs.iter().find(|l| l.path.ends_with("so.3")).unwrap();
        assert_eq!(ssl3.processes.len(), 2);
        assert_eq!(ssl3.processes[0].command, "prog10");
        std::fs::remove_dir_all(dir.root().join("10")).unwrap();
        d.event(ProcessEvent::Exit(10));
        assert!(hooks.unhooked.is_empty(), "one user is left");
        std::fs::remove_dir_all(dir.root().join("11")).unwrap();
        d.event(ProcessEvent::Exit(11));
        d.tick(&mut hooks);
        assert!(hooks.unhooked.is_empty(), "kept for a while after its last");
        d.linger = Duration::ZERO;
        d.tick(&mut hooks);
        assert_eq!(hooks.unhooked.len(), 1);
        // The other file's user vanished without an exit event: the next
        // scan finds it gone.
        std::fs::remove_dir_all(dir.root().join("13")).unwrap();
        d.scan(&mut hooks);
        d.tick(&mut hooks);
        assert_eq!(hooks.unhooked.len(), 2);
        assert_eq!(d.hooked(), 0);
    }

    /// A file used again before [`LINGER`] is over stays hooked: hooked
    /// once, never unhooked.
    #[test]
    fn a_file_used_again_soon_is_not_unhooked_and_hooked_again() {
        let dir = testkit::TempDir::new("discovery");
        fake_proc(dir.root(), 60, SSL);
        let mut d = Discovery::with_proc(dir.root().to_path_buf());
        let mut hooks = Count::default();
        d.scan(&mut hooks);
        std::fs::remove_dir_all(dir.root().join("60")).unwrap();
        d.event(ProcessEvent::Exit(60));
        fake_proc(dir.root(), 61, SSL);
        d.event(ProcessEvent::Exec(61));
        std::thread::sleep(LOOKS[0]);
        d.tick(&mut hooks);
        assert_eq!(hooks.hooked.len(), 1);
        assert!(hooks.unhooked.is_empty());
        assert_eq!(d.libraries()[0].processes[0].pid, 61);
        d.linger = Duration::ZERO;
        d.tick(&mut hooks);
        assert!(hooks.unhooked.is_empty(), "it has a process again");
    }

    /// An exec event read after a look saw the new program (events come in
    /// batches) changes nothing; an exec of another program forgets what
    /// the old one used.
    #[test]
    fn a_late_exec_event_keeps_what_a_look_found() {
        let dir = testkit::TempDir::new("discovery");
        let (first, second) = (dir.path("first"), dir.path("second"));
        std::fs::write(&first, "one").unwrap();
        std::fs::write(&second, "two").unwrap();
        fake_proc(dir.root(), 50, SSL);
        let exe = dir.root().join("50/exe");
        std::os::unix::fs::symlink(&first, &exe).unwrap();
        let mut d = Discovery::with_proc(dir.root().to_path_buf());
        d.linger = Duration::ZERO;
        let mut hooks = Count::default();
        d.scan(&mut hooks);
        d.event(ProcessEvent::Exec(50));
        d.tick(&mut hooks);
        assert!(hooks.unhooked.is_empty(), "the program a look saw");
        assert_eq!(d.libraries()[0].processes.len(), 1);
        std::fs::remove_file(&exe).unwrap();
        std::os::unix::fs::symlink(&second, &exe).unwrap();
        fake_proc(dir.root(), 50, NONE);
        d.event(ProcessEvent::Exec(50));
        d.tick(&mut hooks);
        assert_eq!(hooks.unhooked.len(), 1, "another program");
    }

    #[test]
    fn a_started_program_is_looked_at_until_it_maps_a_library() {
        let dir = testkit::TempDir::new("discovery");
        let mut d = Discovery::with_proc(dir.root().to_path_buf());
        let mut hooks = Count::default();
        d.scan(&mut hooks);
        fake_proc(dir.root(), 20, NONE);
        d.event(ProcessEvent::Exec(20));
        std::thread::sleep(LOOKS[0]);
        d.tick(&mut hooks);
        assert!(hooks.hooked.is_empty());
        // It loads libssl later (Python imports ssl on demand).
        fake_proc(dir.root(), 20, SSL);
        std::thread::sleep(LOOKS[1]);
        d.tick(&mut hooks);
        assert_eq!(hooks.hooked.len(), 1);
        assert!(d.due.is_empty(), "no more looks once found");
    }

    /// GnuTLS is listed, not hooked; a process with both prefers OpenSSL.
    #[test]
    fn other_tls_libraries_are_listed_with_why_they_are_not_read() {
        let dir = testkit::TempDir::new("discovery");
        let gnutls = "7f00-7f01 r-xp 00000000 fd:01 77 /usr/lib/x86_64-linux-gnu/libgnutls.so.30\n";
        fake_proc(dir.root(), 40, gnutls);
        fake_proc(dir.root(), 41, &format!("{gnutls}{SSL}"));
        let mut d = Discovery::with_proc(dir.root().to_path_buf());
        let mut hooks = Count::default();
        d.scan(&mut hooks);
        assert_eq!(hooks.hooked.len(), 1, "only OpenSSL: {:?}", hooks.hooked);
        let libs = d.libraries();
        let g = libs.iter().find(|l| l.kind == "gnutls").unwrap();
        assert!(!g.hooked && g.reason.contains("not hooked"), "{g:?}");
        assert_eq!(g.processes.len(), 1);
        let o = libs.iter().find(|l| l.kind == "openssl").unwrap();
        assert_eq!(o.processes[0].pid, 41);
    }

    #[test]
    fn a_failed_hook_is_kept_with_its_reason_and_not_retried() {
        struct Refuse(usize);
        impl Hooks for Refuse {
            fn hook(&mut self, _: &Path) -> Result<Vec<&'static str>, String> {
                self.0 += 1;
                Err("no SSL_read".into())
            }
            fn hook_go(&mut self, _: &Path, _: &GoBinary) -> Result<Vec<&'static str>, String> {
                panic!("no Go binary here");
            }
            fn unhook(&mut self, _: &Path) {
                panic!("nothing was hooked");
            }
        }
        let dir = testkit::TempDir::new("discovery");
        fake_proc(dir.root(), 30, SSL);
        let mut d = Discovery::with_proc(dir.root().to_path_buf());
        let mut hooks = Refuse(0);
        d.scan(&mut hooks);
        fake_proc(dir.root(), 31, SSL);
        d.scan(&mut hooks);
        assert_eq!(hooks.0, 1);
        let libs = d.libraries();
        assert!(!libs[0].hooked);
        assert_eq!(libs[0].reason, "no SSL_read");
        d.event(ProcessEvent::Exit(30));
        d.event(ProcessEvent::Exit(31));
        assert!(d.libraries().is_empty());
    }
}
