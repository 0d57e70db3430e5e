//! kubetap's test harness (a dev-dependency only): Kubernetes-shaped network
//! topologies built from network namespaces, with real servers and clients
//! running inside them, torn down when the test ends — also when it panics.
//!
//! ```no_run
//! use std::time::Duration;
//! use testkit::{Node, require_root};
//!
//! if !require_root() {
//!     return;
//! }
//! let node = Node::new("doc").unwrap(); // netns kt-doc-<pid>-<n>, bridge cbr0 on a /24
//! let web = node.pod("web").unwrap(); // netns kt-doc-<pid>-<n>-web, eth0 = web.ip
//! let client = node.pod("client").unwrap();
//! let _server = web
//!     .spawn(web.command("python3").args(["-m", "http.server", "8080"]))
//!     .unwrap();
//! node.wait_for_tcp(web.addr(8080), Duration::from_secs(10)).unwrap();
//! let out = client
//!     .command("curl")
//!     .arg(format!("http://{}:8080/", web.ip))
//!     .output()
//!     .unwrap();
//! assert!(out.status.success());
//! // A capture on web.host_veth / web.host_ifindex, opened inside
//! // `node.in_netns(…)`, sees that exchange.
//! ```
//!
//! - `pods`: `Node` (a namespace with bridge `cbr0`, the pods' gateway) and
//!   `Pod` (a namespace whose `eth0` is a veth into the bridge), as a CNI
//!   bridge plugin lays out a real node. Nothing reaches the host's namespace.
//!   `Node::offload` (in `offload`) turns on BIG TCP along a pod's path.
//!   `Node::adopt` and `Node::attach_pod` make a node or a pod of a
//!   container's network namespace (a runtime's pod sandbox).
//! - `netns`: named namespaces via `ip netns`, `in_netns` to run code on a
//!   thread inside one, and `cleanup_stale` for what crashed runs left.
//! - `images`: the hub's and worker's container images (static musl
//!   binaries, `FROM scratch`), built for `cargo xtask images` and the
//!   images test alike, and the Docker daemon they need.
//! - `process`: `Process`, a child killed with its process group on drop.
//! - Shared by every test crate: [`require_tools`] (the one prerequisite
//!   check; [`skip`] counts what cannot run), [`TempDir`], [`free_port`],
//!   [`eventually`] and [`assert_eventually!`], `http` (a client for the
//!   APIs), `synth` (synthetic HTTP/1
//!   captures: the benchmark's and the hub tests'), with the `pipeline`
//!   feature `conversation` (hand-built TCP conversations fed through a
//!   `tap_worker::Pipeline`), and with the `kube-api` feature `kube_api` (a
//!   test Kubernetes API server over HTTPS, checked against kubectl and the
//!   Python client).
//!
//! Departures from the first sketch of this API: `Node::command(program)`
//! returns a fresh `Command` rather than prefixing one (a `Command` cannot
//! gain a prefix after it is made); `Pod::spawn` refuses commands not built by
//! that pod's `command`, so a server cannot start in the host namespace by
//! mistake; setns goes through rustix's safe wrapper, so the crate forbids
//! unsafe code.
//!
//! Tests that use this skip with a printed `SKIPPED:` reason when they cannot
//! run (not root, no `ip`), and fail instead under `KUBETAP_REQUIRE_PEERS=1`,
//! which `cargo xtask test` sets.
#![forbid(unsafe_code)]

#[cfg(feature = "pipeline")]
pub mod conversation;
pub mod go;
pub mod http;
pub mod images;
#[cfg(feature = "kube-api")]
pub mod kube_api;
pub mod netns;
mod offload;
pub mod pods;
pub mod process;
pub mod synth;

pub use netns::{NetnsError, cleanup_stale, in_netns, spawn_in_netns};
pub use pods::{Node, Pod, PodError};
pub use process::Process;

use std::process::Command;

/// Whether `tool` is a program on the PATH.
pub fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Why a test needing root (when `root`) and `tools` cannot run here, if it cannot.
fn missing(root: bool, tools: &[&str]) -> Result<(), String> {
    if root && !rustix::process::geteuid().is_root() {
        return Err("needs root (namespaces, veths, bridges, capture)".into());
    }
    match tools.iter().find(|t| !on_path(t)) {
        Some(tool) => Err(format!(
            "needs {tool}, which is not installed (cargo xtask setup installs it)"
        )),
        None => Ok(()),
    }
}

/// The one check of a test's prerequisites: true when this process is root
/// (if `root`) and every program in `tools` is on the PATH; otherwise the
/// test `what` is skipped (see [`skip`]) and this returns false.
pub fn require_tools(what: &str, root: bool, tools: &[&str]) -> bool {
    match missing(root, tools) {
        Ok(()) => true,
        Err(why) => skip(what, &why),
    }
}

/// True when this process is root and `ip` plus every program in `tools` is
/// on the PATH. Otherwise skips (see [`skip`]) and returns false.
pub fn require(tools: &[&str]) -> bool {
    let all: Vec<&str> = ["ip"].iter().chain(tools).copied().collect();
    require_tools("netns test", true, &all)
}

/// A test that cannot run here says so and returns false (its caller
/// returns): it prints `SKIPPED: <what>: <why>` and appends the line to the
/// file `KUBETAP_SKIP_LOG` names, so that `cargo xtask test` counts it as a
/// skip, not a pass. Under `KUBETAP_REQUIRE_PEERS=1` (a run meant to cover
/// everything, as root after setup) it panics with the reason instead.
pub fn skip(what: &str, why: &str) -> bool {
    if std::env::var("KUBETAP_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
        panic!("{what} cannot run: {why}");
    }
    let line = format!("SKIPPED: {what}: {why}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("KUBETAP_SKIP_LOG") {
        use std::io::Write as _;
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            // One write of the whole line: appends from tests running at
            // once never interleave.
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = appended {
            panic!("cannot record the skip in {}: {e}", path.to_string_lossy());
        }
    }
    false
}

/// A port nobody listens on right now on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

/// Polls `check` until it returns `Some`, for at most `limit`; panics saying
/// `what` was awaited. Only to keep a broken build from hanging, never to
/// assert a time.
pub fn eventually<T>(
    limit: std::time::Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Asserts that a condition becomes true within a time limit, polling it:
/// `assert_eventually!(Duration::from_secs(10), hub.ready(), "hub on {port}")`.
/// The limit only keeps a broken build from hanging; it is never a timing
/// assertion.
#[macro_export]
macro_rules! assert_eventually {
    ($limit:expr, $cond:expr $(,)?) => {
        $crate::eventually($limit, stringify!($cond), || ($cond).then_some(()))
    };
    ($limit:expr, $cond:expr, $($what:tt)+) => {
        $crate::eventually($limit, &format!($($what)+), || ($cond).then_some(()))
    };
}

/// `require(&[])`: root and `ip`.
pub fn require_root() -> bool {
    require(&[])
}

/// A directory for one test, under the system's temp dir, named for the
/// test (`kubetap-<tag>-…`), removed with everything in it when dropped.
/// It derefs to its path: `dir.join("x")`, `Command::current_dir(&*dir)`.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kubetap-{tag}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for {tag}: {e}"));
        TempDir(dir)
    }

    /// The directory itself.
    pub fn root(&self) -> &std::path::Path {
        self.0.path()
    }

    /// A path inside it.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.path().join(name)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        self.0.path()
    }
}

/// A fresh self-signed certificate for `common_name` (RSA 2048, a day),
/// written by `openssl req` as `cert.pem` and `key.pem` in `dir`; their
/// paths. Panics, naming openssl, when it cannot make them.
pub fn self_signed(dir: &TempDir, common_name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .arg("-subj")
        .arg(format!("/CN={common_name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run openssl req: {e}"));
    assert!(made.success(), "openssl req could not make a certificate");
    (cert, key)
}
