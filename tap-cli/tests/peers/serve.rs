//! Talking to a kubetap API from a test: GET with the status, a process
//! whose stderr is waited on for a line (`read --serve`, `tap-hub`).

use super::Peer;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// GET on the API at 127.0.0.1:`port`: status and body.
pub fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let reply = testkit::http::get_local(port, path);
    (reply.status, reply.raw)
}

#[allow(unused_imports)]
pub use testkit::http::encode;

/// A process whose stderr the test reads.
pub fn spawn_piped(cmd: &mut Command) -> Peer {
    Peer::start(cmd.stdout(Stdio::null()).stderr(Stdio::piped()))
}

/// Waits for a line containing `needle` on a child's stderr.
pub fn wait_line(peer: &mut Peer, needle: &str) {
    let stderr = peer.child().stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let started = Instant::now();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains(needle) {
            // Keep draining so the child never blocks on a full pipe.
            super::echo_rest("peer", lines);
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no {needle:?}");
    }
    panic!("the process ended before printing {needle:?}");
}
