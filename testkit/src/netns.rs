//! Named network namespaces (`ip netns`, `/run/netns/<name>`): creating and
//! deleting them, running code on a thread that has entered one, and sweeping
//! up the ones a crashed test run left behind. `pods` builds nodes and pods
//! out of these.
//!
//! Setup shells out to `ip` (iproute2) so that a failing step reads like the
//! command a person would type; only entering a namespace is done in-process,
//! through `setns(2)` on the calling thread.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use rustix::process::{Pid, Signal};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Where `ip netns add` pins named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Every namespace testkit makes is named `kt-<tag>-<pid>-<counter>[-<pod>]`,
/// so a later run can tell from the name alone whether its owner still lives.
pub const PREFIX: &str = "kt-";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot run `{command}`: {source} (is iproute2 installed?)")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("interface {dev} in '{netns}' did not come up within {waited:?}: {state}")]
    NotUp {
        netns: String,
        dev: String,
        waited: std::time::Duration,
        state: String,
    },
    #[error("cannot enter network namespace '{netns}': {source}")]
    Enter {
        netns: String,
        #[source]
        source: io::Error,
    },
}

/// Runs `ip <args>` to completion and returns its stdout; a non-zero exit is
/// an error carrying the command line and ip's own message.
pub fn ip<I, S>(args: I) -> Result<String, NetnsError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new("ip");
    cmd.args(args);
    let command = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|source| NetnsError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(NetnsError::Failed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until interface `dev` in namespace `ns` can send: operationally up
/// and given its real queueing discipline. `ip link set up` returns before
/// the kernel's link watcher has done either; until it has, the device keeps
/// the `noop` qdisc, which drops every outgoing packet without an error to
/// the sender (received packets still arrive). On a busy machine that window
/// lasts long enough to lose a test's first datagrams.
pub fn wait_ready(ns: &str, dev: &str) -> Result<(), NetnsError> {
    const WAIT: std::time::Duration = std::time::Duration::from_secs(5);
    let start = std::time::Instant::now();
    loop {
        let line = ip(["-n", ns, "-o", "link", "show", "dev", dev])?;
        let up = line.contains(" state UP ") || line.contains(" state UNKNOWN ");
        if up && !line.contains(" qdisc noop ") {
            return Ok(());
        }
        if start.elapsed() >= WAIT {
            return Err(NetnsError::NotUp {
                netns: ns.to_string(),
                dev: dev.to_string(),
                waited: WAIT,
                state: line.trim().to_string(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The file that pins namespace `ns`: `/run/netns/<ns>` for a name, or `ns`
/// itself when it is a path (such as `/proc/<pid>/ns/net`).
pub fn netns_path(ns: &str) -> PathBuf {
    if ns.contains('/') {
        PathBuf::from(ns)
    } else {
        PathBuf::from(NETNS_DIR).join(ns)
    }
}

/// Names of all named network namespaces, from `/run/netns`.
pub fn list() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// True when a namespace named `ns` exists.
pub fn exists(ns: &str) -> bool {
    netns_path(ns).exists()
}

pub(crate) fn add(ns: &str) -> Result<(), NetnsError> {
    ip(["netns", "add", ns]).map(drop)
}

/// Names the network namespace of process `pid` `ns` (`ip netns attach`):
/// a container's, made by its runtime, becomes a namespace like the others.
/// Deleting the name later leaves the namespace to its processes.
pub(crate) fn attach(ns: &str, pid: u32) -> Result<(), NetnsError> {
    ip(["netns", "attach", ns, &pid.to_string()]).map(drop)
}

/// Kills (SIGKILL) every process whose network namespace is `ns`, except this
/// one, then unpins the name. The namespace itself goes away when its last
/// user does: sockets opened inside it (say, a capture) keep it alive.
pub(crate) fn delete(ns: &str) -> Result<(), NetnsError> {
    kill_members(ns);
    ip(["netns", "delete", ns]).map(drop)
}

/// Best-effort: processes still running in `ns`, from `ip netns pids`.
fn kill_members(ns: &str) {
    let Ok(pids) = ip(["netns", "pids", ns]) else {
        return;
    };
    let me = std::process::id();
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
    {
        if pid == me {
            continue;
        }
        if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
}

/// Namespace names this process created and still owns, by their node part
/// (`kt-<tag>-<pid>-<counter>`), so that `cleanup_stale` never removes them
/// even though their pid — ours — is alive.
static OWNED: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub(crate) fn own(node: &str) {
    OWNED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(node.to_string());
}

pub(crate) fn disown(node: &str) {
    OWNED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|n| n != node);
}

/// Splits `<prefix><tag>-<pid>-<counter>[-<pod>]` into the node part and
/// the pid.
fn parse_name<'a>(prefix: &str, name: &'a str) -> Option<(&'a str, u32)> {
    let rest = name.strip_prefix(prefix)?;
    let mut parts = rest.splitn(4, '-');
    let tag = parts.next()?;
    let pid = parts.next()?;
    let counter = parts.next()?;
    if tag.is_empty() || counter.is_empty() || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let node_len = prefix.len() + tag.len() + 1 + pid.len() + 1 + counter.len();
    Some((&name[..node_len], pid.parse().ok()?))
}

/// Removes namespaces named `<prefix><tag>-<pid>-<counter>[-<pod>]` (testkit's
/// scheme; `Node::new` sweeps `PREFIX`, "kt-") whose owning process has died (a test run that was killed, or crashed past its Drops),
/// killing any processes still inside them. A namespace whose pid is ours but
/// which this process did not create (the pid was reused) is stale too.
/// Returns the names removed; failures are logged to stderr and skipped.
pub fn cleanup_stale(prefix: &str) -> Vec<String> {
    let me = std::process::id();
    let owned = OWNED.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut removed = Vec::new();
    for name in list() {
        let Some((node, pid)) = parse_name(prefix, &name) else {
            continue;
        };
        let stale = if pid == me {
            !owned.iter().any(|n| n == node)
        } else {
            !PathBuf::from(format!("/proc/{pid}")).exists()
        };
        if !stale {
            continue;
        }
        match delete(&name) {
            Ok(()) => removed.push(name),
            // Another process may be sweeping the same leftovers.
            Err(_) if !exists(&name) => {}
            Err(e) => eprintln!("testkit: cannot remove stale namespace {name}: {e}"),
        }
    }
    removed
}

fn enter(ns: &str, file: &File) -> Result<(), NetnsError> {
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network)).map_err(|e| {
        NetnsError::Enter {
            netns: ns.to_string(),
            source: e.into(),
        }
    })
}

fn open(ns: &str) -> Result<File, NetnsError> {
    File::open(netns_path(ns)).map_err(|source| NetnsError::Enter {
        netns: ns.to_string(),
        source,
    })
}

/// Runs `f` on a new thread that has entered network namespace `ns` (a name
/// under `/run/netns`, or a path such as `/proc/<pid>/ns/net`) and returns its
/// result; a panic in `f` is resumed on the caller's thread.
///
/// Only that thread changes namespace. Sockets keep the namespace they were
/// created in, so `f` may open a socket (a listener, an AF_PACKET capture) and
/// return it for use from any thread. Paths under `/proc/self` name the main
/// thread's namespace, not this one's: use `/proc/thread-self`. `/sys/class/net`
/// shows the namespace sysfs was mounted in, not this one.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let file = open(ns)?;
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(format!("netns:{ns}"))
            .spawn_scoped(scope, move || {
                enter(ns, &file)?;
                Ok(f())
            })
            .map_err(|source| NetnsError::Enter {
                netns: ns.to_string(),
                source,
            })?;
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Like `in_netns`, for work that outlives the call (a server, a capture
/// loop): returns once the new thread is inside `ns`, with its handle.
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, NetnsError> {
    let file = open(ns)?;
    let (entered_tx, entered) = std::sync::mpsc::sync_channel(1);
    let name = ns.to_string();
    let handle = std::thread::Builder::new()
        .name(format!("netns:{ns}"))
        .spawn(move || {
            let result = enter(&name, &file);
            let ok = result.is_ok();
            let _ = entered_tx.send(result);
            if !ok {
                // The caller has the error; this thread never ran `f`.
                std::panic::resume_unwind(Box::new("setns failed"));
            }
            f()
        })
        .map_err(|source| NetnsError::Enter {
            netns: ns.to_string(),
            source,
        })?;
    match entered.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => Err(NetnsError::Enter {
            netns: ns.to_string(),
            source: io::Error::other("namespace thread ended before entering"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_into_node_and_pid() {
        let cases: &[(&str, Option<(&str, u32)>)] = &[
            ("kt-pods-1234-0", Some(("kt-pods-1234-0", 1234))),
            ("kt-pods-1234-7-web-1", Some(("kt-pods-1234-7", 1234))),
            ("kt-a-1-22-x", Some(("kt-a-1-22", 1))),
            ("kt-pods-1234", None),
            ("kt-pods-x-0", None),
            ("kt-pods-12-x", None),
            ("kt--12-0", None),
            ("other-pods-12-0", None),
            ("kt-pods-99999999999-0", None),
        ];
        assert_eq!(
            parse_name("other-", "other-pods-12-0-x"),
            Some(("other-pods-12-0", 12))
        );
        for (name, want) in cases {
            assert_eq!(parse_name(PREFIX, name), *want, "{name}");
        }
    }

    #[test]
    fn names_and_paths_map_to_files() {
        assert_eq!(netns_path("kt-x-1-0"), PathBuf::from("/run/netns/kt-x-1-0"));
        assert_eq!(
            netns_path("/proc/1/ns/net"),
            PathBuf::from("/proc/1/ns/net")
        );
    }
}
