//! Shared by the real-peer tests: their prerequisites (testkit's one check,
//! which skips with a printed reason or fails under KUBETAP_REQUIRE_PEERS=1,
//! which `cargo xtask test` sets), dumpcap captures on lo, peer processes that
//! end with the test, tshark field extraction and `kubetap read --json`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// True when root, dumpcap, tshark and `tools` are all here. Otherwise skips
/// (`testkit::skip`: counted, or a failure under KUBETAP_REQUIRE_PEERS=1).
pub fn require(tools: &[&str]) -> bool {
    let all: Vec<&str> = ["dumpcap", "tshark"].iter().chain(tools).copied().collect();
    testkit::require_tools("real-peer test", true, &all)
}

// Not every test binary that includes these helpers uses each of them.
#[allow(unused_imports)]
pub use testkit::free_port;

// Not every test binary that includes these helpers makes a directory.
#[allow(unused_imports)]
pub use testkit::TempDir;

/// The certificates the tests' `tap-hub`s and `tap-worker`s share (`--certs`):
/// the first hub started with it makes the set, kept in cargo's directory for
/// tests' files and used by every later run.
pub fn certs() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kubetap-certs")
}

/// An HTTPS server for `python3` (`peers/https_server.py`: HOST PORT CERT
/// KEY after it).
pub const HTTPS_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/https_server.py");

/// Runs a command to completion; panics with its command line if it fails.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", out.status);
    out.stdout
}

/// Echoes the rest of a peer's log, `name: ` before each line, into the
/// test's captured output: libtest prints it when the test fails, and only
/// then (a thread spawned by the test inherits its capture).
pub fn echo_rest(
    name: &'static str,
    lines: impl Iterator<Item = std::io::Result<String>> + Send + 'static,
) {
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("{name}: {line}");
        }
    });
}

/// A background process (a server under test, a kubetap binary): testkit's
/// `Process`, whose process group is killed when it is dropped.
pub struct Peer(pub testkit::Process);

impl Peer {
    /// Starts `cmd` with its output discarded.
    pub fn spawn(cmd: &mut Command) -> Peer {
        Peer::start(cmd.stdout(Stdio::null()).stderr(Stdio::null()))
    }

    /// Starts `cmd` with the stdio it sets; panics if it cannot start.
    pub fn start(cmd: &mut Command) -> Peer {
        Peer(testkit::Process::spawn(cmd).unwrap_or_else(|e| panic!("{e}")))
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// The child, for its piped stdio or a wait.
    pub fn child(&mut self) -> &mut Child {
        self.0.child()
    }

    /// Waits until something accepts TCP connections on 127.0.0.1:`port`.
    pub fn wait_for_port(&self, port: u16) {
        testkit::assert_eventually!(
            Duration::from_secs(20),
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "something listening on port {port}"
        );
    }
}

/// dumpcap on lo with a capture filter, writing pcapng; stopped by `stop`.
pub struct Capture {
    child: Option<Child>,
    pub path: PathBuf,
}

impl Capture {
    /// Starts capturing and waits until dumpcap has written the file header.
    pub fn start(path: PathBuf, filter: &str) -> Capture {
        let _ = std::fs::remove_file(&path);
        let child = Command::new("dumpcap")
            .args(["-q", "-i", "lo", "-f", filter, "-w"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dumpcap");
        testkit::assert_eventually!(
            Duration::from_secs(20),
            std::fs::metadata(&path).is_ok_and(|m| m.len() > 0),
            "dumpcap writing {}",
            path.display()
        );
        // The header is written before the socket is fully attached.
        std::thread::sleep(Duration::from_millis(300));
        Capture {
            child: Some(child),
            path,
        }
    }

    /// Lets the last packets arrive, stops dumpcap cleanly and returns the file.
    pub fn stop(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        self.path.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// tshark's view of a capture: one row per packet matching `filter`, one
/// column per field; a field's repeated values are split into a Vec.
pub fn tshark_fields(
    file: &Path,
    extra: &[&str],
    filter: &str,
    fields: &[&str],
) -> Vec<Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(file).args(extra).args([
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "aggregator=\u{1f}",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = run(&mut cmd);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (0..fields.len())
                .map(|i| {
                    cols.get(i)
                        .copied()
                        .unwrap_or("")
                        .split('\u{1f}')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// `kubetap read --json FILE`, as raw output.
pub fn kubetap_json_raw(file: &Path) -> Vec<u8> {
    run(Command::new(env!("CARGO_BIN_EXE_kubetap"))
        .args(["read", "--json", "--quiet"])
        .arg(file))
}

/// `kubetap read --json FILE`, parsed.
pub fn kubetap_entries(file: &Path) -> Vec<serde_json::Value> {
    String::from_utf8(kubetap_json_raw(file))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A binary of another workspace package (tap-hub, tap-worker), built beside
/// this test's own.
pub fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p {name}` (cargo xtask test does)",
        path.display()
    );
    path
}

pub mod node;
pub mod serve;
