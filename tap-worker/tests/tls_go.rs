//! The TLS probes against Go's crypto/tls: an HTTPS server and client
//! built by the test with the installed Go (standard library only), a
//! fresh self-signed certificate, HTTP/1.1 and HTTP/2 on loopback. With
//! both binaries hooked, the plaintext of both sides must arrive with each
//! call's process, the socket number read from the `tls.Conn` in the kernel
//! and the addresses the kernel read for it (the same /proc shows), and
//! through `Streams` become one HTTP or HTTP/2 entry per request, marked
//! `tls`, with the right method, path and status. The same with the
//! binaries stripped (`-ldflags=-s -w`), found and hooked by discovery,
//! which lists them as Go binaries. Needs root (eBPF), go and openssl.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tap_worker::dissect::{DissectConfig, Emit, GenericFields as _};
use tap_worker::tls::discovery::Discovery;
use tap_worker::tls::streams::Streams;
use tap_worker::tls::{TlsProbes, TlsRecord, go, socket_of};
use testkit::go::{HTTPS_CLIENT, HTTPS_SERVER, Link, build};
use testkit::{Process, TempDir, free_port, require_tools};

struct Binaries {
    server: PathBuf,
    client: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn binaries(dir: &TempDir, link: Link) -> Binaries {
    let (cert, key) = testkit::self_signed(dir, "localhost");
    Binaries {
        server: build(dir.root(), "server", HTTPS_SERVER, link),
        client: build(dir.root(), "client", HTTPS_CLIENT, link),
        cert,
        key,
    }
}

fn start_server(b: &Binaries, port: u16) -> Process {
    let mut server = Process::spawn(
        Command::new(&b.server)
            .arg(format!("127.0.0.1:{port}"))
            .arg(&b.cert)
            .arg(&b.key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.child().stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening");
    server
}

/// A client waiting for its go-ahead: its process and its stdout's lines,
/// read on a thread.
struct Client {
    process: Process,
    lines: std::sync::mpsc::Receiver<String>,
}

fn start_client(b: &Binaries, port: u16, mode: &str, paths: &[&str]) -> Client {
    let mut process = Process::spawn(
        Command::new(&b.client)
            .arg(format!("https://127.0.0.1:{port}"))
            .arg(mode)
            .args(paths)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let stdout = process.child().stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(first, "ready");
    Client { process, lines }
}

/// Lets the client ask, polling the probes until it says `done`: its
/// answers' lines, and the records seen meanwhile.
fn run_client(
    client: &mut Client,
    probes: &mut TlsProbes,
    seen: &mut Vec<TlsRecord>,
) -> Vec<String> {
    let stdin = client.process.child().stdin.as_mut().unwrap();
    stdin.write_all(b"go\n").unwrap();
    stdin.flush().unwrap();
    let mut answers = Vec::new();
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the client did not finish: {answers:?}"
        );
        probes.poll(Duration::from_millis(50), |r| seen.push(r), |_| {});
        match client.lines.try_recv() {
            Ok(line) if line == "done" => break,
            Ok(line) => answers.push(line),
            Err(_) => {}
        }
    }
    // What the last calls sent after the client printed.
    probes.poll(Duration::from_millis(300), |r| seen.push(r), |_| {});
    answers
}

fn has(seen: &[TlsRecord], pid: u32, egress: bool, needle: &[u8]) -> bool {
    seen.iter().any(|r| {
        r.pid == pid && r.egress == egress && r.data.windows(needle.len()).any(|w| w == needle)
    })
}

fn summary(seen: &[TlsRecord]) -> Vec<String> {
    seen.iter()
        .map(|r| {
            format!(
                "pid {} fd {:?} {} {} bytes: {:?}",
                r.pid,
                r.fd,
                if r.egress { "out" } else { "in" },
                r.total,
                String::from_utf8_lossy(&r.data[..r.data.len().min(40)])
            )
        })
        .collect()
}

/// Each process's calls carry a socket whose addresses the kernel read,
/// the same /proc shows for it, both ends naming one connection.
fn check_sockets(seen: &[TlsRecord], server: u32, client: u32, port: u16) {
    let server_addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut client_ends = Vec::new();
    let mut server_ends = Vec::new();
    for r in seen.iter().filter(|r| r.pid == server || r.pid == client) {
        let fd = r.fd.unwrap_or_else(|| panic!("no socket: {r:?}"));
        let (local, remote) = r.addrs.unwrap_or_else(|| panic!("no addresses: {r:?}"));
        assert_ne!(r.ssl, 0, "{r:?}");
        if r.pid == client {
            assert_eq!(remote, server_addr, "{r:?}");
            client_ends.push((fd, local));
        } else {
            assert_eq!(local, server_addr, "{r:?}");
            server_ends.push((fd, remote));
        }
    }
    client_ends.sort();
    client_ends.dedup();
    server_ends.sort();
    server_ends.dedup();
    assert_eq!(client_ends.len(), 1, "one connection: {client_ends:?}");
    assert_eq!(server_ends.len(), 1, "one connection: {server_ends:?}");
    assert_eq!(client_ends[0].1, server_ends[0].1, "both ends' addresses");
    let info = socket_of(client, client_ends[0].0).expect("the client's socket in /proc");
    assert_eq!((info.local, info.remote), (client_ends[0].1, server_addr));
    let info = socket_of(server, server_ends[0].0).expect("the server's socket in /proc");
    assert_eq!((info.local, info.remote), (server_addr, server_ends[0].1));
    assert!(info.server_side);
}

/// The records through `Streams`: one entry per request, from the
/// server's end, marked tls.
fn check_entries(seen: &[TlsRecord], port: u16, expected: &[(&str, &str, i64)]) {
    let mut streams = Streams::new(std::sync::Arc::new(DissectConfig::default()));
    let mut out: Vec<Emit> = Vec::new();
    for r in seen {
        streams.record(r, &mut out);
    }
    streams.finish(u64::MAX / 2, &mut out);
    let entries: Vec<_> = out
        .into_iter()
        .filter_map(|e| match e {
            Emit::Entry(e) => Some(*e),
            _ => None,
        })
        .collect();
    for (path, protocol, status) in expected {
        let found: Vec<_> = entries.iter().filter(|e| e.path() == Some(path)).collect();
        assert_eq!(
            found.len(),
            1,
            "{path} once: {entries:?} {:?}",
            streams.stats()
        );
        let e = found[0];
        assert!(e.tls, "{e:?}");
        assert_eq!(
            proto::v1::Protocol::try_from(e.protocol).map(|p| p.name()),
            Ok(*protocol),
            "{e:?}"
        );
        assert_eq!(
            (e.method(), e.status()),
            (Some("GET"), Some(*status)),
            "{e:?}"
        );
        let dst = e.dst.as_ref().unwrap();
        assert_eq!((dst.ip.as_str(), dst.port), ("127.0.0.1", u32::from(port)));
    }
    assert!(streams.stats().mirrored >= 1, "{:?}", streams.stats());
}

/// Go's crypto/tls in both directions, over HTTP/1.1 and HTTP/2; `hook`
/// hooks a running server or client.
fn go_exchange(
    b: &Binaries,
    probes: &mut TlsProbes,
    mut hook: impl FnMut(&mut TlsProbes, &Path, u32),
) {
    let port = free_port();
    let server = start_server(b, port);
    hook(probes, &b.server, server.id());
    for (mode, paths, expected) in [
        (
            "h1",
            ["/go-h1", "/missing-h1"],
            [("/go-h1", "http", 200), ("/missing-h1", "http", 404)],
        ),
        (
            "h2",
            ["/go-h2", "/missing-h2"],
            [("/go-h2", "http2", 200), ("/missing-h2", "http2", 404)],
        ),
    ] {
        let mut client = start_client(b, port, mode, &paths);
        hook(probes, &b.client, client.process.id());
        let mut seen = Vec::new();
        let answers = run_client(&mut client, probes, &mut seen);
        let proto = if mode == "h1" { "HTTP/1.1" } else { "HTTP/2.0" };
        assert_eq!(
            answers,
            [format!("{proto} 200"), format!("{proto} 404")],
            "the client's answers"
        );
        let (s, c) = (server.id(), client.process.id());
        // The other test in this file runs its own Go pair at the same
        // time, and discovery hooks every Go binary on the host: keep
        // this pair's records only.
        seen.retain(|r| r.pid == s || r.pid == c);
        let summary = summary(&seen);
        if mode == "h1" {
            let request = b"GET /go-h1 HTTP/1.1\r\n";
            assert!(has(&seen, c, true, request), "{mode}: {summary:#?}");
            assert!(has(&seen, s, false, request), "{mode}: {summary:#?}");
            assert!(has(&seen, s, true, b"HTTP/1.1 200 OK\r\n"), "{summary:#?}");
            assert!(has(&seen, c, false, b"HTTP/1.1 404 Not Found\r\n"));
        } else {
            let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
            assert!(has(&seen, c, true, preface), "{mode}: {summary:#?}");
            assert!(has(&seen, s, false, preface), "{mode}: {summary:#?}");
            let body = b"you asked for /go-h2 over HTTP/2.0";
            assert!(has(&seen, s, true, body), "{summary:#?}");
            assert!(has(&seen, c, false, body), "{summary:#?}");
        }
        check_sockets(&seen, s, c, port);
        check_entries(&seen, port, &expected);
        drop(client);
    }
    let lost = probes.lost();
    assert_eq!(lost, Default::default(), "{lost:?}");
}

#[test]
fn go_plaintext_of_both_sides_over_http1_and_http2() {
    if !require_tools("Go TLS probes", true, &["go", "openssl"]) {
        return;
    }
    let dir = TempDir::new("tls-go");
    let b = binaries(&dir, Link::Full);
    let mut probes = TlsProbes::load().unwrap();
    go_exchange(&b, &mut probes, |probes, path, _| {
        let binary = go::inspect(path)
            .unwrap()
            .expect("a Go binary with crypto/tls");
        assert_eq!(binary.offsets_from, "DWARF");
        let n = probes.attach_go(path, &binary).unwrap();
        assert_eq!(n, 2);
        assert_eq!(probes.functions_of(path), go::FUNCTIONS);
    });
}

/// Stripped binaries, found by discovery as they run: hooked through
/// their function table and the offsets table, and listed as Go.
#[test]
fn stripped_go_binaries_are_found_hooked_and_decrypted() {
    if !require_tools("Go TLS probes", true, &["go", "openssl"]) {
        return;
    }
    let dir = TempDir::new("tls-go-stripped");
    let b = binaries(&dir, Link::Stripped);
    let binary = go::inspect(&b.server).unwrap().unwrap();
    assert_eq!(
        (binary.symbols_from, binary.offsets_from),
        (".gopclntab", "table")
    );
    let mut probes = TlsProbes::load().unwrap();
    let mut discovery = Discovery::new();
    let mut listed = Vec::new();
    go_exchange(&b, &mut probes, |probes, path, pid| {
        discovery.scan(probes);
        let lib = discovery
            .libraries()
            .into_iter()
            .find(|l| Path::new(&l.path) == path)
            .unwrap_or_else(|| {
                panic!("{} not listed: {:?}", path.display(), discovery.libraries())
            });
        assert_eq!(lib.kind, "go", "{lib:?}");
        assert!(lib.hooked, "{lib:?}");
        assert_eq!(lib.functions, go::FUNCTIONS, "{lib:?}");
        assert!(lib.processes.iter().any(|p| p.pid == pid), "{lib:?}");
        listed.push(lib.path);
    });
    assert_eq!(listed.len(), 3, "{listed:?}");
}
